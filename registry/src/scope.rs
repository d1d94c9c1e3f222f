//! Where credentials may go: the one rule every request of a [`crate::Client`] passes.
//!
//! - Credentials (basic, bearer tokens, identity tokens, cloud logins) are attached only to
//!   requests for the registry's own origin: the scheme, host and port the client reached it
//!   on. A URL the registry names on another origin (an upload `Location`, a tags `Link`) is
//!   followed without them, as pre-signed storage URLs expect.
//! - A URL that would take a request from `https` to plain `http` is refused, on any host:
//!   a TLS registry never sends a body, or learns of one, in the clear.
//! - Redirects: the same downgrade is refused; reqwest itself drops `Authorization` when a
//!   redirect leaves the origin (tested in `tests/tests/hostile_registry.rs`).
//! - A token realm gets the basic credentials over `https`, or over `http` only when the
//!   registry itself is plain HTTP (`insecure`, or loopback) and so has them in the clear.

pub use reqwest::Url;

/// Why a URL may not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("it would move from https to plain http")]
    Downgrade,
    #[error("it is not an http(s) URL")]
    NotHttp,
    #[error("a plain-http token service would see the registry password in clear text")]
    PlainRealm,
}

/// Whether a request may carry credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credentials {
    Attach,
    Withhold,
}

/// A URL's origin: scheme, lower-cased host and port (the scheme's default when unsaid).
fn origin(url: &Url) -> Option<(String, String, u16)> {
    Some((url.scheme().to_string(), url.host_str()?.to_ascii_lowercase(), url.port_or_known_default()?))
}

/// For a request to `target` by a client of the registry at `registry` (its base URL).
pub fn for_target(registry: &Url, target: &Url) -> Result<Credentials, Refusal> {
    if !matches!(target.scheme(), "http" | "https") {
        return Err(Refusal::NotHttp);
    }
    if registry.scheme() == "https" && target.scheme() == "http" {
        return Err(Refusal::Downgrade);
    }
    match (origin(registry), origin(target)) {
        (Some(r), Some(t)) if r == t => Ok(Credentials::Attach),
        _ => Ok(Credentials::Withhold),
    }
}

/// For the token service at `realm`, which gets the basic credentials.
pub fn for_realm(registry: &Url, realm: &Url) -> Result<(), Refusal> {
    match realm.scheme() {
        "https" => Ok(()),
        "http" if registry.scheme() == "http" => Ok(()),
        "http" => Err(Refusal::PlainRealm),
        _ => Err(Refusal::NotHttp),
    }
}

/// The redirect policy of every registry client: at most ten hops, never from https to http.
pub fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let downgrade =
            attempt.previous().last().is_some_and(|p| p.scheme() == "https") && attempt.url().scheme() == "http";
        if downgrade {
            let error = Refusal::Downgrade;
            attempt.error(error)
        } else if attempt.previous().len() > 10 {
            attempt.error("more than ten redirects")
        } else {
            attempt.follow()
        }
    })
}

/// A URL for messages: no query (pre-signed URLs carry signatures there), no user info.
pub fn shown(url: &Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn credentials_go_only_to_the_registrys_own_origin() {
        let registry = url("https://registry.example:5000/");
        let attach = |t: &str| for_target(&registry, &url(t));
        assert_eq!(attach("https://registry.example:5000/v2/x/blobs/uploads/1"), Ok(Credentials::Attach));
        assert_eq!(attach("https://REGISTRY.example:5000/v2/"), Ok(Credentials::Attach));
        for elsewhere in [
            "https://registry.example/v2/",           // another port (443)
            "https://registry.example:5001/v2/",      // another port
            "https://storage.example/blob?sig=abc",   // another host
            "https://registry.example.evil:5000/v2/", // a longer name
            "https://127.0.0.2:5000/v2/",
        ] {
            assert_eq!(attach(elsewhere), Ok(Credentials::Withhold), "{elsewhere}");
        }
        let plain = url("http://127.0.0.1:5000/");
        assert_eq!(for_target(&plain, &url("http://127.0.0.1:5000/v2/")), Ok(Credentials::Attach));
        assert_eq!(for_target(&plain, &url("http://127.0.0.2:5000/v2/")), Ok(Credentials::Withhold));
        assert_eq!(for_target(&plain, &url("https://127.0.0.1:5000/v2/")), Ok(Credentials::Withhold));
        // The default port said or unsaid is the same origin.
        let default = url("https://registry.example/");
        assert_eq!(for_target(&default, &url("https://registry.example:443/v2/")), Ok(Credentials::Attach));
    }

    #[test]
    fn https_never_becomes_http_and_only_http_urls_are_followed() {
        let registry = url("https://registry.example/");
        assert_eq!(for_target(&registry, &url("http://registry.example/v2/")), Err(Refusal::Downgrade));
        assert_eq!(for_target(&registry, &url("http://other.example/upload")), Err(Refusal::Downgrade));
        assert_eq!(for_target(&registry, &url("file:///etc/passwd")), Err(Refusal::NotHttp));
        assert_eq!(for_target(&registry, &url("ftp://registry.example/x")), Err(Refusal::NotHttp));
    }

    #[test]
    fn a_plain_http_realm_gets_nothing_from_a_tls_registry() {
        let tls = url("https://registry.example/");
        assert_eq!(for_realm(&tls, &url("https://auth.example/token")), Ok(()));
        assert_eq!(for_realm(&tls, &url("http://auth.example/token")), Err(Refusal::PlainRealm));
        assert_eq!(for_realm(&tls, &url("http://registry.example/token")), Err(Refusal::PlainRealm));
        let plain = url("http://127.0.0.1:5000/");
        assert_eq!(for_realm(&plain, &url("http://127.0.0.1:5001/token")), Ok(()));
        assert_eq!(for_realm(&plain, &url("https://auth.example/token")), Ok(()));
        assert_eq!(for_realm(&tls, &url("ldap://auth.example/")), Err(Refusal::NotHttp));
    }

    #[test]
    fn shown_urls_carry_no_signature_or_user() {
        assert_eq!(shown(&url("https://u:p@s.example/b?X-Amz-Signature=s#f")), "https://s.example/b");
    }
}
