//! Checkpoint loading on arbitrary bytes: parsing and validating a safetensors file, its semgen
//! metadata, every tensor's conversion, the host tensors of `semgen decode`, and loading into a
//! (tiny) Wan DiT strictly and leniently. Any panic is a finding; errors are expected.
#![no_main]

use burn::backend::NdArray;
use libfuzzer_sys::fuzz_target;
use semgen_core::checkpoint::{
    floats_from_view, ints_from_view, load_into, parse_safetensors_bytes, LoadOptions,
};
use semgen_core::tensor_io::HostTensor;
use semgen_core::wan_dit::{WanDit, WanDitConfig, DIFFUSERS_KEYS, ORIGINAL_WAN_KEYS};
use std::path::Path;

type B = NdArray;

/// The model of the seed files: D = 4 (1 head), 1 input/output channel, 1 block.
fn model() -> WanDit<B> {
    WanDitConfig::new([1, 1, 1], 1, 4, 1, 1, 2, 2, 3, 1)
        .init::<B>(&Default::default())
        .expect("valid fuzz model")
}

fuzz_target!(|data: &[u8]| {
    let Ok(file) = parse_safetensors_bytes(Path::new("fuzz.safetensors"), data.to_vec()) else {
        return;
    };
    let _ = file.semgen_meta();
    for (name, view) in file.tensors() {
        let shape = view.shape().to_vec();
        if let Ok(values) = floats_from_view(&name, &view) {
            assert_eq!(values.len(), shape.iter().product::<usize>(), "{name}");
            // `semgen decode` turns a rank-5 'latents' tensor into a device tensor.
            if shape.len() == 5 && values.len() <= 4096 {
                let host = HostTensor::f32(shape.clone(), values);
                let _ = host.to_tensor::<B, 5>(&Default::default());
            }
        }
        if let Ok(values) = ints_from_view(&name, &view) {
            assert_eq!(values.len(), shape.iter().product::<usize>(), "{name}");
        }
    }
    let _ = load_into(model(), &file, DIFFUSERS_KEYS, &LoadOptions::default());
    let lenient = LoadOptions {
        allow_missing: true,
        allow_unexpected: true,
        strip_prefix: Some("model.".into()),
    };
    let _ = load_into(model(), &file, ORIGINAL_WAN_KEYS, &lenient);
});
