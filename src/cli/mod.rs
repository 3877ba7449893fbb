//! Command-line interface (clap): compress, decompress, info, bench, train.

mod bench;
mod codec_cmds;
mod io;
mod train;

use clap::{Parser, Subcommand};

use llif::Result;

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
    /// Compress an image to .llif.
    Compress(codec_cmds::CompressArgs),
    /// Decompress a .llif file to PNG (or PPM/PGM).
    Decompress(codec_cmds::DecompressArgs),
    /// Show what a .llif file holds (and optionally verify it).
    Info(codec_cmds::InfoArgs),
    /// Compare llif with PNG, oxipng, WebP and JPEG XL on a set of images.
    Bench(bench::BenchArgs),
    /// Train a model.
    #[command(subcommand)]
    Train(train::TrainCommand),
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
        Command::Bench(a) => bench::bench(a),
        Command::Train(t) => train::run(t),
    }
}
