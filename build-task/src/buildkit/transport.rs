//! Reaching BuildKit: `BUILDKIT_HOST` turned into a gRPC channel.
//!
//! | `BUILDKIT_HOST` | how |
//! | --- | --- |
//! | `unix:///run/buildkit/buildkitd.sock` | HTTP/2 gRPC over the socket |
//! | `tcp://host:1234` | HTTP/2 gRPC over TCP; TLS when `BUILDKIT_TLS_*` name a CA or client certificate |
//! | `docker+unix:///var/run/docker.sock` | a Docker engine's embedded BuildKit: `POST /grpc` upgraded to h2c |
//! | `docker://` | the same, at `$DOCKER_HOST` or `/var/run/docker.sock` |

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
pub use kiln_registry::error_chain;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// Where `BUILDKIT_HOST` is unset.
pub const DEFAULT_HOST: &str = "unix:///run/buildkit/buildkitd.sock";
/// How long a connection may take before we say BuildKit is not there.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A parsed `BUILDKIT_HOST`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Unix(PathBuf),
    Tcp {
        host: String,
        port: u16,
    },
    /// A Docker engine's API socket; BuildKit is behind its `/grpc` endpoint.
    Docker(PathBuf),
}

/// TLS settings for `tcp://` addresses, from `BUILDKIT_TLS_*`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub server_name: Option<String>,
}

impl TlsFiles {
    /// Reads `BUILDKIT_TLS_CA`, `_CERT`, `_KEY`, `_SERVERNAME`, or `BUILDKIT_TLS_DIR`
    /// holding `ca.pem`, `cert.pem` and `key.pem`.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let dir = get("BUILDKIT_TLS_DIR").map(PathBuf::from);
        let file = |var: &str, name: &str| {
            get(var).map(PathBuf::from).or_else(|| dir.as_ref().map(|d| d.join(name)).filter(|p| p.exists()))
        };
        let tls = TlsFiles {
            ca: file("BUILDKIT_TLS_CA", "ca.pem"),
            cert: file("BUILDKIT_TLS_CERT", "cert.pem"),
            key: file("BUILDKIT_TLS_KEY", "key.pem"),
            server_name: get("BUILDKIT_TLS_SERVERNAME"),
        };
        (tls != TlsFiles::default()).then_some(tls)
    }
}

/// Why BuildKit could not be reached. Each names `BUILDKIT_HOST` and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error(
        "BUILDKIT_HOST={0:?} is not an address kiln understands; use unix:///path, tcp://host:port, docker+unix:///path or docker://"
    )]
    BadAddress(String),
    #[error("cannot reach BuildKit at BUILDKIT_HOST={host}: {detail}; {hint}")]
    Unreachable { host: String, detail: String, hint: &'static str },
    #[error("the Docker engine at BUILDKIT_HOST={host} did not open its BuildKit endpoint: {detail}")]
    Upgrade { host: String, detail: String },
    #[error("cannot set up TLS for BUILDKIT_HOST={host}: {detail}; check BUILDKIT_TLS_CA, _CERT, _KEY and _SERVERNAME")]
    Tls { host: String, detail: String },
}

/// The Docker engine's socket: `DOCKER_HOST` (`docker_host`) when set, else
/// `/var/run/docker.sock`. Only unix sockets are supported; the error names what was given.
pub fn docker_socket(docker_host: Option<&str>) -> Result<PathBuf, String> {
    let docker = docker_host.filter(|h| !h.is_empty()).unwrap_or("unix:///var/run/docker.sock");
    docker
        .strip_prefix("unix://")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| format!("DOCKER_HOST={docker} (only unix sockets are supported)"))
}

/// Parses `BUILDKIT_HOST`; `docker://` takes `DOCKER_HOST` (or the default socket) from `docker_host`.
pub fn parse(host: &str, docker_host: Option<&str>) -> Result<Address, TransportError> {
    let bad = || TransportError::BadAddress(host.to_string());
    if let Some(path) = host.strip_prefix("unix://") {
        return if path.is_empty() { Err(bad()) } else { Ok(Address::Unix(PathBuf::from(path))) };
    }
    if let Some(path) = host.strip_prefix("docker+unix://") {
        return if path.is_empty() { Err(bad()) } else { Ok(Address::Docker(PathBuf::from(path))) };
    }
    if let Some(rest) = host.strip_prefix("docker://") {
        if !rest.is_empty() {
            return Err(bad());
        }
        return docker_socket(docker_host)
            .map(Address::Docker)
            .map_err(|docker| TransportError::BadAddress(format!("{host} with {docker}")));
    }
    if let Some(rest) = host.strip_prefix("tcp://") {
        let (h, p) = rest.trim_end_matches('/').rsplit_once(':').ok_or_else(bad)?;
        let port = p.parse().map_err(|_| bad())?;
        let h = h.trim_start_matches('[').trim_end_matches(']');
        if h.is_empty() {
            return Err(bad());
        }
        return Ok(Address::Tcp { host: h.to_string(), port });
    }
    Err(bad())
}

/// Opens a channel to BuildKit at `addr` (`host` is the original text, for messages).
pub async fn connect(host: &str, addr: &Address, tls: Option<&TlsFiles>) -> Result<Channel, TransportError> {
    let unreachable = |e: &(dyn std::error::Error + 'static), hint| TransportError::Unreachable {
        host: host.to_string(),
        detail: error_chain(e),
        hint,
    };
    match addr {
        Address::Unix(path) => {
            let path = path.clone();
            let endpoint = Endpoint::from_static("http://buildkit").connect_timeout(CONNECT_TIMEOUT);
            endpoint
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move { UnixStream::connect(path).await.map(TokioIo::new) }
                }))
                .await
                .map_err(|e| unreachable(&e, "is buildkitd running and is the socket path right?"))
        }
        Address::Docker(path) => {
            // Check once up front so a missing engine or one without BuildKit says so plainly.
            let probe = upgrade(path).await.map_err(|e| match e {
                UpgradeError::Io(e) => unreachable(&e, "is the Docker engine running and is the socket path right?"),
                UpgradeError::Refused(detail) => TransportError::Upgrade { host: host.to_string(), detail },
            })?;
            drop(probe);
            let path = path.clone();
            let endpoint = Endpoint::from_static("http://buildkit").connect_timeout(CONNECT_TIMEOUT);
            endpoint
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        upgrade(&path).await.map(TokioIo::new).map_err(|e| match e {
                            UpgradeError::Io(e) => e,
                            UpgradeError::Refused(d) => std::io::Error::other(d),
                        })
                    }
                }))
                .await
                .map_err(|e| unreachable(&e, "is the Docker engine running?"))
        }
        Address::Tcp { host: h, port } => {
            let scheme = if tls.is_some() { "https" } else { "http" };
            let mut endpoint = Endpoint::from_shared(format!("{scheme}://{h}:{port}"))
                .map_err(|_| TransportError::BadAddress(host.to_string()))?
                .connect_timeout(CONNECT_TIMEOUT);
            if let Some(tls) = tls {
                let tls_error = |detail| TransportError::Tls { host: host.to_string(), detail };
                let config = tls_config(h, tls).map_err(tls_error)?;
                endpoint = endpoint.tls_config(config).map_err(|e| tls_error(error_chain(&e)))?;
            }
            let channel = endpoint.connect().await.map_err(|e| {
                let detail = error_chain(&e);
                let hint = if detail.contains("certificate") {
                    "check BUILDKIT_TLS_CA (the CA that signed buildkitd's certificate) and BUILDKIT_TLS_SERVERNAME"
                } else {
                    "is buildkitd listening there?"
                };
                TransportError::Unreachable { host: host.to_string(), detail, hint }
            })?;
            if tls.is_some() {
                // With TLS 1.3 the server checks the client's certificate after the client
                // thinks the handshake is done: ask once, so a refusal is said here, plainly.
                let mut control = kiln_proto::moby::buildkit::v1::control_client::ControlClient::new(channel.clone());
                let probe = control.info(kiln_proto::moby::buildkit::v1::InfoRequest {});
                match tokio::time::timeout(CONNECT_TIMEOUT, probe).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(status)) if status.code() == tonic::Code::Unimplemented => {}
                    Ok(Err(status)) => {
                        let mut detail = status.message().to_string();
                        if let Some(source) = std::error::Error::source(&status) {
                            let chain = error_chain(source);
                            detail = if chain.starts_with(&detail) { chain } else { format!("{detail}: {chain}") };
                        }
                        return Err(TransportError::Unreachable {
                            host: host.to_string(),
                            detail,
                            hint: "does buildkitd accept this client? BUILDKIT_TLS_CERT and _KEY must be a \
                                   certificate its --tlscacert signed",
                        });
                    }
                    Err(_) => {
                        return Err(TransportError::Unreachable {
                            host: host.to_string(),
                            detail: "no answer over TLS".into(),
                            hint: "is buildkitd listening there with TLS?",
                        });
                    }
                }
            }
            Ok(channel)
        }
    }
}

fn tls_config(host: &str, files: &TlsFiles) -> Result<tonic::transport::ClientTlsConfig, String> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("reading {}: {e}", p.display()));
    // buildkitd wraps its TCP listener in Go's TLS without ALPN, so nothing is negotiated:
    // what follows the handshake is HTTP/2 all the same, as grpc-go's client assumes.
    let mut config = ClientTlsConfig::new()
        .domain_name(files.server_name.clone().unwrap_or_else(|| host.to_string()))
        .assume_http2(true);
    if let Some(ca) = &files.ca {
        config = config.ca_certificate(Certificate::from_pem(read(ca)?));
    } else {
        config = config.with_native_roots();
    }
    match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => config = config.identity(Identity::from_pem(read(cert)?, read(key)?)),
        (None, None) => {}
        _ => {
            return Err("a client certificate needs both BUILDKIT_TLS_CERT and BUILDKIT_TLS_KEY".into());
        }
    }
    Ok(config)
}

enum UpgradeError {
    Io(std::io::Error),
    Refused(String),
}

/// Opens the engine's socket and asks for `/grpc` upgraded to h2c, as buildx's docker
/// driver does; returns the connection, now speaking HTTP/2 with BuildKit.
async fn upgrade(socket: &Path) -> Result<UnixStream, UpgradeError> {
    let mut stream = UnixStream::connect(socket).await.map_err(UpgradeError::Io)?;
    stream
        .write_all(
            b"POST /grpc HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nContent-Length: 0\r\n\r\n",
        )
        .await
        .map_err(UpgradeError::Io)?;
    // Read the response headers byte by byte so nothing of the HTTP/2 stream is consumed.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 {
            return Err(UpgradeError::Refused("the engine's answer has over 16 KiB of headers".into()));
        }
        let byte = tokio::time::timeout(CONNECT_TIMEOUT, stream.read_u8())
            .await
            .map_err(|_| UpgradeError::Refused("the engine did not answer the upgrade in time".into()))?
            .map_err(UpgradeError::Io)?;
        head.push(byte);
    }
    let status = String::from_utf8_lossy(&head);
    let line = status.lines().next().unwrap_or_default().to_string();
    if line.split_whitespace().nth(1) != Some("101") {
        return Err(UpgradeError::Refused(format!(
            "it answered {line:?} instead of 101 Switching Protocols (is BuildKit enabled in the engine?)"
        )));
    }
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(parse("unix:///run/b.sock", None).unwrap(), Address::Unix("/run/b.sock".into()));
        assert_eq!(parse("tcp://10.0.0.1:1234", None).unwrap(), Address::Tcp { host: "10.0.0.1".into(), port: 1234 });
        assert_eq!(parse("tcp://[::1]:1234", None).unwrap(), Address::Tcp { host: "::1".into(), port: 1234 });
        assert_eq!(parse("docker+unix:///d.sock", None).unwrap(), Address::Docker("/d.sock".into()));
        assert_eq!(parse("docker://", None).unwrap(), Address::Docker("/var/run/docker.sock".into()));
        assert_eq!(parse("docker://", Some("unix:///x/d.sock")).unwrap(), Address::Docker("/x/d.sock".into()));
    }

    #[test]
    fn bad_addresses_name_the_variable() {
        for bad in ["", "unix://", "http://x", "tcp://nohost", "tcp://h:notaport", "docker://remote", "/run/b.sock"] {
            let err = parse(bad, None).unwrap_err().to_string();
            assert!(err.contains("BUILDKIT_HOST"), "{bad}: {err}");
        }
        let err = parse("docker://", Some("tcp://1.2.3.4:2375")).unwrap_err().to_string();
        assert!(err.contains("DOCKER_HOST"), "{err}");
    }

    #[tokio::test]
    async fn tls_errors_name_the_host_and_the_variables() {
        let addr = parse("tcp://127.0.0.1:1", None).unwrap();
        let tls = TlsFiles { cert: Some("/c.pem".into()), ..Default::default() };
        let err = connect("tcp://127.0.0.1:1", &addr, Some(&tls)).await.unwrap_err().to_string();
        assert!(err.contains("BUILDKIT_HOST=tcp://127.0.0.1:1") && err.contains("BUILDKIT_TLS_KEY"), "{err}");
        let tls = TlsFiles { ca: Some("/nonexistent/ca.pem".into()), ..Default::default() };
        let err = connect("tcp://127.0.0.1:1", &addr, Some(&tls)).await.unwrap_err().to_string();
        assert!(err.contains("BUILDKIT_HOST=tcp://127.0.0.1:1") && err.contains("/nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn tls_from_env() {
        assert_eq!(TlsFiles::from_env(|_| None), None);
        let tls = TlsFiles::from_env(|k| (k == "BUILDKIT_TLS_CA").then(|| "/ca.pem".to_string())).unwrap();
        assert_eq!(tls.ca, Some("/ca.pem".into()));
    }
}
