//! The VBench-style metrics (paper spec §4, tests of §6.2 item 8): exact values on synthetic
//! clips, orderings on Shapes clips, the Fréchet distance against closed forms, ΔM_drift on
//! clips that degrade at a known rate, and every error case.

use semgen_data::{ShapesWorld, Split, Video, WorldConfig};
use semgen_eval::metrics::{
    background_consistency, clip_feature, consistency, drift_over, drift_part_frames, drift_ranges,
    extract_features, frechet_distance, frechet_video_distance, imaging_quality,
    imaging_quality_frames, mean_absolute_difference, motion_smoothness, psnr, sub_video,
    subject_consistency, temporal_flickering, video_drift, ColourHistogram, DownsampledPixels,
    FeatureStats, FrameFeatures, Interpolator, MetricError, MetricSuite,
};

const SQRT2: f64 = std::f64::consts::SQRT_2;

fn world() -> ShapesWorld {
    ShapesWorld::new(WorldConfig {
        seed: 7,
        ..Default::default()
    })
    .unwrap()
}

/// A clip whose frame `t`, pixel `(y, x)`, channel `c` is `f(t, y, x, c)`.
fn synth(t: usize, h: usize, w: usize, f: impl Fn(usize, usize, usize, usize) -> u8) -> Video {
    let mut data = Vec::with_capacity(t * h * w * 3);
    for ti in 0..t {
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    data.push(f(ti, y, x, c));
                }
            }
        }
    }
    Video::new(t, h, w, data).unwrap()
}

/// The first frame of a Shapes clip, repeated `t` times.
fn still_shapes(t: usize) -> Video {
    world()
        .clip(Split::Val, 3)
        .unwrap()
        .video
        .select(&vec![0; t])
        .unwrap()
}

/// Vertical grey stripes of one pixel alternating 0 and `a`: every forward gradient is `a`.
fn stripes(a: u8) -> impl Fn(usize, usize) -> u8 {
    move |_y, x| if x % 2 == 0 { 0 } else { a }
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

/// xorshift64*, uniform in [-1, 1).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let v = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40;
        v as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
    fn set(&mut self, n: usize, d: usize) -> Vec<Vec<f32>> {
        (0..n)
            .map(|_| (0..d).map(|_| self.next()).collect())
            .collect()
    }
}

/// An extractor that returns fixed vectors (or fails), for testing the plumbing.
struct Fixed(Result<Vec<Vec<f32>>, MetricError>);
impl FrameFeatures for Fixed {
    fn features(&self, _video: &Video) -> Result<Vec<Vec<f32>>, MetricError> {
        self.0.clone()
    }
}

// ---- temporal flickering and motion smoothness -------------------------------------------------

#[test]
fn static_video_has_no_flicker_and_perfect_smoothness() {
    let still = still_shapes(9);
    assert_eq!(temporal_flickering(&still).unwrap(), 1.0);
    assert_eq!(
        motion_smoothness(&still, Interpolator::Average).unwrap(),
        1.0
    );
    assert_eq!(
        motion_smoothness(&still, Interpolator::BLOCK_MATCHING).unwrap(),
        1.0
    );
}

#[test]
fn flicker_formula_is_exact() {
    // Constant frames alternating 100 and 110: every consecutive MAE is 10.
    let v = synth(7, 4, 5, |t, _, _, _| if t % 2 == 0 { 100 } else { 110 });
    assert!(close(
        temporal_flickering(&v).unwrap(),
        245.0 / 255.0,
        1e-15
    ));
    // One channel changing by 30 between two frames: MAE 10.
    let v = synth(2, 3, 3, |t, _, _, c| if t == 1 && c == 0 { 30 } else { 0 });
    assert!(close(
        temporal_flickering(&v).unwrap(),
        245.0 / 255.0,
        1e-15
    ));
}

#[test]
fn alternating_frames_flicker_more_than_smooth_motion() {
    let world = world();
    for i in 0..4 {
        let clip = world.clip(Split::Val, i).unwrap().video;
        let other = world.clip(Split::Train, i).unwrap().video;
        // Frames alternate between this clip and another clip.
        let mut frames = Vec::new();
        for t in 0..clip.frames() {
            let src = if t % 2 == 0 { &clip } else { &other };
            frames.push(src.frame(t).unwrap().to_vec());
        }
        let alternating = Video::from_frames(clip.height(), clip.width(), frames).unwrap();
        let (smooth, flicker) = (
            temporal_flickering(&clip).unwrap(),
            temporal_flickering(&alternating).unwrap(),
        );
        assert!(smooth > 0.95, "clip {i}: TF {smooth}");
        assert!(
            flicker < smooth - 0.05,
            "clip {i}: TF {flicker} vs {smooth}"
        );
    }
}

#[test]
fn averaging_interpolator_is_exact_on_a_linear_ramp() {
    // Every pixel and channel changes linearly in time with its own offset and slope.
    let ramp = synth(9, 6, 7, |t, y, x, c| {
        (10 + 3 * y + 2 * x + c + t * (1 + (x + c) % 5)) as u8
    });
    assert_eq!(
        motion_smoothness(&ramp, Interpolator::Average).unwrap(),
        1.0
    );
    // A quadratic change t² misses by exactly 1 at every odd frame: ((2k)² + (2k+2)²)/2 − (2k+1)² = 1.
    let quadratic = synth(9, 3, 3, |t, _, _, _| (t * t) as u8);
    assert!(close(
        motion_smoothness(&quadratic, Interpolator::Average).unwrap(),
        254.0 / 255.0,
        1e-15
    ));
    // An even number of frames: the last odd frame (no right neighbour) is not used, so a
    // final jump goes unseen.
    let tail = synth(
        6,
        2,
        2,
        |t, _, _, _| if t == 5 { 200 } else { (10 * t) as u8 },
    );
    assert_eq!(
        motion_smoothness(&tail, Interpolator::Average).unwrap(),
        1.0
    );
}

/// A bright 8×8 square moving right by `speed` px per frame over a dark 32×40 background.
fn moving_square(speed: usize) -> Video {
    synth(9, 32, 40, move |t, y, x, _| {
        let x0 = 4 + speed * t;
        if (12..20).contains(&y) && (x0..x0 + 8).contains(&x) {
            220
        } else {
            20
        }
    })
}

#[test]
fn block_matching_recovers_a_translation_the_average_cannot() {
    let v = moving_square(2);
    let average = motion_smoothness(&v, Interpolator::Average).unwrap();
    // The average leaves half-bright 2-px strips on both sides of both edges: 4 strips of
    // 2×8 px with error 100, over 32·40 px.
    assert!(
        close(average, (255.0 - 6400.0 / 1280.0) / 255.0, 1e-12),
        "{average}"
    );
    let bm = Interpolator::BlockMatching {
        block: 4,
        radius: 3,
    };
    assert_eq!(motion_smoothness(&v, bm).unwrap(), 1.0);
    // Beyond the search radius block matching cannot follow either.
    let fast = moving_square(3);
    let small = Interpolator::BlockMatching {
        block: 4,
        radius: 1,
    };
    assert!(motion_smoothness(&fast, small).unwrap() < 1.0);
}

#[test]
fn real_shapes_clips_are_smoother_than_shuffled_ones() {
    let world = world();
    // A fixed permutation of 17 frames that separates neighbours.
    let order: Vec<usize> = (0..17).map(|t| (t * 7) % 17).collect();
    let (mut real_sum, mut shuffled_sum, mut bm_sum) = (0.0, 0.0, 0.0);
    for i in 0..6 {
        let clip = world.clip(Split::Val, i).unwrap().video;
        let shuffled = clip.select(&order).unwrap();
        for interp in [Interpolator::Average, Interpolator::BLOCK_MATCHING] {
            let real = motion_smoothness(&clip, interp).unwrap();
            let mixed = motion_smoothness(&shuffled, interp).unwrap();
            assert!(real >= mixed, "clip {i} {interp:?}: {real} < {mixed}");
            if interp == Interpolator::Average {
                real_sum += real;
                shuffled_sum += mixed;
            } else {
                bm_sum += real;
            }
        }
    }
    assert!(
        real_sum > shuffled_sum + 0.05,
        "{real_sum} vs {shuffled_sum}"
    );
    // Motion compensation predicts real clips better than averaging, on the whole (the objects
    // move 1 to 2.7 px between even frames; not on every clip, motions are sub-pixel).
    assert!(
        bm_sum > real_sum,
        "block matching {bm_sum} vs average {real_sum}"
    );
}

// ---- subject and background consistency ------------------------------------------------------

#[test]
fn constant_video_is_fully_consistent() {
    let constant = synth(6, 16, 16, |_, _, _, c| [30, 140, 200][c]);
    for v in [constant, still_shapes(6)] {
        let sc = subject_consistency(&v, &DownsampledPixels::default()).unwrap();
        let bc = background_consistency(&v, &ColourHistogram::default()).unwrap();
        assert!(close(sc, 1.0, 1e-12) && close(bc, 1.0, 1e-12), "{sc} {bc}");
    }
    // Zero feature vectors throughout are identical too.
    let zeros = Fixed(Ok(vec![vec![0.0; 4]; 5]));
    assert_eq!(subject_consistency(&still_shapes(5), &zeros).unwrap(), 1.0);
}

#[test]
fn consistency_formula_matches_hand_computation() {
    let f = |v: &[f32]| v.to_vec();
    // t=2: cos(f1,f2) = 0 twice → 0; t=3: cos(f2,f3) = 0, cos(f1,f3) = 1 → ½. S = (0 + ½)/2.
    let s = consistency(&[f(&[1.0, 0.0]), f(&[0.0, 1.0]), f(&[1.0, 0.0])]).unwrap();
    assert!(close(s, 0.25, 1e-15), "{s}");
    // Negative cosines count as 0; features are L2-normalised (scale does not matter).
    let s = consistency(&[f(&[1.0, 0.0]), f(&[-3.0, 0.0])]).unwrap();
    assert_eq!(s, 0.0);
    let s = consistency(&[f(&[2.0, 0.0]), f(&[5.0, 5.0])]).unwrap();
    assert!(close(s, 0.5f64.sqrt(), 1e-7), "{s}");
    // A zero vector against a non-zero one counts as unrelated.
    let s = consistency(&[f(&[1.0, 1.0]), f(&[0.0, 0.0])]).unwrap();
    assert_eq!(s, 0.0);
}

#[test]
fn a_background_change_lowers_background_consistency() {
    let world = world();
    let histogram = ColourHistogram::default();
    let pixels = DownsampledPixels::default();
    for i in 0..3 {
        let clip = world.clip(Split::Val, i).unwrap();
        let background = |c: &semgen_data::Clip| c.prompt().segments[0].background;
        // The next validation clip with another background colour.
        let other = (i + 1..)
            .map(|j| world.clip(Split::Val, j).unwrap())
            .find(|c| background(c) != background(&clip))
            .unwrap();
        let (a, b) = (clip.video, other.video);
        // First half of one clip, second half of another (a scene cut).
        let mut frames: Vec<Vec<u8>> = (0..8).map(|t| a.frame(t).unwrap().to_vec()).collect();
        frames.extend((8..17).map(|t| b.frame(t).unwrap().to_vec()));
        let cut = Video::from_frames(a.height(), a.width(), frames).unwrap();
        let (bc_a, bc_cut) = (
            background_consistency(&a, &histogram).unwrap(),
            background_consistency(&cut, &histogram).unwrap(),
        );
        let (sc_a, sc_cut) = (
            subject_consistency(&a, &pixels).unwrap(),
            subject_consistency(&cut, &pixels).unwrap(),
        );
        assert!(bc_a > 0.9, "clip {i}: BC {bc_a}");
        assert!(bc_cut < bc_a - 0.05, "clip {i}: BC {bc_cut} vs {bc_a}");
        assert!(sc_cut < sc_a, "clip {i}: SC {sc_cut} vs {sc_a}");
    }
}

#[test]
fn built_in_extractors_have_documented_shapes() {
    let v = synth(3, 5, 7, |t, y, x, c| {
        ((t * 50 + y * 20 + x * 10 + c) % 256) as u8
    });
    let h = ColourHistogram { bins: 3 }.features(&v).unwrap();
    assert_eq!(h.len(), 3);
    for f in &h {
        assert_eq!(f.len(), 27);
        assert!(close(f.iter().map(|&x| x as f64).sum(), 1.0, 1e-6));
    }
    // Cells larger than the frame still cover at least one pixel each.
    let p = DownsampledPixels { size: 8 }.features(&v).unwrap();
    assert!(p.iter().all(|f| f.len() == 8 * 8 * 3));
    assert!(p.iter().flatten().all(|&x| (-1.0..=1.0).contains(&x)));
    // A one-cell downsample is the frame's mean colour on [-1, 1].
    let white = synth(2, 4, 4, |_, _, _, _| 255);
    let one = DownsampledPixels { size: 1 }.features(&white).unwrap();
    assert_eq!(one, vec![vec![1.0f32; 3]; 2]);
    assert!(ColourHistogram::default()
        .name()
        .contains("colour-histogram"));
    assert!(extract_features(&DownsampledPixels::default(), &v).is_ok());
}

// ---- imaging quality -------------------------------------------------------------------------

#[test]
fn imaging_quality_has_a_stated_range() {
    let flat = synth(2, 8, 8, |_, _, _, _| 77);
    assert_eq!(imaging_quality(&flat).unwrap(), 0.0);
    let checker = synth(2, 8, 8, |_, y, x, _| if (x + y) % 2 == 0 { 0 } else { 255 });
    assert!(close(imaging_quality(&checker).unwrap(), 1.0, 1e-12));
    let s = stripes(100);
    let striped = synth(3, 8, 9, |_, y, x, _| s(y, x));
    assert!(close(
        imaging_quality(&striped).unwrap(),
        100.0 / (255.0 * SQRT2),
        1e-12
    ));
}

#[test]
fn blur_lowers_imaging_quality() {
    let clip = world().clip(Split::Val, 1).unwrap().video;
    let (h, w) = (clip.height(), clip.width());
    // 3×3 box blur (clamped edges).
    let blurred = synth(clip.frames(), h, w, |t, y, x, c| {
        let mut sum = 0u32;
        for dy in [-1isize, 0, 1] {
            for dx in [-1isize, 0, 1] {
                let yy = (y as isize + dy).clamp(0, h as isize - 1) as usize;
                let xx = (x as isize + dx).clamp(0, w as isize - 1) as usize;
                sum += clip.pixel(t, yy, xx).unwrap()[c] as u32;
            }
        }
        ((sum + 4) / 9) as u8
    });
    let (sharp, soft) = (
        imaging_quality(&clip).unwrap(),
        imaging_quality(&blurred).unwrap(),
    );
    assert!(soft < 0.8 * sharp, "{soft} vs {sharp}");
    assert_eq!(imaging_quality_frames(&clip).unwrap().len(), clip.frames());
}

// ---- ΔM_drift -------------------------------------------------------------------------------

#[test]
fn drift_parts_are_rounded_up() {
    assert_eq!(drift_part_frames(17, 1), 3); // 2.55 → 3
    assert_eq!(drift_part_frames(20, 1), 3); // exactly 3 (integer arithmetic)
    assert_eq!(drift_part_frames(65, 1), 10); // 9.75 → 10
    assert_eq!(drift_part_frames(129, 1), 20); // 19.35 → 20
    assert_eq!(drift_part_frames(100, 1), 15);
    assert_eq!(drift_part_frames(4, 0), 1);
    assert_eq!(drift_part_frames(10, 3), 3); // 1.5 → 2, raised to the minimum
    assert_eq!(drift_ranges(20, 2).unwrap(), (0..3, 17..20));
    assert_eq!(drift_ranges(6, 3).unwrap(), (0..3, 3..6));
    assert!(matches!(
        drift_ranges(5, 3),
        Err(MetricError::TooFewFrames {
            needed: 6,
            frames: 5,
            ..
        })
    ));
}

#[test]
fn drift_over_calls_the_metric_on_both_ends() {
    let mut seen = Vec::new();
    let d = drift_over::<MetricError, _>(40, 2, |r| {
        seen.push(r.clone());
        Ok(r.start as f64)
    })
    .unwrap();
    assert_eq!(seen, vec![0..6, 34..40]);
    assert_eq!((d.start, d.end, d.delta), (0.0, 34.0, 34.0));
    // Errors of the metric pass through.
    let e = drift_over(40, 2, |_| {
        Err::<f64, _>(MetricError::InvalidParameter("x".into()))
    });
    assert!(matches!(e, Err(MetricError::InvalidParameter(_))));
}

#[test]
fn drift_is_zero_on_a_stationary_clip() {
    let still = still_shapes(20);
    let report = MetricSuite::stand_in().report(&still).unwrap();
    let drift = report.drift.clone().unwrap();
    assert_eq!(drift.part_frames, 3);
    for (name, m) in drift.measures() {
        assert_eq!(m.delta, 0.0, "{name}: {m:?}");
    }
    assert_eq!(drift.mean_delta(), 0.0);
    assert_eq!(report.temporal_flickering, 1.0);
    assert_eq!(report.motion_smoothness, 1.0);
}

#[test]
fn drift_equals_the_known_drop_of_a_linear_fade() {
    // Stripe contrast fades linearly, A_t = 200 − 8t over 20 frames; imaging quality of frame t
    // is A_t / (255·√2). Parts of 3 frames: mean A is 192 at the start, 56 at the end.
    let clip = synth(20, 8, 10, |t, y, x, _| stripes((200 - 8 * t) as u8)(y, x));
    let expected = (192.0 - 56.0) / (255.0 * SQRT2);
    let d = video_drift(&clip, 1, imaging_quality).unwrap();
    assert!(close(d.start, 192.0 / (255.0 * SQRT2), 1e-12));
    assert!(close(d.delta, expected, 1e-12), "{d:?}");
    let report = MetricSuite::stand_in().report(&clip).unwrap();
    assert!(close(
        report.drift.unwrap().imaging_quality.delta,
        expected,
        1e-12
    ));
}

#[test]
fn drift_equals_the_known_rise_of_flicker() {
    // v_t = 128 + (−1)^t · t: |v_{t+1} − v_t| = 2t + 1. Start frames 0..3: MAE 1, 3 → 2;
    // end frames 17..20: MAE 35, 37 → 36. ΔTF = 34 / 255.
    let clip = synth(20, 4, 4, |t, _, _, _| {
        if t % 2 == 0 {
            128 + t as u8
        } else {
            128 - t as u8
        }
    });
    let d = video_drift(&clip, 2, temporal_flickering).unwrap();
    assert!(close(d.start, 253.0 / 255.0, 1e-15) && close(d.end, 219.0 / 255.0, 1e-15));
    assert!(close(d.delta, 34.0 / 255.0, 1e-15), "{d:?}");
}

// ---- the report ------------------------------------------------------------------------------

#[test]
fn report_collects_every_metric_and_serialises() {
    let clip = world().clip(Split::Val, 2).unwrap().video;
    let suite = MetricSuite::stand_in();
    let report = suite.report(&clip).unwrap();
    assert_eq!(report.frames, 17);
    assert_eq!(
        report.temporal_flickering,
        temporal_flickering(&clip).unwrap()
    );
    assert_eq!(
        report.subject_consistency,
        subject_consistency(&clip, &DownsampledPixels::default()).unwrap()
    );
    for (name, s) in report.scores() {
        assert!((0.0..=1.0).contains(&s), "{name} = {s}");
    }
    // The drift parts are the first and last 3 frames.
    let drift = report.drift.clone().unwrap();
    let start = sub_video(&clip, 0..3).unwrap();
    assert_eq!(
        drift.motion_smoothness.start,
        motion_smoothness(&start, Interpolator::Average).unwrap()
    );
    let json = serde_json::to_value(&report).unwrap();
    for key in [
        "subject_consistency",
        "background_consistency",
        "temporal_flickering",
        "motion_smoothness",
        "imaging_quality",
        "drift",
    ] {
        assert!(json.get(key).is_some(), "{key} missing from {json}");
    }
    assert_eq!(json["drift"]["part_frames"], 3);
    assert_eq!(json["interpolator"], "average");
    // A plugged-in extractor and another interpolator show up in the report.
    let custom = Fixed(Ok(vec![vec![1.0, 2.0]; 17]));
    let report = MetricSuite::new(&custom, &custom)
        .with_interpolator(Interpolator::BLOCK_MATCHING)
        .report(&clip);
    // The fixed extractor returns 17 vectors for the 3-frame drift parts too; that is allowed.
    let report = report.unwrap();
    assert_eq!(report.subject_features, "custom");
    assert!(report.interpolator.starts_with("block-matching"));
    assert!(close(report.subject_consistency, 1.0, 1e-12));
    // Short clips have no drift.
    let short = clip.select(&[0, 1, 2, 3, 4]).unwrap();
    assert!(suite.report(&short).unwrap().drift.is_none());
}

// ---- Fréchet distance ------------------------------------------------------------------------

#[test]
fn frechet_of_a_set_with_itself_is_zero() {
    let a = Rng(1).set(60, 6);
    assert!(frechet_distance(&a, &a).unwrap() < 1e-9);
}

#[test]
fn frechet_of_shifted_means_is_the_squared_shift() {
    let a = Rng(2).set(50, 5);
    let shift = [0.5f32, -1.0, 0.25, 2.0, 0.0];
    let b: Vec<Vec<f32>> = a
        .iter()
        .map(|v| v.iter().zip(&shift).map(|(x, s)| x + s).collect())
        .collect();
    let expected: f64 = shift.iter().map(|&s| (s as f64).powi(2)).sum();
    let d = frechet_distance(&a, &b).unwrap();
    assert!(close(d, expected, 1e-5), "{d} vs {expected}");
}

#[test]
fn frechet_is_symmetric_and_matches_closed_forms() {
    let mut rng = Rng(3);
    let (a, b) = (rng.set(40, 4), rng.set(30, 4));
    let (ab, ba) = (
        frechet_distance(&a, &b).unwrap(),
        frechet_distance(&b, &a).unwrap(),
    );
    assert!(ab > 0.0 && close(ab, ba, 1e-10), "{ab} vs {ba}");

    // Diagonal covariances: the points μ ± c_i e_i have mean μ and covariance 2c_i²/(2d − 1).
    let star = |mu: &[f32], c: &[f32]| -> Vec<Vec<f32>> {
        let d = mu.len();
        let mut set = Vec::new();
        for i in 0..d {
            for sign in [1.0f32, -1.0] {
                let mut p = mu.to_vec();
                p[i] += sign * c[i];
                set.push(p);
            }
        }
        set
    };
    let (mu_a, c_a) = ([0.0f32, 1.0, 2.0], [1.0f32, 2.0, 0.5]);
    let (mu_b, c_b) = ([0.5f32, 1.0, 1.0], [3.0f32, 2.0, 1.5]);
    let var = |c: f32| 2.0 * (c as f64).powi(2) / 5.0;
    let expected: f64 = (0..3)
        .map(|i| {
            ((mu_a[i] - mu_b[i]) as f64).powi(2) + (var(c_a[i]).sqrt() - var(c_b[i]).sqrt()).powi(2)
        })
        .sum();
    let d = frechet_distance(&star(&mu_a, &c_a), &star(&mu_b, &c_b)).unwrap();
    assert!(close(d, expected, 1e-9), "{d} vs {expected}");
    // Same means, different covariances: strictly positive.
    let d = frechet_distance(&star(&mu_a, &c_a), &star(&mu_a, &c_b)).unwrap();
    assert!(d > 0.1, "{d}");

    // A scaled copy (full, non-diagonal covariance): Σ_b = k²Σ_a, μ_b = kμ_a, so the distance
    // is (1 − k)² (|μ_a|² + Tr Σ_a).
    let a = Rng(4).set(80, 5);
    let k = 1.7f32;
    let b: Vec<Vec<f32>> = a
        .iter()
        .map(|v| v.iter().map(|x| x * k).collect())
        .collect();
    let stats = FeatureStats::from_features(&a).unwrap();
    let mu2: f64 = stats.mean.iter().map(|m| m * m).sum();
    let trace: f64 = (0..5).map(|i| stats.covariance[i * 5 + i]).sum();
    let expected = (1.0 - k as f64).powi(2) * (mu2 + trace);
    let d = frechet_distance(&a, &b).unwrap();
    assert!(close(d, expected, 1e-5 * expected), "{d} vs {expected}");
}

#[test]
fn frechet_video_distance_separates_real_from_altered_clips() {
    let world = world();
    let extractor = ColourHistogram { bins: 2 };
    let val: Vec<Video> = (0..10)
        .map(|i| world.clip(Split::Val, i).unwrap().video)
        .collect();
    let train: Vec<Video> = (0..10)
        .map(|i| world.clip(Split::Train, i).unwrap().video)
        .collect();
    // Colour-inverted copies of the validation clips.
    let inverted: Vec<Video> = val
        .iter()
        .map(|v| {
            let bytes = v.as_bytes().iter().map(|&p| 255 - p).collect();
            Video::new(v.frames(), v.height(), v.width(), bytes).unwrap()
        })
        .collect();
    let same = frechet_video_distance(&val, &val, &extractor).unwrap();
    let real = frechet_video_distance(&val, &train, &extractor).unwrap();
    let altered = frechet_video_distance(&val, &inverted, &extractor).unwrap();
    assert!(same < 1e-9, "{same}");
    assert!(altered > 2.0 * real, "real {real}, inverted {altered}");
    // A clip's feature is the mean of its frame features.
    let f = clip_feature(&val[0], &extractor).unwrap();
    let frames = extractor.features(&val[0]).unwrap();
    let mean0 = frames.iter().map(|v| v[0] as f64).sum::<f64>() / frames.len() as f64;
    assert!(close(f[0] as f64, mean0, 1e-6));
}

// ---- errors ----------------------------------------------------------------------------------

#[test]
fn bad_inputs_are_errors_not_panics() {
    let one = synth(1, 4, 4, |_, _, _, _| 9);
    let two = synth(2, 4, 4, |_, _, _, _| 9);
    assert!(matches!(
        temporal_flickering(&one),
        Err(MetricError::TooFewFrames {
            needed: 2,
            frames: 1,
            ..
        })
    ));
    assert!(matches!(
        motion_smoothness(&two, Interpolator::Average),
        Err(MetricError::TooFewFrames { needed: 3, .. })
    ));
    assert!(matches!(
        subject_consistency(&one, &DownsampledPixels::default()),
        Err(MetricError::TooFewFrames { .. })
    ));
    assert!(matches!(
        MetricSuite::stand_in().report(&two),
        Err(MetricError::TooFewFrames { .. })
    ));
    let tiny = synth(3, 1, 5, |_, _, _, _| 0);
    assert!(matches!(
        imaging_quality(&tiny),
        Err(MetricError::FrameTooSmall { .. })
    ));
    assert!(matches!(
        mean_absolute_difference(&one, &two),
        Err(MetricError::SizeMismatch {
            a: [1, 4, 4],
            b: [2, 4, 4]
        })
    ));
    assert_eq!(mean_absolute_difference(&two, &two).unwrap(), 0.0);
    assert!(matches!(
        psnr(&one, &two),
        Err(MetricError::SizeMismatch { .. })
    ));
    // Every byte 10 off: MSE 100, 10 · log10(255² / 100) dB.
    let lighter = synth(2, 4, 4, |_, _, _, _| 10);
    let want = 10.0 * (255.0f64 * 255.0 / 100.0).log10();
    let darker = synth(2, 4, 4, |_, _, _, _| 0);
    assert!((psnr(&darker, &lighter).unwrap() - want).abs() < 1e-9);
    assert!(psnr(&two, &two).unwrap() > 100.0);
    // Bad parameters.
    assert!(matches!(
        motion_smoothness(
            &two.select(&[0, 1, 0]).unwrap(),
            Interpolator::BlockMatching {
                block: 0,
                radius: 1
            }
        ),
        Err(MetricError::InvalidParameter(_))
    ));
    assert!(matches!(
        ColourHistogram { bins: 0 }.features(&two),
        Err(MetricError::InvalidParameter(_))
    ));
    assert!(matches!(
        DownsampledPixels { size: 0 }.features(&two),
        Err(MetricError::InvalidParameter(_))
    ));
    assert!(Interpolator::Average
        .interpolate(&[0; 12], &[0; 11], 2, 2)
        .is_err());
    assert!(sub_video(&two, 1..1).is_err() && sub_video(&two, 0..3).is_err());
    // Feature sets.
    let empty: Vec<Vec<f32>> = Vec::new();
    let good = Rng(5).set(4, 3);
    assert!(matches!(
        frechet_distance(&empty, &good),
        Err(MetricError::EmptyFeatures { .. })
    ));
    assert!(matches!(
        frechet_distance(&good[..1], &good),
        Err(MetricError::TooFewFeatures {
            needed: 2,
            got: 1,
            ..
        })
    ));
    assert!(matches!(
        frechet_distance(&good, &Rng(6).set(4, 2)),
        Err(MetricError::DimensionMismatch {
            expected: 3,
            got: 2,
            ..
        })
    ));
    let ragged = vec![vec![1.0, 2.0], vec![1.0]];
    assert!(matches!(
        frechet_distance(&ragged, &good),
        Err(MetricError::DimensionMismatch { .. })
    ));
    let nan = vec![vec![1.0, 2.0], vec![f32::NAN, 0.0]];
    assert!(matches!(
        frechet_distance(&nan, &nan),
        Err(MetricError::NonFinite { index: 1, .. })
    ));
    assert!(matches!(
        consistency(&[vec![], vec![]]),
        Err(MetricError::ZeroDimension { .. })
    ));
    assert!(matches!(
        consistency(&good[..1]),
        Err(MetricError::TooFewFeatures { .. })
    ));
    // Extractors that misbehave or fail.
    let clip = still_shapes(4);
    let ragged = Fixed(Ok(vec![vec![1.0, 2.0], vec![1.0]]));
    assert!(matches!(
        background_consistency(&clip, &ragged),
        Err(MetricError::DimensionMismatch { .. })
    ));
    let failing = Fixed(Err(MetricError::Extractor {
        name: "encoder".into(),
        message: "out of memory".into(),
    }));
    let e = subject_consistency(&clip, &failing).unwrap_err();
    assert!(e.to_string().contains("out of memory"), "{e}");
    assert!(matches!(
        clip_feature(&clip, &Fixed(Ok(vec![]))),
        Err(MetricError::EmptyFeatures { .. })
    ));
    let d = video_drift(&one, 2, temporal_flickering);
    assert!(matches!(d, Err(MetricError::TooFewFrames { .. })));
}
