//! Certificates for the dev environment: a CA, a server certificate for 127.0.0.1
//! signed by it (the TLS registries, the token issuer and buildkitd's TCP listener), a
//! client certificate signed by it (for buildkitd's mutual TLS), and a self-signed key
//! the token issuer signs JWTs with and the token-auth registry trusts.

use std::fs;
use std::path::Path;

use anyhow::Context;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SanType};

/// File names inside the certificate folder.
pub const CA: &str = "ca.pem";
pub const SERVER_CERT: &str = "server.pem";
pub const SERVER_KEY: &str = "server-key.pem";
pub const SIGNER_CERT: &str = "token-signer.pem";
pub const SIGNER_KEY: &str = "token-signer-key.pem";
pub const CLIENT_CERT: &str = "client.pem";
pub const CLIENT_KEY: &str = "client-key.pem";

/// Writes the certificates into `dir` unless they are already there.
pub fn ensure(dir: &Path) -> anyhow::Result<()> {
    if [CA, SERVER_CERT, SERVER_KEY, SIGNER_CERT, SIGNER_KEY, CLIENT_CERT, CLIENT_KEY]
        .iter()
        .all(|f| dir.join(f).exists())
    {
        return Ok(());
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // Made anew as a whole: the CA's key is not kept, so nothing is added to an old set.
    let _ = fs::remove_file(dir.join(CA));

    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name.push(DnType::CommonName, "kiln dev CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate()?;
    let mut server_params = CertificateParams::new(vec!["localhost".to_string()])?;
    server_params.subject_alt_names.push(SanType::IpAddress("127.0.0.1".parse()?));
    server_params.distinguished_name.push(DnType::CommonName, "kiln dev registry");
    let server_cert = server_params.signed_by(&server_key, &issuer)?;

    let client_key = KeyPair::generate()?;
    let mut client_params = CertificateParams::new(Vec::<String>::new())?;
    client_params.distinguished_name.push(DnType::CommonName, "kiln dev client");
    client_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = client_params.signed_by(&client_key, &issuer)?;

    let signer_key = KeyPair::generate()?;
    let mut signer_params = CertificateParams::new(Vec::<String>::new())?;
    signer_params.distinguished_name.push(DnType::CommonName, "kiln dev token signer");
    let signer_cert = signer_params.self_signed(&signer_key)?;

    let write = |name: &str, text: String| fs::write(dir.join(name), text).with_context(|| format!("writing {name}"));
    write(SERVER_KEY, server_key.serialize_pem())?;
    write(SERVER_CERT, server_cert.pem())?;
    write(CLIENT_KEY, client_key.serialize_pem())?;
    write(CLIENT_CERT, client_cert.pem())?;
    write(SIGNER_KEY, signer_key.serialize_pem())?;
    write(SIGNER_CERT, signer_cert.pem())?;
    // The CA last: its presence marks the folder complete.
    write(CA, ca_cert.pem())?;
    Ok(())
}
