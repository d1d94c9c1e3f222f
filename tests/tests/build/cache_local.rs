//! The task's `cache` folder, as oci-build-task keeps it: BuildKit's cache exported to it
//! (an OCI layout written through the session's content store) and imported from it on the
//! next build, against the dev engine's BuildKit.
//!
//! This test prunes the engine's whole build cache, which would pull files from under any
//! build running at the same moment; it is alone in its own test binary because cargo runs
//! test binaries one after another.

use std::path::Path;

use kiln_tests::dev_env_or_skip;
use kiln_tests::harness::{DevEnv, Outcome, build_task, progress_step, prune_build_cache, unique_repo};
use sha2::{Digest as _, Sha256};

fn build(env: &DevEnv, workdir: &Path, output: &str) -> Outcome {
    build_task(env, workdir, &["--output", output, "--unpack-rootfs"], &[("CONTEXT", "ctx")])
}

/// Every blob in the layout at `dir` is named by its SHA-256, and the index tags `latest`.
fn assert_valid_layout(dir: &Path) {
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let latest: Vec<&serde_json::Value> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "latest")
        .collect();
    assert_eq!(latest.len(), 1, "{index}");
    let mut blobs = 0;
    for entry in std::fs::read_dir(dir.join("blobs/sha256")).unwrap() {
        let entry = entry.unwrap();
        let bytes = std::fs::read(entry.path()).unwrap();
        assert_eq!(
            hex::encode(Sha256::digest(&bytes)),
            entry.file_name().to_string_lossy(),
            "a blob does not match its name"
        );
        blobs += 1;
    }
    let top = latest[0]["digest"].as_str().unwrap().trim_start_matches("sha256:");
    assert!(dir.join("blobs/sha256").join(top).is_file(), "the tagged manifest is missing");
    assert!(blobs >= 3, "only {blobs} blobs");
    let work: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".kiln"))
        .collect();
    assert!(work.is_empty(), "unfinished writes left behind: {work:?}");
}

#[test]
fn the_cache_folder_survives_a_pruned_engine() {
    let env = dev_env_or_skip!();
    let work = tempfile::tempdir().unwrap();
    let marker = unique_repo("localcache").replace('/', "-");
    let ctx = work.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::create_dir_all(work.path().join("cache")).unwrap();
    let dockerfile = format!(
        "FROM {}/library/busybox:latest\nRUN echo {marker} && head -c 16 /dev/urandom | od -x > /stamp\n",
        env.registries.plain.addr
    );
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    let stamp = |dir: &str| std::fs::read_to_string(work.path().join(dir).join("rootfs/stamp")).unwrap();

    let first = build(env, work.path(), "first");
    first.success();
    assert!(first.stderr.contains("nothing to import"), "{}", first.stderr);
    assert!(first.stderr.contains("cache exported to"), "{}", first.stderr);
    assert_valid_layout(&work.path().join("cache"));

    prune_build_cache(env);

    let second = build(env, work.path(), "second");
    second.success();
    let step = progress_step(&second.stderr, &format!("echo {marker}"));
    assert!(step.contains("CACHED"), "{}", second.stderr);
    assert_eq!(stamp("first"), stamp("second"));
    assert_valid_layout(&work.path().join("cache"));
}
