//! Discretized logistic mixtures in fixed point: the single deterministic function that turns a
//! network's integer outputs into the coder's cumulative tables.
//!
//! The spec (`src/format/SPEC.md`, "Fixed-point distributions") defines every step; this file is
//! its transcription. Only integer arithmetic and three tables are used. The tables are computed
//! once with the `libm` crate (pure Rust, identical results on every platform) and then
//! self-checked against a hash in the tests, so a platform that computed them differently would
//! fail the test suite rather than write undecodable files.

use std::sync::OnceLock;

use super::{QuantizedCdf, TOTAL};

/// Fixed-point scale of the network outputs handed to [`LogisticMixture::from_params`]: a value
/// `v` means `v / 2^16`.
pub const PARAM_FRAC_BITS: u32 = 16;
/// Largest number of mixture components.
pub const MAX_COMPONENTS: usize = 16;

/// Clamp range of `mean` (normalized units, pixel = 128 + 128 · mean).
pub const MEAN_MIN: f64 = -1.5;
pub const MEAN_MAX: f64 = 1.5;
/// Clamp range of `log_scale` (natural log of the scale in pixel units).
pub const LOG_SCALE_MIN: f64 = -5.0;
pub const LOG_SCALE_MAX: f64 = 6.0;
/// Softmax distances below the largest logit at or past this are weight 0.
pub const LOGIT_RANGE: f64 = 24.0;

// Positions are in 1/4096 pixel.
const POS_FRAC: u32 = 12;
// Table steps.
const SIGMOID_STEPS_PER_UNIT: i64 = 64; // t in steps of 1/64
const SIGMOID_HALF_RANGE: i64 = 16; // t in [-16, 16]
const SIGMOID_LEN: usize = (2 * SIGMOID_HALF_RANGE * SIGMOID_STEPS_PER_UNIT + 1) as usize; // 2049
const SIGMOID_ONE: i64 = 1 << 30;
const INV_SCALE_FRAC: u32 = 16; // 1/s in 2^-16 per pixel
const LOG_STEPS_PER_UNIT: i64 = 256; // log-scale and logit distances in steps of 1/256
const LS_MIN_Q: i64 = (LOG_SCALE_MIN as i64) * LOG_STEPS_PER_UNIT; // -1280
const LS_MAX_Q: i64 = (LOG_SCALE_MAX as i64) * LOG_STEPS_PER_UNIT; // 1536
const EXP_LEN: usize = (LOGIT_RANGE as usize) * LOG_STEPS_PER_UNIT as usize; // 6144
const WEIGHT_BITS: u32 = 15; // mixture weights sum to 2^15

struct Tables {
    /// `round(2^30 · σ(t))` for `t = -16 + i/64`.
    sigmoid: Vec<i64>,
    /// `round(2^16 · exp(-l))` for `l = -5 + i/256`.
    inv_scale: Vec<i64>,
    /// `round(2^24 · exp(-d))` for `d = i/256`.
    exp_neg: Vec<i64>,
}

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let sigmoid = (0..SIGMOID_LEN)
            .map(|i| {
                let t = (i as i64 - SIGMOID_HALF_RANGE * SIGMOID_STEPS_PER_UNIT) as f64
                    / SIGMOID_STEPS_PER_UNIT as f64;
                libm::round(SIGMOID_ONE as f64 / (1.0 + libm::exp(-t))) as i64
            })
            .collect();
        let inv_scale = (LS_MIN_Q..=LS_MAX_Q)
            .map(|q| {
                libm::round(
                    (1u64 << INV_SCALE_FRAC) as f64
                        * libm::exp(-(q as f64) / LOG_STEPS_PER_UNIT as f64),
                ) as i64
            })
            .collect();
        let exp_neg = (0..EXP_LEN)
            .map(|i| {
                libm::round(
                    (1u64 << 24) as f64 * libm::exp(-(i as f64) / LOG_STEPS_PER_UNIT as f64),
                ) as i64
            })
            .collect();
        Tables {
            sigmoid,
            inv_scale,
            exp_neg,
        }
    })
}

/// A hash of the three tables, for the test that pins them (see module docs).
pub fn tables_fingerprint() -> u32 {
    let t = tables();
    let mut h = crc32fast::Hasher::new();
    for v in t.sigmoid.iter().chain(&t.inv_scale).chain(&t.exp_neg) {
        h.update(&v.to_le_bytes());
    }
    h.finalize()
}

/// `σ(t)` in 2^-30 for `t` given in 2^-28 (what `(b - μ) · (1/s)` yields).
#[inline]
fn sigmoid_q28(t: i64) -> i64 {
    let sig = &tables().sigmoid;
    // index in steps of 1/64: t · 64 / 2^28 = t >> 22
    let idx = (t >> 22) + SIGMOID_HALF_RANGE * SIGMOID_STEPS_PER_UNIT;
    if idx < 0 {
        return 0;
    }
    if idx >= (SIGMOID_LEN - 1) as i64 {
        return SIGMOID_ONE;
    }
    let frac = (t >> 6) & 0xFFFF; // 16 bits of the position between two entries
    let i = idx as usize;
    sig[i] + (((sig[i + 1] - sig[i]) * frac) >> 16)
}

/// A mixture of discretized logistics over the 256 values of an 8-bit sample, in fixed point.
///
/// Built only by [`LogisticMixture::from_params`]; its [`QuantizedCdf`] is the coder's view.
///
/// Stored in `i32` (every value fits: weights ≤ 2^15, means within ±2^21, inverse scales below
/// 2^24, log-scales within ±1536) and widened to `i64` for every product, exactly as the spec
/// computes: half the bytes of `i64` fields, which coders that build distributions ahead of
/// time move and read by the hundred thousand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogisticMixture {
    k: usize,
    /// Weights in 2^-15, summing to exactly 2^15.
    weight: [i32; MAX_COMPONENTS],
    /// Means in 1/4096 pixel.
    mean: [i32; MAX_COMPONENTS],
    /// Inverse scales in 2^-16 per pixel (always > 0).
    inv_scale: [i32; MAX_COMPONENTS],
    /// The clamped log-scales they were read for, in 1/256 (step 2 of the spec).
    log_scale_q: [i32; MAX_COMPONENTS],
}

impl LogisticMixture {
    /// The one function from network outputs to a distribution (spec steps 1–3).
    ///
    /// `logits`, `means`, `log_scales`: one entry per component (1 to [`MAX_COMPONENTS`]), each
    /// in 2^-16 units. Any `i32` values are accepted (they are clamped), so a corrupt or
    /// adversarial model can produce a bad distribution but never a panic.
    #[allow(clippy::needless_range_loop)] // j indexes five parallel arrays, as in the spec
    pub fn from_params(logits: &[i32], means: &[i32], log_scales: &[i32]) -> LogisticMixture {
        let t = tables();
        let k = logits
            .len()
            .min(means.len())
            .min(log_scales.len())
            .clamp(1, MAX_COMPONENTS);
        let one = 1i64 << PARAM_FRAC_BITS;
        let mut m = LogisticMixture {
            k,
            weight: [0; MAX_COMPONENTS],
            mean: [0; MAX_COMPONENTS],
            inv_scale: [0; MAX_COMPONENTS],
            log_scale_q: [0; MAX_COMPONENTS],
        };
        let max_logit = logits.iter().take(k).copied().max().unwrap_or(0) as i64;
        let mut exps = [0i64; MAX_COMPONENTS];
        let mut sum = 0i64;
        for j in 0..k {
            // 1. mean → pixel position in 1/4096 px: 128·4096 + mean · 128 · 4096 / 2^16.
            let mean = (means.get(j).copied().unwrap_or(0) as i64).clamp(
                (MEAN_MIN * one as f64) as i64,
                (MEAN_MAX * one as f64) as i64,
            );
            m.mean[j] = ((128 << POS_FRAC) + mean * 8) as i32;
            // 2. log-scale → 1/s from the table, in steps of 1/256.
            let ls = log_scales.get(j).copied().unwrap_or(0) as i64;
            let q = ((ls + 128) >> 8).clamp(LS_MIN_Q, LS_MAX_Q);
            m.log_scale_q[j] = q as i32;
            m.inv_scale[j] = t.inv_scale[(q - LS_MIN_Q) as usize] as i32;
            // 3. softmax numerators.
            let d = (max_logit - logits.get(j).copied().unwrap_or(0) as i64 + 128) >> 8;
            exps[j] = if d >= EXP_LEN as i64 {
                0
            } else {
                t.exp_neg[d.max(0) as usize]
            };
            sum += exps[j];
        }
        // sum >= exp_neg[0] = 2^24 > 0 (the largest logit has d = 0).
        let mut total = 0;
        let mut first_largest = 0;
        for j in 0..k {
            let w = (exps[j] << WEIGHT_BITS) / sum;
            m.weight[j] = w as i32;
            total += w;
            if exps[j] > exps[first_largest] {
                first_largest = j;
            }
        }
        m.weight[first_largest] += ((1 << WEIGHT_BITS) - total) as i32;
        m
    }

    /// Number of components.
    pub fn components(&self) -> usize {
        self.k
    }

    /// The same mixture with every component's log-scale moved by `steps` / 256 (then clamped
    /// to the table's range again): wider for `steps > 0`. The adaptive stage's correction
    /// (`coding::adaptive`).
    pub fn with_log_scale_offset(&self, steps: i64) -> LogisticMixture {
        let t = tables();
        let mut m = *self;
        for j in 0..self.k {
            let q = (self.log_scale_q[j] as i64 + steps).clamp(LS_MIN_Q, LS_MAX_Q);
            m.log_scale_q[j] = q as i32;
            m.inv_scale[j] = t.inv_scale[(q - LS_MIN_Q) as usize] as i32;
        }
        m
    }

    /// The weighted mean of the components' log-scales, in 1/256 (rounded down): how wide the
    /// distribution is, for bucketing.
    pub fn mean_log_scale_q(&self) -> i64 {
        let s: i64 = (0..self.k)
            .map(|j| self.weight[j] as i64 * self.log_scale_q[j] as i64)
            .sum();
        s >> WEIGHT_BITS
    }

    /// `C(x)` of the spec (the mixture's probability below `x - 0.5`, in 2^-30; step 4), with
    /// the components' inverse scales `inv_scale` (the mixture's own, or the adaptive stage's).
    #[inline]
    #[allow(clippy::needless_range_loop)] // j indexes three parallel arrays, as in the spec
    fn cdf_q30_with(&self, x: u32, inv_scale: &[i32; MAX_COMPONENTS]) -> i64 {
        let b = ((x as i64) << POS_FRAC) - (1 << (POS_FRAC - 1));
        let mut acc = 0i64;
        for j in 0..self.k {
            let t = (b - self.mean[j] as i64) * inv_scale[j] as i64; // 2^-28
            acc += self.weight[j] as i64 * sigmoid_q28(t);
        }
        acc >> WEIGHT_BITS
    }

    /// The coder's `F(x)` from `C(x)` (spec: "Fixed-point distributions").
    #[inline]
    fn table_entry(&self, x: u32, inv_scale: &[i32; MAX_COMPONENTS]) -> u32 {
        match x {
            0 => 0,
            256.. => TOTAL,
            _ => {
                (((self.cdf_q30_with(x, inv_scale) * (TOTAL as i64 - 256)) >> 30) + x as i64) as u32
            }
        }
    }

    /// `self.with_log_scale_offset(steps).frequency(x)`, without building the mixture: what
    /// the adaptive stage evaluates for each candidate offset of each sample.
    pub fn frequency_with_log_scale_offset(&self, x: u32, steps: i64) -> u32 {
        let t = tables();
        let mut inv = self.inv_scale;
        for (j, v) in inv.iter_mut().enumerate().take(self.k) {
            let q = (self.log_scale_q[j] as i64 + steps).clamp(LS_MIN_Q, LS_MAX_Q);
            *v = t.inv_scale[(q - LS_MIN_Q) as usize] as i32;
        }
        self.table_entry(x + 1, &inv) - self.table_entry(x, &inv)
    }
}

impl QuantizedCdf for LogisticMixture {
    fn num_symbols(&self) -> u32 {
        256
    }

    #[inline]
    fn cdf(&self, x: u32) -> u32 {
        self.table_entry(x, &self.inv_scale)
    }

    fn quantile(&self, q: u32) -> u32 {
        self.quantile_with_bounds(q).0
    }

    /// Gallops from the heaviest component's mean (the first one, on ties) in steps 1, 2, 4, …
    /// until `q` is bracketed, then bisects: most samples lie within a few values of it, so
    /// this reads about four values of `cdf` where a bisection of all 256 reads eight, and
    /// returns the two it read last. The same symbol as any search: for a valid table only one
    /// `x` has `cdf(x) ≤ q < cdf(x + 1)`.
    fn quantile_with_bounds(&self, q: u32) -> (u32, u32, u32) {
        let mut heaviest = 0;
        for j in 1..self.k {
            if self.weight[j] > self.weight[heaviest] {
                heaviest = j;
            }
        }
        // Symbol x covers pixel positions [x − 0.5, x + 0.5): the mean rounded to nearest.
        let start =
            ((self.mean[heaviest] as i64 + (1 << (POS_FRAC - 1))) >> POS_FRAC).clamp(0, 255) as u32;
        let at_start = self.cdf(start);
        // Invariant from here on: cdf(lo) = c_lo ≤ q < c_hi = cdf(hi), lo < hi.
        let (mut lo, mut c_lo, mut hi, mut c_hi): (u32, u32, u32, u32);
        if at_start <= q {
            (lo, c_lo) = (start, at_start);
            let mut step = 1;
            loop {
                let next = (lo + step).min(256); // cdf(256) = 2^24 > q ends the gallop
                let c = self.cdf(next);
                if c > q {
                    (hi, c_hi) = (next, c);
                    break;
                }
                (lo, c_lo, step) = (next, c, step * 2);
            }
        } else {
            (hi, c_hi) = (start, at_start);
            let mut step = 1;
            loop {
                let next = hi.saturating_sub(step); // cdf(0) = 0 ≤ q ends the gallop
                let c = self.cdf(next);
                if c <= q {
                    (lo, c_lo) = (next, c);
                    break;
                }
                (hi, c_hi, step) = (next, c, step * 2);
            }
        }
        super::bisect_bracket(self, q, (lo, c_lo), (hi, c_hi))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coding::validate_cdf;

    fn q(v: f64) -> i32 {
        (v * 65536.0).round() as i32
    }

    #[test]
    fn tables_are_pinned() {
        // If this fails, the tables differ from the ones every existing file was coded with.
        assert_eq!(
            tables_fingerprint(),
            TABLES_FINGERPRINT,
            "got {:#010x}",
            tables_fingerprint()
        );
    }
    const TABLES_FINGERPRINT: u32 = 0xf9bb25be;

    #[test]
    fn weights_sum_to_one_and_cdf_is_valid_for_extreme_params() {
        let extremes = [
            i32::MIN,
            -q(30.0),
            -q(5.0),
            -1,
            0,
            1,
            q(0.3),
            q(5.0),
            q(30.0),
            i32::MAX,
        ];
        for &a in &extremes {
            for &b in &extremes {
                for &c in &extremes {
                    let m = LogisticMixture::from_params(&[a, b, c], &[b, c, a], &[c, a, b]);
                    assert_eq!(m.weight[..3].iter().sum::<i32>(), 1 << 15);
                    validate_cdf(&m).unwrap();
                }
            }
        }
    }

    #[test]
    fn matches_float_logistic_closely() {
        // One component, mean at pixel 100.25, scale 3 px: compare with the float formula.
        let mean = (100.25 - 128.0) / 128.0;
        let m = LogisticMixture::from_params(&[0], &[q(mean)], &[q(3.0f64.ln())]);
        let sig = |t: f64| 1.0 / (1.0 + (-t).exp());
        for x in [1u32, 50, 95, 99, 100, 101, 105, 200, 255] {
            let exact = sig((x as f64 - 0.5 - 100.25) / 3.0);
            let got = m.cdf(x) as f64 / TOTAL as f64;
            assert!((exact - got).abs() < 1e-3, "x={x}: {exact} vs {got}");
        }
    }

    /// The galloping search finds what a bisection finds, with the bounds it reports, for
    /// mixtures from sharp to flat, means anywhere (clamped past both ends) and every `q` at a
    /// symbol's edges.
    #[test]
    fn galloping_quantile_matches_bisection() {
        use crate::coding::bisect_quantile;
        use rand::{rngs::StdRng, Rng, SeedableRng};
        let mut rng = StdRng::seed_from_u64(5);
        for _ in 0..300 {
            let k = rng.gen_range(1..=MAX_COMPONENTS);
            let logits: Vec<i32> = (0..k).map(|_| rng.gen_range(-q(8.0)..q(8.0))).collect();
            let means: Vec<i32> = (0..k).map(|_| rng.gen_range(-q(2.0)..q(2.0))).collect();
            let scales: Vec<i32> = (0..k).map(|_| rng.gen_range(-q(6.0)..q(7.0))).collect();
            let m = LogisticMixture::from_params(&logits, &means, &scales);
            for x in 0..256u32 {
                for probe in [m.cdf(x), m.cdf(x + 1) - 1] {
                    let want = bisect_quantile(&m, probe, 0, 256);
                    assert_eq!(want, x);
                    assert_eq!(m.quantile_with_bounds(probe), (x, m.cdf(x), m.cdf(x + 1)));
                }
            }
        }
    }

    #[test]
    fn quantile_inverts_cdf() {
        let m =
            LogisticMixture::from_params(&[q(0.5), q(-1.0)], &[q(-0.2), q(0.4)], &[q(1.0), q(2.5)]);
        for x in 0..256u32 {
            assert_eq!(m.quantile(m.cdf(x)), x);
            assert_eq!(m.quantile(m.cdf(x + 1) - 1), x);
        }
    }
}
