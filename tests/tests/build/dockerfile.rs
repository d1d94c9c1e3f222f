//! `build` against the dev engine's real BuildKit: Dockerfiles FROM the local registry's
//! busybox, every image read back with skopeo and by unpacking it, then pushed with `out`.

use std::path::Path;
use std::process::Command;

use kiln_tests::dev_env_or_skip;
use kiln_tests::harness::{build_task, command, from_busybox, resource, run, source, unique_repo, write_files};
use serde_json::{Value, json};

fn inspect(tar: &Path) -> Value {
    let out = Command::new("skopeo").arg("inspect").arg(format!("docker-archive:{}", tar.display())).output().unwrap();
    assert!(out.status.success(), "skopeo inspect: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_example_builds_and_out_pushes_the_same_digest() {
    let env = dev_env_or_skip!();
    let work = tempfile::tempdir().unwrap();
    let context = kiln_tests::harness::workspace().join("examples/hello");
    let out = build_task(
        env,
        work.path(),
        &[],
        &[
            ("CONTEXT", context.to_str().unwrap()),
            ("BUILD_ARG_REGISTRY", &env.registries.plain.addr),
            ("BUILD_ARG_GREETING", "hoi"),
            ("LABEL_org.example.team", "kiln"),
            ("UNPACK_ROOTFS", "true"),
        ],
    );
    out.success();
    assert!(out.stderr.contains("#1 ") && out.stderr.contains("DONE"), "plain progress: {}", out.stderr);
    let image = work.path().join("image");
    let info = inspect(&image.join("image.tar"));
    assert_eq!(info["Labels"]["org.example.team"], "kiln");
    assert_eq!(info["Labels"]["org.opencontainers.image.title"], "kiln hello");
    let digest = std::fs::read_to_string(image.join("digest")).unwrap();
    assert!(digest.starts_with("sha256:") && digest.len() == 71, "{digest}");
    // UNPACK_ROOTFS: the image's files and how to run them.
    assert_eq!(std::fs::read_to_string(image.join("rootfs/etc/greeting")).unwrap(), "hoi\n");
    let metadata: Value = serde_json::from_slice(&std::fs::read(image.join("metadata.json")).unwrap()).unwrap();
    assert!(metadata["env"][0].as_str().unwrap().starts_with("PATH="));
    // The same metadata.json as `in` writes: how to run it, command included.
    assert_eq!((&metadata["user"], &metadata["cmd"]), (&json!(""), &json!(["/usr/local/bin/greet"])), "{metadata}");

    // out pushes exactly what was built, under the digest build reported.
    let reg = &env.registries.token;
    let repo = unique_repo("build-push");
    let pushed = resource(
        "out",
        Some(work.path()),
        &json!({ "source": source(env, reg, &repo), "params": { "image": "image/image.tar", "version": "1.0.0" } }),
    );
    assert_eq!(pushed.success().json()["version"]["digest"], json!(digest));
}

#[test]
fn dockerignore_dockerfile_elsewhere_target_and_args_file() {
    let env = dev_env_or_skip!();
    let work = tempfile::tempdir().unwrap();
    let ctx = work.path().join("ctx");
    let dockerfile = format!(
        "{}ARG WHO\nCOPY . /ctx/\nRUN echo \"$WHO\" > /who\n\n{}AS second\nRUN touch /second\n",
        from_busybox(env).replace('\n', " AS first\n"),
        from_busybox(env).trim_end().to_string() + " "
    );
    write_files(
        &ctx,
        &[
            ("keep.txt", "kept"),
            ("ignored.txt", "secret stuff"),
            ("sub/also.log", "x"),
            (".dockerignore", "ignored.txt\n**/*.log\n"),
        ],
    );
    write_files(work.path(), &[("elsewhere/Build.dockerfile", &dockerfile), ("args", "# comment\nWHO=from-file\n")]);
    let out = build_task(
        env,
        work.path(),
        &[],
        &[
            ("CONTEXT", ctx.to_str().unwrap()),
            ("DOCKERFILE", work.path().join("elsewhere/Build.dockerfile").to_str().unwrap()),
            ("BUILD_ARGS_FILE", work.path().join("args").to_str().unwrap()),
            ("TARGET", "first"),
            ("UNPACK_ROOTFS", "true"),
        ],
    );
    out.success();
    let rootfs = work.path().join("image/rootfs");
    assert_eq!(std::fs::read_to_string(rootfs.join("ctx/keep.txt")).unwrap(), "kept");
    assert!(!rootfs.join("ctx/ignored.txt").exists(), ".dockerignore keeps it out");
    assert!(!rootfs.join("ctx/sub/also.log").exists());
    assert_eq!(std::fs::read_to_string(rootfs.join("who")).unwrap(), "from-file\n");
    assert!(!rootfs.join("second").exists(), "TARGET stops at the first stage");
}

#[test]
fn secrets_reach_run_and_nothing_else() {
    let env = dev_env_or_skip!();
    let work = tempfile::tempdir().unwrap();
    let value = "s3cr3t-value-that-must-not-leak";
    write_files(
        work.path(),
        &[
            (
                "ctx/Dockerfile",
                &format!(
                    "{}RUN --mount=type=secret,id=token --mount=type=secret,id=file wc -c < /run/secrets/token > /len && cat /run/secrets/file > /fromfile\n",
                    from_busybox(env)
                ),
            ),
            ("secret-file", "file-secret-value"),
        ],
    );
    let out = build_task(
        env,
        work.path(),
        &[],
        &[
            ("CONTEXT", "ctx"),
            ("BUILDKIT_SECRETTEXT_token", value),
            ("BUILDKIT_SECRET_file", work.path().join("secret-file").to_str().unwrap()),
            ("UNPACK_ROOTFS", "true"),
        ],
    );
    out.success();
    let rootfs = work.path().join("image/rootfs");
    assert_eq!(std::fs::read_to_string(rootfs.join("len")).unwrap().trim(), value.len().to_string());
    assert_eq!(std::fs::read_to_string(rootfs.join("fromfile")).unwrap(), "file-secret-value");
    assert!(!rootfs.join("run/secrets/token").exists());
    let tar = std::fs::read(work.path().join("image/image.tar")).unwrap();
    assert!(!tar.windows(value.len()).any(|w| w == value.as_bytes()), "the secret is in image.tar");
    assert!(!out.stderr.contains(value) && !out.stdout.contains(value), "the secret was printed");
}

#[test]
fn failures_name_the_line_and_leave_no_image() {
    let env = dev_env_or_skip!();
    let work = tempfile::tempdir().unwrap();
    write_files(
        work.path(),
        &[("ctx/Dockerfile", &format!("{}RUN echo about to fail && exit 3\n", from_busybox(env)))],
    );
    let out = build_task(env, work.path(), &[], &[("CONTEXT", "ctx")]);
    out.failure();
    let last = out.stderr.trim().lines().last().unwrap();
    assert!(last.starts_with("build: Dockerfile:2: RUN echo about to fail"), "{last}");
    assert!(last.contains("exit code: 3"), "{last}");
    assert!(out.stderr.contains("about to fail"), "the RUN's output is shown");
    let left: Vec<_> = std::fs::read_dir(work.path().join("image")).unwrap().collect();
    assert!(left.is_empty(), "a failed build leaves no image files: {left:?}");

    write_files(work.path(), &[("ctx/Dockerfile", &format!("{}RUNN echo x\n", from_busybox(env)))]);
    let out = build_task(env, work.path(), &[], &[("CONTEXT", "ctx")]);
    out.failure();
    assert!(out.stderr.contains("line 2") && out.stderr.contains("RUNN"), "{}", out.stderr);

    let out = build_task(env, work.path(), &[], &[("CONTEXT", "missing")]);
    out.failure();
    assert!(out.stderr.contains("CONTEXT: missing is not a directory"), "{}", out.stderr);
    let out = build_task(env, work.path(), &[], &[("CONTEXT", "ctx"), ("BUILDKIT_SECRET_x", "/no/such/file")]);
    out.failure();
    assert!(out.stderr.contains("BUILDKIT_SECRET_x"), "{}", out.stderr);
}

#[test]
fn second_build_is_cached_and_works_over_a_unix_socket() {
    let env = dev_env_or_skip!();
    let work = tempfile::tempdir().unwrap();
    let marker = unique_repo("cache").replace('/', "-");
    write_files(work.path(), &[("ctx/Dockerfile", &format!("{}RUN echo {marker} > /marker\n", from_busybox(env)))]);
    let host = format!("unix://{}", env.docker.buildkit_relay_socket.display());
    let mut first = command("kiln-build");
    first.current_dir(work.path()).env("BUILDKIT_HOST", &host).env("CONTEXT", "ctx");
    let first = run(first, b"");
    first.success();
    let second = build_task(env, work.path(), &[], &[("CONTEXT", "ctx")]);
    second.success();
    let run_step = second.stderr.split("\n\n").find(|s| s.contains(&format!("RUN echo {marker}"))).unwrap();
    assert!(run_step.contains("CACHED"), "{run_step}");
}

#[test]
fn builds_with_the_real_buildkitd_over_unix_and_tcp_with_mutual_tls() {
    let env = dev_env_or_skip!();
    let d = &env.buildkitd;
    let unix = format!("unix://{}", d.socket.display());
    let ca = env.ca_cert.display().to_string();
    let (cert, key) = (d.client_cert.display().to_string(), d.client_key.display().to_string());
    let transports: [(&str, Vec<(&str, &str)>); 2] = [
        ("unix", vec![("BUILDKIT_HOST", &unix)]),
        (
            "tcp+mTLS",
            vec![
                ("BUILDKIT_HOST", &d.tcp),
                ("BUILDKIT_TLS_CA", &ca),
                ("BUILDKIT_TLS_CERT", &cert),
                ("BUILDKIT_TLS_KEY", &key),
            ],
        ),
    ];
    for (name, vars) in transports {
        let work = tempfile::tempdir().unwrap();
        let marker = unique_repo(name).replace(['/', '+'], "-");
        write_files(
            work.path(),
            &[
                ("Dockerfile", &format!("{}COPY file /file\nRUN echo {marker} > /marker\n", from_busybox(env))),
                ("file", "sent"),
            ],
        );
        let mut cmd = command("kiln-build");
        cmd.current_dir(work.path());
        for (k, v) in &vars {
            cmd.env(k, v);
        }
        let out = run(cmd, b"");
        out.success();
        assert!(out.stderr.contains(&format!("RUN echo {marker}")), "{name}: {}", out.stderr);
        let digest = std::fs::read_to_string(work.path().join("image/digest")).unwrap();
        assert!(digest.starts_with("sha256:") && digest.len() == 71, "{name}: {digest}");
        // The base's layer, the COPY's and the RUN's.
        let layers = inspect(&work.path().join("image/image.tar"))["Layers"].as_array().unwrap().len();
        assert_eq!(layers, 3, "{name}");
    }
}

#[test]
fn several_platforms_make_an_index_out_pushes_whole() {
    let env = dev_env_or_skip!();
    let work = tempfile::tempdir().unwrap();
    // COPY only: no emulation is needed for the arm64 image.
    write_files(
        work.path(),
        &[("ctx/Dockerfile", &format!("{}COPY hello.txt /hello.txt\n", from_busybox(env))), ("ctx/hello.txt", "hi")],
    );
    let out = build_task(env, work.path(), &[], &[("CONTEXT", "ctx"), ("IMAGE_PLATFORM", "linux/amd64,linux/arm64")]);
    out.success();
    let digest = std::fs::read_to_string(work.path().join("image/digest")).unwrap();
    // As oci-build-task: several platforms turn OUTPUT_OCI on, and image/image is the layout.
    assert!(work.path().join("image/image/index.json").is_file(), "no image/image layout folder");
    assert!(!work.path().join("image/image.tar").exists());
    let reg = &env.registries.plain;
    let repo = unique_repo("build-multi");
    let pushed = resource(
        "out",
        Some(work.path()),
        &json!({ "source": source(env, reg, &repo), "params": { "image": "image/image", "version": "1.0.0" } }),
    );
    assert_eq!(pushed.success().json()["version"]["digest"], json!(digest));
    let raw = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", &format!("docker://{}:1.0.0", reg.repo(&repo))])
        .output()
        .unwrap();
    let index: Value = serde_json::from_slice(&raw.stdout).unwrap();
    let mut platforms: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["platform"]["architecture"].as_str().map(String::from))
        .collect();
    platforms.sort();
    assert_eq!(platforms, ["amd64", "arm64"], "{index}");

    let out = build_task(
        env,
        work.path(),
        &[],
        &[("CONTEXT", "ctx"), ("IMAGE_PLATFORM", "linux/amd64,linux/arm64"), ("UNPACK_ROOTFS", "true")],
    );
    out.failure();
    assert!(out.stderr.contains("UNPACK_ROOTFS"), "{}", out.stderr);
    let out = build_task(env, work.path(), &[], &[("CONTEXT", "ctx"), ("IMAGE_PLATFORM", "amd64")]);
    out.failure();
    assert!(out.stderr.contains("IMAGE_PLATFORM"), "{}", out.stderr);
}

#[test]
fn output_oci_writes_a_layout() {
    let env = dev_env_or_skip!();
    let work = tempfile::tempdir().unwrap();
    write_files(
        work.path(),
        &[("ctx/Dockerfile", &format!("{}COPY hello.txt /hello.txt\n", from_busybox(env))), ("ctx/hello.txt", "hi")],
    );
    let out =
        build_task(env, work.path(), &[], &[("CONTEXT", "ctx"), ("OUTPUT_OCI", "true"), ("UNPACK_ROOTFS", "true")]);
    out.success();
    let image = work.path().join("image");
    assert!(image.join("image/oci-layout").is_file() && image.join("image/index.json").is_file());
    assert!(!image.join("image.tar").exists());
    assert_eq!(std::fs::read_to_string(image.join("rootfs/hello.txt")).unwrap(), "hi");
    // The layout names the image image/digest reports.
    let index: Value = serde_json::from_slice(&std::fs::read(image.join("image/index.json")).unwrap()).unwrap();
    let digest = std::fs::read_to_string(image.join("digest")).unwrap();
    assert!(index["manifests"].as_array().unwrap().iter().any(|m| m["digest"] == json!(digest)), "{index}");
}

#[test]
fn private_base_images_use_docker_config_credentials() {
    let env = dev_env_or_skip!();
    let reg = &env.registries.token;
    let repo = unique_repo("build-private");
    kiln_tests::harness::push_busybox(env, "amd64", reg, &repo, "base");
    let work = tempfile::tempdir().unwrap();
    write_files(
        work.path(),
        &[("ctx/Dockerfile", &format!("FROM {}:base\nRUN echo built on a private base\n", reg.repo(&repo)))],
    );

    let out = build_task(env, work.path(), &[], &[("CONTEXT", "ctx")]);
    out.failure();
    assert!(out.stderr.contains("Dockerfile:1") && out.stderr.contains("authorization"), "{}", out.stderr);

    use base64::Engine as _;
    let (user, password) = (reg.username.clone().unwrap(), reg.password.clone().unwrap());
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    write_files(
        work.path(),
        &[("docker/config.json", &json!({ "auths": { reg.addr.clone(): { "auth": auth } } }).to_string())],
    );
    let config_dir = work.path().join("docker");
    let out = build_task(env, work.path(), &[], &[("CONTEXT", "ctx"), ("DOCKER_CONFIG", config_dir.to_str().unwrap())]);
    out.success();
    assert!(!out.stderr.contains(&password), "the password was printed");
}

#[test]
fn additional_targets_go_to_their_own_outputs() {
    let env = dev_env_or_skip!();
    let work = tempfile::tempdir().unwrap();
    let from = from_busybox(env);
    let dockerfile = format!(
        "{} AS tools\nRUN echo tools > /stage\n\n{} AS final\nRUN echo final > /stage\n",
        from.trim_end(),
        from.trim_end()
    );
    write_files(work.path(), &[("ctx/Dockerfile", &dockerfile)]);
    std::fs::create_dir(work.path().join("tools")).unwrap();
    let out = build_task(
        env,
        work.path(),
        &[],
        &[("CONTEXT", "ctx"), ("ADDITIONAL_TARGETS", "tools,nowhere"), ("UNPACK_ROOTFS", "true")],
    );
    out.success();
    // UNPACK_ROOTFS unpacks every exported image, the additional targets' too.
    for (dir, stage) in [("tools", "tools"), ("image", "final")] {
        let rootfs = work.path().join(dir).join("rootfs");
        assert_eq!(std::fs::read_to_string(rootfs.join("stage")).unwrap(), format!("{stage}\n"), "{dir}/rootfs");
        assert!(work.path().join(dir).join("metadata.json").is_file(), "{dir}/metadata.json");
    }
    assert!(out.stderr.contains("not building nowhere"), "{}", out.stderr);
    assert!(!work.path().join("nowhere").exists());
    let tools = std::fs::read_to_string(work.path().join("tools/digest")).unwrap();
    let main = std::fs::read_to_string(work.path().join("image/digest")).unwrap();
    assert_ne!(tools, main, "two different images");
    assert!(inspect(&work.path().join("tools/image.tar"))["Layers"].as_array().unwrap().len() >= 2);
}

#[test]
fn two_platforms_each_run_their_run_step_on_their_own_architecture() {
    let env = dev_env_or_skip!();
    if env.arm64_emulation != "registered" {
        // dev-env changes binfmt_misc only where it may (root, mountable); it says why not.
        eprintln!("*** SKIPPED: no arm64 emulator: {} ***", env.arm64_emulation);
        return;
    }
    let work = tempfile::tempdir().unwrap();
    write_files(work.path(), &[("ctx/Dockerfile", &format!("{}RUN uname -m > /arch\n", from_busybox(env)))]);
    let buildkitd = format!("unix://{}", env.buildkitd.socket.display());
    for host in [None, Some(buildkitd.as_str())] {
        let _ = std::fs::remove_dir_all(work.path().join("image"));
        let mut vars = vec![("CONTEXT", "ctx"), ("IMAGE_PLATFORM", "linux/amd64,linux/arm64"), ("NO_CACHE", "true")];
        vars.extend(host.map(|h| ("BUILDKIT_HOST", h)));
        let out = build_task(env, work.path(), &[], &vars);
        out.success();
        assert!(!out.stderr.contains("warning: IMAGE_PLATFORM"), "{host:?}: {}", out.stderr);
        let layout = work.path().join("image/image");
        let blob = |d: &str| std::fs::read(layout.join("blobs/sha256").join(d.trim_start_matches("sha256:"))).unwrap();
        let top: Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
        let index: Value = serde_json::from_slice(&blob(top["manifests"][0]["digest"].as_str().unwrap())).unwrap();
        let mut seen = Vec::new();
        for entry in index["manifests"].as_array().unwrap() {
            let Some(arch) = entry["platform"]["architecture"].as_str() else { continue };
            let manifest: Value = serde_json::from_slice(&blob(entry["digest"].as_str().unwrap())).unwrap();
            let config: Value = serde_json::from_slice(&blob(manifest["config"]["digest"].as_str().unwrap())).unwrap();
            assert_eq!(config["architecture"], arch, "{config}");
            // The RUN step's layer holds /arch, written by uname on that architecture.
            let last = manifest["layers"].as_array().unwrap().last().unwrap()["digest"].as_str().unwrap().to_string();
            let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(std::io::Cursor::new(blob(&last))));
            let mut said = String::new();
            for file in tar.entries().unwrap() {
                let mut file = file.unwrap();
                if file.path().unwrap().to_string_lossy().trim_start_matches("./") == "arch" {
                    std::io::Read::read_to_string(&mut file, &mut said).unwrap();
                }
            }
            seen.push((arch.to_string(), said.trim().to_string()));
        }
        seen.sort();
        assert_eq!(
            seen,
            [("amd64".to_string(), "x86_64".to_string()), ("arm64".to_string(), "aarch64".to_string())],
            "{host:?}"
        );
    }
}
