//! Kiln's build task: a BuildKit client of its own (tonic + prost, no `buildctl`) and
//! the `build` binary that Concourse tasks run.
//!
//! - [`transport`]: `BUILDKIT_HOST` (unix socket, TCP with TLS, a Docker engine) to a gRPC channel.
//! - [`info`]: the daemon's version and workers; [`daemon`]: the `buildkitd` `build` starts
//!   itself when `BUILDKIT_HOST` is not set.
//! - [`params`]: the task's params (oci-build-task's names) from the environment; [`cli`]
//!   the same as flags, for running `build` by hand.
//! - [`task`]: one run of the task, targets built and exported, and pushed with `PUSH`;
//!   [`load`] puts the image into a Docker engine with `LOAD` (`--load`).
//! - [`solve`]: one build, with [`progress`] printed as it happens.
//! - [`session`]: the session BuildKit calls back into, serving [`filesync`] (context in,
//!   image out), [`auth`] and [`secrets`]; [`context`] and [`patterns`] decide what is sent;
//!   [`content`] stores serve [`image_args`] and [`local_cache`]s; [`ssh`] agents serve
//!   `RUN --mount=type=ssh`.

pub mod auth;
pub mod cli;
pub mod content;
pub mod context;
pub mod daemon;
pub mod filesync;
pub mod image_args;
pub mod info;
pub mod kept_state;
pub mod load;
pub mod local_cache;
pub mod params;
pub mod patterns;
pub mod progress;
pub mod secrets;
pub mod session;
pub mod solve;
pub mod ssh;
pub mod task;
pub mod transport;
