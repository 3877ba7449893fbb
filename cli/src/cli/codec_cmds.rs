//! `llif compress`, `llif decompress`, `llif info`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;

use super::archive_cmds;
use super::io::{
    check_overwrite, choose_output, read_image_input, read_llif_input, LlifInput, Output,
};
use llif::{
    decode_image_with, encode_image_with_stats, CodecFamily, DecodeControl, Error, Header, Limits,
    Model, ModelChoice, ModelSet, Result,
};

#[derive(Args)]
pub struct ModelArgs {
    /// Model: `default` (the best built-in model), a family (`pixelcnn`, `flow`: its best
    /// built-in model; `vae` ships none yet), a built-in model's name or 8-hex-digit id,
    /// `stored` (no model), or the path of a model file (.llifm). `llif models` lists the
    /// built-in ones.
    #[arg(long, short = 'm', default_value = "default")]
    pub(super) model: String,
}

/// The same limits for every command: `compress` refuses what `decompress` would refuse.
#[derive(Args)]
pub struct LimitArgs {
    /// Refuse images with a side longer than this.
    #[arg(long, default_value_t = Limits::default().max_side)]
    max_side: u32,
    /// Refuse images with more pixels than this (the default bounds a decode at a few minutes).
    #[arg(long, default_value_t = Limits::default().max_pixels)]
    max_pixels: u64,
    /// Refuse images whose model needs more working memory than this, in MiB.
    #[arg(long, default_value_t = Limits::default().max_working_memory >> 20)]
    max_memory_mib: u64,
    /// Refuse archives of more images than this.
    #[arg(long, default_value_t = Limits::default().max_images)]
    max_images: u64,
    /// Refuse archives whose images have more pixels than this together.
    #[arg(long, default_value_t = Limits::default().max_archive_pixels)]
    max_archive_pixels: u64,
}

impl LimitArgs {
    pub(super) fn limits(&self) -> Limits {
        Limits::default()
            .with_max_side(self.max_side)
            .with_max_pixels(self.max_pixels)
            .with_max_working_memory(self.max_memory_mib.saturating_mul(1 << 20))
            .with_max_images(self.max_images)
            .with_max_archive_pixels(self.max_archive_pixels)
    }
}

/// A progress bar for decodes that take a while (on a terminal only).
fn decode_progress(h: &Header) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    let big = h.width as u64 * h.height as u64 >= 1 << 20;
    if !big || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("decoding {bar:30} {percent}%, eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(bar)
}

/// Decodes a `.llif` file's bytes under `limits`, with a progress bar on long decodes.
fn decode_with_progress(
    bytes: &[u8],
    h: &Header,
    models: &ModelSet,
    limits: &Limits,
) -> Result<llif::Image> {
    let bar = decode_progress(h);
    let report = |done: u64, total: u64| {
        if let Some(b) = &bar {
            b.set_length(total);
            b.set_position(done);
        }
    };
    let control = DecodeControl::default().with_progress(&report);
    let result = decode_image_with(bytes, models, limits, &control);
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    result
}

/// Resolves `--model`: family, built-in name/id, `stored`, or a file. `default` and a family
/// give the models the encoder chooses among per image ([`ModelSet::choice`]).
pub fn resolve_model(key: &str, set: &ModelSet) -> Result<ModelChoice> {
    if let Some(m) = set.choice(key) {
        return Ok(m);
    }
    if let Some(family) = CodecFamily::from_name(key) {
        let mut shipped: Vec<String> = Vec::new();
        for (_, m) in set.iter() {
            let family = m.family().to_string();
            if !shipped.contains(&family) {
                shipped.push(family);
            }
        }
        return Err(Error::UnsupportedFamily(format!(
            "{family}: this version of llif ships no {family} model (it has: {})",
            shipped.join(", ")
        )));
    }
    let path = Path::new(key);
    if path.exists() {
        return Model::from_file(path).map(ModelChoice::from);
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
    /// Input image (PNG, PPM/PGM, BMP, TIFF, QOI, lossless WebP, GIF; 8 bits per sample), or `-`
    /// for stdin. JPEG and lossy WebP are refused (their pixels are a decoder's approximation).
    /// A folder (its image files, sub-folders too) or a CIFAR-10 batch file (`.bin`) becomes
    /// one archive.
    pub(super) input: PathBuf,
    /// Output file; default: the input with extension .llif (stdout when the input is `-`).
    #[arg(short, long)]
    pub(super) output: Option<PathBuf>,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    limits: LimitArgs,
    /// Overwrite an existing output (regular files only).
    #[arg(short, long)]
    pub(super) force: bool,
    /// Print nothing on success.
    #[arg(short, long)]
    pub(super) quiet: bool,
}

pub fn compress(a: CompressArgs) -> Result<()> {
    if a.input.is_dir() || archive_cmds::is_cifar_batch(&a.input) {
        let model = resolve_model(&a.model.model, &ModelSet::builtin())?;
        return archive_cmds::compress_archive(&a, &model, &a.limits.limits());
    }
    let out = choose_output(a.output.as_deref(), &a.input, "llif");
    check_overwrite(&out, a.force)?;
    let choice = resolve_model(&a.model.model, &ModelSet::builtin())?;
    let limits = a.limits.limits();
    let bytes = read_image_input(&a.input, &limits)?;
    let image = llif::corpus::decode_image_bytes_within(&bytes, &limits)?;
    limits.check_working_memory(choice.working_memory(
        image.width(),
        image.height(),
        image.layout(),
    ))?;
    let t = Instant::now();
    let model = choice.choose(&image)?;
    let enc = encode_image_with_stats(&image, model)?;
    let secs = t.elapsed().as_secs_f64();
    out.write(&enc.bytes, a.force)?;
    if !a.quiet {
        let bpsp = 8.0 * enc.bytes.len() as f64 / image.samples() as f64;
        let ideal = enc
            .ideal_bits
            .map(|b| format!(", model {:.3}", b / image.samples() as f64))
            .unwrap_or_default();
        let coded_with = match enc.model_bytes_refused {
            Some(n) => format!(
                "stored: {} {} would have taken {n} bytes",
                model.name(),
                model.id().map(|i| i.to_string()).unwrap_or_default()
            ),
            None => format!(
                "{} {}",
                model.name(),
                model.id().map(|i| i.to_string()).unwrap_or_default()
            ),
        };
        eprintln!(
            "{} -> {}: {}x{} {}, {} bytes, {:.3} bits/sub-pixel{} ({}, {:.2} s)",
            a.input.display(),
            out.describe(),
            image.width(),
            image.height(),
            image.layout(),
            enc.bytes.len(),
            bpsp,
            ideal,
            coded_with.trim_end(),
            secs
        );
    }
    Ok(())
}

#[derive(Args)]
pub struct DecompressArgs {
    /// Input .llif file, or `-` for stdin.
    pub(super) input: PathBuf,
    /// Output image (.png, .ppm, .pgm, .pnm); default: the input with extension .png (stdout,
    /// as PNG, when the input is `-`). For an archive, the folder its images go to (default:
    /// the input without its extension); an unnamed archive's images are `00000.png`, ….
    #[arg(short, long)]
    pub(super) output: Option<PathBuf>,
    /// Extra model files to decode with (besides the built-in ones).
    #[arg(long = "model-file", short = 'm')]
    model_files: Vec<PathBuf>,
    #[command(flatten)]
    pub(super) limits: LimitArgs,
    #[arg(short, long)]
    pub(super) force: bool,
    #[arg(short, long)]
    pub(super) quiet: bool,
}

fn model_set_with(files: &[PathBuf]) -> Result<ModelSet> {
    let mut set = ModelSet::builtin();
    for f in files {
        set.add(&f.display().to_string(), Model::from_file(f)?);
    }
    Ok(set)
}

pub fn decompress(a: DecompressArgs) -> Result<()> {
    let models = model_set_with(&a.model_files)?;
    let limits = a.limits.limits();
    let (header, bytes) = match read_llif_input(&a.input, &limits, false, Some(&models))? {
        LlifInput::Archive(bytes) => return archive_cmds::decompress_archive(&a, &bytes, &models),
        LlifInput::Image(header, bytes) => (header, bytes),
    };
    let out = choose_output(a.output.as_deref(), &a.input, "png");
    check_overwrite(&out, a.force)?;
    let t = Instant::now();
    let image = decode_with_progress(&bytes, &header, &models, &limits)?;
    let secs = t.elapsed().as_secs_f64();
    let encoded = match &out {
        Output::Stdout => llif::corpus::encode_png(&image)?,
        // In memory, so the only file written is the temporary one beside the output.
        Output::File(p) => llif::corpus::encode_for_path(&image, p)?,
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

#[derive(Args)]
pub struct InfoArgs {
    /// .llif files (none: show what this build has).
    files: Vec<PathBuf>,
    /// Also decode each file and verify its checksum.
    #[arg(long)]
    verify: bool,
    /// Extra model files (for --verify).
    #[arg(long = "model-file", short = 'm')]
    model_files: Vec<PathBuf>,
    #[command(flatten)]
    limits: LimitArgs,
}

/// `llif models`: the built-in models, in order of preference (the default first).
pub fn list_models() -> Result<()> {
    let set = ModelSet::builtin();
    println!(
        "{:<22} {:<9} {:<8} {:>9}  card",
        "model", "family", "id", "bytes"
    );
    for (i, b) in llif::codec::BUILTIN_MODELS.iter().enumerate() {
        let m = set
            .find(b.name)
            .ok_or_else(|| Error::Internal(format!("built-in model {} not in the set", b.name)))?;
        let default = if i == 0 { " (default)" } else { "" };
        println!(
            "{:<22} {:<9} {:<8} {:>9}  {}{default}",
            b.name,
            m.family().to_string(),
            m.id().map(|i| i.to_string()).unwrap_or_default(),
            b.file.len(),
            b.headline
        );
        println!("{:<22} {}", "", m.family_model().summary());
    }
    println!(
        "{:<22} {:<9} {:<8} {:>9}  8 bits per sample (the fallback when a model would cost more)",
        "stored", "stored", "-", 0
    );
    Ok(())
}

/// `llif info` without files: version, families and models of this build.
fn build_info() -> Result<()> {
    let families: Vec<&str> = [
        CodecFamily::Stored,
        CodecFamily::PixelCnn,
        CodecFamily::Flow,
        CodecFamily::Vae,
    ]
    .into_iter()
    .filter(|f| llif::family::is_supported(*f))
    .map(|f| f.name())
    .collect();
    println!(
        "llif {} (format version {}), families: {}",
        env!("CARGO_PKG_VERSION"),
        llif::format::FORMAT_VERSION,
        families.join(", ")
    );
    list_models()
}

pub fn info(a: InfoArgs) -> Result<()> {
    if a.files.is_empty() {
        return build_info();
    }
    let models = model_set_with(&a.model_files)?;
    let limits = a.limits.limits();
    let mut failed = 0;
    for f in &a.files {
        let result = (|| -> Result<String> {
            // Without --verify only the header of a file is read (its size from the file system).
            let header_only = !a.verify && std::fs::metadata(f).is_ok_and(|m| m.is_file());
            let (h, bytes) =
                match read_llif_input(f, &limits, header_only, a.verify.then_some(&models))? {
                    LlifInput::Archive(bytes) => {
                        return archive_cmds::describe_archive(
                            f,
                            &bytes,
                            header_only,
                            &models,
                            &limits,
                            a.verify,
                        )
                    }
                    LlifInput::Image(h, bytes) => (h, bytes),
                };
            let size = if header_only {
                std::fs::metadata(f).map_err(|e| Error::io(f, e))?.len()
            } else {
                bytes.len() as u64
            };
            let model = match h.model {
                None => "none".to_string(),
                Some(id) => match models.by_id(id) {
                    Some(m) => format!("{} ({id})", m.name()),
                    None => format!("{id} (not available in this build)"),
                },
            };
            let bpsp = 8.0 * size as f64 / h.samples() as f64;
            let mut s = format!(
                "{}: llif v{}, {} codec, model {}, {}x{} {}, {} bytes ({} header + payload), {:.3} bits/sub-pixel, check {:08x}",
                f.display(),
                h.version,
                h.family,
                model,
                h.width,
                h.height,
                h.layout,
                size,
                h.to_bytes().len(),
                bpsp,
                h.check
            );
            if a.verify {
                let t = Instant::now();
                decode_with_progress(&bytes, &h, &models, &limits)?;
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
