//! `in` (a pipeline's `get`): fetches the version's image by digest and writes it as a
//! root filesystem (`rootfs`, default), a docker-save/OCI tarball (`oci`, or `docker`,
//! which writes the same tarball) or an OCI image layout (`oci-layout`), then `tag`,
//! `digest` and `repository`; with `params.output_metadata`, a JSON summary of the image
//! too ([`crate::metadata`]).
//!
//! Everything is written under a work folder first and moved into place only once
//! complete, so a failure never leaves output that looks whole. The work folder has a
//! random name and is made by `mkdir` (nothing already in `dest` is reused), and outputs
//! are renamed into place, which replaces a link `dest` holds instead of writing through it
//! ([`kiln_image::confined`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use kiln_image::confined::{self, FreshDir};
use kiln_image::digest::Digest;
use kiln_image::layout::{self, Layout};
use kiln_image::oci::{Descriptor, ManifestOrIndex, Platform};
use kiln_image::rootfs::LayerError;
use kiln_registry::Client;
use serde::Deserialize;

use crate::metadata;
use crate::progress::Progress;
use crate::protocol::{MetadataField, StepResponse, Version};
use crate::pull::{self, Image, Spool};
use crate::source::{self, Source};

/// Blobs downloaded at once.
const PARALLEL_DOWNLOADS: usize = 3;

/// `in`'s request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetRequest {
    pub source: Source,
    #[serde(default)]
    pub params: GetParams,
    pub version: Version,
}

/// `params:` of a get step.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetParams {
    #[serde(default)]
    pub format: Option<String>,
    #[serde(default)]
    pub platform: Option<source::Platform>,
    #[serde(default)]
    pub skip_download: bool,
    /// kiln's own: the most bytes `rootfs` may unpack (a sparse file counted at its full
    /// size); the default is `kiln_image::unpack::budget_for` the layers' declared sizes.
    #[serde(default)]
    pub unpack_max_bytes: Option<u64>,
    /// A file (relative to the output folder) to write the image's metadata to as JSON
    /// ([`crate::metadata`]).
    #[serde(default)]
    pub output_metadata: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Rootfs,
    /// `image.tar`, read by docker-archive and oci-archive tools alike.
    Oci,
    /// The same `image.tar`, under the name pipelines that feed `docker load` ask for.
    Docker,
    OciLayout,
}

impl Format {
    fn parse(raw: Option<&str>) -> anyhow::Result<Self> {
        match raw.unwrap_or("rootfs") {
            "" | "rootfs" => Ok(Format::Rootfs),
            "oci" => Ok(Format::Oci),
            "docker" => Ok(Format::Docker),
            "oci-layout" => Ok(Format::OciLayout),
            other => bail!("params.format: unknown format {other:?}; use rootfs, oci, docker or oci-layout"),
        }
    }

    /// The names a get in this format writes into its output folder, besides the version files.
    fn outputs(self) -> &'static [&'static str] {
        match self {
            Format::Rootfs => &["rootfs", "metadata.json", "labels.json"],
            Format::Oci | Format::Docker => &["image.tar", "labels.json"],
            Format::OciLayout => &["oci"],
        }
    }
}

/// The version files every get writes.
const VERSION_FILES: [&str; 3] = ["tag", "digest", "repository"];

/// Runs `in` into `dest`.
pub async fn get(req: GetRequest, dest: PathBuf) -> anyhow::Result<StepResponse> {
    req.source.validate()?;
    let version_digest: Digest = req.version.digest.parse().context("version.digest")?;
    let format = Format::parse(req.params.format.as_deref())?;
    // Checked before anything is fetched, against the folder as it is now.
    let metadata_target = match &req.params.output_metadata {
        Some(raw) => {
            let mut reserved = VERSION_FILES.to_vec();
            if !req.params.skip_download {
                reserved.extend(format.outputs());
            }
            Some(metadata::Target::check(&dest, raw, &reserved)?)
        }
        None => None,
    };
    let label_regex = crate::source::compile_regex("label_regex", req.source.label_regex.as_deref())?;
    let annotation_regex = crate::source::compile_regex("annotation_regex", req.source.annotation_regex.as_deref())?;
    let platform = source::Platform::resolve(req.params.platform.as_ref().or(req.source.platform.as_ref()));
    let digest = &req.version.digest;

    let verifier = req.source.cosign_verifier()?;
    let (repo, config) = req.source.connect().await?;
    let origin = Arc::new(Client::new(repo, config.clone())?);
    if let Some(verifier) = verifier {
        crate::cosign::verify(&origin, &verifier, digest).await?;
        eprintln!("the cosign signature of {}@{digest} verifies with source.cosign.public_key", origin.repository());
    }
    if let Some(trust) = &req.source.content_trust {
        let signatures = trust.signatures(origin.repository(), config).await?;
        let tags = signatures.tags_at(&req.version.tag, digest)?;
        eprintln!("{}@{digest} is signed in Notary as {}", origin.repository(), tags.join(", "));
    }
    let mut image = None;
    if let Some((mirror_repo, mirror_config)) = req.source.mirror()? {
        let mirror = Arc::new(Client::new(mirror_repo, mirror_config)?);
        match fetch(&mirror, &req, &version_digest, format, &platform, &dest).await {
            Ok(img) => image = Some(img),
            Err(e) => eprintln!(
                "in: fetching from mirror {} failed ({e:#}); trying {}",
                mirror.repository(),
                origin.repository()
            ),
        }
    }
    let image = match image {
        Some(img) => img,
        None => fetch(&origin, &req, &version_digest, format, &platform, &dest).await?,
    };

    let values = [&req.version.tag, digest, &req.source.repository];
    for (name, value) in VERSION_FILES.into_iter().zip(values) {
        confined::write_new(&dest, name, value.as_bytes())
            .with_context(|| format!("writing {}", dest.join(name).display()))?;
    }
    if let Some(target) = &metadata_target {
        let summary = metadata::Metadata::of(&req.source.repository, &req.version.tag, digest, &image);
        target.write(&dest, &summary)?;
    }

    let mut metadata = vec![
        MetadataField::new("repository", req.source.repository.clone()),
        MetadataField::new("tag", req.version.tag.clone()),
    ];
    if let Some(re) = &annotation_regex {
        metadata.extend(matching(re, &image.manifest.value.annotations));
    }
    if let Some(re) = &label_regex {
        metadata.extend(matching(re, image.config.value.config.labels.as_ref().unwrap_or(&BTreeMap::new())));
    }
    Ok(StepResponse { version: req.version, metadata })
}

fn matching(re: &regex::Regex, values: &BTreeMap<String, String>) -> Vec<MetadataField> {
    values.iter().filter(|(k, _)| re.is_match(k)).map(|(k, v)| MetadataField::new(k.clone(), v.clone())).collect()
}

/// Resolves the image and, unless `skip_download`, writes it in `format` into `dest`.
async fn fetch(
    client: &Arc<Client>,
    req: &GetRequest,
    digest: &Digest,
    format: Format,
    platform: &Platform,
    dest: &Path,
) -> anyhow::Result<Image> {
    eprintln!("fetching {}@{digest}", client.repository());
    let image = pull::resolve(client, digest, platform).await?;
    if req.params.skip_download {
        return Ok(image);
    }
    let work = WorkDir::create(dest)?;
    let started = Instant::now();
    match format {
        Format::Rootfs => {
            write_rootfs(client, &image, &work, req.source.debug, req.params.unpack_max_bytes).await?;
            write_json(
                &work.path.join("metadata.json"),
                &kiln_image::rootfs::run_metadata(&image.config.value.config),
            )?;
            write_json(&work.path.join("labels.json"), &labels(&image))?;
            work.finish(format.outputs())?;
        }
        Format::Oci | Format::Docker => {
            let name = format!("{}:{}", req.source.repository, req.version.tag);
            let tag = (!req.version.tag.is_empty()).then_some(name.as_str());
            write_image_tar(client, &image, tag, &work.path.join("image.tar"), &work.spool_dir).await?;
            write_json(&work.path.join("labels.json"), &labels(&image))?;
            work.finish(format.outputs())?;
        }
        Format::OciLayout => {
            write_layout(client, digest, &work.path.join("oci"), &work).await?;
            work.finish(format.outputs())?;
        }
    }
    eprintln!("fetched {}@{digest} in {:.1}s", client.repository(), started.elapsed().as_secs_f64());
    Ok(image)
}

/// `metadata.json`: how to run the image (as registry-image-resource writes it).
fn labels(image: &Image) -> BTreeMap<String, String> {
    image.config.value.config.labels.clone().unwrap_or_default()
}

fn write_json(path: &Path, value: &impl serde::Serialize) -> anyhow::Result<()> {
    std::fs::write(path, serde_json::to_vec(value)?).with_context(|| format!("writing {}", path.display()))
}

/// Downloads the layers in parallel and unpacks them in order into `work/rootfs`.
async fn write_rootfs(
    client: &Arc<Client>,
    image: &Image,
    work: &WorkDir,
    debug: bool,
    max_bytes: Option<u64>,
) -> anyhow::Result<()> {
    let layers = image.manifest.value.layers.clone();
    let declared = layers.iter().map(|l| l.size).sum::<u64>();
    let max_bytes = max_bytes.unwrap_or_else(|| kiln_image::unpack::budget_for(declared));
    let progress = Arc::new(Progress::for_terminal("layer", layers.len(), debug));
    let spools = pull::spool_all(client.clone(), &layers, &work.spool_dir, PARALLEL_DOWNLOADS, progress.clone())?;
    let rootfs = work.path.join("rootfs");
    let shown = progress.clone();
    let result = tokio::task::spawn_blocking(move || unpack_layers(&rootfs, &spools, &progress, max_bytes)).await;
    shown.end();
    result.context("unpacking")?
}

fn unpack_layers(rootfs: &Path, spools: &[Arc<Spool>], progress: &Progress, max_bytes: u64) -> anyhow::Result<()> {
    std::fs::create_dir_all(rootfs).with_context(|| format!("creating {}", rootfs.display()))?;
    let options = kiln_image::unpack::UnpackOptions { max_bytes: Some(max_bytes), ..Default::default() };
    let mut unpacker = kiln_image::unpack::Unpacker::new(rootfs, options)?;
    let names: Vec<String> = spools.iter().map(|s| s.descriptor.digest.to_string()).collect();
    let mut started = Instant::now();
    let done = |i: usize| {
        progress.unpacked(i, &spools[i].descriptor, started.elapsed());
        started = Instant::now();
    };
    // Each spool's reader checks the layer's digest at its end, which unpack_layers reads to.
    kiln_image::rootfs::unpack_layers(&mut unpacker, &names, |i| spools[i].reader(), done).map_err(|failed| {
        let spool = &spools[failed.index];
        let digest = &spool.descriptor.digest;
        // A failed download is the cause worth reporting, not the unpacker's view of it.
        if let Err(download) = spool.wait() {
            return anyhow::anyhow!("layer {digest}: {download}");
        }
        let e = match failed.error {
            LayerError::Unpack(e @ kiln_image::unpack::UnpackError::TooLarge { .. }) => anyhow::anyhow!(
                "{e} (by default 64 times the layers' declared size, at least 1 GiB; \
                 params.unpack_max_bytes sets another)"
            ),
            LayerError::Unpack(e) => e.into(),
            LayerError::Read(e) => e.into(),
        };
        e.context(format!("layer {}/{} {digest}", failed.index + 1, failed.count))
    })
}

/// Writes `image.tar`: an OCI layout in a tarball plus docker's `manifest.json`, so that
/// `docker load`, `skopeo copy docker-archive:` and `skopeo copy oci-archive:` all read it.
async fn write_image_tar(
    client: &Arc<Client>,
    image: &Image,
    tag: Option<&str>,
    out: &Path,
    spool_dir: &Path,
) -> anyhow::Result<()> {
    let layers = image.manifest.value.layers.clone();
    let progress = Arc::new(Progress::new("layer", layers.len()));
    let spools = pull::spool_all(client.clone(), &layers, spool_dir, PARALLEL_DOWNLOADS, progress)?;
    let manifest = image.manifest.clone();
    let config = image.config.clone();
    let (out, tag) = (out.to_path_buf(), tag.map(String::from));
    tokio::task::spawn_blocking(move || {
        let file = std::fs::File::create(&out).with_context(|| format!("creating {}", out.display()))?;
        let mut tar = tar::Builder::new(std::io::BufWriter::with_capacity(1 << 20, file));
        let mut add = |path: &str, size: u64, data: &mut dyn std::io::Read| -> anyhow::Result<()> {
            let mut header = tar::Header::new_ustar();
            header.set_size(size);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut header, path, data).with_context(|| format!("writing {path} into image.tar"))
        };
        add("oci-layout", layout::OCI_LAYOUT.len() as u64, &mut &layout::OCI_LAYOUT[..])?;
        let mut manifest_desc = manifest.descriptor.clone();
        let mut annotations = BTreeMap::new();
        if let Some(tag) = &tag {
            annotations.insert(layout::IMAGE_NAME.to_string(), tag.clone());
            let short = tag.rsplit(':').next().unwrap_or_default().to_string();
            annotations.insert(layout::REF_NAME.to_string(), short);
        }
        manifest_desc.annotations = annotations;
        let index = layout::index_of(&[manifest_desc]);
        add("index.json", index.len() as u64, &mut index.as_slice())?;
        let docker = serde_json::to_vec(&serde_json::json!([{
            "Config": config.descriptor.digest.blob_path(),
            "RepoTags": tag.iter().collect::<Vec<_>>(),
            "Layers": manifest.value.layers.iter().map(|l| l.digest.blob_path()).collect::<Vec<_>>(),
        }]))?;
        add("manifest.json", docker.len() as u64, &mut docker.as_slice())?;
        add(&manifest.descriptor.digest.blob_path(), manifest.bytes.len() as u64, &mut manifest.bytes.as_slice())?;
        add(&config.descriptor.digest.blob_path(), config.bytes.len() as u64, &mut config.bytes.as_slice())?;
        let mut written = std::collections::HashSet::new();
        for spool in &spools {
            let d = &spool.descriptor;
            let mut reader = spool.reader()?;
            if written.insert(d.digest.clone()) {
                add(&d.digest.blob_path(), d.size, &mut reader).map_err(|e| match spool.wait() {
                    Err(download) => anyhow::anyhow!("layer {}: {download}", d.digest),
                    Ok(()) => e,
                })?;
            }
        }
        // Flushed, not synced to disk: the next step reads it from the page cache, and a
        // crash of the machine ends the build anyway. Syncing cost 0.4 s per 170 MB.
        tar.into_inner()?.into_inner().map_err(|e| e.into_error())?;
        Ok(())
    })
    .await
    .context("writing image.tar")?
}

/// How deep indexes may nest in what `format: oci-layout` fetches (an index of images is 1).
const MAX_INDEX_DEPTH: usize = 4;
/// How many distinct manifests and indexes one fetch may walk.
const MAX_MANIFESTS: usize = 1000;

/// Writes an OCI image layout of everything `digest` names: an index with all its
/// platforms, or a single image wrapped in an index plus `single-image-digest`.
async fn write_layout(client: &Arc<Client>, digest: &Digest, out: &Path, work: &WorkDir) -> anyhow::Result<()> {
    let layout = Layout::create(out).with_context(|| format!("creating the layout {}", out.display()))?;
    let top = pull::fetch_manifest(client, digest).await?;

    // Manifests to walk (nested indexes included), each fetched once however often it is
    // listed, and the blobs they name. An index may nest MAX_INDEX_DEPTH deep and name
    // MAX_MANIFESTS distinct manifests in all.
    let mut queue = vec![(top.clone(), 0)];
    let mut walked = std::collections::HashSet::from([top.descriptor.digest.clone()]);
    let mut blobs: Vec<Descriptor> = Vec::new();
    while let Some((fetched, depth)) = queue.pop() {
        match &fetched.value {
            ManifestOrIndex::Index(index) => {
                if depth >= MAX_INDEX_DEPTH {
                    anyhow::bail!(
                        "index {} nests indexes more than {MAX_INDEX_DEPTH} deep; kiln stops there",
                        fetched.descriptor.digest
                    );
                }
                for child in &index.manifests {
                    if !walked.insert(child.digest.clone()) {
                        continue;
                    }
                    if walked.len() > MAX_MANIFESTS {
                        anyhow::bail!("index {digest} names more than {MAX_MANIFESTS} manifests; kiln stops there");
                    }
                    let c = pull::fetch_manifest(client, &child.digest).await?;
                    layout.write_blob(&c.bytes)?;
                    queue.push((c, depth + 1));
                }
            }
            ManifestOrIndex::Manifest(m) => {
                layout.write_blob(&fetched.bytes)?;
                blobs.push(m.config.clone());
                blobs.extend(m.layers.iter().cloned());
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    blobs.retain(|b| seen.insert(b.digest.clone()));
    let progress = Arc::new(Progress::new("blob", blobs.len()));
    let spools = pull::spool_all(client.clone(), &blobs, &work.spool_dir, PARALLEL_DOWNLOADS, progress)?;
    for spool in spools {
        let layout = layout.clone();
        tokio::task::spawn_blocking(move || spool.persist(&layout)).await??;
    }

    match &top.value {
        ManifestOrIndex::Index(_) => layout.set_index(&top.bytes)?,
        ManifestOrIndex::Manifest(_) => {
            layout.set_index(&layout::index_of(&[&top.descriptor]))?;
            confined::write_new(out, "single-image-digest", digest.to_string().as_bytes())?;
        }
    }
    Ok(())
}

/// A fresh folder inside `dest` where output is assembled; removed whatever happens.
struct WorkDir {
    dest: PathBuf,
    path: PathBuf,
    spool_dir: PathBuf,
    _fresh: FreshDir,
}

impl WorkDir {
    fn create(dest: &Path) -> anyhow::Result<Self> {
        let fresh = FreshDir::create(dest, "kiln-in")
            .with_context(|| format!("creating a work folder in {}", dest.display()))?;
        let path = fresh.path().to_path_buf();
        let spool_dir = path.join(".spool");
        std::fs::create_dir(&spool_dir).with_context(|| format!("creating {}", spool_dir.display()))?;
        Ok(Self { dest: dest.to_path_buf(), path, spool_dir, _fresh: fresh })
    }

    /// Moves the named outputs into `dest`, replacing what `dest` held under those names.
    fn finish(&self, names: &[&str]) -> anyhow::Result<()> {
        for name in names {
            let (from, to) = (self.path.join(name), self.dest.join(name));
            confined::rename_into(&from, &to)
                .with_context(|| format!("moving {} to {}", from.display(), to.display()))?;
        }
        Ok(())
    }
}
