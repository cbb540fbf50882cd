//! Parity runs of the components that live in this crate against reference fixtures: the Wan
//! DiT (`wan_dit` folders) and the flow-matching schedulers (`schedulers.safetensors`).
//! `cargo xtask parity` and the test suite both call these.

use crate::checkpoint::LoadError;
use crate::fixture::{max_abs_err, Comparison, Fixture, FixtureError};
use crate::sampling::{FlowMatchEuler, Scheduler, UniPc};
use crate::tensor_io::{read_safetensors, HostTensor};
use crate::wan_dit::{WanDit, WanDitConfig};
use burn::prelude::*;
use std::path::Path;

/// One compared tensor: outputs gate the result, intermediates are reported for bisecting.
#[derive(Debug, Clone, PartialEq)]
pub struct ParityRow {
    pub comparison: Comparison,
    pub gating: bool,
}

impl ParityRow {
    /// Compares `got` with `want` (max-abs error against `atol`).
    pub fn new(name: &str, got: &HostTensor, want: &HostTensor, atol: f64, gating: bool) -> Self {
        ParityRow {
            comparison: Comparison {
                name: name.to_string(),
                max_abs_err: max_abs_err(got, want),
                atol,
            },
            gating,
        }
    }
}

fn row(name: &str, got: &HostTensor, want: &HostTensor, atol: f64, gating: bool) -> ParityRow {
    ParityRow::new(name, got, want, atol, gating)
}

/// Runs a `wan_dit` fixture: loads its config and weights, predicts `out` from the inputs, and
/// compares outputs (and the intermediates semgen exposes).
pub fn run_wan_dit<B: Backend>(
    fx: &Fixture,
    device: &B::Device,
) -> Result<Vec<ParityRow>, FixtureError> {
    let config = WanDitConfig::from_diffusers_json(&fx.config_json).map_err(|e| {
        LoadError::Invalid(format!("{}: {e}", fx.dir.join("config.json").display()))
    })?;
    let (model, _) = WanDit::<B>::load(&config, &fx.weights_path(), device)?;
    let x = fx.tensor("hidden_states")?.to_tensor::<B, 5>(device)?;
    let t = fx.tensor("timestep")?.to_tensor::<B, 1>(device)?;
    let text = fx
        .tensor("encoder_hidden_states")?
        .to_tensor::<B, 3>(device)?;
    let atol = fx.manifest.atol;
    let mut rows = Vec::new();

    let [_, _, f, h, w] = x.dims();
    let grid = model
        .patched_grid(f, h, w)
        .map_err(|e| LoadError::Invalid(e.to_string()))?;
    let layout = model.layout(grid, None, device);
    let (temb, tproj) = model.embed_timestep(t.clone());
    let text_emb = model.embed_text(text.clone());
    let tokens = model.patchify(x.clone());
    let rope = layout
        .rope
        .for_tokens(tokens.dims()[0], model.config.num_attention_heads);
    let block0 = model.blocks.first().map(|b| {
        b.forward(
            tokens,
            tproj.clone(),
            &crate::wan_dit::TextCondition::Shared(text_emb.clone()),
            &rope,
            layout.plan(0),
        )
    });
    let out = model.forward_with_layout(x, t, text, &layout);

    for name in &fx.manifest.outputs {
        let got = match name.as_str() {
            "out" => HostTensor::from_tensor(&out),
            other => {
                return Err(FixtureError::Manifest {
                    file: fx.dir.join("manifest.json"),
                    reason: format!("wan_dit has no output named '{other}'"),
                })
            }
        };
        rows.push(row(name, &got, fx.tensor(name)?, atol, true));
    }
    let [b, _, d] = tproj.dims();
    let intermediates: Vec<(&str, Option<HostTensor>)> = vec![
        ("temb", Some(HostTensor::from_tensor(&temb))),
        (
            "timestep_proj",
            Some(HostTensor::from_tensor(&tproj.reshape([b, 6 * d]))),
        ),
        ("text_emb", Some(HostTensor::from_tensor(&text_emb))),
        ("block0_out", block0.map(|t| HostTensor::from_tensor(&t))),
    ];
    for (name, got) in intermediates {
        if let (Some(got), Some(want)) = (got, fx.io.get(name)) {
            if fx.manifest.intermediates.iter().any(|n| n == name) {
                rows.push(row(name, &got, want, atol, false));
            }
        }
    }
    Ok(rows)
}

/// Runs the scheduler fixture (`schedulers.safetensors`): timesteps, sigmas and every
/// intermediate sample of the 10-step Euler and UniPC loops under the stand-in denoiser
/// `tanh(x)·(t/1000) + 0.1`. Steps and shift are read from the fixture (shift from its
/// `schedulers.txt` when present, else 5).
pub fn run_schedulers<B: Backend>(
    path: &Path,
    atol: f64,
    device: &B::Device,
) -> Result<Vec<ParityRow>, FixtureError> {
    let io = read_safetensors(path)?;
    let get = |k: &str| {
        io.get(k).ok_or_else(|| FixtureError::MissingTensor {
            dir: path.to_path_buf(),
            name: k.to_string(),
        })
    };
    let shift = path
        .parent()
        .map(|d| d.join("schedulers.txt"))
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| {
            let i = t.find("'flow_shift': ")? + "'flow_shift': ".len();
            t[i..].split([',', '}']).next()?.trim().parse::<f64>().ok()
        })
        .unwrap_or(5.0);
    let mut rows = Vec::new();
    for name in ["euler", "unipc"] {
        let steps = get(&format!("{name}_timesteps"))?.shape[0];
        let mut sched: Box<dyn Scheduler<B, 5>> = match name {
            "euler" => Box::new(FlowMatchEuler::new(steps, shift)),
            _ => Box::new(UniPc::<B, 5>::new(steps, shift)),
        };
        let ts = HostTensor::f32(vec![steps], sched.timesteps().to_vec());
        let sg = HostTensor::f32(vec![steps + 1], sched.sigmas().to_vec());
        rows.push(row(
            &format!("{name}_timesteps"),
            &ts,
            get(&format!("{name}_timesteps"))?,
            atol * 1000.0,
            true,
        ));
        rows.push(row(
            &format!("{name}_sigmas"),
            &sg,
            get(&format!("{name}_sigmas"))?,
            atol,
            true,
        ));
        let mut x = get(&format!("{name}_x0"))?.to_tensor::<B, 5>(device)?;
        for i in 0..steps {
            let t = sched.timesteps()[i];
            let v = x.clone().tanh() * (t as f64 / 1000.0) + 0.1;
            x = sched.step(v, x);
            let key = format!("{name}_x{}", i + 1);
            rows.push(row(
                &key,
                &HostTensor::from_tensor(&x),
                get(&key)?,
                atol,
                true,
            ));
        }
    }
    Ok(rows)
}
