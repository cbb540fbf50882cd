//! The training driver: exact resume, NaN guard, stop flag, refusing to overwrite a run.

use burn::backend::{Autodiff, NdArray};
use burn::module::AutodiffModule;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use rand::{Rng, SeedableRng};
use semgen_core::train::{check_run_dir, OptimConfig, TrainError, TrainTask, Trainer, STATE_FILE};
use std::path::Path;
use std::sync::atomic::AtomicBool;

type B = Autodiff<NdArray>;

/// Linear regression whose batch of step `s` comes from `(seed, s)`.
struct Regression {
    seed: u64,
    nan_at: Option<u64>,
}

impl TrainTask<B> for Regression {
    type Model = Linear<B>;

    fn loss(&self, model: &Linear<B>, step: u64) -> Result<Tensor<B, 1>, TrainError> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.seed * 1000 + step);
        let x: Vec<f32> = (0..32).map(|_| rng.random_range(-1.0..1.0)).collect();
        let y: Vec<f32> = x
            .chunks(4)
            .map(|r| r[0] - 2.0 * r[1] + 0.5 * r[3])
            .collect();
        let d = Default::default();
        let x = Tensor::<B, 2>::from_data(TensorData::new(x, [8, 4]), &d);
        let y = Tensor::<B, 2>::from_data(TensorData::new(y, [8, 1]), &d);
        let loss = (model.forward(x) - y).powf_scalar(2.0).mean();
        Ok(match self.nan_at {
            Some(s) if s == step => loss * f32::NAN,
            _ => loss,
        })
    }

    fn export(
        &self,
        model: &<Linear<B> as AutodiffModule<B>>::InnerModule,
        dir: &Path,
        step: u64,
    ) -> Result<(), TrainError> {
        let w = model.weight.val().into_data().to_vec::<f32>().unwrap();
        semgen_core::checkpoint::write_atomic(
            &dir.join("weights.json"),
            serde_json::json!({"step": step, "w": w})
                .to_string()
                .as_bytes(),
        )
        .map_err(TrainError::task)
    }

    fn fingerprint(&self) -> String {
        format!("regression seed {}", self.seed)
    }
}

fn config(steps: u64) -> OptimConfig {
    let mut c = OptimConfig::constant(steps, 0.05, 3);
    c.warmup = 3;
    c.final_lr_ratio = 0.2;
    c.grad_clip = Some(1.0);
    c.ema = Some(0.9);
    c.checkpoint_every = 4;
    c.log_every = 2;
    c
}

/// Fixed initial weights: the backend RNG is global and the tests run in parallel threads.
fn fresh(steps: u64) -> Trainer<B, Linear<B>> {
    let d = Default::default();
    let mut m: Linear<B> = LinearConfig::new(4, 1).init(&d);
    m.weight =
        burn::module::Param::from_tensor(Tensor::from_floats([[0.1], [-0.2], [0.3], [0.05]], &d));
    m.bias = Some(burn::module::Param::from_tensor(Tensor::from_floats(
        [0.0],
        &d,
    )));
    Trainer::new(m, config(steps)).unwrap()
}

fn weights(m: &Linear<NdArray>) -> Vec<f32> {
    let mut v = m.weight.val().into_data().to_vec::<f32>().unwrap();
    v.extend(
        m.bias
            .as_ref()
            .unwrap()
            .val()
            .into_data()
            .to_vec::<f32>()
            .unwrap(),
    );
    v
}

#[test]
fn n_steps_then_resume_then_n_steps_equals_2n_steps() {
    let task = Regression {
        seed: 1,
        nan_at: None,
    };
    let stop = AtomicBool::new(false);
    let straight = tempfile::tempdir().unwrap();
    let mut a = fresh(12);
    a.run(&task, straight.path(), &stop, false).unwrap();

    let split = tempfile::tempdir().unwrap();
    // Interrupted after 6 of 12 steps (same schedule), state saved.
    let mut b = fresh(12);
    for _ in 0..6 {
        b.train_step(&task).unwrap();
    }
    b.save(&task, split.path()).unwrap();
    let mut c = fresh(12);
    // Different initial weights must not matter: everything comes from the saved state.
    c.model = LinearConfig::new(4, 1).init(&Default::default());
    c.resume(&task, split.path(), &Default::default()).unwrap();
    assert_eq!(c.step, 6);
    c.run(&task, split.path(), &stop, false).unwrap();

    assert_eq!(weights(&a.model.valid()), weights(&c.model.valid()));
    assert_eq!(weights(&a.export_weights()), weights(&c.export_weights()));
    let log = std::fs::read_to_string(split.path().join("train_log.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 3, "{log}");
}

#[test]
fn a_non_finite_loss_stops_and_keeps_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let task = Regression {
        seed: 1,
        nan_at: Some(5),
    };
    let mut t = fresh(12);
    let err = t
        .run(&task, dir.path(), &AtomicBool::new(false), false)
        .unwrap_err();
    assert!(
        matches!(err, TrainError::NonFinite { step: 6, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("last good checkpoint"));
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("weights.json")).unwrap())
            .unwrap();
    assert_eq!(saved["step"], 4);
    let mut r = fresh(12);
    r.resume(&task, dir.path(), &Default::default()).unwrap();
    assert_eq!(r.step, 4);
}

#[test]
fn the_stop_flag_saves_before_returning() {
    let dir = tempfile::tempdir().unwrap();
    let task = Regression {
        seed: 1,
        nan_at: None,
    };
    let mut t = fresh(12);
    let summary = t
        .run(&task, dir.path(), &AtomicBool::new(true), false)
        .unwrap();
    assert!(summary.stopped);
    assert!(dir.path().join(STATE_FILE).is_file());
}

#[test]
fn runs_are_not_overwritten_and_resume_checks_the_task() {
    let dir = tempfile::tempdir().unwrap();
    assert!(check_run_dir(dir.path(), false).is_ok());
    assert!(matches!(
        check_run_dir(dir.path(), true),
        Err(TrainError::Resume { .. })
    ));
    let task = Regression {
        seed: 1,
        nan_at: None,
    };
    fresh(4)
        .run(&task, dir.path(), &AtomicBool::new(false), false)
        .unwrap();
    assert!(matches!(
        check_run_dir(dir.path(), false),
        Err(TrainError::RunExists { .. })
    ));
    let other = Regression {
        seed: 2,
        nan_at: None,
    };
    let err = fresh(8)
        .resume(&other, dir.path(), &Default::default())
        .unwrap_err();
    assert!(err.to_string().contains("differs"), "{err}");
    std::fs::write(dir.path().join(STATE_FILE), b"SEMGEN-TRAIN1\x05\x00").unwrap();
    let err = fresh(8)
        .resume(&task, dir.path(), &Default::default())
        .unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
}

/// Raises the stop flag (what the Ctrl-C handler of `cargo xtask train` does) while step `at`
/// is being computed, as a signal arriving mid-step would.
struct Interrupting<'a> {
    inner: Regression,
    at: u64,
    flag: &'a AtomicBool,
}

impl TrainTask<B> for Interrupting<'_> {
    type Model = Linear<B>;

    fn loss(&self, model: &Linear<B>, step: u64) -> Result<Tensor<B, 1>, TrainError> {
        if step == self.at {
            self.flag.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        self.inner.loss(model, step)
    }

    fn export(
        &self,
        model: &<Linear<B> as AutodiffModule<B>>::InnerModule,
        dir: &Path,
        step: u64,
    ) -> Result<(), TrainError> {
        self.inner.export(model, dir, step)
    }

    fn fingerprint(&self) -> String {
        self.inner.fingerprint()
    }
}

#[test]
fn an_interrupt_mid_run_saves_and_the_resumed_run_equals_a_straight_one() {
    let plain = Regression {
        seed: 3,
        nan_at: None,
    };
    let straight = tempfile::tempdir().unwrap();
    let mut a = fresh(12);
    a.run(&plain, straight.path(), &AtomicBool::new(false), false)
        .unwrap();

    // Interrupted during step 7 (0-based 6), between the regular checkpoints at 4 and 8.
    let dir = tempfile::tempdir().unwrap();
    let flag = AtomicBool::new(false);
    let task = Interrupting {
        inner: Regression {
            seed: 3,
            nan_at: None,
        },
        at: 6,
        flag: &flag,
    };
    let mut b = fresh(12);
    let summary = b.run(&task, dir.path(), &flag, false).unwrap();
    assert!(summary.stopped);
    assert_eq!(
        summary.step, 7,
        "the step under way finishes, then it saves"
    );
    let exported: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("weights.json")).unwrap())
            .unwrap();
    assert_eq!(exported["step"], 7, "the users' checkpoint is written too");

    let mut c = fresh(12);
    c.resume(&plain, dir.path(), &Default::default()).unwrap();
    assert_eq!(c.step, 7);
    c.run(&plain, dir.path(), &AtomicBool::new(false), false)
        .unwrap();
    assert_eq!(weights(&a.model.valid()), weights(&c.model.valid()));
    assert_eq!(weights(&a.export_weights()), weights(&c.export_weights()));
}

/// Set in the child process of [`a_kill_mid_write_never_leaves_a_partial_state_file`].
const WRITER_ENV: &str = "SEMGEN_TEST_ATOMIC_WRITER";

/// 1.5 MB parts whose every byte is the step, so a mix of two writes is detectable.
fn state_bytes(step: u64) -> Vec<u8> {
    let payload = vec![(step % 251) as u8; 1_500_000];
    semgen_core::train::pack_parts(&[&step.to_le_bytes(), &payload])
}

/// In the child: rewrites the state file forever, as a training run saving every step.
#[test]
fn atomic_writer_child() {
    let Some(dir) = std::env::var_os(WRITER_ENV) else {
        return;
    };
    let path = Path::new(&dir).join(STATE_FILE);
    for step in 1.. {
        semgen_core::checkpoint::write_atomic(&path, &state_bytes(step)).unwrap();
    }
}

#[test]
fn a_kill_mid_write_never_leaves_a_partial_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(STATE_FILE);
    semgen_core::checkpoint::write_atomic(&path, &state_bytes(0)).unwrap();
    for delay_ms in [150, 230, 310, 370, 450] {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "atomic_writer_child", "--test-threads", "1"])
            .env(WRITER_ENV, dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        child.kill().unwrap(); // SIGKILL: no destructor, no cleanup
        child.wait().unwrap();
        let parts =
            semgen_core::train::unpack_parts(&std::fs::read(&path).unwrap()).expect("complete");
        let step = u64::from_le_bytes(parts[0].clone().try_into().unwrap());
        assert_eq!(parts[1].len(), 1_500_000);
        assert!(
            parts[1].iter().all(|&b| b == (step % 251) as u8),
            "step {step}: a mix of two writes"
        );
    }
    // A killed writer may leave its temp file (never the state file itself); it is ignored.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| n == STATE_FILE || (n.starts_with(".train_state.bin.") && n.ends_with(".tmp"))),
        "{names:?}"
    );
}
