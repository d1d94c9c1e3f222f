//! Amazon ECR logins: AWS credentials found the way AWS's SDKs find them, roles assumed
//! through STS, and ECR's `GetAuthorizationToken` turned into a registry username and
//! password. Requests are signed here (`sigv4`) and sent with reqwest: the few calls kiln
//! needs do not justify the AWS SDK's compile time.
//!
//! Credentials, first found wins: the ones given (`aws_access_key_id`…); the environment
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`); a web identity
//! token (`AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`, as on EKS); the shared files
//! (`AWS_SHARED_CREDENTIALS_FILE` or `~/.aws/credentials`, then `AWS_CONFIG_FILE` or
//! `~/.aws/config`, profile `AWS_PROFILE` or `default`, static keys only); ECS container
//! credentials (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` or `_FULL_URI`); the EC2 instance
//! metadata service, IMDSv2 (unless `AWS_EC2_METADATA_DISABLED=true`). Endpoints follow
//! `AWS_ENDPOINT_URL_ECR`, `AWS_ENDPOINT_URL_STS`, `AWS_ENDPOINT_URL` and
//! `AWS_EC2_METADATA_SERVICE_ENDPOINT` when set.

pub mod sigv4;

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;

use crate::auth::Credentials;

/// An AWS access key, possibly temporary. `Debug` shows only the key id.
#[derive(Clone, PartialEq, Eq)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    /// When temporary credentials expire (ISO 8601, UTC), if known.
    pub expires: Option<String>,
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsCredentials").field("access_key_id", &self.access_key_id).finish_non_exhaustive()
    }
}

/// What an ECR login needs.
#[derive(Debug, Clone, Default)]
pub struct EcrSettings {
    pub region: String,
    /// Credentials given outright; otherwise the default chain.
    pub credentials: Option<AwsCredentials>,
    /// Roles assumed in order, each with the credentials the previous one gave.
    pub role_arns: Vec<String>,
    /// Another account's registry (`aws_ecr_registry_id`).
    pub registry_id: Option<String>,
}

/// A registry login from ECR.
#[derive(Debug, Clone)]
pub struct EcrLogin {
    pub credentials: Credentials,
    /// `ACCOUNT.dkr.ecr.REGION.amazonaws.com`, from ECR's answer.
    pub registry: String,
}

/// What went wrong getting an ECR login. Messages never hold secrets.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    #[error(
        "no AWS credentials found (tried {0}); set aws_access_key_id and aws_secret_access_key, or give this task an AWS identity"
    )]
    NoCredentials(String),
    #[error("AWS credentials from {source_name}: {detail}")]
    Credentials { source_name: &'static str, detail: String },
    #[error("AWS credentials from {0} expired; refresh them")]
    Expired(&'static str),
    #[error("assuming role {role}: {detail}")]
    AssumeRole { role: String, detail: String },
    #[error("ECR GetAuthorizationToken in {region}: {detail}")]
    Ecr { region: String, detail: String },
}

use crate::Env;

/// Logs in to ECR: credentials, roles, then `GetAuthorizationToken`.
pub async fn ecr_login(settings: &EcrSettings, env: Env<'_>) -> Result<EcrLogin, AwsError> {
    let http = crate::client::api_client(Duration::from_secs(60))
        .map_err(|detail| AwsError::Credentials { source_name: "client", detail })?;
    let region = settings.region.as_str();
    let mut creds = match &settings.credentials {
        Some(c) => c.clone(),
        None => default_credentials(&http, region, env).await?,
    };
    for role in &settings.role_arns {
        creds = assume_role(&http, region, &creds, role, env).await?;
    }
    get_authorization_token(&http, settings, &creds, env).await
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Whether an ISO 8601 UTC time (`2024-05-01T12:00:00Z`, fractions allowed) has passed.
fn expired(iso: &str) -> bool {
    let digits: String = iso.chars().take(19).filter(char::is_ascii_digit).collect();
    if digits.len() != 14 || !iso.ends_with('Z') {
        return false; // not a form we can compare: let the service decide
    }
    let now = sigv4::amz_date(now());
    let now: String = now.chars().filter(char::is_ascii_digit).collect();
    digits <= now
}

fn endpoint(env: Env<'_>, service: &str, default: String) -> String {
    env(&format!("AWS_ENDPOINT_URL_{}", service.to_ascii_uppercase()))
        .or_else(|| env("AWS_ENDPOINT_URL"))
        .filter(|e| !e.is_empty())
        .unwrap_or(default)
        .trim_end_matches('/')
        .to_string()
}

/// A signed POST to an AWS API; the body of a 2xx answer, or the service's error in words.
async fn call(
    http: &reqwest::Client,
    url: &str,
    creds: Option<&AwsCredentials>,
    region: &str,
    service: &str,
    headers: &[(&str, &str)],
    body: String,
) -> Result<String, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("endpoint {url:?}: {e}"))?;
    let host = match parsed.port() {
        Some(port) => format!("{}:{port}", parsed.host_str().unwrap_or_default()),
        None => parsed.host_str().unwrap_or_default().to_string(),
    };
    let mut req = http.post(parsed.clone()).body(body.clone());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(creds) = creds {
        let signable = sigv4::Signable {
            method: "POST",
            host: &host,
            path: parsed.path(),
            query: &[],
            headers,
            body: body.as_bytes(),
        };
        for (k, v) in sigv4::sign(&signable, creds, region, service, &sigv4::amz_date(now())) {
            req = req.header(k, v);
        }
    }
    let resp = req.send().await.map_err(|e| format!("cannot reach {url}: {}", crate::error_chain(&e)))?;
    let status = resp.status();
    let text = crate::body::text_capped(resp, crate::body::SMALL).await?;
    if status.is_success() {
        return Ok(text);
    }
    Err(format!("{status}: {}", service_error(&text)))
}

/// The code and message of an AWS error answer (XML or JSON), or its start.
fn service_error(text: &str) -> String {
    if let Ok(json) = serde_json::from_str::<serde_json::Value>(text) {
        let code = json["__type"].as_str().unwrap_or_default().rsplit('#').next().unwrap_or_default();
        let message = json["message"].as_str().or(json["Message"].as_str()).unwrap_or_default();
        return format!("{code} {message}").trim().to_string();
    }
    match (xml_tag(text, "Code"), xml_tag(text, "Message")) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code,
        _ => text.chars().take(200).collect(),
    }
}

/// The text of the first `<tag>…</tag>`, XML entities for `&<>"'` decoded.
fn xml_tag(xml: &str, tag: &str) -> Option<String> {
    let start = xml.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = start + xml[start..].find(&format!("</{tag}>"))?;
    Some(
        xml[start..end]
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs.iter().map(|(k, v)| format!("{}={}", sigv4::encode(k), sigv4::encode(v))).collect::<Vec<_>>().join("&")
}

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded; charset=utf-8");

/// STS's answer to AssumeRole or AssumeRoleWithWebIdentity.
fn sts_credentials(xml: &str) -> Option<AwsCredentials> {
    Some(AwsCredentials {
        access_key_id: xml_tag(xml, "AccessKeyId")?,
        secret_access_key: xml_tag(xml, "SecretAccessKey")?,
        session_token: xml_tag(xml, "SessionToken"),
        expires: xml_tag(xml, "Expiration"),
    })
}

fn session_name() -> String {
    format!("kiln-{}", now())
}

async fn assume_role(
    http: &reqwest::Client,
    region: &str,
    creds: &AwsCredentials,
    role: &str,
    env: Env<'_>,
) -> Result<AwsCredentials, AwsError> {
    let url = endpoint(env, "sts", format!("https://sts.{region}.amazonaws.com"));
    let session = session_name();
    let body =
        form(&[("Action", "AssumeRole"), ("RoleArn", role), ("RoleSessionName", &session), ("Version", "2011-06-15")]);
    let fail = |detail: String| AwsError::AssumeRole { role: role.to_string(), detail };
    let xml = call(http, &format!("{url}/"), Some(creds), region, "sts", &[FORM], body).await.map_err(fail)?;
    sts_credentials(&xml).ok_or_else(|| fail("STS answered without credentials".into()))
}

async fn get_authorization_token(
    http: &reqwest::Client,
    settings: &EcrSettings,
    creds: &AwsCredentials,
    env: Env<'_>,
) -> Result<EcrLogin, AwsError> {
    let region = settings.region.as_str();
    let fail = |detail: String| AwsError::Ecr { region: region.to_string(), detail };
    let url = endpoint(env, "ecr", format!("https://api.ecr.{region}.amazonaws.com"));
    let body = match &settings.registry_id {
        Some(id) => serde_json::json!({ "registryIds": [id] }),
        None => serde_json::json!({}),
    };
    let headers = [
        ("content-type", "application/x-amz-json-1.1"),
        ("x-amz-target", "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken"),
    ];
    let text =
        call(http, &format!("{url}/"), Some(creds), region, "ecr", &headers, body.to_string()).await.map_err(fail)?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| fail(format!("unreadable answer: {e}")))?;
    let data = &json["authorizationData"][0];
    let token =
        data["authorizationToken"].as_str().ok_or_else(|| fail("no authorizationToken in the answer".into()))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| fail("the authorization token is not base64 text".into()))?;
    let (username, password) =
        decoded.split_once(':').ok_or_else(|| fail("the authorization token has no ':'".into()))?;
    let endpoint = data["proxyEndpoint"].as_str().unwrap_or_default();
    let registry =
        endpoint.trim_start_matches("https://").trim_start_matches("http://").trim_end_matches('/').to_string();
    if registry.is_empty() {
        return Err(fail("no proxyEndpoint in the answer".into()));
    }
    Ok(EcrLogin { credentials: Credentials { username: username.into(), password: password.into() }, registry })
}

/// The default credential chain (see the module's documentation).
async fn default_credentials(http: &reqwest::Client, region: &str, env: Env<'_>) -> Result<AwsCredentials, AwsError> {
    let set = |k: &str| env(k).filter(|v| !v.is_empty());
    if let (Some(id), Some(secret)) = (set("AWS_ACCESS_KEY_ID"), set("AWS_SECRET_ACCESS_KEY")) {
        return Ok(AwsCredentials {
            access_key_id: id,
            secret_access_key: secret,
            session_token: set("AWS_SESSION_TOKEN"),
            expires: None,
        });
    }
    if let (Some(file), Some(role)) = (set("AWS_WEB_IDENTITY_TOKEN_FILE"), set("AWS_ROLE_ARN")) {
        let source_name = "AWS_WEB_IDENTITY_TOKEN_FILE";
        let token = std::fs::read_to_string(&file)
            .map_err(|e| AwsError::Credentials { source_name, detail: format!("{file}: {e}") })?;
        let url = endpoint(env, "sts", format!("https://sts.{region}.amazonaws.com"));
        let session = set("AWS_ROLE_SESSION_NAME").unwrap_or_else(session_name);
        let body = form(&[
            ("Action", "AssumeRoleWithWebIdentity"),
            ("RoleArn", &role),
            ("RoleSessionName", &session),
            ("Version", "2011-06-15"),
            ("WebIdentityToken", token.trim()),
        ]);
        let fail = |detail: String| AwsError::AssumeRole { role: role.clone(), detail };
        let xml = call(http, &format!("{url}/"), None, region, "sts", &[FORM], body).await.map_err(fail)?;
        return sts_credentials(&xml).ok_or_else(|| fail("STS answered without credentials".into()));
    }
    if let Some(creds) = shared_files(env)? {
        return Ok(creds);
    }
    let mut tried = vec!["environment", "web identity", "shared credentials and config files"];
    if let Some(creds) = container_credentials(http, env).await? {
        return Ok(creds);
    }
    tried.push("ECS container credentials");
    if !set("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        if let Some(creds) = instance_credentials(http, env).await? {
            return Ok(creds);
        }
        tried.push("EC2 instance metadata");
    }
    Err(AwsError::NoCredentials(tried.join(", ")))
}

/// Static keys from `~/.aws/credentials` or `~/.aws/config` for the profile in use.
fn shared_files(env: Env<'_>) -> Result<Option<AwsCredentials>, AwsError> {
    let home = env("HOME").unwrap_or_default();
    let profile = env("AWS_PROFILE").filter(|p| !p.is_empty()).unwrap_or_else(|| "default".into());
    let files = [
        (env("AWS_SHARED_CREDENTIALS_FILE").unwrap_or_else(|| format!("{home}/.aws/credentials")), profile.clone()),
        (
            env("AWS_CONFIG_FILE").unwrap_or_else(|| format!("{home}/.aws/config")),
            if profile == "default" { profile.clone() } else { format!("profile {profile}") },
        ),
    ];
    for (path, section) in files {
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        let values = ini_section(&text, &section);
        let get = |k: &str| values.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
        match (get("aws_access_key_id"), get("aws_secret_access_key")) {
            (Some(id), Some(secret)) => {
                return Ok(Some(AwsCredentials {
                    access_key_id: id,
                    secret_access_key: secret,
                    session_token: get("aws_session_token"),
                    expires: None,
                }));
            }
            (Some(_), None) => {
                return Err(AwsError::Credentials {
                    source_name: "the shared files",
                    detail: format!("{path} [{section}] has aws_access_key_id but no aws_secret_access_key"),
                });
            }
            _ => {}
        }
    }
    Ok(None)
}

/// `key = value` pairs of `[section]` in an INI file.
fn ini_section(text: &str, section: &str) -> Vec<(String, String)> {
    let mut inside = false;
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.trim() == section;
        } else if inside && let Some((k, v)) = line.split_once('=') {
            out.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    out
}

/// The JSON the container and instance credential endpoints answer with.
fn endpoint_credentials(source_name: &'static str, text: &str) -> Result<AwsCredentials, AwsError> {
    let fail = |detail: String| AwsError::Credentials { source_name, detail };
    let json: serde_json::Value = serde_json::from_str(text).map_err(|e| fail(format!("unreadable answer: {e}")))?;
    let field = |k: &str| json[k].as_str().map(str::to_string);
    let creds = AwsCredentials {
        access_key_id: field("AccessKeyId").ok_or_else(|| fail("no AccessKeyId in the answer".into()))?,
        secret_access_key: field("SecretAccessKey").ok_or_else(|| fail("no SecretAccessKey in the answer".into()))?,
        session_token: field("Token"),
        expires: field("Expiration"),
    };
    if creds.expires.as_deref().is_some_and(expired) {
        return Err(AwsError::Expired(source_name));
    }
    Ok(creds)
}

async fn container_credentials(http: &reqwest::Client, env: Env<'_>) -> Result<Option<AwsCredentials>, AwsError> {
    const SOURCE: &str = "ECS container credentials";
    let url = match (env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"), env("AWS_CONTAINER_CREDENTIALS_FULL_URI")) {
        (Some(relative), _) if !relative.is_empty() => format!("http://169.254.170.2{relative}"),
        (_, Some(full)) if !full.is_empty() => full,
        _ => return Ok(None),
    };
    let fail = |detail: String| AwsError::Credentials { source_name: SOURCE, detail };
    let mut req = http.get(&url);
    let token = match env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") {
        Some(file) => Some(std::fs::read_to_string(&file).map_err(|e| fail(format!("{file}: {e}")))?),
        None => env("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
    };
    if let Some(token) = token {
        req = req.header("authorization", token.trim());
    }
    let resp = req.send().await.map_err(|e| fail(format!("{url}: {}", crate::error_chain(&e))))?;
    if !resp.status().is_success() {
        return Err(fail(format!("{url} answered {}", resp.status())));
    }
    let text = crate::body::text_capped(resp, crate::body::SMALL).await.map_err(fail)?;
    endpoint_credentials(SOURCE, &text).map(Some)
}

/// IMDSv2: a session token, the instance role's name, then its credentials. `None` when
/// no metadata service answers (not on EC2).
async fn instance_credentials(http: &reqwest::Client, env: Env<'_>) -> Result<Option<AwsCredentials>, AwsError> {
    const SOURCE: &str = "EC2 instance metadata";
    let base = env("AWS_EC2_METADATA_SERVICE_ENDPOINT")
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| "http://169.254.169.254".into());
    let base = base.trim_end_matches('/');
    let fail = |detail: String| AwsError::Credentials { source_name: SOURCE, detail };
    let quick = Duration::from_secs(2);
    let token = match http
        .put(format!("{base}/latest/api/token"))
        .header("x-aws-ec2-metadata-token-ttl-seconds", "300")
        .timeout(quick)
        .send()
        .await
    {
        Ok(resp) if resp.status().is_success() => {
            crate::body::text_capped(resp, crate::body::SMALL).await.map_err(fail)?
        }
        Ok(resp) => return Err(fail(format!("the token request answered {}", resp.status()))),
        Err(_) => return Ok(None),
    };
    let get = |path: String| {
        http.get(format!("{base}/latest/meta-data/iam/security-credentials/{path}"))
            .header("x-aws-ec2-metadata-token", token.clone())
            .timeout(quick)
            .send()
    };
    let resp = get(String::new()).await.map_err(|e| fail(crate::error_chain(&e)))?;
    if !resp.status().is_success() {
        return Err(fail(format!("no instance role ({})", resp.status())));
    }
    let roles = crate::body::text_capped(resp, crate::body::SMALL).await.map_err(fail)?;
    let role = roles.lines().next().unwrap_or_default().trim().to_string();
    if role.is_empty() {
        return Err(fail("the instance has no role".into()));
    }
    let resp = get(role.clone()).await.map_err(|e| fail(crate::error_chain(&e)))?;
    if !resp.status().is_success() {
        return Err(fail(format!("credentials of role {role} answered {}", resp.status())));
    }
    let text = crate::body::text_capped(resp, crate::body::SMALL).await.map_err(fail)?;
    endpoint_credentials(SOURCE, &text).map(Some)
}

/// The repository to use on ECR: `repository` as given when it names a registry host
/// (a full ECR address, or any other), else under `registry`.
pub fn ecr_repository(repository: &str, registry: &str) -> String {
    let first = repository.split('/').next().unwrap_or_default();
    let has_host = repository.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    if has_host { repository.to_string() } else { format!("{registry}/{repository}") }
}

/// The region of an ECR address (`ACCOUNT.dkr.ecr.REGION.amazonaws.com[.cn]/…`), if the
/// repository is one.
pub fn ecr_region(repository: &str) -> Option<&str> {
    let host = repository.split('/').next()?;
    let rest = host.split_once(".dkr.ecr.")?.1;
    let region = rest.strip_suffix(".amazonaws.com").or_else(|| rest.strip_suffix(".amazonaws.com.cn"))?;
    (!region.is_empty() && !region.contains('.')).then_some(region)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_of_ecr_addresses() {
        assert_eq!(ecr_region("123456789012.dkr.ecr.eu-west-1.amazonaws.com/app"), Some("eu-west-1"));
        assert_eq!(ecr_region("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/a/b"), Some("cn-north-1"));
        assert_eq!(ecr_region("app"), None);
        assert_eq!(ecr_region("registry.example.com/app"), None);
    }

    #[test]
    fn repositories_are_prefixed_once() {
        let ecr = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
        assert_eq!(ecr_repository("app", ecr), format!("{ecr}/app"));
        assert_eq!(ecr_repository("team/app", ecr), format!("{ecr}/team/app"));
        assert_eq!(ecr_repository(&format!("{ecr}/team/app"), ecr), format!("{ecr}/team/app"));
        assert_eq!(ecr_repository("127.0.0.1:5000/app", ecr), "127.0.0.1:5000/app");
    }

    #[test]
    fn errors_and_files_are_read() {
        let xml =
            "<ErrorResponse><Error><Code>AccessDenied</Code><Message>not &amp; never</Message></Error></ErrorResponse>";
        assert_eq!(service_error(xml), "AccessDenied: not & never");
        let json = r#"{"__type":"com.amazon#InvalidSignatureException","message":"bad"}"#;
        assert_eq!(service_error(json), "InvalidSignatureException bad");
        let ini = "[default]\naws_access_key_id = A\n[profile ci]\naws_access_key_id=B\naws_secret_access_key = S\n";
        assert_eq!(
            ini_section(ini, "profile ci"),
            [("aws_access_key_id".into(), "B".into()), ("aws_secret_access_key".into(), "S".into())]
        );
        assert!(expired("2015-01-01T00:00:00Z"));
        assert!(!expired("2999-01-01T00:00:00.000Z"));
        assert!(!expired("soon"));
    }
}
