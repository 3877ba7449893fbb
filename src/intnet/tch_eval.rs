//! [`IntLinear`] on libtorch tensors: integers held in `f64`, on CPU or CUDA.
//!
//! Exact because every value and every partial sum is an integer below 2^53 (the layer bounds
//! keep accumulators below 2^31), so `f64` adds and multiplies them without rounding, in any
//! order and any blocking a BLAS picks. Only matmul, add, multiply by a power of two, floor and
//! clamp are used: no convolution algorithm (Winograd, FFT) and no TF32 path is involved.

use tch::{Device, Kind, Tensor};

use super::IntLinear;

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
            inv_scale: f(layer.shift.iter().map(|&s| 0.5f64.powi(s as i32)).collect()),
            half: f(layer
                .shift
                .iter()
                .map(|&s| {
                    if s == 0 {
                        0.0
                    } else {
                        (1u64 << (s - 1)) as f64
                    }
                })
                .collect()),
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

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
