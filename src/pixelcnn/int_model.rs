//! The integer PixelCNN: the network that feeds the coder. Loaded from a model file, validated
//! (shapes, causal masks, accumulator bounds), evaluated exactly.

use serde::{Deserialize, Serialize};

use super::arch::{fixed, Arch};
use crate::error::{Error, Result};
use crate::format::ModelId;
use crate::intnet::IntLinear;
use crate::model_file::ModelFile;

/// The `family` field of a PixelCNN model file's metadata.
pub const FAMILY_NAME: &str = "pixelcnn";

/// What a model file says about itself (JSON in the file, so cards and tools can read it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    /// Model family; `"pixelcnn"` here.
    pub family: String,
    /// Human-readable name, e.g. `pixelcnn-small`.
    pub name: String,
    pub arch: Arch,
    /// The engine the layers are for: absent for the 32-bit engine ([`PixelCnnInt`], every
    /// model before the 8-bit engine), `"int8"` for [`super::PixelCnn8`]. Absent fields are not
    /// written, so older models' files and ids are unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    /// The adaptive stage between the network and the coder: absent for none (every model
    /// before it), `"scale-select-1"` for [`crate::coding::adaptive`]. Not written when
    /// absent, like `engine`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapt: Option<String>,
}

/// Reads and checks the metadata of a PixelCNN model file: the family, and an engine and
/// adaptive stage this build knows (others are unsupported: a newer llif wrote them).
pub fn read_meta(file: &ModelFile<'_>) -> Result<ModelMeta> {
    let meta: ModelMeta = serde_json::from_slice(file.meta_json)
        .map_err(|e| Error::InvalidModel(format!("model metadata: {e}")))?;
    if meta.family != FAMILY_NAME {
        return Err(Error::InvalidModel(format!(
            "model family {:?} is not {FAMILY_NAME}",
            meta.family
        )));
    }
    if let Some(engine) = meta.engine.as_deref() {
        if engine != super::int8_model::ENGINE_INT8 {
            return Err(Error::UnsupportedFamily(format!(
                "pixelcnn model for the engine {engine:?}"
            )));
        }
    }
    if let Some(adapt) = meta.adapt.as_deref() {
        if adapt != crate::coding::adaptive::SCALE_SELECT_1 {
            return Err(Error::UnsupportedFamily(format!(
                "pixelcnn model with the adaptive stage {adapt:?}"
            )));
        }
    }
    Ok(meta)
}

/// An integer-exact local PixelCNN.
///
/// Layers: `first` (`input_len → hidden`, capped ReLU), `hidden_layers` × (`hidden → hidden`,
/// capped ReLU), `output` (`hidden + input_len → channels · 3 · components`, clamp ±256 in
/// 2^-16). Inputs, per pixel: for each context position (see [`Arch::offsets`]) the channels'
/// `value − 128` and a validity flag (128 inside the image, 0 outside, where the channels are 0
/// too), then the current pixel's channels (`value − 128`), masked so channel `c`'s outputs see
/// only channels before `c`.
#[derive(Clone, Debug)]
pub struct PixelCnnInt {
    pub meta: ModelMeta,
    pub layers: Vec<IntLinear>,
    /// SHA-256-derived id of the model file bytes.
    pub id: ModelId,
}

/// Per-pixel working memory of the incremental engine.
#[derive(Clone, Debug)]
pub struct PixelState {
    /// Outputs of the first and hidden layers except the last one.
    bufs: Vec<Vec<i32>>,
    /// `[last hidden layer's output | input vector]`: the output layer's input.
    cat: Vec<i32>,
}

/// Which inputs an output may see (`arch.mask_*`), for one layer.
type MaskFn<'a> = Box<dyn Fn(usize, usize) -> bool + 'a>;

impl PixelCnnInt {
    pub fn arch(&self) -> &Arch {
        &self.meta.arch
    }

    /// Parses and validates a model file.
    pub fn from_bytes(bytes: &[u8]) -> Result<PixelCnnInt> {
        PixelCnnInt::from_model_file(&ModelFile::parse(bytes)?)
    }

    /// Parses and validates the PixelCNN part of a model file: the metadata's architecture,
    /// then `hidden_layers + 2` layers filling the body exactly.
    pub fn from_model_file(file: &ModelFile<'_>) -> Result<PixelCnnInt> {
        let meta = read_meta(file)?;
        if meta.engine.is_some() {
            return Err(Error::InvalidModel(format!(
                "a model for the {:?} engine, not the 32-bit one",
                meta.engine
            )));
        }
        meta.arch.validate()?;
        let mut cursor = file.body;
        let mut layers = Vec::new();
        for _ in 0..meta.arch.hidden_layers + 2 {
            layers.push(IntLinear::read(&mut cursor)?);
        }
        if !cursor.is_empty() {
            return Err(Error::InvalidModel(
                "trailing bytes after the last layer".into(),
            ));
        }
        let model = PixelCnnInt {
            meta,
            layers,
            id: file.id,
        };
        model.validate()?;
        Ok(model)
    }

    /// Serializes into the model-file container: metadata JSON, then each layer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let meta = serde_json::to_vec(&self.meta).expect("metadata serializes");
        let mut body = Vec::new();
        for l in &self.layers {
            l.write(&mut body);
        }
        ModelFile::assemble(&meta, &body)
    }

    /// Builds a model from layers (the quantizer's output), computing its id.
    pub fn from_layers(meta: ModelMeta, layers: Vec<IntLinear>) -> Result<PixelCnnInt> {
        let tmp = PixelCnnInt {
            meta,
            layers,
            id: ModelId(0),
        };
        PixelCnnInt::from_bytes(&tmp.to_bytes())
    }

    /// The same network with the adaptive stage `scale-select-1` (a new model file, so a new
    /// id).
    pub fn with_adaptive_stage(self) -> Result<PixelCnnInt> {
        let mut meta = self.meta;
        meta.adapt = Some(crate::coding::adaptive::SCALE_SELECT_1.into());
        PixelCnnInt::from_layers(meta, self.layers)
    }

    /// Shapes, causal masks and exactness bounds.
    pub fn validate(&self) -> Result<()> {
        let a = &self.meta.arch;
        a.validate()?;
        let bad = |m: String| Err(Error::InvalidModel(m));
        if self.layers.len() != a.hidden_layers + 2 {
            return bad("wrong number of layers".into());
        }
        let input_bound = vec![fixed::INPUT_BOUND; a.input_len()];
        let hidden_bound = vec![fixed::ACT_MAX as i64; a.hidden];
        for (l, layer) in self.layers.iter().enumerate() {
            let last = l == a.hidden_layers + 1;
            let (bound, mask): (Vec<i64>, MaskFn) = if l == 0 {
                (input_bound.clone(), Box::new(|o, i| a.mask_first(o, i)))
            } else if !last {
                (hidden_bound.clone(), Box::new(|o, i| a.mask_hidden(o, i)))
            } else {
                let mut b = hidden_bound.clone();
                b.extend_from_slice(&input_bound);
                (b, Box::new(|o, j| a.mask_output(o, j)))
            };
            let outputs = if last { a.outputs() } else { a.hidden };
            if layer.outputs != outputs {
                return bad(format!(
                    "layer {l} has {} outputs, expected {outputs}",
                    layer.outputs
                ));
            }
            layer.validate(&bound)?;
            let (lo, hi) = if last {
                (-fixed::OUTPUT_MAX, fixed::OUTPUT_MAX)
            } else {
                (0, fixed::ACT_MAX)
            };
            if layer.lo != lo || layer.hi != hi {
                return bad(format!(
                    "layer {l} clamps to [{}, {}], expected [{lo}, {hi}]",
                    layer.lo, layer.hi
                ));
            }
            for o in 0..layer.outputs {
                for i in 0..layer.inputs {
                    if !mask(o, i) && layer.weight[o * layer.inputs + i] != 0 {
                        return bad(format!(
                            "layer {l} weight ({o}, {i}) breaks the causal mask"
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    pub fn parameters(&self) -> usize {
        self.layers.iter().map(|l| l.parameters()).sum()
    }

    /// Multiply-accumulates per pixel (all channels).
    pub fn macs_per_pixel(&self) -> usize {
        self.layers.iter().map(|l| l.weight.len()).sum()
    }

    // ---- the reference: straight loops, i64, whole network per query -------------------

    /// The reference evaluation: parameters (`3 · components`) of channel `c` at pixel (`x`,`y`)
    /// of `ctx` (`channels` interleaved samples per pixel; all of the pixel's own channels may
    /// hold their true values: the masks ignore those not yet known).
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
        let mut input = vec![0i32; a.input_len()];
        a.gather_context(ctx, width, height, x, y, &mut input);
        let base = (y as usize * width as usize + x as usize) * a.channels;
        for ch in 0..a.channels {
            input[a.context_len() + ch] = ctx[base + ch] as i32 - 128;
        }
        let mut h = input.clone();
        for layer in &self.layers[..self.layers.len() - 1] {
            let mut out = vec![0; layer.outputs];
            layer.forward_reference(&h, &mut out);
            h = out;
        }
        h.extend_from_slice(&input);
        let out_layer = self.layers.last().expect("validated");
        let mut out = vec![0; out_layer.outputs];
        out_layer.forward_reference(&h, &mut out);
        let p = a.params_per_channel();
        out[c * p..(c + 1) * p].to_vec()
    }

    // ---- the engine: incremental, one group of units per channel -----------------------

    pub fn new_state(&self) -> PixelState {
        let a = &self.meta.arch;
        PixelState {
            bufs: vec![vec![0; a.hidden]; a.hidden_layers],
            cat: vec![0; a.hidden + a.input_len()],
        }
    }

    /// Starts a pixel: gathers its context, clears its own channels.
    pub fn begin_pixel(
        &self,
        st: &mut PixelState,
        ctx: &[u8],
        width: u32,
        height: u32,
        x: u32,
        y: u32,
    ) {
        let a = &self.meta.arch;
        let input = &mut st.cat[a.hidden..];
        a.gather_context(ctx, width, height, x, y, input);
        input[a.context_len()..].fill(0);
    }

    /// Records the value of channel `c` of the current pixel (needed by later channels).
    pub fn set_channel(&self, st: &mut PixelState, c: usize, value: u8) {
        let a = &self.meta.arch;
        st.cat[a.hidden + a.context_len() + c] = value as i32 - 128;
    }

    /// Computes channel `c`'s parameters into `out` (`3 · components`). Channels must be
    /// queried in order 0, 1, … for each pixel, each after the previous ones were set: each call
    /// computes only group `c`'s units of every layer, so a pixel costs one network evaluation.
    pub fn channel_params(&self, st: &mut PixelState, c: usize, out: &mut [i32]) {
        let a = &self.meta.arch;
        let units = a.group_units(c);
        let n = a.hidden_layers;
        let (head, input) = st.cat.split_at_mut(a.hidden);
        for (l, layer) in self.layers[..=n].iter().enumerate() {
            if l == 0 {
                let dst = if n == 0 { &mut *head } else { &mut st.bufs[0] };
                layer.forward_i32(input, dst, units.clone());
            } else {
                let (before, after) = st.bufs.split_at_mut(l);
                let src = &before[l - 1];
                let dst = if l == n { &mut *head } else { &mut after[0] };
                layer.forward_i32(src, dst, units.clone());
            }
        }
        let p = a.params_per_channel();
        let out_layer = &self.layers[n + 1];
        // Output rows of channel c only.
        for (k, o) in (c * p..(c + 1) * p).enumerate() {
            let row = &out_layer.weight[o * out_layer.inputs..(o + 1) * out_layer.inputs];
            let acc = crate::intnet::dot_i32(row, &st.cat).wrapping_add(out_layer.bias[o]);
            out[k] = crate::intnet::requantize(
                acc as i64,
                out_layer.shift[o],
                out_layer.lo,
                out_layer.hi,
            );
        }
    }
}

impl super::session::PixelNet for PixelCnnInt {
    type State = PixelState;
    /// `cargo bench --bench engine`: about 7.6 G/s with AVX2 (2.9 G/s without) against the
    /// 8-bit engine's 32 G/s.
    const MAC_COST: usize = 4;

    fn meta(&self) -> &ModelMeta {
        &self.meta
    }

    fn arch(&self) -> &Arch {
        &self.meta.arch
    }

    fn macs_per_pixel(&self) -> usize {
        PixelCnnInt::macs_per_pixel(self)
    }

    fn state_bytes(&self) -> usize {
        let a = self.arch();
        (a.hidden * a.hidden_layers + a.hidden + a.input_len()) * 4
    }

    fn new_state(&self) -> PixelState {
        PixelCnnInt::new_state(self)
    }

    fn begin_pixel(&self, st: &mut PixelState, ctx: &[u8], w: u32, h: u32, x: u32, y: u32) {
        PixelCnnInt::begin_pixel(self, st, ctx, w, h, x, y)
    }

    fn set_channel(&self, st: &mut PixelState, c: usize, value: u8) {
        PixelCnnInt::set_channel(self, st, c, value)
    }

    fn channel_params(&self, st: &mut PixelState, c: usize, out: &mut [i32]) {
        PixelCnnInt::channel_params(self, st, c, out)
    }
}

/// Splits a channel's parameters into the three arrays the coding layer takes.
pub fn split_params(p: &[i32], components: usize) -> (&[i32], &[i32], &[i32]) {
    (
        &p[..components],
        &p[components..2 * components],
        &p[2 * components..3 * components],
    )
}
