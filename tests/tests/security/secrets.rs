//! Secrets never leave: registry passwords and bearer tokens are not in anything `check`,
//! `in` and `out` print or write, with `debug: true` and on failure paths, against the
//! htpasswd and token-auth registries. (The build task's are in tests/tests/build/secrets.rs.)

use std::path::Path;

use kiln_tests::dev_env_or_skip;
use kiln_tests::harness::{
    DevEnv, Outcome, Registry, assert_access_refused, files_under, push_busybox, resource, source, unique_repo,
};
use serde_json::{Value, json};

/// Neither the password nor anything shaped like a JWT (a bearer token) appears anywhere.
fn assert_no_secret(what: &str, out: &Outcome, dir: &Path, password: &str) {
    for (name, text) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        assert!(!text.contains(password), "{what}: the password is in {name}:\n{text}");
        assert!(!text.contains("eyJ"), "{what}: a token-like string is in {name}:\n{text}");
    }
    for (name, bytes) in files_under(dir) {
        let found = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
        assert!(!found(password.as_bytes()) && !found(b"eyJhbGci"), "{what}: a secret is in {name}");
    }
}

fn cases(env: &DevEnv, reg: &Registry, name: &str) {
    let password = reg.password.clone().unwrap();
    let repo = unique_repo(name);
    let digest = push_busybox(env, "amd64", reg, &repo, "1.0.0");
    let mut good = source(env, reg, &repo);
    good["debug"] = true.into();
    let mut wrong = good.clone();
    wrong["password"] = format!("{password}-wrong").into();
    let version = json!({ "tag": "1.0.0", "digest": digest });

    let requests: Vec<(&str, &str, Value)> = vec![
        ("check", "good", json!({ "source": good })),
        ("check", "wrong password", json!({ "source": wrong })),
        ("in", "good", json!({ "source": good, "version": version })),
        ("in", "wrong password", json!({ "source": wrong, "version": version })),
    ];
    for (bin, label, request) in requests {
        let dir = tempfile::tempdir().unwrap();
        let out = resource(bin, Some(dir.path()), &request);
        if label == "good" {
            out.success();
        } else {
            assert_access_refused(&out, bin, &reg.addr, &repo, &[&password]);
        }
        assert_no_secret(&format!("{name} {bin} ({label})"), &out, dir.path(), &password);
    }

    // out pushes what in fetched, as oci, and fails cleanly with the wrong password.
    let dir = tempfile::tempdir().unwrap();
    let fetched = json!({ "source": good, "version": version, "params": { "format": "oci" } });
    resource("in", Some(dir.path()), &fetched).success();
    for (label, src) in [("good", &good), ("wrong password", &wrong)] {
        let request = json!({ "source": src, "params": { "image": "image.tar", "version": "2.0.0" } });
        let out = resource("out", Some(dir.path()), &request);
        if label == "good" {
            out.success();
        } else {
            assert_access_refused(&out, "out", &reg.addr, &repo, &[&password]);
        }
        assert_no_secret(&format!("{name} out ({label})"), &out, dir.path(), &password);
    }
}

#[test]
fn passwords_and_tokens_stay_out_of_everything_printed_or_written() {
    let env = dev_env_or_skip!();
    cases(env, &env.registries.basic, "secrets-basic");
    cases(env, &env.registries.token, "secrets-token");
}

/// A vars file's unquoted digits make a password a JSON number: the type error names the
/// field and never prints the value, in every step and in every secret field.
#[test]
fn numeric_secrets_are_not_echoed_in_type_errors() {
    let secret = 31415926535_u64;
    for field in ["password", "aws_secret_access_key", "aws_session_token"] {
        let mut src = json!({ "repository": "127.0.0.1:1/x", "username": "kiln" });
        src[field] = json!(secret);
        for (bin, request) in [
            ("check", json!({ "source": src })),
            ("in", json!({ "source": src, "version": { "tag": "1", "digest": format!("sha256:{}", "0".repeat(64)) } })),
            ("out", json!({ "source": src, "params": { "image": "x", "version": "1" } })),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let out = resource(bin, Some(dir.path()), &request);
            out.failure();
            assert!(out.stderr.contains(field), "{bin} {field}: the error names the field: {}", out.stderr);
            assert_no_secret(&format!("{bin} {field}"), &out, dir.path(), &secret.to_string());
        }
    }
    // A mirror's and cosign's secrets too.
    let src = json!({ "repository": "127.0.0.1:1/x", "registry_mirror": { "host": "m", "password": secret } });
    let out = resource("check", None, &json!({ "source": src }));
    out.failure();
    assert!(!out.stderr.contains(&secret.to_string()), "{}", out.stderr);
    let src = json!({ "repository": "127.0.0.1:1/x", "cosign": { "private_key": secret, "password": secret } });
    let out = resource("check", None, &json!({ "source": src }));
    out.failure();
    assert!(!out.stderr.contains(&secret.to_string()), "{}", out.stderr);
}
