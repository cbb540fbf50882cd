//! Training: presets, loss decrease, atomic checkpoints, and resume == continuous.

use burn::backend::{Autodiff, NdArray};
use burn::module::AutodiffModule;
use semgen_vae::train::{VaeTrainConfig, VaeTrainer, CHECKPOINT_FILE, STATE_FILE};
use semgen_vae::WanVae;
use std::path::Path;

type B = Autodiff<NdArray>;

fn config_file(name: &str) -> VaeTrainConfig {
    VaeTrainConfig::load(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("configs")
            .join(name),
    )
    .unwrap()
}

fn weights(t: &VaeTrainer<B>) -> Vec<f32> {
    let m = t.model.valid();
    [
        m.encoder.conv_in.weight.val(),
        m.decoder.conv_out.weight.val(),
    ]
    .into_iter()
    .flat_map(|w| w.into_data().to_vec::<f32>().unwrap())
    .collect()
}

#[test]
fn config_files_are_the_presets() {
    assert_eq!(config_file("tiny.toml"), VaeTrainConfig::tiny());
    assert_eq!(
        config_file("shapes-small.toml"),
        VaeTrainConfig::shapes_small()
    );
    assert_eq!(
        config_file("shapes-small-image.toml"),
        VaeTrainConfig::shapes_small_image()
    );
    assert_eq!(
        config_file("shapes-small-decoder.toml"),
        VaeTrainConfig::shapes_small_decoder()
    );
    assert_eq!(
        config_file("shapes-small-decoder-objects.toml"),
        VaeTrainConfig::shapes_small_decoder_objects()
    );
    assert_eq!(
        VaeTrainConfig::from_toml(&VaeTrainConfig::tiny().to_toml()).unwrap(),
        VaeTrainConfig::tiny()
    );
    let mut bad = VaeTrainConfig::tiny();
    bad.model.preset = "huge".into();
    assert!(bad.model_config().is_err());
    assert!(VaeTrainConfig::from_toml("[model]\npreset = \"tiny\"\nextra = 1").is_err());
}

#[test]
fn a_few_steps_lower_the_loss_and_resume_equals_continuous() {
    let device = Default::default();
    let mut cfg = VaeTrainConfig::tiny();
    cfg.train.steps = 3;
    cfg.train.checkpoint_every = 2;

    // Continuous run, with the loss on a fixed batch before and after.
    let mut continuous = VaeTrainer::<B>::new(cfg.clone(), &device).unwrap();
    let init = continuous.model.clone();
    let fixed = continuous.batch(0).unwrap();
    let before = continuous
        .loss(&continuous.model, fixed.clone(), 0)
        .unwrap()
        .total
        .into_scalar();
    let dir = tempfile::tempdir().unwrap();
    let mut losses = Vec::new();
    continuous.run(dir.path(), |s| losses.push(s.loss)).unwrap();
    let after = continuous
        .loss(&continuous.model, fixed, 0)
        .unwrap()
        .total
        .into_scalar();
    println!("fixed-batch loss {before:.4} -> {after:.4}; step losses {losses:?}");
    assert!(after < before, "loss did not decrease: {before} -> {after}");
    assert!(dir.path().join(CHECKPOINT_FILE).is_file() && dir.path().join(STATE_FILE).is_file());

    // The same run stopped after 2 steps, then resumed for 2 more.
    let mut first = cfg.clone();
    first.train.steps = 2;
    let mut half = VaeTrainer::<B>::new(first, &device).unwrap();
    half.model = init;
    let split = tempfile::tempdir().unwrap();
    half.run(split.path(), |_| {}).unwrap();
    let mut resumed = VaeTrainer::<B>::resume(cfg.clone(), split.path(), &device).unwrap();
    assert_eq!(resumed.step, 2);
    resumed.run(split.path(), |_| {}).unwrap();
    assert_eq!(resumed.step, 3);
    assert_eq!(weights(&resumed), weights(&continuous));

    // The saved checkpoint is a wan_vae checkpoint that loads for inference.
    let (loaded, _) = WanVae::<NdArray>::load(
        &continuous.model.config,
        &dir.path().join(CHECKPOINT_FILE),
        &device,
    )
    .unwrap();
    assert_eq!(
        loaded.encoder.conv_in.weight.val().into_data(),
        continuous
            .model
            .valid()
            .encoder
            .conv_in
            .weight
            .val()
            .into_data()
    );

    // A different [model] section cannot resume this run.
    let mut other = cfg;
    other.model.z_dim = Some(8);
    assert!(VaeTrainer::<B>::resume(other, split.path(), &device).is_err());
}

/// The anchor target averages each latent cell: frame 0 alone, then 4-frame blocks, 8×8 pixels.
#[test]
fn latent_cell_means_follow_the_causal_grouping() {
    use burn::prelude::*;
    use semgen_vae::train::latent_cell_means;
    let device = Default::default();
    // [1, 1, 5, 8, 16]: value = frame index + 10·(x ≥ 8).
    let (t, h, w) = (5, 8, 16);
    let v: Vec<f32> = (0..t * h * w)
        .map(|i| (i / (h * w)) as f32 + if i % w >= 8 { 10.0 } else { 0.0 })
        .collect();
    let x = Tensor::<NdArray, 5>::from_data(TensorData::new(v, [1, 1, t, h, w]), &device);
    let m = latent_cell_means(x);
    assert_eq!(m.dims(), [1, 1, 2, 1, 2]);
    let got = m.into_data().to_vec::<f32>().unwrap();
    // frame 0: 0 and 10; frames 1..5: mean 2.5 and 12.5.
    assert_eq!(got, vec![0.0, 10.0, 2.5, 12.5]);
}

/// An inflated image VAE is that image VAE per latent frame: latent frame k encodes frame 4k
/// alone, and each decoded frame repeats the image decode of its latent frame.
#[test]
fn inflated_image_vae_acts_per_latent_frame() {
    use burn::prelude::*;
    use semgen_vae::WanVaeConfig;
    let device = Default::default();
    let vae = WanVaeConfig::tiny()
        .init::<NdArray>(&device)
        .unwrap()
        .inflate_image();
    let (t, h, w) = (9, 16, 16);
    let v: Vec<f32> = (0..3 * t * h * w)
        .map(|i| (i as f32 * 0.731).sin() * 0.9)
        .collect();
    let clip = Tensor::<NdArray, 5>::from_data(TensorData::new(v, [1, 3, t, h, w]), &device);
    let moments = vae.encode_moments(clip.clone()).unwrap();
    let z_dim = vae.config.z_dim;
    let mu = moments.clone().narrow(1, 0, z_dim);
    let max_diff =
        |a: Tensor<NdArray, 5>, b: Tensor<NdArray, 5>| -> f32 { (a - b).abs().max().into_scalar() };
    for k in 0..3 {
        let still = vae
            .encode_moments(clip.clone().narrow(2, 4 * k, 1))
            .unwrap();
        let d = max_diff(moments.clone().narrow(2, k, 1), still);
        assert!(
            d < 1e-5,
            "latent frame {k} differs from frame {} encoded alone by {d}",
            4 * k
        );
    }
    let video = vae.decode_unclamped(mu.clone()).unwrap();
    assert_eq!(video.dims(), [1, 3, t, h, w]);
    for k in 0..3 {
        let image = vae.decode_unclamped(mu.clone().narrow(2, k, 1)).unwrap();
        let frames = if k == 0 { 0..1 } else { 4 * k - 3..4 * k + 1 };
        for f in frames {
            let d = max_diff(video.clone().narrow(2, f, 1), image.clone());
            assert!(
                d < 1e-5,
                "frame {f} differs from the image decode of latent {k} by {d}"
            );
        }
    }
}

/// A phase-2 run whose image VAE is missing says which file, instead of training from scratch.
#[test]
fn missing_init_weights_are_a_typed_error() {
    let mut cfg = VaeTrainConfig::tiny();
    cfg.model.init_from = Some("no/such/vae.safetensors".into());
    cfg.model.inflate = true;
    match VaeTrainer::<B>::new(cfg, &Default::default()) {
        Err(semgen_vae::train::TrainError::InitFrom { path, .. }) => {
            assert_eq!(path, Path::new("no/such/vae.safetensors"))
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("trained without its initial weights"),
    }
}

/// The object weights cover each object's box around its true centre in every frame, follow the
/// same frame and crop window as the clip, and a weight of 1 everywhere gives the plain loss.
#[test]
fn object_weights_mark_the_objects_and_uniform_weights_change_nothing() {
    use burn::tensor::Tensor;
    use semgen_vae::train::{vae_loss, weighted_vae_loss, LossWeights};
    let mut cfg = VaeTrainConfig::tiny();
    cfg.data.crop = None;
    cfg.train.object_weight = 4.0;
    let trainer = VaeTrainer::<B>::new(cfg.clone(), &Default::default()).unwrap();
    let (video, weights) = trainer.batch_and_weights(0).unwrap();
    let weights = weights.expect("object_weight 4 gives weights");
    assert_eq!(weights.dims(), video.dims());
    let world = semgen_data::ShapesWorld::new(semgen_data::WorldConfig {
        seed: cfg.data.seed,
        frames: cfg.data.frames,
        height: cfg.data.height,
        width: cfg.data.width,
        max_objects: cfg.data.max_objects,
        ..Default::default()
    })
    .unwrap();
    let clip = world.clip(semgen_data::Split::Train, 0).unwrap();
    let values = weights.clone().into_data().to_vec::<f32>().unwrap();
    let [_, _, t, h, w] = weights.dims();
    let at = |c: usize, f: usize, y: usize, x: usize| values[((c * t + f) * h + y) * w + x];
    for object in &clip.plan.objects {
        for f in 0..t {
            let [cx, cy] = object.centres[f];
            // The pixel holding the centre is an object pixel in every channel.
            for c in 0..3 {
                assert_eq!(at(c, f, cy as usize, cx as usize), 4.0);
            }
        }
    }
    let marked = values.iter().filter(|&&v| v == 4.0).count();
    assert!(
        marked > 0 && marked < values.len() / 2,
        "{marked} of {}",
        values.len()
    );
    assert!(values.iter().all(|&v| v == 1.0 || v == 4.0));
    // Uniform weights: exactly the unweighted loss.
    let recon = video.clone() * 0.5;
    let mu = Tensor::<B, 5>::zeros([1, 4, 2, 4, 4], &Default::default());
    let lw = LossWeights {
        l1: 1.0,
        mse: 1.0,
        kl: 0.0,
    };
    let plain = vae_loss(video.clone(), recon.clone(), mu.clone(), mu.clone(), lw);
    let ones = weighted_vae_loss(
        video.clone(),
        recon.clone(),
        mu.clone(),
        mu.clone(),
        Some(video.ones_like()),
        lw,
    );
    let scalar = |x: Tensor<B, 1>| x.into_scalar();
    let (a, b) = (scalar(plain.total), scalar(ones.total));
    assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    // The still-frame, cropped batch carries the same window of the weights.
    cfg.data.crop = Some(16);
    cfg.data.random_crop = true;
    cfg.data.still_frames = true;
    let trainer = VaeTrainer::<B>::new(cfg, &Default::default()).unwrap();
    let (video, weights) = trainer.batch_and_weights(3).unwrap();
    assert_eq!(weights.unwrap().dims(), video.dims());
}

/// A decoder-only run keeps the latent statistics stored with its starting weights (the frozen
/// encoder makes the same latents, so the pipeline's normalisation stays valid); a joint run
/// starts from the preset's identity statistics.
#[test]
fn decoder_only_runs_keep_the_stored_latent_statistics() {
    let dir = std::env::temp_dir().join(format!("semgen-vae-stats-{}", std::process::id()));
    let mut start = VaeTrainer::<B>::new(VaeTrainConfig::tiny(), &Default::default()).unwrap();
    start.model.config.latents_mean = vec![0.5, -0.25, 0.125, 1.0];
    start.model.config.latents_std = vec![2.0, 0.5, 1.5, 0.75];
    start.save(&dir).unwrap();
    let mut cfg = VaeTrainConfig::tiny();
    cfg.model.init_from = Some(dir.join(CHECKPOINT_FILE));
    cfg.train.decoder_only = true;
    let kept = VaeTrainer::<B>::new(cfg.clone(), &Default::default()).unwrap();
    assert_eq!(kept.model.config.latents_mean, vec![0.5, -0.25, 0.125, 1.0]);
    assert_eq!(kept.model.config.latents_std, vec![2.0, 0.5, 1.5, 0.75]);
    cfg.train.decoder_only = false;
    let joint = VaeTrainer::<B>::new(cfg, &Default::default()).unwrap();
    assert_eq!(joint.model.config.latents_mean, vec![0.0; 4]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// v6's two decoder phases (`configs/shapes-small/v6`, docs/vae.md "Session 30") chain from
/// v5's VAE, train only the decoder on the posterior mean (so v5's latents, and stages 1 and 2
/// with them, stay valid), and draw clips from world seeds no earlier phase used.
#[test]
fn the_v6_decoder_steps_chain_from_v5s_vae_and_keep_its_encoder() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/shapes-small/v6");
    let step = |name: &str| VaeTrainConfig::load(&dir.join(format!("{name}.toml"))).unwrap();
    let (image, video) = (
        step("01-vae-decoder-p6-image"),
        step("02-vae-decoder-p6-video"),
    );
    assert_eq!(
        image.model.init_from.as_deref(),
        Some(Path::new("checkpoints/shapes-small/vae.safetensors"))
    );
    // Step 2 starts from step 1's run folder as scripts/retrain-shapes-small.sh names it.
    assert_eq!(
        video.model.init_from.as_deref(),
        Some(Path::new("runs/v6/01-vae-decoder-p6-image/vae.safetensors"))
    );
    let script = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/retrain-shapes-small.sh"),
    )
    .unwrap();
    assert!(script.contains("--out runs/v6/$n"), "{script}");
    for (c, still, stop) in [(&image, true, 3000), (&video, false, 800)] {
        assert_eq!(c.model.preset, "shapes-small");
        assert!(c.model.z_dim.is_none() && !c.model.inflate);
        assert!(c.train.decoder_only && !c.train.sample_posterior);
        assert_eq!(c.train.kl_weight, 0.0);
        assert_eq!(c.train.object_weight, 20.0);
        assert_eq!(c.data.still_frames, still);
        assert_eq!(c.train.stop_at, Some(stop));
        assert!(c.train.stop_at.unwrap() <= c.train.steps);
        assert_eq!((c.data.height, c.data.width, c.data.crop), (64, 64, None));
    }
    // Phases 1–3 drew world seed 0, phase 4 seed 1, phase 5 seed 2.
    assert_eq!((image.data.seed, video.data.seed), (3, 4));
}

#[test]
fn the_v7_decoder_steps_continue_v6s_and_draw_new_worlds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let load = |v: &str, name: &str| {
        VaeTrainConfig::load(&root.join(format!("configs/shapes-small/{v}/{name}.toml"))).unwrap()
    };
    let (image, video) = (
        load("v7", "01-vae-decoder-p7-image"),
        load("v7", "02-vae-decoder-p7-video"),
    );
    // Step 1 starts from the installed (v6) VAE, step 2 from step 1's run folder as
    // scripts/retrain-shapes-small.sh names it.
    assert_eq!(
        image.model.init_from.as_deref(),
        Some(Path::new("checkpoints/shapes-small/vae.safetensors"))
    );
    assert_eq!(
        video.model.init_from.as_deref(),
        Some(Path::new("runs/v7/01-vae-decoder-p7-image/vae.safetensors"))
    );
    let script = std::fs::read_to_string(root.join("scripts/retrain-shapes-small.sh")).unwrap();
    assert!(script.contains("--out runs/v7/$n"), "{script}");
    // v6's recipe, step for step, but run to the end of each schedule.
    let (v6_image, v6_video) = (
        load("v6", "01-vae-decoder-p6-image"),
        load("v6", "02-vae-decoder-p6-video"),
    );
    for (c, v6) in [(&image, &v6_image), (&video, &v6_video)] {
        assert_eq!(c.model.preset, "shapes-small");
        assert!(c.model.z_dim.is_none() && !c.model.inflate);
        assert!(c.train.decoder_only && !c.train.sample_posterior);
        assert_eq!(c.train.kl_weight, 0.0);
        assert_eq!(c.train.object_weight, v6.train.object_weight);
        assert_eq!(c.train.lr, v6.train.lr);
        assert_eq!(c.data.still_frames, v6.data.still_frames);
        assert_eq!(c.data.batch_size, v6.data.batch_size);
        assert_eq!(c.train.stop_at, None);
        assert_eq!((c.data.height, c.data.width, c.data.crop), (64, 64, None));
    }
    assert_eq!((image.train.steps, video.train.steps), (3000, 600));
    // Earlier decoder phases drew world seeds 0–4.
    assert_eq!((image.data.seed, video.data.seed), (31, 32));
}
