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
