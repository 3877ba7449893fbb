//! `llif train vae`: trains the float VAE (see the module above) from a trained PixelCNN, the
//! rate annealed in from `β = 0`, and reports on the CIFAR-10 validation split the bits-back
//! cost beside its image term and the PixelCNN alone, so a run shows at once whether the latent
//! pays for itself.
//!
//! Data and split as for the PixelCNN (`pixelcnn::train`): never the test sets.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tch::{nn::OptimizerConfig, Device, Kind, Tensor};

use super::float_model::{VaeFloat, VaeShape};
use crate::error::{Error, Result};
use crate::image::Image;
use crate::pixelcnn::float_model::{images_to_tensor, Precision};
use crate::pixelcnn::train::{make_batch, path_with, write_atomic, TrainConfig, TrainData};

/// Everything that determines a VAE training run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VaeTrainConfig {
    /// The PixelCNN's architecture, the data, batch, learning rate, steps and output path (its
    /// `photo_val` must be empty: validation is the CIFAR-10 split).
    pub pixelcnn: TrainConfig,
    pub shape: VaeShape,
    /// A trained PixelCNN's checkpoint to start the likelihood from (fresh runs only).
    pub init_pixelcnn: Option<PathBuf>,
    /// Steps over which `β` rises linearly from 0 to 1.
    pub anneal_steps: usize,
    /// Learning rate of the PixelCNN relative to the latent's networks.
    pub pixelcnn_lr_factor: f64,
    /// Free bits: each latent channel's rate counts in training as at least this many bits
    /// per latent position (0: the plain bits-back cost). Validation always reports the
    /// plain cost.
    #[serde(default)]
    pub free_bits: f64,
}

/// The training log: `OUT.vae.json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct VaeState {
    pub step: usize,
    pub seconds: f64,
    pub history: Vec<VaeEvalPoint>,
}

/// Validation at one step, bits per sub-pixel on the CIFAR-10 validation images.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VaeEvalPoint {
    pub step: usize,
    pub seconds: f64,
    pub beta: f64,
    /// Mean training loss since the last evaluation (at that step's `β`).
    pub train: f64,
    /// The bits-back cost at `β = 1`: `image + prior − posterior`.
    pub val_cost: f64,
    pub val_image: f64,
    pub val_prior: f64,
    pub val_posterior: f64,
    /// Each latent channel's rate (`prior − posterior`), bits per latent position.
    #[serde(default)]
    pub val_rate_by_channel: Vec<f64>,
}

fn beta(cfg: &VaeTrainConfig, step: usize) -> f64 {
    if cfg.anneal_steps == 0 {
        1.0
    } else {
        (step as f64 / cfg.anneal_steps as f64).min(1.0)
    }
}

/// The validation images with fixed posterior noise (the same draw at every evaluation).
struct Validation {
    batches: Vec<(Tensor, Tensor)>,
}

impl Validation {
    fn new(images: &[Image], shape: &VaeShape, seed: u64) -> Validation {
        let mut rng = StdRng::seed_from_u64(seed);
        let batches = images
            .chunks(100)
            .map(|chunk| {
                let refs: Vec<&[u8]> = chunk.iter().map(|i| i.data()).collect();
                let (h, w) = (chunk[0].height(), chunk[0].width());
                let t = images_to_tensor(&refs, h, w);
                let f = shape.factor as u32;
                let n = chunk.len() * shape.latents * (h / f) as usize * (w / f) as usize;
                let u: Vec<f32> = (0..n).map(|_| rng.gen_range(0.0..1.0)).collect();
                let u = Tensor::from_slice(&u).reshape([
                    chunk.len() as i64,
                    shape.latents as i64,
                    (h / f) as i64,
                    (w / f) as i64,
                ]);
                (t, u)
            })
            .collect();
        Validation { batches }
    }

    /// Mean bits per sub-pixel (cost, image, prior, posterior), and each latent channel's
    /// rate in bits per latent position.
    fn measure(&self, vae: &VaeFloat, device: Device) -> ((f64, f64, f64, f64), Vec<f64>) {
        let _guard = tch::no_grad_guard();
        let (mut sums, mut samples) = ([0.0; 3], 0.0);
        let (mut rates, mut images_seen) = (vec![0.0; vae.shape.latents], 0.0);
        for (images, u) in &self.batches {
            let b = images.size()[0];
            let weights = Tensor::ones([b, 3], (Kind::Float, device));
            let t = vae.cost(
                &images.to_device(device),
                &u.to_device(device),
                &weights,
                Precision::F32,
            );
            for (s, term) in sums.iter_mut().zip([&t.image, &t.prior, &t.posterior]) {
                *s += term.sum(Kind::Double).double_value(&[]);
            }
            for (j, r) in rates.iter_mut().enumerate() {
                *r += t.rate_by_channel.double_value(&[j as i64]) * b as f64;
            }
            images_seen += b as f64;
            samples += images.numel() as f64;
        }
        let [image, prior, posterior] = sums.map(|s| s / samples);
        let rates = rates.into_iter().map(|r| r / images_seen).collect();
        ((image + prior - posterior, image, prior, posterior), rates)
    }
}

fn save(vs: &tch::nn::VarStore, path: &Path) -> Result<()> {
    let tmp = path_with(path, ".tmp");
    vs.save(&tmp)?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Loads a resumed run's checkpoints and log, or starts the likelihood from `init_pixelcnn`.
fn start(vae: &mut VaeFloat, cfg: &VaeTrainConfig, resume: bool) -> Result<VaeState> {
    let out = &cfg.pixelcnn.out;
    let (ckpt, vae_ckpt, log) = (
        path_with(out, ".ckpt.ot"),
        path_with(out, ".vae.ckpt.ot"),
        path_with(out, ".vae.json"),
    );
    if resume && vae_ckpt.exists() {
        vae.pixelcnn.vs.load(&ckpt)?;
        vae.vs.load(&vae_ckpt)?;
        let text = std::fs::read_to_string(&log).map_err(|e| Error::io(&log, e))?;
        let state: VaeState = serde_json::from_str(&text)
            .map_err(|e| Error::Usage(format!("{}: {e}", log.display())))?;
        eprintln!("resuming from step {}", state.step);
        return Ok(state);
    }
    match &cfg.init_pixelcnn {
        Some(p) => {
            vae.pixelcnn.vs.load(p)?;
            eprintln!("likelihood starts from {}", p.display());
        }
        None => eprintln!("note: the likelihood starts from random weights (no --init-pixelcnn)"),
    }
    Ok(VaeState::default())
}

/// Runs (or resumes) training. Writes `OUT.ckpt.ot` (the PixelCNN), `OUT.vae.ckpt.ot` (the
/// latent's networks) and `OUT.vae.json` at every evaluation.
pub fn train(cfg: &VaeTrainConfig, data: &TrainData, resume: bool) -> Result<VaeState> {
    let pc = &cfg.pixelcnn;
    if !pc.patch.is_multiple_of(cfg.shape.factor as u32) || !pc.photo_val.is_empty() {
        return Err(Error::Usage(format!(
            "a VAE trains on patches that are a multiple of {} and validates on CIFAR-10",
            cfg.shape.factor
        )));
    }
    let device = if pc.cuda {
        Device::cuda_if_available()
    } else {
        Device::Cpu
    };
    tch::manual_seed(pc.seed as i64);
    let mut vae = VaeFloat::new(pc.arch, cfg.shape, device)?;
    let mut state = start(&mut vae, cfg, resume)?;
    let validation = Validation::new(&data.cifar_val, &cfg.shape, pc.seed ^ 0x5eed);
    if state.step == 0 {
        let ((cost, image, _, _), _) = validation.measure(&vae, device);
        eprintln!("step 0: bits-back cost {cost:.4} bpsp (image term {image:.4}; the PixelCNN alone gives the image term at the start)");
    }
    let mut opt_latent = tch::nn::Adam::default().build(&vae.vs, pc.lr)?;
    let mut opt_pixelcnn = tch::nn::Adam::default().build(&vae.pixelcnn.vs, pc.lr)?;
    let mut rng = StdRng::seed_from_u64(pc.seed ^ (state.step as u64).wrapping_mul(0x9E37_79B9));
    let photos = data.photos_at_least(pc.patch);
    let precision = if pc.bf16 && crate::runtime::cpu_has_fast_bf16() {
        Precision::Bf16Hidden
    } else {
        Precision::F32
    };
    let (t0, base, first) = (Instant::now(), state.seconds, state.step);
    let (mut run, mut run_n) = (0.0, 0usize);
    while state.step < pc.steps {
        let s = state.step as f64;
        let warm = ((state.step - first) as f64 / 300.0).min(1.0);
        let cos = 0.02 + 0.98 * 0.5 * (1.0 + (std::f64::consts::PI * s / pc.steps as f64).cos());
        opt_latent.set_lr(pc.lr * warm * cos);
        opt_pixelcnn.set_lr(pc.lr * cfg.pixelcnn_lr_factor * warm * cos);
        let (images, weights) = make_batch(data, &photos, pc, &mut rng);
        let b = beta(cfg, state.step);
        let f = cfg.shape.factor as i64;
        let side = pc.patch as i64 / f;
        let u = Tensor::rand(
            [pc.batch as i64, cfg.shape.latents as i64, side, side],
            (Kind::Float, device),
        );
        let terms = vae.cost(
            &images.to_device(device),
            &u,
            &weights.to_device(device),
            precision,
        );
        let counted = weights.sum(Kind::Float).double_value(&[]) * (pc.patch * pc.patch) as f64;
        let loss = terms.training_loss(b, cfg.free_bits) / counted;
        opt_latent.zero_grad();
        opt_pixelcnn.zero_grad();
        loss.backward();
        opt_latent.clip_grad_norm(5.0);
        opt_pixelcnn.clip_grad_norm(5.0);
        opt_latent.step();
        opt_pixelcnn.step();
        run += loss.double_value(&[]);
        run_n += 1;
        state.step += 1;
        if state.step % pc.eval_every == 0 || state.step == pc.steps {
            let ((cost, image, prior, posterior), rates) = validation.measure(&vae, device);
            state.seconds = base + t0.elapsed().as_secs_f64();
            let point = VaeEvalPoint {
                step: state.step,
                seconds: state.seconds,
                beta: b,
                train: run / run_n.max(1) as f64,
                val_cost: cost,
                val_image: image,
                val_prior: prior,
                val_posterior: posterior,
                val_rate_by_channel: rates,
            };
            eprintln!(
                "step {:>6}  beta {:.2}  train {:.4}  val cost {:.4} = image {:.4} + prior {:.4} - posterior {:.4} bpsp  ({:.0} s)",
                point.step, b, point.train, cost, image, prior, posterior, point.seconds
            );
            let rates: Vec<String> = point
                .val_rate_by_channel
                .iter()
                .map(|r| format!("{r:.3}"))
                .collect();
            eprintln!(
                "        rate by latent channel (bits per position): {}",
                rates.join(" ")
            );
            state.history.push(point);
            (run, run_n) = (0.0, 0);
            save(&vae.vs, &path_with(&pc.out, ".vae.ckpt.ot"))?;
            save(&vae.pixelcnn.vs, &path_with(&pc.out, ".ckpt.ot"))?;
            let json =
                serde_json::to_vec_pretty(&state).map_err(|e| Error::Usage(e.to_string()))?;
            write_atomic(&path_with(&pc.out, ".vae.json"), &json)?;
        }
    }
    Ok(state)
}
