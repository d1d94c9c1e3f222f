//! The build task's newer params against the dev engine's real BuildKit: YAML build args,
//! extra hosts, typo warnings, provenance, params kiln refuses,
//! and the command-line flags that set the same params.

use std::process::Command;

use kiln_tests::dev_env_or_skip;
use kiln_tests::harness::{build_task, from_busybox, run, write_files};

#[test]
fn yaml_args_extra_hosts_and_typo_warnings() {
    let env = dev_env_or_skip!();
    let work = tempfile::tempdir().unwrap();
    write_files(
        work.path(),
        &[
            (
                "ctx/Dockerfile",
                &format!("{}ARG A\nARG B\nRUN echo \"$A $B\" > /args && cat /etc/hosts > /hosts\n", from_busybox(env)),
            ),
            ("args.yaml", "A: one\nB: 2\n"),
        ],
    );
    let out = build_task(
        env,
        work.path(),
        &[],
        &[
            ("CONTEXT", "ctx"),
            ("BUILD_ARGS_FILE", "args.yaml"),
            ("BUILDKIT_ADD_HOSTS", "kiln.test=10.1.2.3"),
            ("BUILD_ARGS_C", "typo"),
            ("UNPACK_ROOTFS", "true"),
        ],
    );
    out.success();
    assert!(
        out.stderr.contains("warning: BUILD_ARGS_C is not a param build reads; did you mean BUILD_ARG_…?"),
        "{}",
        out.stderr
    );
    let rootfs = work.path().join("image/rootfs");
    assert_eq!(std::fs::read_to_string(rootfs.join("args")).unwrap(), "one 2\n");
    let hosts = std::fs::read_to_string(rootfs.join("hosts")).unwrap();
    assert!(hosts.lines().any(|l| l.split_whitespace().eq(["10.1.2.3", "kiln.test"])), "{hosts}");
}

#[test]
fn provenance_is_attached_to_an_oci_index() {
    let env = dev_env_or_skip!();
    let work = tempfile::tempdir().unwrap();
    write_files(work.path(), &[("ctx/Dockerfile", &format!("{}COPY . /src\n", from_busybox(env)))]);
    let out = build_task(env, work.path(), &["--oci"], &[("CONTEXT", "ctx"), ("ATTEST_PROVENANCE", "mode=max")]);
    out.success();
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(work.path().join("image/image/index.json")).unwrap()).unwrap();
    // The layout's index points at the image index, whose manifests include the attestation.
    let top = index["manifests"][0]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string();
    let inner: serde_json::Value =
        serde_json::from_slice(&std::fs::read(work.path().join("image/image/blobs/sha256").join(top)).unwrap())
            .unwrap();
    let kinds: Vec<&str> = inner["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["annotations"]["vnd.docker.reference.type"].as_str())
        .collect();
    assert_eq!(kinds, ["attestation-manifest"], "{inner}");
}

#[test]
fn params_kiln_cannot_honour_are_refused_by_name() {
    let env = dev_env_or_skip!();
    let work = tempfile::tempdir().unwrap();
    write_files(work.path(), &[("Dockerfile", &from_busybox(env))]);
    for (name, value, says) in [
        ("CACHE_TO", "type=local,src=cache", "CACHE_TO: \"type=local,src=cache\": a local cache needs dest=<folder>"),
        ("BUILD_ARGS_FILE", "missing.yml", "BUILD_ARGS_FILE: reading missing.yml"),
        ("BUILDKIT_ADD_HOSTS", "nohost", "BUILDKIT_ADD_HOSTS: \"nohost\" is not host=ip"),
    ] {
        let out = build_task(env, work.path(), &[], &[(name, value)]);
        out.failure();
        assert!(out.stderr.contains(says), "{name}: {}", out.stderr);
        assert!(!work.path().join("image").exists(), "{name} left image/ behind");
    }
}

#[test]
fn flags_set_context_file_args_and_output() {
    let env = dev_env_or_skip!();
    let work = tempfile::tempdir().unwrap();
    write_files(
        work.path(),
        &[
            ("app/greeting.txt", "hello\n"),
            (
                "docker/Dockerfile.prod",
                &format!("{}ARG WHO\nCOPY greeting.txt /g\nRUN echo $WHO >> /g\n", from_busybox(env)),
            ),
        ],
    );
    // The environment says one thing, the flags another: flags win.
    let out = build_task(
        env,
        work.path(),
        &[
            "--context",
            "app",
            "--file=docker/Dockerfile.prod",
            "--build-arg",
            "WHO=flags",
            "--output",
            "out/img",
            "--unpack-rootfs",
        ],
        &[("BUILD_ARG_WHO", "environment"), ("CONTEXT", "elsewhere")],
    );
    out.success();
    assert_eq!(std::fs::read_to_string(work.path().join("out/img/rootfs/g")).unwrap(), "hello\nflags\n");
    assert!(work.path().join("out/img/image.tar").is_file() && work.path().join("out/img/digest").is_file());
    assert!(!work.path().join("image").exists());

    let bad = build_task(env, work.path(), &["--build-arg", "WHO"], &[]);
    bad.failure();
    assert!(bad.stderr.contains("--build-arg: \"WHO\" is not NAME=value"), "{}", bad.stderr);
}

#[test]
fn only_what_buildkit_asks_for_crosses_the_wire() {
    let env = dev_env_or_skip!();
    let work = tempfile::tempdir().unwrap();
    let mut files: Vec<(String, String)> =
        (0..50).map(|i| (format!("ctx/src/f{i:02}"), format!("file {i}\n"))).collect();
    files.push(("ctx/Dockerfile".into(), format!("{}COPY . /src\n", from_busybox(env))));
    files.push(("ctx/.dockerignore".into(), "src/f49\n".into()));
    let files: Vec<(&str, &str)> = files.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    write_files(work.path(), &files);
    let first = build_task(env, work.path(), &[], &[("CONTEXT", "ctx")]);
    first.success();
    // The Dockerfile and .dockerignore loads follow one path each, not the whole folder.
    assert!(first.stderr.contains("build: dockerfile: sent 1 of 1 entries"), "{}", first.stderr);
    assert!(first.stderr.contains("build: context: sent 1 of 1 entries, 8 bytes"), "{}", first.stderr);

    std::fs::write(work.path().join("ctx/src/f07"), "changed!\n").unwrap();
    let second = build_task(env, work.path(), &[], &[("CONTEXT", "ctx")]);
    second.success();
    let sent: Vec<&str> = second.stderr.lines().filter(|l| l.starts_with("build: context: sent")).collect();
    // .dockerignore, then the context: 49 files, the Dockerfile, .dockerignore and src/.
    assert_eq!(sent.last(), Some(&"build: context: sent 1 of 52 entries, 9 bytes"), "{}", second.stderr);
}

#[test]
fn a_context_of_thousands_of_files_arrives_whole() {
    // Thousands of tiny file requests once overran HTTP/2's small-frame budget on the session
    // and the build hung; `timeout` turns a hang into a failure.
    let env = dev_env_or_skip!();
    let work = tempfile::tempdir().unwrap();
    for i in 0..6000 {
        let dir = work.path().join(format!("ctx/d{:02}", i / 100));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("f{i:04}")), format!("{i}\n")).unwrap();
    }
    let dockerfile =
        format!("{}RUN --mount=type=bind,target=/ctx find /ctx -type f | wc -l > /count\n", from_busybox(env));
    write_files(work.path(), &[("ctx/Dockerfile", &dockerfile)]);
    let mut cmd = Command::new("timeout");
    cmd.arg("120")
        .arg(kiln_tests::harness::bin("kiln-build"))
        .current_dir(work.path())
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("BUILDKIT_HOST", format!("docker+unix://{}", env.docker.socket.display()))
        .env("CONTEXT", "ctx")
        .env("UNPACK_ROOTFS", "true");
    let out = run(cmd, b"");
    out.success();
    assert!(out.stderr.contains("build: context: sent 6001 of 6061 entries"), "{}", out.stderr);
    assert_eq!(std::fs::read_to_string(work.path().join("image/rootfs/count")).unwrap().trim(), "6001");
}
