//! The crate's error type: every fallible operation returns [`DataError`]; nothing panics on bad
//! input.

use std::path::PathBuf;

use crate::prompt::ParseError;

/// Errors of the Shapes world, the datasets and the video writers.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("invalid video: {0}")]
    InvalidVideo(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the `ffmpeg` command-line tool was not found on PATH; install it (e.g. `apt-get install ffmpeg`) to read or write {what}"
    )]
    FfmpegMissing { what: &'static str },
    #[error("ffmpeg failed on {path} ({status}): {stderr}")]
    Ffmpeg {
        path: PathBuf,
        status: String,
        stderr: String,
    },
    #[error("{path}: PNG error: {message}")]
    Png { path: PathBuf, message: String },
    #[error("{path}: GIF error: {message}")]
    Gif { path: PathBuf, message: String },
    #[error("{path}:{line}: {message}")]
    CaptionLine {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}:{line}: video {video} does not exist")]
    MissingVideo {
        path: PathBuf,
        line: usize,
        video: PathBuf,
    },
    #[error("{path}: only {available} frames at the target fps, {needed} needed")]
    TooShort {
        path: PathBuf,
        available: usize,
        needed: usize,
    },
    #[error("caption: {0}")]
    Parse(#[from] ParseError),
    #[error("a loader worker stopped unexpectedly")]
    WorkerGone,
}

impl DataError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = DataError> = std::result::Result<T, E>;
