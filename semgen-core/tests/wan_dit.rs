//! Wan DiT behaviour beyond parity: config validation, attention modes, the in-context token
//! hook, determinism and a training step.

use burn::backend::{Autodiff, NdArray};
use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::{Distribution, Tolerance};
use semgen_core::flow::{noisy_sample, velocity_target};
use semgen_core::wan_dit::{ExtraTokens, TextCondition, WanDitConfig};

type B = NdArray;

fn inputs(frames: usize) -> (Tensor<B, 5>, Tensor<B, 1>, Tensor<B, 3>) {
    let d = Default::default();
    (
        Tensor::random([2, 4, frames, 8, 8], Distribution::Normal(0.0, 1.0), &d),
        Tensor::from_floats([100.0, 900.0], &d),
        Tensor::random([2, 6, 16], Distribution::Normal(0.0, 1.0), &d),
    )
}

#[test]
fn invalid_configs_are_refused_before_allocation() {
    let d = Default::default();
    let bad = |c: WanDitConfig| c.init::<B>(&d).map(|_| ()).unwrap_err().to_string();
    // Head dims whose Wan RoPE split has an odd axis: 21 → t = 21 − 2·6 = 9.
    assert!(bad(WanDitConfig {
        attention_head_dim: 21,
        ..WanDitConfig::tiny()
    })
    .contains("RoPE axes"));
    assert!(bad(WanDitConfig {
        num_attention_heads: 0,
        ..WanDitConfig::tiny()
    })
    .contains("num_attention_heads"));
    assert!(bad(WanDitConfig {
        patch_size: [1, 0, 2],
        ..WanDitConfig::tiny()
    })
    .contains("patch_size"));
    assert!(bad(WanDitConfig::tiny().with_attn_window(Some(0))).contains("attn_window"));
    assert!(bad(WanDitConfig {
        freq_dim: 33,
        ..WanDitConfig::tiny()
    })
    .contains("freq_dim"));
    // Upstream configs that semgen cannot run are refused with the reason.
    let i2v = r#"{"patch_size":[1,2,2],"num_attention_heads":2,"attention_head_dim":20,"in_channels":36,
        "out_channels":16,"text_dim":16,"freq_dim":32,"ffn_dim":64,"num_layers":2,"image_dim":1280}"#;
    assert!(WanDitConfig::from_diffusers_json(i2v)
        .unwrap_err()
        .to_string()
        .contains("image_dim"));
    assert!(WanDitConfig::from_diffusers_json("{").is_err());
    assert!(WanDitConfig::from_diffusers_json(r#"{"patch_size":[1,2]}"#).is_err());
}

#[test]
fn presets_are_consistent() {
    for c in [
        WanDitConfig::tiny(),
        WanDitConfig::small(),
        WanDitConfig::wan21_1_3b(),
        WanDitConfig::wan21_14b(),
    ] {
        c.validate().unwrap();
    }
    assert_eq!(WanDitConfig::wan21_1_3b().dim(), 1536);
}

#[test]
fn window_covering_all_frames_equals_full_attention() {
    let d = Default::default();
    let full = WanDitConfig::tiny().init::<B>(&d).unwrap();
    let (x, t, c) = inputs(5);
    let want = full.forward(x.clone(), t.clone(), c.clone()).unwrap();
    for w in [5, 8] {
        let mut windowed = full.clone();
        windowed.config = windowed.config.clone().with_attn_window(Some(w));
        windowed
            .forward(x.clone(), t.clone(), c.clone())
            .unwrap()
            .into_data()
            .assert_approx_eq::<f32>(&want.clone().into_data(), Tolerance::absolute(1e-6));
    }
    // A shorter window changes the result (the layers really are windowed).
    let mut short = full.clone();
    short.config = short.config.clone().with_attn_window(Some(2));
    let diff = (short.forward(x, t, c).unwrap() - want)
        .abs()
        .max()
        .into_scalar();
    assert!(
        diff > 1e-4,
        "windowed output identical to full attention ({diff})"
    );
}

#[test]
fn windowed_dit_is_local_in_time() {
    // With T_w = 2 and 2 layers (even unshifted, odd shifted), frame 0's output depends on
    // frames 0..=2 at most; changing frame 5 must not change frame 0.
    let d = Default::default();
    let model = WanDitConfig::tiny()
        .with_attn_window(Some(2))
        .init::<B>(&d)
        .unwrap();
    let (x, t, c) = inputs(6);
    let y0 = model.forward(x.clone(), t.clone(), c.clone()).unwrap();
    let bump = Tensor::<B, 5>::ones([2, 4, 1, 8, 8], &d);
    let x2 = x.clone().slice_assign([0..2, 0..4, 5..6, 0..8, 0..8], bump);
    let y1 = model.forward(x2, t, c).unwrap();
    let first = |y: Tensor<B, 5>| y.slice([0..2, 0..4, 0..1, 0..8, 0..8]);
    first(y1.clone())
        .into_data()
        .assert_approx_eq::<f32>(&first(y0.clone()).into_data(), Tolerance::absolute(1e-6));
    let last = |y: Tensor<B, 5>| y.slice([0..2, 0..4, 5..6, 0..8, 0..8]);
    assert!((last(y1) - last(y0)).abs().max().into_scalar() > 1e-4);
}

#[test]
fn extra_in_context_tokens_influence_main_tokens() {
    let d = Default::default();
    let model = WanDitConfig::tiny().init::<B>(&d).unwrap();
    let (x, t, c) = inputs(3);
    let grid = model.patched_grid(3, 8, 8).unwrap();
    let extra = ExtraTokens {
        positions: vec![[0.5, 1.0, 1.0], [2.0, 3.0, 3.0]],
        frames: vec![0, 2],
    };
    let layout = model.layout(grid, Some(&extra), &d);
    assert_eq!(layout.num_tokens(), 48 + 2);
    assert_eq!(layout.main_tokens, 48);
    let (temb, tproj) = model.embed_timestep(t);
    let text = model.embed_text(c);
    let tokens = model.patchify(x);
    let run = |e: Tensor<B, 3>| {
        let seq = Tensor::cat(vec![tokens.clone(), e], 1);
        let out = model.forward_tokens(
            seq,
            &layout,
            tproj.clone(),
            &TextCondition::Shared(text.clone()),
        );
        model.head(out.slice([0..2, 0..48, 0..40]), temb.clone())
    };
    // (Random, not constant, extra tokens: LayerNorm maps every constant vector to zero.)
    let a = run(Tensor::random(
        [2, 2, 40],
        Distribution::Normal(0.0, 1.0),
        &d,
    ));
    let b = run(Tensor::random(
        [2, 2, 40],
        Distribution::Normal(0.0, 1.0),
        &d,
    ));
    assert_eq!(a.dims(), [2, 48, 4 * 4]);
    assert!((a - b).abs().max().into_scalar() > 1e-4);
}

#[test]
fn forward_is_deterministic() {
    let d = Default::default();
    let model = WanDitConfig::tiny().init::<B>(&d).unwrap();
    let (x, t, c) = inputs(3);
    let a = model
        .forward(x.clone(), t.clone(), c.clone())
        .unwrap()
        .into_data();
    let b = model.forward(x, t, c).unwrap().into_data();
    assert_eq!(a, b);
}

#[test]
fn a_training_step_reduces_the_flow_matching_loss() {
    type AB = Autodiff<B>;
    let d = Default::default();
    let mut model = WanDitConfig::tiny().init::<AB>(&d).unwrap();
    let mut optim = AdamWConfig::new().init();
    let x0 = Tensor::<AB, 5>::random([2, 4, 1, 8, 8], Distribution::Normal(0.0, 1.0), &d);
    let noise = Tensor::<AB, 5>::random([2, 4, 1, 8, 8], Distribution::Normal(0.0, 1.0), &d);
    let sigma = Tensor::<AB, 1>::from_floats([0.3, 0.7], &d);
    let text = Tensor::<AB, 3>::random([2, 4, 16], Distribution::Normal(0.0, 1.0), &d);
    let xt = noisy_sample(x0.clone(), noise.clone(), sigma.clone());
    let target = velocity_target(x0, noise);
    let mut losses = Vec::new();
    for _ in 0..5 {
        let v = model
            .forward(xt.clone(), sigma.clone() * 1000.0, text.clone())
            .unwrap();
        let loss = (v - target.clone()).powf_scalar(2.0).mean();
        losses.push(loss.clone().into_scalar());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-3, model, grads);
    }
    assert!(losses[4] < losses[0], "{losses:?}");
    assert!(model.num_params() > 50_000);
}

#[test]
fn per_segment_prompts_reach_only_their_time_span() {
    let d = Default::default();
    let model = WanDitConfig::tiny().init::<B>(&d).unwrap();
    let (x, t, _) = inputs(4);
    let grid = model.patched_grid(4, 8, 8).unwrap();
    let layout = model.layout(grid, None, &d);
    let (temb, tproj) = model.embed_timestep(t);
    let tokens = model.patchify(x);
    let seg_a = Tensor::<B, 3>::random([2, 6, 16], Distribution::Normal(0.0, 1.0), &d);
    let seg_b = Tensor::<B, 3>::random([2, 6, 16], Distribution::Normal(0.0, 1.0), &d);
    let run = |texts: Vec<Tensor<B, 3>>, fps: usize| {
        let s = texts.len();
        let text = model.embed_segment_text(Tensor::stack(texts, 1));
        let cond = TextCondition::Segmented {
            text,
            plan: layout.segment_plan(fps, s),
        };
        model.head(
            model.forward_tokens(tokens.clone(), &layout, tproj.clone(), &cond),
            temb.clone(),
        )
    };
    // One segment covering everything is the shared prompt.
    let shared = TextCondition::Shared(model.embed_text(seg_a.clone()));
    let want = model.head(
        model.forward_tokens(tokens.clone(), &layout, tproj.clone(), &shared),
        temb.clone(),
    );
    run(vec![seg_a.clone()], 4)
        .into_data()
        .assert_approx_eq::<f32>(&want.into_data(), Tolerance::absolute(1e-6));
    // Two segments of 2 frames with full self-attention: changing segment 1's prompt changes
    // everything (self-attention mixes), but a 1-layer-deep check is the cross-attention itself:
    // with a window of 2 frames, frames 0-1 never see segment 1's prompt.
    let windowed = {
        let mut m = model.clone();
        m.config = m.config.clone().with_attn_window(Some(2));
        m
    };
    let wl = windowed.layout(grid, None, &d);
    let run_w = |second: Tensor<B, 3>| {
        let text = windowed.embed_segment_text(Tensor::stack(vec![seg_a.clone(), second], 1));
        let cond = TextCondition::Segmented {
            text,
            plan: wl.segment_plan(2, 2),
        };
        windowed.forward_tokens(tokens.clone(), &wl, tproj.clone(), &cond)
    };
    // Layer 1 is shifted (windows {0}, {1,2}, {3}), so frame 0 stays isolated from frames 2-3.
    let a = run_w(seg_b.clone());
    let b = run_w(seg_b.clone() * 2.0 + 1.0);
    let first = |y: Tensor<B, 3>| y.slice([0..2, 0..16, 0..40]);
    first(a.clone())
        .into_data()
        .assert_approx_eq::<f32>(&first(b.clone()).into_data(), Tolerance::absolute(1e-6));
    let last = |y: Tensor<B, 3>| y.slice([0..2, 48..64, 0..40]);
    assert!((last(a) - last(b)).abs().max().into_scalar() > 1e-4);
}

#[test]
fn a_model_grown_in_depth_computes_what_it_did_and_its_new_blocks_learn() {
    type A = Autodiff<B>;
    let d = Default::default();
    let small = WanDitConfig::tiny().init::<A>(&d).unwrap();
    let have = small.config.num_layers;
    let deeper_config = WanDitConfig {
        num_layers: have + 2,
        ..WanDitConfig::tiny()
    };
    let (x, t, c) = inputs(5);
    let (x, t, c) = (
        Tensor::<A, 5>::from_inner(x),
        Tensor::<A, 1>::from_inner(t),
        Tensor::<A, 3>::from_inner(c),
    );
    let want = small.forward(x.clone(), t.clone(), c.clone()).unwrap();
    let grown = small
        .clone()
        .grown_to(deeper_config.init::<A>(&d).unwrap())
        .unwrap();
    assert_eq!(grown.blocks.len(), have + 2);
    assert_eq!(grown.config, deeper_config);
    // The appended blocks add nothing: the same output, exactly.
    let out = grown.forward(x, t, c).unwrap();
    assert_eq!(
        out.clone().into_data().to_vec::<f32>().unwrap(),
        want.into_data().to_vec::<f32>().unwrap()
    );
    // Their zeroed output projections still get gradients, so they can learn.
    let grads = out.square().mean().backward();
    for block in &grown.blocks[have..] {
        let g = block.ffn.proj_out.weight.grad(&grads).unwrap();
        assert!(g.abs().max().into_scalar() > 0.0);
    }
    // Anything but a larger depth is refused.
    let wider = WanDitConfig {
        num_layers: have + 1,
        ffn_dim: WanDitConfig::tiny().ffn_dim * 2,
        ..WanDitConfig::tiny()
    };
    assert!(small
        .clone()
        .grown_to(wider.init::<A>(&d).unwrap())
        .is_err());
    let shallower = WanDitConfig {
        num_layers: have - 1,
        ..WanDitConfig::tiny()
    };
    assert!(small.grown_to(shallower.init::<A>(&d).unwrap()).is_err());
}
