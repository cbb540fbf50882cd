//! All per-clip metrics and their drift in one report.

use semgen_data::Video;
use serde::{Deserialize, Serialize};

use super::drift::{drift_part_frames, drift_ranges, sub_video, DriftMeasure};
use super::features::{
    background_consistency, subject_consistency, ColourHistogram, DownsampledPixels, FrameFeatures,
};
use super::pixels::{imaging_quality, motion_smoothness, temporal_flickering, Interpolator};
use super::{need_frames, Result};

/// The extractors and interpolator the per-clip metrics use.
#[derive(Clone, Copy)]
pub struct MetricSuite<'a> {
    /// Features for subject consistency (VBench: DINO ViT-B/16).
    pub subject: &'a dyn FrameFeatures,
    /// Features for background consistency (VBench: CLIP ViT-B/32).
    pub background: &'a dyn FrameFeatures,
    /// Interpolator for motion smoothness (VBench: AMT-S).
    pub interpolator: Interpolator,
}

impl std::fmt::Debug for MetricSuite<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricSuite")
            .field("subject", &self.subject.name())
            .field("background", &self.background.name())
            .field("interpolator", &self.interpolator)
            .finish()
    }
}

impl MetricSuite<'static> {
    /// The built-in stand-ins: [`DownsampledPixels`] (8×8) for the subject,
    /// [`ColourHistogram`] (4³ bins) for the background, [`Interpolator::Average`].
    pub fn stand_in() -> Self {
        Self {
            subject: &DownsampledPixels { size: 8 },
            background: &ColourHistogram { bins: 4 },
            interpolator: Interpolator::Average,
        }
    }
}

impl<'a> MetricSuite<'a> {
    /// A suite with the given extractors and the averaging interpolator.
    pub fn new(subject: &'a dyn FrameFeatures, background: &'a dyn FrameFeatures) -> Self {
        Self {
            subject,
            background,
            interpolator: Interpolator::Average,
        }
    }

    /// The same suite with another interpolator.
    pub fn with_interpolator(self, interpolator: Interpolator) -> Self {
        Self {
            interpolator,
            ..self
        }
    }

    /// The five scores of one clip.
    fn scores(&self, video: &Video) -> Result<[f64; 5]> {
        Ok([
            subject_consistency(video, self.subject)?,
            background_consistency(video, self.background)?,
            temporal_flickering(video)?,
            motion_smoothness(video, self.interpolator)?,
            imaging_quality(video)?,
        ])
    }

    /// Every per-clip metric of `video`, and their ΔM_drift when the clip has room for two
    /// disjoint end parts of `max(⌈15 %·T⌉, 3)` frames (3: motion smoothness needs them; from
    /// 6 frames on). Needs 3 frames and frames of 2×2 pixels.
    pub fn report(&self, video: &Video) -> Result<MetricReport> {
        need_frames("the metric report", video, 3)?;
        let [sc, bc, tf, ms, iq] = self.scores(video)?;
        let drift = match drift_ranges(video.frames(), 3) {
            Ok((start, end)) => {
                let s = self.scores(&sub_video(video, start)?)?;
                let e = self.scores(&sub_video(video, end)?)?;
                let m = |i: usize| DriftMeasure::new(s[i], e[i]);
                Some(DriftReport {
                    part_frames: drift_part_frames(video.frames(), 3),
                    subject_consistency: m(0),
                    background_consistency: m(1),
                    temporal_flickering: m(2),
                    motion_smoothness: m(3),
                    imaging_quality: m(4),
                })
            }
            Err(_) => None,
        };
        Ok(MetricReport {
            frames: video.frames(),
            subject_consistency: sc,
            background_consistency: bc,
            temporal_flickering: tf,
            motion_smoothness: ms,
            imaging_quality: iq,
            subject_features: self.subject.name(),
            background_features: self.background.name(),
            interpolator: self.interpolator.name(),
            drift,
        })
    }
}

/// The VBench-style metrics of one clip (each in `[0, 1]`; VBench prints them × 100).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricReport {
    pub frames: usize,
    pub subject_consistency: f64,
    pub background_consistency: f64,
    pub temporal_flickering: f64,
    pub motion_smoothness: f64,
    pub imaging_quality: f64,
    /// [`FrameFeatures::name`] of the subject extractor.
    pub subject_features: String,
    /// [`FrameFeatures::name`] of the background extractor.
    pub background_features: String,
    /// [`Interpolator::name`].
    pub interpolator: String,
    /// ΔM_drift of each metric; `None` when the clip is too short (under 6 frames).
    pub drift: Option<DriftReport>,
}

impl MetricReport {
    /// `(name, score)` of the five metrics, in a fixed order (for tables and CSV columns).
    pub fn scores(&self) -> [(&'static str, f64); 5] {
        [
            ("subject_consistency", self.subject_consistency),
            ("background_consistency", self.background_consistency),
            ("temporal_flickering", self.temporal_flickering),
            ("motion_smoothness", self.motion_smoothness),
            ("imaging_quality", self.imaging_quality),
        ]
    }
}

/// ΔM_drift of each metric of a [`MetricReport`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftReport {
    /// Frames in each end part: `max(⌈15 %·T⌉, 3)`.
    pub part_frames: usize,
    pub subject_consistency: DriftMeasure,
    pub background_consistency: DriftMeasure,
    pub temporal_flickering: DriftMeasure,
    pub motion_smoothness: DriftMeasure,
    pub imaging_quality: DriftMeasure,
}

impl DriftReport {
    /// `(name, drift)` of the five metrics, in the order of [`MetricReport::scores`].
    pub fn measures(&self) -> [(&'static str, DriftMeasure); 5] {
        [
            ("subject_consistency", self.subject_consistency),
            ("background_consistency", self.background_consistency),
            ("temporal_flickering", self.temporal_flickering),
            ("motion_smoothness", self.motion_smoothness),
            ("imaging_quality", self.imaging_quality),
        ]
    }

    /// The mean ΔM_drift over the five metrics (one of the paper's unstated choices for its
    /// single drift column, spec §4.8).
    pub fn mean_delta(&self) -> f64 {
        self.measures().iter().map(|(_, m)| m.delta).sum::<f64>() / 5.0
    }
}
