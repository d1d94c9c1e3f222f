//! The `buildkitd` that `build` starts itself when `BUILDKIT_HOST` is not set, as
//! oci-build-task does: directly as root, under `rootlesskit` otherwise. One job: start it
//! with a generated config, wait until it answers, and stop it again.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use crate::{info, transport};

/// How the daemon is started.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// Where its state, socket, config and log live; removed when it stops.
    pub dir: PathBuf,
    /// `REGISTRY_MIRRORS`: mirrors for `docker.io`.
    pub mirrors: Vec<String>,
    /// `BUILDKIT_EXTRA_CONFIG`: more buildkitd TOML, merged over what kiln generates.
    pub extra_config: Option<String>,
    /// `DEBUG`: buildkitd logs at debug level.
    pub debug: bool,
    /// How long to wait for it to answer.
    pub start_timeout: Duration,
}

/// Why the daemon could not be started.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(
        "BUILDKIT_HOST is not set and buildkitd is not on PATH: point BUILDKIT_HOST at a running BuildKit \
         (see build --help), or run in kiln's task image, which carries buildkitd"
    )]
    NoBuildkitd,
    #[error("BUILDKIT_EXTRA_CONFIG: not valid TOML: {0}")]
    ExtraConfig(String),
    #[error("REGISTRY_MIRRORS: {0:?} is not a registry host")]
    Mirror(String),
    #[error("cannot run buildkitd rootless here: {0}")]
    Rootless(String),
    #[error("preparing {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("starting {program}: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("buildkitd exited ({status}) before it answered; the end of its log:\n{log}")]
    Exited { status: String, log: String },
    #[error("buildkitd did not answer within {secs} s; the end of its log:\n{log}")]
    Timeout { secs: u64, log: String },
}

/// A running daemon. Call [`Buildkitd::stop`]; dropping it kills the process too.
pub struct Buildkitd {
    child: Child,
    dir: PathBuf,
    rootless: bool,
    /// Its address, as `BUILDKIT_HOST` would say it.
    pub host: String,
}

/// The TOML kiln writes for buildkitd: the mirrors, then the user's extra config merged over it.
pub fn config_toml(mirrors: &[String], extra: Option<&str>) -> Result<String, DaemonError> {
    let mut table = toml::Table::new();
    if !mirrors.is_empty() {
        for m in mirrors {
            if m.is_empty() || m.contains(char::is_whitespace) || m.contains('"') {
                return Err(DaemonError::Mirror(m.clone()));
            }
        }
        let mirrors: Vec<toml::Value> = mirrors.iter().map(|m| toml::Value::String(m.clone())).collect();
        let mut hub = toml::Table::new();
        hub.insert("mirrors".into(), toml::Value::Array(mirrors));
        let mut registry = toml::Table::new();
        registry.insert("docker.io".into(), toml::Value::Table(hub));
        table.insert("registry".into(), toml::Value::Table(registry));
    }
    if let Some(extra) = extra {
        let extra: toml::Table = extra.parse().map_err(|e: toml::de::Error| DaemonError::ExtraConfig(e.to_string()))?;
        merge(&mut table, extra);
    }
    Ok(toml::to_string(&table).expect("a toml::Table always serializes"))
}

/// Tables merge key by key; anything else in `over` replaces what `base` has.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// What stops a rootless buildkitd from running here, said plainly, or `Ok` with a note
/// on what it will run with.
pub fn rootless_check() -> Result<String, DaemonError> {
    let read = |p: &str| std::fs::read_to_string(p).ok().map(|s| s.trim().to_string());
    if read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        return Err(DaemonError::Rootless(
            "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone=0); \
             enable them on the worker, run the task as root, or set BUILDKIT_HOST"
                .into(),
        ));
    }
    if read("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        return Err(DaemonError::Rootless(
            "user namespaces are disabled (user.max_user_namespaces=0); run the task as root or set BUILDKIT_HOST"
                .into(),
        ));
    }
    if which("rootlesskit").is_none() {
        return Err(DaemonError::Rootless(
            "rootlesskit is not on PATH; kiln's task image carries it (or run as root, or set BUILDKIT_HOST)".into(),
        ));
    }
    let mut notes = Vec::new();
    notes.push(if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() { "cgroup v2" } else { "cgroup v1" });
    if which("newuidmap").is_none() || which("newgidmap").is_none() {
        notes.push("no newuidmap/newgidmap: only one user id inside builds (RUN steps that switch USER will fail)");
    } else if !has_subuid_range() {
        notes.push("no /etc/subuid range for this user: only one user id inside builds");
    }
    Ok(notes.join("; "))
}

fn has_subuid_range() -> bool {
    // SAFETY: getuid cannot fail and has no preconditions.
    let uid = unsafe { libc::getuid() }.to_string();
    let name = std::env::var("USER").unwrap_or_default();
    std::fs::read_to_string("/etc/subuid")
        .map(|text| text.lines().any(|l| l.split(':').next().is_some_and(|owner| owner == uid || owner == name)))
        .unwrap_or(false)
}

/// The first executable `program` on PATH.
pub fn which(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

impl Buildkitd {
    /// Starts buildkitd and waits until it answers `Info`.
    pub async fn start(config: &DaemonConfig) -> Result<Self, DaemonError> {
        if which("buildkitd").is_none() {
            return Err(DaemonError::NoBuildkitd);
        }
        let toml = config_toml(&config.mirrors, config.extra_config.as_deref())?;
        // SAFETY: geteuid cannot fail and has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let note = if root { String::new() } else { rootless_check()? };

        let dir = &config.dir;
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| DaemonError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let config_path = dir.join("buildkitd.toml");
        std::fs::write(&config_path, toml).map_err(io(&config_path))?;
        let log_path = dir.join("buildkitd.log");
        let log = std::fs::File::create(&log_path).map_err(io(&log_path))?;
        let log_err = log.try_clone().map_err(io(&log_path))?;
        let socket = dir.join("buildkitd.sock");
        let host = format!("unix://{}", socket.display());

        let mut args: Vec<String> = vec![
            "--root".into(),
            dir.join("root").display().to_string(),
            "--addr".into(),
            host.clone(),
            "--config".into(),
            config_path.display().to_string(),
        ];
        if config.debug {
            args.push("--debug".into());
        }
        let mut command = if root {
            Command::new("buildkitd")
        } else {
            // As BuildKit's rootless image runs it: a user namespace from rootlesskit, and no
            // new PID namespace per step, which an unprivileged container cannot mount /proc for.
            // Rootless buildkitd puts its other sockets under XDG_RUNTIME_DIR (else /run,
            // which an unprivileged user cannot write): keep them in its folder too.
            let run = dir.join("run");
            std::fs::create_dir_all(&run).map_err(io(&run))?;
            let mut c = Command::new("rootlesskit");
            c.arg("buildkitd").env("XDG_RUNTIME_DIR", &run);
            args.push("--oci-worker-no-process-sandbox".into());
            c
        };
        command.args(&args).stdin(Stdio::null()).stdout(log).stderr(log_err).kill_on_drop(true);
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to kill the daemon if
        // build itself dies without stopping it.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let program = if root { "buildkitd" } else { "rootlesskit buildkitd" };
        let child = command.spawn().map_err(|source| DaemonError::Spawn { program: program.into(), source })?;
        eprintln!(
            "build: started {program} ({}{}) at {host}",
            if root { "as root" } else { "rootless" },
            if note.is_empty() { String::new() } else { format!("; {note}") }
        );
        let mut daemon = Buildkitd { child, dir: dir.clone(), rootless: !root, host };
        if let Err(e) = daemon.wait_ready(&socket, config.start_timeout, &log_path).await {
            daemon.stop().await;
            return Err(e);
        }
        Ok(daemon)
    }

    async fn wait_ready(&mut self, socket: &Path, timeout: Duration, log: &Path) -> Result<(), DaemonError> {
        let started = Instant::now();
        let address = transport::Address::Unix(socket.to_path_buf());
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(DaemonError::Exited { status: status.to_string(), log: log_tail(log) });
            }
            if socket.exists()
                && let Ok(channel) = transport::connect(&self.host, &address, None).await
                && info::query(channel).await.is_ok()
            {
                return Ok(());
            }
            if started.elapsed() >= timeout {
                return Err(DaemonError::Timeout { secs: timeout.as_secs(), log: log_tail(log) });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the daemon: SIGTERM, up to ten seconds to finish, then SIGKILL; then removes
    /// its folder (state, socket, config and log).
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            // SAFETY: signalling our own child, which has not been reaped yet.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
            if tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await.is_err() {
                let _ = self.child.kill().await;
            }
        }
        let _ = self.child.wait().await;
        if self.rootless && std::fs::remove_dir_all(&self.dir).is_err() {
            // Its state belongs to the user namespace's ids, which only that namespace may delete.
            let _ = Command::new("rootlesskit")
                .arg("rm")
                .arg("-rf")
                .arg(&self.dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await;
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!("build: warning: could not remove buildkitd's folder {}: {e}", self.dir.display());
        }
    }
}

/// The last 40 lines of the daemon's log.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| format!("(cannot read {}: {e})", path.display()));
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(40)..].join("\n");
    if tail.is_empty() { "(empty)".into() } else { tail }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_and_extra_config_merge() {
        let toml = config_toml(
            &["mirror.example.com".into()],
            Some("debug = true\n[registry.\"docker.io\"]\nhttp = true\n[registry.\"ghcr.io\"]\nmirrors = [\"m2\"]\n"),
        )
        .unwrap();
        let parsed: toml::Table = toml.parse().unwrap();
        assert_eq!(parsed["debug"].as_bool(), Some(true));
        let hub = &parsed["registry"]["docker.io"];
        assert_eq!(hub["mirrors"].as_array().unwrap()[0].as_str(), Some("mirror.example.com"));
        assert_eq!(hub["http"].as_bool(), Some(true));
        assert_eq!(parsed["registry"]["ghcr.io"]["mirrors"][0].as_str(), Some("m2"));
        assert_eq!(config_toml(&[], None).unwrap(), "");
    }

    #[test]
    fn bad_config_names_the_param() {
        let e = config_toml(&[], Some("[registry\nx = ")).unwrap_err().to_string();
        assert!(e.starts_with("BUILDKIT_EXTRA_CONFIG: not valid TOML"), "{e}");
        let e = config_toml(&["a b".into()], None).unwrap_err().to_string();
        assert!(e.starts_with("REGISTRY_MIRRORS: "), "{e}");
    }
}
