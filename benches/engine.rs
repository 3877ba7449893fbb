//! Criterion bench of the integer engines' dot products, in multiply-accumulates per second
//! (criterion's "elements" are MACs): the 32-bit engine's `dot_i32`, and every kernel of the
//! 8-bit engine this CPU has, with 8- and 16-bit weights, on a hidden layer of the shipped
//! PixelCNN's shape (one channel group: 64 rows of 192 inputs). `cargo bench --bench engine`.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use llif::intnet::int8::{padded, Kernel, U8Linear, WeightBits};
use llif::intnet::{dot_i32, IntLinear};

const INPUTS: usize = 192;
const ROWS: usize = 64;

fn bench_engines(c: &mut Criterion) {
    let macs = (INPUTS * ROWS) as u64;
    let mut g = c.benchmark_group("dot_products_64x192");
    g.throughput(Throughput::Elements(macs));

    let w32: Vec<i32> = (0..INPUTS * ROWS)
        .map(|i| (i as i32 * 7919) % 2001 - 1000)
        .collect();
    let x32: Vec<i32> = (0..INPUTS).map(|i| (i as i32 * 31) % 16384).collect();
    let layer32 = IntLinear {
        inputs: INPUTS,
        outputs: ROWS,
        weight: w32.clone(),
        bias: vec![0; ROWS],
        shift: vec![10; ROWS],
        lo: 0,
        hi: 16383,
    };
    g.bench_function("i32_engine", |b| {
        let mut y = vec![0; ROWS];
        b.iter(|| {
            layer32.forward_i32(black_box(&x32), &mut y, 0..ROWS);
            y[0]
        })
    });
    g.bench_function("i32_dot_only", |b| {
        b.iter(|| {
            w32.chunks_exact(INPUTS)
                .map(|row| dot_i32(row, black_box(&x32)))
                .fold(0i32, i32::wrapping_add)
        })
    });

    let x8: Vec<u8> = (0..padded(INPUTS)).map(|i| (i * 37 % 256) as u8).collect();
    for bits in [WeightBits::Eight, WeightBits::Sixteen] {
        let w: Vec<i32> = (0..INPUTS * ROWS)
            .map(|i| (i as i32 * 7919) % (2 * bits.max().min(1000) + 1) - bits.max().min(1000))
            .collect();
        let layer = U8Linear::new(
            INPUTS,
            bits,
            &w,
            vec![0; ROWS],
            vec![1 << 14; ROWS],
            vec![20; ROWS],
            (0, 255),
        )
        .expect("a valid layer");
        for kernel in Kernel::available() {
            let name = format!("u8_x_i{}_{}", bits.bits(), kernel.name());
            g.bench_function(name, |b| {
                let (mut acc, mut y) = (vec![0; ROWS], vec![0u8; ROWS]);
                b.iter(|| {
                    layer.forward_u8(kernel, black_box(&x8), 0..ROWS, &mut acc, &mut y);
                    y[0]
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench_engines);
criterion_main!(benches);
