//! Criterion benches: the fixed-point distribution, the range coder, and the PixelCNN codec.
//! `cargo bench --bench coding`.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use llif::coding::{LogisticMixture, QuantizedCdf, RangeDecoder, RangeEncoder};
use llif::testing::synthetic_image;
use llif::{decode_image, encode_image, ChannelLayout, Limits, ModelSet};

fn mixtures(n: usize) -> Vec<LogisticMixture> {
    (0..n)
        .map(|i| {
            let f = |v: f64| (v * 65536.0) as i32;
            let m = (i % 200) as f64 / 100.0 - 1.0;
            LogisticMixture::from_params(
                &[f(0.1), f(-0.5), 0, f(0.3), f(-1.0)],
                &[f(m), f(m + 0.05), f(m - 0.02), f(0.0), f(m)],
                &[f(1.0), f(2.0), f(0.5), f(3.0), f(1.5)],
            )
        })
        .collect()
}

fn bench_distribution(c: &mut Criterion) {
    let ms = mixtures(1000);
    let mut g = c.benchmark_group("logistic_mixture");
    g.throughput(Throughput::Elements(ms.len() as u64));
    g.bench_function("from_params_x1000", |b| b.iter(|| mixtures(1000)));
    g.bench_function("quantile_x1000", |b| {
        b.iter(|| {
            ms.iter()
                .map(|m| m.quantile(black_box(1 << 23)))
                .sum::<u32>()
        })
    });
    g.finish();
}

fn bench_range_coder(c: &mut Criterion) {
    let ms = mixtures(10_000);
    let symbols: Vec<u32> = ms.iter().map(|m| m.quantile(12_345_678)).collect();
    let mut enc = RangeEncoder::new();
    for (s, m) in symbols.iter().zip(&ms) {
        enc.encode(*s, m).unwrap();
    }
    let bytes = enc.finish();
    let mut g = c.benchmark_group("range_coder");
    g.throughput(Throughput::Elements(symbols.len() as u64));
    g.bench_function("encode_10k", |b| {
        b.iter(|| {
            let mut enc = RangeEncoder::new();
            for (s, m) in symbols.iter().zip(&ms) {
                enc.encode(*s, m).unwrap();
            }
            enc.finish()
        })
    });
    g.bench_function("decode_10k", |b| {
        b.iter(|| {
            let mut dec = RangeDecoder::new(&bytes).unwrap();
            for m in &ms {
                black_box(dec.decode(m).unwrap());
            }
        })
    });
    g.finish();
}

fn bench_pixelcnn(c: &mut Criterion) {
    let models = ModelSet::builtin();
    let model = models.default_model().unwrap().clone();
    let img = synthetic_image(32, 32, ChannelLayout::Rgb, 20, 1);
    let bytes = encode_image(&img, &model).unwrap();
    let mut g = c.benchmark_group("pixelcnn_default_32x32_rgb");
    g.sample_size(10);
    g.bench_function("encode", |b| {
        b.iter(|| encode_image(black_box(&img), &model).unwrap())
    });
    g.bench_function("decode", |b| {
        b.iter(|| decode_image(black_box(&bytes), &models, &Limits::default()).unwrap())
    });
    g.finish();
}

criterion_group!(
    benches,
    bench_distribution,
    bench_range_coder,
    bench_pixelcnn
);
criterion_main!(benches);
