//! Issue 11: every bad input in the table of `docs/reliability.md`, run through the `semgen`
//! binary with the shipped model (or a copy of it with one file spoiled). Each case must exit
//! with status 1 (2 for a command line clap refuses), print the expected one-line message, never
//! panic or print a backtrace (`RUST_BACKTRACE=1` is set), and leave the output folder empty:
//! no video, no `.json` sidecar, no latents, no temp file.

use burn::backend::NdArray;
use semgen_core::checkpoint::{parse_safetensors, save_checkpoint, CheckpointMeta};
use semgen_core::tensor_io::{read_safetensors, write_safetensors, HostTensor};
use semgen_semantic_dit::SemanticDitConfig;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PROMPT: &str = "a large red circle moving left slowly on a navy background";

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../checkpoints/shapes-small")
}

fn semgen(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_semgen"));
    c.args(args).arg("--quiet").env("RUST_BACKTRACE", "1");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("semgen runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// One bad-input case: the exit status, the message, no panic or backtrace, and `watch` (the
/// output folder) left exactly as it was.
fn refused(args: &[&str], env: &[(&str, &str)], code: i32, message: &str, watch: &Path) {
    let before = listing(watch);
    let o = semgen(args, env);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
    assert!(
        err.contains(message),
        "{args:?}: expected '{message}' in: {err}"
    );
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    assert!(!err.contains("stack backtrace"), "{args:?}: {err}");
    assert_eq!(
        listing(watch),
        before,
        "{args:?} left files in {}",
        watch.display()
    );
    if code == 1 {
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.starts_with("error: "), "{err}");
    }
}

/// A scratch folder with an empty `out/` folder for the outputs.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("out")).unwrap();
        Self { dir }
    }
    fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }
    fn gif(&self) -> String {
        self.out().join("x.gif").to_str().unwrap().to_string()
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    /// A copy of the shipped model folder named `name`.
    fn model(&self, name: &str) -> PathBuf {
        let dst = self.path(name);
        std::fs::create_dir(&dst).unwrap();
        for e in std::fs::read_dir(shipped()).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
        }
        dst
    }
}

fn generate<'a>(model: &'a str, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "generate",
        "--prompt",
        PROMPT,
        "--checkpoint",
        model,
        "--out",
        out,
    ];
    v.extend_from_slice(extra);
    v
}

/// Rewrites the config JSON stored in a semgen checkpoint's header (the weights stay).
fn edit_config(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut meta = parse_safetensors(path).unwrap().metadata().clone();
    let mut config: serde_json::Value = serde_json::from_str(&meta["semgen.config"]).unwrap();
    edit(&mut config);
    meta.insert("semgen.config".into(), config.to_string());
    let tensors = read_safetensors(path).unwrap();
    write_safetensors(path, &tensors, Some(meta)).unwrap();
}

/// [`refused`] for `semgen generate` with the model folder `m` and no other options: exit
/// status 1 and `message`.
fn refused_model(m: &Path, gif: &str, message: &str, watch: &Path) {
    refused(&generate(model_str(m), gif, &[]), &[], 1, message, watch);
}

fn model_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn corrupt_truncated_and_empty_model_files_are_named() {
    let s = Scratch::new();
    let gif = s.gif();
    let out = s.out();
    let shipped_bytes = |f: &str| std::fs::read(shipped().join(f)).unwrap();

    let m = s.model("empty");
    std::fs::write(m.join("vae.safetensors"), b"").unwrap();
    refused_model(
        &m,
        &gif,
        "vae.safetensors is not a safetensors file: the file is empty",
        &out,
    );
    // `info` reads the same files.
    refused(
        &["info", "--checkpoint", model_str(&m)],
        &[],
        1,
        "vae.safetensors is not a safetensors file: the file is empty",
        &out,
    );

    let m = s.model("truncated");
    let b = shipped_bytes("refiner.safetensors");
    std::fs::write(m.join("refiner.safetensors"), &b[..b.len() / 2]).unwrap();
    refused_model(&m, &gif, "refiner.safetensors is truncated or corrupt: the tensor data is shorter than the header declares", &out);

    let m = s.model("header-cut");
    let b = shipped_bytes("text_encoder.safetensors");
    std::fs::write(m.join("text_encoder.safetensors"), &b[..100]).unwrap();
    refused_model(
        &m,
        &gif,
        "text_encoder.safetensors is truncated or corrupt: the header needs",
        &out,
    );

    // Bytes inside the JSON header overwritten.
    let m = s.model("corrupt-header");
    let mut b = shipped_bytes("semantic_dit.safetensors");
    b[20..60].fill(b'#');
    std::fs::write(m.join("semantic_dit.safetensors"), &b).unwrap();
    refused_model(
        &m,
        &gif,
        "semantic_dit.safetensors is not a safetensors file",
        &out,
    );

    let m = s.model("garbage");
    std::fs::write(
        m.join("compressor.safetensors"),
        b"this is not a checkpoint at all, just some text",
    )
    .unwrap();
    refused_model(
        &m,
        &gif,
        "compressor.safetensors is not a safetensors file: no JSON header after the length prefix",
        &out,
    );

    let m = s.model("missing-file");
    std::fs::remove_file(m.join("semantic_encoder.safetensors")).unwrap();
    refused_model(&m, &gif, "semantic_encoder.safetensors: missing", &out);

    let m = s.model("bad-settings");
    std::fs::write(m.join("model.json"), b"{\"frames\": 17,").unwrap();
    refused_model(
        &m,
        &gif,
        "model.json: not a valid model.json: EOF while parsing",
        &out,
    );

    let m = s.model("bad-tokenizer");
    std::fs::write(m.join("tokenizer.json"), b"[1, 2, 3]").unwrap();
    refused_model(&m, &gif, "tokenizer.json: ", &out);

    // The one-character corruption the config fuzzer found (the tokenizers crate panicked).
    let m = s.model("tokenizer-decoder");
    let text = std::fs::read_to_string(m.join("tokenizer.json")).unwrap();
    std::fs::write(
        m.join("tokenizer.json"),
        text.replace("\"decoder\": null", "\"decoder\": (null"),
    )
    .unwrap();
    refused_model(
        &m,
        &gif,
        "tokenizer.json: not valid JSON: expected value at line",
        &out,
    );

    // The second fuzz finding: a template naming an undefined special token (every encode
    // panicked inside the tokenizers crate).
    let m = s.model("tokenizer-template");
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(m.join("tokenizer.json")).unwrap()).unwrap();
    v["post_processor"]["single"][1]["SpecialToken"]["id"] = "<x>".into();
    std::fs::write(m.join("tokenizer.json"), v.to_string()).unwrap();
    refused_model(
        &m,
        &gif,
        "the tokenizers library cannot encode with it: no entry found for key",
        &out,
    );

    refused(
        &generate("/no/such/model", &gif, &[]),
        &[],
        1,
        "model folder /no/such/model does not exist",
        &out,
    );
}

#[test]
fn checkpoints_of_another_component_or_config_are_named_with_key_and_shapes() {
    let s = Scratch::new();
    let gif = s.gif();
    let out = s.out();

    let m = s.model("other-component");
    std::fs::copy(
        shipped().join("refiner.safetensors"),
        m.join("semantic_dit.safetensors"),
    )
    .unwrap();
    refused_model(&m, &gif, "semantic_dit.safetensors is a 'refiner' checkpoint, but a 'semantic_dit' checkpoint was expected", &out);

    // Weights of a model with another FFN width: the first mismatching key and both shapes.
    let m = s.model("other-ffn");
    edit_config(&m.join("refiner.safetensors"), |c| {
        c["dit"]["ffn_dim"] = 128.into()
    });
    refused_model(&m, &gif, "refiner.safetensors: shape mismatch for 'dit.blocks.0.ffn.proj_in.bias': the checkpoint has [256], the model expects [128]", &out);

    // Weights of a deeper model: the tensors without a place are named.
    let m = s.model("other-depth");
    edit_config(&m.join("semantic_dit.safetensors"), |c| {
        c["dit"]["num_layers"] = 3.into()
    });
    refused_model(
        &m,
        &gif,
        "unexpected tensor(s) not used by the model, e.g. [dit.blocks.3.",
        &out,
    );

    // A complete, valid semantic generator of another model (its text features are 32 wide):
    // every file loads on its own, but the components do not fit together.
    let m = s.model("other-model");
    let path = m.join("semantic_dit.safetensors");
    let mut config: SemanticDitConfig =
        serde_json::from_str(&parse_safetensors(&path).unwrap().metadata()["semgen.config"])
            .unwrap();
    config.dit.text_dim = 32;
    if let Some(refiner) = config.text_refiner.as_mut() {
        // The shipped generator's text refiner works at the text width too.
        refiner.dim = 32;
    }
    let module = config.init::<NdArray>(&Default::default()).unwrap();
    let meta = CheckpointMeta::new("semantic_dit", 1, serde_json::to_value(&config).unwrap());
    save_checkpoint(&module, &path, &[], &meta).unwrap();
    refused_model(&m, &gif, "semantic_dit.safetensors and text_encoder.safetensors do not fit together: the semantic generator reads 32-wide text features, the text encoder gives 64", &out);
}

#[test]
fn configs_and_requests_that_cannot_work_are_refused() {
    let s = Scratch::new();
    let gif = s.gif();
    let out = s.out();

    // Width not divisible by the heads.
    let m = s.model("heads");
    edit_config(&m.join("semantic_encoder.safetensors"), |c| {
        c["num_heads"] = 3.into()
    });
    refused_model(
        &m,
        &gif,
        "hidden_size 128 is not divisible by num_heads 3",
        &out,
    );

    // A head dimension whose 3D RoPE axes cannot all be even (31 = 11 + 10 + 10).
    let m = s.model("rope");
    edit_config(&m.join("refiner.safetensors"), |c| {
        c["dit"]["attention_head_dim"] = 31.into()
    });
    refused_model(&m, &gif, "refiner.safetensors holds a refiner config that cannot be used: invalid config: RoPE axes [11, 10, 10] must all be even", &out);

    // Absurd sizes in a header config (a corrupt or hand-edited header) are refused before the
    // model is built: building it would try to allocate them and abort the process.
    let m = s.model("huge");
    edit_config(&m.join("refiner.safetensors"), |c| {
        c["dit"]["ffn_dim"] = (1u64 << 34).into()
    });
    refused_model(&m, &gif, "refiner.safetensors holds a refiner config that cannot be used: it describes a model of at least", &out);
    let m = s.model("huge-vae");
    edit_config(&m.join("vae.safetensors"), |c| {
        c["base_dim"] = (1u64 << 40).into()
    });
    refused_model(
        &m,
        &gif,
        "values: the config does not match these weights",
        &out,
    );

    // Latent statistics of the wrong length (were silently ignored before).
    let m = s.model("z-stats");
    edit_config(&m.join("semantic_dit.safetensors"), |c| {
        c["z_std"] = serde_json::json!([1.0, 1.0, 1.0])
    });
    refused_model(
        &m,
        &gif,
        "z_mean/z_std have 8/3 entries; both must be empty or have in_channels = 8",
        &out,
    );

    // model.json values the pipeline divides by (frame_stride 0 divided by zero before).
    let m = s.model("stride");
    let mut settings: serde_json::Value =
        serde_json::from_slice(&std::fs::read(m.join("model.json")).unwrap()).unwrap();
    settings["frame_stride"] = 0.into();
    std::fs::write(m.join("model.json"), settings.to_string()).unwrap();
    refused_model(
        &m,
        &gif,
        "not a valid model.json: frame_stride must be at least 1",
        &out,
    );

    // A guidance schedule whose interval is reversed (session 31's model.json keys).
    let m = s.model("schedule");
    let mut settings: serde_json::Value =
        serde_json::from_slice(&std::fs::read(m.join("model.json")).unwrap()).unwrap();
    settings["refiner_guidance_schedule"] = serde_json::json!({"sigma_min": 0.9, "sigma_max": 0.1});
    std::fs::write(m.join("model.json"), settings.to_string()).unwrap();
    refused_model(
        &m,
        &gif,
        "not a valid model.json: refiner_guidance_schedule: invalid config: the guidance interval must satisfy",
        &out,
    );

    // A timestep shift so large that the σ schedule goes flat in f32 (found by the property test
    // of the samplers).
    let m = s.model("shift");
    let mut settings: serde_json::Value =
        serde_json::from_slice(&std::fs::read(m.join("model.json")).unwrap()).unwrap();
    settings["shift"] = 10000.0.into();
    std::fs::write(m.join("model.json"), settings.to_string()).unwrap();
    refused_model(
        &m,
        &gif,
        "invalid sampling settings: invalid config: sampler shift 10000 is above 100",
        &out,
    );

    // Requests (T = 18, height 40 and zero steps are in tests/cli.rs).
    let ck = shipped();
    let ck = model_str(&ck);
    for (extra, message) in [
        (
            &["--frames", "0"][..],
            "0 frames: the VAE needs 1 + 4k frames",
        ),
        (
            &["--width", "50"],
            "64x50: height and width must be positive multiples of 16",
        ),
        (
            &["--height", "0"],
            "0x64: height and width must be positive multiples of 16",
        ),
        (
            &["--steps", "1001"],
            "1001 sampling steps exceed the 1000 training timesteps",
        ),
        (
            &["--guidance=-1"],
            "guidance must be a non-negative number, got -1",
        ),
        (
            &["--guidance=NaN"],
            "guidance must be a non-negative number, got NaN",
        ),
        (
            &["--semantic-guidance=-2"],
            "guidance must be a non-negative number, got -2",
        ),
        (
            &["--semantic-noise=-0.1"],
            "semantic_noise must be a non-negative number, got -0.1",
        ),
        (
            &["--semantic-noise=inf"],
            "semantic_noise must be a non-negative number, got inf",
        ),
    ] {
        refused(&generate(ck, &gif, extra), &[], 1, message, &out);
    }
    let story = s.path("story.txt");
    std::fs::write(&story, format!("{PROMPT}\n{PROMPT}\n{PROMPT}\n")).unwrap();
    refused(
        &[
            "generate",
            "--prompt-file",
            story.to_str().unwrap(),
            "--frames",
            "9",
            "--checkpoint",
            ck,
            "--out",
            &gif,
        ],
        &[],
        1,
        "a story of 3 segments needs at least 13 frames, got 9",
        &out,
    );
}

#[test]
fn prompts_the_model_cannot_read_are_refused() {
    let s = Scratch::new();
    let gif = s.gif();
    let out = s.out();
    let ck = shipped();
    let ck = model_str(&ck);
    let prompt = |p: &'static str| -> Vec<String> {
        ["generate", "--prompt", p, "--checkpoint", ck, "--out", &gif]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    let run = |v: Vec<String>, message: &str| {
        let refs: Vec<&str> = v.iter().map(String::as_str).collect();
        refused(&refs, &[], 1, message, &out);
    };
    run(prompt(""), "the prompt is empty");
    run(
        prompt("a large red circle 🦄 on a navy background"),
        "segment 1 of the prompt has words this model's tokenizer does not know: [\"🦄\"]",
    );
    run(
        prompt("a large red circle moving left slowly on a navy background, très bien"),
        "does not know: [\",\", \"très\", \"bien\"]",
    );

    let file = |name: &str, bytes: &[u8]| -> String {
        let p = s.path(name);
        std::fs::write(&p, bytes).unwrap();
        p.to_str().unwrap().to_string()
    };
    let story = |path: &str| -> Vec<String> {
        [
            "generate",
            "--prompt-file",
            path,
            "--checkpoint",
            ck,
            "--out",
            &gif,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    run(story(&file("empty.txt", b"")), "the prompt is empty");
    run(
        story(&file("blank.txt", b"\n  \n\n")),
        "the prompt is empty",
    );
    run(
        story(&file("first.txt", format!("\n{PROMPT}\n").as_bytes())),
        "segment 1 of the prompt is empty",
    );
    run(
        story(&file(
            "second.txt",
            format!("{PROMPT}\na blue unicorn\n").as_bytes(),
        )),
        "segment 2 of the prompt has words this model's tokenizer does not know: [\"unicorn\"]",
    );
    run(
        story(&file("latin1.txt", b"a large red circle caf\xe9\n")),
        "cannot read prompt file",
    );
    run(
        story(s.path("no-such-story.txt").to_str().unwrap()),
        "cannot read prompt file",
    );
}

#[test]
fn unwritable_outputs_are_refused_before_any_work() {
    let s = Scratch::new();
    let out = s.out();
    let ck = shipped();
    let ck = model_str(&ck);

    let missing = out.join("no/such/folder/x.gif");
    refused(
        &generate(ck, missing.to_str().unwrap(), &[]),
        &[],
        1,
        "/no/such/folder does not exist",
        &out,
    );

    // A folder that is a regular file: refused even for root, who ignores permissions.
    let file = out.join("file.txt");
    std::fs::write(&file, b"x").unwrap();
    let under_file = file.join("x.gif");
    refused(
        &generate(ck, under_file.to_str().unwrap(), &[]),
        &[],
        1,
        "file.txt is a file, not a folder",
        &out,
    );
    std::fs::remove_file(&file).unwrap();

    // A read-only folder (mode 0555). Root writes into it anyway, so there the CLI cannot
    // refuse and the assertion is skipped with a note; /proc below covers root.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let ro = s.path("read-only");
        std::fs::create_dir(&ro).unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        let root_writes = std::fs::write(ro.join("probe"), b"x").is_ok();
        if root_writes {
            let _ = std::fs::remove_file(ro.join("probe"));
            eprintln!(
                "note: writing into a mode-0555 folder succeeded (running as root), so the \
                 read-only-folder case is checked with /proc and a file-as-folder instead"
            );
        } else {
            refused(
                &generate(ck, ro.join("x.gif").to_str().unwrap(), &[]),
                &[],
                1,
                "read-only is not writable",
                &ro,
            );
        }
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    // A folder no one can create files in, root included.
    #[cfg(target_os = "linux")]
    if Path::new("/proc").is_dir() {
        refused(
            &generate(ck, "/proc/semgen-reliability-test.gif", &[]),
            &[],
            1,
            "output folder /proc is not writable",
            &out,
        );
        assert!(!Path::new("/proc/semgen-reliability-test.gif.json").exists());
    }

    // An output of the wrong kind: a folder where a GIF goes, a file where PNG frames go.
    let folder = out.join("clip.gif");
    std::fs::create_dir(&folder).unwrap();
    refused(
        &generate(ck, folder.to_str().unwrap(), &[]),
        &[],
        1,
        "clip.gif is a folder; a .gif or .mp4 output must be a file",
        &out,
    );
    std::fs::remove_dir(&folder).unwrap();
    let frames = out.join("frames");
    std::fs::write(&frames, b"x").unwrap();
    refused(
        &generate(ck, frames.to_str().unwrap(), &[]),
        &[],
        1,
        "without a .gif or .mp4 extension the output is a folder of PNG frames",
        &out,
    );
    std::fs::remove_file(&frames).unwrap();

    let dotdot = out.join("sub").join("..");
    refused(
        &generate(ck, dotdot.to_str().unwrap(), &[]),
        &[],
        1,
        "has no file name",
        &out,
    );

    // MP4 without ffmpeg: refused before generating, so no latents or sidecar either.
    let mp4 = out.join("x.mp4");
    refused(
        &generate(ck, mp4.to_str().unwrap(), &[]),
        &[("SEMGEN_FFMPEG", "/nonexistent/semgen-no-ffmpeg")],
        1,
        "needs ffmpeg, which cannot be run here",
        &out,
    );

    // `decode` checks its output the same way, before reading anything.
    let lat = s.path("x.latents.safetensors");
    std::fs::write(&lat, b"").unwrap();
    refused(
        &[
            "decode",
            "--latents",
            lat.to_str().unwrap(),
            "--checkpoint",
            ck,
            "--out",
            missing.to_str().unwrap(),
        ],
        &[],
        1,
        "/no/such/folder does not exist",
        &out,
    );
}

#[test]
fn devices_that_are_not_compiled_in_or_unknown_are_refused() {
    let s = Scratch::new();
    let gif = s.gif();
    let out = s.out();
    let ck = shipped();
    let ck = model_str(&ck);
    #[cfg(not(feature = "cuda"))]
    refused(
        &generate(ck, &gif, &["--device", "cuda:1"]),
        &[],
        1,
        "device 'cuda:1' is not compiled into this binary: rebuild with `--features cuda`",
        &out,
    );
    #[cfg(not(feature = "wgpu"))]
    refused(
        &generate(ck, &gif, &["--device", "wgpu"]),
        &[],
        1,
        "device 'wgpu:0' is not compiled into this binary: rebuild with `--features wgpu`",
        &out,
    );
    // Not a device at all: a usage error (status 2) from the argument parser.
    for bad in ["tpu", "cuda:x", "cpu:1"] {
        refused(
            &generate(ck, &gif, &["--device", bad]),
            &[],
            2,
            &format!("unknown device '{bad}'"),
            &out,
        );
    }
}

/// With the `wgpu` backend compiled in (`cargo test -p semgen-pipeline --features wgpu`), a
/// machine without a usable adapter is a clear error. No Vulkan driver is offered here.
#[cfg(feature = "wgpu")]
#[test]
fn a_compiled_in_device_that_is_not_present_is_refused() {
    let s = Scratch::new();
    let gif = s.gif();
    let out = s.out();
    let ck = shipped();
    refused(
        &generate(model_str(&ck), &gif, &["--device", "wgpu"]),
        &[
            ("WGPU_BACKEND", "vulkan"),
            ("VK_ICD_FILENAMES", "/nonexistent/icd.json"),
            ("VK_DRIVER_FILES", "/nonexistent/icd.json"),
        ],
        1,
        "device 'wgpu:0' is not available on this machine",
        &out,
    );
}

#[test]
fn decode_refuses_bad_latents() {
    let s = Scratch::new();
    let gif = s.gif();
    let out = s.out();
    let ck = shipped();
    let ck = model_str(&ck);
    let decode = |lat: &Path, message: &str| {
        refused(
            &[
                "decode",
                "--latents",
                lat.to_str().unwrap(),
                "--checkpoint",
                ck,
                "--out",
                &gif,
            ],
            &[],
            1,
            message,
            &out,
        )
    };
    let latents = |name: &str, key: &str, shape: Vec<usize>, fill: f32| -> PathBuf {
        let p = s.path(name);
        let n = shape.iter().product();
        let t = BTreeMap::from([(key.to_string(), HostTensor::f32(shape, vec![fill; n]))]);
        write_safetensors(&p, &t, None).unwrap();
        p
    };
    decode(&s.path("missing.safetensors"), "checkpoint file not found");
    let empty = s.path("empty.safetensors");
    std::fs::write(&empty, b"").unwrap();
    decode(&empty, "is not a safetensors file: the file is empty");
    let good = latents("good.safetensors", "latents", vec![1, 8, 2, 8, 8], 0.0);
    let b = std::fs::read(&good).unwrap();
    let cut = s.path("cut.safetensors");
    std::fs::write(&cut, &b[..b.len() - 10]).unwrap();
    decode(&cut, "is truncated or corrupt");
    decode(
        &latents("other.safetensors", "z_sem", vec![1, 8, 2, 8, 8], 0.0),
        "holds no 'latents' tensor",
    );
    let shape_msg = "expected [1, channels, frames, height, width] with every size positive";
    decode(
        &latents("rank.safetensors", "latents", vec![8, 2, 8, 8], 0.0),
        shape_msg,
    );
    decode(
        &latents("zero.safetensors", "latents", vec![1, 8, 0, 8, 8], 0.0),
        shape_msg,
    );
    decode(
        &latents("zero-w.safetensors", "latents", vec![1, 8, 2, 8, 0], 0.0),
        shape_msg,
    );
    decode(
        &latents("batch.safetensors", "latents", vec![2, 8, 2, 8, 8], 0.0),
        shape_msg,
    );
    decode(
        &latents("channels.safetensors", "latents", vec![1, 16, 2, 8, 8], 0.0),
        "the latents have 16 channels but this model's VAE has 8",
    );
    decode(
        &latents("nan.safetensors", "latents", vec![1, 8, 2, 8, 8], f32::NAN),
        "holds NaN or infinite values",
    );
}

/// The parameter floors that refuse absurd header configs before `init` are lower bounds of the
/// real models (the shipped weights load) and not vacuous (within a small factor of them).
#[test]
fn parameter_floors_bound_the_shipped_components() {
    use semgen_pipeline::model::{stored_config, ParamFloor};
    fn check<C: serde::de::DeserializeOwned + ParamFloor>(file: &str, component: &str) {
        let path = shipped().join(file);
        let config: C = stored_config(&path, component).unwrap();
        let values: u128 = parse_safetensors(&path)
            .unwrap()
            .tensors()
            .iter()
            .map(|(_, v)| v.shape().iter().product::<usize>() as u128)
            .sum();
        let floor = config.param_floor();
        eprintln!("{file}: floor {floor} of {values} values");
        assert!(
            floor <= values && floor * 3 >= values,
            "{file}: {floor} vs {values}"
        );
    }
    check::<semgen_vae::WanVaeConfig>("vae.safetensors", "wan_vae");
    check::<semgen_encoder::qwen_vision::QwenVisionConfig>(
        "semantic_encoder.safetensors",
        "semantic_encoder",
    );
    check::<semgen_encoder::compressor::CompressorConfig>("compressor.safetensors", "compressor");
    check::<semgen_encoder::umt5::Umt5Config>("text_encoder.safetensors", "text_encoder");
    check::<semgen_refiner::refiner::RefinerConfig>("refiner.safetensors", "refiner");
    check::<SemanticDitConfig>("semantic_dit.safetensors", "semantic_dit");
}
