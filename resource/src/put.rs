//! `out` (a pipeline's `put`): pushes the image at `params.image` (a docker-save or OCI
//! tarball, or an OCI layout) under every tag the request asks for.
//!
//! Blobs go first, several at once, skipping those the registry already has; then any
//! child manifests by digest; then the manifest or index under each tag, each checked
//! against the digest the registry reports.
//!
//! Every file is read beneath the put's folder: the image `params.image` matches, each file
//! of a layout, and the `additional_tags` file are opened without following a link that
//! leaves it ([`kiln_image::confined`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use kiln_image::archive::{self, BlobLocation, LoadedImage};
use kiln_registry::{BlobData, Client, Repository};
use serde::Deserialize;
use tokio::task::JoinSet;

use crate::progress::{human, short};
use crate::protocol::{MetadataField, StepResponse, Version};
use crate::semver;
use crate::source::Source;

/// Blobs uploaded at once.
const PARALLEL_UPLOADS: usize = 4;
/// The most an `additional_tags` file may weigh.
const MAX_TAGS_FILE: u64 = 1 << 20;

/// `out`'s request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutRequest {
    pub source: Source,
    #[serde(default)]
    pub params: PutParams,
}

/// `params:` of a put step.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutParams {
    #[serde(default)]
    pub image: String,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub bump_aliases: bool,
    #[serde(default)]
    pub additional_tags: Option<String>,
    #[serde(default)]
    pub tag_prefix: Option<String>,
}

/// Runs `out` with the put's directory `dir`.
pub async fn put(req: PutRequest, dir: PathBuf) -> anyhow::Result<StepResponse> {
    req.source.validate()?;
    let signer = req.source.cosign_signer()?;
    if req.params.image.is_empty() {
        bail!(
            "params.image is not set: give the path of the image to push, relative to the put's directory (e.g. image/image.tar)"
        );
    }
    let relative = find_image(&dir, &req.params.image)?;
    let path = dir.join(&relative);
    let (repo, config) = req.source.connect().await?;
    let client = Arc::new(Client::new(repo, config)?);
    let tags = tags(&req, &dir, &client).await?;
    eprintln!("reading {}", path.display());
    let loaded = {
        let dir = dir.clone();
        // Blobs are hashed as they are uploaded; what the registry has is not read at all.
        tokio::task::spawn_blocking(move || archive::load_beneath(&dir, &relative, archive::Verify::OnRead))
            .await
            .context("reading the image")??
    };
    eprintln!("pushing {} to {} as {}", loaded.top.digest, client.repository(), tags.join(", "));
    push(&client, &loaded, &tags).await?;
    if let Some(signer) = signer {
        // The image and, for an index, each manifest in it, as `cosign sign --recursive`.
        let digests: Vec<&str> =
            loaded.children.iter().map(|c| c.digest.as_str()).chain([loaded.top.digest.as_str()]).collect();
        for digest in &digests {
            crate::cosign::sign(&client, &signer, digest).await?;
        }
        eprintln!("signed {} with cosign ({} manifest(s))", loaded.top.digest, digests.len());
    }

    Ok(StepResponse {
        version: Version { tag: tags[0].clone(), digest: loaded.top.digest.clone() },
        metadata: vec![
            MetadataField::new("repository", req.source.repository.clone()),
            MetadataField::new("tags", tags.join(" ")),
        ],
    })
}

/// The tags to push, in registry-image-resource's order: `source.tag`, the version (with
/// the variant), its aliases, then the additional tags.
async fn tags(req: &PutRequest, dir: &Path, client: &Client) -> anyhow::Result<Vec<String>> {
    let (source, params) = (&req.source, &req.params);
    let variant = source.variant.as_deref().filter(|v| !v.is_empty());
    let mut tags = Vec::new();
    if let Some(tag) = &source.tag {
        tags.push(tag.clone());
    }
    if let Some(raw) = params.version.as_deref().filter(|v| !v.is_empty()) {
        let version = semver::Version::parse(raw)
            .with_context(|| format!("params.version: invalid semantic version: {raw:?} (expected like 1.2.3)"))?;
        let mut tag = version.to_string();
        if let Some(v) = variant {
            tag = format!("{tag}-{v}");
        }
        tags.push(tag);
        if params.bump_aliases && !version.is_prerelease() {
            let existing = client.list_tags().await.context("listing tags to decide which aliases to bump")?;
            tags.extend(aliases(&version, variant, &existing));
        }
    }
    let additional = match params.additional_tags.as_deref().filter(|f| !f.is_empty()) {
        Some(file) => {
            let path = dir.join(file);
            let text = kiln_image::confined::read_beneath(dir, Path::new(file), MAX_TAGS_FILE)
                .with_context(|| format!("params.additional_tags: reading {}", path.display()))?;
            String::from_utf8_lossy(&text).split_whitespace().map(String::from).collect()
        }
        None => Vec::new(),
    };
    let prefix = params.tag_prefix.as_deref().unwrap_or_default();
    if additional.is_empty() && !prefix.is_empty() {
        bail!("params.tag_prefix can only be used with params.additional_tags");
    }
    tags.extend(additional.into_iter().map(|t| format!("{prefix}{t}")));
    if tags.is_empty() {
        bail!("no tag specified: set params.version or source.tag (or params.additional_tags)");
    }
    for tag in &tags {
        kiln_registry::reference::validate_tag(tag).context("tags to push")?;
    }
    let mut unique = Vec::new();
    for tag in tags {
        if !unique.contains(&tag) {
            unique.push(tag);
        }
    }
    Ok(unique)
}

/// With `bump_aliases`: `latest` (or the variant), `MAJOR` and `MAJOR.MINOR`, each only
/// while no newer final release of its series is in the registry.
pub fn aliases(version: &semver::Version, variant: Option<&str>, existing: &[String]) -> Vec<String> {
    let (mut latest, mut major, mut minor) = (true, true, true);
    for tag in existing {
        let text = match variant {
            Some(v) => match tag.strip_suffix(&format!("-{v}")) {
                Some(t) => t,
                None => continue,
            },
            None => tag.as_str(),
        };
        let Some(other) = semver::Version::parse(text) else { continue };
        if other.is_prerelease() {
            continue;
        }
        if other.precedence(version).is_gt() {
            latest = false;
        }
        if other.major == version.major && other.minor > version.minor {
            major = false;
        }
        if other.major == version.major && other.minor == version.minor && other.patch > version.patch {
            minor = false;
            major = false;
        }
    }
    let suffix = variant.map(|v| format!("-{v}")).unwrap_or_default();
    let mut out = Vec::new();
    if latest {
        out.push(variant.unwrap_or("latest").to_string());
    }
    if major {
        out.push(format!("{}{suffix}", version.major));
    }
    if minor {
        out.push(format!("{}.{}{suffix}", version.major, version.minor));
    }
    out
}

/// The one file or folder `pattern` (a glob relative to `dir`) names, relative to `dir`.
fn find_image(dir: &Path, pattern: &str) -> anyhow::Result<PathBuf> {
    let full = format!("{}/{pattern}", glob::Pattern::escape(&dir.to_string_lossy()));
    let matches: Vec<PathBuf> = glob::glob(&full)
        .with_context(|| format!("params.image: {pattern:?} is not a valid glob"))?
        .filter_map(Result::ok)
        .collect();
    match matches.as_slice() {
        [] => bail!("params.image: no files match glob {pattern:?} in {}", dir.display()),
        [one] => one
            .strip_prefix(dir)
            .map(Path::to_path_buf)
            .with_context(|| format!("params.image: {} is not in {}", one.display(), dir.display())),
        many => bail!(
            "params.image: too many files/directories match glob {pattern:?}: {}",
            many.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// What happened to one blob.
enum Outcome {
    Uploaded(u64),
    Mounted,
    Present,
}

async fn push(client: &Arc<Client>, image: &LoadedImage, tags: &[String]) -> anyhow::Result<()> {
    let started = Instant::now();
    // The repository already holds this exact image (a registry only accepts a manifest whose
    // blobs and children it has): only the tags remain to be set.
    if client.head_manifest(&image.top.digest).await.context("checking for the image")?.is_some() {
        put_tags(client, image, tags).await?;
        eprintln!(
            "{} was already in {}; tagged {} in {:.1}s, no blobs read or sent",
            image.top.digest,
            client.repository(),
            tags.join(", "),
            started.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    let mount_from = Arc::new(mount_sources(client.repository(), &image.origins));
    let permits = Arc::new(tokio::sync::Semaphore::new(PARALLEL_UPLOADS));
    let mut uploads = JoinSet::new();
    let total = image.blobs.len();
    for (i, (descriptor, location)) in image.blobs.iter().cloned().enumerate() {
        let (client, permits, mount_from) = (client.clone(), permits.clone(), mount_from.clone());
        uploads.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let digest = &descriptor.digest;
            let began = Instant::now();
            let what = format!("blob {}/{total} {} ({})", i + 1, short(digest), human(descriptor.size));
            if client.blob_exists(digest).await.with_context(|| format!("checking for blob {digest}"))?.is_some() {
                eprintln!("  {what} already there");
                return Ok::<_, anyhow::Error>(Outcome::Present);
            }
            for from in mount_from.iter() {
                // A refused mount only means uploading it.
                if client.mount_blob(digest, from).await.unwrap_or(false) {
                    eprintln!("  {what} mounted from {from}");
                    return Ok(Outcome::Mounted);
                }
            }
            let data = match location {
                BlobLocation::File(range) => {
                    // Opened beneath the put's folder, as everything the image was read from.
                    let file = range.open().with_context(|| format!("reading blob {digest}"))?;
                    BlobData::File { path: range.path, file, offset: range.offset, len: range.len }
                }
                BlobLocation::Memory(bytes) => BlobData::Bytes(bytes.into()),
            };
            client.push_blob(digest, &data).await.with_context(|| format!("pushing blob {digest}"))?;
            eprintln!("  {what} pushed in {:.1}s", began.elapsed().as_secs_f64());
            Ok(Outcome::Uploaded(data.len()))
        });
    }
    let (mut uploaded, mut bytes, mut mounted, mut present) = (0, 0, 0, 0);
    while let Some(result) = uploads.join_next().await {
        match result.context("an upload task failed")?? {
            Outcome::Uploaded(n) => (uploaded, bytes) = (uploaded + 1, bytes + n),
            Outcome::Mounted => mounted += 1,
            Outcome::Present => present += 1,
        }
    }
    for child in &image.children {
        client.put_manifest(&child.digest, &child.media_type, &child.bytes).await?;
        eprintln!("  manifest {} pushed", short(&child.digest));
    }
    put_tags(client, image, tags).await?;
    eprintln!(
        "pushed {} as {} in {:.1}s: {uploaded} blobs uploaded ({}), {mounted} mounted, {present} already there",
        image.top.digest,
        tags.join(", "),
        started.elapsed().as_secs_f64(),
        human(bytes),
    );
    Ok(())
}

/// Points every tag at the image, checking the registry stored the digest we computed.
async fn put_tags(client: &Client, image: &LoadedImage, tags: &[String]) -> anyhow::Result<()> {
    for tag in tags {
        let pushed = client.put_manifest(tag, &image.top.media_type, &image.top.bytes).await?;
        if pushed.digest != image.top.digest {
            bail!("the registry stored {tag} as {}, not {}", pushed.digest, image.top.digest);
        }
    }
    Ok(())
}

/// Repositories of `target`'s registry, other than `target`, that the image names as its
/// origin (`registry/repo:tag`): blobs missing from `target` may be mounted from them.
fn mount_sources(target: &Repository, origins: &[String]) -> Vec<String> {
    let mut sources = Vec::new();
    for origin in origins {
        let name = origin.split_once('@').map_or(origin.as_str(), |(name, _)| name);
        let name = match name.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => repo,
            _ => name,
        };
        let Ok(repo) = Repository::parse(name) else { continue };
        if repo.registry() == target.registry()
            && repo.path() != target.path()
            && !sources.iter().any(|s| s == repo.path())
        {
            sources.push(repo.path().to_string());
        }
    }
    sources
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The aliases `out` adds for `version`, given the repository's tags (as `tags` does).
    fn bump(version: &str, variant: &str, existing: &[&str]) -> Vec<String> {
        let version = semver::Version::parse(version).unwrap();
        if version.is_prerelease() {
            return Vec::new();
        }
        let existing: Vec<String> = existing.iter().map(|s| s.to_string()).collect();
        aliases(&version, Some(variant).filter(|v| !v.is_empty()), &existing)
    }

    /// registry-image-resource's table ("pushing semver tags" in out_test.go), its
    /// entries named as there; the version's own tag is left out, aliases are in push order.
    #[test]
    fn alias_table() {
        // (entry, variant, version, tags in the registry, aliases pushed)
        type Case = (&'static str, &'static str, &'static str, &'static [&'static str], &'static [&'static str]);
        let table: &[Case] = &[
            ("bumping aliases with no existing tags", "", "1.2.3", &[], &["latest", "1", "1.2"]),
            ("not bumping aliases if a prerelease is given", "", "1.2.3-alpha.1", &[], &[]),
            ("bumping aliases if only older versions exist", "", "1.2.3", &["1.2.2"], &["latest", "1", "1.2"]),
            ("not bumping anything if a newer patch already exists", "", "1.2.3", &["1.2.4"], &[]),
            ("not bumping major if a newer minor already exists", "", "1.2.3", &["1.3.0"], &["1.2"]),
            (
                "bumping minor and major, but not latest, if a newer major version exists",
                "",
                "1.2.3",
                &["2.0.0"],
                &["1", "1.2"],
            ),
            (
                "bumping everything even if a newer non-variant minor exists",
                "lts",
                "1.2.3",
                &["1.3.0"],
                &["lts", "1-lts", "1.2-lts"],
            ),
            (
                "bumping everything if the only available version is a prerelease",
                "",
                "1.2.3",
                &["2.0.0-rc.1"],
                &["latest", "1", "1.2"],
            ),
            (
                "bumping everything if the only available version is a different variant",
                "hello",
                "1.2.3",
                &["2.0.0-goodbye"],
                &["hello", "1-hello", "1.2-hello"],
            ),
            (
                "bumping variant aliases with no existing tags",
                "hello",
                "1.2.3",
                &[],
                &["hello", "1-hello", "1.2-hello"],
            ),
            (
                "bumping minor and major, but not latest, if a newer major version exists with the same variant",
                "hello",
                "1.2.3",
                &["2.0.0-hello"],
                &["1-hello", "1.2-hello"],
            ),
            (
                "bumping aliases if only older versions exist of the same variant",
                "hello",
                "1.2.3",
                &["1.2.2-hello"],
                &["hello", "1-hello", "1.2-hello"],
            ),
            (
                "not bumping anything if a newer patch already exists of the same variant",
                "hello",
                "1.2.3",
                &["1.2.4-hello"],
                &[],
            ),
            (
                "not bumping major if a newer minor already exists of the same variant",
                "hello",
                "1.2.3",
                &["1.3.0-hello"],
                &["1.2-hello"],
            ),
            // Beyond the anchor's table: the same rules with more tags around.
            (
                "older releases and non-versions are ignored",
                "",
                "1.2.3",
                &["1.2.2", "1.1.0", "0.9.0", "latest", "1", "x"],
                &["latest", "1", "1.2"],
            ),
            ("a newer prerelease of the same series is ignored", "", "1.2.3", &["1.2.4-beta"], &["latest", "1", "1.2"]),
            ("v-prefixed and partial tags count as versions", "", "1.2.3", &["v1.3"], &["1.2"]),
            ("the same version already there still bumps", "", "1.2.3", &["1.2.3"], &["latest", "1", "1.2"]),
            (
                "another variant's newer tags are ignored",
                "alpine",
                "1.2.3",
                &["1.3.0", "1.2.4-slim"],
                &["alpine", "1-alpine", "1.2-alpine"],
            ),
        ];
        for (name, variant, version, existing, expected) in table {
            assert_eq!(bump(version, variant, existing), *expected, "{name}");
        }
    }

    #[test]
    fn mount_sources_are_other_repositories_of_the_same_registry() {
        let target = Repository::parse("127.0.0.1:5000/team/app").unwrap();
        let origins = [
            "127.0.0.1:5000/team/base:1.0",
            "127.0.0.1:5000/team/base:latest",
            "127.0.0.1:5000/team/app:old",
            "127.0.0.1:5000/other@sha256:0000000000000000000000000000000000000000000000000000000000000000",
            "127.0.0.1:6000/team/base:1.0",
            "busybox:latest",
            "not a name",
        ];
        let origins: Vec<String> = origins.iter().map(|s| s.to_string()).collect();
        assert_eq!(mount_sources(&target, &origins), ["team/base", "other"]);
    }
}
