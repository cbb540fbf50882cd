//! Text to video: text encoder → semantic generator (stage 1, full attention over the whole
//! clip) → `z_sem` → refiner (stage 2, windowed attention for long clips) → VAE streaming decode.
//!
//! A model whose refiner has no semantic tokens (the Base-CT / Base-CT-Swin baselines) runs
//! through the same [`SemgenModel::generate`], skipping stage 1, so every comparison uses one
//! code path. Long clips ("stories") take one caption per segment: stage 1 attends each
//! segment's tokens to that segment's caption (per-segment cross-attention); the refiner's text
//! is the first caption (objects and background, which stay the same), and each segment's motion
//! reaches it through the semantic plan, unless `refiner_story_text = "segments"`
//! ([`crate::model::StoryText`]) gives each span of the refiner its own segment's caption too.

use crate::model::{ModelError, SemgenModel, StoryText};
use burn::prelude::*;
use rand::SeedableRng;
use semgen_core::sampling::{
    sample, Control, GuidanceSchedule, SamplerConfig, SamplerKind, StepInfo,
};
use semgen_data::{tensor_to_videos, Video};
use semgen_refiner::refiner::{host_normal, RefinerDenoiser, RefinerGuidance};
use semgen_semantic_dit::{SemanticDenoiser, SemanticText};
use semgen_vae::StreamDecoder;
use serde::{Deserialize, Serialize};

/// Why a generation could not run.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("segment {0} of the prompt is empty")]
    EmptySegment(usize),
    #[error(
        "segment {segment} of the prompt has words this model's tokenizer does not know: {words:?}"
    )]
    UnknownWords { segment: usize, words: Vec<String> },
    #[error("{frames} frames: the VAE needs 1 + 4k frames (e.g. 17, 33, 65)")]
    Frames { frames: usize },
    #[error("a story of {segments} segments needs at least {needed} frames, got {frames}")]
    TooFewFrames {
        segments: usize,
        frames: usize,
        needed: usize,
    },
    #[error("{height}x{width}: height and width must be positive multiples of {multiple}")]
    Size {
        height: usize,
        width: usize,
        multiple: usize,
    },
    #[error("invalid sampling settings: {0}")]
    Sampling(#[from] semgen_core::ConfigError),
    #[error("this model's refiner needs semantic tokens but the model has no semantic generator")]
    NoSemanticGenerator,
    #[error("z_sem has shape {found:?}, expected {expected:?}")]
    SemanticShape {
        found: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("text: {0}")]
    Text(#[from] semgen_encoder::EncodeError),
    #[error("refiner: {0}")]
    Refiner(#[from] semgen_refiner::RefinerError),
    #[error("semantic generator: {0}")]
    Semantic(#[from] semgen_semantic_dit::SemanticDitError),
    #[error("VAE: {0}")]
    Vae(#[from] semgen_vae::VaeError),
    #[error("video: {0}")]
    Video(#[from] semgen_data::DataError),
    #[error("cancelled at step {step} of {total}")]
    Cancelled { step: usize, total: usize },
    #[error("this model's z_sem come from VAE latents (the Fig. 9 control): it generates from text but cannot encode a real clip")]
    NotEncoderSourced,
}

/// Sampling settings of one stage.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StageSettings {
    pub steps: usize,
    pub guidance: f64,
    pub shift: f64,
    /// Where along the schedule the guidance applies, and its rescale (requests saved before
    /// it existed, and the default, mean every step and none).
    #[serde(default, skip_serializing_if = "GuidanceSchedule::is_default")]
    pub schedule: GuidanceSchedule,
}

/// Everything that decides a generation (saved beside the outputs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateRequest {
    /// One caption per segment (one caption = one clip).
    pub segments: Vec<String>,
    pub frames: usize,
    pub height: usize,
    pub width: usize,
    pub seed: u64,
    pub semantic: StageSettings,
    pub refiner: StageSettings,
    /// The refiner's guidance on `z_sem` (`g_s`, 1 = none); requests saved before it existed
    /// read as 1.
    #[serde(default = "crate::model::one")]
    pub refiner_semantic_guidance: f64,
    /// The refiner's text in a story (one caption: no difference); requests saved before it
    /// existed read as `first`.
    #[serde(default)]
    pub refiner_story_text: crate::model::StoryText,
    /// Standard deviation of the noise added to `z_sem` before stage 2 (see
    /// [`crate::model::ModelSettings::semantic_noise`]); drawn from its own stream of `seed`, so
    /// 0 leaves every other draw as it was. Requests saved before it existed read as 0.
    #[serde(default)]
    pub semantic_noise: f64,
}

impl GenerateRequest {
    /// The model's defaults for these captions: `frames` for one caption, `S·segment + 1` for a
    /// story of `S` captions.
    pub fn defaults<B: Backend>(model: &SemgenModel<B>, segments: Vec<String>, seed: u64) -> Self {
        let s = &model.settings;
        let frames = if segments.len() > 1 {
            segments.len() * s.segment_frames + 1
        } else {
            s.frames
        };
        Self {
            segments,
            frames,
            height: s.height,
            width: s.width,
            seed,
            semantic: StageSettings {
                steps: s.semantic_steps,
                guidance: s.semantic_guidance,
                shift: s.shift,
                schedule: s.semantic_guidance_schedule,
            },
            refiner: StageSettings {
                steps: s.refiner_steps,
                guidance: s.refiner_guidance,
                shift: s.shift,
                schedule: s.refiner_guidance_schedule,
            },
            refiner_semantic_guidance: s.refiner_semantic_guidance,
            refiner_story_text: s.refiner_story_text,
            semantic_noise: s.semantic_noise,
        }
    }
}

/// Which stage a progress callback is reporting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Semantic,
    Refiner,
}

/// The outputs of stages 1 and 2 (normalised latents; decode with [`SemgenModel::decode`]).
#[derive(Debug, Clone)]
pub struct Generation<B: Backend> {
    pub z_sem: Option<Tensor<B, 5>>,
    pub latents: Tensor<B, 5>,
}

fn sampler(s: &StageSettings) -> Result<SamplerConfig, PipelineError> {
    let c = SamplerConfig {
        kind: SamplerKind::Euler,
        steps: s.steps,
        shift: s.shift,
    };
    c.validate()?;
    check_non_negative("guidance", s.guidance)?;
    s.schedule.validate()?;
    Ok(c)
}

/// A sampling setting that must be a finite number ≥ 0 (guidance scales, the noise on `z_sem`).
fn check_non_negative(what: &str, v: f64) -> Result<(), PipelineError> {
    if !(v.is_finite() && v >= 0.0) {
        return Err(semgen_core::ConfigError::invalid(format!(
            "{what} must be a non-negative number, got {v}"
        ))
        .into());
    }
    Ok(())
}

impl<B: Backend> SemgenModel<B> {
    /// `z_sem` of real clips `[B, 3, T, H, W]` in [-1, 1] (semantic encoder → MLP mean): the
    /// condition of the paper's Fig. 4. Refused for a model trained on VAE-sourced tokens.
    pub fn encode_clip(&self, video: Tensor<B, 5>) -> Result<Tensor<B, 5>, PipelineError> {
        if !self.settings.semantic_source.is_encoder() {
            return Err(PipelineError::NotEncoderSourced);
        }
        Ok(self.encoder.encode(video)?)
    }

    /// Checks a request against the model before any work.
    pub fn check(&self, req: &GenerateRequest) -> Result<(), PipelineError> {
        if req.segments.is_empty() || req.segments.iter().all(|s| s.trim().is_empty()) {
            return Err(PipelineError::EmptyPrompt);
        }
        if let Some(i) = req.segments.iter().position(|s| s.trim().is_empty()) {
            return Err(PipelineError::EmptySegment(i + 1));
        }
        for (i, seg) in req.segments.iter().enumerate() {
            let words = self.text.tokenizer.unknown_words(seg);
            if !words.is_empty() {
                return Err(PipelineError::UnknownWords {
                    segment: i + 1,
                    words,
                });
            }
        }
        if req.frames == 0 || (req.frames - 1) % 4 != 0 {
            return Err(PipelineError::Frames { frames: req.frames });
        }
        let s = req.segments.len();
        if s > 1 && req.frames < s * 4 + 1 {
            return Err(PipelineError::TooFewFrames {
                segments: s,
                frames: req.frames,
                needed: s * 4 + 1,
            });
        }
        let multiple = self.encoder.vision.config.pixels_per_token().max(16);
        if req.height == 0
            || req.width == 0
            || req.height % multiple != 0
            || req.width % multiple != 0
        {
            return Err(PipelineError::Size {
                height: req.height,
                width: req.width,
                multiple,
            });
        }
        sampler(&req.semantic)?;
        sampler(&req.refiner)?;
        check_non_negative("guidance", req.refiner_semantic_guidance)?;
        check_non_negative("semantic_noise", req.semantic_noise)
    }

    /// The VAE latent grid `[F, h, w]` of a clip.
    pub fn latent_grid(&self, frames: usize, height: usize, width: usize) -> [usize; 3] {
        let f = self.vae.config.spatial_factor();
        [(frames - 1) / 4 + 1, height / f, width / f]
    }

    /// The semantic grid `[t, h, w]` of a clip (sampled frames grouped by the temporal patch).
    pub fn semantic_grid(&self, frames: usize, height: usize, width: usize) -> [usize; 3] {
        let c = &self.encoder.vision.config;
        let sampled = (frames - 1) / self.settings.frame_stride + 1;
        let p = c.pixels_per_token();
        [
            sampled.div_ceil(c.temporal_patch_size),
            height / p,
            width / p,
        ]
    }

    fn encode_text(&self, captions: &[String]) -> Result<Tensor<B, 3>, PipelineError> {
        let refs: Vec<&str> = captions.iter().map(String::as_str).collect();
        let enc = self.text.encode(&refs)?;
        for w in &enc.warnings {
            tracing::warn!("{w}");
        }
        Ok(enc.hidden)
    }

    /// Stage 1: samples `z_sem [1, d_out, t, h, w]` for the request's captions.
    pub fn plan(
        &self,
        req: &GenerateRequest,
        progress: &mut dyn FnMut(Stage, &StepInfo),
    ) -> Result<Tensor<B, 5>, PipelineError> {
        let semantic = self
            .semantic
            .as_ref()
            .ok_or(PipelineError::NoSemanticGenerator)?;
        let device = self.vae.quant_conv.weight.device();
        let grid = self.semantic_grid(req.frames, req.height, req.width);
        let hidden = self.encode_text(&req.segments)?;
        let text = if req.segments.len() == 1 {
            SemanticText::Shared(hidden)
        } else {
            let [s, l, d] = hidden.dims();
            SemanticText::Segments(hidden.reshape([1, s, l, d]))
        };
        let den = SemanticDenoiser::new(semantic, grid, text, req.semantic.guidance, &device)?
            .with_schedule(req.semantic.schedule);
        let d_out = semantic.config.dit.in_channels;
        let mut rng = rand::rngs::StdRng::seed_from_u64(req.seed);
        let noise = host_normal::<B, 5>([1, d_out, grid[0], grid[1], grid[2]], &mut rng, &device);
        let mut sched = sampler(&req.semantic)?.build::<B, 5>()?;
        let z = sample(&den, sched.as_mut(), noise, &mut |i, _| {
            progress(Stage::Semantic, i);
            Control::Continue
        })
        .map_err(|c| PipelineError::Cancelled {
            step: c.step,
            total: c.total,
        })?;
        Ok(semantic.config.from_model_space(z))
    }

    /// Stage 2: samples normalised latents given `z_sem` (from [`Self::plan`] or from a real
    /// clip through the encoder and MLP; `None` for the baselines).
    pub fn refine(
        &self,
        req: &GenerateRequest,
        z_sem: Option<Tensor<B, 5>>,
        progress: &mut dyn FnMut(Stage, &StepInfo),
    ) -> Result<Tensor<B, 5>, PipelineError> {
        let device = self.vae.quant_conv.weight.device();
        let [f, h, w] = self.latent_grid(req.frames, req.height, req.width);
        let sem_grid = self.semantic_grid(req.frames, req.height, req.width);
        let z_sem = match z_sem {
            Some(z) if self.refiner.config.has_semantic() => {
                let want = [
                    1,
                    self.refiner.config.semantic_dim,
                    sem_grid[0],
                    sem_grid[1],
                    sem_grid[2],
                ];
                if z.dims() != want {
                    return Err(PipelineError::SemanticShape {
                        found: z.dims().to_vec(),
                        expected: want.to_vec(),
                    });
                }
                if req.semantic_noise > 0.0 {
                    // Seed + 2: stage 1 draws from seed, stage 2's latents from seed + 1.
                    let mut rng = rand::rngs::StdRng::seed_from_u64(req.seed.wrapping_add(2));
                    let eps = host_normal::<B, 5>(want, &mut rng, &device);
                    Some(z + eps * req.semantic_noise)
                } else {
                    Some(z)
                }
            }
            _ => None,
        };
        let layout = self
            .refiner
            .layout([f, h, w], z_sem.as_ref().map(|_| sem_grid), &device)?;
        let guidance = RefinerGuidance {
            text: req.refiner.guidance,
            semantic: req.refiner_semantic_guidance,
            schedule: req.refiner.schedule,
        };
        let den = if req.segments.len() > 1 && req.refiner_story_text == StoryText::Segments {
            let hidden = self.encode_text(&req.segments)?;
            let [s, l, d] = hidden.dims();
            // Latent frames per segment: the VAE compresses time by 4.
            let per_segment = (self.settings.segment_frames / 4).max(1);
            RefinerDenoiser::segmented(
                &self.refiner,
                &layout,
                hidden.reshape([1, s, l, d]),
                per_segment,
                z_sem,
                guidance,
            )
        } else {
            let text = self.encode_text(&req.segments[..1])?;
            RefinerDenoiser::new(&self.refiner, &layout, text, z_sem, guidance)
        };
        let z = self.vae.config.z_dim;
        let mut rng = rand::rngs::StdRng::seed_from_u64(req.seed.wrapping_add(1));
        let noise = host_normal::<B, 5>([1, z, f, h, w], &mut rng, &device);
        let mut sched = sampler(&req.refiner)?.build::<B, 5>()?;
        sample(&den, sched.as_mut(), noise, &mut |i, _| {
            progress(Stage::Refiner, i);
            Control::Continue
        })
        .map_err(|c| PipelineError::Cancelled {
            step: c.step,
            total: c.total,
        })
    }

    /// Stages 1 and 2 (stage 1 is skipped for a refiner without semantic tokens).
    pub fn generate(
        &self,
        req: &GenerateRequest,
        progress: &mut dyn FnMut(Stage, &StepInfo),
    ) -> Result<Generation<B>, PipelineError> {
        self.check(req)?;
        let z_sem = if self.refiner.config.has_semantic() {
            Some(self.plan(req, progress)?)
        } else {
            None
        };
        let latents = self.refine(req, z_sem.clone(), progress)?;
        Ok(Generation { z_sem, latents })
    }

    /// Decodes normalised latents `[1, z, F, h, w]` one latent frame at a time (constant
    /// memory in the clip length), handing each decoded chunk of frames to `sink`.
    pub fn decode_stream(
        &self,
        latents: Tensor<B, 5>,
        sink: &mut dyn FnMut(Video) -> Result<(), PipelineError>,
    ) -> Result<(), PipelineError> {
        let mut dec = StreamDecoder::new(&self.vae);
        let f = latents.dims()[2];
        for i in 0..f {
            let z = self.vae.denormalize(latents.clone().narrow(2, i, 1));
            let frames = dec.push(z)?;
            for v in tensor_to_videos(frames)? {
                sink(v)?;
            }
        }
        Ok(())
    }

    /// Decodes normalised latents to one video.
    pub fn decode(&self, latents: Tensor<B, 5>) -> Result<Video, PipelineError> {
        let (mut h, mut w, mut frames) = (0, 0, Vec::new());
        self.decode_stream(latents, &mut |v| {
            h = v.height();
            w = v.width();
            frames.extend(v.frame_iter().map(<[u8]>::to_vec));
            Ok(())
        })?;
        Ok(Video::from_frames(h, w, frames)?)
    }
}
