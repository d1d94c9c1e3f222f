//! Kiln's image model, shared by the resource and the build task.
//!
//! - [`oci`]: manifests, indexes, descriptors, platforms and image configs (OCI and Docker).
//! - [`decompress`]: layer streams decompressed by what their bytes are (gzip, zstd, plain).
//! - [`unpack`]: layers applied to a root filesystem, never writing outside it.

pub mod decompress;
pub mod oci;
pub mod unpack;
