//! `out` (a pipeline's `put`): pushes the image at `params.image` (a docker-save or OCI
//! tarball, or an OCI layout), or the one `params.build` builds ([`crate::put_build`]),
//! under every tag the request asks for, and writes its digest to `params.digest_file`.
//!
//! The push itself is [`kiln_registry::push`], shared with the build task's `PUSH`.
//!
//! Every file is read beneath the put's folder: the image `params.image` matches, each file
//! of a layout, and the `additional_tags` file are opened without following a link that
//! leaves it ([`kiln_image::confined`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use kiln_build_task::task::params::ImageName;
use kiln_registry::Client;
use serde::Deserialize;

use crate::protocol::{MetadataField, StepResponse, Version};
use crate::semver;
use crate::source::Source;

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
    /// One tag or a list, pushed first; the first is the version `out` emits.
    #[serde(default)]
    pub tag: Option<OneOrMany>,
    /// A Dockerfile to build and push instead of `image` (see [`crate::put_build`]).
    #[serde(default)]
    pub build: Option<serde_json::Value>,
    /// With `build`: keep BuildKit's cache between builds (default true).
    #[serde(default)]
    pub cache: Option<bool>,
    /// A file, relative to the put's folder, to write the pushed digest to.
    #[serde(default)]
    pub digest_file: Option<String>,
}

/// A string or a list of strings.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn items(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// Runs `out` with the put's directory `dir`.
pub async fn put(req: PutRequest, dir: PathBuf) -> anyhow::Result<StepResponse> {
    let target = req.source.validate()?;
    let signer = req.source.cosign_signer()?;
    let notary_key = req.source.content_trust.as_ref().map(|ct| ct.signing_key()).transpose()?;
    let input = match (&req.params.build, req.params.image.is_empty()) {
        (Some(_), false) => bail!("params.build and params.image both name an image to push; set one of them"),
        (Some(spec), true) => Input::Build(crate::put_build::BuildSpec::parse(spec, req.params.cache)?),
        (None, true) => bail!(
            "params.image is not set: give the path of the image to push, relative to the put's directory (e.g. image/image.tar), or params.build to build one"
        ),
        (None, false) => {
            if req.params.cache.is_some() {
                bail!("params.cache only applies with params.build");
            }
            Input::Image(find_image(&dir, &req.params.image)?)
        }
    };
    let digest_file = match req.params.digest_file.as_deref().filter(|f| !f.is_empty()) {
        Some(f) => Some(plain_relative("params.digest_file", f)?),
        None => None,
    };
    let (repo, config) = req.source.connect().await?;
    let credentials = config.credentials.clone();
    let notary_config = config.clone();
    let client = Arc::new(Client::new(repo, config)?);
    let tags = tags(&req, &dir, &client).await?;
    // A built image is read from the fresh folder it was built in (kept until pushed).
    let (root, relative, _built) = match input {
        Input::Build(spec) => {
            let name = ImageName { repository: req.source.repository.clone(), tag: tags[0].clone() };
            let trust = crate::put_build::RegistryTrust {
                host: target.registry().to_string(),
                // As kiln's own client: plain HTTP when allowed, or on loopback without a CA.
                http: req.source.allows_plain_http() || (target.is_loopback() && req.source.ca_certs.is_empty()),
                ca_certs: req.source.ca_certs.clone(),
            };
            let built = spec.build(&dir, name, credentials, &trust).await?;
            (built.dir.path().to_path_buf(), PathBuf::from(built.image), Some(built))
        }
        Input::Image(relative) => (dir.clone(), relative, None),
    };
    let path = root.join(&relative);
    eprintln!("reading {}", path.display());
    let loaded = kiln_registry::push::load(&root, &relative).await?;
    eprintln!("pushing {} to {} as {}", loaded.top.digest, client.repository(), tags.join(", "));
    kiln_registry::push::push(&client, &loaded, &tags).await?;
    if let Some(signer) = signer {
        // The image and, for an index, each manifest in it, as `cosign sign --recursive`.
        let digests: Vec<String> = loaded.children.iter().chain([&loaded.top]).map(|c| c.digest.to_string()).collect();
        for digest in &digests {
            crate::cosign::sign(&client, &signer, digest).await?;
        }
        eprintln!("signed {} with cosign ({} manifest(s))", loaded.top.digest, digests.len());
    }
    if let (Some(trust), Some(key)) = (&req.source.content_trust, &notary_key) {
        let hex = loaded.top.digest.hex();
        trust.sign(key, &target, notary_config, &tags, hex, loaded.top.bytes.len() as u64).await.map_err(|e| {
            anyhow::anyhow!("content_trust: {e:#}; the image is pushed as {}, but not signed", tags.join(", "))
        })?;
    }
    if let Some(file) = &digest_file {
        kiln_image::confined::write_beneath(&dir, file, loaded.top.digest.to_string().as_bytes()).with_context(
            || format!("params.digest_file: writing {} (the image is pushed)", dir.join(file).display()),
        )?;
    }

    Ok(StepResponse {
        version: Version { tag: tags[0].clone(), digest: loaded.top.digest.to_string() },
        metadata: vec![
            MetadataField::new("repository", req.source.repository.clone()),
            MetadataField::new("tags", tags.join(" ")),
        ],
    })
}

/// Where the image to push comes from.
enum Input {
    /// `params.image`: the file or folder it matched, relative to the put's folder.
    Image(PathBuf),
    Build(crate::put_build::BuildSpec),
}

/// `path` as a plain relative path (no `..`, not absolute), or an error naming `field`.
fn plain_relative(field: &str, path: &str) -> anyhow::Result<PathBuf> {
    let p = PathBuf::from(path);
    if !kiln_image::confined::is_plain_relative(&p) {
        bail!("{field}: {path:?} must be a path inside the put's directory (relative, without ..)");
    }
    Ok(p)
}

/// A tag that looks like shell the user expected to run: Concourse passes params as written.
fn looks_like_shell(tag: &str) -> bool {
    tag.contains("$(") || tag.contains("${") || tag.contains('`') || tag.starts_with('$')
}

/// The tags to push, in registry-image-resource's order: `source.tag`, the version (with
/// the variant), its aliases, then the additional tags.
async fn tags(req: &PutRequest, dir: &Path, client: &Client) -> anyhow::Result<Vec<String>> {
    let (source, params) = (&req.source, &req.params);
    let variant = source.variant.as_deref().filter(|v| !v.is_empty());
    let mut tags = Vec::new();
    for tag in params.tag.as_ref().map(OneOrMany::items).unwrap_or_default() {
        if looks_like_shell(&tag) {
            bail!(
                "params.tag: {tag:?} looks like a shell command, but Concourse does not run or expand params; \
                 write the tags to a file in an earlier step and name it in params.additional_tags"
            );
        }
        kiln_registry::reference::validate_tag(&tag).context("params.tag")?;
        tags.push(tag);
    }
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
        bail!("no tag specified: set params.tag, params.version or source.tag (or params.additional_tags)");
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
}
