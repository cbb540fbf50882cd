//! Streaming decode: latent frames in, pixel frames out, in constant memory.
//!
//! Upstream's `_decode` already runs the decoder one latent frame at a time; all temporal
//! context lives in the [`FeatCache`] (at most 2 frames per causal layer). [`StreamDecoder`]
//! keeps that cache between calls instead of concatenating the outputs, so decoding a clip of
//! any length holds one latent frame, the cache, and the frames just produced. The first latent
//! frame yields 1 frame and every later one `temporal_factor` (4) frames, exactly the frames
//! [`WanVae::decode`] produces for the same latents.
//!
//! With a [`TileConfig`] each latent frame is split into overlapping spatial tiles, every tile has
//! its own cache, and the decoded tiles are blended over the overlap with linear ramps (diffusers'
//! `tiled_decode`: blend with the tile above, then the one to the left, crop to the stride).

use crate::model::{FeatCache, WanVae};
use crate::VaeError;
use burn::prelude::*;

/// Spatial tiling in pixels: tiles of `tile × tile`, starting every `stride` pixels; the overlap
/// `tile - stride` is blended. Both must be multiples of the VAE's spatial factor (8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileConfig {
    pub tile: usize,
    pub stride: usize,
}

impl TileConfig {
    /// diffusers' defaults: 256-pixel tiles every 192 pixels.
    pub const DIFFUSERS: TileConfig = TileConfig {
        tile: 256,
        stride: 192,
    };

    fn validate(&self, factor: usize) -> Result<(), VaeError> {
        if self.tile == 0 || self.stride == 0 || self.stride > self.tile {
            return Err(VaeError::Tiling(format!(
                "need 0 < stride <= tile, got tile {} stride {}",
                self.tile, self.stride
            )));
        }
        if self.tile % factor != 0 || self.stride % factor != 0 {
            return Err(VaeError::Tiling(format!(
                "tile {} and stride {} must be multiples of the spatial factor {factor}",
                self.tile, self.stride
            )));
        }
        Ok(())
    }
}

/// Decodes latent frames one at a time. See the module docs.
pub struct StreamDecoder<'a, B: Backend> {
    vae: &'a WanVae<B>,
    tiling: Option<TileConfig>,
    /// One cache per tile (row-major), or a single one without tiling.
    caches: Vec<FeatCache<B>>,
    /// `[B, z, 1, h, w]` of the first frame; later frames must match.
    first: Option<[usize; 5]>,
}

impl<'a, B: Backend> StreamDecoder<'a, B> {
    pub fn new(vae: &'a WanVae<B>) -> Self {
        Self {
            vae,
            tiling: None,
            caches: Vec::new(),
            first: None,
        }
    }

    /// A streaming decoder that tiles every frame.
    pub fn tiled(vae: &'a WanVae<B>, tiling: TileConfig) -> Result<Self, VaeError> {
        tiling.validate(vae.config.spatial_factor())?;
        Ok(Self {
            tiling: Some(tiling),
            ..Self::new(vae)
        })
    }

    /// Elements held by the caches: constant once every layer has seen two frames, whatever the
    /// clip length.
    pub fn cache_numel(&self) -> usize {
        self.caches.iter().map(FeatCache::numel).sum()
    }

    /// Decodes the next latent frame `[B, z_dim, 1, h, w]` (not normalised) to pixel frames
    /// `[B, C, n, 8h, 8w]` in `[-1, 1]`: `n = 1` for the first frame, `temporal_factor` after.
    pub fn push(&mut self, z: Tensor<B, 5>) -> Result<Tensor<B, 5>, VaeError> {
        let dims = z.dims();
        self.vae.check_latent(dims)?;
        let first = *self.first.get_or_insert(dims);
        if dims[2] != 1 || dims[0] != first[0] || dims[3..] != first[3..] {
            return Err(VaeError::LatentFrame {
                found: dims.to_vec(),
                first: first.to_vec(),
                z_dim: self.vae.config.z_dim,
            });
        }
        // post_quant_conv is 1×1×1, so applying it per frame equals applying it to the clip.
        let x = self.vae.post_quant_conv.forward(z, None);
        let out = match self.tiling {
            None => {
                if self.caches.is_empty() {
                    self.caches.push(FeatCache::new());
                }
                self.vae.decoder.forward(x, &mut self.caches[0])
            }
            Some(t) => self.decode_tiled(x, t),
        };
        Ok(out.clamp(-1.0, 1.0))
    }

    /// Turns this decoder into an iterator over decoded chunks of `latents`.
    pub fn decode_iter<I>(
        self,
        latents: I,
    ) -> impl Iterator<Item = Result<Tensor<B, 5>, VaeError>> + 'a
    where
        I: IntoIterator<Item = Tensor<B, 5>>,
        I::IntoIter: 'a,
    {
        let mut me = self;
        latents.into_iter().map(move |z| me.push(z))
    }

    fn decode_tiled(&mut self, x: Tensor<B, 5>, t: TileConfig) -> Tensor<B, 5> {
        let f = self.vae.config.spatial_factor();
        let [_, _, _, h, w] = x.dims();
        let (tile, stride) = (t.tile / f, t.stride / f);
        let blend = t.tile - t.stride;
        let rows: Vec<usize> = (0..h).step_by(stride).collect();
        let cols: Vec<usize> = (0..w).step_by(stride).collect();
        if self.caches.is_empty() {
            self.caches = (0..rows.len() * cols.len())
                .map(|_| FeatCache::new())
                .collect();
        }
        // Decode every tile, then blend in place in raster order (as diffusers does, a tile is
        // blended with the already-blended tiles above and to the left).
        let mut grid: Vec<Vec<Tensor<B, 5>>> = Vec::with_capacity(rows.len());
        for (ri, &i) in rows.iter().enumerate() {
            let mut row = Vec::with_capacity(cols.len());
            for (ci, &j) in cols.iter().enumerate() {
                let part = x
                    .clone()
                    .narrow(3, i, tile.min(h - i))
                    .narrow(4, j, tile.min(w - j));
                row.push(
                    self.vae
                        .decoder
                        .forward(part, &mut self.caches[ri * cols.len() + ci]),
                );
            }
            grid.push(row);
        }
        let mut out_rows = Vec::with_capacity(rows.len());
        for ri in 0..rows.len() {
            let mut out_row = Vec::with_capacity(cols.len());
            for ci in 0..cols.len() {
                let mut cur = grid[ri][ci].clone();
                if ri > 0 {
                    cur = blend_along(&grid[ri - 1][ci], cur, blend, 3);
                }
                if ci > 0 {
                    cur = blend_along(&grid[ri][ci - 1], cur, blend, 4);
                }
                grid[ri][ci] = cur.clone();
                let [_, _, _, th, tw] = cur.dims();
                out_row.push(
                    cur.narrow(3, 0, t.stride.min(th))
                        .narrow(4, 0, t.stride.min(tw)),
                );
            }
            out_rows.push(Tensor::cat(out_row, 4));
        }
        let out = Tensor::cat(out_rows, 3);
        out.narrow(3, 0, h * f).narrow(4, 0, w * f)
    }
}

/// diffusers' `blend_v`/`blend_h`: the first `e` rows (or columns) of `b` become
/// `a[-e + y]·(1 - y/e) + b[y]·(y/e)`, `e = min(extent, size of a, size of b)`.
fn blend_along<B: Backend>(
    a: &Tensor<B, 5>,
    b: Tensor<B, 5>,
    extent: usize,
    dim: usize,
) -> Tensor<B, 5> {
    let (na, nb) = (a.dims()[dim], b.dims()[dim]);
    let e = extent.min(na).min(nb);
    if e == 0 {
        return b;
    }
    let ramp: Vec<f32> = (0..e).map(|y| y as f32 / e as f32).collect();
    let mut shape = [1usize; 5];
    shape[dim] = e;
    let r = Tensor::<B, 1>::from_floats(ramp.as_slice(), &b.device()).reshape(shape);
    let head = a.clone().narrow(dim, na - e, e) * (r.clone().neg() + 1.0)
        + b.clone().narrow(dim, 0, e) * r;
    if e == nb {
        head
    } else {
        Tensor::cat(vec![head, b.narrow(dim, e, nb - e)], dim)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    #[test]
    fn blend_ramps_linearly_over_the_overlap() {
        let d = Default::default();
        let a = Tensor::<NdArray, 5>::zeros([1, 1, 1, 1, 6], &d);
        let b = Tensor::<NdArray, 5>::ones([1, 1, 1, 1, 6], &d);
        let out = blend_along(&a, b, 4, 4)
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        assert_eq!(out, vec![0.0, 0.25, 0.5, 0.75, 1.0, 1.0]);
        // The tail of `a` (not its head) is what overlaps `b`.
        let a =
            Tensor::<NdArray, 1>::from_floats([9.0, 9.0, 2.0, 2.0], &d).reshape([1, 1, 1, 4, 1]);
        let b = Tensor::<NdArray, 5>::zeros([1, 1, 1, 3, 1], &d);
        let out = blend_along(&a, b, 2, 3)
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        assert_eq!(out, vec![2.0, 1.0, 0.0]);
    }
}
