//! The VAE configuration: diffusers' `AutoencoderKLWan` `config.json` fields, presets, and the
//! invariants the model relies on.

use burn::prelude::*;
use semgen_core::ConfigError;

/// Wan2.1's per-channel latent statistics (diffusers `AutoencoderKLWan` defaults, 16 channels).
pub const WAN21_LATENTS_MEAN: [f32; 16] = [
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508, 0.4134, -0.0715, 0.5517,
    -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
];
/// See [`WAN21_LATENTS_MEAN`].
pub const WAN21_LATENTS_STD: [f32; 16] = [
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743, 3.2687, 2.1526, 2.8652, 1.5579,
    1.6382, 1.1253, 2.8251, 1.9160,
];

/// Configuration of the Wan2.1 VAE. Field names (including upstream's `temperal_downsample`
/// spelling) follow diffusers' `config.json`.
#[derive(Config, Debug, PartialEq)]
pub struct WanVaeConfig {
    /// Channels of the first encoder level; level `i` has `base_dim · dim_mult[i]`.
    pub base_dim: usize,
    /// Latent channels.
    pub z_dim: usize,
    pub dim_mult: Vec<usize>,
    /// Residual blocks per encoder level (the decoder has one more per level).
    pub num_res_blocks: usize,
    /// Which of the `len(dim_mult) - 1` downsamplings also halve time (decoder: reversed).
    pub temperal_downsample: Vec<bool>,
    /// Decoder base width; `None` = `base_dim`.
    #[config(default = "None")]
    pub decoder_base_dim: Option<usize>,
    #[config(default = 3)]
    pub in_channels: usize,
    #[config(default = 3)]
    pub out_channels: usize,
    /// Dropout of the residual blocks. Inference ignores it (upstream runs in `eval()`), and
    /// semgen's training does not apply it either.
    #[config(default = 0.0)]
    pub dropout: f64,
    /// Per-channel latent mean/std of the pipeline normalisation `(mu - mean) / std`.
    pub latents_mean: Vec<f32>,
    pub latents_std: Vec<f32>,
}

impl WanVaeConfig {
    /// The reference fixture's config (`fixtures/wan_vae/config.json`): base 8, z 4,
    /// dim_mult [1, 2, 4, 4], 1 residual block, temporal downsampling [F, T, T], identity
    /// latent normalisation.
    pub fn tiny() -> Self {
        Self::new(
            8,
            4,
            vec![1, 2, 4, 4],
            1,
            vec![false, true, true],
            vec![0.0; 4],
            vec![1.0; 4],
        )
    }

    /// The model that ships for the Shapes world: base 16, z 8, dim_mult [1, 2, 2, 2], one
    /// residual block, [F, T, T]. NOTES §6's "VAE small" (base 32, z 16, [1, 2, 4, 4], 2 blocks)
    /// takes about a minute per training step on the 2-core CPU; this one trains there. z 8 keeps
    /// the refiner's latent space small; see `docs/vae.md`.
    /// Latent statistics start as identity and are measured after training.
    pub fn shapes_small() -> Self {
        Self::new(
            16,
            8,
            vec![1, 2, 2, 2],
            1,
            vec![false, true, true],
            vec![0.0; 8],
            vec![1.0; 8],
        )
    }

    /// Wan2.1's VAE (diffusers `Wan-AI/Wan2.1-T2V-1.3B-Diffusers/vae/config.json`, which equals
    /// the `AutoencoderKLWan` defaults): base 96, z 16, dim_mult [1, 2, 4, 4], 2 residual blocks,
    /// [F, T, T], the published latent mean/std.
    pub fn wan21() -> Self {
        Self::new(
            96,
            16,
            vec![1, 2, 4, 4],
            2,
            vec![false, true, true],
            WAN21_LATENTS_MEAN.to_vec(),
            WAN21_LATENTS_STD.to_vec(),
        )
    }

    /// Reads a diffusers `AutoencoderKLWan` `config.json`. Unknown keys are ignored; the Wan2.2
    /// options (`is_residual`, `patch_size`) and encoder attention (`attn_scales`, which
    /// upstream's encoder cannot run either) are refused.
    pub fn from_diffusers_json(text: &str) -> Result<Self, ConfigError> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| ConfigError::Parse {
            what: "AutoencoderKLWan config.json".into(),
            reason: e.to_string(),
        })?;
        let bad = |k: &str, what: &str| ConfigError::invalid(format!("config.json: '{k}' {what}"));
        let get_usize = |k: &str, default: Option<usize>| -> Result<usize, ConfigError> {
            match v.get(k) {
                None | Some(serde_json::Value::Null) => default.ok_or_else(|| bad(k, "is missing")),
                Some(x) => x
                    .as_u64()
                    .map(|x| x as usize)
                    .ok_or_else(|| bad(k, "must be an integer")),
            }
        };
        let get_list = |k: &str| -> Result<Vec<serde_json::Value>, ConfigError> {
            v.get(k)
                .and_then(|x| x.as_array())
                .cloned()
                .ok_or_else(|| bad(k, "must be a list"))
        };
        let floats = |k: &str, default: &[f32]| -> Result<Vec<f32>, ConfigError> {
            match v.get(k) {
                None | Some(serde_json::Value::Null) => Ok(default.to_vec()),
                Some(_) => get_list(k)?
                    .iter()
                    .map(|x| {
                        x.as_f64()
                            .map(|f| f as f32)
                            .ok_or_else(|| bad(k, "must hold numbers"))
                    })
                    .collect(),
            }
        };
        if v.get("is_residual").and_then(|x| x.as_bool()) == Some(true) {
            return Err(ConfigError::invalid(
                "config.json: 'is_residual' is true (the Wan2.2 VAE); only the Wan2.1 layout is supported",
            ));
        }
        if v.get("patch_size")
            .is_some_and(|x| !x.is_null() && x.as_u64() != Some(1))
        {
            return Err(ConfigError::invalid(
                "config.json: 'patch_size' is set (the Wan2.2 VAE); only the Wan2.1 layout is supported",
            ));
        }
        if v.get("attn_scales")
            .and_then(|x| x.as_array())
            .is_some_and(|a| !a.is_empty())
        {
            return Err(ConfigError::invalid(
                "config.json: 'attn_scales' is not empty; upstream's encoder cannot run level attention either",
            ));
        }
        let dim_mult = get_list("dim_mult")?
            .iter()
            .map(|x| {
                x.as_u64()
                    .map(|x| x as usize)
                    .ok_or_else(|| bad("dim_mult", "must hold integers"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let temperal_downsample = match v.get("temperal_downsample") {
            None | Some(serde_json::Value::Null) => vec![false, true, true],
            Some(_) => get_list("temperal_downsample")?
                .iter()
                .map(|x| {
                    x.as_bool()
                        .ok_or_else(|| bad("temperal_downsample", "must hold booleans"))
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        let z_dim = get_usize("z_dim", Some(16))?;
        let (mean_default, std_default) = if z_dim == 16 {
            (WAN21_LATENTS_MEAN.to_vec(), WAN21_LATENTS_STD.to_vec())
        } else {
            (vec![0.0; z_dim], vec![1.0; z_dim])
        };
        let decoder_base_dim = match v.get("decoder_base_dim") {
            None | Some(serde_json::Value::Null) => None,
            Some(_) => Some(get_usize("decoder_base_dim", None)?),
        };
        let cfg = Self {
            base_dim: get_usize("base_dim", Some(96))?,
            z_dim,
            dim_mult,
            num_res_blocks: get_usize("num_res_blocks", Some(2))?,
            temperal_downsample,
            decoder_base_dim,
            in_channels: get_usize("in_channels", Some(3))?,
            out_channels: get_usize("out_channels", Some(3))?,
            dropout: v.get("dropout").and_then(|x| x.as_f64()).unwrap_or(0.0),
            latents_mean: floats("latents_mean", &mean_default)?,
            latents_std: floats("latents_std", &std_default)?,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks every invariant the model relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (k, v) in [
            ("base_dim", self.base_dim),
            ("z_dim", self.z_dim),
            ("num_res_blocks", self.num_res_blocks),
            ("in_channels", self.in_channels),
            ("out_channels", self.out_channels),
            ("decoder_base_dim", self.decoder_dim()),
        ] {
            if v == 0 {
                return Err(ConfigError::invalid(format!("{k} must be positive")));
            }
        }
        if self.dim_mult.len() < 2 || self.dim_mult.contains(&0) {
            return Err(ConfigError::invalid(format!(
                "dim_mult {:?} needs at least 2 positive entries",
                self.dim_mult
            )));
        }
        if self.temperal_downsample.len() != self.dim_mult.len() - 1 {
            return Err(ConfigError::invalid(format!(
                "temperal_downsample has {} entries; dim_mult {:?} needs {}",
                self.temperal_downsample.len(),
                self.dim_mult,
                self.dim_mult.len() - 1
            )));
        }
        // Upstream encodes 4-frame chunks; three temporal halvings would leave 0.5 latent frames.
        if self.temporal_factor() > 4 {
            return Err(ConfigError::invalid(format!(
                "temperal_downsample {:?} halves time more than twice; the 4-frame encoder chunks allow at most 2",
                self.temperal_downsample
            )));
        }
        if self.latents_mean.len() != self.z_dim || self.latents_std.len() != self.z_dim {
            return Err(ConfigError::invalid(format!(
                "latents_mean/latents_std have {}/{} entries, z_dim is {}",
                self.latents_mean.len(),
                self.latents_std.len(),
                self.z_dim
            )));
        }
        if self
            .latents_std
            .iter()
            .any(|s| !(s.is_finite() && *s > 0.0))
        {
            return Err(ConfigError::invalid("latents_std must be positive"));
        }
        Ok(())
    }

    /// Decoder base width.
    pub fn decoder_dim(&self) -> usize {
        self.decoder_base_dim.unwrap_or(self.base_dim)
    }

    /// Encoder widths `base_dim · [1, dim_mult...]`.
    pub fn encoder_dims(&self) -> Vec<usize> {
        std::iter::once(1)
            .chain(self.dim_mult.iter().copied())
            .map(|m| self.base_dim * m)
            .collect()
    }

    /// Decoder multipliers `[dim_mult[-1], dim_mult reversed...]` (times [`Self::decoder_dim`]).
    fn decoder_dims(&self) -> Vec<usize> {
        let last = *self.dim_mult.last().unwrap_or(&1);
        std::iter::once(last)
            .chain(self.dim_mult.iter().rev().copied())
            .collect()
    }

    /// Decoder temporal upsampling per level (`temperal_downsample` reversed).
    pub fn temperal_upsample(&self) -> Vec<bool> {
        self.temperal_downsample.iter().rev().copied().collect()
    }

    /// Spatial compression `2^(levels - 1)` (8 for Wan2.1).
    pub fn spatial_factor(&self) -> usize {
        1 << (self.dim_mult.len() - 1)
    }

    /// Temporal compression `2^(temporal downsamplings)` (4 for Wan2.1).
    pub fn temporal_factor(&self) -> usize {
        1 << self.temperal_downsample.iter().filter(|&&t| t).count()
    }

    /// Latent frames of a `T = 1 + 4k` frame clip: `1 + k · 4 / temporal_factor`.
    pub fn latent_frames(&self, frames: usize) -> usize {
        1 + (frames.saturating_sub(1) / 4) * (4 / self.temporal_factor())
    }

    /// Frames decoded from `t_lat` latent frames: `1 + (t_lat - 1) · temporal_factor`.
    pub fn decoded_frames(&self, latent_frames: usize) -> usize {
        if latent_frames == 0 {
            0
        } else {
            1 + (latent_frames - 1) * self.temporal_factor()
        }
    }

    /// (in, out) channels of decoder level `i` (Wan2.1: levels after the first start halved).
    pub(crate) fn decoder_level_dims(&self, i: usize) -> (usize, usize) {
        let d = self.decoder_dims();
        let (mut cin, cout) = (d[i] * self.decoder_dim(), d[i + 1] * self.decoder_dim());
        if i > 0 {
            cin /= 2;
        }
        (cin, cout)
    }
}
