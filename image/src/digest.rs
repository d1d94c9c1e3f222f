//! A content digest, `sha256:<64 lowercase hex>`, as OCI and the distribution API write it:
//! validated when it is made, so a digest that could name a path outside a blob folder
//! (`sha256:../x`) cannot exist, and computed in one place.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

/// A validated sha256 digest. `Display` and serde give `sha256:<hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

/// Why a string is not a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a sha256 digest (sha256: and 64 lowercase hex digits)")]
pub struct DigestError(pub String);

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self::from_hash(Sha256::digest(bytes).into())
    }

    /// The digest a finished hasher holds.
    pub fn from_hasher(hasher: Sha256) -> Self {
        Self::from_hash(hasher.finalize().into())
    }

    fn from_hash(hash: [u8; 32]) -> Self {
        Self { hex: hex::encode(hash) }
    }

    /// The digest whose hex digits are `hex` (a blob's file name in a layout).
    pub fn from_hex(hex: &str) -> Result<Self, DigestError> {
        format!("sha256:{hex}").parse()
    }

    /// The 64 hex digits.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// Cut to its algorithm and first 12 hex digits, as progress lines show it:
    /// `sha256:0123456789ab`.
    pub fn short(&self) -> String {
        format!("sha256:{}", &self.hex[..12])
    }

    /// Where an OCI layout keeps the blob: `blobs/sha256/<hex>`.
    pub fn blob_path(&self) -> String {
        format!("blobs/sha256/{}", self.hex)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.strip_prefix("sha256:") {
            Some(hex) if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) => {
                Ok(Self { hex: hex.to_string() })
            }
            _ => Err(DigestError(s.to_string())),
        }
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn computed_shown_and_read_back() {
        let d = Digest::of(b"");
        assert_eq!(d.short(), "sha256:e3b0c44298fc");
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(EMPTY.parse::<Digest>().unwrap(), d);
        assert_eq!(d.blob_path(), format!("blobs/sha256/{}", d.hex()));
        assert_eq!(Digest::from_hex(d.hex()).unwrap(), d);
        assert!(Digest::from_hex("../x").is_err());
        let mut hasher = Sha256::new();
        sha2::Digest::update(&mut hasher, b"");
        assert_eq!(Digest::from_hasher(hasher), d);
        assert_eq!(serde_json::to_string(&d).unwrap(), format!("\"{EMPTY}\""));
        assert_eq!(serde_json::from_str::<Digest>(&format!("\"{EMPTY}\"")).unwrap(), d);
    }

    #[test]
    fn only_a_real_digest_can_be_made() {
        let hex = "a".repeat(64);
        for bad in [
            "sha256:../../etc/passwd".to_string(),
            format!("sha256:{}", "a".repeat(63)),
            format!("sha256:{}", "a".repeat(65)),
            format!("sha256:{}", "g".repeat(64)),
            format!("sha256:{}", "A".repeat(64)),
            format!("sha512:{hex}"),
            hex.clone(),
            String::new(),
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad:?}");
            assert!(serde_json::from_str::<Digest>(&format!("{bad:?}")).is_err(), "{bad:?}");
        }
        let e = "sha256:x".parse::<Digest>().unwrap_err().to_string();
        assert_eq!(e, "\"sha256:x\" is not a sha256 digest (sha256: and 64 lowercase hex digits)");
    }
}
