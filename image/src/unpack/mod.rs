//! Layers applied, in order, to a root filesystem directory: OCI whiteouts and opaque
//! directories, files, directories, symlinks, hardlinks, FIFOs, modes, owners, times
//! and extended attributes, with the result `umoci unpack` gives.
//!
//! **Nothing outside the root is ever created or changed.** Names that are absolute or
//! whose `..` climb above the root are refused. Every entry's parent directory is found
//! as a process chrooted into the root would find it (`resolve`): a symlink to `/`
//! leads to the root, never to the host's `/`. The entry itself is then made with `*at`
//! calls relative to that directory that never follow a final symlink, and hardlink
//! targets are found the same way. Whiteouts and replaced entries are removed without
//! following symlinks (`tree`).
//!
//! Memory stays bounded whatever a layer's size: contents are streamed, headers between
//! two entries are capped (`meter`), and what is kept per layer (the paths the layer
//! made, for whiteouts; its directories, whose metadata is set last) grows with its
//! number of entries, not their sizes. [`UnpackOptions::max_bytes`] bounds the bytes
//! read from entries' contents, against decompression bombs.
//!
//! Where this differs from umoci, on purpose: absolute names and escaping `..` are
//! refused (umoci quietly re-roots them), device nodes are skipped and counted
//! (a rootfs for a container needs none, and they cannot be made unprivileged),
//! extended attributes are best effort, implicit parent directories are 0755 whatever
//! the umask, and the root's own metadata is applied only from a `./` directory entry.
//!
//! Inner modules, one job each: `names` (entry names checked and classified),
//! `resolve` (directories found inside the root), `tree` (removals and whiteouts),
//! `meta` (modes, owners, times, xattrs), `meter` (the bound on header bytes).

mod meta;
mod meter;
/// What the tar reader may read between two entries (headers, long names, PAX records).
pub use meter::MAX_OVERHEAD as MAX_HEADER_OVERHEAD;
mod names;
mod resolve;
mod tree;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Timestamps, Uid};
use rustix::io::Errno;

use meta::Meta;
use meter::{Meter, Metered};
use names::Kind;
use resolve::{Dir, Root};

/// How to unpack.
#[derive(Debug, Clone)]
pub struct UnpackOptions {
    /// Set entries' owners from the layer (`lchown`; possible only as root). Defaults to
    /// whether we run as root.
    pub chown: bool,
    /// Refuse to read more than this many bytes of entry contents, over all layers, a sparse
    /// file counted at the size it becomes (decompression bombs). `None`, the default, sets
    /// no limit; callers that unpack images set [`budget_for`]'s.
    pub max_bytes: Option<u64>,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        Self { chown: rustix::process::geteuid().is_root(), max_bytes: None }
    }
}

/// The default byte budget for unpacking an image whose layers declare `layer_bytes` in
/// all (their compressed sizes): 64 times that, and never under 1 GiB. Ordinary layers
/// expand 2–10×; what expands further is refused unless the caller raises the budget.
pub fn budget_for(layer_bytes: u64) -> u64 {
    layer_bytes.saturating_mul(64).max(1 << 30)
}

/// What applying one layer did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerStats {
    /// Tar entries read, whiteouts included.
    pub entries: u64,
    /// Bytes of file contents written.
    pub bytes: u64,
    /// Whiteout and opaque-directory entries applied.
    pub whiteouts: u64,
    /// Character and block devices, which are never created.
    pub skipped_devices: u64,
    /// Extended attributes not set (unsupported by the filesystem, refused to us, or
    /// host-specific ones such as `security.selinux`).
    pub skipped_xattrs: u64,
    /// The first few warnings, in words (which xattr, on which entry, why).
    pub warnings: Vec<String>,
}

const MAX_WARNINGS: usize = 16;

impl LayerStats {
    fn warn(&mut self, message: impl FnOnce() -> String) {
        if self.warnings.len() < MAX_WARNINGS {
            self.warnings.push(message());
        }
    }
}

/// Why a layer could not be applied. The root filesystem is then partly unpacked and
/// should be thrown away.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// An entry was refused or could not be made.
    #[error("layer {layer}: entry {entry:?}: {source}")]
    Entry {
        layer: String,
        entry: String,
        #[source]
        source: EntryError,
    },
    /// The stream is not a readable tar (or its decompression failed) between entries.
    #[error("layer {layer}: reading the tar stream{}: {source}", after.as_ref().map(|a| format!(" after entry {a:?}")).unwrap_or_default())]
    Stream {
        layer: String,
        /// The last entry read whole, if any.
        after: Option<String>,
        #[source]
        source: io::Error,
    },
    /// [`UnpackOptions::max_bytes`] would be exceeded.
    #[error("layer {layer}: entry {entry:?}: unpacking would read more than the limit of {limit} bytes")]
    TooLarge { layer: String, entry: String, limit: u64 },
    /// The root directory could not be opened.
    #[error("root filesystem {}: {source}", path.display())]
    Root {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What was wrong with one entry.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    /// The entry would leave the root or is otherwise malformed on purpose or by accident.
    #[error("refused: {0}")]
    Refused(String),
    /// A header field could not be read.
    #[error("bad header: {0}")]
    Header(String),
    /// Not a type of entry a layer holds (GNU volume labels, multi-volume parts, …).
    #[error("unsupported entry type {0:?}")]
    UnsupportedType(char),
    /// The stream ended (or failed) inside the entry's content.
    #[error("reading its content: {0}")]
    Read(#[source] io::Error),
    /// The stream ended before the size its header gives.
    #[error("truncated: the header says {expected} bytes, the stream held {got}")]
    Truncated { expected: u64, got: u64 },
    /// A filesystem operation failed.
    #[error("{op}: {source}")]
    Io {
        op: String,
        #[source]
        source: io::Error,
    },
}

/// Applies layers to one root filesystem directory.
pub struct Unpacker {
    root: Root,
    opts: UnpackOptions,
    /// Bytes of entry contents read so far, over all layers.
    read: u64,
    buf: Vec<u8>,
}

impl Unpacker {
    /// Opens `root`, which must be an existing directory (usually empty).
    pub fn new(root: &Path, opts: UnpackOptions) -> Result<Self, UnpackError> {
        let fd = rustix::fs::open(root, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| UnpackError::Root { path: root.to_path_buf(), source: e.into() })?;
        Ok(Self { root: Root::new(fd), opts, read: 0, buf: vec![0; 128 << 10] })
    }

    /// Applies one layer, an uncompressed tar stream (see [`crate::decompress`]), on top
    /// of the layers applied before. `layer_name` (a digest, say) names it in errors.
    pub fn apply_layer(&mut self, layer_name: &str, tar: impl Read) -> Result<LayerStats, UnpackError> {
        let meter = Rc::new(Meter::default());
        let mut archive = tar::Archive::new(Metered { inner: tar, meter: meter.clone() });
        let mut run = LayerRun {
            unpacker: self,
            stats: LayerStats::default(),
            upper: HashSet::new(),
            dirs: HashMap::new(),
            touched: HashMap::new(),
        };
        let mut after: Option<String> = None;
        let stream = |after: &Option<String>, source| UnpackError::Stream {
            layer: layer_name.to_string(),
            after: after.clone(),
            source,
        };
        for entry in archive.entries().map_err(|e| stream(&after, e))? {
            let mut entry = entry.map_err(|e| stream(&after, e))?;
            meter.body(true);
            let name = entry.path_bytes().into_owned();
            run.entry(&name, &mut entry).map_err(|f| f.into_error(layer_name, &name))?;
            meter.body(false);
            after = Some(names::display(&name));
        }
        run.finish().map_err(|(dir, f)| f.into_error(layer_name, &dir))
    }
}

/// Why one entry failed.
enum Failure {
    Entry(EntryError),
    TooLarge(u64),
}

impl Failure {
    fn into_error(self, layer: &str, name: &[u8]) -> UnpackError {
        let (layer, entry) = (layer.to_string(), names::display(name));
        match self {
            Failure::Entry(source) => UnpackError::Entry { layer, entry, source },
            Failure::TooLarge(limit) => UnpackError::TooLarge { layer, entry, limit },
        }
    }
}

impl From<EntryError> for Failure {
    fn from(e: EntryError) -> Self {
        Failure::Entry(e)
    }
}

fn refused(why: impl Into<String>) -> Failure {
    Failure::Entry(EntryError::Refused(why.into()))
}

/// Names the operation a system call was for.
trait Op<T> {
    fn op(self, op: impl FnOnce() -> String) -> Result<T, Failure>;
}

impl<T> Op<T> for Result<T, Errno> {
    fn op(self, op: impl FnOnce() -> String) -> Result<T, Failure> {
        self.map_err(|e| Failure::Entry(EntryError::Io { op: op(), source: e.into() }))
    }
}

impl<T> Op<T> for io::Result<T> {
    fn op(self, op: impl FnOnce() -> String) -> Result<T, Failure> {
        self.map_err(|source| Failure::Entry(EntryError::Io { op: op(), source }))
    }
}

/// The state of applying one layer.
struct LayerRun<'a> {
    unpacker: &'a mut Unpacker,
    stats: LayerStats,
    /// Paths this layer made, and their ancestors, by their paths from the root with
    /// symlinks resolved: whiteouts in the same layer never remove them.
    upper: HashSet<Vec<u8>>,
    /// Directory entries of this layer: their metadata is set last, since making things
    /// inside changes their times and a read-only mode would stop us.
    dirs: HashMap<Vec<u8>, Meta>,
    /// Directories this layer changed, with the times they had: put back at the end
    /// unless the layer has an entry for them (as umoci restores parents).
    touched: HashMap<Vec<u8>, Timestamps>,
}

impl LayerRun<'_> {
    fn root(&mut self) -> &mut Root {
        &mut self.unpacker.root
    }

    fn entry<R: Read>(&mut self, name: &[u8], entry: &mut tar::Entry<'_, R>) -> Result<(), Failure> {
        self.stats.entries += 1;
        let header = entry.header();
        let raw_type = header.as_bytes()[156];
        let mut kind = header.entry_type();
        if kind.is_pax_global_extensions() {
            return self.drain(entry);
        }
        // Old tars mark directories as regular files with a trailing slash.
        if raw_type == 0 && name.ends_with(b"/") {
            kind = tar::EntryType::Directory;
        }
        let parts = names::components(name).map_err(refused)?;
        let Some((base, parents)) = parts.split_last() else {
            return self.root_entry(kind, entry);
        };
        match names::kind(base).map_err(refused)? {
            Kind::Plain => {}
            Kind::Opaque => {
                self.drain(entry)?;
                return self.whiteout(parents, None);
            }
            Kind::Whiteout(victim) => {
                self.drain(entry)?;
                return self.whiteout(parents, Some(victim));
            }
        }
        let has_content = match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => true,
            tar::EntryType::Directory
            | tar::EntryType::Symlink
            | tar::EntryType::Link
            | tar::EntryType::Fifo
            | tar::EntryType::Char
            | tar::EntryType::Block => false,
            other => return Err(EntryError::UnsupportedType(char::from(other.as_byte())).into()),
        };
        // For a sparse file, how large it becomes (the tar crate reads the sparse map and
        // reports the real size), not only what it stores.
        let size = entry.size();
        if let Some(limit) = self.unpacker.opts.max_bytes
            && self.unpacker.read.saturating_add(size) > limit
        {
            return Err(Failure::TooLarge(limit));
        }
        if !has_content {
            // Nothing to write, but read here rather than skipped by the tar reader.
            self.drain(entry)?;
        }
        // Hardlinks share their target's metadata, and devices are not made: their
        // headers' metadata is not used.
        let meta = match kind {
            tar::EntryType::Link | tar::EntryType::Char | tar::EntryType::Block => None,
            _ => Some(Meta::read(entry).map_err(EntryError::Header)?),
        };

        let parent = self
            .root()
            .dir(parents, true)
            .op(|| format!("making its parent {:?}", names::display(&names::join(parents))))?;
        self.touch(&parent)?;
        let path = names::child(&parent.path, base);

        // Whatever is there goes, unless a directory stays a directory.
        let existing = match rustix::fs::statat(&parent.fd, *base, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Some(FileType::from_raw_mode(st.st_mode)),
            Err(Errno::NOENT) => None,
            Err(e) => return Err(e).op(|| "looking at what is there".into()),
        };
        let kept_dir = existing == Some(FileType::Directory) && kind == tar::EntryType::Directory;
        if existing.is_some() && !kept_dir {
            tree::remove(&parent.fd, base).op(|| "removing what was there".into())?;
            self.root().forget();
        }

        match (kind, meta) {
            (tar::EntryType::Directory, Some(meta)) => {
                if !kept_dir {
                    rustix::fs::mkdirat(&parent.fd, *base, Mode::from_raw_mode(0o700))
                        .op(|| "making the directory".into())?;
                }
                if kept_dir || !meta.xattrs.is_empty() {
                    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                    match rustix::fs::openat(&parent.fd, *base, flags, Mode::empty()) {
                        Ok(fd) => self.xattrs(name, &fd, &meta, kept_dir),
                        // Unprivileged, a lower layer's mode may keep us out: xattrs are best effort.
                        Err(e) => {
                            self.stats.skipped_xattrs += meta.xattrs.len() as u64;
                            self.stats
                                .warn(|| format!("{}: xattrs not set: {}", names::display(name), io::Error::from(e)));
                        }
                    }
                }
                self.dirs.insert(path.clone(), meta);
            }
            (tar::EntryType::Symlink, Some(meta)) => {
                let target = entry
                    .link_name_bytes()
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| refused("symlink without a target"))?;
                rustix::fs::symlinkat(&*target, &parent.fd, *base).op(|| "making the symlink".into())?;
                if self.unpacker.opts.chown {
                    let (uid, gid) = meta.owner();
                    rustix::fs::chownat(&parent.fd, *base, uid, gid, AtFlags::SYMLINK_NOFOLLOW)
                        .op(|| "setting the owner".into())?;
                }
                for (xattr, _) in &meta.xattrs {
                    self.stats.skipped_xattrs += 1;
                    self.stats.warn(|| {
                        format!(
                            "{}: xattr {}: not set on symlinks",
                            names::display(name),
                            String::from_utf8_lossy(xattr)
                        )
                    });
                }
                rustix::fs::utimensat(&parent.fd, *base, &meta.times(), AtFlags::SYMLINK_NOFOLLOW)
                    .op(|| "setting the times".into())?;
            }
            (tar::EntryType::Char | tar::EntryType::Block, _) => {
                // What was there is gone all the same: the layer says a device stands there.
                self.stats.skipped_devices += 1;
            }
            (tar::EntryType::Link, _) => {
                let target = entry.link_name_bytes().ok_or_else(|| refused("hardlink without a target"))?;
                self.hardlink(&parent, base, &target)?;
            }
            (tar::EntryType::Fifo, Some(meta)) => {
                rustix::fs::mknodat(&parent.fd, *base, FileType::Fifo, Mode::from_raw_mode(0o600), 0)
                    .op(|| "making the FIFO".into())?;
                // Opening a FIFO to read, without waiting for a writer, gives a handle on it.
                let fd = rustix::fs::openat(
                    &parent.fd,
                    *base,
                    OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .op(|| "opening the FIFO".into())?;
                self.finish_file(name, &fd, &meta)?;
            }
            (_, Some(meta)) => {
                // Regular files (contiguous and sparse ones too).
                let fd = rustix::fs::openat(
                    &parent.fd,
                    *base,
                    OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .op(|| "creating the file".into())?;
                let mut file = File::from(fd);
                self.copy(entry, Some(&mut file))?;
                self.finish_file(name, &file, &meta)?;
            }
            (_, None) => unreachable!("only hardlinks and devices are read without metadata"),
        }
        self.mark_upper(path);
        Ok(())
    }

    /// `./`: the root directory's own metadata.
    fn root_entry<R: Read>(&mut self, kind: tar::EntryType, entry: &mut tar::Entry<'_, R>) -> Result<(), Failure> {
        if kind != tar::EntryType::Directory {
            return Err(refused("an entry for the root that is not a directory"));
        }
        self.drain(entry)?;
        let meta = Meta::read(entry).map_err(EntryError::Header)?;
        if !meta.xattrs.is_empty() {
            let fd = rustix::fs::openat(
                self.root().fd(),
                ".",
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .op(|| "opening the root".into())?;
            self.xattrs(b".", &fd, &meta, true);
        }
        self.dirs.insert(Vec::new(), meta);
        Ok(())
    }

    /// Owner, mode, extended attributes and times of a file just made, in that order:
    /// `chown` clears setuid and setgid, and writing would change the times.
    fn finish_file(&mut self, name: &[u8], fd: impl AsFd, meta: &Meta) -> Result<(), Failure> {
        let fd = fd.as_fd();
        if self.unpacker.opts.chown {
            let (uid, gid) = meta.owner();
            rustix::fs::fchown(fd, uid, gid).op(|| "setting the owner".into())?;
        }
        rustix::fs::fchmod(fd, meta.mode()).op(|| "setting the mode".into())?;
        self.xattrs(name, fd, meta, false);
        rustix::fs::futimens(fd, &meta.times()).op(|| "setting the times".into())
    }

    fn xattrs(&mut self, name: &[u8], fd: impl AsFd, meta: &Meta, clear_existing: bool) {
        for skipped in meta::set_xattrs(fd, &meta.xattrs, clear_existing) {
            self.stats.skipped_xattrs += 1;
            self.stats.warn(|| {
                format!("{}: xattr {}: {}", names::display(name), String::from_utf8_lossy(&skipped.name), skipped.why)
            });
        }
    }

    /// A hardlink to `target`, found inside the root like any entry (its last component
    /// not followed: a link to a symlink links the symlink).
    fn hardlink(&mut self, parent: &Dir, base: &[u8], target: &[u8]) -> Result<(), Failure> {
        let shown = || names::display(target);
        let target_parts =
            names::components(target).map_err(|why| refused(format!("hardlink target {:?}: {why}", shown())))?;
        let Some((target_base, target_parents)) = target_parts.split_last() else {
            return Err(refused("hardlink to the root"));
        };
        let target_dir = self.root().dir(target_parents, false).op(|| format!("hardlink target {:?}", shown()))?;
        rustix::fs::linkat(&target_dir.fd, *target_base, &parent.fd, base, AtFlags::empty())
            .op(|| format!("hardlink to {:?}", shown()))
    }

    /// `.wh.<victim>` (`Some`) or `.wh..wh..opq` (`None`) in the directory `parents`.
    fn whiteout(&mut self, parents: &[&[u8]], victim: Option<&[u8]>) -> Result<(), Failure> {
        self.stats.whiteouts += 1;
        let dir = match self.root().dir(parents, false) {
            Ok(dir) => dir,
            // Nothing there to remove.
            Err(Errno::NOENT | Errno::NOTDIR) => return Ok(()),
            Err(e) => {
                return Err(e).op(|| format!("finding its directory {:?}", names::display(&names::join(parents))));
            }
        };
        self.touch(&dir)?;
        let upper = &self.upper;
        let keep = |path: &[u8]| upper.contains(path);
        let result = match victim {
            Some(victim) => tree::white_out(&dir.fd, &dir.path, victim, &keep),
            None => tree::make_opaque(&dir.fd, &dir.path, &keep),
        };
        self.root().forget();
        result.op(|| "removing what it hides".into())
    }

    /// Notes a directory's times before the layer changes what is in it.
    fn touch(&mut self, dir: &Dir) -> Result<(), Failure> {
        if !self.touched.contains_key(&dir.path) {
            let st = rustix::fs::fstat(&dir.fd).op(|| "looking at its directory".into())?;
            let times = Timestamps {
                last_access: rustix::fs::Timespec { tv_sec: st.st_atime as _, tv_nsec: st.st_atime_nsec as _ },
                last_modification: rustix::fs::Timespec { tv_sec: st.st_mtime as _, tv_nsec: st.st_mtime_nsec as _ },
            };
            self.touched.insert(dir.path.clone(), times);
        }
        Ok(())
    }

    /// Records `path` and its ancestors as made by this layer.
    fn mark_upper(&mut self, mut path: Vec<u8>) {
        loop {
            let parent_len = path.iter().rposition(|b| *b == b'/');
            if !self.upper.insert(path.clone()) {
                return; // its ancestors are there already
            }
            match parent_len {
                Some(len) => path.truncate(len),
                None => return,
            }
        }
    }

    /// Reads an entry's content into `to`, or into nothing.
    fn copy<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>, mut to: Option<&mut File>) -> Result<(), Failure> {
        let expected = entry.size();
        let mut got = 0u64;
        let mut holes = false;
        let unpacker = &mut *self.unpacker;
        loop {
            let n = match entry.read(&mut unpacker.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(EntryError::Read(e).into()),
            };
            got += n as u64;
            unpacker.read += n as u64;
            if let Some(limit) = unpacker.opts.max_bytes
                && unpacker.read > limit
            {
                return Err(Failure::TooLarge(limit));
            }
            if let Some(file) = to.as_mut() {
                let chunk = &unpacker.buf[..n];
                if chunk.iter().all(|b| *b == 0) {
                    // Zeros (a sparse file's holes, or zeros written out) stay a hole: a
                    // small layer that expands to gigabytes of them takes no disk.
                    io::Seek::seek(file, io::SeekFrom::Current(n as i64)).op(|| "writing the file".into())?;
                    holes = true;
                } else {
                    file.write_all(chunk).op(|| "writing the file".into())?;
                }
                self.stats.bytes += n as u64;
            }
        }
        if holes && let Some(file) = to.as_mut() {
            // A file that ends in a hole gets its length all the same.
            file.set_len(got).op(|| "writing the file".into())?;
        }
        if got < expected {
            return Err(EntryError::Truncated { expected, got }.into());
        }
        Ok(())
    }

    fn drain<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), Failure> {
        self.copy(entry, None)
    }

    /// Directories' metadata, deepest first (a parent's mode may lock out what is below it),
    /// now that nothing more changes inside them;
    /// then the times of the directories the layer changed without an entry of its own.
    fn finish(self) -> Result<LayerStats, (Vec<u8>, Failure)> {
        let mut paths: Vec<Vec<u8>> = self.dirs.keys().chain(self.touched.keys()).cloned().collect();
        paths.sort_by(|a, b| depth(b).cmp(&depth(a)).then_with(|| a.cmp(b)));
        paths.dedup();
        let chown = self.unpacker.opts.chown;
        for path in paths {
            let result = (|| {
                // Gone since (removed or replaced later in the layer): nothing to set.
                let fd = match self.unpacker.root.reopen(&path) {
                    Ok(fd) => fd,
                    Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => return Ok(()),
                    Err(e) => return Err(e).op(|| "reopening the directory".into()),
                };
                if let Some(meta) = self.dirs.get(&path) {
                    if chown {
                        let (uid, gid) = meta.owner();
                        chown_dir(&fd, uid, gid).op(|| "setting the owner".into())?;
                    }
                    // Times before the mode: a mode without search permission would keep even
                    // its owner from reaching `.` in it.
                    rustix::fs::utimensat(&fd, ".", &meta.times(), AtFlags::empty())
                        .op(|| "setting the times".into())?;
                    rustix::fs::chmodat(&fd, ".", meta.mode(), AtFlags::empty()).op(|| "setting the mode".into())
                } else {
                    let times = &self.touched[&path];
                    rustix::fs::utimensat(&fd, ".", times, AtFlags::empty()).op(|| "restoring the times".into())
                }
            })();
            result.map_err(|f| (if path.is_empty() { b".".to_vec() } else { path.clone() }, f))?;
        }
        Ok(self.stats)
    }
}

fn chown_dir(fd: &OwnedFd, uid: Option<Uid>, gid: Option<Gid>) -> Result<(), Errno> {
    rustix::fs::chownat(fd, ".", uid, gid, AtFlags::empty())
}

fn depth(path: &[u8]) -> usize {
    if path.is_empty() { 0 } else { 1 + path.iter().filter(|b| **b == b'/').count() }
}
