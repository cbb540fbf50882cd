//! `cargo xtask train encoder` runs on the core training driver: 2 steps, then `--resume` to 4,
//! gives bit for bit the encoder of 4 uninterrupted steps (Adam moments and data position are
//! in `train_state.bin`), logs `train_log.jsonl`, evaluates on the `--eval-every` steps, and
//! refuses to start over a run without `--resume`. The real Shapes encoder on 2-clip batches.

use semgen_core::checkpoint::{parse_safetensors, read_meta};
use std::path::Path;
use std::process::Command;

/// Every tensor of a checkpoint as raw bytes, by name (the header's key order may differ).
fn tensors(path: &Path) -> Vec<(String, Vec<u8>)> {
    let file = parse_safetensors(path).unwrap();
    let mut all: Vec<_> = file
        .tensors()
        .into_iter()
        .map(|(name, view)| (name, view.data().to_vec()))
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

fn train(out: &Path, steps: u32, resume: bool) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.args([
        "train",
        "encoder",
        "--quiet",
        "--batch",
        "2",
        "--val-clips",
        "4",
    ])
    .args([
        "--probe-clips",
        "8",
        "--eval-every",
        "2",
        "--checkpoint-every",
        "2",
    ])
    .args(["--label-weight", "1", "--token-weight", "1", "--lr", "1e-3"])
    .args(["--steps", &steps.to_string(), "--out"])
    .arg(out);
    if resume {
        cmd.arg("--resume");
    }
    cmd.output().unwrap()
}

fn ok(out: std::process::Output) {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn encoder_training_resumes_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let (straight, parted) = (dir.path().join("straight"), dir.path().join("parted"));
    ok(train(&straight, 4, false));
    ok(train(&parted, 2, false));

    // Starting again over a run is refused (nothing is overwritten).
    let again = train(&parted, 4, false);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("--resume"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    ok(train(&parted, 4, true));
    for file in [
        "semantic_encoder.safetensors",
        "text_encoder.safetensors",
        "trainer.safetensors",
    ] {
        let (a, b) = (straight.join(file), parted.join(file));
        assert!(tensors(&a) == tensors(&b), "{file} differs after resume");
        assert_eq!(read_meta(&b).unwrap().step, 4);
    }
    // Evaluations at steps 2 and 4, the first kept across the resume.
    let metrics: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(parted.join("metrics.json")).unwrap()).unwrap();
    let steps: Vec<u64> = metrics
        .iter()
        .map(|r| r["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, [2, 4]);
    assert!(metrics[1]["retrieval_top1"].as_f64().is_some());
    let log = std::fs::read_to_string(parted.join("train_log.jsonl")).unwrap();
    assert!(!log.trim().is_empty(), "the driver logs the loss");
}
