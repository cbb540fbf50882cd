//! `xtask probe-vae` on the shipped model: the readers get the windows they should (the latent's
//! 4×4 cells × 8 channels, the cells' mean colours, and 2×2-pixel means of the frame and of its
//! reconstruction, each with the object's two offsets), and bad arguments are errors.

use std::process::Command;

fn probe(args: &[&str]) -> std::process::Output {
    let checkpoint =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../checkpoints/shapes-small");
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("probe-vae")
        .args(args)
        .arg("--checkpoint")
        .arg(&checkpoint)
        .output()
        .unwrap()
}

#[test]
fn probe_vae_reads_object_windows_of_latent_and_pixels() {
    let out = probe(&[
        "--fit", "48", "--val", "24", "--steps", "10", "--hidden", "8",
    ]);
    assert!(out.status.success(), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["window_cells"], 4);
    // 4×4 latent cells of 8 channels; 4×4 cells of 3 mean colours; 16×16 2×2-pixel means of
    // 3 colours; each + 2 offsets.
    for (features, values) in [
        ("latent", 130),
        ("cell_means", 50),
        ("pixels", 770),
        ("decoded", 770),
    ] {
        let entry = &report[features];
        assert_eq!(entry["values_per_clip"], values, "{features}: {entry}");
        for attribute in ["colour", "shape", "size"] {
            let all = &entry[attribute]["all"];
            for reader in ["ridge", "mlp"] {
                let rate = all[reader].as_f64().unwrap_or(-1.0);
                assert!((0.0..=1.0).contains(&rate), "{features} {attribute}: {all}");
            }
        }
    }

    for (args, message) in [
        (&["--window", "0"][..], "--window must be at least 1 cell"),
        (&["--val", "0", "--fit", "8"][..], "--val 0"),
    ] {
        let out = probe(args);
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}
