//! # semgen-encoder
//!
//! The encoders of SemanticGen (paper §1.3–1.4), generic over Burn's `B: Backend`:
//!
//! - [`qwen_vision`]: the **semantic video encoder**, a port of transformers'
//!   `Qwen2_5_VisionTransformerPretrainedModel` with the processor's patchify. A clip
//!   `[B, C, T, H, W]` becomes a grid of merged tokens `[B, d, T/2, H/(2p), W/(2p)]`;
//! - [`compressor`]: the **compression MLP** squeezing each semantic token to `d_out` (8 by
//!   default) dimensions as a diagonal Gaussian, with a reparameterised sample and a KL term;
//! - [`umt5`], [`tokenizer`], [`text_encoder`]: the **text encoder**, a port of transformers'
//!   `UMT5EncoderModel`, tokenisation through the `tokenizers` crate, and Wan's trim-and-zero-pad
//!   rule; the Shapes world's word-level tokenizer ships in `assets/`;
//! - [`parity`]: the runs that compare the ports with the reference fixtures.
//! - [`probe`]: a small learned attribute probe for token grids that reads an object's attributes
//!   wherever it sits (used to judge `z_sem`; the linear probes are in [`train`]).
//!
//! Weights load from the upstream safetensors layouts (documented key tables:
//! [`qwen_vision::QWEN_VISION_KEYS`], [`umt5::UMT5_KEYS`]). Bad inputs are [`EncodeError`]s.
//!
//! ```
//! use burn::backend::NdArray;
//! use burn::tensor::{Distribution, Tensor};
//! use semgen_encoder::compressor::CompressorConfig;
//! use semgen_encoder::qwen_vision::QwenVisionConfig;
//! use semgen_encoder::text_encoder::TextEncoder;
//! use semgen_encoder::tokenizer::PromptTokenizer;
//! use semgen_encoder::umt5::Umt5Config;
//!
//! type B = NdArray;
//! let device = Default::default();
//!
//! // A 4-frame 16x16 clip in [-1, 1] -> a 2x4x4 grid of 48-wide semantic tokens.
//! let vision = QwenVisionConfig::tiny().init::<B>(&device).unwrap();
//! let clip = Tensor::<B, 5>::random([1, 3, 4, 16, 16], Distribution::Uniform(-1.0, 1.0), &device);
//! let semantic = vision.encode_clip(clip).unwrap();
//! assert_eq!(semantic.features.dims(), [1, 48, 2, 4, 4]);
//!
//! // Compressed to 8 channels per token, with a seeded sample and its KL term.
//! let mlp = CompressorConfig::new(48).init::<B>(&device).unwrap();
//! let tokens = semantic.features.permute([0, 2, 3, 4, 1]);
//! let z = mlp.forward_seeded(tokens, 7);
//! assert_eq!(z.sample.dims(), [1, 2, 4, 4, 8]);
//!
//! // A caption through the Shapes tokenizer and a small umT5, zero-padded to 32 tokens.
//! let text = TextEncoder::new(
//!     PromptTokenizer::shapes(),
//!     Umt5Config::shapes().init::<B>(&device).unwrap(),
//!     32,
//! )
//! .unwrap();
//! let enc = text.encode(&["a small red circle moving left slowly on a navy background"]).unwrap();
//! assert_eq!(enc.hidden.dims(), [1, 32, 64]);
//! assert_eq!(enc.lengths, vec![12]);
//! ```

pub mod compressor;
mod error;
pub mod parity;
pub mod probe;
pub mod qwen_vision;
pub mod text_encoder;
pub mod tokenizer;
pub mod train;
pub mod umt5;

pub use error::EncodeError;
