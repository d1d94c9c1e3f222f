//! What users type and read: bad input (one line naming the field), `--help`, the examples,
//! kiln's own images, and the bench still running.
//!
//! One module per topic; `tests/README.md` says where a new test goes.

mod bad_input;
mod bench_smoke;
mod cli;
mod examples;
mod images;
