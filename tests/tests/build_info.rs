//! `build --buildkit-info` against the dev engine's real BuildKit, over each transport
//! that can run here, and its errors for endpoints that are missing or wrong.

use kiln_tests::dev_env_or_skip;
use kiln_tests::harness::{Outcome, command, run};

fn build_info(env: &[(&str, &str)]) -> Outcome {
    let mut cmd = command("kiln-build");
    cmd.arg("--buildkit-info");
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(cmd, b"")
}

fn assert_reports_the_engine(out: &Outcome) {
    out.success();
    let first = out.stdout.lines().next().unwrap_or_default();
    assert!(first.starts_with("buildkit: github.com/moby/buildkit "), "{}", out.stdout);
    assert!(out.stdout.lines().any(|l| l.starts_with("worker ") && l.contains("linux/amd64")), "{}", out.stdout);
    assert!(out.stdout.contains("org.mobyproject.buildkit.worker.executor="), "{}", out.stdout);
}

#[test]
fn docker_engine_buildkit_over_the_grpc_upgrade() {
    let env = dev_env_or_skip!();
    let host = format!("docker+unix://{}", env.docker.socket.display());
    assert_reports_the_engine(&build_info(&[("BUILDKIT_HOST", &host)]));
    // docker:// takes the engine from DOCKER_HOST.
    let docker_host = format!("unix://{}", env.docker.socket.display());
    assert_reports_the_engine(&build_info(&[("BUILDKIT_HOST", "docker://"), ("DOCKER_HOST", &docker_host)]));
}

#[test]
fn unix_socket_buildkit() {
    let env = dev_env_or_skip!();
    let host = format!("unix://{}", env.docker.buildkit_relay_socket.display());
    assert_reports_the_engine(&build_info(&[("BUILDKIT_HOST", &host)]));
    // BUILDKIT_INFO=true asks the same without the flag.
    let mut cmd = command("kiln-build");
    cmd.env("BUILDKIT_HOST", &host).env("BUILDKIT_INFO", "true");
    assert_reports_the_engine(&run(cmd, b""));
}

#[test]
fn missing_or_wrong_endpoints_fail_in_one_line_naming_buildkit_host() {
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("unix://{}/buildkitd.sock", dir.path().display());
    let closed_port = kiln_tests::harness::free_port();
    let cases = [
        (missing.clone(), "No such file or directory"),
        ("tcp://127.0.0.1:1".to_string(), "refused"),
        (format!("tcp://127.0.0.1:{closed_port}"), "refused"),
        ("ftp://example".to_string(), "not an address kiln understands"),
    ];
    for (host, detail) in cases {
        let out = build_info(&[("BUILDKIT_HOST", &host)]);
        out.failure();
        let stderr = out.stderr.trim();
        assert_eq!(stderr.lines().count(), 1, "{host}: {stderr}");
        assert!(stderr.starts_with("build: ") && stderr.contains("BUILDKIT_HOST"), "{host}: {stderr}");
        assert!(stderr.contains(detail), "{host}: {stderr}");
        assert!(out.stdout.is_empty());
    }
    // Nothing set, no buildkitd to start and nothing on the default socket: say what to do.
    let out = build_info(&[]);
    out.failure();
    assert!(out.stderr.contains("BUILDKIT_HOST is not set and buildkitd is not on PATH"), "{}", out.stderr);
}

#[test]
fn without_a_dockerfile_the_error_names_the_param() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command("kiln-build");
    cmd.current_dir(dir.path());
    let out = run(cmd, b"");
    out.failure();
    assert!(out.stderr.starts_with("build: DOCKERFILE: ") && out.stderr.contains("does not exist"), "{}", out.stderr);
    assert!(out.stdout.is_empty());
}
