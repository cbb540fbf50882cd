//! Attention properties on the CPU backend: fused vs reference, temporal windows vs masked
//! reference, window membership and shifting, and RoPE norm preservation.

mod common;

use burn::backend::NdArray;
use burn::prelude::*;
use burn::tensor::Distribution;
use common::*;
use proptest::prelude::*;
use semgen_core::attention::{AttentionMode, WindowPlan};
use semgen_core::rope::{apply_interleaved, apply_rotate_half, qwen_rope_2d, Rope3d};

type B = NdArray;

#[test]
fn fused_attention_matches_reference() {
    let d = Default::default();
    fused_matches_reference::<B>(&d, 2, 3, 17, 17, 16);
    fused_matches_reference::<B>(&d, 1, 2, 9, 31, 8); // cross-attention shapes
}

#[test]
fn window_at_least_sequence_equals_full_attention() {
    let d = Default::default();
    let frames = token_frames(6, 4, &[0, 3, 5]);
    for (tw, shifted) in [(6, false), (6, true), (9, true)] {
        let plan = WindowPlan::new(
            &frames,
            6,
            AttentionMode::Window {
                frames: tw,
                shifted,
            },
        );
        assert!(plan.is_full());
        // and numerically: windowed == unmasked full attention
        windowed_matches_masked_reference::<B>(
            &d,
            &frames,
            6,
            AttentionMode::Window {
                frames: tw,
                shifted,
            },
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    /// Every token attends only inside its window: the windowed result equals the reference
    /// with the window mask, for any sizes, window lengths, shifts and extra tokens.
    #[test]
    fn windowed_attention_is_masked_attention(
        t in 1usize..9, s in 1usize..4, tw in 1usize..6, shifted in any::<bool>(),
        extra in proptest::collection::vec(0usize..9, 0..5),
    ) {
        let extra: Vec<usize> = extra.into_iter().map(|e| e % t).collect();
        let frames = token_frames(t, s, &extra);
        windowed_matches_masked_reference::<B>(&Default::default(), &frames, t, AttentionMode::Window { frames: tw, shifted });
    }

    /// Window membership: tokens share a window iff their frames fall in the same
    /// [k·T_w − shift, (k+1)·T_w − shift) span, with shift = T_w/2 on shifted (odd) layers,
    /// partial windows at the ends and no wrap-around.
    #[test]
    fn windows_follow_the_shifted_partition(t in 2usize..20, tw in 1usize..8, shifted in any::<bool>()) {
        let frames = token_frames(t, 2, &[]);
        let plan = WindowPlan::new(&frames, t, AttentionMode::Window { frames: tw, shifted });
        let shift = if shifted && tw < t { tw / 2 } else { 0 };
        for i in 0..frames.len() {
            for j in 0..frames.len() {
                let same = if tw >= t { true } else { (frames[i] + shift) / tw == (frames[j] + shift) / tw };
                prop_assert_eq!(plan.allowed(i, j), same);
            }
        }
        // Windows are contiguous in time: no wrap-around from the last frames to the first.
        if tw < t {
            prop_assert!(!plan.allowed(0, frames.len() - 1));
        }
    }

    /// Both RoPE variants are rotations: they preserve the norm of every head vector.
    #[test]
    fn rope_preserves_norms(pos in proptest::collection::vec((0.0f64..64.0, 0.0f64..64.0, 0.0f64..64.0), 1..6)) {
        let d = Default::default();
        let n = pos.len();
        let rope = Rope3d::wan(20).unwrap();
        let p3: Vec<[f64; 3]> = pos.iter().map(|&(a, b, c)| [a, b, c]).collect();
        let (c, s) = rope.cos_sin::<B>(&p3, &d);
        let x = Tensor::<B, 4>::random([1, 2, n, 20], Distribution::Normal(0.0, 1.0), &d);
        let norm = |t: Tensor<B, 4>| t.powf_scalar(2.0).sum_dim(3).sqrt().into_data().to_vec::<f32>().unwrap();
        let before = norm(x.clone());
        let after = norm(apply_interleaved(x.clone(), c, s));
        for (a, b) in before.iter().zip(&after) { prop_assert!((a - b).abs() < 1e-4 * a.max(1.0)); }
        let p2: Vec<[f64; 2]> = pos.iter().map(|&(a, b, _)| [a, b]).collect();
        let (c, s) = qwen_rope_2d::<B>(20, 10000.0, &p2, &d);
        let after = norm(apply_rotate_half(x, c, s));
        for (a, b) in before.iter().zip(&after) { prop_assert!((a - b).abs() < 1e-4 * a.max(1.0)); }
    }
}

/// The textbook forms the library replaced with a ±1 permutation product: the two must agree bit
/// for bit (one ±1 term per output; the other terms add exact zeros).
#[test]
fn rope_permutation_product_equals_the_textbook_form() {
    let d = Default::default();
    let (n, hd) = (7, 20);
    let x = Tensor::<B, 4>::random([2, 3, n, hd], Distribution::Normal(0.0, 3.0), &d);
    let p3: Vec<[f64; 3]> = (0..n)
        .map(|i| [i as f64, (i * 2) as f64, (i % 3) as f64])
        .collect();
    let (c, s) = Rope3d::wan(hd).unwrap().cos_sin::<B>(&p3, &d);
    let pairs = x.clone().reshape([2, 3, n, hd / 2, 2]);
    let (x0, x1) = (pairs.clone().narrow(4, 0, 1), pairs.narrow(4, 1, 1));
    let (c5, s5) = (
        c.clone().reshape([1, 1, n, hd / 2, 1]),
        s.clone().reshape([1, 1, n, hd / 2, 1]),
    );
    let r0 = x0.clone() * c5.clone() - x1.clone() * s5.clone();
    let r1 = x0 * s5 + x1 * c5;
    let textbook = Tensor::cat(vec![r0, r1], 4).reshape([2, 3, n, hd]);
    let ours = apply_interleaved(x.clone(), c, s);
    assert_eq!(
        ours.into_data().to_vec::<f32>().unwrap(),
        textbook.into_data().to_vec::<f32>().unwrap()
    );

    let p2: Vec<[f64; 2]> = (0..n).map(|i| [i as f64, (n - i) as f64]).collect();
    let (c, s) = qwen_rope_2d::<B>(hd, 10000.0, &p2, &d);
    let half = hd / 2;
    let rot = Tensor::cat(
        vec![
            x.clone().narrow(3, half, half).neg(),
            x.clone().narrow(3, 0, half),
        ],
        3,
    );
    let textbook =
        x.clone() * c.clone().reshape([1, 1, n, hd]) + rot * s.clone().reshape([1, 1, n, hd]);
    let ours = apply_rotate_half(x, c, s);
    assert_eq!(
        ours.into_data().to_vec::<f32>().unwrap(),
        textbook.into_data().to_vec::<f32>().unwrap()
    );
}

#[test]
fn odd_layers_shift_in_the_dit() {
    let cfg = semgen_core::wan_dit::WanDitConfig::tiny().with_attn_window(Some(4));
    assert_eq!(
        cfg.attention_mode(0),
        AttentionMode::Window {
            frames: 4,
            shifted: false
        }
    );
    assert_eq!(
        cfg.attention_mode(1),
        AttentionMode::Window {
            frames: 4,
            shifted: true
        }
    );
    assert_eq!(
        cfg.attention_mode(2),
        AttentionMode::Window {
            frames: 4,
            shifted: false
        }
    );
}
