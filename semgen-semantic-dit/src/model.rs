//! The semantic generator: config and presets, the model over the semantic grid, the training
//! loss, and the guided denoiser.

use burn::prelude::*;
use rand::Rng;
use semgen_core::flow::{noisy_sample, standard_normal, velocity_target, TimestepSampling};
use semgen_core::sampling::{apply_cfg, Denoiser, GuidanceSchedule};
use semgen_core::wan_dit::{TextCondition, TokenLayout, WanDit, WanDitConfig};
use semgen_core::ConfigError;

use crate::text_refiner::{TextRefiner, TextRefinerConfig};

/// Errors of the semantic generator's inputs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SemanticDitError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("semantic tokens have {found} channels, the model expects {expected}")]
    Channels { expected: usize, found: usize },
    #[error("a story needs at least one segment prompt")]
    NoSegments,
    #[error("{segments} segment prompts for {frames} semantic frames: every segment needs at least one frame")]
    TooManySegments { segments: usize, frames: usize },
    #[error("{0}")]
    Shape(String),
}

/// Configuration of the semantic generator.
#[derive(Config, Debug, PartialEq)]
pub struct SemanticDitConfig {
    /// The backbone; `in_channels = out_channels = d_out`, patch `(1, 1, 1)` (semantic tokens are
    /// already compact), full attention.
    pub dit: WanDitConfig,
    /// Semantic frames per story segment (per-segment prompts).
    #[config(default = 2)]
    pub frames_per_segment: usize,
    /// Probability of dropping the text in training (CFG).
    #[config(default = 0.1)]
    pub text_drop: f64,
    #[config(default = "TimestepSampling::LogitNormal { mean: 0.0, std: 1.0, shift: 1.0 }")]
    pub timesteps: TimestepSampling,
    /// Per-channel mean and std of the training `z_sem`: the model works on
    /// `(z_sem - mean) / std`; empty = identity. See [`SemanticDitConfig::to_model_space`].
    #[config(default = "Vec::new()")]
    pub z_mean: Vec<f32>,
    #[config(default = "Vec::new()")]
    pub z_std: Vec<f32>,
    /// Self-attention over the prompt's tokens before the cross-attention reads them
    /// ([`TextRefiner`]; binds attributes to their objects); `None` = the raw text features.
    #[config(default = "None")]
    pub text_refiner: Option<TextRefinerConfig>,
}

impl SemanticDitConfig {
    fn stats<B: Backend>(&self, device: &B::Device) -> Option<(Tensor<B, 5>, Tensor<B, 5>)> {
        let c = self.dit.in_channels;
        if self.z_mean.len() != c || self.z_std.len() != c {
            return None;
        }
        let t = |v: &[f32]| Tensor::<B, 1>::from_floats(v, device).reshape([1, c, 1, 1, 1]);
        Some((t(&self.z_mean), t(&self.z_std)))
    }

    /// `z_sem` → the unit-scale space the model is trained in.
    pub fn to_model_space<B: Backend>(&self, z: Tensor<B, 5>) -> Tensor<B, 5> {
        match self.stats::<B>(&z.device()) {
            Some((m, s)) => (z - m) / s,
            None => z,
        }
    }

    /// Inverse of [`Self::to_model_space`]: a generated sample → `z_sem` for the refiner.
    pub fn from_model_space<B: Backend>(&self, z: Tensor<B, 5>) -> Tensor<B, 5> {
        match self.stats::<B>(&z.device()) {
            Some((m, s)) => z * s + m,
            None => z,
        }
    }

    /// A backbone over `d_out`-channel semantic tokens (patch 1×1×1, full attention).
    pub fn on_backbone(dit: WanDitConfig, d_out: usize) -> Self {
        Self::new(WanDitConfig {
            in_channels: d_out,
            out_channels: d_out,
            patch_size: [1, 1, 1],
            attn_window: None,
            ..dit
        })
    }

    /// The fixture-sized backbone (D = 40, L = 2) for tests.
    pub fn tiny(d_out: usize, text_dim: usize) -> Self {
        Self::on_backbone(
            WanDitConfig {
                text_dim,
                ..WanDitConfig::tiny()
            },
            d_out,
        )
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.dit.validate()?;
        self.timesteps.validate()?;
        if self.dit.attn_window.is_some() {
            return Err(ConfigError::invalid(
                "the semantic generator uses full attention (attn_window must be None)",
            ));
        }
        if self.dit.in_channels != self.dit.out_channels {
            return Err(ConfigError::invalid(
                "semantic generator: in_channels must equal out_channels",
            ));
        }
        if self.frames_per_segment == 0 {
            return Err(ConfigError::invalid(
                "frames_per_segment must be at least 1",
            ));
        }
        if !(0.0..1.0).contains(&self.text_drop) {
            return Err(ConfigError::invalid(format!(
                "text_drop must be in [0, 1), got {}",
                self.text_drop
            )));
        }
        // The latent statistics are all-or-nothing: a partial set would silently be ignored.
        let c = self.dit.in_channels;
        let (m, s) = (self.z_mean.len(), self.z_std.len());
        if (m, s) != (0, 0) && (m, s) != (c, c) {
            return Err(ConfigError::invalid(format!(
                "z_mean/z_std have {m}/{s} entries; both must be empty or have in_channels = {c}"
            )));
        }
        if let Some(r) = &self.text_refiner {
            r.validate()?;
            if r.dim != self.dit.text_dim {
                return Err(ConfigError::invalid(format!(
                    "text refiner width {} differs from the text width {}",
                    r.dim, self.dit.text_dim
                )));
            }
        }
        if self.z_mean.iter().any(|v| !v.is_finite())
            || self.z_std.iter().any(|v| !(v.is_finite() && *v > 0.0))
        {
            return Err(ConfigError::invalid(
                "z_mean must be finite and z_std finite and positive",
            ));
        }
        Ok(())
    }

    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<SemanticDit<B>, ConfigError> {
        self.validate()?;
        Ok(SemanticDit {
            dit: self.dit.init(device)?,
            text_refiner: match &self.text_refiner {
                Some(r) => Some(r.init(device)?),
                None => None,
            },
            config: self.clone(),
        })
    }
}

/// Text for one forward pass (raw text-encoder features, not yet embedded).
#[derive(Debug, Clone)]
pub enum SemanticText<B: Backend> {
    /// One prompt: `[B, L, text_dim]`.
    Shared(Tensor<B, 3>),
    /// One prompt per story segment: `[B, S, L, text_dim]`.
    Segments(Tensor<B, 4>),
}

impl<B: Backend> SemanticText<B> {
    fn scaled(self, keep: Tensor<B, 1>) -> Self {
        let b = keep.dims()[0];
        match self {
            SemanticText::Shared(t) => SemanticText::Shared(t * keep.reshape([b, 1, 1])),
            SemanticText::Segments(t) => SemanticText::Segments(t * keep.reshape([b, 1, 1, 1])),
        }
    }

    fn zeros_like(&self) -> Self {
        match self {
            SemanticText::Shared(t) => SemanticText::Shared(t.zeros_like()),
            SemanticText::Segments(t) => SemanticText::Segments(t.zeros_like()),
        }
    }
}

/// The semantic generator.
#[derive(Module, Debug)]
pub struct SemanticDit<B: Backend> {
    pub dit: WanDit<B>,
    pub text_refiner: Option<TextRefiner<B>>,
    #[module(skip)]
    pub config: SemanticDitConfig,
}

impl<B: Backend> SemanticDit<B> {
    /// The layout of a semantic grid `[t, h, w]` (full attention; reuse across steps).
    pub fn layout(
        &self,
        grid: [usize; 3],
        device: &B::Device,
    ) -> Result<TokenLayout<B>, SemanticDitError> {
        let g = self.dit.patched_grid(grid[0], grid[1], grid[2])?;
        Ok(self.dit.layout(g, None, device))
    }

    /// This generator with a fresh (identity) text refiner of `config`: a model trained without
    /// one starts its fine-tune from the same function.
    pub fn with_text_refiner(
        mut self,
        config: TextRefinerConfig,
        device: &B::Device,
    ) -> Result<Self, ConfigError> {
        let mut full = self.config.clone();
        full.text_refiner = Some(config.clone());
        full.validate()?;
        self.text_refiner = Some(config.init(device)?);
        self.config = full;
        Ok(self)
    }

    /// Raw text features `[B, L, text_dim]` through the text refiner, if any.
    fn refine_text(&self, text: Tensor<B, 3>) -> Tensor<B, 3> {
        match &self.text_refiner {
            Some(r) => r.forward(text),
            None => text,
        }
    }

    /// Embeds text, binding segment prompts to their time spans.
    pub fn condition(
        &self,
        text: SemanticText<B>,
        layout: &TokenLayout<B>,
    ) -> Result<TextCondition<B>, SemanticDitError> {
        Ok(match text {
            SemanticText::Shared(t) => {
                TextCondition::Shared(self.dit.embed_text(self.refine_text(t)))
            }
            SemanticText::Segments(t) => {
                let s = t.dims()[1];
                let frames = layout.grid[0];
                if s == 0 {
                    return Err(SemanticDitError::NoSegments);
                }
                if s > frames.div_ceil(self.config.frames_per_segment).max(1) {
                    return Err(SemanticDitError::TooManySegments {
                        segments: s,
                        frames,
                    });
                }
                let [b, _, l, c] = t.dims();
                let t = self
                    .refine_text(t.reshape([b * s, l, c]))
                    .reshape([b, s, l, c]);
                TextCondition::Segmented {
                    text: self.dit.embed_segment_text(t),
                    plan: layout.segment_plan(self.config.frames_per_segment, s),
                }
            }
        })
    }

    /// Velocity for noisy semantic tokens `z_t [B, d, t, h, w]` at timesteps `[B]`.
    pub fn forward(
        &self,
        z_t: Tensor<B, 5>,
        timestep: Tensor<B, 1>,
        text: SemanticText<B>,
    ) -> Result<Tensor<B, 5>, SemanticDitError> {
        let [_, c, t, h, w] = z_t.dims();
        if c != self.config.dit.in_channels {
            return Err(SemanticDitError::Channels {
                expected: self.config.dit.in_channels,
                found: c,
            });
        }
        let layout = self.layout([t, h, w], &z_t.device())?;
        let cond = self.condition(text, &layout)?;
        Ok(self.forward_with(z_t, timestep, &cond, &layout))
    }

    /// [`SemanticDit::forward`] with a prebuilt layout and embedded text.
    pub fn forward_with(
        &self,
        z_t: Tensor<B, 5>,
        timestep: Tensor<B, 1>,
        text: &TextCondition<B>,
        layout: &TokenLayout<B>,
    ) -> Tensor<B, 5> {
        let tokens = self.dit.patchify(z_t);
        let (temb, tproj) = self.dit.embed_timestep(timestep);
        let out = self.dit.forward_tokens(tokens, layout, tproj, text);
        self.dit.unpatchify(self.dit.head(out, temb), layout.grid)
    }

    /// The rectified-flow loss on clean `z_sem [B, d, t, h, w]`, with text dropout; all
    /// randomness from `rng`.
    pub fn training_loss(
        &self,
        z_sem: Tensor<B, 5>,
        text: SemanticText<B>,
        rng: &mut impl Rng,
    ) -> Result<Tensor<B, 1>, SemanticDitError> {
        self.training_loss_weighted(z_sem, text, None, rng)
    }

    /// [`Self::training_loss`] with per-token loss weights `[B, 1, T, H, W]` (the loss becomes
    /// the weighted mean over tokens and channels; `None` = the plain mean). The random draws
    /// are the same either way.
    pub fn training_loss_weighted(
        &self,
        z_sem: Tensor<B, 5>,
        text: SemanticText<B>,
        weights: Option<Tensor<B, 5>>,
        rng: &mut impl Rng,
    ) -> Result<Tensor<B, 1>, SemanticDitError> {
        let device = z_sem.device();
        let dims = z_sem.dims();
        let b = dims[0];
        let sigma: Vec<f32> = self
            .config
            .timesteps
            .sample(b, rng)
            .into_iter()
            .map(|s| s as f32)
            .collect();
        let sigma = Tensor::<B, 1>::from_data(TensorData::new(sigma, [b]), &device);
        let n: usize = dims.iter().product();
        let noise: Vec<f32> = (0..n).map(|_| standard_normal(rng) as f32).collect();
        let noise = Tensor::<B, 5>::from_data(TensorData::new(noise, dims), &device);
        let keep: Vec<f32> = (0..b)
            .map(|_| {
                if rng.random::<f64>() < self.config.text_drop {
                    0.0
                } else {
                    1.0
                }
            })
            .collect();
        let keep = Tensor::<B, 1>::from_data(TensorData::new(keep, [b]), &device);
        let x_t = noisy_sample(z_sem.clone(), noise.clone(), sigma.clone());
        let v = self.forward(x_t, sigma * 1000.0, text.scaled(keep))?;
        let err = (v - velocity_target(z_sem, noise)).square();
        Ok(match weights {
            None => err.mean(),
            Some(w) => {
                let [wb, wc, wt, wh, ww] = w.dims();
                if [wb, wc, wt, wh, ww] != [dims[0], 1, dims[2], dims[3], dims[4]] {
                    return Err(SemanticDitError::Shape(format!(
                        "loss weights {:?} do not match z_sem {:?} (expected [B, 1, T, H, W])",
                        w.dims(),
                        dims
                    )));
                }
                let channels = dims[1] as f64;
                (err * w.clone()).sum() / (w.sum() * channels)
            }
        })
    }
}

/// The semantic generator with its prompt bound, as a [`Denoiser`] with text CFG.
pub struct SemanticDenoiser<'a, B: Backend> {
    model: &'a SemanticDit<B>,
    layout: TokenLayout<B>,
    cond: TextCondition<B>,
    uncond: TextCondition<B>,
    guidance: f64,
    schedule: GuidanceSchedule,
}

impl<'a, B: Backend> SemanticDenoiser<'a, B> {
    /// Binds the prompt(s) for sampling a semantic grid `[t, h, w]`.
    pub fn new(
        model: &'a SemanticDit<B>,
        grid: [usize; 3],
        text: SemanticText<B>,
        guidance: f64,
        device: &B::Device,
    ) -> Result<Self, SemanticDitError> {
        let layout = model.layout(grid, device)?;
        let uncond = model.condition(text.zeros_like(), &layout)?;
        let cond = model.condition(text, &layout)?;
        Ok(Self {
            model,
            layout,
            cond,
            uncond,
            guidance,
            schedule: GuidanceSchedule::default(),
        })
    }

    /// Applies the guidance only within `schedule`'s σ interval, with its rescale.
    pub fn with_schedule(mut self, schedule: GuidanceSchedule) -> Self {
        self.schedule = schedule;
        self
    }
}

impl<B: Backend> Denoiser<B, 5> for SemanticDenoiser<'_, B> {
    fn velocity(&self, x: Tensor<B, 5>, timestep: f32, sigma: f32) -> Tensor<B, 5> {
        let t = Tensor::<B, 1>::full([x.dims()[0]], timestep, &x.device());
        let cond = self
            .model
            .forward_with(x.clone(), t.clone(), &self.cond, &self.layout);
        if self.guidance == 1.0 || !self.schedule.active(sigma) {
            return cond;
        }
        let uncond = self.model.forward_with(x, t, &self.uncond, &self.layout);
        let v = apply_cfg(cond.clone(), uncond, self.guidance);
        self.schedule.rescale(v, cond)
    }
}
