//! A registry client bound to one repository: it finds the registry's scheme,
//! answers its authentication challenges and speaks the distribution API.

use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use sha2::{Digest as _, Sha256};

use crate::auth::{Challenge, Credentials, TokenResponse};
use crate::media_types::MANIFEST_ACCEPT;
use crate::reference::Repository;

/// How to reach a registry.
#[derive(Debug, Clone, Default)]
pub struct ClientConfig {
    /// Credentials, if the registry needs them.
    pub credentials: Option<Credentials>,
    /// Extra CA certificates (PEM) trusted by this client only.
    pub ca_certs: Vec<String>,
    /// Allow plain HTTP for this registry. TLS verification is never turned off.
    pub insecure: bool,
}

/// A manifest's address and type, as the registry reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub digest: String,
    pub media_type: String,
    pub size: u64,
}

/// What can go wrong talking to a registry. Messages never contain credentials.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("ca_certs[{index}] is not a PEM certificate: {detail}")]
    BadCaCert { index: usize, detail: String },
    #[error("cannot reach registry {registry}: {detail}")]
    Unreachable { registry: String, detail: String },
    #[error("registry {registry} refused access to {repository} ({status}): {hint}")]
    Unauthorized { registry: String, repository: String, status: StatusCode, hint: &'static str },
    #[error("token service {realm} failed: {detail}")]
    Token { realm: String, detail: String },
    #[error("registry {registry} answered {status} for {what}{body}")]
    Status { registry: String, what: String, status: StatusCode, body: String },
    #[error("registry {registry} sent {what} with digest {actual}, expected {expected}")]
    DigestMismatch { registry: String, what: String, expected: String, actual: String },
    #[error("could not set up the HTTP client: {0}")]
    Client(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Https,
    Http,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Scheme::Https => "https",
            Scheme::Http => "http",
        }
    }
}

#[derive(Default)]
struct State {
    scheme: Option<Scheme>,
    /// The `Authorization` header value that last worked for pulling.
    authorization: Option<String>,
}

/// A client for one repository.
pub struct Client {
    http: reqwest::Client,
    repo: Repository,
    config: ClientConfig,
    state: Mutex<State>,
}

impl Client {
    pub fn new(repo: Repository, config: ClientConfig) -> Result<Self, RegistryError> {
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(15))
            .read_timeout(Duration::from_secs(120))
            .redirect(reqwest::redirect::Policy::limited(10));
        for (index, pem) in config.ca_certs.iter().enumerate() {
            let cert = reqwest::Certificate::from_pem(pem.as_bytes())
                .map_err(|e| RegistryError::BadCaCert { index, detail: error_chain(&e) })?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder.build().map_err(|e| RegistryError::Client(error_chain(&e)))?;
        Ok(Self { http, repo, config, state: Mutex::new(State::default()) })
    }

    pub fn repository(&self) -> &Repository {
        &self.repo
    }

    /// Looks up a manifest by tag or digest without downloading it where the registry allows.
    /// `Ok(None)` when the registry says it does not exist.
    pub async fn head_manifest(&self, reference: &str) -> Result<Option<Descriptor>, RegistryError> {
        let what = format!("manifest {}:{reference}", self.repo);
        let path = format!("/v2/{}/manifests/{reference}", self.repo.path());
        let resp = self.send(Method::HEAD, &path, &MANIFEST_ACCEPT.join(", ")).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = self.expect_success(resp, &what).await?;
        let headers = resp.headers();
        match (header_str(headers, "docker-content-digest"), header_str(headers, CONTENT_TYPE.as_str())) {
            (Some(digest), Some(media_type)) if crate::reference::validate_digest(digest).is_ok() => {
                let size = resp.content_length().unwrap_or(0);
                Ok(Some(Descriptor { digest: digest.to_string(), media_type: media_type.to_string(), size }))
            }
            // Some registries leave the digest out of HEAD answers: fetch and hash the body.
            _ => Ok(self.get_manifest(reference).await?.map(|(d, _)| d)),
        }
    }

    /// Fetches a manifest by tag or digest and verifies its digest.
    pub async fn get_manifest(&self, reference: &str) -> Result<Option<(Descriptor, Vec<u8>)>, RegistryError> {
        let what = format!("manifest {}:{reference}", self.repo);
        let path = format!("/v2/{}/manifests/{reference}", self.repo.path());
        let resp = self.send(Method::GET, &path, &MANIFEST_ACCEPT.join(", ")).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = self.expect_success(resp, &what).await?;
        let media_type = header_str(resp.headers(), CONTENT_TYPE.as_str()).unwrap_or_default().to_string();
        let claimed = header_str(resp.headers(), "docker-content-digest").map(str::to_string);
        let body = resp.bytes().await.map_err(|e| self.unreachable(&e))?;
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
        let expected = if reference.starts_with("sha256:") { Some(reference.to_string()) } else { claimed };
        if let Some(expected) = expected.filter(|e| e.starts_with("sha256:") && *e != digest) {
            return Err(RegistryError::DigestMismatch {
                registry: self.repo.registry().into(),
                what,
                expected,
                actual: digest,
            });
        }
        let desc = Descriptor { digest, media_type, size: body.len() as u64 };
        Ok(Some((desc, body.to_vec())))
    }

    /// Sends a request, choosing the scheme on first use and answering one auth challenge.
    async fn send(&self, method: Method, path: &str, accept: &str) -> Result<reqwest::Response, RegistryError> {
        let scheme = self.scheme().await?;
        let url = format!("{}://{}{path}", scheme.as_str(), self.repo.api_host());
        let authorization = self.state.lock().expect("state lock").authorization.clone();
        let resp = self.request(method.clone(), &url, accept, authorization.as_deref()).await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let challenge = header_str(resp.headers(), WWW_AUTHENTICATE.as_str()).and_then(Challenge::parse);
        let Some(challenge) = challenge else {
            return Err(self.unauthorized(resp.status()));
        };
        let authorization = self.authorize(&challenge).await?;
        let resp = self.request(method, &url, accept, Some(&authorization)).await?;
        if matches!(resp.status(), StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            return Err(self.unauthorized(resp.status()));
        }
        self.state.lock().expect("state lock").authorization = Some(authorization);
        Ok(resp)
    }

    async fn request(
        &self,
        method: Method,
        url: &str,
        accept: &str,
        authorization: Option<&str>,
    ) -> Result<reqwest::Response, RegistryError> {
        let mut req = self.http.request(method, url).header(ACCEPT, accept);
        if let Some(auth) = authorization {
            req = req.header(AUTHORIZATION, auth);
        }
        req.send().await.map_err(|e| self.unreachable(&e))
    }

    /// Turns a challenge into an `Authorization` header value.
    async fn authorize(&self, challenge: &Challenge) -> Result<String, RegistryError> {
        let basic = self.config.credentials.as_ref().map(|c| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.username, c.password))
        });
        match challenge {
            Challenge::Basic => match basic {
                Some(b) => Ok(format!("Basic {b}")),
                None => Err(self.unauthorized(StatusCode::UNAUTHORIZED)),
            },
            Challenge::Bearer { realm, service } => {
                let scope = format!("repository:{}:pull", self.repo.path());
                let mut req = self.http.get(realm).query(&[("scope", scope.as_str())]);
                if let Some(service) = service {
                    req = req.query(&[("service", service.as_str())]);
                }
                if let Some(b) = &basic {
                    req = req.header(AUTHORIZATION, format!("Basic {b}"));
                }
                let token_error = |detail: String| RegistryError::Token { realm: realm.clone(), detail };
                let resp = req.send().await.map_err(|e| token_error(error_chain(&e)))?;
                let status = resp.status();
                if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                    return Err(self.unauthorized(status));
                }
                if !status.is_success() {
                    return Err(token_error(format!("answered {status}")));
                }
                let token: TokenResponse =
                    resp.json().await.map_err(|e| token_error(format!("unreadable answer: {}", error_chain(&e))))?;
                let token = token.into_token().ok_or_else(|| token_error("answer has no token".into()))?;
                Ok(format!("Bearer {token}"))
            }
        }
    }

    /// Finds which scheme the registry speaks: HTTPS, or plain HTTP where that is allowed
    /// (`insecure`, or a loopback address) and HTTPS cannot connect.
    async fn scheme(&self) -> Result<Scheme, RegistryError> {
        if let Some(s) = self.state.lock().expect("state lock").scheme {
            return Ok(s);
        }
        let ping = |scheme: Scheme| {
            let url = format!("{}://{}/v2/", scheme.as_str(), self.repo.api_host());
            self.http.get(url).send()
        };
        let scheme = match ping(Scheme::Https).await {
            Ok(_) => Scheme::Https,
            // A server that speaks TLS with a certificate we do not trust is not plain HTTP:
            // say so rather than fall back.
            Err(https_err)
                if (self.config.insecure || self.repo.is_loopback()) && !is_certificate_failure(&https_err) =>
            {
                match ping(Scheme::Http).await {
                    Ok(_) => Scheme::Http,
                    Err(http_err) => {
                        return Err(RegistryError::Unreachable {
                            registry: self.repo.registry().into(),
                            detail: format!("https: {}; http: {}", error_chain(&https_err), error_chain(&http_err)),
                        });
                    }
                }
            }
            Err(e) => {
                let hint = if is_certificate_failure(&e) {
                    " (add the registry's CA certificate to ca_certs)"
                } else if is_tls_failure(&e) {
                    " (is it plain HTTP? then set insecure: true)"
                } else {
                    ""
                };
                return Err(RegistryError::Unreachable {
                    registry: self.repo.registry().into(),
                    detail: format!("{}{hint}", error_chain(&e)),
                });
            }
        };
        self.state.lock().expect("state lock").scheme = Some(scheme);
        Ok(scheme)
    }

    async fn expect_success(&self, resp: reqwest::Response, what: &str) -> Result<reqwest::Response, RegistryError> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.text().await.unwrap_or_default();
        let body = body.trim();
        let body = if body.is_empty() { String::new() } else { format!(": {}", truncate(body, 300)) };
        Err(RegistryError::Status { registry: self.repo.registry().into(), what: what.into(), status, body })
    }

    fn unreachable(&self, e: &reqwest::Error) -> RegistryError {
        RegistryError::Unreachable { registry: self.repo.registry().into(), detail: error_chain(e) }
    }

    fn unauthorized(&self, status: StatusCode) -> RegistryError {
        let hint = if self.config.credentials.is_some() {
            "check username and password, and that this account may read the repository"
        } else {
            "the registry wants credentials: set username and password"
        };
        RegistryError::Unauthorized {
            registry: self.repo.registry().into(),
            repository: self.repo.path().into(),
            status,
            hint,
        }
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn is_certificate_failure(e: &reqwest::Error) -> bool {
    error_chain(e).to_ascii_lowercase().contains("certificate")
}

fn is_tls_failure(e: &reqwest::Error) -> bool {
    let chain = error_chain(e).to_ascii_lowercase();
    chain.contains("tls") || chain.contains("certificate") || chain.contains("handshake")
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// An error and its causes on one line, the way users need them in a CI log.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.last().is_some_and(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}
