//! `cargo xtask train vae --config FILE.toml --out DIR [--resume] [--device D]`: trains the Wan
//! VAE on Shapes clips (`semgen_vae::train`), with periodic atomic checkpoints in DIR.
//!
//! Needs `semgen-vae.workspace = true` in xtask's dependencies.

use anyhow::{bail, Context, Result};
use semgen_core::device::DeviceSpec;
use semgen_pipeline::backend::{dispatch_autodiff, AutodiffTask};
use semgen_vae::train::{VaeTrainConfig, VaeTrainer, STATE_FILE};
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args, Debug, Clone)]
pub struct VaeTrainArgs {
    /// Training config (TOML), e.g. semgen-vae/configs/shapes-small.toml.
    #[arg(long)]
    pub config: PathBuf,
    /// Run directory: vae.safetensors and train_state.bin are written here.
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
        trainer.run(&self.args.out, |s| {
            println!(
                "step {:>6}/{total}  loss {:.5}  l1 {:.5}  mse {:.6}  kl {:.3}  anchor {:.4}  {:.1}s",
                s.step,
                s.loss,
                s.l1,
                s.mse,
                s.kl,
                s.anchor,
                start.elapsed().as_secs_f64()
            );
        })?;
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
