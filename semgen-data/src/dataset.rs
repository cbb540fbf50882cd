//! Datasets and batching for Burn training.
//!
//! Two sources of captioned clips implement [`ClipSource`] (like Burn's `Dataset`, but loading
//! returns errors instead of `None`): the procedural [`ShapesDataset`] and the
//! [`VideoFolderDataset`] of real videos. (Burn's own `Dataset`/`Batcher` traits sit behind its
//! `dataset` feature, which would compile SQLite into every semgen build.)
//! [`VideoBatcher`] stacks clips into [`VideoBatch`]es (`[B, 3, T, H, W]` `f32` in `[-1, 1]`,
//! plus a sparser sampling for the semantic encoder), and [`Loader`] does the loading and
//! stacking in worker threads, yielding batches in a deterministic order whatever the number of
//! workers.

use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use burn::tensor::{backend::Backend, Tensor, TensorData};
use serde::Deserialize;

use crate::error::{DataError, Result};
use crate::ffmpeg::{decode_video, DecodeOptions};
use crate::rng::KeyedRng;
use crate::shapes::{ShapesWorld, Split};
use crate::video::Video;
use crate::writers::read_png_frames;

/// A captioned clip, as `u8` RGB frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClipItem {
    pub video: Video,
    pub caption: String,
}

/// A dataset of captioned clips whose loading may fail (a corrupt video, a missing `ffmpeg`).
pub trait ClipSource: Send + Sync {
    /// Number of clips.
    fn len(&self) -> usize;

    /// Whether there are no clips.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Loads clip `index`.
    fn load(&self, index: usize) -> Result<ClipItem>;
}

/// Shapes-world clips `range` of a split: short clips, or stories of a fixed number of segments.
#[derive(Debug, Clone)]
pub struct ShapesDataset {
    world: ShapesWorld,
    split: Split,
    range: Range<u64>,
    story_segments: Option<usize>,
}

impl ShapesDataset {
    /// Short clips with indices in `range`.
    pub fn new(world: ShapesWorld, split: Split, range: Range<u64>) -> Self {
        Self {
            world,
            split,
            range,
            story_segments: None,
        }
    }

    /// Stories of `segments` segments with indices in `range`.
    pub fn stories(world: ShapesWorld, split: Split, range: Range<u64>, segments: usize) -> Self {
        Self {
            story_segments: Some(segments),
            ..Self::new(world, split, range)
        }
    }
}

impl ClipSource for ShapesDataset {
    fn len(&self) -> usize {
        (self.range.end.saturating_sub(self.range.start)) as usize
    }

    fn load(&self, index: usize) -> Result<ClipItem> {
        if index >= ClipSource::len(self) {
            return Err(DataError::Config(format!(
                "clip {index} of a {}-clip dataset",
                ClipSource::len(self)
            )));
        }
        let i = self.range.start + index as u64;
        let clip = match self.story_segments {
            None => self.world.clip(self.split, i)?,
            Some(n) => self.world.story(self.split, i, n)?,
        };
        Ok(ClipItem {
            caption: clip.caption(),
            video: clip.video,
        })
    }
}

/// How the clips of a video folder are brought to the model's format.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoFolderConfig {
    /// Frames per clip, `1 + 4k`.
    pub frames: usize,
    /// Model height (the video is scaled to cover it and centre-cropped).
    pub height: usize,
    /// Model width.
    pub width: usize,
    /// Target frame rate: videos are resampled to it.
    pub fps: f64,
    /// Frame rate of folders of PNG frames (they carry none).
    pub png_fps: f64,
}

impl Default for VideoFolderConfig {
    fn default() -> Self {
        Self {
            frames: 17,
            height: 64,
            width: 64,
            fps: 8.0,
            png_fps: 8.0,
        }
    }
}

/// One line of `captions.jsonl`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaptionLine {
    video: String,
    caption: String,
}

/// Where a clip's frames come from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum VideoKind {
    /// `.mp4`, `.mov` or `.webm`, decoded by ffmpeg.
    File,
    /// A folder of PNG frames.
    PngFolder,
}

#[derive(Debug, Clone)]
struct Entry {
    path: PathBuf,
    kind: VideoKind,
    caption: String,
}

/// A folder of captioned videos: `captions.jsonl` holds one
/// `{"video": "relative/path", "caption": "..."}` per line, where a video is an
/// `.mp4`/`.mov`/`.webm` file (decoded through `ffmpeg`) or a folder of PNG frames.
#[derive(Debug, Clone)]
pub struct VideoFolderDataset {
    entries: Vec<Entry>,
    config: VideoFolderConfig,
}

impl VideoFolderDataset {
    /// Reads `root/captions.jsonl`, checking every line and that every video exists.
    pub fn open(root: &Path, config: VideoFolderConfig) -> Result<Self> {
        if config.frames == 0 || !(config.frames - 1).is_multiple_of(4) {
            return Err(DataError::Config(format!(
                "frames must be 1 + 4k, got {}",
                config.frames
            )));
        }
        if config.height < 2 || config.width < 2 || config.height % 2 + config.width % 2 != 0 {
            return Err(DataError::Config(format!(
                "model size must be even, got {}x{}",
                config.height, config.width
            )));
        }
        for fps in [config.fps, config.png_fps] {
            if !(fps.is_finite() && fps > 0.0) {
                return Err(DataError::Config(format!(
                    "fps must be positive, got {fps}"
                )));
            }
        }
        let list = root.join("captions.jsonl");
        let text = fs::read_to_string(&list).map_err(|e| DataError::io(&list, e))?;
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            if line.trim().is_empty() {
                continue;
            }
            let bad = |message: String| DataError::CaptionLine {
                path: list.clone(),
                line: line_no,
                message,
            };
            let record: CaptionLine = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
            let relative = Path::new(&record.video);
            if relative.is_absolute() {
                return Err(bad(format!("video path {} must be relative", record.video)));
            }
            let path = root.join(relative);
            if !path.exists() {
                return Err(DataError::MissingVideo {
                    path: list.clone(),
                    line: line_no,
                    video: path,
                });
            }
            let kind = if path.is_dir() {
                VideoKind::PngFolder
            } else {
                let ext = path
                    .extension()
                    .map(|e| e.to_string_lossy().to_ascii_lowercase())
                    .unwrap_or_default();
                match ext.as_str() {
                    "mp4" | "mov" | "webm" => VideoKind::File,
                    _ => {
                        return Err(bad(format!(
                            "{}: not an .mp4/.mov/.webm file or a folder of PNG frames",
                            record.video
                        )))
                    }
                }
            };
            entries.push(Entry {
                path,
                kind,
                caption: record.caption,
            });
        }
        Ok(Self { entries, config })
    }

    /// The caption of clip `index`.
    pub fn caption(&self, index: usize) -> Option<&str> {
        self.entries.get(index).map(|e| e.caption.as_str())
    }
}

impl ClipSource for VideoFolderDataset {
    fn len(&self) -> usize {
        self.entries.len()
    }

    fn load(&self, index: usize) -> Result<ClipItem> {
        let entry = self.entries.get(index).ok_or_else(|| {
            DataError::Config(format!(
                "clip {index} of a {}-clip dataset",
                self.entries.len()
            ))
        })?;
        let c = &self.config;
        let video = match entry.kind {
            VideoKind::File => {
                let options = DecodeOptions {
                    height: c.height,
                    width: c.width,
                    fps: Some(c.fps),
                    max_frames: Some(c.frames),
                };
                decode_video(&entry.path, &options)?
            }
            VideoKind::PngFolder => {
                let all = read_png_frames(&entry.path)?;
                // Nearest source frame in time for each target frame.
                let step = c.png_fps / c.fps;
                let indices: Vec<usize> = (0..c.frames)
                    .map(|j| (j as f64 * step).round() as usize)
                    .collect();
                if indices.last().is_some_and(|&i| i >= all.frames()) {
                    return Err(DataError::TooShort {
                        path: entry.path.clone(),
                        available: all.frames(),
                        needed: c.frames,
                    });
                }
                all.select(&indices)?.resize_crop(c.height, c.width)?
            }
        };
        if video.frames() < c.frames {
            return Err(DataError::TooShort {
                path: entry.path.clone(),
                available: video.frames(),
                needed: c.frames,
            });
        }
        Ok(ClipItem {
            video,
            caption: entry.caption.clone(),
        })
    }
}

/// A batch for training: clips `[B, 3, T, H, W]` in `[-1, 1]`, the semantic encoder's sparser
/// sampling of the same clips `[B, 3, T', H, W]`, and the captions.
#[derive(Debug, Clone)]
pub struct VideoBatch<B: Backend> {
    pub video: Tensor<B, 5>,
    pub semantic: Option<Tensor<B, 5>>,
    pub captions: Vec<String>,
}

/// A batch stacked on the CPU, ready to be moved to a device.
#[derive(Debug, Clone, PartialEq)]
pub struct HostBatch {
    /// `[B, 3, T, H, W]` values.
    pub video: Vec<f32>,
    pub video_shape: [usize; 5],
    /// `[B, 3, T', H, W]` values, if a semantic stride is set.
    pub semantic: Option<(Vec<f32>, [usize; 5])>,
    pub captions: Vec<String>,
}

impl HostBatch {
    /// Moves the batch to `device`.
    pub fn to_device<B: Backend>(self, device: &B::Device) -> VideoBatch<B> {
        let tensor = |values: Vec<f32>, shape: [usize; 5]| {
            Tensor::from_data(TensorData::new(values, shape), device)
        };
        VideoBatch {
            video: tensor(self.video, self.video_shape),
            semantic: self.semantic.map(|(v, s)| tensor(v, s)),
            captions: self.captions,
        }
    }
}

/// Stacks clips into batches; every clip must have the same shape.
#[derive(Debug, Clone, Default)]
pub struct VideoBatcher {
    /// Keep every `stride`-th frame for the semantic encoder (the paper's 1.6 fps against 24 fps
    /// is a stride of 15); `None` skips the semantic sampling.
    pub semantic_stride: Option<usize>,
}

impl VideoBatcher {
    /// A batcher with the given semantic stride.
    pub fn new(semantic_stride: Option<usize>) -> Self {
        Self { semantic_stride }
    }

    /// Stacks clips on the CPU.
    pub fn host_batch(&self, items: Vec<ClipItem>) -> Result<HostBatch> {
        let first = items
            .first()
            .ok_or_else(|| DataError::InvalidVideo("an empty batch".into()))?;
        let (t, h, w) = (
            first.video.frames(),
            first.video.height(),
            first.video.width(),
        );
        let mut video = Vec::with_capacity(items.len() * 3 * t * h * w);
        let mut semantic = self.semantic_stride.map(|_| Vec::new());
        let mut semantic_frames = 0;
        for item in &items {
            let v = &item.video;
            if (v.frames(), v.height(), v.width()) != (t, h, w) {
                return Err(DataError::InvalidVideo(format!(
                    "cannot batch a {}x{}x{} clip with {t}x{h}x{w} clips",
                    v.frames(),
                    v.height(),
                    v.width()
                )));
            }
            v.write_cthw(&mut video);
            if let (Some(stride), Some(out)) = (self.semantic_stride, semantic.as_mut()) {
                let sparse = v.strided(stride)?;
                semantic_frames = sparse.frames();
                sparse.write_cthw(out);
            }
        }
        let b = items.len();
        Ok(HostBatch {
            video,
            video_shape: [b, 3, t, h, w],
            semantic: semantic.map(|s| (s, [b, 3, semantic_frames, h, w])),
            captions: items.into_iter().map(|i| i.caption).collect(),
        })
    }

    /// Stacks clips on `device`.
    pub fn try_batch<B: Backend>(
        &self,
        items: Vec<ClipItem>,
        device: &B::Device,
    ) -> Result<VideoBatch<B>> {
        Ok(self.host_batch(items)?.to_device(device))
    }
}

/// How a [`Loader`] walks its dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct LoaderConfig {
    pub batch_size: usize,
    /// Worker threads (at least 1).
    pub workers: usize,
    /// Batches each worker may prepare ahead of the consumer.
    pub prefetch: usize,
    /// Shuffle with this seed (a new permutation per epoch); `None` keeps dataset order.
    pub shuffle: Option<u64>,
    /// Drop a last, incomplete batch.
    pub drop_last: bool,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        Self {
            batch_size: 8,
            workers: 2,
            prefetch: 2,
            shuffle: None,
            drop_last: false,
        }
    }
}

/// Loads and stacks batches in worker threads.
///
/// Worker `w` prepares batches `w, w + workers, w + 2·workers, …` into its own bounded channel,
/// and the consumer takes them round-robin: batches come out in the same order, with the same
/// bytes, for any number of workers.
#[derive(Clone)]
pub struct Loader<S: ClipSource + 'static> {
    source: Arc<S>,
    batcher: VideoBatcher,
    config: LoaderConfig,
}

impl<S: ClipSource + 'static> Loader<S> {
    /// A loader over `source`.
    pub fn new(source: S, batcher: VideoBatcher, config: LoaderConfig) -> Result<Self> {
        if config.batch_size == 0 || config.workers == 0 || config.prefetch == 0 {
            return Err(DataError::Config(format!(
                "batch_size, workers and prefetch must be positive: {config:?}"
            )));
        }
        Ok(Self {
            source: Arc::new(source),
            batcher,
            config,
        })
    }

    /// The dataset.
    pub fn source(&self) -> &S {
        &self.source
    }

    /// The clip indices of each batch of `epoch`.
    pub fn batches(&self, epoch: u64) -> Vec<Vec<usize>> {
        let mut order: Vec<usize> = (0..self.source.len()).collect();
        if let Some(seed) = self.config.shuffle {
            let mut rng = KeyedRng::new(&[seed, epoch, 0x5348_5546]); // "SHUF"
            for i in (1..order.len()).rev() {
                order.swap(i, rng.below(i + 1));
            }
        }
        let mut batches: Vec<Vec<usize>> = order
            .chunks(self.config.batch_size)
            .map(<[usize]>::to_vec)
            .collect();
        if self.config.drop_last
            && batches
                .last()
                .is_some_and(|b| b.len() < self.config.batch_size)
        {
            batches.pop();
        }
        batches
    }

    /// Iterates over the batches of `epoch` on `device`.
    pub fn epoch<B: Backend>(&self, epoch: u64, device: &B::Device) -> LoaderIter<B> {
        let batches = Arc::new(self.batches(epoch));
        let stop = Arc::new(AtomicBool::new(false));
        let workers = self.config.workers.min(batches.len()).max(1);
        let mut receivers = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for w in 0..workers {
            let (tx, rx) = sync_channel(self.config.prefetch);
            let (source, batcher) = (Arc::clone(&self.source), self.batcher.clone());
            let (batches, stop) = (Arc::clone(&batches), Arc::clone(&stop));
            handles.push(std::thread::spawn(move || {
                for indices in batches.iter().skip(w).step_by(workers) {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let batch = indices
                        .iter()
                        .map(|&i| source.load(i))
                        .collect::<Result<Vec<_>>>()
                        .and_then(|items| batcher.host_batch(items));
                    if tx.send(batch).is_err() {
                        return; // the consumer is gone
                    }
                }
            }));
            receivers.push(rx);
        }
        LoaderIter {
            receivers,
            handles,
            stop,
            next: 0,
            total: batches.len(),
            device: device.clone(),
        }
    }
}

/// The batches of one epoch, in order; a batch whose clips fail to load is an `Err`.
pub struct LoaderIter<B: Backend> {
    receivers: Vec<Receiver<Result<HostBatch>>>,
    handles: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    next: usize,
    total: usize,
    device: B::Device,
}

impl<B: Backend> Iterator for LoaderIter<B> {
    type Item = Result<VideoBatch<B>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.total {
            return None;
        }
        let rx = &self.receivers[self.next % self.receivers.len()];
        self.next += 1;
        match rx.recv() {
            Ok(batch) => Some(batch.map(|b| b.to_device(&self.device))),
            Err(_) => {
                self.next = self.total; // a worker died: end the epoch with an error
                Some(Err(DataError::WorkerGone))
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.total - self.next;
        (left, Some(left))
    }
}

impl<B: Backend> Drop for LoaderIter<B> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.receivers.clear(); // unblocks workers waiting to send
        for handle in self.handles.drain(..) {
            let _ = handle.join();
        }
    }
}
