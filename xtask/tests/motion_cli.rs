//! `xtask motion` and `xtask shapes` on a per-clip report file: the confusion tables on stdout,
//! and a reader that has closed the pipe (`xtask motion … | head`) ends the output without a
//! panic.

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

#[test]
fn shapes_prints_the_shape_confusion_with_the_reports_shape_hit_rate() {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("shapes")
        .arg(reports())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("| prompted \\ measured | circle |"), "{text}");
    assert!(text.contains(" not found |"), "{text}");
    // The hit rate is the per-object shape hits of the file's clip lines (the last line is the
    // summary).
    let file = std::fs::read_to_string(reports()).unwrap();
    let clips = file.lines().count() - 1;
    let objects: usize = file
        .lines()
        .take(clips)
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["segments"][0]["objects"].as_array().unwrap().len()
        })
        .sum();
    let hits: usize = file
        .lines()
        .take(clips)
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["segments"][0]["objects"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|o| o["shape"].as_bool().unwrap())
                .count()
        })
        .sum();
    let want = format!(
        "{clips} clips, shape hit rate {:.2} (",
        hits as f64 / objects as f64
    );
    assert!(text.contains(&want), "{want} not in {text}");
    // Every object is counted once: the table's cells add up to the objects of the file.
    let cells: usize = text
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| prompted"))
        .flat_map(|l| {
            l.split('|')
                .skip(2)
                .filter_map(|c| c.trim().parse::<usize>().ok())
        })
        .sum();
    assert_eq!(cells, objects, "{text}");
}
