//! `cargo xtask bench …`: measurements that go into `docs/`, never into timed tests.
//!
//! `bench vae-memory`: peak resident memory of streaming-decoding clips of several lengths with
//! the same VAE at the same frame size. Each length runs in its own child process (this binary,
//! `bench vae-memory-run`), which decodes one latent frame at a time, turns each decoded chunk
//! into 8-bit pixels and drops it (as `semgen generate` does when it writes a GIF), then reports
//! its peak RSS (`VmHWM` of `/proc/self/status`, Linux).

use anyhow::{bail, Context, Result};
use burn::prelude::*;
use clap::{Args, Subcommand};
use rand::{Rng, SeedableRng};
use semgen_vae::{StreamDecoder, WanVaeConfig};
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Peak memory of streaming decode, per clip length (one process each).
    VaeMemory(VaeMemoryArgs),
    /// One measurement of `vae-memory` (run by it, in a fresh process).
    #[command(hide = true)]
    VaeMemoryRun(VaeMemoryRunArgs),
    /// Time and peak memory of one refiner denoising step per latent frame, 1× to 16× the
    /// training length, temporal windows vs full attention (one process each).
    RefinerScaling(RefinerScalingArgs),
    /// One measurement of `refiner-scaling` (run by it, in a fresh process).
    #[command(hide = true)]
    RefinerScalingRun(RefinerScalingRunArgs),
}

#[derive(Debug, Args)]
pub struct RefinerScalingArgs {
    /// Lengths as multiples of the 17-frame training clip (16·m + 1 frames).
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16")]
    pub multiples: Vec<usize>,
    /// The refiner whose architecture is measured (its weights do not change the cost).
    #[arg(long, default_value = "checkpoints/shapes-small/refiner.safetensors")]
    pub refiner: PathBuf,
    /// Timed forwards per point (after one warm-up); the median is reported.
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    /// Write the table (Markdown) here as well as printing it.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RefinerScalingRunArgs {
    #[arg(long)]
    pub multiple: usize,
    /// Temporal window in latent frames; 0 = full attention.
    #[arg(long)]
    pub window: usize,
    #[arg(long)]
    pub refiner: PathBuf,
    #[arg(long)]
    pub repeats: usize,
}

#[derive(Debug, Args)]
pub struct VaeMemoryArgs {
    /// Clip lengths in frames (each `1 + 4k`).
    #[arg(long, value_delimiter = ',', default_value = "17,65,257")]
    pub frames: Vec<usize>,
    /// Frame height and width in pixels (a multiple of 8).
    #[arg(long, default_value_t = 128)]
    pub size: usize,
    /// VAE preset: shapes-small or wan21 (weights are random: memory does not depend on them).
    #[arg(long, default_value = "shapes-small")]
    pub preset: String,
    /// Write the table (Markdown) here as well as printing it.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct VaeMemoryRunArgs {
    #[arg(long)]
    pub frames: usize,
    #[arg(long)]
    pub size: usize,
    #[arg(long)]
    pub preset: String,
}

pub fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::VaeMemory(a) => vae_memory(a),
        BenchCommand::VaeMemoryRun(a) => vae_memory_run(a),
        BenchCommand::RefinerScaling(a) => refiner_scaling(a),
        BenchCommand::RefinerScalingRun(a) => refiner_scaling_run(a),
    }
}

fn preset(name: &str) -> Result<WanVaeConfig> {
    Ok(match name {
        "shapes-small" => WanVaeConfig::shapes_small(),
        "wan21" => WanVaeConfig::wan21(),
        other => bail!("unknown VAE preset '{other}' (shapes-small, wan21)"),
    })
}

fn peak_rss_kib() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")
        .context("peak memory needs /proc/self/status (Linux)")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM line in /proc/self/status")
}

fn vae_memory_run(a: VaeMemoryRunArgs) -> Result<()> {
    type B = burn::backend::Flex;
    let device = Default::default();
    let cfg = preset(&a.preset)?;
    if a.frames == 0 || (a.frames - 1) % 4 != 0 || a.size % 8 != 0 {
        bail!("frames must be 1 + 4k and size a multiple of 8");
    }
    let vae = cfg.init::<B>(&device)?;
    let (lat_t, lat_hw) = (1 + (a.frames - 1) / 4, a.size / 8);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let start = Instant::now();
    let mut decoder = StreamDecoder::new(&vae);
    let mut frames = 0usize;
    let mut checksum = 0u64;
    for _ in 0..lat_t {
        let n = cfg.z_dim * lat_hw * lat_hw;
        let z: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let z = Tensor::<B, 5>::from_data(
            TensorData::new(z, [1, cfg.z_dim, 1, lat_hw, lat_hw]),
            &device,
        );
        let out = decoder.push(z)?;
        frames += out.dims()[2];
        let pixels: Vec<u8> = out
            .into_data()
            .to_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?
            .iter()
            .map(|v| ((v + 1.0) * 127.5).round() as u8)
            .collect();
        checksum = checksum.wrapping_add(pixels.iter().map(|&p| p as u64).sum::<u64>());
    }
    println!(
        "frames {frames} peak_rss_kib {} seconds {:.2} checksum {checksum}",
        peak_rss_kib()?,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Runs one measurement in a child process (each gets a fresh peak RSS) and returns its stdout;
/// a failure is an error naming the point (`what`) with the child's stderr.
fn child_output(mut cmd: Command, what: &str) -> Result<String> {
    let out = cmd.output()?;
    if !out.status.success() {
        bail!("{what}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The number after `name` in a child's `name value name value …` line.
fn field(text: &str, name: &str) -> Result<f64> {
    let mut it = text.split_whitespace();
    while let Some(w) = it.next() {
        if w == name {
            return Ok(it.next().context("value")?.parse()?);
        }
    }
    bail!("no {name} in '{text}'")
}

fn vae_memory(a: VaeMemoryArgs) -> Result<()> {
    let mut rows = Vec::new();
    for &frames in &a.frames {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args(["bench", "vae-memory-run", "--frames", &frames.to_string()])
            .args(["--size", &a.size.to_string(), "--preset", &a.preset]);
        let text = child_output(cmd, &format!("{frames} frames"))?;
        let field = |name: &str| field(&text, name);
        rows.push((
            frames,
            field("frames")? as usize,
            field("peak_rss_kib")?,
            field("seconds")?,
        ));
    }
    let base = rows.first().map(|r| r.2).unwrap_or(1.0);
    let mut table = format!(
        "| clip frames | decoded frames | peak RSS (MiB) | vs {} frames | decode time (s) |\n|---|---|---|---|---|\n",
        rows.first().map(|r| r.0).unwrap_or(0)
    );
    for (f, got, kib, secs) in &rows {
        table += &format!(
            "| {f} | {got} | {:.1} | {:.3}× | {secs:.1} |\n",
            kib / 1024.0,
            kib / base
        );
    }
    let text = format!(
        "Streaming decode (`StreamDecoder`, one latent frame at a time, each chunk converted to \
         8-bit pixels and dropped), {} VAE (random weights), {}×{} frames, CPU (Flex), one \
         process per length; `cargo xtask bench vae-memory --frames {} --size {}`:\n\n{table}",
        a.preset,
        a.size,
        a.size,
        a.frames
            .iter()
            .map(|f| f.to_string())
            .collect::<Vec<_>>()
            .join(","),
        a.size
    );
    println!("{text}");
    if let Some(path) = a.out {
        semgen_core::checkpoint::write_atomic(&path, text.as_bytes())?;
    }
    Ok(())
}

fn refiner_scaling_run(a: RefinerScalingRunArgs) -> Result<()> {
    use semgen_refiner::refiner::{Refiner, RefinerConfig, SemanticInput};
    type B = burn::backend::Flex;
    let device = Default::default();
    let (_, trained): (Refiner<B>, RefinerConfig) =
        semgen_pipeline::model::load_own(&a.refiner, "refiner", |c: &RefinerConfig| {
            c.init::<B>(&device)
        })
        .with_context(|| format!("loading {}", a.refiner.display()))?;
    let mut config = trained.clone();
    config.dit = config
        .dit
        .clone()
        .with_attn_window((a.window > 0).then_some(a.window));
    let refiner = config.init::<B>(&device)?;
    // A 16·m + 1 frame 64×64 clip: 4m + 1 latent frames of 8×8 and (sampled every 4th frame,
    // temporal patch 2) 2m + 1 semantic frames of 4×4.
    let (f, t) = (4 * a.multiple + 1, 2 * a.multiple + 1);
    let z = config.dit.in_channels;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let mut normal = |dims: Vec<usize>| {
        let n: usize = dims.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        TensorData::new(v, dims)
    };
    let x = Tensor::<B, 5>::from_data(normal(vec![1, z, f, 8, 8]), &device);
    let text = Tensor::<B, 3>::from_data(normal(vec![1, 32, config.dit.text_dim]), &device);
    let sem = config
        .has_semantic()
        .then(|| Tensor::<B, 5>::from_data(normal(vec![1, config.semantic_dim, t, 4, 4]), &device));
    let layout = refiner.layout([f, 8, 8], sem.as_ref().map(|_| [t, 4, 4]), &device)?;
    let step = || {
        let s = match &sem {
            Some(z) => SemanticInput::tokens(z.clone()),
            None => SemanticInput::None,
        };
        let ts = Tensor::<B, 1>::from_data(TensorData::new(vec![500f32], [1]), &device);
        let out = refiner.forward(x.clone(), ts, text.clone(), s, &layout);
        out.into_data().to_vec::<f32>().map(|v| v[0]).unwrap_or(0.0)
    };
    step();
    let mut times = Vec::new();
    for _ in 0..a.repeats.max(1) {
        let start = Instant::now();
        std::hint::black_box(step());
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    println!(
        "latent_frames {f} tokens {} seconds {:.5} peak_rss_kib {}",
        layout.main_tokens + sem.as_ref().map_or(0, |_| t * 16),
        times[times.len() / 2],
        peak_rss_kib()?
    );
    Ok(())
}

fn refiner_scaling(a: RefinerScalingArgs) -> Result<()> {
    let exe = std::env::current_exe()?;
    let run = |m: usize, window: usize| -> Result<(f64, f64, f64, f64)> {
        let mut cmd = Command::new(&exe);
        cmd.args(["bench", "refiner-scaling-run", "--multiple", &m.to_string()])
            .args([
                "--window",
                &window.to_string(),
                "--repeats",
                &a.repeats.to_string(),
            ])
            .arg("--refiner")
            .arg(&a.refiner);
        let text = child_output(cmd, &format!("{m}x"))?;
        let field = |name: &str| field(&text, name);
        Ok((
            field("latent_frames")?,
            field("tokens")?,
            field("seconds")?,
            field("peak_rss_kib")?,
        ))
    };
    let mut table = String::from(
        "| length | frames | latent frames | tokens | window 4: ms / latent frame | vs 1× | peak RSS (MiB) | vs 1× | full: ms / latent frame | vs 1× | peak RSS (MiB) | vs 1× |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut base: Option<[f64; 4]> = None;
    for &m in &a.multiples {
        let (f, tokens, ws, wk) = run(m, 4)?;
        let (_, _, fs, fk) = run(m, 0)?;
        let (wpf, fpf) = (1e3 * ws / f, 1e3 * fs / f);
        let b = *base.get_or_insert([wpf, wk, fpf, fk]);
        table += &format!(
            "| {m}× | {} | {f} | {tokens} | {wpf:.2} | {:.2}× | {:.1} | {:.2}× | {fpf:.2} | {:.2}× | {:.1} | {:.2}× |\n",
            16 * m + 1,
            wpf / b[0],
            wk / 1024.0,
            wk / b[1],
            fpf / b[2],
            fk / 1024.0,
            fk / b[3],
        );
    }
    let text = format!(
        "One denoising step of the refiner (the architecture of `{}`, random weights, batch 1, \
         64×64 frames, semantic tokens in context), CPU (Flex), median of {} forwards after a \
         warm-up, one process per point; `cargo xtask bench refiner-scaling`:\n\n{table}",
        a.refiner.display(),
        a.repeats
    );
    println!("{text}");
    if let Some(path) = a.out {
        semgen_core::checkpoint::write_atomic(&path, text.as_bytes())?;
    }
    Ok(())
}
