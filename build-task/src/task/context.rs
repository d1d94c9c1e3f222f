//! The build context as BuildKit's file sync sees it: every entry under a folder that
//! the include and exclude patterns let through, in the order fsutil walks (parents
//! before children, siblings sorted by name bytes), each with an fsutil `Stat`.

use std::fs::Metadata;
use std::io;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};

use kiln_proto::fsutil::types::Stat;

use crate::task::patterns::PatternList;

/// One entry to send, and where its content is on disk.
#[derive(Debug, Clone)]
pub struct ContextEntry {
    pub stat: Stat,
    pub path: PathBuf,
}

impl ContextEntry {
    /// Regular files are the entries whose content the receiver may ask for.
    pub fn has_data(&self) -> bool {
        self.stat.mode & go_mode::TYPE == 0
    }
}

/// Go's `os.FileMode` bits, which fsutil puts on the wire.
pub mod go_mode {
    pub const DIR: u32 = 1 << 31;
    pub const SYMLINK: u32 = 1 << 27;
    pub const DEVICE: u32 = 1 << 26;
    pub const NAMED_PIPE: u32 = 1 << 25;
    pub const SOCKET: u32 = 1 << 24;
    pub const SETUID: u32 = 1 << 23;
    pub const SETGID: u32 = 1 << 22;
    pub const CHAR_DEVICE: u32 = 1 << 21;
    pub const STICKY: u32 = 1 << 20;
    /// The bits that make an entry something other than a regular file.
    pub const TYPE: u32 = DIR | SYMLINK | NAMED_PIPE | SOCKET | DEVICE | CHAR_DEVICE | (1 << 19);
}

/// Go's `FileMode` for a file's metadata.
pub fn go_file_mode(meta: &Metadata) -> u32 {
    let mode = meta.mode();
    let mut out = mode & 0o777;
    let ft = meta.file_type();
    if ft.is_dir() {
        out |= go_mode::DIR;
    } else if ft.is_symlink() {
        out |= go_mode::SYMLINK;
    } else if ft.is_fifo() {
        out |= go_mode::NAMED_PIPE;
    } else if ft.is_socket() {
        out |= go_mode::SOCKET;
    } else if ft.is_char_device() {
        out |= go_mode::DEVICE | go_mode::CHAR_DEVICE;
    } else if ft.is_block_device() {
        out |= go_mode::DEVICE;
    }
    if mode & 0o4000 != 0 {
        out |= go_mode::SETUID;
    }
    if mode & 0o2000 != 0 {
        out |= go_mode::SETGID;
    }
    if mode & 0o1000 != 0 {
        out |= go_mode::STICKY;
    }
    out
}

fn stat_of(rel: &str, path: &Path, meta: &Metadata) -> io::Result<Stat> {
    let ft = meta.file_type();
    let linkname =
        if ft.is_symlink() { std::fs::read_link(path)?.to_string_lossy().into_owned() } else { String::new() };
    let (devmajor, devminor) = if ft.is_char_device() || ft.is_block_device() {
        let rdev = meta.rdev();
        (((rdev >> 8) & 0xfff) as i64, ((rdev & 0xff) | ((rdev >> 12) & 0xfff00)) as i64)
    } else {
        (0, 0)
    };
    Ok(Stat {
        path: rel.to_string(),
        mode: go_file_mode(meta),
        uid: meta.uid(),
        gid: meta.gid(),
        size: if ft.is_file() { meta.len() as i64 } else { 0 },
        mod_time: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        linkname,
        devmajor,
        devminor,
        xattrs: Default::default(),
    })
}

/// Lists what to send from `root`.
pub fn walk(root: &Path, includes: &PatternList, excludes: &PatternList) -> io::Result<Vec<ContextEntry>> {
    let mut out = Vec::new();
    let mut pending = Vec::new();
    walk_dir(root, "", includes, excludes, &mut pending, &mut out)?;
    Ok(out)
}

/// A directory not sent yet: it is sent before the first entry inside it that is.
struct Pending {
    entry: ContextEntry,
    sent: bool,
}

fn walk_dir(
    dir: &Path,
    rel_dir: &str,
    includes: &PatternList,
    excludes: &PatternList,
    pending: &mut Vec<Pending>,
    out: &mut Vec<ContextEntry>,
) -> io::Result<()> {
    let mut names: Vec<_> = std::fs::read_dir(dir)?.map(|e| e.map(|e| e.file_name())).collect::<Result<_, _>>()?;
    names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
    for name in names {
        let path = dir.join(&name);
        let name = name.to_string_lossy();
        let rel = if rel_dir.is_empty() { name.to_string() } else { format!("{rel_dir}/{name}") };
        let meta = std::fs::symlink_metadata(&path)?;
        let excluded = excludes.matches(&rel);
        let included = includes.is_empty() || includes.matches(&rel);
        let entry = || -> io::Result<ContextEntry> {
            Ok(ContextEntry { stat: stat_of(&rel, &path, &meta)?, path: path.clone() })
        };
        if meta.is_dir() {
            if excluded && !excludes.has_exclusions() {
                continue;
            }
            let descend = included || includes.may_match_below(&rel);
            if !descend {
                continue;
            }
            pending.push(Pending { entry: entry()?, sent: false });
            if !excluded && included {
                send_pending(pending, out);
            }
            walk_dir(&path, &rel, includes, excludes, pending, out)?;
            pending.pop();
        } else if !excluded && included {
            send_pending(pending, out);
            out.push(entry()?);
        }
    }
    Ok(())
}

fn send_pending(pending: &mut [Pending], out: &mut Vec<ContextEntry>) {
    for p in pending.iter_mut().filter(|p| !p.sent) {
        p.sent = true;
        out.push(p.entry.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(root: &Path, inc: &[&str], exc: &[&str]) -> Vec<String> {
        let entries = walk(root, &PatternList::new(inc).unwrap(), &PatternList::new(exc).unwrap()).unwrap();
        entries.into_iter().map(|e| e.stat.path).collect()
    }

    #[test]
    fn order_and_filters() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for f in ["a.txt", "a/b", "a/c/d", "b.log", "keep/x.log", "keep/y"] {
            let p = root.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, f).unwrap();
        }
        std::os::unix::fs::symlink("a.txt", root.join("link")).unwrap();
        assert_eq!(
            paths(root, &[], &[]),
            ["a", "a/b", "a/c", "a/c/d", "a.txt", "b.log", "keep", "keep/x.log", "keep/y", "link"]
        );
        assert_eq!(paths(root, &[], &["*.log", "a/c"]), ["a", "a/b", "a.txt", "keep", "keep/x.log", "keep/y", "link"]);
        assert_eq!(
            paths(root, &[], &["keep", "!keep/y"]),
            ["a", "a/b", "a/c", "a/c/d", "a.txt", "b.log", "keep", "keep/y", "link"]
        );
        assert_eq!(paths(root, &["a/c/d"], &[]), ["a", "a/c", "a/c/d"]);
        let entries = walk(root, &PatternList::default(), &PatternList::default()).unwrap();
        let link = entries.iter().find(|e| e.stat.path == "link").unwrap();
        assert_eq!(link.stat.linkname, "a.txt");
        assert_ne!(link.stat.mode & go_mode::SYMLINK, 0);
        let a = entries.iter().find(|e| e.stat.path == "a").unwrap();
        assert_eq!(a.stat.mode & go_mode::DIR, go_mode::DIR);
        assert!(entries.iter().find(|e| e.stat.path == "a.txt").unwrap().has_data());
    }
}
