//! Checkpoint I/O: round trips, upstream layouts, and every kind of bad file.

use burn::backend::NdArray;
use burn::prelude::*;
use burn::tensor::{Distribution, Tolerance};
use semgen_core::checkpoint::{
    load_checkpoint, load_file, parse_safetensors, read_meta, save_checkpoint, to_semgen_key,
    to_upstream_key, CheckpointMeta, LoadError, LoadOptions,
};
use semgen_core::tensor_io::{read_safetensors, write_safetensors, HostTensor};
use semgen_core::wan_dit::{WanDit, WanDitConfig, DIFFUSERS_KEYS, ORIGINAL_WAN_KEYS};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

type B = NdArray;

fn fixture_weights() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/wan_dit/weights.safetensors")
}

fn inputs() -> (Tensor<B, 5>, Tensor<B, 1>, Tensor<B, 3>) {
    let d = Default::default();
    (
        Tensor::random([1, 4, 3, 8, 8], Distribution::Normal(0.0, 1.0), &d),
        Tensor::from_floats([321.0], &d),
        Tensor::random([1, 5, 16], Distribution::Normal(0.0, 1.0), &d),
    )
}

fn outputs_equal(a: &WanDit<B>, b: &WanDit<B>) {
    let (x, t, c) = inputs();
    a.forward(x.clone(), t.clone(), c.clone())
        .unwrap()
        .into_data()
        .assert_approx_eq::<f32>(
            &b.forward(x, t, c).unwrap().into_data(),
            Tolerance::absolute(1e-6),
        );
}

#[test]
fn semgen_checkpoint_round_trip_keeps_weights_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dit.safetensors");
    let d = Default::default();
    let cfg = WanDitConfig::tiny();
    let model = cfg.init::<B>(&d).unwrap();
    let meta = CheckpointMeta::new("wan_dit", 1234, serde_json::to_value(&cfg).unwrap());
    save_checkpoint(&model, &path, DIFFUSERS_KEYS, &meta).unwrap();
    // Upstream key names on disk.
    let keys = read_safetensors(&path).unwrap();
    assert!(keys.contains_key("blocks.0.ffn.net.0.proj.weight"));
    assert!(keys.contains_key("blocks.1.attn1.to_out.0.weight"));
    let (loaded, got_meta) =
        load_checkpoint(cfg.init::<B>(&d).unwrap(), &path, "wan_dit", DIFFUSERS_KEYS).unwrap();
    assert_eq!(got_meta, meta);
    assert_eq!(read_meta(&path).unwrap().step, 1234);
    outputs_equal(&model, &loaded);
    // No temp files left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

#[test]
fn saving_over_a_checkpoint_replaces_it_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ck.safetensors");
    let d = Default::default();
    let cfg = WanDitConfig::tiny();
    for step in [1, 2] {
        let meta = CheckpointMeta::new("wan_dit", step, serde_json::Value::Null);
        save_checkpoint(&cfg.init::<B>(&d).unwrap(), &path, DIFFUSERS_KEYS, &meta).unwrap();
    }
    assert_eq!(read_meta(&path).unwrap().step, 2);
    // Saving into a folder that does not exist fails cleanly and creates nothing.
    let bad = dir.path().join("missing/ck.safetensors");
    let meta = CheckpointMeta::new("wan_dit", 3, serde_json::Value::Null);
    assert!(save_checkpoint(&cfg.init::<B>(&d).unwrap(), &bad, DIFFUSERS_KEYS, &meta).is_err());
    assert!(!dir.path().join("missing").exists());
}

#[test]
fn original_wan_key_names_load_to_the_same_model() {
    let d = Default::default();
    let cfg = WanDitConfig::tiny();
    let (reference, _) = WanDit::<B>::load(&cfg, &fixture_weights(), &d).unwrap();
    // Rename the diffusers fixture to original Wan2.1 names and load that.
    let dir = tempfile::tempdir().unwrap();
    let orig = dir.path().join("orig.safetensors");
    let renamed: BTreeMap<String, HostTensor> = read_safetensors(&fixture_weights())
        .unwrap()
        .into_iter()
        .map(|(k, v)| (to_upstream_key(&k, ORIGINAL_WAN_KEYS), v))
        .collect();
    assert!(renamed.contains_key("head.head.weight"));
    assert!(renamed.contains_key("blocks.0.norm3.weight"));
    assert!(renamed.contains_key("blocks.0.self_attn.q.weight"));
    write_safetensors(&orig, &renamed, None).unwrap();
    let (from_orig, report) = WanDit::<B>::load(&cfg, &orig, &d).unwrap();
    assert!(report.missing.is_empty() && report.unexpected.is_empty());
    outputs_equal(&reference, &from_orig);
    assert_eq!(
        to_semgen_key("blocks.0.norm3.weight", ORIGINAL_WAN_KEYS),
        "blocks.0.norm2.weight"
    );
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn bad_files_give_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = Default::default();
    let cfg = WanDitConfig::tiny();
    let load = |p: &Path| WanDit::<B>::load(&cfg, p, &d).map(|_| ());

    let missing = dir.path().join("nope.safetensors");
    assert!(matches!(load(&missing), Err(LoadError::NotFound(_))));

    let empty = dir.path().join("empty.safetensors");
    write(&empty, b"");
    let e = load(&empty).unwrap_err();
    assert!(matches!(e, LoadError::NotSafetensors { .. }), "{e}");
    assert!(e.to_string().contains("empty"));

    let text = dir.path().join("text.safetensors");
    write(&text, b"this is not a checkpoint at all, just some text");
    assert!(matches!(load(&text), Err(LoadError::NotSafetensors { .. })));

    let good = std::fs::read(fixture_weights()).unwrap();
    let truncated = dir.path().join("trunc.safetensors");
    write(&truncated, &good[..good.len() / 2]);
    let e = load(&truncated).unwrap_err();
    assert!(matches!(e, LoadError::Truncated { .. }), "{e}");
    let header_cut = dir.path().join("header.safetensors");
    write(&header_cut, &good[..40]);
    assert!(matches!(
        load(&header_cut),
        Err(LoadError::Truncated { .. })
    ));

    // Another config: the error names the key and both shapes.
    let wider = WanDitConfig {
        ffn_dim: 96,
        ..WanDitConfig::tiny()
    };
    let e = WanDit::<B>::load(&wider, &fixture_weights(), &d)
        .map(|_| ())
        .unwrap_err();
    match &e {
        LoadError::ShapeMismatch {
            key,
            expected,
            found,
            ..
        } => {
            assert!(key.contains("ffn.net."), "{key}");
            assert_ne!(expected, found);
        }
        other => panic!("expected a shape mismatch, got {other}"),
    }
    assert!(e
        .to_string()
        .contains("shape mismatch for 'blocks.0.ffn.net."));

    // Another component: keys missing and unexpected.
    let deeper = WanDitConfig {
        num_layers: 3,
        ..WanDitConfig::tiny()
    };
    let e = WanDit::<B>::load(&deeper, &fixture_weights(), &d)
        .map(|_| ())
        .unwrap_err();
    assert!(
        matches!(&e, LoadError::MissingKeys { keys, .. } if keys.iter().all(|k| k.starts_with("blocks.2."))),
        "{e}"
    );
    let shallower = WanDitConfig {
        num_layers: 1,
        ..WanDitConfig::tiny()
    };
    let e = WanDit::<B>::load(&shallower, &fixture_weights(), &d)
        .map(|_| ())
        .unwrap_err();
    assert!(
        matches!(&e, LoadError::UnexpectedKeys { keys, .. } if keys.iter().all(|k| k.starts_with("blocks.1."))),
        "{e}"
    );
}

#[test]
fn integer_weights_are_refused_with_the_key_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("int.safetensors");
    // Rewrite the fixture with one tensor stored as I32.
    let file = parse_safetensors(&fixture_weights()).unwrap();
    let mut owned: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (k, v) in file.tensors() {
        if k == "proj_out.bias" {
            let n: usize = v.shape().iter().product();
            owned.push((
                k,
                safetensors::Dtype::I32,
                v.shape().to_vec(),
                vec![0u8; 4 * n],
            ));
        } else {
            owned.push((k, v.dtype(), v.shape().to_vec(), v.data().to_vec()));
        }
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = owned
        .iter()
        .map(|(k, dt, s, b)| {
            (
                k.clone(),
                safetensors::tensor::TensorView::new(*dt, s.clone(), b).unwrap(),
            )
        })
        .collect();
    std::fs::write(&path, safetensors::serialize(views, &None).unwrap()).unwrap();
    let e = WanDit::<B>::load(&WanDitConfig::tiny(), &path, &Default::default())
        .map(|_| ())
        .unwrap_err();
    match e {
        LoadError::UnsupportedDtype { key, .. } => assert_eq!(key, "proj_out.bias"),
        other => panic!("expected unsupported dtype, got {other}"),
    }
}

#[test]
fn wrong_component_and_lenient_loading() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ck.safetensors");
    let d = Default::default();
    let cfg = WanDitConfig::tiny();
    let meta = CheckpointMeta::new("semantic_dit", 7, serde_json::Value::Null);
    save_checkpoint(&cfg.init::<B>(&d).unwrap(), &path, DIFFUSERS_KEYS, &meta).unwrap();
    let e = load_checkpoint(cfg.init::<B>(&d).unwrap(), &path, "refiner", DIFFUSERS_KEYS)
        .map(|_| ())
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{} is a 'semantic_dit' checkpoint, but a 'refiner' checkpoint was expected",
            path.display()
        )
    );
    // An upstream file is not a semgen checkpoint.
    assert!(read_meta(&fixture_weights()).is_err());
    // allow_missing / allow_unexpected report instead of failing.
    let deeper = WanDitConfig {
        num_layers: 3,
        ..WanDitConfig::tiny()
    }
    .init::<B>(&d)
    .unwrap();
    let opts = LoadOptions {
        allow_missing: true,
        ..Default::default()
    };
    let (_, report) = load_file(deeper, &fixture_weights(), DIFFUSERS_KEYS, &opts).unwrap();
    assert!(
        !report.missing.is_empty() && report.missing.iter().all(|k| k.starts_with("blocks.2."))
    );
    assert!(report.unexpected.is_empty());
}
