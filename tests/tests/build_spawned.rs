//! `build` with no `BUILDKIT_HOST`, starting the real `buildkitd` (built from Debian's
//! packages by `scripts/build-buildkitd`) itself: as root, and as an unprivileged user with a
//! subordinate id range under rootlesskit, each in a clean environment (`env -i`: no `USER`,
//! no `HOME`). What is checked: the build works, every path the daemon uses is inside its
//! own folder, and on SIGTERM — during a `RUN sleep 60` or while the daemon is starting —
//! `build` exits within 2 s with every process of the build gone and both its folder and
//! rootlesskit's removed.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kiln_tests::dev_env_or_skip;
use kiln_tests::harness::{DevEnv, Outcome, bin, from_busybox, unique_repo, write_files};

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
        self.command(env, &[])
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
