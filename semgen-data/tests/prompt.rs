//! Captions and the structured prompt are two views of the same thing.

use proptest::prelude::*;
use semgen_data::{
    Background, Colour, Direction, Motion, ObjectPrompt, ParseError, ScenePrompt, Shape,
    ShapesPrompt, ShapesWorld, Size, Speed, Split, WorldConfig,
};

fn pick<T: Copy + std::fmt::Debug + 'static>(all: &'static [T]) -> impl Strategy<Value = T> {
    proptest::sample::select(all)
}

fn motion() -> impl Strategy<Value = Motion> {
    prop_oneof![
        Just(Motion::Still),
        (pick(Direction::ALL), pick(Speed::ALL)).prop_map(|(d, s)| Motion::Moving(d, s)),
    ]
}

fn object() -> impl Strategy<Value = ObjectPrompt> {
    (
        pick(Shape::ALL),
        pick(Colour::ALL),
        pick(Size::ALL),
        motion(),
    )
        .prop_map(|(shape, colour, size, motion)| ObjectPrompt {
            shape,
            colour,
            size,
            motion,
        })
}

fn scene() -> impl Strategy<Value = ScenePrompt> {
    (prop::collection::vec(object(), 1..4), pick(Background::ALL)).prop_map(
        |(objects, background)| ScenePrompt {
            objects,
            background,
        },
    )
}

fn prompt() -> impl Strategy<Value = ShapesPrompt> {
    prop::collection::vec(scene(), 1..9).prop_map(|segments| ShapesPrompt { segments })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parse_inverts_render(p in prompt()) {
        prop_assert_eq!(ShapesPrompt::parse(&p.to_string()), Ok(p));
    }

    #[test]
    fn the_first_unknown_word_is_named(p in prompt(), at in any::<prop::sample::Index>(), junk in "zz[a-y]{0,6}") {
        let text = p.to_string();
        let mut words: Vec<String> = text.split(' ').map(str::to_string).collect();
        let i = at.index(words.len());
        // Keep a segment separator that is glued to the replaced word.
        let glued = if words[i].ends_with(';') { ";" } else { "" };
        words[i] = format!("{junk}{glued}");
        let separators_before = words[..i].iter().filter(|w| w.ends_with(';')).count();
        match ShapesPrompt::parse(&words.join(" ")) {
            Err(ParseError::UnknownWord { word, position, .. }) => {
                prop_assert_eq!(&word, &junk);
                prop_assert_eq!(position, i + 1 + separators_before);
            }
            other => prop_assert!(false, "expected an unknown-word error, got {:?}", other),
        }
        let err = ShapesPrompt::parse(&words.join(" ")).unwrap_err().to_string();
        prop_assert!(err.contains(&format!("\"{junk}\"")), "{}", err);
    }
}

#[test]
fn generated_captions_parse_to_their_prompts() {
    let world = ShapesWorld::new(WorldConfig::default()).unwrap();
    for split in Split::ALL {
        for i in 0..50 {
            let clip = world.clip(split, i).unwrap();
            assert_eq!(ShapesPrompt::parse(&clip.caption()).unwrap(), clip.prompt());
        }
        let story = world.story(split, 0, 8).unwrap();
        let parsed = ShapesPrompt::parse(&story.caption()).unwrap();
        assert_eq!(parsed.segments.len(), 8);
        assert_eq!(parsed, story.prompt());
    }
}
