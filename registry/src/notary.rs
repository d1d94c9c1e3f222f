//! A Notary v1 server's trust data for one GUN (`registry/repository`), for `content_trust`:
//! the four TUF roles fetched and checked ([`crate::tuf`]), and a new targets role
//! published. The server takes the registry's auth — bearer tokens for
//! `repository:<GUN>:pull` and `…:push,pull` — so this is a [`Client`] whose origin is the
//! server and whose scope name is the GUN: the same credential rule, retries and caps.

use reqwest::{Method, StatusCode};

use crate::call::{Access, Call};
use crate::tuf::{Key, RoleFiles, Signed, Trusted, TufError};
use crate::{Client, ClientConfig, RegistryError, Repository};

/// Why trust data could not be read or published.
#[derive(Debug, thiserror::Error)]
pub enum NotaryError {
    #[error("content_trust.server: {0:?} is not a URL such as https://notary.example.com:4443")]
    BadServer(String),
    // `error`, not `source`: the message already holds it, and a chain would say it twice.
    #[error("notary server {server}: {error}")]
    Registry { server: String, error: RegistryError },
    #[error("notary server {server}, {gun}: {error}")]
    Tuf { server: String, gun: String, error: TufError },
}

/// The longest any role's metadata may be.
const MAX_METADATA: u64 = 4 << 20;

/// One GUN on one Notary server.
pub struct TrustServer {
    client: Client,
    server: String,
    gun: String,
}

impl TrustServer {
    /// `server` as `content_trust.server` gives it (`https://host[:port]`; `http://` only
    /// where the client allows plain HTTP), for `gun`.
    pub fn new(server: &str, gun: &str, config: ClientConfig) -> Result<Self, NotaryError> {
        let url = reqwest::Url::parse(server).map_err(|_| NotaryError::BadServer(server.into()))?;
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            _ => return Err(NotaryError::BadServer(server.into())),
        };
        if !matches!(url.scheme(), "https" | "http") || !matches!(url.path(), "" | "/") {
            return Err(NotaryError::BadServer(server.into()));
        }
        let config = ClientConfig { insecure: config.insecure || url.scheme() == "http", ..config };
        let client = Client::new(Repository::trust_collection(&host, gun), config)
            .map_err(|error| NotaryError::Registry { server: host.clone(), error })?;
        // The URL names the scheme: an https server is never tried over plain HTTP.
        let client = if url.scheme() == "https" { client.https_only() } else { client };
        Ok(TrustServer { client, server: host, gun: gun.into() })
    }

    pub fn gun(&self) -> &str {
        &self.gun
    }

    fn registry_error(&self, source: RegistryError) -> NotaryError {
        NotaryError::Registry { server: self.server.clone(), error: source }
    }

    fn tuf_error(&self, source: TufError) -> NotaryError {
        NotaryError::Tuf { server: self.server.clone(), gun: self.gun.clone(), error: source }
    }

    /// One role's current metadata, or `None` when the server has none for the GUN.
    async fn role(&self, role: &str, access: Access) -> Result<Option<Vec<u8>>, NotaryError> {
        let call = Call::new(
            Method::GET,
            format!("/v2/{}/_trust/tuf/{role}.json", self.gun),
            access,
            format!("{role}.json of {}", self.gun),
        );
        let resp = self.client.execute(&call).await.map_err(|e| self.registry_error(e))?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = self.client.expect_success(resp, &call.what).await.map_err(|e| self.registry_error(e))?;
        let body = self.client.read_body(resp, MAX_METADATA, &call.what).await.map_err(|e| self.registry_error(e))?;
        Ok(Some(body))
    }

    /// A role the server must have once it has root.
    async fn required_role(&self, role: &str, access: Access) -> Result<Vec<u8>, NotaryError> {
        self.role(role, access).await?.ok_or_else(|| {
            self.tuf_error(TufError::Malformed {
                role: role.into(),
                detail: "the server has root.json but not this".into(),
            })
        })
    }

    /// The GUN's metadata checked at `now` from root to targets, or `None` when the server
    /// does not know the GUN. `for_push` asks for the token a publish needs, up front.
    pub async fn fetch(&self, now: i64, for_push: bool) -> Result<Option<Trusted>, NotaryError> {
        let access = if for_push { Access::Push } else { Access::Pull };
        let Some(root) = self.role("root", access.clone()).await? else { return Ok(None) };
        let [targets, snapshot, timestamp] = [
            self.required_role("targets", access.clone()).await?,
            self.required_role("snapshot", access.clone()).await?,
            self.required_role("timestamp", access).await?,
        ];
        Trusted::check(
            &self.gun,
            RoleFiles { root: &root, targets: &targets, snapshot: &snapshot, timestamp: &timestamp },
            now,
        )
        .map(Some)
        .map_err(|e| self.tuf_error(e))
    }

    /// The public key the server holds for `role` (`snapshot` or `timestamp`), made by the
    /// server the first time it is asked, as `notary init` asks for them.
    pub async fn server_key(&self, role: &str) -> Result<Key, NotaryError> {
        let what = format!("the {role} key of {}", self.gun);
        let call =
            Call::new(Method::GET, format!("/v2/{}/_trust/tuf/{role}.key", self.gun), Access::Push, what.clone());
        let resp = self.client.execute(&call).await.map_err(|e| self.registry_error(e))?;
        let resp = self.client.expect_success(resp, &call.what).await.map_err(|e| self.registry_error(e))?;
        let body = self.client.read_body(resp, MAX_METADATA, &call.what).await.map_err(|e| self.registry_error(e))?;
        serde_json::from_slice(&body)
            .map_err(|e| self.tuf_error(TufError::Key(format!("the server's {role} key is not a TUF key: {e}"))))
    }

    /// Publishes `files`, each a role's new metadata (the server makes snapshot and
    /// timestamp, whose keys it holds).
    pub async fn publish(&self, files: &[&Signed]) -> Result<(), NotaryError> {
        const BOUNDARY: &str = "kiln-tuf-5f0c4a7e1b9d";
        let mut body = Vec::new();
        for file in files {
            body.extend(
                format!(
                    "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{}\"\r\n\
                     Content-Type: application/octet-stream\r\n\r\n",
                    file.role
                )
                .into_bytes(),
            );
            body.extend(file.to_bytes());
            body.extend(b"\r\n");
        }
        body.extend(format!("--{BOUNDARY}--\r\n").into_bytes());
        let roles: Vec<&str> = files.iter().map(|f| f.role.as_str()).collect();
        let call = Call::new(
            Method::POST,
            format!("/v2/{}/_trust/tuf/", self.gun),
            Access::Push,
            format!("the signed {} of {}", roles.join(" and "), self.gun),
        )
        .header(reqwest::header::CONTENT_TYPE, &format!("multipart/form-data; boundary={BOUNDARY}"))
        .body(body.into());
        let resp = self.client.execute(&call).await.map_err(|e| self.registry_error(e))?;
        self.client.expect_success(resp, &call.what).await.map_err(|e| self.registry_error(e))?;
        Ok(())
    }
}
