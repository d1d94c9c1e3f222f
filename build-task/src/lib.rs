//! Kiln's build task: a BuildKit client of its own (tonic + prost, no `buildctl`) and
//! the `build` binary that Concourse tasks run.
//!
//! - [`transport`]: `BUILDKIT_HOST` (unix socket, TCP with TLS, a Docker engine) to a gRPC channel.
//! - [`info`]: the daemon's version and workers.

pub mod info;
pub mod transport;
