//! Kiln's image model, shared by the resource and the build task.
//!
//! - [`oci`]: manifests, indexes, descriptors, platforms and image configs (OCI and Docker).
//! - [`archive`]: images on disk to push: docker-save and OCI tarballs, OCI layouts.
//! - [`blob`]: where a blob's bytes are (a file range, or memory), as every crate passes it.
//! - [`confined`]: files of a given folder read without following a link out of it, and
//!   files written fresh so nothing a folder holds is written through.
//! - [`layout`]: the one OCI image layout writer (blobs, `oci-layout`, `index.json` edits).
//! - [`digest`]: the validated `sha256:` digest, computed in one place.
//! - [`display`]: digests and sizes as progress lines show them.
//! - [`decompress`]: layer streams decompressed by what their bytes are (gzip, zstd, plain).
//! - [`unpack`]: layers applied to a root filesystem, never writing outside it.
//! - [`rootfs`]: an image's layers unpacked in order and its `metadata.json`, as `in` and
//!   the build task's `UNPACK_ROOTFS` write them.

pub mod archive;
pub mod blob;
pub mod confined;
pub mod decompress;
pub mod digest;
pub mod display;
pub mod layout;
pub mod oci;
pub mod rootfs;
pub mod time;
pub mod unpack;
