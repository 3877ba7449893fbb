//! The in-memory image every part of llif works on: 8-bit samples, interleaved, row-major.

use crate::error::{Error, Result};

/// Which channels a pixel has, in storage order. All samples are 8 bits.
///
/// The numeric codes are written into `.llif` headers (see the format spec) and must not change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChannelLayout {
    /// One luminance sample per pixel.
    Gray = 0,
    /// Luminance, then alpha.
    GrayAlpha = 1,
    /// Red, green, blue.
    Rgb = 2,
    /// Red, green, blue, then alpha.
    Rgba = 3,
}

impl ChannelLayout {
    /// Samples per pixel.
    pub fn channels(self) -> usize {
        match self {
            ChannelLayout::Gray => 1,
            ChannelLayout::GrayAlpha => 2,
            ChannelLayout::Rgb => 3,
            ChannelLayout::Rgba => 4,
        }
    }

    /// Channels that carry colour (1 or 3), i.e. without alpha.
    pub fn color_channels(self) -> usize {
        match self {
            ChannelLayout::Gray | ChannelLayout::GrayAlpha => 1,
            ChannelLayout::Rgb | ChannelLayout::Rgba => 3,
        }
    }

    pub fn has_alpha(self) -> bool {
        matches!(self, ChannelLayout::GrayAlpha | ChannelLayout::Rgba)
    }

    /// The 2-bit code used in `.llif` headers.
    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => ChannelLayout::Gray,
            1 => ChannelLayout::GrayAlpha,
            2 => ChannelLayout::Rgb,
            3 => ChannelLayout::Rgba,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            ChannelLayout::Gray => "gray",
            ChannelLayout::GrayAlpha => "gray+alpha",
            ChannelLayout::Rgb => "rgb",
            ChannelLayout::Rgba => "rgba",
        }
    }
}

impl std::fmt::Display for ChannelLayout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An 8-bit image: `height` rows of `width` pixels of `layout.channels()` interleaved samples.
///
/// Invariant: `data.len() == width * height * layout.channels()`, width and height ≥ 1.
#[derive(Clone, PartialEq, Eq)]
pub struct Image {
    width: u32,
    height: u32,
    layout: ChannelLayout,
    data: Vec<u8>,
}

impl std::fmt::Debug for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Image({}x{} {})", self.width, self.height, self.layout)
    }
}

/// `width × height × channels` of an image, checked: an error (not a wrapped product) when it
/// does not fit this machine's address space.
pub fn sample_count(width: u32, height: u32, layout: ChannelLayout) -> Result<u64> {
    (width as u64)
        .checked_mul(height as u64)
        .and_then(|p| p.checked_mul(layout.channels() as u64))
        .filter(|&n| n <= isize::MAX as u64)
        .ok_or_else(|| {
            Error::LimitExceeded(format!(
                "a {width}x{height} {layout} image has more samples than this machine can address"
            ))
        })
}

/// An empty buffer with room for `n` bytes, or a typed error when the allocation fails (instead
/// of aborting the process).
pub fn try_alloc(n: u64) -> Result<Vec<u8>> {
    let n = usize::try_from(n)
        .map_err(|_| Error::LimitExceeded(format!("{n} bytes do not fit in memory")))?;
    let mut v = Vec::new();
    v.try_reserve_exact(n)
        .map_err(|_| Error::LimitExceeded(format!("could not allocate {} MiB", n >> 20)))?;
    Ok(v)
}

impl Image {
    /// Wraps interleaved samples. Errors if the buffer length does not match or a side is 0.
    pub fn new(width: u32, height: u32, layout: ChannelLayout, data: Vec<u8>) -> Result<Self> {
        let expected = sample_count(width, height, layout)?;
        if width == 0 || height == 0 {
            return Err(Error::InvalidImage(format!(
                "image is {width}x{height}: both sides must be at least 1"
            )));
        }
        if data.len() as u64 != expected {
            return Err(Error::InvalidImage(format!(
                "{width}x{height} {layout} needs {expected} samples, got {}",
                data.len()
            )));
        }
        Ok(Image {
            width,
            height,
            layout,
            data,
        })
    }

    /// An image with every sample set to `value`.
    pub fn filled(width: u32, height: u32, layout: ChannelLayout, value: u8) -> Result<Self> {
        let n = sample_count(width, height, layout)?;
        let mut data = try_alloc(n)?;
        data.resize(n as usize, value);
        Image::new(width, height, layout, data)
    }

    pub fn width(&self) -> u32 {
        self.width
    }
    pub fn height(&self) -> u32 {
        self.height
    }
    pub fn layout(&self) -> ChannelLayout {
        self.layout
    }
    pub fn channels(&self) -> usize {
        self.layout.channels()
    }
    /// Number of pixels.
    pub fn pixels(&self) -> usize {
        self.width as usize * self.height as usize
    }
    /// Number of samples ("sub-pixels", "dimensions"): the denominator of bits per sub-pixel.
    pub fn samples(&self) -> usize {
        self.data.len()
    }
    /// Interleaved samples, row-major.
    pub fn data(&self) -> &[u8] {
        &self.data
    }
    pub fn into_data(self) -> Vec<u8> {
        self.data
    }
    /// Sample `c` of pixel (`x`, `y`). Panics when out of range (callers index within bounds).
    #[inline]
    pub fn sample(&self, x: u32, y: u32, c: usize) -> u8 {
        self.data[(y as usize * self.width as usize + x as usize) * self.channels() + c]
    }

    /// One channel as its own plane, row-major.
    pub fn plane(&self, c: usize) -> Vec<u8> {
        let ch = self.channels();
        self.data.iter().skip(c).step_by(ch).copied().collect()
    }

    /// Builds an image from planes (each `width * height` samples), in layout order.
    pub fn from_planes(
        width: u32,
        height: u32,
        layout: ChannelLayout,
        planes: &[Vec<u8>],
    ) -> Result<Self> {
        let ch = layout.channels();
        let n = width as usize * height as usize;
        if planes.len() != ch || planes.iter().any(|p| p.len() != n) {
            return Err(Error::InvalidImage(
                "plane count or plane size does not match the layout".into(),
            ));
        }
        let mut data = vec![0u8; n * ch];
        for (c, p) in planes.iter().enumerate() {
            for (i, &v) in p.iter().enumerate() {
                data[i * ch + c] = v;
            }
        }
        Image::new(width, height, layout, data)
    }
}
