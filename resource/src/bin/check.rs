//! `/opt/resource/check`: prints the image versions found in the registry.

fn main() -> std::process::ExitCode {
    kiln_resource::protocol::main("check", kiln_resource::check::check)
}
