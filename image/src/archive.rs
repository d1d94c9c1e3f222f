//! Images on disk, ready to push: a docker-save tarball (`manifest.json`), an OCI archive
//! tarball (`index.json` inside), or an OCI image layout directory.
//!
//! Nothing is loaded into memory but the small JSON documents: blobs are located as
//! byte ranges of the tarball or as files of the layout, so they can be streamed out.
//! With [`Verify::Now`] every blob is hashed while it is read here (several at once) and
//! checked against what the manifest, or for a docker-save tarball the config's
//! `rootfs.diff_ids`, says it is, so a damaged image fails before anything is pushed; with
//! [`Verify::OnRead`] an OCI image's blobs are left to whoever receives them.
//!
//! Nothing is read through a link that leaves the image's folder: a layout's files are
//! opened beneath the folder it was given in ([`load_beneath`]; with [`load`], the layout
//! itself), with [`confined`]. Links inside a tarball are resolved inside
//! the tarball.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, Read, Seek};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use sha2::{Digest as _, Sha256};

use crate::blob::{Blob, FileRange};
use crate::confined;
use crate::decompress::{Compression, decompressed};
use crate::digest::Digest;
use crate::oci::{self, Descriptor, Index, Manifest, ManifestOrIndex};

/// Media type of an uncompressed layer in a Docker v2 manifest.
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Blobs hashed at once.
const PARALLEL_READS: usize = 4;
/// The most a manifest, index or config may weigh.
const MAX_DOCUMENT: u64 = 16 << 20;
/// How deep indexes may nest in a layout.
const MAX_NESTING: usize = 8;

/// A manifest or index to push, as exact bytes.
#[derive(Debug, Clone)]
pub struct Document {
    pub media_type: String,
    pub digest: Digest,
    pub bytes: Vec<u8>,
}

/// An image (or index of images) read from disk.
#[derive(Debug, Clone)]
pub struct LoadedImage {
    /// What gets tagged: a manifest, or an index.
    pub top: Document,
    /// For an index: the manifests (and nested indexes) it lists, each after everything it
    /// refers to, so pushing them in this order, then `top`, never names a missing manifest.
    pub children: Vec<Document>,
    /// Every config and layer, once each, with where to read it. All were hashed and match,
    /// unless loaded with [`Verify::OnRead`].
    pub blobs: Vec<(Descriptor, Blob)>,
    /// Image names the input records (docker save's `RepoTags`, `io.containerd.image.name`
    /// annotations), as written there (`registry/repo:tag`): where its blobs may already be.
    pub origins: Vec<String>,
}

/// Why an image could not be read. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{}: {why}", path.display())]
    Invalid { path: PathBuf, why: String },
    /// The message says it all (and is one line: the error is not repeated as a cause).
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: io::Error },
    /// The image's own path leaves the folder it was given in.
    #[error("{0}")]
    Outside(String),
}

fn invalid(path: &Path, why: impl Into<String>) -> ArchiveError {
    ArchiveError::Invalid { path: path.to_path_buf(), why: why.into() }
}

fn io_err(path: &Path) -> impl Fn(io::Error) -> ArchiveError + '_ {
    move |error| match error.get_ref().and_then(|e| e.downcast_ref::<confined::Outside>()) {
        Some(outside) if outside.file == path => ArchiveError::Outside(outside.to_string()),
        _ => ArchiveError::Io { path: path.to_path_buf(), error },
    }
}

/// Reads the image at `path`: an OCI layout directory, or a tarball of either kind. An
/// OCI tarball (`index.json` inside) is read as a layout even if it also has a docker
/// `manifest.json` (Docker 25+ writes both).
pub fn load(path: &Path) -> Result<LoadedImage, ArchiveError> {
    load_with(path, Verify::Now)
}

/// When the blobs of an OCI image are checked against their digests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// While loading: every blob is read and hashed here.
    Now,
    /// By whoever receives a blob later: `out` leaves it to the registry, which checks an
    /// upload against its digest before storing it, and reads nothing the registry already
    /// has. Manifests and indexes are still checked here, and docker-save layers and configs
    /// always are, since their digests must be computed.
    OnRead,
}

/// [`load`], choosing when OCI blobs are verified. The path itself is the caller's
/// choice and is followed; a layout's files are read beneath it.
pub fn load_with(path: &Path, verify: Verify) -> Result<LoadedImage, ArchiveError> {
    let meta = std::fs::metadata(path).map_err(io_err(path))?;
    if meta.is_dir() {
        let store = Store::Layout { root: path.to_path_buf(), prefix: PathBuf::new() };
        return load_oci(path, &store, verify);
    }
    load_tar(path, File::open(path).map_err(io_err(path))?, verify)
}

/// Reads the image at `relative` in the folder `root` (a put's folder; empty for the
/// working folder), never through a link that leaves `root`: neither the image's own path
/// nor, for a layout, any file in it.
pub fn load_beneath(root: &Path, relative: &Path, verify: Verify) -> Result<LoadedImage, ArchiveError> {
    let origin = root.join(relative);
    let file = confined::open_beneath(root, relative).map_err(io_err(&origin))?;
    if file.metadata().map_err(io_err(&origin))?.is_dir() {
        let store = Store::Layout { root: root.to_path_buf(), prefix: relative.to_path_buf() };
        return load_oci(&origin, &store, verify);
    }
    load_tar(&origin, file, verify)
}

fn load_tar(origin: &Path, file: File, verify: Verify) -> Result<LoadedImage, ArchiveError> {
    let entries = scan_tar(origin, &file)?;
    let store = Store::Tar { path: origin.to_path_buf(), file: Arc::new(file), entries };
    if store.has(origin, "index.json")? {
        load_oci(origin, &store, verify)
    } else if store.has(origin, "manifest.json")? {
        load_docker_save(origin, &store)
    } else {
        Err(invalid(origin, "neither index.json (OCI) nor manifest.json (docker save) is in this tarball"))
    }
}

/// Where the files of an image are: a layout directory (`prefix` beneath `root`, read
/// without leaving `root`), or entries of a tarball.
enum Store {
    Layout { root: PathBuf, prefix: PathBuf },
    Tar { path: PathBuf, file: Arc<File>, entries: HashMap<String, (u64, u64)> },
}

impl Store {
    fn has(&self, origin: &Path, name: &str) -> Result<bool, ArchiveError> {
        match self {
            Store::Layout { root, prefix } => match confined::metadata_beneath(root, &prefix.join(name)) {
                Ok(_) => Ok(true),
                Err(e) if is_missing(&e) => Ok(false),
                Err(e) => Err(io_err(origin)(e)),
            },
            Store::Tar { entries, .. } => Ok(entries.contains_key(name)),
        }
    }

    /// The file `name` of the image; `None` if there is none (or it is a folder).
    fn locate(&self, origin: &Path, name: &str) -> Result<Option<FileRange>, ArchiveError> {
        match self {
            Store::Layout { root, prefix } => {
                let relative = prefix.join(name);
                match confined::metadata_beneath(root, &relative) {
                    Ok(meta) if meta.is_file() => Ok(Some(FileRange::beneath(root, &relative, meta.len()))),
                    Ok(_) => Ok(None),
                    Err(e) if is_missing(&e) => Ok(None),
                    Err(e) => Err(io_err(origin)(e)),
                }
            }
            Store::Tar { path, file, entries } => {
                Ok(entries.get(name).map(|&(offset, len)| FileRange::of_open(path, file.clone(), offset, len)))
            }
        }
    }

    fn read(&self, origin: &Path, name: &str, limit: u64) -> Result<Vec<u8>, ArchiveError> {
        let range = self.locate(origin, name)?.ok_or_else(|| invalid(origin, format!("{name} is missing")))?;
        if range.len > limit {
            let len = range.len;
            return Err(invalid(origin, format!("{name} is {len} bytes, more than the {limit} a document may have")));
        }
        range.read_all().map_err(io_err(origin))
    }
}

/// Absent, as far as an image is concerned (a name under a file counts as absent too).
fn is_missing(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory)
}

/// `a/./b/../c` → `a/c`, as a tar entry name; `None` if it climbs out of the archive.
fn clean(path: &Path) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(p) => parts.push(p.to_str()?),
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    Some(parts.join("/"))
}

/// Lists a tarball's regular files with their data offsets and sizes, reading headers
/// only. Links to files (docker save writes a repeated layer as a symlink) are resolved.
fn scan_tar(path: &Path, mut file: &File) -> Result<HashMap<String, (u64, u64)>, ArchiveError> {
    let total = file.metadata().map_err(io_err(path))?.len();
    let mut magic = [0u8; 4];
    let n = file.read(&mut magic).map_err(io_err(path))?;
    if Compression::sniff(&magic[..n]) != Compression::None {
        return Err(invalid(
            path,
            "is compressed; give an uncompressed tarball (docker save, oci-archive) or an OCI layout directory",
        ));
    }
    file.rewind().map_err(io_err(path))?;
    let mut archive = tar::Archive::new(io::BufReader::new(file));
    let mut entries = HashMap::new();
    let mut links = Vec::new();
    let not_tar = |e: io::Error| invalid(path, format!("not a readable tar file: {e}"));
    for entry in archive.entries_with_seek().map_err(not_tar)? {
        let entry = entry.map_err(not_tar)?;
        let kind = entry.header().entry_type();
        let entry_path = entry.path().map_err(not_tar)?.into_owned();
        let Some(name) = clean(&entry_path) else { continue };
        if kind.is_symlink() || kind.is_hard_link() {
            let Some(target) = entry.link_name().map_err(not_tar)? else { continue };
            // A symlink's target is relative to its folder; a hard link's to the archive.
            let target = match kind.is_symlink() && !target.is_absolute() {
                true => entry_path.parent().unwrap_or(Path::new("")).join(&target),
                false => target.into_owned(),
            };
            if let Some(target) = clean(&target) {
                links.push((name, target));
            }
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        let (offset, size) = (entry.raw_file_position(), entry.size());
        if offset + size > total {
            return Err(invalid(path, format!("truncated: {name} should have {size} bytes but the file ends first")));
        }
        entries.insert(name, (offset, size));
    }
    // Links may point at links; a few rounds settle any sane chain.
    for _ in 0..MAX_NESTING {
        let mut changed = false;
        for (name, target) in &links {
            if !entries.contains_key(name)
                && let Some(&found) = entries.get(target)
            {
                entries.insert(name.clone(), found);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    if entries.is_empty() {
        return Err(invalid(path, "not a tar file, or an empty one"));
    }
    Ok(entries)
}

fn load_oci(origin: &Path, store: &Store, verify: Verify) -> Result<LoadedImage, ArchiveError> {
    if matches!(store, Store::Layout { .. }) && !store.has(origin, "oci-layout")? {
        return Err(invalid(origin, "not an OCI image layout: there is no oci-layout file"));
    }
    let index_bytes = store.read(origin, "index.json", MAX_DOCUMENT)?;
    let index: Index = serde_json::from_slice(&index_bytes).map_err(|e| invalid(origin, format!("index.json: {e}")))?;
    let origins = index
        .manifests
        .iter()
        .filter_map(|d| d.annotations.get(crate::layout::IMAGE_NAME))
        .cloned()
        .collect::<Vec<_>>();

    // `in` (and registry-image-resource) mark a layout made from one image so it is pushed as that image.
    let single = if store.has(origin, "single-image-digest")? {
        let text = store.read(origin, "single-image-digest", 1024)?;
        let text = String::from_utf8_lossy(&text);
        let digest = text.trim().parse::<Digest>().map_err(|e| invalid(origin, format!("single-image-digest: {e}")))?;
        Some(digest)
    } else {
        None
    };
    let entries = match single {
        // Found by digest; its media type is read from the document if index.json does not list it.
        Some(digest) => vec![
            index
                .manifests
                .iter()
                .find(|d| d.digest == digest)
                .cloned()
                .unwrap_or_else(|| Descriptor::new("", digest, 0)),
        ],
        None => index.manifests.clone(),
    };

    let mut loaded = LoadedImage {
        top: Document { media_type: oci::OCI_INDEX.into(), digest: Digest::of(&index_bytes), bytes: index_bytes },
        children: Vec::new(),
        blobs: Vec::new(),
        origins,
    };
    match entries.as_slice() {
        [] => return Err(invalid(origin, "index.json lists no images")),
        // One entry: push it rather than index.json around it, unwrapping indexes that
        // hold just one index as registry-image-resource does.
        [only] => {
            let (mut doc, mut value) = read_document(origin, store, only)?;
            let mut depth = 0;
            while let ManifestOrIndex::Index(inner) = &value
                && let [one] = inner.manifests.as_slice()
                && oci::is_index(&one.media_type)
                && depth < MAX_NESTING
            {
                (doc, value) = read_document(origin, store, one)?;
                depth += 1;
            }
            loaded.top = doc;
            match value {
                ManifestOrIndex::Manifest(m) => add_blobs(origin, store, &m, &mut loaded)?,
                ManifestOrIndex::Index(i) => add_children(origin, store, &i.manifests, &mut loaded, 0)?,
            }
        }
        // Several: index.json itself is the index pushed.
        many => add_children(origin, store, many, &mut loaded, 0)?,
    }
    if verify == Verify::Now {
        verify_blobs(origin, &loaded.blobs)?;
    }
    Ok(loaded)
}

/// Reads the documents an index lists, depth first, so each lands in `children` after
/// everything it refers to.
fn add_children(
    origin: &Path,
    store: &Store,
    list: &[Descriptor],
    loaded: &mut LoadedImage,
    depth: usize,
) -> Result<(), ArchiveError> {
    if depth > MAX_NESTING {
        return Err(invalid(origin, format!("indexes nest more than {MAX_NESTING} deep")));
    }
    for d in list {
        if loaded.children.iter().any(|c| c.digest == d.digest) {
            continue;
        }
        let (doc, value) = read_document(origin, store, d)?;
        match value {
            ManifestOrIndex::Manifest(m) => add_blobs(origin, store, &m, loaded)?,
            ManifestOrIndex::Index(i) => add_children(origin, store, &i.manifests, loaded, depth + 1)?,
        }
        loaded.children.push(doc);
    }
    Ok(())
}

fn read_document(origin: &Path, store: &Store, d: &Descriptor) -> Result<(Document, ManifestOrIndex), ArchiveError> {
    let name = d.digest.blob_path();
    let bytes = store.read(origin, &name, MAX_DOCUMENT)?;
    let digest = Digest::of(&bytes);
    if digest != d.digest {
        return Err(invalid(origin, format!("{name} is damaged: its content has digest {digest}")));
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
        let name = d.digest.blob_path();
        let Some(range) = store.locate(origin, &name)? else {
            // Foreign layers (Windows base images) are fetched from their URLs, not pushed.
            if d.extra.contains_key("urls") {
                continue;
            }
            return Err(invalid(origin, format!("blob {name} is missing")));
        };
        if range.len != d.size {
            let len = range.len;
            return Err(invalid(origin, format!("blob {name} has {len} bytes, its manifest says {}", d.size)));
        }
        loaded.blobs.push((d.clone(), Blob::File(range)));
    }
    Ok(())
}

/// Checks each blob's content against its digest.
fn verify_blobs(origin: &Path, blobs: &[(Descriptor, Blob)]) -> Result<(), ArchiveError> {
    let results = in_parallel(blobs, |(d, location)| match location {
        Blob::File(range) => match hash_range(range) {
            Ok(digest) if digest == d.digest => Ok(()),
            Ok(digest) => Err(invalid(
                origin,
                format!(
                    "blob {} is damaged: its content has digest {digest}, not the one its manifest gives",
                    d.digest
                ),
            )),
            Err(e) => Err(io_err(origin)(e)),
        },
        Blob::Memory(bytes) if Digest::of(bytes) == d.digest => Ok(()),
        Blob::Memory(_) => Err(invalid(origin, format!("blob {} does not match its digest", d.digest))),
    });
    results.into_iter().collect()
}

/// One image of a `docker save` tarball (and of what oci-build-task writes).
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SavedImage {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

/// A docker-save tarball: its config and layers pushed as they are, under a Docker v2
/// manifest made here (an OCI one if a layer is zstd, which Docker v2 has no type for).
fn load_docker_save(origin: &Path, store: &Store) -> Result<LoadedImage, ArchiveError> {
    let listing = store.read(origin, "manifest.json", MAX_DOCUMENT)?;
    let images: Vec<SavedImage> =
        serde_json::from_slice(&listing).map_err(|e| invalid(origin, format!("manifest.json: {e}")))?;
    let [image] = images.as_slice() else {
        return Err(invalid(origin, format!("manifest.json lists {} images; kiln pushes exactly one", images.len())));
    };

    let config_name = clean(Path::new(&image.config)).unwrap_or_else(|| image.config.clone());
    let config = store.read(origin, &config_name, MAX_DOCUMENT)?;
    let config_digest = Digest::of(&config);
    if let Some(named) = digest_in_name(&image.config)
        && named != config_digest
    {
        return Err(invalid(
            origin,
            format!("config {} is damaged: its content has digest {config_digest}", image.config),
        ));
    }
    let config_value: serde_json::Value =
        serde_json::from_slice(&config).map_err(|e| invalid(origin, format!("{}: {e}", image.config)))?;
    let diff_ids: Vec<&str> = config_value["rootfs"]["diff_ids"]
        .as_array()
        .map(|ids| ids.iter().filter_map(|id| id.as_str()).collect())
        .unwrap_or_default();
    if diff_ids.len() != image.layers.len() {
        return Err(invalid(
            origin,
            format!("the config lists {} layers but manifest.json names {}", diff_ids.len(), image.layers.len()),
        ));
    }

    let mut located = Vec::new();
    for name in &image.layers {
        let clean_name = clean(Path::new(name)).unwrap_or_else(|| name.clone());
        let found =
            store.locate(origin, &clean_name)?.ok_or_else(|| invalid(origin, format!("layer {name} is missing")))?;
        located.push((name, found));
    }
    let hashed = in_parallel(&located, |(name, range)| {
        hash_layer(range).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied => io_err(origin)(e),
            _ => invalid(origin, format!("layer {name} cannot be read: {e}")),
        })
    });

    let mut blobs = Vec::new();
    let mut layers = Vec::new();
    for (i, ((name, range), hashed)) in located.into_iter().zip(hashed).enumerate() {
        let hashed = hashed?;
        if hashed.diff_id.to_string() != diff_ids[i] {
            return Err(invalid(
                origin,
                format!(
                    "layer {name} is damaged: its content has digest {}, but the config's rootfs.diff_ids[{i}] is {}",
                    hashed.diff_id, diff_ids[i]
                ),
            ));
        }
        if let Some(named) = digest_in_name(name)
            && named != hashed.digest
        {
            return Err(invalid(origin, format!("layer {name} is damaged: its content has digest {}", hashed.digest)));
        }
        let d = Descriptor::new(hashed.compression_media_type(), hashed.digest.clone(), range.len);
        layers.push(d.clone());
        if !blobs.iter().any(|(b, _): &(Descriptor, _)| b.digest == d.digest) {
            blobs.push((d, Blob::File(range)));
        }
    }

    let oci = layers.iter().any(|l| l.media_type == OCI_LAYER_ZSTD);
    if oci {
        for layer in &mut layers {
            layer.media_type = match layer.media_type.as_str() {
                oci::DOCKER_LAYER_GZIP => oci::OCI_LAYER_GZIP.into(),
                DOCKER_LAYER_TAR => OCI_LAYER_TAR.into(),
                other => other.into(),
            };
        }
        for (blob, _) in &mut blobs {
            blob.media_type = layers.iter().find(|l| l.digest == blob.digest).unwrap().media_type.clone();
        }
    }
    let (manifest_type, config_type) =
        if oci { (oci::OCI_MANIFEST, oci::OCI_CONFIG) } else { (oci::DOCKER_MANIFEST, oci::DOCKER_CONFIG) };
    let config_descriptor = Descriptor::new(config_type, config_digest, config.len() as u64);
    blobs.insert(0, (config_descriptor.clone(), Blob::Memory(config.into())));
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(manifest_type.into()),
        config: config_descriptor,
        layers,
        annotations: BTreeMap::new(),
        extra: BTreeMap::new(),
    };
    let bytes = serde_json::to_vec(&manifest).map_err(|e| invalid(origin, e.to_string()))?;
    let top = Document { media_type: manifest_type.into(), digest: Digest::of(&bytes), bytes };
    Ok(LoadedImage { top, children: Vec::new(), blobs, origins: image.repo_tags.clone().unwrap_or_default() })
}

/// The digest a docker-save entry's name states: `blobs/sha256/HEX` (Docker 25+),
/// `sha256:HEX` (go-containerregistry's configs), `HEX.json` (Docker's and skopeo's configs).
fn digest_in_name(name: &str) -> Option<Digest> {
    let base = name.rsplit('/').next().unwrap_or(name);
    let hex = if let Some(hex) = name.strip_prefix("blobs/sha256/") {
        hex
    } else if let Some(hex) = base.strip_prefix("sha256:") {
        hex
    } else {
        base.strip_suffix(".json")?
    };
    Digest::from_hex(&hex.to_ascii_lowercase()).ok()
}

/// What reading a docker-save layer found.
struct HashedLayer {
    /// Of the bytes as stored.
    digest: Digest,
    compression: Compression,
    /// Of the tar inside.
    diff_id: Digest,
}

impl HashedLayer {
    fn compression_media_type(&self) -> &'static str {
        match self.compression {
            Compression::Gzip => oci::DOCKER_LAYER_GZIP,
            Compression::Zstd => OCI_LAYER_ZSTD,
            Compression::None => DOCKER_LAYER_TAR,
        }
    }
}

/// A reader that hashes what passes through it.
struct Tee<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Hashes a layer as stored and, in the same pass, the tar it decompresses to.
fn hash_layer(range: &FileRange) -> io::Result<HashedLayer> {
    let len = range.len;
    let mut magic = Vec::with_capacity(4);
    range.reader()?.take(4).read_to_end(&mut magic)?;
    let compression = Compression::sniff(&magic);
    let mut raw = Tee { inner: range.reader()?, hasher: Sha256::new(), count: 0 };
    let mut plain = Sha256::new();
    {
        let mut tar = decompressed(&mut raw)?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match tar.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => plain.update(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
    // Whatever the decompressor left unread still belongs to the blob.
    io::copy(&mut raw, &mut io::sink())?;
    if raw.count != len {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the file ends early"));
    }
    Ok(HashedLayer { digest: Digest::from_hasher(raw.hasher), compression, diff_id: Digest::from_hasher(plain) })
}

/// The sha256 of a byte range.
fn hash_range(range: &FileRange) -> io::Result<Digest> {
    let mut hasher = Tee { inner: range.reader()?, hasher: Sha256::new(), count: 0 };
    io::copy(&mut hasher, &mut io::sink())?;
    if hasher.count != range.len {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the file ends early"));
    }
    Ok(Digest::from_hasher(hasher.hasher))
}

/// `f` on every item, [`PARALLEL_READS`] at a time, results in the items' order.
fn in_parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(PARALLEL_READS).min(items.len());
    if workers <= 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let results = Mutex::new((0..items.len()).map(|_| None).collect::<Vec<Option<R>>>());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let result = f(item);
                    results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(result);
                }
            });
        }
    });
    results.into_inner().unwrap_or_else(|p| p.into_inner()).into_iter().map(|r| r.expect("every item done")).collect()
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn hex_of(bytes: &[u8]) -> String {
        Digest::of(bytes).hex().to_string()
    }

    /// A layer: a tar holding one file.
    fn layer(content: &str) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "file", content.as_bytes()).unwrap();
        b.into_inner().unwrap()
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    enum Entry<'a> {
        File(&'a str, Vec<u8>),
        Symlink(&'a str, &'a str),
    }

    fn tarball(path: &Path, entries: &[Entry<'_>]) {
        let mut b = tar::Builder::new(File::create(path).unwrap());
        for entry in entries {
            let mut h = tar::Header::new_ustar();
            match entry {
                Entry::File(name, data) => {
                    h.set_size(data.len() as u64);
                    h.set_mode(0o644);
                    b.append_data(&mut h, name, data.as_slice()).unwrap();
                }
                Entry::Symlink(name, target) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_size(0);
                    b.append_link(&mut h, name, target).unwrap();
                }
            }
        }
        b.finish().unwrap();
    }

    fn config(diff_ids: &[&[u8]]) -> Vec<u8> {
        let ids: Vec<String> = diff_ids.iter().map(|l| format!("sha256:{}", hex_of(l))).collect();
        serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux", "rootfs": { "type": "layers", "diff_ids": ids }
        }))
        .unwrap()
    }

    fn read(blob: &Blob) -> Vec<u8> {
        blob.read_all().unwrap()
    }

    fn manifest_of(image: &LoadedImage) -> Manifest {
        serde_json::from_slice(&image.top.bytes).unwrap()
    }

    fn error_of(result: Result<LoadedImage, ArchiveError>) -> String {
        result.expect_err("expected an error").to_string()
    }

    #[test]
    fn docker_save_with_plain_layers_pushes_them_as_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let (one, two) = (layer("one"), layer("two"));
        let config = config(&[&one, &two, &one]);
        let config_name = format!("{}.json", hex_of(&config));
        let listing = serde_json::json!([{
            "Config": config_name, "RepoTags": ["127.0.0.1:5000/team/base:1.0"],
            "Layers": ["aaa/layer.tar", "bbb/layer.tar", "ccc/layer.tar"],
        }]);
        let path = dir.path().join("image.tar");
        tarball(
            &path,
            &[
                Entry::File(&config_name, config.clone()),
                Entry::File("aaa/layer.tar", one.clone()),
                Entry::File("bbb/layer.tar", two.clone()),
                // docker save writes a repeated layer as a link to the first copy.
                Entry::Symlink("ccc/layer.tar", "../aaa/layer.tar"),
                Entry::File("manifest.json", serde_json::to_vec(&listing).unwrap()),
            ],
        );
        let image = load(&path).unwrap();
        assert_eq!(image.top.media_type, oci::DOCKER_MANIFEST);
        assert_eq!(image.top.digest, Digest::of(&image.top.bytes));
        assert!(image.children.is_empty());
        assert_eq!(image.origins, ["127.0.0.1:5000/team/base:1.0"]);
        let manifest = manifest_of(&image);
        assert_eq!(manifest.config.media_type, oci::DOCKER_CONFIG);
        assert_eq!(manifest.config.digest, Digest::of(&config));
        let digests: Vec<Digest> = manifest.layers.iter().map(|l| l.digest.clone()).collect();
        assert_eq!(digests, [Digest::of(&one), Digest::of(&two), Digest::of(&one)]);
        assert!(manifest.layers.iter().all(|l| l.media_type == DOCKER_LAYER_TAR));
        // Each blob once, the config first, and each reads back as itself.
        assert_eq!(image.blobs.len(), 3);
        for (d, location) in &image.blobs {
            assert_eq!(Digest::of(&read(location)), d.digest);
        }
        assert!(matches!(image.blobs[1].1, Blob::File(_)), "layers are not loaded");
    }

    #[test]
    fn docker_save_with_gzip_and_zstd_layers() {
        let dir = tempfile::tempdir().unwrap();
        let plain = layer("gz");
        let gz = gzip(&plain);
        let config = config(&[&plain]);
        let listing =
            serde_json::json!([{ "Config": "sha256:".to_string() + &hex_of(&config), "Layers": ["x.tar.gz"] }]);
        let path = dir.path().join("image.tar");
        tarball(
            &path,
            &[
                Entry::File("manifest.json", serde_json::to_vec(&listing).unwrap()),
                Entry::File(&format!("sha256:{}", hex_of(&config)), config.clone()),
                Entry::File("x.tar.gz", gz.clone()),
            ],
        );
        let image = load(&path).unwrap();
        let manifest = manifest_of(&image);
        assert_eq!(manifest.layers[0].media_type, oci::DOCKER_LAYER_GZIP);
        assert_eq!(manifest.layers[0].digest, Digest::of(&gz));
        assert_eq!(manifest.layers[0].size, gz.len() as u64);

        // zstd has no Docker v2 type: the manifest is OCI.
        let zst = zstd::encode_all(plain.as_slice(), 3).unwrap();
        tarball(
            &path,
            &[
                Entry::File("manifest.json", serde_json::to_vec(&listing).unwrap()),
                Entry::File(&format!("sha256:{}", hex_of(&config)), config.clone()),
                Entry::File("x.tar.gz", zst.clone()),
            ],
        );
        let image = load(&path).unwrap();
        let manifest = manifest_of(&image);
        assert_eq!(image.top.media_type, oci::OCI_MANIFEST);
        assert_eq!(manifest.config.media_type, oci::OCI_CONFIG);
        assert_eq!(manifest.layers[0].media_type, OCI_LAYER_ZSTD);
        assert_eq!(image.blobs[1].0.media_type, OCI_LAYER_ZSTD);
    }

    #[test]
    fn damaged_docker_save_tarballs_are_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("image.tar");
        let one = layer("one");
        let config = config(&[&one]);
        let listing = |layers: &[&str]| {
            serde_json::to_vec(&serde_json::json!([{ "Config": "c.json", "Layers": layers }])).unwrap()
        };

        // A layer whose content is not what the config says.
        tarball(
            &path,
            &[
                Entry::File("manifest.json", listing(&["l.tar"])),
                Entry::File("c.json", config.clone()),
                Entry::File("l.tar", layer("two")),
            ],
        );
        let e = error_of(load(&path));
        assert!(e.starts_with(&path.display().to_string()), "{e}");
        assert!(e.contains("layer l.tar is damaged") && e.contains("rootfs.diff_ids[0]"), "{e}");

        // A corrupt gzip stream.
        let mut gz = gzip(&one);
        let mid = gz.len() / 2;
        gz[mid] ^= 0xff;
        tarball(
            &path,
            &[
                Entry::File("manifest.json", listing(&["l.tar"])),
                Entry::File("c.json", config.clone()),
                Entry::File("l.tar", gz),
            ],
        );
        let e = error_of(load(&path));
        assert!(e.contains("layer l.tar"), "{e}");

        // A missing layer, and a layer count the config disagrees with.
        tarball(&path, &[Entry::File("manifest.json", listing(&["l.tar"])), Entry::File("c.json", config.clone())]);
        assert!(error_of(load(&path)).contains("layer l.tar is missing"));
        tarball(&path, &[Entry::File("manifest.json", listing(&[])), Entry::File("c.json", config.clone())]);
        assert!(error_of(load(&path)).contains("the config lists 1 layers but manifest.json names 0"));

        // A config whose name is its digest, with other content.
        let name = format!("{}.json", "0".repeat(64));
        let listing = serde_json::json!([{ "Config": name, "Layers": ["l.tar"] }]);
        tarball(
            &path,
            &[
                Entry::File("manifest.json", serde_json::to_vec(&listing).unwrap()),
                Entry::File(&name, config.clone()),
                Entry::File("l.tar", one.clone()),
            ],
        );
        assert!(error_of(load(&path)).contains("is damaged"));
    }

    #[test]
    fn files_that_are_not_image_tarballs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.tar");
        let name = path.display().to_string();
        for (content, expected) in [
            (b"not a tar".to_vec(), "not a readable tar file"),
            (vec![b'x'; 2048], "not a readable tar file"),
            (Vec::new(), "not a tar file"),
            (gzip(b"anything"), "is compressed"),
        ] {
            std::fs::write(&path, &content).unwrap();
            let e = error_of(load(&path));
            assert!(e.starts_with(&name) && e.contains(expected), "{e}");
        }
        tarball(&path, &[Entry::File("hello.txt", b"hi".to_vec())]);
        assert!(error_of(load(&path)).contains("neither index.json"));

        // Cut in the middle of a layer.
        let one = layer(&"x".repeat(10_000));
        let config = config(&[&one]);
        let listing = serde_json::json!([{ "Config": "c.json", "Layers": ["l.tar"] }]);
        tarball(
            &path,
            &[
                Entry::File("manifest.json", serde_json::to_vec(&listing).unwrap()),
                Entry::File("c.json", config),
                Entry::File("l.tar", one),
            ],
        );
        let whole = std::fs::read(&path).unwrap();
        std::fs::write(&path, &whole[..whole.len() - 4096]).unwrap();
        let e = error_of(load(&path));
        assert!(e.starts_with(&name) && e.contains("truncated"), "{e}");
        assert!(error_of(load(&dir.path().join("nothing.tar"))).contains("nothing.tar"));
    }

    /// An OCI layout being written (by [`crate::layout::Layout`]): blobs, then index.json.
    struct Layout(crate::layout::Layout);

    impl Layout {
        fn new(dir: &Path) -> Self {
            Layout(crate::layout::Layout::create(dir).unwrap())
        }

        fn blob(&self, media_type: &str, bytes: &[u8]) -> serde_json::Value {
            let digest = self.0.write_blob(bytes).unwrap();
            serde_json::json!({ "mediaType": media_type, "digest": digest, "size": bytes.len() })
        }

        fn image(&self, content: &str) -> serde_json::Value {
            let l = layer(content);
            let manifest = serde_json::json!({
                "schemaVersion": 2, "mediaType": oci::OCI_MANIFEST,
                "config": self.blob(oci::OCI_CONFIG, &config(&[&l])),
                "layers": [self.blob(oci::OCI_LAYER_GZIP, &gzip(&l))],
            });
            self.blob(oci::OCI_MANIFEST, &serde_json::to_vec(&manifest).unwrap())
        }

        fn index(&self, manifests: &[serde_json::Value]) -> serde_json::Value {
            let index = serde_json::json!({ "schemaVersion": 2, "mediaType": oci::OCI_INDEX, "manifests": manifests });
            self.blob(oci::OCI_INDEX, &serde_json::to_vec(&index).unwrap())
        }

        fn index_json(&self, manifests: &[serde_json::Value]) {
            self.0.set_index(&crate::layout::index_of(manifests)).unwrap();
        }
    }

    fn digest_of(d: &serde_json::Value) -> Digest {
        d["digest"].as_str().unwrap().parse().unwrap()
    }

    #[test]
    fn a_layout_of_one_image_pushes_that_image() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let image = layout.image("a");
        let mut entry = image.clone();
        entry["annotations"] = serde_json::json!({ "io.containerd.image.name": "example.com/a:1" });
        layout.index_json(&[entry]);
        let loaded = load(dir.path()).unwrap();
        assert_eq!(loaded.top.digest, digest_of(&image));
        assert_eq!(loaded.top.media_type, oci::OCI_MANIFEST);
        assert_eq!(loaded.blobs.len(), 2);
        assert_eq!(loaded.origins, ["example.com/a:1"]);

        // The same, as an OCI archive tarball.
        let path = dir.path().join("../archive.tar");
        let mut b = tar::Builder::new(File::create(&path).unwrap());
        b.append_dir_all(".", dir.path()).unwrap();
        b.finish().unwrap();
        drop(b);
        let loaded = load(&path).unwrap();
        assert_eq!(loaded.top.digest, digest_of(&image));
        for (d, location) in &loaded.blobs {
            assert_eq!(Digest::of(&read(location)), d.digest);
        }
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn nested_single_indexes_are_unwrapped_and_single_image_digest_is_honoured() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let (a, b) = (layout.image("a"), layout.image("b"));
        let inner = layout.index(&[a.clone(), b.clone()]);
        let outer = layout.index(std::slice::from_ref(&inner));
        layout.index_json(&[outer]);
        let loaded = load(dir.path()).unwrap();
        assert_eq!(loaded.top.digest, digest_of(&inner));
        assert_eq!(loaded.top.media_type, oci::OCI_INDEX);
        let children: Vec<Digest> = loaded.children.iter().map(|c| c.digest.clone()).collect();
        assert_eq!(children, [digest_of(&a), digest_of(&b)]);
        assert_eq!(loaded.blobs.len(), 4);

        // `in` marks the layout of a single image; it is found even inside the index.
        std::fs::write(dir.path().join("single-image-digest"), digest_of(&b).to_string()).unwrap();
        let loaded = load(dir.path()).unwrap();
        assert_eq!(loaded.top.digest, digest_of(&b));
        assert_eq!(loaded.top.media_type, oci::OCI_MANIFEST);
        assert!(loaded.children.is_empty());
        assert_eq!(loaded.blobs.len(), 2);
    }

    #[test]
    fn a_layout_of_several_entries_pushes_index_json_with_children_first() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let (a, b, c) = (layout.image("a"), layout.image("b"), layout.image("c"));
        // `a` is listed directly and, after it, inside a nested index.
        let nested = layout.index(&[c.clone(), a.clone()]);
        layout.index_json(&[a.clone(), b.clone(), nested.clone()]);
        let loaded = load(dir.path()).unwrap();
        assert_eq!(loaded.top.bytes, std::fs::read(dir.path().join("index.json")).unwrap());
        assert_eq!(loaded.top.media_type, oci::OCI_INDEX);
        let children: Vec<Digest> = loaded.children.iter().map(|c| c.digest.clone()).collect();
        assert_eq!(children, [digest_of(&a), digest_of(&b), digest_of(&c), digest_of(&nested)]);
        assert_eq!(loaded.blobs.len(), 6);
    }

    #[test]
    fn damaged_layouts_are_refused_naming_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let layer_hex = one_image_layout(dir.path());
        let gz = gzip(&layer("confined"));
        assert_eq!(hex_of(&gz), layer_hex);
        let name = dir.path().display().to_string();
        let blob = dir.path().join("blobs/sha256").join(layer_hex);

        // Same size, other bytes.
        let mut other = gz.clone();
        other[20] ^= 1;
        std::fs::write(&blob, &other).unwrap();
        let e = error_of(load(dir.path()));
        assert!(e.starts_with(&name) && e.contains("is damaged"), "{e}");

        std::fs::write(&blob, &gz[1..]).unwrap();
        assert!(error_of(load(dir.path())).contains("its manifest says"));

        std::fs::remove_file(&blob).unwrap();
        let e = error_of(load(dir.path()));
        assert!(e.starts_with(&name) && e.contains("is missing"), "{e}");

        std::fs::remove_file(dir.path().join("oci-layout")).unwrap();
        assert!(error_of(load(dir.path())).contains("no oci-layout file"));
    }

    /// A layout of one image in `dir`; the digest of its (gzip) layer blob.
    fn one_image_layout(dir: &Path) -> String {
        let layout = Layout::new(dir);
        let l = layer("confined");
        let gz = gzip(&l);
        let manifest = serde_json::json!({
            "schemaVersion": 2, "mediaType": oci::OCI_MANIFEST,
            "config": layout.blob(oci::OCI_CONFIG, &config(&[&l])),
            "layers": [layout.blob(oci::OCI_LAYER_GZIP, &gz)],
        });
        let image = layout.blob(oci::OCI_MANIFEST, &serde_json::to_vec(&manifest).unwrap());
        layout.index_json(&[image]);
        hex_of(&gz)
    }

    #[test]
    fn layout_files_linking_outside_the_folder_are_refused_naming_them() {
        for verify in [Verify::Now, Verify::OnRead] {
            let root = tempfile::tempdir().unwrap();
            let (dir, outside) = (root.path().join("layout"), root.path().join("outside"));
            std::fs::create_dir(&outside).unwrap();
            let hex = one_image_layout(&dir);
            // The layer's right bytes, moved outside the layout and linked to from inside it,
            // relatively and absolutely.
            let blob = dir.join("blobs/sha256").join(&hex);
            std::fs::rename(&blob, outside.join(&hex)).unwrap();
            for target in [Path::new("../../../outside").join(&hex), outside.join(&hex)] {
                std::os::unix::fs::symlink(&target, &blob).unwrap();
                let e = error_of(load_with(&dir, verify));
                assert!(e.contains(&format!("blobs/sha256/{hex}")) && e.contains("points outside"), "{e}");
                std::fs::remove_file(&blob).unwrap();
            }
            std::fs::rename(outside.join(&hex), &blob).unwrap();
            load_with(&dir, verify).unwrap();

            // The documents too, and a folder of blobs that is a link.
            for name in ["index.json", "oci-layout"] {
                std::fs::rename(dir.join(name), outside.join(name)).unwrap();
                std::os::unix::fs::symlink(outside.join(name), dir.join(name)).unwrap();
                let e = error_of(load_with(&dir, verify));
                assert!(e.contains(name) && e.contains("points outside"), "{e}");
                std::fs::remove_file(dir.join(name)).unwrap();
                std::fs::rename(outside.join(name), dir.join(name)).unwrap();
            }
            std::fs::rename(dir.join("blobs"), outside.join("blobs")).unwrap();
            std::os::unix::fs::symlink("../outside/blobs", dir.join("blobs")).unwrap();
            let e = error_of(load_with(&dir, verify));
            assert!(e.contains("points outside"), "{e}");
        }
    }

    #[test]
    fn layout_links_that_stay_inside_the_folder_are_followed() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("layout");
        let hex = one_image_layout(&dir);
        // A repeated blob kept once elsewhere in the layout, as some tools write them.
        std::fs::create_dir(dir.join("shared")).unwrap();
        let blob = dir.join("blobs/sha256").join(&hex);
        std::fs::rename(&blob, dir.join("shared").join(&hex)).unwrap();
        std::os::unix::fs::symlink(Path::new("../../shared").join(&hex), &blob).unwrap();
        let loaded = load(&dir).unwrap();
        for (d, location) in &loaded.blobs {
            assert_eq!(Digest::of(&read(location)), d.digest);
        }
    }
}
