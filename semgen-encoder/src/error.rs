//! The one error type of this crate's encode paths. Every bad input (empty prompt, clip too short,
//! frame size the patch grid does not divide, packed rows that disagree with their grid) is a
//! typed error here, checked on the host before any tensor work, so no bad input panics.

use semgen_core::checkpoint::LoadError;
use semgen_core::ConfigError;

/// Why an encoder could not run on its input.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error(
        "prompt {index} is empty (or only whitespace); give the text encoder at least one word"
    )]
    EmptyPrompt { index: usize },
    #[error("no prompts were given")]
    NoPrompts,
    #[error("the tokenizer failed on prompt {index}: {reason}")]
    Tokenizer { index: usize, reason: String },
    #[error("token id {id} of prompt {index} is outside the text encoder's vocabulary of {vocab} (tokenizer and model do not match)")]
    TokenOutOfVocab { index: usize, id: u32, vocab: usize },
    #[error("the text length must be at least 2 (one word plus the end token), got {0}")]
    TextLength(usize),
    #[error("the clip has no frames")]
    EmptyClip,
    #[error("the clip has {frames} frame(s), shorter than one temporal patch of {needed}; encode single frames as images instead")]
    ClipTooShort { frames: usize, needed: usize },
    #[error("frame size {height}x{width} is not divisible by patch·merge = {multiple}; resize or crop to multiples of {multiple}")]
    FrameSize {
        height: usize,
        width: usize,
        multiple: usize,
    },
    #[error("expected {expected} channels, got {found}")]
    Channels { expected: usize, found: usize },
    #[error("attribute labels do not fit the model's attribute head: {0}")]
    Labels(String),
    #[error("packed patches do not match their grids: {0}")]
    PackedInput(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Load(#[from] LoadError),
}
