//! `IMAGE_ARG_*` against the dev engine's BuildKit: images on disk become the base of
//! `FROM ${ARG}`, served from the session's content store. The images used were never pushed
//! anywhere (or are fetched under a name no registry has), so a build that asked a registry
//! for them would fail.

use std::path::Path;

use kiln_tests::dev_env_or_skip;
use kiln_tests::harness::{DevEnv, Outcome, build_task, push_busybox, resource, source, unique_repo};
use serde_json::json;

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Builds an image holding `/marker` into `dir/image`, as a tarball or (`oci`) a layout.
fn base_image(env: &DevEnv, dir: &Path, marker: &str, oci: bool) {
    write(
        &dir.join("ctx/Dockerfile"),
        &format!("FROM {}/library/busybox:latest\nRUN echo {marker} > /marker\n", env.registries.plain.addr),
    );
    let mut vars = vec![("CONTEXT", "ctx")];
    if oci {
        vars.push(("OUTPUT_OCI", "true"));
    }
    build_task(env, dir, &[], &vars).success();
}

/// Builds FROM the image at `image` (given as IMAGE_ARG_BASE) and returns the rootfs' /copied.
fn build_on(env: &DevEnv, image: &Path) -> (Outcome, String) {
    let work = tempfile::tempdir().unwrap();
    write(
        &work.path().join("Dockerfile"),
        "ARG BASE\nFROM ${BASE}\nRUN cat /marker > /copied; ls /bin/busybox >> /copied\n",
    );
    let out =
        build_task(env, work.path(), &[], &[("IMAGE_ARG_BASE", image.to_str().unwrap()), ("UNPACK_ROOTFS", "true")]);
    let copied = std::fs::read_to_string(work.path().join("image/rootfs/copied")).unwrap_or_default();
    (out, copied)
}

#[test]
fn a_built_tarball_and_a_layout_are_bases_without_a_registry() {
    let env = dev_env_or_skip!();
    let first = tempfile::tempdir().unwrap();
    let marker = unique_repo("image-arg").replace('/', "-");
    base_image(env, first.path(), &marker, false);
    let (out, copied) = build_on(env, &first.path().join("image/image.tar"));
    out.success();
    assert_eq!(copied, format!("{marker}\n/bin/busybox\n"));
    assert!(out.stderr.contains("[context image-arg/base] OCI load from client"), "{}", out.stderr);

    let layout = tempfile::tempdir().unwrap();
    base_image(env, layout.path(), &format!("{marker}-oci"), true);
    let (out, copied) = build_on(env, &layout.path().join("image/image"));
    out.success();
    assert_eq!(copied, format!("{marker}-oci\n/bin/busybox\n"));
}

#[test]
fn an_image_fetched_by_in_is_a_base() {
    let env = dev_env_or_skip!();
    let reg = &env.registries.basic;
    let repo = unique_repo("image-arg-in");
    let digest = push_busybox(env, "latest", reg, &repo, "v1");
    let fetched = tempfile::tempdir().unwrap();
    let request = json!({
        "source": source(env, reg, &repo),
        "version": { "tag": "v1", "digest": digest },
        "params": { "format": "oci" },
    });
    resource("in", Some(fetched.path()), &request).success();
    // The build has no credentials for the basic-auth registry the image came from: it can
    // only have used the tarball.
    let work = tempfile::tempdir().unwrap();
    write(&work.path().join("Dockerfile"), "ARG BASE\nFROM ${BASE}\nRUN busybox --help > /help\n");
    let image = fetched.path().join("image.tar");
    let out =
        build_task(env, work.path(), &[], &[("IMAGE_ARG_BASE", image.to_str().unwrap()), ("UNPACK_ROOTFS", "true")]);
    out.success();
    assert!(std::fs::read_to_string(work.path().join("image/rootfs/help")).unwrap().contains("BusyBox"));
}

#[test]
fn a_missing_or_broken_image_arg_is_named() {
    let env = dev_env_or_skip!();
    let work = tempfile::tempdir().unwrap();
    write(&work.path().join("Dockerfile"), "ARG BASE\nFROM ${BASE}\n");
    let out = build_task(env, work.path(), &[], &[("IMAGE_ARG_BASE", "nowhere/image.tar")]);
    out.failure();
    assert!(out.stderr.contains("IMAGE_ARG_BASE: nowhere/image.tar does not exist"), "{}", out.stderr);
    write(&work.path().join("broken.tar"), "not a tarball at all");
    let out = build_task(env, work.path(), &[], &[("IMAGE_ARG_BASE", "broken.tar")]);
    out.failure();
    assert!(out.stderr.contains("IMAGE_ARG_BASE: broken.tar"), "{}", out.stderr);
    assert!(!work.path().join("image").exists());
}
