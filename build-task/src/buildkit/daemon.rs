//! The `buildkitd` that `build` starts itself when `BUILDKIT_HOST` is not set, as
//! oci-build-task does: directly as root, under `rootlesskit` otherwise. One job: start it
//! with a generated config, wait until it answers, and stop it again.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use crate::buildkit::{info, transport};

/// How the daemon is started.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// Where its socket, config and log live, and its state unless `state` says otherwise;
    /// removed when it stops.
    pub dir: PathBuf,
    /// A state folder kept between builds ([`crate::buildkit::kept_state`]): buildkitd's `--root`,
    /// left in place when it stops.
    pub state: Option<PathBuf>,
    /// The state's budget in bytes: buildkitd's garbage collection keeps it under this
    /// while it runs (kiln also prunes to it before and after each build).
    pub gc_keep_bytes: Option<u64>,
    /// `REGISTRY_MIRRORS`: mirrors for `docker.io`.
    pub mirrors: Vec<String>,
    /// How to reach registries the build itself names (a put's own registry).
    pub registries: Vec<RegistryAccess>,
    /// Entitlements the build asks for (`network.host`): allowed with
    /// `--allow-insecure-entitlement`, since this daemon serves this build only.
    pub entitlements: Vec<String>,
    /// `BUILDKIT_EXTRA_CONFIG`: more buildkitd TOML, merged over what kiln generates.
    pub extra_config: Option<String>,
    /// `DEBUG`: buildkitd logs at debug level.
    pub debug: bool,
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
    socket: PathBuf,
    log: PathBuf,
    /// Its address, as `BUILDKIT_HOST` would say it.
    pub host: String,
}

/// How buildkitd reaches one registry: over plain HTTP, or trusting these CA files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryAccess {
    /// `host[:port]`.
    pub host: String,
    pub http: bool,
    pub ca_files: Vec<PathBuf>,
}

/// The TOML kiln writes for buildkitd: the mirrors, registries and garbage collection's
/// budget, then the user's extra config merged over it.
pub fn config_toml(
    mirrors: &[String],
    registries: &[RegistryAccess],
    gc_keep_bytes: Option<u64>,
    extra: Option<&str>,
) -> Result<String, DaemonError> {
    let mut table = toml::Table::new();
    if let Some(keep) = gc_keep_bytes {
        // buildkitd's default policy under this cap: easily remade data first, then
        // anything unused, oldest first. A bare number is bytes.
        let mut oci = toml::Table::new();
        oci.insert("gc".into(), toml::Value::Boolean(true));
        oci.insert("gckeepstorage".into(), toml::Value::Integer(i64::try_from(keep).unwrap_or(i64::MAX)));
        let mut worker = toml::Table::new();
        worker.insert("oci".into(), toml::Value::Table(oci));
        table.insert("worker".into(), toml::Value::Table(worker));
    }
    for access in registries {
        let mut host = toml::Table::new();
        if access.http {
            host.insert("http".into(), toml::Value::Boolean(true));
        }
        if !access.ca_files.is_empty() {
            let files = access.ca_files.iter().map(|f| toml::Value::String(f.to_string_lossy().into_owned()));
            host.insert("ca".into(), toml::Value::Array(files.collect()));
        }
        merge_registry(&mut table, &access.host, host);
    }
    if !mirrors.is_empty() {
        for m in mirrors {
            if m.is_empty() || m.contains(char::is_whitespace) || m.contains('"') {
                return Err(DaemonError::Mirror(m.clone()));
            }
        }
        let mirrors: Vec<toml::Value> = mirrors.iter().map(|m| toml::Value::String(m.clone())).collect();
        let mut hub = toml::Table::new();
        hub.insert("mirrors".into(), toml::Value::Array(mirrors));
        merge_registry(&mut table, "docker.io", hub);
    }
    if let Some(extra) = extra {
        let extra: toml::Table = extra.parse().map_err(|e: toml::de::Error| DaemonError::ExtraConfig(e.to_string()))?;
        merge(&mut table, extra);
    }
    Ok(toml::to_string(&table).expect("a toml::Table always serializes"))
}

/// Merges `settings` into `[registry."host"]` of `table`.
fn merge_registry(table: &mut toml::Table, host: &str, settings: toml::Table) {
    let mut registry = toml::Table::new();
    registry.insert(host.to_string(), toml::Value::Table(settings));
    let mut over = toml::Table::new();
    over.insert("registry".into(), toml::Value::Table(registry));
    merge(table, over);
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
    let account = Account::current();
    if which("newuidmap").is_none() || which("newgidmap").is_none() {
        notes.push("no newuidmap/newgidmap: only one user id inside builds (RUN steps that switch USER will fail)");
    } else if !has_subid_range("/etc/subuid", &account) || !has_subid_range("/etc/subgid", &account) {
        notes.push("no /etc/subuid and /etc/subgid range for this user: only one user id inside builds");
    }
    Ok(notes.join("; "))
}

/// The account build runs as: its uid, and its name from the password database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub uid: u32,
    pub name: Option<String>,
}

impl Account {
    /// Looked up by uid, never by `$USER` (which a clean environment does not have, and
    /// anyone can set).
    pub fn current() -> Self {
        let uid = rustix::process::getuid().as_raw();
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        Account { uid, name: name_in_passwd(&passwd, uid) }
    }
}

/// The name of `uid` in `/etc/passwd`'s text.
fn name_in_passwd(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id = fields.nth(1)?;
        (id.parse::<u32>().ok() == Some(uid) && !name.is_empty()).then(|| name.to_string())
    })
}

/// Whether `file` (`/etc/subuid` or `/etc/subgid`) gives `account` a range, by uid or name.
fn has_subid_range(file: &str, account: &Account) -> bool {
    !subid_ranges(file, account).is_empty()
}

/// The `start:count` ranges `file` (`/etc/subuid` or `/etc/subgid`) gives `account`: the
/// ids a rootless daemon's user namespace maps.
pub fn subid_ranges(file: &str, account: &Account) -> Vec<String> {
    std::fs::read_to_string(file).map(|text| ranges_listed(&text, account)).unwrap_or_default()
}

fn ranges_listed(text: &str, account: &Account) -> Vec<String> {
    let uid = account.uid.to_string();
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(owner, _)| *owner == uid || Some(*owner) == account.name.as_deref())
        .map(|(_, range)| range.trim().to_string())
        .collect()
}

/// The `buildkitd` on PATH's own account of its version (`buildkitd --version`), e.g.
/// `buildkitd github.com/moby/buildkit v0.13.2 <revision>`.
pub fn version() -> Result<String, DaemonError> {
    let program = which("buildkitd").ok_or(DaemonError::NoBuildkitd)?;
    let out = std::process::Command::new(&program)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|source| DaemonError::Spawn { program: format!("{} --version", program.display()), source })?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || text.is_empty() {
        return Err(DaemonError::Exited {
            status: format!("{} --version: {}", program.display(), out.status),
            log: text,
        });
    }
    Ok(text)
}

/// Whether this user may mount a new `/proc` in a PID namespace of its own, which BuildKit's
/// process sandbox (a PID namespace per RUN step) needs. Inside an unprivileged container
/// whose `/proc` is partly masked, the kernel refuses; buildkitd then runs steps beside
/// itself (`--oci-worker-no-process-sandbox`).
fn can_mount_proc() -> bool {
    std::process::Command::new("unshare")
        .args(["--user", "--map-root-user", "--pid", "--fork", "--mount", "--mount-proc", "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The first executable `program` on PATH.
pub fn which(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// How long buildkitd has to stop after SIGTERM before every process of it is killed.
const STOP_GRACE: Duration = Duration::from_millis(1500);

impl Buildkitd {
    /// Starts buildkitd and returns at once; [`Buildkitd::wait_ready`] waits until it answers.
    /// Every path buildkitd would otherwise default under `/run`, `/var/lib` or `$HOME` is
    /// inside `config.dir`, as root and rootless, so two daemons never share a file.
    pub fn spawn(config: &DaemonConfig) -> Result<Self, DaemonError> {
        if which("buildkitd").is_none() {
            return Err(DaemonError::NoBuildkitd);
        }
        let toml =
            config_toml(&config.mirrors, &config.registries, config.gc_keep_bytes, config.extra_config.as_deref())?;
        let root = rustix::process::geteuid().is_root();
        let mut note = if root { String::new() } else { rootless_check()? };

        let dir = &config.dir;
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| DaemonError::Io { path, source }
        };
        create_private_dir(dir).map_err(io(dir))?;
        let config_path = dir.join("buildkitd.toml");
        std::fs::write(&config_path, toml).map_err(io(&config_path))?;
        let log_path = dir.join("buildkitd.log");
        let log = std::fs::File::create(&log_path).map_err(io(&log_path))?;
        let log_err = log.try_clone().map_err(io(&log_path))?;
        let socket = dir.join("buildkitd.sock");
        let host = format!("unix://{}", socket.display());

        let state = config.state.clone().unwrap_or_else(|| dir.join("root"));
        let mut args: Vec<String> = vec![
            "--root".into(),
            state.display().to_string(),
            "--addr".into(),
            host.clone(),
            "--config".into(),
            config_path.display().to_string(),
            // Its trace socket defaults to /run/buildkit (or XDG_RUNTIME_DIR when it thinks
            // it is rootless): shared by every daemon on the machine, unwritable rootless.
            "--otel-socket-path".into(),
            dir.join("otel-grpc.sock").display().to_string(),
            // Never a containerd that happens to run on the worker: this daemon's own state only.
            "--containerd-worker=false".into(),
        ];
        if config.debug {
            args.push("--debug".into());
        }
        for entitlement in &config.entitlements {
            args.push(format!("--allow-insecure-entitlement={entitlement}"));
        }
        let mut command = if root {
            Command::new("buildkitd")
        } else {
            // As BuildKit's rootless image runs it: a user namespace from rootlesskit (its
            // state in our folder), and, where /proc can be mounted, a PID namespace of its
            // own, so that every process of the daemon ends with it.
            let run = dir.join("run");
            create_private_dir(&run).map_err(io(&run))?;
            let sandbox = can_mount_proc();
            let mut c = Command::new("rootlesskit");
            c.arg("--state-dir").arg(dir.join("rootlesskit"));
            if sandbox {
                c.arg("--pidns");
            }
            c.arg("buildkitd");
            // buildkitd applies its rootless defaults only when $USER is set and not root.
            let user = Account::current().name.unwrap_or_else(|| "kiln".into());
            c.env("USER", user)
                .env("XDG_RUNTIME_DIR", &run)
                .env("XDG_DATA_HOME", dir.join("data"))
                .env("XDG_CONFIG_HOME", dir.join("config"))
                .env("HOME", dir);
            args.insert(0, "--rootless".into());
            if !sandbox {
                // Without a /proc of its own a PID namespace would show runc the outer
                // namespace's processes under the inner one's numbers (runc then thinks a
                // finished step still runs), so there is none: [`Buildkitd::stop`] ends
                // every process below the daemon instead.
                args.push("--oci-worker-no-process-sandbox".into());
                note.push_str("; no process sandbox (cannot mount /proc here)");
            }
            c
        };
        command.args(&args).stdin(Stdio::null()).stdout(log).stderr(log_err).kill_on_drop(true);
        // SAFETY: the closure makes one system call (prctl, async-signal-safe) and allocates
        // nothing: it only asks the kernel to kill the daemon if build itself dies without
        // stopping it.
        unsafe {
            command.pre_exec(|| {
                rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
                    .map_err(std::io::Error::from)
            });
        }
        let program = if root { "buildkitd" } else { "rootlesskit buildkitd" };
        let child = command.spawn().map_err(|source| DaemonError::Spawn { program: program.into(), source })?;
        eprintln!(
            "build: started {program} ({}{}) at {host}",
            if root { "as root" } else { "rootless" },
            if note.is_empty() { String::new() } else { format!("; {note}") }
        );
        Ok(Buildkitd { child, dir: dir.clone(), rootless: !root, host, socket, log: log_path })
    }

    /// Waits until the daemon answers `Info`, or exits, or `timeout` passes; returns what
    /// it says about itself.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<info::DaemonInfo, DaemonError> {
        let started = Instant::now();
        let address = transport::Address::Unix(self.socket.clone());
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(DaemonError::Exited { status: status.to_string(), log: log_tail(&self.log) });
            }
            if self.socket.exists()
                && let Ok(channel) = transport::connect(&self.host, &address, None).await
                && let Ok(answer) = info::query(channel).await
            {
                return Ok(answer);
            }
            if started.elapsed() >= timeout {
                return Err(DaemonError::Timeout { secs: timeout.as_secs(), log: log_tail(&self.log) });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the daemon: SIGTERM, 1.5 s (`STOP_GRACE`) to finish, then SIGKILL to it and to every
    /// process it started; then removes its folder (sockets, config, log, and its state
    /// unless that is kept elsewhere).
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id().and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            if tokio::time::timeout(STOP_GRACE, self.child.wait()).await.is_err() {
                // Its descendants first (build steps, runc), while their parent still holds them.
                kill_tree(pid);
                let _ = self.child.kill().await;
            }
        }
        let _ = self.child.wait().await;
        if let Err(e) = remove_tree(&self.dir, self.rootless).await {
            eprintln!("build: warning: could not remove buildkitd's folder {}: {e}", self.dir.display());
        }
    }
}

/// Removes `path` and everything in it. A rootless daemon's state also holds files of the
/// user namespace's other ids, which only that namespace may delete: what this user cannot
/// remove is removed from inside one (`rootlesskit rm -rf`).
pub async fn remove_tree(path: &Path, rootless: bool) -> std::io::Result<()> {
    if rootless && std::fs::remove_dir_all(path).is_err() {
        let state = std::env::temp_dir().join(format!("kiln-rootlesskit-rm-{}", std::process::id()));
        let _ = Command::new("rootlesskit")
            .arg("--state-dir")
            .arg(&state)
            .arg("rm")
            .arg("-rf")
            .arg(path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
        let _ = std::fs::remove_dir_all(&state);
    }
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// A folder only this user can enter, made fresh: an existing one (or a link) is an error.
fn create_private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new().mode(0o700).create(path)
}

/// SIGKILL to every descendant of `pid`, found through `/proc/*/stat`'s parent ids, until
/// none is left (a process that forks while we look is found on the next pass).
fn kill_tree(pid: rustix::process::Pid) {
    for _ in 0..20 {
        let descendants = descendants_of(pid.as_raw_nonzero().get());
        if descendants.is_empty() {
            return;
        }
        for child in descendants {
            if let Some(child) = rustix::process::Pid::from_raw(child) {
                let _ = rustix::process::kill_process(child, rustix::process::Signal::KILL);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every live process below `root` in the process tree.
fn descendants_of(root: i32) -> Vec<i32> {
    let mut parents: Vec<(i32, i32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        if let Some((ppid, state)) = parent_and_state(&stat)
            && state != 'Z'
        {
            parents.push((pid, ppid));
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(parents.iter().filter(|(_, p)| *p == parent).map(|(pid, _)| *pid));
        i += 1;
    }
    found.remove(0);
    found
}

/// The parent pid and state letter from `/proc/PID/stat` (`pid (comm) S ppid …`; the
/// command may itself hold spaces and parentheses, so fields are read after the last `)`).
fn parent_and_state(stat: &str) -> Option<(i32, char)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((ppid, state))
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
        let registries = [
            RegistryAccess { host: "127.0.0.1:5000".into(), http: true, ca_files: vec![] },
            RegistryAccess { host: "ghcr.io".into(), http: false, ca_files: vec!["/run/ca.pem".into()] },
        ];
        let toml = config_toml(
            &["mirror.example.com".into()],
            &registries,
            None,
            Some("debug = true\n[registry.\"docker.io\"]\nhttp = true\n[registry.\"ghcr.io\"]\nmirrors = [\"m2\"]\n"),
        )
        .unwrap();
        let parsed: toml::Table = toml.parse().unwrap();
        assert_eq!(parsed["debug"].as_bool(), Some(true));
        let hub = &parsed["registry"]["docker.io"];
        assert_eq!(hub["mirrors"].as_array().unwrap()[0].as_str(), Some("mirror.example.com"));
        assert_eq!(hub["http"].as_bool(), Some(true));
        assert_eq!(parsed["registry"]["ghcr.io"]["mirrors"][0].as_str(), Some("m2"));
        assert_eq!(parsed["registry"]["ghcr.io"]["ca"][0].as_str(), Some("/run/ca.pem"), "merged, not replaced");
        assert_eq!(parsed["registry"]["127.0.0.1:5000"]["http"].as_bool(), Some(true));
        assert!(parsed["registry"]["127.0.0.1:5000"].get("ca").is_none());
        assert_eq!(config_toml(&[], &[], None, None).unwrap(), "");
        let gc: toml::Table = config_toml(&[], &[], Some(30_000_000), Some("[worker.oci]\nmax-parallelism = 2\n"))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(gc["worker"]["oci"]["gckeepstorage"].as_integer(), Some(30_000_000));
        assert_eq!(gc["worker"]["oci"]["gc"].as_bool(), Some(true));
        assert_eq!(gc["worker"]["oci"]["max-parallelism"].as_integer(), Some(2), "merged, not replaced");
    }

    #[test]
    fn the_account_name_comes_from_the_uid() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nkiln:x:1000:1000::/home/kiln:/bin/sh\nbad line\nother:x:1001:1001::/:/bin/sh\n";
        assert_eq!(name_in_passwd(passwd, 1000).as_deref(), Some("kiln"));
        assert_eq!(name_in_passwd(passwd, 0).as_deref(), Some("root"));
        assert_eq!(name_in_passwd(passwd, 4242), None);
        let kiln = Account { uid: 1000, name: Some("kiln".into()) };
        assert_eq!(ranges_listed("kiln:100000:65536\n", &kiln), ["100000:65536"]);
        assert_eq!(ranges_listed("1000:100000:65536\nkiln:200000:10\n", &kiln), ["100000:65536", "200000:10"]);
        assert!(ranges_listed("other:100000:65536\n10000:1:2\n", &kiln).is_empty());
        let nameless = Account { uid: 1000, name: None };
        assert!(ranges_listed("kiln:100000:65536\n", &nameless).is_empty());
    }

    #[test]
    fn stat_lines_give_parent_and_state() {
        assert_eq!(parent_and_state("42 (sleep) S 7 42 42 0"), Some((7, 'S')));
        assert_eq!(parent_and_state("43 (a ) b (c) Z 9 1"), Some((9, 'Z')));
        assert_eq!(parent_and_state("garbage"), None);
    }

    #[test]
    fn every_descendant_is_found_and_killed() {
        let mut shell =
            std::process::Command::new("sh").args(["-c", "sh -c 'sleep 30' & sleep 30 & wait"]).spawn().unwrap();
        let pid = rustix::process::Pid::from_raw(shell.id() as i32).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut found = Vec::new();
        while Instant::now() < deadline && found.len() < 2 {
            found = descendants_of(pid.as_raw_nonzero().get());
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(found.len() >= 2, "the shell's children: {found:?}");
        kill_tree(pid);
        for child in &found {
            let alive = std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|s| parent_and_state(&s))
                .is_some_and(|(_, state)| state != 'Z');
            assert!(!alive, "{child} still runs");
        }
        let _ = shell.kill();
        let _ = shell.wait();
    }

    #[test]
    fn bad_config_names_the_param() {
        let e = config_toml(&[], &[], None, Some("[registry\nx = ")).unwrap_err().to_string();
        assert!(e.starts_with("BUILDKIT_EXTRA_CONFIG: not valid TOML"), "{e}");
        let e = config_toml(&["a b".into()], &[], None, None).unwrap_err().to_string();
        assert!(e.starts_with("REGISTRY_MIRRORS: "), "{e}");
    }
}
