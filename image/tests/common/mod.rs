//! Crafted layers for the tests: tar streams written header by header, so that names
//! and fields the `tar` crate's builder would refuse (`..`, absolute paths, lying
//! sizes) can be written too.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};

/// One entry of a crafted layer.
#[derive(Clone)]
pub struct E {
    pub name: Vec<u8>,
    pub kind: tar::EntryType,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub link: Option<Vec<u8>>,
    pub data: Vec<u8>,
    /// PAX records besides `path` and `linkpath` (which are added when names are long).
    pub pax: Vec<(String, Vec<u8>)>,
    /// A size to claim in the header instead of the data's.
    pub claimed_size: Option<u64>,
    /// Bytes written over the header at these offsets (then the checksum is set).
    pub raw: Vec<(usize, Vec<u8>)>,
}

pub const MTIME: u64 = 1_600_000_000;

fn entry(name: impl AsRef<[u8]>, kind: tar::EntryType, mode: u32) -> E {
    E {
        name: name.as_ref().to_vec(),
        kind,
        mode,
        uid: 0,
        gid: 0,
        mtime: MTIME,
        link: None,
        data: Vec::new(),
        pax: Vec::new(),
        claimed_size: None,
        raw: Vec::new(),
    }
}

pub fn dir(name: impl AsRef<[u8]>, mode: u32) -> E {
    entry(name, tar::EntryType::Directory, mode)
}

pub fn file(name: impl AsRef<[u8]>, mode: u32, data: impl AsRef<[u8]>) -> E {
    E { data: data.as_ref().to_vec(), ..entry(name, tar::EntryType::Regular, mode) }
}

pub fn symlink(name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> E {
    E { link: Some(target.as_ref().to_vec()), ..entry(name, tar::EntryType::Symlink, 0o777) }
}

pub fn hardlink(name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> E {
    E { link: Some(target.as_ref().to_vec()), ..entry(name, tar::EntryType::Link, 0o644) }
}

pub fn fifo(name: impl AsRef<[u8]>, mode: u32) -> E {
    entry(name, tar::EntryType::Fifo, mode)
}

pub fn chardev(name: impl AsRef<[u8]>) -> E {
    entry(name, tar::EntryType::Char, 0o666)
}

/// `.wh.<base>` beside `path`'s base.
pub fn whiteout(path: &str) -> E {
    let (dir, base) = path.rsplit_once('/').map(|(d, b)| (format!("{d}/"), b)).unwrap_or((String::new(), path));
    file(format!("{dir}.wh.{base}"), 0o644, "")
}

pub fn opaque(dir: &str) -> E {
    file(format!("{dir}/.wh..wh..opq"), 0o644, "")
}

impl E {
    pub fn owner(mut self, uid: u64, gid: u64) -> Self {
        self.uid = uid;
        self.gid = gid;
        self
    }

    pub fn mtime(mut self, mtime: u64) -> Self {
        self.mtime = mtime;
        self
    }

    pub fn pax(mut self, key: &str, value: impl AsRef<[u8]>) -> Self {
        self.pax.push((key.to_string(), value.as_ref().to_vec()));
        self
    }

    pub fn xattr(self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.pax(&format!("SCHILY.xattr.{name}"), value)
    }

    pub fn claim_size(mut self, size: u64) -> Self {
        self.claimed_size = Some(size);
        self
    }

    /// Writes `bytes` over the header's field at `offset` (e.g. 100, the mode).
    pub fn raw(mut self, offset: usize, bytes: &[u8]) -> Self {
        self.raw.push((offset, bytes.to_vec()));
        self
    }
}

fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    // "<len> <key>=<value>\n", where <len> counts itself.
    let rest = key.len() + value.len() + 3;
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    let mut out = format!("{len} {key}=").into_bytes();
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}

fn set_raw_name(h: &mut tar::Header, name: &[u8]) {
    let gnu = h.as_gnu_mut().unwrap();
    gnu.name = [0; 100];
    let n = name.len().min(100);
    gnu.name[..n].copy_from_slice(&name[..n]);
}

fn append(out: &mut Vec<u8>, h: &tar::Header, data: &[u8]) {
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().next_multiple_of(512), 0);
}

/// A layer: the entries as an uncompressed tar stream.
pub fn layer(entries: &[E]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let mut records = Vec::new();
        if e.name.len() > 100 {
            records.extend(pax_record("path", &e.name));
        }
        if let Some(link) = e.link.as_ref().filter(|l| l.len() > 100) {
            records.extend(pax_record("linkpath", link));
        }
        for (k, v) in &e.pax {
            records.extend(pax_record(k, v));
        }
        if !records.is_empty() {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::XHeader);
            set_raw_name(&mut h, b"PaxHeaders/entry");
            h.set_size(records.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            append(&mut out, &h, &records);
        }
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(e.kind);
        set_raw_name(&mut h, &e.name);
        h.set_mode(e.mode);
        h.set_uid(e.uid);
        h.set_gid(e.gid);
        h.set_mtime(e.mtime);
        if let Some(link) = &e.link {
            let gnu = h.as_gnu_mut().unwrap();
            let n = link.len().min(100);
            gnu.linkname[..n].copy_from_slice(&link[..n]);
        }
        h.set_size(e.claimed_size.unwrap_or(e.data.len() as u64));
        for (offset, bytes) in &e.raw {
            h.as_mut_bytes()[*offset..offset + bytes.len()].copy_from_slice(bytes);
        }
        h.set_cksum();
        append(&mut out, &h, &e.data);
    }
    out.extend_from_slice(&[0; 1024]);
    out
}

/// What a tree holds, path by path, for comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: (i64, i64),
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
