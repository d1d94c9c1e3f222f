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
