//! # semgen-vae
//!
//! The Wan2.1 causal 3D video VAE for semgen: an exact port of diffusers' `AutoencoderKLWan`
//! (spatial ×8, temporal ×4, clips of `T = 1 + 4k` frames), generic over Burn's `B: Backend`.
//!
//! - [`config`]: [`WanVaeConfig`], read from an upstream `config.json`, with presets;
//! - [`model`]: the encoder/decoder, chunked causal [`WanVae::encode`] and frame-by-frame
//!   [`WanVae::decode`], latent normalisation;
//! - [`stream`]: [`StreamDecoder`], which takes latent frames one at a time and yields pixel
//!   frames in constant memory, with optional spatial tiling;
//! - [`keys`]: loading diffusers and original Wan2.1 checkpoints through one remap table
//!   ([`WanVae::load`]);
//! - [`parity`]: the `wan_vae` reference-fixture run used by `cargo xtask parity`;
//! - [`train`]: the reconstruction + KL loss, AdamW steps, TOML configs, checkpoints and resume.
//!
//! ```
//! use burn::backend::NdArray;
//! use burn::tensor::{Distribution, Tensor};
//! use semgen_vae::{StreamDecoder, WanVaeConfig};
//!
//! type B = NdArray;
//! let device = Default::default();
//! let vae = WanVaeConfig::tiny().init::<B>(&device).unwrap();
//! let video = Tensor::<B, 5>::random([1, 3, 5, 16, 16], Distribution::Uniform(-1.0, 1.0), &device);
//! let mu = vae.encode(video).unwrap(); // 5 frames -> 2 latent frames, 16 px -> 2
//! assert_eq!(mu.dims(), [1, 4, 2, 2, 2]);
//! let clip = vae.decode(mu.clone()).unwrap();
//! assert_eq!(clip.dims(), [1, 3, 5, 16, 16]);
//!
//! // Streaming: latent frames in, pixel frames out (1, then 4 per latent frame).
//! let mut stream = StreamDecoder::new(&vae);
//! let first = stream.push(mu.clone().narrow(2, 0, 1)).unwrap();
//! let next = stream.push(mu.narrow(2, 1, 1)).unwrap();
//! assert_eq!((first.dims()[2], next.dims()[2]), (1, 4));
//! ```

pub mod config;
pub mod keys;
pub mod model;
pub mod parity;
pub mod stream;
pub mod train;

pub use config::WanVaeConfig;
pub use keys::{DIFFUSERS_KEYS, ORIGINAL_WAN_KEYS};
pub use model::{FeatCache, WanVae};
pub use stream::{StreamDecoder, TileConfig};

/// The component name in semgen checkpoints and fixture manifests.
pub const COMPONENT: &str = "wan_vae";

/// Bad input to the VAE.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VaeError {
    #[error("the VAE needs 1 + 4k frames (1, 5, 9, 13, ...), got {frames}")]
    FrameCount { frames: usize },
    #[error("frame size {height}x{width} is not divisible by the VAE's spatial factor {factor}")]
    Size {
        height: usize,
        width: usize,
        factor: usize,
    },
    #[error("the {what} has {found} channels, the VAE expects {expected}")]
    Channels {
        what: &'static str,
        expected: usize,
        found: usize,
    },
    #[error("empty latent of shape {dims:?}")]
    EmptyLatent { dims: Vec<usize> },
    #[error("latent frame has shape {found:?}, expected [B, {z_dim}, 1, h, w] matching the first frame {first:?}")]
    LatentFrame {
        found: Vec<usize>,
        first: Vec<usize>,
        z_dim: usize,
    },
    #[error("invalid tiling: {0}")]
    Tiling(String),
}
