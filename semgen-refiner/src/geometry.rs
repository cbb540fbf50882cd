//! Where semantic tokens sit on the VAE latent grid.
//!
//! The paper does not say how semantic tokens are positioned (paper notes §1.5). semgen puts them
//! **on the same 3D RoPE grid as the VAE tokens they describe**, at fractional coordinates, so
//! attention sees a semantic token next to the latent tokens of the same place and time, and the
//! temporal windows of long videos naturally hold the VAE and semantic tokens of one time span:
//!
//! - semantic frame `k` summarises sampled frames `k·p_t … (k+1)·p_t − 1` (`p_t` = the encoder's
//!   temporal patch, 2 for Qwen2.5-VL), i.e. video frames around
//!   `c_k = stride · (k·p_t + (p_t − 1)/2)`;
//! - a video frame `v` sits at latent time `v / r_t` (`r_t` = the VAE's temporal factor 4), and at
//!   patched time `v / (r_t · patch_t)`;
//! - semantic token `(y, x)` covers pixels centred at `((y + ½)·s, (x + ½)·s)` (`s` = pixels per
//!   token side: patch × merge, 28 for Qwen2.5-VL); a patched VAE token covers
//!   `r_s · patch_h` pixels (8 × 2 = 16), so the semantic token's position is
//!   `centre / (r_s · patch) − ½`;
//! - for windowing, a semantic token belongs to the (patched) frame `⌊time⌋`, clamped to the clip.

use semgen_core::wan_dit::ExtraTokens;
use semgen_core::ConfigError;

/// How the semantic grid maps onto the VAE latent grid.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SemanticGeometry {
    /// Video frames between two frames the semantic encoder sees (the sparse sampling stride).
    pub frame_stride: usize,
    /// Sampled frames per semantic frame (the encoder's temporal patch).
    pub temporal_patch: usize,
    /// Pixels per semantic token side (encoder patch × spatial merge).
    pub pixels_per_token: usize,
    /// VAE temporal compression.
    pub vae_temporal: usize,
    /// VAE spatial compression.
    pub vae_spatial: usize,
    /// The DiT's patch on the latent grid.
    pub patch: [usize; 3],
}

impl SemanticGeometry {
    /// Qwen2.5-VL at the paper's rates: 24 fps video, 1.6 fps semantics (stride 15), 28 px tokens.
    pub fn paper() -> Self {
        Self {
            frame_stride: 15,
            temporal_patch: 2,
            pixels_per_token: 28,
            vae_temporal: 4,
            vae_spatial: 8,
            patch: [1, 2, 2],
        }
    }

    /// The Shapes world: 8 fps clips sampled every 4th frame, encoder patch 8 × merge 2 = 16 px.
    pub fn shapes() -> Self {
        Self {
            frame_stride: 4,
            temporal_patch: 2,
            pixels_per_token: 16,
            vae_temporal: 4,
            vae_spatial: 8,
            patch: [1, 2, 2],
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let all = [
            self.frame_stride,
            self.temporal_patch,
            self.pixels_per_token,
            self.vae_temporal,
            self.vae_spatial,
        ];
        if all.contains(&0) || self.patch.contains(&0) {
            return Err(ConfigError::invalid(format!(
                "semantic geometry has a zero factor: {self:?}"
            )));
        }
        Ok(())
    }

    /// RoPE positions (patched-grid units) and window frames of a semantic grid `[t, h, w]`
    /// relative to a patched latent grid `[f, h, w]`, tokens in `(t, h, w)` row-major order.
    pub fn place(&self, semantic_grid: [usize; 3], patched_grid: [usize; 3]) -> ExtraTokens {
        let [st, sh, sw] = semantic_grid;
        let f = patched_grid[0];
        let t_unit = (self.vae_temporal * self.patch[0]) as f64;
        let (hu, wu) = (
            (self.vae_spatial * self.patch[1]) as f64,
            (self.vae_spatial * self.patch[2]) as f64,
        );
        let s = self.pixels_per_token as f64;
        let mut positions = Vec::with_capacity(st * sh * sw);
        let mut frames = Vec::with_capacity(st * sh * sw);
        for k in 0..st {
            let centre = self.frame_stride as f64 * (k * self.temporal_patch) as f64
                + self.frame_stride as f64 * (self.temporal_patch as f64 - 1.0) / 2.0;
            let t = centre / t_unit;
            let frame = (t.floor().max(0.0) as usize).min(f.saturating_sub(1));
            for y in 0..sh {
                for x in 0..sw {
                    positions.push([
                        t,
                        (y as f64 + 0.5) * s / hu - 0.5,
                        (x as f64 + 0.5) * s / wu - 0.5,
                    ]);
                    frames.push(frame);
                }
            }
        }
        ExtraTokens { positions, frames }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_geometry_aligns_tokens() {
        // 17 frames → 5 latent frames; stride 4 samples frames 0,4,8,12,16 (+ repeat) → 3 semantic frames.
        let g = SemanticGeometry::shapes();
        let e = g.place([3, 2, 2], [5, 2, 2]);
        assert_eq!(e.positions.len(), 12);
        // Semantic frame 0 covers sampled frames 0,1 = video frames 0,4 → centre 2 → latent 0.5.
        assert_eq!(e.positions[0][0], 0.5);
        assert_eq!(e.frames[0], 0);
        // A 16-px semantic token maps onto exactly one 16-px patched token.
        assert_eq!(e.positions[0][1], 0.0);
        assert_eq!(e.positions[3][1..], [1.0, 1.0]);
        // The last semantic frame is clamped into the clip for windowing.
        assert_eq!(*e.frames.last().unwrap(), 4);
        assert!(SemanticGeometry {
            frame_stride: 0,
            ..g
        }
        .validate()
        .is_err());
    }
}
