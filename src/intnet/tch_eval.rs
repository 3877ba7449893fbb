//! [`IntLinear`] on libtorch tensors: integers held in `f64`, on CPU or CUDA.
//!
//! Exact because every value and every partial sum is an integer below 2^53 (the layer bounds
//! keep accumulators below 2^31), so `f64` adds and multiplies them without rounding, in any
//! order and any blocking a BLAS picks. Only matmul, add, multiply by a power of two, floor and
//! clamp are used: no convolution algorithm (Winograd, FFT) and no TF32 path is involved.

use tch::{Device, Kind, Tensor};

use super::conv::{U8Conv, Window};
use super::IntLinear;

/// `2^-shift`, exact in `f64`.
fn inv_scale(shift: u8) -> f64 {
    0.5f64.powi(shift as i32)
}

/// The rounding term of a shift: `2^(shift−1)`, or 0 for no shift.
fn half(shift: u8) -> f64 {
    if shift == 0 {
        0.0
    } else {
        (1u64 << (shift - 1)) as f64
    }
}

/// A layer's weights as `f64` tensors on one device.
pub struct TchLinear {
    /// `[inputs, outputs]` (transposed, for `x.matmul(w)`).
    weight_t: Tensor,
    /// `[outputs]`.
    bias: Tensor,
    /// `2^-shift`, `[outputs]`.
    inv_scale: Tensor,
    /// `2^(shift-1)` or 0, `[outputs]`.
    half: Tensor,
    lo: f64,
    hi: f64,
}

impl TchLinear {
    pub fn new(layer: &IntLinear, device: Device) -> TchLinear {
        let f = |v: Vec<f64>| Tensor::from_slice(&v).to_device(device);
        let w: Vec<f64> = layer.weight.iter().map(|&v| v as f64).collect();
        let weight_t = Tensor::from_slice(&w)
            .reshape([layer.outputs as i64, layer.inputs as i64])
            .transpose(0, 1)
            .contiguous()
            .to_device(device);
        TchLinear {
            weight_t,
            bias: f(layer.bias.iter().map(|&v| v as f64).collect()),
            inv_scale: f(layer.shift.iter().map(|&s| inv_scale(s)).collect()),
            half: f(layer.shift.iter().map(|&s| half(s)).collect()),
            lo: layer.lo as f64,
            hi: layer.hi as f64,
        }
    }

    /// `x`: `[N, inputs]` of integer-valued `f64` → `[N, outputs]`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        debug_assert_eq!(x.kind(), Kind::Double);
        let acc = x.matmul(&self.weight_t) + &self.bias;
        ((acc + &self.half) * &self.inv_scale)
            .floor()
            .clamp(self.lo, self.hi)
    }
}

/// A convolution of the 8-bit engine ([`U8Conv`]) on `f64` tensors: `im2col` (unfold) and a
/// matmul, never libtorch's convolution algorithms (Winograd and FFT round). Exact for the
/// same reason as [`TchLinear`]: accumulators below 2^31, products with the multiplier below
/// 2^47.
pub struct TchConv {
    /// `[outputs, inputs]`, inputs in unfold's order (channel, then window row and column).
    weight: Tensor,
    window: i64,
    bias: Tensor,
    mult: Tensor,
    inv_scale: Tensor,
    half: Tensor,
    lo: f64,
    hi: f64,
}

impl TchConv {
    pub fn new(conv: &U8Conv, device: Device) -> TchConv {
        let layer = &conv.layer;
        let (o, c) = (layer.outputs(), conv.channels);
        let taps = conv.window.taps();
        // The engine's rows are ordered (tap, channel); unfold's (channel, tap).
        let mut w = vec![0f64; o * c * taps];
        for r in 0..o {
            for (i, v) in layer.row(r).into_iter().enumerate() {
                let (tap, ch) = (i / c, i % c);
                w[r * c * taps + ch * taps + tap] = v as f64;
            }
        }
        let col = |v: Vec<f64>| Tensor::from_slice(&v).reshape([-1, 1]).to_device(device);
        TchConv {
            weight: Tensor::from_slice(&w)
                .reshape([o as i64, (c * taps) as i64])
                .to_device(device),
            window: match conv.window {
                Window::One => 1,
                Window::Three => 3,
            },
            bias: col(layer.bias.iter().map(|&v| v as f64).collect()),
            mult: col(layer.mult.iter().map(|&v| v as f64).collect()),
            inv_scale: col(layer.shift.iter().map(|&s| inv_scale(s)).collect()),
            half: col(layer.shift.iter().map(|&s| half(s)).collect()),
            lo: layer.lo as f64,
            hi: layer.hi as f64,
        }
    }

    /// `x`: `[N, channels, H, W]` integer-valued `f64` (bytes) → `[N, outputs, H, W]`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        debug_assert_eq!(x.kind(), Kind::Double);
        let s = x.size();
        let (n, h, w) = (s[0], s[2], s[3]);
        let k = self.window;
        let cols = x.im2col([k, k], [1, 1], [k / 2, k / 2], [1, 1]); // [N, C·k², H·W]
        let acc = self.weight.matmul(&cols) + &self.bias; // [N, O, H·W]
        let y = ((acc * &self.mult + &self.half) * &self.inv_scale)
            .floor()
            .clamp(self.lo, self.hi);
        y.reshape([n, -1, h, w])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    #[test]
    fn tch_f64_convolutions_match_the_reference() {
        use crate::intnet::conv::ConvOut;
        use crate::intnet::int8::{tests::random_layer, WeightBits};
        let mut rng = StdRng::seed_from_u64(21);
        for (window, bits, c, o, h, w, n) in [
            (Window::Three, WeightBits::Eight, 3, 5, 1, 1, 1),
            (Window::Three, WeightBits::Sixteen, 7, 2, 6, 9, 3),
            (Window::One, WeightBits::Eight, 20, 11, 5, 4, 2),
            (Window::Three, WeightBits::Eight, 14, 33, 8, 8, 4),
        ] {
            let conv = U8Conv::new(
                window,
                c,
                random_layer(&mut rng, window.taps() * c, o, bits),
            )
            .unwrap();
            let x: Vec<u8> = (0..n * h * w * c).map(|_| rng.gen()).collect();
            // [N, H, W, C] bytes → [N, C, H, W] f64.
            let t = Tensor::from_slice(&x.iter().map(|&v| v as f64).collect::<Vec<_>>())
                .reshape([n as i64, h as i64, w as i64, c as i64])
                .permute([0, 3, 1, 2]);
            let got = TchConv::new(&conv, Device::Cpu)
                .forward(&t)
                .permute([0, 2, 3, 1]);
            let got: Vec<f64> = Vec::try_from(got.flatten(0, 3)).unwrap();
            for i in 0..n {
                let mut want = vec![0i32; h * w * o];
                let one = &x[i * h * w * c..(i + 1) * h * w * c];
                conv.forward_reference(one, (h, w), ConvOut::Wide(&mut want));
                let got_i = &got[i * h * w * o..(i + 1) * h * w * o];
                assert!(
                    got_i.iter().zip(&want).all(|(&g, &w)| g == w as f64),
                    "{window:?} {bits:?} {c}→{o} {h}x{w}, image {i} of {n}"
                );
            }
        }
    }

    #[test]
    fn tch_f64_matches_reference_on_random_layers() {
        let mut rng = StdRng::seed_from_u64(3);
        for (i, o) in [(1, 1), (99, 96), (200, 45)] {
            let layer = crate::intnet::tests::random_layer(&mut rng, i, o, 32767);
            let n = 37;
            let x: Vec<i32> = (0..n * i).map(|_| rng.gen_range(-32767..=32767)).collect();
            let t = Tensor::from_slice(&x.iter().map(|&v| v as f64).collect::<Vec<_>>())
                .reshape([n as i64, i as i64]);
            let y = TchLinear::new(&layer, Device::Cpu).forward(&t);
            let y: Vec<f64> = Vec::try_from(y.flatten(0, 1)).unwrap();
            for r in 0..n {
                let mut expect = vec![0; o];
                layer.forward_reference(&x[r * i..(r + 1) * i], &mut expect);
                for c in 0..o {
                    assert_eq!(y[r * o + c], expect[c] as f64, "row {r} out {c}");
                }
            }
        }
    }
}
