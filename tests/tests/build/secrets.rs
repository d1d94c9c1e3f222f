//! The build task's secrets never leave: `BUILDKIT_SECRETTEXT_*` values, secret files, the
//! registry password in Docker's config.json, the bearer tokens the token registry issues
//! and an SSH private key are searched for in every byte the task prints or leaves in its
//! outputs, with `DEBUG=true`, when the build succeeds and on each way it can fail.

use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use kiln_tests::dev_env_or_skip;
use kiln_tests::harness::{DevEnv, Outcome, build_task, files_under, push_busybox, unique_repo, write_files};
use serde_json::json;

const TEXT: &str = "secret-text-9f1c2e";
const FILE: &str = "secret-file-4b7d0a";

struct Secrets {
    needles: Vec<(&'static str, String)>,
}

impl Secrets {
    fn assert_absent(&self, what: &str, out: &Outcome, outputs: &[&Path]) {
        let mut places = vec![
            ("stdout".to_string(), out.stdout.as_bytes().to_vec()),
            ("stderr".to_string(), out.stderr.as_bytes().to_vec()),
        ];
        for dir in outputs {
            places.extend(files_under(dir));
        }
        for (place, bytes) in &places {
            for (name, needle) in &self.needles {
                let found = bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
                assert!(!found, "{what}: {name} is in {place}:\n{}", out.stderr);
            }
            assert!(!bytes.windows(8).any(|w| w == b"eyJhbGci"), "{what}: a bearer token is in {place}");
        }
    }
}

/// The work folder: a context, a secret file, an SSH key, and Docker's config.json with the
/// basic-auth registry's password (or a wrong one).
fn setup(env: &DevEnv, work: &Path, wrong_password: bool) -> Secrets {
    let reg = &env.registries.basic;
    let password = reg.password.clone().unwrap();
    let given = if wrong_password { format!("{password}-wrong") } else { password.clone() };
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{}:{given}", reg.username.clone().unwrap()));
    write_files(
        work,
        &[
            ("secret-file", FILE),
            ("docker/config.json", &json!({ "auths": { reg.addr.clone(): { "auth": auth } } }).to_string()),
            ("ctx/hello", "hello\n"),
        ],
    );
    let key = work.join("key");
    let keygen = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&key).output().unwrap();
    assert!(keygen.status.success());
    // The middle line of the key file's base64: the private part.
    let key_text = std::fs::read_to_string(&key).unwrap();
    let lines: Vec<&str> = key_text.lines().collect();
    Secrets {
        needles: vec![
            ("BUILDKIT_SECRETTEXT_token", TEXT.to_string()),
            ("BUILDKIT_SECRET_file", FILE.to_string()),
            ("the registry password", password),
            ("the SSH private key", lines[lines.len() / 2].to_string()),
        ],
    }
}

fn run(env: &DevEnv, work: &Path, dockerfile: &str) -> Outcome {
    std::fs::write(work.join("ctx/Dockerfile"), dockerfile).unwrap();
    let key = work.join("key");
    let secret_file = work.join("secret-file");
    let docker = work.join("docker");
    build_task(
        env,
        work,
        &[],
        &[
            ("CONTEXT", "ctx"),
            ("DEBUG", "true"),
            ("BUILDKIT_SECRETTEXT_token", TEXT),
            ("BUILDKIT_SECRET_file", secret_file.to_str().unwrap()),
            ("BUILDKIT_SSH", &format!("deploy={}", key.display())),
            ("DOCKER_CONFIG", docker.to_str().unwrap()),
            ("UNPACK_ROOTFS", "true"),
        ],
    )
}

#[test]
fn no_secret_in_any_output_on_success_or_failure() {
    let env = dev_env_or_skip!();
    let reg = &env.registries.basic;
    let repo = unique_repo("build-secrets");
    push_busybox(env, "amd64", reg, &repo, "base");
    let from = format!("FROM {}:base\n", reg.repo(&repo));
    let uses = "RUN --mount=type=secret,id=token --mount=type=secret,id=file --mount=type=ssh,id=deploy \
                test -s /run/secrets/token && test -s /run/secrets/file && test -S $SSH_AUTH_SOCK";
    // What each build is, its Dockerfile, whether the password is wrong, and what its last
    // line says (empty: it succeeds). The wrong password's line names the registry that
    // answered BuildKit's request for the base image with a refusal (401, not a failure to
    // connect or a missing image).
    let refused = format!("HEAD request to https://{}/v2/{repo}/manifests/base: 401 Unauthorized", reg.addr);
    let cases = [
        ("success", format!("{from}{uses} && cp /run/secrets/token /dev/null\n"), false, ""),
        ("a RUN that uses them and fails", format!("{from}{uses} && exit 7\n"), false, "exit code: 7"),
        ("a Dockerfile that does not parse", format!("{from}RUNN {uses}\n"), false, "RUNN"),
        ("a base image not found", format!("FROM {}:missing\n{uses}\n", reg.repo(&repo)), false, "not found"),
        ("the wrong registry password", format!("{from}{uses}\n"), true, refused.as_str()),
    ];
    for (what, dockerfile, wrong_password, says) in cases {
        let work = tempfile::tempdir().unwrap();
        let secrets = setup(env, work.path(), wrong_password);
        let out = run(env, work.path(), &dockerfile);
        if says.is_empty() {
            out.success();
            assert!(work.path().join("image/rootfs").is_dir(), "{what}");
        } else {
            out.failure();
            let last = out.stderr.trim_end().lines().last().unwrap_or_default();
            assert!(last.starts_with("build: ") && last.contains(says), "{what}: wanted {says:?} in {last}");
        }
        secrets.assert_absent(what, &out, &[&work.path().join("image")]);
    }
}

#[test]
fn bad_secret_params_name_the_param_not_the_content() {
    let env = dev_env_or_skip!();
    let work = tempfile::tempdir().unwrap();
    let secrets = setup(env, work.path(), false);
    std::fs::write(work.path().join("ctx/Dockerfile"), "FROM scratch\n").unwrap();
    // A key file that is not a key (it holds a secret file's content), and a secret "file"
    // that is a folder.
    let not_a_key = work.path().join("secret-file");
    let cases: [(&str, String, &str); 2] = [
        ("BUILDKIT_SSH", format!("deploy={}", not_a_key.display()), "is not an OpenSSH private key"),
        ("BUILDKIT_SECRET_dir", work.path().join("ctx").display().to_string(), "BUILDKIT_SECRET_dir"),
    ];
    for (param, value, says) in cases {
        let out = build_task(
            env,
            work.path(),
            &[],
            &[("CONTEXT", "ctx"), ("DEBUG", "true"), ("BUILDKIT_SECRETTEXT_token", TEXT), (param, &value)],
        );
        out.failure();
        assert!(out.stderr.contains(says), "{param}: {}", out.stderr);
        secrets.assert_absent(param, &out, &[&work.path().join("image")]);
    }
}
