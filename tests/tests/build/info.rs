//! `build --buildkit-info` against real BuildKits over each transport: the dev engine's
//! (docker+unix, docker://, and unix through the relay) and the real buildkitd's (unix, and
//! tcp with mutual TLS), and its errors for endpoints that are missing or wrong.

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

/// The standalone buildkitd answers, not the engine: its version is the one Debian's source builds.
fn assert_reports_buildkitd(out: &Outcome) {
    assert_reports_the_engine(out);
    let first = out.stdout.lines().next().unwrap_or_default();
    assert!(first.contains("-debian"), "not the buildkitd built from Debian's source: {}", out.stdout);
}

#[test]
fn unix_socket_to_the_real_buildkitd() {
    let env = dev_env_or_skip!();
    let host = format!("unix://{}", env.buildkitd.socket.display());
    assert_reports_buildkitd(&build_info(&[("BUILDKIT_HOST", &host)]));
}

/// Environment variables a case sets (an empty value unsets it).
type Vars = Vec<(&'static str, String)>;

#[test]
fn tcp_with_mutual_tls_to_the_real_buildkitd() {
    let env = dev_env_or_skip!();
    let d = &env.buildkitd;
    let ca = env.ca_cert.display().to_string();
    let cert = d.client_cert.display().to_string();
    let key = d.client_key.display().to_string();
    let tls = |extra: &Vars| {
        let mut vars = vec![
            ("BUILDKIT_HOST", d.tcp.clone()),
            ("BUILDKIT_TLS_CA", ca.clone()),
            ("BUILDKIT_TLS_CERT", cert.clone()),
            ("BUILDKIT_TLS_KEY", key.clone()),
        ];
        for (k, v) in extra {
            vars.retain(|(name, _)| name != k);
            if !v.is_empty() {
                vars.push((k, v.clone()));
            }
        }
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        build_info(&vars)
    };
    assert_reports_buildkitd(&tls(&Vec::new()));
    // BUILDKIT_TLS_DIR with ca.pem, cert.pem and key.pem says the same.
    let dir = tempfile::tempdir().unwrap();
    for (from, to) in [(&ca, "ca.pem"), (&cert, "cert.pem"), (&key, "key.pem")] {
        std::fs::copy(from, dir.path().join(to)).unwrap();
    }
    let tls_dir = dir.path().display().to_string();
    assert_reports_buildkitd(&build_info(&[("BUILDKIT_HOST", &d.tcp), ("BUILDKIT_TLS_DIR", &tls_dir)]));

    // A CA that did not sign the daemon's certificate.
    let other_ca = dir.path().join("other-ca.pem");
    let key_pair = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    std::fs::write(&other_ca, params.self_signed(&key_pair).unwrap().pem()).unwrap();
    let cases: [(&str, Vars, &str); 3] = [
        ("a wrong CA", vec![("BUILDKIT_TLS_CA", other_ca.display().to_string())], "UnknownIssuer"),
        (
            "no client certificate",
            vec![("BUILDKIT_TLS_CERT", String::new()), ("BUILDKIT_TLS_KEY", String::new())],
            "BUILDKIT_TLS_CERT and _KEY must be a certificate",
        ),
        (
            "a wrong server name",
            vec![("BUILDKIT_TLS_SERVERNAME", "buildkit.example.com".into())],
            "not valid for name \"buildkit.example.com\"",
        ),
    ];
    for (what, extra, detail) in cases {
        let out = tls(&extra);
        out.failure();
        let stderr = out.stderr.trim();
        assert_eq!(stderr.lines().count(), 1, "{what}: {stderr}");
        assert!(stderr.starts_with("build: ") && stderr.contains("BUILDKIT_HOST"), "{what}: {stderr}");
        assert!(stderr.contains(detail), "{what}: {stderr}");
        assert!(out.stdout.is_empty(), "{what}: {}", out.stdout);
    }
}

#[test]
fn unix_socket_to_the_engine_through_the_relay() {
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
        // The connection itself refused (ECONNREFUSED), not a refused certificate or login.
        ("tcp://127.0.0.1:1".to_string(), "tcp connect error: Connection refused"),
        (format!("tcp://127.0.0.1:{closed_port}"), "tcp connect error: Connection refused"),
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
