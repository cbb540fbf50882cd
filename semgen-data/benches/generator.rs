//! Shapes-world generator throughput: planning + rendering, one clip per iteration.
//!
//! `cargo bench -p semgen-data --bench generator` (figures in docs/data.md).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use semgen_data::{ShapesWorld, Split, WorldConfig};

fn generator(c: &mut Criterion) {
    let world = ShapesWorld::new(WorldConfig::default()).unwrap();
    let mut group = c.benchmark_group("shapes");
    group.throughput(Throughput::Elements(1)); // elements/s = clips/s
    group.sample_size(30);

    let mut index = 0u64;
    group.bench_function("clip_17x64x64", |b| {
        b.iter(|| {
            index += 1;
            world.clip(Split::Train, index).unwrap()
        })
    });
    let mut index = 0u64;
    group.bench_function("story_129x64x64", |b| {
        b.iter(|| {
            index += 1;
            world.story(Split::Train, index, 8).unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, generator);
criterion_main!(benches);
