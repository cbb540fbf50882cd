//! Per-frame features and the VBench consistency formula (subject and background consistency).

use semgen_data::Video;
use serde::{Deserialize, Serialize};

use super::{need_frames, MetricError, Result};

/// A per-frame feature extractor: VBench's DINO (subject consistency) and CLIP (background
/// consistency) are of this kind; semgen plugs in its own semantic encoder through this trait
/// (in `xtask`), and the built-in [`DownsampledPixels`] and [`ColourHistogram`] stand in for them
/// in tests and where no encoder is at hand.
pub trait FrameFeatures {
    /// A short description for reports.
    fn name(&self) -> String {
        "custom".into()
    }

    /// One feature vector per time step the extractor samples, in temporal order (normally one
    /// per frame; an encoder with a temporal stride may return fewer). All vectors must have the
    /// same non-zero dimension and finite values; callers check this.
    fn features(&self, video: &Video) -> Result<Vec<Vec<f32>>>;
}

impl<T: FrameFeatures + ?Sized> FrameFeatures for &T {
    fn name(&self) -> String {
        (**self).name()
    }
    fn features(&self, video: &Video) -> Result<Vec<Vec<f32>>> {
        (**self).features(video)
    }
}

impl<T: FrameFeatures + ?Sized> FrameFeatures for Box<T> {
    fn name(&self) -> String {
        (**self).name()
    }
    fn features(&self, video: &Video) -> Result<Vec<Vec<f32>>> {
        (**self).features(video)
    }
}

/// Checks a feature set: at least `needed` (≥ 1) vectors, one non-zero dimension, finite values.
/// Returns the dimension.
pub(crate) fn check_features(
    what: &'static str,
    features: &[Vec<f32>],
    needed: usize,
) -> Result<usize> {
    let Some(first) = features.first() else {
        return Err(MetricError::EmptyFeatures { what });
    };
    if features.len() < needed {
        return Err(MetricError::TooFewFeatures {
            what,
            needed,
            got: features.len(),
        });
    }
    let dim = first.len();
    if dim == 0 {
        return Err(MetricError::ZeroDimension { what });
    }
    for (index, f) in features.iter().enumerate() {
        if f.len() != dim {
            return Err(MetricError::DimensionMismatch {
                what,
                expected: dim,
                got: f.len(),
            });
        }
        if f.iter().any(|v| !v.is_finite()) {
            return Err(MetricError::NonFinite { what, index });
        }
    }
    Ok(dim)
}

/// Runs an extractor and checks its output (at least one vector, see [`FrameFeatures`]).
pub fn extract_features(extractor: &dyn FrameFeatures, video: &Video) -> Result<Vec<Vec<f32>>> {
    let features = extractor.features(video)?;
    check_features("frame features", &features, 1)?;
    Ok(features)
}

/// L2-normalised copy in f64, `None` for the zero vector.
fn normalise(f: &[f32]) -> Option<Vec<f64>> {
    let norm = f.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt();
    (norm > 0.0).then(|| f.iter().map(|&v| v as f64 / norm).collect())
}

/// Cosine similarity of two normalised vectors; two zero vectors count as identical (1), a zero
/// and a non-zero vector as unrelated (0).
fn cosine(a: &Option<Vec<f64>>, b: &Option<Vec<f64>>) -> f64 {
    match (a, b) {
        (Some(a), Some(b)) => a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>().min(1.0),
        (None, None) => 1.0,
        _ => 0.0,
    }
}

/// The VBench consistency formula (spec §4.1) on a sequence of features `f_1 … f_T`,
/// L2-normalised first: `S = 1/(T−1) Σ_{t=2..T} ½ (max(0, cos(f_{t−1}, f_t)) + max(0, cos(f_1, f_t)))`.
/// In `[0, 1]`; 1 when every vector points the same way. Needs 2 vectors.
pub fn consistency(features: &[Vec<f32>]) -> Result<f64> {
    check_features("consistency", features, 2)?;
    let normed: Vec<Option<Vec<f64>>> = features.iter().map(|f| normalise(f)).collect();
    let first = &normed[0];
    let sum: f64 = (1..normed.len())
        .map(|t| {
            0.5 * (cosine(&normed[t - 1], &normed[t]).max(0.0) + cosine(first, &normed[t]).max(0.0))
        })
        .sum();
    Ok(sum / (normed.len() - 1) as f64)
}

fn consistency_of(
    metric: &'static str,
    video: &Video,
    extractor: &dyn FrameFeatures,
) -> Result<f64> {
    need_frames(metric, video, 2)?;
    let features = extractor.features(video)?;
    check_features(metric, &features, 2)?;
    consistency(&features)
}

/// VBench subject consistency (spec §4.1): [`consistency`] of the extractor's features, which
/// should describe the main subject (VBench: DINO ViT-B/16; stand-in: [`DownsampledPixels`]).
/// Needs 2 frames.
pub fn subject_consistency(video: &Video, extractor: &dyn FrameFeatures) -> Result<f64> {
    consistency_of("subject consistency", video, extractor)
}

/// VBench background consistency (spec §4.2): the same formula with features of the whole scene
/// (VBench: CLIP ViT-B/32; stand-in: [`ColourHistogram`]). Needs 2 frames.
pub fn background_consistency(video: &Video, extractor: &dyn FrameFeatures) -> Result<f64> {
    consistency_of("background consistency", video, extractor)
}

/// Stand-in feature: the frame's joint RGB histogram with `bins` levels per channel
/// (`bins³` values, fractions of the pixels, summing to 1). It sees the colour statistics of the
/// whole frame and nothing of where things are, so a small object moving over a fixed
/// background barely changes it while a change of background or lighting does: the behaviour
/// background consistency asks of CLIP's global embedding, without CLIP's semantics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColourHistogram {
    /// Levels per channel, 1 to 16.
    pub bins: usize,
}

impl Default for ColourHistogram {
    /// 4 levels per channel (64 values).
    fn default() -> Self {
        Self { bins: 4 }
    }
}

impl FrameFeatures for ColourHistogram {
    fn name(&self) -> String {
        format!("colour-histogram({}^3)", self.bins)
    }

    fn features(&self, video: &Video) -> Result<Vec<Vec<f32>>> {
        let b = self.bins;
        if !(1..=16).contains(&b) {
            return Err(MetricError::InvalidParameter(format!(
                "colour histogram bins must be 1..=16, got {b}"
            )));
        }
        let pixels = (video.height() * video.width()) as f32;
        Ok(video
            .frame_iter()
            .map(|frame| {
                let mut hist = vec![0f32; b * b * b];
                for p in frame.chunks_exact(3) {
                    let q = |v: u8| v as usize * b / 256;
                    hist[(q(p[0]) * b + q(p[1])) * b + q(p[2])] += 1.0;
                }
                hist.iter_mut().for_each(|v| *v /= pixels);
                hist
            })
            .collect())
    }
}

/// Stand-in feature: the frame area-averaged down to `size × size` RGB cells, values mapped to
/// `[-1, 1]` (`p / 127.5 − 1`, the models' input scale), laid out `[size, size, 3]`. It keeps
/// the spatial layout of the frame, so it responds to the subject's position, shape and colour;
/// unlike DINO it is not invariant to the subject moving, so a moving subject scores lower
/// than it would with DINO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownsampledPixels {
    /// Cells per side, 1 to 64.
    pub size: usize,
}

impl Default for DownsampledPixels {
    /// 8 × 8 cells (192 values).
    fn default() -> Self {
        Self { size: 8 }
    }
}

impl FrameFeatures for DownsampledPixels {
    fn name(&self) -> String {
        format!("downsampled-pixels({0}x{0})", self.size)
    }

    fn features(&self, video: &Video) -> Result<Vec<Vec<f32>>> {
        let s = self.size;
        if !(1..=64).contains(&s) {
            return Err(MetricError::InvalidParameter(format!(
                "downsampled size must be 1..=64, got {s}"
            )));
        }
        let (h, w) = (video.height(), video.width());
        // Cell i covers [i·n/s, max((i+1)·n/s, i·n/s + 1)): never empty, even when n < s.
        let span = |i: usize, n: usize| {
            let a = i * n / s;
            (a, ((i + 1) * n / s).max(a + 1))
        };
        Ok(video
            .frame_iter()
            .map(|frame| {
                let mut out = Vec::with_capacity(s * s * 3);
                for i in 0..s {
                    let (y0, y1) = span(i, h);
                    for j in 0..s {
                        let (x0, x1) = span(j, w);
                        let mut sum = [0u64; 3];
                        for y in y0..y1 {
                            for x in x0..x1 {
                                let p = (y * w + x) * 3;
                                for (s, &v) in sum.iter_mut().zip(&frame[p..p + 3]) {
                                    *s += v as u64;
                                }
                            }
                        }
                        let n = ((y1 - y0) * (x1 - x0)) as f64;
                        out.extend(sum.iter().map(|&v| (v as f64 / n / 127.5 - 1.0) as f32));
                    }
                }
                out
            })
            .collect())
    }
}
