//! # llif — learned lossless image format
//!
//! Lossless image compression whose probabilities come from trained density models, run as
//! integer-exact networks so that every machine decodes every file bit for bit.
//!
//! ```
//! use llif::{decode_image, encode_image, ChannelLayout, Image, Limits, ModelSet};
//!
//! // A 4x3 RGB image (interleaved samples, row-major).
//! let pixels: Vec<u8> = (0..4 * 3 * 3).map(|i| (i * 7 % 256) as u8).collect();
//! let image = Image::new(4, 3, ChannelLayout::Rgb, pixels)?;
//!
//! // The built-in models; the first is the default PixelCNN.
//! let models = ModelSet::builtin();
//! let model = models.default_model().expect("llif ships a default model");
//! let bytes = encode_image(&image, model)?;
//!
//! // Decoding finds the model by the id in the header and verifies the CRC-32.
//! let decoded = decode_image(&bytes, &models, &Limits::default())?;
//! assert_eq!(decoded, image);
//! # Ok::<(), llif::Error>(())
//! ```
//!
//! ## Features
//!
//! - `torch` (default): training and the libtorch evaluators (exact f64 paths, CUDA encoding).
//!   Without it llif compiles no C++ and links no libtorch; encoding and decoding are pure Rust
//!   either way. Embed with `llif = { version = "0.1", default-features = false }`.
//! - `binaries` (default): the `llif` and `llif-train` programs and the classical codecs of the
//!   bench (oxipng, libwebp).
//!
//! Where things are: `STRUCTURE.md` in the repository maps the modules and the data flow from
//! pixels to bits; [`mod@format`] holds the file format specification.

pub mod bench;
pub mod codec;
pub mod coding;
pub mod corpus;
pub mod error;
pub mod family;
pub mod flow;
pub mod format;
pub mod image;
pub mod intnet;
pub mod model_file;
pub mod pixelcnn;
#[cfg(feature = "torch")]
pub mod runtime;
#[doc(hidden)]
pub mod testing;
pub mod vae;

pub use codec::{
    decode_archive, decode_archive_entry, decode_image, decode_image_with, encode_archive,
    encode_image, encode_image_with, encode_image_with_stats, read_header, ArchiveInput,
    EncodeOptions, Encoded, Model, ModelChoice, ModelSet,
};
pub use error::{Error, ErrorKind, Result};
pub use family::{CostEstimate, DecodeControl, FamilyModel};
pub use format::{CodecFamily, Header, Limits, ModelId};
pub use image::{ChannelLayout, Image};
