//! `build`: the task image's entrypoint (installed as `build`; cargo names it `kiln-build`).
//!
//! Reads oci-build-task's params from the environment, builds with BuildKit at
//! `BUILDKIT_HOST`, and writes `image/image.tar` and `image/digest` (plus `image/rootfs`
//! and `image/metadata.json` with `UNPACK_ROOTFS=true`). The params, flags and help are
//! the param table's (`kiln_build_task::task::params::table`); the run is
//! `kiln_build_task::task::cli::main`.

fn main() -> std::process::ExitCode {
    kiln_build_task::task::cli::main()
}
