//! Credentials go only to the registry itself (`registry/src/scope.rs`), whatever it
//! answers: `check` and `out` against `kiln_tests::hostile_registry`, whose answers point
//! at another host (127.0.0.2) that records what reaches it. See that module for what such
//! a server does and does not prove.

use std::path::Path;

use kiln_tests::dev_env_or_skip;
use kiln_tests::harness::{DevEnv, Outcome, resource};
use kiln_tests::hostile_registry::{HostileRegistry, Hostility};
use kiln_tests::images::{Compression, Layer, run_config, write_layout};
use serde_json::{Value, json};

fn source(env: &DevEnv, registry: &HostileRegistry, tls: bool) -> Value {
    let mut source = json!({
        "repository": format!("{}/team/app", registry.addr),
        "username": registry.username,
        "password": registry.password,
    });
    if tls {
        source["ca_certs"] = json!([std::fs::read_to_string(&env.ca_cert).unwrap()]);
    }
    source
}

/// The other host saw no credentials, and the password is in nothing kiln printed.
fn assert_no_credentials_elsewhere(registry: &HostileRegistry, out: &Outcome) {
    for seen in registry.seen_elsewhere() {
        assert_eq!(seen.authorization, None, "{} {} carried credentials to the other host", seen.method, seen.path);
    }
    assert!(!out.stderr.contains(registry.password) && !out.stdout.contains(registry.password), "{}", out.stderr);
}

fn put_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let layer = Layer::new().file("hello", 0o644, b"hi").bytes();
    write_layout(
        &dir.path().join("image"),
        "latest",
        &[(layer, Compression::Gzip)],
        run_config(&["/hello"], None, &[], ""),
    )
    .unwrap();
    dir
}

fn push(env: &DevEnv, registry: &HostileRegistry, tls: bool, dir: &Path) -> Outcome {
    let request = json!({ "source": source(env, registry, tls), "params": { "image": "image", "version": "1.0.0" } });
    resource("out", Some(dir), &request)
}

fn check_tags(env: &DevEnv, registry: &HostileRegistry, tls: bool) -> Outcome {
    let mut source = source(env, registry, tls);
    source["tag_regex"] = json!(".*");
    resource("check", None, &json!({ "source": source }))
}

fn certs_dir(env: &DevEnv) -> &Path {
    env.ca_cert.parent().unwrap()
}

#[test]
fn an_upload_location_on_another_host_gets_no_credentials() {
    let env = dev_env_or_skip!();
    let registry = HostileRegistry::start(Hostility::UploadElsewhere, None, false);
    let dir = put_dir();
    let out = push(env, &registry, false, dir.path());
    let seen = registry.seen_elsewhere();
    assert!(
        seen.iter().any(|s| s.path == "/upload/1"),
        "the upload never went to the other host: {seen:?}\n{}",
        out.stderr
    );
    assert_no_credentials_elsewhere(&registry, &out);
}

#[test]
fn a_tls_registry_pointing_an_upload_at_plain_http_is_refused() {
    let env = dev_env_or_skip!();
    let registry = HostileRegistry::start(Hostility::UploadElsewhere, Some(certs_dir(env)), false);
    let dir = put_dir();
    let out = push(env, &registry, true, dir.path());
    out.failure();
    assert!(out.stderr.contains("which kiln refuses: it would move from https to plain http"), "{}", out.stderr);
    assert!(registry.seen_elsewhere().is_empty(), "{:?}", registry.seen_elsewhere());
    assert_no_credentials_elsewhere(&registry, &out);
}

/// `check` against a registry whose tags list points elsewhere (`hostility`): over plain
/// HTTP the other host is reached without credentials; over TLS, a target on plain http is
/// refused (`refusal` is said) and never reached.
fn tags_elsewhere_get_no_credentials(hostility: Hostility, refusal: &str) {
    let env = dev_env_or_skip!();
    let registry = HostileRegistry::start(hostility, None, false);
    let out = check_tags(env, &registry, false);
    let seen = registry.seen_elsewhere();
    assert!(
        seen.iter().any(|s| s.path.ends_with("/tags/list")),
        "{hostility:?} not followed: {seen:?}\n{}",
        out.stderr
    );
    assert_no_credentials_elsewhere(&registry, &out);

    let registry = HostileRegistry::start(hostility, Some(certs_dir(env)), false);
    let out = check_tags(env, &registry, true);
    out.failure();
    assert!(out.stderr.contains(refusal), "{}", out.stderr);
    assert!(registry.seen_elsewhere().is_empty());
}

#[test]
fn a_tags_link_to_another_host_is_followed_without_credentials() {
    tags_elsewhere_get_no_credentials(Hostility::TagsElsewhere, "it would move from https to plain http");
}

#[test]
fn a_redirect_to_another_host_drops_the_credentials() {
    // From https to http, a redirect is not followed at all.
    tags_elsewhere_get_no_credentials(Hostility::RedirectElsewhere, "https to plain http");
}

#[test]
fn a_tls_registrys_plain_http_token_realm_gets_no_password() {
    let env = dev_env_or_skip!();
    let registry = HostileRegistry::start(Hostility::RealmElsewhere, Some(certs_dir(env)), false);
    let out = check_tags(env, &registry, true);
    out.failure();
    assert!(out.stderr.contains("plain-http token service would see the registry password"), "{}", out.stderr);
    assert!(registry.seen_elsewhere().is_empty(), "{:?}", registry.seen_elsewhere());
    assert_no_credentials_elsewhere(&registry, &out);
    // An https realm elsewhere still gets them: the token registry's tests show that (its
    // issuer is another origin), and scope.rs's unit tests state the rule.
}

#[test]
fn a_registrys_error_text_reaches_the_log_as_one_printable_line() {
    let env = dev_env_or_skip!();
    let registry = HostileRegistry::start(Hostility::TagsElsewhere, None, false);
    let digest = format!("sha256:{}", "1".repeat(64));
    let request = json!({ "source": source(env, &registry, false), "version": { "tag": "1.0.0", "digest": digest } });
    let dir = tempfile::tempdir().unwrap();
    let out = resource("in", Some(dir.path()), &request);
    out.failure();
    let stderr = out.stderr.trim_end();
    assert!(stderr.contains("denied"), "the registry's text is there: {stderr}");
    assert!(!stderr.chars().any(|c| c.is_control() && c != '\n'), "raw control characters: {stderr:?}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("in: ") && last.contains("out: pushed sha256:0000"), "one line holds it all: {stderr}");
    assert!(!stderr.lines().any(|l| l.starts_with("out: pushed")), "a forged line: {stderr}");
}

#[test]
fn bodies_without_a_length_are_read_only_up_to_their_cap() {
    let env = dev_env_or_skip!();
    let registry = HostileRegistry::start(Hostility::Huge, None, false);
    let digest = format!("sha256:{}", "2".repeat(64));
    let request = json!({ "source": source(env, &registry, false), "version": { "tag": "1.0.0", "digest": digest } });
    let dir = tempfile::tempdir().unwrap();
    let out = resource("in", Some(dir.path()), &request);
    out.failure();
    assert!(
        out.stderr.contains(&format!("from registry {} is larger than 4194304 bytes", registry.addr)),
        "{}",
        out.stderr
    );
    let out = check_tags(env, &registry, false);
    out.failure();
    assert!(out.stderr.contains("is larger than 8388608 bytes"), "{}", out.stderr);
}
