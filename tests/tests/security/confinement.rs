//! Trusting nothing an input folder says (issue 14), with the real `out`, `in` and
//! `kiln-build` against the dev environment.
//!
//! - Reads stay inside the folder: `out` refuses an OCI layout blob, a `params.image` match
//!   and an `additional_tags` file that are links leaving the put's folder, before a byte is
//!   sent; the build task refuses its params files and `IMAGE_ARG_*` images that do the same.
//!   Links that stay inside keep working.
//! - A layout blob whose bytes are not its digest is never committed: its upload is
//!   cancelled and no tag moves.
//! - Writes never go through what a folder already holds: `in` with `tag`, `digest` and its
//!   other outputs, and its work folder's old predictable name, planted as links to a victim;
//!   the build task's `cache/` and `image/` holding links to a victim. The victim keeps its
//!   exact contents, and the outputs are right.

use std::io::Write as _;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Stdio;

use kiln_tests::dev_env_or_skip;
use kiln_tests::faultproxy::FaultProxy;
use kiln_tests::harness::{
    DevEnv, Outcome, build_task, command, files_under, plain_blob_status, plain_manifest_status, push_busybox,
    resource, skopeo_digest, unique_repo,
};
use serde_json::{Value, json};

/// Writes the seeded busybox (`seed_tag`) to `dest` in skopeo's `transport`.
fn export(env: &DevEnv, seed_tag: &str, transport: &str, dest: &Path) {
    let src = format!("docker://{}/library/busybox:{seed_tag}", env.registries.plain.addr);
    let dst = format!("{transport}:{}", dest.display());
    let out = std::process::Command::new("skopeo")
        .args(["copy", "--quiet", "--src-tls-verify=false", &src, &dst])
        .output()
        .expect("running skopeo");
    assert!(out.status.success(), "skopeo copy {src} {dst}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The hex of the first layer of the one image in the OCI layout at `dir`.
fn first_layer(dir: &Path) -> String {
    let read = |p: &Path| -> Value { serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap() };
    let index = read(&dir.join("index.json"));
    let manifest = index["manifests"][0]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string();
    let manifest = read(&dir.join("blobs/sha256").join(manifest));
    manifest["layers"][0]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string()
}

/// `out` of `params` from `dir` to `repo` on the plain registry, through `proxy`.
fn put_through(proxy: &FaultProxy, repo: &str, dir: &Path, params: Value) -> Outcome {
    resource(
        "out",
        Some(dir),
        &json!({ "source": { "repository": format!("{}/{repo}", proxy.addr) }, "params": params }),
    )
}

fn uploads(proxy: &FaultProxy) -> Vec<String> {
    proxy.requests().into_iter().filter(|r| r.contains("/blobs/uploads/")).collect()
}

/// A folder holding one file, `precious`, to be left alone.
fn victim() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("precious"), "precious\n").unwrap();
    dir
}

fn assert_untouched(victim: &Path, out: &Outcome) {
    let names: Vec<String> =
        std::fs::read_dir(victim).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["precious"], "the victim folder changed\n--- stderr\n{}", out.stderr);
    assert_eq!(std::fs::read_to_string(victim.join("precious")).unwrap(), "precious\n", "{}", out.stderr);
}

fn is_regular(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file())
}

#[test]
fn out_refuses_a_layout_blob_linked_outside_before_sending_anything() {
    let env = dev_env_or_skip!();
    let put = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let layout = put.path().join("layout");
    export(env, "amd64", "oci", &layout);
    // The layer's own bytes, kept outside the put's folder: its digest matches, so only the
    // link gives it away.
    let hex = first_layer(&layout);
    let blob = layout.join("blobs/sha256").join(&hex);
    std::fs::rename(&blob, outside.path().join("secret")).unwrap();
    symlink(outside.path().join("secret"), &blob).unwrap();

    let proxy = FaultProxy::start(&env.registries.plain.addr, vec![]);
    let repo = unique_repo("confined-layout");
    let out = put_through(&proxy, &repo, put.path(), json!({ "image": "layout", "version": "1.0.0" }));
    out.failure();
    assert!(
        out.stderr.contains(&format!("blobs/sha256/{hex}")) && out.stderr.contains("points outside"),
        "{}",
        out.stderr
    );
    assert!(uploads(&proxy).is_empty(), "uploads started: {:?}", uploads(&proxy));
    assert_eq!(plain_manifest_status(env, &repo, "1.0.0"), 404);
}

#[test]
fn out_refuses_an_image_and_additional_tags_linked_outside() {
    let env = dev_env_or_skip!();
    let put = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    export(env, "amd64", "docker-archive", &outside.path().join("image.tar"));
    std::fs::write(outside.path().join("tags"), "leaked\n").unwrap();
    let proxy = FaultProxy::start(&env.registries.plain.addr, vec![]);

    // params.image matches a link to a tarball outside.
    std::fs::create_dir(put.path().join("image")).unwrap();
    symlink(outside.path().join("image.tar"), put.path().join("image/image.tar")).unwrap();
    let repo = unique_repo("confined-image");
    let out = put_through(&proxy, &repo, put.path(), json!({ "image": "image/*.tar", "version": "1.0.0" }));
    out.failure();
    assert!(out.stderr.contains("image/image.tar") && out.stderr.contains("points outside"), "{}", out.stderr);
    assert!(uploads(&proxy).is_empty(), "uploads started: {:?}", uploads(&proxy));
    assert_eq!(plain_manifest_status(env, &repo, "1.0.0"), 404);

    // A real tarball, but the additional_tags file links outside: its words never become tags.
    std::fs::remove_file(put.path().join("image/image.tar")).unwrap();
    std::fs::copy(outside.path().join("image.tar"), put.path().join("image/image.tar")).unwrap();
    symlink(outside.path().join("tags"), put.path().join("tags")).unwrap();
    let repo = unique_repo("confined-tags");
    let params = json!({ "image": "image/image.tar", "version": "1.0.0", "additional_tags": "tags" });
    let out = put_through(&proxy, &repo, put.path(), params);
    out.failure();
    assert!(out.stderr.contains("additional_tags") && out.stderr.contains("points outside"), "{}", out.stderr);
    assert!(uploads(&proxy).is_empty(), "uploads started: {:?}", uploads(&proxy));
    assert_eq!(plain_manifest_status(env, &repo, "leaked"), 404);
    assert_eq!(plain_manifest_status(env, &repo, "1.0.0"), 404);
}

#[test]
fn out_follows_links_that_stay_inside_the_folder() {
    let env = dev_env_or_skip!();
    let reg = &env.registries.plain;
    let put = tempfile::tempdir().unwrap();
    let layout = put.path().join("layout");
    export(env, "amd64", "oci", &layout);
    // The layer kept in another input of the same put, linked relatively.
    let hex = first_layer(&layout);
    std::fs::create_dir(put.path().join("shared")).unwrap();
    let blob = layout.join("blobs/sha256").join(&hex);
    std::fs::rename(&blob, put.path().join("shared").join(&hex)).unwrap();
    symlink(Path::new("../../../shared").join(&hex), &blob).unwrap();
    std::fs::write(put.path().join("shared/tags"), "inside\n").unwrap();
    symlink("shared/tags", put.path().join("tags")).unwrap();
    symlink("layout", put.path().join("image")).unwrap();

    let repo = unique_repo("confined-inside");
    let params = json!({ "image": "image", "version": "1.0.0", "additional_tags": "tags" });
    let out =
        resource("out", Some(put.path()), &json!({ "source": { "repository": reg.repo(&repo) }, "params": params }));
    let digest = out.success().json()["version"]["digest"].as_str().unwrap().to_string();
    assert_eq!(digest, skopeo_digest(env, reg, "library/busybox", "amd64"));
    assert_eq!(skopeo_digest(env, reg, &repo, "inside"), digest);
}

#[test]
fn a_layout_blob_that_is_not_its_digest_is_cancelled_and_never_tagged() {
    let env = dev_env_or_skip!();
    let put = tempfile::tempdir().unwrap();
    let layout = put.path().join("layout");
    export(env, "amd64", "oci", &layout);
    let hex = first_layer(&layout);
    let blob = layout.join("blobs/sha256").join(&hex);
    let mut bytes = std::fs::read(&blob).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&blob, &bytes).unwrap();

    let proxy = FaultProxy::start(&env.registries.plain.addr, vec![]);
    let repo = unique_repo("confined-damaged");
    let out = put_through(&proxy, &repo, put.path(), json!({ "image": "layout", "version": "1.0.0" }));
    out.failure();
    assert!(out.stderr.contains(&format!("sha256:{hex}")) && out.stderr.contains("damaged"), "{}", out.stderr);
    let requests = proxy.requests();
    // kiln does not hash it again: its commit under the digest is the check, which the
    // registry refuses; the upload is cancelled, the blob never stored, and nothing tagged.
    assert!(requests.iter().any(|r| r.starts_with("PUT ") && r.contains(&hex)), "{requests:#?}");
    assert_eq!(plain_blob_status(env, &repo, &format!("sha256:{hex}")), 404, "the damaged blob was stored");
    assert!(requests.iter().any(|r| r.starts_with("DELETE ") && r.contains("/blobs/uploads/")), "{requests:#?}");
    assert!(!requests.iter().any(|r| r.starts_with("PUT ") && r.contains("/manifests/")), "{requests:#?}");
    assert_eq!(plain_manifest_status(env, &repo, "1.0.0"), 404);
    assert_eq!(plain_manifest_status(env, &repo, &format!("sha256:{hex}")), 404);
}

#[test]
fn in_never_writes_through_links_its_folder_holds() {
    let env = dev_env_or_skip!();
    let reg = &env.registries.plain;
    let repo = unique_repo("confined-in");
    let digest = push_busybox(env, "amd64", reg, &repo, "v1");
    let victim = victim();
    let dest = tempfile::tempdir().unwrap();
    for name in ["tag", "digest", "labels.json"] {
        symlink(victim.path().join("precious"), dest.path().join(name)).unwrap();
    }
    // Dangling: following it would create a file in the victim folder.
    symlink(victim.path().join("planted"), dest.path().join("repository")).unwrap();
    symlink(victim.path().join("planted.tar"), dest.path().join("image.tar")).unwrap();

    let request = json!({
        "source": { "repository": reg.repo(&repo) },
        "version": { "tag": "v1", "digest": digest },
        "params": { "format": "oci" },
    });
    let mut child = command("in")
        .arg(dest.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The work folder's name was `.kiln-in-<pid>`: planted before `in` reads its request.
    let planted = format!(".kiln-in-{}", child.id());
    symlink(victim.path(), dest.path().join(&planted)).unwrap();
    child.stdin.take().unwrap().write_all(request.to_string().as_bytes()).unwrap();
    let done = child.wait_with_output().unwrap();
    let out = Outcome {
        code: done.status.code(),
        stdout: String::from_utf8_lossy(&done.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&done.stderr).into_owned(),
    };
    out.success();
    assert_untouched(victim.path(), &out);
    for (name, value) in [("tag", "v1"), ("digest", digest.as_str()), ("repository", &reg.repo(&repo))] {
        let path = dest.path().join(name);
        assert!(is_regular(&path), "{name} is not a file of its own");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), value);
    }
    assert!(is_regular(&dest.path().join("image.tar")) && is_regular(&dest.path().join("labels.json")));
    let leftovers: Vec<String> = std::fs::read_dir(dest.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".kiln") && *n != planted)
        .collect();
    assert!(leftovers.is_empty(), "work folders left behind: {leftovers:?}");
}

/// A context whose Dockerfile builds on busybox; unique, so BuildKit's cache exports it.
fn context(env: &DevEnv, work: &Path) {
    let marker = unique_repo("confined-build").replace('/', "-");
    let dockerfile =
        format!("FROM {}/library/busybox:latest\nRUN echo {marker} > /marker\n", env.registries.plain.addr);
    kiln_tests::harness::write_files(work, &[("ctx/Dockerfile", &dockerfile)]);
}

#[test]
fn the_build_task_never_writes_through_links_in_cache_or_image() {
    let env = dev_env_or_skip!();
    let victim = victim();
    let work = tempfile::tempdir().unwrap();
    context(env, work.path());
    let (cache, image) = (work.path().join("cache"), work.path().join("image"));
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::create_dir_all(&image).unwrap();
    // What an earlier build (or another task sharing the cache) could have left.
    symlink(victim.path(), cache.join(".kiln-ingest")).unwrap();
    symlink(victim.path().join("planted"), cache.join("oci-layout")).unwrap();
    symlink(victim.path().join("planted.json"), cache.join(".index.json.partial")).unwrap();
    symlink(victim.path().join("precious"), image.join("digest")).unwrap();
    symlink(victim.path().join("planted.tar"), image.join(".image.tar.partial")).unwrap();

    let out = build_task(env, work.path(), &[], &[("CONTEXT", "ctx")]);
    out.success();
    assert_untouched(victim.path(), &out);
    assert!(is_regular(&image.join("digest")), "image/digest is not a file of its own");
    assert!(std::fs::read_to_string(image.join("digest")).unwrap().starts_with("sha256:"));
    assert!(is_regular(&image.join("image.tar")));
    assert!(is_regular(&cache.join("oci-layout")) && is_regular(&cache.join("index.json")));
    assert!(files_under(&cache.join("blobs/sha256")).len() >= 3, "the cache was not exported");
    let leftovers: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".kiln") && n != ".kiln-ingest")
        .collect();
    assert!(leftovers.is_empty(), "work folders left in cache/: {leftovers:?}");

    // The next build imports what this one exported.
    let again = build_task(env, work.path(), &[], &[("CONTEXT", "ctx")]);
    again.success();
    assert!(!again.stderr.contains("nothing to import"), "{}", again.stderr);
    assert_untouched(victim.path(), &again);
}

#[test]
fn a_cache_folder_linking_outside_is_refused() {
    let env = dev_env_or_skip!();
    for (name, target) in [("blobs", ""), ("index.json", "precious")] {
        let victim = victim();
        let work = tempfile::tempdir().unwrap();
        context(env, work.path());
        let cache = work.path().join("cache");
        std::fs::create_dir_all(&cache).unwrap();
        symlink(victim.path().join(target), cache.join(name)).unwrap();
        let out = build_task(env, work.path(), &[], &[("CONTEXT", "ctx")]);
        out.failure();
        assert!(
            out.stderr.contains(&format!("cache/{name}")) && out.stderr.contains("points outside"),
            "{}",
            out.stderr
        );
        assert_untouched(victim.path(), &out);
    }
}

#[test]
fn build_inputs_linking_outside_are_refused() {
    let env = dev_env_or_skip!();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("pairs"), "A=1\n").unwrap();
    std::fs::write(outside.path().join("target"), "stage\n").unwrap();
    std::fs::write(outside.path().join("image.tar"), "not read\n").unwrap();
    let work = tempfile::tempdir().unwrap();
    kiln_tests::harness::write_files(work.path(), &[("Dockerfile", "FROM scratch\n"), ("inside/pairs", "A=1\n")]);
    for name in ["pairs", "target", "image.tar"] {
        symlink(outside.path().join(name), work.path().join(name)).unwrap();
    }
    kiln_tests::harness::write_files(outside.path(), &[("ctx/Dockerfile", "FROM scratch\n")]);
    symlink(outside.path().join("ctx"), work.path().join("ctx")).unwrap();
    symlink(outside.path().join("ctx/Dockerfile"), work.path().join("Dockerfile.out")).unwrap();
    symlink("inside/pairs", work.path().join("pairs-inside")).unwrap();
    // Nothing listens there: every case must fail on its input, before BuildKit is asked.
    let nowhere = format!("unix://{}/nothing.sock", outside.path().display());
    for (param, value) in [
        ("BUILD_ARGS_FILE", "pairs"),
        ("LABELS_FILE", "pairs"),
        ("TARGET_FILE", "target"),
        ("IMAGE_ARG_BASE", "image.tar"),
        ("BUILDKIT_SECRET_token", "pairs"),
        ("CONTEXT", "ctx"),
        ("DOCKERFILE", "Dockerfile.out"),
    ] {
        let out = build_task(env, work.path(), &[], &[(param, value), ("BUILDKIT_HOST", &nowhere)]);
        out.failure();
        assert!(out.stderr.contains(param) && out.stderr.contains("points outside"), "{param}: {}", out.stderr);
    }
    // A link that stays inside is read: the build gets as far as BuildKit.
    let out = build_task(env, work.path(), &[], &[("BUILD_ARGS_FILE", "pairs-inside"), ("BUILDKIT_HOST", &nowhere)]);
    out.failure();
    assert!(!out.stderr.contains("points outside") && out.stderr.contains("nothing.sock"), "{}", out.stderr);
}
