//! The shape of a local-context PixelCNN: which neighbours a sample sees and how the layers are
//! masked so the network stays causal. Shared by the float (training) and integer (coding)
//! networks, so both are wired identically by construction.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Hyperparameters of a local-context PixelCNN (NeLLoC-style: a bounded causal window followed
/// by per-pixel layers, so a sample depends on a fixed neighbourhood whatever the image size).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Arch {
    /// Context radius `r`: rows `y−r..y−1` in columns `x−r..=x+r`, and row `y` in `x−r..x−1`.
    pub radius: u32,
    /// Colour channels the network models jointly (3: R, G, B). Gray images use channel 0 with
    /// the gray value replicated into every context channel.
    pub channels: usize,
    /// Width of the hidden layers; a multiple of `channels` (one group of units per channel).
    pub hidden: usize,
    /// Number of hidden-to-hidden layers after the first layer.
    pub hidden_layers: usize,
    /// Logistic mixture components per sample.
    pub components: usize,
}

/// Fixed-point conventions of the integer network (part of the model format).
pub mod fixed {
    /// Network inputs: sample value minus 128 (real value: input / 2^7); validity flag 128.
    pub const INPUT_FRAC: u32 = 7;
    /// Bound on the magnitude of any network input.
    pub const INPUT_BOUND: i64 = 128;
    /// Hidden activations: real value = activation / 2^10.
    pub const ACT_FRAC: u32 = 10;
    /// Hidden activations are clamped to `[0, ACT_MAX]` (real: `[0, 16)`): a capped ReLU.
    pub const ACT_MAX: i32 = (16 << ACT_FRAC) - 1;
    /// The float model's activation cap, equal to the integer one.
    pub const ACT_MAX_REAL: f64 = ACT_MAX as f64 / (1 << ACT_FRAC) as f64;
    /// Outputs: 2^-16 units, the coding layer's parameter scale.
    pub const OUTPUT_FRAC: u32 = crate::coding::logistic::PARAM_FRAC_BITS;
    /// Outputs are clamped to ±OUTPUT_MAX (real ±256).
    pub const OUTPUT_MAX: i32 = 256 << OUTPUT_FRAC;
}

impl Arch {
    pub fn validate(&self) -> Result<()> {
        let ok = (1..=8).contains(&self.radius)
            && self.channels == 3
            && self.hidden >= self.channels
            && self.hidden.is_multiple_of(self.channels)
            && self.hidden <= 4096
            && self.hidden_layers <= 16
            && (1..=crate::coding::logistic::MAX_COMPONENTS).contains(&self.components);
        if ok {
            Ok(())
        } else {
            Err(Error::InvalidModel(format!(
                "unsupported PixelCNN architecture {self:?}"
            )))
        }
    }

    /// Context offsets `(dy, dx)` in input order: rows above (top to bottom, left to right),
    /// then the current row left of the pixel.
    pub fn offsets(&self) -> Vec<(i32, i32)> {
        let r = self.radius as i32;
        let mut v = Vec::new();
        for dy in -r..0 {
            for dx in -r..=r {
                v.push((dy, dx));
            }
        }
        for dx in -r..0 {
            v.push((0, dx));
        }
        v
    }

    /// Number of context positions `P = r(2r+1) + r`.
    pub fn positions(&self) -> usize {
        let r = self.radius as usize;
        r * (2 * r + 1) + r
    }

    /// Length of the context part of the input: per position, each channel then a validity flag.
    pub fn context_len(&self) -> usize {
        self.positions() * (self.channels + 1)
    }

    /// Input vector length: context, then the current pixel's channels.
    pub fn input_len(&self) -> usize {
        self.context_len() + self.channels
    }

    /// Parameters per channel: logits, means, log-scales, `components` each.
    pub fn params_per_channel(&self) -> usize {
        3 * self.components
    }

    pub fn outputs(&self) -> usize {
        self.channels * self.params_per_channel()
    }

    /// `(inputs, outputs)` of layer `l` (first, hidden…, output), as both engines wire them.
    pub fn layer_shape(&self, l: usize) -> (usize, usize) {
        match l {
            0 => (self.input_len(), self.hidden),
            _ if l == self.hidden_layers + 1 => (self.hidden + self.input_len(), self.outputs()),
            _ => (self.hidden, self.hidden),
        }
    }

    /// Hidden units of channel group `g`.
    pub fn group_units(&self, g: usize) -> std::ops::Range<usize> {
        let n = self.hidden / self.channels;
        g * n..(g + 1) * n
    }

    pub fn group_of_unit(&self, u: usize) -> usize {
        u / (self.hidden / self.channels)
    }

    /// May first-layer unit `u` see input `i`? (Context: always; current pixel's channel `c`:
    /// only for groups after `c`.)
    pub fn mask_first(&self, u: usize, i: usize) -> bool {
        i < self.context_len() || i - self.context_len() < self.group_of_unit(u)
    }

    /// May hidden unit `u` see unit `v` of the layer below?
    pub fn mask_hidden(&self, u: usize, v: usize) -> bool {
        self.group_of_unit(v) <= self.group_of_unit(u)
    }

    /// May output `o` see input `j` of the output layer (hidden units, then the input vector)?
    pub fn mask_output(&self, o: usize, j: usize) -> bool {
        let c = o / self.params_per_channel();
        if j < self.hidden {
            self.group_of_unit(j) <= c
        } else {
            let i = j - self.hidden;
            i < self.context_len() || i - self.context_len() < c
        }
    }

    /// Wavefront index `t = x + (r+1)·y` of a pixel (the coding schedule of the spec).
    pub fn wavefront(&self, x: u32, y: u32) -> u64 {
        x as u64 + (self.radius as u64 + 1) * y as u64
    }

    /// Number of wavefronts of a `width`×`height` image.
    pub fn wavefronts(&self, width: u32, height: u32) -> u64 {
        self.wavefront(width - 1, height - 1) + 1
    }

    /// Pixels `(x, y)` of wavefront `t`, by increasing `y`.
    pub fn wavefront_pixels(&self, t: u64, width: u32, height: u32, out: &mut Vec<(u32, u32)>) {
        out.clear();
        let step = self.radius as u64 + 1;
        let y_max = (t / step).min(height as u64 - 1);
        let y_min = if t >= width as u64 {
            (t - (width as u64 - 1)).div_ceil(step)
        } else {
            0
        };
        for y in y_min..=y_max {
            out.push(((t - step * y) as u32, y as u32));
        }
    }

    /// Calls `f(k, pixel)` for each context position `k` of pixel (`x`, `y`) in input order
    /// (as `offsets()`, without allocating: this runs once per pixel): `pixel` is that
    /// neighbour's `channels` samples in `ctx`, or `None` outside the image.
    #[inline]
    fn for_each_neighbour<'c>(
        &self,
        ctx: &'c [u8],
        (width, height): (u32, u32),
        (x, y): (u32, u32),
        mut f: impl FnMut(usize, Option<&'c [u8]>),
    ) {
        let c = self.channels;
        let r = self.radius as i64;
        let rows_above = (-r..0).flat_map(|dy| (-r..=r).map(move |dx| (dy, dx)));
        let row_left = (-r..0).map(|dx| (0, dx));
        for (k, (dy, dx)) in rows_above.chain(row_left).enumerate() {
            let (yy, xx) = (y as i64 + dy, x as i64 + dx);
            if yy >= 0 && xx >= 0 && xx < width as i64 && yy < height as i64 {
                let base = (yy as usize * width as usize + xx as usize) * c;
                f(k, Some(&ctx[base..base + c]));
            } else {
                f(k, None);
            }
        }
    }

    /// Fills the context part of an input vector for pixel (`x`, `y`) of `ctx`, an image of
    /// `channels` interleaved samples per pixel: per position the samples minus 128 and a
    /// validity flag of 128; zeros outside the image.
    pub fn gather_context(
        &self,
        ctx: &[u8],
        width: u32,
        height: u32,
        x: u32,
        y: u32,
        out: &mut [i32],
    ) {
        let c = self.channels;
        self.for_each_neighbour(ctx, (width, height), (x, y), |k, pixel| {
            let slot = &mut out[k * (c + 1)..(k + 1) * (c + 1)];
            match pixel {
                Some(p) => {
                    for (s, &v) in slot.iter_mut().zip(p) {
                        *s = v as i32 - 128;
                    }
                    slot[c] = fixed::INPUT_BOUND as i32;
                }
                None => slot.fill(0),
            }
        });
    }
}

impl Arch {
    /// The 8-bit engine's input encoding of input `i`'s zero: inputs are bytes `u = v + zero(i)`
    /// where `v` is the 32-bit engine's input (samples: `value − 128`, so `u` is the sample
    /// value and 128 outside the image; validity flags: 128 or 0, unchanged).
    pub fn input_zero_u8(&self, i: usize) -> u8 {
        let is_flag = i < self.context_len() && i % (self.channels + 1) == self.channels;
        if is_flag {
            0
        } else {
            128
        }
    }

    /// [`Arch::gather_context`] in the 8-bit engine's encoding ([`Arch::input_zero_u8`]).
    pub fn gather_context_u8(
        &self,
        ctx: &[u8],
        width: u32,
        height: u32,
        x: u32,
        y: u32,
        out: &mut [u8],
    ) {
        let c = self.channels;
        self.for_each_neighbour(ctx, (width, height), (x, y), |k, pixel| {
            let slot = &mut out[k * (c + 1)..(k + 1) * (c + 1)];
            match pixel {
                // Three samples copied one by one: a `copy_from_slice` of a length known only at
                // run time is a call to memmove (6% of a 32x32 decode, perf).
                Some(&[r, g, b]) if c == 3 => {
                    slot[..4].copy_from_slice(&[r, g, b, fixed::INPUT_BOUND as u8]);
                }
                Some(p) => {
                    slot[..c].copy_from_slice(p);
                    slot[c] = fixed::INPUT_BOUND as u8;
                }
                None => {
                    slot[..c].fill(128);
                    slot[c] = 0;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arch() -> Arch {
        Arch {
            radius: 3,
            channels: 3,
            hidden: 12,
            hidden_layers: 1,
            components: 2,
        }
    }

    #[test]
    fn the_8_bit_context_is_the_32_bit_one_plus_its_zero_point() {
        let a = arch();
        let (w, h) = (7u32, 5u32);
        let ctx: Vec<u8> = (0..w * h * 3).map(|i| (i * 37 % 256) as u8).collect();
        let mut v32 = vec![0i32; a.context_len()];
        let mut v8 = vec![0u8; a.context_len()];
        for y in 0..h {
            for x in 0..w {
                a.gather_context(&ctx, w, h, x, y, &mut v32);
                a.gather_context_u8(&ctx, w, h, x, y, &mut v8);
                for i in 0..a.context_len() {
                    assert_eq!(
                        v8[i] as i32,
                        v32[i] + a.input_zero_u8(i) as i32,
                        "({x},{y}) {i}"
                    );
                }
            }
        }
    }

    #[test]
    fn wavefronts_cover_every_pixel_once_in_causal_order() {
        let a = arch();
        for (w, h) in [(1, 1), (1, 9), (9, 1), (5, 3), (32, 32), (7, 40)] {
            let mut seen = vec![false; (w * h) as usize];
            let mut px = Vec::new();
            for t in 0..a.wavefronts(w, h) {
                a.wavefront_pixels(t, w, h, &mut px);
                for &(x, y) in &px {
                    assert!(!seen[(y * w + x) as usize]);
                    seen[(y * w + x) as usize] = true;
                    // Every context pixel is on an earlier wavefront.
                    for (dy, dx) in a.offsets() {
                        let (yy, xx) = (y as i64 + dy as i64, x as i64 + dx as i64);
                        if yy >= 0 && xx >= 0 && xx < w as i64 {
                            assert!(a.wavefront(xx as u32, yy as u32) < t);
                        }
                    }
                }
            }
            assert!(seen.iter().all(|&s| s), "{w}x{h}");
        }
    }

    #[test]
    fn masks_are_causal() {
        let a = arch();
        // Group 0 (R) never sees the current pixel; group 2 (B) sees R and G, not B.
        assert!(!a.mask_first(0, a.context_len()));
        assert!(a.mask_first(8, a.context_len() + 1) && !a.mask_first(8, a.context_len() + 2));
        // Output of channel 0 never sees the current pixel nor groups 1, 2.
        let o = 0;
        assert!(!a.mask_output(o, a.hidden + a.context_len()) && !a.mask_output(o, 4));
    }
}
