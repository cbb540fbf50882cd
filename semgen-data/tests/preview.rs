//! The preview folder a person looks at.

use semgen_data::writers::{read_gif, read_png, read_png_frames};
use semgen_data::{write_preview, PreviewOptions, ShapesPrompt, Split};

#[test]
fn preview_writes_gifs_frames_captions_and_a_contact_sheet() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("preview");
    let options = PreviewOptions {
        count: 2,
        out: out.clone(),
        long: true,
        segments: 3,
        split: Split::Val,
        seed: 5,
    };
    let entries = write_preview(&options).unwrap();
    assert_eq!(entries.len(), 2);
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(out.join("captions.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["clip"], "0001");
    assert_eq!(lines[1]["segments"].as_array().unwrap().len(), 3);
    let caption = lines[1]["caption"].as_str().unwrap();
    assert_eq!(ShapesPrompt::parse(caption).unwrap().segments.len(), 3);
    assert_eq!(read_png_frames(&out.join("0001")).unwrap().frames(), 49);
    assert_eq!(read_gif(&out.join("0000.gif")).unwrap().frames(), 49);
    let (h, w, _) = read_png(&out.join("contact.png")).unwrap();
    assert_eq!((h, w), (2 * 64 + 3 * 2, 9 * 64 + 10 * 2));
    assert!(write_preview(&PreviewOptions {
        count: 0,
        ..options
    })
    .is_err());
}
