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
use xtask::suite;

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
    /// The issue-10 suite: DiT forward and training step, window vs full attention, VAE,
    /// encoders, generate end to end, on one device; `--peer` adds PyTorch's figures and ratios.
    Suite(SuiteArgs),
    /// One row of `suite` (run by it, in a fresh process).
    #[command(hide = true)]
    SuiteRow(SuiteRowArgs),
    /// GPU-scale cases: the attention kernel's TFLOP/s at FlashAttention's shapes and a
    /// Wan2.1-1.3B block's forward and training step at thousands of tokens (tokens/s, MFU), per
    /// precision; `--peer` adds PyTorch's figures (`bench/peer/peer_gpu.py`) on the same device.
    Gpu(GpuArgs),
}

#[derive(Debug, Args)]
pub struct GpuArgs {
    /// Device to run on: cuda[:N], wgpu[:N] or cpu (cpu and wgpu: f32 only).
    #[arg(long, default_value = "cuda")]
    pub device: semgen_core::device::DeviceSpec,
    /// Float precisions (the half ones on cuda).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "f32,bf16")]
    pub precisions: Vec<Precision>,
    /// Cases, KIND-TOKENS with KIND one of attn-fwd, attn-train, block-fwd, block-train
    /// (default: the list in `xtask::gpu::DEFAULT_CASES`).
    #[arg(long, value_delimiter = ',')]
    pub cases: Vec<String>,
    /// Untimed iterations first (kernel compilation and autotuning happen there).
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Timed iterations; the median is reported.
    #[arg(long, default_value_t = 10)]
    pub repeats: usize,
    /// Peak TFLOP/s the MFU column divides by (default: H100/H200 SXM dense bf16).
    #[arg(long, default_value_t = xtask::gpu::H100_BF16_PEAK_TFLOPS)]
    pub peak_tflops: f64,
    /// Also run `bench/peer/peer_gpu.py` (PyTorch) on the same cases and device.
    #[arg(long)]
    pub peer: bool,
    /// Take PyTorch's figures from this file of `peer_gpu.py` output lines instead of running it
    /// (a GPU machine's script runs the two sides as separate, separately time-limited steps).
    #[arg(long, conflicts_with = "peer")]
    pub peer_jsonl: Option<PathBuf>,
    /// The Python that runs the peer harness.
    #[arg(long, default_value = "python3")]
    pub python: PathBuf,
    /// Write the Markdown table here (and the raw rows beside it as `.jsonl`).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SuiteRowArgs {
    #[arg(long)]
    pub device: semgen_core::device::DeviceSpec,
    #[arg(long)]
    pub row: String,
    #[arg(long)]
    pub repeats: usize,
    #[arg(long)]
    pub model: PathBuf,
}

#[derive(Debug, Args)]
pub struct SuiteArgs {
    /// Device to run on: cpu, wgpu[:N], cuda[:N].
    #[arg(long, default_value = "cpu")]
    pub device: semgen_core::device::DeviceSpec,
    /// Rows to run (default: all; `--list` names them).
    #[arg(long, value_delimiter = ',')]
    pub rows: Vec<String>,
    /// Timed iterations per row after one warm-up (3 at most for rows slower than 2 s); the
    /// median is reported.
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    /// Also run the PyTorch peer harness (`bench/peer/peer.py`, needs torch, diffusers and
    /// transformers) on the same rows and report semgen/PyTorch per row.
    #[arg(long)]
    pub peer: bool,
    /// The Python that runs the peer harness.
    #[arg(long, default_value = "python3")]
    pub python: PathBuf,
    /// The shipped model folder (the refiner rows' architecture, the `generate` row).
    #[arg(long, default_value = "checkpoints/shapes-small")]
    pub model: PathBuf,
    /// A row still running after this many seconds (model build, warm-up and timed runs) is
    /// stopped and reported as timed out (the software Vulkan of a CPU-only machine needs it).
    #[arg(long, default_value_t = 900)]
    pub row_timeout: u64,
    /// Print the rows and exit.
    #[arg(long)]
    pub list: bool,
    /// Write the Markdown table here (and the raw rows beside it as `.jsonl`).
    #[arg(long)]
    pub out: Option<PathBuf>,
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
        BenchCommand::Suite(a) => suite(a),
        BenchCommand::SuiteRow(a) => suite_row(a),
        BenchCommand::Gpu(a) => gpu(a),
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

/// Builds and times one row on one backend.
struct RowTask {
    row: String,
    assets: suite::Assets,
    repeats: usize,
}

impl semgen_pipeline::backend::AutodiffTask for RowTask {
    type Output = Result<suite::Timing>;
    fn run<B: burn::tensor::backend::AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let mut work = suite::build::<B>(&self.row, &self.assets, &device)?;
        suite::time(&mut work, self.repeats)
    }
}

fn suite_row(a: SuiteRowArgs) -> Result<()> {
    let t = semgen_pipeline::backend::dispatch_autodiff(
        a.device,
        RowTask {
            row: a.row,
            assets: suite::Assets { model: a.model },
            repeats: a.repeats,
        },
    )??;
    println!(
        "median_ms {} min_ms {} max_ms {} n {}",
        t.median_ms, t.min_ms, t.max_ms, t.n
    );
    Ok(())
}

/// Runs one row in a child process (a fresh allocator and backend each time, as a user's run
/// would be), stopping it after `timeout`.
fn run_row(a: &SuiteArgs, row: &str) -> Result<suite::Timing, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let err_path =
        std::env::temp_dir().join(format!("semgen-suite-{}-{row}.err", std::process::id()));
    let err_file = std::fs::File::create(&err_path).map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .args(["bench", "suite-row", "--row", row])
        .args(["--device", &a.device.to_string()])
        .args(["--repeats", &a.repeats.to_string()])
        .arg("--model")
        .arg(&a.model)
        .stdout(std::process::Stdio::piped())
        .stderr(err_file)
        .spawn()
        .map_err(|e| e.to_string())?;
    let start = Instant::now();
    let status = loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(s) => break s,
            None if start.elapsed().as_secs() >= a.row_timeout => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = std::fs::remove_file(&err_path);
                return Err(format!("timed out after {} s", a.row_timeout));
            }
            None => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    };
    let mut out = String::new();
    if let Some(mut o) = child.stdout.take() {
        use std::io::Read;
        let _ = o.read_to_string(&mut out);
    }
    let err = std::fs::read_to_string(&err_path).unwrap_or_default();
    let _ = std::fs::remove_file(&err_path);
    if !status.success() {
        let msg = err
            .lines()
            .rev()
            .find(|l| l.starts_with("error"))
            .unwrap_or_else(|| err.lines().last().unwrap_or("no message"));
        return Err(msg.trim().to_string());
    }
    let f = |name: &str| field(&out, name).map_err(|e| e.to_string());
    Ok(suite::Timing {
        median_ms: f("median_ms")?,
        min_ms: f("min_ms")?,
        max_ms: f("max_ms")?,
        n: f("n")? as usize,
    })
}

/// One row of the peer harness's output.
#[derive(Debug, Clone, serde::Deserialize)]
struct PeerRow {
    row: String,
    median_ms: f64,
    min_ms: f64,
    max_ms: f64,
    n: usize,
}

/// Threads the CPU backend uses (rayon's pool: `RAYON_NUM_THREADS`, else every core); the peer
/// gets the same count.
fn cpu_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn run_peer(a: &SuiteArgs, rows: &[suite::Row]) -> Result<Vec<PeerRow>> {
    let names: Vec<&str> = rows.iter().filter(|r| r.peer).map(|r| r.name).collect();
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let script = PathBuf::from("bench/peer/peer.py");
    if !script.is_file() {
        bail!(
            "--peer needs {} (run from the repository root)",
            script.display()
        );
    }
    eprintln!(
        "peer: {} {} ({} rows)",
        a.python.display(),
        script.display(),
        names.len()
    );
    let out = Command::new(&a.python)
        .arg(&script)
        .args(["--rows", &names.join(",")])
        .args(["--repeats", &a.repeats.to_string()])
        .args(["--threads", &cpu_threads().to_string()])
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {}", a.python.display()))?;
    if !out.status.success() {
        bail!(
            "the peer harness failed ({}); it needs torch==2.15.0, diffusers==0.42.1 and transformers==5.23.0 (bench/peer/requirements.txt)",
            out.status
        );
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.trim_start().starts_with('{'))
        .map(|l| serde_json::from_str(l).with_context(|| format!("peer output line '{l}'")))
        .collect()
}

fn suite(a: SuiteArgs) -> Result<()> {
    if a.list {
        for r in suite::ROWS {
            println!(
                "{:<22} {}{}",
                r.name,
                r.what,
                if r.peer { " [peer]" } else { "" }
            );
        }
        return Ok(());
    }
    let rows: Vec<suite::Row> = if a.rows.is_empty() {
        suite::ROWS.to_vec()
    } else {
        a.rows
            .iter()
            .map(|n| suite::find(n))
            .collect::<Result<_>>()?
    };
    // The peer runs first, on an idle CPU, so neither side's threads are still busy.
    let peer = if a.peer {
        run_peer(&a, &rows)?
    } else {
        Vec::new()
    };
    let started = Instant::now();
    let timings: Vec<Result<suite::Timing, String>> = rows
        .iter()
        .map(|row| {
            eprint!("{:<22}", row.name);
            let r = run_row(&a, row.name);
            match &r {
                Ok(t) => eprintln!("{:>12.3} ms (n {})", t.median_ms, t.n),
                Err(e) => eprintln!("  failed: {e}"),
            }
            r
        })
        .collect();
    let mut table = String::from(
        "| row | what | semgen ms: median (min–max, n) | PyTorch ms: median (min–max, n) | semgen / PyTorch |\n|---|---|---|---|---|\n",
    );
    let mut jsonl = String::new();
    let mut failed = 0;
    for (row, t) in rows.iter().zip(&timings) {
        let p = peer.iter().find(|p| p.row == row.name);
        let ours = match t {
            Ok(t) => format!(
                "**{:.2}** ({:.2}–{:.2}, {})",
                t.median_ms, t.min_ms, t.max_ms, t.n
            ),
            Err(e) => {
                failed += 1;
                format!(
                    "failed: {}",
                    e.lines().next().unwrap_or("").replace('|', "/")
                )
            }
        };
        let theirs = p.map_or_else(
            || {
                if row.peer {
                    "not run".to_string()
                } else {
                    "—".to_string()
                }
            },
            |p| {
                format!(
                    "{:.2} ({:.2}–{:.2}, {})",
                    p.median_ms, p.min_ms, p.max_ms, p.n
                )
            },
        );
        let ratio = match (t, p) {
            (Ok(t), Some(p)) => format!("{:.2}×", t.median_ms / p.median_ms),
            _ => "—".into(),
        };
        table += &format!(
            "| `{}` | {} | {ours} | {theirs} | {ratio} |\n",
            row.name, row.what
        );
        jsonl += &serde_json::json!({
            "row": row.name,
            "device": a.device.to_string(),
            "median_ms": t.as_ref().ok().map(|t| t.median_ms),
            "min_ms": t.as_ref().ok().map(|t| t.min_ms),
            "max_ms": t.as_ref().ok().map(|t| t.max_ms),
            "n": t.as_ref().ok().map(|t| t.n),
            "error": t.as_ref().err(),
            "peer_median_ms": p.map(|p| p.median_ms),
            "peer_n": p.map(|p| p.n),
        })
        .to_string();
        jsonl.push('\n');
    }
    let text = format!(
        "Device `{}` ({}), {} CPU threads; burn 0.21.0, release build; median of {} timed \
         iterations after a warm-up (3 for rows slower than 2 s), each row in its own process{}; \
         {:.0} s for the semgen side. \
         `cargo xtask bench suite --device {}{}`:\n\n{table}",
        a.device,
        suite::cpu_model(),
        cpu_threads(),
        a.repeats,
        if a.peer {
            ", PyTorch through bench/peer/peer.py with the same thread count"
        } else {
            ""
        },
        started.elapsed().as_secs_f64(),
        a.device,
        if a.peer { " --peer" } else { "" },
    );
    println!("{text}");
    if let Some(path) = &a.out {
        semgen_core::checkpoint::write_atomic(path, text.as_bytes())?;
        semgen_core::checkpoint::write_atomic(&path.with_extension("jsonl"), jsonl.as_bytes())?;
    }
    if failed > 0 {
        bail!("{failed} row(s) failed (see the table)");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// bench gpu
// ---------------------------------------------------------------------------------------------

/// The float type of a `bench gpu` run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Precision {
    F32,
    Bf16,
    F16,
}

impl Precision {
    /// The name on the command line and in the peer's output lines.
    fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
        }
    }
}

fn precision_list(ps: &[Precision]) -> String {
    ps.iter().map(|p| p.name()).collect::<Vec<_>>().join(",")
}

struct GpuTask {
    case: xtask::gpu::Case,
    warmup: usize,
    repeats: usize,
}

impl semgen_pipeline::backend::AutodiffTask for GpuTask {
    type Output = Result<suite::Timing>;
    fn run<B: burn::tensor::backend::AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let mut step = xtask::gpu::build::<B>(self.case, &device)?;
        xtask::gpu::time(&mut step, self.warmup, self.repeats)
    }
}

/// Runs `task` at `precision` on `spec`: f32 through the usual dispatch, the half precisions on
/// `Cuda<bf16>` / `Cuda<f16>`.
fn dispatch_precision<T: semgen_pipeline::backend::AutodiffTask>(
    spec: semgen_core::device::DeviceSpec,
    precision: Precision,
    task: T,
) -> Result<T::Output> {
    use semgen_core::device::DeviceSpec;
    match (spec, precision) {
        (_, Precision::F32) => Ok(semgen_pipeline::backend::dispatch_autodiff(spec, task)?),
        #[cfg(feature = "cuda")]
        (DeviceSpec::Cuda(i), Precision::Bf16) => Ok(task.run::<burn::backend::Autodiff<
            burn::backend::Cuda<burn::tensor::bf16>,
        >>(
            burn::backend::cuda::CudaDevice::new(i)
        )),
        #[cfg(feature = "cuda")]
        (DeviceSpec::Cuda(i), Precision::F16) => Ok(task.run::<burn::backend::Autodiff<
            burn::backend::Cuda<burn::tensor::f16>,
        >>(
            burn::backend::cuda::CudaDevice::new(i)
        )),
        #[cfg(not(feature = "cuda"))]
        (DeviceSpec::Cuda(_), _) => {
            bail!("device cuda is not compiled into this binary: rebuild with `--features cuda`")
        }
        (_, p) => bail!("precision {} runs on cuda only", p.name()),
    }
}

/// One row of the peer harness's GPU output.
#[derive(Debug, Clone, serde::Deserialize)]
struct PeerGpuRow {
    case: String,
    precision: String,
    /// `cuda:0`, `cpu`, … (absent in files written before session 25's last change).
    #[serde(default)]
    device: Option<String>,
    median_ms: Option<f64>,
    n: Option<usize>,
    #[serde(default)]
    implementation: String,
    #[serde(default)]
    error: Option<String>,
}

fn run_peer_gpu(a: &GpuArgs, cases: &[String]) -> Result<Vec<PeerGpuRow>> {
    let script = PathBuf::from("bench/peer/peer_gpu.py");
    if !script.is_file() {
        bail!(
            "--peer needs {} (run from the repository root)",
            script.display()
        );
    }
    if let semgen_core::device::DeviceSpec::Wgpu(_) = a.device {
        bail!("the PyTorch peer has no wgpu device");
    }
    eprintln!("peer: {} {}", a.python.display(), script.display());
    let out = Command::new(&a.python)
        .arg(&script)
        .args(["--cases", &cases.join(",")])
        .args(["--precisions", &precision_list(&a.precisions)])
        .args(["--device", &a.device.to_string()])
        .args(["--warmup", &a.warmup.to_string()])
        .args(["--repeats", &a.repeats.to_string()])
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {}", a.python.display()))?;
    if !out.status.success() {
        bail!(
            "the GPU peer harness failed ({}); it needs torch",
            out.status
        );
    }
    parse_peer_gpu(&String::from_utf8_lossy(&out.stdout))
}

/// The peer's JSON lines; a line that does not parse (a run cut off mid-line) is reported and
/// skipped, so the cases it did finish still count.
fn parse_peer_gpu(text: &str) -> Result<Vec<PeerGpuRow>> {
    Ok(text
        .lines()
        .filter(|l| l.trim_start().starts_with('{'))
        .filter_map(|l| match serde_json::from_str(l) {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("peer: skipping the line '{l}': {e}");
                None
            }
        })
        .collect())
}

fn gpu(a: GpuArgs) -> Result<()> {
    use xtask::gpu::{Case, Kind};
    let names: Vec<String> = if a.cases.is_empty() {
        xtask::gpu::DEFAULT_CASES
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        a.cases.clone()
    };
    let cases: Vec<Case> = names.iter().map(|n| n.parse()).collect::<Result<_>>()?;
    // The peer runs first, on an idle device.
    let peer = if a.peer {
        run_peer_gpu(&a, &names)?
    } else if let Some(path) = &a.peer_jsonl {
        parse_peer_gpu(
            &std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
        )?
    } else {
        Vec::new()
    };
    // PyTorch's figures only count beside semgen's on the same kind of device.
    let kind = |d: &str| d.split(':').next().unwrap_or("").to_string();
    let ours_kind = kind(&a.device.to_string());
    let (peer, elsewhere): (Vec<PeerGpuRow>, Vec<PeerGpuRow>) = peer
        .into_iter()
        .partition(|r| r.device.as_deref().is_none_or(|d| kind(d) == ours_kind));
    if !elsewhere.is_empty() {
        eprintln!(
            "peer: {} row(s) measured on another kind of device than {} left out",
            elsewhere.len(),
            a.device
        );
    }
    let jsonl_path = a.out.as_ref().map(|p| p.with_extension("jsonl"));
    let mut jsonl = String::new();
    let mut table = String::from(
        "| case | precision | shape | semgen ms: median (min–max, n) | TFLOP/s | tokens/s | MFU | PyTorch ms | PyTorch TFLOP/s | semgen / PyTorch |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut failed = 0;
    let started = Instant::now();
    for &precision in &a.precisions {
        let p = precision.name();
        for &case in &cases {
            eprint!("{:<18} {:<5}", case.to_string(), p);
            let task = GpuTask {
                case,
                warmup: a.warmup,
                repeats: a.repeats,
            };
            // A backend panic (out of memory, an unsupported kernel) becomes this case's error;
            // the next case still runs.
            let r: Result<suite::Timing, String> =
                match semgen_core::guard::catch_panic_silently(|| {
                    dispatch_precision(a.device, precision, task)
                }) {
                    Ok(Ok(Ok(m))) => Ok(m),
                    Ok(Ok(Err(e))) | Ok(Err(e)) => Err(format!("{e:#}")),
                    Err(panic) => Err(format!("panicked: {panic}")),
                };
            let flops = case.flops();
            let peer_row = peer
                .iter()
                .find(|r| r.case == case.to_string() && r.precision == p);
            let shape = match case.kind {
                Kind::AttnFwd | Kind::AttnTrain => {
                    let [b, h, n, d] = case.attention_shape();
                    format!("{b}×{h}×{n}×{d}")
                }
                Kind::BlockFwd | Kind::BlockTrain => {
                    format!(
                        "{} tokens, text {}",
                        case.tokens,
                        xtask::gpu::BLOCK_TEXT_LEN
                    )
                }
            };
            let tflops = |ms: f64| flops / (ms * 1e-3) / 1e12;
            let (ours, tf, tps, mfu) = match &r {
                Ok(m) => {
                    eprintln!(
                        "{:>10.3} ms  {:>7.1} TFLOP/s",
                        m.median_ms,
                        tflops(m.median_ms)
                    );
                    (
                        format!(
                            "**{:.3}** ({:.3}–{:.3}, {})",
                            m.median_ms, m.min_ms, m.max_ms, m.n
                        ),
                        format!("{:.1}", tflops(m.median_ms)),
                        format!(
                            "{:.0}",
                            case.tokens_per_iter() as f64 / (m.median_ms * 1e-3)
                        ),
                        format!("{:.1} %", 100.0 * tflops(m.median_ms) / a.peak_tflops),
                    )
                }
                Err(e) => {
                    failed += 1;
                    eprintln!("  failed: {e}");
                    let first = e.lines().next().unwrap_or("").replace('|', "/");
                    let short: String = first.chars().take(160).collect();
                    (
                        format!("failed: {short}"),
                        "—".into(),
                        "—".into(),
                        "—".into(),
                    )
                }
            };
            let (theirs, their_tf, ratio) = match (peer_row, &r) {
                (Some(pr), ours) => match pr.median_ms {
                    Some(pm) => (
                        format!("{pm:.3} ({})", pr.implementation),
                        format!("{:.1}", tflops(pm)),
                        ours.as_ref()
                            .map(|m| format!("{:.2}×", m.median_ms / pm))
                            .unwrap_or_else(|_| "—".into()),
                    ),
                    None => (
                        format!(
                            "failed: {}",
                            pr.error.clone().unwrap_or_default().replace('|', "/")
                        ),
                        "—".into(),
                        "—".into(),
                    ),
                },
                (None, _) => ("not run".into(), "—".into(), "—".into()),
            };
            table += &format!(
                "| `{case}` | {p} | {shape} | {ours} | {tf} | {tps} | {mfu} | {theirs} | {their_tf} | {ratio} |\n"
            );
            jsonl += &serde_json::json!({
                "case": case.to_string(),
                "precision": p,
                "device": a.device.to_string(),
                "flops": flops,
                "tokens": case.tokens_per_iter(),
                "median_ms": r.as_ref().ok().map(|m| m.median_ms),
                "min_ms": r.as_ref().ok().map(|m| m.min_ms),
                "max_ms": r.as_ref().ok().map(|m| m.max_ms),
                "n": r.as_ref().ok().map(|m| m.n),
                "error": r.as_ref().err(),
                "peer_median_ms": peer_row.and_then(|p| p.median_ms),
                "peer_n": peer_row.and_then(|p| p.n),
                "peer_implementation": peer_row.map(|p| p.implementation.clone()),
            })
            .to_string();
            jsonl.push('\n');
            // Written after every case, so a run cut short keeps what it measured.
            if let Some(path) = &jsonl_path {
                semgen_core::checkpoint::write_atomic(path, jsonl.as_bytes())?;
            }
        }
    }
    let text = format!(
        "Device `{}`; burn 0.21.0, release build; median of {} timed iterations after {} \
         untimed ones; MFU against {} TFLOP/s (issue 10's attention goal: half of \
         FlashAttention-3's {} TFLOP/s); {:.0} s for the semgen side. \
         `cargo xtask bench gpu --device {} --precisions {}{}`:\n\n{table}",
        a.device,
        a.repeats,
        a.warmup,
        a.peak_tflops,
        xtask::gpu::FA3_TFLOPS,
        started.elapsed().as_secs_f64(),
        a.device,
        precision_list(&a.precisions),
        if a.peer || a.peer_jsonl.is_some() {
            " --peer"
        } else {
            ""
        },
    );
    println!("{text}");
    if let Some(path) = &a.out {
        semgen_core::checkpoint::write_atomic(path, text.as_bytes())?;
    }
    if failed > 0 {
        bail!("{failed} case(s) failed (see the table)");
    }
    Ok(())
}
