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
    // A CONTEXT name no other test here uses: the engine keeps one synced copy per name.
    let mut files: Vec<(String, String)> =
        (0..50).map(|i| (format!("wire/src/f{i:02}"), format!("file {i}\n"))).collect();
    files.push(("wire/Dockerfile".into(), format!("{}COPY . /src\n", from_busybox(env))));
    files.push(("wire/.dockerignore".into(), "src/f49\n".into()));
    let files: Vec<(&str, &str)> = files.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    write_files(work.path(), &files);
    let first = build_task(env, work.path(), &[], &[("CONTEXT", "wire")]);
    first.success();
    // The Dockerfile and .dockerignore loads follow one path each, not the whole folder.
    assert!(first.stderr.contains("build: dockerfile: sent 1 of 1 entries"), "{}", first.stderr);
    assert!(first.stderr.contains("build: context: sent 1 of 1 entries, 8 bytes"), "{}", first.stderr);

    std::fs::write(work.path().join("wire/src/f07"), "changed!\n").unwrap();
    let second = build_task(env, work.path(), &[], &[("CONTEXT", "wire")]);
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

/// The build task on the real `buildkitd` (the dev one, as root) instead of the engine.
fn on_buildkitd(env: &kiln_tests::harness::DevEnv) -> String {
    format!("unix://{}", env.buildkitd.socket.display())
}

fn digest_of(work: &std::path::Path) -> String {
    std::fs::read_to_string(work.join("image/digest")).unwrap()
}

#[test]
fn source_date_epoch_gives_one_digest_on_both_daemons_and_git_gives_the_commits() {
    let env = dev_env_or_skip!();
    let work = tempfile::tempdir().unwrap();
    // A RUN makes files now, and COPY carries the context's times: both are clamped.
    write_files(
        work.path(),
        &[
            (
                "ctx/Dockerfile",
                &format!("{}RUN echo hi > /f && mkdir /d && touch /d/x\nCOPY a /a\n", from_busybox(env)),
            ),
            ("ctx/a", "a\n"),
        ],
    );
    let buildkitd = on_buildkitd(env);
    let build = |host: Option<&str>, epoch: Option<&str>| {
        let _ = std::fs::remove_dir_all(work.path().join("image"));
        let mut vars = vec![("CONTEXT", "ctx"), ("NO_CACHE", "true")];
        vars.extend(epoch.map(|e| ("SOURCE_DATE_EPOCH", e)));
        vars.extend(host.map(|h| ("BUILDKIT_HOST", h)));
        build_task(env, work.path(), &[], &vars).success();
        let digest = digest_of(work.path());
        // Past the second the next build's clock would otherwise share.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        digest
    };
    let mut digests = Vec::new();
    for host in [None, Some(buildkitd.as_str())] {
        for _ in 0..2 {
            digests.push(build(host, Some("1700000000")));
        }
    }
    assert!(digests.iter().all(|d| *d == digests[0]), "engine, engine, buildkitd, buildkitd: {digests:?}");
    // Without it, two builds a second apart differ (so the test can fail).
    let (one, two) = (build(Some(&buildkitd), None), build(Some(&buildkitd), None));
    assert_ne!(one, two, "unclamped builds agree: nothing here tests SOURCE_DATE_EPOCH");

    // `git`: the commit time of the checkout holding CONTEXT, the same image as that number.
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .arg("-C")
            .arg(work.path())
            .args(args)
            .env("GIT_COMMITTER_DATE", "@1700000000 +0000")
            .env("GIT_AUTHOR_DATE", "@1600000000 +0000")
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    git(&["init", "-q"]);
    git(&["add", "ctx"]);
    git(&["-c", "user.name=kiln", "-c", "user.email=kiln@example.com", "commit", "-qm", "ctx"]);
    assert_eq!(build(Some(&buildkitd), Some("git")), digests[0]);
    // The config's created is the epoch.
    let out = build_task(env, work.path(), &["--oci"], &[("CONTEXT", "ctx"), ("SOURCE_DATE_EPOCH", "git")]);
    out.success();
    let layout = work.path().join("image/image");
    let blob = |d: &str| std::fs::read(layout.join("blobs/sha256").join(d.trim_start_matches("sha256:"))).unwrap();
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(&blob(manifest["config"]["digest"].as_str().unwrap())).unwrap();
    assert_eq!(config["created"], "2023-11-14T22:13:20Z", "{config}");
}

#[test]
fn zstd_layers_are_zstd_and_travel_through_out_in_skopeo_and_crane() {
    let env = dev_env_or_skip!();
    let work = tempfile::tempdir().unwrap();
    write_files(work.path(), &[("ctx/Dockerfile", &format!("{}RUN echo zstd > /f\n", from_busybox(env)))]);
    let vars = [
        ("CONTEXT", "ctx"),
        ("BUILDKIT_HOST", &on_buildkitd(env)),
        ("COMPRESSION", "zstd"),
        ("COMPRESSION_LEVEL", "3"),
        ("FORCE_COMPRESSION", "true"),
    ];
    build_task(env, work.path(), &["--oci"], &vars).success();
    let layout = work.path().join("image/image");
    let blob = |d: &str| std::fs::read(layout.join("blobs/sha256").join(d.trim_start_matches("sha256:"))).unwrap();
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    assert!(layers.len() >= 2, "{manifest}");
    for layer in layers {
        // Even busybox's gzip layer: FORCE_COMPRESSION recompressed it.
        assert_eq!(layer["mediaType"], "application/vnd.oci.image.layer.v1.tar+zstd", "{manifest}");
        assert_eq!(&blob(layer["digest"].as_str().unwrap())[..4], &[0x28, 0xb5, 0x2f, 0xfd], "not zstd's magic");
    }

    // out pushes the layout; crane and skopeo fetch it whole (crane's `validate` is no judge
    // here: it reads every layer as gzip, "gzip: invalid header").
    let repo = kiln_tests::harness::unique_repo("zstd");
    let plain = &env.registries.plain.addr;
    let source = serde_json::json!({ "repository": format!("{plain}/{repo}") });
    kiln_tests::harness::resource(
        "out",
        Some(work.path()),
        &serde_json::json!({ "source": source, "params": { "image": "image/image", "version": "1.0.0" } }),
    )
    .success();
    let digest = kiln_tests::harness::skopeo_digest(env, &env.registries.plain, &repo, "1.0.0");
    let pulled = tempfile::tempdir().unwrap();
    let crane = env
        .crane()
        .args(["pull", "--insecure", "--format", "oci", &format!("{plain}/{repo}:1.0.0")])
        .arg(pulled.path().join("layout"))
        .output()
        .unwrap();
    assert!(crane.status.success(), "crane pull: {}", String::from_utf8_lossy(&crane.stderr));
    for layer in layers {
        let hex = layer["digest"].as_str().unwrap().trim_start_matches("sha256:");
        assert_eq!(std::fs::read(pulled.path().join("layout/blobs/sha256").join(hex)).unwrap(), blob(hex));
    }
    let copied = tempfile::tempdir().unwrap();
    let skopeo = Command::new("skopeo")
        .args(["copy", "--quiet", "--src-tls-verify=false"])
        .arg(format!("docker://{plain}/{repo}:1.0.0"))
        .arg(format!("oci:{}", copied.path().join("layout").display()))
        .output()
        .unwrap();
    assert!(skopeo.status.success(), "skopeo copy: {}", String::from_utf8_lossy(&skopeo.stderr));
    for layer in layers {
        let hex = layer["digest"].as_str().unwrap().trim_start_matches("sha256:");
        assert_eq!(std::fs::read(copied.path().join("layout/blobs/sha256").join(hex)).unwrap(), blob(hex));
    }
    // in unpacks it.
    let dest = tempfile::tempdir().unwrap();
    kiln_tests::harness::resource(
        "in",
        Some(dest.path()),
        &serde_json::json!({ "source": source, "version": { "tag": "1.0.0", "digest": digest } }),
    )
    .success();
    assert_eq!(std::fs::read_to_string(dest.path().join("rootfs/f")).unwrap(), "zstd\n");
}

/// `/proc/net/tcp`'s form of a socket listening on `127.0.0.1:port`.
fn listening_on_loopback(port: u16) -> String {
    format!("0100007F:{port:04X} 00000000:0000 0A")
}

#[test]
fn network_none_default_and_host_are_what_run_steps_get() {
    let env = dev_env_or_skip!();
    let work = tempfile::tempdir().unwrap();
    // What a step sees of networks, without using one: its interfaces, whether loopback is
    // up, and whether the host's listening sockets (the dev registry's) are in its view.
    let dockerfile = format!(
        "{}RUN ls /sys/class/net > /nets && cat /sys/class/net/lo/flags > /lo && cat /proc/net/tcp > /tcp\n",
        from_busybox(env)
    );
    // And, for none: a round trip through a socket on loopback works, while a connection
    // anywhere else (TEST-NET-1, which nothing answers) fails at once: no route. The client
    // tries until the listener is up, and the listener is waited for, so a slow machine
    // cannot lose the round trip. The listener's stdin stays open for a while: at EOF it
    // would shut its side at once, and a client that saw that before its own stdin would
    // leave without sending.
    let sockets = format!(
        "{}RUN sleep 3 | nc -l -p 9000 > /got & for i in $(seq 100); do echo ping | nc 127.0.0.1 9000 && break; sleep 0.1; done; \
         wait; nc -w 2 192.0.2.1 80 < /dev/null 2> /away; echo $? >> /away\n",
        from_busybox(env)
    );
    write_files(work.path(), &[("ctx/Dockerfile", &dockerfile), ("sockets/Dockerfile", &sockets)]);
    let port: u16 = env.registries.plain.addr.rsplit(':').next().unwrap().parse().unwrap();
    let host_socket = listening_on_loopback(port);
    let seen = |host: Option<&str>, network: &str| {
        let _ = std::fs::remove_dir_all(work.path().join("image"));
        let mut vars = vec![("CONTEXT", "ctx"), ("NO_CACHE", "true"), ("UNPACK_ROOTFS", "true"), ("NETWORK", network)];
        vars.extend(host.map(|h| ("BUILDKIT_HOST", h)));
        let out = build_task(env, work.path(), &[], &vars);
        out.success();
        let read = |f: &str| std::fs::read_to_string(work.path().join("image/rootfs").join(f)).unwrap();
        (read("nets"), read("lo"), read("tcp").contains(&host_socket))
    };
    let buildkitd = on_buildkitd(env);
    for host in [None, Some(buildkitd.as_str())] {
        let (nets, lo, sees_host) = seen(host, "none");
        assert_eq!(nets, "lo\n", "{host:?}");
        let flags = u32::from_str_radix(lo.trim().trim_start_matches("0x"), 16).unwrap();
        assert_eq!(flags & 1, 1, "{host:?}: loopback is down: {lo}");
        assert!(!sees_host, "{host:?}: NETWORK=none sees the host's sockets");
        let _ = std::fs::remove_dir_all(work.path().join("image"));
        let mut vars =
            vec![("CONTEXT", "sockets"), ("NO_CACHE", "true"), ("UNPACK_ROOTFS", "true"), ("NETWORK", "none")];
        vars.extend(host.map(|h| ("BUILDKIT_HOST", h)));
        build_task(env, work.path(), &[], &vars).success();
        let read = |f: &str| std::fs::read_to_string(work.path().join("image/rootfs").join(f)).unwrap();
        assert_eq!(read("got"), "ping\n", "{host:?}: the loopback round trip failed");
        let away = read("away");
        assert!(away.to_lowercase().contains("unreachable") && !away.ends_with("0\n"), "{host:?}: {away}");
    }
    // The engine's default is a bridge: an interface beside loopback, not the host's view.
    let (nets, _, sees_host) = seen(None, "default");
    assert!(nets.lines().any(|n| n != "lo") && !sees_host, "{nets}");
    // host: the host's own sockets, the dev registry's among them.
    let (_, _, sees_host) = seen(None, "host");
    assert!(sees_host, "NETWORK=host does not see 127.0.0.1:{port} listening");

    // The dev buildkitd was not started to allow network.host: one line says what to do.
    let out =
        build_task(env, work.path(), &[], &[("CONTEXT", "ctx"), ("NETWORK", "host"), ("BUILDKIT_HOST", &buildkitd)]);
    out.failure();
    assert!(
        out.stderr.contains("NETWORK=host: this BuildKit does not allow the network.host entitlement"),
        "{}",
        out.stderr
    );
    let out = build_task(env, work.path(), &[], &[("CONTEXT", "ctx"), ("NETWORK", "bridge")]);
    out.failure();
    assert!(out.stderr.contains("NETWORK: \"bridge\" is not default, none or host"), "{}", out.stderr);
}

#[test]
fn a_secret_from_another_variable_is_served_and_never_shown() {
    let env = dev_env_or_skip!();
    let work = tempfile::tempdir().unwrap();
    let dockerfile =
        format!("{}RUN --mount=type=secret,id=token sha256sum /run/secrets/token > /sum\n", from_busybox(env));
    write_files(work.path(), &[("ctx/Dockerfile", &dockerfile)]);
    let secret = "s3cr3t-from-a-credential-manager";
    let vars = [
        ("CONTEXT", "ctx"),
        ("UNPACK_ROOTFS", "true"),
        ("NO_CACHE", "true"),
        ("BUILDKIT_SECRETENV_token", "NPM_TOKEN"),
        ("NPM_TOKEN", secret),
    ];
    let out = build_task(env, work.path(), &[], &vars);
    out.success();
    assert!(!out.stderr.contains(secret) && !out.stdout.contains(secret), "{}", out.stderr);
    use sha2::Digest as _;
    let want = hex::encode(sha2::Sha256::digest(secret.as_bytes()));
    let sum = std::fs::read_to_string(work.path().join("image/rootfs/sum")).unwrap();
    assert!(sum.starts_with(&want), "{sum}");
    for (name, bytes) in kiln_tests::harness::files_under(&work.path().join("image")) {
        if name.ends_with("image.tar") {
            assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "the secret is in {name}");
        }
    }
    // A variable that is not set is named.
    let out =
        build_task(env, work.path(), &[], &[("CONTEXT", "ctx"), ("BUILDKIT_SECRETENV_token", "NOT_SET_ANYWHERE")]);
    out.failure();
    assert!(
        out.stderr.contains("BUILDKIT_SECRETENV_token: the environment variable NOT_SET_ANYWHERE is not set"),
        "{}",
        out.stderr
    );
}

#[test]
fn named_contexts_are_folders_images_and_layouts() {
    let env = dev_env_or_skip!();
    let work = tempfile::tempdir().unwrap();
    let plain = &env.registries.plain.addr;
    write_files(
        work.path(),
        &[
            (
                "named/Dockerfile",
                "FROM base\nCOPY --from=assets . /assets/\nCOPY --from=layout /bin/busybox /from-layout\n",
            ),
            ("assets/a1", "asset 1\n"),
            ("assets/a2", "asset 2\n"),
            ("assets/a3", "asset 3\n"),
            // The named folder's own .dockerignore, not the main context's.
            ("assets/.dockerignore", "a3\n"),
        ],
    );
    let layout = work.path().join("busybox-layout");
    let copy = Command::new("skopeo")
        .args(["copy", "--quiet", "--src-tls-verify=false"])
        .arg(format!("docker://{plain}/library/busybox:amd64"))
        .arg(format!("oci:{}:amd64", layout.display()))
        .output()
        .unwrap();
    assert!(copy.status.success(), "{}", String::from_utf8_lossy(&copy.stderr));
    let base = format!("docker-image://{plain}/library/busybox:amd64");
    let vars = [
        ("CONTEXT", "named"),
        ("BUILD_CONTEXT_base", base.as_str()),
        ("BUILD_CONTEXT_assets", "assets"),
        ("BUILD_CONTEXT_layout", "oci-layout://busybox-layout"),
        ("UNPACK_ROOTFS", "true"),
    ];
    let first = build_task(env, work.path(), &[], &vars);
    first.success();
    let rootfs = work.path().join("image/rootfs");
    let mut assets: Vec<String> = std::fs::read_dir(rootfs.join("assets"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assets.sort();
    // a3 is left out by the folder's own .dockerignore (which, as in Docker, is sent itself).
    assert_eq!(assets, [".dockerignore", "a1", "a2"]);
    assert!(rootfs.join("from-layout").is_file() && rootfs.join("bin/busybox").is_file());

    // A rebuild sends only the named folder's changed file.
    std::fs::write(work.path().join("assets/a1"), "changed\n").unwrap();
    let second = build_task(env, work.path(), &[], &vars);
    second.success();
    let sent: Vec<&str> = second.stderr.lines().filter(|l| l.starts_with("build: context-assets: sent")).collect();
    assert_eq!(sent.last(), Some(&"build: context-assets: sent 1 of 3 entries, 8 bytes"), "{}", second.stderr);
    assert_eq!(std::fs::read_to_string(rootfs.join("assets/a1")).unwrap(), "changed\n");

    for (name, value, says) in [
        ("BUILD_CONTEXT_assets", "missing", "BUILD_CONTEXT_assets: missing does not exist"),
        ("BUILD_CONTEXT_assets", "named/Dockerfile", "is not a folder"),
        ("BUILD_CONTEXT_assets", "git://example.com/x", "give a folder, docker-image://… or oci-layout://…"),
        ("BUILD_CONTEXT_layout", "oci-layout://assets", "BUILD_CONTEXT_layout: "),
    ] {
        let out = build_task(env, work.path(), &[], &[("CONTEXT", "named"), (name, value)]);
        out.failure();
        assert!(out.stderr.contains(says), "{name}={value}: {}", out.stderr);
    }
}

#[test]
fn load_puts_the_image_into_docker_from_either_buildkit() {
    let env = dev_env_or_skip!();
    let work = tempfile::tempdir().unwrap();
    write_files(
        work.path(),
        &[("ctx/Dockerfile", &format!("{}RUN echo loaded > /said\nCMD [\"cat\", \"/said\"]\n", from_busybox(env)))],
    );
    let docker_host = format!("unix://{}", env.docker.socket.display());
    let config = tempfile::tempdir().unwrap();
    let docker = |args: &[&str]| {
        Command::new(env.docker.bin_dir.join("docker"))
            .args(args)
            .env("DOCKER_HOST", &docker_host)
            .env("DOCKER_CONFIG", config.path())
            .output()
            .unwrap()
    };
    let buildkitd = on_buildkitd(env);
    for (host, tag) in [(None, "engine"), (Some(buildkitd.as_str()), "buildkitd")] {
        let name = format!("kiln-load-test-{}", std::process::id());
        let _ = docker(&["rmi", "-f", &format!("{name}:{tag}")]);
        let mut vars = vec![
            ("CONTEXT", "ctx"),
            ("IMAGE_NAME", name.as_str()),
            ("IMAGE_TAG", tag),
            ("DOCKER_HOST", docker_host.as_str()),
        ];
        vars.extend(host.map(|h| ("BUILDKIT_HOST", h)));
        let out = build_task(env, work.path(), &["--load"], &vars);
        out.success();
        assert!(
            out.stderr.contains(&format!("build: loaded into the Docker engine at {}", env.docker.socket.display())),
            "{}",
            out.stderr
        );
        let ran = docker(&["run", "--rm", &format!("{name}:{tag}")]);
        assert!(ran.status.success(), "docker run: {}", String::from_utf8_lossy(&ran.stderr));
        assert_eq!(String::from_utf8_lossy(&ran.stdout), "loaded\n");
        let _ = docker(&["rmi", "-f", &format!("{name}:{tag}")]);
    }
    // An engine that is not there is named; an OCI layout cannot be loaded.
    let missing = work.path().join("no-docker.sock");
    let out = build_task(
        env,
        work.path(),
        &["--load"],
        &[("CONTEXT", "ctx"), ("DOCKER_HOST", &format!("unix://{}", missing.display()))],
    );
    out.failure();
    assert!(out.stderr.contains("LOAD: cannot reach the Docker engine at"), "{}", out.stderr);
    let out = build_task(env, work.path(), &["--load", "--oci"], &[("CONTEXT", "ctx")]);
    out.failure();
    assert!(out.stderr.contains("LOAD: Docker loads one image from image.tar"), "{}", out.stderr);
}

#[test]
fn a_platform_no_worker_runs_is_named_before_the_build_and_explained_after() {
    let env = dev_env_or_skip!();
    let work = tempfile::tempdir().unwrap();
    // s390x: no emulator for it is registered on this machine (binfmt_misc is not mounted).
    // Its /bin/sh is an s390x ELF header, which the kernel refuses as not its own.
    write_files(
        work.path(),
        &[
            ("run/Dockerfile", "FROM scratch\nCOPY sh /bin/sh\nRUN echo hi > /f\n"),
            ("copy/Dockerfile", "FROM scratch\nCOPY f /f\n"),
            ("copy/f", "no RUN, no emulator needed\n"),
        ],
    );
    let mut elf = vec![0x7f, b'E', b'L', b'F', 2, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    elf.extend([0, 2, 0, 0x16, 0, 0, 0, 1]); // ET_EXEC, EM_S390, version 1 (big-endian)
    elf.extend([0; 24]); // entry, program and section header offsets
    elf.extend([0, 0, 0, 0, 0, 64, 0, 56, 0, 0, 0, 64, 0, 0, 0, 0]); // flags, sizes, no headers
    let sh = work.path().join("run/sh");
    std::fs::write(&sh, &elf).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&sh, std::fs::Permissions::from_mode(0o755)).unwrap();
    let buildkitd = on_buildkitd(env);
    let vars = |context: &'static str| {
        vec![("CONTEXT", context), ("IMAGE_PLATFORM", "linux/s390x"), ("BUILDKIT_HOST", buildkitd.as_str())]
    };
    let warning = "build: warning: IMAGE_PLATFORM: BuildKit's workers run linux/amd64";
    // Without RUN steps the build needs no emulator: warned, not refused.
    let out = build_task(env, work.path(), &[], &vars("copy"));
    out.success();
    assert!(out.stderr.contains(warning) && out.stderr.contains("not linux/s390x"), "{}", out.stderr);
    // With one, the kernel's "exec format error" comes with what the worker needs.
    let out = build_task(env, work.path(), &[], &vars("run"));
    out.failure();
    let last = out.stderr.trim().lines().last().unwrap();
    assert!(last.contains("linux/s390x cannot run here") && last.contains("binfmt_misc"), "{}", out.stderr);
    assert!(last.contains("exec format error"), "{}", out.stderr);
}

#[test]
fn progress_is_plain_in_logs_live_on_a_terminal_and_quiet_when_asked() {
    let env = dev_env_or_skip!();
    let work = tempfile::tempdir().unwrap();
    write_files(
        work.path(),
        &[
            ("ok/Dockerfile", &format!("{}RUN echo step-output\n", from_busybox(env))),
            ("bad/Dockerfile", &format!("{}RUN echo the-failing-step-says-this && false\n", from_busybox(env))),
        ],
    );
    // quiet: only the result line; a failing step's own lines are shown.
    let out = build_task(env, work.path(), &[], &[("CONTEXT", "ok"), ("NO_CACHE", "true"), ("PROGRESS", "quiet")]);
    out.success();
    let lines: Vec<&str> = out.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() == 1 && lines[0].starts_with("built sha256:"), "{}", out.stderr);
    let out = build_task(env, work.path(), &["--progress", "quiet"], &[("CONTEXT", "bad")]);
    out.failure();
    assert!(out.stderr.contains("the-failing-step-says-this\n") && !out.stderr.contains("#1 "), "{}", out.stderr);

    // Not a terminal (these tests): plain, as before.
    let out = build_task(env, work.path(), &[], &[("CONTEXT", "ok"), ("NO_CACHE", "true")]);
    out.success();
    assert!(out.stderr.contains("#1 [internal] load build definition"), "{}", out.stderr);

    // On a terminal (script(1) gives it one): the live view, redrawn in place.
    let build = kiln_tests::harness::bin("kiln-build");
    let host = format!("docker+unix://{}", env.docker.socket.display());
    let shown = Command::new("script")
        .args(["-qefc", &format!("{} --context ok --no-cache", build.display()), "/dev/null"])
        .current_dir(work.path())
        .env("BUILDKIT_HOST", &host)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.status.success(), "{text}");
    assert!(text.contains("[+] Building ") && text.contains("\x1b[J"), "no live view:\n{text}");
    assert!(text.contains(" => [2/2] RUN echo step-output"), "{text}");
    assert!(!text.contains("#1 [internal]"), "plain lines on a terminal:\n{text}");
    // A terminal 8 rows high: the view keeps to it, showing the latest steps.
    let small = Command::new("script")
        .args(["-qefc", &format!("stty rows 8 cols 120; {} --context ok --no-cache", build.display()), "/dev/null"])
        .current_dir(work.path())
        .env("BUILDKIT_HOST", &host)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&small.stdout);
    assert!(small.status.success(), "{text}");
    assert!(text.contains(" earlier step"), "{text}");
    let last_view = text.rsplit("[+] Building").next().unwrap();
    assert!(last_view.lines().filter(|l| l.contains(" => ")).count() <= 6, "taller than the terminal:\n{last_view}");

    let out = build_task(env, work.path(), &[], &[("CONTEXT", "ok"), ("PROGRESS", "fancy")]);
    out.failure();
    assert!(out.stderr.contains("PROGRESS: \"fancy\" is not auto, plain, tty or quiet"), "{}", out.stderr);
}
