//! The resource without `username`/`password` in `source`: credentials come from Docker's
//! `config.json` (`auths`, `credHelpers`), the lookup the build task uses too, against the
//! htpasswd registry. The credential helper is a real executable speaking Docker's helper
//! protocol (`get`, host on stdin, JSON on stdout): the interface itself, not a stand-in server.

use std::path::Path;

use base64::Engine as _;
use kiln_tests::dev_env_or_skip;
use kiln_tests::harness::{DevEnv, Outcome, assert_access_refused, command, push_busybox, run, source, unique_repo};
use serde_json::json;

/// `check` for `repo` on the basic-auth registry with credentials removed from `source`,
/// `DOCKER_CONFIG` at `config` and `path` first on PATH.
fn check(env: &DevEnv, repo: &str, config: &Path, path: &Path) -> Outcome {
    let reg = &env.registries.basic;
    let mut src = source(env, reg, repo);
    src.as_object_mut().unwrap().remove("username");
    src.as_object_mut().unwrap().remove("password");
    let mut cmd = command("check");
    cmd.env("DOCKER_CONFIG", config).env("PATH", format!("{}:/usr/bin:/bin", path.display()));
    run(cmd, json!({ "source": src }).to_string().as_bytes())
}

#[test]
fn auths_and_credential_helpers_stand_in_for_source_credentials() {
    use std::os::unix::fs::PermissionsExt as _;
    let env = dev_env_or_skip!();
    let reg = &env.registries.basic;
    let (user, password) = (reg.username.clone().unwrap(), reg.password.clone().unwrap());
    let repo = unique_repo("dockercfg");
    let digest = push_busybox(env, "amd64", reg, &repo, "latest");
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();

    // No configuration: the registry refuses, and says what to do.
    let out = check(env, &repo, &dir.path().join("nowhere"), &bin);
    assert_access_refused(&out, "check", &reg.addr, &repo, &[&password]);
    assert!(out.stderr.contains("the registry wants credentials: set username and password"), "{}", out.stderr);

    // auths: base64 of user:password under the registry's host.
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    std::fs::write(
        dir.path().join("config.json"),
        json!({ "auths": { reg.addr.clone(): { "auth": auth } } }).to_string(),
    )
    .unwrap();
    let out = check(env, &repo, dir.path(), &bin);
    assert_eq!(out.success().json()[0]["digest"], json!(digest), "{}", out.stderr);

    // credHelpers: docker-credential-kiln-test answers for the host it is asked about.
    let helper = bin.join("docker-credential-kiln-test");
    let script = format!(
        "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread host\n[ \"$host\" = \"{}\" ] || {{ echo \"credentials not found in native keychain\"; exit 1; }}\n\
         printf '{{\"ServerURL\":\"%s\",\"Username\":\"{user}\",\"Secret\":\"{password}\"}}' \"$host\"\n",
        reg.addr
    );
    std::fs::write(&helper, script).unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        json!({ "credHelpers": { reg.addr.clone(): "kiln-test" } }).to_string(),
    )
    .unwrap();
    let out = check(env, &repo, dir.path(), &bin);
    assert_eq!(out.success().json()[0]["digest"], json!(digest), "{}", out.stderr);
    assert!(!out.stderr.contains(&password) && !out.stdout.contains(&password), "the password was printed");

    // A damaged configuration names the file.
    std::fs::write(dir.path().join("config.json"), "{ not json").unwrap();
    let out = check(env, &repo, dir.path(), &bin);
    out.failure();
    assert!(out.stderr.contains("config.json"), "{}", out.stderr);
}
