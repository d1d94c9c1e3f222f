//! Compiles `proto/*.proto` with protox (a protobuf compiler in Rust: no `protoc`, no
//! network) and generates prost messages plus tonic clients and servers.

const FILES: &[&str] = &[
    "control.proto",
    "filesync.proto",
    "auth.proto",
    "secrets.proto",
    "ssh.proto",
    "health.proto",
    "errdefs.proto",
    "content.proto",
    "google/rpc/status.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let files: Vec<String> = FILES.iter().map(|f| format!("proto/{f}")).collect();
    let descriptors = protox::compile(&files, ["proto"])?;
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(descriptors)?;
    Ok(())
}
