//! Loading (diffusers and original Wan2.1 names, semgen checkpoints) and bad-input errors.

use burn::backend::NdArray;
use burn::tensor::{Distribution, Tensor};
use semgen_core::checkpoint::{save_checkpoint, CheckpointMeta, LoadError};
use semgen_core::tensor_io::{read_safetensors, write_safetensors};
use semgen_core::ConfigError;
use semgen_vae::{VaeError, WanVae, WanVaeConfig, COMPONENT, DIFFUSERS_KEYS};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

type B = NdArray;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

fn fixture_config() -> WanVaeConfig {
    let text = std::fs::read_to_string(fixture_dir().join("wan_vae/config.json")).unwrap();
    WanVaeConfig::from_diffusers_json(&text).unwrap()
}

fn fixture_vae() -> WanVae<B> {
    WanVae::load(
        &fixture_config(),
        &fixture_dir().join("wan_vae/weights.safetensors"),
        &Default::default(),
    )
    .unwrap()
    .0
}

fn values(t: Tensor<B, 5>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().unwrap()
}

/// diffusers name -> original Wan2.1 name, written from the original module tree
/// (`wan/modules/vae.py`: `Sequential` residuals, flat `downsamples`/`upsamples`, `middle`,
/// `head`, top-level `conv1`/`conv2`), independently of the crate's rule table.
fn to_original(key: &str, nrb: usize) -> String {
    let seg: Vec<&str> = key.split('.').collect();
    let part = |name: &str| -> String {
        match name {
            "norm1" => "residual.0".into(),
            "conv1" => "residual.2".into(),
            "norm2" => "residual.3".into(),
            "conv2" => "residual.6".into(),
            "conv_shortcut" => "shortcut".into(),
            other => other.into(),
        }
    };
    let tail = |from: usize| {
        seg[from..]
            .iter()
            .map(|s| part(s))
            .collect::<Vec<_>>()
            .join(".")
    };
    match seg.as_slice() {
        ["quant_conv", p] => format!("conv1.{p}"),
        ["post_quant_conv", p] => format!("conv2.{p}"),
        [side, "conv_in", p] => format!("{side}.conv1.{p}"),
        [side, "norm_out", p] => format!("{side}.head.0.{p}"),
        [side, "conv_out", p] => format!("{side}.head.2.{p}"),
        ["encoder", "down_blocks", i, ..] => format!("encoder.downsamples.{i}.{}", tail(3)),
        [side, "mid_block", "resnets", j, ..] => {
            format!(
                "{side}.middle.{}.{}",
                if *j == "0" { 0 } else { 2 },
                tail(4)
            )
        }
        [side, "mid_block", "attentions", "0", ..] => {
            format!("{side}.middle.1.{}", seg[4..].join("."))
        }
        ["decoder", "up_blocks", i, "resnets", j, ..] => {
            let k = i.parse::<usize>().unwrap() * (nrb + 2) + j.parse::<usize>().unwrap();
            format!("decoder.upsamples.{k}.{}", tail(5))
        }
        ["decoder", "up_blocks", i, "upsamplers", "0", ..] => {
            let k = i.parse::<usize>().unwrap() * (nrb + 2) + nrb + 1;
            format!("decoder.upsamples.{k}.{}", seg[5..].join("."))
        }
        _ => panic!("unmapped key {key}"),
    }
}

#[test]
fn original_wan_names_load_to_the_same_model() {
    let cfg = fixture_config();
    let io = read_safetensors(&fixture_dir().join("wan_vae/weights.safetensors")).unwrap();
    let renamed: BTreeMap<_, _> = io
        .into_iter()
        .map(|(k, v)| (to_original(&k, cfg.num_res_blocks), v))
        .collect();
    // num_res_blocks = 1: level 0 is upsamples.0-1 (residuals) and upsamples.2 (resampler).
    assert!(renamed.contains_key("decoder.upsamples.2.resample.1.weight"));
    assert!(renamed.contains_key("encoder.middle.0.residual.6.bias"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wan21_vae_original.safetensors");
    write_safetensors(&path, &renamed, None).unwrap();

    let (original, report) = WanVae::<B>::load(&cfg, &path, &Default::default()).unwrap();
    assert_eq!(report.applied.len(), renamed.len());
    let z = Tensor::<B, 5>::random(
        [1, 4, 2, 4, 4],
        Distribution::Normal(0.0, 1.0),
        &Default::default(),
    );
    assert_eq!(
        values(original.decode(z.clone()).unwrap()),
        values(fixture_vae().decode(z).unwrap())
    );
}

#[test]
fn semgen_checkpoints_round_trip_and_check_the_component() {
    let vae = fixture_vae();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vae.safetensors");
    let config = serde_json::to_value(&vae.config).unwrap();
    save_checkpoint::<B, _>(
        &vae,
        &path,
        DIFFUSERS_KEYS,
        &CheckpointMeta::new(COMPONENT, 7, config.clone()),
    )
    .unwrap();
    let (back, _) = WanVae::<B>::load(&vae.config, &path, &Default::default()).unwrap();
    let z = Tensor::<B, 5>::random(
        [1, 4, 2, 2, 2],
        Distribution::Normal(0.0, 1.0),
        &Default::default(),
    );
    assert_eq!(
        values(back.decode(z.clone()).unwrap()),
        values(vae.decode(z).unwrap())
    );

    let other = dir.path().join("dit.safetensors");
    save_checkpoint::<B, _>(
        &vae,
        &other,
        DIFFUSERS_KEYS,
        &CheckpointMeta::new("semantic_dit", 7, config),
    )
    .unwrap();
    let err = WanVae::<B>::load(&vae.config, &other, &Default::default()).unwrap_err();
    assert!(
        matches!(&err, LoadError::WrongComponent { found, .. } if found == "semantic_dit"),
        "{err}"
    );
}

#[test]
fn another_components_weights_are_refused_clearly() {
    let err = WanVae::<B>::load(
        &fixture_config(),
        &fixture_dir().join("wan_dit/weights.safetensors"),
        &Default::default(),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, LoadError::WrongComponent { .. }), "{msg}");
    assert!(msg.contains("wan_dit") && msg.contains("wan_vae"), "{msg}");
}

#[test]
fn wrong_config_and_missing_tensors_are_typed_errors() {
    let weights = fixture_dir().join("wan_vae/weights.safetensors");
    let mut wider = fixture_config();
    wider.base_dim = 16;
    let err = WanVae::<B>::load(&wider, &weights, &Default::default()).unwrap_err();
    assert!(matches!(err, LoadError::ShapeMismatch { .. }), "{err}");

    let mut io = read_safetensors(&weights).unwrap();
    io.remove("decoder.conv_out.bias");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("partial.safetensors");
    write_safetensors(&path, &io, None).unwrap();
    let err = WanVae::<B>::load(&fixture_config(), &path, &Default::default()).unwrap_err();
    assert!(
        matches!(&err, LoadError::MissingKeys { keys, .. } if keys == &["decoder.conv_out.bias"]),
        "{err}"
    );

    let err = WanVae::<B>::load(
        &fixture_config(),
        &dir.path().join("nope.safetensors"),
        &Default::default(),
    )
    .unwrap_err();
    assert!(matches!(err, LoadError::NotFound(_)));
}

#[test]
fn bad_videos_and_latents_are_refused() {
    let vae = fixture_vae();
    let d = Default::default();
    let video = |t, h, w, c| Tensor::<B, 5>::zeros([1, c, t, h, w], &d);
    let err = vae.encode(video(4, 16, 16, 3)).unwrap_err();
    assert_eq!(err, VaeError::FrameCount { frames: 4 });
    assert!(err.to_string().contains("1 + 4k"), "{err}");
    assert_eq!(
        vae.encode(video(5, 20, 16, 3)).unwrap_err(),
        VaeError::Size {
            height: 20,
            width: 16,
            factor: 8
        }
    );
    assert_eq!(
        vae.encode(video(5, 16, 12, 3)).unwrap_err(),
        VaeError::Size {
            height: 16,
            width: 12,
            factor: 8
        }
    );
    assert!(matches!(
        vae.encode(video(1, 16, 16, 4)),
        Err(VaeError::Channels {
            expected: 3,
            found: 4,
            ..
        })
    ));
    assert!(matches!(
        vae.decode(video(1, 2, 2, 3)),
        Err(VaeError::Channels {
            expected: 4,
            found: 3,
            ..
        })
    ));
    // 1 frame and 1 + 4k frames are fine.
    assert_eq!(
        vae.encode(video(1, 8, 8, 3)).unwrap().dims(),
        [1, 4, 1, 1, 1]
    );
    assert_eq!(
        vae.encode(video(9, 8, 8, 3)).unwrap().dims(),
        [1, 4, 3, 1, 1]
    );
}

#[test]
fn unsupported_configs_are_refused() {
    let base = std::fs::read_to_string(fixture_dir().join("wan_vae/config.json")).unwrap();
    let with = |k: &str, v: serde_json::Value| {
        let mut j: serde_json::Value = serde_json::from_str(&base).unwrap();
        j[k] = v;
        WanVaeConfig::from_diffusers_json(&j.to_string())
    };
    assert!(
        matches!(with("is_residual", true.into()), Err(ConfigError::Invalid(m)) if m.contains("Wan2.2"))
    );
    assert!(matches!(
        with("patch_size", 2.into()),
        Err(ConfigError::Invalid(_))
    ));
    assert!(matches!(
        with("attn_scales", serde_json::json!([0.5])),
        Err(ConfigError::Invalid(_))
    ));
    assert!(matches!(
        with("temperal_downsample", serde_json::json!([true, true])),
        Err(ConfigError::Invalid(_))
    ));
    assert!(matches!(
        with("temperal_downsample", serde_json::json!([true, true, true])),
        Err(ConfigError::Invalid(_))
    ));
    assert!(matches!(
        with("latents_std", serde_json::json!([1.0, 1.0])),
        Err(ConfigError::Invalid(_))
    ));
    assert!(matches!(
        WanVaeConfig::from_diffusers_json("{"),
        Err(ConfigError::Parse { .. })
    ));
    // The presets are valid, and the fixture's config is the tiny preset.
    assert_eq!(
        WanVaeConfig::from_diffusers_json(&base).unwrap(),
        WanVaeConfig::tiny()
    );
    for c in [
        WanVaeConfig::tiny(),
        WanVaeConfig::shapes_small(),
        WanVaeConfig::wan21(),
    ] {
        c.validate().unwrap();
    }
}
