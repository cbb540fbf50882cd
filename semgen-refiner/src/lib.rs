//! # semgen-refiner
//!
//! Stage 2 of SemanticGen (paper §1.5, §2): a Wan diffusion transformer that denoises VAE latents
//! with the compressed semantic tokens **in context**: `z_input = [z_t, z_sem]` is one token
//! sequence (not channel concatenation, not cross-attention); text still enters through
//! cross-attention. Long videos use temporal windows that hold the VAE tokens and the semantic
//! tokens of the same time span, shifted by half a window on odd layers.
//!
//! - [`geometry`]: where semantic tokens sit on the VAE latent grid (RoPE positions and window
//!   membership);
//! - [`refiner`]: the model, its presets (SemanticGen, and the paper's controls Base-CT and
//!   Base-CT-Swin), the training loss (noise augmentation of `z_sem`, condition dropout for CFG),
//!   and the guided [`semgen_core::sampling::Denoiser`] used at inference.
//!
//! ```
//! use burn::backend::NdArray;
//! use burn::tensor::{Distribution, Tensor};
//! use semgen_refiner::refiner::{RefinerConfig, SemanticInput};
//! use semgen_refiner::geometry::SemanticGeometry;
//! use semgen_core::wan_dit::WanDitConfig;
//!
//! type B = NdArray;
//! let device = Default::default();
//! // Latents of 16 channels, semantic tokens of 8 channels.
//! let dit = WanDitConfig { in_channels: 16, out_channels: 16, ..WanDitConfig::tiny() };
//! let cfg = RefinerConfig::semanticgen(dit, 8, SemanticGeometry::shapes());
//! let model = cfg.init::<B>(&device).unwrap();
//! let x_t = Tensor::<B, 5>::random([1, 16, 5, 8, 8], Distribution::Normal(0.0, 1.0), &device);
//! let z_sem = Tensor::<B, 5>::random([1, 8, 2, 2, 2], Distribution::Normal(0.0, 1.0), &device);
//! let text = Tensor::<B, 3>::zeros([1, 4, 16], &device);
//! let t = Tensor::<B, 1>::from_floats([700.0], &device);
//! let layout = model.layout([5, 8, 8], Some([2, 2, 2]), &device).unwrap();
//! let v = model.forward(x_t, t, text, SemanticInput::tokens(z_sem), &layout);
//! assert_eq!(v.dims(), [1, 16, 5, 8, 8]);
//! ```

pub mod geometry;
pub mod refiner;

/// Errors of the refiner's inputs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RefinerError {
    #[error(transparent)]
    Config(#[from] semgen_core::ConfigError),
    #[error(
        "this refiner has no semantic input (Base-CT control), but semantic tokens were given"
    )]
    UnexpectedSemantic,
    #[error("this refiner needs semantic tokens of {expected} channels, got {found}")]
    SemanticChannels { expected: usize, found: usize },
    #[error("semantic tokens are required by this refiner but none were given")]
    MissingSemantic,
}
