//! The one small trait through which an autoregressive model drives the range coder, and the
//! generic encode/decode loops. The encoder replays exactly the decoder's schedule: it asks the
//! model for the same groups in the same order, so the two cannot drift apart.

use super::{QuantizedCdf, RangeDecoder, RangeEncoder};
use crate::error::{Error, Result};

/// An autoregressive model over the samples of one image, as the coder sees it.
///
/// The model hands out groups of `(sample index, distribution)` in coding order; each group may
/// depend only on samples committed before it. Decoding commits the decoded values; encoding
/// commits the true ones. A group is typically a wavefront of pixels for one channel, whose
/// distributions the model can compute in parallel.
pub trait AutoregressiveModel {
    type Dist: QuantizedCdf;

    /// Number of samples the model will code in all.
    fn sample_count(&self) -> usize;

    /// Appends the next group to `out` (cleared first) and returns `Ok(false)`, with `out`
    /// empty, once every sample was handed out.
    fn next_group(&mut self, out: &mut Vec<(usize, Self::Dist)>) -> Result<bool>;

    /// The values of the group just handed out, in the same order.
    fn commit(&mut self, values: &[u8]);
}

/// Statistics of one encode.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CodingStats {
    /// The model's ideal code length (Σ −log2 p) in bits.
    pub ideal_bits: f64,
    /// Bytes of payload produced.
    pub payload_bytes: usize,
}

/// Encodes `samples` (indexed as the model's sample indices) into a range-coder payload.
pub fn encode_autoregressive<M: AutoregressiveModel>(
    model: &mut M,
    samples: &[u8],
) -> Result<(Vec<u8>, CodingStats)> {
    if samples.len() != model.sample_count() {
        return Err(Error::InvalidImage(format!(
            "model expects {} samples, got {}",
            model.sample_count(),
            samples.len()
        )));
    }
    let mut enc = RangeEncoder::new();
    let mut group = Vec::new();
    let mut values = Vec::new();
    let mut seen = vec![false; samples.len()];
    while model.next_group(&mut group)? {
        values.clear();
        for (idx, dist) in &group {
            let v = *samples
                .get(*idx)
                .ok_or_else(|| Error::Internal(format!("model named sample {idx}")))?;
            if std::mem::replace(&mut seen[*idx], true) {
                return Err(Error::Internal(format!("model coded sample {idx} twice")));
            }
            enc.encode(v as u32, dist)?;
            values.push(v);
        }
        model.commit(&values);
    }
    if seen.iter().any(|s| !s) {
        return Err(Error::Internal("model did not code every sample".into()));
    }
    let ideal_bits = enc.ideal_bits();
    let payload = enc.finish();
    let stats = CodingStats {
        ideal_bits,
        payload_bytes: payload.len(),
    };
    Ok((payload, stats))
}

/// Decodes a payload written by [`encode_autoregressive`] with the same model.
pub fn decode_autoregressive<M: AutoregressiveModel>(
    model: &mut M,
    payload: &[u8],
) -> Result<Vec<u8>> {
    let n = model.sample_count();
    let mut out = vec![0u8; n];
    let mut seen = vec![false; n];
    let mut dec = RangeDecoder::new(payload)?;
    let mut group = Vec::new();
    let mut values = Vec::new();
    while model.next_group(&mut group)? {
        values.clear();
        for (idx, dist) in &group {
            let v = dec.decode(dist)?;
            let v = u8::try_from(v).map_err(|_| {
                Error::CorruptPayload(format!("decoded symbol {v} is not a sample"))
            })?;
            match seen.get_mut(*idx) {
                Some(s) if !*s => *s = true,
                _ => {
                    return Err(Error::Internal(format!(
                        "model named sample {idx} out of order"
                    )))
                }
            }
            out[*idx] = v;
            values.push(v);
        }
        model.commit(&values);
    }
    if seen.iter().any(|s| !s) {
        return Err(Error::Internal("model did not code every sample".into()));
    }
    dec.finish()?;
    Ok(out)
}
