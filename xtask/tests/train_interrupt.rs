//! Issue 11: Ctrl-C during `cargo xtask train refiner` writes a checkpoint before exiting, and
//! `--resume` continues from it. A real SIGINT to the real binary, on a tiny refiner over the
//! shipped model's frozen VAE and encoders (a 2-clip pool of 5-frame 32x32 clips).

#![cfg(unix)]

use semgen_core::checkpoint::read_meta;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn shipped() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../checkpoints/shapes-small")
}

fn config(steps: u64) -> String {
    let s = shipped();
    format!(
        r#"[inputs]
vae = "{vae}"
encoder = "{enc}"

[model]
heads = 2
head_dim = 16
layers = 1
ffn = 32
window = 4
d_out = 8
kl_weight = 0.001
sem_noise_max = 0.3

[data]
world_seed = 0
pool = 2
batch = 1
frames = 5
height = 32
width = 32
max_objects = 1
frame_stride = 4
text_len = 32

[train]
steps = {steps}
lr = 0.0005
checkpoint_every = 1000000
log_every = 1
seed = 0
"#,
        vae = s.join("vae.safetensors").display(),
        enc = s.display(),
    )
}

fn log_lines(run: &Path) -> usize {
    std::fs::read_to_string(run.join("train_log.jsonl"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

#[test]
fn ctrl_c_saves_a_checkpoint_and_resume_continues_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let cfg = dir.path().join("refiner.toml");
    std::fs::write(&cfg, config(1_000_000)).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["train", "refiner", "--quiet", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(&run)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it is training (two logged steps), then press Ctrl-C.
    let start = Instant::now();
    while log_lines(&run) < 2 {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("xtask exited early ({status}): {err}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "no training steps"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = child.id().to_string();
    let kill = Command::new("sh")
        .args(["-c", &format!("kill -INT {pid}")])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("interrupted: saving a checkpoint"),
        "{stderr}"
    );
    assert!(stdout.contains("stopped early"), "{stdout}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // The run state and the users' checkpoints are there, at the step it stopped.
    assert!(run.join("train_state.bin").is_file());
    let step = read_meta(&run.join("refiner.safetensors")).unwrap().step;
    assert!(step >= 2, "stopped at step {step}");
    assert_eq!(
        read_meta(&run.join("compressor.safetensors")).unwrap().step,
        step
    );

    // A fresh start over it is refused; --resume continues from that step (2 more steps).
    std::fs::write(&cfg, config(step + 2)).unwrap();
    let again = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["train", "refiner", "--quiet", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(&run)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds a run"));
    let resumed = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["train", "refiner", "--quiet", "--resume", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(&run)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&resumed.stdout);
    assert!(
        resumed.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "training the refiner from step {step} to {}",
            step + 2
        )),
        "{stdout}"
    );
    assert_eq!(
        read_meta(&run.join("refiner.safetensors")).unwrap().step,
        step + 2
    );
}
