//! # semgen-semantic-dit
//!
//! Stage 1 of SemanticGen (paper §1.6): a Wan diffusion transformer that learns the distribution
//! of the compressed semantic features `z_sem` (semantic encoder → frozen compression MLP) given
//! text, with **full attention over all semantic tokens**, even for minute-long videos (the
//! semantic sequence is tiny).
//!
//! Long "story" videos are conditioned on one prompt per segment through **per-segment
//! cross-attention**: the semantic tokens of a segment's time span attend only to that segment's
//! prompt, while self-attention stays global, so identity is planned once for the whole video and
//! each segment follows its own caption. Semantic frame `k` belongs to segment
//! `⌊k / frames_per_segment⌋` (clamped to the last segment).
//!
//! ```
//! use burn::backend::NdArray;
//! use burn::tensor::{Distribution, Tensor};
//! use semgen_semantic_dit::{SemanticDitConfig, SemanticText};
//!
//! type B = NdArray;
//! let device = Default::default();
//! let model = SemanticDitConfig::tiny(8, 16).init::<B>(&device).unwrap();
//! let z_t = Tensor::<B, 5>::random([1, 8, 3, 4, 4], Distribution::Normal(0.0, 1.0), &device);
//! let text = Tensor::<B, 3>::zeros([1, 6, 16], &device);
//! let t = Tensor::<B, 1>::from_floats([500.0], &device);
//! let v = model.forward(z_t, t, SemanticText::Shared(text)).unwrap();
//! assert_eq!(v.dims(), [1, 8, 3, 4, 4]);
//! ```

mod model;
mod text_refiner;

pub use model::*;
pub use text_refiner::*;
