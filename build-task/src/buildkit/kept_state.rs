//! BuildKit's state kept between builds in the task's `cache` folder (Concourse keeps a
//! task's `caches` on the worker), when `build` starts its own `buildkitd`: its layers,
//! snapshots and `RUN --mount=type=cache` folders survive to the next build there, within
//! a budget (`BUILDKIT_CACHE_MAX_SIZE`). One job: decide whether the folder's state may be
//! used by this run, hold it (a lock: two builds never share one state), move a state
//! that cannot be used aside, and keep the daemon within the budget.
//!
//! ```text
//! cache/buildkit/lock        locked (flock) by the build whose daemon uses root/
//! cache/buildkit/state.json  who made root/: kiln's state format, BuildKit's version, the ids
//! cache/buildkit/root/       buildkitd --root
//! cache/buildkit/aside/      the last state that could not be used, kept for a look
//! ```

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use kiln_image::display::human;
use kiln_proto::moby::buildkit::v1::control_client::ControlClient;
use kiln_proto::moby::buildkit::v1::{DiskUsageRequest, PruneRequest};
use serde::{Deserialize, Serialize};
use tokio_stream::StreamExt as _;
use tonic::transport::Channel;

use crate::buildkit::daemon;

/// The budget when `BUILDKIT_CACHE_MAX_SIZE` is not set: 10 GB.
pub const DEFAULT_BUDGET: u64 = 10 << 30;

/// Bumped whenever what kiln keeps, or how, changes: a state of another format is moved aside.
const FORMAT: u32 = 1;

/// How long a prune or a usage query may take before the build goes on without it.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// Who made a state: it is used only by a daemon of the same kind, so the files it holds
/// have the owners that daemon expects (a rootless daemon's are the user namespace's ids).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub format: u32,
    /// `buildkitd --version`.
    pub buildkit: String,
    pub rootless: bool,
    pub uid: u32,
    /// A rootless daemon's subordinate id ranges (`/etc/subuid`, `/etc/subgid`).
    pub subuids: Vec<String>,
    pub subgids: Vec<String>,
}

impl Owner {
    /// This run: the buildkitd on PATH, run as this user.
    pub fn this_run() -> Result<Self, daemon::DaemonError> {
        let rootless = !rustix::process::geteuid().is_root();
        let account = daemon::Account::current();
        let (subuids, subgids) = if rootless {
            (daemon::subid_ranges("/etc/subuid", &account), daemon::subid_ranges("/etc/subgid", &account))
        } else {
            (Vec::new(), Vec::new())
        };
        Ok(Owner { format: FORMAT, buildkit: daemon::version()?, rootless, uid: account.uid, subuids, subgids })
    }

    /// What differs between the state's owner (`self`) and this run, in words.
    fn differences(&self, run: &Owner) -> Vec<String> {
        let mut out = Vec::new();
        if self.format != run.format {
            out.push(format!("kiln's state format {} (this kiln keeps format {})", self.format, run.format));
        }
        if self.buildkit != run.buildkit {
            out.push(format!("{:?} (this run has {:?})", self.buildkit, run.buildkit));
        }
        if self.rootless != run.rootless || self.uid != run.uid {
            let who = |o: &Owner| format!("{} uid {}", if o.rootless { "rootless as" } else { "as root," }, o.uid);
            out.push(format!("a daemon {} (this run is {})", who(self), who(run)));
        } else if self.subuids != run.subuids || self.subgids != run.subgids {
            out.push("other subordinate id ranges".into());
        }
        out
    }
}

/// Why the kept state cannot be used; the build then goes on with a private one.
#[derive(Debug, thiserror::Error)]
#[error("{}: {error}", path.display())]
pub struct StateError {
    path: PathBuf,
    error: std::io::Error,
}

fn at(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |error| StateError { path: path.to_path_buf(), error }
}

/// A state folder this run holds: unlocked when it is dropped, after the daemon stopped.
#[derive(Debug)]
pub struct KeptState {
    /// `cache/buildkit`.
    dir: PathBuf,
    _lock: std::fs::File,
    owner: Owner,
    /// Whether `root/` was made by this run (nothing to move aside if the daemon fails).
    pub fresh: bool,
    /// How many bytes the daemon's records may take (`BUILDKIT_CACHE_MAX_SIZE`).
    pub budget: u64,
}

impl KeptState {
    /// Takes `cache/buildkit` for this run: `Ok(None)` when another build holds it (never
    /// waits for it). A state made by another kind of daemon, or with no readable record
    /// of who made it, is moved aside first.
    pub async fn take(cache: &Path, owner: &Owner, budget: u64) -> Result<Option<Self>, StateError> {
        let dir = cache.join("buildkit");
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(at(&dir)(e)),
            _ => {}
        }
        let lock_path = dir.join("lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags((rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::CLOEXEC).bits() as i32)
            .open(&lock_path)
            .map_err(at(&lock_path))?;
        match rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => return Ok(None),
            Err(e) => return Err(at(&lock_path)(e.into())),
        }
        let mut state = KeptState { dir, _lock: lock, owner: owner.clone(), fresh: false, budget };
        let root = state.root();
        if root.symlink_metadata().is_ok() {
            let record = state.dir.join("state.json");
            let made_by = std::fs::read(&record).ok().and_then(|b| serde_json::from_slice::<Owner>(&b).ok());
            match made_by {
                Some(made_by) if made_by == *owner => {}
                Some(made_by) => {
                    let why = format!("it was made by {}", made_by.differences(owner).join(", "));
                    state.move_aside(&why).await?;
                }
                None => state.move_aside("it has no readable state.json: damaged, or not kiln's").await?,
            }
        } else {
            state.start_fresh()?;
        }
        Ok(Some(state))
    }

    /// Prunes the daemon's records to the budget, least recently used first, and says what
    /// the state holds. A failure is only a warning: the build's result stands.
    pub async fn keep_within_budget(&self, channel: Channel) {
        let result = async {
            let freed = prune_to(channel.clone(), self.budget).await?;
            Ok::<_, tonic::Status>((freed, usage(channel).await?))
        };
        match result.await {
            Ok((freed, used)) => eprintln!(
                "build: BuildKit state kept in {}: {} of its {} budget{}",
                self.dir.display(),
                human(used),
                human(self.budget),
                if freed > 0 { format!(" ({} pruned)", human(freed)) } else { String::new() }
            ),
            Err(e) => eprintln!(
                "build: warning: could not prune the BuildKit state in {} to its budget: {}",
                self.dir.display(),
                e.message()
            ),
        }
    }

    /// `cache/buildkit/root`: buildkitd's `--root`.
    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    /// An empty `root/` and the record of who makes it.
    fn start_fresh(&mut self) -> Result<(), StateError> {
        let root = self.root();
        std::fs::DirBuilder::new().mode(0o700).create(&root).map_err(at(&root))?;
        let record = self.dir.join("state.json");
        let partial = self.dir.join("state.json.partial");
        let _ = std::fs::remove_file(&partial);
        let mut file = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(&partial)
            .map_err(at(&partial))?;
        let text = serde_json::to_vec_pretty(&self.owner).expect("an Owner always serializes");
        file.write_all(&text).and_then(|()| file.sync_all()).map_err(at(&partial))?;
        std::fs::rename(&partial, &record).map_err(at(&record))?;
        self.fresh = true;
        Ok(())
    }

    /// Moves `root/` to `aside/` and starts an empty state, saying so with `why`. Only the
    /// last unusable state is kept aside: an older one is removed (a rootless one from
    /// inside a user namespace, as its files belong to its ids), or, if even that fails,
    /// kept under another name.
    pub async fn move_aside(&mut self, why: &str) -> Result<(), StateError> {
        let aside = self.dir.join("aside");
        if aside.symlink_metadata().is_ok() && daemon::remove_tree(&aside, self.owner.rootless).await.is_err() {
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            std::fs::rename(&aside, self.dir.join(format!("aside-{stamp}"))).map_err(at(&aside))?;
        }
        let root = self.root();
        std::fs::rename(&root, &aside).map_err(at(&root))?;
        let _ = std::fs::remove_file(self.dir.join("state.json"));
        eprintln!(
            "build: warning: the BuildKit state in {} cannot be used ({why}): moved it to {}; this build starts cold",
            self.dir.display(),
            aside.display()
        );
        self.start_fresh()
    }
}

/// `BUILDKIT_CACHE_MAX_SIZE`: a number of bytes, or one with a unit: `kB`/`KB`/`KiB`, `MB`,
/// `GB`, `TB` and their `i` forms all count in 1024s, as Docker and BuildKit do.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(format!("{text:?}: the unit is not one of B, KB, MB, GB, TB (or KiB … TiB)")),
    };
    let value: f64 = number.parse().map_err(|_| format!("{text:?} is not a size such as 10GB or 512MB"))?;
    let bytes = value * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes < 1.0 || bytes >= u64::MAX as f64 {
        return Err(format!("{text:?}: give a size above zero, such as 10GB"));
    }
    Ok(bytes as u64)
}

/// The size of every record the daemon keeps (what its budget counts), in bytes.
pub async fn usage(channel: Channel) -> Result<u64, tonic::Status> {
    let mut control = ControlClient::new(channel);
    let call = control.disk_usage(DiskUsageRequest { filter: vec![] });
    let answer = tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .map_err(|_| tonic::Status::deadline_exceeded("no answer to Control.DiskUsage"))??;
    Ok(answer.into_inner().record.iter().map(|r| r.size.max(0) as u64).sum())
}

/// Prunes the daemon's records, least recently used first, until they take at most
/// `budget` bytes; returns how many bytes went.
pub async fn prune_to(channel: Channel, budget: u64) -> Result<u64, tonic::Status> {
    let mut control = ControlClient::new(channel);
    let request = PruneRequest {
        filter: vec![],
        all: true,
        keep_duration: None,
        keep_bytes: Some(i64::try_from(budget).unwrap_or(i64::MAX)),
    };
    let work = async {
        let mut stream = control.prune(request).await?.into_inner();
        let mut freed = 0u64;
        while let Some(record) = stream.next().await {
            freed += record?.size.max(0) as u64;
        }
        Ok::<u64, tonic::Status>(freed)
    };
    tokio::time::timeout(CALL_TIMEOUT, work)
        .await
        .map_err(|_| tonic::Status::deadline_exceeded("no answer to Control.Prune"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> Owner {
        Owner {
            format: FORMAT,
            buildkit: "buildkitd github.com/moby/buildkit v0.13.2 x".into(),
            rootless: true,
            uid: 1000,
            subuids: vec!["100000:65536".into()],
            subgids: vec!["100000:65536".into()],
        }
    }

    #[test]
    fn sizes_read_as_docker_reads_them() {
        assert_eq!(parse_size("10GB"), Ok(10 << 30));
        assert_eq!(parse_size("10gib"), Ok(10 << 30));
        assert_eq!(parse_size("512 MB"), Ok(512 << 20));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("1k"), Ok(1024));
        for bad in ["", "GB", "10XB", "-1GB", "0", "1.2.3MB", "99999999999TB"] {
            assert!(parse_size(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[tokio::test]
    async fn a_state_is_used_only_by_a_daemon_of_its_kind() {
        let run = owner();
        let dir = tempfile::tempdir().unwrap();
        let first = KeptState::take(dir.path(), &run, 1 << 30).await.unwrap().expect("nobody holds it");
        assert!(first.fresh);
        std::fs::write(first.root().join("cache.db"), b"kept").unwrap();
        assert!(KeptState::take(dir.path(), &run, 1 << 30).await.unwrap().is_none(), "held by the first run");
        drop(first);

        let again = KeptState::take(dir.path(), &run, 1 << 30).await.unwrap().expect("released");
        assert!(!again.fresh);
        assert_eq!(std::fs::read(again.root().join("cache.db")).unwrap(), b"kept", "the same state");
        drop(again);

        // Another BuildKit: moved aside, not deleted.
        let newer = Owner { buildkit: "buildkitd github.com/moby/buildkit v0.14.0 y".into(), ..run.clone() };
        let other = KeptState::take(dir.path(), &newer, 1 << 30).await.unwrap().unwrap();
        assert!(other.fresh);
        assert!(!other.root().join("cache.db").exists());
        assert_eq!(std::fs::read(dir.path().join("buildkit/aside/cache.db")).unwrap(), b"kept");
        drop(other);

        // As root after rootless: the ids in it would be wrong.
        let root = Owner { rootless: false, uid: 0, subuids: vec![], subgids: vec![], ..newer.clone() };
        assert!(!run.differences(&root).is_empty());
        assert_eq!(newer.differences(&newer), Vec::<String>::new());
        let moved = KeptState::take(dir.path(), &root, 1 << 30).await.unwrap().unwrap();
        assert!(moved.fresh);
        drop(moved);

        // No record of who made it: damaged, or not kiln's.
        std::fs::write(dir.path().join("buildkit/state.json"), b"{trunc").unwrap();
        std::fs::write(dir.path().join("buildkit/root/x"), b"x").unwrap();
        let damaged = KeptState::take(dir.path(), &root, 1 << 30).await.unwrap().unwrap();
        assert!(damaged.fresh);
        assert!(dir.path().join("buildkit/aside/x").exists(), "the damaged state is the one kept aside");
    }

    #[tokio::test]
    async fn a_state_that_fails_is_moved_aside_for_a_fresh_one() {
        let dir = tempfile::tempdir().unwrap();
        let run = Owner { rootless: false, ..owner() };
        let mut state = KeptState::take(dir.path(), &run, 1 << 30).await.unwrap().unwrap();
        std::fs::write(state.root().join("metadata_v2.db"), b"").unwrap();
        state.fresh = false;
        state.move_aside("buildkitd could not start on it").await.unwrap();
        assert!(state.fresh);
        assert_eq!(std::fs::read_dir(state.root()).unwrap().count(), 0);
        assert!(dir.path().join("buildkit/aside/metadata_v2.db").exists());
        assert!(dir.path().join("buildkit/state.json").exists());
    }
}
