//! The Shapes world (spec `shapes-world.md`): a procedural video–text data set.
//!
//! A clip is planned first ([`ClipPlan`]: background, objects, their motion per segment and their
//! true centre per frame), then rendered frame by frame. Both steps are pure functions of
//! `(world seed, split, index, T, H, W)`: all randomness comes from [`KeyedRng`] streams keyed by
//! those values, rendering touches each pixel once in a fixed order, and frames are rendered in
//! parallel only across frames, so the bytes do not depend on the thread count. The maths avoids
//! `sin`/`cos`/`exp`, whose last bits differ between C libraries, so the bytes do not depend on
//! the machine either.
//!
//! A short clip is a story of one segment of `T - 1` steps. A story of `n` segments of `S`
//! steps has `1 + n·S` frames; segment `k` runs from frame `k·S` to frame `(k+1)·S` (boundary
//! frames are shared). At a segment boundary each object keeps its motion or draws a new one; a
//! motion that would leave the frame during the segment is reflected (reversed) at the boundary,
//! and the segment's caption states the new direction. Objects never overlap in any clip.

use std::fmt;
use std::str::FromStr;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::prompt::{
    Background, Colour, Direction, Motion, ObjectPrompt, ScenePrompt, Shape, ShapesPrompt, Size,
    Speed,
};
use crate::rng::{hash_signed, KeyedRng};
use crate::video::Video;

/// Frames per second of Shapes clips.
pub const SHAPES_FPS: f64 = 8.0;

/// `√3 / 2`, written out so no libm call is involved.
const HALF_SQRT_3: f64 = 0.866_025_403_784_438_6;

/// The data split: each has its own RNG streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Val,
    Test,
}

impl Split {
    /// All splits.
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];

    fn key(self) -> u64 {
        match self {
            Split::Train => 1,
            Split::Val => 2,
            Split::Test => 3,
        }
    }

    /// The split's name.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Split {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "train" => Ok(Split::Train),
            "val" => Ok(Split::Val),
            "test" => Ok(Split::Test),
            other => Err(DataError::Config(format!(
                "unknown split \"{other}\" (expected train, val or test)"
            ))),
        }
    }
}

/// The never-named background texture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Texture {
    Flat,
    VerticalStripes,
    HorizontalStripes,
    Checker,
    SmoothNoise,
}

impl Texture {
    const ALL: [Texture; 5] = [
        Texture::Flat,
        Texture::VerticalStripes,
        Texture::HorizontalStripes,
        Texture::Checker,
        Texture::SmoothNoise,
    ];
}

/// World parameters shared by every clip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorldConfig {
    /// The world seed.
    pub seed: u64,
    /// Frames of a short clip, `1 + 4k`.
    pub frames: usize,
    /// Frame height, a multiple of 16, at least 32.
    pub height: usize,
    /// Frame width, a multiple of 16, at least 32.
    pub width: usize,
    /// Most objects per clip: 1 to 3 (the spec's default is 2).
    pub max_objects: usize,
    /// Steps per story segment `S`, a multiple of 4.
    pub segment_frames: usize,
}

impl Default for WorldConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            frames: 17,
            height: 64,
            width: 64,
            max_objects: 2,
            segment_frames: 16,
        }
    }
}

impl WorldConfig {
    /// Checks the geometry rules of the spec.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(DataError::Config(m));
        if self.frames == 0 || !(self.frames - 1).is_multiple_of(4) {
            return bad(format!("frames must be 1 + 4k, got {}", self.frames));
        }
        for (name, v) in [("height", self.height), ("width", self.width)] {
            if v < 32 || v % 16 != 0 {
                return bad(format!(
                    "{name} must be a multiple of 16 and >= 32, got {v}"
                ));
            }
        }
        // Room for a large object with some freedom of placement on the short side.
        if 2.0 * Size::Large.radius(self.height) + 4.0 > self.width.min(self.height) as f64 {
            return bad(format!(
                "a {}x{} frame is too narrow for a large object",
                self.height, self.width
            ));
        }
        if !(1..=3).contains(&self.max_objects) {
            return bad(format!(
                "max_objects must be 1..=3, got {}",
                self.max_objects
            ));
        }
        if self.segment_frames == 0 || !self.segment_frames.is_multiple_of(4) {
            return bad(format!(
                "segment_frames must be a positive multiple of 4, got {}",
                self.segment_frames
            ));
        }
        Ok(())
    }
}

/// The background of a clip.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackgroundPlan {
    pub colour: Background,
    pub texture: Texture,
    /// Texture amplitude on 0..255.
    pub amplitude: f64,
    /// Texture period in pixels (already scaled to the frame height).
    pub period: f64,
    /// Texture phase in periods, per axis.
    pub phase: [f64; 2],
    /// Texture drift in pixels per frame.
    pub velocity: [f64; 2],
    /// Key of the smooth-noise lattice.
    pub noise_key: u64,
}

/// One object: what the caption says, its true centre per frame, and its never-named detail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectPlan {
    pub shape: Shape,
    pub colour: Colour,
    pub size: Size,
    /// The motion during each segment.
    pub motions: Vec<Motion>,
    /// True centre `(x, y)` in pixels per frame (pixel centres at `+0.5`).
    pub centres: Vec<[f64; 2]>,
    /// Direction of the ±10 % linear shading.
    pub shade_direction: [f64; 2],
    /// Key of the speckle pattern that moves with the object.
    pub speckle_key: u64,
}

impl ObjectPlan {
    /// The object's caption during segment `k`.
    pub fn prompt(&self, k: usize) -> ObjectPrompt {
        ObjectPrompt {
            shape: self.shape,
            colour: self.colour,
            size: self.size,
            motion: self.motions[k],
        }
    }
}

/// Everything about a clip but its pixels: the structured prompt with the ground truth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipPlan {
    pub height: usize,
    pub width: usize,
    /// Steps per segment; the clip has `1 + segments · segment_frames` frames.
    pub segment_frames: usize,
    pub segments: usize,
    pub background: BackgroundPlan,
    /// Objects in drawing order (later ones are drawn over earlier ones).
    pub objects: Vec<ObjectPlan>,
}

impl ClipPlan {
    /// Number of frames `T`.
    pub fn frames(&self) -> usize {
        1 + self.segments * self.segment_frames
    }

    /// The structured prompt, one scene per segment.
    pub fn prompt(&self) -> ShapesPrompt {
        ShapesPrompt {
            segments: (0..self.segments)
                .map(|k| ScenePrompt {
                    objects: self.objects.iter().map(|o| o.prompt(k)).collect(),
                    background: self.background.colour,
                })
                .collect(),
        }
    }

    /// The caption (segment captions joined by `"; "` for a story).
    pub fn caption(&self) -> String {
        self.prompt().to_string()
    }

    /// Renders the frames; parallel across frames, identical bytes for any thread count.
    pub fn render(&self) -> Result<Video> {
        let (h, w) = (self.height, self.width);
        if h == 0 || w == 0 || self.segments == 0 || self.segment_frames == 0 {
            return Err(DataError::Config("empty clip plan".into()));
        }
        if let Some(o) = self
            .objects
            .iter()
            .find(|o| o.centres.len() != self.frames())
        {
            return Err(DataError::Config(format!(
                "an object has {} centres for {} frames",
                o.centres.len(),
                self.frames()
            )));
        }
        let mut data = vec![0u8; self.frames() * h * w * 3];
        data.par_chunks_mut(h * w * 3)
            .enumerate()
            .for_each(|(t, frame)| self.render_frame(t, frame));
        Video::new(self.frames(), h, w, data)
    }

    fn render_frame(&self, t: usize, out: &mut [u8]) {
        let (h, w) = (self.height, self.width);
        let mut rgb = vec![[0f64; 3]; h * w];
        for y in 0..h {
            for x in 0..w {
                let v = background_value(&self.background, x, y, t);
                rgb[y * w + x] = [v[0], v[1], v[2]];
            }
        }
        for object in &self.objects {
            draw_object(object, h, w, t, &mut rgb);
        }
        for (px, o) in rgb.iter().zip(out.chunks_exact_mut(3)) {
            for c in 0..3 {
                o[c] = px[c].round().clamp(0.0, 255.0) as u8;
            }
        }
    }
}

/// A rendered clip and its plan (the structured prompt with ground truth).
#[derive(Debug, Clone)]
pub struct Clip {
    pub video: Video,
    pub plan: ClipPlan,
}

impl Clip {
    /// The structured prompt.
    pub fn prompt(&self) -> ShapesPrompt {
        self.plan.prompt()
    }

    /// The caption.
    pub fn caption(&self) -> String {
        self.plan.caption()
    }
}

/// The Shapes world: plans and renders clips.
///
/// ```
/// use semgen_data::{ShapesWorld, Split, WorldConfig};
///
/// let world = ShapesWorld::new(WorldConfig::default())?;
/// let clip = world.clip(Split::Train, 0)?;
/// assert_eq!((clip.video.frames(), clip.video.height(), clip.video.width()), (17, 64, 64));
/// let story = world.story(Split::Val, 3, 4)?;
/// assert_eq!(story.video.frames(), 1 + 4 * 16);
/// assert_eq!(story.prompt().segments.len(), 4);
/// # Ok::<(), semgen_data::DataError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ShapesWorld {
    config: WorldConfig,
}

/// RNG purposes, so that streams for different uses never coincide.
const PURPOSE_SHORT: u64 = 0x53_48_4F_52_54; // "SHORT"
const PURPOSE_STORY: u64 = 0x53_54_4F_52_59; // "STORY"

/// Most attempts at placing objects before giving up with an error.
const PLACEMENT_ATTEMPTS: usize = 10_000;
/// Attempts at drawing a segment's motions before every object stays still.
const SEGMENT_ATTEMPTS: usize = 64;
/// Extra gap between two objects' outlines, so that anti-aliased edges never touch.
const OVERLAP_MARGIN: f64 = 1.0;

impl ShapesWorld {
    /// A world with a validated configuration.
    pub fn new(config: WorldConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self { config })
    }

    /// The configuration.
    pub fn config(&self) -> &WorldConfig {
        &self.config
    }

    /// Plans short clip `index` of `split` (`config.frames` frames).
    pub fn plan_clip(&self, split: Split, index: u64) -> Result<ClipPlan> {
        let c = &self.config;
        self.plan(
            &[c.seed, split.key(), index, PURPOSE_SHORT],
            1,
            c.frames - 1,
        )
    }

    /// Plans story `index` of `split`: `segments` segments of `config.segment_frames` steps.
    pub fn plan_story(&self, split: Split, index: u64, segments: usize) -> Result<ClipPlan> {
        if segments == 0 {
            return Err(DataError::Config(
                "a story needs at least one segment".into(),
            ));
        }
        let c = &self.config;
        let key = [c.seed, split.key(), index, PURPOSE_STORY];
        self.plan(&key, segments, c.segment_frames)
    }

    /// Short clip `index` of `split`.
    pub fn clip(&self, split: Split, index: u64) -> Result<Clip> {
        let plan = self.plan_clip(split, index)?;
        Ok(Clip {
            video: plan.render()?,
            plan,
        })
    }

    /// Story `index` of `split` with `segments` segments.
    pub fn story(&self, split: Split, index: u64, segments: usize) -> Result<Clip> {
        let plan = self.plan_story(split, index, segments)?;
        Ok(Clip {
            video: plan.render()?,
            plan,
        })
    }

    fn plan(&self, key: &[u64], segments: usize, steps: usize) -> Result<ClipPlan> {
        let (h, w) = (self.config.height, self.config.width);
        let mut rng = KeyedRng::new(key);

        let scale = h as f64 / 64.0;
        let background = BackgroundPlan {
            colour: Background::ALL[rng.below(Background::ALL.len())],
            texture: Texture::ALL[rng.below(Texture::ALL.len())],
            amplitude: rng.uniform(6.0, 14.0),
            period: rng.uniform(4.0, 12.0) * scale,
            phase: [rng.unit(), rng.unit()],
            velocity: rng.in_disc(0.25),
            noise_key: rng.next_u64(),
        };

        let count = 1 + rng.below(self.config.max_objects);
        let mut colours: Vec<Colour> = Colour::ALL.to_vec();
        let mut objects = Vec::with_capacity(count);
        for _ in 0..count {
            // Distinct colours, so that the oracle can tell objects apart by colour.
            let colour = colours.remove(rng.below(colours.len()));
            objects.push(ObjectPlan {
                shape: Shape::ALL[rng.below(Shape::ALL.len())],
                colour,
                size: Size::ALL[rng.below(Size::ALL.len())],
                motions: Vec::with_capacity(segments),
                centres: Vec::with_capacity(1 + segments * steps),
                shade_direction: rng.unit_vector(),
                speckle_key: rng.next_u64(),
            });
        }
        let radii: Vec<f64> = objects.iter().map(|o| o.size.radius(h)).collect();

        // Segment 0 draws start positions together with motions.
        let (mut positions, first) = self.place(&mut rng, &radii, steps)?;
        for (o, (&p, &m)) in objects.iter_mut().zip(positions.iter().zip(&first)) {
            o.centres.push(p);
            o.motions.push(m);
        }
        for k in 0..segments {
            let motions = if k == 0 {
                first.clone()
            } else {
                let previous: Vec<Motion> = objects.iter().map(|o| o.motions[k - 1]).collect();
                let m = self.next_motions(&mut rng, &radii, &positions, &previous, steps);
                for (o, &m) in objects.iter_mut().zip(&m) {
                    o.motions.push(m);
                }
                m
            };
            for (i, o) in objects.iter_mut().enumerate() {
                let v = motions[i].velocity(h);
                let p = positions[i];
                for j in 1..=steps {
                    o.centres
                        .push([p[0] + v[0] * j as f64, p[1] + v[1] * j as f64]);
                }
                positions[i] = [p[0] + v[0] * steps as f64, p[1] + v[1] * steps as f64];
            }
        }
        Ok(ClipPlan {
            height: h,
            width: w,
            segment_frames: steps,
            segments,
            background,
            objects,
        })
    }

    /// Draws a motion; 20 % of objects stay still.
    fn random_motion(rng: &mut KeyedRng) -> Motion {
        if rng.chance(0.2) {
            Motion::Still
        } else {
            Motion::Moving(
                Direction::ALL[rng.below(Direction::ALL.len())],
                Speed::ALL[rng.below(Speed::ALL.len())],
            )
        }
    }

    /// Start positions and first motions: whole trajectories inside the frame, no overlaps.
    fn place(
        &self,
        rng: &mut KeyedRng,
        radii: &[f64],
        steps: usize,
    ) -> Result<(Vec<[f64; 2]>, Vec<Motion>)> {
        let (h, w) = (self.config.height as f64, self.config.width as f64);
        for _ in 0..PLACEMENT_ATTEMPTS {
            let mut positions = Vec::with_capacity(radii.len());
            let mut motions = Vec::with_capacity(radii.len());
            for &r in radii {
                // A motion whose trajectory cannot fit (long short clips) is drawn again.
                let mut m = Self::random_motion(rng);
                let mut d = displacement(m, self.config.height, steps);
                for _ in 0..16 {
                    if 2.0 * r + d[0].abs() <= w && 2.0 * r + d[1].abs() <= h {
                        break;
                    }
                    m = Self::random_motion(rng);
                    d = displacement(m, self.config.height, steps);
                }
                if 2.0 * r + d[0].abs() > w || 2.0 * r + d[1].abs() > h {
                    m = Motion::Still;
                    d = [0.0, 0.0];
                }
                let x = rng.uniform(r - d[0].min(0.0), w - r - d[0].max(0.0));
                let y = rng.uniform(r - d[1].min(0.0), h - r - d[1].max(0.0));
                positions.push([x, y]);
                motions.push(m);
            }
            if self.apart(radii, &positions, &motions, steps) {
                return Ok((positions, motions));
            }
        }
        Err(DataError::Config(format!(
            "could not place {} objects without overlap in a {h}x{w} frame",
            radii.len()
        )))
    }

    /// The motions of a later segment: each object keeps its motion or draws a new one, and
    /// reflects off the border; if no draw avoids overlaps, everyone stays still.
    fn next_motions(
        &self,
        rng: &mut KeyedRng,
        radii: &[f64],
        positions: &[[f64; 2]],
        previous: &[Motion],
        steps: usize,
    ) -> Vec<Motion> {
        'attempt: for _ in 0..SEGMENT_ATTEMPTS {
            let mut motions = Vec::with_capacity(radii.len());
            for i in 0..radii.len() {
                let mut m = if rng.chance(0.5) {
                    previous[i]
                } else {
                    Self::random_motion(rng)
                };
                if !self.inside(radii[i], positions[i], m, steps) {
                    if let Motion::Moving(d, s) = m {
                        m = Motion::Moving(d.reversed(), s);
                    }
                    if !self.inside(radii[i], positions[i], m, steps) {
                        continue 'attempt;
                    }
                }
                motions.push(m);
            }
            if self.apart(radii, positions, &motions, steps) {
                return motions;
            }
        }
        vec![Motion::Still; radii.len()]
    }

    /// Whether an object stays inside the frame for a whole segment.
    fn inside(&self, r: f64, p: [f64; 2], m: Motion, steps: usize) -> bool {
        let d = displacement(m, self.config.height, steps);
        let (h, w) = (self.config.height as f64, self.config.width as f64);
        let end = [p[0] + d[0], p[1] + d[1]];
        end[0] >= r && end[0] <= w - r && end[1] >= r && end[1] <= h - r
    }

    /// Whether every pair of objects keeps its centres more than `r1 + r2` apart during a segment.
    fn apart(&self, radii: &[f64], start: &[[f64; 2]], motions: &[Motion], steps: usize) -> bool {
        let v: Vec<[f64; 2]> = motions
            .iter()
            .map(|m| m.velocity(self.config.height))
            .collect();
        for i in 0..radii.len() {
            for j in i + 1..radii.len() {
                let min = radii[i] + radii[j] + OVERLAP_MARGIN;
                for s in 0..=steps {
                    let s = s as f64;
                    let dx = (start[i][0] + v[i][0] * s) - (start[j][0] + v[j][0] * s);
                    let dy = (start[i][1] + v[i][1] * s) - (start[j][1] + v[j][1] * s);
                    if dx * dx + dy * dy <= min * min {
                        return false;
                    }
                }
            }
        }
        true
    }
}

/// Displacement over a segment of `steps` frames.
fn displacement(m: Motion, h: usize, steps: usize) -> [f64; 2] {
    let v = m.velocity(h);
    [v[0] * steps as f64, v[1] * steps as f64]
}

/// Whether `(dx, dy)` (relative to the centre) lies in `shape` of half-extent `r`.
pub fn shape_contains(shape: Shape, dx: f64, dy: f64, r: f64) -> bool {
    match shape {
        Shape::Circle => dx * dx + dy * dy <= r * r,
        Shape::Square => dx.abs() <= r && dy.abs() <= r,
        Shape::Triangle => {
            // Apex (0, -r), base y = r/2 between x = ±r·√3/2: below the two upper edges.
            let half_base = r * HALF_SQRT_3;
            dy <= r / 2.0 && dy >= -r && dx.abs() <= half_base * (dy + r) / (1.5 * r)
        }
        Shape::Diamond => dx.abs() + dy.abs() <= r,
        Shape::Ring => {
            let d2 = dx * dx + dy * dy;
            d2 <= r * r && d2 >= 0.55 * 0.55 * r * r
        }
        Shape::Cross => {
            (dx.abs() <= r && dy.abs() <= 0.2 * r) || (dy.abs() <= r && dx.abs() <= 0.2 * r)
        }
    }
}

/// Coverage of pixel `(x, y)` by a shape centred at `c`: the fraction of its 4×4 sub-samples inside.
pub fn coverage(shape: Shape, c: [f64; 2], r: f64, x: usize, y: usize) -> f64 {
    let mut inside = 0u32;
    for sy in 0..4 {
        for sx in 0..4 {
            let px = x as f64 + (sx as f64 + 0.5) / 4.0;
            let py = y as f64 + (sy as f64 + 0.5) / 4.0;
            inside += u32::from(shape_contains(shape, px - c[0], py - c[1], r));
        }
    }
    inside as f64 / 16.0
}

/// A cosine-like wave of period 1 with values in `[-1, 1]` (a smoothed triangle wave).
fn wave(u: f64) -> f64 {
    let d = ((u - u.floor()) - 0.5).abs() * 2.0;
    2.0 * d * d * (3.0 - 2.0 * d) - 1.0
}

/// Value noise of period 1 on an integer lattice: smooth, in `[-1, 1]`.
fn value_noise(key: u64, u: f64, v: f64) -> f64 {
    let (iu, iv) = (u.floor(), v.floor());
    let smooth = |f: f64| f * f * (3.0 - 2.0 * f);
    let (fu, fv) = (smooth(u - iu), smooth(v - iv));
    let corner = |du: i64, dv: i64| {
        hash_signed(&[key, (iu as i64 + du) as u64, (iv as i64 + dv) as u64]) as f64
    };
    let top = corner(0, 0) * (1.0 - fu) + corner(1, 0) * fu;
    let bottom = corner(0, 1) * (1.0 - fu) + corner(1, 1) * fu;
    top * (1.0 - fv) + bottom * fv
}

/// The background's RGB value at pixel `(x, y)` of frame `t`, before rounding.
fn background_value(bg: &BackgroundPlan, x: usize, y: usize, t: usize) -> [f64; 3] {
    let u = (x as f64 + 0.5 - bg.velocity[0] * t as f64) / bg.period + bg.phase[0];
    let v = (y as f64 + 0.5 - bg.velocity[1] * t as f64) / bg.period + bg.phase[1];
    let texture = match bg.texture {
        Texture::Flat => 0.0,
        Texture::VerticalStripes => wave(u),
        Texture::HorizontalStripes => wave(v),
        Texture::Checker => wave(u) * wave(v),
        Texture::SmoothNoise => value_noise(bg.noise_key, u, v),
    };
    let base = bg.colour.rgb();
    let offset = bg.amplitude * texture;
    [
        base[0] as f64 + offset,
        base[1] as f64 + offset,
        base[2] as f64 + offset,
    ]
}

/// Draws an object over `rgb` (`[H·W]` pixels) at frame `t`.
fn draw_object(o: &ObjectPlan, h: usize, w: usize, t: usize, rgb: &mut [[f64; 3]]) {
    let r = o.size.radius(h);
    let c = o.centres[t];
    let colour = o.colour.rgb();
    let x0 = (c[0] - r - 1.0).floor().max(0.0) as usize;
    let y0 = (c[1] - r - 1.0).floor().max(0.0) as usize;
    let x1 = ((c[0] + r + 1.0).ceil().max(0.0) as usize).min(w);
    let y1 = ((c[1] + r + 1.0).ceil().max(0.0) as usize).min(h);
    for y in y0..y1 {
        for x in x0..x1 {
            let cov = coverage(o.shape, c, r, x, y);
            if cov == 0.0 {
                continue;
            }
            let dx = x as f64 + 0.5 - c[0];
            let dy = y as f64 + 0.5 - c[1];
            let along = (o.shade_direction[0] * dx + o.shade_direction[1] * dy) / r;
            let shade = 1.0 + 0.1 * along.clamp(-1.0, 1.0);
            // Speckle lives on the object's own pixel lattice, so it moves with the object.
            let cell = [dx.floor() as i64 as u64, dy.floor() as i64 as u64];
            let speckle = 8.0 * hash_signed(&[o.speckle_key, cell[0], cell[1]]) as f64;
            let px = &mut rgb[y * w + x];
            for ch in 0..3 {
                let value = (colour[ch] as f64 * shade + speckle).clamp(0.0, 255.0);
                px[ch] = px[ch] * (1.0 - cov) + value * cov;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world() -> ShapesWorld {
        ShapesWorld::new(WorldConfig::default()).unwrap()
    }

    #[test]
    fn invalid_geometry_is_rejected() {
        for config in [
            WorldConfig {
                frames: 16,
                ..Default::default()
            },
            WorldConfig {
                height: 40,
                ..Default::default()
            },
            WorldConfig {
                width: 16,
                ..Default::default()
            },
            WorldConfig {
                max_objects: 4,
                ..Default::default()
            },
            WorldConfig {
                segment_frames: 6,
                ..Default::default()
            },
        ] {
            assert!(ShapesWorld::new(config).is_err());
        }
    }

    #[test]
    fn short_trajectories_stay_inside_and_apart() {
        let world = world();
        for i in 0..200 {
            let plan = world.plan_clip(Split::Train, i).unwrap();
            assert_eq!(plan.frames(), 17);
            for o in &plan.objects {
                let r = o.size.radius(64);
                for c in &o.centres {
                    assert!(c[0] >= r - 1e-9 && c[0] <= 64.0 - r + 1e-9, "{i}: {c:?}");
                    assert!(c[1] >= r - 1e-9 && c[1] <= 64.0 - r + 1e-9, "{i}: {c:?}");
                }
            }
            if let [a, b] = &plan.objects[..] {
                let min = a.size.radius(64) + b.size.radius(64);
                for (p, q) in a.centres.iter().zip(&b.centres) {
                    let d = ((p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2)).sqrt();
                    assert!(d > min, "{i}: {d} <= {min}");
                }
            }
        }
    }

    #[test]
    fn stories_keep_identity_and_change_motion() {
        let world = world();
        let plan = world.plan_story(Split::Test, 5, 64).unwrap();
        assert_eq!(plan.frames(), 1 + 64 * 16);
        let prompt = plan.prompt();
        assert_eq!(prompt.segments.len(), 64);
        let first = &prompt.segments[0];
        let mut changes = 0;
        for (a, b) in prompt.segments.iter().zip(&prompt.segments[1..]) {
            assert_eq!(a.background, first.background);
            for (x, y) in a.objects.iter().zip(&b.objects) {
                assert_eq!((x.shape, x.colour, x.size), (y.shape, y.colour, y.size));
                changes += usize::from(x.motion != y.motion);
            }
        }
        assert!(changes > 5, "{changes}");
    }

    #[test]
    fn shapes_have_the_spec_areas() {
        // Pixel-exact coverage sums approach the analytic areas.
        let r = 20.0;
        let area = |s| {
            let mut a = 0.0;
            for y in 0..64 {
                for x in 0..64 {
                    a += coverage(s, [32.0, 32.0], r, x, y);
                }
            }
            a / (r * r)
        };
        let expected = [
            (Shape::Circle, std::f64::consts::PI),
            (Shape::Square, 4.0),
            (Shape::Triangle, 3.0 * 1.732_05 / 4.0),
            (Shape::Diamond, 2.0),
            (Shape::Ring, std::f64::consts::PI * (1.0 - 0.3025)),
            (Shape::Cross, 1.44),
        ];
        for (shape, k) in expected {
            assert!((area(shape) - k).abs() < 0.05, "{shape}: {}", area(shape));
        }
    }
}
