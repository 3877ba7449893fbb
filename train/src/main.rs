//! `llif-train`: training, the one program of llif that loads libtorch. `llif train ARGS` runs
//! `llif-train ARGS`, so that compress, decompress, info and bench never load it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use llif::pixelcnn::train::{export_checkpoint, train, TrainConfig, TrainData};
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
    /// Images (32×32) per step.
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
        TrainCommand::Pixelcnn(a) => {
            let data_dir = a.data.or_else(llif::corpus::data_dir).ok_or_else(|| {
                Error::Usage("no data folder: pass --data or set LLIF_DATA".into())
            })?;
            let name = a.name.unwrap_or_else(|| {
                a.out
                    .file_name()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "pixelcnn".into())
            });
            if let Some(d) = a.ema {
                if !(d > 0.0 && d < 1.0) {
                    return Err(Error::Usage(format!(
                        "--ema {d}: the decay must lie in (0, 1)"
                    )));
                }
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
                ema: a.ema,
            };
            let data = TrainData::load(&data_dir)?;
            eprintln!(
                "training on {} CIFAR images ({} held out for validation) and {} photos",
                data.cifar_train.len(),
                data.cifar_val.len(),
                data.photos.len()
            );
            if a.export {
                return export_checkpoint(&cfg, &data).map(|_| ());
            }
            train(&cfg, &data, a.resume, !a.quiet).map(|_| ())
        }
    }
}
