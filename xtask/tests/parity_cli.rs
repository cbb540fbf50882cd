//! `cargo xtask parity` as a user runs it: exit codes and messages.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

fn parity(path: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("parity")
        .arg(path)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn wan_dit_and_schedulers_pass() {
    let (code, text) = parity(&fixtures().join("wan_dit"));
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("out") && text.contains("all outputs within tolerance"),
        "{text}"
    );
    let (code, text) = parity(&fixtures().join("schedulers.safetensors"));
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("unipc_x10"), "{text}");
}

#[test]
fn refuses_unknown_components_and_malformed_folders() {
    let dir = tempfile::tempdir().unwrap();
    // Unknown component.
    let unknown = dir.path().join("unknown");
    copy_dir(&fixtures().join("wan_dit"), &unknown);
    let m = std::fs::read_to_string(unknown.join("manifest.json")).unwrap();
    std::fs::write(
        unknown.join("manifest.json"),
        m.replace("\"wan_dit\"", "\"sd3_mmdit\""),
    )
    .unwrap();
    let (code, text) = parity(&unknown);
    assert_ne!(code, 0);
    assert!(text.contains("unknown component 'sd3_mmdit'"), "{text}");
    // A folder without a manifest.
    let (code, text) = parity(dir.path());
    assert_ne!(code, 0);
    assert!(
        text.contains("no manifest.json") || text.contains("unknown component"),
        "{text}"
    );
    // A manifest that is not JSON.
    let broken = dir.path().join("broken");
    copy_dir(&fixtures().join("wan_dit"), &broken);
    std::fs::write(broken.join("manifest.json"), "{ not json").unwrap();
    let (code, text) = parity(&broken);
    assert_ne!(code, 0);
    assert!(text.contains("malformed manifest"), "{text}");
    // io.safetensors missing.
    let no_io = dir.path().join("no_io");
    copy_dir(&fixtures().join("wan_dit"), &no_io);
    std::fs::remove_file(no_io.join("io.safetensors")).unwrap();
    let (code, text) = parity(&no_io);
    assert_ne!(code, 0);
    assert!(text.contains("missing io.safetensors"), "{text}");
    // An output beyond tolerance fails with a non-zero exit.
    let strict = dir.path().join("strict");
    copy_dir(&fixtures().join("wan_dit"), &strict);
    let m = std::fs::read_to_string(strict.join("manifest.json")).unwrap();
    std::fs::write(strict.join("manifest.json"), m.replace("0.0001", "1e-12")).unwrap();
    let (code, text) = parity(&strict);
    assert_ne!(code, 0);
    assert!(
        text.contains("FAIL") && text.contains("exceed their tolerance"),
        "{text}"
    );
}
