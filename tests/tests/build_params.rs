//! The build task's newer params against the dev engine's real BuildKit: YAML build args,
//! extra hosts, typo warnings, registry caches and NO_CACHE, provenance, params kiln refuses,
//! and the command-line flags that set the same params.

use std::path::Path;
use std::process::Command;

use kiln_tests::dev_env_or_skip;
use kiln_tests::harness::{DevEnv, Outcome, command, run, unique_repo};

fn build(env: &DevEnv, workdir: &Path, args: &[&str], vars: &[(&str, &str)]) -> Outcome {
    let mut cmd = command("kiln-build");
    cmd.current_dir(workdir).args(args).env("BUILDKIT_HOST", format!("docker+unix://{}", env.docker.socket.display()));
    for (k, v) in vars {
        cmd.env(k, v);
    }
    run(cmd, b"")
}

fn write(dir: &Path, files: &[(&str, &str)]) {
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

fn from_busybox(env: &DevEnv) -> String {
    format!("FROM {}/library/busybox:latest\n", env.registries.plain.addr)
}

/// The step of the plain progress output whose name contains `needle`.
fn step<'a>(stderr: &'a str, needle: &str) -> &'a str {
    stderr.split("\n\n").find(|s| s.contains(needle)).unwrap_or_else(|| panic!("no step {needle:?} in:\n{stderr}"))
}

#[test]
fn yaml_args_extra_hosts_and_typo_warnings() {
    let env = dev_env_or_skip!();
    let work = tempfile::tempdir().unwrap();
    write(
        work.path(),
        &[
            (
                "ctx/Dockerfile",
                &format!("{}ARG A\nARG B\nRUN echo \"$A $B\" > /args && cat /etc/hosts > /hosts\n", from_busybox(env)),
            ),
            ("args.yaml", "A: one\nB: 2\n"),
        ],
    );
    let out = build(
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
fn a_registry_cache_survives_a_pruned_engine_and_no_cache_ignores_it() {
    let env = dev_env_or_skip!();
    let work = tempfile::tempdir().unwrap();
    let marker = unique_repo("regcache").replace('/', "-");
    let run_line = format!("RUN echo {marker} && head -c 16 /dev/urandom | od -x > /stamp");
    write(work.path(), &[("ctx/Dockerfile", &format!("{}{run_line}\n", from_busybox(env)))]);
    let cache_ref = format!("{}/{}:buildcache", env.registries.plain.addr, unique_repo("cache"));
    let stamp = |dir: &str| std::fs::read_to_string(work.path().join(dir).join("rootfs/stamp")).unwrap();

    let first = build(
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
    let prune = Command::new(env.docker.bin_dir.join("docker"))
        .env("DOCKER_HOST", format!("unix://{}", env.docker.socket.display()))
        .args(["builder", "prune", "-af"])
        .output()
        .unwrap();
    assert!(prune.status.success(), "{}", String::from_utf8_lossy(&prune.stderr));

    let second = build(
        env,
        work.path(),
        &["--output", "second", "--unpack-rootfs", "--cache-from", &cache_ref],
        &[("CONTEXT", "ctx")],
    );
    second.success();
    assert!(step(&second.stderr, &format!("echo {marker}")).contains("CACHED"), "{}", second.stderr);
    assert_eq!(stamp("first"), stamp("second"));

    let third = build(
        env,
        work.path(),
        &["--output", "third", "--unpack-rootfs"],
        &[("CONTEXT", "ctx"), ("CACHE_FROM", &cache_ref), ("NO_CACHE", "true")],
    );
    third.success();
    assert!(!step(&third.stderr, &format!("echo {marker}")).contains("CACHED"), "{}", third.stderr);
    assert_ne!(stamp("first"), stamp("third"));
}

#[test]
fn provenance_is_attached_to_an_oci_index() {
    let env = dev_env_or_skip!();
    let work = tempfile::tempdir().unwrap();
    write(work.path(), &[("ctx/Dockerfile", &format!("{}COPY . /src\n", from_busybox(env)))]);
    let out = build(env, work.path(), &["--oci"], &[("CONTEXT", "ctx"), ("ATTEST_PROVENANCE", "mode=max")]);
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
    write(work.path(), &[("Dockerfile", &from_busybox(env))]);
    for (name, value, says) in [
        ("IMAGE_ARG_BASE", "base/image.tar", "IMAGE_ARG_BASE: image tarballs as build args are not supported yet"),
        ("BUILDKIT_SSH", "default", "BUILDKIT_SSH: SSH agent forwarding is not supported yet"),
        ("CACHE_TO", "type=local,dest=cache", "CACHE_TO: type=local caches need a session content store"),
        ("BUILD_ARGS_FILE", "missing.yml", "BUILD_ARGS_FILE: reading missing.yml"),
        ("BUILDKIT_ADD_HOSTS", "nohost", "BUILDKIT_ADD_HOSTS: \"nohost\" is not host=ip"),
    ] {
        let out = build(env, work.path(), &[], &[(name, value)]);
        out.failure();
        assert!(out.stderr.contains(says), "{name}: {}", out.stderr);
        assert!(!work.path().join("image").exists(), "{name} left image/ behind");
    }
}

#[test]
fn flags_set_context_file_args_and_output() {
    let env = dev_env_or_skip!();
    let work = tempfile::tempdir().unwrap();
    write(
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
    let out = build(
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

    let bad = build(env, work.path(), &["--build-arg", "WHO"], &[]);
    bad.failure();
    assert!(bad.stderr.contains("--build-arg: \"WHO\" is not NAME=value"), "{}", bad.stderr);
}
