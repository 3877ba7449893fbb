//! `llif compress`, `llif decompress`, `llif info`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;

use super::io::{check_overwrite, choose_output, read_input, Output};
use llif::{
    decode_image, encode_image_with_stats, read_header, Error, Limits, Model, ModelSet, Result,
};

#[derive(Args)]
pub struct ModelArgs {
    /// Model: `default`, a name or 8-hex-digit id of a built-in model, `stored` (no model), or
    /// the path of a model file (.llifm).
    #[arg(long, short = 'm', default_value = "default")]
    model: String,
}

#[derive(Args)]
pub struct LimitArgs {
    /// Refuse images with a side longer than this.
    #[arg(long, default_value_t = Limits::default().max_side)]
    max_side: u32,
    /// Refuse images with more pixels than this.
    #[arg(long, default_value_t = Limits::default().max_pixels)]
    max_pixels: u64,
}

impl LimitArgs {
    fn limits(&self) -> Limits {
        Limits {
            max_side: self.max_side,
            max_pixels: self.max_pixels,
        }
    }
}

/// Resolves `--model`: built-in name/id, `stored`, or a file.
pub fn resolve_model(key: &str, set: &ModelSet) -> Result<Model> {
    if let Some(m) = set.find(key) {
        return Ok(m);
    }
    let path = Path::new(key);
    if path.exists() {
        return Model::from_file(path);
    }
    let known: Vec<String> = set
        .iter()
        .map(|(n, m)| {
            format!(
                "{n} ({})",
                m.id().map(|i| i.to_string()).unwrap_or_default()
            )
        })
        .collect();
    Err(Error::Usage(format!(
        "no model {key:?}: not a built-in model ({}), `stored`, or a model file",
        known.join(", ")
    )))
}

#[derive(Args)]
pub struct CompressArgs {
    /// Input image (PNG, PPM/PGM, BMP, TIFF, QOI; 8 bits per sample), or `-` for stdin.
    input: PathBuf,
    /// Output file; default: the input with extension .llif (stdout when the input is `-`).
    #[arg(short, long)]
    output: Option<PathBuf>,
    #[command(flatten)]
    model: ModelArgs,
    /// Overwrite an existing output.
    #[arg(short, long)]
    force: bool,
    /// Print nothing on success.
    #[arg(short, long)]
    quiet: bool,
}

pub fn compress(a: CompressArgs) -> Result<()> {
    let out = choose_output(a.output.as_deref(), &a.input, "llif");
    check_overwrite(&out, a.force)?;
    let model = resolve_model(&a.model.model, &ModelSet::builtin())?;
    let bytes = read_input(&a.input)?;
    let image = llif::corpus::decode_image_bytes(&bytes)?;
    let t = Instant::now();
    let enc = encode_image_with_stats(&image, &model)?;
    let secs = t.elapsed().as_secs_f64();
    out.write(&enc.bytes, a.force)?;
    if !a.quiet {
        let bpsp = 8.0 * enc.bytes.len() as f64 / image.samples() as f64;
        let ideal = enc
            .ideal_bits
            .map(|b| format!(", model {:.3}", b / image.samples() as f64))
            .unwrap_or_default();
        eprintln!(
            "{} -> {}: {}x{} {}, {} bytes, {:.3} bits/sub-pixel{} ({} {}, {:.2} s)",
            a.input.display(),
            out.describe(),
            image.width(),
            image.height(),
            image.layout(),
            enc.bytes.len(),
            bpsp,
            ideal,
            model.name(),
            model.id().map(|i| i.to_string()).unwrap_or_default(),
            secs
        );
    }
    Ok(())
}

#[derive(Args)]
pub struct DecompressArgs {
    /// Input .llif file, or `-` for stdin.
    input: PathBuf,
    /// Output image (.png, .ppm, .pgm, .pnm); default: the input with extension .png (stdout,
    /// as PNG, when the input is `-`).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Extra model files to decode with (besides the built-in ones).
    #[arg(long = "model-file", short = 'm')]
    model_files: Vec<PathBuf>,
    #[command(flatten)]
    limits: LimitArgs,
    #[arg(short, long)]
    force: bool,
    #[arg(short, long)]
    quiet: bool,
}

fn model_set_with(files: &[PathBuf]) -> Result<ModelSet> {
    let mut set = ModelSet::builtin();
    for f in files {
        set.add(&f.display().to_string(), Model::from_file(f)?);
    }
    Ok(set)
}

pub fn decompress(a: DecompressArgs) -> Result<()> {
    let out = choose_output(a.output.as_deref(), &a.input, "png");
    check_overwrite(&out, a.force)?;
    let models = model_set_with(&a.model_files)?;
    let bytes = read_input(&a.input)?;
    let t = Instant::now();
    let image = decode_image(&bytes, &models, &a.limits.limits())?;
    let secs = t.elapsed().as_secs_f64();
    let encoded = match &out {
        Output::Stdout => llif::corpus::encode_png(&image)?,
        Output::File(p) => encode_for_path(&image, p)?,
    };
    out.write(&encoded, a.force)?;
    if !a.quiet {
        eprintln!(
            "{} -> {}: {}x{} {} ({:.2} s)",
            a.input.display(),
            out.describe(),
            image.width(),
            image.height(),
            image.layout(),
            secs
        );
    }
    Ok(())
}

/// Encodes the decoded image in the format the output's extension names.
fn encode_for_path(image: &llif::Image, path: &Path) -> Result<Vec<u8>> {
    // write_image_file picks the format by extension; write to memory through a temp dir.
    let dir = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "out.png".into());
    let tmp = dir.path().join(name);
    llif::corpus::write_image_file(image, &tmp)?;
    std::fs::read(&tmp).map_err(|e| Error::io(&tmp, e))
}

#[derive(Args)]
pub struct InfoArgs {
    /// .llif files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Also decode each file and verify its checksum.
    #[arg(long)]
    verify: bool,
    /// Extra model files (for --verify).
    #[arg(long = "model-file", short = 'm')]
    model_files: Vec<PathBuf>,
}

pub fn info(a: InfoArgs) -> Result<()> {
    let models = model_set_with(&a.model_files)?;
    let mut failed = 0;
    for f in &a.files {
        let result = (|| -> Result<String> {
            let bytes = read_input(f)?;
            let h = read_header(&bytes, &Limits::none())?;
            let model = match h.model {
                None => "none".to_string(),
                Some(id) => match models.by_id(id) {
                    Some(m) => format!("{} ({id})", m.name()),
                    None => format!("{id} (not available in this build)"),
                },
            };
            let bpsp = 8.0 * bytes.len() as f64 / h.samples() as f64;
            let mut s = format!(
                "{}: llif v{}, {} codec, model {}, {}x{} {}, {} bytes ({} header + payload), {:.3} bits/sub-pixel, check {:08x}",
                f.display(),
                h.version,
                h.family,
                model,
                h.width,
                h.height,
                h.layout,
                bytes.len(),
                h.to_bytes().len(),
                bpsp,
                h.check
            );
            if a.verify {
                let t = Instant::now();
                decode_image(&bytes, &models, &Limits::none())?;
                s.push_str(&format!(", verified ({:.2} s)", t.elapsed().as_secs_f64()));
            }
            Ok(s)
        })();
        match result {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("llif: error: {}: {e}", f.display());
                failed += 1;
            }
        }
    }
    if failed > 0 {
        return Err(Error::Failed(format!(
            "{failed} of {} files failed",
            a.files.len()
        )));
    }
    Ok(())
}
