//! Crafted layers: tar streams written header by header, so that names and fields the
//! `tar` crate's builder would refuse (`..`, absolute paths, lying sizes) can be written
//! too.

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
