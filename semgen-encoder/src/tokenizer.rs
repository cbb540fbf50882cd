//! Prompt tokenisation through the `tokenizers` crate from a `tokenizer.json` on disk (the
//! format of Hugging Face repos, e.g. Wan's umT5 `google/umt5-xxl` tokenizer), and the Shapes
//! world's word-level tokenizer built from the caption grammar.
//!
//! Behaviour at the edges, matching Wan's pipeline (`tokenizer(…, truncation=True,
//! max_length=L, add_special_tokens=True)`) where it is defined and erroring where it is not:
//! - a prompt longer than `L` tokens (end token included) is **truncated** to `L` (the end token
//!   kept), and a [`TextWarning::Truncated`] is returned beside the ids;
//! - an empty or whitespace-only prompt is an [`EncodeError::EmptyPrompt`] (upstream would encode
//!   just the end token, which conditions on nothing; semgen treats it as a caller bug. Use an
//!   explicit negative/unconditional embedding for CFG instead).

use crate::error::EncodeError;
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

/// Words of the Shapes caption grammar (`shared/specs/shapes-world.md`, Captions).
pub const SHAPES_WORDS: &[&str] = &[
    // glue
    "a",
    "and",
    "on",
    "background",
    "moving",
    "staying",
    "still",
    // sizes
    "small",
    "large",
    // colours
    "red",
    "green",
    "blue",
    "yellow",
    "cyan",
    "magenta",
    "orange",
    "white",
    // shapes
    "circle",
    "square",
    "triangle",
    "diamond",
    "ring",
    "cross",
    // directions
    "left",
    "right",
    "up",
    "down",
    // speeds
    "slowly",
    "quickly",
    // backgrounds
    "black",
    "gray",
    "navy",
    "brown",
    "beige",
];

/// Special tokens of the Shapes tokenizer, with T5's ids: pad 0, end 1, unknown 2.
pub const SHAPES_SPECIALS: [&str; 3] = ["<pad>", "</s>", "<unk>"];

/// The Shapes vocabulary in id order (specials first).
pub fn shapes_vocab() -> Vec<&'static str> {
    SHAPES_SPECIALS
        .iter()
        .chain(SHAPES_WORDS)
        .copied()
        .collect()
}

/// The `tokenizer.json` of the Shapes world: word level, lower-cased, split on whitespace and
/// punctuation, `</s>` appended as umT5 does. `assets/shapes-tokenizer.json` is this text.
pub fn shapes_tokenizer_json() -> String {
    use serde_json::{json, Map, Value};
    let vocab: Map<String, Value> = shapes_vocab()
        .iter()
        .enumerate()
        .map(|(i, w)| (w.to_string(), json!(i)))
        .collect();
    let added: Vec<Value> = SHAPES_SPECIALS
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json!({"id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                   "normalized": false, "special": true})
        })
        .collect();
    let seq = |id: &str| json!({"Sequence": {"id": id, "type_id": 0}});
    let eos = json!({"SpecialToken": {"id": "</s>", "type_id": 0}});
    let doc = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [seq("A"), eos.clone()],
            "pair": [seq("A"), eos.clone(), seq("B"), eos],
            "special_tokens": {"</s>": {"id": "</s>", "ids": [1], "tokens": ["</s>"]}}
        },
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"}
    });
    let mut s = serde_json::to_string_pretty(&doc).expect("a JSON value always serialises");
    s.push('\n');
    s
}

/// A non-fatal change made to a prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextWarning {
    /// Prompt `index` had `tokens` tokens (end token included) and was cut to `kept`.
    Truncated {
        index: usize,
        tokens: usize,
        kept: usize,
    },
}

impl fmt::Display for TextWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TextWarning::Truncated {
                index,
                tokens,
                kept,
            } => write!(
                f,
                "prompt {index} has {tokens} tokens, more than the text length; truncated to {kept}"
            ),
        }
    }
}

/// Token ids of a batch of prompts, unpadded, with any warnings.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBatch {
    pub ids: Vec<Vec<u32>>,
    pub warnings: Vec<TextWarning>,
}

impl TokenBatch {
    /// Real lengths (end token included).
    pub fn lengths(&self) -> Vec<usize> {
        self.ids.iter().map(Vec::len).collect()
    }

    /// `[B, len]` ids (right-padded with `pad_id`) and attention mask, row-major, as i64.
    pub fn padded(&self, len: usize, pad_id: u32) -> (Vec<i64>, Vec<i64>) {
        let mut ids = Vec::with_capacity(self.ids.len() * len);
        let mut mask = Vec::with_capacity(self.ids.len() * len);
        for row in &self.ids {
            for i in 0..len {
                ids.push(row.get(i).copied().unwrap_or(pad_id) as i64);
                mask.push((i < row.len()) as i64);
            }
        }
        (ids, mask)
    }
}

/// A `tokenizers` tokenizer with semgen's prompt rules.
#[derive(Clone)]
pub struct PromptTokenizer {
    inner: Tokenizer,
    pad_id: u32,
}

impl fmt::Debug for PromptTokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PromptTokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("pad_id", &self.pad_id)
            .finish()
    }
}

/// Why a tokenizer file could not be used.
#[derive(Debug, thiserror::Error)]
#[error("cannot load tokenizer {what}: {reason}")]
pub struct TokenizerError {
    pub what: String,
    pub reason: String,
}

impl PromptTokenizer {
    /// Reads a `tokenizer.json`.
    pub fn from_file(path: &Path) -> Result<Self, TokenizerError> {
        let text = std::fs::read_to_string(path).map_err(|e| TokenizerError {
            what: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::from_json(&text).map_err(|e| TokenizerError {
            what: path.display().to_string(),
            reason: e.reason,
        })
    }

    /// Parses `tokenizer.json` text. The pad id is that of `<pad>` (or `[PAD]`), else 0.
    ///
    /// The `tokenizers` crate panics on some malformed files (a syntax error inside `"decoder"`,
    /// found by `fuzz/fuzz_targets/config.rs`; a `Precompiled` normalizer without its charsmap):
    /// the text must be valid JSON first, and a panic inside the parser is an error too.
    pub fn from_json(text: &str) -> Result<Self, TokenizerError> {
        let err = |reason: String| TokenizerError {
            what: "tokenizer.json".into(),
            reason,
        };
        serde_json::from_str::<serde::de::IgnoredAny>(text)
            .map_err(|e| err(format!("not valid JSON: {e}")))?;
        let inner = semgen_core::guard::catch_panic_silently(|| Tokenizer::from_str(text))
            .map_err(|panic| err(format!("the tokenizers library cannot read it: {panic}")))?
            .map_err(|e| err(e.to_string()))?;
        // Some files parse but make every encode panic (a template naming a special token the
        // file does not define, found by fuzzing): refuse them here, while loading.
        if let Err(panic) = semgen_core::guard::catch_panic_silently(|| inner.encode("a", true)) {
            return Err(err(format!(
                "the tokenizers library cannot encode with it: {panic}"
            )));
        }
        let pad_id = inner
            .token_to_id("<pad>")
            .or_else(|| inner.token_to_id("[PAD]"))
            .unwrap_or(0);
        Ok(Self { inner, pad_id })
    }

    /// The Shapes world's word-level tokenizer (`assets/shapes-tokenizer.json`, embedded).
    pub fn shapes() -> Self {
        Self::from_json(include_str!("../assets/shapes-tokenizer.json"))
            .expect("the bundled Shapes tokenizer is valid")
    }

    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// The pieces of `prompt` that map to the unknown token (`<unk>` / `[UNK]`), in order; empty
    /// when the tokenizer has no unknown token or every word is known.
    pub fn unknown_words(&self, prompt: &str) -> Vec<String> {
        let Some(unk) = self
            .inner
            .token_to_id("<unk>")
            .or_else(|| self.inner.token_to_id("[UNK]"))
        else {
            return Vec::new();
        };
        let Ok(enc) = encode_guarded(&self.inner, prompt, false) else {
            return Vec::new();
        };
        enc.get_ids()
            .iter()
            .zip(enc.get_offsets())
            .filter(|(&id, _)| id == unk)
            .map(|(_, &(a, b))| prompt.get(a..b).unwrap_or("?").to_string())
            .collect()
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Tokenises prompts with special tokens, truncating each to `max_len` tokens (with a
    /// warning). Errors on no prompts, an empty prompt, `max_len < 2`, or a tokenizer failure.
    pub fn tokenize(&self, prompts: &[&str], max_len: usize) -> Result<TokenBatch, EncodeError> {
        if max_len < 2 {
            return Err(EncodeError::TextLength(max_len));
        }
        if prompts.is_empty() {
            return Err(EncodeError::NoPrompts);
        }
        let mut truncating = self.inner.clone();
        truncating
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| EncodeError::Tokenizer {
                index: 0,
                reason: e.to_string(),
            })?;
        let mut batch = TokenBatch {
            ids: Vec::with_capacity(prompts.len()),
            warnings: Vec::new(),
        };
        for (index, prompt) in prompts.iter().enumerate() {
            if prompt.trim().is_empty() {
                return Err(EncodeError::EmptyPrompt { index });
            }
            let fail = |reason: String| EncodeError::Tokenizer { index, reason };
            let full = encode_guarded(&self.inner, prompt, true).map_err(fail)?;
            let ids = if full.get_ids().len() > max_len {
                let cut = encode_guarded(&truncating, prompt, true).map_err(fail)?;
                batch.warnings.push(TextWarning::Truncated {
                    index,
                    tokens: full.get_ids().len(),
                    kept: cut.get_ids().len(),
                });
                cut.get_ids().to_vec()
            } else {
                full.get_ids().to_vec()
            };
            batch.ids.push(ids);
        }
        Ok(batch)
    }
}

/// `Tokenizer::encode` with a panic inside the `tokenizers` crate turned into an error.
fn encode_guarded(
    tokenizer: &Tokenizer,
    text: &str,
    special_tokens: bool,
) -> Result<tokenizers::Encoding, String> {
    semgen_core::guard::catch_panic_silently(|| tokenizer.encode(text, special_tokens))
        .map_err(|panic| format!("the tokenizers library failed: {panic}"))?
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_asset_is_the_generated_grammar_tokenizer() {
        let asset = include_str!("../assets/shapes-tokenizer.json");
        assert_eq!(
            asset,
            shapes_tokenizer_json(),
            "regenerate assets/shapes-tokenizer.json"
        );
    }

    #[test]
    fn caption_words_map_to_their_ids_with_end_token() {
        let tok = PromptTokenizer::shapes();
        let vocab = shapes_vocab();
        assert_eq!(tok.vocab_size(), vocab.len());
        let caption = "a large red circle moving left slowly and a small cyan cross staying still on a navy background";
        let batch = tok.tokenize(&[caption], 64).unwrap();
        let words: Vec<&str> = batch.ids[0].iter().map(|&i| vocab[i as usize]).collect();
        let mut want: Vec<&str> = caption.split(' ').collect();
        want.push("</s>");
        assert_eq!(words, want);
        assert!(batch.warnings.is_empty());
        // Unknown words and punctuation become <unk>, case is folded.
        let b = tok.tokenize(&["A Purple circle."], 64).unwrap();
        assert_eq!(b.ids[0], vec![3, 2, 20, 2, 1]);
        assert_eq!(tok.unknown_words("A Purple circle."), vec!["Purple", "."]);
        assert!(tok.unknown_words("a red circle").is_empty());
    }

    #[test]
    fn long_prompt_is_truncated_keeping_the_end_token() {
        let tok = PromptTokenizer::shapes();
        let b = tok
            .tokenize(&["a red circle staying still", "a red circle"], 4)
            .unwrap();
        assert_eq!(b.ids[0].len(), 4);
        assert_eq!(*b.ids[0].last().unwrap(), 1, "end token kept");
        assert_eq!(b.ids[1].len(), 4);
        assert_eq!(
            b.warnings,
            vec![TextWarning::Truncated {
                index: 0,
                tokens: 6,
                kept: 4
            }]
        );
        assert!(b.warnings[0].to_string().contains("truncated"));
    }

    #[test]
    fn empty_inputs_are_errors() {
        let tok = PromptTokenizer::shapes();
        assert!(matches!(
            tok.tokenize(&["a red circle", "  "], 8),
            Err(EncodeError::EmptyPrompt { index: 1 })
        ));
        assert!(matches!(tok.tokenize(&[], 8), Err(EncodeError::NoPrompts)));
        assert!(matches!(
            tok.tokenize(&["a"], 1),
            Err(EncodeError::TextLength(1))
        ));
    }

    #[test]
    fn padding_and_mask() {
        let b = TokenBatch {
            ids: vec![vec![5, 1], vec![4, 5, 6, 1]],
            warnings: vec![],
        };
        let (ids, mask) = b.padded(4, 0);
        assert_eq!(ids, vec![5, 1, 0, 0, 4, 5, 6, 1]);
        assert_eq!(mask, vec![1, 1, 0, 0, 1, 1, 1, 1]);
    }

    #[test]
    fn bad_tokenizer_file_is_an_error() {
        assert!(PromptTokenizer::from_json("{not json").is_err());
        assert!(PromptTokenizer::from_file(Path::new("/nonexistent/tokenizer.json")).is_err());
    }
}
