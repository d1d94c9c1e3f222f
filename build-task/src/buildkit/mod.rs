//! BuildKit itself, as a client sees it: [`transport`] (`BUILDKIT_HOST`: a unix socket,
//! TCP with TLS, a Docker engine, to a gRPC channel), [`daemon`] (the `buildkitd` kiln
//! starts when there is no host, rootless when not root) and [`kept_state`] (its state kept
//! between builds), [`info`] (version and workers), [`solve`] (one build) with its
//! [`progress`] printed as it happens.

pub mod daemon;
pub mod info;
pub mod kept_state;
pub mod progress;
pub mod solve;
pub mod transport;
