//! The Shapes-world oracle (spec `shapes-world.md`, last section): measures whether a clip shows
//! what its structured prompt says, from the frames alone.
//!
//! For each segment of the prompt (a short clip is one segment) and each object:
//! - **colour**: the object's pixels are those within RGB distance 60 of its colour (and nearer to
//!   it than to the prompt's other colours, so that orange and yellow objects do not merge); its
//!   blob is the largest 8-connected component of them. Hit if the blob covers at least 30 % of
//!   the prompted shape's area in at least 80 % of the segment's frames;
//! - **motion**: the blob centroid's displacement between the first and last frame where the blob
//!   is found. Hit if it moves along the prompted direction by at least half the prompted
//!   displacement, or by less than 1.5 px in total for "staying still";
//! - **shape**: the six shapes are rasterised at the blob's centroid with the blob's area; hit if
//!   the prompted shape has the highest IoU with the blob, summed over the segment's frames;
//! - **background**: the per-channel median of the pixels outside all blobs is nearest to the
//!   prompted background colour.
//!
//! For a story, drift is the drop of these hit rates (and of frame sharpness, relative) from the
//! first to the last quarter of its segments.

use semgen_data::shapes::coverage;
use semgen_data::{
    Background, Colour, Direction, Motion, ObjectPrompt, ScenePrompt, Shape, ShapesPrompt, Size,
    Video,
};
use serde::{Deserialize, Serialize};

/// Why a clip cannot be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    #[error("the prompt has no segments")]
    NoSegments,
    #[error("segment {segment} of the prompt has no objects")]
    NoObjects { segment: usize },
    #[error("{frames} frames cannot be split into {segments} segments of equal length (need 1 + {segments}·S frames)")]
    SegmentMismatch { frames: usize, segments: usize },
    #[error("frame {t} does not exist: the video has {frames} frames")]
    NoFrame { t: usize, frames: usize },
    #[error("the report does not belong to the prompt: {report} segments/objects in the report, {prompt} in the prompt")]
    ReportMismatch { report: String, prompt: String },
}

/// Thresholds of the oracle; the defaults are the spec's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OracleConfig {
    /// Largest RGB distance of an object pixel from the object's colour.
    pub colour_distance: f64,
    /// Smallest blob area, as a fraction of the prompted shape's area.
    pub min_area_fraction: f64,
    /// Smallest fraction of frames in which the blob must be found.
    pub min_frame_fraction: f64,
    /// Smallest displacement along the prompted direction, as a fraction of the prompted one.
    pub min_motion_fraction: f64,
    /// Largest total displacement of a still object, in pixels.
    pub still_tolerance: f64,
}

impl Default for OracleConfig {
    fn default() -> Self {
        Self {
            colour_distance: 60.0,
            min_area_fraction: 0.3,
            min_frame_fraction: 0.8,
            min_motion_fraction: 0.5,
            still_tolerance: 1.5,
        }
    }
}

/// What the oracle measured for one object in one segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectReport {
    pub colour: bool,
    pub motion: bool,
    pub shape: bool,
    /// Fraction of frames in which the blob was found.
    pub found_fraction: f64,
    /// Centroid displacement `(dx, dy)` between the first and last frame with a blob.
    pub displacement: Option<[f64; 2]>,
    /// The shape with the highest IoU, if the blob was found at all.
    pub best_shape: Option<Shape>,
}

/// What the oracle measured for one segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentReport {
    /// First and last frame (inclusive).
    pub frames: (usize, usize),
    pub objects: Vec<ObjectReport>,
    pub background: bool,
    /// Mean squared Laplacian of the luminance, a sharpness measure.
    pub sharpness: f64,
}

/// Hit rates in `[0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct HitRates {
    pub colour: f64,
    pub motion: f64,
    pub shape: f64,
    pub background: f64,
}

impl HitRates {
    /// The rates over a set of segments (objects weigh equally).
    pub fn of(segments: &[SegmentReport]) -> Self {
        let objects: Vec<&ObjectReport> = segments.iter().flat_map(|s| &s.objects).collect();
        let rate = |hit: fn(&ObjectReport) -> bool| {
            objects.iter().filter(|o| hit(o)).count() as f64 / objects.len().max(1) as f64
        };
        Self {
            colour: rate(|o| o.colour),
            motion: rate(|o| o.motion),
            shape: rate(|o| o.shape),
            background: segments.iter().filter(|s| s.background).count() as f64
                / segments.len().max(1) as f64,
        }
    }

    /// The mean of several rates (e.g. over clips).
    pub fn mean(rates: &[HitRates]) -> Self {
        let n = rates.len().max(1) as f64;
        let sum = |f: fn(&HitRates) -> f64| rates.iter().map(f).sum::<f64>() / n;
        Self {
            colour: sum(|r| r.colour),
            motion: sum(|r| r.motion),
            shape: sum(|r| r.shape),
            background: sum(|r| r.background),
        }
    }
}

/// The drop from the first to the last quarter of a story's segments.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Drift {
    /// First-quarter minus last-quarter hit rates.
    pub hits: HitRates,
    /// Relative sharpness drop: `1 - last / first`.
    pub sharpness: f64,
}

/// The oracle's verdict on a clip.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipReport {
    pub segments: Vec<SegmentReport>,
    /// Hit rates over all segments and objects.
    pub hits: HitRates,
    /// For prompts of two or more segments.
    pub drift: Option<Drift>,
}

/// A direction, "still" or "not tracked": one row or column of a [`MotionConfusion`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MotionClass {
    Still,
    Right,
    Left,
    Up,
    Down,
    /// The blob was found in fewer than two frames, so it has no displacement.
    Lost,
}

impl MotionClass {
    /// Rows and columns of a [`MotionConfusion`], in order (`Lost` is a column only).
    pub const ALL: [MotionClass; 6] = [
        MotionClass::Still,
        MotionClass::Right,
        MotionClass::Left,
        MotionClass::Up,
        MotionClass::Down,
        MotionClass::Lost,
    ];

    /// The class of a prompted motion (speed ignored).
    pub fn prompted(motion: Motion) -> Self {
        match motion {
            Motion::Still => MotionClass::Still,
            Motion::Moving(Direction::Right, _) => MotionClass::Right,
            Motion::Moving(Direction::Left, _) => MotionClass::Left,
            Motion::Moving(Direction::Up, _) => MotionClass::Up,
            Motion::Moving(Direction::Down, _) => MotionClass::Down,
        }
    }

    /// The class of a measured displacement: still under `still_tolerance` px (the oracle's
    /// threshold for "staying still"), otherwise the dominant axis (ties go to the
    /// horizontal one), image axes (up = towards row 0).
    pub fn measured(displacement: Option<[f64; 2]>, still_tolerance: f64) -> Self {
        match displacement {
            None => MotionClass::Lost,
            Some([dx, dy]) if (dx * dx + dy * dy).sqrt() < still_tolerance => MotionClass::Still,
            Some([dx, dy]) if dx.abs() >= dy.abs() => {
                if dx > 0.0 {
                    MotionClass::Right
                } else {
                    MotionClass::Left
                }
            }
            Some([_, dy]) => {
                if dy > 0.0 {
                    MotionClass::Down
                } else {
                    MotionClass::Up
                }
            }
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            MotionClass::Still => "still",
            MotionClass::Right => "right",
            MotionClass::Left => "left",
            MotionClass::Up => "up",
            MotionClass::Down => "down",
            MotionClass::Lost => "not tracked",
        }
    }
}

/// Prompted motion against measured motion, counted per object and segment over many clips.
///
/// The motion hit rate alone cannot tell a model that moves objects the wrong way from one
/// that moves them too little; this can. A model that ignores the direction in its prompt
/// spreads each moving row evenly over the four directions (direction agreement near 1/4),
/// one that follows it concentrates the row on its diagonal.
///
/// ```
/// use semgen_data::{ShapesWorld, Split, WorldConfig};
/// use semgen_eval::oracle::MotionConfusion;
///
/// let world = ShapesWorld::new(WorldConfig::default())?;
/// let mut confusion = MotionConfusion::default();
/// for i in 0..4 {
///     let clip = world.clip(Split::Test, i)?;
///     let report = semgen_eval::evaluate(&clip.video, &clip.prompt())?;
///     confusion.add(&clip.prompt(), &report)?;
/// }
/// assert_eq!(confusion.direction_agreement(), Some(1.0));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MotionConfusion {
    /// `counts[prompted][measured]`, rows the first five of [`MotionClass::ALL`] (nothing is
    /// prompted as lost), columns all six.
    pub counts: [[usize; 6]; 5],
    /// The displacement under which a measured motion is "still" (the oracle's threshold).
    pub still_tolerance: f64,
    /// Binding of motion to objects: over the tracked objects of segments where another object
    /// was prompted a different motion class, how many were measured doing their own prompted
    /// motion, another object's, or neither (`[own, other's, neither]`). A model that gives each
    /// object of "a red square moving up and a blue ring moving down" either motion regardless
    /// of which object it belongs to has as many "other's" as "own".
    #[serde(default)]
    pub binding: [usize; 3],
}

impl Default for MotionConfusion {
    fn default() -> Self {
        Self {
            counts: [[0; 6]; 5],
            still_tolerance: OracleConfig::default().still_tolerance,
            binding: [0; 3],
        }
    }
}

impl MotionConfusion {
    /// Counts every object of every segment of `report`, which must be the oracle's report on
    /// `prompt` (the same segments, the same objects in order).
    pub fn add(&mut self, prompt: &ShapesPrompt, report: &ClipReport) -> Result<(), EvalError> {
        check_layout(prompt, report)?;
        for (scene, segment) in prompt.segments.iter().zip(&report.segments) {
            let prompted: Vec<MotionClass> = scene
                .objects
                .iter()
                .map(|o| MotionClass::prompted(o.motion))
                .collect();
            for (i, measured) in segment.objects.iter().enumerate() {
                let own = prompted[i];
                let got = MotionClass::measured(measured.displacement, self.still_tolerance);
                self.counts[own as usize][got as usize] += 1;
                let others: Vec<MotionClass> = (0..prompted.len())
                    .filter(|&j| j != i && prompted[j] != own)
                    .map(|j| prompted[j])
                    .collect();
                if others.is_empty() || got == MotionClass::Lost {
                    continue;
                }
                let k = if got == own {
                    0
                } else if others.contains(&got) {
                    1
                } else {
                    2
                };
                self.binding[k] += 1;
            }
        }
        Ok(())
    }

    /// Of the objects counted in [`Self::binding`], the fractions measured doing their own
    /// prompted motion and another object's, `(own, other's)`. `None` before any such object.
    pub fn binding_rates(&self) -> Option<(f64, f64)> {
        let total: usize = self.binding.iter().sum();
        (total > 0).then(|| {
            (
                self.binding[0] as f64 / total as f64,
                self.binding[1] as f64 / total as f64,
            )
        })
    }

    /// Of the objects prompted as moving whose blob was tracked, the fraction measured moving
    /// in the prompted direction (whatever the distance). `None` before any such object.
    pub fn direction_agreement(&self) -> Option<f64> {
        let (mut agree, mut total) = (0, 0);
        for row in 1..5 {
            agree += self.counts[row][row];
            total += self.counts[row][..5].iter().sum::<usize>();
        }
        (total > 0).then(|| agree as f64 / total as f64)
    }

    /// Of the objects prompted as still whose blob was tracked, the fraction measured still.
    pub fn still_agreement(&self) -> Option<f64> {
        let total: usize = self.counts[0][..5].iter().sum();
        (total > 0).then(|| self.counts[0][0] as f64 / total as f64)
    }

    /// The table in Markdown, rows prompted, columns measured.
    pub fn markdown(&self) -> String {
        let mut out = String::from("| prompted \\ measured |");
        for c in MotionClass::ALL {
            out.push_str(&format!(" {} |", c.name()));
        }
        out.push_str("\n|---|");
        out.push_str(&"---|".repeat(6));
        for (row, class) in MotionClass::ALL[..5].iter().enumerate() {
            out.push_str(&format!("\n| {} |", class.name()));
            for n in self.counts[row] {
                out.push_str(&format!(" {n} |"));
            }
        }
        out.push('\n');
        out
    }
}

/// Prompted shape against the shape the oracle matched best, counted per object and segment,
/// apart for small and large objects.
///
/// The shape hit rate alone cannot tell a decoder that rounds every outline into a circle from
/// one that loses the object; this can. Degrading ground truth shows where the shape check is
/// lost first: on the small objects (`cargo run --release -p semgen-eval --example degrade`).
///
/// ```
/// use semgen_data::{ShapesWorld, Split, WorldConfig};
/// use semgen_eval::oracle::ShapeConfusion;
///
/// let world = ShapesWorld::new(WorldConfig::default())?;
/// let mut confusion = ShapeConfusion::default();
/// for i in 0..4 {
///     let clip = world.clip(Split::Test, i)?;
///     let report = semgen_eval::evaluate(&clip.video, &clip.prompt())?;
///     confusion.add(&clip.prompt(), &report)?;
/// }
/// assert_eq!(confusion.accuracy(None), Some(1.0));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShapeConfusion {
    /// `counts[size][prompted][measured]`: sizes in [`Size::ALL`] order, rows in [`Shape::ALL`]
    /// order, columns the same six shapes and then "not found" (no blob in any frame).
    pub counts: [[[usize; 7]; 6]; 2],
}

impl ShapeConfusion {
    /// Counts every object of every segment of `report`, which must be the oracle's report on
    /// `prompt` (the same segments, the same objects in order).
    pub fn add(&mut self, prompt: &ShapesPrompt, report: &ClipReport) -> Result<(), EvalError> {
        check_layout(prompt, report)?;
        for (scene, segment) in prompt.segments.iter().zip(&report.segments) {
            for (object, measured) in scene.objects.iter().zip(&segment.objects) {
                self.add_object(object, measured.best_shape);
            }
        }
        Ok(())
    }

    /// Counts one object: prompted as `object`, matched best by `measured` (`None`: not found),
    /// e.g. one of [`Oracle::frame_shapes`]' answers.
    pub fn add_object(&mut self, object: &ObjectPrompt, measured: Option<Shape>) {
        // Vocabulary enums are declared in their `ALL` order.
        let column = measured.map_or(6, |b| b as usize);
        self.counts[object.size as usize][object.shape as usize][column] += 1;
    }

    /// The fraction of counted objects (of one size, or all) whose prompted shape matched best:
    /// the oracle's shape hit rate over them. `None` before any such object.
    pub fn accuracy(&self, size: Option<Size>) -> Option<f64> {
        let (mut right, mut total) = (0, 0);
        for (k, table) in self.counts.iter().enumerate() {
            if size.is_some_and(|s| Size::ALL[k] != s) {
                continue;
            }
            for (row, counts) in table.iter().enumerate() {
                right += counts[row];
                total += counts.iter().sum::<usize>();
            }
        }
        (total > 0).then(|| right as f64 / total as f64)
    }

    /// The table in Markdown (both sizes added), rows prompted, columns measured.
    pub fn markdown(&self) -> String {
        let mut out = String::from("| prompted \\ measured |");
        for shape in Shape::ALL {
            out.push_str(&format!(" {shape} |"));
        }
        out.push_str(" not found |\n|---|");
        out.push_str(&"---|".repeat(7));
        for (row, shape) in Shape::ALL.iter().enumerate() {
            out.push_str(&format!("\n| {shape} |"));
            for column in 0..7 {
                let n: usize = self.counts.iter().map(|t| t[row][column]).sum();
                out.push_str(&format!(" {n} |"));
            }
        }
        out.push('\n');
        out
    }
}

/// The error for a report whose segments or objects are not the prompt's.
fn check_layout(prompt: &ShapesPrompt, report: &ClipReport) -> Result<(), EvalError> {
    let layout = |counts: Vec<usize>| {
        counts
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join("+")
    };
    let ours: Vec<usize> = report.segments.iter().map(|s| s.objects.len()).collect();
    let theirs: Vec<usize> = prompt.segments.iter().map(|s| s.objects.len()).collect();
    if ours != theirs {
        return Err(EvalError::ReportMismatch {
            report: layout(ours),
            prompt: layout(theirs),
        });
    }
    Ok(())
}

/// Evaluates `video` against `prompt` with the spec's thresholds.
///
/// ```
/// use semgen_data::{ShapesWorld, Split, WorldConfig};
///
/// let world = ShapesWorld::new(WorldConfig::default())?;
/// let clip = world.clip(Split::Test, 0)?;
/// let report = semgen_eval::evaluate(&clip.video, &clip.prompt())?;
/// assert_eq!(report.hits.colour, 1.0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn evaluate(video: &Video, prompt: &ShapesPrompt) -> Result<ClipReport, EvalError> {
    Oracle::new(OracleConfig::default()).evaluate(video, prompt)
}

/// The oracle with its thresholds.
#[derive(Debug, Clone, Default)]
pub struct Oracle {
    config: OracleConfig,
}

/// The largest blob of an object in one frame.
struct Blob {
    area: usize,
    centroid: [f64; 2],
    /// Frame pixel indices.
    pixels: Vec<usize>,
}

impl Oracle {
    /// An oracle with the given thresholds.
    pub fn new(config: OracleConfig) -> Self {
        Self { config }
    }

    /// Evaluates every segment of `prompt` on the matching frames of `video`.
    pub fn evaluate(&self, video: &Video, prompt: &ShapesPrompt) -> Result<ClipReport, EvalError> {
        let n = prompt.segments.len();
        if n == 0 {
            return Err(EvalError::NoSegments);
        }
        if let Some(segment) = prompt.segments.iter().position(|s| s.objects.is_empty()) {
            return Err(EvalError::NoObjects { segment });
        }
        let t = video.frames();
        if t < 2 || !(t - 1).is_multiple_of(n) {
            return Err(EvalError::SegmentMismatch {
                frames: t,
                segments: n,
            });
        }
        let steps = (t - 1) / n;
        let segments: Vec<SegmentReport> = prompt
            .segments
            .iter()
            .enumerate()
            .map(|(k, scene)| self.segment(video, scene, k * steps, (k + 1) * steps))
            .collect();
        let hits = HitRates::of(&segments);
        let drift = (n >= 2).then(|| {
            let q = (n / 4).max(1);
            let (first, last) = (&segments[..q], &segments[n - q..]);
            let (a, b) = (HitRates::of(first), HitRates::of(last));
            let sharp = |s: &[SegmentReport]| s.iter().map(|s| s.sharpness).sum::<f64>() / q as f64;
            let (sa, sb) = (sharp(first), sharp(last));
            Drift {
                hits: HitRates {
                    colour: a.colour - b.colour,
                    motion: a.motion - b.motion,
                    shape: a.shape - b.shape,
                    background: a.background - b.background,
                },
                sharpness: if sa > 0.0 { 1.0 - sb / sa } else { 0.0 },
            }
        });
        Ok(ClipReport {
            segments,
            hits,
            drift,
        })
    }

    fn segment(
        &self,
        video: &Video,
        scene: &ScenePrompt,
        start: usize,
        end: usize,
    ) -> SegmentReport {
        let (h, w) = (video.height(), video.width());
        let frames: Vec<&[u8]> = (start..=end).filter_map(|t| video.frame(t)).collect();

        let mut outside = vec![[0usize; 256]; 3];
        let mut objects = Vec::with_capacity(scene.objects.len());
        let mut blobs_per_frame: Vec<Vec<bool>> = vec![vec![false; h * w]; frames.len()];
        for (i, object) in scene.objects.iter().enumerate() {
            let blobs: Vec<Option<Blob>> = frames
                .iter()
                .map(|f| self.object_blob(f, h, w, scene, i))
                .collect();
            for (mask, blob) in blobs_per_frame.iter_mut().zip(&blobs) {
                for &p in blob.iter().flat_map(|b| &b.pixels) {
                    mask[p] = true;
                }
            }
            objects.push(self.object(object.motion, object.shape, &blobs, h, w));
        }
        for (frame, mask) in frames.iter().zip(&blobs_per_frame) {
            for (p, &inside) in mask.iter().enumerate() {
                if !inside {
                    for c in 0..3 {
                        outside[c][frame[p * 3 + c] as usize] += 1;
                    }
                }
            }
        }
        let median: Vec<f64> = outside.iter().map(median_of).collect();
        let nearest = Background::ALL
            .iter()
            .min_by(|a, b| {
                let d = |bg: &Background| distance2_f(bg.rgb(), &median);
                d(a).total_cmp(&d(b))
            })
            .copied();
        let sharpness =
            frames.iter().map(|f| sharpness(f, h, w)).sum::<f64>() / frames.len().max(1) as f64;
        SegmentReport {
            frames: (start, end),
            objects,
            background: nearest == Some(scene.background),
            sharpness,
        }
    }

    /// The shape the oracle sees for each of `scene`'s objects in frame `t` of `video` alone:
    /// the object's blob, found as [`Self::evaluate`] finds it, matched against the six
    /// templates; `None` where no blob is large enough. A still image has no motion to check, so
    /// this is how single frames are scored (`xtask eval-vae --image`).
    pub fn frame_shapes(
        &self,
        video: &Video,
        t: usize,
        scene: &ScenePrompt,
    ) -> Result<Vec<Option<Shape>>, EvalError> {
        let frames = video.frames();
        let frame = video.frame(t).ok_or(EvalError::NoFrame { t, frames })?;
        let (h, w) = (video.height(), video.width());
        Ok((0..scene.objects.len())
            .map(|i| {
                self.object_blob(frame, h, w, scene, i)
                    .map(|blob| best_shape(&[&blob], h, w))
            })
            .collect())
    }

    /// Object `i`'s blob in one frame: the k-th largest blob of its colour for the k-th object
    /// of that colour, kept only if it covers `min_area_fraction` of the prompted shape's area.
    fn object_blob(
        &self,
        frame: &[u8],
        h: usize,
        w: usize,
        scene: &ScenePrompt,
        i: usize,
    ) -> Option<Blob> {
        let object = &scene.objects[i];
        // Colours competing for each pixel: the prompt's objects and background.
        let mut palette: Vec<[u8; 3]> = scene.objects.iter().map(|o| o.colour.rgb()).collect();
        palette.push(scene.background.rgb());
        let rank = scene.objects[..i]
            .iter()
            .filter(|o| o.colour == object.colour)
            .count();
        let r = object.size.radius(h);
        let expected = shape_area(object.shape) * r * r;
        self.blob(frame, h, w, object.colour, &palette, rank)
            .filter(|b| b.area as f64 >= self.config.min_area_fraction * expected)
    }

    fn object(
        &self,
        motion: Motion,
        shape: Shape,
        blobs: &[Option<Blob>],
        h: usize,
        w: usize,
    ) -> ObjectReport {
        let found: Vec<(usize, &Blob)> = blobs
            .iter()
            .enumerate()
            .filter_map(|(t, b)| b.as_ref().map(|b| (t, b)))
            .collect();
        let found_fraction = found.len() as f64 / blobs.len().max(1) as f64;
        let colour = found_fraction >= self.config.min_frame_fraction;

        let displacement = match (found.first(), found.last()) {
            (Some(&(t0, a)), Some(&(t1, b))) if t1 > t0 => Some((
                t1 - t0,
                [b.centroid[0] - a.centroid[0], b.centroid[1] - a.centroid[1]],
            )),
            _ => None,
        };
        let motion_hit = match (motion, displacement) {
            (Motion::Still, Some((_, d))) => {
                (d[0] * d[0] + d[1] * d[1]).sqrt() < self.config.still_tolerance
            }
            (Motion::Moving(dir, speed), Some((steps, d))) => {
                let u = dir.unit();
                let along = d[0] * u[0] + d[1] * u[1];
                along >= self.config.min_motion_fraction * speed.pixels_per_frame(h) * steps as f64
            }
            (_, None) => false,
        };

        let found_blobs: Vec<&Blob> = found.iter().map(|&(_, b)| b).collect();
        let best_shape = (!found.is_empty()).then(|| best_shape(&found_blobs, h, w));
        ObjectReport {
            colour,
            motion: motion_hit,
            shape: best_shape == Some(shape),
            found_fraction,
            displacement: displacement.map(|(_, d)| d),
            best_shape,
        }
    }

    /// The `rank`-th largest 8-connected component of the pixels of `colour` in one frame.
    fn blob(
        &self,
        frame: &[u8],
        h: usize,
        w: usize,
        colour: Colour,
        palette: &[[u8; 3]],
        rank: usize,
    ) -> Option<Blob> {
        let target = colour.rgb();
        let max2 = self.config.colour_distance * self.config.colour_distance;
        let mask: Vec<bool> = frame
            .chunks_exact(3)
            .map(|p| {
                let p = [p[0], p[1], p[2]];
                let d = distance2(p, target);
                d <= max2 && palette.iter().all(|&q| distance2(p, q) >= d)
            })
            .collect();
        let mut seen = vec![false; h * w];
        let mut components: Vec<Vec<usize>> = Vec::new();
        let mut stack = Vec::new();
        for start in 0..h * w {
            if !mask[start] || seen[start] {
                continue;
            }
            seen[start] = true;
            stack.push(start);
            let mut pixels = Vec::new();
            while let Some(p) = stack.pop() {
                pixels.push(p);
                let (y, x) = ((p / w) as isize, (p % w) as isize);
                for dy in -1..=1 {
                    for dx in -1..=1 {
                        let (ny, nx) = (y + dy, x + dx);
                        if ny < 0 || nx < 0 || ny >= h as isize || nx >= w as isize {
                            continue;
                        }
                        let q = ny as usize * w + nx as usize;
                        if mask[q] && !seen[q] {
                            seen[q] = true;
                            stack.push(q);
                        }
                    }
                }
            }
            components.push(pixels);
        }
        // Stable order: by size, then by first pixel, so ties never depend on anything else.
        components.sort_by(|a, b| b.len().cmp(&a.len()).then(a[0].cmp(&b[0])));
        let pixels = components.into_iter().nth(rank)?;
        let n = pixels.len() as f64;
        let (sx, sy) = pixels.iter().fold((0.0, 0.0), |(sx, sy), &p| {
            (sx + (p % w) as f64 + 0.5, sy + (p / w) as f64 + 0.5)
        });
        Some(Blob {
            area: pixels.len(),
            centroid: [sx / n, sy / n],
            pixels,
        })
    }
}

/// Area of a shape of half-extent 1.
pub fn shape_area(shape: Shape) -> f64 {
    const PI: f64 = std::f64::consts::PI;
    match shape {
        Shape::Circle => PI,
        Shape::Square => 4.0,
        Shape::Triangle => 3.0 * 3f64.sqrt() / 4.0,
        Shape::Diamond => 2.0,
        Shape::Ring => PI * (1.0 - 0.55 * 0.55),
        Shape::Cross => 1.44,
    }
}

/// The shape whose template has the highest IoU with the blobs, summed over them (the first of
/// [`Shape::ALL`] on a tie).
fn best_shape(blobs: &[&Blob], h: usize, w: usize) -> Shape {
    let mut iou = [0.0f64; 6];
    for blob in blobs {
        for (k, &candidate) in Shape::ALL.iter().enumerate() {
            iou[k] += shape_iou(blob, candidate, h, w);
        }
    }
    Shape::ALL[(0..6).fold(0, |b, k| if iou[k] > iou[b] { k } else { b })]
}

/// IoU between a blob and `shape` rasterised (coverage >= 1/2) at its centroid with its area.
fn shape_iou(blob: &Blob, shape: Shape, h: usize, w: usize) -> f64 {
    let r = (blob.area as f64 / shape_area(shape)).sqrt();
    let c = blob.centroid;
    let x0 = (c[0] - r - 1.0).floor().max(0.0) as usize;
    let y0 = (c[1] - r - 1.0).floor().max(0.0) as usize;
    let x1 = ((c[0] + r + 1.0).ceil().max(0.0) as usize).min(w);
    let y1 = ((c[1] + r + 1.0).ceil().max(0.0) as usize).min(h);
    let mut in_blob = vec![false; h * w];
    for &p in &blob.pixels {
        in_blob[p] = true;
    }
    let (mut inter, mut rendered) = (0usize, 0usize);
    for y in y0..y1 {
        for x in x0..x1 {
            if coverage(shape, c, r, x, y) >= 0.5 {
                rendered += 1;
                inter += usize::from(in_blob[y * w + x]);
            }
        }
    }
    let union = blob.area + rendered - inter;
    inter as f64 / union.max(1) as f64
}

fn distance2(a: [u8; 3], b: [u8; 3]) -> f64 {
    (0..3).map(|c| (a[c] as f64 - b[c] as f64).powi(2)).sum()
}

fn distance2_f(a: [u8; 3], b: &[f64]) -> f64 {
    (0..3).map(|c| (a[c] as f64 - b[c]).powi(2)).sum()
}

/// The median of a histogram of byte values.
fn median_of(hist: &[usize; 256]) -> f64 {
    let total: usize = hist.iter().sum();
    let mut seen = 0;
    for (v, &n) in hist.iter().enumerate() {
        seen += n;
        if 2 * seen >= total && total > 0 {
            return v as f64;
        }
    }
    0.0
}

/// Mean squared 4-neighbour Laplacian of the luminance (0..255) over interior pixels.
fn sharpness(frame: &[u8], h: usize, w: usize) -> f64 {
    if h < 3 || w < 3 {
        return 0.0;
    }
    let luma = |y: usize, x: usize| {
        let p = &frame[(y * w + x) * 3..];
        0.299 * p[0] as f64 + 0.587 * p[1] as f64 + 0.114 * p[2] as f64
    };
    let mut sum = 0.0;
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            let l = luma(y - 1, x) + luma(y + 1, x) + luma(y, x - 1) + luma(y, x + 1)
                - 4.0 * luma(y, x);
            sum += l * l;
        }
    }
    sum / ((h - 2) * (w - 2)) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_areas_match_rasterised_shapes() {
        for &shape in Shape::ALL {
            let r = 25.0;
            let mut a = 0.0;
            for y in 0..64 {
                for x in 0..64 {
                    a += coverage(shape, [32.0, 32.0], r, x, y);
                }
            }
            assert!((a / (r * r) - shape_area(shape)).abs() < 0.03, "{shape}");
        }
    }

    #[test]
    fn mismatched_segments_are_errors() {
        let video = Video::new(4, 32, 32, vec![0; 4 * 32 * 32 * 3]).unwrap();
        let p = ShapesPrompt::parse("a small red circle staying still on a black background; a small red circle staying still on a black background").unwrap();
        assert!(matches!(
            evaluate(&video, &p),
            Err(EvalError::SegmentMismatch { .. })
        ));
        assert_eq!(
            evaluate(&video, &ShapesPrompt { segments: vec![] }),
            Err(EvalError::NoSegments)
        );
    }
}
