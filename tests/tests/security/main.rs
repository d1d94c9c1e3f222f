//! The rules that guard the user and the host: where credentials may go, inputs read only
//! inside their folder and outputs written fresh, nothing secret printed or written.
//!
//! One module per topic; `tests/README.md` says where a new test goes.

mod confinement;
mod hostile_registry;
mod secrets;
