//! `cargo xtask probe-text`: does the text side of stage 1 say *which object* a word describes?
//!
//! Random two-object captions of the Shapes grammar (the objects differ in colour and in shape,
//! so "own" and "other's" are different labels) go through the text encoder and, when the
//! stage-1 generator has one, its text refiner. Linear probes (fitted on three quarters of the
//! objects, scored on the rest) then read, from one word's feature, the attributes of the
//! object that word belongs to and of the other object. A feature that binds names its own
//! object's attributes far better than the other's; one that holds the caption as a bag of
//! words names both about equally, and a generator reading it cannot tell which object is to
//! move which way (docs/results.md, sessions 27 and 28).

use anyhow::{Context, Result};
use burn::prelude::*;
use rand::{Rng, SeedableRng};
use semgen_core::device::DeviceSpec;
use semgen_data::{
    Background, Colour, Direction, Motion, ObjectPrompt, ScenePrompt, Shape, Size, Speed,
};
use semgen_encoder::text_encoder::TextEncoder;
use semgen_encoder::train::logistic_probe_accuracy;
use semgen_pipeline::backend::{dispatch, BackendTask};
use semgen_pipeline::model::SemgenModel;
use semgen_semantic_dit::{SemanticDit, SemanticText};
use std::path::PathBuf;

#[derive(clap::Args, Debug, Clone)]
pub struct TextProbeArgs {
    #[arg(long, default_value = "checkpoints/shapes-small")]
    pub checkpoint: PathBuf,
    /// Two-object captions (each gives two objects; a quarter are held out).
    #[arg(long, default_value_t = 2000)]
    pub count: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Validation clips of each kind for the loss test (0 = none): stage 1's flow-matching loss
    /// on real z_sem with the true caption and with the two objects' motions swapped (and, for
    /// scale, one-object clips with the direction reversed).
    #[arg(long, default_value_t = 200)]
    pub loss_clips: usize,
    /// Noise draws per clip and caption in the loss test.
    #[arg(long, default_value_t = 8)]
    pub draws: usize,
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
}

/// Motion class of an object (still or a direction).
fn motion_class(o: &ObjectPrompt) -> usize {
    o.attribute_classes()[3]
}

/// Stage 1's mean loss on `z` `[1, d, t, h, w]` (model space) with each caption, over `draws`
/// noise draws that are the same for every caption.
fn losses<B: Backend>(
    semantic: &SemanticDit<B>,
    encoder: &TextEncoder<B>,
    z: &Tensor<B, 5>,
    captions: &[String],
    draws: usize,
    seed: u64,
) -> Result<Vec<f64>> {
    let mut out = Vec::new();
    for caption in captions {
        let text = encoder.encode(&[caption.as_str()])?.hidden;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut total = 0.0;
        for _ in 0..draws {
            let loss =
                semantic.training_loss(z.clone(), SemanticText::Shared(text.clone()), &mut rng)?;
            total += loss.into_scalar().elem::<f64>();
        }
        out.push(total / draws as f64);
    }
    Ok(out)
}

/// Words of an object's phrase that are probed, by their place in "a SIZE COLOUR SHAPE moving
/// DIRECTION SPEED" / "a SIZE COLOUR SHAPE staying still".
const WORDS: [(&str, usize); 3] = [("colour", 2), ("shape", 3), ("direction", 5)];

/// A random scene of two objects that differ in colour and in shape.
fn two_objects(rng: &mut rand::rngs::StdRng) -> ScenePrompt {
    let mut objects: Vec<ObjectPrompt> = Vec::new();
    while objects.len() < 2 {
        let pick = |rng: &mut rand::rngs::StdRng, n: usize| rng.random_range(0..n);
        let o = ObjectPrompt {
            shape: Shape::ALL[pick(rng, Shape::ALL.len())],
            colour: Colour::ALL[pick(rng, Colour::ALL.len())],
            size: Size::ALL[pick(rng, Size::ALL.len())],
            motion: match pick(rng, 5) {
                0 => Motion::Still,
                d => Motion::Moving(Direction::ALL[d - 1], Speed::ALL[pick(rng, 2)]),
            },
        };
        if objects
            .iter()
            .all(|p| p.colour != o.colour && p.shape != o.shape)
        {
            objects.push(o);
        }
    }
    ScenePrompt {
        objects,
        background: Background::ALL[rng.random_range(0..Background::ALL.len())],
    }
}

struct TextProbe(TextProbeArgs);

impl BackendTask for TextProbe {
    type Output = Result<()>;
    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let a = self.0;
        anyhow::ensure!(a.count >= 8, "--count must be at least 8, got {}", a.count);
        let mut model = SemgenModel::<B>::load(&a.checkpoint, &device)
            .with_context(|| format!("loading {}", a.checkpoint.display()))?;
        let refiner = model
            .semantic
            .as_ref()
            .and_then(|s| s.text_refiner.as_ref());
        let mut rng = rand::rngs::StdRng::seed_from_u64(a.seed);
        let scenes: Vec<ScenePrompt> = (0..a.count).map(|_| two_objects(&mut rng)).collect();
        let captions: Vec<String> = scenes.iter().map(ToString::to_string).collect();
        // Features per source ("text encoder", "refined") and per probed word, one row per
        // object; labels per object: own and other's colour and motion class.
        let sources = if refiner.is_some() { 2 } else { 1 };
        let mut rows: Vec<Vec<Vec<f32>>> = vec![vec![Vec::new(); WORDS.len()]; sources];
        let mut labels: [Vec<usize>; 4] = Default::default();
        let mut d = 0;
        for chunk in (0..a.count).collect::<Vec<_>>().chunks(256) {
            let refs: Vec<&str> = chunk.iter().map(|&i| captions[i].as_str()).collect();
            let hidden = model.text.encode(&refs)?.hidden;
            let [_, l, width] = hidden.dims();
            d = width;
            let mut feats = vec![hidden.clone().into_data().to_vec::<f32>()?];
            if let Some(r) = refiner {
                feats.push(r.forward(hidden).into_data().to_vec::<f32>()?);
            }
            for (b, &i) in chunk.iter().enumerate() {
                let owners = scenes[i].word_objects();
                for k in 0..2 {
                    let start = owners.iter().position(|o| *o == Some(k)).unwrap_or(0);
                    for (s, f) in feats.iter().enumerate() {
                        for (w, (_, at)) in WORDS.iter().enumerate() {
                            let p = start + at;
                            anyhow::ensure!(p < l, "caption longer than the text length");
                            rows[s][w].extend_from_slice(&f[(b * l + p) * d..(b * l + p + 1) * d]);
                        }
                    }
                    let (own, other) = (
                        scenes[i].objects[k].attribute_classes(),
                        scenes[i].objects[1 - k].attribute_classes(),
                    );
                    labels[0].push(own[0]);
                    labels[1].push(other[0]);
                    labels[2].push(own[3]);
                    labels[3].push(other[3]);
                }
            }
        }
        let n = labels[0].len();
        let fit = n * 3 / 4;
        let classes = [
            semgen_data::ATTRIBUTE_GROUPS[0],
            semgen_data::ATTRIBUTE_GROUPS[0],
            semgen_data::ATTRIBUTE_GROUPS[3],
            semgen_data::ATTRIBUTE_GROUPS[3],
        ];
        println!(
            "Linear probes on {} objects of {} two-object captions ({} held out), {}:",
            n,
            a.count,
            n - fit,
            a.checkpoint.display()
        );
        println!("| features | word | own colour | other's colour | own motion | other's motion |");
        println!("|---|---|---|---|---|---|");
        for (s, name) in ["text encoder", "stage 1's text refiner"]
            .iter()
            .enumerate()
            .take(sources)
        {
            for (w, (word, _)) in WORDS.iter().enumerate() {
                let x = &rows[s][w];
                let acc: Vec<String> = labels
                    .iter()
                    .zip(classes)
                    .map(|(y, k)| {
                        let a = logistic_probe_accuracy(
                            &x[..fit * d],
                            &y[..fit],
                            &x[fit * d..],
                            &y[fit..],
                            d,
                            k,
                            1e-4,
                        );
                        format!("{a:.3}")
                    })
                    .collect();
                println!("| {name} | {word} | {} |", acc.join(" | "));
            }
        }
        // The scale the generator's cross-attention reads (what a refiner adds on top).
        let rms: Vec<String> = rows
            .iter()
            .map(|r| {
                let x: Vec<f32> = r.iter().flatten().copied().collect();
                let ms = x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / x.len().max(1) as f64;
                format!("{:.3}", ms.sqrt())
            })
            .collect();
        println!("RMS of the probed word features: {}", rms.join(" -> "));
        if sources == 1 {
            println!("(stage 1 of this model has no text refiner)");
        }
        if a.loss_clips > 0 {
            // The loss test compares captions: no training-time text dropout.
            if let Some(s) = model.semantic.as_mut() {
                s.config.text_drop = 0.0;
            }
            loss_test(&model, &a)?;
        }
        Ok(())
    }
}

/// Does stage 1's loss tell the true caption of a real clip from the same caption with the two
/// objects' motions swapped? Beside it, as a scale, the one-object clips' loss with the object's
/// direction reversed. Same noise draws for every caption of a clip; no text dropout.
fn loss_test<B: Backend>(model: &SemgenModel<B>, a: &TextProbeArgs) -> Result<()> {
    let world = semgen_data::ShapesWorld::new(semgen_data::WorldConfig::default())?;
    let device = model.vae.quant_conv.weight.device();
    let semantic = model
        .semantic
        .as_ref()
        .context("the model has no stage 1")?;
    // [true - swapped] for two-object clips, [true - reversed] for one-object ones.
    let (mut two, mut one) = (Vec::new(), Vec::new());
    let mut index = 0u64;
    let n = a.loss_clips;
    while (two.len() < n || one.len() < n) && index < 50 * n as u64 {
        let clip = world.clip(semgen_data::Split::Val, index)?;
        index += 1;
        let scene = clip.prompt().segments[0].clone();
        let other = match scene.objects.as_slice() {
            [x, y] if two.len() < n && motion_class(x) != motion_class(y) => {
                let mut s = scene.clone();
                s.objects[0].motion = y.motion;
                s.objects[1].motion = x.motion;
                s
            }
            [_] if one.len() < n => match scene.objects[0].motion {
                Motion::Moving(d, v) => {
                    let mut s = scene.clone();
                    s.objects[0].motion = Motion::Moving(d.reversed(), v);
                    s
                }
                Motion::Still => continue,
            },
            _ => continue,
        };
        let x = semgen_data::videos_to_tensor(&[clip.video.clone()], &device)?;
        let z = semantic.config.to_model_space(model.encode_clip(x)?);
        let l = losses(
            semantic,
            &model.text,
            &z,
            &[scene.to_string(), other.to_string()],
            a.draws,
            a.seed + index,
        )?;
        let gap = l[0] - l[1];
        if scene.objects.len() == 2 {
            two.push(gap);
        } else {
            one.push(gap);
        }
    }
    let summary = |gaps: &[f64]| {
        let n = gaps.len().max(1) as f64;
        let mean = gaps.iter().sum::<f64>() / n;
        let lower = gaps.iter().filter(|g| **g < 0.0).count() as f64 / n;
        (mean, lower)
    };
    let (m2, f2) = summary(&two);
    let (m1, f1) = summary(&one);
    println!(
        "Stage 1's loss on real z_sem, true caption minus altered ({} noise draws each, no text dropout):",
        a.draws
    );
    println!("| clips | altered caption | clips | mean loss difference | true caption lower |");
    println!("|---|---|---|---|---|");
    println!(
        "| two objects, different motions | motions swapped | {} | {m2:+.4} | {f2:.3} |",
        two.len()
    );
    println!(
        "| one moving object | direction reversed | {} | {m1:+.4} | {f1:.3} |",
        one.len()
    );
    Ok(())
}

pub fn run(args: TextProbeArgs) -> Result<()> {
    let device = args.device;
    dispatch(device, TextProbe(args))?
}
