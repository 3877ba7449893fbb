//! Helpers for tests, benches and examples: small real models with random weights and
//! synthetic images. Not part of the stable API.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tch::{Device, Tensor};

use crate::image::{ChannelLayout, Image};
use crate::pixelcnn::float_model::PixelCnnFloat;
use crate::pixelcnn::{Arch, PixelCnnInt};

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
/// the trained ones, and its distributions are far from uniform.
pub fn random_pixelcnn(arch: Arch, seed: u64) -> PixelCnnInt {
    tch::manual_seed(seed as i64);
    let net = PixelCnnFloat::new(arch, Device::Cpu).expect("valid test architecture");
    tch::no_grad(|| {
        for (name, mut v) in net.vs.variables() {
            if name.starts_with('b') {
                let noise = Tensor::randn(v.size(), (tch::Kind::Float, Device::Cpu)) * 0.3;
                let _ = v.g_add_(&noise);
            }
        }
    });
    net.to_int(&format!("random-{seed}"))
        .expect("random model quantizes")
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
