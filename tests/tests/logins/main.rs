//! Credentials and trust: Docker's config, private CAs, cloud logins (moto for ECR, a
//! stand-in for ACR), cosign and Notary.
//!
//! One module per topic; `tests/README.md` says where a new test goes.

mod acr;
mod ca_certs;
mod content_trust;
mod cosign;
mod docker_config;
mod ecr;
mod json_key;
