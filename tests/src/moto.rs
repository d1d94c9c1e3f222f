//! moto's server: AWS's STS, IAM and ECR APIs on a loopback port, one per test, for the ECR
//! tests (kiln points at it with `AWS_ENDPOINT_URL`). With `verify_signatures`, moto checks
//! every request's SigV4 signature against the IAM users it knows, so a test first makes a
//! user with an access key through the few calls moto lets through unauthenticated.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::{DevEnv, free_port, wait_for_port};

pub struct Moto {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    child: Child,
}

/// The account moto uses for callers it does not know.
pub const DEFAULT_ACCOUNT: &str = "123456789012";

impl Moto {
    pub fn start(env: &DevEnv, verify_signatures: bool) -> Self {
        let port = free_port();
        let mut cmd = Command::new(&env.moto_server);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]).stdout(Stdio::null()).stderr(Stdio::null());
        if verify_signatures {
            // The three IAM calls of `user_with_key`, then every request must be signed.
            cmd.env("INITIAL_NO_AUTH_ACTION_COUNT", "3");
        }
        let mut child = cmd.spawn().expect("starting moto_server (installed by scripts/dev-env)");
        wait_for_port(port, Duration::from_secs(30), || "moto_server".into());
        // Something else listening there (another process took the port) leaves ours dead.
        assert!(child.try_wait().expect("moto_server's status").is_none(), "moto_server exited: port {port} taken?");
        Moto { url: format!("http://127.0.0.1:{port}"), child }
    }

    /// An IAM call (form parameters) signed by curl's own SigV4 with `key:secret`.
    pub fn iam(&self, key: &str, params: &[(&str, &str)]) -> String {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--aws-sigv4", "aws:amz:us-east-1:iam", "--user", key]);
        for (k, v) in params {
            cmd.arg("--data-urlencode").arg(format!("{k}={v}"));
        }
        let out = cmd.arg(format!("{}/", self.url)).output().expect("running curl");
        assert!(out.status.success(), "curl: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A new IAM user allowed everything; its access key id and secret.
    pub fn user_with_key(&self) -> (String, String) {
        let anyone = "AKIAANYONE:anything";
        self.iam(anyone, &[("Action", "CreateUser"), ("UserName", "kiln"), ("Version", "2010-05-08")]);
        let key = self.iam(anyone, &[("Action", "CreateAccessKey"), ("UserName", "kiln"), ("Version", "2010-05-08")]);
        let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
        self.iam(
            anyone,
            &[
                ("Action", "PutUserPolicy"),
                ("UserName", "kiln"),
                ("PolicyName", "all"),
                ("PolicyDocument", policy),
                ("Version", "2010-05-08"),
            ],
        );
        let tag = |name: &str| {
            let start = key.find(&format!("<{name}>")).unwrap_or_else(|| panic!("no {name} in {key}")) + name.len() + 2;
            key[start..start + key[start..].find('<').unwrap()].to_string()
        };
        (tag("AccessKeyId"), tag("SecretAccessKey"))
    }
}

/// The registry password ECR (as moto answers) gives `account`.
pub fn ecr_password(account: &str) -> String {
    format!("{account}-auth-token")
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
