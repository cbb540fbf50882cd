//! Video decoding and encoding through the `ffmpeg` command-line tool.
//!
//! semgen links no codec library: it spawns `ffmpeg` and exchanges raw `rgb24` frames over
//! pipes. Resizing, centre-cropping and frame-rate resampling of decoded videos happen inside
//! ffmpeg's filter graph, so a long high-resolution video never has to fit in memory.
//! `$SEMGEN_FFMPEG` names another ffmpeg binary.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;

use crate::error::{DataError, Result};
use crate::video::Video;

/// How to decode a video.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeOptions {
    /// Output height; the frame is scaled to cover `height × width` and centre-cropped.
    pub height: usize,
    /// Output width.
    pub width: usize,
    /// Resample to this frame rate (duplicating or dropping frames); `None` keeps the source's.
    pub fps: Option<f64>,
    /// Stop after this many frames.
    pub max_frames: Option<usize>,
}

/// The program spawned: `$SEMGEN_FFMPEG` if set, else `ffmpeg` from `PATH`.
fn ffmpeg_command() -> Command {
    Command::new(std::env::var_os("SEMGEN_FFMPEG").unwrap_or_else(|| "ffmpeg".into()))
}

/// Whether `ffmpeg` can be spawned.
pub fn ffmpeg_available() -> bool {
    ffmpeg_command()
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn spawn(mut command: Command, what: &'static str, path: &Path) -> Result<Child> {
    command.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            DataError::FfmpegMissing { what }
        } else {
            DataError::io(path, e)
        }
    })
}

/// Collects a child's stderr on a thread, so that a chatty ffmpeg never blocks on a full pipe.
fn drain_stderr(child: &mut Child) -> thread::JoinHandle<String> {
    let stderr = child.stderr.take();
    thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut s) = stderr {
            let _ = s.read_to_string(&mut text);
        }
        text
    })
}

fn failure(path: &Path, status: std::process::ExitStatus, stderr: String) -> DataError {
    DataError::Ffmpeg {
        path: path.to_path_buf(),
        status: status.to_string(),
        stderr: stderr.trim().chars().take(2000).collect(),
    }
}

/// Decodes `path` into `u8` RGB frames at the requested size, frame rate and length.
pub fn decode_video(path: &Path, options: &DecodeOptions) -> Result<Video> {
    let (h, w) = (options.height, options.width);
    if h == 0 || w == 0 || h % 2 != 0 || w % 2 != 0 {
        return Err(DataError::Config(format!(
            "decode size must be positive and even, got {h}x{w}"
        )));
    }
    if !path.is_file() {
        return Err(DataError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such video file"),
        ));
    }
    let mut filters = Vec::new();
    if let Some(fps) = options.fps {
        if !(fps.is_finite() && fps > 0.0) {
            return Err(DataError::Config(format!(
                "fps must be positive, got {fps}"
            )));
        }
        filters.push(format!("fps={fps}"));
    }
    filters.push(format!(
        "scale={w}:{h}:force_original_aspect_ratio=increase:flags=bilinear"
    ));
    filters.push(format!("crop={w}:{h}"));
    let mut command = ffmpeg_command();
    command
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(path)
        .args(["-an", "-vf", &filters.join(",")]);
    if let Some(n) = options.max_frames {
        command.args(["-frames:v", &n.to_string()]);
    }
    command
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = spawn(command, "videos", path)?;
    let stderr = drain_stderr(&mut child);
    let mut bytes = Vec::new();
    if let Some(mut out) = child.stdout.take() {
        out.read_to_end(&mut bytes)
            .map_err(|e| DataError::io(path, e))?;
    }
    let status = child.wait().map_err(|e| DataError::io(path, e))?;
    let stderr = stderr.join().unwrap_or_default();
    if !status.success() {
        return Err(failure(path, status, stderr));
    }
    let frame = h * w * 3;
    if bytes.is_empty() || bytes.len() % frame != 0 {
        return Err(DataError::InvalidVideo(format!(
            "{}: ffmpeg returned {} bytes, not a whole number of {w}x{h} frames",
            path.display(),
            bytes.len()
        )));
    }
    Video::new(bytes.len() / frame, h, w, bytes)
}

/// Encodes `video` as H.264 (`yuv420p`) into `path` with the given CRF (0–51, lower is better;
/// 18 is visually lossless, 23 is ffmpeg's default). Not atomic: see `writers::write_mp4`.
pub(crate) fn encode_h264(video: &Video, path: &Path, fps: f64, crf: u8) -> Result<()> {
    if !(fps.is_finite() && fps > 0.0) {
        return Err(DataError::Config(format!(
            "fps must be positive, got {fps}"
        )));
    }
    if crf > 51 {
        return Err(DataError::Config(format!("crf must be 0..=51, got {crf}")));
    }
    if !video.height().is_multiple_of(2) || !video.width().is_multiple_of(2) {
        return Err(DataError::InvalidVideo(format!(
            "H.264 with yuv420p needs even sizes, got {}x{}",
            video.height(),
            video.width()
        )));
    }
    let mut command = ffmpeg_command();
    command
        .args([
            "-nostdin", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
        ])
        .args(["-s", &format!("{}x{}", video.width(), video.height())])
        .args(["-r", &fps.to_string(), "-i", "pipe:0"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "medium",
            "-crf",
            &crf.to_string(),
        ])
        .args([
            "-pix_fmt",
            "yuv420p",
            "-movflags",
            "+faststart",
            "-f",
            "mp4",
        ])
        .arg(path)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = spawn(command, "MP4 files", path)?;
    let stderr = drain_stderr(&mut child);
    let written = match child.stdin.take() {
        Some(mut stdin) => stdin.write_all(video.as_bytes()),
        None => Ok(()),
    };
    let status = child.wait().map_err(|e| DataError::io(path, e))?;
    let stderr = stderr.join().unwrap_or_default();
    if !status.success() {
        return Err(failure(path, status, stderr));
    }
    written.map_err(|e| DataError::io(path, e))
}
