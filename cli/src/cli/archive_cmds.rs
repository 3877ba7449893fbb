//! Archives in the CLI: `llif compress FOLDER` or `llif compress BATCH.bin` writes one archive,
//! `llif decompress ARCHIVE` writes its images into a folder, `llif info ARCHIVE` describes it.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;

use super::codec_cmds::{CompressArgs, DecompressArgs};
use super::io::{check_target, read_image_input, write_file_atomic, Output};
use llif::format::archive::{entry_file_name, Archive, ArchiveBuilder, ArchiveIndex};
use llif::{
    decode_archive_entry, DecodeControl, EncodeOptions, Error, Limits, ModelChoice, ModelSet,
    Result,
};

/// Extensions of the image files a folder archive takes (lossless formats only).
const IMAGE_EXTENSIONS: [&str; 10] = [
    "png", "ppm", "pgm", "pnm", "bmp", "tif", "tiff", "qoi", "webp", "gif",
];
/// Extensions `decompress` writes as they are; an image of another extension is named `.png`.
const KEPT_EXTENSIONS: [&str; 4] = ["png", "ppm", "pgm", "pnm"];

/// Whether `path` is a CIFAR-10 binary batch: extension `.bin`, a whole number of records.
pub fn is_cifar_batch(path: &Path) -> bool {
    let bin = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("bin"));
    bin && std::fs::metadata(path).is_ok_and(|m| {
        m.is_file() && m.len() > 0 && m.len() % llif::corpus::CIFAR_RECORD_BYTES as u64 == 0
    })
}

/// One image to put in an archive: where to read it, and its name in the archive.
struct Source {
    path: PathBuf,
    name: String,
}

/// Every image file under `dir` (sub-folders too, symlinks not followed), sorted by name, so the
/// archive is the same on every machine. Names are relative paths with `/`; an extension that
/// `decompress` cannot write (BMP, TIFF, …) becomes `.png` there.
fn folder_sources(dir: &Path) -> Result<(Vec<Source>, usize)> {
    let mut sources = Vec::new();
    let mut skipped = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(|e| Error::io(&d, e))? {
            let entry = entry.map_err(|e| Error::io(&d, e))?;
            let kind = entry.file_type().map_err(|e| Error::io(entry.path(), e))?;
            let path = entry.path();
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() && has_extension(&path, &IMAGE_EXTENSIONS) {
                let name = archive_name(dir, &path)?;
                sources.push(Source { path, name });
            } else {
                skipped += 1;
            }
        }
    }
    sources.sort_by(|a, b| a.name.cmp(&b.name));
    let mut seen = HashSet::new();
    for s in &sources {
        if !seen.insert(&s.name) {
            return Err(Error::Usage(format!(
                "two images of the folder would be called {} in the archive (one of them is {})",
                s.name,
                s.path.display()
            )));
        }
    }
    Ok((sources, skipped))
}

fn has_extension(path: &Path, list: &[&str]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| list.contains(&e.to_ascii_lowercase().as_str()))
}

/// The archive name of `path` under `dir`: its relative path with `/`, `.png` unless its
/// extension is one `decompress` writes.
fn archive_name(dir: &Path, path: &Path) -> Result<String> {
    let relative = path.strip_prefix(dir).map_err(|_| {
        Error::Internal(format!("{} is not under {}", path.display(), dir.display()))
    })?;
    let relative = if has_extension(relative, &KEPT_EXTENSIONS) {
        relative.to_path_buf()
    } else {
        relative.with_extension("png")
    };
    let parts: Option<Vec<&str>> = relative
        .components()
        .map(|c| match c {
            Component::Normal(s) => s.to_str(),
            _ => None,
        })
        .collect();
    let name = parts
        .map(|p| p.join("/"))
        .ok_or_else(|| Error::Usage(format!("{}: not a UTF-8 file name", path.display())))?;
    if let Some(problem) = llif::format::archive::name_problem(&name) {
        return Err(Error::Usage(format!("{}: {problem}", path.display())));
    }
    Ok(name)
}

/// A progress bar of `total` images on a terminal, for runs of more than one image.
fn progress(total: u64, verb: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if total < 2 || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let template = format!("{verb} {{bar:30}} {{pos}}/{{len}} images, eta {{eta}}");
    indicatif::ProgressBar::new(total).with_style(
        indicatif::ProgressStyle::with_template(&template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    )
}

/// What an encoded entry reports: its file, samples, pixels, which candidate coded it.
struct EncodedEntry {
    file: Vec<u8>,
    samples: u64,
    pixels: u64,
    /// Position of its model in the choice.
    model: usize,
}

fn encode_one(image: &llif::Image, choice: &ModelChoice, limits: &Limits) -> Result<EncodedEntry> {
    limits.check(image.width(), image.height())?;
    limits.check_working_memory(choice.working_memory(
        image.width(),
        image.height(),
        image.layout(),
    ))?;
    let model = choice.choose(image)?;
    let enc = llif::encode_image_with(image, model, &EncodeOptions::default())?;
    Ok(EncodedEntry {
        file: enc.bytes,
        samples: image.samples() as u64,
        pixels: image.width() as u64 * image.height() as u64,
        model: choice
            .models()
            .iter()
            .position(|m| m.id() == model.id())
            .unwrap_or(0),
    })
}

/// `llif compress FOLDER|BATCH.bin`: one archive of all its images.
pub fn compress_archive(a: &CompressArgs, choice: &ModelChoice, limits: &Limits) -> Result<()> {
    let input = a.input.as_path();
    let out = archive_output(a.output.as_deref(), input)?;
    if let Output::File(p) = &out {
        check_target(p, a.force)?;
    }
    let t = Instant::now();
    let (entries, names, skipped) = if input.is_dir() {
        encode_folder(input, choice, limits)?
    } else {
        (encode_cifar(input, choice, limits)?, None, 0)
    };
    let pixels = entries
        .iter()
        .try_fold(0u64, |sum, e| sum.checked_add(e.pixels))
        .ok_or_else(|| Error::LimitExceeded("more than 2^64 pixels".into()))?;
    limits.check_archive_pixels(pixels)?;
    let mut builder = ArchiveBuilder::new(names.is_some());
    for (i, e) in entries.iter().enumerate() {
        builder.push(names.as_ref().map(|n| n[i].as_str()), &e.file)?;
    }
    let bytes = builder.finish()?;
    out.write(&bytes, a.force)?;
    if !a.quiet {
        let samples: u64 = entries.iter().map(|e| e.samples).sum();
        let files: usize = entries.iter().map(|e| e.file.len()).sum();
        let note = if skipped > 0 {
            format!("; left out, not images: {skipped} files")
        } else {
            String::new()
        };
        eprintln!(
            "{} -> {}: {} images, {} bytes, {:.3} bits/sub-pixel (as separate files {:.3}), {} ({:.2} s){note}",
            input.display(),
            out.describe(),
            entries.len(),
            bytes.len(),
            8.0 * bytes.len() as f64 / samples as f64,
            8.0 * files as f64 / samples as f64,
            models_used(choice, &entries),
            t.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// `NAME ID`, or for a choice of models `NAME ID (N images), …` of those that coded any.
fn models_used(choice: &ModelChoice, entries: &[EncodedEntry]) -> String {
    let label = |m: &llif::Model| {
        format!(
            "{} {}",
            m.name(),
            m.id().map(|i| i.to_string()).unwrap_or_default()
        )
    };
    if choice.models().len() == 1 {
        return label(choice.first());
    }
    let used: Vec<String> = choice
        .models()
        .iter()
        .enumerate()
        .filter_map(|(i, m)| {
            let n = entries.iter().filter(|e| e.model == i).count();
            (n > 0).then(|| format!("{} ({n} images)", label(m)))
        })
        .collect();
    used.join(", ")
}

/// `-o` (`-` for stdout), or the input with `.llif` (a folder `photos/` gives `photos.llif`
/// beside it). A folder without a name of its own (`.`, `..`, `/`) needs `-o`.
fn archive_output(output: Option<&Path>, input: &Path) -> Result<Output> {
    match output {
        Some(p) if p == Path::new("-") => Ok(Output::Stdout),
        Some(p) => Ok(Output::File(p.to_path_buf())),
        None => {
            let trimmed: PathBuf = input.components().collect();
            match trimmed.components().next_back() {
                Some(Component::Normal(_)) => Ok(Output::File(trimmed.with_extension("llif"))),
                _ => Err(Error::Usage(format!(
                    "{} has no name to call its archive by: give one with -o FILE.llif",
                    input.display()
                ))),
            }
        }
    }
}

type EncodedFolder = (Vec<EncodedEntry>, Option<Vec<String>>, usize);

fn encode_folder(dir: &Path, choice: &ModelChoice, limits: &Limits) -> Result<EncodedFolder> {
    let (sources, skipped) = folder_sources(dir)?;
    if sources.is_empty() {
        return Err(Error::Usage(format!(
            "{}: no image files (PNG, PPM/PGM/PNM, BMP, TIFF, QOI, WebP, GIF) in it",
            dir.display()
        )));
    }
    limits.check_images(sources.len() as u64)?;
    let bar = progress(sources.len() as u64, "compressing");
    let entries = sources
        .par_iter()
        .map(|s| {
            let image = read_image_input(&s.path, limits)
                .and_then(|bytes| llif::corpus::decode_image_bytes_within(&bytes, limits))
                .map_err(|e| annotate(&s.path, e))?;
            let entry = encode_one(&image, choice, limits).map_err(|e| annotate(&s.path, e))?;
            bar.inc(1);
            Ok(entry)
        })
        .collect::<Result<Vec<_>>>();
    bar.finish_and_clear();
    let names = sources.into_iter().map(|s| s.name).collect();
    Ok((entries?, Some(names), skipped))
}

fn encode_cifar(path: &Path, choice: &ModelChoice, limits: &Limits) -> Result<Vec<EncodedEntry>> {
    // The count first, from the file's size (`is_cifar_batch` found whole records).
    let bytes = std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .len();
    limits.check_images(bytes / llif::corpus::CIFAR_RECORD_BYTES as u64)?;
    let images = llif::corpus::read_cifar(path, None)?;
    let bar = progress(images.len() as u64, "compressing");
    let entries = images
        .par_iter()
        .map(|c| {
            let entry = encode_one(&c.image, choice, limits)?;
            bar.inc(1);
            Ok(entry)
        })
        .collect::<Result<Vec<_>>>();
    bar.finish_and_clear();
    entries
}

/// Puts the path of the file an error is about in front of it (I/O errors name it already).
fn annotate(path: &Path, e: Error) -> Error {
    match e {
        Error::Io { .. } => e,
        other => other.with_context(&path.display().to_string()),
    }
}

/// `llif decompress ARCHIVE`: every image into a folder (`-o`, default the archive's path without
/// `.llif`), names as the archive has them. Nothing is written before the archive's index has
/// been checked and every target path found free (or replaceable with `--force`); if an entry
/// then fails to decode (its payload is damaged), the files and folders this run created are
/// removed again, so an archive extracts whole or not at all.
pub fn decompress_archive(a: &DecompressArgs, bytes: &[u8], models: &ModelSet) -> Result<()> {
    let limits = a.limits.limits();
    let archive = Archive::parse(bytes, &limits)?;
    let dir = archive_folder(a)?;
    let targets = plan_targets(&archive, &dir, a.force)?;
    let t = Instant::now();
    // Undoes itself when dropped unfinished: on an error, and on a panic.
    let mut extraction = Extraction::default();
    extract(a, &dir, &archive, &targets, models, &mut extraction)?;
    extraction.finished = true;
    if !a.quiet {
        eprintln!(
            "{} -> {}/: {} images, {} pixels ({:.2} s)",
            a.input.display(),
            dir.display(),
            archive.entries.len(),
            archive.pixels(),
            t.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// The folder an archive's images go to: `-o`, or the input without its extension.
fn archive_folder(a: &DecompressArgs) -> Result<PathBuf> {
    match &a.output {
        Some(p) if p == Path::new("-") => Err(Error::Usage(
            "an archive's images go to a folder, not to stdout: give -o FOLDER".into(),
        )),
        Some(p) => Ok(p.clone()),
        None if a.input == Path::new("-") => Err(Error::Usage(
            "an archive from stdin needs -o FOLDER for its images".into(),
        )),
        None if a.input.extension().is_none() => Err(Error::Usage(format!(
            "{} has no extension to drop for its folder's name: give -o FOLDER",
            a.input.display()
        ))),
        None => Ok(a.input.with_extension("")),
    }
}

/// Decodes the entries in batches in parallel and writes them one after another (one temporary
/// file at a time, which the signal handler removes on an interrupt).
fn extract(
    a: &DecompressArgs,
    dir: &Path,
    archive: &Archive<'_>,
    targets: &[(PathBuf, String)],
    models: &ModelSet,
    extraction: &mut Extraction,
) -> Result<()> {
    let limits = a.limits.limits();
    let bar = progress(archive.entries.len() as u64, "decompressing");
    for batch in batches(archive) {
        let images = batch
            .clone()
            .into_par_iter()
            .map(|i| {
                decode_archive_entry(
                    &archive.entries[i],
                    models,
                    &limits,
                    &DecodeControl::default(),
                )
                .map_err(|e| e.with_context(&format!("entry {}", targets[i].1)))
            })
            .collect::<Result<Vec<_>>>()?;
        for (i, image) in batch.zip(images) {
            let (path, name) = &targets[i];
            let encoded = llif::corpus::encode_for_path(&image, path)?;
            // Checked again just before writing: a folder may have become a symlink since.
            refuse_symlinked_folders(dir, name)?;
            extraction.create_folders(path)?;
            extraction.write(path, name, &encoded, a.force)?;
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    Ok(())
}

/// What an extraction has done so far, to undo it on a failure, and to notice two entries
/// landing on one file (names that differ only in case, or in Unicode normalization, on a
/// file system that does not tell them apart). Files and folders are identified by (device,
/// inode), so an undo never removes what the run did not create, even if a folder was swapped
/// for a symlink meanwhile. (An interrupt leaves the files written so far, as other archivers
/// do; the one being written is removed.)
#[derive(Default)]
struct Extraction {
    created_files: Vec<(PathBuf, FileId)>,
    created_folders: Vec<(PathBuf, FileId)>,
    /// Every file written, with its entry's name.
    written: std::collections::HashMap<FileId, String>,
    /// Set when every entry is written; until then, dropping undoes.
    finished: bool,
}

/// (device, inode)
type FileId = (u64, u64);

fn file_id(path: &Path) -> Option<FileId> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

impl Extraction {
    fn create_folders(&mut self, path: &Path) -> Result<()> {
        let Some(parent) = path.parent() else {
            return Ok(());
        };
        let missing: Vec<PathBuf> = parent
            .ancestors()
            .take_while(|p| !p.as_os_str().is_empty() && std::fs::symlink_metadata(p).is_err())
            .map(Path::to_path_buf)
            .collect();
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        // Outermost first, so that undoing (in reverse) removes the innermost first.
        for folder in missing.into_iter().rev() {
            if let Some(id) = file_id(&folder) {
                self.created_folders.push((folder, id));
            }
        }
        Ok(())
    }

    fn write(&mut self, path: &Path, name: &str, bytes: &[u8], force: bool) -> Result<()> {
        let existing = file_id(path);
        if let Some(earlier) = existing.and_then(|id| self.written.get(&id)) {
            return Err(Error::Usage(format!(
                "entries {earlier} and {name} are the same file in this folder (names that differ only in case or Unicode normalization): extract to a file system that tells them apart"
            )));
        }
        write_file_atomic(path, bytes, force)?;
        let id = file_id(path).ok_or_else(|| {
            Error::Internal(format!("{} is gone right after writing", path.display()))
        })?;
        if existing.is_none() {
            self.created_files.push((path.to_path_buf(), id));
        }
        self.written.insert(id, name.to_string());
        Ok(())
    }
}

impl Drop for Extraction {
    /// Removes the files and (then empty) folders this run created, each only if it is still
    /// the one created; best effort, on the way out of an error that is reported anyway.
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        for (f, id) in &self.created_files {
            if file_id(f) == Some(*id) {
                let _ = std::fs::remove_file(f);
            }
        }
        for (d, id) in self.created_folders.iter().rev() {
            if file_id(d) == Some(*id) {
                let _ = std::fs::remove_dir(d);
            }
        }
    }
}

/// Consecutive entries to decode together: up to 256 images or 4 Mpixel (at least one), so
/// small images decode in parallel and a batch of photographs stays within memory.
fn batches(archive: &Archive<'_>) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut pixels = 0u64;
    for (i, e) in archive.entries.iter().enumerate() {
        if i > start && (i - start >= 256 || pixels + e.pixels() > 1 << 22) {
            out.push(start..i);
            (start, pixels) = (i, 0);
        }
        pixels += e.pixels();
    }
    out.push(start..archive.entries.len());
    out
}

/// The file each entry goes to, with its name; errors before anything is written when a target
/// exists (without `--force`), is not a regular file, lies under a symlinked folder, or has an
/// extension whose format cannot hold the entry's image.
fn plan_targets(archive: &Archive<'_>, dir: &Path, force: bool) -> Result<Vec<(PathBuf, String)>> {
    archive
        .entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let name = entry_file_name(e.name, i);
            let path = dir.join(&name);
            refuse_symlinked_folders(dir, &name)?;
            check_target(&path, force)?;
            let probe = llif::Image::filled(1, 1, e.header.layout, 0)?;
            llif::corpus::encode_for_path(&probe, &path)
                .map_err(|err| Error::Usage(format!("entry {name}: {err}")))?;
            Ok((path, name))
        })
        .collect()
}

/// A name's folders inside `dir` must not be symlinks (they could lead out of `dir`).
fn refuse_symlinked_folders(dir: &Path, name: &str) -> Result<()> {
    let mut p = dir.to_path_buf();
    let parts: Vec<&str> = name.split('/').collect();
    for part in &parts[..parts.len() - 1] {
        p.push(part);
        if std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(Error::Usage(format!(
                "{} is a symlink: llif writes an archive's images into real folders only",
                p.display()
            )));
        }
    }
    Ok(())
}

/// `llif info` of an archive: one line for the archive. `bytes` is the whole archive with
/// `verify` (every entry is decoded); with `header_only` just its index (the size is then the
/// file's on disk).
pub fn describe_archive(
    path: &Path,
    bytes: &[u8],
    header_only: bool,
    models: &ModelSet,
    limits: &Limits,
    verify: bool,
) -> Result<String> {
    let index = ArchiveIndex::parse(bytes, limits)?;
    let size = if header_only {
        std::fs::metadata(path)
            .map_err(|e| Error::io(path, e))?
            .len()
    } else {
        bytes.len() as u64
    };
    if size < index.file_bytes() {
        return Err(Error::Truncated("archive payloads"));
    }
    if size > index.file_bytes() {
        return Err(Error::CorruptPayload(format!(
            "{size} bytes, {} more than its archive index accounts for",
            size - index.file_bytes()
        )));
    }
    let mut ids: Vec<String> = index
        .records
        .iter()
        .map(|e| match e.header.model {
            None => "stored".to_string(),
            Some(id) => match models.by_id(id) {
                Some(m) => format!("{} ({id})", m.name()),
                None => format!("{id} (not available in this build)"),
            },
        })
        .collect();
    ids.sort();
    ids.dedup();
    let mut s = format!(
        "{}: llif archive v1, {} images ({}), models {}, {} bytes ({} index), {} pixels, {:.3} bits/sub-pixel",
        path.display(),
        index.records.len(),
        if index.named() { "named" } else { "unnamed" },
        ids.join(", "),
        size,
        index.index_bytes,
        index.pixels(),
        8.0 * size as f64 / index.samples() as f64
    );
    if verify {
        let archive = Archive::parse(bytes, limits)?;
        let t = Instant::now();
        archive
            .entries
            .par_iter()
            .enumerate()
            .try_for_each(|(i, e)| {
                decode_archive_entry(e, models, limits, &DecodeControl::default())
                    .map(|_| ())
                    .map_err(|err| {
                        err.with_context(&format!("entry {}", entry_file_name(e.name, i)))
                    })
            })?;
        s.push_str(&format!(", verified ({:.2} s)", t.elapsed().as_secs_f64()));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two entries that one file system sees as one file (here made so with `./`, as case
    /// folding would on another): the second is refused, even with `--force`, and an unfinished
    /// extraction removes only what it created.
    #[test]
    fn two_entries_on_one_file_are_refused_and_undone() {
        let root = tempfile::tempdir().unwrap();
        let kept = root.path().join("kept.png");
        std::fs::write(&kept, b"mine").unwrap();
        let mut x = Extraction::default();
        let first = root.path().join("d/a.png");
        x.create_folders(&first).unwrap();
        x.write(&first, "d/a.png", b"one", true).unwrap();
        x.write(&kept, "kept.png", b"replaced", true).unwrap();
        let same = root.path().join("d/./a.png");
        let err = x.write(&same, "d/./a.png", b"two", true).unwrap_err();
        assert!(err.to_string().contains("same file"), "{err}");
        assert_eq!(std::fs::read(&first).unwrap(), b"one");
        drop(x);
        assert!(
            !root.path().join("d").exists(),
            "created file and folder removed"
        );
        assert_eq!(
            std::fs::read(&kept).unwrap(),
            b"replaced",
            "a replaced file stays"
        );
    }
}
