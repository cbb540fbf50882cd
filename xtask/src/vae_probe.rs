//! `cargo xtask probe-vae`: is an object's shape in the VAE latent around it?
//!
//! The VAE decoder draws every Shapes object as a round blob (docs/vae.md, session 29), and
//! `probe-semantic --space vae` could not read the shape from any single latent cell. Whether a
//! better decoder alone can draw the shapes (keeping the shipped stages 1 and 2 valid) or the
//! encoder must change too depends on whether the shape is in the latent *at all*, spread over
//! the cells an object covers. This probe reads it where it would be: the first frame of
//! one-object training clips is encoded alone (latent frame 0, the image path), and a window of
//! `W × W` latent cells centred on the object (zeros off the grid), with the object's offset
//! from the window's centre, is given to two readers fitted on training clips and scored on
//! validation clips: closed-form ridge regression, and a two-layer MLP (the
//! [`semgen_encoder::probe`] set probe on a single token that holds the whole window).
//!
//! Three references over the same window, read by the same readers:
//! - the frame's **8×8-cell mean colours** (`cell_means`): all that a latent holding only its
//!   anchored channels (each cell's mean colour, docs/vae.md "Training recipe") would say. A
//!   latent at that level carries no outline beyond the coverage pattern of the cells;
//! - the frame itself in 2×2-pixel means (`pixels`): what the readers can get from the truth
//!   (the oracle's shape check still passes at that resolution, docs/vae.md);
//! - the VAE's reconstruction of the frame from its latent, the same way (`decoded`).
//!
//! A latent well above `cell_means` carries the shape; if `decoded` then falls below `latent`,
//! the decoder is what loses it.

use anyhow::{Context, Result};
use burn::tensor::backend::AutodiffBackend;
use semgen_core::device::DeviceSpec;
use semgen_data::{Clip, ShapesWorld, Size, Split, Video, WorldConfig};
use semgen_encoder::probe::{GridDims, SetProbeConfig};
use semgen_encoder::train::linear_probe_accuracy;
use semgen_pipeline::backend::{dispatch_autodiff, AutodiffTask};
use semgen_pipeline::model::SemgenModel;
use std::path::PathBuf;

#[derive(clap::Args, Debug, Clone)]
pub struct VaeProbeArgs {
    #[arg(long, default_value = "checkpoints/shapes-small")]
    pub checkpoint: PathBuf,
    /// One-object training clips the readers are fitted on.
    #[arg(long, default_value_t = 4096)]
    pub fit: usize,
    /// One-object validation clips they are scored on.
    #[arg(long, default_value_t = 1024)]
    pub val: usize,
    /// Side of the window, in latent cells (8 px each).
    #[arg(long, default_value_t = 4)]
    pub window: usize,
    /// Hidden width of the MLP reader.
    #[arg(long, default_value_t = 128)]
    pub hidden: usize,
    /// Full-batch AdamW steps of the MLP reader.
    #[arg(long, default_value_t = 600)]
    pub steps: usize,
    /// Seed of the MLP reader's initial weights.
    #[arg(long, default_value_t = 0)]
    pub probe_seed: u64,
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
    /// Also write the figures (JSON) here.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// The attributes read, as `(name, index in `encoder::labels`, classes)`.
const READ: [(&str, usize, usize); 3] = [("colour", 0, 8), ("shape", 1, 6), ("size", 2, 2)];

/// The window features of one split: rows of the latent window and of the cell-mean colours,
/// labels, and each clip's object size.
#[derive(Default)]
struct Rows {
    latent: Vec<f32>,
    cells: Vec<f32>,
    /// The same window of frame 0 in 2×2-pixel means: what the readers get from the truth.
    pixels: Vec<f32>,
    /// And of the VAE's reconstruction of frame 0 from that latent.
    decoded: Vec<f32>,
    labels: Vec<[usize; 6]>,
    sizes: Vec<Size>,
}

/// The first cell of a `window`-cell span centred (to the nearest cell boundary) on pixel
/// coordinate `c`, and `c`'s offset from the span's centre in cells (in `[-0.5, 0.5]`).
fn span(c: f64, cell: usize, window: usize) -> (isize, f32) {
    let mid = (c / cell as f64).round();
    (
        mid as isize - (window / 2) as isize,
        (c / cell as f64 - mid) as f32,
    )
}

/// Appends the `window × window` cells of `grid` (`[d, h, w]`, channel-major) starting at
/// `(y0, x0)`, channel-major, zeros off the grid, then the two offsets.
fn push_window(
    out: &mut Vec<f32>,
    grid: &[f32],
    [d, h, w]: [usize; 3],
    (y0, x0): (isize, isize),
    window: usize,
    offsets: [f32; 2],
) {
    for c in 0..d {
        for y in y0..y0 + window as isize {
            for x in x0..x0 + window as isize {
                let inside = (0..h as isize).contains(&y) && (0..w as isize).contains(&x);
                out.push(if inside {
                    grid[(c * h + y as usize) * w + x as usize]
                } else {
                    0.0
                });
            }
        }
    }
    out.extend(offsets);
}

/// Frame 0's mean colour over each `cell × cell` block, scaled to [-1, 1], as `[3, h, w]`.
fn cell_means(video: &Video, cell: usize) -> Vec<f32> {
    let (h, w) = (video.height() / cell, video.width() / cell);
    let frame = video.frame(0).unwrap_or_default();
    let mut out = vec![0.0f32; 3 * h * w];
    for (p, px) in frame.chunks_exact(3).enumerate() {
        let (y, x) = ((p / video.width()) / cell, (p % video.width()) / cell);
        if y < h && x < w {
            for c in 0..3 {
                out[(c * h + y) * w + x] += px[c] as f32;
            }
        }
    }
    let n = (cell * cell) as f32;
    out.iter().map(|s| s / n / 127.5 - 1.0).collect()
}

struct VaeProbe(VaeProbeArgs);

impl AutodiffTask for VaeProbe {
    type Output = Result<()>;
    fn run<AB: AutodiffBackend>(self, device: AB::Device) -> Result<()> {
        let a = self.0;
        anyhow::ensure!(a.window > 0, "--window must be at least 1 cell");
        let start = std::time::Instant::now();
        let model = SemgenModel::<AB::InnerBackend>::load(&a.checkpoint, &device)
            .with_context(|| format!("loading {}", a.checkpoint.display()))?;
        let world = ShapesWorld::new(WorldConfig {
            max_objects: 1,
            ..WorldConfig::default()
        })?;
        let collect = |split: Split, n: usize| -> Result<Rows> {
            let mut rows = Rows::default();
            for first in (0..n).step_by(64) {
                let clips = (first..n.min(first + 64))
                    .map(|i| world.clip(split, i as u64))
                    .collect::<Result<Vec<Clip>, _>>()?;
                let frames = clips
                    .iter()
                    .map(|c| c.video.select(&[0]))
                    .collect::<Result<Vec<_>, _>>()?;
                let x = semgen_data::videos_to_tensor(&frames, &device)?;
                // Frame 0 alone: latent frame 0 through the encoder's image path.
                let latent = model.vae.encode(x)?;
                let decoded = semgen_data::tensor_to_videos(model.vae.decode(latent.clone())?)?;
                let z = model.vae.normalize(latent);
                let [b, d, _, h, w] = z.dims();
                let z = z.into_data().to_vec::<f32>().unwrap_or_default();
                let cell = frames[0].height() / h;
                // 2×2-pixel means: `f` of them across each latent cell.
                let f = cell / 2;
                for (i, clip) in clips.iter().enumerate() {
                    let object = clip
                        .plan
                        .objects
                        .first()
                        .context("a clip without objects")?;
                    let [cx, cy] = object.centres[0];
                    let ((x0, ox), (y0, oy)) = (span(cx, cell, a.window), span(cy, cell, a.window));
                    let per = d * h * w;
                    let grid = &z[i * per..(i + 1) * per];
                    let at = (y0, x0);
                    push_window(&mut rows.latent, grid, [d, h, w], at, a.window, [ox, oy]);
                    let means = cell_means(&frames[i], cell);
                    push_window(&mut rows.cells, &means, [3, h, w], at, a.window, [ox, oy]);
                    let at = (y0 * f as isize, x0 * f as isize);
                    for (video, out) in [
                        (&frames[i], &mut rows.pixels),
                        (&decoded[i], &mut rows.decoded),
                    ] {
                        let fine = cell_means(video, 2);
                        push_window(out, &fine, [3, h * f, w * f], at, a.window * f, [ox, oy]);
                    }
                    rows.labels.push(crate::encoder::labels(clip));
                    rows.sizes.push(object.size);
                }
                debug_assert_eq!(rows.labels.len(), first + b);
            }
            Ok(rows)
        };
        let fit = collect(Split::Train, a.fit)?;
        let val = collect(Split::Val, a.val)?;
        anyhow::ensure!(
            !fit.labels.is_empty(),
            "--fit 0: nothing to fit the readers on"
        );
        anyhow::ensure!(
            !val.labels.is_empty(),
            "--val 0: nothing to score the readers on"
        );
        let mlp = SetProbeConfig {
            hidden: a.hidden,
            steps: a.steps,
            seed: a.probe_seed,
            ..SetProbeConfig::default()
        };
        let mut report = serde_json::json!({
            "checkpoint": a.checkpoint,
            "fit_clips": a.fit,
            "val_clips": a.val,
            "window_cells": a.window,
            "mlp": format!("semgen_encoder::probe on one token, {mlp:?}"),
        });
        // Which validation rows hold an object of each size (for the per-size shape rates).
        let by_size = |size: Size| -> Vec<usize> {
            (0..val.sizes.len())
                .filter(|&i| val.sizes[i] == size)
                .collect()
        };
        let rows_of = |x: &[f32], k: usize, keep: &[usize]| -> Vec<f32> {
            keep.iter()
                .flat_map(|&i| x[i * k..(i + 1) * k].iter().copied())
                .collect()
        };
        for (features, fx, vx) in [
            ("latent", &fit.latent, &val.latent),
            ("cell_means", &fit.cells, &val.cells),
            ("pixels", &fit.pixels, &val.pixels),
            ("decoded", &fit.decoded, &val.decoded),
        ] {
            let k = fx.len() / fit.labels.len();
            let dims = GridDims {
                d: k,
                t: 1,
                h: 1,
                w: 1,
            };
            let mut entry = serde_json::json!({ "values_per_clip": k });
            for (name, index, classes) in READ {
                let ty: Vec<usize> = fit.labels.iter().map(|l| l[index]).collect();
                let vy: Vec<usize> = val.labels.iter().map(|l| l[index]).collect();
                let probe = mlp.fit::<AB>(dims, fx, &ty, classes, &device)?;
                let predicted = probe.predict(vx)?;
                let mut scores = serde_json::json!({});
                for (part, keep) in [
                    ("all", (0..vy.len()).collect::<Vec<_>>()),
                    ("small", by_size(Size::Small)),
                    ("large", by_size(Size::Large)),
                ] {
                    if keep.is_empty() {
                        continue;
                    }
                    let y: Vec<usize> = keep.iter().map(|&i| vy[i]).collect();
                    let ridge =
                        linear_probe_accuracy(fx, &ty, &rows_of(vx, k, &keep), &y, k, classes, 1.0);
                    let hits = keep.iter().filter(|&&i| predicted[i] == vy[i]).count();
                    scores[part] = serde_json::json!({
                        "ridge": ridge,
                        "mlp": hits as f64 / keep.len() as f64,
                    });
                }
                entry[name] = scores;
            }
            report[features] = entry;
        }
        report["seconds"] = serde_json::json!(start.elapsed().as_secs_f64());
        let text = serde_json::to_string_pretty(&report)?;
        println!("{text}");
        if let Some(out) = &a.out {
            semgen_core::checkpoint::write_atomic(out, text.as_bytes())?;
        }
        Ok(())
    }
}

pub fn run(args: VaeProbeArgs) -> Result<()> {
    let device = args.device;
    dispatch_autodiff(device, VaeProbe(args))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_is_centred_on_the_object_and_zero_off_the_grid() {
        // A centre at x = 13 px is nearest the boundary of cells 1 and 2 (16 px): a 4-cell
        // window spans cells 0..4 and the object sits 0.375 cells left of its middle.
        assert_eq!(span(13.0, 8, 4), (0, -0.375));
        assert_eq!(span(3.0, 8, 4), (-2, 0.375));
        // A 1-channel 2×2 grid, window of 2 from (-1, 0): the row above is off the grid.
        let mut out = Vec::new();
        push_window(
            &mut out,
            &[1.0, 2.0, 3.0, 4.0],
            [1, 2, 2],
            (-1, 0),
            2,
            [0.1, 0.2],
        );
        assert_eq!(out, vec![0.0, 0.0, 1.0, 2.0, 0.1, 0.2]);
    }

    #[test]
    fn cell_means_average_each_block_to_minus_one_plus_one() {
        // A 4×4 frame, left half white and right half black, in cells of 2×2.
        let mut bytes = Vec::new();
        for _y in 0..4 {
            for x in 0..4 {
                let v = if x < 2 { 255 } else { 0 };
                bytes.extend([v, v, v]);
            }
        }
        let video = Video::new(1, 4, 4, bytes).unwrap();
        let means = cell_means(&video, 2);
        assert_eq!(means.len(), 3 * 2 * 2);
        assert_eq!(&means[..4], &[1.0, -1.0, 1.0, -1.0]);
    }
}
