//! `cargo xtask train vae --config FILE.toml --out DIR [--resume] [--device D]`: trains the Wan
//! VAE on Shapes clips (`semgen_vae::train`), with periodic atomic checkpoints in DIR.
//!
//! Needs `semgen-vae.workspace = true` in xtask's dependencies.

use anyhow::{bail, Context, Result};
use semgen_core::device::DeviceSpec;
use semgen_core::train::LOG_FILE;
use semgen_pipeline::backend::{dispatch_autodiff, AutodiffTask};
use semgen_vae::train::{VaeTrainConfig, VaeTrainer, STATE_FILE};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args, Debug, Clone)]
pub struct VaeTrainArgs {
    /// Training config (TOML), e.g. semgen-vae/configs/shapes-small.toml.
    #[arg(long)]
    pub config: PathBuf,
    /// Run directory: vae.safetensors, train_state.bin and train_log.jsonl are written here.
    #[arg(long)]
    pub out: PathBuf,
    /// Continue the run saved in --out instead of starting a new one.
    #[arg(long)]
    pub resume: bool,
    /// Device to train on: cpu, wgpu[:N], cuda[:N].
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
}

struct TrainTask {
    config: VaeTrainConfig,
    args: VaeTrainArgs,
}

impl AutodiffTask for TrainTask {
    type Output = Result<()>;
    fn run<B: burn::tensor::backend::AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let mut trainer = if self.args.resume {
            VaeTrainer::<B>::resume(self.config, &self.args.out, &device)?
        } else {
            VaeTrainer::<B>::new(self.config, &device)?
        };
        let total = trainer.config.train.steps;
        println!(
            "training wan_vae ({}) on {} from step {} to {total}, saving to {}",
            trainer.config.model.preset,
            self.args.device,
            trainer.step,
            self.args.out.display()
        );
        let start = Instant::now();
        // The same log file as the core driver's runs, one row per step with the loss terms.
        let log_path = self.args.out.join(LOG_FILE);
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open {}", log_path.display()))?;
        // One row per step, so the throughput is the inverse of the time since the last row.
        let mut last = Instant::now();
        let mut log_err = None;
        trainer.run(&self.args.out, |s| {
            let seconds = start.elapsed().as_secs_f64();
            println!(
                "step {:>6}/{total}  loss {:.5}  l1 {:.5}  mse {:.6}  kl {:.3}  anchor {:.4}  {seconds:.1}s",
                s.step, s.loss, s.l1, s.mse, s.kl, s.anchor,
            );
            let row = serde_json::json!({
                "step": s.step,
                "loss": s.loss,
                "l1": s.l1,
                "mse": s.mse,
                "kl": s.kl,
                "anchor": s.anchor,
                "seconds": seconds,
                "steps_per_s": 1.0 / last.elapsed().as_secs_f64().max(1e-9),
            });
            last = Instant::now();
            if let Err(e) = writeln!(log, "{row}") {
                log_err.get_or_insert(e);
            }
        })?;
        if let Some(e) = log_err {
            bail!("writing {}: {e}", log_path.display());
        }
        println!("done in {:.1}s", start.elapsed().as_secs_f64());
        Ok(())
    }
}

/// Runs a VAE training job.
pub fn train(args: VaeTrainArgs) -> Result<()> {
    let config = VaeTrainConfig::load(&args.config)?;
    if args.resume && !args.out.join(STATE_FILE).is_file() {
        bail!("--resume: {} has no {STATE_FILE}", args.out.display());
    }
    if !args.resume && args.out.join(STATE_FILE).is_file() {
        bail!(
            "{} already holds a run; pass --resume to continue it",
            args.out.display()
        );
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    dispatch_autodiff(
        args.device,
        TrainTask {
            config,
            args: args.clone(),
        },
    )?
}
