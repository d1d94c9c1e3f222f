//! Registry authentication: parsing `WWW-Authenticate` challenges and fetching
//! bearer tokens from the token service they name (the flow of Docker Hub, GHCR, Harbor).

use std::fmt;

use reqwest::StatusCode;

use crate::call::Access;
use crate::client::Client;
use crate::error::{Failure, RegistryError};

/// A username and password for a registry. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// The username Docker gives an identity token (an OAuth2 refresh token that `docker login`
/// or `az acr login` stored as `identitytoken`, or a credential helper returned): the
/// password is then the token, which is exchanged at the realm, never sent as Basic auth.
pub const IDENTITY_TOKEN_USERNAME: &str = "<token>";

impl Credentials {
    /// The identity token these credentials are, if they are one.
    pub fn identity_token(&self) -> Option<&str> {
        (self.username == IDENTITY_TOKEN_USERNAME).then_some(self.password.as_str())
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).field("password", &"<redacted>").finish()
    }
}

/// What a registry asked for in its `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer { realm: String, service: Option<String> },
}

impl Challenge {
    /// Parses a `WWW-Authenticate` value; `None` for schemes we do not speak.
    pub fn parse(header: &str) -> Option<Self> {
        let header = header.trim();
        let (scheme, rest) = header.split_once(char::is_whitespace).unwrap_or((header, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return Some(Challenge::Basic);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let params = parse_params(rest);
        let get = |key: &str| params.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v.clone());
        Some(Challenge::Bearer { realm: get("realm")?, service: get("service") })
    }
}

/// Splits `key="value", key2=value2` into pairs, honouring quotes and backslash escapes.
fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=')).collect();
        if chars.next() != Some('=') {
            return out;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = std::iter::from_fn(|| chars.next_if(|c| *c != ',')).collect::<String>().trim().to_string();
        }
        out.push((key.trim().to_string(), value));
    }
}

/// What a bearer token is asked for: the challenge's realm and service, and the scopes.
pub(crate) struct TokenRequest<'a> {
    pub realm: reqwest::Url,
    pub service: Option<&'a str>,
    pub scopes: &'a [String],
}

/// Why no token came.
pub(crate) enum TokenError {
    /// The token service refused the credentials (401 or 403).
    Refused(reqwest::StatusCode),
    /// Anything else, said in one line.
    Failed(String),
}

/// Fetches a bearer token: `GET realm?scope=…&service=…`, with the basic credentials
/// (`basic`, already base64) if there are any. The realm was checked by the caller
/// ([`crate::scope::for_realm`]) before it gets credentials; the answer is read within
/// [`crate::body::SMALL`].
pub(crate) async fn fetch_token(
    http: &reqwest::Client,
    request: &TokenRequest<'_>,
    basic: Option<&str>,
) -> Result<String, TokenError> {
    let mut req = http.get(request.realm.clone());
    for scope in request.scopes {
        req = req.query(&[("scope", scope.as_str())]);
    }
    if let Some(service) = request.service {
        req = req.query(&[("service", service)]);
    }
    if let Some(b) = basic {
        req = req.header(reqwest::header::AUTHORIZATION, format!("Basic {b}"));
    }
    let resp = req.send().await.map_err(|e| TokenError::Failed(crate::error_chain(&e)))?;
    token_from(resp).await
}

/// Exchanges an identity token for a bearer token, as Docker and go-containerregistry do:
/// `POST realm` with the form `grant_type=refresh_token`, the token, the service, the
/// scopes (space-separated) and a client id. Errors as [`fetch_token`]'s.
pub(crate) async fn refresh_token(
    http: &reqwest::Client,
    request: &TokenRequest<'_>,
    identity_token: &str,
) -> Result<String, TokenError> {
    let scope = request.scopes.join(" ");
    let mut form = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", identity_token),
        ("client_id", "kiln"),
        ("scope", scope.as_str()),
    ];
    if let Some(service) = request.service {
        form.push(("service", service));
    }
    let resp = http
        .post(request.realm.clone())
        .form(&form)
        .send()
        .await
        .map_err(|e| TokenError::Failed(crate::error_chain(&e)))?;
    token_from(resp).await
}

/// The token in a token service's answer.
async fn token_from(resp: reqwest::Response) -> Result<String, TokenError> {
    let status = resp.status();
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        return Err(TokenError::Refused(status));
    }
    if !status.is_success() {
        return Err(TokenError::Failed(format!("answered {status}")));
    }
    let text = crate::body::text_capped(resp, crate::body::SMALL).await.map_err(TokenError::Failed)?;
    let token: TokenResponse = serde_json::from_str(&text)
        .map_err(|e| TokenError::Failed(format!("unreadable answer: {}", crate::error_chain(&e))))?;
    token.into_token().ok_or_else(|| TokenError::Failed("answer has no token".into()))
}

/// The token service's answer; registries use either field name.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct TokenResponse {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
}

impl TokenResponse {
    pub(crate) fn into_token(self) -> Option<String> {
        self.token.filter(|t| !t.is_empty()).or(self.access_token.filter(|t| !t.is_empty()))
    }
}

/// The challenge answered: Basic from the credentials, or a bearer token for the scopes
/// `access` needs, fetched from the realm (with an identity token, its refresh-token
/// exchange) once the realm passed [`crate::scope::for_realm`].
impl Client {
    /// Turns a challenge into an `Authorization` value for `access`.
    pub(crate) async fn authorize(&self, challenge: &Challenge, access: &Access) -> Result<String, RegistryError> {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into())
            })
        );
    }

    #[test]
    fn basic_and_unknown() {
        assert_eq!(Challenge::parse(r#"Basic realm="Registry Realm""#), Some(Challenge::Basic));
        assert_eq!(Challenge::parse("Negotiate abc"), None);
        assert_eq!(Challenge::parse("Bearer service=x"), None, "a bearer challenge needs a realm");
    }

    #[test]
    fn escaped_quotes_and_unquoted_values() {
        let p = parse_params(r#"realm="a\"b", service=plain , x="y""#);
        assert_eq!(
            p,
            vec![("realm".into(), "a\"b".into()), ("service".into(), "plain".into()), ("x".into(), "y".into())]
        );
    }

    #[test]
    fn token_answers_use_either_field_and_skip_empty_ones() {
        let answer = |json: &str| serde_json::from_str::<TokenResponse>(json).unwrap().into_token();
        assert_eq!(answer(r#"{"token":"t1"}"#).as_deref(), Some("t1"));
        assert_eq!(answer(r#"{"access_token":"a1"}"#).as_deref(), Some("a1"));
        assert_eq!(answer(r#"{"token":"t1","access_token":"a1"}"#).as_deref(), Some("t1"), "token first");
        assert_eq!(answer(r#"{"token":"","access_token":"a1"}"#).as_deref(), Some("a1"), "an empty token is none");
        assert_eq!(answer(r#"{"token":"t1","access_token":""}"#).as_deref(), Some("t1"));
        assert_eq!(answer(r#"{"token":"","access_token":""}"#), None);
        assert_eq!(answer(r#"{}"#), None);
    }

    #[test]
    fn debug_hides_password() {
        let c = Credentials { username: "robot-user".into(), password: "hunter2".into() };
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        // Still useful in a log: who, and that a password is there.
        assert!(shown.contains("robot-user") && shown.contains("<redacted>"), "{shown}");
    }
}
