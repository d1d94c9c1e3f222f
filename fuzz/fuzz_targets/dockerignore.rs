//! `.dockerignore` and include patterns: compiling never panics; a path written as a
//! pattern with every special character escaped matches that path and what is under it,
//! and nothing else beside it; and whatever an include list matches, the walk is told to
//! enter every directory above it (or it would skip files the build needs).
#![no_main]

use arbitrary::Arbitrary;
use kiln_build_task::task::patterns::PatternList;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    patterns: Vec<String>,
    path: Vec<String>,
}

fn escape(component: &str) -> String {
    component.chars().flat_map(|c| if "*?[]\\!".contains(c) { vec!['\\', c] } else { vec![c] }).collect()
}

fuzz_target!(|input: Input| {
    // A clean relative path: no empty, `.` or `..` components, no slashes inside one.
    let components: Vec<&str> = input
        .path
        .iter()
        .map(|c| c.as_str())
        .filter(|c| !c.is_empty() && *c != "." && *c != ".." && !c.contains('/') && c.trim() == *c)
        .take(6)
        .collect();

    // A real `.dockerignore` holds a few short lines. Compiling a regex costs time in the
    // length of the pattern, so long or many patterns only slow the campaign down without
    // reaching other code: keep 16 lines of at most 128 bytes.
    let patterns: Vec<&String> = input.patterns.iter().filter(|p| p.len() <= 128).take(16).collect();
    let Ok(list) = PatternList::new(&patterns) else { return };
    if components.is_empty() {
        return;
    }
    let path = components.join("/");
    let matched = list.matches(&path);
    if matched && !list.has_exclusions() {
        for depth in 1..components.len() {
            let dir = components[..depth].join("/");
            assert!(list.may_match_below(&dir), "{:?} matches {path:?} but the walk would skip {dir:?}", input.patterns);
        }
    }

    let literal: Vec<String> = components.iter().map(|c| escape(c)).collect();
    let literal = PatternList::new(&[literal.join("/")]).expect("an escaped path compiles");
    assert!(literal.matches(&path), "{path:?}");
    assert!(literal.matches(&format!("{path}/below")), "{path:?}");
    assert!(!literal.matches(&format!("{path}x")), "{path:?}");
});
