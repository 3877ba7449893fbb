//! Classical lossless codecs the learned codecs are compared with: PNG, oxipng, WebP lossless
//! and JPEG XL, each at its strongest setting and each writing one complete file per image, so
//! that the sizes are what a user would get from the real tools.
//!
//! Layouts: PNG and oxipng record gray, gray+alpha, RGB and RGBA natively (oxipng may reduce the
//! colour type, e.g. an RGB image that is all gray becomes a gray PNG); WebP only stores RGB(A),
//! so gray is replicated into RGB; JPEG XL keeps what the PNG it is given says. In every case
//! [`BenchCodec::decode`] returns what the file holds, and the benchmark restores the input's
//! layout exactly with [`BenchCodec::decode_as`] (see there for why that is fair).

use std::ffi::c_void;
use std::mem::MaybeUninit;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use libwebp_sys as webp;

use super::BenchCodec;
use crate::corpus::{decode_image_bytes, encode_png, read_image_file};
use crate::error::{Error, Result};
use crate::image::{ChannelLayout, Image};

/// The classical codecs, in the order they appear in tables, plus notes about codecs that
/// could not be used on this machine (JPEG XL needs the `cjxl`/`djxl` tools).
pub fn classical_codecs() -> (Vec<Box<dyn BenchCodec>>, Vec<String>) {
    let mut codecs: Vec<Box<dyn BenchCodec>> =
        vec![Box::new(Png), Box::new(Oxipng), Box::new(WebpLossless)];
    let mut notes = Vec::new();
    if JpegXl::available() {
        codecs.push(Box::new(JpegXl::new()));
    } else {
        notes.push(
            "JPEG XL skipped: the cjxl and djxl tools (libjxl-tools) were not found or did not run"
                .to_string(),
        );
    }
    (codecs, notes)
}

/// PNG as a good single-pass PNG writer makes it: the colour type of the input (no reductions),
/// libpng's adaptive "minimum sum" row filter, and a strong DEFLATE (libdeflate at level 12,
/// run through oxipng with everything else switched off).
///
/// Why not the `png` crate at its maximum level: the reference figures (Pillow with
/// `optimize=True`: zlib level 9 with the `Z_FILTERED` strategy) are 6% smaller on photographs
/// than zlib-style level 9 with the default strategy, which is all the `png` crate (flate2 /
/// miniz_oxide) can do; a PNG baseline that weak would flatter every other codec. Measured on
/// the shared data: 4.28 bpsp on `photos/test` (Pillow 4.32, `png` crate level 9 4.58) and 5.81
/// on the CIFAR-10 test batch (Pillow 5.86, `png` crate 5.91).
#[derive(Clone, Copy, Debug, Default)]
pub struct Png;

impl Png {
    /// The oxipng settings that make a plain PNG: one filter heuristic, no colour type, bit depth
    /// or palette changes (so the file keeps the input's layout), maximum libdeflate level.
    fn options() -> oxipng::Options {
        let mut o = oxipng::Options::from_preset(2);
        o.filter = [oxipng::RowFilter::MinSum].into_iter().collect();
        o.deflate = oxipng::Deflaters::Libdeflater { compression: 12 };
        o.fast_evaluation = false;
        o.bit_depth_reduction = false;
        o.color_type_reduction = false;
        o.palette_reduction = false;
        o.grayscale_reduction = false;
        o.interlace = Some(oxipng::Interlacing::None);
        // Always take the recompressed result, whether or not it beats the fast input PNG.
        o.force = true;
        o
    }
}

impl BenchCodec for Png {
    fn name(&self) -> String {
        "png".into()
    }
    fn encode(&self, img: &Image) -> Result<Vec<u8>> {
        oxipng::optimize_from_memory(&encode_png(img)?, &Png::options())
            .map_err(|e| Error::ImageFile(format!("PNG (oxipng recompression): {e}")))
    }
    fn decode(&self, bytes: &[u8]) -> Result<Image> {
        decode_image_bytes(bytes)
    }
}

/// oxipng at its strongest preset (`-o max`, i.e. preset 6: all filter strategies, colour type
/// and bit depth reductions, libdeflate at its highest level; no Zopfli), applied to the PNG of
/// [`Png`]. oxipng keeps its input when it cannot improve on it, so this is never larger than
/// [`Png`]. Metadata is irrelevant: the input PNG has none.
#[derive(Clone, Copy, Debug, Default)]
pub struct Oxipng;

impl BenchCodec for Oxipng {
    fn name(&self) -> String {
        "oxipng".into()
    }
    fn encode(&self, img: &Image) -> Result<Vec<u8>> {
        let png = Png.encode(img)?;
        oxipng::optimize_from_memory(&png, &oxipng::Options::max_compression())
            .map_err(|e| Error::ImageFile(format!("oxipng: {e}")))
    }
    fn decode(&self, bytes: &[u8]) -> Result<Image> {
        decode_image_bytes(bytes)
    }
}

/// WebP lossless through libwebp at its maximum effort: `WebPConfigLosslessPreset(9)` (method 6,
/// quality 100, the same as `cwebp -lossless -z 9`) with `exact` set so the colour of fully
/// transparent pixels is kept (libwebp would otherwise zero it, which is lossy for RGBA).
///
/// WebP stores RGB or RGBA only: gray and gray+alpha are replicated into RGB before encoding.
/// [`BenchCodec::decode`] returns RGBA when the file says it has alpha, RGB otherwise; an RGBA
/// input that is fully opaque therefore decodes as RGB, and the benchmark restores the original
/// layout through [`BenchCodec::decode_as`].
#[derive(Clone, Copy, Debug, Default)]
pub struct WebpLossless;

/// Frees a `WebPPicture`'s buffers when dropped, on every path out of the encoder.
struct PictureGuard(webp::WebPPicture);
impl Drop for PictureGuard {
    fn drop(&mut self) {
        // SAFETY: the picture was initialised by WebPPictureInitInternal; freeing an
        // initialised picture with or without buffers is allowed.
        unsafe { webp::WebPPictureFree(&mut self.0) }
    }
}

/// Frees a `WebPMemoryWriter`'s buffer when dropped.
struct WriterGuard(webp::WebPMemoryWriter);
impl Drop for WriterGuard {
    fn drop(&mut self) {
        // SAFETY: the writer was initialised by WebPMemoryWriterInit.
        unsafe { webp::WebPMemoryWriterClear(&mut self.0) }
    }
}

/// Frees a buffer returned by a libwebp decoding function when dropped.
struct WebpBuffer(*mut u8);
impl Drop for WebpBuffer {
    fn drop(&mut self) {
        // SAFETY: the pointer came from libwebp's allocator (or is null, which WebPFree accepts).
        unsafe { webp::WebPFree(self.0.cast::<c_void>()) }
    }
}

impl BenchCodec for WebpLossless {
    fn name(&self) -> String {
        "webp".into()
    }

    fn encode(&self, img: &Image) -> Result<Vec<u8>> {
        let max = webp::WEBP_MAX_DIMENSION;
        if img.width() > max || img.height() > max {
            return Err(Error::Unsupported(format!(
                "WebP images are at most {max}x{max} pixels, this one is {}x{}",
                img.width(),
                img.height()
            )));
        }
        // WebP has no gray mode: widen to RGB(A), which is exact.
        let wide_layout = if img.layout().has_alpha() {
            ChannelLayout::Rgba
        } else {
            ChannelLayout::Rgb
        };
        let wide = super::restore_layout(img.clone(), wide_layout)?;
        let (w, h) = (img.width() as i32, img.height() as i32);
        let fail = |what: &str| Error::ImageFile(format!("libwebp: {what}"));

        // SAFETY: every libwebp struct is initialised by its libwebp init function before use;
        // the picture imports (copies) the pixels from `wide`, which outlives the calls; the
        // writer's buffer is only read after WebPEncode returns, while the guard still owns it.
        unsafe {
            let mut config = MaybeUninit::<webp::WebPConfig>::uninit();
            if webp::WebPConfigInitInternal(
                config.as_mut_ptr(),
                webp::WebPPreset::WEBP_PRESET_DEFAULT,
                75.0,
                webp::WEBP_ENCODER_ABI_VERSION as i32,
            ) == 0
            {
                return Err(fail("config init (library version mismatch)"));
            }
            let mut config = config.assume_init();
            if webp::WebPConfigLosslessPreset(&mut config, 9) == 0 {
                return Err(fail("lossless preset 9"));
            }
            config.exact = 1;
            if webp::WebPValidateConfig(&config) == 0 {
                return Err(fail("invalid config"));
            }

            let mut picture = MaybeUninit::<webp::WebPPicture>::uninit();
            if webp::WebPPictureInitInternal(
                picture.as_mut_ptr(),
                webp::WEBP_ENCODER_ABI_VERSION as i32,
            ) == 0
            {
                return Err(fail("picture init (library version mismatch)"));
            }
            let mut picture = PictureGuard(picture.assume_init());
            picture.0.use_argb = 1;
            picture.0.width = w;
            picture.0.height = h;
            let imported = match wide_layout {
                ChannelLayout::Rgba => {
                    webp::WebPPictureImportRGBA(&mut picture.0, wide.data().as_ptr(), w * 4)
                }
                _ => webp::WebPPictureImportRGB(&mut picture.0, wide.data().as_ptr(), w * 3),
            };
            if imported == 0 {
                return Err(fail("importing the pixels (out of memory?)"));
            }

            let mut writer = MaybeUninit::<webp::WebPMemoryWriter>::uninit();
            webp::WebPMemoryWriterInit(writer.as_mut_ptr());
            let mut writer = WriterGuard(writer.assume_init());
            picture.0.writer = Some(webp::WebPMemoryWrite);
            picture.0.custom_ptr = (&mut writer.0 as *mut webp::WebPMemoryWriter).cast::<c_void>();
            if webp::WebPEncode(&config, &mut picture.0) == 0 {
                return Err(fail(&format!(
                    "encoding failed ({:?})",
                    picture.0.error_code
                )));
            }
            if writer.0.mem.is_null() {
                return Err(fail("encoder produced no output"));
            }
            Ok(std::slice::from_raw_parts(writer.0.mem, writer.0.size).to_vec())
        }
    }

    fn decode(&self, bytes: &[u8]) -> Result<Image> {
        let fail = |what: &str| Error::ImageFile(format!("WebP decoding: {what}"));
        // SAFETY: libwebp reads at most `bytes.len()` bytes; a non-null result buffer holds
        // width * height * channels bytes and is freed by the guard after copying.
        unsafe {
            let mut features = MaybeUninit::<webp::WebPBitstreamFeatures>::zeroed();
            let status = webp::WebPGetFeatures(bytes.as_ptr(), bytes.len(), features.as_mut_ptr());
            if status != webp::VP8StatusCode::VP8_STATUS_OK {
                return Err(fail(&format!("{status:?}")));
            }
            let features = features.assume_init();
            let layout = if features.has_alpha != 0 {
                ChannelLayout::Rgba
            } else {
                ChannelLayout::Rgb
            };
            let (mut w, mut h) = (0i32, 0i32);
            let buffer = WebpBuffer(match layout {
                ChannelLayout::Rgba => {
                    webp::WebPDecodeRGBA(bytes.as_ptr(), bytes.len(), &mut w, &mut h)
                }
                _ => webp::WebPDecodeRGB(bytes.as_ptr(), bytes.len(), &mut w, &mut h),
            });
            if buffer.0.is_null() || w <= 0 || h <= 0 {
                return Err(fail("invalid or truncated file"));
            }
            let len = w as usize * h as usize * layout.channels();
            let data = std::slice::from_raw_parts(buffer.0, len).to_vec();
            Image::new(w as u32, h as u32, layout, data)
        }
    }
}

/// JPEG XL lossless through the reference tools: `cjxl -d 0 -e 9` (mathematically lossless,
/// maximum effort) and `djxl`, exchanging files in a temporary folder; the input is written as
/// PNG, which records the layout, and the decoded PNG is read back with the `image` crate.
///
/// The tools are external programs (Debian `libjxl-tools`); check [`JpegXl::available`] first.
///
/// libjxl 0.7 (Debian 12) aborts on some tiny images at efforts 8 and 9 (`JXL_DASSERT: n <= 255`
/// in `enc_ans.cc`, seen on 1x1 images). Rather than lose a whole benchmark run to one such
/// image, a failed effort-9 encode is retried at the default effort 7, which is still lossless;
/// how often that happened is reported through [`BenchCodec::notes`].
#[derive(Debug, Default)]
pub struct JpegXl {
    fallbacks: AtomicUsize,
}

impl JpegXl {
    pub fn new() -> Self {
        JpegXl::default()
    }

    /// True when both `cjxl` and `djxl` can be run.
    pub fn available() -> bool {
        ["cjxl", "djxl"].iter().all(|tool| {
            Command::new(tool)
                .arg("--version")
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        })
    }

    /// Runs `tool` with `args`, turning a failure to start or a non-zero exit into an error that
    /// carries the tool's own message.
    fn run(tool: &str, args: &[&Path], extra: &[&str]) -> Result<()> {
        let output = Command::new(tool)
            .args(args)
            .args(extra)
            .output()
            .map_err(|e| Error::io(tool, e))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(Error::ImageFile(format!(
                "{tool} failed ({}): {}",
                output.status,
                stderr.trim()
            )));
        }
        Ok(())
    }
}

impl BenchCodec for JpegXl {
    fn name(&self) -> String {
        "jpegxl".into()
    }

    fn encode(&self, img: &Image) -> Result<Vec<u8>> {
        let dir = tempfile::tempdir().map_err(Error::IoOther)?;
        let (input, output) = (dir.path().join("in.png"), dir.path().join("out.jxl"));
        std::fs::write(&input, encode_png(img)?).map_err(|e| Error::io(&input, e))?;
        // One thread per call: the benchmark already runs images in parallel.
        let cjxl = |effort: &str| {
            JpegXl::run(
                "cjxl",
                &[&input, &output],
                &["-d", "0", "-e", effort, "--num_threads=1", "--quiet"],
            )
        };
        if let Err(first) = cjxl("9") {
            cjxl("7").map_err(|_| first)?;
            self.fallbacks.fetch_add(1, Ordering::Relaxed);
        }
        std::fs::read(&output).map_err(|e| Error::io(&output, e))
    }

    fn decode(&self, bytes: &[u8]) -> Result<Image> {
        let dir = tempfile::tempdir().map_err(Error::IoOther)?;
        let (input, output) = (dir.path().join("in.jxl"), dir.path().join("out.png"));
        std::fs::write(&input, bytes).map_err(|e| Error::io(&input, e))?;
        JpegXl::run("djxl", &[&input, &output], &["--num_threads=1", "--quiet"])?;
        read_image_file(&output)
    }

    fn notes(&self) -> Vec<String> {
        match self.fallbacks.load(Ordering::Relaxed) {
            0 => Vec::new(),
            n => vec![format!(
                "jpegxl: cjxl -e 9 failed on {n} image(s), which were encoded at effort 7 instead"
            )],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::tests::{noisy, smooth};
    use crate::bench::{run_bench, BenchImage};
    use crate::image::ChannelLayout::*;

    const LAYOUTS: [ChannelLayout; 4] = [Gray, GrayAlpha, Rgb, Rgba];
    const SIZES: [(u32, u32); 4] = [(1, 1), (1, 7), (5, 3), (32, 32)];

    fn round_trips(codec: &dyn BenchCodec) {
        for layout in LAYOUTS {
            for (w, h) in SIZES {
                for img in [noisy(w, h, layout, w * 31 + h), smooth(w, h, layout)] {
                    let bytes = codec
                        .encode(&img)
                        .unwrap_or_else(|e| panic!("{} encode {img:?}: {e}", codec.name()));
                    let back = codec
                        .decode_as(&bytes, layout)
                        .unwrap_or_else(|e| panic!("{} decode {img:?}: {e}", codec.name()));
                    assert_eq!(back, img, "{} is not lossless on {img:?}", codec.name());
                }
            }
        }
    }

    #[test]
    fn png_round_trips() {
        round_trips(&Png);
        // PNG records the layout itself.
        let img = smooth(5, 3, GrayAlpha);
        assert_eq!(
            Png.decode(&Png.encode(&img).expect("encode"))
                .expect("decode"),
            img
        );
    }

    #[test]
    fn oxipng_round_trips() {
        round_trips(&Oxipng);
        let img = noisy(32, 32, Rgb, 3);
        assert!(Oxipng.encode(&img).expect("oxipng").len() <= Png.encode(&img).expect("png").len());
    }

    #[test]
    fn webp_round_trips() {
        round_trips(&WebpLossless);
        // Colour under fully transparent pixels must survive (config.exact).
        let mut data = noisy(8, 8, Rgba, 1).into_data();
        data.iter_mut().skip(3).step_by(4).for_each(|a| *a = 0);
        let img = Image::new(8, 8, Rgba, data).expect("image");
        assert_eq!(
            WebpLossless
                .decode_as(&WebpLossless.encode(&img).expect("encode"), Rgba)
                .expect("decode"),
            img
        );
        assert!(WebpLossless.decode(b"RIFF\0\0\0\0WEBPgarbage").is_err());
        assert!(WebpLossless.decode(&[]).is_err());
    }

    #[test]
    fn jpegxl_round_trips() {
        if !JpegXl::available() {
            eprintln!("skipping: cjxl/djxl not found (install libjxl-tools)");
            return;
        }
        let jxl = JpegXl::new();
        round_trips(&jxl);
        eprintln!("{:?}", jxl.notes());
        assert!(jxl.decode(b"not a jxl file").is_err());
    }

    #[test]
    fn bench_report_of_three_images() {
        let images: Vec<BenchImage> = vec![
            BenchImage {
                name: "gray".into(),
                image: smooth(16, 9, Gray),
            },
            BenchImage {
                name: "rgb".into(),
                image: noisy(7, 5, Rgb, 2),
            },
            BenchImage {
                name: "rgba".into(),
                image: smooth(8, 8, Rgba),
            },
        ];
        let (mut codecs, notes) = classical_codecs();
        if !notes.is_empty() {
            eprintln!("{notes:?}");
        }
        // cjxl at effort 9 is slow in debug test runs and covered above.
        codecs.retain(|c| c.name() != "jpegxl");
        let report = run_bench(&images, &codecs, false).expect("bench");
        assert_eq!(report.rows.len(), images.len() * codecs.len());
        for row in &report.rows {
            assert!((row.bpsp - 8.0 * row.bytes as f64 / row.samples as f64).abs() < 1e-12);
        }
        for s in &report.summaries {
            assert_eq!(s.verified, 3);
            assert!((s.bpsp - 8.0 * s.total_bytes as f64 / s.total_samples as f64).abs() < 1e-12);
            assert_eq!(s.total_samples, (16 * 9 + 7 * 5 * 3 + 8 * 8 * 4) as u64);
        }
    }
}
