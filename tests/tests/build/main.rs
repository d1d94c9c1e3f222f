//! The build task against real BuildKits: the dev engine's, the `buildkitd` built from
//! Debian's packages, and one the task starts itself (rootless too).
//!
//! One module per topic; `tests/README.md` says where a new test goes.

mod cache_local;
mod cache_registry;
mod daemon;
mod dockerfile;
mod image_arg;
mod info;
mod params;
mod push;
mod secrets;
mod spawned;
mod ssh;
