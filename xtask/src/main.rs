//! `cargo xtask …`: semgen's developer commands.
//!
//! - `parity PATH [--device D]`: run a reference fixture (a component folder, the scheduler
//!   file, or a folder of fixtures) and compare every output at the manifest's tolerance;
//! - `data preview --count N --out DIR [--long] [--split S] [--seed S]`: write Shapes clips as
//!   GIFs, PNG frames, captions and a contact sheet;
//! - `train encoder [...]`: Shapes pretraining of the semantic encoder;
//! - `probe-encoder [--encoder FILE] [--objects 1]`: its linear probes on one-object clips;
//! - `probe-semantic [--checkpoint DIR] [--space semantic|vae]`: probes fitted on real z_sem
//!   applied to stage 1's (or, `--space vae`, on the VAE's latents of real clips);
//! - `eval`, `motion FILE…`, `shapes FILE…`: oracle hit rates of generated clips, and the
//!   motion and shape confusions of their per-clip reports;
//! - `probe-text [--checkpoint DIR]`: whether word features name their own object (binding);
//! - `probe-vae [--checkpoint DIR] [--window W]`: whether an object's shape is in the VAE latent
//!   cells around it, against what the cells' mean colours say;
//! - `train vae --config FILE.toml [...]`: train the Wan VAE on Shapes clips;
//! - `train refiner|semantic --config FILE.toml --out DIR`: the two diffusion stages;
//! - `bench vae-memory [--frames 17,65,257] [--size 128]`: peak memory of streaming decode;
//! - `bench refiner-scaling`: one refiner step per latent frame, windows vs full, 1×–16×;
//! - `bench suite [--device D] [--peer] [--rows …] [--out FILE.md]`: the issue-10 suite (DiT
//!   forward and training step, attention scaling, VAE, encoders, generate), with PyTorch's
//!   figures beside semgen's when `--peer` (`bench/peer/peer.py`);
//! - `experiment convergence|compression|noise-aug|long-video|low-fps [--quick]`: the paper's
//!   claims at Shapes scale (CSV, PNG and a Markdown table under docs/results/).

mod bench;
mod data;
mod encoder;
mod eval;
mod experiment;
mod parity;
mod stages;
mod text_probe;
mod vae;
mod vae_probe;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "semgen developer commands")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Benchmarks whose figures go into docs/ (peak memory, speed).
    Bench {
        #[command(subcommand)]
        what: bench::BenchCommand,
    },
    /// Compare a component against a reference fixture (exits non-zero on any mismatch).
    Parity(parity::ParityArgs),
    /// The Shapes world: previews of generated clips.
    Data(data::DataArgs),
    /// Oracle hit rates of a model's generated clips on held-out prompts.
    Eval(eval::EvalArgs),
    /// Prompted against measured motion (direction confusion) of per-clip reports from `eval --out`.
    Motion(eval::MotionArgs),
    /// Prompted against best-matched shape (shape confusion, small and large objects apart) of per-clip reports from `eval --out`.
    Shapes(eval::MotionArgs),
    /// Reconstruction PSNR of a VAE checkpoint on Shapes validation clips, and what the oracle
    /// sees in the reconstructions (hit rates; shapes per object with `--image`).
    EvalVae(eval::VaeEvalArgs),
    /// Linear probes of a trained semantic encoder on one-object (or training-like) clips.
    ProbeEncoder(encoder::ProbeArgs),
    /// Stage 1 in its own space: probes fitted on real z_sem applied to generated z_sem.
    ProbeSemantic(eval::SemanticProbeArgs),
    /// Whether the prompt's word features name their own object's attributes (binding), from the
    /// text encoder and stage 1's text refiner.
    ProbeText(text_probe::TextProbeArgs),
    /// Whether an object's shape is in the VAE latent cells around it (first frames, ridge and
    /// MLP readers, against the cells' mean colours).
    ProbeVae(vae_probe::VaeProbeArgs),
    /// Reproduce one of the paper's claims at Shapes scale (docs/results.md).
    Experiment(experiment::ExperimentArgs),
    /// Train a component.
    Train {
        #[command(subcommand)]
        component: TrainCommand,
    },
}

#[derive(Subcommand)]
enum TrainCommand {
    /// Contrastive video–caption pretraining of the semantic encoder on the Shapes world.
    Encoder(encoder::EncoderTrainArgs),
    /// The Wan VAE on Shapes clips (reconstruction + KL), from a TOML config.
    Vae(vae::VaeTrainArgs),
    /// Stage 2: the refiner and the compression MLP.
    Refiner(stages::StageArgs),
    /// Stage 1: the semantic generator (needs a trained refiner's MLP).
    Semantic(stages::StageArgs),
}

fn main() {
    semgen_pipeline::backend::keep_freed_memory();
    let cli = Cli::parse();
    let result: Result<()> = match cli.command {
        Command::Parity(args) => parity::run(args),
        Command::Bench { what } => bench::run(what),
        Command::Data(args) => data::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Motion(args) => eval::motion(args),
        Command::Shapes(args) => eval::shapes(args),
        Command::EvalVae(args) => eval::run_vae(args),
        Command::Experiment(args) => experiment::run(args),
        Command::ProbeEncoder(args) => encoder::probe(args),
        Command::ProbeSemantic(args) => eval::run_semantic_probe(args),
        Command::ProbeText(args) => text_probe::run(args),
        Command::ProbeVae(args) => vae_probe::run(args),
        Command::Train { component } => match component {
            TrainCommand::Encoder(args) => encoder::train(args),
            TrainCommand::Vae(args) => vae::train(args),
            TrainCommand::Refiner(args) => stages::train_refiner(args),
            TrainCommand::Semantic(args) => stages::train_semantic(args),
        },
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
