//! Unbounded integer latents on the ANS stack (SPEC.md, "Flow payloads", latents).
//!
//! A flow's latents are integers with no fixed range. Each is coded with a discretized
//! logistic over a 256-value window around its prior mean (the same fixed-point function as
//! the PixelCNN's samples, [`LogisticMixture`]), whose two edge symbols are escapes: a value at
//! or past an edge is followed by its distance from the edge in an Elias-gamma code of uniform
//! symbols. Every integer therefore has a code, however far an adversarial image pushes it.

use super::{AnsStack, Interval, LogisticMixture, QuantizedCdf, TOTAL};
use crate::error::{Error, Result};

/// Most mixture components of a latent's prior.
pub const MAX_LATENT_COMPONENTS: usize = 8;

/// A latent's prior as a flow's network gives it: a mixture of `k` discretized logistics with
/// logits in 2^-16, means in 1/256 and log-scales in 2^-16 (natural log of the scale in latent
/// units).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LatentPrior {
    k: usize,
    logits: [i32; MAX_LATENT_COMPONENTS],
    means_q8: [i32; MAX_LATENT_COMPONENTS],
    log_scales_q16: [i32; MAX_LATENT_COMPONENTS],
}

/// Symbols of an escape's length (`k = floor(log2(e + 1))`).
const ESCAPE_LENGTHS: u32 = 32;

/// The uniform distribution over `0 .. n` (`1 ≤ n ≤ 2^16`): `F(x) = floor(x · 2^24 / n)`.
#[derive(Clone, Copy, Debug)]
pub struct Uniform(pub u32);

impl QuantizedCdf for Uniform {
    fn num_symbols(&self) -> u32 {
        self.0
    }
    fn cdf(&self, x: u32) -> u32 {
        ((x as u64 * TOTAL as u64) / self.0 as u64) as u32
    }
    fn quantile(&self, q: u32) -> u32 {
        // The largest x with floor(x · 2^24 / n) <= q.
        let x = ((q as u64 + 1) * self.0 as u64 - 1) / TOTAL as u64;
        x.min(self.0 as u64 - 1) as u32
    }
}

impl LatentPrior {
    /// A prior from `k` components' parameters (`1 ≤ k ≤ MAX_LATENT_COMPONENTS`; the shortest
    /// slice decides).
    pub fn new(logits: &[i32], means_q8: &[i32], log_scales_q16: &[i32]) -> LatentPrior {
        let k = logits.len().min(means_q8.len()).min(log_scales_q16.len());
        let k = k.clamp(1, MAX_LATENT_COMPONENTS);
        let mut p = LatentPrior {
            k,
            logits: [0; MAX_LATENT_COMPONENTS],
            means_q8: [0; MAX_LATENT_COMPONENTS],
            log_scales_q16: [0; MAX_LATENT_COMPONENTS],
        };
        let n = k.min(logits.len());
        p.logits[..n].copy_from_slice(&logits[..n]);
        p.means_q8[..n].copy_from_slice(&means_q8[..n]);
        p.log_scales_q16[..n].copy_from_slice(&log_scales_q16[..n]);
        p
    }

    /// One logistic: mean in 1/256, log-scale in 2^-16.
    pub fn single(mean_q8: i32, log_scale_q16: i32) -> LatentPrior {
        LatentPrior::new(&[0], &[mean_q8], &[log_scale_q16])
    }

    /// The window this prior codes its latent in (SPEC.md, latents): its centre, the rounded
    /// mean of the first component with the largest logit, and every component's mean taken
    /// relative to it.
    pub fn window(&self) -> LatentWindow {
        let k = self.k;
        let first_largest = (0..k).fold(0, |b, j| {
            if self.logits[j] > self.logits[b] {
                j
            } else {
                b
            }
        });
        let c = (self.means_q8[first_largest] as i64 + 128).div_euclid(256);
        // |mean| ≤ 2^31 and |256 c| ≤ 2^31 + 2^8: twice the difference fits i64; the mixture
        // clamps it to ±1.5 (±192 latent units) anyway.
        let rel: [i32; MAX_LATENT_COMPONENTS] = std::array::from_fn(|j| {
            let d = 2 * (self.means_q8[j] as i64 - 256 * c);
            d.clamp(i32::MIN as i64, i32::MAX as i64) as i32
        });
        let mixture =
            LogisticMixture::from_params(&self.logits[..k], &rel[..k], &self.log_scales_q16[..k]);
        LatentWindow { centre: c, mixture }
    }
}

/// A latent's prior turned into what the coder reads: 256 symbols around `centre` (symbol `s`
/// stands for `centre − 128 + s`) with their fixed-point distribution. Building it is most of a
/// latent's cost, and it needs nothing from the stack, so coders may build windows ahead of
/// time and on other threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LatentWindow {
    pub centre: i64,
    pub mixture: LogisticMixture,
}

/// The symbols that code `v` under `prior`, in the order a decoder pops them: the window
/// symbol, then (for an escape) the length and the bits in chunks, each with its alphabet size
/// (0 for the window symbol, whose distribution is the mixture).
fn symbols(v: i64, c: i64) -> ([(u32, u32); 4], usize) {
    let s = (v - c + 128).clamp(0, 255);
    let mut out = [(s as u32, 0); 4];
    let e = match s {
        0 => c - 128 - v,
        255 => v - c - 127,
        _ => return (out, 1),
    };
    let n = e as u64 + 1;
    let k = 63 - n.leading_zeros(); // floor(log2 n)
    let low = n & ((1u64 << k) - 1);
    out[1] = (k, ESCAPE_LENGTHS);
    if k == 0 {
        return (out, 2);
    }
    if k <= 16 {
        out[2] = (low as u32, 1 << k);
        return (out, 3);
    }
    out[2] = ((low & 0xFFFF) as u32, 1 << 16);
    out[3] = ((low >> 16) as u32, 1 << (k - 16));
    (out, 4)
}

/// A latent's symbols as intervals, in the order a decoder pops them, with their ideal bits:
/// everything about pushing a latent that does not touch the stack, so an encoder can build
/// codes on other threads and push them on the stack's own.
#[derive(Clone, Copy, Debug)]
pub struct LatentCode {
    intervals: [Interval; 4],
    len: usize,
    /// The ideal code length in bits (for reports): the window symbol's `24 − log2(p)`, each
    /// uniform symbol's `log2(alphabet)`.
    pub bits: f64,
}

impl LatentCode {
    /// The code of latent `v` (at most 2^30 from the window's centre) in `window`.
    pub fn new(v: i64, window: &LatentWindow) -> Result<LatentCode> {
        if (v - window.centre).abs() >= 1 << 30 {
            return Err(Error::Internal(format!(
                "latent {v} too far from its window"
            )));
        }
        let (syms, len) = symbols(v, window.centre);
        let mut intervals = [Interval::of(syms[0].0, &window.mixture)?; 4];
        let mut bits = intervals[0].bits();
        for (slot, &(x, size)) in intervals[1..len].iter_mut().zip(&syms[1..len]) {
            *slot = Interval::of(x, &Uniform(size))?;
            bits += (size as f64).log2();
        }
        Ok(LatentCode {
            intervals,
            len,
            bits,
        })
    }

    /// Pushes the code, last symbol first, so the decoder pops the window symbol first.
    pub fn push(&self, stack: &mut AnsStack) -> Result<()> {
        for interval in self.intervals[..self.len].iter().rev() {
            stack.push_interval(interval)?;
        }
        Ok(())
    }
}

/// Pushes latent `v` (at most 2^30 from the window's centre) in `window`.
pub fn push_latent(stack: &mut AnsStack, v: i64, window: &LatentWindow) -> Result<()> {
    LatentCode::new(v, window)?.push(stack)
}

/// Pops a latent coded by [`push_latent`] in the same `window`.
pub fn pop_latent(stack: &mut AnsStack, window: &LatentWindow) -> Result<i64> {
    let c = window.centre;
    let s = stack.pop(&window.mixture)? as i64;
    if s != 0 && s != 255 {
        return Ok(c - 128 + s);
    }
    let k = stack.pop(&Uniform(ESCAPE_LENGTHS))?;
    if k > 30 {
        return Err(Error::CorruptPayload(format!(
            "a latent escapes its window by 2^{k}"
        )));
    }
    let low = match k {
        0 => 0,
        1..=16 => stack.pop(&Uniform(1 << k))? as u64,
        _ => {
            let lo = stack.pop(&Uniform(1 << 16))? as u64;
            lo | (stack.pop(&Uniform(1 << (k - 16)))? as u64) << 16
        }
    };
    let e = ((1u64 << k) | low) as i64 - 1;
    Ok(if s == 0 { c - 128 - e } else { c + 127 + e })
}

/// The ideal code length of `v` in `window` in bits (for reports; infinite for a latent that
/// has no code).
pub fn latent_bits(v: i64, window: &LatentWindow) -> f64 {
    LatentCode::new(v, window).map_or(f64::INFINITY, |code| code.bits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coding::validate_cdf;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    #[test]
    fn the_window_search_finds_what_bisection_finds() {
        let mut rng = StdRng::seed_from_u64(9);
        for _ in 0..300 {
            let k = rng.gen_range(1..=4);
            let p: Vec<i32> = (0..3 * k)
                .map(|i| match i / k {
                    0 => rng.gen_range(-200_000..200_000),
                    1 => rng.gen_range(-40_000..40_000),
                    _ => rng.gen_range(-330_000..400_000),
                })
                .collect();
            let m = LatentPrior::new(&p[..k], &p[k..2 * k], &p[2 * k..])
                .window()
                .mixture;
            for q in (0..TOTAL).step_by(9973).chain([0, 1, TOTAL - 1]) {
                // The mixture's galloping search against a bisection of all 256 symbols.
                assert_eq!(
                    m.quantile(q),
                    super::super::bisect_quantile(&m, q, 0, 256),
                    "q {q}"
                );
            }
        }
    }

    #[test]
    fn uniform_tables_are_valid_and_quantile_inverts_cdf() {
        for n in [1, 2, 3, 32, 1000, 1 << 16] {
            validate_cdf(&Uniform(n)).unwrap();
            for x in (0..n).step_by((n as usize / 50).max(1)) {
                let u = Uniform(n);
                assert_eq!(u.quantile(u.cdf(x)), x);
                assert_eq!(u.quantile(u.cdf(x + 1) - 1), x);
            }
        }
    }

    #[test]
    fn latents_near_and_far_from_the_window_round_trip() {
        let mut rng = StdRng::seed_from_u64(5);
        let mut cases = Vec::new();
        for _ in 0..3000 {
            let k = rng.gen_range(1..=MAX_LATENT_COMPONENTS);
            let params: Vec<i32> = (0..3 * k)
                .map(|i| match i / k {
                    0 => rng.gen_range(-300_000..300_000),
                    1 => rng.gen_range(-(1 << 24)..=(1 << 24)),
                    _ => rng.gen_range(-400_000..400_000),
                })
                .collect();
            let prior = LatentPrior::new(&params[..k], &params[k..2 * k], &params[2 * k..]);
            let c = prior.window().centre;
            let v = match rng.gen_range(0..4) {
                0 => c + rng.gen_range(-130..130),
                1 => c + rng.gen_range(-70_000..70_000),
                2 => c + [-128, 127, -129, 128, -(1 << 29), (1 << 29)][rng.gen_range(0..6)],
                _ => rng.gen_range(-(1 << 28)..(1 << 28)),
            };
            cases.push((v, prior));
        }
        let mut stack = AnsStack::new();
        for &(v, p) in &cases {
            push_latent(&mut stack, v, &p.window()).unwrap();
        }
        let bytes = stack.into_bytes();
        let mut stack = AnsStack::from_bytes(&bytes).unwrap();
        for &(v, p) in cases.iter().rev() {
            assert_eq!(pop_latent(&mut stack, &p.window()).unwrap(), v, "{p:?}");
        }
        assert!(stack.is_empty());
    }

    #[test]
    fn an_escape_costs_its_length_code() {
        let window = LatentPrior::single(0, 0).window();
        let inside = latent_bits(3, &window);
        let far = latent_bits(10_000, &window);
        assert!(inside < 8.0 && far > 5.0 + 13.0, "{inside} {far}");
    }
}
