//! The benchmark harness on tiny inputs (4 MiB image, 200-file context, one pair, the debug
//! binaries), so it cannot rot between real runs. Speed is not judged here: only that every
//! case runs against its peer and reports a ratio. It prunes the engine's build cache, so it
//! sits alone in its own test binary.

use kiln_tests::dev_env_or_skip;

#[test]
fn every_benchmark_case_runs() {
    let _env = dev_env_or_skip!();
    let out = tempfile::tempdir().unwrap();
    let root = kiln_tests::harness::workspace();
    let run = std::process::Command::new("python3")
        .arg(root.join("bench/run.py"))
        .args(["--smoke", "--out"])
        .arg(out.path())
        .current_dir(&root)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("latest.json")).unwrap()).unwrap();
    let peers = [
        ("in-rootfs", &["crane", "skopeo+umoci"][..]),
        ("in-oci", &["crane", "skopeo"]),
        ("out-push", &["crane", "limit", "skopeo"]),
        ("out-repush", &["crane", "skopeo"]),
        ("in-throughput", &["gzip+sha256sum"]),
        ("build-cold", &["buildx"]),
        ("build-one-change", &["buildx"]),
        ("kept-rebuild", &["cold"]),
        ("kept-cache-mount", &["cold"]),
    ];
    for (case, names) in peers {
        for name in names {
            let ratio = results["cases"][case]["peers"][name]["ratio_median"].as_f64();
            assert!(ratio.is_some_and(|r| r > 0.0), "{case} beside {name}: {}", results["cases"][case]);
        }
    }
    assert!(results["cases"]["rss-1g"]["out"]["rss_mib"].as_f64().is_some_and(|m| m > 0.0), "{results}");
    assert!(results["cases"]["check-requests"]["requests"].as_u64().is_some_and(|n| n > 0), "{results}");
    assert!(std::fs::read_to_string(out.path().join("latest.md")).unwrap().contains("| out-push | crane |"));
}
