//! The VAE-latent generator (refiner): config and presets, semantic-token embedding, the model,
//! the training loss, and the guided denoiser for sampling.
//!
//! ## Conditioning and guidance
//! - **In context:** semantic tokens `z_sem [B, d, t, h, w]` are projected `d → D` by their own
//!   linear layer and appended after the VAE tokens; both share one timestep modulation and attend
//!   to each other in self-attention. The loss is computed on the VAE tokens only.
//! - **Noise augmentation (RAE):** in training, `z_sem + τ·ε` with `τ ~ U(0, sem_noise_max)` per
//!   sample, so the refiner tolerates the imperfect `z_sem` a semantic generator produces;
//!   `sem_noise_max = 0` turns it off.
//! - **Condition dropout for CFG:** in training the text is zeroed with probability `text_drop`
//!   and, independently, the semantic tokens are replaced by a learned null token with probability
//!   `sem_drop` (10 % each by default). At inference
//!   `v = v(∅ₛ,∅ₜ) + g_s·(v(s,∅ₜ) − v(∅ₛ,∅ₜ)) + g_t·(v(s,t) − v(s,∅ₜ))`; with `g_s = 1` this is
//!   plain text guidance with the semantic plan always on (one fewer forward).
//! - **Controls:** Base-CT (`semantic_dim = 0`, full attention) and Base-CT-Swin
//!   (`semantic_dim = 0`, windows) are the same model without semantic tokens.

use crate::geometry::SemanticGeometry;
use crate::RefinerError;
use burn::module::Param;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use rand::Rng;
use semgen_core::flow::{noisy_sample, standard_normal, velocity_target, TimestepSampling};
use semgen_core::sampling::{apply_cfg, Denoiser, GuidanceSchedule};
use semgen_core::wan_dit::{TextCondition, TokenLayout, WanDit, WanDitConfig};
use semgen_core::ConfigError;

// ---------------------------------------------------------------------------------------------
// Config and presets
// ---------------------------------------------------------------------------------------------

/// Configuration of the refiner.
#[derive(Config, Debug, PartialEq)]
pub struct RefinerConfig {
    /// The Wan DiT backbone (its `attn_window` selects full or windowed attention).
    pub dit: WanDitConfig,
    /// Channels of a semantic token (`d_out` of the compression MLP); 0 = no semantic tokens.
    pub semantic_dim: usize,
    pub geometry: SemanticGeometry,
    /// Max std of the training noise on `z_sem` (τ ~ U(0, max) per sample); 0 = none.
    #[config(default = 0.3)]
    pub sem_noise_max: f64,
    /// Probability of dropping the text in training (CFG over text).
    #[config(default = 0.1)]
    pub text_drop: f64,
    /// Probability of dropping the semantic tokens in training (CFG over the semantic plan).
    #[config(default = 0.1)]
    pub sem_drop: f64,
    /// Training noise levels.
    #[config(default = "TimestepSampling::LogitNormal { mean: 0.0, std: 1.0, shift: 1.0 }")]
    pub timesteps: TimestepSampling,
}

impl RefinerConfig {
    /// SemanticGen's refiner: semantic tokens of `semantic_dim` channels in context.
    pub fn semanticgen(dit: WanDitConfig, semantic_dim: usize, geometry: SemanticGeometry) -> Self {
        Self::new(dit, semantic_dim, geometry)
    }

    /// The paper's Base-CT control: the same backbone, no semantic tokens, full attention.
    pub fn base_ct(dit: WanDitConfig) -> Self {
        Self::new(dit.with_attn_window(None), 0, SemanticGeometry::shapes()).with_sem_drop(0.0)
    }

    /// The paper's Base-CT-Swin control: no semantic tokens, temporal windows of `window` frames.
    pub fn base_ct_swin(dit: WanDitConfig, window: usize) -> Self {
        Self::new(
            dit.with_attn_window(Some(window)),
            0,
            SemanticGeometry::shapes(),
        )
        .with_sem_drop(0.0)
    }

    pub fn has_semantic(&self) -> bool {
        self.semantic_dim > 0
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.dit.validate()?;
        self.geometry.validate()?;
        self.timesteps.validate()?;
        for (name, p) in [("text_drop", self.text_drop), ("sem_drop", self.sem_drop)] {
            if !(0.0..1.0).contains(&p) {
                return Err(ConfigError::invalid(format!(
                    "{name} must be in [0, 1), got {p}"
                )));
            }
        }
        if !(self.sem_noise_max >= 0.0 && self.sem_noise_max.is_finite()) {
            return Err(ConfigError::invalid(format!(
                "sem_noise_max must be >= 0, got {}",
                self.sem_noise_max
            )));
        }
        Ok(())
    }

    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<Refiner<B>, ConfigError> {
        self.validate()?;
        let dit = self.dit.init::<B>(device)?;
        let d = self.dit.dim();
        let (sem_proj, sem_null) = if self.has_semantic() {
            (
                Some(LinearConfig::new(self.semantic_dim, d).init(device)),
                Some(Param::from_tensor(Tensor::zeros([d], device))),
            )
        } else {
            (None, None)
        };
        Ok(Refiner {
            dit,
            sem_proj,
            sem_null,
            config: self.clone(),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Model
// ---------------------------------------------------------------------------------------------

/// The semantic condition of one forward pass.
#[derive(Debug, Clone)]
pub enum SemanticInput<B: Backend> {
    /// No semantic tokens at all (Base-CT controls).
    None,
    /// `z_sem [B, d, t, h, w]`, with a per-sample keep mask `[B]` (1 = use, 0 = null token).
    Tokens {
        z_sem: Tensor<B, 5>,
        keep: Option<Tensor<B, 1>>,
    },
}

impl<B: Backend> SemanticInput<B> {
    pub fn tokens(z_sem: Tensor<B, 5>) -> Self {
        SemanticInput::Tokens { z_sem, keep: None }
    }
}

/// The refiner: a Wan DiT with a semantic-token input projection and a learned null token.
#[derive(Module, Debug)]
pub struct Refiner<B: Backend> {
    pub dit: WanDit<B>,
    pub sem_proj: Option<Linear<B>>,
    pub sem_null: Option<Param<Tensor<B, 1>>>,
    #[module(skip)]
    pub config: RefinerConfig,
}

impl<B: Backend> Refiner<B> {
    /// The token layout for a latent grid `[F, H, W]` and (if this refiner uses them) a semantic
    /// grid `[t, h, w]`. Build once per shape; reuse across sampling steps.
    pub fn layout(
        &self,
        latent: [usize; 3],
        semantic: Option<[usize; 3]>,
        device: &B::Device,
    ) -> Result<TokenLayout<B>, RefinerError> {
        let grid = self.dit.patched_grid(latent[0], latent[1], latent[2])?;
        let extra = match (self.config.has_semantic(), semantic) {
            (true, Some(s)) => Some(self.config.geometry.place(s, grid)),
            (true, None) => return Err(RefinerError::MissingSemantic),
            (false, Some(_)) => return Err(RefinerError::UnexpectedSemantic),
            (false, None) => None,
        };
        Ok(self.dit.layout(grid, extra.as_ref(), device))
    }

    /// Semantic tokens `[B, d, t, h, w]` → `[B, t·h·w, D]`, with dropped samples replaced by the
    /// null token.
    fn embed_semantic(&self, z_sem: Tensor<B, 5>, keep: Option<Tensor<B, 1>>) -> Tensor<B, 3> {
        let proj = self.sem_proj.as_ref().expect("checked by layout");
        let [b, d, t, h, w] = z_sem.dims();
        let tokens = proj.forward(z_sem.reshape([b, d, t * h * w]).swap_dims(1, 2));
        match keep {
            None => tokens,
            Some(k) => {
                let null = self.sem_null.as_ref().expect("with sem_proj").val();
                let dim = null.dims()[0];
                let k = k.reshape([b, 1, 1]);
                tokens * k.clone() + null.reshape([1, 1, dim]) * (k.neg() + 1.0)
            }
        }
    }

    /// Velocity for noisy latents `x_t [B, C, F, H, W]` at timesteps `[B]` (`1000·σ`), text
    /// features `[B, L, text_dim]`, and the semantic condition.
    pub fn forward(
        &self,
        x_t: Tensor<B, 5>,
        timestep: Tensor<B, 1>,
        text: Tensor<B, 3>,
        semantic: SemanticInput<B>,
        layout: &TokenLayout<B>,
    ) -> Tensor<B, 5> {
        let text = TextCondition::Shared(self.dit.embed_text(text));
        self.forward_with_text(x_t, timestep, &text, semantic, layout)
    }

    /// [`Refiner::forward`] with already-embedded text (shared or per segment).
    pub fn forward_with_text(
        &self,
        x_t: Tensor<B, 5>,
        timestep: Tensor<B, 1>,
        text: &TextCondition<B>,
        semantic: SemanticInput<B>,
        layout: &TokenLayout<B>,
    ) -> Tensor<B, 5> {
        let mut tokens = self.dit.patchify(x_t);
        let (temb, tproj) = self.dit.embed_timestep(timestep);
        if let SemanticInput::Tokens { z_sem, keep } = semantic {
            tokens = Tensor::cat(vec![tokens, self.embed_semantic(z_sem, keep)], 1);
        }
        let out = self.dit.forward_tokens(tokens, layout, tproj, text);
        let [b, _, d] = out.dims();
        // The loss and the output concern the VAE tokens only.
        let main = out.slice([0..b, 0..layout.main_tokens, 0..d]);
        self.dit.unpatchify(self.dit.head(main, temb), layout.grid)
    }

    /// Checks a semantic tensor against the config.
    pub fn check_semantic(&self, z_sem: &Tensor<B, 5>) -> Result<(), RefinerError> {
        if !self.config.has_semantic() {
            return Err(RefinerError::UnexpectedSemantic);
        }
        let c = z_sem.dims()[1];
        if c != self.config.semantic_dim {
            return Err(RefinerError::SemanticChannels {
                expected: self.config.semantic_dim,
                found: c,
            });
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Training loss
// ---------------------------------------------------------------------------------------------

/// One training batch: clean latents, their semantic tokens (already sampled from the
/// compression MLP; `None` for the Base-CT controls) and text features.
#[derive(Debug, Clone)]
pub struct RefinerBatch<B: Backend> {
    pub latents: Tensor<B, 5>,
    pub z_sem: Option<Tensor<B, 5>>,
    pub text: Tensor<B, 3>,
    /// Loss weights per latent cell `[B, 1, F, h, w]` (the loss becomes the weighted mean);
    /// `None` = the plain mean. Shapes training weighs the cells that hold an object up, so
    /// that small objects are not drowned by the background (see `object_weight` in
    /// semgen-pipeline's refiner config).
    pub weights: Option<Tensor<B, 5>>,
}

/// A host-side Gaussian tensor from a seeded RNG (identical on every backend).
pub fn host_normal<B: Backend, const D: usize>(
    shape: [usize; D],
    rng: &mut impl Rng,
    device: &B::Device,
) -> Tensor<B, D> {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| standard_normal(rng) as f32).collect();
    Tensor::from_data(TensorData::new(v, shape), device)
}

fn bernoulli_keep<B: Backend>(
    b: usize,
    p_drop: f64,
    rng: &mut impl Rng,
    device: &B::Device,
) -> Tensor<B, 1> {
    let v: Vec<f32> = (0..b)
        .map(|_| {
            if rng.random::<f64>() < p_drop {
                0.0
            } else {
                1.0
            }
        })
        .collect();
    Tensor::from_data(TensorData::new(v, [b]), device)
}

impl<B: Backend> Refiner<B> {
    /// The rectified-flow loss on the VAE tokens, with noise augmentation of `z_sem` and
    /// condition dropout. All randomness comes from `rng`, so a seeded RNG makes a step
    /// reproducible on a backend.
    pub fn training_loss(
        &self,
        batch: RefinerBatch<B>,
        layout: &TokenLayout<B>,
        rng: &mut impl Rng,
    ) -> Tensor<B, 1> {
        let device = batch.latents.device();
        let dims = batch.latents.dims();
        let b = dims[0];
        let sigma_host = self.config.timesteps.sample(b, rng);
        let sigma = Tensor::<B, 1>::from_data(
            TensorData::new(
                sigma_host.iter().map(|&s| s as f32).collect::<Vec<_>>(),
                [b],
            ),
            &device,
        );
        let noise = host_normal::<B, 5>(dims, rng, &device);
        let x_t = noisy_sample(batch.latents.clone(), noise.clone(), sigma.clone());
        let target = velocity_target(batch.latents, noise);
        let text_keep = bernoulli_keep::<B>(b, self.config.text_drop, rng, &device);
        let text = batch.text * text_keep.reshape([b, 1, 1]);
        let semantic = match batch.z_sem {
            Some(z) if self.config.has_semantic() => {
                let z = if self.config.sem_noise_max > 0.0 {
                    let tau: Vec<f32> = (0..b)
                        .map(|_| (rng.random::<f64>() * self.config.sem_noise_max) as f32)
                        .collect();
                    let tau = Tensor::<B, 1>::from_data(TensorData::new(tau, [b]), &device);
                    let eps = host_normal::<B, 5>(z.dims(), rng, &device);
                    z + eps * tau.reshape([b, 1, 1, 1, 1])
                } else {
                    z
                };
                let keep = bernoulli_keep::<B>(b, self.config.sem_drop, rng, &device);
                SemanticInput::Tokens {
                    z_sem: z,
                    keep: Some(keep),
                }
            }
            _ => SemanticInput::None,
        };
        let v = self.forward(x_t, sigma * 1000.0, text, semantic, layout);
        let err = (v - target).square();
        match batch.weights {
            None => err.mean(),
            Some(w) => {
                let channels = dims[1] as f64;
                (err * w.clone()).sum() / (w.sum() * channels)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Guided denoiser for sampling
// ---------------------------------------------------------------------------------------------

/// Guidance settings of the refiner at inference.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RefinerGuidance {
    /// Text guidance `g_t` (1 = none).
    pub text: f64,
    /// Semantic guidance `g_s` (1 = none).
    pub semantic: f64,
    /// Where along the schedule both apply, and their rescale (default: every step, none).
    #[serde(default)]
    pub schedule: GuidanceSchedule,
}

impl Default for RefinerGuidance {
    fn default() -> Self {
        Self {
            text: 1.0,
            semantic: 1.0,
            schedule: GuidanceSchedule::default(),
        }
    }
}

/// The story segment of each token from its latent frame: under a causal VAE latent frame 0 is
/// pixel frame 0 (the first segment's) and latent frame `j ≥ 1` holds pixel frames `4j−3 ..= 4j`,
/// so with `n` latent frames per segment, frame `j` belongs to segment `(j − 1) / n`, clamped to
/// the last of `segments`.
pub fn story_segment_ids(
    token_frames: &[usize],
    latent_frames_per_segment: usize,
    segments: usize,
) -> Vec<usize> {
    let n = latent_frames_per_segment.max(1);
    token_frames
        .iter()
        .map(|&j| (j.saturating_sub(1) / n).min(segments.saturating_sub(1)))
        .collect()
}

/// The refiner with its conditions bound, as a [`Denoiser`] for the core sampling loop.
pub struct RefinerDenoiser<'a, B: Backend> {
    pub model: &'a Refiner<B>,
    pub layout: &'a TokenLayout<B>,
    /// Embedded text, conditional and unconditional (zeros), shared or per segment.
    pub text: TextCondition<B>,
    pub null_text: TextCondition<B>,
    pub z_sem: Option<Tensor<B, 5>>,
    pub guidance: RefinerGuidance,
}

impl<'a, B: Backend> RefinerDenoiser<'a, B> {
    /// Binds text features `[B, L, text_dim]` (the null text is all zeros, as in training).
    pub fn new(
        model: &'a Refiner<B>,
        layout: &'a TokenLayout<B>,
        text: Tensor<B, 3>,
        z_sem: Option<Tensor<B, 5>>,
        guidance: RefinerGuidance,
    ) -> Self {
        let null = model.dit.embed_text(text.zeros_like());
        Self {
            model,
            layout,
            text: TextCondition::Shared(model.dit.embed_text(text)),
            null_text: TextCondition::Shared(null),
            z_sem,
            guidance,
        }
    }

    /// Binds one prompt per story segment, text features `[B, S, L, text_dim]`: every token,
    /// VAE or semantic, cross-attends to the caption of the segment its latent frame belongs to
    /// ([`story_segment_ids`]), as stage 1's tokens do; the null text is all zeros. A window of
    /// the refiner then reads the caption of the span it renders, which is what it was trained
    /// on (one clip, one caption), instead of the first segment's caption along the whole story.
    pub fn segmented(
        model: &'a Refiner<B>,
        layout: &'a TokenLayout<B>,
        text: Tensor<B, 4>,
        latent_frames_per_segment: usize,
        z_sem: Option<Tensor<B, 5>>,
        guidance: RefinerGuidance,
    ) -> Self {
        let [b, segments, l, c] = text.dims();
        let null = model
            .dit
            .embed_text(Tensor::zeros([b, l, c], &text.device()));
        let ids = story_segment_ids(&layout.frames, latent_frames_per_segment, segments);
        Self {
            model,
            layout,
            text: TextCondition::Segmented {
                text: model.dit.embed_segment_text(text),
                plan: std::sync::Arc::new(semgen_core::attention::WindowPlan::from_ids(ids)),
            },
            null_text: TextCondition::Shared(null),
            z_sem,
            guidance,
        }
    }

    fn run(
        &self,
        x: Tensor<B, 5>,
        t: Tensor<B, 1>,
        text: &TextCondition<B>,
        sem: bool,
    ) -> Tensor<B, 5> {
        let semantic = match (&self.z_sem, sem) {
            (Some(z), true) => SemanticInput::tokens(z.clone()),
            (Some(z), false) => {
                let b = z.dims()[0];
                SemanticInput::Tokens {
                    z_sem: z.clone(),
                    keep: Some(Tensor::zeros([b], &z.device())),
                }
            }
            (None, _) => SemanticInput::None,
        };
        self.model
            .forward_with_text(x, t, text, semantic, self.layout)
    }
}

impl<B: Backend> Denoiser<B, 5> for RefinerDenoiser<'_, B> {
    fn velocity(&self, x: Tensor<B, 5>, timestep: f32, sigma: f32) -> Tensor<B, 5> {
        let b = x.dims()[0];
        let t = Tensor::<B, 1>::full([b], timestep, &x.device());
        let g = self.guidance;
        let cond = self.run(x.clone(), t.clone(), &self.text, true);
        if !g.schedule.active(sigma)
            || (g.text == 1.0 && (g.semantic == 1.0 || self.z_sem.is_none()))
        {
            return cond;
        }
        let no_text = self.run(x.clone(), t.clone(), &self.null_text, true);
        let v = apply_cfg(cond.clone(), no_text.clone(), g.text);
        if g.semantic == 1.0 || self.z_sem.is_none() {
            return g.schedule.rescale(v, cond);
        }
        let nothing = self.run(x, t, &self.null_text, false);
        // v(∅,∅) + g_s·(v(s,∅) − v(∅,∅)) + g_t·(v(s,t) − v(s,∅))
        let v = v - no_text.clone() + apply_cfg(no_text, nothing, g.semantic);
        g.schedule.rescale(v, cond)
    }
}
