//! Study behind `coding::adaptive` (models/README.md, `pixelcnn-r3h192-v3-int8-adapt`): how much
//! would per-image corrections of a 32-bit PixelCNN's distributions save? Teacher-forced
//! parameters, replayed in the coding schedule; corrections use only samples already coded.
//! Ideal bits, float bookkeeping (the shipped stage is the integer `coding::adaptive`).
//!
//! `cargo run --release --no-default-features --example adapt_study -- MODEL.llifm IMAGES|CIFAR.bin…`
//! Environment: `SELECT=1` chooses among candidate log-scale offsets `CANDS` (comma-separated
//! nats) by code length, `LSBUCKET=1` buckets by weighted mean log-scale (as shipped), `HALVE`
//! the halving count; without `SELECT`, moment estimates: `GAMMA` (mean shift) and `DELTA`
//! (log-scale) strengths. Never run it on test data to choose anything.
use llif::coding::{LogisticMixture, QuantizedCdf};
use llif::pixelcnn::int_model::split_params;
use llif::pixelcnn::{PixelCnnInt, PixelNet};
use rayon::prelude::*;

fn main() -> llif::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let model = PixelCnnInt::from_bytes(&std::fs::read(&args[1])?)?;
    let (gamma, delta, halve): (f64, f64, f64) = (
        std::env::var("GAMMA").map_or(1.0, |s| s.parse().unwrap()),
        std::env::var("DELTA").map_or(1.0, |s| s.parse().unwrap()),
        std::env::var("HALVE").map_or(256.0, |s| s.parse().unwrap()),
    );
    let (mut tot0, mut tot1, mut n_all) = (0f64, 0f64, 0usize);
    let mut images = Vec::new();
    for path in &args[2..] {
        if path.ends_with(".bin") {
            for c in llif::corpus::read_cifar(std::path::Path::new(path), Some(300))? {
                images.push((format!("cifar {}", c.index), c.image));
            }
        } else {
            images.push((
                path.clone(),
                llif::corpus::read_image_file(std::path::Path::new(path))?,
            ));
        }
    }
    let quiet = images.len() > 20;
    for (path, img) in &images {
        let (b0, b1, n) = study(&model, img, gamma, delta, halve);
        if !quiet {
            println!(
                "{:40} {:.4} -> {:.4} ({:+.2}%)",
                path.rsplit('/').next().unwrap(),
                b0 / n as f64,
                b1 / n as f64,
                (b1 / b0 - 1.0) * 100.0
            );
        }
        tot0 += b0;
        tot1 += b1;
        n_all += n;
    }
    println!(
        "total {:.4} -> {:.4} ({:+.2}%)",
        tot0 / n_all as f64,
        tot1 / n_all as f64,
        (tot1 / tot0 - 1.0) * 100.0
    );
    Ok(())
}

fn study(
    model: &PixelCnnInt,
    img: &llif::Image,
    gamma: f64,
    delta: f64,
    halve: f64,
) -> (f64, f64, usize) {
    let (w, h) = (img.width(), img.height());
    let colour = img.layout().color_channels();
    let ch = img.layout().channels();
    let ctx: Vec<u8> = img
        .data()
        .chunks_exact(ch)
        .flat_map(|p| {
            if colour == 3 {
                [p[0], p[1], p[2]]
            } else {
                [p[0]; 3]
            }
        })
        .collect();
    let a = *model.arch();
    let p = a.params_per_channel();
    let k = a.components;
    // Teacher-forced parameters [pixel][3·p].
    let params: Vec<Vec<i32>> = (0..h)
        .into_par_iter()
        .flat_map_iter(|y| {
            let mut st = PixelNet::new_state(model);
            let ctx = &ctx;
            (0..w)
                .map(move |x| {
                    PixelNet::begin_pixel(model, &mut st, ctx, w, h, x, y);
                    let mut all = vec![0; 3 * p];
                    for c in 0..colour {
                        PixelNet::channel_params(model, &mut st, c, &mut all[c * p..(c + 1) * p]);
                        PixelNet::set_channel(
                            model,
                            &mut st,
                            c,
                            ctx[(y as usize * w as usize + x as usize) * 3 + c],
                        );
                    }
                    all
                })
                .collect::<Vec<_>>()
        })
        .collect();
    // Buckets: channel × log2-scale level.
    const LEVELS: usize = 22;
    let mut sum_e = vec![0f64; 3 * LEVELS];
    let mut sum_r = vec![0f64; 3 * LEVELS];
    let mut cnt = vec![0f64; 3 * LEVELS];
    let cands: Vec<f64> = std::env::var("CANDS")
        .map_or(vec![-0.375, -0.25, -0.125, 0.0, 0.125, 0.25, 0.375], |s| {
            s.split(',').map(|v| v.parse().unwrap()).collect()
        });
    let nc = cands.len();
    let zero = cands.iter().position(|&c| c == 0.0).unwrap();
    let mut cost = vec![vec![0f64; nc]; 3 * LEVELS];
    let mode_select = std::env::var("SELECT").is_ok();
    let (mut b0, mut b1, mut n) = (0f64, 0f64, 0usize);
    let mut front = Vec::new();
    for t in 0..a.wavefronts(w, h) {
        a.wavefront_pixels(t, w, h, &mut front);
        for c in 0..colour {
            let mut updates = Vec::new();
            for &(x, y) in &front {
                let pix = y as usize * w as usize + x as usize;
                let pr = &params[pix][c * p..(c + 1) * p];
                let v = ctx[pix * 3 + c] as u32;
                let (l, m, s) = split_params(pr, k);
                b0 += LogisticMixture::from_params(l, m, s).bits(v);
                // Mixture mean and expected |error| in pixels.
                let lmax = l.iter().copied().max().unwrap() as f64 / 65536.0;
                let ws: Vec<f64> = l
                    .iter()
                    .map(|&li| (li as f64 / 65536.0 - lmax).exp())
                    .collect();
                let wsum: f64 = ws.iter().sum();
                let mus: Vec<f64> = m
                    .iter()
                    .map(|&mi| 128.0 + 128.0 * (mi as f64 / 65536.0).clamp(-1.5, 1.5))
                    .collect();
                let ss: Vec<f64> = s
                    .iter()
                    .map(|&si| (si as f64 / 65536.0).clamp(-5.0, 6.0).exp())
                    .collect();
                let mu: f64 = ws.iter().zip(&mus).map(|(w, m)| w * m).sum::<f64>() / wsum;
                let spread: f64 = ws
                    .iter()
                    .zip(&mus)
                    .zip(&ss)
                    .map(|((w, m), s)| w * (1.386 * s + (m - mu).abs()))
                    .sum::<f64>()
                    / wsum;
                let level = if std::env::var("LSBUCKET").is_ok() {
                    // Weighted mean log-scale, 0.5-nat levels from -5.
                    let mls: f64 = ws
                        .iter()
                        .zip(s)
                        .map(|(w, &si)| w * (si as f64 / 65536.0).clamp(-5.0, 6.0))
                        .sum::<f64>()
                        / wsum;
                    (((mls + 5.0) / 0.5).floor() as usize).min(LEVELS - 1)
                } else {
                    ((spread.max(0.25).log2() + 2.0).floor() as usize).min(LEVELS - 1)
                };
                let bk = c * LEVELS + level;
                let (corr_mean, corr_ls) = if cnt[bk] > 0.0 {
                    let e = sum_e[bk] / cnt[bk];
                    let r = (sum_r[bk] / cnt[bk]).max(0.05);
                    (gamma * e, delta * r.ln())
                } else {
                    (0.0, 0.0)
                };
                let m2: Vec<i32> = m
                    .iter()
                    .map(|&mi| mi + (corr_mean / 128.0 * 65536.0).round() as i32)
                    .collect();
                if mode_select {
                    // Ties (and a fresh bucket) keep the model's own scale.
                    let mut best = zero;
                    for j in 0..nc {
                        if cost[bk][j] < cost[bk][best] - 1e-9 {
                            best = j;
                        }
                    }
                    let bits_with = |off: f64| {
                        let s2: Vec<i32> = s
                            .iter()
                            .map(|&si| si + (off * 65536.0).round() as i32)
                            .collect();
                        LogisticMixture::from_params(l, m, &s2).bits(v)
                    };
                    b1 += bits_with(cands[best]);
                    for (j, &off) in cands.iter().enumerate() {
                        cost[bk][j] += bits_with(off);
                    }
                    if cnt[bk] + 1.0 >= halve {
                        for c in cost[bk].iter_mut() {
                            *c /= 2.0;
                        }
                    }
                } else {
                    let s2: Vec<i32> = s
                        .iter()
                        .map(|&si| si + (corr_ls * 65536.0).round() as i32)
                        .collect();
                    b1 += LogisticMixture::from_params(l, &m2, &s2).bits(v);
                }
                n += 1;
                updates.push((
                    bk,
                    v as f64 - mu,
                    (v as f64 - mu - corr_mean).abs() / spread.max(0.1),
                ));
            }
            for (bk, e, r) in updates {
                sum_e[bk] += e;
                sum_r[bk] += r;
                cnt[bk] += 1.0;
                if cnt[bk] >= halve {
                    sum_e[bk] /= 2.0;
                    sum_r[bk] /= 2.0;
                    cnt[bk] /= 2.0;
                }
            }
        }
    }
    (b0, b1, n)
}
