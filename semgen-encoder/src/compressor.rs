//! The compression MLP (paper §1.4): semantic features are squeezed per token to a very low
//! dimension before the semantic generator models them. Per token,
//! `d → hidden → 2·d_out` gives a mean and a log-variance; training samples
//! `z = μ + exp(½·logvar)·ε` (reparameterised) and adds `kl_weight · KL(q(z|x) ‖ N(0, I))`;
//! inference uses `μ`. `d_out = 8` is the paper's best; `Some(16 | 32 | 64)` and `None`
//! ("no compression": identity, KL 0) serve the ablation.
//!
//! The noise is explicit: either passed in as a tensor or drawn from a seeded host RNG, so a run
//! is reproducible on every backend.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use semgen_core::layers::gelu_erf;
use semgen_core::ConfigError;

/// Configuration of [`Compressor`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CompressorConfig {
    /// Width of the semantic features (the vision tower's `out_hidden_size`).
    pub d_in: usize,
    pub hidden: usize,
    /// Output dimension; `None` is the identity ("no compression").
    pub d_out: Option<usize>,
    /// Weight of the KL term in [`CompressorOutput::weighted_kl`].
    pub kl_weight: f64,
}

impl CompressorConfig {
    /// The paper's default: 8 output dimensions; hidden width `max(d_in, 64)`; KL weight 1e-3.
    pub fn new(d_in: usize) -> Self {
        Self {
            d_in,
            hidden: d_in.max(64),
            d_out: Some(8),
            kl_weight: 1e-3,
        }
    }

    pub fn with_d_out(mut self, d_out: Option<usize>) -> Self {
        self.d_out = d_out;
        self
    }

    pub fn with_kl_weight(mut self, w: f64) -> Self {
        self.kl_weight = w;
        self
    }

    pub fn with_hidden(mut self, hidden: usize) -> Self {
        self.hidden = hidden;
        self
    }

    /// The dimension of the compressed tokens (`d_in` for the identity).
    pub fn out_dim(&self) -> usize {
        self.d_out.unwrap_or(self.d_in)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.d_in == 0 || self.hidden == 0 || self.d_out == Some(0) {
            return Err(ConfigError::invalid(
                "compressor dimensions must be positive",
            ));
        }
        if !(self.kl_weight.is_finite() && self.kl_weight >= 0.0) {
            return Err(ConfigError::invalid(format!(
                "kl_weight must be a non-negative number, got {}",
                self.kl_weight
            )));
        }
        Ok(())
    }

    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<Compressor<B>, ConfigError> {
        self.validate()?;
        let (fc1, fc2) = match self.d_out {
            Some(d_out) => (
                Some(LinearConfig::new(self.d_in, self.hidden).init(device)),
                Some(LinearConfig::new(self.hidden, 2 * d_out).init(device)),
            ),
            None => (None, None),
        };
        Ok(Compressor {
            fc1,
            fc2,
            config: self.clone(),
        })
    }
}

/// The compression MLP; identity when `d_out` is `None`.
#[derive(Module, Debug)]
pub struct Compressor<B: Backend> {
    pub fc1: Option<Linear<B>>,
    pub fc2: Option<Linear<B>>,
    #[module(skip)]
    pub config: CompressorConfig,
}

/// The posterior of a batch of tokens and a sample from it.
#[derive(Debug, Clone)]
pub struct CompressorOutput<B: Backend, const D: usize> {
    pub mean: Tensor<B, D>,
    pub logvar: Tensor<B, D>,
    /// `mean + exp(½·logvar)·ε`.
    pub sample: Tensor<B, D>,
    /// `KL(N(mean, exp(logvar)) ‖ N(0, I))`, summed over channels, averaged over tokens (a
    /// one-element tensor; 0 for the identity).
    pub kl: Tensor<B, 1>,
    kl_weight: f64,
}

impl<B: Backend, const D: usize> CompressorOutput<B, D> {
    /// `kl_weight · kl`, the term to add to a training loss.
    pub fn weighted_kl(&self) -> Tensor<B, 1> {
        self.kl.clone() * self.kl_weight
    }
}

/// KL of a diagonal Gaussian to N(0, I), summed over the last axis and averaged over the rest:
/// `½·Σ(μ² + exp(logvar) − 1 − logvar)`.
pub fn kl_to_standard_normal<B: Backend, const D: usize>(
    mean: Tensor<B, D>,
    logvar: Tensor<B, D>,
) -> Tensor<B, 1> {
    let per = (mean.square() + logvar.clone().exp() - 1.0 - logvar) * 0.5;
    per.sum_dim(D - 1).mean()
}

/// Standard-normal noise of `shape` from a seeded host RNG (Box–Muller), identical on every
/// backend.
pub fn seeded_normal<B: Backend, const D: usize>(
    shape: [usize; D],
    seed: u64,
    device: &B::Device,
) -> Tensor<B, D> {
    let n: usize = shape.iter().product();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut v = Vec::with_capacity(n + 1);
    while v.len() < n {
        // 1 - u keeps the log argument in (0, 1].
        let u1: f64 = 1.0 - rng.random::<f64>();
        let u2: f64 = rng.random::<f64>();
        let r = (-2.0 * u1.ln()).sqrt();
        let a = std::f64::consts::TAU * u2;
        v.push((r * a.cos()) as f32);
        v.push((r * a.sin()) as f32);
    }
    v.truncate(n);
    Tensor::from_data(TensorData::new(v, shape), device)
}

impl<B: Backend> Compressor<B> {
    /// Mean and log-variance of tokens `[…, d_in]` (for the identity: the input and zeros).
    pub fn posterior<const D: usize>(&self, x: Tensor<B, D>) -> (Tensor<B, D>, Tensor<B, D>) {
        match (&self.fc1, &self.fc2, self.config.d_out) {
            (Some(fc1), Some(fc2), Some(d_out)) => {
                let h = fc2.forward(gelu_erf(fc1.forward(x)));
                (
                    h.clone().narrow(D - 1, 0, d_out),
                    h.narrow(D - 1, d_out, d_out),
                )
            }
            _ => {
                let z = x.zeros_like();
                (x, z)
            }
        }
    }

    /// The deterministic code used at inference: the posterior mean.
    pub fn encode_mean<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        self.posterior(x).0
    }

    /// Posterior, reparameterised sample with the given standard-normal `noise` (same shape as
    /// the output), and KL.
    pub fn forward_with_noise<const D: usize>(
        &self,
        x: Tensor<B, D>,
        noise: Tensor<B, D>,
    ) -> CompressorOutput<B, D> {
        let (mean, logvar) = self.posterior(x);
        let device = mean.device();
        let (sample, kl) = if self.config.d_out.is_none() {
            // No compression: the features pass through untouched and there is no KL term.
            (mean.clone(), Tensor::zeros([1], &device))
        } else {
            let std = (logvar.clone() * 0.5).exp();
            (
                mean.clone() + std * noise,
                kl_to_standard_normal(mean.clone(), logvar.clone()),
            )
        };
        CompressorOutput {
            mean,
            logvar,
            sample,
            kl,
            kl_weight: self.config.kl_weight,
        }
    }

    /// Like [`Self::forward_with_noise`] with noise from a seeded RNG.
    pub fn forward_seeded<const D: usize>(
        &self,
        x: Tensor<B, D>,
        seed: u64,
    ) -> CompressorOutput<B, D> {
        let mut shape = x.dims();
        shape[D - 1] = self.config.out_dim();
        let noise = seeded_normal::<B, D>(shape, seed, &x.device());
        self.forward_with_noise(x, noise)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::tensor::{Distribution, Tolerance};
    type TB = NdArray;

    fn features(d: &burn::backend::ndarray::NdArrayDevice) -> Tensor<TB, 3> {
        Tensor::<TB, 3>::random([2, 5, 48], Distribution::Normal(0.0, 1.0), d)
    }

    #[test]
    fn shapes_for_every_d_out() {
        let d = Default::default();
        for d_out in [Some(8), Some(16), Some(32), Some(64), None] {
            let c = CompressorConfig::new(48)
                .with_d_out(d_out)
                .init::<TB>(&d)
                .unwrap();
            let out = c.forward_seeded(features(&d), 1);
            let w = d_out.unwrap_or(48);
            assert_eq!(out.mean.dims(), [2, 5, w]);
            assert_eq!(out.logvar.dims(), [2, 5, w]);
            assert_eq!(out.sample.dims(), [2, 5, w]);
            assert_eq!(out.kl.dims(), [1]);
            assert!(out.kl.into_scalar().is_finite());
        }
    }

    #[test]
    fn identity_passes_through_with_zero_kl() {
        let d = Default::default();
        let c = CompressorConfig::new(48)
            .with_d_out(None)
            .init::<TB>(&d)
            .unwrap();
        let x = features(&d);
        let out = c.forward_seeded(x.clone(), 3);
        out.sample.into_data().assert_eq(&x.into_data(), true);
        assert_eq!(out.kl.into_scalar(), 0.0);
    }

    #[test]
    fn deterministic_under_a_seed() {
        let d = Default::default();
        let c = CompressorConfig::new(48).init::<TB>(&d).unwrap();
        let x = features(&d);
        let a = c.forward_seeded(x.clone(), 42).sample.into_data();
        let b = c.forward_seeded(x.clone(), 42).sample.into_data();
        let other = c.forward_seeded(x, 43).sample.into_data();
        a.assert_eq(&b, true);
        let diff = a
            .to_vec::<f32>()
            .unwrap()
            .iter()
            .zip(other.to_vec::<f32>().unwrap())
            .any(|(p, q)| *p != q);
        assert!(diff, "different seeds must give different samples");
    }

    #[test]
    fn kl_is_zero_for_standard_normal_posterior_and_positive_otherwise() {
        let d = Default::default();
        let zeros = Tensor::<TB, 2>::zeros([4, 8], &d);
        assert_eq!(
            kl_to_standard_normal(zeros.clone(), zeros.clone()).into_scalar(),
            0.0
        );
        // mu = 1, logvar = 0: ½·Σ 1 over 8 channels = 4 per token.
        let ones = Tensor::<TB, 2>::ones([4, 8], &d);
        let kl = kl_to_standard_normal(ones, zeros.clone()).into_scalar();
        assert!((kl - 4.0).abs() < 1e-6, "{kl}");
        // logvar = 1: ½·(e − 2) per channel.
        let kl = kl_to_standard_normal(zeros.clone(), zeros.clone() + 1.0).into_scalar();
        assert!(
            (kl - 4.0 * (std::f32::consts::E - 2.0)).abs() < 1e-5,
            "{kl}"
        );
    }

    #[test]
    fn sample_is_mean_plus_scaled_noise_and_weight_applies() {
        let d = Default::default();
        let c = CompressorConfig::new(48)
            .with_kl_weight(0.5)
            .init::<TB>(&d)
            .unwrap();
        let x = features(&d);
        let noise = seeded_normal::<TB, 3>([2, 5, 8], 9, &d);
        let out = c.forward_with_noise(x, noise.clone());
        let want = out.mean.clone() + (out.logvar.clone() * 0.5).exp() * noise;
        out.sample
            .clone()
            .into_data()
            .assert_approx_eq::<f32>(&want.into_data(), Tolerance::absolute(1e-6));
        let (k, wk) = (
            out.kl.clone().into_scalar(),
            out.weighted_kl().into_scalar(),
        );
        assert!((wk - 0.5 * k).abs() < 1e-6);
    }

    #[test]
    fn seeded_noise_is_standard_normal() {
        let d = Default::default();
        let v = seeded_normal::<TB, 1>([20000], 5, &d)
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        let mean = v.iter().sum::<f32>() / v.len() as f32;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / v.len() as f32;
        assert!(
            mean.abs() < 0.03 && (var - 1.0).abs() < 0.05,
            "mean {mean} var {var}"
        );
    }

    #[test]
    fn rejects_bad_config() {
        assert!(CompressorConfig::new(48)
            .with_d_out(Some(0))
            .validate()
            .is_err());
        assert!(CompressorConfig::new(48)
            .with_kl_weight(-1.0)
            .validate()
            .is_err());
    }
}
