//! Rotary position embeddings.
//!
//! - [`Rope3d`]: Wan2.1's 3D RoPE. The head dimension is split into `[t | h | w]` parts
//!   (`h = w = 2·(d/6)`, `t = d − 2h`, NOTES §4b), each axis with its own frequency table
//!   `1/θ^(2j/axis_dim)`, and the rotation acts on **interleaved pairs** `(x[2i], x[2i+1])`.
//!   Positions are real numbers, so extra tokens (semantic tokens) can sit at fractional grid
//!   coordinates aligned with the VAE grid.
//! - [`qwen_rope_2d`] / [`apply_rotate_half`]: Qwen2.5-VL vision's 2D (h, w) RoPE, applied with
//!   `rotate_half` (non-interleaved halves).
//!
//! Angles are computed in f64 on the host, as upstream computes its tables in float64.

use crate::ConfigError;
use burn::prelude::*;

/// Wan's split of a head dimension into `[t, h, w]` rotary axes: `h = w = 2·(d/6)`, `t = d − 2h`.
pub fn wan_rope_axes(head_dim: usize) -> [usize; 3] {
    let hw = 2 * (head_dim / 6);
    [head_dim - 2 * hw, hw, hw]
}

/// Wan's 3D interleaved-pair RoPE with one frequency table per axis.
#[derive(Debug, Clone, PartialEq)]
pub struct Rope3d {
    axes: [usize; 3],
    theta: f64,
}

impl Rope3d {
    /// Checks that every axis is even and the axes sum to the head dimension.
    pub fn new(head_dim: usize, axes: [usize; 3], theta: f64) -> Result<Self, ConfigError> {
        if axes.iter().sum::<usize>() != head_dim {
            return Err(ConfigError::invalid(format!(
                "RoPE axes {axes:?} sum to {}, but the head dimension is {head_dim}",
                axes.iter().sum::<usize>()
            )));
        }
        if axes.iter().any(|a| a % 2 != 0) {
            return Err(ConfigError::invalid(format!(
                "RoPE axes {axes:?} must all be even"
            )));
        }
        if !(theta > 0.0) {
            return Err(ConfigError::invalid(format!(
                "RoPE theta must be positive, got {theta}"
            )));
        }
        Ok(Self { axes, theta })
    }

    /// Wan2.1's default split of `head_dim` with θ = 10000.
    pub fn wan(head_dim: usize) -> Result<Self, ConfigError> {
        Self::new(head_dim, wan_rope_axes(head_dim), 10000.0)
    }

    pub fn head_dim(&self) -> usize {
        self.axes.iter().sum()
    }

    /// Angles for each token: `[N, head_dim/2]`, laid out `[t-angles | h-angles | w-angles]`.
    pub fn angles(&self, positions: &[[f64; 3]]) -> Vec<f64> {
        let half = self.head_dim() / 2;
        let freqs: Vec<Vec<f64>> = self
            .axes
            .iter()
            .map(|&a| {
                (0..a / 2)
                    .map(|j| 1.0 / self.theta.powf((2 * j) as f64 / a as f64))
                    .collect()
            })
            .collect();
        let mut out = Vec::with_capacity(positions.len() * half);
        for p in positions {
            for (axis, f) in freqs.iter().enumerate() {
                out.extend(f.iter().map(|fj| p[axis] * fj));
            }
        }
        out
    }

    /// `(cos, sin)` tables of shape `[N, head_dim/2]` for the given token positions.
    pub fn cos_sin<B: Backend>(
        &self,
        positions: &[[f64; 3]],
        device: &B::Device,
    ) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let half = self.head_dim() / 2;
        let angles = self.angles(positions);
        let n = positions.len();
        let cos: Vec<f32> = angles.iter().map(|a| a.cos() as f32).collect();
        let sin: Vec<f32> = angles.iter().map(|a| a.sin() as f32).collect();
        (
            Tensor::from_data(TensorData::new(cos, [n, half]), device),
            Tensor::from_data(TensorData::new(sin, [n, half]), device),
        )
    }
}

/// Token positions of a `(f, h, w)` grid in row-major order (Wan's token order).
pub fn grid_positions(f: usize, h: usize, w: usize) -> Vec<[f64; 3]> {
    let mut v = Vec::with_capacity(f * h * w);
    for t in 0..f {
        for y in 0..h {
            for x in 0..w {
                v.push([t as f64, y as f64, x as f64]);
            }
        }
    }
    v
}

/// Rotary tables ready to apply to `[B, H, N, D]` heads: `cos`/`sin` expanded to the head
/// dimension (`[1, 1, N, D]`) and the signed permutation that forms each dimension's rotated
/// partner (`[1, 1, D, D]`). Built once per token layout and shared by every layer and step, so
/// neither the tables nor the matrix travel from the host again (on a GPU each would be an
/// upload per call).
#[derive(Debug, Clone)]
pub struct RopeTables<B: Backend> {
    cos: Tensor<B, 4>,
    sin: Tensor<B, 4>,
    rotation: Tensor<B, 4>,
}

impl<B: Backend> RopeTables<B> {
    /// Interleaved pairs `(x[2i], x[2i+1])` (Wan): `cos`/`sin` are `[N, D/2]`, one angle per pair.
    pub fn interleaved(cos: Tensor<B, 2>, sin: Tensor<B, 2>) -> Self {
        let [n, half] = cos.dims();
        let d = 2 * half;
        // Each angle covers a pair: `[c0, c0, c1, c1, …]`.
        let pairs = |t: Tensor<B, 2>| {
            t.reshape([n, half, 1])
                .repeat_dim(2, 2)
                .reshape([1, 1, n, d])
        };
        let rotation = rotation_matrix::<B>(d, Pairing::Interleaved, &cos.device()).unsqueeze();
        Self {
            cos: pairs(cos),
            sin: pairs(sin),
            rotation,
        }
    }

    /// Rotate-half pairs `(x[i], x[i + D/2])` (Qwen, Llama): `cos`/`sin` are `[N, D]`.
    pub fn rotate_half(cos: Tensor<B, 2>, sin: Tensor<B, 2>) -> Self {
        let [n, d] = cos.dims();
        let rotation = rotation_matrix::<B>(d, Pairing::Half, &cos.device()).unsqueeze();
        Self {
            cos: cos.reshape([1, 1, n, d]),
            sin: sin.reshape([1, 1, n, d]),
            rotation,
        }
    }

    /// Number of token positions `N`.
    pub fn num_tokens(&self) -> usize {
        self.cos.dims()[2]
    }

    /// `x·cos + partner(x)·sin` for `x` of shape `[B, H, N, D]`.
    pub fn apply(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let rot = x.clone().matmul(self.rotation.clone());
        x * self.cos.clone() + rot * self.sin.clone()
    }

    /// The same tables laid out for `batch` sequences of tokens `[B, N, heads·D]` (see
    /// [`TokenRope`]). Build it once per forward and share it across the layers.
    pub fn for_tokens(&self, batch: usize, heads: usize) -> TokenRope<B> {
        let [_, _, n, d] = self.cos.dims();
        // `[1, 1, N, D]` → `[B, N, heads·D]`: one copy of every angle per head and sequence.
        let spread = |t: &Tensor<B, 4>| {
            t.clone()
                .reshape([1, n, 1, d])
                .repeat_dim(2, heads)
                .reshape([1, n, heads * d])
                .repeat_dim(0, batch)
        };
        TokenRope {
            cos: spread(&self.cos),
            sin: spread(&self.sin),
            rotation: self.rotation.clone().reshape([d, d]),
            heads,
        }
    }
}

/// Rotary tables materialised for token-major activations `[B, N, heads·D]` (the layout the
/// projections produce, before any head split), with `cos`/`sin` already repeated over batch and
/// heads. Why: the CPU backend runs an elementwise op whose right side is broadcast over an outer
/// axis (`[B, H, N, D] · [1, 1, N, D]`) through a scalar strided iterator, and the head split
/// makes the left side a strided view as well; with both sides contiguous and of one shape the op
/// is a flat SIMD loop, and the partner is one `[B·N·H, D] × [D, D]` product. 3–4× faster than
/// [`RopeTables::apply`] at the DiT's shapes, and bit-identical to it (same products, same sums).
#[derive(Debug, Clone)]
pub struct TokenRope<B: Backend> {
    cos: Tensor<B, 3>,
    sin: Tensor<B, 3>,
    rotation: Tensor<B, 2>,
    heads: usize,
}

impl<B: Backend> TokenRope<B> {
    /// `x·cos + partner(x)·sin` for `x` of shape `[B, N, heads·D]` (heads side by side).
    pub fn apply(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, n, hd] = x.dims();
        let d = hd / self.heads;
        let rot = x
            .clone()
            .reshape([b * n * self.heads, d])
            .matmul(self.rotation.clone())
            .reshape([b, n, hd]);
        x * self.cos.clone() + rot * self.sin.clone()
    }

    /// Number of sequences the tables were repeated for.
    pub fn batch(&self) -> usize {
        self.cos.dims()[0]
    }
}

/// Applies an interleaved-pair rotation: for each pair `(x[2i], x[2i+1])` and angle `a_i`,
/// `(x0·cos − x1·sin, x0·sin + x1·cos)`. `x` is `[B, H, N, D]`, `cos`/`sin` are `[N, D/2]`.
/// Builds the tables for this one call; models keep a [`RopeTables`] instead.
pub fn apply_interleaved<B: Backend>(
    x: Tensor<B, 4>,
    cos: Tensor<B, 2>,
    sin: Tensor<B, 2>,
) -> Tensor<B, 4> {
    RopeTables::interleaved(cos, sin).apply(x)
}

/// How a rotary embedding pairs the dimensions of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pairing {
    /// `(x[2i], x[2i+1])` (Wan).
    Interleaved,
    /// `(x[i], x[i + D/2])` (rotate-half: Qwen, Llama).
    Half,
}

/// The signed permutation `R` with `x·R` = the rotated partner of every dimension (`−x1` in the
/// first slot of a pair, `x0` in the second). One `[N, D]×[D, D]` product replaces the
/// narrow/negate/concatenate of the textbook form, which on the CPU backend cost 10× more
/// (strided copies); the product is exact (one ±1 term per output, the rest adds zeros), so the
/// result is the textbook one bit for bit.
fn rotation_matrix<B: Backend>(d: usize, pairing: Pairing, device: &B::Device) -> Tensor<B, 2> {
    let mut r = vec![0f32; d * d];
    for i in 0..d / 2 {
        let (a, b) = match pairing {
            Pairing::Interleaved => (2 * i, 2 * i + 1),
            Pairing::Half => (i, i + d / 2),
        };
        r[b * d + a] = -1.0; // out[a] = −x[b]
        r[a * d + b] = 1.0; // out[b] = x[a]
    }
    Tensor::from_data(TensorData::new(r, [d, d]), device)
}

/// Qwen2.5-VL vision rotary angles: `inv_freq = 1/θ^(arange(0, d/2, 2)/(d/2))` (d/4 frequencies)
/// and angles `[h·f, w·f]` per token, duplicated to `[a, a]` (length `head_dim`). Returns
/// `(cos, sin)` of shape `[N, head_dim]`. `positions` are `(h, w)` patch coordinates.
pub fn qwen_rope_2d<B: Backend>(
    head_dim: usize,
    theta: f64,
    positions: &[[f64; 2]],
    device: &B::Device,
) -> (Tensor<B, 2>, Tensor<B, 2>) {
    let dim = head_dim / 2;
    let inv: Vec<f64> = (0..dim)
        .step_by(2)
        .map(|i| 1.0 / theta.powf(i as f64 / dim as f64))
        .collect();
    let n = positions.len();
    let mut cos = Vec::with_capacity(n * head_dim);
    let mut sin = Vec::with_capacity(n * head_dim);
    for p in positions {
        let a: Vec<f64> = inv
            .iter()
            .map(|f| p[0] * f)
            .chain(inv.iter().map(|f| p[1] * f))
            .collect();
        for _ in 0..2 {
            cos.extend(a.iter().map(|v| v.cos() as f32));
            sin.extend(a.iter().map(|v| v.sin() as f32));
        }
    }
    (
        Tensor::from_data(TensorData::new(cos, [n, head_dim]), device),
        Tensor::from_data(TensorData::new(sin, [n, head_dim]), device),
    )
}

/// `x·cos + rotate_half(x)·sin` with `rotate_half([x1, x2]) = [−x2, x1]`. `x` is `[B, H, N, D]`,
/// `cos`/`sin` are `[N, D]`. Builds the tables for this one call; models keep a [`RopeTables`].
pub fn apply_rotate_half<B: Backend>(
    x: Tensor<B, 4>,
    cos: Tensor<B, 2>,
    sin: Tensor<B, 2>,
) -> Tensor<B, 4> {
    RopeTables::rotate_half(cos, sin).apply(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    type TB = NdArray;

    #[test]
    fn wan_split_matches_notes() {
        assert_eq!(wan_rope_axes(128), [44, 42, 42]);
        assert_eq!(wan_rope_axes(20), [8, 6, 6]);
    }

    #[test]
    fn rejects_bad_axes() {
        assert!(Rope3d::new(20, [8, 6, 4], 1e4).is_err());
        assert!(Rope3d::new(20, [7, 7, 6], 1e4).is_err());
        assert!(Rope3d::new(20, [8, 6, 6], 1e4).is_ok());
    }

    #[test]
    fn token_major_tables_equal_the_head_major_ones_bit_for_bit() {
        // Both pairings, batch 3 of 5 tokens, 2 heads: `TokenRope` on `[B, N, H·D]` must give
        // exactly what `RopeTables::apply` gives on the same values split into heads.
        let d = Default::default();
        let (b, n, h, hd) = (3, 5, 2, 12);
        let positions: Vec<[f64; 3]> = (0..n).map(|i| [i as f64, 0.5 * i as f64, 1.0]).collect();
        let (c, s) = Rope3d::wan(hd).unwrap().cos_sin::<TB>(&positions, &d);
        let interleaved = RopeTables::interleaved(c, s);
        let (c, s) = qwen_rope_2d::<TB>(
            hd,
            1e4,
            &positions.iter().map(|p| [p[0], p[1]]).collect::<Vec<_>>(),
            &d,
        );
        let half = RopeTables::rotate_half(c, s);
        for tables in [interleaved, half] {
            let x =
                Tensor::<TB, 3>::random([b, n, h * hd], burn::tensor::Distribution::Default, &d);
            let heads = |t: Tensor<TB, 3>| t.reshape([b, n, h, hd]).swap_dims(1, 2);
            let want = tables.apply(heads(x.clone()));
            let token = tables.for_tokens(b, h);
            assert_eq!(token.batch(), b);
            let got = heads(token.apply(x));
            assert_eq!(
                got.into_data().to_vec::<f32>().unwrap(),
                want.into_data().to_vec::<f32>().unwrap()
            );
        }
    }

    #[test]
    fn position_zero_is_identity() {
        let d = Default::default();
        let rope = Rope3d::wan(20).unwrap();
        let (c, s) = rope.cos_sin::<TB>(&[[0.0, 0.0, 0.0]], &d);
        let x = Tensor::<TB, 4>::random([1, 2, 1, 20], burn::tensor::Distribution::Default, &d);
        let y = apply_interleaved(x.clone(), c, s);
        y.into_data()
            .assert_approx_eq::<f32>(&x.into_data(), burn::tensor::Tolerance::absolute(1e-7));
    }
}
