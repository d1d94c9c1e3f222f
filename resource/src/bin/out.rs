//! `/opt/resource/out DIR`: pushes the image found in DIR.

fn main() -> std::process::ExitCode {
    kiln_resource::protocol::main_with_dir("out", kiln_resource::put::put)
}
