//! `check`: which versions of the image exist, oldest first, ending with the newest.
//!
//! Three modes, as registry-image-resource has them:
//! - **tag** (`source.tag`): that tag's digest, after the previous version while it still exists;
//! - **semver** (no tag, no `tag_regex`): every tag that is a semantic version (with the
//!   variant suffix, within the constraint, prereleases only when asked for), one version
//!   per digest, in version order, then `latest` when it is something else and newer;
//! - **regex** (`tag_regex`): every matching tag, in the registry's order or by creation time.
//!
//! With `registry_mirror` (Docker Hub repositories only) the mirror is asked first and the
//! origin when the mirror fails or finds nothing.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context;
use kiln_image::digest::Digest;
use kiln_image::oci::{self, ImageConfig, ManifestOrIndex, Platform};
use kiln_registry::{Client, ClientConfig, Repository};

use crate::cosign;
use crate::protocol::{CheckRequest, Version};
use crate::semver;
use crate::source::{self, Source};

/// Tags looked up at once.
const PARALLEL_LOOKUPS: usize = 8;
/// Image configs larger than this are refused.
const MAX_CONFIG: u64 = 16 << 20;

/// Answers a check request.
pub async fn check(req: CheckRequest) -> anyhow::Result<Vec<Version>> {
    req.source.validate()?;
    let verifier = req.source.cosign_verifier()?;
    let mode = Mode::from_source(&req.source)?;
    if let Some(digest) = req.version.as_ref().map(|v| v.digest.as_str()).filter(|d| !d.is_empty()) {
        digest.parse::<Digest>().context("version.digest")?;
    }
    let (origin, config) = req.source.connect().await?;
    let mut found = None;
    if let Some((mirror, config)) = req.source.mirror()? {
        match run(&req.source, &mode, mirror.clone(), config, req.version.as_ref()).await {
            Ok(versions) if !versions.is_empty() => found = Some(versions),
            Ok(_) => eprintln!("check: mirror {mirror} has no matching versions; asking {origin}"),
            Err(e) => eprintln!("check: mirror {mirror} failed ({e:#}); asking {origin}"),
        }
    }
    let versions = match found {
        Some(versions) => versions,
        None => run(&req.source, &mode, origin.clone(), config.clone(), req.version.as_ref()).await?,
    };
    // Signatures are checked where the image comes from, never on a mirror.
    let versions = match &req.source.content_trust {
        Some(trust) => {
            let signatures = trust.signatures(&origin, config.clone()).await?;
            let (signed, unsigned): (Vec<Version>, Vec<Version>) =
                versions.into_iter().partition(|v| signatures.signs_tag(&v.tag, &v.digest));
            for version in unsigned {
                eprintln!("check: skipping {}: its Notary target is not {}", version.tag, version.digest);
            }
            signed
        }
        None => versions,
    };
    let Some(verifier) = verifier else { return Ok(versions) };
    let client = Client::new(origin, config)?;
    let mut signed = Vec::with_capacity(versions.len());
    for version in versions {
        match cosign::verify(&client, &verifier, &version.digest).await {
            Ok(()) => signed.push(version),
            Err(e) => eprintln!("check: skipping {}: {e}", version.tag),
        }
    }
    Ok(signed)
}

/// What to look for, parsed before any request.
enum Mode {
    Tag(String),
    Semver { constraint: Option<semver::Constraint> },
    Regex(regex::Regex),
}

impl Mode {
    fn from_source(source: &Source) -> anyhow::Result<Self> {
        if let Some(tag) = &source.tag {
            return Ok(Mode::Tag(tag.clone()));
        }
        if let Some(re) = crate::source::compile_regex("tag_regex", source.tag_regex.as_deref())? {
            return Ok(Mode::Regex(re));
        }
        let constraint = source
            .semver_constraint
            .as_deref()
            .filter(|c| !c.is_empty())
            .map(|c| semver::Constraint::parse(c).map_err(|e| anyhow::anyhow!("source.semver_constraint: {e}")))
            .transpose()?;
        Ok(Mode::Semver { constraint })
    }
}

async fn run(
    source: &Source,
    mode: &Mode,
    repo: Repository,
    config: ClientConfig,
    previous: Option<&Version>,
) -> anyhow::Result<Vec<Version>> {
    let client = Arc::new(Client::new(repo, config)?);
    match mode {
        Mode::Tag(tag) => check_tag(&client, tag, previous).await,
        Mode::Semver { constraint } => check_semver(&client, source, constraint.as_ref(), previous).await,
        Mode::Regex(re) => check_regex(&client, source, re).await,
    }
}

/// Single-tag mode: the tag's current digest, preceded by the previous version
/// while that digest still exists in the repository.
async fn check_tag(client: &Client, tag: &str, previous: Option<&Version>) -> anyhow::Result<Vec<Version>> {
    let Some(current) = client.head_manifest(tag).await? else {
        eprintln!("check: tag {tag} does not exist in {}", client.repository());
        return Ok(Vec::new());
    };
    let mut versions = Vec::new();
    if let Some(prev) = previous.filter(|p| p.digest != current.digest.to_string())
        && prev.digest.parse::<Digest>().is_ok()
        && client.head_manifest(&prev.digest).await?.is_some()
    {
        versions.push(prev.clone());
    }
    versions.push(Version { tag: tag.to_string(), digest: current.digest.to_string() });
    Ok(versions)
}

/// A tag that is a version, before its digest is known.
struct Candidate {
    tag: String,
    version: semver::Version,
    /// Dots in the version as written (without the variant): the more, the more specific the tag.
    dots: usize,
}

impl Candidate {
    /// The tag as semver mode sees it: a version (after `-<variant>` is taken off when a
    /// variant is set) inside the constraint, and no prerelease unless asked for.
    fn from_tag(tag: &str, source: &Source, constraint: Option<&semver::Constraint>) -> Option<Self> {
        let text = match source.variant.as_deref().filter(|v| !v.is_empty()) {
            Some(variant) => tag.strip_suffix(variant)?.strip_suffix('-')?,
            None => tag,
        };
        let version = semver::Version::parse(text)?;
        if constraint.is_some_and(|c| !c.matches(&version)) || !prerelease_allowed(source, &version) {
            return None;
        }
        Some(Candidate { tag: tag.to_string(), version, dots: text.matches('.').count() })
    }

    /// Which of two tags with the same digest names it: a final release over a
    /// prerelease, else the more specific tag (`1.2.3` over `1.2` over `1`), else the first.
    fn beats(&self, other: &Candidate) -> bool {
        match (other.version.is_prerelease(), self.version.is_prerelease()) {
            (false, true) => false,
            (true, false) => true,
            _ => self.dots > other.dots,
        }
    }
}

/// Semver mode, as registry-image-resource's, without its bugs: no empty digests, and
/// `latest` never placed after a newer release.
async fn check_semver(
    client: &Arc<Client>,
    source: &Source,
    constraint: Option<&semver::Constraint>,
    previous: Option<&Version>,
) -> anyhow::Result<Vec<Version>> {
    let bare = source.variant.as_deref().filter(|v| !v.is_empty()).unwrap_or("latest");
    let tags = client.list_tags().await?;
    let mut candidates: Vec<Candidate> =
        tags.iter().filter_map(|tag| Candidate::from_tag(tag, source, constraint)).collect();
    // What each tag looked up pointed at (`None`: gone since it was listed).
    let mut digests: HashMap<String, Option<String>> = HashMap::new();

    // The previous version is a cursor: while its tag still points where it did, nothing
    // at or below it needs looking up again. It is looked at first, and on ties between
    // tags of one digest it keeps its place, as in registry-image-resource.
    if let Some(prev) = previous
        && let Some(at) = candidates.iter().position(|c| c.tag == prev.tag)
    {
        let cursor = candidates.remove(at);
        let digest = client.head_manifest(&cursor.tag).await?.map(|d| d.digest.to_string());
        if digest.as_deref() == Some(prev.digest.as_str()) {
            candidates.retain(|c| c.version.precedence(&cursor.version).is_gt());
        }
        digests.insert(cursor.tag.clone(), digest);
        candidates.insert(0, cursor);
    }

    let mut lookups: Vec<String> =
        candidates.iter().map(|c| c.tag.clone()).filter(|t| !digests.contains_key(t)).collect();
    if tags.iter().any(|t| t == bare) {
        lookups.push(bare.to_string());
    }
    let found = for_each_bounded(lookups, |tag| async move {
        let digest = client.head_manifest(&tag).await?.map(|d| d.digest.to_string());
        Ok((tag, digest))
    })
    .await?;
    digests.extend(found);

    // One version per digest.
    let mut named: HashMap<&str, &Candidate> = HashMap::new();
    for c in &candidates {
        let Some(Some(digest)) = digests.get(&c.tag) else { continue };
        let entry = named.entry(digest).or_insert(c);
        if c.beats(entry) {
            *entry = c;
        }
    }
    let mut named: Vec<(&str, &Candidate)> = named.into_iter().collect();
    named.sort_by(|a, b| a.1.version.cmp(&b.1.version).then_with(|| a.1.tag.cmp(&b.1.tag)));
    let mut versions: Vec<Version> =
        named.iter().map(|(d, c)| Version { tag: c.tag.clone(), digest: d.to_string() }).collect();

    // `latest` (or the bare variant tag) when it is an image no version names, only
    // without a constraint, and only if it is newer than the newest version: otherwise a
    // `latest` not yet moved to a new release, or no longer moved at all, would be taken
    // for the newest version.
    if let Some(Some(bare_digest)) = digests.get(bare)
        && constraint.is_none()
        && !versions.iter().any(|v| &v.digest == bare_digest)
    {
        let newer = match versions.last() {
            None => Ok(()),
            Some(newest) => {
                let platform = source::Platform::resolve(source.platform.as_ref());
                let (bare_created, newest_created) = tokio::try_join!(
                    created(client, bare_digest, &platform),
                    created(client, &newest.digest, &platform)
                )?;
                match (bare_created, newest_created) {
                    (Some(b), Some(n)) if b > n => Ok(()),
                    (Some(_), Some(_)) => Err(format!("its image is not newer than {}'s", newest.tag)),
                    _ => Err(format!("the creation time of it or of {} is unknown", newest.tag)),
                }
            }
        };
        match newer {
            Ok(()) => versions.push(Version { tag: bare.to_string(), digest: bare_digest.clone() }),
            Err(why) => eprintln!("check: {bare} is not reported as a version: {why}"),
        }
    }
    Ok(versions)
}

/// registry-image-resource's prerelease rule: only with `pre_releases`, and only
/// alpha/beta/rc (or the configured prefixes); without configured prefixes a
/// prerelease containing `-` is another variant, not a prerelease.
fn prerelease_allowed(source: &Source, version: &semver::Version) -> bool {
    if !version.is_prerelease() {
        return true;
    }
    if !source.pre_releases {
        return false;
    }
    let pre = version.pre.join(".");
    if source.pre_release_prefixes.is_empty() && pre.contains('-') {
        return false;
    }
    ["alpha", "beta", "rc"]
        .into_iter()
        .chain(source.pre_release_prefixes.iter().map(String::as_str))
        .any(|p| pre.starts_with(p))
}

/// Regex mode: every matching tag, in the registry's order, or by the creation time of
/// its image (oldest first; unknown times first, listing order between equal times).
/// Like registry-image-resource's, it lists every match each time: the previous version
/// plays no part.
async fn check_regex(client: &Arc<Client>, source: &Source, re: &regex::Regex) -> anyhow::Result<Vec<Version>> {
    let tags: Vec<String> = client.list_tags().await?.into_iter().filter(|t| re.is_match(t)).collect();
    if !source.created_at_sort {
        let found = for_each_bounded(tags, |tag| async move {
            let digest = client.head_manifest(&tag).await?.map(|d| d.digest.to_string());
            Ok(digest.map(|digest| Version { tag, digest }))
        })
        .await?;
        return Ok(found.into_iter().flatten().collect());
    }
    let platform = &source::Platform::resolve(source.platform.as_ref());
    let found = for_each_bounded(tags, |tag| async move {
        let Some((desc, bytes)) = client.get_manifest(&tag).await? else { return Ok(None) };
        let when = created_from(client, &tag, &desc.media_type, &bytes, platform).await?;
        Ok(Some((when, Version { tag, digest: desc.digest.to_string() })))
    })
    .await?;
    let mut dated: Vec<(Option<Time>, Version)> = found.into_iter().flatten().collect();
    dated.sort_by_key(|d| d.0);
    Ok(dated.into_iter().map(|(_, v)| v).collect())
}

/// Runs `task` on every input, [`PARALLEL_LOOKUPS`] at a time; the answers in input order,
/// or the first failure (the lookups still running are dropped).
async fn for_each_bounded<I, T, F, Fut>(inputs: Vec<I>, task: F) -> anyhow::Result<Vec<T>>
where
    F: Fn(I) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    use futures_util::{StreamExt as _, TryStreamExt as _};
    futures_util::stream::iter(inputs).map(task).buffered(PARALLEL_LOOKUPS).try_collect().await
}

/// A point in time: seconds since the Unix epoch and nanoseconds.
type Time = kiln_image::time::Time;

/// The creation time of the image a digest names (see [`created_from`]).
async fn created(client: &Client, digest: &str, platform: &Platform) -> anyhow::Result<Option<Time>> {
    let Some((desc, bytes)) = client.get_manifest(digest).await? else { return Ok(None) };
    created_from(client, digest, &desc.media_type, &bytes, platform).await
}

/// The `created` time in the config of the image a manifest describes; for an index, of
/// its image for `platform`, or its first image when it has none for that platform.
/// `None` when there is no such time (or no image config to hold one).
async fn created_from(
    client: &Client,
    reference: &str,
    media_type: &str,
    bytes: &[u8],
    platform: &Platform,
) -> anyhow::Result<Option<Time>> {
    let what = format!("{}:{reference}", client.repository());
    let manifest = match ManifestOrIndex::parse(&what, media_type, bytes) {
        Ok(ManifestOrIndex::Manifest(m)) => *m,
        Ok(ManifestOrIndex::Index(index)) => {
            let images =
                || index.manifests.iter().filter(|d| oci::is_manifest(&d.media_type) || d.media_type.is_empty());
            let Some(child) = crate::pull::select_platform(&index, platform).ok().or_else(|| images().next()) else {
                return Ok(None);
            };
            let child = child.digest.to_string();
            let Some((desc, bytes)) = client.get_manifest(&child).await? else { return Ok(None) };
            match ManifestOrIndex::parse(&child, &desc.media_type, &bytes) {
                Ok(ManifestOrIndex::Manifest(m)) => *m,
                _ => return Ok(None),
            }
        }
        Err(_) => return Ok(None),
    };
    let config = client.get_blob_bytes(&manifest.config.digest, MAX_CONFIG).await?;
    let config: Option<ImageConfig> = serde_json::from_slice(&config).ok();
    Ok(config.and_then(|c| c.created).as_deref().and_then(kiln_image::time::parse))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(json: serde_json::Value) -> Source {
        let mut json = json;
        json["repository"] = "example.com/a".into();
        serde_json::from_value(json).unwrap()
    }

    fn candidates(source: &Source, constraint: Option<&str>, tags: &[&str]) -> Vec<String> {
        let constraint = constraint.map(|c| semver::Constraint::parse(c).unwrap());
        tags.iter().filter_map(|t| Candidate::from_tag(t, source, constraint.as_ref())).map(|c| c.tag).collect()
    }

    #[test]
    fn which_tags_are_versions() {
        let tags = [
            "latest",
            "1",
            "1.2",
            "v1.2.3",
            "1.2.3-rc.1",
            "1.2.3-rc1",
            "1.2.3-alpha",
            "1.2.3-beta.2",
            "1.2.3-foo.1",
            "1.2.3-build.7",
            "1.2.3-rc.1-bar",
            "1.2.3-alpine",
            "alpine",
            "1.2.3-rc.1-alpine",
            "1.2.3-rc.1-bar-alpine",
            "1.2.3-bar-alpine",
            "1.2.3.4",
        ];
        let plain = source(serde_json::json!({}));
        assert_eq!(candidates(&plain, None, &tags), ["1", "1.2", "v1.2.3"]);
        let pre = source(serde_json::json!({ "pre_releases": true }));
        assert_eq!(
            candidates(&pre, None, &tags),
            ["1", "1.2", "v1.2.3", "1.2.3-rc.1", "1.2.3-rc1", "1.2.3-alpha", "1.2.3-beta.2"]
        );
        let prefixes = source(serde_json::json!({ "pre_releases": true, "pre_release_prefixes": ["build"] }));
        assert_eq!(
            candidates(&prefixes, None, &tags),
            [
                "1",
                "1.2",
                "v1.2.3",
                "1.2.3-rc.1",
                "1.2.3-rc1",
                "1.2.3-alpha",
                "1.2.3-beta.2",
                "1.2.3-build.7",
                "1.2.3-rc.1-bar",
                // With prefixes configured, `-` no longer marks another variant.
                "1.2.3-rc.1-alpine",
                "1.2.3-rc.1-bar-alpine"
            ]
        );
        let variant = source(serde_json::json!({ "variant": "alpine", "pre_releases": true }));
        assert_eq!(candidates(&variant, None, &tags), ["1.2.3-alpine", "1.2.3-rc.1-alpine"]);
        assert_eq!(candidates(&plain, Some("~1.2"), &tags), ["1.2", "v1.2.3"]);
        assert_eq!(
            candidates(&pre, Some(">=1.2.3-0"), &tags),
            ["v1.2.3", "1.2.3-rc.1", "1.2.3-rc1", "1.2.3-alpha", "1.2.3-beta.2"]
        );
    }

    #[test]
    fn one_tag_per_digest() {
        let plain = source(serde_json::json!({ "pre_releases": true }));
        let c = |t: &str| Candidate::from_tag(t, &plain, None).unwrap();
        assert!(c("1.2.3").beats(&c("1.2")));
        assert!(!c("1.2").beats(&c("1.2.3")));
        assert!(c("1.2").beats(&c("1")));
        assert!(c("1.0.0").beats(&c("1.0.0-rc.1")));
        assert!(!c("1.0.0-rc.1").beats(&c("1")));
        assert!(c("1.0.0-rc.1").beats(&c("1.0.0-rc1")), "more dots");
        assert!(!c("v1.2.3").beats(&c("1.2.3")), "the first of equals stays");
    }
}
