//! `out` against the real registries: every input form, tags and aliases, re-pushes,
//! and bad input, cross-checked with skopeo and crane.

use std::path::Path;
use std::process::Command;

use kiln_tests::dev_env_or_skip;
use kiln_tests::harness::{
    DevEnv, Registry, crane_agrees, plain_manifest_status, plain_repo_exists, push_busybox, resource, skopeo_digest,
    source, unique_repo,
};
use serde_json::{Value, json};

fn skopeo(args: &[&str]) -> Vec<u8> {
    let out = Command::new("skopeo").args(args).output().expect("running skopeo");
    assert!(out.status.success(), "skopeo {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// Writes the seeded busybox (`seed_tag`) from the plain registry to `dest` in skopeo's `transport`.
fn export(env: &DevEnv, seed_tag: &str, transport: &str, dest: &Path, all: bool) {
    let src = format!("docker://{}/library/busybox:{seed_tag}", env.registries.plain.addr);
    let dst = format!("{transport}:{}", dest.display());
    let mut args = vec!["copy", "--quiet", "--src-tls-verify=false"];
    if all {
        args.push("--all");
    }
    args.extend([src.as_str(), dst.as_str()]);
    skopeo(&args);
}

fn put(env: &DevEnv, reg: &Registry, repo: &str, dir: &Path, params: Value) -> kiln_tests::harness::Outcome {
    resource("out", Some(dir), &json!({ "source": source(env, reg, repo), "params": params }))
}

fn tags_of(env: &DevEnv, reg: &Registry, repo: &str) -> Vec<String> {
    let mut args = vec!["list-tags".to_string()];
    if reg.addr == env.registries.plain.addr {
        args.push("--tls-verify=false".into());
    } else {
        args.push(format!("--cert-dir={}", env.tool_cert_dir.display()));
    }
    if let (Some(u), Some(p)) = (&reg.username, &reg.password) {
        args.push(format!("--creds={u}:{p}"));
    }
    args.push(format!("docker://{}", reg.repo(repo)));
    let out: Value = serde_json::from_slice(&skopeo(&args.iter().map(String::as_str).collect::<Vec<_>>())).unwrap();
    let mut tags: Vec<String> =
        out["Tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect();
    tags.sort();
    tags
}

#[test]
fn docker_save_tarball_to_every_registry() {
    let env = dev_env_or_skip!();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("image")).unwrap();
    export(env, "amd64", "docker-archive", &dir.path().join("image/image.tar"), false);
    let r = &env.registries;
    for reg in [&r.plain, &r.tls, &r.basic, &r.token] {
        let repo = unique_repo("out-docker");
        let out = put(env, reg, &repo, dir.path(), json!({ "image": "image/*.tar", "version": "1.0.0" }));
        let response = out.success().json();
        let digest = response["version"]["digest"].as_str().unwrap().to_string();
        assert_eq!(response["version"]["tag"], "1.0.0");
        assert_eq!(digest, skopeo_digest(env, reg, &repo, "1.0.0"), "{}", reg.addr);
        assert_eq!(
            response["metadata"],
            json!([{ "name": "repository", "value": reg.repo(&repo) }, { "name": "tags", "value": "1.0.0" }])
        );
    }
}

#[test]
fn docker_save_layers_go_as_they_are_and_read_back() {
    let env = dev_env_or_skip!();
    let reg = &env.registries.tls;
    let dir = tempfile::tempdir().unwrap();
    export(env, "amd64", "docker-archive", &dir.path().join("image.tar"), false);
    let repo = unique_repo("out-docker-readback");
    let out = put(env, reg, &repo, dir.path(), json!({ "image": "image.tar", "version": "1.0.0" }));
    let digest = out.success().json()["version"]["digest"].as_str().unwrap().to_string();
    assert!(out.stderr.contains(": 2 blobs uploaded"), "{}", out.stderr);

    // A Docker v2 manifest; skopeo's docker-archive holds plain tar layers, pushed uncompressed.
    let cert_dir = format!("--cert-dir={}", env.tool_cert_dir.display());
    let image = format!("docker://{}:1.0.0", reg.repo(&repo));
    let raw: Value = serde_json::from_slice(&skopeo(&["inspect", "--raw", &cert_dir, &image])).unwrap();
    assert_eq!(raw["mediaType"], "application/vnd.docker.distribution.manifest.v2+json");
    assert_eq!(raw["layers"][0]["mediaType"], "application/vnd.docker.image.rootfs.diff.tar");

    // skopeo reads every blob back (verifying their digests).
    let copy = tempfile::tempdir().unwrap();
    let dest = format!("oci:{}:x", copy.path().display());
    skopeo(&["copy", "--quiet", &format!("--src-{}", &cert_dir[2..]), &image, &dest]);

    // A second push finds the image there and only tags it.
    let again = put(env, reg, &repo, dir.path(), json!({ "image": "image.tar", "version": "1.0.1" }));
    assert_eq!(again.success().json()["version"]["digest"], json!(digest));
    assert!(
        again.stderr.contains("tagged 1.0.1 in") && again.stderr.contains("no blobs read or sent"),
        "{}",
        again.stderr
    );
    // A third, to a tag that already names it, sends nothing at all (not even the tag).
    let third = put(env, reg, &repo, dir.path(), json!({ "image": "image.tar", "version": "1.0.1" }));
    assert_eq!(third.success().json()["version"]["digest"], json!(digest));
    assert!(third.stderr.contains("as 1.0.1: nothing read or sent"), "{}", third.stderr);
}

#[test]
fn blobs_are_mounted_from_the_repository_the_image_names() {
    let env = dev_env_or_skip!();
    let reg = &env.registries.token;
    let dir = tempfile::tempdir().unwrap();
    let base = unique_repo("out-mount-base");
    // docker-archive:PATH:REF writes REF as the tarball's RepoTags.
    let dest = dir.path().join("image.tar");
    export(env, "amd64", "docker-archive", Path::new(&format!("{}:{}:1", dest.display(), reg.repo(&base))), false);
    put(env, reg, &base, dir.path(), json!({ "image": "image.tar", "version": "1.0.0" })).success();

    let app = unique_repo("out-mount-app");
    let out = put(env, reg, &app, dir.path(), json!({ "image": "image.tar", "version": "1.0.0" }));
    let digest = out.success().json()["version"]["digest"].as_str().unwrap().to_string();
    assert!(out.stderr.contains(&format!("mounted from {base}")), "{}", out.stderr);
    assert!(out.stderr.contains(": 0 blobs uploaded (0 B), 2 mounted"), "{}", out.stderr);
    assert_eq!(skopeo_digest(env, reg, &app, "1.0.0"), digest);
}

#[test]
fn oci_archive_and_layouts_keep_their_digests() {
    let env = dev_env_or_skip!();
    let reg = &env.registries.plain;
    let seeded_image = skopeo_digest(env, reg, "library/busybox", "amd64");
    let seeded_index = skopeo_digest(env, reg, "library/busybox", "latest");
    let dir = tempfile::tempdir().unwrap();

    export(env, "amd64", "oci-archive", &dir.path().join("image.tar"), false);
    let repo = unique_repo("out-ociarchive");
    let out = put(env, reg, &repo, dir.path(), json!({ "image": "image.tar", "version": "2.0.0" }));
    let pushed = out.success().json()["version"]["digest"].as_str().unwrap().to_string();
    assert_eq!(pushed, seeded_image);
    crane_agrees(env, &format!("{}:2.0.0", reg.repo(&repo)), &pushed);

    // A layout holding the multi-arch index: pushed whole, with the index's own digest.
    export(env, "latest", "oci", &dir.path().join("layout"), true);
    let repo = unique_repo("out-layout");
    let out = put(env, reg, &repo, dir.path(), json!({ "image": "layout", "version": "3.0.0" }));
    let pushed = out.success().json()["version"]["digest"].as_str().unwrap().to_string();
    assert_eq!(pushed, seeded_index);
    assert_eq!(skopeo_digest(env, reg, &repo, "3.0.0"), seeded_index);
    crane_agrees(env, &format!("{}:3.0.0", reg.repo(&repo)), &pushed);
    // Every platform's image arrived: skopeo can copy each one out.
    let copy = tempfile::tempdir().unwrap();
    skopeo(&[
        "copy",
        "--all",
        "--quiet",
        "--src-tls-verify=false",
        &format!("docker://{}:3.0.0", reg.repo(&repo)),
        &format!("oci:{}:x", copy.path().display()),
    ]);
}

#[test]
fn in_then_out_round_trips_the_digest() {
    let env = dev_env_or_skip!();
    let reg = &env.registries.token;
    let repo = unique_repo("out-roundtrip");
    let digest = push_busybox(env, "latest", reg, &repo, "orig");
    for format in ["oci", "oci-layout"] {
        let dir = tempfile::tempdir().unwrap();
        let fetched = dir.path().join("fetched");
        std::fs::create_dir(&fetched).unwrap();
        let req = json!({ "source": source(env, reg, &repo), "version": { "tag": "orig", "digest": digest }, "params": { "format": format } });
        resource("in", Some(&fetched), &req).success();
        let image = if format == "oci" { "fetched/image.tar" } else { "fetched/oci" };
        let out = put(
            env,
            reg,
            &repo,
            dir.path(),
            json!({ "image": image, "additional_tags": "fetched/tag", "tag_prefix": format!("{format}-") }),
        );
        let response = out.success().json();
        assert_eq!(response["version"]["tag"], format!("{format}-orig"));
        if format == "oci-layout" {
            assert_eq!(response["version"]["digest"], json!(digest), "the whole index comes back");
        }
        // The image was already there: only the tag is new.
        assert!(out.stderr.contains("no blobs read or sent"), "{}", out.stderr);
    }
}

#[test]
fn bump_aliases_and_additional_tags() {
    let env = dev_env_or_skip!();
    let reg = &env.registries.basic;
    let repo = unique_repo("out-aliases");
    let dir = tempfile::tempdir().unwrap();
    export(env, "amd64", "oci-archive", &dir.path().join("image.tar"), false);
    std::fs::write(dir.path().join("tags"), "extra1\n extra2 \n").unwrap();

    let out = put(
        env,
        reg,
        &repo,
        dir.path(),
        json!({ "image": "image.tar", "version": "v1.2.3", "bump_aliases": true, "additional_tags": "tags" }),
    );
    assert_eq!(out.success().json()["metadata"][1]["value"], "1.2.3 latest 1 1.2 extra1 extra2");
    // An older release bumps only what it still leads.
    let out =
        put(env, reg, &repo, dir.path(), json!({ "image": "image.tar", "version": "1.1.0", "bump_aliases": true }));
    assert_eq!(out.success().json()["metadata"][1]["value"], "1.1.0 1.1");
    // Prereleases bump nothing.
    let out = put(
        env,
        reg,
        &repo,
        dir.path(),
        json!({ "image": "image.tar", "version": "2.0.0-rc.1", "bump_aliases": true }),
    );
    assert_eq!(out.success().json()["metadata"][1]["value"], "2.0.0-rc.1");
    assert_eq!(
        tags_of(env, reg, &repo),
        ["1", "1.1", "1.1.0", "1.2", "1.2.3", "2.0.0-rc.1", "extra1", "extra2", "latest"]
    );

    // With a variant, the version and aliases carry it.
    let mut src = source(env, reg, &repo);
    src["variant"] = json!("slim");
    let out = resource(
        "out",
        Some(dir.path()),
        &json!({ "source": src, "params": { "image": "image.tar", "version": "1.0", "bump_aliases": true } }),
    );
    assert_eq!(out.success().json()["metadata"][1]["value"], "1.0.0-slim slim 1-slim 1.0-slim");
}

#[test]
fn bad_input_is_refused_clearly() {
    let env = dev_env_or_skip!();
    let reg = &env.registries.plain;
    let repo = unique_repo("out-bad");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.tar"), b"not a tar at all").unwrap();
    std::fs::write(dir.path().join("b.tar"), b"").unwrap();
    export(env, "amd64", "docker-archive", &dir.path().join("good.tar"), false);
    let good = std::fs::read(dir.path().join("good.tar")).unwrap();
    std::fs::create_dir(dir.path().join("cut")).unwrap();
    std::fs::write(dir.path().join("cut/truncated.tar"), &good[..good.len() / 2]).unwrap();
    std::fs::create_dir(dir.path().join("notlayout")).unwrap();

    let cases = [
        (json!({ "image": "nothing/*.tar", "version": "1.0.0" }), "no files match glob"),
        (json!({ "image": "*.tar", "version": "1.0.0" }), "too many files/directories match glob"),
        (json!({ "image": "a.tar", "version": "1.0.0" }), "a.tar"),
        (json!({ "image": "cut/truncated.tar", "version": "1.0.0" }), "truncated.tar"),
        (json!({ "image": "notlayout", "version": "1.0.0" }), "oci-layout"),
        (json!({ "image": "good.tar" }), "no tag specified"),
        (json!({ "image": "good.tar", "version": "one" }), r#"params.version: invalid semantic version: "one""#),
        (json!({ "image": "good.tar", "version": "1.0.0", "additional_tags": "missing" }), "params.additional_tags"),
        (json!({ "image": "good.tar", "version": "1.0.0", "tag_prefix": "x-" }), "tag_prefix"),
        (json!({ "version": "1.0.0" }), "params.image"),
        (json!({ "image": "good.tar", "versoin": "1.0.0" }), r#"unknown field "versoin""#),
    ];
    for (params, expected) in cases {
        let out = put(env, reg, &repo, dir.path(), params.clone());
        out.failure();
        assert!(out.stderr.contains(expected), "{params}: {}", out.stderr);
        assert!(out.stdout.is_empty(), "{params}");
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    }
    // Nothing was pushed by any of them: not a blob, let alone a tag. (skopeo's failing
    // list-tags was taken for that before, but a registry that is down fails it too.)
    assert!(plain_repo_exists(env, "library/busybox"), "the registry lists what it holds");
    assert!(!plain_repo_exists(env, &repo), "a refused put pushed something to {repo}");
}

#[test]
fn a_damaged_layer_fails_the_push_before_any_tag() {
    let env = dev_env_or_skip!();
    let reg = &env.registries.plain;
    let dir = tempfile::tempdir().unwrap();
    export(env, "amd64", "oci", &dir.path().join("layout"), false);
    // Flip one byte in the middle of the largest blob (the layer).
    let blobs = dir.path().join("layout/blobs/sha256");
    let layer = std::fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&layer).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&layer, bytes).unwrap();

    let repo = unique_repo("out-damaged");
    let out = put(env, reg, &repo, dir.path(), json!({ "image": "layout", "version": "1.0.0" }));
    out.failure();
    assert!(out.stderr.contains("the image is damaged"), "{}", out.stderr);
    assert!(out.stderr.contains(&*layer.file_name().unwrap().to_string_lossy()), "{}", out.stderr);
    // The registry answers 404 (manifest unknown) for the tag: not a failure of any kind.
    assert_eq!(plain_manifest_status(env, &repo, "1.0.0"), 404, "the tag was pushed anyway");
}
