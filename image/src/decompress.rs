//! Layer decompression chosen by the bytes themselves, not the declared media type:
//! registries and builders mislabel layers often enough (zstd pushed as gzip, plain tar
//! as gzip) that sniffing is the only reliable way.

use std::io::{self, BufReader, Read};

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// What a layer's first bytes say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// `1f 8b`.
    Gzip,
    /// `28 b5 2f fd`.
    Zstd,
    /// Anything else is read as a plain tar.
    None,
}

impl Compression {
    /// Tells from a stream's first bytes (four suffice) how it is compressed.
    pub fn sniff(head: &[u8]) -> Self {
        if head.starts_with(&ZSTD_MAGIC) {
            Compression::Zstd
        } else if head.starts_with(&GZIP_MAGIC) {
            Compression::Gzip
        } else {
            Compression::None
        }
    }
}

/// Wraps `r` in the decompressor its first bytes call for: gzip (any number of members),
/// zstd (any number of frames) or, for anything else, `r` itself, read as a plain tar.
///
/// Streams: memory stays bounded (a 256 KiB buffer, and zstd's window, which the
/// decoder caps at 128 MiB by default).
pub fn decompressed<'a, R: Read + 'a>(mut r: R) -> io::Result<Box<dyn Read + 'a>> {
    // A reader may hand out fewer bytes than asked (a pipe, a file still being written):
    // read until the magic numbers can be told apart or the stream ends.
    let mut head = [0u8; ZSTD_MAGIC.len()];
    let mut len = 0;
    while len < head.len() {
        match r.read(&mut head[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let compression = Compression::sniff(&head[..len]);
    let buffered = BufReader::with_capacity(256 << 10, io::Cursor::new(head).take(len as u64).chain(r));
    Ok(match compression {
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buffered)?),
        Compression::None => Box::new(buffered),
    })
}

/// Bytes per chunk handed from the decompressing thread to the reader.
const AHEAD_CHUNK: usize = 256 << 10;
/// Chunks the decompressing thread may be ahead of its reader (2 MiB).
const AHEAD_CHUNKS: usize = 8;

/// What the decompressing thread of [`decompressed_ahead`] hands over.
enum Handed {
    Bytes(Vec<u8>),
    End,
}

/// [`decompressed`] on a thread of its own, at most 2 MiB ahead of its reader: inflating a
/// layer and unpacking it run on two cores at once, as `crane export | tar -x` does with
/// two processes. The stream's end is said explicitly, so a thread that stopped for any
/// other reason is an error to the reader, never a short layer that looks whole.
pub fn decompressed_ahead<R: Read + Send + 'static>(r: R) -> io::Result<Ahead> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<io::Result<Handed>>(AHEAD_CHUNKS);
    std::thread::Builder::new().name("decompress".into()).spawn(move || {
        let mut reader = match decompressed(r) {
            Ok(reader) => reader,
            Err(e) => return drop(tx.send(Err(e))),
        };
        loop {
            let mut chunk = vec![0u8; AHEAD_CHUNK];
            let mut filled = 0;
            while filled < chunk.len() {
                match reader.read(&mut chunk[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return drop(tx.send(Err(e))),
                }
            }
            if filled == 0 {
                return drop(tx.send(Ok(Handed::End)));
            }
            chunk.truncate(filled);
            // The reader went away (it failed, or stopped early): stop decompressing.
            if tx.send(Ok(Handed::Bytes(chunk))).is_err() {
                return;
            }
        }
    })?;
    Ok(Ahead { rx, chunk: Vec::new(), pos: 0, ended: false })
}

/// The reading end of [`decompressed_ahead`].
pub struct Ahead {
    rx: std::sync::mpsc::Receiver<io::Result<Handed>>,
    chunk: Vec<u8>,
    pos: usize,
    ended: bool,
}

impl Read for Ahead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            if self.ended || buf.is_empty() {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Ok(Handed::Bytes(chunk))) => (self.chunk, self.pos) = (chunk, 0),
                Ok(Ok(Handed::End)) => self.ended = true,
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(io::Error::other("the decompressing thread stopped before the stream ended")),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn roundtrip(data: &[u8], compressed: Vec<u8>) {
        let mut out = Vec::new();
        decompressed(compressed.as_slice()).unwrap().read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn gzip_zstd_and_plain() {
        let data = b"a layer's bytes, repeated a little: a layer's bytes".repeat(100);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data).unwrap();
        roundtrip(&data, gz.finish().unwrap());
        roundtrip(&data, zstd::encode_all(data.as_slice(), 3).unwrap());
        roundtrip(&data, data.clone());
        roundtrip(b"", Vec::new());
    }

    fn gz_of(data: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(data).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn ahead_of_the_reader_gives_the_same_bytes() {
        // Many chunks more than the thread may hold, so it waits for the reader.
        let data: Vec<u8> = (0..(AHEAD_CHUNK * AHEAD_CHUNKS * 3 + 17) as u32).map(|i| (i % 251) as u8).collect();
        for compressed in [gz_of(&data), zstd::encode_all(data.as_slice(), 3).unwrap(), data.clone(), Vec::new()] {
            let expected = if compressed.is_empty() { Vec::new() } else { data.clone() };
            let mut out = Vec::new();
            decompressed_ahead(io::Cursor::new(compressed)).unwrap().read_to_end(&mut out).unwrap();
            assert!(out == expected, "{} bytes, expected {}", out.len(), expected.len());
        }
    }

    #[test]
    fn ahead_of_the_reader_passes_errors_on() {
        let data = b"layer ".repeat(100_000);
        let mut broken = gz_of(&data);
        let middle = broken.len() / 2;
        broken.truncate(middle);
        let mut out = Vec::new();
        let err = decompressed_ahead(io::Cursor::new(broken)).unwrap().read_to_end(&mut out).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
        // A reader that stops early lets the thread go (it must not block forever).
        let mut early = decompressed_ahead(io::Cursor::new(gz_of(&data))).unwrap();
        early.read_exact(&mut [0u8; 10]).unwrap();
        drop(early);
    }

    /// Hands out one byte per read, like a slow pipe.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let Some((first, rest)) = self.0.split_first() else { return Ok(0) };
            if buf.is_empty() {
                return Ok(0);
            }
            buf[0] = *first;
            self.0 = rest;
            Ok(1)
        }
    }

    #[test]
    fn short_reads_do_not_hide_the_magic() {
        let data = b"tar bytes".repeat(10);
        let zst = zstd::encode_all(data.as_slice(), 3).unwrap();
        let mut out = Vec::new();
        decompressed(Trickle(&zst)).unwrap().read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
        // Shorter than any magic number: plain.
        let mut out = Vec::new();
        decompressed(Trickle(b"\x1f")).unwrap().read_to_end(&mut out).unwrap();
        assert_eq!(out, b"\x1f");
    }

    #[test]
    fn multi_frame_zstd() {
        let mut both = zstd::encode_all(&b"first "[..], 3).unwrap();
        both.extend(zstd::encode_all(&b"second"[..], 19).unwrap());
        roundtrip(b"first second", both);
    }

    #[test]
    fn multi_member_gzip() {
        let mut both = Vec::new();
        for part in [b"first ".as_slice(), b"second"] {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(part).unwrap();
            both.extend(gz.finish().unwrap());
        }
        roundtrip(b"first second", both);
    }
}
