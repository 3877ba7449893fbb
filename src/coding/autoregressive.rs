//! The one small trait through which an autoregressive model drives the range coder, and the
//! generic encode/decode loops. The encoder replays exactly the decoder's schedule: it asks the
//! model for the same groups in the same order, so the two cannot drift apart.

use super::{AnsStack, QuantizedCdf, RangeDecoder, RangeEncoder};
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

/// The desync trace (see `DESYNC.md`): with `LLIF_TRACE=PREFIX` set, the encoder writes one line
/// per coded symbol to `PREFIX.enc` and the decoder to `PREFIX.dec`: the symbol's position in
/// coding order, its sample index, its value, its frequency, and a CRC-32 of the whole
/// cumulative table. Where an encoder and a decoder part, the two files part at the first
/// symbol whose distribution (or value) differs; `scripts/first-desync.sh` finds it.
struct Trace {
    out: Option<std::io::BufWriter<std::fs::File>>,
    coded: u64,
}

impl Trace {
    fn from_env(side: &str) -> Trace {
        let out = std::env::var_os("LLIF_TRACE").and_then(|prefix| {
            let mut path = prefix;
            path.push(format!(".{side}"));
            std::fs::File::create(path)
                .ok()
                .map(std::io::BufWriter::new)
        });
        Trace { out, coded: 0 }
    }

    fn record<D: QuantizedCdf + ?Sized>(&mut self, idx: usize, value: u32, dist: &D) {
        let Some(out) = self.out.as_mut() else {
            return;
        };
        use std::io::Write;
        let mut crc = crc32fast::Hasher::new();
        for x in 0..=dist.num_symbols() {
            crc.update(&dist.cdf(x).to_le_bytes());
        }
        let _ = writeln!(
            out,
            "{} sample={idx} value={value} freq={} table={:08x}",
            self.coded,
            dist.frequency(value),
            crc.finalize()
        );
        self.coded += 1;
    }
}

/// Statistics of one encode.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CodingStats {
    /// The model's ideal code length (Σ −log2 p) in bits.
    pub ideal_bits: f64,
    /// Bytes of payload produced.
    pub payload_bytes: usize,
}

/// Replays the model's schedule with the true `samples` (teacher forcing), calling
/// `each(index, value, distribution)` for every sample in coding order; checks that the model
/// names every sample exactly once.
fn replay<M: AutoregressiveModel>(
    model: &mut M,
    samples: &[u8],
    mut each: impl FnMut(usize, u8, &M::Dist) -> Result<()>,
) -> Result<()> {
    if samples.len() != model.sample_count() {
        return Err(Error::InvalidImage(format!(
            "model expects {} samples, got {}",
            model.sample_count(),
            samples.len()
        )));
    }
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
            each(*idx, v, dist)?;
            values.push(v);
        }
        model.commit(&values);
    }
    if seen.iter().any(|s| !s) {
        return Err(Error::Internal("model did not code every sample".into()));
    }
    Ok(())
}

/// Runs the model's schedule, taking each sample's value from `next(index, distribution)`, and
/// returns the samples (the decoders' loop).
fn decode_schedule<M: AutoregressiveModel>(
    model: &mut M,
    mut next: impl FnMut(usize, &M::Dist) -> Result<u32>,
) -> Result<Vec<u8>> {
    let n = model.sample_count();
    // Allocated fallibly: a file's size was checked against the caller's limits, but an
    // allocation that fails anyway is an error, not an abort.
    let mut out = crate::image::try_alloc(n as u64)?;
    out.resize(n, 0);
    let mut seen = crate::image::try_alloc(n as u64)?;
    seen.resize(n, 0);
    let mut group = Vec::new();
    let mut values = Vec::new();
    while model.next_group(&mut group)? {
        values.clear();
        for (idx, dist) in &group {
            let v = next(*idx, dist)?;
            let v = u8::try_from(v).map_err(|_| {
                Error::CorruptPayload(format!("decoded symbol {v} is not a sample"))
            })?;
            match seen.get_mut(*idx) {
                Some(s) if *s == 0 => *s = 1,
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
    if seen.contains(&0) {
        return Err(Error::Internal("model did not code every sample".into()));
    }
    Ok(out)
}

/// Encodes `samples` (indexed as the model's sample indices) into a range-coder payload.
pub fn encode_autoregressive<M: AutoregressiveModel>(
    model: &mut M,
    samples: &[u8],
) -> Result<(Vec<u8>, CodingStats)> {
    let mut enc = RangeEncoder::new();
    let mut trace = Trace::from_env("enc");
    replay(model, samples, |idx, v, dist| {
        trace.record(idx, v as u32, dist);
        enc.encode(v as u32, dist)
    })?;
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
    let mut dec = RangeDecoder::new(payload)?;
    let mut trace = Trace::from_env("dec");
    let out = decode_schedule(model, |idx, dist| {
        let v = dec.decode(dist)?;
        trace.record(idx, v, dist);
        Ok(v)
    })?;
    dec.finish()?;
    Ok(out)
}

/// Pushes `samples` onto an ANS stack so that [`pop_autoregressive`] pops them in the model's
/// schedule (a stack is last in, first out): the schedule is replayed with the true samples,
/// every distribution kept, and all are pushed last to first. Holds one distribution per
/// sample meanwhile. Returns the ideal code length in bits (Σ −log2 p). For bits-back coding,
/// where an image's likelihood must sit on the same stack as its latent.
pub fn push_autoregressive<M: AutoregressiveModel>(
    model: &mut M,
    stack: &mut AnsStack,
    samples: &[u8],
) -> Result<f64>
where
    M::Dist: Clone,
{
    let mut coded = Vec::with_capacity(samples.len());
    replay(model, samples, |_, v, dist| {
        coded.push((v as u32, dist.clone()));
        Ok(())
    })?;
    let mut ideal_bits = 0.0;
    for (v, dist) in coded.iter().rev() {
        ideal_bits -= (dist.frequency(*v) as f64 / super::TOTAL as f64).log2();
        stack.push(*v, dist)?;
    }
    Ok(ideal_bits)
}

/// Pops what [`push_autoregressive`] pushed, in the model's schedule.
pub fn pop_autoregressive<M: AutoregressiveModel>(
    model: &mut M,
    stack: &mut AnsStack,
) -> Result<Vec<u8>> {
    decode_schedule(model, |_, dist| stack.pop(dist))
}
