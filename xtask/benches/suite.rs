//! Criterion benchmarks of the issue-10 suite (`xtask::suite`: the same rows as
//! `cargo xtask bench suite` and the PyTorch peer harness).
//!
//! ```sh
//! cargo bench -p xtask --bench suite                           # CPU (Flex), the default rows
//! SEMGEN_BENCH_ROWS=dit-small-fwd,umt5-small cargo bench -p xtask --bench suite
//! SEMGEN_BENCH_DEVICE=wgpu cargo bench -p xtask --features wgpu --bench suite
//! ```
//!
//! `SEMGEN_BENCH_ROWS=all` runs every row (the training steps of the 1.3B block and the 16×
//! full-attention refiner take seconds per iteration on the CPU). Run from the repository root:
//! the refiner and `generate` rows read `checkpoints/shapes-small`.

use burn::tensor::backend::AutodiffBackend;
use criterion::{criterion_group, criterion_main, Criterion};
use semgen_core::device::DeviceSpec;
use semgen_pipeline::backend::{dispatch_autodiff, AutodiffTask};
use std::time::Duration;
use xtask::suite::{self, Assets};

/// Rows run when `SEMGEN_BENCH_ROWS` is not set: one of each kind, each well under a second.
const DEFAULT_ROWS: &[&str] = &[
    "dit-tiny-fwd",
    "dit-small-fwd",
    "dit-small-train",
    "refiner-fwd",
    "refiner-window-1x",
    "refiner-window-16x",
    "refiner-full-1x",
    "refiner-full-16x",
    "vae-tiny-decode",
    "vae-shapes-decode",
    "qwen-small",
    "encoder-shapes",
    "umt5-small",
    "generate",
];

struct Register<'a> {
    c: &'a mut Criterion,
    rows: Vec<String>,
    device: String,
}

impl AutodiffTask for Register<'_> {
    type Output = ();
    fn run<B: AutodiffBackend>(self, device: B::Device) {
        let assets = Assets::default();
        let mut group = self.c.benchmark_group(self.device.as_str());
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(3));
        for name in &self.rows {
            let mut work = match suite::build::<B>(name, &assets, &device) {
                Ok(w) => w,
                Err(e) => {
                    eprintln!("skipping {name}: {e:#}");
                    continue;
                }
            };
            group.bench_function(name.as_str(), |b| {
                b.iter(|| work().expect("benchmark iteration failed"))
            });
        }
        group.finish();
    }
}

fn benches(c: &mut Criterion) {
    // As the `semgen` and `xtask` binaries do (docs/benchmarks.md, fix 10).
    semgen_pipeline::backend::keep_freed_memory();
    let device: DeviceSpec = std::env::var("SEMGEN_BENCH_DEVICE")
        .unwrap_or_else(|_| "cpu".into())
        .parse()
        .expect("SEMGEN_BENCH_DEVICE must be cpu, wgpu[:N] or cuda[:N]");
    let rows: Vec<String> = match std::env::var("SEMGEN_BENCH_ROWS") {
        Ok(v) if v == "all" => suite::ROWS.iter().map(|r| r.name.to_string()).collect(),
        Ok(v) => v.split(',').map(|s| s.trim().to_string()).collect(),
        Err(_) => DEFAULT_ROWS.iter().map(|s| s.to_string()).collect(),
    };
    for r in &rows {
        if let Err(e) = suite::find(r) {
            panic!("{e:#}");
        }
    }
    let task = Register {
        c,
        rows,
        device: device.to_string(),
    };
    if let Err(e) = dispatch_autodiff(device, task) {
        panic!("{e}");
    }
}

criterion_group!(suite_benches, benches);
criterion_main!(suite_benches);
