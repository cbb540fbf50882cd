//! Writes Shapes training clips as raw RGB bytes (`[N, T, H, W, 3]` u8) for side-by-side
//! experiments in PyTorch: `dump_clips OUT N FRAMES SPLIT(train|val)`.
use semgen_data::{ShapesWorld, Split, WorldConfig};
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let n: u64 = a[2].parse().unwrap();
    let frames: usize = a[3].parse().unwrap();
    let split = if a[4] == "val" {
        Split::Val
    } else {
        Split::Train
    };
    let world = ShapesWorld::new(WorldConfig {
        seed: 0,
        frames,
        height: 64,
        width: 64,
        max_objects: 2,
        ..WorldConfig::default()
    })
    .unwrap();
    let mut out = Vec::new();
    for i in 0..n {
        out.extend_from_slice(world.clip(split, i).unwrap().video.as_bytes());
    }
    std::fs::write(&a[1], out).unwrap();
}
