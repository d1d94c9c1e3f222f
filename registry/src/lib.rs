//! Kiln's registry client, shared by the resource (`check`, `in`, `out`) and the build task.
//!
//! - [`reference`]: repository names, tags and digests, with Docker Hub's defaults.
//! - [`Client`]: one repository on one registry; scheme discovery, basic and bearer-token auth,
//!   manifests looked up and verified by digest.

mod auth;
mod client;
pub mod media_types;
pub mod reference;

pub use auth::{Challenge, Credentials};
pub use client::{Client, ClientConfig, Descriptor, RegistryError, error_chain};
pub use reference::{ReferenceError, Repository};
