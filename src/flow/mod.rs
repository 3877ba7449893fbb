//! The flow codec family: an integer discrete flow (IDF) whose latents are coded with ANS
//! (SPEC.md, "Flow payloads"). The fast model of llif: a whole image is a few network passes
//! per group of planes, with no per-pixel loop.
//!
//! - [`model`]: the model file, its networks (three 8-bit convolutions each) and how they run.
//! - [`transform`]: squeeze, couplings and factor-out of a group of planes, forward and
//!   inverse.
//! - `float_model`, `train` (feature `torch`): training and export (`llif train flow`).
//!
//! Planes are coded in groups one after another (SPEC.md): a `plane-idf-1` model codes each
//! plane alone, each later plane's networks seeing the earlier planes as their condition; a
//! `joint-idf-2` model codes the three colour planes of an RGB image with one joint flow and
//! gray and alpha planes with its plane flow.

#[cfg(feature = "torch")]
pub mod float_model;
pub mod model;
#[cfg(feature = "torch")]
pub mod train;
pub mod transform;

pub use model::{Engine, FlowMeta, FlowModel};

use crate::coding::latent::{latent_bits, pop_latent, LatentCode, LatentWindow};
use crate::coding::AnsStack;
use crate::error::{Error, Result};
use crate::family::{DecodeControl, FamilyModel, FamilyPayload};
use crate::format::{CodecFamily, Header, ModelId};
use crate::image::{ChannelLayout, Image};
use crate::model_file::ModelFile;
use rayon::prelude::*;
use std::ops::Range;
use transform::{conditions, Chw, Condition, Latents, PlaneFlow, PriorGrid};

/// Largest magnitude of a latent a decoder accepts: an encoder's latents stay below
/// `128 + L·K·2^16 < 2^23` (SPEC.md bounds of the couplings), so anything larger is corrupt.
pub const LATENT_LIMIT: i64 = 1 << 23;

/// Parses a flow model file (the family table's entry).
pub fn parse_model_file(file: &ModelFile<'_>) -> Result<crate::Model> {
    Ok(crate::Model::new(FlowModel::from_model_file(file)?))
}

/// `n` rounded up to a multiple of `block` (in `u64`: sides may be near `u32::MAX`).
fn extended(n: u32, block: usize) -> u64 {
    (n as u64).div_ceil(block as u64) * block as u64
}

/// The planes of an image in coding order with their roles: colour planes by index, alpha 3.
pub fn roles(layout: ChannelLayout) -> Vec<usize> {
    let mut r: Vec<usize> = (0..layout.color_channels()).collect();
    if layout.has_alpha() {
        r.push(3);
    }
    r
}

/// Planes one flow transforms together, in coding order (SPEC.md): under a joint model the
/// colour planes of an RGB(A) image with the joint flow, else each plane alone with the plane
/// flow. Its condition slots hold the planes before `planes.start`.
#[derive(Clone, Debug)]
pub struct PlaneGroup<'m> {
    pub flow: &'m FlowModel,
    /// Plane indices in the channel layout's order.
    pub planes: std::ops::Range<usize>,
    pub role: usize,
}

impl FlowModel {
    /// The groups of an image of `layout`, in coding order.
    pub fn groups(&self, layout: ChannelLayout) -> Vec<PlaneGroup<'_>> {
        let joint = self.meta.colours == 3 && layout.color_channels() == 3;
        let single = |p: usize, role: usize| PlaneGroup {
            flow: self.plane_flow(),
            planes: p..p + 1,
            role,
        };
        if joint {
            let mut g = vec![PlaneGroup {
                flow: self,
                planes: 0..3,
                role: 0,
            }];
            if layout.has_alpha() {
                g.push(single(3, 3));
            }
            g
        } else {
            roles(layout)
                .into_iter()
                .enumerate()
                .map(|(p, role)| single(p, role))
                .collect()
        }
    }
}

/// Channel `c` of an interleaved image, extended to `w2 × h2` by repeating the last column,
/// then the last row.
fn extend_plane(
    img: &[u8],
    channels: usize,
    c: usize,
    (w, h): (usize, usize),
    (w2, h2): (usize, usize),
) -> Vec<u8> {
    let mut out = vec![0u8; w2 * h2];
    for y in 0..h2 {
        let sy = y.min(h - 1);
        for x in 0..w2 {
            let sx = x.min(w - 1);
            out[y * w2 + x] = img[(sy * w + sx) * channels + c];
        }
    }
    out
}

/// The three condition slots of plane `p`: the planes before it, zeros after.
fn slots<'a>(planes: &'a [Vec<u8>], p: usize, zeros: &'a [u8]) -> [&'a [u8]; 3] {
    std::array::from_fn(|j| if j < p { planes[j].as_slice() } else { zeros })
}

impl FlowModel {
    fn geometry(&self, width: u32, height: u32) -> Result<(usize, usize)> {
        // Model files cannot break this (`from_model_file` refuses them); a model put together
        // in code could.
        if self.meta.colours != self.plane.as_ref().map_or(1, |_| 3) {
            return Err(Error::InvalidModel(
                "a joint flow needs its plane flow, a plane flow has none".into(),
            ));
        }
        if width == 0 || height == 0 {
            return Err(Error::InvalidHeader(format!("a {width}x{height} image")));
        }
        let block = self.meta.block();
        let (w2, h2) = (extended(width, block), extended(height, block));
        // Buffers are allocated per extended sample, a few dozen bytes each.
        match w2.checked_mul(h2) {
            Some(n) if n <= isize::MAX as u64 / 256 => Ok((w2 as usize, h2 as usize)),
            _ => Err(Error::LimitExceeded(format!(
                "a {width}x{height} image is too large to address"
            ))),
        }
    }

    /// Encodes an image's samples: every group of planes forward, then all latents pushed in
    /// the reverse of the decoder's order.
    pub fn encode_payload(&self, image: &Image) -> Result<FamilyPayload> {
        // Unlike the decoder, the encoder has every plane from the start: the groups' flows
        // run in parallel (a small image's convolutions are too small to split).
        let (planes, (w2, h2)) = self.extended_planes(image)?;
        let zeros = vec![0u8; w2 * h2];
        let per_group: Vec<Vec<Latents>> = self
            .groups(image.layout())
            .par_iter()
            .map(|g| {
                let conds = group_conditions(g, &planes, &zeros, (w2, h2));
                let flow = PlaneFlow::new(g.flow, g.role, &conds);
                flow.forward(&group_planes(g, &planes), h2, w2)
            })
            .collect();
        push_all(&per_group)
    }

    /// The image's planes extended to multiples of `2^L`, and the extended size `(w', h')`.
    fn extended_planes(&self, image: &Image) -> Result<ExtendedPlanes> {
        let (w, h) = (image.width() as usize, image.height() as usize);
        let (w2, h2) = self.geometry(image.width(), image.height())?;
        let channels = image.layout().channels();
        let planes = (0..channels)
            .map(|c| extend_plane(image.data(), channels, c, (w, h), (w2, h2)))
            .collect();
        Ok((planes, (w2, h2)))
    }

    /// The encoder with the groups' flows computed one after another by `forward(group, its
    /// extended planes, conditions, (w', h'))`: libtorch's (`float_model::encode_payload_tch`)
    /// or a study's.
    pub fn encode_with(
        &self,
        image: &Image,
        mut forward: impl FnMut(
            &PlaneGroup<'_>,
            &[&[u8]],
            &[Condition],
            (usize, usize),
        ) -> Result<Vec<Latents>>,
    ) -> Result<FamilyPayload> {
        let (planes, (w2, h2)) = self.extended_planes(image)?;
        let zeros = vec![0u8; w2 * h2];
        let mut per_group = Vec::new();
        for g in self.groups(image.layout()) {
            let conds = group_conditions(&g, &planes, &zeros, (w2, h2));
            per_group.push(forward(&g, &group_planes(&g, &planes), &conds, (w2, h2))?);
        }
        push_all(&per_group)
    }

    /// The ideal bits of an image's latents, `[group][level]` (levels from 1): where a flow
    /// spends its bits, for studies and model cards.
    pub fn bits_by_group_and_level(&self, image: &Image) -> Result<Vec<Vec<f64>>> {
        let mut out = Vec::new();
        self.encode_with(image, |g, planes, conds, (w2, h2)| {
            let flow = PlaneFlow::new(g.flow, g.role, conds);
            let levels = flow.forward(planes, h2, w2);
            out.push(
                levels
                    .iter()
                    .map(|l| {
                        let values = l.values.data.iter().enumerate();
                        values
                            .map(|(i, &v)| latent_bits(v as i64, &l.priors.at(i).window()))
                            .sum()
                    })
                    .collect(),
            );
            Ok(levels)
        })?;
        Ok(out)
    }

    /// Decodes the samples of the image `header` describes.
    pub fn decode_payload(
        &self,
        header: &Header,
        payload: &[u8],
        control: &DecodeControl<'_>,
    ) -> Result<Vec<u8>> {
        let (w, h) = (header.width as usize, header.height as usize);
        let (w2, h2) = self.geometry(header.width, header.height)?;
        let layout = header.layout;
        let channels = layout.channels();
        let groups = self.groups(layout);
        let mut stack = AnsStack::from_bytes(payload)?;
        let zeros = vec![0u8; w2 * h2];
        let mut planes: Vec<Vec<u8>> = Vec::with_capacity(channels);
        for (i, g) in groups.iter().enumerate() {
            control.step(i as u64, groups.len() as u64)?;
            let conds = group_conditions(g, &planes, &zeros, (w2, h2));
            let z = decode_group(&mut stack, g, &conds)?;
            for c in 0..z.c {
                planes.push(check_plane(z.plane(c), (w, h), (w2, h2))?);
            }
        }
        if !stack.is_empty() {
            return Err(Error::CorruptPayload(
                "the ANS stack is not empty after the last latent".into(),
            ));
        }
        control.step(groups.len() as u64, groups.len() as u64)?;
        let mut out = vec![0u8; w * h * channels];
        for (c, plane) in planes.iter().enumerate() {
            for y in 0..h {
                for x in 0..w {
                    out[(y * w + x) * channels + c] = plane[y * w2 + x];
                }
            }
        }
        Ok(out)
    }

    /// Working memory of coding a `width × height` image of `layout`, in bytes (an upper
    /// bound): extended planes, latents and conditions, the largest level's network buffers,
    /// and the payload's words.
    pub fn memory(&self, width: u32, height: u32, layout: ChannelLayout) -> u64 {
        let block = self.meta.block();
        let n = extended(width, block).saturating_mul(extended(height, block));
        let c = layout.channels() as u64;
        // A joint model: the larger of its two flows' networks.
        let plane = self.plane_flow();
        let h = self.meta.hidden.max(plane.meta.hidden) as u64;
        let k = self.meta.components.max(plane.meta.components) as u64;
        // Per extended sample and plane (the encoder keeps every plane's latents): its byte
        // plane (1), latents (4), their priors (3·k i32 outputs per latent: 12·k), coupling
        // outputs (4). Per group, as the encoder runs the groups at once: the condition levels
        // (3 slots, 8 bytes per sample over all levels), and at level 1 (a quarter of the
        // positions) the networks' two hidden byte grids and their input bytes (at most 64
        // each), a prior's outputs of a level (12·k per latent, counted above) and slack.
        let groups = self.groups(layout).len() as u64;
        let per_group = 3 * 8 + (2 * h + 64) / 4 + 16;
        let per_sample = c * (1 + 4 + 12 * k + 4) + groups * per_group;
        n.saturating_mul(per_sample)
    }
}

/// The conditions of a group's levels: slots of the planes before it (decoded or given).
fn group_conditions(
    g: &PlaneGroup<'_>,
    planes: &[Vec<u8>],
    zeros: &[u8],
    (w2, h2): (usize, usize),
) -> Vec<Condition> {
    let slots = slots(planes, g.planes.start, zeros);
    conditions(slots, h2, w2, g.flow.meta.levels)
}

/// A group's extended planes.
fn group_planes<'a>(g: &PlaneGroup<'_>, planes: &'a [Vec<u8>]) -> Vec<&'a [u8]> {
    planes[g.planes.clone()]
        .iter()
        .map(|p| p.as_slice())
        .collect()
}

/// Pops a group's latents level by level and runs its flow backwards.
fn decode_group(stack: &mut AnsStack, g: &PlaneGroup<'_>, conds: &[Condition]) -> Result<Chw> {
    let flow = PlaneFlow::new(g.flow, g.role, conds);
    flow.inverse(|priors: &PriorGrid| {
        let mut values = Vec::with_capacity(priors.len());
        pipelined(
            chunks_of(0..priors.len(), CHUNK),
            |range| priors.windows(range),
            |_, windows: Vec<LatentWindow>| {
                for window in &windows {
                    let v = pop_latent(stack, window)?;
                    if v.abs() > LATENT_LIMIT {
                        return Err(Error::CorruptPayload(format!(
                            "a latent of {v}, beyond what any flow of this model produces"
                        )));
                    }
                    values.push(v as i32);
                }
                Ok(())
            },
        )?;
        Ok(values)
    })
}

/// Latents per chunk of [`pipelined`]: a few hundred microseconds of popping, so that handing
/// chunks between threads costs little, and small enough that a 32x32 image's levels still
/// overlap.
const CHUNK: usize = 1024;

/// Latents per chunk the encoder pushes: its codes are built in parallel, in [`CHUNK`]s.
const PUSH_CHUNK: usize = 16 * CHUNK;

/// `range` in chunks of `size`.
fn chunks_of(range: Range<usize>, size: usize) -> Vec<Range<usize>> {
    let (start, end) = (range.start, range.end);
    (start..end)
        .step_by(size)
        .map(|c| c..(c + size).min(end))
        .collect()
}

/// Runs `consume` on each chunk in turn with what `prepare` built for it, preparing the next
/// chunk meanwhile (`rayon::join`: the two run at once when a worker of the pool is free, one
/// after the other otherwise, with the same result). The stack's pushes and pops are serial by
/// nature; the latents' windows (most of a latent's cost) are not, so a second core builds
/// them one chunk ahead. Stops at the first error.
fn pipelined<T: Send>(
    chunks: Vec<Range<usize>>,
    prepare: impl Fn(Range<usize>) -> Vec<T> + Sync,
    mut consume: impl FnMut(Range<usize>, Vec<T>) -> Result<()> + Send,
) -> Result<()> {
    let mut ready = chunks.first().map(|r| prepare(r.clone()));
    for (i, range) in chunks.iter().enumerate() {
        let Some(current) = ready.take() else { break };
        let next = chunks.get(i + 1).cloned();
        let (prepared, consumed) =
            rayon::join(|| next.map(&prepare), || consume(range.clone(), current));
        consumed?;
        ready = prepared;
    }
    Ok(())
}

/// An image's planes extended to multiples of `2^L`, and their size `(w', h')`.
type ExtendedPlanes = (Vec<Vec<u8>>, (usize, usize));

/// All groups' latents on one ANS stack, in the reverse of the decoder's order (groups in
/// order, levels `L..1`, latents in coding order), with their ideal bits.
fn push_all(per_group: &[Vec<Latents>]) -> Result<FamilyPayload> {
    let mut stack = AnsStack::new();
    let mut bits = 0.0;
    for levels in per_group.iter().rev() {
        for latents in levels {
            let values = &latents.values.data;
            // The codes (windows, intervals, ideal bits: nearly all the work) are built a
            // chunk ahead, in parallel; the pushes, one chunk at a time, are all that is serial.
            let codes = |range: Range<usize>| {
                chunks_of(range, CHUNK)
                    .into_par_iter()
                    .flat_map_iter(|range| {
                        let windows = latents.priors.windows(range.clone());
                        let values = range.map(|i| values[i] as i64);
                        let codes = values.zip(&windows).map(|(v, w)| LatentCode::new(v, w));
                        codes.collect::<Vec<_>>()
                    })
                    .collect::<Vec<_>>()
            };
            let mut reversed = chunks_of(0..values.len(), PUSH_CHUNK);
            reversed.reverse();
            pipelined(reversed, codes, |_, codes| {
                for code in codes.into_iter().rev() {
                    let code = code?;
                    code.push(&mut stack)?;
                    bits += code.bits;
                }
                Ok(())
            })?;
        }
    }
    Ok(FamilyPayload {
        bytes: stack.into_bytes(),
        ideal_bits: Some(bits),
    })
}

/// A decoded plane (samples minus 128) as bytes, after checking that it lies in `0..=255` and
/// repeats its last column and row over the extension (what every encoder wrote).
fn check_plane(z: &[i32], (w, h): (usize, usize), (w2, h2): (usize, usize)) -> Result<Vec<u8>> {
    let bad = |m: &str| Err(Error::CorruptPayload(format!("decoded plane {m}")));
    if z.iter().any(|&v| !(-128..=127).contains(&v)) {
        return bad("has samples out of range");
    }
    let plane: Vec<u8> = z.iter().map(|&v| (v + 128) as u8).collect();
    for y in 0..h2 {
        for x in 0..w2 {
            if (y >= h || x >= w) && plane[y * w2 + x] != plane[y.min(h - 1) * w2 + x.min(w - 1)] {
                return bad("does not repeat its edge over the extension");
            }
        }
    }
    Ok(plane)
}

impl FamilyModel for FlowModel {
    fn family(&self) -> CodecFamily {
        CodecFamily::Flow
    }

    fn id(&self) -> Option<ModelId> {
        Some(self.id)
    }

    fn name(&self) -> &str {
        &self.meta.name
    }

    fn summary(&self) -> String {
        let size = |m: &FlowMeta| {
            format!(
                "{} levels x {} couplings, {} hidden units",
                m.levels, m.couplings, m.hidden
            )
        };
        match &self.plane {
            None => format!(
                "integer discrete flow (8-bit), {}, {} parameters",
                size(&self.meta),
                self.parameters()
            ),
            Some(p) => format!(
                "integer discrete flow (8-bit), colour planes jointly: {}; gray and alpha planes: {}; {} parameters",
                size(&self.meta),
                size(&p.meta),
                self.parameters()
            ),
        }
    }

    fn working_memory(&self, width: u32, height: u32, layout: ChannelLayout) -> u64 {
        self.memory(width, height, layout)
    }

    fn encode(&self, image: &Image) -> Result<FamilyPayload> {
        self.encode_payload(image)
    }

    fn decode(
        &self,
        header: &Header,
        payload: &[u8],
        control: &DecodeControl<'_>,
    ) -> Result<Vec<u8>> {
        self.decode_payload(header, payload, control)
    }
}
