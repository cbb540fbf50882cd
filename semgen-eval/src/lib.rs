//! `semgen-eval`: measurements of generated semgen videos. This first part is the Shapes-world
//! oracle, which checks a clip against its structured prompt from the frames alone (colour,
//! motion, shape and background hits per object, per segment and per clip, and drift along a
//! story), so that generated videos are judged by measurement, not by eye.
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

pub mod oracle;

pub use oracle::{
    evaluate, ClipReport, Drift, EvalError, HitRates, ObjectReport, Oracle, OracleConfig,
    SegmentReport,
};
