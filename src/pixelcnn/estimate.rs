//! What a PixelCNN would spend on an image, estimated from a sample of its pixels: how an
//! encoder chooses among models (e.g. one for small images, one for photographs) before coding.
//!
//! The estimate is teacher-forced: every sampled pixel sees its true context, so pixels are
//! independent and a grid of them costs only their own network evaluations. It leaves out the
//! adaptive stage and the alpha plane. Costs are integers (`coding::adaptive::cost_q16`), so the
//! same image gives the same choice on every machine and thread count.

use rayon::prelude::*;

use super::int_model::split_params;
use super::session::PixelNet;
use crate::coding::adaptive::cost_q16;
use crate::coding::{LogisticMixture, QuantizedCdf};
use crate::error::Result;
use crate::family::CostEstimate;
use crate::image::{sample_count, try_alloc, ChannelLayout, Image};

/// The pixels the estimate looks at: at most about `max_pixels` of a `width`×`height` image,
/// on a regular grid (every `step`-th column and row, centred), the same for every model.
pub fn sample_grid(width: u32, height: u32, max_pixels: u64) -> Vec<(u32, u32)> {
    // Pixels on a grid of `step` starting at `(side - 1) % step / 2` (centred) on each side.
    let count = |step: u32| {
        let along = |side: u32| ((side - 1) - (side - 1) % step / 2) / step + 1;
        along(width) as u64 * along(height) as u64
    };
    let mut step = 1u32;
    while count(step) > max_pixels.max(1) {
        step += 1;
    }
    let (x0, y0) = (((width - 1) % step) / 2, ((height - 1) % step) / 2);
    (y0..height)
        .step_by(step as usize)
        .flat_map(|y| (x0..width).step_by(step as usize).map(move |x| (x, y)))
        .collect()
}

/// The network's view of `image`'s colour planes: 3 samples a pixel, gray replicated.
fn network_view(image: &Image) -> Result<Vec<u8>> {
    let len = sample_count(image.width(), image.height(), ChannelLayout::Rgb)?;
    let mut ctx = try_alloc(len)?;
    let stride = image.layout().channels();
    let color = image.layout().color_channels();
    for px in image.data().chunks_exact(stride) {
        if color == 3 {
            ctx.extend_from_slice(&px[..3]);
        } else {
            ctx.extend_from_slice(&[px[0]; 3]);
        }
    }
    Ok(ctx)
}

/// The code length of the colour samples of the pixels of [`sample_grid`] under `model`, in
/// 2^-16 bits, with their number.
pub fn estimate_cost<N: PixelNet>(
    model: &N,
    image: &Image,
    max_pixels: u64,
) -> Result<CostEstimate> {
    let (w, h) = (image.width(), image.height());
    let ctx = network_view(image)?;
    let channels = image.layout().color_channels();
    let arch = *model.arch();
    let grid = sample_grid(w, h, max_pixels);
    let cost_q16: u64 = grid
        .par_chunks(64)
        .map(|chunk| {
            let mut state = model.new_state();
            let mut params = vec![0i32; arch.params_per_channel()];
            let mut cost = 0u64;
            for &(x, y) in chunk {
                model.begin_pixel(&mut state, &ctx, w, h, x, y);
                let p = (y as usize * w as usize + x as usize) * 3;
                for c in 0..channels {
                    model.channel_params(&mut state, c, &mut params);
                    let (l, m, s) = split_params(&params, arch.components);
                    let value = ctx[p + c];
                    cost += cost_q16(LogisticMixture::from_params(l, m, s).frequency(value as u32));
                    model.set_channel(&mut state, c, value);
                }
            }
            cost
        })
        .sum();
    Ok(CostEstimate {
        cost_q16,
        samples: grid.len() as u64 * channels as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grid_covers_small_images_whole_and_samples_large_ones_evenly() {
        assert_eq!(sample_grid(1, 1, 4096), vec![(0, 0)]);
        assert_eq!(sample_grid(32, 32, 4096).len(), 1024);
        let g = sample_grid(512, 512, 4096);
        assert!(g.len() <= 4096 && g.len() >= 4096 / 2, "{}", g.len());
        assert!(g.iter().all(|&(x, y)| x < 512 && y < 512));
        for (w, h, max) in [(1001, 3, 100), (3, 1001, 100), (7, 5, 1), (100, 100, 99)] {
            let g = sample_grid(w, h, max);
            assert!(
                !g.is_empty() && g.len() as u64 <= max,
                "{w}x{h} <= {max}: {}",
                g.len()
            );
            assert!(g.iter().all(|&(x, y)| x < w && y < h));
        }
    }
}
