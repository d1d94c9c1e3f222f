//! Which scheme a registry speaks, found once per client by pinging `/v2/`: HTTPS, or
//! plain HTTP only where that is allowed (`insecure`, or loopback) and HTTPS cannot
//! connect; and the registry's own origin that credentials are scoped to.

use reqwest::StatusCode;

use crate::client::Client;
use crate::error::{Failure, RegistryError, error_chain, is_certificate_failure, is_tls_failure, transport_detail};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    Https,
    Http,
}

impl Scheme {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Scheme::Https => "https",
            Scheme::Http => "http",
        }
    }
}

impl Client {
    /// Finds which scheme the registry speaks: HTTPS, or plain HTTP where that is allowed
    /// (`insecure`, or a loopback address) and HTTPS cannot connect. A server that speaks
    /// TLS with a certificate we do not trust is not taken for plain HTTP.
    pub(crate) async fn scheme(&self) -> Result<Scheme, RegistryError> {
        if let Some(s) = self.state.lock().expect("state lock").scheme {
            return Ok(s);
        }
        let ping = |scheme: Scheme| {
            let url = format!("{}://{}/v2/", scheme.as_str(), self.repo.api_host());
            self.http.get(url).send()
        };
        let http_allowed = !self.https_only && (self.config.insecure || self.repo.is_loopback());
        let not_a_registry = |resp: &reqwest::Response| resp.status() == StatusCode::NOT_FOUND;
        let scheme = match ping(Scheme::Https).await {
            Ok(resp) if not_a_registry(&resp) => return Err(RegistryError::NotARegistry(self.repo.registry().into())),
            Ok(_) => Scheme::Https,
            Err(https_err) if http_allowed && !is_certificate_failure(&https_err) => match ping(Scheme::Http).await {
                Ok(resp) if not_a_registry(&resp) => {
                    return Err(RegistryError::NotARegistry(self.repo.registry().into()));
                }
                Ok(_) => Scheme::Http,
                Err(http_err) => {
                    return Err(RegistryError::Unreachable {
                        registry: self.repo.registry().into(),
                        detail: format!("https: {}; http: {}", error_chain(&https_err), error_chain(&http_err)),
                    });
                }
            },
            Err(e) => {
                let hint = if crate::tls::untrusted_certificate(&e).is_some() {
                    "" // it says what to do
                } else if error_chain(&e).contains("CertificateRequired") {
                    " (the server takes only clients with a certificate it trusts; none was given)"
                } else if is_certificate_failure(&e) {
                    " (add the registry's certificate, or its CA's, to ca_certs)"
                } else if is_tls_failure(&e) {
                    " (is it plain HTTP? then set insecure: true)"
                } else {
                    ""
                };
                return Err(RegistryError::Unreachable {
                    registry: self.repo.registry().into(),
                    detail: format!("{}{hint}", transport_detail(&e)),
                });
            }
        };
        self.state.lock().expect("state lock").scheme = Some(scheme);
        Ok(scheme)
    }

    /// The registry's own origin, as this client reaches it.
    pub(crate) fn base_url(&self, scheme: Scheme) -> Result<reqwest::Url, Failure> {
        reqwest::Url::parse(&format!("{}://{}/", scheme.as_str(), self.repo.api_host()))
            .map_err(|e| Failure::Registry(RegistryError::Client(format!("{}: {e}", self.repo.registry()))))
    }
}
