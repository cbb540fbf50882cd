//! `xtask motion` on a per-clip report file: the confusion table on stdout, and a reader that
//! has closed the pipe (`xtask motion … | head`) ends the output without a panic.

use std::path::PathBuf;
use std::process::{Command, Stdio};

fn reports() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/results/pipeline-generated.jsonl")
}

#[test]
fn motion_prints_the_confusion_and_a_closed_pipe_is_not_an_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("motion")
        .arg(reports())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("100 clips, direction agreement 0."), "{text}");
    assert!(text.contains("| prompted \\ measured |"), "{text}");

    // The read end is closed before the command starts, so every write fails with EPIPE.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("motion")
        .arg(reports())
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {err}", out.status);
    assert!(!err.contains("panicked"), "{err}");
}
