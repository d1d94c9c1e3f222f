//! A loopback stand-in for EC2's instance metadata service, IMDSv2 only (no emulator of it
//! exists here): a session token from `PUT /latest/api/token`, then the instance role's
//! name and its credentials, each refused without that token. It models the three calls
//! AWS's SDKs make; it is not EC2.

use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};

use crate::loopback::LoopbackServer;

const TOKEN: &str = "imds-session-token-for-kiln";
pub const ROLE: &str = "kiln-instance-role";

pub struct ImdsStandIn {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    _server: LoopbackServer,
}

impl ImdsStandIn {
    /// Serves `credentials` (the JSON document EC2 gives for a role) for [`ROLE`].
    pub fn start(credentials: &str) -> Self {
        let credentials: Arc<str> = credentials.into();
        let server =
            LoopbackServer::start(
                credentials,
                |credentials: Arc<str>, req| async move { Ok(answer(&req, &credentials)) },
            );
        ImdsStandIn { url: format!("http://{}", server.addr), _server: server }
    }
}

fn reply(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp
}

fn answer(req: &Request<Incoming>, credentials: &str) -> Response<Full<Bytes>> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let path = req.uri().path();
    if path == "/latest/api/token" {
        if req.method() != Method::PUT || header("x-aws-ec2-metadata-token-ttl-seconds").is_empty() {
            return reply(StatusCode::BAD_REQUEST, "");
        }
        return reply(StatusCode::OK, TOKEN);
    }
    if header("x-aws-ec2-metadata-token") != TOKEN {
        return reply(StatusCode::UNAUTHORIZED, "");
    }
    match path.strip_prefix("/latest/meta-data/iam/security-credentials/") {
        Some("") => reply(StatusCode::OK, ROLE),
        Some(role) if role == ROLE => reply(StatusCode::OK, credentials),
        _ => reply(StatusCode::NOT_FOUND, ""),
    }
}
