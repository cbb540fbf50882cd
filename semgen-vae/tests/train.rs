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
