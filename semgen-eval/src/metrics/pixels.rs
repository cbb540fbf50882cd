//! The pixel-level metrics: temporal flickering, motion smoothness (frame-interpolation error) and
//! the imaging-quality proxy.

use semgen_data::Video;
use serde::{Deserialize, Serialize};

use super::{need_frames, MetricError, Result};

/// `[frames, height, width]` of a clip.
pub(crate) fn dims(video: &Video) -> [usize; 3] {
    [video.frames(), video.height(), video.width()]
}

/// Mean absolute difference of two equally long byte slices (u8 scale).
fn mae(a: &[u8], b: &[u8]) -> f64 {
    let sum: u64 = a.iter().zip(b).map(|(&x, &y)| x.abs_diff(y) as u64).sum();
    sum as f64 / a.len().max(1) as f64
}

/// Mean absolute pixel difference of two clips of the same size, over all frames, pixels and
/// channels (u8 scale, 0–255).
pub fn mean_absolute_difference(a: &Video, b: &Video) -> Result<f64> {
    if dims(a) != dims(b) {
        return Err(MetricError::SizeMismatch {
            a: dims(a),
            b: dims(b),
        });
    }
    Ok(mae(a.as_bytes(), b.as_bytes()))
}

/// Peak signal-to-noise ratio of `b` against `a` (same size), in dB on the u8 scale:
/// `10 · log10(255² / MSE)` over all frames, pixels and channels. Identical clips give a finite
/// 148 dB (the MSE is floored at 1e-10).
pub fn psnr(a: &Video, b: &Video) -> Result<f64> {
    if dims(a) != dims(b) {
        return Err(MetricError::SizeMismatch {
            a: dims(a),
            b: dims(b),
        });
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mse = a
        .iter()
        .zip(b)
        .map(|(&p, &q)| (p as f64 - q as f64).powi(2))
        .sum::<f64>()
        / a.len().max(1) as f64;
    Ok(10.0 * (255.0f64.powi(2) / mse.max(1e-10)).log10())
}

/// VBench temporal flickering (spec §4.3):
/// `(255 − mean_t MAE(frame_t, frame_{t+1})) / 255`, MAE over all pixels and channels on the u8
/// scale. 1 for a static clip. Needs 2 frames.
pub fn temporal_flickering(video: &Video) -> Result<f64> {
    need_frames("temporal flickering", video, 2)?;
    let frames: Vec<&[u8]> = video.frame_iter().collect();
    let mean = frames.windows(2).map(|w| mae(w[0], w[1])).sum::<f64>() / (frames.len() - 1) as f64;
    Ok((255.0 - mean) / 255.0)
}

/// How [`motion_smoothness`] predicts the odd frame between two even frames (VBench uses the
/// AMT-S network, whose weights are not available here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Interpolator {
    /// The mean of the two neighbours, `(prev + next) / 2` per pixel and channel (not rounded).
    /// Exact for pixel values that change linearly in time; a moving edge leaves a half-bright
    /// double image, so it penalises large motions between frames.
    #[default]
    Average,
    /// Bilateral block matching: for each `block × block` tile of the middle frame, the motion
    /// `v` with `|v_y|, |v_x| ≤ radius` (pixels per frame) that minimises the sum of absolute
    /// differences between `prev(p − v)` and `next(p + v)` over the tile (coordinates clamped to
    /// the frame) plus a motion penalty of [`Interpolator::MOTION_PENALTY`] per channel value
    /// and pixel of `|v_y| + |v_x|` (ties go to the smaller motion, then raster order), then
    /// `(prev(p − v) + next(p + v)) / 2`. Exact for a rigid translation of an integer number of
    /// pixels per frame within `radius`; costs up to `(2·radius + 1)²` tile comparisons per
    /// tile. Without the penalty, a faint periodic texture (Shapes' striped backgrounds) matches
    /// itself one period away better than in place, and the interpolated tile comes out in
    /// anti-phase.
    BlockMatching { block: usize, radius: usize },
}

impl Interpolator {
    /// Block matching with 8×8 tiles and motions up to 4 px per frame.
    pub const BLOCK_MATCHING: Self = Interpolator::BlockMatching {
        block: 8,
        radius: 4,
    };

    /// Block matching's motion penalty: 1 (on the 0–255 scale) per channel value in the tile
    /// and per pixel of `|v_y| + |v_x|`, so a motion must explain more than that to be chosen
    /// over standing still.
    pub const MOTION_PENALTY: u64 = 1;

    /// A short description for reports.
    pub fn name(&self) -> String {
        match self {
            Interpolator::Average => "average".into(),
            Interpolator::BlockMatching { block, radius } => {
                format!("block-matching(block {block}, radius {radius})")
            }
        }
    }

    fn validate(&self) -> Result<()> {
        match *self {
            Interpolator::Average => Ok(()),
            Interpolator::BlockMatching { block, radius } => {
                if block == 0 {
                    return Err(MetricError::InvalidParameter(
                        "block-matching block size must be at least 1".into(),
                    ));
                }
                if radius > 64 {
                    return Err(MetricError::InvalidParameter(format!(
                        "block-matching radius {radius} is above 64"
                    )));
                }
                Ok(())
            }
        }
    }

    /// The frame halfway between `prev` and `next` (`[H, W, 3]` u8 each), as `[H, W, 3]` f32 on
    /// the u8 scale.
    pub fn interpolate(
        &self,
        prev: &[u8],
        next: &[u8],
        height: usize,
        width: usize,
    ) -> Result<Vec<f32>> {
        self.validate()?;
        let len = height * width * 3;
        if height == 0 || width == 0 || prev.len() != len || next.len() != len {
            return Err(MetricError::InvalidParameter(format!(
                "frames of {} and {} bytes for {height}x{width} RGB (expected {len} each, non-empty)",
                prev.len(),
                next.len()
            )));
        }
        Ok(match *self {
            Interpolator::Average => prev
                .iter()
                .zip(next)
                .map(|(&a, &b)| (a as f32 + b as f32) * 0.5)
                .collect(),
            Interpolator::BlockMatching { block, radius } => {
                block_matching(prev, next, height, width, block, radius)
            }
        })
    }
}

fn block_matching(
    prev: &[u8],
    next: &[u8],
    h: usize,
    w: usize,
    block: usize,
    radius: usize,
) -> Vec<f32> {
    let r = radius as isize;
    let mut candidates: Vec<(isize, isize)> = (-r..=r)
        .flat_map(|dy| (-r..=r).map(move |dx| (dy, dx)))
        .collect();
    // Stable: raster order among motions of equal length.
    candidates.sort_by_key(|&(dy, dx)| dy.abs() + dx.abs());
    let clamp = |v: isize, n: usize| v.clamp(0, n as isize - 1) as usize;
    let at = |y: usize, x: usize| (y * w + x) * 3;
    let mut out = vec![0f32; h * w * 3];
    for by in (0..h).step_by(block) {
        for bx in (0..w).step_by(block) {
            let (y1, x1) = ((by + block).min(h), (bx + block).min(w));
            let pair = |y: usize, x: usize, (dy, dx): (isize, isize)| {
                let a = at(clamp(y as isize - dy, h), clamp(x as isize - dx, w));
                let b = at(clamp(y as isize + dy, h), clamp(x as isize + dx, w));
                (a, b)
            };
            let values = ((y1 - by) * (x1 - bx) * 3) as u64;
            let mut best = (u64::MAX, (0, 0));
            for &v in &candidates {
                // Candidates come in order of |v|₁: once the penalty alone reaches the best
                // cost, no later candidate can win.
                let mut cost =
                    Interpolator::MOTION_PENALTY * values * (v.0.abs() + v.1.abs()) as u64;
                if cost >= best.0 {
                    break;
                }
                for y in by..y1 {
                    for x in bx..x1 {
                        let (a, b) = pair(y, x, v);
                        for c in 0..3 {
                            cost += prev[a + c].abs_diff(next[b + c]) as u64;
                        }
                    }
                    if cost >= best.0 {
                        break;
                    }
                }
                if cost < best.0 {
                    best = (cost, v);
                }
            }
            for y in by..y1 {
                for x in bx..x1 {
                    let (a, b) = pair(y, x, best.1);
                    let o = at(y, x);
                    for c in 0..3 {
                        out[o + c] = (prev[a + c] as f32 + next[b + c] as f32) * 0.5;
                    }
                }
            }
        }
    }
    out
}

/// VBench motion smoothness (spec §4.4): the even frames `0, 2, 4, …` are kept, the frame
/// between each pair `(2k, 2k+2)` is interpolated and compared with the real frame `2k+1`:
/// `(255 − mean_k mean|I_real − I_interp|) / 255`. 1 for a static clip, and for pixel values
/// changing linearly in time with [`Interpolator::Average`]. A trailing odd frame without a
/// right neighbour (even `T`) is not used. Needs 3 frames.
pub fn motion_smoothness(video: &Video, interpolator: Interpolator) -> Result<f64> {
    need_frames("motion smoothness", video, 3)?;
    interpolator.validate()?;
    let (h, w) = (video.height(), video.width());
    let frames: Vec<&[u8]> = video.frame_iter().collect();
    let (mut total, mut count) = (0.0, 0usize);
    let mut k = 0;
    while 2 * k + 2 < frames.len() {
        let interp = interpolator.interpolate(frames[2 * k], frames[2 * k + 2], h, w)?;
        let real = frames[2 * k + 1];
        let err: f64 = real
            .iter()
            .zip(&interp)
            .map(|(&r, &i)| (r as f64 - i as f64).abs())
            .sum();
        total += err / real.len() as f64;
        count += 1;
        k += 1;
    }
    Ok((255.0 - total / count as f64) / 255.0)
}

/// Per-frame imaging-quality proxy (stand-in for MUSIQ, spec §4.5): the mean luminance gradient
/// magnitude. With `L = 0.299 R + 0.587 G + 0.114 B` (u8 scale) and forward differences
/// `g_x = L(y, x+1) − L(y, x)`, `g_y = L(y+1, x) − L(y, x)` over the pixels with both
/// neighbours (`y < H−1`, `x < W−1`), the score is `mean √(g_x² + g_y²) / (255·√2)`, in
/// `[0, 1]`: 0 for a flat frame, 1 only for a one-pixel black/white checkerboard. Blur, fades
/// and the near-constant frames of a failed decoder lower it. Needs frames of 2×2 pixels.
pub fn imaging_quality_frames(video: &Video) -> Result<Vec<f64>> {
    let (h, w) = (video.height(), video.width());
    if h < 2 || w < 2 {
        return Err(MetricError::FrameTooSmall {
            metric: "imaging quality",
            min: 2,
            height: h,
            width: w,
        });
    }
    let scale = 255.0 * std::f64::consts::SQRT_2 * ((h - 1) * (w - 1)) as f64;
    Ok(video
        .frame_iter()
        .map(|frame| {
            let luma: Vec<f64> = frame
                .chunks_exact(3)
                .map(|p| 0.299 * p[0] as f64 + 0.587 * p[1] as f64 + 0.114 * p[2] as f64)
                .collect();
            let mut sum = 0.0;
            for y in 0..h - 1 {
                for x in 0..w - 1 {
                    let l = luma[y * w + x];
                    let gx = luma[y * w + x + 1] - l;
                    let gy = luma[(y + 1) * w + x] - l;
                    sum += (gx * gx + gy * gy).sqrt();
                }
            }
            sum / scale
        })
        .collect())
}

/// The clip's imaging-quality proxy: the mean of [`imaging_quality_frames`] over its frames.
pub fn imaging_quality(video: &Video) -> Result<f64> {
    let frames = imaging_quality_frames(video)?;
    Ok(frames.iter().sum::<f64>() / frames.len() as f64)
}
