//! The Shapes-world vocabulary, the structured prompt, its caption and the caption parser.
//!
//! Grammar (spec `shapes-world.md`, "Captions"):
//!
//! ```text
//! story   := caption ( "; " caption )*            one caption per segment
//! caption := object ( " and " object )* " on a " background " background"
//! object  := "a " size " " colour " " shape " " motion
//! motion  := "staying still" | "moving " direction " " speed
//! ```
//!
//! `ShapesPrompt::parse(&p.to_string()) == Ok(p)` for every prompt `p`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Defines a closed vocabulary enum with its caption words, in caption order.
macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $word:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "lowercase")]
        pub enum $name { $($variant),+ }

        impl $name {
            /// Every value, in the order the generator indexes them.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The caption word.
            pub fn word(self) -> &'static str {
                match self { $($name::$variant => $word),+ }
            }

            /// The value whose caption word is `word`.
            pub fn from_word(word: &str) -> Option<Self> {
                match word { $($word => Some($name::$variant),)+ _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.word())
            }
        }
    };
}

vocabulary!(
    /// An object's shape.
    Shape {
        Circle => "circle", Square => "square", Triangle => "triangle",
        Diamond => "diamond", Ring => "ring", Cross => "cross",
    }
);

vocabulary!(
    /// An object's colour.
    Colour {
        Red => "red", Green => "green", Blue => "blue", Yellow => "yellow",
        Cyan => "cyan", Magenta => "magenta", Orange => "orange", White => "white",
    }
);

vocabulary!(
    /// An object's size.
    Size { Small => "small", Large => "large" }
);

vocabulary!(
    /// A direction of motion in image axes (up = towards row 0).
    Direction { Left => "left", Right => "right", Up => "up", Down => "down" }
);

vocabulary!(
    /// A speed of motion.
    Speed { Slowly => "slowly", Quickly => "quickly" }
);

vocabulary!(
    /// The background colour (its texture is never named).
    Background {
        Black => "black", Gray => "gray", Navy => "navy", Brown => "brown", Beige => "beige",
    }
);

impl Colour {
    /// sRGB value.
    pub fn rgb(self) -> [u8; 3] {
        match self {
            Colour::Red => [220, 50, 50],
            Colour::Green => [50, 190, 70],
            Colour::Blue => [50, 90, 230],
            Colour::Yellow => [235, 215, 50],
            Colour::Cyan => [50, 205, 215],
            Colour::Magenta => [205, 60, 205],
            Colour::Orange => [245, 145, 40],
            Colour::White => [240, 240, 240],
        }
    }
}

impl Background {
    /// sRGB value of the base colour.
    pub fn rgb(self) -> [u8; 3] {
        match self {
            Background::Black => [16, 16, 16],
            Background::Gray => [112, 112, 112],
            Background::Navy => [24, 32, 80],
            Background::Brown => [88, 60, 40],
            Background::Beige => [216, 200, 168],
        }
    }
}

impl Size {
    /// Half-extent `r` in pixels for a frame of height `h`.
    pub fn radius(self, h: usize) -> f64 {
        match self {
            Size::Small => 0.09 * h as f64,
            Size::Large => 0.16 * h as f64,
        }
    }
}

impl Speed {
    /// Pixels per frame for a frame of height `h`.
    pub fn pixels_per_frame(self, h: usize) -> f64 {
        match self {
            Speed::Slowly => h as f64 / 128.0,
            Speed::Quickly => h as f64 / 48.0,
        }
    }
}

impl Direction {
    /// Unit step in image axes `(dx, dy)`, y pointing down.
    pub fn unit(self) -> [f64; 2] {
        match self {
            Direction::Left => [-1.0, 0.0],
            Direction::Right => [1.0, 0.0],
            Direction::Up => [0.0, -1.0],
            Direction::Down => [0.0, 1.0],
        }
    }

    /// The opposite direction (a reflection off the frame border).
    pub fn reversed(self) -> Self {
        match self {
            Direction::Left => Direction::Right,
            Direction::Right => Direction::Left,
            Direction::Up => Direction::Down,
            Direction::Down => Direction::Up,
        }
    }
}

/// How an object moves during one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Motion {
    /// "staying still".
    Still,
    /// "moving {direction} {speed}".
    Moving(Direction, Speed),
}

impl Motion {
    /// Velocity in pixels per frame `(dx, dy)` for a frame of height `h`.
    pub fn velocity(self, h: usize) -> [f64; 2] {
        match self {
            Motion::Still => [0.0, 0.0],
            Motion::Moving(d, s) => {
                let [ux, uy] = d.unit();
                let v = s.pixels_per_frame(h);
                [ux * v, uy * v]
            }
        }
    }
}

impl fmt::Display for Motion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Motion::Still => f.write_str("staying still"),
            Motion::Moving(d, s) => write!(f, "moving {d} {s}"),
        }
    }
}

/// One object of a caption.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ObjectPrompt {
    pub shape: Shape,
    pub colour: Colour,
    pub size: Size,
    pub motion: Motion,
}

impl fmt::Display for ObjectPrompt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ObjectPrompt {
            shape,
            colour,
            size,
            motion,
        } = self;
        write!(f, "a {size} {colour} {shape} {motion}")
    }
}

/// One caption: the objects (drawn in this order) and the background.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ScenePrompt {
    pub objects: Vec<ObjectPrompt>,
    pub background: Background,
}

impl fmt::Display for ScenePrompt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, object) in self.objects.iter().enumerate() {
            if i > 0 {
                f.write_str(" and ")?;
            }
            write!(f, "{object}")?;
        }
        write!(f, " on a {} background", self.background)
    }
}

/// Class counts of [`ObjectPrompt::attribute_classes`]: colour, shape, size and motion (staying
/// still or one of the four directions; the speed is left out).
pub const ATTRIBUTE_GROUPS: [usize; 4] = [Colour::ALL.len(), Shape::ALL.len(), Size::ALL.len(), 5];

impl ObjectPrompt {
    /// The object's class in each group of [`ATTRIBUTE_GROUPS`] (vocabulary order; motion 0 is
    /// staying still, 1 + the direction's index otherwise).
    pub fn attribute_classes(&self) -> [usize; 4] {
        let motion = match self.motion {
            Motion::Still => 0,
            Motion::Moving(d, _) => 1 + d as usize,
        };
        [
            self.colour as usize,
            self.shape as usize,
            self.size as usize,
            motion,
        ]
    }
}

impl ScenePrompt {
    /// For each word of the caption (its `Display`, split on whitespace), the index of the object
    /// whose phrase holds it; `None` for the joining "and"s and the background phrase. Which object
    /// a word describes is what a text encoder must carry for a generator to bind attributes.
    pub fn word_objects(&self) -> Vec<Option<usize>> {
        let mut out = Vec::new();
        for (i, object) in self.objects.iter().enumerate() {
            if i > 0 {
                out.push(None);
            }
            let words = object.to_string().split_whitespace().count();
            out.extend(std::iter::repeat_n(Some(i), words));
        }
        let background = format!("on a {} background", self.background);
        out.extend(std::iter::repeat_n(
            None,
            background.split_whitespace().count(),
        ));
        out
    }
}

/// A structured Shapes prompt: one scene per segment (a short clip has one segment).
///
/// Its `Display` is the caption; [`ShapesPrompt::parse`] inverts it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ShapesPrompt {
    pub segments: Vec<ScenePrompt>,
}

impl fmt::Display for ShapesPrompt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, scene) in self.segments.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{scene}")?;
        }
        Ok(())
    }
}

/// Why a caption does not parse. Positions count words from 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("empty caption")]
    Empty,
    #[error("unknown word \"{word}\" (word {position}): expected {expected}")]
    UnknownWord {
        word: String,
        position: usize,
        expected: &'static str,
    },
    #[error("caption ends early: expected {expected}")]
    UnexpectedEnd { expected: &'static str },
}

impl ShapesPrompt {
    /// A prompt with a single segment.
    pub fn single(scene: ScenePrompt) -> Self {
        Self {
            segments: vec![scene],
        }
    }

    /// The caption of each segment.
    pub fn segment_captions(&self) -> Vec<String> {
        self.segments.iter().map(ToString::to_string).collect()
    }

    /// Parses a caption or a story (`;`-separated captions) of the grammar.
    ///
    /// Words are matched case-insensitively; a trailing full stop is allowed. The error names
    /// the first word that does not fit the grammar.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let text = text.trim().trim_end_matches('.');
        let mut words = Vec::new();
        for chunk in text.split_whitespace() {
            // ';' separates segments and may touch the words around it.
            for (i, part) in chunk.split(';').enumerate() {
                if i > 0 {
                    words.push(";");
                }
                if !part.is_empty() {
                    words.push(part);
                }
            }
        }
        if words.is_empty() {
            return Err(ParseError::Empty);
        }
        let mut cursor = Cursor { words, at: 0 };
        let mut segments = vec![cursor.scene()?];
        while cursor.peek().is_some() {
            cursor.expect(";", "\";\" or the end of the caption")?;
            segments.push(cursor.scene()?);
        }
        Ok(Self { segments })
    }
}

impl std::str::FromStr for ShapesPrompt {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A recursive-descent reader over the caption's words.
struct Cursor<'a> {
    words: Vec<&'a str>,
    at: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<String> {
        self.words.get(self.at).map(|w| w.to_lowercase())
    }

    /// The next word, lower-cased, or an error naming what was expected.
    fn next(&mut self, expected: &'static str) -> Result<String, ParseError> {
        let word = self.peek().ok_or(ParseError::UnexpectedEnd { expected })?;
        self.at += 1;
        Ok(word)
    }

    fn unknown(&self, expected: &'static str) -> ParseError {
        ParseError::UnknownWord {
            word: self.words[self.at - 1].to_string(),
            position: self.at,
            expected,
        }
    }

    fn expect(&mut self, word: &str, expected: &'static str) -> Result<(), ParseError> {
        if self.next(expected)? == word {
            Ok(())
        } else {
            Err(self.unknown(expected))
        }
    }

    fn word<T>(
        &mut self,
        from_word: fn(&str) -> Option<T>,
        expected: &'static str,
    ) -> Result<T, ParseError> {
        let word = self.next(expected)?;
        from_word(&word).ok_or_else(|| self.unknown(expected))
    }

    fn scene(&mut self) -> Result<ScenePrompt, ParseError> {
        let mut objects = vec![self.object()?];
        loop {
            match self.next("\"and\" or \"on\"")?.as_str() {
                "and" => objects.push(self.object()?),
                "on" => break,
                _ => return Err(self.unknown("\"and\" or \"on\"")),
            }
        }
        self.expect("a", "\"a\"")?;
        let background = self.word(
            Background::from_word,
            "a background colour (black, gray, navy, brown, beige)",
        )?;
        self.expect("background", "\"background\"")?;
        Ok(ScenePrompt {
            objects,
            background,
        })
    }

    fn object(&mut self) -> Result<ObjectPrompt, ParseError> {
        self.expect("a", "\"a\"")?;
        let size = self.word(Size::from_word, "a size (small, large)")?;
        let colour = self.word(
            Colour::from_word,
            "a colour (red, green, blue, yellow, cyan, magenta, orange, white)",
        )?;
        let shape = self.word(
            Shape::from_word,
            "a shape (circle, square, triangle, diamond, ring, cross)",
        )?;
        let motion = match self.next("\"staying\" or \"moving\"")?.as_str() {
            "staying" => {
                self.expect("still", "\"still\"")?;
                Motion::Still
            }
            "moving" => {
                let d = self.word(Direction::from_word, "a direction (left, right, up, down)")?;
                let s = self.word(Speed::from_word, "a speed (slowly, quickly)")?;
                Motion::Moving(d, s)
            }
            _ => return Err(self.unknown("\"staying\" or \"moving\"")),
        };
        Ok(ObjectPrompt {
            shape,
            colour,
            size,
            motion,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str =
        "a large red circle moving left slowly and a small cyan cross staying still on a navy background";

    #[test]
    fn each_word_is_given_the_object_it_describes_and_its_classes() {
        let scene = &ShapesPrompt::parse(EXAMPLE).unwrap().segments[0];
        let owners = scene.word_objects();
        assert_eq!(owners.len(), EXAMPLE.split_whitespace().count());
        let (a, b) = (Some(0), Some(1));
        #[rustfmt::skip]
        let want = [a, a, a, a, a, a, a, None, b, b, b, b, b, b, None, None, None, None];
        assert_eq!(owners, want);
        // colour, shape, size, motion: red circle large left; cyan cross small still.
        assert_eq!(scene.objects[0].attribute_classes(), [0, 0, 1, 1]);
        assert_eq!(scene.objects[1].attribute_classes(), [4, 5, 0, 0]);
        for o in &scene.objects {
            let classes = o.attribute_classes();
            assert!(classes.iter().zip(ATTRIBUTE_GROUPS).all(|(c, g)| *c < g));
        }
    }

    #[test]
    fn the_spec_example_round_trips() {
        let p = ShapesPrompt::parse(EXAMPLE).unwrap();
        assert_eq!(p.segments.len(), 1);
        let scene = &p.segments[0];
        assert_eq!(scene.background, Background::Navy);
        assert_eq!(
            scene.objects[0],
            ObjectPrompt {
                shape: Shape::Circle,
                colour: Colour::Red,
                size: Size::Large,
                motion: Motion::Moving(Direction::Left, Speed::Slowly),
            }
        );
        assert_eq!(scene.objects[1].motion, Motion::Still);
        assert_eq!(p.to_string(), EXAMPLE);
    }

    #[test]
    fn stories_split_on_semicolons() {
        let text = format!("{EXAMPLE};{EXAMPLE}; {EXAMPLE}.");
        let p = ShapesPrompt::parse(&text).unwrap();
        assert_eq!(p.segments.len(), 3);
        assert_eq!(p.to_string(), [EXAMPLE; 3].join("; "));
    }

    #[test]
    fn errors_name_the_first_unknown_word() {
        let err = ShapesPrompt::parse("a large purple circle staying still on a navy background")
            .unwrap_err();
        assert!(err.to_string().contains("\"purple\""), "{err}");
        assert!(matches!(err, ParseError::UnknownWord { position: 3, .. }));
        let err = ShapesPrompt::parse("a large red circle").unwrap_err();
        assert!(matches!(err, ParseError::UnexpectedEnd { .. }), "{err}");
        assert_eq!(ShapesPrompt::parse("  "), Err(ParseError::Empty));
    }
}
