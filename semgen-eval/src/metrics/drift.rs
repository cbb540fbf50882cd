//! The start–end contrast ΔM_drift (spec §4.8, FramePack): `|M(first 15 %) − M(last 15 %)|`.

use std::ops::Range;

use semgen_data::Video;
use serde::{Deserialize, Serialize};

use super::{MetricError, Result};

/// The share of the frames in each end part, in percent.
pub const DRIFT_PERCENT: usize = 15;

/// A metric on the first and last parts of a clip and their contrast.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DriftMeasure {
    /// `M(V_start)`.
    pub start: f64,
    /// `M(V_end)`.
    pub end: f64,
    /// `ΔM_drift = |start − end|`.
    pub delta: f64,
}

impl DriftMeasure {
    pub fn new(start: f64, end: f64) -> Self {
        Self {
            start,
            end,
            delta: (start - end).abs(),
        }
    }
}

/// Frames in each end part of a `frames`-frame clip: `⌈15 % · T⌉` (computed in integers, so
/// that 20 frames give exactly 3), but at least `min_part` (at least 1). A metric that needs
/// `k` frames passes `min_part = k`: 2 for temporal flickering and the consistencies, 3 for
/// motion smoothness.
pub fn drift_part_frames(frames: usize, min_part: usize) -> usize {
    (frames * DRIFT_PERCENT).div_ceil(100).max(min_part.max(1))
}

/// The first and last [`drift_part_frames`] frames as ranges; fails when the two parts would
/// overlap (fewer than `2 · part` frames).
pub fn drift_ranges(frames: usize, min_part: usize) -> Result<(Range<usize>, Range<usize>)> {
    let part = drift_part_frames(frames, min_part);
    if 2 * part > frames {
        return Err(MetricError::TooFewFrames {
            metric: "ΔM_drift",
            needed: 2 * part,
            frames,
        });
    }
    Ok((0..part, frames - part..frames))
}

/// ΔM_drift of any metric given as a closure over a frame range of a `frames`-frame clip (for
/// example the oracle's hit rate over the segments inside the range, or a metric on precomputed
/// per-frame values). The closure is called on the start range, then on the end range.
pub fn drift_over<E, F>(frames: usize, min_part: usize, mut metric: F) -> Result<DriftMeasure, E>
where
    E: From<MetricError>,
    F: FnMut(Range<usize>) -> Result<f64, E>,
{
    let (start, end) = drift_ranges(frames, min_part)?;
    let start = metric(start)?;
    let end = metric(end)?;
    Ok(DriftMeasure::new(start, end))
}

/// The frames `range` of a clip as a new clip.
pub fn sub_video(video: &Video, range: Range<usize>) -> Result<Video> {
    if range.start >= range.end || range.end > video.frames() {
        return Err(MetricError::InvalidParameter(format!(
            "frame range {range:?} of a {}-frame clip",
            video.frames()
        )));
    }
    video
        .segment(range.start, range.end - 1)
        .map_err(|e| MetricError::Video(e.to_string()))
}

/// ΔM_drift of a metric on clips, e.g. `video_drift(&v, 2, temporal_flickering)`: the metric on
/// the first and on the last [`drift_part_frames`]`(T, min_part)` frames.
pub fn video_drift<F>(video: &Video, min_part: usize, mut metric: F) -> Result<DriftMeasure>
where
    F: FnMut(&Video) -> Result<f64>,
{
    drift_over(video.frames(), min_part, |range| {
        metric(&sub_video(video, range)?)
    })
}
