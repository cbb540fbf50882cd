//! Samplers and the one sampling loop both SemanticGen stages use.
//!
//! - [`FlowMatchEuler`]: diffusers' `FlowMatchEulerDiscreteScheduler` (σ = shift(linspace(1,
//!   shift(1/1000), N)), note the endpoint is shifted twice, as upstream; `x += (σ' − σ)·v`).
//! - [`UniPc`]: diffusers' `UniPCMultistepScheduler` with flow sigmas, `predict_x0`, BH2, order 2,
//!   `lower_order_final` (σ = shift(linspace(1, 1/1000, N+1)[:-1]), σ₀ −= 1e-6, integer
//!   timesteps).
//! - [`Denoiser`]: anything that predicts a velocity for a noisy sample at a timestep; the stage
//!   crates implement it for their models (with classifier-free guidance through [`apply_cfg`]).
//! - [`sample`]: the loop, with a per-step callback that can report progress or cancel.
//!
//! Scheduler coefficients are scalars computed on the host in f64; tensor updates stay on the
//! device.

use crate::flow::shift_sigma;
use crate::ConfigError;
use burn::prelude::*;

// ---------------------------------------------------------------------------------------------
// Schedulers
// ---------------------------------------------------------------------------------------------

/// A discrete sampler over a fixed σ schedule.
pub trait Scheduler<B: Backend, const D: usize> {
    /// The model timestep of every step (length N).
    fn timesteps(&self) -> &[f32];
    /// The noise levels, length N + 1, ending at 0.
    fn sigmas(&self) -> &[f32];
    /// Advances `sample` by one step given the model's velocity at the current step.
    fn step(&mut self, velocity: Tensor<B, D>, sample: Tensor<B, D>) -> Tensor<B, D>;
    /// Index of the next step.
    fn step_index(&self) -> usize;
}

/// The largest timestep shift a sampler accepts (see [`SamplerConfig::validate`]).
pub const MAX_SHIFT: f64 = 100.0;

/// Which sampler to use, with its settings.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SamplerConfig {
    pub kind: SamplerKind,
    pub steps: usize,
    pub shift: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SamplerKind {
    Euler,
    Unipc,
}

impl std::str::FromStr for SamplerKind {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "euler" => Ok(SamplerKind::Euler),
            "unipc" => Ok(SamplerKind::Unipc),
            _ => Err(ConfigError::invalid(format!(
                "unknown sampler '{s}' (expected 'euler' or 'unipc')"
            ))),
        }
    }
}

impl SamplerConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.steps == 0 {
            return Err(ConfigError::invalid(
                "the number of sampling steps must be at least 1",
            ));
        }
        if self.steps > 1000 {
            return Err(ConfigError::invalid(format!(
                "{} sampling steps exceed the 1000 training timesteps",
                self.steps
            )));
        }
        if !(self.shift > 0.0 && self.shift.is_finite()) {
            return Err(ConfigError::invalid(format!(
                "sampler shift must be positive, got {}",
                self.shift
            )));
        }
        // Above ~1000 the f32 σ schedule has flat steps near σ = 1 (steps that do nothing; UniPC's
        // σ₀ − 1e-6 even rises); 100 leaves a wide margin and is far above practical shifts.
        if self.shift > MAX_SHIFT {
            return Err(ConfigError::invalid(format!(
                "sampler shift {} is above {MAX_SHIFT}: the σ schedule would have steps that do not move",
                self.shift
            )));
        }
        Ok(())
    }

    /// Builds the scheduler.
    pub fn build<B: Backend, const D: usize>(
        &self,
    ) -> Result<Box<dyn Scheduler<B, D>>, ConfigError> {
        self.validate()?;
        Ok(match self.kind {
            SamplerKind::Euler => Box::new(FlowMatchEuler::new(self.steps, self.shift)),
            SamplerKind::Unipc => Box::new(UniPc::new(self.steps, self.shift)),
        })
    }
}

/// diffusers' `FlowMatchEulerDiscreteScheduler` (num_train_timesteps 1000, static shift).
#[derive(Debug, Clone)]
pub struct FlowMatchEuler {
    timesteps: Vec<f32>,
    sigmas: Vec<f32>,
    index: usize,
}

impl FlowMatchEuler {
    pub fn new(steps: usize, shift: f64) -> Self {
        // sigma_min as upstream computes it at init, in f32: shift(1/1000).
        let s = 1.0f32 / 1000.0;
        let sigma_min = (shift as f32 * s / (1.0 + (shift as f32 - 1.0) * s)) as f64;
        let (t0, t1) = (1000.0f64, sigma_min * 1000.0);
        let sig: Vec<f64> = (0..steps)
            .map(|i| {
                let t = if steps == 1 {
                    t0
                } else {
                    t0 + (t1 - t0) * i as f64 / (steps - 1) as f64
                };
                shift_sigma(t / 1000.0, shift)
            })
            .collect();
        let mut sigmas: Vec<f32> = sig.iter().map(|&x| x as f32).collect();
        let timesteps = sigmas.iter().map(|&s| s * 1000.0).collect();
        sigmas.push(0.0);
        Self {
            timesteps,
            sigmas,
            index: 0,
        }
    }
}

impl<B: Backend, const D: usize> Scheduler<B, D> for FlowMatchEuler {
    fn timesteps(&self) -> &[f32] {
        &self.timesteps
    }
    fn sigmas(&self) -> &[f32] {
        &self.sigmas
    }
    fn step_index(&self) -> usize {
        self.index
    }
    fn step(&mut self, velocity: Tensor<B, D>, sample: Tensor<B, D>) -> Tensor<B, D> {
        let dt = self.sigmas[self.index + 1] - self.sigmas[self.index];
        self.index += 1;
        sample + velocity * dt
    }
}

/// diffusers' `UniPCMultistepScheduler` configured as Wan uses it: flow sigmas,
/// `prediction_type="flow_prediction"`, `predict_x0`, BH2, order 2, `lower_order_final`, corrector
/// on every step, final σ = 0.
#[derive(Debug, Clone)]
pub struct UniPc<B: Backend, const D: usize> {
    timesteps: Vec<f32>,
    sigmas: Vec<f32>,
    index: usize,
    /// Converted model outputs (x₀ predictions) of the last two steps, oldest first.
    model_outputs: Vec<Tensor<B, D>>,
    last_sample: Option<Tensor<B, D>>,
    this_order: usize,
    lower_order_nums: usize,
}

const UNIPC_ORDER: usize = 2;

impl<B: Backend, const D: usize> UniPc<B, D> {
    pub fn new(steps: usize, shift: f64) -> Self {
        let mut sig: Vec<f64> = (0..steps)
            .map(|i| {
                let s = 1.0 + (1.0 / 1000.0 - 1.0) * i as f64 / steps as f64;
                shift_sigma(s, shift)
            })
            .collect();
        if (sig[0] - 1.0).abs() < 1e-6 {
            sig[0] -= 1e-6;
        }
        // Upstream truncates to int64 timesteps.
        let timesteps = sig.iter().map(|&s| (s * 1000.0).trunc() as f32).collect();
        let mut sigmas: Vec<f32> = sig.iter().map(|&s| s as f32).collect();
        sigmas.push(0.0);
        Self {
            timesteps,
            sigmas,
            index: 0,
            model_outputs: Vec::new(),
            last_sample: None,
            this_order: 1,
            lower_order_nums: 0,
        }
    }

    /// λ = log(α) − log(σ) with α = 1 − σ (flow sigmas), from the f32 σ as upstream stores it.
    fn lambda(&self, i: usize) -> f64 {
        let s = self.sigmas[i] as f64;
        (1.0 - s).ln() - s.ln()
    }

    /// `(h_phi_1, B_h, b)` for `hh = −h` (predict_x0) and BH2, `b` of length `order`.
    fn coefficients(h: f64, order: usize) -> (f64, f64, Vec<f64>) {
        let hh = -h;
        let h_phi_1 = hh.exp_m1();
        let b_h = hh.exp_m1();
        let mut h_phi_k = h_phi_1 / hh - 1.0;
        let mut factorial = 1.0;
        let mut b = Vec::with_capacity(order);
        for i in 1..=order {
            b.push(h_phi_k * factorial / b_h);
            factorial *= (i + 1) as f64;
            h_phi_k = h_phi_k / hh - 1.0 / factorial;
        }
        (h_phi_1, b_h, b)
    }

    /// The BH2 predictor from step `index` to `index + 1`.
    fn predict(&self, sample: Tensor<B, D>, order: usize) -> Tensor<B, D> {
        let i = self.index;
        let (s_t, s_s0) = (self.sigmas[i + 1] as f64, self.sigmas[i] as f64);
        let alpha_t = 1.0 - s_t;
        let h = self.lambda(i + 1) - self.lambda(i);
        let (h_phi_1, b_h, _) = Self::coefficients(h, order);
        let m0 = self.model_outputs.last().expect("a model output").clone();
        let mut x_t = sample * (s_t / s_s0) - m0.clone() * (alpha_t * h_phi_1);
        if order == 2 {
            let m1 = self.model_outputs[self.model_outputs.len() - 2].clone();
            let rk = (self.lambda(i - 1) - self.lambda(i)) / h;
            let d1 = (m1 - m0) / rk;
            // diffusers uses rho_p = 0.5 for order 2.
            x_t = x_t - d1 * (alpha_t * b_h * 0.5);
        }
        x_t
    }

    /// The BH2 corrector of the sample at step `index` given the new model output there.
    fn correct(
        &self,
        model_t: Tensor<B, D>,
        last_sample: Tensor<B, D>,
        order: usize,
    ) -> Tensor<B, D> {
        let i = self.index;
        let (s_t, s_s0) = (self.sigmas[i] as f64, self.sigmas[i - 1] as f64);
        let alpha_t = 1.0 - s_t;
        let h = self.lambda(i) - self.lambda(i - 1);
        let (h_phi_1, b_h, b) = Self::coefficients(h, order);
        let m0 = self.model_outputs.last().expect("a model output").clone();
        let x_t_ = last_sample * (s_t / s_s0) - m0.clone() * (alpha_t * h_phi_1);
        let d1_t = model_t - m0.clone();
        if order == 1 {
            return x_t_ - d1_t * (alpha_t * b_h * 0.5);
        }
        // Order 2: solve R·ρ = b with R = [[1, 1], [rk, 1]].
        let m1 = self.model_outputs[self.model_outputs.len() - 2].clone();
        let rk = (self.lambda(i - 2) - self.lambda(i - 1)) / h;
        let det = 1.0 - rk;
        let rho0 = (b[0] - b[1]) / det;
        let rho1 = (b[1] - rk * b[0]) / det;
        let d1 = (m1 - m0) / rk;
        x_t_ - (d1 * rho0 + d1_t * rho1) * (alpha_t * b_h)
    }
}

impl<B: Backend, const D: usize> Scheduler<B, D> for UniPc<B, D> {
    fn timesteps(&self) -> &[f32] {
        &self.timesteps
    }
    fn sigmas(&self) -> &[f32] {
        &self.sigmas
    }
    fn step_index(&self) -> usize {
        self.index
    }
    fn step(&mut self, velocity: Tensor<B, D>, sample: Tensor<B, D>) -> Tensor<B, D> {
        // Flow prediction → x₀ prediction.
        let x0 = sample.clone() - velocity * self.sigmas[self.index];
        let sample = match self.last_sample.take() {
            Some(last) if self.index > 0 => self.correct(x0.clone(), last, self.this_order),
            _ => sample,
        };
        self.model_outputs.push(x0);
        if self.model_outputs.len() > UNIPC_ORDER {
            self.model_outputs.remove(0);
        }
        let n = self.timesteps.len();
        let order = UNIPC_ORDER.min(n - self.index);
        self.this_order = order.min(self.lower_order_nums + 1);
        self.last_sample = Some(sample.clone());
        let prev = self.predict(sample, self.this_order);
        if self.lower_order_nums < UNIPC_ORDER {
            self.lower_order_nums += 1;
        }
        self.index += 1;
        prev
    }
}

// ---------------------------------------------------------------------------------------------
// Denoisers, guidance and the loop
// ---------------------------------------------------------------------------------------------

/// A model that predicts the flow velocity of a noisy sample. `timestep` is the model timestep
/// (`1000·σ`, possibly truncated by the scheduler), `sigma` the exact noise level.
pub trait Denoiser<B: Backend, const D: usize> {
    fn velocity(&self, sample: Tensor<B, D>, timestep: f32, sigma: f32) -> Tensor<B, D>;
}

impl<B: Backend, const D: usize, F> Denoiser<B, D> for F
where
    F: Fn(Tensor<B, D>, f32, f32) -> Tensor<B, D>,
{
    fn velocity(&self, sample: Tensor<B, D>, timestep: f32, sigma: f32) -> Tensor<B, D> {
        self(sample, timestep, sigma)
    }
}

/// Classifier-free guidance: `uncond + g·(cond − uncond)`.
pub fn apply_cfg<B: Backend, const D: usize>(
    cond: Tensor<B, D>,
    uncond: Tensor<B, D>,
    guidance: f64,
) -> Tensor<B, D> {
    uncond.clone() + (cond - uncond) * guidance
}

/// When along the schedule classifier-free guidance applies, and how its result is rescaled. The
/// default (every step, no rescale) is plain CFG.
///
/// - **Interval** (Kynkäänniemi et al. 2024, "Applying guidance in a limited interval improves
///   sample and distribution quality in diffusion models"): guidance only while
///   `sigma_min ≤ σ ≤ sigma_max`; elsewhere the conditional prediction alone, which also skips the
///   unconditional forward passes of those steps. Strong guidance at low noise, where detail is
///   drawn, pushes samples off the data (semgen measured it on stage 2's latents: session 31 in
///   docs/results.md).
/// - **Rescale** (Lin et al. 2024, "Common diffusion noise schedules and sample steps are
///   flawed", §3.4; diffusers' `guidance_rescale`): the guided prediction is scaled per sample to
///   the conditional prediction's standard deviation, then mixed `φ·rescaled + (1 − φ)·guided`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GuidanceSchedule {
    /// Lowest σ at which guidance applies (0 = down to the end).
    pub sigma_min: f64,
    /// Highest σ at which guidance applies (1 = from the start).
    pub sigma_max: f64,
    /// The rescale mix `φ` in `[0, 1]` (0 = off).
    pub rescale: f64,
}

impl Default for GuidanceSchedule {
    fn default() -> Self {
        Self {
            sigma_min: 0.0,
            sigma_max: 1.0,
            rescale: 0.0,
        }
    }
}

impl GuidanceSchedule {
    /// Plain CFG (what a settings file without a schedule means).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// `0 ≤ sigma_min ≤ sigma_max ≤ 1` and `0 ≤ rescale ≤ 1`, all finite.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let Self {
            sigma_min,
            sigma_max,
            rescale,
        } = *self;
        if !(sigma_min.is_finite() && sigma_max.is_finite() && rescale.is_finite()) {
            return Err(ConfigError::invalid(format!(
                "guidance schedule values must be finite, got {self:?}"
            )));
        }
        if !(0.0 <= sigma_min && sigma_min <= sigma_max && sigma_max <= 1.0) {
            return Err(ConfigError::invalid(format!(
                "the guidance interval must satisfy 0 <= sigma_min <= sigma_max <= 1, got [{sigma_min}, {sigma_max}]"
            )));
        }
        if !(0.0..=1.0).contains(&rescale) {
            return Err(ConfigError::invalid(format!(
                "the guidance rescale must lie in [0, 1], got {rescale}"
            )));
        }
        Ok(())
    }

    /// Parses a σ interval written `LO,HI` (a command-line flag) and sets it, keeping the rescale;
    /// the result is validated.
    pub fn with_interval_str(mut self, text: &str) -> Result<Self, ConfigError> {
        let bad = || {
            ConfigError::invalid(format!(
                "a guidance interval is written LO,HI with 0 <= LO <= HI <= 1, got '{text}'"
            ))
        };
        let (lo, hi) = text.split_once(',').ok_or_else(bad)?;
        self.sigma_min = lo.trim().parse().map_err(|_| bad())?;
        self.sigma_max = hi.trim().parse().map_err(|_| bad())?;
        self.validate()?;
        Ok(self)
    }

    /// This schedule with the command-line overrides that are given: a σ interval written
    /// `LO,HI` ([`Self::with_interval_str`]) and a rescale `φ`; the result is validated.
    pub fn with_overrides(
        mut self,
        interval: Option<&str>,
        rescale: Option<f64>,
    ) -> Result<Self, ConfigError> {
        if let Some(i) = interval {
            self = self.with_interval_str(i)?;
        }
        if let Some(r) = rescale {
            self.rescale = r;
        }
        self.validate()?;
        Ok(self)
    }

    /// Whether guidance applies at noise level `sigma`.
    pub fn active(&self, sigma: f32) -> bool {
        let s = sigma as f64;
        self.sigma_min <= s && s <= self.sigma_max
    }

    /// `guided` rescaled towards the standard deviation of `cond`, per sample (dimension 0);
    /// `guided` itself when the rescale is 0.
    pub fn rescale<B: Backend, const D: usize>(
        &self,
        guided: Tensor<B, D>,
        cond: Tensor<B, D>,
    ) -> Tensor<B, D> {
        if self.rescale == 0.0 {
            return guided;
        }
        let b = guided.dims()[0];
        let per_sample_std = |x: Tensor<B, D>| -> Tensor<B, 2> {
            let x = x.reshape([b as i32, -1]);
            let mean = x.clone().mean_dim(1);
            (x - mean).powi_scalar(2).mean_dim(1).sqrt()
        };
        let ratio = per_sample_std(cond) / per_sample_std(guided.clone()).clamp_min(1e-12);
        let mut shape = [1usize; D];
        shape[0] = b;
        let ratio: Tensor<B, D> = ratio.reshape(shape);
        let rescaled = guided.clone() * ratio;
        rescaled * self.rescale + guided * (1.0 - self.rescale)
    }
}

/// What the loop tells the callback before each step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepInfo {
    pub step: usize,
    pub total: usize,
    pub timestep: f32,
    pub sigma: f32,
}

/// The callback's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Continue,
    Cancel,
}

/// The loop was stopped by its callback.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sampling cancelled at step {step} of {total}")]
pub struct Cancelled {
    pub step: usize,
    pub total: usize,
}

/// Runs the scheduler from `noise` to a sample. `callback` sees every step (after the update of
/// the previous one) with the current sample and may cancel.
pub fn sample<B: Backend, const D: usize>(
    denoiser: &dyn Denoiser<B, D>,
    scheduler: &mut dyn Scheduler<B, D>,
    noise: Tensor<B, D>,
    callback: &mut dyn FnMut(&StepInfo, &Tensor<B, D>) -> Control,
) -> Result<Tensor<B, D>, Cancelled> {
    let mut x = noise;
    let total = scheduler.timesteps().len();
    for step in scheduler.step_index()..total {
        let info = StepInfo {
            step,
            total,
            timestep: scheduler.timesteps()[step],
            sigma: scheduler.sigmas()[step],
        };
        if callback(&info, &x) == Control::Cancel {
            return Err(Cancelled { step, total });
        }
        let v = denoiser.velocity(x.clone(), info.timestep, info.sigma);
        x = scheduler.step(v, x);
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    type TB = NdArray;

    #[test]
    fn guidance_schedule_interval_and_validation() {
        let plain = GuidanceSchedule::default();
        assert!(plain.is_default());
        assert!(plain.active(1.0) && plain.active(0.0) && plain.active(0.5));
        let late = plain.with_interval_str("0.3, 1").unwrap();
        assert_eq!((late.sigma_min, late.sigma_max), (0.3, 1.0));
        assert!(late.active(0.3) && late.active(0.9) && !late.active(0.29));
        for bad in ["0.5", "a,1", "0.8,0.2", "-0.1,1", "0,1.5", "nan,1"] {
            assert!(plain.with_interval_str(bad).is_err(), "{bad}");
        }
        for rescale in [-0.1, 1.5, f64::NAN] {
            let g = GuidanceSchedule { rescale, ..plain };
            assert!(g.validate().is_err(), "{rescale}");
            assert!(
                plain.with_overrides(None, Some(rescale)).is_err(),
                "{rescale}"
            );
        }
        // Overrides: none keeps the schedule, each given one replaces its part.
        assert_eq!(plain.with_overrides(None, None).unwrap(), plain);
        let both = late.with_overrides(Some("0,0.7"), Some(0.5)).unwrap();
        assert_eq!(
            (both.sigma_min, both.sigma_max, both.rescale),
            (0.0, 0.7, 0.5)
        );
        assert_eq!(both.with_overrides(None, Some(0.2)).unwrap().sigma_max, 0.7);
        assert!(plain.with_overrides(Some("0.8,0.2"), None).is_err());
        // Settings files without the field, or with only some keys, read as plain CFG there.
        let g: GuidanceSchedule = serde_json::from_str(r#"{"sigma_min": 0.2}"#).unwrap();
        assert_eq!((g.sigma_min, g.sigma_max, g.rescale), (0.2, 1.0, 0.0));
        assert!(serde_json::from_str::<GuidanceSchedule>(r#"{"sigma": 0.2}"#).is_err());
    }

    #[test]
    fn guidance_rescale_matches_the_conditional_spread_per_sample() {
        let d = Default::default();
        // Two samples: the guided prediction is 3x / 0.5x the conditional one's spread (+ offsets).
        let cond =
            Tensor::<TB, 3>::from_floats([[[1.0, -1.0, 2.0, -2.0]], [[0.5, 0.0, -0.5, 1.0]]], &d);
        let guided =
            Tensor::<TB, 3>::from_floats([[[3.0, -3.0, 6.0, -6.0]], [[1.25, 1.0, 0.75, 1.5]]], &d);
        let std = |x: Tensor<TB, 3>| -> Vec<f32> {
            let x = x.reshape([2, 4]);
            let m = x.clone().mean_dim(1);
            (x - m)
                .powi_scalar(2)
                .mean_dim(1)
                .sqrt()
                .into_data()
                .to_vec()
                .unwrap()
        };
        let full = GuidanceSchedule {
            rescale: 1.0,
            ..Default::default()
        };
        let out = full.rescale(guided.clone(), cond.clone());
        for (a, b) in std(out.clone()).iter().zip(std(cond.clone())) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        // Rescaling scales, it does not recentre: sample 0 becomes cond itself.
        let o: Vec<f32> = out.narrow(0, 0, 1).into_data().to_vec().unwrap();
        assert_eq!(o, vec![1.0, -1.0, 2.0, -2.0]);
        // φ = 0 is the guided prediction itself; φ = 0.5 is halfway.
        let none = GuidanceSchedule::default().rescale(guided.clone(), cond.clone());
        assert_eq!(
            none.into_data().to_vec::<f32>().unwrap(),
            guided.clone().into_data().to_vec::<f32>().unwrap()
        );
        let half = GuidanceSchedule {
            rescale: 0.5,
            ..Default::default()
        }
        .rescale(guided.clone(), cond);
        let h: Vec<f32> = half.narrow(0, 0, 1).into_data().to_vec().unwrap();
        assert_eq!(h, vec![2.0, -2.0, 4.0, -4.0]);
    }

    #[test]
    fn euler_schedule_matches_notes() {
        let s = FlowMatchEuler::new(10, 5.0);
        let want = [
            1.0, 0.975_743, 0.946_273, 0.909_707, 0.863_132, 0.801_786, 0.717_317, 0.593_619,
            0.395_095, 0.024_414, 0.0,
        ];
        for (a, b) in <FlowMatchEuler as Scheduler<TB, 1>>::sigmas(&s)
            .iter()
            .zip(want)
        {
            assert!((a - b).abs() < 2e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn unipc_timesteps_are_truncated_ints() {
        let s = UniPc::<TB, 1>::new(10, 5.0);
        assert_eq!(
            s.timesteps(),
            &[999.0, 978.0, 952.0, 921.0, 882.0, 833.0, 769.0, 682.0, 556.0, 359.0]
        );
    }

    #[test]
    fn zero_steps_is_an_error() {
        let c = SamplerConfig {
            kind: SamplerKind::Euler,
            steps: 0,
            shift: 5.0,
        };
        assert!(c.build::<TB, 1>().is_err());
    }

    #[test]
    fn callback_can_cancel() {
        let d = Default::default();
        let mut s = FlowMatchEuler::new(4, 1.0);
        let den = |x: Tensor<TB, 1>, _t: f32, _s: f32| x;
        let r = sample::<TB, 1>(&den, &mut s, Tensor::ones([3], &d), &mut |i: &StepInfo,
                                                                           _: &Tensor<
            TB,
            1,
        >| {
            if i.step == 2 {
                Control::Cancel
            } else {
                Control::Continue
            }
        });
        assert_eq!(r.unwrap_err(), Cancelled { step: 2, total: 4 });
    }
}
