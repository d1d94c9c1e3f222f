//! Directories found inside the root the way a process chrooted into it would find them.
//!
//! Each step opens a single component with `O_NOFOLLOW` relative to a directory already
//! known to be inside the root, so no step can leave it. Symlinks met along the way are
//! read and their targets walked in turn, within the root: an absolute target starts
//! again at the root, and `..` never climbs above it (as `openat2(RESOLVE_IN_ROOT)` and
//! `filepath-securejoin` do). `..` is never handed to the kernel: the walk keeps the
//! canonical path (real directories only) and reopens its parent from the root.
//!
//! With `create`, missing directories are made (mode 0755), so a file under a dangling
//! symlink lands where the symlink points, inside the root, as umoci does.

use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;

use super::names;

/// How many symlinks one resolution may follow before giving up (Linux's limit).
const MAX_SYMLINKS: usize = 40;

/// A directory inside the root: a handle on it, and its path from the root with every
/// symlink resolved (components joined by `/`; empty for the root itself).
pub struct Dir {
    pub fd: OwnedFd,
    pub path: Vec<u8>,
}

/// The root directory, and the last directory resolved (entries of a layer come grouped
/// by directory, so most lookups repeat the previous one).
pub struct Root {
    fd: OwnedFd,
    last: Option<(Vec<u8>, Dir)>,
}

fn dup(fd: &OwnedFd) -> Result<OwnedFd, Errno> {
    rustix::io::fcntl_dupfd_cloexec(fd, 0)
}

fn open_dir_nofollow(dir: impl AsFd, name: &[u8]) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(dir, name, OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
}

impl Root {
    pub fn new(fd: OwnedFd) -> Self {
        Self { fd, last: None }
    }

    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Forgets the remembered lookup: to be called whenever anything is removed or
    /// replaced, which may change where a path leads.
    pub fn forget(&mut self) {
        self.last = None;
    }

    /// The directory that `parts` (already checked by [`names::components`]) lead to.
    pub fn dir(&mut self, parts: &[&[u8]], create: bool) -> Result<Dir, Errno> {
        let key = names::join(parts);
        if let Some((last, dir)) = &self.last
            && *last == key
        {
            return Ok(Dir { fd: dup(&dir.fd)?, path: dir.path.clone() });
        }
        let dir = self.walk(parts, create)?;
        let remembered = Dir { fd: dup(&dir.fd)?, path: dir.path.clone() };
        self.last = Some((key, remembered));
        Ok(dir)
    }

    /// Reopens a directory by its canonical path (no symlinks in it), refusing symlinks.
    pub fn reopen(&self, canonical: &[u8]) -> Result<OwnedFd, Errno> {
        let mut dir = dup(&self.fd)?;
        for c in canonical.split(|b| *b == b'/').filter(|c| !c.is_empty()) {
            dir = open_dir_nofollow(&dir, c)?;
        }
        Ok(dir)
    }

    fn walk(&self, parts: &[&[u8]], create: bool) -> Result<Dir, Errno> {
        // Components still to walk, the next one last.
        let mut todo: Vec<Vec<u8>> = parts.iter().rev().map(|c| c.to_vec()).collect();
        let mut canonical: Vec<Vec<u8>> = Vec::new();
        let mut cur = self.reopen(b"")?;
        let mut links = 0;
        while let Some(c) = todo.pop() {
            match c.as_slice() {
                b"" | b"." => continue,
                b".." => {
                    if canonical.pop().is_some() {
                        cur = self.reopen(&canonical.join(&b'/'))?;
                    }
                    continue;
                }
                _ => {}
            }
            let fd = match rustix::fs::openat(
                &cur,
                c.as_slice(),
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => fd,
                Err(Errno::NOENT) if create => {
                    match rustix::fs::mkdirat(&cur, c.as_slice(), Mode::from_raw_mode(0o755)) {
                        Ok(()) => {
                            let made = open_dir_nofollow(&cur, &c)?;
                            // Not left to the umask: implicit directories are 0755 everywhere.
                            fix_mode(&made, 0o755)?;
                            made
                        }
                        // Someone made it meanwhile: look again.
                        Err(Errno::EXIST) => {
                            todo.push(c);
                            continue;
                        }
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            };
            let st = rustix::fs::fstat(&fd)?;
            match FileType::from_raw_mode(st.st_mode) {
                FileType::Directory => {
                    cur = fd;
                    canonical.push(c);
                }
                FileType::Symlink => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(Errno::LOOP);
                    }
                    let target = rustix::fs::readlinkat(&cur, c.as_slice(), Vec::new())?.into_bytes();
                    if target.starts_with(b"/") {
                        canonical.clear();
                        cur = self.reopen(b"")?;
                    }
                    todo.extend(target.split(|b| *b == b'/').rev().map(<[u8]>::to_vec));
                }
                _ => return Err(Errno::NOTDIR),
            }
        }
        Ok(Dir { fd: cur, path: canonical.join(&b'/') })
    }
}

/// Sets a directory's mode through an `O_PATH` handle (which `fchmod` refuses).
fn fix_mode(dir: &OwnedFd, mode: u32) -> Result<(), Errno> {
    rustix::fs::chmodat(dir, ".", Mode::from_raw_mode(mode), rustix::fs::AtFlags::empty())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt as _, symlink};
    use std::path::Path;

    use rustix::fs::ResolveFlags;

    use super::*;

    fn root(path: &Path) -> Root {
        Root::new(rustix::fs::open(path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).unwrap())
    }

    fn split(p: &str) -> Vec<&[u8]> {
        names::components(p.as_bytes()).unwrap()
    }

    /// Resolves like the kernel would for a process chrooted into `root`.
    fn kernel(root: &Root, p: &str) -> Result<(u64, u64), Errno> {
        let path = if p.is_empty() { "." } else { p };
        let fd = rustix::fs::openat2(
            root.fd(),
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )?;
        let st = rustix::fs::fstat(&fd)?;
        Ok((st.st_dev, st.st_ino))
    }

    #[test]
    fn resolves_like_a_chroot() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path().join("root");
        std::fs::create_dir_all(r.join("usr/lib/x")).unwrap();
        std::fs::create_dir_all(r.join("etc")).unwrap();
        std::fs::write(r.join("etc/file"), "").unwrap();
        symlink("/", r.join("slash")).unwrap();
        symlink("..", r.join("usr/up")).unwrap();
        symlink("../../../..", r.join("usr/lib/far")).unwrap();
        symlink("usr/lib", r.join("lib")).unwrap();
        symlink("/usr/lib/x/../..", r.join("abs")).unwrap();
        symlink("lib/../up", r.join("usr/chain")).unwrap();
        symlink("loop2", r.join("loop1")).unwrap();
        symlink("loop1", r.join("loop2")).unwrap();
        symlink(tmp.path(), r.join("out")).unwrap();
        let mut root = root(&r);
        for p in [
            "",
            "usr",
            "slash",
            "slash/usr/lib",
            "usr/up",
            "usr/up/usr/up/usr",
            "usr/lib/far",
            "lib/x",
            "abs",
            "usr/chain",
            "slash/slash/lib/../..",
            "lib/../lib/x",
            "slash/lib/x/../../usr/up/etc",
        ] {
            let ours = root.dir(&split(p), false).unwrap_or_else(|e| panic!("{p}: {e}"));
            let st = rustix::fs::fstat(&ours.fd).unwrap();
            // Entry names are cleaned lexically first (as umoci does), then resolved.
            let cleaned = String::from_utf8(names::join(&split(p))).unwrap();
            match kernel(&root, &cleaned) {
                Err(Errno::NOSYS) => eprintln!("openat2 unavailable: not comparing {p:?} with the kernel"),
                theirs => assert_eq!(Ok((st.st_dev, st.st_ino)), theirs, "{p}"),
            }
        }
        assert_eq!(root.dir(&split("lib/x"), false).unwrap().path, b"usr/lib/x");
        assert_eq!(root.dir(&split("usr/lib/far/etc"), false).unwrap().path, b"etc");
        assert_eq!(root.dir(&split("loop1"), false).err(), Some(Errno::LOOP));
        assert_eq!(root.dir(&split("etc/file"), false).err(), Some(Errno::NOTDIR));
        // An absolute link to the sandbox dangles inside the root.
        assert_eq!(root.dir(&split("out"), false).err(), Some(Errno::NOENT));
    }

    #[test]
    fn creates_missing_directories_where_links_lead() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path().join("root");
        std::fs::create_dir(&r).unwrap();
        symlink(tmp.path().join("elsewhere"), r.join("out")).unwrap();
        symlink("../../..", r.join("up")).unwrap();
        let mut root = root(&r);
        let made = root.dir(&split("out/a/b"), true).unwrap();
        let expected = format!("{}/elsewhere/a/b", tmp.path().strip_prefix("/").unwrap().display());
        assert_eq!(String::from_utf8(made.path).unwrap(), expected);
        assert!(r.join(&expected).is_dir());
        assert!(!tmp.path().join("elsewhere").exists(), "nothing made outside the root");
        assert_eq!(std::fs::metadata(r.join(&expected)).unwrap().mode() & 0o7777, 0o755);
        assert_eq!(root.dir(&split("up/c"), true).unwrap().path, b"c");
        assert!(r.join("c").is_dir());
    }
}
