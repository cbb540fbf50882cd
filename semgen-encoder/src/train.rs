//! Reusable pieces of the Shapes pretraining of the semantic encoder (issue 5): no pretrained
//! video encoder can be downloaded, so the tower is trained as the paper's was, by
//! vision–language alignment — a symmetric contrastive (InfoNCE) objective between the pooled
//! video tokens and the pooled caption tokens — and judged by caption retrieval and linear probes.
//! Optionally (the "per-attribute heads") a linear head on the pooled video features
//! predicts which attribute values a clip holds (multi-hot, binary cross-entropy), so attributes
//! that captions of a batch rarely tell apart still shape the features.
//!
//! Everything here is backend-generic and data-source-agnostic: clips arrive as tensors, labels as
//! integers. The data loop (Shapes clips from `semgen-data`) belongs to the command that drives it.

use crate::qwen_vision::{QwenVision, QwenVisionConfig};
use crate::umt5::{Umt5Config, Umt5Encoder};
use crate::EncodeError;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use semgen_core::train::grouped_cross_entropy_sum;
use semgen_core::ConfigError;

/// Frame indices of a sparse sampling with `stride` (0, s, 2s, …, up to `frames − 1`). The
/// paper samples 15:1 at 24 fps; Shapes clips are 17 frames at 8 fps, so a stride of 4 keeps 5
/// frames (3 temporal patches after padding) and a "slowly" object still moves H/32 px between
/// kept frames — a quarter of a 64-px frame over the clip, visible to 8-px tokens.
pub fn sparse_frames(frames: usize, stride: usize) -> Vec<usize> {
    (0..frames).step_by(stride.max(1)).collect()
}

/// Mean over every token of a `[B, d, t, h, w]` grid: `[B, d]`.
pub fn pool_grid<B: Backend>(features: Tensor<B, 5>) -> Tensor<B, 2> {
    let [b, d, t, h, w] = features.dims();
    features
        .reshape([b, d, t * h * w])
        .mean_dim(2)
        .reshape([b, d])
}

/// Mean over the real tokens of `[B, L, d]` text states (`lengths[i]` real tokens in row `i`).
pub fn pool_text<B: Backend>(hidden: Tensor<B, 3>, lengths: &[usize]) -> Tensor<B, 2> {
    let [b, l, d] = hidden.dims();
    let device = hidden.device();
    let weights: Vec<f32> = lengths
        .iter()
        .flat_map(|&n| (0..l).map(move |i| if i < n { 1.0 / n.max(1) as f32 } else { 0.0 }))
        .collect();
    let w = Tensor::<B, 2>::from_data(TensorData::new(weights, [b, l]), &device).reshape([b, l, 1]);
    (hidden * w).sum_dim(1).reshape([b, d])
}

/// Rows scaled to unit L2 norm.
pub fn l2_normalize<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let n = x.clone().square().sum_dim(1).sqrt().clamp_min(1e-8);
    x / n
}

/// Symmetric InfoNCE (CLIP's loss) between matched rows of `video` and `text` `[B, k]`: cosine
/// similarities over `temperature`, cross-entropy towards the diagonal in both directions.
pub fn info_nce<B: Backend>(
    video: Tensor<B, 2>,
    text: Tensor<B, 2>,
    temperature: f64,
) -> Tensor<B, 1> {
    let [b, _] = video.dims();
    let logits = l2_normalize(video).matmul(l2_normalize(text).transpose()) / temperature;
    let eye = Tensor::<B, 2>::eye(b, &logits.device());
    let v2t = -(log_softmax(logits.clone(), 1) * eye.clone()).sum() / b as f64;
    let t2v = -(log_softmax(logits.transpose(), 1) * eye).sum() / b as f64;
    (v2t + t2v) / 2.0
}

/// Mean binary cross-entropy of `logits` against 0/1 `targets` of the same shape, in the stable
/// form `max(x, 0) − x·y + ln(1 + e^−|x|)` (PyTorch's `binary_cross_entropy_with_logits`).
pub fn bce_with_logits<B: Backend>(logits: Tensor<B, 2>, targets: Tensor<B, 2>) -> Tensor<B, 1> {
    let soft = logits.clone().abs().neg().exp().log1p();
    (logits.clone().clamp_min(0.0) - logits * targets + soft).mean()
}

/// Fraction of videos whose most similar caption (cosine, among all rows of `text`) is their own.
/// `video` and `text` are host matrices of `n` rows of width `k`, row-major.
pub fn retrieval_top1(video: &[f32], text: &[f32], k: usize) -> f64 {
    let n = video.len() / k.max(1);
    if n == 0 {
        return 0.0;
    }
    let norm = |r: &[f32]| r.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-8);
    let hits = (0..n)
        .filter(|&i| {
            let v = &video[i * k..(i + 1) * k];
            let sim = |j: usize| {
                let t = &text[j * k..(j + 1) * k];
                v.iter().zip(t).map(|(a, b)| a * b).sum::<f32>() / norm(t)
            };
            let best = (0..n)
                .max_by(|&a, &b| sim(a).total_cmp(&sim(b)))
                .unwrap_or(0);
            best == i
        })
        .count();
    hits as f64 / n as f64
}

/// A linear probe fitted in closed form: ridge regression of one-hot labels on standardised
/// features (with a bias column), prediction by arg-max. Returns the accuracy on `(test_x,
/// test_y)`. Features are row-major `[n, k]`; labels are in `0..classes`.
pub fn linear_probe_accuracy(
    train_x: &[f32],
    train_y: &[usize],
    test_x: &[f32],
    test_y: &[usize],
    k: usize,
    classes: usize,
    ridge: f64,
) -> f64 {
    let n = train_y.len();
    if n == 0 || test_y.is_empty() || classes == 0 {
        return 0.0;
    }
    // Standardise with training statistics so one ridge weight suits every feature.
    let row = standardiser(train_x, n, k);
    let kk = k + 1;
    let mut a = vec![0.0f64; kk * kk];
    let mut rhs = vec![0.0f64; kk * classes];
    for i in 0..n {
        let r = row(train_x, i);
        for p in 0..kk {
            for q in 0..kk {
                a[p * kk + q] += r[p] * r[q];
            }
            rhs[p * classes + train_y[i].min(classes - 1)] += r[p];
        }
    }
    for p in 0..k {
        a[p * kk + p] += ridge;
    }
    let w = solve(&mut a, &mut rhs, kk, classes);
    accuracy(&row, test_x, test_y, &w, classes)
}

/// Arg-max accuracy on `(x, y)` of the linear classifier `w` `[k + 1, classes]` over rows
/// standardised by `row`.
fn accuracy(
    row: &impl Fn(&[f32], usize) -> Vec<f64>,
    x: &[f32],
    y: &[usize],
    w: &[f64],
    classes: usize,
) -> f64 {
    let kk = w.len() / classes;
    let correct = y
        .iter()
        .enumerate()
        .filter(|&(i, &y)| {
            let r = row(x, i);
            let score = |c: usize| (0..kk).map(|p| r[p] * w[p * classes + c]).sum::<f64>();
            (0..classes).max_by(|&a, &b| score(a).total_cmp(&score(b))) == Some(y)
        })
        .count();
    correct as f64 / y.len() as f64
}

/// Standardisation with the statistics of `train_x` (`[n, k]`): a function giving row `i` of
/// any `[·, k]` matrix standardised, with a trailing bias 1.
fn standardiser(train_x: &[f32], n: usize, k: usize) -> impl Fn(&[f32], usize) -> Vec<f64> {
    let mean: Vec<f64> = (0..k)
        .map(|j| (0..n).map(|i| train_x[i * k + j] as f64).sum::<f64>() / n as f64)
        .collect();
    let std: Vec<f64> = (0..k)
        .map(|j| {
            let v = (0..n)
                .map(|i| (train_x[i * k + j] as f64 - mean[j]).powi(2))
                .sum::<f64>()
                / n as f64;
            v.sqrt().max(1e-6)
        })
        .collect();
    move |x: &[f32], i: usize| {
        let mut r: Vec<f64> = (0..k)
            .map(|j| (x[i * k + j] as f64 - mean[j]) / std[j])
            .collect();
        r.push(1.0);
        r
    }
}

/// A linear probe trained as multinomial logistic regression, the usual linear probe of
/// representation learning (CLIP's, by L-BFGS): softmax cross-entropy plus `l2`·‖W‖²/2 (bias
/// free) on standardised features, minimised by Nesterov-accelerated full-batch gradient
/// descent with the step 1/L of the loss's smoothness bound. Deterministic (no sampling).
/// Unlike the least-squares fit of [`linear_probe_accuracy`] it is not pulled by points far on
/// the right side of the boundary, so classes that are linearly separable but not by a
/// regression of one-hot targets are found. Same arguments and result.
pub fn logistic_probe_accuracy(
    train_x: &[f32],
    train_y: &[usize],
    test_x: &[f32],
    test_y: &[usize],
    k: usize,
    classes: usize,
    l2: f64,
) -> f64 {
    let n = train_y.len();
    if n == 0 || test_y.is_empty() || classes == 0 {
        return 0.0;
    }
    let row = standardiser(train_x, n, k);
    let kk = k + 1;
    let x: Vec<f64> = (0..n).flat_map(|i| row(train_x, i)).collect();
    // Smoothness of the mean softmax cross-entropy: at most λ_max(XᵀX/n)/2 (power iteration).
    let mut v = vec![1.0f64; kk];
    let mut lambda = 0.0;
    for _ in 0..50 {
        let mut w = vec![0.0f64; kk];
        for i in 0..n {
            let xi = &x[i * kk..(i + 1) * kk];
            let d: f64 = xi.iter().zip(&v).map(|(a, b)| a * b).sum();
            for (wp, a) in w.iter_mut().zip(xi) {
                *wp += d * a / n as f64;
            }
        }
        lambda = w.iter().map(|a| a * a).sum::<f64>().sqrt();
        if lambda < 1e-12 {
            break;
        }
        v = w.iter().map(|a| a / lambda).collect();
    }
    let step = 1.0 / (lambda / 2.0 + l2).max(1e-9);
    let grad = |w: &[f64]| -> Vec<f64> {
        let mut g = vec![0.0f64; kk * classes];
        let mut p = vec![0.0f64; classes];
        for i in 0..n {
            let xi = &x[i * kk..(i + 1) * kk];
            for (c, pc) in p.iter_mut().enumerate() {
                *pc = (0..kk).map(|q| xi[q] * w[q * classes + c]).sum();
            }
            let m = p.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = p.iter().map(|s| (s - m).exp()).sum();
            for (c, pc) in p.iter_mut().enumerate() {
                *pc = (*pc - m).exp() / z - f64::from(u8::from(train_y[i].min(classes - 1) == c));
            }
            for q in 0..kk {
                for c in 0..classes {
                    g[q * classes + c] += xi[q] * p[c] / n as f64;
                }
            }
        }
        for q in 0..k {
            for c in 0..classes {
                g[q * classes + c] += l2 * w[q * classes + c];
            }
        }
        g
    };
    let mut w = vec![0.0f64; kk * classes];
    let mut prev = w.clone();
    for t in 0..1000 {
        // Nesterov: gradient at the extrapolated point.
        let beta = t as f64 / (t as f64 + 3.0);
        let y: Vec<f64> = w
            .iter()
            .zip(&prev)
            .map(|(a, b)| a + beta * (a - b))
            .collect();
        let g = grad(&y);
        prev = w;
        w = y.iter().zip(&g).map(|(a, b)| a - step * b).collect();
    }
    accuracy(&row, test_x, test_y, &w, classes)
}

/// Solves `A·X = B` (A `[n, n]` symmetric positive definite after the ridge, B `[n, m]`) by
/// Gaussian elimination with partial pivoting; returns X.
fn solve(a: &mut [f64], b: &mut [f64], n: usize, m: usize) -> Vec<f64> {
    for col in 0..n {
        let piv = (col..n)
            .max_by(|&x, &y| a[x * n + col].abs().total_cmp(&a[y * n + col].abs()))
            .unwrap_or(col);
        if piv != col {
            for j in 0..n {
                a.swap(col * n + j, piv * n + j);
            }
            for j in 0..m {
                b.swap(col * m + j, piv * m + j);
            }
        }
        let d = a[col * n + col];
        if d.abs() < 1e-12 {
            continue;
        }
        for r in 0..n {
            if r == col {
                continue;
            }
            let f = a[r * n + col] / d;
            if f == 0.0 {
                continue;
            }
            for j in col..n {
                a[r * n + j] -= f * a[col * n + j];
            }
            for j in 0..m {
                b[r * m + j] -= f * b[col * m + j];
            }
        }
    }
    (0..n * m)
        .map(|i| {
            let d = a[(i / m) * n + i / m];
            if d.abs() < 1e-12 {
                0.0
            } else {
                b[i] / d
            }
        })
        .collect()
}

/// Sizes of the contrastive model.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ContrastiveConfig {
    pub vision: QwenVisionConfig,
    pub text: Umt5Config,
    /// Width of the shared embedding space.
    pub embed_dim: usize,
    pub temperature: f64,
    /// Outputs of the attribute head on the pooled video features (one per attribute value,
    /// multi-hot targets); 0 = no head, contrastive alone.
    #[serde(default)]
    pub label_dims: usize,
}

impl ContrastiveConfig {
    /// The Shapes setting: [`QwenVisionConfig::shapes`], [`Umt5Config::shapes`], 64-d space,
    /// temperature 0.07 (CLIP's initial value).
    pub fn shapes() -> Self {
        Self {
            vision: QwenVisionConfig::shapes(),
            text: Umt5Config::shapes(),
            embed_dim: 64,
            temperature: 0.07,
            label_dims: 0,
        }
    }

    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<ContrastiveModel<B>, ConfigError> {
        if self.embed_dim == 0 || self.temperature.is_nan() || self.temperature <= 0.0 {
            return Err(ConfigError::invalid(
                "embed_dim and temperature must be positive",
            ));
        }
        Ok(ContrastiveModel {
            vision: self.vision.init(device)?,
            text: self.text.init(device)?,
            video_proj: LinearConfig::new(self.vision.out_hidden_size, self.embed_dim).init(device),
            text_proj: LinearConfig::new(self.text.d_model, self.embed_dim).init(device),
            label_head: (self.label_dims > 0).then(|| {
                LinearConfig::new(self.vision.out_hidden_size, self.label_dims).init(device)
            }),
            temperature: self.temperature,
        })
    }
}

/// The semantic encoder and a text encoder with projection heads into one space.
#[derive(Module, Debug)]
pub struct ContrastiveModel<B: Backend> {
    pub vision: QwenVision<B>,
    pub text: Umt5Encoder<B>,
    pub video_proj: Linear<B>,
    pub text_proj: Linear<B>,
    /// Attribute logits from pooled video features (`label_dims` > 0).
    pub label_head: Option<Linear<B>>,
    #[module(skip)]
    pub temperature: f64,
}

impl<B: Backend> ContrastiveModel<B> {
    /// Pooled, projected video embeddings of clips `[B, C, T, H, W]` in [-1, 1].
    pub fn embed_video(&self, clips: Tensor<B, 5>) -> Result<Tensor<B, 2>, EncodeError> {
        let grid = self.vision.encode_clip(clips)?;
        Ok(self.video_proj.forward(pool_grid(grid.features)))
    }

    /// Pooled, projected caption embeddings from padded ids `[B, L]` and real lengths.
    pub fn embed_text(&self, ids: Tensor<B, 2, Int>, lengths: &[usize]) -> Tensor<B, 2> {
        let [b, l] = ids.dims();
        let mask: Vec<i64> = lengths
            .iter()
            .flat_map(|&n| (0..l).map(move |i| (i < n) as i64))
            .collect();
        let mask = Tensor::<B, 2, Int>::from_data(TensorData::new(mask, [b, l]), &ids.device());
        let hidden = self.text.forward(ids, mask);
        self.text_proj.forward(pool_text(hidden, lengths))
    }

    /// The contrastive loss of a batch of matched clips and captions.
    pub fn loss(
        &self,
        clips: Tensor<B, 5>,
        ids: Tensor<B, 2, Int>,
        lengths: &[usize],
    ) -> Result<Tensor<B, 1>, EncodeError> {
        Ok(self.losses(clips, ids, lengths, None)?.contrastive)
    }

    /// Every training signal of one batch from one encoder pass: the contrastive loss, the
    /// attribute loss when multi-hot `labels` `[B, label_dims]` are given (binary cross-entropy
    /// of the attribute head; an error if the model has none), and the encoder's feature grid
    /// `[B, d, t, h, w]` for losses on single tokens (see [`gather_tokens`]).
    pub fn losses(
        &self,
        clips: Tensor<B, 5>,
        ids: Tensor<B, 2, Int>,
        lengths: &[usize],
        labels: Option<Tensor<B, 2>>,
    ) -> Result<ContrastiveLosses<B>, EncodeError> {
        let [b, _, _, _, _] = clips.dims();
        let head = match (&labels, &self.label_head) {
            (None, _) => None,
            (Some(_), None) => {
                return Err(EncodeError::Labels(
                    "the model has no attribute head".into(),
                ))
            }
            (Some(labels), Some(head)) => {
                let want = [b, head.weight.dims()[1]];
                if labels.dims() != want {
                    return Err(EncodeError::Labels(format!(
                        "labels {:?}, expected {want:?}",
                        labels.dims()
                    )));
                }
                Some(head)
            }
        };
        let features = self.vision.encode_clip(clips)?.features;
        let pooled = pool_grid(features.clone());
        let v = self.video_proj.forward(pooled.clone());
        let t = self.embed_text(ids, lengths);
        let contrastive = info_nce(v, t, self.temperature);
        let attributes = head
            .zip(labels)
            .map(|(head, labels)| bce_with_logits(head.forward(pooled), labels));
        Ok(ContrastiveLosses {
            contrastive,
            attributes,
            features,
        })
    }
}

/// What [`ContrastiveModel::losses`] returns.
#[derive(Debug, Clone)]
pub struct ContrastiveLosses<B: Backend> {
    /// Symmetric InfoNCE between pooled clips and captions.
    pub contrastive: Tensor<B, 1>,
    /// Attribute-head loss, when labels were given.
    pub attributes: Option<Tensor<B, 1>>,
    /// The encoder's grid `[B, d, t, h, w]` (still on the autodiff graph).
    pub features: Tensor<B, 5>,
}

/// Rows of a feature grid `[B, d, t, h, w]` as `[rows.len(), d]`, where row `r` is the token at
/// flat index `r = ((b·t + s)·h + y)·w + x`: the tokens a per-token loss looks at.
pub fn gather_tokens<B: Backend>(features: Tensor<B, 5>, rows: &[usize]) -> Tensor<B, 2> {
    let [b, d, t, h, w] = features.dims();
    let index = Tensor::<B, 1, Int>::from_data(
        TensorData::new(
            rows.iter().map(|&r| r as i64).collect::<Vec<_>>(),
            [rows.len()],
        ),
        &features.device(),
    );
    features
        .reshape([b, d, t * h * w])
        .swap_dims(1, 2)
        .reshape([b * t * h * w, d])
        .select(0, index)
}

/// Cross-entropy of several categorical attributes read from one logit row: `logits` and
/// `targets` `[N, sum(groups)]` hold one block of `groups[i]` classes per attribute (targets
/// one-hot, or any distribution, per block); the result is the mean over rows of the summed
/// per-attribute cross-entropies.
pub fn grouped_cross_entropy<B: Backend>(
    logits: Tensor<B, 2>,
    targets: Tensor<B, 2>,
    groups: &[usize],
) -> Tensor<B, 1> {
    let [n, _] = logits.dims();
    grouped_cross_entropy_sum(logits, targets, groups) / n.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, NdArray};
    use burn::optim::{AdamConfig, GradientsParams, Optimizer};
    use burn::tensor::Distribution;
    type TB = NdArray;

    #[test]
    fn sparse_sampling() {
        assert_eq!(sparse_frames(17, 4), vec![0, 4, 8, 12, 16]);
        assert_eq!(sparse_frames(5, 15), vec![0]);
        assert_eq!(sparse_frames(3, 0), vec![0, 1, 2]);
    }

    #[test]
    fn text_pooling_ignores_padding() {
        let d = Default::default();
        let h = Tensor::<TB, 3>::from_floats([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]], &d);
        let p = pool_text(h, &[2]).into_data().to_vec::<f32>().unwrap();
        assert_eq!(p, vec![2.0, 3.0]);
    }

    #[test]
    fn info_nce_prefers_matched_pairs() {
        let d = Default::default();
        // Orthogonal rows (not random ones: the backend RNG is shared by parallel tests, and two
        // close random rows made this flaky).
        let v = Tensor::<TB, 2>::eye(16, &d).narrow(0, 0, 8);
        let matched = info_nce(v.clone(), v.clone(), 0.1).into_scalar();
        let shuffled = info_nce(v.clone(), v.clone().flip([0]), 0.1).into_scalar();
        assert!(matched < 0.01, "{matched}");
        assert!(shuffled > 1.0, "{shuffled}");
    }

    #[test]
    fn retrieval_metric() {
        let v = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0];
        assert_eq!(retrieval_top1(&v, &v, 2), 1.0);
        let swapped = [0.0, 1.0, 1.0, 0.0, 1.0, 1.0];
        assert!((retrieval_top1(&v, &swapped, 2) - 1.0 / 3.0).abs() < 1e-9);
    }

    /// A seeded stream of values in [−0.5, 0.5) (64-bit LCG, high bits).
    fn uniform(seed: u64) -> impl FnMut() -> f32 {
        let mut rng = seed;
        move || {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((rng >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        }
    }

    #[test]
    fn linear_probe_separates_separable_classes_and_not_noise() {
        // Features 1 and 2 flag classes 1 and 2 (class 0 has neither); feature 0 is noise.
        let mut next = uniform(1);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for i in 0..200 {
            let c = i % 3;
            x.extend([
                next(),
                (c == 1) as u8 as f32 + 0.2 * next(),
                (c == 2) as u8 as f32 + 0.2 * next(),
            ]);
            y.push(c);
        }
        let acc = linear_probe_accuracy(&x[..450], &y[..150], &x[450..], &y[150..], 3, 3, 1e-3);
        assert!(acc > 0.95, "separable: {acc}");
        let noise: Vec<f32> = (0..600).map(|_| next()).collect();
        let acc = linear_probe_accuracy(
            &noise[..450],
            &y[..150],
            &noise[450..],
            &y[150..],
            3,
            3,
            1e-3,
        );
        assert!(acc < 0.7, "{acc}");
    }

    #[test]
    fn logistic_probe_finds_classes_a_least_squares_fit_masks() {
        // Three classes in order along one feature (−1, 0, +1, plus noise): linearly separable
        // (softmax scores −a·x, 0, a·x with biases), but a least-squares fit of the middle
        // class's one-hot target on x is flat, so the ridge probe never predicts it.
        let mut next = uniform(7);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for i in 0..300 {
            let c = i % 3;
            x.push(c as f32 - 1.0 + 0.3 * next());
            y.push(c);
        }
        let (fx, fy, tx, ty) = (&x[..200], &y[..200], &x[200..], &y[200..]);
        let logistic = logistic_probe_accuracy(fx, fy, tx, ty, 1, 3, 1e-3);
        let ridge = linear_probe_accuracy(fx, fy, tx, ty, 1, 3, 1e-3);
        assert!(logistic > 0.95, "logistic {logistic}");
        assert!(ridge < 0.8, "ridge {ridge}");
        // Labels unrelated to the features: no better than chance.
        let noise: Vec<f32> = (0..300).map(|_| next()).collect();
        let acc = logistic_probe_accuracy(&noise[..200], fy, &noise[200..], ty, 1, 3, 1e-3);
        assert!(acc < 0.6, "noise {acc}");
    }

    #[test]
    fn bce_with_logits_matches_the_definition_and_stays_finite() {
        let d = Default::default();
        let x = Tensor::<TB, 2>::from_floats([[0.0, 2.0], [-3.0, 100.0]], &d);
        let y = Tensor::<TB, 2>::from_floats([[1.0, 0.0], [0.0, 1.0]], &d);
        let got = bce_with_logits(x, y).into_scalar();
        // −[ln σ(0) + ln(1−σ(2)) + ln(1−σ(−3)) + ln σ(100)] / 4
        let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
        let want = -((sig(0.0)).ln() + (1.0 - sig(2.0)).ln() + (1.0 - sig(-3.0)).ln() + 0.0) / 4.0;
        assert!((got as f64 - want).abs() < 1e-5, "{got} vs {want}");
        // A confident wrong logit costs about its size and does not overflow.
        let x = Tensor::<TB, 2>::from_floats([[-200.0]], &d);
        let y = Tensor::<TB, 2>::from_floats([[1.0]], &d);
        let got = bce_with_logits(x, y).into_scalar();
        assert!((got - 200.0).abs() < 1e-3, "{got}");
    }

    #[test]
    fn attribute_labels_must_fit_the_head() {
        let d = Default::default();
        let mut cfg = ContrastiveConfig::shapes();
        cfg.vision = QwenVisionConfig::tiny();
        cfg.text = Umt5Config::tiny();
        cfg.embed_dim = 16;
        let clips = Tensor::<TB, 5>::zeros([2, 3, 2, 8, 8], &d);
        let ids = Tensor::<TB, 2, Int>::from_data(TensorData::new(vec![5i64, 1, 6, 1], [2, 2]), &d);
        let no_head = cfg.init::<TB>(&d).unwrap();
        let labels = Tensor::<TB, 2>::zeros([2, 3], &d);
        let err = no_head.losses(clips.clone(), ids.clone(), &[2, 2], Some(labels));
        assert!(matches!(err, Err(EncodeError::Labels(_))));
        cfg.label_dims = 3;
        let model = cfg.init::<TB>(&d).unwrap();
        let wrong = Tensor::<TB, 2>::zeros([2, 4], &d);
        let err = model.losses(clips.clone(), ids.clone(), &[2, 2], Some(wrong));
        assert!(matches!(err, Err(EncodeError::Labels(_))));
        let right = Tensor::<TB, 2>::zeros([2, 3], &d);
        let out = model
            .losses(clips.clone(), ids.clone(), &[2, 2], Some(right))
            .unwrap();
        let a = out.attributes.expect("labels were given");
        assert!(out.contrastive.clone().into_scalar().is_finite() && a.into_scalar().is_finite());
        // The pass's features are the encoder's grid, and its contrastive loss is `loss`'s.
        let grid = model.vision.encode_clip(clips.clone()).unwrap().features;
        assert_eq!(out.features.dims(), grid.dims());
        let plain = model.loss(clips, ids, &[2, 2]).unwrap().into_scalar();
        assert_eq!(out.contrastive.into_scalar(), plain);
    }

    #[test]
    fn gather_tokens_reads_the_flat_token_index() {
        let d = Default::default();
        // Every element holds its own flat index, so a gathered value says where it came from.
        let [b, c, t, h, w] = [2, 3, 2, 2, 3];
        let values: Vec<f32> = (0..b * c * t * h * w).map(|i| i as f32).collect();
        let grid = Tensor::<TB, 5>::from_data(TensorData::new(values, [b, c, t, h, w]), &d);
        let at = |bi: usize, ci: usize, s: usize, y: usize, x: usize| {
            (((bi * c + ci) * t + s) * h + y) * w + x
        };
        let flat = |bi: usize, s: usize, y: usize, x: usize| ((bi * t + s) * h + y) * w + x;
        let rows = [flat(1, 1, 0, 2), flat(0, 0, 1, 1)];
        let got = gather_tokens(grid, &rows)
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        let want: Vec<f32> = (0..c)
            .map(|ci| at(1, ci, 1, 0, 2) as f32)
            .chain((0..c).map(|ci| at(0, ci, 0, 1, 1) as f32))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn grouped_cross_entropy_sums_each_attributes_cross_entropy() {
        let d = Default::default();
        // Uniform logits: each block costs ln(classes).
        let logits = Tensor::<TB, 2>::zeros([3, 5], &d);
        let mut targets = vec![0f32; 15];
        for r in 0..3 {
            targets[r * 5 + r % 2] = 1.0;
            targets[r * 5 + 2 + r % 3] = 1.0;
        }
        let targets = Tensor::<TB, 2>::from_data(TensorData::new(targets.clone(), [3, 5]), &d);
        let got = grouped_cross_entropy(logits, targets.clone(), &[2, 3]).into_scalar();
        assert!((got - (2f32.ln() + 3f32.ln())).abs() < 1e-5, "{got}");
        // A confident right answer costs almost nothing, a confident wrong one a lot.
        let right = grouped_cross_entropy(targets.clone() * 20.0, targets.clone(), &[2, 3]);
        let wrong = grouped_cross_entropy((targets.clone() * -1.0 + 1.0) * 20.0, targets, &[2, 3]);
        assert!(right.into_scalar() < 1e-6);
        assert!(wrong.into_scalar() > 30.0);
    }

    #[test]
    fn a_training_step_lowers_the_loss() {
        type AB = Autodiff<TB>;
        let d = Default::default();
        let mut cfg = ContrastiveConfig::shapes();
        cfg.vision = QwenVisionConfig::tiny();
        cfg.text = Umt5Config::tiny();
        cfg.embed_dim = 16;
        let mut model = cfg.init::<AB>(&d).unwrap();
        let clips = Tensor::<AB, 5>::random([4, 3, 2, 8, 8], Distribution::Uniform(-1.0, 1.0), &d);
        let ids = Tensor::<AB, 2, Int>::from_data(
            TensorData::new(
                vec![5i64, 6, 1, 0, 7, 8, 9, 1, 10, 1, 0, 0, 11, 12, 13, 1],
                [4, 4],
            ),
            &d,
        );
        let lengths = [3, 4, 2, 4];
        let mut optim = AdamConfig::new().init();
        let first = model.loss(clips.clone(), ids.clone(), &lengths).unwrap();
        let l0 = first.clone().into_scalar();
        for _ in 0..5 {
            let loss = model.loss(clips.clone(), ids.clone(), &lengths).unwrap();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(3e-3, model, grads);
        }
        let l1 = model.loss(clips, ids, &lengths).unwrap().into_scalar();
        assert!(l1 < l0, "loss {l0} -> {l1}");
    }
}
