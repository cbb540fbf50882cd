//! Checkpoint key layouts and loading.
//!
//! semgen's parameter paths are diffusers' `AutoencoderKLWan` keys with one rename
//! ([`DIFFUSERS_KEYS`]). Checkpoints of the original Wan2.1 code (`Wan2.1_VAE.pth` converted to
//! safetensors) go first through [`ORIGINAL_WAN_KEYS`] and the decoder's flat-list indices
//! ([`original_decoder_rules`]), which together reproduce diffusers'
//! `convert_wan_vae_to_diffusers`. The table is documented in `docs/vae.md`.

use crate::config::WanVaeConfig;
use crate::model::WanVae;
use crate::COMPONENT;
use burn::prelude::*;
use semgen_core::checkpoint::{
    load_into, parse_safetensors, KeyRule, LoadError, LoadOptions, LoadReport,
};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

/// diffusers key fragment → semgen field. `resample` is an `nn.Sequential(pad or upsample,
/// Conv2d)`, so its conv is `resample.1`.
pub const DIFFUSERS_KEYS: &[KeyRule] = &[KeyRule::new("resample.1", "resample_conv")];

/// Original Wan2.1 VAE key fragments → diffusers names, applied in this order (rules rewrite
/// whole dotted segments, and the order keeps the top-level `conv1`/`conv2` renames from
/// touching the residual convs, which only get the names `conv1`/`conv2` in the last rules).
/// The decoder's flat `upsamples.{k}` list needs the config: see [`original_decoder_rules`].
pub const ORIGINAL_WAN_KEYS: &[KeyRule] = &[
    KeyRule::new("encoder.conv1", "encoder.conv_in"),
    KeyRule::new("decoder.conv1", "decoder.conv_in"),
    KeyRule::new("conv1", "quant_conv"),
    KeyRule::new("conv2", "post_quant_conv"),
    KeyRule::new("encoder.downsamples", "encoder.down_blocks"),
    KeyRule::new("middle.0", "mid_block.resnets.0"),
    KeyRule::new("middle.1", "mid_block.attentions.0"),
    KeyRule::new("middle.2", "mid_block.resnets.1"),
    KeyRule::new("head.0", "norm_out"),
    KeyRule::new("head.2", "conv_out"),
    KeyRule::new("residual.0", "norm1"),
    KeyRule::new("residual.2", "conv1"),
    KeyRule::new("residual.3", "norm2"),
    KeyRule::new("residual.6", "conv2"),
    KeyRule::new("shortcut", "conv_shortcut"),
];

/// The original decoder's flat `upsamples` list → diffusers' `up_blocks`: level `i` occupies
/// indices `i·(n+2) .. i·(n+2)+n+1` (n = `num_res_blocks`): `n+1` residual blocks
/// (`up_blocks.{i}.resnets.{j}`) then the resampler (`up_blocks.{i}.upsamplers.0`), which the
/// last level lacks. For Wan2.1 (n = 2) that is diffusers' hard-coded 0-2/4-6/8-10/12-14 and
/// 3/7/11.
pub fn original_decoder_rules(num_res_blocks: usize, levels: usize) -> &'static [KeyRule] {
    // KeyRule holds `&'static str`; each distinct (n, levels) table is built and leaked once.
    static TABLES: OnceLock<Mutex<HashMap<(usize, usize), &'static [KeyRule]>>> = OnceLock::new();
    let mut tables = TABLES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    tables.entry((num_res_blocks, levels)).or_insert_with(|| {
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        let stride = num_res_blocks + 2;
        let mut rules = Vec::new();
        for i in 0..levels {
            for j in 0..=num_res_blocks {
                rules.push(KeyRule::new(
                    leak(format!("decoder.upsamples.{}", i * stride + j)),
                    leak(format!("decoder.up_blocks.{i}.resnets.{j}")),
                ));
            }
            if i + 1 != levels {
                rules.push(KeyRule::new(
                    leak(format!(
                        "decoder.upsamples.{}",
                        i * stride + num_res_blocks + 1
                    )),
                    leak(format!("decoder.up_blocks.{i}.upsamplers.0")),
                ));
            }
        }
        Box::leak(rules.into_boxed_slice())
    })
}

/// True when the keys use the original Wan2.1 names (`encoder.downsamples`, `decoder.upsamples`,
/// top-level `conv1`).
pub fn is_original_wan_layout<'a>(mut keys: impl Iterator<Item = &'a str>) -> bool {
    keys.any(|k| {
        k.starts_with("encoder.downsamples.")
            || k.starts_with("decoder.upsamples.")
            || k == "conv1.weight"
    })
}

/// The full rule list for a file: diffusers, or original Wan2.1 then diffusers.
pub fn rules_for(config: &WanVaeConfig, original: bool) -> Vec<KeyRule> {
    if !original {
        return DIFFUSERS_KEYS.to_vec();
    }
    ORIGINAL_WAN_KEYS
        .iter()
        .chain(original_decoder_rules(
            config.num_res_blocks,
            config.dim_mult.len(),
        ))
        .chain(DIFFUSERS_KEYS)
        .copied()
        .collect()
}

/// A guess of which component a foreign checkpoint holds, for the error message.
fn guess_component(keys: &[String]) -> String {
    let has = |p: &str| keys.iter().any(|k| k.starts_with(p));
    if has("patch_embedding") || has("condition_embedder") || has("blocks.0.attn1") {
        "wan_dit (a Wan transformer)".into()
    } else if has("encoder.block.") || has("shared.") {
        "umt5_encoder (a T5 text encoder)".into()
    } else if has("merger.") || has("visual.") || has("patch_embed.") {
        "qwen25vl_vision (a vision tower)".into()
    } else {
        format!(
            "unknown (no 'encoder.'/'decoder.' keys; first key '{}')",
            keys.first().map_or("", |k| k)
        )
    }
}

impl<B: Backend> WanVae<B> {
    /// Loads a checkpoint: diffusers `AutoencoderKLWan` state dicts, original Wan2.1 key names
    /// (detected from the keys), or semgen's own `wan_vae` checkpoints. A checkpoint of another
    /// component is a [`LoadError::WrongComponent`]; missing, unexpected and mis-shaped tensors
    /// are the other [`LoadError`]s.
    pub fn load(
        config: &WanVaeConfig,
        path: &Path,
        device: &B::Device,
    ) -> Result<(Self, LoadReport), LoadError> {
        let model = config
            .init::<B>(device)
            .map_err(|e| LoadError::Invalid(e.to_string()))?;
        let file = parse_safetensors(path)?;
        if let Some(meta) = file.semgen_meta()? {
            if meta.component != COMPONENT {
                return Err(LoadError::WrongComponent {
                    path: path.to_path_buf(),
                    expected: COMPONENT.into(),
                    found: meta.component,
                });
            }
        }
        let names: Vec<String> = file.tensors().into_iter().map(|(k, _)| k).collect();
        if !names
            .iter()
            .any(|k| k.starts_with("encoder.") || k.starts_with("decoder."))
        {
            return Err(LoadError::WrongComponent {
                path: path.to_path_buf(),
                expected: COMPONENT.into(),
                found: guess_component(&names),
            });
        }
        let rules = rules_for(
            config,
            is_original_wan_layout(names.iter().map(String::as_str)),
        );
        load_into(model, &file, &rules, &LoadOptions::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use semgen_core::checkpoint::to_semgen_key;

    #[test]
    fn original_names_follow_diffusers_conversion() {
        let rules = rules_for(&WanVaeConfig::wan21(), true);
        let cases = [
            ("encoder.conv1.weight", "encoder.conv_in.weight"),
            ("decoder.conv1.bias", "decoder.conv_in.bias"),
            ("conv1.weight", "quant_conv.weight"),
            ("conv2.bias", "post_quant_conv.bias"),
            (
                "encoder.downsamples.0.residual.0.gamma",
                "encoder.down_blocks.0.norm1.gamma",
            ),
            (
                "encoder.downsamples.2.resample.1.weight",
                "encoder.down_blocks.2.resample_conv.weight",
            ),
            (
                "encoder.downsamples.5.time_conv.bias",
                "encoder.down_blocks.5.time_conv.bias",
            ),
            (
                "encoder.downsamples.3.shortcut.weight",
                "encoder.down_blocks.3.conv_shortcut.weight",
            ),
            (
                "encoder.middle.2.residual.6.weight",
                "encoder.mid_block.resnets.1.conv2.weight",
            ),
            (
                "decoder.middle.1.to_qkv.bias",
                "decoder.mid_block.attentions.0.to_qkv.bias",
            ),
            ("encoder.head.0.gamma", "encoder.norm_out.gamma"),
            ("decoder.head.2.weight", "decoder.conv_out.weight"),
            // diffusers' hard-coded Wan2.1 indices: 4 -> up_blocks.1.resnets.0 (with the shortcut),
            // 7 -> up_blocks.1.upsamplers.0, 14 -> up_blocks.3.resnets.2.
            (
                "decoder.upsamples.4.shortcut.bias",
                "decoder.up_blocks.1.resnets.0.conv_shortcut.bias",
            ),
            (
                "decoder.upsamples.7.resample.1.weight",
                "decoder.up_blocks.1.upsamplers.0.resample_conv.weight",
            ),
            (
                "decoder.upsamples.3.time_conv.weight",
                "decoder.up_blocks.0.upsamplers.0.time_conv.weight",
            ),
            (
                "decoder.upsamples.14.residual.3.gamma",
                "decoder.up_blocks.3.resnets.2.norm2.gamma",
            ),
            (
                "decoder.upsamples.10.residual.2.bias",
                "decoder.up_blocks.2.resnets.2.conv1.bias",
            ),
        ];
        for (original, semgen) in cases {
            assert_eq!(to_semgen_key(original, &rules), semgen, "{original}");
        }
    }

    #[test]
    fn diffusers_names_need_one_rename() {
        let rules = rules_for(&WanVaeConfig::tiny(), false);
        assert_eq!(
            to_semgen_key("decoder.up_blocks.0.upsamplers.0.resample.1.weight", &rules),
            "decoder.up_blocks.0.upsamplers.0.resample_conv.weight"
        );
        assert_eq!(
            to_semgen_key("encoder.down_blocks.0.conv1.weight", &rules),
            "encoder.down_blocks.0.conv1.weight"
        );
    }
}
