//! The JSON documents of an image: OCI and Docker manifests and indexes, their
//! descriptors and platforms, and the image config. Unknown fields are kept
//! (`extra`) so documents we read and write back stay whole.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Whether a media type names an index (OCI index or Docker manifest list).
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

/// Whether a media type names a single-image manifest.
pub fn is_manifest(media_type: &str) -> bool {
    media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
}

/// A reference to content: its type, digest and size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Descriptor {
    /// A descriptor with nothing but its type, digest and size.
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Self {
        Descriptor {
            media_type: media_type.to_string(),
            digest,
            size,
            platform: None,
            annotations: BTreeMap::new(),
            extra: BTreeMap::new(),
        }
    }
}

/// What an image runs on.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(rename = "os.version", default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Platform {
    /// The platform this program runs on (`linux/amd64`, `linux/arm64/v8`, …).
    pub fn current() -> Self {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "x86" => ("386", None),
            "arm" => ("arm", Some("v7")),
            "powerpc64" => ("ppc64le", None),
            "s390x" => ("s390x", None),
            "riscv64" => ("riscv64", None),
            other => (other, None),
        };
        Platform {
            architecture: architecture.into(),
            os: std::env::consts::OS.into(),
            variant: variant.map(String::from),
            ..Default::default()
        }
    }

    /// Whether a manifest for `candidate` serves this (wanted) platform: os and
    /// architecture equal, and the variant equal when this one names it. arm64's
    /// variant `v8` is the default and may be left out on either side.
    pub fn matches(&self, candidate: &Platform) -> bool {
        if self.os != candidate.os || self.architecture != candidate.architecture {
            return false;
        }
        let normal = |p: &Platform| match (p.architecture.as_str(), p.variant.as_deref()) {
            ("arm64", None) => Some("v8".to_string()),
            (_, v) => v.map(String::from),
        };
        match self.variant {
            None if self.architecture != "arm64" => true,
            _ => normal(self) == normal(candidate),
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// An index (OCI) or manifest list (Docker): one manifest per platform.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Index {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// A single image's manifest: its config and layers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// The parts of an image config kiln reads; everything else is kept as it is.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default)]
    pub config: RunConfig,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// How a container of the image runs (the config's `config` object).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunConfig {
    #[serde(rename = "Env", default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(rename = "User", default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(rename = "Entrypoint", default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(rename = "Labels", default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// A manifest or an index, told apart by media type or, failing that, by shape.
#[derive(Debug, Clone)]
pub enum ManifestOrIndex {
    Manifest(Box<Manifest>),
    Index(Index),
}

/// Why a document could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("{what} is not a valid {kind}: {detail}")]
    Invalid { what: String, kind: &'static str, detail: String },
}

impl ManifestOrIndex {
    /// Parses a document the registry or a layout served with `media_type`.
    pub fn parse(what: &str, media_type: &str, body: &[u8]) -> Result<Self, SpecError> {
        let invalid = |kind: &'static str, e: serde_json::Error| SpecError::Invalid {
            what: what.to_string(),
            kind,
            detail: e.to_string(),
        };
        let looks_like_index = is_index(media_type)
            || (!is_manifest(media_type)
                && serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|v| v.get("manifests").is_some()));
        if looks_like_index {
            serde_json::from_slice(body).map(ManifestOrIndex::Index).map_err(|e| invalid("index", e))
        } else {
            serde_json::from_slice(body)
                .map(|m| ManifestOrIndex::Manifest(Box::new(m)))
                .map_err(|e| invalid("manifest", e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform(arch: &str, variant: Option<&str>) -> Platform {
        Platform {
            architecture: arch.into(),
            os: "linux".into(),
            variant: variant.map(String::from),
            ..Default::default()
        }
    }

    #[test]
    fn platform_matching() {
        assert!(platform("amd64", None).matches(&platform("amd64", None)));
        assert!(!platform("amd64", None).matches(&platform("arm64", None)));
        assert!(platform("arm64", None).matches(&platform("arm64", Some("v8"))));
        assert!(platform("arm64", Some("v8")).matches(&platform("arm64", None)));
        assert!(platform("arm", Some("v7")).matches(&platform("arm", Some("v7"))));
        assert!(!platform("arm", Some("v6")).matches(&platform("arm", Some("v7"))));
        assert!(platform("arm", None).matches(&platform("arm", Some("v6"))));
    }

    #[test]
    fn documents_round_trip_unknown_fields() {
        let body = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":1},"layers":[],"subject":{"x":1}}"#;
        let ManifestOrIndex::Manifest(m) = ManifestOrIndex::parse("m", OCI_MANIFEST, body).unwrap() else {
            panic!("expected a manifest")
        };
        let back = serde_json::to_value(&m).unwrap();
        assert_eq!(back["subject"]["x"], 1);
        let index = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(ManifestOrIndex::parse("i", "", index).unwrap(), ManifestOrIndex::Index(_)));
    }

    #[test]
    fn a_descriptor_whose_digest_could_name_a_path_is_refused_with_the_document() {
        let index = br#"{"schemaVersion":2,"manifests":[{"mediaType":"x","digest":"sha256:../../etc","size":1}]}"#;
        let e = ManifestOrIndex::parse("index.json", OCI_INDEX, index).err().unwrap().to_string();
        assert!(e.contains("index.json") && e.contains("sha256:../../etc") && e.contains("not a sha256 digest"), "{e}");
    }
}
