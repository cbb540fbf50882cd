//! Rectified-flow (flow-matching) training helpers (paper §3.1).
//!
//! Forward path `x_t = (1 − σ)·x₀ + σ·ε`, velocity target `v = ε − x₀`, model timestep
//! `t = 1000·σ`. Training σ's are drawn uniformly or logit-normally and then shifted with
//! `shift(σ) = k·σ / (1 + (k − 1)·σ)` (k > 1 spends more steps at high noise, as Wan does).

use crate::ConfigError;
use burn::prelude::*;
use rand::Rng;

/// Number of discrete training timesteps (the model sees `t = 1000·σ`).
pub const NUM_TRAIN_TIMESTEPS: f64 = 1000.0;

/// The timestep shift `k·σ / (1 + (k − 1)·σ)`; monotone increasing in σ for k > 0, fixes 0 and 1.
pub fn shift_sigma(sigma: f64, shift: f64) -> f64 {
    shift * sigma / (1.0 + (shift - 1.0) * sigma)
}

/// How training noise levels are drawn.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum TimestepSampling {
    /// σ ~ U(0, 1), then shifted.
    Uniform { shift: f64 },
    /// σ = sigmoid(N(mean, std)) (SD3's logit-normal), then shifted.
    LogitNormal { mean: f64, std: f64, shift: f64 },
}

impl TimestepSampling {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let (shift, std) = match *self {
            TimestepSampling::Uniform { shift } => (shift, 1.0),
            TimestepSampling::LogitNormal { std, shift, .. } => (shift, std),
        };
        if !(shift > 0.0 && shift.is_finite()) {
            return Err(ConfigError::invalid(format!(
                "timestep shift must be positive, got {shift}"
            )));
        }
        if !(std > 0.0 && std.is_finite()) {
            return Err(ConfigError::invalid(format!(
                "logit-normal std must be positive, got {std}"
            )));
        }
        Ok(())
    }

    /// Draws `n` noise levels σ in (0, 1).
    pub fn sample(&self, n: usize, rng: &mut impl Rng) -> Vec<f64> {
        (0..n)
            .map(|_| {
                let (s, shift) = match *self {
                    TimestepSampling::Uniform { shift } => (rng.random::<f64>(), shift),
                    TimestepSampling::LogitNormal { mean, std, shift } => {
                        let z = mean + std * standard_normal(rng);
                        (1.0 / (1.0 + (-z).exp()), shift)
                    }
                };
                // Keep away from the exact ends, where the target is degenerate.
                shift_sigma(s.clamp(1e-5, 1.0 - 1e-5), shift)
            })
            .collect()
    }
}

/// A standard normal draw by Box–Muller (deterministic given the RNG).
pub fn standard_normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// `x_t = (1 − σ)·x₀ + σ·ε` with one σ per batch element (`sigma` is `[B]`).
pub fn noisy_sample<B: Backend, const D: usize>(
    x0: Tensor<B, D>,
    noise: Tensor<B, D>,
    sigma: Tensor<B, 1>,
) -> Tensor<B, D> {
    let s = broadcast_batch::<B, D>(sigma);
    x0 * (s.clone().neg() + 1.0) + noise * s
}

/// The velocity target `ε − x₀`.
pub fn velocity_target<B: Backend, const D: usize>(
    x0: Tensor<B, D>,
    noise: Tensor<B, D>,
) -> Tensor<B, D> {
    noise - x0
}

/// The clean-sample estimate from a velocity: `x₀ = x_t − σ·v`.
pub fn predict_x0<B: Backend, const D: usize>(
    x_t: Tensor<B, D>,
    v: Tensor<B, D>,
    sigma: Tensor<B, 1>,
) -> Tensor<B, D> {
    x_t - v * broadcast_batch::<B, D>(sigma)
}

/// `[B]` → `[B, 1, …, 1]` of rank `D`.
pub fn broadcast_batch<B: Backend, const D: usize>(v: Tensor<B, 1>) -> Tensor<B, D> {
    let b = v.dims()[0];
    let mut shape = [1usize; D];
    shape[0] = b;
    v.reshape(shape)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn shift_fixes_endpoints() {
        for k in [0.5, 1.0, 3.0, 5.0] {
            assert!((shift_sigma(0.0, k)).abs() < 1e-12);
            assert!((shift_sigma(1.0, k) - 1.0).abs() < 1e-12);
        }
        assert!((shift_sigma(0.5, 5.0) - 5.0 / 6.0).abs() < 1e-12);
    }

    #[test]
    fn sampling_is_seeded_and_in_range() {
        let s = TimestepSampling::LogitNormal {
            mean: 0.0,
            std: 1.0,
            shift: 3.0,
        };
        let a = s.sample(64, &mut rand::rngs::StdRng::seed_from_u64(7));
        let b = s.sample(64, &mut rand::rngs::StdRng::seed_from_u64(7));
        assert_eq!(a, b);
        assert!(a.iter().all(|&x| x > 0.0 && x < 1.0));
        assert!(TimestepSampling::Uniform { shift: 0.0 }.validate().is_err());
    }
}
