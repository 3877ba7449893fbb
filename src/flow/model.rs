//! The flow's model file and networks (SPEC.md, "Flow models").
//!
//! A [`FlowModel`] is its metadata ([`FlowMeta`]) and one [`FlowNet`] per coupling and prior,
//! in the file's order. Every network is three convolutions of the 8-bit engine; its first
//! layer comes in four variants, one per plane role (the role biases folded into the layer's
//! biases at load; `FlowNet::new` checks the accumulator bound with every role's biases, which
//! covers every variant).

use serde::{Deserialize, Serialize};

use crate::coding::latent::MAX_LATENT_COMPONENTS;
use crate::error::{Error, Result};
use crate::format::ModelId;
use crate::intnet::conv::{ConvOut, U8Conv, Window};
use crate::intnet::int8::{Kernel, U8Linear};
use crate::intnet::{take, ACC_LIMIT};
use crate::model_file::ModelFile;

/// The `family` of flow model files.
pub const FAMILY_NAME: &str = "flow";
/// The architecture that codes each plane alone (SPEC.md "Flow models").
pub const PLANE_IDF_1: &str = "plane-idf-1";
/// The architecture with a joint flow of an RGB image's three colour planes and a plane flow
/// for gray and alpha planes (SPEC.md, "Joint flows").
pub const JOINT_IDF_2: &str = "joint-idf-2";
/// Bytes of the condition at every level: 3 slots, squeezed.
pub const COND_CHANNELS: usize = 12;
/// Plane roles: colour planes 0, 1, 2 by index, alpha 3.
pub const ROLES: usize = 4;
/// Largest magnitude of a coupling's translation (its output layer's clamp).
pub const TRANSLATION_LIMIT: i32 = 1 << 16;
/// Largest magnitude of a prior's outputs.
pub const PRIOR_LIMIT: i32 = 1 << 24;

/// What a flow model file says about itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlowMeta {
    /// `"flow"`.
    pub family: String,
    pub name: String,
    /// The architecture, [`PLANE_IDF_1`] or [`JOINT_IDF_2`].
    pub flow: String,
    /// `L`: squeeze levels, 1 ..= 4.
    pub levels: usize,
    /// `K`: couplings per level, 1 ..= 16.
    pub couplings: usize,
    /// `h`: hidden width of every network, 1 ..= 512.
    pub hidden: usize,
    /// Mixture components of every latent's prior, 1 ..= 8.
    pub components: usize,
    /// Planes the flow transforms together: 1 (`plane-idf-1`: one plane at a time), or 3
    /// (`joint-idf-2`: the colour planes of an RGB image at once). Absent means 1, so
    /// `plane-idf-1` files keep their bytes and ids.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub colours: usize,
    /// `joint-idf-2`: the plane flow that codes gray and alpha planes (its networks follow the
    /// joint flow's in the body).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plane: Option<PlaneFlowMeta>,
}

/// The size of a joint model's plane flow (a `plane-idf-1` flow without a file of its own).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaneFlowMeta {
    pub levels: usize,
    pub couplings: usize,
    pub hidden: usize,
    pub components: usize,
}

fn one() -> usize {
    1
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

impl FlowMeta {
    /// Checks the fields (a model file also needs a joint flow's plane flow, which training
    /// does without).
    pub fn validate(&self) -> Result<()> {
        if self.family != FAMILY_NAME {
            return Err(Error::InvalidModel(format!(
                "model family {:?} is not {FAMILY_NAME}",
                self.family
            )));
        }
        let colours = match self.flow.as_str() {
            PLANE_IDF_1 => 1,
            JOINT_IDF_2 => 3,
            _ => {
                return Err(Error::UnsupportedFamily(format!(
                    "flow architecture {:?}",
                    self.flow
                )))
            }
        };
        if self.colours != colours {
            return Err(Error::InvalidModel(format!(
                "a {} flow of {} planes",
                self.flow, self.colours
            )));
        }
        if self.plane.is_some() && colours == 1 {
            return Err(Error::InvalidModel(format!(
                "a {} flow with a plane flow",
                self.flow
            )));
        }
        if let Some(p) = self.plane_meta() {
            p.validate()?;
        }
        if !(1..=4).contains(&self.levels)
            || !(1..=16).contains(&self.couplings)
            || !(1..=512).contains(&self.hidden)
            || !(1..=MAX_LATENT_COMPONENTS).contains(&self.components)
        {
            return Err(Error::InvalidModel(format!(
                "flow of {} levels, {} couplings, {} hidden units, {} components",
                self.levels, self.couplings, self.hidden, self.components
            )));
        }
        Ok(())
    }

    /// The metadata of a joint model's plane flow, as a `plane-idf-1` flow's.
    pub fn plane_meta(&self) -> Option<FlowMeta> {
        self.plane.map(|p| FlowMeta {
            family: self.family.clone(),
            name: self.name.clone(),
            flow: PLANE_IDF_1.into(),
            levels: p.levels,
            couplings: p.couplings,
            hidden: p.hidden,
            components: p.components,
            colours: 1,
            plane: None,
        })
    }

    /// `n_l`: channels at level `l` (1-based): `colours · 2^(l+1)`.
    pub fn channels(&self, level: usize) -> usize {
        self.colours << (level + 1)
    }

    /// The networks in file order, each as `(kind, level, inputs, outputs)` in channels.
    pub fn networks(&self) -> Vec<(NetKind, usize, usize, usize)> {
        let mut nets = Vec::new();
        for l in 1..=self.levels {
            let half = self.channels(l) / 2;
            for _ in 0..self.couplings {
                nets.push((NetKind::Coupling, l, half + COND_CHANNELS, half));
            }
            if l < self.levels {
                nets.push((
                    NetKind::Prior,
                    l,
                    half + COND_CHANNELS,
                    self.prior_outputs(half),
                ));
            }
        }
        let top = self.channels(self.levels);
        nets.push((
            NetKind::Prior,
            self.levels,
            COND_CHANNELS,
            self.prior_outputs(top),
        ));
        nets
    }

    /// Outputs of a prior of `m` latent channels: logit, mean and log-scale of each component.
    pub fn prior_outputs(&self, m: usize) -> usize {
        3 * self.components * m
    }

    /// The multiple of which extended widths and heights are: `2^L`, for a joint model the
    /// larger of its two flows'.
    pub fn block(&self) -> usize {
        let plane_levels = self.plane.map_or(0, |p| p.levels);
        1 << self.levels.max(plane_levels)
    }
}

/// What a network computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetKind {
    /// The translation of a coupling, clamped within ±[`TRANSLATION_LIMIT`].
    Coupling,
    /// Logits (2^-16), means (1/256) and log-scales (2^-16) of latents, within
    /// ±[`PRIOR_LIMIT`].
    Prior,
}

/// One network: 3×3 `in → h` (per role), 1×1 `h → h`, 3×3 `h → out`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowNet {
    /// The first layer with each role's biases added, `[ROLES]`.
    first: Vec<U8Conv>,
    /// The role biases as stored, `[ROLES][h]` (kept to write the file back).
    role_bias: Vec<Vec<i32>>,
    middle: U8Conv,
    last: U8Conv,
}

/// Reusable buffers of one network evaluation.
#[derive(Default)]
pub struct NetScratch {
    a: Vec<u8>,
    b: Vec<u8>,
}

impl FlowNet {
    /// A network from its three layers (first without role biases) and the role biases.
    pub fn new(
        kind: NetKind,
        (inputs, outputs): (usize, usize),
        layers: [U8Linear; 3],
        role_bias: Vec<Vec<i32>>,
    ) -> Result<FlowNet> {
        let [first, middle, last] = layers;
        let h = first.outputs();
        let bad = |m: &str| Err(Error::InvalidModel(format!("flow network: {m}")));
        if middle.outputs() != h || last.outputs() != outputs {
            return bad("layer widths do not chain");
        }
        if role_bias.len() != ROLES || role_bias.iter().any(|r| r.len() != h) {
            return bad("role biases do not match the hidden width");
        }
        let bytes = |l: &U8Linear| l.lo >= 0 && l.hi <= 255;
        let limit = match kind {
            NetKind::Coupling => TRANSLATION_LIMIT,
            NetKind::Prior => PRIOR_LIMIT,
        };
        if !bytes(&first) || !bytes(&middle) || last.lo < -limit || last.hi > limit {
            return bad("a layer's clamp is out of range");
        }
        // SPEC.md: |bias| + |role_bias| + 255·Σ|w| < 2^31 for every output and role (the
        // summed bias of each variant is then within the bound too).
        for o in 0..h {
            let weights: i64 = first.row(o).iter().map(|&w| 255 * (w as i64).abs()).sum();
            let bias = (first.bias[o] as i64).abs() + weights;
            if role_bias
                .iter()
                .any(|rb| bias + (rb[o] as i64).abs() >= ACC_LIMIT)
            {
                return bad("a first layer's biases and weights can overflow 2^31");
            }
        }
        let first = role_bias
            .iter()
            .map(|rb| U8Conv::new(Window::Three, inputs, with_added_bias(&first, rb)?))
            .collect::<Result<Vec<_>>>()?;
        Ok(FlowNet {
            first,
            role_bias,
            middle: U8Conv::new(Window::One, h, middle)?,
            last: U8Conv::new(Window::Three, h, last)?,
        })
    }

    /// Reads a network of `inputs → outputs` channels with `hidden` units.
    pub fn read(
        bytes: &mut &[u8],
        kind: NetKind,
        (inputs, hidden, outputs): (usize, usize, usize),
    ) -> Result<FlowNet> {
        let first = U8Linear::read(bytes, (9 * inputs, hidden))?;
        let middle = U8Linear::read(bytes, (hidden, hidden))?;
        let last = U8Linear::read(bytes, (9 * hidden, outputs))?;
        let raw = take(bytes, 4 * ROLES * hidden)?;
        let role_bias = raw
            .chunks_exact(4 * hidden)
            .map(|r| {
                r.chunks_exact(4)
                    .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect()
            })
            .collect();
        FlowNet::new(kind, (inputs, outputs), [first, middle, last], role_bias)
    }

    pub fn write(&self, out: &mut Vec<u8>) {
        // The first layer as stored: role 0's variant minus role 0's biases.
        let mut first = self.first[0].layer.clone();
        for (b, &r) in first.bias.iter_mut().zip(&self.role_bias[0]) {
            *b -= r;
        }
        first.write(out);
        self.middle.layer.write(out);
        self.last.layer.write(out);
        for r in self.role_bias.iter().flatten() {
            out.extend_from_slice(&r.to_le_bytes());
        }
    }

    pub fn hidden(&self) -> usize {
        self.middle.outputs()
    }

    /// The three convolutions a plane of `role` runs through.
    pub fn layers(&self, role: usize) -> [&U8Conv; 3] {
        [&self.first[role], &self.middle, &self.last]
    }

    pub fn outputs(&self) -> usize {
        self.last.outputs()
    }

    pub fn parameters(&self) -> usize {
        self.first[0].layer.parameters()
            + self.middle.layer.parameters()
            + self.last.layer.parameters()
            + ROLES * self.hidden()
    }

    /// Multiply-accumulates per position.
    pub fn macs_per_position(&self) -> u64 {
        self.first[0].macs_per_position()
            + self.middle.macs_per_position()
            + self.last.macs_per_position()
    }

    /// The network on a `size` grid of input vectors (`[h][w][inputs]`) for a plane of
    /// `role`, into `out` (`[h][w][outputs]`), with `engine` (the i64 definition, or the engine
    /// with a kernel). An input that is the same at every position is computed on a small grid
    /// and copied out (`FlowNet::run_constant`), with the same integers.
    pub fn run(
        &self,
        engine: Engine,
        role: usize,
        input: &[u8],
        size: (usize, usize),
        scratch: &mut NetScratch,
        out: &mut [i32],
    ) {
        if self.run_constant(engine, role, input, size, scratch, out) {
            return;
        }
        self.run_grid(engine, role, input, size, scratch, out);
    }

    /// [`FlowNet::run`] for an input that is the same vector at every position (a top prior
    /// on a zero condition): the outputs then differ only by how near a position is to the
    /// grid's edges, where the zero padding enters. Two 3×3 layers see two positions in from
    /// each edge, so the network on a grid of at most 5×5 gives every output: position `y` of
    /// `h` takes the small grid's row `y` within two of the top, `hs − (h − y)` within two of
    /// the bottom, and the middle row 2 elsewhere (likewise columns). Exact by construction:
    /// each small-grid position sees the same windows of the same values as the positions it
    /// stands for. Returns `false`, doing nothing, when the shortcut does not apply.
    fn run_constant(
        &self,
        engine: Engine,
        role: usize,
        input: &[u8],
        (h, w): (usize, usize),
        scratch: &mut NetScratch,
        out: &mut [i32],
    ) -> bool {
        const EDGE: usize = 2;
        const SMALL: usize = 2 * EDGE + 1;
        let vector = input.len() / (h * w).max(1);
        if (h <= SMALL && w <= SMALL) || vector == 0 {
            return false;
        }
        let first = &input[..vector];
        if input.chunks_exact(vector).any(|v| v != first) {
            return false;
        }
        let (hs, ws) = (h.min(SMALL), w.min(SMALL));
        let small_input = first.repeat(hs * ws);
        let o = self.outputs();
        let mut small = vec![0i32; hs * ws * o];
        self.run_grid(engine, role, &small_input, (hs, ws), scratch, &mut small);
        let map = |v: usize, n: usize, ns: usize| {
            if v < EDGE {
                v
            } else if v + EDGE >= n {
                ns - (n - v)
            } else {
                EDGE
            }
        };
        for y in 0..h {
            let ys = map(y, h, hs);
            for x in 0..w {
                let at = (ys * ws + map(x, w, ws)) * o;
                out[(y * w + x) * o..(y * w + x + 1) * o].copy_from_slice(&small[at..at + o]);
            }
        }
        true
    }

    /// [`FlowNet::run`], every position computed.
    fn run_grid(
        &self,
        engine: Engine,
        role: usize,
        input: &[u8],
        size: (usize, usize),
        scratch: &mut NetScratch,
        out: &mut [i32],
    ) {
        let n = size.0 * size.1 * self.hidden();
        scratch.a.resize(n, 0);
        scratch.b.resize(n, 0);
        let conv = |c: &U8Conv, x: &[u8], y: ConvOut<'_>| match engine {
            Engine::Reference => c.forward_reference(x, size, y),
            Engine::Kernel(k) => c.forward(k, x, size, y),
        };
        conv(&self.first[role], input, ConvOut::Bytes(&mut scratch.a));
        conv(&self.middle, &scratch.a, ConvOut::Bytes(&mut scratch.b));
        conv(&self.last, &scratch.b, ConvOut::Wide(out));
    }
}

/// How networks are evaluated: the definition, or the engine with a kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Reference,
    Kernel(Kernel),
}

/// `layer` with `add[o]` added to each bias. The caller has checked the accumulator bound
/// with the added biases (SPEC.md), so the sum stays a valid layer; only the biases change
/// (a copy of the packed weights, not a repacking).
fn with_added_bias(layer: &U8Linear, add: &[i32]) -> Result<U8Linear> {
    let mut out = layer.clone();
    for (b, &a) in out.bias.iter_mut().zip(add) {
        *b = b
            .checked_add(a)
            .ok_or_else(|| Error::InvalidModel("a role bias overflows".into()))?;
    }
    Ok(out)
}

/// The networks `meta` lists ([`FlowMeta::networks`]), read in order.
fn read_networks(meta: &FlowMeta, cursor: &mut &[u8]) -> Result<Vec<FlowNet>> {
    meta.networks()
        .into_iter()
        .map(|(kind, _, i, o)| FlowNet::read(cursor, kind, (i, meta.hidden, o)))
        .collect()
}

/// An integer discrete flow: its metadata and networks, in file order
/// ([`FlowMeta::networks`]).
#[derive(Clone, Debug)]
pub struct FlowModel {
    pub meta: FlowMeta,
    pub nets: Vec<FlowNet>,
    pub id: ModelId,
    pub engine: Engine,
    /// A joint model's plane flow (gray and alpha planes); its networks follow `nets` in the
    /// file.
    pub plane: Option<Box<FlowModel>>,
}

impl FlowModel {
    /// Parses and validates a flow model file.
    pub fn from_model_file(file: &ModelFile<'_>) -> Result<FlowModel> {
        let invalid = |e: serde_json::Error| Error::InvalidModel(format!("model metadata: {e}"));
        // The architecture first: a newer one may have other fields, and is unsupported, not
        // invalid.
        let value: serde_json::Value = serde_json::from_slice(file.meta_json).map_err(invalid)?;
        if let Some(arch) = value.get("flow").and_then(|v| v.as_str()) {
            if arch != PLANE_IDF_1 && arch != JOINT_IDF_2 {
                return Err(Error::UnsupportedFamily(format!(
                    "flow architecture {arch:?}"
                )));
            }
        }
        let meta: FlowMeta = serde_json::from_value(value).map_err(invalid)?;
        meta.validate()?;
        if meta.colours == 3 && meta.plane.is_none() {
            // A joint flow alone (as in training) codes no gray or alpha plane.
            return Err(Error::InvalidModel(format!(
                "a {} flow without a plane flow",
                meta.flow
            )));
        }
        let mut cursor = file.body;
        let engine = Engine::Kernel(Kernel::detect());
        let nets = read_networks(&meta, &mut cursor)?;
        let plane = match meta.plane_meta() {
            Some(pm) => Some(Box::new(FlowModel {
                nets: read_networks(&pm, &mut cursor)?,
                meta: pm,
                id: file.id,
                engine,
                plane: None,
            })),
            None => None,
        };
        if !cursor.is_empty() {
            return Err(Error::InvalidModel(
                "trailing bytes after the last network".into(),
            ));
        }
        Ok(FlowModel {
            meta,
            nets,
            id: file.id,
            engine,
            plane,
        })
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<FlowModel> {
        FlowModel::from_model_file(&ModelFile::parse(bytes)?)
    }

    /// The model file (its SHA-256 is the id).
    pub fn to_bytes(&self) -> Vec<u8> {
        let meta = serde_json::to_vec(&self.meta).expect("metadata serializes");
        let mut body = Vec::new();
        let plane_nets = self.plane.iter().flat_map(|p| &p.nets);
        for n in self.nets.iter().chain(plane_nets) {
            n.write(&mut body);
        }
        ModelFile::assemble(&meta, &body)
    }

    /// The same model evaluated with `engine` (tests compare the kernels and the reference).
    pub fn with_engine(mut self, engine: Engine) -> FlowModel {
        self.engine = engine;
        if let Some(p) = self.plane.take() {
            self.plane = Some(Box::new(p.with_engine(engine)));
        }
        self
    }

    pub fn parameters(&self) -> usize {
        let own: usize = self.nets.iter().map(|n| n.parameters()).sum();
        own + self.plane.as_ref().map_or(0, |p| p.parameters())
    }

    /// The flow that codes gray and alpha planes: a joint model's plane flow, else the model.
    pub fn plane_flow(&self) -> &FlowModel {
        self.plane.as_deref().unwrap_or(self)
    }

    /// The coupling networks of level `l` (1-based), in order.
    pub fn couplings(&self, level: usize) -> &[FlowNet] {
        let start = self.level_start(level);
        &self.nets[start..start + self.meta.couplings]
    }

    /// The prior of level `l`'s latents (the top prior for `l = L`).
    pub fn prior(&self, level: usize) -> &FlowNet {
        &self.nets[self.level_start(level) + self.meta.couplings]
    }

    fn level_start(&self, level: usize) -> usize {
        (level - 1) * (self.meta.couplings + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intnet::int8::Kernel;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// The constant-input shortcut against every position computed, on grids from 1x1 up,
    /// zero and random input vectors, the definition and every kernel.
    #[test]
    fn a_constant_input_gives_what_every_position_computed_gives() {
        let model = crate::testing::random_flow_mixture(2, 1, 7, 2, 8.0, 3);
        let mut rng = StdRng::seed_from_u64(4);
        let engines = std::iter::once(Engine::Reference)
            .chain(Kernel::available().into_iter().map(Engine::Kernel));
        let mut shortcuts = 0;
        for engine in engines {
            for net in [model.prior(2), model.couplings(1).first().unwrap()] {
                let inputs = net.first[0].channels;
                for (h, w) in (1..=8)
                    .flat_map(|h| (1..=8).map(move |w| (h, w)))
                    .chain([(13, 6)])
                {
                    let vector: Vec<u8> = match rng.gen_range(0..3) {
                        0 => vec![0; inputs],
                        _ => (0..inputs).map(|_| rng.gen()).collect(),
                    };
                    let input = vector.repeat(h * w);
                    let mut fast = vec![0; h * w * net.outputs()];
                    let mut full = vec![1; h * w * net.outputs()];
                    let mut scratch = NetScratch::default();
                    let role = rng.gen_range(0..ROLES);
                    if net.run_constant(engine, role, &input, (h, w), &mut scratch, &mut fast) {
                        shortcuts += 1;
                    } else {
                        net.run(engine, role, &input, (h, w), &mut scratch, &mut fast);
                    }
                    net.run_grid(engine, role, &input, (h, w), &mut scratch, &mut full);
                    assert_eq!(fast, full, "{engine:?} {h}x{w}");
                }
            }
        }
        assert!(shortcuts > 40, "the shortcut ran {shortcuts} times");
    }

    #[test]
    fn an_input_that_varies_is_computed_at_every_position() {
        let model = crate::testing::random_flow(1, 1, 5, 8.0, 1);
        let net = model.prior(1);
        let inputs = net.first[0].channels;
        let mut input = vec![0u8; 7 * 7 * inputs];
        input[3 * 7 * inputs + 3 * inputs] = 1; // one byte of the centre position
        let mut out = vec![0; 7 * 7 * net.outputs()];
        let mut scratch = NetScratch::default();
        assert!(!net.run_constant(Engine::Reference, 0, &input, (7, 7), &mut scratch, &mut out));
    }
}
