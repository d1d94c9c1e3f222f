//! A unix socket in front of the dev engine's BuildKit.
//!
//! The engine's BuildKit speaks gRPC only behind the Docker API's `/grpc` upgrade; the
//! relay gives it a plain unix socket, so `BUILDKIT_HOST=unix://…` reaches the same
//! BuildKit as `docker+unix://…` (a cache shared between the two), and the stand-in
//! `buildkitd` of `tests/tests/build/daemon.rs` hands `build` a real BuildKit. Each
//! connection to the relay's socket is joined, byte for byte, to the engine's `/grpc`
//! endpoint after the HTTP `Upgrade: h2c` handshake the engine asks for; from then on the
//! client speaks gRPC over HTTP/2 directly with BuildKit, exactly as it would with
//! `buildkitd --addr unix://…`. The relay reads and answers nothing of the gRPC traffic
//! itself.

use std::path::Path;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

/// Serves `socket` until the process is stopped, joining each connection to `docker_socket`'s BuildKit.
pub async fn serve(socket: &Path, docker_socket: &Path) -> anyhow::Result<()> {
    let _ = std::fs::remove_file(socket);
    let listener = UnixListener::bind(socket).with_context(|| format!("binding {}", socket.display()))?;
    eprintln!("buildkit relay listening on unix://{}", socket.display());
    loop {
        let (mut client, _) = listener.accept().await?;
        let docker_socket = docker_socket.to_path_buf();
        tokio::spawn(async move {
            match upgrade(&docker_socket).await {
                Ok((mut engine, early)) => {
                    if !early.is_empty() && client.write_all(&early).await.is_err() {
                        return;
                    }
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut engine).await;
                }
                Err(e) => eprintln!("buildkit relay: {e:#}"),
            }
        });
    }
}

/// Opens the engine's `/grpc` endpoint; returns the upgraded stream and any bytes that
/// arrived after the response headers.
async fn upgrade(docker_socket: &Path) -> anyhow::Result<(UnixStream, Vec<u8>)> {
    let mut engine = UnixStream::connect(docker_socket)
        .await
        .with_context(|| format!("connecting to {}", docker_socket.display()))?;
    engine
        .write_all(
            b"POST /grpc HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nContent-Length: 0\r\n\r\n",
        )
        .await?;
    let mut buf = Vec::new();
    let end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        if buf.len() > 16 * 1024 {
            bail!("engine sent over 16 KiB of headers");
        }
        let mut chunk = [0u8; 1024];
        let n = engine.read(&mut chunk).await?;
        if n == 0 {
            bail!("engine closed the connection during the upgrade");
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let status = String::from_utf8_lossy(&buf[..end]);
    if !status.starts_with("HTTP/1.1 101") {
        bail!("engine refused the upgrade: {}", status.lines().next().unwrap_or(""));
    }
    Ok((engine, buf[end..].to_vec()))
}
