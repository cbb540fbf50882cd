//! Refiner behaviour: controls equal the backbone, windows, in-context semantic tokens, CFG
//! dropout, the training loss and sampling.

use burn::backend::{Autodiff, NdArray};
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::{Distribution, Tolerance};
use rand::SeedableRng;
use semgen_core::attention::AttentionMode;
use semgen_core::sampling::{sample, Control, FlowMatchEuler, StepInfo};
use semgen_core::wan_dit::WanDitConfig;
use semgen_refiner::geometry::SemanticGeometry;
use semgen_refiner::refiner::{
    RefinerBatch, RefinerConfig, RefinerDenoiser, RefinerGuidance, SemanticInput,
};
use semgen_refiner::RefinerError;

type B = NdArray;

fn dit() -> WanDitConfig {
    WanDitConfig {
        in_channels: 4,
        out_channels: 4,
        ..WanDitConfig::tiny()
    }
}

fn randn<const D: usize>(shape: [usize; D]) -> Tensor<B, D> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), &Default::default())
}

fn close(a: Tensor<B, 5>, b: Tensor<B, 5>) {
    a.into_data()
        .assert_approx_eq::<f32>(&b.into_data(), Tolerance::absolute(1e-6));
}

#[test]
fn base_ct_is_exactly_the_backbone() {
    let d = Default::default();
    let model = RefinerConfig::base_ct(dit()).init::<B>(&d).unwrap();
    assert!(model.sem_proj.is_none());
    let (x, t, c) = (
        randn([1, 4, 3, 8, 8]),
        Tensor::<B, 1>::from_floats([400.0], &d),
        randn([1, 5, 16]),
    );
    let layout = model.layout([3, 8, 8], None, &d).unwrap();
    let got = model.forward(
        x.clone(),
        t.clone(),
        c.clone(),
        SemanticInput::None,
        &layout,
    );
    close(got, model.dit.forward(x, t, c).unwrap());
    // Base-CT-Swin is the windowed version of the same model.
    let swin = RefinerConfig::base_ct_swin(dit(), 2);
    assert_eq!(
        swin.dit.attention_mode(1),
        AttentionMode::Window {
            frames: 2,
            shifted: true
        }
    );
    assert_eq!(swin.semantic_dim, 0);
}

#[test]
fn layouts_refuse_mismatched_semantic_inputs() {
    let d = Default::default();
    let ct = RefinerConfig::base_ct(dit()).init::<B>(&d).unwrap();
    assert_eq!(
        ct.layout([3, 8, 8], Some([1, 2, 2]), &d).unwrap_err(),
        RefinerError::UnexpectedSemantic
    );
    let sg = RefinerConfig::semanticgen(dit(), 8, SemanticGeometry::shapes())
        .init::<B>(&d)
        .unwrap();
    assert_eq!(
        sg.layout([3, 8, 8], None, &d).unwrap_err(),
        RefinerError::MissingSemantic
    );
    assert!(matches!(
        sg.layout([3, 7, 8], Some([1, 2, 2]), &d),
        Err(RefinerError::Config(_))
    ));
    assert!(matches!(
        sg.check_semantic(&randn([1, 4, 1, 2, 2])),
        Err(RefinerError::SemanticChannels {
            expected: 8,
            found: 4
        })
    ));
    let bad = RefinerConfig::semanticgen(dit(), 8, SemanticGeometry::shapes()).with_text_drop(1.5);
    assert!(bad.init::<B>(&d).is_err());
}

#[test]
fn semantic_tokens_condition_and_null_token_ignores_them() {
    let d = Default::default();
    let model = RefinerConfig::semanticgen(dit(), 8, SemanticGeometry::shapes())
        .init::<B>(&d)
        .unwrap();
    let (x, t, c) = (
        randn([2, 4, 5, 8, 8]),
        Tensor::<B, 1>::from_floats([400.0, 600.0], &d),
        randn([2, 5, 16]),
    );
    let layout = model.layout([5, 8, 8], Some([3, 4, 4]), &d).unwrap();
    assert_eq!(layout.num_tokens(), 5 * 16 + 3 * 16);
    let (za, zb) = (randn([2, 8, 3, 4, 4]), randn([2, 8, 3, 4, 4]));
    let run = |z: Tensor<B, 5>, keep: Option<Tensor<B, 1>>| {
        model.forward(
            x.clone(),
            t.clone(),
            c.clone(),
            SemanticInput::Tokens { z_sem: z, keep },
            &layout,
        )
    };
    let (ya, yb) = (run(za.clone(), None), run(zb.clone(), None));
    assert_eq!(ya.dims(), [2, 4, 5, 8, 8]);
    assert!(
        (ya - yb).abs().max().into_scalar() > 1e-4,
        "z_sem has no effect"
    );
    let zero = Tensor::<B, 1>::zeros([2], &d);
    close(run(za, Some(zero.clone())), run(zb, Some(zero)));
}

#[test]
fn window_covering_the_clip_equals_full_attention_with_semantic_tokens() {
    let d = Default::default();
    let full = RefinerConfig::semanticgen(dit(), 8, SemanticGeometry::shapes())
        .init::<B>(&d)
        .unwrap();
    let (x, t, c, z) = (
        randn([1, 4, 5, 8, 8]),
        Tensor::<B, 1>::from_floats([300.0], &d),
        randn([1, 5, 16]),
        randn([1, 8, 3, 4, 4]),
    );
    let lf = full.layout([5, 8, 8], Some([3, 4, 4]), &d).unwrap();
    let want = full.forward(
        x.clone(),
        t.clone(),
        c.clone(),
        SemanticInput::tokens(z.clone()),
        &lf,
    );
    let mut windowed = full.clone();
    windowed.dit.config = windowed.dit.config.clone().with_attn_window(Some(5));
    let lw = windowed.layout([5, 8, 8], Some([3, 4, 4]), &d).unwrap();
    close(
        windowed.forward(
            x.clone(),
            t.clone(),
            c.clone(),
            SemanticInput::tokens(z.clone()),
            &lw,
        ),
        want.clone(),
    );
    // With short windows, semantic tokens of the last frames do not reach the first frame.
    windowed.dit.config = windowed.dit.config.clone().with_attn_window(Some(2));
    let lw = windowed.layout([5, 8, 8], Some([3, 4, 4]), &d).unwrap();
    let z2 = z
        .clone()
        .slice_assign([0..1, 0..8, 2..3, 0..4, 0..4], randn([1, 8, 1, 4, 4]));
    let a = windowed.forward(
        x.clone(),
        t.clone(),
        c.clone(),
        SemanticInput::tokens(z),
        &lw,
    );
    let b = windowed.forward(x, t, c, SemanticInput::tokens(z2), &lw);
    let first = |y: Tensor<B, 5>| y.slice([0..1, 0..4, 0..1, 0..8, 0..8]);
    close(first(a.clone()), first(b.clone()));
    assert!((a - b).abs().max().into_scalar() > 1e-4);
}

#[test]
fn training_loss_is_seeded_and_decreases() {
    type AB = Autodiff<B>;
    let d = Default::default();
    let cfg = RefinerConfig::semanticgen(dit(), 8, SemanticGeometry::shapes());
    let mut model = cfg.init::<AB>(&d).unwrap();
    let layout = model.layout([5, 8, 8], Some([3, 4, 4]), &d).unwrap();
    let batch = RefinerBatch {
        latents: Tensor::<AB, 5>::random([2, 4, 5, 8, 8], Distribution::Normal(0.0, 1.0), &d),
        z_sem: Some(Tensor::<AB, 5>::random(
            [2, 8, 3, 4, 4],
            Distribution::Normal(0.0, 1.0),
            &d,
        )),
        text: Tensor::<AB, 3>::random([2, 5, 16], Distribution::Normal(0.0, 1.0), &d),
        weights: None,
    };
    let loss_at = |m: &semgen_refiner::refiner::Refiner<AB>, seed: u64| {
        m.training_loss(
            batch.clone(),
            &layout,
            &mut rand::rngs::StdRng::seed_from_u64(seed),
        )
        .into_scalar()
    };
    assert_eq!(loss_at(&model, 3), loss_at(&model, 3));
    assert_ne!(loss_at(&model, 3), loss_at(&model, 4));
    let mut optim = AdamWConfig::new().init();
    let before: f32 = (0..4).map(|s| loss_at(&model, 100 + s)).sum();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    for _ in 0..8 {
        let loss = model.training_loss(batch.clone(), &layout, &mut rng);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(2e-3, model, grads);
    }
    let after: f32 = (0..4).map(|s| loss_at(&model, 100 + s)).sum();
    assert!(after < before, "loss did not decrease: {before} -> {after}");
}

#[test]
fn weighted_loss_is_the_weighted_mean_of_the_cells() {
    let d = Default::default();
    let model = RefinerConfig::semanticgen(dit(), 8, SemanticGeometry::shapes())
        .init::<B>(&d)
        .unwrap();
    let layout = model.layout([5, 8, 8], Some([3, 4, 4]), &d).unwrap();
    // Latent frame 0 is 30× larger than the others, so its cells' error dwarfs theirs and the
    // two selective weightings below cannot agree by chance (with plain random latents they
    // came within 0.1 % of each other about once in 30 runs).
    let scale = Tensor::cat(
        vec![
            Tensor::<B, 5>::full([2, 4, 1, 8, 8], 30.0, &d),
            Tensor::<B, 5>::ones([2, 4, 4, 8, 8], &d),
        ],
        2,
    );
    let (latents, z, text) = (
        randn([2, 4, 5, 8, 8]) * scale,
        randn([2, 8, 3, 4, 4]),
        randn([2, 5, 16]),
    );
    let loss = |weights: Option<Tensor<B, 5>>| {
        let batch = RefinerBatch {
            latents: latents.clone(),
            z_sem: Some(z.clone()),
            text: text.clone(),
            weights,
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        model.training_loss(batch, &layout, &mut rng).into_scalar()
    };
    let plain = loss(None);
    // A constant weight is the plain mean.
    let twos = loss(Some(Tensor::full([2, 1, 5, 8, 8], 2.0, &d)));
    assert!((plain - twos).abs() < 1e-5 * plain, "{plain} vs {twos}");
    // Weight only on latent frame 0, then only on frames 1..=4: the two means, weighted by
    // their cell counts (1 : 4), are the plain mean; and they differ (the weights select).
    let first = Tensor::<B, 5>::ones([2, 1, 1, 8, 8], &d);
    let only_first = loss(Some(Tensor::cat(
        vec![first.clone(), first.zeros_like().repeat_dim(2, 4)],
        2,
    )));
    let only_rest = loss(Some(Tensor::cat(
        vec![first.zeros_like(), first.repeat_dim(2, 4)],
        2,
    )));
    let mixed = (only_first + 4.0 * only_rest) / 5.0;
    assert!((plain - mixed).abs() < 1e-5 * plain, "{plain} vs {mixed}");
    assert!(
        only_first > 10.0 * only_rest,
        "{only_first} vs {only_rest}: the weights must select the cells"
    );
}

#[test]
fn sampling_with_guidance_is_deterministic_and_reduces_to_one_pass() {
    let d = Default::default();
    let model = RefinerConfig::semanticgen(dit(), 8, SemanticGeometry::shapes())
        .init::<B>(&d)
        .unwrap();
    let layout = model.layout([5, 8, 8], Some([3, 4, 4]), &d).unwrap();
    let (c, z) = (randn([1, 5, 16]), randn([1, 8, 3, 4, 4]));
    let noise = randn([1, 4, 5, 8, 8]);
    let run = |g: RefinerGuidance| {
        let den = RefinerDenoiser::new(&model, &layout, c.clone(), Some(z.clone()), g);
        let mut sched = FlowMatchEuler::new(3, 3.0);
        sample::<B, 5>(
            &den,
            &mut sched,
            noise.clone(),
            &mut |_: &StepInfo, _: &Tensor<B, 5>| Control::Continue,
        )
        .unwrap()
    };
    let guided = RefinerGuidance {
        text: 4.0,
        semantic: 2.0,
        ..Default::default()
    };
    close(run(guided), run(guided));
    // g_t = g_s = 1 is a plain conditional pass.
    let den = RefinerDenoiser::new(
        &model,
        &layout,
        c.clone(),
        Some(z.clone()),
        RefinerGuidance::default(),
    );
    let t = Tensor::<B, 1>::from_floats([500.0], &d);
    use semgen_core::sampling::{Denoiser, GuidanceSchedule};
    let plain = model.forward(
        noise.clone(),
        t,
        c.clone(),
        SemanticInput::tokens(z.clone()),
        &layout,
    );
    close(den.velocity(noise.clone(), 500.0, 0.5), plain.clone());
    // Outside its σ interval the guidance is off (the plain conditional pass); inside it, the
    // same as unscheduled guidance.
    let scheduled = RefinerGuidance {
        schedule: GuidanceSchedule {
            sigma_min: 0.6,
            ..Default::default()
        },
        ..guided
    };
    let bind = |g| RefinerDenoiser::new(&model, &layout, c.clone(), Some(z.clone()), g);
    close(
        bind(scheduled).velocity(noise.clone(), 500.0, 0.5),
        plain.clone(),
    );
    let inside = bind(scheduled).velocity(noise.clone(), 700.0, 0.7);
    close(
        inside.clone(),
        bind(guided).velocity(noise.clone(), 700.0, 0.7),
    );
    let off: f32 = (inside - bind(RefinerGuidance::default()).velocity(noise.clone(), 700.0, 0.7))
        .abs()
        .max()
        .into_scalar();
    assert!(
        off > 1e-4,
        "guidance changes the prediction inside the interval"
    );
    // A full rescale brings the guided prediction's spread to the conditional one's.
    let rescaled = bind(RefinerGuidance {
        schedule: GuidanceSchedule {
            rescale: 1.0,
            ..Default::default()
        },
        ..guided
    })
    .velocity(noise.clone(), 700.0, 0.7);
    let cond = bind(RefinerGuidance::default()).velocity(noise, 700.0, 0.7);
    let spread = |x: Tensor<B, 5>| {
        let m = x.clone().mean();
        (x - m.unsqueeze())
            .powi_scalar(2)
            .mean()
            .sqrt()
            .into_scalar()
    };
    assert!((spread(rescaled) - spread(cond)).abs() < 1e-4);
}

#[test]
fn story_tokens_read_their_own_segments_caption() {
    // Latent frame 0 and frames 1..=n belong to the first segment, frames n+1..=2n to the
    // second, and anything past the last segment to the last.
    assert_eq!(
        semgen_refiner::refiner::story_segment_ids(&[0, 1, 2, 3, 4, 5, 8, 9, 12], 4, 2),
        vec![0, 0, 0, 0, 0, 1, 1, 1, 1]
    );
    // A 2-segment story of 9 latent frames (33 pixel frames) with its 5-frame semantic grid,
    // windows of 4 latent frames.
    let d = Default::default();
    let model = RefinerConfig::semanticgen(
        WanDitConfig {
            attn_window: Some(4),
            ..dit()
        },
        8,
        SemanticGeometry::shapes(),
    )
    .init::<B>(&d)
    .unwrap();
    let layout = model.layout([9, 8, 8], Some([5, 4, 4]), &d).unwrap();
    let (first, second) = (randn([1, 5, 16]), randn([1, 5, 16]));
    let z = randn([1, 8, 5, 4, 4]);
    let x = randn([1, 4, 9, 8, 8]);
    use semgen_core::sampling::Denoiser;
    let g = RefinerGuidance {
        text: 3.0,
        semantic: 1.0,
        ..Default::default()
    };
    let story = |a: &Tensor<B, 3>, b: &Tensor<B, 3>| {
        let text = Tensor::stack::<4>(vec![a.clone(), b.clone()], 1);
        RefinerDenoiser::segmented(&model, &layout, text, 4, Some(z.clone()), g).velocity(
            x.clone(),
            500.0,
            0.5,
        )
    };
    let shared = |c: &Tensor<B, 3>| {
        RefinerDenoiser::new(&model, &layout, c.clone(), Some(z.clone()), g).velocity(
            x.clone(),
            500.0,
            0.5,
        )
    };
    // One caption in every segment is the shared caption, guidance included.
    close(story(&first, &first), shared(&first));
    // Two captions: the story differs from either caption alone, and most in the span of the
    // segment whose caption changed (self-attention carries some of it across).
    let two = story(&first, &second);
    let diff = |a: Tensor<B, 5>, b: Tensor<B, 5>, frames: std::ops::Range<usize>| {
        (a.narrow(2, frames.start, frames.len()) - b.narrow(2, frames.start, frames.len()))
            .abs()
            .mean()
            .into_scalar()
    };
    let vs_first = shared(&first);
    assert!(diff(two.clone(), vs_first.clone(), 5..9) > 1e-3);
    assert!(
        diff(two.clone(), vs_first.clone(), 5..9) > diff(two, vs_first, 0..5),
        "the second segment's frames changed most"
    );
}
