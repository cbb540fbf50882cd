//! How far a generated latent is from the real clip's latent: stage 2's error, measured where it
//! is made, before the decoder draws it.
//!
//! Conditioned on the real clip's `z_sem` (`xtask eval --source real`), stage 2 should produce a
//! latent like the real clip's. The oracle only says whether the decoded clip shows the prompt;
//! these figures say *how* the latent differs: by how much in total ([`LatentComparison::relative_mse`]),
//! in spread ([`LatentComparison::std_ratio`]) and in detail: the energy of neighbouring-cell
//! differences in space (outlines) and in time (motion) against the real latent's. A ratio below
//! 1 means the generated latent is smoother than the real one, the signature of a denoiser that
//! averages over what it cannot pin down.

use serde::{Deserialize, Serialize};

use super::{MetricError, Result};

/// A generated latent against the real one, both `[channels, frames, height, width]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LatentComparison {
    /// `Σ (g − r)² / Σ r²`: 0 for the real latent itself.
    pub relative_mse: f64,
    /// Standard deviation of `g` over that of `r` (all values pooled).
    pub std_ratio: f64,
    /// Energy of horizontal and vertical neighbour differences of `g` over that of `r`.
    pub spatial_detail_ratio: f64,
    /// Energy of frame-to-frame differences of `g` over that of `r`; `None` for one frame.
    pub temporal_detail_ratio: Option<f64>,
    /// `relative_mse` over the object cells alone, and over the rest, when the cells are given
    /// (`None` when not, or when the clip has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_relative_mse: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background_relative_mse: Option<f64>,
}

/// Neighbour-difference energies of a `[c, t, h, w]` latent: (space, time).
fn detail_energy(x: &[f32], [c, t, h, w]: [usize; 4]) -> (f64, f64) {
    let at = |ci: usize, ti: usize, y: usize, xi: usize| x[((ci * t + ti) * h + y) * w + xi] as f64;
    let (mut space, mut time) = (0.0, 0.0);
    for ci in 0..c {
        for ti in 0..t {
            for y in 0..h {
                for xi in 0..w {
                    let v = at(ci, ti, y, xi);
                    if xi + 1 < w {
                        space += (at(ci, ti, y, xi + 1) - v).powi(2);
                    }
                    if y + 1 < h {
                        space += (at(ci, ti, y + 1, xi) - v).powi(2);
                    }
                    if ti + 1 < t {
                        time += (at(ci, ti + 1, y, xi) - v).powi(2);
                    }
                }
            }
        }
    }
    (space, time)
}

fn std(x: &[f32]) -> f64 {
    let n = x.len() as f64;
    let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n;
    (x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt()
}

/// `a / b`, an error when `b` is zero (a flat real latent has no detail to compare against).
fn ratio(a: f64, b: f64, what: &str) -> Result<f64> {
    if b > 0.0 {
        Ok(a / b)
    } else {
        Err(MetricError::InvalidParameter(format!(
            "latent comparison: the real latent's {what} is zero"
        )))
    }
}

/// `Σ (g − r)² / Σ r²` over the cells (`[frames, height, width]`, shared by every channel) where
/// `keep` is true; `None` when no cell is kept or their real energy is zero.
fn masked_relative_mse(g: &[f32], r: &[f32], cells: &[bool], keep: bool) -> Option<f64> {
    let (mut err, mut energy) = (0.0, 0.0);
    for (i, (&gv, &rv)) in g.iter().zip(r).enumerate() {
        if cells[i % cells.len()] == keep {
            err += (gv as f64 - rv as f64).powi(2);
            energy += (rv as f64).powi(2);
        }
    }
    (energy > 0.0).then(|| err / energy)
}

/// Compares `generated` with `real`, both laid out `[channels, frames, height, width]` (`dims`),
/// row-major; `object_cells` (`[frames, height, width]`, row-major) marks the cells an object
/// covers, for the per-region errors. Fails on a length that does not match `dims`, an empty or
/// non-finite latent, or a flat real latent.
pub fn compare_latents(
    generated: &[f32],
    real: &[f32],
    dims: [usize; 4],
    object_cells: Option<&[bool]>,
) -> Result<LatentComparison> {
    let n: usize = dims.iter().product();
    if n == 0 {
        return Err(MetricError::InvalidParameter(format!(
            "latent comparison: empty latent {dims:?}"
        )));
    }
    for (what, x) in [("generated latent", generated), ("real latent", real)] {
        if x.len() != n {
            return Err(MetricError::DimensionMismatch {
                what: "latent comparison",
                expected: n,
                got: x.len(),
            });
        }
        if let Some(index) = x.iter().position(|v| !v.is_finite()) {
            return Err(MetricError::NonFinite { what, index });
        }
    }
    let cells = dims[1] * dims[2] * dims[3];
    if let Some(m) = object_cells {
        if m.len() != cells {
            return Err(MetricError::DimensionMismatch {
                what: "latent comparison's object cells",
                expected: cells,
                got: m.len(),
            });
        }
    }
    let region =
        |keep: bool| object_cells.and_then(|m| masked_relative_mse(generated, real, m, keep));
    let err: f64 = generated
        .iter()
        .zip(real)
        .map(|(&g, &r)| (g as f64 - r as f64).powi(2))
        .sum();
    let energy: f64 = real.iter().map(|&r| (r as f64).powi(2)).sum();
    let (gs, gt) = detail_energy(generated, dims);
    let (rs, rt) = detail_energy(real, dims);
    Ok(LatentComparison {
        relative_mse: ratio(err, energy, "energy")?,
        std_ratio: ratio(std(generated), std(real), "standard deviation")?,
        spatial_detail_ratio: ratio(gs, rs, "spatial detail")?,
        temporal_detail_ratio: if dims[1] > 1 {
            Some(ratio(gt, rt, "temporal detail")?)
        } else {
            None
        },
        object_relative_mse: region(true),
        background_relative_mse: region(false),
    })
}

/// The mean of each field over several comparisons (`None` for an empty slice; the optional
/// fields are averaged over the comparisons that have them).
pub fn mean_comparison(items: &[LatentComparison]) -> Option<LatentComparison> {
    if items.is_empty() {
        return None;
    }
    let n = items.len() as f64;
    let mean = |f: fn(&LatentComparison) -> f64| items.iter().map(f).sum::<f64>() / n;
    let some_mean = |f: fn(&LatentComparison) -> Option<f64>| {
        let v: Vec<f64> = items.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    Some(LatentComparison {
        relative_mse: mean(|c| c.relative_mse),
        std_ratio: mean(|c| c.std_ratio),
        spatial_detail_ratio: mean(|c| c.spatial_detail_ratio),
        temporal_detail_ratio: some_mean(|c| c.temporal_detail_ratio),
        object_relative_mse: some_mean(|c| c.object_relative_mse),
        background_relative_mse: some_mean(|c| c.background_relative_mse),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `[2, 3, 4, 4]` latent with structure in space and time.
    fn latent() -> (Vec<f32>, [usize; 4]) {
        let dims = [2, 3, 4, 4];
        let x = (0..dims.iter().product::<usize>())
            .map(|i| ((i * 7 % 11) as f32 - 5.0) / 3.0)
            .collect();
        (x, dims)
    }

    #[test]
    fn a_latent_against_itself_is_exact() {
        let (x, dims) = latent();
        let c = compare_latents(&x, &x, dims, None).unwrap();
        assert_eq!(c.relative_mse, 0.0);
        assert!((c.std_ratio - 1.0).abs() < 1e-12);
        assert!((c.spatial_detail_ratio - 1.0).abs() < 1e-12);
        assert!((c.temporal_detail_ratio.unwrap() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn smoothing_lowers_detail_and_scaling_scales_everything() {
        let (x, dims @ [c, t, h, w]) = latent();
        // Each value replaced by the mean of itself and its right neighbour (within a row).
        let mut smooth = x.clone();
        for row in 0..c * t * h {
            for xi in 0..w - 1 {
                let i = row * w + xi;
                smooth[i] = 0.5 * (x[i] + x[i + 1]);
            }
        }
        let s = compare_latents(&smooth, &x, dims, None).unwrap();
        assert!(s.spatial_detail_ratio < 0.8, "{s:?}");
        assert!(s.relative_mse > 0.0);
        let half: Vec<f32> = x.iter().map(|v| v * 0.5).collect();
        let h2 = compare_latents(&half, &x, dims, None).unwrap();
        assert!((h2.std_ratio - 0.5).abs() < 1e-6);
        assert!((h2.spatial_detail_ratio - 0.25).abs() < 1e-6);
        assert!((h2.temporal_detail_ratio.unwrap() - 0.25).abs() < 1e-6);
        assert!((h2.relative_mse - 0.25).abs() < 1e-6);
        let m = mean_comparison(&[s, h2]).unwrap();
        assert!((m.std_ratio - (s.std_ratio + 0.5) / 2.0).abs() < 1e-12);
        assert!(mean_comparison(&[]).is_none());
    }

    #[test]
    fn bad_latents_are_typed_errors() {
        let (x, dims) = latent();
        assert!(matches!(
            compare_latents(&x[1..], &x, dims, None),
            Err(MetricError::DimensionMismatch { .. })
        ));
        let mut nan = x.clone();
        nan[3] = f32::NAN;
        assert!(matches!(
            compare_latents(&nan, &x, dims, None),
            Err(MetricError::NonFinite { index: 3, .. })
        ));
        let flat = vec![0.0; x.len()];
        assert!(matches!(
            compare_latents(&x, &flat, dims, None),
            Err(MetricError::InvalidParameter(_))
        ));
        assert!(compare_latents(&[], &[], [0, 1, 1, 1], None).is_err());
        // One frame: no temporal ratio.
        let one = compare_latents(&x[..32], &x[..32], [2, 1, 4, 4], None).unwrap();
        assert_eq!(one.temporal_detail_ratio, None);
        assert!(matches!(
            compare_latents(&x, &x, dims, Some(&[true; 3])),
            Err(MetricError::DimensionMismatch { .. })
        ));
    }

    #[test]
    fn object_cells_split_the_error() {
        let (x, dims @ [c, t, h, w]) = latent();
        // Cell 5 of every frame (and every channel) is an object; only it is perturbed.
        let cells: Vec<bool> = (0..t * h * w).map(|i| i % (h * w) == 5).collect();
        let mut g = x.clone();
        for ch in 0..c {
            for f in 0..t {
                g[(ch * t + f) * h * w + 5] += 1.0;
            }
        }
        let m = compare_latents(&g, &x, dims, Some(&cells)).unwrap();
        assert_eq!(m.background_relative_mse, Some(0.0));
        assert!(m.object_relative_mse.unwrap() > m.relative_mse);
        assert!(compare_latents(&g, &x, dims, None)
            .unwrap()
            .object_relative_mse
            .is_none());
        // No object cell: no object figure.
        let none = compare_latents(&g, &x, dims, Some(&vec![false; t * h * w])).unwrap();
        assert_eq!(none.object_relative_mse, None);
        assert!((none.background_relative_mse.unwrap() - none.relative_mse).abs() < 1e-12);
    }
}
