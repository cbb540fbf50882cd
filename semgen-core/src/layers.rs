//! Small shared layers: norms, activations, the sinusoidal timestep embedding and adaLN helpers.
//!
//! Parameter fields are named after the upstream checkpoint keys (`weight`, `bias`, `gamma`) so
//! that weights load without renaming.

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::activation;

// ---------------------------------------------------------------------------------------------
// Norms
// ---------------------------------------------------------------------------------------------

/// LayerNorm over the last dimension without affine parameters (Wan's `FP32LayerNorm(...,
/// elementwise_affine=False)`): `(x - mean) / sqrt(var + eps)`, biased variance.
pub fn layer_norm<B: Backend, const D: usize>(x: Tensor<B, D>, eps: f64) -> Tensor<B, D> {
    // Two passes by hand: on the CPU backend `var_mean_bias` costs 4× these five ops.
    let centred = x.clone() - x.mean_dim(D - 1);
    let var = centred.clone().square().mean_dim(D - 1);
    centred / (var + eps).sqrt()
}

/// RMS normalisation over the last dimension without a gain: `x / sqrt(mean(x²) + eps)`.
pub fn rms_normalize<B: Backend, const D: usize>(x: Tensor<B, D>, eps: f64) -> Tensor<B, D> {
    // `square`, not `powf_scalar(2.0)`: on the CPU backend the generic power is ~25× slower.
    let ms = x.clone().square().mean_dim(D - 1);
    x / (ms + eps).sqrt()
}

/// Wan-VAE channel L2 norm (`WanRMS_norm`): `x / max(‖x‖₂, 1e-12) · √C · γ`, normalising over
/// dimension `dim` (the channel axis). The epsilon is a floor on the norm, not inside the sqrt.
/// `gamma` must broadcast against `x` (e.g. `[C, 1, 1, 1]` for `[B, C, T, H, W]`).
pub fn channel_l2_norm<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    dim: usize,
    gamma: Tensor<B, D>,
) -> Tensor<B, D> {
    let c = x.dims()[dim] as f64;
    let norm = x.clone().square().sum_dim(dim).sqrt().clamp_min(1e-12);
    // The divisor ‖x‖ / √C is formed on the reduced tensor and materialised across the channels
    // before it meets `x`: on the CPU backend, broadcasting a size-1 *outer* axis over inner
    // ones is ~20× slower than an operation on equal shapes (docs/benchmarks.md). Division, not
    // a product with `recip()`: NdArray's `recip` after `sqrt` was off by ~5e-4 (measured).
    let scale = (norm / c.sqrt()).repeat_dim(dim, x.dims()[dim]);
    x / scale * gamma
}

/// RMSNorm with a learned gain named `weight` (torch `nn.RMSNorm`, T5/Qwen RMSNorm).
#[derive(Module, Debug)]
pub struct RmsNorm<B: Backend> {
    pub weight: Param<Tensor<B, 1>>,
    #[module(skip)]
    pub eps: f64,
}

/// Configuration of [`RmsNorm`].
#[derive(Config, Debug)]
pub struct RmsNormConfig {
    pub dim: usize,
    #[config(default = 1e-6)]
    pub eps: f64,
}

impl RmsNormConfig {
    pub fn init<B: Backend>(&self, device: &B::Device) -> RmsNorm<B> {
        RmsNorm {
            weight: Param::from_tensor(Tensor::ones([self.dim], device)),
            eps: self.eps,
        }
    }
}

impl<B: Backend> RmsNorm<B> {
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        rms_normalize(x, self.eps) * self.weight.val().unsqueeze()
    }
}

/// LayerNorm with affine `weight` and `bias` (torch naming, so upstream keys load as they are).
#[derive(Module, Debug)]
pub struct AffineLayerNorm<B: Backend> {
    pub weight: Param<Tensor<B, 1>>,
    pub bias: Param<Tensor<B, 1>>,
    #[module(skip)]
    pub eps: f64,
}

/// Configuration of [`AffineLayerNorm`].
#[derive(Config, Debug)]
pub struct AffineLayerNormConfig {
    pub dim: usize,
    #[config(default = 1e-6)]
    pub eps: f64,
}

impl AffineLayerNormConfig {
    pub fn init<B: Backend>(&self, device: &B::Device) -> AffineLayerNorm<B> {
        AffineLayerNorm {
            weight: Param::from_tensor(Tensor::ones([self.dim], device)),
            bias: Param::from_tensor(Tensor::zeros([self.dim], device)),
            eps: self.eps,
        }
    }
}

impl<B: Backend> AffineLayerNorm<B> {
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        layer_norm(x, self.eps) * self.weight.val().unsqueeze() + self.bias.val().unsqueeze()
    }
}

// ---------------------------------------------------------------------------------------------
// Activations
// ---------------------------------------------------------------------------------------------

/// GELU with the tanh approximation (torch `gelu(approximate="tanh")`, T5's `gelu_new`):
/// `0.5·x·(1 + tanh(u))`, `u = √(2/π)·(x + 0.044715·x³)`, computed as the equal
/// `x / (1 + exp(−2u))`. On the CPU backend `tanh` and `powf` are elementwise library calls
/// (~26 ns per element for `tanh`); this form needs one `exp` and cheap arithmetic, 4× faster
/// (docs/benchmarks.md), and it is exact in the limits (`exp` → ∞ gives −0, → 0 gives `x`).
pub fn gelu_tanh<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    const TWO_SQRT_2_OVER_PI: f64 = 2.0 * 0.797_884_560_802_865_4;
    let u2 = (x.clone().square() * 0.044715 + 1.0) * x.clone() * (-TWO_SQRT_2_OVER_PI);
    x / (u2.exp() + 1.0)
}

/// Exact GELU through erf (torch's default `nn.GELU()`).
pub fn gelu_erf<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    activation::gelu(x)
}

// ---------------------------------------------------------------------------------------------
// Timestep embedding and modulation
// ---------------------------------------------------------------------------------------------

/// Sinusoidal timestep embedding as diffusers' `Timesteps(dim, flip_sin_to_cos, shift)`:
/// `f_i = exp(-ln(10000) · i / (dim/2 - shift))`, output `[cos(t·f), sin(t·f)]` when
/// `flip_sin_to_cos` (Wan) and `[sin, cos]` otherwise. `timesteps` is `[B]`, output `[B, dim]`.
pub fn timestep_embedding<B: Backend>(
    timesteps: Tensor<B, 1>,
    dim: usize,
    flip_sin_to_cos: bool,
    downscale_freq_shift: f64,
) -> Tensor<B, 2> {
    let half = dim / 2;
    let device = timesteps.device();
    // The exponent is computed in f64 on the host (as torch computes it in f32 from arange, the
    // difference is below 1e-7 relative) so every backend sees identical frequencies.
    let freqs: Vec<f32> = (0..half)
        .map(|i| (-(10000f64.ln()) * i as f64 / (half as f64 - downscale_freq_shift)).exp() as f32)
        .collect();
    let freqs = Tensor::<B, 1>::from_floats(freqs.as_slice(), &device).unsqueeze::<2>();
    let args = timesteps.unsqueeze_dim::<2>(1) * freqs;
    let (a, b) = (args.clone().cos(), args.sin());
    let emb = if flip_sin_to_cos {
        Tensor::cat(vec![a, b], 1)
    } else {
        Tensor::cat(vec![b, a], 1)
    };
    if dim % 2 == 1 {
        // diffusers zero-pads odd dimensions on the right.
        let b = emb.dims()[0];
        Tensor::cat(vec![emb, Tensor::zeros([b, 1], &device)], 1)
    } else {
        emb
    }
}

/// adaLN modulation: `x · (1 + scale) + shift`, with `scale` and `shift` broadcast over tokens.
pub fn modulate<B: Backend>(
    x: Tensor<B, 3>,
    shift: Tensor<B, 3>,
    scale: Tensor<B, 3>,
) -> Tensor<B, 3> {
    let n = x.dims()[1];
    x * token_rows(scale + 1.0, n) + token_rows(shift, n)
}

/// Per-sequence rows `[B, 1, D]` repeated over `n` tokens to `[B, n, D]` when `B > 1`; a single
/// row (`B = 1`) is returned as it is. Why: the CPU backend runs an elementwise op whose right
/// side is broadcast along a middle axis (`[B, N, D] · [B, 1, D]`, `B > 1`) through a scalar
/// strided iterator, 10–17× slower than the same op on equal shapes, while a lone `[1, 1, D]` row
/// is on its SIMD fast path. The repeat is one memcpy per row and gives the same values.
pub fn token_rows<B: Backend>(rows: Tensor<B, 3>, n: usize) -> Tensor<B, 3> {
    let [b, one, _] = rows.dims();
    if b > 1 && one == 1 && n > 1 {
        rows.repeat_dim(1, n)
    } else {
        rows
    }
}

/// Splits a `[B, n·D]` or `[1, n, D]`-broadcastable modulation tensor into `n` chunks of
/// `[B, 1, D]`, the shapes [`modulate`] expects.
pub fn chunk_modulation<B: Backend>(table: Tensor<B, 3>, n: usize) -> Vec<Tensor<B, 3>> {
    table.chunk(n, 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    type TB = NdArray;

    fn close(a: &[f32], b: &[f32], tol: f32) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= tol, "{x} vs {y}");
        }
    }

    #[test]
    fn modulation_rows_repeat_only_when_there_are_several_sequences() {
        let d = Default::default();
        let x = Tensor::<TB, 3>::random([2, 4, 3], burn::tensor::Distribution::Default, &d);
        let shift = Tensor::<TB, 3>::random([2, 1, 3], burn::tensor::Distribution::Default, &d);
        let scale = Tensor::<TB, 3>::random([2, 1, 3], burn::tensor::Distribution::Default, &d);
        assert_eq!(token_rows(shift.clone(), 4).dims(), [2, 4, 3]);
        assert_eq!(
            token_rows(shift.clone().narrow(0, 0, 1), 4).dims(),
            [1, 1, 3]
        );
        // Same values as the broadcast form, exactly.
        let want = x.clone() * (scale.clone() + 1.0) + shift.clone();
        assert_eq!(
            modulate(x, shift, scale)
                .into_data()
                .to_vec::<f32>()
                .unwrap(),
            want.into_data().to_vec::<f32>().unwrap()
        );
    }

    #[test]
    fn layer_norm_matches_formula() {
        let d = Default::default();
        let x = Tensor::<TB, 2>::from_floats([[1.0, 2.0, 3.0, 6.0]], &d);
        let y = layer_norm(x, 0.0).into_data().to_vec::<f32>().unwrap();
        // mean 3, var (4+1+0+9)/4 = 3.5
        let s = 3.5f32.sqrt();
        close(&y, &[-2.0 / s, -1.0 / s, 0.0, 3.0 / s], 1e-6);
    }

    #[test]
    fn channel_l2_norm_floors_norm_not_variance() {
        let d = Default::default();
        // [B=1, C=2, 1 voxel]; norm of (3,4) = 5, times sqrt(2).
        let x = Tensor::<TB, 3>::from_floats([[[3.0], [4.0]]], &d);
        let g = Tensor::<TB, 3>::from_floats([[[1.0], [2.0]]], &d);
        let y = channel_l2_norm(x, 1, g)
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        let r = 2f32.sqrt();
        close(&y, &[3.0 / 5.0 * r, 4.0 / 5.0 * r * 2.0], 1e-6);
        // An all-zero voxel stays zero instead of dividing by zero.
        let z = Tensor::<TB, 3>::zeros([1, 2, 1], &d);
        let g = Tensor::<TB, 3>::ones([1, 2, 1], &d);
        close(
            &channel_l2_norm(z, 1, g)
                .into_data()
                .to_vec::<f32>()
                .unwrap(),
            &[0.0, 0.0],
            0.0,
        );
    }

    #[test]
    fn gelu_tanh_equals_the_tanh_formula() {
        // The exp form must be torch's tanh form, including far into both tails.
        let d = Default::default();
        let v: Vec<f32> = (-400..=400)
            .map(|i| i as f32 * 0.05)
            .chain([-100.0, 100.0, 1e-6])
            .collect();
        let n = v.len();
        let x = Tensor::<TB, 1>::from_data(TensorData::new(v, [n]), &d);
        let ours = gelu_tanh(x.clone()).into_data().to_vec::<f32>().unwrap();
        let tanh_form = activation::gelu_approximate(x)
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        for (a, b) in ours.iter().zip(&tanh_form) {
            assert!(a.is_finite());
            assert!((a - b).abs() <= 2e-6 * b.abs().max(1.0), "{a} vs {b}");
        }
    }

    #[test]
    fn gelu_variants_differ_as_expected() {
        let d = Default::default();
        let x = Tensor::<TB, 1>::from_floats([1.0], &d);
        let t = gelu_tanh(x.clone()).into_scalar();
        let e = gelu_erf(x).into_scalar();
        assert!((e - 0.841_344_7).abs() < 1e-6, "erf gelu {e}");
        assert!((t - 0.841_192).abs() < 1e-5, "tanh gelu {t}");
    }

    #[test]
    fn timestep_embedding_flip_order() {
        let d = Default::default();
        let t = Tensor::<TB, 1>::from_floats([0.0, 1.0], &d);
        let e = timestep_embedding(t, 4, true, 0.0)
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        // freqs [1, 0.01]; t=0 -> cos=1, sin=0
        close(&e[..4], &[1.0, 1.0, 0.0, 0.0], 1e-7);
        close(
            &e[4..],
            &[1f32.cos(), 0.01f32.cos(), 1f32.sin(), 0.01f32.sin()],
            1e-6,
        );
    }
}
