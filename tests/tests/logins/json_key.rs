//! Google's registries (GCR, Artifact Registry) take `username: _json_key` with a service
//! account's whole JSON key as the password, through the ordinary token flow. The dev token
//! issuer accepts `_json_key` with a stand-in key that has what real keys have (several
//! lines once decoded, quotes, a PEM block); the resource, Docker's config.json and the build
//! task all pass it through intact and never print it.

use base64::Engine as _;
use kiln_tests::dev_env_or_skip;
use kiln_tests::harness::{build_task, push_busybox, resource, source, unique_repo, write_files};
use serde_json::json;

#[test]
fn a_json_key_is_a_password_like_any_other() {
    let env = dev_env_or_skip!();
    let reg = &env.registries.token;
    let key = std::fs::read_to_string(&env.json_key_file).unwrap();
    let private_key =
        serde_json::from_str::<serde_json::Value>(&key).unwrap()["private_key"].as_str().unwrap().to_string();
    let secret_line = private_key.lines().nth(1).unwrap().to_string();
    let repo = unique_repo("json-key");
    let digest = push_busybox(env, "amd64", reg, &repo, "1.0.0");

    let mut src = source(env, reg, &repo);
    src["username"] = "_json_key".into();
    src["password"] = key.clone().into();
    src["debug"] = true.into();
    let out = resource("check", None, &json!({ "source": src }));
    out.success();
    assert_eq!(out.json()[0]["digest"], json!(digest));
    let dest = tempfile::tempdir().unwrap();
    let got =
        resource("in", Some(dest.path()), &json!({ "source": src, "version": { "tag": "1.0.0", "digest": digest } }));
    got.success();
    for (what, text) in [("check", &out.stderr), ("in", &got.stderr)] {
        assert!(!text.contains(&secret_line) && !text.contains("private_key"), "{what} printed the key: {text}");
    }

    // A key that differs in one character is refused.
    src["password"] = key.replacen("kiln-dev", "kiln-deV", 1).into();
    resource("check", None, &json!({ "source": src })).failure();

    // `docker login -u _json_key --password-stdin < key.json` writes this; BuildKit pulls with it.
    let work = tempfile::tempdir().unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("_json_key:{key}"));
    write_files(
        work.path(),
        &[
            ("docker/config.json", &json!({ "auths": { reg.addr.clone(): { "auth": auth } } }).to_string()),
            ("ctx/Dockerfile", &format!("FROM {}:1.0.0\nRUN echo pulled with a json key\n", reg.repo(&repo))),
        ],
    );
    let docker = work.path().join("docker");
    let out = build_task(env, work.path(), &[], &[("CONTEXT", "ctx"), ("DOCKER_CONFIG", docker.to_str().unwrap())]);
    out.success();
    assert!(!out.stderr.contains(&secret_line), "the build printed the key");
}
