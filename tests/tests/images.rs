//! kiln's Concourse images, built by kiln itself FROM a Debian made with debootstrap,
//! pushed with `out`, and run the way Concourse runs them.

use std::path::Path;
use std::process::Command;

use kiln_tests::dev_env_or_skip;
use kiln_tests::harness::{DevEnv, bin, command, resource, run, skopeo_digest, source, unique_repo, workspace};
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
    let base = debian_base(env);
    let work = tempfile::tempdir().unwrap();
    context(&work.path().join("ctx"), "resource", &["check", "in", "out"]);

    let mut build = command("kiln-build");
    build
        .current_dir(work.path())
        .env("BUILDKIT_HOST", format!("docker+unix://{}", env.docker.socket.display()))
        .env("CONTEXT", "ctx")
        .env("BUILD_ARG_BASE", &base);
    run(build, b"").success();

    let reg = &env.registries.plain;
    let repo = unique_repo("resource-image");
    let pushed = resource(
        "out",
        Some(work.path()),
        &json!({ "source": source(env, reg, &repo), "params": { "image": "image/image.tar", "version": "1.0.0" } }),
    );
    let digest = pushed.success().json()["version"]["digest"].as_str().unwrap().to_string();

    // As Concourse runs a resource: the image's /opt/resource/check, the request on stdin.
    // Host networking, so that 127.0.0.1 is the host's, where the registries are.
    let busybox = skopeo_digest(env, reg, "library/busybox", "latest");
    let request = json!({ "source": { "repository": reg.repo("library/busybox"), "tag": "latest" } });
    let mut child = docker(env)
        .args([
            "run",
            "-i",
            "--rm",
            "--network",
            "host",
            &format!("{}@{digest}", reg.repo(&repo)),
            "/opt/resource/check",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running docker");
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(request.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "docker run: {}", String::from_utf8_lossy(&out.stderr));
    let versions: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(versions, json!([{ "tag": "latest", "digest": busybox }]));
}

#[test]
fn task_image_kiln_stage_runs_build_unprivileged() {
    let env = dev_env_or_skip!();
    let base = debian_base(env);
    let work = tempfile::tempdir().unwrap();
    context(&work.path().join("ctx"), "task", &["kiln-build"]);
    // The `task` stage copies buildkitd from moby/buildkit, which cannot be pulled here.
    let mut build = command("kiln-build");
    build
        .current_dir(work.path())
        .env("BUILDKIT_HOST", format!("docker+unix://{}", env.docker.socket.display()))
        .env("CONTEXT", "ctx")
        .env("TARGET", "kiln")
        .env("BUILD_ARG_BASE", &base);
    run(build, b"").success();
    let reg = &env.registries.plain;
    let repo = unique_repo("task-image");
    let pushed = resource(
        "out",
        Some(work.path()),
        &json!({ "source": source(env, reg, &repo), "params": { "image": "image/image.tar", "version": "1.0.0" } }),
    );
    let image = format!("{}@{}", reg.repo(&repo), pushed.success().json()["version"]["digest"].as_str().unwrap());

    let probe = docker(env)
        .args(["run", "--rm", "--entrypoint", "sh", &image, "-c"])
        .arg("id -u; for t in build newuidmap newgidmap rootlesskit; do command -v $t; done; cat /etc/subuid")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&probe.stdout);
    assert!(probe.status.success(), "{said}{}", String::from_utf8_lossy(&probe.stderr));
    let lines: Vec<&str> = said.lines().collect();
    assert_eq!(lines[0], "1000", "the task runs as the unprivileged user");
    for tool in ["/usr/local/bin/build", "/usr/bin/newuidmap", "/usr/bin/newgidmap", "/usr/bin/rootlesskit"] {
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
}
