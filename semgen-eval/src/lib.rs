//! `semgen-eval`: measurements of generated semgen videos, in two parts.
//!
//! - [`oracle`]: the Shapes-world oracle, which checks a clip against its structured prompt from
//!   the frames alone (colour, motion, shape and background hits per object, per segment and per
//!   clip, and drift along a story), so that generated videos are judged by measurement, not by
//!   eye;
//! - [`metrics`]: VBench-style metrics (subject and background consistency, temporal
//!   flickering, motion smoothness, an imaging-quality proxy), a Fréchet distance on features
//!   (FID/FVD-style) and the start–end contrast ΔM_drift of any metric. Where VBench runs DINO,
//!   CLIP, AMT or MUSIQ, a caller supplies the features through [`metrics::FrameFeatures`]
//!   (semgen's own semantic encoder, from `xtask`) or uses the documented built-in stand-ins.
//!   `docs/eval.md` lists every formula and stand-in.
//!
//! ```
//! use semgen_data::{ShapesPrompt, ShapesWorld, Split, WorldConfig};
//! use semgen_eval::evaluate;
//!
//! let world = ShapesWorld::new(WorldConfig::default())?;
//! let story = world.story(Split::Val, 0, 4)?;
//! // A ground-truth story shows what its caption says.
//! let prompt = ShapesPrompt::parse(&story.caption())?;
//! let report = evaluate(&story.video, &prompt)?;
//! assert_eq!(report.segments.len(), 4);
//! assert!(report.hits.colour > 0.9 && report.hits.background > 0.9);
//! assert!(report.drift.is_some());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The metrics of a ground-truth Shapes clip with the built-in stand-in extractors:
//!
//! ```
//! use semgen_data::{ShapesWorld, Split, WorldConfig};
//! use semgen_eval::metrics::{temporal_flickering, video_drift, MetricSuite};
//!
//! let world = ShapesWorld::new(WorldConfig::default())?;
//! let clip = world.clip(Split::Val, 0)?;
//! let report = MetricSuite::stand_in().report(&clip.video)?;
//! assert!(report.temporal_flickering > 0.9 && report.motion_smoothness > 0.9);
//! // 17 frames: ΔM_drift compares the first and the last ⌈15 %·17⌉ = 3 frames.
//! let drift = report.drift.expect("17 frames are enough for ΔM_drift");
//! assert_eq!(drift.part_frames, 3);
//! // A static clip does not flicker, at either end.
//! let still = clip.video.select(&[0; 8])?;
//! assert_eq!(temporal_flickering(&still)?, 1.0);
//! assert_eq!(video_drift(&still, 2, temporal_flickering)?.delta, 0.0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod metrics;
pub mod oracle;

pub use metrics::{FrameFeatures, MetricError, MetricReport, MetricSuite};
pub use oracle::{
    evaluate, ClipReport, Drift, EvalError, HitRates, MotionClass, MotionConfusion, ObjectReport,
    Oracle, OracleConfig, SegmentReport, ShapeConfusion,
};
