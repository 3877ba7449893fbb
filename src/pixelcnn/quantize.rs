//! Float weights → the integer network: per-output power-of-two scales chosen as fine as the
//! exactness bound allows. Pure Rust, so that models can be made without libtorch (the trainer
//! calls it after extracting its tensors; tests call it on generated weights).

use super::arch::{fixed, Arch};
use super::int_model::{ModelMeta, PixelCnnInt, FAMILY_NAME};
use crate::error::{Error, Result};
use crate::intnet::{IntLinear, ACC_LIMIT};

/// Quantizes a PixelCNN given its float layers `(weight [outputs][inputs] row-major, bias)`,
/// masked already, in network order (first, hidden…, output), real-valued as the float network
/// computes them.
pub fn quantize_pixelcnn(
    arch: Arch,
    name: &str,
    layers: &[(Vec<f32>, Vec<f32>)],
) -> Result<PixelCnnInt> {
    arch.validate()?;
    if layers.len() != arch.hidden_layers + 2 {
        return Err(Error::InvalidModel(format!(
            "{} float layers for an architecture of {}",
            layers.len(),
            arch.hidden_layers + 2
        )));
    }
    let n = layers.len();
    let mut out = Vec::with_capacity(n);
    for (l, (w, bias)) in layers.iter().enumerate() {
        let last = l == n - 1;
        let (in_frac, in_bound) = layer_inputs(&arch, l, last);
        let (out_frac, lo, hi) = if last {
            (fixed::OUTPUT_FRAC, -fixed::OUTPUT_MAX, fixed::OUTPUT_MAX)
        } else {
            (fixed::ACT_FRAC, 0, fixed::ACT_MAX)
        };
        if w.len() != in_frac.len() * bias.len() {
            return Err(Error::InvalidModel(format!(
                "float layer {l}: shape mismatch"
            )));
        }
        out.push(quantize_layer(
            w, bias, &in_frac, &in_bound, out_frac, lo, hi,
        )?);
    }
    let meta = ModelMeta {
        family: FAMILY_NAME.into(),
        name: name.into(),
        arch,
        engine: None,
        adapt: None,
    };
    PixelCnnInt::from_layers(meta, out)
}

/// Fraction bits and magnitude bound of each input of layer `l`.
fn layer_inputs(a: &Arch, l: usize, last: bool) -> (Vec<u32>, Vec<i64>) {
    let input = (fixed::INPUT_FRAC, fixed::INPUT_BOUND);
    let hidden = (fixed::ACT_FRAC, fixed::ACT_MAX as i64);
    let parts: Vec<((u32, i64), usize)> = if l == 0 {
        vec![(input, a.input_len())]
    } else if !last {
        vec![(hidden, a.hidden)]
    } else {
        vec![(hidden, a.hidden), (input, a.input_len())]
    };
    let mut frac = Vec::new();
    let mut bound = Vec::new();
    for ((f, b), count) in parts {
        frac.extend(std::iter::repeat_n(f, count));
        bound.extend(std::iter::repeat_n(b, count));
    }
    (frac, bound)
}

/// Quantizes one dense layer: for each output, the largest accumulator exponent `T` with
/// `Σ|W_int|·bound + |b_int| < 2^31`, `W_int = round(W · 2^(T − in_frac))`, `b_int = round(b · 2^T)`,
/// shift `T − out_frac`.
fn quantize_layer(
    w: &[f32],
    bias: &[f32],
    in_frac: &[u32],
    in_bound: &[i64],
    out_frac: u32,
    lo: i32,
    hi: i32,
) -> Result<IntLinear> {
    let inputs = in_frac.len();
    let outputs = bias.len();
    let mut weight = vec![0i32; inputs * outputs];
    let mut b_int = vec![0i32; outputs];
    let mut shift = vec![0u8; outputs];
    for o in 0..outputs {
        let row = &w[o * inputs..(o + 1) * inputs];
        let (t, q, qb) =
            finest_scale(row, bias[o], in_frac, in_bound, out_frac).ok_or_else(|| {
                Error::InvalidModel(format!("output {o}: weights too large to quantize exactly"))
            })?;
        for (i, v) in q.into_iter().enumerate() {
            weight[o * inputs + i] = v as i32;
        }
        b_int[o] = qb as i32;
        shift[o] = (t - out_frac) as u8;
    }
    Ok(IntLinear {
        inputs,
        outputs,
        weight,
        bias: b_int,
        shift,
        lo,
        hi,
    })
}

/// The finest exponent `T` (and the rounded row and bias at it) that keeps the accumulator's
/// bound under 2^31 with a margin of 2^-10.
fn finest_scale(
    row: &[f32],
    bias: f32,
    in_frac: &[u32],
    in_bound: &[i64],
    out_frac: u32,
) -> Option<(u32, Vec<i64>, i64)> {
    for t in (out_frac..=out_frac + 30).rev() {
        let q: Vec<i64> = row
            .iter()
            .zip(in_frac)
            .map(|(&v, &f)| (v as f64 * 2f64.powi(t as i32 - f as i32)).round() as i64)
            .collect();
        let qb = (bias as f64 * 2f64.powi(t as i32)).round() as i64;
        let acc: i64 = qb.abs()
            + q.iter()
                .zip(in_bound)
                .map(|(&v, &b)| v.abs() * b)
                .sum::<i64>();
        if acc < ACC_LIMIT - (ACC_LIMIT >> 10) {
            return Some((t, q, qb));
        }
    }
    None
}
