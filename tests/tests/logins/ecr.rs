//! Amazon ECR logins against moto (AWS's STS, IAM and ECR APIs on loopback, tests/src/moto.rs):
//! kiln signs its calls (moto verifies the signatures), assumes role chains, finds
//! credentials the way AWS's SDKs do, and uses the login ECR gives on the registry. The
//! registry is a test's own `docker-registry` whose one user is `AWS` with the password
//! moto's ECR hands out for the expected account, so a login for any other account, or none,
//! is refused. EC2's instance metadata service is a loopback stand-in (tests/src/imds_standin.rs).
//! What this does not cover: the real ECR and its hostnames, and regions (moto does not tie
//! keys or registries to one).

use std::path::Path;
use std::process::Command;

use kiln_tests::dev_env_or_skip;
use kiln_tests::harness::{Outcome, assert_access_refused, command, free_port, run, wait_for_port};
use kiln_tests::images::noise_image_tar;
use kiln_tests::imds_standin::ImdsStandIn;
use kiln_tests::moto::{DEFAULT_ACCOUNT, Moto, ecr_password};
use kiln_tests::registry::PrivateRegistry;
use serde_json::{Value, json};

/// A resource step with AWS's endpoints pointed at moto and the metadata service off (a
/// test must never send traffic beyond loopback), plus `vars`.
fn step(bin: &str, dir: Option<&Path>, moto: &Moto, vars: &[(&str, &str)], request: &Value) -> Outcome {
    let mut cmd = command(bin);
    if let Some(dir) = dir {
        cmd.arg(dir);
    }
    cmd.env("AWS_ENDPOINT_URL", &moto.url).env("AWS_EC2_METADATA_DISABLED", "true").env("HOME", "/nonexistent");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    run(cmd, request.to_string().as_bytes())
}

/// Environment variables for one run.
type Vars<'a> = Vec<(&'a str, &'a str)>;

fn registry_for(account: &str) -> PrivateRegistry {
    PrivateRegistry::start_with_users(&[("AWS", &ecr_password(account))])
}

#[test]
fn signed_calls_log_in_and_the_login_pushes_and_checks() {
    let env = dev_env_or_skip!();
    let moto = Moto::start(env, true);
    let (key, secret) = moto.user_with_key();
    let registry = registry_for(DEFAULT_ACCOUNT);
    let work = tempfile::tempdir().unwrap();
    let digest = noise_image_tar(work.path(), "1.0.0", 1 << 20, 3);
    let source = json!({
        "repository": format!("{}/team/app", registry.addr),
        "aws_region": "eu-west-1",
        "aws_access_key_id": key,
        "aws_secret_access_key": secret,
    });
    let out = step(
        "out",
        Some(work.path()),
        &moto,
        &[],
        &json!({ "source": source, "params": { "image": "image.tar", "version": "1.0.0" } }),
    );
    out.success();
    assert_eq!(out.json()["version"]["digest"], json!(digest), "{}", out.stderr);
    let out = step("check", None, &moto, &[], &json!({ "source": source }));
    assert_eq!(out.success().json()[0]["digest"], json!(digest));

    // A wrong secret: moto refuses the signature; one line says so, without the secret.
    let mut wrong = source.clone();
    wrong["aws_secret_access_key"] = "not-the-secret-9c1f".into();
    let out = step("check", None, &moto, &[], &json!({ "source": wrong }));
    out.failure();
    assert!(out.stderr.contains("ECR login") && out.stderr.contains("SignatureDoesNotMatch"), "{}", out.stderr);
    assert!(!out.stderr.contains("not-the-secret-9c1f") && !out.stderr.contains(&secret), "{}", out.stderr);
    assert_eq!(out.stderr.trim_end().lines().count(), 1, "{}", out.stderr);
}

#[test]
fn role_chains_and_the_default_credential_chain() {
    let env = dev_env_or_skip!();
    let moto = Moto::start(env, false);
    // Only a login for account 333333333333 gets in.
    let registry = registry_for("333333333333");
    let work = tempfile::tempdir().unwrap();
    let digest = noise_image_tar(work.path(), "1.0.0", 1 << 20, 5);
    let base = json!({ "repository": format!("{}/app", registry.addr), "aws_region": "us-east-2" });
    let with = |extra: Value| {
        let mut source = base.clone();
        for (k, v) in extra.as_object().unwrap() {
            source[k] = v.clone();
        }
        source
    };
    let keys = json!({ "aws_access_key_id": "AKIAKILNTEST", "aws_secret_access_key": "kiln-test-secret" });
    let chain = json!(["arn:aws:iam::222222222222:role/first", "arn:aws:iam::333333333333:role/pusher"]);

    // Static keys, then two roles: the last role's account logs in.
    let mut source = with(keys.clone());
    source["aws_role_arns"] = chain.clone();
    let push = json!({ "source": source, "params": { "image": "image.tar", "version": "1.0.0" } });
    let out = step("out", Some(work.path()), &moto, &[], &push);
    out.success();
    assert_eq!(out.json()["version"]["digest"], json!(digest), "{}", out.stderr);

    // Only the first role: account 222222222222's login, which the registry refuses.
    let mut source = with(keys.clone());
    source["aws_role_arn"] = "arn:aws:iam::222222222222:role/first".into();
    // The registry's own refusal of that login (its 401), not a connection refused.
    let out = step("check", None, &moto, &[], &json!({ "source": source }));
    let logins = [ecr_password("222222222222"), ecr_password("333333333333")];
    assert_access_refused(&out, "check", &registry.addr, "app", &[&logins[0], &logins[1], "kiln-test-secret"]);

    // The default chain, each source alone, with the role that leads to the right account.
    let role = with(json!({ "aws_role_arn": "arn:aws:iam::333333333333:role/pusher" }));
    let files = tempfile::tempdir().unwrap();
    let credentials = files.path().join("credentials");
    std::fs::write(&credentials, "[default]\naws_access_key_id = nope\n\n[ci]\naws_access_key_id = AKIAFILE\naws_secret_access_key = file-secret\n").unwrap();
    let token = files.path().join("token");
    std::fs::write(&token, "eyJ.a-web-identity-token.sig\n").unwrap();
    let creds_json = files.path().join("creds");
    std::fs::write(
        &creds_json,
        r#"{"AccessKeyId":"ASIAECS","SecretAccessKey":"ecs-secret","Token":"t","Expiration":"2999-01-01T00:00:00Z"}"#,
    )
    .unwrap();
    let server = HttpServer::start(files.path());
    let ecs = format!("http://127.0.0.1:{}/creds", server.port);
    let imds = ImdsStandIn::start(
        r#"{"Code":"Success","AccessKeyId":"ASIAEC2","SecretAccessKey":"ec2-secret","Token":"t","Expiration":"2999-01-01T00:00:00Z"}"#,
    );
    let web_identity = [
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token.to_str().unwrap()),
        ("AWS_ROLE_ARN", "arn:aws:iam::333333333333:role/web"),
    ];
    let cases: Vec<(&str, Value, Vars)> = vec![
        ("environment", role.clone(), vec![("AWS_ACCESS_KEY_ID", "AKIAENV"), ("AWS_SECRET_ACCESS_KEY", "env-secret")]),
        (
            "shared credentials file",
            role.clone(),
            vec![("AWS_SHARED_CREDENTIALS_FILE", credentials.to_str().unwrap()), ("AWS_PROFILE", "ci")],
        ),
        ("web identity", base.clone(), web_identity.to_vec()),
        ("ECS container credentials", role.clone(), vec![("AWS_CONTAINER_CREDENTIALS_FULL_URI", &ecs)]),
        (
            "EC2 instance metadata",
            role.clone(),
            vec![("AWS_EC2_METADATA_DISABLED", ""), ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds.url)],
        ),
    ];
    for (what, source, vars) in cases {
        let out = step("check", None, &moto, &vars, &json!({ "source": source }));
        assert_eq!(out.code, Some(0), "{what}: {}", out.stderr);
        assert_eq!(out.json()[0]["digest"], json!(digest), "{what}");
    }

    // Expired container credentials, a profile with half a key, and no credentials at all.
    std::fs::write(
        &creds_json,
        r#"{"AccessKeyId":"ASIAECS","SecretAccessKey":"ecs-secret","Token":"t","Expiration":"2020-01-01T00:00:00Z"}"#,
    )
    .unwrap();
    let failures: Vec<(Vars, &str)> = vec![
        (vec![("AWS_CONTAINER_CREDENTIALS_FULL_URI", &ecs)], "ECS container credentials expired"),
        (
            vec![("AWS_SHARED_CREDENTIALS_FILE", credentials.to_str().unwrap())],
            "has aws_access_key_id but no aws_secret_access_key",
        ),
        (vec![], "no AWS credentials found"),
    ];
    for (vars, says) in failures {
        let out = step("check", None, &moto, &vars, &json!({ "source": role }));
        out.failure();
        assert!(out.stderr.contains(says), "wanted {says:?}: {}", out.stderr);
    }
}

/// Python's own static file server on loopback, standing in for the ECS credentials
/// endpoint (which is a plain GET of a JSON document).
struct HttpServer {
    port: u16,
    child: std::process::Child,
}

impl HttpServer {
    fn start(dir: &Path) -> Self {
        let port = free_port();
        let child = Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1", &port.to_string()])
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        wait_for_port(port, std::time::Duration::from_secs(10), || "python's http.server".into());
        HttpServer { port, child }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
