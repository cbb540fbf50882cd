//! `cargo xtask parity PATH`: numerical parity against reference fixtures.
//!
//! PATH is one of
//! - a component folder (`config.json`, `weights.safetensors`, `io.safetensors`,
//!   `manifest.json`); the manifest's `component` picks the implementation;
//! - a scheduler fixture file (`schedulers.safetensors`);
//! - a folder holding several of the above (each is run).

use anyhow::{bail, Context, Result};
use burn::prelude::*;
use semgen_core::device::DeviceSpec;
use semgen_core::fixture::{Fixture, FixtureError};
use semgen_core::parity::ParityRow;
use semgen_pipeline::backend::{dispatch, BackendTask};
use std::path::{Path, PathBuf};

/// Components this build can check, by manifest name.
pub const COMPONENTS: &[&str] = &["wan_dit", "wan_vae", "qwen25vl_vision", "umt5_encoder"];

#[derive(clap::Args)]
pub struct ParityArgs {
    /// Fixture folder, scheduler file, or a folder of fixtures.
    pub path: PathBuf,
    /// Device to run on: cpu, wgpu[:N], cuda[:N].
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
    /// Tolerance for the scheduler fixture (component folders carry their own in the manifest).
    #[arg(long, default_value_t = 1e-5)]
    pub scheduler_atol: f64,
}

enum Target {
    Component(PathBuf),
    Schedulers(PathBuf),
}

fn targets(path: &Path) -> Result<Vec<Target>> {
    if path.is_file() {
        if path.extension().is_some_and(|e| e == "safetensors") {
            return Ok(vec![Target::Schedulers(path.to_path_buf())]);
        }
        bail!(
            "{} is a file but not a scheduler fixture (*.safetensors)",
            path.display()
        );
    }
    if !path.is_dir() {
        bail!("{} does not exist", path.display());
    }
    if path.join("manifest.json").is_file() {
        return Ok(vec![Target::Component(path.to_path_buf())]);
    }
    let mut found = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(path)
        .with_context(|| format!("cannot list {}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() && p.join("manifest.json").is_file() {
            found.push(Target::Component(p));
        } else if p.is_file() && p.file_name().is_some_and(|n| n == "schedulers.safetensors") {
            found.push(Target::Schedulers(p));
        }
    }
    if found.is_empty() {
        bail!(
            "{} is not a fixture folder: it has no manifest.json (and holds no fixture folders or schedulers.safetensors)",
            path.display()
        );
    }
    Ok(found)
}

struct RunTarget<'a> {
    target: &'a Target,
    scheduler_atol: f64,
}

impl BackendTask for RunTarget<'_> {
    type Output = Result<(String, Vec<ParityRow>)>;
    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        match self.target {
            Target::Schedulers(p) => Ok((
                "schedulers".into(),
                semgen_core::parity::run_schedulers::<B>(p, self.scheduler_atol, &device)?,
            )),
            Target::Component(dir) => {
                let fx = Fixture::open(dir)?;
                let rows = run_component::<B>(&fx, &device)?;
                Ok((fx.manifest.component.clone(), rows))
            }
        }
    }
}

fn run_component<B: Backend>(
    fx: &Fixture,
    device: &B::Device,
) -> Result<Vec<ParityRow>, anyhow::Error> {
    let rows: Result<Vec<ParityRow>, FixtureError> = match fx.manifest.component.as_str() {
        "wan_dit" => semgen_core::parity::run_wan_dit::<B>(fx, device),
        "wan_vae" => semgen_vae::parity::run_wan_vae::<B>(fx, device),
        "qwen25vl_vision" => semgen_encoder::parity::run_qwen25vl_vision::<B>(fx, device),
        "umt5_encoder" => semgen_encoder::parity::run_umt5_encoder::<B>(fx, device),
        other => bail!(
            "{}: unknown component '{other}' (this build supports: {})",
            fx.dir.display(),
            COMPONENTS.join(", ")
        ),
    };
    Ok(rows?)
}

pub fn run(args: ParityArgs) -> Result<()> {
    let targets = targets(&args.path)?;
    let mut failed = 0;
    for t in &targets {
        let label = match t {
            Target::Component(p) | Target::Schedulers(p) => p.display().to_string(),
        };
        let (component, rows) = dispatch(
            args.device,
            RunTarget {
                target: t,
                scheduler_atol: args.scheduler_atol,
            },
        )??;
        println!("{component} ({label}) on {}", args.device);
        for r in &rows {
            let c = &r.comparison;
            let verdict = match (r.gating, c.passed()) {
                (true, true) => "ok",
                (true, false) => "FAIL",
                (false, true) => "ok (intermediate)",
                (false, false) => "differs (intermediate)",
            };
            println!(
                "  {:<24} max|err| {:>10.3e}  atol {:.0e}  {verdict}",
                c.name, c.max_abs_err, c.atol
            );
            if r.gating && !c.passed() {
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} output(s) exceed their tolerance");
    }
    println!("parity: all outputs within tolerance");
    Ok(())
}
