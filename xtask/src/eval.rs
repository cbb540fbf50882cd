//! `cargo xtask eval pipeline --checkpoint DIR [--count N] [--source generated|real]`: the
//! oracle hit rates of generated 17×64×64 clips on held-out (test-split) prompts of the Shapes
//! grammar, and of stories (`--segments S`).
//!
//! `--source real` conditions the refiner on `z_sem` of the real test clip (encoder → MLP)
//! instead of stage 1's sample: the Fig. 4 analogue of the paper. `--source vae` skips both
//! diffusion stages (the real clip through the VAE's encoder and decoder): the ceiling.
//! `--source swapped` is the control of `real`: the caption of clip i with the `z_sem` of clip
//! i + 1, scored against clip i's prompt. Where it scores as `real` does, stage 2 renders from
//! its text and does not read `z_sem`; the further below, the more the plan steers it.

use anyhow::{Context, Result};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use semgen_core::device::DeviceSpec;
use semgen_data::{ShapesWorld, Size, Split, WorldConfig};
use semgen_encoder::probe::{GridDims, SetProbeConfig};
use semgen_eval::oracle::{
    ClipReport, HitRates, MotionConfusion, Oracle, OracleConfig, ShapeConfusion,
};
use semgen_pipeline::backend::{dispatch, dispatch_autodiff, AutodiffTask, BackendTask};
use semgen_pipeline::model::SemgenModel;
use semgen_pipeline::pipeline::GenerateRequest;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug, Clone)]
pub struct EvalArgs {
    #[arg(long, default_value = "checkpoints/shapes-small")]
    pub checkpoint: PathBuf,
    /// Prompts (clips FIRST..FIRST+N of the split).
    #[arg(long, default_value_t = 100)]
    pub count: u64,
    /// The first clip of the split to use: reported figures use clips 0..100, and a later range
    /// (e.g. `--first 100 --count 300`) gives prompts no earlier choice has looked at.
    #[arg(long, default_value_t = 0)]
    pub first: u64,
    /// `test` (the held-out prompts every reported figure uses) or `val` (for choosing
    /// sampling settings without looking at the test prompts).
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Segments per prompt (1 = 17-frame clips; S > 1 = stories of 16·S + 1 frames).
    #[arg(long, default_value_t = 1)]
    pub segments: usize,
    /// `generated` (text → stage 1 → stage 2), `real` (z_sem of the real clip → stage 2),
    /// `swapped` (z_sem of the next clip with this clip's caption: how much stage 2 reads
    /// z_sem) or `vae` (the real clip encoded and decoded by the VAE: the ceiling). With `real`
    /// each row and the summary also hold `latent_vs_real`: stage 2's latent against the real
    /// clip's (relative MSE, spread, and detail in space and time; semgen_eval::metrics).
    #[arg(long, default_value = "generated")]
    pub source: String,
    /// Override both stages' sampling steps (`semantic_steps`, `refiner_steps` of model.json).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Override both stages' timestep shift (`shift` of model.json).
    #[arg(long)]
    pub shift: Option<f64>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Override the refiner's text guidance (`refiner_guidance` of model.json).
    #[arg(long)]
    pub refiner_guidance: Option<f64>,
    /// Override the refiner's guidance on z_sem (`refiner_semantic_guidance` of model.json).
    #[arg(long)]
    pub semantic_guidance: Option<f64>,
    /// Override the σ interval of the refiner's guidance, `LO,HI` (`refiner_guidance_schedule`
    /// of model.json; default every step).
    #[arg(long, value_name = "LO,HI")]
    pub refiner_guidance_interval: Option<String>,
    /// Override the rescale φ of the refiner's guidance (0 = off).
    #[arg(long, value_name = "PHI")]
    pub refiner_guidance_rescale: Option<f64>,
    /// Override the σ interval of stage 1's guidance, `LO,HI` (`semantic_guidance_schedule`).
    #[arg(long, value_name = "LO,HI")]
    pub stage1_guidance_interval: Option<String>,
    /// Override the rescale φ of stage 1's guidance (0 = off).
    #[arg(long, value_name = "PHI")]
    pub stage1_guidance_rescale: Option<f64>,
    /// Override stage 1's text guidance (`semantic_guidance` of model.json).
    #[arg(long)]
    pub stage1_guidance: Option<f64>,
    /// Override the noise added to z_sem before stage 2 (`semantic_noise` of model.json).
    #[arg(long)]
    pub semantic_noise: Option<f64>,
    /// Override the refiner's text in stories (`refiner_story_text` of model.json): the first
    /// segment's caption throughout, or each segment's own.
    #[arg(long, value_enum)]
    pub refiner_story_text: Option<semgen_pipeline::model::StoryText>,
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
        let mut model = SemgenModel::<B>::load(&a.checkpoint, &device)
            .with_context(|| format!("loading {}", a.checkpoint.display()))?;
        if let Some(g) = a.refiner_guidance {
            model.settings.refiner_guidance = g;
        }
        if let Some(g) = a.semantic_guidance {
            model.settings.refiner_semantic_guidance = g;
        }
        if let Some(g) = a.stage1_guidance {
            model.settings.semantic_guidance = g;
        }
        if let Some(n) = a.semantic_noise {
            model.settings.semantic_noise = n;
        }
        if let Some(t) = a.refiner_story_text {
            model.settings.refiner_story_text = t;
        }
        if let Some(s) = a.shift {
            model.settings.shift = s;
        }
        let st = &mut model.settings;
        for (schedule, interval, rescale) in [
            (
                &mut st.refiner_guidance_schedule,
                &a.refiner_guidance_interval,
                a.refiner_guidance_rescale,
            ),
            (
                &mut st.semantic_guidance_schedule,
                &a.stage1_guidance_interval,
                a.stage1_guidance_rescale,
            ),
        ] {
            *schedule = schedule.with_overrides(interval.as_deref(), rescale)?;
        }
        let split = match a.split.as_str() {
            "test" => Split::Test,
            "val" => Split::Val,
            other => anyhow::bail!("--split must be 'test' or 'val', not '{other}'"),
        };
        let world = ShapesWorld::new(WorldConfig::default())?;
        let start = std::time::Instant::now();
        let mut rates = Vec::new();
        let mut drifts = Vec::new();
        let mut confusion = MotionConfusion::default();
        let mut shape_confusion = ShapeConfusion::default();
        let mut comparisons = Vec::new();
        let mut lines = String::new();
        let end = a
            .first
            .checked_add(a.count)
            .context("--first + --count must fit in 64 bits")?;
        for i in a.first..end {
            let (clip, video, latents) = sample_test_clip(
                &model,
                &world,
                split,
                i,
                a.segments,
                &a.source,
                a.steps,
                a.seed + i,
            )?;
            let latent = match a.source.as_str() {
                "real" => Some(latent_vs_real(&model, &clip, &latents)?),
                _ => None,
            };
            let prompt = clip.prompt();
            if let Some(dir) = &a.gifs {
                if i - a.first < 8 {
                    std::fs::create_dir_all(dir)?;
                    semgen_data::writers::write_gif(
                        &video,
                        &dir.join(format!("{}-{i:03}.gif", a.source)),
                        semgen_data::SHAPES_FPS,
                    )?;
                }
            }
            let report = semgen_eval::evaluate(&video, &prompt)?;
            confusion.add(&prompt, &report)?;
            shape_confusion.add(&prompt, &report)?;
            rates.push(report.hits);
            if let Some(d) = report.drift {
                drifts.push(d);
            }
            comparisons.extend(latent);
            let mut row = serde_json::json!({"index": i, "caption": clip.caption(), "hits": report.hits, "drift": report.drift, "segments": report.segments});
            if let Some(l) = latent {
                row["latent_vs_real"] = serde_json::to_value(l)?;
            }
            lines.push_str(&row.to_string());
            lines.push('\n');
        }
        let mean = HitRates::mean(&rates);
        let drift = (!drifts.is_empty())
            .then(|| HitRates::mean(&drifts.iter().map(|d| d.hits).collect::<Vec<_>>()));
        let summary = serde_json::json!({
            "checkpoint": a.checkpoint,
            "source": a.source,
            "split": a.split,
            "prompts": a.count,
            "first": a.first,
            "segments": a.segments,
            "refiner_guidance": model.settings.refiner_guidance,
            "refiner_semantic_guidance": model.settings.refiner_semantic_guidance,
            "stage1_guidance": model.settings.semantic_guidance,
            "refiner_guidance_schedule": model.settings.refiner_guidance_schedule,
            "stage1_guidance_schedule": model.settings.semantic_guidance_schedule,
            "semantic_noise": model.settings.semantic_noise,
            "refiner_story_text": model.settings.refiner_story_text,
            "steps": a.steps.unwrap_or(model.settings.refiner_steps),
            "shift": model.settings.shift,
            "hits": mean,
            "drift_first_minus_last_quarter": drift,
            "direction_agreement": confusion.direction_agreement(),
            "still_agreement": confusion.still_agreement(),
            "motion_binding_own_other": confusion.binding_rates(),
            "motion_confusion": confusion,
            "shape_hits_small_large": [
                shape_confusion.accuracy(Some(Size::Small)),
                shape_confusion.accuracy(Some(Size::Large))
            ],
            "shape_confusion": shape_confusion,
            "latent_vs_real": semgen_eval::metrics::mean_comparison(&comparisons),
            "seconds": start.elapsed().as_secs_f64(),
        });
        println!("{}", serde_json::to_string_pretty(&summary)?);
        eprintln!(
            "motion, prompted (rows) against measured (columns):\n{}\nshape, prompted (rows) against best matched (columns):\n{}",
            confusion.markdown(),
            shape_confusion.markdown()
        );
        if let Some(out) = &a.out {
            lines.push_str(&summary.to_string());
            lines.push('\n');
            std::fs::write(out, lines)?;
        }
        Ok(())
    }
}

/// Clip `i` of `split` (a story of `segments` when > 1) and the clip the model makes for it:
/// `generated` (text → stage 1 → stage 2), `real` (the real clip's `z_sem` → stage 2) or `vae`
/// (the real clip through the VAE alone, the ceiling of the other two), with the normalised
/// latents it was decoded from; `steps` overrides both stages' sampling steps.
pub(crate) fn sample_test_clip<B: Backend>(
    model: &SemgenModel<B>,
    world: &ShapesWorld,
    split: Split,
    i: u64,
    segments: usize,
    source: &str,
    steps: Option<usize>,
    seed: u64,
) -> Result<(semgen_data::Clip, semgen_data::Video, Tensor<B, 5>)> {
    let device = model.vae.quant_conv.weight.device();
    let clip = if segments > 1 {
        world.story(split, i, segments)?
    } else {
        world.clip(split, i)?
    };
    let mut req = GenerateRequest::defaults(model, clip.prompt().segment_captions(), seed);
    req.frames = clip.video.frames();
    if let Some(s) = steps {
        req.semantic.steps = s;
        req.refiner.steps = s;
    }
    model.check(&req)?;
    let latents = match source {
        "generated" => model.generate(&req, &mut |_, _| {})?.latents,
        "real" | "swapped" => {
            let plan = if source == "real" {
                clip.video.clone()
            } else if segments > 1 {
                world.story(split, i + 1, segments)?.video
            } else {
                world.clip(split, i + 1)?.video
            };
            let x = semgen_data::videos_to_tensor(&[plan], &device)?;
            let z = model.encode_clip(x)?;
            model.refine(&req, Some(z), &mut |_, _| {})?
        }
        "vae" => {
            let x = semgen_data::videos_to_tensor(&[clip.video.clone()], &device)?;
            model.vae.normalize(model.vae.encode(x)?)
        }
        other => {
            anyhow::bail!("--source must be 'generated', 'real', 'swapped' or 'vae', not '{other}'")
        }
    };
    let video = model.decode(latents.clone())?;
    Ok((clip, video, latents))
}

/// Stage 2's latent for `clip` against the VAE's encoding of the clip itself (both normalised),
/// with the object cells of stage 2's loss weighting: how far stage 2 lands from the latent whose
/// plan it was shown (`--source real`).
fn latent_vs_real<B: Backend>(
    model: &SemgenModel<B>,
    clip: &semgen_data::Clip,
    latents: &Tensor<B, 5>,
) -> Result<semgen_eval::metrics::LatentComparison> {
    let device = latents.device();
    let x = semgen_data::videos_to_tensor(&[clip.video.clone()], &device)?;
    let real = model.vae.normalize(model.vae.encode(x)?);
    let [_, c, t, h, w] = real.dims();
    let host = |z: Tensor<B, 5>| -> Result<Vec<f32>> {
        z.into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("latent to host: {e:?}"))
    };
    // The cells an object's box touches in some frame of the cell (stage 2 trains on them
    // ×object_weight).
    let weights = semgen_pipeline::train::latent_object_weights::<B>(
        std::slice::from_ref(&clip.plan),
        2.0,
        clip.video.height() / h,
        &device,
    );
    let cells: Vec<bool> = host(weights)?.into_iter().map(|v| v > 1.5).collect();
    Ok(semgen_eval::metrics::compare_latents(
        &host(latents.clone())?,
        &host(real)?,
        [c, t, h, w],
        Some(&cells),
    )?)
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
        // What the oracle sees in the reconstructions: the whole clip's hit rates, or (`--image`,
        // no motion to judge) each object's shape in the one frame.
        let oracle = Oracle::new(OracleConfig::default());
        let (mut shapes, mut hits) = (ShapeConfusion::default(), Vec::new());
        for i in 0..a.count {
            let mut clip = world.clip(Split::Val, i)?;
            if a.image {
                clip.video = clip.video.select(&[0])?;
            }
            let x = semgen_data::videos_to_tensor(&[clip.video.clone()], &device)?;
            let recon = vae.decode(vae.encode(x)?)?;
            let out = &semgen_data::tensor_to_videos(recon)?[0];
            psnrs.push(semgen_eval::metrics::psnr(&clip.video, out)?);
            let prompt = clip.prompt();
            if a.image {
                let scene = &prompt.segments[0];
                for (object, seen) in scene
                    .objects
                    .iter()
                    .zip(oracle.frame_shapes(out, 0, scene)?)
                {
                    shapes.add_object(object, seen);
                }
            } else {
                let report = oracle.evaluate(out, &prompt)?;
                shapes.add(&prompt, &report)?;
                hits.push(report.hits);
            }
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
        let mut summary = serde_json::json!({
            "checkpoint": a.checkpoint, "clips": a.count, "psnr_mean_db": mean, "psnr_min_db": min,
            "shape_hits": shapes.accuracy(None),
            "shape_hits_small_large": [shapes.accuracy(Some(Size::Small)), shapes.accuracy(Some(Size::Large))],
            "shape_confusion": shapes.counts,
        });
        if !hits.is_empty() {
            summary["oracle_hits"] = serde_json::to_value(HitRates::mean(&hits))?;
        }
        println!("{summary}");
        Ok(())
    }
}

pub fn run_vae(args: VaeEvalArgs) -> Result<()> {
    let device = args.device;
    dispatch(device, VaeEval(args))?
}

/// `cargo xtask probe-semantic [--checkpoint DIR]`: stage 1 judged in its own space (issue 7).
/// Linear probes (closed-form ridge, as for the encoder) are fitted on *real* `z_sem` (encoder
/// → MLP, the whole token grid flattened) of training clips and applied to *generated* `z_sem`
/// (stage 1 on the held-out validation captions) and, for reference, to the real `z_sem` of
/// those validation clips; the Fréchet distance between generated and real `z_sem` tokens is
/// reported beside the one between two real sets (the sampling floor). The same protocol runs
/// with a second reader, `semgen_encoder::probe` (`set_probe_*` in the JSON): a small learned
/// probe shared by all tokens and pooled per time slice, which reads an attribute wherever the
/// object sits in the grid (the flattened linear probe needs a separate weight per cell).
#[derive(clap::Args, Debug, Clone)]
pub struct SemanticProbeArgs {
    #[arg(long, default_value = "checkpoints/shapes-small")]
    pub checkpoint: PathBuf,
    /// Objects per clip (1: every attribute label is well posed).
    #[arg(long, default_value_t = 1)]
    pub objects: usize,
    /// Training clips the probes are fitted on.
    #[arg(long, default_value_t = 1024)]
    pub fit: usize,
    /// Validation clips (and captions) they are tested on.
    #[arg(long, default_value_t = 256)]
    pub val: usize,
    /// Stage-1 sampling steps (default: the model's).
    #[arg(long)]
    pub steps: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Seed of the set probe's initial weights (`set_probe_*`).
    #[arg(long, default_value_t = 0)]
    pub probe_seed: u64,
    /// Validation stories on which the same probes judge each segment's span of the generated
    /// story plan (one full-attention pass over the whole story), and of the real story's
    /// `z_sem` (`real_all_segments`: the reference for the generated spans).
    #[arg(long, default_value_t = 8)]
    pub stories: usize,
    /// Segments per story.
    #[arg(long, default_value_t = 8)]
    pub segments: usize,
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
    /// Also write the figures (JSON) here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The grid the probes read: stage 1's space (`semantic`, `z_sem`), or the VAE's
    /// normalised latents of the same clips (`vae`: real clips and the set probe only, no
    /// generated or story columns). This asks whether the latent holds an attribute that the
    /// decoder fails to draw.
    #[arg(long, value_enum, default_value = "semantic")]
    pub space: ProbeSpace,
}

/// Which grid `probe-semantic` reads.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeSpace {
    Semantic,
    Vae,
}

struct SemanticProbe(SemanticProbeArgs);

/// `[N, d, t, h, w]` → rows of `d·t·h·w` (whole grids) and rows of `d` (tokens).
fn grid_rows<B: Backend>(z: Tensor<B, 5>) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let [n, d, t, h, w] = z.dims();
    let whole = z.clone().into_data().to_vec::<f32>().unwrap_or_default();
    let per = d * t * h * w;
    debug_assert_eq!(whole.len(), n * per);
    (
        whole.chunks(per).map(<[f32]>::to_vec).collect(),
        token_rows(z),
    )
}

/// `[N, d, t, h, w]` → one `d`-vector per token.
pub(crate) fn token_rows<B: Backend>(z: Tensor<B, 5>) -> Vec<Vec<f32>> {
    let d = z.dims()[1];
    let values = z
        .permute([0, 2, 3, 4, 1])
        .into_data()
        .to_vec::<f32>()
        .unwrap_or_default();
    values.chunks(d).map(<[f32]>::to_vec).collect()
}

impl AutodiffTask for SemanticProbe {
    type Output = Result<()>;
    fn run<AB: AutodiffBackend>(self, device: AB::Device) -> Result<()> {
        use crate::encoder::{labels, ATTRIBUTES};
        use semgen_encoder::train::linear_probe_accuracy;
        let a = self.0;
        let start = std::time::Instant::now();
        let model = SemgenModel::<AB::InnerBackend>::load(&a.checkpoint, &device)
            .with_context(|| format!("loading {}", a.checkpoint.display()))?;
        let world = ShapesWorld::new(WorldConfig {
            max_objects: a.objects,
            ..WorldConfig::default()
        })?;
        // Whole grids, tokens, labels, and the shape of one grid (`None` for no clips).
        type Real = (
            Vec<Vec<f32>>,
            Vec<Vec<f32>>,
            Vec<[usize; 6]>,
            Option<GridDims>,
        );
        let real = |split: Split, n: usize| -> Result<Real> {
            let (mut grids, mut tokens, mut labs, mut dims) =
                (Vec::new(), Vec::new(), Vec::new(), None);
            for first in (0..n).step_by(32) {
                let clips = (first..n.min(first + 32))
                    .map(|i| world.clip(split, i as u64))
                    .collect::<Result<Vec<_>, _>>()?;
                let videos: Vec<_> = clips.iter().map(|c| c.video.clone()).collect();
                let x = semgen_data::videos_to_tensor(&videos, &device)?;
                let z = match a.space {
                    ProbeSpace::Semantic => model.encode_clip(x)?,
                    ProbeSpace::Vae => model.vae.normalize(model.vae.encode(x)?),
                };
                let [_, d, t, h, w] = z.dims();
                dims = Some(GridDims { d, t, h, w });
                let (g, t) = grid_rows(z);
                grids.extend(g);
                tokens.extend(t);
                labs.extend(clips.iter().map(labels));
            }
            Ok((grids, tokens, labs, dims))
        };
        let (fit_x, fit_tokens, fit_y, dims) = real(Split::Train, a.fit)?;
        let dims = dims.context("--fit 0: no training clips to fit the probes on")?;
        let (val_x, val_tokens, val_y, _) = real(Split::Val, a.val)?;
        let semantic = a.space == ProbeSpace::Semantic;
        let (mut gen_x, mut gen_tokens) = (Vec::new(), Vec::new());
        for i in (0..a.val).filter(|_| semantic) {
            let clip = world.clip(Split::Val, i as u64)?;
            let mut req =
                GenerateRequest::defaults(&model, vec![clip.caption()], a.seed + i as u64);
            if let Some(s) = a.steps {
                req.semantic.steps = s;
            }
            let (g, t) = grid_rows(model.plan(&req, &mut |_, _| {})?);
            gen_x.extend(g);
            gen_tokens.extend(t);
        }
        let k = fit_x.first().map_or(0, Vec::len);
        let flat = |rows: &[Vec<f32>]| rows.concat();
        let (fx, vx, gx) = (flat(&fit_x), flat(&val_x), flat(&gen_x));
        let set_config = SetProbeConfig {
            seed: a.probe_seed,
            ..SetProbeConfig::default()
        };
        let mut report = serde_json::json!({
            "checkpoint": a.checkpoint,
            "sampling_seed": a.seed,
            "objects_per_clip": a.objects,
            "fit_clips": a.fit,
            "val_clips": a.val,
            "features": format!(
                "the whole {} grid, {k} values per clip",
                if semantic { "z_sem" } else { "normalised VAE latent" }
            ),
            "set_probe": format!("semgen_encoder::probe, {set_config:?}"),
        });
        let mut set_probes = Vec::new();
        for (idx, (name, classes)) in ATTRIBUTES.iter().enumerate() {
            let ty: Vec<usize> = fit_y.iter().map(|l| l[idx]).collect();
            let vy: Vec<usize> = val_y.iter().map(|l| l[idx]).collect();
            let probe = set_config.fit::<AB>(dims, &fx, &ty, *classes, &device)?;
            let mut set = serde_json::json!({ "real": probe.accuracy(&vx, &vy)? });
            // The flattened ridge probe solves a (k + 1)² system: cheap on z_sem's 384 values,
            // minutes on the VAE latent's 2560, where (as on z_sem) it cannot read an object
            // that moves between cells anyway. The VAE space has the set probe only.
            if semantic {
                report[format!("probe_{name}")] = serde_json::json!({
                    "real": linear_probe_accuracy(&fx, &ty, &vx, &vy, k, *classes, 1.0),
                    "generated": linear_probe_accuracy(&fx, &ty, &gx, &vy, k, *classes, 1.0),
                });
                set["generated"] = serde_json::json!(probe.accuracy(&gx, &vy)?);
            }
            report[format!("set_probe_{name}")] = set;
            set_probes.push(probe);
        }
        // Stories: segment k of a 16·S + 1 frame story spans semantic frames 2k..2k+2, the
        // same 3-frame grid as a clip, so the clip probes apply to each segment's span.
        let (mut seg_x, mut seg_y, mut seg_index) = (Vec::new(), Vec::new(), Vec::new());
        // The same spans of the real story's `z_sem` (encoder → MLP over the whole story):
        // what a generator of this space can be judged against.
        let mut real_seg_x = Vec::new();
        if semantic && a.stories > 0 && a.segments > 1 {
            for i in 0..a.stories {
                let story = world.story(Split::Val, i as u64, a.segments)?;
                let prompt = story.prompt();
                let mut req =
                    GenerateRequest::defaults(&model, prompt.segment_captions(), a.seed + i as u64);
                req.frames = story.video.frames();
                if let Some(s) = a.steps {
                    req.semantic.steps = s;
                }
                let z = model.plan(&req, &mut |_, _| {})?;
                let x = semgen_data::videos_to_tensor(&[story.video.clone()], &device)?;
                let z_real = model.encode_clip(x)?;
                for k in 0..a.segments {
                    let span = |z: &Tensor<AB::InnerBackend, 5>| {
                        grid_rows(z.clone().narrow(2, 2 * k, 3)).0
                    };
                    seg_x.extend(span(&z));
                    real_seg_x.extend(span(&z_real));
                    seg_y.push(crate::encoder::segment_labels(&story, k));
                    seg_index.push(k);
                }
            }
        }
        if !seg_x.is_empty() {
            let (sx, real_sx) = (flat(&seg_x), flat(&real_seg_x));
            let quarter = (a.segments / 4).max(1);
            let mut stories = serde_json::json!({"stories": a.stories, "segments": a.segments});
            for (idx, (name, classes)) in ATTRIBUTES.iter().enumerate().take(5) {
                let ty: Vec<usize> = fit_y.iter().map(|l| l[idx]).collect();
                let sy: Vec<usize> = seg_y.iter().map(|l| l[idx]).collect();
                let all = linear_probe_accuracy(&fx, &ty, &sx, &sy, k, *classes, 1.0);
                // The same probe on the first and on the last quarter of the segments: a
                // drop would be drift (identity lost along the story).
                let part = |keep: &dyn Fn(usize) -> bool| {
                    let rows: Vec<usize> = (0..seg_index.len())
                        .filter(|&r| keep(seg_index[r]))
                        .collect();
                    let x: Vec<f32> = rows.iter().flat_map(|&r| seg_x[r].clone()).collect();
                    let y: Vec<usize> = rows.iter().map(|&r| sy[r]).collect();
                    (x, y)
                };
                let (first, last) = (part(&|s| s < quarter), part(&|s| s >= a.segments - quarter));
                let ridge = |(x, y): &(Vec<f32>, Vec<usize>)| {
                    linear_probe_accuracy(&fx, &ty, x, y, k, *classes, 1.0)
                };
                let real = linear_probe_accuracy(&fx, &ty, &real_sx, &sy, k, *classes, 1.0);
                stories[format!("probe_{name}")] = serde_json::json!({"all_segments": all, "first_quarter": ridge(&first), "last_quarter": ridge(&last), "real_all_segments": real});
                let set = &set_probes[idx];
                stories[format!("set_probe_{name}")] = serde_json::json!({
                    "all_segments": set.accuracy(&sx, &sy)?,
                    "first_quarter": set.accuracy(&first.0, &first.1)?,
                    "last_quarter": set.accuracy(&last.0, &last.1)?,
                    "real_all_segments": set.accuracy(&real_sx, &sy)?,
                });
            }
            report["stories"] = stories;
        }
        if semantic {
            let fd = semgen_eval::metrics::frechet_distance(&gen_tokens, &val_tokens)?;
            let floor = semgen_eval::metrics::frechet_distance(&fit_tokens, &val_tokens)?;
            report["frechet_tokens_generated_vs_real"] = serde_json::json!(fd);
            report["frechet_tokens_real_vs_real"] = serde_json::json!(floor);
        }
        report["seconds"] = serde_json::json!(start.elapsed().as_secs_f64());
        let text = serde_json::to_string_pretty(&report)?;
        println!("{text}");
        if let Some(out) = &a.out {
            std::fs::write(out, text)?;
        }
        Ok(())
    }
}

pub fn run_semantic_probe(args: SemanticProbeArgs) -> Result<()> {
    let device = args.device;
    dispatch_autodiff(device, SemanticProbe(args))?
}

/// `xtask motion REPORTS.jsonl…`: the motion confusion of per-clip reports that `xtask eval --out`
/// wrote (each line's `caption` and `segments`; the summary line is skipped), so that reports
/// written before the confusion was part of the summary can be read again. `xtask shapes` reads
/// the same files for the shape confusion.
#[derive(clap::Args, Debug, Clone)]
pub struct MotionArgs {
    /// Per-clip report files (JSON lines).
    #[arg(required = true)]
    pub reports: Vec<PathBuf>,
}

/// The prompt and oracle report of each clip line of a file that `xtask eval --out` wrote.
fn read_reports(path: &Path) -> Result<Vec<(semgen_data::ShapesPrompt, ClipReport)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut clips = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let value: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not JSON", path.display(), n + 1))?;
        let Some(caption) = value.get("caption").and_then(|c| c.as_str()) else {
            continue; // the summary line
        };
        let prompt = semgen_data::ShapesPrompt::parse(caption)
            .with_context(|| format!("{}:{}: caption", path.display(), n + 1))?;
        let report: ClipReport = serde_json::from_value(value)
            .with_context(|| format!("{}:{}: not an oracle report", path.display(), n + 1))?;
        clips.push((prompt, report));
    }
    Ok(clips)
}

/// Writes one file's table; a reader that stopped early (`xtask motion … | head`) ends the
/// output, not the command (`Ok(false)`).
fn write_or_stop(out: &mut impl std::io::Write, text: &str) -> Result<bool> {
    match writeln!(out, "{text}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        other => other.map(|_| true).map_err(Into::into),
    }
}

fn pct(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{:.2}", v))
}

pub fn motion(a: MotionArgs) -> Result<()> {
    let mut out = std::io::stdout().lock();
    for path in &a.reports {
        let clips = read_reports(path)?;
        let mut confusion = MotionConfusion::default();
        for (n, (prompt, report)) in clips.iter().enumerate() {
            confusion
                .add(prompt, report)
                .with_context(|| format!("{}: clip line {}", path.display(), n + 1))?;
        }
        let binding = confusion.binding_rates();
        let text = format!(
            "{}: {} clips, direction agreement {}, still agreement {}, objects doing their own / another object's prompted motion {} / {} (of {})\n{}",
            path.display(),
            clips.len(),
            pct(confusion.direction_agreement()),
            pct(confusion.still_agreement()),
            pct(binding.map(|r| r.0)),
            pct(binding.map(|r| r.1)),
            confusion.binding.iter().sum::<usize>(),
            confusion.markdown()
        );
        if !write_or_stop(&mut out, &text)? {
            return Ok(());
        }
    }
    Ok(())
}

/// `xtask shapes REPORTS.jsonl…`: the shape confusion (prompted shape against the shape the
/// oracle matched best) of per-clip reports from `xtask eval --out`, with the shape hit rate of
/// small and large objects.
pub fn shapes(a: MotionArgs) -> Result<()> {
    let mut out = std::io::stdout().lock();
    for path in &a.reports {
        let clips = read_reports(path)?;
        let mut confusion = ShapeConfusion::default();
        for (n, (prompt, report)) in clips.iter().enumerate() {
            confusion
                .add(prompt, report)
                .with_context(|| format!("{}: clip line {}", path.display(), n + 1))?;
        }
        let text = format!(
            "{}: {} clips, shape hit rate {} (small objects {}, large {})\n{}",
            path.display(),
            clips.len(),
            pct(confusion.accuracy(None)),
            pct(confusion.accuracy(Some(Size::Small))),
            pct(confusion.accuracy(Some(Size::Large))),
            confusion.markdown()
        );
        if !write_or_stop(&mut out, &text)? {
            return Ok(());
        }
    }
    Ok(())
}
