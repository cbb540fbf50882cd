//! Training the VAE on Shapes clips: reconstruction (L1 + MSE) plus a small KL term, AdamW,
//! periodic atomic checkpoints and exact resume.
//!
//! A run directory holds `vae.safetensors` (a semgen `wan_vae` checkpoint in diffusers' key
//! layout, loadable with [`WanVae::load`]) and `train_state.bin` (the Burn records of the model
//! and the AdamW moments plus the step, so a resumed run continues bit-for-bit). Both are written
//! atomically (temp file, fsync, rename). The posterior noise and the clips of step `s` are
//! derived from `(seed, s)`, so nothing else needs saving.

use crate::keys::DIFFUSERS_KEYS;
use crate::{VaeError, WanVae, WanVaeConfig, COMPONENT};
use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::record::{BinBytesRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::AutodiffBackend;
use rand::{Rng, SeedableRng};
use semgen_core::checkpoint::{save_checkpoint, write_atomic, CheckpointMeta};
use semgen_core::train::{pack_parts, unpack_parts};
use semgen_data::{videos_to_tensor, ShapesWorld, Split, WorldConfig};
use serde::{Deserialize, Serialize};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

/// File names inside a run directory.
pub const CHECKPOINT_FILE: &str = "vae.safetensors";
pub const STATE_FILE: &str = "train_state.bin";

/// Why training could not run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("cannot read training config {path}: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error(transparent)]
    Model(#[from] semgen_core::ConfigError),
    #[error(transparent)]
    Input(#[from] VaeError),
    #[error("Shapes data: {0}")]
    Data(#[from] semgen_data::DataError),
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    #[error("cannot start from {path}: {source}")]
    InitFrom {
        path: PathBuf,
        source: semgen_core::checkpoint::LoadError,
    },
    #[error("cannot resume from {dir}: {reason}")]
    Resume { dir: PathBuf, reason: String },
}

// ---------------------------------------------------------------------------------------------
// Config (TOML)
// ---------------------------------------------------------------------------------------------

fn default_true() -> bool {
    true
}

fn default_one() -> f64 {
    1.0
}

/// A training run: `[model]`, `[data]`, `[train]` tables of a TOML file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaeTrainConfig {
    pub model: ModelSection,
    pub data: DataSection,
    pub train: TrainSection,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// `tiny`, `shapes-small` or `wan21` ([`WanVaeConfig`] presets).
    pub preset: String,
    /// Overrides the preset's latent channels (latent mean/std become 0/1).
    #[serde(default)]
    pub z_dim: Option<usize>,
    /// Start from these weights (a `vae.safetensors` of an earlier run, or any checkpoint
    /// [`WanVae::load`] reads) instead of a fresh initialisation.
    #[serde(default)]
    pub init_from: Option<PathBuf>,
    /// Inflate `init_from` from an image VAE to a video VAE ([`WanVae::inflate_image`]) before
    /// training: the second phase of the image-first curriculum.
    #[serde(default)]
    pub inflate: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// Shapes world seed.
    pub seed: u64,
    /// Frames per clip, `1 + 4k`.
    pub frames: usize,
    pub height: usize,
    pub width: usize,
    pub max_objects: usize,
    pub batch_size: usize,
    /// Train on a `crop × crop` window of each step's clips (position drawn per step) (a multiple of 8); `None` = the
    /// whole frame. The tests use it to stay fast.
    #[serde(default)]
    pub crop: Option<usize>,
    /// Draw the crop window per step (on the 8-px latent grid) instead of centring it.
    #[serde(default)]
    pub random_crop: bool,
    /// Train on still images: one frame per clip (drawn from `(seed, step)`), `[B, 3, 1, H, W]`.
    /// The first phase of the image-first curriculum: a frame costs a ninth of a 9-frame clip,
    /// so a batch sees many more distinct pictures, and with the front zero padding of the
    /// causal convs a lone frame trains exactly the taps an inflated video VAE starts from.
    #[serde(default)]
    pub still_frames: bool,
    /// Cycle over the first `clips` training clips instead of fresh ones every step (the tests
    /// overfit one clip, so that the loss must fall).
    #[serde(default)]
    pub clips: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSection {
    pub steps: u64,
    pub lr: f64,
    pub weight_decay: f32,
    pub l1_weight: f64,
    pub mse_weight: f64,
    pub kl_weight: f64,
    /// Save every this many steps (and at the end).
    pub checkpoint_every: u64,
    /// Train the decoder only, on the posterior mean (no sampling): the encoder, and so every
    /// latent a downstream model was trained on, stays exactly as it is.
    #[serde(default)]
    pub decoder_only: bool,
    /// Decode a sample of the posterior (the VAE objective). `false` decodes the mean (an
    /// autoencoder with the KL term as a weak regulariser on the mean), as the shipped recipe
    /// does: at initialisation the posterior noise (σ ≈ 1) drowns the small means, and the
    /// pipeline only ever uses the mean (docs/vae.md).
    #[serde(default = "default_true")]
    pub sample_posterior: bool,
    /// Linear learning-rate warm-up over this many steps.
    #[serde(default)]
    pub warmup: u64,
    /// After warm-up, cosine decay to `lr · final_lr_ratio` at the last step (1 = constant).
    #[serde(default = "default_one")]
    pub final_lr_ratio: f64,
    /// Clip the global gradient norm to this value.
    #[serde(default)]
    pub grad_clip: Option<f32>,
    /// Weight of the latent anchor: `mean|mu[:, :3] − pool(x)|`, the first three latent
    /// channels pulled towards the video averaged over each latent cell (8×8 pixels; the first
    /// frame alone, then 4-frame blocks, as the causal encoder groups them). Trained jointly from
    /// scratch, this small Wan VAE settles within ~100 steps into predicting the data mean while
    /// its decoder ignores the latent (measured, docs/vae.md); the anchor makes the latent carry
    /// the picture from step 0, so the decoder learns to use it. 0 = off.
    #[serde(default)]
    pub anchor_weight: f64,
    /// Apply the anchor for the first this many steps only (then the latent is free).
    #[serde(default)]
    pub anchor_steps: u64,
    /// Weight of the reconstruction error on object pixels (each object's `(2r + 3)²` box around
    /// its true centre, per frame) relative to background pixels (weight 1). Objects cover
    /// 5–15 % of a Shapes frame and carry every attribute the oracle checks (colour, shape,
    /// motion); with uniform weights the decoder spends its capacity on the background first
    /// (docs/vae.md, session 7). 1 = uniform (the plain L1 + MSE).
    #[serde(default = "default_one")]
    pub object_weight: f64,
    /// End the run after this step (saving it) while the learning-rate schedule still runs to
    /// `steps`: how a run that was cut short on purpose is reproduced. `None` = run to `steps`.
    #[serde(default)]
    pub stop_at: Option<u64>,
    /// Seed of the posterior noise.
    pub seed: u64,
}

impl VaeTrainConfig {
    /// `configs/tiny.toml`: the fixture-sized model on 5×32×32 clips, for tests.
    pub fn tiny() -> Self {
        Self {
            model: ModelSection {
                preset: "tiny".into(),
                z_dim: None,
                init_from: None,
                inflate: false,
            },
            data: DataSection {
                seed: 0,
                frames: 5,
                height: 32,
                width: 32,
                max_objects: 2,
                batch_size: 1,
                crop: Some(16),
                random_crop: false,
                still_frames: false,
                clips: Some(1),
            },
            train: TrainSection {
                steps: 6,
                lr: 2e-3,
                weight_decay: 1e-4,
                l1_weight: 1.0,
                mse_weight: 1.0,
                kl_weight: 1e-6,
                checkpoint_every: 3,
                decoder_only: false,
                sample_posterior: true,
                warmup: 0,
                final_lr_ratio: 1.0,
                grad_clip: None,
                anchor_weight: 0.0,
                anchor_steps: 0,
                object_weight: 1.0,
                stop_at: None,
                seed: 0,
            },
        }
    }

    /// `configs/shapes-small-image.toml`: phase 1 of the shipped VAE, an image autoencoder on
    /// single 32×32 windows of Shapes frames with the latent anchor.
    pub fn shapes_small_image() -> Self {
        Self {
            model: ModelSection {
                preset: "shapes-small".into(),
                z_dim: None,
                init_from: None,
                inflate: false,
            },
            data: DataSection {
                seed: 0,
                frames: 9,
                height: 64,
                width: 64,
                max_objects: 2,
                batch_size: 16,
                crop: Some(32),
                random_crop: true,
                still_frames: true,
                clips: None,
            },
            train: TrainSection {
                steps: 3000,
                lr: 3e-4,
                weight_decay: 1e-4,
                l1_weight: 1.0,
                mse_weight: 1.0,
                kl_weight: 1e-6,
                checkpoint_every: 100,
                decoder_only: false,
                sample_posterior: false,
                warmup: 50,
                final_lr_ratio: 0.1,
                grad_clip: Some(1.0),
                anchor_weight: 1.0,
                anchor_steps: 3000,
                object_weight: 1.0,
                stop_at: Some(2100),
                seed: 0,
            },
        }
    }

    /// `configs/shapes-small.toml`: phase 2 of the VAE, phase 1 inflated to video and
    /// trained on 9-frame 32×32 windows of 17×64×64 Shapes clips.
    pub fn shapes_small() -> Self {
        Self {
            model: ModelSection {
                preset: "shapes-small".into(),
                z_dim: None,
                init_from: Some("runs/vae-image/vae.safetensors".into()),
                inflate: true,
            },
            data: DataSection {
                seed: 0,
                frames: 9,
                height: 64,
                width: 64,
                max_objects: 2,
                batch_size: 4,
                crop: Some(32),
                random_crop: true,
                still_frames: false,
                clips: None,
            },
            train: TrainSection {
                steps: 300,
                lr: 1e-4,
                weight_decay: 1e-4,
                l1_weight: 1.0,
                mse_weight: 1.0,
                kl_weight: 1e-6,
                checkpoint_every: 100,
                decoder_only: false,
                sample_posterior: false,
                warmup: 20,
                final_lr_ratio: 0.1,
                grad_clip: Some(0.5),
                anchor_weight: 1.0,
                anchor_steps: 300,
                object_weight: 1.0,
                stop_at: None,
                seed: 0,
            },
        }
    }

    /// `configs/shapes-small-decoder.toml`: phase 3 of the VAE, the decoder of the
    /// assembled model's VAE fine-tuned on whole 9×64×64 clips with the encoder frozen and
    /// object pixels weighted 5× (latents and their statistics unchanged). Written as its
    /// differences from phase 2.
    pub fn shapes_small_decoder() -> Self {
        let phase2 = Self::shapes_small();
        Self {
            model: ModelSection {
                init_from: Some("checkpoints/shapes-small-v1/vae.safetensors".into()),
                inflate: false,
                ..phase2.model
            },
            data: DataSection {
                batch_size: 1,
                crop: None,
                random_crop: false,
                ..phase2.data
            },
            train: TrainSection {
                steps: 1500,
                lr: 5e-5,
                kl_weight: 0.0,
                decoder_only: true,
                warmup: 100,
                anchor_weight: 0.0,
                anchor_steps: 0,
                object_weight: 5.0,
                stop_at: Some(1000),
                ..phase2.train
            },
        }
    }

    /// `configs/shapes-small-decoder-objects.toml`: phase 4 of the VAE (session 15; v1 ships it), the
    /// phase-3 decoder fine-tuned again with the encoder frozen, on fresh clips (world seed 1),
    /// a new schedule, and object pixels weighted 20×: more of the oracle's hits on the
    /// reconstructions for a fraction of a dB of PSNR (docs/vae.md).
    pub fn shapes_small_decoder_objects() -> Self {
        let phase3 = Self::shapes_small_decoder();
        Self {
            data: DataSection {
                seed: 1,
                ..phase3.data
            },
            train: TrainSection {
                warmup: 50,
                object_weight: 20.0,
                stop_at: None,
                ..phase3.train
            },
            ..phase3
        }
    }

    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    pub fn load(path: &Path) -> Result<Self, TrainError> {
        let err = |reason: String| TrainError::Config {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let cfg = Self::from_toml(&text).map_err(err)?;
        cfg.model_config().map_err(|e| TrainError::Config {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Ok(cfg)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    /// The VAE config of `[model]`.
    pub fn model_config(&self) -> Result<WanVaeConfig, semgen_core::ConfigError> {
        let mut c = match self.model.preset.as_str() {
            "tiny" => WanVaeConfig::tiny(),
            "shapes-small" => WanVaeConfig::shapes_small(),
            "wan21" => WanVaeConfig::wan21(),
            other => {
                return Err(semgen_core::ConfigError::invalid(format!(
                    "unknown model preset '{other}' (tiny, shapes-small, wan21)"
                )))
            }
        };
        if let Some(z) = self.model.z_dim {
            c.z_dim = z;
            c.latents_mean = vec![0.0; z];
            c.latents_std = vec![1.0; z];
        }
        c.validate()?;
        Ok(c)
    }
}

// ---------------------------------------------------------------------------------------------
// Loss
// ---------------------------------------------------------------------------------------------

/// Loss weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossWeights {
    pub l1: f64,
    pub mse: f64,
    pub kl: f64,
}

/// The loss and its parts (scalars `[1]`).
#[derive(Debug, Clone)]
pub struct VaeLoss<B: Backend> {
    pub total: Tensor<B, 1>,
    pub l1: Tensor<B, 1>,
    pub mse: Tensor<B, 1>,
    pub kl: Tensor<B, 1>,
    /// The latent anchor (zero when off).
    pub anchor: Tensor<B, 1>,
}

/// The video averaged over each latent cell: `[B, C, T, H, W]` (`T = 1 + 4k`, `H`, `W` multiples
/// of 8) to `[B, C, 1 + k, H/8, W/8]`: the first frame on its own, then blocks of 4 frames, the
/// way the causal encoder maps frames to latent frames.
pub fn latent_cell_means<B: Backend>(video: Tensor<B, 5>) -> Tensor<B, 5> {
    let [b, c, t, h, w] = video.dims();
    let pool = |x: Tensor<B, 5>, frames: usize| -> Tensor<B, 5> {
        let blocks = x.dims()[2] / frames;
        x.reshape([b * c * blocks, frames, h / 8, 8, w / 8, 8])
            .mean_dim(5)
            .mean_dim(3)
            .mean_dim(1)
            .reshape([b, c, blocks, h / 8, w / 8])
    };
    let first = pool(video.clone().narrow(2, 0, 1), 1);
    if t == 1 {
        return first;
    }
    Tensor::cat(vec![first, pool(video.narrow(2, 1, t - 1), 4)], 2)
}

/// `l1·mean|x̂ - x| + mse·mean(x̂ - x)² + kl·KL(q(z|x) ‖ N(0, I))`, the KL averaged over latent
/// elements; `logvar` is clamped to [-30, 20] as diffusers' `DiagonalGaussianDistribution` does.
pub fn vae_loss<B: Backend>(
    video: Tensor<B, 5>,
    recon: Tensor<B, 5>,
    mu: Tensor<B, 5>,
    logvar: Tensor<B, 5>,
    w: LossWeights,
) -> VaeLoss<B> {
    weighted_vae_loss(video, recon, mu, logvar, None, w)
}

/// [`vae_loss`] with per-element weights on the reconstruction terms (`pixel_weights`, the
/// shape of `video`): the L1 and MSE in `total` become `Σ w·e / Σ w`, a weighted mean, while
/// the reported `l1` and `mse` stay the plain means (comparable across runs).
pub fn weighted_vae_loss<B: Backend>(
    video: Tensor<B, 5>,
    recon: Tensor<B, 5>,
    mu: Tensor<B, 5>,
    logvar: Tensor<B, 5>,
    pixel_weights: Option<Tensor<B, 5>>,
    w: LossWeights,
) -> VaeLoss<B> {
    let diff = recon - video;
    let abs = diff.clone().abs();
    let sq = diff.square();
    let l1 = abs.clone().mean();
    let mse = sq.clone().mean();
    let (l1_term, mse_term) = match pixel_weights {
        Some(pw) => {
            let norm = pw.clone().sum();
            (
                (abs * pw.clone()).sum() / norm.clone(),
                (sq * pw).sum() / norm,
            )
        }
        None => (l1.clone(), mse.clone()),
    };
    let logvar = logvar.clamp(-30.0, 20.0);
    let kl = ((mu.square() + logvar.clone().exp() - logvar - 1.0) * 0.5).mean();
    let total = l1_term * w.l1 + mse_term * w.mse + kl.clone() * w.kl;
    let anchor = total.zeros_like();
    VaeLoss {
        total,
        l1,
        mse,
        kl,
        anchor,
    }
}

/// The object boxes of a clip, frame by frame: `(frame, y0..=y1, x0..=x1)` in pixels, the pixels
/// whose centres lie within `r + 1.5` of an object's true centre on both axes (every Shapes
/// shape lies inside `|dx|, |dy| ≤ r`; the margin takes the anti-aliased edge), clipped to the
/// frame; boxes wholly outside it are left out. Shared by the VAE's and the refiner's object
/// loss weights.
pub fn object_pixel_boxes(
    plan: &semgen_data::ClipPlan,
) -> Vec<(usize, RangeInclusive<usize>, RangeInclusive<usize>)> {
    let (t, h, w) = (plan.frames(), plan.height, plan.width);
    let mut boxes = Vec::new();
    for object in &plan.objects {
        let half = object.size.radius(h) + 1.5;
        // The pixels p of an axis of n with |p + 0.5 − c| ≤ half.
        let span = |c: f64, n: usize| {
            let lo = (c - half - 0.5).ceil().max(0.0);
            let hi = (c + half - 0.5).floor().min(n as f64 - 1.0);
            (hi >= lo).then(|| lo as usize..=hi as usize)
        };
        for (f, &[cx, cy]) in object.centres.iter().enumerate().take(t) {
            if let (Some(ys), Some(xs)) = (span(cy, h), span(cx, w)) {
                boxes.push((f, ys, xs));
            }
        }
    }
    boxes
}

/// Per-pixel loss weights `[B, 3, T, H, W]` for whole clips: `weight` inside each object's box
/// ([`object_pixel_boxes`]) in each frame, 1 elsewhere. Built on the host at full shape:
/// broadcasting a size-1 channel axis is slow on the CPU backend.
pub fn object_weight_map<B: Backend>(
    plans: &[&semgen_data::ClipPlan],
    weight: f64,
    device: &B::Device,
) -> Tensor<B, 5> {
    let Some(first) = plans.first() else {
        return Tensor::zeros([0, 3, 0, 0, 0], device);
    };
    let (t, h, w) = (first.frames(), first.height, first.width);
    let mut values = vec![1.0f32; plans.len() * 3 * t * h * w];
    for (b, plan) in plans.iter().enumerate() {
        for (f, ys, xs) in object_pixel_boxes(plan) {
            for c in 0..3 {
                for y in ys.clone() {
                    let row = (((b * 3 + c) * t + f) * h + y) * w;
                    values[row + xs.start()..=row + xs.end()].fill(weight as f32);
                }
            }
        }
    }
    Tensor::from_data(TensorData::new(values, [plans.len(), 3, t, h, w]), device)
}

/// Standard normal noise from `(seed, step)` on the host, so resumed runs draw the same noise.
fn normal_noise<B: Backend>(
    shape: [usize; 5],
    seed: u64,
    step: u64,
    device: &B::Device,
) -> Tensor<B, 5> {
    let mut rng =
        rand::rngs::StdRng::seed_from_u64(seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let n: usize = shape.iter().product();
    // Box-Muller on (0, 1] uniforms.
    let values: Vec<f32> = (0..n)
        .map(|_| {
            let u1: f64 = 1.0 - rng.random::<f64>();
            let u2: f64 = rng.random::<f64>();
            ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
        })
        .collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}

// ---------------------------------------------------------------------------------------------
// Trainer
// ---------------------------------------------------------------------------------------------

/// Scalars of one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    pub step: u64,
    pub loss: f64,
    pub l1: f64,
    pub mse: f64,
    pub kl: f64,
    pub anchor: f64,
}

/// A VAE training run on Shapes clips.
pub struct VaeTrainer<B: AutodiffBackend> {
    pub model: WanVae<B>,
    optim: OptimizerAdaptor<AdamW, WanVae<B>, B>,
    /// Steps done.
    pub step: u64,
    pub config: VaeTrainConfig,
    world: ShapesWorld,
    device: B::Device,
}

impl<B: AutodiffBackend> VaeTrainer<B> {
    /// A fresh run; the initial weights come from `B`'s RNG seeded with `train.seed`.
    pub fn new(config: VaeTrainConfig, device: &B::Device) -> Result<Self, TrainError> {
        B::seed(device, config.train.seed);
        let mut model_config = config.model_config()?;
        if let (Some(path), true) = (&config.model.init_from, config.train.decoder_only) {
            // The encoder stays frozen, so the latent statistics that downstream models were
            // trained with (stored beside the starting weights) stay exact: keep them. A file
            // without semgen metadata (a diffusers or original Wan state dict) has none to keep;
            // `WanVae::load` below reports any other problem with it.
            let init_err = |source| TrainError::InitFrom {
                path: path.clone(),
                source,
            };
            if let Ok(meta) = semgen_core::checkpoint::read_meta(path) {
                let stored =
                    WanVaeConfig::from_diffusers_json(&meta.config.to_string()).map_err(|e| {
                        init_err(semgen_core::checkpoint::LoadError::Invalid(e.to_string()))
                    })?;
                if stored.z_dim == model_config.z_dim {
                    model_config.latents_mean = stored.latents_mean;
                    model_config.latents_std = stored.latents_std;
                }
            }
        }
        let mut model = model_config.init::<B>(device)?;
        if let Some(path) = &config.model.init_from {
            model = WanVae::<B>::load(&model_config, path, device)
                .map_err(|source| TrainError::InitFrom {
                    path: path.clone(),
                    source,
                })?
                .0;
        }
        if config.model.inflate {
            model = model.inflate_image();
        }
        let d = &config.data;
        let world = ShapesWorld::new(WorldConfig {
            seed: d.seed,
            frames: d.frames,
            height: d.height,
            width: d.width,
            max_objects: d.max_objects,
            ..WorldConfig::default()
        })?;
        let (h, w) = match d.crop {
            Some(c) if c <= d.height.min(d.width) => (c, c),
            Some(c) => {
                return Err(TrainError::Config {
                    path: PathBuf::new(),
                    reason: format!(
                        "crop {c} is larger than the {}x{} frames",
                        d.height, d.width
                    ),
                })
            }
            None => (d.height, d.width),
        };
        let t = if d.still_frames { 1 } else { d.frames };
        model.check_video([d.batch_size.max(1), 3, t, h, w])?;
        let optim = AdamWConfig::new()
            .with_weight_decay(config.train.weight_decay)
            .with_grad_clipping(
                config
                    .train
                    .grad_clip
                    .map(burn::optim::grad_clipping::GradientClippingConfig::Norm),
            )
            .init();
        Ok(Self {
            model,
            optim,
            step: 0,
            config,
            world,
            device: device.clone(),
        })
    }

    /// The clips of step `s`: training clips `s·B .. (s+1)·B` (modulo `data.clips`).
    pub fn batch(&self, step: u64) -> Result<Tensor<B, 5>, TrainError> {
        Ok(self.batch_and_weights(step)?.0)
    }

    /// [`Self::batch`] and, when `train.object_weight != 1`, the per-pixel loss weights of the
    /// same frames and window (`[B, 3, T, H, W]`).
    pub fn batch_and_weights(
        &self,
        step: u64,
    ) -> Result<(Tensor<B, 5>, Option<Tensor<B, 5>>), TrainError> {
        let b = self.config.data.batch_size.max(1) as u64;
        let clips = (step * b..(step + 1) * b)
            .map(|i| self.config.data.clips.map_or(i, |n| i % n.max(1)))
            .map(|i| self.world.clip(Split::Train, i))
            .collect::<Result<Vec<_>, _>>()?;
        let ow = self.config.train.object_weight;
        let mut weights = (ow != 1.0).then(|| {
            let plans: Vec<_> = clips.iter().map(|c| &c.plan).collect();
            object_weight_map::<B>(&plans, ow, &self.device)
        });
        let videos: Vec<_> = clips.into_iter().map(|c| c.video).collect();
        let mut x = videos_to_tensor(&videos, &self.device)?;
        if self.config.data.still_frames {
            // One frame of each clip, chosen from (seed, step) so a resumed run sees the same.
            let mut rng = rand::rngs::StdRng::seed_from_u64(
                !self.config.train.seed ^ step.wrapping_mul(0xD1B5_4A32_D192_ED03),
            );
            let t = x.dims()[2];
            let picks: Vec<usize> = (0..x.dims()[0]).map(|_| rng.random_range(0..t)).collect();
            let pick = |x: Tensor<B, 5>| {
                let frames = picks
                    .iter()
                    .enumerate()
                    .map(|(i, &f)| x.clone().narrow(0, i, 1).narrow(2, f, 1))
                    .collect();
                Tensor::cat(frames, 0)
            };
            x = pick(x);
            weights = weights.map(pick);
        }
        let [_, _, _, h, w] = x.dims();
        let window = match self.config.data.crop {
            // One crop window per step, on the 8-px latent grid, drawn from (seed, step): the
            // model sees borders and corners, and a resumed run sees the same crops.
            Some(c) if self.config.data.random_crop => {
                let mut rng = rand::rngs::StdRng::seed_from_u64(
                    self.config.train.seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15),
                );
                let y0 = 8 * rng.random_range(0..=(h - c) / 8);
                let x0 = 8 * rng.random_range(0..=(w - c) / 8);
                Some((y0, x0, c))
            }
            Some(c) => Some(((h - c) / 2, (w - c) / 2, c)),
            None => None,
        };
        let crop = |x: Tensor<B, 5>| match window {
            Some((y0, x0, c)) => x.narrow(3, y0, c).narrow(4, x0, c),
            None => x,
        };
        Ok((crop(x), weights.map(crop)))
    }

    /// The loss of the model on `video` with the posterior noise of `step`.
    pub fn loss(
        &self,
        model: &WanVae<B>,
        video: Tensor<B, 5>,
        step: u64,
    ) -> Result<VaeLoss<B>, TrainError> {
        self.weighted_loss(model, video, None, step)
    }

    /// [`Self::loss`] with the per-pixel weights of [`Self::batch_and_weights`].
    pub fn weighted_loss(
        &self,
        model: &WanVae<B>,
        video: Tensor<B, 5>,
        pixel_weights: Option<Tensor<B, 5>>,
        step: u64,
    ) -> Result<VaeLoss<B>, TrainError> {
        let z = model.config.z_dim;
        let moments = if self.config.train.decoder_only {
            // The frozen encoder runs on the inner backend: no autodiff graph is recorded for
            // it at all. (Recording it and detaching the result leaked the unused graph,
            // 8.6 GB after 280 steps, and slowed every step; tracel-ai/burn#4970.)
            Tensor::from_inner(model.valid().encode_moments(video.clone().inner())?)
        } else {
            model.encode_moments(video.clone())?
        };
        let mu = moments.clone().narrow(1, 0, z);
        let logvar = moments.narrow(1, z, z);
        let sample = if self.config.train.decoder_only || !self.config.train.sample_posterior {
            mu.clone()
        } else {
            let eps = normal_noise::<B>(mu.dims(), self.config.train.seed, step, &self.device);
            mu.clone() + (logvar.clone().clamp(-30.0, 20.0) * 0.5).exp() * eps
        };
        // Unclamped decode: the [-1, 1] clamp would zero the gradient of overshooting pixels.
        let recon = model.decode_unclamped(sample)?;
        let t = &self.config.train;
        let anchor_on = t.anchor_weight > 0.0 && step < t.anchor_steps;
        let anchor_target = anchor_on.then(|| latent_cell_means(video.clone()));
        let mut loss = weighted_vae_loss(
            video,
            recon,
            mu.clone(),
            logvar,
            pixel_weights,
            LossWeights {
                l1: t.l1_weight,
                mse: t.mse_weight,
                kl: t.kl_weight,
            },
        );
        if let Some(target) = anchor_target {
            let channels = target.dims()[1].min(z);
            let anchor = (mu.narrow(1, 0, channels) - target.narrow(1, 0, channels))
                .abs()
                .mean();
            loss.total = loss.total + anchor.clone() * t.anchor_weight;
            loss.anchor = anchor;
        }
        Ok(loss)
    }

    /// One AdamW step.
    pub fn train_step(&mut self) -> Result<StepStats, TrainError> {
        let (video, weights) = self.batch_and_weights(self.step)?;
        let loss = self.weighted_loss(&self.model, video, weights, self.step)?;
        let scalar = |t: &Tensor<B, 1>| t.clone().into_scalar().elem::<f64>();
        let stats = StepStats {
            step: self.step + 1,
            loss: scalar(&loss.total),
            l1: scalar(&loss.l1),
            mse: scalar(&loss.mse),
            kl: scalar(&loss.kl),
            anchor: scalar(&loss.anchor),
        };
        let grads = GradientsParams::from_grads(loss.total.backward(), &self.model);
        let t = &self.config.train;
        let lr = if self.step < t.warmup {
            t.lr * (self.step + 1) as f64 / t.warmup as f64
        } else {
            // Cosine from lr (end of warm-up) to lr · final_lr_ratio (last step).
            let span = t.steps.saturating_sub(t.warmup).max(1) as f64;
            let p = ((self.step - t.warmup) as f64 / span).min(1.0);
            let cos = 0.5 * (1.0 + (std::f64::consts::PI * p).cos());
            t.lr * (t.final_lr_ratio + (1.0 - t.final_lr_ratio) * cos)
        };
        self.model = self.optim.step(lr, self.model.clone(), grads);
        self.step += 1;
        Ok(stats)
    }

    /// Runs until `train.steps`, saving into `dir` every `checkpoint_every` steps and at the end.
    pub fn run(&mut self, dir: &Path, mut log: impl FnMut(&StepStats)) -> Result<(), TrainError> {
        let every = self.config.train.checkpoint_every.max(1);
        let end = self
            .config
            .train
            .stop_at
            .map_or(self.config.train.steps, |s| s.min(self.config.train.steps));
        while self.step < end {
            let stats = self.train_step()?;
            log(&stats);
            if self.step % every == 0 || self.step == end {
                self.save(dir)?;
            }
        }
        Ok(())
    }

    /// Writes `vae.safetensors` and `train_state.bin` atomically.
    pub fn save(&self, dir: &Path) -> Result<(), TrainError> {
        let ck = |e: String| TrainError::Checkpoint(e);
        std::fs::create_dir_all(dir).map_err(|e| ck(format!("{}: {e}", dir.display())))?;
        let model = self.model.valid();
        let meta = CheckpointMeta::new(
            COMPONENT,
            self.step,
            serde_json::to_value(&self.model.config).map_err(|e| ck(e.to_string()))?,
        );
        save_checkpoint::<B::InnerBackend, _>(
            &model,
            &dir.join(CHECKPOINT_FILE),
            DIFFUSERS_KEYS,
            &meta,
        )
        .map_err(|e| ck(e.to_string()))?;
        let rec = BinBytesRecorder::<FullPrecisionSettings>::default();
        let model_bytes = Recorder::<B>::record(&rec, self.model.clone().into_record(), ())
            .map_err(|e| ck(e.to_string()))?;
        let optim_bytes = Recorder::<B>::record(&rec, self.optim.to_record(), ())
            .map_err(|e| ck(e.to_string()))?;
        let config = self.config.to_toml().into_bytes();
        let bytes = pack_parts(&[
            &self.step.to_le_bytes()[..],
            &config,
            &model_bytes,
            &optim_bytes,
        ]);
        write_atomic(&dir.join(STATE_FILE), &bytes).map_err(|e| ck(e.to_string()))
    }

    /// Continues the run saved in `dir`. `config` must describe the same model and data; the
    /// step budget and checkpoint interval may change.
    pub fn resume(
        config: VaeTrainConfig,
        dir: &Path,
        device: &B::Device,
    ) -> Result<Self, TrainError> {
        let bad = |reason: String| TrainError::Resume {
            dir: dir.to_path_buf(),
            reason,
        };
        let bytes =
            std::fs::read(dir.join(STATE_FILE)).map_err(|e| bad(format!("{STATE_FILE}: {e}")))?;
        let parts = unpack_parts(&bytes).ok_or_else(|| bad("truncated state file".into()))?;
        let [step, saved_config, model_bytes, optim_bytes]: [Vec<u8>; 4] = parts
            .try_into()
            .map_err(|_| bad("corrupt state file".into()))?;
        let step = u64::from_le_bytes(step.try_into().map_err(|_| bad("corrupt step".into()))?);
        let saved =
            VaeTrainConfig::from_toml(&String::from_utf8_lossy(&saved_config)).map_err(bad)?;
        if saved.model != config.model || saved.data != config.data {
            return Err(bad(
                "the [model] or [data] section differs from the saved run".into(),
            ));
        }
        let mut trainer = Self::new(config, device)?;
        let rec = BinBytesRecorder::<FullPrecisionSettings>::default();
        let model_record =
            Recorder::<B>::load(&rec, model_bytes, device).map_err(|e| bad(e.to_string()))?;
        let optim_record =
            Recorder::<B>::load(&rec, optim_bytes, device).map_err(|e| bad(e.to_string()))?;
        trainer.model = trainer.model.load_record(model_record);
        trainer.optim = trainer.optim.load_record(optim_record);
        trainer.step = step;
        Ok(trainer)
    }
}
