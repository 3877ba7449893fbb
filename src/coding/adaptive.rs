//! The adaptive stage: per image, the width of the model's predicted distributions is corrected
//! from what the samples already coded cost (spec: "Adaptive scale selection"). A network
//! trained on one kind of image is often too sure or too unsure on another (a noisy scan, a
//! smooth render); this stage learns that while coding, and encoder and decoder compute the
//! same integers, so it needs no side information.
//!
//! For every sample the model's mixture falls into a bucket (its channel and how wide it is);
//! each bucket keeps, for each candidate log-scale offset, the code length the samples of that
//! bucket would have cost with it (halved every [`HALVE_AT`] samples, so recent samples weigh
//! more); the sample is coded with the offset that would have cost least so far (the model's own
//! scale on ties). Only integer arithmetic and one table (built with `libm`, pinned by a test).

use std::sync::OnceLock;

use super::{LogisticMixture, PRECISION};

/// The model-file name of this stage (`"adapt"` in a PixelCNN model's metadata).
pub const SCALE_SELECT_1: &str = "scale-select-1";

/// Candidate log-scale offsets in 1/256 (nats): 0, ±1/8, ±1/4, ±1/2 (scales × 0.61 … 1.65).
/// Chosen on training photographs and the CIFAR validation split: wider sets gained on photos
/// but lost on 32×32 images, where a few samples steer a bucket.
pub const OFFSETS: [i64; 7] = [-128, -64, -32, 0, 32, 64, 128];
/// The index of offset 0 (the model's own scale), chosen on ties.
const ZERO: usize = 3;
/// Width levels: the mixture's weighted mean log-scale in half-nat steps from −5 (22 levels).
pub const LEVELS: usize = 22;
/// Channels (R, G, B; gray and alpha use channel 0).
const CHANNELS: usize = 3;
/// A bucket's costs and count are halved when its count reaches this.
pub const HALVE_AT: u32 = 256;
/// Code lengths are kept in 2^-16 bits.
const COST_FRAC: u32 = 16;
/// Fraction bits of the log table's index.
const LOG_INDEX_BITS: u32 = 10;

/// `round(2^16 · log2(1 + i / 1024))` for `i` in `0..1024`.
fn log2_table() -> &'static [u64] {
    static TABLE: OnceLock<Vec<u64>> = OnceLock::new();
    TABLE.get_or_init(|| {
        (0..1u32 << LOG_INDEX_BITS)
            .map(|i| {
                let v = libm::log2(1.0 + i as f64 / (1u32 << LOG_INDEX_BITS) as f64);
                libm::round(v * (1u64 << COST_FRAC) as f64) as u64
            })
            .collect()
    })
}

/// A hash of the log table, for the test that pins it.
pub fn table_fingerprint() -> u32 {
    let mut h = crc32fast::Hasher::new();
    for v in log2_table() {
        h.update(&v.to_le_bytes());
    }
    h.finalize()
}

/// The code length of a symbol of frequency `freq` (in 2^-24, `1..=2^24`), in 2^-16 bits:
/// `(24 − e) · 2^16 − table[m]` with `e` the position of `freq`'s leading one and `m` the next
/// 10 bits below it.
pub fn cost_q16(freq: u32) -> u64 {
    let freq = freq.clamp(1, 1 << PRECISION);
    let e = 31 - freq.leading_zeros();
    let m = if e >= LOG_INDEX_BITS {
        (freq >> (e - LOG_INDEX_BITS)) & ((1 << LOG_INDEX_BITS) - 1)
    } else {
        (freq << (LOG_INDEX_BITS - e)) & ((1 << LOG_INDEX_BITS) - 1)
    };
    ((PRECISION as u64 - e as u64) << COST_FRAC) - log2_table()[m as usize]
}

/// One image's (or plane set's) adaptive state.
#[derive(Clone, Debug)]
pub struct ScaleAdapter {
    /// `[channel · LEVELS + level][offset]`, in 2^-16 bits.
    costs: Vec<[u64; OFFSETS.len()]>,
    counts: Vec<u32>,
}

impl Default for ScaleAdapter {
    fn default() -> Self {
        ScaleAdapter::new()
    }
}

impl ScaleAdapter {
    /// A fresh state: every bucket empty, so every sample starts with the model's own scale.
    pub fn new() -> ScaleAdapter {
        ScaleAdapter {
            costs: vec![[0; OFFSETS.len()]; CHANNELS * LEVELS],
            counts: vec![0; CHANNELS * LEVELS],
        }
    }

    /// The bucket of a sample of `channel` whose model distribution is `base`.
    pub fn bucket(channel: usize, base: &LogisticMixture) -> usize {
        let level = ((base.mean_log_scale_q() + 1280) >> 7).clamp(0, LEVELS as i64 - 1) as usize;
        channel.min(CHANNELS - 1) * LEVELS + level
    }

    /// The offset (in 1/256) with the least cost so far in `bucket`; the first such in
    /// [`OFFSETS`] order, and 0 unless another is strictly cheaper.
    pub fn offset(&self, bucket: usize) -> i64 {
        let costs = &self.costs[bucket];
        let mut best = ZERO;
        for (j, &c) in costs.iter().enumerate() {
            if c < costs[best] {
                best = j;
            }
        }
        OFFSETS[best]
    }

    /// The distribution to code a sample of `channel` with, and its bucket (for [`record`]).
    ///
    /// [`record`]: ScaleAdapter::record
    pub fn adapt(&self, channel: usize, base: &LogisticMixture) -> (usize, LogisticMixture) {
        let bucket = ScaleAdapter::bucket(channel, base);
        (bucket, base.with_log_scale_offset(self.offset(bucket)))
    }

    /// Adds what symbol `x` costs under each candidate offset of `base` to `bucket`.
    pub fn record(&mut self, bucket: usize, base: &LogisticMixture, x: u32) {
        self.add(bucket, &ScaleAdapter::candidate_costs(base, x));
    }

    /// What symbol `x` costs under each candidate offset of `base` (the expensive half of
    /// [`ScaleAdapter::record`], independent of the state: a decoder may compute it for a
    /// group's samples in parallel, then [`ScaleAdapter::add`] them in coding order).
    pub fn candidate_costs(base: &LogisticMixture, x: u32) -> [u64; OFFSETS.len()] {
        OFFSETS.map(|off| cost_q16(base.frequency_with_log_scale_offset(x, off)))
    }

    /// Adds one sample's candidate costs to `bucket`, halving at [`HALVE_AT`].
    pub fn add(&mut self, bucket: usize, costs: &[u64; OFFSETS.len()]) {
        for (cost, &c) in self.costs[bucket].iter_mut().zip(costs) {
            *cost += c;
        }
        self.counts[bucket] += 1;
        if self.counts[bucket] >= HALVE_AT {
            self.counts[bucket] /= 2;
            for c in self.costs[bucket].iter_mut() {
                *c /= 2;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_table_is_pinned() {
        // If this fails, the table differs from the one files were coded with.
        assert_eq!(
            table_fingerprint(),
            TABLE_FINGERPRINT,
            "got {:#010x}",
            table_fingerprint()
        );
    }
    const TABLE_FINGERPRINT: u32 = 0x127d39f6;

    #[test]
    fn costs_are_code_lengths() {
        for freq in [1u32, 2, 3, 1000, 65_536, 1 << 23, (1 << 24) - 1, 1 << 24] {
            let want = (24.0 - (freq as f64).log2()) * 65536.0;
            let got = cost_q16(freq) as f64;
            assert!((got - want).abs() <= 100.0, "{freq}: {got} vs {want}");
        }
        assert_eq!(cost_q16(1 << 24), 0);
        assert_eq!(cost_q16(0), cost_q16(1));
    }

    fn mixture(log_scale: f64) -> LogisticMixture {
        let q = |v: f64| (v * 65536.0).round() as i32;
        LogisticMixture::from_params(
            &[0, q(-1.0)],
            &[q(0.1), q(0.2)],
            &[q(log_scale), q(log_scale)],
        )
    }

    #[test]
    fn a_fresh_bucket_keeps_the_model_scale_and_a_too_narrow_model_is_widened() {
        let mut a = ScaleAdapter::new();
        let base = mixture(0.5); // scale e^0.5 ≈ 1.6 levels around 140
        let (bucket, first) = a.adapt(0, &base);
        assert_eq!(first, base);
        // Samples far wider than predicted: the widest candidate wins.
        for i in 0..100u32 {
            a.record(bucket, &base, 125 + (i * 7) % 30);
        }
        assert_eq!(a.offset(bucket), *OFFSETS.last().unwrap());
        // Other buckets are untouched.
        assert_eq!(a.offset(ScaleAdapter::bucket(1, &base)), 0);
        assert_ne!(ScaleAdapter::bucket(0, &mixture(3.0)), bucket);
    }

    #[test]
    fn ties_keep_the_model_scale_else_the_first_cheapest_wins() {
        let mut a = ScaleAdapter::new();
        a.costs[0] = [5, 4, 4, 4, 9, 9, 9]; // offset 0 among the cheapest: kept
        assert_eq!(a.offset(0), 0);
        a.costs[0] = [5, 3, 4, 4, 3, 9, 9]; // first of the two cheapest
        assert_eq!(a.offset(0), OFFSETS[1]);
        a.costs[0] = [9, 9, 9, 9, 9, 9, 2];
        assert_eq!(a.offset(0), OFFSETS[6]);
    }

    #[test]
    fn the_shortcut_frequency_is_the_offset_mixture_s() {
        use crate::coding::QuantizedCdf;
        for ls in [-6.0, -1.0, 0.5, 3.0, 7.0] {
            let m = mixture(ls);
            for off in [-2000, -96, -1, 0, 5, 96, 3000] {
                for x in [0, 1, 100, 140, 141, 254, 255] {
                    let want = m.with_log_scale_offset(off).frequency(x);
                    assert_eq!(m.frequency_with_log_scale_offset(x, off), want);
                }
            }
        }
    }

    #[test]
    fn costs_halve_at_the_count_and_buckets_stay_in_range() {
        let mut a = ScaleAdapter::new();
        let base = mixture(0.0);
        let b = ScaleAdapter::bucket(2, &base);
        let one: Vec<u64> = OFFSETS
            .iter()
            .map(|&o| cost_q16(base.frequency_with_log_scale_offset(141, o)))
            .collect();
        for _ in 0..HALVE_AT - 1 {
            a.record(b, &base, 141);
        }
        assert_eq!(a.counts[b], HALVE_AT - 1);
        let before = a.costs[b];
        a.record(b, &base, 141); // the 256th: count 128, every cost floor((c + one) / 2)
        assert_eq!(a.counts[b], HALVE_AT / 2);
        for j in 0..OFFSETS.len() {
            assert_eq!(a.costs[b][j], (before[j] + one[j]) / 2, "offset {j}");
        }
        for ls in [-100.0, -5.0, 0.0, 6.0, 100.0] {
            for c in 0..5 {
                assert!(ScaleAdapter::bucket(c, &mixture(ls)) < CHANNELS * LEVELS);
            }
        }
    }
}
