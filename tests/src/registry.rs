//! A registry of the test's own: Debian's `docker-registry` on a loopback port with its
//! storage in a temporary folder, which the test may kill and start again (same port, same
//! storage) to see how kiln survives a registry that dies mid-transfer, or serve HTTPS with
//! a certificate the test made.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::{free_port, wait_for_port};

pub struct PrivateRegistry {
    /// `127.0.0.1:PORT`, plain HTTP unless started with [`PrivateRegistry::start_tls`].
    pub addr: String,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl PrivateRegistry {
    /// Starts one and waits until it answers.
    pub fn start() -> Self {
        Self::start_with_users(&[])
    }

    /// Starts one that wants one of `users` (username, password) by htpasswd basic auth,
    /// over plain HTTP (loopback only); none: no auth.
    pub fn start_with_users(users: &[(&str, &str)]) -> Self {
        Self::start_with(users, None)
    }

    /// Starts one that serves HTTPS with this certificate (PEM, the leaf first, then any
    /// intermediates) and key (PEM), no auth. Go's TLS server does not look at the
    /// certificate's dates or names, so it serves whatever the test made.
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> Self {
        Self::start_with(&[], Some((cert_pem, key_pem)))
    }

    fn start_with(users: &[(&str, &str)], tls: Option<(&str, &str)>) -> Self {
        let dir = tempfile::tempdir().expect("temporary folder");
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: kiln-private-registry\n",
            dir.path().join("storage").display()
        );
        // Under `http:`, so before anything else is appended.
        if let Some((cert, key)) = tls {
            let (cert_path, key_path) = (dir.path().join("tls-cert.pem"), dir.path().join("tls-key.pem"));
            std::fs::write(&cert_path, cert).expect("writing the registry's certificate");
            std::fs::write(&key_path, key).expect("writing the registry's key");
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert_path.display(),
                key_path.display()
            ));
        }
        if !users.is_empty() {
            let htpasswd = dir.path().join("htpasswd");
            let mut lines = String::new();
            for (user, password) in users {
                let out = Command::new("htpasswd").args(["-Bbn", user, password]).output().expect("running htpasswd");
                assert!(out.status.success(), "htpasswd: {}", String::from_utf8_lossy(&out.stderr));
                lines.push_str(String::from_utf8_lossy(&out.stdout).trim_end());
                lines.push('\n');
            }
            std::fs::write(&htpasswd, lines).expect("writing htpasswd");
            config
                .push_str(&format!("auth:\n  htpasswd:\n    realm: kiln-private\n    path: {}\n", htpasswd.display()));
        }
        std::fs::write(dir.path().join("config.yml"), config).expect("writing the registry's config");
        let mut registry = Self { addr: format!("127.0.0.1:{port}"), port, dir, child: None };
        registry.restart();
        registry
    }

    /// Kills it at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port with the same storage, and waits until it answers.
    pub fn restart(&mut self) {
        self.kill();
        let log = std::fs::File::create(self.log_path()).expect("registry log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting docker-registry (installed by scripts/dev-env)");
        self.child = Some(child);
        wait_for_port(self.port, Duration::from_secs(20), || format!("docker-registry ({})", self.log()));
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }

    /// What it logged since it last started.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

impl Drop for PrivateRegistry {
    fn drop(&mut self) {
        self.kill();
    }
}
