//! Where a model family plugs in: the [`FamilyModel`] trait, and the table of families this
//! build knows ([`parse_model`]).
//!
//! A family (PixelCNN today; the flow and the VAE next) implements [`FamilyModel`] for its
//! model type, adds one entry to [`FAMILIES`], and writes its payload layout into `SPEC.md`.
//! Nothing else changes: the codec API, the CLI, the bench and the golden tests reach every
//! family through [`crate::Model`], which wraps a `dyn FamilyModel`.

use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};
use crate::format::{CodecFamily, Header, ModelId};
use crate::image::{ChannelLayout, Image};
use crate::model_file::ModelFile;

/// A family's encoded payload, with the model's ideal code length for reports.
#[derive(Clone, Debug, PartialEq)]
pub struct FamilyPayload {
    /// The payload bytes that follow the header.
    pub bytes: Vec<u8>,
    /// The model's ideal code length of the samples in bits (Σ −log2 p); `None` without a model.
    pub ideal_bits: Option<f64>,
}

/// What coding an image would cost with a model, estimated from a sample of it
/// ([`FamilyModel::estimate_cost`]): for choosing among models before coding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CostEstimate {
    /// Code length of the sampled samples, in 2^-16 bits (an integer, so every machine makes
    /// the same choice).
    pub cost_q16: u64,
    /// How many samples were looked at.
    pub samples: u64,
}

impl CostEstimate {
    /// Estimated bits per sampled sample.
    pub fn bits_per_sample(&self) -> f64 {
        self.cost_q16 as f64 / 65536.0 / self.samples.max(1) as f64
    }
}

/// Lets a caller follow a long decode and stop it (e.g. from another thread, or a UI).
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
/// let stop = AtomicBool::new(false);
/// let show = |done: u64, total: u64| eprintln!("{done}/{total}");
/// let control = llif::DecodeControl::default().with_cancel(&stop).with_progress(&show);
/// stop.store(true, Ordering::Relaxed); // a decode with `control` now ends with Error::Cancelled
/// # let _ = control;
/// ```
#[derive(Clone, Copy, Default)]
pub struct DecodeControl<'a> {
    cancel: Option<&'a AtomicBool>,
    progress: Option<&'a (dyn Fn(u64, u64) + Sync)>,
}

impl<'a> DecodeControl<'a> {
    /// Stop the decode (with [`Error::Cancelled`]) soon after `flag` becomes true.
    pub fn with_cancel(mut self, flag: &'a AtomicBool) -> Self {
        self.cancel = Some(flag);
        self
    }

    /// Call `progress(done, total)` as the decode advances (units are the family's: wavefronts
    /// for the PixelCNN; `done == total` at the end).
    pub fn with_progress(mut self, progress: &'a (dyn Fn(u64, u64) + Sync)) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Reports progress, and errors if the decode was cancelled.
    pub fn step(&self, done: u64, total: u64) -> Result<()> {
        if self.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Err(Error::Cancelled);
        }
        if let Some(p) = self.progress {
            p(done, total);
        }
        Ok(())
    }
}

impl Debug for DecodeControl<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecodeControl")
            .field("cancel", &self.cancel)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// One model of one codec family: what the codec needs to code images with it.
///
/// Implementations are immutable after loading and shared between threads.
pub trait FamilyModel:
    Send + Sync + Debug + std::panic::RefUnwindSafe + std::panic::UnwindSafe
{
    /// The family byte written into headers.
    fn family(&self) -> CodecFamily;

    /// The id written into headers; `None` only for the `stored` family.
    fn id(&self) -> Option<ModelId>;

    /// The model's name (from its model file).
    fn name(&self) -> &str;

    /// One line on the model for tools: size, architecture.
    fn summary(&self) -> String;

    /// Upper bound, in bytes, of the memory that coding a `width`×`height` image of `layout`
    /// allocates, beyond the input and the output. The codec checks it against
    /// [`crate::Limits::max_working_memory`] before calling `encode` or `decode`. Saturates.
    fn working_memory(&self, width: u32, height: u32, layout: ChannelLayout) -> u64;

    /// Encodes the samples of `image` into a payload.
    fn encode(&self, image: &Image) -> Result<FamilyPayload>;

    /// Estimates what [`FamilyModel::encode`] would spend on `image` from a fixed sample of its
    /// pixels (the same sample for every model of the family, so estimates compare). `None`:
    /// this model gives no estimate, and is chosen only when named.
    fn estimate_cost(&self, _image: &Image) -> Result<Option<CostEstimate>> {
        Ok(None)
    }

    /// Decodes the samples (`header.samples()` bytes, interleaved) of the image `header`
    /// describes from `payload`. The caller has checked the header against its limits and that
    /// `header.model` names this model; the caller verifies the check afterwards. A long decode
    /// reports progress to `control` and stops with [`Error::Cancelled`] when it is cancelled.
    fn decode(
        &self,
        header: &Header,
        payload: &[u8],
        control: &DecodeControl<'_>,
    ) -> Result<Vec<u8>>;
}

/// The `stored` family: samples as they are, 8 bits each, no model.
#[derive(Clone, Copy, Debug, Default)]
pub struct StoredModel;

impl FamilyModel for StoredModel {
    fn family(&self) -> CodecFamily {
        CodecFamily::Stored
    }
    fn id(&self) -> Option<ModelId> {
        None
    }
    fn name(&self) -> &str {
        "stored"
    }
    fn summary(&self) -> String {
        "no model: 8 bits per sample".into()
    }
    fn working_memory(&self, _width: u32, _height: u32, _layout: ChannelLayout) -> u64 {
        0
    }
    fn encode(&self, image: &Image) -> Result<FamilyPayload> {
        Ok(FamilyPayload {
            bytes: image.data().to_vec(),
            ideal_bits: None,
        })
    }
    fn decode(&self, header: &Header, payload: &[u8], _: &DecodeControl<'_>) -> Result<Vec<u8>> {
        if payload.len() as u64 != header.samples() {
            return Err(Error::CorruptPayload(format!(
                "stored payload has {} bytes, the image {}",
                payload.len(),
                header.samples()
            )));
        }
        Ok(payload.to_vec())
    }
}

/// A family this build can load models of.
pub struct FamilyEntry {
    pub family: CodecFamily,
    /// Parses and validates a model file whose metadata names this family.
    pub parse: fn(&ModelFile<'_>) -> Result<crate::Model>,
}

/// Every model family of this build. The `family` field of a model file picks the entry by
/// [`CodecFamily::name`].
pub const FAMILIES: &[FamilyEntry] = &[
    FamilyEntry {
        family: CodecFamily::PixelCnn,
        parse: crate::pixelcnn::parse_model_file,
    },
    FamilyEntry {
        family: CodecFamily::Flow,
        parse: crate::flow::parse_model_file,
    },
];

/// Whether this build can decode files of `family`.
pub fn is_supported(family: CodecFamily) -> bool {
    family == CodecFamily::Stored || FAMILIES.iter().any(|e| e.family == family)
}

/// Parses a model file of any family this build knows. A model of a family it does not know
/// (written by a newer llif, or a family left out of this build) is
/// [`Error::UnsupportedFamily`], not an invalid model.
pub fn parse_model(bytes: &[u8]) -> Result<crate::Model> {
    parse_model_file(&ModelFile::parse(bytes)?)
}

/// [`parse_model`] of a model file already split into its parts.
pub fn parse_model_file(file: &ModelFile<'_>) -> Result<crate::Model> {
    FAMILIES
        .iter()
        .find(|e| e.family.name() == file.family)
        .map(|e| (e.parse)(file))
        .unwrap_or_else(|| Err(Error::UnsupportedFamily(format!("{:?}", file.family))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_of_an_unknown_family_is_unsupported_not_invalid() {
        for family in ["vae", "transformer-2031"] {
            let meta = format!(r#"{{"family":"{family}","name":"future"}}"#);
            let bytes = ModelFile::assemble(meta.as_bytes(), &[0; 16]);
            assert!(
                matches!(parse_model(&bytes), Err(Error::UnsupportedFamily(_))),
                "{family}"
            );
        }
    }

    #[test]
    fn stored_family_round_trips_and_checks_its_length() {
        let img = Image::new(2, 1, ChannelLayout::Rgb, vec![1, 2, 3, 4, 5, 6]).unwrap();
        let p = StoredModel.encode(&img).unwrap();
        let header = Header {
            version: crate::format::FORMAT_VERSION,
            family: CodecFamily::Stored,
            layout: ChannelLayout::Rgb,
            model: None,
            width: 2,
            height: 1,
            check: 0,
        };
        let ctl = DecodeControl::default();
        assert_eq!(
            StoredModel.decode(&header, &p.bytes, &ctl).unwrap(),
            img.data()
        );
        assert!(matches!(
            StoredModel.decode(&header, &p.bytes[1..], &ctl),
            Err(Error::CorruptPayload(_))
        ));
    }
}
