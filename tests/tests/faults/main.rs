//! Registries that misbehave: a proxy that stalls, cuts and corrupts, and a registry killed
//! mid-transfer.
//!
//! One module per topic; `tests/README.md` says where a new test goes.

mod proxy;
mod registry_killed;
