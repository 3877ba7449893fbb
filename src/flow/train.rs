//! `llif train flow`: trains the flow's float network (quantization in the loop, see
//! `float_model`), logs train and validation bits per sub-pixel, checkpoints so a run can
//! resume, and exports the integer model with its float NLL and the integer model's ideal bits
//! side by side.
//!
//! Data as for the PixelCNN (`pixelcnn::train::TrainData`): the 49,000 training images of
//! CIFAR-10's five batches, random 32×32 patches of `photos/train/`, the last 1,000 images of
//! `data_batch_5.bin` for validation; never the test sets. For a plane flow, a batch's RGB
//! images become three planes (R; G given R; B given R and G), gray ones one plane, and a few
//! RGB images also get an alpha plane (constant, as most alpha planes are), so every role is
//! trained; a joint flow (`--joint`) takes RGB images whole.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tch::{nn::OptimizerConfig, Device, Kind, Tensor};

use super::float_model::FlowFloat;
use super::model::{FlowMeta, FlowModel};
use crate::error::{Error, Result};
use crate::image::Image;
use crate::pixelcnn::train::{
    crop_rgb, flip_rgb32, path_with, to_gray, write_atomic, EvalPoint, TrainData, TrainState,
};

/// Everything that determines a flow training run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FlowTrainConfig {
    pub meta: FlowMeta,
    pub data_dir: PathBuf,
    /// Output path without extension (`OUT.llifm`, `OUT.ckpt.ot`, `OUT.train.json`).
    pub out: PathBuf,
    pub steps: usize,
    /// 32×32 images per step.
    pub batch: usize,
    pub lr: f64,
    pub seed: u64,
    pub photo_fraction: f64,
    pub gray_fraction: f64,
    /// Fraction of RGB images that also get a (constant) alpha plane.
    pub alpha_fraction: f64,
    pub eval_every: usize,
    pub cuda: bool,
    /// Decay of the weights' moving average (exported when set).
    pub ema: Option<f64>,
    /// A joint flow's plane flow for gray and alpha planes: a `plane-idf-1` model file,
    /// packed into the exported `joint-idf-2` model.
    #[serde(default)]
    pub plane_model: Option<PathBuf>,
}

/// A batch of planes: `[N, P, 32, 32]` samples (`P` = the flow's `colours`: one plane, or the
/// three colour planes of a joint flow), `[N, 3, 32, 32]` condition slots, `[N]` roles.
pub struct PlaneBatch {
    pub planes: Tensor,
    pub slots: Tensor,
    pub roles: Tensor,
}

const SIDE: usize = 32;
const PLANE: usize = SIDE * SIDE;

/// Adds the planes of one 32×32 image (interleaved RGB samples; `gray`: code channel 0 only).
fn push_image(rgb: &[u8], gray: bool, alpha: Option<u8>, out: &mut (Vec<f32>, Vec<f32>, Vec<i64>)) {
    let plane = |c: usize| -> Vec<f32> { (0..PLANE).map(|i| rgb[i * 3 + c] as f32).collect() };
    let colours = if gray { 1 } else { 3 };
    let planes: Vec<Vec<f32>> = (0..colours).map(plane).collect();
    let zero = vec![0f32; PLANE];
    for (p, plane) in planes.iter().enumerate() {
        out.0.extend_from_slice(plane);
        // Condition slots: the planes before this one, zeros after.
        let earlier = planes[..p].iter();
        for slot in earlier.chain(std::iter::repeat(&zero)).take(3) {
            out.1.extend_from_slice(slot);
        }
        out.2.push(p as i64);
    }
    if let Some(a) = alpha {
        // Alpha's condition: the colour planes (Y alone for gray+alpha), zeros after.
        out.0.extend(std::iter::repeat_n(a as f32, PLANE));
        for slot in planes.iter().chain(std::iter::repeat(&zero)).take(3) {
            out.1.extend_from_slice(slot);
        }
        out.2.push(3);
    }
}

/// Adds one 32×32 RGB image as a joint flow's item: its three planes together, no condition.
fn push_joint(rgb: &[u8], out: &mut (Vec<f32>, Vec<f32>, Vec<i64>)) {
    for c in 0..3 {
        out.0.extend((0..PLANE).map(|i| rgb[i * 3 + c] as f32));
    }
    out.1.extend(std::iter::repeat_n(0f32, 3 * PLANE));
    out.2.push(0);
}

fn batch_of(parts: (Vec<f32>, Vec<f32>, Vec<i64>), colours: usize) -> PlaneBatch {
    let n = parts.2.len() as i64;
    let s = SIDE as i64;
    PlaneBatch {
        planes: Tensor::from_slice(&parts.0).reshape([n, colours as i64, s, s]),
        slots: Tensor::from_slice(&parts.1).reshape([n, 3, s, s]),
        roles: Tensor::from_slice(&parts.2),
    }
}

/// One training batch of `cfg.batch` images (for a joint flow, RGB images only: colour
/// photographs, no gray, no alpha).
pub fn make_batch(data: &TrainData, cfg: &FlowTrainConfig, rng: &mut StdRng) -> PlaneBatch {
    let joint = cfg.meta.colours == 3;
    let photos: Vec<&Image> = data
        .photos
        .iter()
        .filter(|im| !joint || im.layout().color_channels() == 3)
        .collect();
    let mut parts = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..cfg.batch {
        let flip = rng.gen_bool(0.5);
        let (mut s, gray_source) = if !photos.is_empty() && rng.gen_bool(cfg.photo_fraction) {
            let img = photos[rng.gen_range(0..photos.len())];
            let x0 = rng.gen_range(0..=img.width() - SIDE as u32);
            let y0 = rng.gen_range(0..=img.height() - SIDE as u32);
            let gray = img.layout().color_channels() == 1;
            (crop_rgb(img, x0, y0, SIDE as u32, flip), gray)
        } else {
            let i = rng.gen_range(0..data.cifar_train.len());
            (flip_rgb32(data.cifar_train.image(i), flip), false)
        };
        if joint {
            push_joint(&s, &mut parts);
            continue;
        }
        let gray = gray_source || rng.gen_bool(cfg.gray_fraction);
        if gray && !gray_source {
            to_gray(&mut s);
        }
        let alpha =
            rng.gen_bool(cfg.alpha_fraction)
                .then(|| if rng.gen_bool(0.7) { 255 } else { rng.gen() });
        push_image(&s, gray, alpha, &mut parts);
    }
    batch_of(parts, cfg.meta.colours)
}

/// The planes of RGB validation images (three per image, as the flow takes them).
fn validation_batches(images: &[Image], colours: usize) -> Vec<PlaneBatch> {
    images
        .chunks(100)
        .map(|chunk| {
            let mut parts = (Vec::new(), Vec::new(), Vec::new());
            for im in chunk {
                if colours == 3 {
                    push_joint(im.data(), &mut parts);
                } else {
                    push_image(im.data(), false, None, &mut parts);
                }
            }
            batch_of(parts, colours)
        })
        .collect()
}

/// Mean float NLL in bits per sub-pixel over validation batches.
pub fn float_bpsp(net: &FlowFloat, batches: &[PlaneBatch], device: Device) -> f64 {
    let _guard = tch::no_grad_guard();
    let (mut bits, mut samples) = (0.0, 0usize);
    for b in batches {
        let nll = net.nll_bits(
            &b.planes.to_device(device),
            &b.slots.to_device(device),
            &b.roles.to_device(device),
        );
        bits += nll.sum(Kind::Double).double_value(&[]);
        samples += b.planes.numel();
    }
    bits / samples as f64
}

/// Ideal bits per sub-pixel of the integer model on RGB images, with the coding engine (what
/// files cost, less the coder's few bytes).
pub fn int_bpsp(model: &FlowModel, images: &[Image]) -> Result<f64> {
    let mut bits = 0.0;
    let mut samples = 0usize;
    for im in images {
        bits += model.encode_payload(im)?.ideal_bits.unwrap_or(0.0);
        samples += im.samples();
    }
    Ok(bits / samples as f64)
}

/// The moving average of the weights: a second network, updated in place.
struct Average {
    net: FlowFloat,
    decay: f64,
    pairs: Vec<(Tensor, Tensor)>,
    /// Updates since a fresh average started: its decay ramps up as `(1 + n) / (10 + n)`, so
    /// that the random initial weights fade within a few hundred steps instead of thousands
    /// (a run's first evaluations showed averages of 9.4 bpsp beside live weights of 5.0).
    /// `None` for an average resumed from its checkpoint: the full decay at once.
    updates: Option<usize>,
}

impl Average {
    fn new(
        live: &FlowFloat,
        decay: f64,
        resume_from: Option<&Path>,
        device: Device,
    ) -> Result<Average> {
        let mut net = FlowFloat::new(live.meta.clone(), device)?;
        let updates = match resume_from {
            Some(p) => {
                net.vs.load(p)?;
                None
            }
            None => {
                net.vs.copy(&live.vs)?;
                Some(0)
            }
        };
        let live_vars = live.vs.variables();
        let pairs = net
            .vs
            .variables()
            .into_iter()
            .map(|(name, avg)| {
                live_vars
                    .get(&name)
                    .map(|cur| (avg, cur.shallow_clone()))
                    .ok_or_else(|| Error::Torch(format!("weight average: no variable {name}")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Average {
            net,
            decay,
            pairs,
            updates,
        })
    }

    fn update(&mut self) {
        let d = match self.updates.as_mut() {
            Some(n) => {
                let ramp = (1 + *n) as f64 / (10 + *n) as f64;
                *n += 1;
                self.decay.min(ramp)
            }
            None => self.decay,
        };
        tch::no_grad(|| {
            for (avg, cur) in &mut self.pairs {
                let _ = avg.lerp_(cur, 1.0 - d);
            }
        });
    }
}

fn save_varstore(vs: &tch::nn::VarStore, path: &Path) -> Result<()> {
    let tmp = path_with(path, ".tmp");
    vs.save(&tmp)?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// The learning rate at `step`: linear warm-up over 300 steps (again after a resume, since
/// Adam's moments restart), then a cosine to 2% of the peak.
fn learning_rate(cfg: &FlowTrainConfig, step: usize, first_step: usize) -> f64 {
    let warm = ((step - first_step) as f64 / 300.0).min(1.0);
    let t = step as f64 / cfg.steps as f64;
    cfg.lr * warm * (0.02 + 0.98 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()))
}

/// CUDA when asked for and present, else the CPU.
fn device_of(cfg: &FlowTrainConfig) -> Device {
    if cfg.cuda {
        Device::cuda_if_available()
    } else {
        Device::Cpu
    }
}

/// Runs (or resumes) training, then exports; returns the integer model.
pub fn train(cfg: &FlowTrainConfig, data: &TrainData, resume: bool) -> Result<FlowModel> {
    let device = device_of(cfg);
    tch::manual_seed(cfg.seed as i64);
    let mut net = FlowFloat::new(cfg.meta.clone(), device)?;
    let ckpt = path_with(&cfg.out, ".ckpt.ot");
    let ema_ckpt = path_with(&cfg.out, ".ema.ckpt.ot");
    let log_path = path_with(&cfg.out, ".train.json");
    let mut state = TrainState::default();
    let resuming = resume && ckpt.exists();
    if resuming {
        net.vs.load(&ckpt)?;
        let text = std::fs::read_to_string(&log_path).map_err(|e| Error::io(&log_path, e))?;
        state = serde_json::from_str(&text)
            .map_err(|e| Error::Usage(format!("{}: {e}", log_path.display())))?;
        eprintln!("resuming from step {} ({})", state.step, ckpt.display());
    }
    let mut average = match cfg.ema {
        Some(d) => Some(Average::new(
            &net,
            d,
            (resuming && ema_ckpt.exists()).then_some(&*ema_ckpt),
            device,
        )?),
        None => None,
    };
    let val = validation_batches(&data.cifar_val, cfg.meta.colours);
    let mut opt = tch::nn::Adam::default().build(&net.vs, cfg.lr)?;
    let mut rng =
        StdRng::seed_from_u64(cfg.seed ^ (state.step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let (start, base_seconds, first_step) = (Instant::now(), state.seconds, state.step);
    let (mut run_bits, mut run_n) = (0.0, 0usize);
    while state.step < cfg.steps {
        opt.set_lr(learning_rate(cfg, state.step, first_step));
        let b = make_batch(data, cfg, &mut rng);
        let nll = net.nll_bits(
            &b.planes.to_device(device),
            &b.slots.to_device(device),
            &b.roles.to_device(device),
        );
        let loss = nll.sum(Kind::Float) / b.planes.numel() as f64;
        opt.backward_step_clip_norm(&loss, 5.0);
        if let Some(a) = average.as_mut() {
            a.update();
        }
        run_bits += loss.double_value(&[]);
        run_n += 1;
        state.step += 1;
        if state.step % cfg.eval_every == 0 || state.step == cfg.steps {
            state.seconds = base_seconds + start.elapsed().as_secs_f64();
            let point = EvalPoint {
                step: state.step,
                seconds: state.seconds,
                train_bpsp: run_bits / run_n.max(1) as f64,
                val_bpsp: float_bpsp(&net, &val, device),
                val_ema_bpsp: average.as_ref().map(|a| float_bpsp(&a.net, &val, device)),
            };
            let ema_note = point
                .val_ema_bpsp
                .map_or(String::new(), |v| format!("  ema {v:.4}"));
            eprintln!(
                "step {:>6}  train {:.4}  val {:.4}{ema_note} bpsp  ({:.0} s)",
                point.step, point.train_bpsp, point.val_bpsp, point.seconds
            );
            state.history.push(point);
            (run_bits, run_n) = (0.0, 0);
            if let Some(a) = &average {
                save_varstore(&a.net.vs, &ema_ckpt)?;
            }
            save_varstore(&net.vs, &ckpt)?;
            let json =
                serde_json::to_vec_pretty(&state).map_err(|e| Error::Usage(e.to_string()))?;
            write_atomic(&log_path, &json)?;
        }
    }
    export(average.as_ref().map_or(&net, |a| &a.net), cfg, data, device)
}

/// Quantizes the float network, writes `OUT.llifm`, and reports float NLL against the integer
/// model's ideal bits on the validation images.
pub fn export(
    net: &FlowFloat,
    cfg: &FlowTrainConfig,
    data: &TrainData,
    device: Device,
) -> Result<FlowModel> {
    let float_val = float_bpsp(
        net,
        &validation_batches(&data.cifar_val, cfg.meta.colours),
        device,
    );
    let plane = match &cfg.plane_model {
        Some(path) if cfg.meta.colours == 3 => {
            let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            Some(FlowModel::from_bytes(&bytes)?)
        }
        Some(_) => {
            return Err(Error::Usage(
                "--plane: only a joint flow (--joint) takes a plane flow".into(),
            ))
        }
        None if cfg.meta.colours == 3 => {
            return Err(Error::Usage(format!(
                "validation float {float_val:.4} bpsp; to export a joint flow, give its plane \
                 flow for gray and alpha planes with --plane MODEL.llifm (a plane-idf-1 model)"
            )))
        }
        None => None,
    };
    let model = net.to_int(&cfg.meta.name, plane.as_ref())?;
    let llifm = path_with(&cfg.out, ".llifm");
    write_atomic(&llifm, &model.to_bytes())?;
    let int_val = int_bpsp(&model, &data.cifar_val)?;
    eprintln!(
        "wrote {} (model id {}, {} parameters): validation float {float_val:.4} bpsp, integer {int_val:.4} bpsp ({:+.2}%)",
        llifm.display(),
        model.id,
        model.parameters(),
        100.0 * (int_val / float_val - 1.0)
    );
    Ok(model)
}

/// Exports `OUT.ema.ckpt.ot` (runs with `ema`) or `OUT.ckpt.ot` without training.
pub fn export_checkpoint(cfg: &FlowTrainConfig, data: &TrainData) -> Result<FlowModel> {
    let device = device_of(cfg);
    let mut net = FlowFloat::new(cfg.meta.clone(), device)?;
    let ext = if cfg.ema.is_some() {
        ".ema.ckpt.ot"
    } else {
        ".ckpt.ot"
    };
    net.vs.load(path_with(&cfg.out, ext))?;
    export(&net, cfg, data, device)
}
