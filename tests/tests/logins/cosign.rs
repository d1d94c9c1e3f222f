//! Signatures with cosign's key pairs, cross-checked with the real `cosign` (trixie's
//! package, beside the dev engine): what `out` signs, `cosign verify --key` accepts (each
//! manifest of an index too), and what `cosign sign --key` signs, `check` and `in` accept;
//! unsigned images and other keys' signatures are refused; the same as OCI 1.1 referrers
//! (`--registry-referrers-mode=oci-1-1`). Offline: no transparency log.

use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_tests::dev_env_or_skip;
use kiln_tests::faultproxy::FaultProxy;
use kiln_tests::harness::{DevEnv, Outcome, resource, skopeo_digest, unique_repo};
use kiln_tests::images::noise_image_tar;
use serde_json::{Value, json};

const PASSWORD: &str = "cosign-pass-7e2b";

fn cosign(env: &DevEnv) -> PathBuf {
    env.docker.bin_dir.join("cosign")
}

/// A key pair made by `cosign generate-key-pair` in `dir`: (private PEM, public PEM).
fn key_pair(env: &DevEnv, dir: &Path) -> (String, String) {
    let out = Command::new(cosign(env))
        .arg("generate-key-pair")
        .current_dir(dir)
        .env("COSIGN_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(out.status.success(), "cosign generate-key-pair: {}", String::from_utf8_lossy(&out.stderr));
    (std::fs::read_to_string(dir.join("cosign.key")).unwrap(), std::fs::read_to_string(dir.join("cosign.pub")).unwrap())
}

fn cosign_cmd(env: &DevEnv, dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(cosign(env))
        .args(args)
        .current_dir(dir)
        .env("COSIGN_PASSWORD", PASSWORD)
        .env("HOME", dir)
        .output()
        .unwrap()
}

fn verify_with_cosign(env: &DevEnv, keys: &Path, image: &str) -> std::process::Output {
    cosign_cmd(env, keys, &["verify", "--key", "cosign.pub", "--insecure-ignore-tlog", "--allow-http-registry", image])
}

fn source(env: &DevEnv, repo: &str, cosign: Value) -> Value {
    source_at(&env.registries.plain.addr, repo, cosign)
}

/// The same for the registry at `addr`.
fn source_at(addr: &str, repo: &str, cosign: Value) -> Value {
    json!({ "repository": format!("{addr}/{repo}"), "cosign": cosign })
}

fn push(env: &DevEnv, dir: &Path, repo: &str, cosign: Value) -> Outcome {
    push_to(&env.registries.plain.addr, dir, repo, cosign)
}

/// `out` of `image.tar` in `dir` to the registry at `addr`.
fn push_to(addr: &str, dir: &Path, repo: &str, cosign: Value) -> Outcome {
    resource(
        "out",
        Some(dir),
        &json!({ "source": source_at(addr, repo, cosign), "params": { "image": "image.tar", "version": "1.0.0" } }),
    )
}

#[test]
fn what_kiln_signs_cosign_verifies_and_the_other_way_round() {
    let env = dev_env_or_skip!();
    let keys = tempfile::tempdir().unwrap();
    let (private, public) = key_pair(env, keys.path());
    let signing = json!({ "private_key": private, "password": PASSWORD });
    let verifying = json!({ "public_key": public });

    // out signs one image; cosign verifies it.
    let work = tempfile::tempdir().unwrap();
    let digest = noise_image_tar(work.path(), "1.0.0", 4096, 21);
    let repo = unique_repo("cosign-kiln");
    let out = push(env, work.path(), &repo, signing.clone());
    out.success();
    assert!(out.stderr.contains("signed"), "{}", out.stderr);
    assert!(!out.stderr.contains(PASSWORD), "the password was printed");
    let image = format!("{}/{repo}@{digest}", env.registries.plain.addr);
    let verified = verify_with_cosign(env, keys.path(), &image);
    assert!(verified.status.success(), "cosign verify: {}", String::from_utf8_lossy(&verified.stderr));
    // Pushing again adds no second signature.
    push(env, work.path(), &repo, signing.clone()).success();
    let sig = format!("{}/{repo}:{}", env.registries.plain.addr, digest.replacen(':', "-", 1) + ".sig");
    let manifest = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{sig}"))
        .output()
        .unwrap();
    let manifest: Value = serde_json::from_slice(&manifest.stdout).unwrap();
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 1, "{manifest}");

    // check and in take it with the public key.
    let out = resource("check", None, &json!({ "source": source(env, &repo, verifying.clone()) }));
    assert_eq!(out.success().json()[0]["digest"], json!(digest), "{}", out.stderr);

    // An index: out signs it and every manifest in it, as cosign sign --recursive does.
    let index_dir = tempfile::tempdir().unwrap();
    let copy = Command::new("skopeo")
        .args(["copy", "--quiet", "--all", "--src-tls-verify=false"])
        .arg(format!("docker://{}/library/busybox:latest", env.registries.plain.addr))
        .arg(format!("oci-archive:{}", index_dir.path().join("image.tar").display()))
        .output()
        .unwrap();
    assert!(copy.status.success(), "{}", String::from_utf8_lossy(&copy.stderr));
    let index_repo = unique_repo("cosign-index");
    push(env, index_dir.path(), &index_repo, signing.clone()).success();
    let index_digest = skopeo_digest(env, &env.registries.plain, &index_repo, "1.0.0");
    let raw = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}/{index_repo}:1.0.0", env.registries.plain.addr))
        .output()
        .unwrap();
    let index: Value = serde_json::from_slice(&raw.stdout).unwrap();
    let children: Vec<String> =
        index["manifests"].as_array().unwrap().iter().map(|m| m["digest"].as_str().unwrap().to_string()).collect();
    assert!(children.len() >= 2, "{index}");
    for digest in children.iter().chain([&index_digest]) {
        let image = format!("{}/{index_repo}@{digest}", env.registries.plain.addr);
        let verified = verify_with_cosign(env, keys.path(), &image);
        assert!(verified.status.success(), "cosign verify {image}: {}", String::from_utf8_lossy(&verified.stderr));
    }

    // cosign signs an image kiln pushed unsigned; check and in accept it.
    let repo = unique_repo("cosign-peer");
    push(env, work.path(), &repo, json!({})).success();
    let image = format!("{}/{repo}@{digest}", env.registries.plain.addr);
    let signed = cosign_cmd(
        env,
        keys.path(),
        &["sign", "--key", "cosign.key", "--tlog-upload=false", "--allow-http-registry", "--yes", &image],
    );
    assert!(signed.status.success(), "cosign sign: {}", String::from_utf8_lossy(&signed.stderr));
    let out = resource("check", None, &json!({ "source": source(env, &repo, verifying.clone()) }));
    assert_eq!(out.success().json()[0]["digest"], json!(digest), "{}", out.stderr);
    let dest = tempfile::tempdir().unwrap();
    let request =
        json!({ "source": source(env, &repo, verifying.clone()), "version": { "tag": "1.0.0", "digest": digest } });
    let out = resource("in", Some(dest.path()), &request);
    out.success();
    assert!(out.stderr.contains("verifies"), "{}", out.stderr);
}

#[test]
fn unsigned_images_and_other_keys_are_refused() {
    let env = dev_env_or_skip!();
    let ours = tempfile::tempdir().unwrap();
    let theirs = tempfile::tempdir().unwrap();
    let (_, public) = key_pair(env, ours.path());
    let (their_private, _) = key_pair(env, theirs.path());
    let verifying = json!({ "public_key": public });
    let work = tempfile::tempdir().unwrap();
    let digest = noise_image_tar(work.path(), "1.0.0", 4096, 22);

    for (what, cosign, says) in [
        ("unsigned", json!({}), "has no cosign signature"),
        (
            "signed with another key",
            json!({ "private_key": their_private, "password": PASSWORD }),
            "signed with another key",
        ),
    ] {
        let repo = unique_repo("cosign-refused");
        push(env, work.path(), &repo, cosign).success();
        let out = resource("check", None, &json!({ "source": source(env, &repo, verifying.clone()) }));
        assert_eq!(out.success().json(), json!([]), "{what}: {}", out.stderr);
        assert!(out.stderr.contains("skipping 1.0.0") && out.stderr.contains(says), "{what}: {}", out.stderr);
        let dest = tempfile::tempdir().unwrap();
        let request =
            json!({ "source": source(env, &repo, verifying.clone()), "version": { "tag": "1.0.0", "digest": digest } });
        let out = resource("in", Some(dest.path()), &request);
        out.failure();
        assert!(out.stderr.contains(says), "{what}: {}", out.stderr);
        assert_eq!(std::fs::read_dir(dest.path()).unwrap().count(), 0, "{what}: in left files");
    }

    // A wrong password: out stops before pushing anything, naming the field, not the password.
    let repo = unique_repo("cosign-password");
    let out = push(env, work.path(), &repo, json!({ "private_key": their_private, "password": "wrong-pass-31" }));
    out.failure();
    assert!(out.stderr.contains("source.cosign.password"), "{}", out.stderr);
    assert!(!out.stderr.contains("wrong-pass-31") && !out.stderr.contains("PRIVATE KEY"), "{}", out.stderr);
    assert!(kiln_tests::harness::plain_repo_exists(env, "library/busybox"), "the check can tell");
    assert!(!kiln_tests::harness::plain_repo_exists(env, &repo), "out pushed to {repo} before checking the key");
}

#[test]
fn signatures_as_oci_1_1_referrers_both_ways() {
    let env = dev_env_or_skip!();
    let keys = tempfile::tempdir().unwrap();
    let (private, public) = key_pair(env, keys.path());
    let signing = json!({ "private_key": private, "password": PASSWORD, "registry_referrers_mode": "oci-1-1" });
    let verifying = json!({ "public_key": public });
    let plain = &env.registries.plain.addr;

    // out stores the signature as a referrer: Debian's registry has no referrers API, so
    // under the fallback tag sha256-<hex>, and no .sig tag.
    let work = tempfile::tempdir().unwrap();
    let digest = noise_image_tar(work.path(), "1.0.0", 4096, 23);
    let repo = unique_repo("cosign-referrer");
    push(env, work.path(), &repo, signing.clone()).success();
    let hex = digest.trim_start_matches("sha256:");
    let tags = kiln_tests::harness::plain_tags(env, &repo);
    assert!(tags.contains(&format!("sha256-{hex}")) && !tags.iter().any(|t| t.ends_with(".sig")), "{tags:?}");
    let image = format!("{plain}/{repo}@{digest}");
    let oci11 = |image: &str| {
        cosign_cmd(
            env,
            keys.path(),
            &[
                "verify",
                "--key",
                "cosign.pub",
                "--insecure-ignore-tlog",
                "--allow-http-registry",
                "--experimental-oci11",
                image,
            ],
        )
    };
    let verified = oci11(&image);
    assert!(
        verified.status.success(),
        "cosign verify --experimental-oci11: {}",
        String::from_utf8_lossy(&verified.stderr)
    );
    // Without OCI 1.1, cosign looks only at the .sig tag: the test can tell where it went.
    assert!(!verify_with_cosign(env, keys.path(), &image).status.success(), "a .sig signature exists too");
    // Pushing again adds no second referrer.
    push(env, work.path(), &repo, signing.clone()).success();
    let index = env.crane().args(["manifest", "--insecure", &format!("{plain}/{repo}:sha256-{hex}")]).output().unwrap();
    let index: Value = serde_json::from_slice(&index.stdout).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1, "{index}");
    assert_eq!(index["manifests"][0]["artifactType"], json!("application/vnd.dev.cosign.artifact.sig.v1+json"));
    let out = resource("check", None, &json!({ "source": source(env, &repo, verifying.clone()) }));
    assert_eq!(out.success().json()[0]["digest"], json!(digest), "{}", out.stderr);

    // cosign signs an image kiln pushed unsigned, as a referrer; check and in accept it.
    let repo = unique_repo("cosign-referrer-peer");
    push(env, work.path(), &repo, json!({})).success();
    let out = resource("check", None, &json!({ "source": source(env, &repo, verifying.clone()) }));
    assert_eq!(out.success().json(), json!([]), "unsigned, yet taken: {}", out.stderr);
    let image = format!("{plain}/{repo}@{digest}");
    let signed = Command::new(cosign(env))
        .args(["sign", "--key", "cosign.key", "--tlog-upload=false", "--allow-http-registry", "--yes"])
        .args(["--registry-referrers-mode=oci-1-1", &image])
        .current_dir(keys.path())
        .env("COSIGN_PASSWORD", PASSWORD)
        .env("COSIGN_EXPERIMENTAL", "1")
        .env("HOME", keys.path())
        .output()
        .unwrap();
    assert!(signed.status.success(), "cosign sign: {}", String::from_utf8_lossy(&signed.stderr));
    let out = resource("check", None, &json!({ "source": source(env, &repo, verifying.clone()) }));
    assert_eq!(out.success().json()[0]["digest"], json!(digest), "{}", out.stderr);
    let dest = tempfile::tempdir().unwrap();
    let request = json!({ "source": source(env, &repo, verifying), "version": { "tag": "1.0.0", "digest": digest } });
    resource("in", Some(dest.path()), &request).success();

    // A mode cosign does not have is refused before anything is pushed.
    let bad = json!({ "private_key": private, "password": PASSWORD, "registry_referrers_mode": "oci-2" });
    let out = push(env, work.path(), &unique_repo("cosign-mode"), bad);
    out.failure();
    assert!(out.stderr.contains("source.cosign.registry_referrers_mode: \"oci-2\""), "{}", out.stderr);
}

/// A registry without the referrers API is asked once per push, not again when the
/// signature is added to the fallback tag: counted by a proxy in front of Debian's registry.
#[test]
fn a_referrer_push_asks_the_referrers_api_once() {
    let env = dev_env_or_skip!();
    let keys = tempfile::tempdir().unwrap();
    let (private, public) = key_pair(env, keys.path());
    let signing = json!({ "private_key": private, "password": PASSWORD, "registry_referrers_mode": "oci-1-1" });
    let proxy = FaultProxy::start(&env.registries.plain.addr, Vec::new());
    let work = tempfile::tempdir().unwrap();
    let digest = noise_image_tar(work.path(), "1.0.0", 4096, 29);
    let repo = unique_repo("cosign-referrer-once");
    push_to(&proxy.addr, work.path(), &repo, signing).success();
    let requests = proxy.requests();
    let asked: Vec<_> = requests.iter().filter(|r| r.contains("/referrers/")).collect();
    assert_eq!(asked.len(), 1, "{requests:#?}");
    // The signature did land under the fallback tag, and verifies.
    let hex = digest.trim_start_matches("sha256:");
    assert!(
        requests.iter().any(|r| r.starts_with("PUT") && r.ends_with(&format!("/manifests/sha256-{hex}"))),
        "{requests:#?}"
    );
    let verifying = json!({ "public_key": public });
    let out = resource("check", None, &json!({ "source": source(env, &repo, verifying) }));
    assert_eq!(out.success().json()[0]["digest"], json!(digest), "{}", out.stderr);
}
