//! Data loaders: the shared data folder, CIFAR-10 binary batches, image files and folders,
//! and random patches for training.
//!
//! Everything here is lossless by construction: 8-bit images map one to one onto [`Image`]
//! layouts, and anything that would need a conversion (16-bit, float) is refused rather than
//! quietly quantised, because a lossless benchmark on silently altered pixels is meaningless.

use std::ffi::OsStr;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ExtendedColorType, ImageReader};
use rand::Rng;

use crate::error::{Error, Result};
use crate::image::{ChannelLayout, Image};

/// Environment variable that points at the shared data folder (overrides the default location).
pub const DATA_ENV: &str = "LLIF_DATA";

/// Side of a CIFAR-10 image.
pub const CIFAR_SIDE: u32 = 32;
/// Bytes per CIFAR-10 record: one label byte, then the red, green and blue planes.
pub const CIFAR_RECORD_BYTES: usize = 1 + 3 * (CIFAR_SIDE as usize * CIFAR_SIDE as usize);

/// The shared data folder (see its `README.md`), which is kept outside the repository.
///
/// Order of precedence:
/// 1. `$LLIF_DATA` when set and non-empty. An explicit setting wins: if it names a folder that
///    does not exist the result is `None` rather than a silent fall-back to another location,
///    so a typo cannot make a benchmark run on different data than intended.
/// 2. `<crate root>/../shared/data`.
/// 3. `./../shared/data` relative to the current directory (for binaries moved elsewhere).
///
/// Returns `None` when no candidate folder exists; callers then skip data-dependent work.
pub fn data_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(DATA_ENV).filter(|v| !v.is_empty()) {
        let dir = PathBuf::from(dir);
        return dir.is_dir().then_some(dir);
    }
    let crate_relative = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("shared")
        .join("data");
    let cwd_relative = Path::new(".").join("..").join("shared").join("data");
    [crate_relative, cwd_relative]
        .into_iter()
        .find(|p| p.is_dir())
}

/// One CIFAR-10 record.
#[derive(Clone, Debug)]
pub struct CifarImage {
    /// Class label, 0..=9 in the official data.
    pub label: u8,
    /// Position of the record in its batch file (0-based).
    pub index: usize,
    /// The 32x32 RGB image.
    pub image: Image,
}

/// Reads a CIFAR-10 batch in the official binary format (`data_batch_*.bin`, `test_batch.bin`).
///
/// Each record is 3,073 bytes: the label, then 1,024 red, 1,024 green and 1,024 blue samples,
/// each plane row-major; they are interleaved into RGB images. `limit` caps the number of
/// records read (the file is still checked to be a whole number of records).
pub fn read_cifar(path: &Path, limit: Option<usize>) -> Result<Vec<CifarImage>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_cifar(&bytes, limit).map_err(|e| match e {
        Error::InvalidImage(msg) => Error::ImageFile(format!("{}: {msg}", path.display())),
        other => other,
    })
}

/// Parses CIFAR-10 records from memory; see [`read_cifar`].
pub fn parse_cifar(bytes: &[u8], limit: Option<usize>) -> Result<Vec<CifarImage>> {
    if !bytes.len().is_multiple_of(CIFAR_RECORD_BYTES) {
        return Err(Error::InvalidImage(format!(
            "not a CIFAR-10 binary batch: {} bytes is not a multiple of the {CIFAR_RECORD_BYTES}-byte record",
            bytes.len()
        )));
    }
    let records = bytes.len() / CIFAR_RECORD_BYTES;
    let count = limit.map_or(records, |l| l.min(records));
    let plane_len = (CIFAR_SIDE * CIFAR_SIDE) as usize;
    bytes
        .chunks_exact(CIFAR_RECORD_BYTES)
        .take(count)
        .enumerate()
        .map(|(index, record)| {
            let label = record[0];
            let planes: Vec<Vec<u8>> = record[1..]
                .chunks_exact(plane_len)
                .map(<[u8]>::to_vec)
                .collect();
            let image = Image::from_planes(CIFAR_SIDE, CIFAR_SIDE, ChannelLayout::Rgb, &planes)?;
            Ok(CifarImage {
                label,
                index,
                image,
            })
        })
        .collect()
}

/// Reads an image file through the `image` crate (format guessed from the content, then the
/// extension). Only 8-bit gray, gray+alpha, RGB and RGBA are accepted; see [`dynamic_to_image`].
pub fn read_image_file(path: &Path) -> Result<Image> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_image_bytes(&bytes).map_err(|e| match e {
        Error::Unsupported(msg) => Error::Unsupported(format!("{}: {msg}", path.display())),
        Error::ImageFile(msg) => Error::ImageFile(format!("{}: {msg}", path.display())),
        other => other,
    })
}

/// Refuses inputs whose pixels are the output of a lossy decoder: JPEG and lossy WebP.
///
/// llif reproduces the samples it is given; for a lossy file those are one decoder's
/// approximation (decoders differ in IDCT, upsampling and colour conversion), so "lossless"
/// would promise something the user cannot check against the file they have.
fn refuse_lossy(bytes: &[u8]) -> Result<()> {
    let why =
        "llif stores exact pixels, and a lossy file's pixels are one decoder's approximation \
               of it; convert it to PNG first if those are the pixels you want to keep";
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Err(Error::Unsupported(format!("JPEG input is refused: {why}")));
    }
    if bytes.len() >= 16 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        // Chunks after the 12-byte RIFF header: fourcc, u32 LE size, data padded to even.
        let mut pos = 12usize;
        while pos + 8 <= bytes.len() {
            let fourcc = &bytes[pos..pos + 4];
            if fourcc == b"VP8 " {
                return Err(Error::Unsupported(format!(
                    "lossy WebP input is refused: {why}"
                )));
            }
            let len = u32::from_le_bytes([
                bytes[pos + 4],
                bytes[pos + 5],
                bytes[pos + 6],
                bytes[pos + 7],
            ]);
            pos = pos
                .saturating_add(8)
                .saturating_add(len as usize + (len as usize & 1));
        }
    }
    Ok(())
}

/// Decodes an image held in memory (e.g. read from stdin); the format is guessed from the
/// content. Lossless formats only (PNG, PNM, BMP, TIFF, QOI, lossless WebP, GIF); JPEG and lossy
/// WebP are refused ([`Error::Unsupported`]), and so are animated GIFs (only their first frame
/// would be kept).
pub fn decode_image_bytes(bytes: &[u8]) -> Result<Image> {
    decode_image_bytes_within(bytes, &crate::Limits::none())
}

/// [`decode_image_bytes`], refusing images over `limits` before their pixels are allocated (the
/// `image` crate checks the dimensions in the file's header against them).
pub fn decode_image_bytes_within(bytes: &[u8], limits: &crate::Limits) -> Result<Image> {
    refuse_lossy(bytes)?;
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(Error::IoOther)?;
    let mut image_limits = image::Limits::default();
    image_limits.max_image_width = Some(limits.max_side);
    image_limits.max_image_height = Some(limits.max_side);
    // 4 samples a pixel at most, plus the decoder's own buffers.
    image_limits.max_alloc = Some(limits.max_pixels.saturating_mul(8).max(1 << 20));
    reader.limits(image_limits);
    let format = reader
        .format()
        .ok_or_else(|| Error::ImageFile("unrecognised image format".into()))?;
    if format == image::ImageFormat::Gif && gif_frames(bytes)? > 1 {
        return Err(Error::Unsupported(
            "animated GIF input is refused: llif codes one image, and the other frames would be lost".into(),
        ));
    }
    let decoded = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(l) => Error::LimitExceeded(format!("input image: {l}")),
        e => Error::ImageFile(e.to_string()),
    })?;
    let img = dynamic_to_image(decoded)?;
    limits.check(img.width(), img.height())?;
    Ok(img)
}

/// Number of frames of a GIF, counting at most 2.
fn gif_frames(bytes: &[u8]) -> Result<usize> {
    use image::AnimationDecoder;
    let decoder = image::codecs::gif::GifDecoder::new(Cursor::new(bytes))
        .map_err(|e| Error::ImageFile(e.to_string()))?;
    Ok(decoder.into_frames().take(2).count())
}

/// Maps a decoded image onto an [`Image`] without changing any sample.
///
/// 16-bit and floating-point images are refused with [`Error::Unsupported`]: reducing them to
/// 8 bits would be lossy, and llif only promises to reproduce what it was given.
pub fn dynamic_to_image(img: DynamicImage) -> Result<Image> {
    let (w, h) = (img.width(), img.height());
    match img {
        DynamicImage::ImageLuma8(b) => Image::new(w, h, ChannelLayout::Gray, b.into_raw()),
        DynamicImage::ImageLumaA8(b) => Image::new(w, h, ChannelLayout::GrayAlpha, b.into_raw()),
        DynamicImage::ImageRgb8(b) => Image::new(w, h, ChannelLayout::Rgb, b.into_raw()),
        DynamicImage::ImageRgba8(b) => Image::new(w, h, ChannelLayout::Rgba, b.into_raw()),
        other => Err(Error::Unsupported(format!(
            "{:?} images are not supported: only 8-bit gray, gray+alpha, RGB and RGBA can be coded losslessly",
            other.color()
        ))),
    }
}

/// The `png` colour type that stores `layout` without conversion.
fn png_color_type(layout: ChannelLayout) -> png::ColorType {
    match layout {
        ChannelLayout::Gray => png::ColorType::Grayscale,
        ChannelLayout::GrayAlpha => png::ColorType::GrayscaleAlpha,
        ChannelLayout::Rgb => png::ColorType::Rgb,
        ChannelLayout::Rgba => png::ColorType::Rgba,
    }
}

/// Encodes `img` as a PNG quickly (the `png` crate's fast settings): for writing decoded output
/// and intermediate files, not for size comparisons (the benchmark's PNG baselines recompress
/// it at maximum effort).
pub fn encode_png(img: &Image) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, img.width(), img.height());
        encoder.set_color(png_color_type(img.layout()));
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_deflate_compression(png::DeflateCompression::FdeflateUltraFast);
        encoder.set_filter(png::Filter::Adaptive);
        let png_err = |e: png::EncodingError| Error::ImageFile(format!("PNG encoding: {e}"));
        let mut writer = encoder.write_header().map_err(png_err)?;
        writer.write_image_data(img.data()).map_err(png_err)?;
        writer.finish().map_err(png_err)?;
    }
    Ok(out)
}

/// Lower-case extension of `path`, if any.
fn extension(path: &Path) -> Option<String> {
    path.extension()
        .and_then(OsStr::to_str)
        .map(str::to_ascii_lowercase)
}

/// Writes `img` to `path` in the format its extension names: `.png` (also used when there is no
/// extension), or `.ppm` / `.pgm` / `.pnm` (binary PNM, which has no alpha channel: `.ppm` needs
/// RGB, `.pgm` gray, `.pnm` either). Any other extension is refused rather than written as PNG
/// under a misleading name.
pub fn write_image_file(img: &Image, path: &Path) -> Result<()> {
    let bytes = encode_for_path(img, path)?;
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}

/// The bytes [`write_image_file`] would write to `path`, in memory (for writers that place the
/// file themselves, e.g. through a temporary file beside it).
pub fn encode_for_path(img: &Image, path: &Path) -> Result<Vec<u8>> {
    match extension(path).as_deref() {
        None | Some("png") => encode_png(img),
        Some(ext @ ("ppm" | "pgm" | "pnm")) => encode_pnm(img, ext),
        Some(ext) => Err(Error::Unsupported(format!(
            "{}: cannot write .{ext} files (use .png, .ppm, .pgm or .pnm)",
            path.display()
        ))),
    }
}

/// Binary PNM (P5 or P6) for the extension `ext`; refuses layouts the subtype cannot hold.
fn encode_pnm(img: &Image, ext: &str) -> Result<Vec<u8>> {
    use image::codecs::pnm::{PnmEncoder, PnmSubtype, SampleEncoding};
    let (subtype, color) = match (ext, img.layout()) {
        ("pgm" | "pnm", ChannelLayout::Gray) => (PnmSubtype::Graymap(SampleEncoding::Binary), ExtendedColorType::L8),
        ("ppm" | "pnm", ChannelLayout::Rgb) => (PnmSubtype::Pixmap(SampleEncoding::Binary), ExtendedColorType::Rgb8),
        (ext, layout) => {
            return Err(Error::Unsupported(format!(
                "a {layout} image cannot be stored losslessly as .{ext} (.pgm holds gray, .ppm RGB, neither alpha)"
            )))
        }
    };
    let mut out = Vec::new();
    PnmEncoder::new(&mut out)
        .with_subtype(subtype)
        .encode(img.data(), img.width(), img.height(), color)
        .map_err(|e| Error::ImageFile(format!("PNM encoding: {e}")))?;
    Ok(out)
}

/// Reads every `.png`, `.ppm`, `.pgm` and `.pnm` file directly in `dir` (not in sub-folders),
/// sorted by file name so that benchmark tables are reproducible. Names are the file stems.
pub fn read_image_folder(dir: &Path) -> Result<Vec<(String, Image)>> {
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        let wanted = matches!(
            extension(&path).as_deref(),
            Some("png" | "ppm" | "pgm" | "pnm")
        );
        if wanted && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    paths
        .into_iter()
        .map(|path| {
            let name = path
                .file_stem()
                .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
            Ok((name, read_image_file(&path)?))
        })
        .collect()
}

/// Draws random square crops from a set of images (training patches).
///
/// Images are chosen uniformly (not by area), so small and large images are seen equally often.
#[derive(Clone, Debug)]
pub struct PatchSampler {
    images: Vec<Image>,
}

impl PatchSampler {
    /// Errors if `images` is empty, so that [`PatchSampler::sample`] can always return a patch.
    pub fn new(images: Vec<Image>) -> Result<Self> {
        if images.is_empty() {
            return Err(Error::Usage(
                "a patch sampler needs at least one image".into(),
            ));
        }
        Ok(PatchSampler { images })
    }

    /// The images patches are drawn from.
    pub fn images(&self) -> &[Image] {
        &self.images
    }

    /// A random `size`×`size` crop of a random image, in that image's layout. When the image's
    /// smaller side is below `size`, the crop is a square of that smaller side instead (a random
    /// square of the whole height or width). `size` 0 is treated as 1.
    pub fn sample(&mut self, rng: &mut impl Rng, size: u32) -> Image {
        let img = &self.images[rng.gen_range(0..self.images.len())];
        let side = size.max(1).min(img.width()).min(img.height());
        let x = rng.gen_range(0..=img.width() - side);
        let y = rng.gen_range(0..=img.height() - side);
        crop(img, x, y, side, side)
    }
}

/// The `w`×`h` window of `img` whose top-left pixel is (`x`, `y`). The caller guarantees the
/// window lies inside the image and is not empty.
fn crop(img: &Image, x: u32, y: u32, w: u32, h: u32) -> Image {
    let ch = img.channels();
    let row_len = img.width() as usize * ch;
    let mut data = Vec::with_capacity(w as usize * h as usize * ch);
    for row in y as usize..(y + h) as usize {
        let start = row * row_len + x as usize * ch;
        data.extend_from_slice(&img.data()[start..start + w as usize * ch]);
    }
    Image::new(w, h, img.layout(), data)
        .expect("an in-bounds, non-empty crop has a consistent size")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn pattern(w: u32, h: u32, layout: ChannelLayout, seed: u32) -> Image {
        let n = w as usize * h as usize * layout.channels();
        let data = (0..n as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8)
            .collect();
        Image::new(w, h, layout, data).expect("valid test image")
    }

    #[test]
    fn cifar_round_trip_synthetic() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("two.bin");
        let images = [
            pattern(32, 32, ChannelLayout::Rgb, 1),
            pattern(32, 32, ChannelLayout::Rgb, 2),
        ];
        let mut bytes = Vec::new();
        for (label, img) in [7u8, 3].into_iter().zip(&images) {
            bytes.push(label);
            for c in 0..3 {
                bytes.extend(img.plane(c));
            }
        }
        assert_eq!(bytes.len(), 2 * CIFAR_RECORD_BYTES);
        std::fs::write(&path, &bytes).expect("write");

        let read = read_cifar(&path, None).expect("read");
        assert_eq!(read.len(), 2);
        assert_eq!((read[0].label, read[0].index), (7, 0));
        assert_eq!((read[1].label, read[1].index), (3, 1));
        assert_eq!(read[0].image, images[0]);
        assert_eq!(read[1].image, images[1]);
        // Red of pixel (1, 0) of record 0 is byte 1 + 1 of the file.
        assert_eq!(read[0].image.sample(1, 0, 0), bytes[2]);
        assert_eq!(read[0].image.sample(0, 1, 2), bytes[1 + 2048 + 32]);

        assert_eq!(read_cifar(&path, Some(1)).expect("read").len(), 1);
        assert_eq!(read_cifar(&path, Some(10)).expect("read").len(), 2);

        std::fs::write(&path, &bytes[..bytes.len() - 1]).expect("write");
        assert!(matches!(read_cifar(&path, None), Err(Error::ImageFile(_))));
        assert!(matches!(
            read_cifar(&dir.path().join("missing.bin"), None),
            Err(Error::Io { .. })
        ));
    }

    #[test]
    fn png_round_trip_keeps_layout() {
        for layout in [
            ChannelLayout::Gray,
            ChannelLayout::GrayAlpha,
            ChannelLayout::Rgb,
            ChannelLayout::Rgba,
        ] {
            for (w, h) in [(1, 1), (5, 3), (17, 9)] {
                let img = pattern(w, h, layout, 5);
                let png = encode_png(&img).expect("encode");
                let back = decode_image_bytes(&png).expect("decode");
                assert_eq!(back.layout(), layout);
                assert_eq!(back, img);
            }
        }
    }

    #[test]
    fn sixteen_bit_is_refused() {
        let buf =
            image::ImageBuffer::<image::Luma<u16>, _>::from_raw(2, 2, vec![0u16, 1, 2, 65535])
                .expect("buffer");
        let mut bytes = Vec::new();
        DynamicImage::ImageLuma16(buf)
            .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
            .expect("encode");
        assert!(matches!(
            decode_image_bytes(&bytes),
            Err(Error::Unsupported(_))
        ));
        assert!(matches!(
            decode_image_bytes(b"not an image"),
            Err(Error::ImageFile(_))
        ));
    }

    #[test]
    fn files_and_folders() {
        let dir = tempfile::tempdir().expect("temp dir");
        let gray = pattern(4, 3, ChannelLayout::Gray, 1);
        let rgb = pattern(3, 4, ChannelLayout::Rgb, 2);
        let rgba = pattern(2, 2, ChannelLayout::Rgba, 3);
        write_image_file(&gray, &dir.path().join("b.pgm")).expect("pgm");
        write_image_file(&rgb, &dir.path().join("a.ppm")).expect("ppm");
        write_image_file(&rgba, &dir.path().join("c.png")).expect("png");
        std::fs::write(dir.path().join("notes.txt"), "ignored").expect("txt");
        assert!(write_image_file(&rgba, &dir.path().join("d.ppm")).is_err());
        assert!(write_image_file(&rgb, &dir.path().join("e.jpg")).is_err());

        let all = read_image_folder(dir.path()).expect("folder");
        let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(all[0].1, rgb);
        assert_eq!(all[1].1, gray);
        assert_eq!(all[2].1, rgba);
    }

    #[test]
    fn patches_have_the_requested_size() {
        let mut sampler = PatchSampler::new(vec![
            pattern(40, 30, ChannelLayout::Rgb, 1),
            pattern(10, 50, ChannelLayout::GrayAlpha, 2),
        ])
        .expect("sampler");
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..50 {
            let p = sampler.sample(&mut rng, 16);
            match p.layout() {
                ChannelLayout::Rgb => assert_eq!((p.width(), p.height()), (16, 16)),
                _ => assert_eq!((p.width(), p.height()), (10, 10)),
            }
        }
        // A crop with a known position matches the source pixels.
        let src = pattern(6, 5, ChannelLayout::Rgba, 9);
        let c = crop(&src, 2, 1, 3, 2);
        assert_eq!(c.sample(0, 0, 3), src.sample(2, 1, 3));
        assert_eq!(c.sample(2, 1, 1), src.sample(4, 2, 1));
        assert!(PatchSampler::new(Vec::new()).is_err());
    }

    #[test]
    fn real_cifar_test_batch() {
        let Some(path) = data_dir()
            .map(|d| d.join("cifar10").join("test_batch.bin"))
            .filter(|p| p.is_file())
        else {
            eprintln!("skipping: cifar10/test_batch.bin not found (set {DATA_ENV} or provide ../shared/data)");
            return;
        };
        let images = read_cifar(&path, Some(500)).expect("read test batch");
        assert_eq!(images.len(), 500);
        for (i, rec) in images.iter().enumerate() {
            assert_eq!(rec.index, i);
            assert!(rec.label < 10, "record {i} has label {}", rec.label);
            assert_eq!(
                (rec.image.width(), rec.image.height(), rec.image.layout()),
                (32, 32, ChannelLayout::Rgb)
            );
        }
        // Real photographs: not constant, and all ten classes appear in 500 records.
        assert!(images
            .iter()
            .all(|r| r.image.data().iter().any(|&v| v != r.image.data()[0])));
        let mut seen = [false; 10];
        images.iter().for_each(|r| seen[r.label as usize] = true);
        assert!(seen.iter().all(|&s| s));
    }
}
