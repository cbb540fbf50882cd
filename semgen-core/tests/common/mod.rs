//! Backend-generic checks shared by the CPU and wgpu test binaries.
#![allow(dead_code)]

use burn::prelude::*;
use burn::tensor::{Distribution, Tolerance};
use semgen_core::attention::{reference_attention, sdpa, AttentionMode, WindowPlan};
use semgen_core::fixture::Fixture;
use semgen_core::parity::run_wan_dit;
use std::path::PathBuf;

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

fn randn<B: Backend>(shape: [usize; 4], device: &B::Device) -> Tensor<B, 4> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
}

/// Fused attention equals the plain reference within 1e-5.
pub fn fused_matches_reference<B: Backend>(
    device: &B::Device,
    b: usize,
    h: usize,
    n: usize,
    m: usize,
    d: usize,
) {
    let (q, k, v) = (
        randn::<B>([b, h, n, d], device),
        randn::<B>([b, h, m, d], device),
        randn::<B>([b, h, m, d], device),
    );
    let want = reference_attention(q.clone(), k.clone(), v.clone(), None);
    let got = sdpa(q, k, v);
    got.into_data()
        .assert_approx_eq::<f32>(&want.into_data(), Tolerance::absolute(1e-5));
}

/// Frame index of each token: `frames` frames of `spatial` tokens, then extra tokens.
pub fn token_frames(frames: usize, spatial: usize, extra: &[usize]) -> Vec<usize> {
    let mut f: Vec<usize> = (0..frames)
        .flat_map(|t| std::iter::repeat(t).take(spatial))
        .collect();
    f.extend_from_slice(extra);
    f
}

/// Windowed attention equals full attention restricted by the plan's window mask.
pub fn windowed_matches_masked_reference<B: Backend>(
    device: &B::Device,
    frames: &[usize],
    num_frames: usize,
    mode: AttentionMode,
) {
    let n = frames.len();
    let plan = WindowPlan::new(frames, num_frames, mode);
    // Two sequences of two heads each.
    let (q, k, v) = (
        randn::<B>([2, 2, n, 8], device),
        randn::<B>([2, 2, n, 8], device),
        randn::<B>([2, 2, n, 8], device),
    );
    let mask: Vec<bool> = (0..n * n).map(|x| !plan.allowed(x / n, x % n)).collect();
    let mask = Tensor::<B, 2, Bool>::from_data(TensorData::new(mask, [n, n]), device)
        .reshape([1, 1, n, n])
        .expand([2, 2, n, n]);
    let want = reference_attention(q.clone(), k.clone(), v.clone(), Some(mask));
    plan.attend(q, k, v)
        .into_data()
        .assert_approx_eq::<f32>(&want.into_data(), Tolerance::absolute(1e-5));
}

/// The Wan DiT fixture within its atol.
pub fn wan_dit_parity<B: Backend>(device: &B::Device) {
    let fx = Fixture::open(&fixtures().join("wan_dit")).unwrap();
    for r in run_wan_dit::<B>(&fx, device).unwrap() {
        assert!(r.comparison.passed(), "{:?}", r.comparison);
    }
}
