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
use semgen_core::checkpoint::{load_checkpoint, read_meta, LoadError};
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
    pub shift: f64,
    /// Training steps of each component, for `semgen info`.
    #[serde(default)]
    pub provenance: serde_json::Value,
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
            refiner_guidance: 2.0,
            shift: 3.0,
            provenance: serde_json::Value::Null,
        }
    }

    pub fn load(dir: &Path) -> Result<Self, ModelError> {
        let path = dir.join(SETTINGS_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| ModelError::File {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        serde_json::from_str(&text).map_err(|e| ModelError::File {
            path,
            reason: format!("not a valid model.json: {e}"),
        })
    }
}

/// Reads the config stored in a semgen checkpoint's header.
pub fn stored_config<C: serde::de::DeserializeOwned>(
    path: &Path,
    component: &str,
) -> Result<C, ModelError> {
    if !path.is_file() {
        return Err(ModelError::File {
            path: path.to_path_buf(),
            reason: "missing".into(),
        });
    }
    let meta = read_meta(path)?;
    if meta.component != component {
        return Err(LoadError::WrongComponent {
            path: path.to_path_buf(),
            expected: component.into(),
            found: meta.component,
        }
        .into());
    }
    serde_json::from_value(meta.config).map_err(|e| ModelError::Config {
        path: path.to_path_buf(),
        component: component.into(),
        reason: e.to_string(),
    })
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
    C: serde::de::DeserializeOwned,
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
        Ok(Self {
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
        })
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
