//! VBench-style video metrics (paper spec §4) computable without VBench's pretrained networks,
//! and the start–end contrast ΔM_drift of any of them (spec §4.8).
//!
//! | metric | function | VBench network | stand-in here |
//! |---|---|---|---|
//! | subject consistency | [`subject_consistency`] | DINO ViT-B/16 | any [`FrameFeatures`]; built-in [`DownsampledPixels`] |
//! | background consistency | [`background_consistency`] | CLIP ViT-B/32 | any [`FrameFeatures`]; built-in [`ColourHistogram`] |
//! | temporal flickering | [`temporal_flickering`] | none | exact formula |
//! | motion smoothness | [`motion_smoothness`] | AMT-S frame interpolation | [`Interpolator`] (averaging or block matching) |
//! | imaging quality | [`imaging_quality`] | MUSIQ | mean luminance gradient magnitude (sharpness proxy) |
//! | Fréchet distance | [`frechet_distance`], [`frechet_video_distance`] | I3D (FVD) | any [`FrameFeatures`], clip feature = mean frame feature |
//! | ΔM_drift | [`drift_over`], [`video_drift`] | — | exact definition, parts of ⌈15 %·T⌉ frames |
//!
//! Beside them, [`compare_latents`] measures a generated latent against the real clip's (stage
//! 2's error before decoding: total, spread, and detail in space and time).
//!
//! Every score is in `[0, 1]` (VBench reports the same numbers × 100 as percentages); all of
//! them are 1 for a perfect clip except imaging quality (0 for a flat frame, 1 for a one-pixel
//! black/white checkerboard) and the Fréchet distance (0 for identical statistics).
//! [`MetricSuite::report`] computes all per-clip metrics and their drift at once.
//!
//! Nothing here panics on bad input: every failure is a [`MetricError`]. `docs/eval.md`
//! describes each formula, its stand-in and the test that checks it.

mod drift;
mod features;
mod frechet;
mod latents;
mod pixels;
mod report;

pub use drift::{
    drift_over, drift_part_frames, drift_ranges, sub_video, video_drift, DriftMeasure,
    DRIFT_PERCENT,
};
pub use features::{
    background_consistency, consistency, extract_features, subject_consistency, ColourHistogram,
    DownsampledPixels, FrameFeatures,
};
pub use frechet::{clip_feature, frechet_distance, frechet_video_distance, FeatureStats};
pub use latents::{compare_latents, mean_comparison, LatentComparison};
pub use pixels::{
    imaging_quality, imaging_quality_frames, mean_absolute_difference, motion_smoothness, psnr,
    temporal_flickering, Interpolator,
};
pub use report::{DriftReport, MetricReport, MetricSuite};

/// Why a metric cannot be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricError {
    #[error("{metric} needs at least {needed} frames, the clip has {frames}")]
    TooFewFrames {
        metric: &'static str,
        needed: usize,
        frames: usize,
    },
    #[error("{metric} needs frames of at least {min}x{min} pixels, got {height}x{width}")]
    FrameTooSmall {
        metric: &'static str,
        min: usize,
        height: usize,
        width: usize,
    },
    #[error("the clips differ in size: {a:?} vs {b:?} ([frames, height, width])")]
    SizeMismatch { a: [usize; 3], b: [usize; 3] },
    #[error("{what}: the feature set is empty")]
    EmptyFeatures { what: &'static str },
    #[error("{what} needs at least {needed} feature vectors, got {got}")]
    TooFewFeatures {
        what: &'static str,
        needed: usize,
        got: usize,
    },
    #[error("{what}: feature vectors of dimension 0")]
    ZeroDimension { what: &'static str },
    #[error("{what}: feature dimension mismatch, expected {expected}, got {got}")]
    DimensionMismatch {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("{what}: feature vector {index} has a non-finite value")]
    NonFinite { what: &'static str, index: usize },
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
    #[error("feature extractor `{name}` failed: {message}")]
    Extractor { name: String, message: String },
    #[error("video: {0}")]
    Video(String),
}

/// `Result` with a [`MetricError`].
pub type Result<T, E = MetricError> = std::result::Result<T, E>;

/// Fails unless the clip has at least `needed` frames.
pub(crate) fn need_frames(
    metric: &'static str,
    video: &semgen_data::Video,
    needed: usize,
) -> Result<()> {
    if video.frames() < needed {
        return Err(MetricError::TooFewFrames {
            metric,
            needed,
            frames: video.frames(),
        });
    }
    Ok(())
}
