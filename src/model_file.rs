//! The model-file container (`.llifm`), shared by every model family.
//!
//! ```text
//! magic      8 bytes  "LLIFMDL1"
//! meta_len   u32 LE   length of the metadata
//! meta       JSON     an object with at least "family" (e.g. "pixelcnn") and "name"
//! body       rest     the family's own layout (PixelCNN: its integer layers)
//! ```
//!
//! A model's id is the first 4 bytes of the SHA-256 of the whole file ([`ModelId::of_bytes`]), so
//! this layout is frozen: changing a byte of it would change the id of every shipped model and
//! orphan every file written with them. The container knows nothing of any family; each family
//! parses its own metadata and body, and [`crate::family`] picks the family by the `family` field.

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::format::ModelId;

/// First bytes of a model file.
pub const MODEL_MAGIC: &[u8; 8] = b"LLIFMDL1";

/// The largest metadata block a reader accepts (the shipped models' is under 200 bytes).
pub const MAX_META_BYTES: usize = 1 << 16;

/// A parsed container: the family-independent part of a model file.
#[derive(Clone, Copy, Debug)]
pub struct ModelFile<'a> {
    /// Id of the whole file.
    pub id: ModelId,
    /// The `family` field of the metadata, e.g. `"pixelcnn"`.
    pub family: &'a str,
    /// The metadata JSON as stored (the family deserializes its own fields from it).
    pub meta_json: &'a [u8],
    /// Everything after the metadata.
    pub body: &'a [u8],
}

/// The two fields every model's metadata has.
#[derive(Deserialize)]
struct CommonMeta<'a> {
    #[serde(borrow)]
    family: &'a str,
    #[allow(dead_code)] // checked present here; each family keeps its own copy
    name: String,
}

impl<'a> ModelFile<'a> {
    /// Splits a model file into metadata and body, checking the magic and the lengths.
    pub fn parse(bytes: &'a [u8]) -> Result<ModelFile<'a>> {
        ModelFile::parse_with_id(bytes, ModelId::of_bytes(bytes))
    }

    /// [`ModelFile::parse`] of a file whose id is known (a built-in model's, checked against
    /// its hash by the tests), without hashing it again. Crate-private: an id a caller could
    /// attach to any bytes would let a file decode with the wrong model.
    pub(crate) fn parse_with_id(bytes: &'a [u8], id: ModelId) -> Result<ModelFile<'a>> {
        let rest = bytes
            .strip_prefix(MODEL_MAGIC)
            .ok_or_else(|| Error::InvalidModel("not an llif model file".into()))?;
        let (len, rest) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| Error::InvalidModel("model file truncated".into()))?;
        let meta_len = u32::from_le_bytes(*len) as usize;
        if meta_len > MAX_META_BYTES || rest.len() < meta_len {
            return Err(Error::InvalidModel(format!(
                "model metadata of {meta_len} bytes does not fit the file"
            )));
        }
        let (meta_json, body) = rest.split_at(meta_len);
        let common: CommonMeta<'a> = serde_json::from_slice(meta_json)
            .map_err(|e| Error::InvalidModel(format!("model metadata: {e}")))?;
        Ok(ModelFile {
            id,
            family: common.family,
            meta_json,
            body,
        })
    }

    /// Assembles a model file from its metadata JSON and body.
    pub fn assemble(meta_json: &[u8], body: &[u8]) -> Vec<u8> {
        let mut out = MODEL_MAGIC.to_vec();
        out.extend_from_slice(&(meta_json.len() as u32).to_le_bytes());
        out.extend_from_slice(meta_json);
        out.extend_from_slice(body);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_splits_and_reassembles_byte_for_byte() {
        let meta = br#"{"family":"pixelcnn","name":"x","arch":1}"#;
        let bytes = ModelFile::assemble(meta, &[1, 2, 3]);
        let f = ModelFile::parse(&bytes).unwrap();
        assert_eq!(f.family, "pixelcnn");
        assert_eq!(f.meta_json, meta);
        assert_eq!(f.body, &[1, 2, 3]);
        assert_eq!(f.id, ModelId::of_bytes(&bytes));
        assert_eq!(ModelFile::assemble(f.meta_json, f.body), bytes);
    }

    #[test]
    fn damaged_containers_are_invalid_models() {
        let bytes = ModelFile::assemble(br#"{"family":"pixelcnn","name":"x"}"#, &[]);
        for cut in 0..bytes.len() {
            assert!(matches!(
                ModelFile::parse(&bytes[..cut]),
                Err(Error::InvalidModel(_))
            ));
        }
        let no_family = ModelFile::assemble(br#"{"name":"x"}"#, &[]);
        assert!(matches!(
            ModelFile::parse(&no_family),
            Err(Error::InvalidModel(_))
        ));
        let mut huge = MODEL_MAGIC.to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            ModelFile::parse(&huge),
            Err(Error::InvalidModel(_))
        ));
    }
}
