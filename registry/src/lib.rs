//! Kiln's registry client, shared by the resource (`check`, `in`, `out`) and the build task.
//!
//! - [`reference`](mod@reference): repository names and tags, with Docker Hub's defaults.
//! - [`Client`]: one repository on one registry, its transport in layers: `retry` around
//!   `auth` around one send of a `call` over the `scheme` found; `error` for what goes
//!   wrong; manifests, blobs and tags in their own modules.
//! - [`push`]: an image read from disk pushed under its tags (`out` and the build task).
//! - [`scope`]: the one rule for where credentials may go.
//! - `retry`: the one retry policy (what is retried, how often, how long to wait).
//! - [`docker_config`]: credentials from Docker's `config.json` and credential helpers.
//! - [`aws`]: Amazon ECR logins (AWS credentials, STS roles, SigV4).
//! - [`azure`]: Azure Container Registry logins (Entra ID tokens, the ACR exchange).
//! - `tls`: TLS to registries: `ca_certs` as trust roots and as pinned certificates.
//! - [`referrers`]: OCI 1.1 referrers, from the API or the fallback tag.
//! - [`notary`]: a Notary v1 server's trust data for a GUN, fetched, checked and published.
//! - [`tuf`]: Notary v1's TUF metadata (content_trust): checked from root to targets, and
//!   targets signed.

mod auth;
pub mod aws;
pub mod azure;
mod blobs;
mod body;
mod call;
mod client;
pub mod docker_config;
mod error;
mod manifests;
pub mod media_types;
pub mod notary;
mod plain_upload;
pub mod push;
pub mod reference;
pub mod referrers;
mod retry;
mod scheme;
pub mod scope;
mod tags;
mod tls;
pub mod tuf;

pub use auth::{Challenge, Credentials, IDENTITY_TOKEN_USERNAME};

/// Looks a variable up in the environment (a closure, so tests and callers pass their own).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;
pub use blobs::BlobStream;
pub use body::one_line;
pub use client::{Client, ClientConfig};
pub use error::{RegistryError, error_chain};
/// A manifest's or blob's type, digest and size: the one descriptor type, the image model's.
pub use kiln_image::oci::Descriptor;
pub use reference::{ReferenceError, Repository};
pub use tls::ClientIdentity;
