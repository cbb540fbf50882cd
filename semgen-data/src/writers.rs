//! Video writers (PNG frames, animated GIF, H.264 MP4, contact sheets) and the PNG/GIF readers
//! that read them back.
//!
//! Every writer is atomic: it writes a temporary file (or folder) in the destination's own folder,
//! syncs it to disk and renames it over the destination, so a reader never sees half a video and a
//! crash leaves the old file in place.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};
use crate::ffmpeg;
use crate::video::Video;

/// The folder a path lives in (`.` for a bare file name).
fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn file_name(path: &Path) -> Result<String> {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| DataError::Config(format!("{} has no file name", path.display())))
}

/// Makes a completed rename durable (best effort: not every file system can sync a folder).
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Writes `path` atomically: `write` fills a temporary file in the same folder, which is synced
/// and renamed over `path`.
pub fn write_atomic(path: &Path, write: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
    let dir = parent_of(path);
    let name = file_name(path)?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(&dir)
        .map_err(|e| DataError::io(&dir, e))?;
    {
        let mut out = BufWriter::new(tmp.as_file());
        write(&mut out)?;
        out.flush().map_err(|e| DataError::io(path, e))?;
    }
    tmp.as_file()
        .sync_all()
        .map_err(|e| DataError::io(path, e))?;
    // Temporary files are private (0600); the output is an ordinary file.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = tmp
            .as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644));
    }
    tmp.persist(path)
        .map_err(|e| DataError::io(path, e.error))?;
    sync_dir(&dir);
    Ok(())
}

fn png_error(path: &Path, e: impl std::fmt::Display) -> DataError {
    DataError::Png {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Encodes one `[H, W, 3]` RGB image as PNG.
fn encode_png(out: &mut dyn Write, path: &Path, h: usize, w: usize, rgb: &[u8]) -> Result<()> {
    let (w32, h32) = match (u32::try_from(w), u32::try_from(h)) {
        (Ok(w), Ok(h)) if rgb.len() == w as usize * h as usize * 3 => (w, h),
        _ => return Err(png_error(path, format!("bad {h}x{w} RGB image"))),
    };
    let mut encoder = png::Encoder::new(out, w32, h32);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|e| png_error(path, e))?;
    writer
        .write_image_data(rgb)
        .map_err(|e| png_error(path, e))?;
    writer.finish().map_err(|e| png_error(path, e))
}

/// Writes one `[H, W, 3]` RGB image as a PNG file, atomically.
pub fn write_png(path: &Path, height: usize, width: usize, rgb: &[u8]) -> Result<()> {
    write_atomic(path, |out| encode_png(out, path, height, width, rgb))
}

/// Reads a PNG file (any bit depth or colour type) as `(height, width, RGB bytes)`.
pub fn read_png(path: &Path) -> Result<(usize, usize, Vec<u8>)> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut decoder = png::Decoder::new(BufReader::new(file));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().map_err(|e| png_error(path, e))?;
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader
        .next_frame(&mut buf)
        .map_err(|e| png_error(path, e))?;
    let (h, w) = (info.height as usize, info.width as usize);
    let pixels = &buf[..info.buffer_size()];
    let rgb = match info.color_type {
        png::ColorType::Rgb => pixels.to_vec(),
        png::ColorType::Rgba => pixels
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect(),
        png::ColorType::Grayscale => pixels.iter().flat_map(|&g| [g, g, g]).collect(),
        png::ColorType::GrayscaleAlpha => pixels
            .chunks_exact(2)
            .flat_map(|p| [p[0], p[0], p[0]])
            .collect(),
        png::ColorType::Indexed => {
            return Err(png_error(path, "palette was not expanded"));
        }
    };
    Ok((h, w, rgb))
}

/// Writes each frame as `dir/000000.png`, `dir/000001.png`, … (names sort in frame order).
///
/// The frames are written into a temporary folder next to `dir`, which then replaces `dir`. An
/// existing *file* at `dir` is an error (it is never replaced by a folder).
pub fn write_png_frames(video: &Video, dir: &Path) -> Result<()> {
    let parent = parent_of(dir);
    let name = file_name(dir)?;
    if dir.exists() && !dir.is_dir() {
        return Err(DataError::Config(format!(
            "{} is a file, not a folder of PNG frames; it is not replaced",
            dir.display()
        )));
    }
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .tempdir_in(&parent)
        .map_err(|e| DataError::io(&parent, e))?;
    for (t, frame) in video.frame_iter().enumerate() {
        let path = tmp.path().join(format!("{t:06}.png"));
        let file = File::create(&path).map_err(|e| DataError::io(&path, e))?;
        let mut out = BufWriter::new(&file);
        encode_png(&mut out, &path, video.height(), video.width(), frame)?;
        out.flush().map_err(|e| DataError::io(&path, e))?;
        drop(out);
        file.sync_all().map_err(|e| DataError::io(&path, e))?;
    }
    sync_dir(tmp.path());
    // A folder cannot be renamed over a non-empty one: move the old one aside first.
    let old = if dir.exists() {
        let old = tempfile::Builder::new()
            .prefix(&format!(".{name}.old."))
            .tempdir_in(&parent)
            .map_err(|e| DataError::io(&parent, e))?;
        let aside = old.path().join("frames");
        fs::rename(dir, &aside).map_err(|e| DataError::io(dir, e))?;
        Some(old)
    } else {
        None
    };
    let tmp_path = tmp.keep();
    if let Err(e) = fs::rename(&tmp_path, dir) {
        let _ = fs::remove_dir_all(&tmp_path);
        if let Some(old) = &old {
            let _ = fs::rename(old.path().join("frames"), dir);
        }
        return Err(DataError::io(dir, e));
    }
    sync_dir(&parent);
    drop(old); // deletes the previous frames
    Ok(())
}

/// Reads a folder of PNG frames, in file-name order, as a video.
pub fn read_png_frames(dir: &Path) -> Result<Video> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| DataError::io(dir, e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")))
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(DataError::InvalidVideo(format!(
            "{}: no PNG frames",
            dir.display()
        )));
    }
    let mut frames = Vec::with_capacity(paths.len());
    let mut size = None;
    for path in &paths {
        let (h, w, rgb) = read_png(path)?;
        if *size.get_or_insert((h, w)) != (h, w) {
            return Err(DataError::InvalidVideo(format!(
                "{}: {h}x{w} differs from the first frame",
                path.display()
            )));
        }
        frames.push(rgb);
    }
    let (h, w) = size.unwrap_or((0, 0));
    Video::from_frames(h, w, frames)
}

fn gif_error(path: &Path, e: impl std::fmt::Display) -> DataError {
    DataError::Gif {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Writes an animated GIF (looping) at `fps`, atomically. Each frame gets its own 256-colour
/// palette (NeuQuant), so colours are approximate.
pub fn write_gif(video: &Video, path: &Path, fps: f64) -> Result<()> {
    let (w, h) = match (u16::try_from(video.width()), u16::try_from(video.height())) {
        (Ok(w), Ok(h)) => (w, h),
        _ => return Err(gif_error(path, "GIF frames are at most 65535 pixels wide")),
    };
    if !(fps.is_finite() && fps > 0.0) {
        return Err(DataError::Config(format!(
            "fps must be positive, got {fps}"
        )));
    }
    let delay = (100.0 / fps).round().clamp(1.0, 65535.0) as u16; // in 1/100 s
    write_atomic(path, |out| {
        let mut encoder = gif::Encoder::new(out, w, h, &[]).map_err(|e| gif_error(path, e))?;
        encoder
            .set_repeat(gif::Repeat::Infinite)
            .map_err(|e| gif_error(path, e))?;
        for frame in video.frame_iter() {
            let mut f = gif::Frame::from_rgb_speed(w, h, frame, 10);
            f.delay = delay;
            encoder.write_frame(&f).map_err(|e| gif_error(path, e))?;
        }
        Ok(())
    })
}

/// Reads a GIF as a video, compositing each frame's rectangle onto the previous canvas.
pub fn read_gif(path: &Path) -> Result<Video> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut options = gif::DecodeOptions::new();
    options.set_color_output(gif::ColorOutput::RGBA);
    let mut decoder = options
        .read_info(BufReader::new(file))
        .map_err(|e| gif_error(path, e))?;
    let (w, h) = (decoder.width() as usize, decoder.height() as usize);
    let mut canvas = vec![0u8; w * h * 3];
    let mut frames = Vec::new();
    while let Some(frame) = decoder.read_next_frame().map_err(|e| gif_error(path, e))? {
        let (fl, ft) = (frame.left as usize, frame.top as usize);
        let (fw, fh) = (frame.width as usize, frame.height as usize);
        for y in 0..fh {
            for x in 0..fw {
                let (cx, cy) = (fl + x, ft + y);
                let src = &frame.buffer[(y * fw + x) * 4..(y * fw + x) * 4 + 4];
                if cx < w && cy < h && src[3] != 0 {
                    canvas[(cy * w + cx) * 3..(cy * w + cx) * 3 + 3].copy_from_slice(&src[..3]);
                }
            }
        }
        frames.push(canvas.clone());
    }
    if frames.is_empty() {
        return Err(gif_error(path, "no frames"));
    }
    Video::from_frames(h, w, frames)
}

/// Writes an H.264 MP4 through the `ffmpeg` tool at `fps` with quality `crf` (0–51, lower is
/// better; 18 is visually lossless), atomically.
pub fn write_mp4(video: &Video, path: &Path, fps: f64, crf: u8) -> Result<()> {
    let dir = parent_of(path);
    let name = file_name(path)?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".mp4")
        .tempfile_in(&dir)
        .map_err(|e| DataError::io(&dir, e))?;
    ffmpeg::encode_h264(video, tmp.path(), fps, crf)?;
    // ffmpeg wrote through its own handle: reopen to sync what it wrote.
    File::open(tmp.path())
        .and_then(|f| f.sync_all())
        .map_err(|e| DataError::io(path, e))?;
    tmp.persist(path)
        .map_err(|e| DataError::io(path, e.error))?;
    sync_dir(&dir);
    Ok(())
}

/// Gap between contact-sheet cells, in pixels.
const SHEET_GAP: usize = 2;
/// Colour of the gaps.
const SHEET_GAP_RGB: [u8; 3] = [255, 255, 255];

/// Lays out `rows` of equally sized `[H, W, 3]` frames as one image; returns `(height, width, rgb)`.
fn contact_sheet(rows: &[Vec<&[u8]>], h: usize, w: usize) -> (usize, usize, Vec<u8>) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let sheet_w = columns * w + (columns + 1) * SHEET_GAP;
    let sheet_h = rows.len() * h + (rows.len() + 1) * SHEET_GAP;
    let mut rgb = SHEET_GAP_RGB.repeat(sheet_w * sheet_h);
    for (r, row) in rows.iter().enumerate() {
        for (c, frame) in row.iter().enumerate() {
            let (x0, y0) = (
                SHEET_GAP + c * (w + SHEET_GAP),
                SHEET_GAP + r * (h + SHEET_GAP),
            );
            for y in 0..h {
                let dst = ((y0 + y) * sheet_w + x0) * 3;
                rgb[dst..dst + w * 3].copy_from_slice(&frame[y * w * 3..(y + 1) * w * 3]);
            }
        }
    }
    (sheet_h, sheet_w, rgb)
}

/// Writes all frames of a clip as a grid PNG with `columns` frames per row, atomically.
pub fn write_contact_sheet(video: &Video, path: &Path, columns: usize) -> Result<()> {
    if columns == 0 {
        return Err(DataError::Config(
            "a contact sheet needs at least one column".into(),
        ));
    }
    let frames: Vec<&[u8]> = video.frame_iter().collect();
    let rows: Vec<Vec<&[u8]>> = frames.chunks(columns).map(<[_]>::to_vec).collect();
    let (h, w, rgb) = contact_sheet(&rows, video.height(), video.width());
    write_png(path, h, w, &rgb)
}

/// Writes one row per clip, each showing `columns` frames evenly spaced from first to last,
/// atomically. All clips must share their frame size.
pub fn write_contact_sheet_rows(videos: &[&Video], path: &Path, columns: usize) -> Result<()> {
    let first = videos
        .first()
        .ok_or_else(|| DataError::Config("a contact sheet needs at least one clip".into()))?;
    if columns == 0 {
        return Err(DataError::Config(
            "a contact sheet needs at least one column".into(),
        ));
    }
    let (h, w) = (first.height(), first.width());
    let mut rows = Vec::with_capacity(videos.len());
    for video in videos {
        if (video.height(), video.width()) != (h, w) {
            return Err(DataError::InvalidVideo(format!(
                "contact sheet mixes {h}x{w} and {}x{} frames",
                video.height(),
                video.width()
            )));
        }
        let n = columns.min(video.frames());
        let row = (0..n)
            .filter_map(|i| {
                let t = if n > 1 {
                    i * (video.frames() - 1) / (n - 1)
                } else {
                    0
                };
                video.frame(t)
            })
            .collect();
        rows.push(row);
    }
    let (sh, sw, rgb) = contact_sheet(&rows, h, w);
    write_png(path, sh, sw, &rgb)
}
