//! What the tests of every crate stand on, with no network and no kiln code: crafted
//! layers ([`layer`]) and directory trees read back for comparisons ([`tree`]). The
//! image crate's unpack tests and the end-to-end tests both use it.

pub mod layer;
pub mod tree;
