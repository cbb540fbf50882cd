//! The oracle accepts ground truth and rejects wrong colours and directions; its confusion
//! tables count what it measured.

use semgen_data::{
    Clip, Colour, Direction, Motion, ShapesPrompt, ShapesWorld, Size, Speed, Split, WorldConfig,
};
use semgen_eval::{
    evaluate, EvalError, HitRates, MotionClass, MotionConfusion, Oracle, OracleConfig,
    ShapeConfusion,
};

/// Clips per split: enough for a 0.98 rate to mean something, few enough to stay fast.
const CLIPS: u64 = 120;
/// Stories per split (8 segments each).
const STORIES: u64 = 12;

fn world() -> ShapesWorld {
    ShapesWorld::new(WorldConfig {
        seed: 7,
        ..Default::default()
    })
    .unwrap()
}

fn clips(split: Split) -> Vec<Clip> {
    let world = world();
    (0..CLIPS).map(|i| world.clip(split, i).unwrap()).collect()
}

fn rates(clips: &[Clip], prompt: impl Fn(&Clip) -> ShapesPrompt) -> HitRates {
    let rates: Vec<HitRates> = clips
        .iter()
        .map(|c| evaluate(&c.video, &prompt(c)).unwrap().hits)
        .collect();
    HitRates::mean(&rates)
}

fn assert_all_hit(r: HitRates, what: &str) {
    for (name, v) in [
        ("colour", r.colour),
        ("motion", r.motion),
        ("shape", r.shape),
        ("background", r.background),
    ] {
        assert!(v >= 0.98, "{what}: {name} hit rate {v:.3} < 0.98 ({r:?})");
    }
}

/// A colour no object of the scene has, as far as possible from all of them.
fn wrong_colour(used: &[Colour]) -> Colour {
    let d = |a: Colour, b: Colour| {
        let (a, b) = (a.rgb(), b.rgb());
        (0..3)
            .map(|c| (a[c] as f64 - b[c] as f64).powi(2))
            .sum::<f64>()
    };
    *Colour::ALL
        .iter()
        .filter(|c| !used.contains(c))
        .max_by(|a, b| {
            let m = |c: &Colour| used.iter().map(|&u| d(*c, u)).fold(f64::MAX, f64::min);
            m(a).total_cmp(&m(b))
        })
        .unwrap()
}

fn with_wrong_colours(clip: &Clip) -> ShapesPrompt {
    let mut p = clip.prompt();
    let used: Vec<Colour> = p.segments[0].objects.iter().map(|o| o.colour).collect();
    for scene in &mut p.segments {
        for (i, o) in scene.objects.iter_mut().enumerate() {
            let mut taken = used.clone();
            taken.extend(used.iter().take(i).map(|&c| wrong_colour(&[c])));
            o.colour = wrong_colour(&taken);
        }
    }
    p
}

fn with_wrong_directions(clip: &Clip) -> ShapesPrompt {
    let mut p = clip.prompt();
    for scene in &mut p.segments {
        for o in &mut scene.objects {
            o.motion = match o.motion {
                Motion::Moving(d, s) => Motion::Moving(d.reversed(), s),
                Motion::Still => Motion::Moving(Direction::Right, Speed::Quickly),
            };
        }
    }
    p
}

#[test]
fn ground_truth_short_clips_hit_on_every_split() {
    for split in Split::ALL {
        let clips = clips(split);
        assert_all_hit(rates(&clips, Clip::prompt), split.name());
        // The caption carries everything the oracle needs.
        assert_all_hit(
            rates(&clips, |c| ShapesPrompt::parse(&c.caption()).unwrap()),
            split.name(),
        );
    }
}

#[test]
fn wrong_colours_and_directions_miss() {
    for split in Split::ALL {
        let clips = clips(split);
        let colour = rates(&clips, with_wrong_colours).colour;
        assert!(colour <= 0.05, "{split}: wrong colours hit {colour:.3}");
        let motion = rates(&clips, with_wrong_directions).motion;
        assert!(motion <= 0.05, "{split}: wrong directions hit {motion:.3}");
    }
}

#[test]
fn ground_truth_stories_hit_per_segment_without_drift() {
    let world = world();
    for split in Split::ALL {
        let stories: Vec<Clip> = (0..STORIES)
            .map(|i| world.story(split, i, 8).unwrap())
            .collect();
        let reports: Vec<_> = stories
            .iter()
            .map(|s| evaluate(&s.video, &s.prompt()).unwrap())
            .collect();
        assert!(reports.iter().all(|r| r.segments.len() == 8));
        let hits: Vec<HitRates> = reports.iter().map(|r| r.hits).collect();
        assert_all_hit(HitRates::mean(&hits), split.name());
        for r in &reports {
            let drift = r.drift.unwrap();
            assert!(
                drift.hits.colour.abs() < 0.5 && drift.sharpness.abs() < 0.5,
                "{drift:?}"
            );
        }
        let motion = rates(&stories, with_wrong_directions).motion;
        assert!(
            motion <= 0.05,
            "{split}: wrong story directions hit {motion:.3}"
        );
    }
}

#[test]
fn a_degraded_second_half_shows_drift() {
    // Blank the last half of a story: its late segments miss, so drift is positive.
    let story = world().story(Split::Test, 0, 8).unwrap();
    let (t, h, w) = (
        story.video.frames(),
        story.video.height(),
        story.video.width(),
    );
    let mut bytes = story.video.as_bytes().to_vec();
    let half = (t / 2) * h * w * 3;
    bytes[half..].fill(128);
    let video = semgen_data::Video::new(t, h, w, bytes).unwrap();
    let report = evaluate(&video, &story.prompt()).unwrap();
    let drift = report.drift.unwrap();
    assert!(drift.hits.colour >= 0.99, "{drift:?}");
    assert!(drift.sharpness > 0.9, "{drift:?}");
}

#[test]
fn motion_confusion_is_diagonal_on_ground_truth_and_reversed_on_reversed_prompts() {
    let clips = clips(Split::Test);
    let mut right = MotionConfusion::default();
    let mut reversed = MotionConfusion::default();
    for c in &clips {
        right
            .add(&c.prompt(), &evaluate(&c.video, &c.prompt()).unwrap())
            .unwrap();
        let wrong = with_wrong_directions(c);
        reversed
            .add(&wrong, &evaluate(&c.video, &wrong).unwrap())
            .unwrap();
    }
    let total: usize = right.counts.iter().flatten().sum();
    let objects: usize = clips
        .iter()
        .map(|c| c.prompt().segments[0].objects.len())
        .sum();
    assert_eq!(total, objects);
    for (row, counts) in right.counts.iter().enumerate() {
        for (col, &n) in counts.iter().enumerate() {
            assert!(row == col || n == 0, "off the diagonal: {right:?}");
        }
        assert!(
            counts[row] > 0,
            "every motion occurs in {CLIPS} clips: {right:?}"
        );
    }
    assert_eq!(right.direction_agreement(), Some(1.0));
    assert_eq!(right.still_agreement(), Some(1.0));
    // Reversed directions are measured as their opposite; "still" objects prompted as moving
    // right are measured still.
    assert_eq!(reversed.direction_agreement(), Some(0.0));
    assert_eq!(reversed.still_agreement(), None);
    let (r, l) = (MotionClass::Right as usize, MotionClass::Left as usize);
    assert_eq!(reversed.counts[r][l], right.counts[l][l]);
    assert_eq!(
        reversed.counts[r][MotionClass::Still as usize],
        right.counts[0][0]
    );
    let table = right.markdown();
    assert_eq!(table.lines().count(), 7, "{table}");
    assert!(table.contains("| not tracked |"), "{table}");
}

#[test]
fn motion_confusion_counts_lost_blobs_and_refuses_another_prompts_report() {
    let world = world();
    let clip = world.clip(Split::Test, 0).unwrap();
    // A blank clip: no blob anywhere, every object is "not tracked".
    let (t, h, w) = (clip.video.frames(), clip.video.height(), clip.video.width());
    let blank = semgen_data::Video::new(t, h, w, vec![0; t * h * w * 3]).unwrap();
    let report = evaluate(&blank, &clip.prompt()).unwrap();
    let mut confusion = MotionConfusion::default();
    confusion.add(&clip.prompt(), &report).unwrap();
    let lost: usize = confusion
        .counts
        .iter()
        .map(|row| row[MotionClass::Lost as usize])
        .sum();
    assert_eq!(lost, clip.prompt().segments[0].objects.len());
    assert_eq!(confusion.direction_agreement(), None);
    // A report of a prompt with another object count is refused, not miscounted.
    let other = (1..50)
        .map(|i| world.clip(Split::Test, i).unwrap())
        .find(|c| c.prompt().segments[0].objects.len() != clip.prompt().segments[0].objects.len())
        .unwrap();
    let err = confusion.add(&other.prompt(), &report).unwrap_err();
    assert!(matches!(err, EvalError::ReportMismatch { .. }), "{err}");
    assert_eq!(
        lost,
        confusion.counts.iter().map(|row| row[5]).sum::<usize>()
    );
}

#[test]
fn shape_confusion_is_diagonal_on_ground_truth_and_counts_blurred_and_blank_clips() {
    let clips = clips(Split::Test);
    let mut right = ShapeConfusion::default();
    let mut blurred = ShapeConfusion::default();
    let mut blank = ShapeConfusion::default();
    for c in &clips {
        let prompt = c.prompt();
        right
            .add(&prompt, &evaluate(&c.video, &prompt).unwrap())
            .unwrap();
        blurred
            .add(&prompt, &evaluate(&box_blur(&c.video), &prompt).unwrap())
            .unwrap();
        let (t, h, w) = (c.video.frames(), c.video.height(), c.video.width());
        let black = semgen_data::Video::new(t, h, w, vec![0; t * h * w * 3]).unwrap();
        blank
            .add(&prompt, &evaluate(&black, &prompt).unwrap())
            .unwrap();
    }
    let objects: usize = clips
        .iter()
        .map(|c| c.prompt().segments[0].objects.len())
        .sum();
    let total = |c: &ShapeConfusion| c.counts.iter().flatten().flatten().sum::<usize>();
    assert_eq!(total(&right), objects);
    for table in &right.counts {
        for (row, counts) in table.iter().enumerate() {
            for (col, &n) in counts.iter().enumerate() {
                assert!(row == col || n == 0, "off the diagonal: {right:?}");
            }
        }
    }
    assert_eq!(right.accuracy(None), Some(1.0));
    assert_eq!(right.accuracy(Some(Size::Small)), Some(1.0));
    // A 5×5 box blur rounds the small objects' outlines first.
    let small = blurred.accuracy(Some(Size::Small)).unwrap();
    let large = blurred.accuracy(Some(Size::Large)).unwrap();
    assert!(
        small < 0.8 && small < large,
        "small {small:.3}, large {large:.3}"
    );
    // On black frames no object is found: every one lands in the last column, a miss.
    assert_eq!(total(&blank), objects);
    let not_found: usize = blank.counts.iter().flatten().map(|row| row[6]).sum();
    assert_eq!(not_found, objects);
    assert_eq!(blank.accuracy(None), Some(0.0));
    let table = right.markdown();
    assert_eq!(table.lines().count(), 8, "{table}");
    assert!(table.contains("| not found |"), "{table}");
    // A report of a prompt with another object count is refused, not miscounted.
    let (one, two) = (
        clips
            .iter()
            .find(|c| c.prompt().segments[0].objects.len() == 1)
            .unwrap(),
        clips
            .iter()
            .find(|c| c.prompt().segments[0].objects.len() == 2)
            .unwrap(),
    );
    let report = evaluate(&one.video, &one.prompt()).unwrap();
    let err = right.add(&two.prompt(), &report).unwrap_err();
    assert!(matches!(err, EvalError::ReportMismatch { .. }), "{err}");
    assert_eq!(total(&right), objects);
}

#[test]
fn frame_shapes_read_single_frames() {
    let oracle = Oracle::new(OracleConfig::default());
    let clips = clips(Split::Val);
    let (mut right, mut blurred) = (ShapeConfusion::default(), ShapeConfusion::default());
    for c in &clips {
        let scene = &c.prompt().segments[0];
        let last = c.video.frames() - 1;
        for (video, table) in [(&c.video, &mut right), (&box_blur(&c.video), &mut blurred)] {
            let shapes = oracle.frame_shapes(video, last, scene).unwrap();
            assert_eq!(shapes.len(), scene.objects.len());
            for (object, measured) in scene.objects.iter().zip(shapes) {
                table.add_object(object, measured);
            }
        }
    }
    // One frame of ground truth: right unless one object hides the other in that frame.
    let exact = right.accuracy(None).unwrap();
    assert!(exact > 0.97, "ground truth, last frames: {exact:.3}");
    let small = blurred.accuracy(Some(Size::Small)).unwrap();
    let large = blurred.accuracy(Some(Size::Large)).unwrap();
    assert!(
        small < 0.8 && small < large,
        "small {small:.3}, large {large:.3}"
    );
    // A black frame shows nothing; a frame past the end is an error, not a panic.
    let c = &clips[0];
    let scene = &c.prompt().segments[0];
    let (t, h, w) = (c.video.frames(), c.video.height(), c.video.width());
    let black = semgen_data::Video::new(t, h, w, vec![0; t * h * w * 3]).unwrap();
    let none = oracle.frame_shapes(&black, 0, scene).unwrap();
    assert!(none.iter().all(Option::is_none), "{none:?}");
    let err = oracle.frame_shapes(&c.video, t, scene).unwrap_err();
    assert_eq!(err, EvalError::NoFrame { t, frames: t });
}

/// Each frame's 5×5 box mean (edges clamped): a blur of about σ = 1.4 px.
fn box_blur(video: &semgen_data::Video) -> semgen_data::Video {
    let (t, h, w) = (video.frames(), video.height(), video.width());
    let src = video.as_bytes();
    let mut out = vec![0u8; src.len()];
    for k in 0..t {
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    let mut sum = 0u32;
                    for dy in -2isize..=2 {
                        for dx in -2isize..=2 {
                            let yy = (y as isize + dy).clamp(0, h as isize - 1) as usize;
                            let xx = (x as isize + dx).clamp(0, w as isize - 1) as usize;
                            sum += src[((k * h + yy) * w + xx) * 3 + c] as u32;
                        }
                    }
                    out[((k * h + y) * w + x) * 3 + c] = ((sum + 12) / 25) as u8;
                }
            }
        }
    }
    semgen_data::Video::new(t, h, w, out).unwrap()
}

#[test]
fn measured_motion_classes_follow_image_axes() {
    assert_eq!(MotionClass::measured(None, 1.5), MotionClass::Lost);
    assert_eq!(
        MotionClass::measured(Some([1.0, -1.0]), 1.5),
        MotionClass::Still
    );
    assert_eq!(
        MotionClass::measured(Some([3.0, 2.0]), 1.5),
        MotionClass::Right
    );
    assert_eq!(
        MotionClass::measured(Some([-3.0, 2.0]), 1.5),
        MotionClass::Left
    );
    assert_eq!(
        MotionClass::measured(Some([0.5, -4.0]), 1.5),
        MotionClass::Up
    );
    assert_eq!(
        MotionClass::measured(Some([0.5, 4.0]), 1.5),
        MotionClass::Down
    );
    assert_eq!(
        MotionClass::prompted(Motion::Moving(Direction::Up, Speed::Slowly)),
        MotionClass::Up
    );
}

#[test]
fn motion_binding_counts_own_and_swapped_motions_of_multi_object_prompts() {
    // Ground truth: every object of a segment whose objects were prompted different motions
    // does its own. With the motions of the first two objects swapped in the prompt, each of
    // them is measured doing the other's.
    let clips = clips(Split::Test);
    let (mut right, mut swapped) = (MotionConfusion::default(), MotionConfusion::default());
    let mut differing = 0;
    for c in &clips {
        let p = c.prompt();
        right.add(&p, &evaluate(&c.video, &p).unwrap()).unwrap();
        let objects = &p.segments[0].objects;
        if objects.len() == 2
            && MotionClass::prompted(objects[0].motion) != MotionClass::prompted(objects[1].motion)
        {
            differing += 1;
            let mut q = p.clone();
            let (a, b) = (objects[0].motion, objects[1].motion);
            q.segments[0].objects[0].motion = b;
            q.segments[0].objects[1].motion = a;
            swapped.add(&q, &evaluate(&c.video, &q).unwrap()).unwrap();
        }
    }
    assert!(
        differing >= 10,
        "{differing} two-object clips with differing motions"
    );
    assert_eq!(right.binding, [2 * differing, 0, 0]);
    assert_eq!(right.binding_rates(), Some((1.0, 0.0)));
    assert_eq!(swapped.binding, [0, 2 * differing, 0]);
    assert_eq!(swapped.binding_rates(), Some((0.0, 1.0)));
    // One-object clips count nothing; reports written before the field existed still parse.
    assert_eq!(MotionConfusion::default().binding_rates(), None);
    let old: MotionConfusion =
        serde_json::from_str(r#"{"counts":[[0,0,0,0,0,0],[0,0,0,0,0,0],[0,0,0,0,0,0],[0,0,0,0,0,0],[0,0,0,0,0,0]],"still_tolerance":1.5}"#)
            .unwrap();
    assert_eq!(old.binding, [0, 0, 0]);
}
