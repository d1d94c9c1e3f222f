//! Images on disk, ready to push: a docker-save tarball (`manifest.json`), an OCI archive
//! tarball (`index.json` inside), or an OCI image layout directory.
//!
//! Nothing is loaded into memory but the small JSON documents: blobs are located as
//! byte ranges of the tarball or as files of the layout, so they can be streamed out.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::decompress::Compression;
use crate::oci::{self, Descriptor, Index, Manifest, ManifestOrIndex};

/// Where a blob's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobLocation {
    /// A byte range of a file (an entry of a tarball, or a whole layout blob).
    File { path: PathBuf, offset: u64, len: u64 },
    /// Made here (a manifest written for a docker-save tarball).
    Memory(Vec<u8>),
}

/// A manifest or index to push, as exact bytes.
#[derive(Debug, Clone)]
pub struct Document {
    pub media_type: String,
    pub digest: String,
    pub bytes: Vec<u8>,
}

/// An image (or index of images) read from disk.
#[derive(Debug, Clone)]
pub struct LoadedImage {
    /// What gets tagged: a manifest, or an index.
    pub top: Document,
    /// For an index: its image manifests, pushed (by digest) before it.
    pub children: Vec<Document>,
    /// Every config and layer, once each, with where to read it.
    pub blobs: Vec<(Descriptor, BlobLocation)>,
}

/// Why an image could not be read. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{}: {why}", path.display())]
    Invalid { path: PathBuf, why: String },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

fn invalid(path: &Path, why: impl Into<String>) -> ArchiveError {
    ArchiveError::Invalid { path: path.to_path_buf(), why: why.into() }
}

fn io_err(path: &Path) -> impl Fn(io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io { path: path.to_path_buf(), source }
}

/// Reads the image at `path`: a layout directory, or a tarball of either kind.
pub fn load(path: &Path) -> Result<LoadedImage, ArchiveError> {
    let meta = std::fs::metadata(path).map_err(io_err(path))?;
    if meta.is_dir() {
        let store = Store::Layout(path.to_path_buf());
        return load_oci(path, &store);
    }
    let entries = scan_tar(path)?;
    let store = Store::Tar { path: path.to_path_buf(), entries };
    if store.has("index.json") {
        load_oci(path, &store)
    } else if store.has("manifest.json") {
        load_docker_save(path, &store)
    } else {
        Err(invalid(path, "neither index.json (OCI) nor manifest.json (docker save) is in this tarball"))
    }
}

/// Where the files of an image are: a layout directory, or entries of a tarball.
enum Store {
    Layout(PathBuf),
    Tar { path: PathBuf, entries: HashMap<String, (u64, u64)> },
}

impl Store {
    fn has(&self, name: &str) -> bool {
        match self {
            Store::Layout(dir) => dir.join(name).exists(),
            Store::Tar { entries, .. } => entries.contains_key(name),
        }
    }

    fn locate(&self, name: &str) -> Option<BlobLocation> {
        match self {
            Store::Layout(dir) => {
                let path = dir.join(name);
                let len = std::fs::metadata(&path).ok().filter(|m| m.is_file())?.len();
                Some(BlobLocation::File { path, offset: 0, len })
            }
            Store::Tar { path, entries } => entries.get(name).map(|(offset, len)| BlobLocation::File {
                path: path.clone(),
                offset: *offset,
                len: *len,
            }),
        }
    }

    fn read(&self, origin: &Path, name: &str, limit: u64) -> Result<Vec<u8>, ArchiveError> {
        let location = self.locate(name).ok_or_else(|| invalid(origin, format!("{name} is missing")))?;
        let BlobLocation::File { path, offset, len } = location else { unreachable!("stores hold files") };
        if len > limit {
            return Err(invalid(origin, format!("{name} is {len} bytes, more than the {limit} a document may have")));
        }
        read_range(&path, offset, len).map_err(io_err(origin))
    }
}

fn blob_name(digest: &str) -> Option<String> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| format!("blobs/sha256/{hex}"))
}

/// Reads `len` bytes at `offset` of `path`.
pub fn read_range(path: &Path, offset: u64, len: u64) -> io::Result<Vec<u8>> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::with_capacity(len as usize);
    file.take(len).read_to_end(&mut buf)?;
    if buf.len() as u64 != len {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the file ends early"));
    }
    Ok(buf)
}

/// Lists a tarball's regular files with their data offsets and sizes, reading headers only.
fn scan_tar(path: &Path) -> Result<HashMap<String, (u64, u64)>, ArchiveError> {
    let file = File::open(path).map_err(io_err(path))?;
    let total = file.metadata().map_err(io_err(path))?.len();
    let mut archive = tar::Archive::new(io::BufReader::new(file));
    let mut entries = HashMap::new();
    let not_tar = |e: io::Error| invalid(path, format!("not a readable tar file: {e}"));
    for entry in archive.entries_with_seek().map_err(not_tar)? {
        let entry = entry.map_err(not_tar)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path().map_err(not_tar)?.to_string_lossy().trim_start_matches("./").to_string();
        let (offset, size) = (entry.raw_file_position(), entry.size());
        if offset + size > total {
            return Err(invalid(path, format!("truncated: {name} should have {size} bytes but the file ends first")));
        }
        entries.insert(name, (offset, size));
    }
    if entries.is_empty() {
        return Err(invalid(path, "not a tar file, or an empty one"));
    }
    Ok(entries)
}

const MAX_DOCUMENT: u64 = 16 << 20;

fn load_oci(origin: &Path, store: &Store) -> Result<LoadedImage, ArchiveError> {
    if !store.has("oci-layout") && matches!(store, Store::Layout(_)) {
        return Err(invalid(origin, "not an OCI image layout: there is no oci-layout file"));
    }
    let index_bytes = store.read(origin, "index.json", MAX_DOCUMENT)?;
    let index: Index = serde_json::from_slice(&index_bytes).map_err(|e| invalid(origin, format!("index.json: {e}")))?;

    // `in` (and registry-image-resource) mark a layout made from one image so it is pushed as that image.
    let single = if store.has("single-image-digest") {
        let text = store.read(origin, "single-image-digest", 1024)?;
        Some(String::from_utf8_lossy(&text).trim().to_string())
    } else {
        None
    };

    let top_descriptor = match (&single, index.manifests.as_slice()) {
        (Some(digest), _) => Some(
            index
                .manifests
                .iter()
                .find(|d| &d.digest == digest)
                .cloned()
                .unwrap_or_else(|| descriptor(oci::OCI_MANIFEST, digest, 0)),
        ),
        (None, [only]) => Some(only.clone()),
        (None, []) => return Err(invalid(origin, "index.json lists no images")),
        (None, _) => None,
    };

    let mut loaded = LoadedImage {
        top: Document { media_type: oci::OCI_INDEX.into(), digest: sha256(&index_bytes), bytes: index_bytes.clone() },
        children: Vec::new(),
        blobs: Vec::new(),
    };
    let mut pending: Vec<Descriptor> = match top_descriptor {
        // One entry: push it (unwrapping nested single-entry indexes), not index.json around it.
        Some(d) => {
            let doc = read_document(origin, store, &d)?;
            loaded.top = doc.0;
            match doc.1 {
                ManifestOrIndex::Manifest(m) => {
                    add_blobs(origin, store, &m, &mut loaded)?;
                    return Ok(loaded);
                }
                ManifestOrIndex::Index(nested) => unwrap_single(origin, store, nested, &mut loaded)?,
            }
        }
        None => index.manifests.clone(),
    };
    // An index: each child manifest (nested indexes walked), and all their blobs.
    while let Some(d) = pending.pop() {
        let (doc, value) = read_document(origin, store, &d)?;
        match value {
            ManifestOrIndex::Manifest(m) => add_blobs(origin, store, &m, &mut loaded)?,
            ManifestOrIndex::Index(i) => pending.extend(i.manifests),
        }
        if !loaded.children.iter().any(|c| c.digest == doc.digest) {
            loaded.children.push(doc);
        }
    }
    loaded.children.reverse();
    Ok(loaded)
}

/// Follows an index that holds just one index, as registry-image-resource does.
fn unwrap_single(
    origin: &Path,
    store: &Store,
    mut index: Index,
    loaded: &mut LoadedImage,
) -> Result<Vec<Descriptor>, ArchiveError> {
    loop {
        match index.manifests.as_slice() {
            [only] if oci::is_index(&only.media_type) => {
                let (doc, value) = read_document(origin, store, only)?;
                let ManifestOrIndex::Index(inner) = value else {
                    return Err(invalid(origin, format!("{} is labelled an index but is not one", only.digest)));
                };
                loaded.top = doc;
                index = inner;
            }
            _ => return Ok(index.manifests),
        }
    }
}

fn read_document(origin: &Path, store: &Store, d: &Descriptor) -> Result<(Document, ManifestOrIndex), ArchiveError> {
    let name = blob_name(&d.digest).ok_or_else(|| invalid(origin, format!("{:?} is not a sha256 digest", d.digest)))?;
    let bytes = store.read(origin, &name, MAX_DOCUMENT)?;
    let digest = sha256(&bytes);
    if digest != d.digest {
        return Err(invalid(origin, format!("{name} has digest {digest}, not the {} it is filed under", d.digest)));
    }
    let value = ManifestOrIndex::parse(&name, &d.media_type, &bytes).map_err(|e| invalid(origin, e.to_string()))?;
    let media_type = match (&value, d.media_type.is_empty()) {
        (ManifestOrIndex::Manifest(m), true) => m.media_type.clone().unwrap_or_else(|| oci::OCI_MANIFEST.into()),
        (ManifestOrIndex::Index(i), true) => i.media_type.clone().unwrap_or_else(|| oci::OCI_INDEX.into()),
        _ => d.media_type.clone(),
    };
    Ok((Document { media_type, digest, bytes }, value))
}

fn add_blobs(origin: &Path, store: &Store, m: &Manifest, loaded: &mut LoadedImage) -> Result<(), ArchiveError> {
    for d in std::iter::once(&m.config).chain(&m.layers) {
        if loaded.blobs.iter().any(|(b, _)| b.digest == d.digest) {
            continue;
        }
        let name =
            blob_name(&d.digest).ok_or_else(|| invalid(origin, format!("{:?} is not a sha256 digest", d.digest)))?;
        let location = store.locate(&name).ok_or_else(|| invalid(origin, format!("blob {name} is missing")))?;
        if let BlobLocation::File { len, .. } = &location
            && *len != d.size
        {
            return Err(invalid(origin, format!("blob {name} has {len} bytes, its manifest says {}", d.size)));
        }
        loaded.blobs.push((d.clone(), location));
    }
    Ok(())
}

/// One image of a `docker save` tarball (and of what oci-build-task writes).
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SavedImage {
    config: String,
    #[serde(default)]
    layers: Vec<String>,
}

fn load_docker_save(origin: &Path, store: &Store) -> Result<LoadedImage, ArchiveError> {
    let listing = store.read(origin, "manifest.json", MAX_DOCUMENT)?;
    let images: Vec<SavedImage> =
        serde_json::from_slice(&listing).map_err(|e| invalid(origin, format!("manifest.json: {e}")))?;
    let [image] = images.as_slice() else {
        return Err(invalid(origin, format!("manifest.json lists {} images; kiln pushes exactly one", images.len())));
    };
    let config = store.read(origin, &image.config, MAX_DOCUMENT)?;
    let config_value: serde_json::Value =
        serde_json::from_slice(&config).map_err(|e| invalid(origin, format!("{}: {e}", image.config)))?;
    let diff_ids = config_value["rootfs"]["diff_ids"].as_array().map(Vec::len).unwrap_or(0);
    if diff_ids != image.layers.len() {
        return Err(invalid(
            origin,
            format!("the config lists {diff_ids} layers but manifest.json names {}", image.layers.len()),
        ));
    }
    let config_descriptor = descriptor(oci::DOCKER_CONFIG, &sha256(&config), config.len() as u64);
    let mut blobs = vec![(config_descriptor.clone(), BlobLocation::Memory(config))];
    let mut layers = Vec::new();
    for name in &image.layers {
        let location = store.locate(name).ok_or_else(|| invalid(origin, format!("layer {name} is missing")))?;
        let BlobLocation::File { path, offset, len } = &location else { unreachable!("stores hold files") };
        let (digest, compression) = hash_range(path, *offset, *len).map_err(io_err(origin))?;
        let media_type = match compression {
            Compression::Gzip => oci::DOCKER_LAYER_GZIP,
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
            Compression::None => "application/vnd.docker.image.rootfs.diff.tar",
        };
        let d = descriptor(media_type, &digest, *len);
        layers.push(d.clone());
        if !blobs.iter().any(|(b, _)| b.digest == digest) {
            blobs.push((d, location));
        }
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": oci::DOCKER_MANIFEST,
        "config": config_descriptor,
        "layers": layers,
    });
    let bytes = serde_json::to_vec(&manifest).map_err(|e| invalid(origin, e.to_string()))?;
    let top = Document { media_type: oci::DOCKER_MANIFEST.into(), digest: sha256(&bytes), bytes };
    Ok(LoadedImage { top, children: Vec::new(), blobs })
}

/// The sha256 of a byte range and what its first bytes say about compression.
fn hash_range(path: &Path, offset: u64, len: u64) -> io::Result<(String, Compression)> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut reader = file.take(len);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut compression = None;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        compression.get_or_insert_with(|| Compression::sniff(&buf[..n]));
        hasher.update(&buf[..n]);
    }
    Ok((format!("sha256:{}", hex::encode(hasher.finalize())), compression.unwrap_or(Compression::None)))
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn descriptor(media_type: &str, digest: &str, size: u64) -> Descriptor {
    Descriptor {
        media_type: media_type.into(),
        digest: digest.into(),
        size,
        platform: None,
        annotations: BTreeMap::new(),
        extra: BTreeMap::new(),
    }
}
