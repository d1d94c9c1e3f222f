//! Bad input to every binary: one line on stderr naming the field or file, a non-zero exit,
//! nothing on stdout, no panic (even with `RUST_BACKTRACE=1`), and nothing left in the
//! output folder. No test here reaches a network: every case fails before that (the one
//! repository named is on a closed loopback port).

use kiln_tests::harness::{Outcome, command, run};

fn resource(bin: &str, dir: &std::path::Path, stdin: &str) -> Outcome {
    let mut cmd = command(bin);
    cmd.arg(dir).env("RUST_BACKTRACE", "1");
    run(cmd, stdin.as_bytes())
}

fn assert_clear(what: &str, out: &Outcome, bin: &str, says: &str) {
    out.failure();
    let stderr = out.stderr.trim_end();
    assert_eq!(stderr.lines().count(), 1, "{what}: not one line:\n{stderr}");
    assert!(stderr.starts_with(&format!("{bin}: ")), "{what}: {stderr}");
    assert!(stderr.contains(says), "{what}: wanted {says:?} in {stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("stack backtrace"), "{what}: {stderr}");
    assert!(out.stdout.is_empty(), "{what}: stdout {}", out.stdout);
}

const REPO: &str = "127.0.0.1:1/kiln/bad-input";
/// A well-formed digest, so `in` gets past `version.digest` to its params.
const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// An `in` request for [`REPO`]@[`DIGEST`] with `params`.
fn get_request(params: &str) -> String {
    format!(
        r#"{{"source": {{"repository": "{REPO}"}}, "version": {{"tag": "1", "digest": "{DIGEST}"}}, "params": {params}}}"#
    )
}

#[test]
fn every_resource_binary_refuses_bad_requests_in_one_line() {
    let version = r#""version": {"tag": "1.0.0", "digest": "sha256:xyz"}"#;
    let cases: &[(&[&str], String, &str)] = &[
        (&["check", "in", "out"], String::new(), "stdin is empty"),
        (&["check", "in", "out"], "{".into(), "invalid payload"),
        (&["check", "in", "out"], "[]".into(), "invalid payload"),
        (&["check", "in", "out"], r#"{"source": 5}"#.into(), "expected struct Source"),
        (&["check", "in", "out"], r#"{"source": {"repository": 5}}"#.into(), "source.repository: invalid type"),
        (
            &["check", "in", "out"],
            format!(r#"{{"source": {{"repository": "{REPO}", "read_timeout": "5 fortnights"}}}}"#),
            "source.read_timeout: expected a positive duration",
        ),
        (
            &["check", "in", "out"],
            format!(r#"{{"source": {{"repository": "{REPO}", "bogus": 1}}}}"#),
            "unknown field \"bogus\"",
        ),
        (
            &["check", "in", "out"],
            format!(r#"{{"source": {{"repository": "{REPO}"}}, "extra": 1}}"#),
            "unknown field \"extra\"",
        ),
        (&["check", "out"], r#"{"source": {"repository": "Bad Repo!!"}}"#.into(), "source.repository"),
        (&["check", "in"], format!(r#"{{"source": {{"repository": "{REPO}"}}, {version}}}"#), "version.digest"),
        (&["check"], format!(r#"{{"source": {{"repository": "{REPO}", "tag_regex": "("}}}}"#), "source.tag_regex"),
        (
            &["check"],
            format!(r#"{{"source": {{"repository": "{REPO}", "semver_constraint": "1.2.3.4.5"}}}}"#),
            "source.semver_constraint",
        ),
        (
            &["check", "in", "out"],
            format!(r#"{{"source": {{"repository": "{REPO}", "platform": {{"os": 5}}}}}}"#),
            "source.platform.os: invalid type",
        ),
        (
            &["check", "out"],
            format!(r#"{{"source": {{"repository": "{REPO}", "aws_role_arns": ["arn:aws:iam::1:role/x"]}}}}"#),
            "source.aws_role_arns is set but source.aws_region is not",
        ),
        (
            &["check", "out"],
            format!(
                r#"{{"source": {{"repository": "{REPO}", "aws_region": "eu-west-1", "aws_secret_access_key": "s"}}}}"#
            ),
            "source.aws_secret_access_key is set but source.aws_access_key_id is not",
        ),
        (
            &["check", "out"],
            r#"{"source": {"repository": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/app", "aws_region": "us-east-2"}}"#
                .into(),
            "source.repository is an ECR registry in eu-west-1 but source.aws_region is us-east-2",
        ),
        (
            &["out"],
            format!(r#"{{"source": {{"repository": "{REPO}", "content_trust": {{"server": "x"}}}}}}"#),
            "source.content_trust.repository_key is not set",
        ),
        (
            &["out"],
            format!(
                r#"{{"source": {{"repository": "{REPO}"}}, "params": {{"image": "missing/*.tar", "version": "1.0.0"}}}}"#
            ),
            "params.image",
        ),
        (
            &["out"],
            format!(
                r#"{{"source": {{"repository": "{REPO}"}}, "params": {{"image": "x", "version": "1.0.0", "additional_tags": "nope"}}}}"#
            ),
            "params.",
        ),
        (&["in"], format!(r#"{{"source": {{"repository": "{REPO}"}}, "version": {{"tag": "1"}}}}"#), "invalid payload"),
        (
            &["in"],
            format!(
                r#"{{"source": {{"repository": "{REPO}", "label_regex": "a("}}, "version": {{"tag": "1", "digest": "{DIGEST}"}}}}"#
            ),
            r#"source.label_regex: "a(" is not a valid regular expression: unclosed group"#,
        ),
        (
            &["in"],
            format!(
                r#"{{"source": {{"repository": "{REPO}", "annotation_regex": "[z-a]"}}, "version": {{"tag": "1", "digest": "{DIGEST}"}}}}"#
            ),
            r#"source.annotation_regex: "[z-a]" is not a valid regular expression"#,
        ),
        (
            &["in"],
            get_request(r#"{"format": "bogus"}"#),
            r#"params.format: unknown format "bogus"; use rootfs, oci, docker or oci-layout"#,
        ),
    ];
    for (bins, stdin, says) in cases {
        for bin in *bins {
            let dir = tempfile::tempdir().unwrap();
            let out = resource(bin, dir.path(), stdin);
            assert_clear(&format!("{bin} <<< {stdin}"), &out, bin, says);
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "{bin} <<< {stdin}: left files behind");
        }
    }
}

/// `params.output_metadata` naming a place outside the output folder, by `..`, by an absolute
/// path or through a link the folder holds, is refused before the registry is asked (it is a
/// closed port: asking it would fail otherwise), and nothing is written anywhere.
#[test]
fn in_refuses_output_metadata_outside_its_folder() {
    let top = tempfile::tempdir().unwrap();
    let (dest, outside) = (top.path().join("dest"), top.path().join("outside"));
    std::fs::create_dir(&dest).unwrap();
    std::fs::create_dir(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, dest.join("abs-link")).unwrap();
    std::os::unix::fs::symlink("../outside", dest.join("up-link")).unwrap();
    std::os::unix::fs::symlink("..", dest.join("parent-link")).unwrap();
    let absolute = outside.join("meta.json");
    let cases = [
        ("../x".to_string(), "params.output_metadata: ../x has a `..`"),
        ("sub/../../outside/m.json".to_string(), "has a `..`"),
        (absolute.display().to_string(), "is absolute"),
        ("abs-link/meta.json".to_string(), "points outside the folder"),
        ("up-link/meta.json".to_string(), "points outside the folder"),
        ("parent-link/outside/meta.json".to_string(), "points outside the folder"),
        ("up-link/new/meta.json".to_string(), "points outside the folder"),
        (String::new(), "params.output_metadata is empty"),
        ("digest".to_string(), "params.output_metadata: digest is where this get writes its own \"digest\""),
        ("rootfs/etc/meta.json".to_string(), "its own \"rootfs\""),
    ];
    for (path, says) in cases {
        let stdin = get_request(&serde_json::json!({ "output_metadata": path }).to_string());
        let out = resource("in", &dest, &stdin);
        assert_clear(&format!("output_metadata {path:?}"), &out, "in", says);
        assert!(out.stderr.contains("params.output_metadata"), "{path:?}: {}", out.stderr);
        let mut left: Vec<_> = std::fs::read_dir(&dest).unwrap().map(|e| e.unwrap().file_name()).collect();
        left.sort();
        assert_eq!(left, ["abs-link", "parent-link", "up-link"], "{path:?}: output left behind");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "{path:?}: written outside");
        assert_eq!(std::fs::read_dir(top.path()).unwrap().count(), 2, "{path:?}: written beside the folder");
    }
}

#[test]
fn the_build_task_refuses_bad_params_in_one_line() {
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("Dockerfile"), "FROM scratch\n").unwrap();
    std::fs::write(work.path().join("args.yml"), "A: [1, 2]\n").unwrap();
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("CONTEXT", "nowhere")], "CONTEXT: nowhere is not a directory"),
        (&[("DOCKERFILE", "nope/Dockerfile")], "DOCKERFILE: nope/Dockerfile does not exist"),
        (&[("BUILD_ARGS_FILE", "missing")], "BUILD_ARGS_FILE: reading missing"),
        (&[("BUILD_ARGS_FILE", "args.yml")], "BUILD_ARGS_FILE: args.yml: A: expected a string"),
        (&[("LABELS_FILE", "missing")], "LABELS_FILE: reading missing"),
        (&[("BUILDKIT_SECRET_npm", "/nope")], "BUILDKIT_SECRET_npm: secret file /nope does not exist"),
        (&[("IMAGE_PLATFORM", "linux")], "IMAGE_PLATFORM: \"linux\" is not os/arch[/variant]"),
        (&[("IMAGE_ARG_BASE", "nope.tar")], "IMAGE_ARG_BASE: nope.tar does not exist"),
        (&[("CACHE_TO", "type=registry")], "CACHE_TO: \"type=registry\": a registry cache needs ref="),
        (&[("BUILDKIT_HOST", "ftp://x")], "BUILDKIT_HOST"),
        (&[("ADDITIONAL_TARGETS", "../up")], "ADDITIONAL_TARGETS"),
    ];
    for (vars, says) in cases {
        let mut cmd = command("kiln-build");
        cmd.current_dir(work.path()).env("RUST_BACKTRACE", "1");
        for (k, v) in *vars {
            cmd.env(k, v);
        }
        let out = run(cmd, b"");
        assert_clear(&format!("{vars:?}"), &out, "build", says);
        assert!(!work.path().join("image").exists(), "{vars:?}: left image/ behind");
    }
}
