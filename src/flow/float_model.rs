//! The flow in float for training (tch), with the exported quantization in the loop.
//!
//! Every layer is trained as the integer layer it becomes: weights are rounded to their
//! integer grid per output channel in the forward pass (8 bits in `[−64, 64]` for the hidden
//! layers, 16 bits for the output layer) and hidden activations to bytes in `0..=255`, with
//! straight-through gradients; couplings round their translations (as IDF does). The float
//! network therefore computes what the integer network computes, up to the requantization
//! multiplier's 16 bits. [`FlowFloat::to_int`] writes those integers into a [`FlowModel`].
//!
//! Shapes: groups of planes `[N, P, H, W]` (`P` = the flow's `colours`: 1, or 3 for a joint
//! flow), condition slots `[N, 3, H, W]` (bytes as floats), roles `[N]` (`i64`); `H`, `W`
//! multiples of `2^L`.

use tch::nn::{self, Init};
use tch::{Device, Kind, Tensor};

use super::model::{FlowMeta, FlowModel, FlowNet, NetKind, ROLES, TRANSLATION_LIMIT};
use super::transform::{Chw, Latents, PriorGrid};
use crate::error::{Error, Result};
use crate::format::ModelId;
use crate::intnet::int8::{U8Linear, WeightBits, MULT_LIMIT, SHIFT_MAX};
use crate::intnet::tch_eval::TchConv;

/// Gain of the hidden layers' bias variables (their outputs are bytes).
const HIDDEN_BIAS_GAIN: f64 = 32.0;
/// Gain of the output layers' weight variables (see `NetFloat::w3_per_byte`).
const OUTPUT_WEIGHT_GAIN: f64 = 1.0;
/// Gain of the output layers' bias variables.
const OUTPUT_BIAS_GAIN: f64 = 4.0;

/// `x` rounded in the forward pass, the identity in the backward pass.
pub(crate) fn round_ste(x: &Tensor) -> Tensor {
    x + (x.round() - x).detach()
}

/// Bytes as the integer layer clamps and rounds them (gradient passes inside the range).
fn to_bytes(x: &Tensor) -> Tensor {
    round_ste(&x.clamp(0.0, 255.0))
}

/// Per-output-channel weight step of a `[O, …]` weight tensor (detached): the largest
/// magnitude maps to `max`; for 16-bit rows also `255 · Σ|q| ≤ 2^30`, so the accumulator
/// bound leaves half its range to the bias.
fn weight_step(w: &Tensor, bits: WeightBits) -> Tensor {
    let o = w.size()[0];
    let flat = w.detach().abs().reshape([o, -1]);
    let by_max = flat.amax([1], true) / bits.max() as f64;
    let step = match bits {
        WeightBits::Eight => by_max,
        WeightBits::Sixteen => by_max.maximum(
            &(flat.sum_dim_intlist([1i64].as_slice(), true, Kind::Float)
                * (255.0 / (1u64 << 30) as f64)),
        ),
    };
    step.clamp_min(1e-12)
}

/// The weights on their integer grid (`step · q`), straight-through.
fn fake_quant(w: &Tensor, bits: WeightBits) -> (Tensor, Tensor) {
    let step = weight_step(w, bits);
    let shape: Vec<i64> = std::iter::once(-1)
        .chain(std::iter::repeat_n(1, w.dim() - 1))
        .collect();
    let s = step.reshape(shape.as_slice());
    let q = (w / &s).clamp(-(bits.max() as f64), bits.max() as f64);
    (round_ste(&q) * &s, step)
}

/// One network in float: 3×3 `in → h` (plus a bias per role), 1×1 `h → h`, 3×3 `h → out`.
/// (The VAE's networks are these too.)
pub(crate) struct NetFloat {
    w1: Tensor,
    b1: Tensor,
    role_bias: Tensor,
    w2: Tensor,
    b2: Tensor,
    w3: Tensor,
    b3: Tensor,
}

impl NetFloat {
    pub(crate) fn new(
        p: nn::Path,
        kind: NetKind,
        inputs: i64,
        hidden: i64,
        outputs: i64,
    ) -> NetFloat {
        // Inputs are bytes (0..=255, root mean square about 150): pre-activations start with a
        // spread of about 100, inside the byte range.
        let k1 = 0.7 / (9.0 * inputs as f64).sqrt();
        let k2 = 0.6 / (hidden as f64).sqrt();
        // A prior's log-scales start at 2 nats (scale 7.4), its means and translations at 0;
        // its components' means spread a little, so that they can part.
        let b3_init = |p: &nn::Path| {
            let b = p.var("b3", &[outputs], Init::Const(0.0));
            if kind == NetKind::Prior {
                let part = outputs / 3;
                tch::no_grad(|| {
                    let _ = b.narrow(0, 2 * part, part).fill_(2.0 / OUTPUT_BIAS_GAIN);
                    b.narrow(0, part, part).copy_(
                        &(Tensor::randn([part], (Kind::Float, b.device()))
                            * (0.5 / OUTPUT_BIAS_GAIN)),
                    );
                });
            }
            b
        };
        NetFloat {
            w1: p.var(
                "w1",
                &[hidden, inputs, 3, 3],
                Init::Randn {
                    mean: 0.0,
                    stdev: k1,
                },
            ),
            b1: p.var("b1", &[hidden], Init::Const(0.0)),
            role_bias: p.var("role_bias", &[ROLES as i64, hidden], Init::Const(0.0)),
            w2: p.var(
                "w2",
                &[hidden, hidden, 1, 1],
                Init::Randn {
                    mean: 0.0,
                    stdev: k2,
                },
            ),
            b2: p.var("b2", &[hidden], Init::Const(0.0)),
            // The output starts at zero: identity couplings and a standard prior.
            w3: p.var("w3", &[outputs, hidden, 3, 3], Init::Const(0.0)),
            b3: b3_init(&p),
        }
    }

    /// `x`: `[N, in, h, w]` bytes as floats → `[N, out, h, w]` (translations in latent units;
    /// prior means in latent units and log-scales in nats).
    pub(crate) fn forward(&self, x: &Tensor, roles: &Tensor) -> Tensor {
        let (w1, _) = fake_quant(&self.w1, WeightBits::Eight);
        let (w2, _) = fake_quant(&self.w2, WeightBits::Eight);
        let (w3, _) = fake_quant(&self.w3_per_byte(), WeightBits::Sixteen);
        let [b1, rb, b2, b3] = self.biases();
        let rb = rb.index_select(0, roles).unsqueeze(-1).unsqueeze(-1);
        let a1 = to_bytes(&(x.conv2d(&w1, Some(&b1), [1, 1], [1, 1], [1, 1], 1) + rb));
        let a2 = to_bytes(&a1.conv2d(&w2, Some(&b2), [1, 1], [0, 0], [1, 1], 1));
        a2.conv2d(&w3, Some(&b3), [1, 1], [1, 1], [1, 1], 1)
    }

    /// Sets the output layer's weights (zero at creation) to normal noise of deviation `std`:
    /// for networks that must pass information from the start (a VAE's posterior and latent
    /// bias, which would otherwise wait on each other).
    pub(crate) fn perturb_output(&self, std: f64) {
        tch::no_grad(|| {
            let mut w3 = self.w3.shallow_clone();
            w3.copy_(&(Tensor::randn_like(&w3) * std));
        });
    }

    /// The output layer's weights per input byte: the variable times [`OUTPUT_WEIGHT_GAIN`]
    /// (1: a pilot with 1/64, which slows the output layer's learning, learned slower).
    fn w3_per_byte(&self) -> Tensor {
        &self.w3 * OUTPUT_WEIGHT_GAIN
    }

    /// The biases in the units of the layers' outputs (bytes; latent units and nats). The
    /// variables hold them divided by a gain, so that Adam's steps (about the learning rate
    /// in the variable) move a bias by a useful amount.
    fn biases(&self) -> [Tensor; 4] {
        [
            &self.b1 * HIDDEN_BIAS_GAIN,
            &self.role_bias * HIDDEN_BIAS_GAIN,
            &self.b2 * HIDDEN_BIAS_GAIN,
            &self.b3 * OUTPUT_BIAS_GAIN,
        ]
    }
}

/// `[N, C, H, W]` → `[N, 4C, H/2, W/2]`, channel `4c + 2dy + dx` (SPEC.md `squeeze`).
pub fn squeeze(x: &Tensor) -> Tensor {
    let s = x.size();
    let (n, c, h, w) = (s[0], s[1], s[2], s[3]);
    x.reshape([n, c, h / 2, 2, w / 2, 2])
        .permute([0, 1, 3, 5, 2, 4])
        .reshape([n, 4 * c, h / 2, w / 2])
}

/// The conditions of levels `1 ..= L` from the slots `[N, 3, H, W]` (SPEC.md).
pub fn conditions(slots: &Tensor, levels: usize) -> Vec<Tensor> {
    let mut c = slots.shallow_clone();
    let mut out = Vec::with_capacity(levels);
    for l in 1..=levels {
        if l > 1 {
            let sum = c.avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None::<i64>) * 4.0;
            c = ((sum + 2.0) / 4.0).floor();
        }
        out.push(squeeze(&c));
    }
    out
}

/// Bytes a network reads of latents: `clamp(z + 128, 0, 255)`.
pub(crate) fn latent_bytes(z: &Tensor) -> Tensor {
    (z + 128.0).clamp(0.0, 255.0)
}

/// −log2 of the discretized logistic's mass at integer `v`, elementwise.
pub fn latent_nll_bits(v: &Tensor, mean: &Tensor, log_scale: &Tensor) -> Tensor {
    -log_mass(v, mean, log_scale) / std::f64::consts::LN_2
}

/// ln of the discretized logistic's mass at integer `v`, elementwise (broadcasting).
pub(crate) fn log_mass(v: &Tensor, mean: &Tensor, log_scale: &Tensor) -> Tensor {
    let ls = log_scale.clamp(-5.0, 6.0);
    let inv = (-&ls).exp();
    let centred = v - mean;
    let plus = (&centred + 0.5) * &inv;
    let minus = (&centred - 0.5) * &inv;
    let delta = plus.sigmoid() - minus.sigmoid();
    // Where the bin's mass underflows, the density at its centre (PixelCNN++'s fallback).
    let mid = &centred * &inv;
    let log_pdf = &mid - &ls - mid.softplus() * 2.0;
    delta
        .clamp_min(1e-12)
        .log()
        .where_self(&delta.gt(1e-5), &log_pdf)
}

/// −log2 p of latents `y` `[N, m, h, w]` under `k`-component mixtures whose parameters are
/// `params` `[N, 3·k·m, h, w]`, channel `(part·k + i)·m + j` (logit, mean, log-scale).
pub fn mixture_nll_bits(y: &Tensor, params: &Tensor, k: usize) -> Tensor {
    let s = y.size();
    let (n, m, h, w) = (s[0], s[1], s[2], s[3]);
    let p = params.reshape([n, 3, k as i64, m, h, w]);
    let logits = p.select(1, 0);
    let (means, scales) = (p.select(1, 1), p.select(1, 2));
    let log_w = logits.log_softmax(1, Kind::Float);
    let lm = log_mass(&y.unsqueeze(1), &means, &scales);
    -(log_w + lm).logsumexp([1i64].as_slice(), false) / std::f64::consts::LN_2
}

/// The flow's float network.
pub struct FlowFloat {
    pub vs: nn::VarStore,
    pub meta: FlowMeta,
    nets: Vec<NetFloat>,
}

impl FlowFloat {
    pub fn new(meta: FlowMeta, device: Device) -> Result<FlowFloat> {
        meta.validate()?;
        let vs = nn::VarStore::new(device);
        let nets = meta
            .networks()
            .into_iter()
            .enumerate()
            .map(|(i, (kind, _, inp, out))| {
                NetFloat::new(
                    vs.root() / format!("net{i}"),
                    kind,
                    inp as i64,
                    meta.hidden as i64,
                    out as i64,
                )
            })
            .collect();
        Ok(FlowFloat { vs, meta, nets })
    }

    fn level_start(&self, level: usize) -> usize {
        (level - 1) * (self.meta.couplings + 1)
    }

    /// Total −log2 p of each group's latents, `[N]` in bits: `planes` `[N, P, H, W]` samples,
    /// `slots` `[N, 3, H, W]`, `roles` `[N]`.
    pub fn nll_bits(&self, planes: &Tensor, slots: &Tensor, roles: &Tensor) -> Tensor {
        let conds = conditions(slots, self.meta.levels);
        let mut z = planes - 128.0;
        let n = planes.size()[0];
        let mut bits = Tensor::zeros([n], (Kind::Float, planes.device()));
        let k = self.meta.couplings;
        for l in 1..=self.meta.levels {
            let cond = &conds[l - 1];
            z = squeeze(&z);
            let c = z.size()[1];
            let half = c / 2;
            let start = self.level_start(l);
            for net in &self.nets[start..start + k] {
                let a = z.narrow(1, 0, half);
                let b = z.narrow(1, half, half);
                let input = Tensor::cat(&[latent_bytes(&a), cond.shallow_clone()], 1);
                let t = round_ste(
                    &net.forward(&input, roles)
                        .clamp(-(TRANSLATION_LIMIT as f64), TRANSLATION_LIMIT as f64),
                );
                z = Tensor::cat(&[a, b + t], 1).flip([1]);
            }
            let prior = &self.nets[start + k];
            let (y, params) = if l < self.meta.levels {
                let kept = z.narrow(1, half, half);
                let input = Tensor::cat(&[latent_bytes(&kept), cond.shallow_clone()], 1);
                let params = prior.forward(&input, roles);
                let y = z.narrow(1, 0, half);
                z = kept;
                (y, params)
            } else {
                (z.shallow_clone(), prior.forward(cond, roles))
            };
            let nll = mixture_nll_bits(&y, &params, self.meta.components);
            bits += nll.sum_dim_intlist([1i64, 2, 3].as_slice(), false, Kind::Float);
        }
        bits
    }

    /// The integer model: each layer's weights on the grid the forward pass used, biases and
    /// requantization multipliers for the same scale. A joint flow (`colours` 3) needs its
    /// plane flow, a `plane-idf-1` model, to make a `joint-idf-2` model.
    pub fn to_int(&self, name: &str, plane: Option<&FlowModel>) -> Result<FlowModel> {
        let _guard = tch::no_grad_guard();
        let mut meta = self.meta.clone();
        meta.name = name.into();
        let plane = match (meta.colours, plane) {
            (1, _) => None,
            (_, Some(p)) if p.plane.is_none() => {
                let m = &p.meta;
                meta.plane = Some(super::model::PlaneFlowMeta {
                    levels: m.levels,
                    couplings: m.couplings,
                    hidden: m.hidden,
                    components: m.components,
                });
                let mut p = p.clone();
                p.meta = meta.plane_meta().expect("set above");
                Some(Box::new(p))
            }
            _ => return Err(Error::Usage(
                "a joint flow needs a plane flow (a plane-idf-1 model) for gray and alpha planes"
                    .into(),
            )),
        };
        let mut nets = Vec::with_capacity(self.nets.len());
        for (net, (kind, _, inputs, outputs)) in self.nets.iter().zip(meta.networks()) {
            let [b1, role_bias, b2, b3] = net.biases();
            let (l1, s1) = int_layer(&net.w1, &b1, WeightBits::Eight, &[1.0], (0, 255))?;
            let (l2, _) = int_layer(&net.w2, &b2, WeightBits::Eight, &[1.0], (0, 255))?;
            let (gains, clamp) = match kind {
                NetKind::Coupling => (vec![1.0], (-TRANSLATION_LIMIT, TRANSLATION_LIMIT)),
                NetKind::Prior => {
                    // Parts: logits in 2^-16, means in 1/256, log-scales in 2^-16.
                    let part = outputs / 3;
                    let g = (0..outputs)
                        .map(|j| if j / part == 1 { 256.0 } else { 65536.0 })
                        .collect();
                    (g, (-(1 << 24), 1 << 24))
                }
            };
            let (l3, _) = int_layer(&net.w3_per_byte(), &b3, WeightBits::Sixteen, &gains, clamp)?;
            let rb = Vec::<f64>::try_from(role_bias.to_kind(Kind::Double).flatten(0, 1))
                .map_err(|e| Error::Torch(e.to_string()))?;
            let h = meta.hidden;
            let role_bias = (0..ROLES)
                .map(|r| {
                    (0..h)
                        .map(|o| (rb[r * h + o] / s1[o]).round() as i32)
                        .collect()
                })
                .collect();
            nets.push(FlowNet::new(
                kind,
                (inputs, outputs),
                [l1, l2, l3],
                role_bias,
            )?);
        }
        let draft = FlowModel {
            meta,
            nets,
            id: ModelId(0),
            engine: super::Engine::Reference,
            plane,
        };
        FlowModel::from_bytes(&draft.to_bytes())
    }
}

/// A trained layer as the 8-bit engine's: integer weights `q = round(w / step)` per output,
/// `bias = round(b / step)`, and `mult / 2^shift ≈ step · gain` (gain per output, or one for
/// all). Returns the layer and each output's step.
fn int_layer(
    w: &Tensor,
    b: &Tensor,
    bits: WeightBits,
    gains: &[f64],
    clamp: (i32, i32),
) -> Result<(U8Linear, Vec<f64>)> {
    let o = w.size()[0] as usize;
    let step_t = weight_step(w, bits);
    let steps = Vec::<f64>::try_from(step_t.to_kind(Kind::Double).flatten(0, 1))
        .map_err(|e| Error::Torch(e.to_string()))?;
    // [O, in, kh, kw] → rows in the engine's order: (ky, kx, c).
    let rows = w
        .permute([0, 2, 3, 1])
        .reshape([o as i64, -1])
        .to_kind(Kind::Double);
    let inputs = rows.size()[1] as usize;
    let flat = Vec::<f64>::try_from(rows.flatten(0, 1)).map_err(|e| Error::Torch(e.to_string()))?;
    let bias_f =
        Vec::<f64>::try_from(b.to_kind(Kind::Double)).map_err(|e| Error::Torch(e.to_string()))?;
    let max = bits.max() as f64;
    let mut weight = Vec::with_capacity(o * inputs);
    let (mut bias, mut mult, mut shift) = (Vec::new(), Vec::new(), Vec::new());
    // Biases stay within 2^29, so that with 16-bit rows (255·Σ|q| ≤ 2^30 + 128·inputs) the
    // accumulator bound holds. A row whose weights are tiny next to its bias (a dead unit, an
    // output layer still near its zero start) gets a coarser step so that its bias fits: its
    // weights then round to what little they are.
    let bias_limit = (1u64 << 29) as f64;
    for j in 0..o {
        let s = steps[j].max(bias_f[j].abs() / bias_limit);
        weight.extend(
            flat[j * inputs..(j + 1) * inputs]
                .iter()
                .map(|&v| (v / s).clamp(-max, max).round() as i32),
        );
        bias.push((bias_f[j] / s).round().clamp(-bias_limit, bias_limit) as i32);
        let (m, sh) = multiplier(s * gains[j.min(gains.len() - 1)]);
        mult.push(m);
        shift.push(sh);
    }
    Ok((
        U8Linear::new(inputs, bits, &weight, bias, mult, shift, clamp)?,
        steps,
    ))
}

/// `(mult, shift)` with `mult / 2^shift` closest to `scale`, `mult < 2^16` as large as the
/// shift range allows.
fn multiplier(scale: f64) -> (i32, u8) {
    let mut shift = 0u8;
    while shift < SHIFT_MAX && scale * ((1u64 << (shift + 1)) as f64) < MULT_LIMIT as f64 {
        shift += 1;
    }
    let m = (scale * (1u64 << shift) as f64)
        .round()
        .clamp(1.0, (MULT_LIMIT - 1) as f64);
    (m as i32, shift)
}

/// The integer flow on libtorch `f64` tensors (CPU or CUDA): the encoder's direction of
/// [`super::transform::PlaneFlow`], for encoding on a GPU. Every layer is a
/// [`crate::intnet::tch_eval::TchConv`] (im2col and matmul in `f64`, exact); squeezes,
/// clamps, pools and adds are exact on integers. Gives the engine's latents and priors, so the
/// payload is byte for byte the engine's (tested).
pub struct FlowTch<'a> {
    model: &'a FlowModel,
    /// Per network: the first layer of each role, the middle and the last layer.
    nets: Vec<([TchConv; ROLES], TchConv, TchConv)>,
    device: Device,
}

impl<'a> FlowTch<'a> {
    pub fn new(model: &'a FlowModel, device: Device) -> FlowTch<'a> {
        let nets = model
            .nets
            .iter()
            .map(|n| {
                let first = std::array::from_fn(|r| TchConv::new(n.layers(r)[0], device));
                let [_, middle, last] = n.layers(0);
                (
                    first,
                    TchConv::new(middle, device),
                    TchConv::new(last, device),
                )
            })
            .collect();
        FlowTch {
            model,
            nets,
            device,
        }
    }

    fn run(&self, net: usize, role: usize, x: &Tensor) -> Tensor {
        let (first, middle, last) = &self.nets[net];
        last.forward(&middle.forward(&first[role].forward(x)))
    }

    /// Bytes `[1, 12, h, w]` of a level's condition (`[h][w][12]` bytes).
    fn condition(&self, c: &super::transform::Condition) -> Tensor {
        let v: Vec<f64> = c.bytes.iter().map(|&b| b as f64).collect();
        Tensor::from_slice(&v)
            .to_device(self.device)
            .reshape([1, c.h as i64, c.w as i64, 12])
            .permute([0, 3, 1, 2])
    }

    /// `[1, C, h, w]` → `C·h·w` values, channel-major (a [`Chw`]'s order).
    fn to_chw(t: &Tensor) -> Result<Chw> {
        let s = t.size();
        let v = Vec::<f64>::try_from(t.to_device(Device::Cpu).flatten(0, 3))
            .map_err(|e| Error::Torch(e.to_string()))?;
        Ok(Chw {
            c: s[1] as usize,
            h: s[2] as usize,
            w: s[3] as usize,
            data: v.into_iter().map(|x| x as i32).collect(),
        })
    }

    /// A prior network's outputs `[1, 3km, h, w]` as a [`PriorGrid`] (positions first).
    fn grid(&self, out: &Tensor) -> Result<PriorGrid> {
        let k = self.model.meta.components;
        let hwc = Vec::<f64>::try_from(
            out.permute([0, 2, 3, 1])
                .to_device(Device::Cpu)
                .flatten(0, 3),
        )
        .map_err(|e| Error::Torch(e.to_string()))?;
        Ok(PriorGrid {
            out: hwc.into_iter().map(|x| x as i32).collect(),
            k,
            m: out.size()[1] as usize / (3 * k),
        })
    }

    /// A group's latents and priors (as [`super::transform::PlaneFlow::forward`]).
    pub fn forward(
        &self,
        planes: &[&[u8]],
        role: usize,
        conditions: &[super::transform::Condition],
        (w, h): (usize, usize),
    ) -> Result<Vec<Latents>> {
        let meta = &self.model.meta;
        let v: Vec<f64> = planes
            .iter()
            .flat_map(|p| p.iter().map(|&b| b as f64 - 128.0))
            .collect();
        let mut z = Tensor::from_slice(&v).to_device(self.device).reshape([
            1,
            planes.len() as i64,
            h as i64,
            w as i64,
        ]);
        let mut out = Vec::with_capacity(meta.levels);
        let bytes = |z: &Tensor| (z + 128.0).clamp(0.0, 255.0);
        for l in 1..=meta.levels {
            let cond = self.condition(&conditions[l - 1]);
            z = squeeze(&z);
            let half = z.size()[1] / 2;
            let start = (l - 1) * (meta.couplings + 1);
            for net in start..start + meta.couplings {
                let a = z.narrow(1, 0, half);
                let t = self.run(
                    net,
                    role,
                    &Tensor::cat(&[bytes(&a), cond.shallow_clone()], 1),
                );
                z = Tensor::cat(&[a, z.narrow(1, half, half) + t], 1).flip([1]);
            }
            let prior = start + meta.couplings;
            if l < meta.levels {
                let kept = z.narrow(1, half, half);
                let params = self.run(
                    prior,
                    role,
                    &Tensor::cat(&[bytes(&kept), cond.shallow_clone()], 1),
                );
                out.push(Latents {
                    values: Self::to_chw(&z.narrow(1, 0, half))?,
                    priors: self.grid(&params)?,
                });
                z = kept;
            } else {
                let params = self.run(prior, role, &cond);
                out.push(Latents {
                    values: Self::to_chw(&z)?,
                    priors: self.grid(&params)?,
                });
            }
        }
        Ok(out)
    }
}

/// Encodes an image with the flow computed by libtorch in `f64` on `device` (a GPU encoder):
/// the same payload as [`FlowModel::encode_payload`].
pub fn encode_payload_tch(
    model: &FlowModel,
    image: &crate::image::Image,
    device: Device,
) -> Result<crate::family::FamilyPayload> {
    let _guard = tch::no_grad_guard();
    let flow = FlowTch::new(model, device);
    let plane_flow = model.plane.as_deref().map(|p| FlowTch::new(p, device));
    model.encode_with(image, |g, planes, conds, size| {
        let tch = match &plane_flow {
            Some(p) if std::ptr::eq(g.flow, p.model) => p,
            _ => &flow,
        };
        tch.forward(planes, g.role, conds, size)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::ChannelLayout;
    use crate::testing::{random_flow, random_flow_mixture, synthetic_image};

    /// A fresh network's output layers are zero with biases of their own (log-scales of 2
    /// nats): the export keeps the biases rather than rounding them away with the weights.
    #[test]
    fn biases_of_zero_weight_rows_survive_the_export() {
        let meta = FlowMeta {
            family: "flow".into(),
            name: "fresh".into(),
            flow: super::super::model::PLANE_IDF_1.into(),
            levels: 1,
            couplings: 1,
            hidden: 4,
            components: 2,
            colours: 1,
            plane: None,
        };
        let model = FlowFloat::new(meta, Device::Cpu)
            .unwrap()
            .to_int("fresh", None)
            .unwrap();
        let top = model.prior(1);
        let mut out = vec![0i32; 4 * top.outputs()];
        let mut scratch = super::super::model::NetScratch::default();
        let input = vec![0u8; 4 * 12];
        top.run(
            super::super::Engine::Reference,
            0,
            &input,
            (2, 2),
            &mut scratch,
            &mut out,
        );
        let part = top.outputs() / 3;
        for (i, &v) in out.iter().enumerate() {
            if (i % top.outputs()) / part == 2 {
                assert!((v - 2 * 65536).abs() <= 2, "log-scale output {v}");
            }
        }
    }

    #[test]
    fn the_tch_encoder_writes_the_engines_bytes() {
        for (flow, w, h) in [
            (random_flow(2, 2, 6, 8.0, 1), 7, 5),
            (random_flow_mixture(3, 1, 5, 3, 3000.0, 2), 9, 16),
            (random_flow_mixture(1, 3, 9, 2, 4.0, 3), 1, 1),
            (crate::testing::random_joint_flow(2, 2, 6, 3, 8.0, 4), 11, 6),
        ] {
            for layout in [ChannelLayout::Gray, ChannelLayout::Rgba] {
                let img = synthetic_image(w, h, layout, 9, 4);
                let want = flow.encode_payload(&img).unwrap();
                let got = encode_payload_tch(&flow, &img, Device::Cpu).unwrap();
                assert_eq!(got.bytes, want.bytes, "{w}x{h} {layout:?}");
            }
        }
    }
}
