//! Training-file validation: every mistake is reported with its line, and
//! no input, however broken, panics.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use zg_finetune::{Dataset, DatasetError, Role, follows_format};

const GOOD: &str = r#"{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"},{"role":"assistant","content":"<<ZG>> Hello <</ZG>>"}]}"#;

fn error(text: &[u8]) -> DatasetError {
    Dataset::parse(text).unwrap_err()
}

#[test]
fn a_good_file_parses_with_counts_and_blank_lines_skipped() {
    let text = format!("{GOOD}\n\n   \n{GOOD}\n");
    let dataset = Dataset::parse(text.as_bytes()).unwrap();
    assert_eq!(dataset.examples.len(), 2);
    assert_eq!(dataset.messages, 6);
    assert_eq!(dataset.examples[0].messages[2].role, Role::Assistant);
    assert_eq!(dataset.examples[0].messages[1].content, "Hi");
}

#[test]
fn each_mistake_names_its_line() {
    let cases: [(&str, &str); 9] = [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        (
            r#"{"messages": "hi"}"#,
            r#""messages" must be an array of {role, content}"#,
        ),
        (
            r#"{"prompt": "hi"}"#,
            r#""messages" must be an array of {role, content}"#,
        ),
        (
            r#"{"messages": [{"role": "user"}]}"#,
            r#""messages" must be an array of {role, content}"#,
        ),
        (
            r#"{"messages": [{"role": "user", "content": 5}]}"#,
            "must be an array of {role, content}",
        ),
        (
            r#"{"messages": [{"role": "robot", "content": "x"}]}"#,
            r#"role "robot" is not one of"#,
        ),
        (r#"{"messages": []}"#, "at least one assistant message"),
        (
            r#"{"messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "b"}]}"#,
            "the last message is user, expected assistant",
        ),
    ];
    for (bad, expected) in cases {
        let text = format!("{GOOD}\n\n{bad}\n{GOOD}\n");
        let e = error(text.as_bytes());
        assert_eq!(e.line, 3, "{bad}: {e}");
        assert!(e.to_string().starts_with("line 3: "), "{e}");
        assert!(e.to_string().contains(expected), "{bad}: {e}");
    }
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    assert!(error(b"").to_string().contains("no example"));
    assert!(error(b"\n\n  \n").to_string().contains("no example"));
    let e = error(b"\xff\xfe\x00garbage\n");
    assert_eq!(e.line, 1);
    assert!(e.to_string().contains("not UTF-8"), "{e}");
    let e = error(format!("{GOOD}\n{{\"messages\": [\"\\u0000\"]}}\n").as_bytes());
    assert_eq!(e.line, 2);
    let nul = r#"{"messages":[{"role":"assistant","content":"a\u0000b"}]}"#;
    assert!(error(nul.as_bytes()).to_string().contains("NUL"));
    let huge = format!("{GOOD}\n{}\n", "x".repeat(2 << 20));
    let e = error(huge.as_bytes());
    assert_eq!(e.line, 2);
    assert!(e.to_string().contains("bytes long"), "{e}");
    let deep = "[".repeat(100_000);
    assert_eq!(error(deep.as_bytes()).line, 1);
    // Every byte value, in a seeded pseudo-random soup.
    let mut state = 0x1234_5678u32;
    let soup: Vec<u8> = (0..50_000)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 24) as u8
        })
        .collect();
    assert!(Dataset::parse(&soup).is_err());
}

#[test]
fn the_shipped_data_is_valid_and_every_answer_follows_the_format() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data");
    let train = Dataset::parse(&std::fs::read(dir.join("train.jsonl")).unwrap()).unwrap();
    let held_out = Dataset::parse(&std::fs::read(dir.join("heldout.jsonl")).unwrap()).unwrap();
    assert_eq!((train.examples.len(), held_out.examples.len()), (80, 20));
    let question = |e: &zg_finetune::Example| e.messages[1].content.clone();
    for example in train.examples.iter().chain(&held_out.examples) {
        assert!(follows_format(&example.messages.last().unwrap().content));
    }
    for example in &held_out.examples {
        assert!(
            !train
                .examples
                .iter()
                .any(|t| question(t) == question(example))
        );
    }
}

#[test]
fn follows_format_accepts_only_the_exact_shape() {
    assert!(follows_format("<<ZG>> Paris <</ZG>>"));
    assert!(follows_format("  <<ZG>> The blue whale <</ZG>>\n"));
    for bad in [
        "Paris",
        "<<ZG>> <</ZG>>",
        "<<ZG>>Paris<</ZG>>",
        "<<ZG>> Paris",
        "The answer is <<ZG>> Paris <</ZG>>",
        "<<ZG>> Paris <</ZG>> and more",
        "<<ZG>> a\nb <</ZG>>",
        "<<ZG>> <<ZG>> x <</ZG>> <</ZG>>",
    ] {
        assert!(!follows_format(bad), "{bad:?}");
    }
}
