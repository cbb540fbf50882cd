//! Golden hashes: every clip is a pure function of (seed, split, index, T, H, W).
//!
//! If a change to the generator is intended, regenerate the table with
//! `cargo test -p semgen-data --test determinism -- --nocapture` and paste the printed lines.

use semgen_data::{ShapesWorld, Split, WorldConfig};
use sha2::{Digest, Sha256};

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `(split, index, segments or 0 for a short clip, sha256 of the frame bytes)`.
const GOLDEN: &[(Split, u64, usize, &str)] = &[
    (
        Split::Train,
        0,
        0,
        "2557fd81b66dfaf9d1c3399fa1b39e9d9a6876faa2fe02e8df9983ba68f46e79",
    ),
    (
        Split::Train,
        1,
        0,
        "c2071a4bbd484cf23d24a16b231b4bd65f0bd544e273a19876a6e74b4b4b527b",
    ),
    (
        Split::Train,
        2,
        0,
        "ac538b2f950276701775069d534d703edefb5bf861dbfecedeecf9cbba0c5d80",
    ),
    (
        Split::Val,
        0,
        0,
        "7ae29a861f88ef365385b056a9647c0971116e58a74875a6ba644b56a0dfe6dc",
    ),
    (
        Split::Val,
        1,
        0,
        "634eac101fac6ebe22e9f8601420b47a6a909458cdb03c9f00ab560287819704",
    ),
    (
        Split::Val,
        2,
        0,
        "8170056ebc8b4f49b8223098ba4048e18cb589056e9c5b4cbdec6f12ba1c07d8",
    ),
    (
        Split::Test,
        0,
        0,
        "e72cfcc7c86ea13bf4d44adda1e01d577e136983796da9da3d594da2b2ab36f0",
    ),
    (
        Split::Test,
        1,
        0,
        "cb8a6940067ea79f3b980a3523da5103f602fee99c4e9d8ff7dbf623debe99e0",
    ),
    (
        Split::Test,
        2,
        0,
        "8648e7c8da23acde18817489f7654c6633aac90ee85e0f97004726b2338a32c1",
    ),
    (
        Split::Train,
        0,
        8,
        "bc2bac5546b63247be25f806ff36b2c462e0cc539d28e78a27f3bef9aef62618",
    ),
    (
        Split::Test,
        1,
        64,
        "c76b46fe214ac97b01f055d116da837eb52ec04447ce23c3ad9431da3f83d897",
    ),
];

fn world() -> ShapesWorld {
    ShapesWorld::new(WorldConfig::default()).unwrap()
}

fn hash_of(world: &ShapesWorld, split: Split, index: u64, segments: usize) -> String {
    let clip = if segments == 0 {
        world.clip(split, index)
    } else {
        world.story(split, index, segments)
    };
    sha256(clip.unwrap().video.as_bytes())
}

fn all_hashes() -> Vec<String> {
    let world = world();
    GOLDEN
        .iter()
        .map(|&(split, index, segments, _)| hash_of(&world, split, index, segments))
        .collect()
}

#[test]
fn golden_hashes_do_not_change() {
    let world = world();
    let mut wrong = Vec::new();
    for &(split, index, segments, expected) in GOLDEN {
        let got = hash_of(&world, split, index, segments);
        println!("    (Split::{split:?}, {index}, {segments}, \"{got}\"),");
        if got != expected {
            wrong.push(format!("{split} {index} ({segments} segments)"));
        }
    }
    assert!(wrong.is_empty(), "clips changed: {wrong:?}");
}

#[test]
fn the_first_caption_does_not_change() {
    assert_eq!(world().clip(Split::Train, 0).unwrap().caption(),
        "a large yellow cross moving left quickly and a small blue triangle moving down quickly on a navy background"
    );
}

#[test]
fn hashes_are_the_same_with_one_and_two_threads() {
    let pool = |n| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .unwrap()
    };
    let one = pool(1).install(all_hashes);
    let two = pool(2).install(all_hashes);
    assert_eq!(one, two);
    let expected: Vec<String> = GOLDEN.iter().map(|g| g.3.to_string()).collect();
    assert_eq!(one, expected);
}
