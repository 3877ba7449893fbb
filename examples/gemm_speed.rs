use tch::{Device, Kind, Tensor};
fn time(label: &str, f: impl Fn() -> Tensor) {
    for _ in 0..3 {
        let _ = f();
    }
    let t = std::time::Instant::now();
    let n = 20;
    for _ in 0..n {
        let _ = f();
    }
    let s = t.elapsed().as_secs_f64() / n as f64;
    println!(
        "{label}: {:.2} ms  {:.1} GFLOP/s",
        s * 1e3,
        2.0 * 32768.0 * 192.0 * 192.0 / s / 1e9
    );
}
fn main() {
    let x = Tensor::randn([32768, 192], (Kind::Float, Device::Cpu));
    let w = Tensor::randn([192, 192], (Kind::Float, Device::Cpu));
    let xb = x.to_kind(Kind::BFloat16);
    let wb = w.to_kind(Kind::BFloat16);
    time("f32", || x.matmul(&w.tr()));
    time("bf16", || xb.matmul(&wb.tr()));
    time("bf16 incl casts", || {
        x.to_kind(Kind::BFloat16)
            .matmul(&w.to_kind(Kind::BFloat16).tr())
            .to_kind(Kind::Float)
    });
    let g = Tensor::randn([32768, 192], (Kind::Float, Device::Cpu));
    let gb = g.to_kind(Kind::BFloat16);
    time("f32 wgrad", || g.tr().matmul(&x));
    time("bf16 wgrad", || gb.tr().matmul(&xb));
}
