//! Removing trees, wholly (an entry replacing what was there, a whiteout) or all but
//! what the current layer made (whiteouts and opaque directories).
//!
//! Nothing here follows a symlink: every directory is opened with `O_NOFOLLOW` by a
//! single name relative to its parent. The walk holds one descriptor at a time and
//! climbs back with `..` (safe: each directory was entered by its real name, never
//! through a link), so a very deep tree cannot exhaust descriptors or the stack.

use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::names;

fn open_listable(dir: impl AsFd, name: &[u8]) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

fn parent_of(dir: &OwnedFd) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(dir, "..", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
}

/// A directory's entries (`.` and `..` left out) and whether each is a directory.
fn list(dir: &OwnedFd) -> Result<Vec<(Vec<u8>, bool)>, Errno> {
    let mut out = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        match is_dir(dir, name, entry.file_type())? {
            Some(is_dir) => out.push((name.to_vec(), is_dir)),
            // Gone meanwhile.
            None => continue,
        }
    }
    Ok(out)
}

/// Whether the entry `name` of `dir`, listed with type `listed`, is a directory; `None` if
/// it is gone. A filesystem that lists no types (`Unknown`) has the entry looked at.
fn is_dir(dir: &OwnedFd, name: &[u8], listed: FileType) -> Result<Option<bool>, Errno> {
    match listed {
        FileType::Unknown => match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode) == FileType::Directory)),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(e),
        },
        t => Ok(Some(t == FileType::Directory)),
    }
}

fn unlink(dir: impl AsFd, name: &[u8], flags: AtFlags) -> Result<(), Errno> {
    match rustix::fs::unlinkat(dir, name, flags) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes `name` in `dir` and, if it is a directory, everything in it. Whether anything
/// was there.
pub fn remove(dir: &OwnedFd, name: &[u8]) -> Result<bool, Errno> {
    let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(false),
        Err(e) => return Err(e),
    };
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        unlink(dir, name, AtFlags::empty())?;
        return Ok(true);
    }
    // Each level: its name in its parent, and the subdirectories still to empty.
    let mut cur = open_listable(dir, name)?;
    let mut stack = vec![(name.to_vec(), files_removed(&cur)?)];
    while let Some((_, pending)) = stack.last_mut() {
        if let Some(sub) = pending.pop() {
            match open_listable(&cur, &sub) {
                Ok(fd) => {
                    let subdirs = files_removed(&fd)?;
                    cur = fd;
                    stack.push((sub, subdirs));
                }
                // Replaced by something else meanwhile.
                Err(Errno::NOTDIR | Errno::LOOP) => unlink(&cur, &sub, AtFlags::empty())?,
                Err(Errno::NOENT) => {}
                Err(e) => return Err(e),
            }
            continue;
        }
        let (done, _) = stack.pop().expect("the loop runs while the stack has a level");
        if stack.is_empty() {
            unlink(dir, &done, AtFlags::REMOVEDIR)?;
        } else {
            let parent = parent_of(&cur)?;
            unlink(&parent, &done, AtFlags::REMOVEDIR)?;
            cur = parent;
        }
    }
    Ok(true)
}

/// Unlinks everything in `dir` but its subdirectories, which it returns.
fn files_removed(dir: &OwnedFd) -> Result<Vec<Vec<u8>>, Errno> {
    let mut subdirs = Vec::new();
    for (name, is_dir) in list(dir)? {
        if is_dir {
            subdirs.push(name);
        } else {
            unlink(dir, &name, AtFlags::empty())?;
        }
    }
    Ok(subdirs)
}

/// A whiteout of `name` in `dir` (whose path from the root is `dir_path`): removes it,
/// except what `keep` says the current layer made: a kept directory loses only what
/// lower layers put in it. Whether anything was removed.
pub fn white_out(dir: &OwnedFd, dir_path: &[u8], name: &[u8], keep: &dyn Fn(&[u8]) -> bool) -> Result<(), Errno> {
    let path = names::child(dir_path, name);
    if !keep(&path) {
        remove(dir, name)?;
        return Ok(());
    }
    match open_listable(dir, name) {
        Ok(fd) => prune(fd, path, keep),
        // A file or symlink this layer made: nothing of a lower layer to remove.
        Err(Errno::NOTDIR | Errno::LOOP | Errno::NOENT) => Ok(()),
        Err(e) => Err(e),
    }
}

/// An opaque directory: removes what it holds except what `keep` says the current layer
/// made (and, in kept directories, keeps only that).
pub fn make_opaque(dir: &OwnedFd, dir_path: &[u8], keep: &dyn Fn(&[u8]) -> bool) -> Result<(), Errno> {
    let fd = rustix::fs::openat(dir, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    prune(fd, dir_path.to_vec(), keep)
}

/// Removes everything under `start` that `keep` does not name, descending into kept
/// directories.
fn prune(start: OwnedFd, start_path: Vec<u8>, keep: &dyn Fn(&[u8]) -> bool) -> Result<(), Errno> {
    let sweep = |dir: &OwnedFd, dir_path: &[u8]| -> Result<Vec<Vec<u8>>, Errno> {
        let mut kept_dirs = Vec::new();
        for (name, is_dir) in list(dir)? {
            if !keep(&names::child(dir_path, &name)) {
                remove(dir, &name)?;
            } else if is_dir {
                kept_dirs.push(name);
            }
        }
        Ok(kept_dirs)
    };
    let mut cur = start;
    let pending = sweep(&cur, &start_path)?;
    let mut stack = vec![(start_path, pending)];
    while let Some((path, pending)) = stack.last_mut() {
        if let Some(sub) = pending.pop() {
            let sub_path = names::child(path, &sub);
            match open_listable(&cur, &sub) {
                Ok(fd) => {
                    let pending = sweep(&fd, &sub_path)?;
                    cur = fd;
                    stack.push((sub_path, pending));
                }
                Err(Errno::NOTDIR | Errno::LOOP | Errno::NOENT) => {}
                Err(e) => return Err(e),
            }
            continue;
        }
        stack.pop();
        if !stack.is_empty() {
            cur = parent_of(&cur)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::fs;
    use std::os::unix::fs::symlink;

    use super::*;

    fn open(path: &std::path::Path) -> OwnedFd {
        rustix::fs::open(path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).unwrap()
    }

    #[test]
    fn entries_listed_without_a_type_are_looked_at() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("d")).unwrap();
        fs::write(dir.path().join("f"), "").unwrap();
        symlink("d", dir.path().join("link-to-d")).unwrap();
        let fd = open(dir.path());
        assert_eq!(is_dir(&fd, b"d", FileType::Unknown), Ok(Some(true)));
        assert_eq!(is_dir(&fd, b"f", FileType::Unknown), Ok(Some(false)));
        assert_eq!(is_dir(&fd, b"link-to-d", FileType::Unknown), Ok(Some(false)), "a link is not followed");
        assert_eq!(is_dir(&fd, b"gone", FileType::Unknown), Ok(None));
        assert_eq!(is_dir(&fd, b"f", FileType::Directory), Ok(Some(true)), "a listed type is taken as it is");
    }

    #[test]
    fn removes_deep_trees_without_following_links() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("keep"), "x").unwrap();
        let root = tmp.path().join("root");
        let mut deep = root.join("victim");
        for i in 0..1500 {
            deep.push(if i % 2 == 0 { "d" } else { "e" });
        }
        fs::create_dir_all(&deep).unwrap();
        fs::create_dir_all(root.join("victim/a/b")).unwrap();
        fs::write(root.join("victim/a/b/f"), "f").unwrap();
        symlink(&outside, root.join("victim/a/link")).unwrap();
        let dir = open(&root);
        assert!(remove(&dir, b"victim").unwrap());
        assert!(!root.join("victim").exists());
        assert!(!remove(&dir, b"victim").unwrap());
        assert_eq!(fs::read(outside.join("keep")).unwrap(), b"x");
    }

    #[test]
    fn whiteouts_keep_what_the_layer_made() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        for d in ["d/old", "d/kept/old", "d/kept/new"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        fs::write(root.join("d/file"), "").unwrap();
        fs::write(root.join("d/kept/new/f"), "").unwrap();
        let upper: HashSet<&[u8]> = [&b"d"[..], b"d/kept", b"d/kept/new", b"d/kept/new/f"].into_iter().collect();
        let keep = |p: &[u8]| upper.contains(p);
        let dir = open(root);
        make_opaque(&rustix::fs::openat(&dir, "d", OFlags::RDONLY, Mode::empty()).unwrap(), b"d", &keep).unwrap();
        let mut left: Vec<_> = walk(&root.join("d"));
        left.sort();
        assert_eq!(left, ["kept", "kept/new", "kept/new/f"]);
        white_out(&dir, b"", b"d", &|p: &[u8]| p == b"d").unwrap();
        assert!(root.join("d").is_dir() && !root.join("d/kept").exists());
    }

    fn walk(dir: &std::path::Path) -> Vec<String> {
        let mut out = Vec::new();
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            out.push(name.clone());
            if e.file_type().unwrap().is_dir() {
                out.extend(walk(&e.path()).into_iter().map(|c| format!("{name}/{c}")));
            }
        }
        out
    }
}
