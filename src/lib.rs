pub mod bench;
pub mod codec;
pub mod coding;
pub mod corpus;
pub mod error;
pub mod format;
pub mod image;
pub mod intnet;
pub mod pixelcnn;
pub mod runtime;
#[doc(hidden)]
pub mod testing;

pub use error::{Error, Result};
pub use format::{CodecFamily, Header, Limits, ModelId};
pub use image::{ChannelLayout, Image};
pub use codec::{decode_image, encode_image, encode_image_with_stats, read_header, Model, ModelSet};
