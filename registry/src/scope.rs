//! Where credentials may go: the one rule every request of a [`crate::Client`] passes.
//!
//! - Credentials (basic, bearer tokens, identity tokens, cloud logins) are attached only to
//!   requests for the registry's own origin: the scheme, host and port the client reached it
//!   on. A URL the registry names on another origin (an upload `Location`, a tags `Link`) is
//!   followed without them, as pre-signed storage URLs expect.
//! - A URL that would take a request from `https` to plain `http` is refused, on any host:
//!   a TLS registry never sends a body, or learns of one, in the clear.
//! - Redirects: the same downgrade is refused; reqwest itself drops `Authorization` when a
//!   redirect leaves the origin (tested in `tests/tests/security/hostile_registry.rs`).
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

    /// A loopback server answering every request on a connection with `answer(path)`,
    /// over TLS when `tls` is given; the paths it was asked for.
    async fn serve(
        tls: Option<tokio_rustls::TlsAcceptor>,
        answer: impl Fn(&str) -> String + Send + Sync + 'static,
    ) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (seen, answer) = (asked.clone(), std::sync::Arc::new(answer));
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (tls, seen, answer) = (tls.clone(), seen.clone(), answer.clone());
                tokio::spawn(async move {
                    let stream: Box<dyn Stream> = match tls {
                        Some(tls) => match tls.accept(tcp).await {
                            Ok(s) => Box::new(s),
                            Err(_) => return,
                        },
                        None => Box::new(tcp),
                    };
                    let mut stream = tokio::io::BufReader::new(stream);
                    loop {
                        let mut line = String::new();
                        if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let path = line.split(' ').nth(1).unwrap_or("").to_string();
                        // The rest of the head; requests here have no body.
                        loop {
                            let mut header = String::new();
                            if stream.read_line(&mut header).await.unwrap_or(0) == 0 || header == "\r\n" {
                                break;
                            }
                        }
                        seen.lock().unwrap().push(path.clone());
                        if stream.write_all(answer(&path).as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (port, asked)
    }

    trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
    impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

    fn redirect_to(location: &str) -> String {
        format!("HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n")
    }

    const OK: &str = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

    #[tokio::test]
    async fn redirects_from_https_to_plain_http_are_refused() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        params.subject_alt_names = vec![rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap())];
        let cert = params.self_signed(&key).unwrap();
        let config =
            rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(
                    vec![cert.der().clone()],
                    rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
                )
                .unwrap();
        let (plain, plain_asked) = serve(None, |_| OK.to_string()).await;
        let (tls, _) =
            serve(Some(tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config))), move |path| match path {
                "/down" => redirect_to(&format!("http://127.0.0.1:{plain}/leaked")),
                "/same" => redirect_to("/ok"),
                "/ok" => OK.to_string(),
                _ => redirect_to("/down"),
            })
            .await;
        let client = crate::tls::http_builder(&[cert.pem()], None).unwrap().build().unwrap();
        let err = client.get(format!("https://127.0.0.1:{tls}/start")).send().await.unwrap_err();
        assert!(crate::error_chain(&err).contains("https to plain http"), "{}", crate::error_chain(&err));
        assert!(plain_asked.lock().unwrap().is_empty(), "the plain server was asked");
        // From https to https is followed.
        let same = client.get(format!("https://127.0.0.1:{tls}/same")).send().await.unwrap();
        assert_eq!(same.status(), 200);
        // From plain http to https, or within the same scheme, is followed.
        let (hops, _) = serve(None, move |path| match path {
            "/start" => redirect_to(&format!("http://127.0.0.1:{plain}/end")),
            _ => OK.to_string(),
        })
        .await;
        let resp = client.get(format!("http://127.0.0.1:{hops}/start")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
    }

    #[tokio::test]
    async fn ten_redirects_are_followed_and_eleven_are_not() {
        // /r/N redirects to /r/N-1; /r/0 answers.
        let (port, _) = serve(None, |path| match path.strip_prefix("/r/").and_then(|n| n.parse::<u32>().ok()) {
            Some(0) => OK.to_string(),
            Some(n) => redirect_to(&format!("/r/{}", n - 1)),
            None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_string(),
        })
        .await;
        let client = crate::tls::http_builder(&[], None).unwrap().build().unwrap();
        let ten = client.get(format!("http://127.0.0.1:{port}/r/10")).send().await.unwrap();
        assert_eq!(ten.status(), 200);
        let eleven = client.get(format!("http://127.0.0.1:{port}/r/11")).send().await.unwrap_err();
        assert!(crate::error_chain(&eleven).contains("more than ten redirects"), "{}", crate::error_chain(&eleven));
    }

    #[test]
    fn shown_urls_carry_no_signature_or_user() {
        assert_eq!(shown(&url("https://u:p@s.example/b?X-Amz-Signature=s#f")), "https://s.example/b");
    }
}
