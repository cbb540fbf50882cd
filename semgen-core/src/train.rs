//! The training driver behind every `cargo xtask train …`: AdamW with linear warm-up and a cosine
//! schedule, gradient clipping, EMA weights, atomic checkpoints of the whole run state, exact
//! resume, a stop flag (Ctrl-C in the binaries), a NaN guard, JSON-lines logs and a progress bar.
//!
//! A model plugs in through [`TrainTask`]: the loss of step `s` and how to export weights. The
//! batch and every random draw of step `s` must be a pure function of `(seed, s)`, so the step
//! counter *is* the data position and the RNG state: resuming at step `s` replays exactly what
//! an uninterrupted run would have done (`N + resume + N` steps = `2N` steps, bit for bit).
//!
//! A run folder holds:
//! - `train_state.bin`: step, task fingerprint, model, optimiser moments and EMA weights (Burn
//!   records), written atomically (temp file, fsync, rename), so the last good one survives a
//!   crash mid-write;
//! - whatever [`TrainTask::export`] writes (the semgen checkpoints users load), also atomic;
//! - `train_log.jsonl`: one JSON object per logged step (step, loss, lr, seconds, steps/s).

use crate::checkpoint::write_atomic;
use burn::module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamW, AdamWConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::record::{BinBytesRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// File names inside a run folder.
pub const STATE_FILE: &str = "train_state.bin";
pub const LOG_FILE: &str = "train_log.jsonl";

/// Why a training run stopped with an error. The last good checkpoint is always kept.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("invalid training config: {0}")]
    Config(String),
    #[error("the loss became {value} at step {step}; stopped, the last good checkpoint is kept")]
    NonFinite { step: u64, value: f64 },
    #[error("cannot resume from {dir}: {reason}")]
    Resume { dir: PathBuf, reason: String },
    #[error("{dir} already holds a run (pass --resume to continue it, or choose another folder)")]
    RunExists { dir: PathBuf },
    #[error("checkpoint I/O in {path}: {reason}")]
    Io { path: PathBuf, reason: String },
    #[error("{0}")]
    Task(String),
}

impl TrainError {
    /// Wraps an error of a task (data, model input, export).
    pub fn task(e: impl std::fmt::Display) -> Self {
        TrainError::Task(e.to_string())
    }
}

fn default_one() -> f64 {
    1.0
}
fn default_log() -> u64 {
    10
}

/// The `[train]` table shared by every training config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimConfig {
    /// Optimiser steps in total.
    pub steps: u64,
    /// Peak learning rate.
    pub lr: f64,
    /// Linear warm-up steps from 0 to `lr`.
    #[serde(default)]
    pub warmup: u64,
    /// Cosine decay from `lr` to `lr · final_lr_ratio` after warm-up (1 = constant).
    #[serde(default = "default_one")]
    pub final_lr_ratio: f64,
    #[serde(default)]
    pub weight_decay: f32,
    /// Clip the global gradient norm to this value.
    #[serde(default)]
    pub grad_clip: Option<f32>,
    /// EMA decay of the exported weights (e.g. 0.999); none = export the raw weights.
    #[serde(default)]
    pub ema: Option<f64>,
    /// Save the run state and export every this many steps (and at the end).
    pub checkpoint_every: u64,
    /// Log (file and progress bar) every this many steps.
    #[serde(default = "default_log")]
    pub log_every: u64,
    /// Seed of the initial weights, the data order and every noise draw.
    pub seed: u64,
}

impl OptimConfig {
    /// A constant-rate config with no warm-up, clipping or EMA.
    pub fn constant(steps: u64, lr: f64, seed: u64) -> Self {
        Self {
            steps,
            lr,
            warmup: 0,
            final_lr_ratio: 1.0,
            weight_decay: 0.0,
            grad_clip: None,
            ema: None,
            checkpoint_every: steps.max(1),
            log_every: 10,
            seed,
        }
    }

    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |m: String| Err(TrainError::Config(m));
        if self.steps == 0 {
            return bad("steps must be at least 1".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("lr must be positive, got {}", self.lr));
        }
        if !(0.0..=1.0).contains(&self.final_lr_ratio) {
            return bad(format!(
                "final_lr_ratio must be in [0, 1], got {}",
                self.final_lr_ratio
            ));
        }
        if let Some(d) = self.ema {
            if !(0.0..1.0).contains(&d) {
                return bad(format!("ema must be in [0, 1), got {d}"));
            }
        }
        if let Some(c) = self.grad_clip {
            if !(c.is_finite() && c > 0.0) {
                return bad(format!("grad_clip must be positive, got {c}"));
            }
        }
        if self.checkpoint_every == 0 || self.log_every == 0 {
            return bad("checkpoint_every and log_every must be at least 1".into());
        }
        Ok(())
    }

    /// The learning rate of step `step` (0-based).
    pub fn lr_at(&self, step: u64) -> f64 {
        if step < self.warmup {
            return self.lr * (step + 1) as f64 / self.warmup as f64;
        }
        let span = self.steps.saturating_sub(self.warmup).max(1) as f64;
        let progress = ((step - self.warmup) as f64 / span).min(1.0);
        let cos = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        self.lr * (self.final_lr_ratio + (1.0 - self.final_lr_ratio) * cos)
    }
}

/// A model and its data, as the driver sees them.
pub trait TrainTask<B: AutodiffBackend> {
    type Model: AutodiffModule<B> + Clone;

    /// The loss of the batch of step `step` (0-based), a pure function of `(seed, step)`.
    fn loss(&self, model: &Self::Model, step: u64) -> Result<Tensor<B, 1>, TrainError>;

    /// Writes the checkpoints users load (atomically) from the exported weights (the EMA ones
    /// when EMA is on).
    fn export(
        &self,
        model: &<Self::Model as AutodiffModule<B>>::InnerModule,
        dir: &Path,
        step: u64,
    ) -> Result<(), TrainError>;

    /// Text that must be equal for a run to be resumed (model and data configs).
    fn fingerprint(&self) -> String;
}

/// One logged step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogRow {
    pub step: u64,
    pub loss: f64,
    pub lr: f64,
    pub seconds: f64,
    pub steps_per_s: f64,
}

/// A training run in progress.
pub struct Trainer<B: AutodiffBackend, M: AutodiffModule<B>> {
    pub model: M,
    pub ema: Option<M::InnerModule>,
    optim: OptimizerAdaptor<AdamW, M, B>,
    /// Steps done.
    pub step: u64,
    pub config: OptimConfig,
}

impl<B: AutodiffBackend, M: AutodiffModule<B> + Clone> Trainer<B, M> {
    /// A fresh run from initial weights.
    pub fn new(model: M, config: OptimConfig) -> Result<Self, TrainError> {
        config.validate()?;
        let mut adam = AdamWConfig::new().with_weight_decay(config.weight_decay);
        if let Some(c) = config.grad_clip {
            adam = adam.with_grad_clipping(Some(GradientClippingConfig::Norm(c)));
        }
        let ema = config.ema.map(|_| model.valid());
        Ok(Self {
            model,
            ema,
            optim: adam.init(),
            step: 0,
            config,
        })
    }

    /// The weights to export: the EMA ones when EMA is on.
    pub fn export_weights(&self) -> M::InnerModule {
        self.ema.clone().unwrap_or_else(|| self.model.valid())
    }

    /// One optimiser step on the loss of step `self.step`.
    pub fn train_step<T: TrainTask<B, Model = M>>(&mut self, task: &T) -> Result<f64, TrainError> {
        let loss = task.loss(&self.model, self.step)?;
        let value: f64 = loss.clone().into_scalar().elem();
        if !value.is_finite() {
            return Err(TrainError::NonFinite {
                step: self.step + 1,
                value,
            });
        }
        let grads = GradientsParams::from_grads(loss.backward(), &self.model);
        let lr = self.config.lr_at(self.step);
        self.model = self.optim.step(lr, self.model.clone(), grads);
        if let (Some(decay), Some(ema)) = (self.config.ema, self.ema.take()) {
            self.ema = Some(ema_update(ema, &self.model.valid(), decay));
        }
        self.step += 1;
        Ok(value)
    }

    /// Writes `train_state.bin` (atomically) and the task's exports.
    pub fn save<T: TrainTask<B, Model = M>>(&self, task: &T, dir: &Path) -> Result<(), TrainError> {
        let io = |reason: String| TrainError::Io {
            path: dir.to_path_buf(),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(|e| io(e.to_string()))?;
        task.export(&self.export_weights(), dir, self.step)?;
        let rec = BinBytesRecorder::<FullPrecisionSettings>::default();
        let model = Recorder::<B>::record(&rec, self.model.clone().into_record(), ())
            .map_err(|e| io(e.to_string()))?;
        let optim = Recorder::<B>::record(&rec, self.optim.to_record(), ())
            .map_err(|e| io(e.to_string()))?;
        let ema = match &self.ema {
            Some(m) => Recorder::<B::InnerBackend>::record(&rec, m.clone().into_record(), ())
                .map_err(|e| io(e.to_string()))?,
            None => Vec::new(),
        };
        let header = serde_json::json!({
            "step": self.step,
            "fingerprint": task.fingerprint(),
            "config": self.config,
        })
        .to_string();
        let mut bytes = b"SEMGEN-TRAIN1".to_vec();
        bytes.extend(pack_parts(&[header.as_bytes(), &model, &optim, &ema]));
        write_atomic(&dir.join(STATE_FILE), &bytes).map_err(|e| io(e.to_string()))
    }

    /// Restores the state saved in `dir` onto this (freshly built) trainer. The task
    /// fingerprint must match; the step budget and intervals may change.
    pub fn resume<T: TrainTask<B, Model = M>>(
        &mut self,
        task: &T,
        dir: &Path,
        device: &B::Device,
    ) -> Result<(), TrainError> {
        let bad = |reason: String| TrainError::Resume {
            dir: dir.to_path_buf(),
            reason,
        };
        let bytes = std::fs::read(dir.join(STATE_FILE))
            .map_err(|e| bad(format!("cannot read {STATE_FILE}: {e}")))?;
        let body = bytes
            .strip_prefix(b"SEMGEN-TRAIN1")
            .ok_or_else(|| bad(format!("{STATE_FILE} is not a semgen training state")))?;
        let parts = unpack_parts(body).ok_or_else(|| bad("truncated state file".into()))?;
        let [header, model, optim, ema]: [Vec<u8>; 4] = parts
            .try_into()
            .map_err(|_| bad("corrupt state file".into()))?;
        let header: serde_json::Value =
            serde_json::from_slice(&header).map_err(|e| bad(format!("corrupt header: {e}")))?;
        let saved = header["fingerprint"].as_str().unwrap_or_default();
        if saved != task.fingerprint() {
            return Err(bad(format!(
                "the model or data config differs from the saved run (saved: {saved})"
            )));
        }
        let step = header["step"]
            .as_u64()
            .ok_or_else(|| bad("corrupt header: no step".into()))?;
        let rec = BinBytesRecorder::<FullPrecisionSettings>::default();
        let model = Recorder::<B>::load(&rec, model, device).map_err(|e| bad(e.to_string()))?;
        let optim = Recorder::<B>::load(&rec, optim, device).map_err(|e| bad(e.to_string()))?;
        self.model = self.model.clone().load_record(model);
        self.optim =
            std::mem::replace(&mut self.optim, AdamWConfig::new().init()).load_record(optim);
        self.ema = match (self.config.ema, ema.is_empty()) {
            (Some(_), false) => {
                let r = Recorder::<B::InnerBackend>::load(&rec, ema, device)
                    .map_err(|e| bad(e.to_string()))?;
                Some(self.model.valid().load_record(r))
            }
            // EMA switched on at resume: start it from the current weights.
            (Some(_), true) => Some(self.model.valid()),
            (None, _) => None,
        };
        self.step = step;
        Ok(())
    }

    /// Trains to `config.steps`, saving every `checkpoint_every` steps, at the end, and when
    /// `stop` is raised (then returns early). Appends to `train_log.jsonl` in `dir`.
    pub fn run<T: TrainTask<B, Model = M>>(
        &mut self,
        task: &T,
        dir: &Path,
        stop: &AtomicBool,
        progress: bool,
    ) -> Result<RunSummary, TrainError> {
        let io = |reason: String| TrainError::Io {
            path: dir.join(LOG_FILE),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(|e| io(e.to_string()))?;
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(LOG_FILE))
            .map_err(|e| io(e.to_string()))?;
        let bar = if progress {
            let bar = indicatif::ProgressBar::new(self.config.steps);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.set_position(self.step);
            bar
        } else {
            indicatif::ProgressBar::hidden()
        };
        let start = Instant::now();
        let first = self.step;
        let mut window = (Instant::now(), self.step, 0.0f64, 0u64);
        let mut last_loss = f64::NAN;
        while self.step < self.config.steps {
            if stop.load(Ordering::SeqCst) {
                self.save(task, dir)?;
                bar.abandon_with_message("stopped; checkpoint saved");
                return Ok(self.summary(first, start, last_loss, true));
            }
            let lr = self.config.lr_at(self.step);
            let loss = self.train_step(task)?;
            last_loss = loss;
            window.2 += loss;
            window.3 += 1;
            bar.set_position(self.step);
            if self.step % self.config.log_every == 0 || self.step == self.config.steps {
                let secs = window.0.elapsed().as_secs_f64();
                let row = LogRow {
                    step: self.step,
                    loss: window.2 / window.3 as f64,
                    lr,
                    seconds: start.elapsed().as_secs_f64(),
                    steps_per_s: (self.step - window.1) as f64 / secs.max(1e-9),
                };
                bar.set_message(format!("loss {:.4}  lr {:.2e}", row.loss, lr));
                if bar.is_hidden() {
                    tracing::info!(step = row.step, loss = row.loss, lr, "train");
                }
                let line = serde_json::to_string(&row).map_err(|e| io(e.to_string()))?;
                writeln!(log, "{line}").map_err(|e| io(e.to_string()))?;
                window = (Instant::now(), self.step, 0.0, 0);
            }
            if self.step % self.config.checkpoint_every == 0 || self.step == self.config.steps {
                self.save(task, dir)?;
            }
        }
        bar.finish();
        Ok(self.summary(first, start, last_loss, false))
    }

    fn summary(&self, first: u64, start: Instant, last_loss: f64, stopped: bool) -> RunSummary {
        RunSummary {
            steps_run: self.step - first,
            step: self.step,
            seconds: start.elapsed().as_secs_f64(),
            last_loss,
            stopped,
        }
    }
}

/// What a call to [`Trainer::run`] did.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub steps_run: u64,
    pub step: u64,
    pub seconds: f64,
    pub last_loss: f64,
    /// True when the stop flag ended the run early.
    pub stopped: bool,
}

/// Frames byte strings as `len (u64 LE) | bytes` one after another (the run-state files).
pub fn pack_parts(parts: &[&[u8]]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for part in parts {
        bytes.extend_from_slice(&(part.len() as u64).to_le_bytes());
        bytes.extend_from_slice(part);
    }
    bytes
}

/// Inverse of [`pack_parts`]; `None` if the bytes end inside a length or a part.
pub fn unpack_parts(bytes: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut parts = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let len = u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?) as usize;
        let end = at.checked_add(8)?.checked_add(len)?;
        parts.push(bytes.get(at + 8..end)?.to_vec());
        at = end;
    }
    Some(parts)
}

/// Refuses to start a fresh run over an existing one, or to resume where there is none.
pub fn check_run_dir(dir: &Path, resume: bool) -> Result<(), TrainError> {
    let has = dir.join(STATE_FILE).is_file();
    match (resume, has) {
        (false, true) => Err(TrainError::RunExists {
            dir: dir.to_path_buf(),
        }),
        (true, false) => Err(TrainError::Resume {
            dir: dir.to_path_buf(),
            reason: format!("no {STATE_FILE} there"),
        }),
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// EMA
// ---------------------------------------------------------------------------------------------

struct Collect<B: Backend>(Vec<Tensor<B, 1>>);

impl<B: Backend> ModuleVisitor<B> for Collect<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let t = param.val();
        let n = t.shape().num_elements();
        self.0.push(t.reshape([n]));
    }
}

struct Blend<B: Backend> {
    fresh: std::vec::IntoIter<Tensor<B, 1>>,
    decay: f64,
}

impl<B: Backend> ModuleMapper<B> for Blend<B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, old, mapper) = param.consume();
        let value = match self.fresh.next() {
            Some(new) => old.clone() * self.decay + new.reshape(old.shape()) * (1.0 - self.decay),
            None => old,
        };
        Param::from_mapped_value(id, value, mapper)
    }
}

/// `ema · decay + current · (1 − decay)`, parameter by parameter (same module structure).
pub fn ema_update<B: Backend, M: Module<B>>(ema: M, current: &M, decay: f64) -> M {
    let mut collect = Collect(Vec::new());
    current.visit(&mut collect);
    ema.map(&mut Blend {
        fresh: collect.0.into_iter(),
        decay,
    })
}

/// Summed cross-entropy of several categorical attributes read from one logit vector: the last
/// axis of `logits` and `targets` holds one block of `groups[i]` classes per attribute (targets
/// one-hot, a distribution, or all zero for a row that counts for nothing). The sum runs over
/// every row and attribute; callers divide by what they average over (the encoder's attribute
/// probe by rows, stage 1's text refiner by labelled tokens).
pub fn grouped_cross_entropy_sum<B: Backend, const D: usize>(
    logits: Tensor<B, D>,
    targets: Tensor<B, D>,
    groups: &[usize],
) -> Tensor<B, 1> {
    let axis = D - 1;
    let mut total = Tensor::<B, 1>::zeros([1], &logits.device());
    let mut offset = 0;
    for &classes in groups {
        let block = logits.clone().narrow(axis, offset, classes);
        let want = targets.clone().narrow(axis, offset, classes);
        total = total - (burn::tensor::activation::log_softmax(block, axis) * want).sum();
        offset += classes;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, NdArray};
    use burn::nn::{Linear, LinearConfig};
    type TB = Autodiff<NdArray>;

    #[test]
    fn grouped_cross_entropy_sum_counts_each_labelled_row_once_per_attribute() {
        let d = Default::default();
        // Uniform logits over groups [2, 3]: a labelled row costs ln 2 + ln 3; the all-zero row
        // (a token that describes nothing) costs nothing.
        let logits = Tensor::<NdArray, 3>::zeros([2, 2, 5], &d);
        let targets = Tensor::<NdArray, 3>::from_floats(
            [
                [[1., 0., 0., 1., 0.], [0., 1., 1., 0., 0.]],
                [[0., 0., 0., 0., 0.], [1., 0., 0., 0., 1.]],
            ],
            &d,
        );
        let got = grouped_cross_entropy_sum(logits, targets.clone(), &[2, 3]).into_scalar();
        let want = 3.0 * (2f32.ln() + 3f32.ln());
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        // The blocks are read from the last axis: a confident right answer costs almost nothing.
        let right = grouped_cross_entropy_sum(targets.clone() * 30.0, targets, &[2, 3]);
        assert!(right.into_scalar() < 1e-6);
    }

    #[test]
    fn schedule_warms_up_then_decays_to_the_floor() {
        let mut c = OptimConfig::constant(100, 1e-3, 0);
        c.warmup = 10;
        c.final_lr_ratio = 0.1;
        assert!((c.lr_at(0) - 1e-4).abs() < 1e-12);
        assert!((c.lr_at(9) - 1e-3).abs() < 1e-12);
        assert!((c.lr_at(10) - 1e-3).abs() < 1e-12);
        assert!((c.lr_at(100) - 1e-4).abs() < 1e-12);
        let lrs: Vec<f64> = (10..100).map(|s| c.lr_at(s)).collect();
        assert!(lrs.windows(2).all(|w| w[1] <= w[0]));
    }

    #[test]
    fn bad_configs_are_rejected() {
        for f in [
            |c: &mut OptimConfig| c.steps = 0,
            |c: &mut OptimConfig| c.lr = 0.0,
            |c: &mut OptimConfig| c.ema = Some(1.0),
            |c: &mut OptimConfig| c.grad_clip = Some(-1.0),
            |c: &mut OptimConfig| c.checkpoint_every = 0,
        ] {
            let mut c = OptimConfig::constant(10, 1e-3, 0);
            f(&mut c);
            assert!(matches!(c.validate(), Err(TrainError::Config(_))));
        }
    }

    #[test]
    fn ema_blends_every_parameter() {
        let d = Default::default();
        // Explicit weights: Burn's default init is lazy, so a clone of an untouched module could
        // draw its weights again.
        let linear = |w: [[f32; 2]; 3]| {
            let mut l: Linear<NdArray> = LinearConfig::new(3, 2).init(&d);
            l.weight = Param::from_tensor(Tensor::from_floats(w, &d));
            l.bias = Some(Param::from_tensor(Tensor::from_floats([0.5, -0.5], &d)));
            l
        };
        let a = linear([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]);
        let b = linear([[-1.0, 0.0], [1.0, 2.0], [3.0, -4.0]]);
        let mixed = ema_update(a.clone(), &b, 0.75);
        let want = a.weight.val() * 0.75 + b.weight.val() * 0.25;
        mixed
            .weight
            .val()
            .to_data()
            .assert_approx_eq::<f32>(&want.to_data(), burn::tensor::Tolerance::absolute(1e-6));
        let _: Option<Linear<TB>> = None;
    }
}
