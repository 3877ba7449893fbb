//! The compression benchmark: runs codecs over a set of images, checks that every one of them is
//! lossless, and reports file sizes as bits per sub-pixel next to encode and decode times.
//!
//! Every figure in a [`BenchReport`] comes from a file that was decoded and compared with its
//! input: a codec that does not reproduce an image exactly stops the run with an error naming
//! the codec and the image, so a broken codec can never show up as a good number.

#[cfg(feature = "baselines")]
pub mod baselines;
pub mod learned;

use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::image::{ChannelLayout, Image};

/// A codec the benchmark can run: the classical baselines in `baselines` (feature `baselines`) and the learned llif
/// codecs implement it.
pub trait BenchCodec: Send + Sync {
    /// Short name used in tables (unique within one run).
    fn name(&self) -> String;

    /// Encodes one image to one complete file (headers included).
    fn encode(&self, img: &Image) -> Result<Vec<u8>>;

    /// Decodes a file written by `encode`; the samples must equal the input's.
    ///
    /// The result should also have the input's layout. Containers that cannot record llif's
    /// layout are allowed to return the same pixels in another layout instead: WebP always
    /// decodes to RGB or RGBA, and oxipng legitimately rewrites an RGB image whose pixels are all
    /// gray as a gray PNG. The benchmark therefore decodes through [`BenchCodec::decode_as`].
    fn decode(&self, bytes: &[u8]) -> Result<Image>;

    /// Decodes a file and returns it in `layout`, the layout of the image that was encoded.
    ///
    /// Knowing the layout is the benchmark's side information, not part of the file: it is what
    /// lets a gray image that WebP stored as RGB come back as gray without guessing from the
    /// pixels (an RGB image that happens to be all gray must stay RGB). The default converts
    /// [`BenchCodec::decode`]'s result with [`restore_layout`], which fails rather than drop any
    /// information, so the check against the input stays exact.
    fn decode_as(&self, bytes: &[u8], layout: ChannelLayout) -> Result<Image> {
        restore_layout(self.decode(bytes)?, layout)
    }

    /// The model's own ideal code length in bits for `img` (learned codecs), if it has one.
    fn model_bits(&self, _img: &Image) -> Option<f64> {
        None
    }

    /// Whether the codec writes archives (llif): the benchmark then keeps its files and reports
    /// [`BenchCodec::archive_bytes`] of the whole set beside the per-file figures.
    fn has_archives(&self) -> bool {
        false
    }

    /// The size of one archive of `files` (this codec's files of the set, in order), checked
    /// to hold exactly those files; `None` for codecs without archives.
    fn archive_bytes(&self, _files: &[Vec<u8>]) -> Option<Result<usize>> {
        None
    }

    /// Remarks about the run so far that a reader of the results needs (e.g. a setting that had
    /// to be relaxed for some images); the benchmark copies them into [`BenchReport::notes`].
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Converts `img` to `layout` without losing information, or fails.
///
/// Widening (gray to RGB, adding an opaque alpha) always succeeds. Narrowing succeeds only when
/// it drops nothing: every pixel must have R = G = B to become gray, and alpha 255 everywhere to
/// lose its alpha channel. Otherwise the error is [`Error::InvalidImage`].
pub fn restore_layout(img: Image, layout: ChannelLayout) -> Result<Image> {
    let from = img.layout();
    if from == layout {
        return Ok(img);
    }
    let (w, h) = (img.width(), img.height());
    let src_ch = from.channels();
    let mut out = Vec::with_capacity(img.pixels() * layout.channels());
    for px in img.data().chunks_exact(src_ch) {
        // Every layout widens exactly to RGBA; narrow from there.
        let [r, g, b, a] = match from {
            ChannelLayout::Gray => [px[0], px[0], px[0], 255],
            ChannelLayout::GrayAlpha => [px[0], px[0], px[0], px[1]],
            ChannelLayout::Rgb => [px[0], px[1], px[2], 255],
            ChannelLayout::Rgba => [px[0], px[1], px[2], px[3]],
        };
        if !layout.has_alpha() && a != 255 {
            return Err(Error::InvalidImage(format!(
                "cannot convert {from} to {layout}: the image has transparent pixels"
            )));
        }
        if layout.color_channels() == 1 && !(r == g && g == b) {
            return Err(Error::InvalidImage(format!(
                "cannot convert {from} to {layout}: the image has colour"
            )));
        }
        match layout {
            ChannelLayout::Gray => out.push(r),
            ChannelLayout::GrayAlpha => out.extend_from_slice(&[r, a]),
            ChannelLayout::Rgb => out.extend_from_slice(&[r, g, b]),
            ChannelLayout::Rgba => out.extend_from_slice(&[r, g, b, a]),
        }
    }
    Image::new(w, h, layout, out)
}

/// One named image of a benchmark set.
#[derive(Clone, Debug)]
pub struct BenchImage {
    pub name: String,
    pub image: Image,
}

/// How [`run_bench_with`] runs.
#[derive(Clone, Copy, Debug)]
pub struct BenchOptions {
    /// Code several images at once (rayon). Faster overall, but each timing is then the wall time
    /// of one image on a machine busy with the others; run sequentially for clean timings.
    pub parallel: bool,
    /// Print a progress line to stderr.
    pub progress: bool,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            parallel: true,
            progress: false,
        }
    }
}

/// One codec on one image.
#[derive(Clone, Debug, Serialize)]
pub struct BenchRow {
    pub image: String,
    pub codec: String,
    pub width: u32,
    pub height: u32,
    pub layout: String,
    /// Samples of the image (pixels x channels): the denominator of bits per sub-pixel.
    pub samples: usize,
    /// Size of the complete file.
    pub bytes: usize,
    /// 8 * bytes / samples.
    pub bpsp: f64,
    pub encode_ms: f64,
    pub decode_ms: f64,
    /// The codec's own ideal code length, if it has a model.
    pub model_bits: Option<f64>,
    /// model_bits / samples.
    pub model_bpsp: Option<f64>,
    /// True when the decoded image equalled the input (always true in a finished report: a
    /// mismatch aborts the run).
    pub verified: bool,
}

/// One codec over the whole set.
#[derive(Clone, Debug, Serialize)]
pub struct CodecSummary {
    pub codec: String,
    pub images: usize,
    pub total_bytes: u64,
    pub total_samples: u64,
    /// Bits per sub-pixel over the whole set: 8 * total_bytes / total_samples (large images
    /// weigh more).
    pub bpsp: f64,
    /// Mean of the per-image bits per sub-pixel (every image weighs the same).
    pub mean_image_bpsp: f64,
    /// Model bits over the whole set per sub-pixel, when the codec gave them for every image.
    pub model_bpsp: Option<f64>,
    pub mean_encode_ms: f64,
    pub mean_decode_ms: f64,
    /// Images whose decoded file was checked equal to the input.
    pub verified: usize,
    /// Size of one archive of the whole set (codecs with archives), and its bits per sub-pixel.
    pub archive_bytes: Option<u64>,
    pub archive_bpsp: Option<f64>,
}

/// The result of a benchmark run.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// One row per image and codec, images in input order, codecs in the order given.
    pub rows: Vec<BenchRow>,
    /// One summary per codec, in the order given.
    pub summaries: Vec<CodecSummary>,
    /// Whether images were coded in parallel (see [`BenchOptions::parallel`]).
    pub parallel: bool,
    /// Worker threads available when run in parallel.
    pub threads: usize,
    /// Remarks for the reader, e.g. codecs that were skipped and why.
    pub notes: Vec<String>,
}

/// Runs every codec on every image in parallel over images; see [`run_bench_with`].
pub fn run_bench(
    images: &[BenchImage],
    codecs: &[Box<dyn BenchCodec>],
    progress: bool,
) -> Result<BenchReport> {
    run_bench_with(
        images,
        codecs,
        BenchOptions {
            parallel: true,
            progress,
        },
    )
}

/// Encodes, decodes and verifies every image with every codec, timing both directions.
///
/// Fails on the first codec error or on any decoded image that differs from its input; the
/// error names the codec and the image.
pub fn run_bench_with(
    images: &[BenchImage],
    codecs: &[Box<dyn BenchCodec>],
    options: BenchOptions,
) -> Result<BenchReport> {
    let done = AtomicUsize::new(0);
    // Each image's row and, for codecs with archives, its file.
    let run_one = |item: &BenchImage| -> Result<Vec<(BenchRow, Option<Vec<u8>>)>> {
        let rows = codecs
            .iter()
            .map(|codec| bench_one(item, codec.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        if options.progress {
            let n = done.fetch_add(1, Ordering::Relaxed) + 1;
            eprint!("\rbench: {n}/{} images", images.len());
        }
        Ok(rows)
    };
    let per_image: Vec<Vec<(BenchRow, Option<Vec<u8>>)>> = if options.parallel {
        images.par_iter().map(run_one).collect::<Result<_>>()?
    } else {
        images.iter().map(run_one).collect::<Result<_>>()?
    };
    if options.progress && !images.is_empty() {
        eprintln!();
    }
    let mut files: Vec<Vec<Vec<u8>>> = vec![Vec::new(); codecs.len()];
    let mut rows = Vec::with_capacity(images.len() * codecs.len());
    for image_rows in per_image {
        for (c, (row, file)) in image_rows.into_iter().enumerate() {
            files[c].extend(file);
            rows.push(row);
        }
    }
    let summaries = codecs
        .iter()
        .zip(&files)
        .map(|(c, f)| {
            let mut summary = summarize(&c.name(), &rows);
            let archive = if f.is_empty() {
                None
            } else {
                c.archive_bytes(f)
            };
            if let Some(bytes) = archive.transpose()? {
                summary.archive_bytes = Some(bytes as u64);
                summary.archive_bpsp =
                    Some(8.0 * bytes as f64 / summary.total_samples.max(1) as f64);
            }
            Ok(summary)
        })
        .collect::<Result<_>>()?;
    Ok(BenchReport {
        rows,
        summaries,
        parallel: options.parallel,
        threads: if options.parallel {
            rayon::current_num_threads()
        } else {
            1
        },
        notes: codecs.iter().flat_map(|c| c.notes()).collect(),
    })
}

/// Prefixes the error message with the codec and image where the variant carries a message,
/// so a failure in a long run says where it happened.
fn in_context(e: Error, codec: &str, image: &str) -> Error {
    let context = format!("{codec} on image {image}");
    match e {
        Error::Io { path, source } => Error::Io {
            path,
            source: std::io::Error::new(source.kind(), format!("{context}: {source}")),
        },
        other => other.with_context(&context),
    }
}

/// Codes one image with one codec and checks the result; the file too when the codec has
/// archives.
fn bench_one(item: &BenchImage, codec: &dyn BenchCodec) -> Result<(BenchRow, Option<Vec<u8>>)> {
    let name = codec.name();
    let img = &item.image;
    let t0 = Instant::now();
    let bytes = codec
        .encode(img)
        .map_err(|e| in_context(e, &name, &item.name))?;
    let encode_ms = t0.elapsed().as_secs_f64() * 1e3;
    let t1 = Instant::now();
    let decoded = codec
        .decode_as(&bytes, img.layout())
        .map_err(|e| in_context(e, &name, &item.name))?;
    let decode_ms = t1.elapsed().as_secs_f64() * 1e3;
    if decoded != *img {
        return Err(Error::CorruptPayload(format!(
            "{name} is not lossless on image {}: {}",
            item.name,
            describe_mismatch(img, &decoded)
        )));
    }
    let samples = img.samples();
    let model_bits = codec.model_bits(img);
    let row = BenchRow {
        image: item.name.clone(),
        codec: name,
        width: img.width(),
        height: img.height(),
        layout: img.layout().name().to_string(),
        samples,
        bytes: bytes.len(),
        bpsp: 8.0 * bytes.len() as f64 / samples as f64,
        encode_ms,
        decode_ms,
        model_bits,
        model_bpsp: model_bits.map(|b| b / samples as f64),
        verified: true,
    };
    Ok((row, codec.has_archives().then_some(bytes)))
}

/// Says how two images differ, for the error message.
fn describe_mismatch(expected: &Image, got: &Image) -> String {
    if (expected.width(), expected.height(), expected.layout())
        != (got.width(), got.height(), got.layout())
    {
        return format!("decoded {got:?}, expected {expected:?}");
    }
    let diffs = expected
        .data()
        .iter()
        .zip(got.data())
        .filter(|(a, b)| a != b)
        .count();
    match expected
        .data()
        .iter()
        .zip(got.data())
        .position(|(a, b)| a != b)
    {
        Some(i) => {
            let ch = expected.channels();
            let (px, c) = (i / ch, i % ch);
            let (x, y) = (
                px % expected.width() as usize,
                px / expected.width() as usize,
            );
            format!(
                "{diffs} samples differ, first at pixel ({x}, {y}) channel {c}: expected {}, got {}",
                expected.data()[i],
                got.data()[i]
            )
        }
        None => "images differ".to_string(),
    }
}

/// Totals for one codec.
fn summarize(codec: &str, rows: &[BenchRow]) -> CodecSummary {
    let mine: Vec<&BenchRow> = rows.iter().filter(|r| r.codec == codec).collect();
    let n = mine.len();
    let total_bytes: u64 = mine.iter().map(|r| r.bytes as u64).sum();
    let total_samples: u64 = mine.iter().map(|r| r.samples as u64).sum();
    let mean = |f: fn(&BenchRow) -> f64| {
        if n == 0 {
            0.0
        } else {
            mine.iter().map(|r| f(r)).sum::<f64>() / n as f64
        }
    };
    let ratio = |num: f64| {
        if total_samples == 0 {
            0.0
        } else {
            num / total_samples as f64
        }
    };
    let model_total: Option<f64> = if n == 0 {
        None
    } else {
        mine.iter().map(|r| r.model_bits).sum()
    };
    CodecSummary {
        codec: codec.to_string(),
        images: n,
        total_bytes,
        total_samples,
        bpsp: ratio(8.0 * total_bytes as f64),
        mean_image_bpsp: mean(|r| r.bpsp),
        model_bpsp: model_total.map(ratio),
        mean_encode_ms: mean(|r| r.encode_ms),
        mean_decode_ms: mean(|r| r.decode_ms),
        verified: mine.iter().filter(|r| r.verified).count(),
        archive_bytes: None,
        archive_bpsp: None,
    }
}

impl BenchReport {
    /// The per-codec summary as a Markdown table, followed by the notes.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        s.push_str("| codec | bpsp | archive bpsp | mean per-image bpsp | model bpsp | enc ms/img | dec ms/img | images verified |\n");
        s.push_str("|---|---:|---:|---:|---:|---:|---:|---:|\n");
        for c in &self.summaries {
            let model = c
                .model_bpsp
                .map_or_else(|| "-".to_string(), |m| format!("{m:.3}"));
            let archive = c
                .archive_bpsp
                .map_or_else(|| "-".to_string(), |a| format!("{a:.3}"));
            let _ = writeln!(
                s,
                "| {} | {:.3} | {archive} | {:.3} | {} | {:.2} | {:.2} | {}/{} |",
                c.codec,
                c.bpsp,
                c.mean_image_bpsp,
                model,
                c.mean_encode_ms,
                c.mean_decode_ms,
                c.verified,
                c.images
            );
        }
        s.push('\n');
        s.push_str("bpsp: bits per sub-pixel over the whole set (8 x total bytes / total samples; gray images count one channel), one file per image.\n");
        if self.summaries.iter().any(|c| c.archive_bpsp.is_some()) {
            s.push_str("archive bpsp: the same images as one llif archive (SPEC.md \"Archives\"), checked to hold exactly the files above.\n");
        }
        if self.parallel {
            let _ = writeln!(
                s,
                "Timings are per-image wall times with {} images coded in parallel, so they include contention; run sequentially for clean timings.",
                self.threads
            );
        } else {
            s.push_str("Timings are per-image wall times, images coded one after the other.\n");
        }
        for note in &self.notes {
            let _ = writeln!(s, "Note: {note}");
        }
        s
    }

    /// The whole report (rows, summaries, notes) as pretty-printed JSON.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self)
            .map_err(|e| Error::Usage(format!("cannot serialise the report: {e}")))
    }

    /// The per-image rows as CSV with a header line.
    pub fn to_csv(&self) -> String {
        let mut s = String::from(
            "image,codec,width,height,layout,samples,bytes,bpsp,encode_ms,decode_ms,model_bits,model_bpsp,verified\n",
        );
        let opt = |v: Option<f64>| v.map_or_else(String::new, |v| format!("{v:.3}"));
        for r in &self.rows {
            let _ = writeln!(
                s,
                "{},{},{},{},{},{},{},{:.6},{:.3},{:.3},{},{},{}",
                csv_field(&r.image),
                csv_field(&r.codec),
                r.width,
                r.height,
                r.layout,
                r.samples,
                r.bytes,
                r.bpsp,
                r.encode_ms,
                r.decode_ms,
                opt(r.model_bits),
                r.model_bpsp.map_or_else(String::new, |v| format!("{v:.6}")),
                r.verified
            );
        }
        s
    }
}

/// Quotes a CSV field when it contains a separator, quote or line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::image::ChannelLayout::*;

    /// Deterministic noise-like samples (hard to compress).
    pub(crate) fn noisy(w: u32, h: u32, layout: ChannelLayout, seed: u32) -> Image {
        let n = w as usize * h as usize * layout.channels();
        let data = (0..n as u32)
            .map(|i| {
                let x = (i ^ seed).wrapping_mul(0x9E37_79B9);
                (x ^ (x >> 15)).wrapping_mul(0x85EB_CA6B).rotate_right(11) as u8
            })
            .collect();
        Image::new(w, h, layout, data).expect("valid test image")
    }

    /// Smooth gradients with a partly transparent alpha (where the layout has one).
    pub(crate) fn smooth(w: u32, h: u32, layout: ChannelLayout) -> Image {
        let ch = layout.channels();
        let mut data = Vec::with_capacity(w as usize * h as usize * ch);
        for y in 0..h {
            for x in 0..w {
                for c in 0..ch {
                    let alpha = layout.has_alpha() && c == ch - 1;
                    let v = if alpha {
                        if (x + y) % 3 == 0 {
                            0
                        } else {
                            255 - x * 3
                        }
                    } else {
                        x * 4 + y * 2 + c as u32 * 30
                    };
                    data.push(v as u8);
                }
            }
        }
        Image::new(w, h, layout, data).expect("valid test image")
    }

    /// Keeps the input as raw samples, with a two-byte header and no layout (like a container
    /// that cannot record it), and reports a made-up model size.
    struct Raw;
    impl BenchCodec for Raw {
        fn name(&self) -> String {
            "raw".into()
        }
        fn encode(&self, img: &Image) -> Result<Vec<u8>> {
            let mut v = vec![img.width() as u8, img.height() as u8];
            v.extend(restore_layout(img.clone(), Rgba)?.into_data());
            Ok(v)
        }
        fn decode(&self, b: &[u8]) -> Result<Image> {
            Image::new(b[0] as u32, b[1] as u32, Rgba, b[2..].to_vec())
        }
        fn model_bits(&self, img: &Image) -> Option<f64> {
            Some(img.samples() as f64 * 7.0)
        }
    }

    /// Loses the lowest bit of the first sample.
    struct Lossy;
    impl BenchCodec for Lossy {
        fn name(&self) -> String {
            "lossy".into()
        }
        fn encode(&self, img: &Image) -> Result<Vec<u8>> {
            Ok(img.data().to_vec())
        }
        fn decode(&self, b: &[u8]) -> Result<Image> {
            let mut d = b.to_vec();
            d[0] ^= 1;
            Image::new(d.len() as u32, 1, Gray, d)
        }
    }

    #[test]
    fn restore_layout_is_exact() {
        let gray = smooth(4, 3, Gray);
        let as_rgba = restore_layout(gray.clone(), Rgba).expect("widen");
        assert_eq!(restore_layout(as_rgba.clone(), Gray).expect("narrow"), gray);
        assert_eq!(
            restore_layout(as_rgba, GrayAlpha).expect("narrow").layout(),
            GrayAlpha
        );
        assert!(
            restore_layout(smooth(4, 3, Rgb), Gray).is_err(),
            "colour must not become gray"
        );
        assert!(
            restore_layout(smooth(4, 3, Rgba), Rgb).is_err(),
            "transparency must not be dropped"
        );
        let rgb = smooth(4, 3, Rgb);
        assert_eq!(
            restore_layout(restore_layout(rgb.clone(), Rgba).expect("widen"), Rgb).expect("narrow"),
            rgb
        );
    }

    #[test]
    fn report_figures_follow_from_bytes() {
        let images: Vec<BenchImage> = [(3, 2, Rgb), (5, 1, Gray), (2, 2, GrayAlpha)]
            .into_iter()
            .enumerate()
            .map(|(i, (w, h, l))| BenchImage {
                name: format!("img,{i}"),
                image: noisy(w, h, l, i as u32),
            })
            .collect();
        let codecs: Vec<Box<dyn BenchCodec>> = vec![Box::new(Raw)];
        let report = run_bench(&images, &codecs, false).expect("bench");
        assert_eq!(report.rows.len(), 3);
        for (row, item) in report.rows.iter().zip(&images) {
            assert_eq!(row.samples, item.image.samples());
            assert_eq!(row.bytes, 2 + 4 * item.image.pixels());
            assert!((row.bpsp - 8.0 * row.bytes as f64 / row.samples as f64).abs() < 1e-12);
            assert!(row.verified);
        }
        let s = &report.summaries[0];
        let bytes: usize = report.rows.iter().map(|r| r.bytes).sum();
        let samples: usize = images.iter().map(|i| i.image.samples()).sum();
        assert_eq!(
            (s.total_bytes, s.total_samples),
            (bytes as u64, samples as u64)
        );
        assert!((s.bpsp - 8.0 * bytes as f64 / samples as f64).abs() < 1e-12);
        let mean: f64 = report.rows.iter().map(|r| r.bpsp).sum::<f64>() / 3.0;
        assert!((s.mean_image_bpsp - mean).abs() < 1e-12);
        assert!((s.model_bpsp.expect("model bits") - 7.0).abs() < 1e-12);
        assert_eq!(s.verified, 3);

        let md = report.to_markdown();
        assert!(md.contains("| raw |"), "{md}");
        let csv = report.to_csv();
        assert_eq!(csv.lines().count(), 4);
        assert!(csv.contains("\"img,0\""), "{csv}");
        let json: serde_json::Value =
            serde_json::from_str(&report.to_json().expect("json")).expect("valid json");
        assert_eq!(json["summaries"][0]["total_bytes"], bytes as u64);

        let sequential = run_bench_with(
            &images,
            &codecs,
            BenchOptions {
                parallel: false,
                progress: false,
            },
        )
        .expect("bench");
        assert_eq!(sequential.summaries[0].total_bytes, s.total_bytes);
    }

    #[test]
    fn a_lossy_codec_is_a_hard_error() {
        let images = vec![BenchImage {
            name: "row".into(),
            image: noisy(6, 1, Gray, 1),
        }];
        let codecs: Vec<Box<dyn BenchCodec>> = vec![Box::new(Lossy)];
        let err = run_bench(&images, &codecs, false)
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("lossy") && err.contains("row"), "{err}");
    }
}
