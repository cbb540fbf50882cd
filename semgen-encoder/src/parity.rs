//! Parity runs of this crate's ports against reference-fixture folders (`qwen25vl_vision`,
//! `umt5_encoder`), for `cargo xtask parity` and the test suite. Sizes come from each folder's
//! `config.json`; every name in the manifest's `outputs` is compared (gating), and the
//! intermediates semgen can reproduce are compared too (non-gating, for bisecting).

use crate::qwen_vision::{patchify_frames, GridThw, QwenVision, QwenVisionConfig};
use crate::umt5::{bucket_table, Umt5Config, Umt5Encoder};
use burn::prelude::*;
use semgen_core::checkpoint::LoadError;
use semgen_core::fixture::{Fixture, FixtureError};
use semgen_core::parity::ParityRow;
use semgen_core::tensor_io::HostTensor;

fn row(name: &str, got: &HostTensor, want: &HostTensor, atol: f64, gating: bool) -> ParityRow {
    ParityRow::new(name, got, want, atol, gating)
}

fn invalid(fx: &Fixture, e: impl std::fmt::Display) -> FixtureError {
    FixtureError::Load(LoadError::Invalid(format!("{}: {e}", fx.dir.display())))
}

fn unknown_output(fx: &Fixture, component: &str, name: &str) -> FixtureError {
    FixtureError::Manifest {
        file: fx.dir.join("manifest.json"),
        reason: format!("{component} has no output named '{name}'"),
    }
}

fn ints(shape: Vec<usize>, v: impl IntoIterator<Item = usize>) -> HostTensor {
    HostTensor::f32(shape, v.into_iter().map(|x| x as f32).collect())
}

/// Appends the non-gating rows for intermediates the manifest lists and io holds.
fn push_intermediates(fx: &Fixture, rows: &mut Vec<ParityRow>, got: Vec<(&str, HostTensor)>) {
    for (name, got) in got {
        if let Some(want) = fx.io.get(name) {
            if fx.manifest.intermediates.iter().any(|n| n == name) {
                rows.push(row(name, &got, want, fx.manifest.atol, false));
            }
        }
    }
}

/// Runs a `qwen25vl_vision` fixture: `pixel_values` + `grid_thw` → `merged` (upstream
/// `pooler_output`). Intermediates: the host plan (`position_ids`, `window_index`,
/// `cu_window_seqlens`, `cu_seqlens`), `last_hidden_state_window_order`, and semgen's patchify of
/// the raw `video`/`image` (laid out `[1, T, C, H, W]`) against `pixel_values` (as `patchify`).
pub fn run_qwen25vl_vision<B: Backend>(
    fx: &Fixture,
    device: &B::Device,
) -> Result<Vec<ParityRow>, FixtureError> {
    let config =
        QwenVisionConfig::from_transformers_json(&fx.config_json).map_err(|e| invalid(fx, e))?;
    let (model, _) = QwenVision::<B>::load(&config, &fx.weights_path(), device)?;
    let pixels = fx.tensor("pixel_values")?;
    let grid_t = fx.tensor("grid_thw")?;
    let grid: Vec<GridThw> = grid_t
        .to_i64()
        .chunks(3)
        .map(|c| {
            [
                c[0].max(0) as usize,
                c[1].max(0) as usize,
                c[2].max(0) as usize,
            ]
        })
        .collect();
    let plan = model.plan(&grid).map_err(|e| invalid(fx, e))?;
    let out = model
        .forward_with_plan(pixels.to_tensor::<B, 2>(device)?, &plan)
        .map_err(|e| invalid(fx, e))?;
    let atol = fx.manifest.atol;
    let mut rows = Vec::new();
    for name in &fx.manifest.outputs {
        let got = match name.as_str() {
            "merged" | "pooler_output" => HostTensor::from_tensor(&out.merged),
            "last_hidden_state_window_order" | "last_hidden_state" => {
                HostTensor::from_tensor(&out.last_hidden_state_window_order)
            }
            other => return Err(unknown_output(fx, "qwen25vl_vision", other)),
        };
        rows.push(row(name, &got, fx.tensor(name)?, atol, true));
    }
    let n = plan.num_tokens();
    let mut inter = vec![
        (
            "position_ids",
            ints(
                vec![n, 2],
                plan.position_ids.iter().flat_map(|p| p.iter().copied()),
            ),
        ),
        (
            "window_index",
            ints(
                vec![plan.window_index.len()],
                plan.window_index.iter().copied(),
            ),
        ),
        (
            "cu_window_seqlens",
            ints(
                vec![plan.cu_window_seqlens.len()],
                plan.cu_window_seqlens.iter().copied(),
            ),
        ),
        (
            "cu_seqlens",
            ints(vec![plan.cu_seqlens.len()], plan.cu_seqlens.iter().copied()),
        ),
        (
            "last_hidden_state_window_order",
            HostTensor::from_tensor(&out.last_hidden_state_window_order),
        ),
    ];
    // Patchify check: the raw inputs, in grid order, must give `pixel_values`.
    let mut parts = Vec::new();
    for name in ["video", "image"] {
        if let Some(t) = fx.io.get(name) {
            if t.shape.len() == 5 && t.shape[0] == 1 {
                let [_, f, c, h, w] = [t.shape[0], t.shape[1], t.shape[2], t.shape[3], t.shape[4]];
                let frames =
                    HostTensor::f32(vec![f, c, h, w], t.to_f32()).to_tensor::<B, 4>(device)?;
                if let Ok((p, _)) = patchify_frames(&config, frames) {
                    parts.push(p);
                }
            }
        }
    }
    if parts.len() == 2 {
        let mine = HostTensor::from_tensor(&Tensor::cat(parts, 0));
        rows.push(row("patchify(video, image)", &mine, pixels, atol, false));
    }
    inter.retain(|(name, _)| !fx.manifest.outputs.iter().any(|o| o == name));
    push_intermediates(fx, &mut rows, inter);
    Ok(rows)
}

/// Runs an `umt5_encoder` fixture: `input_ids` + `attention_mask` → `last_hidden_state`.
/// Intermediates: `rel_buckets_40` (the bucket table, any square size) and
/// `layer0_position_bias`.
pub fn run_umt5_encoder<B: Backend>(
    fx: &Fixture,
    device: &B::Device,
) -> Result<Vec<ParityRow>, FixtureError> {
    let config = Umt5Config::from_transformers_json(&fx.config_json).map_err(|e| invalid(fx, e))?;
    let (model, _) = Umt5Encoder::<B>::load(&config, &fx.weights_path(), device)?;
    let ids_h = fx.tensor("input_ids")?;
    let mask_h = fx.tensor("attention_mask")?;
    if ids_h.shape.len() != 2 || ids_h.shape != mask_h.shape {
        return Err(invalid(
            fx,
            format!(
                "input_ids {:?} and attention_mask {:?} must be equal [B, L] shapes",
                ids_h.shape, mask_h.shape
            ),
        ));
    }
    let ids = ids_h.to_i64();
    if let Some(bad) = ids
        .iter()
        .find(|&&i| i < 0 || i as usize >= config.vocab_size)
    {
        return Err(invalid(
            fx,
            format!(
                "input id {bad} is outside the vocabulary of {}",
                config.vocab_size
            ),
        ));
    }
    let (b, l) = (ids_h.shape[0], ids_h.shape[1]);
    let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [b, l]), device);
    let mask = Tensor::<B, 2, Int>::from_data(TensorData::new(mask_h.to_i64(), [b, l]), device);
    let out = model.forward(ids, mask);
    let atol = fx.manifest.atol;
    let mut rows = Vec::new();
    for name in &fx.manifest.outputs {
        let got = match name.as_str() {
            "last_hidden_state" => HostTensor::from_tensor(&out),
            other => return Err(unknown_output(fx, "umt5_encoder", other)),
        };
        rows.push(row(name, &got, fx.tensor(name)?, atol, true));
    }
    let mut inter = Vec::new();
    if let Some(t) = fx.io.get("rel_buckets_40") {
        if t.shape.len() == 2 {
            let (q, k) = (t.shape[0], t.shape[1]);
            let table = bucket_table(
                q,
                k,
                config.relative_attention_num_buckets,
                config.relative_attention_max_distance,
            );
            inter.push(("rel_buckets_40", ints(vec![q, k], table)));
        }
    }
    if let Some(t) = fx.io.get("layer0_position_bias") {
        if t.shape.len() == 4 && t.shape[2] == t.shape[3] {
            inter.push((
                "layer0_position_bias",
                HostTensor::from_tensor(&model.position_bias(0, t.shape[2], device)),
            ));
        }
    }
    push_intermediates(fx, &mut rows, inter);
    Ok(rows)
}
