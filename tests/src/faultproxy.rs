//! A loopback HTTP proxy in front of a real registry that misbehaves on purpose, for the
//! tests of how kiln survives flaky registries. Each rule matches a method and a path
//! fragment (or, ending in `$`, a whole path) and fires for its first `times` matches: an error status (with `Retry-After`
//! for 429), a connection dropped before the answer, a body cut in the middle, a body
//! with one byte flipped, a body that stops halfway with the connection left open, no
//! answer at all, or both bodies passed through slowly (to kill the registry mid-transfer). Everything else passes through unchanged (the `Host` header too,
//! so the registry's upload locations point back at the proxy).

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt as _, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::{Request, Response, StatusCode};

use crate::loopback::LoopbackServer;

/// What a rule does to the request it matches.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status and no body (429 carries `Retry-After: 1`).
    Status(u16),
    /// Close the connection without answering.
    Reset,
    /// Forward, then send half of the body and break the connection.
    Truncate,
    /// Forward with one byte of the body flipped.
    FlipByte,
    /// Forward, send half of the body, then send nothing more while the connection stays open.
    Stall,
    /// Accept the request and never answer it.
    Hang,
    /// Stream the request and answer bodies through unbuffered, 64 KiB every 10 ms, so the
    /// registry behind can be killed while a transfer is under way.
    Throttle,
}

const THROTTLE_CHUNK: usize = 64 << 10;
const THROTTLE_PAUSE: std::time::Duration = std::time::Duration::from_millis(10);

/// Fires `fault` for the first `times` requests with `method` whose path contains `path`.
#[derive(Debug, Clone)]
pub struct Rule {
    pub method: &'static str,
    pub path: String,
    pub times: usize,
    pub fault: Fault,
}

type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

struct State {
    upstream: String,
    rules: Mutex<Vec<Rule>>,
    /// Every fault fired, as "METHOD path: fault".
    fired: Mutex<Vec<String>>,
    /// Every request received, as "METHOD path".
    seen: Mutex<Vec<String>>,
    /// Body bytes passed through throttled requests, both ways.
    throttled: Arc<std::sync::atomic::AtomicU64>,
    client: reqwest::Client,
}

/// A running proxy; it stops when dropped (with its thread's runtime).
pub struct FaultProxy {
    /// `127.0.0.1:PORT`, to use as the registry's address.
    pub addr: String,
    state: Arc<State>,
    _server: LoopbackServer,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (`127.0.0.1:PORT`, plain HTTP) with these rules.
    pub fn start(upstream: &str, rules: Vec<Rule>) -> Self {
        let state = Arc::new(State {
            upstream: upstream.to_string(),
            rules: Mutex::new(rules),
            fired: Mutex::new(Vec::new()),
            seen: Mutex::new(Vec::new()),
            throttled: Default::default(),
            client: forwarding_client(),
        });
        let server =
            LoopbackServer::start(state.clone(), |state: Arc<State>, req| async move { state.answer(req).await });
        FaultProxy { addr: server.addr.clone(), state, _server: server }
    }

    /// The faults that fired so far.
    pub fn fired(&self) -> Vec<String> {
        self.state.fired.lock().unwrap().clone()
    }

    /// Every request received so far, as "METHOD path?query", in order.
    pub fn requests(&self) -> Vec<String> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Body bytes passed through throttled requests so far, both ways.
    pub fn throttled_bytes(&self) -> u64 {
        self.state.throttled.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// `body` re-chunked into 64 KiB pieces with a pause before each, counted into `counter`.
fn throttle<S, E>(
    body: S,
    counter: Arc<std::sync::atomic::AtomicU64>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>>
where
    S: futures_util::Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: std::fmt::Display,
{
    use futures_util::StreamExt as _;
    body.map(|chunk| match chunk {
        Ok(bytes) => {
            let pieces: Vec<_> = (0..bytes.len())
                .step_by(THROTTLE_CHUNK)
                .map(|at| Ok(bytes.slice(at..(at + THROTTLE_CHUNK).min(bytes.len()))))
                .collect();
            futures_util::stream::iter(pieces)
        }
        Err(e) => futures_util::stream::iter(vec![Err(std::io::Error::other(e.to_string()))]),
    })
    .flatten()
    .then(move |piece| {
        let counter = counter.clone();
        async move {
            tokio::time::sleep(THROTTLE_PAUSE).await;
            if let Ok(bytes) = &piece {
                counter.fetch_add(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
            }
            piece
        }
    })
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut resp = Response::new(http_body_util::Empty::new().map_err(|e: Infallible| match e {}).boxed());
    *resp.status_mut() = status;
    resp
}

impl State {
    /// Forwards with both bodies streamed slowly and unbuffered; a registry that dies
    /// mid-transfer breaks the client's connection as a direct one would.
    async fn throttled(&self, req: Request<Incoming>, path: &str) -> Result<Response<Body>, std::io::Error> {
        let (parts, body) = req.into_parts();
        let url = format!("http://{}{path}", self.upstream);
        let upload = throttle(body.into_data_stream(), self.throttled.clone());
        let mut forward = self.client.request(parts.method.clone(), url).body(reqwest::Body::wrap_stream(upload));
        for (name, value) in parts.headers.iter() {
            forward = forward.header(name, value);
        }
        let upstream = forward.send().await.map_err(std::io::Error::other)?;
        let (status, headers) = (upstream.status(), upstream.headers().clone());
        let download = throttle(upstream.bytes_stream(), self.throttled.clone());
        let mut resp =
            Response::new(StreamBody::new(futures_util::StreamExt::map(download, |p| p.map(Frame::data))).boxed());
        *resp.status_mut() = status;
        *resp.headers_mut() = headers;
        Ok(resp)
    }

    fn take_fault(&self, method: &str, path: &str) -> Option<Fault> {
        let mut rules = self.rules.lock().unwrap();
        // A rule path ending in `$` matches that whole path only (`/v2/$`: the ping).
        let matches = |r: &Rule| match r.path.strip_suffix('$') {
            Some(whole) => path == whole,
            None => path.contains(&r.path),
        };
        let rule = rules.iter_mut().find(|r| r.times > 0 && r.method == method && matches(r))?;
        rule.times -= 1;
        self.fired.lock().unwrap().push(format!("{method} {path}: {:?}", rule.fault));
        Some(rule.fault.clone())
    }

    async fn answer(&self, req: Request<Incoming>) -> Result<Response<Body>, std::io::Error> {
        let method = req.method().to_string();
        let path = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
        self.seen.lock().unwrap().push(format!("{method} {path}"));
        let fault = self.take_fault(&method, &path);
        match fault {
            Some(Fault::Status(code)) => {
                let mut resp = empty(StatusCode::from_u16(code).unwrap());
                if code == 429 {
                    resp.headers_mut().insert("retry-after", "1".parse().unwrap());
                }
                return Ok(resp);
            }
            Some(Fault::Reset) => return Err(std::io::Error::other("connection dropped on purpose")),
            Some(Fault::Hang) => std::future::pending::<()>().await,
            Some(Fault::Throttle) => return self.throttled(req, &path).await,
            _ => {}
        }
        let (parts, body) = req.into_parts();
        let body = body.collect().await.map_err(std::io::Error::other)?.to_bytes();
        let url = format!("http://{}{path}", self.upstream);
        let mut forward = self.client.request(parts.method.clone(), url).body(body);
        for (name, value) in parts.headers.iter() {
            forward = forward.header(name, value);
        }
        let upstream = forward.send().await.map_err(std::io::Error::other)?;
        let status = upstream.status();
        let headers = upstream.headers().clone();
        let mut bytes = upstream.bytes().await.map_err(std::io::Error::other)?.to_vec();
        let body: Body = match fault {
            Some(Fault::FlipByte) if !bytes.is_empty() => {
                let middle = bytes.len() / 2;
                bytes[middle] ^= 0xff;
                http_body_util::Full::new(Bytes::from(bytes)).map_err(|e: Infallible| match e {}).boxed()
            }
            Some(Fault::Truncate) => {
                let half = Bytes::from(bytes[..bytes.len() / 2].to_vec());
                let frames: Vec<Result<Frame<Bytes>, std::io::Error>> =
                    vec![Ok(Frame::data(half)), Err(std::io::Error::other("body cut on purpose"))];
                StreamBody::new(futures_util::stream::iter(frames)).boxed()
            }
            Some(Fault::Stall) => {
                let half = Bytes::from(bytes[..bytes.len() / 2].to_vec());
                let first = futures_util::stream::iter([Ok(Frame::data(half))]);
                StreamBody::new(futures_util::StreamExt::chain(first, futures_util::stream::pending())).boxed()
            }
            _ => http_body_util::Full::new(Bytes::from(bytes)).map_err(|e: Infallible| match e {}).boxed(),
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = status;
        for (name, value) in headers.iter() {
            resp.headers_mut().append(name, value.clone());
        }
        Ok(resp)
    }
}

/// The client a stand-in forwards requests with: no redirects followed, rustls with ring
/// (kiln's provider; reqwest is built without one of its own).
pub(crate) fn forwarding_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}
