//! `CACHE_TO`/`CACHE_FROM` with a registry, and `NO_CACHE`, against the dev engine's BuildKit.
//!
//! This test prunes the engine's whole build cache, which would pull files from under any
//! build running at the same moment; it is alone in its own test binary because cargo runs
//! test binaries one after another.

use std::process::Command;

use kiln_tests::dev_env_or_skip;
use kiln_tests::harness::{build_task, progress_step, prune_build_cache, unique_repo};

#[test]
fn a_registry_cache_survives_a_pruned_engine_and_no_cache_ignores_it() {
    let env = dev_env_or_skip!();
    let work = tempfile::tempdir().unwrap();
    let marker = unique_repo("regcache").replace('/', "-");
    let run_line = format!("RUN echo {marker} && head -c 16 /dev/urandom | od -x > /stamp");
    let ctx = work.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    let from = format!("FROM {}/library/busybox:latest", env.registries.plain.addr);
    std::fs::write(ctx.join("Dockerfile"), format!("{from}\n{run_line}\n")).unwrap();
    let cache_ref = format!("{}/{}:buildcache", env.registries.plain.addr, unique_repo("cache"));
    let stamp = |dir: &str| std::fs::read_to_string(work.path().join(dir).join("rootfs/stamp")).unwrap();

    let first = build_task(
        env,
        work.path(),
        &["--output", "first", "--unpack-rootfs"],
        &[("CONTEXT", "ctx"), ("CACHE_TO", &format!("type=registry,ref={cache_ref},mode=max"))],
    );
    first.success();
    // The cache is a real manifest in the registry, not something only this engine holds.
    let inspect = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", &format!("docker://{cache_ref}")])
        .output()
        .unwrap();
    assert!(inspect.status.success(), "{}", String::from_utf8_lossy(&inspect.stderr));

    // Forget everything the engine built, so only the registry can supply the step.
    prune_build_cache(env);

    let second = build_task(
        env,
        work.path(),
        &["--output", "second", "--unpack-rootfs", "--cache-from", &cache_ref],
        &[("CONTEXT", "ctx")],
    );
    second.success();
    assert!(progress_step(&second.stderr, &format!("echo {marker}")).contains("CACHED"), "{}", second.stderr);
    assert_eq!(stamp("first"), stamp("second"));

    let third = build_task(
        env,
        work.path(),
        &["--output", "third", "--unpack-rootfs"],
        &[("CONTEXT", "ctx"), ("CACHE_FROM", &cache_ref), ("NO_CACHE", "true")],
    );
    third.success();
    assert!(!progress_step(&third.stderr, &format!("echo {marker}")).contains("CACHED"), "{}", third.stderr);
    assert_ne!(stamp("first"), stamp("third"));
}
