//! Command-line interface (clap): compress, decompress, info, models, bench; `train` runs the
//! separate `llif-train` program.

mod archive_cmds;
mod bench;
mod codec_cmds;
mod io;
mod train;

use clap::{Parser, Subcommand};

use llif::Result;

pub use io::install_signal_handlers;

#[derive(Parser)]
#[command(
    name = "llif",
    version,
    about = "Learned lossless image format: lossless compression with integer-exact density models"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compress an image to .llif; a folder or a CIFAR-10 batch file to one .llif archive.
    Compress(codec_cmds::CompressArgs),
    /// Decompress a .llif file to PNG (or PPM/PGM); an archive to a folder of images.
    Decompress(codec_cmds::DecompressArgs),
    /// Show what .llif files hold (and optionally verify them); without files, what this build
    /// has.
    Info(codec_cmds::InfoArgs),
    /// List the built-in models: family, id, size, headline figures.
    Models,
    /// Compare llif with PNG, oxipng, WebP and JPEG XL on a set of images.
    Bench(bench::BenchArgs),
    /// Train a model (runs `llif-train`, the program that loads libtorch).
    #[command(disable_help_flag = true)]
    Train(train::TrainArgs),
}

pub fn run() -> Result<()> {
    let cli = Cli::try_parse().map_err(|e| {
        if matches!(
            e.kind(),
            clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
        ) {
            let _ = e.print();
            std::process::exit(0);
        }
        llif::Error::Usage(
            e.to_string()
                .trim_end()
                .trim_start_matches("error: ")
                .to_string(),
        )
    })?;
    match cli.command {
        Command::Compress(a) => codec_cmds::compress(a),
        Command::Decompress(a) => codec_cmds::decompress(a),
        Command::Info(a) => codec_cmds::info(a),
        Command::Models => codec_cmds::list_models(),
        Command::Bench(a) => bench::bench(a),
        Command::Train(a) => train::run(a),
    }
}
