//! Tags read as versions and `semver_constraint` values: parsing never panics; a parsed
//! version written out reads back the same; precedence is a total order.
#![no_main]

use std::cmp::Ordering;

use kiln_resource::semver::{Constraint, Version};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // The input is up to three tags and a constraint, separated by newlines.
    let mut parts = text.splitn(4, '\n');
    let versions: Vec<Version> = parts.by_ref().take(3).filter_map(Version::parse).collect();
    for v in &versions {
        assert_eq!(Version::parse(&v.to_string()).as_ref(), Some(v), "{v}");
        assert_eq!(v.precedence(v), Ordering::Equal);
    }
    if let [a, b, ..] = versions.as_slice() {
        assert_eq!(a.precedence(b), b.precedence(a).reverse(), "{a} vs {b}");
        if let [_, _, c] = versions.as_slice()
            && a.precedence(b) != Ordering::Greater
            && b.precedence(c) != Ordering::Greater
        {
            assert_ne!(a.precedence(c), Ordering::Greater, "{a} <= {b} <= {c}");
        }
    }
    if let Some(constraint) = parts.next()
        && let Ok(constraint) = Constraint::parse(constraint)
    {
        for v in &versions {
            let _ = constraint.matches(v);
        }
    }
});
