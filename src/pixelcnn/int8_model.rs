//! The 8-bit PixelCNN: the same network shape, masks and schedule as [`PixelCnnInt`], with
//! every layer an [`U8Linear`] (bytes in, `i8` weights, exact `i32` accumulators), run by the
//! fastest [`Kernel`] of the CPU. A model file says which engine it is for (`"engine": "int8"`
//! in its metadata); files coded with either decode the same way on every machine.
//!
//! Inputs are bytes: sample values as they are (128 outside the image) and validity flags of
//! 128 or 0 ([`Arch::gather_context_u8`]); hidden activations are bytes (a ReLU capped at 255
//! steps of the layer's own scale); the output layer gives the coding layer's 2^-16 units.
//!
//! [`PixelCnnInt`]: super::PixelCnnInt

use super::arch::{fixed, Arch};
use super::int_model::ModelMeta;
use super::session::PixelNet;
use crate::error::{Error, Result};
use crate::format::ModelId;
use crate::intnet::int8::{padded, Kernel, U8Linear};
use crate::model_file::ModelFile;

/// The `engine` field of an 8-bit model's metadata.
pub const ENGINE_INT8: &str = "int8";

/// An integer-exact local PixelCNN on the 8-bit engine.
///
/// Layers: `first` (`input_len → hidden`, clamp `[0, 255]`), `hidden_layers` × (`hidden →
/// hidden`, clamp `[0, 255]`), `output` (`hidden + input_len → channels · 3 · components`,
/// clamp ±256 in 2^-16), masked as [`Arch`] says.
#[derive(Clone, Debug)]
pub struct PixelCnn8 {
    pub meta: ModelMeta,
    pub layers: Vec<U8Linear>,
    pub id: ModelId,
    kernel: Kernel,
}

/// Per-pixel working memory of the 8-bit engine.
#[derive(Clone, Debug)]
pub struct PixelState8 {
    /// Outputs of the first and hidden layers except the last one (`padded(hidden)` bytes).
    bufs: Vec<Vec<u8>>,
    /// `[last hidden layer's output | input vector | padding]`: the output layer's input.
    cat: Vec<u8>,
    /// Accumulator scratch, `max(hidden, outputs)`.
    acc: Vec<i32>,
}

impl PixelCnn8 {
    pub fn arch(&self) -> &Arch {
        &self.meta.arch
    }

    /// The kernel this model runs with (the CPU's fastest unless set otherwise).
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// The same model on another kernel (the tests compare every kernel of the machine).
    pub fn with_kernel(mut self, kernel: Kernel) -> PixelCnn8 {
        self.kernel = kernel;
        self
    }

    /// Parses and validates an 8-bit PixelCNN model file.
    pub fn from_bytes(bytes: &[u8]) -> Result<PixelCnn8> {
        let file = ModelFile::parse(bytes)?;
        let meta = super::int_model::read_meta(&file)?;
        if meta.engine.as_deref() != Some(ENGINE_INT8) {
            return Err(Error::InvalidModel("not an 8-bit PixelCNN model".into()));
        }
        PixelCnn8::from_model_file(meta, &file)
    }

    /// Parses the 8-bit PixelCNN part of a model file (metadata already read as `meta`).
    pub fn from_model_file(meta: ModelMeta, file: &ModelFile<'_>) -> Result<PixelCnn8> {
        meta.arch.validate()?;
        let mut cursor = file.body;
        let mut layers = Vec::new();
        for l in 0..meta.arch.hidden_layers + 2 {
            layers.push(U8Linear::read(&mut cursor, meta.arch.layer_shape(l))?);
        }
        if !cursor.is_empty() {
            return Err(Error::InvalidModel(
                "trailing bytes after the last layer".into(),
            ));
        }
        let model = PixelCnn8 {
            meta,
            layers,
            id: file.id,
            kernel: Kernel::detect(),
        };
        model.validate()?;
        Ok(model)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let meta = serde_json::to_vec(&self.meta).expect("metadata serializes");
        let mut body = Vec::new();
        for l in &self.layers {
            l.write(&mut body);
        }
        ModelFile::assemble(&meta, &body)
    }

    /// Builds a model from layers (the quantizer's output), computing its id.
    pub fn from_layers(mut meta: ModelMeta, layers: Vec<U8Linear>) -> Result<PixelCnn8> {
        meta.engine = Some(ENGINE_INT8.into());
        let tmp = PixelCnn8 {
            meta,
            layers,
            id: ModelId(0),
            kernel: Kernel::Portable,
        };
        PixelCnn8::from_bytes(&tmp.to_bytes())
    }

    /// The same network with the adaptive stage `scale-select-1` (a new model file, so a new
    /// id).
    pub fn with_adaptive_stage(self) -> Result<PixelCnn8> {
        let mut meta = self.meta;
        meta.adapt = Some(crate::coding::adaptive::SCALE_SELECT_1.into());
        PixelCnn8::from_layers(meta, self.layers)
    }

    /// Shapes, clamps and causal masks (accumulator bounds are checked by each layer).
    pub fn validate(&self) -> Result<()> {
        let a = &self.meta.arch;
        let bad = |m: String| Err(Error::InvalidModel(m));
        if self.layers.len() != a.hidden_layers + 2 {
            return bad("wrong number of layers".into());
        }
        for (l, layer) in self.layers.iter().enumerate() {
            let last = l == a.hidden_layers + 1;
            let (inputs, outputs) = a.layer_shape(l);
            let (lo, hi) = if last {
                (-fixed::OUTPUT_MAX, fixed::OUTPUT_MAX)
            } else {
                (0, 255)
            };
            if layer.inputs() != inputs || layer.outputs() != outputs {
                return bad(format!(
                    "8-bit layer {l} is {}→{}, expected {inputs}→{outputs}",
                    layer.inputs(),
                    layer.outputs()
                ));
            }
            if (layer.lo, layer.hi) != (lo, hi) {
                return bad(format!(
                    "8-bit layer {l} clamps to [{}, {}], expected [{lo}, {hi}]",
                    layer.lo, layer.hi
                ));
            }
            for o in 0..outputs {
                for (i, w) in layer.row(o).into_iter().enumerate() {
                    let visible = match l {
                        0 => a.mask_first(o, i),
                        _ if last => a.mask_output(o, i),
                        _ => a.mask_hidden(o, i),
                    };
                    if !visible && w != 0 {
                        return bad(format!("8-bit layer {l} weight ({o}, {i}) breaks the mask"));
                    }
                }
            }
        }
        Ok(())
    }

    pub fn parameters(&self) -> usize {
        self.layers.iter().map(|l| l.parameters()).sum()
    }

    /// The reference evaluation (straight loops in `i64`, whole network): parameters of
    /// channel `c` at pixel (`x`, `y`) of `ctx` (3 interleaved samples a pixel; the pixel's own
    /// later channels may hold anything: the masks ignore them).
    pub fn reference_params(
        &self,
        ctx: &[u8],
        width: u32,
        height: u32,
        x: u32,
        y: u32,
        c: usize,
    ) -> Vec<i32> {
        let a = &self.meta.arch;
        let mut input = vec![0u8; a.input_len()];
        a.gather_context_u8(ctx, width, height, x, y, &mut input);
        let base = (y as usize * width as usize + x as usize) * a.channels;
        input[a.context_len()..].copy_from_slice(&ctx[base..base + a.channels]);
        let mut h = input.clone();
        for layer in &self.layers[..self.layers.len() - 1] {
            let mut out = vec![0; layer.outputs()];
            layer.forward_reference(&h, &mut out);
            h = out.iter().map(|&v| v as u8).collect();
        }
        h.extend_from_slice(&input);
        let out_layer = self.layers.last().expect("validated");
        let mut out = vec![0; out_layer.outputs()];
        out_layer.forward_reference(&h, &mut out);
        let p = a.params_per_channel();
        out[c * p..(c + 1) * p].to_vec()
    }
}

impl PixelNet for PixelCnn8 {
    type State = PixelState8;
    const MAC_COST: usize = 1;

    fn meta(&self) -> &ModelMeta {
        &self.meta
    }

    fn arch(&self) -> &Arch {
        &self.meta.arch
    }

    fn macs_per_pixel(&self) -> usize {
        self.layers.iter().map(|l| l.inputs() * l.outputs()).sum()
    }

    fn state_bytes(&self) -> usize {
        let a = self.arch();
        padded(a.hidden) * a.hidden_layers
            + cat_len(a)
            + 4 * a.hidden.max(a.outputs())
            + 3 * std::mem::size_of::<Vec<u8>>()
    }

    fn new_state(&self) -> PixelState8 {
        let a = self.arch();
        PixelState8 {
            bufs: vec![vec![0; padded(a.hidden)]; a.hidden_layers],
            cat: vec![0; cat_len(a)],
            acc: vec![0; a.hidden.max(a.outputs())],
        }
    }

    fn begin_pixel(&self, st: &mut PixelState8, ctx: &[u8], w: u32, h: u32, x: u32, y: u32) {
        let a = self.arch();
        let input = &mut st.cat[a.hidden..a.hidden + a.input_len()];
        a.gather_context_u8(ctx, w, h, x, y, input);
        input[a.context_len()..].fill(128);
    }

    fn set_channel(&self, st: &mut PixelState8, c: usize, value: u8) {
        let a = self.arch();
        st.cat[a.hidden + a.context_len() + c] = value;
    }

    /// Channel `c`'s parameters: group `c`'s units of every layer, then its output rows.
    /// Channels in order 0, 1, … for each pixel, each after the previous ones were set.
    fn channel_params(&self, st: &mut PixelState8, c: usize, out: &mut [i32]) {
        let a = self.arch();
        let k = self.kernel;
        let units = a.group_units(c);
        let n = a.hidden_layers;
        let (head, input) = st.cat.split_at_mut(a.hidden);
        for (l, layer) in self.layers[..=n].iter().enumerate() {
            if l == 0 {
                let dst = if n == 0 { &mut *head } else { &mut st.bufs[0] };
                layer.forward_u8(k, input, units.clone(), &mut st.acc, dst);
            } else {
                let (before, after) = st.bufs.split_at_mut(l);
                let dst = if l == n { &mut *head } else { &mut after[0] };
                layer.forward_u8(k, &before[l - 1], units.clone(), &mut st.acc, dst);
            }
        }
        let p = a.params_per_channel();
        let rows = c * p..(c + 1) * p;
        self.layers[n + 1].forward_i32(k, &st.cat, rows.clone(), &mut st.acc);
        out.copy_from_slice(&st.acc[rows]);
    }

    fn pixels_together(&self) -> usize {
        if self.kernel == crate::intnet::int8::Kernel::Avx512Vnni {
            4
        } else {
            1
        }
    }

    /// [`PixelNet::channel_params`] of several pixels, layer by layer for all of them, so the
    /// kernels load each weight once for up to four pixels. The same integers.
    fn channel_params_multi(&self, states: &mut [PixelState8], c: usize, outs: &mut [Vec<i32>]) {
        let a = self.arch();
        let k = self.kernel;
        let units = a.group_units(c);
        let n = a.hidden_layers;
        // A few pixels at a time (the session's groups of four): inline, no allocation.
        type Few<T> = smallvec::SmallVec<[T; 4]>;
        for (l, layer) in self.layers[..=n].iter().enumerate() {
            let mut xs: Few<&[u8]> = Few::new();
            let mut ys: Few<&mut [u8]> = Few::new();
            let mut accs: Few<&mut [i32]> = Few::new();
            for st in states.iter_mut() {
                let PixelState8 { bufs, cat, acc } = st;
                let (head, input) = cat.split_at_mut(a.hidden);
                if l == 0 {
                    xs.push(&*input);
                    ys.push(if n == 0 { head } else { &mut bufs[0][..] });
                } else {
                    let (before, after) = bufs.split_at_mut(l);
                    xs.push(&before[l - 1][..]);
                    ys.push(if l == n { head } else { &mut after[0][..] });
                }
                accs.push(&mut acc[..]);
            }
            layer.forward_u8_multi(k, &xs, units.clone(), &mut accs, &mut ys);
        }
        let p = a.params_per_channel();
        let rows = c * p..(c + 1) * p;
        let (mut xs, mut accs): (Few<&[u8]>, Few<&mut [i32]>) = (Few::new(), Few::new());
        for st in states.iter_mut() {
            xs.push(&st.cat[..]);
            accs.push(&mut st.acc[..]);
        }
        self.layers[n + 1].forward_i32_multi(k, &xs, rows.clone(), &mut accs);
        for (out, acc) in outs.iter_mut().zip(&accs) {
            out.copy_from_slice(&acc[rows.clone()]);
        }
    }
}

/// Length of [`PixelState8::cat`]: room for the first layer to read `padded(input_len)` bytes
/// after the hidden part, and for the output layer to read `padded(hidden + input_len)`.
fn cat_len(a: &Arch) -> usize {
    (a.hidden + padded(a.input_len())).max(padded(a.hidden + a.input_len()))
}
