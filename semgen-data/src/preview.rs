//! A folder of Shapes clips for a person to look at (`cargo xtask data preview`).
//!
//! `out/NNNN.gif` (animated), `out/NNNN/` (PNG frames), `out/captions.jsonl` (one
//! `{"clip": "NNNN", "caption": "...", "segments": [...]}` per clip) and `out/contact.png`
//! (one row of evenly spaced frames per clip).

use std::fs;
use std::path::PathBuf;

use serde::Serialize;

use crate::error::{DataError, Result};
use crate::shapes::{ShapesWorld, Split, WorldConfig, SHAPES_FPS};
use crate::writers::{write_atomic, write_contact_sheet_rows, write_gif, write_png_frames};

/// Frames per clip in the contact sheet.
const CONTACT_COLUMNS: usize = 9;

/// What to preview.
#[derive(Debug, Clone, PartialEq)]
pub struct PreviewOptions {
    /// Number of clips, indices `0..count`.
    pub count: usize,
    /// Output folder (created if missing).
    pub out: PathBuf,
    /// Stories of `segments` segments instead of short clips.
    pub long: bool,
    pub segments: usize,
    pub split: Split,
    pub seed: u64,
}

impl Default for PreviewOptions {
    fn default() -> Self {
        Self {
            count: 8,
            out: PathBuf::from("preview"),
            long: false,
            segments: 8,
            split: Split::Train,
            seed: 0,
        }
    }
}

/// One line of `captions.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PreviewEntry {
    pub clip: String,
    pub caption: String,
    pub segments: Vec<String>,
}

/// Writes the preview folder; returns its caption lines.
pub fn write_preview(options: &PreviewOptions) -> Result<Vec<PreviewEntry>> {
    if options.count == 0 {
        return Err(DataError::Config("preview at least one clip".into()));
    }
    let world = ShapesWorld::new(WorldConfig {
        seed: options.seed,
        ..WorldConfig::default()
    })?;
    fs::create_dir_all(&options.out).map_err(|e| DataError::io(&options.out, e))?;
    let mut entries = Vec::with_capacity(options.count);
    let mut videos = Vec::with_capacity(options.count);
    for index in 0..options.count {
        let clip = if options.long {
            world.story(options.split, index as u64, options.segments)?
        } else {
            world.clip(options.split, index as u64)?
        };
        let name = format!("{index:04}");
        write_gif(
            &clip.video,
            &options.out.join(format!("{name}.gif")),
            SHAPES_FPS,
        )?;
        write_png_frames(&clip.video, &options.out.join(&name))?;
        let prompt = clip.prompt();
        entries.push(PreviewEntry {
            clip: name,
            caption: prompt.to_string(),
            segments: prompt.segment_captions(),
        });
        videos.push(clip.video);
    }
    let list = options.out.join("captions.jsonl");
    write_atomic(&list, |out| {
        for entry in &entries {
            let line = serde_json::to_string(entry)
                .map_err(|e| DataError::Config(format!("serialising a caption: {e}")))?;
            writeln!(out, "{line}").map_err(|e| DataError::io(&list, e))?;
        }
        Ok(())
    })?;
    let refs: Vec<_> = videos.iter().collect();
    write_contact_sheet_rows(&refs, &options.out.join("contact.png"), CONTACT_COLUMNS)?;
    Ok(entries)
}
