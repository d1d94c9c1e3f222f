//! kiln's Concourse images, built by kiln itself FROM a Debian made with debootstrap,
//! pushed with `out`, and run the way Concourse runs them.

use std::path::Path;
use std::process::Command;

use kiln_tests::dev_env_or_skip;
use kiln_tests::harness::{
    DevEnv, bin, command, from_busybox, resource, run, skopeo_digest, source, unique_repo, workspace, write_files,
};
use serde_json::json;

/// A build context: the image's Dockerfile and stripped copies of `binaries`.
fn context(dir: &Path, image: &str, binaries: &[&str]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(workspace().join("images").join(image).join("Dockerfile"), dir.join("Dockerfile")).unwrap();
    for name in binaries {
        let out = Command::new("strip").arg("-o").arg(dir.join(name)).arg(bin(name)).output().expect("running strip");
        assert!(out.status.success(), "strip {name}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// Builds `images/<name>` with kiln's build task on the Docker engine, FROM the debootstrap
/// Debian, with stripped `binaries` and the buildkitd built from Debian's packages
/// (BUILDKITD_FROM=context, the default), and pushes it with `out`: `repo@digest`.
fn build_and_push(env: &DevEnv, name: &str, binaries: &[&str]) -> String {
    let base = debian_base(env);
    let work = tempfile::tempdir().unwrap();
    let ctx = work.path().join("ctx");
    context(&ctx, name, binaries);
    std::fs::copy(env.buildkitd.bin_dir.join("buildkitd"), ctx.join("buildkitd")).unwrap();
    let mut build = command("kiln-build");
    build
        .current_dir(work.path())
        .env("BUILDKIT_HOST", format!("docker+unix://{}", env.docker.socket.display()))
        .env("CONTEXT", "ctx")
        .env("BUILD_ARG_BASE", &base);
    run(build, b"").success();
    let reg = &env.registries.plain;
    let repo = unique_repo(&format!("{name}-image"));
    let pushed = resource(
        "out",
        Some(work.path()),
        &json!({ "source": source(env, reg, &repo), "params": { "image": "image/image.tar", "version": "1.0.0" } }),
    );
    format!("{}@{}", reg.repo(&repo), pushed.success().json()["version"]["digest"].as_str().unwrap())
}

fn docker(env: &DevEnv) -> Command {
    let mut cmd = Command::new(env.docker.bin_dir.join("docker"));
    cmd.env("DOCKER_HOST", format!("unix://{}", env.docker.socket.display()));
    cmd
}

fn debian_base(env: &DevEnv) -> String {
    let base = format!("{}/library/debian:bookworm", env.registries.plain.addr);
    let found =
        Command::new("skopeo").args(["inspect", "--raw", "--tls-verify=false", &format!("docker://{base}")]).output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "{base} is missing: ./dev env up makes it with debootstrap (as root)"
    );
    base
}

#[test]
fn resource_image_runs_check_as_concourse_does() {
    let env = dev_env_or_skip!();
    let reg = &env.registries.plain;
    let image = build_and_push(env, "resource", &["check", "in", "out"]);

    // As Concourse runs a resource: the image's /opt/resource/check, the request on stdin.
    // Host networking, so that 127.0.0.1 is the host's, where the registries are.
    let busybox = skopeo_digest(env, reg, "library/busybox", "latest");
    let request = json!({ "source": { "repository": reg.repo("library/busybox"), "tag": "latest" } });
    let mut check = docker(env);
    check.args(["run", "-i", "--rm", "--network", "host", &image, "/opt/resource/check"]);
    let out = run(check, request.to_string().as_bytes());
    assert_eq!(out.code, Some(0), "docker run: {}", out.stderr);
    let versions = out.json();
    assert_eq!(versions, json!([{ "tag": "latest", "digest": busybox }]));

    // A put with params.build, as Concourse runs it for a `privileged: true` resource type:
    // out starts the image's own buildkitd (as root) and pushes what it built.
    let put_dir = tempfile::tempdir().unwrap();
    write_files(
        put_dir.path(),
        &[("app/Dockerfile", &format!("{}RUN echo built-by-the-resource > /where\n", from_busybox(env)))],
    );
    let target = unique_repo("resource-image-build");
    let request = json!({
        "source": source(env, reg, &target),
        "params": { "build": { "context": "app" }, "tag": ["v1", "latest"] },
    });
    let mut put = docker(env);
    put.args(["run", "-i", "--rm", "--privileged", "--network", "host", "-v"])
        .arg(format!("{}:/tmp/put", put_dir.path().display()))
        .args([&image, "/opt/resource/out", "/tmp/put"]);
    let out = run(put, request.to_string().as_bytes());
    let stderr = &out.stderr;
    assert_eq!(out.code, Some(0), "out with params.build in the resource image: {stderr}");
    let response = out.json();
    assert!(stderr.contains("build: started buildkitd"), "its own buildkitd: {stderr}");
    assert_eq!(response["version"]["tag"], "v1");
    assert_eq!(response["version"]["digest"].as_str().unwrap(), skopeo_digest(env, reg, &target, "latest"));
}

#[test]
fn task_image_runs_build_rootless_under_docker() {
    let env = dev_env_or_skip!();
    let reg = &env.registries.plain;
    let image = build_and_push(env, "task", &["kiln-build"]);

    let probe = docker(env)
        .args(["run", "--rm", "--entrypoint", "sh", &image, "-c"])
        .arg("id -u; echo $USER; for t in build buildkitd runc newuidmap newgidmap rootlesskit; do command -v $t; done; cat /etc/subuid")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&probe.stdout);
    assert!(probe.status.success(), "{said}{}", String::from_utf8_lossy(&probe.stderr));
    let lines: Vec<&str> = said.lines().collect();
    assert_eq!(lines[..2], ["1000", "kiln"], "the task runs as the unprivileged user: {said}");
    for tool in ["/usr/local/bin/build", "/usr/local/bin/buildkitd", "/usr/sbin/runc", "/usr/bin/rootlesskit"] {
        assert!(lines.contains(&tool), "{tool} missing: {said}");
    }
    assert!(said.contains("kiln:100000:65536"), "{said}");

    // The entrypoint is build: with no Dockerfile in its working folder it says so.
    let bare = docker(env).args(["run", "--rm", &image]).output().unwrap();
    assert!(!bare.status.success());
    assert!(
        String::from_utf8_lossy(&bare.stderr).contains("build: DOCKERFILE:"),
        "{}",
        String::from_utf8_lossy(&bare.stderr)
    );

    // A build inside it, as its unprivileged user, the way a Concourse worker runs an
    // unprivileged task: no --privileged, only the permissions README lists.
    let task = tempfile::tempdir().unwrap();
    write_files(task.path(), &[("Dockerfile", &format!("{}RUN echo built-inside > /where\n", from_busybox(env)))]);
    let chown = Command::new("chown").args(["-R", "1000:1000"]).arg(task.path()).status().unwrap();
    assert!(chown.success());
    let http = format!("[registry.\"{}\"]\nhttp = true\n", reg.addr);
    let build_inside = |permissions: &[&str]| {
        docker(env)
            .args(["run", "--rm", "--network", "host"])
            .args(permissions)
            .arg("-v")
            .arg(format!("{}:/tmp/build", task.path().display()))
            .args(["-e", &format!("BUILDKIT_EXTRA_CONFIG={http}"), &image])
            .output()
            .unwrap()
    };
    // Docker's default seccomp profile refuses the user namespace rootlesskit makes.
    let refused = build_inside(&[]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains("operation not permitted"), "{stderr}");
    assert!(!task.path().join("image/image.tar").exists());

    let inside = build_inside(ROOTLESS_PERMISSIONS);
    let stderr = String::from_utf8_lossy(&inside.stderr);
    assert!(inside.status.success(), "build inside the task image: {stderr}");
    assert!(stderr.contains("build: started rootlesskit buildkitd (rootless"), "{stderr}");
    assert!(task.path().join("image/image.tar").metadata().unwrap().len() > 0, "{stderr}");
}

/// What `docker run` must allow for rootless BuildKit inside an unprivileged container on
/// this machine, which has no AppArmor (README says what else a worker may need).
const ROOTLESS_PERMISSIONS: &[&str] = &["--security-opt", "seccomp=unconfined"];
