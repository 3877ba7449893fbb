//! The PixelCNN codec family: a local-context autoregressive model, integer-exact at coding
//! time, trained in float with tch.
//!
//! - [`arch`]: geometry (context window, masks, wavefronts), shared by both networks.
//! - [`int_model`]: the integer network that feeds the coder, its model file, reference and
//!   incremental engine (32-bit weights and activations).
//! - [`int8_model`]: the same network on the 8-bit engine (`intnet::int8`), several times
//!   faster; a model file's `engine` field says which of the two it is for.
//! - [`session`]: one image's coding schedule, as an `AutoregressiveModel`.
//! - [`estimate`]: what a model would spend on an image, from a grid of its pixels (for
//!   choosing among models before coding).
//! - [`quantize`]: float weights → the integer network (pure Rust); [`quantize8`]: float
//!   weights and activation statistics → the 8-bit network.
//! - `float_model` (feature `torch`): the tch training network, its loss, and the exact f64
//!   evaluator of the integer network.
//! - `train` (feature `torch`): the training loop behind `llif train pixelcnn`.
//!
//! [`PixelCnnInt`] and [`PixelCnn8`] are the family's [`FamilyModel`]s: the codec reaches them
//! only through that trait, and [`parse_model_file`] picks one by the model file's engine.

pub mod arch;
pub mod estimate;
#[cfg(feature = "torch")]
pub mod float_model;
pub mod int8_model;
pub mod int_model;
pub mod quantize;
pub mod quantize8;
pub mod session;
#[cfg(feature = "torch")]
pub mod train;

pub use arch::Arch;
pub use int8_model::PixelCnn8;
pub use int_model::{ModelMeta, PixelCnnInt};
pub use session::{PixelCnnSession, PixelNet};

#[cfg(feature = "torch")]
pub use float_model::encode_payload_tch;

use crate::coding::autoregressive::{decode_autoregressive, encode_autoregressive, CodingStats};
use crate::error::Result;
use crate::family::{CostEstimate, DecodeControl, FamilyModel, FamilyPayload};
use crate::format::{CodecFamily, Header, ModelId};
use crate::image::{ChannelLayout, Image};
use crate::model_file::ModelFile;

/// Parses a PixelCNN model file for the engine its metadata names (none: 32-bit; `"int8"`).
/// An engine this build does not know is unsupported (a newer llif wrote it), not invalid.
pub fn parse_model_file(file: &ModelFile<'_>) -> Result<crate::Model> {
    let meta = int_model::read_meta(file)?;
    match meta.engine {
        None => Ok(crate::Model::new(PixelCnnInt::from_model_file(file)?)),
        Some(_) => Ok(crate::Model::new(PixelCnn8::from_model_file(meta, file)?)),
    }
}

/// Pixels an estimate ([`FamilyModel::estimate_cost`]) looks at: all of a 64x64 image, about
/// 1.6% of a 512x512 one (the cost of coding 4,096 pixels, in parallel and teacher-forced).
pub const ESTIMATE_PIXELS: u64 = 4096;

fn summary_of(a: &Arch, engine: &str, parameters: usize) -> String {
    format!(
        "local PixelCNN ({engine}), radius {}, {} hidden units x {} layers, {} mixture components, {} parameters",
        a.radius,
        a.hidden,
        a.hidden_layers + 1,
        a.components,
        parameters
    )
}

fn decode_with<N: PixelNet>(
    model: &N,
    header: &Header,
    payload: &[u8],
    control: &DecodeControl<'_>,
) -> Result<Vec<u8>> {
    let mut session = PixelCnnSession::new(model, header.width, header.height, header.layout)?
        .with_control(*control);
    decode_autoregressive(&mut session, payload)
}

fn encode_with<N: PixelNet>(model: &N, image: &Image) -> Result<FamilyPayload> {
    let mut session = PixelCnnSession::new(model, image.width(), image.height(), image.layout())?;
    let (bytes, stats) = encode_autoregressive(&mut session, image.data())?;
    Ok(FamilyPayload {
        bytes,
        ideal_bits: Some(stats.ideal_bits),
    })
}

/// Both engines' networks are the family's models; they differ only in their summary's word
/// for the engine.
macro_rules! pixelcnn_family_model {
    ($model:ty, $engine:literal) => {
        impl FamilyModel for $model {
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
                summary_of(self.arch(), $engine, self.parameters())
            }

            fn working_memory(&self, width: u32, height: u32, layout: ChannelLayout) -> u64 {
                session::working_memory(self, width, height, layout)
            }

            fn encode(&self, image: &Image) -> Result<FamilyPayload> {
                encode_with(self, image)
            }

            fn estimate_cost(&self, image: &Image) -> Result<Option<CostEstimate>> {
                estimate::estimate_cost(self, image, ESTIMATE_PIXELS).map(Some)
            }

            fn decode(
                &self,
                header: &Header,
                payload: &[u8],
                control: &DecodeControl<'_>,
            ) -> Result<Vec<u8>> {
                decode_with(self, header, payload, control)
            }
        }
    };
}

pixelcnn_family_model!(PixelCnnInt, "32-bit");
pixelcnn_family_model!(PixelCnn8, "8-bit");

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
