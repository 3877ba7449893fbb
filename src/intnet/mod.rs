//! Integer-exact network inference, shared by every model family.
//!
//! A float network cannot feed an entropy coder: the same float32 network gives different
//! outputs for one image alone than inside a batch, and CPU and GPU kernels differ again. llif
//! trains in float and then runs the network on integers: integer weights and activations,
//! exact accumulation, requantization by an arithmetic shift, ReLU by clamping. Integer
//! arithmetic has one answer on every machine.
//!
//! The building block is [`IntLinear`], a dense layer on integer vectors. Its semantics are
//! defined by [`IntLinear::forward_reference`] (straight loops in `i64`); the fast engines
//! ([`IntLinear::forward_i32`] here, and `tch_eval` (feature `torch`) on libtorch f64 tensors, CPU or CUDA) must
//! agree with it bit for bit, which the tests check. Exactness of the fast engines rests on
//! bounds proven when a layer is built or loaded ([`IntLinear::validate`]): every accumulator
//! stays below 2^31 in magnitude, so `i32` accumulation never overflows and every partial sum in
//! `f64` is an exactly representable integer (below 2^53), whatever the summation order.

#[cfg(feature = "torch")]
pub mod tch_eval;

pub mod conv;
pub mod int8;

use crate::error::{Error, Result};

/// Largest accumulator magnitude a validated layer can reach (exclusive).
pub const ACC_LIMIT: i64 = 1 << 31;

/// A dense integer layer: for every output `o`,
///
/// ```text
/// acc[o] = bias[o] + Σ_i weight[o][i] · x[i]
/// y[o]   = clamp(floor((acc[o] + 2^(shift[o]−1)) / 2^shift[o]), lo, hi)   (shift 0: y = clamp(acc))
/// ```
///
/// i.e. a rounding right shift (round half up) and a clamp. `lo = 0` makes it a ReLU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntLinear {
    pub inputs: usize,
    pub outputs: usize,
    /// Row-major `[outputs][inputs]`.
    pub weight: Vec<i32>,
    /// `[outputs]`, at the accumulator's scale.
    pub bias: Vec<i32>,
    /// `[outputs]`, each `0..=30`.
    pub shift: Vec<u8>,
    /// Output clamp `[lo, hi]`.
    pub lo: i32,
    pub hi: i32,
}

impl IntLinear {
    /// Checks shapes, and that for inputs bounded by `input_bound[i]` in magnitude every
    /// accumulator stays below [`ACC_LIMIT`]. Returns the bound of each output's magnitude.
    pub fn validate(&self, input_bound: &[i64]) -> Result<i64> {
        let bad = |m: String| Err(Error::InvalidModel(m));
        if self.weight.len() != self.inputs * self.outputs
            || self.bias.len() != self.outputs
            || self.shift.len() != self.outputs
        {
            return bad(format!(
                "layer {}→{}: array sizes do not match",
                self.inputs, self.outputs
            ));
        }
        if input_bound.len() != self.inputs {
            return bad(format!(
                "layer expects {} inputs, wired to {}",
                self.inputs,
                input_bound.len()
            ));
        }
        if self.lo > self.hi || self.shift.iter().any(|&s| s > 30) {
            return bad("layer clamp or shift out of range".into());
        }
        for o in 0..self.outputs {
            let row = &self.weight[o * self.inputs..(o + 1) * self.inputs];
            let acc: i64 = (self.bias[o] as i64).abs()
                + row
                    .iter()
                    .zip(input_bound)
                    .map(|(&w, &b)| (w as i64).abs() * b)
                    .sum::<i64>();
            if acc >= ACC_LIMIT {
                return bad(format!(
                    "layer {}→{}: output {o} can reach {acc}, over 2^31",
                    self.inputs, self.outputs
                ));
            }
        }
        Ok((self.lo as i64).abs().max((self.hi as i64).abs()))
    }

    /// The definition: straight loops in `i64`. `x.len() == inputs`, `y.len() == outputs`.
    #[allow(clippy::needless_range_loop)] // index loops are the point of the reference
    pub fn forward_reference(&self, x: &[i32], y: &mut [i32]) {
        for o in 0..self.outputs {
            let mut acc = self.bias[o] as i64;
            for i in 0..self.inputs {
                acc += self.weight[o * self.inputs + i] as i64 * x[i] as i64;
            }
            y[o] = requantize(acc, self.shift[o], self.lo, self.hi);
        }
    }

    /// The fast engine for one vector: `i32` accumulation (exact by [`IntLinear::validate`]),
    /// restricted to outputs `range`. Only valid for inputs within the validated bounds.
    #[inline]
    pub fn forward_i32(&self, x: &[i32], y: &mut [i32], range: std::ops::Range<usize>) {
        for o in range {
            let row = &self.weight[o * self.inputs..(o + 1) * self.inputs];
            let acc = dot_i32(row, x).wrapping_add(self.bias[o]);
            y[o] = requantize(acc as i64, self.shift[o], self.lo, self.hi);
        }
    }

    pub fn parameters(&self) -> usize {
        self.weight.len() + self.bias.len()
    }

    /// Appends the layer's serialized form (see [`IntLinear::read`]).
    pub fn write(&self, out: &mut Vec<u8>) {
        for v in [self.inputs as u32, self.outputs as u32] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&self.lo.to_le_bytes());
        out.extend_from_slice(&self.hi.to_le_bytes());
        out.extend_from_slice(&self.shift);
        for v in self.bias.iter().chain(&self.weight) {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }

    /// Reads a layer: `u32 inputs, u32 outputs, i32 lo, i32 hi, u8 shift[outputs],
    /// i32 bias[outputs], i32 weight[outputs][inputs]`, all little-endian.
    pub fn read(bytes: &mut &[u8]) -> Result<IntLinear> {
        let u32_at = |s: &[u8]| u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
        let head = take(bytes, 16)?;
        let (inputs, outputs) = (u32_at(&head[0..4]) as usize, u32_at(&head[4..8]) as usize);
        let (lo, hi) = (u32_at(&head[8..12]) as i32, u32_at(&head[12..16]) as i32);
        if inputs == 0 || outputs == 0 || inputs > 1 << 16 || outputs > 1 << 16 {
            return Err(Error::InvalidModel(format!("layer of {inputs}→{outputs}")));
        }
        let shift = take(bytes, outputs)?.to_vec();
        let ints = |b: &mut &[u8], n: usize| -> Result<Vec<i32>> {
            Ok(take(b, n * 4)?
                .chunks_exact(4)
                .map(|c| u32_at(c) as i32)
                .collect())
        };
        let bias = ints(bytes, outputs)?;
        let weight = ints(bytes, outputs * inputs)?;
        Ok(IntLinear {
            inputs,
            outputs,
            weight,
            bias,
            shift,
            lo,
            hi,
        })
    }
}

/// The next `n` bytes of a model file's body, or "truncated".
pub(crate) fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8]> {
    if b.len() < n {
        return Err(Error::InvalidModel("model file truncated".into()));
    }
    let (h, t) = b.split_at(n);
    *b = t;
    Ok(h)
}

/// Rounding right shift and clamp: the requantization step of every layer.
#[inline]
pub fn requantize(acc: i64, shift: u8, lo: i32, hi: i32) -> i32 {
    let v = if shift == 0 {
        acc
    } else {
        (acc + (1i64 << (shift - 1))) >> shift
    };
    v.clamp(lo as i64, hi as i64) as i32
}

/// Dot product with wrapping `i32` arithmetic (exact when the bound check passed): the 32-bit
/// engine's inner loop. Wrapping sums are the same in any order, so the AVX2 build of the same
/// loop (chosen at run time, where the CPU has it) gives the same integers as the baseline one.
#[inline]
pub fn dot_i32(w: &[i32], x: &[i32]) -> i32 {
    // `is_x86_feature_detected!` caches its answer: one relaxed load per call.
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked above).
        return unsafe { dot_i32_avx2(w, x) };
    }
    dot_i32_portable(w, x)
}

/// [`dot_i32`] compiled with AVX2 (`vpmulld`); the baseline x86-64 build has only SSE2, whose
/// 32-bit multiplies take several instructions.
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
pub unsafe fn dot_i32_avx2(w: &[i32], x: &[i32]) -> i32 {
    dot_i32_portable(w, x)
}

/// [`dot_i32`] for any CPU. Written as independent lanes so the compiler vectorizes it.
#[inline(always)]
pub fn dot_i32_portable(w: &[i32], x: &[i32]) -> i32 {
    const L: usize = 16;
    let n = w.len().min(x.len());
    let mut lanes = [0i32; L];
    let chunks = n / L;
    for c in 0..chunks {
        let (wc, xc) = (&w[c * L..c * L + L], &x[c * L..c * L + L]);
        for l in 0..L {
            lanes[l] = lanes[l].wrapping_add(wc[l].wrapping_mul(xc[l]));
        }
    }
    let mut acc = lanes.iter().fold(0i32, |a, &b| a.wrapping_add(b));
    for i in chunks * L..n {
        acc = acc.wrapping_add(w[i].wrapping_mul(x[i]));
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    pub(crate) fn random_layer(
        rng: &mut StdRng,
        inputs: usize,
        outputs: usize,
        in_bound: i64,
    ) -> IntLinear {
        // Weights scaled so the bound holds: Σ|w| · in_bound < 2^31.
        let wmax = ((ACC_LIMIT / 2) / (inputs as i64 * in_bound)).max(1) as i32;
        IntLinear {
            inputs,
            outputs,
            weight: (0..inputs * outputs)
                .map(|_| rng.gen_range(-wmax..=wmax))
                .collect(),
            bias: (0..outputs).map(|_| rng.gen_range(-1000..1000)).collect(),
            shift: (0..outputs).map(|_| rng.gen_range(0..20)).collect(),
            lo: 0,
            hi: 32767,
        }
    }

    #[test]
    fn fast_engine_matches_reference() {
        let mut rng = StdRng::seed_from_u64(1);
        for (i, o) in [(1, 1), (3, 5), (17, 33), (99, 96), (200, 45)] {
            let layer = random_layer(&mut rng, i, o, 32767);
            layer.validate(&vec![32767; i]).unwrap();
            for _ in 0..50 {
                let x: Vec<i32> = (0..i).map(|_| rng.gen_range(-32767..=32767)).collect();
                let (mut a, mut b) = (vec![0; o], vec![0; o]);
                layer.forward_reference(&x, &mut a);
                layer.forward_i32(&x, &mut b, 0..o);
                assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn the_avx2_dot_product_equals_the_portable_one() {
        let mut rng = StdRng::seed_from_u64(3);
        for n in [0, 1, 15, 16, 17, 99, 291, 387] {
            for _ in 0..20 {
                // Full-range values: wrapping arithmetic must agree even where it wraps.
                let w: Vec<i32> = (0..n).map(|_| rng.gen()).collect();
                let x: Vec<i32> = (0..n).map(|_| rng.gen()).collect();
                let want = dot_i32_portable(&w, &x);
                assert_eq!(dot_i32(&w, &x), want);
                #[cfg(target_arch = "x86_64")]
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: checked just above.
                    assert_eq!(unsafe { dot_i32_avx2(&w, &x) }, want, "n = {n}");
                }
            }
        }
    }

    #[test]
    fn requantize_rounds_half_up_and_clamps() {
        assert_eq!(requantize(5, 1, -100, 100), 3); // 2.5 → 3
        assert_eq!(requantize(-5, 1, -100, 100), -2); // -2.5 → -2
        assert_eq!(requantize(7, 2, -100, 100), 2); // 1.75 → 2
        assert_eq!(requantize(-1000, 0, 0, 100), 0);
        assert_eq!(requantize(1000, 0, 0, 100), 100);
    }

    #[test]
    fn validate_rejects_overflowing_layers_and_serialization_round_trips() {
        let mut rng = StdRng::seed_from_u64(2);
        let mut layer = random_layer(&mut rng, 10, 4, 100);
        layer.validate(&[100; 10]).unwrap();
        let mut bytes = Vec::new();
        layer.write(&mut bytes);
        assert_eq!(IntLinear::read(&mut &bytes[..]).unwrap(), layer);
        for cut in 0..bytes.len() {
            assert!(IntLinear::read(&mut &bytes[..cut]).is_err());
        }
        layer.weight[0] = i32::MAX;
        assert!(layer.validate(&[100; 10]).is_err());
    }
}
