//! Kiln's build task: a BuildKit client of its own (tonic + prost, no `buildctl`) and
//! the `build` binary that Concourse tasks run.
//!
//! - [`buildkit`]: BuildKit found, started or reached (`BUILDKIT_HOST`), asked about, and
//!   driven through one solve with its progress.
//! - [`session`]: the session BuildKit calls back into: files, credentials, secrets, SSH
//!   agents and content stores.
//! - [`task`]: one run of the task, from its params (environment or flags) to the files
//!   in its output folder and, with `PUSH`, the pushed image.

pub mod buildkit;
pub mod session;
pub mod task;
