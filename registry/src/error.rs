//! What can go wrong talking to a registry, each said so the user knows what to do, and
//! never with a credential in it; a transport error and its causes on one line.

use reqwest::StatusCode;

/// What can go wrong talking to a registry. Messages never contain credentials.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("ca_certs[{index}] is not a PEM certificate: {detail}")]
    BadCaCert { index: usize, detail: String },
    #[error("the client certificate and key are unusable: {0}")]
    BadClientCert(String),
    #[error("cannot reach registry {registry}: {detail}")]
    Unreachable { registry: String, detail: String },
    #[error(
        "{0} answered 404 for /v2/: it does not serve the registry API there; check the repository's host \
         (a registry's own path prefix goes after the host, as in registry.example.com/prefix/app)"
    )]
    NotARegistry(String),
    #[error("registry {registry} refused access to {repository} ({status}): {hint}")]
    Unauthorized { registry: String, repository: String, status: StatusCode, hint: &'static str },
    #[error("token service {realm} failed: {detail}")]
    Token { realm: String, detail: String },
    #[error("registry {registry} answered {status} for {what}{body}{}", status_hint(*.status))]
    Status { registry: String, what: String, status: StatusCode, body: String },
    #[error("registry {registry} sent {what} with digest {actual}, expected {expected}")]
    DigestMismatch { registry: String, what: String, expected: String, actual: String },
    #[error("{what} from registry {registry} is larger than {limit} bytes")]
    TooLarge { registry: String, what: String, limit: u64 },
    #[error("registry {registry} pointed {what} at {url}, which kiln refuses: {why}")]
    UnsafeUrl { registry: String, what: String, url: String, why: crate::scope::Refusal },
    #[error("reading {what}: {detail}")]
    Local { what: String, detail: String },
    #[error("could not set up the HTTP client: {0}")]
    Client(String),
}

/// What to do about an answer users meet, said after the registry's own words.
fn status_hint(status: StatusCode) -> &'static str {
    match status.as_u16() {
        402 => {
            "; the registry wants payment: its storage or traffic allowance is used up (free space or raise the plan)"
        }
        403 => "; this account may not do that here: check its permissions on the repository",
        429 => {
            "; the registry still limits requests after kiln's retries: run less often, or log in for a higher limit"
        }
        500..=599 => "; the registry itself failed: try again later, or ask its operators",
        _ => "",
    }
}

/// Why one attempt failed: the network (maybe worth retrying) or the registry's answer.
pub(crate) enum Failure {
    Transport(reqwest::Error),
    Registry(RegistryError),
}

/// What went wrong sending a request: a refused certificate on its own (the URL and
/// hyper's layers add nothing to it), anything else as its [`error_chain`].
pub(crate) fn transport_detail(e: &reqwest::Error) -> String {
    match crate::tls::untrusted_certificate(e) {
        Some(refused) => refused.to_string(),
        None => error_chain(e),
    }
}

pub(crate) fn is_certificate_failure(e: &reqwest::Error) -> bool {
    crate::tls::untrusted_certificate(e).is_some() || error_chain(e).to_ascii_lowercase().contains("certificate")
}

pub(crate) fn is_tls_failure(e: &reqwest::Error) -> bool {
    let chain = error_chain(e).to_ascii_lowercase();
    chain.contains("tls") || chain.contains("handshake") || chain.contains("corrupt message")
}

pub(crate) fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// An error and its causes on one line, the way users need them in a CI log. A
/// certificate kiln refused ends the line in kiln's words, not rustls's debug form.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(refused) = crate::tls::untrusted_in(err) {
            parts.push(refused.to_string());
            break;
        }
        let text = err.to_string();
        // Libraries often repeat their cause in their own message: say each thing once.
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = err.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_users_meet_say_what_to_do() {
        let error = |status: u16| {
            RegistryError::Status {
                registry: "r.example".into(),
                what: "manifest a:1".into(),
                status: StatusCode::from_u16(status).unwrap(),
                body: String::new(),
            }
            .to_string()
        };
        assert!(error(402).ends_with("allowance is used up (free space or raise the plan)"), "{}", error(402));
        assert!(error(402).starts_with("registry r.example answered 402 Payment Required for manifest a:1; "));
        assert!(error(429).contains("after kiln's retries"));
        assert!(error(503).contains("the registry itself failed"));
        assert!(error(403).contains("permissions"));
        assert_eq!(error(400), "registry r.example answered 400 Bad Request for manifest a:1");
    }
}
