//! Attention: multi-head scaled-dot-product attention (Burn's fused op or a composition, per
//! backend: [`AttentionKernel`]), a plain reference implementation for tests, and **temporal
//! window attention** for long sequences.
//!
//! ## Temporal windows (paper §2, Swin over time)
//! Every token carries a time index in frames of the main (VAE-latent) grid. A layer with window
//! length `T_w` groups tokens into windows of `T_w` consecutive frames: all spatial tokens of those
//! frames plus any extra tokens (e.g. semantic tokens) assigned to that time span. Odd layers
//! shift the window boundaries by `T_w/2`, so window `k` covers frames `[k·T_w − T_w/2,
//! (k+1)·T_w − T_w/2)`.
//!
//! Ends are handled without wrap-around: the first and last windows may be partial (shorter).
//! When `T_w ≥ T` (the number of frames) there is a single window and no shift (as in Swin,
//! where the shift is disabled once the window covers the input), so the layer is exactly full
//! attention.
//!
//! The computation is batched dense attention over re-blocked tensors, with no per-token mask:
//! tokens are gathered window by window, windows with the same token count are stacked along the
//! batch axis and run through one fused attention call, and the results are scattered back.
//! Memory is O(N·window) instead of O(N²).

use burn::prelude::*;
use burn::tensor::activation::softmax;
use burn::tensor::module::attention as fused_attention;
use burn::tensor::ops::AttentionModuleOptions;

/// Which implementation [`sdpa`] runs.
///
/// Burn's fused attention op runs flash attention (autotuned) on the CubeCL backends (CUDA, wgpu),
/// but on the CPU backend (Flex 0.21) it is a loop over `(batch, head)` pairs on one thread,
/// after copying head-split views element by element; on the autodiff backend it is the plain
/// composition anyway. The composition (`QKᵀ` matmul, fused softmax, `·V` matmul) runs its
/// matmuls on every core and reads strided views without copying: on the 2-core CPU it makes
/// the DiT small forward 15 % faster, Qwen small 21 %, umT5 small 22 % (docs/benchmarks.md,
/// session 22, fix 9). Same mathematics in another summation order (tests: within 1e-5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionKernel {
    /// Burn's `module::attention` (flash attention on CubeCL; its materialised fallback under
    /// autodiff).
    Fused,
    /// `softmax(QKᵀ·scale + bias)·V` from matmul and softmax, in head groups and query chunks
    /// that bound the score matrix to [`COMPOSED_SCORE_BUDGET`] elements.
    Composed,
}

/// The most score elements the composed kernel materialises at once (1 MiB of f32): larger
/// problems run in groups of heads, then in chunks of queries, so window attention over a long
/// clip and a long story's full attention stay in bounded memory, as with the fused kernels.
/// With an additive bias the budget is 4× larger: slicing the bias leaves a view at an offset,
/// which the CPU backend adds element by element (umT5 small at 1/4 of the budget: 1.6×
/// slower). Measured trade-off (docs/benchmarks.md, session 22): at 4× this budget the 16×
/// window row of the refiner peaks at 1.32–1.38× the RSS of the 1× row (the goal is 1.3×),
/// at this one 1.20–1.23×, for 20–25 % more time on the 16× full-attention row.
pub const COMPOSED_SCORE_BUDGET: usize = 1 << 18;

impl AttentionKernel {
    /// The kernel for backend `B` on `device`: fused on the CubeCL backends (their flash
    /// attention), composed elsewhere. The environment variable `SEMGEN_ATTENTION=fused` or
    /// `=composed` overrides the choice (benchmarks, diagnosis).
    pub fn for_backend<B: Backend>(device: &B::Device) -> Self {
        static OVERRIDE: std::sync::OnceLock<Option<AttentionKernel>> = std::sync::OnceLock::new();
        let forced = OVERRIDE.get_or_init(|| {
            match std::env::var("SEMGEN_ATTENTION")
                .ok()?
                .to_ascii_lowercase()
                .as_str()
            {
                "fused" => Some(AttentionKernel::Fused),
                "composed" => Some(AttentionKernel::Composed),
                other => {
                    tracing::warn!("SEMGEN_ATTENTION={other} not understood (fused | composed)");
                    None
                }
            }
        });
        if let Some(k) = forced {
            return *k;
        }
        // Backend names nest ("fusion<cubecl<cuda>>", "autodiff<flex>"). Under autodiff Burn's
        // op is its fallback (one whole score matrix, then matmul and softmax): on a GPU that is
        // a few large kernels, where the composed kernel's 1 MiB chunks would be hundreds of
        // small launches; on the CPU the composition's bounded memory wins.
        let name = B::name(device);
        if name.contains("cubecl") {
            AttentionKernel::Fused
        } else {
            AttentionKernel::Composed
        }
    }
}

/// Scaled-dot-product attention on `[B, H, N, D]` tensors with scale `1/√D`, through the
/// backend's best kernel ([`AttentionKernel::for_backend`]).
pub fn sdpa<B: Backend>(q: Tensor<B, 4>, k: Tensor<B, 4>, v: Tensor<B, 4>) -> Tensor<B, 4> {
    sdpa_with_bias(q, k, v, None, None)
}

/// Like [`sdpa`] with an additive bias on the scores (`[B or 1, H or 1, N, M]`) and a custom
/// scale (umT5 uses scale 1 and a relative-position bias).
pub fn sdpa_with_bias<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    bias: Option<Tensor<B, 4>>,
    scale: Option<f64>,
) -> Tensor<B, 4> {
    match AttentionKernel::for_backend::<B>(&q.device()) {
        AttentionKernel::Fused => {
            let options = AttentionModuleOptions {
                scale,
                ..Default::default()
            };
            fused_attention(q, k, v, None, bias, options)
        }
        AttentionKernel::Composed => composed_attention(q, k, v, bias, scale),
    }
}

/// [`AttentionKernel::Composed`]: the score matrix of at most [`COMPOSED_SCORE_BUDGET`]
/// elements at a time (4× that with a bias).
pub fn composed_attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    bias: Option<Tensor<B, 4>>,
    scale: Option<f64>,
) -> Tensor<B, 4> {
    let budget = if bias.is_some() {
        4 * COMPOSED_SCORE_BUDGET
    } else {
        COMPOSED_SCORE_BUDGET
    };
    composed_attention_in_chunks(q, k, v, bias, scale, budget)
}

fn composed_attention_in_chunks<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    bias: Option<Tensor<B, 4>>,
    scale: Option<f64>,
    budget: usize,
) -> Tensor<B, 4> {
    let [b, h, n, d] = q.dims();
    let m = k.dims()[2];
    let scale = scale.unwrap_or(1.0 / (d as f64).sqrt());
    // A slice of `t` along `dim` unless `t` broadcasts there (size 1).
    let part = |t: &Tensor<B, 4>, dim: usize, start: usize, len: usize| match t.dims()[dim] {
        1 => t.clone(),
        _ => t.clone().narrow(dim, start, len),
    };
    let attend =
        |q: Tensor<B, 4>, k: &Tensor<B, 4>, v: &Tensor<B, 4>, bias: Option<Tensor<B, 4>>| {
            let mut scores = q.matmul(k.clone().swap_dims(2, 3)).mul_scalar(scale);
            if let Some(bias) = bias {
                scores = scores + bias;
            }
            softmax(scores, 3).matmul(v.clone())
        };
    if b * h * n * m <= budget {
        return attend(q, &k, &v, bias);
    }
    // Groups of whole heads first (their slices of a per-head bias stay contiguous), then, when
    // one head is still over the budget, chunks of queries within each head.
    let heads = (budget / (b * n * m).max(1)).clamp(1, h);
    let queries = (budget / (b * m).max(1)).clamp(1, n);
    let outs = (0..h)
        .step_by(heads)
        .map(|h0| {
            let hn = heads.min(h - h0);
            let (q, k, v) = (
                q.clone().narrow(1, h0, hn),
                k.clone().narrow(1, h0, hn),
                v.clone().narrow(1, h0, hn),
            );
            let bias = bias.as_ref().map(|t| part(t, 1, h0, hn));
            // Groups of several heads fit the budget whole, so `queries ≥ n` holds for them.
            if queries >= n {
                return attend(q, &k, &v, bias);
            }
            let rows = (0..n)
                .step_by(queries)
                .map(|n0| {
                    let nn = queries.min(n - n0);
                    let bias = bias.as_ref().map(|t| part(t, 2, n0, nn));
                    attend(q.clone().narrow(2, n0, nn), &k, &v, bias)
                })
                .collect();
            Tensor::cat(rows, 2)
        })
        .collect();
    Tensor::cat(outs, 1)
}

/// The plain reference: `softmax(QKᵀ/√D + bias)·V` with an optional boolean mask (true = masked
/// out). Materialises the full score matrix; used by tests to check the fused and windowed paths.
pub fn reference_attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: Option<Tensor<B, 4, Bool>>,
) -> Tensor<B, 4> {
    let d = q.dims()[3] as f64;
    let mut scores = q.matmul(k.swap_dims(2, 3)) / d.sqrt();
    if let Some(m) = mask {
        scores = scores.mask_fill(m, f32::NEG_INFINITY);
    }
    softmax(scores, 3).matmul(v)
}

/// How a layer's self-attention sees the sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AttentionMode {
    /// Every token attends to every token.
    Full,
    /// Temporal windows of `frames` frames; shifted by `frames/2` when `shifted`.
    Window { frames: usize, shifted: bool },
}

/// Window id of a token at frame `t`: `⌊(t + shift)/T_w⌋`.
fn window_of(t: usize, frames: usize, shift: usize) -> usize {
    (t + shift) / frames
}

/// A precomputed re-blocking of a token sequence into temporal windows.
///
/// Built once per (layout, mode) on the host; applying it is a gather, batched attention per
/// group of equal-size windows, and a scatter.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowPlan {
    /// Groups of windows with the same token count: (window length, token indices window-major).
    groups: Vec<(usize, Vec<usize>)>,
    /// Window ids of each group, in the order their tokens appear in `groups`.
    group_windows: Vec<Vec<usize>>,
    /// Position in the concatenated group output of each original token.
    inverse: Vec<usize>,
    /// Window id of every token (for inspection and tests).
    window_ids: Vec<usize>,
    /// True when the tokens are already window-major in one group of equal windows, so attending
    /// needs no gather or scatter (e.g. unshifted windows that tile the clip, Qwen's windows).
    in_order: bool,
}

impl WindowPlan {
    /// Plans windows for tokens with the given frame indices. `num_frames` is the length `T` of
    /// the main grid in frames (every time index must be `< num_frames`).
    pub fn new(token_frames: &[usize], num_frames: usize, mode: AttentionMode) -> Self {
        let (frames, shift) = match mode {
            AttentionMode::Full => (usize::MAX, 0),
            AttentionMode::Window { frames, .. } if frames >= num_frames => (usize::MAX, 0),
            AttentionMode::Window { frames, shifted } => {
                let frames = frames.max(1);
                (frames, if shifted { frames / 2 } else { 0 })
            }
        };
        Self::from_ids(
            token_frames
                .iter()
                .map(|&t| {
                    if frames == usize::MAX {
                        0
                    } else {
                        window_of(t, frames, shift)
                    }
                })
                .collect(),
        )
    }

    /// A plan from an explicit group id per token (windows, or prompt segments for per-segment
    /// cross-attention). Empty ids are allowed; a group may be empty.
    pub fn from_ids(window_ids: Vec<usize>) -> Self {
        let n_windows = window_ids.iter().copied().max().map_or(0, |m| m + 1);
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); n_windows];
        for (i, &w) in window_ids.iter().enumerate() {
            members[w].push(i);
        }
        // Group windows by size, keeping window order inside each group.
        let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
        let mut group_windows: Vec<Vec<usize>> = Vec::new();
        for (w, m) in members
            .into_iter()
            .enumerate()
            .filter(|(_, m)| !m.is_empty())
        {
            match groups.iter().position(|(len, _)| *len == m.len()) {
                Some(g) => {
                    groups[g].1.extend(m);
                    group_windows[g].push(w);
                }
                None => {
                    groups.push((m.len(), m));
                    group_windows.push(vec![w]);
                }
            }
        }
        let mut inverse = vec![0; window_ids.len()];
        let mut pos = 0;
        for (_, idx) in &groups {
            for &i in idx {
                inverse[i] = pos;
                pos += 1;
            }
        }
        let in_order = groups.len() == 1 && inverse.iter().enumerate().all(|(i, &p)| i == p);
        Self {
            groups,
            group_windows,
            inverse,
            window_ids,
            in_order,
        }
    }

    /// A plan from cumulative segment boundaries `[0, e1, e2, …, N]` (upstream's `cu_seqlens`):
    /// tokens `e_i..e_{i+1}` form window `i`; empty segments are skipped.
    pub fn from_boundaries(cu: &[usize]) -> Self {
        let mut ids = Vec::with_capacity(cu.last().copied().unwrap_or(0));
        for (w, pair) in cu.windows(2).enumerate() {
            ids.extend(std::iter::repeat(w).take(pair[1].saturating_sub(pair[0])));
        }
        Self::from_ids(ids)
    }

    /// Window id of each token.
    pub fn window_ids(&self) -> &[usize] {
        &self.window_ids
    }

    /// Number of windows.
    pub fn num_windows(&self) -> usize {
        self.groups.iter().map(|(len, idx)| idx.len() / len).sum()
    }

    /// True if the plan is a single window holding every token (plain full attention).
    pub fn is_full(&self) -> bool {
        self.groups.len() == 1 && self.groups[0].1.len() == self.groups[0].0
    }

    /// Boolean mask `[N, N]` (true = may attend) equivalent to this plan; for tests.
    pub fn allowed(&self, i: usize, j: usize) -> bool {
        self.window_ids[i] == self.window_ids[j]
    }

    /// Windowed attention on head-major `[B, H, N, D]` tensors: [`attend_tokens`]
    /// (Self::attend_tokens) with the heads merged before and split after.
    pub fn attend<B: Backend>(
        &self,
        q: Tensor<B, 4>,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
    ) -> Tensor<B, 4> {
        let [b, h, n, d] = q.dims();
        let merge = |x: Tensor<B, 4>| x.swap_dims(1, 2).reshape([b, n, h * d]);
        self.attend_tokens(merge(q), merge(k), merge(v), h)
            .reshape([b, n, h, d])
            .swap_dims(1, 2)
    }
}

impl WindowPlan {
    /// Windowed self-attention on token-major `[B, N, heads·D]` tensors (heads side by side, the
    /// layout the projections produce); returns the same layout, ready for the output
    /// projection. Equals splitting the heads, [`attend`](Self::attend) and merging them, but the
    /// window gather and scatter move whole token rows of contiguous tensors, and each head
    /// split or merge is a single copy. Why: in the head-major form every gather, window reshape
    /// and merge copies a strided view, which the CPU backend walks element by element.
    pub fn attend_tokens<B: Backend>(
        &self,
        q: Tensor<B, 3>,
        k: Tensor<B, 3>,
        v: Tensor<B, 3>,
        heads: usize,
    ) -> Tensor<B, 3> {
        let [b, _, hd] = q.dims();
        let d = hd / heads;
        let device = q.device();
        let mut outs = Vec::with_capacity(self.groups.len());
        for (len, idx) in &self.groups {
            let nw = idx.len() / len;
            let index = (!self.in_order).then(|| index_tensor::<B>(idx, &device));
            // `[B, nw·len, H·D]` (window-major) → `[B·nw, H, len, D]`.
            let block = |x: &Tensor<B, 3>| {
                let x = match &index {
                    Some(i) => x.clone().select(1, i.clone()),
                    None => x.clone(),
                };
                x.reshape([b * nw, *len, heads, d]).swap_dims(1, 2)
            };
            let o = sdpa(block(&q), block(&k), block(&v));
            outs.push(o.swap_dims(1, 2).reshape([b, nw * len, hd]));
        }
        let cat = if outs.len() == 1 {
            outs.remove(0)
        } else {
            Tensor::cat(outs, 1)
        };
        if self.in_order {
            return cat;
        }
        cat.select(1, index_tensor::<B>(&self.inverse, &device))
    }

    /// Cross-attention where the tokens of window `w` attend to their own context: `q` is
    /// `[B, H, N, D]`, `k`/`v` are `[B·W, H, L, D]` (window-major within each batch element, `W`
    /// = number of window ids). Used for per-segment prompts: segment `s`'s tokens see only
    /// segment `s`'s text.
    pub fn attend_cross<B: Backend>(
        &self,
        q: Tensor<B, 4>,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
    ) -> Tensor<B, 4> {
        let [b, h, _, d] = q.dims();
        let [bw, _, l, _] = k.dims();
        let w_total = bw / b;
        let device = q.device();
        let k = k.reshape([b, w_total, h, l, d]);
        let v = v.reshape([b, w_total, h, l, d]);
        let mut outs = Vec::with_capacity(self.groups.len());
        for ((len, idx), wins) in self.groups.iter().zip(&self.group_windows) {
            let nw = wins.len();
            let qi = index_tensor::<B>(idx, &device);
            let wi = index_tensor::<B>(wins, &device);
            let qb = q
                .clone()
                .select(2, qi)
                .reshape([b, h, nw, *len, d])
                .swap_dims(1, 2)
                .reshape([b * nw, h, *len, d]);
            let ctx = |t: &Tensor<B, 5>| t.clone().select(1, wi.clone()).reshape([b * nw, h, l, d]);
            let o = sdpa(qb, ctx(&k), ctx(&v));
            outs.push(
                o.reshape([b, nw, h, *len, d])
                    .swap_dims(1, 2)
                    .reshape([b, h, nw * len, d]),
            );
        }
        Tensor::cat(outs, 2).select(2, index_tensor::<B>(&self.inverse, &device))
    }
}

/// An `Int` index tensor from host indices.
pub fn index_tensor<B: Backend>(idx: &[usize], device: &B::Device) -> Tensor<B, 1, Int> {
    let v: Vec<i64> = idx.iter().map(|&i| i as i64).collect();
    Tensor::from_data(TensorData::new(v, [idx.len()]), device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::tensor::{Distribution, Tolerance};
    type TB = NdArray;

    fn frames(t: usize, s: usize) -> Vec<usize> {
        (0..t).flat_map(|f| std::iter::repeat(f).take(s)).collect()
    }

    #[test]
    fn shifted_windows_are_offset_by_half() {
        let f = frames(8, 1);
        let even = WindowPlan::new(
            &f,
            8,
            AttentionMode::Window {
                frames: 4,
                shifted: false,
            },
        );
        let odd = WindowPlan::new(
            &f,
            8,
            AttentionMode::Window {
                frames: 4,
                shifted: true,
            },
        );
        assert_eq!(even.window_ids(), &[0, 0, 0, 0, 1, 1, 1, 1]);
        assert_eq!(odd.window_ids(), &[0, 0, 1, 1, 1, 1, 2, 2]);
        assert_eq!(odd.num_windows(), 3);
    }

    #[test]
    fn window_covering_sequence_is_full_attention_even_when_shifted() {
        let f = frames(5, 3);
        for shifted in [false, true] {
            let p = WindowPlan::new(&f, 5, AttentionMode::Window { frames: 5, shifted });
            assert!(p.is_full());
        }
    }

    /// The composed kernel, in one piece, in head groups and in query chunks (with a per-head,
    /// per-query bias and with one broadcast over heads and queries), computes what Burn's
    /// fused op computes, on the CPU backends.
    fn composed_equals_fused<B: Backend>(d: &B::Device) {
        let normal = Distribution::Normal(0.0, 1.0);
        let (n, m) = (11, 7);
        let q = Tensor::<B, 4>::random([2, 3, n, 8], normal, d);
        let k = Tensor::<B, 4>::random([2, 3, m, 8], normal, d);
        let v = Tensor::<B, 4>::random([2, 3, m, 5], normal, d);
        let biases = [
            None,
            Some(Tensor::<B, 4>::random([1, 3, n, m], normal, d)),
            Some(Tensor::<B, 4>::random([2, 1, 1, m], normal, d)),
        ];
        for bias in biases {
            for scale in [None, Some(1.0)] {
                let options = AttentionModuleOptions {
                    scale,
                    ..Default::default()
                };
                let want =
                    fused_attention(q.clone(), k.clone(), v.clone(), None, bias.clone(), options)
                        .into_data();
                // Budgets: everything at once; heads in groups of 2 (the last one short);
                // one head at a time in chunks of 3 queries (the last one short); 1 query.
                for budget in [usize::MAX, 2 * 2 * n * m, 2 * m * 3, 1] {
                    let got = composed_attention_in_chunks(
                        q.clone(),
                        k.clone(),
                        v.clone(),
                        bias.clone(),
                        scale,
                        budget,
                    );
                    assert_eq!(got.dims(), [2, 3, n, 5]);
                    got.into_data()
                        .assert_approx_eq::<f32>(&want, Tolerance::absolute(1e-5));
                }
            }
        }
    }

    #[test]
    fn composed_attention_in_chunks_equals_the_fused_op() {
        composed_equals_fused::<TB>(&Default::default());
        composed_equals_fused::<burn::backend::Flex>(&Default::default());
    }

    #[test]
    fn the_cpu_backends_compose_attention() {
        let d = Default::default();
        assert_eq!(
            AttentionKernel::for_backend::<TB>(&d),
            AttentionKernel::Composed
        );
        let d = Default::default();
        assert_eq!(
            AttentionKernel::for_backend::<burn::backend::Flex>(&d),
            AttentionKernel::Composed
        );
    }

    #[test]
    fn windowed_equals_masked_reference() {
        let d = Default::default();
        // 7 frames x 3 tokens + 4 extra tokens at frames 0, 2, 4, 6.
        let mut f = frames(7, 3);
        f.extend([0, 2, 4, 6]);
        let n = f.len();
        for shifted in [false, true] {
            let plan = WindowPlan::new(&f, 7, AttentionMode::Window { frames: 3, shifted });
            let q = Tensor::<TB, 4>::random([2, 2, n, 8], Distribution::Normal(0.0, 1.0), &d);
            let k = Tensor::<TB, 4>::random([2, 2, n, 8], Distribution::Normal(0.0, 1.0), &d);
            let v = Tensor::<TB, 4>::random([2, 2, n, 8], Distribution::Normal(0.0, 1.0), &d);
            let mask: Vec<bool> = (0..n * n).map(|x| !plan.allowed(x / n, x % n)).collect();
            let mask = Tensor::<TB, 2, Bool>::from_data(TensorData::new(mask, [n, n]), &d)
                .reshape([1, 1, n, n])
                .expand([2, 2, n, n]);
            let want = reference_attention(q.clone(), k.clone(), v.clone(), Some(mask));
            let got = plan.attend(q, k, v);
            got.into_data()
                .assert_approx_eq::<f32>(&want.into_data(), Tolerance::absolute(1e-5));
        }
    }
}
