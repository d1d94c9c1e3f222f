//! `check` in single-tag mode against the real registries of the dev environment,
//! cross-checked with skopeo.

use kiln_tests::dev_env_or_skip;
use kiln_tests::harness::{assert_access_refused, push_busybox, resource, source, unique_repo};
use serde_json::json;

#[test]
fn plain_registry_reports_the_digest_skopeo_sees() {
    let env = dev_env_or_skip!();
    let reg = &env.registries.plain;
    let repo = unique_repo("check-plain");
    let digest = push_busybox(env, "amd64", reg, &repo, "1.0");
    let mut src = source(env, reg, &repo);
    src["tag"] = json!("1.0");
    let out = resource("check", None, &json!({ "source": src }));
    out.success();
    assert_eq!(out.json(), json!([{ "tag": "1.0", "digest": digest }]));
}

#[test]
fn multi_arch_tags_report_the_index_digest() {
    let env = dev_env_or_skip!();
    let reg = &env.registries.plain;
    let repo = unique_repo("check-index");
    let digest = push_busybox(env, "latest", reg, &repo, "latest");
    let mut src = source(env, reg, &repo);
    src["tag"] = json!("latest");
    let out = resource("check", None, &json!({ "source": src }));
    assert_eq!(out.success().json(), json!([{ "tag": "latest", "digest": digest }]));
}

#[test]
fn numeric_tags_are_taken_verbatim() {
    let env = dev_env_or_skip!();
    let reg = &env.registries.plain;
    let repo = unique_repo("check-numeric");
    let digest = push_busybox(env, "amd64", reg, &repo, "42.1");
    let request = format!(r#"{{"source":{{"repository":"{}","tag":42.1}}}}"#, reg.repo(&repo));
    let out = kiln_tests::harness::run(kiln_tests::harness::command("check"), request.as_bytes());
    assert_eq!(out.success().json(), json!([{ "tag": "42.1", "digest": digest }]));
}

#[test]
fn missing_tag_is_an_empty_list() {
    let env = dev_env_or_skip!();
    let reg = &env.registries.plain;
    let repo = unique_repo("check-missing");
    push_busybox(env, "amd64", reg, &repo, "exists");
    let mut src = source(env, reg, &repo);
    src["tag"] = json!("does-not-exist");
    let out = resource("check", None, &json!({ "source": src }));
    assert_eq!(out.success().stdout.trim(), "[]");
}

#[test]
fn previous_version_comes_first_while_it_still_exists() {
    let env = dev_env_or_skip!();
    let reg = &env.registries.plain;
    let repo = unique_repo("check-previous");
    let old = push_busybox(env, "amd64", reg, &repo, "stable");
    let new = push_busybox(env, "latest", reg, &repo, "stable");
    assert_ne!(old, new);
    let mut src = source(env, reg, &repo);
    src["tag"] = json!("stable");

    let previous = json!({ "tag": "stable", "digest": old });
    let out = resource("check", None, &json!({ "source": src, "version": previous }));
    assert_eq!(out.success().json(), json!([previous, { "tag": "stable", "digest": new }]));

    // A previous digest the repository no longer has is dropped.
    let gone = json!({ "tag": "stable", "digest": format!("sha256:{}", "0".repeat(64)) });
    let out = resource("check", None, &json!({ "source": src, "version": gone }));
    assert_eq!(out.success().json(), json!([{ "tag": "stable", "digest": new }]));

    // The current version is not repeated.
    let current = json!({ "tag": "stable", "digest": new });
    let out = resource("check", None, &json!({ "source": src, "version": current }));
    assert_eq!(out.success().json(), json!([current]));
}

#[test]
fn tls_registry_needs_its_ca_and_works_with_it() {
    let env = dev_env_or_skip!();
    let reg = &env.registries.tls;
    let repo = unique_repo("check-tls");
    let digest = push_busybox(env, "amd64", reg, &repo, "v1");
    let mut src = source(env, reg, &repo);
    src["tag"] = json!("v1");
    let out = resource("check", None, &json!({ "source": src }));
    assert_eq!(out.success().json(), json!([{ "tag": "v1", "digest": digest }]));

    // Without the CA the certificate is not trusted: a clear failure, no fallback to HTTP.
    src.as_object_mut().unwrap().remove("ca_certs");
    let out = resource("check", None, &json!({ "source": src }));
    out.failure();
    assert!(out.stderr.contains("cannot reach registry"), "{}", out.stderr);
    assert!(out.stderr.to_lowercase().contains("certificate"), "{}", out.stderr);
    assert!(out.stdout.is_empty());
}

#[test]
fn basic_auth_registry_with_and_without_credentials() {
    let env = dev_env_or_skip!();
    let reg = &env.registries.basic;
    let repo = unique_repo("check-basic");
    let digest = push_busybox(env, "amd64", reg, &repo, "v1");
    let mut src = source(env, reg, &repo);
    src["tag"] = json!("v1");
    let out = resource("check", None, &json!({ "source": src }));
    assert_eq!(out.success().json(), json!([{ "tag": "v1", "digest": digest }]));

    let password = reg.password.clone().unwrap();
    src["password"] = json!("wrong-password");
    let out = resource("check", None, &json!({ "source": src }));
    assert_access_refused(&out, "check", &reg.addr, &repo, &[&password, "wrong-password"]);
    assert!(out.stderr.contains("check username and password"), "{}", out.stderr);
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
}

#[test]
fn token_auth_registry_with_and_without_credentials() {
    let env = dev_env_or_skip!();
    let reg = &env.registries.token;
    let repo = unique_repo("check-token");
    let digest = push_busybox(env, "latest", reg, &repo, "v1");
    let mut src = source(env, reg, &repo);
    src["tag"] = json!("v1");
    let out = resource("check", None, &json!({ "source": src }));
    assert_eq!(out.success().json(), json!([{ "tag": "v1", "digest": digest }]));

    let password = reg.password.clone().unwrap();
    let obj = src.as_object_mut().unwrap();
    obj.remove("username");
    obj.remove("password");
    let out = resource("check", None, &json!({ "source": src }));
    out.failure();
    assert!(out.stderr.contains("set username and password"), "{}", out.stderr);

    src["username"] = json!("kiln");
    src["password"] = json!("not-the-password");
    let out = resource("check", None, &json!({ "source": src }));
    assert_access_refused(&out, "check", &reg.addr, &repo, &[&password, "not-the-password"]);
    assert!(out.stderr.contains("check username and password"), "{}", out.stderr);
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
}

#[test]
fn unreachable_registry_is_a_clear_error() {
    // A port nothing listens on: bind one, note it, let it go.
    let port = kiln_tests::harness::free_port();
    let request = json!({ "source": { "repository": format!("127.0.0.1:{port}/some/app"), "tag": "latest" } });
    let out = resource("check", None, &request);
    out.failure();
    assert!(out.stderr.starts_with("check: cannot reach registry 127.0.0.1:"), "{}", out.stderr);
    assert!(out.stderr.contains("Connection refused"), "{}", out.stderr);
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
    assert!(out.stdout.is_empty());
}

#[test]
fn bad_requests_are_refused_before_any_network() {
    let cases: [(&[u8], &str); 6] = [
        (b"{not json", "invalid payload"),
        (b"", "stdin is empty"),
        (br#"{"source":{"repository":"a","tagg":"x"}}"#, r#"invalid payload: source: unknown field "tagg""#),
        (br#"{"source":{"repository":"a"},"extra":1}"#, r#"unknown field "extra""#),
        (br#"{"source":{"repository":"Not/Valid","tag":"x"}}"#, "source.repository"),
        (br#"{"source":{"repository":"a","tag":"bad tag"}}"#, "source.tag"),
    ];
    for (input, expected) in cases {
        let out = kiln_tests::harness::run(kiln_tests::harness::command("check"), input);
        out.failure();
        assert!(out.stderr.contains(expected), "input {:?}: {}", String::from_utf8_lossy(input), out.stderr);
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
        assert!(out.stdout.is_empty());
    }
}
