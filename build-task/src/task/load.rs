//! `LOAD` (`build --load`): the built image loaded into the Docker engine at `DOCKER_HOST`
//! (a unix socket; `/var/run/docker.sock` when unset) through its image-load API, `POST
//! /images/load` with `image.tar` streamed as the body. The same call whichever BuildKit
//! built it — the engine's own or a standalone `buildkitd` — so `docker run` finds the
//! image by the name `IMAGE_NAME:IMAGE_TAG` gave `image.tar`.

use std::path::Path;

use http_body_util::BodyExt as _;
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tokio_stream::StreamExt as _;

/// How much of the engine's answer is read: a line per loaded image, or an error.
const MAX_ANSWER: usize = 1 << 20;

/// Why the image could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("LOAD: cannot reach the Docker engine at {socket}: {detail} (set DOCKER_HOST to its socket)")]
    Unreachable { socket: String, detail: String },
    #[error("LOAD: reading {path}: {detail}")]
    Read { path: String, detail: String },
    #[error("LOAD: the Docker engine at {socket} refused the image: {detail}")]
    Refused { socket: String, detail: String },
}

/// Loads the docker-save tarball at `tarball` into the engine at `socket`; returns what
/// the engine says it loaded (`Loaded image: app:1.0`, one line each).
pub async fn load(socket: &Path, tarball: &Path) -> Result<Vec<String>, LoadError> {
    let where_ = socket.display().to_string();
    let unreachable = |detail: String| LoadError::Unreachable { socket: where_.clone(), detail };
    let file = tokio::fs::File::open(tarball)
        .await
        .map_err(|e| LoadError::Read { path: tarball.display().to_string(), detail: e.to_string() })?;
    let size = file
        .metadata()
        .await
        .map_err(|e| LoadError::Read { path: tarball.display().to_string(), detail: e.to_string() })?
        .len();
    let stream = UnixStream::connect(socket).await.map_err(|e| unreachable(e.to_string()))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| unreachable(e.to_string()))?;
    let connection = tokio::spawn(connection);
    let frames =
        tokio_util::io::ReaderStream::with_capacity(file, 256 << 10).map(|chunk| chunk.map(hyper::body::Frame::data));
    let body = http_body_util::StreamBody::new(frames);
    let request = hyper::Request::post("/images/load?quiet=1")
        .header(hyper::header::HOST, "docker")
        .header(hyper::header::CONTENT_TYPE, "application/x-tar")
        .header(hyper::header::CONTENT_LENGTH, size)
        .body(body)
        .expect("a request of constant parts");
    let response = sender.send_request(request).await.map_err(|e| unreachable(kiln_registry::error_chain(&e)))?;
    let status = response.status();
    let mut answer = Vec::new();
    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| unreachable(e.to_string()))?;
        if let Some(data) = frame.data_ref() {
            answer.extend_from_slice(&data[..data.len().min(MAX_ANSWER.saturating_sub(answer.len()))]);
        }
    }
    connection.abort();
    let refused = |detail: String| LoadError::Refused { socket: where_.clone(), detail };
    let text = String::from_utf8_lossy(&answer);
    if !status.is_success() {
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| text.trim().to_string());
        return Err(refused(format!("{status}: {}", kiln_registry::one_line(&message))));
    }
    // A JSON message per line: {"stream": "Loaded image: …\n"} or {"errorDetail": …}.
    let mut loaded = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let message: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
        if let Some(error) = message["error"].as_str().or(message["errorDetail"]["message"].as_str()) {
            return Err(refused(kiln_registry::one_line(error)));
        }
        if let Some(said) = message["stream"].as_str().map(str::trim).filter(|s| !s.is_empty()) {
            loaded.push(said.to_string());
        }
    }
    Ok(loaded)
}
