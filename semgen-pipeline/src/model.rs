//! A complete SemanticGen model on disk and in memory: the VAE, the semantic encoder and its
//! compression MLP, the text encoder, the refiner (stage 2) and the semantic generator (stage 1).
//!
//! A model folder (e.g. `checkpoints/shapes-small/`) holds one semgen checkpoint per component,
//! each carrying its own config in its safetensors header, plus `tokenizer.json` and
//! `model.json` ([`ModelSettings`]: clip geometry and sampling defaults):
//!
//! | file | component | config type |
//! |---|---|---|
//! | `vae.safetensors` | `wan_vae` | `WanVaeConfig` |
//! | `semantic_encoder.safetensors` | `semantic_encoder` | `QwenVisionConfig` |
//! | `compressor.safetensors` | `compressor` | `CompressorConfig` |
//! | `text_encoder.safetensors` | `text_encoder` | `Umt5Config` |
//! | `refiner.safetensors` | `refiner` | `RefinerConfig` |
//! | `semantic_dit.safetensors` | `semantic_dit` | `SemanticDitConfig` |

use burn::prelude::*;
use semgen_core::checkpoint::{load_checkpoint, parse_safetensors, LoadError};
use semgen_core::sampling::GuidanceSchedule;
use semgen_encoder::compressor::{Compressor, CompressorConfig};
use semgen_encoder::qwen_vision::{QwenVision, QwenVisionConfig};
use semgen_encoder::text_encoder::TextEncoder;
use semgen_encoder::tokenizer::PromptTokenizer;
use semgen_encoder::umt5::{Umt5Config, Umt5Encoder};
use semgen_refiner::refiner::{Refiner, RefinerConfig};
use semgen_semantic_dit::{SemanticDit, SemanticDitConfig};
use semgen_vae::{WanVae, WanVaeConfig};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// File names inside a model folder.
pub const VAE_FILE: &str = "vae.safetensors";
pub const ENCODER_FILE: &str = "semantic_encoder.safetensors";
pub const COMPRESSOR_FILE: &str = "compressor.safetensors";
pub const TEXT_FILE: &str = "text_encoder.safetensors";
pub const REFINER_FILE: &str = "refiner.safetensors";
pub const SEMANTIC_FILE: &str = "semantic_dit.safetensors";
pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const SETTINGS_FILE: &str = "model.json";

/// Why a model folder could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model folder {0} does not exist")]
    MissingDir(PathBuf),
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("{path} holds a {component} config that cannot be used: {reason}")]
    Config {
        path: PathBuf,
        component: String,
        reason: String,
    },
    /// Two components that load on their own but do not fit together (e.g. a refiner from a
    /// model with another VAE).
    #[error("{dir}: {first} and {second} do not fit together: {reason}")]
    Mismatch {
        dir: PathBuf,
        first: &'static str,
        second: &'static str,
        reason: String,
    },
}

/// `model.json`: what the pipeline needs beyond the component checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSettings {
    /// Default clip size.
    pub frames: usize,
    pub height: usize,
    pub width: usize,
    /// Frames of one story segment (a story of S segments has `S·segment_frames + 1` frames).
    pub segment_frames: usize,
    /// Text tokens per prompt (zero-padded, upstream style).
    pub text_len: usize,
    /// The semantic encoder sees every `frame_stride`-th frame.
    pub frame_stride: usize,
    /// Sampling defaults per stage.
    pub semantic_steps: usize,
    pub semantic_guidance: f64,
    pub refiner_steps: usize,
    pub refiner_guidance: f64,
    /// The refiner's guidance on its semantic condition `g_s` (1 = none; paper-style CFG over
    /// `z_sem`, which the refiner was trained to drop 10 % of the time). Files written before
    /// it existed read as 1.
    #[serde(default = "one")]
    pub refiner_semantic_guidance: f64,
    /// Where along each stage's schedule its guidance applies, and its rescale
    /// ([`semgen_core::sampling::GuidanceSchedule`]); absent = every step, no rescale (what
    /// files written before session 31 mean).
    #[serde(default, skip_serializing_if = "GuidanceSchedule::is_default")]
    pub semantic_guidance_schedule: GuidanceSchedule,
    #[serde(default, skip_serializing_if = "GuidanceSchedule::is_default")]
    pub refiner_guidance_schedule: GuidanceSchedule,
    /// The text the refiner reads in a story: the first segment's caption for every token
    /// (`first`, what files written before session 20 mean) or each segment's own caption for
    /// the tokens of its span (`segments`).
    #[serde(default, skip_serializing_if = "StoryText::is_first")]
    pub refiner_story_text: StoryText,
    /// Standard deviation of the Gaussian noise added to `z_sem` before stage 2 reads it
    /// (paper §3.2, after RAE: stage 2 was trained on noised plans, `sem_noise_max`; 0 = none,
    /// what files written before session 26 mean).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub semantic_noise: f64,
    pub shift: f64,
    /// Training steps of each component, for `semgen info`.
    #[serde(default)]
    pub provenance: serde_json::Value,
    /// Where the `z_sem` this model was trained on came from: the semantic encoder (every
    /// shipped model) or VAE latents (the paper's Fig. 9 control, `cargo xtask experiment
    /// convergence`), whose folder carries an encoder only for loading: such a model generates
    /// from text but cannot encode a real clip ([`SemgenModel::encode_clip`] refuses).
    #[serde(
        default,
        skip_serializing_if = "crate::train::SemanticSource::is_encoder"
    )]
    pub semantic_source: crate::train::SemanticSource,
}

/// Which caption(s) the refiner reads in a story (see [`ModelSettings::refiner_story_text`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StoryText {
    /// The first segment's caption for the whole story.
    #[default]
    First,
    /// Each segment's caption for the tokens of its span (per-segment cross-attention).
    Segments,
}

impl StoryText {
    pub fn is_first(&self) -> bool {
        *self == Self::First
    }
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

/// `1.0`, the serde default of the guidance and loss-weight settings that mean "off" at 1.
pub(crate) fn one() -> f64 {
    1.0
}

impl ModelSettings {
    /// The Shapes-world defaults (17×64×64 clips, 16-frame segments).
    pub fn shapes() -> Self {
        Self {
            frames: 17,
            height: 64,
            width: 64,
            segment_frames: 16,
            text_len: 32,
            frame_stride: 4,
            semantic_steps: 20,
            semantic_guidance: 3.0,
            refiner_steps: 20,
            refiner_guidance: 4.0,
            refiner_semantic_guidance: 1.0,
            semantic_guidance_schedule: GuidanceSchedule::default(),
            refiner_guidance_schedule: GuidanceSchedule::default(),
            refiner_story_text: StoryText::First,
            semantic_noise: 0.0,
            shift: 3.0,
            provenance: serde_json::Value::Null,
            semantic_source: Default::default(),
        }
    }

    pub fn load(dir: &Path) -> Result<Self, ModelError> {
        let path = dir.join(SETTINGS_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| ModelError::File {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let settings: Self = serde_json::from_str(&text).map_err(|e| ModelError::File {
            path: path.clone(),
            reason: format!("not a valid model.json: {e}"),
        })?;
        settings.validate().map_err(|reason| ModelError::File {
            path,
            reason: format!("not a valid model.json: {reason}"),
        })?;
        Ok(settings)
    }

    /// Checks the values the pipeline divides by (the clip defaults themselves are checked per
    /// request by `SemgenModel::check`, the text length by the text encoder).
    pub fn validate(&self) -> Result<(), String> {
        if self.frame_stride == 0 {
            return Err("frame_stride must be at least 1".into());
        }
        for (stage, g) in [
            (
                "semantic_guidance_schedule",
                &self.semantic_guidance_schedule,
            ),
            ("refiner_guidance_schedule", &self.refiner_guidance_schedule),
        ] {
            g.validate().map_err(|e| format!("{stage}: {e}"))?;
        }
        Ok(())
    }
}

/// A lower bound on the number of parameters of the model a config describes, computed without
/// building it. A checkpoint's weights can only fit a config whose floor is at most the number
/// of values in the file, so a header config with absurd sizes (a corrupt or hand-edited header)
/// is refused before `init` would try to allocate them (which aborts the process).
pub trait ParamFloor {
    fn param_floor(&self) -> u128;
}

fn sum(terms: &[u128]) -> u128 {
    terms.iter().fold(0u128, |a, &t| a.saturating_add(t))
}

fn mul(factors: &[usize]) -> u128 {
    factors
        .iter()
        .fold(1u128, |a, &f| a.saturating_mul(f as u128))
}

/// The Wan DiT: patch embedding, text and time embedders, 8·D² per block (self- and
/// cross-attention projections), the FFN, and the head.
fn wan_dit_floor(c: &semgen_core::wan_dit::WanDitConfig) -> u128 {
    let d = c.num_attention_heads.saturating_mul(c.attention_head_dim);
    let p = c
        .patch_size
        .iter()
        .fold(1usize, |a, &x| a.saturating_mul(x));
    sum(&[
        mul(&[d, c.in_channels, p]),
        mul(&[d, c.text_dim]),
        mul(&[d, c.freq_dim]),
        mul(&[8, d, d]),
        mul(&[c.num_layers, 8, d, d]),
        mul(&[c.num_layers, 2, d, c.ffn_dim]),
        mul(&[c.out_channels, p, d]),
    ])
}

impl ParamFloor for RefinerConfig {
    fn param_floor(&self) -> u128 {
        let d = self
            .dit
            .num_attention_heads
            .saturating_mul(self.dit.attention_head_dim);
        sum(&[wan_dit_floor(&self.dit), mul(&[self.semantic_dim, d])])
    }
}

impl ParamFloor for SemanticDitConfig {
    fn param_floor(&self) -> u128 {
        wan_dit_floor(&self.dit)
    }
}

impl ParamFloor for CompressorConfig {
    fn param_floor(&self) -> u128 {
        match self.d_out {
            None => 0,
            Some(o) => sum(&[mul(&[self.d_in, self.hidden]), mul(&[self.hidden, o])]),
        }
    }
}

impl ParamFloor for QwenVisionConfig {
    fn param_floor(&self) -> u128 {
        let d = self.hidden_size;
        let m = self.spatial_merge_size;
        let merged = d.saturating_mul(m).saturating_mul(m);
        let patch = mul(&[
            self.in_channels,
            self.temporal_patch_size,
            self.patch_size,
            self.patch_size,
        ]);
        sum(&[
            patch.saturating_mul(d as u128),
            mul(&[self.depth, 4, d, d]),
            mul(&[self.depth, 3, d, self.intermediate_size]),
            mul(&[merged, merged]),
            mul(&[merged, self.out_hidden_size]),
        ])
    }
}

impl ParamFloor for Umt5Config {
    fn param_floor(&self) -> u128 {
        let inner = self.num_heads.saturating_mul(self.d_kv);
        sum(&[
            mul(&[self.vocab_size, self.d_model]),
            mul(&[self.num_layers, 4, self.d_model, inner]),
            mul(&[self.num_layers, 2, self.d_model, self.d_ff]),
            mul(&[self.relative_attention_num_buckets, self.num_heads]),
        ])
    }
}

impl ParamFloor for WanVaeConfig {
    /// The 1×1 quant convs, the encoder's and decoder's in/out convs, the two 3×3×3 convs of
    /// both mid-block residual pairs, and the second 3×3×3 conv (output width squared) of every
    /// other residual block.
    fn param_floor(&self) -> u128 {
        let (b, d, z) = (self.base_dim, self.decoder_dim(), self.z_dim);
        let top = self.dim_mult.last().copied().unwrap_or(1);
        let (enc_top, dec_top) = (b.saturating_mul(top), d.saturating_mul(top));
        let mut terms = vec![
            mul(&[5, z, z]),
            mul(&[27, self.in_channels, b]),
            mul(&[27, enc_top, 2, z]),
            mul(&[27, z, dec_top]),
            mul(&[27, d, self.out_channels]),
            mul(&[4, 27, enc_top, enc_top]),
            mul(&[4, 27, dec_top, dec_top]),
        ];
        for &m in &self.dim_mult {
            let enc = b.saturating_mul(m);
            let dec = d.saturating_mul(m);
            terms.push(mul(&[self.num_res_blocks, 27, enc, enc]));
            terms.push(mul(&[self.num_res_blocks.saturating_add(1), 27, dec, dec]));
        }
        sum(&terms)
    }
}

/// Reads the config stored in a semgen checkpoint's header, and checks that the file holds at
/// least as many values as the model it describes needs ([`ParamFloor`]).
pub fn stored_config<C: serde::de::DeserializeOwned + ParamFloor>(
    path: &Path,
    component: &str,
) -> Result<C, ModelError> {
    if !path.is_file() {
        return Err(ModelError::File {
            path: path.to_path_buf(),
            reason: "missing".into(),
        });
    }
    let file = parse_safetensors(path)?;
    let meta = file.component_meta(component)?;
    let config: C = serde_json::from_value(meta.config).map_err(|e| ModelError::Config {
        path: path.to_path_buf(),
        component: component.into(),
        reason: e.to_string(),
    })?;
    let values: u128 = file
        .tensors()
        .iter()
        .map(|(_, v)| v.shape().iter().product::<usize>() as u128)
        .sum();
    let floor = config.param_floor();
    if floor > values {
        return Err(invalid(
            path,
            component,
            format!(
                "it describes a model of at least {floor} parameters but the file holds {values} values: the config does not match these weights"
            ),
        ));
    }
    Ok(config)
}

fn invalid(path: &Path, component: &str, e: impl std::fmt::Display) -> ModelError {
    ModelError::Config {
        path: path.to_path_buf(),
        component: component.into(),
        reason: e.to_string(),
    }
}

/// Loads one of semgen's own modules (compressor, refiner, semantic DiT) from its checkpoint.
pub fn load_own<B: Backend, C, M>(
    path: &Path,
    component: &str,
    init: impl FnOnce(&C) -> Result<M, semgen_core::ConfigError>,
) -> Result<(M, C), ModelError>
where
    C: serde::de::DeserializeOwned + ParamFloor,
    M: Module<B> + burn::store::ModuleSnapshot<B>,
{
    let config: C = stored_config(path, component)?;
    let module = init(&config).map_err(|e| invalid(path, component, e))?;
    let (module, _) = load_checkpoint(module, path, component, &[])?;
    Ok((module, config))
}

/// Loads a semgen `wan_vae` checkpoint with the config in its header.
pub fn load_vae<B: Backend>(path: &Path, device: &B::Device) -> Result<WanVae<B>, ModelError> {
    let config: WanVaeConfig = stored_config(path, semgen_vae::COMPONENT)?;
    Ok(WanVae::load(&config, path, device)?.0)
}

/// Loads a `semantic_encoder` checkpoint (Qwen2.5-VL vision layout) and its config.
pub fn load_vision<B: Backend>(
    path: &Path,
    device: &B::Device,
) -> Result<(QwenVision<B>, QwenVisionConfig), ModelError> {
    let config: QwenVisionConfig = stored_config(path, "semantic_encoder")?;
    Ok((QwenVision::load(&config, path, device)?.0, config))
}

/// Loads a `text_encoder` checkpoint (umT5 layout) and its config.
pub fn load_umt5<B: Backend>(
    path: &Path,
    device: &B::Device,
) -> Result<(Umt5Encoder<B>, Umt5Config), ModelError> {
    let config: Umt5Config = stored_config(path, "text_encoder")?;
    Ok((Umt5Encoder::load(&config, path, device)?.0, config))
}

/// The frozen semantic encoder and its compression MLP: clip → `z_sem`.
#[derive(Debug, Clone)]
pub struct SemanticEncoder<B: Backend> {
    pub vision: QwenVision<B>,
    pub compressor: Compressor<B>,
    pub frame_stride: usize,
}

impl<B: Backend> SemanticEncoder<B> {
    /// The frames the encoder sees: `0, s, 2s, …` of a clip `[B, C, T, H, W]`.
    pub fn sample_frames(&self, video: Tensor<B, 5>) -> Tensor<B, 5> {
        sample_frames(video, self.frame_stride)
    }

    /// Uncompressed semantic features `[B, d, t, h, w]` of clips in [-1, 1].
    pub fn features(
        &self,
        video: Tensor<B, 5>,
    ) -> Result<Tensor<B, 5>, semgen_encoder::EncodeError> {
        Ok(self.vision.encode_clip(self.sample_frames(video))?.features)
    }

    /// `z_sem` (posterior mean of the MLP) of clips in [-1, 1].
    pub fn encode(&self, video: Tensor<B, 5>) -> Result<Tensor<B, 5>, semgen_encoder::EncodeError> {
        Ok(compress_mean(&self.compressor, self.features(video)?))
    }
}

/// Every `stride`-th frame of `[B, C, T, H, W]`, starting at frame 0.
pub fn sample_frames<B: Backend>(video: Tensor<B, 5>, stride: usize) -> Tensor<B, 5> {
    let idx: Vec<i64> = semgen_encoder::train::sparse_frames(video.dims()[2], stride)
        .into_iter()
        .map(|i| i as i64)
        .collect();
    let n = idx.len();
    let idx = Tensor::<B, 1, Int>::from_data(TensorData::new(idx, [n]), &video.device());
    video.select(2, idx)
}

/// Channel-last view for the per-token MLP: `[B, d, t, h, w]` → `[B, t, h, w, d]`.
pub fn to_tokens<B: Backend>(x: Tensor<B, 5>) -> Tensor<B, 5> {
    x.permute([0, 2, 3, 4, 1])
}

/// Inverse of [`to_tokens`].
pub fn from_tokens<B: Backend>(x: Tensor<B, 5>) -> Tensor<B, 5> {
    x.permute([0, 4, 1, 2, 3])
}

/// The MLP's posterior mean on a feature grid `[B, d, t, h, w]` → `[B, d_out, t, h, w]`.
pub fn compress_mean<B: Backend>(c: &Compressor<B>, features: Tensor<B, 5>) -> Tensor<B, 5> {
    from_tokens(c.encode_mean(to_tokens(features)))
}

/// Every component of a SemanticGen model.
pub struct SemgenModel<B: Backend> {
    pub settings: ModelSettings,
    pub vae: WanVae<B>,
    pub encoder: SemanticEncoder<B>,
    pub text: TextEncoder<B>,
    pub refiner: Refiner<B>,
    /// Stage 1; absent for the Base-CT baselines (a refiner without semantic tokens).
    pub semantic: Option<SemanticDit<B>>,
    pub dir: PathBuf,
}

impl<B: Backend> SemgenModel<B> {
    /// Loads a model folder; every component is checked (component name, config, every tensor).
    pub fn load(dir: &Path, device: &B::Device) -> Result<Self, ModelError> {
        if !dir.is_dir() {
            return Err(ModelError::MissingDir(dir.to_path_buf()));
        }
        let settings = ModelSettings::load(dir)?;
        let vae = load_vae(&dir.join(VAE_FILE), device)?;
        let (vision, _) = load_vision(&dir.join(ENCODER_FILE), device)?;
        let (compressor, _) =
            load_own::<B, CompressorConfig, _>(&dir.join(COMPRESSOR_FILE), "compressor", |c| {
                c.init(device)
            })?;
        let (umt5, _) = load_umt5(&dir.join(TEXT_FILE), device)?;
        let tok_path = dir.join(TOKENIZER_FILE);
        let tokenizer = PromptTokenizer::from_file(&tok_path).map_err(|e| ModelError::File {
            path: tok_path.clone(),
            reason: e.to_string(),
        })?;
        let text = TextEncoder::new(tokenizer, umt5, settings.text_len)
            .map_err(|e| invalid(&tok_path, "text_encoder", e))?;
        let (refiner, _) =
            load_own::<B, RefinerConfig, _>(&dir.join(REFINER_FILE), "refiner", |c| {
                c.init(device)
            })?;
        let sem_path = dir.join(SEMANTIC_FILE);
        let semantic = if sem_path.exists() || refiner.config.has_semantic() {
            Some(
                load_own::<B, SemanticDitConfig, _>(&sem_path, "semantic_dit", |c| c.init(device))?
                    .0,
            )
        } else {
            None
        };
        let model = Self {
            encoder: SemanticEncoder {
                vision,
                compressor,
                frame_stride: settings.frame_stride,
            },
            settings,
            vae,
            text,
            refiner,
            semantic,
            dir: dir.to_path_buf(),
        };
        model.check_fit()?;
        Ok(model)
    }

    /// Checks that the components fit together (each file is already checked on its own), so a
    /// component from another model is a clear error here instead of a tensor-shape panic later.
    pub fn check_fit(&self) -> Result<(), ModelError> {
        let vae = &self.vae.config;
        let vision = &self.encoder.vision.config;
        let compressor = &self.encoder.compressor.config;
        let text_dim = self.text.model.config.d_model;
        let refiner = &self.refiner.config;
        let mismatch = |first, second, reason: String| {
            Err(ModelError::Mismatch {
                dir: self.dir.clone(),
                first,
                second,
                reason,
            })
        };
        let dit = &refiner.dit;
        if dit.in_channels != vae.z_dim || dit.out_channels != vae.z_dim {
            return mismatch(
                REFINER_FILE,
                VAE_FILE,
                format!(
                    "the refiner has {}/{} in/out channels, the VAE has {} latent channels",
                    dit.in_channels, dit.out_channels, vae.z_dim
                ),
            );
        }
        if dit.text_dim != text_dim {
            return mismatch(
                REFINER_FILE,
                TEXT_FILE,
                format!(
                    "the refiner reads {}-wide text features, the text encoder gives {text_dim}",
                    dit.text_dim
                ),
            );
        }
        let from_encoder = self.settings.semantic_source == crate::train::SemanticSource::Encoder;
        if from_encoder && compressor.d_in != vision.out_hidden_size {
            return mismatch(
                COMPRESSOR_FILE,
                ENCODER_FILE,
                format!(
                    "the compressor reads {}-wide features, the semantic encoder gives {}",
                    compressor.d_in, vision.out_hidden_size
                ),
            );
        }
        if refiner.has_semantic() {
            if refiner.semantic_dim != compressor.out_dim() {
                return mismatch(
                    REFINER_FILE,
                    COMPRESSOR_FILE,
                    format!(
                        "the refiner takes {}-dim semantic tokens, the compressor gives {}",
                        refiner.semantic_dim,
                        compressor.out_dim()
                    ),
                );
            }
            let g = &refiner.geometry;
            let (vs, vt) = (vae.spatial_factor(), vae.temporal_factor());
            if g.vae_spatial != vs || g.vae_temporal != vt {
                return mismatch(
                    REFINER_FILE,
                    VAE_FILE,
                    format!(
                        "the refiner was built for a VAE compressing {}x space and {}x time, this VAE compresses {vs}x and {vt}x",
                        g.vae_spatial, g.vae_temporal
                    ),
                );
            }
            if g.pixels_per_token != vision.pixels_per_token()
                || g.temporal_patch != vision.temporal_patch_size
            {
                return mismatch(
                    REFINER_FILE,
                    ENCODER_FILE,
                    format!(
                        "the refiner expects {} px and {} frames per semantic token, the semantic encoder uses {} px and {}",
                        g.pixels_per_token,
                        g.temporal_patch,
                        vision.pixels_per_token(),
                        vision.temporal_patch_size
                    ),
                );
            }
            if g.frame_stride != self.settings.frame_stride {
                return mismatch(
                    REFINER_FILE,
                    SETTINGS_FILE,
                    format!(
                        "the refiner was trained on every {}th frame, model.json says frame_stride {}",
                        g.frame_stride, self.settings.frame_stride
                    ),
                );
            }
        }
        if let Some(sem) = &self.semantic {
            let d = &sem.config.dit;
            if refiner.has_semantic() && d.in_channels != refiner.semantic_dim {
                return mismatch(
                    SEMANTIC_FILE,
                    REFINER_FILE,
                    format!(
                        "the semantic generator makes {}-dim tokens, the refiner takes {}",
                        d.in_channels, refiner.semantic_dim
                    ),
                );
            }
            if d.text_dim != text_dim {
                return mismatch(
                    SEMANTIC_FILE,
                    TEXT_FILE,
                    format!(
                        "the semantic generator reads {}-wide text features, the text encoder gives {text_dim}",
                        d.text_dim
                    ),
                );
            }
        }
        Ok(())
    }
}

/// What `semgen info` prints: per component file, its component name, training step, size,
/// parameter count and config; plus `model.json`.
pub fn read_component_summaries(dir: &Path) -> Result<serde_json::Value, ModelError> {
    if !dir.is_dir() {
        return Err(ModelError::MissingDir(dir.to_path_buf()));
    }
    let settings = ModelSettings::load(dir)?;
    let mut components = serde_json::Map::new();
    for file in [
        VAE_FILE,
        ENCODER_FILE,
        COMPRESSOR_FILE,
        TEXT_FILE,
        REFINER_FILE,
        SEMANTIC_FILE,
    ] {
        let path = dir.join(file);
        if !path.is_file() {
            continue;
        }
        let parsed = semgen_core::checkpoint::parse_safetensors(&path)?;
        let meta = parsed.semgen_meta()?;
        let params: usize = parsed
            .tensors()
            .iter()
            .map(|(_, v)| v.shape().iter().product::<usize>())
            .sum();
        let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        components.insert(
            file.to_string(),
            serde_json::json!({
                "component": meta.as_ref().map(|m| m.component.clone()),
                "step": meta.as_ref().map(|m| m.step),
                "parameters": params,
                "bytes": bytes,
                "config": meta.map(|m| m.config),
            }),
        );
    }
    Ok(serde_json::json!({
        "folder": dir.display().to_string(),
        "settings": settings,
        "components": components,
    }))
}
