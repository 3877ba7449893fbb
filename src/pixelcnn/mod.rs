//! The PixelCNN codec family: a local-context autoregressive model, integer-exact at coding
//! time, trained in float with tch.
//!
//! - [`arch`]: geometry (context window, masks, wavefronts), shared by both networks.
//! - [`int_model`]: the integer network that feeds the coder, its model file, reference and
//!   incremental engine.
//! - [`session`]: one image's coding schedule, as an `AutoregressiveModel`.
//! - [`float_model`]: the tch training network, its loss, and quantization to the integer one.
//! - [`train`]: the training loop behind `llif train pixelcnn`.

pub mod arch;
pub mod float_model;
pub mod int_model;
pub mod session;
pub mod train;

pub use arch::Arch;
pub use int_model::{ModelMeta, PixelCnnInt};
pub use session::PixelCnnSession;

use crate::coding::autoregressive::{decode_autoregressive, encode_autoregressive, CodingStats};
use crate::error::Result;
use crate::image::{ChannelLayout, Image};

/// Encodes an image's samples into a range-coder payload.
pub fn encode_payload(model: &PixelCnnInt, image: &Image) -> Result<(Vec<u8>, CodingStats)> {
    let mut session = PixelCnnSession::new(model, image.width(), image.height(), image.layout());
    encode_autoregressive(&mut session, image.data())
}

/// Decodes the samples of a `width`×`height` image of `layout` from a payload.
pub fn decode_payload(model: &PixelCnnInt, width: u32, height: u32, layout: ChannelLayout, payload: &[u8]) -> Result<Vec<u8>> {
    let mut session = PixelCnnSession::new(model, width, height, layout);
    decode_autoregressive(&mut session, payload)
}
