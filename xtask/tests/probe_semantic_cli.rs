//! `xtask probe-semantic --space vae` on the shipped model: the probes read the VAE's latent
//! grid of real clips (no stage-1 sampling) with the set probe, and the report says so and has
//! no generated, story or ridge-probe columns.

use std::process::Command;

#[test]
fn probe_semantic_reads_the_vae_latents_of_real_clips_only() {
    let checkpoint =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../checkpoints/shapes-small");
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args([
            "probe-semantic",
            "--space",
            "vae",
            "--fit",
            "8",
            "--val",
            "4",
        ])
        .arg("--checkpoint")
        .arg(&checkpoint)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // 17×64×64 clips: 5 latent frames of 8×8 cells with 8 channels.
    assert_eq!(
        report["features"],
        "the whole normalised VAE latent grid, 2560 values per clip"
    );
    for attribute in ["colour", "shape", "size", "motion", "background"] {
        let row = &report[format!("set_probe_{attribute}")];
        let real = row["real"].as_f64().unwrap_or(-1.0);
        assert!((0.0..=1.0).contains(&real), "set_probe_{attribute}: {row}");
        assert!(row.get("generated").is_none(), "{row}");
        // No flattened ridge probe on 2560 values per clip.
        assert!(
            report.get(format!("probe_{attribute}")).is_none(),
            "{report}"
        );
    }
    assert!(report.get("stories").is_none(), "{report}");
    assert!(report.get("frechet_tokens_generated_vs_real").is_none());

    // An unknown space is a usage error, not a run.
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["probe-semantic", "--space", "pixels"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid value 'pixels'"));
}
