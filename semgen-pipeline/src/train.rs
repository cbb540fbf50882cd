//! Training the two diffusion stages on the Shapes world through the core driver
//! ([`semgen_core::train`]): the refiner together with the compression MLP (stage 2, trained
//! first), then the semantic generator on the frozen MLP's `z_sem` (stage 1).
//!
//! Both read a **feature pool**: `N` training clips pushed once through the frozen VAE, semantic
//! encoder and text encoder (the expensive, frozen part), held in memory as tensors. The batch
//! of step `s` is `batch` pool indices drawn from `(seed, s)`, so runs resume exactly.

use crate::model::{
    compress_mean, from_tokens, load_umt5, load_vae, load_vision, sample_frames, to_tokens,
    ModelError,
};
use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use rand::{Rng, SeedableRng};
use semgen_core::checkpoint::{save_checkpoint, write_atomic, CheckpointMeta};
use semgen_core::train::{OptimConfig, TrainError, TrainTask};
use semgen_core::wan_dit::{TokenLayout, WanDitConfig};
use semgen_data::{videos_to_tensor, ShapesWorld, Split, WorldConfig};
use semgen_encoder::compressor::{Compressor, CompressorConfig};
use semgen_encoder::qwen_vision::{QwenVision, QwenVisionConfig};
use semgen_encoder::text_encoder::TextEncoder;
use semgen_encoder::tokenizer::PromptTokenizer;
use semgen_encoder::umt5::Umt5Config;
use semgen_refiner::geometry::SemanticGeometry;
use semgen_refiner::refiner::{Refiner, RefinerBatch, RefinerConfig};
use semgen_semantic_dit::{SemanticDit, SemanticDitConfig, SemanticText, TextRefinerConfig};
use semgen_vae::WanVae;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------------------------------------
// Configs (TOML)
// ---------------------------------------------------------------------------------------------

/// The frozen models a stage trains on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inputs {
    /// A `wan_vae` checkpoint.
    pub vae: PathBuf,
    /// Folder of `cargo xtask train encoder` (semantic_encoder + text_encoder checkpoints).
    pub encoder: PathBuf,
    /// Stage 1 only: the refiner run whose `compressor.safetensors` is frozen.
    #[serde(default)]
    pub refiner: Option<PathBuf>,
    /// A folder for feature-pool caches (see [`FeaturePool::cached`]); none = no cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_cache: Option<PathBuf>,
    /// Start from the weights of this folder (a run or a model folder) instead of a fresh
    /// init: a fine-tune. Refiner runs take its refiner and compression MLP, stage-1 runs its
    /// `semantic_dit` (which then keeps the stored `z_sem` statistics, so the generator stays in
    /// the space it learned, whatever pool it is fine-tuned on). The stored architectures must
    /// equal this run's (training-only settings such as `text_drop` may change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_from: Option<PathBuf>,
    /// With `init_from`: also start from its compression MLP (the default). `false` keeps only
    /// the refiner and starts the MLP fresh: for moving a trained refiner onto another semantic
    /// encoder, whose features the old MLP was never fitted to.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub init_compressor: bool,
}

/// Where the semantic tokens of a run come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SemanticSource {
    /// The semantic encoder (SemanticGen).
    #[default]
    Encoder,
    /// The VAE's latents on the same token grid (paper Fig. 9's control: "only replace the
    /// semantic encoder with the VAE encoder"); see [`vae_semantic_grid`].
    Vae,
}

impl SemanticSource {
    pub fn is_encoder(&self) -> bool {
        *self == Self::Encoder
    }
}

/// The feature pool and batches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    pub world_seed: u64,
    /// Training clips in the pool.
    pub pool: usize,
    pub batch: usize,
    pub frames: usize,
    pub height: usize,
    pub width: usize,
    pub max_objects: usize,
    pub frame_stride: usize,
    pub text_len: usize,
    /// `encoder` (default) or `vae` (the Fig. 9 control).
    #[serde(default, skip_serializing_if = "SemanticSource::is_encoder")]
    pub semantic_source: SemanticSource,
}

/// A DiT backbone's size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DitSize {
    pub heads: usize,
    pub head_dim: usize,
    pub layers: usize,
    pub ffn: usize,
    /// Temporal window in latent frames (refiner); none = full attention.
    #[serde(default)]
    pub window: Option<usize>,
}

impl DitSize {
    fn backbone(&self, channels: usize, text_dim: usize, patch: [usize; 3]) -> WanDitConfig {
        WanDitConfig::new(
            patch,
            self.heads,
            self.head_dim,
            channels,
            channels,
            text_dim,
            64,
            self.ffn,
            self.layers,
        )
        .with_attn_window(self.window)
    }
}

/// `[model]` of the stage-1 config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SemanticModel {
    #[serde(flatten)]
    pub size: DitSize,
    /// Loss weight of the semantic tokens whose cell holds an object in one of the token's
    /// sampled frames (the rest weigh 1; the loss is the weighted mean,
    /// [`semantic_object_weights`]). 1 = the plain mean. An object covers one or two of a
    /// frame's 16 tokens, so under the plain mean the background tokens dominate the loss, as
    /// in stage 2 before its `object_weight`.
    #[serde(default = "crate::model::one", skip_serializing_if = "is_one")]
    pub object_weight: f64,
    /// Blocks of the text refiner (`semgen_semantic_dit::TextRefiner`, self-attention over the
    /// prompt's tokens before the cross-attention reads them); 0 = none. A fine-tune whose
    /// `init_from` has none starts it as the identity.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub text_refiner_layers: usize,
    /// The text refiner's `output_gain` (a learning-rate multiplier for its zero-initialised
    /// output projections, `TextRefinerConfig::output_gain`).
    #[serde(default = "crate::model::one", skip_serializing_if = "is_one")]
    pub text_refiner_gain: f64,
    /// Weight of the text refiner's attribute loss (`TextRefiner::attribute_loss`): each token
    /// of an object's phrase in the training captions is taught to name that object's colour,
    /// shape, size and motion (`semgen_data::ATTRIBUTE_GROUPS`), so the tokens say which object
    /// they describe. 0 = off (no head); needs `text_refiner_layers`.
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub text_refiner_attribute_weight: f64,
}

fn is_zero(v: &usize) -> bool {
    *v == 0
}

fn is_zero_f64(v: &f64) -> bool {
    *v == 0.0
}

/// `[model]` of the refiner config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefinerModel {
    #[serde(flatten)]
    pub size: DitSize,
    /// Semantic token width after the MLP; 0 = the Base-CT controls (no semantic tokens);
    /// `-1` is not allowed: "no compression" is `compress = false`.
    pub d_out: usize,
    #[serde(default = "yes")]
    pub compress: bool,
    pub kl_weight: f64,
    pub sem_noise_max: f64,
    /// Loss weight of the latent cells that hold an object in any of their frames (the rest
    /// weigh 1; the loss is the weighted mean, [`latent_object_weights`]). 1 = the plain mean.
    /// The Shapes objects cover a few cells of each 8×8 latent frame, so with the plain mean
    /// the background dominates the loss.
    #[serde(default = "crate::model::one", skip_serializing_if = "is_one")]
    pub object_weight: f64,
    /// Keep the compression MLP of `[inputs] init_from` fixed (only the refiner learns), so
    /// that a stage 1 trained on that MLP's `z_sem` stays valid for the fine-tuned refiner.
    #[serde(default, skip_serializing_if = "is_false")]
    pub freeze_compressor: bool,
    /// Probability of zeroing the text in a training sample (CFG's unconditional branch; the
    /// refiner's default 0.1). Higher makes stage 2 learn to render from `z_sem` alone.
    #[serde(
        default = "default_text_drop",
        skip_serializing_if = "is_default_text_drop"
    )]
    pub text_drop: f64,
    /// Scale of the compression MLP's posterior noise in the `z_sem` stage 2 trains on:
    /// `z_sem = mean + posterior_noise·σ·ε`. 1 (the default) is the VAE-style sample; 0 trains
    /// on the posterior mean, which is what stage 2 receives at inference (the real clip's
    /// `encode_mean`, or stage 1's samples of it). With the MLP's KL pulling σ towards 1 the
    /// sample can be mostly noise (measured in session 16: per-channel variance of the mean
    /// 0.2–0.45 against a mean σ² of 0.56–0.73), which teaches stage 2 to ignore `z_sem`.
    /// The RAE-style `sem_noise_max` augmentation applies on top either way.
    #[serde(default = "crate::model::one", skip_serializing_if = "is_one")]
    pub posterior_noise: f64,
}

fn default_text_drop() -> f64 {
    0.1
}

fn is_default_text_drop(p: &f64) -> bool {
    *p == default_text_drop()
}

fn yes() -> bool {
    true
}

fn is_one(v: &f64) -> bool {
    *v == 1.0
}

fn is_false(v: &bool) -> bool {
    !*v
}

fn is_true(v: &bool) -> bool {
    *v
}

/// `cargo xtask train refiner --config FILE`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefinerTrainConfig {
    pub inputs: Inputs,
    pub model: RefinerModel,
    pub data: DataConfig,
    pub train: OptimConfig,
}

/// `cargo xtask train semantic --config FILE`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SemanticTrainConfig {
    pub inputs: Inputs,
    pub model: SemanticModel,
    pub data: DataConfig,
    pub train: OptimConfig,
    /// Whole stories mixed into training, one `[[stories]]` table per story length (none =
    /// single clips only, as before session 20).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stories: Vec<StoryData>,
}

/// A `[[stories]]` table of the stage-1 config: a pool of multi-segment stories of the same world
/// (training split, `[data]`'s size and frame stride), each with one prompt per segment, so
/// the generator trains on what `semgen generate --prompt-file` asks of it: a whole story's
/// semantic sequence in one full-attention pass, each segment's tokens cross-attending to
/// their own caption. Trained on single clips alone it has only seen 3-frame grids and one
/// shared prompt, and its story plans follow each segment's motion no better than chance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoryData {
    /// Stories in the pool (training stories `0..count` of the world).
    pub count: usize,
    /// Segments per story (at least 2; `1 + segments · 16` frames with the default world).
    pub segments: usize,
    /// Stories per story batch.
    pub batch: usize,
    /// Probability that a step trains on a batch of these stories instead of a clip batch, in
    /// (0, 1]; the fractions of all tables sum to at most 1 (the rest are clip steps).
    pub fraction: f64,
}

impl StoryData {
    fn validate_all(tables: &[StoryData]) -> Result<(), TrainError> {
        for t in tables {
            t.validate()?;
        }
        let total: f64 = tables.iter().map(|t| t.fraction).sum();
        if total > 1.0 + 1e-9 {
            return Err(TrainError::Config(format!(
                "[[stories]] fractions sum to {total}, more than 1"
            )));
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), TrainError> {
        let bad = |m: String| Err(TrainError::Config(format!("[[stories]] {m}")));
        if self.count == 0 || self.batch == 0 {
            return bad(format!(
                "count and batch must be at least 1, got {} and {}",
                self.count, self.batch
            ));
        }
        if self.segments < 2 {
            return bad(format!(
                "segments must be at least 2 (one segment is a clip), got {}",
                self.segments
            ));
        }
        if !(self.fraction > 0.0 && self.fraction <= 1.0) {
            return bad(format!("fraction must be in (0, 1], got {}", self.fraction));
        }
        Ok(())
    }
}

/// Reads a TOML training config.
pub fn read_toml<C: serde::de::DeserializeOwned>(path: &Path) -> Result<C, TrainError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| TrainError::Config(format!("{}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| TrainError::Config(format!("{}: {e}", path.display())))
}

// ---------------------------------------------------------------------------------------------
// Feature pool
// ---------------------------------------------------------------------------------------------

/// The frozen encoders of a training run.
pub struct Frozen<B: Backend> {
    pub vae: WanVae<B>,
    pub vision: QwenVision<B>,
    pub text: TextEncoder<B>,
    pub vision_config: QwenVisionConfig,
    pub text_config: Umt5Config,
}

impl<B: Backend> Frozen<B> {
    pub fn load(inputs: &Inputs, text_len: usize, device: &B::Device) -> Result<Self, ModelError> {
        let vae = load_vae(&inputs.vae, device)?;
        let (vision, vision_config) =
            load_vision(&inputs.encoder.join(crate::model::ENCODER_FILE), device)?;
        let txt = inputs.encoder.join(crate::model::TEXT_FILE);
        let (umt5, text_config) = load_umt5(&txt, device)?;
        let text = TextEncoder::new(PromptTokenizer::shapes(), umt5, text_len).map_err(|e| {
            ModelError::Config {
                path: txt.clone(),
                component: "text_encoder".into(),
                reason: e.to_string(),
            }
        })?;
        Ok(Self {
            vae,
            vision,
            text,
            vision_config,
            text_config,
        })
    }
}

/// The Shapes world a pool's clips come from.
fn pool_world(data: &DataConfig) -> Result<ShapesWorld, TrainError> {
    ShapesWorld::new(WorldConfig {
        seed: data.world_seed,
        frames: data.frames,
        height: data.height,
        width: data.width,
        max_objects: data.max_objects,
        ..WorldConfig::default()
    })
    .map_err(TrainError::task)
}

/// Loss weights per latent cell, `[N, 1, F, h, w]` for clips `[N, 3, T, H, W]` under a causal
/// VAE (latent frame 0 = pixel frame 0, latent frame `j ≥ 1` = pixel frames `4j−3 ..= 4j`) with
/// `spatial`-pixel cells: `weight` where some pixel of the cell, in one of its frames, lies in
/// an object's box (semgen-vae's [`object_pixel_boxes`](semgen_vae::train::object_pixel_boxes),
/// the boxes of its own `object_weight`), 1 elsewhere.
pub fn latent_object_weights<B: Backend>(
    plans: &[semgen_data::ClipPlan],
    weight: f64,
    spatial: usize,
    device: &B::Device,
) -> Tensor<B, 5> {
    let Some(first) = plans.first() else {
        return Tensor::zeros([0, 1, 0, 0, 0], device);
    };
    let (t, h, w) = (first.frames(), first.height, first.width);
    let (f, lh, lw) = ((t - 1) / 4 + 1, h / spatial, w / spatial);
    let mut values = vec![1.0f32; plans.len() * f * lh * lw];
    for (b, plan) in plans.iter().enumerate() {
        for (frame, ys, xs) in semgen_vae::train::object_pixel_boxes(plan) {
            let lf = frame.div_ceil(4);
            for y in ys.start() / spatial..=ys.end() / spatial {
                let row = ((b * f + lf) * lh + y) * lw;
                values[row + xs.start() / spatial..=row + xs.end() / spatial].fill(weight as f32);
            }
        }
    }
    Tensor::from_data(TensorData::new(values, [plans.len(), 1, f, lh, lw]), device)
}

/// The plans of the pool's clips (training clips `0..pool`; stories of `segments` when > 1),
/// for the object weightings.
fn pool_plans(
    data: &DataConfig,
    segments: usize,
) -> Result<Vec<semgen_data::ClipPlan>, TrainError> {
    let world = pool_world(data)?;
    (0..data.pool as u64)
        .map(|i| plan_item(&world, Split::Train, i, segments))
        .collect::<Result<Vec<_>, _>>()
        .map_err(TrainError::task)
}

/// Item `i` of a pool: clip `i` of the split, or story `i` when `segments` > 1.
fn plan_item(
    world: &ShapesWorld,
    split: Split,
    i: u64,
    segments: usize,
) -> semgen_data::Result<semgen_data::ClipPlan> {
    if segments > 1 {
        world.plan_story(split, i, segments)
    } else {
        world.plan_clip(split, i)
    }
}

/// Both stages' `object_weight` must be a positive number.
fn check_object_weight(w: f64) -> Result<(), TrainError> {
    if !(w.is_finite() && w > 0.0) {
        return Err(TrainError::Config(format!(
            "object_weight must be a positive number, got {w}"
        )));
    }
    Ok(())
}

/// Per-token loss weights `[N, 1, t, gh, gw]` of stage 1 for clips with these plans: `weight`
/// where some pixel of an object's box (true centre ± radius + 1.5 px, as for
/// [`latent_object_weights`]) lies in the token's cell in one of the two frames its temporal
/// patch samples (`2k·stride` and `(2k+1)·stride`, clamped to the last frame), 1 elsewhere.
pub fn semantic_object_weights<B: Backend>(
    plans: &[semgen_data::ClipPlan],
    weight: f64,
    grid: SemanticGrid,
    device: &B::Device,
) -> Tensor<B, 5> {
    let (t, gh, gw) = (grid.t, grid.h, grid.w);
    let Some(first) = plans.first() else {
        return Tensor::zeros([0, 1, t, gh, gw], device);
    };
    let (frames, h, w) = (first.frames(), first.height, first.width);
    let (ch, cw) = (h.div_ceil(gh), w.div_ceil(gw));
    let mut values = vec![1.0f32; plans.len() * t * gh * gw];
    for (b, plan) in plans.iter().enumerate() {
        for (frame, ys, xs) in semgen_vae::train::object_pixel_boxes(plan) {
            for k in 0..t {
                let sampled = [2 * k * grid.stride, (2 * k + 1) * grid.stride];
                if !sampled.iter().any(|&f| f.min(frames - 1) == frame) {
                    continue;
                }
                for y in ys.start() / ch..=(ys.end() / ch).min(gh - 1) {
                    let row = ((b * t + k) * gh + y) * gw;
                    let (x0, x1) = (xs.start() / cw, (xs.end() / cw).min(gw - 1));
                    values[row + x0..=row + x1].fill(weight as f32);
                }
            }
        }
    }
    Tensor::from_data(TensorData::new(values, [plans.len(), 1, t, gh, gw]), device)
}

/// `N` clips through the frozen models.
#[derive(Debug, Clone)]
pub struct FeaturePool<B: Backend> {
    /// Posterior means of the VAE, `[N, z, F, h, w]` (not normalised); `None` when not asked
    /// for (stage 1 never needs them, and the VAE is the slow part).
    pub latents: Option<Tensor<B, 5>>,
    /// Uncompressed semantic features `[N, d, t, h, w]`.
    pub features: Tensor<B, 5>,
    /// Text features `[N·S, text_len, d_text]`: item `i`'s `S` prompts are rows `i·S .. (i+1)·S`.
    pub text: Tensor<B, 3>,
    /// One caption per item (a story's segment captions joined by `"; "`).
    pub captions: Vec<String>,
    /// Prompts per item `S`: 1 for clips, the segment count for a pool of stories.
    pub segments: usize,
}

impl<B: Backend> FeaturePool<B> {
    /// Encodes clips `0..n` of a split of the Shapes world, `chunk` at a time.
    pub fn build(
        frozen: &Frozen<B>,
        data: &DataConfig,
        split: Split,
        with_latents: bool,
    ) -> Result<Self, TrainError> {
        Self::build_items(frozen, data, split, with_latents, 1)
    }

    /// Clips (`segments` = 1) or stories of `segments` segments (`0..data.pool` of the split).
    fn build_items(
        frozen: &Frozen<B>,
        data: &DataConfig,
        split: Split,
        with_latents: bool,
        segments: usize,
    ) -> Result<Self, TrainError> {
        let world = pool_world(data)?;
        let device = frozen.vae.quant_conv.weight.device();
        let from_vae = data.semantic_source == SemanticSource::Vae;
        if segments > 1 && (from_vae || with_latents) {
            // vae_semantic_grid and the refiner's latents are laid out for clips.
            return Err(TrainError::Config(
                "story pools hold encoder features only (stage 1; semantic_source = encoder)"
                    .into(),
            ));
        }
        let (mut lat, mut feat, mut txt, mut captions) = (vec![], vec![], vec![], vec![]);
        let chunk = 16;
        for first in (0..data.pool).step_by(chunk) {
            let n = chunk.min(data.pool - first);
            let clips = (first..first + n)
                .map(|i| {
                    let plan = plan_item(&world, split, i as u64, segments)?;
                    Ok(semgen_data::Clip {
                        video: plan.render()?,
                        plan,
                    })
                })
                .collect::<semgen_data::Result<Vec<_>>>()
                .map_err(TrainError::task)?;
            let videos: Vec<_> = clips.iter().map(|c| c.video.clone()).collect();
            let x: Tensor<B, 5> = videos_to_tensor(&videos, &device).map_err(TrainError::task)?;
            if with_latents || from_vae {
                lat.push(frozen.vae.encode(x.clone()).map_err(TrainError::task)?);
            }
            if !from_vae {
                let sampled = sample_frames(x, data.frame_stride);
                feat.push(
                    frozen
                        .vision
                        .encode_clip(sampled)
                        .map_err(TrainError::task)?
                        .features,
                );
            }
            let prompts: Vec<String> = clips
                .iter()
                .flat_map(|c| c.prompt().segment_captions())
                .collect();
            let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
            txt.push(frozen.text.encode(&refs).map_err(TrainError::task)?.hidden);
            captions.extend(clips.iter().map(|c| c.caption()));
        }
        let latents = (!lat.is_empty()).then(|| Tensor::cat(lat, 0));
        let features = match (&latents, from_vae) {
            (Some(l), true) => {
                // Per-channel standardised (on this pool), as the refiner's latents are.
                let (mean, std) = channel_stats(l);
                let z = mean.len();
                let t = |v: Vec<f32>| {
                    Tensor::<B, 1>::from_data(TensorData::new(v, [z]), &device)
                        .reshape([1, z, 1, 1, 1])
                };
                let normed = (l.clone() - t(mean)) / t(std);
                let c = &frozen.vision_config;
                let p = c.pixels_per_token();
                let sampled = (data.frames - 1) / data.frame_stride.max(1) + 1;
                let grid = SemanticGrid {
                    t: sampled.div_ceil(c.temporal_patch_size),
                    h: data.height / p,
                    w: data.width / p,
                    stride: data.frame_stride * c.temporal_patch_size / 2,
                };
                vae_semantic_grid(normed, data.frames, grid).map_err(TrainError::task)?
            }
            _ => Tensor::cat(feat, 0),
        };
        Ok(Self {
            latents: latents.filter(|_| with_latents),
            features,
            text: Tensor::cat(txt, 0),
            captions,
            segments,
        })
    }

    /// [`FeaturePool::build`] through a cache file in `dir` (when given), keyed by the SHA-256
    /// of the frozen checkpoints' bytes, the data config (less the batch size) and the split.
    ///
    /// The file is a safetensors file of f32 tensors `latents` (when built with them),
    /// `features` and `text`, with the captions as JSON in its metadata (`captions`); it is
    /// written atomically. A cache without latents does not serve a request for them (the pool
    /// is rebuilt and the cache replaced); one with latents serves every request.
    pub fn cached(
        frozen: &Frozen<B>,
        inputs: &Inputs,
        data: &DataConfig,
        split: Split,
        with_latents: bool,
    ) -> Result<Self, TrainError> {
        Self::cached_items(frozen, inputs, data, split, with_latents, 1)
    }

    /// Stories `0..data.pool` of `segments` segments through the frozen semantic and text
    /// encoders (no latents), cached as [`FeaturePool::cached`] does (the key also names the
    /// segment count; `text` holds each story's `segments` prompts, in order).
    pub fn cached_stories(
        frozen: &Frozen<B>,
        inputs: &Inputs,
        data: &DataConfig,
        split: Split,
        segments: usize,
    ) -> Result<Self, TrainError> {
        Self::cached_items(frozen, inputs, data, split, false, segments)
    }

    fn cached_items(
        frozen: &Frozen<B>,
        inputs: &Inputs,
        data: &DataConfig,
        split: Split,
        with_latents: bool,
        segments: usize,
    ) -> Result<Self, TrainError> {
        let Some(dir) = &inputs.pool_cache else {
            return Self::build_items(frozen, data, split, with_latents, segments);
        };
        let path = dir.join(format!(
            "pool-{}.safetensors",
            pool_key(inputs, data, split, segments)?
        ));
        let device = frozen.vae.quant_conv.weight.device();
        if let Some(pool) = Self::read(&path, segments, &device) {
            if pool.latents.is_some() || !with_latents {
                println!("feature pool from {}", path.display());
                return Ok(Self {
                    latents: pool.latents.filter(|_| with_latents),
                    ..pool
                });
            }
        }
        let pool = Self::build_items(frozen, data, split, with_latents, segments)?;
        pool.write(&path)?;
        Ok(pool)
    }

    fn write(&self, path: &Path) -> Result<(), TrainError> {
        use safetensors::tensor::{Dtype, TensorView};
        let io = |e: String| TrainError::Io {
            path: path.to_path_buf(),
            reason: e,
        };
        let mut named: Vec<(&str, Vec<usize>, Vec<u8>)> = Vec::new();
        let mut add = |name: &'static str, dims: Vec<usize>, data: TensorData| {
            let bytes = data
                .to_vec::<f32>()
                .unwrap_or_default()
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            named.push((name, dims, bytes));
        };
        if let Some(l) = &self.latents {
            add("latents", l.dims().to_vec(), l.to_data());
        }
        add(
            "features",
            self.features.dims().to_vec(),
            self.features.to_data(),
        );
        add("text", self.text.dims().to_vec(), self.text.to_data());
        let views = named
            .iter()
            .map(|(n, d, b)| {
                TensorView::new(Dtype::F32, d.clone(), b)
                    .map(|v| (n.to_string(), v))
                    .map_err(|e| io(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let meta = std::collections::HashMap::from([(
            "captions".to_string(),
            serde_json::to_string(&self.captions).map_err(|e| io(e.to_string()))?,
        )]);
        let bytes = safetensors::serialize(views, &Some(meta)).map_err(|e| io(e.to_string()))?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io(e.to_string()))?;
        }
        // Atomic, through a per-process temporary file: two trainings may build one pool at once.
        write_atomic(path, &bytes).map_err(|e| io(e.to_string()))
    }

    /// The pool in a cache file, `segments` prompts per item; `None` when it is absent,
    /// unreadable or of another shape (then it is rebuilt).
    fn read(path: &Path, segments: usize, device: &B::Device) -> Option<Self> {
        let bytes = std::fs::read(path).ok()?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).ok()?;
        let captions: Vec<String> =
            serde_json::from_str(meta.metadata().as_ref()?.get("captions")?).ok()?;
        let st = safetensors::SafeTensors::deserialize(&bytes).ok()?;
        fn get<B: Backend, const D: usize>(
            st: &safetensors::SafeTensors,
            name: &str,
            device: &B::Device,
        ) -> Option<Tensor<B, D>> {
            let t = st.tensor(name).ok()?;
            if t.dtype() != safetensors::Dtype::F32 || t.shape().len() != D {
                return None;
            }
            let values: Vec<f32> = t
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            Some(Tensor::from_data(
                TensorData::new(values, t.shape().to_vec()),
                device,
            ))
        }
        let features = get::<B, 5>(&st, "features", device)?;
        let text = get::<B, 3>(&st, "text", device)?;
        let n = captions.len();
        (features.dims()[0] == n && text.dims()[0] == n * segments).then_some(Self {
            latents: get::<B, 5>(&st, "latents", device).filter(|l| l.dims()[0] == n),
            features,
            text,
            captions,
            segments,
        })
    }

    pub fn len(&self) -> usize {
        self.captions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.captions.is_empty()
    }
}

/// Per-channel mean and std of latents `[N, z, F, h, w]`.
pub fn channel_stats<B: Backend>(latents: &Tensor<B, 5>) -> (Vec<f32>, Vec<f32>) {
    let z = latents.dims()[1];
    let flat = latents.clone().swap_dims(0, 1).reshape([z as i32, -1]);
    let mean = flat.clone().mean_dim(1);
    let var = (flat - mean.clone()).square().mean_dim(1);
    let v = |t: Tensor<B, 2>| t.into_data().to_vec::<f32>().unwrap_or_default();
    let std = v(var.sqrt()).into_iter().map(|s| s.max(1e-4)).collect();
    (v(mean), std)
}

/// The cache key of a pool: SHA-256 over the frozen checkpoints' bytes, the data config (less
/// the batch size, which does not change the pool), the split and, for stories, the segment
/// count; 16 hex digits.
fn pool_key(
    inputs: &Inputs,
    data: &DataConfig,
    split: Split,
    segments: usize,
) -> Result<String, TrainError> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for file in [
        inputs.vae.clone(),
        inputs.encoder.join(crate::model::ENCODER_FILE),
        inputs.encoder.join(crate::model::TEXT_FILE),
    ] {
        let bytes = std::fs::read(&file).map_err(|e| TrainError::Io {
            path: file.clone(),
            reason: e.to_string(),
        })?;
        h.update(Sha256::digest(&bytes));
    }
    let data = DataConfig {
        batch: 0,
        ..data.clone()
    };
    h.update(serde_json::to_string(&data).unwrap_or_default());
    h.update(format!("{split:?}"));
    if segments > 1 {
        // Clip pools keep the keys they had before stories existed.
        h.update(format!("stories of {segments}"));
    }
    Ok(h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// The semantic token grid of a clip: `t × h × w` tokens, token `k` starting at pixel frame
/// `2·k·stride` (the encoder's temporal patch is 2 sampled frames, `stride` apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SemanticGrid {
    pub t: usize,
    pub h: usize,
    pub w: usize,
    pub stride: usize,
}

/// VAE latents `[N, z, F, h, w]` of `frames`-frame clips on the semantic token grid
/// `[t, gh, gw]`: for semantic token `k` the latent frame holding pixel frame `2·k·stride` (the
/// first frame of the token's temporal patch; latent frame `j` ends at pixel frame `4j`), and
/// the `r × r` latent cells under each token stacked into channels (`z·r²` features per token).
pub fn vae_semantic_grid<B: Backend>(
    latents: Tensor<B, 5>,
    frames: usize,
    grid: SemanticGrid,
) -> Result<Tensor<B, 5>, String> {
    let [n, z, f, h, w] = latents.dims();
    let (t, gh, gw) = (grid.t, grid.h, grid.w);
    if gh == 0 || gw == 0 || h % gh != 0 || w % gw != 0 || h / gh != w / gw || frames == 0 {
        return Err(format!(
            "a {h}x{w} latent grid does not tile into {gh}x{gw} semantic tokens"
        ));
    }
    let r = h / gh;
    let idx: Vec<i64> = (0..t)
        .map(|k| {
            let p = (2 * k * grid.stride).min(frames - 1);
            (p.div_ceil(4)).min(f - 1) as i64
        })
        .collect();
    let device = latents.device();
    let picked = latents.select(
        2,
        Tensor::<B, 1, Int>::from_data(TensorData::new(idx, [t]), &device),
    );
    Ok(picked
        .reshape([n, z, t, gh, r, gw, r])
        .permute([0, 1, 4, 6, 2, 3, 5])
        .reshape([n, z * r * r, t, gh, gw]))
}

fn step_rng(seed: u64, step: u64) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(
        seed ^ (step.wrapping_add(1)).wrapping_mul(0x9E37_79B9_7F4A_7C15),
    )
}

fn pick<B: Backend>(
    n: usize,
    batch: usize,
    rng: &mut impl Rng,
    device: &B::Device,
) -> Tensor<B, 1, Int> {
    let idx: Vec<i64> = (0..batch).map(|_| rng.random_range(0..n) as i64).collect();
    Tensor::from_data(TensorData::new(idx, [batch]), device)
}

fn to_autodiff<B: AutodiffBackend, const D: usize>(t: Tensor<B::InnerBackend, D>) -> Tensor<B, D> {
    Tensor::from_inner(t)
}

fn save<B: Backend, M: Module<B> + burn::store::ModuleSnapshot<B>>(
    module: &M,
    path: &Path,
    component: &str,
    step: u64,
    config: serde_json::Value,
) -> Result<(), TrainError> {
    save_checkpoint(
        module,
        path,
        &[],
        &CheckpointMeta::new(component, step, config),
    )
    .map_err(TrainError::task)
}

// ---------------------------------------------------------------------------------------------
// Stage 2: refiner + compression MLP
// ---------------------------------------------------------------------------------------------

/// Loads the weights of `path` into `module` after checking that the file's stored config is
/// `config` (a fine-tune keeps the architecture). `training_only` copies this run's
/// training-time settings (dropout rates, noise levels) into the stored config before the
/// comparison: a fine-tune may change those.
fn init_from<B, C, M>(
    module: M,
    config: &C,
    path: &Path,
    component: &str,
    training_only: fn(&mut C, &C),
) -> Result<M, TrainError>
where
    B: Backend,
    C: serde::de::DeserializeOwned + crate::model::ParamFloor + PartialEq + std::fmt::Debug,
    M: Module<B> + burn::store::ModuleSnapshot<B>,
{
    let mut stored: C = crate::model::stored_config(path, component).map_err(TrainError::task)?;
    training_only(&mut stored, config);
    if &stored != config {
        return Err(TrainError::task(format!(
            "init_from: {} holds a {component} of another config ({stored:?}) than this run's ({config:?})",
            path.display()
        )));
    }
    let (module, _) = semgen_core::checkpoint::load_checkpoint(module, path, component, &[])
        .map_err(TrainError::task)?;
    println!("{component} initialised from {}", path.display());
    Ok(module)
}

/// A stage whose `init_from` may hold fewer blocks than this run's model (depth growth).
trait GrowsInDepth<B: Backend>: Module<B> + burn::store::ModuleSnapshot<B> {
    type Config: serde::de::DeserializeOwned
        + crate::model::ParamFloor
        + PartialEq
        + std::fmt::Debug;
    fn num_layers(config: &Self::Config) -> usize;
    /// `config` with `layers` blocks.
    fn with_num_layers(config: &Self::Config, layers: usize) -> Self::Config;
    fn build(config: &Self::Config, device: &B::Device) -> Result<Self, TrainError>;
    /// This model's blocks, then `deeper`'s extra blocks as identities (`WanDit::grown_to`);
    /// `deeper`'s config, every other weight this model's.
    fn grown_into(self, deeper: Self) -> Result<Self, TrainError>;
}

impl<B: Backend> GrowsInDepth<B> for Refiner<B> {
    type Config = RefinerConfig;
    fn num_layers(config: &RefinerConfig) -> usize {
        config.dit.num_layers
    }
    fn with_num_layers(config: &RefinerConfig, layers: usize) -> RefinerConfig {
        let mut config = config.clone();
        config.dit.num_layers = layers;
        config
    }
    fn build(config: &RefinerConfig, device: &B::Device) -> Result<Self, TrainError> {
        config.init::<B>(device).map_err(TrainError::task)
    }
    fn grown_into(self, deeper: Self) -> Result<Self, TrainError> {
        let dit = self.dit.grown_to(deeper.dit).map_err(TrainError::task)?;
        Ok(Refiner {
            dit,
            config: deeper.config,
            ..self
        })
    }
}

impl<B: Backend> GrowsInDepth<B> for SemanticDit<B> {
    type Config = SemanticDitConfig;
    fn num_layers(config: &SemanticDitConfig) -> usize {
        config.dit.num_layers
    }
    fn with_num_layers(config: &SemanticDitConfig, layers: usize) -> SemanticDitConfig {
        let mut config = config.clone();
        config.dit.num_layers = layers;
        config
    }
    fn build(config: &SemanticDitConfig, device: &B::Device) -> Result<Self, TrainError> {
        config.init::<B>(device).map_err(TrainError::task)
    }
    fn grown_into(self, deeper: Self) -> Result<Self, TrainError> {
        let dit = self.dit.grown_to(deeper.dit).map_err(TrainError::task)?;
        Ok(SemanticDit {
            dit,
            text_refiner: self.text_refiner,
            config: deeper.config,
        })
    }
}

/// [`init_from`], except that a stored model (config `stored`) with fewer blocks than `config`
/// is loaded at its own depth and grown into `model` (identity blocks behind the stored ones),
/// so the fine-tune starts from the trained function with more capacity.
fn init_from_or_grow<B: Backend, M: GrowsInDepth<B>>(
    model: M,
    config: &M::Config,
    stored: &M::Config,
    path: &Path,
    component: &str,
    training_only: fn(&mut M::Config, &M::Config),
    device: &B::Device,
) -> Result<M, TrainError> {
    let (have, want) = (M::num_layers(stored), M::num_layers(config));
    if have >= want {
        return init_from(model, config, path, component, training_only);
    }
    let shallower = M::with_num_layers(config, have);
    let trained = init_from(
        M::build(&shallower, device)?,
        &shallower,
        path,
        component,
        training_only,
    )?;
    let grown = trained.grown_into(model)?;
    println!("{component} grown from {have} to {want} layers");
    Ok(grown)
}

/// The modules trained together in stage 2.
#[derive(Module, Debug)]
pub struct RefinerPair<B: Backend> {
    pub refiner: Refiner<B>,
    pub compressor: Compressor<B>,
}

/// Stage 2 as a [`TrainTask`].
pub struct RefinerTask<B: AutodiffBackend> {
    pub config: RefinerTrainConfig,
    pub refiner_config: RefinerConfig,
    pub compressor_config: CompressorConfig,
    /// Normalised latents (the VAE's latent statistics measured on the pool).
    latents: Tensor<B, 5>,
    features: Tensor<B, 5>,
    text: Tensor<B, 3>,
    /// Per-cell loss weights `[N, 1, F, h, w]` when `object_weight` ≠ 1.
    weights: Option<Tensor<B, 5>>,
    layout: TokenLayout<B>,
    /// The frozen VAE with the latent statistics measured on the pool (exported beside).
    pub vae: WanVae<B::InnerBackend>,
}

impl<B: AutodiffBackend> RefinerTask<B> {
    /// Builds the pool and the initial models. The VAE's latent mean/std are measured on the
    /// pool and written into the exported VAE config (so the refiner sees unit-scale latents).
    pub fn new(
        config: RefinerTrainConfig,
        frozen: &Frozen<B::InnerBackend>,
        device: &B::Device,
    ) -> Result<(Self, RefinerPair<B>), TrainError> {
        config.train.validate()?;
        check_object_weight(config.model.object_weight)?;
        let p = config.model.posterior_noise;
        if !(p.is_finite() && p >= 0.0) {
            return Err(TrainError::Config(format!(
                "posterior_noise must be a number >= 0, got {p}"
            )));
        }
        let inputs = &config.inputs;
        if config.model.freeze_compressor && !(inputs.init_from.is_some() && inputs.init_compressor)
        {
            return Err(TrainError::Config(
                "freeze_compressor needs [inputs] init_from with its compression MLP (the one to keep; init_compressor = true)".into(),
            ));
        }
        if !inputs.init_compressor && inputs.init_from.is_none() {
            return Err(TrainError::Config(
                "init_compressor = false only applies with [inputs] init_from".into(),
            ));
        }
        let pool = FeaturePool::cached(frozen, inputs, &config.data, Split::Train, true)?;
        let latents = pool
            .latents
            .clone()
            .ok_or_else(|| TrainError::task("no latents"))?;
        let (mean, std) = channel_stats(&latents);
        let mut vae_config = frozen.vae.config.clone();
        vae_config.latents_mean = mean;
        vae_config.latents_std = std;
        let mut vae = frozen.vae.clone();
        vae.config = vae_config.clone();
        let normed = vae.normalize(latents);
        let m = &config.model;
        // The encoder's width, or z·r² for VAE-sourced tokens.
        let d_sem = pool.features.dims()[1];
        let compressor_config = CompressorConfig::new(d_sem)
            // d_out 0 (Base-CT): no semantic tokens, so no MLP parameters either.
            .with_d_out((m.compress && m.d_out > 0).then_some(m.d_out))
            .with_kl_weight(m.kl_weight);
        let semantic_dim = if m.d_out == 0 {
            0
        } else {
            compressor_config.out_dim()
        };
        let dit = m
            .size
            .backbone(vae_config.z_dim, frozen.text_config.d_model, [1, 2, 2]);
        let mut geometry = SemanticGeometry::shapes();
        geometry.frame_stride = config.data.frame_stride;
        geometry.pixels_per_token = frozen.vision_config.pixels_per_token();
        let refiner_config = RefinerConfig::semanticgen(dit, semantic_dim, geometry)
            .with_sem_noise_max(m.sem_noise_max)
            .with_sem_drop(if semantic_dim == 0 { 0.0 } else { 0.1 })
            .with_text_drop(m.text_drop);
        B::seed(device, config.train.seed);
        let mut refiner = refiner_config.init::<B>(device).map_err(TrainError::task)?;
        let mut compressor = compressor_config
            .init::<B>(device)
            .map_err(TrainError::task)?;
        if let Some(dir) = &inputs.init_from {
            let path = dir.join(crate::model::REFINER_FILE);
            let training_only = |stored: &mut RefinerConfig, run: &RefinerConfig| {
                stored.sem_noise_max = run.sem_noise_max;
                stored.text_drop = run.text_drop;
                stored.sem_drop = run.sem_drop;
                stored.timesteps = run.timesteps.clone();
            };
            let stored: RefinerConfig =
                crate::model::stored_config(&path, "refiner").map_err(TrainError::task)?;
            refiner = init_from_or_grow(
                refiner,
                &refiner_config,
                &stored,
                &path,
                "refiner",
                training_only,
                device,
            )?;
            if semantic_dim > 0 {
                if inputs.init_compressor {
                    compressor = init_from(
                        compressor,
                        &compressor_config,
                        &dir.join(crate::model::COMPRESSOR_FILE),
                        "compressor",
                        |stored, run| stored.kl_weight = run.kl_weight,
                    )?;
                } else {
                    println!("compressor starts fresh (init_compressor = false)");
                }
            }
        }
        let weights = if m.object_weight != 1.0 {
            let plans = pool_plans(&config.data, 1)?;
            Some(to_autodiff(latent_object_weights(
                &plans,
                m.object_weight,
                vae_config.spatial_factor(),
                device,
            )))
        } else {
            None
        };
        let [_, _, f, h, w] = normed.dims();
        let [_, _, st, sh, sw] = pool.features.dims();
        let layout = refiner
            .layout(
                [f, h, w],
                (semantic_dim > 0).then_some([st, sh, sw]),
                device,
            )
            .map_err(TrainError::task)?;
        Ok((
            Self {
                config,
                refiner_config,
                compressor_config,
                latents: to_autodiff(normed),
                features: to_autodiff(pool.features),
                text: to_autodiff(pool.text),
                weights,
                layout,
                vae,
            },
            RefinerPair {
                refiner,
                compressor,
            },
        ))
    }
}

impl<B: AutodiffBackend> TrainTask<B> for RefinerTask<B> {
    type Model = RefinerPair<B>;

    fn loss(&self, model: &RefinerPair<B>, step: u64) -> Result<Tensor<B, 1>, TrainError> {
        let mut rng = step_rng(self.config.train.seed, step);
        let device = self.latents.device();
        let n = self.latents.dims()[0];
        let idx = pick::<B>(n, self.config.data.batch, &mut rng, &device);
        let latents = self.latents.clone().select(0, idx.clone());
        let text = self.text.clone().select(0, idx.clone());
        let weights = self.weights.clone().map(|w| w.select(0, idx.clone()));
        let (z_sem, kl) = if self.refiner_config.has_semantic() {
            let feats = to_tokens(self.features.clone().select(0, idx));
            let mut shape = feats.dims();
            shape[4] = self.compressor_config.out_dim();
            let mut noise = semgen_refiner::refiner::host_normal::<B, 5>(shape, &mut rng, &device);
            // Drawn either way, so the random stream (and resume) does not depend on the scale.
            if self.config.model.posterior_noise != 1.0 {
                noise = noise.mul_scalar(self.config.model.posterior_noise);
            }
            if self.config.model.freeze_compressor {
                // Off the autodiff graph (no gradients reach it, and no graph is left behind:
                // see semgen-vae's decoder_only); its KL term is a constant then.
                let out = model
                    .compressor
                    .valid()
                    .forward_with_noise(feats.inner(), noise.inner());
                (Some(from_tokens(Tensor::from_inner(out.sample))), None)
            } else {
                let out = model.compressor.forward_with_noise(feats, noise);
                let kl = out.weighted_kl();
                (Some(from_tokens(out.sample)), Some(kl))
            }
        } else {
            (None, None)
        };
        let loss = model.refiner.training_loss(
            RefinerBatch {
                latents,
                z_sem,
                text,
                weights,
            },
            &self.layout,
            &mut rng,
        );
        Ok(match kl {
            Some(kl) => loss + kl,
            None => loss,
        })
    }

    fn export(
        &self,
        model: &RefinerPair<B::InnerBackend>,
        dir: &Path,
        step: u64,
    ) -> Result<(), TrainError> {
        let json = |v: serde_json::Result<serde_json::Value>| v.map_err(TrainError::task);
        save(
            &model.refiner,
            &dir.join(crate::model::REFINER_FILE),
            "refiner",
            step,
            json(serde_json::to_value(&self.refiner_config))?,
        )?;
        save(
            &model.compressor,
            &dir.join(crate::model::COMPRESSOR_FILE),
            "compressor",
            step,
            json(serde_json::to_value(&self.compressor_config))?,
        )?;
        // The VAE with the latent statistics this refiner was trained on.
        save_checkpoint(
            &self.vae,
            &dir.join(crate::model::VAE_FILE),
            semgen_vae::DIFFUSERS_KEYS,
            &CheckpointMeta::new(
                semgen_vae::COMPONENT,
                step,
                json(serde_json::to_value(&self.vae.config))?,
            ),
        )
        .map_err(TrainError::task)
    }

    fn fingerprint(&self) -> String {
        serde_json::json!({"model": self.config.model, "data": self.config.data}).to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// Stage 1: semantic generator
// ---------------------------------------------------------------------------------------------

/// Stage 1 as a [`TrainTask`]: rectified flow on `z_sem` of the frozen encoder + MLP.
pub struct SemanticTask<B: AutodiffBackend> {
    pub config: SemanticTrainConfig,
    pub dit_config: SemanticDitConfig,
    z_sem: Tensor<B, 5>,
    text: Tensor<B, 3>,
    /// Per-token loss weights `[N, 1, t, h, w]` when `object_weight` ≠ 1.
    weights: Option<Tensor<B, 5>>,
    /// The story pools of `[[stories]]`, in the same space (one per table, in order).
    stories: Vec<StoryPool<B>>,
    /// The text refiner's attribute targets `[N, L, sum(groups)]` (with its attribute weight).
    attributes: Option<Tensor<B, 3>>,
}

/// Stage 1's story pool: `z_sem [N, d, t, h, w]` of whole stories (model space), their segment
/// prompts `[N, S, L, d_text]` and, with `object_weight`, the per-token weights.
struct StoryPool<B: AutodiffBackend> {
    z_sem: Tensor<B, 5>,
    text: Tensor<B, 4>,
    weights: Option<Tensor<B, 5>>,
    /// Attribute targets `[N, S, L, sum(groups)]`.
    attributes: Option<Tensor<B, 4>>,
}

/// One-hot targets of the text refiner's attribute head for a pool's prompts,
/// `[N·S, text_len, sum(ATTRIBUTE_GROUPS)]` in the pool's text row order: each token of an
/// object's phrase gets that object's classes ([`semgen_data::ScenePrompt::word_objects`]); the
/// other tokens are all zero. The Shapes tokenizer has one token per word (checked per prompt).
pub fn attribute_targets<B: Backend>(
    captions: &[String],
    segments: usize,
    tokenizer: &PromptTokenizer,
    text_len: usize,
    device: &B::Device,
) -> Result<Tensor<B, 3>, TrainError> {
    let groups = semgen_data::ATTRIBUTE_GROUPS;
    let k: usize = groups.iter().sum();
    let mut out = vec![0.0f32; captions.len() * segments * text_len * k];
    let mut row = 0;
    for caption in captions {
        let prompt = semgen_data::ShapesPrompt::parse(caption).map_err(|e| {
            TrainError::Config(format!("attribute targets: caption \"{caption}\": {e}"))
        })?;
        if prompt.segments.len() != segments {
            return Err(TrainError::Config(format!(
                "attribute targets: caption \"{caption}\" has {} segments, the pool {segments}",
                prompt.segments.len()
            )));
        }
        for scene in &prompt.segments {
            let text = scene.to_string();
            let owners = scene.word_objects();
            let tokens = tokenizer
                .tokenize(&[text.as_str()], owners.len() + 2)
                .map_err(TrainError::task)?;
            // Words, then the end token.
            if tokens.lengths() != [owners.len() + 1] {
                return Err(TrainError::Config(format!(
                    "attribute targets need one token per word; \"{text}\" has {} words and {:?} tokens",
                    owners.len(),
                    tokens.lengths()
                )));
            }
            for (p, owner) in owners.iter().enumerate().take(text_len) {
                let Some(o) = owner else { continue };
                let base = (row * text_len + p) * k;
                let mut offset = 0;
                for (class, size) in scene.objects[*o]
                    .attribute_classes()
                    .into_iter()
                    .zip(groups)
                {
                    out[base + offset + class] = 1.0;
                    offset += size;
                }
            }
            row += 1;
        }
    }
    Ok(Tensor::from_data(
        TensorData::new(out, [row, text_len, k]),
        device,
    ))
}

impl<B: AutodiffBackend> SemanticTask<B> {
    pub fn new(
        config: SemanticTrainConfig,
        frozen: &Frozen<B::InnerBackend>,
        compressor: &Compressor<B::InnerBackend>,
        device: &B::Device,
    ) -> Result<(Self, SemanticDit<B>), TrainError> {
        config.train.validate()?;
        if !config.inputs.init_compressor {
            return Err(TrainError::Config(
                "init_compressor applies to refiner runs only (stage 1 reads the MLP of [inputs] refiner)".into(),
            ));
        }
        let ow = config.model.object_weight;
        check_object_weight(ow)?;
        StoryData::validate_all(&config.stories)?;
        let attribute_weight = config.model.text_refiner_attribute_weight;
        if !(attribute_weight.is_finite() && attribute_weight >= 0.0) {
            return Err(TrainError::Config(format!(
                "text_refiner_attribute_weight must be a number >= 0, got {attribute_weight}"
            )));
        }
        if attribute_weight > 0.0 && config.model.text_refiner_layers == 0 {
            return Err(TrainError::Config(
                "text_refiner_attribute_weight needs a text refiner (text_refiner_layers > 0)"
                    .into(),
            ));
        }
        let text_len = config.data.text_len;
        // The attribute targets of a pool's captions, if asked for.
        let attributes_of = |captions: &[String], segments| {
            if attribute_weight == 0.0 {
                return Ok(None);
            }
            attribute_targets::<B::InnerBackend>(
                captions,
                segments,
                &frozen.text.tokenizer,
                text_len,
                device,
            )
            .map(|t| Some(to_autodiff::<B, 3>(t)))
        };
        let pool = FeaturePool::cached(frozen, &config.inputs, &config.data, Split::Train, false)?;
        // Per-token loss weights of a pool (clips, or stories of `segments`), if asked for.
        let weights_of = |features: &Tensor<B::InnerBackend, 5>, data: &DataConfig, segments| {
            if ow == 1.0 {
                return Ok(None);
            }
            let [_, _, t, h, w] = features.dims();
            let plans = pool_plans(data, segments)?;
            let grid = SemanticGrid {
                t,
                h,
                w,
                stride: data.frame_stride,
            };
            Ok::<_, TrainError>(Some(to_autodiff(semantic_object_weights(
                &plans, ow, grid, device,
            ))))
        };
        let weights = weights_of(&pool.features, &config.data, 1)?;
        let attributes = attributes_of(&pool.captions, 1)?;
        let z = compress_mean(compressor, pool.features);
        let d_out = z.dims()[1];
        let (mean, std) = channel_stats(&z);
        let mut dit_config = SemanticDitConfig::on_backbone(
            config
                .model
                .size
                .backbone(d_out, frozen.text_config.d_model, [1, 1, 1]),
            d_out,
        )
        .with_z_mean(mean)
        .with_z_std(std)
        .with_text_refiner((config.model.text_refiner_layers > 0).then(|| {
            TextRefinerConfig::new(frozen.text_config.d_model)
                .with_layers(config.model.text_refiner_layers)
                .with_output_gain(config.model.text_refiner_gain)
                .with_attribute_groups(if attribute_weight > 0.0 {
                    semgen_data::ATTRIBUTE_GROUPS.to_vec()
                } else {
                    Vec::new()
                })
        }));
        // `init_from`'s generator file and its stored config (read once: its statistics here,
        // its depth below).
        let init = match &config.inputs.init_from {
            Some(dir) => {
                let path = dir.join(crate::model::SEMANTIC_FILE);
                let stored: SemanticDitConfig =
                    crate::model::stored_config(&path, "semantic_dit").map_err(TrainError::task)?;
                Some((path, stored))
            }
            None => None,
        };
        if let Some((_, stored)) = &init {
            // A fine-tune continues in the stored generator's space: its statistics, not this
            // pool's (they differ a little from pool to pool, and the weights were fitted to them).
            dit_config.z_mean = stored.z_mean.clone();
            dit_config.z_std = stored.z_std.clone();
        }
        let z = dit_config.to_model_space(z);
        // The story pools, in the same space as the clips.
        let mut stories = Vec::new();
        for st in &config.stories {
            let data = DataConfig {
                pool: st.count,
                ..config.data.clone()
            };
            let pool = FeaturePool::cached_stories(
                frozen,
                &config.inputs,
                &data,
                Split::Train,
                st.segments,
            )?;
            let [_, l, d] = pool.text.dims();
            stories.push(StoryPool {
                weights: weights_of(&pool.features, &data, st.segments)?,
                attributes: attributes_of(&pool.captions, st.segments)?.map(|a| {
                    let [_, l, k] = a.dims();
                    a.reshape([st.count, st.segments, l, k])
                }),
                z_sem: to_autodiff(
                    dit_config.to_model_space(compress_mean(compressor, pool.features)),
                ),
                text: to_autodiff(pool.text.reshape([st.count, st.segments, l, d])),
            });
        }
        B::seed(device, config.train.seed);
        let mut model = dit_config.init::<B>(device).map_err(TrainError::task)?;
        if let Some((path, stored)) = &init {
            let training_only = |stored: &mut SemanticDitConfig, run: &SemanticDitConfig| {
                stored.text_drop = run.text_drop;
                stored.timesteps = run.timesteps.clone();
            };
            if let (Some(have), Some(want)) = (&stored.text_refiner, &dit_config.text_refiner) {
                if have.attribute_groups != want.attribute_groups {
                    return Err(TrainError::Config(format!(
                        "init_from's text refiner has attribute groups {:?}, this run's {:?} (set text_refiner_attribute_weight to match it)",
                        have.attribute_groups, want.attribute_groups
                    )));
                }
            }
            // A stored generator without a text refiner is loaded as it is and given a fresh
            // (identity) one.
            let graft = match (&stored.text_refiner, &dit_config.text_refiner) {
                (None, Some(r)) => Some(r.clone()),
                _ => None,
            };
            let load_config = match graft {
                Some(_) => SemanticDitConfig {
                    text_refiner: None,
                    ..dit_config.clone()
                },
                None => dit_config.clone(),
            };
            if graft.is_some() {
                model = load_config.init::<B>(device).map_err(TrainError::task)?;
            }
            model = init_from_or_grow(
                model,
                &load_config,
                stored,
                path,
                "semantic_dit",
                training_only,
                device,
            )?;
            if let Some(r) = graft {
                let layers = r.layers;
                model = model
                    .with_text_refiner(r, device)
                    .map_err(TrainError::task)?;
                println!(
                    "semantic_dit: a text refiner of {layers} blocks added (identity at the start)"
                );
            }
        }
        Ok((
            Self {
                config,
                dit_config,
                z_sem: to_autodiff(z),
                text: to_autodiff(pool.text),
                weights,
                stories,
                attributes,
            },
            model,
        ))
    }

    /// Per-channel std of `z_sem` that the generator normalises by (the pool's, or `init_from`'s).
    pub fn z_std(&self) -> Vec<f32> {
        self.dit_config.z_std.clone()
    }

    /// The pool's `z_sem` in the generator's (per-channel standardised) space, `[N, d, t, h, w]`:
    /// the real distribution stage 1 learns.
    pub fn z_sem(&self) -> Tensor<B::InnerBackend, 5> {
        self.z_sem.clone().inner()
    }
}

impl<B: AutodiffBackend> TrainTask<B> for SemanticTask<B> {
    type Model = SemanticDit<B>;

    fn loss(&self, model: &SemanticDit<B>, step: u64) -> Result<Tensor<B, 1>, TrainError> {
        let mut rng = step_rng(self.config.train.seed, step);
        let device = self.z_sem.device();
        // Drawn only with stories, so clip-only runs keep their random stream (and resume).
        let story = if self.stories.is_empty() {
            None
        } else {
            let u = rng.random::<f64>();
            let mut upto = 0.0;
            self.config.stories.iter().position(|st| {
                upto += st.fraction;
                u < upto
            })
        };
        let (z, weights, batch) = match story {
            Some(i) => (
                &self.stories[i].z_sem,
                &self.stories[i].weights,
                self.config.stories[i].batch,
            ),
            None => (&self.z_sem, &self.weights, self.config.data.batch),
        };
        let idx = pick::<B>(z.dims()[0], batch, &mut rng, &device);
        let text = match story {
            Some(i) => SemanticText::Segments(self.stories[i].text.clone().select(0, idx.clone())),
            None => SemanticText::Shared(self.text.clone().select(0, idx.clone())),
        };
        // The attribute loss reads the selected prompts, one row per prompt.
        let attributes = match story {
            Some(i) => self.stories[i].attributes.as_ref().map(|a| {
                let a = a.clone().select(0, idx.clone()).flatten::<3>(0, 1);
                let SemanticText::Segments(t) = &text else {
                    unreachable!("story batches carry segment prompts")
                };
                (t.clone().flatten::<3>(0, 1), a)
            }),
            None => self.attributes.as_ref().map(|a| {
                let SemanticText::Shared(t) = &text else {
                    unreachable!("clip batches carry one prompt")
                };
                (t.clone(), a.clone().select(0, idx.clone()))
            }),
        };
        let weights = weights.clone().map(|w| w.select(0, idx.clone()));
        let z = z.clone().select(0, idx);
        let loss = model
            .training_loss_weighted(z, text, weights, &mut rng)
            .map_err(TrainError::task)?;
        match (attributes, &model.text_refiner) {
            (Some((text, targets)), Some(refiner)) => {
                let aux = refiner
                    .attribute_loss(text, targets, &semgen_data::ATTRIBUTE_GROUPS)
                    .map_err(TrainError::task)?;
                Ok(loss + aux * self.config.model.text_refiner_attribute_weight)
            }
            _ => Ok(loss),
        }
    }

    fn export(
        &self,
        model: &<SemanticDit<B> as AutodiffModule<B>>::InnerModule,
        dir: &Path,
        step: u64,
    ) -> Result<(), TrainError> {
        save(
            model,
            &dir.join(crate::model::SEMANTIC_FILE),
            "semantic_dit",
            step,
            serde_json::to_value(&self.dit_config).map_err(TrainError::task)?,
        )
    }

    fn fingerprint(&self) -> String {
        let mut f = serde_json::json!({"model": self.config.model, "data": self.config.data});
        if !self.config.stories.is_empty() {
            // Only when set: runs from before stories existed resume as they were.
            f["stories"] = serde_json::json!(self.config.stories);
        }
        f.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    type B = burn::backend::Flex;

    fn ramp(dims: [usize; 5]) -> Tensor<B, 5> {
        let n: usize = dims.iter().product();
        let values: Vec<f32> = (0..n).map(|i| i as f32).collect();
        Tensor::from_data(TensorData::new(values, dims), &Default::default())
    }

    #[test]
    fn the_shipped_stage_configs_parse() {
        // configs/shapes-small/*.toml: every file a `train refiner|semantic` config, and the
        // fine-tune phases carry the settings their comments describe; the baseline's phases
        // (no semantic tokens) train exactly as the shipped stage 2's phases did.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/shapes-small");
        let refiner = |name: &str| read_toml::<RefinerTrainConfig>(&dir.join(name)).unwrap();
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if !name.ends_with(".toml") {
                continue;
            }
            seen += 1;
            if name.starts_with("semantic") {
                read_toml::<SemanticTrainConfig>(&path).unwrap();
            } else {
                let c = read_toml::<RefinerTrainConfig>(&path).unwrap();
                let tuned = name.contains("-objects");
                assert_eq!(c.inputs.init_from.is_some(), tuned, "{name}");
                assert_eq!(c.model.object_weight != 1.0, tuned, "{name}");
                assert_eq!(c.model.freeze_compressor, name.contains("frozen"), "{name}");
                assert_eq!(c.model.d_out == 0, name.starts_with("base"), "{name}");
                let twin = match name.as_str() {
                    "baseline.toml" => "refiner.toml",
                    "baseline-objects.toml" => "refiner-objects.toml",
                    "baseline-objects-2.toml" => "refiner-objects-frozen.toml",
                    _ => continue,
                };
                let twin = refiner(twin);
                assert_eq!((&c.data, &c.train), (&twin.data, &twin.train), "{name}");
                assert_eq!(c.model.object_weight, twin.model.object_weight, "{name}");
            }
        }
        assert_eq!(seen, 9, "configs in {}", dir.display());
    }

    #[test]
    fn the_v2_lineage_configs_parse_and_chain() {
        // configs/shapes-small/v2/NN-*.toml, the shipped model's steps in order: each parses as
        // its kind (refiner, semantic, vae), every run folder it reads is an earlier step's
        // (runs/v2/<file stem>), and stage 2 after its first phase keeps its MLP frozen on the
        // posterior mean, so stage 1's space never moves under it.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/shapes-small/v2");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|n| n.ends_with(".toml"))
            .collect();
        names.sort();
        assert_eq!(names.len(), 12, "{names:?}");
        let earlier = |path: &Path, index: usize| {
            let Ok(run) = path.strip_prefix("runs/v2") else {
                return;
            };
            let stem = run.to_string_lossy().to_string();
            let at = names
                .iter()
                .position(|n| n.trim_end_matches(".toml") == stem);
            assert!(
                matches!(at, Some(a) if a < index),
                "{}: {stem}",
                names[index]
            );
        };
        for (index, name) in names.iter().enumerate() {
            assert!(name.starts_with(&format!("{:02}-", index + 1)), "{name}");
            let path = dir.join(name);
            if name.contains("-vae-") {
                let c = semgen_vae::train::VaeTrainConfig::load(&path).unwrap();
                assert!(
                    c.train.decoder_only,
                    "{name}: the latents stage 2 learned must stay"
                );
                continue;
            }
            let inputs = if name.contains("-semantic-") {
                let c = read_toml::<SemanticTrainConfig>(&path).unwrap();
                assert_eq!(
                    c.inputs.refiner.as_deref(),
                    Some(Path::new("runs/v2/01-refiner-p1"))
                );
                c.inputs
            } else {
                let c = read_toml::<RefinerTrainConfig>(&path).unwrap();
                let first = index == 0;
                assert_eq!(c.model.freeze_compressor, !first, "{name}");
                assert_eq!(c.model.posterior_noise, 0.0, "{name}");
                assert_eq!(c.inputs.init_compressor, !first, "{name}");
                c.inputs
            };
            assert_eq!(
                inputs.encoder,
                Path::new("checkpoints/encoder-next"),
                "{name}"
            );
            for p in inputs.refiner.iter().chain(&inputs.init_from) {
                earlier(p, index);
            }
        }
    }

    #[test]
    fn the_v3_step_continues_v2_with_its_mlp_frozen() {
        // configs/shapes-small/v3: one stage-2 round from the v2 model folder. Stage 1 is v2's,
        // so the MLP that defines its space must stay frozen and loaded, on v2's encoder, and
        // the round must see clips no stage-1 or stage-2 step of v2 saw.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/shapes-small");
        let c = read_toml::<RefinerTrainConfig>(&dir.join("v3/01-refiner-fresh4.toml")).unwrap();
        let v2 = read_toml::<RefinerTrainConfig>(&dir.join("v2/07-refiner-fresh3.toml")).unwrap();
        assert_eq!(
            c.inputs.init_from.as_deref(),
            Some(Path::new("checkpoints/shapes-small-v2"))
        );
        assert!(c.inputs.init_compressor && c.model.freeze_compressor);
        assert_eq!(c.model.posterior_noise, 0.0);
        assert_eq!(c.inputs.encoder, v2.inputs.encoder);
        // Same architecture and loss as v2's last round; only the clips are new.
        assert_eq!(c.model, v2.model);
        for e in std::fs::read_dir(dir.join("v2")).unwrap() {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            let seed = if name.contains("-refiner-") {
                read_toml::<RefinerTrainConfig>(&path)
                    .unwrap()
                    .data
                    .world_seed
            } else if name.contains("-semantic-") {
                read_toml::<SemanticTrainConfig>(&path)
                    .unwrap()
                    .data
                    .world_seed
            } else {
                continue;
            };
            assert_ne!(c.data.world_seed, seed, "{name}");
        }
        let same_data = DataConfig {
            world_seed: v2.data.world_seed,
            ..c.data.clone()
        };
        assert_eq!(same_data, v2.data);
        assert!(c.inputs.pool_cache.unwrap().starts_with("runs/v3"));
    }

    #[test]
    fn the_v4_steps_continue_v2s_stage_1_on_fresh_worlds() {
        // configs/shapes-small/v4: two stage-1 rounds from v2's generator (v3's is v2's), each
        // on clips and stories of a world no earlier step saw, with v2's last stage-1 recipe.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/shapes-small");
        let v2 = read_toml::<SemanticTrainConfig>(&dir.join("v2/11-semantic-4.toml")).unwrap();
        let steps = ["v4/01-semantic-fresh9.toml", "v4/02-semantic-fresh10.toml"]
            .map(|n| read_toml::<SemanticTrainConfig>(&dir.join(n)).unwrap());
        assert_eq!(
            steps[0].inputs.init_from.as_deref(),
            Some(Path::new("checkpoints/shapes-small-v2"))
        );
        assert_eq!(
            steps[1].inputs.init_from.as_deref(),
            Some(Path::new("runs/v4/01-semantic-fresh9"))
        );
        let mut seen = Vec::new();
        for sub in ["v2", "v3"] {
            for e in std::fs::read_dir(dir.join(sub)).unwrap() {
                let path = e.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().to_string();
                if name.contains("-refiner-") {
                    seen.push(
                        read_toml::<RefinerTrainConfig>(&path)
                            .unwrap()
                            .data
                            .world_seed,
                    );
                } else if name.contains("-semantic-") {
                    seen.push(
                        read_toml::<SemanticTrainConfig>(&path)
                            .unwrap()
                            .data
                            .world_seed,
                    );
                }
            }
        }
        for c in &steps {
            // The MLP that defines stage 1's space is v2's (and v3's).
            assert_eq!(
                c.inputs.refiner.as_deref(),
                Some(Path::new("checkpoints/shapes-small-v2"))
            );
            assert_eq!(c.inputs.encoder, v2.inputs.encoder);
            assert_eq!(c.model, v2.model);
            assert_eq!(c.stories, v2.stories);
            assert_eq!(c.train.steps, v2.train.steps);
            assert_eq!(c.train.lr, v2.train.lr);
            assert!(!seen.contains(&c.data.world_seed), "{}", c.data.world_seed);
            seen.push(c.data.world_seed);
            let same_data = DataConfig {
                world_seed: v2.data.world_seed,
                ..c.data.clone()
            };
            assert_eq!(same_data, v2.data);
            assert!(c.inputs.pool_cache.as_ref().unwrap().starts_with("runs/v4"));
        }
    }

    #[test]
    fn the_v5_steps_continue_v4s_stage_1_with_an_attribute_trained_text_refiner() {
        // configs/shapes-small/v5: rounds of 2000 steps from v4's generator, each on a world no
        // earlier step saw, with v4's recipe plus a 2-block text refiner and its attribute loss.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/shapes-small");
        let v4 =
            read_toml::<SemanticTrainConfig>(&dir.join("v4/02-semantic-fresh10.toml")).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(dir.join("v5"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        assert!(names.len() >= 2, "{names:?}");
        let mut previous = "runs/v4/02-semantic-fresh10".to_string();
        let mut seen = vec![9, 10];
        for name in &names {
            let c = read_toml::<SemanticTrainConfig>(&dir.join("v5").join(name)).unwrap();
            assert_eq!(
                c.inputs.init_from.as_deref(),
                Some(Path::new(&previous)),
                "{name}"
            );
            assert_eq!(c.inputs.refiner, v4.inputs.refiner);
            assert_eq!(c.inputs.encoder, v4.inputs.encoder);
            let recipe = SemanticModel {
                text_refiner_layers: 0,
                text_refiner_attribute_weight: 0.0,
                ..c.model.clone()
            };
            assert_eq!(recipe, v4.model);
            assert_eq!(
                (
                    c.model.text_refiner_layers,
                    c.model.text_refiner_attribute_weight
                ),
                (2, 0.2)
            );
            assert_eq!(c.stories, v4.stories);
            assert_eq!(
                c.train,
                OptimConfig {
                    seed: c.train.seed,
                    ..v4.train.clone()
                }
            );
            assert!(
                !seen.contains(&c.data.world_seed),
                "{name}: {}",
                c.data.world_seed
            );
            seen.push(c.data.world_seed);
            assert_eq!(
                DataConfig {
                    world_seed: 10,
                    ..c.data.clone()
                },
                v4.data
            );
            assert!(c.inputs.pool_cache.as_ref().unwrap().starts_with("runs/v5"));
            previous = format!("runs/v5/{}", name.trim_end_matches(".toml"));
        }
    }

    #[test]
    fn text_drop_is_read_and_left_out_of_the_config_text_at_its_default() {
        // The experiments key their runs by the config's TOML text: a new setting at its
        // default must not change that text, and a set value must survive the round trip.
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/shapes-small/refiner.toml");
        let base = read_toml::<RefinerTrainConfig>(&path).unwrap();
        assert_eq!(base.model.text_drop, 0.1);
        let text = toml::to_string(&base).unwrap();
        assert!(!text.contains("text_drop"), "{text}");
        let mut dropped = base.clone();
        dropped.model.text_drop = 0.9;
        let text = toml::to_string(&dropped).unwrap();
        assert!(text.contains("text_drop = 0.9"), "{text}");
        let back: RefinerTrainConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, dropped);
    }

    /// The first `count` training clips' plans of a 64×64 pool world with `frames` frames.
    fn training_plans(world_seed: u64, count: usize, frames: usize) -> Vec<semgen_data::ClipPlan> {
        let data = DataConfig {
            world_seed,
            pool: count,
            batch: 1,
            frames,
            height: 64,
            width: 64,
            max_objects: 2,
            frame_stride: 4,
            text_len: 8,
            semantic_source: SemanticSource::Encoder,
        };
        pool_plans(&data, 1).unwrap()
    }

    #[test]
    fn semantic_object_weights_are_the_pixel_object_boxes_of_each_tokens_sampled_frames() {
        // Stage 1's grid for 17-frame clips sampled every 4th frame: token k sees frames 8k
        // and 8k + 4 (the last token: frame 16 twice), each token a 16x16-pixel cell. The
        // pixel map of the VAE's object weighting, max-pooled the slow way.
        let plans = training_plans(5, 4, 17);
        let d = Default::default();
        let grid = SemanticGrid {
            t: 3,
            h: 4,
            w: 4,
            stride: 4,
        };
        let got = semantic_object_weights::<B>(&plans, 5.0, grid, &d);
        assert_eq!(got.dims(), [4, 1, 3, 4, 4]);
        let got: Vec<f32> = got.into_data().to_vec().unwrap();
        let refs: Vec<&semgen_data::ClipPlan> = plans.iter().collect();
        let pixels: Vec<f32> = semgen_vae::train::object_weight_map::<B>(&refs, 5.0, &d)
            .into_data()
            .to_vec()
            .unwrap();
        let mut marked = 0;
        for b in 0..4 {
            for k in 0..3 {
                for cy in 0..4 {
                    for cx in 0..4 {
                        let mut want = 1.0f32;
                        for t in [(8 * k).min(16), (8 * k + 4).min(16)] {
                            for y in cy * 16..cy * 16 + 16 {
                                for x in cx * 16..cx * 16 + 16 {
                                    // Channel 0 of [b, 3, 17, 64, 64].
                                    want = want.max(pixels[((b * 3 * 17 + t) * 64 + y) * 64 + x]);
                                }
                            }
                        }
                        let i = ((b * 3 + k) * 4 + cy) * 4 + cx;
                        assert_eq!(got[i], want, "clip {b}, token frame {k}, cell ({cy}, {cx})");
                        marked += (want == 5.0) as usize;
                    }
                }
            }
        }
        assert!(
            marked > 0 && marked < got.len(),
            "{marked} of {} tokens marked",
            got.len()
        );
        // The weight 1 is the plain mean: nothing marked.
        let ones = semantic_object_weights::<B>(&plans, 1.0, grid, &d);
        assert_eq!(ones.clone().min().into_scalar(), 1.0);
        assert_eq!(ones.max().into_scalar(), 1.0);
    }

    #[test]
    fn latent_object_weights_are_the_pixel_object_boxes_pooled_to_latent_cells() {
        // The pixel map of the VAE's object weighting, max-pooled over each latent cell's
        // frames (causal groups 0, 1..=4, 5..=8, …) and 8×8 pixels, computed the slow way.
        let plans = training_plans(3, 6, 9);
        let d = Default::default();
        let got = latent_object_weights::<B>(&plans, 4.0, 8, &d);
        assert_eq!(got.dims(), [6, 1, 3, 8, 8]);
        let got: Vec<f32> = got.into_data().to_vec().unwrap();
        let refs: Vec<&semgen_data::ClipPlan> = plans.iter().collect();
        let pixels: Vec<f32> = semgen_vae::train::object_weight_map::<B>(&refs, 4.0, &d)
            .into_data()
            .to_vec()
            .unwrap();
        let mut marked = 0;
        for b in 0..6 {
            for lf in 0..3 {
                let frames = if lf == 0 {
                    0..1
                } else {
                    4 * lf - 3..4 * lf + 1
                };
                for cy in 0..8 {
                    for cx in 0..8 {
                        let mut want = 1.0f32;
                        for t in frames.clone() {
                            for y in cy * 8..cy * 8 + 8 {
                                for x in cx * 8..cx * 8 + 8 {
                                    // Channel 0 of [b, 3, 9, 64, 64].
                                    want = want.max(pixels[((b * 3 * 9 + t) * 64 + y) * 64 + x]);
                                }
                            }
                        }
                        let i = ((b * 3 + lf) * 8 + cy) * 8 + cx;
                        assert_eq!(
                            got[i], want,
                            "clip {b}, latent frame {lf}, cell ({cy}, {cx})"
                        );
                        marked += (want == 4.0) as usize;
                    }
                }
            }
        }
        // Objects were there to find, and they do not cover everything.
        assert!(
            marked > 0 && marked < got.len(),
            "{marked} of {}",
            got.len()
        );
        // Weight 1 is the plain mean's map.
        let ones = latent_object_weights::<B>(&plans, 1.0, 8, &d);
        assert_eq!(ones.sum().into_scalar(), got.len() as f32);
    }

    #[test]
    fn vae_tokens_take_the_latent_frame_of_each_token_and_stack_its_cells() {
        // 17 frames → 5 latent frames of 8×8; the encoder grid of stride 4: 3 tokens in time
        // (pixel frames 0, 8, 16 → latent frames 0, 2, 4), 4×4 in space (2×2 cells each).
        let dims = [2, 3, 5, 8, 8];
        let lat = ramp(dims);
        let grid = SemanticGrid {
            t: 3,
            h: 4,
            w: 4,
            stride: 4,
        };
        let out = vae_semantic_grid(lat.clone(), 17, grid).unwrap();
        assert_eq!(out.dims(), [2, 12, 3, 4, 4]);
        let o = out.into_data().to_vec::<f32>().unwrap();
        let l = lat.into_data().to_vec::<f32>().unwrap();
        let at = |v: &[f32], d: [usize; 5], i: [usize; 5]| {
            v[(((i[0] * d[1] + i[1]) * d[2] + i[2]) * d[3] + i[3]) * d[4] + i[4]]
        };
        for n in 0..2 {
            for c in 0..3 {
                for (k, f) in [0, 2, 4].into_iter().enumerate() {
                    for y in 0..8 {
                        for x in 0..8 {
                            let ch = c * 4 + (y % 2) * 2 + x % 2;
                            assert_eq!(
                                at(&o, [2, 12, 3, 4, 4], [n, ch, k, y / 2, x / 2]),
                                at(&l, dims, [n, c, f, y, x])
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn vae_tokens_refuse_a_grid_that_does_not_tile() {
        let grid = SemanticGrid {
            t: 3,
            h: 3,
            w: 4,
            stride: 4,
        };
        let e = vae_semantic_grid(ramp([1, 2, 5, 8, 8]), 17, grid).unwrap_err();
        assert!(e.contains("does not tile"), "{e}");
    }

    #[test]
    fn attribute_targets_give_each_objects_words_its_classes() {
        let tokenizer = PromptTokenizer::shapes();
        let device = Default::default();
        let one = "a large red circle moving left slowly and a small cyan cross staying still on a navy background";
        let other = "a small blue ring staying still on a black background";
        let story = format!("{one}; {other}");
        let t = attribute_targets::<B>(&[story.clone()], 2, &tokenizer, 32, &device).unwrap();
        assert_eq!(t.dims(), [2, 32, 21]);
        let v = t.to_data().to_vec::<f32>().unwrap();
        let hot = |row: usize, token: usize| -> Vec<usize> {
            let base = (row * 32 + token) * 21;
            (0..21).filter(|&i| v[base + i] == 1.0).collect()
        };
        // Blocks: colour 0..8, shape 8..14, size 14..16, motion 16..21.
        for token in 0..7 {
            assert_eq!(hot(0, token), [0, 8, 15, 17], "red circle, large, left");
        }
        assert_eq!(hot(0, 7), Vec::<usize>::new(), "\"and\"");
        for token in 8..14 {
            assert_eq!(hot(0, token), [4, 13, 14, 16], "cyan cross, small, still");
        }
        for token in 14..32 {
            assert!(hot(0, token).is_empty(), "token {token}");
        }
        for token in 0..6 {
            assert_eq!(hot(1, token), [2, 12, 14, 16], "blue ring, small, still");
        }
        assert_eq!(v.iter().sum::<f32>(), 4.0 * (7 + 6 + 6) as f32);
        // A short text length keeps the first tokens' labels.
        let short = attribute_targets::<B>(&[one.to_string()], 1, &tokenizer, 4, &device).unwrap();
        assert_eq!(short.dims(), [1, 4, 21]);
        assert_eq!(short.sum().into_scalar(), 16.0);
        // A caption of another segment count, or outside the grammar, is a config error.
        for (caption, segments) in [(story.as_str(), 1), ("a red circle", 1)] {
            match attribute_targets::<B>(&[caption.to_string()], segments, &tokenizer, 32, &device)
            {
                Err(TrainError::Config(m)) => assert!(m.contains("attribute targets"), "{m}"),
                other => panic!("{caption}: {other:?}"),
            }
        }
    }

    #[test]
    fn stage_1_trains_on_whole_stories_with_one_prompt_per_segment() {
        // The shipped frozen encoders and MLP, a tiny generator, 2 training stories of 2
        // segments (33 frames of 32x32) beside a 2-clip pool.
        type A = burn::backend::Autodiff<B>;
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../checkpoints/shapes-small");
        let cache = tempfile::tempdir().unwrap();
        let toml = |stories: &str| {
            format!(
                r#"[inputs]
vae = "{vae}"
encoder = "{dir}"
refiner = "{dir}"
pool_cache = "{cache}"
[model]
heads = 2
head_dim = 16
layers = 1
ffn = 32
[data]
world_seed = 0
pool = 2
batch = 2
frames = 5
height = 32
width = 32
max_objects = 1
frame_stride = 4
text_len = 32
[train]
steps = 1
lr = 0.001
checkpoint_every = 1
log_every = 1
seed = 7
{stories}"#,
                vae = shipped.join("vae.safetensors").display(),
                dir = shipped.display(),
                cache = cache.path().display(),
            )
        };
        let stories = "[[stories]]\ncount = 2\nsegments = 2\nbatch = 2\nfraction = 1.0\n";
        let config: SemanticTrainConfig = toml::from_str(&toml(stories)).unwrap();
        let device = Default::default();
        let frozen = Frozen::<B>::load(&config.inputs, 32, &device).unwrap();
        let (compressor, _) = crate::model::load_own::<B, CompressorConfig, _>(
            &shipped.join(crate::model::COMPRESSOR_FILE),
            "compressor",
            |c| c.init(&device),
        )
        .unwrap();

        // The pool: each story's features over its whole length (33 frames, every 4th
        // sampled: 9 frames, 5 temporal patches; 2x2 tokens of 16 px), its caption, and its
        // segment prompts in order, as the text encoder gives them one by one.
        let data = DataConfig {
            pool: 2,
            ..config.data.clone()
        };
        let pool =
            FeaturePool::<B>::cached_stories(&frozen, &config.inputs, &data, Split::Train, 2)
                .unwrap();
        let story = pool_world(&data)
            .unwrap()
            .story(Split::Train, 1, 2)
            .unwrap();
        assert_eq!(pool.captions[1], story.caption());
        assert_eq!(pool.segments, 2);
        let [n, _, t, h, w] = pool.features.dims();
        assert_eq!([n, t, h, w], [2, 5, 2, 2]);
        let prompts = story.prompt().segment_captions();
        assert_ne!(
            prompts[0], prompts[1],
            "the story's segments differ in motion"
        );
        for (k, prompt) in prompts.iter().enumerate() {
            let one = frozen.text.encode(&[prompt.as_str()]).unwrap().hidden;
            let row = pool.text.clone().slice([2 + k..3 + k]);
            let diff = (row - one).abs().max().into_scalar();
            assert!(diff < 1e-4, "segment {k}: {diff}");
        }
        // The cache serves it back, under a key of its own (a clip pool of the same data
        // is another file).
        let again =
            FeaturePool::<B>::cached_stories(&frozen, &config.inputs, &data, Split::Train, 2)
                .unwrap();
        let values = |t: &Tensor<B, 5>| t.to_data().to_vec::<f32>().unwrap();
        assert_eq!(values(&again.features), values(&pool.features));
        assert_ne!(
            pool_key(&config.inputs, &data, Split::Train, 1).unwrap(),
            pool_key(&config.inputs, &data, Split::Train, 2).unwrap()
        );

        // With fraction 1 every step trains on a story batch: the step's loss is the model's
        // loss on the stories it draws, each segment's tokens reading their own prompt (the
        // same batch with the two prompts swapped scores differently).
        let (task, model) =
            SemanticTask::<A>::new(config.clone(), &frozen, &compressor, &device).unwrap();
        let step = 3;
        let loss = task.loss(&model, step).unwrap().into_scalar();
        let by_hand = |swap: bool| {
            let pool = &task.stories[0];
            let mut rng = step_rng(7, step);
            let _story_step: f64 = rng.random();
            let idx = pick::<A>(2, 2, &mut rng, &device);
            let z = pool.z_sem.clone().select(0, idx.clone());
            let mut text = pool.text.clone().select(0, idx);
            if swap {
                text = text.flip([1]);
            }
            model
                .training_loss_weighted(z, SemanticText::Segments(text), None, &mut rng)
                .unwrap()
                .into_scalar()
        };
        assert_eq!(loss, by_hand(false));
        assert_ne!(loss, by_hand(true));
        assert_eq!(task.stories[0].z_sem.dims()[2], 5);

        // Without [stories] there is no story pool; the clips are 5 frames (1 temporal patch).
        let clips: SemanticTrainConfig = toml::from_str(&toml("")).unwrap();
        let (task, _) = SemanticTask::<A>::new(clips, &frozen, &compressor, &device).unwrap();
        assert!(task.stories.is_empty());
        assert_eq!(task.z_sem.dims()[2], 1);

        // With the attribute loss, a story step's loss is the generator's plus the weighted
        // attribute loss of the refiner on the batch's segment prompts, one row per prompt.
        let with_attributes = |weight: &str, layers: &str| {
            toml(stories).replace(
                "ffn = 32\n",
                &format!(
                    "ffn = 32\ntext_refiner_layers = {layers}\ntext_refiner_attribute_weight = {weight}\n"
                ),
            )
        };
        let c: SemanticTrainConfig = toml::from_str(&with_attributes("0.5", "1")).unwrap();
        let (task, model) = SemanticTask::<A>::new(c, &frozen, &compressor, &device).unwrap();
        let refiner = model.text_refiner.as_ref().unwrap();
        assert_eq!(
            refiner.attribute_head.as_ref().unwrap().weight.dims(),
            [64, semgen_data::ATTRIBUTE_GROUPS.iter().sum::<usize>()]
        );
        let loss = task.loss(&model, step).unwrap().into_scalar();
        let pool = &task.stories[0];
        let mut rng = step_rng(7, step);
        let _story_step: f64 = rng.random();
        let idx = pick::<A>(2, 2, &mut rng, &device);
        let text = pool.text.clone().select(0, idx.clone());
        let diffusion = model
            .training_loss_weighted(
                pool.z_sem.clone().select(0, idx.clone()),
                SemanticText::Segments(text.clone()),
                None,
                &mut rng,
            )
            .unwrap()
            .into_scalar();
        let targets = pool.attributes.clone().unwrap().select(0, idx);
        let aux = refiner
            .attribute_loss(
                text.flatten::<3>(0, 1),
                targets.flatten::<3>(0, 1),
                &semgen_data::ATTRIBUTE_GROUPS,
            )
            .unwrap()
            .into_scalar();
        assert!(aux > 0.0);
        assert!(
            (loss - (diffusion + 0.5 * aux)).abs() < 1e-4,
            "{loss} vs {diffusion} + 0.5 * {aux}"
        );
        // The attribute loss needs a refiner, and a weight that is a number >= 0.
        for (weight, layers, says) in [("0.5", "0", "needs a text refiner"), ("-1.0", "1", ">= 0")]
        {
            let c: SemanticTrainConfig = toml::from_str(&with_attributes(weight, layers)).unwrap();
            match SemanticTask::<A>::new(c, &frozen, &compressor, &device) {
                Err(TrainError::Config(m)) => assert!(m.contains(says), "{m}"),
                Err(e) => panic!("{weight}/{layers}: {e}"),
                Ok(_) => panic!("{weight}/{layers}: accepted"),
            }
        }

        // Impossible story settings are config errors naming the table.
        for bad in [
            stories.replace("fraction = 1.0", "fraction = 0.0"),
            stories.replace("segments = 2", "segments = 1"),
            stories.replace("count = 2", "count = 0"),
            stories.replace("1.0", "0.6") + &stories.replace("1.0", "0.6"),
        ] {
            let c: SemanticTrainConfig = toml::from_str(&toml(&bad)).unwrap();
            match SemanticTask::<A>::new(c, &frozen, &compressor, &device) {
                Err(TrainError::Config(m)) => assert!(m.contains("stories]"), "{m}"),
                Err(e) => panic!("{bad}: {e}"),
                Ok(_) => panic!("{bad}: accepted"),
            }
        }
    }

    #[test]
    fn a_cached_pool_reads_back_exactly_and_a_corrupt_one_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pool.safetensors");
        let pool = FeaturePool::<B> {
            latents: Some(ramp([2, 2, 1, 2, 2]) / 7.0),
            features: ramp([2, 3, 1, 1, 2]) * -0.5,
            text: Tensor::from_data(
                TensorData::new(vec![0.25f32, -1.0, 3.5, 1e-3], [2, 1, 2]),
                &Default::default(),
            ),
            captions: vec!["a red circle".into(), "a blue ring".into()],
            segments: 1,
        };
        pool.write(&path).unwrap();
        let back = FeaturePool::<B>::read(&path, 1, &Default::default()).unwrap();
        assert_eq!(back.captions, pool.captions);
        let same = |a: &Tensor<B, 5>, b: &Tensor<B, 5>| {
            a.to_data().to_vec::<f32>().unwrap() == b.to_data().to_vec::<f32>().unwrap()
                && a.dims() == b.dims()
        };
        assert!(same(
            back.latents.as_ref().unwrap(),
            pool.latents.as_ref().unwrap()
        ));
        assert!(same(&back.features, &pool.features));
        assert_eq!(
            back.text.to_data().to_vec::<f32>().unwrap(),
            pool.text.to_data().to_vec::<f32>().unwrap()
        );
        std::fs::write(&path, b"not a pool").unwrap();
        assert!(FeaturePool::<B>::read(&path, 1, &Default::default()).is_none());
    }
}
