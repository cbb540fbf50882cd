//! `cargo xtask eval pipeline --checkpoint DIR [--count N] [--source generated|real]`: the
//! oracle hit rates of generated 17×64×64 clips on held-out (test-split) prompts of the Shapes
//! grammar, and of stories (`--segments S`).
//!
//! `--source real` conditions the refiner on `z_sem` of the real test clip (encoder → MLP)
//! instead of stage 1's sample: the Fig. 4 analogue of the paper. `--source vae` skips both
//! diffusion stages (the real clip through the VAE's encoder and decoder): the ceiling.

use anyhow::{Context, Result};
use burn::prelude::*;
use semgen_core::device::DeviceSpec;
use semgen_data::{ShapesWorld, Split, WorldConfig};
use semgen_eval::oracle::HitRates;
use semgen_pipeline::backend::{dispatch, BackendTask};
use semgen_pipeline::model::SemgenModel;
use semgen_pipeline::pipeline::GenerateRequest;
use std::path::PathBuf;

#[derive(clap::Args, Debug, Clone)]
pub struct EvalArgs {
    #[arg(long, default_value = "checkpoints/shapes-small")]
    pub checkpoint: PathBuf,
    /// Prompts (test-split clips 0..N).
    #[arg(long, default_value_t = 100)]
    pub count: u64,
    /// Segments per prompt (1 = 17-frame clips; S > 1 = stories of 16·S + 1 frames).
    #[arg(long, default_value_t = 1)]
    pub segments: usize,
    /// `generated` (text → stage 1 → stage 2), `real` (z_sem of the real clip → stage 2) or
    /// `vae` (the real clip encoded and decoded by the VAE: the ceiling of the other two).
    #[arg(long, default_value = "generated")]
    pub source: String,
    #[arg(long)]
    pub steps: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
    /// Write per-clip reports (JSON lines) here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also write the first few clips as GIFs into this folder.
    #[arg(long)]
    pub gifs: Option<PathBuf>,
}

struct Eval(EvalArgs);

impl BackendTask for Eval {
    type Output = Result<()>;
    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let a = self.0;
        let model = SemgenModel::<B>::load(&a.checkpoint, &device)
            .with_context(|| format!("loading {}", a.checkpoint.display()))?;
        let world = ShapesWorld::new(WorldConfig::default())?;
        let start = std::time::Instant::now();
        let mut rates = Vec::new();
        let mut drifts = Vec::new();
        let mut lines = String::new();
        for i in 0..a.count {
            let clip = if a.segments > 1 {
                world.story(Split::Test, i, a.segments)?
            } else {
                world.clip(Split::Test, i)?
            };
            let prompt = clip.prompt();
            let mut req = GenerateRequest::defaults(&model, prompt.segment_captions(), a.seed + i);
            req.frames = clip.video.frames();
            if let Some(s) = a.steps {
                req.semantic.steps = s;
                req.refiner.steps = s;
            }
            model.check(&req)?;
            let latents = match a.source.as_str() {
                "generated" => model.generate(&req, &mut |_, _| {})?.latents,
                "real" => {
                    let x = semgen_data::videos_to_tensor(&[clip.video.clone()], &device)?;
                    let z = model.encode_clip(x)?;
                    model.refine(&req, Some(z), &mut |_, _| {})?
                }
                // The ceiling of every other source: the real clip through the VAE alone.
                "vae" => {
                    let x = semgen_data::videos_to_tensor(&[clip.video.clone()], &device)?;
                    model.vae.normalize(model.vae.encode(x)?)
                }
                other => {
                    anyhow::bail!("--source must be 'generated', 'real' or 'vae', not '{other}'")
                }
            };
            let video = model.decode(latents)?;
            if let Some(dir) = &a.gifs {
                if i < 8 {
                    std::fs::create_dir_all(dir)?;
                    semgen_data::writers::write_gif(
                        &video,
                        &dir.join(format!("{}-{i:03}.gif", a.source)),
                        semgen_data::SHAPES_FPS,
                    )?;
                }
            }
            let report = semgen_eval::evaluate(&video, &prompt)?;
            rates.push(report.hits);
            if let Some(d) = report.drift {
                drifts.push(d);
            }
            lines.push_str(&serde_json::json!({"index": i, "caption": clip.caption(), "hits": report.hits, "drift": report.drift}).to_string());
            lines.push('\n');
        }
        let mean = HitRates::mean(&rates);
        let drift = (!drifts.is_empty())
            .then(|| HitRates::mean(&drifts.iter().map(|d| d.hits).collect::<Vec<_>>()));
        let summary = serde_json::json!({
            "checkpoint": a.checkpoint,
            "source": a.source,
            "prompts": a.count,
            "segments": a.segments,
            "hits": mean,
            "drift_first_minus_last_quarter": drift,
            "seconds": start.elapsed().as_secs_f64(),
        });
        println!("{}", serde_json::to_string_pretty(&summary)?);
        if let Some(out) = &a.out {
            lines.push_str(&summary.to_string());
            lines.push('\n');
            std::fs::write(out, lines)?;
        }
        Ok(())
    }
}

pub fn run(args: EvalArgs) -> Result<()> {
    let device = args.device;
    dispatch(device, Eval(args))?
}

/// `cargo xtask eval-vae --checkpoint FILE [--count N]`: reconstruction PSNR of a VAE on
/// validation clips (encode to the posterior mean, decode, compare in [0, 255]).
#[derive(clap::Args, Debug, Clone)]
pub struct VaeEvalArgs {
    #[arg(long)]
    pub checkpoint: PathBuf,
    #[arg(long, default_value_t = 64)]
    pub count: u64,
    /// Clip size (frames 1 + 4k, sides multiples of 16).
    #[arg(long, default_value_t = 17)]
    pub frames: usize,
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
    /// Also write a PNG of the first 4 clips: each original above its reconstruction, frames
    /// evenly spaced.
    #[arg(long)]
    pub sheet: Option<PathBuf>,
    /// Evaluate on the first frame of each clip alone (an image VAE, phase 1 of the recipe).
    #[arg(long)]
    pub image: bool,
}

struct VaeEval(VaeEvalArgs);

impl BackendTask for VaeEval {
    type Output = Result<()>;
    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let a = self.0;
        let vae = semgen_pipeline::model::load_vae::<B>(&a.checkpoint, &device)?;
        let world = ShapesWorld::new(WorldConfig {
            frames: a.frames,
            height: a.size,
            width: a.size,
            ..WorldConfig::default()
        })?;
        let mut psnrs = Vec::new();
        let mut sheet = Vec::new();
        for i in 0..a.count {
            let mut clip = world.clip(Split::Val, i)?;
            if a.image {
                clip.video = clip.video.select(&[0])?;
            }
            let x = semgen_data::videos_to_tensor(&[clip.video.clone()], &device)?;
            let recon = vae.decode(vae.encode(x)?)?;
            let out = &semgen_data::tensor_to_videos(recon)?[0];
            let mse = clip
                .video
                .as_bytes()
                .iter()
                .zip(out.as_bytes())
                .map(|(&p, &q)| (p as f64 - q as f64).powi(2))
                .sum::<f64>()
                / out.as_bytes().len() as f64;
            psnrs.push(10.0 * (255.0f64.powi(2) / mse.max(1e-10)).log10());
            if i < 4 {
                sheet.push(clip.video.clone());
                sheet.push(out.clone());
            }
        }
        if let Some(path) = &a.sheet {
            let rows: Vec<&semgen_data::Video> = sheet.iter().collect();
            semgen_data::writers::write_contact_sheet_rows(&rows, path, 9)?;
        }
        let mean = psnrs.iter().sum::<f64>() / psnrs.len().max(1) as f64;
        let min = psnrs.iter().cloned().fold(f64::INFINITY, f64::min);
        println!(
            "{}",
            serde_json::json!({"checkpoint": a.checkpoint, "clips": a.count, "psnr_mean_db": mean, "psnr_min_db": min})
        );
        Ok(())
    }
}

pub fn run_vae(args: VaeEvalArgs) -> Result<()> {
    let device = args.device;
    dispatch(device, VaeEval(args))?
}
