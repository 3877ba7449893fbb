//! One image's coding session: the PixelCNN as an [`AutoregressiveModel`].
//!
//! Schedule (format spec, "PixelCNN schedule"): the colour planes, then alpha as a gray image of
//! its own; within a plane set, wavefronts `t = x + (r+1)·y` in order; within a wavefront,
//! channel by channel; within a channel, by increasing `y`. Every pixel of a wavefront depends
//! only on earlier wavefronts, so the network runs on all of them in parallel.

use rayon::prelude::*;

use super::arch::Arch;
use super::int_model::{split_params, ModelMeta};
use crate::coding::adaptive::{ScaleAdapter, SCALE_SELECT_1};
use crate::coding::autoregressive::AutoregressiveModel;
use crate::coding::LogisticMixture;
use crate::error::Result;
use crate::family::DecodeControl;
use crate::image::ChannelLayout;

/// What a coding session needs of a PixelCNN network: the 32-bit engine ([`PixelCnnInt`]) and
/// the 8-bit one ([`PixelCnn8`]) both run the schedule below, with per-pixel state so that the
/// pixels of a wavefront can be computed in parallel.
///
/// [`PixelCnnInt`]: super::PixelCnnInt
/// [`PixelCnn8`]: super::PixelCnn8
pub trait PixelNet: Sync {
    /// One pixel's working memory.
    type State: Send;
    /// The model file's metadata (the session reads its `adapt` field).
    fn meta(&self) -> &ModelMeta;
    fn arch(&self) -> &Arch;
    /// Multiply-accumulates per pixel, all channels.
    fn macs_per_pixel(&self) -> usize;
    /// Relative cost of one multiply-accumulate (the 8-bit engine's: 1), for deciding when a
    /// wavefront is worth sharing between threads.
    const MAC_COST: usize;
    /// Bytes a [`PixelNet::State`] holds (for the working-memory bound).
    fn state_bytes(&self) -> usize;
    fn new_state(&self) -> Self::State;
    /// Starts pixel (`x`, `y`) of the `w`×`h` context image `ctx` (3 samples a pixel).
    fn begin_pixel(&self, st: &mut Self::State, ctx: &[u8], w: u32, h: u32, x: u32, y: u32);
    /// Records channel `c`'s value of the current pixel (the later channels see it).
    fn set_channel(&self, st: &mut Self::State, c: usize, value: u8);
    /// Channel `c`'s mixture parameters (`3 · components`, in 2^-16) into `out`; channels in
    /// order, each after the previous ones were set.
    fn channel_params(&self, st: &mut Self::State, c: usize, out: &mut [i32]);

    /// [`PixelNet::channel_params`] of several pixels (`states[i]` into `outs[i]`): the same
    /// integers, for engines that compute pixels together faster than one by one.
    fn channel_params_multi(&self, states: &mut [Self::State], c: usize, outs: &mut [Vec<i32>]) {
        for (st, out) in states.iter_mut().zip(outs) {
            self.channel_params(st, c, out);
        }
    }

    /// How many pixels [`PixelNet::channel_params_multi`] computes faster together than one by
    /// one (1: none; the 8-bit engine's AVX-512 VNNI kernels: 4).
    fn pixels_together(&self) -> usize {
        1
    }
}

/// A set of planes coded together: `channels` (1 or 3) planes starting at `first` in the layout.
#[derive(Clone, Copy, Debug)]
struct PlaneSet {
    first: usize,
    channels: usize,
}

/// Coding session for one image (encoder and decoder alike).
pub struct PixelCnnSession<'m, N: PixelNet> {
    model: &'m N,
    width: u32,
    height: u32,
    /// Samples per pixel of the image (1–4).
    stride: usize,
    sets: Vec<PlaneSet>,
    set: usize,
    /// The current plane set as the network sees it: 3 channels per pixel (gray replicated).
    ctx: Vec<u8>,
    wavefronts: u64,
    t: u64,
    channel: usize,
    front: Vec<(u32, u32)>,
    states: Vec<N::State>,
    params: Vec<Vec<i32>>,
    /// Parameters computed beforehand for every pixel of each plane set (`[pixel][outputs]`,
    /// flat), e.g. by libtorch in one teacher-forced pass; replayed instead of running the engine.
    precomputed: Option<Vec<Vec<i32>>>,
    /// The adaptive stage, for models that have one; reset for every plane set.
    adapter: Option<ScaleAdapter>,
    /// The current group's buckets and model distributions, for the adapter's update.
    adapted: Vec<(usize, LogisticMixture)>,
    control: DecodeControl<'m>,
}

impl<'m, N: PixelNet> PixelCnnSession<'m, N> {
    /// A session for a `width`×`height` image of `layout`; errors (instead of aborting) when its
    /// context image cannot be allocated.
    pub fn new(model: &'m N, width: u32, height: u32, layout: ChannelLayout) -> Result<Self> {
        let mut sets = vec![PlaneSet {
            first: 0,
            channels: layout.color_channels(),
        }];
        if layout.has_alpha() {
            sets.push(PlaneSet {
                first: layout.color_channels(),
                channels: 1,
            });
        }
        let arch = model.arch();
        // 3 samples a pixel: the network's view of the current plane set.
        let ctx_len = crate::image::sample_count(width, height, ChannelLayout::Rgb)?;
        let mut ctx = crate::image::try_alloc(ctx_len)?;
        ctx.resize(ctx_len as usize, 0);
        Ok(PixelCnnSession {
            model,
            width,
            height,
            stride: layout.channels(),
            sets,
            set: 0,
            ctx,
            wavefronts: arch.wavefronts(width, height),
            t: 0,
            channel: 0,
            front: Vec::new(),
            states: Vec::new(),
            params: Vec::new(),
            precomputed: None,
            adapter: (model.meta().adapt.as_deref() == Some(SCALE_SELECT_1))
                .then(ScaleAdapter::new),
            adapted: Vec::new(),
            control: DecodeControl::default(),
        })
    }

    /// Reports progress to `control` once per wavefront, and stops when it is cancelled.
    pub fn with_control(mut self, control: DecodeControl<'m>) -> Self {
        self.control = control;
        self
    }

    /// A session that replays precomputed parameters (encoding only: they were computed from the
    /// true samples). `per_set[s]` holds `width·height·outputs` values for plane set `s` (colour,
    /// then alpha), pixel-major.
    pub fn with_precomputed(
        model: &'m N,
        width: u32,
        height: u32,
        layout: ChannelLayout,
        per_set: Vec<Vec<i32>>,
    ) -> Result<Self> {
        let mut s = PixelCnnSession::new(model, width, height, layout)?;
        s.precomputed = Some(per_set);
        Ok(s)
    }
}

/// Upper bound, in bytes, of what coding a `width`×`height` image of `layout` allocates (the
/// session's context image, the coder's output and bookkeeping, one wavefront's engine states
/// and distributions). Saturates instead of overflowing.
pub fn working_memory<N: PixelNet>(
    model: &N,
    width: u32,
    height: u32,
    layout: ChannelLayout,
) -> u64 {
    let a = model.arch();
    let pixels = width as u64 * height as u64;
    // context image (3 bytes a pixel) + decoded samples + their "seen" flags
    let image_bytes = pixels.saturating_mul(3 + 2 * layout.channels() as u64);
    // A wavefront t = x + (r+1)·y holds at most one pixel per row and per r+1 columns.
    let front = (height as u64).min(width as u64 / (a.radius as u64 + 1) + 1);
    let per_pixel = (model.state_bytes() + 4 * a.params_per_channel()) as u64
        + std::mem::size_of::<(u32, u32)>() as u64
        + std::mem::size_of::<(usize, LogisticMixture)>() as u64;
    image_bytes.saturating_add(front.saturating_mul(per_pixel))
}

/// Whether a wavefront of `n` pixels has enough work to share between threads: handing a
/// group to rayon costs microseconds, more than a small network spends on a few pixels. Either
/// way the results are the same integers (each pixel is computed alone).
fn worth_threads<N: PixelNet>(model: &N, n: usize) -> bool {
    // About 30 µs of one channel group's work (measured on 2 Zen 3 cores).
    const MIN_WORK: usize = 800_000;
    n > 1 && n * model.macs_per_pixel() * N::MAC_COST / model.arch().channels >= MIN_WORK
}

impl<N: PixelNet> AutoregressiveModel for PixelCnnSession<'_, N> {
    type Dist = LogisticMixture;

    fn sample_count(&self) -> usize {
        self.width as usize * self.height as usize * self.stride
    }

    fn next_group(&mut self, out: &mut Vec<(usize, LogisticMixture)>) -> Result<bool> {
        out.clear();
        let model = self.model;
        let arch = *model.arch();
        if self.channel == 0 {
            if self.t == self.wavefronts {
                self.set += 1;
                self.t = 0;
                self.ctx.fill(0);
                if let Some(adapter) = self.adapter.as_mut() {
                    *adapter = ScaleAdapter::new();
                }
            }
            let total = self.wavefronts.saturating_mul(self.sets.len() as u64);
            let done = self.wavefronts.saturating_mul(self.set as u64) + self.t;
            self.control.step(done.min(total), total)?;
            if self.set >= self.sets.len() {
                return Ok(false);
            }
            arch.wavefront_pixels(self.t, self.width, self.height, &mut self.front);
            let n = self.front.len();
            while self.states.len() < n {
                self.states.push(model.new_state());
                self.params.push(vec![0; arch.params_per_channel()]);
            }
            if self.precomputed.is_none() {
                let (ctx, w, h) = (&self.ctx, self.width, self.height);
                let begin = |(st, &(x, y)): (&mut N::State, &(u32, u32))| {
                    model.begin_pixel(st, ctx, w, h, x, y)
                };
                if worth_threads(model, n) {
                    self.states[..n]
                        .par_iter_mut()
                        .zip(&self.front)
                        .for_each(begin);
                } else {
                    self.states[..n].iter_mut().zip(&self.front).for_each(begin);
                }
            }
        }
        let n = self.front.len();
        let c = self.channel;
        if let Some(pre) = &self.precomputed {
            let (outputs, p) = (arch.outputs(), arch.params_per_channel());
            for (i, &(x, y)) in self.front.iter().enumerate() {
                let base = (y as usize * self.width as usize + x as usize) * outputs + c * p;
                self.params[i].copy_from_slice(&pre[self.set][base..base + p]);
            }
        } else {
            let run =
                |(st, p): (&mut [N::State], &mut [Vec<i32>])| model.channel_params_multi(st, c, p);
            let (states, params) = (&mut self.states[..n], &mut self.params[..n]);
            if worth_threads(model, n) {
                // Groups no larger than leave every thread a share of the front.
                let per_thread = n.div_ceil(rayon::current_num_threads()).max(1);
                let chunk = model.pixels_together().min(per_thread).max(1);
                states
                    .par_chunks_mut(chunk)
                    .zip(params.par_chunks_mut(chunk))
                    .for_each(run);
            } else {
                let chunk = model.pixels_together().max(1);
                states
                    .chunks_mut(chunk)
                    .zip(params.chunks_mut(chunk))
                    .for_each(run);
            }
        }
        // The group's distributions, in parallel where it pays (each depends only on its own
        // parameters and the adapter's state, which the group does not change).
        // Distributions (a few hundred bytes each) are built where they stay, in `out` and
        // `adapted`: moving them through a temporary vector cost 5% of a 32x32 decode (perf).
        let set = self.sets[self.set];
        let (width, stride, worth) = (self.width as usize, self.stride, worth_threads(model, n));
        let index =
            |&(x, y): &(u32, u32)| (y as usize * width + x as usize) * stride + set.first + c;
        let model_dist = |p: &Vec<i32>| {
            let (l, m, s) = split_params(p, arch.components);
            LogisticMixture::from_params(l, m, s)
        };
        let (params, front) = (&self.params[..n], &self.front[..n]);
        self.adapted.clear();
        match self.adapter.as_ref() {
            None => {
                let one = |(p, xy): (&Vec<i32>, &(u32, u32))| (index(xy), model_dist(p));
                if worth {
                    out.par_extend(params.par_iter().zip(front).map(one));
                } else {
                    out.extend(params.iter().zip(front).map(one));
                }
            }
            Some(adapter) => {
                // The group's distributions each depend only on their own parameters and the
                // adapter's state, which the group does not change.
                let one = |(p, xy): (&Vec<i32>, &(u32, u32))| {
                    let base = model_dist(p);
                    let (bucket, dist) = adapter.adapt(c, &base);
                    ((index(xy), dist), (bucket, base))
                };
                if worth {
                    params
                        .par_iter()
                        .zip(front)
                        .map(one)
                        .unzip_into_vecs(out, &mut self.adapted);
                } else {
                    for (coded, base) in params.iter().zip(front).map(one) {
                        out.push(coded);
                        self.adapted.push(base);
                    }
                }
            }
        }
        Ok(true)
    }

    fn commit(&mut self, values: &[u8]) {
        let set = self.sets[self.set];
        let c = self.channel;
        for (i, (&(x, y), &v)) in self.front.iter().zip(values).enumerate() {
            let p = (y as usize * self.width as usize + x as usize) * 3;
            if set.channels == 3 {
                self.ctx[p + c] = v;
            } else {
                self.ctx[p..p + 3].fill(v);
            }
            self.model.set_channel(&mut self.states[i], c, v);
        }
        if let Some(adapter) = self.adapter.as_mut() {
            // Candidate costs in parallel where it pays, added in coding order (the spec's).
            let costs = |((_, base), &v): (&(usize, LogisticMixture), &u8)| {
                ScaleAdapter::candidate_costs(base, v as u32)
            };
            let all: Vec<_> = if worth_threads(self.model, self.adapted.len()) {
                self.adapted.par_iter().zip(values).map(costs).collect()
            } else {
                self.adapted.iter().zip(values).map(costs).collect()
            };
            for (&(bucket, _), c) in self.adapted.iter().zip(&all) {
                adapter.add(bucket, c);
            }
        }
        self.channel += 1;
        if self.channel == set.channels {
            self.channel = 0;
            self.t += 1;
        }
    }
}
