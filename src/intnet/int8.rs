//! The 8-bit engine: dense layers on `u8` activations with exact `i32` accumulators, and
//! weights of 8 bits (the fast path) or 16 bits (for layers that need the precision), chosen
//! per layer ([`WeightBits`]).
//!
//! [`U8Linear::forward_reference`] is the definition (straight loops in `i64`). The kernels
//! ([`Kernel`]) compute the same accumulators with the CPU's multiply-add instructions, chosen
//! at run time; every kernel gives the same integers by construction, and the tests force each
//! kernel this machine has and compare them bit for bit with the reference:
//!
//! - **8-bit weights are limited to `[-64, 64]`** ([`WEIGHT_MAX_8`]). AVX2's `vpmaddubsw`
//!   multiplies unsigned bytes by signed bytes and adds adjacent pairs into *saturating* `i16`:
//!   with `|w| ≤ 64` and `x ≤ 255` a pair is at most `2 · 255 · 64 = 32640 < 2^15`, so it never
//!   saturates. (VNNI's `vpdpbusd` accumulates in `i32` and would not need the limit; one limit
//!   for all keeps every kernel equal.)
//! - 16-bit weights are multiplied by the zero-extended bytes with `vpmaddwd` (AVX2) or
//!   `vpdpwssd` (VNNI): `i16` products summed in pairs into `i32`, no saturation.
//! - Accumulators are bounded when a layer is loaded: `|bias| + Σ|w| · 255 < 2^31`, so `i32`
//!   sums in any order are exact.
//! - Requantization multiplies the accumulator by a per-output 16-bit multiplier and shifts
//!   (rounding half up) in `i64`, then clamps: per-output scales need not be powers of two.

use std::ops::Range;
use std::sync::OnceLock;

use crate::error::{Error, Result};
use crate::intnet::{take, ACC_LIMIT};

/// Largest 8-bit weight magnitude (see the module docs: no `i16` saturation in `vpmaddubsw`).
pub const WEIGHT_MAX_8: i32 = 64;
/// Largest 16-bit weight magnitude.
pub const WEIGHT_MAX_16: i32 = i16::MAX as i32;

/// The width of a layer's weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightBits {
    /// `i8` in `[-64, 64]`: twice the multiply-accumulates per instruction, half the memory.
    Eight,
    /// `i16`: for layers whose outputs need the precision (the output layer of a network
    /// quantized after training).
    Sixteen,
}

impl WeightBits {
    pub fn max(self) -> i32 {
        match self {
            WeightBits::Eight => WEIGHT_MAX_8,
            WeightBits::Sixteen => WEIGHT_MAX_16,
        }
    }

    pub fn bits(self) -> u8 {
        match self {
            WeightBits::Eight => 8,
            WeightBits::Sixteen => 16,
        }
    }
}

/// A layer's weights, row-major `[outputs][stride]`, zero past `inputs`.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Rows {
    Eight(Vec<i8>),
    Sixteen(Vec<i16>),
}
/// Largest requantization multiplier (exclusive): `|acc · mult| < 2^47`.
pub const MULT_LIMIT: i32 = 1 << 16;
/// Largest requantization shift.
pub const SHIFT_MAX: u8 = 62;
/// Rows are padded with zero weights to a multiple of this many inputs (one AVX-512 register),
/// so kernels never handle a tail.
pub const ROW_ALIGN: usize = 64;

/// `n` rounded up to a multiple of [`ROW_ALIGN`]: the length an input buffer of a layer with
/// `n` inputs must have (the padding's values do not matter: its weights are zero).
pub fn padded(n: usize) -> usize {
    n.div_ceil(ROW_ALIGN) * ROW_ALIGN
}

/// A dense layer on bytes: for every output `o`,
///
/// ```text
/// acc[o] = bias[o] + Σ_i weight[o][i] · x[i]     (x[i] in 0..=255; |w| ≤ 64 or |w| ≤ 32767)
/// y[o]   = clamp(floor((acc[o] · mult[o] + 2^(shift[o]−1)) / 2^shift[o]), lo, hi)
/// ```
///
/// (with shift 0, `y = clamp(acc · mult)`). Hidden layers clamp to `[0, 255]` (a capped ReLU
/// whose output is the next layer's input); output layers to their own range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct U8Linear {
    inputs: usize,
    outputs: usize,
    /// Row-major `[outputs][stride]`, `stride = padded(inputs)`, zero past `inputs`.
    weight: Rows,
    stride: usize,
    pub bias: Vec<i32>,
    /// `[outputs]`, each in `1..MULT_LIMIT`.
    pub mult: Vec<i32>,
    /// `[outputs]`, each `0..=SHIFT_MAX`.
    pub shift: Vec<u8>,
    pub lo: i32,
    pub hi: i32,
}

impl U8Linear {
    /// A layer from its row-major `[outputs][inputs]` weights (`i32` values that must fit
    /// `bits`) and per-output arrays. Checks shapes, ranges and the accumulator bound
    /// ([`U8Linear::read`] and the quantizer come here).
    pub fn new(
        inputs: usize,
        bits: WeightBits,
        weight: &[i32],
        bias: Vec<i32>,
        mult: Vec<i32>,
        shift: Vec<u8>,
        (lo, hi): (i32, i32),
    ) -> Result<U8Linear> {
        let outputs = bias.len();
        let bad = |m: String| Err(Error::InvalidModel(m));
        if inputs == 0 || outputs == 0 || inputs > 1 << 16 || outputs > 1 << 16 {
            return bad(format!("8-bit layer of {inputs}→{outputs}"));
        }
        if weight.len() != inputs * outputs || mult.len() != outputs || shift.len() != outputs {
            return bad(format!(
                "8-bit layer {inputs}→{outputs}: array sizes do not match"
            ));
        }
        if lo > hi
            || shift.iter().any(|&s| s > SHIFT_MAX)
            || mult.iter().any(|&m| !(1..MULT_LIMIT).contains(&m))
            || weight.iter().any(|&w| w.unsigned_abs() > bits.max() as u32)
        {
            return bad(format!(
                "8-bit layer {inputs}→{outputs}: weight, multiplier, shift or clamp out of range"
            ));
        }
        for o in 0..outputs {
            let row = &weight[o * inputs..(o + 1) * inputs];
            let acc =
                (bias[o] as i64).abs() + row.iter().map(|&w| (w as i64).abs() * 255).sum::<i64>();
            if acc >= ACC_LIMIT {
                return bad(format!(
                    "8-bit layer {inputs}→{outputs}: output {o} can reach {acc}, over 2^31"
                ));
            }
        }
        let stride = padded(inputs);
        fn pad<T: Copy + Default>(
            w: &[i32],
            inputs: usize,
            stride: usize,
            f: impl Fn(i32) -> T,
        ) -> Vec<T> {
            let mut v = vec![T::default(); stride * (w.len() / inputs)];
            for (dst, src) in v.chunks_exact_mut(stride).zip(w.chunks_exact(inputs)) {
                for (d, &s) in dst.iter_mut().zip(src) {
                    *d = f(s);
                }
            }
            v
        }
        let weight = match bits {
            WeightBits::Eight => Rows::Eight(pad(weight, inputs, stride, |w| w as i8)),
            WeightBits::Sixteen => Rows::Sixteen(pad(weight, inputs, stride, |w| w as i16)),
        };
        Ok(U8Linear {
            inputs,
            outputs,
            weight,
            stride,
            bias,
            mult,
            shift,
            lo,
            hi,
        })
    }

    pub fn weight_bits(&self) -> WeightBits {
        match self.weight {
            Rows::Eight(_) => WeightBits::Eight,
            Rows::Sixteen(_) => WeightBits::Sixteen,
        }
    }

    pub fn inputs(&self) -> usize {
        self.inputs
    }

    pub fn outputs(&self) -> usize {
        self.outputs
    }

    /// Length an input slice must have for [`U8Linear::accumulate`]: `padded(inputs)`.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// Output `o`'s weights (`inputs` of them, without the padding).
    pub fn row(&self, o: usize) -> Vec<i32> {
        let r = o * self.stride..o * self.stride + self.inputs;
        match &self.weight {
            Rows::Eight(w) => w[r].iter().map(|&v| v as i32).collect(),
            Rows::Sixteen(w) => w[r].iter().map(|&v| v as i32).collect(),
        }
    }

    pub fn parameters(&self) -> usize {
        self.inputs * self.outputs + self.outputs
    }

    /// The definition: straight loops in `i64`. `x.len() >= inputs`, `y.len() >= outputs`.
    pub fn forward_reference(&self, x: &[u8], y: &mut [i32]) {
        for (o, y) in y.iter_mut().enumerate().take(self.outputs) {
            let acc = self.bias[o] as i64
                + self
                    .row(o)
                    .iter()
                    .zip(x)
                    .map(|(&w, &v)| w as i64 * v as i64)
                    .sum::<i64>();
            *y = self.requantize(o, acc);
        }
    }

    /// Accumulators `bias + Σ w·x` of outputs `rows` into `acc[rows]`, with `kernel`.
    /// `x.len()` must be at least [`U8Linear::stride`]; the values past `inputs` are ignored.
    pub fn accumulate(&self, kernel: Kernel, x: &[u8], rows: Range<usize>, acc: &mut [i32]) {
        let x = &x[..self.stride];
        let span = rows.start * self.stride..rows.end * self.stride;
        let out = &mut acc[rows.clone()];
        match &self.weight {
            Rows::Eight(w) => kernel.dot_rows_i8(&w[span], x, out),
            Rows::Sixteen(w) => kernel.dot_rows_i16(&w[span], x, out),
        }
        for (a, &b) in out.iter_mut().zip(&self.bias[rows]) {
            *a = a.wrapping_add(b);
        }
    }

    /// Requantized outputs `rows` into `y[rows]` as bytes: for layers that clamp into `0..=255`
    /// (checked at load by the model that uses it). `acc` is scratch of at least `outputs`.
    pub fn forward_u8(
        &self,
        kernel: Kernel,
        x: &[u8],
        rows: Range<usize>,
        acc: &mut [i32],
        y: &mut [u8],
    ) {
        self.accumulate(kernel, x, rows.clone(), acc);
        kernel.requantize_bytes(
            &acc[rows.clone()],
            &self.mult[rows.clone()],
            &self.shift[rows.clone()],
            (self.lo, self.hi),
            &mut y[rows],
        );
    }

    /// Requantized outputs `rows` into `y[rows]` as `i32` (output layers).
    pub fn forward_i32(&self, kernel: Kernel, x: &[u8], rows: Range<usize>, y: &mut [i32]) {
        self.accumulate(kernel, x, rows.clone(), y);
        let params = self.mult[rows.clone()]
            .iter()
            .zip(&self.shift[rows.clone()]);
        for (y, (&m, &s)) in y[rows].iter_mut().zip(params) {
            *y = requantize(*y, m, s, self.lo, self.hi);
        }
    }

    /// [`U8Linear::accumulate`] for several inputs at once (`xs[p]` into `accs[p][rows]`):
    /// the same integers, with the weights loaded once for up to four inputs.
    pub fn accumulate_multi(
        &self,
        kernel: Kernel,
        xs: &[&[u8]],
        rows: Range<usize>,
        accs: &mut [&mut [i32]],
    ) {
        type Few<T> = smallvec::SmallVec<[T; 4]>;
        let xs: Few<&[u8]> = xs.iter().map(|x| &x[..self.stride]).collect();
        let span = rows.start * self.stride..rows.end * self.stride;
        let mut outs: Few<&mut [i32]> = accs.iter_mut().map(|a| &mut a[rows.clone()]).collect();
        match &self.weight {
            Rows::Eight(w) => kernel.dot_rows_i8_multi(&w[span], &xs, &mut outs),
            Rows::Sixteen(w) => kernel.dot_rows_i16_multi(&w[span], &xs, &mut outs),
        }
        for out in outs {
            for (a, &b) in out.iter_mut().zip(&self.bias[rows.clone()]) {
                *a = a.wrapping_add(b);
            }
        }
    }

    /// [`U8Linear::forward_u8`] for several inputs at once (`xs[p]` → `ys[p][rows]`, `accs[p]`
    /// scratch).
    pub fn forward_u8_multi(
        &self,
        kernel: Kernel,
        xs: &[&[u8]],
        rows: Range<usize>,
        accs: &mut [&mut [i32]],
        ys: &mut [&mut [u8]],
    ) {
        assert_eq!(ys.len(), xs.len());
        self.accumulate_multi(kernel, xs, rows.clone(), accs);
        for (acc, y) in accs.iter().zip(ys.iter_mut()) {
            kernel.requantize_bytes(
                &acc[rows.clone()],
                &self.mult[rows.clone()],
                &self.shift[rows.clone()],
                (self.lo, self.hi),
                &mut y[rows.clone()],
            );
        }
    }

    /// [`U8Linear::forward_i32`] for several inputs at once.
    pub fn forward_i32_multi(
        &self,
        kernel: Kernel,
        xs: &[&[u8]],
        rows: Range<usize>,
        ys: &mut [&mut [i32]],
    ) {
        self.accumulate_multi(kernel, xs, rows.clone(), ys);
        for y in ys.iter_mut() {
            let params = self.mult[rows.clone()]
                .iter()
                .zip(&self.shift[rows.clone()]);
            for (y, (&m, &s)) in y[rows.clone()].iter_mut().zip(params) {
                *y = requantize(*y, m, s, self.lo, self.hi);
            }
        }
    }

    #[inline]
    fn requantize(&self, o: usize, acc: i64) -> i32 {
        requantize(acc as i32, self.mult[o], self.shift[o], self.lo, self.hi)
    }

    /// Appends the serialized form (see [`U8Linear::read`]).
    pub fn write(&self, out: &mut Vec<u8>) {
        out.push(self.weight_bits().bits());
        for v in [self.inputs as u32, self.outputs as u32] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&self.lo.to_le_bytes());
        out.extend_from_slice(&self.hi.to_le_bytes());
        out.extend_from_slice(&self.shift);
        for &m in &self.mult {
            out.extend_from_slice(&(m as u16).to_le_bytes());
        }
        for b in &self.bias {
            out.extend_from_slice(&b.to_le_bytes());
        }
        for o in 0..self.outputs {
            for w in self.row(o) {
                match self.weight_bits() {
                    WeightBits::Eight => out.push(w as i8 as u8),
                    WeightBits::Sixteen => out.extend_from_slice(&(w as i16).to_le_bytes()),
                }
            }
        }
    }

    /// Reads a layer: `u8 weight bits (8 or 16), u32 inputs, u32 outputs, i32 lo, i32 hi,
    /// u8 shift[outputs], u16 mult[outputs], i32 bias[outputs], weight[outputs][inputs]` (`i8`
    /// or `i16`), all little-endian.
    /// `shape`: the `(inputs, outputs)` the model expects, checked before the weights are
    /// read, so a file cannot make the reader allocate more than its architecture needs.
    pub fn read(bytes: &mut &[u8], shape: (usize, usize)) -> Result<U8Linear> {
        let u32_at = |s: &[u8]| u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
        let bits = match take(bytes, 1)?[0] {
            8 => WeightBits::Eight,
            16 => WeightBits::Sixteen,
            b => return Err(Error::InvalidModel(format!("{b}-bit weights"))),
        };
        let head = take(bytes, 16)?;
        let (inputs, outputs) = (u32_at(&head[0..4]) as usize, u32_at(&head[4..8]) as usize);
        let (lo, hi) = (u32_at(&head[8..12]) as i32, u32_at(&head[12..16]) as i32);
        if (inputs, outputs) != shape {
            return Err(Error::InvalidModel(format!(
                "8-bit layer of {inputs}→{outputs}, expected {}→{}",
                shape.0, shape.1
            )));
        }
        let shift = take(bytes, outputs)?.to_vec();
        let mult = take(bytes, outputs * 2)?
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]) as i32)
            .collect();
        let bias = take(bytes, outputs * 4)?
            .chunks_exact(4)
            .map(|c| u32_at(c) as i32)
            .collect();
        let weight: Vec<i32> = match bits {
            WeightBits::Eight => take(bytes, outputs * inputs)?
                .iter()
                .map(|&b| b as i8 as i32)
                .collect(),
            WeightBits::Sixteen => take(bytes, outputs * inputs * 2)?
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]) as i32)
                .collect(),
        };
        U8Linear::new(inputs, bits, &weight, bias, mult, shift, (lo, hi))
    }
}

/// `clamp(floor((acc · mult + 2^(shift−1)) / 2^shift), lo, hi)` in `i64` (shift 0: no
/// rounding term). Exact: `|acc| < 2^31`, `mult < 2^16`.
#[inline]
fn requantize(acc: i32, mult: i32, shift: u8, lo: i32, hi: i32) -> i32 {
    let p = acc as i64 * mult as i64;
    let v = (p + ((1i64 << shift) >> 1)) >> shift;
    v.clamp(lo as i64, hi as i64) as i32
}

/// An implementation of the 8-bit dot products. All give the same integers; they differ only
/// in speed and in the CPUs that have them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// Plain Rust, any CPU.
    Portable,
    /// x86-64 AVX2: `vpmaddubsw` (u8·i8 pairs → i16) then `vpmaddwd` (→ i32).
    Avx2,
    /// x86-64 AVX-512 with VNNI: `vpdpbusd` (u8·i8 quads accumulated in i32).
    Avx512Vnni,
}

impl Kernel {
    /// Every kernel this CPU can run, portable first.
    pub fn available() -> Vec<Kernel> {
        let mut v = vec![Kernel::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                v.push(Kernel::Avx2);
            }
            if has_avx512vnni() {
                v.push(Kernel::Avx512Vnni);
            }
        }
        v
    }

    /// The kernel to use: the fastest available, unless the environment variable `LLIF_KERNEL`
    /// names another available one (`portable`, `avx2`, `avx512vnni`), for side-by-side runs.
    /// Chosen once per process.
    pub fn detect() -> Kernel {
        static CHOSEN: OnceLock<Kernel> = OnceLock::new();
        *CHOSEN.get_or_init(|| {
            let available = Kernel::available();
            let wanted = std::env::var("LLIF_KERNEL").ok();
            wanted
                .and_then(|name| available.iter().copied().find(|k| k.name() == name))
                .unwrap_or(*available.last().expect("portable is always available"))
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Kernel::Portable => "portable",
            Kernel::Avx2 => "avx2",
            Kernel::Avx512Vnni => "avx512vnni",
        }
    }

    /// `out[r] = Σ_i w[r·n + i] · x[i]` for each row `r`, `n = x.len()`, a multiple of
    /// [`ROW_ALIGN`]; `w.len() == out.len() · n`.
    pub fn dot_rows_i8(self, w: &[i8], x: &[u8], out: &mut [i32]) {
        let n = x.len();
        assert!(n.is_multiple_of(ROW_ALIGN) && w.len() == out.len() * n);
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 if std::arch::is_x86_feature_detected!("avx2") => {
                // SAFETY: the CPU has AVX2 (checked above); shapes asserted above.
                unsafe { x86::dot_rows_i8_avx2(w, x, out) }
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Vnni if has_avx512vnni() => {
                // SAFETY: the CPU has AVX-512 BW and VNNI (checked above); shapes asserted.
                unsafe { x86::dot_rows_i8_avx512vnni(w, x, out) }
            }
            // Portable, or a kernel this CPU lacks (only reachable by constructing it by
            // hand): the same integers, computed portably.
            _ => dot_rows_portable(w, x, out),
        }
    }

    /// [`Kernel::dot_rows_i8`] for several inputs at once: `outs[p][r] = Σ_i w[r·n + i] ·
    /// xs[p][i]`. The same integers as one call per input; on AVX-512 VNNI each weight load
    /// serves up to four inputs (a network's weights stream from L2 once per four pixels
    /// instead of once per pixel).
    pub fn dot_rows_i8_multi(self, w: &[i8], xs: &[&[u8]], outs: &mut [&mut [i32]]) {
        self.dot_rows_multi(
            xs,
            outs,
            |x, out| self.dot_rows_i8(w, x, out),
            |xs4, outs4| {
                #[cfg(not(target_arch = "x86_64"))]
                let _ = (xs4, outs4);
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `dot_rows_multi` calls this only on a CPU with AVX-512 BW and VNNI and
                // with shapes checked as `dot_rows_i8` checks them.
                unsafe {
                    x86::dot_rows_i8_avx512vnni_multi(w, xs4, outs4)
                }
            },
        )
    }

    /// [`Kernel::dot_rows_i8_multi`] with 16-bit weights.
    pub fn dot_rows_i16_multi(self, w: &[i16], xs: &[&[u8]], outs: &mut [&mut [i32]]) {
        self.dot_rows_multi(
            xs,
            outs,
            |x, out| self.dot_rows_i16(w, x, out),
            |xs4, outs4| {
                #[cfg(not(target_arch = "x86_64"))]
                let _ = (xs4, outs4);
                #[cfg(target_arch = "x86_64")]
                // SAFETY: as in `dot_rows_i8_multi`.
                unsafe {
                    x86::dot_rows_i16_avx512vnni_multi(w, xs4, outs4)
                }
            },
        )
    }

    /// Runs `group` on groups of two to four inputs where this kernel has one (AVX-512 VNNI),
    /// `one` on single inputs and everywhere else.
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut, unused_variables))]
    fn dot_rows_multi(
        self,
        xs: &[&[u8]],
        outs: &mut [&mut [i32]],
        mut one: impl FnMut(&[u8], &mut [i32]),
        mut group: impl FnMut(&[&[u8]], &mut [&mut [i32]]),
    ) {
        assert_eq!(xs.len(), outs.len());
        #[cfg(target_arch = "x86_64")]
        if self == Kernel::Avx512Vnni && has_avx512vnni() {
            let n = xs.first().map_or(0, |x| x.len());
            let rows = outs.first().map_or(0, |o| o.len());
            let same = |x: &&[u8]| x.len() == n && n.is_multiple_of(ROW_ALIGN);
            if xs.iter().all(same) && outs.iter().all(|o| o.len() == rows) {
                for (xg, og) in xs.chunks(4).zip(outs.chunks_mut(4)) {
                    match xg.len() {
                        1 => one(xg[0], og[0]),
                        _ => group(xg, og),
                    }
                }
                return;
            }
        }
        for (x, out) in xs.iter().zip(outs.iter_mut()) {
            one(x, out);
        }
    }

    /// [`Kernel::dot_rows_i8`] with 16-bit weights.
    pub fn dot_rows_i16(self, w: &[i16], x: &[u8], out: &mut [i32]) {
        let n = x.len();
        assert!(n.is_multiple_of(ROW_ALIGN) && w.len() == out.len() * n);
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 if std::arch::is_x86_feature_detected!("avx2") => {
                // SAFETY: as in `dot_rows_i8`.
                unsafe { x86::dot_rows_i16_avx2(w, x, out) }
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Vnni if has_avx512vnni() => {
                // SAFETY: as in `dot_rows_i8`.
                unsafe { x86::dot_rows_i16_avx512vnni(w, x, out) }
            }
            _ => dot_rows_portable(w, x, out),
        }
    }
}

impl Kernel {
    /// `out[i] = requantize(acc[i], mult[i], shift[i], lo, hi)` for a layer whose clamp lies
    /// in `0..=255` (a caller's model checks that at load). The SIMD kernels first raise
    /// negative accumulators to 0, which changes no output: a negative product rounds to at
    /// most 0, which the clamp raises to `lo ≥ 0` anyway; with non-negative products the
    /// rounding shift is a logical one, which AVX2 has for 64-bit lanes.
    pub fn requantize_bytes(
        self,
        acc: &[i32],
        mult: &[i32],
        shift: &[u8],
        (lo, hi): (i32, i32),
        out: &mut [u8],
    ) {
        assert!(acc.len() == out.len() && mult.len() == out.len() && shift.len() == out.len());
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Vnni
                if lo >= 0
                    && hi <= 255
                    && has_avx512vnni()
                    && std::arch::is_x86_feature_detected!("avx2") =>
            {
                // SAFETY: the CPU has AVX-512 F and BW (checked above, with AVX2 implied);
                // lengths asserted above.
                unsafe { x86::requantize_bytes_avx512(acc, mult, shift, (lo, hi), out) }
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 | Kernel::Avx512Vnni
                if lo >= 0 && hi <= 255 && std::arch::is_x86_feature_detected!("avx2") =>
            {
                // SAFETY: the CPU has AVX2 (checked above); lengths asserted above.
                unsafe { x86::requantize_bytes_avx2(acc, mult, shift, (lo, hi), out) }
            }
            _ => {
                for (((y, &a), &m), &s) in out.iter_mut().zip(acc).zip(mult).zip(shift) {
                    *y = requantize(a, m, s, lo, hi) as u8;
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn has_avx512vnni() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512vnni")
}

fn dot_rows_portable<W: Copy + Into<i32>>(w: &[W], x: &[u8], out: &mut [i32]) {
    let n = x.len();
    for (row, o) in w.chunks_exact(n).zip(out.iter_mut()) {
        // Independent lanes so the compiler can vectorize; exact (bounded at load).
        let mut lanes = [0i32; 16];
        for (wc, xc) in row.chunks_exact(16).zip(x.chunks_exact(16)) {
            for l in 0..16 {
                lanes[l] += wc[l].into() * xc[l] as i32;
            }
        }
        *o = lanes.iter().sum();
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// [`super::Kernel::requantize_bytes`] four outputs at a time in 64-bit lanes.
    ///
    /// # Safety
    /// The CPU must have AVX2; all slices of one length; `0 ≤ lo ≤ hi ≤ 255`; `mult` in
    /// `1..2^16`, `shift ≤ 62` (as every loaded layer's).
    #[target_feature(enable = "avx2")]
    pub unsafe fn requantize_bytes_avx2(
        acc: &[i32],
        mult: &[i32],
        shift: &[u8],
        (lo, hi): (i32, i32),
        out: &mut [u8],
    ) {
        let n = acc.len();
        let (lov, hiv) = (_mm256_set1_epi64x(lo as i64), _mm256_set1_epi64x(hi as i64));
        let one = _mm256_set1_epi64x(1);
        let low_dwords = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
        let mut i = 0;
        // Eight at a time: even and odd dwords in 64-bit lanes of their own, clamped to
        // 0..=255 there, then packed to bytes and clamped to [lo, hi] as bytes (the same as
        // clamping to [lo, hi] at once, since 0 <= lo <= hi <= 255).
        let (byte_max, low32) = (_mm256_set1_epi64x(255), _mm256_set1_epi64x(0xFFFF_FFFF));
        let (lo8, hi8) = (_mm_set1_epi8(lo as u8 as i8), _mm_set1_epi8(hi as u8 as i8));
        while i + 8 <= n {
            let a = _mm256_max_epi32(
                _mm256_loadu_si256(acc.as_ptr().add(i) as *const __m256i),
                _mm256_setzero_si256(),
            );
            let m = _mm256_loadu_si256(mult.as_ptr().add(i) as *const __m256i);
            let s = _mm256_cvtepu8_epi32(_mm_loadl_epi64(shift.as_ptr().add(i) as *const __m128i));
            let lane = |a: __m256i, m: __m256i, s: __m256i| {
                let p = _mm256_mul_epu32(a, m);
                let round = _mm256_srli_epi64(_mm256_sllv_epi64(one, s), 1);
                let v = _mm256_srlv_epi64(_mm256_add_epi64(p, round), s);
                _mm256_blendv_epi8(v, byte_max, _mm256_cmpgt_epi64(v, byte_max))
            };
            let even = lane(a, m, _mm256_and_si256(s, low32));
            let odd = lane(
                _mm256_srli_epi64(a, 32),
                _mm256_srli_epi64(m, 32),
                _mm256_srli_epi64(s, 32),
            );
            let v = _mm256_or_si256(even, _mm256_slli_epi64(odd, 32)); // 8 dwords, in order
            let b = _mm256_packus_epi16(_mm256_packus_epi32(v, v), _mm256_setzero_si256());
            let lo4 = _mm_cvtsi128_si32(_mm256_castsi256_si128(b));
            let hi4 = _mm_cvtsi128_si32(_mm256_extracti128_si256(b, 1));
            let bytes = _mm_min_epu8(_mm_max_epu8(_mm_setr_epi32(lo4, hi4, 0, 0), lo8), hi8);
            _mm_storel_epi64(out.as_mut_ptr().add(i) as *mut __m128i, bytes);
            i += 8;
        }
        while i + 4 <= n {
            let a = _mm_max_epi32(
                _mm_loadu_si128(acc.as_ptr().add(i) as *const __m128i),
                _mm_setzero_si128(),
            );
            let m = _mm_loadu_si128(mult.as_ptr().add(i) as *const __m128i);
            // acc < 2^31 and mult < 2^16: the unsigned 32x32 product is exact in 64 bits.
            let p = _mm256_mul_epu32(_mm256_cvtepu32_epi64(a), _mm256_cvtepu32_epi64(m));
            let sh = (shift.as_ptr().add(i) as *const u32).read_unaligned();
            let s = _mm256_cvtepu8_epi64(_mm_cvtsi32_si128(sh as i32));
            let round = _mm256_srli_epi64(_mm256_sllv_epi64(one, s), 1);
            let v = _mm256_srlv_epi64(_mm256_add_epi64(p, round), s);
            let v = _mm256_blendv_epi8(v, hiv, _mm256_cmpgt_epi64(v, hiv));
            let v = _mm256_blendv_epi8(v, lov, _mm256_cmpgt_epi64(lov, v));
            let d = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(v, low_dwords));
            let b = _mm_packus_epi16(_mm_packus_epi32(d, d), _mm_setzero_si128());
            (out.as_mut_ptr().add(i) as *mut u32).write_unaligned(_mm_cvtsi128_si32(b) as u32);
            i += 4;
        }
        for j in i..n {
            out[j] = super::requantize(acc[j], mult[j], shift[j], lo, hi) as u8;
        }
    }

    /// [`super::Kernel::requantize_bytes`] eight outputs to a 512-bit register of 64-bit
    /// lanes: the product, rounding and shift as in [`requantize_bytes_avx2`], then
    /// `vpmovusqb` narrows each lane to a byte saturating at 255 (the products are
    /// non-negative), and the bytes are clamped to `[lo, hi]`.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F and BW (and so AVX2); all slices of one length; `0 ≤ lo ≤
    /// hi ≤ 255`; `mult` in `1..2^16`, `shift ≤ 62` (as every loaded layer's).
    #[target_feature(enable = "avx512f,avx512bw,avx2")]
    pub unsafe fn requantize_bytes_avx512(
        acc: &[i32],
        mult: &[i32],
        shift: &[u8],
        (lo, hi): (i32, i32),
        out: &mut [u8],
    ) {
        let n = acc.len();
        let one = _mm512_set1_epi64(1);
        let (lo8, hi8) = (_mm_set1_epi8(lo as u8 as i8), _mm_set1_epi8(hi as u8 as i8));
        // Outputs i..i+8 as bytes in the low half of the result, not yet clamped to [lo, hi].
        let eight = |i: usize| {
            let a = _mm256_max_epi32(
                _mm256_loadu_si256(acc.as_ptr().add(i) as *const __m256i),
                _mm256_setzero_si256(),
            );
            let m = _mm256_loadu_si256(mult.as_ptr().add(i) as *const __m256i);
            let s = _mm512_cvtepu8_epi64(_mm_loadl_epi64(shift.as_ptr().add(i) as *const __m128i));
            // acc < 2^31 and mult < 2^16: the unsigned 32x32 product is exact in 64 bits.
            let p = _mm512_mul_epu32(_mm512_cvtepu32_epi64(a), _mm512_cvtepu32_epi64(m));
            let round = _mm512_srli_epi64(_mm512_sllv_epi64(one, s), 1);
            _mm512_cvtusepi64_epi8(_mm512_srlv_epi64(_mm512_add_epi64(p, round), s))
        };
        let clamp = |b: __m128i| _mm_min_epu8(_mm_max_epu8(b, lo8), hi8);
        let mut i = 0;
        while i + 16 <= n {
            let b = clamp(_mm_unpacklo_epi64(eight(i), eight(i + 8)));
            _mm_storeu_si128(out.as_mut_ptr().add(i) as *mut __m128i, b);
            i += 16;
        }
        if i + 8 <= n {
            _mm_storel_epi64(out.as_mut_ptr().add(i) as *mut __m128i, clamp(eight(i)));
            i += 8;
        }
        for j in i..n {
            out[j] = super::requantize(acc[j], mult[j], shift[j], lo, hi) as u8;
        }
    }

    /// # Safety
    /// The CPU must have AVX2; `x.len()` a multiple of 32, `w.len() == out.len() · x.len()`.
    #[target_feature(enable = "avx2")]
    pub unsafe fn dot_rows_i8_avx2(w: &[i8], x: &[u8], out: &mut [i32]) {
        let n = x.len();
        let ones = _mm256_set1_epi16(1);
        // u8·i8 pairs → i16 (never saturating: |w| ≤ 64), then pairs → i32.
        let step = |s: __m256i, xv: __m256i, row: *const i8, k: usize| {
            let wv = _mm256_loadu_si256(row.add(k) as *const __m256i);
            _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_maddubs_epi16(xv, wv), ones))
        };
        // Four rows at a time share each load of x.
        let blocks = out.len() / 4;
        for b in 0..blocks {
            let rows = [0, 1, 2, 3].map(|i| w.as_ptr().add((4 * b + i) * n));
            let mut s = [_mm256_setzero_si256(); 4];
            let mut k = 0;
            while k < n {
                let xv = _mm256_loadu_si256(x.as_ptr().add(k) as *const __m256i);
                for i in 0..4 {
                    s[i] = step(s[i], xv, rows[i], k);
                }
                k += 32;
            }
            _mm_storeu_si128(out.as_mut_ptr().add(4 * b) as *mut __m128i, hsum4(s));
        }
        for (r, o) in out.iter_mut().enumerate().skip(4 * blocks) {
            let row = w.as_ptr().add(r * n);
            let mut s = _mm256_setzero_si256();
            let mut k = 0;
            while k < n {
                let xv = _mm256_loadu_si256(x.as_ptr().add(k) as *const __m256i);
                s = step(s, xv, row, k);
                k += 32;
            }
            *o = hsum256(s);
        }
    }

    /// The four horizontal sums of `s[0..4]`, in order.
    #[target_feature(enable = "avx2")]
    unsafe fn hsum4(s: [__m256i; 4]) -> __m128i {
        let t = _mm256_hadd_epi32(_mm256_hadd_epi32(s[0], s[1]), _mm256_hadd_epi32(s[2], s[3]));
        _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1))
    }

    #[target_feature(enable = "avx2")]
    unsafe fn hsum256(v: __m256i) -> i32 {
        let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
        _mm_cvtsi128_si32(s)
    }

    /// # Safety
    /// The CPU must have AVX-512 F, BW and VNNI; `x.len()` a multiple of 64,
    /// `w.len() == out.len() · x.len()`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn dot_rows_i8_avx512vnni(w: &[i8], x: &[u8], out: &mut [i32]) {
        let n = x.len();
        let load = |p: *const u8, k: usize| _mm512_loadu_si512(p.add(k) as *const _);
        // Four rows at a time share each load of x, and one reduction ends all four (a
        // reduction per row cost about as much as a 192-input row's products).
        let blocks = out.len() / 4;
        for b in 0..blocks {
            let rows = [0, 1, 2, 3].map(|i| w.as_ptr().add((4 * b + i) * n) as *const u8);
            let mut s = [_mm512_setzero_si512(); 4];
            let mut k = 0;
            while k < n {
                let xv = load(x.as_ptr(), k);
                for i in 0..4 {
                    s[i] = _mm512_dpbusd_epi32(s[i], xv, load(rows[i], k));
                }
                k += 64;
            }
            _mm_storeu_si128(out.as_mut_ptr().add(4 * b) as *mut __m128i, hsum4_512(s));
        }
        for (r, o) in out.iter_mut().enumerate().skip(4 * blocks) {
            let row = w.as_ptr().add(r * n) as *const u8;
            let mut s = _mm512_setzero_si512();
            let mut k = 0;
            while k < n {
                s = _mm512_dpbusd_epi32(s, load(x.as_ptr(), k), load(row, k));
                k += 64;
            }
            *o = _mm512_reduce_add_epi32(s);
        }
    }

    /// [`dot_rows_i8_avx512vnni`] for two to four inputs at once (`xs.len() == outs.len()`):
    /// each block of four rows is loaded once for all of them (up to 16 accumulators), so
    /// weights stream once per group instead of once per input.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F, BW and VNNI; every `xs[p].len()` equal, a multiple of
    /// 64; `w.len() == outs[p].len() · n` for every `p`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn dot_rows_i8_avx512vnni_multi(w: &[i8], xs: &[&[u8]], outs: &mut [&mut [i32]]) {
        assert_eq!(xs.len(), outs.len());
        match xs.len() {
            4 => dot_rows_i8_avx512vnni_group::<4>(w, [xs[0], xs[1], xs[2], xs[3]], outs),
            3 => dot_rows_i8_avx512vnni_group::<3>(w, [xs[0], xs[1], xs[2]], outs),
            2 => dot_rows_i8_avx512vnni_group::<2>(w, [xs[0], xs[1]], outs),
            _ => panic!("groups of two to four inputs"),
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn dot_rows_i8_avx512vnni_group<const P: usize>(
        w: &[i8],
        xs: [&[u8]; P],
        outs: &mut [&mut [i32]],
    ) {
        let n = xs[0].len();
        let rows_total = outs[0].len();
        debug_assert!(outs.len() == P && P <= 4);
        assert!(w.len() == rows_total * n && xs.iter().all(|x| x.len() == n));
        assert!(n.is_multiple_of(64) && outs.iter().all(|o| o.len() == rows_total));
        let load = |p: *const u8, k: usize| _mm512_loadu_si512(p.add(k) as *const _);
        // Four rows by four inputs: each input load serves four rows, each weight load four
        // inputs.
        let mut r = 0;
        while r + 4 <= rows_total {
            let rows = [0, 1, 2, 3].map(|i| w.as_ptr().add((r + i) * n) as *const u8);
            let mut s = [[_mm512_setzero_si512(); 4]; 4];
            let mut k = 0;
            while k < n {
                let xv = xs.map(|x| load(x.as_ptr(), k));
                for i in 0..4 {
                    let wv = load(rows[i], k);
                    for p in 0..P {
                        s[i][p] = _mm512_dpbusd_epi32(s[i][p], xv[p], wv);
                    }
                }
                k += 64;
            }
            // One reduction of the four inputs' sums per row (as `dot_rows_*_avx512vnni`).
            for i in 0..4 {
                let mut sums = [0i32; 4];
                _mm_storeu_si128(sums.as_mut_ptr() as *mut __m128i, hsum4_512(s[i]));
                for p in 0..P {
                    outs[p][r + i] = sums[p];
                }
            }
            r += 4;
        }
        while r < rows_total {
            let row = w.as_ptr().add(r * n) as *const u8;
            let mut s = [_mm512_setzero_si512(); 4];
            let mut k = 0;
            while k < n {
                let wv = load(row, k);
                for p in 0..P {
                    s[p] = _mm512_dpbusd_epi32(s[p], load(xs[p].as_ptr(), k), wv);
                }
                k += 64;
            }
            let mut sums = [0i32; 4];
            _mm_storeu_si128(sums.as_mut_ptr() as *mut __m128i, hsum4_512(s));
            for p in 0..P {
                outs[p][r] = sums[p];
            }
            r += 1;
        }
    }

    /// [`dot_rows_i16_avx512vnni`] for two to four inputs at once (`xs.len() == outs.len()`):
    /// each block of four rows is loaded once for all of them (up to 16 accumulators), so
    /// weights stream once per group instead of once per input.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F, BW and VNNI; every `xs[p].len()` equal, a multiple of
    /// 32; `w.len() == outs[p].len() · n` for every `p`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn dot_rows_i16_avx512vnni_multi(w: &[i16], xs: &[&[u8]], outs: &mut [&mut [i32]]) {
        assert_eq!(xs.len(), outs.len());
        match xs.len() {
            4 => dot_rows_i16_avx512vnni_group::<4>(w, [xs[0], xs[1], xs[2], xs[3]], outs),
            3 => dot_rows_i16_avx512vnni_group::<3>(w, [xs[0], xs[1], xs[2]], outs),
            2 => dot_rows_i16_avx512vnni_group::<2>(w, [xs[0], xs[1]], outs),
            _ => panic!("groups of two to four inputs"),
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn dot_rows_i16_avx512vnni_group<const P: usize>(
        w: &[i16],
        xs: [&[u8]; P],
        outs: &mut [&mut [i32]],
    ) {
        let n = xs[0].len();
        let rows_total = outs[0].len();
        debug_assert!(outs.len() == P && P <= 4);
        assert!(w.len() == rows_total * n && xs.iter().all(|x| x.len() == n));
        assert!(n.is_multiple_of(32) && outs.iter().all(|o| o.len() == rows_total));
        let widen = |x: &[u8], k: usize| {
            _mm512_cvtepu8_epi16(_mm256_loadu_si256(x.as_ptr().add(k) as *const __m256i))
        };
        let load = |row: *const i16, k: usize| _mm512_loadu_si512(row.add(k) as *const _);
        // Four rows by four inputs: each widened input serves four rows, each weight load four
        // inputs (widening is as dear as a product here, so it is shared too).
        let mut r = 0;
        while r + 4 <= rows_total {
            let rows = [0, 1, 2, 3].map(|i| w.as_ptr().add((r + i) * n));
            let mut s = [[_mm512_setzero_si512(); 4]; 4];
            let mut k = 0;
            while k < n {
                let xv = xs.map(|x| widen(x, k));
                for i in 0..4 {
                    let wv = load(rows[i], k);
                    for p in 0..P {
                        s[i][p] = _mm512_dpwssd_epi32(s[i][p], xv[p], wv);
                    }
                }
                k += 32;
            }
            // One reduction of the four inputs' sums per row (as `dot_rows_*_avx512vnni`).
            for i in 0..4 {
                let mut sums = [0i32; 4];
                _mm_storeu_si128(sums.as_mut_ptr() as *mut __m128i, hsum4_512(s[i]));
                for p in 0..P {
                    outs[p][r + i] = sums[p];
                }
            }
            r += 4;
        }
        while r < rows_total {
            let row = w.as_ptr().add(r * n);
            let mut s = [_mm512_setzero_si512(); 4];
            let mut k = 0;
            while k < n {
                let wv = load(row, k);
                for p in 0..P {
                    s[p] = _mm512_dpwssd_epi32(s[p], widen(xs[p], k), wv);
                }
                k += 32;
            }
            let mut sums = [0i32; 4];
            _mm_storeu_si128(sums.as_mut_ptr() as *mut __m128i, hsum4_512(s));
            for p in 0..P {
                outs[p][r] = sums[p];
            }
            r += 1;
        }
    }

    /// The four horizontal sums of `s[0..4]`, in order: each folded to 256 bits, then as
    /// [`hsum4`].
    #[target_feature(enable = "avx512f,avx2")]
    unsafe fn hsum4_512(s: [__m512i; 4]) -> __m128i {
        let fold = |v: __m512i| {
            _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1))
        };
        hsum4([fold(s[0]), fold(s[1]), fold(s[2]), fold(s[3])])
    }

    /// # Safety
    /// The CPU must have AVX2; `x.len()` a multiple of 32, `w.len() == out.len() · x.len()`.
    #[target_feature(enable = "avx2")]
    pub unsafe fn dot_rows_i16_avx2(w: &[i16], x: &[u8], out: &mut [i32]) {
        let n = x.len();
        // 16 bytes zero-extended to i16, times 16 weights, pairs summed into i32.
        let widen =
            |k: usize| _mm256_cvtepu8_epi16(_mm_loadu_si128(x.as_ptr().add(k) as *const __m128i));
        let step = |s: __m256i, xv: __m256i, row: *const i16, k: usize| {
            let wv = _mm256_loadu_si256(row.add(k) as *const __m256i);
            _mm256_add_epi32(s, _mm256_madd_epi16(xv, wv))
        };
        // Four rows at a time share each widened load of x.
        let blocks = out.len() / 4;
        for b in 0..blocks {
            let rows = [0, 1, 2, 3].map(|i| w.as_ptr().add((4 * b + i) * n));
            let mut s = [_mm256_setzero_si256(); 4];
            let mut k = 0;
            while k < n {
                let xv = widen(k);
                for i in 0..4 {
                    s[i] = step(s[i], xv, rows[i], k);
                }
                k += 16;
            }
            _mm_storeu_si128(out.as_mut_ptr().add(4 * b) as *mut __m128i, hsum4(s));
        }
        // The last one to three rows also share each widened load (output layers are often
        // narrow: a coupling of a flow has two outputs).
        let base = 4 * blocks;
        match out.len() - base {
            0 => {}
            1 => tail_i16::<1>(w, x, &mut out[base..], base),
            2 => tail_i16::<2>(w, x, &mut out[base..], base),
            _ => tail_i16::<3>(w, x, &mut out[base..], base),
        }
    }

    /// Rows `first .. first + R` of [`dot_rows_i16_avx2`] into `out[..R]`, sharing the loads.
    #[target_feature(enable = "avx2")]
    unsafe fn tail_i16<const R: usize>(w: &[i16], x: &[u8], out: &mut [i32], first: usize) {
        let n = x.len();
        let rows: [*const i16; R] = std::array::from_fn(|i| w.as_ptr().add((first + i) * n));
        let mut s = [_mm256_setzero_si256(); R];
        let mut k = 0;
        while k < n {
            let xv = _mm256_cvtepu8_epi16(_mm_loadu_si128(x.as_ptr().add(k) as *const __m128i));
            for i in 0..R {
                let wv = _mm256_loadu_si256(rows[i].add(k) as *const __m256i);
                s[i] = _mm256_add_epi32(s[i], _mm256_madd_epi16(xv, wv));
            }
            k += 16;
        }
        for i in 0..R {
            out[i] = hsum256(s[i]);
        }
    }

    /// # Safety
    /// The CPU must have AVX-512 F, BW and VNNI; `x.len()` a multiple of 32,
    /// `w.len() == out.len() · x.len()`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn dot_rows_i16_avx512vnni(w: &[i16], x: &[u8], out: &mut [i32]) {
        let n = x.len();
        // 32 bytes zero-extended to i16, times 32 weights, pairs summed into i32.
        let widen = |k: usize| {
            _mm512_cvtepu8_epi16(_mm256_loadu_si256(x.as_ptr().add(k) as *const __m256i))
        };
        let load = |row: *const i16, k: usize| _mm512_loadu_si512(row.add(k) as *const _);
        // As in `dot_rows_i8_avx512vnni`: four rows share each widened load and a reduction.
        let blocks = out.len() / 4;
        for b in 0..blocks {
            let rows = [0, 1, 2, 3].map(|i| w.as_ptr().add((4 * b + i) * n));
            let mut s = [_mm512_setzero_si512(); 4];
            let mut k = 0;
            while k < n {
                let xv = widen(k);
                for i in 0..4 {
                    s[i] = _mm512_dpwssd_epi32(s[i], xv, load(rows[i], k));
                }
                k += 32;
            }
            _mm_storeu_si128(out.as_mut_ptr().add(4 * b) as *mut __m128i, hsum4_512(s));
        }
        for (r, o) in out.iter_mut().enumerate().skip(4 * blocks) {
            let row = w.as_ptr().add(r * n);
            let mut s = _mm512_setzero_si512();
            let mut k = 0;
            while k < n {
                s = _mm512_dpwssd_epi32(s, widen(k), load(row, k));
                k += 32;
            }
            *o = _mm512_reduce_add_epi32(s);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    pub(crate) fn random_layer(
        rng: &mut StdRng,
        inputs: usize,
        outputs: usize,
        bits: WeightBits,
    ) -> U8Linear {
        // 16-bit rows scaled so the accumulator bound holds: Σ|w| · 255 < 2^31.
        let wmax = bits
            .max()
            .min((ACC_LIMIT / 2 / (inputs as i64 * 255)) as i32);
        let weight: Vec<i32> = (0..inputs * outputs)
            .map(|_| rng.gen_range(-wmax..=wmax))
            .collect();
        U8Linear::new(
            inputs,
            bits,
            &weight,
            (0..outputs)
                .map(|_| rng.gen_range(-100_000..100_000))
                .collect(),
            (0..outputs).map(|_| rng.gen_range(1..MULT_LIMIT)).collect(),
            (0..outputs).map(|_| rng.gen_range(0..=24)).collect(),
            (0, 255),
        )
        .unwrap()
    }

    #[test]
    fn every_kernel_matches_the_reference_bit_for_bit() {
        let kernels = Kernel::available();
        eprintln!("kernels on this machine: {kernels:?}");
        let mut rng = StdRng::seed_from_u64(8);
        for bits in [WeightBits::Eight, WeightBits::Sixteen] {
            for (i, o) in [
                (1, 1),
                (3, 5),
                (63, 7),
                (64, 64),
                (65, 3),
                (99, 96),
                (387, 45),
            ] {
                let layer = random_layer(&mut rng, i, o, bits);
                for trial in 0..40 {
                    // Extremes first: all 255 with extreme weights is where i16 pairs peak.
                    let mut x: Vec<u8> = match trial {
                        0 => vec![255; layer.stride()],
                        1 => vec![0; layer.stride()],
                        _ => (0..layer.stride()).map(|_| rng.gen()).collect(),
                    };
                    let mut want = vec![0; o];
                    layer.forward_reference(&x, &mut want);
                    // Garbage in the padding must not matter.
                    x[i..].iter_mut().for_each(|v| *v = 0xA5);
                    for &k in &kernels {
                        let mut got = vec![0; o];
                        layer.forward_i32(k, &x, 0..o, &mut got);
                        assert_eq!(got, want, "{k:?}, {bits:?} layer {i}→{o}, trial {trial}");
                        let (mut acc, mut bytes) = (vec![0; o], vec![0u8; o]);
                        layer.forward_u8(k, &x, 1.min(o)..o, &mut acc, &mut bytes);
                        for r in 1.min(o)..o {
                            assert_eq!(bytes[r] as i32, want[r], "u8 path of {k:?}, {bits:?}");
                        }
                    }
                }
            }
        }
    }

    /// Several inputs at once (the multi-pixel path: groups of four on AVX-512 VNNI, the rest
    /// one by one) give each input's reference integers, for any number of inputs and rows
    /// (odd row counts take the kernels' last-row path), on every kernel.
    #[test]
    fn every_kernel_computes_several_inputs_as_the_reference() {
        let kernels = Kernel::available();
        eprintln!("kernels on this machine: {kernels:?} (groups of inputs on avx512vnni)");
        let mut rng = StdRng::seed_from_u64(9);
        for bits in [WeightBits::Eight, WeightBits::Sixteen] {
            for (i, o) in [(1, 1), (63, 7), (64, 2), (99, 96), (387, 45)] {
                let layer = random_layer(&mut rng, i, o, bits);
                for count in [1, 2, 3, 4, 5, 6, 7, 9] {
                    let xs: Vec<Vec<u8>> = (0..count)
                        .map(|p| match p {
                            0 => vec![255; layer.stride()],
                            _ => (0..layer.stride()).map(|_| rng.gen()).collect(),
                        })
                        .collect();
                    let want: Vec<Vec<i32>> = xs
                        .iter()
                        .map(|x| {
                            let mut y = vec![0; o];
                            layer.forward_reference(x, &mut y);
                            y
                        })
                        .collect();
                    let refs: Vec<&[u8]> = xs.iter().map(|x| x.as_slice()).collect();
                    for &k in &kernels {
                        // All rows for the i32 path, a part of them for the byte path.
                        let mut got = vec![vec![0; o]; count];
                        let mut outs: Vec<&mut [i32]> =
                            got.iter_mut().map(|g| g.as_mut_slice()).collect();
                        layer.forward_i32_multi(k, &refs, 0..o, &mut outs);
                        assert_eq!(got, want, "{k:?} {bits:?} {i}→{o}, {count} inputs");
                        let rows = 1.min(o)..o;
                        let mut accs = vec![vec![0; o]; count];
                        let mut bytes = vec![vec![0u8; o]; count];
                        let mut acc_refs: Vec<&mut [i32]> =
                            accs.iter_mut().map(|a| a.as_mut_slice()).collect();
                        let mut byte_refs: Vec<&mut [u8]> =
                            bytes.iter_mut().map(|b| b.as_mut_slice()).collect();
                        layer.forward_u8_multi(
                            k,
                            &refs,
                            rows.clone(),
                            &mut acc_refs,
                            &mut byte_refs,
                        );
                        for p in 0..count {
                            for r in rows.clone() {
                                let what =
                                    format!("{k:?} {bits:?} {i}→{o}, {count} inputs, #{p} row {r}");
                                assert_eq!(
                                    bytes[p][r] as i32,
                                    want[p][r].clamp(0, 255),
                                    "{what} (bytes)"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn byte_requantization_of_every_kernel_matches_the_definition() {
        let mut rng = StdRng::seed_from_u64(12);
        for trial in 0..200 {
            let n = rng.gen_range(1..80);
            let acc: Vec<i32> = (0..n)
                .map(|_| match rng.gen_range(0..4) {
                    0 => [i32::MIN + 1, i32::MAX, 0, -1, 1][rng.gen_range(0..5)],
                    1 => rng.gen_range(-300..300),
                    _ => rng.gen(),
                })
                .collect();
            let mult: Vec<i32> = (0..n).map(|_| rng.gen_range(1..MULT_LIMIT)).collect();
            let shift: Vec<u8> = (0..n).map(|_| rng.gen_range(0..=SHIFT_MAX)).collect();
            let lo = rng.gen_range(0..=255);
            let clamp = (lo, rng.gen_range(lo..=255));
            let want: Vec<u8> = (0..n)
                .map(|i| requantize(acc[i], mult[i], shift[i], clamp.0, clamp.1) as u8)
                .collect();
            for &k in &Kernel::available() {
                let mut got = vec![0u8; n];
                k.requantize_bytes(&acc, &mult, &shift, clamp, &mut got);
                assert_eq!(got, want, "{k:?}, trial {trial}");
            }
        }
    }

    #[test]
    fn pairs_at_the_saturation_edge_are_exact() {
        // Every 8-bit weight ±64 against 255: vpmaddubsw's pair sums reach ±32640, just under
        // 2^15; every 16-bit weight ±32767 against 255: vpmaddwd's pairs reach ±16.7M.
        for (bits, m, n) in [
            (WeightBits::Eight, 64, 128),
            (WeightBits::Sixteen, 32767, 128),
        ] {
            for sign in [1, -1] {
                let w = vec![m * sign; n];
                let layer =
                    U8Linear::new(n, bits, &w, vec![0], vec![1], vec![0], (i32::MIN, i32::MAX))
                        .unwrap();
                for &k in &Kernel::available() {
                    let mut y = [0];
                    layer.forward_i32(k, &vec![255; layer.stride()], 0..1, &mut y);
                    assert_eq!(y[0], sign * m * 255 * n as i32, "{k:?} {bits:?}");
                }
            }
        }
    }

    #[test]
    fn out_of_range_layers_are_refused_and_serialization_round_trips() {
        let mut rng = StdRng::seed_from_u64(9);
        for bits in [WeightBits::Eight, WeightBits::Sixteen] {
            let layer = random_layer(&mut rng, 10, 4, bits);
            let mut bytes = Vec::new();
            layer.write(&mut bytes);
            assert_eq!(U8Linear::read(&mut &bytes[..], (10, 4)).unwrap(), layer);
            assert!(U8Linear::read(&mut &bytes[..], (10, 5)).is_err());
            for cut in 0..bytes.len() {
                assert!(U8Linear::read(&mut &bytes[..cut], (10, 4)).is_err());
            }
        }
        let eight = WeightBits::Eight;
        let new = |w: i32, b: i32, m: i32, s: u8, clamp| {
            U8Linear::new(1, eight, &[w], vec![b], vec![m], vec![s], clamp)
        };
        assert!(new(64, 0, 1, 0, (0, 255)).is_ok());
        assert!(new(65, 0, 1, 0, (0, 255)).is_err());
        assert!(new(1, 0, 0, 0, (0, 255)).is_err());
        assert!(new(1, 0, 1, 63, (0, 255)).is_err());
        assert!(new(1, i32::MAX, 1, 0, (0, 255)).is_err());
        assert!(new(1, 0, 1, 0, (1, 0)).is_err());
        let wide = vec![32767; 300]; // 300 · 32767 · 255 > 2^31
        assert!(U8Linear::new(
            300,
            WeightBits::Sixteen,
            &wide,
            vec![0],
            vec![1],
            vec![0],
            (0, 1)
        )
        .is_err());
    }

    #[test]
    fn requantization_rounds_half_up_and_clamps() {
        let l = U8Linear::new(
            1,
            WeightBits::Eight,
            &[1],
            vec![0],
            vec![3],
            vec![2],
            (-100, 100),
        )
        .unwrap();
        let y = |x: u8| {
            let mut y = [0];
            l.forward_reference(&[x], &mut y);
            y[0]
        };
        assert_eq!(y(2), 2); // 6/4 = 1.5 → 2
        assert_eq!(y(1), 1); // 3/4 = 0.75 → 1
        assert_eq!(y(200), 100); // 150 → clamp 100
    }
}
