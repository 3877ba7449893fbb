//! The coding layer: the one place that talks to `constriction`.
//!
//! Models hand over plain-Rust distributions ([`QuantizedCdf`]); this module turns them into
//! bits with a range coder (queue, for autoregressive models) or an ANS coder (stack, for flows
//! and bits-back). Everything here is integer arithmetic, so encoder and decoder agree on every
//! machine.

pub mod adaptive;
pub mod autoregressive;
pub mod bits_back;
pub mod categorical;
pub mod latent;
pub mod logistic;

use std::num::NonZeroU32;

use constriction::stream::model::{DecoderModel, EncoderModel, EntropyModel};
use constriction::stream::queue::{DefaultRangeDecoder, DefaultRangeEncoder};
use constriction::stream::stack::DefaultAnsCoder;
use constriction::stream::{Decode, Encode};

use crate::error::{Error, Result};

pub use categorical::Categorical;
pub use logistic::LogisticMixture;

/// Bits of probability precision of both coders: every cumulative table runs from 0 to 2^24.
pub const PRECISION: usize = 24;
/// `2^PRECISION`.
pub const TOTAL: u32 = 1 << PRECISION;

/// A distribution over the symbols `0 .. num_symbols()` as the coder sees it: a cumulative
/// table in [`PRECISION`]-bit fixed point. This is where models and coders meet.
///
/// Contract: `cdf(0) == 0`, `cdf(num_symbols()) == TOTAL`, and `cdf` strictly increasing, so
/// every symbol has a nonzero probability. Implementations must compute `cdf` with integer
/// arithmetic (or tables), so it is identical on every machine.
pub trait QuantizedCdf {
    /// Number of symbols, at least 1 and at most `TOTAL`.
    fn num_symbols(&self) -> u32;
    /// The cumulative frequency of the symbols below `x`, for `0 <= x <= num_symbols()`.
    fn cdf(&self, x: u32) -> u32;

    /// The symbol whose interval `[cdf(x), cdf(x+1))` contains `q < TOTAL`.
    /// The default is a binary search over `cdf`.
    fn quantile(&self, q: u32) -> u32 {
        bisect_quantile(self, q, 0, self.num_symbols())
    }

    /// `(x, cdf(x), cdf(x + 1))` for `x = quantile(q)`: what a decoder needs of one symbol.
    /// A distribution whose search reads those two values anyway returns them instead of
    /// reading them again.
    fn quantile_with_bounds(&self, q: u32) -> (u32, u32, u32) {
        let x = self.quantile(q);
        (x, self.cdf(x), self.cdf(x + 1))
    }

    /// Probability of `x` in units of 2^-24.
    fn frequency(&self, x: u32) -> u32 {
        self.cdf(x + 1) - self.cdf(x)
    }

    /// The ideal code length of `x` in bits (for reports; never used for coding).
    fn bits(&self, x: u32) -> f64 {
        PRECISION as f64 - (self.frequency(x) as f64).log2()
    }
}

/// The symbol whose interval contains `q`, searched between `lo` and `hi` with
/// `cdf(lo) <= q < cdf(hi)` (the default quantile bisects the whole table).
pub(crate) fn bisect_quantile<D: QuantizedCdf + ?Sized>(d: &D, q: u32, lo: u32, hi: u32) -> u32 {
    // The symbol found does not depend on the bracket's cdf values, only the bounds returned.
    bisect_bracket(d, q, (lo, 0), (hi, 0)).0
}

/// Bisects a bracket `(lo, cdf(lo))`, `(hi, cdf(hi))` with `cdf(lo) <= q < cdf(hi)` down to one
/// symbol: `(x, cdf(x), cdf(x + 1))`, each value of `cdf` read once.
pub(crate) fn bisect_bracket<D: QuantizedCdf + ?Sized>(
    d: &D,
    q: u32,
    (mut lo, mut c_lo): (u32, u32),
    (mut hi, mut c_hi): (u32, u32),
) -> (u32, u32, u32) {
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        let c = d.cdf(mid);
        if c <= q {
            (lo, c_lo) = (mid, c);
        } else {
            (hi, c_hi) = (mid, c);
        }
    }
    (lo, c_lo, c_hi)
}

/// Checks the [`QuantizedCdf`] contract over the whole table (for tests and model loading).
pub fn validate_cdf<D: QuantizedCdf + ?Sized>(d: &D) -> Result<()> {
    let n = d.num_symbols();
    if n == 0 || n > TOTAL {
        return Err(Error::InvalidModel(format!(
            "distribution over {n} symbols"
        )));
    }
    if d.cdf(0) != 0 || d.cdf(n) != TOTAL {
        return Err(Error::InvalidModel(
            "cumulative table does not run from 0 to 2^24".into(),
        ));
    }
    for x in 0..n {
        if d.cdf(x + 1) <= d.cdf(x) {
            return Err(Error::InvalidModel(format!(
                "symbol {x} has zero probability"
            )));
        }
    }
    Ok(())
}

/// Adapts a [`QuantizedCdf`] to constriction's model traits.
struct CdfModel<'a, D: ?Sized>(&'a D);

impl<D: QuantizedCdf + ?Sized> EntropyModel<PRECISION> for CdfModel<'_, D> {
    type Symbol = u32;
    type Probability = u32;
}

impl<D: QuantizedCdf + ?Sized> EncoderModel<PRECISION> for CdfModel<'_, D> {
    fn left_cumulative_and_probability(
        &self,
        symbol: impl std::borrow::Borrow<u32>,
    ) -> Option<(u32, NonZeroU32)> {
        let x = *symbol.borrow();
        if x >= self.0.num_symbols() {
            return None;
        }
        let left = self.0.cdf(x);
        NonZeroU32::new(self.0.cdf(x + 1).wrapping_sub(left)).map(|p| (left, p))
    }
}

/// One symbol's interval, read once from a [`QuantizedCdf`]: what an encoder pushes. Building
/// it reads the distribution; pushing it reads nothing else, so intervals can be built ahead
/// of time and on other threads than the coder's, and give the symbol's ideal bits for free.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval {
    symbol: u32,
    left: u32,
    probability: NonZeroU32,
}

impl Interval {
    /// Symbol `x`'s interval under `d`; an error if `x` is not a symbol of `d` or has no
    /// probability (a broken distribution).
    pub fn of<D: QuantizedCdf + ?Sized>(x: u32, d: &D) -> Result<Interval> {
        let broken = || Error::Internal(format!("symbol {x} has no interval to code"));
        if x >= d.num_symbols() {
            return Err(broken());
        }
        let left = d.cdf(x);
        let probability = NonZeroU32::new(d.cdf(x + 1).wrapping_sub(left)).ok_or_else(broken)?;
        Ok(Interval {
            symbol: x,
            left,
            probability,
        })
    }

    /// The symbol's ideal code length, `24 − log2(probability)` bits.
    pub fn bits(&self) -> f64 {
        PRECISION as f64 - (self.probability.get() as f64).log2()
    }
}

impl EntropyModel<PRECISION> for Interval {
    type Symbol = u32;
    type Probability = u32;
}

impl EncoderModel<PRECISION> for Interval {
    fn left_cumulative_and_probability(
        &self,
        symbol: impl std::borrow::Borrow<u32>,
    ) -> Option<(u32, NonZeroU32)> {
        (*symbol.borrow() == self.symbol).then_some((self.left, self.probability))
    }
}

impl<D: QuantizedCdf + ?Sized> DecoderModel<PRECISION> for CdfModel<'_, D> {
    fn quantile_function(&self, quantile: u32) -> (u32, u32, NonZeroU32) {
        let (x, left, right) = self.0.quantile_with_bounds(quantile);
        let p = right.wrapping_sub(left);
        // A distribution that breaks the contract must not panic the decoder: a zero
        // probability is reported as 1, and the final-state check then fails the file.
        (x, left, NonZeroU32::new(p).unwrap_or(NonZeroU32::MIN))
    }
}

// ---------------------------------------------------------------------------------------------
// Range coding (queue): symbols come out in the order they went in.

/// Range encoder for autoregressive models. Symbols are decoded in the order they are encoded.
pub struct RangeEncoder {
    inner: DefaultRangeEncoder,
    ideal_bits: f64,
}

impl Default for RangeEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl RangeEncoder {
    pub fn new() -> Self {
        RangeEncoder {
            inner: DefaultRangeEncoder::new(),
            ideal_bits: 0.0,
        }
    }

    /// Encodes symbol `x` with distribution `d`.
    pub fn encode<D: QuantizedCdf + ?Sized>(&mut self, x: u32, d: &D) -> Result<()> {
        let model = Interval::of(x, d)?;
        self.ideal_bits += model.bits();
        self.inner
            .encode_symbol(x, model)
            .map_err(|e| Error::Internal(format!("range coder cannot encode symbol {x}: {e:?}")))
    }

    /// The ideal code length of everything encoded so far, in bits: what the model alone says.
    pub fn ideal_bits(&self) -> f64 {
        self.ideal_bits
    }

    /// Seals the stream and returns its bytes (words big-endian, trailing zero bytes dropped).
    pub fn finish(self) -> Vec<u8> {
        let words = match self.inner.into_compressed() {
            Ok(w) => w,
            Err(never) => match never {},
        };
        let mut bytes: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
        while bytes.last() == Some(&0) {
            bytes.pop();
        }
        bytes
    }
}

/// Range decoder, the mirror of [`RangeEncoder`].
pub struct RangeDecoder {
    inner: DefaultRangeDecoder,
}

impl RangeDecoder {
    pub fn new(payload: &[u8]) -> Result<Self> {
        let words: Vec<u32> = payload
            .chunks(4)
            .map(|c| {
                let mut w = [0u8; 4];
                w[..c.len()].copy_from_slice(c);
                u32::from_be_bytes(w)
            })
            .collect();
        let inner = DefaultRangeDecoder::from_compressed(words)
            .map_err(|_| Error::CorruptPayload("range coder cannot start".into()))?;
        Ok(RangeDecoder { inner })
    }

    /// Decodes one symbol with distribution `d`.
    pub fn decode<D: QuantizedCdf + ?Sized>(&mut self, d: &D) -> Result<u32> {
        self.inner.decode_symbol(CdfModel(d)).map_err(|_| {
            Error::CorruptPayload(
                "the range-coded data is inconsistent (damaged or truncated file)".into(),
            )
        })
    }

    /// The final-state check of the spec: the decoder must stand exactly where the encoder
    /// sealed the stream, with no payload left unread.
    pub fn finish(self) -> Result<()> {
        let (bulk, state, point) = self.inner.into_raw_parts();
        let (buf, pos) = bulk.into_buf_and_pos();
        if pos < buf.len() {
            return Err(Error::CorruptPayload(format!(
                "{} payload words left unread",
                buf.len() - pos
            )));
        }
        let sealed = (state.lower().wrapping_add((1u64 << 32) - 1) >> 32) << 32;
        if point != sealed {
            return Err(Error::CorruptPayload(
                "range coder final state does not match the encoder's".into(),
            ));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// ANS (stack): last in, first out. Used by flows and by bits-back coding.

/// An ANS coder used as a stack of bits: `push` encodes, `pop` decodes the most recently pushed
/// symbol. Bits-back coding pops symbols it never pushed (decoding from the stack's bits).
pub struct AnsStack {
    inner: DefaultAnsCoder,
}

impl Default for AnsStack {
    fn default() -> Self {
        Self::new()
    }
}

impl AnsStack {
    /// An empty stack.
    pub fn new() -> Self {
        AnsStack {
            inner: DefaultAnsCoder::new(),
        }
    }

    /// A stack holding `bytes` from [`AnsStack::into_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if !bytes.len().is_multiple_of(4) {
            return Err(Error::CorruptPayload(
                "ANS payload is not a whole number of words".into(),
            ));
        }
        let words: Vec<u32> = bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let inner = DefaultAnsCoder::from_compressed(words)
            .map_err(|_| Error::CorruptPayload("ANS payload ends in a zero word".into()))?;
        Ok(AnsStack { inner })
    }

    /// Pushes (encodes) `x` with distribution `d`.
    pub fn push<D: QuantizedCdf + ?Sized>(&mut self, x: u32, d: &D) -> Result<()> {
        self.inner
            .encode_symbol(x, CdfModel(d))
            .map_err(|e| Error::Internal(format!("ANS coder cannot encode symbol {x}: {e:?}")))
    }

    /// Pushes a symbol's interval (as [`AnsStack::push`] of its symbol and distribution).
    pub fn push_interval(&mut self, interval: &Interval) -> Result<()> {
        let x = interval.symbol;
        self.inner
            .encode_symbol(x, *interval)
            .map_err(|e| Error::Internal(format!("ANS coder cannot encode symbol {x}: {e:?}")))
    }

    /// Pops (decodes) a symbol with distribution `d`.
    pub fn pop<D: QuantizedCdf + ?Sized>(&mut self, d: &D) -> Result<u32> {
        self.inner.decode_symbol(CdfModel(d)).map_err(|_| {
            Error::CorruptPayload(
                "the ANS-coded data is inconsistent (damaged or truncated file)".into(),
            )
        })
    }

    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// Size of the stack's content in bits.
    pub fn num_bits(&self) -> usize {
        self.inner.num_bits()
    }

    /// The stack's words, little-endian.
    pub fn into_bytes(self) -> Vec<u8> {
        let words = match self.inner.into_compressed() {
            Ok(w) => w,
            Err(never) => match never {},
        };
        words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }
}

#[cfg(test)]
mod tests;
