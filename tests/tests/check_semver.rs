//! `check` without a tag (semver and regex modes) against the real registry, with the
//! tags each case needs pushed by the test: the anchor's check table, and its bugs fixed.

use kiln_tests::dev_env_or_skip;
use kiln_tests::harness::{DevEnv, resource, source, unique_repo};
use kiln_tests::images::{push_small, retag};
use serde_json::{Value, json};

/// A repository with `tags`: each `(tag, seed)`; tags sharing a seed share a digest.
/// Seeds are created a day apart in the order they first appear.
fn repo_with(env: &DevEnv, name: &str, tags: &[(&str, &str)]) -> (String, std::collections::HashMap<String, String>) {
    let repo = unique_repo(name);
    let mut first_tag: std::collections::HashMap<&str, &str> = Default::default();
    let mut digests: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let mut day = 1;
    for (tag, seed) in tags {
        match first_tag.get(seed) {
            Some(first) => {
                retag(env, &repo, first, tag);
                let digest = digests[*first].clone();
                digests.insert(tag.to_string(), digest);
            }
            None => {
                let created = format!("2024-02-{day:02}T00:00:00Z");
                day += 1;
                let digest = push_small(env, &repo, tag, &format!("{repo}-{seed}"), &created);
                first_tag.insert(seed, tag);
                digests.insert(tag.to_string(), digest);
            }
        }
    }
    (repo, digests)
}

fn check(env: &DevEnv, repo: &str, extra: Value, version: Option<Value>) -> Vec<String> {
    let mut src = source(env, &env.registries.plain, repo);
    for (k, v) in extra.as_object().unwrap() {
        src[k] = v.clone();
    }
    let mut req = json!({ "source": src });
    if let Some(v) = version {
        req["version"] = v;
    }
    let out = resource("check", None, &req);
    let versions = out.success().json();
    versions
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            assert!(v["digest"].as_str().unwrap().starts_with("sha256:"), "no empty digests: {v}");
            v["tag"].as_str().unwrap().to_string()
        })
        .collect()
}

#[test]
fn versions_in_order_one_per_digest_most_specific_tag() {
    let env = dev_env_or_skip!();
    let (repo, _) = repo_with(
        env,
        "semver-order",
        &[
            ("1.10.0", "c"),
            ("1.2.0", "b"),
            ("1.0.0", "a"),
            ("2.0.0", "d"),
            ("2", "d"),
            ("2.0", "d"),
            ("v3.0.0", "e"),
            ("not-a-version", "x"),
        ],
    );
    assert_eq!(check(env, &repo, json!({}), None), ["1.0.0", "1.2.0", "1.10.0", "2.0.0", "v3.0.0"]);
}

#[test]
fn prereleases_only_when_asked_and_only_known_kinds() {
    let env = dev_env_or_skip!();
    let (repo, _) = repo_with(
        env,
        "semver-pre",
        &[
            ("1.0.0", "a"),
            ("2.0.0-rc.1", "b"),
            ("2.0.0-beta.2", "c"),
            ("2.0.0-foo.1", "d"),
            ("2.0.0-rc.1-alpine", "e"),
            ("1.0.0-rc.9", "a"),
        ],
    );
    assert_eq!(check(env, &repo, json!({}), None), ["1.0.0"], "no prereleases by default");
    assert_eq!(
        check(env, &repo, json!({ "pre_releases": true }), None),
        ["1.0.0", "2.0.0-beta.2", "2.0.0-rc.1"],
        "the final release wins its digest; foo and variant-looking prereleases stay out"
    );
    assert_eq!(
        check(env, &repo, json!({ "pre_releases": true, "pre_release_prefixes": ["foo"] }), None),
        ["1.0.0", "2.0.0-beta.2", "2.0.0-foo.1", "2.0.0-rc.1", "2.0.0-rc.1-alpine"]
    );
}

#[test]
fn constraints_filter_and_keep_latest_out() {
    let env = dev_env_or_skip!();
    let (repo, _) = repo_with(
        env,
        "semver-constraint",
        &[("1.1.0", "a"), ("1.2.0", "b"), ("1.2.5", "c"), ("1.3.0", "d"), ("2.0.0", "e"), ("latest", "f")],
    );
    assert_eq!(check(env, &repo, json!({ "semver_constraint": "~1.2" }), None), ["1.2.0", "1.2.5"]);
    assert_eq!(check(env, &repo, json!({ "semver_constraint": ">= 1.2, < 2" }), None), ["1.2.0", "1.2.5", "1.3.0"]);
    assert_eq!(check(env, &repo, json!({ "semver_constraint": "^1.2.1 || 2.x" }), None), ["1.2.5", "1.3.0", "2.0.0"]);
    // No constraint: latest is newer than every release and something else, so it comes last.
    assert_eq!(check(env, &repo, json!({}), None), ["1.1.0", "1.2.0", "1.2.5", "1.3.0", "2.0.0", "latest"]);
}

#[test]
fn latest_never_races_ahead_of_a_newer_release() {
    let env = dev_env_or_skip!();
    // latest points at an image older than 2.0.0: the anchor would list it last (#316, #351).
    let (repo, _) = repo_with(env, "semver-latest-old", &[("latest", "old"), ("1.0.0", "a"), ("2.0.0", "b")]);
    assert_eq!(check(env, &repo, json!({}), None), ["1.0.0", "2.0.0"]);
    // latest on the same digest as a release is that release.
    let (repo, _) = repo_with(env, "semver-latest-same", &[("1.0.0", "a"), ("2.0.0", "b"), ("latest", "b")]);
    assert_eq!(check(env, &repo, json!({}), None), ["1.0.0", "2.0.0"]);
    // Only latest: it is the version.
    let (repo, _) = repo_with(env, "semver-latest-only", &[("latest", "a")]);
    assert_eq!(check(env, &repo, json!({}), None), ["latest"]);
}

#[test]
fn variants() {
    let env = dev_env_or_skip!();
    let (repo, _) = repo_with(
        env,
        "semver-variant",
        &[
            ("1.0.0", "a"),
            ("1.0.0-alpine", "b"),
            ("1.1.0-alpine", "c"),
            ("1.1.0-slim", "d"),
            ("alpine", "e"),
            ("latest", "f"),
        ],
    );
    assert_eq!(check(env, &repo, json!({ "variant": "alpine" }), None), ["1.0.0-alpine", "1.1.0-alpine", "alpine"]);
    assert_eq!(check(env, &repo, json!({ "variant": "slim" }), None), ["1.1.0-slim"]);
}

#[test]
fn the_previous_version_is_a_cursor() {
    let env = dev_env_or_skip!();
    let (repo, digests) =
        repo_with(env, "semver-cursor", &[("1.0.0", "a"), ("1.1.0", "b"), ("1.2.0", "c"), ("2.0.0", "d")]);
    let cursor = json!({ "tag": "1.1.0", "digest": digests["1.1.0"] });
    assert_eq!(check(env, &repo, json!({}), Some(cursor)), ["1.1.0", "1.2.0", "2.0.0"]);
    // A cursor whose tag moved is no cursor: everything is listed.
    let moved = json!({ "tag": "1.1.0", "digest": digests["1.0.0"] });
    assert_eq!(check(env, &repo, json!({}), Some(moved)), ["1.0.0", "1.1.0", "1.2.0", "2.0.0"]);
}

#[test]
fn regex_mode_in_listing_order_or_by_creation() {
    let env = dev_env_or_skip!();
    // Created in this order: c, a, b (a day apart).
    let (repo, _) = repo_with(env, "regex", &[("build-c", "c"), ("build-a", "a"), ("build-b", "b"), ("other", "x")]);
    assert_eq!(check(env, &repo, json!({ "tag_regex": "build-" }), None), ["build-a", "build-b", "build-c"]);
    assert_eq!(
        check(env, &repo, json!({ "tag_regex": "^build-[a-c]$", "created_at_sort": true }), None),
        ["build-c", "build-a", "build-b"]
    );
    assert!(check(env, &repo, json!({ "tag_regex": "^nothing$" }), None).is_empty());
}

#[test]
fn empty_repositories_and_bad_settings() {
    let env = dev_env_or_skip!();
    let repo = unique_repo("semver-empty");
    assert!(check(env, &repo, json!({}), None).is_empty(), "a repository that does not exist has no versions");
    for (extra, expected) in [
        (json!({ "tag_regex": "(" }), "source.tag_regex"),
        (json!({ "semver_constraint": ">>1" }), "source.semver_constraint"),
    ] {
        let mut src = source(env, &env.registries.plain, &repo);
        for (k, v) in extra.as_object().unwrap() {
            src[k] = v.clone();
        }
        let out = resource("check", None, &json!({ "source": src }));
        out.failure();
        assert!(out.stderr.contains(expected), "{expected}: {}", out.stderr);
    }
}
