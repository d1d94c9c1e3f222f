//! Pushing an image read from disk ([`LoadedImage`]) under a list of tags: the one push
//! path, used by the resource's `out` and by the build task's `PUSH`.
//!
//! Blobs go first, several at once, skipping those the registry already has and mounting
//! those another repository of the same registry has; then any child manifests by digest;
//! then the manifest or index under each tag, each checked against the digest the
//! registry reports. An image the repository already holds only gets its tags.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use kiln_image::archive::{self, ArchiveError, LoadedImage};
use kiln_image::blob::Blob;
use kiln_image::digest::Digest;
use kiln_image::display::human;

use crate::{Client, RegistryError, Repository};

/// Blobs uploaded at once. Four and six measured the same against the loopback registry
/// on two cores, whose own ingest (hashing and writing) is the bound.
const PARALLEL_UPLOADS: usize = 4;
/// Tags looked up at once.
const PARALLEL_LOOKUPS: usize = 8;

/// Why a push failed. Each names what it was doing; the registry's own error follows.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("{what}")]
    Registry {
        what: String,
        #[source]
        source: RegistryError,
    },
    /// The registry's error says what was being done (pushing a manifest, a tag).
    #[error(transparent)]
    Manifest(#[from] RegistryError),
    #[error("reading blob {digest}")]
    Read {
        digest: Digest,
        #[source]
        source: std::io::Error,
    },
    #[error("the registry stored {tag} as {stored}, not {expected}")]
    Moved { tag: String, stored: Digest, expected: Digest },
    /// The image on disk could not be read; the message names the file.
    #[error(transparent)]
    Image(#[from] ArchiveError),
    /// A task of the push ended abnormally (a panic, or the runtime shutting down).
    #[error("{0}")]
    Task(String),
}

fn registry(what: impl Into<String>) -> impl FnOnce(RegistryError) -> PushError {
    let what = what.into();
    move |source| PushError::Registry { what, source }
}

/// What one push did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pushed {
    pub uploaded: usize,
    pub bytes: u64,
    pub mounted: usize,
    pub present: usize,
    /// The repository already held the image: only the tags were set.
    pub already_there: bool,
}

/// What happened to one blob.
enum Outcome {
    Uploaded(u64),
    Mounted,
    Present,
}

/// Reads the image at `relative` beneath `root` for [`push`]: its manifests and indexes are
/// checked now (and a docker save's layers hashed, to learn their digests); each blob of an
/// OCI image is checked by the registry as it is uploaded, and one the registry already has
/// is never read.
pub async fn load(root: &Path, relative: &Path) -> Result<LoadedImage, PushError> {
    let (root, relative): (PathBuf, PathBuf) = (root.into(), relative.into());
    tokio::task::spawn_blocking(move || archive::load_beneath(&root, &relative, archive::Verify::OnRead))
        .await
        .map_err(|e| PushError::Task(format!("reading the image: {e}")))?
        .map_err(PushError::Image)
}

/// Pushes `image` to `client`'s repository and points every tag at it, printing a line
/// per blob and one at the end on stderr.
pub async fn push(client: &Arc<Client>, image: &LoadedImage, tags: &[String]) -> Result<Pushed, PushError> {
    let started = Instant::now();
    // Tags that already name this exact image are left as they are (and a push whose tags
    // all do sends nothing at all).
    // Looked up a few at once (`additional_tags` may name many), kept in the given order.
    use futures_util::StreamExt as _;
    let lookups = futures_util::stream::iter(tags).map(|tag| async move {
        let current = client.head_manifest(tag).await.map_err(registry(format!("looking up tag {tag}")))?;
        Ok::<_, PushError>(current.is_none_or(|d| d.digest != image.top.digest).then(|| tag.clone()))
    });
    let mut to_set = Vec::new();
    let mut lookups = lookups.buffered(PARALLEL_LOOKUPS);
    while let Some(tag) = lookups.next().await {
        to_set.extend(tag?);
    }
    let already_there = |what: String| {
        eprintln!("{} was already in {}{what}", image.top.digest, client.repository());
        Ok(Pushed { already_there: true, ..Pushed::default() })
    };
    if to_set.is_empty() {
        let secs = started.elapsed().as_secs_f64();
        return already_there(format!(" as {}: nothing read or sent in {secs:.1}s", tags.join(", ")));
    }
    let tags = &to_set[..];
    // The repository already holds this exact image (a registry only accepts a manifest whose
    // blobs and children it has): only the tags remain to be set.
    if client.head_manifest(&image.top.digest.to_string()).await.map_err(registry("checking for the image"))?.is_some()
    {
        put_tags(client, image, tags).await?;
        let secs = started.elapsed().as_secs_f64();
        return already_there(format!("; tagged {} in {secs:.1}s, no blobs read or sent", tags.join(", ")));
    }
    let mount_from = mount_sources(client.repository(), &image.origins);
    let total = image.blobs.len();
    // The largest start first, so a large one never starts last and runs on alone.
    let mut blobs: Vec<_> = image.blobs.iter().cloned().enumerate().collect();
    blobs.sort_by_key(|(_, (descriptor, _))| std::cmp::Reverse(descriptor.size));
    let mount_from = &mount_from;
    let upload = |(i, (descriptor, blob)): (usize, (kiln_image::oci::Descriptor, Blob))| {
        async move {
            let digest = &descriptor.digest;
            let began = Instant::now();
            let what = format!("blob {}/{total} {} ({})", i + 1, digest.short(), human(descriptor.size));
            if client.blob_exists(digest).await.map_err(registry(format!("checking for blob {digest}")))?.is_some() {
                eprintln!("  {what} already there");
                return Ok::<_, PushError>(Outcome::Present);
            }
            for from in mount_from.iter() {
                // A refused mount only means uploading it.
                if client.mount_blob(digest, from).await.unwrap_or(false) {
                    eprintln!("  {what} mounted from {from}");
                    return Ok(Outcome::Mounted);
                }
            }
            let data = match blob {
                // Opened now, beneath the folder the image was read from; every attempt
                // reads that one open file.
                Blob::File(range) => {
                    Blob::File(range.pinned().map_err(|source| PushError::Read { digest: digest.clone(), source })?)
                }
                memory => memory,
            };
            client.push_blob(digest, &data).await.map_err(registry(format!("pushing blob {digest}")))?;
            eprintln!("  {what} pushed in {:.1}s", began.elapsed().as_secs_f64());
            Ok(Outcome::Uploaded(data.len()))
        }
    };
    let mut uploads = futures_util::stream::iter(blobs).map(upload).buffer_unordered(PARALLEL_UPLOADS);
    let mut pushed = Pushed::default();
    while let Some(outcome) = uploads.next().await {
        match outcome? {
            Outcome::Uploaded(n) => (pushed.uploaded, pushed.bytes) = (pushed.uploaded + 1, pushed.bytes + n),
            Outcome::Mounted => pushed.mounted += 1,
            Outcome::Present => pushed.present += 1,
        }
    }
    for child in &image.children {
        client.put_manifest(&child.digest.to_string(), &child.media_type, &child.bytes).await?;
        eprintln!("  manifest {} pushed", child.digest.short());
    }
    put_tags(client, image, tags).await?;
    eprintln!(
        "pushed {} as {} in {:.1}s: {} blobs uploaded ({}), {} mounted, {} already there",
        image.top.digest,
        tags.join(", "),
        started.elapsed().as_secs_f64(),
        pushed.uploaded,
        human(pushed.bytes),
        pushed.mounted,
        pushed.present,
    );
    Ok(pushed)
}

/// Points every tag at the image, checking the registry stored the digest we computed.
async fn put_tags(client: &Client, image: &LoadedImage, tags: &[String]) -> Result<(), PushError> {
    for tag in tags {
        let stored = client.put_manifest(tag, &image.top.media_type, &image.top.bytes).await?;
        if stored.digest != image.top.digest {
            return Err(PushError::Moved {
                tag: tag.clone(),
                stored: stored.digest,
                expected: image.top.digest.clone(),
            });
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
