//! A file range uploaded to a plain-HTTP registry by the kernel: the request head is
//! written, then `sendfile(2)` moves the bytes from the page cache to the socket without
//! passing through kiln, and the answer is read back into a [`reqwest::Response`] like
//! any other. On a registry that shares the machine's cores (a registry on loopback, the
//! common plain-HTTP case), every CPU-second the client does not spend copying is the
//! registry's to hash and write with.
//!
//! Only what [`applies`] admits goes this way: a request with a file body, to an `http://`
//! URL, with no proxy configured in the environment (reqwest would honour one; this path
//! would not). TLS, proxies, bodies in memory and every other request stay with reqwest.
//! The caller decides whether the request carries credentials, as for every request.

use std::io::{Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Method, Url};

use kiln_image::blob::FileRange;

/// The variables reqwest takes a proxy for `http://` URLs from.
const PROXY_VARIABLES: [&str; 4] = ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"];
/// The largest answer head (status line and headers) read.
const HEAD_LIMIT: usize = 64 << 10;
/// The most `sendfile` is asked to move at once.
const SENDFILE_STEP: usize = 8 << 20;

/// Whether a request to `url` with a file body can be sent here.
pub(crate) fn applies(url: &Url) -> bool {
    url.scheme() == "http"
        && url.host_str().is_some()
        && PROXY_VARIABLES.iter().all(|v| std::env::var_os(v).is_none_or(|value| value.is_empty()))
}

/// How long to wait for the connection, and for any read or write on it to progress.
pub(crate) struct Timeouts {
    pub connect: Duration,
    pub io: Duration,
}

/// Sends `method url` with `headers` (and `authorization`, when the caller attaches it)
/// and the file range as its body, on a connection of its own, and returns the answer
/// with its body (at most `body_limit` bytes) read.
pub(crate) async fn send(
    method: Method,
    url: Url,
    headers: HeaderMap,
    authorization: Option<String>,
    file: FileRange,
    timeouts: Timeouts,
    body_limit: u64,
) -> std::io::Result<reqwest::Response> {
    tokio::task::spawn_blocking(move || {
        let mut socket = connect(&url, &timeouts)?;
        socket.write_all(&request_head(&method, &url, &headers, authorization.as_deref(), file.len))?;
        // A registry may answer before it has read the body (a refusal) and close: that
        // answer, when there is one, says more than the broken pipe.
        let sent = send_range(&socket, &file);
        let answer = match (sent, read_answer(&mut socket, body_limit)) {
            (Ok(()), answer) => answer?,
            (Err(_), Ok(answer)) if !answer.status().is_success() => answer,
            (Err(e), _) => return Err(e),
        };
        Ok(reqwest::Response::from(answer))
    })
    .await
    .map_err(std::io::Error::other)?
}

fn connect(url: &Url, timeouts: &Timeouts) -> std::io::Result<TcpStream> {
    let host = url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
    let port = url.port_or_known_default().unwrap_or(80);
    let mut last = None;
    for addr in (host, port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, timeouts.connect) {
            Ok(socket) => {
                socket.set_read_timeout(Some(timeouts.io))?;
                socket.set_write_timeout(Some(timeouts.io))?;
                socket.set_nodelay(true)?;
                return Ok(socket);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, format!("{host} has no address"))))
}

/// The request line and headers. The connection is closed after the answer, so nothing
/// that follows can be taken for part of it.
fn request_head(method: &Method, url: &Url, headers: &HeaderMap, authorization: Option<&str>, len: u64) -> Vec<u8> {
    let target = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    let host = match url.port() {
        Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_string(),
    };
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\n").into_bytes();
    let mut line = |name: &str, value: &[u8]| {
        head.extend_from_slice(name.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value);
        head.extend_from_slice(b"\r\n");
    };
    line("User-Agent", concat!("kiln/", env!("CARGO_PKG_VERSION")).as_bytes());
    for (name, value) in headers {
        if !matches!(name.as_str(), "host" | "content-length" | "connection" | "transfer-encoding" | "user-agent") {
            line(name.as_str(), value.as_bytes());
        }
    }
    if let Some(authorization) = authorization {
        line("Authorization", authorization.as_bytes());
    }
    line("Content-Length", len.to_string().as_bytes());
    line("Connection", b"close");
    head.extend_from_slice(b"\r\n");
    head
}

/// The file range onto the socket by `sendfile`, which moves page-cache pages without a
/// copy through user space.
fn send_range(socket: &TcpStream, file: &FileRange) -> std::io::Result<()> {
    let (mut at, end) = (file.offset, file.offset + file.len);
    let handle = file.open()?;
    while at < end {
        let want = (end - at).min(SENDFILE_STEP as u64) as usize;
        match rustix::fs::sendfile(socket, &*handle, Some(&mut at), want) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("{}: the file ends early", file.path.display()),
                ));
            }
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::AGAIN) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "timed out: the registry stopped reading the upload",
                ));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The answer's status, headers and body (by `Content-Length`, chunked, or up to the
/// close), its body never more than `body_limit` bytes.
fn read_answer(socket: &mut TcpStream, body_limit: u64) -> std::io::Result<http::Response<Vec<u8>>> {
    let invalid = |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("its answer {why}"));
    let mut buf = Vec::with_capacity(4096);
    let (head_len, answer, length, chunked) = loop {
        let mut chunk = [0u8; 4096];
        let n = read_some(socket, &mut chunk)?;
        if n == 0 {
            return Err(invalid("ended before its headers did"));
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Response::new(&mut headers);
        match parsed.parse(&buf).map_err(|e| invalid(&format!("is not HTTP ({e})")))? {
            httparse::Status::Complete(len) => {
                let status = parsed.code.ok_or_else(|| invalid("has no status"))?;
                // An interim answer (100 Continue) is skipped.
                if (100..200).contains(&status) {
                    buf.drain(..len);
                    continue;
                }
                let mut answer = http::Response::builder().status(status);
                let (mut length, mut chunked) = (None, false);
                for h in parsed.headers.iter() {
                    if h.name.eq_ignore_ascii_case("content-length") {
                        let text = std::str::from_utf8(h.value).ok();
                        length = Some(
                            text.and_then(|t| t.trim().parse::<u64>().ok())
                                .ok_or_else(|| invalid("has a bad Content-Length"))?,
                        );
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        chunked = h.value.eq_ignore_ascii_case(b"chunked");
                    }
                    answer = answer.header(h.name, h.value);
                }
                let answer = answer.body(()).map_err(|e| invalid(&format!("has a bad header ({e})")))?;
                break (len, answer, length, chunked);
            }
            httparse::Status::Partial if buf.len() > HEAD_LIMIT => {
                return Err(invalid(&format!("has more than {HEAD_LIMIT} bytes of headers")));
            }
            httparse::Status::Partial => {}
        }
    };
    if length.is_some_and(|n| n > body_limit) {
        return Err(invalid(&format!("is larger than {body_limit} bytes")));
    }
    let mut raw = buf.split_off(head_len);
    let wanted = if chunked { None } else { length };
    // Read until the declared length, or the close.
    while wanted.is_none_or(|n| (raw.len() as u64) < n) {
        if raw.len() as u64 > body_limit + HEAD_LIMIT as u64 {
            return Err(invalid(&format!("is larger than {body_limit} bytes")));
        }
        let mut chunk = [0u8; 16 << 10];
        let n = read_some(socket, &mut chunk)?;
        if n == 0 {
            if wanted.is_some() {
                return Err(invalid("ended before its body did"));
            }
            break;
        }
        raw.extend_from_slice(&chunk[..n]);
        if chunked && dechunk(&raw).is_some() {
            break;
        }
    }
    let mut body = if chunked { dechunk(&raw).ok_or_else(|| invalid("has a broken chunked body"))? } else { raw };
    if let Some(n) = wanted {
        body.truncate(n as usize);
    }
    if body.len() as u64 > body_limit {
        return Err(invalid(&format!("is larger than {body_limit} bytes")));
    }
    let (parts, ()) = answer.into_parts();
    Ok(http::Response::from_parts(parts, body))
}

fn read_some(socket: &mut TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match socket.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "timed out waiting for the registry to answer",
                ));
            }
            other => return other,
        }
    }
}

/// A whole chunked body decoded, or `None` while its last chunk has not arrived.
fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&raw[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        if raw.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};
    use std::sync::Arc;

    use super::*;

    fn range(content: &[u8], offset: u64) -> FileRange {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(content).unwrap();
        FileRange::of_open(std::path::Path::new("layer"), Arc::new(f), offset, content.len() as u64 - offset)
    }

    /// A one-request server: returns what it received and answers with `answer`.
    fn server(answer: &'static [u8]) -> (Url, std::thread::JoinHandle<Vec<u8>>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url =
            Url::parse(&format!("http://{}/v2/app/blobs/uploads/1?state=x", listener.local_addr().unwrap())).unwrap();
        let handle = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 65536];
            // The head, then as many bytes as it announced.
            loop {
                let n = s.read(&mut buf).unwrap();
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len: usize =
                        text.lines().find_map(|l| l.strip_prefix("Content-Length: ")).unwrap().trim().parse().unwrap();
                    if got.len() >= end + 4 + len {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            s.write_all(answer).unwrap();
            got
        });
        (url, handle)
    }

    fn timeouts() -> Timeouts {
        Timeouts { connect: Duration::from_secs(5), io: Duration::from_secs(5) }
    }

    #[tokio::test]
    async fn the_range_goes_after_the_head_and_the_answer_comes_back() {
        let (url, server) =
            server(b"HTTP/1.1 202 Accepted\r\nLocation: /v2/app/blobs/uploads/2\r\nContent-Length: 0\r\n\r\n");
        let mut headers = HeaderMap::new();
        headers.insert("content-range", "0-4".parse().unwrap());
        let resp =
            send(Method::PATCH, url, headers, Some("Basic abc".into()), range(b"skip:hello", 5), timeouts(), 1024)
                .await
                .unwrap();
        assert_eq!(resp.status(), 202);
        assert_eq!(resp.headers()["location"], "/v2/app/blobs/uploads/2");
        let got = String::from_utf8(server.join().unwrap()).unwrap();
        assert!(got.starts_with("PATCH /v2/app/blobs/uploads/1?state=x HTTP/1.1\r\nHost: 127.0.0.1:"), "{got}");
        assert!(
            got.contains("\r\ncontent-range: 0-4\r\n") && got.contains("\r\nAuthorization: Basic abc\r\n"),
            "{got}"
        );
        assert!(got.contains("\r\nContent-Length: 5\r\n") && got.ends_with("\r\n\r\nhello"), "{got}");
    }

    #[tokio::test]
    async fn error_bodies_are_read_by_length_or_chunks_and_capped() {
        let (url, _s) = server(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 14\r\n\r\nDIGEST_INVALID");
        let resp = send(Method::PATCH, url, HeaderMap::new(), None, range(b"x", 0), timeouts(), 1024).await.unwrap();
        assert_eq!((resp.status().as_u16(), resp.text().await.unwrap()), (400, "DIGEST_INVALID".to_string()));

        let (url, _s) =
            server(b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbad \r\n4\r\nday!\r\n0\r\n\r\n");
        let resp = send(Method::PATCH, url, HeaderMap::new(), None, range(b"x", 0), timeouts(), 1024).await.unwrap();
        assert_eq!(resp.text().await.unwrap(), "bad day!");

        let (url, _s) = server(b"HTTP/1.1 500 Oops\r\nContent-Length: 4096\r\n\r\n");
        let e = send(Method::PATCH, url, HeaderMap::new(), None, range(b"x", 0), timeouts(), 1024).await.unwrap_err();
        assert!(e.to_string().contains("larger than 1024 bytes"), "{e}");
    }

    #[test]
    fn only_plain_http_without_a_proxy_goes_this_way() {
        assert!(!applies(&Url::parse("https://registry.example/v2/").unwrap()));
        // The test environment sets no proxy for http (the dev env's registries are direct).
        if PROXY_VARIABLES.iter().all(|v| std::env::var_os(v).is_none()) {
            assert!(applies(&Url::parse("http://127.0.0.1:5000/v2/").unwrap()));
        }
    }
}
