//! Training-signal parity: the gradients of every VAE parameter under Burn's autodiff equal
//! PyTorch autograd's through diffusers' `AutoencoderKLWan` (`fixtures/wan_vae_grads.safetensors`,
//! made by `fixtures/make_vae_grad_fixture.py`). The loss runs the chunked causal encode and the
//! per-frame cached decode (without the clamp), as training does.

use burn::backend::ndarray::NdArrayDevice;
use burn::backend::{Autodiff, NdArray};
use burn::module::{AutodiffModule, Module, ModuleMapper, Param};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use semgen_core::checkpoint::{
    floats_from_view, parse_safetensors, save_checkpoint, CheckpointMeta,
};
use semgen_core::fixture::Fixture;
use semgen_vae::{WanVae, WanVaeConfig, DIFFUSERS_KEYS};
use std::collections::HashMap;
use std::path::Path;

type B = Autodiff<NdArray>;

/// Replaces every parameter by its gradient, so the gradients save under the model's key names.
struct ToGrad<'a>(&'a <B as AutodiffBackend>::Gradients);

impl ModuleMapper<B> for ToGrad<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let g = tensor
            .grad(self.0)
            .expect("every parameter gets a gradient");
        Param::from_mapped_value(id, Tensor::from_inner(g), mapper)
    }
}

/// `sin(k·i)` over the flat f32 index, as the fixture script draws it.
fn pattern(dims: [usize; 5], k: f32, device: &NdArrayDevice) -> Tensor<B, 5> {
    let n: usize = dims.iter().product();
    let v: Vec<f32> = (0..n).map(|i| (i as f32 * k).sin()).collect();
    Tensor::from_data(TensorData::new(v, dims), device)
}

fn read_all(path: &Path) -> HashMap<String, Vec<f32>> {
    let file = parse_safetensors(path).unwrap();
    file.tensors()
        .into_iter()
        .map(|(name, view)| {
            let v = floats_from_view(&name, &view).unwrap();
            (name, v)
        })
        .collect()
}

#[test]
fn wan_vae_gradients_match_pytorch() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures");
    let fx = Fixture::open(&root.join("wan_vae")).unwrap();
    let want = read_all(&root.join("wan_vae_grads.safetensors"));
    let device = NdArrayDevice::default();
    let config = WanVaeConfig::from_diffusers_json(&fx.config_json).unwrap();
    let (vae, _) = WanVae::<B>::load(&config, &fx.weights_path(), &device).unwrap();
    let video = fx
        .tensor("video")
        .unwrap()
        .to_tensor::<B, 5>(&device)
        .unwrap();

    let moments = vae.encode_moments(video).unwrap();
    let mu = moments.clone().narrow(1, 0, config.z_dim);
    let recon = vae.decode_unclamped(mu).unwrap();
    let loss = (recon.clone() * pattern(recon.dims(), 0.37, &device)).sum()
        + (moments.clone() * pattern(moments.dims(), 0.11, &device)).sum();
    let loss_value = loss.clone().into_scalar();
    assert!((loss_value - want["loss"][0]).abs() < 1e-3 * want["loss"][0].abs().max(1.0));

    let grads = loss.backward();
    let as_module = vae.map(&mut ToGrad(&grads)).valid();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grads.safetensors");
    let meta = CheckpointMeta::new("wan_vae", 0, serde_json::to_value(&config).unwrap());
    save_checkpoint::<NdArray, _>(&as_module, &path, DIFFUSERS_KEYS, &meta).unwrap();
    let got = read_all(&path);

    let mut names: Vec<&String> = want.keys().filter(|k| *k != "loss").collect();
    names.sort();
    assert_eq!(got.len(), names.len(), "one gradient per parameter");
    let mut worst = (0.0f64, String::new());
    for name in names {
        let (g, w) = (&got[name], &want[name]);
        assert_eq!(g.len(), w.len(), "{name}: size");
        let diff: f64 = g
            .iter()
            .zip(w)
            .map(|(a, b)| ((a - b) as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        let norm: f64 = w.iter().map(|b| (*b as f64).powi(2)).sum::<f64>().sqrt();
        let rel = diff / norm.max(1e-12);
        if rel > worst.0 {
            worst = (rel, name.clone());
        }
    }
    println!(
        "worst relative gradient error {:.2e} ({})",
        worst.0, worst.1
    );
    // f32 accumulation-order differences are ~1e-4 relative here; a wrong backward is O(1).
    assert!(worst.0 < 2e-3, "gradient mismatch: {worst:?}");
}
