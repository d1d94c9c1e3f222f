//! The session: BuildKit calls back into kiln for files, credentials and secrets.
//!
//! `Control.Session` is a stream of byte messages. Kiln opens it with headers naming the
//! session and every gRPC method it serves, then runs an HTTP/2 *server* over those
//! bytes; BuildKit is the client on the other end.
//!
//! Its services: [`filesync`] (context in, image out), [`auth`] (registry credentials),
//! [`secrets`], [`ssh`] agents, and [`content`] stores (images on disk, local caches).

pub mod auth;
pub mod content;
pub mod filesync;
pub mod secrets;
pub mod ssh;

use std::collections::HashMap;
use std::path::PathBuf;

use hyper_util::rt::{TokioExecutor, TokioIo};
use kiln_proto::grpc::health::v1::health_server::{Health, HealthServer};
use kiln_proto::grpc::health::v1::{HealthCheckRequest, HealthCheckResponse, health_check_response::ServingStatus};
use kiln_proto::moby::buildkit::secrets::v1::secrets_server::SecretsServer;
use kiln_proto::moby::buildkit::v1::BytesMessage;
use kiln_proto::moby::buildkit::v1::control_client::ControlClient;
use kiln_proto::moby::filesync::v1::auth_server::AuthServer;
use kiln_proto::moby::filesync::v1::file_send_server::FileSendServer;
use kiln_proto::moby::filesync::v1::file_sync_server::FileSyncServer;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt as _;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::session::auth::AuthService;
use crate::session::content::{ContentService, Store};
use crate::session::filesync::{FileSendService, FileSyncService};
use crate::session::secrets::{SecretSource, SecretsService};
use crate::session::ssh::{Agent, SshService};
use kiln_proto::containerd::services::content::v1::content_server::ContentServer;
use kiln_proto::moby::sshforward::v1::ssh_server::SshServer;

/// The gRPC methods kiln serves, announced in `X-Docker-Expose-Session-Grpc-Method`.
const METHODS: &[&str] = &[
    "/moby.sshforward.v1.SSH/CheckAgent",
    "/moby.sshforward.v1.SSH/ForwardAgent",
    "/containerd.services.content.v1.Content/Info",
    "/containerd.services.content.v1.Content/Update",
    "/containerd.services.content.v1.Content/List",
    "/containerd.services.content.v1.Content/Delete",
    "/containerd.services.content.v1.Content/Read",
    "/containerd.services.content.v1.Content/Status",
    "/containerd.services.content.v1.Content/ListStatuses",
    "/containerd.services.content.v1.Content/Write",
    "/containerd.services.content.v1.Content/Abort",
    "/grpc.health.v1.Health/Check",
    "/moby.filesync.v1.FileSync/DiffCopy",
    "/moby.filesync.v1.FileSync/TarStream",
    "/moby.filesync.v1.FileSend/DiffCopy",
    "/moby.filesync.v1.Auth/Credentials",
    "/moby.filesync.v1.Auth/FetchToken",
    "/moby.filesync.v1.Auth/GetTokenAuthority",
    "/moby.filesync.v1.Auth/VerifyTokenAuthority",
    "/moby.buildkit.secrets.v1.Secrets/GetSecret",
];

/// What a session offers BuildKit.
#[derive(Debug, Default, Clone)]
pub struct SessionSpec {
    /// Local folders by the name the frontend asks for ("context", "dockerfile").
    pub dirs: HashMap<String, PathBuf>,
    /// Files exporters write to, by exporter index.
    pub outputs: HashMap<u32, PathBuf>,
    pub secrets: HashMap<String, SecretSource>,
    /// Registry credentials by host.
    pub credentials: HashMap<String, (String, String)>,
    /// Docker's configuration folder, for the credentials of other hosts.
    pub docker_config: Option<PathBuf>,
    /// Stable across builds of the same context, so BuildKit can reuse what it received before.
    pub shared_key: String,
    /// Content stores by the id BuildKit asks for (`oci:<name>`, `local:<dir>`).
    pub content: HashMap<String, std::sync::Arc<Store>>,
    /// SSH agents by id, for `RUN --mount=type=ssh`.
    pub ssh: HashMap<String, Agent>,
}

/// A running session; BuildKit refers to it by `id`. Dropping it (as an interrupted build
/// does) ends it too: an open `Control.Session` call would keep buildkitd from stopping.
pub struct Session {
    pub id: String,
    closer: Option<mpsc::Sender<BytesMessage>>,
    server: JoinHandle<()>,
}

impl Session {
    /// Opens the session over `Control.Session` and starts serving it.
    pub async fn start(control: &mut ControlClient<Channel>, spec: SessionSpec) -> Result<Self, Status> {
        let id = random_id();
        let (to_daemon, outgoing) = mpsc::channel::<BytesMessage>(64);
        let mut request = Request::new(tokio_stream::wrappers::ReceiverStream::new(outgoing));
        let md = request.metadata_mut();
        let header = |v: &str| v.parse().map_err(|_| Status::invalid_argument(format!("header value {v:?}")));
        md.insert("x-docker-expose-session-uuid", header(&id)?);
        md.insert("x-docker-expose-session-name", header("kiln")?);
        md.insert("x-docker-expose-session-sharedkey", header(&spec.shared_key)?);
        for method in METHODS {
            md.append("x-docker-expose-session-grpc-method", header(method)?);
        }
        let mut from_daemon = control.session(request).await?.into_inner();

        // Bytes between the stream and an in-memory pipe the HTTP/2 server reads and writes.
        let (server_end, pump_end) = tokio::io::duplex(256 << 10);
        let sender = to_daemon.clone();
        // Two independent directions: a pump that waited on one while the other filled up
        // would stop both (the server blocks writing while the pump blocks writing to it).
        let (mut pipe_read, mut pipe_write) = tokio::io::split(pump_end);
        let inbound = async move {
            while let Some(Ok(m)) = from_daemon.next().await {
                if pipe_write.write_all(&m.data).await.is_err() {
                    break;
                }
            }
        };
        let outbound = async move {
            let mut buf = vec![0u8; 64 << 10];
            loop {
                match pipe_read.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if sender.send(BytesMessage { data: buf[..n].to_vec() }).await.is_err() {
                            break;
                        }
                    }
                }
            }
        };
        let pump = async move {
            tokio::select! {
                _ = inbound => {},
                _ = outbound => {},
            }
        };

        let routes = tonic::service::Routes::new(HealthServer::new(HealthService))
            .add_service(FileSyncServer::new(FileSyncService::new(spec.dirs)))
            .add_service(FileSendServer::new(FileSendService::new(spec.outputs)))
            .add_service(AuthServer::new(AuthService::new(spec.credentials, spec.docker_config)))
            .add_service(SecretsServer::new(SecretsService::new(spec.secrets)))
            .add_service(ContentServer::new(ContentService::new(spec.content)))
            .add_service(SshServer::new(SshService::new(spec.ssh)));
        let service = hyper_util::service::TowerToHyperService::new(routes);
        let server = tokio::spawn(async move {
            let serve = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(server_end), service);
            tokio::select! {
                _ = serve => {},
                _ = pump => {},
            }
        });
        Ok(Session { id, closer: Some(to_daemon), server })
    }

    /// Ends the session: the stream to BuildKit closes and the server stops.
    pub async fn close(mut self) {
        self.closer.take();
        self.server.abort();
        let _ = (&mut self.server).await;
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // The server task holds the stream's other half; aborting it closes the call.
        self.server.abort();
    }
}

/// Answers BuildKit's keep-alive checks.
struct HealthService;

#[tonic::async_trait]
impl Health for HealthService {
    async fn check(&self, _: Request<HealthCheckRequest>) -> Result<Response<HealthCheckResponse>, Status> {
        Ok(Response::new(HealthCheckResponse { status: ServingStatus::Serving as i32 }))
    }

    type WatchStream = tokio_stream::Empty<Result<HealthCheckResponse, Status>>;

    async fn watch(&self, _: Request<HealthCheckRequest>) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("health watch"))
    }
}

/// 25 characters from a-z0-9, as BuildKit's own identifiers look.
pub fn random_id() -> String {
    let mut bytes = [0u8; 25];
    getrandom::fill(&mut bytes).expect("the OS random source");
    bytes.iter().map(|b| b"abcdefghijklmnopqrstuvwxyz0123456789"[(*b as usize) % 36] as char).collect()
}
