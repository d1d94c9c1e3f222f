//! `build`: the task image's entrypoint.
//!
//! `build --buildkit-info` (or `BUILDKIT_INFO=true`) connects to BuildKit at
//! `BUILDKIT_HOST` and prints its version and workers: a check that the task can
//! reach its builder. Building itself is not implemented yet, and says so.

use std::process::ExitCode;

use kiln_build_task::{info, transport};

fn main() -> ExitCode {
    let info_wanted = std::env::args().skip(1).any(|a| a == "--buildkit-info")
        || std::env::var("BUILDKIT_INFO").is_ok_and(|v| v == "true" || v == "1");
    if !info_wanted {
        eprintln!(
            "build: building images is not implemented yet in this version of kiln; `build --buildkit-info` checks the connection to BuildKit"
        );
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("build: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(buildkit_info()) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("build: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn buildkit_info() -> anyhow::Result<String> {
    let host = std::env::var("BUILDKIT_HOST").ok().filter(|h| !h.is_empty());
    let host = host.as_deref().unwrap_or(transport::DEFAULT_HOST);
    let address = transport::parse(host, std::env::var("DOCKER_HOST").ok().as_deref())?;
    let tls = transport::TlsFiles::from_env(|k| std::env::var(k).ok().filter(|v| !v.is_empty()));
    let channel = transport::connect(host, &address, tls.as_ref()).await?;
    let daemon = info::query(channel)
        .await
        .map_err(|s| anyhow::anyhow!("BuildKit at BUILDKIT_HOST={host} answered {:?}: {}", s.code(), s.message()))?;
    Ok(daemon.to_string())
}
