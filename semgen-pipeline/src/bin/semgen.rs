//! `semgen`: text to video with a SemanticGen model.
//!
//! ```text
//! semgen generate --prompt "a large red circle moving left slowly on a navy background" --out clip.gif
//! semgen generate --prompt-file story.txt --out story.mp4      # one segment caption per line
//! semgen decode --latents clip.latents.safetensors --out again.gif
//! semgen info
//! ```
//!
//! `generate` writes `z_sem`, the latents (`PATH.latents.safetensors`) and a JSON sidecar with
//! every setting (`PATH.json`) *before* decoding; the video is written atomically. Errors print
//! one line and exit with status 1 (2 for bad usage), leaving no partial output.

use anyhow::{bail, Context, Result};
use burn::prelude::*;
use clap::{Parser, Subcommand};
use semgen_core::device::DeviceSpec;
use semgen_core::tensor_io::{read_safetensors, write_safetensors, HostTensor};
use semgen_data::writers::{write_gif, write_mp4, write_png_frames};
use semgen_data::{Video, SHAPES_FPS};
use semgen_pipeline::backend::{dispatch, BackendTask};
use semgen_pipeline::model::{read_component_summaries, SemgenModel};
use semgen_pipeline::pipeline::{GenerateRequest, Stage};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(
    name = "semgen",
    version,
    about = "SemanticGen text-to-video (semantic plan → VAE latents → frames)"
)]
struct Cli {
    /// No progress bars (errors and warnings still print).
    #[arg(long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a clip (one prompt) or a long video (a prompt file, one segment caption per line).
    Generate(GenerateArgs),
    /// Decode latents saved by `generate` again.
    Decode(DecodeArgs),
    /// Describe a model folder: components, sizes, training steps, configs.
    Info(InfoArgs),
}

#[derive(clap::Args, Clone)]
struct GenerateArgs {
    /// The caption of the clip.
    #[arg(
        long,
        conflicts_with = "prompt_file",
        required_unless_present = "prompt_file"
    )]
    prompt: Option<String>,
    /// A file with one segment caption per line (a story).
    #[arg(long)]
    prompt_file: Option<PathBuf>,
    /// Frames (1 + 4k); default: the model's clip length, or 16 per segment + 1 for a story.
    #[arg(long)]
    frames: Option<usize>,
    #[arg(long)]
    height: Option<usize>,
    #[arg(long)]
    width: Option<usize>,
    /// Denoising steps of each stage.
    #[arg(long)]
    steps: Option<usize>,
    /// Text guidance of each stage.
    #[arg(long)]
    guidance: Option<f64>,
    /// Apply both stages' guidance only while the noise level σ is in LO,HI (e.g. `0.3,1`);
    /// default: the model's (model.json), every step unless it says otherwise.
    #[arg(long, value_name = "LO,HI")]
    guidance_interval: Option<String>,
    /// Rescale both stages' guided prediction towards the conditional one's spread (φ in [0, 1];
    /// 0 = off). Default: the model's.
    #[arg(long, value_name = "PHI")]
    guidance_rescale: Option<f64>,
    /// The refiner's guidance on the semantic plan (g_s; 1 = none).
    #[arg(long)]
    semantic_guidance: Option<f64>,
    /// Noise added to the semantic plan before the refiner reads it (std; 0 = none).
    #[arg(long)]
    semantic_noise: Option<f64>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
    /// Model folder; default: the shipped checkpoints/shapes-small.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// `.mp4` or `.gif` file, or a folder of PNG frames.
    #[arg(long)]
    out: PathBuf,
}

#[derive(clap::Args, Clone)]
struct DecodeArgs {
    /// `*.latents.safetensors` written by `generate`.
    #[arg(long)]
    latents: PathBuf,
    #[arg(long)]
    out: PathBuf,
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
}

#[derive(clap::Args, Clone)]
struct InfoArgs {
    #[arg(long)]
    checkpoint: Option<PathBuf>,
}

/// The shipped model: `checkpoints/shapes-small` in the working directory, else in the source
/// tree this binary was built from.
fn default_checkpoint() -> PathBuf {
    let local = PathBuf::from("checkpoints/shapes-small");
    if local.is_dir() {
        return local;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../checkpoints/shapes-small")
}

/// True when `out` is written as a folder of PNG frames (no `.gif` / `.mp4` extension).
fn is_frame_folder(out: &Path) -> bool {
    !matches!(
        out.extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("gif" | "mp4")
    )
}

/// Refuses an output that cannot be written, before any work is done: no file name, a folder
/// that is missing, is a file, or is read-only, or an existing path of the other kind (a folder
/// where a video goes, a file where the PNG frames go).
fn check_output(out: &Path) -> Result<()> {
    if out.file_name().is_none() {
        bail!("output path '{}' has no file name", out.display());
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if parent.exists() && !parent.is_dir() {
        bail!("output folder {} is a file, not a folder", parent.display());
    }
    if !parent.is_dir() {
        bail!("output folder {} does not exist", parent.display());
    }
    let probe = tempfile::Builder::new()
        .prefix(".semgen-write-test")
        .tempfile_in(&parent);
    if let Err(e) = probe {
        bail!("output folder {} is not writable ({e})", parent.display());
    }
    match (is_frame_folder(out), out.is_dir()) {
        (false, true) => bail!(
            "output {} is a folder; a .gif or .mp4 output must be a file",
            out.display()
        ),
        (true, false) if out.exists() => bail!(
            "output {} is a file; without a .gif or .mp4 extension the output is a folder of PNG frames",
            out.display()
        ),
        _ => {}
    }
    let mp4 = out
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("mp4"));
    if mp4 && !semgen_data::ffmpeg::ffmpeg_available() {
        bail!(
            "writing {} needs ffmpeg, which cannot be run here (install it, or write a .gif or a PNG folder)",
            out.display()
        );
    }
    Ok(())
}

/// `clip.gif` → `clip.gif.json`, `clip.gif.latents.safetensors`; a PNG folder `frames/` →
/// `frames.json` beside it (a trailing separator does not put the sidecars inside the folder).
fn sidecar(out: &Path, suffix: &str) -> PathBuf {
    let mut s = out.components().as_path().as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn write_video(video: &Video, out: &Path) -> Result<()> {
    let ext = out
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("gif") => write_gif(video, out, SHAPES_FPS)?,
        Some("mp4") => write_mp4(video, out, SHAPES_FPS, 18)?,
        _ => write_png_frames(video, out)?,
    }
    Ok(())
}

fn progress_bar(quiet: bool, total: u64, label: &str) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg:10} {bar:30} {pos}/{len} [{elapsed_precise}]",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(label.to_string());
    bar
}

struct Generate {
    args: GenerateArgs,
    quiet: bool,
}

impl BackendTask for Generate {
    type Output = Result<()>;
    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let a = &self.args;
        let segments: Vec<String> = match (&a.prompt, &a.prompt_file) {
            (Some(p), _) => vec![p.clone()],
            (None, Some(f)) => std::fs::read_to_string(f)
                .with_context(|| format!("cannot read prompt file {}", f.display()))?
                .lines()
                .map(str::to_string)
                .collect(),
            (None, None) => bail!("give --prompt or --prompt-file"),
        };
        // Trailing blank lines are not segments; a blank line between captions is an error.
        let mut segments = segments;
        while segments.last().is_some_and(|s| s.trim().is_empty()) && segments.len() > 1 {
            segments.pop();
        }
        check_output(&a.out)?;
        let dir = a.checkpoint.clone().unwrap_or_else(default_checkpoint);
        let model = SemgenModel::<B>::load(&dir, &device)
            .with_context(|| format!("cannot load the model in {}", dir.display()))?;
        let mut req = GenerateRequest::defaults(&model, segments, a.seed);
        if let Some(f) = a.frames {
            req.frames = f;
        }
        if let Some(h) = a.height {
            req.height = h;
        }
        if let Some(w) = a.width {
            req.width = w;
        }
        if let Some(s) = a.steps {
            req.semantic.steps = s;
            req.refiner.steps = s;
        }
        if let Some(g) = a.guidance {
            req.semantic.guidance = g;
            req.refiner.guidance = g;
        }
        if let Some(g) = a.semantic_guidance {
            req.refiner_semantic_guidance = g;
        }
        for stage in [&mut req.semantic, &mut req.refiner] {
            stage.schedule = stage
                .schedule
                .with_overrides(a.guidance_interval.as_deref(), a.guidance_rescale)?;
        }
        if let Some(n) = a.semantic_noise {
            req.semantic_noise = n;
        }
        model.check(&req)?;
        let start = std::time::Instant::now();
        let sem_bar = progress_bar(self.quiet, req.semantic.steps as u64, "semantic");
        let ref_bar = progress_bar(self.quiet, req.refiner.steps as u64, "refiner");
        let out = model.generate(&req, &mut |stage, info| {
            let bar = match stage {
                Stage::Semantic => &sem_bar,
                Stage::Refiner => &ref_bar,
            };
            bar.set_position(info.step as u64 + 1);
        })?;
        sem_bar.finish();
        ref_bar.finish();
        // Everything needed to decode again or to reproduce, before decoding.
        let mut tensors = BTreeMap::new();
        tensors.insert("latents".to_string(), HostTensor::from_tensor(&out.latents));
        if let Some(z) = &out.z_sem {
            tensors.insert("z_sem".to_string(), HostTensor::from_tensor(z));
        }
        let settings = serde_json::json!({
            "request": req,
            "checkpoint": dir.canonicalize().unwrap_or(dir.clone()),
            "device": a.device.to_string(),
            "semgen_version": env!("CARGO_PKG_VERSION"),
        });
        let meta = std::collections::HashMap::from([(
            "semgen.settings".to_string(),
            settings.to_string(),
        )]);
        write_safetensors(
            &sidecar(&a.out, ".latents.safetensors"),
            &tensors,
            Some(meta),
        )?;
        semgen_core::checkpoint::write_atomic(
            &sidecar(&a.out, ".json"),
            serde_json::to_string_pretty(&settings)?.as_bytes(),
        )?;
        let video = model.decode(out.latents)?;
        write_video(&video, &a.out)?;
        if !self.quiet {
            eprintln!(
                "wrote {} ({} frames {}x{}) in {:.1}s; settings in {}",
                a.out.display(),
                video.frames(),
                video.height(),
                video.width(),
                start.elapsed().as_secs_f64(),
                sidecar(&a.out, ".json").display()
            );
        }
        Ok(())
    }
}

struct Decode {
    args: DecodeArgs,
}

impl BackendTask for Decode {
    type Output = Result<()>;
    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let a = &self.args;
        check_output(&a.out)?;
        let tensors = read_safetensors(&a.latents)
            .with_context(|| format!("cannot read latents from {}", a.latents.display()))?;
        let lat = tensors
            .get("latents")
            .with_context(|| format!("{} holds no 'latents' tensor", a.latents.display()))?;
        if lat.shape.len() != 5 || lat.shape[0] != 1 || lat.shape[2..].contains(&0) {
            bail!(
                "'latents' has shape {:?}, expected [1, channels, frames, height, width] with every size positive",
                lat.shape
            );
        }
        if lat.to_f32().iter().any(|v| !v.is_finite()) {
            bail!(
                "'latents' in {} holds NaN or infinite values",
                a.latents.display()
            );
        }
        let dir = a.checkpoint.clone().unwrap_or_else(default_checkpoint);
        let model = SemgenModel::<B>::load(&dir, &device)
            .with_context(|| format!("cannot load the model in {}", dir.display()))?;
        if lat.shape[1] != model.vae.config.z_dim {
            bail!(
                "the latents have {} channels but this model's VAE has {}",
                lat.shape[1],
                model.vae.config.z_dim
            );
        }
        let latents: Tensor<B, 5> = lat.to_tensor(&device)?;
        let video = model.decode(latents)?;
        write_video(&video, &a.out)?;
        Ok(())
    }
}

fn info(args: InfoArgs) -> Result<()> {
    let dir = args.checkpoint.unwrap_or_else(default_checkpoint);
    let summary = read_component_summaries(&dir)
        .with_context(|| format!("cannot read the model in {}", dir.display()))?;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}

fn main() {
    semgen_pipeline::backend::keep_freed_memory();
    let cli = Cli::parse();
    let filter = if cli.quiet { "error" } else { "warn" };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let result = match cli.command {
        Command::Generate(args) => {
            let device = args.device;
            dispatch(
                device,
                Generate {
                    args,
                    quiet: cli.quiet,
                },
            )
            .map_err(anyhow::Error::from)
            .and_then(|r| r)
        }
        Command::Decode(args) => {
            let device = args.device;
            dispatch(device, Decode { args })
                .map_err(anyhow::Error::from)
                .and_then(|r| r)
        }
        Command::Info(args) => info(args),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
