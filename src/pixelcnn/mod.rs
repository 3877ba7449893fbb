//! The PixelCNN codec family: a local-context autoregressive model, integer-exact at coding
//! time, trained in float with tch.
//!
//! - [`arch`]: geometry (context window, masks, wavefronts), shared by both networks.
//! - [`int_model`]: the integer network that feeds the coder, its model file, reference and
//!   incremental engine.
//! - [`session`]: one image's coding schedule, as an `AutoregressiveModel`.
//! - [`quantize`]: float weights → the integer network (pure Rust).
//! - `float_model` (feature `torch`): the tch training network, its loss, and the exact f64
//!   evaluator of the integer network.
//! - `train` (feature `torch`): the training loop behind `llif train pixelcnn`.
//!
//! [`PixelCnnInt`] is the family's [`FamilyModel`]: the codec reaches it only through that trait.

pub mod arch;
#[cfg(feature = "torch")]
pub mod float_model;
pub mod int_model;
pub mod quantize;
pub mod session;
#[cfg(feature = "torch")]
pub mod train;

pub use arch::Arch;
pub use int_model::{ModelMeta, PixelCnnInt};
pub use session::PixelCnnSession;

#[cfg(feature = "torch")]
pub use float_model::encode_payload_tch;

use crate::coding::autoregressive::{decode_autoregressive, encode_autoregressive, CodingStats};
use crate::error::Result;
use crate::family::{DecodeControl, FamilyModel, FamilyPayload};
use crate::format::{CodecFamily, Header, ModelId};
use crate::image::{ChannelLayout, Image};

impl FamilyModel for PixelCnnInt {
    fn family(&self) -> CodecFamily {
        CodecFamily::PixelCnn
    }

    fn id(&self) -> Option<ModelId> {
        Some(self.id)
    }

    fn name(&self) -> &str {
        &self.meta.name
    }

    fn summary(&self) -> String {
        let a = self.arch();
        format!(
            "local PixelCNN, radius {}, {} hidden units x {} layers, {} mixture components, {} parameters",
            a.radius,
            a.hidden,
            a.hidden_layers + 1,
            a.components,
            self.parameters()
        )
    }

    fn working_memory(&self, width: u32, height: u32, layout: ChannelLayout) -> u64 {
        session::working_memory(self, width, height, layout)
    }

    fn encode(&self, image: &Image) -> Result<FamilyPayload> {
        let (bytes, stats) = encode_payload(self, image)?;
        Ok(FamilyPayload {
            bytes,
            ideal_bits: Some(stats.ideal_bits),
        })
    }

    fn decode(
        &self,
        header: &Header,
        payload: &[u8],
        control: &DecodeControl<'_>,
    ) -> Result<Vec<u8>> {
        let mut session = PixelCnnSession::new(self, header.width, header.height, header.layout)?
            .with_control(*control);
        decode_autoregressive(&mut session, payload)
    }
}

/// Encodes an image's samples into a range-coder payload.
pub fn encode_payload(model: &PixelCnnInt, image: &Image) -> Result<(Vec<u8>, CodingStats)> {
    let mut session = PixelCnnSession::new(model, image.width(), image.height(), image.layout())?;
    encode_autoregressive(&mut session, image.data())
}

/// Decodes the samples of a `width`×`height` image of `layout` from a payload.
pub fn decode_payload(
    model: &PixelCnnInt,
    width: u32,
    height: u32,
    layout: ChannelLayout,
    payload: &[u8],
) -> Result<Vec<u8>> {
    let mut session = PixelCnnSession::new(model, width, height, layout)?;
    decode_autoregressive(&mut session, payload)
}
