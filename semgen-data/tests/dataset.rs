//! Datasets, batching and the worker-thread loader.

use std::path::Path;
use std::process::Command;

use burn::backend::NdArray;
use semgen_data::ffmpeg::ffmpeg_available;
use semgen_data::writers::write_png_frames;
use semgen_data::{
    ClipSource, DataError, Loader, LoaderConfig, ShapesDataset, ShapesWorld, Split, VideoBatcher,
    VideoFolderConfig, VideoFolderDataset, WorldConfig,
};
use sha2::{Digest, Sha256};

type B = NdArray<f32>;

fn world() -> ShapesWorld {
    ShapesWorld::new(WorldConfig::default()).unwrap()
}

/// A digest of every batch of an epoch (values, semantic values and captions).
fn epoch_digest<S: ClipSource>(loader: &Loader<S>, epoch: u64) -> (usize, String) {
    let device = Default::default();
    let mut hasher = Sha256::new();
    let mut count = 0;
    for batch in loader.epoch::<B>(epoch, &device) {
        let batch = batch.unwrap();
        for v in batch.video.into_data().to_vec::<f32>().unwrap() {
            hasher.update(v.to_le_bytes());
        }
        for v in batch.semantic.unwrap().into_data().to_vec::<f32>().unwrap() {
            hasher.update(v.to_le_bytes());
        }
        hasher.update(batch.captions.join("\n"));
        count += 1;
    }
    (count, format!("{:x}", hasher.finalize()))
}

#[test]
fn shapes_batches_have_model_layout_and_semantic_sampling() {
    let dataset = ShapesDataset::new(world(), Split::Val, 10..16);
    let expected_caption = world().clip(Split::Val, 10).unwrap().caption();
    let config = LoaderConfig {
        batch_size: 4,
        workers: 2,
        ..Default::default()
    };
    let loader = Loader::new(dataset, VideoBatcher::new(Some(4)), config).unwrap();
    let batches: Vec<_> = loader
        .epoch::<B>(0, &Default::default())
        .map(Result::unwrap)
        .collect();
    assert_eq!(batches.len(), 2);
    assert_eq!(batches[0].video.dims(), [4, 3, 17, 64, 64]);
    assert_eq!(batches[1].video.dims(), [2, 3, 17, 64, 64]);
    // Frames 0, 4, 8, 12, 16.
    assert_eq!(
        batches[0].semantic.as_ref().unwrap().dims(),
        [4, 3, 5, 64, 64]
    );
    assert_eq!(batches[0].captions[0], expected_caption);
    let values = batches[0]
        .video
        .clone()
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    assert!(values.iter().all(|v| (-1.0..=1.0).contains(v)));
    assert!(values.iter().any(|&v| v > 0.5) && values.iter().any(|&v| v < -0.5));
}

#[test]
fn batches_are_identical_with_one_and_two_workers() {
    let make = |workers| {
        let dataset = ShapesDataset::stories(world(), Split::Train, 0..5, 2);
        let config = LoaderConfig {
            batch_size: 2,
            workers,
            shuffle: Some(9),
            ..Default::default()
        };
        Loader::new(dataset, VideoBatcher::new(Some(8)), config).unwrap()
    };
    let one = epoch_digest(&make(1), 3);
    let two = epoch_digest(&make(2), 3);
    assert_eq!(one.0, 3);
    assert_eq!(one, two);
    // Another epoch is another permutation.
    assert_ne!(epoch_digest(&make(2), 4).1, one.1);
}

#[test]
fn loader_rejects_zero_sizes() {
    let dataset = ShapesDataset::new(world(), Split::Train, 0..2);
    let config = LoaderConfig {
        batch_size: 0,
        ..Default::default()
    };
    assert!(matches!(
        Loader::new(dataset, VideoBatcher::default(), config),
        Err(DataError::Config(_))
    ));
}

fn ffmpeg(args: &[&str], dir: &Path) {
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y"])
        .args(args)
        .current_dir(dir)
        .status()
        .expect("spawn ffmpeg");
    assert!(status.success(), "ffmpeg {args:?}");
}

fn ffmpeg_required() -> bool {
    if std::env::var("SEMGEN_SKIP_FFMPEG").as_deref() == Ok("1") {
        eprintln!("SEMGEN_SKIP_FFMPEG=1: skipping the video-folder checks");
        return false;
    }
    assert!(
        ffmpeg_available(),
        "the `ffmpeg` tool is not installed: install it (apt-get install ffmpeg) or set SEMGEN_SKIP_FFMPEG=1"
    );
    true
}

#[test]
fn video_folders_load_real_mp4s_and_png_frames() {
    if !ffmpeg_required() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::create_dir(root.join("clips")).unwrap();
    // 3 s of a 24 fps 4:3 test pattern, and 2 s of a 16:9 one at 30 fps.
    ffmpeg(
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=160x120:rate=24",
            "-t",
            "3",
            "-pix_fmt",
            "yuv420p",
            "clips/a.mp4",
        ],
        root,
    );
    ffmpeg(
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=128x72:rate=30",
            "-t",
            "2.5",
            "-pix_fmt",
            "yuv420p",
            "b.mp4",
        ],
        root,
    );
    // A folder of PNG frames (8 fps, as configured).
    let shapes = world().clip(Split::Test, 0).unwrap();
    write_png_frames(&shapes.video, &root.join("frames")).unwrap();
    std::fs::write(
        root.join("captions.jsonl"),
        concat!(
            "{\"video\": \"clips/a.mp4\", \"caption\": \"a test pattern\"}\n",
            "\n",
            "{\"video\": \"b.mp4\", \"caption\": \"another pattern\"}\n",
            "{\"video\": \"frames\", \"caption\": \"shapes\"}\n",
        ),
    )
    .unwrap();
    let config = VideoFolderConfig {
        frames: 17,
        height: 48,
        width: 64,
        fps: 8.0,
        png_fps: 8.0,
    };
    let dataset = VideoFolderDataset::open(root, config).unwrap();
    assert_eq!(dataset.len(), 3);
    assert_eq!(dataset.caption(1), Some("another pattern"));
    for i in 0..3 {
        let item = dataset.load(i).unwrap();
        assert_eq!(
            (item.video.frames(), item.video.height(), item.video.width()),
            (17, 48, 64)
        );
    }
    // The PNG folder is the Shapes clip, centre-cropped from 64x64 to 48x64.
    let item = dataset.load(2).unwrap();
    assert_eq!(item.video, shapes.video.resize_crop(48, 64).unwrap());

    let loader = Loader::new(
        dataset,
        VideoBatcher::new(Some(4)),
        LoaderConfig {
            batch_size: 3,
            workers: 2,
            ..Default::default()
        },
    )
    .unwrap();
    let batch = loader
        .epoch::<B>(0, &Default::default())
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(batch.video.dims(), [3, 3, 17, 48, 64]);
    assert_eq!(batch.semantic.unwrap().dims(), [3, 3, 5, 48, 64]);
    assert_eq!(
        batch.captions,
        ["a test pattern", "another pattern", "shapes"]
    );

    // 2.5 s at 8 fps is 20 frames: 33 frames are too many.
    let config = VideoFolderConfig {
        frames: 33,
        height: 48,
        width: 64,
        fps: 8.0,
        png_fps: 8.0,
    };
    let dataset = VideoFolderDataset::open(root, config).unwrap();
    assert!(matches!(
        dataset.load(1),
        Err(DataError::TooShort {
            available: 20,
            needed: 33,
            ..
        })
    ));
}

#[test]
fn a_caption_line_with_a_missing_video_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("captions.jsonl"),
        "{\"video\": \"gone.mp4\", \"caption\": \"nothing\"}\n",
    )
    .unwrap();
    let err = VideoFolderDataset::open(tmp.path(), VideoFolderConfig::default()).unwrap_err();
    assert!(
        matches!(err, DataError::MissingVideo { line: 1, .. }),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains("gone.mp4") && message.contains("captions.jsonl:1"),
        "{message}"
    );

    std::fs::write(tmp.path().join("captions.jsonl"), "{\"video\": 3}\n").unwrap();
    let err = VideoFolderDataset::open(tmp.path(), VideoFolderConfig::default()).unwrap_err();
    assert!(
        matches!(err, DataError::CaptionLine { line: 1, .. }),
        "{err}"
    );
    assert!(
        VideoFolderDataset::open(&tmp.path().join("nowhere"), VideoFolderConfig::default())
            .is_err()
    );
}
