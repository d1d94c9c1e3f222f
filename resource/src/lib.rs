//! Kiln's Concourse resource for container registries: a drop-in for
//! registry-image-resource.
//!
//! - [`source`]: the `source:` schema.
//! - [`protocol`]: requests, versions and the stdin/stdout contract.
//! - [`check`]: finding versions.

pub mod check;
pub mod protocol;
pub mod source;
