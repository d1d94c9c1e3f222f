//! Files of a folder kiln was given, read without following a symbolic link out of it; and
//! files kiln writes, made fresh so that nothing a folder already holds is written through.
//!
//! Reading: [`open_beneath`] resolves a path inside `root` as the kernel's `openat2` does
//! with `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`: links are followed while they stay inside
//! (`..` included), and a link that is absolute or climbs above `root` is refused with an
//! error naming the file and saying it points outside the folder ([`Outside`]). Kernels
//! without `openat2` (before 5.6, or behind a seccomp profile that hides it) get the same
//! rules from [`walk_beneath`], which opens one component at a time with `O_NOFOLLOW` and
//! reads each link itself.
//!
//! Writing: [`FreshDir`] makes a folder of a random name with `mkdir`, which fails rather
//! than reuse anything already there; files are made in it with `O_EXCL | O_NOFOLLOW` and
//! moved into place with `rename`, which replaces a link standing at the name, never what
//! the link points at ([`write_new`], [`rename_into`]).

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs::{File, Metadata};
use std::io::{self, Read as _, Write as _};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStringExt as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// Links followed in one path at most, as the kernel allows.
const MAX_LINKS: usize = 40;
/// How often `openat2` is asked again when it answers `EAGAIN` (a rename raced a `..`).
const RETRIES: usize = 16;

/// Why a path was refused: resolving it left the folder. An empty `root` is the working
/// folder (and `file` is then named as it was given).
#[derive(Debug, thiserror::Error)]
#[error("{} points outside {}", file.display(), folder(root))]
pub struct Outside {
    pub file: PathBuf,
    pub root: PathBuf,
}

fn folder(root: &Path) -> String {
    if root.as_os_str().is_empty() { "the working folder".into() } else { format!("the folder {}", root.display()) }
}

/// The folder to open: an empty root is the working folder.
fn root_dir(root: &Path) -> io::Result<OwnedFd> {
    let root = if root.as_os_str().is_empty() { Path::new(".") } else { root };
    Ok(rustix::fs::open(root, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?)
}

/// Whether `e` is an [`Outside`] refusal.
pub fn is_outside(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<Outside>())
}

/// How resolving failed, before the names are put on it.
enum Fail {
    Outside,
    Io(io::Error),
}

impl From<Errno> for Fail {
    fn from(e: Errno) -> Self {
        Fail::Io(e.into())
    }
}

impl Fail {
    fn named(self, root: &Path, relative: &Path) -> io::Error {
        match self {
            Fail::Outside => io::Error::new(
                io::ErrorKind::PermissionDenied,
                Outside { file: root.join(relative), root: root.to_path_buf() },
            ),
            Fail::Io(e) => e,
        }
    }
}

/// Opens `relative` beneath `root` for reading: a regular file, or a folder. An empty
/// `root` is the working folder.
pub fn open_beneath(root: &Path, relative: &Path) -> io::Result<File> {
    open_for_reading(root, relative, false)
}

/// [`open_beneath`] without `openat2`, as on kernels that lack it: public so tests and the
/// fuzz target can hold the fallback to the same rules.
pub fn walk_beneath(root: &Path, relative: &Path) -> io::Result<File> {
    open_for_reading(root, relative, true)
}

fn open_for_reading(root: &Path, relative: &Path, walk_only: bool) -> io::Result<File> {
    // Non-blocking, so a FIFO planted under the name cannot hang the open; refused below.
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK;
    let file = open_with(root, relative, flags, walk_only)?;
    let kind = file.metadata()?.file_type();
    if !kind.is_file() && !kind.is_dir() {
        let what = root.join(relative);
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{} is not a regular file", what.display())));
    }
    Ok(file)
}

/// The metadata of what `relative` names beneath `root`, its links followed (inside only).
pub fn metadata_beneath(root: &Path, relative: &Path) -> io::Result<Metadata> {
    open_with(root, relative, OFlags::PATH | OFlags::CLOEXEC, false)?.metadata()
}

/// The bytes of the file `relative` beneath `root`, refusing more than `limit`.
pub fn read_beneath(root: &Path, relative: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let file = open_beneath(root, relative)?;
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        let what = root.join(relative);
        return Err(io::Error::other(format!("{} is larger than {limit} bytes", what.display())));
    }
    Ok(bytes)
}

/// Opens a file a user named: a relative path beneath the working folder (as
/// [`open_beneath`] with an empty root), an absolute one as it is.
pub fn open_input(path: &Path) -> io::Result<File> {
    if path.is_absolute() {
        return File::open(path);
    }
    open_beneath(Path::new(""), path)
}

/// The bytes of a file a user named (see [`open_input`]), refusing more than `limit`.
pub fn read_input(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    open_input(path)?.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::other(format!("{} is larger than {limit} bytes", path.display())));
    }
    Ok(bytes)
}

/// Makes every missing folder of `relative` beneath `root`; each one already there must be
/// a folder inside `root` (or a link to one inside).
pub fn create_dir_beneath(root: &Path, relative: &Path) -> io::Result<()> {
    let mut done = PathBuf::new();
    for component in relative.components() {
        let Component::Normal(name) = component else {
            let why = format!("{} is not a plain relative path", relative.display());
            return Err(io::Error::new(io::ErrorKind::InvalidInput, why));
        };
        let parent = open_with(root, &done, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, false)?;
        match rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        done.push(name);
        open_with(root, &done, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, false)?;
    }
    Ok(())
}

/// `openat2` answered `ENOSYS` once: the walk is used from then on.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

fn open_with(root: &Path, relative: &Path, flags: OFlags, walk_only: bool) -> io::Result<File> {
    let dir = root_dir(root)?;
    let relative_or_dot = if relative.as_os_str().is_empty() { Path::new(".") } else { relative };
    let fast = if walk_only { None } else { openat2_beneath(dir.as_fd(), relative_or_dot, flags) };
    let opened = match fast {
        Some(result) => result,
        None => walk(dir.as_fd(), relative_or_dot, flags),
    };
    opened.map(File::from).map_err(|f| f.named(root, relative))
}

/// `None` when the kernel has no `openat2` (or a seccomp filter refuses it).
fn openat2_beneath(dir: BorrowedFd<'_>, relative: &Path, flags: OFlags) -> Option<Result<OwnedFd, Fail>> {
    if NO_OPENAT2.load(Ordering::Relaxed) {
        return None;
    }
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
    for _ in 0..RETRIES {
        return match rustix::fs::openat2(dir, relative, flags, Mode::empty(), resolve) {
            Ok(fd) => Some(Ok(fd)),
            Err(Errno::AGAIN) => continue,
            Err(Errno::XDEV) => Some(Err(Fail::Outside)),
            Err(Errno::NOSYS) => {
                NO_OPENAT2.store(true, Ordering::Relaxed);
                None
            }
            // Some container seccomp profiles refuse system calls they do not know with EPERM.
            Err(Errno::PERM) => None,
            Err(e) => Some(Err(e.into())),
        };
    }
    Some(Err(Errno::AGAIN.into()))
}

/// The parts of a relative path to resolve, as the kernel reads it: names, `..`, and `.`
/// (also for an empty part, `a//b`, or a trailing `/`), which asks for the name before it
/// to be a folder.
fn parts(path: &Path) -> Vec<OsString> {
    use std::os::unix::ffi::OsStrExt as _;
    path.as_os_str()
        .as_bytes()
        .split(|&b| b == b'/')
        .enumerate()
        // A leading empty part is an absolute path's root, refused before this.
        .filter(|&(i, part)| !(i == 0 && part.is_empty()))
        .map(|(_, part)| if part.is_empty() { OsString::from(".") } else { OsStr::from_bytes(part).to_os_string() })
        .collect()
}

/// Resolves one component at a time from `root`: each folder opened with `O_NOFOLLOW`, each
/// link read and its target resolved in turn; `..` never climbs above `root`, and an
/// absolute link counts as outside, as with `RESOLVE_BENEATH`.
fn walk(root: BorrowedFd<'_>, relative: &Path, flags: OFlags) -> Result<OwnedFd, Fail> {
    if relative.has_root() {
        return Err(Fail::Outside);
    }
    let mut pending: VecDeque<OsString> = parts(relative).into();
    // The folders entered, below `root`.
    let mut entered: Vec<OwnedFd> = Vec::new();
    let mut links = 0;
    loop {
        let here = entered.last().map_or(root, |d| d.as_fd());
        let Some(name) = pending.pop_front() else {
            // The path ended on a folder already entered (`a/..`, `.`).
            return Ok(rustix::fs::openat(here, ".", flags, Mode::empty())?);
        };
        if name == OsStr::new("..") {
            if entered.pop().is_none() {
                return Err(Fail::Outside);
            }
            continue;
        }
        // The name before it was entered as a folder (or this is the start): nothing to do.
        if name == OsStr::new(".") {
            continue;
        }
        let stat = rustix::fs::statat(here, &name, AtFlags::SYMLINK_NOFOLLOW)?;
        if FileType::from_raw_mode(stat.st_mode) == FileType::Symlink {
            links += 1;
            if links > MAX_LINKS {
                return Err(Errno::LOOP.into());
            }
            let target =
                PathBuf::from(OsString::from_vec(rustix::fs::readlinkat(here, &name, Vec::new())?.into_bytes()));
            if target.has_root() {
                return Err(Fail::Outside);
            }
            for part in parts(&target).into_iter().rev() {
                pending.push_front(part);
            }
            continue;
        }
        if pending.is_empty() {
            let fd = rustix::fs::openat(here, &name, flags | OFlags::NOFOLLOW, Mode::empty())?;
            // Swapped for a link since the stat: `O_PATH | O_NOFOLLOW` opens the link itself.
            if FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode) == FileType::Symlink {
                return Err(Errno::LOOP.into());
            }
            return Ok(fd);
        }
        let dir_flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        entered.push(rustix::fs::openat(here, &name, dir_flags, Mode::empty())?);
    }
}

/// A folder of a random name, made by kiln with `mkdir` (so nothing was there before it),
/// removed with what it holds when dropped unless [kept](FreshDir::keep).
#[derive(Debug)]
pub struct FreshDir {
    path: Option<PathBuf>,
}

impl FreshDir {
    /// Makes `parent/.{prefix}-{random}`, readable by its owner only.
    pub fn create(parent: &Path, prefix: &str) -> io::Result<Self> {
        use std::os::unix::fs::DirBuilderExt as _;
        let mut last = None;
        for _ in 0..16 {
            let mut random = [0u8; 12];
            rustix::rand::getrandom(&mut random, rustix::rand::GetRandomFlags::empty())?;
            let path = parent.join(format!(".{prefix}-{}", hex::encode(random)));
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(FreshDir { path: Some(path) }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no free name for a work folder")))
    }

    pub fn path(&self) -> &Path {
        self.path.as_deref().expect("a fresh folder has its path until kept")
    }

    /// Leaves the folder in place.
    pub fn keep(mut self) -> PathBuf {
        self.path.take().expect("a fresh folder has its path until kept")
    }
}

impl Drop for FreshDir {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            // Never follows a link: at worst a link put in its place is what goes.
            let _ = std::fs::remove_dir_all(path);
        }
    }
}

/// Creates `path`, which must not exist yet (not even as a dangling link).
pub fn create_new(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc_flags(OFlags::NOFOLLOW | OFlags::CLOEXEC))
        .mode(0o644)
        .open(path)
}

/// Creates `path` as [`create_new`] does and writes `bytes` into it (a file in a folder
/// kiln just made, which nothing else can have put a link in).
pub fn create_with(path: &Path, bytes: &[u8]) -> io::Result<()> {
    create_new(path)?.write_all(bytes)
}

fn libc_flags(flags: OFlags) -> i32 {
    flags.bits() as i32
}

/// Writes `bytes` as `dir/name`: made fresh in a folder of its own, then renamed into
/// place, so a link at `dir/name` is replaced and what it pointed at is left alone.
pub fn write_new(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{name:?} is not a file name")));
    }
    let fresh = FreshDir::create(dir, "kiln-write")?;
    let staged = fresh.path().join(name);
    create_with(&staged, bytes)?;
    std::fs::rename(&staged, dir.join(name))
}

/// Whether `path` is a plain relative path: not empty, not absolute, only names (no `.` or
/// `..`), as [`write_beneath`] takes.
pub fn is_plain_relative(path: &Path) -> bool {
    !path.as_os_str().is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)))
}

/// Writes `bytes` as `root/relative`, a plain relative path (no `..`, not absolute) whose
/// folders are made when missing and must stay inside `root`. The file is made fresh under
/// a random name next to it and renamed into place, so a link standing at the name is
/// replaced, never written through; an unfinished write leaves nothing under the name.
pub fn write_beneath(root: &Path, relative: &Path, bytes: &[u8]) -> io::Result<()> {
    let (Some(name), true) = (relative.file_name(), is_plain_relative(relative)) else {
        let why = format!("{} is not a plain relative path (no .., not absolute)", relative.display());
        return Err(io::Error::new(io::ErrorKind::InvalidInput, why));
    };
    let parent = relative.parent().unwrap_or(Path::new(""));
    create_dir_beneath(root, parent)?;
    let dir = open_with(root, parent, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, false)?;
    let mut random = [0u8; 12];
    rustix::rand::getrandom(&mut random, rustix::rand::GetRandomFlags::empty())?;
    let mut staged = OsString::from(".kiln-write-");
    staged.push(hex::encode(random));
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut file = File::from(rustix::fs::openat(&dir, &staged, flags, Mode::from_raw_mode(0o644))?);
    let written = file.write_all(bytes).and_then(|()| file.sync_data());
    drop(file);
    let done = written.and_then(|()| Ok(rustix::fs::renameat(&dir, &staged, &dir, name)?));
    if done.is_err() {
        let _ = rustix::fs::unlinkat(&dir, &staged, AtFlags::empty());
    }
    done
}

/// Moves `from` to `to`, replacing what is there: a file or a link is replaced by the rename
/// itself (a link, never what it points at), and a folder (an earlier run's output) is
/// removed first.
pub fn rename_into(from: &Path, to: &Path) -> io::Result<()> {
    match std::fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(e) => match std::fs::symlink_metadata(to) {
            // A folder cannot be renamed over a link, nor over a folder that holds something.
            Ok(meta) if meta.file_type().is_symlink() => {
                std::fs::remove_file(to)?;
                std::fs::rename(from, to)
            }
            Ok(meta) if meta.is_dir() && std::fs::symlink_metadata(from).is_ok_and(|m| m.is_dir()) => {
                std::fs::remove_dir_all(to)?;
                std::fs::rename(from, to)
            }
            _ => Err(e),
        },
    }
}

/// What [`plant`] makes.
#[doc(hidden)]
pub enum Plant {
    File,
    Dir,
    Link(PathBuf),
}

/// For the tests and the fuzz target that build trees to resolve paths in: makes `names`
/// (plain names) under `root` as `what`, making missing folders on the way and never
/// following a link the tree already holds (a link to `/` or beside the root must never
/// carry a node onto the host); a node under a link or a file is skipped, and a name
/// already taken is left as it is.
#[doc(hidden)]
pub fn plant(root: &Path, names: &[&str], what: Plant) {
    let Some((last, folders)) = names.split_last() else { return };
    let mut path = root.to_path_buf();
    for name in folders {
        path.push(name);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return,
            Err(_) => {
                let _ = std::fs::create_dir(&path);
            }
        }
    }
    path.push(last);
    let _ = match what {
        // create_new does not follow a link already at the name (O_CREAT | O_EXCL).
        Plant::File => create_new(&path).and_then(|mut f| f.write_all(b"inside")),
        Plant::Dir => std::fs::create_dir(&path),
        Plant::Link(target) => std::os::unix::fs::symlink(target, &path),
    };
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    /// root/ holds a/file, a/b/, inside → a/file, up → ../outside/file (beside root), abs →
    /// root's own file by absolute path; outside/ holds file.
    fn tree() -> (tempfile::TempDir, PathBuf) {
        let top = tempfile::tempdir().unwrap();
        let root = top.path().join("root");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::create_dir_all(top.path().join("outside")).unwrap();
        std::fs::write(root.join("a/file"), "inside").unwrap();
        std::fs::write(top.path().join("outside/file"), "outside").unwrap();
        symlink("a/file", root.join("inside")).unwrap();
        symlink("../outside/file", root.join("up")).unwrap();
        symlink(root.join("a/file"), root.join("abs")).unwrap();
        symlink("../..", root.join("a/b/top")).unwrap();
        symlink("..", root.join("a/b/parent")).unwrap();
        symlink("/proc/self/root/etc/passwd", root.join("magic")).unwrap();
        symlink("loop2", root.join("loop1")).unwrap();
        symlink("loop1", root.join("loop2")).unwrap();
        symlink(top.path().join("outside"), root.join("outdir")).unwrap();
        symlink("nowhere", root.join("dangling")).unwrap();
        (top, root)
    }

    fn read(file: io::Result<File>) -> Result<String, String> {
        let mut text = String::new();
        match file {
            Ok(mut f) => f.read_to_string(&mut text).map(|_| text).map_err(|e| e.to_string()),
            Err(e) => Err(if is_outside(&e) { "outside".into() } else { format!("{:?}", e.kind()) }),
        }
    }

    #[test]
    fn links_are_followed_only_while_they_stay_inside() {
        let (_top, root) = tree();
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("a/file", Ok("inside")),
            ("inside", Ok("inside")),
            ("a/b/../file", Ok("inside")),
            ("a/b/parent/file", Ok("inside")),
            ("a/b/top/a/file", Ok("inside")),
            ("./a/./file", Ok("inside")),
            ("up", Err("outside")),
            ("abs", Err("outside")),
            ("magic", Err("outside")),
            ("outdir/file", Err("outside")),
            ("../outside/file", Err("outside")),
            ("a/../../outside/file", Err("outside")),
            ("a/b/top/../outside/file", Err("outside")),
            ("/etc/passwd", Err("outside")),
            ("missing", Err("NotFound")),
            ("dangling", Err("NotFound")),
            ("a/file/x", Err("NotADirectory")),
        ];
        for (path, expected) in cases {
            let expected = expected.map(String::from).map_err(String::from);
            assert_eq!(read(open_beneath(&root, Path::new(path))), expected, "openat2: {path}");
            assert_eq!(read(walk_beneath(&root, Path::new(path))), expected, "walk: {path}");
        }
        for open in [open_beneath, walk_beneath] {
            let e = open(&root, Path::new("loop1")).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc_errno(Errno::LOOP)), "{e}");
            // A folder opens, and reads as one.
            assert!(open(&root, Path::new("a/b/parent")).unwrap().metadata().unwrap().is_dir());
            assert!(open(&root, Path::new("")).unwrap().metadata().unwrap().is_dir());
        }
    }

    fn libc_errno(e: Errno) -> i32 {
        e.raw_os_error()
    }

    #[test]
    fn refusals_name_the_file_and_the_folder() {
        let (_top, root) = tree();
        let e = open_beneath(&root, Path::new("up")).unwrap_err();
        assert_eq!(e.to_string(), format!("{}/up points outside the folder {}", root.display(), root.display()));
        let e = metadata_beneath(&root, Path::new("outdir/file")).unwrap_err();
        assert!(is_outside(&e) && e.to_string().contains("outdir/file"), "{e}");
        assert!(metadata_beneath(&root, Path::new("inside")).unwrap().is_file());
        assert_eq!(read_beneath(&root, Path::new("inside"), 6).unwrap(), b"inside");
        assert!(read_beneath(&root, Path::new("inside"), 5).unwrap_err().to_string().contains("larger than 5"));
    }

    #[test]
    fn special_files_are_not_opened() {
        let (_top, root) = tree();
        let fifo = root.join("fifo");
        rustix::fs::mknodat(rustix::fs::CWD, &fifo, FileType::Fifo, Mode::from_raw_mode(0o644), 0).unwrap();
        let e = open_beneath(&root, Path::new("fifo")).unwrap_err();
        assert!(e.to_string().contains("is not a regular file"), "{e}");
    }

    #[test]
    fn folders_are_made_beneath_and_links_out_are_refused() {
        let (top, root) = tree();
        create_dir_beneath(&root, Path::new("new/blobs/sha256")).unwrap();
        assert!(root.join("new/blobs/sha256").is_dir());
        create_dir_beneath(&root, Path::new("a/b/parent/c")).unwrap();
        assert!(root.join("a/c").is_dir());
        let e = create_dir_beneath(&root, Path::new("outdir/sha256")).unwrap_err();
        assert!(is_outside(&e), "{e}");
        assert!(!top.path().join("outside/sha256").exists());
        assert!(create_dir_beneath(&root, Path::new("dangling/x")).is_err());
        assert!(!root.join("nowhere").exists());
    }

    #[test]
    fn writes_replace_links_and_never_follow_them() {
        let (top, root) = tree();
        let victim = top.path().join("outside/file");
        symlink(&victim, root.join("tag")).unwrap();
        symlink(top.path().join("outside/planted"), root.join("digest")).unwrap();
        write_new(&root, "tag", b"v1").unwrap();
        write_new(&root, "digest", b"sha256:x").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "outside");
        assert!(!top.path().join("outside/planted").exists());
        assert_eq!(std::fs::read_to_string(root.join("tag")).unwrap(), "v1");
        assert!(std::fs::symlink_metadata(root.join("digest")).unwrap().is_file());
        // Nothing left beside them.
        let names: Vec<String> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(names.is_empty(), "{names:?}");
        assert!(write_new(&root, "a/x", b"").is_err());

        // create_new refuses any name that exists, a dangling link included.
        assert_eq!(create_new(&root.join("dangling")).unwrap_err().kind(), io::ErrorKind::AlreadyExists);
        assert!(!root.join("nowhere").exists());
    }

    #[test]
    fn files_written_beneath_stay_inside_and_replace_links() {
        let (top, root) = tree();
        write_beneath(&root, Path::new("new/dir/digest"), b"sha256:1").unwrap();
        assert_eq!(std::fs::read(root.join("new/dir/digest")).unwrap(), b"sha256:1");
        // A link at the name is replaced, what it pointed at left alone.
        write_beneath(&root, Path::new("up"), b"mine").unwrap();
        assert_eq!(std::fs::read_to_string(top.path().join("outside/file")).unwrap(), "outside");
        assert!(!std::fs::symlink_metadata(root.join("up")).unwrap().is_symlink());
        assert_eq!(std::fs::read(root.join("up")).unwrap(), b"mine");
        // A folder on the way that leaves the root, `..`, or an absolute path: refused.
        let outside = write_beneath(&root, Path::new("outdir/x"), b"no").unwrap_err();
        assert!(is_outside(&outside), "{outside}");
        assert!(!top.path().join("outside/x").exists());
        for bad in ["../x", "/tmp/x", "a/../x", ""] {
            let e = write_beneath(&root, Path::new(bad), b"no").unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad}: {e}");
        }
        assert!(!top.path().join("x").exists());
        // Only the named files were made: no staged leftovers.
        let names: Vec<String> = std::fs::read_dir(root.join("new/dir"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["digest"]);
    }

    #[test]
    fn fresh_folders_are_new_and_removed_when_dropped() {
        let (top, root) = tree();
        let (one, two) = (FreshDir::create(&root, "kiln-x").unwrap(), FreshDir::create(&root, "kiln-x").unwrap());
        assert_ne!(one.path(), two.path());
        std::fs::write(one.path().join("f"), "x").unwrap();
        let path = one.path().to_path_buf();
        drop(one);
        assert!(!path.exists());
        let kept = two.keep();
        assert!(kept.is_dir());

        // A folder moved into place over a link replaces the link, and over an older folder
        // replaces that.
        let staged = FreshDir::create(&root, "kiln-y").unwrap();
        std::fs::create_dir(staged.path().join("rootfs")).unwrap();
        symlink(top.path().join("outside"), root.join("rootfs")).unwrap();
        rename_into(&staged.path().join("rootfs"), &root.join("rootfs")).unwrap();
        assert!(std::fs::symlink_metadata(root.join("rootfs")).unwrap().is_dir());
        assert_eq!(std::fs::read_dir(top.path().join("outside")).unwrap().count(), 1);
        std::fs::create_dir(staged.path().join("rootfs")).unwrap();
        std::fs::write(root.join("rootfs/old"), "x").unwrap();
        rename_into(&staged.path().join("rootfs"), &root.join("rootfs")).unwrap();
        assert!(!root.join("rootfs/old").exists());
    }

    /// A xorshift generator: the same trees every run.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    /// The fuzz target's property (`fuzz/fuzz_targets/open_beneath.rs`) over seeded random
    /// trees of files, folders and links: `openat2` and the walk open the same file or both
    /// refuse (agreeing on "outside"), and nothing beside the root is ever opened.
    #[test]
    fn openat2_and_the_walk_agree_on_random_trees() {
        use std::os::unix::fs::MetadataExt as _;
        const PARTS: [&str; 7] = ["a", "b", "c", ".", "..", "", "outside"];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..400 {
            let top = tempfile::tempdir().unwrap();
            let (root, outside) = (top.path().join("root"), top.path().join("outside"));
            std::fs::create_dir_all(&root).unwrap();
            std::fs::create_dir_all(&outside).unwrap();
            std::fs::write(outside.join("a"), "outside").unwrap();
            for _ in 0..rng.below(10) {
                let depth = 1 + rng.below(3);
                let names: Vec<&str> = (0..depth).map(|_| PARTS[rng.below(3) as usize]).collect();
                let what = match rng.below(3) {
                    0 => Plant::File,
                    1 => Plant::Dir,
                    _ => {
                        let len = rng.below(4);
                        let target: Vec<&str> = (0..len).map(|_| PARTS[rng.below(7) as usize]).collect();
                        Plant::Link(PathBuf::from(match rng.below(4) {
                            0 => format!("{}/{}", top.path().display(), target.join("/")),
                            1 => format!("/{}", target.join("/")),
                            _ => target.join("/"),
                        }))
                    }
                };
                plant(&root, &names, what);
            }
            let len = rng.below(5);
            let path: Vec<&str> = (0..len).map(|_| PARTS[rng.below(7) as usize]).collect();
            let path = Path::new(&path.join("/")).to_path_buf();
            let beside = std::fs::metadata(outside.join("a")).unwrap().ino();
            match (open_beneath(&root, &path), walk_beneath(&root, &path)) {
                (Ok(a), Ok(b)) => {
                    let (a, b) = (a.metadata().unwrap(), b.metadata().unwrap());
                    assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()), "{path:?}");
                    assert_ne!(a.ino(), beside, "{path:?} opened the file beside the root");
                    assert_ne!(a.ino(), std::fs::metadata(&outside).unwrap().ino(), "{path:?}");
                }
                (Err(a), Err(b)) => assert_eq!(is_outside(&a), is_outside(&b), "{path:?}: {a} / {b}"),
                (a, b) => panic!("{path:?}: openat2 {a:?}, walk {b:?}"),
            }
        }
    }
}
