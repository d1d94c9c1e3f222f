//! `/opt/resource/in`: not implemented yet; fails clearly instead of pretending.

fn main() -> std::process::ExitCode {
    eprintln!("in: not implemented yet in this version of kiln; only check works so far");
    std::process::ExitCode::FAILURE
}
