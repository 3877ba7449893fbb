//! Round-trip laws of the coding layer with mock distributions (no trained network needed).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

/// A mock model: a random distribution for each position, drawn from a seeded generator.
fn random_dists(rng: &mut StdRng, n: usize) -> Vec<Box<dyn QuantizedCdf>> {
    (0..n)
        .map(|_| -> Box<dyn QuantizedCdf> {
            if rng.gen_bool(0.5) {
                let size = rng.gen_range(1..300);
                let peaked = rng.gen_bool(0.3);
                let w: Vec<u64> = (0..size)
                    .map(|i| {
                        if peaked {
                            if i == 0 {
                                1 << 40
                            } else {
                                rng.gen_range(0..3)
                            }
                        } else {
                            rng.gen_range(0..1000)
                        }
                    })
                    .collect();
                Box::new(Categorical::from_weights(&w).unwrap())
            } else {
                let k = rng.gen_range(1..6);
                let g =
                    |rng: &mut StdRng, lo: f64, hi: f64| (rng.gen_range(lo..hi) * 65536.0) as i32;
                let logits: Vec<i32> = (0..k).map(|_| g(rng, -4.0, 4.0)).collect();
                let means: Vec<i32> = (0..k).map(|_| g(rng, -1.6, 1.6)).collect();
                let scales: Vec<i32> = (0..k).map(|_| g(rng, -6.0, 7.0)).collect();
                Box::new(LogisticMixture::from_params(&logits, &means, &scales))
            }
        })
        .collect()
}

/// Draws a symbol from the distribution itself, so code lengths are realistic.
fn sample(rng: &mut StdRng, d: &dyn QuantizedCdf) -> u32 {
    d.quantile(rng.gen_range(0..TOTAL))
}

#[test]
fn range_coder_round_trips_and_ends_in_the_sealed_state() {
    for seed in 0..40u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let n = [0usize, 1, 2, 3, 10, 1000][seed as usize % 6];
        let dists = random_dists(&mut rng, n);
        let symbols: Vec<u32> = dists.iter().map(|d| sample(&mut rng, d.as_ref())).collect();
        let mut enc = RangeEncoder::new();
        for (x, d) in symbols.iter().zip(&dists) {
            enc.encode(*x, d.as_ref()).unwrap();
        }
        let ideal = enc.ideal_bits();
        let bytes = enc.finish();
        // Overhead: at most the seal (8 bytes) plus a tiny rounding loss.
        assert!(
            (bytes.len() * 8) as f64 <= ideal * 1.001 + 64.0,
            "seed {seed}: {} bytes for {ideal} bits",
            bytes.len()
        );
        let mut dec = RangeDecoder::new(&bytes).unwrap();
        for (x, d) in symbols.iter().zip(&dists) {
            assert_eq!(dec.decode(d.as_ref()).unwrap(), *x, "seed {seed}");
        }
        dec.finish().unwrap();
    }
}

#[test]
fn ans_stack_round_trips_and_ends_empty() {
    for seed in 0..40u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let n = [0usize, 1, 2, 3, 10, 1000][seed as usize % 6];
        let dists = random_dists(&mut rng, n);
        let symbols: Vec<u32> = dists.iter().map(|d| sample(&mut rng, d.as_ref())).collect();
        let mut stack = AnsStack::new();
        for (x, d) in symbols.iter().zip(&dists) {
            stack.push(*x, d.as_ref()).unwrap();
        }
        let bytes = stack.into_bytes();
        let mut stack = AnsStack::from_bytes(&bytes).unwrap();
        for (x, d) in symbols.iter().zip(&dists).rev() {
            assert_eq!(stack.pop(d.as_ref()).unwrap(), *x, "seed {seed}");
        }
        assert!(
            stack.is_empty(),
            "seed {seed}: stack not empty after popping everything"
        );
    }
}

#[test]
fn every_truncation_or_extension_of_a_range_stream_is_caught() {
    let mut rng = StdRng::seed_from_u64(7);
    for trial in 0..30 {
        let dists = random_dists(&mut rng, 1 + trial * 7);
        let symbols: Vec<u32> = dists.iter().map(|d| sample(&mut rng, d.as_ref())).collect();
        let mut enc = RangeEncoder::new();
        for (x, d) in symbols.iter().zip(&dists) {
            enc.encode(*x, d.as_ref()).unwrap();
        }
        let bytes = enc.finish();
        let mut variants: Vec<Vec<u8>> =
            (0..bytes.len()).map(|cut| bytes[..cut].to_vec()).collect();
        for extra in [&[0u8][..], &[1], &[0, 0, 0, 0], &[0, 0, 0, 0, 0, 0, 0, 9]] {
            let mut v = bytes.clone();
            v.extend_from_slice(extra);
            variants.push(v);
        }
        for v in variants {
            let outcome = (|| -> Result<Vec<u32>> {
                let mut dec = RangeDecoder::new(&v)?;
                let out = dists
                    .iter()
                    .map(|d| dec.decode(d.as_ref()))
                    .collect::<Result<Vec<_>>>()?;
                dec.finish()?;
                Ok(out)
            })();
            // A damaged stream may decode to other symbols (the file-level CRC catches those),
            // but it must never reproduce the original symbols and pass the final-state check,
            // except for appended zero bytes, which are invisible by design (readers pad with
            // zeros).
            if let Ok(out) = outcome {
                let zero_extension =
                    v.len() > bytes.len() && v[bytes.len()..].iter().all(|&b| b == 0);
                assert!(
                    out != symbols || zero_extension,
                    "trial {trial}: damaged stream of {} bytes (of {}) accepted",
                    v.len(),
                    bytes.len()
                );
            }
        }
    }
}

#[test]
fn garbage_never_panics_the_decoders() {
    let mut rng = StdRng::seed_from_u64(99);
    let dists = random_dists(&mut rng, 200);
    for _ in 0..300 {
        let len = rng.gen_range(0..64);
        let junk: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        if let Ok(mut dec) = RangeDecoder::new(&junk) {
            for d in &dists {
                if dec.decode(d.as_ref()).is_err() {
                    break;
                }
            }
            let _ = dec.finish();
        }
        if let Ok(mut stack) = AnsStack::from_bytes(&junk) {
            for d in &dists {
                if stack.pop(d.as_ref()).is_err() {
                    break;
                }
            }
        }
    }
}
