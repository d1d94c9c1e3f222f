//! `check`, `in` and `out` of the registry resource, against the dev registries and peers
//! (skopeo, umoci, crane).
//!
//! One module per topic; `tests/README.md` says where a new test goes.

mod check_semver;
mod check_tag;
mod get;
mod get_fixtures;
mod out;
mod out_build;
