//! Where a flow spends its bits: ideal bits per sample of each group of planes (a plane, or a
//! joint model's colour planes) and level over CIFAR-10 records (never the test batch for
//! tuning: pass the validation split).
//!
//!   cargo run --release --example flow_study -- MODEL.llifm CIFAR.bin [N]

use llif::flow::FlowModel;

fn main() -> llif::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: flow_study MODEL.llifm CIFAR.bin [N]");
        std::process::exit(2);
    }
    let model =
        FlowModel::from_bytes(&std::fs::read(&args[1]).map_err(|e| llif::Error::io(&args[1], e))?)?;
    let n = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(100);
    let records = llif::corpus::read_cifar(std::path::Path::new(&args[2]), Some(n))?;
    let mut sums: Vec<Vec<f64>> = Vec::new();
    for r in &records {
        let b = model.bits_by_group_and_level(&r.image)?;
        if sums.is_empty() {
            sums = b.iter().map(|l| vec![0.0; l.len()]).collect();
        }
        for (s, p) in sums.iter_mut().zip(&b) {
            for (a, v) in s.iter_mut().zip(p) {
                *a += v;
            }
        }
    }
    let per_plane = (records.len() * 32 * 32) as f64;
    println!(
        "bits per sample of each group of planes, by level ({} images):",
        records.len()
    );
    let groups = model.groups(llif::ChannelLayout::Rgb);
    for ((levels, g), k) in sums.iter().zip(&groups).zip(0..) {
        let samples = per_plane * g.planes.len() as f64;
        let cells: Vec<String> = levels
            .iter()
            .map(|b| format!("{:.3}", b / samples))
            .collect();
        let total: f64 = levels.iter().sum::<f64>() / samples;
        println!(
            "group {k} (planes {:?}): levels 1.. {}  total {total:.3}",
            g.planes,
            cells.join(" ")
        );
    }
    let all: f64 = sums.iter().flatten().sum::<f64>() / (per_plane * 3.0);
    println!("all planes: {all:.3} bpsp");
    Ok(())
}
