//! `llif train pixelcnn`: trains the float network with tch (Adam, cosine schedule), logs train
//! and validation bits per sub-pixel, checkpoints so a run can resume, and writes the integer
//! model with the float and integer NLL side by side.
//!
//! Data (never the test sets): CIFAR-10 `data_batch_1.bin` .. `data_batch_5.bin` (the last 1,000
//! records of batch 5 are the validation split, everything else trains) and random 32×32
//! patches of `photos/train/`. Augmentation: horizontal flips; a fraction of images turned gray
//! (gray images are coded with channel 0 and the value replicated into the context, so the model
//! must know that case).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tch::{nn::OptimizerConfig, Device, Kind, Tensor};

use super::arch::Arch;
use super::float_model::{images_to_tensor, PixelCnnFloat, PixelCnnTch, Precision};
use super::int_model::PixelCnnInt;
use crate::coding::{LogisticMixture, QuantizedCdf};
use crate::error::{Error, Result};
use crate::image::{ChannelLayout, Image};

/// Everything that determines a training run (saved with checkpoints; the model card quotes the
/// command that produced it).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainConfig {
    pub arch: Arch,
    pub data_dir: PathBuf,
    /// Output path without extension: writes `OUT.llifm`, `OUT.ckpt.ot`, `OUT.train.json`.
    pub out: PathBuf,
    pub name: String,
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    pub seed: u64,
    /// Fraction of a batch drawn as patches of `photos/train/`.
    pub photo_fraction: f64,
    /// Fraction of images turned gray.
    pub gray_fraction: f64,
    /// Validate and checkpoint every this many steps.
    pub eval_every: usize,
    pub cuda: bool,
    /// Train with the hidden layers' matmuls in bf16 ([`Precision::Bf16Hidden`]).
    pub bf16: bool,
    /// Quantization-aware training for 8-bit weights ([`PixelCnnFloat::qat8`]); validation and
    /// export then see the quantized network too.
    pub qat8: bool,
    /// Decay of an exponential moving average of the weights (Polyak averaging, as in
    /// PixelCNN++), e.g. `0.9995`. When set, validation also reports the averaged network,
    /// `OUT.ema.ckpt.ot` holds it, and it is what gets exported.
    #[serde(default)]
    pub ema: Option<f64>,
    /// Side of the square training patches (32 for CIFAR-10; larger only with
    /// `photo_fraction` 1, since CIFAR images are 32×32). A local network sees the patch
    /// border as "outside the image"; larger patches weight interior pixels as a full-size
    /// photograph does.
    pub patch: u32,
    /// With `qat8`: train on each hidden unit's own activation grid, the caps `llif train int8`
    /// calibrates, recalibrated at the start and every 2,000 steps (instead of one grid for all
    /// units, which `--uniform-caps` quantizes to).
    #[serde(default)]
    pub qat8_caps: bool,
    /// Photographs of `photos/train/` (file names less the extension) held out of training; when any are named,
    /// validation runs on fixed crops of them instead of the CIFAR-10 split (the split for a
    /// model meant for photographs).
    pub photo_val: Vec<String>,
}

/// The photographs of `photos/train/` held out for validating photo models (`--photo-val
/// default`): the ten on which the adaptive stage was chosen (see `models/README.md`).
pub const DEFAULT_PHOTO_VAL: [&str; 10] = [
    "mcmaster_01",
    "usc_sipi_4_2_03",
    "opencv_rubberwhale1",
    "wesaturate_bliznaca",
    "usc_sipi_boat_512",
    "skimage_grass",
    "usc_sipi_bandon",
    "opencv_pic2",
    "usc_sipi_5_2_08",
    "skimage_motorcycle_left",
];

/// The training log written next to the model.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TrainState {
    pub step: usize,
    pub seconds: f64,
    pub history: Vec<EvalPoint>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EvalPoint {
    pub step: usize,
    pub seconds: f64,
    pub train_bpsp: f64,
    pub val_bpsp: f64,
    /// Validation NLL of the weight average (runs with `ema`; absent in older logs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_ema_bpsp: Option<f64>,
}

/// CIFAR-10 training batches, in file order: `data_batch_1.bin` .. `data_batch_5.bin`.
pub const CIFAR_TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];

/// The validation split: the last `CIFAR_VAL_COUNT` records of `data_batch_5.bin` (records
/// 9000..9999). Everything before them in the five batches is training data. Fixed here, not
/// derived from file sizes, so that a grown or shrunk data folder cannot move images between
/// the two splits silently.
pub const CIFAR_VAL_COUNT: usize = 1000;

/// CIFAR-10 training images packed in one buffer: image `i` is the 3,072 interleaved RGB
/// samples at `i * 3072` (one allocation for 49,000 images instead of one per image).
#[derive(Clone, Debug, Default)]
pub struct CifarPool {
    samples: Vec<u8>,
}

impl CifarPool {
    const IMAGE_SAMPLES: usize = crate::corpus::CIFAR_RECORD_BYTES - 1;

    pub fn len(&self) -> usize {
        self.samples.len() / Self::IMAGE_SAMPLES
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The interleaved RGB samples of image `i` (32×32×3).
    pub fn image(&self, i: usize) -> &[u8] {
        &self.samples[i * Self::IMAGE_SAMPLES..(i + 1) * Self::IMAGE_SAMPLES]
    }

    /// Appends one official CIFAR-10 record (label byte, then R, G, B planes).
    fn push_record(&mut self, record: &[u8]) {
        let planes = &record[1..];
        let plane = Self::IMAGE_SAMPLES / 3;
        self.samples.reserve(Self::IMAGE_SAMPLES);
        for i in 0..plane {
            self.samples
                .extend_from_slice(&[planes[i], planes[plane + i], planes[2 * plane + i]]);
        }
    }
}

/// Training data in memory.
pub struct TrainData {
    pub cifar_train: CifarPool,
    pub cifar_val: Vec<Image>,
    /// Training photographs, with their names (file names less the extension) in `photo_names`.
    pub photos: Vec<Image>,
    pub photo_names: Vec<String>,
    /// Photographs moved out of training by [`TrainData::hold_out_photos`], and their names.
    pub photos_val: Vec<Image>,
    pub photo_val_names: Vec<String>,
}

impl TrainData {
    /// Streams the five CIFAR-10 training batches record by record (no whole-file copies) into
    /// the training pool and the validation split, and loads `photos/train/` (images of at
    /// least 32×32). Missing batch files are skipped, so a data folder with only some batches
    /// still trains; the validation split needs `data_batch_5.bin`.
    pub fn load(data_dir: &Path) -> Result<TrainData> {
        let mut cifar_train = CifarPool::default();
        let mut cifar_val = Vec::new();
        let mut batches_read = 0;
        for (b, name) in CIFAR_TRAIN_FILES.iter().enumerate() {
            let path = data_dir.join("cifar10").join(name);
            if !path.is_file() {
                continue;
            }
            batches_read += 1;
            let last = b + 1 == CIFAR_TRAIN_FILES.len();
            read_cifar_records(&path, |index, count, record| {
                if last && index + CIFAR_VAL_COUNT >= count {
                    let mut one = CifarPool::default();
                    one.push_record(record);
                    cifar_val.push(Image::new(32, 32, ChannelLayout::Rgb, one.samples)?);
                } else {
                    cifar_train.push_record(record);
                }
                Ok(())
            })?;
        }
        let photos_dir = data_dir.join("photos/train");
        let (photo_names, photos) = if photos_dir.is_dir() {
            crate::corpus::read_image_folder(&photos_dir)?
                .into_iter()
                .filter(|(_, im)| im.width() >= 32 && im.height() >= 32)
                .unzip()
        } else {
            (Vec::new(), Vec::new())
        };
        if cifar_train.is_empty() || cifar_val.is_empty() {
            return Err(Error::Usage(format!(
                "no CIFAR-10 training batches (or no data_batch_5.bin for validation) in {}/cifar10 ({batches_read} found)",
                data_dir.display()
            )));
        }
        Ok(TrainData {
            cifar_train,
            cifar_val,
            photos,
            photo_names,
            photos_val: Vec::new(),
            photo_val_names: Vec::new(),
        })
    }

    /// Moves the photographs named `names` (file names less the extension, in `photos/train/`)
    /// from training to `photos_val`. Every name must be there, once: a typo must not validate
    /// on nothing. A refused list moves nothing.
    pub fn hold_out_photos(&mut self, names: &[String]) -> Result<()> {
        for (k, name) in names.iter().enumerate() {
            if names[..k].contains(name) {
                return Err(Error::Usage(format!("--photo-val: {name} named twice")));
            }
            if !self.photo_names.contains(name) {
                return Err(Error::Usage(format!(
                    "--photo-val: no {name} in photos/train"
                )));
            }
        }
        for name in names {
            let i = self
                .photo_names
                .iter()
                .position(|n| n == name)
                .expect("checked above");
            self.photo_val_names.push(self.photo_names.remove(i));
            self.photos_val.push(self.photos.remove(i));
        }
        Ok(())
    }

    /// Keeps only the training photographs with both sides at least `side`.
    pub(crate) fn photos_at_least(&self, side: u32) -> Vec<&Image> {
        self.photos
            .iter()
            .filter(|im| im.width() >= side && im.height() >= side)
            .collect()
    }
}

/// A fixed validation set: `size`×`size` RGB crops (gray replicated) and the per-channel
/// weights of their loss (`[1, 0, 0]` for gray, whose other channels are copies).
pub struct ValSet {
    size: u32,
    crops: Vec<Vec<u8>>,
    weights: Vec<[f32; 3]>,
}

impl ValSet {
    /// The CIFAR-10 validation split, every channel counted.
    pub fn cifar(images: &[Image]) -> ValSet {
        ValSet {
            size: 32,
            crops: images.iter().map(|im| im.data().to_vec()).collect(),
            weights: vec![[1.0; 3]; images.len()],
        }
    }

    /// `per_photo` crops of each photograph, on a regular grid (the same crops every run).
    pub fn photo_crops(photos: &[Image], size: u32, per_photo: u32) -> ValSet {
        let mut set = ValSet {
            size,
            crops: Vec::new(),
            weights: Vec::new(),
        };
        let side = (per_photo as f64).sqrt().ceil() as u32;
        for img in photos
            .iter()
            .filter(|im| im.width() >= size && im.height() >= size)
        {
            let gray = img.layout().color_channels() == 1;
            for k in 0..side * side {
                let (gx, gy) = (k % side, k / side);
                let x0 = (img.width() - size) * (2 * gx + 1) / (2 * side);
                let y0 = (img.height() - size) * (2 * gy + 1) / (2 * side);
                set.crops.push(crop_rgb(img, x0, y0, size, false));
                set.weights
                    .push(if gray { [1.0, 0.0, 0.0] } else { [1.0; 3] });
            }
        }
        set
    }

    pub fn len(&self) -> usize {
        self.crops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.crops.is_empty()
    }
}

/// Mean float NLL (bits per counted sub-pixel) of a validation set.
pub fn val_bpsp(net: &PixelCnnFloat, set: &ValSet, device: Device) -> f64 {
    let _guard = tch::no_grad_guard();
    let (mut bits, mut count) = (0.0, 0.0);
    let px = (set.size * set.size) as i64;
    for (crops, weights) in set.crops.chunks(100).zip(set.weights.chunks(100)) {
        let refs: Vec<&[u8]> = crops.iter().map(|s| s.as_slice()).collect();
        let t = images_to_tensor(&refs, set.size, set.size).to_device(device);
        let nll = net.nll_bits(&t, Precision::F32); // [n·size·size, 3]
        let flat: Vec<f32> = weights.iter().flatten().copied().collect();
        let w = Tensor::from_slice(&flat)
            .reshape([crops.len() as i64, 1, 3])
            .expand([crops.len() as i64, px, 3], false)
            .reshape([-1, 3])
            .to_device(device);
        bits += (&nll * &w).sum(Kind::Double).double_value(&[]);
        count += w.sum(Kind::Double).double_value(&[]);
    }
    bits / count
}

/// Calls `f(index, record_count, record)` for each 3,073-byte record of a CIFAR-10 batch file,
/// reading one record at a time.
fn read_cifar_records(
    path: &Path,
    mut f: impl FnMut(usize, usize, &[u8]) -> Result<()>,
) -> Result<()> {
    use std::io::Read;
    let record_len = crate::corpus::CIFAR_RECORD_BYTES;
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len() as usize;
    if !len.is_multiple_of(record_len) {
        return Err(Error::ImageFile(format!(
            "{}: not a CIFAR-10 batch ({len} bytes is not a multiple of {record_len})",
            path.display()
        )));
    }
    let count = len / record_len;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut record = vec![0u8; record_len];
    for index in 0..count {
        reader
            .read_exact(&mut record)
            .map_err(|e| Error::io(path, e))?;
        f(index, count, &record)?;
    }
    Ok(())
}

/// A 32×32 RGB view of `img` at (`x0`, `y0`) (gray replicated, alpha dropped), optionally flipped.
pub(crate) fn crop_rgb(img: &Image, x0: u32, y0: u32, size: u32, flip: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity((size * size * 3) as usize);
    let color = img.layout().color_channels();
    for y in 0..size {
        for xi in 0..size {
            let x = if flip { size - 1 - xi } else { xi };
            for c in 0..3 {
                out.push(img.sample(x0 + x, y0 + y, if color == 3 { c } else { 0 }));
            }
        }
    }
    out
}

/// A copy of a 32×32 interleaved RGB image, optionally flipped left to right.
pub(crate) fn flip_rgb32(rgb: &[u8], flip: bool) -> Vec<u8> {
    if !flip {
        return rgb.to_vec();
    }
    let mut out = Vec::with_capacity(rgb.len());
    for row in rgb.chunks_exact(32 * 3) {
        for px in row.chunks_exact(3).rev() {
            out.extend_from_slice(px);
        }
    }
    out
}

pub(crate) fn to_gray(rgb: &mut [u8]) {
    for p in rgb.chunks_exact_mut(3) {
        let y = ((299 * p[0] as u32 + 587 * p[1] as u32 + 114 * p[2] as u32 + 500) / 1000) as u8;
        p.fill(y);
    }
}

/// One training batch: `[B, 3, P, P]` images (P = `cfg.patch`) and `[B, 3]` per-channel loss
/// weights. `photos` are the training photographs large enough for a patch.
pub(crate) fn make_batch(
    data: &TrainData,
    photos: &[&Image],
    cfg: &TrainConfig,
    rng: &mut StdRng,
) -> (Tensor, Tensor) {
    let size = cfg.patch;
    let mut samples = Vec::with_capacity(cfg.batch);
    let mut weights = Vec::with_capacity(cfg.batch * 3);
    for _ in 0..cfg.batch {
        let flip = rng.gen_bool(0.5);
        let (mut s, gray_source) = if !photos.is_empty() && rng.gen_bool(cfg.photo_fraction) {
            let img = photos[rng.gen_range(0..photos.len())];
            let x0 = rng.gen_range(0..=img.width() - size);
            let y0 = rng.gen_range(0..=img.height() - size);
            (
                crop_rgb(img, x0, y0, size, flip),
                img.layout().color_channels() == 1,
            )
        } else {
            let img = data
                .cifar_train
                .image(rng.gen_range(0..data.cifar_train.len()));
            (flip_rgb32(img, flip), false)
        };
        let gray = gray_source || rng.gen_bool(cfg.gray_fraction);
        if gray && !gray_source {
            to_gray(&mut s);
        }
        weights.extend_from_slice(if gray {
            &[1.0f32, 0.0, 0.0]
        } else {
            &[1.0, 1.0, 1.0]
        });
        samples.push(s);
    }
    let refs: Vec<&[u8]> = samples.iter().map(|s| s.as_slice()).collect();
    (
        images_to_tensor(&refs, size, size),
        Tensor::from_slice(&weights).reshape([cfg.batch as i64, 3]),
    )
}

/// Mean float NLL (bits per sub-pixel) of RGB images.
pub fn float_bpsp(net: &PixelCnnFloat, images: &[Image], device: Device) -> f64 {
    let _guard = tch::no_grad_guard();
    let (mut bits, mut count) = (0.0, 0usize);
    for chunk in images.chunks(100) {
        let refs: Vec<&[u8]> = chunk.iter().map(|i| i.data()).collect();
        let t = images_to_tensor(&refs, chunk[0].height(), chunk[0].width()).to_device(device);
        let nll = net.nll_bits(&t, Precision::F32);
        bits += nll.sum(Kind::Double).double_value(&[]);
        count += nll.numel();
    }
    bits / count as f64
}

/// Mean ideal bits per sub-pixel of the integer model (what the coder would spend, less the
/// coder's own overhead) on RGB images, computed with the exact tch path.
pub fn int_bpsp(model: &PixelCnnInt, images: &[Image], device: Device) -> Result<f64> {
    let tch_model = PixelCnnTch::new(model, device);
    let a = *model.arch();
    let p = a.params_per_channel();
    let (mut bits, mut count) = (0.0, 0usize);
    for chunk in images.chunks(50) {
        let refs: Vec<&[u8]> = chunk.iter().map(|i| i.data()).collect();
        let t = images_to_tensor(&refs, chunk[0].height(), chunk[0].width());
        let params =
            Vec::<f64>::try_from(tch_model.params(&t).to_device(Device::Cpu).flatten(0, 1))
                .map_err(|e| Error::Torch(e.to_string()))?;
        let samples: Vec<u8> = refs.iter().flat_map(|s| s.iter().copied()).collect();
        for (px, row) in params.chunks_exact(a.outputs()).enumerate() {
            for c in 0..3 {
                let q: Vec<i32> = row[c * p..(c + 1) * p].iter().map(|&v| v as i32).collect();
                let (l, m, s) = super::int_model::split_params(&q, a.components);
                bits += LogisticMixture::from_params(l, m, s).bits(samples[px * 3 + c] as u32);
                count += 1;
            }
        }
    }
    Ok(bits / count as f64)
}

/// An exponential moving average of a network's weights, kept in a second network of the same
/// architecture (so it validates and exports like any other).
struct WeightAverage {
    net: PixelCnnFloat,
    decay: f64,
    /// (average, live) pairs, matched by variable name.
    pairs: Vec<(Tensor, Tensor)>,
    /// Updates since the average was started: the effective decay ramps up as
    /// `(1 + n) / (10 + n)` so that a fresh average is not dominated by its starting point.
    /// `None` for an average resumed from its checkpoint, which takes the full decay at once.
    updates: Option<usize>,
}

impl WeightAverage {
    /// Resumes the average from `resume_from`, or starts it at the live weights.
    fn new(
        live: &PixelCnnFloat,
        decay: f64,
        resume_from: Option<&Path>,
        device: Device,
    ) -> Result<Self> {
        let (mut net, updates) = match resume_from {
            Some(ckpt) => {
                eprintln!("resuming the weight average from {}", ckpt.display());
                (load_float(live.arch, ckpt, device)?, None)
            }
            None => {
                let mut net = PixelCnnFloat::new(live.arch, device)?;
                net.vs.copy(&live.vs)?;
                (net, Some(0))
            }
        };
        net.qat8 = live.qat8;
        let live_vars = live.vs.variables();
        let mut pairs = Vec::new();
        for (name, avg) in net.vs.variables() {
            let cur = live_vars
                .get(&name)
                .ok_or_else(|| Error::Torch(format!("weight average: no variable {name}")))?;
            pairs.push((avg, cur.shallow_clone()));
        }
        Ok(WeightAverage {
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
                // avg ← d·avg + (1 − d)·cur, in place
                let _ = avg.lerp_(cur, 1.0 - d);
            }
        });
    }
}

pub(crate) fn path_with(out: &Path, ext: &str) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(ext);
    PathBuf::from(s)
}

/// Runs (or resumes) training; returns the final integer model.
pub fn train(
    cfg: &TrainConfig,
    data: &TrainData,
    resume: bool,
    progress: bool,
) -> Result<PixelCnnInt> {
    let device = if cfg.cuda {
        Device::cuda_if_available()
    } else {
        Device::Cpu
    };
    tch::manual_seed(cfg.seed as i64);
    let mut net = PixelCnnFloat::new(cfg.arch, device)?;
    net.qat8 = cfg.qat8;
    let ckpt = path_with(&cfg.out, ".ckpt.ot");
    let log_path = path_with(&cfg.out, ".train.json");
    let mut state = TrainState::default();
    if resume && ckpt.exists() {
        net.vs.load(&ckpt)?;
        let text = std::fs::read_to_string(&log_path).map_err(|e| Error::io(&log_path, e))?;
        state = serde_json::from_str(&text)
            .map_err(|e| Error::Usage(format!("{}: {e}", log_path.display())))?;
        eprintln!("resuming from step {} ({})", state.step, ckpt.display());
    }
    let ema_ckpt = path_with(&cfg.out, ".ema.ckpt.ot");
    let mut average = match cfg.ema {
        Some(decay) => {
            // Only a resumed run continues a saved average; a fresh run must not pick up one
            // left behind by an earlier run under the same name.
            let resume_from = (resume && ckpt.exists() && ema_ckpt.exists()).then_some(&*ema_ckpt);
            Some(WeightAverage::new(&net, decay, resume_from, device)?)
        }
        None => None,
    };
    let mut opt = tch::nn::Adam::default().build(&net.vs, cfg.lr)?;
    let mut rng =
        StdRng::seed_from_u64(cfg.seed ^ (state.step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let bar = if progress {
        indicatif::ProgressBar::new(cfg.steps as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} steps, {elapsed} elapsed, eta {eta} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_position(state.step as u64);
    let start = Instant::now();
    let base_seconds = state.seconds;
    let (mut run_bits, mut run_n) = (0.0, 0usize);
    let first_step = state.step;
    let precision = choose_precision(cfg, device);
    let photos = data.photos_at_least(cfg.patch);
    check_patches(cfg, photos.len())?;
    let mut calibrated_at = state.step;
    if cfg.qat8_caps {
        recalibrate(&mut net, average.as_mut().map(|a| &mut a.net), cfg, data)?;
    }
    let val_set = validation_set(cfg, data);
    if val_set.is_empty() {
        return Err(Error::Usage(format!(
            "no validation images: the held-out photographs are all smaller than {0}x{0}",
            cfg.patch.max(32)
        )));
    }
    eprintln!(
        "validating on {} {}x{} {}",
        val_set.len(),
        val_set.size,
        val_set.size,
        if cfg.photo_val.is_empty() {
            "CIFAR-10 images"
        } else {
            "photo crops"
        }
    );
    while state.step < cfg.steps {
        // Linear warm-up over 300 steps, then cosine decay to 2% of the peak. A resumed run
        // warms up again: Adam's moments start from zero, and a full-size first step from
        // fresh moments undoes much of what the checkpoint had learned.
        let s = state.step as f64;
        let warm = ((state.step - first_step) as f64 / 300.0).min(1.0);
        let cos = 0.02 + 0.98 * 0.5 * (1.0 + (std::f64::consts::PI * s / cfg.steps as f64).cos());
        opt.set_lr(cfg.lr * warm * cos);
        let (images, weights) = make_batch(data, &photos, cfg, &mut rng);
        let images = images.to_device(device);
        let weights = weights.to_device(device);
        let nll = net.nll_bits(&images, precision); // [B·P·P, 3]
        let px = (cfg.patch * cfg.patch) as i64;
        let w = weights
            .unsqueeze(1)
            .expand([cfg.batch as i64, px, 3], false)
            .reshape([-1, 3]);
        let loss = (&nll * &w).sum(Kind::Float) / w.sum(Kind::Float);
        opt.backward_step_clip_norm(&loss, 5.0);
        if let Some(avg) = average.as_mut() {
            avg.update();
        }
        run_bits += loss.double_value(&[]);
        run_n += 1;
        state.step += 1;
        bar.set_position(state.step as u64);
        if state.step % 20 == 0 {
            bar.set_message(format!("train {:.3} bpsp", run_bits / run_n as f64));
        }
        if state.step % cfg.eval_every == 0 || state.step == cfg.steps {
            let val = val_bpsp(&net, &val_set, device);
            let val_ema = average.as_ref().map(|a| val_bpsp(&a.net, &val_set, device));
            state.seconds = base_seconds + start.elapsed().as_secs_f64();
            let point = EvalPoint {
                step: state.step,
                seconds: state.seconds,
                train_bpsp: run_bits / run_n.max(1) as f64,
                val_bpsp: val,
                val_ema_bpsp: val_ema,
            };
            let ema_note = val_ema.map_or(String::new(), |v| format!("  ema {v:.4}"));
            let line = format!(
                "step {:>6}  train {:.4}  val {:.4}{ema_note} bpsp  ({:.0} s)",
                point.step, point.train_bpsp, point.val_bpsp, point.seconds
            );
            if progress {
                bar.println(line);
            } else {
                eprintln!("{line}");
            }
            state.history.push(point);
            (run_bits, run_n) = (0.0, 0);
            if let Some(avg) = &average {
                // Before the live checkpoint and log, so a log never names a step whose
                // average was not saved.
                save_varstore(&avg.net, &ema_ckpt)?;
            }
            save_checkpoint(&net, &ckpt, &log_path, &state)?;
            // A calibration costs about a minute (2 Zen 4 cores); caps drift slowly. The last
            // one is just before the export, so it quantizes on the caps it trained on last.
            let due = state.step >= calibrated_at + RECALIBRATE_EVERY || state.step == cfg.steps;
            if cfg.qat8_caps && due {
                recalibrate(&mut net, average.as_mut().map(|a| &mut a.net), cfg, data)?;
                calibrated_at = state.step;
            }
        }
    }
    bar.finish_and_clear();
    match &average {
        Some(avg) => export(&avg.net, cfg, data, device),
        None => export(&net, cfg, data, device),
    }
}

/// Patches larger than CIFAR-10's images need a photographs-only run with photographs to cut.
fn check_patches(cfg: &TrainConfig, usable_photos: usize) -> Result<()> {
    if cfg.patch < 8 {
        return Err(Error::Usage(format!("--patch {}: at least 8", cfg.patch)));
    }
    if cfg.patch != 32 && cfg.photo_fraction < 1.0 {
        return Err(Error::Usage(format!(
            "--patch {}: CIFAR-10 images are 32x32; other patch sizes need --photo-fraction 1",
            cfg.patch
        )));
    }
    if cfg.photo_fraction > 0.0 && usable_photos == 0 {
        return Err(Error::Usage(format!(
            "--photo-fraction {}: no training photograph of at least {}x{}",
            cfg.photo_fraction, cfg.patch, cfg.patch
        )));
    }
    Ok(())
}

/// Crops of the held-out photographs when there are any (64 per photograph), else the CIFAR-10
/// validation split.
fn validation_set(cfg: &TrainConfig, data: &TrainData) -> ValSet {
    if cfg.photo_val.is_empty() {
        ValSet::cifar(&data.cifar_val)
    } else {
        ValSet::photo_crops(&data.photos_val, cfg.patch.max(32), 64)
    }
}

/// Steps between recalibrations of the activation caps under `qat8_caps` (at evaluations).
const RECALIBRATE_EVERY: usize = 2000;

/// Sets the activation caps of `net` and its weight average (which is what gets exported, so
/// the caps are calibrated on it when there is one) to those `llif train int8` would choose for
/// the exported network: its 32-bit export, dequantized, run on the first 400 CIFAR-10
/// training images (256 pixels each) and 2,048 pixels of each training photograph, each unit's
/// cap by `quantize8::choose_cap`.
fn recalibrate(
    net: &mut PixelCnnFloat,
    average: Option<&mut PixelCnnFloat>,
    cfg: &TrainConfig,
    data: &TrainData,
) -> Result<()> {
    use super::quantize8::{dequantize, Calibration};
    let t = Instant::now();
    let exported = average.as_deref().unwrap_or(net);
    let model = exported.to_int(&cfg.name)?;
    let layers = dequantize(&model);
    let mut calibration = Calibration::new(&cfg.arch);
    for i in 0..data.cifar_train.len().min(400) {
        let img = Image::new(
            32,
            32,
            ChannelLayout::Rgb,
            data.cifar_train.image(i).to_vec(),
        )?;
        calibration.add_image(&cfg.arch, &layers, &img, 256);
    }
    // Every photograph of photos/train, held out or not, as `llif train int8` reads them
    // (by file name, as `read_image_folder` orders them).
    let mut photos: Vec<(&String, &Image)> = data.photo_names.iter().zip(&data.photos).collect();
    photos.extend(data.photo_val_names.iter().zip(&data.photos_val));
    photos.sort_by(|a, b| a.0.cmp(b.0));
    for (_, img) in photos {
        calibration.add_image(&cfg.arch, &layers, img, 2048);
    }
    let caps: Vec<Tensor> = calibration
        .caps()
        .iter()
        .map(|c| Tensor::from_slice(c).to_device(net.vs.device()))
        .collect();
    eprintln!(
        "activation caps recalibrated ({:.0} s)",
        t.elapsed().as_secs_f64()
    );
    if let Some(avg) = average {
        avg.act_caps = Some(caps.iter().map(|c| c.shallow_clone()).collect());
    }
    net.act_caps = Some(caps);
    Ok(())
}

/// `--bf16` where it pays: on CUDA, or on a CPU with native bf16 matrix multiplies. Elsewhere
/// the run says so and trains in f32, which is then the faster of the two.
fn choose_precision(cfg: &TrainConfig, device: Device) -> Precision {
    if !cfg.bf16 {
        return Precision::F32;
    }
    if device == Device::Cpu && !crate::runtime::cpu_has_fast_bf16() {
        eprintln!(
            "note: --bf16 ignored: this CPU has no AVX-512 BF16, and libtorch's bf16 fallback is \
             much slower than f32 here; training in f32"
        );
        return Precision::F32;
    }
    Precision::Bf16Hidden
}

/// Quantizes the float network, writes `OUT.llifm`, and reports float vs integer NLL on the
/// validation images.
pub fn export(
    net: &PixelCnnFloat,
    cfg: &TrainConfig,
    data: &TrainData,
    device: Device,
) -> Result<PixelCnnInt> {
    let model = net.to_int(&cfg.name)?;
    let llifm = path_with(&cfg.out, ".llifm");
    write_atomic(&llifm, &model.to_bytes())?;
    if !cfg.photo_val.is_empty() {
        let photo_val = val_bpsp(net, &validation_set(cfg, data), device);
        eprintln!("validation on the held-out photographs: float {photo_val:.4} bpsp");
    }
    let float_val = float_bpsp(net, &data.cifar_val, device);
    let int_val = int_bpsp(&model, &data.cifar_val, Device::Cpu)?;
    eprintln!(
        "wrote {} (model id {}, {} parameters): validation float {:.4} bpsp, integer {:.4} bpsp ({:+.2}%)",
        llifm.display(),
        model.id,
        model.parameters(),
        float_val,
        int_val,
        100.0 * (int_val / float_val - 1.0)
    );
    Ok(model)
}

/// Loads `OUT.ckpt.ot` (or, for a run with `ema`, `OUT.ema.ckpt.ot`) and exports it (no
/// training).
pub fn export_checkpoint(cfg: &TrainConfig, data: &TrainData) -> Result<PixelCnnInt> {
    let device = if cfg.cuda {
        Device::cuda_if_available()
    } else {
        Device::Cpu
    };
    let ext = if cfg.ema.is_some() {
        ".ema.ckpt.ot"
    } else {
        ".ckpt.ot"
    };
    let mut net = load_float(cfg.arch, &path_with(&cfg.out, ext), device)?;
    net.qat8 = cfg.qat8;
    if cfg.qat8_caps {
        recalibrate(&mut net, None, cfg, data)?;
    }
    export(&net, cfg, data, device)
}

/// Saves a network's weights to a temporary file, then renames it over `path`.
fn save_varstore(net: &PixelCnnFloat, path: &Path) -> Result<()> {
    let tmp = path_with(path, ".tmp");
    net.vs.save(&tmp)?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

fn save_checkpoint(
    net: &PixelCnnFloat,
    ckpt: &Path,
    log_path: &Path,
    state: &TrainState,
) -> Result<()> {
    save_varstore(net, ckpt)?;
    let json = serde_json::to_vec_pretty(state).map_err(|e| Error::Usage(e.to_string()))?;
    write_atomic(log_path, &json)
}

/// Writes `bytes` to a temporary file beside `path`, then renames it over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, e))?;
    tmp.write_all(bytes).map_err(|e| Error::io(path, e))?;
    // A temporary file is private (0600); models and logs are ordinary files (as `llif`'s
    // outputs are).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::Permissions::from_mode(0o644);
        tmp.as_file()
            .set_permissions(mode)
            .map_err(|e| Error::io(path, e))?;
    }
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

/// Loads the float network from a checkpoint (for evaluation and re-quantization).
pub fn load_float(arch: Arch, ckpt: &Path, device: Device) -> Result<PixelCnnFloat> {
    let mut net = PixelCnnFloat::new(arch, device)?;
    net.vs.load(ckpt)?;
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weights(net: &PixelCnnFloat) -> Vec<f64> {
        let mut vars: Vec<(String, Tensor)> = net.vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        vars.iter()
            .flat_map(|(_, t)| {
                Vec::<f64>::try_from(t.flatten(0, -1).to_kind(Kind::Double)).unwrap()
            })
            .collect()
    }

    /// Held-out photographs leave training by name (an unknown name is an error, not an
    /// empty validation set); their crops are fixed, inside the image, and a gray one's loss
    /// counts its one channel.
    #[test]
    fn photos_held_out_by_name_give_fixed_crops() {
        use crate::testing::noise_image;
        let mut data = TrainData {
            cifar_train: CifarPool::default(),
            cifar_val: Vec::new(),
            photos: vec![
                noise_image(70, 40, ChannelLayout::Rgb, 1),
                noise_image(33, 90, ChannelLayout::Gray, 2),
                noise_image(50, 50, ChannelLayout::Rgb, 3),
            ],
            photo_names: vec!["a".into(), "b".into(), "c".into()],
            photos_val: Vec::new(),
            photo_val_names: Vec::new(),
        };
        let err = data.hold_out_photos(&["nope".into()]).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        let err = data.hold_out_photos(&["a".into(), "a".into()]).unwrap_err();
        assert!(err.to_string().contains("twice"), "{err}");
        assert_eq!(data.photos.len(), 3, "a refused list moves nothing");
        data.hold_out_photos(&["b".into(), "a".into()]).unwrap();
        assert_eq!(data.photo_names, vec!["c".to_string()]);
        assert_eq!(data.photos_val.len(), 2);
        let set = ValSet::photo_crops(&data.photos_val, 32, 5);
        // 5 crops round up to a 3×3 grid, per photograph.
        assert_eq!(set.len(), 18);
        assert!(set.crops.iter().all(|c| c.len() == 32 * 32 * 3));
        // "b" (gray) was held out first, so its crops come first.
        assert_eq!(set.weights[0], [1.0, 0.0, 0.0]);
        assert_eq!(set.weights[9], [1.0, 1.0, 1.0]);
        let again = ValSet::photo_crops(&data.photos_val, 32, 5);
        assert_eq!(set.crops, again.crops);
        // The gray photograph's last crop starts at the grid's last cell centre.
        let gray = &data.photos_val[0];
        assert_eq!(gray.width(), 33);
        let (spare_x, spare_y) = (gray.width() - 32, gray.height() - 32);
        let (x0, y0) = (spare_x * 5 / 6, spare_y * 5 / 6);
        assert_eq!(set.crops[8][..3], [gray.sample(x0, y0, 0); 3]);
    }

    /// The average follows `avg ← d·avg + (1 − d)·live` with the ramped decay, variable by
    /// variable (matched by name, not by position), and leaves the live weights alone.
    #[test]
    fn weight_average_follows_its_recurrence() {
        let arch = crate::testing::tiny_arch();
        tch::manual_seed(5);
        let live = PixelCnnFloat::new(arch, Device::Cpu).unwrap();
        let start = weights(&live);
        let mut avg = WeightAverage::new(&live, 0.5, None, Device::Cpu).unwrap();
        assert_eq!(
            weights(&avg.net),
            start,
            "a fresh average starts at the live weights"
        );

        // Move the live weights by +1 everywhere, then update three times.
        tch::no_grad(|| {
            for (_, mut t) in live.vs.variables() {
                let _ = t.g_add_scalar_(1.0);
            }
        });
        let mut expect_shift = 0.0;
        for n in 0..3usize {
            avg.update();
            let d = 0.5f64.min((1 + n) as f64 / (10 + n) as f64);
            expect_shift = d * expect_shift + (1.0 - d);
        }
        for (a, s) in weights(&avg.net).iter().zip(&start) {
            assert!(
                (a - (s + expect_shift)).abs() < 1e-5,
                "{a} vs {}",
                s + expect_shift
            );
        }
        for (l, s) in weights(&live).iter().zip(&start) {
            assert!((l - (s + 1.0)).abs() < 1e-6);
        }

        // Resumed from its checkpoint, the average takes the full decay at once (no ramp,
        // which would pull it most of the way back to the live weights).
        let dir = tempfile::tempdir().unwrap();
        let ckpt = dir.path().join("avg.ema.ckpt.ot");
        save_varstore(&avg.net, &ckpt).unwrap();
        let mut resumed = WeightAverage::new(&live, 0.5, Some(&ckpt), Device::Cpu).unwrap();
        assert_eq!(weights(&resumed.net), weights(&avg.net));
        resumed.update();
        let shift = 0.5 * expect_shift + 0.5;
        for (a, s) in weights(&resumed.net).iter().zip(&start) {
            assert!((a - (s + shift)).abs() < 1e-5, "{a} vs {}", s + shift);
        }
    }
}
