//! `llif bench`: every codec on every image, one file per image, verified, timed.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Args;

use super::codec_cmds::resolve_model;
use super::io::write_file_atomic;
use llif::bench::{
    baselines::classical_codecs, learned::LlifCodec, run_bench_with, BenchCodec, BenchImage,
    BenchOptions,
};
use llif::{Error, ModelSet, Result};

#[derive(Args)]
pub struct BenchArgs {
    /// A CIFAR-10 binary file (e.g. ../shared/data/cifar10/test_batch.bin).
    #[arg(long)]
    cifar: Vec<PathBuf>,
    /// Use only the first N images of each CIFAR file.
    #[arg(long)]
    limit: Option<usize>,
    /// A folder of images (PNG/PPM/PGM), every file one image.
    #[arg(long)]
    folder: Vec<PathBuf>,
    /// Single image files.
    #[arg(long)]
    image: Vec<PathBuf>,
    /// Codecs, comma-separated, from: png, oxipng, webp, jpegxl, llif (the learned codec).
    #[arg(
        long,
        default_value = "png,oxipng,webp,jpegxl,llif",
        value_delimiter = ','
    )]
    codecs: Vec<String>,
    /// Models for the llif codec (as for `llif compress --model`), comma-separated: with more
    /// than one, each is a row of its own (e.g. `--model default,pixelcnn-r3h192-v3`).
    #[arg(long, short = 'm', default_value = "default", value_delimiter = ',')]
    model: Vec<String>,
    /// Code images one after another (clean per-image timings) instead of in parallel.
    #[arg(long)]
    sequential: bool,
    /// Write the full report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write per-image rows as CSV here.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Hide progress (shown only when stderr is a terminal).
    #[arg(short, long)]
    quiet: bool,
}

pub fn bench(a: BenchArgs) -> Result<()> {
    let mut images = Vec::new();
    for f in &a.cifar {
        let stem = f
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        for c in llif::corpus::read_cifar(f, a.limit)? {
            images.push(BenchImage {
                name: format!("{stem}#{}", c.index),
                image: c.image,
            });
        }
    }
    for d in &a.folder {
        for (name, image) in llif::corpus::read_image_folder(d)? {
            images.push(BenchImage { name, image });
        }
    }
    for f in &a.image {
        let name = f.display().to_string();
        images.push(BenchImage {
            name,
            image: llif::corpus::read_image_file(f)?,
        });
    }
    if images.is_empty() {
        return Err(Error::Usage(
            "no images: give --cifar FILE, --folder DIR or --image FILE".into(),
        ));
    }
    let (mut classical, mut notes) = classical_codecs();
    let mut codecs: Vec<Box<dyn BenchCodec>> = Vec::new();
    for want in &a.codecs {
        let want = want.trim().to_lowercase();
        if want == "llif" {
            let builtin = ModelSet::builtin();
            for name in &a.model {
                let codec = LlifCodec::new(resolve_model(name, &builtin)?);
                codecs.push(Box::new(if a.model.len() > 1 {
                    codec.labelled_by_model()
                } else {
                    codec
                }));
            }
            continue;
        }
        let alias = match want.as_str() {
            "jxl" => "jpegxl",
            w => w,
        };
        match classical.iter().position(|c| c.name() == alias) {
            Some(i) => codecs.push(classical.remove(i)),
            None if alias == "jpegxl" => {} // not installed: classical_codecs() left a note
            None => {
                return Err(Error::Usage(format!(
                    "unknown codec {want:?} (png, oxipng, webp, jpegxl, llif)"
                )))
            }
        }
    }
    let mut report = run_bench_with(
        &images,
        &codecs,
        BenchOptions {
            parallel: !a.sequential,
            // A `\r`-redrawn counter only makes sense on a terminal; in logs and CI output
            // it would be one long line.
            progress: !a.quiet && std::io::stderr().is_terminal(),
        },
    )?;
    if !a.quiet {
        eprintln!();
    }
    report.notes.append(&mut notes);
    print!("{}", report.to_markdown());
    if let Some(p) = &a.json {
        write_file_atomic(p, report.to_json()?.as_bytes(), true)?;
    }
    if let Some(p) = &a.csv {
        write_file_atomic(p, report.to_csv().as_bytes(), true)?;
    }
    Ok(())
}
