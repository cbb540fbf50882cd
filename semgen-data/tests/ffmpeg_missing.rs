//! Without ffmpeg, MP4 I/O fails with a clear error. (Its own test binary: it changes the
//! environment.)

use semgen_data::ffmpeg::{decode_video, DecodeOptions};
use semgen_data::writers::write_mp4;
use semgen_data::{DataError, Video};

#[test]
fn a_missing_ffmpeg_is_a_clear_error() {
    std::env::set_var("SEMGEN_FFMPEG", "/nonexistent/semgen-no-ffmpeg");
    let tmp = tempfile::tempdir().unwrap();
    let video = Video::new(1, 32, 32, vec![0; 32 * 32 * 3]).unwrap();
    let err = write_mp4(&video, &tmp.path().join("a.mp4"), 8.0, 23).unwrap_err();
    assert!(matches!(err, DataError::FfmpegMissing { .. }), "{err}");
    assert!(err.to_string().contains("ffmpeg"));
    // Nothing is left behind.
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);

    let input = tmp.path().join("in.mp4");
    std::fs::write(&input, b"not a video").unwrap();
    let options = DecodeOptions {
        height: 32,
        width: 32,
        fps: None,
        max_frames: None,
    };
    let err = decode_video(&input, &options).unwrap_err();
    assert!(matches!(err, DataError::FfmpegMissing { .. }), "{err}");
}
