//! What a header says about an entry besides its content (mode, owner, times, extended
//! attributes), and putting it on the filesystem.

use std::io::Read;
use std::os::fd::AsFd;

use rustix::fs::{Gid, Mode, Timespec, Timestamps, Uid, XattrFlags};
use rustix::io::Errno;

/// Extended attributes never set nor cleared, as umoci (and containers/storage) does:
/// host-specific labels and overlayfs bookkeeping.
const IGNORED_XATTRS: &[&[u8]] = &[b"security.selinux", b"system.nfs4_acl"];
const IGNORED_XATTR_PREFIX: &[u8] = b"trusted.overlay.";

pub fn ignored_xattr(name: &[u8]) -> bool {
    IGNORED_XATTRS.contains(&name) || name.starts_with(IGNORED_XATTR_PREFIX)
}

/// An entry's metadata, read from its header and PAX records.
#[derive(Debug, Clone)]
pub struct Meta {
    /// Permission bits with setuid, setgid and sticky.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub atime: Timespec,
    pub mtime: Timespec,
    /// `SCHILY.xattr.*` records: name and value.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Meta {
    pub fn read<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Self, String> {
        let header = entry.header();
        // Empty numeric fields read as 0, as Go's archive/tar (and so umoci) reads them.
        let field = |range: std::ops::Range<usize>, what: &str, value: std::io::Result<u64>| {
            value.or_else(|e| {
                if header.as_bytes()[range].iter().all(|b| *b == 0 || *b == b' ') {
                    Ok(0)
                } else {
                    Err(format!("bad {what} field: {e}"))
                }
            })
        };
        let mode = field(100..108, "mode", header.mode().map(u64::from))? as u32 & 0o7777;
        // PAX uid and gid records are already folded into the header by the tar crate.
        let uid = field(108..116, "uid", header.uid())?;
        let gid = field(116..124, "gid", header.gid())?;
        let uid = u32::try_from(uid).map_err(|_| format!("uid {uid} out of range"))?;
        let gid = u32::try_from(gid).map_err(|_| format!("gid {gid} out of range"))?;
        let mtime = field(136..148, "mtime", header.mtime())?;
        let mut mtime = Timespec { tv_sec: mtime.try_into().unwrap_or(i64::MAX), tv_nsec: 0 };
        // GNU headers may carry an access time; an empty field means none (as Go reads it).
        let mut atime = header
            .as_gnu()
            .filter(|gnu| gnu.atime[0] != 0)
            .and_then(|gnu| gnu.atime().ok())
            .map(|secs| Timespec { tv_sec: secs.try_into().unwrap_or(i64::MAX), tv_nsec: 0 });
        let mut xattrs = Vec::new();
        if let Ok(Some(records)) = entry.pax_extensions() {
            // A malformed record (the tar crate splits records at newlines, so a binary
            // value holding one breaks) is skipped: it carries nothing we must have.
            for record in records.flatten() {
                let key = record.key_bytes();
                if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    xattrs.push((name.to_vec(), record.value_bytes().to_vec()));
                } else if key == b"mtime" {
                    mtime = pax_time(record.value_bytes()).ok_or("bad PAX mtime")?;
                } else if key == b"atime" {
                    atime = Some(pax_time(record.value_bytes()).ok_or("bad PAX atime")?);
                }
            }
        }
        // No access time: the modification time, as umoci does.
        let atime = atime.unwrap_or(mtime);
        Ok(Self { mode, uid, gid, atime, mtime, xattrs })
    }

    pub fn times(&self) -> Timestamps {
        Timestamps { last_access: self.atime, last_modification: self.mtime }
    }

    pub fn owner(&self) -> (Option<Uid>, Option<Gid>) {
        (Some(Uid::from_raw(self.uid)), Some(Gid::from_raw(self.gid)))
    }

    pub fn mode(&self) -> Mode {
        Mode::from_raw_mode(self.mode)
    }
}

/// A PAX time: decimal seconds since the epoch, maybe negative, maybe with a fraction.
fn pax_time(value: &[u8]) -> Option<Timespec> {
    let s = std::str::from_utf8(value).ok()?;
    let (negative, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = secs.parse().ok()?;
    let mut nanos: i64 = 0;
    for (i, digit) in frac.bytes().take(9).enumerate() {
        nanos += i64::from(digit - b'0') * 10i64.pow(8 - i as u32);
    }
    Some(if !negative {
        Timespec { tv_sec: secs, tv_nsec: nanos }
    } else if nanos == 0 {
        Timespec { tv_sec: -secs, tv_nsec: 0 }
    } else {
        Timespec { tv_sec: -secs - 1, tv_nsec: 1_000_000_000 - nanos }
    })
}

/// Why an extended attribute was not set.
pub struct XattrSkipped {
    pub name: Vec<u8>,
    pub why: String,
}

fn refused(name: Vec<u8>, why: Errno) -> XattrSkipped {
    XattrSkipped { name, why: std::io::Error::from(why).to_string() }
}

/// Sets `xattrs` on an open file, first removing those it had that the entry does not
/// list (umoci's behaviour: the entry describes the whole set). Best effort: what the
/// filesystem or our privileges refuse is returned, never an error.
pub fn set_xattrs(fd: impl AsFd, xattrs: &[(Vec<u8>, Vec<u8>)], clear_existing: bool) -> Vec<XattrSkipped> {
    let fd = fd.as_fd();
    let mut skipped = Vec::new();
    if clear_existing {
        match list_xattrs(fd) {
            Ok(names) => {
                for name in names {
                    if ignored_xattr(&name) || xattrs.iter().any(|(n, _)| *n == name) {
                        continue;
                    }
                    if let Err(why) = rustix::fs::fremovexattr(fd, name.as_slice()) {
                        skipped.push(refused(name, why));
                    }
                }
            }
            Err(Errno::NOTSUP) => {}
            Err(why) => skipped.push(refused(b"(listing)".to_vec(), why)),
        }
    }
    for (name, value) in xattrs {
        if ignored_xattr(name) {
            skipped.push(XattrSkipped { name: name.clone(), why: "host-specific, never unpacked".into() });
        } else if let Err(why) = rustix::fs::fsetxattr(fd, name.as_slice(), value, XattrFlags::empty()) {
            skipped.push(refused(name.clone(), why));
        }
    }
    skipped
}

fn list_xattrs(fd: impl AsFd) -> Result<Vec<Vec<u8>>, Errno> {
    let fd = fd.as_fd();
    loop {
        let len = rustix::fs::flistxattr_query(fd)?;
        if len == 0 {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; len];
        match rustix::fs::flistxattr(fd, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf.split(|b| *b == 0).filter(|n| !n.is_empty()).map(<[u8]>::to_vec).collect());
            }
            // The list grew meanwhile.
            Err(Errno::RANGE) => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times() {
        let t = |s: &str| pax_time(s.as_bytes()).map(|t| (t.tv_sec, t.tv_nsec));
        assert_eq!(t("1600000000"), Some((1_600_000_000, 0)));
        assert_eq!(t("1600000000.5"), Some((1_600_000_000, 500_000_000)));
        assert_eq!(t("1600000000.123456789123"), Some((1_600_000_000, 123_456_789)));
        assert_eq!(t("-1.25"), Some((-2, 750_000_000)));
        assert_eq!(t("-3"), Some((-3, 0)));
        assert_eq!(t(""), None);
        assert_eq!(t("12a"), None);
        assert_eq!(t(".5"), None);
        // Only digits: no sign of its own, nothing after the fraction.
        assert_eq!(t("+1"), None);
        assert_eq!(t("1.5x"), None);
        assert_eq!(t("1.x5"), None);
    }

    #[test]
    fn ignored_xattrs() {
        assert!(ignored_xattr(b"security.selinux"));
        assert!(ignored_xattr(b"trusted.overlay.opaque"));
        assert!(!ignored_xattr(b"security.capability"));
        assert!(!ignored_xattr(b"user.mime_type"));
    }
}
