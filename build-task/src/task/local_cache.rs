//! Local caches: BuildKit's cache kept in a folder on the client (an OCI layout), imported
//! from and exported to through the session's content store, as buildctl does with
//! `type=local`. The task's `cache` folder is one, as in oci-build-task.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kiln_image::layout::Layout;

use crate::session::content::Store;
use crate::task::params::{BuildParams, CacheEntry};

/// The tag the cache's manifest gets in the folder's `index.json`.
const DEFAULT_TAG: &str = "latest";

/// The caches a run imports and exports, as the solve is given them, the content stores
/// BuildKit will ask for, and the folders to tag after an export.
#[derive(Debug, Default)]
pub struct LocalCaches {
    /// `CACHE_FROM` and the task's cache folder, local ones with an absolute folder and
    /// the digest to import; folders holding no cache yet left out.
    pub cache_from: Vec<CacheEntry>,
    /// `CACHE_TO` and the task's cache folder, local ones with an absolute folder.
    pub cache_to: Vec<CacheEntry>,
    pub stores: HashMap<String, Arc<Store>>,
    exports: Vec<(PathBuf, String)>,
}

/// Why a local cache cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("cache folder {}: {error}", path.display())]
pub struct LocalCacheError {
    path: PathBuf,
    error: std::io::Error,
}

impl LocalCaches {
    /// `params`' caches, and `folder` (the task's cache folder, when it holds BuildKit's
    /// exported cache rather than a daemon's state) as an import (when it holds a cache)
    /// and an export; every local cache gets an absolute folder and a store. Imports of
    /// folders with no cache yet are dropped with a note, as buildctl does.
    pub fn prepare(params: &BuildParams, folder: Option<&Path>) -> Result<Self, LocalCacheError> {
        let mut cache_from = params.cache_from.clone();
        let mut cache_to = params.cache_to.clone();
        if let Some(dir) = folder {
            let dir = dir.display().to_string();
            let entry = |k: &str, extra: &[(&str, &str)]| CacheEntry {
                kind: "local".into(),
                attrs: [(k, dir.as_str())].iter().chain(extra).map(|(a, b)| (a.to_string(), b.to_string())).collect(),
            };
            cache_from.push(entry("src", &[]));
            cache_to.push(entry("dest", &[("mode", "max")]));
        }
        let mut caches = LocalCaches::default();
        for entry in cache_to.iter_mut().filter(|e| e.kind == "local") {
            let dir = caches.open(entry, "dest")?;
            let tag = entry.attrs.get("tag").cloned().unwrap_or_else(|| DEFAULT_TAG.into());
            caches.exports.push((dir, tag));
        }
        caches.cache_to = cache_to;
        for mut entry in cache_from {
            if entry.kind == "local" && !entry.attrs.contains_key("digest") {
                let dir = PathBuf::from(&entry.attrs["src"]);
                let tag = entry.attrs.get("tag").cloned().unwrap_or_else(|| DEFAULT_TAG.into());
                let tagged =
                    Layout::at(&dir).tagged(&tag).map_err(|error| LocalCacheError { path: dir.clone(), error })?;
                match tagged.and_then(|d| d["digest"].as_str().map(String::from)) {
                    Some(digest) => {
                        entry.attrs.insert("digest".into(), digest);
                    }
                    None => {
                        eprintln!("build: no cache in {} yet: nothing to import", dir.display());
                        continue;
                    }
                }
            }
            if entry.kind == "local" {
                caches.open(&mut entry, "src")?;
            }
            caches.cache_from.push(entry);
        }
        Ok(caches)
    }

    /// Makes the entry's folder absolute and gives it a store, `local:<folder>` as BuildKit
    /// names it from the same attribute.
    fn open(&mut self, entry: &mut CacheEntry, key: &str) -> Result<PathBuf, LocalCacheError> {
        let given = PathBuf::from(&entry.attrs[key]);
        let fail = |error| LocalCacheError { path: given.clone(), error };
        std::fs::create_dir_all(&given).map_err(fail)?;
        let dir = std::fs::canonicalize(&given).map_err(fail)?;
        let id = format!("local:{}", dir.display());
        if let std::collections::hash_map::Entry::Vacant(slot) = self.stores.entry(id) {
            slot.insert(Arc::new(Store::layout(&dir).map_err(fail)?));
        }
        entry.attrs.insert(key.into(), dir.display().to_string());
        Ok(dir)
    }

    /// After the build: records the exported cache's manifest in each export folder's
    /// `index.json` (BuildKit returns it as `cache.manifest`), and removes unfinished writes.
    pub fn finish(&self, response: &HashMap<String, String>) -> Result<(), LocalCacheError> {
        for store in self.stores.values() {
            store.abort_all();
        }
        let Some(desc) = response.get("cache.manifest") else { return Ok(()) };
        let desc: serde_json::Value = serde_json::from_str(desc)
            .map_err(|e| LocalCacheError { path: PathBuf::from("cache.manifest"), error: std::io::Error::other(e) })?;
        for (dir, tag) in &self.exports {
            Layout::at(dir).tag(tag, &desc).map_err(|error| LocalCacheError { path: dir.clone(), error })?;
            eprintln!("build: cache exported to {}", dir.display());
        }
        Ok(())
    }
}
