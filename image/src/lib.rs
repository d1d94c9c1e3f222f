//! Kiln's image model, shared by the resource and the build task.
//!
//! - [`oci`]: manifests, indexes, descriptors, platforms and image configs (OCI and Docker).
//! - [`archive`]: images on disk to push: docker-save and OCI tarballs, OCI layouts.
//! - [`decompress`]: layer streams decompressed by what their bytes are (gzip, zstd, plain).
//! - [`unpack`]: layers applied to a root filesystem, never writing outside it.

pub mod archive;
pub mod decompress;
pub mod oci;
pub mod unpack;
