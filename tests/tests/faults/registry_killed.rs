//! A registry that dies mid-transfer: a test's own `docker-registry` (tests/src/registry.rs)
//! behind a proxy that passes bodies through slowly, killed with SIGKILL once a few MiB have
//! gone through and started again a second later on the same port and storage. `in` picks
//! the blob up where it broke off and `out` starts the upload again; both end with the right
//! digest.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kiln_tests::dev_env_or_skip;
use kiln_tests::faultproxy::{Fault, FaultProxy, Rule};
use kiln_tests::harness::{Outcome, resource};
use kiln_tests::images::noise_image_tar;
use kiln_tests::registry::PrivateRegistry;
use serde_json::json;

const SIZE: usize = 16 << 20;

/// Runs `step` while another thread kills the registry once `after` body bytes went through
/// the proxy and starts it again a second later. Returns the step's outcome.
fn kill_midway(
    registry: &mut PrivateRegistry,
    proxy: &FaultProxy,
    after: u64,
    step: impl FnOnce() -> Outcome,
) -> Outcome {
    let (killed, finished) = (AtomicBool::new(false), AtomicBool::new(false));
    let out = std::thread::scope(|scope| {
        scope.spawn(|| {
            while proxy.throttled_bytes() < after {
                if finished.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            registry.kill();
            killed.store(true, Ordering::SeqCst);
            std::thread::sleep(Duration::from_secs(1));
            registry.restart();
        });
        let out = step();
        finished.store(true, Ordering::SeqCst);
        out
    });
    assert!(killed.load(Ordering::SeqCst), "the transfer ended before {after} bytes: {}", out.stderr);
    out
}

fn throttle(method: &'static str, path: &str, times: usize) -> Rule {
    Rule { method, path: path.to_string(), times, fault: Fault::Throttle }
}

#[test]
fn out_survives_the_registry_being_killed_mid_upload() {
    let _env = dev_env_or_skip!();
    let mut registry = PrivateRegistry::start();
    let work = tempfile::tempdir().unwrap();
    let digest = noise_image_tar(work.path(), "1.0.0", SIZE, 11);
    // The config blob and the layer.
    let proxy = FaultProxy::start(&registry.addr, vec![throttle("PATCH", "/blobs/uploads/", 2)]);
    let request = json!({
        "source": { "repository": format!("{}/killed/out", proxy.addr), "read_timeout": "5s" },
        "params": { "image": "image.tar", "version": "1.0.0" },
    });
    let out = kill_midway(&mut registry, &proxy, 4 << 20, || resource("out", Some(work.path()), &request));
    out.success();
    assert_eq!(out.json()["version"]["digest"], json!(digest), "{}", out.stderr);
    assert!(out.stderr.contains("retry"), "the upload did not notice the registry dying: {}", out.stderr);

    // What the restarted registry holds is the whole image: in fetches it, verifying every digest.
    let dest = tempfile::tempdir().unwrap();
    let request = json!({
        "source": { "repository": format!("{}/killed/out", registry.addr) },
        "version": { "tag": "1.0.0", "digest": digest },
    });
    resource("in", Some(dest.path()), &request).success();
    assert_eq!(std::fs::metadata(dest.path().join("rootfs/noise")).unwrap().len(), SIZE as u64);
}

#[test]
fn in_survives_the_registry_being_killed_mid_download() {
    let _env = dev_env_or_skip!();
    let mut registry = PrivateRegistry::start();
    let work = tempfile::tempdir().unwrap();
    let digest = noise_image_tar(work.path(), "1.0.0", SIZE, 13);
    let push = json!({
        "source": { "repository": format!("{}/killed/in", registry.addr) },
        "params": { "image": "image.tar", "version": "1.0.0" },
    });
    resource("out", Some(work.path()), &push).success();

    // The config blob and the layer.
    let proxy = FaultProxy::start(&registry.addr, vec![throttle("GET", "/blobs/sha256:", 2)]);
    let dest = tempfile::tempdir().unwrap();
    let request = json!({
        "source": { "repository": format!("{}/killed/in", proxy.addr), "read_timeout": "5s" },
        "version": { "tag": "1.0.0", "digest": digest },
    });
    let out = kill_midway(&mut registry, &proxy, 4 << 20, || resource("in", Some(dest.path()), &request));
    out.success();
    assert_eq!(out.json()["version"]["digest"], json!(digest));
    assert!(out.stderr.contains("resuming"), "the download was not resumed: {}", out.stderr);
    assert_eq!(std::fs::metadata(dest.path().join("rootfs/noise")).unwrap().len(), SIZE as u64);
}
