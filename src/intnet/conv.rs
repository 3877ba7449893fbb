//! Convolutions on the 8-bit engine: a [`U8Linear`] applied at every position of a grid of byte
//! vectors, reading the 3×3 (or 1×1) neighbourhood of the position as its input (SPEC.md,
//! "Flow models", convolutions).
//!
//! Grids are row-major, channels last (`[height][width][channels]`), so the vector of one
//! position is contiguous. Outside the grid every byte is 0: a network trained with zero
//! padding on byte-valued inputs sees the same.
//!
//! [`U8Conv::forward_reference`] is the definition (the layer's own i64 reference at every
//! position). [`U8Conv::forward`] gathers each position's neighbourhood into a row (im2col one
//! row at a time, so a large image never needs an im2col buffer) and runs the engine's kernels;
//! bands of rows go to different threads, each with its own scratch. Both give the same integers
//! for every kernel and thread count, which the tests check.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::intnet::int8::{Kernel, U8Linear};

/// Spatial size of a convolution window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    /// The position itself.
    One,
    /// The 3×3 neighbourhood, rows `y−1 ..= y+1`, columns `x−1 ..= x+1`, in raster order.
    Three,
}

impl Window {
    /// Number of positions the window reads.
    pub fn taps(self) -> usize {
        match self {
            Window::One => 1,
            Window::Three => 9,
        }
    }

    fn radius(self) -> isize {
        match self {
            Window::One => 0,
            Window::Three => 1,
        }
    }
}

/// The output of a convolution: bytes (hidden layers, clamping into `0..=255`) or `i32`.
pub enum ConvOut<'a> {
    Bytes(&'a mut [u8]),
    Wide(&'a mut [i32]),
}

/// A convolution layer: `window` over grids of `channels`-byte vectors, the dense `layer`
/// (`window.taps() · channels` inputs) at every position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct U8Conv {
    pub window: Window,
    pub channels: usize,
    pub layer: U8Linear,
}

/// Positions of work below which a convolution does not split across threads (a thread's
/// start costs about as much as this many small dot products).
const MIN_POSITIONS_PER_BAND: usize = 256;

impl U8Conv {
    /// A convolution of `layer` over `channels`-byte vectors; the layer must have exactly
    /// `window.taps() · channels` inputs.
    pub fn new(window: Window, channels: usize, layer: U8Linear) -> Result<U8Conv> {
        if channels == 0 || layer.inputs() != window.taps() * channels {
            return Err(Error::InvalidModel(format!(
                "convolution over {channels} channels with a {}-input layer",
                layer.inputs()
            )));
        }
        Ok(U8Conv {
            window,
            channels,
            layer,
        })
    }

    pub fn outputs(&self) -> usize {
        self.layer.outputs()
    }

    /// Multiply-accumulates per position.
    pub fn macs_per_position(&self) -> u64 {
        (self.layer.inputs() * self.layer.outputs()) as u64
    }

    /// Writes the window's input vector of position `(y, x)` into `row` (length at least
    /// `layer.inputs()`), zeros outside the grid. A window row that lies inside the grid is
    /// one contiguous copy (positions are channels-last, so horizontal neighbours are adjacent).
    fn gather(
        &self,
        input: &[u8],
        (height, width): (usize, usize),
        y: usize,
        x: usize,
        row: &mut [u8],
    ) {
        let c = self.channels;
        let r = self.window.radius();
        let span = (2 * r as usize + 1) * c;
        let x0 = x as isize - r;
        for (k, dy) in (-r..=r).enumerate() {
            let yy = y as isize + dy;
            let dst = &mut row[k * span..(k + 1) * span];
            if yy < 0 || yy >= height as isize {
                dst.fill(0);
            } else if x0 >= 0 && x0 + 2 * r < width as isize {
                let p = (yy as usize * width + x0 as usize) * c;
                dst.copy_from_slice(&input[p..p + span]);
            } else {
                for (j, d) in dst.chunks_exact_mut(c).enumerate() {
                    let xx = x0 + j as isize;
                    if xx < 0 || xx >= width as isize {
                        d.fill(0);
                    } else {
                        let p = (yy as usize * width + xx as usize) * c;
                        d.copy_from_slice(&input[p..p + c]);
                    }
                }
            }
        }
    }

    fn check(&self, input: &[u8], (height, width): (usize, usize), out_len: usize) {
        assert_eq!(
            input.len(),
            height * width * self.channels,
            "convolution input size"
        );
        assert_eq!(
            out_len,
            height * width * self.outputs(),
            "convolution output size"
        );
    }

    /// The definition: at every position, the layer's `i64` reference on the gathered window.
    /// `input`: `[height][width][channels]`; `out`: `[height][width][outputs]`.
    pub fn forward_reference(&self, input: &[u8], size: (usize, usize), out: ConvOut<'_>) {
        let o = self.outputs();
        let mut row = vec![0u8; self.layer.inputs()];
        let mut y32 = vec![0i32; o];
        let out_len = match &out {
            ConvOut::Bytes(b) => b.len(),
            ConvOut::Wide(w) => w.len(),
        };
        self.check(input, size, out_len);
        let mut out = out;
        for y in 0..size.0 {
            for x in 0..size.1 {
                self.gather(input, size, y, x, &mut row);
                self.layer.forward_reference(&row, &mut y32);
                let p = (y * size.1 + x) * o;
                match &mut out {
                    ConvOut::Bytes(b) => {
                        for (d, &v) in b[p..p + o].iter_mut().zip(&y32) {
                            *d = v.clamp(0, 255) as u8;
                        }
                    }
                    ConvOut::Wide(w) => w[p..p + o].copy_from_slice(&y32),
                }
            }
        }
    }

    /// The engine: the same integers as [`U8Conv::forward_reference`], with `kernel`, bands
    /// of rows in parallel when there is enough work, and up to `GROUP` (4) positions per kernel
    /// call (the AVX-512 VNNI kernels load each weight once for all of them). Byte outputs
    /// require a layer that clamps into `0..=255` (a caller's model checks it at load).
    pub fn forward(&self, kernel: Kernel, input: &[u8], size: (usize, usize), out: ConvOut<'_>) {
        let o = self.outputs();
        let rows_per_band = self.rows_per_band(size.1);
        let band_len = size.1 * o * rows_per_band;
        match out {
            ConvOut::Bytes(b) => {
                self.check(input, size, b.len());
                b.par_chunks_mut(band_len)
                    .enumerate()
                    .for_each(|(band, chunk)| {
                        let mut acc = vec![0i32; GROUP * o];
                        let mut accs: Few<&mut [i32]> = acc.chunks_exact_mut(o).collect();
                        self.band(input, size, band * rows_per_band, |at, rows| {
                            let n = rows.len();
                            let mut ys: Few<&mut [u8]> =
                                chunk[at * o..(at + n) * o].chunks_exact_mut(o).collect();
                            let accs = &mut accs[..n];
                            self.layer
                                .forward_u8_multi(kernel, rows, 0..o, accs, &mut ys);
                        });
                    });
            }
            ConvOut::Wide(w) => {
                self.check(input, size, w.len());
                w.par_chunks_mut(band_len)
                    .enumerate()
                    .for_each(|(band, chunk)| {
                        self.band(input, size, band * rows_per_band, |at, rows| {
                            let n = rows.len();
                            let mut ys: Few<&mut [i32]> =
                                chunk[at * o..(at + n) * o].chunks_exact_mut(o).collect();
                            self.layer.forward_i32_multi(kernel, rows, 0..o, &mut ys);
                        });
                    });
            }
        }
    }

    /// Rows of a band: enough positions to be worth a thread.
    fn rows_per_band(&self, width: usize) -> usize {
        MIN_POSITIONS_PER_BAND.div_ceil(width.max(1)).max(1)
    }

    /// Runs `emit(index within the band of the group's first position, the group's gathered
    /// rows)` for the positions of the band of rows starting at `first_row` (as many rows as
    /// the band's output chunk holds; `emit` knows the chunk), in raster order, in groups of up
    /// to [`GROUP`] consecutive positions.
    fn band(
        &self,
        input: &[u8],
        (height, width): (usize, usize),
        first_row: usize,
        mut emit: impl FnMut(usize, &[&[u8]]),
    ) {
        let rows_per_band = self.rows_per_band(width);
        let stride = self.layer.stride();
        let mut gathered = vec![0u8; GROUP * stride];
        let last = (first_row + rows_per_band).min(height);
        let positions = (last.saturating_sub(first_row)) * width;
        // A 1×1 window over vectors as long as a padded row reads them in place.
        let in_place = self.window == Window::One && self.channels == stride;
        let mut start = 0;
        while start < positions {
            let n = GROUP.min(positions - start);
            let rows: Few<&[u8]> = if in_place {
                let p = (first_row * width + start) * self.channels;
                input[p..p + n * stride].chunks_exact(stride).collect()
            } else {
                for (k, row) in gathered.chunks_exact_mut(stride).take(n).enumerate() {
                    let at = first_row * width + start + k;
                    self.gather(input, (height, width), at / width, at % width, row);
                }
                gathered.chunks_exact(stride).take(n).collect()
            };
            emit(start, &rows);
            start += n;
        }
    }
}

/// Positions per kernel call: the AVX-512 VNNI kernels share each weight load among up to four
/// inputs (other kernels take them one by one, with the same integers).
const GROUP: usize = 4;

type Few<T> = smallvec::SmallVec<[T; GROUP]>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intnet::int8::tests::random_layer;
    use crate::intnet::int8::WeightBits;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn random_conv(
        rng: &mut StdRng,
        window: Window,
        c: usize,
        o: usize,
        bits: WeightBits,
    ) -> U8Conv {
        U8Conv::new(window, c, random_layer(rng, window.taps() * c, o, bits)).unwrap()
    }

    #[test]
    fn every_kernel_and_thread_count_matches_the_reference() {
        let mut rng = StdRng::seed_from_u64(11);
        let pools: Vec<_> = [1, 2, 3]
            .map(|n| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .build()
                    .unwrap()
            })
            .into();
        for (h, w) in [(1, 1), (1, 7), (5, 1), (3, 4), (9, 33), (40, 13)] {
            for window in [Window::One, Window::Three] {
                for bits in [WeightBits::Eight, WeightBits::Sixteen] {
                    // 64 and 128 channels: a 1×1 window reads its vectors in place.
                    let c = [rng.gen_range(1..20), 64, 128][rng.gen_range(0..3)];
                    let o = rng.gen_range(1..40);
                    let conv = random_conv(&mut rng, window, c, o, bits);
                    let input: Vec<u8> = (0..h * w * c).map(|_| rng.gen()).collect();
                    let mut want = vec![0u8; h * w * o];
                    conv.forward_reference(&input, (h, w), ConvOut::Bytes(&mut want));
                    let mut want32 = vec![0i32; h * w * o];
                    conv.forward_reference(&input, (h, w), ConvOut::Wide(&mut want32));
                    for &kernel in &Kernel::available() {
                        for pool in &pools {
                            let mut got = vec![0u8; h * w * o];
                            let mut got32 = vec![0i32; h * w * o];
                            pool.install(|| {
                                conv.forward(kernel, &input, (h, w), ConvOut::Bytes(&mut got));
                                conv.forward(kernel, &input, (h, w), ConvOut::Wide(&mut got32));
                            });
                            let what = format!("{h}x{w} {window:?} {bits:?} {kernel:?}");
                            assert_eq!(got, want, "{what}");
                            assert_eq!(got32, want32, "{what}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn outside_the_grid_reads_as_zero() {
        // A 3x3 sum of the single input channel, weight 1 everywhere: corners see 4 cells.
        let layer = U8Linear::new(
            9,
            WeightBits::Eight,
            &[1; 9],
            vec![0],
            vec![1],
            vec![0],
            (0, 255),
        )
        .unwrap();
        let conv = U8Conv::new(Window::Three, 1, layer).unwrap();
        let mut out = vec![0u8; 9];
        conv.forward(Kernel::detect(), &[1; 9], (3, 3), ConvOut::Bytes(&mut out));
        assert_eq!(out, [4, 6, 4, 6, 9, 6, 4, 6, 4]);
    }

    #[test]
    fn a_layer_of_the_wrong_width_is_refused() {
        let mut rng = StdRng::seed_from_u64(1);
        let layer = random_layer(&mut rng, 10, 2, WeightBits::Eight);
        assert!(U8Conv::new(Window::Three, 1, layer.clone()).is_err());
        assert!(U8Conv::new(Window::One, 10, layer).is_ok());
    }
}
