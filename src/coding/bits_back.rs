//! Bits-back coding on the ANS stack (BB-ANS, Townsend et al. 2019), for latent-variable
//! models such as a VAE.
//!
//! A model gives `p(z)`, `p(x | z)` and an approximate posterior `q(z | x)`. The encoder *pops*
//! a latent with `q(z | x)` (taking about `−log2 q(z | x)` bits off the stack), then pushes `x`
//! with `p(x | z)` and `z` with `p(z)`. The decoder runs the steps backwards and pushes `z`
//! back with `q(z | x)`, which returns the bits it borrowed: the net cost of `x` is about
//! `−log2 p(x | z) − log2 p(z) + log2 q(z | x)`, the negative ELBO, and the stack ends exactly
//! as it was before the encoder started (the tests check it bit for bit).
//!
//! The first pop needs bits on the stack. An archive chains images: each image's pop takes the
//! bits the images before it pushed, so only the first one needs a seed (coded without a
//! latent), and nothing is random filler.

use super::AnsStack;
use crate::error::Result;

/// A latent-variable model as the stack coder sees it: pushing and popping a value with each
/// of its three distributions. Every pop must be the exact inverse of the push with the same
/// arguments (the same integer distributions on both sides).
pub trait LatentModel {
    /// What is coded (an image, or one part of one).
    type Data;
    /// The latent, discretized.
    type Latent;

    /// Pushes `z` with the prior `p(z)`.
    fn push_prior(&self, stack: &mut AnsStack, z: &Self::Latent) -> Result<()>;
    fn pop_prior(&self, stack: &mut AnsStack) -> Result<Self::Latent>;
    /// Pushes `x` with the likelihood `p(x | z)`.
    fn push_likelihood(&self, stack: &mut AnsStack, x: &Self::Data, z: &Self::Latent)
        -> Result<()>;
    fn pop_likelihood(&self, stack: &mut AnsStack, z: &Self::Latent) -> Result<Self::Data>;
    /// Pushes `z` with the posterior `q(z | x)`.
    fn push_posterior(&self, stack: &mut AnsStack, z: &Self::Latent, x: &Self::Data) -> Result<()>;
    fn pop_posterior(&self, stack: &mut AnsStack, x: &Self::Data) -> Result<Self::Latent>;
}

/// Encodes `x` onto `stack` with bits-back: pop `z ~ q(z | x)`, push `x | z`, push `z`.
pub fn push_bits_back<M: LatentModel>(model: &M, stack: &mut AnsStack, x: &M::Data) -> Result<()> {
    let z = model.pop_posterior(stack, x)?;
    model.push_likelihood(stack, x, &z)?;
    model.push_prior(stack, &z)
}

/// Decodes what [`push_bits_back`] pushed: pop `z`, pop `x | z`, push `z` back with
/// `q(z | x)`, which leaves the stack as it was before the push.
pub fn pop_bits_back<M: LatentModel>(model: &M, stack: &mut AnsStack) -> Result<M::Data> {
    let z = model.pop_prior(stack)?;
    let x = model.pop_likelihood(stack, &z)?;
    model.push_posterior(stack, &z, &x)?;
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coding::{Categorical, QuantizedCdf};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// A mixture of `K` byte distributions: `z` picks a component, `x` is `LEN` bytes drawn
    /// from it. The posterior is the exact `p(z | x)`, quantized (computed in `f64`: fine for a
    /// test of the coder, where both sides run on one machine; a real model's is integer-exact).
    struct Mixture {
        prior: Categorical,
        components: Vec<Categorical>,
        log2_p: Vec<Vec<f64>>,
        log2_prior: Vec<f64>,
    }

    const LEN: usize = 24;

    impl Mixture {
        fn new(rng: &mut StdRng, k: usize) -> Mixture {
            let prior_w: Vec<u64> = (0..k).map(|_| rng.gen_range(1..100)).collect();
            let mut components = Vec::new();
            for c in 0..k {
                // Component c prefers bytes near 256·c/k.
                let centre = 256.0 * c as f64 / k as f64;
                let w: Vec<u64> = (0..256)
                    .map(|v| {
                        let d = (v as f64 - centre)
                            .abs()
                            .min(256.0 - (v as f64 - centre).abs());
                        (1e6 * (-d / 12.0).exp()) as u64 + 1
                    })
                    .collect();
                components.push(Categorical::from_weights(&w).unwrap());
            }
            let prior = Categorical::from_weights(&prior_w).unwrap();
            let log2 =
                |d: &Categorical, v: u32| (d.frequency(v) as f64 / (1u64 << 24) as f64).log2();
            let log2_p = components
                .iter()
                .map(|d| (0..256).map(|v| log2(d, v)).collect())
                .collect();
            let log2_prior = (0..k as u32).map(|z| log2(&prior, z)).collect();
            Mixture {
                prior,
                components,
                log2_p,
                log2_prior,
            }
        }

        fn log2_joint(&self, x: &[u8], z: usize) -> f64 {
            self.log2_prior[z] + x.iter().map(|&v| self.log2_p[z][v as usize]).sum::<f64>()
        }

        /// −log2 p(x), the marginal: what ideal bits-back with the exact posterior costs.
        fn neg_log2_marginal(&self, x: &[u8]) -> f64 {
            let joint: Vec<f64> = (0..self.components.len())
                .map(|z| self.log2_joint(x, z))
                .collect();
            let top = joint.iter().cloned().fold(f64::MIN, f64::max);
            -(top + joint.iter().map(|j| (j - top).exp2()).sum::<f64>().log2())
        }

        fn posterior(&self, x: &[u8]) -> Categorical {
            let joint: Vec<f64> = (0..self.components.len())
                .map(|z| self.log2_joint(x, z))
                .collect();
            let top = joint.iter().cloned().fold(f64::MIN, f64::max);
            let w: Vec<u64> = joint
                .iter()
                .map(|j| ((j - top).exp2() * 1e9) as u64)
                .collect();
            Categorical::from_weights(&w).unwrap()
        }
    }

    impl LatentModel for Mixture {
        type Data = Vec<u8>;
        type Latent = u32;

        fn push_prior(&self, stack: &mut AnsStack, z: &u32) -> Result<()> {
            stack.push(*z, &self.prior)
        }
        fn pop_prior(&self, stack: &mut AnsStack) -> Result<u32> {
            stack.pop(&self.prior)
        }
        fn push_likelihood(&self, stack: &mut AnsStack, x: &Vec<u8>, z: &u32) -> Result<()> {
            // Pushed backwards, so that they pop in order.
            for &v in x.iter().rev() {
                stack.push(v as u32, &self.components[*z as usize])?;
            }
            Ok(())
        }
        fn pop_likelihood(&self, stack: &mut AnsStack, z: &u32) -> Result<Vec<u8>> {
            (0..LEN)
                .map(|_| Ok(stack.pop(&self.components[*z as usize])? as u8))
                .collect()
        }
        fn push_posterior(&self, stack: &mut AnsStack, z: &u32, x: &Vec<u8>) -> Result<()> {
            stack.push(*z, &self.posterior(x))
        }
        fn pop_posterior(&self, stack: &mut AnsStack, x: &Vec<u8>) -> Result<u32> {
            stack.pop(&self.posterior(x))
        }
    }

    fn sample(m: &Mixture, rng: &mut StdRng) -> Vec<u8> {
        let z = m.prior.quantile(rng.gen_range(0..1 << 24)) as usize;
        (0..LEN)
            .map(|_| m.components[z].quantile(rng.gen_range(0..1 << 24)) as u8)
            .collect()
    }

    fn chain(m: &Mixture, items: &[Vec<u8>], stack: &mut AnsStack) {
        for x in items {
            push_bits_back(m, stack, x).unwrap();
        }
    }

    #[test]
    fn a_chain_decodes_backwards_and_leaves_the_seed_exactly() {
        let mut rng = StdRng::seed_from_u64(1);
        let m = Mixture::new(&mut rng, 8);
        let items: Vec<Vec<u8>> = (0..40).map(|_| sample(&m, &mut rng)).collect();
        // Seeds: nothing, and some bits pushed before (what an archive's first image leaves).
        for seed_len in [0usize, 3, 50] {
            let symbols: Vec<u32> = (0..seed_len).map(|_| rng.gen_range(0..256)).collect();
            let seeded = || {
                let mut s = AnsStack::new();
                for &v in &symbols {
                    s.push(v, &m.components[0]).unwrap();
                }
                s
            };
            let seed_bytes = seeded().into_bytes();
            let mut stack = seeded();
            chain(&m, &items, &mut stack);
            let mut decoder = AnsStack::from_bytes(&stack.into_bytes()).unwrap();
            for x in items.iter().rev() {
                assert_eq!(&pop_bits_back(&m, &mut decoder).unwrap(), x);
            }
            assert_eq!(
                decoder.into_bytes(),
                seed_bytes,
                "seed of {seed_len} symbols"
            );
        }
    }

    #[test]
    fn a_chain_costs_about_the_negative_elbo() {
        // With the exact posterior, the ELBO is the marginal likelihood: a long chain must
        // cost about Σ −log2 p(x), not Σ −log2 p(x, z) (what coding z outright would cost).
        let mut rng = StdRng::seed_from_u64(2);
        let m = Mixture::new(&mut rng, 16);
        let items: Vec<Vec<u8>> = (0..400).map(|_| sample(&m, &mut rng)).collect();
        let mut stack = AnsStack::new();
        chain(&m, &items, &mut stack);
        let coded = stack.num_bits() as f64;
        let marginal: f64 = items.iter().map(|x| m.neg_log2_marginal(x)).sum();
        // What coding each z outright with the prior would add: Σ −log2 p(z) ≥ 4 bits an item
        // for 16 components; bits-back must not pay it.
        let prior_bits: f64 = items
            .iter()
            .map(|x| -m.log2_prior[m.posterior(x).quantile(1 << 23) as usize])
            .sum();
        eprintln!(
            "coded {coded:.0} bits, −log2 p(x) {marginal:.0}, z outright {prior_bits:.0} more"
        );
        // Within 0.5% plus the first item's borrowed bits and the coder's last words.
        assert!(coded < marginal * 1.005 + 64.0, "{coded} vs {marginal}");
        assert!(coded > marginal - 64.0, "{coded} vs {marginal}");
        assert!(
            prior_bits > 0.005 * marginal + 64.0,
            "the test could not tell bits-back apart"
        );
    }
}
