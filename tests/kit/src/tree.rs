//! Directory trees read back for comparisons: every path's type, mode, owner, times, link
//! count, link target, content and extended attributes ([`snapshot`]), the hard-link
//! groups, and [`assert_same`] for two root filesystems unpacked by different tools.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

/// What a tree holds, path by path, for comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: (i64, i64),
    /// Hard links to it (its inode's link count).
    pub links: u64,
    pub target: Option<PathBuf>,
    pub content: Option<Vec<u8>>,
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

/// Every path under `root` (the root itself as ""), read without following symlinks.
/// Metadata is read before contents, so that reading does not change access times.
pub fn snapshot(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    let mut files = Vec::new();
    walk(root, root, &mut out, &mut files);
    for (rel, path) in files {
        out.get_mut(&rel).unwrap().content = Some(fs::read(path).unwrap());
    }
    out
}

fn walk(root: &Path, path: &Path, out: &mut BTreeMap<String, Node>, files: &mut Vec<(String, PathBuf)>) {
    let md = fs::symlink_metadata(path).unwrap();
    let rel = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
    let ft = md.file_type();
    let kind = if ft.is_dir() {
        "dir"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_file() {
        "file"
    } else if ft.is_fifo() {
        "fifo"
    } else if ft.is_char_device() {
        "chardev"
    } else {
        "other"
    };
    let mut xattrs = BTreeMap::new();
    if kind != "symlink" {
        for name in xattr_names(path) {
            if let Some(v) = xattr_get(path, &name) {
                xattrs.insert(name, v);
            }
        }
    }
    let node = Node {
        kind,
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        mtime: (md.mtime(), md.mtime_nsec()),
        links: md.nlink(),
        target: ft.is_symlink().then(|| fs::read_link(path).unwrap()),
        content: None,
        xattrs,
    };
    out.insert(rel.clone(), node);
    if ft.is_file() {
        files.push((rel, path.to_path_buf()));
    }
    if ft.is_dir() {
        let mut children: Vec<_> = fs::read_dir(path).unwrap().map(|e| e.unwrap().path()).collect();
        children.sort();
        for child in children {
            walk(root, &child, out, files);
        }
    }
}

fn xattr_names(path: &Path) -> Vec<String> {
    let mut buf = vec![0u8; 64 << 10];
    match rustix::fs::llistxattr(path, &mut buf[..]) {
        Ok(n) => buf[..n]
            .split(|b| *b == 0)
            .filter(|n| !n.is_empty())
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

pub fn xattr_get(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 64 << 10];
    let n = rustix::fs::lgetxattr(path, name, &mut buf[..]).ok()?;
    buf.truncate(n);
    Some(buf)
}

/// Paths sharing an inode (hardlinks), as sorted groups of two or more.
pub fn hardlink_groups(root: &Path) -> Vec<Vec<String>> {
    let mut by_inode: BTreeMap<(u64, u64), Vec<String>> = BTreeMap::new();
    collect_inodes(root, root, &mut by_inode);
    let mut groups: Vec<Vec<String>> = by_inode.into_values().filter(|g| g.len() > 1).collect();
    for g in &mut groups {
        g.sort();
    }
    groups.sort();
    groups
}

fn collect_inodes(root: &Path, dir: &Path, out: &mut BTreeMap<(u64, u64), Vec<String>>) {
    for e in fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        let md = fs::symlink_metadata(&path).unwrap();
        if md.is_dir() {
            collect_inodes(root, &path, out);
        } else {
            out.entry((md.dev(), md.ino()))
                .or_default()
                .push(path.strip_prefix(root).unwrap().to_string_lossy().into_owned());
        }
    }
}

/// Asserts two root filesystems hold the same entries (the roots themselves aside): type,
/// permission bits, owner, link target, content and link count. Times and extended
/// attributes are left out, as tools set them differently.
pub fn assert_same(ours: &Path, theirs: &Path) {
    let shown = |root: &Path| -> BTreeMap<String, String> {
        snapshot(root).into_iter().filter(|(path, _)| !path.is_empty()).map(|(path, n)| (path, summary(&n))).collect()
    };
    let (a, b) = (shown(ours), shown(theirs));
    let mut diffs = Vec::new();
    for key in a.keys().chain(b.keys()).collect::<BTreeSet<_>>() {
        if a.get(key) != b.get(key) {
            diffs.push(format!("  {key}: ours {:?}, theirs {:?}", a.get(key), b.get(key)));
        }
    }
    assert!(
        diffs.is_empty(),
        "{} and {} differ in {} entries:\n{}",
        ours.display(),
        theirs.display(),
        diffs.len(),
        diffs.iter().take(40).cloned().collect::<Vec<_>>().join("\n")
    );
}

/// One entry as a line that reads well in an assertion's diff.
fn summary(n: &Node) -> String {
    let (mode, owner) = (n.mode, format!("{}:{}", n.uid, n.gid));
    match (n.kind, &n.target, &n.content) {
        ("symlink", Some(target), _) => format!("symlink -> {}", target.display()),
        ("file", _, Some(content)) => {
            format!("file {mode:o} {owner} {} links={}", hex::encode(&Sha256::digest(content)[..8]), n.links)
        }
        (kind, _, _) => format!("{kind} {mode:o} {owner}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(content: &str, mode: u32) -> tempfile::TempDir {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("etc")).unwrap();
        fs::write(dir.path().join("etc/motd"), content).unwrap();
        fs::set_permissions(dir.path().join("etc/motd"), fs::Permissions::from_mode(mode)).unwrap();
        fs::hard_link(dir.path().join("etc/motd"), dir.path().join("motd")).unwrap();
        std::os::unix::fs::symlink("etc/motd", dir.path().join("link")).unwrap();
        dir
    }

    #[test]
    fn the_same_trees_are_the_same() {
        let (a, b) = (tree("hi", 0o644), tree("hi", 0o644));
        assert_same(a.path(), b.path());
        assert_eq!(hardlink_groups(a.path()), [["etc/motd", "motd"]]);
        assert_eq!(snapshot(a.path())["motd"].links, 2);
    }

    #[test]
    #[should_panic(expected = "differ in 2 entries")]
    fn other_content_is_a_difference() {
        assert_same(tree("hi", 0o644).path(), tree("ho", 0o644).path());
    }

    #[test]
    #[should_panic(expected = "etc/motd: ours")]
    fn other_modes_are_a_difference() {
        assert_same(tree("hi", 0o644).path(), tree("hi", 0o600).path());
    }
}
