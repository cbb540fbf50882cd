//! Writers read back to the frames they wrote, atomically, with clear errors.

use std::path::Path;

use semgen_data::ffmpeg::{decode_video, ffmpeg_available, DecodeOptions};
use semgen_data::writers::{
    read_gif, read_png, read_png_frames, write_contact_sheet, write_contact_sheet_rows, write_gif,
    write_mp4, write_png_frames,
};
use semgen_data::{DataError, ShapesWorld, Split, Video, WorldConfig};

fn clip(index: u64) -> Video {
    let world = ShapesWorld::new(WorldConfig::default()).unwrap();
    world.clip(Split::Train, index).unwrap().video
}

/// Whether the ffmpeg tests run: ffmpeg must be installed unless SEMGEN_SKIP_FFMPEG=1.
fn ffmpeg_required() -> bool {
    if std::env::var("SEMGEN_SKIP_FFMPEG").as_deref() == Ok("1") {
        eprintln!("SEMGEN_SKIP_FFMPEG=1: skipping the MP4 checks");
        return false;
    }
    assert!(
        ffmpeg_available(),
        "the `ffmpeg` tool is not installed: install it (apt-get install ffmpeg) or set SEMGEN_SKIP_FFMPEG=1"
    );
    true
}

fn only_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn png_frames_round_trip_exactly_and_replace_old_frames() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("frames");
    let long = clip(0);
    write_png_frames(&long, &dir).unwrap();
    assert_eq!(read_png_frames(&dir).unwrap(), long);
    let names = only_entries(&dir);
    assert_eq!(names.len(), 17);
    assert_eq!(names[0], "000000.png");
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);

    // Rewriting with a shorter clip leaves no stale frames nor temporary folders.
    let short = clip(1).select(&[0, 1, 2]).unwrap();
    write_png_frames(&short, &dir).unwrap();
    assert_eq!(read_png_frames(&dir).unwrap(), short);
    assert_eq!(only_entries(tmp.path()), vec!["frames".to_string()]);
}

#[test]
fn gif_round_trips_within_palette_error() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("clip.gif");
    let video = clip(2);
    write_gif(&video, &path, 8.0).unwrap();
    let back = read_gif(&path).unwrap();
    assert_eq!(
        (back.frames(), back.height(), back.width()),
        (video.frames(), video.height(), video.width())
    );
    let errors: Vec<u32> = video
        .as_bytes()
        .iter()
        .zip(back.as_bytes())
        .map(|(&a, &b)| a.abs_diff(b) as u32)
        .collect();
    let mean = errors.iter().sum::<u32>() as f64 / errors.len() as f64;
    let max = *errors.iter().max().unwrap();
    assert!(mean < 3.0 && max < 48, "mean {mean:.2}, max {max}");
    assert_eq!(only_entries(tmp.path()), vec!["clip.gif".to_string()]);
}

#[test]
fn contact_sheets_have_the_grid_size() {
    let tmp = tempfile::tempdir().unwrap();
    let video = clip(3);
    let path = tmp.path().join("sheet.png");
    write_contact_sheet(&video, &path, 6).unwrap(); // 17 frames: 3 rows of 6
    let (h, w, rgb) = read_png(&path).unwrap();
    assert_eq!((h, w), (3 * 64 + 4 * 2, 6 * 64 + 7 * 2));
    // The first cell is the first frame.
    assert_eq!(
        &rgb[(2 * w + 2) * 3..(2 * w + 2) * 3 + 64 * 3],
        &video.frame(0).unwrap()[..64 * 3]
    );

    let other = clip(4);
    write_contact_sheet_rows(&[&video, &other], &path, 5).unwrap();
    let (h, w, _) = read_png(&path).unwrap();
    assert_eq!((h, w), (2 * 64 + 3 * 2, 5 * 64 + 6 * 2));
    assert!(write_contact_sheet(&video, &path, 0).is_err());
}

#[test]
fn unwritable_paths_are_typed_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let inside_a_file = file.join("clip.gif");
    let video = clip(0);
    assert!(matches!(
        write_gif(&video, &inside_a_file, 8.0),
        Err(DataError::Io { .. })
    ));
    assert!(matches!(
        write_png_frames(&video, &file.join("frames")),
        Err(DataError::Io { .. })
    ));
    let err = write_contact_sheet(&video, &inside_a_file, 4).unwrap_err();
    assert!(err.to_string().contains("a-file"), "{err}");
    assert!(matches!(
        write_gif(&video, &tmp.path().join("x.gif"), 0.0),
        Err(DataError::Config(_))
    ));
}

#[test]
fn png_frames_never_replace_a_file() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("frames");
    std::fs::write(&file, b"the user's file").unwrap();
    let err = write_png_frames(&clip(0), &file).unwrap_err();
    assert!(matches!(err, DataError::Config(_)), "{err}");
    assert!(err.to_string().contains("is a file"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"the user's file");
    assert_eq!(only_entries(tmp.path()), vec!["frames".to_string()]);
    // A folder of frames is replaced, as documented.
    let dir = tmp.path().join("dir");
    write_png_frames(&clip(0), &dir).unwrap();
    write_png_frames(&clip(1), &dir).unwrap();
    assert!(dir.is_dir());
}

#[test]
fn mp4_round_trips_with_the_right_frame_count() {
    if !ffmpeg_required() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("clip.mp4");
    let video = clip(5);
    write_mp4(&video, &path, 8.0, 18).unwrap();
    assert_eq!(only_entries(tmp.path()), vec!["clip.mp4".to_string()]);
    let options = DecodeOptions {
        height: 64,
        width: 64,
        fps: None,
        max_frames: None,
    };
    let back = decode_video(&path, &options).unwrap();
    assert_eq!(back.frames(), 17);
    let mean = video
        .as_bytes()
        .iter()
        .zip(back.as_bytes())
        .map(|(&a, &b)| a.abs_diff(b) as f64)
        .sum::<f64>()
        / video.as_bytes().len() as f64;
    assert!(mean < 8.0, "mean error {mean:.2}");
    assert!(matches!(
        write_mp4(&video, &path, 8.0, 60),
        Err(DataError::Config(_))
    ));
}
