//! Float weights → the 8-bit network ([`PixelCnn8`]), in pure Rust.
//!
//! Post-training quantization with calibration:
//!
//! 1. Run the float network (the trainer's, or [`dequantize`] of a 32-bit model) on pixels of
//!    training images and record every hidden unit's activations.
//! 2. Give each hidden unit its own scale: its byte `u` means `u · cap / 255`, with the cap
//!    that minimizes the unit's squared error, clipping above the cap against rounding below it
//!    ([`choose_cap`]). Per-unit scales cost the engine nothing: the next layer folds them
//!    into its weights, and the unit's own layer into its output multiplier.
//! 3. Quantize each output row with its own scale: `|w| ≤ 64` at the row's largest weight
//!    (after folding in the input scales), the bias and the inputs' zero points into the
//!    accumulator, and the ratio of scales into a 15-bit multiplier and a shift.
//!
//! Real values, as the float network computes them: inputs `(u − zero) / 128` (sample values
//! and validity flags, [`Arch::input_zero_u8`]), hidden activations in `[0, 16)` (capped ReLU),
//! outputs in the coding layer's units (`param / 2^16`).

use super::arch::{fixed, Arch};
use super::int8_model::PixelCnn8;
use super::int_model::{ModelMeta, PixelCnnInt, FAMILY_NAME};
use crate::error::{Error, Result};
use crate::image::Image;
use crate::intnet::int8::{U8Linear, WeightBits, MULT_LIMIT, SHIFT_MAX};
use crate::intnet::ACC_LIMIT;

/// A float layer: `(weight [outputs][inputs] row-major, bias [outputs])`, masked, real-valued.
pub type FloatLayer = (Vec<f32>, Vec<f32>);

/// The real-valued network a 32-bit model computes: each weight is exactly
/// `w_int · 2^(in_frac − T)`, each bias `b_int · 2^−T` (`T = shift + out_frac`).
pub fn dequantize(model: &PixelCnnInt) -> Vec<FloatLayer> {
    let a = model.arch();
    let n = model.layers.len();
    model
        .layers
        .iter()
        .enumerate()
        .map(|(l, layer)| {
            let out_frac = if l == n - 1 {
                fixed::OUTPUT_FRAC
            } else {
                fixed::ACT_FRAC
            } as i32;
            let in_frac = |i: usize| -> i32 {
                let hidden_input = (l > 0 && l < n - 1) || (l == n - 1 && i < a.hidden);
                if hidden_input {
                    fixed::ACT_FRAC as i32
                } else {
                    fixed::INPUT_FRAC as i32
                }
            };
            let mut w = vec![0f32; layer.weight.len()];
            let mut b = vec![0f32; layer.outputs];
            for o in 0..layer.outputs {
                let t = layer.shift[o] as i32 + out_frac;
                b[o] = (layer.bias[o] as f64 * 2f64.powi(-t)) as f32;
                for i in 0..layer.inputs {
                    let v = layer.weight[o * layer.inputs + i] as f64;
                    w[o * layer.inputs + i] = (v * 2f64.powi(in_frac(i) - t)) as f32;
                }
            }
            (w, b)
        })
        .collect()
}

/// Every hidden unit's activations over the calibration pixels: `[layer][unit]` → values.
pub struct Calibration {
    acts: Vec<Vec<Vec<f32>>>,
}

impl Calibration {
    pub fn new(arch: &Arch) -> Calibration {
        Calibration {
            acts: vec![vec![Vec::new(); arch.hidden]; arch.hidden_layers + 1],
        }
    }

    /// Runs the float network on about `pixels` pixels of `img` (an even stride over the
    /// raster; all of them when the image is small), with each pixel's own channels at their
    /// true values: the masks make each unit see what it sees when coding. Gray images are
    /// replicated into three channels as the coder does.
    pub fn add_image(&mut self, arch: &Arch, layers: &[FloatLayer], img: &Image, pixels: usize) {
        let hidden_layers = arch.hidden_layers + 1;
        let mut input32 = vec![0i32; arch.input_len()];
        let ctx = rgb_context(img);
        let (w, h) = (img.width(), img.height());
        let total = w as usize * h as usize;
        for p in (0..total).step_by((total / pixels.max(1)).max(1)) {
            let (x, y) = ((p % w as usize) as u32, (p / w as usize) as u32);
            arch.gather_context(&ctx, w, h, x, y, &mut input32);
            for c in 0..3 {
                input32[arch.context_len() + c] = ctx[p * 3 + c] as i32 - 128;
            }
            let mut x_real: Vec<f32> = input32.iter().map(|&v| v as f32 / 128.0).collect();
            for (l, (wt, b)) in layers[..hidden_layers].iter().enumerate() {
                x_real = dense_relu(wt, b, &x_real);
                for (u, &v) in x_real.iter().enumerate() {
                    self.acts[l][u].push(v);
                }
            }
        }
    }

    /// Each hidden unit's cap ([`choose_cap`]), `[layer][unit]`.
    pub fn caps(&self) -> Vec<Vec<f32>> {
        self.acts
            .iter()
            .map(|layer| layer.iter().map(|v| choose_cap(v)).collect())
            .collect()
    }
}

/// The image as the network sees it: 3 samples a pixel (gray replicated, alpha dropped).
fn rgb_context(img: &Image) -> Vec<u8> {
    let ch = img.layout().channels();
    let colour = img.layout().color_channels();
    img.data()
        .chunks_exact(ch)
        .flat_map(|px| {
            if colour == 3 {
                [px[0], px[1], px[2]]
            } else {
                [px[0]; 3]
            }
        })
        .collect()
}

/// `min(max(W x + b, 0), 16)` as the float network computes a hidden layer.
fn dense_relu(w: &[f32], b: &[f32], x: &[f32]) -> Vec<f32> {
    let cap = fixed::ACT_MAX_REAL as f32;
    b.iter()
        .enumerate()
        .map(|(o, &bias)| {
            let row = &w[o * x.len()..(o + 1) * x.len()];
            let s: f32 = row.iter().zip(x).map(|(a, b)| a * b).sum();
            (s + bias).clamp(0.0, cap)
        })
        .collect()
}

/// The cap `c` (real units) that minimizes a unit's squared quantization error over its
/// recorded activations: values above `c` are clipped to it, values in `(0, c]` are rounded to
/// steps of `c / 255` (error variance `step² / 12`). Candidates are the unit's upper quantiles.
pub fn choose_cap(values: &[f32]) -> f32 {
    let mut v: Vec<f32> = values.iter().copied().filter(|&a| a > 0.0).collect();
    if v.is_empty() {
        return fixed::ACT_MAX_REAL as f32;
    }
    v.sort_by(f32::total_cmp);
    let n = v.len();
    let max = v[n - 1];
    let mut best = (f64::INFINITY, max);
    for k in 0..=64 {
        // Quantiles from 0.9 to the maximum, finer near the top.
        let q = 1.0 - 0.1 * (k as f64 / 64.0).powi(3);
        let cap = v[((q * (n - 1) as f64).round() as usize).min(n - 1)].max(1e-6);
        let step = cap as f64 / 255.0;
        let clip: f64 = v
            .iter()
            .rev()
            .take_while(|&&a| a > cap)
            .map(|&a| (a as f64 - cap as f64).powi(2))
            .sum();
        let err = clip + n as f64 * step * step / 12.0;
        if err < best.0 {
            best = (err, cap);
        }
    }
    best.1
}

/// Quantizes a PixelCNN's float layers (network order, masked) into the 8-bit engine, with
/// per-unit caps `caps[layer][unit]` for the first and hidden layers and each layer's weight
/// width `bits[layer]`.
pub fn quantize_pixelcnn8(
    arch: Arch,
    name: &str,
    layers: &[FloatLayer],
    caps: &[Vec<f32>],
    bits: &[WeightBits],
) -> Result<PixelCnn8> {
    arch.validate()?;
    let n = layers.len();
    if n != arch.hidden_layers + 2 || caps.len() != n - 1 || bits.len() != n {
        return Err(Error::InvalidModel(format!(
            "{n} float layers and {} caps for an architecture of {}",
            caps.len(),
            arch.hidden_layers + 2
        )));
    }
    // Input scales and zero points of the network input vector: real = (u − zero) / 128.
    let input_scale = vec![1.0 / 128.0; arch.input_len()];
    let input_zero: Vec<i32> = (0..arch.input_len())
        .map(|i| arch.input_zero_u8(i) as i32)
        .collect();
    let mut out = Vec::with_capacity(n);
    for (l, (w, b)) in layers.iter().enumerate() {
        let last = l == n - 1;
        let (mut scale, mut zero) = if l == 0 {
            (input_scale.clone(), input_zero.clone())
        } else {
            (
                caps[l - 1].iter().map(|&c| c / 255.0).collect(),
                vec![0; arch.hidden],
            )
        };
        if last {
            scale.extend_from_slice(&input_scale);
            zero.extend_from_slice(&input_zero);
        }
        let (out_scale, clamp) = if last {
            (
                vec![1.0 / (1u64 << fixed::OUTPUT_FRAC) as f32; b.len()],
                (-fixed::OUTPUT_MAX, fixed::OUTPUT_MAX),
            )
        } else {
            (caps[l].iter().map(|&c| c / 255.0).collect(), (0, 255))
        };
        if w.len() != scale.len() * b.len() || out_scale.len() != b.len() {
            return Err(Error::InvalidModel(format!(
                "float layer {l}: shape mismatch"
            )));
        }
        out.push(quantize_layer8(
            w, b, &scale, &zero, &out_scale, clamp, bits[l],
        )?);
    }
    let meta = ModelMeta {
        family: FAMILY_NAME.into(),
        name: name.into(),
        arch,
        engine: None,
        adapt: None,
    };
    PixelCnn8::from_layers(meta, out)
}

/// One layer: for each output row, the scale `r` putting its largest folded weight `w·s_in` at
/// the width's largest weight (coarser when the accumulator bound or the bias needs it),
/// `w_int = round(w · s_in / r)`, `bias = round(b / r) − Σ w_int · zero`, and
/// `mult / 2^shift ≈ r / s_out` with a 15-bit `mult`.
fn quantize_layer8(
    w: &[f32],
    bias: &[f32],
    in_scale: &[f32],
    in_zero: &[i32],
    out_scale: &[f32],
    clamp: (i32, i32),
    bits: WeightBits,
) -> Result<U8Linear> {
    let inputs = in_scale.len();
    let outputs = bias.len();
    let wmax_int = bits.max() as f64;
    let mut weight = vec![0i32; inputs * outputs];
    let (mut b_int, mut mult, mut shift) = (vec![0; outputs], vec![0; outputs], vec![0; outputs]);
    for o in 0..outputs {
        let folded: Vec<f64> = w[o * inputs..(o + 1) * inputs]
            .iter()
            .zip(in_scale)
            .map(|(&v, &s)| v as f64 * s as f64)
            .collect();
        let wmax = folded.iter().fold(0f64, |m, v| m.max(v.abs()));
        let wsum: f64 = folded.iter().map(|v| v.abs()).sum();
        // The row's scale; coarser when the accumulator (with a margin for rounding) or the
        // bias alone would not fit.
        let r = (wmax / wmax_int)
            .max(wsum * 255.0 / (ACC_LIMIT as f64 / 4.0))
            .max(bias[o].abs() as f64 / (1u64 << 29) as f64)
            .max(1e-30);
        let row = &mut weight[o * inputs..(o + 1) * inputs];
        let mut zero_sum = 0i64;
        for ((dst, &f), &z) in row.iter_mut().zip(&folded).zip(in_zero) {
            let q = (f / r).round().clamp(-wmax_int, wmax_int) as i32;
            *dst = q;
            zero_sum += q as i64 * z as i64;
        }
        let b = (bias[o] as f64 / r).round() as i64 - zero_sum;
        b_int[o] = b.clamp(-(1 << 30), 1 << 30) as i32;
        (mult[o], shift[o]) = multiplier(r / out_scale[o] as f64)?;
    }
    U8Linear::new(inputs, bits, &weight, b_int, mult, shift, clamp)
}

/// `(mult, shift)` with `mult / 2^shift ≈ ratio`, `mult` in `[2^14, 2^15]` where the shift
/// range allows.
fn multiplier(ratio: f64) -> Result<(i32, u8)> {
    if !(ratio.is_finite() && ratio > 0.0) {
        return Err(Error::InvalidModel(format!("requantization ratio {ratio}")));
    }
    let shift = (14.0 - ratio.log2().floor()).clamp(0.0, SHIFT_MAX as f64) as i32;
    let mult = (ratio * 2f64.powi(shift)).round();
    if mult >= MULT_LIMIT as f64 {
        return Err(Error::InvalidModel(format!(
            "requantization ratio {ratio} too large for the 8-bit engine"
        )));
    }
    Ok((mult.max(1.0) as i32, shift as u8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipliers_approximate_their_ratio() {
        for ratio in [1e-9, 3.7e-5, 0.01, 0.5, 1.0, 1.9, 1000.0, 30000.0] {
            let (m, s) = multiplier(ratio).unwrap();
            let got = m as f64 / 2f64.powi(s as i32);
            assert!((got / ratio - 1.0).abs() < 1e-4, "{ratio}: {m}/2^{s}");
        }
        assert!(multiplier(1e6).is_err());
        assert!(multiplier(0.0).is_err());
    }

    #[test]
    fn caps_trade_clipping_against_rounding() {
        // Bulk uniform on (0, 1]: without outliers the cap is (about) the maximum.
        let mut v: Vec<f32> = (1..=100_000).map(|i| i as f32 / 100_000.0).collect();
        let near_max = |c: f32| (0.99..=1.0).contains(&c);
        assert!(near_max(choose_cap(&v)), "{}", choose_cap(&v));
        // One value at 1.2 costs 0.04 clipped, less than what a 20% coarser step costs the
        // bulk: it is clipped.
        v.push(1.2);
        assert!(near_max(choose_cap(&v)), "{}", choose_cap(&v));
        // One value at 3 costs 4 clipped: it is kept.
        v.push(3.0);
        assert_eq!(choose_cap(&v), 3.0);
        assert_eq!(choose_cap(&[0.0, 0.0]), fixed::ACT_MAX_REAL as f32);
    }
}
