//! Categorical distributions from integer weights: used by mock models in tests and by codecs
//! that carry explicit histograms.

use super::{QuantizedCdf, TOTAL};
use crate::error::{Error, Result};

/// A distribution over `0..n` given by nonnegative integer weights, quantized so that every
/// symbol keeps a probability of at least 2^-24 (even a zero-weight one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Categorical {
    /// `cdf[x]` for `x` in `0..=n`.
    cdf: Vec<u32>,
}

impl Categorical {
    /// `F(x) = floor(W(x) · (2^24 − n) / W(n)) + x`, with `W` the cumulative weights.
    pub fn from_weights(weights: &[u64]) -> Result<Self> {
        let n = weights.len();
        if n == 0 || n as u64 > TOTAL as u64 / 2 {
            return Err(Error::InvalidModel(format!("categorical over {n} symbols")));
        }
        let total: u128 = weights.iter().map(|&w| w as u128).sum();
        let mass = (TOTAL as u128) - n as u128;
        let mut cdf = Vec::with_capacity(n + 1);
        let mut acc: u128 = 0;
        cdf.push(0);
        for (x, &w) in weights.iter().enumerate() {
            acc += w as u128;
            #[allow(clippy::manual_checked_ops)] // the two cases read as the spec states them
            let scaled = if total == 0 {
                mass * (x as u128 + 1) / n as u128
            } else {
                acc * mass / total
            };
            cdf.push((scaled + x as u128 + 1) as u32);
        }
        Ok(Categorical { cdf })
    }

    /// The uniform distribution over `0..n`.
    pub fn uniform(n: usize) -> Result<Self> {
        Self::from_weights(&vec![1; n])
    }
}

impl QuantizedCdf for Categorical {
    fn num_symbols(&self) -> u32 {
        (self.cdf.len() - 1) as u32
    }
    fn cdf(&self, x: u32) -> u32 {
        self.cdf[(x as usize).min(self.cdf.len() - 1)]
    }
    fn quantile(&self, q: u32) -> u32 {
        // Largest x with cdf[x] <= q.
        (self.cdf.partition_point(|&c| c <= q) - 1) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coding::validate_cdf;

    #[test]
    fn valid_for_all_shapes() {
        for w in [
            vec![0u64],
            vec![5],
            vec![0, 0, 0],
            vec![1, 0, 1 << 40],
            vec![u64::MAX; 300],
        ] {
            let c = Categorical::from_weights(&w).unwrap();
            validate_cdf(&c).unwrap();
        }
        assert!(Categorical::from_weights(&[]).is_err());
    }
}
