//! `/opt/resource/in DIR`: fetches the requested version into DIR.

fn main() -> std::process::ExitCode {
    kiln_resource::protocol::main_with_dir("in", kiln_resource::get::get)
}
