//! `xtask probe-text` on the shipped model: its text refiner puts each object's colour into the
//! object's direction word, where the text encoder alone does not, and stage 1's loss prefers a
//! real clip's caption to the caption with the objects' motions swapped (and, as for any motion
//! error, to one with the direction reversed).

use std::process::Command;

/// The accuracies of a probe-table row that starts with `prefix`.
fn row(text: &str, prefix: &str) -> Vec<f64> {
    let line = text
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no row {prefix:?} in\n{text}"));
    line[prefix.len()..]
        .split('|')
        .filter_map(|c| c.trim().parse().ok())
        .collect()
}

#[test]
fn probe_text_shows_the_shipped_refiner_binding_words_to_their_object() {
    let checkpoint =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../checkpoints/shapes-small");
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args([
            "probe-text",
            "--count",
            "200",
            "--loss-clips",
            "2",
            "--draws",
            "1",
        ])
        .arg("--checkpoint")
        .arg(&checkpoint)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("Linear probes on 400 objects of 200 two-object captions (100 held out)"),
        "{text}"
    );
    // [own colour, other's colour, own motion, other's motion] read from the direction word.
    let raw = row(&text, "| text encoder | direction |");
    let refined = row(&text, "| stage 1's text refiner | direction |");
    assert_eq!((raw.len(), refined.len()), (4, 4), "{text}");
    assert!(
        raw[0] < 0.6,
        "the text encoder's direction word names its object: {raw:?}"
    );
    assert!(
        refined[0] > 0.9 && refined[0] > refined[1] + 0.3,
        "{refined:?}"
    );
    for altered in [
        "| two objects, different motions | motions swapped | 2 |",
        "| one moving object | direction reversed | 2 |",
    ] {
        let r = row(&text, altered);
        assert!(
            r.len() == 2 && r[0] < 0.0 && r[1] == 1.0,
            "{altered} {r:?}\n{text}"
        );
    }

    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["probe-text", "--count", "4"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--count must be at least 8"),
        "{out:?}"
    );
}
