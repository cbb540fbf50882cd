//! `cargo xtask train vae` logs one `train_log.jsonl` row per step (with the loss terms), like
//! the runs of the core driver, and a resumed run appends to it. The tiny test config.

use std::path::{Path, PathBuf};
use std::process::Command;

fn config(dir: &Path, steps: u32) -> PathBuf {
    let tiny = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../semgen-vae/configs/tiny.toml");
    let text = std::fs::read_to_string(tiny)
        .unwrap()
        .replace("steps = 6", &format!("steps = {steps}"));
    let path = dir.join(format!("tiny-{steps}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn train(cfg: &Path, out: &Path, resume: bool) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.args(["train", "vae", "--config"])
        .arg(cfg)
        .arg("--out")
        .arg(out);
    if resume {
        cmd.arg("--resume");
    }
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn vae_training_logs_every_step_and_a_resume_appends() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    train(&config(dir.path(), 2), &out, false);
    train(&config(dir.path(), 3), &out, true);
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(out.join("train_log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let steps: Vec<u64> = rows.iter().map(|r| r["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, [1, 2, 3]);
    for r in &rows {
        let loss = r["loss"].as_f64().unwrap();
        let parts = r["l1"].as_f64().unwrap() + r["mse"].as_f64().unwrap();
        // The total is the weighted sum of the terms (l1 and mse weigh 1, kl 1e-6 here).
        assert!(
            loss.is_finite() && (loss - parts).abs() < 1e-3 * loss.max(1.0),
            "{r}"
        );
        assert!(r["steps_per_s"].as_f64().unwrap() > 0.0);
    }
}
