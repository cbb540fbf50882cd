//! `cargo xtask train encoder`: contrastive video–caption pretraining of the semantic encoder on
//! the Shapes world (issue 5), with caption retrieval and linear probes on validation clips.
//!
//! Needs `semgen-data` and `semgen-encoder` as xtask dependencies.

use anyhow::{Context, Result};
use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use semgen_core::checkpoint::{save_checkpoint, CheckpointMeta};
use semgen_data::{Clip, ShapesWorld, Split, WorldConfig};
use semgen_encoder::qwen_vision::QWEN_VISION_KEYS;
use semgen_encoder::tokenizer::PromptTokenizer;
use semgen_encoder::train::{
    linear_probe_accuracy, pool_grid, retrieval_top1, ContrastiveConfig, ContrastiveModel,
};
use semgen_encoder::umt5::UMT5_KEYS;
use std::path::PathBuf;

type Inner = Flex;
type Train = Autodiff<Inner>;

/// Options of `cargo xtask train encoder`.
#[derive(clap::Args, Debug, Clone)]
pub struct EncoderTrainArgs {
    /// Optimiser steps.
    #[arg(long, default_value_t = 3000)]
    pub steps: usize,
    /// Clips per batch (the contrastive negatives).
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Keep every `frame_stride`-th frame (4 keeps 5 of 17; see `train::sparse_frames`).
    #[arg(long, default_value_t = 4)]
    pub frame_stride: usize,
    #[arg(long, default_value_t = 3e-4)]
    pub lr: f64,
    /// Validation clips for retrieval (and probe test set).
    #[arg(long, default_value_t = 256)]
    pub val_clips: usize,
    /// Training clips the linear probes are fitted on.
    #[arg(long, default_value_t = 1024)]
    pub probe_clips: usize,
    #[arg(long, default_value_t = 500)]
    pub eval_every: usize,
    /// Caption length in tokens.
    #[arg(long, default_value_t = 32)]
    pub text_len: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output folder (checkpoint and metrics).
    #[arg(long, default_value = "runs/encoder")]
    pub out: PathBuf,
}

/// Clips `first..first+n` of a split as `[n, 3, T', H, W]` (strided) and their captions.
fn load_batch<B: Backend>(
    world: &ShapesWorld,
    split: Split,
    first: u64,
    n: usize,
    stride: usize,
    device: &B::Device,
) -> Result<(Tensor<B, 5>, Vec<Clip>)> {
    let mut values = Vec::new();
    let mut clips = Vec::with_capacity(n);
    let mut dims = (0, 0, 0);
    for i in 0..n as u64 {
        let clip = world.clip(split, first + i)?;
        let v = clip.video.strided(stride)?;
        dims = (v.frames(), v.height(), v.width());
        v.write_cthw(&mut values);
        clips.push(clip);
    }
    let (t, h, w) = dims;
    Ok((
        Tensor::from_data(TensorData::new(values, [n, 3, t, h, w]), device),
        clips,
    ))
}

/// Attribute labels of a clip's first object and background: colour, shape, size, motion
/// (still or a direction), background colour, background texture.
pub(crate) fn labels(clip: &Clip) -> [usize; 6] {
    segment_labels(clip, 0)
}

/// [`labels`] of segment `k` of a story (a short clip is one segment).
pub(crate) fn segment_labels(clip: &Clip, k: usize) -> [usize; 6] {
    let prompt = clip.prompt();
    let scene = &prompt.segments[k.min(prompt.segments.len() - 1)];
    let o = scene.objects[0];
    let word = |s: String, all: Vec<String>| all.iter().position(|w| *w == s).unwrap_or(0);
    use semgen_data::{Background, Colour, Direction, Motion, Shape, Size};
    let motion = match o.motion {
        Motion::Still => 0,
        Motion::Moving(d, _) => {
            1 + word(
                d.to_string(),
                Direction::ALL.iter().map(|x| x.to_string()).collect(),
            )
        }
    };
    let texture = format!("{:?}", clip.plan.background.texture);
    let textures = [
        "Flat",
        "VerticalStripes",
        "HorizontalStripes",
        "Checker",
        "SmoothNoise",
    ];
    [
        word(
            o.colour.to_string(),
            Colour::ALL.iter().map(|x| x.to_string()).collect(),
        ),
        word(
            o.shape.to_string(),
            Shape::ALL.iter().map(|x| x.to_string()).collect(),
        ),
        word(
            o.size.to_string(),
            Size::ALL.iter().map(|x| x.to_string()).collect(),
        ),
        motion,
        word(
            scene.background.to_string(),
            Background::ALL.iter().map(|x| x.to_string()).collect(),
        ),
        textures.iter().position(|t| *t == texture).unwrap_or(0),
    ]
}

pub(crate) const ATTRIBUTES: [(&str, usize); 6] = [
    ("colour", 8),
    ("shape", 6),
    ("size", 2),
    ("motion", 5),
    ("background", 5),
    ("texture (not in captions)", 5),
];

/// Pooled encoder features (before the projection) and projected video/text embeddings.
struct Embedded {
    pooled: Vec<f32>,
    video: Vec<f32>,
    text: Vec<f32>,
    labels: Vec<[usize; 6]>,
}

fn embed(
    model: &ContrastiveModel<Inner>,
    tok: &PromptTokenizer,
    world: &ShapesWorld,
    split: Split,
    n: usize,
    args: &EncoderTrainArgs,
) -> Result<Embedded> {
    let device = Default::default();
    let mut e = Embedded {
        pooled: vec![],
        video: vec![],
        text: vec![],
        labels: vec![],
    };
    for first in (0..n).step_by(args.batch) {
        let b = args.batch.min(n - first);
        let (clips, meta) =
            load_batch::<Inner>(world, split, first as u64, b, args.frame_stride, &device)?;
        let grid = model.vision.encode_clip(clips)?;
        let pooled = pool_grid(grid.features);
        e.video.extend(
            model
                .video_proj
                .forward(pooled.clone())
                .into_data()
                .to_vec::<f32>()
                .unwrap_or_default(),
        );
        e.pooled
            .extend(pooled.into_data().to_vec::<f32>().unwrap_or_default());
        let captions: Vec<String> = meta.iter().map(Clip::caption).collect();
        let refs: Vec<&str> = captions.iter().map(String::as_str).collect();
        let tb = tok.tokenize(&refs, args.text_len)?;
        let (ids, _) = tb.padded(args.text_len, tok.pad_id());
        let ids =
            Tensor::<Inner, 2, Int>::from_data(TensorData::new(ids, [b, args.text_len]), &device);
        e.text.extend(
            model
                .embed_text(ids, &tb.lengths())
                .into_data()
                .to_vec::<f32>()
                .unwrap_or_default(),
        );
        e.labels.extend(meta.iter().map(labels));
    }
    Ok(e)
}

/// Runs the pretraining and prints/saves the metrics.
pub fn train(args: EncoderTrainArgs) -> Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let device = Default::default();
    let world = ShapesWorld::new(WorldConfig {
        seed: args.seed,
        ..WorldConfig::default()
    })?;
    let tok = PromptTokenizer::shapes();
    let config = ContrastiveConfig::shapes();
    let mut model = config.init::<Train>(&device)?;
    let mut optim = AdamConfig::new().init();
    let mut metrics = Vec::new();
    for step in 1..=args.steps {
        let first = ((step - 1) * args.batch) as u64;
        let (clips, meta) = load_batch::<Train>(
            &world,
            Split::Train,
            first,
            args.batch,
            args.frame_stride,
            &device,
        )?;
        let captions: Vec<String> = meta.iter().map(Clip::caption).collect();
        let refs: Vec<&str> = captions.iter().map(String::as_str).collect();
        let tb = tok.tokenize(&refs, args.text_len)?;
        let (ids, _) = tb.padded(args.text_len, tok.pad_id());
        let ids = Tensor::<Train, 2, Int>::from_data(
            TensorData::new(ids, [args.batch, args.text_len]),
            &device,
        );
        let loss = model.loss(clips, ids, &tb.lengths())?;
        let value = loss.clone().into_scalar();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(args.lr, model, grads);
        if step % 50 == 0 {
            println!("step {step}: contrastive loss {value:.4}");
        }
        if step % args.eval_every == 0 || step == args.steps {
            let eval = model.valid();
            let val = embed(&eval, &tok, &world, Split::Val, args.val_clips, &args)?;
            let fit = embed(&eval, &tok, &world, Split::Train, args.probe_clips, &args)?;
            let k = config.embed_dim;
            let top1 = retrieval_top1(&val.video, &val.text, k);
            let mut row = serde_json::json!({"step": step, "loss": value, "retrieval_top1": top1});
            let d = config.vision.out_hidden_size;
            for (a, (name, classes)) in ATTRIBUTES.iter().enumerate() {
                let ty: Vec<usize> = fit.labels.iter().map(|l| l[a]).collect();
                let vy: Vec<usize> = val.labels.iter().map(|l| l[a]).collect();
                let acc =
                    linear_probe_accuracy(&fit.pooled, &ty, &val.pooled, &vy, d, *classes, 1.0);
                row[format!("probe_{name}")] = serde_json::json!(acc);
            }
            println!("{row}");
            metrics.push(row);
            let meta = CheckpointMeta::new(
                "semantic_encoder",
                step as u64,
                serde_json::to_value(&config.vision)?,
            );
            save_checkpoint(
                &eval.vision,
                &args.out.join("semantic_encoder.safetensors"),
                QWEN_VISION_KEYS,
                &meta,
            )?;
            // The text tower is the prompt encoder both diffusion stages cross-attend to.
            let meta = CheckpointMeta::new(
                "text_encoder",
                step as u64,
                serde_json::to_value(&config.text)?,
            );
            save_checkpoint(
                &eval.text,
                &args.out.join("text_encoder.safetensors"),
                UMT5_KEYS,
                &meta,
            )?;
            std::fs::write(
                args.out.join("metrics.json"),
                serde_json::to_string_pretty(&metrics)?,
            )?;
        }
    }
    Ok(())
}

/// Options of `cargo xtask probe-encoder`.
#[derive(clap::Args, Debug, Clone)]
pub struct ProbeArgs {
    /// A `semantic_encoder.safetensors` checkpoint.
    #[arg(
        long,
        default_value = "checkpoints/shapes-small/semantic_encoder.safetensors"
    )]
    pub encoder: PathBuf,
    /// Objects per probe clip: 1 makes every attribute label well posed (the default); 2 is
    /// the training distribution, where the label is the *first* object's attribute, which a
    /// pooled feature of two objects cannot single out (the protocol of `train encoder`).
    #[arg(long, default_value_t = 1)]
    pub objects: usize,
    /// Training-split clips the probes are fitted on.
    #[arg(long, default_value_t = 1024)]
    pub fit: usize,
    /// Validation-split clips they are tested on.
    #[arg(long, default_value_t = 256)]
    pub val: usize,
    #[arg(long, default_value_t = 4)]
    pub frame_stride: usize,
    /// Also write the accuracies (JSON) here.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Pooled encoder features `[n, d]` (row-major) and labels of clips `0..n` of a split.
fn pooled_features(
    vision: &semgen_encoder::qwen_vision::QwenVision<Inner>,
    world: &ShapesWorld,
    split: Split,
    n: usize,
    stride: usize,
) -> Result<(Vec<f32>, Vec<[usize; 6]>)> {
    let device = Default::default();
    let (mut feats, mut labs) = (Vec::new(), Vec::new());
    for first in (0..n).step_by(32) {
        let b = 32.min(n - first);
        let (clips, meta) = load_batch::<Inner>(world, split, first as u64, b, stride, &device)?;
        let grid = vision.encode_clip(clips)?;
        feats.extend(
            pool_grid(grid.features)
                .into_data()
                .to_vec::<f32>()
                .unwrap_or_default(),
        );
        labs.extend(meta.iter().map(labels));
    }
    Ok((feats, labs))
}

/// Linear probes (closed-form ridge on pooled features) of a trained semantic encoder.
pub fn probe(args: ProbeArgs) -> Result<()> {
    let device = Default::default();
    let (vision, config) = semgen_pipeline::model::load_vision::<Inner>(&args.encoder, &device)
        .with_context(|| format!("loading {}", args.encoder.display()))?;
    let world = ShapesWorld::new(WorldConfig {
        max_objects: args.objects,
        ..WorldConfig::default()
    })?;
    let start = std::time::Instant::now();
    let (fx, fy) = pooled_features(&vision, &world, Split::Train, args.fit, args.frame_stride)?;
    let (vx, vy) = pooled_features(&vision, &world, Split::Val, args.val, args.frame_stride)?;
    let d = config.out_hidden_size;
    let mut row = serde_json::json!({
        "encoder": args.encoder,
        "objects_per_clip": args.objects,
        "fit_clips": args.fit,
        "val_clips": args.val,
    });
    for (a, (name, classes)) in ATTRIBUTES.iter().enumerate() {
        let ty: Vec<usize> = fy.iter().map(|l| l[a]).collect();
        let vyy: Vec<usize> = vy.iter().map(|l| l[a]).collect();
        let acc = linear_probe_accuracy(&fx, &ty, &vx, &vyy, d, *classes, 1.0);
        row[format!("probe_{name}")] = serde_json::json!(acc);
    }
    row["seconds"] = serde_json::json!(start.elapsed().as_secs_f64());
    let text = serde_json::to_string_pretty(&row)?;
    println!("{text}");
    if let Some(out) = &args.out {
        std::fs::write(out, text)?;
    }
    Ok(())
}
