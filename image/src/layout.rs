//! The one OCI image layout writer: `in`'s `format: oci-layout`, the build task's local
//! caches (which BuildKit fills through the content store) and the tests all write layouts
//! through it, and `image.tar` takes its `oci-layout` and `index.json` from here.
//!
//! A layout is a folder holding `oci-layout`, `index.json` and `blobs/sha256/<hex>`. Blobs
//! are content-addressed: one already there is kept, a new one is made fresh (never written
//! through a link at its name) and appears only whole. `index.json` edits read the old index
//! without following a link out of the folder and replace it whole.

use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::confined;
use crate::digest::Digest;
use crate::oci;

/// The `oci-layout` file every layout holds.
pub const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// The `index.json` annotation that names an entry (a tag, in buildctl's and skopeo's use).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The `index.json` annotation containerd and Docker (25+) put on an entry: the image's
/// full name.
pub const IMAGE_NAME: &str = "io.containerd.image.name";

/// The most an `index.json` read back may weigh.
pub const MAX_INDEX: u64 = 16 << 20;

/// An OCI image index of `manifests` (descriptors, or JSON values shaped like them).
pub fn index_of<T: Serialize>(manifests: &[T]) -> Vec<u8> {
    serde_json::to_vec(&index_value(manifests)).expect("a JSON value always serializes")
}

fn index_value<T: Serialize>(manifests: &[T]) -> serde_json::Value {
    serde_json::json!({ "schemaVersion": 2, "mediaType": oci::OCI_INDEX, "manifests": manifests })
}

/// An OCI image layout folder.
#[derive(Debug, Clone)]
pub struct Layout {
    dir: PathBuf,
}

impl Layout {
    /// The layout in `dir`, which may not exist yet: for reading its index.
    pub fn at(dir: &Path) -> Self {
        Layout { dir: dir.to_path_buf() }
    }

    /// Makes `dir` a layout (or keeps the one it is): `dir` made if missing, `blobs/sha256`
    /// made as folders inside it, and `oci-layout` written unless it is a file of the folder's own (a link,
    /// dangling or not, is replaced).
    pub fn create(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        confined::create_dir_beneath(dir, Path::new("blobs/sha256"))?;
        if !std::fs::symlink_metadata(dir.join("oci-layout")).is_ok_and(|m| m.is_file()) {
            confined::write_new(dir, "oci-layout", OCI_LAYOUT)?;
        }
        Ok(Self::at(dir))
    }

    /// The layout's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the blob `digest` is (or would be).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.blob_path())
    }

    /// The size of blob `digest` if the layout holds it as a file of its own; a link out of
    /// the folder counts as absent.
    pub fn blob_size(&self, digest: &Digest) -> Option<u64> {
        let meta = confined::metadata_beneath(&self.dir, Path::new(&digest.blob_path())).ok()?;
        meta.is_file().then_some(meta.len())
    }

    /// The blobs the layout holds (names under `blobs/sha256` that are digests); none when
    /// it has no blob folder.
    pub fn blobs(&self) -> Vec<Digest> {
        let Ok(entries) = std::fs::read_dir(self.dir.join("blobs/sha256")) else { return Vec::new() };
        entries.flatten().filter_map(|e| Digest::from_hex(e.file_name().to_str()?).ok()).collect()
    }

    /// Adds `bytes` as a blob; its digest. A blob already there is kept.
    pub fn write_blob(&self, bytes: &[u8]) -> io::Result<Digest> {
        let digest = Digest::of(bytes);
        if self.blob_size(&digest).is_none() {
            confined::write_beneath(&self.dir, Path::new(&digest.blob_path()), bytes)?;
        }
        Ok(digest)
    }

    /// Moves the finished file `from`, whose content was verified to be `digest`, in as that
    /// blob (replacing a link at its name, never writing through it).
    pub fn adopt_blob(&self, digest: &Digest, from: &Path) -> io::Result<()> {
        std::fs::rename(from, self.blob_path(digest))
    }

    /// Replaces `index.json` with `bytes`.
    pub fn set_index(&self, bytes: &[u8]) -> io::Result<()> {
        confined::write_new(&self.dir, "index.json", bytes)
    }

    /// Records `desc` in `index.json` under `tag` (the [`REF_NAME`] annotation), replacing
    /// what had that tag, as buildctl does after a local cache export.
    pub fn tag(&self, tag: &str, desc: &serde_json::Value) -> io::Result<()> {
        let mut index: serde_json::Value = match self.read_index() {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| self.bad_index(e))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => index_value::<()>(&[]),
            Err(e) => return Err(e),
        };
        let mut desc = desc.clone();
        desc["annotations"][REF_NAME] = tag.into();
        let manifests = index["manifests"].as_array_mut().ok_or_else(|| self.bad_index("it has no manifests list"))?;
        manifests.retain(|m| m["annotations"][REF_NAME] != tag);
        manifests.push(desc);
        self.set_index(&serde_json::to_vec(&index)?)
    }

    /// The descriptor `tag` names in `index.json`, if any; an `index.json` that is missing
    /// or not an index has none. Refused if it is a link out of the folder.
    pub fn tagged(&self, tag: &str) -> io::Result<Option<serde_json::Value>> {
        let bytes = match self.read_index() {
            Ok(bytes) => bytes,
            Err(e) if confined::is_outside(&e) => return Err(e),
            Err(_) => return Ok(None),
        };
        let Ok(index) = serde_json::from_slice::<serde_json::Value>(&bytes) else { return Ok(None) };
        Ok(index["manifests"].as_array().and_then(|m| m.iter().find(|m| m["annotations"][REF_NAME] == tag).cloned()))
    }

    fn read_index(&self) -> io::Result<Vec<u8>> {
        confined::read_beneath(&self.dir, Path::new("index.json"), MAX_INDEX)
    }

    fn bad_index(&self, why: impl std::fmt::Display) -> io::Error {
        io::Error::other(format!("{}: {why}", self.dir.join("index.json").display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(bytes: &[u8]) -> serde_json::Value {
        serde_json::json!({ "mediaType": oci::OCI_MANIFEST, "digest": Digest::of(bytes), "size": bytes.len() })
    }

    #[test]
    fn a_new_layout_has_its_marker_and_blob_folder() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create(dir.path()).unwrap();
        assert_eq!(std::fs::read(dir.path().join("oci-layout")).unwrap(), OCI_LAYOUT);
        assert!(dir.path().join("blobs/sha256").is_dir());
        assert_eq!(layout.dir(), dir.path());
    }

    #[test]
    fn blobs_are_stored_by_digest_and_kept_when_present() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create(dir.path()).unwrap();
        let digest = layout.write_blob(b"hello").unwrap();
        assert_eq!(digest, Digest::of(b"hello"));
        assert_eq!(std::fs::read(layout.blob_path(&digest)).unwrap(), b"hello");
        assert_eq!(layout.blob_size(&digest), Some(5));
        std::fs::write(dir.path().join("blobs/sha256/not-a-digest"), "x").unwrap();
        assert_eq!(layout.blobs(), vec![digest.clone()], "names that are not digests are not blobs");
        // A blob already there is not written again (its mode shows it was left alone).
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(layout.blob_path(&digest), std::fs::Permissions::from_mode(0o400)).unwrap();
        layout.write_blob(b"hello").unwrap();
        let mode = std::fs::metadata(layout.blob_path(&digest)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o400);
    }

    #[test]
    fn a_link_at_a_name_is_replaced_never_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let root = dir.path().join("layout");
        std::fs::create_dir_all(root.join("blobs/sha256")).unwrap();
        std::os::unix::fs::symlink(&victim, root.join("oci-layout")).unwrap();
        std::os::unix::fs::symlink(&victim, root.join("index.json")).unwrap();
        let blob = root.join(Digest::of(b"x").blob_path());
        std::os::unix::fs::symlink(&victim, &blob).unwrap();

        let layout = Layout::create(&root).unwrap();
        assert_eq!(layout.blob_size(&Digest::of(b"x")), None, "a link out counts as absent");
        layout.write_blob(b"x").unwrap();
        assert!(confined::is_outside(&layout.tagged("t").unwrap_err()));
        layout.set_index(&index_of::<()>(&[])).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert_eq!(std::fs::read(blob).unwrap(), b"x");
        assert_eq!(std::fs::read(root.join("oci-layout")).unwrap(), OCI_LAYOUT);
    }

    #[test]
    fn tagging_replaces_what_had_the_tag_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create(dir.path()).unwrap();
        assert_eq!(layout.tagged("cache").unwrap(), None, "no index.json yet");
        layout.tag("cache", &desc(b"one")).unwrap();
        layout.tag("other", &desc(b"two")).unwrap();
        layout.tag("cache", &desc(b"three")).unwrap();
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("index.json")).unwrap()).unwrap();
        assert_eq!(index["mediaType"], oci::OCI_INDEX);
        assert_eq!(index["manifests"].as_array().unwrap().len(), 2);
        let cache = layout.tagged("cache").unwrap().unwrap();
        assert_eq!(cache["digest"], Digest::of(b"three").to_string());
        assert_eq!(cache["annotations"][REF_NAME], "cache");
        assert_eq!(layout.tagged("other").unwrap().unwrap()["digest"], Digest::of(b"two").to_string());
    }

    #[test]
    fn a_broken_index_is_named_when_tagging_and_has_no_tags_when_read() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create(dir.path()).unwrap();
        layout.set_index(b"{ not json").unwrap();
        assert_eq!(layout.tagged("cache").unwrap(), None);
        let e = layout.tag("cache", &desc(b"one")).unwrap_err().to_string();
        assert!(e.contains("index.json"), "{e}");
        layout.set_index(br#"{"schemaVersion":2}"#).unwrap();
        let e = layout.tag("cache", &desc(b"one")).unwrap_err().to_string();
        assert!(e.contains("index.json: it has no manifests list"), "{e}");
    }
}
