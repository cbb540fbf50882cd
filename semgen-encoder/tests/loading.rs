//! Loading the upstream layouts: the standalone vision tower and the same tensors under the
//! `visual.` prefix of a full Qwen2.5-VL checkpoint; umT5 with either copy of its tied embedding;
//! strictness about stray tensors.

use burn::backend::NdArray;
use burn::prelude::*;
use semgen_core::checkpoint::LoadError;
use semgen_core::tensor_io::{read_safetensors, write_safetensors, HostTensor};
use semgen_encoder::qwen_vision::{QwenVision, QwenVisionConfig};
use semgen_encoder::umt5::{Umt5Config, Umt5Encoder};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

type B = NdArray;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(name)
}

fn weights(name: &str) -> BTreeMap<String, HostTensor> {
    read_safetensors(&fixture(name).join("weights.safetensors")).unwrap()
}

fn write(dir: &Path, file: &str, t: &BTreeMap<String, HostTensor>) -> PathBuf {
    let p = dir.join(file);
    write_safetensors(&p, t, None).unwrap();
    p
}

fn vision_config() -> QwenVisionConfig {
    let text = std::fs::read_to_string(fixture("qwen25vl_vision").join("config.json")).unwrap();
    QwenVisionConfig::from_transformers_json(&text).unwrap()
}

fn umt5_config() -> Umt5Config {
    let text = std::fs::read_to_string(fixture("umt5_encoder").join("config.json")).unwrap();
    Umt5Config::from_transformers_json(&text).unwrap()
}

fn merged_output(model: &QwenVision<B>) -> Vec<f32> {
    let d = Default::default();
    let x = Tensor::<B, 2>::ones([2 * 4 * 4, model.config.patch_dim()], &d);
    let out = model.forward(x, &[[2, 4, 4]]).unwrap();
    out.merged.into_data().to_vec::<f32>().unwrap()
}

#[test]
fn vision_loads_under_the_visual_prefix_of_a_full_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let d = Default::default();
    let cfg = vision_config();
    let plain = weights("qwen25vl_vision");
    let (a, _) =
        QwenVision::<B>::load(&cfg, &fixture("qwen25vl_vision/weights.safetensors"), &d).unwrap();

    let mut full: BTreeMap<String, HostTensor> = plain
        .iter()
        .map(|(k, v)| (format!("visual.{k}"), v.clone()))
        .collect();
    full.insert(
        "model.embed_tokens.weight".into(),
        HostTensor::f32(vec![4, 2], vec![0.0; 8]),
    );
    let (b, report) =
        QwenVision::<B>::load(&cfg, &write(dir.path(), "full.safetensors", &full), &d).unwrap();
    assert_eq!(
        report.unexpected,
        vec!["model.embed_tokens.weight".to_string()]
    );
    assert_eq!(merged_output(&a), merged_output(&b));

    // A stray vision tensor is an error in both layouts.
    let mut stray = full.clone();
    stray.insert(
        "visual.blocks.99.norm1.weight".into(),
        HostTensor::f32(vec![32], vec![1.0; 32]),
    );
    let err = QwenVision::<B>::load(&cfg, &write(dir.path(), "stray.safetensors", &stray), &d)
        .unwrap_err();
    assert!(matches!(err, LoadError::UnexpectedKeys { .. }), "{err}");
    // A missing one too.
    let mut missing = plain.clone();
    missing.remove("merger.mlp.2.bias");
    let err = QwenVision::<B>::load(
        &cfg,
        &write(dir.path(), "missing.safetensors", &missing),
        &d,
    )
    .unwrap_err();
    assert!(err.to_string().contains("merger.mlp.2.bias"), "{err}");
}

fn umt5_output(model: &Umt5Encoder<B>) -> Vec<f32> {
    let d = Default::default();
    let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(vec![3i64, 9, 27, 1], [1, 4]), &d);
    let mask = Tensor::<B, 2, Int>::ones([1, 4], &d);
    model
        .forward(ids, mask)
        .into_data()
        .to_vec::<f32>()
        .unwrap()
}

#[test]
fn umt5_loads_from_either_tied_embedding_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = Default::default();
    let cfg = umt5_config();
    let both = weights("umt5_encoder");
    assert!(both.contains_key("shared.weight") && both.contains_key("encoder.embed_tokens.weight"));
    let (a, report) =
        Umt5Encoder::<B>::load(&cfg, &fixture("umt5_encoder/weights.safetensors"), &d).unwrap();
    assert_eq!(report.unexpected, vec!["shared.weight".to_string()]);

    let mut shared_only = both.clone();
    shared_only.remove("encoder.embed_tokens.weight");
    let (b, _) = Umt5Encoder::<B>::load(
        &cfg,
        &write(dir.path(), "shared.safetensors", &shared_only),
        &d,
    )
    .unwrap();
    assert_eq!(umt5_output(&a), umt5_output(&b));

    let mut embed_only = both.clone();
    embed_only.remove("shared.weight");
    let (c, _) = Umt5Encoder::<B>::load(
        &cfg,
        &write(dir.path(), "embed.safetensors", &embed_only),
        &d,
    )
    .unwrap();
    assert_eq!(umt5_output(&a), umt5_output(&c));

    // Decoder tensors of a full checkpoint are skipped; anything else unexpected is an error.
    let mut full = both.clone();
    full.insert(
        "decoder.final_layer_norm.weight".into(),
        HostTensor::f32(vec![32], vec![1.0; 32]),
    );
    assert!(
        Umt5Encoder::<B>::load(&cfg, &write(dir.path(), "full.safetensors", &full), &d).is_ok()
    );
    let mut stray = both;
    stray.insert(
        "encoder.block.7.layer.0.layer_norm.weight".into(),
        HostTensor::f32(vec![32], vec![1.0; 32]),
    );
    let err = Umt5Encoder::<B>::load(&cfg, &write(dir.path(), "stray.safetensors", &stray), &d)
        .unwrap_err();
    assert!(matches!(err, LoadError::UnexpectedKeys { .. }), "{err}");
}
