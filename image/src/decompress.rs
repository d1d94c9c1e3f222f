//! Layer decompression chosen by the bytes themselves, not the declared media type:
//! registries and builders mislabel layers often enough (zstd pushed as gzip, plain tar
//! as gzip) that sniffing is the only reliable way.

use std::io::{self, BufRead, BufReader, Read};

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// What a layer's first bytes say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Zstd,
    /// Anything else is read as a plain tar.
    None,
}

impl Compression {
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

/// Wraps `r` in the decompressor its first bytes call for. Streams: memory stays bounded.
pub fn decompressed<'a, R: Read + 'a>(r: R) -> io::Result<Box<dyn Read + 'a>> {
    let mut buffered = BufReader::with_capacity(256 << 10, r);
    let compression = Compression::sniff(buffered.fill_buf()?);
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
