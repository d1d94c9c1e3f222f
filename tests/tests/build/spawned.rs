//! `build` with no `BUILDKIT_HOST`, starting the real `buildkitd` (built from Debian's
//! packages by `scripts/build-buildkitd`) itself: as root, and as an unprivileged user with a
//! subordinate id range under rootlesskit, each in a clean environment (`env -i`: no `USER`,
//! no `HOME`). What is checked: the build works, every path the daemon uses is inside its
//! own folder, and on SIGTERM — during a `RUN sleep 60` or while the daemon is starting —
//! `build` exits within 2 s with every process of the build gone and both its folder and
//! rootlesskit's removed. And with a `cache` folder, the daemon's state kept there between
//! builds: cache mounts that survive, a budget that holds, two builds at once, damage.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kiln_tests::dev_env_or_skip;
use kiln_tests::harness::{DevEnv, Outcome, bin, from_busybox, progress_step, unique_repo, write_files};

/// Who runs `build`.
#[derive(Clone, Copy, PartialEq)]
enum As {
    Root,
    Rootless,
}

/// A work folder and a TMPDIR of its own, owned by whoever runs the build.
struct Run {
    work: tempfile::TempDir,
    tmp: tempfile::TempDir,
    who: As,
}

impl Run {
    fn new(env: &DevEnv, who: As, dockerfile: &str) -> Option<Self> {
        if who == As::Rootless && env.buildkitd.rootless_user.is_empty() {
            // dev-env makes the account only as root; CI always runs as root.
            assert!(std::env::var("CI").is_err(), "CI has no rootless account: run ./dev env up as root");
            eprintln!("*** SKIPPED: no rootless account (dev-env was not started as root) ***");
            return None;
        }
        let work = tempfile::tempdir().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        write_files(work.path(), &[("Dockerfile", dockerfile)]);
        if who == As::Rootless {
            let user = &env.buildkitd.rootless_user;
            for dir in [work.path(), tmp.path()] {
                let status = Command::new("chown").arg("-R").arg(format!("{user}:")).arg(dir).status().unwrap();
                assert!(status.success(), "chown {user} {}", dir.display());
            }
        }
        Some(Run { work, tmp, who })
    }

    /// The task has a `cache` folder (Concourse's `caches: [{path: cache}]`).
    fn with_cache(self, env: &DevEnv) -> Self {
        let cache = self.work.path().join("cache");
        std::fs::create_dir(&cache).unwrap();
        if self.who == As::Rootless {
            let user = &env.buildkitd.rootless_user;
            assert!(Command::new("chown").arg(format!("{user}:")).arg(&cache).status().unwrap().success());
        }
        self
    }

    /// `build` with `vars`, to its end.
    fn build(&self, env: &DevEnv, vars: &[(&str, &str)]) -> Outcome {
        wait_with_output(self.spawn_with(env, vars))
    }

    /// `build` in a clean environment: PATH with the real buildkitd first, TMPDIR, the dev
    /// registry over plain HTTP, and `vars`.
    fn command(&self, env: &DevEnv, vars: &[(&str, &str)]) -> Command {
        let path = format!("{}:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", env.buildkitd.bin_dir.display());
        let http = format!("[registry.\"{}\"]\nhttp = true\n", env.registries.plain.addr);
        let mut cmd = match self.who {
            As::Root => Command::new("env"),
            As::Rootless => {
                let mut c = Command::new("setpriv");
                let user = &env.buildkitd.rootless_user;
                c.args(["--reuid", user, "--regid", user, "--init-groups", "--", "env"]);
                c
            }
        };
        cmd.current_dir(self.work.path())
            .env_clear()
            .arg("-i")
            .arg(format!("PATH={path}"))
            .arg(format!("TMPDIR={}", self.tmp.path().display()))
            .arg(format!("BUILDKIT_EXTRA_CONFIG={http}"));
        for (k, v) in vars {
            cmd.arg(format!("{k}={v}"));
        }
        cmd.arg(bin("kiln-build"));
        cmd
    }

    fn spawn(&self, env: &DevEnv) -> Child {
        self.spawn_with(env, &[])
    }

    /// `build` with `vars`, started, its output piped.
    fn spawn_with(&self, env: &DevEnv, vars: &[(&str, &str)]) -> Child {
        self.command(env, vars)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting build")
    }

    /// Nothing of the daemon is left: no process mentions this run's TMPDIR (which every
    /// path of its daemon is under) or this run's `markers`, and TMPDIR is empty (no
    /// `kiln-buildkitd-*`, no rootlesskit state).
    fn assert_nothing_left(&self, markers: &[&str]) {
        let tmp = self.tmp.path().display().to_string();
        let mut needles = vec![tmp.as_str()];
        needles.extend(markers);
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut left = processes_mentioning(&needles);
        while !left.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            left = processes_mentioning(&needles);
        }
        assert!(left.is_empty(), "processes left running: {left:#?}");
        let entries: Vec<String> = std::fs::read_dir(self.tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(entries.is_empty(), "left in TMPDIR: {entries:?}");
    }
}

/// Live processes whose command line contains any of `needles`.
fn processes_mentioning(needles: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let zombie = std::fs::read_to_string(entry.path().join("stat"))
            .map(|s| s.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')))
            .unwrap_or(true);
        if !zombie && needles.iter().any(|n| cmdline.contains(n)) {
            found.push(format!("{}: {cmdline}", name.to_string_lossy()));
        }
    }
    found
}

fn wait_with_output(child: Child) -> Outcome {
    let out = child.wait_with_output().unwrap();
    Outcome {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn builds_with_its_own_daemon(who: As) {
    let env = dev_env_or_skip!();
    // chown needs the subordinate ids: it fails for a uid the user namespace does not map.
    let dockerfile = format!("{}RUN touch /owned && chown 1234:1234 /owned && id -u > /uid\n", from_busybox(env));
    let Some(run) = Run::new(env, who, &dockerfile) else { return };
    let out = wait_with_output(run.spawn(env));
    out.success();
    let started = out.stderr.lines().find(|l| l.starts_with("build: started ")).unwrap_or_default().to_string();
    match who {
        As::Root => assert!(started.starts_with("build: started buildkitd (as root)"), "{}", out.stderr),
        As::Rootless => {
            assert!(started.starts_with("build: started rootlesskit buildkitd (rootless"), "{}", out.stderr);
            assert!(!started.contains("subuid"), "the account has a range: {started}");
        }
    }
    let digest = std::fs::read_to_string(run.work.path().join("image/digest")).unwrap();
    assert!(digest.starts_with("sha256:"), "{digest}");
    assert!(run.work.path().join("image/image.tar").metadata().unwrap().len() > 0);
    run.assert_nothing_left(&[]);
    // Nothing outside its folder: the trace socket's default place stays unused.
    assert!(!Path::new("/run/buildkit/otel-grpc.sock").exists(), "buildkitd wrote to /run/buildkit");
}

#[test]
fn as_root_it_starts_the_real_buildkitd() {
    builds_with_its_own_daemon(As::Root);
}

#[test]
fn rootless_it_starts_the_real_buildkitd_under_rootlesskit() {
    builds_with_its_own_daemon(As::Rootless);
}

/// SIGTERM to `build` `during` the RUN step (2 s after its sleep appears) or while the
/// daemon starts (300 ms in).
fn interrupted(who: As, during: &str) {
    let env = dev_env_or_skip!();
    // A sleep under a name of its own, so the test can look for it in the process table.
    let marker = unique_repo("sleeper").replace('/', "-");
    let dockerfile = format!(
        "{}RUN mkdir /{marker} && ln -s /bin/busybox /{marker}/sleep && /{marker}/sleep 60\n",
        from_busybox(env)
    );
    let Some(run) = Run::new(env, who, &dockerfile) else { return };
    let mut child = run.spawn(env);
    let pid = child.id();
    let started = Instant::now();
    if during == "the build" {
        // Until the sleep runs (it is only in the process table once the RUN started).
        while processes_mentioning(&[&format!("/{marker}/sleep 60")]).is_empty() {
            assert!(started.elapsed() < Duration::from_secs(60), "the RUN never started");
            assert!(child.try_wait().unwrap().is_none(), "build ended before the RUN: {:?}", child.wait());
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_secs(2));
    } else {
        // While the daemon starts: its folder exists, it does not answer yet.
        std::thread::sleep(Duration::from_millis(300));
    }
    let signalled = Instant::now();
    let status = Command::new("kill").arg("-TERM").arg(pid.to_string()).status().unwrap();
    assert!(status.success());
    let out = wait_with_output(child);
    let took = signalled.elapsed();
    out.failure();
    assert!(took < Duration::from_secs(2), "build took {took:?} to stop after SIGTERM\n{}", out.stderr);
    assert!(out.stderr.trim_end().ends_with("build: terminated"), "{}", out.stderr);
    assert!(!run.work.path().join("image/image.tar").exists());
    run.assert_nothing_left(&[&marker]);
}

#[test]
fn as_root_sigterm_during_a_run_stops_everything_within_2s() {
    interrupted(As::Root, "the build");
}

#[test]
fn rootless_sigterm_during_a_run_stops_everything_within_2s() {
    interrupted(As::Rootless, "the build");
}

#[test]
fn as_root_sigterm_while_the_daemon_starts_leaves_nothing() {
    interrupted(As::Root, "start-up");
}

#[test]
fn rootless_sigterm_while_the_daemon_starts_leaves_nothing() {
    interrupted(As::Rootless, "start-up");
}

// BuildKit's state kept in the task's cache folder.

/// A RUN step that runs again on every build (its `RUN_ID` changes) and appends it to a
/// cache mount, then copies what the mount holds into the image as `/log`.
fn cache_mount_dockerfile(env: &DevEnv) -> String {
    format!(
        "{}ARG RUN_ID\nRUN --mount=type=cache,target=/var/cache/x echo $RUN_ID >> /var/cache/x/log && cp /var/cache/x/log /log\n",
        from_busybox(env)
    )
}

/// `/log` of the image the last build of `run` unpacked.
fn built_log(run: &Run) -> String {
    std::fs::read_to_string(run.work.path().join("image/rootfs/log")).unwrap()
}

fn cache_mounts_survive(who: As) {
    let env = dev_env_or_skip!();
    let Some(run) = Run::new(env, who, &cache_mount_dockerfile(env)) else { return };
    let run = run.with_cache(env);
    let build = |id: &str, more: &[(&str, &str)]| {
        let mut vars = vec![("BUILD_ARG_RUN_ID", id), ("UNPACK_ROOTFS", "true")];
        vars.extend(more);
        let out = run.build(env, &vars);
        out.success();
        out
    };
    let first = build("first", &[]);
    assert!(first.stderr.contains("build: BuildKit state kept in cache/buildkit: "), "{}", first.stderr);
    assert!(first.stderr.contains(" is ready (snapshotter "), "{}", first.stderr);
    assert_eq!(built_log(&run), "first\n");
    build("second", &[]);
    assert_eq!(built_log(&run), "first\nsecond\n", "the second build sees the first one's line");
    // NO_CACHE: a state of its own, empty; the kept one is left as it was.
    let ignored = build("third", &[("NO_CACHE", "true")]);
    assert!(!ignored.stderr.contains("BuildKit state kept in"), "{}", ignored.stderr);
    assert_eq!(built_log(&run), "third\n");
    build("fourth", &[]);
    assert_eq!(built_log(&run), "first\nsecond\nfourth\n");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.work.path().join("cache/buildkit/state.json")).unwrap()).unwrap();
    assert_eq!(state["rootless"], who == As::Rootless, "{state}");
    run.assert_nothing_left(&[]);
}

#[test]
fn as_root_cache_mounts_survive_to_the_next_build() {
    cache_mounts_survive(As::Root);
}

#[test]
fn rootless_cache_mounts_survive_to_the_next_build() {
    cache_mounts_survive(As::Rootless);
}

/// Bytes under `dir`, as `du` counts them.
fn disk_usage(dir: &Path) -> u64 {
    let out = Command::new("du").arg("-sb").arg(dir).output().unwrap();
    assert!(out.status.success(), "du {}", dir.display());
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn a_kept_state_past_its_budget_ends_the_next_build_under_it() {
    let env = dev_env_or_skip!();
    let mib = 1 << 20;
    // 90 MiB of layers and cache mount that do not compress.
    let dockerfile = format!(
        "{}ARG RUN_ID\nRUN head -c 31457280 /dev/urandom > /a\nRUN head -c 31457280 /dev/urandom > /b\n\
         RUN --mount=type=cache,target=/c head -c 31457280 /dev/urandom > /c/c && echo $RUN_ID\n",
        from_busybox(env)
    );
    let Some(run) = Run::new(env, As::Root, &dockerfile) else { return };
    let run = run.with_cache(env);
    let state = run.work.path().join("cache/buildkit");
    run.build(env, &[("BUILD_ARG_RUN_ID", "1")]).success();
    let filled = disk_usage(&state);
    assert!(filled > 90 * mib, "the state holds {filled} bytes");
    // A smaller budget now: pruned before the build, and again after it.
    let out = run.build(env, &[("BUILD_ARG_RUN_ID", "2"), ("BUILDKIT_CACHE_MAX_SIZE", "20MB")]);
    out.success();
    let before_build = out.stderr.split("load build definition").next().unwrap();
    assert!(before_build.contains("of its 20.0 MiB budget ("), "no prune before the build:\n{}", out.stderr);
    assert!(before_build.contains(" pruned)"), "{}", out.stderr);
    let after = disk_usage(&state);
    assert!(after <= 20 * mib, "the state holds {after} bytes, over its 20 MiB budget\n{}", out.stderr);
    let e = run.build(env, &[("BUILDKIT_CACHE_MAX_SIZE", "lots")]);
    e.failure();
    assert!(e.stderr.contains("BUILDKIT_CACHE_MAX_SIZE: \"lots\""), "{}", e.stderr);
}

#[test]
fn two_builds_at_once_on_one_cache_folder_both_succeed() {
    let env = dev_env_or_skip!();
    let dockerfile = format!("{}ARG RUN_ID\nRUN echo $RUN_ID && sleep 3\n", from_busybox(env));
    let Some(first) = Run::new(env, As::Root, &dockerfile) else { return };
    let first = first.with_cache(env);
    let Some(second) = Run::new(env, As::Root, &dockerfile) else { return };
    // Concourse may hand the same cache to two builds of a job on one worker.
    std::os::unix::fs::symlink(first.work.path().join("cache"), second.work.path().join("cache")).unwrap();
    let one = first.spawn_with(env, &[("BUILD_ARG_RUN_ID", "one")]);
    let record = first.work.path().join("cache/buildkit/state.json");
    let started = Instant::now();
    while !record.exists() {
        assert!(started.elapsed() < Duration::from_secs(30), "the first build never took the state");
        std::thread::sleep(Duration::from_millis(20));
    }
    let two = second.build(env, &[("BUILD_ARG_RUN_ID", "two")]);
    let one = wait_with_output(one);
    one.success();
    two.success();
    assert!(!one.stderr.contains("warning"), "{}", one.stderr);
    assert!(two.stderr.contains("cache/buildkit is in use by another build: this one starts cold"), "{}", two.stderr);
    assert!(!two.stderr.contains("BuildKit state kept in"), "{}", two.stderr);
    first.assert_nothing_left(&[]);
    second.assert_nothing_left(&[]);
    // The first build's state is whole: the next build uses it.
    let next = first.build(env, &[("BUILD_ARG_RUN_ID", "one")]);
    next.success();
    assert!(!next.stderr.contains("warning"), "{}", next.stderr);
    assert!(progress_step(&next.stderr, "RUN echo one").contains("CACHED"), "{}", next.stderr);
}

fn damaged_states_are_moved_aside(who: As) {
    let env = dev_env_or_skip!();
    let Some(run) = Run::new(env, who, &cache_mount_dockerfile(env)) else { return };
    let run = run.with_cache(env);
    let state = run.work.path().join("cache/buildkit");
    let damage = || {
        let mut truncated = 0;
        for db in ["cache.db", "history.db"] {
            let path = state.join("root").join(db);
            if path.exists() {
                std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(100).unwrap();
                truncated += 1;
            }
        }
        assert!(truncated > 0, "no database in {}", state.display());
    };
    let vars = [("BUILD_ARG_RUN_ID", "1"), ("UNPACK_ROOTFS", "true")];
    run.build(env, &vars).success();
    for round in 0..2 {
        damage();
        let out = run.build(env, &vars);
        out.success();
        assert!(out.stderr.contains("cannot be used (buildkitd exited"), "round {round}:\n{}", out.stderr);
        assert!(out.stderr.contains("moved it to cache/buildkit/aside; this build starts cold"), "{}", out.stderr);
        assert_eq!(built_log(&run), "1\n", "cold: the cache mount starts empty");
        assert_eq!(std::fs::metadata(state.join("aside/cache.db")).unwrap().len(), 100, "the damaged one is aside");
    }
    // Only the last damaged state is kept: the older one was removed (a rootless one from
    // inside a user namespace, as its files belong to its ids).
    let names: Vec<String> =
        std::fs::read_dir(&state).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().all(|n| ["aside", "lock", "root", "state.json"].contains(&n.as_str())), "{names:?}");
    run.build(env, &[("BUILD_ARG_RUN_ID", "2"), ("UNPACK_ROOTFS", "true")]).success();
    assert_eq!(built_log(&run), "1\n2\n", "the fresh state is kept from there on");
    run.assert_nothing_left(&[]);
}

#[test]
fn as_root_a_damaged_state_is_moved_aside_and_the_build_goes_on_cold() {
    damaged_states_are_moved_aside(As::Root);
}

#[test]
fn rootless_a_damaged_state_is_moved_aside_and_the_build_goes_on_cold() {
    damaged_states_are_moved_aside(As::Rootless);
}

#[test]
fn a_rebuild_in_a_new_task_folder_is_sent_only_what_changed() {
    let env = dev_env_or_skip!();
    let Some(first) = Run::new(env, As::Root, &format!("{}COPY ctx /x\n", from_busybox(env))) else { return };
    let first = first.with_cache(env);
    let big = "x".repeat(1 << 20);
    write_files(first.work.path(), &[("ctx/big", &big), ("ctx/small", "one")]);
    first.build(env, &[]).success();
    // Concourse gives every build a new folder, with the cache the worker kept.
    let Some(second) = Run::new(env, As::Root, &format!("{}COPY ctx /x\n", from_busybox(env))) else { return };
    let copied = Command::new("cp")
        .arg("-a")
        .arg(first.work.path().join("cache"))
        .arg(first.work.path().join("ctx"))
        .arg(second.work.path())
        .status()
        .unwrap();
    assert!(copied.success());
    write_files(second.work.path(), &[("ctx/small", "two")]);
    let out = second.build(env, &[]);
    out.success();
    assert!(out.stderr.contains("build: context: sent 1 of 3 entries, 3 bytes"), "{}", out.stderr);
}

#[test]
fn network_host_works_on_the_daemon_build_starts() {
    let env = dev_env_or_skip!();
    let dockerfile = format!("{}RUN cat /proc/net/tcp > /tcp\n", from_busybox(env));
    let Some(run) = Run::new(env, As::Root, &dockerfile) else { return };
    // The daemon build starts allows the network.host entitlement the build asks for
    // (without --allow-insecure-entitlement the build fails: tried by hand). Having no CNI,
    // its default network is the host's too: the entitlement is what this shows.
    let out = run.build(env, &[("NETWORK", "host"), ("UNPACK_ROOTFS", "true")]);
    out.success();
    let port: u16 = env.registries.plain.addr.rsplit(':').next().unwrap().parse().unwrap();
    let tcp = std::fs::read_to_string(run.work.path().join("image/rootfs/tcp")).unwrap();
    assert!(
        tcp.contains(&format!("0100007F:{port:04X} 00000000:0000 0A")),
        "the host's sockets are not in view:\n{tcp}"
    );
}
