//! `out` with the put params users' documents promise beyond registry-image-resource:
//! `tag` as a string or a list, `build` (a Dockerfile built with the build task's own
//! engine, then pushed), `cache`, and `digest_file`. Against the dev registries and
//! BuildKit (the dev engine's, and the real `buildkitd` that `out` starts itself),
//! cross-checked with skopeo and crane.

use std::path::Path;
use std::process::Command;

use kiln_tests::dev_env_or_skip;
use kiln_tests::harness::{
    DevEnv, Outcome, Registry, command, crane_agrees, from_busybox, plain_repo_exists, run, skopeo_digest, source,
    unique_repo, write_files,
};
use serde_json::{Value, json};

/// `out` in `dir` with BuildKit at the dev engine (or, with `spawn`, no `BUILDKIT_HOST`:
/// `out` starts the real `buildkitd` from the dev tools itself).
fn put(env: &DevEnv, reg: &Registry, repo: &str, dir: &Path, params: Value, spawn: bool) -> Outcome {
    let mut cmd = command("out");
    cmd.arg(dir);
    if spawn {
        let tmp = dir.join("..").join(format!("{}-tmp", dir.file_name().unwrap().to_string_lossy()));
        std::fs::create_dir_all(&tmp).unwrap();
        let path = format!("{}:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", env.buildkitd.bin_dir.display());
        cmd.env("PATH", path).env("TMPDIR", tmp);
    } else {
        cmd.env("BUILDKIT_HOST", format!("docker+unix://{}", env.docker.socket.display()));
    }
    let request = json!({ "source": source(env, reg, repo), "params": params });
    run(cmd, request.to_string().as_bytes())
}

fn app(env: &DevEnv) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_files(
        dir.path(),
        &[
            (
                "source-code/Dockerfile",
                &format!("{}ARG GREETING=hi\nRUN echo $GREETING > /greeting\n", from_busybox(env)),
            ),
            ("source-code/VERSION", "1.0.0\n"),
        ],
    );
    dir
}

/// skopeo's `inspect` of `repo:tag` in the plain registry (`--config`: the image's config).
fn inspect(reg: &Registry, repo: &str, tag: &str, extra: &[&str]) -> Value {
    let out = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false"])
        .args(extra)
        .arg(format!("docker://{}:{tag}", reg.repo(repo)))
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn build_and_push_under_a_tag_list() {
    let env = dev_env_or_skip!();
    let reg = &env.registries.plain;
    let repo = unique_repo("out-build");
    let dir = app(env);
    // The reference document's example 2, with a build arg and a digest file.
    let params = json!({
        "build": { "dockerfile": "source-code/Dockerfile", "context": "source-code", "build_args": { "GREETING": "hello" } },
        "tag": ["v1.0.0", "latest"],
        "digest_file": "out/digest.txt",
    });
    let out = put(env, reg, &repo, dir.path(), params, false);
    let response = out.success().json();
    let digest = response["version"]["digest"].as_str().unwrap().to_string();
    assert_eq!(response["version"]["tag"], "v1.0.0", "the first tag is the version");
    assert_eq!(response["metadata"][1]["value"], "v1.0.0 latest");
    for tag in ["v1.0.0", "latest"] {
        assert_eq!(skopeo_digest(env, reg, &repo, tag), digest, "{tag}");
        crane_agrees(env, &format!("{}:{tag}", reg.repo(&repo)), &digest);
    }
    assert_eq!(std::fs::read_to_string(dir.path().join("out/digest.txt")).unwrap(), digest, "no newline");
    // It is the Dockerfile's image: the build arg reached the RUN step.
    let config = inspect(reg, &repo, "v1.0.0", &["--config"]);
    let history = config["history"].to_string();
    assert!(history.contains("GREETING=hello"), "{history}");

    // The build task's names work too, and a single tag as a string.
    let params = json!({ "build": { "CONTEXT": "source-code", "BUILD_ARG_GREETING": "hello" }, "tag": "again" });
    let out = put(env, reg, &repo, dir.path(), params, false);
    assert_eq!(out.success().json()["version"]["tag"], "again");
}

#[test]
fn tag_lists_join_the_other_tags_and_are_checked() {
    let env = dev_env_or_skip!();
    let reg = &env.registries.plain;
    let repo = unique_repo("out-tag-list");
    let dir = tempfile::tempdir().unwrap();
    let export = Command::new("skopeo")
        .args(["copy", "--quiet", "--src-tls-verify=false"])
        .arg(format!("docker://{}/library/busybox:amd64", reg.addr))
        .arg(format!("oci-archive:{}", dir.path().join("image.tar").display()))
        .output()
        .unwrap();
    assert!(export.status.success(), "{}", String::from_utf8_lossy(&export.stderr));
    std::fs::write(dir.path().join("more"), "extra\n").unwrap();
    let params = json!({ "image": "image.tar", "tag": ["a", "b"], "version": "1.2.3", "additional_tags": "more" });
    let out = put(env, reg, &repo, dir.path(), params, false);
    assert_eq!(out.success().json()["metadata"][1]["value"], "a b 1.2.3 extra");

    // Shell the user hoped Concourse would run, and tags that are not tags: refused, naming
    // the param, before anything is pushed.
    let cases = [
        (json!(["$(cat source-code/VERSION)", "latest"]), "Concourse does not run or expand params"),
        (json!("${VERSION}"), "params.additional_tags"),
        (json!(["ok", "not a tag"]), "params.tag"),
        (json!(7), "params"),
    ];
    let fresh = unique_repo("out-tag-refused");
    for (tag, expected) in cases {
        let out = put(env, reg, &fresh, dir.path(), json!({ "image": "image.tar", "tag": tag }), false);
        out.failure();
        assert!(out.stderr.contains(expected), "{tag}: expected {expected:?} in {}", out.stderr);
        assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
    }
    assert!(!plain_repo_exists(env, &fresh), "nothing was pushed");
}

#[test]
fn bad_build_and_digest_file_params_are_refused_before_any_push() {
    let env = dev_env_or_skip!();
    let reg = &env.registries.plain;
    let repo = unique_repo("out-build-refused");
    let dir = app(env);
    let outside = tempfile::tempdir().unwrap();
    write_files(outside.path(), &[("Dockerfile", &from_busybox(env))]);
    std::os::unix::fs::symlink(outside.path(), dir.path().join("elsewhere")).unwrap();
    let build = json!({ "context": "source-code" });
    let cases = [
        (json!({ "build": build, "image": "x.tar", "tag": "t" }), "params.build and params.image"),
        (json!({ "build": { "contxt": "." }, "tag": "t" }), "params.build: unknown field \"contxt\""),
        (json!({ "build": { "context": "elsewhere" }, "tag": "t" }), "params.build.context"),
        (json!({ "build": { "context": "../" }, "tag": "t" }), "params.build.context"),
        (
            json!({ "build": { "context": "source-code", "dockerfile": "elsewhere/Dockerfile" }, "tag": "t" }),
            "params.build.dockerfile",
        ),
        (json!({ "build": build, "tag": "t", "digest_file": "../digest" }), "params.digest_file"),
        (json!({ "build": build, "tag": "t", "digest_file": "/tmp/digest" }), "params.digest_file"),
        (json!({ "image": "x.tar", "tag": "t", "cache": false }), "params.cache only applies with params.build"),
        (json!({ "build": { "context": "source-code", "cache": false }, "tag": "t", "cache": true }), "disagree"),
    ];
    for (params, expected) in cases {
        let out = put(env, reg, &repo, dir.path(), params.clone(), false);
        out.failure();
        assert!(out.stderr.contains(expected), "{params}: expected {expected:?} in {}", out.stderr);
    }
    assert!(!plain_repo_exists(env, &repo), "nothing was pushed");
    assert!(!dir.path().join("../digest").exists() && !Path::new("/tmp/digest").exists());
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 1, "nothing written outside");
}

/// `cache: true` keeps BuildKit's cache in the pushed image: a second put, on a `buildkitd`
/// of its own with empty state (as every put in Concourse gets), reuses the steps of the
/// first; `cache: false` runs them again. A step whose output differs on every run shows
/// which happened.
#[test]
fn the_cache_travels_with_the_image_between_fresh_daemons() {
    let env = dev_env_or_skip!();
    let reg = &env.registries.plain;
    let repo = unique_repo("out-build-cache");
    let dir = tempfile::tempdir().unwrap();
    let dockerfile = format!("{}RUN cat /proc/sys/kernel/random/uuid > /stamp\n", from_busybox(env));
    write_files(dir.path(), &[("Dockerfile", &dockerfile)]);
    let layers = |tag: &str| inspect(reg, &repo, tag, &[])["Layers"].clone();
    let first = put(env, reg, &repo, dir.path(), json!({ "build": {}, "tag": "one" }), true);
    let digest = first.success().json()["version"]["digest"].clone();
    let second = put(env, reg, &repo, dir.path(), json!({ "build": {}, "tag": "one" }), true);
    assert_eq!(second.success().json()["version"]["digest"], digest, "the same image again");
    assert!(second.stderr.contains("CACHED"), "the second build reused the first's steps:\n{}", second.stderr);
    let third = put(env, reg, &repo, dir.path(), json!({ "build": {}, "tag": "two", "cache": false }), true);
    third.success();
    let (one, two) = (layers("one"), layers("two"));
    assert_eq!(one.as_array().map(Vec::len), Some(2), "{one}");
    assert_eq!(one[0], two[0], "the base layer is the same");
    assert_ne!(one[1], two[1], "without the cache the RUN step ran again");
}
