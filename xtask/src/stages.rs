//! `cargo xtask train refiner|semantic --config FILE.toml --out DIR [--resume] [--device D]`:
//! the two diffusion stages through the core training driver (`semgen_core::train`), with
//! Ctrl-C saving a checkpoint before exit.
//!
//! The refiner run writes `refiner.safetensors`, `compressor.safetensors` and the VAE with the
//! latent statistics it was trained on; the semantic run writes `semantic_dit.safetensors`.

use anyhow::{Context, Result};
use burn::tensor::backend::AutodiffBackend;
use semgen_core::device::DeviceSpec;
use semgen_core::train::{check_run_dir, RunSummary, Trainer};
use semgen_encoder::compressor::{Compressor, CompressorConfig};
use semgen_pipeline::backend::{dispatch_autodiff, AutodiffTask};
use semgen_pipeline::model::{load_own, COMPRESSOR_FILE};
use semgen_pipeline::train::{
    read_toml, Frozen, RefinerTask, RefinerTrainConfig, SemanticTask, SemanticTrainConfig,
};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(clap::Args, Debug, Clone)]
pub struct StageArgs {
    /// Training config (TOML), e.g. configs/shapes-small/refiner.toml.
    #[arg(long)]
    pub config: PathBuf,
    /// Run folder (checkpoints, train_state.bin, train_log.jsonl).
    #[arg(long)]
    pub out: PathBuf,
    /// Continue the run saved in --out.
    #[arg(long)]
    pub resume: bool,
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
    /// No progress bar (log lines instead).
    #[arg(long)]
    pub quiet: bool,
}

/// A flag raised by Ctrl-C (the driver saves and returns at the next step boundary).
pub fn stop_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    let _ = ctrlc::set_handler(move || {
        if f.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\ninterrupted: saving a checkpoint (Ctrl-C again to quit now)");
    });
    flag
}

#[derive(Clone, Copy)]
enum Which {
    Refiner,
    Semantic,
}

struct Job {
    which: Which,
    args: StageArgs,
}

impl AutodiffTask for Job {
    type Output = Result<()>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Result<()> {
        let args = &self.args;
        check_run_dir(&args.out, args.resume)?;
        std::fs::create_dir_all(&args.out)
            .with_context(|| format!("cannot create {}", args.out.display()))?;
        let stop = stop_flag();
        let summary = match self.which {
            Which::Refiner => {
                let config: RefinerTrainConfig = read_toml(&args.config)?;
                std::fs::write(args.out.join("config.toml"), toml::to_string(&config)?)?;
                let frozen =
                    Frozen::<B::InnerBackend>::load(&config.inputs, config.data.text_len, &device)?;
                println!("encoding the feature pool ({} clips)…", config.data.pool);
                let (task, model) = RefinerTask::<B>::new(config.clone(), &frozen, &device)?;
                let mut trainer = Trainer::new(model, config.train.clone())?;
                if args.resume {
                    trainer.resume(&task, &args.out, &device)?;
                }
                println!(
                    "training the refiner from step {} to {}",
                    trainer.step, config.train.steps
                );
                trainer.run(&task, &args.out, &stop, !args.quiet)?
            }
            Which::Semantic => {
                let config: SemanticTrainConfig = read_toml(&args.config)?;
                std::fs::write(args.out.join("config.toml"), toml::to_string(&config)?)?;
                let frozen =
                    Frozen::<B::InnerBackend>::load(&config.inputs, config.data.text_len, &device)?;
                let refiner_dir = config.inputs.refiner.clone().context(
                    "[inputs] refiner = \"RUN\" is needed: its compression MLP is frozen here",
                )?;
                let (compressor, _): (Compressor<B::InnerBackend>, CompressorConfig) =
                    load_own::<B::InnerBackend, CompressorConfig, _>(
                        &refiner_dir.join(COMPRESSOR_FILE),
                        "compressor",
                        |c| c.init(&device),
                    )?;
                println!("encoding the feature pool ({} clips)…", config.data.pool);
                for st in &config.stories {
                    println!(
                        "and the story pool ({} stories of {} segments; a story batch in {:.0} % of the steps)…",
                        st.count,
                        st.segments,
                        100.0 * st.fraction
                    );
                }
                let (task, model) =
                    SemanticTask::<B>::new(config.clone(), &frozen, &compressor, &device)?;
                println!(
                    "z_sem per-channel std of the generator's space ({}): {:?}",
                    if config.inputs.init_from.is_some() {
                        "init_from's"
                    } else {
                        "measured on the pool"
                    },
                    task.z_std()
                );
                let mut trainer = Trainer::new(model, config.train.clone())?;
                if args.resume {
                    trainer.resume(&task, &args.out, &device)?;
                }
                println!(
                    "training the semantic generator from step {} to {}",
                    trainer.step, config.train.steps
                );
                trainer.run(&task, &args.out, &stop, !args.quiet)?
            }
        };
        print_summary(&summary);
        Ok(())
    }
}

/// The last line of every `train` run on the core driver.
pub fn print_summary(summary: &RunSummary) {
    println!(
        "{} steps in {:.1}s (step {}, last loss {:.4}){}",
        summary.steps_run,
        summary.seconds,
        summary.step,
        summary.last_loss,
        if summary.stopped {
            ", stopped early"
        } else {
            ""
        }
    );
}

pub fn train_refiner(args: StageArgs) -> Result<()> {
    let device = args.device;
    dispatch_autodiff(
        device,
        Job {
            which: Which::Refiner,
            args,
        },
    )?
}

pub fn train_semantic(args: StageArgs) -> Result<()> {
    let device = args.device;
    dispatch_autodiff(
        device,
        Job {
            which: Which::Semantic,
            args,
        },
    )?
}
