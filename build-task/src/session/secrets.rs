//! Build secrets (`RUN --mount=type=secret,id=…`) served over the session from
//! `BUILDKIT_SECRET_<id>=<path>` (read when asked) and `BUILDKIT_SECRETTEXT_<id>=<value>`
//! (kept in memory, never written or logged). A relative path is read beneath the task's
//! working folder, never through a link that leaves it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use kiln_proto::moby::buildkit::secrets::v1::secrets_server::Secrets;
use kiln_proto::moby::buildkit::secrets::v1::{GetSecretRequest, GetSecretResponse};
use tonic::{Request, Response, Status};

/// Where a secret's value comes from.
#[derive(Clone)]
pub enum SecretSource {
    File(PathBuf),
    Text(String),
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::File(p) => write!(f, "File({})", p.display()),
            SecretSource::Text(_) => f.write_str("Text(<redacted>)"),
        }
    }
}

/// The most a secret file may weigh (BuildKit's own limit is 500 KiB).
const MAX_SECRET: u64 = 1 << 20;

#[derive(Clone, Default, Debug)]
pub struct SecretsService {
    secrets: Arc<HashMap<String, SecretSource>>,
}

impl SecretsService {
    pub fn new(secrets: HashMap<String, SecretSource>) -> Self {
        Self { secrets: Arc::new(secrets) }
    }
}

#[tonic::async_trait]
impl Secrets for SecretsService {
    async fn get_secret(&self, request: Request<GetSecretRequest>) -> Result<Response<GetSecretResponse>, Status> {
        let id = request.into_inner().id;
        let data = match self.secrets.get(&id) {
            Some(SecretSource::Text(value)) => value.clone().into_bytes(),
            Some(SecretSource::File(path)) => {
                let path = path.clone();
                let read = tokio::task::spawn_blocking({
                    let path = path.clone();
                    move || kiln_image::confined::read_input(&path, MAX_SECRET)
                })
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)));
                read.map_err(|e| Status::internal(format!("secret {id}: reading {}: {e}", path.display())))?
            }
            None => return Err(Status::not_found(format!("secret {id} not found"))),
        };
        Ok(Response::new(GetSecretResponse { data }))
    }
}
