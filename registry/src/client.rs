//! A registry client bound to one repository, its transport in layers: each call is
//! retried as [`crate::retry`] decides, over the scheme [`crate::scheme`] found, with the
//! `Authorization` [`crate::auth`] obtained (cached per access, renewed on a 401), attached
//! only where [`crate::scope`] allows, and sent by reqwest or, for a file to a plain-HTTP
//! registry, by [`crate::plain_upload`]. Requests are [`crate::call::Call`]s; errors are
//! [`crate::error::RegistryError`].
//!
//! The distribution API itself lives beside this file: [`crate::manifests`],
//! [`crate::blobs`], [`crate::tags`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};

use crate::auth::{Challenge, Credentials};
use crate::call::{Access, Body, Call, file_stream, header_str};
use crate::error::{Failure, RegistryError, error_chain, transport_detail, truncate};
use crate::reference::Repository;
use crate::scheme::Scheme;

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

#[derive(Default)]
pub(crate) struct State {
    pub(crate) scheme: Option<Scheme>,
    /// `Authorization` values that worked, per access.
    pub(crate) authorization: HashMap<Access, String>,
    /// The registry answered 404 for referrers: it has no referrers API.
    pub(crate) no_referrers_api: bool,
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
    pub(crate) config: ClientConfig,
    /// Set by [`Client::https_only`].
    pub(crate) https_only: bool,
    pub(crate) state: Mutex<State>,
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

    pub(crate) fn unauthorized(&self, status: StatusCode) -> RegistryError {
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
