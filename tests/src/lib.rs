//! Kiln's end-to-end test support.
//!
//! - [`harness`]: what every end-to-end test uses: the running dev environment,
//!   unique repository names, and the real binaries run the way Concourse runs them;
//!   [`images`] makes images layer by layer (trees are compared with `kiln_testkit::tree`,
//!   which the image crate's tests share).
//! - [`certs`], [`token_issuer`], [`seed`], [`relay`]: pieces of the dev environment that
//!   `scripts/dev-env` starts through the `kiln-testenv` binary.
//! - [`faultproxy`] misbehaves in front of a real registry on purpose; [`registry`] is a
//!   test's own registry process, to kill and start again (or to want a password,
//!   or to serve HTTPS with a certificate the test made);
//!   [`moto`] is AWS's APIs on loopback for the ECR tests; [`acr_standin`] stands in
//!   for Azure's metadata service and ACR's auth front, [`imds_standin`] for EC2's; all
//!   three serve through [`loopback`].

pub mod acr_standin;
pub mod certs;
pub mod faultproxy;
pub mod harness;
pub mod hostile_registry;
pub mod images;
pub mod imds_standin;
pub mod loopback;
pub mod moto;
pub mod registry;
pub mod relay;
pub mod seed;
pub mod token_issuer;
