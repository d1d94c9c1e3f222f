//! The resource without `username`/`password` in `source`: credentials come from Docker's
//! `config.json` (`auths`, `credHelpers`), the lookup the build task uses too, against the
//! htpasswd registry. The credential helper is a real executable speaking Docker's helper
//! protocol (`get`, host on stdin, JSON on stdout): the interface itself, not a stand-in server.

use std::path::Path;

use base64::Engine as _;
use kiln_tests::dev_env_or_skip;
use kiln_tests::harness::{
    DevEnv, Outcome, Registry, assert_access_refused, command, push_busybox, run, source, unique_repo,
};
use serde_json::json;

/// `check` for `repo` on `reg` with credentials removed from `source`, `DOCKER_CONFIG` at
/// `config` and `path` first on PATH.
fn check(env: &DevEnv, reg: &Registry, repo: &str, config: &Path, path: &Path) -> Outcome {
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
    let out = check(env, reg, &repo, &dir.path().join("nowhere"), &bin);
    assert_access_refused(&out, "check", &reg.addr, &repo, &[&password]);
    assert!(out.stderr.contains("the registry wants credentials: set username and password"), "{}", out.stderr);

    // auths: base64 of user:password under the registry's host.
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    std::fs::write(
        dir.path().join("config.json"),
        json!({ "auths": { reg.addr.clone(): { "auth": auth } } }).to_string(),
    )
    .unwrap();
    let out = check(env, reg, &repo, dir.path(), &bin);
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
    let out = check(env, reg, &repo, dir.path(), &bin);
    assert_eq!(out.success().json()[0]["digest"], json!(digest), "{}", out.stderr);
    assert!(!out.stderr.contains(&password) && !out.stdout.contains(&password), "the password was printed");

    // A damaged configuration names the file.
    std::fs::write(dir.path().join("config.json"), "{ not json").unwrap();
    let out = check(env, reg, &repo, dir.path(), &bin);
    out.failure();
    assert!(out.stderr.contains("config.json"), "{}", out.stderr);
}

/// A `config.json` `identitytoken` (what `docker login` keeps from a token service that
/// gives refresh tokens, and `az acr login` writes) is exchanged at the realm with the
/// OAuth2 refresh-token grant, never sent as Basic auth; the dev token issuer answers that
/// grant as distribution's token server does. A token it did not issue is refused.
#[test]
fn an_identity_token_is_exchanged_at_the_realm() {
    let env = dev_env_or_skip!();
    let reg = &env.registries.token;
    let (user, password) = (reg.username.clone().unwrap(), reg.password.clone().unwrap());
    let repo = unique_repo("identitytoken");
    let digest = push_busybox(env, "amd64", reg, &repo, "latest");

    // The realm, from the registry's own challenge, and a refresh token from it, as
    // `docker login` asks for one (`offline_token=true`).
    let curl = |args: &[&str]| {
        let out = std::process::Command::new("curl").args(["-s", "--cacert"]).arg(&env.ca_cert).args(args).output();
        String::from_utf8(out.unwrap().stdout).unwrap()
    };
    let headers = curl(&["-i", &format!("https://{}/v2/", reg.addr)]);
    let challenge = headers
        .lines()
        .find_map(|l| l.strip_prefix("www-authenticate: ").or_else(|| l.strip_prefix("Www-Authenticate: ")))
        .expect("the token registry challenges");
    let param = |name: &str| {
        let start = challenge.find(&format!("{name}=\"")).unwrap_or_else(|| panic!("no {name} in {challenge}"));
        let value = &challenge[start + name.len() + 2..];
        value[..value.find('"').unwrap()].to_string()
    };
    let (realm, service) = (param("realm"), param("service"));
    let answer = curl(&["-u", &format!("{user}:{password}"), &format!("{realm}?service={service}&offline_token=true")]);
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    let refresh = answer["refresh_token"].as_str().expect("a refresh token").to_string();

    let dir = tempfile::tempdir().unwrap();
    let check_with = |token: &str| {
        std::fs::write(
            dir.path().join("config.json"),
            json!({ "auths": { reg.addr.clone(): { "identitytoken": token } } }).to_string(),
        )
        .unwrap();
        check(env, reg, &repo, dir.path(), Path::new("/usr/local/bin"))
    };
    let out = check_with(&refresh);
    assert_eq!(out.success().json()[0]["digest"], json!(digest), "{}", out.stderr);
    assert!(!out.stderr.contains(&refresh), "the identity token was printed: {}", out.stderr);

    // A token the issuer never gave: refused, and the refusal says so.
    let out = check_with("bm90LWEtdXNlcg.forged");
    assert_access_refused(&out, "check", &reg.addr, &repo, &["forged"]);
}
