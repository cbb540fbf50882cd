//! `cargo xtask experiment NAME [--quick]`: the paper's claims measured at Shapes scale
//! (issue 9). Each experiment trains what it compares from scratch (under
//! `runs/experiments/stage{1,2}-<hash of the config>/`, so a run finished by one experiment
//! serves every other that needs the same config), assembles model folders under
//! `runs/experiments/NAME/`,
//! evaluates it on held-out prompts, and writes `docs/results/NAME.csv` (every measured row),
//! `NAME.png` (the plot) and `NAME.md` (the table quoted in docs/results.md).
//!
//! Every arm starts from the same frozen VAE, semantic encoder and text encoder (those of
//! `--model`, the shipped model by default) and the same feature pool (cached under
//! `runs/experiments/pool-cache`), with the shipped stage configs
//! (`configs/shapes-small/*.toml`, stage 2 with the object cells of its loss weighted
//! `--object-weight`, 5 as in the shipped fine-tune) and only the compared setting changed.
//! `--quick` shrinks the pool, the steps and the prompts so that each experiment finishes on
//! the 2-core CPU within 30 minutes; the full preset is meant for a GPU.
//!
//! Quality is measured by the Shapes oracle (colour, motion, shape, background hit rates on the
//! prompts) and by a Fréchet distance between generated and real clips in the space of the
//! frozen semantic encoder's pooled features (FVD-style; semgen's encoder stands in for I3D).
//! The VBench-style metrics of the long-video experiment use the same encoder per frame for
//! subject consistency and colour histograms for background consistency.

use anyhow::{bail, Context, Result};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use semgen_core::device::DeviceSpec;
use semgen_core::train::{TrainTask, Trainer};
use semgen_data::{videos_to_tensor, Clip, ShapesWorld, Split, Video, WorldConfig};
use semgen_encoder::compressor::{Compressor, CompressorConfig};
use semgen_encoder::train::pool_grid;
use semgen_eval::metrics::{frechet_distance, MetricSuite};
use semgen_eval::oracle::HitRates;
use semgen_eval::{FrameFeatures, MetricError};
use semgen_pipeline::backend::{dispatch_autodiff, AutodiffTask};
use semgen_pipeline::model::{
    load_own, SemanticEncoder, SemgenModel, COMPRESSOR_FILE, ENCODER_FILE, REFINER_FILE,
    SEMANTIC_FILE, SETTINGS_FILE, TEXT_FILE, TOKENIZER_FILE, VAE_FILE,
};
use semgen_pipeline::pipeline::GenerateRequest;
use semgen_pipeline::train::{
    read_toml, FeaturePool, Frozen, RefinerModel, RefinerTask, RefinerTrainConfig, SemanticSource,
    SemanticTask, SemanticTrainConfig,
};
use std::cell::RefCell;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Experiment {
    /// Paper Fig. 9: stage 1 in compressed semantic space vs compressed VAE space.
    Convergence,
    /// Paper Table 3: the MLP's output width (no compression, 16, 8).
    Compression,
    /// Stage 2 trained with and without noise on z_sem, evaluated on generated z_sem.
    NoiseAug,
    /// Paper Table 2: SemanticGen vs Base-CT-Swin on 8- and 16-segment stories, ΔM_drift.
    LongVideo,
    /// Paper Fig. 14: a one-frame background flash between the sparse semantic samples.
    LowFps,
}

impl Experiment {
    fn name(self) -> &'static str {
        match self {
            Self::Convergence => "convergence",
            Self::Compression => "compression",
            Self::NoiseAug => "noise-aug",
            Self::LongVideo => "long-video",
            Self::LowFps => "low-fps",
        }
    }
}

/// The model whose frozen VAE and encoders the experiments' figures were measured on (v1).
const V1_MODEL: &str = "checkpoints/shapes-small-v1";

#[derive(clap::Args, Debug, Clone)]
pub struct ExperimentArgs {
    pub name: Experiment,
    /// The preset that fits the 2-core CPU (≤ 30 min each); without it, the GPU-sized preset.
    #[arg(long)]
    pub quick: bool,
    /// Model folder whose VAE, semantic encoder and text encoder every arm starts from (and
    /// the model `low-fps` probes). The figures in docs/results.md were measured on v1's
    /// (session 3's encoder); `--model checkpoints/shapes-small` runs them on the
    /// shipped model's (v3, whose encoders are v2's).
    #[arg(long, default_value = V1_MODEL)]
    pub model: PathBuf,
    /// Folder of the stage configs the arms start from.
    #[arg(long, default_value = "configs/shapes-small")]
    pub configs: PathBuf,
    /// Where the CSV, PNG and Markdown go.
    #[arg(long, default_value = "docs/results")]
    pub out: PathBuf,
    /// Where the training runs go.
    #[arg(long, default_value = "runs/experiments")]
    pub runs: PathBuf,
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
    /// Stage 2's loss weight on the latent cells that hold an object (`[model] object_weight`;
    /// 5 as in the shipped fine-tune, configs/shapes-small/refiner-objects.toml). 1 = the
    /// plain mean, which the runs before session 9 used: stage 2 then rendered no objects at
    /// the quick size.
    #[arg(long, default_value_t = 5.0)]
    pub object_weight: f64,
    /// Training runs trained at once, each in a process of its own with cores/jobs compute
    /// threads (stage 2 by `xtask train refiner`, stage 1 by this command in a child mode), a
    /// stage-1 run starting as soon as the stage-2 run it generates for is done. One training
    /// process keeps little more than one of the 2-core CPU's cores busy, so `--jobs 2`
    /// nearly halves an experiment's training time there; on a GPU leave it at 1.
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Child mode of `--jobs`: train only the stage-1 run of this config to `--milestones`
    /// (exports and markers as [`Ctx::semantic`] writes them), then exit.
    #[arg(long, hide = true)]
    pub stage1: Option<PathBuf>,
    #[arg(long, hide = true, value_delimiter = ',')]
    pub milestones: Vec<u64>,
}

/// Sizes of one preset.
#[derive(Debug, Clone)]
struct Preset {
    /// Training clips in the feature pool.
    pool: usize,
    refiner_steps: u64,
    semantic_steps: u64,
    /// Stage-1 steps at which `convergence` evaluates.
    milestones: Vec<u64>,
    /// Held-out prompts per evaluation.
    prompts: u64,
    /// Euler steps per stage when sampling.
    sample_steps: usize,
    /// Stories per length in `long-video`.
    stories: u64,
}

impl Preset {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                pool: 256,
                refiner_steps: 400,
                semantic_steps: 400,
                milestones: vec![50, 100, 200, 400],
                prompts: 24,
                sample_steps: 10,
                stories: 2,
            }
        } else {
            Self {
                pool: 1024,
                refiner_steps: 2000,
                semantic_steps: 2000,
                milestones: vec![125, 250, 500, 1000, 2000],
                prompts: 100,
                sample_steps: 20,
                stories: 8,
            }
        }
    }
}

pub fn run(args: ExperimentArgs) -> Result<()> {
    let device = args.device;
    dispatch_autodiff(device, Job(args))?
}

struct Job(ExperimentArgs);

impl AutodiffTask for Job {
    type Output = Result<()>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Result<()> {
        let ctx = Ctx::<B>::new(self.0, device)?;
        if let Some(config) = &ctx.args.stage1 {
            let config: SemanticTrainConfig = read_toml(config)?;
            ctx.semantic(&config, &ctx.args.milestones, &mut |_, _, _| Ok(()))?;
            return Ok(());
        }
        let start = Instant::now();
        let out = match ctx.args.name {
            Experiment::Convergence => convergence(&ctx)?,
            Experiment::Compression => compression(&ctx)?,
            Experiment::NoiseAug => noise_aug(&ctx)?,
            Experiment::LongVideo => long_video(&ctx)?,
            Experiment::LowFps => low_fps(&ctx)?,
        };
        ctx.write(out, start.elapsed().as_secs_f64())
    }
}

/// What an experiment hands back to be written.
struct Output {
    /// CSV header and rows.
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
    /// Markdown: the table(s) and the numbers the reading needs.
    markdown: String,
}

// ---------------------------------------------------------------------------------------------
// Shared machinery: configs, training, assembling, evaluating
// ---------------------------------------------------------------------------------------------

struct Ctx<B: AutodiffBackend> {
    args: ExperimentArgs,
    preset: Preset,
    device: B::Device,
    dir: PathBuf,
    refiner_base: RefinerTrainConfig,
    semantic_base: SemanticTrainConfig,
    /// Frozen models per semantic source (the VAE-sourced pool differs).
    frozen: Frozen<B::InnerBackend>,
    world: ShapesWorld,
    /// The training runs this invocation used, once each: what it trained, and what it reused
    /// with the time that took when it was made (so `write` can say what the experiment costs
    /// from an empty run store).
    ledger: RefCell<Vec<RunTime>>,
}

/// One training run an experiment needed.
struct RunTime {
    dir: PathBuf,
    reused: bool,
    /// Training seconds (for a reused run, as recorded when it was made; None if not recorded).
    seconds: Option<f64>,
}

/// A training run [`Ctx::prefetch`] makes in a child process.
struct Fetch {
    dir: PathBuf,
    /// The config's TOML (written to `config.toml` in `dir` for the child).
    text: String,
    /// The run that must finish first (the stage-2 run a stage-1 run generates for).
    after: Option<PathBuf>,
    /// Stage 1: its last milestone (whose folder holds the training time); stage 2: None.
    last: Option<u64>,
    /// The child's arguments.
    args: Vec<OsString>,
}

/// The first run of `todo` that may start: one whose prerequisite is neither waiting in `todo`
/// nor among the `running` runs.
fn next_ready(todo: &[Fetch], running: &[&Path]) -> Option<usize> {
    let busy = |d: &Path| todo.iter().any(|f| f.dir == d) || running.contains(&d);
    todo.iter()
        .position(|f| f.after.as_deref().is_none_or(|a| !busy(a)))
}

/// The file in a run folder (stage 2) or milestone folder (stage 1) holding the training time.
const SECONDS_FILE: &str = "seconds";

/// Whether the `done.toml` at `marker` holds exactly this config text (a finished run of it).
fn finished(marker: &Path, text: &str) -> bool {
    std::fs::read_to_string(marker).ok().as_deref() == Some(text)
}

/// The export folder of stage-1 run `dir` at milestone `m`.
fn step_dir(dir: &Path, m: u64) -> PathBuf {
    dir.join(format!("step-{m}"))
}

/// Whether stage-1 run `dir` of this config text has every one of `milestones` exported.
fn milestones_done(dir: &Path, milestones: &[u64], text: &str) -> bool {
    milestones
        .iter()
        .all(|&m| finished(&step_dir(dir, m).join("done.toml"), text))
}

fn read_seconds(dir: &Path) -> Option<f64> {
    std::fs::read_to_string(dir.join(SECONDS_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()
}

impl<B: AutodiffBackend> Ctx<B> {
    fn new(args: ExperimentArgs, device: B::Device) -> Result<Self> {
        let preset = Preset::new(args.quick);
        let dir = args.runs.join(args.name.name());
        // Both up front: the plot is drawn into `--out` before the tables are written there,
        // and a missing folder must not cost a finished experiment.
        for d in [&dir, &args.out] {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        let mut refiner_base: RefinerTrainConfig = read_toml(&args.configs.join("refiner.toml"))?;
        let mut semantic_base: SemanticTrainConfig =
            read_toml(&args.configs.join("semantic.toml"))?;
        for inputs in [&mut refiner_base.inputs, &mut semantic_base.inputs] {
            inputs.vae = args.model.join(VAE_FILE);
            inputs.encoder = args.model.clone();
            inputs.pool_cache = Some(args.runs.join("pool-cache"));
        }
        for (data, train) in [
            (&mut refiner_base.data, &mut refiner_base.train),
            (&mut semantic_base.data, &mut semantic_base.train),
        ] {
            data.pool = preset.pool;
            train.warmup = train.warmup.min(preset.milestones[0]);
        }
        refiner_base.train.steps = preset.refiner_steps;
        refiner_base.model.object_weight = args.object_weight;
        semantic_base.train.steps = preset.semantic_steps;
        // Only the final export matters (stage 1 exports at its milestones itself).
        refiner_base.train.checkpoint_every = preset.refiner_steps;
        semantic_base.train.checkpoint_every = preset.semantic_steps;
        // Stage 1 is evaluated at milestones along one schedule: the raw weights, so that an
        // early milestone is not mostly the EMA's initial weights.
        semantic_base.train.ema = None;
        let frozen = Frozen::<B::InnerBackend>::load(
            &refiner_base.inputs,
            refiner_base.data.text_len,
            &device,
        )
        .with_context(|| format!("loading the frozen models of {}", args.model.display()))?;
        Ok(Self {
            args,
            preset,
            device,
            dir,
            refiner_base,
            semantic_base,
            frozen,
            world: ShapesWorld::new(WorldConfig::default())?,
            ledger: RefCell::new(Vec::new()),
        })
    }

    /// Trains stage 2 (refiner + MLP) unless a finished run of this exact config exists, and
    /// returns its folder: `runs/experiments/stage2-<key>`, the key being 12 hex digits of the
    /// SHA-256 of the config's TOML (`done.toml` in the folder), so experiments share the arms
    /// they have in common (the shipped recipe is an arm of several).
    fn refiner(&self, config: &RefinerTrainConfig) -> Result<PathBuf> {
        let text = toml::to_string(config)?;
        let dir = self.refiner_dir(&text);
        let dir = dir.as_path();
        if finished(&dir.join("done.toml"), &text) {
            // A run prefetched by this invocation is in the ledger already, as trained here.
            if self.record(dir, true, read_seconds(dir)) {
                println!("reusing {}", dir.display());
            }
            return Ok(dir.to_path_buf());
        }
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
        println!(
            "training stage 2 into {} ({} steps)",
            dir.display(),
            config.train.steps
        );
        let (task, model) = RefinerTask::<B>::new(config.clone(), &self.frozen, &self.device)?;
        let mut trainer = Trainer::new(model, config.train.clone())?;
        let s = trainer.run(&task, dir, &AtomicBool::new(false), false)?;
        println!(
            "  {} steps in {:.0} s, last loss {:.4}",
            s.steps_run, s.seconds, s.last_loss
        );
        self.finish_refiner(dir, &text, s.seconds)?;
        Ok(dir.to_path_buf())
    }

    /// Adds a run to the ledger unless it is there already; whether it was added.
    fn record(&self, dir: &Path, reused: bool, seconds: Option<f64>) -> bool {
        let mut ledger = self.ledger.borrow_mut();
        if ledger.iter().any(|r| r.dir == dir) {
            return false;
        }
        ledger.push(RunTime {
            dir: dir.to_path_buf(),
            reused,
            seconds,
        });
        true
    }

    /// Marks a stage-2 run trained here as finished: its training time, the ledger, and last
    /// the `done.toml` that lets later experiments reuse it.
    fn finish_refiner(&self, dir: &Path, text: &str, seconds: f64) -> Result<()> {
        std::fs::write(dir.join(SECONDS_FILE), format!("{seconds}"))?;
        self.record(dir, false, Some(seconds));
        std::fs::write(dir.join("done.toml"), text)?;
        Ok(())
    }

    fn refiner_dir(&self, config_text: &str) -> PathBuf {
        self.args.runs.join(format!("stage2-{}", key(config_text)))
    }

    fn semantic_dir(&self, config_text: &str) -> PathBuf {
        self.args.runs.join(format!("stage1-{}", key(config_text)))
    }

    /// Stage 1's config for the stage-2 run of `stage2`: the base recipe generating that run's
    /// `z_sem` (its MLP, its semantic source).
    fn stage1_config(&self, stage2: &RefinerTrainConfig) -> Result<SemanticTrainConfig> {
        let mut s = self.semantic_base.clone();
        s.data.semantic_source = stage2.data.semantic_source;
        s.inputs.refiner = Some(self.refiner_dir(&toml::to_string(stage2)?));
        Ok(s)
    }

    /// With `--jobs N` > 1: trains the runs of `stage2` and `stage1` (each with the
    /// milestones it is evaluated at) that are not finished yet, N at a time, each in a process
    /// of its own (output in the run's `train.out`), so that [`Ctx::refiner`] and
    /// [`Ctx::semantic`] then find them done. A stage-1 run starts once the stage-2 run it
    /// generates for has finished. The shared feature pools are built here first, once, rather
    /// than by every process. A process gets cores/N compute threads, so a run trained this way
    /// can differ from one trained in-process in the last bits (the thread count changes how
    /// sums are split).
    fn prefetch(
        &self,
        stage2: &[RefinerTrainConfig],
        stage1: &[(SemanticTrainConfig, &[u64])],
    ) -> Result<()> {
        let jobs = self.args.jobs.max(1);
        if jobs == 1 {
            return Ok(());
        }
        let exe = std::env::current_exe().context("finding the xtask binary")?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = (cores / jobs).max(1);
        // Built (or found) here once, so that the children only read it.
        let pool = |inputs, data, with_latents| {
            FeaturePool::cached(&self.frozen, inputs, data, Split::Train, with_latents)
        };
        let mut todo: Vec<Fetch> = Vec::new();
        for config in stage2 {
            let text = toml::to_string(config)?;
            let dir = self.refiner_dir(&text);
            if finished(&dir.join("done.toml"), &text) || todo.iter().any(|f| f.dir == dir) {
                continue;
            }
            pool(&config.inputs, &config.data, true)?;
            let mut args: Vec<OsString> = ["train", "refiner", "--quiet", "--config"]
                .map(OsString::from)
                .into();
            args.push(dir.join("config.toml").into());
            args.extend(["--out".into(), dir.clone().into()]);
            args.extend(["--device".into(), self.args.device.to_string().into()]);
            todo.push(Fetch {
                dir,
                text,
                after: None,
                last: None,
                args,
            });
        }
        for (config, milestones) in stage1 {
            let text = toml::to_string(config)?;
            let dir = self.semantic_dir(&text);
            let Some(&last) = milestones.iter().max() else {
                continue;
            };
            if milestones_done(&dir, milestones, &text) || todo.iter().any(|f| f.dir == dir) {
                continue;
            }
            let after = config.inputs.refiner.clone();
            // A stage-2 run neither done nor being made here is left to the in-process path.
            let waits = after
                .as_ref()
                .is_some_and(|a| todo.iter().any(|f| f.dir == *a));
            let ready = after.as_ref().is_some_and(|a| a.join("done.toml").exists());
            if !waits && !ready {
                continue;
            }
            pool(&config.inputs, &config.data, false)?;
            let a = &self.args;
            let mut args: Vec<OsString> = vec!["experiment".into(), a.name.name().into()];
            args.extend(["--stage1".into(), dir.join("config.toml").into()]);
            let list: Vec<String> = milestones.iter().map(u64::to_string).collect();
            args.extend(["--milestones".into(), list.join(",").into()]);
            for (flag, value) in [
                ("--model", &a.model),
                ("--configs", &a.configs),
                ("--out", &a.out),
                ("--runs", &a.runs),
            ] {
                args.extend([flag.into(), value.clone().into()]);
            }
            args.extend(["--device".into(), a.device.to_string().into()]);
            args.extend(["--object-weight".into(), a.object_weight.to_string().into()]);
            if a.quick {
                args.push("--quick".into());
            }
            todo.push(Fetch {
                dir,
                text,
                after: if waits { after } else { None },
                last: Some(last),
                args,
            });
        }
        let mut running: Vec<(Fetch, Instant, std::process::Child)> = Vec::new();
        let mut failed: Option<String> = None;
        loop {
            // Start what may start; after a failure only wait for the running ones.
            while failed.is_none() && running.len() < jobs {
                let started: Vec<&Path> = running.iter().map(|r| r.0.dir.as_path()).collect();
                let Some(i) = next_ready(&todo, &started) else {
                    break;
                };
                let fetch = todo.remove(i);
                let _ = std::fs::remove_dir_all(&fetch.dir);
                std::fs::create_dir_all(&fetch.dir)?;
                std::fs::write(fetch.dir.join("config.toml"), &fetch.text)?;
                let out = std::fs::File::create(fetch.dir.join("train.out"))?;
                println!(
                    "training {} in a process of its own ({threads} threads)",
                    fetch.dir.display()
                );
                let child = std::process::Command::new(&exe)
                    .args(&fetch.args)
                    .env("RAYON_NUM_THREADS", threads.to_string())
                    .stdout(out.try_clone()?)
                    .stderr(out)
                    .spawn()
                    .with_context(|| format!("starting {}", exe.display()))?;
                running.push((fetch, Instant::now(), child));
            }
            if running.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
            let mut i = 0;
            while i < running.len() {
                let Some(status) = running[i].2.try_wait()? else {
                    i += 1;
                    continue;
                };
                let (fetch, start, _) = running.remove(i);
                if !status.success() {
                    failed.get_or_insert(format!(
                        "training {} failed ({status}); its output is in {}",
                        fetch.dir.display(),
                        fetch.dir.join("train.out").display()
                    ));
                    continue;
                }
                let seconds = start.elapsed().as_secs_f64();
                println!("  {} trained in {seconds:.0} s", fetch.dir.display());
                match fetch.last {
                    None => self.finish_refiner(&fetch.dir, &fetch.text, seconds)?,
                    // Stage 1 wrote its own training time at each milestone.
                    Some(last) => {
                        let seconds = read_seconds(&step_dir(&fetch.dir, last));
                        self.record(&fetch.dir, false, seconds);
                    }
                }
            }
        }
        match failed {
            Some(message) => bail!(message),
            None => Ok(()),
        }
    }

    /// [`Ctx::prefetch`] of two-stage arms: each stage-2 config with its stage 1 (trained to
    /// `milestones`).
    fn prefetch_arms(&self, stage2: &[RefinerTrainConfig], milestones: &[u64]) -> Result<()> {
        let stage1 = stage2
            .iter()
            .map(|c| Ok((self.stage1_config(c)?, milestones)))
            .collect::<Result<Vec<_>>>()?;
        self.prefetch(stage2, &stage1)
    }

    /// Stage 2's config with `edit` applied to the base recipe.
    fn refiner_config(&self, edit: &dyn Fn(&mut RefinerTrainConfig)) -> RefinerTrainConfig {
        let mut r = self.refiner_base.clone();
        edit(&mut r);
        r
    }

    /// Trains stage 1 on the MLP of `config.inputs.refiner`, exporting the raw weights into
    /// `runs/experiments/stage1-<key>/step-M` (key as for [`Ctx::refiner`]) at each milestone
    /// `M` and calling `at(M, that folder, mean loss since the last milestone)`. When every
    /// milestone is already there (a `done.toml` of this config in each), nothing is trained.
    /// Milestones do not change the training (one schedule of `config.train.steps`), so runs
    /// with other milestones share the folder.
    fn semantic(
        &self,
        config: &SemanticTrainConfig,
        milestones: &[u64],
        at: &mut dyn FnMut(u64, &Path, f64) -> Result<()>,
    ) -> Result<PathBuf> {
        let text = toml::to_string(config)?;
        let dir = self.semantic_dir(&text);
        let dir = dir.as_path();
        if milestones_done(dir, milestones, &text) {
            let last = milestones.iter().max().map(|&m| step_dir(dir, m));
            // A run prefetched by this invocation is in the ledger already, as trained here.
            if self.record(dir, true, last.and_then(|d| read_seconds(&d))) {
                println!("reusing {}", dir.display());
            }
            for &m in milestones {
                let loss = std::fs::read_to_string(step_dir(dir, m).join("loss"))?
                    .trim()
                    .parse()?;
                at(m, &step_dir(dir, m), loss)?;
            }
            return Ok(dir.to_path_buf());
        }
        // Stale milestones go; the folder stays, as a prefetching parent wrote this child's
        // config.toml and train.out there.
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with("step-") {
                    std::fs::remove_dir_all(e.path())?;
                }
            }
        }
        let refiner_dir = config
            .inputs
            .refiner
            .clone()
            .context("stage 1 needs the refiner run whose MLP it generates for")?;
        let inner = self.device.clone();
        let (compressor, _): (Compressor<B::InnerBackend>, CompressorConfig) =
            load_own::<B::InnerBackend, CompressorConfig, _>(
                &refiner_dir.join(COMPRESSOR_FILE),
                "compressor",
                |c| c.init(&inner),
            )?;
        println!(
            "training stage 1 into {} ({} steps)",
            dir.display(),
            config.train.steps
        );
        let (task, model) =
            SemanticTask::<B>::new(config.clone(), &self.frozen, &compressor, &self.device)?;
        let mut trainer = Trainer::new(model, config.train.clone())?;
        let start = Instant::now();
        // Evaluating at a milestone (`at`) is not training time.
        let mut training = 0.0;
        for &m in milestones {
            let lap = Instant::now();
            let (mut sum, mut n) = (0.0, 0u64);
            while trainer.step < m {
                sum += trainer.train_step(&task)?;
                n += 1;
            }
            let export = step_dir(dir, m);
            std::fs::create_dir_all(&export)?;
            task.export(&trainer.export_weights(), &export, m)?;
            training += lap.elapsed().as_secs_f64();
            std::fs::write(export.join(SECONDS_FILE), format!("{training}"))?;
            let loss = sum / n.max(1) as f64;
            println!(
                "  step {m}: loss {loss:.4} ({:.0} s)",
                start.elapsed().as_secs_f64()
            );
            std::fs::write(export.join("loss"), format!("{loss}"))?;
            std::fs::write(export.join("done.toml"), &text)?;
            at(m, &export, loss)?;
        }
        self.record(dir, false, Some(training));
        Ok(dir.to_path_buf())
    }

    /// A loadable model folder from a refiner run and (unless a baseline) a stage-1 export,
    /// with the frozen encoders of `--model`.
    fn assemble(&self, refiner: &Path, semantic: Option<&Path>, out: &Path) -> Result<PathBuf> {
        self.assemble_from(refiner, semantic, out, SemanticSource::Encoder)
    }

    fn assemble_from(
        &self,
        refiner: &Path,
        semantic: Option<&Path>,
        out: &Path,
        source: SemanticSource,
    ) -> Result<PathBuf> {
        std::fs::create_dir_all(out)?;
        let copy = |from: &Path, name: &str| -> Result<()> {
            std::fs::copy(from.join(name), out.join(name))
                .with_context(|| format!("copying {}", from.join(name).display()))?;
            Ok(())
        };
        for name in [VAE_FILE, REFINER_FILE, COMPRESSOR_FILE] {
            copy(refiner, name)?;
        }
        for name in [ENCODER_FILE, TEXT_FILE, TOKENIZER_FILE] {
            copy(&self.args.model, name)?;
        }
        let _ = std::fs::remove_file(out.join(SEMANTIC_FILE));
        if let Some(s) = semantic {
            copy(s, SEMANTIC_FILE)?;
        }
        let mut settings: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
            self.args.model.join(SETTINGS_FILE),
        )?)?;
        if let Some(o) = settings.as_object_mut() {
            o.remove("semantic_source");
            if !source.is_encoder() {
                o.insert("semantic_source".into(), serde_json::to_value(source)?);
            }
            o.insert(
                "provenance".into(),
                serde_json::json!({"experiment": self.args.name.name(), "refiner_run": refiner, "semantic_run": semantic}),
            );
        }
        std::fs::write(
            out.join(SETTINGS_FILE),
            serde_json::to_string_pretty(&settings)?,
        )?;
        Ok(out.to_path_buf())
    }

    fn load(&self, dir: &Path) -> Result<SemgenModel<B::InnerBackend>> {
        let inner = self.device.clone();
        SemgenModel::load(dir, &inner).with_context(|| format!("loading {}", dir.display()))
    }

    /// Samples the held-out prompts `0..count` (stories of `segments` when > 1), conditioned
    /// on stage 1's `z_sem` (or, with `real`, on the real clip's), and decodes them.
    fn sample(
        &self,
        model: &SemgenModel<B::InnerBackend>,
        count: u64,
        segments: usize,
        real: bool,
    ) -> Result<Vec<(Clip, Video)>> {
        let source = if real { "real" } else { "generated" };
        (0..count)
            .map(|i| {
                crate::eval::sample_test_clip(
                    model,
                    &self.world,
                    semgen_data::Split::Test,
                    i,
                    segments,
                    source,
                    Some(self.preset.sample_steps),
                    i,
                )
                .map(|(clip, video, _)| (clip, video))
            })
            .collect()
    }

    /// The pool's real `z_sem` tokens in stage 1's standardised space (one 8-d sample per token).
    fn real_z_tokens(&self, config: &SemanticTrainConfig) -> Result<Vec<Vec<f32>>> {
        let refiner_dir = config
            .inputs
            .refiner
            .clone()
            .context("stage 1 needs a refiner")?;
        let (compressor, _): (Compressor<B::InnerBackend>, CompressorConfig) =
            load_own::<B::InnerBackend, CompressorConfig, _>(
                &refiner_dir.join(COMPRESSOR_FILE),
                "compressor",
                |c| c.init(&self.device),
            )?;
        let (task, _) =
            SemanticTask::<B>::new(config.clone(), &self.frozen, &compressor, &self.device)?;
        Ok(crate::eval::token_rows(task.z_sem()))
    }

    /// Stage 1's samples for held-out prompts `0..count`, in its standardised space, as tokens.
    fn planned_tokens(
        &self,
        model: &SemgenModel<B::InnerBackend>,
        count: u64,
    ) -> Result<Vec<Vec<f32>>> {
        let semantic = model.semantic.as_ref().context("no stage 1")?;
        let mut out = Vec::new();
        for i in 0..count {
            let clip = self.world.clip(Split::Test, i)?;
            let mut req = GenerateRequest::defaults(model, vec![clip.caption()], i);
            req.semantic.steps = self.preset.sample_steps;
            let z = model.plan(&req, &mut |_, _| {})?;
            out.extend(crate::eval::token_rows(semantic.config.to_model_space(z)));
        }
        Ok(out)
    }

    /// Oracle hit rates and the Fréchet distance to the real clips in encoder space.
    fn score(
        &self,
        model: &SemgenModel<B::InnerBackend>,
        clips: &[(Clip, Video)],
    ) -> Result<Score> {
        let mut hits = Vec::new();
        let (mut fake, mut real) = (Vec::new(), Vec::new());
        for (clip, video) in clips {
            hits.push(semgen_eval::evaluate(video, &clip.prompt())?.hits);
            fake.push(clip_feature(&model.encoder, video, &self.device)?);
            real.push(clip_feature(&model.encoder, &clip.video, &self.device)?);
        }
        Ok(Score {
            hits: HitRates::mean(&hits),
            fd: frechet_distance(&fake, &real)?,
        })
    }

    fn write(&self, out: Output, seconds: f64) -> Result<()> {
        let name = self.args.name.name();
        std::fs::create_dir_all(&self.args.out)?;
        let mut csv = out.header.join(",");
        csv.push('\n');
        for row in &out.rows {
            csv.push_str(&row.join(","));
            csv.push('\n');
        }
        let csv_path = self.args.out.join(format!("{name}.csv"));
        semgen_core::checkpoint::write_atomic(&csv_path, csv.as_bytes())?;
        let mut md = String::new();
        let mut command = format!("cargo xtask experiment {name}");
        if self.args.quick {
            command += " --quick";
        }
        if self.args.model != Path::new(V1_MODEL) {
            command += &format!(" --model {}", self.args.model.display());
        }
        if self.args.object_weight != 5.0 {
            command += &format!(" --object-weight {}", self.args.object_weight);
        }
        if self.args.jobs > 1 {
            command += &format!(" --jobs {}", self.args.jobs);
        }
        writeln!(
            md,
            "Command: `{command}` ({}, {:.1} min on {}).",
            self.args.device,
            seconds / 60.0,
            hardware()
        )?;
        writeln!(md)?;
        writeln!(md, "{}", self.cost(seconds))?;
        writeln!(md)?;
        md.push_str(&out.markdown);
        semgen_core::checkpoint::write_atomic(
            &self.args.out.join(format!("{name}.md")),
            md.as_bytes(),
        )?;
        println!("{md}");
        println!(
            "wrote {} and {name}.png, {name}.md beside it",
            csv_path.display()
        );
        Ok(())
    }

    /// What the runs cost: trained here, reused, and so the wall time from an empty run store.
    fn cost(&self, seconds: f64) -> String {
        cost_line(&self.ledger.borrow(), seconds)
    }

    fn png(&self) -> PathBuf {
        self.args.out.join(format!("{}.png", self.args.name.name()))
    }
}

/// The sentence under an experiment's command: the runs it trained, those it reused (with the
/// time they took when made) and so what the experiment costs from an empty run store.
fn cost_line(ledger: &[RunTime], seconds: f64) -> String {
    if ledger.is_empty() {
        return "No training runs.".into();
    }
    let trained: Vec<f64> = ledger
        .iter()
        .filter(|r| !r.reused)
        .filter_map(|r| r.seconds)
        .collect();
    let reused: Vec<&RunTime> = ledger.iter().filter(|r| r.reused).collect();
    let mut line = format!(
        "Training runs: {} trained here ({:.1} min of training summed over the runs; with \
         `--jobs` some ran side by side)",
        trained.len(),
        // A fold from +0: the empty `sum` of floats is −0, printed "-0.0".
        trained.iter().fold(0.0, |a, b| a + b) / 60.0
    );
    if reused.is_empty() {
        line += ", none reused.";
        return line;
    }
    let known: Vec<f64> = reused.iter().filter_map(|r| r.seconds).collect();
    line += &format!(", {} reused from earlier experiments", reused.len());
    if known.len() == reused.len() {
        let made = known.iter().sum::<f64>();
        line += &format!(
            " (they took {:.1} min to train), so at most {:.1} min from an empty run store.",
            made / 60.0,
            (seconds + made) / 60.0
        );
    } else {
        line += " (their training time was not recorded).";
    }
    line
}

/// 12 hex digits of the SHA-256 of a run's config text.
fn key(text: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(text.as_bytes())[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[derive(Debug, Clone, Copy)]
struct Score {
    hits: HitRates,
    fd: f64,
}

impl Score {
    fn mean_hits(&self) -> f64 {
        let h = &self.hits;
        (h.colour + h.motion + h.shape + h.background) / 4.0
    }
    fn cells(&self) -> Vec<String> {
        let h = &self.hits;
        [
            h.colour,
            h.motion,
            h.shape,
            h.background,
            self.mean_hits(),
            self.fd,
        ]
        .iter()
        .map(|v| format!("{v:.4}"))
        .collect()
    }
}

const SCORE_HEADER: [&str; 6] = ["colour", "motion", "shape", "background", "mean_hits", "fd"];

fn hardware() -> String {
    let cpu = xtask::suite::cpu_model();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores of {cpu}")
}

/// The encoder's pooled features of a clip (the FVD-style feature).
fn clip_feature<B: Backend>(
    enc: &SemanticEncoder<B>,
    video: &Video,
    device: &B::Device,
) -> Result<Vec<f32>> {
    let x = videos_to_tensor(&[video.clone()], device)?;
    let pooled = pool_grid(enc.features(x)?);
    Ok(pooled.into_data().to_vec::<f32>().unwrap_or_default())
}

/// Per-frame features from the semantic encoder (each frame as a still image), for the
/// VBench-style consistency metrics.
struct EncoderFrames<'a, B: Backend> {
    enc: &'a SemanticEncoder<B>,
    device: B::Device,
}

impl<B: Backend> FrameFeatures for EncoderFrames<'_, B> {
    fn name(&self) -> String {
        "semgen semantic encoder (pooled, per frame)".into()
    }
    fn features(&self, video: &Video) -> semgen_eval::metrics::Result<Vec<Vec<f32>>> {
        let err = |e: String| MetricError::Extractor {
            name: self.name(),
            message: e,
        };
        let device = &self.device;
        // Each frame as a still: repeated to the encoder's temporal patch of 2, as upstream
        // does for images.
        let frames: Vec<Video> = (0..video.frames())
            .map(|t| video.select(&[t, t]))
            .collect::<Result<_, _>>()
            .map_err(|e| err(e.to_string()))?;
        let mut out = Vec::with_capacity(frames.len());
        for chunk in frames.chunks(64) {
            let x = videos_to_tensor(chunk, device).map_err(|e| err(e.to_string()))?;
            let grid = self
                .enc
                .vision
                .encode_clip(x)
                .map_err(|e| err(e.to_string()))?;
            let pooled = pool_grid(grid.features);
            let d = pooled.dims()[1];
            let values = pooled.into_data().to_vec::<f32>().unwrap_or_default();
            out.extend(values.chunks(d).map(<[f32]>::to_vec));
        }
        Ok(out)
    }
}

fn cells(values: &[f64]) -> Vec<String> {
    values.iter().map(|v| format!("{v:.4}")).collect()
}

// ---------------------------------------------------------------------------------------------
// The experiments
// ---------------------------------------------------------------------------------------------

/// Paper Fig. 9 (§3.4 b): the same stage-2 recipe and the same small stage-1 DiT, trained from
/// scratch for equal steps, once with the semantic encoder's features and once with the VAE's
/// latents on the same token grid (both compressed by the MLP to 8 dims, so stage 1 sees the
/// same token count and width). Quality vs stage-1 steps.
fn convergence<B: AutodiffBackend>(ctx: &Ctx<B>) -> Result<Output> {
    let arms = [
        ("semantic", SemanticSource::Encoder),
        ("vae", SemanticSource::Vae),
    ];
    let stage2 = |source| ctx.refiner_config(&move |r| r.data.semantic_source = source);
    ctx.prefetch_arms(
        &arms.map(|(_, source)| stage2(source)),
        &ctx.preset.milestones,
    )?;
    let mut rows = Vec::new();
    let mut curves: Vec<Curve> = Vec::new();
    for (name, source) in arms {
        let rdir = ctx.refiner(&stage2(source))?;
        let s = ctx.stage1_config(&stage2(source))?;
        let mut curve = Vec::new();
        let mut real_tokens: Option<Vec<Vec<f32>>> = None;
        ctx.semantic(&s, &ctx.preset.milestones, &mut |step, sdir, loss| {
            let mdir = ctx.assemble_from(
                &rdir,
                Some(sdir),
                &ctx.dir.join(format!("{name}-model")),
                source,
            )?;
            let model = ctx.load(&mdir)?;
            // Stage 1 alone, in its own standardised space: the token distribution of its
            // samples against the pool's real one (every channel has unit variance in
            // both spaces, so the distances compare across spaces).
            if real_tokens.is_none() {
                real_tokens = Some(ctx.real_z_tokens(&s)?);
            }
            let fake = ctx.planned_tokens(&model, ctx.preset.prompts)?;
            let z_fd = frechet_distance(&fake, real_tokens.as_ref().context("real")?)?;
            let clips = ctx.sample(&model, ctx.preset.prompts, 1, false)?;
            let score = ctx.score(&model, &clips)?;
            println!("  {name} @ {step}: z-space Fréchet {z_fd:.4}, {score:?}");
            let mut row = vec![
                name.to_string(),
                step.to_string(),
                format!("{loss:.4}"),
                format!("{z_fd:.4}"),
            ];
            row.extend(score.cells());
            rows.push(row);
            curve.push((step, score, loss, z_fd));
            Ok(())
        })?;
        curves.push((name.to_string(), curve));
    }
    let Targets {
        fd: fd_target,
        hits: hit_target,
        z_fd: z_target,
        fd_steps,
        hit_steps,
        z_fd_steps,
    } = targets(&curves);
    let mut md = String::new();
    writeln!(md, "| space | stage-1 steps | loss | stage-1 Fréchet (own space) | colour | motion | shape | background | mean hits | Fréchet (encoder, decoded clips) |")?;
    writeln!(md, "|---|---|---|---|---|---|---|---|---|---|")?;
    for (name, curve) in &curves {
        for (m, s, loss, z) in curve {
            let h = s.hits;
            writeln!(md, "| {name} | {m} | {loss:.3} | {z:.3} | {:.2} | {:.2} | {:.2} | {:.2} | {:.3} | {:.3} |", h.colour, h.motion, h.shape, h.background, s.mean_hits(), s.fd)?;
        }
    }
    writeln!(md)?;
    let show = |s: Option<u64>| s.map_or("not reached".to_string(), |s| s.to_string());
    let ratio = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}", b as f64 / a as f64),
        _ => "n/a".into(),
    };
    let ([s_fd, v_fd], [s_h, v_h]) = ([fd_steps[0], fd_steps[1]], [hit_steps[0], hit_steps[1]]);
    let (s_z, v_z) = (z_fd_steps[0], z_fd_steps[1]);
    writeln!(md, "| target (the best quality the slower space reaches) | semantic needs | VAE needs | ratio VAE / semantic |")?;
    writeln!(md, "|---|---|---|---|")?;
    writeln!(
        md,
        "| stage-1 Fréchet (own space) ≤ {z_target:.3} | {} | {} | {} |",
        show(s_z),
        show(v_z),
        ratio(s_z, v_z)
    )?;
    writeln!(
        md,
        "| Fréchet (encoder, decoded) ≤ {fd_target:.3} | {} | {} | {} |",
        show(s_fd),
        show(v_fd),
        ratio(s_fd, v_fd)
    )?;
    writeln!(
        md,
        "| mean oracle hits ≥ {hit_target:.3} | {} | {} | {} |",
        show(s_h),
        show(v_h),
        ratio(s_h, v_h)
    )?;
    // Plot: stage-1 Fréchet in its own space, and Fréchet of the decoded clips, vs steps.
    let z: Vec<(String, Vec<(f64, f64)>)> = curves
        .iter()
        .map(|(n, c)| (n.clone(), c.iter().map(|p| (p.0 as f64, p.3)).collect()))
        .collect();
    let fd: Vec<(String, Vec<(f64, f64)>)> = curves
        .iter()
        .map(|(n, c)| (n.clone(), c.iter().map(|p| (p.0 as f64, p.1.fd)).collect()))
        .collect();
    two_line_plots(
        &ctx.png(),
        (
            "stage 1: Fréchet to real z (own space; lower is better)",
            z.as_slice(),
        ),
        (
            "decoded clips: Fréchet in encoder space (lower is better)",
            fd.as_slice(),
        ),
        "stage-1 training steps",
    )?;
    let mut header = vec!["space", "step", "loss", "z_fd"];
    header.extend(SCORE_HEADER);
    Ok(Output {
        header,
        rows,
        markdown: md,
    })
}

type Curve = (String, Vec<(u64, Score, f64, f64)>);

/// The common quality targets of a convergence comparison and the steps each curve needs.
#[derive(Debug, Clone, PartialEq)]
struct Targets {
    /// The best Fréchet distance of the arm whose best is worst.
    fd: f64,
    /// The best mean hit rate of the arm whose best is worst.
    hits: f64,
    /// The best stage-1 (z-space) Fréchet distance of the arm whose best is worst.
    z_fd: f64,
    /// Per curve, the first milestone at which it reaches `fd` (`None`: never).
    fd_steps: Vec<Option<u64>>,
    hit_steps: Vec<Option<u64>>,
    z_fd_steps: Vec<Option<u64>>,
}

/// Both arms reach the targets by construction (each is some arm's best), so the step counts
/// compare how soon; an arm that never gets there is `None`.
fn targets(curves: &[Curve]) -> Targets {
    let fd = curves
        .iter()
        .map(|(_, c)| {
            c.iter()
                .map(|(_, s, _, _)| s.fd)
                .fold(f64::INFINITY, f64::min)
        })
        .fold(f64::NEG_INFINITY, f64::max);
    let hits = curves
        .iter()
        .map(|(_, c)| {
            c.iter()
                .map(|(_, s, _, _)| s.mean_hits())
                .fold(0.0, f64::max)
        })
        .fold(f64::INFINITY, f64::min);
    let z_fd = curves
        .iter()
        .map(|(_, c)| c.iter().map(|p| p.3).fold(f64::INFINITY, f64::min))
        .fold(f64::NEG_INFINITY, f64::max);
    let first = |c: &[(u64, Score, f64, f64)], ok: &dyn Fn(&Score, f64) -> bool| {
        c.iter().find(|(_, s, _, z)| ok(s, *z)).map(|p| p.0)
    };
    Targets {
        fd,
        hits,
        z_fd,
        fd_steps: curves
            .iter()
            .map(|(_, c)| first(c, &|s, _| s.fd <= fd))
            .collect(),
        hit_steps: curves
            .iter()
            .map(|(_, c)| first(c, &|s, _| s.mean_hits() >= hits))
            .collect(),
        z_fd_steps: curves
            .iter()
            .map(|(_, c)| first(c, &|_, z| z <= z_fd))
            .collect(),
    }
}

/// Trains stage 2 of `config`, then stage 1 on its MLP, and scores generated clips and clips
/// conditioned on the real z_sem.
fn two_stage_arm<B: AutodiffBackend>(
    ctx: &Ctx<B>,
    name: &str,
    config: &RefinerTrainConfig,
) -> Result<(Score, Score)> {
    let rdir = ctx.refiner(config)?;
    let s = ctx.stage1_config(config)?;
    let last = ctx.preset.semantic_steps;
    let mut result = None;
    ctx.semantic(&s, &[last], &mut |_, sdir, _| {
        let mdir = ctx.assemble(&rdir, Some(sdir), &ctx.dir.join(format!("{name}-model")))?;
        let model = ctx.load(&mdir)?;
        let generated = ctx.score(&model, &ctx.sample(&model, ctx.preset.prompts, 1, false)?)?;
        let from_real = ctx.score(&model, &ctx.sample(&model, ctx.preset.prompts, 1, true)?)?;
        println!("  {name}: generated {generated:?}, real {from_real:?}");
        result = Some((generated, from_real));
        Ok(())
    })?;
    result.context("stage 1 produced no milestone")
}

/// Every arm of a two-stage comparison (label, folder tag, stage-2 config), prefetched
/// together and then run by [`two_stage_arm`]; their rows go to `md` and `rows`, and their
/// scores (generated, real) come back in order.
fn two_stage_arms<B: AutodiffBackend>(
    ctx: &Ctx<B>,
    arms: &[(String, String, RefinerTrainConfig)],
    md: &mut String,
    rows: &mut Vec<Vec<String>>,
) -> Result<Vec<(Score, Score)>> {
    let configs: Vec<_> = arms.iter().map(|(_, _, c)| c.clone()).collect();
    ctx.prefetch_arms(&configs, &[ctx.preset.semantic_steps])?;
    arms.iter()
        .map(|(label, tag, config)| {
            let scores = two_stage_arm(ctx, tag, config)?;
            arm_rows(md, rows, label, scores)?;
            Ok(scores)
        })
        .collect()
}

/// The Markdown and CSV rows of one arm of [`two_stage_arm`]: its scores on generated and on
/// real `z_sem`.
fn arm_rows(
    md: &mut String,
    rows: &mut Vec<Vec<String>>,
    label: &str,
    (generated, real): (Score, Score),
) -> Result<()> {
    for (source, s) in [("generated", generated), ("real", real)] {
        let h = s.hits;
        writeln!(
            md,
            "| {label} | {source} | {:.2} | {:.2} | {:.2} | {:.2} | {:.3} | {:.3} |",
            h.colour,
            h.motion,
            h.shape,
            h.background,
            s.mean_hits(),
            s.fd
        )?;
        let mut row = vec![label.to_string(), source.into()];
        row.extend(s.cells());
        rows.push(row);
    }
    Ok(())
}

/// Paper Table 3 (§3.4 a): the MLP's output width, scaled to the encoder's 64 dims as the
/// paper's 2048 → 64 → 8: no compression (64), 16, 8.
fn compression<B: AutodiffBackend>(ctx: &Ctx<B>) -> Result<Output> {
    let d = ctx.frozen.vision_config.out_hidden_size;
    let arms: [(String, Option<usize>); 3] = [
        (format!("none ({d})"), None),
        ("16".into(), Some(16)),
        ("8".into(), Some(8)),
    ];
    let mut rows = Vec::new();
    let mut md = String::new();
    writeln!(md, "| MLP output | z_sem source | colour | motion | shape | background | mean hits | Fréchet (encoder) |")?;
    writeln!(md, "|---|---|---|---|---|---|---|---|")?;
    let arms: Vec<_> = arms
        .into_iter()
        .map(|(label, d_out)| {
            let tag = format!("d{}", d_out.map_or("none".into(), |d| d.to_string()));
            let config = ctx.refiner_config(&|r| match d_out {
                Some(d) => {
                    r.model.compress = true;
                    r.model.d_out = d;
                }
                None => r.model.compress = false,
            });
            (label, tag, config)
        })
        .collect();
    let scores = two_stage_arms(ctx, &arms, &mut md, &mut rows)?;
    let bars: Vec<(String, Vec<f64>)> = arms
        .iter()
        .zip(&scores)
        .map(|((label, _, _), (generated, _))| {
            (label.clone(), vec![generated.fd, generated.mean_hits()])
        })
        .collect();
    bar_plot(
        &ctx.png(),
        "compression: stage 1 → stage 2 on held-out prompts",
        &[
            "Fréchet (lower is better)".into(),
            "mean oracle hits".into(),
        ],
        &bars,
    )?;
    let mut header = vec!["d_out", "z_sem"];
    header.extend(SCORE_HEADER);
    Ok(Output {
        header,
        rows,
        markdown: md,
    })
}

/// Noise augmentation of z_sem in stage-2 training (RAE-style), with and without, evaluated on
/// generated z_sem (the train–inference gap) and on real z_sem.
fn noise_aug<B: AutodiffBackend>(ctx: &Ctx<B>) -> Result<Output> {
    let level = ctx.refiner_base.model.sem_noise_max;
    let arms = [
        (format!("noise up to {level}"), level),
        ("no noise".to_string(), 0.0),
    ];
    let mut rows = Vec::new();
    let mut md = String::new();
    writeln!(md, "| stage 2 trained with | z_sem source | colour | motion | shape | background | mean hits | Fréchet (encoder) |")?;
    writeln!(md, "|---|---|---|---|---|---|---|---|")?;
    let arms: Vec<_> = arms
        .into_iter()
        .map(|(label, noise)| {
            let config = ctx.refiner_config(&|r| r.model.sem_noise_max = noise);
            (label, format!("noise{noise}"), config)
        })
        .collect();
    let scores = two_stage_arms(ctx, &arms, &mut md, &mut rows)?;
    let bars: Vec<(String, Vec<f64>)> = arms
        .iter()
        .zip(&scores)
        .map(|((label, _, _), (generated, real))| (label.clone(), vec![generated.fd, real.fd]))
        .collect();
    bar_plot(
        &ctx.png(),
        "noise augmentation of z_sem: Fréchet distance (lower is better)",
        &["generated z_sem".into(), "real z_sem".into()],
        &bars,
    )?;
    let mut header = vec!["stage2", "z_sem"];
    header.extend(SCORE_HEADER);
    Ok(Output {
        header,
        rows,
        markdown: md,
    })
}

/// Paper Table 2: SemanticGen (stage 1 in one full-attention pass over the story, windowed
/// stage 2) against Base-CT-Swin (the same windowed stage 2 without semantic tokens), both
/// trained here for equal stage-2 steps, on stories of 8 and 16 segments. ΔM_drift of every
/// VBench-style metric (first vs last 15 % of frames) and of the oracle hits (first vs last
/// quarter of the segments).
fn long_video<B: AutodiffBackend>(ctx: &Ctx<B>) -> Result<Output> {
    let swin: RefinerTrainConfig = read_toml(&ctx.args.configs.join("base-ct-swin.toml"))?;
    // Base-CT-Swin: the base recipe with the control's model (no semantic tokens), the same
    // object weighting.
    let swin = ctx.refiner_config(&|r| {
        r.model = RefinerModel {
            object_weight: r.model.object_weight,
            ..swin.model.clone()
        }
    });
    let last = ctx.preset.semantic_steps;
    let stage1 = ctx.stage1_config(&ctx.refiner_base)?;
    ctx.prefetch(
        &[ctx.refiner_base.clone(), swin.clone()],
        &[(stage1.clone(), &[last])],
    )?;
    let mut rows = Vec::new();
    let mut md = String::new();
    let mut bars: Vec<(String, Vec<f64>)> = Vec::new();
    let metric_names = [
        "subject_consistency",
        "background_consistency",
        "temporal_flickering",
        "motion_smoothness",
        "imaging_quality",
    ];
    writeln!(md, "| method | segments | frames | SC | BC | TF | MS | IQ | oracle hits (mean) | ΔM SC | ΔM BC | ΔM TF | ΔM MS | ΔM IQ | ΔM mean | Δ oracle hits |")?;
    writeln!(
        md,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )?;
    for method in ["SemanticGen", "Base-CT-Swin"] {
        let mdir = if method == "SemanticGen" {
            let rdir = ctx.refiner(&ctx.refiner_base)?;
            let sdir = ctx.semantic(&stage1, &[last], &mut |_, _, _| Ok(()))?;
            ctx.assemble(
                &rdir,
                Some(&step_dir(&sdir, last)),
                &ctx.dir.join("semanticgen-model"),
            )?
        } else {
            let rdir = ctx.refiner(&swin)?;
            ctx.assemble(&rdir, None, &ctx.dir.join("base-ct-swin-model"))?
        };
        let model = ctx.load(&mdir)?;
        let frames = EncoderFrames {
            enc: &model.encoder,
            device: ctx.device.clone(),
        };
        // Subject consistency through the semantic encoder (VBench: DINO); background
        // consistency through colour histograms (VBench: CLIP, a global-appearance feature).
        let histogram = semgen_eval::metrics::ColourHistogram { bins: 4 };
        let suite = MetricSuite::new(&frames, &histogram);
        for segments in [8usize, 16] {
            let clips = ctx.sample(&model, ctx.preset.stories, segments, false)?;
            let n = clips.len() as f64;
            let (mut score, mut drift, mut hits, mut hit_drift) = ([0.0; 5], [0.0; 5], 0.0, 0.0);
            for (clip, video) in &clips {
                let report = suite.report(video)?;
                for (k, (_, v)) in report.scores().iter().enumerate() {
                    score[k] += v / n;
                }
                let d = report.drift.context("stories are long enough for drift")?;
                for (k, (_, m)) in d.measures().iter().enumerate() {
                    drift[k] += m.delta / n;
                }
                let oracle = semgen_eval::evaluate(video, &clip.prompt())?;
                let h = oracle.hits;
                hits += (h.colour + h.motion + h.shape + h.background) / 4.0 / n;
                if let Some(dr) = oracle.drift {
                    let h = dr.hits;
                    hit_drift += ((h.colour + h.motion + h.shape + h.background) / 4.0).abs() / n;
                }
            }
            let mean_drift = drift.iter().sum::<f64>() / 5.0;
            let frames_n = clips.first().map_or(0, |(_, v)| v.frames());
            let mut row = vec![
                method.to_string(),
                segments.to_string(),
                frames_n.to_string(),
            ];
            row.extend(cells(&score));
            row.extend(cells(&[hits]));
            row.extend(cells(&drift));
            row.extend(cells(&[mean_drift, hit_drift]));
            rows.push(row);
            let pct = |v: f64| format!("{:.2}", 100.0 * v);
            writeln!(
                md,
                "| {method} | {segments} | {frames_n} | {} | {:.2} | {} | {:.2} | {:.2} |",
                score
                    .iter()
                    .map(|v| pct(*v))
                    .collect::<Vec<_>>()
                    .join(" | "),
                hits,
                drift
                    .iter()
                    .map(|v| pct(*v))
                    .collect::<Vec<_>>()
                    .join(" | "),
                100.0 * mean_drift,
                hit_drift
            )?;
            let mut bar = drift.to_vec();
            bar.push(mean_drift);
            bars.push((
                format!("{method}, {segments} seg."),
                bar.iter().map(|v| 100.0 * v).collect(),
            ));
        }
    }
    writeln!(md)?;
    writeln!(md, "Metrics in % (VBench style; SC uses the semantic encoder's pooled per-frame features, BC 4³-bin colour histograms, MS the averaging interpolator, IQ the sharpness proxy); ΔM = |M(first 15 %) − M(last 15 %)| in points; Δ oracle hits = |hits(first quarter of segments) − hits(last quarter)|.")?;
    let mut groups: Vec<String> = metric_names.iter().map(|s| format!("ΔM {s}")).collect();
    groups.push("ΔM mean".into());
    bar_plot(
        &ctx.png(),
        "long-video drift ΔM (points, lower is better)",
        &groups,
        &bars,
    )?;
    let mut header = vec!["method", "segments", "frames"];
    header.extend(metric_names);
    header.push("oracle_mean_hits");
    header.extend([
        "drift_sc",
        "drift_bc",
        "drift_tf",
        "drift_ms",
        "drift_iq",
        "drift_mean",
        "drift_oracle_hits",
    ]);
    Ok(Output {
        header,
        rows,
        markdown: md,
    })
}

/// Paper Fig. 14: the semantic encoder samples every `stride`-th frame, so a one-frame flash
/// between two samples never reaches z_sem and cannot reach the generated clip. Each held-out
/// clip gets a white background flash at an unsampled frame and, for contrast, at a sampled
/// one; the z_sem change (relative to the mean distance between different clips) and the flash
/// contrast in the clip stage 2 makes from that z_sem are measured.
fn low_fps<B: AutodiffBackend>(ctx: &Ctx<B>) -> Result<Output> {
    let model = ctx.load(&ctx.args.model)?;
    let stride = model.settings.frame_stride;
    let device = model.vae.quant_conv.weight.device();
    let sampled = semgen_encoder::train::sparse_frames(model.settings.frames, stride);
    let unsampled = (1..model.settings.frames - 1)
        .find(|t| {
            !sampled.contains(t) && !sampled.contains(&(t - 1)) && !sampled.contains(&(t + 1))
        })
        .or_else(|| (1..model.settings.frames - 1).find(|t| !sampled.contains(t)))
        .context("every frame is sampled (stride 1): no frame can be missed")?;
    let on = sampled[sampled.len() / 2];
    let cases = [
        ("none", None),
        ("unsampled frame", Some(unsampled)),
        ("sampled frame", Some(on)),
    ];
    let n = ctx.preset.prompts.min(16);
    let flash = |v: &Video, t: usize| -> Result<Video> {
        let mut frames: Vec<Vec<u8>> = v.frame_iter().map(<[u8]>::to_vec).collect();
        frames[t].iter_mut().for_each(|p| *p = 255);
        Ok(Video::from_frames(v.height(), v.width(), frames)?)
    };
    let luma = |v: &Video| -> Vec<f64> {
        v.frame_iter()
            .map(|f| f.iter().map(|&p| p as f64).sum::<f64>() / f.len() as f64)
            .collect()
    };
    let z_of = |v: &Video| -> Result<Vec<f32>> {
        let x = videos_to_tensor(&[v.clone()], &device)?;
        Ok(model
            .encode_clip(x)?
            .into_data()
            .to_vec::<f32>()
            .unwrap_or_default())
    };
    let dist = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| ((x - y) as f64).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    let clips: Vec<Clip> = (0..n)
        .map(|i| ctx.world.clip(Split::Test, i))
        .collect::<Result<_, _>>()?;
    let base_z: Vec<Vec<f32>> = clips
        .iter()
        .map(|c| z_of(&c.video))
        .collect::<Result<_>>()?;
    let mut between = (0.0, 0usize);
    for i in 0..base_z.len() {
        for j in i + 1..base_z.len() {
            between.0 += dist(&base_z[i], &base_z[j]);
            between.1 += 1;
        }
    }
    let between = between.0 / between.1.max(1) as f64;
    let frames = model.settings.frames;
    let mut rows = Vec::new();
    let mut md = String::new();
    writeln!(md, "Encoder samples frames {sampled:?} (stride {stride}); flash = every pixel of one frame set to white; {n} held-out clips; z_sem change relative to the mean distance between different clips ({between:.3}).")?;
    writeln!(md)?;
    writeln!(md, "| flash at | frame | z_sem change (relative) | flash contrast in the input | flash contrast in the generated clip |")?;
    writeln!(md, "|---|---|---|---|---|")?;
    let mut series = Vec::new();
    for (label, at) in cases {
        let (mut dz, mut c_in, mut c_out) = (0.0, 0.0, 0.0);
        let mut mean_luma = vec![0.0; frames];
        for (clip, z0) in clips.iter().zip(&base_z) {
            let input = match at {
                Some(t) => flash(&clip.video, t)?,
                None => clip.video.clone(),
            };
            let z = z_of(&input)?;
            dz += dist(&z, z0) / between / n as f64;
            let mut req = GenerateRequest::defaults(&model, vec![clip.caption()], 0);
            req.refiner.steps = ctx.preset.sample_steps;
            let zt = model.encode_clip(videos_to_tensor(&[input.clone()], &device)?)?;
            let out = model.decode(model.refine(&req, Some(zt), &mut |_, _| {})?)?;
            let (li, lo) = (luma(&input), luma(&out));
            // Contrast: the flash frame's mean brightness over its two neighbours' mean.
            let t = at.unwrap_or(unsampled);
            let contrast = |l: &[f64]| l[t] - (l[t - 1] + l[t + 1]) / 2.0;
            c_in += contrast(&li) / n as f64;
            c_out += contrast(&lo) / n as f64;
            for (m, v) in mean_luma.iter_mut().zip(&lo) {
                *m += v / n as f64;
            }
        }
        let frame = at.map_or("-".into(), |t| t.to_string());
        writeln!(
            md,
            "| {label} | {frame} | {dz:.4} | {c_in:.1} | {c_out:.1} |"
        )?;
        rows.push(vec![
            label.to_string(),
            frame,
            format!("{dz:.5}"),
            format!("{c_in:.3}"),
            format!("{c_out:.3}"),
        ]);
        series.push((
            format!("flash: {label}"),
            mean_luma
                .iter()
                .enumerate()
                .map(|(t, v)| (t as f64, *v))
                .collect::<Vec<_>>(),
        ));
    }
    writeln!(md)?;
    writeln!(md, "Contrast = mean brightness (0–255) of the flash frame minus the mean of its two neighbours (for \"none\": at frame {unsampled}).")?;
    line_plot(
        &ctx.png(),
        "generated clips from the flashed clip's z_sem: mean brightness per frame",
        "frame",
        "mean brightness (0-255)",
        &series,
    )?;
    Ok(Output {
        header: vec![
            "flash_at",
            "frame",
            "z_sem_change_relative",
            "contrast_input",
            "contrast_generated",
        ],
        rows,
        markdown: md,
    })
}

// ---------------------------------------------------------------------------------------------
// Plots (plotters, PNG). Text uses the DejaVu Sans font shipped in xtask/assets.
// ---------------------------------------------------------------------------------------------

const FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

fn font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.08).max(1e-6);
    (lo - pad, hi + pad)
}

fn draw_lines<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let (x0, x1) = bounds(series.iter().flat_map(|(_, p)| p.iter().map(|p| p.0)));
    let (y0, y1) = bounds(series.iter().flat_map(|(_, p)| p.iter().map(|p| p.1)));
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
    for (k, (name, points)) in series.iter().enumerate() {
        let c = COLOURS[k % COLOURS.len()];
        chart
            .draw_series(LineSeries::new(points.iter().copied(), c.stroke_width(2)))
            .map_err(|e| anyhow::anyhow!("plot: {e}"))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 4, c.filled())))
            .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
    }
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
    Ok(())
}

fn line_plot(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> Result<()> {
    font();
    let root = BitMapBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE)
        .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
    draw_lines(&root, title, x_label, y_label, series)?;
    root.present().map_err(|e| anyhow::anyhow!("plot: {e}"))?;
    Ok(())
}

type Series<'a> = (&'a str, &'a [(String, Vec<(f64, f64)>)]);

fn two_line_plots(path: &Path, left: Series, right: Series, x_label: &str) -> Result<()> {
    font();
    let root = BitMapBackend::new(path, (1400, 520)).into_drawing_area();
    root.fill(&WHITE)
        .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
    let (a, b) = root.split_horizontally(700);
    draw_lines(&a, left.0, x_label, "", left.1)?;
    draw_lines(&b, right.0, x_label, "", right.1)?;
    root.present().map_err(|e| anyhow::anyhow!("plot: {e}"))?;
    Ok(())
}

/// Grouped bars: one group per entry of `groups`, one bar per series in each group.
fn bar_plot(
    path: &Path,
    title: &str,
    groups: &[String],
    series: &[(String, Vec<f64>)],
) -> Result<()> {
    font();
    if series.iter().any(|(_, v)| v.len() != groups.len()) {
        bail!("bar plot: every series needs one value per group");
    }
    let root = BitMapBackend::new(path, (1100, 560)).into_drawing_area();
    root.fill(&WHITE)
        .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
    let hi = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(0.0f64, f64::max)
        .max(1e-6)
        * 1.15;
    let lo = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(0.0f64, f64::min)
        * 1.15;
    let n = groups.len() as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(10)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.5f64..n - 0.5, lo..hi)
        .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
    let width = 0.8 / series.len().max(1) as f64;
    for (k, (name, values)) in series.iter().enumerate() {
        let c = COLOURS[k % COLOURS.len()];
        chart
            .draw_series(values.iter().enumerate().map(|(g, &v)| {
                let x = g as f64 - 0.4 + k as f64 * width;
                Rectangle::new([(x, 0.0), (x + width * 0.9, v)], c.filled())
            }))
            .map_err(|e| anyhow::anyhow!("plot: {e}"))?
            .label(name.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], c.filled()));
        chart
            .draw_series(values.iter().enumerate().map(|(g, &v)| {
                let x = g as f64 - 0.4 + (k as f64 + 0.45) * width;
                Text::new(
                    format!("{v:.2}"),
                    (x, v),
                    ("sans-serif", 11)
                        .into_font()
                        .color(&BLACK)
                        .pos(Pos::new(HPos::Center, VPos::Bottom)),
                )
            }))
            .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
    }
    chart
        .draw_series(groups.iter().enumerate().map(|(g, name)| {
            Text::new(
                name.clone(),
                (g as f64, lo + (hi - lo) * 0.97),
                ("sans-serif", 13)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Center, VPos::Top)),
            )
        }))
        .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
    root.present().map_err(|e| anyhow::anyhow!("plot: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(fd: f64, hit: f64) -> Score {
        Score {
            hits: HitRates {
                colour: hit,
                motion: hit,
                shape: hit,
                background: hit,
            },
            fd,
        }
    }

    #[test]
    fn targets_are_the_slower_arms_best_and_steps_count_how_soon_each_gets_there() {
        let fast = (
            "semantic".to_string(),
            vec![
                (50, score(9.0, 0.1), 1.0, 3.0),
                (100, score(4.0, 0.5), 0.5, 1.0),
                (200, score(2.0, 0.7), 0.4, 0.5),
            ],
        );
        let slow = (
            "vae".to_string(),
            vec![
                (50, score(12.0, 0.0), 1.0, 4.0),
                (100, score(8.0, 0.2), 0.6, 2.0),
                (200, score(5.0, 0.4), 0.5, 0.8),
            ],
        );
        let t = targets(&[fast, slow]);
        assert_eq!(t.fd, 5.0);
        assert_eq!(t.hits, 0.4);
        assert_eq!(t.fd_steps, vec![Some(100), Some(200)]);
        assert_eq!(t.hit_steps, vec![Some(100), Some(200)]);
        assert_eq!(t.z_fd, 0.8);
        assert_eq!(t.z_fd_steps, vec![Some(200), Some(200)]);
    }

    #[test]
    fn a_stage1_run_waits_for_the_stage2_run_it_generates_for() {
        let fetch = |dir: &str, after: Option<&str>| Fetch {
            dir: dir.into(),
            text: String::new(),
            after: after.map(PathBuf::from),
            last: None,
            args: Vec::new(),
        };
        // Stage 1 of arm a is listed first but must wait for stage 2 of arm a.
        let todo = [
            fetch("s1a", Some("s2a")),
            fetch("s2a", None),
            fetch("s1b", Some("s2b")),
        ];
        assert_eq!(next_ready(&todo, &[]), Some(1));
        // s2a running, s2b neither waiting nor running (finished): s1b may go, s1a not.
        let left = [fetch("s1a", Some("s2a")), fetch("s1b", Some("s2b"))];
        assert_eq!(next_ready(&left, &[Path::new("s2a")]), Some(1));
        // Only s1a left while s2a runs: nothing may start.
        assert_eq!(next_ready(&todo[..1], &[Path::new("s2a")]), None);
        assert_eq!(next_ready(&todo[..1], &[]), Some(0));
        assert_eq!(next_ready(&[], &[]), None);
    }

    #[test]
    fn the_cost_line_adds_the_reused_runs_training_time_to_the_wall_time() {
        let run = |reused, seconds| RunTime {
            dir: PathBuf::new(),
            reused,
            seconds,
        };
        assert_eq!(cost_line(&[], 72.0), "No training runs.");
        assert_eq!(
            cost_line(&[run(false, Some(300.0)), run(false, Some(60.0))], 600.0),
            "Training runs: 2 trained here (6.0 min of training summed over the runs; with \
             `--jobs` some ran side by side), none reused."
        );
        // 10 min of wall time, plus 5 + 1 min for the two runs an earlier experiment made
        // (at most: made side by side they took less wall time).
        assert_eq!(
            cost_line(
                &[
                    run(false, Some(120.0)),
                    run(true, Some(300.0)),
                    run(true, Some(60.0))
                ],
                600.0
            ),
            "Training runs: 1 trained here (2.0 min of training summed over the runs; with \
             `--jobs` some ran side by side), 2 reused from earlier experiments (they took 6.0 \
             min to train), so at most 16.0 min from an empty run store."
        );
        // A reused run without a recorded time gives no total rather than a wrong one.
        let line = cost_line(&[run(true, Some(300.0)), run(true, None)], 600.0);
        assert!(
            line.ends_with("(their training time was not recorded)."),
            "{line}"
        );
        assert!(!line.contains("empty run store"), "{line}");
    }

    #[test]
    fn plots_are_pngs_of_the_asked_size_and_bad_series_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let line = dir.path().join("line.png");
        let series = vec![
            ("a".to_string(), vec![(0.0, 1.0), (1.0, 2.0), (2.0, 1.5)]),
            ("b".to_string(), vec![(0.0, 0.5), (2.0, 3.0)]),
        ];
        line_plot(&line, "title", "x", "y", &series).unwrap();
        let bytes = std::fs::read(&line).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        // IHDR: width and height, big-endian, at bytes 16..24.
        assert_eq!(u32::from_be_bytes(bytes[16..20].try_into().unwrap()), 900);
        assert_eq!(u32::from_be_bytes(bytes[20..24].try_into().unwrap()), 520);
        let bars = dir.path().join("bars.png");
        let groups = vec!["g1".to_string(), "g2".to_string()];
        bar_plot(&bars, "t", &groups, &[("s".into(), vec![1.0, -0.5])]).unwrap();
        assert_eq!(&std::fs::read(&bars).unwrap()[..4], b"\x89PNG");
        let e = bar_plot(&bars, "t", &groups, &[("s".into(), vec![1.0])]).unwrap_err();
        assert!(e.to_string().contains("one value per group"), "{e}");
    }
}
