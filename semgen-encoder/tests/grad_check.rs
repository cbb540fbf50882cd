//! The vision tower's gradients equal finite differences of its forward, on the CPU backends the
//! encoder is trained on: the window reordering (a `select` and its inverse), RoPE, the per-slice
//! full attention and the merger must all carry each token's gradient back to its own patch.

use burn::backend::{Autodiff, Flex, NdArray};
use burn::module::{AutodiffModule, Param};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Distribution;
use semgen_encoder::qwen_vision::{QwenVision, QwenVisionConfig};

fn objective<B: Backend>(
    model: &QwenVision<B>,
    video: Tensor<B, 5>,
    probe: Tensor<B, 5>,
) -> Tensor<B, 1> {
    (model.encode_clip(video).unwrap().features * probe).sum()
}

fn check<B: AutodiffBackend>() {
    let device = Default::default();
    B::seed(&device, 7);
    let model = QwenVisionConfig::tiny().init::<B>(&device).unwrap();
    // 4 frames of 16×16: 2 time slices of 8×8 patches, 4 windows of 4×4 patches each.
    let video =
        Tensor::<B, 5>::random([2, 3, 4, 16, 16], Distribution::Uniform(-1.0, 1.0), &device);
    let probe = Tensor::<B, 5>::random([2, 48, 2, 4, 4], Distribution::Normal(0.0, 1.0), &device);
    let grads = objective(&model, video.clone(), probe.clone()).backward();
    let analytic = model.patch_embed.proj.weight.grad(&grads).unwrap();
    let dims = analytic.dims();
    let analytic: Vec<f32> = analytic.into_data().to_vec().unwrap();
    let scale = analytic.iter().fold(0f32, |m, v| m.max(v.abs()));
    let inner = model.valid();
    let (video, probe) = (video.inner(), probe.inner());
    let eps = 1e-2f32;
    let n = analytic.len();
    let mut worst = 0f32;
    for k in 0..12 {
        let at = (k * 7919 + 13) % n;
        let shifted = |sign: f32| {
            let mut m = inner.clone();
            let w = m.patch_embed.proj.weight.val();
            let mut bump = vec![0f32; n];
            bump[at] = sign * eps;
            let bump = Tensor::from_data(TensorData::new(bump, dims), &w.device());
            m.patch_embed.proj.weight = Param::from_tensor(w + bump);
            objective(&m, video.clone(), probe.clone())
                .into_scalar()
                .elem::<f32>()
        };
        let numeric = (shifted(1.0) - shifted(-1.0)) / (2.0 * eps);
        worst = worst.max((numeric - analytic[at]).abs() / scale);
    }
    eprintln!("worst relative gradient error {worst:.2e} (max grad {scale:.3})");
    assert!(
        worst < 2e-2,
        "worst |numeric - autodiff| / max|grad| = {worst}"
    );
}

#[test]
fn patch_embedding_gradients_match_finite_differences_on_ndarray() {
    check::<Autodiff<NdArray>>();
}

#[test]
fn patch_embedding_gradients_match_finite_differences_on_flex() {
    check::<Autodiff<Flex>>();
}
