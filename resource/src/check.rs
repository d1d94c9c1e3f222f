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
use kiln_image::oci::{ImageConfig, ManifestOrIndex, Platform};
use kiln_registry::{Client, ClientConfig, Repository};
use tokio::task::JoinSet;

use crate::protocol::{CheckRequest, Version};
use crate::semver;
use crate::source::{self, Source};

/// Tags looked up at once.
const PARALLEL_LOOKUPS: usize = 8;

/// Answers a check request.
pub async fn check(req: CheckRequest) -> anyhow::Result<Vec<Version>> {
    let origin = req.source.validate()?;
    let mode = Mode::from_source(&req.source)?;
    if let Some((mirror, config)) = req.source.mirror()? {
        match run(&req.source, &mode, mirror.clone(), config, req.version.as_ref()).await {
            Ok(versions) if !versions.is_empty() => return Ok(versions),
            Ok(_) => eprintln!("check: mirror {mirror} has no matching versions; asking {origin}"),
            Err(e) => eprintln!("check: mirror {mirror} failed ({e:#}); asking {origin}"),
        }
    }
    run(&req.source, &mode, origin, req.source.client_config(), req.version.as_ref()).await
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
        if let Some(pattern) = source.tag_regex.as_deref().filter(|p| !p.is_empty()) {
            let re = regex::Regex::new(pattern).context("source.tag_regex")?;
            return Ok(Mode::Regex(re));
        }
        let constraint = source
            .semver_constraint
            .as_deref()
            .filter(|c| !c.trim().is_empty())
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
    if let Some(prev) = previous.filter(|p| p.digest != current.digest)
        && kiln_registry::reference::validate_digest(&prev.digest).is_ok()
        && client.head_manifest(&prev.digest).await?.is_some()
    {
        versions.push(prev.clone());
    }
    versions.push(Version { tag: tag.to_string(), digest: current.digest });
    Ok(versions)
}

/// A tag that is a version, before its digest is known.
struct Candidate {
    tag: String,
    version: semver::Version,
}

/// Semver mode, as registry-image-resource's, without its bugs: no empty digests, and
/// `latest` never placed after a newer release.
async fn check_semver(
    client: &Arc<Client>,
    source: &Source,
    constraint: Option<&semver::Constraint>,
    previous: Option<&Version>,
) -> anyhow::Result<Vec<Version>> {
    let variant = source.variant.as_deref().filter(|v| !v.is_empty());
    let bare = variant.unwrap_or("latest");
    let tags = client.list_tags().await?;
    let mut candidates: Vec<Candidate> = tags
        .iter()
        .filter_map(|tag| {
            let text = match variant {
                Some(v) => tag.strip_suffix(&format!("-{v}"))?,
                None => tag.as_str(),
            };
            let version = semver::Version::parse(text)?;
            if constraint.is_some_and(|c| !c.matches(&version)) || !prerelease_allowed(source, &version) {
                return None;
            }
            Some(Candidate { tag: tag.clone(), version })
        })
        .collect();

    // The previous version is a cursor: while it still points where it did, nothing at
    // or below it needs looking up again.
    let cursor = match previous.and_then(|p| candidates.iter().find(|c| c.tag == p.tag).map(|c| (p, c))) {
        Some((p, c)) => match client.head_manifest(&p.tag).await? {
            Some(d) if d.digest == p.digest => Some(c.version.clone()),
            _ => None,
        },
        None => None,
    };
    if let Some(cursor) = &cursor {
        let keep = previous.map(|p| p.tag.clone()).unwrap_or_default();
        candidates.retain(|c| c.tag == keep || c.version.precedence(cursor).is_gt());
    }

    let mut lookups: Vec<String> = candidates.iter().map(|c| c.tag.clone()).collect();
    let has_bare = tags.iter().any(|t| t == bare);
    if has_bare {
        lookups.push(bare.to_string());
    }
    let digests = head_all(client, lookups).await?;

    // One version per digest: a final release beats a prerelease, a more specific tag a less specific one.
    let mut by_digest: HashMap<String, &Candidate> = HashMap::new();
    for c in &candidates {
        let Some(digest) = digests.get(&c.tag) else { continue };
        let better = match by_digest.get(digest) {
            None => true,
            Some(existing) => match (existing.version.is_prerelease(), c.version.is_prerelease()) {
                (false, true) => false,
                (true, false) => true,
                _ => c.tag.matches('.').count() > existing.tag.matches('.').count(),
            },
        };
        if better {
            by_digest.insert(digest.clone(), c);
        }
    }
    let mut found: Vec<(&Candidate, String)> = by_digest.into_iter().map(|(d, c)| (c, d)).collect();
    found.sort_by(|a, b| a.0.version.cmp(&b.0.version).then_with(|| a.0.tag.cmp(&b.0.tag)));
    let mut versions: Vec<Version> =
        found.iter().map(|(c, d)| Version { tag: c.tag.clone(), digest: d.clone() }).collect();

    if let Some(bare_digest) = digests.get(bare)
        && constraint.is_none()
        && !versions.iter().any(|v| &v.digest == bare_digest)
    {
        // `latest` goes last only if it is newer than the newest release; otherwise a
        // pipeline would take an older image for the newest version.
        let newer = match versions.last() {
            None => true,
            Some(newest) => {
                let platform = source::Platform::resolve(source.platform.as_ref());
                let (bare_created, newest_created) = tokio::try_join!(
                    created(client, bare_digest, &platform),
                    created(client, &newest.digest, &platform)
                )?;
                matches!((bare_created, newest_created), (Some(b), Some(n)) if b > n)
            }
        };
        if newer {
            versions.push(Version { tag: bare.to_string(), digest: bare_digest.clone() });
        } else {
            eprintln!("check: leaving out {bare}: it is not newer than {}", versions.last().map_or("", |v| &v.tag));
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
        .iter()
        .map(|p| p.to_string())
        .chain(source.pre_release_prefixes.iter().cloned())
        .any(|p| pre.starts_with(&p))
}

/// Regex mode: matching tags in the registry's order, or by image creation time.
async fn check_regex(client: &Arc<Client>, source: &Source, re: &regex::Regex) -> anyhow::Result<Vec<Version>> {
    let tags: Vec<String> = client.list_tags().await?.into_iter().filter(|t| re.is_match(t)).collect();
    let digests = head_all(client, tags.clone()).await?;
    let mut versions: Vec<Version> = tags
        .into_iter()
        .filter_map(|tag| digests.get(&tag).map(|d| Version { tag: tag.clone(), digest: d.clone() }))
        .collect();
    if source.created_at_sort {
        let platform = source::Platform::resolve(source.platform.as_ref());
        let mut dated = Vec::new();
        for v in versions {
            let when = created(client, &v.digest, &platform).await?;
            dated.push((when, v));
        }
        dated.sort_by(|a, b| a.0.cmp(&b.0));
        versions = dated.into_iter().map(|(_, v)| v).collect();
    }
    Ok(versions)
}

/// The digest of each tag that (still) exists, looked up several at once.
async fn head_all(client: &Arc<Client>, tags: Vec<String>) -> anyhow::Result<HashMap<String, String>> {
    let permits = Arc::new(tokio::sync::Semaphore::new(PARALLEL_LOOKUPS));
    let mut set = JoinSet::new();
    for tag in tags {
        let (client, permits) = (client.clone(), permits.clone());
        set.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let found = client.head_manifest(&tag).await?;
            Ok::<_, kiln_registry::RegistryError>((tag, found.map(|d| d.digest)))
        });
    }
    let mut out = HashMap::new();
    while let Some(result) = set.join_next().await {
        if let (tag, Some(digest)) = result.context("a lookup task failed")?? {
            out.insert(tag, digest);
        }
    }
    Ok(out)
}

/// The `created` time of the image a digest names (the platform's image for an index).
/// RFC 3339 timestamps in UTC compare correctly as text once normalised.
async fn created(client: &Client, digest: &str, platform: &Platform) -> anyhow::Result<Option<String>> {
    let Some((desc, bytes)) = client.get_manifest(digest).await? else { return Ok(None) };
    let manifest = match ManifestOrIndex::parse(digest, &desc.media_type, &bytes)? {
        ManifestOrIndex::Manifest(m) => *m,
        ManifestOrIndex::Index(index) => {
            let Ok(child) = crate::pull::select_platform(&index, platform) else { return Ok(None) };
            let Some((d, b)) = client.get_manifest(&child.digest).await? else { return Ok(None) };
            match ManifestOrIndex::parse(&child.digest, &d.media_type, &b)? {
                ManifestOrIndex::Manifest(m) => *m,
                ManifestOrIndex::Index(_) => return Ok(None),
            }
        }
    };
    let config = client.get_blob_bytes(&manifest.config.digest, 16 << 20).await?;
    let config: ImageConfig = serde_json::from_slice(&config).context("image config")?;
    Ok(config.created.as_deref().and_then(normalise_time))
}

/// `2024-05-01T10:00:00.5+02:00` → `2024-05-01T08:00:00.500000000Z`, so times sort as text.
fn normalise_time(text: &str) -> Option<String> {
    let (date, rest) = text.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (year, month, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let split = rest.find(['Z', 'z', '+', '-']).unwrap_or(rest.len());
    let (clock, zone) = rest.split_at(split);
    let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
    let mut t = hms.split(':').map(|p| p.parse::<i64>());
    let (h, m, s) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    let offset = match zone {
        "" | "Z" | "z" => 0,
        z => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let (oh, om) = z[1..].split_once(':').unwrap_or((&z[1..], "0"));
            sign * (oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60)
        }
    };
    // Days from the civil date (proleptic Gregorian), then seconds.
    let (y, mo) = if month <= 2 { (year - 1, month + 9) } else { (year, month - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * mo + 2) / 5 + day - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let secs = days * 86_400 + h * 3600 + m * 60 + s - offset;
    let nanos: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
    Some(format!("{secs:015}.{nanos}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_sort_across_zones() {
        let a = normalise_time("2024-05-01T10:00:00+02:00").unwrap();
        let b = normalise_time("2024-05-01T08:30:00Z").unwrap();
        let c = normalise_time("2024-05-01T08:30:00.5Z").unwrap();
        assert!(a < b && b < c, "{a} {b} {c}");
        assert!(normalise_time("yesterday").is_none());
    }
}
