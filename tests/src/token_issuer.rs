//! A token issuer for the token-auth registry: the `auth: token` flow Docker Hub,
//! GHCR and Harbor use. Clients present basic credentials to `GET /token?service=…&scope=…`
//! and get an ES256 JWT the registry verifies against the signer certificate; with
//! `offline_token=true` also a refresh token, which `POST /token` (the OAuth2 refresh-token
//! grant, as distribution's token server takes it) exchanges for a token later.
//! Anonymous clients get a token that grants nothing, so the registry refuses them.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::DecodePrivateKey as _;

use crate::certs;

/// The names the registry config and the issuer must agree on.
pub const ISSUER: &str = "kiln-dev-token-issuer";
pub const SERVICE: &str = "kiln-dev-registry";

struct Issuer {
    key: SigningKey,
    cert_der_b64: String,
    /// Accepted usernames and passwords.
    users: Vec<(String, String)>,
}

/// Serves tokens over HTTPS on `addr` until the process is stopped, to any of `users`
/// (username, password) and, with nothing granted, to anonymous callers.
pub async fn serve(addr: SocketAddr, cert_dir: &Path, users: Vec<(String, String)>) -> anyhow::Result<()> {
    let signer_pem = std::fs::read_to_string(cert_dir.join(certs::SIGNER_CERT))?;
    let signer_der = rustls_pemfile::certs(&mut signer_pem.as_bytes()).next().context("no signer certificate")??;
    let key_pem = std::fs::read_to_string(cert_dir.join(certs::SIGNER_KEY))?;
    let issuer = Arc::new(Issuer {
        key: SigningKey::from_pkcs8_pem(&key_pem).context("signer key")?,
        cert_der_b64: STANDARD.encode(signer_der.as_ref()),
        users,
    });

    let tls = tls_acceptor(cert_dir)?;
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
    eprintln!("token issuer listening on https://{addr}/token");
    loop {
        let (tcp, _) = listener.accept().await?;
        let tls = tls.clone();
        let issuer = issuer.clone();
        tokio::spawn(async move {
            let Ok(stream) = tls.accept(tcp).await else { return };
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let issuer = issuer.clone();
                async move {
                    use http_body_util::BodyExt as _;
                    let (parts, body) = req.into_parts();
                    // A form is a few hundred bytes; a larger one is refused, not read.
                    let limited = http_body_util::Limited::new(body, 64 << 10);
                    let answer = match limited.collect().await {
                        Ok(body) => issuer.answer(&Request::from_parts(parts, ()), &body.to_bytes()),
                        Err(_) => reply(StatusCode::PAYLOAD_TOO_LARGE, "{\"error\":\"body too large\"}".into()),
                    };
                    Ok::<_, std::convert::Infallible>(answer)
                }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
        });
    }
}

pub fn tls_acceptor(cert_dir: &Path) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    let chain = rustls_pemfile::certs(&mut std::fs::read(cert_dir.join(certs::SERVER_CERT))?.as_slice())
        .collect::<Result<Vec<_>, _>>()?;
    let key = rustls_pemfile::private_key(&mut std::fs::read(cert_dir.join(certs::SERVER_KEY))?.as_slice())?
        .context("no server key")?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

impl Issuer {
    fn answer(&self, req: &Request<()>, body: &[u8]) -> Response<Full<Bytes>> {
        if req.uri().path() != "/token" {
            return reply(StatusCode::NOT_FOUND, "{\"error\":\"not found\"}".into());
        }
        if req.method() == hyper::Method::POST {
            return self.refresh(body);
        }
        let basic = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b| STANDARD.decode(b).ok())
            .and_then(|b| String::from_utf8(b).ok());
        let subject = match basic {
            Some(pair) if self.users.iter().any(|(u, p)| pair == format!("{u}:{p}")) => {
                pair.split_once(':').map(|(user, _)| user.to_string())
            }
            Some(_) => return reply(StatusCode::UNAUTHORIZED, "{\"details\":\"wrong username or password\"}".into()),
            None => None,
        };
        let query = req.uri().query().unwrap_or("");
        let scopes: Vec<String> =
            query.split('&').filter_map(|kv| kv.strip_prefix("scope=")).map(percent_decode).collect();
        // Authenticated users get what they asked for; anonymous ones nothing.
        let access: Vec<serde_json::Value> =
            if subject.is_some() { scopes.iter().filter_map(|s| grant(s)).collect() } else { vec![] };
        let token = self.sign(subject.as_deref().unwrap_or(""), access);
        let mut body = serde_json::json!({ "token": token, "access_token": token, "expires_in": 300 });
        // What `docker login` asks for to keep an identity token instead of the password.
        if let Some(user) = &subject
            && query.split('&').any(|kv| kv == "offline_token=true")
        {
            body["refresh_token"] = self.refresh_token_of(user).into();
        }
        reply(StatusCode::OK, body.to_string())
    }

    /// A user's refresh token: the same for as long as the signing key is.
    fn refresh_token_of(&self, user: &str) -> String {
        let signature: Signature = self.key.sign(format!("refresh token of {user}").as_bytes());
        format!("{}.{}", URL_SAFE_NO_PAD.encode(user), URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }

    /// The OAuth2 refresh-token grant (`POST /token`, a form), as Docker's distribution
    /// token server answers it: a token for the scopes asked, to the refresh token's user.
    fn refresh(&self, body: &[u8]) -> Response<Full<Bytes>> {
        let form = String::from_utf8_lossy(body);
        let field =
            |name: &str| form.split('&').find_map(|kv| kv.strip_prefix(&format!("{name}="))).map(percent_decode);
        if field("grant_type").as_deref() != Some("refresh_token") {
            return reply(StatusCode::BAD_REQUEST, "{\"error\":\"unsupported_grant_type\"}".into());
        }
        let user = field("refresh_token").and_then(|token| {
            let user = URL_SAFE_NO_PAD.decode(token.split('.').next()?).ok()?;
            let user = String::from_utf8(user).ok()?;
            (self.users.iter().any(|(u, _)| *u == user) && self.refresh_token_of(&user) == token).then_some(user)
        });
        let Some(user) = user else {
            return reply(StatusCode::UNAUTHORIZED, "{\"error\":\"invalid_grant\"}".into());
        };
        let scope = field("scope").unwrap_or_default();
        let access: Vec<serde_json::Value> = scope.split(' ').filter_map(grant).collect();
        let token = self.sign(&user, access);
        reply(StatusCode::OK, serde_json::json!({ "access_token": token, "expires_in": 300 }).to_string())
    }

    fn sign(&self, subject: &str, access: Vec<serde_json::Value>) -> String {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let header = serde_json::json!({ "typ": "JWT", "alg": "ES256", "x5c": [self.cert_der_b64] });
        let claims = serde_json::json!({
            "iss": ISSUER, "sub": subject, "aud": SERVICE,
            "exp": now + 300, "nbf": now - 10, "iat": now,
            "jti": format!("{now}-{}", std::process::id()),
            "access": access,
        });
        let signing_input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let signature: Signature = self.key.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }
}

/// `repository:team/app:pull,push` → an access claim. The name is everything between the
/// first and the last colon: a Notary GUN names its registry, `127.0.0.1:5000/team/app`.
fn grant(scope: &str) -> Option<serde_json::Value> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    Some(serde_json::json!({ "type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>() }))
}

/// Form and query-string decoding: `%XX` and `+` for a space.
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn reply(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_decode_and_grant() {
        assert_eq!(percent_decode("repository%3Ateam%2Fapp%3Apull%2Cpush"), "repository:team/app:pull,push");
        let g = grant("repository:team/app:pull,push").unwrap();
        assert_eq!(g["actions"], serde_json::json!(["pull", "push"]));
        assert_eq!(g["name"], "team/app");
        let gun = grant("repository:127.0.0.1:5000/team/app:pull").unwrap();
        assert_eq!(gun["name"], "127.0.0.1:5000/team/app");
        assert_eq!(gun["actions"], serde_json::json!(["pull"]));
        assert!(grant("repository").is_none());
    }
}
