//! `semgen-data`: the Shapes world (semgen's built-in procedural video–text data set), datasets
//! and batching of real videos for Burn, and video writers.
//!
//! ```
//! use semgen_data::{ShapesPrompt, ShapesWorld, Split, WorldConfig};
//!
//! let world = ShapesWorld::new(WorldConfig::default())?;
//! let clip = world.clip(Split::Train, 0)?;
//! // The caption parses back into the structured prompt the clip was rendered from.
//! assert_eq!(ShapesPrompt::parse(&clip.caption())?, clip.prompt());
//! assert_eq!(clip.video.as_bytes().len(), 17 * 64 * 64 * 3);
//! # Ok::<(), semgen_data::DataError>(())
//! ```
//!
//! - [`shapes`]: the world ([`ShapesWorld`]), clip plans with ground truth, deterministic rendering;
//! - [`prompt`]: vocabulary, [`ShapesPrompt`], caption rendering and parsing;
//! - [`rng`]: the keyed counter-based RNG every random choice comes from;
//! - [`video`]: [`Video`] (`u8` RGB frames) and `[B, 3, T, H, W]` tensor conversions;
//! - [`dataset`]: Shapes and video-folder datasets, the batcher and the worker-thread loader;
//! - [`ffmpeg`]: decoding and encoding through the `ffmpeg` command-line tool;
//! - [`writers`]: PNG frames, GIF, MP4 and contact sheets, all written atomically;
//! - [`preview`]: writes a folder of clips for a person to look at.

pub mod dataset;
pub mod error;
pub mod ffmpeg;
pub mod preview;
pub mod prompt;
pub mod rng;
pub mod shapes;
pub mod video;
pub mod writers;

pub use dataset::{
    ClipItem, ClipSource, HostBatch, Loader, LoaderConfig, LoaderIter, ShapesDataset, VideoBatch,
    VideoBatcher, VideoFolderConfig, VideoFolderDataset,
};
pub use error::{DataError, Result};
pub use preview::{write_preview, PreviewEntry, PreviewOptions};
pub use prompt::{
    Background, Colour, Direction, Motion, ObjectPrompt, ParseError, ScenePrompt, Shape,
    ShapesPrompt, Size, Speed, ATTRIBUTE_GROUPS,
};
pub use shapes::{Clip, ClipPlan, ObjectPlan, ShapesWorld, Split, WorldConfig, SHAPES_FPS};
pub use video::{tensor_to_videos, videos_to_tensor, Video};
