//! A refiner fine-tune (`[inputs] init_from`, `[model] object_weight`) through the real
//! `cargo xtask train refiner` binary, on a tiny refiner over the shipped model's frozen VAE and
//! encoders (a 2-clip pool of 5-frame 32x32 clips): the fine-tune starts from the given weights,
//! not from its own seed's init, can keep the compression MLP frozen or start it fresh
//! (`init_compressor = false`) and change training-only settings, and a folder holding another
//! architecture is refused even when every tensor has the same shape. Stage 1 fine-tunes the
//! same way (`train semantic`, keeping the stored generator's `z_sem` statistics).

use semgen_core::checkpoint::{parse_safetensors, read_meta};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn shipped() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../checkpoints/shapes-small")
}

/// A tiny refiner config; `inputs` and `model` are lines added to those tables.
fn config(heads: usize, lr: f64, warmup: u64, seed: u64, inputs: &str, model: &str) -> String {
    let s = shipped();
    format!(
        r#"[inputs]
vae = "{vae}"
encoder = "{enc}"
{inputs}

[model]
heads = {heads}
head_dim = {head_dim}
layers = 1
ffn = 32
window = 4
d_out = 8
kl_weight = 0.001
sem_noise_max = 0.3
{model}

{tables}"#,
        vae = s.join("vae.safetensors").display(),
        enc = s.display(),
        // Width 32 either way: 2 x 16 or 4 x 8 heads give tensors of the same shapes.
        head_dim = 32 / heads,
        tables = data_and_train(0, lr, warmup, seed),
    )
}

/// The `[data]` (a 2-clip pool of 5-frame 32x32 clips of `world_seed`) and `[train]` (one
/// step) tables both stages' configs share.
fn data_and_train(world_seed: u64, lr: f64, warmup: u64, seed: u64) -> String {
    format!(
        r#"[data]
world_seed = {world_seed}
pool = 2
batch = 2
frames = 5
height = 32
width = 32
max_objects = 1
frame_stride = 4
text_len = 32

[train]
steps = 1
lr = {lr}
warmup = {warmup}
checkpoint_every = 1
log_every = 1
seed = {seed}
"#
    )
}

/// `xtask train STAGE` on `toml`, written to `dir/name.toml`, into `dir/name`.
fn train_stage(stage: &str, dir: &Path, name: &str, toml: &str) -> Output {
    let cfg = dir.join(format!("{name}.toml"));
    std::fs::write(&cfg, toml).unwrap();
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["train", stage, "--quiet", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(dir.join(name))
        .output()
        .unwrap()
}

fn train(dir: &Path, name: &str, toml: &str) -> Output {
    train_stage("refiner", dir, name, toml)
}

fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A refused run: exit status 1, `message` in its stderr, no panic.
fn refused(out: &Output, message: &str) {
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(message), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// Every f32 tensor of a checkpoint, by name.
fn weights(path: &Path) -> Vec<(String, Vec<f32>)> {
    let file = parse_safetensors(path).unwrap();
    file.tensors()
        .into_iter()
        .map(|(name, view)| {
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (name, values)
        })
        .collect()
}

fn max_diff(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|((na, va), (nb, vb))| {
            assert_eq!(na, nb);
            assert_eq!(va.len(), vb.len(), "{na}");
            va.iter().zip(vb).map(|(x, y)| (x - y).abs())
        })
        .fold(0.0, f32::max)
}

#[test]
fn a_fine_tune_starts_from_its_init_from_weights_and_refuses_another_architecture() {
    let dir = tempfile::tempdir().unwrap();
    ok(&train(dir.path(), "base", &config(2, 5e-4, 0, 0, "", "")));
    let base = dir.path().join("base");

    // One step at a learning rate of ~1e-12 (lr 1e-9, 1000 warm-up steps) from the base run,
    // with another seed and the objects weighted up: the weights stay the base run's.
    let from = format!("init_from = \"{}\"", base.display());
    let tuned = ok(&train(
        dir.path(),
        "tuned",
        &config(2, 1e-9, 1000, 7, &from, "object_weight = 4.0"),
    ));
    assert!(tuned.contains("refiner initialised from"), "{tuned}");
    for file in ["refiner.safetensors", "compressor.safetensors"] {
        let a = weights(&base.join(file));
        let b = weights(&dir.path().join("tuned").join(file));
        assert!(max_diff(&a, &b) < 1e-6, "{file}: {}", max_diff(&a, &b));
    }
    // A deeper refiner grows from the stored one, as stage 1 does: the stored blocks, then an
    // identity block; the compression MLP is the base run's.
    let grown = ok(&train(
        dir.path(),
        "grown",
        &config(2, 1e-9, 1000, 7, &from, "").replace("layers = 1", "layers = 2"),
    ));
    assert!(
        grown.contains("refiner grown from 1 to 2 layers"),
        "{grown}"
    );
    let grown_dir = dir.path().join("grown");
    assert_grown_by_one_block(
        &base.join("refiner.safetensors"),
        &grown_dir.join("refiner.safetensors"),
    );
    let mlp = max_diff(
        &weights(&base.join("compressor.safetensors")),
        &weights(&grown_dir.join("compressor.safetensors")),
    );
    assert!(mlp < 1e-6, "compressor moved by {mlp}");

    // init_compressor = false (a refiner moved onto another encoder): the refiner is the base
    // run's, the compression MLP a fresh one of seed 7.
    let moved = ok(&train(
        dir.path(),
        "moved",
        &config(
            2,
            1e-9,
            1000,
            7,
            &format!("{from}\ninit_compressor = false"),
            "",
        ),
    ));
    assert!(moved.contains("compressor starts fresh"), "{moved}");
    let moved_dir = dir.path().join("moved");
    let dit = max_diff(
        &weights(&base.join("refiner.safetensors")),
        &weights(&moved_dir.join("refiner.safetensors")),
    );
    assert!(dit < 1e-6, "refiner moved by {dit}");
    let mlp = max_diff(
        &weights(&base.join("compressor.safetensors")),
        &weights(&moved_dir.join("compressor.safetensors")),
    );
    assert!(mlp > 1e-2, "compressor is the base run's ({mlp})");
    // A fresh MLP cannot be kept frozen, and without init_from the setting means nothing.
    let contradiction = train(
        dir.path(),
        "contradiction",
        &config(
            2,
            5e-4,
            0,
            7,
            &format!("{from}\ninit_compressor = false"),
            "freeze_compressor = true",
        ),
    );
    refused(&contradiction, "freeze_compressor needs");
    let alone = train(
        dir.path(),
        "alone",
        &config(2, 5e-4, 0, 7, "init_compressor = false", ""),
    );
    refused(&alone, "init_compressor = false only applies");

    // The same run without init_from starts from seed 7's own weights: far from the base's.
    ok(&train(
        dir.path(),
        "fresh",
        &config(2, 1e-9, 1000, 7, "", ""),
    ));
    let fresh = weights(&dir.path().join("fresh/refiner.safetensors"));
    assert!(max_diff(&weights(&base.join("refiner.safetensors")), &fresh) > 1e-2);

    // A frozen compression MLP stays the base run's while the refiner learns (a normal lr).
    // The fine-tune changes a training-only setting (the text dropout): same architecture,
    // accepted.
    ok(&train(
        dir.path(),
        "frozen",
        &config(
            2,
            5e-3,
            0,
            7,
            &from,
            "freeze_compressor = true\ntext_drop = 0.7",
        ),
    ));
    let frozen = dir.path().join("frozen");
    let mlp = max_diff(
        &weights(&base.join("compressor.safetensors")),
        &weights(&frozen.join("compressor.safetensors")),
    );
    assert!(mlp < 1e-6, "compressor moved by {mlp}");
    let dit = max_diff(
        &weights(&base.join("refiner.safetensors")),
        &weights(&frozen.join("refiner.safetensors")),
    );
    assert!(dit > 1e-4, "refiner moved by {dit}");
    // Freezing needs something to keep.
    let nothing = train(
        dir.path(),
        "nothing",
        &config(2, 5e-4, 0, 0, "", "freeze_compressor = true"),
    );
    refused(&nothing, "freeze_compressor needs");

    // 4 heads of 8 instead of 2 of 16: the same tensor shapes, another model. Refused, by name.
    let other = train(dir.path(), "other", &config(4, 5e-4, 0, 0, &from, ""));
    refused(&other, "init_from");
    refused(&other, "another config");

    // A non-positive object weight is a clear error too.
    let bad = train(
        dir.path(),
        "bad",
        &config(2, 5e-4, 0, 0, "", "object_weight = -1.0"),
    );
    refused(&bad, "object_weight must be a positive number");
}

/// A copy of `from`'s refiner and compression MLP into `to`, the MLP's log-variance outputs
/// (the second half of `fc2.bias`) raised by `by`: the same posterior means, wider posteriors.
fn widen_posterior(from: &Path, to: &Path, by: f32) {
    std::fs::create_dir_all(to).unwrap();
    std::fs::copy(
        from.join("refiner.safetensors"),
        to.join("refiner.safetensors"),
    )
    .unwrap();
    let mut bytes = std::fs::read(from.join("compressor.safetensors")).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    let entry = &header["fc2.bias"];
    assert_eq!(entry["dtype"], "F32");
    let begin = 8 + header_len + entry["data_offsets"][0].as_u64().unwrap() as usize;
    let end = 8 + header_len + entry["data_offsets"][1].as_u64().unwrap() as usize;
    let n = (end - begin) / 4; // 2·d_out: means, then log-variances
    for i in n / 2..n {
        let at = begin + 4 * i;
        let v = f32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) + by;
        bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    std::fs::write(to.join("compressor.safetensors"), bytes).unwrap();
}

#[test]
fn posterior_noise_zero_trains_stage_2_on_the_posterior_mean() {
    // Two frozen-MLP fine-tunes from MLPs with the same means and different variances: with
    // posterior_noise = 0 stage 2 sees the means alone, so its weights come out bit-identical;
    // with the default (the VAE-style sample) they differ.
    let dir = tempfile::tempdir().unwrap();
    ok(&train(dir.path(), "base", &config(2, 5e-4, 0, 0, "", "")));
    let base = dir.path().join("base");
    let wide = dir.path().join("wide");
    widen_posterior(&base, &wide, 3.0);
    let run = |name: &str, from: &Path, model: &str| {
        ok(&train(
            dir.path(),
            name,
            &config(
                2,
                5e-3,
                0,
                7,
                &format!("init_from = \"{}\"", from.display()),
                &format!("freeze_compressor = true\n{model}"),
            ),
        ));
        weights(&dir.path().join(name).join("refiner.safetensors"))
    };
    let mean_base = run("mean-base", &base, "posterior_noise = 0.0");
    let mean_wide = run("mean-wide", &wide, "posterior_noise = 0.0");
    assert_eq!(max_diff(&mean_base, &mean_wide), 0.0);
    let sample_base = run("sample-base", &base, "");
    let sample_wide = run("sample-wide", &wide, "");
    assert!(max_diff(&sample_base, &sample_wide) > 1e-6);
    assert!(max_diff(&mean_base, &sample_base) > 1e-6);

    let bad = train(
        dir.path(),
        "bad",
        &config(2, 5e-4, 0, 0, "", "posterior_noise = -0.5"),
    );
    refused(&bad, "posterior_noise must be a number >= 0");
}

/// A tiny stage-1 config over the refiner run `refiner`; `inputs` is added to `[inputs]`.
fn semantic_config(
    refiner: &Path,
    heads: usize,
    lr: f64,
    seed: u64,
    world_seed: u64,
    inputs: &str,
) -> String {
    let s = shipped();
    format!(
        r#"[inputs]
vae = "{vae}"
encoder = "{enc}"
refiner = "{refiner}"
{inputs}

[model]
heads = {heads}
head_dim = {head_dim}
layers = 1
ffn = 32

{tables}"#,
        vae = s.join("vae.safetensors").display(),
        enc = s.display(),
        refiner = refiner.display(),
        head_dim = 32 / heads,
        tables = data_and_train(world_seed, lr, 1000, seed),
    )
}

fn train_semantic(dir: &Path, name: &str, toml: &str) -> Output {
    train_stage("semantic", dir, name, toml)
}

/// The config stored in a checkpoint's semgen metadata.
fn stored_config(path: &Path) -> serde_json::Value {
    read_meta(path).unwrap().config
}

#[test]
fn a_stage_1_fine_tune_starts_from_its_init_from_weights_in_their_z_space() {
    let dir = tempfile::tempdir().unwrap();
    ok(&train(
        dir.path(),
        "refiner",
        &config(2, 5e-4, 0, 0, "", ""),
    ));
    let refiner = dir.path().join("refiner");
    ok(&train_semantic(
        dir.path(),
        "base",
        &semantic_config(&refiner, 2, 5e-4, 0, 0, ""),
    ));
    let base = dir.path().join("base/semantic_dit.safetensors");

    // One step at a learning rate of ~1e-12, with another seed, on another world's pool: the
    // weights and the z_sem statistics stay the base run's (the new pool's statistics differ).
    let from = format!("init_from = \"{}\"", dir.path().join("base").display());
    let tuned = ok(&train_semantic(
        dir.path(),
        "tuned",
        &semantic_config(&refiner, 2, 1e-9, 7, 1, &from),
    ));
    assert!(tuned.contains("semantic_dit initialised from"), "{tuned}");
    let tuned_file = dir.path().join("tuned/semantic_dit.safetensors");
    assert!(max_diff(&weights(&base), &weights(&tuned_file)) < 1e-6);
    assert_eq!(stored_config(&base), stored_config(&tuned_file));
    // Without init_from the same run is its own seed's init in its own pool's space.
    ok(&train_semantic(
        dir.path(),
        "fresh",
        &semantic_config(&refiner, 2, 1e-9, 7, 1, ""),
    ));
    let fresh = dir.path().join("fresh/semantic_dit.safetensors");
    assert!(max_diff(&weights(&base), &weights(&fresh)) > 1e-2);
    assert_ne!(
        stored_config(&base)["z_mean"],
        stored_config(&fresh)["z_mean"]
    );

    // Another architecture with tensors of the same shapes is refused by name, and so is a
    // setting that only means something for stage 2.
    let other = train_semantic(
        dir.path(),
        "other",
        &semantic_config(&refiner, 4, 5e-4, 7, 0, &from),
    );
    refused(&other, "another config");
    let mlp = train_semantic(
        dir.path(),
        "mlp",
        &semantic_config(
            &refiner,
            2,
            5e-4,
            7,
            0,
            &format!("{from}\ninit_compressor = false"),
        ),
    );
    refused(&mlp, "init_compressor applies to refiner runs only");

    // A deeper generator grows from the stored one: its blocks first, then identity blocks
    // (zero output projections), every other weight the stored one's.
    let grown = ok(&train_semantic(
        dir.path(),
        "grown",
        &semantic_config(&refiner, 2, 1e-9, 7, 1, &from).replace("layers = 1", "layers = 2"),
    ));
    assert!(grown.contains("grown from 1 to 2 layers"), "{grown}");
    let grown_file = dir.path().join("grown/semantic_dit.safetensors");
    assert_eq!(stored_config(&grown_file)["dit"]["num_layers"], 2);
    assert_grown_by_one_block(&base, &grown_file);

    // A text refiner is grafted onto a generator trained without one: every stored tensor
    // unchanged, the refiner's output projections zero (the identity), its config stored; a
    // fine-tune of that generator then loads the refiner's weights as they are.
    let refined_toml = semantic_config(&refiner, 2, 1e-9, 7, 1, &from)
        .replace("ffn = 32", "ffn = 32\ntext_refiner_layers = 1");
    let refined = ok(&train_semantic(dir.path(), "refined", &refined_toml));
    assert!(
        refined.contains("a text refiner of 1 blocks added"),
        "{refined}"
    );
    let refined_file = dir.path().join("refined/semantic_dit.safetensors");
    assert_eq!(stored_config(&refined_file)["text_refiner"]["layers"], 1);
    let base_weights: std::collections::HashMap<String, Vec<f32>> =
        weights(&base).into_iter().collect();
    let refined_weights = weights(&refined_file);
    let mut zero_outputs = 0;
    for (name, values) in &refined_weights {
        let largest = values.iter().fold(0f32, |m, x| m.max(x.abs()));
        match base_weights.get(name) {
            Some(stored) => {
                let diff: Vec<f32> = stored.iter().zip(values).map(|(a, b)| a - b).collect();
                assert!(diff.iter().all(|d| d.abs() < 1e-6), "{name}");
            }
            None => {
                assert!(
                    name.starts_with("text_refiner."),
                    "unexpected tensor {name}"
                );
                if name.contains("to_out") || name.contains("ffn_out") {
                    assert!(largest < 1e-6, "{name} is not zero");
                    zero_outputs += 1;
                }
            }
        }
    }
    assert_eq!(zero_outputs, 4, "to_out and ffn_out, weight and bias");
    assert_eq!(refined_weights.len(), base_weights.len() + 18);
    let from_refined = format!("init_from = \"{}\"", dir.path().join("refined").display());
    let again = ok(&train_semantic(
        dir.path(),
        "again",
        &refined_toml.replace(&from, &from_refined),
    ));
    assert!(!again.contains("text refiner of"), "{again}");
    assert!(
        max_diff(
            &refined_weights,
            &weights(&dir.path().join("again/semantic_dit.safetensors"))
        ) < 1e-6
    );
}

/// `grown` holds every tensor of `base` unchanged, and a second block whose output projections
/// are zero (an identity block).
fn assert_grown_by_one_block(base: &Path, grown: &Path) {
    let base_weights: std::collections::HashMap<String, Vec<f32>> =
        weights(base).into_iter().collect();
    let mut new_outputs = 0;
    for (name, values) in weights(grown) {
        let largest = |v: &[f32]| v.iter().fold(0f32, |m, x| m.max(x.abs()));
        match base_weights.get(&name) {
            Some(stored) => {
                let diff: Vec<f32> = stored.iter().zip(&values).map(|(a, b)| a - b).collect();
                assert!(largest(&diff) < 1e-6, "{name}");
            }
            None => {
                assert!(name.contains("blocks.1."), "unexpected tensor {name}");
                if name.contains("to_out") || name.contains("proj_out") {
                    assert!(largest(&values) < 1e-6, "{name} is not zero");
                    new_outputs += 1;
                }
            }
        }
    }
    // attn1.to_out, attn2.to_out and ffn.proj_out, weight and bias each.
    assert_eq!(new_outputs, 6);
}
