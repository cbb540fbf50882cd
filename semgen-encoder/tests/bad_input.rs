//! Bad input never panics: each case is a typed error (or, for an over-long prompt, a documented
//! truncation with a warning).

use burn::backend::NdArray;
use burn::prelude::*;
use burn::tensor::Distribution;
use semgen_encoder::qwen_vision::{patchify_frames, QwenVisionConfig};
use semgen_encoder::text_encoder::TextEncoder;
use semgen_encoder::tokenizer::{PromptTokenizer, TextWarning};
use semgen_encoder::umt5::Umt5Config;
use semgen_encoder::EncodeError;

type B = NdArray;

fn clip(t: usize, h: usize, w: usize) -> Tensor<B, 5> {
    Tensor::random(
        [1, 3, t, h, w],
        Distribution::Uniform(-1.0, 1.0),
        &Default::default(),
    )
}

fn text(len: usize) -> TextEncoder<B> {
    let model = Umt5Config::shapes().init::<B>(&Default::default()).unwrap();
    TextEncoder::new(PromptTokenizer::shapes(), model, len).unwrap()
}

#[test]
fn empty_prompt_is_an_error() {
    let enc = text(16);
    for p in ["", "   ", "\n\t"] {
        let err = enc.encode(&["a red circle", p]).unwrap_err();
        assert!(
            matches!(err, EncodeError::EmptyPrompt { index: 1 }),
            "{err}"
        );
        assert!(err.to_string().contains("empty"));
    }
    assert!(matches!(enc.encode(&[]), Err(EncodeError::NoPrompts)));
}

#[test]
fn over_long_prompt_is_truncated_with_a_warning() {
    let enc = text(8);
    let long = "a large red circle moving left slowly and a small cyan cross staying still on a navy background";
    let out = enc.encode(&[long, "a blue ring"]).unwrap();
    assert_eq!(out.hidden.dims(), [2, 8, 64]);
    assert_eq!(out.lengths, vec![8, 4]);
    assert_eq!(
        out.warnings,
        vec![TextWarning::Truncated {
            index: 0,
            tokens: 19,
            kept: 8
        }]
    );
}

#[test]
fn clip_shorter_than_one_temporal_patch_is_an_error() {
    let model = QwenVisionConfig::tiny()
        .init::<B>(&Default::default())
        .unwrap();
    let err = model.encode_clip(clip(1, 8, 8)).unwrap_err();
    assert!(
        matches!(
            err,
            EncodeError::ClipTooShort {
                frames: 1,
                needed: 2
            }
        ),
        "{err}"
    );
    let err = model.encode_clip(clip(0, 8, 8)).unwrap_err();
    assert!(matches!(err, EncodeError::EmptyClip), "{err}");
    // A single frame is still encodable as an image (repeated to two frames, as upstream).
    let image = Tensor::<B, 4>::zeros([1, 3, 8, 8], &Default::default());
    let (p, grid) = patchify_frames(&model.config, image).unwrap();
    assert_eq!(grid, [1, 4, 4]);
    assert_eq!(p.dims(), [16, 24]);
}

#[test]
fn frame_size_not_divisible_by_patch_times_merge_is_an_error() {
    let model = QwenVisionConfig::tiny()
        .init::<B>(&Default::default())
        .unwrap();
    for (h, w) in [(6, 8), (8, 10), (2, 8)] {
        let err = model.encode_clip(clip(2, h, w)).unwrap_err();
        assert!(
            matches!(err, EncodeError::FrameSize { multiple: 4, .. }),
            "{h}x{w}: {err}"
        );
    }
    let wrong_channels = Tensor::<B, 5>::zeros([1, 4, 2, 8, 8], &Default::default());
    assert!(matches!(
        model.encode_clip(wrong_channels),
        Err(EncodeError::Channels {
            expected: 3,
            found: 4
        })
    ));
}

#[test]
fn packed_rows_that_disagree_with_their_grid_are_an_error() {
    let d = Default::default();
    let model = QwenVisionConfig::tiny().init::<B>(&d).unwrap();
    let x = Tensor::<B, 2>::zeros([30, 24], &d);
    assert!(matches!(
        model.forward(x.clone(), &[[2, 4, 4]]),
        Err(EncodeError::PackedInput(_))
    ));
    assert!(matches!(
        model.forward(x.clone(), &[[1, 5, 6]]),
        Err(EncodeError::PackedInput(_))
    ));
    assert!(matches!(
        model.forward(x.clone(), &[]),
        Err(EncodeError::PackedInput(_))
    ));
    let wrong_width = Tensor::<B, 2>::zeros([32, 20], &d);
    assert!(matches!(
        model.forward(wrong_width, &[[2, 4, 4]]),
        Err(EncodeError::PackedInput(_))
    ));
}

/// Regressions (issue 11, `fuzz/regressions/config/`): the `tokenizers` crate panicked on a
/// `tokenizer.json` with a syntax error inside `"decoder"` (`crash-8f7ea1d8…`), panics on a
/// `Precompiled` normalizer without its charsmap, and on encoding with a template that names an
/// undefined special token (`crash-d5a6185e…`). All are errors now, and nothing is printed.
#[test]
fn malformed_tokenizer_files_are_errors_not_panics() {
    let crash = include_str!("data/fuzz-crash-tokenizer-decoder.json");
    let shapes = include_str!("../assets/shapes-tokenizer.json").to_string();
    assert!(shapes.contains("\"decoder\": null"));
    let one_char = shapes.replace("\"decoder\": null", "\"decoder\": (null");
    for (text, message) in [
        (crash, "not valid JSON"),
        (one_char.as_str(), "not valid JSON"),
        (
            r#"{"model": {"type": "WordLevel", "vocab": {"a": 0}, "unk_token": "a"}, "normalizer": {"type": "Precompiled"}}"#,
            "the tokenizers library cannot read it",
        ),
    ] {
        let err = PromptTokenizer::from_json(text).unwrap_err();
        assert!(err.to_string().contains(message), "{err}");
    }
    assert!(PromptTokenizer::from_json(&shapes).is_ok());

    // Regression (`crash-d5a6185e…`): a template naming a special token the file does not
    // define parses, but every encode panicked inside `tokenizers`. Refused while loading now.
    let crash = include_str!("data/fuzz-crash-tokenizer-template.json");
    let mut v: serde_json::Value = serde_json::from_str(&shapes).unwrap();
    v["post_processor"]["single"][1]["SpecialToken"]["id"] = "<x>".into();
    for text in [crash.to_string(), v.to_string()] {
        let err = PromptTokenizer::from_json(&text).unwrap_err();
        assert!(
            err.to_string()
                .contains("the tokenizers library cannot encode with it: no entry found for key"),
            "{err}"
        );
    }
}
