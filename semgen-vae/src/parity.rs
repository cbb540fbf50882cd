//! The `wan_vae` reference-fixture run (`cargo xtask parity` and the test suite): load the
//! fixture's `config.json` and weights, run every output the manifest names, and compare.
//!
//! Outputs: `moments` (`_encode(video)`), `z_mean` (the posterior mode), `recon`
//! (`decode(z_mean)`), `dec_rand` (`decode(z_rand)`); decodes are upstream's chunked, clamped
//! decode of raw (not normalised) latents.

use crate::{WanVae, WanVaeConfig};
use burn::prelude::*;
use semgen_core::checkpoint::LoadError;
use semgen_core::fixture::{Fixture, FixtureError};
use semgen_core::parity::ParityRow;
use semgen_core::tensor_io::HostTensor;

fn invalid(fx: &Fixture, e: impl std::fmt::Display) -> FixtureError {
    FixtureError::Load(LoadError::Invalid(format!("{}: {e}", fx.dir.display())))
}

/// Runs a `wan_vae` fixture folder. Every manifest output gates the result.
pub fn run_wan_vae<B: Backend>(
    fx: &Fixture,
    device: &B::Device,
) -> Result<Vec<ParityRow>, FixtureError> {
    let config = WanVaeConfig::from_diffusers_json(&fx.config_json).map_err(|e| {
        LoadError::Invalid(format!("{}: {e}", fx.dir.join("config.json").display()))
    })?;
    let (vae, _) = WanVae::<B>::load(&config, &fx.weights_path(), device)?;
    let video = fx.tensor("video")?.to_tensor::<B, 5>(device)?;
    let atol = fx.manifest.atol;

    // Computed once and shared: moments -> z_mean -> recon.
    let mut moments: Option<Tensor<B, 5>> = None;
    let mut get_moments = || -> Result<Tensor<B, 5>, FixtureError> {
        if moments.is_none() {
            moments = Some(
                vae.encode_moments(video.clone())
                    .map_err(|e| invalid(fx, e))?,
            );
        }
        Ok(moments.clone().expect("just set"))
    };
    let mut rows = Vec::new();
    for name in &fx.manifest.outputs {
        let got = match name.as_str() {
            "moments" => get_moments()?,
            "z_mean" => get_moments()?.narrow(1, 0, config.z_dim),
            "recon" => vae
                .decode(get_moments()?.narrow(1, 0, config.z_dim))
                .map_err(|e| invalid(fx, e))?,
            "dec_rand" => {
                let z = fx.tensor("z_rand")?.to_tensor::<B, 5>(device)?;
                vae.decode(z).map_err(|e| invalid(fx, e))?
            }
            other => {
                return Err(FixtureError::Manifest {
                    file: fx.dir.join("manifest.json"),
                    reason: format!("wan_vae has no output named '{other}'"),
                })
            }
        };
        let got = HostTensor::from_tensor(&got);
        rows.push(ParityRow::new(name, &got, fx.tensor(name)?, atol, true));
    }
    Ok(rows)
}
