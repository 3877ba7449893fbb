//! The flow of one group of planes, both ways (SPEC.md, "The flow of one plane"): squeezes,
//! couplings, factor-outs, and the conditions of each level.
//!
//! Tensors are [`Chw`]: `i32` values, channels first. Network inputs are built from them as
//! bytes, positions first (`[h][w][channels]`), which is what the convolutions read.

use std::cell::RefCell;

use super::model::{FlowModel, FlowNet, NetScratch, COND_CHANNELS};
use crate::coding::latent::{LatentPrior, LatentWindow};

/// `channels × height × width` integers, channel-major.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chw {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub data: Vec<i32>,
}

impl Chw {
    pub fn zeros(c: usize, h: usize, w: usize) -> Chw {
        Chw {
            c,
            h,
            w,
            data: vec![0; c * h * w],
        }
    }

    pub fn plane(&self, c: usize) -> &[i32] {
        &self.data[c * self.h * self.w..(c + 1) * self.h * self.w]
    }

    fn plane_mut(&mut self, c: usize) -> &mut [i32] {
        let n = self.h * self.w;
        &mut self.data[c * n..(c + 1) * n]
    }

    /// Channels `range` as a tensor of their own.
    pub fn channels(&self, range: std::ops::Range<usize>) -> Chw {
        let n = self.h * self.w;
        Chw {
            c: range.len(),
            h: self.h,
            w: self.w,
            data: self.data[range.start * n..range.end * n].to_vec(),
        }
    }

    /// `self` then `rest`, channel-wise.
    pub fn concat(mut self, rest: &Chw) -> Chw {
        debug_assert_eq!((self.h, self.w), (rest.h, rest.w));
        self.data.extend_from_slice(&rest.data);
        self.c += rest.c;
        self
    }

    /// Channel `i` becomes channel `c − 1 − i` (its own inverse).
    pub fn reverse_channels(&mut self) {
        let n = self.h * self.w;
        for i in 0..self.c / 2 {
            let j = self.c - 1 - i;
            let (a, b) = self.data.split_at_mut(j * n);
            a[i * n..(i + 1) * n].swap_with_slice(&mut b[..n]);
        }
    }

    /// `4c` channels of `h/2 × w/2`: channel `4c + 2dy + dx` at `(y, x)` is channel `c` at
    /// `(2y + dy, 2x + dx)`. `h` and `w` are even.
    pub fn squeeze(&self) -> Chw {
        let (h2, w2) = (self.h / 2, self.w / 2);
        let mut out = Chw::zeros(4 * self.c, h2, w2);
        for c in 0..self.c {
            let src = self.plane(c);
            for d in 0..4 {
                let (dy, dx) = (d / 2, d % 2);
                let dst = out.plane_mut(4 * c + d);
                for y in 0..h2 {
                    for x in 0..w2 {
                        dst[y * w2 + x] = src[(2 * y + dy) * self.w + 2 * x + dx];
                    }
                }
            }
        }
        out
    }

    /// The inverse of [`Chw::squeeze`].
    pub fn unsqueeze(&self) -> Chw {
        let (h, w) = (self.h * 2, self.w * 2);
        let mut out = Chw::zeros(self.c / 4, h, w);
        for c in 0..out.c {
            for d in 0..4 {
                let (dy, dx) = (d / 2, d % 2);
                let src = self.plane(4 * c + d);
                let dst = out.plane_mut(c);
                for y in 0..self.h {
                    for x in 0..self.w {
                        dst[(2 * y + dy) * w + 2 * x + dx] = src[y * self.w + x];
                    }
                }
            }
        }
        out
    }
}

/// The condition of one level: `[h][w][12]` bytes (3 slots, each squeezed).
pub struct Condition {
    pub h: usize,
    pub w: usize,
    pub bytes: Vec<u8>,
}

/// The conditions of levels `1 ..= levels` from the three slots (each `h × w` bytes,
/// extended): level 1 squeezes the slots; each next level pools 2×2 blocks
/// (`floor((a + b + c + d + 2) / 4)`) and squeezes again.
pub fn conditions(slots: [&[u8]; 3], h: usize, w: usize, levels: usize) -> Vec<Condition> {
    let mut current: Vec<Vec<u8>> = slots.iter().map(|s| s.to_vec()).collect();
    let (mut ch, mut cw) = (h, w);
    let mut out = Vec::with_capacity(levels);
    for level in 1..=levels {
        if level > 1 {
            current = current.iter().map(|s| pool(s, ch, cw)).collect();
            ch /= 2;
            cw /= 2;
        }
        let (h2, w2) = (ch / 2, cw / 2);
        let mut bytes = vec![0u8; h2 * w2 * COND_CHANNELS];
        for (slot, s) in current.iter().enumerate() {
            for y in 0..h2 {
                for x in 0..w2 {
                    for d in 0..4 {
                        let (dy, dx) = (d / 2, d % 2);
                        bytes[(y * w2 + x) * COND_CHANNELS + 4 * slot + d] =
                            s[(2 * y + dy) * cw + 2 * x + dx];
                    }
                }
            }
        }
        out.push(Condition {
            h: h2,
            w: w2,
            bytes,
        });
    }
    out
}

fn pool(s: &[u8], h: usize, w: usize) -> Vec<u8> {
    let (h2, w2) = (h / 2, w / 2);
    let mut out = vec![0u8; h2 * w2];
    for y in 0..h2 {
        for x in 0..w2 {
            let at = |dy: usize, dx: usize| s[(2 * y + dy) * w + 2 * x + dx] as u32;
            out[y * w2 + x] = ((at(0, 0) + at(0, 1) + at(1, 0) + at(1, 1) + 2) / 4) as u8;
        }
    }
    out
}

/// A network input: channels `range` of `z` as bytes `clamp(v + 128, 0, 255)`, then the
/// condition's 12 bytes, at every position.
fn net_input(z: Option<(&Chw, std::ops::Range<usize>)>, cond: &Condition) -> Vec<u8> {
    let n = cond.h * cond.w;
    let zc = z.as_ref().map_or(0, |(_, r)| r.len());
    let width = zc + COND_CHANNELS;
    let mut bytes = vec![0u8; n * width];
    if let Some((z, range)) = z {
        for (k, c) in range.enumerate() {
            for (p, &v) in z.plane(c).iter().enumerate() {
                bytes[p * width + k] = (v + 128).clamp(0, 255) as u8;
            }
        }
    }
    for p in 0..n {
        bytes[p * width + zc..(p + 1) * width]
            .copy_from_slice(&cond.bytes[p * COND_CHANNELS..(p + 1) * COND_CHANNELS]);
    }
    bytes
}

/// One group's flow: the flow that transforms it, the group's role and its levels' conditions.
pub struct PlaneFlow<'a> {
    pub model: &'a FlowModel,
    pub role: usize,
    pub conditions: &'a [Condition],
    /// The networks' hidden byte grids, reused from one network to the next (megabytes at
    /// level 1 of a photograph: allocating and zeroing them for each of the dozens of networks
    /// was serial work on the decoder's critical path).
    scratch: RefCell<NetScratch>,
}

/// The priors of one level's latents as the prior network gave them: `[h·w][3·k·m]` outputs,
/// output `(part·k + i)·m + j` being part (logit, mean, log-scale) of component `i` of latent
/// channel `j` (SPEC.md).
pub struct PriorGrid {
    /// `[positions][3·k·m]`.
    pub out: Vec<i32>,
    /// Mixture components.
    pub k: usize,
    /// Latent channels.
    pub m: usize,
}

impl PriorGrid {
    /// Positions.
    pub fn positions(&self) -> usize {
        self.out.len() / (3 * self.k * self.m)
    }

    /// Latents in coding order (channel, then position).
    pub fn len(&self) -> usize {
        self.out.len() / (3 * self.k)
    }

    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    /// The prior of the `index`-th latent in coding order.
    pub fn at(&self, index: usize) -> LatentPrior {
        let n = self.positions();
        self.at_position(index / n, index % n)
    }

    /// The windows of the latents `range` (in coding order), as [`PriorGrid::at`] gives their
    /// priors, walking channel and position without a division per latent.
    pub fn windows(&self, range: std::ops::Range<usize>) -> Vec<LatentWindow> {
        let n = self.positions();
        if n == 0 {
            return Vec::new();
        }
        let (mut j, mut p) = (range.start / n, range.start % n);
        let mut out = Vec::with_capacity(range.len());
        for _ in range {
            out.push(self.at_position(j, p).window());
            p += 1;
            if p == n {
                (j, p) = (j + 1, 0);
            }
        }
        out
    }

    /// The prior of latent channel `j` at position `p`.
    fn at_position(&self, j: usize, p: usize) -> LatentPrior {
        const MAX: usize = crate::coding::latent::MAX_LATENT_COMPONENTS;
        let (k, m) = (self.k, self.m);
        // Output (part·k + i)·m + j of the position's row: every m-th value from j on.
        let row = &self.out[p * 3 * k * m + j..(p + 1) * 3 * k * m];
        let mut parts = [0i32; 3 * MAX];
        for (v, &x) in parts.iter_mut().zip(row.iter().step_by(m)).take(3 * k) {
            *v = x;
        }
        LatentPrior::new(&parts[..k], &parts[k..2 * k], &parts[2 * k..3 * k])
    }
}

/// Latents of one level in coding order (channel, row, column), with their priors.
pub struct Latents {
    pub values: Chw,
    pub priors: PriorGrid,
}

impl<'a> PlaneFlow<'a> {
    pub fn new(model: &'a FlowModel, role: usize, conditions: &'a [Condition]) -> PlaneFlow<'a> {
        PlaneFlow {
            model,
            role,
            conditions,
            scratch: RefCell::new(NetScratch::default()),
        }
    }

    fn run(&self, net: &FlowNet, input: &[u8], cond: &Condition) -> Vec<i32> {
        let mut out = vec![0i32; cond.h * cond.w * net.outputs()];
        net.run(
            self.model.engine,
            self.role,
            input,
            (cond.h, cond.w),
            &mut self.scratch.borrow_mut(),
            &mut out,
        );
        out
    }

    /// `z[half + i] += sign · t[i]` for the coupling `net` (sign −1 undoes it).
    fn couple(&self, net: &FlowNet, z: &mut Chw, cond: &Condition, sign: i32) {
        let half = z.c / 2;
        let t = self.run(net, &net_input(Some((z, 0..half)), cond), cond);
        let n = z.h * z.w;
        for i in 0..half {
            let plane = z.plane_mut(half + i);
            for p in 0..n {
                plane[p] += sign * t[p * half + i];
            }
        }
    }

    /// The priors of a level's latents from `net` on `kept` (none for the top prior).
    fn priors(&self, net: &FlowNet, kept: Option<&Chw>, cond: &Condition) -> PriorGrid {
        let input = net_input(kept.map(|k| (k, 0..k.c)), cond);
        let k = self.model.meta.components;
        PriorGrid {
            out: self.run(net, &input, cond),
            k,
            m: net.outputs() / (3 * k),
        }
    }

    /// The encoder's direction: the group's extended planes (the flow's `colours` planes of
    /// `h × w` samples, both multiples of `2^L`) → the latents of levels `1 ..= L` with their
    /// priors.
    pub fn forward(&self, planes: &[&[u8]], h: usize, w: usize) -> Vec<Latents> {
        let levels = self.model.meta.levels;
        debug_assert_eq!(planes.len(), self.model.meta.colours);
        let mut z = Chw {
            c: planes.len(),
            h,
            w,
            data: planes
                .iter()
                .flat_map(|p| p.iter().map(|&v| v as i32 - 128))
                .collect(),
        };
        let mut out = Vec::with_capacity(levels);
        for l in 1..=levels {
            let cond = &self.conditions[l - 1];
            z = z.squeeze();
            for net in self.model.couplings(l) {
                self.couple(net, &mut z, cond, 1);
                z.reverse_channels();
            }
            let prior = self.model.prior(l);
            if l < levels {
                let half = z.c / 2;
                let kept = z.channels(half..z.c);
                let priors = self.priors(prior, Some(&kept), cond);
                out.push(Latents {
                    values: z.channels(0..half),
                    priors,
                });
                z = kept;
            } else {
                let priors = self.priors(prior, None, cond);
                out.push(Latents {
                    values: z.clone(),
                    priors,
                });
            }
        }
        out
    }

    /// The decoder's direction: `pop(priors)` gives the values of each level's latents
    /// (levels `L` down to 1, as the spec orders them); returns the group's planes, samples
    /// minus 128, as `i32` (the caller checks their range).
    pub fn inverse<E>(
        &self,
        mut pop: impl FnMut(&PriorGrid) -> Result<Vec<i32>, E>,
    ) -> Result<Chw, E> {
        let levels = self.model.meta.levels;
        let top = &self.conditions[levels - 1];
        let priors = self.priors(self.model.prior(levels), None, top);
        let c = self.model.meta.channels(levels);
        let mut z = Chw {
            c,
            h: top.h,
            w: top.w,
            data: pop(&priors)?,
        };
        for l in (1..=levels).rev() {
            let cond = &self.conditions[l - 1];
            if l < levels {
                // z is level l's kept half.
                let priors = self.priors(self.model.prior(l), Some(&z), cond);
                let y = Chw {
                    c: z.c,
                    h: z.h,
                    w: z.w,
                    data: pop(&priors)?,
                };
                z = y.concat(&z);
            }
            for net in self.model.couplings(l).iter().rev() {
                z.reverse_channels();
                self.couple(net, &mut z, cond, -1);
            }
            z = z.unsqueeze();
        }
        Ok(z)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squeeze_and_unsqueeze_are_inverse_and_follow_the_spec() {
        let t = Chw {
            c: 2,
            h: 4,
            w: 6,
            data: (0..48).collect(),
        };
        let s = t.squeeze();
        assert_eq!((s.c, s.h, s.w), (8, 2, 3));
        // channel 4·1 + 2·1 + 0 at (1, 2) is channel 1 at (3, 4).
        assert_eq!(s.plane(6)[3 + 2], t.plane(1)[3 * 6 + 4]);
        assert_eq!(s.unsqueeze(), t);
        let mut r = t.clone();
        r.reverse_channels();
        assert_eq!(r.plane(0), t.plane(1));
        r.reverse_channels();
        assert_eq!(r, t);
    }

    #[test]
    fn conditions_pool_with_rounding_and_squeeze_the_slots() {
        let a: Vec<u8> = (0..16).map(|v| v * 10).collect();
        let zero = vec![0u8; 16];
        let c = conditions([&a, &zero, &zero], 4, 4, 2);
        assert_eq!((c[0].h, c[0].w, c[1].h, c[1].w), (2, 2, 1, 1));
        // level 1, position (0, 1), slot 0, dy 1, dx 0: a at (1, 2) = 60.
        assert_eq!(c[0].bytes[COND_CHANNELS + 2], 60);
        // level 2: pooled (0+10+40+50+2)/4 = 25 at the top-left block.
        assert_eq!(c[1].bytes[0], 25);
    }
}
