//! How sharp a clip must be for the oracle: ground-truth Shapes clips degraded on purpose
//! (a Gaussian blur of each frame, or area down-sampling and bilinear up-sampling), with each
//! degradation's PSNR against the original and the oracle's hit rates. It calibrates what a
//! VAE's reconstruction PSNR means for the colour, motion and shape checks (issues 4, 6 and 8).
//!
//! ```text
//! cargo run --release -p semgen-eval --example degrade -- [COUNT] [val|test]
//! ```
//! prints a markdown table (default: validation clips 0..100 of world seed 0, 17×64×64, the
//! clips `xtask eval-vae` reads).

use semgen_data::{Clip, ShapesWorld, Size, Split, Video, WorldConfig};
use semgen_eval::metrics::psnr;
use semgen_eval::{evaluate, HitRates, ShapeConfusion};

/// One frame `[H, W, 3]` as f64 planes, filtered by `f`, rounded back to bytes.
fn per_frame(video: &Video, f: impl Fn(&[f64], usize, usize) -> Vec<f64>) -> Video {
    let (t, h, w) = (video.frames(), video.height(), video.width());
    let bytes = video.as_bytes();
    let mut out = vec![0u8; bytes.len()];
    for k in 0..t {
        for c in 0..3 {
            let plane: Vec<f64> = (0..h * w)
                .map(|p| bytes[(k * h * w + p) * 3 + c] as f64)
                .collect();
            for (p, v) in f(&plane, h, w).into_iter().enumerate() {
                out[(k * h * w + p) * 3 + c] = v.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    Video::new(t, h, w, out).expect("same geometry")
}

/// Separable Gaussian blur with standard deviation `sigma` px (edges clamped).
fn gaussian(plane: &[f64], h: usize, w: usize, sigma: f64) -> Vec<f64> {
    let radius = (3.0 * sigma).ceil() as isize;
    let taps: Vec<f64> = (-radius..=radius)
        .map(|d| (-(d * d) as f64 / (2.0 * sigma * sigma)).exp())
        .collect();
    let norm: f64 = taps.iter().sum();
    let pass = |src: &[f64], horizontal: bool| {
        let mut dst = vec![0.0; h * w];
        for y in 0..h {
            for x in 0..w {
                let mut acc = 0.0;
                for (i, tap) in taps.iter().enumerate() {
                    let d = i as isize - radius;
                    let (yy, xx) = if horizontal {
                        (y as isize, (x as isize + d).clamp(0, w as isize - 1))
                    } else {
                        ((y as isize + d).clamp(0, h as isize - 1), x as isize)
                    };
                    acc += tap * src[yy as usize * w + xx as usize];
                }
                dst[y * w + x] = acc / norm;
            }
        }
        dst
    };
    pass(&pass(plane, true), false)
}

/// Area-average down-sampling by `factor`, then bilinear up-sampling (half-pixel centres).
fn down_up(plane: &[f64], h: usize, w: usize, factor: usize) -> Vec<f64> {
    let (sh, sw) = (h / factor, w / factor);
    let mut small = vec![0.0; sh * sw];
    for y in 0..h {
        for x in 0..w {
            small[(y / factor) * sw + x / factor] += plane[y * w + x];
        }
    }
    small
        .iter_mut()
        .for_each(|v| *v /= (factor * factor) as f64);
    let sample = |y: f64, x: f64| {
        let y = y.clamp(0.0, (sh - 1) as f64);
        let x = x.clamp(0.0, (sw - 1) as f64);
        let (y0, x0) = (y.floor() as usize, x.floor() as usize);
        let (y1, x1) = ((y0 + 1).min(sh - 1), (x0 + 1).min(sw - 1));
        let (fy, fx) = (y - y0 as f64, x - x0 as f64);
        let top = small[y0 * sw + x0] * (1.0 - fx) + small[y0 * sw + x1] * fx;
        let bottom = small[y1 * sw + x0] * (1.0 - fx) + small[y1 * sw + x1] * fx;
        top * (1.0 - fy) + bottom * fy
    };
    let mut out = vec![0.0; h * w];
    for y in 0..h {
        for x in 0..w {
            let sy = (y as f64 + 0.5) / factor as f64 - 0.5;
            let sx = (x as f64 + 0.5) / factor as f64 - 0.5;
            out[y * w + x] = sample(sy, sx);
        }
    }
    out
}

type Degradation = (String, Box<dyn Fn(&Video) -> Video>);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let count: u64 = args.first().map(|s| s.parse()).transpose()?.unwrap_or(100);
    let split = match args.get(1).map(String::as_str) {
        None | Some("val") => Split::Val,
        Some("test") => Split::Test,
        Some(other) => return Err(format!("split must be val or test, got {other}").into()),
    };
    let world = ShapesWorld::new(WorldConfig::default())?;
    let clips: Vec<Clip> = (0..count)
        .map(|i| world.clip(split, i))
        .collect::<Result<_, _>>()?;

    let mut degradations: Vec<Degradation> = vec![("none".into(), Box::new(|v: &Video| v.clone()))];
    for sigma in [0.5, 0.75, 1.0, 1.25, 1.5, 2.0] {
        degradations.push((
            format!("Gaussian blur σ = {sigma} px"),
            Box::new(move |v: &Video| per_frame(v, |p, h, w| gaussian(p, h, w, sigma))),
        ));
    }
    for factor in [2, 4, 8] {
        degradations.push((
            format!("area down ×{factor}, bilinear up"),
            Box::new(move |v: &Video| per_frame(v, |p, h, w| down_up(p, h, w, factor))),
        ));
    }

    println!(
        "{} clips of the {} split (world seed 0, 17×64×64)\n",
        count,
        split.name()
    );
    println!("| degradation | PSNR (dB) | colour | motion | shape | shape, small objects | shape, large objects | background |");
    println!("|---|---|---|---|---|---|---|---|");
    for (name, degrade) in &degradations {
        let (mut db, mut segments, mut shapes) = (0.0, Vec::new(), ShapeConfusion::default());
        for clip in &clips {
            let out = degrade(&clip.video);
            db += psnr(&clip.video, &out)?;
            let prompt = clip.prompt();
            let report = evaluate(&out, &prompt)?;
            shapes.add(&prompt, &report)?;
            segments.extend(report.segments);
        }
        // Objects weigh equally over all clips (one segment per clip).
        let hits = HitRates::of(&segments);
        let db = db / clips.len() as f64;
        let db = if db > 100.0 {
            "∞".to_string()
        } else {
            format!("{db:.2}")
        };
        let by_size = |size| shapes.accuracy(Some(size)).unwrap_or(0.0);
        println!(
            "| {name} | {db} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
            hits.colour,
            hits.motion,
            hits.shape,
            by_size(Size::Small),
            by_size(Size::Large),
            hits.background
        );
    }
    Ok(())
}
