//! A registry client bound to one repository: it finds the registry's scheme with
//! one `/v2/` ping, answers authentication challenges (tokens cached per scope and
//! refreshed on 401), and retries what is worth retrying.
//!
//! The distribution API itself lives beside this file: [`crate::manifests`],
//! [`crate::blobs`], [`crate::tags`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use kiln_image::blob::FileRange;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};

use crate::auth::{Challenge, Credentials};
use crate::reference::Repository;

/// How to reach a registry.
#[derive(Debug, Clone, Default)]
pub struct ClientConfig {
    /// Credentials, if the registry needs them.
    pub credentials: Option<Credentials>,
    /// Extra CA certificates (PEM) trusted by this client only; a registry presenting one
    /// of them as its own certificate is trusted too (pinned: see `tls.rs`).
    pub ca_certs: Vec<String>,
    /// Allow plain HTTP for this registry. TLS verification is never turned off.
    pub insecure: bool,
    /// A client certificate for servers that ask for one (mutual TLS).
    pub client_identity: Option<crate::tls::ClientIdentity>,
    /// How long the registry may send nothing before the request counts as failed (and is
    /// retried); `None` is `DEFAULT_READ_TIMEOUT` (120 s). hyper reads while it sends a body, so
    /// this also catches a registry that stops taking an upload.
    pub read_timeout: Option<Duration>,
}

/// Long enough for a slow registry to start streaming a large blob, short enough that a
/// stalled one is noticed.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(120);
/// How long connecting to the registry may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// What can go wrong talking to a registry. Messages never contain credentials.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("ca_certs[{index}] is not a PEM certificate: {detail}")]
    BadCaCert { index: usize, detail: String },
    #[error("the client certificate and key are unusable: {0}")]
    BadClientCert(String),
    #[error("cannot reach registry {registry}: {detail}")]
    Unreachable { registry: String, detail: String },
    #[error(
        "{0} answered 404 for /v2/: it does not serve the registry API there; check the repository's host \
         (a registry's own path prefix goes after the host, as in registry.example.com/prefix/app)"
    )]
    NotARegistry(String),
    #[error("registry {registry} refused access to {repository} ({status}): {hint}")]
    Unauthorized { registry: String, repository: String, status: StatusCode, hint: &'static str },
    #[error("token service {realm} failed: {detail}")]
    Token { realm: String, detail: String },
    #[error("registry {registry} answered {status} for {what}{body}{}", status_hint(*.status))]
    Status { registry: String, what: String, status: StatusCode, body: String },
    #[error("registry {registry} sent {what} with digest {actual}, expected {expected}")]
    DigestMismatch { registry: String, what: String, expected: String, actual: String },
    #[error("{what} from registry {registry} is larger than {limit} bytes")]
    TooLarge { registry: String, what: String, limit: u64 },
    #[error("registry {registry} pointed {what} at {url}, which kiln refuses: {why}")]
    UnsafeUrl { registry: String, what: String, url: String, why: crate::scope::Refusal },
    #[error("reading {what}: {detail}")]
    Local { what: String, detail: String },
    #[error("could not set up the HTTP client: {0}")]
    Client(String),
}

/// What a request needs to be allowed to do.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Access {
    Pull,
    Push,
    /// Push here and pull from another repository of the same registry (cross-repository mount).
    PushMountFrom(String),
}

/// One request to the registry. A body is bytes in memory or a range of a file, which is
/// read again for each attempt, so any request can be retried.
pub(crate) struct Call {
    pub method: Method,
    /// A path (`/v2/...`) or an absolute URL the registry gave us (upload locations).
    pub target: String,
    pub headers: HeaderMap,
    pub body: Option<Body>,
    pub access: Access,
    /// What this is, for messages: "manifest app:1.0".
    pub what: String,
}

impl Call {
    pub fn new(method: Method, target: impl Into<String>, access: Access, what: impl Into<String>) -> Self {
        Self { method, target: target.into(), headers: HeaderMap::new(), body: None, access, what: what.into() }
    }

    pub fn header(mut self, name: reqwest::header::HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.insert(name, v);
        }
        self
    }

    pub fn body(mut self, body: bytes::Bytes) -> Self {
        self.body = Some(Body::Bytes(body));
        self
    }

    /// Streams the file range (from the start again at every attempt; a [pinned] range is
    /// read from the one file it opened).
    ///
    /// [pinned]: FileRange::pinned
    pub fn file_body(mut self, file: &FileRange) -> Self {
        self.body = Some(Body::File(file.clone()));
        self
    }
}

/// What a request sends.
pub(crate) enum Body {
    Bytes(bytes::Bytes),
    File(FileRange),
}

/// Bytes read from a file per chunk of a streamed body.
const STREAM_CHUNK: usize = 256 << 10;
/// Chunk buffers one streamed body may use: two queued for the connection, what it is
/// writing, and the one being filled.
const STREAM_BUFFERS: usize = 6;

/// A chunk of a streamed body whose buffer goes back to its body's pool once the connection
/// has sent it. A fresh zeroed allocation per chunk cost a fifth of a push's CPU (zeroing,
/// page faults, unmapping); reused buffers cost neither.
struct Recycled {
    buf: Vec<u8>,
    len: usize,
    pool: std::sync::mpsc::SyncSender<Vec<u8>>,
}

impl AsRef<[u8]> for Recycled {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for Recycled {
    fn drop(&mut self) {
        let _ = self.pool.try_send(std::mem::take(&mut self.buf));
    }
}

/// A file range as a request body: read (by position, off the async threads) as it is
/// sent, into a few buffers used over and over.
fn file_stream(range: &FileRange) -> reqwest::Body {
    use std::os::unix::fs::FileExt as _;
    let range = range.clone();
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(2);
    tokio::task::spawn_blocking(move || {
        let fail = |e: std::io::Error| {
            let _ = tx.blocking_send(Err(std::io::Error::new(e.kind(), format!("{}: {e}", range.path.display()))));
        };
        let file = match range.open() {
            Ok(file) => file,
            Err(e) => return fail(e),
        };
        let (returned, pool) = std::sync::mpsc::sync_channel::<Vec<u8>>(STREAM_BUFFERS);
        let mut made = 0;
        let (mut at, end) = (range.offset, range.offset + range.len);
        while at < end {
            let mut buf = match pool.try_recv() {
                Ok(buf) => buf,
                Err(_) if made < STREAM_BUFFERS => {
                    made += 1;
                    vec![0u8; STREAM_CHUNK]
                }
                // Every buffer is on its way to the socket: wait for one to come back (a
                // connection that holds on to them this long gets a new one).
                Err(_) => {
                    pool.recv_timeout(std::time::Duration::from_secs(30)).unwrap_or_else(|_| vec![0u8; STREAM_CHUNK])
                }
            };
            let want = (end - at).min(STREAM_CHUNK as u64) as usize;
            let read = match file.read_at(&mut buf[..want], at) {
                Ok(0) => Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the file ends early")),
                other => other,
            };
            let n = match read {
                Ok(n) => n,
                Err(e) => return fail(e),
            };
            at += n as u64;
            let chunk = bytes::Bytes::from_owner(Recycled { buf, len: n, pool: returned.clone() });
            // The request was dropped: stop reading.
            if tx.blocking_send(Ok(chunk)).is_err() {
                return;
            }
        }
    });
    reqwest::Body::wrap_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
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
    /// `Authorization` values that worked, per access.
    authorization: HashMap<Access, String>,
}

/// An HTTP client for a cloud's login APIs (STS, ECR, Entra ID, IMDS): kiln's user agent,
/// a 10 s connect timeout and `timeout` for each whole request.
pub(crate) fn api_client(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .timeout(timeout)
        .tls_backend_preconfigured(crate::tls::client_config(&[], None).map_err(|e| e.to_string())?)
        .build()
        .map_err(|e| error_chain(&e))
}

/// A client for one repository.
pub struct Client {
    pub(crate) http: reqwest::Client,
    pub(crate) repo: Repository,
    config: ClientConfig,
    /// Set by [`Client::https_only`].
    https_only: bool,
    state: Mutex<State>,
}

impl Client {
    pub fn new(repo: Repository, config: ClientConfig) -> Result<Self, RegistryError> {
        let http = crate::tls::http_builder(&config.ca_certs, config.client_identity.as_ref())?
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(config.read_timeout.unwrap_or(DEFAULT_READ_TIMEOUT))
            .build()
            .map_err(|e| RegistryError::Client(error_chain(&e)))?;
        Ok(Self { http, repo, config, https_only: false, state: Mutex::new(State::default()) })
    }

    /// A client for a server a `https://` URL names: plain HTTP is never tried, not even
    /// on loopback or with `insecure`.
    pub(crate) fn https_only(mut self) -> Self {
        self.https_only = true;
        self
    }

    /// How long a read may wait for the registry.
    fn read_timeout(&self) -> Duration {
        self.config.read_timeout.unwrap_or(DEFAULT_READ_TIMEOUT)
    }

    pub fn repository(&self) -> &Repository {
        &self.repo
    }

    /// The scheme found by the first request (`https` before any).
    pub(crate) fn scheme_str(&self) -> &'static str {
        self.state.lock().expect("state lock").scheme.unwrap_or(Scheme::Https).as_str()
    }

    /// Sends a call, retried as [`crate::retry`] decides, with one fresh authorization
    /// after a 401.
    pub(crate) async fn execute(&self, call: &Call) -> Result<reqwest::Response, RegistryError> {
        use crate::retry::{self, RETRIES};
        let mut attempt = 0;
        loop {
            let outcome = self.execute_authorized(call).await;
            let wait = match &outcome {
                Ok(resp) if retry::retryable_status(resp.status()) => {
                    Some((retry::delay(attempt, Some(resp.headers())), resp.status().to_string()))
                }
                Err(Failure::Transport(e)) if retry::transient(e) => {
                    Some((retry::delay(attempt, None), error_chain(e)))
                }
                _ => None,
            };
            match wait {
                Some((delay, why)) if attempt < RETRIES => {
                    attempt += 1;
                    eprintln!(
                        "registry {}: {} failed ({why}); retry {attempt}/{RETRIES} in {:.1}s",
                        self.repo.registry(),
                        call.what,
                        delay.as_secs_f32()
                    );
                    tokio::time::sleep(delay).await;
                }
                _ => {
                    return outcome.map_err(|f| match f {
                        Failure::Transport(e) => self.unreachable(&e),
                        Failure::Registry(e) => e,
                    });
                }
            }
        }
    }

    async fn execute_authorized(&self, call: &Call) -> Result<reqwest::Response, Failure> {
        let scheme = self.scheme().await.map_err(Failure::Registry)?;
        let cached = self.state.lock().expect("state lock").authorization.get(&call.access).cloned();
        let resp = self.send_once(scheme, call, cached.as_deref()).await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let challenge = header_str(resp.headers(), WWW_AUTHENTICATE.as_str()).and_then(Challenge::parse);
        let Some(challenge) = challenge else {
            return Err(Failure::Registry(self.unauthorized(resp.status())));
        };
        let authorization = self.authorize(&challenge, &call.access).await.map_err(Failure::Registry)?;
        let resp = self.send_once(scheme, call, Some(&authorization)).await?;
        if matches!(resp.status(), StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            return Err(Failure::Registry(self.unauthorized(resp.status())));
        }
        self.state.lock().expect("state lock").authorization.insert(call.access.clone(), authorization);
        Ok(resp)
    }

    async fn send_once(
        &self,
        scheme: Scheme,
        call: &Call,
        authorization: Option<&str>,
    ) -> Result<reqwest::Response, Failure> {
        let base = self.base_url(scheme)?;
        let url = base.join(&call.target).map_err(|_| {
            Failure::Registry(RegistryError::Status {
                registry: self.repo.registry().into(),
                what: call.what.clone(),
                status: StatusCode::BAD_GATEWAY,
                body: ": it named a URL that cannot be parsed".into(),
            })
        })?;
        // The one place credentials are attached: only for the registry's own origin.
        let credentials = crate::scope::for_target(&base, &url).map_err(|why| {
            Failure::Registry(RegistryError::UnsafeUrl {
                registry: self.repo.registry().into(),
                what: call.what.clone(),
                url: crate::scope::shown(&url),
                why,
            })
        })?;
        let authorization = authorization.filter(|_| credentials == crate::scope::Credentials::Attach);
        if let Some(Body::File(file)) = &call.body
            && crate::plain_upload::applies(&url)
        {
            let timeouts = crate::plain_upload::Timeouts { connect: CONNECT_TIMEOUT, io: self.read_timeout() };
            let (method, headers, authorization) =
                (call.method.clone(), call.headers.clone(), authorization.map(String::from));
            return crate::plain_upload::send(
                method,
                url,
                headers,
                authorization,
                file.clone(),
                timeouts,
                crate::body::SMALL,
            )
            .await
            .map_err(|e| {
                Failure::Registry(RegistryError::Unreachable {
                    registry: self.repo.registry().into(),
                    detail: e.to_string(),
                })
            });
        }
        let mut req = self.http.request(call.method.clone(), url).headers(call.headers.clone());
        if let Some(auth) = authorization {
            req = req.header(AUTHORIZATION, auth);
        }
        match &call.body {
            Some(Body::Bytes(body)) => req = req.body(body.clone()),
            Some(Body::File(file)) => {
                req = req.header(reqwest::header::CONTENT_LENGTH, file.len.to_string()).body(file_stream(file));
            }
            None if matches!(call.method, Method::PUT | Method::POST | Method::PATCH) => {
                req = req.header(reqwest::header::CONTENT_LENGTH, "0");
            }
            None => {}
        }
        req.send().await.map_err(Failure::Transport)
    }

    /// The registry's own origin, as this client reaches it.
    fn base_url(&self, scheme: Scheme) -> Result<reqwest::Url, Failure> {
        reqwest::Url::parse(&format!("{}://{}/", scheme.as_str(), self.repo.api_host()))
            .map_err(|e| Failure::Registry(RegistryError::Client(format!("{}: {e}", self.repo.registry()))))
    }

    /// Turns a challenge into an `Authorization` value for `access`.
    async fn authorize(&self, challenge: &Challenge, access: &Access) -> Result<String, RegistryError> {
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
                let path = self.repo.path();
                let mut scopes = vec![match access {
                    Access::Pull => format!("repository:{path}:pull"),
                    Access::Push | Access::PushMountFrom(_) => format!("repository:{path}:pull,push"),
                }];
                if let Access::PushMountFrom(from) = access {
                    scopes.push(format!("repository:{from}:pull"));
                }
                let token_error = |detail: String| RegistryError::Token { realm: realm.clone(), detail };
                let realm_url = reqwest::Url::parse(realm).map_err(|_| token_error("not a URL".into()))?;
                let scheme = self.scheme().await?;
                let base = self.base_url(scheme).map_err(|f| match f {
                    Failure::Registry(e) => e,
                    Failure::Transport(e) => self.unreachable(&e),
                })?;
                crate::scope::for_realm(&base, &realm_url).map_err(|why| RegistryError::UnsafeUrl {
                    registry: self.repo.registry().into(),
                    what: "its token service".into(),
                    url: crate::scope::shown(&realm_url),
                    why,
                })?;
                let request =
                    crate::auth::TokenRequest { realm: realm_url, service: service.as_deref(), scopes: &scopes };
                let identity_token = self.config.credentials.as_ref().and_then(|c| c.identity_token());
                let answer = match identity_token {
                    Some(token) => crate::auth::refresh_token(&self.http, &request, token).await,
                    None => crate::auth::fetch_token(&self.http, &request, basic.as_deref()).await,
                };
                match answer {
                    Ok(token) => Ok(format!("Bearer {token}")),
                    Err(crate::auth::TokenError::Refused(status)) => Err(self.unauthorized(status)),
                    Err(crate::auth::TokenError::Failed(detail)) => Err(token_error(detail)),
                }
            }
        }
    }

    /// Finds which scheme the registry speaks: HTTPS, or plain HTTP where that is allowed
    /// (`insecure`, or a loopback address) and HTTPS cannot connect. A server that speaks
    /// TLS with a certificate we do not trust is not taken for plain HTTP.
    async fn scheme(&self) -> Result<Scheme, RegistryError> {
        if let Some(s) = self.state.lock().expect("state lock").scheme {
            return Ok(s);
        }
        let ping = |scheme: Scheme| {
            let url = format!("{}://{}/v2/", scheme.as_str(), self.repo.api_host());
            self.http.get(url).send()
        };
        let http_allowed = !self.https_only && (self.config.insecure || self.repo.is_loopback());
        let not_a_registry = |resp: &reqwest::Response| resp.status() == StatusCode::NOT_FOUND;
        let scheme = match ping(Scheme::Https).await {
            Ok(resp) if not_a_registry(&resp) => return Err(RegistryError::NotARegistry(self.repo.registry().into())),
            Ok(_) => Scheme::Https,
            Err(https_err) if http_allowed && !is_certificate_failure(&https_err) => match ping(Scheme::Http).await {
                Ok(resp) if not_a_registry(&resp) => {
                    return Err(RegistryError::NotARegistry(self.repo.registry().into()));
                }
                Ok(_) => Scheme::Http,
                Err(http_err) => {
                    return Err(RegistryError::Unreachable {
                        registry: self.repo.registry().into(),
                        detail: format!("https: {}; http: {}", error_chain(&https_err), error_chain(&http_err)),
                    });
                }
            },
            Err(e) => {
                let hint = if crate::tls::untrusted_certificate(&e).is_some() {
                    "" // it says what to do
                } else if error_chain(&e).contains("CertificateRequired") {
                    " (the server takes only clients with a certificate it trusts; none was given)"
                } else if is_certificate_failure(&e) {
                    " (add the registry's certificate, or its CA's, to ca_certs)"
                } else if is_tls_failure(&e) {
                    " (is it plain HTTP? then set insecure: true)"
                } else {
                    ""
                };
                return Err(RegistryError::Unreachable {
                    registry: self.repo.registry().into(),
                    detail: format!("{}{hint}", transport_detail(&e)),
                });
            }
        };
        self.state.lock().expect("state lock").scheme = Some(scheme);
        Ok(scheme)
    }

    /// A body read whole, within `limit` (see [`crate::body`]).
    pub(crate) async fn read_body(
        &self,
        resp: reqwest::Response,
        limit: u64,
        what: &str,
    ) -> Result<Vec<u8>, RegistryError> {
        crate::body::read_capped(resp, limit).await.map_err(|e| match e {
            crate::body::BodyError::TooLarge { limit } => {
                RegistryError::TooLarge { registry: self.repo.registry().into(), what: what.into(), limit }
            }
            crate::body::BodyError::Transport(e) => self.unreachable(&e),
        })
    }

    /// Passes a successful response through; turns any other into [`RegistryError::Status`].
    pub(crate) async fn expect_success(
        &self,
        resp: reqwest::Response,
        what: &str,
    ) -> Result<reqwest::Response, RegistryError> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        // Only the start is shown; the rest is never read.
        let body = crate::body::text_prefix(resp, 4096).await;
        let body = body.trim();
        // The server's text, escaped where it is taken in: every caller prints it safely.
        let body = if body.is_empty() { String::new() } else { format!(": {}", crate::one_line(truncate(body, 300))) };
        Err(RegistryError::Status { registry: self.repo.registry().into(), what: what.into(), status, body })
    }

    pub(crate) fn unreachable(&self, e: &reqwest::Error) -> RegistryError {
        RegistryError::Unreachable { registry: self.repo.registry().into(), detail: transport_detail(e) }
    }

    fn unauthorized(&self, status: StatusCode) -> RegistryError {
        let hint = if self.config.credentials.is_some() {
            "check username and password, and that this account may use the repository"
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

/// What to do about an answer users meet, said after the registry's own words.
fn status_hint(status: StatusCode) -> &'static str {
    match status.as_u16() {
        402 => {
            "; the registry wants payment: its storage or traffic allowance is used up (free space or raise the plan)"
        }
        403 => "; this account may not do that here: check its permissions on the repository",
        429 => {
            "; the registry still limits requests after kiln's retries: run less often, or log in for a higher limit"
        }
        500..=599 => "; the registry itself failed: try again later, or ask its operators",
        _ => "",
    }
}

/// Why one attempt failed: the network (maybe worth retrying) or the registry's answer.
enum Failure {
    Transport(reqwest::Error),
    Registry(RegistryError),
}

/// What went wrong sending a request: a refused certificate on its own (the URL and
/// hyper's layers add nothing to it), anything else as its [`error_chain`].
fn transport_detail(e: &reqwest::Error) -> String {
    match crate::tls::untrusted_certificate(e) {
        Some(refused) => refused.to_string(),
        None => error_chain(e),
    }
}

pub(crate) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn is_certificate_failure(e: &reqwest::Error) -> bool {
    crate::tls::untrusted_certificate(e).is_some() || error_chain(e).to_ascii_lowercase().contains("certificate")
}

fn is_tls_failure(e: &reqwest::Error) -> bool {
    let chain = error_chain(e).to_ascii_lowercase();
    chain.contains("tls") || chain.contains("handshake") || chain.contains("corrupt message")
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// An error and its causes on one line, the way users need them in a CI log. A
/// certificate kiln refused ends the line in kiln's words, not rustls's debug form.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(refused) = crate::tls::untrusted_in(err) {
            parts.push(refused.to_string());
            break;
        }
        let text = err.to_string();
        // Libraries often repeat their cause in their own message: say each thing once.
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = err.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_users_meet_say_what_to_do() {
        let error = |status: u16| {
            RegistryError::Status {
                registry: "r.example".into(),
                what: "manifest a:1".into(),
                status: StatusCode::from_u16(status).unwrap(),
                body: String::new(),
            }
            .to_string()
        };
        assert!(error(402).ends_with("allowance is used up (free space or raise the plan)"), "{}", error(402));
        assert!(error(402).starts_with("registry r.example answered 402 Payment Required for manifest a:1; "));
        assert!(error(429).contains("after kiln's retries"));
        assert!(error(503).contains("the registry itself failed"));
        assert!(error(403).contains("permissions"));
        assert_eq!(error(400), "registry r.example answered 400 Bad Request for manifest a:1");
    }
}
