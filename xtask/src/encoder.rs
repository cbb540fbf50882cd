//! `cargo xtask train encoder`: contrastive video–caption pretraining of the semantic encoder on
//! the Shapes world (issue 5), with caption retrieval and linear probes on validation clips.
//!
//! Needs `semgen-data` and `semgen-encoder` as xtask dependencies.

use anyhow::{Context, Result};
use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use semgen_core::checkpoint::{load_file, read_meta, save_checkpoint, CheckpointMeta, LoadOptions};
use semgen_core::device::DeviceSpec;
use semgen_core::train::{check_run_dir, OptimConfig, TrainError, TrainTask, Trainer};
use semgen_data::{Clip, ShapesWorld, Split, WorldConfig};
use semgen_encoder::qwen_vision::QWEN_VISION_KEYS;
use semgen_encoder::tokenizer::PromptTokenizer;
use semgen_encoder::train::{
    gather_tokens, grouped_cross_entropy, linear_probe_accuracy, logistic_probe_accuracy,
    pool_grid, retrieval_top1, ContrastiveConfig, ContrastiveModel,
};
use semgen_encoder::umt5::UMT5_KEYS;
use semgen_pipeline::backend::{dispatch_autodiff, AutodiffTask};
use std::path::{Path, PathBuf};

/// The backend of `probe-encoder` (inference on the CPU).
type Inner = Flex;

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
    /// Linear warm-up steps (0: none).
    #[arg(long, default_value_t = 0)]
    pub warmup: usize,
    /// After the warm-up, decay the rate by a cosine to a tenth of `--lr` at `--steps`
    /// (otherwise it stays constant).
    #[arg(long)]
    pub cosine: bool,
    /// Weight of the attribute head's loss (multi-hot colours, shapes, sizes, motions and
    /// background of each clip, binary cross-entropy on pooled features); 0 trains the
    /// contrastive objective alone (and builds no head).
    #[arg(long, default_value_t = 0.0)]
    pub label_weight: f64,
    /// Weight of the per-token attribute loss: a linear head on the merged token of the cell
    /// holding each object's centre, in each time slice, classifies that object's colour,
    /// shape, size and motion (cross-entropy per attribute); 0 = off. Dense supervision asks
    /// every object token, not only the clip mean, to say what the object is.
    #[arg(long, default_value_t = 0.0)]
    pub token_weight: f64,
    /// Validation clips for retrieval (and probe test set).
    #[arg(long, default_value_t = 256)]
    pub val_clips: usize,
    /// Training clips the linear probes are fitted on.
    #[arg(long, default_value_t = 1024)]
    pub probe_clips: usize,
    /// The evaluations' probe classifier.
    #[arg(long, value_enum, default_value_t = ProbeFit::Logistic)]
    pub probe: ProbeFit,
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
    /// Start from an earlier run's folder instead of fresh weights: its `trainer.safetensors`
    /// (both towers, projections and heads) when present, else its
    /// `semantic_encoder.safetensors` and `text_encoder.safetensors` (projections and heads
    /// then start fresh). The training clips continue after the ones that run saw (its step ×
    /// this run's `--batch`); the optimiser and the schedule start anew (`--resume` keeps them).
    #[arg(long)]
    pub init_from: Option<PathBuf>,
    /// Continue the run saved in `--out` (its `train_state.bin`: weights, Adam moments and
    /// step; the same flags as the run that wrote it, except `--steps` and the intervals).
    #[arg(long)]
    pub resume: bool,
    /// Save the run state and the checkpoints every this many steps (and at the end; Ctrl-C
    /// saves too).
    #[arg(long, default_value_t = 100)]
    pub checkpoint_every: usize,
    /// Device to train on: cpu, wgpu[:N], cuda[:N].
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
    /// No progress bar (log lines instead).
    #[arg(long)]
    pub quiet: bool,
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
    object_labels(clip, k, 0)
}

/// [`labels`] with object `o` of segment `k` in place of the first object.
fn object_labels(clip: &Clip, k: usize, o: usize) -> [usize; 6] {
    let prompt = clip.prompt();
    let scene = &prompt.segments[k.min(prompt.segments.len() - 1)];
    let o = scene.objects[o.min(scene.objects.len() - 1)];
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

/// Multi-hot targets of the attribute head: which colours, shapes, sizes and motions (still or a
/// direction) the clip's objects have, and its background colour ([`LABEL_DIMS`] values; the
/// caption-free texture is left out, so what the encoder keeps of it is not taught).
pub(crate) fn attribute_targets(clip: &Clip) -> Vec<f32> {
    let mut t = vec![0.0f32; LABEL_DIMS];
    for (k, scene) in clip.prompt().segments.iter().enumerate() {
        for o in 0..scene.objects.len() {
            // colour, shape, size, motion, background: one block of the head each
            mark_values(&object_labels(clip, k, o), 5, &mut t);
        }
    }
    t
}

/// Sets to 1 the entry of each of the first `attributes` labels of `l` in `out`, laid out as one
/// block of [`ATTRIBUTES`] classes after another.
fn mark_values(l: &[usize; 6], attributes: usize, out: &mut [f32]) {
    let mut offset = 0;
    for (a, &(_, classes)) in ATTRIBUTES[..attributes].iter().enumerate() {
        out[offset + l[a]] = 1.0;
        offset += classes;
    }
}

/// `(row, column)` of the cell of an `h × w` token grid holding object `o`'s centre at the start
/// of time slice `s` (kept frame `s·tps`, i.e. source frame `s·tps·stride`).
fn object_cell(
    clip: &Clip,
    o: usize,
    s: usize,
    [h, w]: [usize; 2],
    tps: usize,
    stride: usize,
) -> (usize, usize) {
    let centres = &clip.plan.objects[o].centres;
    let [x, y] = centres[(s * tps * stride).min(centres.len() - 1)];
    let cy = (y / (clip.plan.height as f64 / h as f64)) as usize;
    let cx = (x / (clip.plan.width as f64 / w as f64)) as usize;
    (cy.min(h - 1), cx.min(w - 1))
}

/// Outputs of the attribute head: colours, shapes, sizes, motions, backgrounds.
pub(crate) const LABEL_DIMS: usize = 8 + 6 + 2 + 5 + 5;

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

fn embed<B: Backend>(
    model: &ContrastiveModel<B>,
    tok: &PromptTokenizer,
    world: &ShapesWorld,
    split: Split,
    n: usize,
    args: &EncoderTrainArgs,
    device: &B::Device,
) -> Result<Embedded> {
    let mut e = Embedded {
        pooled: vec![],
        video: vec![],
        text: vec![],
        labels: vec![],
    };
    for first in (0..n).step_by(args.batch) {
        let b = args.batch.min(n - first);
        let (clips, meta) =
            load_batch::<B>(world, split, first as u64, b, args.frame_stride, device)?;
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
        let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [b, args.text_len]), device);
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

/// What `train encoder` optimises: the contrastive model and, with `--token-weight`, the
/// per-token attribute head.
#[derive(burn::module::Module, Debug)]
struct Trainable<B: Backend> {
    model: ContrastiveModel<B>,
    token_head: Option<burn::nn::Linear<B>>,
}

/// Outputs of the per-token head: colour, shape, size and motion blocks.
const TOKEN_DIMS: usize = 8 + 6 + 2 + 5;

/// Rows of the flattened `[B·t·h·w]` token grid holding each object's centre per time slice,
/// and one-hot `[rows, TOKEN_DIMS]` targets of that object's colour, shape, size and motion.
fn object_tokens(
    meta: &[Clip],
    [t, h, w]: [usize; 3],
    tps: usize,
    stride: usize,
) -> (Vec<usize>, Vec<f32>) {
    let (mut rows, mut targets) = (Vec::new(), Vec::new());
    for (i, clip) in meta.iter().enumerate() {
        for o in 0..clip.plan.objects.len() {
            let mut one_hot = [0f32; TOKEN_DIMS];
            mark_values(&object_labels(clip, 0, o), 4, &mut one_hot);
            for s in 0..t {
                let (cy, cx) = object_cell(clip, o, s, [h, w], tps, stride);
                rows.push(((i * t + s) * h + cy) * w + cx);
                targets.extend(one_hot);
            }
        }
    }
    (rows, targets)
}

/// [`attribute_targets`] of a batch as `[B, LABEL_DIMS]`.
fn attribute_tensor<B: Backend>(meta: &[Clip], device: &B::Device) -> Tensor<B, 2> {
    let targets: Vec<f32> = meta.iter().flat_map(attribute_targets).collect();
    Tensor::from_data(TensorData::new(targets, [meta.len(), LABEL_DIMS]), device)
}

/// Mean over object tokens of the summed per-attribute cross-entropies.
fn token_loss<B: Backend>(
    head: &burn::nn::Linear<B>,
    features: Tensor<B, 5>,
    meta: &[Clip],
    tps: usize,
    stride: usize,
) -> Tensor<B, 1> {
    let [_, _, t, h, w] = features.dims();
    let device = features.device();
    let (rows, targets) = object_tokens(meta, [t, h, w], tps, stride);
    let logits = head.forward(gather_tokens(features, &rows));
    let targets =
        Tensor::<B, 2>::from_data(TensorData::new(targets, [rows.len(), TOKEN_DIMS]), &device);
    let groups: Vec<usize> = ATTRIBUTES[..4].iter().map(|&(_, c)| c).collect();
    grouped_cross_entropy(logits, targets, &groups)
}

/// Everything `train encoder` optimises, saved beside the two towers so a later run can go on.
const TRAINER_FILE: &str = "trainer.safetensors";

/// Loads `--init-from DIR` into a freshly built `model`; returns it and the step `DIR` was saved
/// at. Heads this run has and the saved one lacked start fresh (reported); a saved tensor this
/// run has no place for, or one of another shape, is an error.
fn init_from<B: Backend>(model: Trainable<B>, dir: &Path) -> Result<(Trainable<B>, u64)> {
    let full = dir.join(TRAINER_FILE);
    if full.exists() {
        let step = read_meta(&full)?.step;
        let options = LoadOptions {
            allow_missing: true,
            ..LoadOptions::default()
        };
        let (model, report) = load_file(model, &full, &[], &options)
            .with_context(|| format!("loading {}", full.display()))?;
        println!(
            "init from {} (step {step}): {} tensors loaded; fresh: {:?}",
            full.display(),
            report.applied.len(),
            report.missing
        );
        return Ok((model, step));
    }
    let Trainable {
        model: mut towers,
        token_head,
    } = model;
    let vision = dir.join("semantic_encoder.safetensors");
    let text = dir.join("text_encoder.safetensors");
    let step = read_meta(&vision)
        .with_context(|| format!("reading {}", vision.display()))?
        .step;
    let strict = LoadOptions::default();
    towers.vision = load_file(towers.vision, &vision, QWEN_VISION_KEYS, &strict)
        .with_context(|| format!("loading {}", vision.display()))?
        .0;
    towers.text = load_file(towers.text, &text, UMT5_KEYS, &strict)
        .with_context(|| format!("loading {}", text.display()))?
        .0;
    println!(
        "init from {} (step {step}): vision and text towers loaded; projections and heads fresh",
        dir.display()
    );
    Ok((
        Trainable {
            model: towers,
            token_head,
        },
        step,
    ))
}

/// The `[train]` settings of the core driver that `train encoder`'s flags describe: linear
/// warm-up, then constant or a cosine to a tenth of `--lr`; plain Adam (AdamW with no decay).
fn optim_config(args: &EncoderTrainArgs) -> OptimConfig {
    OptimConfig {
        steps: args.steps as u64,
        lr: args.lr,
        warmup: args.warmup as u64,
        final_lr_ratio: if args.cosine { 0.1 } else { 1.0 },
        weight_decay: 0.0,
        grad_clip: None,
        ema: None,
        checkpoint_every: args.checkpoint_every.max(1) as u64,
        log_every: 10,
        seed: args.seed,
    }
}

/// `train encoder` as a task of the core training driver (`semgen_core::train`): the loss of
/// step `s` is the one of training clips `(prior_steps + s)·batch ..` (a pure function of `s`, so
/// `--resume` replays an uninterrupted run), and each save writes the two towers and the whole
/// trainer, plus the evaluation (retrieval and probes) on the steps of `--eval-every`.
struct EncoderTask<B: AutodiffBackend> {
    args: EncoderTrainArgs,
    config: ContrastiveConfig,
    world: ShapesWorld,
    /// One-object clips: the probe protocol in which every attribute label is well posed.
    single: ShapesWorld,
    tok: PromptTokenizer,
    /// Optimiser steps behind the `--init-from` weights: checkpoint steps count them, and the
    /// training clips continue after the `prior_steps × --batch` that they saw.
    prior_steps: u64,
    /// The attribute and token losses of the last step, for the evaluation rows.
    last: std::cell::Cell<(f64, f64, f64)>,
    started: std::time::Instant,
    device: B::Device,
}

impl<B: AutodiffBackend> TrainTask<B> for EncoderTask<B> {
    type Model = Trainable<B>;

    fn loss(&self, model: &Trainable<B>, step: u64) -> Result<Tensor<B, 1>, TrainError> {
        let args = &self.args;
        let first = (self.prior_steps + step) * args.batch as u64;
        let (clips, meta) = load_batch::<B>(
            &self.world,
            Split::Train,
            first,
            args.batch,
            args.frame_stride,
            &self.device,
        )
        .map_err(TrainError::task)?;
        let captions: Vec<String> = meta.iter().map(Clip::caption).collect();
        let refs: Vec<&str> = captions.iter().map(String::as_str).collect();
        let tb = self
            .tok
            .tokenize(&refs, args.text_len)
            .map_err(TrainError::task)?;
        let (ids, _) = tb.padded(args.text_len, self.tok.pad_id());
        let ids = Tensor::<B, 2, Int>::from_data(
            TensorData::new(ids, [args.batch, args.text_len]),
            &self.device,
        );
        let labels = (args.label_weight > 0.0).then(|| attribute_tensor(&meta, &self.device));
        // One encoder pass feeds the pooled losses and the per-token head.
        let out = model
            .model
            .losses(clips, ids, &tb.lengths(), labels)
            .map_err(TrainError::task)?;
        let scalar = |t: &Tensor<B, 1>| t.clone().into_scalar().elem::<f64>();
        let contrastive = scalar(&out.contrastive);
        let mut loss = out.contrastive;
        let (mut attribute, mut token) = (0.0, 0.0);
        if let Some(a) = out.attributes {
            attribute = scalar(&a);
            loss = loss + a * args.label_weight;
        }
        if let Some(head) = &model.token_head {
            let tps = self.config.vision.temporal_patch_size;
            let t = token_loss(head, out.features, &meta, tps, args.frame_stride);
            token = scalar(&t);
            loss = loss + t * args.token_weight;
        }
        self.last.set((contrastive, attribute, token));
        Ok(loss)
    }

    fn export(
        &self,
        trained: &Trainable<B::InnerBackend>,
        dir: &Path,
        step: u64,
    ) -> Result<(), TrainError> {
        self.save(trained, dir, step).map_err(TrainError::task)
    }

    fn fingerprint(&self) -> String {
        let a = &self.args;
        serde_json::json!({
            "model": &self.config,
            "token_head": a.token_weight > 0.0,
            "batch": a.batch,
            "frame_stride": a.frame_stride,
            "text_len": a.text_len,
            "seed": a.seed,
            "prior_steps": self.prior_steps,
        })
        .to_string()
    }
}

impl<B: AutodiffBackend> EncoderTask<B> {
    /// The checkpoints of step `step` (of this run) in `dir`, and on evaluation steps a row of
    /// `metrics.json` (which keeps the rows of earlier parts of a resumed run).
    fn save(&self, trained: &Trainable<B::InnerBackend>, dir: &Path, step: u64) -> Result<()> {
        let args = &self.args;
        let eval = &trained.model;
        // Checkpoint steps count every clip batch behind these weights, so a later
        // `--init-from` continues the data where this run stopped.
        let total = self.prior_steps + step;
        let config = &self.config;
        if step % args.eval_every.max(1) as u64 == 0 || step == args.steps as u64 {
            let (contrastive, attribute, token) = self.last.get();
            let mut row = serde_json::json!({
                "step": step,
                "loss": contrastive,
                "attribute_loss": attribute,
                "token_loss": token,
                "lr": optim_config(args).lr_at(step.saturating_sub(1)),
                "seconds": self.started.elapsed().as_secs_f64(),
                "probe": args.probe,
            });
            let device = &self.device;
            let embed = |world, split, n| embed(eval, &self.tok, world, split, n, args, device);
            let val = embed(&self.world, Split::Val, args.val_clips)?;
            row["retrieval_top1"] =
                serde_json::json!(retrieval_top1(&val.video, &val.text, config.embed_dim));
            let d = config.vision.out_hidden_size;
            // "probe_*": label = the first object's (training clips, 1–2 objects);
            // "probe1_*": one-object clips, where every label is well posed.
            let fit = embed(&self.world, Split::Train, args.probe_clips)?;
            let fit1 = embed(&self.single, Split::Train, args.probe_clips)?;
            let val1 = embed(&self.single, Split::Val, args.val_clips)?;
            for (prefix, fit, val) in [("probe", &fit, &val), ("probe1", &fit1, &val1)] {
                let fitted = (&fit.pooled[..], &fit.labels[..]);
                let tested = (&val.pooled[..], &val.labels[..]);
                for (name, acc) in args.probe.attribute_accuracies(fitted, tested, d) {
                    row[format!("{prefix}_{name}")] = serde_json::json!(acc);
                }
            }
            println!("{row}");
            let path = dir.join("metrics.json");
            let mut metrics: Vec<serde_json::Value> = match std::fs::read(&path) {
                Ok(bytes) => serde_json::from_slice(&bytes)
                    .with_context(|| format!("{} is not a metrics list", path.display()))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                // Anything else would overwrite rows it could not read: stop instead.
                Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
            };
            // A resumed run re-evaluates no step twice; keep the rows before this one.
            metrics.retain(|r| r["step"].as_u64().is_some_and(|s| s < step));
            metrics.push(row);
            semgen_core::checkpoint::write_atomic(
                &path,
                serde_json::to_string_pretty(&metrics)?.as_bytes(),
            )?;
        }
        let meta = CheckpointMeta::new(
            "semantic_encoder",
            total,
            serde_json::to_value(&config.vision)?,
        );
        save_checkpoint(
            &eval.vision,
            &dir.join("semantic_encoder.safetensors"),
            QWEN_VISION_KEYS,
            &meta,
        )?;
        // The text tower is the prompt encoder both diffusion stages cross-attend to.
        let meta = CheckpointMeta::new("text_encoder", total, serde_json::to_value(&config.text)?);
        save_checkpoint(
            &eval.text,
            &dir.join("text_encoder.safetensors"),
            UMT5_KEYS,
            &meta,
        )?;
        let meta = CheckpointMeta::new("encoder_trainer", total, serde_json::to_value(config)?);
        save_checkpoint(trained, &dir.join(TRAINER_FILE), &[], &meta)?;
        Ok(())
    }
}

struct EncoderJob(EncoderTrainArgs);

impl AutodiffTask for EncoderJob {
    type Output = Result<()>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Result<()> {
        let args = self.0;
        check_run_dir(&args.out, args.resume)?;
        std::fs::create_dir_all(&args.out)
            .with_context(|| format!("creating {}", args.out.display()))?;
        let world = ShapesWorld::new(WorldConfig {
            seed: args.seed,
            ..WorldConfig::default()
        })?;
        let single = ShapesWorld::new(WorldConfig {
            seed: args.seed,
            max_objects: 1,
            ..WorldConfig::default()
        })?;
        let mut config = ContrastiveConfig::shapes();
        if args.label_weight > 0.0 {
            config.label_dims = LABEL_DIMS;
        }
        // `--seed` fixes the initial weights too, so a rerun gives the same encoder.
        B::seed(&device, args.seed);
        let mut model = Trainable {
            model: config.init::<B>(&device)?,
            token_head: (args.token_weight > 0.0).then(|| {
                burn::nn::LinearConfig::new(config.vision.out_hidden_size, TOKEN_DIMS).init(&device)
            }),
        };
        let mut prior_steps = 0;
        if let Some(dir) = &args.init_from {
            (model, prior_steps) = init_from(model, dir)?;
        }
        let task = EncoderTask::<B> {
            prior_steps,
            config,
            world,
            single,
            tok: PromptTokenizer::shapes(),
            last: std::cell::Cell::new((f64::NAN, f64::NAN, f64::NAN)),
            started: std::time::Instant::now(),
            device: device.clone(),
            args: args.clone(),
        };
        let mut trainer = Trainer::new(model, optim_config(&args))?;
        if args.resume {
            trainer.resume(&task, &args.out, &device)?;
        }
        println!(
            "training the encoder from step {} to {}",
            trainer.step, args.steps
        );
        let stop = crate::stages::stop_flag();
        let summary = trainer.run(&task, &args.out, &stop, !args.quiet)?;
        crate::stages::print_summary(&summary);
        Ok(())
    }
}

/// Runs the pretraining through the core driver and prints/saves the metrics.
pub fn train(args: EncoderTrainArgs) -> Result<()> {
    dispatch_autodiff(args.device, EncoderJob(args))?
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
    /// What the probes read: `mean`, the mean over every token (the pooled feature the training
    /// heads see); `object`, the token of the cell holding the first object's centre in each
    /// time slice, averaged over slices (what a per-token consumer such as stage 2 can read
    /// about that object).
    #[arg(long, value_enum, default_value_t = Readout::Mean)]
    pub readout: Readout,
    #[arg(long, value_enum, default_value_t = ProbeFit::Logistic)]
    pub probe: ProbeFit,
    /// Also write the accuracies (JSON) here.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Which linear classifier a probe fits (both on standardised features, with a bias).
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeFit {
    /// Least squares on one-hot targets, ridge 1 (closed form; the figures before session 12).
    Ridge,
    /// Multinomial logistic regression, L2 1e-3 (the usual linear probe).
    Logistic,
}

impl ProbeFit {
    /// Test accuracy of this probe for each of [`ATTRIBUTES`], fitted on features `fx` (`[n,
    /// k]`) with labels `fy` and tested on `(vx, vy)`.
    pub(crate) fn attribute_accuracies(
        self,
        (fx, fy): (&[f32], &[[usize; 6]]),
        (vx, vy): (&[f32], &[[usize; 6]]),
        k: usize,
    ) -> Vec<(&'static str, f64)> {
        ATTRIBUTES
            .iter()
            .enumerate()
            .map(|(a, &(name, classes))| {
                let ty: Vec<usize> = fy.iter().map(|l| l[a]).collect();
                let vyy: Vec<usize> = vy.iter().map(|l| l[a]).collect();
                let acc = match self {
                    ProbeFit::Ridge => linear_probe_accuracy(fx, &ty, vx, &vyy, k, classes, 1.0),
                    ProbeFit::Logistic => {
                        logistic_probe_accuracy(fx, &ty, vx, &vyy, k, classes, 1e-3)
                    }
                };
                (name, acc)
            })
            .collect()
    }
}

/// Which encoder features the probes of `probe-encoder` read.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Readout {
    Mean,
    Object,
}

/// The feature of the cell holding `clip`'s first object in each time slice of a `[d, t, h, w]`
/// grid (`grid` row-major, clip-local), averaged over slices ([`object_cell`]).
fn object_cell_feature(
    grid: &[f32],
    [d, t, h, w]: [usize; 4],
    clip: &Clip,
    tps: usize,
    stride: usize,
) -> Vec<f32> {
    let mut out = vec![0f32; d];
    for s in 0..t {
        let (cy, cx) = object_cell(clip, 0, s, [h, w], tps, stride);
        for (c, v) in out.iter_mut().enumerate() {
            *v += grid[((c * t + s) * h + cy) * w + cx] / t as f32;
        }
    }
    out
}

/// Encoder features `[n, d]` (row-major, as `readout` says) and labels of clips `0..n` of a split.
fn pooled_features(
    vision: &semgen_encoder::qwen_vision::QwenVision<Inner>,
    world: &ShapesWorld,
    split: Split,
    n: usize,
    stride: usize,
    readout: Readout,
) -> Result<(Vec<f32>, Vec<[usize; 6]>)> {
    let device = Default::default();
    let (mut feats, mut labs) = (Vec::new(), Vec::new());
    for first in (0..n).step_by(32) {
        let b = 32.min(n - first);
        let (clips, meta) = load_batch::<Inner>(world, split, first as u64, b, stride, &device)?;
        let grid = vision.encode_clip(clips)?;
        match readout {
            Readout::Mean => feats.extend(
                pool_grid(grid.features)
                    .into_data()
                    .to_vec::<f32>()
                    .unwrap_or_default(),
            ),
            Readout::Object => {
                let [_, d, t, h, w] = grid.features.dims();
                let host = grid
                    .features
                    .into_data()
                    .to_vec::<f32>()
                    .unwrap_or_default();
                let tps = vision.config.temporal_patch_size;
                for (i, clip) in meta.iter().enumerate() {
                    let one = &host[i * d * t * h * w..(i + 1) * d * t * h * w];
                    feats.extend(object_cell_feature(one, [d, t, h, w], clip, tps, stride));
                }
            }
        }
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
    let features =
        |split, n| pooled_features(&vision, &world, split, n, args.frame_stride, args.readout);
    let (fx, fy) = features(Split::Train, args.fit)?;
    let (vx, vy) = features(Split::Val, args.val)?;
    let d = config.out_hidden_size;
    let mut row = serde_json::json!({
        "encoder": args.encoder,
        "objects_per_clip": args.objects,
        "readout": args.readout,
        "probe": args.probe,
        "fit_clips": args.fit,
        "val_clips": args.val,
    });
    for (name, acc) in args.probe.attribute_accuracies((&fx, &fy), (&vx, &vy), d) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn attribute_targets_mark_each_objects_values_and_the_background() {
        let world = ShapesWorld::new(WorldConfig::default()).unwrap();
        let mut two_objects = 0;
        for i in 0..24 {
            let clip = world.clip(Split::Train, i).unwrap();
            let t = attribute_targets(&clip);
            assert_eq!(t.len(), LABEL_DIMS);
            let prompt = clip.prompt();
            let objects = &prompt.segments[0].objects;
            let mut offset = 0;
            let mut ones = vec![];
            for &(_, classes) in &ATTRIBUTES[..5] {
                ones.push(
                    t[offset..offset + classes]
                        .iter()
                        .filter(|v| **v == 1.0)
                        .count(),
                );
                offset += classes;
            }
            assert_eq!(offset, LABEL_DIMS);
            assert_eq!(t.iter().filter(|v| **v != 0.0 && **v != 1.0).count(), 0);
            let colours: std::collections::HashSet<String> =
                objects.iter().map(|o| o.colour.to_string()).collect();
            let shapes: std::collections::HashSet<String> =
                objects.iter().map(|o| o.shape.to_string()).collect();
            assert_eq!(ones[0], colours.len(), "clip {i}");
            assert_eq!(ones[1], shapes.len(), "clip {i}");
            assert!((1..=objects.len()).contains(&ones[2]));
            assert!((1..=objects.len()).contains(&ones[3]));
            assert_eq!(ones[4], 1, "one background");
            // The first object's labels (the probes' targets) are among the marked values.
            let l = labels(&clip);
            for (a, at) in [0, 8, 14, 16, 21].into_iter().enumerate() {
                assert_eq!(t[at + l[a]], 1.0, "clip {i}, attribute {a}");
            }
            two_objects += (objects.len() == 2) as usize;
        }
        assert!(two_objects > 0, "the sample must hold two-object clips");
    }

    /// Every parameter of `module`, by name.
    fn params<B: Backend, M: burn::store::ModuleSnapshot<B>>(
        module: &M,
    ) -> std::collections::BTreeMap<String, Vec<f32>> {
        module
            .collect(None, None, false)
            .into_iter()
            .map(|s| (s.full_path(), s.to_data().unwrap().to_vec::<f32>().unwrap()))
            .collect()
    }

    #[test]
    fn init_from_loads_the_whole_trainer_or_else_the_two_towers() {
        type B = burn::backend::NdArray;
        let device = Default::default();
        let mut config = ContrastiveConfig::shapes();
        config.vision = semgen_encoder::qwen_vision::QwenVisionConfig::tiny();
        config.text = semgen_encoder::umt5::Umt5Config::tiny();
        config.embed_dim = 16;
        config.label_dims = LABEL_DIMS;
        let build_with = |config: &ContrastiveConfig, seed: u64| {
            <B as Backend>::seed(&device, seed);
            Trainable::<B> {
                model: config.init(&device).unwrap(),
                token_head: Some(
                    burn::nn::LinearConfig::new(config.vision.out_hidden_size, TOKEN_DIMS)
                        .init(&device),
                ),
            }
        };
        let build = |seed: u64| build_with(&config, seed);
        let saved = build(1);
        let dir = tempfile::tempdir().unwrap();

        // A whole trainer: every tensor comes back, with the step it was saved at.
        let full = dir.path().join("full");
        std::fs::create_dir_all(&full).unwrap();
        let meta =
            CheckpointMeta::new("encoder_trainer", 7, serde_json::to_value(&config).unwrap());
        save_checkpoint(&saved, &full.join(TRAINER_FILE), &[], &meta).unwrap();
        let (loaded, step) = init_from(build(2), &full).unwrap();
        assert_eq!(step, 7);
        assert_eq!(params(&loaded), params(&saved));
        assert_ne!(params(&build(2)), params(&saved), "the seeds must differ");

        // Only the two towers (an older run): they load, the projections and heads stay fresh.
        let towers = dir.path().join("towers");
        std::fs::create_dir_all(&towers).unwrap();
        let meta = |c: &str| CheckpointMeta::new(c, 5, serde_json::Value::Null);
        let vision = towers.join("semantic_encoder.safetensors");
        let text = towers.join("text_encoder.safetensors");
        save_checkpoint(
            &saved.model.vision,
            &vision,
            QWEN_VISION_KEYS,
            &meta("semantic_encoder"),
        )
        .unwrap();
        save_checkpoint(&saved.model.text, &text, UMT5_KEYS, &meta("text_encoder")).unwrap();
        let (loaded, step) = init_from(build(3), &towers).unwrap();
        assert_eq!(step, 5);
        assert_eq!(params(&loaded.model.vision), params(&saved.model.vision));
        assert_eq!(params(&loaded.model.text), params(&saved.model.text));
        assert_ne!(
            params(&loaded.model.video_proj),
            params(&saved.model.video_proj)
        );
        assert_ne!(params(&loaded.token_head), params(&saved.token_head));

        // A trainer of another size, or a folder without checkpoints: errors, not a panic.
        let mut small = config.clone();
        small.embed_dim = 8;
        let other = build_with(&small, 4);
        let wrong = dir.path().join("wrong");
        std::fs::create_dir_all(&wrong).unwrap();
        let meta = CheckpointMeta::new("encoder_trainer", 1, serde_json::Value::Null);
        save_checkpoint(&other, &wrong.join(TRAINER_FILE), &[], &meta).unwrap();
        let err = init_from(build(5), &wrong).unwrap_err();
        assert!(format!("{err:#}").contains("shape mismatch"), "{err:#}");
        assert!(init_from(build(5), &dir.path().join("nothing")).is_err());
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: EncoderTrainArgs,
    }

    #[test]
    fn learning_rate_warms_up_then_decays_to_a_tenth() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["x", "--steps", "100", "--lr", "1e-3"];
            argv.extend_from_slice(extra);
            optim_config(&Cli::parse_from(argv).args)
        };
        // The driver's steps are 0-based: `lr_at(s)` is the rate of the (s+1)-th step.
        let constant = parse(&[]);
        assert_eq!(constant.lr_at(0), 1e-3);
        assert_eq!(constant.lr_at(99), 1e-3);
        let cosine = parse(&["--warmup", "10", "--cosine"]);
        assert!((cosine.lr_at(4) - 5e-4).abs() < 1e-12);
        assert!((cosine.lr_at(9) - 1e-3).abs() < 1e-12);
        assert!((cosine.lr_at(10) - 1e-3).abs() < 1e-12);
        assert!((cosine.lr_at(55) - 5.5e-4).abs() < 1e-12);
        assert!((cosine.lr_at(100) - 1e-4).abs() < 1e-12);
        assert_eq!(cosine.weight_decay, 0.0, "plain Adam, as before the driver");
    }
}
