//! Kiln's Concourse resource for container registries: a drop-in for
//! registry-image-resource.
//!
//! - [`source`]: the `source:` schema.
//! - [`protocol`]: requests, versions and the stdin/stdout contract.
//! - [`check`]: finding versions.
//! - [`get`]: `in`, fetching a version as a rootfs, tarball or layout ([`pull`] downloads;
//!   [`metadata`] writes `params.output_metadata`).

pub mod check;
pub mod content_trust;
pub mod cosign;
pub mod get;
pub mod metadata;
pub mod progress;
pub mod protocol;
pub mod pull;
pub mod put;
pub mod put_build;
pub mod semver;
pub mod source;
