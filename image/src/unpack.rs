//! Layers applied, in order, to a root filesystem directory: OCI whiteouts and opaque
//! directories, files, directories, symlinks, hardlinks, FIFOs, modes, owners, times
//! and extended attributes.
//!
//! **Nothing outside the root is ever created or changed.** Every entry's parent is
//! resolved with `openat2(RESOLVE_IN_ROOT)`, so symlinks along the way resolve as they
//! would inside a container (a link to `/` leads to the root, never to the host's `/`),
//! and the entry itself is made with `*at` calls relative to that parent that never
//! follow a final symlink. Absolute names and `..` components are refused outright.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps};
use rustix::io::Errno;

/// How to unpack.
#[derive(Debug, Clone)]
pub struct UnpackOptions {
    /// Set entries' owners from the layer (only possible as root).
    pub chown: bool,
    /// Refuse to write more than this many bytes of file content in all (decompression bombs).
    pub max_bytes: Option<u64>,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        Self { chown: rustix::process::geteuid().is_root(), max_bytes: None }
    }
}

/// What applying one layer did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerStats {
    pub entries: u64,
    pub bytes: u64,
    pub whiteouts: u64,
    /// Device nodes are not created (they cannot be, unprivileged, and a rootfs needs none).
    pub skipped_devices: u64,
    /// Extended attributes the filesystem or our privileges would not take.
    pub skipped_xattrs: u64,
}

/// Why a layer could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("layer {layer}: entry {entry:?}: {why}")]
    Entry { layer: String, entry: String, why: String },
    #[error("layer {layer}: not a readable tar stream: {source}")]
    Stream { layer: String, source: io::Error },
    #[error("layer {layer}: unpacking would write more than {limit} bytes (the configured limit)")]
    TooLarge { layer: String, limit: u64 },
    #[error("root filesystem {}: {source}", path.display())]
    Root { path: PathBuf, source: io::Error },
}

/// Applies layers to one root filesystem directory.
pub struct Unpacker {
    root: OwnedFd,
    opts: UnpackOptions,
    written: u64,
}

const WHITEOUT: &[u8] = b".wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";

impl Unpacker {
    /// Opens `root`, which must be an existing directory.
    pub fn new(root: &Path, opts: UnpackOptions) -> Result<Self, UnpackError> {
        let fd = rustix::fs::open(root, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| UnpackError::Root { path: root.to_path_buf(), source: e.into() })?;
        Ok(Self { root: fd, opts, written: 0 })
    }

    /// Applies one layer (an uncompressed tar stream) on top of what is there.
    pub fn apply_layer(&mut self, layer: &str, tar: impl Read) -> Result<LayerStats, UnpackError> {
        let mut layer_run =
            LayerRun { unpacker: self, layer, stats: LayerStats::default(), added: HashSet::new(), dirs: Vec::new() };
        let mut archive = tar::Archive::new(tar);
        let stream_err = |source: io::Error| UnpackError::Stream { layer: layer.to_string(), source };
        for entry in archive.entries().map_err(stream_err)? {
            let mut entry = entry.map_err(stream_err)?;
            let name = OsString::from_vec(entry.path_bytes().into_owned());
            layer_run.entry(&name, &mut entry).map_err(|why| match why {
                Failure::Stop(e) => e,
                Failure::Entry(why) => {
                    UnpackError::Entry { layer: layer.to_string(), entry: name.to_string_lossy().into_owned(), why }
                }
            })?;
        }
        layer_run.finish()
    }
}

/// Why one entry failed: a problem with the entry, or one that ends the layer.
enum Failure {
    Entry(String),
    Stop(UnpackError),
}

impl From<Errno> for Failure {
    fn from(e: Errno) -> Self {
        Failure::Entry(io::Error::from(e).to_string())
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Entry(e.to_string())
    }
}

/// The state of applying one layer.
struct LayerRun<'a> {
    unpacker: &'a mut Unpacker,
    layer: &'a str,
    stats: LayerStats,
    /// Paths this layer made (and their parents), which an opaque marker must keep.
    added: HashSet<Vec<u8>>,
    /// Directories and their times, set once the layer is done (writing inside changes them).
    dirs: Vec<(Vec<u8>, i64)>,
}

impl LayerRun<'_> {
    fn entry<R: Read>(&mut self, name: &OsStr, entry: &mut tar::Entry<R>) -> Result<(), Failure> {
        self.stats.entries += 1;
        let parts = components(name.as_bytes()).map_err(|why| Failure::Entry(why.into()))?;
        let Some((base, parents)) = parts.split_last() else {
            return Ok(()); // the root itself ("./"): nothing to make
        };
        let kind = entry.header().entry_type();

        if base.starts_with(WHITEOUT) {
            self.stats.whiteouts += 1;
            return self.whiteout(parents, base);
        }
        let parent = self.open_dir(parents, true)?;
        let full = join(&parts);
        mark_added(&mut self.added, &parts);

        let existing = rustix::fs::statat(&parent, *base, AtFlags::SYMLINK_NOFOLLOW);
        match existing {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory && kind.is_dir() => {}
            Ok(_) => remove_tree_at(&parent, base)?,
            Err(Errno::NOENT) => {}
            Err(e) => return Err(e.into()),
        }

        let header = entry.header();
        let mode = header.mode().map_err(|e| Failure::Entry(format!("bad mode: {e}")))? & 0o7777;
        let mtime = header.mtime().unwrap_or(0) as i64;
        let (uid, gid) = (header.uid().unwrap_or(0), header.gid().unwrap_or(0));
        let times = timestamps(mtime);

        match kind {
            tar::EntryType::Directory => {
                match rustix::fs::mkdirat(&parent, *base, Mode::from_raw_mode(0o700)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                self.dirs.push((full, mtime));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let fd = rustix::fs::openat(
                    &parent,
                    *base,
                    OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )?;
                let mut file = File::from(fd);
                self.copy(entry, &mut file)?;
                self.set_xattrs(entry, file.as_fd());
            }
            tar::EntryType::Symlink => {
                let target =
                    entry.link_name_bytes().ok_or_else(|| Failure::Entry("symlink without a target".into()))?;
                rustix::fs::symlinkat(OsStr::from_bytes(&target), &parent, *base)?;
            }
            tar::EntryType::Link => {
                let target =
                    entry.link_name_bytes().ok_or_else(|| Failure::Entry("hardlink without a target".into()))?;
                let target = components(&target).map_err(|why| Failure::Entry(format!("hardlink target: {why}")))?;
                let Some((target_base, target_parents)) = target.split_last() else {
                    return Err(Failure::Entry("hardlink to the root".into()));
                };
                let target_parent = self.open_dir(target_parents, false)?;
                rustix::fs::linkat(&target_parent, *target_base, &parent, *base, AtFlags::empty()).map_err(|e| {
                    Failure::Entry(format!("hardlink to {:?}: {e}", String::from_utf8_lossy(&join(&target))))
                })?;
                // A hardlink shares its target's inode: owner, mode and times are the target's.
                return Ok(());
            }
            tar::EntryType::Fifo => {
                rustix::fs::mknodat(&parent, *base, FileType::Fifo, Mode::from_raw_mode(0o600), 0)?;
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                self.stats.skipped_devices += 1;
                return Ok(());
            }
            other => {
                // Global PAX headers and vendor types carry nothing to make.
                if !matches!(other, tar::EntryType::XGlobalHeader) {
                    self.stats.skipped_devices += 0;
                }
                return Ok(());
            }
        }

        if self.unpacker.opts.chown {
            rustix::fs::chownat(
                &parent,
                *base,
                Some(rustix::fs::Uid::from_raw(uid as u32)),
                Some(rustix::fs::Gid::from_raw(gid as u32)),
                AtFlags::SYMLINK_NOFOLLOW,
            )?;
        }
        if kind != tar::EntryType::Symlink {
            // After chown, which clears setuid/setgid.
            rustix::fs::chmodat(&parent, *base, Mode::from_raw_mode(mode), AtFlags::empty())?;
        }
        if !kind.is_dir() {
            rustix::fs::utimensat(&parent, *base, &times, AtFlags::SYMLINK_NOFOLLOW)?;
        }
        Ok(())
    }

    /// `.wh.<name>` removes `<name>` from lower layers; `.wh..wh..opq` empties the directory
    /// of what lower layers put there.
    fn whiteout(&mut self, parents: &[&[u8]], base: &[u8]) -> Result<(), Failure> {
        if base == OPAQUE {
            let dir = self.open_dir(parents, true)?;
            let dir =
                rustix::fs::openat(&dir, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
            let prefix = join(parents);
            for name in list_dir(&dir)? {
                let mut path = prefix.clone();
                if !path.is_empty() {
                    path.push(b'/');
                }
                path.extend_from_slice(&name);
                if !self.added.contains(&path) {
                    remove_tree_at(&dir, &name)?;
                }
            }
            return Ok(());
        }
        let victim = &base[WHITEOUT.len()..];
        if victim.is_empty() || victim == b"." || victim == b".." || victim.contains(&b'/') {
            return Err(Failure::Entry("whiteout names no entry of its directory".into()));
        }
        match self.open_dir(parents, false) {
            Ok(dir) => remove_tree_at(&dir, victim),
            Err(Failure::Entry(_)) => Ok(()), // nothing there to remove
            Err(e) => Err(e),
        }
    }

    /// Opens a directory inside the root, resolving symlinks as if the root were `/`;
    /// with `create`, makes the missing ones (mode 0755).
    fn open_dir(&self, parents: &[&[u8]], create: bool) -> Result<OwnedFd, Failure> {
        let root = &self.unpacker.root;
        let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let path = if parents.is_empty() { b".".to_vec() } else { join(parents) };
        match rustix::fs::openat2(root, OsStr::from_bytes(&path), flags, Mode::empty(), resolve) {
            Ok(fd) => return Ok(fd),
            Err(Errno::NOENT) if create => {}
            Err(e) => {
                return Err(Failure::Entry(format!(
                    "parent {:?}: {}",
                    String::from_utf8_lossy(&path),
                    io::Error::from(e)
                )));
            }
        }
        let mut dir = rustix::fs::openat2(root, ".", flags, Mode::empty(), resolve)?;
        for (i, name) in parents.iter().enumerate() {
            let prefix = join(&parents[..=i]);
            match rustix::fs::openat2(root, OsStr::from_bytes(&prefix), flags, Mode::empty(), resolve) {
                Ok(fd) => dir = fd,
                Err(Errno::NOENT) => {
                    match rustix::fs::mkdirat(&dir, *name, Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    dir = rustix::fs::openat2(root, OsStr::from_bytes(&prefix), flags, Mode::empty(), resolve)?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(dir)
    }

    fn copy<R: Read>(&mut self, from: &mut R, to: &mut File) -> Result<(), Failure> {
        let mut buf = vec![0u8; 256 << 10];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Failure::Stop(UnpackError::Stream { layer: self.layer.into(), source: e })),
            };
            self.unpacker.written += n as u64;
            self.stats.bytes += n as u64;
            if let Some(limit) = self.unpacker.opts.max_bytes
                && self.unpacker.written > limit
            {
                return Err(Failure::Stop(UnpackError::TooLarge { layer: self.layer.into(), limit }));
            }
            to.write_all(&buf[..n])?;
        }
    }

    /// Extended attributes from PAX `SCHILY.xattr.*` records, best effort.
    fn set_xattrs<R: Read>(&mut self, entry: &mut tar::Entry<R>, fd: std::os::fd::BorrowedFd<'_>) {
        let Ok(Some(extensions)) = entry.pax_extensions() else { return };
        for ext in extensions.flatten() {
            let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") else { continue };
            if rustix::fs::fsetxattr(fd, OsStr::from_bytes(name), ext.value_bytes(), rustix::fs::XattrFlags::empty())
                .is_err()
            {
                self.stats.skipped_xattrs += 1;
            }
        }
    }

    /// Sets directories' times, deepest first, now that nothing more is written inside.
    fn finish(mut self) -> Result<LayerStats, UnpackError> {
        self.dirs.sort_by_key(|d| std::cmp::Reverse(d.0.len()));
        let root = &self.unpacker.root;
        for (path, mtime) in &self.dirs {
            let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            // A directory may have been replaced later in the same layer; then there is nothing to date.
            if let Ok(fd) = rustix::fs::openat2(root, OsStr::from_bytes(path), flags, Mode::empty(), resolve) {
                let _ = rustix::fs::futimens(&fd, &timestamps(*mtime));
            }
        }
        Ok(self.stats)
    }
}

/// Splits an entry name into components: `./a//b/` → `[a, b]`. Absolute names and `..`
/// are refused: a layer names paths relative to the root and never climbs out.
fn components(name: &[u8]) -> Result<Vec<&[u8]>, &'static str> {
    if name.starts_with(b"/") {
        return Err("absolute path: layer entries must be relative to the root");
    }
    if name.contains(&0) {
        return Err("NUL byte in the name");
    }
    let mut out = Vec::new();
    for c in name.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err("'..' in the path would climb out of the root"),
            c => out.push(c),
        }
    }
    Ok(out)
}

fn timestamps(secs: i64) -> Timestamps {
    let t = Timespec { tv_sec: secs, tv_nsec: 0 };
    Timestamps { last_access: t, last_modification: t }
}

fn join(components: &[&[u8]]) -> Vec<u8> {
    components.join(&b'/')
}

fn mark_added(added: &mut HashSet<Vec<u8>>, components: &[&[u8]]) {
    for i in 1..=components.len() {
        added.insert(join(&components[..i]));
    }
}

fn list_dir(dir: &OwnedFd) -> Result<Vec<Vec<u8>>, Failure> {
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        let name = entry?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            names.push(name);
        }
    }
    Ok(names)
}

/// Removes `name` in `dir` and, if it is a directory, everything in it, following no symlinks.
fn remove_tree_at(dir: &OwnedFd, name: &[u8]) -> Result<(), Failure> {
    let name = OsStr::from_bytes(name);
    let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
        let sub = rustix::fs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        for child in list_dir(&sub)? {
            remove_tree_at(&sub, &child)?;
        }
        rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?;
    } else {
        rustix::fs::unlinkat(dir, name, AtFlags::empty())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_split_and_checked() {
        assert_eq!(components(b"./a//b/").unwrap(), vec![b"a".as_slice(), b"b"]);
        assert!(components(b"").unwrap().is_empty());
        assert!(components(b"/etc/passwd").is_err());
        assert!(components(b"a/../../b").is_err());
        assert!(components(b"..").is_err());
    }
}
