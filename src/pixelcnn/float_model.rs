//! The float PixelCNN (tch): training network, discretized-logistic-mixture loss, quantization
//! into the integer network, and the integer network evaluated on whole images with tch.
//!
//! Tensor conventions: images are `[B, 3, H, W]` `Uint8`; the gathered input is `[N, D]` with
//! `N = B·H·W` pixels (row-major over b, y, x) and `D = arch.input_len()`; parameters are
//! `[N, channels · 3 · components]`, per channel: logits, means, log-scales.

use tch::{nn, Device, Kind, Tensor};

use super::arch::{fixed, Arch};
use super::int_model::PixelCnnInt;
use crate::coding::logistic::{LOG_SCALE_MAX, LOG_SCALE_MIN, MEAN_MAX, MEAN_MIN};
use crate::error::{Error, Result};
use crate::image::Image;
use crate::intnet::tch_eval::TchLinear;

/// Gathers each pixel's input vector: `[B, 3, H, W]` images (any float kind, already mapped to
/// the wanted scale: `values` are `(v − 128) · value_scale`) → `[B·H·W, D]`.
/// `valid` is the validity flag's value inside the image.
fn gather(arch: &Arch, values: &Tensor, valid: f64) -> Tensor {
    let (b, _c, h, w) = values.size4().expect("images are [B, C, H, W]");
    let r = arch.radius as i64;
    let ones = Tensor::full([b, 1, h, w], valid, (values.kind(), values.device()));
    let with_valid = Tensor::cat(&[values, &ones], 1);
    // Zero padding: r columns left and right, r rows on top, none below.
    let padded = with_valid.constant_pad_nd([r, r, r, 0]);
    let mut parts: Vec<Tensor> = arch
        .offsets()
        .into_iter()
        .map(|(dy, dx)| {
            padded
                .narrow(2, r + dy as i64, h)
                .narrow(3, r + dx as i64, w)
        })
        .collect();
    parts.push(values.shallow_clone());
    Tensor::cat(&parts, 1)
        .permute([0, 2, 3, 1])
        .reshape([b * h * w, arch.input_len() as i64])
}

fn mask_tensor(
    rows: usize,
    cols: usize,
    f: impl Fn(usize, usize) -> bool,
    device: Device,
) -> Tensor {
    let m: Vec<f32> = (0..rows * cols)
        .map(|k| if f(k / cols, k % cols) { 1.0 } else { 0.0 })
        .collect();
    Tensor::from_slice(&m)
        .reshape([rows as i64, cols as i64])
        .to_device(device)
}

/// Arithmetic of the float network's hidden-layer matmuls. Training only: what is coded with
/// is the integer network, whatever the float network was trained in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    F32,
    /// bf16 inputs and weights for the hidden layers' matmuls (about 4x the f32 throughput on
    /// CPUs with AVX-512 BF16; on others libtorch still computes it, only slower).
    Bf16Hidden,
}

/// The training network. Same wiring as [`PixelCnnInt`], in float.
pub struct PixelCnnFloat {
    pub arch: Arch,
    pub vs: nn::VarStore,
    weights: Vec<Tensor>,
    biases: Vec<Tensor>,
    masks: Vec<Tensor>,
    /// Quantization-aware training for the 8-bit engine with 8-bit weights (`--qat8`): the
    /// first and hidden layers compute with their weights on the grid `llif train int8
    /// --hidden-bits 8 --uniform-caps` will put them on (per row, `max |w| / 64` steps), and
    /// their activations on 255 steps of `ACT_MAX_REAL`; gradients pass straight through the
    /// rounding. The output layer stays float (16-bit weights in the engine).
    pub qat8: bool,
    /// Under `qat8`: each hidden unit's activation cap (real units, `[hidden]` per first and
    /// hidden layer), as `llif train int8` calibrates them (`quantize8::Calibration`);
    /// activations are then clamped to their unit's cap and rounded to 255 steps of it, the
    /// engine's own grid. `None`: one cap for all, [`fixed::ACT_MAX_REAL`].
    pub act_caps: Option<Vec<Tensor>>,
}

impl PixelCnnFloat {
    pub fn new(arch: Arch, device: Device) -> Result<PixelCnnFloat> {
        arch.validate()?;
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let (d, h, o) = (arch.input_len(), arch.hidden, arch.outputs());
        let mut shapes = vec![(h, d)];
        shapes.extend(std::iter::repeat_n((h, h), arch.hidden_layers));
        shapes.push((o, h + d));
        let n = shapes.len();
        let (mut weights, mut biases, mut masks) = (Vec::new(), Vec::new(), Vec::new());
        for (l, &(rows, cols)) in shapes.iter().enumerate() {
            let mask = if l == 0 {
                mask_tensor(rows, cols, |u, i| arch.mask_first(u, i), device)
            } else if l < n - 1 {
                mask_tensor(rows, cols, |u, v| arch.mask_hidden(u, v), device)
            } else {
                mask_tensor(rows, cols, |o, j| arch.mask_output(o, j), device)
            };
            // He initialization over the unmasked fan-in; the output layer starts small.
            let fan_in = (mask.sum(Kind::Float).double_value(&[]) / rows as f64).max(1.0);
            let std = if l < n - 1 {
                (2.0 / fan_in).sqrt()
            } else {
                0.1 / fan_in.sqrt()
            };
            weights.push(root.var(
                &format!("w{l}"),
                &[rows as i64, cols as i64],
                nn::Init::Randn {
                    mean: 0.0,
                    stdev: std,
                },
            ));
            let mut b = root.var(&format!("b{l}"), &[rows as i64], nn::Init::Const(0.0));
            if l == n - 1 {
                // Start wide (scale e^3 ≈ 20 px) so early losses are moderate.
                let mut init = vec![0f32; rows];
                for (o, v) in init.iter_mut().enumerate() {
                    if (o % arch.params_per_channel()) / arch.components == 2 {
                        *v = 3.0;
                    }
                }
                tch::no_grad(|| b.copy_(&Tensor::from_slice(&init).to_device(device)));
            }
            biases.push(b);
            masks.push(mask);
        }
        Ok(PixelCnnFloat {
            arch,
            vs,
            weights,
            biases,
            masks,
            qat8: false,
            act_caps: None,
        })
    }

    /// Layer `l`'s masked weights as the forward pass uses them (on the 8-bit grid under
    /// `qat8`, for the first and hidden layers).
    fn layer_weights(&self, l: usize) -> Tensor {
        let w = &self.weights[l] * &self.masks[l];
        if !self.qat8 || l + 1 == self.weights.len() {
            return w;
        }
        let levels = crate::intnet::int8::WEIGHT_MAX_8 as f64;
        match &self.act_caps {
            // `quantize8` folds each input unit's scale (its cap / 255) into the weights before
            // it puts a row on its grid, so with per-unit caps the grid is that of the folded
            // row (the first layer's inputs share one scale: no difference there).
            Some(caps) if l >= 1 => {
                let scale = (caps[l - 1].to_device(w.device()) / 255.0).unsqueeze(0);
                fake_quant_rows(&(&w * &scale), levels) / scale
            }
            _ => fake_quant_rows(&w, levels),
        }
    }

    /// Float inputs for `[B, 3, H, W]` `Uint8` images: `[N, D]`, real units.
    pub fn inputs(&self, images: &Tensor) -> Tensor {
        let x = (images.to_kind(Kind::Float) - 128.0) / 128.0;
        gather(&self.arch, &x, 1.0)
    }

    /// Mixture parameters `[N, channels · 3K]` in real units, with the hidden layers' matmuls
    /// in `precision`.
    pub fn forward(&self, images: &Tensor, precision: Precision) -> Tensor {
        self.forward_conditioned(images, precision, None)
    }

    /// [`PixelCnnFloat::forward`] with `first_bias` `[N, hidden]` (real units) added to the
    /// first layer's pre-activations of every pixel: how a VAE's latent conditions the network.
    pub fn forward_conditioned(
        &self,
        images: &Tensor,
        precision: Precision,
        first_bias: Option<&Tensor>,
    ) -> Tensor {
        let input = self.inputs(images);
        let n = self.weights.len();
        let mut h = input.shallow_clone();
        for l in 0..n - 1 {
            let w = self.layer_weights(l);
            let z = match precision {
                Precision::F32 => h.matmul(&w.tr()),
                // Only the product is bf16 (f32 accumulation inside the kernel); bias,
                // activation and the master weights stay f32.
                Precision::Bf16Hidden => h
                    .to_kind(Kind::BFloat16)
                    .matmul(&w.to_kind(Kind::BFloat16).tr())
                    .to_kind(Kind::Float),
            };
            let z = match (l, first_bias) {
                (0, Some(extra)) => z + extra,
                _ => z,
            };
            h = self.activation(l, z + &self.biases[l]);
        }
        // The output layer stays f32: a bf16 mean near ±1 (±128 levels) would be off by up
        // to half a level, which the loss would feel.
        let w = &self.weights[n - 1] * &self.masks[n - 1];
        Tensor::cat(&[h, input], 1).matmul(&w.tr()) + &self.biases[n - 1]
    }

    /// Hidden layer `l`'s activations from its pre-activations `[N, hidden]`: the capped ReLU,
    /// and under `qat8` the engine's grid (each unit's cap and 255 steps of it with
    /// `act_caps`, else one grid for all).
    fn activation(&self, l: usize, pre: Tensor) -> Tensor {
        let h = pre.clamp(0.0, fixed::ACT_MAX_REAL);
        if !self.qat8 {
            return h;
        }
        match &self.act_caps {
            Some(caps) => {
                let cap = caps[l].to_device(h.device()).unsqueeze(0);
                fake_quant_steps(&h.minimum(&cap), &(cap / 255.0))
            }
            None => fake_quant_uniform(&h, fixed::ACT_MAX_REAL / 255.0),
        }
    }

    /// Negative log-likelihood in bits of each sample, `[N, channels]` `f32`, with the hidden
    /// layers' matmuls in `precision`.
    pub fn nll_bits(&self, images: &Tensor, precision: Precision) -> Tensor {
        self.nll_bits_conditioned(images, precision, None)
    }

    /// [`PixelCnnFloat::nll_bits`] of the network conditioned as in
    /// [`PixelCnnFloat::forward_conditioned`].
    pub fn nll_bits_conditioned(
        &self,
        images: &Tensor,
        precision: Precision,
        first_bias: Option<&Tensor>,
    ) -> Tensor {
        let params = self.forward_conditioned(images, precision, first_bias);
        let (b, c, h, w) = images.size4().expect("[B, C, H, W]");
        let targets = images
            .permute([0, 2, 3, 1])
            .reshape([b * h * w, c])
            .to_kind(Kind::Float);
        mixture_nll_bits(&params, &targets, self.arch.components)
    }

    /// Quantizes into the integer network (post-training, per-output power-of-two scales chosen
    /// as fine as the exactness bound allows; see [`super::quantize`]).
    pub fn to_int(&self, name: &str) -> Result<PixelCnnInt> {
        let mut layers = Vec::new();
        for (idx, b) in self.biases.iter().enumerate() {
            let w = tch::no_grad(|| self.layer_weights(idx));
            let w = Vec::<f32>::try_from(w.to_device(Device::Cpu).flatten(0, 1))
                .map_err(|e| Error::Torch(e.to_string()))?;
            let b = Vec::<f32>::try_from(b.to_device(Device::Cpu))
                .map_err(|e| Error::Torch(e.to_string()))?;
            layers.push((w, b));
        }
        super::quantize::quantize_pixelcnn(self.arch, name, &layers)
    }
}

/// `w` with each row rounded to `levels` steps of its largest magnitude, the gradient passing
/// straight through (the rounding counts as the identity backwards).
fn fake_quant_rows(w: &Tensor, levels: f64) -> Tensor {
    let step = (w.abs().amax([1i64].as_slice(), true) / levels).clamp_min(1e-12);
    let q = (w / &step).round() * &step;
    w + (q - w).detach()
}

/// `x` rounded to multiples of `step` (broadcast, e.g. one step per unit), the gradient
/// passing straight through.
fn fake_quant_steps(x: &Tensor, step: &Tensor) -> Tensor {
    let q = (x / step).round() * step;
    x + (q - x).detach()
}

/// `x` rounded to multiples of `step`, the gradient passing straight through.
fn fake_quant_uniform(x: &Tensor, step: f64) -> Tensor {
    let q = (x / step).round() * step;
    x + (q - x).detach()
}

/// NLL in bits of `targets` (`[N, C]`, values 0..=255 as float) under the discretized logistic
/// mixtures `params` (`[N, C·3K]`, real units), `[N, C]`. Mirrors the coding layer's clamps.
pub fn mixture_nll_bits(params: &Tensor, targets: &Tensor, k: usize) -> Tensor {
    let (n, _) = params.size2().expect("[N, P]");
    let c = targets.size()[1];
    let p = params.reshape([n, c, 3, k as i64]);
    let logits = p.select(2, 0);
    let mu = p.select(2, 1).clamp(MEAN_MIN, MEAN_MAX) * 128.0 + 128.0;
    let ls = p.select(2, 2).clamp(LOG_SCALE_MIN, LOG_SCALE_MAX);
    let inv_s = (-&ls).exp();
    let x = targets.unsqueeze(-1);
    let centered = &x - &mu;
    let plus_in = &inv_s * (&centered + 0.5);
    let min_in = &inv_s * (&centered - 0.5);
    let log_cdf_plus = &plus_in - plus_in.softplus();
    let log_one_minus_cdf_min = -min_in.softplus();
    let cdf_delta = plus_in.sigmoid() - min_in.sigmoid();
    let mid_in = &inv_s * &centered;
    let log_pdf_mid = &mid_in - &ls - mid_in.softplus() * 2.0;
    let log_delta = cdf_delta.clamp_min(1e-12).log();
    let inner = log_delta.where_self(&cdf_delta.gt(1e-5), &log_pdf_mid);
    let x_full = x.expand_as(&mu);
    let lp = log_cdf_plus.where_self(
        &x_full.le(0.5),
        &log_one_minus_cdf_min.where_self(&x_full.ge(254.5), &inner),
    );
    let log_mix = (lp + logits.log_softmax(-1, Kind::Float)).logsumexp([-1i64].as_slice(), false);
    -log_mix / std::f64::consts::LN_2
}

/// The integer network on whole images with libtorch, in `f64` (exact; see `intnet::tch_eval`).
pub struct PixelCnnTch {
    arch: Arch,
    layers: Vec<TchLinear>,
    device: Device,
}

impl PixelCnnTch {
    pub fn new(model: &PixelCnnInt, device: Device) -> PixelCnnTch {
        PixelCnnTch {
            arch: *model.arch(),
            layers: model
                .layers
                .iter()
                .map(|l| TchLinear::new(l, device))
                .collect(),
            device,
        }
    }

    /// All parameters of every pixel and channel, teacher-forced: `[B, 3, H, W]` `Uint8` →
    /// `[B·H·W, channels · 3K]` integer-valued `f64` (equal to `PixelCnnInt::reference_params`).
    pub fn params(&self, images: &Tensor) -> Tensor {
        let x = images.to_device(self.device).to_kind(Kind::Double) - 128.0;
        let input = gather(&self.arch, &x, fixed::INPUT_BOUND as f64);
        let n = self.layers.len();
        let mut h = input.shallow_clone();
        for layer in &self.layers[..n - 1] {
            h = layer.forward(&h);
        }
        self.layers[n - 1].forward(&Tensor::cat(&[h, input], 1))
    }
}

/// Interleaved `Image`-style samples (`H·W·3`) of several images → `[B, 3, H, W]` `Uint8`.
pub fn images_to_tensor(samples: &[&[u8]], height: u32, width: u32) -> Tensor {
    let flat: Vec<u8> = samples.iter().flat_map(|s| s.iter().copied()).collect();
    Tensor::from_slice(&flat)
        .reshape([samples.len() as i64, height as i64, width as i64, 3])
        .permute([0, 3, 1, 2])
        .contiguous()
}

/// Encodes like [`super::encode_payload`], but computes every parameter in one teacher-forced libtorch
/// pass (integers in f64, exact) on `device`, CPU or CUDA, then codes in the usual schedule. The
/// bytes equal [`super::encode_payload`]'s: this is how a GPU encoder stays decodable on a CPU.
pub fn encode_payload_tch(
    model: &PixelCnnInt,
    image: &Image,
    device: tch::Device,
) -> Result<(Vec<u8>, crate::coding::autoregressive::CodingStats)> {
    let (w, h) = (image.width(), image.height());
    let layout = image.layout();
    let tch_model = PixelCnnTch::new(model, device);
    let mut sets = vec![(0, layout.color_channels())];
    if layout.has_alpha() {
        sets.push((layout.color_channels(), 1));
    }
    let mut per_set = Vec::new();
    for (first, channels) in sets {
        // The network's view of the plane set: 3 channels per pixel, a single plane replicated.
        let ctx: Vec<u8> = (0..image.pixels())
            .flat_map(|px| {
                let s = &image.data()[px * image.channels()..(px + 1) * image.channels()];
                (0..3).map(move |c| {
                    if channels == 3 {
                        s[first + c]
                    } else {
                        s[first]
                    }
                })
            })
            .collect();
        let t = images_to_tensor(&[&ctx], h, w);
        let params = Vec::<f64>::try_from(
            tch_model
                .params(&t)
                .to_device(tch::Device::Cpu)
                .flatten(0, 1),
        )
        .map_err(|e| crate::Error::Torch(e.to_string()))?;
        per_set.push(params.into_iter().map(|v| v as i32).collect());
    }
    let mut session = super::PixelCnnSession::with_precomputed(model, w, h, layout, per_set)?;
    crate::coding::autoregressive::encode_autoregressive(&mut session, image.data())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// bf16 training must compute (nearly) the network that is exported: the same parameters
    /// up to bf16 rounding and the same loss within 1%, and the result must come back as f32.
    #[test]
    fn bf16_hidden_matmuls_track_f32() {
        let arch = crate::testing::tiny_arch();
        tch::manual_seed(3);
        let net = PixelCnnFloat::new(arch, Device::Cpu).unwrap();
        let images = Tensor::randint(256, [2, 3, 8, 8], (Kind::Uint8, Device::Cpu));
        let f32_nll = net.nll_bits(&images, Precision::F32);
        let bf16_nll = net.nll_bits(&images, Precision::Bf16Hidden);
        assert_eq!(bf16_nll.kind(), Kind::Float);
        let mean_f32 = f32_nll.mean(Kind::Double).double_value(&[]);
        let mean_bf16 = bf16_nll.mean(Kind::Double).double_value(&[]);
        assert!(
            (mean_f32 - mean_bf16).abs() < 0.01 * mean_f32,
            "f32 {mean_f32} vs bf16 {mean_bf16}"
        );
        let p32 = net.forward(&images, Precision::F32);
        let p16 = net.forward(&images, Precision::Bf16Hidden);
        let diff = (p32 - p16).abs().max().double_value(&[]);
        assert!(diff > 0.0, "bf16 path computed in f32");
        assert!(diff < 0.05, "parameters differ by {diff}");
    }

    /// With per-unit caps, a hidden activation is an integer multiple of its unit's cap / 255,
    /// from 0 to the cap (each layer its own caps), and a hidden layer's weights lie on the grid
    /// `quantize8` gives them: each row, with each input's scale (its unit's cap / 255) folded
    /// in, on 64 steps of its largest magnitude.
    #[test]
    fn qat8_caps_put_each_unit_on_its_own_grid() {
        tch::manual_seed(11);
        let arch = crate::testing::tiny_arch();
        let mut net = PixelCnnFloat::new(arch, Device::Cpu).unwrap();
        net.qat8 = true;
        let h = arch.hidden as i64;
        let caps: Vec<Tensor> = (0..=arch.hidden_layers)
            .map(|_| Tensor::rand([h], (Kind::Float, Device::Cpu)) * 3.5 + 0.5)
            .collect();
        net.act_caps = Some(caps.iter().map(|c| c.shallow_clone()).collect());
        for (l, cap) in caps.iter().enumerate() {
            let pre = Tensor::rand([64, h], (Kind::Float, Device::Cpu)) * 22.0 - 2.0;
            let a = net.activation(l, pre);
            let steps = &a / (cap.unsqueeze(0) / 255.0);
            let off_grid = (&steps - steps.round()).abs().max().double_value(&[]);
            assert!(
                off_grid < 1e-3,
                "layer {l}: {off_grid} of a step off the grid"
            );
            assert!(a.min().double_value(&[]) >= 0.0);
            let over = (&a - cap.unsqueeze(0)).max().double_value(&[]);
            assert!(
                over < 1e-5,
                "layer {l}: an activation exceeds its cap by {over}"
            );
            let clipped = (&steps - 255.0).abs().lt(1e-3).any().int64_value(&[]);
            assert_eq!(clipped, 1, "layer {l}: no unit reached its cap");
        }
        for l in 1..=arch.hidden_layers {
            let w = tch::no_grad(|| net.layer_weights(l));
            let folded = &w * (caps[l - 1].unsqueeze(0) / 255.0);
            let step = folded.abs().amax([1i64].as_slice(), true) / 64.0;
            let q = &folded / step.clamp_min(1e-30);
            let off = (&q - q.round()).abs().max().double_value(&[]);
            assert!(
                off < 1e-3,
                "layer {l}: folded weights {off} of a step off the grid"
            );
        }
    }

    /// Under `qat8` the first and hidden layers compute on the 8-bit engine's grid (each row an
    /// integer multiple, at most 64, of its step), the output layer does not, and gradients
    /// still reach every weight through the rounding.
    #[test]
    fn qat8_weights_lie_on_the_8_bit_grid_and_still_learn() {
        let arch = crate::testing::tiny_arch();
        tch::manual_seed(5);
        let mut net = PixelCnnFloat::new(arch, Device::Cpu).unwrap();
        net.qat8 = true;
        let n = net.weights.len();
        for l in 0..n {
            let w = tch::no_grad(|| net.layer_weights(l));
            let step = w.abs().amax([1i64].as_slice(), true) / 64.0;
            let k = &w / step.clamp_min(1e-12);
            let off_grid = (&k - k.round()).abs().max().double_value(&[]);
            if l + 1 < n {
                assert!(off_grid < 1e-3, "layer {l}: {off_grid}");
            } else {
                assert!(off_grid > 1e-3, "the output layer is not quantized");
            }
        }
        let images = Tensor::randint(256, [2, 3, 8, 8], (Kind::Uint8, Device::Cpu));
        let loss = net.nll_bits(&images, Precision::F32).mean(Kind::Float);
        loss.backward();
        for (l, w) in net.weights.iter().enumerate() {
            let g = w.grad().abs().sum(Kind::Double).double_value(&[]);
            assert!(g > 0.0, "layer {l} gets no gradient");
        }
    }
}
