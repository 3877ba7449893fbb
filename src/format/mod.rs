//! The `.llif` container: header fields, their byte layout, and the check.
//!
#![doc = include_str!("SPEC.md")]

use crate::error::{Error, Result};
use crate::image::ChannelLayout;

pub mod archive;

/// The first two bytes of every `.llif` file.
pub const MAGIC: [u8; 2] = [0x4C, 0xF1];
/// The longest header: magic, version, codec byte, model id, two 5-byte LEB128 sides, check.
pub const MAX_HEADER_BYTES: usize = 2 + 1 + 1 + 4 + 5 + 5 + 4;

/// The format version this build writes and the newest it reads.
pub const FORMAT_VERSION: u8 = 1;

/// How the payload was produced. The numeric codes are part of the format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CodecFamily {
    /// Samples stored as they are (no model).
    Stored = 0,
    /// Autoregressive PixelCNN with a range coder.
    PixelCnn = 1,
    /// Integer discrete flow with ANS (specified with its codec; not in every build).
    Flow = 2,
    /// VAE with bits-back ANS (specified with its codec; not in every build).
    Vae = 3,
}

impl CodecFamily {
    pub fn code(self) -> u8 {
        self as u8
    }
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => CodecFamily::Stored,
            1 => CodecFamily::PixelCnn,
            2 => CodecFamily::Flow,
            3 => CodecFamily::Vae,
            _ => return None,
        })
    }
    /// Whether files of this family name a model.
    pub fn has_model(self) -> bool {
        self != CodecFamily::Stored
    }
    /// The family of a name as [`CodecFamily::name`] spells it.
    pub fn from_name(name: &str) -> Option<Self> {
        [
            CodecFamily::Stored,
            CodecFamily::PixelCnn,
            CodecFamily::Flow,
            CodecFamily::Vae,
        ]
        .into_iter()
        .find(|f| f.name() == name)
    }
    pub fn name(self) -> &'static str {
        match self {
            CodecFamily::Stored => "stored",
            CodecFamily::PixelCnn => "pixelcnn",
            CodecFamily::Flow => "flow",
            CodecFamily::Vae => "vae",
        }
    }
}

impl std::fmt::Display for CodecFamily {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Identifies a model: the first 4 bytes of the SHA-256 of its model file, little-endian.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelId(pub u32);

impl ModelId {
    /// The id of a model file's bytes.
    pub fn of_bytes(bytes: &[u8]) -> ModelId {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(bytes);
        ModelId(u32::from_le_bytes([
            digest[0], digest[1], digest[2], digest[3],
        ]))
    }
}

impl std::fmt::Display for ModelId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

impl std::str::FromStr for ModelId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        u32::from_str_radix(s, 16)
            .map(ModelId)
            .map_err(|_| Error::Usage(format!("not a model id: {s:?}")))
    }
}

/// Caller-set bounds that a reader enforces before allocating or decoding anything.
///
/// Build one from [`Limits::default`] (or [`Limits::none`]) and the `with_*` methods; the struct
/// gains fields as llif grows, so it cannot be written as a literal outside this crate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest accepted width or height.
    pub max_side: u32,
    /// Largest accepted number of pixels (width × height).
    pub max_pixels: u64,
    /// Largest working memory, in bytes, a model may need to code one image (each family
    /// estimates its own, [`crate::family::FamilyModel::working_memory`]).
    pub max_working_memory: u64,
    /// Largest number of images in one archive.
    pub max_images: u64,
    /// Largest number of pixels of all the images of one archive together.
    pub max_archive_pixels: u64,
}

impl Default for Limits {
    /// 65,535 pixels a side, 16 Mpixel (2^24) in all, 2 GiB of working memory; archives of at
    /// most 1,000,000 images and 2^28 pixels (256 Mpixel: 262,144 CIFAR-10 images, or 16 images
    /// of the largest size).
    ///
    /// The pixel budget bounds the time one file can cost: the slowest built-in model, the
    /// PixelCNN, decodes about 40,000 RGB pixels a second on the 2-core development machine (an
    /// AMD EPYC with AVX2; 75,000 on an AVX-512 one), so a file within the defaults decodes in
    /// at most about 7 minutes there (RGBA, whose alpha plane costs a third more: about 10). A
    /// larger image needs its reader to raise the limit (`--max-pixels` in the CLI).
    fn default() -> Self {
        Limits {
            max_side: 65_535,
            max_pixels: 1 << 24,
            max_working_memory: 2 << 30,
            max_images: 1_000_000,
            max_archive_pixels: 1 << 28,
        }
    }
}

impl Limits {
    /// No bounds beyond what the format can express.
    pub fn none() -> Self {
        Limits {
            max_side: u32::MAX,
            max_pixels: u64::MAX,
            max_working_memory: u64::MAX,
            max_images: u64::MAX,
            max_archive_pixels: u64::MAX,
        }
    }

    pub fn with_max_side(mut self, max_side: u32) -> Self {
        self.max_side = max_side;
        self
    }

    pub fn with_max_pixels(mut self, max_pixels: u64) -> Self {
        self.max_pixels = max_pixels;
        self
    }

    pub fn with_max_working_memory(mut self, bytes: u64) -> Self {
        self.max_working_memory = bytes;
        self
    }

    pub fn with_max_images(mut self, max_images: u64) -> Self {
        self.max_images = max_images;
        self
    }

    pub fn with_max_archive_pixels(mut self, max_pixels: u64) -> Self {
        self.max_archive_pixels = max_pixels;
        self
    }

    /// Checks the pixels of all the images of an archive together.
    pub fn check_archive_pixels(&self, pixels: u64) -> Result<()> {
        if pixels > self.max_archive_pixels {
            return Err(Error::LimitExceeded(format!(
                "the archive's images have {pixels} pixels together, over the limit of {}",
                self.max_archive_pixels
            )));
        }
        Ok(())
    }

    pub fn check(&self, width: u32, height: u32) -> Result<()> {
        if width > self.max_side || height > self.max_side {
            return Err(Error::LimitExceeded(format!(
                "{width}x{height} has a side over the limit of {}",
                self.max_side
            )));
        }
        let pixels = width as u64 * height as u64;
        if pixels > self.max_pixels {
            return Err(Error::LimitExceeded(format!(
                "{width}x{height} = {pixels} pixels, over the limit of {}",
                self.max_pixels
            )));
        }
        Ok(())
    }

    /// Checks a model's working-memory estimate (bytes).
    pub fn check_working_memory(&self, bytes: u64) -> Result<()> {
        if bytes > self.max_working_memory {
            return Err(Error::LimitExceeded(format!(
                "coding this image needs about {} MiB of working memory, over the limit of {} MiB",
                bytes >> 20,
                self.max_working_memory >> 20
            )));
        }
        Ok(())
    }

    /// Checks the number of images of an archive.
    pub fn check_images(&self, count: u64) -> Result<()> {
        if count > self.max_images {
            return Err(Error::LimitExceeded(format!(
                "{count} images, over the limit of {}",
                self.max_images
            )));
        }
        Ok(())
    }
}

/// Every field of a `.llif` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub version: u8,
    pub family: CodecFamily,
    pub layout: ChannelLayout,
    /// `None` exactly when `family` is [`CodecFamily::Stored`].
    pub model: Option<ModelId>,
    pub width: u32,
    pub height: u32,
    /// The CRC-32 check (see the spec).
    pub check: u32,
}

/// A parsed file: its header, the header bytes that precede the check, and the payload.
#[derive(Clone, Copy, Debug)]
pub struct ParsedFile<'a> {
    pub header: Header,
    /// Bytes from the magic through the height: the first part of what the check covers.
    pub checked_prefix: &'a [u8],
    pub payload: &'a [u8],
}

impl Header {
    /// Number of samples of the image the header describes (saturating; a parsed header's
    /// count always fits, [`Header::parse`] checks it).
    pub fn samples(&self) -> u64 {
        (self.width as u64 * self.height as u64).saturating_mul(self.layout.channels() as u64)
    }

    /// The largest payload a valid file with this header can have: the samples themselves for
    /// `stored`; for the PixelCNN, 4 bytes a sample plus 64 (every coded symbol has a
    /// probability of at least 2^-24, so it costs at most 24 bits and a fraction, plus the
    /// coder's final words); for the flow, 8 bytes for each sample of the image extended to
    /// multiples of 16 (the most a flow extends it), plus 64 (a latent costs at most 24 bits
    /// and an escape of 5 + 30). A reader never needs to read more than this.
    pub fn max_payload_bytes(&self) -> u64 {
        let up16 = |n: u32| (n as u64).div_ceil(16) * 16;
        match self.family {
            CodecFamily::Stored => self.samples(),
            CodecFamily::Flow => up16(self.width)
                .saturating_mul(up16(self.height))
                .saturating_mul(self.layout.channels() as u64 * 8)
                .saturating_add(64),
            _ => self.samples().saturating_mul(4).saturating_add(64),
        }
    }

    /// The header bytes from the magic through the height (everything before the check).
    pub fn prefix_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16);
        out.extend_from_slice(&MAGIC);
        out.push(self.version);
        out.push(self.layout.code() | (self.family.code() << 2));
        if let Some(id) = self.model {
            out.extend_from_slice(&id.0.to_le_bytes());
        }
        write_leb128(&mut out, self.width);
        write_leb128(&mut out, self.height);
        out
    }

    /// The whole header, check included.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.prefix_bytes();
        out.extend_from_slice(&self.check.to_le_bytes());
        out
    }

    /// Parses and validates a header, returning it with the payload that follows.
    pub fn parse<'a>(bytes: &'a [u8], limits: &Limits) -> Result<ParsedFile<'a>> {
        let mut r = Reader { bytes, pos: 0 };
        let magic = r.take(2, "magic")?;
        if magic != MAGIC {
            return Err(Error::BadMagic);
        }
        let version = r.byte("version")?;
        if version == 0 {
            return Err(Error::InvalidHeader("version 0 does not exist".into()));
        }
        if version == archive::ARCHIVE_KIND {
            return Err(Error::Unsupported(
                "an llif archive, not an image file (decode it as an archive)".into(),
            ));
        }
        if version > FORMAT_VERSION {
            return Err(Error::UnsupportedVersion(version));
        }
        let header = parse_fields(&mut r, version, limits)?;
        // The check covers the header up to (not including) the check field itself.
        let prefix_len = r.pos - 4;
        Ok(ParsedFile {
            header,
            checked_prefix: &bytes[..prefix_len],
            payload: &bytes[r.pos..],
        })
    }
}

/// The fields every image header has after the version, codec byte through check (shared by
/// image files and archive records, which are image headers without magic and version).
fn parse_fields(r: &mut Reader<'_>, version: u8, limits: &Limits) -> Result<Header> {
    let codec = r.byte("codec byte")?;
    if codec >> 6 != 0 {
        return Err(Error::InvalidHeader(format!(
            "reserved bits set in codec byte {codec:#04x}"
        )));
    }
    let layout = ChannelLayout::from_code(codec & 3).expect("two bits always name a layout");
    // A family code this version does not name belongs to a later llif: the file may be
    // valid, this build cannot read it.
    let family = CodecFamily::from_code((codec >> 2) & 0xF)
        .ok_or_else(|| Error::UnsupportedFamily(format!("with code {}", (codec >> 2) & 0xF)))?;
    let model = if family.has_model() {
        let b = r.take(4, "model id")?;
        Some(ModelId(u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
    } else {
        None
    };
    let width = r.leb128("width")?;
    let height = r.leb128("height")?;
    if width == 0 || height == 0 {
        return Err(Error::InvalidHeader(format!(
            "image size {width}x{height}: sides must be at least 1"
        )));
    }
    limits.check(width, height)?;
    crate::image::sample_count(width, height, layout)?;
    let c = r.take(4, "check")?;
    let check = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    Ok(Header {
        version,
        family,
        layout,
        model,
        width,
        height,
        check,
    })
}

/// The check of the spec: CRC-32 over header prefix, samples, payload length.
pub fn compute_check(prefix: &[u8], samples: &[u8], payload_len: usize) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(prefix);
    h.update(samples);
    h.update(&(payload_len as u64).to_le_bytes());
    h.finalize()
}

/// Assembles a complete file from header fields, the samples (for the check) and the payload.
pub fn assemble(mut header: Header, samples: &[u8], payload: &[u8]) -> Vec<u8> {
    let prefix = header.prefix_bytes();
    header.check = compute_check(&prefix, samples, payload.len());
    let mut out = Vec::with_capacity(prefix.len() + 4 + payload.len());
    out.extend_from_slice(&prefix);
    out.extend_from_slice(&header.check.to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Verifies decoded samples against a parsed file's check.
pub fn verify_check(file: &ParsedFile<'_>, samples: &[u8]) -> Result<()> {
    let actual = compute_check(file.checked_prefix, samples, file.payload.len());
    if actual != file.header.check {
        return Err(Error::ChecksumMismatch {
            expected: file.header.check,
            actual,
        });
    }
    Ok(())
}

fn write_leb128(out: &mut Vec<u8>, v: u32) {
    write_leb128_u64(out, v as u64)
}

fn write_leb128_u64(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7F) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or(Error::Truncated(what))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn byte(&mut self, what: &'static str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }
    /// Unsigned LEB128 of at most 32 bits, shortest form only (so every value has one encoding).
    fn leb128(&mut self, what: &'static str) -> Result<u32> {
        let v = self.leb128_bits(what, 5)?;
        u32::try_from(v).map_err(|_| Error::InvalidHeader(format!("{what} exceeds 32 bits")))
    }

    /// Unsigned LEB128 of at most 64 bits (10 bytes), shortest form only.
    fn leb128_u64(&mut self, what: &'static str) -> Result<u64> {
        self.leb128_bits(what, 10)
    }

    fn leb128_bits(&mut self, what: &'static str, max_bytes: usize) -> Result<u64> {
        let mut v: u128 = 0;
        for i in 0..max_bytes {
            let b = self.byte(what)?;
            v |= ((b & 0x7F) as u128) << (7 * i);
            if b & 0x80 == 0 {
                if i > 0 && b == 0 {
                    return Err(Error::InvalidHeader(format!(
                        "{what}: non-minimal LEB128 encoding"
                    )));
                }
                return u64::try_from(v)
                    .map_err(|_| Error::InvalidHeader(format!("{what} exceeds 64 bits")));
            }
        }
        Err(Error::InvalidHeader(format!(
            "{what}: LEB128 longer than {max_bytes} bytes"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_header(family: CodecFamily, layout: ChannelLayout, w: u32, h: u32) -> Header {
        Header {
            version: FORMAT_VERSION,
            family,
            layout,
            model: family.has_model().then_some(ModelId(0xDEADBEEF)),
            width: w,
            height: h,
            check: 0,
        }
    }

    #[test]
    fn every_header_field_round_trips() {
        let layouts = [
            ChannelLayout::Gray,
            ChannelLayout::GrayAlpha,
            ChannelLayout::Rgb,
            ChannelLayout::Rgba,
        ];
        let sides = [
            1u32,
            2,
            127,
            128,
            255,
            16_383,
            16_384,
            65_535,
            1 << 21,
            u32::MAX,
        ];
        for family in [
            CodecFamily::Stored,
            CodecFamily::PixelCnn,
            CodecFamily::Flow,
        ] {
            for layout in layouts {
                for &w in &sides {
                    for &h in &[1u32, 32, 300, u32::MAX] {
                        let hd = sample_header(family, layout, w, h);
                        let bytes = assemble(hd, &[], &[9, 8, 7]);
                        let samples = w as u128 * h as u128 * layout.channels() as u128;
                        if samples > isize::MAX as u128 {
                            // Expressible, but more samples than a machine can address.
                            assert!(matches!(
                                Header::parse(&bytes, &Limits::none()),
                                Err(Error::LimitExceeded(_))
                            ));
                            continue;
                        }
                        let parsed = Header::parse(&bytes, &Limits::none()).unwrap();
                        let mut expected = hd;
                        expected.check = compute_check(&hd.prefix_bytes(), &[], 3);
                        assert_eq!(parsed.header, expected);
                        assert_eq!(parsed.payload, &[9, 8, 7]);
                        assert_eq!(parsed.checked_prefix, &hd.prefix_bytes()[..]);
                    }
                }
            }
        }
    }

    #[test]
    fn cifar_header_is_14_bytes() {
        let hd = sample_header(CodecFamily::PixelCnn, ChannelLayout::Rgb, 32, 32);
        assert_eq!(hd.to_bytes().len(), 14);
    }

    #[test]
    fn rejects_bad_fields_with_typed_errors() {
        let good = assemble(
            sample_header(CodecFamily::PixelCnn, ChannelLayout::Rgb, 32, 32),
            &[],
            &[],
        );
        let mut b = good.clone();
        b[0] = b'P';
        assert!(matches!(
            Header::parse(&b, &Limits::default()),
            Err(Error::BadMagic)
        ));
        let mut b = good.clone();
        b[2] = 2;
        assert!(matches!(
            Header::parse(&b, &Limits::default()),
            Err(Error::UnsupportedVersion(2))
        ));
        let mut b = good.clone();
        b[3] |= 0x40;
        assert!(matches!(
            Header::parse(&b, &Limits::default()),
            Err(Error::InvalidHeader(_))
        ));
        let mut b = good.clone();
        b[3] = (b[3] & 3) | (9 << 2);
        assert!(matches!(
            Header::parse(&b, &Limits::default()),
            Err(Error::UnsupportedFamily(_))
        ));
        // width 0
        let mut b = good.clone();
        b[8] = 0;
        assert!(matches!(
            Header::parse(&b, &Limits::default()),
            Err(Error::InvalidHeader(_))
        ));
        // non-minimal LEB128: 32 written as 0xA0 0x00
        let mut b = good[..8].to_vec();
        b.extend_from_slice(&[0xA0, 0x00, 32, 0, 0, 0, 0]);
        assert!(matches!(
            Header::parse(&b, &Limits::default()),
            Err(Error::InvalidHeader(_))
        ));
        for cut in 0..good.len() {
            assert!(
                matches!(
                    Header::parse(&good[..cut], &Limits::default()),
                    Err(Error::Truncated(_))
                ),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn limits_are_enforced_before_anything_else() {
        let big = assemble(
            sample_header(CodecFamily::Stored, ChannelLayout::Rgb, 100_000, 100_000),
            &[],
            &[],
        );
        assert!(matches!(
            Header::parse(&big, &Limits::default()),
            Err(Error::LimitExceeded(_))
        ));
        let limits = Limits::default().with_max_side(64).with_max_pixels(64 * 64);
        let ok = assemble(
            sample_header(CodecFamily::Stored, ChannelLayout::Rgb, 64, 64),
            &[],
            &[],
        );
        assert!(Header::parse(&ok, &limits).is_ok());
        let wide = assemble(
            sample_header(CodecFamily::Stored, ChannelLayout::Rgb, 65, 1),
            &[],
            &[],
        );
        assert!(matches!(
            Header::parse(&wide, &limits),
            Err(Error::LimitExceeded(_))
        ));
    }

    #[test]
    fn check_is_zlib_crc32() {
        // CRC-32 of "123456789" is 0xCBF43926 (the standard check value).
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF43926);
        let mut expected = crc32fast::Hasher::new();
        expected.update(b"ab");
        expected.update(b"cd");
        expected.update(&5u64.to_le_bytes());
        assert_eq!(compute_check(b"ab", b"cd", 5), expected.finalize());
    }
}
