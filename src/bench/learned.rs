//! llif's own codecs in the bench, with the model's ideal code length beside the file size.

use std::collections::HashMap;
use std::sync::Mutex;

use super::BenchCodec;
use crate::codec::{decode_image, encode_image_with_stats, ModelChoice, ModelSet};
use crate::error::{Error, Result};
use crate::format::archive::{Archive, ArchiveBuilder};
use crate::format::Limits;
use crate::image::Image;

/// A `.llif` codec with one model, or a choice of models made per image as the CLI makes it
/// (`llif-pixelcnn` for `-m default`). `model_bits` reports the ideal code length the model gave
/// the image at encode time (Σ −log2 p, no header, no coder overhead).
pub struct LlifCodec {
    label: String,
    choice: ModelChoice,
    models: ModelSet,
    ideal: Mutex<HashMap<u64, f64>>,
    /// How many images each candidate coded (by position in the choice).
    chosen: Mutex<Vec<usize>>,
}

impl LlifCodec {
    pub fn new(choice: impl Into<ModelChoice>) -> LlifCodec {
        let choice = choice.into();
        let label = format!("llif-{}", choice.first().family());
        let mut models = ModelSet::empty();
        for m in choice.models() {
            models.add(&m.name(), m.clone());
        }
        let chosen = Mutex::new(vec![0; choice.models().len()]);
        LlifCodec {
            label,
            choice,
            models,
            ideal: Mutex::new(HashMap::new()),
            chosen,
        }
    }

    /// Named `llif MODEL` instead of `llif-FAMILY`, for a bench of several models side by side
    /// (a choice of models by its first and `+`).
    pub fn labelled_by_model(mut self) -> LlifCodec {
        let plus = if self.choice.models().len() > 1 {
            "+"
        } else {
            ""
        };
        self.label = format!("llif {}{plus}", self.choice.first().name());
        self
    }
}

/// An unnamed archive of `files`, parsed back and checked to hold exactly them (so decoding
/// it gives the images the per-file decodes gave); its size.
fn archive_of(files: &[Vec<u8>]) -> Result<usize> {
    let mut builder = ArchiveBuilder::new(false);
    for f in files {
        builder.push(None, f)?;
    }
    let bytes = builder.finish()?;
    let archive = Archive::parse(&bytes, &Limits::none())?;
    let same = archive.entries.len() == files.len()
        && archive
            .entries
            .iter()
            .zip(files)
            .all(|(e, f)| e.image_file() == *f);
    if !same {
        return Err(Error::Internal(
            "an archive does not hold the files it was made of".into(),
        ));
    }
    Ok(bytes.len())
}

fn key(img: &Image) -> u64 {
    let mut h = crc32fast::Hasher::new();
    h.update(img.data());
    ((img.width() as u64) << 32) ^ h.finalize() as u64 ^ ((img.height() as u64) << 48)
}

impl BenchCodec for LlifCodec {
    fn name(&self) -> String {
        self.label.clone()
    }

    fn encode(&self, img: &Image) -> Result<Vec<u8>> {
        let model = self.choice.choose(img)?;
        if let Some(i) = self
            .choice
            .models()
            .iter()
            .position(|m| m.id() == model.id())
        {
            if let Ok(mut c) = self.chosen.lock() {
                c[i] += 1;
            }
        }
        let enc = encode_image_with_stats(img, model)?;
        if let Some(bits) = enc.ideal_bits {
            if let Ok(mut m) = self.ideal.lock() {
                m.insert(key(img), bits);
            }
        }
        Ok(enc.bytes)
    }

    fn decode(&self, bytes: &[u8]) -> Result<Image> {
        decode_image(bytes, &self.models, &Limits::none())
    }

    fn model_bits(&self, img: &Image) -> Option<f64> {
        self.ideal.lock().ok()?.get(&key(img)).copied()
    }

    fn has_archives(&self) -> bool {
        true
    }

    fn archive_bytes(&self, files: &[Vec<u8>]) -> Option<Result<usize>> {
        Some(archive_of(files))
    }

    fn notes(&self) -> Vec<String> {
        let chosen = self.chosen.lock().map(|c| c.clone()).unwrap_or_default();
        let models: Vec<String> = self
            .choice
            .models()
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let id = m.id().map(|i| i.to_string()).unwrap_or_default();
                match (self.choice.models().len(), chosen.get(i)) {
                    (1, _) | (_, None) => format!("{} (id {id})", m.name()),
                    (_, Some(n)) => format!("{} (id {id}, chosen for {n} images)", m.name()),
                }
            })
            .collect();
        let word = if models.len() > 1 {
            "models chosen per image"
        } else {
            "model"
        };
        vec![format!(
            "{}: {word} {}; model bpsp is the model's ideal code length without header and coder overhead",
            self.label,
            models.join(", ")
        )]
    }
}
