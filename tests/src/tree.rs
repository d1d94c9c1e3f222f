//! Describing a directory tree so two unpacks can be compared entry by entry:
//! path, type, permission bits, owner, link target, and a hash of each file's content.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use sha2::{Digest as _, Sha256};

/// One entry of a tree, in a form that prints well in an assertion diff.
pub type Entry = String;

/// Every entry under `root`, keyed by relative path.
pub fn describe(root: &Path) -> BTreeMap<String, Entry> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Entry>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let meta = std::fs::symlink_metadata(&path).expect("lstat");
        let rel = path.strip_prefix(root).expect("under root").to_string_lossy().into_owned();
        let perms = meta.mode() & 0o7777;
        let owner = format!("{}:{}", meta.uid(), meta.gid());
        let ft = meta.file_type();
        let desc = if ft.is_symlink() {
            format!("symlink -> {}", std::fs::read_link(&path).expect("readlink").display())
        } else if ft.is_dir() {
            format!("dir {perms:o} {owner}")
        } else if ft.is_file() {
            let bytes = std::fs::read(&path).expect("read file");
            format!("file {perms:o} {owner} {} links={}", hex::encode(&Sha256::digest(&bytes)[..8]), meta.nlink())
        } else {
            use std::os::unix::fs::FileTypeExt as _;
            let kind = if ft.is_fifo() {
                "fifo"
            } else if ft.is_char_device() {
                "chardev"
            } else {
                "other"
            };
            format!("{kind} {perms:o} {owner}")
        };
        out.insert(rel, desc);
        if ft.is_dir() {
            walk(root, &path, out);
        }
    }
}

/// Asserts two trees are the same, listing the entries that differ.
pub fn assert_same(ours: &Path, theirs: &Path) {
    let (a, b) = (describe(ours), describe(theirs));
    let mut diffs = Vec::new();
    for key in a.keys().chain(b.keys()).collect::<std::collections::BTreeSet<_>>() {
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
