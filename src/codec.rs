//! The embedding API: models, encode an image to `.llif` bytes, decode bytes back, inspect a
//! header. No global state; every type here is `Send + Sync`, so one [`ModelSet`] can serve
//! many threads.

use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::{self, CodecFamily, Header, Limits, ModelId, FORMAT_VERSION};
use crate::image::Image;
use crate::pixelcnn::{self, PixelCnnInt};

/// The models compiled into llif, `(name, model file)`, the default first (cards in
/// `models/README.md`). A model that has shipped stays in this list, so every file written with
/// it keeps decoding; a better model is added in front.
pub const BUILTIN_MODELS: &[(&str, &[u8])] = &[
    (
        "pixelcnn-r3h192-v3",
        include_bytes!("../models/pixelcnn-r3h192-v3.llifm"),
    ),
    (
        "pixelcnn-r3h192-v2",
        include_bytes!("../models/pixelcnn-r3h192-v2.llifm"),
    ),
    (
        "pixelcnn-r3h192-v1",
        include_bytes!("../models/pixelcnn-r3h192-v1.llifm"),
    ),
];
/// The default model's file.
pub const DEFAULT_PIXELCNN: &[u8] = BUILTIN_MODELS[0].1;
/// Alias of the default model.
pub const DEFAULT_MODEL_NAME: &str = "default";

/// A model that can code images.
#[derive(Clone, Debug)]
pub enum Model {
    /// No model: samples stored as they are (8 bits each). Useful as a baseline and in tests.
    Stored,
    /// An integer-exact local PixelCNN.
    PixelCnn(Arc<PixelCnnInt>),
}

impl Model {
    /// Parses a model file (any family llif knows).
    pub fn from_bytes(bytes: &[u8]) -> Result<Model> {
        Ok(Model::PixelCnn(Arc::new(PixelCnnInt::from_bytes(bytes)?)))
    }

    pub fn from_file(path: &Path) -> Result<Model> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Model::from_bytes(&bytes)
    }

    pub fn family(&self) -> CodecFamily {
        match self {
            Model::Stored => CodecFamily::Stored,
            Model::PixelCnn(_) => CodecFamily::PixelCnn,
        }
    }

    /// The id written into files; `None` for [`Model::Stored`].
    pub fn id(&self) -> Option<ModelId> {
        match self {
            Model::Stored => None,
            Model::PixelCnn(m) => Some(m.id),
        }
    }

    pub fn name(&self) -> String {
        match self {
            Model::Stored => "stored".into(),
            Model::PixelCnn(m) => m.meta.name.clone(),
        }
    }
}

/// The models a decoder may use, found by the id in a file's header.
#[derive(Clone, Debug, Default)]
pub struct ModelSet {
    models: Vec<(String, Model)>,
}

impl ModelSet {
    /// An empty set (only `stored` files decode).
    pub fn empty() -> ModelSet {
        ModelSet::default()
    }

    /// The models compiled into llif, the default first (also found as `default`).
    pub fn builtin() -> ModelSet {
        let mut set = ModelSet::empty();
        for (name, bytes) in BUILTIN_MODELS {
            set.add(
                name,
                Model::from_bytes(bytes).expect("embedded models are valid (tested)"),
            );
        }
        set
    }

    /// Adds a model under `name` (later lookups by name find the first one added).
    pub fn add(&mut self, name: &str, model: Model) {
        self.models.push((name.to_string(), model));
    }

    /// The default model: the first one added.
    pub fn default_model(&self) -> Option<&Model> {
        self.models.first().map(|(_, m)| m)
    }

    /// A model by name, by model id (8 hex digits), or `stored`.
    pub fn find(&self, key: &str) -> Option<Model> {
        if key == "stored" {
            return Some(Model::Stored);
        }
        if key == DEFAULT_MODEL_NAME {
            return self.default_model().cloned();
        }
        if let Some((_, m)) = self
            .models
            .iter()
            .find(|(n, m)| n == key || m.name() == key)
        {
            return Some(m.clone());
        }
        let id: ModelId = key.parse().ok()?;
        self.by_id(id).cloned()
    }

    pub fn by_id(&self, id: ModelId) -> Option<&Model> {
        self.models
            .iter()
            .map(|(_, m)| m)
            .find(|m| m.id() == Some(id))
    }

    /// `(name, model)` pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Model)> {
        self.models.iter().map(|(n, m)| (n.as_str(), m))
    }
}

/// What an encode produced, for reports (theory vs actual bits).
#[derive(Clone, Debug)]
pub struct Encoded {
    /// The complete `.llif` file.
    pub bytes: Vec<u8>,
    /// The model's ideal code length of the samples in bits (Σ −log2 p); `None` for `stored`.
    pub ideal_bits: Option<f64>,
    pub header_bytes: usize,
}

/// Encodes `image` with `model` into a complete `.llif` file.
pub fn encode_image(image: &Image, model: &Model) -> Result<Vec<u8>> {
    Ok(encode_image_with_stats(image, model)?.bytes)
}

/// [`encode_image`], also returning the model's ideal code length.
pub fn encode_image_with_stats(image: &Image, model: &Model) -> Result<Encoded> {
    let header = Header {
        version: FORMAT_VERSION,
        family: model.family(),
        layout: image.layout(),
        model: model.id(),
        width: image.width(),
        height: image.height(),
        check: 0,
    };
    let (payload, ideal_bits) = match model {
        Model::Stored => (image.data().to_vec(), None),
        Model::PixelCnn(m) => {
            let (payload, stats) = pixelcnn::encode_payload(m, image)?;
            (payload, Some(stats.ideal_bits))
        }
    };
    let header_bytes = header.to_bytes().len();
    Ok(Encoded {
        bytes: format::assemble(header, image.data(), &payload),
        ideal_bits,
        header_bytes,
    })
}

/// Parses and validates a file's header without decoding the image.
pub fn read_header(bytes: &[u8], limits: &Limits) -> Result<Header> {
    Ok(Header::parse(bytes, limits)?.header)
}

/// Decodes a `.llif` file, using `models` to find the model its header names.
pub fn decode_image(bytes: &[u8], models: &ModelSet, limits: &Limits) -> Result<Image> {
    let file = Header::parse(bytes, limits)?;
    let h = file.header;
    let samples = match h.family {
        CodecFamily::Stored => {
            if file.payload.len() as u64 != h.samples() {
                return Err(Error::CorruptPayload(format!(
                    "stored payload has {} bytes, the image {}",
                    file.payload.len(),
                    h.samples()
                )));
            }
            file.payload.to_vec()
        }
        CodecFamily::PixelCnn => {
            let id = h
                .model
                .ok_or_else(|| Error::InvalidHeader("pixelcnn file without model id".into()))?;
            let model = match models.by_id(id) {
                Some(Model::PixelCnn(m)) => m.clone(),
                _ => return Err(Error::UnknownModel(id.to_string())),
            };
            pixelcnn::decode_payload(&model, h.width, h.height, h.layout, file.payload)?
        }
        CodecFamily::Flow | CodecFamily::Vae => {
            return Err(Error::InvalidHeader(format!(
                "codec family {} is reserved",
                h.family
            )))
        }
    };
    format::verify_check(&file, &samples)?;
    Image::new(h.width, h.height, h.layout, samples)
}
