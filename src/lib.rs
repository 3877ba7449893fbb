pub mod coding;
pub mod error;
pub mod format;
pub mod image;

pub use error::{Error, Result};
pub use format::{CodecFamily, Header, Limits, ModelId};
pub use image::{ChannelLayout, Image};
