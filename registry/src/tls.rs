//! TLS to registries: the system's trust roots plus `ca_certs`, and certificate pinning.
//!
//! Every `ca_certs` certificate is a trust root, as it always was: a registry whose
//! certificate chains to one of them is verified by the platform verifier (webpki with the
//! system's roots and `ca_certs`), unchanged. A registry that presents, as its own leaf, a
//! certificate that is byte for byte one of `ca_certs` is accepted too: the self-signed
//! certificate `openssl req -x509` makes is marked CA:TRUE, which webpki refuses as a
//! server's certificate, and registry-image-resource (Go) accepts. Such a pinned
//! certificate still has to name the host (subjectAltName), be inside its validity
//! period and, if it has an extendedKeyUsage, allow TLS servers; the handshake's
//! signature is verified as always, so the registry must hold that certificate's key.
//!
//! A certificate that fails is described in one line ([`UntrustedCertificate`]): what it
//! is (subject, self-signed or its issuer, the names it carries, its dates) and what to do.

use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

use crate::error::RegistryError;

/// The certificates of `ca_certs`, in order (an entry may hold several).
pub(crate) fn parse_ca_certs(ca_certs: &[String]) -> Result<Vec<CertificateDer<'static>>, RegistryError> {
    let mut certs = Vec::new();
    for (index, pem) in ca_certs.iter().enumerate() {
        let bad = |detail: &str| RegistryError::BadCaCert { index, detail: detail.to_string() };
        let before = certs.len();
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert = cert.map_err(|_| bad("its PEM is damaged (a section without its END line, or bad base64)"))?;
            if x509_parser::parse_x509_certificate(&cert).is_err()
                || rustls::RootCertStore::empty().add(cert.clone()).is_err()
            {
                return Err(bad("a CERTIFICATE block in it is not an X.509 certificate"));
            }
            certs.push(cert);
        }
        if certs.len() == before {
            return Err(bad("it holds no -----BEGIN CERTIFICATE----- block"));
        }
    }
    Ok(certs)
}

/// The TLS configuration for a registry with these `ca_certs`: the platform verifier with
/// them as extra roots, wrapped in [`PinningVerifier`]; HTTP/2 and HTTP/1.1 offered by
/// ALPN, as reqwest does on its own.
pub(crate) fn client_config(
    ca_certs: &[String],
    identity: Option<&ClientIdentity>,
) -> Result<rustls::ClientConfig, RegistryError> {
    let pinned = parse_ca_certs(ca_certs)?;
    // A provider the process installed, else ring, whose random numbers come straight from
    // the kernel: aws-lc-rs (reqwest's default) seeds its own from CPU jitter, about 50 ms
    // of CPU at a process's first handshake, which was most of a re-push's time.
    let provider =
        CryptoProvider::get_default().cloned().unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    let (roots, chain_provider) = (pinned.clone(), provider.clone());
    let platform = move || {
        rustls_platform_verifier::Verifier::new_with_extra_roots(roots.clone(), chain_provider.clone())
            .map(|v| Arc::new(v) as Arc<dyn ServerCertVerifier>)
            .map_err(|e| format!("loading the trusted certificates: {e}"))
    };
    let verifier = PinningVerifier::new(Box::new(platform), provider.clone(), pinned);
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .map_err(|e| RegistryError::Client(format!("TLS versions: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some(identity) => {
            let (chain, key) = identity.parse()?;
            builder.with_client_auth_cert(chain, key).map_err(|e| RegistryError::BadClientCert(e.to_string()))?
        }
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// A reqwest client builder for a registry: kiln's user agent, [`client_config`] and the
/// redirect policy of [`crate::scope`].
pub(crate) fn http_builder(
    ca_certs: &[String],
    identity: Option<&ClientIdentity>,
) -> Result<reqwest::ClientBuilder, RegistryError> {
    Ok(reqwest::Client::builder()
        .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
        .redirect(crate::scope::redirect_policy())
        .tls_backend_preconfigured(client_config(ca_certs, identity)?))
}

/// A client certificate (PEM, the leaf first, then any intermediates) and its private key
/// (PEM: PKCS#8, PKCS#1 or SEC1), presented to a server that asks for one.
#[derive(Clone)]
pub struct ClientIdentity {
    cert_pem: String,
    key_pem: String,
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientIdentity(…)")
    }
}

impl ClientIdentity {
    /// `cert_pem` and `key_pem`, checked to be a certificate and a private key.
    pub fn new(cert_pem: &str, key_pem: &str) -> Result<Self, RegistryError> {
        let identity = ClientIdentity { cert_pem: cert_pem.into(), key_pem: key_pem.into() };
        identity.parse()?;
        Ok(identity)
    }

    fn parse(&self) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), RegistryError> {
        let bad = |detail: &str| RegistryError::BadClientCert(detail.to_string());
        let chain = CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| bad("the certificate's PEM is damaged"))?;
        if chain.is_empty() {
            return Err(bad("the certificate holds no -----BEGIN CERTIFICATE----- block"));
        }
        // The key's own parse error is not shown: it could quote the key.
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .map_err(|_| bad("the key is not a PEM private key (PKCS#8, RSA or EC)"))?;
        Ok((chain, key))
    }
}

/// Accepts a leaf that is one of the pinned certificates after its own checks; hands
/// everything else to the chain verifier. Failures come out as [`UntrustedCertificate`].
///
/// The chain verifier (the platform's, with `ca_certs` as extra roots) is made when the
/// first certificate is to be checked: loading the system's roots reads every file in
/// `/etc/ssl/certs`, which a plain-HTTP registry never needs. Handshake signatures need no
/// roots: they are checked with the provider's algorithms, as the platform verifier does.
pub(crate) struct PinningVerifier {
    make_chain: Box<MakeChain>,
    chain: OnceLock<Result<Arc<dyn ServerCertVerifier>, String>>,
    provider: Arc<CryptoProvider>,
    pinned: Vec<CertificateDer<'static>>,
}

type MakeChain = dyn Fn() -> Result<Arc<dyn ServerCertVerifier>, String> + Send + Sync;

impl fmt::Debug for PinningVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinningVerifier").field("pinned", &self.pinned.len()).finish_non_exhaustive()
    }
}

impl PinningVerifier {
    pub(crate) fn new(
        make_chain: Box<MakeChain>,
        provider: Arc<CryptoProvider>,
        pinned: Vec<CertificateDer<'static>>,
    ) -> Self {
        Self { make_chain, chain: OnceLock::new(), provider, pinned }
    }

    fn chain(&self) -> Result<&Arc<dyn ServerCertVerifier>, rustls::Error> {
        self.chain.get_or_init(|| (self.make_chain)()).as_ref().map_err(|why| rustls::Error::General(why.clone()))
    }
}

impl ServerCertVerifier for PinningVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.pinned.iter().any(|pinned| pinned.as_ref() == end_entity.as_ref()) {
            return match check_pinned(end_entity, server_name, now) {
                Ok(()) => Ok(ServerCertVerified::assertion()),
                Err(problem) => Err(UntrustedCertificate::new(end_entity, problem, now).into()),
            };
        }
        self.chain()?.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now).map_err(|e| {
            match problem_of(&e, server_name) {
                Some(problem) => UntrustedCertificate::new(end_entity, problem, now).into(),
                None => e,
            }
        })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// What chain verification would still check of a certificate it trusts outright: that
/// webpki can read it (no unknown critical extension), its dates, its names, its purpose.
fn check_pinned(der: &CertificateDer<'_>, server_name: &ServerName<'_>, now: UnixTime) -> Result<(), Problem> {
    let parsed = rustls::server::ParsedCertificate::try_from(der)
        .map_err(|_| Problem::Unusable("webpki cannot read it (an unknown critical extension?)"))?;
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|_| Problem::Unusable("it is not X.509"))?;
    let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    let validity = cert.validity();
    if now < validity.not_before.timestamp() {
        return Err(Problem::NotYetValid);
    }
    if now > validity.not_after.timestamp() {
        return Err(Problem::Expired);
    }
    rustls::client::verify_server_name(&parsed, server_name)
        .map_err(|_| Problem::WrongName(server_name.to_str().into_owned()))?;
    match cert.extended_key_usage() {
        Ok(None) => Ok(()),
        Ok(Some(eku)) if eku.value.server_auth || eku.value.any => Ok(()),
        Ok(Some(_)) => Err(Problem::NotForServers),
        Err(_) => Err(Problem::Unusable("its extendedKeyUsage is unreadable")),
    }
}

/// How the platform verifier's refusal reads to someone fixing `ca_certs`; `None` for
/// failures that are not about the certificate.
fn problem_of(e: &rustls::Error, server_name: &ServerName<'_>) -> Option<Problem> {
    let rustls::Error::InvalidCertificate(e) = e else { return None };
    Some(match e {
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => Problem::Expired,
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => Problem::NotYetValid,
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            Problem::WrongName(server_name.to_str().into_owned())
        }
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => Problem::NotForServers,
        // The platform verifier's own word for a wrong extendedKeyUsage (its type is private).
        CertificateError::Other(other) if other.to_string() == "certificate had invalid extensions" => {
            Problem::NotForServers
        }
        CertificateError::Revoked => Problem::Revoked,
        CertificateError::BadEncoding | CertificateError::UnhandledCriticalExtension => {
            Problem::Unusable("webpki cannot read it (an unknown critical extension?)")
        }
        // UnknownIssuer, a CA certificate as the leaf (CaUsedAsEndEntity), bad signatures…
        _ => Problem::NotTrusted,
    })
}

/// Why a certificate was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Problem {
    /// No trusted root vouches for it and it is not itself in `ca_certs`.
    NotTrusted,
    /// It does not name the host kiln connected to.
    WrongName(String),
    /// It, or a certificate in its chain, has expired.
    Expired,
    NotYetValid,
    /// Its extendedKeyUsage leaves out TLS servers.
    NotForServers,
    Revoked,
    Unusable(&'static str),
}

/// A registry's certificate kiln refused, and why, in one line.
#[derive(Debug, Clone, thiserror::Error)]
pub struct UntrustedCertificate {
    seen: Seen,
    problem: Problem,
}

impl UntrustedCertificate {
    fn new(der: &CertificateDer<'_>, problem: Problem, now: UnixTime) -> Self {
        Self { seen: Seen::read(der, now), problem }
    }
}

impl From<UntrustedCertificate> for rustls::Error {
    fn from(e: UntrustedCertificate) -> Self {
        rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(e))))
    }
}

impl fmt::Display for UntrustedCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seen = &self.seen;
        write!(f, "the certificate it presented ({seen}) ")?;
        match &self.problem {
            Problem::NotTrusted => match &seen.issuer {
                None => write!(f, "is not trusted: add this certificate to ca_certs"),
                Some(issuer) => {
                    write!(f, "is not trusted: add the certificate of the CA that issued it ({issuer}) to ca_certs")
                }
            },
            Problem::WrongName(host) => write!(
                f,
                "is not valid for {host}: give the registry a certificate whose subjectAltName names {host}, \
                 or reach it by a name the certificate carries"
            ),
            Problem::Expired if seen.expired() => {
                write!(
                    f,
                    "has expired: the registry needs a new certificate (replace it in ca_certs too if it is there)"
                )
            }
            Problem::Expired => write!(
                f,
                "chains to a certificate that has expired: renew that one (replace it in ca_certs too if it is there)"
            ),
            Problem::NotYetValid => {
                write!(f, "is not valid yet: check this machine's clock and the certificate's dates")
            }
            Problem::NotForServers => {
                write!(f, "is not for TLS servers: its extendedKeyUsage leaves out serverAuth")
            }
            Problem::Revoked => write!(f, "has been revoked"),
            Problem::Unusable(why) => write!(f, "cannot be used: {why}"),
        }
    }
}

/// What a refused certificate says about itself, for the message.
#[derive(Debug, Clone)]
struct Seen {
    /// `None` when the certificate is not even X.509.
    subject: Option<String>,
    /// `None` when self-signed (issuer and subject are the same name).
    issuer: Option<String>,
    /// `DNS name` and `IP address` entries of its subjectAltName.
    names: Vec<String>,
    /// Seconds since the epoch and the same in words, for each end of its validity.
    not_before: (i64, String),
    not_after: (i64, String),
    now: i64,
}

impl Seen {
    fn read(der: &CertificateDer<'_>, now: UnixTime) -> Self {
        let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
            return Self {
                subject: None,
                issuer: None,
                names: Vec::new(),
                not_before: (0, String::new()),
                not_after: (0, String::new()),
                now,
            };
        };
        let name = |n: &x509_parser::x509::X509Name<'_>| {
            let text = clean(&n.to_string());
            if text.is_empty() { "no subject".to_string() } else { text }
        };
        let self_signed = cert.subject().as_raw() == cert.issuer().as_raw();
        let mut names = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for general in &san.value.general_names {
                match general {
                    x509_parser::extensions::GeneralName::DNSName(dns) => names.push(format!("DNS {}", clean(dns))),
                    x509_parser::extensions::GeneralName::IPAddress(bytes) => {
                        let ip = match bytes.len() {
                            4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                            16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                            _ => None,
                        };
                        names.push(ip.map_or_else(|| "IP (malformed)".to_string(), |ip| format!("IP {ip}")));
                    }
                    _ => {}
                }
            }
        }
        Self {
            subject: Some(name(cert.subject())),
            issuer: (!self_signed).then(|| name(cert.issuer())),
            names,
            not_before: (cert.validity().not_before.timestamp(), utc(&cert.validity().not_before)),
            not_after: (cert.validity().not_after.timestamp(), utc(&cert.validity().not_after)),
            now,
        }
    }

    fn expired(&self) -> bool {
        self.subject.is_some() && self.now > self.not_after.0
    }
}

impl fmt::Display for Seen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(subject) = &self.subject else { return write!(f, "unreadable") };
        write!(f, "{subject}, ")?;
        match &self.issuer {
            None => write!(f, "self-signed, ")?,
            Some(issuer) => write!(f, "issued by {issuer}, ")?,
        }
        if self.names.is_empty() {
            write!(f, "naming no host (no subjectAltName), ")?;
        } else {
            write!(f, "for {}, ", self.names.join(", "))?;
        }
        if self.now > self.not_after.0 {
            write!(f, "expired {}", self.not_after.1)
        } else if self.now < self.not_before.0 {
            write!(f, "not valid before {}", self.not_before.1)
        } else {
            write!(f, "valid until {}", self.not_after.1)
        }
    }
}

/// A certificate's text for a one-line message: no control characters, at most 200 characters.
fn clean(text: &str) -> String {
    let mut out: String = text.chars().map(|c| if c.is_control() { '?' } else { c }).take(200).collect();
    if text.chars().count() > 200 {
        out.push('…');
    }
    out
}

/// `2021-01-01 00:00:00 UTC`.
fn utc(time: &x509_parser::time::ASN1Time) -> String {
    // X.509 times are UTC (`…Z`), and x509-parser keeps them so.
    let t = time.to_datetime();
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// The certificate refusal in `e` or its causes, if [`PinningVerifier`] made one. rustls
/// errors have no `source()` and reach reqwest inside an `io::Error`, so both are opened.
pub(crate) fn untrusted_certificate<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a UntrustedCertificate> {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(found) = untrusted_in(err) {
            return Some(found);
        }
        next = err.source();
    }
    None
}

/// [`untrusted_certificate`] for `e` itself, not its causes.
pub(crate) fn untrusted_in<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a UntrustedCertificate> {
    if let Some(found) = e.downcast_ref::<UntrustedCertificate>() {
        return Some(found);
    }
    if let Some(rustls::Error::InvalidCertificate(CertificateError::Other(other))) = e.downcast_ref::<rustls::Error>() {
        return other.0.downcast_ref::<UntrustedCertificate>();
    }
    let inner: &(dyn std::error::Error + 'static) = e.downcast_ref::<std::io::Error>()?.get_ref()?;
    untrusted_in(inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};

    /// 2026-01-01 00:00:00 UTC.
    const NOW: u64 = 1_767_225_600;

    fn now() -> UnixTime {
        UnixTime::since_unix_epoch(Duration::from_secs(NOW))
    }

    fn params(cn: &str, sans: Vec<SanType>) -> CertificateParams {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.subject_alt_names = sans;
        params.not_before = rcgen::date_time_ymd(2025, 1, 1);
        params.not_after = rcgen::date_time_ymd(2027, 1, 1);
        params
    }

    fn ip() -> SanType {
        SanType::IpAddress("127.0.0.1".parse().unwrap())
    }

    /// What `openssl req -x509` makes: self-signed and CA:TRUE.
    fn self_signed_ca(cn: &str, sans: Vec<SanType>, edit: impl FnOnce(&mut CertificateParams)) -> rcgen::Certificate {
        let mut params = params(cn, sans);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        edit(&mut params);
        params.self_signed(&KeyPair::generate().unwrap()).unwrap()
    }

    /// The verifier kiln builds for `ca_certs`, with only those as roots (no system store).
    fn verifier(ca_certs: &[&rcgen::Certificate]) -> PinningVerifier {
        let pems: Vec<String> = ca_certs.iter().map(|c| c.pem()).collect();
        let pinned = parse_ca_certs(&pems).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        for cert in &pinned {
            roots.add(cert.clone()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain: Arc<dyn ServerCertVerifier> =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .unwrap();
        PinningVerifier::new(Box::new(move || Ok(chain.clone())), provider, pinned)
    }

    fn verify(v: &PinningVerifier, leaf: &rcgen::Certificate, host: &str) -> Result<(), String> {
        let name = ServerName::try_from(host.to_string()).unwrap();
        v.verify_server_cert(leaf.der(), &[], &name, &[], now()).map(|_| ()).map_err(|e| {
            let err: &(dyn std::error::Error + 'static) = &e;
            match untrusted_certificate(err) {
                Some(found) => found.to_string(),
                None => format!("not described: {e}"),
            }
        })
    }

    #[test]
    fn a_pinned_self_signed_ca_certificate_is_accepted() {
        let cert = self_signed_ca("registry", vec![ip()], |_| {});
        let v = verifier(&[&cert]);
        assert_eq!(verify(&v, &cert, "127.0.0.1"), Ok(()));
        // What issue 22 was: webpki alone refuses it although it is one of its roots.
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let refused = v.chain().unwrap().verify_server_cert(cert.der(), &[], &name, &[], now()).unwrap_err();
        assert!(refused.to_string().contains("CaUsedAsEndEntity"), "{refused}");
    }

    #[test]
    fn the_same_certificate_without_pinning_is_refused_as_webpki_does() {
        let cert = self_signed_ca("registry", vec![ip()], |_| {});
        let other = self_signed_ca("other", vec![ip()], |_| {});
        let err = verify(&verifier(&[&other]), &cert, "127.0.0.1").unwrap_err();
        assert_eq!(
            err,
            "the certificate it presented (CN=registry, self-signed, for IP 127.0.0.1, valid until \
             2027-01-01 00:00:00 UTC) is not trusted: add this certificate to ca_certs"
        );
    }

    #[test]
    fn a_pinned_certificate_must_name_the_host() {
        let cert = self_signed_ca("registry", vec![SanType::DnsName("other.example".try_into().unwrap())], |_| {});
        let err = verify(&verifier(&[&cert]), &cert, "127.0.0.1").unwrap_err();
        assert!(err.contains("(CN=registry, self-signed, for DNS other.example, valid until"), "{err}");
        assert!(err.contains("is not valid for 127.0.0.1: give the registry a certificate"), "{err}");
        // A name in the CN alone does not count, as in webpki.
        let cn_only = self_signed_ca("127.0.0.1", vec![], |_| {});
        let err = verify(&verifier(&[&cn_only]), &cn_only, "127.0.0.1").unwrap_err();
        assert!(err.contains("naming no host (no subjectAltName)"), "{err}");
    }

    #[test]
    fn a_pinned_certificate_must_be_in_its_validity_period() {
        let expired = self_signed_ca("old", vec![ip()], |p| {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        });
        let err = verify(&verifier(&[&expired]), &expired, "127.0.0.1").unwrap_err();
        assert_eq!(
            err,
            "the certificate it presented (CN=old, self-signed, for IP 127.0.0.1, expired 2021-01-01 00:00:00 UTC) \
             has expired: the registry needs a new certificate (replace it in ca_certs too if it is there)"
        );
        let early = self_signed_ca("early", vec![ip()], |p| p.not_before = rcgen::date_time_ymd(2030, 1, 1));
        let err = verify(&verifier(&[&early]), &early, "127.0.0.1").unwrap_err();
        assert!(err.contains("not valid before 2030-01-01 00:00:00 UTC) is not valid yet"), "{err}");
    }

    #[test]
    fn a_pinned_certificate_must_allow_tls_servers() {
        let client = self_signed_ca("client", vec![ip()], |p| {
            p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        });
        let err = verify(&verifier(&[&client]), &client, "127.0.0.1").unwrap_err();
        assert!(err.ends_with("is not for TLS servers: its extendedKeyUsage leaves out serverAuth"), "{err}");
        let server = self_signed_ca("server", vec![ip()], |p| {
            p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        });
        assert_eq!(verify(&verifier(&[&server]), &server, "127.0.0.1"), Ok(()));
    }

    #[test]
    fn a_leaf_signed_by_a_ca_in_ca_certs_goes_through_chain_verification() {
        let mut ca_params = params("kiln test CA", vec![]);
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf = params("registry", vec![ip()]).signed_by(&KeyPair::generate().unwrap(), &issuer).unwrap();
        let v = verifier(&[&ca]);
        assert_eq!(verify(&v, &leaf, "127.0.0.1"), Ok(()));
        // The chain's name check, described the same way.
        let err = verify(&v, &leaf, "10.0.0.1").unwrap_err();
        assert!(err.contains("(CN=registry, issued by CN=kiln test CA, for IP 127.0.0.1, valid until"), "{err}");
        assert!(err.contains("is not valid for 10.0.0.1"), "{err}");
        // Without its CA: the issuer is named.
        let err = verify(&verifier(&[&self_signed_ca("x", vec![], |_| {})]), &leaf, "127.0.0.1").unwrap_err();
        assert!(
            err.ends_with("is not trusted: add the certificate of the CA that issued it (CN=kiln test CA) to ca_certs"),
            "{err}"
        );
    }

    #[test]
    fn the_description_survives_reqwests_wrapping() {
        let cert = self_signed_ca("registry", vec![ip()], |_| {});
        let refused = UntrustedCertificate::new(cert.der(), Problem::NotTrusted, now());
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, rustls::Error::from(refused.clone()));
        let err: &(dyn std::error::Error + 'static) = &io;
        assert_eq!(untrusted_certificate(err).map(ToString::to_string), Some(refused.to_string()));
        let plain = std::io::Error::other("connection refused");
        assert!(untrusted_certificate(&plain).is_none());
    }

    #[test]
    fn ca_certs_entries_are_checked() {
        let cert = self_signed_ca("a", vec![], |_| {});
        let two = format!("{}{}", cert.pem(), self_signed_ca("b", vec![], |_| {}).pem());
        assert_eq!(parse_ca_certs(&[cert.pem(), two]).unwrap().len(), 3);
        let message = |pems: &[&str]| {
            let pems: Vec<String> = pems.iter().map(|p| p.to_string()).collect();
            parse_ca_certs(&pems).unwrap_err().to_string()
        };
        let pem = cert.pem();
        assert_eq!(
            message(&[&pem, "not a certificate"]),
            "ca_certs[1] is not a PEM certificate: it holds no -----BEGIN CERTIFICATE----- block"
        );
        let cut = &pem[..pem.len() - 30];
        assert!(message(&[cut]).starts_with("ca_certs[0] is not a PEM certificate: its PEM is damaged"));
        let junk = "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n";
        assert_eq!(
            message(&[junk]),
            "ca_certs[0] is not a PEM certificate: a CERTIFICATE block in it is not an X.509 certificate"
        );
    }

    #[test]
    fn dates_are_utc() {
        let at = |secs| utc(&x509_parser::time::ASN1Time::from_timestamp(secs).unwrap());
        assert_eq!(at(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(at(NOW as i64), "2026-01-01 00:00:00 UTC");
        assert_eq!(at(951_782_400 + 3661), "2000-02-29 01:01:01 UTC");
    }

    #[test]
    fn certificate_text_stays_on_one_line() {
        assert_eq!(clean("CN=a\nb"), "CN=a?b");
        assert_eq!(clean(&"x".repeat(300)).chars().count(), 201);
    }
}
