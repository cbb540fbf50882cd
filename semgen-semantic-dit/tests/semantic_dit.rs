//! Semantic generator behaviour: shapes, validation, segment prompts, loss and sampling.

use burn::backend::{Autodiff, NdArray};
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::{Distribution, Tolerance};
use rand::SeedableRng;
use semgen_core::sampling::{sample, Control, StepInfo, UniPc};
use semgen_core::wan_dit::WanDitConfig;
use semgen_semantic_dit::{
    SemanticDenoiser, SemanticDitConfig, SemanticDitError, SemanticText, TextRefinerConfig,
};

type B = NdArray;

fn randn<const D: usize>(shape: [usize; D]) -> Tensor<B, D> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), &Default::default())
}

#[test]
fn config_rules() {
    let d = Default::default();
    let c = SemanticDitConfig::tiny(8, 16);
    assert_eq!(c.dit.patch_size, [1, 1, 1]);
    assert!(
        SemanticDitConfig::new(WanDitConfig::tiny().with_attn_window(Some(2)))
            .init::<B>(&d)
            .is_err()
    );
    assert!(c.clone().with_frames_per_segment(0).init::<B>(&d).is_err());
    let m = c.init::<B>(&d).unwrap();
    let e = m.forward(
        randn([1, 4, 2, 2, 2]),
        Tensor::from_floats([1.0], &d),
        SemanticText::Shared(randn([1, 3, 16])),
    );
    assert_eq!(
        e.unwrap_err(),
        SemanticDitError::Channels {
            expected: 8,
            found: 4
        }
    );
}

#[test]
fn each_segment_prompt_steers_its_own_span_through_cross_attention() {
    let d = Default::default();
    let m = SemanticDitConfig::tiny(8, 16)
        .with_frames_per_segment(2)
        .init::<B>(&d)
        .unwrap();
    let z = randn([1, 8, 6, 2, 2]);
    let t = Tensor::<B, 1>::from_floats([500.0], &d);
    let (a, b, c) = (randn([1, 4, 16]), randn([1, 4, 16]), randn([1, 4, 16]));
    // One segment spanning everything equals the shared prompt.
    let shared = m
        .forward(z.clone(), t.clone(), SemanticText::Shared(a.clone()))
        .unwrap();
    let single = m
        .forward(
            z.clone(),
            t.clone(),
            SemanticText::Segments(Tensor::stack(vec![a.clone()], 1)),
        )
        .unwrap();
    single
        .into_data()
        .assert_approx_eq::<f32>(&shared.into_data(), Tolerance::absolute(1e-6));
    // Too many segments for the frames is an error, not a silent misassignment.
    let four = SemanticText::Segments(Tensor::stack(
        vec![a.clone(), b.clone(), c.clone(), a.clone()],
        1,
    ));
    assert!(matches!(
        m.forward(z.clone(), t.clone(), four),
        Err(SemanticDitError::TooManySegments { .. })
    ));
    // Three segments: the output changes when one segment's prompt changes.
    let story = |mid: Tensor<B, 3>| {
        m.forward(
            z.clone(),
            t.clone(),
            SemanticText::Segments(Tensor::stack(vec![a.clone(), mid, c.clone()], 1)),
        )
        .unwrap()
    };
    let diff = (story(b.clone()) - story(b * 3.0))
        .abs()
        .max()
        .into_scalar();
    assert!(diff > 1e-4);
}

#[test]
fn loss_is_seeded_and_training_reduces_it() {
    type AB = Autodiff<B>;
    let d = Default::default();
    let mut m = SemanticDitConfig::tiny(8, 16).init::<AB>(&d).unwrap();
    let z = Tensor::<AB, 5>::random([2, 8, 2, 2, 2], Distribution::Normal(0.0, 1.0), &d);
    let text = SemanticText::Shared(Tensor::<AB, 3>::random(
        [2, 3, 16],
        Distribution::Normal(0.0, 1.0),
        &d,
    ));
    let eval = |m: &semgen_semantic_dit::SemanticDit<AB>| -> f32 {
        (0..4u64)
            .map(|s| {
                m.training_loss(
                    z.clone(),
                    text.clone(),
                    &mut rand::rngs::StdRng::seed_from_u64(50 + s),
                )
                .unwrap()
                .into_scalar()
            })
            .sum()
    };
    let before = eval(&m);
    assert_eq!(before, eval(&m));
    let mut optim = AdamWConfig::new().init();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    for _ in 0..8 {
        let loss = m.training_loss(z.clone(), text.clone(), &mut rng).unwrap();
        let g = GradientsParams::from_grads(loss.backward(), &m);
        m = optim.step(2e-3, m, g);
    }
    assert!(eval(&m) < before);
}

#[test]
fn guided_sampling_is_deterministic() {
    let d = Default::default();
    let m = SemanticDitConfig::tiny(8, 16).init::<B>(&d).unwrap();
    let text = SemanticText::Shared(randn([1, 3, 16]));
    let noise = randn([1, 8, 3, 2, 2]);
    let run = || {
        let den = SemanticDenoiser::new(&m, [3, 2, 2], text.clone(), 3.0, &d).unwrap();
        let mut s = UniPc::<B, 5>::new(4, 3.0);
        sample::<B, 5>(
            &den,
            &mut s,
            noise.clone(),
            &mut |_: &StepInfo, _: &Tensor<B, 5>| Control::Continue,
        )
        .unwrap()
    };
    assert_eq!(run().into_data(), run().into_data());
    // A guidance interval that excludes σ gives the unguided prediction; one that holds it, the
    // guided one.
    use semgen_core::sampling::{Denoiser, GuidanceSchedule};
    let bind = |g: f64| SemanticDenoiser::new(&m, [3, 2, 2], text.clone(), g, &d).unwrap();
    let late = GuidanceSchedule {
        sigma_min: 0.6,
        ..Default::default()
    };
    let v =
        |den: SemanticDenoiser<B>, sigma: f32| den.velocity(noise.clone(), sigma * 1000.0, sigma);
    assert_eq!(
        v(bind(3.0).with_schedule(late), 0.5).into_data(),
        v(bind(1.0), 0.5).into_data()
    );
    assert_eq!(
        v(bind(3.0).with_schedule(late), 0.7).into_data(),
        v(bind(3.0), 0.7).into_data()
    );
    assert_ne!(v(bind(3.0), 0.7).into_data(), v(bind(1.0), 0.7).into_data());
}

#[test]
fn weighted_loss_is_the_weighted_token_mean() {
    // Uniform weights give the plain loss (same random draws); weights on one token give that
    // token's error alone, which differs; weights of the wrong shape are a clear error.
    let d = Default::default();
    let m = SemanticDitConfig::tiny(8, 16).init::<B>(&d).unwrap();
    let z = randn([2, 8, 2, 2, 2]);
    let text = SemanticText::Shared(randn([2, 3, 16]));
    let loss = |w: Option<Tensor<B, 5>>| {
        m.training_loss_weighted(
            z.clone(),
            text.clone(),
            w,
            &mut rand::rngs::StdRng::seed_from_u64(9),
        )
    };
    let plain = m
        .training_loss(
            z.clone(),
            text.clone(),
            &mut rand::rngs::StdRng::seed_from_u64(9),
        )
        .unwrap()
        .into_scalar();
    let uniform = loss(Some(Tensor::full([2, 1, 2, 2, 2], 3.0, &d)))
        .unwrap()
        .into_scalar();
    assert!(
        (plain - uniform).abs() <= 1e-6 * plain.abs(),
        "{plain} vs {uniform}"
    );
    let mut one = vec![0.0f32; 16];
    one[5] = 1.0;
    let single = loss(Some(Tensor::from_data(
        TensorData::new(one, [2, 1, 2, 2, 2]),
        &d,
    )))
    .unwrap()
    .into_scalar();
    assert!((single - plain).abs() > 1e-4, "{single} vs {plain}");
    let err = loss(Some(Tensor::ones([2, 8, 2, 2, 2], &d))).unwrap_err();
    assert!(matches!(err, SemanticDitError::Shape(_)), "{err}");
}

#[test]
fn text_refiner_grafts_as_the_identity_and_makes_token_order_matter() {
    let d = Default::default();
    let m = SemanticDitConfig::tiny(8, 16).init::<B>(&d).unwrap();
    let z = randn([1, 8, 4, 2, 2]);
    let t = Tensor::<B, 1>::from_floats([500.0], &d);
    let text = randn([1, 4, 16]);
    // The same tokens in another order (first and last swapped).
    let swapped = Tensor::cat(
        vec![
            text.clone().slice([0..1, 3..4, 0..16]),
            text.clone().slice([0..1, 1..3, 0..16]),
            text.clone().slice([0..1, 0..1, 0..16]),
        ],
        1,
    );
    let v = |m: &semgen_semantic_dit::SemanticDit<B>, text: Tensor<B, 3>| {
        m.forward(z.clone(), t.clone(), SemanticText::Shared(text))
            .unwrap()
    };
    // Cross-attention alone reads the prompt as a set: reordering its tokens changes nothing,
    // which is why "a red square moving up and a blue ring moving down" can lose which object
    // moves which way unless the text features themselves carry it.
    let plain = v(&m, text.clone());
    plain.clone().into_data().assert_approx_eq::<f32>(
        &v(&m, swapped.clone()).into_data(),
        Tolerance::absolute(1e-5),
    );

    // A grafted refiner starts as the identity, for shared and per-segment prompts alike.
    let segments = randn([1, 2, 4, 16]);
    let seg_before = m
        .forward(
            z.clone(),
            t.clone(),
            SemanticText::Segments(segments.clone()),
        )
        .unwrap();
    let mut r = m
        .with_text_refiner(TextRefinerConfig::new(16).with_layers(1), &d)
        .unwrap();
    assert_eq!(r.config.text_refiner.as_ref().unwrap().layers, 1);
    v(&r, text.clone())
        .into_data()
        .assert_approx_eq::<f32>(&plain.into_data(), Tolerance::absolute(1e-5));
    r.forward(z.clone(), t.clone(), SemanticText::Segments(segments))
        .unwrap()
        .into_data()
        .assert_approx_eq::<f32>(&seg_before.into_data(), Tolerance::absolute(1e-5));

    // Once its output projection is trained away from zero, the order of the tokens matters.
    let refiner = r.text_refiner.as_mut().unwrap();
    refiner.blocks[0].to_out = burn::nn::LinearConfig::new(16, 16).init(&d);
    let diff: f32 = (v(&r, text) - v(&r, swapped)).abs().max().into_scalar();
    assert!(diff > 1e-4, "token order ignored: {diff}");

    // A refiner of another width than the text, or whose heads do not divide it, is refused.
    let m = SemanticDitConfig::tiny(8, 16).init::<B>(&d).unwrap();
    assert!(m.with_text_refiner(TextRefinerConfig::new(12), &d).is_err());
    let wrong = SemanticDitConfig::tiny(8, 16)
        .with_text_refiner(Some(TextRefinerConfig::new(16).with_heads(5)))
        .init::<B>(&d);
    assert!(wrong
        .unwrap_err()
        .to_string()
        .contains("5 heads do not divide"));
}
