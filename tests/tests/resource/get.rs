//! `in` against the real registries: every format, cross-checked with skopeo and umoci.

use std::path::Path;
use std::process::Command;

use kiln_image::digest::Digest;
use kiln_tests::dev_env_or_skip;
use kiln_tests::harness::{
    DevEnv, Registry, TinyImage, push_busybox, push_tiny, put_manifest, resource, source, unique_repo,
};
use kiln_tests::images::{Compression, Layer, push_layout, write_layout};
use serde_json::{Value, json};

fn request(env: &DevEnv, reg: &Registry, repo: &str, tag: &str, digest: &str, params: Value) -> Value {
    json!({ "source": source(env, reg, repo), "version": { "tag": tag, "digest": digest }, "params": params })
}

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Unpacks `repo:tag` of the plain registry with skopeo + umoci, the way people do today.
fn umoci_rootfs(env: &DevEnv, repo: &str, tag: &str, work: &Path) -> std::path::PathBuf {
    let layout = work.join("layout");
    run_ok(Command::new("skopeo").args([
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        &format!("docker://{}/{repo}:{tag}", env.registries.plain.addr),
        &format!("oci:{}:img", layout.display()),
    ]));
    let bundle = work.join("bundle");
    run_ok(Command::new("umoci").args(["unpack", "--image", &format!("{}:img", layout.display())]).arg(&bundle));
    bundle.join("rootfs")
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn rootfs_matches_umoci_and_writes_version_files() {
    let env = dev_env_or_skip!();
    let reg = &env.registries.plain;
    let repo = unique_repo("in-rootfs");
    let digest = push_busybox(env, "amd64", reg, &repo, "1.0");
    let dest = tempfile::tempdir().unwrap();
    let out = resource("in", Some(dest.path()), &request(env, reg, &repo, "1.0", &digest, json!({})));
    out.success();
    assert_eq!(
        out.json(),
        json!({ "version": { "tag": "1.0", "digest": digest }, "metadata": [
            { "name": "repository", "value": reg.repo(&repo) }, { "name": "tag", "value": "1.0" } ] })
    );
    assert_eq!(read(dest.path(), "tag"), "1.0");
    assert_eq!(read(dest.path(), "digest"), digest);
    assert_eq!(read(dest.path(), "repository"), reg.repo(&repo));
    let metadata: Value = serde_json::from_str(&read(dest.path(), "metadata.json")).unwrap();
    assert_eq!(metadata["cmd"], json!(["sh"]));
    assert_eq!(metadata["user"], json!(""));
    assert!(metadata["env"][0].as_str().unwrap().starts_with("PATH="));
    assert_eq!(read(dest.path(), "labels.json"), "{}");

    let work = tempfile::tempdir().unwrap();
    let theirs = umoci_rootfs(env, &repo, "1.0", work.path());
    kiln_testkit::tree::assert_same(&dest.path().join("rootfs"), &theirs);
    // Nothing else is left in the output folder.
    let mut names: Vec<_> =
        std::fs::read_dir(dest.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["digest", "labels.json", "metadata.json", "repository", "rootfs", "tag"]);
}

#[test]
fn index_resolves_to_the_requested_platform() {
    let env = dev_env_or_skip!();
    let reg = &env.registries.token;
    let repo = unique_repo("in-platform");
    let digest = push_busybox(env, "latest", reg, &repo, "multi");

    let dest = tempfile::tempdir().unwrap();
    let out = resource("in", Some(dest.path()), &request(env, reg, &repo, "multi", &digest, json!({})));
    out.success();
    // ELF's e_machine (bytes 18–19, little-endian): 0x3e is x86-64, 0xb7 is AArch64.
    let machine = |dir: &std::path::Path| {
        let elf = std::fs::read(dir.join("rootfs/bin/busybox")).unwrap();
        u16::from_le_bytes([elf[18], elf[19]])
    };
    assert_eq!(machine(dest.path()), 0x3e, "the default is the amd64 image's busybox");

    let dest = tempfile::tempdir().unwrap();
    let params = json!({ "platform": { "os": "linux", "architecture": "arm64" } });
    let out = resource("in", Some(dest.path()), &request(env, reg, &repo, "multi", &digest, params));
    out.success();
    assert_eq!(machine(dest.path()), 0xb7, "platform arm64 is the arm64 image's busybox");

    let dest = tempfile::tempdir().unwrap();
    let params = json!({ "platform": { "os": "linux", "architecture": "s390x" } });
    let out = resource("in", Some(dest.path()), &request(env, reg, &repo, "multi", &digest, params));
    out.failure();
    assert!(out.stderr.contains("no image for platform linux/s390x"), "{}", out.stderr);
    assert!(out.stderr.contains("linux/amd64") && out.stderr.contains("linux/arm64/v8"), "{}", out.stderr);
    assert_eq!(std::fs::read_dir(dest.path()).unwrap().count(), 0, "a failed in leaves nothing");
}

#[test]
fn oci_format_is_readable_by_skopeo_as_docker_and_oci_archive() {
    let env = dev_env_or_skip!();
    let reg = &env.registries.basic;
    let repo = unique_repo("in-oci");
    let digest = push_busybox(env, "latest", reg, &repo, "v2");
    let dest = tempfile::tempdir().unwrap();
    let out = resource("in", Some(dest.path()), &request(env, reg, &repo, "v2", &digest, json!({ "format": "oci" })));
    out.success();
    assert_eq!(read(dest.path(), "labels.json"), "{}");
    let tar = dest.path().join("image.tar");
    for transport in ["docker-archive", "oci-archive"] {
        let inspected =
            Command::new("skopeo").args(["inspect", &format!("{transport}:{}", tar.display())]).output().unwrap();
        assert!(inspected.status.success(), "{transport}: {}", String::from_utf8_lossy(&inspected.stderr));
        let info: Value = serde_json::from_slice(&inspected.stdout).unwrap();
        assert_eq!(info["Architecture"], "amd64", "{transport}");
        assert_eq!(info["Layers"].as_array().unwrap().len(), 1, "{transport}");
    }
    let listed = Command::new("tar").arg("tf").arg(&tar).output().unwrap();
    let listed = String::from_utf8(listed.stdout).unwrap();
    for name in ["manifest.json", "index.json", "oci-layout"] {
        assert!(listed.lines().any(|l| l == name), "{name} in {listed}");
    }
}

/// What the plain registry serves for `repo@reference`: the manifest as stored, or with
/// `--config`, the image's config.
fn plain_raw(reg: &Registry, repo: &str, reference: &str, config: bool) -> Vec<u8> {
    let mut cmd = Command::new("skopeo");
    cmd.args(["inspect", "--raw", "--tls-verify=false"]);
    if config {
        cmd.arg("--config");
    }
    let out = cmd.arg(format!("docker://{}{reference}", reg.repo(repo))).output().unwrap();
    assert!(out.status.success(), "skopeo inspect {repo}{reference}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// Every file of a tarball, by name.
fn tar_files(path: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut archive = tar::Archive::new(std::fs::File::open(path).unwrap());
    let mut files = std::collections::BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().display().to_string();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
        files.insert(name, bytes);
    }
    files
}

#[test]
fn docker_format_is_a_docker_save_tarball_of_the_registry_image() {
    let env = dev_env_or_skip!();
    let reg = &env.registries.plain;
    let repo = unique_repo("in-docker");
    let digest = push_busybox(env, "amd64", reg, &repo, "d1");
    let dest = tempfile::tempdir().unwrap();
    let out =
        resource("in", Some(dest.path()), &request(env, reg, &repo, "d1", &digest, json!({ "format": "docker" })));
    out.success();
    assert_eq!(read(dest.path(), "labels.json"), "{}");
    let tar = dest.path().join("image.tar");

    // skopeo reads it as a docker-save archive, under the name the tarball gives it.
    let inspected = Command::new("skopeo").args(["inspect", &format!("docker-archive:{}", tar.display())]).output();
    let inspected = inspected.unwrap();
    assert!(inspected.status.success(), "{}", String::from_utf8_lossy(&inspected.stderr));
    let info: Value = serde_json::from_slice(&inspected.stdout).unwrap();
    let registry_manifest = plain_raw(reg, &repo, &format!("@{digest}"), false);
    let registry_manifest: Value = serde_json::from_slice(&registry_manifest).unwrap();
    let registry_layers: Vec<&Value> =
        registry_manifest["layers"].as_array().unwrap().iter().map(|l| &l["digest"]).collect();
    let registry_config: Value = serde_json::from_slice(&plain_raw(reg, &repo, &format!("@{digest}"), true)).unwrap();
    // A docker-save archive's layers go by their uncompressed digests.
    assert_eq!(info["Layers"], registry_config["rootfs"]["diff_ids"]);
    assert_eq!(info["Architecture"], "amd64");

    // docker's manifest.json: the repository and tag, the registry's config and layers.
    let files = tar_files(&tar);
    let docker: Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    assert_eq!(docker[0]["RepoTags"], json!([format!("{}:d1", reg.repo(&repo))]));
    let blob = |d: &Value| d.as_str().unwrap().parse::<Digest>().unwrap().blob_path();
    assert_eq!(docker[0]["Config"], json!(blob(&registry_manifest["config"]["digest"])));
    let layer_paths: Vec<String> = registry_layers.iter().map(|d| blob(d)).collect();
    assert_eq!(docker[0]["Layers"], json!(layer_paths));
    // The config skopeo reads back is the registry's, byte for byte; so are the manifest and layers.
    let config = Command::new("skopeo")
        .args(["inspect", "--raw", "--config", &format!("docker-archive:{}", tar.display())])
        .output()
        .unwrap();
    assert_eq!(config.stdout, plain_raw(reg, &repo, &format!("@{digest}"), true));
    assert_eq!(Digest::of(&config.stdout).to_string(), registry_manifest["config"]["digest"].as_str().unwrap());
    assert_eq!(Digest::of(&files[&blob(&json!(digest))]).to_string(), digest);
    for (path, d) in layer_paths.iter().zip(&registry_layers) {
        assert_eq!(Digest::of(&files[path]).to_string(), d.as_str().unwrap(), "{path}");
    }

    // The very tarball `format: oci` writes.
    let oci = tempfile::tempdir().unwrap();
    let out = resource("in", Some(oci.path()), &request(env, reg, &repo, "d1", &digest, json!({ "format": "oci" })));
    out.success();
    assert!(std::fs::read(oci.path().join("image.tar")).unwrap() == std::fs::read(&tar).unwrap());
}

/// Pushes an image with labels, env, entrypoint, cmd and user set, in two layers (one
/// gzipped, one not); returns its digest and the metadata `in` should write for it as `tag`.
fn push_described_image(env: &DevEnv, repo: &str, tag: &str) -> (String, Value) {
    let reg = &env.registries.plain;
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let first = Layer::new().dir("app", 0o755).file("app/run", 0o755, b"#!/bin/sh\necho hi\n").bytes();
    let second = Layer::new().file("app/data", 0o644, &[7u8; 3000]).bytes();
    let config = json!({
        "Env": ["PATH=/usr/bin:/bin", "APP_MODE=test"],
        "Entrypoint": ["/app/run"],
        "Cmd": ["--verbose"],
        "User": "1000:1000",
        "Labels": { "org.example.team": "kiln", "org.example.rev": "42" },
    });
    write_layout(&layout, tag, &[(first, Compression::Gzip), (second, Compression::None)], config).unwrap();
    let digest = push_layout(env, &layout, tag, reg, repo);
    let manifest: Value = serde_json::from_slice(&plain_raw(reg, repo, &format!("@{digest}"), false)).unwrap();
    let sizes: Vec<u64> = manifest["layers"].as_array().unwrap().iter().map(|l| l["size"].as_u64().unwrap()).collect();
    assert_eq!(sizes.len(), 2);
    let expected = json!({
        "repository": reg.repo(repo),
        "tag": tag,
        "digest": digest,
        "manifest_digest": digest,
        "platform": { "os": "linux", "architecture": "amd64" },
        "created": "2024-05-01T00:00:00Z",
        "labels": { "org.example.team": "kiln", "org.example.rev": "42" },
        "env": ["PATH=/usr/bin:/bin", "APP_MODE=test"],
        "entrypoint": ["/app/run"],
        "cmd": ["--verbose"],
        "user": "1000:1000",
        "layers": 2,
        "size": sizes.iter().sum::<u64>(),
    });
    (digest, expected)
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<_> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

#[test]
fn output_metadata_describes_the_fetched_image() {
    let env = dev_env_or_skip!();
    let reg = &env.registries.plain;
    let repo = unique_repo("in-metadata");
    let (digest, expected) = push_described_image(env, &repo, "m1");
    let json_at = |path: &Path| -> Value {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).unwrap()
    };

    // rootfs, over a link left where the file goes: the link is replaced, its target untouched.
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("victim"), "untouched").unwrap();
    let dest = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path().join("victim"), dest.path().join("meta.json")).unwrap();
    let params = json!({ "output_metadata": "meta.json" });
    resource("in", Some(dest.path()), &request(env, reg, &repo, "m1", &digest, params)).success();
    assert_eq!(json_at(&dest.path().join("meta.json")), expected);
    assert!(std::fs::symlink_metadata(dest.path().join("meta.json")).unwrap().is_file());
    assert_eq!(read(outside.path(), "victim"), "untouched");
    assert_eq!(read(&dest.path().join("rootfs/app"), "data").len(), 3000);

    // docker, into folders that do not exist yet.
    let dest = tempfile::tempdir().unwrap();
    let params = json!({ "format": "docker", "output_metadata": "out/image/meta.json" });
    resource("in", Some(dest.path()), &request(env, reg, &repo, "m1", &digest, params)).success();
    assert_eq!(json_at(&dest.path().join("out/image/meta.json")), expected);
    assert_eq!(names_in(dest.path()), ["digest", "image.tar", "labels.json", "out", "repository", "tag"]);

    // skip_download: the same document, from the manifest and config alone.
    let dest = tempfile::tempdir().unwrap();
    let params = json!({ "skip_download": true, "output_metadata": "meta.json" });
    resource("in", Some(dest.path()), &request(env, reg, &repo, "m1", &digest, params)).success();
    assert_eq!(json_at(&dest.path().join("meta.json")), expected);
    assert_eq!(names_in(dest.path()), ["digest", "meta.json", "repository", "tag"]);
}

/// For an index, the metadata is the fetched platform's; `digest` stays the version's.
#[test]
fn output_metadata_of_an_index_is_the_fetched_platforms() {
    let env = dev_env_or_skip!();
    let reg = &env.registries.plain;
    let repo = unique_repo("in-metadata-index");
    let digest = push_busybox(env, "latest", reg, &repo, "multi");
    let index: Value = serde_json::from_slice(&plain_raw(reg, &repo, &format!("@{digest}"), false)).unwrap();
    let arm64 = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["architecture"] == "arm64")
        .expect("an arm64 entry")["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let manifest: Value = serde_json::from_slice(&plain_raw(reg, &repo, &format!("@{arm64}"), false)).unwrap();
    let size: u64 = manifest["layers"].as_array().unwrap().iter().map(|l| l["size"].as_u64().unwrap()).sum();

    let dest = tempfile::tempdir().unwrap();
    let params = json!({
        "format": "oci-layout",
        "platform": { "os": "linux", "architecture": "arm64" },
        "output_metadata": "meta.json",
    });
    resource("in", Some(dest.path()), &request(env, reg, &repo, "multi", &digest, params)).success();
    let got: Value = serde_json::from_str(&read(dest.path(), "meta.json")).unwrap();
    assert_eq!(got["digest"], json!(digest));
    assert_eq!(got["manifest_digest"], json!(arm64));
    assert_eq!(got["platform"], json!({ "os": "linux", "architecture": "arm64", "variant": "v8" }));
    assert_eq!(got["layers"], json!(manifest["layers"].as_array().unwrap().len()));
    assert_eq!(got["size"], json!(size));
    assert!(dest.path().join("oci/index.json").is_file());
}

#[test]
fn oci_layout_keeps_the_whole_index() {
    let env = dev_env_or_skip!();
    let reg = &env.registries.plain;
    let repo = unique_repo("in-layout");
    let digest = push_busybox(env, "latest", reg, &repo, "all");
    let dest = tempfile::tempdir().unwrap();
    let params = json!({ "format": "oci-layout" });
    resource("in", Some(dest.path()), &request(env, reg, &repo, "all", &digest, params)).success();
    let index = std::fs::read(dest.path().join("oci/index.json")).unwrap();
    assert_eq!(Digest::of(&index).to_string(), digest);
    assert!(!dest.path().join("oci/single-image-digest").exists());
    // Every platform's image is there, each blob under its own digest.
    let blob = |digest: &str| {
        let path = dest.path().join("oci").join(digest.parse::<Digest>().unwrap().blob_path());
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(Digest::of(&bytes).to_string(), digest);
        bytes
    };
    let index: Value = serde_json::from_slice(&index).unwrap();
    let children = index["manifests"].as_array().unwrap();
    assert_eq!(children.len(), 2);
    for child in children {
        let manifest: Value = serde_json::from_slice(&blob(child["digest"].as_str().unwrap())).unwrap();
        blob(manifest["config"]["digest"].as_str().unwrap());
        for layer in manifest["layers"].as_array().unwrap() {
            blob(layer["digest"].as_str().unwrap());
        }
    }

    // A single image is wrapped in an index and marked.
    let single = push_busybox(env, "amd64", reg, &repo, "one");
    let dest = tempfile::tempdir().unwrap();
    resource("in", Some(dest.path()), &request(env, reg, &repo, "one", &single, json!({ "format": "oci-layout" })))
        .success();
    assert_eq!(read(&dest.path().join("oci"), "single-image-digest"), single);
    let index: Value = serde_json::from_str(&read(&dest.path().join("oci"), "index.json")).unwrap();
    assert_eq!(index["manifests"][0]["digest"], json!(single));
}

#[test]
fn skip_download_writes_only_the_version_files() {
    let env = dev_env_or_skip!();
    let reg = &env.registries.tls;
    let repo = unique_repo("in-skip");
    let digest = push_busybox(env, "amd64", reg, &repo, "s");
    let dest = tempfile::tempdir().unwrap();
    let out =
        resource("in", Some(dest.path()), &request(env, reg, &repo, "s", &digest, json!({ "skip_download": true })));
    out.success();
    let mut names: Vec<_> =
        std::fs::read_dir(dest.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["digest", "repository", "tag"]);
}

#[test]
fn labels_and_annotations_become_metadata() {
    let env = dev_env_or_skip!();
    let reg = &env.registries.plain;
    let repo = unique_repo("in-labels");
    // Make a labelled image with umoci from the seeded busybox.
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    run_ok(Command::new("skopeo").args([
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        &format!("docker://{}/library/busybox:amd64", reg.addr),
        &format!("oci:{}:base", layout.display()),
    ]));
    run_ok(Command::new("umoci").args([
        "config",
        "--image",
        &format!("{}:base", layout.display()),
        "--tag",
        "labelled",
        "--config.label",
        "org.example.team=kiln",
        "--config.label",
        "org.example.other=x",
        "--config.label",
        "unrelated=y",
        "--config.user",
        "nobody",
    ]));
    run_ok(Command::new("skopeo").args([
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        &format!("oci:{}:labelled", layout.display()),
        &format!("docker://{}:v1", reg.repo(&repo)),
    ]));
    let digest = kiln_tests::harness::skopeo_digest(env, reg, &repo, "v1");
    let mut req = request(env, reg, &repo, "v1", &digest, json!({}));
    req["source"]["label_regex"] = json!("^org\\.example\\.");
    let dest = tempfile::tempdir().unwrap();
    let out = resource("in", Some(dest.path()), &req);
    let metadata = &out.success().json()["metadata"];
    assert_eq!(
        metadata,
        &json!([
            { "name": "repository", "value": reg.repo(&repo) },
            { "name": "tag", "value": "v1" },
            { "name": "org.example.other", "value": "x" },
            { "name": "org.example.team", "value": "kiln" },
        ])
    );
    let labels: Value = serde_json::from_str(&read(dest.path(), "labels.json")).unwrap();
    assert_eq!(labels["unrelated"], "y");
    let run: Value = serde_json::from_str(&read(dest.path(), "metadata.json")).unwrap();
    assert_eq!(run["user"], "nobody");
}

#[test]
fn bad_requests_fail_clearly_and_leave_nothing() {
    let env = dev_env_or_skip!();
    let reg = &env.registries.plain;
    let repo = unique_repo("in-bad");
    let digest = push_busybox(env, "amd64", reg, &repo, "1");
    let missing = format!("sha256:{}", "1".repeat(64));
    let cases = [
        (request(env, reg, &repo, "1", &missing, json!({})), "does not exist"),
        (request(env, reg, &repo, "1", "sha256:nothex", json!({})), "version.digest"),
        (request(env, reg, &repo, "1", &digest, json!({ "format": "zip" })), "params.format"),
        (request(env, reg, &repo, "1", &digest, json!({ "formatt": "oci" })), r#"unknown field "formatt""#),
    ];
    for (req, expected) in cases {
        let dest = tempfile::tempdir().unwrap();
        let out = resource("in", Some(dest.path()), &req);
        out.failure();
        assert!(out.stderr.contains(expected), "{expected}: {}", out.stderr);
        assert_eq!(std::fs::read_dir(dest.path()).unwrap().count(), 0, "{expected}: output left behind");
    }
    // No directory argument, or one that does not exist.
    let out = kiln_tests::harness::run(kiln_tests::harness::command("in"), b"{}");
    out.failure();
    assert!(out.stderr.contains("usage: in DIRECTORY"), "{}", out.stderr);
    let out = resource("in", Some(Path::new("/nonexistent/kiln")), &request(env, reg, &repo, "1", &digest, json!({})));
    out.failure();
    assert!(out.stderr.contains("/nonexistent/kiln does not exist"), "{}", out.stderr);
}

#[test]
fn bars_on_a_terminal_lines_in_a_log() {
    let env = dev_env_or_skip!();
    let reg = &env.registries.plain;
    let repo = unique_repo("in-tty");
    let digest = push_busybox(env, "amd64", reg, &repo, "t");
    let work = tempfile::tempdir().unwrap();
    // A narrow terminal too: the bars fit its width rather than wrapping (a wrapped bar
    // redrawn in place leaves a trail of half-lines).
    for (debug, expect_bars, columns) in [(false, true, 80), (false, true, 40), (true, false, 80)] {
        let dest = work.path().join(format!("dest-{debug}-{columns}"));
        std::fs::create_dir(&dest).unwrap();
        let mut req = request(env, reg, &repo, "t", &digest, json!({}));
        req["source"]["debug"] = json!(debug);
        let req_file = work.path().join("req.json");
        std::fs::write(&req_file, req.to_string()).unwrap();
        // `script` gives the step a terminal, as `fly execute` or a developer's shell would.
        let inner = format!(
            "stty rows 24 cols {columns}; {} {} < {} > {}",
            kiln_tests::harness::bin("in").display(),
            dest.display(),
            req_file.display(),
            work.path().join("stdout").display()
        );
        let out = Command::new("script").args(["-qec", &inner, "/dev/null"]).output().expect("running script");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
        let terminal = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            terminal.contains("\x1b[2K") && terminal.contains("100%") && terminal.contains(" done"),
            expect_bars,
            "{terminal}"
        );
        assert_eq!(terminal.contains("downloaded:"), !expect_bars, "{terminal}");
        if expect_bars {
            // The bars' lines (kiln's own lines, such as the reference fetched, wrap as any
            // text does: they are never redrawn).
            let bars = terminal.split(['\r', '\n']).filter(|l| l.contains("layer 1/1"));
            let widest = bars.map(visible_width).max().unwrap_or(0);
            assert!(widest <= columns, "a bar of {widest} columns on a terminal of {columns}:\n{terminal}");
        }
        assert!(dest.join("rootfs/bin/busybox").exists());
    }
}

/// How many columns `line` takes on a terminal: its characters less escape sequences.
fn visible_width(line: &str) -> usize {
    let (mut width, mut chars) = (0, line.chars());
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ parameters, then a final byte in @..~.
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else if !c.is_control() {
            width += 1;
        }
    }
    width
}

/// An index listing a nested index 1,000 times, which lists one image 1,000 times: three
/// distinct documents, each fetched once (walked naively, a million fetches). Indexes
/// nested deeper than the cap are refused naming it.
#[test]
fn oci_layout_walks_each_document_once_and_caps_nesting() {
    let env = dev_env_or_skip!();
    let reg = &env.registries.plain;
    let repo = unique_repo("get-fanout");
    let image = push_tiny(env, &repo, "image", TinyImage::new("fanout", None));
    let entry = |digest: &str, media_type: &str, size: usize| json!({ "mediaType": media_type, "digest": digest, "size": size, "platform": { "architecture": "amd64", "os": "linux" } });
    let index_of = |entries: Vec<Value>| {
        json!({ "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries })
            .to_string()
            .into_bytes()
    };
    let image_size = {
        let out = Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false", &format!("docker://{}:image", reg.repo(&repo))])
            .output()
            .unwrap();
        out.stdout.len()
    };
    const INDEX: &str = "application/vnd.oci.image.index.v1+json";
    let inner = index_of(vec![entry(&image, "application/vnd.oci.image.manifest.v1+json", image_size); 1000]);
    let inner_digest = Digest::of(&inner).to_string();
    put_manifest(env, &repo, &inner_digest, INDEX, &inner);
    // The image itself first, so the platform resolves; then the nested index, 1,000 times.
    let mut entries = vec![entry(&image, "application/vnd.oci.image.manifest.v1+json", image_size)];
    entries.extend(vec![entry(&inner_digest, INDEX, inner.len()); 1000]);
    let outer = index_of(entries);
    let outer_digest = Digest::of(&outer).to_string();
    put_manifest(env, &repo, "fanout", INDEX, &outer);

    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let out = resource(
        "in",
        Some(dir.path()),
        &request(env, reg, &repo, "fanout", &outer_digest, json!({ "format": "oci-layout" })),
    );
    out.success();
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "took {:?}", started.elapsed());
    let blobs = dir.path().join("oci/blobs/sha256");
    for digest in [&inner_digest, &image] {
        assert!(blobs.join(digest.trim_start_matches("sha256:")).is_file(), "{digest} missing");
    }

    // Five indexes deep: one more than the cap.
    let mut child = (image.clone(), "application/vnd.oci.image.manifest.v1+json", image_size);
    let mut top = String::new();
    for level in 0..5 {
        let mut entries = vec![entry(&child.0, child.1, child.2)];
        if level == 4 {
            entries.insert(0, entry(&image, "application/vnd.oci.image.manifest.v1+json", image_size));
        }
        let bytes = index_of(entries);
        let digest = Digest::of(&bytes).to_string();
        put_manifest(env, &repo, if level == 4 { "deep" } else { &digest }, INDEX, &bytes);
        top = digest.clone();
        child = (digest, INDEX, bytes.len());
    }
    let dir = tempfile::tempdir().unwrap();
    let out =
        resource("in", Some(dir.path()), &request(env, reg, &repo, "deep", &top, json!({ "format": "oci-layout" })));
    out.failure();
    assert!(out.stderr.contains("nests indexes more than 4 deep"), "{}", out.stderr);
    assert!(!dir.path().join("oci").exists());
}
