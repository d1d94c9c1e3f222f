//! `source.ca_certs` against the real distribution registry serving HTTPS with certificates
//! each test makes (issue 22). The one `openssl req -x509` makes by default is self-signed
//! and marked CA:TRUE, which webpki refuses as a server's certificate; kiln pins it when
//! it is byte for byte in `ca_certs`, so `out`, `check` and `in` work with it, as they do
//! with registry-image-resource. Pinning still checks the name and the dates, and only the
//! certificate given: one for another name, an expired one, or a different self-signed
//! certificate in `ca_certs` is refused, in one line that says what the registry presented
//! and what to do. A leaf signed by a separate CA in `ca_certs` goes through ordinary
//! chain verification, as before; that leaf alone in `ca_certs` is pinned too.

use std::path::Path;
use std::process::Command;

use kiln_tests::dev_env_or_skip;
use kiln_tests::harness::{Outcome, resource};
use kiln_tests::images::noise_image_tar;
use kiln_tests::registry::PrivateRegistry;
use serde_json::{Value, json};

/// Runs `openssl` in `dir`; its stdout.
fn openssl(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("openssl").current_dir(dir).args(args).output().expect("running openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A key and the certificate `openssl req -x509` makes with no more than a subject and a
/// subjectAltName: (certificate PEM, key PEM). Asserts it is what the issue is about.
fn openssl_self_signed(dir: &Path, name: &str, subject_alt_name: &str) -> (String, String) {
    let (cert, key) = (format!("{name}.pem"), format!("{name}-key.pem"));
    let subject = format!("/CN=kiln-{name}");
    let san = format!("subjectAltName={subject_alt_name}");
    openssl(
        dir,
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", &subject, "-addext", &san, "-keyout", &key,
            "-out", &cert,
        ],
    );
    let constraints = openssl(dir, &["x509", "-in", &cert, "-noout", "-ext", "basicConstraints"]);
    assert!(constraints.contains("CA:TRUE"), "openssl's default is no longer CA:TRUE: {constraints}");
    (read(dir, &cert), read(dir, &key))
}

/// A `source` for `repo` on `registry` trusting `ca_certs`.
fn source(registry: &PrivateRegistry, repo: &str, ca_certs: &[&str]) -> Value {
    json!({ "repository": format!("{}/{repo}", registry.addr), "ca_certs": ca_certs })
}

/// Pushes an image as `1.0.0` with `out`, checks for it, fetches it with `in`: all must
/// work. Returns its digest.
fn out_check_in(registry: &PrivateRegistry, repo: &str, ca_certs: &[&str], seed: u64) -> String {
    let work = tempfile::tempdir().unwrap();
    let digest = noise_image_tar(work.path(), "1.0.0", 4096, seed);
    let source = source(registry, repo, ca_certs);
    let out = resource(
        "out",
        Some(work.path()),
        &json!({ "source": source, "params": { "image": "image.tar", "version": "1.0.0" } }),
    );
    out.success();
    assert_eq!(out.json()["version"], json!({ "tag": "1.0.0", "digest": digest }), "{}", out.stderr);

    let mut tagged = source.clone();
    tagged["tag"] = json!("1.0.0");
    let out = resource("check", None, &json!({ "source": tagged }));
    assert_eq!(out.success().json(), json!([{ "tag": "1.0.0", "digest": digest }]));

    let dest = tempfile::tempdir().unwrap();
    let request = json!({ "source": source, "version": { "tag": "1.0.0", "digest": digest } });
    resource("in", Some(dest.path()), &request).success();
    assert_eq!(std::fs::metadata(dest.path().join("rootfs/noise")).unwrap().len(), 4096);
    digest
}

/// The error a refused step printed (after its name), asserting it is one line: the last
/// of stderr, after any progress (`out` says what it reads and pushes first).
fn refusal(out: &Outcome, step: &str) -> String {
    out.failure();
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    let prefix = format!("{step}: ");
    let lines: Vec<&str> = out.stderr.trim_end().lines().collect();
    let errors: Vec<&&str> = lines.iter().filter(|l| l.starts_with(&prefix)).collect();
    assert_eq!(errors.len(), 1, "not one error line:\n{}", out.stderr);
    assert_eq!(errors[0], lines.last().unwrap(), "the error goes on after its first line:\n{}", out.stderr);
    let line = *errors[0];
    assert!(!line.contains("Other(") && !line.contains("OtherError"), "Rust debug formatting: {line}");
    line[prefix.len()..].to_string()
}

fn check(registry: &PrivateRegistry, repo: &str, ca_certs: &[&str]) -> Outcome {
    let mut source = source(registry, repo, ca_certs);
    source["tag"] = json!("1.0.0");
    resource("check", None, &json!({ "source": source }))
}

#[test]
fn the_registrys_own_self_signed_certificate_in_ca_certs_works_for_out_check_and_in() {
    let _env = dev_env_or_skip!();
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = openssl_self_signed(certs.path(), "registry", "IP:127.0.0.1");
    let registry = PrivateRegistry::start_tls(&cert, &key);
    out_check_in(&registry, "pinned/app", &[&cert], 41);
}

#[test]
fn a_self_signed_certificate_for_another_name_is_refused_naming_its_names() {
    let _env = dev_env_or_skip!();
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = openssl_self_signed(certs.path(), "other", "DNS:other.example");
    let registry = PrivateRegistry::start_tls(&cert, &key);
    let line = refusal(&check(&registry, "pinned/other", &[&cert]), "check");
    let prefix = format!(
        "cannot reach registry {}: the certificate it presented (CN=kiln-other, self-signed, for DNS other.example, valid until ",
        registry.addr
    );
    assert!(line.starts_with(&prefix), "{line}");
    assert!(
        line.ends_with(
            ") is not valid for 127.0.0.1: give the registry a certificate whose subjectAltName names 127.0.0.1, \
             or reach it by a name the certificate carries"
        ),
        "{line}"
    );
}

#[test]
fn an_expired_self_signed_certificate_is_refused_saying_it_expired() {
    let _env = dev_env_or_skip!();
    // openssl 3.0's `req` cannot date a certificate in the past: rcgen makes what it would
    // have, self-signed and CA:TRUE, for 2020.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, "kiln-expired");
    params.subject_alt_names = vec![rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap())];
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let cert = params.self_signed(&key).unwrap().pem();
    let registry = PrivateRegistry::start_tls(&cert, &key.serialize_pem());
    let line = refusal(&check(&registry, "pinned/expired", &[&cert]), "check");
    assert_eq!(
        line,
        format!(
            "cannot reach registry {}: the certificate it presented (CN=kiln-expired, self-signed, for IP 127.0.0.1, \
             expired 2021-01-01 00:00:00 UTC) has expired: the registry needs a new certificate (replace it in \
             ca_certs too if it is there)",
            registry.addr
        )
    );
}

#[test]
fn a_different_self_signed_certificate_in_ca_certs_does_not_make_the_registry_trusted() {
    let _env = dev_env_or_skip!();
    let certs = tempfile::tempdir().unwrap();
    let (served, key) = openssl_self_signed(certs.path(), "served", "IP:127.0.0.1");
    let (other, _) = openssl_self_signed(certs.path(), "given", "IP:127.0.0.1");
    let registry = PrivateRegistry::start_tls(&served, &key);
    let expected_start = format!(
        "cannot reach registry {}: the certificate it presented (CN=kiln-served, self-signed, for IP 127.0.0.1, valid until ",
        registry.addr
    );
    let expected_end = ") is not trusted: add this certificate to ca_certs";
    for ca_certs in [vec![other.as_str()], vec![]] {
        let line = refusal(&check(&registry, "pinned/different", &ca_certs), "check");
        assert!(line.starts_with(&expected_start) && line.ends_with(expected_end), "{ca_certs:?}: {line}");
    }
    // `insecure` allows plain HTTP; it does not turn verification off, nor fall back to HTTP
    // from a server that speaks TLS.
    let mut source = source(&registry, "pinned/different", &[&other]);
    source["insecure"] = json!(true);
    let work = tempfile::tempdir().unwrap();
    noise_image_tar(work.path(), "1.0.0", 4096, 43);
    let out = resource(
        "out",
        Some(work.path()),
        &json!({ "source": source, "params": { "image": "image.tar", "version": "1.0.0" } }),
    );
    let line = refusal(&out, "out");
    let expected_start = format!("looking up tag 1.0.0: {expected_start}");
    assert!(line.starts_with(&expected_start) && line.ends_with(expected_end), "{line}");
}

#[test]
fn a_leaf_signed_by_a_separate_ca_in_ca_certs_still_works() {
    let _env = dev_env_or_skip!();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ca, _) = openssl_self_signed(d, "ca", "DNS:kiln-ca.invalid");
    std::fs::write(d.join("leaf.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        d,
        &[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=kiln-leaf",
            "-keyout",
            "leaf-key.pem",
            "-out",
            "leaf.csr",
        ],
    );
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-set_serial",
            "2",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
            "-out",
            "leaf.pem",
        ],
    );
    let leaf = read(d, "leaf.pem");
    let registry = PrivateRegistry::start_tls(&leaf, &read(d, "leaf-key.pem"));
    let digest = out_check_in(&registry, "chained/app", &[&ca], 45);

    // The leaf itself in ca_certs, without its CA: pinned, as Go would take it.
    let out = check(&registry, "chained/app", &[&leaf]);
    assert_eq!(out.success().json(), json!([{ "tag": "1.0.0", "digest": digest }]));

    // Without its CA the issuer is named.
    let line = refusal(&check(&registry, "chained/app", &[]), "check");
    assert!(line.contains("(CN=kiln-leaf, issued by CN=kiln-ca, for IP 127.0.0.1, valid until "), "{line}");
    assert!(line.ends_with(") is not trusted: add the certificate of the CA that issued it (CN=kiln-ca) to ca_certs"));
}
