//! # semgen-core
//!
//! The shared foundation of semgen, a Rust implementation of *SemanticGen: Video Generation in
//! Semantic Space* (Bai et al., arXiv 2512.20619) on Burn. Every model here is generic over
//! Burn's `B: Backend` and never names a concrete backend.
//!
//! - [`layers`]: norms (RMSNorm, LayerNorm with/without affine, Wan-VAE channel L2 norm), GELU
//!   variants, sinusoidal timestep embedding, adaLN modulation helpers;
//! - [`rope`]: Wan's 3D interleaved-pair RoPE and Qwen2.5-VL's 2D rotate-half RoPE;
//! - [`attention`]: multi-head attention (Burn's fused op on the GPU backends, a composition of
//!   threaded matmuls and softmax elsewhere: `AttentionKernel`), and temporal window attention
//!   (Swin-style shifted windows over time) for long videos;
//! - [`wan_dit`]: the Wan2.1 DiT backbone (diffusers `WanTransformer3DModel` layout) with a per-layer
//!   attention mode and a hook for extra in-context tokens;
//! - [`flow`] and [`sampling`]: rectified-flow training helpers, the `FlowMatchEulerDiscrete` and
//!   `UniPC` samplers, classifier-free guidance, one [`sampling::Denoiser`] trait and one sampling loop;
//! - [`checkpoint`]: safetensors loading with upstream key names (through burn-store), typed
//!   [`checkpoint::LoadError`]s, and atomic saving of semgen's own checkpoints;
//! - [`fixture`]: reading the reference-fixture folders used by `cargo xtask parity`.
//!
//! ```
//! use burn::backend::NdArray;
//! use burn::tensor::{Distribution, Tensor};
//! use semgen_core::wan_dit::WanDitConfig;
//!
//! type B = NdArray;
//! let device = Default::default();
//! let model = WanDitConfig::tiny().init::<B>(&device).unwrap();
//! let latents = Tensor::<B, 5>::random([1, 4, 3, 8, 8], Distribution::Normal(0.0, 1.0), &device);
//! let text = Tensor::<B, 3>::random([1, 7, 16], Distribution::Normal(0.0, 1.0), &device);
//! let t = Tensor::<B, 1>::from_floats([500.0], &device);
//! let velocity = model.forward(latents, t, text).unwrap();
//! assert_eq!(velocity.dims(), [1, 4, 3, 8, 8]);
//! ```

pub mod attention;
pub mod checkpoint;
pub mod device;
pub mod fixture;
pub mod flow;
pub mod guard;
pub mod layers;
pub mod parity;
pub mod rope;
pub mod sampling;
pub mod tensor_io;
pub mod train;
pub mod wan_dit;

/// Errors raised when a model configuration cannot work (checked in `init`, before any weight is
/// allocated).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid config: {0}")]
    Invalid(String),
    #[error("could not parse config {what}: {reason}")]
    Parse { what: String, reason: String },
}

impl ConfigError {
    pub fn invalid(msg: impl Into<String>) -> Self {
        ConfigError::Invalid(msg.into())
    }
}
