//! Kiln's end-to-end test support.
//!
//! - [`harness`]: what every end-to-end test uses: the running dev environment,
//!   unique repository names, and the real binaries run the way Concourse runs them;
//!   [`images`] makes images layer by layer; [`tree`] compares unpacked trees.
//! - [`certs`], [`token_issuer`], [`seed`], [`relay`]: pieces of the dev environment that
//!   `scripts/dev-env` starts through the `kiln-testenv` binary.

pub mod certs;
pub mod faultproxy;
pub mod harness;
pub mod images;
pub mod relay;
pub mod seed;
pub mod token_issuer;
pub mod tree;
