//! `llif-train`: training, the one program of llif that loads libtorch. `llif train ARGS` runs
//! `llif-train ARGS`, so that compress, decompress, info and bench never load it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use llif::pixelcnn::train::{export_checkpoint, train, TrainConfig, TrainData, DEFAULT_PHOTO_VAL};
use llif::pixelcnn::Arch;
use llif::{Error, Result};

#[derive(Parser)]
#[command(
    name = "llif train",
    bin_name = "llif train",
    version,
    about = "Train an llif model (needs libtorch; the other llif commands do not)"
)]
struct Cli {
    #[command(subcommand)]
    command: TrainCommand,
}

fn main() {
    llif::runtime::init();
    let code = match Cli::try_parse() {
        Err(e) => {
            let _ = e.print();
            if e.use_stderr() {
                2
            } else {
                0
            }
        }
        Ok(cli) => match run(cli.command) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("llif train: error: {e}");
                if e.kind() == llif::ErrorKind::Caller {
                    2
                } else {
                    1
                }
            }
        },
    };
    std::process::exit(code);
}

#[derive(Subcommand)]
pub enum TrainCommand {
    /// Train the local-context PixelCNN and write OUT.llifm (integer model), OUT.ckpt.ot
    /// (float checkpoint) and OUT.train.json (log).
    Pixelcnn(PixelCnnArgs),
    /// Quantize a 32-bit PixelCNN model file for the 8-bit engine, calibrating its activation
    /// scales on training images (pure Rust; no libtorch).
    Int8(Int8Args),
    /// Train the integer discrete flow and write OUT.llifm, OUT.ckpt.ot and OUT.train.json.
    Flow(FlowArgs),
    /// Train the VAE in float (work in progress: no model file yet): a latent at 1/8 of the
    /// resolution conditioning a PixelCNN, its bits-back cost reported on validation. Writes
    /// OUT.ckpt.ot (the PixelCNN), OUT.vae.ckpt.ot and OUT.vae.json.
    Vae(VaeArgs),
}

#[derive(Args)]
pub struct VaeArgs {
    /// Data folder (as for `pixelcnn`). Default: $LLIF_DATA or ../shared/data.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Output path without extension.
    #[arg(long)]
    out: PathBuf,
    /// Start the likelihood from this PixelCNN checkpoint (e.g.
    /// models/pixelcnn-r3h288-v4.ema.ckpt.ot); its architecture must match --hidden etc.
    #[arg(long)]
    init_pixelcnn: Option<PathBuf>,
    /// The PixelCNN's context radius, hidden width, hidden layers and mixture components.
    #[arg(long, default_value_t = 3)]
    radius: u32,
    #[arg(long, default_value_t = 288)]
    hidden: usize,
    #[arg(long, default_value_t = 3)]
    layers: usize,
    #[arg(long, default_value_t = 5)]
    components: usize,
    /// Latent channels.
    #[arg(long, default_value_t = 4)]
    latents: usize,
    /// Each latent position covers FACTOR x FACTOR pixels: 2, 4, 8 or 16.
    #[arg(long, default_value_t = 8, value_parser = parse_latent_factor)]
    factor: usize,
    /// Byte steps per latent unit at the input of the latent's bias network (1 in the runs
    /// before session 10's run D).
    #[arg(long, default_value_t = 16)]
    latent_gain: u32,
    /// Free bits: in training, each latent channel's rate counts as at least this many bits
    /// per latent position, so the posterior can carry that much before the likelihood uses
    /// it (validation reports the plain cost). 0: none.
    #[arg(long, default_value_t = 0.0)]
    free_bits: f64,
    /// Hidden width of the posterior, prior and bias networks.
    #[arg(long, default_value_t = 64)]
    vae_hidden: usize,
    /// Mixture components of the latent prior.
    #[arg(long, default_value_t = 3)]
    prior_components: usize,
    /// Steps over which the rate's weight rises from 0 to 1.
    #[arg(long, default_value_t = 2000)]
    anneal_steps: usize,
    /// The PixelCNN's learning rate relative to the latent networks'.
    #[arg(long, default_value_t = 0.1)]
    pixelcnn_lr_factor: f64,
    #[arg(long, default_value_t = 10_000)]
    steps: usize,
    #[arg(long, default_value_t = 32)]
    batch: usize,
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    #[arg(long, default_value_t = 0.25)]
    photo_fraction: f64,
    #[arg(long, default_value_t = 0.2)]
    gray_fraction: f64,
    #[arg(long, default_value_t = 500)]
    eval_every: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long)]
    resume: bool,
    #[arg(long)]
    bf16: bool,
    #[arg(long)]
    cuda: bool,
}

#[derive(Args)]
pub struct FlowArgs {
    /// Data folder (as for `pixelcnn`). Default: $LLIF_DATA or ../shared/data.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Output path without extension, e.g. models/flow-small.
    #[arg(long)]
    out: PathBuf,
    /// Model name recorded in the model file (default: OUT's file name).
    #[arg(long)]
    name: Option<String>,
    /// Squeeze levels (1-4).
    #[arg(long, default_value_t = 3)]
    levels: usize,
    /// Couplings per level.
    #[arg(long, default_value_t = 4)]
    couplings: usize,
    /// Hidden width of every network.
    #[arg(long, default_value_t = 64)]
    hidden: usize,
    /// Mixture components of the latents' priors (1-8).
    #[arg(long, default_value_t = 3)]
    components: usize,
    /// A joint flow of the three colour planes (`joint-idf-2`), trained on RGB images only;
    /// its export needs --plane.
    #[arg(long)]
    joint: bool,
    /// With --joint: the plane flow for gray and alpha planes (a plane-idf-1 model file, e.g.
    /// one trained with this command without --joint), packed into the exported model.
    #[arg(long)]
    plane: Option<PathBuf>,
    /// Total optimizer steps.
    #[arg(long, default_value_t = 20_000)]
    steps: usize,
    /// Images (32x32) per step.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Peak learning rate (Adam).
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    #[arg(long, default_value_t = 0.25)]
    photo_fraction: f64,
    #[arg(long, default_value_t = 0.1)]
    gray_fraction: f64,
    /// Fraction of RGB images given a constant alpha plane (trains the alpha role).
    #[arg(long, default_value_t = 0.03)]
    alpha_fraction: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Validate and checkpoint every N steps.
    #[arg(long, default_value_t = 500)]
    eval_every: usize,
    /// Keep and export a moving average of the weights with this decay (e.g. 0.999).
    #[arg(long)]
    ema: Option<f64>,
    /// Resume from OUT.ckpt.ot if it exists.
    #[arg(long)]
    resume: bool,
    /// Train on CUDA when available (not tested on this project's machines).
    #[arg(long)]
    cuda: bool,
    /// Only export the checkpoint into OUT.llifm (no training).
    #[arg(long)]
    export: bool,
}

#[derive(Args)]
pub struct Int8Args {
    /// The 32-bit model file (.llifm).
    #[arg(long)]
    model: PathBuf,
    /// Data folder (as for `pixelcnn`): calibration uses the first CIFAR images of
    /// data_batch_1.bin and the photos of photos/train, never test data.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Output model file.
    #[arg(long)]
    out: PathBuf,
    /// Model name recorded in the file (default: OUT's file stem).
    #[arg(long)]
    name: Option<String>,
    /// CIFAR images to calibrate on (256 pixels of each).
    #[arg(long, default_value_t = 400)]
    cifar: usize,
    /// Pixels of each training photograph to calibrate on.
    #[arg(long, default_value_t = 2048)]
    photo_pixels: usize,
    /// Weight width of the first and hidden layers: 8 (the fast path; for networks trained
    /// for it) or 16 (costs little precision when quantizing after training).
    #[arg(long, default_value = "16", value_parser = parse_weight_bits)]
    hidden_bits: llif::intnet::int8::WeightBits,
    /// Weight width of the output layer: 8 or 16.
    #[arg(long, default_value = "16", value_parser = parse_weight_bits)]
    output_bits: llif::intnet::int8::WeightBits,
    /// Add the adaptive stage (per-image scale selection, `coding::adaptive`) to the model.
    #[arg(long)]
    adapt: bool,
    /// Cap every hidden unit's activations at the float network's clamp instead of calibrating
    /// a cap per unit: the grid a network trained with `pixelcnn --qat8` learned to work on.
    #[arg(long)]
    uniform_caps: bool,
    /// Replace OUT if it exists.
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
pub struct PixelCnnArgs {
    /// Data folder (the layout of ../shared/data: cifar10/, photos/train/). Default: $LLIF_DATA
    /// or ../shared/data.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Output path without extension, e.g. models/pixelcnn-small.
    #[arg(long)]
    out: PathBuf,
    /// Total optimizer steps.
    #[arg(long, default_value_t = 20_000)]
    steps: usize,
    /// Images (patches) per step.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Peak learning rate (Adam).
    #[arg(long, default_value_t = 2e-3)]
    lr: f64,
    /// Context radius.
    #[arg(long, default_value_t = 3)]
    radius: u32,
    /// Hidden width (multiple of 3).
    #[arg(long, default_value_t = 192)]
    hidden: usize,
    /// Hidden-to-hidden layers.
    #[arg(long, default_value_t = 3)]
    layers: usize,
    /// Mixture components.
    #[arg(long, default_value_t = 5)]
    components: usize,
    /// Fraction of each batch taken as patches of photos/train.
    #[arg(long, default_value_t = 0.25)]
    photo_fraction: f64,
    /// Fraction of images turned gray.
    #[arg(long, default_value_t = 0.1)]
    gray_fraction: f64,
    /// Side of the square training patches: 32 (CIFAR-10's size), or larger with
    /// --photo-fraction 1.
    #[arg(long, default_value_t = 32)]
    patch: u32,
    /// Hold these photos/train files out of training and validate on crops of them instead of
    /// the CIFAR-10 split (comma-separated file names less the extension, or `default` for the ten listed in
    /// models/README.md).
    #[arg(long, value_delimiter = ',')]
    photo_val: Vec<String>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Validate and checkpoint every N steps.
    #[arg(long, default_value_t = 500)]
    eval_every: usize,
    /// Resume from OUT.ckpt.ot if it exists.
    #[arg(long)]
    resume: bool,
    /// Train on CUDA when available.
    #[arg(long)]
    cuda: bool,
    /// Compute the hidden layers' matmuls in bf16 (f32 master weights, loss and output
    /// layer; validation stays f32). Several times faster on CPUs with AVX-512 BF16.
    #[arg(long)]
    bf16: bool,
    /// Quantization-aware training for the 8-bit engine with 8-bit weights: the first and
    /// hidden layers train on the grid of `llif train int8 --hidden-bits 8 --uniform-caps`
    /// (for fine-tuning a trained network; validation and export use the same grid).
    #[arg(long)]
    qat8: bool,
    /// With --qat8: train on each hidden unit's own activation grid (the caps `llif train int8`
    /// calibrates, recalibrated every 2,000 steps) instead of one grid for all units.
    #[arg(long)]
    qat8_caps: bool,
    /// Keep an exponential moving average of the weights with this decay (e.g. 0.9995),
    /// validate it alongside the live weights, and export it. Resumes from OUT.ema.ckpt.ot
    /// when that exists, else starts from the live weights.
    #[arg(long)]
    ema: Option<f64>,
    /// Model name recorded in the model file (default: OUT's file name).
    #[arg(long)]
    name: Option<String>,
    /// Only quantize the checkpoint OUT.ckpt.ot into OUT.llifm (no training).
    #[arg(long)]
    export: bool,
    /// Hide the progress bar.
    #[arg(long)]
    quiet: bool,
}

pub fn run(cmd: TrainCommand) -> Result<()> {
    llif::runtime::reexec_with_tcmalloc();
    match cmd {
        TrainCommand::Int8(a) => quantize_int8(a),
        TrainCommand::Flow(a) => train_flow(a),
        TrainCommand::Vae(a) => train_vae(a),
        TrainCommand::Pixelcnn(a) => {
            let data_dir = data_folder(a.data)?;
            let name = a.name.unwrap_or_else(|| default_name(&a.out, "pixelcnn"));
            check_ema(a.ema)?;
            if a.qat8_caps && !a.qat8 {
                return Err(Error::Usage("--qat8-caps needs --qat8".into()));
            }
            let cfg = TrainConfig {
                arch: Arch {
                    radius: a.radius,
                    channels: 3,
                    hidden: a.hidden,
                    hidden_layers: a.layers,
                    components: a.components,
                },
                data_dir: data_dir.clone(),
                out: a.out,
                name,
                steps: a.steps,
                batch: a.batch,
                lr: a.lr,
                seed: a.seed,
                photo_fraction: a.photo_fraction,
                gray_fraction: a.gray_fraction,
                eval_every: a.eval_every,
                cuda: a.cuda,
                bf16: a.bf16,
                qat8: a.qat8,
                qat8_caps: a.qat8_caps,
                ema: a.ema,
                patch: a.patch,
                photo_val: photo_val_names(a.photo_val),
            };
            let mut data = TrainData::load(&data_dir)?;
            data.hold_out_photos(&cfg.photo_val)?;
            eprintln!(
                "training on {} CIFAR images ({} held out for validation) and {} photos ({} held out)",
                data.cifar_train.len(),
                data.cifar_val.len(),
                data.photos.len(),
                data.photos_val.len()
            );
            if a.export {
                return export_checkpoint(&cfg, &data).map(|_| ());
            }
            train(&cfg, &data, a.resume, !a.quiet).map(|_| ())
        }
    }
}

/// `--photo-val default` names [`DEFAULT_PHOTO_VAL`].
fn photo_val_names(args: Vec<String>) -> Vec<String> {
    if args.len() == 1 && args[0] == "default" {
        DEFAULT_PHOTO_VAL.iter().map(|s| s.to_string()).collect()
    } else {
        args
    }
}

/// `--data`, else $LLIF_DATA or ../shared/data.
fn data_folder(arg: Option<PathBuf>) -> Result<PathBuf> {
    arg.or_else(llif::corpus::data_dir)
        .ok_or_else(|| Error::Usage("no data folder: pass --data or set LLIF_DATA".into()))
}

/// A model's default name: the output path's file name.
fn default_name(out: &std::path::Path, fallback: &str) -> String {
    out.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| fallback.into())
}

fn check_ema(decay: Option<f64>) -> Result<()> {
    match decay {
        Some(d) if !(d > 0.0 && d < 1.0) => Err(Error::Usage(format!(
            "--ema {d}: the decay must lie in (0, 1)"
        ))),
        _ => Ok(()),
    }
}

/// `llif train flow`.
fn train_flow(a: FlowArgs) -> Result<()> {
    use llif::flow::model::{FlowMeta, JOINT_IDF_2, PLANE_IDF_1};
    use llif::flow::train::{export_checkpoint, train, FlowTrainConfig};
    let data_dir = data_folder(a.data)?;
    let name = a.name.unwrap_or_else(|| default_name(&a.out, "flow"));
    check_ema(a.ema)?;
    check_plane_flow(a.joint, a.plane.as_deref())?;
    let meta = FlowMeta {
        family: "flow".into(),
        name,
        flow: if a.joint { JOINT_IDF_2 } else { PLANE_IDF_1 }.into(),
        levels: a.levels,
        couplings: a.couplings,
        hidden: a.hidden,
        components: a.components,
        colours: if a.joint { 3 } else { 1 },
        plane: None,
    };
    meta.validate().map_err(|e| Error::Usage(e.to_string()))?;
    let cfg = FlowTrainConfig {
        meta,
        data_dir: data_dir.clone(),
        out: a.out,
        steps: a.steps,
        batch: a.batch,
        lr: a.lr,
        seed: a.seed,
        photo_fraction: a.photo_fraction,
        gray_fraction: a.gray_fraction,
        alpha_fraction: a.alpha_fraction,
        eval_every: a.eval_every,
        cuda: a.cuda,
        ema: a.ema,
        plane_model: a.plane,
    };
    let data = TrainData::load(&data_dir)?;
    eprintln!(
        "training the flow on {} CIFAR images ({} held out for validation) and {} photos",
        data.cifar_train.len(),
        data.cifar_val.len(),
        data.photos.len()
    );
    if a.export {
        return export_checkpoint(&cfg, &data).map(|_| ());
    }
    train(&cfg, &data, a.resume).map(|_| ())
}

/// `llif train vae`.
fn train_vae(a: VaeArgs) -> Result<()> {
    use llif::vae::float_model::VaeShape;
    use llif::vae::train::{train, VaeTrainConfig};
    let data_dir = data_folder(a.data)?;
    let name = default_name(&a.out, "vae");
    let cfg = VaeTrainConfig {
        pixelcnn: TrainConfig {
            arch: Arch {
                radius: a.radius,
                channels: 3,
                hidden: a.hidden,
                hidden_layers: a.layers,
                components: a.components,
            },
            data_dir: data_dir.clone(),
            out: a.out,
            name,
            steps: a.steps,
            batch: a.batch,
            lr: a.lr,
            seed: a.seed,
            photo_fraction: a.photo_fraction,
            gray_fraction: a.gray_fraction,
            eval_every: a.eval_every,
            cuda: a.cuda,
            bf16: a.bf16,
            qat8: false,
            qat8_caps: false,
            ema: None,
            patch: 32,
            photo_val: Vec::new(),
        },
        shape: VaeShape {
            factor: a.factor,
            latents: a.latents,
            hidden: a.vae_hidden,
            components: a.prior_components,
            latent_input_gain: a.latent_gain,
        },
        init_pixelcnn: a.init_pixelcnn,
        anneal_steps: a.anneal_steps,
        pixelcnn_lr_factor: a.pixelcnn_lr_factor,
        free_bits: a.free_bits,
    };
    let data = TrainData::load(&data_dir)?;
    train(&cfg, &data, a.resume).map(|_| ())
}

/// `--factor`: a power of two that divides the 32x32 training patches.
fn parse_latent_factor(s: &str) -> std::result::Result<usize, String> {
    match s.parse::<usize>() {
        Ok(f @ (2 | 4 | 8 | 16)) => Ok(f),
        _ => Err(format!("{s}: the latent factor is 2, 4, 8 or 16")),
    }
}

/// A joint flow needs its plane flow (checked before training, not at the export after it),
/// and only a joint flow takes one.
fn check_plane_flow(joint: bool, plane: Option<&std::path::Path>) -> Result<()> {
    match (joint, plane) {
        (false, Some(_)) => Err(Error::Usage(
            "--plane: only a joint flow (--joint) takes a plane flow".into(),
        )),
        (true, None) => Err(Error::Usage(
            "--joint needs --plane MODEL.llifm: the plane flow for gray and alpha planes (a \
             plane-idf-1 model, e.g. trained with `llif train flow` without --joint)"
                .into(),
        )),
        (true, Some(path)) => {
            let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            let model = llif::flow::FlowModel::from_bytes(&bytes)?;
            if model.plane.is_some() {
                return Err(Error::Usage(format!(
                    "--plane {}: a joint model; the plane flow must be a plane-idf-1 model",
                    path.display()
                )));
            }
            Ok(())
        }
        (false, None) => Ok(()),
    }
}

/// `llif train int8`: dequantize, calibrate on training data, quantize, write.
fn quantize_int8(a: Int8Args) -> Result<()> {
    use llif::pixelcnn::quantize8::{dequantize, quantize_pixelcnn8, Calibration};
    use llif::pixelcnn::PixelCnnInt;
    if a.out.exists() && !a.force {
        return Err(Error::Usage(format!(
            "{} exists (use --force to replace it)",
            a.out.display()
        )));
    }
    let data_dir = a
        .data
        .or_else(llif::corpus::data_dir)
        .ok_or_else(|| Error::Usage("no data folder: pass --data or set LLIF_DATA".into()))?;
    let bytes = std::fs::read(&a.model).map_err(|e| Error::io(&a.model, e))?;
    let model = PixelCnnInt::from_bytes(&bytes)?;
    let arch = *model.arch();
    let layers = dequantize(&model);
    let mut calibration = Calibration::new(&arch);
    let cifar =
        llif::corpus::read_cifar(&data_dir.join("cifar10/data_batch_1.bin"), Some(a.cifar))?;
    for c in &cifar {
        calibration.add_image(&arch, &layers, &c.image, 256);
    }
    let photos = llif::corpus::read_image_folder(&data_dir.join("photos/train"))?;
    for (_, img) in &photos {
        calibration.add_image(&arch, &layers, img, a.photo_pixels);
    }
    let name = a.name.unwrap_or_else(|| {
        a.out
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "pixelcnn-int8".into())
    });
    let mut bits = vec![a.hidden_bits; arch.hidden_layers + 1];
    bits.push(a.output_bits);
    let caps = if a.uniform_caps {
        let cap = llif::pixelcnn::arch::fixed::ACT_MAX_REAL as f32;
        vec![vec![cap; arch.hidden]; arch.hidden_layers + 1]
    } else {
        calibration.caps()
    };
    let mut m8 = quantize_pixelcnn8(arch, &name, &layers, &caps, &bits)?;
    if a.adapt {
        m8 = m8.with_adaptive_stage()?;
    }
    llif::pixelcnn::train::write_atomic(&a.out, &m8.to_bytes())?;
    eprintln!(
        "{}: {} ({} CIFAR images and {} photos calibrated), id {}",
        a.out.display(),
        name,
        cifar.len(),
        photos.len(),
        m8.id
    );
    Ok(())
}

fn parse_weight_bits(s: &str) -> std::result::Result<llif::intnet::int8::WeightBits, String> {
    match s {
        "8" => Ok(llif::intnet::int8::WeightBits::Eight),
        "16" => Ok(llif::intnet::int8::WeightBits::Sixteen),
        _ => Err(format!("{s}: weights are 8 or 16 bits")),
    }
}
