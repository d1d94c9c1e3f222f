//! `params.output_metadata` of a get: a JSON summary of the image `in` fetched, written to a
//! file the pipeline names inside the get's output folder.
//!
//! The name is checked before anything is fetched ([`Target::check`]): it must be relative,
//! never climb with `..`, not be one of the names `in` itself writes, and no folder on its way
//! may be, or pass through, a link out of the output folder. The file is written fresh by
//! descriptors opened beneath the output folder ([`confined::write_beneath`]), so a link
//! standing at its name is replaced, never written through.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, bail};
use kiln_image::confined;
use serde::Serialize;

use crate::pull::Image;

const FIELD: &str = "params.output_metadata";

/// Where the metadata goes, checked: the folder holding it (relative to the output folder,
/// empty for the output folder itself) and the file's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    folder: PathBuf,
    name: String,
}

impl Target {
    /// Checks `raw`, the param's value, against the output folder `dest` as it is now;
    /// `reserved` are the names this get writes itself.
    pub fn check(dest: &Path, raw: &str, reserved: &[&str]) -> anyhow::Result<Self> {
        let target = Self::parse(raw, reserved)?;
        match confined::metadata_beneath(dest, &target.folder) {
            Ok(meta) if meta.is_dir() => Ok(target),
            Ok(_) => bail!("{FIELD}: {} is not a folder", target.folder.display()),
            // Made when the file is written (each folder then checked again).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(target),
            Err(e) => bail!("{FIELD}: {raw}: {e}"),
        }
    }

    /// The checks that need no folder.
    fn parse(raw: &str, reserved: &[&str]) -> anyhow::Result<Self> {
        if raw.is_empty() {
            bail!("{FIELD} is empty: name a file inside the get's output folder");
        }
        let path = Path::new(raw);
        if path.has_root() {
            bail!("{FIELD}: {raw} is absolute: name a file relative to the get's output folder");
        }
        let mut parts = Vec::new();
        for component in path.components() {
            match component {
                Component::Normal(part) => parts.push(part.to_string_lossy().into_owned()),
                Component::CurDir => {}
                Component::ParentDir => {
                    bail!("{FIELD}: {raw} has a `..`: name a file inside the get's output folder without one")
                }
                Component::RootDir | Component::Prefix(_) => {
                    bail!("{FIELD}: {raw} is absolute: name a file relative to the get's output folder")
                }
            }
        }
        if raw.ends_with('/') || parts.is_empty() {
            bail!("{FIELD}: {raw} names a folder, not a file");
        }
        if reserved.contains(&parts[0].as_str()) {
            bail!("{FIELD}: {raw} is where this get writes its own {:?}; choose another name", parts[0]);
        }
        let name = parts.pop().expect("at least one part");
        Ok(Target { folder: parts.iter().collect(), name })
    }

    /// Writes `metadata` as JSON, making the missing folders on the way.
    pub fn write(&self, dest: &Path, metadata: &Metadata) -> anyhow::Result<()> {
        let relative = self.folder.join(&self.name);
        let context = || format!("{FIELD}: writing {}", dest.join(&relative).display());
        let mut bytes = serde_json::to_vec_pretty(metadata)?;
        bytes.push(b'\n');
        // Folders made and the file renamed in by descriptor: nothing swapped in meanwhile
        // is followed out of the output folder.
        confined::write_beneath(dest, &relative, &bytes).with_context(context)
    }
}

/// What the file holds. Everything but `repository`, `tag` and `digest` (the version) is
/// about the one image `in` resolved: for an index, the platform's image.
#[derive(Debug, Serialize)]
pub struct Metadata {
    /// `source.repository`, as the `repository` file holds it.
    pub repository: String,
    /// The version's tag.
    pub tag: String,
    /// The version's digest, as the `digest` file holds it: an index's when it names one.
    pub digest: String,
    /// The digest of the image manifest fetched (the platform's, for an index).
    pub manifest_digest: String,
    pub platform: PlatformFields,
    /// The config's `created`, or null.
    pub created: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub env: Vec<String>,
    /// Null when the image sets none (not the same as an empty list).
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    /// Empty when the image names none (root).
    pub user: String,
    /// How many layers the manifest lists.
    pub layers: usize,
    /// The layers' sizes as the manifest declares them (compressed, as stored), summed.
    pub size: u64,
}

#[derive(Debug, Serialize)]
pub struct PlatformFields {
    pub os: String,
    pub architecture: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Metadata {
    pub fn of(repository: &str, tag: &str, digest: &str, image: &Image) -> Self {
        let config = &image.config.value;
        let run = &config.config;
        // The config says what the image is; the index entry it was chosen by fills gaps.
        let entry = image
            .index
            .as_ref()
            .and_then(|i| i.value.manifests.iter().find(|d| d.digest == image.manifest.descriptor.digest))
            .and_then(|d| d.platform.as_ref());
        let or_entry = |own: &str, theirs: Option<&String>| {
            if own.is_empty() { theirs.cloned().unwrap_or_default() } else { own.to_string() }
        };
        let platform = PlatformFields {
            os: or_entry(&config.os, entry.map(|p| &p.os)),
            architecture: or_entry(&config.architecture, entry.map(|p| &p.architecture)),
            variant: config
                .variant
                .clone()
                .filter(|v| !v.is_empty())
                .or_else(|| entry.and_then(|p| p.variant.clone()).filter(|v| !v.is_empty())),
        };
        let layers = &image.manifest.value.layers;
        Metadata {
            repository: repository.to_string(),
            tag: tag.to_string(),
            digest: digest.to_string(),
            manifest_digest: image.manifest.descriptor.digest.to_string(),
            platform,
            created: config.created.clone(),
            labels: run.labels.clone().unwrap_or_default(),
            env: run.env.clone().unwrap_or_default(),
            entrypoint: run.entrypoint.clone(),
            cmd: run.cmd.clone(),
            user: run.user.clone().unwrap_or_default(),
            layers: layers.len(),
            size: layers.iter().map(|l| l.size).sum(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(raw: &str) -> String {
        Target::parse(raw, &["rootfs", "tag"]).expect_err(raw).to_string()
    }

    #[test]
    fn names_are_checked_before_any_folder_is_looked_at() {
        let ok = |raw: &str| Target::parse(raw, &["rootfs", "tag"]).expect(raw);
        assert_eq!(ok("meta.json"), Target { folder: PathBuf::new(), name: "meta.json".into() });
        assert_eq!(ok("./a/./b/meta.json"), Target { folder: "a/b".into(), name: "meta.json".into() });
        assert_eq!(ok("tags.json").name, "tags.json");
        for (raw, says) in [
            ("", "is empty"),
            ("/abs", "is absolute"),
            ("../x", "has a `..`"),
            ("a/../../x", "has a `..`"),
            ("a/..", "has a `..`"),
            ("dir/", "names a folder"),
            (".", "names a folder"),
            ("tag", "writes its own \"tag\""),
            ("rootfs/etc/meta.json", "writes its own \"rootfs\""),
        ] {
            let e = refused(raw);
            assert!(e.starts_with("params.output_metadata") && e.contains(says), "{raw}: {e}");
        }
    }
}
