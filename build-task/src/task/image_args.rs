//! `IMAGE_ARG_<NAME>=path`: an image on disk (docker-save tarball, OCI archive, OCI layout,
//! such as the resource's `in` writes) that `FROM ${NAME}` builds on without any registry
//! request. The image is served from the session's content store and handed to the
//! Dockerfile frontend as an `oci-layout://` named context, so it works with a BuildKit on
//! another machine too.
//!
//! A relative path is read beneath the task's working folder, never through a link that
//! leaves it (nor, for a layout, any file in it).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use kiln_image::archive;
use kiln_image::blob::Blob;
use kiln_image::digest::Digest;

use crate::session::content::Store;

/// One image arg ready for the session and the frontend.
pub struct ImageArg {
    /// The session store id BuildKit asks for (`oci:<name>`).
    pub store_id: String,
    pub store: Arc<Store>,
    /// Frontend options: the build arg, and the named context it resolves to.
    pub frontend_attrs: HashMap<String, String>,
}

/// Why an image arg cannot be used, naming the param.
#[derive(Debug, thiserror::Error)]
#[error("{param}: {why}")]
pub struct ImageArgError {
    param: String,
    why: String,
}

/// Reads the image at `path` (every blob is hashed and checked while loading) for the build
/// arg `name`: a relative path beneath the working folder, an absolute one as it is.
pub fn load(name: &str, path: &Path) -> Result<ImageArg, ImageArgError> {
    let loaded = load_store(&format!("IMAGE_ARG_{name}"), "image-arg", name, path)?;
    let context_name = format!("image-arg/{}", loaded.slug);
    let frontend_attrs = HashMap::from([
        (format!("build-arg:{name}"), context_name.clone()),
        (format!("context:{context_name}"), loaded.reference()),
    ]);
    Ok(loaded.into_arg(frontend_attrs))
}

/// The image at `path` as the named context `name` (`BUILD_CONTEXT_<name>=oci-layout://…`).
pub fn load_context(name: &str, path: &Path) -> Result<ImageArg, ImageArgError> {
    let loaded = load_store(&format!("BUILD_CONTEXT_{name}"), "context", name, path)?;
    let frontend_attrs = HashMap::from([(format!("context:{name}"), loaded.reference())]);
    Ok(loaded.into_arg(frontend_attrs))
}

/// An image on disk in a content store of its own.
struct Loaded {
    /// The name it was given, as [`slug`] makes it.
    slug: String,
    store: Arc<Store>,
    /// The store's name, `kiln-<kind>-<slug>`.
    store_name: String,
    /// The image's digest.
    top: Digest,
}

impl Loaded {
    /// How the frontend names it: an `oci-layout://` reference into the session's store.
    fn reference(&self) -> String {
        format!("oci-layout://{}@{}", self.store_name, self.top)
    }

    fn into_arg(self, frontend_attrs: HashMap<String, String>) -> ImageArg {
        ImageArg { store_id: format!("oci:{}", self.store_name), store: self.store, frontend_attrs }
    }
}

/// The image at `path` for the param `param`, in a store named after `kind` and `name`.
fn load_store(param: &str, kind: &str, name: &str, path: &Path) -> Result<Loaded, ImageArgError> {
    let fail = |why: String| ImageArgError { param: param.into(), why };
    let slug = slug(name).ok_or_else(|| fail("the name needs a letter or digit".into()))?;
    let image = if path.is_relative() {
        // An empty root is the working folder; files are named as given.
        archive::load_beneath(Path::new(""), path, archive::Verify::Now)
    } else {
        archive::load(path)
    };
    let image = image.map_err(|e| fail(e.to_string()))?;
    let mut blobs = HashMap::new();
    for (desc, blob) in image.blobs {
        blobs.insert(desc.digest, blob);
    }
    for doc in image.children.into_iter().chain([image.top.clone()]) {
        blobs.insert(doc.digest, Blob::Memory(doc.bytes.into()));
    }
    let store_name = format!("kiln-{kind}-{slug}");
    Ok(Loaded { slug, store: Arc::new(Store::from_blobs(blobs)), store_name, top: image.top.digest })
}

/// `name` as a valid image reference path component, distinct from any real image: its
/// letters and digits, lowercased, joined by `-`; `None` when it has none.
pub fn slug(name: &str) -> Option<String> {
    let slug: String = name
        .to_ascii_lowercase()
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    (!slug.is_empty()).then_some(slug)
}
