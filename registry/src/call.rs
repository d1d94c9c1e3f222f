//! One request to a registry as the client sends it: what it may do (its `Access`, which
//! decides the token it needs), its headers and body, and a file body streamed through a
//! few reused buffers. A body is bytes or a file range read again at each attempt, so any
//! request can be retried.

use kiln_image::blob::FileRange;
use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderValue};

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
pub(crate) fn file_stream(range: &FileRange) -> reqwest::Body {
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

pub(crate) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}
