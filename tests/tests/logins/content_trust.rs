//! `source.content_trust`: Notary v1 against the real notary-server and notary-signer
//! (trixie's `notary`, started by dev-env, token auth from the dev issuer), cross-checked
//! with the real `notary` CLI and Docker's `docker trust inspect`: `out` signs into a GUN
//! prepared the way the anchor's README asks (`notary init -p`, then `notary key rotate …
//! snapshot -r`) or initialises one the server does not know; `check` and `in` keep only
//! what the GUN's targets sign, whoever signed it.

use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_tests::dev_env_or_skip;
use kiln_tests::harness::{DevEnv, Outcome, resource, skopeo_digest, unique_repo};
use kiln_tests::images::noise_image_tar;
use serde_json::{Value, json};

const TARGETS_PASSPHRASE: &str = "targets-pass-51c9";

/// A notary CLI trust folder for one GUN on the dev notary server.
struct Trust {
    dir: tempfile::TempDir,
    gun: String,
}

impl Trust {
    fn notary(&self, env: &DevEnv, args: &[&str]) -> std::process::Output {
        let token = &env.registries.token;
        let auth = base64(&format!("{}:{}", token.username.as_deref().unwrap(), token.password.as_deref().unwrap()));
        Command::new(env.notary.bin_dir.join("notary"))
            .arg("-s")
            .arg(format!("https://{}", env.notary.addr))
            .arg("--tlscacert")
            .arg(&env.ca_cert)
            .arg("-d")
            .arg(self.dir.path())
            .args(args)
            .env("NOTARY_AUTH", auth)
            .env("NOTARY_ROOT_PASSPHRASE", "root-pass-0a4f")
            .env("NOTARY_TARGETS_PASSPHRASE", TARGETS_PASSPHRASE)
            .env("NOTARY_SNAPSHOT_PASSPHRASE", "snapshot-pass-77d2")
            .output()
            .unwrap()
    }

    /// `notary init -p` and the snapshot key handed to the server, as a publisher holding
    /// only the targets key needs.
    fn init(env: &DevEnv, repo: &str) -> Self {
        let trust = Trust { dir: tempfile::tempdir().unwrap(), gun: format!("{}/{repo}", env.registries.plain.addr) };
        for args in [vec!["init", "-p", &trust.gun], vec!["key", "rotate", &trust.gun, "snapshot", "-r"]] {
            let out = trust.notary(env, &args);
            assert!(out.status.success(), "notary {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        trust
    }

    /// The targets key: its id (the file's name) and the file's text.
    fn targets_key(&self) -> (String, String) {
        for entry in std::fs::read_dir(self.dir.path().join("private")).unwrap() {
            let path: PathBuf = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            if text.contains("role: targets") {
                return (path.file_stem().unwrap().to_string_lossy().into_owned(), text);
            }
        }
        panic!("no targets key in {}", self.dir.path().display());
    }

    /// `notary list`: (tag, sha256 hex, size) rows.
    fn list(&self, env: &DevEnv) -> Vec<(String, String, u64)> {
        let out = self.notary(env, &["list", &self.gun]);
        assert!(
            out.status.success(),
            "notary list: {}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .skip(2)
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() >= 3).then(|| (f[0].to_string(), f[1].to_string(), f[2].parse().unwrap()))
            })
            .collect()
    }
}

/// `docker trust inspect` (the trixie docker CLI) of `image`, with the dev notary server
/// as its trust server, the dev CA for it and the token registry's login: its JSON.
fn docker_trust_inspect(env: &DevEnv, image: &str) -> Value {
    let config = tempfile::tempdir().unwrap();
    let tls = config.path().join("tls").join(&env.notary.addr);
    std::fs::create_dir_all(&tls).unwrap();
    std::fs::copy(&env.ca_cert, tls.join("ca.crt")).unwrap();
    let token = &env.registries.token;
    let login = base64(&format!("{}:{}", token.username.as_deref().unwrap(), token.password.as_deref().unwrap()));
    let auths = json!({ "auths": { env.registries.plain.addr.clone(): { "auth": login } } });
    std::fs::write(config.path().join("config.json"), auths.to_string()).unwrap();
    let out = Command::new(env.docker.bin_dir.join("docker"))
        .args(["trust", "inspect", image])
        .env("DOCKER_CONFIG", config.path())
        .env("DOCKER_CONTENT_TRUST_SERVER", format!("https://{}", env.notary.addr))
        .env("DOCKER_HOST", format!("unix://{}", env.docker.socket.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker trust inspect {image}: {}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn base64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn content_trust(env: &DevEnv, key_id: &str, key: &str, passphrase: &str) -> Value {
    let token = &env.registries.token;
    json!({
        "server": format!("https://{}", env.notary.addr),
        "repository_key_id": key_id,
        "repository_key": key,
        "repository_passphrase": passphrase,
        "username": token.username,
        "password": token.password,
    })
}

fn push(env: &DevEnv, dir: &Path, repo: &str, trust: Value, tags: &[&str]) -> Outcome {
    std::fs::write(dir.join("tags"), tags[1..].join(" ")).unwrap();
    let source = json!({
        "repository": format!("{}/{repo}", env.registries.plain.addr),
        "ca_certs": [std::fs::read_to_string(&env.ca_cert).unwrap()],
        "content_trust": trust,
        // Debug output too must hold no secret.
        "debug": true,
    });
    resource(
        "out",
        Some(dir),
        &json!({ "source": source, "params": { "image": "image.tar", "version": tags[0], "additional_tags": "tags" } }),
    )
}

/// The size in bytes of the manifest the registry serves for `repo:tag`.
fn manifest_size(env: &DevEnv, repo: &str, tag: &str) -> u64 {
    let out = env
        .crane()
        .args(["manifest", "--insecure", &format!("{}/{repo}:{tag}", env.registries.plain.addr)])
        .output()
        .unwrap();
    assert!(out.status.success(), "crane manifest: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout.len() as u64
}

#[test]
fn what_out_signs_notary_lists_at_the_registrys_digest() {
    let env = dev_env_or_skip!();
    let repo = unique_repo("notary");
    let trust = Trust::init(env, &repo);
    let (key_id, key) = trust.targets_key();
    let work = tempfile::tempdir().unwrap();
    noise_image_tar(work.path(), "1.0.0", 4096, 31);
    let out =
        push(env, work.path(), &repo, content_trust(env, &key_id, &key, TARGETS_PASSPHRASE), &["1.0.0", "latest"]);
    out.success();
    assert!(out.stderr.contains(&format!("signed 1.0.0, latest in {}", trust.gun)), "{}", out.stderr);
    for secret in [
        TARGETS_PASSPHRASE,
        env.registries.token.password.as_deref().unwrap(),
        key.lines().max_by_key(|l| l.len()).unwrap(),
    ] {
        assert!(!out.stderr.contains(secret) && !out.stdout.contains(secret), "a secret was printed:\n{}", out.stderr);
        for (name, bytes) in kiln_tests::harness::files_under(work.path()) {
            assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "a secret was written to {name}");
        }
    }
    // Nor the notary server's bearer token.
    assert!(!out.stderr.contains("eyJ") && !out.stdout.contains("eyJ"), "a token was printed:\n{}", out.stderr);
    let digest = skopeo_digest(env, &env.registries.plain, &repo, "1.0.0");
    let size = manifest_size(env, &repo, "1.0.0");
    let mut listed = trust.list(env);
    listed.sort();
    let hex = digest.trim_start_matches("sha256:").to_string();
    assert_eq!(listed, vec![("1.0.0".to_string(), hex.clone(), size), ("latest".to_string(), hex.clone(), size)]);

    // Docker's own client reads the same signatures.
    let inspected = docker_trust_inspect(env, &format!("{}/{repo}:1.0.0", env.registries.plain.addr));
    let signed: Vec<(String, String)> = inspected[0]["SignedTags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["SignedTag"].as_str().unwrap().to_string(), t["Digest"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(signed, vec![("1.0.0".to_string(), hex.clone())], "{inspected}");

    // A second image under 2.0.0 and latest: latest moves, 1.0.0 stays.
    let again = tempfile::tempdir().unwrap();
    noise_image_tar(again.path(), "2.0.0", 4096, 32);
    push(env, again.path(), &repo, content_trust(env, &key_id, &key, TARGETS_PASSPHRASE), &["2.0.0", "latest"])
        .success();
    let second = skopeo_digest(env, &env.registries.plain, &repo, "2.0.0");
    let listed: Vec<(String, String)> = trust.list(env).into_iter().map(|(t, d, _)| (t, d)).collect();
    let second_hex = second.trim_start_matches("sha256:").to_string();
    assert!(listed.contains(&("1.0.0".into(), hex)), "{listed:?}");
    assert!(listed.contains(&("2.0.0".into(), second_hex.clone())), "{listed:?}");
    assert!(listed.contains(&("latest".into(), second_hex)), "{listed:?}");
}

#[test]
fn a_key_that_cannot_sign_fails_before_anything_is_pushed() {
    let env = dev_env_or_skip!();
    let repo = unique_repo("notary-bad");
    let trust = Trust::init(env, &repo);
    let (key_id, key) = trust.targets_key();
    let work = tempfile::tempdir().unwrap();
    noise_image_tar(work.path(), "1.0.0", 4096, 33);
    let cases = [
        (content_trust(env, &key_id, &key, "wrong-passphrase"), "the passphrase does not decrypt the key"),
        (content_trust(env, &"0".repeat(64), &key, TARGETS_PASSPHRASE), "repository_key_id is 0000"),
        (content_trust(env, &key_id, "not a key", TARGETS_PASSPHRASE), "source.content_trust.repository_key: "),
    ];
    for (trust_source, want) in cases {
        let out = push(env, work.path(), &repo, trust_source, &["1.0.0"]);
        out.failure();
        assert!(out.stderr.contains(want), "want {want:?}:\n{}", out.stderr);
        assert!(!out.stderr.contains("wrong-passphrase") && !out.stderr.contains(TARGETS_PASSPHRASE), "{}", out.stderr);
    }
    let head = Command::new("skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            "--raw",
            &format!("docker://{}/{repo}:1.0.0", env.registries.plain.addr),
        ])
        .output()
        .unwrap();
    assert!(!head.status.success(), "the image was pushed");
    assert!(
        String::from_utf8_lossy(&head.stderr).contains("manifest unknown"),
        "{}",
        String::from_utf8_lossy(&head.stderr)
    );
}

#[test]
fn out_initialises_a_gun_the_server_does_not_know_as_notary_init_would() {
    let env = dev_env_or_skip!();
    // A targets key notary made for another GUN, for one nobody initialised.
    let trust = Trust::init(env, &unique_repo("notary-key"));
    let (key_id, key) = trust.targets_key();
    let repo = unique_repo("notary-new");
    let work = tempfile::tempdir().unwrap();
    noise_image_tar(work.path(), "1.0.0", 4096, 34);
    let out = push(env, work.path(), &repo, content_trust(env, &key_id, &key, TARGETS_PASSPHRASE), &["1.0.0"]);
    out.success();
    let gun = format!("{}/{repo}", env.registries.plain.addr);
    assert!(out.stderr.contains(&format!("{gun} was not on")) && out.stderr.contains("new root key"), "{}", out.stderr);
    let digest = skopeo_digest(env, &env.registries.plain, &repo, "1.0.0");
    let hex = digest.trim_start_matches("sha256:").to_string();
    let size = manifest_size(env, &repo, "1.0.0");
    // A notary CLI that has never seen the GUN takes kiln's root (its certificate names the
    // GUN) and lists the tag; so does Docker's client; so do kiln's check and in.
    let stranger = Trust { dir: tempfile::tempdir().unwrap(), gun: gun.clone() };
    assert_eq!(stranger.list(env), vec![("1.0.0".to_string(), hex.clone(), size)]);
    let inspected = docker_trust_inspect(env, &format!("{gun}:1.0.0"));
    assert_eq!(inspected[0]["SignedTags"][0]["Digest"], json!(hex), "{inspected}");
    let server = format!("https://{}", env.notary.addr);
    let out = resource("check", None, &json!({ "source": verifying_source(env, &repo, &server) }));
    assert_eq!(out.success().json()[0]["digest"], json!(digest), "{}", out.stderr);

    // The next push signs into what the first made, with the same key.
    let again = tempfile::tempdir().unwrap();
    noise_image_tar(again.path(), "2.0.0", 4096, 35);
    let out = push(env, again.path(), &repo, content_trust(env, &key_id, &key, TARGETS_PASSPHRASE), &["2.0.0"]);
    out.success();
    assert!(!out.stderr.contains("was not on"), "{}", out.stderr);
    let tags: Vec<String> = stranger.list(env).into_iter().map(|(t, ..)| t).collect();
    assert_eq!(tags, ["1.0.0", "2.0.0"]);

    // A key that is not the GUN's targets key: the put fails after the push, saying so.
    let other = Trust::init(env, &unique_repo("notary-other"));
    let (other_id, other_key) = other.targets_key();
    let third = tempfile::tempdir().unwrap();
    noise_image_tar(third.path(), "3.0.0", 4096, 36);
    let out = push(env, third.path(), &repo, content_trust(env, &other_id, &other_key, TARGETS_PASSPHRASE), &["3.0.0"]);
    out.failure();
    assert!(out.stderr.contains("is not one of this repository's targets keys"), "{}", out.stderr);
    assert!(out.stderr.contains("the image is pushed as 3.0.0, but not signed"), "{}", out.stderr);
    assert_eq!(stranger.list(env).len(), 2);
}

/// `source` for `check` and `in`: the same repository and notary server; no key needed.
fn verifying_source(env: &DevEnv, repo: &str, server: &str) -> Value {
    let token = &env.registries.token;
    json!({
        "repository": format!("{}/{repo}", env.registries.plain.addr),
        "ca_certs": [std::fs::read_to_string(&env.ca_cert).unwrap()],
        "content_trust": { "server": server, "username": token.username, "password": token.password },
    })
}

#[test]
fn check_and_in_take_only_what_notary_signed() {
    let env = dev_env_or_skip!();
    let repo = unique_repo("notary-verify");
    let trust = Trust::init(env, &repo);
    let mut pushed = Vec::new();
    for (tag, seed) in [("1.0.0", 41), ("2.0.0", 42), ("3.0.0", 43)] {
        let work = tempfile::tempdir().unwrap();
        noise_image_tar(work.path(), tag, 4096, seed);
        push(env, work.path(), &repo, Value::Null, &[tag]).success();
        let digest = skopeo_digest(env, &env.registries.plain, &repo, tag);
        pushed.push((digest, manifest_size(env, &repo, tag)));
    }
    let hex = |i: usize| pushed[i].0.trim_start_matches("sha256:").to_string();
    // The notary CLI signs 1.0.0 as the registry serves it, and 2.0.0 at 3.0.0's manifest
    // (a target that is not what the tag holds); 3.0.0 it leaves unsigned.
    for (tag, i) in [("1.0.0", 0), ("2.0.0", 2)] {
        let out = trust.notary(env, &["addhash", &trust.gun, tag, &pushed[i].1.to_string(), "--sha256", &hex(i)]);
        assert!(out.status.success(), "notary addhash: {}", String::from_utf8_lossy(&out.stderr));
    }
    let out = trust.notary(env, &["publish", &trust.gun]);
    assert!(out.status.success(), "notary publish: {}", String::from_utf8_lossy(&out.stderr));

    let server = format!("https://{}", env.notary.addr);
    let source = verifying_source(env, &repo, &server);
    let out = resource("check", None, &json!({ "source": source }));
    let tags: Vec<Value> = out.success().json().as_array().unwrap().iter().map(|v| v["tag"].clone()).collect();
    assert_eq!(tags, vec![json!("1.0.0")], "{}", out.stderr);
    assert!(out.stderr.contains("skipping 2.0.0") && out.stderr.contains("skipping 3.0.0"), "{}", out.stderr);

    let get = |tag: &str, i: usize| {
        let dest = tempfile::tempdir().unwrap();
        let request = json!({ "source": source, "version": { "tag": tag, "digest": pushed[i].0 } });
        let out = resource("in", Some(dest.path()), &request);
        let left = std::fs::read_dir(dest.path()).unwrap().count();
        (out, left)
    };
    let (out, _) = get("1.0.0", 0);
    out.success();
    assert!(out.stderr.contains("is signed in Notary as 1.0.0"), "{}", out.stderr);
    // 2.0.0's own manifest is signed under no tag: refused, saying what 2.0.0 is signed at.
    let (out, left) = get("2.0.0", 1);
    out.failure();
    let want =
        format!("no tag in {} on {server} is signed at {}; 2.0.0 is signed at {}", trust.gun, pushed[1].0, pushed[2].0);
    assert!(out.stderr.contains(&want), "want {want:?}:\n{}", out.stderr);
    assert_eq!(left, 0, "in left files");
    // 3.0.0's manifest is signed, as 2.0.0: in takes the digest, as Notary names it.
    let (out, _) = get("3.0.0", 2);
    out.success();
    assert!(out.stderr.contains("is signed in Notary as 2.0.0"), "{}", out.stderr);

    // A GUN the server does not know, and a server that is not there: one line each.
    let unknown = verifying_source(env, &unique_repo("notary-none"), &server);
    let out = resource("check", None, &json!({ "source": unknown }));
    out.failure();
    assert!(out.stderr.contains("has no trust data for"), "{}", out.stderr);
    let gone = verifying_source(env, &repo, &format!("https://127.0.0.1:{}", kiln_tests::harness::free_port()));
    let out = resource("check", None, &json!({ "source": gone }));
    out.failure();
    assert!(out.stderr.contains("content_trust") && out.stderr.contains("127.0.0.1"), "{}", out.stderr);
    // Said once, and an https server is never tried over plain HTTP, even on loopback.
    assert_eq!(out.stderr.matches("cannot reach").count(), 1, "{}", out.stderr);
    assert!(!out.stderr.contains("http://"), "{}", out.stderr);
    assert!(!out.stderr.contains(env.registries.token.password.as_deref().unwrap()), "{}", out.stderr);
}

#[test]
fn an_index_is_signed_as_itself_under_its_tag() {
    let env = dev_env_or_skip!();
    let work = tempfile::tempdir().unwrap();
    let copy = Command::new("skopeo")
        .args(["copy", "--quiet", "--all", "--src-tls-verify=false"])
        .arg(format!("docker://{}/library/busybox:latest", env.registries.plain.addr))
        .arg(format!("oci-archive:{}", work.path().join("image.tar").display()))
        .output()
        .unwrap();
    assert!(copy.status.success(), "{}", String::from_utf8_lossy(&copy.stderr));
    let trust = Trust::init(env, &unique_repo("notary-index-key"));
    let (key_id, key) = trust.targets_key();
    let repo = unique_repo("notary-index");
    push(env, work.path(), &repo, content_trust(env, &key_id, &key, TARGETS_PASSPHRASE), &["1.0.0"]).success();
    let digest = skopeo_digest(env, &env.registries.plain, &repo, "1.0.0");
    let raw = env
        .crane()
        .args(["manifest", "--insecure", &format!("{}/{repo}:1.0.0", env.registries.plain.addr)])
        .output()
        .unwrap();
    let index: Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert!(index["manifests"].as_array().is_some_and(|m| m.len() >= 2), "not an index: {index}");
    // The tag names the index, as check reports it and a client resolves it; the anchor
    // signs each child in turn under the tag, so its last child wins.
    let stranger = Trust { dir: tempfile::tempdir().unwrap(), gun: format!("{}/{repo}", env.registries.plain.addr) };
    let hex = digest.trim_start_matches("sha256:").to_string();
    assert_eq!(stranger.list(env), vec![("1.0.0".to_string(), hex, raw.stdout.len() as u64)]);
}

#[test]
fn tls_cert_and_key_reach_a_server_that_asks_for_a_client_certificate() {
    let env = dev_env_or_skip!();
    let trust = Trust::init(env, &unique_repo("notary-mtls-key"));
    let (key_id, key) = trust.targets_key();
    let (cert_pem, key_pem) = (
        std::fs::read_to_string(&env.buildkitd.client_cert).unwrap(),
        std::fs::read_to_string(&env.buildkitd.client_key).unwrap(),
    );
    let server = format!("https://{}", env.notary.mtls_addr);
    let with = |cert: Option<&str>, tls_key: Option<&str>| {
        let mut trust = content_trust(env, &key_id, &key, TARGETS_PASSPHRASE);
        trust["server"] = json!(server);
        trust["tls_cert"] = json!(cert);
        trust["tls_key"] = json!(tls_key);
        trust
    };
    let repo = unique_repo("notary-mtls");
    let work = tempfile::tempdir().unwrap();
    noise_image_tar(work.path(), "1.0.0", 4096, 37);

    // Half a client identity, or one that is not PEM: refused before anything is pushed.
    for (cert, tls_key, says) in [
        (Some(cert_pem.as_str()), None, "tls_cert is set without tls_key"),
        (None, Some(key_pem.as_str()), "tls_key is set without tls_cert"),
        (Some(cert_pem.as_str()), Some("not a key"), "source.content_trust.tls_cert/tls_key: "),
    ] {
        let out = push(env, work.path(), &repo, with(cert, tls_key), &["1.0.0"]);
        out.failure();
        assert!(out.stderr.contains(says), "want {says:?}:\n{}", out.stderr);
        assert!(!out.stderr.contains("pushed"), "{}", out.stderr);
    }
    assert!(!kiln_tests::harness::plain_repo_exists(env, &repo), "something was pushed");

    // Without a certificate the server hangs up in the handshake: the put fails, pushed.
    let out = push(env, work.path(), &repo, with(None, None), &["1.0.0"]);
    out.failure();
    assert!(out.stderr.contains("the image is pushed as 1.0.0, but not signed"), "{}", out.stderr);

    assert!(out.stderr.contains("certificate it trusts; none was given"), "{}", out.stderr);
    // With it, out signs (initialising the GUN) and check verifies, through the same door.
    let out = push(env, work.path(), &repo, with(Some(&cert_pem), Some(&key_pem)), &["1.0.0"]);
    out.success();
    let body = key_pem.lines().filter(|l| !l.starts_with("-----")).max_by_key(|l| l.len()).unwrap();
    assert!(!out.stderr.contains(body) && !out.stdout.contains(body), "the client key was printed");
    let digest = skopeo_digest(env, &env.registries.plain, &repo, "1.0.0");
    let mut source = verifying_source(env, &repo, &server);
    source["content_trust"]["tls_cert"] = json!(cert_pem);
    source["content_trust"]["tls_key"] = json!(key_pem);
    let out = resource("check", None, &json!({ "source": source }));
    assert_eq!(out.success().json()[0]["digest"], json!(digest), "{}", out.stderr);

    // And the notary CLI, given the same certificate in its config, lists it.
    let dir = tempfile::tempdir().unwrap();
    let config = json!({
        "trust_dir": dir.path().join("trust"),
        "remote_server": {
            "url": server,
            "root_ca": env.ca_cert,
            "tls_client_cert": env.buildkitd.client_cert,
            "tls_client_key": env.buildkitd.client_key,
        },
    });
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let token = &env.registries.token;
    let out = Command::new(env.notary.bin_dir.join("notary"))
        .arg("-c")
        .arg(dir.path().join("config.json"))
        .args(["list", &format!("{}/{repo}", env.registries.plain.addr)])
        .env(
            "NOTARY_AUTH",
            base64(&format!("{}:{}", token.username.as_deref().unwrap(), token.password.as_deref().unwrap())),
        )
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "notary list: {}{listed}", String::from_utf8_lossy(&out.stderr));
    assert!(listed.contains(digest.trim_start_matches("sha256:")), "{listed}");
}
