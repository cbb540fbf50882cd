//! Config loading on arbitrary text: the first byte picks the reader (upstream `config.json`s,
//! the configs stored in semgen checkpoints, `model.json`, the training TOMLs, `tokenizer.json`,
//! `--device`), the rest is the text. Every reader either refuses with an error or returns a
//! config that passes its own validation; none may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use semgen_core::device::DeviceSpec;
use semgen_core::sampling::SamplerConfig;
use semgen_core::wan_dit::WanDitConfig;
use semgen_encoder::compressor::CompressorConfig;
use semgen_encoder::qwen_vision::QwenVisionConfig;
use semgen_encoder::tokenizer::PromptTokenizer;
use semgen_encoder::umt5::Umt5Config;
use semgen_pipeline::model::{ModelSettings, ParamFloor};
use semgen_pipeline::train::{RefinerTrainConfig, SemanticTrainConfig};
use semgen_refiner::refiner::RefinerConfig;
use semgen_semantic_dit::SemanticDitConfig;
use semgen_vae::train::VaeTrainConfig;
use semgen_vae::WanVaeConfig;

type B = burn::backend::NdArray;

/// A config that validates and describes a small model must also build it (`init`), and its
/// parameter floor (checked before `init` when loading a checkpoint) must not overflow.
fn small<C: ParamFloor>(c: &C) -> bool {
    c.param_floor() <= 50_000
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    match kind % 14 {
        0 => {
            if let Ok(c) = WanDitConfig::from_diffusers_json(text) {
                assert!(c.validate().is_ok());
                let semantic = SemanticDitConfig::new(c.clone());
                if small(&semantic) {
                    assert!(c.init::<B>(&Default::default()).is_ok());
                }
            }
        }
        1 => {
            if let Ok(c) = QwenVisionConfig::from_transformers_json(text) {
                assert!(c.validate().is_ok());
                let _ = (c.merger_window(), c.pixels_per_token(), c.patch_dim());
                if small(&c) {
                    assert!(c.init::<B>(&Default::default()).is_ok());
                }
            }
        }
        2 => {
            if let Ok(c) = Umt5Config::from_transformers_json(text) {
                if c.validate().is_ok() && small(&c) {
                    assert!(c.init::<B>(&Default::default()).is_ok());
                }
            }
        }
        3 => {
            if let Ok(c) = WanVaeConfig::from_diffusers_json(text) {
                assert!(c.validate().is_ok());
                let _ = (c.spatial_factor(), c.temporal_factor(), c.latent_frames(17));
                if small(&c) {
                    assert!(c.init::<B>(&Default::default()).is_ok());
                }
            }
        }
        // The configs in semgen checkpoint headers, as `stored_config` + `init` read them.
        4 => {
            if let Ok(c) = serde_json::from_str::<RefinerConfig>(text) {
                if c.validate().is_ok() && small(&c) {
                    assert!(c.init::<B>(&Default::default()).is_ok());
                }
            }
        }
        5 => {
            if let Ok(c) = serde_json::from_str::<SemanticDitConfig>(text) {
                if c.validate().is_ok() && small(&c) {
                    assert!(c.init::<B>(&Default::default()).is_ok());
                }
            }
        }
        6 => {
            if let Ok(c) = serde_json::from_str::<CompressorConfig>(text) {
                if c.validate().is_ok() && small(&c) {
                    assert!(c.init::<B>(&Default::default()).is_ok());
                }
            }
        }
        7 => {
            if let Ok(c) = serde_json::from_str::<QwenVisionConfig>(text) {
                if c.validate().is_ok() && small(&c) {
                    assert!(c.init::<B>(&Default::default()).is_ok());
                }
            }
        }
        8 => {
            if let Ok(c) = serde_json::from_str::<ModelSettings>(text) {
                let _ = c.validate();
            }
        }
        9 => {
            if let Ok(c) = toml::from_str::<RefinerTrainConfig>(text) {
                let _ = c.train.validate();
            }
        }
        10 => {
            if let Ok(c) = toml::from_str::<SemanticTrainConfig>(text) {
                let _ = c.train.validate();
            }
        }
        11 => {
            if let Ok(c) = VaeTrainConfig::from_toml(text) {
                let _ = c.model_config();
            }
        }
        12 => {
            if let Ok(t) = PromptTokenizer::from_json(text) {
                let _ = t.unknown_words("a large red circle moving left slowly, très 🦄");
                let _ = t.tokenize(&["a red circle", "x"], 8);
            }
        }
        _ => {
            let _ = text.parse::<DeviceSpec>();
            if let Ok(c) = serde_json::from_str::<SamplerConfig>(text) {
                if c.validate().is_ok() {
                    let _ = c.build::<B, 1>();
                }
            }
        }
    }
});
