//! The embedding API: models, encode an image to `.llif` bytes, decode bytes back, inspect a
//! header. No global state; every type here is `Send + Sync`, so one [`ModelSet`] can serve
//! many threads.
//!
//! The codec knows no family: it reaches each one through [`FamilyModel`]
//! ([`crate::family`]), and the `stored` family is the fallback when a model would cost more
//! than the raw samples.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use crate::error::{Error, Result};
use crate::family::{self, DecodeControl, FamilyModel, StoredModel};
use crate::format::{self, CodecFamily, Header, Limits, ModelId, FORMAT_VERSION};
use crate::image::{ChannelLayout, Image};
use crate::model_file::ModelFile;

/// A model compiled into llif.
#[derive(Clone, Copy, Debug)]
pub struct BuiltinModel {
    pub name: &'static str,
    /// The model file (`models/NAME.llifm`).
    pub file: &'static [u8],
    /// Its model id, written here so that finding a file's model hashes nothing (a test checks
    /// it against the file's hash).
    pub id: ModelId,
    /// Its card's headline figures (`models/README.md`).
    pub headline: &'static str,
    /// One of the models the encoder chooses among per image when the user names no model, or
    /// only its family ([`ModelSet::choice`]); the first model of the list always is.
    pub chosen_per_image: bool,
}

/// The models compiled into llif, in order of preference (cards in `models/README.md`): the
/// default first, and within a family its best first. A model that has shipped stays in this
/// list, so every file written with it keeps decoding; a better model of a family is added in
/// front of that family's. `default` is the first; a family name picks the first of that
/// family. When
/// the user names no model, or only a family, the encoder chooses per image between that first
/// model and the models of its family marked `chosen_per_image` ([`ModelChoice`]).
pub const BUILTIN_MODELS: &[BuiltinModel] = &[
    BuiltinModel {
        name: "pixelcnn-r3h288-v4-int8-adapt",
        file: include_bytes!("../models/pixelcnn-r3h288-v4-int8-adapt.llifm"),
        id: ModelId(0x4297b9e0),
        headline:
            "CIFAR-10 test 3.558 bpsp, photos/test 3.334 bpsp (JPEG XL 3.416); trained on all 50,000 CIFAR-10 images",
        chosen_per_image: false,
    },
    BuiltinModel {
        name: "pixelcnn-r3h288-v4q8-int8-adapt",
        file: include_bytes!("../models/pixelcnn-r3h288-v4q8-int8-adapt.llifm"),
        id: ModelId(0x0d41c106),
        headline:
            "CIFAR-10 test 3.587 bpsp, photos/test 3.342 bpsp; the fastest PixelCNN: 8-bit weights, 0.63 of v3's decode time at 512x512",
        chosen_per_image: false,
    },
    BuiltinModel {
        name: "flow-joint-l3k8h64c3-v1",
        file: include_bytes!("../models/flow-joint-l3k8h64c3-v1.llifm"),
        id: ModelId(0x9f179c0b),
        headline:
            "the fast model (--model flow): CIFAR-10 test 4.074 bpsp, photos/test 4.199 bpsp; 512x512 decode in about a third of the default's time",
        chosen_per_image: false,
    },
    BuiltinModel {
        name: "pixelcnn-r3h192-v3-int8-adapt",
        file: include_bytes!("../models/pixelcnn-r3h192-v3-int8-adapt.llifm"),
        id: ModelId(0xf09471d6),
        headline:
            "CIFAR-10 test 3.603 bpsp, photos/test 3.361 bpsp; 512x512 photos in 0.55 of v3's time",
        chosen_per_image: false,
    },
    BuiltinModel {
        name: "pixelcnn-r3h192-v3",
        file: include_bytes!("../models/pixelcnn-r3h192-v3.llifm"),
        id: ModelId(0x5faaa029),
        headline: "CIFAR-10 test 3.594 bpsp, photos/test 3.384 bpsp",
        chosen_per_image: false,
    },
    BuiltinModel {
        name: "pixelcnn-r3h192-v2",
        file: include_bytes!("../models/pixelcnn-r3h192-v2.llifm"),
        id: ModelId(0x474a3ee6),
        headline: "CIFAR-10 test 3.616 bpsp, photos/test 3.397 bpsp",
        chosen_per_image: false,
    },
    BuiltinModel {
        name: "pixelcnn-r3h192-v1",
        file: include_bytes!("../models/pixelcnn-r3h192-v1.llifm"),
        id: ModelId(0xe4d0dce5),
        headline: "CIFAR-10 test 3.707 bpsp, photos/test 3.451 bpsp",
        chosen_per_image: false,
    },
];
/// The default model's file.
pub const DEFAULT_PIXELCNN: &[u8] = BUILTIN_MODELS[0].file;
/// Alias of the default model.
pub const DEFAULT_MODEL_NAME: &str = "default";

/// A model that can code images: one model of one family, shared cheaply (`Arc`).
#[derive(Clone, Debug)]
pub struct Model(Arc<dyn FamilyModel>);

impl Model {
    /// Wraps a family's model.
    pub fn new<M: FamilyModel + 'static>(model: M) -> Model {
        Model(Arc::new(model))
    }

    /// No model: samples stored as they are (8 bits each).
    pub fn stored() -> Model {
        Model::new(StoredModel)
    }

    /// Parses a model file of any family this build knows ([`family::parse_model`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Model> {
        family::parse_model(bytes)
    }

    pub fn from_file(path: &Path) -> Result<Model> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Model::from_bytes(&bytes)
    }

    /// The family's model behind this handle.
    pub fn family_model(&self) -> &dyn FamilyModel {
        &*self.0
    }

    pub fn family(&self) -> CodecFamily {
        self.0.family()
    }

    /// The id written into files; `None` for `stored`.
    pub fn id(&self) -> Option<ModelId> {
        self.0.id()
    }

    pub fn name(&self) -> String {
        self.0.name().to_string()
    }
}

/// The models a decoder may use, found by the id in a file's header.
///
/// The built-in models are parsed lazily: a decoder that needs one model parses (and
/// validates) only that one, so starting up costs no more than the file in hand needs.
#[derive(Clone, Debug, Default)]
pub struct ModelSet {
    models: Vec<Entry>,
}

/// A model of a set: given, or a built-in model file parsed on first use.
#[derive(Clone, Debug)]
struct Entry {
    name: String,
    file: Option<&'static [u8]>,
    chosen_per_image: bool,
    id: OnceLock<Option<ModelId>>,
    model: OnceLock<Model>,
}

impl Entry {
    fn model(&self) -> &Model {
        self.model.get_or_init(|| {
            let Some(bytes) = self.file else {
                unreachable!("a given model is set when the entry is made")
            };
            // A built-in entry carries its id (tested against the hash): no hashing here.
            let parsed = match self.id.get() {
                Some(&Some(id)) => ModelFile::parse_with_id(bytes, id)
                    .and_then(|file| family::parse_model_file(&file)),
                _ => Model::from_bytes(bytes),
            };
            parsed.expect("embedded models are valid (tested)")
        })
    }

    /// The id without parsing the model: a built-in file's id is the hash of its bytes.
    fn id(&self) -> Option<ModelId> {
        *self.id.get_or_init(|| match (self.model.get(), self.file) {
            (Some(m), _) => m.id(),
            (None, Some(bytes)) => Some(ModelId::of_bytes(bytes)),
            (None, None) => None,
        })
    }
}

impl ModelSet {
    /// An empty set (only `stored` files decode).
    pub fn empty() -> ModelSet {
        ModelSet::default()
    }

    /// The models compiled into llif, the default first (also found as `default`).
    pub fn builtin() -> ModelSet {
        let models = BUILTIN_MODELS
            .iter()
            .map(|b| Entry {
                name: b.name.to_string(),
                file: Some(b.file),
                chosen_per_image: b.chosen_per_image,
                id: OnceLock::from(Some(b.id)),
                model: OnceLock::new(),
            })
            .collect();
        ModelSet { models }
    }

    /// Adds a model under `name` (later lookups by name find the first one added).
    pub fn add(&mut self, name: &str, model: Model) {
        self.push(name, model, false);
    }

    /// Adds a model as [`ModelSet::add`] does, which the encoder may also choose per image
    /// instead of the first model of its family when given `default` or the family's name (as
    /// [`BuiltinModel::chosen_per_image`]).
    pub fn add_chosen_per_image(&mut self, name: &str, model: Model) {
        self.push(name, model, true);
    }

    fn push(&mut self, name: &str, model: Model, chosen_per_image: bool) {
        self.models.push(Entry {
            name: name.to_string(),
            file: None,
            chosen_per_image,
            id: OnceLock::new(),
            model: OnceLock::from(model),
        });
    }

    /// The default model: the first one added.
    pub fn default_model(&self) -> Option<&Model> {
        self.models.first().map(Entry::model)
    }

    /// A model by name, by family (`pixelcnn`, `flow`, `vae`: the first model of that family,
    /// which for the built-in set is the best shipped one), by model id (8 hex digits),
    /// `default`, or `stored`.
    pub fn find(&self, key: &str) -> Option<Model> {
        if key == "stored" {
            return Some(Model::stored());
        }
        if key == DEFAULT_MODEL_NAME {
            return self.default_model().cloned();
        }
        if let Some(family) = CodecFamily::from_name(key) {
            return self
                .iter()
                .map(|(_, m)| m)
                .find(|m| m.family() == family)
                .cloned();
        }
        if let Some(e) = self.models.iter().find(|e| e.name == key) {
            return Some(e.model().clone());
        }
        if let Some((_, m)) = self.iter().find(|(_, m)| m.name() == key) {
            return Some(m.clone());
        }
        let id: ModelId = key.parse().ok()?;
        self.by_id(id).cloned()
    }

    /// What `key` lets the encoder use ([`ModelSet::find`]'s keys): for `default` and a family
    /// name, the model `find` gives and, after it, the other models of its family marked
    /// [`BuiltinModel::chosen_per_image`], the encoder choosing per image; for any other key
    /// the one model it names.
    pub fn choice(&self, key: &str) -> Option<ModelChoice> {
        let first = self.find(key)?;
        let mut models = vec![first.clone()];
        if key == DEFAULT_MODEL_NAME || CodecFamily::from_name(key).is_some() {
            let others = self
                .models
                .iter()
                .filter(|e| e.chosen_per_image)
                .map(Entry::model)
                .filter(|m| m.family() == first.family() && m.id() != first.id());
            models.extend(others.cloned());
        }
        Some(ModelChoice { models })
    }

    pub fn by_id(&self, id: ModelId) -> Option<&Model> {
        self.models
            .iter()
            .find(|e| e.id() == Some(id))
            .map(Entry::model)
    }

    /// `(name, model)` pairs (parses every built-in model).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Model)> {
        self.models.iter().map(|e| (e.name.as_str(), e.model()))
    }
}

/// The models an encoder may code an image with: the first, unless another one's estimate for
/// the image ([`FamilyModel::estimate_cost`], a teacher-forced pass over a grid of its pixels)
/// is lower. The file names the model it was coded with, so a decoder needs nothing of this.
#[derive(Clone, Debug)]
pub struct ModelChoice {
    /// Never empty; the first is preferred on ties and when a model gives no estimate.
    models: Vec<Model>,
}

impl From<Model> for ModelChoice {
    fn from(model: Model) -> ModelChoice {
        ModelChoice {
            models: vec![model],
        }
    }
}

impl ModelChoice {
    /// A choice among `models`, the first preferred; `None` when there are none.
    pub fn new(models: Vec<Model>) -> Option<ModelChoice> {
        (!models.is_empty()).then_some(ModelChoice { models })
    }

    pub fn models(&self) -> &[Model] {
        &self.models
    }

    /// The preferred model.
    pub fn first(&self) -> &Model {
        &self.models[0]
    }

    /// The largest working memory of the candidates (check it before [`ModelChoice::choose`],
    /// which runs them).
    pub fn working_memory(&self, width: u32, height: u32, layout: ChannelLayout) -> u64 {
        self.models
            .iter()
            .map(|m| m.family_model().working_memory(width, height, layout))
            .max()
            .unwrap_or(0)
    }

    /// The model to code `image` with: the lowest estimate per sample, the earlier model on
    /// ties; the first when any candidate gives no estimate.
    pub fn choose(&self, image: &Image) -> Result<&Model> {
        if self.models.len() == 1 {
            return Ok(&self.models[0]);
        }
        let mut best: Option<(&Model, family::CostEstimate)> = None;
        for m in &self.models {
            let Some(e) = on_worker_thread(|| m.family_model().estimate_cost(image))? else {
                return Ok(&self.models[0]);
            };
            // Compare cost per sample without division: a·n_b < b·n_a.
            let better = best.as_ref().is_none_or(|(_, b)| {
                (e.cost_q16 as u128) * (b.samples as u128)
                    < (b.cost_q16 as u128) * (e.samples as u128)
            });
            if better {
                best = Some((m, e));
            }
        }
        Ok(best.map_or(&self.models[0], |(m, _)| m))
    }

    /// Names for reports: `name` alone, or `a | b` for a choice.
    pub fn describe(&self) -> String {
        let names: Vec<String> = self.models.iter().map(Model::name).collect();
        names.join(" | ")
    }
}

/// What an encode produced, for reports (theory vs actual bits).
#[derive(Clone, Debug)]
pub struct Encoded {
    /// The complete `.llif` file.
    pub bytes: Vec<u8>,
    /// The family the file was written with: the model's, or `stored` when the model's payload
    /// would have been larger than the samples.
    pub family: CodecFamily,
    /// The model's ideal code length of the samples in bits (Σ −log2 p); `None` for `stored`.
    pub ideal_bits: Option<f64>,
    /// Size of the file the model would have written, when `stored` was written instead.
    pub model_bytes_refused: Option<usize>,
    pub header_bytes: usize,
}

/// Encodes `image` with `model` into a complete `.llif` file, never larger than the `stored`
/// file of the same image.
pub fn encode_image(image: &Image, model: &Model) -> Result<Vec<u8>> {
    Ok(encode_image_with_stats(image, model)?.bytes)
}

fn header_for(image: &Image, model: &dyn FamilyModel) -> Header {
    Header {
        version: FORMAT_VERSION,
        family: model.family(),
        layout: image.layout(),
        model: model.id(),
        width: image.width(),
        height: image.height(),
        check: 0,
    }
}

/// How to encode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EncodeOptions {
    /// Write the `stored` family when the model's file would be larger than the stored one
    /// (default `true`). Off, the model's file is written whatever its size: for measuring a
    /// model, and for tests that must exercise a family's payload.
    pub stored_fallback: bool,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            stored_fallback: true,
        }
    }
}

impl EncodeOptions {
    pub fn with_stored_fallback(mut self, on: bool) -> Self {
        self.stored_fallback = on;
        self
    }
}

/// [`encode_image`], also returning the model's ideal code length and which family was written.
pub fn encode_image_with_stats(image: &Image, model: &Model) -> Result<Encoded> {
    encode_image_with(image, model, &EncodeOptions::default())
}

/// Encodes with `options`. With the stored fallback on (the default), when the model's file
/// would be larger than the `stored` file (raw samples, a header without model id), the
/// `stored` file is written instead: no image ever costs more than 8 bits per sample plus the
/// header.
pub fn encode_image_with(image: &Image, model: &Model, options: &EncodeOptions) -> Result<Encoded> {
    let m = model.family_model();
    let payload = on_worker_thread(|| m.encode(image))?;
    let header = header_for(image, m);
    let header_bytes = header.to_bytes().len();
    let bytes = format::assemble(header, image.data(), &payload.bytes);
    let stored_len = header_for(image, &StoredModel).to_bytes().len() + image.samples();
    if !options.stored_fallback || m.family() == CodecFamily::Stored || bytes.len() <= stored_len {
        return Ok(Encoded {
            bytes,
            family: m.family(),
            ideal_bits: payload.ideal_bits,
            model_bytes_refused: None,
            header_bytes,
        });
    }
    let stored_header = header_for(image, &StoredModel);
    Ok(Encoded {
        header_bytes: stored_header.to_bytes().len(),
        bytes: format::assemble(stored_header, image.data(), image.data()),
        family: CodecFamily::Stored,
        ideal_bits: payload.ideal_bits,
        model_bytes_refused: Some(bytes.len()),
    })
}

/// Runs `op` on a thread of rayon's pool (at once, when called from one). A model's coding
/// loop starts thousands of small parallel steps (a PixelCNN: a few per wavefront); started
/// from a thread outside the pool, each hands its work over and sleeps on a latch until woken,
/// which cost as much time as the work itself (perf: a third of a 512x512 decode in
/// `sched_yield` and futex wake-ups). Inside the pool they are cheap work-stealing joins. The
/// results are the same integers either way.
fn on_worker_thread<T: Send>(op: impl FnOnce() -> T + Send) -> T {
    rayon::scope(|_| op())
}

/// Parses and validates a file's header without decoding the image.
pub fn read_header(bytes: &[u8], limits: &Limits) -> Result<Header> {
    Ok(Header::parse(bytes, limits)?.header)
}

/// The model a file needs, from `models` (or the built-in `stored`): errors, from the header
/// alone, for a family this build does not implement, a model it does not have, or a model of
/// another family.
pub fn model_for(h: &Header, models: &ModelSet) -> Result<Model> {
    if h.family == CodecFamily::Stored {
        return Ok(Model::stored());
    }
    if !family::is_supported(h.family) {
        return Err(Error::UnsupportedFamily(h.family.to_string()));
    }
    let id = h
        .model
        .ok_or_else(|| Error::Internal("a model family's header without model id".into()))?;
    let model = models
        .by_id(id)
        .ok_or_else(|| Error::UnknownModel(id.to_string()))?;
    if model.family() != h.family {
        return Err(Error::InvalidHeader(format!(
            "the file says {} but model {id} is a {} model",
            h.family,
            model.family()
        )));
    }
    Ok(model.clone())
}

/// Decodes a `.llif` file, using `models` to find the model its header names.
///
/// Checks, in order: the header against `limits` (before any allocation), that this build has
/// the file's family and model, the model's working memory against `limits`, then decodes and
/// verifies the CRC-32, so a wrong decode is an error, never a picture.
pub fn decode_image(bytes: &[u8], models: &ModelSet, limits: &Limits) -> Result<Image> {
    decode_image_with(bytes, models, limits, &DecodeControl::default())
}

/// [`decode_image`] with a [`DecodeControl`]: progress reports, and cancellation from another
/// thread (the decode then returns [`Error::Cancelled`]).
pub fn decode_image_with(
    bytes: &[u8],
    models: &ModelSet,
    limits: &Limits,
    control: &DecodeControl<'_>,
) -> Result<Image> {
    let file = Header::parse(bytes, limits)?;
    let h = file.header;
    if file.payload.len() as u64 > h.max_payload_bytes() {
        return Err(Error::CorruptPayload(format!(
            "{} payload bytes: longer than any valid file of a {}x{} {} image",
            file.payload.len(),
            h.width,
            h.height,
            h.layout.name()
        )));
    }
    let model = model_for(&h, models)?;
    // The model's own buffers, plus the coder's copy of the payload.
    let memory = model
        .family_model()
        .working_memory(h.width, h.height, h.layout)
        .saturating_add(file.payload.len() as u64);
    limits.check_working_memory(memory)?;
    let samples = on_worker_thread(|| model.family_model().decode(&h, file.payload, control))?;
    if samples.len() as u64 != h.samples() {
        return Err(Error::Internal(format!(
            "{} decoder returned {} samples for a {}x{} {} image",
            h.family,
            samples.len(),
            h.width,
            h.height,
            h.layout.name()
        )));
    }
    format::verify_check(&file, &samples)?;
    Image::new(h.width, h.height, h.layout, samples)
}

/// An image for [`encode_archive`]: its name in a named archive, `None` in an unnamed one.
#[derive(Clone, Copy, Debug)]
pub struct ArchiveInput<'a> {
    pub name: Option<&'a str>,
    pub image: &'a Image,
}

/// Encodes images into one archive (SPEC.md "Archives"), each entry as [`encode_image_with`]
/// would write it alone with the model `models` chooses for it, in parallel. Names must be all
/// given or all absent. (One model: `&model.into()`.)
pub fn encode_archive(
    images: &[ArchiveInput<'_>],
    models: &ModelChoice,
    options: &EncodeOptions,
) -> Result<Vec<u8>> {
    use rayon::prelude::*;
    let named = images.first().is_some_and(|i| i.name.is_some());
    let files: Vec<Encoded> = images
        .par_iter()
        .map(|i| encode_image_with(i.image, models.choose(i.image)?, options))
        .collect::<Result<_>>()?;
    let mut builder = format::archive::ArchiveBuilder::new(named);
    for (input, file) in images.iter().zip(&files) {
        builder.push(input.name, &file.bytes)?;
    }
    builder.finish()
}

/// Decodes one entry of a parsed archive: exactly as its image file would decode
/// ([`decode_image_with`]), so limits, model look-up and the check are the same.
pub fn decode_archive_entry(
    entry: &format::archive::ArchiveEntry<'_>,
    models: &ModelSet,
    limits: &Limits,
    control: &DecodeControl<'_>,
) -> Result<Image> {
    decode_image_with(&entry.image_file(), models, limits, control)
}

/// Decodes a whole archive in memory, entries in parallel: `(file name, image)` in archive
/// order, names as SPEC.md gives them (an unnamed entry by its index, `00000.png`, …). For
/// archives too large to hold decoded, parse with [`format::archive::Archive::parse`] and decode
/// entries in batches with [`decode_archive_entry`].
pub fn decode_archive(
    bytes: &[u8],
    models: &ModelSet,
    limits: &Limits,
) -> Result<Vec<(String, Image)>> {
    use rayon::prelude::*;
    let archive = format::archive::Archive::parse(bytes, limits)?;
    archive
        .entries
        .par_iter()
        .enumerate()
        .map(|(i, e)| {
            let image = decode_archive_entry(e, models, limits, &DecodeControl::default())?;
            Ok((format::archive::entry_file_name(e.name, i), image))
        })
        .collect()
}
