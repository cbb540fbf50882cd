//! The Fréchet distance between two sets of feature vectors (FID/FVD), with a symmetric
//! eigen-solver (cyclic Jacobi) for the matrix square roots.

use semgen_data::Video;

use super::features::{check_features, FrameFeatures};
use super::{MetricError, Result};

/// Mean and covariance of a set of feature vectors (f64).
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureStats {
    /// Feature dimension `d`.
    pub dim: usize,
    /// Number of vectors.
    pub count: usize,
    /// Mean, `d` values.
    pub mean: Vec<f64>,
    /// Unbiased sample covariance (divided by `count − 1`, as `numpy.cov` in the FID/FVD
    /// reference code), `d × d` row-major.
    pub covariance: Vec<f64>,
}

impl FeatureStats {
    /// Statistics of a set of at least 2 vectors of equal, non-zero dimension.
    pub fn from_features(features: &[Vec<f32>]) -> Result<Self> {
        let dim = check_features("Fréchet distance", features, 2)?;
        let n = features.len();
        let mut mean = vec![0f64; dim];
        for f in features {
            for (m, &v) in mean.iter_mut().zip(f) {
                *m += v as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let mut covariance = vec![0f64; dim * dim];
        let mut centred = vec![0f64; dim];
        for f in features {
            for ((c, &v), m) in centred.iter_mut().zip(f).zip(&mean) {
                *c = v as f64 - m;
            }
            for (i, &ci) in centred.iter().enumerate() {
                let row = &mut covariance[i * dim..(i + 1) * dim];
                for (c, &cj) in row[i..].iter_mut().zip(&centred[i..]) {
                    *c += ci * cj;
                }
            }
        }
        for i in 0..dim {
            for j in i..dim {
                let v = covariance[i * dim + j] / (n - 1) as f64;
                covariance[i * dim + j] = v;
                covariance[j * dim + i] = v;
            }
        }
        Ok(Self {
            dim,
            count: n,
            mean,
            covariance,
        })
    }

    /// The Fréchet distance between the Gaussians of `self` and `other`:
    /// `|μ₁ − μ₂|² + Tr(Σ₁ + Σ₂ − 2 (Σ₁^½ Σ₂ Σ₁^½)^½)`, clamped at 0 against rounding.
    /// `(Σ₁^½ Σ₂ Σ₁^½)^½` has the trace of `(Σ₁Σ₂)^½` but is symmetric, so both roots come from
    /// a symmetric eigendecomposition (negative eigenvalues from rounding are taken as 0).
    /// Costs `O(d³)`: instant for hundreds of dimensions, seconds at about a thousand.
    pub fn frechet_distance(&self, other: &FeatureStats) -> Result<f64> {
        if self.dim != other.dim {
            return Err(MetricError::DimensionMismatch {
                what: "Fréchet distance",
                expected: self.dim,
                got: other.dim,
            });
        }
        let d = self.dim;
        let mean_term: f64 = self
            .mean
            .iter()
            .zip(&other.mean)
            .map(|(a, b)| (a - b) * (a - b))
            .sum();
        let trace = |m: &[f64]| (0..d).map(|i| m[i * d + i]).sum::<f64>();
        let root = psd_sqrt(&self.covariance, d);
        let product = matmul(&matmul(&root, &other.covariance, d), &root, d);
        let (eigenvalues, _) = symmetric_eigen(&symmetrise(&product, d), d);
        let trace_root: f64 = eigenvalues.iter().map(|&l| l.max(0.0).sqrt()).sum();
        let value =
            mean_term + trace(&self.covariance) + trace(&other.covariance) - 2.0 * trace_root;
        Ok(value.max(0.0))
    }
}

/// The Fréchet distance between two sets of feature vectors (FID-style; see
/// [`FeatureStats::frechet_distance`]). Each set needs 2 vectors, all of one dimension.
pub fn frechet_distance(a: &[Vec<f32>], b: &[Vec<f32>]) -> Result<f64> {
    FeatureStats::from_features(a)?.frechet_distance(&FeatureStats::from_features(b)?)
}

/// A clip's feature for the FVD-style distance: the mean of its frame features.
pub fn clip_feature(video: &Video, extractor: &dyn FrameFeatures) -> Result<Vec<f32>> {
    let features = extractor.features(video)?;
    let dim = check_features("clip feature", &features, 1)?;
    let mut mean = vec![0f64; dim];
    for f in &features {
        for (m, &v) in mean.iter_mut().zip(f) {
            *m += v as f64;
        }
    }
    Ok(mean
        .iter()
        .map(|m| (m / features.len() as f64) as f32)
        .collect())
}

/// FVD-style distance between two sets of clips: the Fréchet distance of their
/// [`clip_feature`]s (VBench/FVD use I3D clip embeddings; here any [`FrameFeatures`], averaged
/// over frames). Each set needs 2 clips.
pub fn frechet_video_distance(
    a: &[Video],
    b: &[Video],
    extractor: &dyn FrameFeatures,
) -> Result<f64> {
    let features = |set: &[Video]| -> Result<Vec<Vec<f32>>> {
        set.iter().map(|v| clip_feature(v, extractor)).collect()
    };
    frechet_distance(&features(a)?, &features(b)?)
}

fn matmul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let mut out = vec![0f64; n * n];
    for i in 0..n {
        for k in 0..n {
            let aik = a[i * n + k];
            if aik == 0.0 {
                continue;
            }
            for j in 0..n {
                out[i * n + j] += aik * b[k * n + j];
            }
        }
    }
    out
}

fn symmetrise(a: &[f64], n: usize) -> Vec<f64> {
    let mut out = a.to_vec();
    for i in 0..n {
        for j in i + 1..n {
            let v = 0.5 * (a[i * n + j] + a[j * n + i]);
            out[i * n + j] = v;
            out[j * n + i] = v;
        }
    }
    out
}

/// The symmetric square root `V diag(√max(λ, 0)) Vᵀ` of a symmetric positive semi-definite matrix.
pub(crate) fn psd_sqrt(a: &[f64], n: usize) -> Vec<f64> {
    let (values, vectors) = symmetric_eigen(a, n);
    let roots: Vec<f64> = values.iter().map(|&l| l.max(0.0).sqrt()).collect();
    let mut out = vec![0f64; n * n];
    for i in 0..n {
        for j in i..n {
            let v: f64 = (0..n)
                .map(|k| vectors[i * n + k] * roots[k] * vectors[j * n + k])
                .sum();
            out[i * n + j] = v;
            out[j * n + i] = v;
        }
    }
    out
}

/// Eigenvalues and eigenvectors of a symmetric `n × n` matrix (row-major) by the cyclic Jacobi
/// method: returns `(λ, V)` with `A = V diag(λ) Vᵀ`, eigenvector `k` in column `k` of `V`
/// (row-major). Sweeps until the off-diagonal mass is below `1e-28` of the total (or 100 sweeps).
pub(crate) fn symmetric_eigen(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a = a.to_vec();
    let mut v = vec![0f64; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    let total: f64 = a.iter().map(|x| x * x).sum();
    for _sweep in 0..100 {
        let mut off = 0.0;
        for i in 0..n {
            for j in i + 1..n {
                off += a[i * n + j] * a[i * n + j];
            }
        }
        if off <= 1e-28 * total || off == 0.0 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                let (app, aqq) = (a[p * n + p], a[q * n + q]);
                let theta = (aqq - app) / (2.0 * apq);
                // t = tan φ, the smaller root of t² + 2θt − 1 = 0 (no overflow for huge θ).
                let t = if theta.abs() > 1e150 {
                    0.5 / theta
                } else {
                    theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt())
                };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                // A ← Jᵀ A J with J the rotation in the (p, q) plane; V ← V J.
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                a[p * n + q] = 0.0;
                a[q * n + p] = 0.0;
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i * n + i]).collect(), v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_symmetric(n: usize, seed: u64) -> Vec<f64> {
        let mut state = seed;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        };
        let mut a = vec![0f64; n * n];
        for i in 0..n {
            for j in i..n {
                let x = next();
                a[i * n + j] = x;
                a[j * n + i] = x;
            }
        }
        a
    }

    fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    }

    #[test]
    fn jacobi_reconstructs_a_random_symmetric_matrix() {
        let n = 12;
        let a = random_symmetric(n, 0x9e37_79b9_7f4a_7c15);
        let (values, vectors) = symmetric_eigen(&a, n);
        // A = V diag(λ) Vᵀ and Vᵀ V = I.
        let mut rebuilt = vec![0f64; n * n];
        let mut gram = vec![0f64; n * n];
        for i in 0..n {
            for j in 0..n {
                rebuilt[i * n + j] = (0..n)
                    .map(|k| vectors[i * n + k] * values[k] * vectors[j * n + k])
                    .sum();
                gram[i * n + j] = (0..n)
                    .map(|k| vectors[k * n + i] * vectors[k * n + j])
                    .sum();
            }
        }
        assert!(max_abs_diff(&rebuilt, &a) < 1e-12, "reconstruction");
        let eye: Vec<f64> = (0..n * n)
            .map(|i| if i / n == i % n { 1.0 } else { 0.0 })
            .collect();
        assert!(max_abs_diff(&gram, &eye) < 1e-12, "orthonormality");
        // The trace is the sum of the eigenvalues.
        let trace: f64 = (0..n).map(|i| a[i * n + i]).sum();
        assert!((values.iter().sum::<f64>() - trace).abs() < 1e-12);
    }

    #[test]
    fn jacobi_known_eigenvalues() {
        // [[2, 1], [1, 2]] has eigenvalues 1 and 3.
        let (mut values, _) = symmetric_eigen(&[2.0, 1.0, 1.0, 2.0], 2);
        values.sort_by(f64::total_cmp);
        assert!((values[0] - 1.0).abs() < 1e-14 && (values[1] - 3.0).abs() < 1e-14);
        // A diagonal matrix is returned as is.
        let (values, vectors) = symmetric_eigen(&[5.0, 0.0, 0.0, -2.0], 2);
        assert_eq!(values, vec![5.0, -2.0]);
        assert_eq!(vectors, vec![1.0, 0.0, 0.0, 1.0]);
        // The empty matrix has no eigenvalues.
        assert!(symmetric_eigen(&[], 0).0.is_empty());
    }

    #[test]
    fn psd_sqrt_squares_back() {
        let n = 8;
        let b = random_symmetric(n, 42);
        let a = matmul(&b, &b, n); // symmetric PSD
        let root = psd_sqrt(&a, n);
        assert!(max_abs_diff(&matmul(&root, &root, n), &a) < 1e-10);
        // The root of a PSD matrix is PSD: its eigenvalues are not negative.
        let (values, _) = symmetric_eigen(&root, n);
        assert!(values.iter().all(|&l| l > -1e-10), "{values:?}");
    }
}
