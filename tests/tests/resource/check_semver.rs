//! `check` without a tag (semver and regex modes) against the real registry.
//!
//! The first part ports registry-image-resource's check table ("tracking semver tags"),
//! entry by entry and in its order: each case pushes its tags as tiny images (tags that
//! share an image share its digest) and expects exactly the versions, tags and digests,
//! that the anchor expects. The second part covers what kiln does differently: the
//! anchor's bugs fixed, and the cases its table leaves out.

use std::collections::HashMap;

use kiln_tests::dev_env_or_skip;
use kiln_tests::harness::{
    DevEnv, Outcome, TinyImage, plain_tags, push_tiny, push_tiny_index, resource, source, unique_repo,
};
use serde_json::{Value, json};

/// One check: the repository's tags, the source fields beyond `repository`, the
/// previous version, and the tags of the versions expected.
#[derive(Default)]
struct Case<'a> {
    /// `(tag, image)`: tags naming one image share its digest. Images are created a day
    /// apart in the order they first appear here, unless `created` says otherwise.
    tags: &'a [(&'a str, &'a str)],
    /// `(image, RFC 3339 time)`; `None` leaves `created` out of the image's config.
    created: &'a [(&'a str, Option<&'a str>)],
    source: Value,
    /// `(tag, image)` of the previous version; an image no tag has is a bogus digest.
    from: Option<(&'a str, &'a str)>,
    expected: &'a [&'a str],
    /// The versions come in the registry's listing order (regex mode), which the dev
    /// registry does not sort: `expected` is put in that order before comparing.
    in_listing_order: bool,
}

/// Pushes `case.tags` to `repo`, an image's tags in a thread of their own; the digest of each tag.
fn push_tags(env: &DevEnv, repo: &str, case: &Case<'_>) -> HashMap<String, String> {
    let mut images: Vec<&str> = Vec::new();
    for (_, image) in case.tags {
        if !images.contains(image) {
            images.push(image);
        }
    }
    std::thread::scope(|scope| {
        let workers: Vec<_> = images
            .iter()
            .enumerate()
            .map(|(i, image)| {
                scope.spawn(move || {
                    let default = format!("2024-01-{:02}T00:00:00Z", i + 1);
                    let created =
                        case.created.iter().find(|(c, _)| c == image).map_or(Some(default.as_str()), |(_, c)| *c);
                    let name = format!("{repo}/{image}");
                    let tags = case.tags.iter().filter(|(_, i)| i == image);
                    // The same image pushed again only adds the tag: same config, same digest.
                    tags.map(|(tag, _)| (tag.to_string(), push_tiny(env, repo, tag, TinyImage::new(&name, created))))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().expect("a pushing thread")).collect()
    })
}

/// Runs `check` for `case` against `repo` (already holding its tags).
fn run_check(env: &DevEnv, repo: &str, case: &Case<'_>, digests: &HashMap<String, String>) -> Outcome {
    let mut src = source(env, &env.registries.plain, repo);
    if let Some(extra) = case.source.as_object() {
        for (k, v) in extra {
            src[k] = v.clone();
        }
    }
    let mut request = json!({ "source": src });
    if let Some((tag, image)) = case.from {
        let digest = case
            .tags
            .iter()
            .find(|(_, i)| *i == image)
            .map(|(t, _)| digests[*t].clone())
            .unwrap_or_else(|| image.to_string());
        request["version"] = json!({ "tag": tag, "digest": digest });
    }
    resource("check", None, &request)
}

/// Pushes the case's tags to a new repository, checks, and compares with what is expected.
fn assert_case(name: &str, case: Case<'_>) {
    let env = dev_env_or_skip!();
    let repo = unique_repo(name);
    let digests = push_tags(env, &repo, &case);
    let out = run_check(env, &repo, &case, &digests);
    let got = out.success().json();
    let mut expected = case.expected.to_vec();
    if case.in_listing_order {
        let listed = plain_tags(env, &repo);
        expected.sort_by_key(|t| listed.iter().position(|l| l == t));
    }
    let expected: Vec<Value> = expected.iter().map(|t| json!({ "tag": t, "digest": digests[*t] })).collect();
    assert_eq!(got, Value::Array(expected), "{name}\n--- stderr\n{}", out.stderr);
}

// ------------------------------------------------------------------------------------------
// The anchor's table

#[test]
fn no_semver_tags() {
    assert_case("no-semver", Case { tags: &[("non-semver-tag", "random-1")], expected: &[], ..Default::default() });
}

#[test]
fn no_matching_regex_tags() {
    assert_case(
        "no-regex-match",
        Case {
            tags: &[("non-matching-regex-tag", "random-1")],
            source: json!({ "tag_regex": "foo.*" }),
            expected: &[],
            in_listing_order: true,
            ..Default::default()
        },
    );
}

#[test]
fn latest_tag() {
    assert_case(
        "latest",
        Case {
            tags: &[("non-semver-tag", "random-1"), ("latest", "random-2")],
            expected: &["latest"],
            ..Default::default()
        },
    );
}

// The anchor's "HEAD with GET fallback" needs a registry that leaves Docker-Content-Digest
// out of HEAD answers; the dev registries always send it.

#[test]
fn simple_tag_regex() {
    assert_case(
        "regex-simple",
        Case {
            tags: &[("1.0.0", "random-1"), ("non-semver-tag", "random-2"), ("gray", "random-3"), ("grey", "random-4")],
            source: json!({ "tag_regex": "gr(a|e)y", "created_at_sort": false }),
            expected: &["gray", "grey"],
            in_listing_order: true,
            ..Default::default()
        },
    );
}

#[test]
fn simple_tag_regex_where_sorted_is_true() {
    assert_case(
        "regex-sorted",
        Case {
            tags: &[
                ("1.0.0", "random-1"),
                ("non-semver-tag", "random-2"),
                ("gem-1338-git-4bd8a5e1a244", "random-3"),
                ("gem-182-git-6bd8a5e1a2b3", "random-4"),
                ("gem-1337-git-4bd8a5e1a244", "random-5"),
            ],
            created: &[
                ("random-3", Some("2024-01-04T05:00:00Z")),
                ("random-4", Some("2024-01-04T00:00:00Z")),
                ("random-5", Some("2024-01-04T04:00:00Z")),
            ],
            source: json!({ "tag_regex": "gem-(\\d+)-git-([a-f0-9]{12})", "created_at_sort": true }),
            expected: &["gem-182-git-6bd8a5e1a2b3", "gem-1337-git-4bd8a5e1a244", "gem-1338-git-4bd8a5e1a244"],
            ..Default::default()
        },
    );
}

#[test]
fn regex_override_semver_constraint() {
    assert_case(
        "regex-over-constraint",
        Case {
            tags: &[
                ("1.0.0", "random-1"),
                ("1.2.1", "random-3"),
                ("1.2.2", "random-4"),
                ("2.0.0", "random-5"),
                ("latest", "random-6"),
                ("gray", "random-7"),
                ("grey", "random-8"),
            ],
            source: json!({ "tag_regex": "gr(a|e)y", "semver_constraint": "1.2.x" }),
            expected: &["gray", "grey"],
            in_listing_order: true,
            ..Default::default()
        },
    );
}

#[test]
fn semver_and_non_semver_tags() {
    assert_case(
        "semver-and-not",
        Case {
            tags: &[("1.0.0", "random-1"), ("non-semver-tag", "random-2")],
            expected: &["1.0.0"],
            ..Default::default()
        },
    );
}

#[test]
fn regex_maintain_ordering() {
    assert_case(
        "regex-order",
        Case {
            tags: &[
                ("1.0.0", "random-1"),
                ("3bd8a5e-dev", "random-2"),
                ("3bd8a5e-stage", "random-3"),
                ("non-matching-regex-tag", "random-4"),
                ("67e3c33-dev", "random-5"),
            ],
            source: json!({ "tag_regex": "^[0-9a-f]{7}-dev$", "created_at_sort": false }),
            expected: &["3bd8a5e-dev", "67e3c33-dev"],
            in_listing_order: true,
            ..Default::default()
        },
    );
}

const ORDERING_TAGS: &[(&str, &str)] = &[("1.0.0", "random-1"), ("1.2.1", "random-3"), ("2.0.0", "random-5")];

#[test]
fn semver_tag_ordering() {
    assert_case("ordering", Case { tags: ORDERING_TAGS, expected: &["1.0.0", "1.2.1", "2.0.0"], ..Default::default() });
}

#[test]
fn semver_tag_ordering_with_cursor() {
    assert_case(
        "ordering-cursor",
        Case {
            tags: ORDERING_TAGS,
            from: Some(("1.2.1", "random-3")),
            expected: &["1.2.1", "2.0.0"],
            ..Default::default()
        },
    );
}

#[test]
fn semver_tag_ordering_with_cursor_with_different_digest() {
    assert_case(
        "ordering-cursor-moved",
        Case {
            tags: ORDERING_TAGS,
            from: Some(("1.2.1", "sha256:0000000000000000000000000000000000000000000000000000000000000000")),
            expected: &["1.0.0", "1.2.1", "2.0.0"],
            ..Default::default()
        },
    );
}

#[test]
fn semver_constraint() {
    assert_case(
        "constraint",
        Case {
            tags: &[
                ("1.0.0", "random-1"),
                ("1.2.1", "random-3"),
                ("1.2.2", "random-4"),
                ("v1.2.3", "random-9"),
                ("2.0.0", "random-5"),
                ("latest", "random-6"),
            ],
            source: json!({ "semver_constraint": "1.2.x" }),
            expected: &["1.2.1", "1.2.2", "v1.2.3"],
            ..Default::default()
        },
    );
}

const PRERELEASE_TAGS: &[(&str, &str)] = &[
    ("1.0.0-alpha.1", "random-0"),
    ("1.0.0", "random-1"),
    ("1.2.1-beta.1", "random-2"),
    ("1.2.1", "random-3"),
    ("2.0.0-rc.1", "random-4"),
    ("2.0.0", "random-5"),
];

#[test]
fn prereleases_ignored_by_default() {
    assert_case(
        "pre-ignored",
        Case { tags: PRERELEASE_TAGS, expected: &["1.0.0", "1.2.1", "2.0.0"], ..Default::default() },
    );
}

#[test]
fn prereleases_opted_in() {
    assert_case(
        "pre-opted-in",
        Case {
            tags: PRERELEASE_TAGS,
            source: json!({ "pre_releases": true }),
            expected: &["1.0.0-alpha.1", "1.0.0", "1.2.1-beta.1", "1.2.1", "2.0.0-rc.1", "2.0.0"],
            ..Default::default()
        },
    );
}

#[test]
fn prerelease_prefixes_opted_in() {
    let mut tags = PRERELEASE_TAGS.to_vec();
    tags.push(("2.0.0-build.1", "random-6"));
    assert_case(
        "pre-prefixes",
        Case {
            tags: &tags,
            source: json!({ "pre_releases": true, "pre_release_prefixes": ["build"] }),
            expected: &["1.0.0-alpha.1", "1.0.0", "1.2.1-beta.1", "1.2.1", "2.0.0-build.1", "2.0.0-rc.1", "2.0.0"],
            ..Default::default()
        },
    );
}

#[test]
fn prereleases_do_not_include_variants() {
    assert_case(
        "pre-not-variants",
        Case {
            tags: &[
                ("1.0.0-alpha.1", "random-0"),
                ("1.0.0-beta.1", "random-1"),
                ("1.0.0-rc.1", "random-2"),
                ("1.0.0-foo.1", "random-3"),
            ],
            source: json!({ "pre_releases": true }),
            expected: &["1.0.0-alpha.1", "1.0.0-beta.1", "1.0.0-rc.1"],
            ..Default::default()
        },
    );
}

#[test]
fn prereleases_do_not_require_dot() {
    assert_case(
        "pre-no-dot",
        Case {
            tags: &[
                ("1.0.0-alpha1", "random-0"),
                ("1.0.0-alpha2", "random-1"),
                ("1.0.0-beta1", "random-2"),
                ("1.0.0-beta2", "random-3"),
                ("1.0.0-rc1", "random-4"),
                ("1.0.0-rc2", "random-5"),
                ("1.0.0-foo1", "random-6"),
                ("1.0.0-foo2", "random-7"),
            ],
            source: json!({ "pre_releases": true }),
            expected: &["1.0.0-alpha1", "1.0.0-alpha2", "1.0.0-beta1", "1.0.0-beta2", "1.0.0-rc1", "1.0.0-rc2"],
            ..Default::default()
        },
    );
}

#[test]
fn prereleases_do_not_require_number() {
    assert_case(
        "pre-no-number",
        Case {
            tags: &[
                ("1.0.0-alpha", "random-0"),
                ("1.0.0-beta", "random-1"),
                ("1.0.0-rc", "random-2"),
                ("1.0.0-foo", "random-3"),
            ],
            source: json!({ "pre_releases": true }),
            expected: &["1.0.0-alpha", "1.0.0-beta", "1.0.0-rc"],
            ..Default::default()
        },
    );
}

#[test]
fn final_versions_take_priority_over_rcs() {
    assert_case(
        "final-over-rc",
        Case {
            tags: &[
                ("1.0.0-rc.1", "random-2"),
                ("1.0.0-rc1", "random-2"),
                ("1.0.0-rc", "random-2"),
                ("1.0.0", "random-2"),
            ],
            source: json!({ "pre_releases": true }),
            expected: &["1.0.0"],
            ..Default::default()
        },
    );
}

#[test]
fn mixed_specificity_semver_tags() {
    assert_case(
        "mixed-specificity",
        Case {
            tags: &[
                ("1", "random-1"),
                ("2", "random-2"),
                ("2.1", "random-2"),
                ("latest", "random-3"),
                ("3", "random-3"),
                ("3.2", "random-3"),
                ("3.2.1", "random-3"),
                ("3.1", "random-4"),
                ("3.1.0", "random-4"),
                ("3.0", "random-5"),
                ("3.0.0", "random-5"),
            ],
            expected: &["1", "2.1", "3.0.0", "3.1.0", "3.2.1"],
            ..Default::default()
        },
    );
}

#[test]
fn semver_tags_with_latest_tag_having_unique_digest() {
    assert_case(
        "latest-unique",
        Case {
            tags: &[("1.0.0", "random-1"), ("non-semver-tag", "random-2"), ("latest", "random-3")],
            expected: &["1.0.0", "latest"],
            ..Default::default()
        },
    );
}

#[test]
fn latest_tag_pointing_to_latest_version() {
    assert_case(
        "latest-is-newest",
        Case {
            tags: &[("1", "random-1"), ("2", "random-2"), ("3", "random-3"), ("latest", "random-3")],
            expected: &["1", "2", "3"],
            ..Default::default()
        },
    );
}

#[test]
fn latest_tag_pointing_to_older_version() {
    assert_case(
        "latest-is-older",
        Case {
            tags: &[("1", "random-1"), ("2", "random-2"), ("latest", "random-2"), ("3", "random-3")],
            expected: &["1", "2", "3"],
            ..Default::default()
        },
    );
}

const VARIANT_TAGS: &[(&str, &str)] = &[
    ("latest", "random-1"),
    ("1.0.0", "random-1"),
    ("0.9.0", "random-2"),
    ("foo", "random-3"),
    ("1.0.0-foo", "random-3"),
    ("0.9.0-foo", "random-4"),
    ("bar", "random-5"),
    ("1.0.0-bar", "random-5"),
    ("0.9.0-bar", "random-6"),
];

#[test]
fn variants() {
    assert_case(
        "variants",
        Case {
            tags: VARIANT_TAGS,
            source: json!({ "variant": "foo" }),
            expected: &["0.9.0-foo", "1.0.0-foo"],
            ..Default::default()
        },
    );
}

#[test]
fn variant_with_bare_variant_tag_pointing_to_unique_digest() {
    assert_case(
        "variant-bare-unique",
        Case {
            tags: &[
                ("latest", "random-1"),
                ("1.0.0", "random-1"),
                ("0.9.0", "random-2"),
                ("foo", "random-3"),
                ("0.8.0-foo", "random-4"),
                ("bar", "random-5"),
                ("1.0.0-bar", "random-5"),
                ("0.9.0-bar", "random-6"),
            ],
            // kiln reports the bare variant tag only when its image is newer than the
            // newest version's (the anchor's random images have no creation time).
            created: &[("random-3", Some("2024-02-01T00:00:00Z"))],
            source: json!({ "variant": "foo" }),
            expected: &["0.8.0-foo", "foo"],
            ..Default::default()
        },
    );
}

#[test]
fn distinguishing_additional_variants_from_prereleases() {
    assert_case(
        "variant-vs-pre",
        Case {
            tags: &[
                ("1.0.0-foo", "random-1"),
                ("1.0.0-rc.1-foo", "random-2"),
                ("1.0.0-alpha.1-foo", "random-3"),
                ("1.0.0-beta.1-foo", "random-4"),
                ("1.0.0-bar-foo", "random-5"),
                ("1.0.0-rc.1-bar-foo", "random-6"),
                ("1.0.0-alpha.1-bar-foo", "random-7"),
                ("1.0.0-beta.1-bar-foo", "random-8"),
            ],
            source: json!({ "variant": "foo", "pre_releases": true }),
            expected: &["1.0.0-alpha.1-foo", "1.0.0-beta.1-foo", "1.0.0-rc.1-foo", "1.0.0-foo"],
            ..Default::default()
        },
    );
}

#[test]
fn opting_in_to_prereleases_allows_additional_suffixes_before_variant() {
    assert_case(
        "variant-pre-prefixes",
        Case {
            tags: &[
                ("1.0.0-build-foo", "random-1"),
                ("1.0.0-rc.1-foo", "random-2"),
                ("1.0.0-alpha.1-foo", "random-3"),
                ("1.0.0-beta.1-foo", "random-4"),
                ("1.0.0-bar-foo", "random-5"),
                ("1.0.0-rc.1-bar-foo", "random-6"),
                ("1.0.0-alpha.1-bar-foo", "random-7"),
                ("1.0.0-beta.1-bar-foo", "random-8"),
            ],
            source: json!({ "variant": "foo", "pre_releases": true, "pre_release_prefixes": ["build"] }),
            expected: &[
                "1.0.0-alpha.1-foo",
                "1.0.0-alpha.1-bar-foo",
                "1.0.0-beta.1-foo",
                "1.0.0-beta.1-bar-foo",
                "1.0.0-build-foo",
                "1.0.0-rc.1-foo",
                "1.0.0-rc.1-bar-foo",
            ],
            ..Default::default()
        },
    );
}

#[test]
fn tries_mirror_and_falls_back_on_original_repository() {
    // The mirror is for Docker Hub repositories only: for this one it is never asked.
    assert_case(
        "mirror-fallback",
        Case {
            tags: ORDERING_TAGS,
            source: json!({ "registry_mirror": { "host": "fakeserver.foo:5000" } }),
            expected: &["1.0.0", "1.2.1", "2.0.0"],
            ..Default::default()
        },
    );
}

#[test]
fn uses_mirror_and_ignores_failing_repository() {
    let env = dev_env_or_skip!();
    // A Docker Hub repository (no registry in its name), found on the mirror; Docker Hub
    // itself is out of reach here, so any request to it would fail the check.
    let repo = unique_repo("mirror-used");
    let case = Case { tags: ORDERING_TAGS, ..Default::default() };
    let digests = push_tags(env, &repo, &case);
    let request = json!({
        "source": { "repository": repo, "registry_mirror": { "host": env.registries.plain.addr } },
    });
    let out = resource("check", None, &request);
    let expected: Vec<Value> =
        ["1.0.0", "1.2.1", "2.0.0"].iter().map(|t| json!({ "tag": t, "digest": digests[*t] })).collect();
    assert_eq!(out.success().json(), Value::Array(expected), "{}", out.stderr);
}

// ------------------------------------------------------------------------------------------
// Beyond the anchor's table

#[test]
fn latest_older_than_the_newest_release_is_not_a_version() {
    // latest points at an image older than 2.0.0's that no tag names (not yet moved, or no
    // longer maintained): the anchor lists it last, as the newest version (#316, #351).
    assert_case(
        "latest-stale",
        Case {
            tags: &[("latest", "old"), ("1.0.0", "a"), ("2.0.0", "b")],
            expected: &["1.0.0", "2.0.0"],
            ..Default::default()
        },
    );
}

#[test]
fn latest_behind_the_cursor_is_not_a_version() {
    // 2.0.0 is out and latest still points at 1.0.0. With 2.0.0 as the cursor, 1.0.0 is
    // not looked up again, and the anchor takes latest for a new image (#316).
    assert_case(
        "latest-behind-cursor",
        Case {
            tags: &[("1.0.0", "a"), ("latest", "a"), ("2.0.0", "b")],
            from: Some(("2.0.0", "b")),
            expected: &["2.0.0"],
            ..Default::default()
        },
    );
}

#[test]
fn latest_with_a_cursor_and_a_newer_image_is_a_version() {
    assert_case(
        "latest-new-with-cursor",
        Case {
            tags: &[("1.0.0", "a"), ("2.0.0", "b"), ("latest", "c")],
            from: Some(("2.0.0", "b")),
            expected: &["2.0.0", "latest"],
            ..Default::default()
        },
    );
}

#[test]
fn latest_without_a_creation_time_is_not_a_version() {
    assert_case(
        "latest-no-time",
        Case {
            tags: &[("1.0.0", "a"), ("latest", "b")],
            created: &[("b", None)],
            expected: &["1.0.0"],
            ..Default::default()
        },
    );
}

#[test]
fn bare_variant_older_than_the_newest_version_is_not_a_version() {
    assert_case(
        "variant-bare-stale",
        Case {
            tags: &[("alpine", "old"), ("1.0.0-alpine", "a"), ("1.1.0-alpine", "b"), ("latest", "c")],
            source: json!({ "variant": "alpine" }),
            expected: &["1.0.0-alpine", "1.1.0-alpine"],
            ..Default::default()
        },
    );
}

#[test]
fn the_cursor_keeps_its_tag_among_tags_of_one_digest() {
    let env = dev_env_or_skip!();
    // `1.2.3` and `v1.2.3` are equally specific: the one listed first names the digest,
    // unless the other is the cursor, which is looked at first (as in the anchor).
    let case = Case { tags: &[("1.2.3", "a"), ("v1.2.3", "a"), ("1.3.0", "b")], ..Default::default() };
    let repo = unique_repo("alias");
    let digests = push_tags(env, &repo, &case);
    let listed = plain_tags(env, &repo);
    let mut aliases: Vec<&str> = vec!["1.2.3", "v1.2.3"];
    aliases.sort_by_key(|t| listed.iter().position(|l| l == t));
    let versions = |out: Outcome| -> Vec<String> {
        let json = out.success().json();
        json.as_array().expect("a list").iter().map(|v| v["tag"].as_str().expect("a tag").to_string()).collect()
    };
    assert_eq!(versions(run_check(env, &repo, &case, &digests)), [aliases[0], "1.3.0"]);
    let with_cursor = Case { from: Some((aliases[1], "a")), ..case };
    assert_eq!(versions(run_check(env, &repo, &with_cursor, &digests)), [aliases[1], "1.3.0"]);
}

#[test]
fn a_cursor_that_is_not_a_version_here_is_no_cursor() {
    let tags = &[("1.0.0", "a"), ("1.1.0", "b"), ("1.2.0", "c"), ("2.0.0", "d")];
    // Deleted since.
    assert_case(
        "cursor-gone",
        Case {
            tags,
            from: Some(("1.0.5", "a")),
            expected: &["1.0.0", "1.1.0", "1.2.0", "2.0.0"],
            ..Default::default()
        },
    );
    // Outside the constraint.
    assert_case(
        "cursor-outside",
        Case {
            tags,
            from: Some(("2.0.0", "d")),
            source: json!({ "semver_constraint": "1.x" }),
            expected: &["1.0.0", "1.1.0", "1.2.0"],
            ..Default::default()
        },
    );
    // latest is never a cursor.
    assert_case(
        "cursor-latest",
        Case {
            tags: &[("1.0.0", "a"), ("2.0.0", "b"), ("latest", "c")],
            from: Some(("latest", "c")),
            expected: &["1.0.0", "2.0.0", "latest"],
            ..Default::default()
        },
    );
}

#[test]
fn prerelease_constraints() {
    let tags =
        &[("1.0.0", "a"), ("1.1.0-rc.1", "b"), ("1.1.0", "c"), ("2.0.0-beta.1", "d"), ("2.0.0", "e"), ("latest", "f")];
    // A constraint without a prerelease keeps prereleases out even when they are asked for.
    assert_case(
        "pre-constraint-plain",
        Case {
            tags,
            source: json!({ "semver_constraint": ">=1.0.0 <2.0.0", "pre_releases": true }),
            expected: &["1.0.0", "1.1.0"],
            ..Default::default()
        },
    );
    assert_case(
        "pre-constraint-zero",
        Case {
            tags,
            source: json!({ "semver_constraint": ">=1.0.0-0, <2.0.0", "pre_releases": true }),
            expected: &["1.0.0", "1.1.0-rc.1", "1.1.0", "2.0.0-beta.1"],
            ..Default::default()
        },
    );
    // And `pre_releases` is still needed.
    assert_case(
        "pre-constraint-not-asked",
        Case {
            tags,
            source: json!({ "semver_constraint": ">=1.0.0-0, <2.0.0" }),
            expected: &["1.0.0", "1.1.0"],
            ..Default::default()
        },
    );
    assert_case(
        "pre-constraint-or",
        Case {
            tags,
            source: json!({ "semver_constraint": "~1.1.0-0 || 2.0.0 - 3", "pre_releases": true }),
            expected: &["1.1.0-rc.1", "1.1.0", "2.0.0"],
            ..Default::default()
        },
    );
}

#[test]
fn many_versions_in_order_from_the_cursor() {
    let env = dev_env_or_skip!();
    let repo = unique_repo("many");
    let names: Vec<String> = (0..64).map(|i| format!("{}.{}.{}", i / 32, (i / 8) % 4, i % 8)).collect();
    // Pushed several at a time, in no particular order; alias tags `X.Y` name the newest X.Y.Z.
    let digests: HashMap<String, String> = std::thread::scope(|scope| {
        let workers: Vec<_> = names
            .chunks(8)
            .map(|chunk| {
                let repo = &repo;
                scope.spawn(move || {
                    let mut digests = Vec::new();
                    for (i, name) in chunk.iter().enumerate().rev() {
                        let image = TinyImage::new(name, Some("2024-01-01T00:00:00Z"));
                        let digest = push_tiny(env, repo, name, image);
                        if i == 7 {
                            push_tiny(env, repo, name.rsplit_once('.').expect("a patch").0, image);
                        }
                        digests.push((name.clone(), digest));
                    }
                    digests
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().expect("a pushing thread")).collect()
    });
    let check = |from: Option<&str>| {
        let mut request = json!({ "source": source(env, &env.registries.plain, &repo) });
        if let Some(tag) = from {
            request["version"] = json!({ "tag": tag, "digest": digests[tag] });
        }
        let out = resource("check", None, &request);
        let tags: Vec<String> = out
            .success()
            .json()
            .as_array()
            .expect("a list")
            .iter()
            .map(|v| v["tag"].as_str().expect("a tag").to_string())
            .collect();
        tags
    };
    assert_eq!(check(None), names);
    assert_eq!(check(Some("1.3.5")), names[names.iter().position(|n| n == "1.3.5").expect("there")..]);
}

#[test]
fn regex_mode_lists_every_match_whatever_the_cursor() {
    assert_case(
        "regex-cursor",
        Case {
            tags: &[("build-1", "a"), ("build-2", "b"), ("build-3", "c")],
            source: json!({ "tag_regex": "^build-" }),
            from: Some(("build-2", "b")),
            expected: &["build-1", "build-2", "build-3"],
            in_listing_order: true,
            ..Default::default()
        },
    );
}

#[test]
fn regex_sorted_by_creation_with_ties_and_unknown_times() {
    let env = dev_env_or_skip!();
    let case = Case {
        tags: &[("r-a", "a"), ("r-b", "b"), ("r-c", "c"), ("r-d", "d"), ("r-e", "e"), ("other", "f")],
        created: &[
            ("a", Some("2024-03-01T00:00:00Z")),
            ("b", None),
            ("c", Some("2024-03-01T02:00:00+02:00")),
            ("d", Some("2024-02-01T00:00:00.5Z")),
            ("e", Some("2024-02-01T00:00:00Z")),
        ],
        source: json!({ "tag_regex": "^r-", "created_at_sort": true }),
        ..Default::default()
    };
    let repo = unique_repo("regex-sorted-ties");
    let digests = push_tags(env, &repo, &case);
    // Unknown times first; a and c are the same instant, left in listing order.
    let listed = plain_tags(env, &repo);
    let mut same_time = ["r-a", "r-c"];
    same_time.sort_by_key(|t| listed.iter().position(|l| l == t));
    let expected: Vec<Value> = ["r-b", "r-e", "r-d", same_time[0], same_time[1]]
        .iter()
        .map(|t| json!({ "tag": t, "digest": digests[*t] }))
        .collect();
    let out = run_check(env, &repo, &case, &digests);
    assert_eq!(out.success().json(), Value::Array(expected), "{}", out.stderr);
}

#[test]
fn regex_sorted_by_creation_of_the_platforms_image_in_an_index() {
    let env = dev_env_or_skip!();
    let repo = unique_repo("regex-index");
    let name = |n: &str| format!("{repo}/{n}");
    let image = |n: &'static str, created: &'static str, arch: &'static str| (n, created, arch);
    // multi-a: amd64 old, arm64 new; multi-b: amd64 new, arm64 old; single: in between.
    let indexes = [
        ("multi-a", [image("a-amd", "2024-01-01T00:00:00Z", "amd64"), image("a-arm", "2024-01-09T00:00:00Z", "arm64")]),
        ("multi-b", [image("b-amd", "2024-01-08T00:00:00Z", "amd64"), image("b-arm", "2024-01-02T00:00:00Z", "arm64")]),
    ];
    let mut digests = HashMap::new();
    for (tag, images) in &indexes {
        let names: Vec<String> = images.iter().map(|(n, _, _)| name(n)).collect();
        let tiny: Vec<TinyImage<'_>> = images
            .iter()
            .zip(&names)
            .map(|((_, created, arch), n)| TinyImage { name: n, created: Some(created), architecture: arch })
            .collect();
        digests.insert(*tag, push_tiny_index(env, &repo, tag, &tiny));
    }
    let single = name("single");
    digests.insert("single", push_tiny(env, &repo, "single", TinyImage::new(&single, Some("2024-01-05T00:00:00Z"))));
    let check = |platform: Value| {
        let mut src = source(env, &env.registries.plain, &repo);
        src["tag_regex"] = ".".into();
        src["created_at_sort"] = true.into();
        src["platform"] = platform;
        let out = resource("check", None, &json!({ "source": src }));
        let versions = out.success().json();
        for v in versions.as_array().expect("a list") {
            assert_eq!(v["digest"].as_str(), Some(digests[v["tag"].as_str().expect("a tag")].as_str()), "{v}");
        }
        versions
            .as_array()
            .expect("a list")
            .iter()
            .map(|v| v["tag"].as_str().expect("a tag").to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(check(json!({ "os": "linux", "architecture": "amd64" })), ["multi-a", "single", "multi-b"]);
    assert_eq!(check(json!({ "os": "linux", "architecture": "arm64" })), ["multi-b", "single", "multi-a"]);
    // No image for the platform: the index's first image counts.
    assert_eq!(check(json!({ "os": "linux", "architecture": "s390x" })), ["multi-a", "single", "multi-b"]);
}

#[test]
fn repositories_that_do_not_exist_have_no_versions() {
    let env = dev_env_or_skip!();
    let repo = unique_repo("absent");
    for extra in [json!({}), json!({ "tag_regex": "." }), json!({ "tag_regex": ".", "created_at_sort": true })] {
        let mut src = source(env, &env.registries.plain, &repo);
        for (k, v) in extra.as_object().expect("an object") {
            src[k] = v.clone();
        }
        let out = resource("check", None, &json!({ "source": src }));
        assert_eq!(out.success().json(), json!([]), "{extra}");
    }
}

#[test]
fn bad_patterns_are_refused_naming_the_field() {
    let env = dev_env_or_skip!();
    let repo = unique_repo("bad-settings");
    for (extra, expected) in [
        (json!({ "tag_regex": "(" }), "source.tag_regex"),
        (json!({ "semver_constraint": ">>1" }), "source.semver_constraint: \">>1\""),
        (json!({ "semver_constraint": "1.2 -" }), "source.semver_constraint: \"1.2 -\""),
        (json!({ "semver_constraint": " " }), "source.semver_constraint"),
    ] {
        let mut src = source(env, &env.registries.plain, &repo);
        for (k, v) in extra.as_object().expect("an object") {
            src[k] = v.clone();
        }
        let out = resource("check", None, &json!({ "source": src }));
        out.failure();
        assert!(out.stderr.contains(expected), "{expected}: {}", out.stderr);
    }
}
