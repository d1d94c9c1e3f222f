//! A loopback stand-in for what an Azure login talks to (no emulator exists): the instance
//! metadata service's token endpoint, and ACR's auth front (the `/v2/` challenge naming a
//! tenant, `/oauth2/exchange` turning an AAD token into a refresh token, `/oauth2/token`
//! turning the refresh token into an access token). Registry requests with a valid access
//! token go on to a real registry behind it. It checks what a real service would refuse
//! (the `Metadata: true` header, the resource, the tenant, the tokens) and records the
//! requests it saw; it is not Azure, and cannot say whether Azure would accept the rest.

use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};

use crate::loopback::LoopbackServer;
use crate::token_issuer::percent_decode;

/// What the stand-in expects and hands out.
#[derive(Debug, Clone)]
pub struct AcrExpectations {
    pub tenant: String,
    /// The managed identity's client id, when a user-assigned one is expected.
    pub client_id: Option<String>,
    /// The scope resource the AAD token must be for.
    pub resource: String,
}

pub const AAD_TOKEN: &str = "aad-token-for-kiln";
pub const REFRESH_TOKEN: &str = "acr-refresh-token-for-kiln";
const ACCESS_TOKEN: &str = "acr-access-token-for-kiln";

struct State {
    expect: AcrExpectations,
    upstream: String,
    seen: Mutex<Vec<String>>,
    client: reqwest::Client,
}

pub struct AcrStandIn {
    /// `127.0.0.1:PORT`: both the registry's host and the metadata service's.
    pub addr: String,
    state: Arc<State>,
    _server: LoopbackServer,
}

impl AcrStandIn {
    /// Starts one in front of the plain-HTTP registry at `upstream`.
    pub fn start(upstream: &str, expect: AcrExpectations) -> Self {
        let state = Arc::new(State {
            expect,
            upstream: upstream.to_string(),
            seen: Mutex::new(Vec::new()),
            client: crate::faultproxy::forwarding_client(),
        });
        let server =
            LoopbackServer::start(state.clone(), |state: Arc<State>, req| async move { Ok(state.answer(req).await) });
        AcrStandIn { addr: server.addr.clone(), state, _server: server }
    }

    /// "METHOD path" of every request, in order.
    pub fn seen(&self) -> Vec<String> {
        self.state.seen.lock().unwrap().clone()
    }
}

fn reply(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp
}

/// A value of a query string or form body, decoded.
fn query_value(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|kv| kv.strip_prefix(&format!("{key}="))).map(percent_decode)
}

impl State {
    fn challenge(&self, host: &str) -> Response<Full<Bytes>> {
        let mut resp = reply(StatusCode::UNAUTHORIZED, "{\"errors\":[{\"code\":\"UNAUTHORIZED\"}]}".into());
        let value =
            format!(r#"Bearer realm="http://{host}/oauth2/token?tenant={}",service="{host}""#, self.expect.tenant);
        resp.headers_mut().insert("www-authenticate", value.parse().unwrap());
        resp
    }

    async fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or_default().to_string();
        self.seen.lock().unwrap().push(format!("{} {path}", req.method()));
        let host = req.headers().get("host").and_then(|h| h.to_str().ok()).unwrap_or_default().to_string();
        let auth = req.headers().get("authorization").and_then(|h| h.to_str().ok()).unwrap_or_default().to_string();
        match path.as_str() {
            "/metadata/identity/oauth2/token" => {
                if req.headers().get("metadata").and_then(|h| h.to_str().ok()) != Some("true") {
                    return reply(
                        StatusCode::BAD_REQUEST,
                        r#"{"error":"invalid_request","error_description":"Required metadata header not specified"}"#
                            .into(),
                    );
                }
                if query_value(&query, "resource").as_deref() != Some(&self.expect.resource) {
                    return reply(StatusCode::BAD_REQUEST, r#"{"error":"invalid_resource"}"#.into());
                }
                if query_value(&query, "client_id") != self.expect.client_id {
                    return reply(
                        StatusCode::BAD_REQUEST,
                        r#"{"error":"invalid_request","error_description":"Identity not found"}"#.into(),
                    );
                }
                reply(StatusCode::OK, format!(r#"{{"access_token":"{AAD_TOKEN}","token_type":"Bearer"}}"#))
            }
            "/oauth2/exchange" => {
                let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                let form = String::from_utf8_lossy(&body).into_owned();
                let ok = query_value(&form, "grant_type").as_deref() == Some("access_token")
                    && query_value(&form, "access_token").as_deref() == Some(AAD_TOKEN)
                    && query_value(&form, "tenant").as_deref() == Some(&self.expect.tenant)
                    && query_value(&form, "service").as_deref() == Some(&host);
                if !ok {
                    return reply(
                        StatusCode::UNAUTHORIZED,
                        format!(r#"{{"errors":[{{"message":"bad exchange: {form}"}}]}}"#),
                    );
                }
                reply(StatusCode::OK, format!(r#"{{"refresh_token":"{REFRESH_TOKEN}"}}"#))
            }
            "/oauth2/token" => {
                use base64::Engine as _;
                let expected = base64::engine::general_purpose::STANDARD
                    .encode(format!("00000000-0000-0000-0000-000000000000:{REFRESH_TOKEN}"));
                if auth != format!("Basic {expected}") {
                    return reply(StatusCode::UNAUTHORIZED, r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#.into());
                }
                reply(StatusCode::OK, format!(r#"{{"access_token":"{ACCESS_TOKEN}"}}"#))
            }
            p if p.starts_with("/v2/") => {
                if auth != format!("Bearer {ACCESS_TOKEN}") {
                    return self.challenge(&host);
                }
                self.forward(req, &path, &query).await
            }
            _ => reply(StatusCode::NOT_FOUND, String::new()),
        }
    }

    async fn forward(&self, req: Request<Incoming>, path: &str, query: &str) -> Response<Full<Bytes>> {
        // The Host header goes along, so upload locations point back here.
        let (parts, body) = req.into_parts();
        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let url = if query.is_empty() {
            format!("http://{}{path}", self.upstream)
        } else {
            format!("http://{}{path}?{query}", self.upstream)
        };
        let mut forward = self.client.request(parts.method.clone(), url).body(body);
        for (name, value) in parts.headers.iter().filter(|(n, _)| *n != "authorization") {
            forward = forward.header(name, value);
        }
        let Ok(upstream) = forward.send().await else { return reply(StatusCode::BAD_GATEWAY, String::new()) };
        let (status, headers) = (upstream.status(), upstream.headers().clone());
        let bytes = upstream.bytes().await.unwrap_or_default();
        let mut resp = reply(status, String::new());
        *resp.body_mut() = Full::new(bytes);
        *resp.headers_mut() = headers;
        resp
    }
}
