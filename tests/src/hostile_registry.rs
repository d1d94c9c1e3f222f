//! A registry that answers with hostile headers, for the tests of where credentials may go
//! (`registry/src/scope.rs`). No real registry does this on purpose, so this is a small
//! server of our own: it demands basic auth on everything, answers just enough of the
//! distribution API for `check` and `out` to reach the answer under test, and then points
//! them at "another host" — a collector on 127.0.0.2 that records every request it gets.
//! What it proves: what kiln sends where, given such answers. It does not prove that any
//! real registry or storage service behaves like this.

use std::path::Path;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use crate::loopback::LoopbackServer;

/// What the registry does to its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hostility {
    /// An upload's `POST` answers `Location: <other host>/upload/1`.
    UploadElsewhere,
    /// The tags list answers a `Link` to the next page on the other host.
    TagsElsewhere,
    /// The tags list answers `307` to the other host.
    RedirectElsewhere,
    /// The challenge is `Bearer` with a realm on the other host.
    RealmElsewhere,
    /// Manifests and tags lists are 16 MiB, sent chunked (no `Content-Length`).
    Huge,
}

/// A request the other host received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
}

pub struct HostileRegistry {
    /// `127.0.0.1:PORT`
    pub addr: String,
    /// The other host's base URL, `http://127.0.0.2:PORT` or `https://…`.
    pub other: String,
    pub username: &'static str,
    pub password: &'static str,
    seen: Arc<Mutex<Vec<Seen>>>,
    _servers: (LoopbackServer, LoopbackServer),
}

struct State {
    hostility: Hostility,
    other: String,
    basic: String,
}

impl HostileRegistry {
    /// Starts the registry (over TLS with the dev certificates in `tls_certs` when given)
    /// and the other host (plain HTTP, or TLS when `other_tls`).
    pub fn start(hostility: Hostility, tls_certs: Option<&Path>, other_tls: bool) -> Self {
        use base64::Engine as _;
        let (username, password) = ("kiln", "hostile-test-password-2f9c");
        let acceptor =
            |dir: Option<&Path>| dir.map(|d| crate::token_issuer::tls_acceptor(d).expect("dev certificates"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let collector = LoopbackServer::start_on(
            "127.0.0.2",
            acceptor(tls_certs.filter(|_| other_tls)),
            seen.clone(),
            |seen: Arc<Mutex<Vec<Seen>>>, req: Request<Incoming>| async move {
                Ok::<_, std::io::Error>(collect(&seen, req).await)
            },
        );
        let scheme = if other_tls { "https" } else { "http" };
        let other = format!("{scheme}://{}", collector.addr);
        let state = Arc::new(State {
            hostility,
            other: other.clone(),
            basic: format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            ),
        });
        let registry = LoopbackServer::start_on("127.0.0.1", acceptor(tls_certs), state, |state, req| async move {
            Ok::<_, std::io::Error>(answer(&state, req))
        });
        HostileRegistry {
            addr: registry.addr.clone(),
            other,
            username,
            password,
            seen,
            _servers: (registry, collector),
        }
    }

    /// Every request the other host received so far.
    pub fn seen_elsewhere(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// What the registry answers a manifest GET with: escape sequences, a bell, and a forged line.
pub const FORGED_ERROR: &str = "denied\x1b[2J\x1b[1;1H\x07\r\nout: pushed sha256:0000 (all good)";

fn reply(status: StatusCode, headers: &[(&str, String)], body: &str) -> Response<Full<Bytes>> {
    let mut resp = Response::builder().status(status);
    for (name, value) in headers {
        resp = resp.header(*name, value);
    }
    resp.body(Full::new(Bytes::from(body.to_string()))).unwrap()
}

fn answer(state: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let authorized = req.headers().get("authorization").and_then(|v| v.to_str().ok()) == Some(state.basic.as_str());
    if !authorized {
        let challenge = match state.hostility {
            Hostility::RealmElsewhere => format!("Bearer realm=\"{}/token\",service=\"hostile\"", state.other),
            _ => "Basic realm=\"hostile\"".to_string(),
        };
        return reply(StatusCode::UNAUTHORIZED, &[("www-authenticate", challenge)], "");
    }
    let path = req.uri().path().to_string();
    let method = req.method().as_str().to_string();
    let repo = path.strip_prefix("/v2/").and_then(|p| p.split("/blobs/").next()).unwrap_or_default().to_string();
    match (method.as_str(), path.as_str()) {
        ("GET", "/v2/") => reply(StatusCode::OK, &[], "{}"),
        ("HEAD", p) if p.contains("/blobs/sha256:") => reply(StatusCode::NOT_FOUND, &[], ""),
        ("HEAD", p) if p.contains("/manifests/") => reply(StatusCode::NOT_FOUND, &[], ""),
        ("GET", p)
            if (p.contains("/manifests/") || p.ends_with("/tags/list")) && state.hostility == Hostility::Huge =>
        {
            let body = format!("{{\"tags\": [\"a\"], \"pad\": \"{}\"}}", " ".repeat(16 << 20));
            reply(
                StatusCode::OK,
                &[("transfer-encoding", "chunked".into()), ("content-type", "application/json".into())],
                &body,
            )
        }
        // An error text made to rewrite the terminal and forge a log line.
        ("GET", p) if p.contains("/manifests/") => reply(StatusCode::BAD_REQUEST, &[], FORGED_ERROR),
        ("POST", p) if p.ends_with("/blobs/uploads/") => {
            let location = match state.hostility {
                Hostility::UploadElsewhere => format!("{}/upload/1", state.other),
                _ => format!("/v2/{repo}/blobs/uploads/1"),
            };
            reply(StatusCode::ACCEPTED, &[("location", location)], "")
        }
        ("GET", p) if p.ends_with("/tags/list") => {
            let name = p.trim_start_matches("/v2/").trim_end_matches("/tags/list").to_string();
            let next = format!("{}/v2/{name}/tags/list?last=1.0.0", state.other);
            match state.hostility {
                Hostility::TagsElsewhere => reply(
                    StatusCode::OK,
                    &[("link", format!("<{next}>; rel=\"next\"")), ("content-type", "application/json".into())],
                    &format!("{{\"name\":\"{name}\",\"tags\":[\"1.0.0\"]}}"),
                ),
                Hostility::RedirectElsewhere => reply(StatusCode::TEMPORARY_REDIRECT, &[("location", next)], ""),
                _ => reply(StatusCode::OK, &[], &format!("{{\"name\":\"{name}\",\"tags\":[]}}")),
            }
        }
        _ => reply(StatusCode::NOT_FOUND, &[], "{\"errors\":[{\"code\":\"UNKNOWN\"}]}"),
    }
}

/// The other host: records the request, then answers as blandly as it can.
async fn collect(seen: &Mutex<Vec<Seen>>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let authorization = req.headers().get("authorization").and_then(|v| v.to_str().ok()).map(String::from);
    let (method, path) = (req.method().to_string(), req.uri().path().to_string());
    seen.lock().unwrap().push(Seen { method: method.clone(), path: path.clone(), authorization });
    // Take the body so uploads finish from the client's side.
    let _ = req.into_body().collect().await.map(|_| ()).map_err(|_: hyper::Error| ());
    match method.as_str() {
        "PATCH" => reply(StatusCode::ACCEPTED, &[("location", path)], ""),
        "PUT" => reply(StatusCode::CREATED, &[], ""),
        _ if path.ends_with("/token") => reply(StatusCode::OK, &[], "{\"token\":\"t\"}"),
        _ => reply(StatusCode::OK, &[("content-type", "application/json".into())], "{\"tags\":[]}"),
    }
}
