//! The VAE in float (tch): posterior, prior (a mixture per latent channel, the same at every
//! position) and the latent's bias into the PixelCNN's first hidden layer, and the three terms
//! of the bits-back cost.
//!
//! Shapes: images `[B, 3, H, W]` (`H`, `W` multiples of [`VaeShape::factor`]); latents
//! `[B, m, H/F, W/F]` integers as floats; the PixelCNN's per-pixel tensors `[B·H·W, …]`, pixels
//! row-major over b, y, x (as `pixelcnn::float_model`).

use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

use crate::error::Result;
use crate::flow::float_model::{latent_bytes, log_mass, mixture_nll_bits, round_ste, NetFloat};
use crate::flow::model::NetKind;
use crate::pixelcnn::float_model::{PixelCnnFloat, Precision};
use crate::pixelcnn::Arch;

/// Scale of the bias network's outputs into the PixelCNN's pre-activations (real units, about
/// 1): the network's output layer learns in latent-like units, tens at most.
const BIAS_SCALE: f64 = 1.0 / 16.0;

/// The VAE's sizes beside its PixelCNN's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VaeShape {
    /// `F`: each latent position covers `F×F` pixels.
    pub factor: usize,
    /// `m`: latent channels.
    pub latents: usize,
    /// Hidden width of the posterior, prior and bias networks.
    pub hidden: usize,
    /// Mixture components of the prior.
    pub components: usize,
    /// Byte steps per latent unit at the bias network's input, `clamp(128 + g·z, 0, 255)`:
    /// 16 tells latents in `−8 ..= 8` apart. At 1 (the flow's convention, where latents span
    /// hundreds; runs A–C of models/wip/README.md) a latent of a few units moved the network's
    /// 8-bit first layer by less than its rounding, and the likelihood could not use it.
    #[serde(default = "unit_gain")]
    pub latent_input_gain: u32,
}

fn unit_gain() -> u32 {
    1
}

/// The float VAE: the PixelCNN (its own var store, so a trained one loads as it is) and the
/// networks of the latent.
pub struct VaeFloat {
    pub shape: VaeShape,
    pub pixelcnn: PixelCnnFloat,
    /// Posterior, prior and bias networks.
    pub vs: nn::VarStore,
    posterior: NetFloat,
    /// The prior's mixture parameters, the same at every position: `[3·k·m]`, index
    /// `(part·k + i)·m + j` (logit, mean, log-scale of component `i` of latent channel `j`).
    prior: Tensor,
    bias: NetFloat,
}

/// One batch's bits-back cost in its three terms, each `[B]` in bits (the image term weighted
/// per channel as the caller asked).
pub struct CostTerms {
    /// `−log2 p(x|z)`.
    pub image: Tensor,
    /// `−log2 p(z)`.
    pub prior: Tensor,
    /// `−log2 q(z|x)` (the bits got back).
    pub posterior: Tensor,
    /// `prior − posterior` of each latent channel, `[m]` in bits per latent position, averaged
    /// over the batch and the positions (for free bits).
    pub rate_by_channel: Tensor,
    /// Latent positions per image (`H/F · W/F`).
    pub positions: i64,
}

impl CostTerms {
    /// `image + β·(prior − posterior)`: the bits-back cost at `β = 1`; smaller `β` anneal the
    /// rate in (training starts where the latent costs nothing).
    pub fn total(&self, beta: f64) -> Tensor {
        &self.image + (&self.prior - &self.posterior) * beta
    }

    /// The batch's training loss in bits (a scalar): the image term plus `β` times the rate,
    /// where each latent channel's rate counts as at least `free_bits` per latent position
    /// (Kingma et al. 2016): below that floor the rate has no gradient, so the posterior may
    /// carry that much information before the likelihood has learned to use it. With
    /// `free_bits = 0` this is `total(β)` summed over the batch.
    pub fn training_loss(&self, beta: f64, free_bits: f64) -> Tensor {
        let images = self.image.size()[0];
        // No clamp at 0: a channel's one-sample rate estimate may be negative, and clamping
        // it would bias the plain cost and cut its gradient.
        let per_channel = if free_bits > 0.0 {
            self.rate_by_channel.clamp_min(free_bits)
        } else {
            self.rate_by_channel.shallow_clone()
        };
        let rate = per_channel.sum(Kind::Float) * (images * self.positions) as f64;
        self.image.sum(Kind::Float) + rate * beta
    }
}

impl VaeFloat {
    pub fn new(arch: Arch, shape: VaeShape, device: Device) -> Result<VaeFloat> {
        let pixelcnn = PixelCnnFloat::new(arch, device)?;
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let (f, m, h) = (
            shape.factor as i64,
            shape.latents as i64,
            shape.hidden as i64,
        );
        let k = shape.components as i64;
        let posterior = NetFloat::new(
            root.clone() / "posterior",
            NetKind::Prior,
            3 * f * f,
            h,
            3 * m,
        );
        // Components start spread over a few latent units, scale e^1.
        let mut init = vec![0f32; (3 * k * m) as usize];
        for (idx, v) in init.iter_mut().enumerate() {
            let (part, i) = (idx as i64 / (k * m), (idx as i64 / m) % k);
            *v = match part {
                1 => (i - k / 2) as f32,
                2 => 1.0,
                _ => 0.0,
            };
        }
        let prior = root.var_copy("prior", &Tensor::from_slice(&init));
        let bias = NetFloat::new(root / "bias", NetKind::Coupling, m, h, arch.hidden as i64);
        // Zero output layers would leave the latent with no use (the bias ignores it) and no
        // information (the posterior ignores the image), each waiting on the other: a first
        // run collapsed so. Small noise lets both learn from the first step; the PixelCNN's
        // first-layer pre-activations move by about 0.1 at the start.
        posterior.perturb_output(1e-3);
        bias.perturb_output(1e-3);
        Ok(VaeFloat {
            shape,
            pixelcnn,
            vs,
            posterior,
            prior,
            bias,
        })
    }

    /// `[B, 3, H, W]` bytes → `[B, 3F², H/F, W/F]`: each `F×F` block's samples as channels.
    fn blocks(&self, images: &Tensor) -> Tensor {
        let f = self.shape.factor as i64;
        let (b, c, h, w) = images.size4().expect("[B, C, H, W]");
        images
            .to_kind(Kind::Float)
            .reshape([b, c, h / f, f, w / f, f])
            .permute([0, 1, 3, 5, 2, 4])
            .reshape([b, c * f * f, h / f, w / f])
    }

    /// The posterior's means and log-scales, each `[B, m, H/F, W/F]`.
    pub fn posterior(&self, images: &Tensor) -> (Tensor, Tensor) {
        let x = self.blocks(images);
        let roles = Tensor::zeros([x.size()[0]], (Kind::Int64, x.device()));
        let out = self.posterior.forward(&x, &roles);
        let m = self.shape.latents as i64;
        (out.narrow(1, m, m), out.narrow(1, 2 * m, m))
    }

    /// A latent drawn from the discretized posterior: `round(μ + s·L)` with `L` the logistic
    /// noise of `uniform` (values in (0, 1)); straight-through.
    pub fn sample(mean: &Tensor, log_scale: &Tensor, uniform: &Tensor) -> Tensor {
        let u = uniform.clamp(1e-6, 1.0 - 1e-6);
        let noise = (&u / (-&u + 1.0)).log();
        round_ste(&(mean + log_scale.clamp(-5.0, 6.0).exp() * noise))
    }

    /// The latent's bias for every pixel, `[B·H·W, hidden]` in real units.
    fn first_bias(&self, z: &Tensor, (h, w): (i64, i64)) -> Tensor {
        let roles = Tensor::zeros([z.size()[0]], (Kind::Int64, z.device()));
        let f = self.shape.factor as i64;
        let bytes = latent_bytes(&(z * self.shape.latent_input_gain as f64));
        let grid = self.bias.forward(&bytes, &roles) * BIAS_SCALE; // [B, hidden, h/F, w/F]
        let (b, c, _, _) = grid.size4().expect("[B, C, h, w]");
        grid.unsqueeze(3)
            .unsqueeze(5)
            .expand([b, c, h / f, f, w / f, f], false)
            .reshape([b, c, h, w])
            .permute([0, 2, 3, 1])
            .reshape([b * h * w, c])
    }

    /// The three terms of the bits-back cost of `images` `[B, 3, H, W]` with `z` drawn from
    /// the posterior with `uniform` `[B, m, H/F, W/F]`; `channel_weights` `[B, 3]` weight the
    /// image term per channel (0 for the copies of a gray image's channel).
    pub fn cost(
        &self,
        images: &Tensor,
        uniform: &Tensor,
        channel_weights: &Tensor,
        precision: Precision,
    ) -> CostTerms {
        let (b, _, h, w) = images.size4().expect("[B, C, H, W]");
        let (mean, log_scale) = self.posterior(images);
        let z = Self::sample(&mean, &log_scale, uniform);
        let posterior = -log_mass(&z, &mean, &log_scale) / std::f64::consts::LN_2;
        let (zh, zw) = (z.size()[2], z.size()[3]);
        let prior_params = self
            .prior
            .reshape([1, -1, 1, 1])
            .expand([b, self.prior.size()[0], zh, zw], false);
        let prior = mixture_nll_bits(&z, &prior_params, self.shape.components);
        let bias = self.first_bias(&z, (h, w));
        let nll = self
            .pixelcnn
            .nll_bits_conditioned(images, precision, Some(&bias))
            .reshape([b, h * w, 3]);
        let image = (nll * channel_weights.unsqueeze(1)).sum_dim_intlist(
            [1i64, 2].as_slice(),
            false,
            Kind::Float,
        );
        let rate_by_channel =
            (&prior - &posterior).mean_dim([0i64, 2, 3].as_slice(), false, Kind::Float);
        let per_image = |t: Tensor| t.sum_dim_intlist([1i64, 2, 3].as_slice(), false, Kind::Float);
        CostTerms {
            image,
            prior: per_image(prior),
            posterior: per_image(posterior),
            rate_by_channel,
            positions: zh * zw,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two random 16x16 RGB images, posterior noise for `tiny`'s latents, all channels weighted.
    fn random_batch() -> (Tensor, Tensor, Tensor) {
        let images = (Tensor::rand([2, 3, 16, 16], (Kind::Float, Device::Cpu)) * 255.0)
            .round()
            .to_kind(Kind::Uint8);
        let uniform = Tensor::rand([2, 2, 2, 2], (Kind::Float, Device::Cpu));
        let weights = Tensor::ones([2, 3], (Kind::Float, Device::Cpu));
        (images, uniform, weights)
    }

    fn tiny() -> VaeFloat {
        let arch = crate::testing::tiny_arch();
        let shape = VaeShape {
            factor: 8,
            latents: 2,
            hidden: 6,
            components: 2,
            latent_input_gain: 16,
        };
        tch::manual_seed(3);
        VaeFloat::new(arch, shape, Device::Cpu).unwrap()
    }

    /// With the bias network's output layer at zero the image term is exactly the PixelCNN's
    /// NLL, whatever the latent; the rate terms are finite and non-negative.
    #[test]
    fn a_vae_whose_latent_is_ignored_codes_images_as_its_pixelcnn_does() {
        let vae = tiny();
        vae.bias.perturb_output(0.0);
        let (images, uniform, weights) = random_batch();
        let terms = vae.cost(&images, &uniform, &weights, Precision::F32);
        let plain = vae
            .pixelcnn
            .nll_bits(&images, Precision::F32)
            .reshape([2, 256 * 3])
            .sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
        let diff = (&terms.image - &plain).abs().max().double_value(&[]);
        assert!(
            diff < 1e-3,
            "image term differs from the PixelCNN by {diff}"
        );
        for t in [&terms.prior, &terms.posterior] {
            assert!(t.isfinite().all().int64_value(&[]) == 1);
            assert!(t.min().double_value(&[]) >= 0.0);
        }
        // The cost at β = 0 is the image term alone.
        let at0 = terms.total(0.0);
        assert!((&at0 - &terms.image).abs().max().double_value(&[]) < 1e-6);
    }

    /// Free bits: at 0 the training loss is the plain cost; above every channel's rate, the
    /// rate is a constant (no gradient reaches the posterior through it).
    #[test]
    fn free_bits_floor_each_channels_rate() {
        let vae = tiny();
        let (images, uniform, weights) = random_batch();
        let terms = vae.cost(&images, &uniform, &weights, Precision::F32);
        assert_eq!(terms.positions, 4);
        let plain = terms.total(0.5).sum(Kind::Float).double_value(&[]);
        let at0 = terms.training_loss(0.5, 0.0).double_value(&[]);
        assert!(
            (plain - at0).abs() < 1e-3 * plain.abs().max(1.0),
            "{plain} vs {at0}"
        );
        let rates: Vec<f64> = (0..2)
            .map(|j| terms.rate_by_channel.double_value(&[j]))
            .collect();
        // At 0 no channel is floored, not even one whose estimate came out negative.
        let negative = CostTerms {
            image: terms.image.shallow_clone(),
            prior: terms.prior.shallow_clone(),
            posterior: terms.posterior.shallow_clone(),
            rate_by_channel: Tensor::from_slice(&[-0.5f32, 0.25]),
            positions: 4,
        };
        let image_sum = terms.image.sum(Kind::Float).double_value(&[]);
        let got = negative.training_loss(1.0, 0.0).double_value(&[]);
        let want = image_sum + (-0.5 + 0.25) * 2.0 * 4.0;
        assert!((got - want).abs() < 1e-3 * want, "{got} vs {want}");
        let floor = 1000.0;
        assert!(rates.iter().all(|&r| r < floor));
        let image = terms.image.sum(Kind::Float).double_value(&[]);
        let floored = terms.training_loss(0.5, floor).double_value(&[]);
        let expected = image + 0.5 * floor * 2.0 * 2.0 * 4.0;
        assert!(
            (floored - expected).abs() < 1e-3 * expected,
            "{floored} vs {expected}"
        );
    }

    /// Gradients reach the posterior (through the straight-through latent), the prior and the
    /// bias network, once their output layers are no longer zero (they start at zero, so that a
    /// fresh VAE is its PixelCNN; the first step moves them).
    #[test]
    fn every_network_learns() {
        let vae = tiny();
        tch::no_grad(|| {
            for (name, mut var) in vae.vs.variables() {
                if name.ends_with("w3") {
                    var.copy_(&(Tensor::randn_like(&var) * 0.01));
                }
            }
        });
        let (images, uniform, weights) = random_batch();
        let loss = vae
            .cost(&images, &uniform, &weights, Precision::F32)
            .total(1.0)
            .sum(Kind::Float);
        loss.backward();
        for (name, var) in vae.vs.variables() {
            let g = var.grad();
            let reached = g.defined() && g.abs().sum(Kind::Float).double_value(&[]) > 0.0;
            // The bias network's first layers get no gradient while its output layer is zero,
            // and the prior's first weights none ever (its input is zeros).
            let silent =
                (name.starts_with("bias") && !name.ends_with("w3") && !name.ends_with("b3"))
                    || name == "prior.w1";
            if silent {
                continue;
            }
            assert!(reached, "no gradient reaches {name}");
        }
    }
}
