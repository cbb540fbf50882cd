//! The benchmark suite of issue 10, one definition per row, shared by `cargo xtask bench suite`
//! (the tables in `docs/bench/`) and the criterion benchmarks (`cargo bench -p xtask`).
//!
//! Every row builds its model and inputs once ([`build`]), then a [`Workload`] runs one
//! iteration: a forward, a training step (forward, loss, backward, AdamW), or a whole
//! generation. Each iteration ends with `B::sync`, so asynchronous backends (wgpu, cuda) are
//! timed for the work they really did. Sizes and inputs are the ones of the PyTorch peer harness
//! (`bench/peer/peer.py`, the same row names), so the two can be compared row by row; the
//! "small" configs are those of `../shared/reference/NOTES.md` §6.

use anyhow::{bail, Context, Result};
use burn::module::AutodiffModule;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use rand::{Rng, SeedableRng};
use semgen_core::wan_dit::WanDitConfig;
use semgen_encoder::qwen_vision::{patchify_clips, QwenVisionConfig};
use semgen_encoder::umt5::Umt5Config;
use semgen_refiner::refiner::{Refiner, RefinerBatch, RefinerConfig, SemanticInput};
use semgen_vae::{StreamDecoder, WanVaeConfig};
use std::path::PathBuf;

/// One iteration of a row; returns a scalar of the result (kept so nothing is optimised away).
pub type Workload = Box<dyn FnMut() -> Result<f32>>;

/// A benchmark row: its name (shared with the peer harness) and what it measures.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    pub name: &'static str,
    pub what: &'static str,
    /// The peer harness has this row (the same model in PyTorch with the upstream class).
    pub peer: bool,
}

const fn row(name: &'static str, what: &'static str, peer: bool) -> Row {
    Row { name, what, peer }
}

/// Every row, in report order.
pub const ROWS: &[Row] = &[
    row("dit-tiny-fwd", "Wan DiT, fixture config (D 40, L 2); latents 1×4×3×8×8, text 1×7×16", true),
    row("dit-small-fwd", "Wan DiT small (NOTES §6: D 256, L 4, 5.89M); latents 1×16×4×16×16, text 1×512×4096", true),
    row("dit-small-train", "DiT small, one training step (MSE, backward, AdamW), batch 1", true),
    row("wan13b-block-fwd", "Wan2.1-1.3B block slice (D 1536, 12 heads, ffn 8960, 1 layer); 320 tokens, text 1×512×4096", true),
    row("wan13b-block-train", "Wan2.1-1.3B block slice, one training step, batch 1", true),
    row("refiner-fwd", "shapes-small refiner, one denoising step; 17×64×64 clip (80 latent + 48 semantic tokens), batch 1", false),
    row("refiner-train", "shapes-small refiner, one training step (flow loss, backward, AdamW), batch 16", false),
    row("refiner-window-1x", "refiner forward, temporal windows of 4 latent frames, 17 frames", false),
    row("refiner-window-2x", "… 33 frames", false),
    row("refiner-window-4x", "… 65 frames", false),
    row("refiner-window-8x", "… 129 frames", false),
    row("refiner-window-16x", "… 257 frames", false),
    row("refiner-full-1x", "refiner forward, full attention, 17 frames", false),
    row("refiner-full-2x", "… 33 frames", false),
    row("refiner-full-4x", "… 65 frames", false),
    row("refiner-full-8x", "… 129 frames", false),
    row("refiner-full-16x", "… 257 frames", false),
    row("vae-tiny-decode", "Wan VAE, fixture config; z 1×4×3×4×4 → 9×32×32", true),
    row("vae-tiny-encode", "Wan VAE, fixture config; 9×32×32 → z", true),
    row("vae-small-decode", "Wan VAE small (NOTES §6: base 32, z 16, 14.22M); z 1×16×3×8×8 → 9×64×64", true),
    row("vae-small-encode", "Wan VAE small; 9×64×64 → z", true),
    row("vae-shapes-decode", "shapes-small VAE, streaming decode (one latent frame at a time); z 1×8×5×8×8 → 17×64×64", true),
    row("qwen-tiny", "Qwen2.5-VL vision, fixture config; 4×12×20 video (120 patches)", true),
    row("qwen-small", "Qwen2.5-VL vision small (NOTES §6: depth 4, 256 wide); 4×224×224 video (512 patches)", true),
    row("encoder-shapes", "semantic encoder, shapes config (depth 4, 128 wide, 8-px patches); 6×64×64 clip (192 patches)", true),
    row("umt5-tiny", "umT5 encoder, fixture config; 1×40 ids", true),
    row("umt5-small", "umT5 small (NOTES §6: d 256, L 4); 1×512 ids", true),
    row("generate", "the shipped model end to end: text → stage 1 → stage 2 → streaming VAE decode, default steps, 17×64×64", false),
];

/// Looks a row up by name.
pub fn find(name: &str) -> Result<Row> {
    ROWS.iter()
        .copied()
        .find(|r| r.name == name)
        .with_context(|| {
            format!(
                "unknown benchmark row '{name}' (rows: {})",
                ROWS.iter().map(|r| r.name).collect::<Vec<_>>().join(", ")
            )
        })
}

/// Where rows that need the shipped model find it.
#[derive(Debug, Clone)]
pub struct Assets {
    /// The shipped model folder (`generate`; the refiner rows take their architecture from it).
    pub model: PathBuf,
}

impl Default for Assets {
    fn default() -> Self {
        Self {
            model: PathBuf::from("checkpoints/shapes-small"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The NOTES §6 configs and the peer's inputs
// ---------------------------------------------------------------------------------------------

/// NOTES §6 "VAE small": base 32, z 16, [1, 2, 4, 4], 2 residual blocks, [F, T, T].
pub fn vae_small() -> WanVaeConfig {
    WanVaeConfig::new(
        32,
        16,
        vec![1, 2, 4, 4],
        2,
        vec![false, true, true],
        vec![0.0; 16],
        vec![1.0; 16],
    )
}

/// NOTES §6 "Qwen ViT small": depth 4, hidden 256, 4 heads, inter 1024, patch 14, window 112,
/// out 512, full attention in block 3.
pub fn qwen_small() -> QwenVisionConfig {
    QwenVisionConfig {
        depth: 4,
        hidden_size: 256,
        intermediate_size: 1024,
        num_heads: 4,
        patch_size: 14,
        window_size: 112,
        out_hidden_size: 512,
        fullatt_block_indexes: vec![3],
        ..QwenVisionConfig::tiny()
    }
}

/// NOTES §6 "umT5 small": d_model 256, d_kv 64, 4 heads, d_ff 1024, 4 layers, vocab 1000,
/// gated-gelu (the rest as the fixture's).
pub fn umt5_small() -> Umt5Config {
    Umt5Config {
        vocab_size: 1000,
        d_model: 256,
        d_kv: 64,
        d_ff: 1024,
        num_layers: 4,
        num_heads: 4,
        ..Umt5Config::tiny()
    }
}

/// A Wan2.1-1.3B block slice: the 1.3B sizes with one layer.
pub fn wan13b_block() -> WanDitConfig {
    let mut c = WanDitConfig::wan21_1_3b();
    c.num_layers = 1;
    c
}

/// A seeded uniform(-1, 1) tensor (the values do not change the cost).
pub fn random<B: Backend, const D: usize>(
    rng: &mut rand::rngs::StdRng,
    shape: [usize; D],
    device: &B::Device,
) -> Tensor<B, D> {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    Tensor::from_data(TensorData::new(v, shape), device)
}

fn finish<B: Backend, const D: usize>(x: Tensor<B, D>, device: &B::Device) -> Result<f32> {
    let v = x.sum().into_scalar().elem::<f32>();
    B::sync(device).map_err(|e| anyhow::anyhow!("backend sync failed: {e:?}"))?;
    Ok(v)
}

/// One training step of `model` with AdamW: `loss(model)` → backward → step.
fn train_loop<B, M, F>(model: M, device: &B::Device, loss: F) -> Workload
where
    B: AutodiffBackend,
    M: AutodiffModule<B> + 'static,
    F: Fn(&M) -> Result<Tensor<B, 1>> + 'static,
{
    let mut optim = AdamWConfig::new().init::<B, M>();
    let mut model = Some(model);
    let device = device.clone();
    Box::new(move || {
        let m = model.take().context("a previous step failed")?;
        let l = loss(&m)?;
        let v = l.clone().into_scalar().elem::<f32>();
        let grads = GradientsParams::from_grads(l.backward(), &m);
        model = Some(optim.step(1e-4, m, grads));
        B::sync(&device).map_err(|e| anyhow::anyhow!("backend sync failed: {e:?}"))?;
        Ok(v)
    })
}

// ---------------------------------------------------------------------------------------------
// Rows
// ---------------------------------------------------------------------------------------------

pub fn dit_forward<B: Backend>(
    config: WanDitConfig,
    latents: [usize; 5],
    text: [usize; 3],
    device: &B::Device,
) -> Result<Workload> {
    let model = config.init::<B>(device)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let x = random::<B, 5>(&mut rng, latents, device);
    let ctx = random::<B, 3>(&mut rng, text, device);
    let t = Tensor::<B, 1>::from_floats([637.0], device);
    let [_, _, f, h, w] = latents;
    let layout = model.layout(model.patched_grid(f, h, w)?, None, device);
    let device = device.clone();
    Ok(Box::new(move || {
        let out = model.forward_with_layout(x.clone(), t.clone(), ctx.clone(), &layout);
        finish(out, &device)
    }))
}

pub fn dit_train<B: AutodiffBackend>(
    config: WanDitConfig,
    latents: [usize; 5],
    text: [usize; 3],
    device: &B::Device,
) -> Result<Workload> {
    let model = config.init::<B>(device)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let x = random::<B, 5>(&mut rng, latents, device);
    let ctx = random::<B, 3>(&mut rng, text, device);
    let target = random::<B, 5>(&mut rng, latents, device);
    let t = Tensor::<B, 1>::from_floats([637.0], device);
    Ok(train_loop(model, device, move |m| {
        let out = m.forward(x.clone(), t.clone(), ctx.clone())?;
        Ok((out - target.clone()).square().mean())
    }))
}

/// The refiner of the shipped model (its architecture; weights are random: the cost does not
/// depend on them), with `window` = Some(frames) or None (full attention).
fn refiner_config(assets: &Assets, window: Option<Option<usize>>) -> Result<RefinerConfig> {
    let path = assets.model.join("refiner.safetensors");
    let mut config: RefinerConfig = semgen_pipeline::model::stored_config(&path, "refiner")
        .with_context(|| {
            format!(
                "the refiner rows take the shipped architecture from {}",
                path.display()
            )
        })?;
    if let Some(w) = window {
        config.dit = config.dit.clone().with_attn_window(w);
    }
    Ok(config)
}

/// Text length of the refiner rows (the shipped tokenizer pads captions to fewer tokens).
const REFINER_TEXT_LEN: usize = 32;

fn refiner_forward<B: Backend>(
    config: RefinerConfig,
    multiple: usize,
    device: &B::Device,
) -> Result<Workload> {
    let refiner: Refiner<B> = config.init(device)?;
    // A 16·m + 1 frame 64×64 clip: 4m + 1 latent frames of 8×8 and (sampled every 4th frame,
    // temporal patch 2) 2m + 1 semantic frames of 4×4.
    let (f, t) = (4 * multiple + 1, 2 * multiple + 1);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let x = random::<B, 5>(&mut rng, [1, config.dit.in_channels, f, 8, 8], device);
    let text = random::<B, 3>(&mut rng, [1, REFINER_TEXT_LEN, config.dit.text_dim], device);
    let sem = config
        .has_semantic()
        .then(|| random::<B, 5>(&mut rng, [1, config.semantic_dim, t, 4, 4], device));
    let layout = refiner.layout([f, 8, 8], sem.as_ref().map(|_| [t, 4, 4]), device)?;
    let device = device.clone();
    Ok(Box::new(move || {
        let s = match &sem {
            Some(z) => SemanticInput::tokens(z.clone()),
            None => SemanticInput::None,
        };
        let ts = Tensor::<B, 1>::from_floats([500.0], &device);
        let out = refiner.forward(x.clone(), ts, text.clone(), s, &layout);
        finish(out, &device)
    }))
}

fn refiner_train<B: AutodiffBackend>(
    config: RefinerConfig,
    device: &B::Device,
) -> Result<Workload> {
    let refiner: Refiner<B> = config.init(device)?;
    let b = 16;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let latents = random::<B, 5>(&mut rng, [b, config.dit.in_channels, 5, 8, 8], device);
    let text = random::<B, 3>(&mut rng, [b, REFINER_TEXT_LEN, config.dit.text_dim], device);
    let z_sem = config
        .has_semantic()
        .then(|| random::<B, 5>(&mut rng, [b, config.semantic_dim, 3, 4, 4], device));
    let layout = refiner.layout([5, 8, 8], z_sem.as_ref().map(|_| [3, 4, 4]), device)?;
    let rng = std::cell::RefCell::new(rng);
    Ok(train_loop(refiner, device, move |m: &Refiner<B>| {
        let batch = RefinerBatch {
            latents: latents.clone(),
            z_sem: z_sem.clone(),
            text: text.clone(),
            weights: None,
        };
        Ok(m.training_loss(batch, &layout, &mut *rng.borrow_mut()))
    }))
}

fn vae_decode<B: Backend>(
    config: WanVaeConfig,
    z: [usize; 5],
    device: &B::Device,
) -> Result<Workload> {
    let vae = config.init::<B>(device)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let z = random::<B, 5>(&mut rng, z, device);
    let device = device.clone();
    Ok(Box::new(move || finish(vae.decode(z.clone())?, &device)))
}

/// Streaming decode: one latent frame at a time through [`StreamDecoder`].
fn vae_stream<B: Backend>(
    config: WanVaeConfig,
    z: [usize; 5],
    device: &B::Device,
) -> Result<Workload> {
    let vae = config.init::<B>(device)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let z = random::<B, 5>(&mut rng, z, device);
    let frames = z.dims()[2];
    let device = device.clone();
    Ok(Box::new(move || {
        let mut dec = StreamDecoder::new(&vae);
        let mut acc = 0.0;
        for i in 0..frames {
            let out = dec.push(z.clone().narrow(2, i, 1))?;
            acc += finish(out, &device)?;
        }
        Ok(acc)
    }))
}

fn vae_encode<B: Backend>(
    config: WanVaeConfig,
    x: [usize; 5],
    device: &B::Device,
) -> Result<Workload> {
    let vae = config.init::<B>(device)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let x = random::<B, 5>(&mut rng, x, device);
    let device = device.clone();
    Ok(Box::new(move || {
        finish(vae.encode_moments(x.clone())?, &device)
    }))
}

/// The vision tower on packed patches of one clip `[1, 3, T, H, W]` (patchified once, as the
/// peer's processor output is an input there too).
fn qwen<B: Backend>(
    config: QwenVisionConfig,
    clip: [usize; 5],
    device: &B::Device,
) -> Result<Workload> {
    let model = config.init::<B>(device)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let (patches, grids) = patchify_clips(&config, random::<B, 5>(&mut rng, clip, device))?;
    let plan = model.plan(&grids)?;
    let device = device.clone();
    Ok(Box::new(move || {
        let out = model.forward_with_plan(patches.clone(), &plan)?;
        finish(out.merged, &device)
    }))
}

fn umt5<B: Backend>(config: Umt5Config, len: usize, device: &B::Device) -> Result<Workload> {
    let model = config.init::<B>(device)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let ids: Vec<i64> = (0..len)
        .map(|_| rng.random_range(0..config.vocab_size as i64))
        .collect();
    let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [1, len]), device);
    let mask = Tensor::<B, 2, Int>::ones([1, len], device);
    let device = device.clone();
    Ok(Box::new(move || {
        finish(model.forward(ids.clone(), mask.clone()), &device)
    }))
}

fn generate<B: Backend>(assets: &Assets, device: &B::Device) -> Result<Workload> {
    use semgen_pipeline::pipeline::GenerateRequest;
    let model = semgen_pipeline::model::SemgenModel::<B>::load(&assets.model, device)
        .with_context(|| format!("loading {}", assets.model.display()))?;
    let req = GenerateRequest::defaults(
        &model,
        vec!["a large red circle moving left slowly on a navy background".into()],
        0,
    );
    Ok(Box::new(move || {
        let g = model.generate(&req, &mut |_, _| {})?;
        let video = model.decode(g.latents)?;
        Ok(video.frames() as f32)
    }))
}

/// Builds row `name` on backend `B` (forward rows run on `B::InnerBackend`, without autodiff).
pub fn build<B: AutodiffBackend>(
    name: &str,
    assets: &Assets,
    device: &B::Device,
) -> Result<Workload> {
    type I<B> = <B as AutodiffBackend>::InnerBackend;
    find(name)?;
    if let Some(rest) = name
        .strip_prefix("refiner-window-")
        .map(|r| (r, Some(4)))
        .or_else(|| name.strip_prefix("refiner-full-").map(|r| (r, None)))
    {
        let (m, window) = rest;
        let m: usize = m.trim_end_matches('x').parse()?;
        return refiner_forward::<I<B>>(refiner_config(assets, Some(window))?, m, device);
    }
    match name {
        "dit-tiny-fwd" => {
            dit_forward::<I<B>>(WanDitConfig::tiny(), [1, 4, 3, 8, 8], [1, 7, 16], device)
        }
        "dit-small-fwd" => dit_forward::<I<B>>(
            WanDitConfig::small(),
            [1, 16, 4, 16, 16],
            [1, 512, 4096],
            device,
        ),
        "dit-small-train" => dit_train::<B>(
            WanDitConfig::small(),
            [1, 16, 4, 16, 16],
            [1, 512, 4096],
            device,
        ),
        "wan13b-block-fwd" => {
            dit_forward::<I<B>>(wan13b_block(), [1, 16, 5, 16, 16], [1, 512, 4096], device)
        }
        "wan13b-block-train" => {
            dit_train::<B>(wan13b_block(), [1, 16, 5, 16, 16], [1, 512, 4096], device)
        }
        "refiner-fwd" => refiner_forward::<I<B>>(refiner_config(assets, None)?, 1, device),
        "refiner-train" => refiner_train::<B>(refiner_config(assets, None)?, device),
        "vae-tiny-decode" => vae_decode::<I<B>>(WanVaeConfig::tiny(), [1, 4, 3, 4, 4], device),
        "vae-tiny-encode" => vae_encode::<I<B>>(WanVaeConfig::tiny(), [1, 3, 9, 32, 32], device),
        "vae-small-decode" => vae_decode::<I<B>>(vae_small(), [1, 16, 3, 8, 8], device),
        "vae-small-encode" => vae_encode::<I<B>>(vae_small(), [1, 3, 9, 64, 64], device),
        "vae-shapes-decode" => {
            vae_stream::<I<B>>(WanVaeConfig::shapes_small(), [1, 8, 5, 8, 8], device)
        }
        "qwen-tiny" => qwen::<I<B>>(QwenVisionConfig::tiny(), [1, 3, 4, 12, 20], device),
        "qwen-small" => qwen::<I<B>>(qwen_small(), [1, 3, 4, 224, 224], device),
        "encoder-shapes" => qwen::<I<B>>(QwenVisionConfig::shapes(), [1, 3, 6, 64, 64], device),
        "umt5-tiny" => umt5::<I<B>>(Umt5Config::tiny(), 40, device),
        "umt5-small" => umt5::<I<B>>(umt5_small(), 512, device),
        "generate" => generate::<I<B>>(assets, device),
        other => bail!("row '{other}' has no builder"),
    }
}

/// Timings of one row, in milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Timing {
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    pub n: usize,
}

/// Runs `work` once to warm up, then `repeats` timed iterations (at most 3 when the warm-up
/// took over 2 s, so the slow rows of a slow backend still finish).
pub fn time(work: &mut Workload, repeats: usize) -> Result<Timing> {
    let start = std::time::Instant::now();
    std::hint::black_box(work()?);
    let repeats = if start.elapsed().as_secs_f64() > 2.0 {
        repeats.clamp(1, 3)
    } else {
        repeats.max(1)
    };
    timed(work, repeats)
}

/// `repeats` (at least 1) timed iterations of `work`, no warm-up: their median, min and max.
pub fn timed(work: &mut Workload, repeats: usize) -> Result<Timing> {
    let repeats = repeats.max(1);
    let mut ms = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let start = std::time::Instant::now();
        std::hint::black_box(work()?);
        ms.push(start.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    Ok(Timing {
        median_ms: ms[ms.len() / 2],
        min_ms: ms[0],
        max_ms: ms[ms.len() - 1],
        n: ms.len(),
    })
}

/// The CPU's model name (`/proc/cpuinfo`, Linux), for the headers of measured tables.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}
