//! The `buildkitd` that `build` starts when `BUILDKIT_HOST` is not set: the command line and
//! config it is given, the bounded wait, the log on failure, and that the process and its
//! folder are gone afterwards.
//!
//! These tests put a stand-in named `buildkitd` first on PATH: a shell script that records
//! the arguments and config file it was given (which a real daemon cannot show), or never
//! answers, or exits at once, and otherwise becomes `kiln-testenv buildkit-relay` on the
//! `--addr` socket, joining connections to the dev engine's BuildKit. The real buildkitd,
//! spawned as root and rootless and interrupted, is tested in `spawned.rs`.

use std::path::Path;

use kiln_tests::dev_env_or_skip;
use kiln_tests::harness::{DevEnv, Outcome, bin, command, run};

const STAND_IN: &str = r#"#!/bin/sh
# A stand-in for buildkitd (see tests/tests/build/daemon.rs).
echo $$ > "$STANDIN_DIR/pid"
printf '%s\n' "$@" > "$STANDIN_DIR/args"
while [ $# -gt 0 ]; do
  case "$1" in
    --addr) addr=$2; shift ;;
    --config) cp "$2" "$STANDIN_DIR/config.toml"; shift ;;
  esac
  shift
done
case "$STANDIN_MODE" in
  silent) echo "stand-in: never listening" >&2; exec sleep 600 ;;
  exit) echo "stand-in: cannot start: no runc" >&2; exit 3 ;;
esac
echo "stand-in: relaying $addr" >&2
exec "$RELAY" buildkit-relay "${addr#unix://}" "$DOCKER_SOCK"
"#;

struct StandIn {
    dir: tempfile::TempDir,
}

impl StandIn {
    fn new() -> Self {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("bin/buildkitd");
        std::fs::create_dir_all(script.parent().unwrap()).unwrap();
        std::fs::write(&script, STAND_IN).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        StandIn { dir }
    }

    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    /// `build` in `work` with the stand-in first on PATH and BUILDKIT_HOST unset.
    fn build(&self, env: &DevEnv, work: &Path, mode: &str, vars: &[(&str, &str)]) -> Outcome {
        let mut cmd = command("kiln-build");
        cmd.current_dir(work)
            .env("PATH", format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", self.dir.path().join("bin").display()))
            .env("TMPDIR", self.dir.path())
            .env("STANDIN_DIR", self.dir.path())
            .env("STANDIN_MODE", mode)
            .env("RELAY", bin("kiln-testenv"))
            .env("DOCKER_SOCK", &env.docker.socket);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        run(cmd, b"")
    }

    /// The stand-in's process is gone and `build` left no folder in TMPDIR.
    fn assert_cleaned_up(&self) {
        let pid = self.file("pid");
        let pid = pid.trim();
        assert!(!pid.is_empty(), "the stand-in never ran");
        let alive =
            std::fs::read_to_string(format!("/proc/{pid}/stat")).map(|stat| !stat.contains(") Z ")).unwrap_or(false);
        assert!(!alive, "buildkitd (pid {pid}) still runs");
        let left: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("kiln-buildkitd-"))
            .collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }
}

fn workdir(env: &DevEnv) -> tempfile::TempDir {
    let work = tempfile::tempdir().unwrap();
    let dockerfile =
        format!("FROM {}/library/busybox:latest\nRUN echo started-here > /where\n", env.registries.plain.addr);
    std::fs::write(work.path().join("Dockerfile"), dockerfile).unwrap();
    work
}

#[test]
fn build_starts_configures_and_stops_its_own_daemon() {
    let env = dev_env_or_skip!();
    let work = workdir(env);
    let standin = StandIn::new();
    let out = standin.build(
        env,
        work.path(),
        "relay",
        &[
            ("REGISTRY_MIRRORS", "mirror.example.com, mirror2.example.com"),
            ("BUILDKIT_EXTRA_CONFIG", "[registry.\"ghcr.io\"]\nmirrors = [\"ghcr-mirror.example.com\"]\n"),
            ("DEBUG", "true"),
        ],
    );
    out.success();
    assert!(out.stderr.contains("build: started buildkitd (as root) at unix://"), "{}", out.stderr);
    assert!(work.path().join("image/image.tar").is_file());

    let args: Vec<String> = standin.file("args").lines().map(String::from).collect();
    let flag = |name: &str| args.iter().position(|a| a == name).map(|i| args[i + 1].clone());
    assert!(flag("--addr").unwrap().starts_with(&format!("unix://{}", standin.dir.path().display())), "{args:?}");
    assert!(flag("--root").is_some() && flag("--config").is_some(), "{args:?}");
    // Every path it would default under /run or /var/lib is in its own folder.
    let own = standin.dir.path().display().to_string();
    for name in ["--root", "--config", "--otel-socket-path"] {
        assert!(flag(name).is_some_and(|p| p.starts_with(&own)), "{name} outside {own}: {args:?}");
    }
    assert!(args.contains(&"--containerd-worker=false".to_string()), "{args:?}");
    assert!(args.contains(&"--debug".to_string()), "{args:?}");
    let config: toml::Table = standin.file("config.toml").parse().unwrap();
    let mirrors = |registry: &str| -> Vec<String> {
        config["registry"][registry]["mirrors"].as_array().unwrap().iter().map(|m| m.as_str().unwrap().into()).collect()
    };
    assert_eq!(mirrors("docker.io"), ["mirror.example.com", "mirror2.example.com"]);
    assert_eq!(mirrors("ghcr.io"), ["ghcr-mirror.example.com"]);
    standin.assert_cleaned_up();
}

#[test]
fn a_daemon_that_never_answers_is_given_up_on_with_its_log() {
    let env = dev_env_or_skip!();
    let work = workdir(env);
    let standin = StandIn::new();
    let started = std::time::Instant::now();
    let out = standin.build(env, work.path(), "silent", &[("BUILDKIT_START_TIMEOUT", "2")]);
    out.failure();
    assert!(started.elapsed().as_secs() < 20, "took {:?}", started.elapsed());
    assert!(out.stderr.contains("buildkitd did not answer within 2 s"), "{}", out.stderr);
    assert!(out.stderr.contains("stand-in: never listening"), "the log tail: {}", out.stderr);
    assert!(!work.path().join("image/image.tar").exists());
    standin.assert_cleaned_up();
}

#[test]
fn a_daemon_that_exits_says_why() {
    let env = dev_env_or_skip!();
    let work = workdir(env);
    let standin = StandIn::new();
    let out = standin.build(env, work.path(), "exit", &[]);
    out.failure();
    assert!(out.stderr.contains("buildkitd exited (exit status: 3) before it answered"), "{}", out.stderr);
    assert!(out.stderr.contains("stand-in: cannot start: no runc"), "{}", out.stderr);
    standin.assert_cleaned_up();
}

#[test]
fn bad_daemon_params_and_a_missing_buildkitd_are_named() {
    let env = dev_env_or_skip!();
    let work = workdir(env);
    let standin = StandIn::new();
    let out = standin.build(env, work.path(), "relay", &[("BUILDKIT_EXTRA_CONFIG", "[registry\nbroken")]);
    out.failure();
    assert!(out.stderr.contains("BUILDKIT_EXTRA_CONFIG: not valid TOML"), "{}", out.stderr);
    assert!(standin.file("pid").is_empty(), "buildkitd was started anyway");

    let out = standin.build(env, work.path(), "relay", &[("BUILDKIT_START_TIMEOUT", "soon")]);
    out.failure();
    assert!(out.stderr.contains("BUILDKIT_START_TIMEOUT: \"soon\" is not a number of seconds"), "{}", out.stderr);

    // No buildkitd anywhere, and nothing on the default socket.
    let mut cmd = command("kiln-build");
    cmd.current_dir(work.path()).env("PATH", "/nonexistent");
    let out = run(cmd, b"");
    out.failure();
    assert!(out.stderr.contains("BUILDKIT_HOST is not set and buildkitd is not on PATH"), "{}", out.stderr);
}
