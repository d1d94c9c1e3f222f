//! Where a blob's bytes are, as every part of kiln hands them around: a byte range of a
//! file (an entry of an image tarball, a blob of an OCI layout) or bytes in memory. The
//! archive reader produces them, the registry client uploads them, the build task's
//! content stores serve them to BuildKit.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::confined;

/// The most [`FileRange::read_all`] reserves before reading.
const PREALLOCATE: u64 = 16 << 20;

/// Where a blob's bytes are.
#[derive(Debug, Clone)]
pub enum Blob {
    /// A byte range of a file (an entry of a tarball, or a whole layout blob).
    File(FileRange),
    /// Held in memory (a config, a manifest, a signature payload); clones share the bytes.
    Memory(Bytes),
}

impl Blob {
    /// How many bytes the blob has.
    pub fn len(&self) -> u64 {
        match self {
            Blob::File(range) => range.len,
            Blob::Memory(bytes) => bytes.len() as u64,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The whole blob in memory.
    pub fn read_all(&self) -> io::Result<Vec<u8>> {
        match self {
            Blob::File(range) => range.read_all(),
            Blob::Memory(bytes) => Ok(bytes.to_vec()),
        }
    }
}

/// A byte range of a file: an entry of a tarball (the tarball opened once and shared), or
/// a blob of a layout (opened beneath the layout's folder whenever it is read). Reads are
/// positional, so clones can be read at the same time.
#[derive(Debug, Clone)]
pub struct FileRange {
    /// The file, for messages.
    pub path: PathBuf,
    pub offset: u64,
    pub len: u64,
    source: Source,
}

#[derive(Debug, Clone)]
enum Source {
    Open(Arc<File>),
    Beneath { root: PathBuf, relative: PathBuf },
}

impl FileRange {
    /// A range of a file already open.
    pub fn of_open(path: &Path, file: Arc<File>, offset: u64, len: u64) -> Self {
        FileRange { path: path.to_path_buf(), offset, len, source: Source::Open(file) }
    }

    /// The whole file `relative` beneath `root` ([`confined::open_beneath`] when read), of `len` bytes.
    pub fn beneath(root: &Path, relative: &Path, len: u64) -> Self {
        let source = Source::Beneath { root: root.to_path_buf(), relative: relative.to_path_buf() };
        FileRange { path: root.join(relative), offset: 0, len, source }
    }

    /// The same range of the file opened now (beneath its folder) if it is not yet, so
    /// every later read uses this one open file, whatever the folder becomes.
    pub fn pinned(&self) -> io::Result<Self> {
        Ok(FileRange { source: Source::Open(self.open()?), ..self.clone() })
    }

    /// The file, opened (beneath its folder) if it is not yet.
    pub fn open(&self) -> io::Result<Arc<File>> {
        match &self.source {
            Source::Open(file) => Ok(file.clone()),
            Source::Beneath { root, relative } => Ok(Arc::new(confined::open_beneath(root, relative)?)),
        }
    }

    /// The `len` bytes from `skip` into the range (cut at its end).
    pub fn slice(&self, skip: u64, len: u64) -> Self {
        let skip = skip.min(self.len);
        FileRange { offset: self.offset + skip, len: len.min(self.len - skip), ..self.clone() }
    }

    /// A reader of the range.
    pub fn reader(&self) -> io::Result<RangeReader> {
        Ok(RangeReader { file: self.open()?, at: self.offset, end: self.offset + self.len })
    }

    /// The whole range in memory.
    pub fn read_all(&self) -> io::Result<Vec<u8>> {
        let mut buf = Vec::with_capacity(self.len.min(PREALLOCATE) as usize);
        self.reader()?.read_to_end(&mut buf)?;
        Ok(buf)
    }
}

/// Reads a [`FileRange`] by position; a file shorter than the range is an error.
#[derive(Debug)]
pub struct RangeReader {
    file: Arc<File>,
    at: u64,
    end: u64,
}

impl Read for RangeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = (self.end - self.at).min(buf.len() as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.at)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the file ends early"));
        }
        self.at += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_read_their_bytes_and_a_short_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"0123456789").unwrap();
        let range = FileRange::beneath(dir.path(), Path::new("f"), 10).slice(2, 5);
        assert_eq!(Blob::File(range.clone()).read_all().unwrap(), b"23456");
        assert_eq!(Blob::File(range.slice(4, 100)).len(), 1);
        assert_eq!(Blob::Memory(Bytes::from_static(b"abc")).read_all().unwrap(), b"abc");
        let past_the_end = FileRange::beneath(dir.path(), Path::new("f"), 12);
        assert_eq!(past_the_end.read_all().unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn a_pinned_range_keeps_reading_the_file_it_opened() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"first").unwrap();
        let range = FileRange::beneath(dir.path(), Path::new("f"), 5);
        let pinned = range.pinned().unwrap();
        std::fs::remove_file(dir.path().join("f")).unwrap();
        std::fs::write(dir.path().join("f"), b"other").unwrap();
        assert_eq!(pinned.read_all().unwrap(), b"first");
        assert_eq!(range.read_all().unwrap(), b"other", "an unpinned range opens the file at each read");
    }
}
