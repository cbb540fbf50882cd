//! A learned attribute probe for token grids: what an object's colour, shape, size, motion or
//! background can be read from a grid of semantic tokens (`z_sem`), wherever the object is.
//!
//! The linear probes of [`crate::train`] read a whole grid flattened, so a separate weight
//! serves every cell: an attribute that sits in whichever token holds the object (and the object
//! is anywhere) is not linearly separable that way, and those probes understate what a grid
//! carries. This probe is the smallest reader that is invariant to where the object is: each
//! token (standardised, with its normalised `(t, y, x)` coordinates appended) goes through a
//! two-layer MLP shared by all tokens; each time slice is pooled twice, by a learned attention
//! over its cells and by their mean; the pooled slices, in time order, feed one linear
//! classifier. Coordinates pass through the shared MLP, so motion (where the object is in each
//! slice) is readable by the classifier. Trained by full-batch AdamW on softmax
//! cross-entropy, from weights drawn by its own seeded generator: the same data and seed give
//! the same probe on the same backend.
//!
//! ```
//! use burn::backend::{Autodiff, Flex};
//! use semgen_encoder::probe::{GridDims, SetProbeConfig};
//!
//! // One "object" token per grid, at a random cell, its first channel = the class.
//! let dims = GridDims { d: 2, t: 1, h: 2, w: 2 };
//! let (mut x, mut y) = (Vec::new(), Vec::new());
//! for i in 0..64usize {
//!     let (class, cell) = (i % 2, (i * 7 + i / 2) % 4);
//!     let mut grid = vec![0.0f32; dims.values()];
//!     grid[cell] = if class == 0 { -1.0 } else { 1.0 }; // channel 0
//!     grid[4 + cell] = 1.0; // channel 1 marks the object
//!     x.extend(grid);
//!     y.push(class);
//! }
//! let config = SetProbeConfig { steps: 60, ..SetProbeConfig::default() };
//! let probe = config.fit::<Autodiff<Flex>>(dims, &x, &y, 2, &Default::default()).unwrap();
//! assert!(probe.accuracy(&x, &y).unwrap() > 0.9);
//! ```

use burn::module::{AutodiffModule, Param};
use burn::nn::Linear;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::activation::{gelu, log_softmax, softmax};
use burn::tensor::backend::AutodiffBackend;
use rand::{Rng, SeedableRng};

/// Why a probe could not be fitted or applied.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProbeError {
    #[error("the grid dims {0:?} have a zero axis")]
    EmptyGrid(GridDims),
    #[error("{values} values do not make whole grids of {per} ({dims:?})")]
    Ragged {
        values: usize,
        per: usize,
        dims: GridDims,
    },
    #[error("{grids} grids but {labels} labels")]
    Labels { grids: usize, labels: usize },
    #[error("label {label} is not below the class count {classes}")]
    Class { label: usize, classes: usize },
    #[error("no grids to fit on")]
    NoData,
    #[error("the probe has {hidden} hidden units and {steps} steps; both must be positive")]
    Config { hidden: usize, steps: usize },
}

/// The shape of one grid: `d` channels over `t × h × w` cells, stored channel-major as
/// `[d, t, h, w]` (the layout of one `z_sem` item).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GridDims {
    pub d: usize,
    pub t: usize,
    pub h: usize,
    pub w: usize,
}

impl GridDims {
    /// Values in one grid.
    pub fn values(&self) -> usize {
        self.d * self.t * self.h * self.w
    }

    fn cells(&self) -> usize {
        self.h * self.w
    }

    /// How many grids `len` values hold.
    fn count(&self, len: usize) -> Result<usize, ProbeError> {
        let per = self.values();
        if per == 0 {
            return Err(ProbeError::EmptyGrid(*self));
        }
        if !len.is_multiple_of(per) {
            return Err(ProbeError::Ragged {
                values: len,
                per,
                dims: *self,
            });
        }
        Ok(len / per)
    }
}

/// How a [`SetProbe`] is trained. The defaults are the ones `xtask probe-semantic` reports.
#[derive(Debug, Clone, PartialEq)]
pub struct SetProbeConfig {
    /// Width of the shared token MLP.
    pub hidden: usize,
    /// Full-batch AdamW steps.
    pub steps: usize,
    pub lr: f64,
    pub weight_decay: f32,
    /// Seed of the initial weights.
    pub seed: u64,
}

impl Default for SetProbeConfig {
    fn default() -> Self {
        Self {
            hidden: 32,
            steps: 300,
            lr: 3e-3,
            weight_decay: 1e-2,
            seed: 0,
        }
    }
}

/// The probe's layers (see the module docs).
#[derive(Module, Debug)]
pub struct SetProbeNet<B: Backend> {
    token_in: Linear<B>,
    token_out: Linear<B>,
    score: Linear<B>,
    head: Linear<B>,
}

impl<B: Backend> SetProbeNet<B> {
    /// `tokens` `[n, t, cells, d + 3]` → logits `[n, classes]`.
    fn forward(&self, tokens: Tensor<B, 4>) -> Tensor<B, 2> {
        let [n, t, cells, f] = tokens.dims();
        // The token MLP on one `[n·t·cells, f]` matrix: a `Linear` on the 4-D tensor is a
        // batched matmul that broadcasts its weight to every one of the n·t batches, copying
        // it each time (on Flex, 1.6 GB per step for 4096 grids of one 776-value token).
        let flat = tokens.reshape([n * t * cells, f]);
        let h = gelu(self.token_out.forward(gelu(self.token_in.forward(flat))));
        let scores = self.score.forward(h.clone()).reshape([n, t, cells, 1]);
        let h = h.reshape([n, t, cells, self.token_out.weight.dims()[1]]);
        let weights = softmax(scores, 2); // over the cells of a slice
        let attended = (h.clone() * weights).sum_dim(2); // [n, t, 1, hidden]
        let mean = h.mean_dim(2);
        let pooled = Tensor::cat(vec![attended, mean], 3); // [n, t, 1, 2·hidden]
        let width = pooled.dims()[3];
        self.head.forward(pooled.reshape([n, t * width]))
    }
}

/// A fitted probe (on an inference backend), with the per-channel standardisation of the grids
/// it was fitted on.
#[derive(Debug)]
pub struct SetProbe<B: Backend> {
    net: SetProbeNet<B>,
    dims: GridDims,
    mean: Vec<f32>,
    std: Vec<f32>,
    device: B::Device,
}

/// A `[fan_in → fan_out]` layer drawn from `U(-1/√fan_in, 1/√fan_in)` (PyTorch's and Burn's
/// default range) by `rng`, so the probe's start does not depend on the backend's global seed.
fn linear<B: Backend>(
    fan_in: usize,
    fan_out: usize,
    rng: &mut rand::rngs::StdRng,
    device: &B::Device,
) -> Linear<B> {
    let bound = 1.0 / (fan_in as f32).sqrt();
    let mut draw =
        |len: usize| -> Vec<f32> { (0..len).map(|_| rng.random_range(-bound..bound)).collect() };
    let weight = draw(fan_in * fan_out);
    let bias = draw(fan_out);
    Linear {
        weight: Param::from_tensor(Tensor::from_data(
            TensorData::new(weight, [fan_in, fan_out]),
            device,
        )),
        bias: Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(bias, [fan_out]),
            device,
        ))),
    }
}

/// Per-channel mean and standard deviation over every cell of every grid.
fn channel_stats(dims: GridDims, x: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let per = dims.values();
    let cells = dims.t * dims.cells();
    let (mut mean, mut std) = (vec![0.0f32; dims.d], vec![1.0f32; dims.d]);
    for c in 0..dims.d {
        let values = x
            .chunks(per)
            .flat_map(|g| g[c * cells..(c + 1) * cells].iter().map(|&v| v as f64));
        let (mut n, mut sum, mut sq) = (0.0f64, 0.0f64, 0.0f64);
        for v in values {
            n += 1.0;
            sum += v;
            sq += v * v;
        }
        let m = sum / n.max(1.0);
        mean[c] = m as f32;
        std[c] = ((sq / n.max(1.0) - m * m).max(0.0).sqrt() as f32).max(1e-6);
    }
    (mean, std)
}

/// Grids `[n, d, t, h, w]` → standardised tokens with coordinates, `[n, t, h·w, d + 3]`.
fn tokens<B: Backend>(
    dims: GridDims,
    x: &[f32],
    (mean, std): (&[f32], &[f32]),
    device: &B::Device,
) -> Tensor<B, 4> {
    let GridDims { d, t, h, w } = dims;
    let n = x.len() / dims.values();
    let coord = |i: usize, len: usize| {
        if len > 1 {
            2.0 * i as f32 / (len - 1) as f32 - 1.0
        } else {
            0.0
        }
    };
    let f = d + 3;
    let mut out = Vec::with_capacity(n * t * h * w * f);
    for grid in x.chunks(dims.values()) {
        for ti in 0..t {
            for yi in 0..h {
                for xi in 0..w {
                    let cell = (ti * h + yi) * w + xi;
                    for c in 0..d {
                        out.push((grid[c * t * h * w + cell] - mean[c]) / std[c]);
                    }
                    out.extend([coord(ti, t), coord(yi, h), coord(xi, w)]);
                }
            }
        }
    }
    Tensor::from_data(TensorData::new(out, [n, t, h * w, f]), device)
}

impl SetProbeConfig {
    /// Fits a probe on grids `x` (`[n, d, t, h, w]` flattened) with labels `y` in
    /// `0..classes`, on an autodiff backend; the result runs on its inner backend.
    pub fn fit<B: AutodiffBackend>(
        &self,
        dims: GridDims,
        x: &[f32],
        y: &[usize],
        classes: usize,
        device: &B::Device,
    ) -> Result<SetProbe<B::InnerBackend>, ProbeError> {
        if self.hidden == 0 || self.steps == 0 {
            return Err(ProbeError::Config {
                hidden: self.hidden,
                steps: self.steps,
            });
        }
        let n = dims.count(x.len())?;
        if n == 0 {
            return Err(ProbeError::NoData);
        }
        if y.len() != n {
            return Err(ProbeError::Labels {
                grids: n,
                labels: y.len(),
            });
        }
        if let Some(&label) = y.iter().find(|&&l| l >= classes) {
            return Err(ProbeError::Class { label, classes });
        }
        let (mean, std) = channel_stats(dims, x);
        let input = tokens::<B>(dims, x, (&mean, &std), device);
        let targets = Tensor::<B, 1, Int>::from_data(
            TensorData::new(y.iter().map(|&l| l as i64).collect::<Vec<_>>(), [n]),
            device,
        );
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.seed);
        let hid = self.hidden;
        let mut net = SetProbeNet {
            token_in: linear(dims.d + 3, hid, &mut rng, device),
            token_out: linear(hid, hid, &mut rng, device),
            score: linear(hid, 1, &mut rng, device),
            head: linear(dims.t * 2 * hid, classes, &mut rng, device),
        };
        let mut optim = AdamWConfig::new()
            .with_weight_decay(self.weight_decay)
            .init();
        let target = targets.one_hot::<2>(classes).float();
        for _ in 0..self.steps {
            let logits = net.forward(input.clone());
            let loss = -(log_softmax(logits, 1) * target.clone()).sum_dim(1).mean();
            let grads = GradientsParams::from_grads(loss.backward(), &net);
            net = optim.step(self.lr, net, grads);
        }
        Ok(SetProbe {
            net: net.valid(),
            dims,
            mean,
            std,
            device: device.clone(),
        })
    }
}

impl<B: Backend> SetProbe<B> {
    /// The predicted class of each grid in `x`.
    pub fn predict(&self, x: &[f32]) -> Result<Vec<usize>, ProbeError> {
        let n = self.dims.count(x.len())?;
        let mut out = Vec::with_capacity(n);
        // Chunks bound the activations' memory for large test sets.
        for part in x.chunks(self.dims.values() * 1024) {
            let input = tokens::<B>(self.dims, part, (&self.mean, &self.std), &self.device);
            let classes = self.net.forward(input).argmax(1).into_data();
            out.extend(
                classes
                    .convert::<i64>()
                    .to_vec::<i64>()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|c| c as usize),
            );
        }
        Ok(out)
    }

    /// The share of grids in `x` whose predicted class is their label in `y`.
    pub fn accuracy(&self, x: &[f32], y: &[usize]) -> Result<f64, ProbeError> {
        let predicted = self.predict(x)?;
        if predicted.len() != y.len() {
            return Err(ProbeError::Labels {
                grids: predicted.len(),
                labels: y.len(),
            });
        }
        if y.is_empty() {
            return Ok(0.0);
        }
        let hits = predicted.iter().zip(y).filter(|(p, l)| p == l).count();
        Ok(hits as f64 / y.len() as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};

    type AB = Autodiff<Flex>;

    /// `n` grids of `d = 4` channels on `t × 4 × 4` cells: background noise, one object whose
    /// channels 0..2 are its class's code, channel 3 marks it; it sits at a random cell of slice
    /// 0 and, when `moving`, steps one cell per slice in the direction of its class (right,
    /// left, down, up) instead.
    fn grids(n: usize, t: usize, moving: bool, seed: u64) -> (GridDims, Vec<f32>, Vec<usize>) {
        let dims = GridDims {
            d: 4,
            t,
            h: 4,
            w: 4,
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let codes = [
            [1.0, 0.0, 0.0],
            [0.0, 1.0, 0.0],
            [0.0, 0.0, 1.0],
            [1.0, 1.0, 0.0],
        ];
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for _ in 0..n {
            let class = rng.random_range(0..4usize);
            let mut grid: Vec<f32> = (0..dims.values())
                .map(|_| rng.random_range(-0.1..0.1f32))
                .collect();
            let (mut r, mut c) = (rng.random_range(1..3i32), rng.random_range(1..3i32));
            for ti in 0..t {
                let cell = (ti * 16) + (r * 4 + c) as usize;
                let code = if moving {
                    [1.0, 1.0, 1.0]
                } else {
                    codes[class]
                };
                for (ch, v) in code.iter().enumerate() {
                    grid[ch * t * 16 + cell] += v;
                }
                grid[3 * t * 16 + cell] += 2.0;
                if moving {
                    let (dr, dc) = [(0, 1), (0, -1), (1, 0), (-1, 0)][class];
                    r = (r + dr).clamp(0, 3);
                    c = (c + dc).clamp(0, 3);
                }
            }
            x.extend(grid);
            y.push(class);
        }
        (dims, x, y)
    }

    /// Fewer steps than the default keep the test build's fits to a few seconds.
    fn quick() -> SetProbeConfig {
        SetProbeConfig {
            steps: 120,
            lr: 1e-2,
            ..SetProbeConfig::default()
        }
    }

    /// Held-out accuracy of a quick probe fitted on 256 grids of [`grids`], tested on 128 others.
    fn held_out(t: usize, moving: bool, seed: u64) -> f64 {
        let (dims, fx, fy) = grids(256, t, moving, seed);
        let (_, vx, vy) = grids(128, t, moving, seed + 1);
        quick()
            .fit::<AB>(dims, &fx, &fy, 4, &Default::default())
            .unwrap()
            .accuracy(&vx, &vy)
            .unwrap()
    }

    #[test]
    fn reads_an_attribute_wherever_the_object_is() {
        let acc = held_out(1, false, 1);
        assert!(acc > 0.95, "set probe {acc}");
    }

    #[test]
    fn reads_the_direction_of_motion_across_slices() {
        let acc = held_out(3, true, 3);
        assert!(acc > 0.9, "set probe {acc}");
    }

    #[test]
    fn the_same_data_and_seed_give_the_same_probe() {
        let (dims, fx, fy) = grids(64, 1, false, 5);
        let config = SetProbeConfig {
            steps: 20,
            ..SetProbeConfig::default()
        };
        let fit = || {
            config
                .fit::<AB>(dims, &fx, &fy, 4, &Default::default())
                .unwrap()
        };
        let (a, b) = (fit(), fit());
        let logits = |p: &SetProbe<Flex>| {
            let input = tokens::<Flex>(dims, &fx, (&p.mean, &p.std), &Default::default());
            p.net.forward(input).into_data().to_vec::<f32>().unwrap()
        };
        assert_eq!(logits(&a), logits(&b));
        let other = SetProbeConfig {
            seed: 1,
            ..config.clone()
        }
        .fit::<AB>(dims, &fx, &fy, 4, &Default::default())
        .unwrap();
        assert_ne!(logits(&a), logits(&other));
    }

    #[test]
    fn bad_input_is_a_typed_error() {
        let (dims, fx, fy) = grids(8, 1, false, 6);
        let cfg = SetProbeConfig::default();
        let d = Default::default();
        assert!(matches!(
            cfg.fit::<AB>(dims, &fx[1..], &fy, 4, &d),
            Err(ProbeError::Ragged { .. })
        ));
        assert_eq!(
            cfg.fit::<AB>(dims, &fx, &fy[1..], 4, &d).unwrap_err(),
            ProbeError::Labels {
                grids: 8,
                labels: 7
            }
        );
        assert!(matches!(
            cfg.fit::<AB>(dims, &fx, &fy, 2, &d),
            Err(ProbeError::Class { classes: 2, .. })
        ));
        assert_eq!(
            cfg.fit::<AB>(dims, &[], &[], 4, &d).unwrap_err(),
            ProbeError::NoData
        );
        let zero = GridDims { d: 0, ..dims };
        assert_eq!(
            cfg.fit::<AB>(zero, &fx, &fy, 4, &d).unwrap_err(),
            ProbeError::EmptyGrid(zero)
        );
        let none = SetProbeConfig { steps: 0, ..cfg };
        assert!(matches!(
            none.fit::<AB>(dims, &fx, &fy, 4, &d),
            Err(ProbeError::Config { .. })
        ));
        let probe = SetProbeConfig {
            steps: 1,
            ..SetProbeConfig::default()
        }
        .fit::<AB>(dims, &fx, &fy, 4, &d)
        .unwrap();
        assert!(matches!(
            probe.accuracy(&fx, &fy[1..]),
            Err(ProbeError::Labels { .. })
        ));
    }
}
