//! Helpers for tests, benches and examples: small real models with random weights and
//! synthetic images. Pure Rust (no libtorch), so `cargo test --no-default-features` covers the
//! codec. Not part of the stable API.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::image::{ChannelLayout, Image};
use crate::intnet::int8::WeightBits;
use crate::pixelcnn::quantize::quantize_pixelcnn;
use crate::pixelcnn::quantize8::{dequantize, quantize_pixelcnn8, Calibration};
use crate::pixelcnn::{Arch, PixelCnn8, PixelCnnInt};

/// A small architecture for tests (fast in debug builds).
pub fn tiny_arch() -> Arch {
    Arch {
        radius: 2,
        channels: 3,
        hidden: 24,
        hidden_layers: 2,
        components: 3,
    }
}

/// A real (quantized, validated) PixelCNN with random weights: exercises every code path of
/// the trained ones, and its distributions are far from uniform. Weights are drawn like the
/// trainer's initialization (He-scaled over the unmasked fan-in, a small output layer), with
/// noisy biases so that units and mixture components differ.
pub fn random_pixelcnn(arch: Arch, seed: u64) -> PixelCnnInt {
    let mut rng = StdRng::seed_from_u64(seed);
    let (d, h, o) = (arch.input_len(), arch.hidden, arch.outputs());
    let mut shapes = vec![(h, d)];
    shapes.extend(std::iter::repeat_n((h, h), arch.hidden_layers));
    shapes.push((o, h + d));
    let n = shapes.len();
    let mut layers = Vec::with_capacity(n);
    for (l, &(rows, cols)) in shapes.iter().enumerate() {
        let visible = |u: usize, i: usize| {
            if l == 0 {
                arch.mask_first(u, i)
            } else if l < n - 1 {
                arch.mask_hidden(u, i)
            } else {
                arch.mask_output(u, i)
            }
        };
        let fan_in = ((0..rows)
            .map(|u| (0..cols).filter(|&i| visible(u, i)).count())
            .sum::<usize>() as f64
            / rows as f64)
            .max(1.0);
        let std = if l < n - 1 {
            (2.0 / fan_in).sqrt()
        } else {
            0.1 / fan_in.sqrt()
        };
        // Uniform on ±√3·std has standard deviation std.
        let a = 3f64.sqrt() * std;
        let mut w = vec![0f32; rows * cols];
        for u in 0..rows {
            for i in 0..cols {
                if visible(u, i) {
                    w[u * cols + i] = rng.gen_range(-a..a) as f32;
                }
            }
        }
        let bias: Vec<f32> = (0..rows)
            .map(|u| {
                let log_scale =
                    l == n - 1 && (u % arch.params_per_channel()) / arch.components == 2;
                let base = if log_scale { 3.0 } else { 0.0 };
                base + rng.gen_range(-0.5..0.5f32)
            })
            .collect();
        layers.push((w, bias));
    }
    quantize_pixelcnn(arch, &format!("random-{seed}"), &layers).expect("random model quantizes")
}

/// [`random_pixelcnn`] on the 8-bit engine, through the whole quantization pipeline: the
/// 32-bit model dequantized, calibrated on synthetic images, quantized with 8-bit weights in
/// the first and hidden layers and 16-bit weights in the output layer.
pub fn random_pixelcnn8(arch: Arch, seed: u64) -> PixelCnn8 {
    let layers = dequantize(&random_pixelcnn(arch, seed));
    let images = [
        synthetic_image(12, 10, ChannelLayout::Rgb, 20, seed),
        synthetic_image(9, 9, ChannelLayout::Gray, 40, seed + 1),
    ];
    let mut calibration = Calibration::new(&arch);
    for img in &images {
        calibration.add_image(&arch, &layers, img, 200);
    }
    let caps = calibration.caps();
    let mut bits = vec![WeightBits::Eight; arch.hidden_layers + 1];
    bits.push(WeightBits::Sixteen);
    quantize_pixelcnn8(arch, &format!("random8-{seed}"), &layers, &caps, &bits)
        .expect("random model quantizes to 8 bits")
}

/// The same 32-bit model with the adaptive stage (a new model file, so a new id).
pub fn with_adaptive_stage(model: PixelCnnInt) -> PixelCnnInt {
    model
        .with_adaptive_stage()
        .expect("the same layers validate again")
}

/// The same 8-bit model with the adaptive stage.
pub fn with_adaptive_stage8(model: PixelCnn8) -> PixelCnn8 {
    model
        .with_adaptive_stage()
        .expect("the same layers validate again")
}

/// Encodes with `model`'s own family whatever the size (no `stored` fallback), so tests
/// exercise the family's payload even where a random model does worse than 8 bits a sample.
pub fn encode_with_model(image: &Image, model: &crate::Model) -> crate::Result<Vec<u8>> {
    let options = crate::EncodeOptions::default().with_stored_fallback(false);
    Ok(crate::encode_image_with(image, model, &options)?.bytes)
}

/// A synthetic image: smooth gradients plus noise (`noise` = amplitude in levels).
pub fn synthetic_image(
    width: u32,
    height: u32,
    layout: ChannelLayout,
    noise: u8,
    seed: u64,
) -> Image {
    let mut rng = StdRng::seed_from_u64(seed);
    let ch = layout.channels();
    let mut data = Vec::with_capacity(width as usize * height as usize * ch);
    for y in 0..height {
        for x in 0..width {
            for c in 0..ch {
                let base = (x * 7 + y * 3 + c as u32 * 50) % 256;
                let n = if noise == 0 {
                    0
                } else {
                    rng.gen_range(0..=noise as u32)
                };
                data.push(((base + n) % 256) as u8);
            }
        }
    }
    Image::new(width, height, layout, data).expect("consistent size")
}

/// Uniformly random samples.
pub fn noise_image(width: u32, height: u32, layout: ChannelLayout, seed: u64) -> Image {
    let mut rng = StdRng::seed_from_u64(seed);
    let n = width as usize * height as usize * layout.channels();
    Image::new(width, height, layout, (0..n).map(|_| rng.gen()).collect()).expect("consistent size")
}

/// A real (validated) flow with random weights: every network's layers drawn at random, then
/// biased and scaled so that hidden bytes spread over `0..=255`, couplings translate by about
/// `translation` (clamped to `±translation_limit`) and priors have means near their kept
/// inputs' scale and log-scales around ln 4. With a large `translation` the latents leave the
/// priors' windows (the escape path).
pub fn random_flow(
    levels: usize,
    couplings: usize,
    hidden: usize,
    translation: f64,
    seed: u64,
) -> crate::flow::FlowModel {
    random_flow_mixture(levels, couplings, hidden, 1, translation, seed)
}

/// [`random_flow`] with `components` mixture components in every prior.
pub fn random_flow_mixture(
    levels: usize,
    couplings: usize,
    hidden: usize,
    components: usize,
    translation: f64,
    seed: u64,
) -> crate::flow::FlowModel {
    use crate::flow::model::{FlowMeta, PLANE_IDF_1};
    let mut rng = StdRng::seed_from_u64(seed);
    let meta = FlowMeta {
        family: "flow".into(),
        name: format!("random-flow-{levels}x{couplings}-h{hidden}-{seed}"),
        flow: PLANE_IDF_1.into(),
        levels,
        couplings,
        hidden,
        components,
        colours: 1,
        plane: None,
    };
    let nets = random_flow_networks(&meta, translation, &mut rng);
    let bytes = crate::flow::FlowModel {
        meta,
        nets,
        id: crate::format::ModelId(0),
        engine: crate::flow::Engine::Reference,
        plane: None,
    }
    .to_bytes();
    crate::flow::FlowModel::from_bytes(&bytes).unwrap()
}

/// Random networks for every network `meta` lists (see [`random_flow`]).
fn random_flow_networks(
    meta: &crate::flow::FlowMeta,
    translation: f64,
    rng: &mut StdRng,
) -> Vec<crate::flow::model::FlowNet> {
    use crate::flow::model::{FlowNet, NetKind, ROLES, TRANSLATION_LIMIT};
    let hidden = meta.hidden;
    let mut nets = Vec::new();
    for (kind, _, i, o) in meta.networks() {
        let first = random_u8_layer(
            rng,
            9 * i,
            hidden,
            WeightBits::Eight,
            &|_| (128.0, 60.0),
            (0, 255),
        );
        let middle = random_u8_layer(
            rng,
            hidden,
            hidden,
            WeightBits::Eight,
            &|_| (128.0, 60.0),
            (0, 255),
        );
        let last = match kind {
            NetKind::Coupling => {
                let lim = TRANSLATION_LIMIT.min((translation * 8.0).max(64.0) as i32);
                random_u8_layer(
                    rng,
                    9 * hidden,
                    o,
                    WeightBits::Sixteen,
                    &|_| (0.0, translation),
                    (-lim, lim),
                )
            }
            NetKind::Prior => random_u8_layer(
                rng,
                9 * hidden,
                o,
                WeightBits::Sixteen,
                // Parts in order: logits, means, log-scales (SPEC.md).
                &|j| match j / (o / 3) {
                    0 => (0.0, 65536.0),
                    1 => (0.0, 256.0 * 8.0),
                    _ => (90_000.0, 20_000.0),
                },
                (-(1 << 24), 1 << 24),
            ),
        };
        let role_bias = (0..ROLES)
            .map(|_| (0..hidden).map(|_| rng.gen_range(-5_000..5_000)).collect())
            .collect();
        nets.push(FlowNet::new(kind, (i, o), [first, middle, last], role_bias).unwrap());
    }
    nets
}

/// A real joint flow (`joint-idf-2`) with random weights, as [`random_flow`]: a joint flow of
/// `levels` levels for the colour planes and a plane flow of `plane_levels` for gray and alpha.
pub fn random_joint_flow(
    levels: usize,
    couplings: usize,
    hidden: usize,
    plane_levels: usize,
    translation: f64,
    seed: u64,
) -> crate::flow::FlowModel {
    use crate::flow::model::{FlowMeta, PlaneFlowMeta, JOINT_IDF_2};
    let mut rng = StdRng::seed_from_u64(seed);
    let meta = FlowMeta {
        family: "flow".into(),
        name: format!("random-joint-flow-{levels}x{couplings}-h{hidden}-{seed}"),
        flow: JOINT_IDF_2.into(),
        levels,
        couplings,
        hidden,
        components: 2,
        colours: 3,
        plane: Some(PlaneFlowMeta {
            levels: plane_levels,
            couplings,
            hidden: hidden + 1,
            components: 1,
        }),
    };
    let nets = random_flow_networks(&meta, translation, &mut rng);
    let plane_meta = meta.plane_meta().expect("a joint flow has a plane flow");
    let plane_nets = random_flow_networks(&plane_meta, translation, &mut rng);
    let bytes = crate::flow::FlowModel {
        meta,
        nets,
        id: crate::format::ModelId(0),
        engine: crate::flow::Engine::Reference,
        plane: Some(Box::new(crate::flow::FlowModel {
            meta: plane_meta,
            nets: plane_nets,
            id: crate::format::ModelId(0),
            engine: crate::flow::Engine::Reference,
            plane: None,
        })),
    }
    .to_bytes();
    crate::flow::FlowModel::from_bytes(&bytes).expect("a valid joint flow")
}

/// A random 8-bit layer on bytes spread over `0..=255`, biased and scaled so that output `o`
/// has about the centre and spread `target(o)`, clamped to `clamp`.
fn random_u8_layer(
    rng: &mut StdRng,
    inputs: usize,
    outputs: usize,
    bits: WeightBits,
    target: &dyn Fn(usize) -> (f64, f64),
    clamp: (i32, i32),
) -> crate::intnet::int8::U8Linear {
    let wmax = (bits.max() / 4).max(1);
    let weight: Vec<i32> = (0..inputs * outputs)
        .map(|_| rng.gen_range(-wmax..=wmax))
        .collect();
    let shift = 20u8;
    let (mut bias, mut mult) = (Vec::new(), Vec::new());
    for o in 0..outputs {
        let row = &weight[o * inputs..(o + 1) * inputs];
        let sum: f64 = row.iter().map(|&w| w as f64).sum();
        let norm = row
            .iter()
            .map(|&w| (w as f64).powi(2))
            .sum::<f64>()
            .sqrt()
            .max(1.0);
        let (centre, spread) = target(o);
        // Bytes spread about ±74 around 127.5: the accumulator's spread is about 74 · |w|.
        let m = (spread / (norm * 74.0) * (1u64 << shift) as f64)
            .round()
            .clamp(1.0, 65535.0);
        let gain = m / (1u64 << shift) as f64;
        mult.push(m as i32);
        bias.push((centre / gain - 127.5 * sum).round() as i32);
    }
    crate::intnet::int8::U8Linear::new(
        inputs,
        bits,
        &weight,
        bias,
        mult,
        vec![shift; outputs],
        clamp,
    )
    .unwrap()
}

/// Runs `f` in a fresh thread pool of `threads` threads (tests compare thread counts).
pub fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a thread pool")
        .install(f)
}
