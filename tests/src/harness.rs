//! What end-to-end tests stand on: the dev environment that `./dev env up` started,
//! unique repository names so tests run in parallel, and the real binaries run as
//! Concourse runs them (JSON on stdin, a directory as argv[1], a clean environment).

use std::io::Write as _;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

/// The running dev environment, as `scripts/dev-env` describes it in `.dev/env.json`.
#[derive(Debug, Deserialize)]
pub struct DevEnv {
    /// The CA that signed the TLS registries' and token issuer's certificates (PEM file).
    pub ca_cert: PathBuf,
    /// A folder holding `ca.crt`, in the form skopeo's `--cert-dir` wants.
    pub tool_cert_dir: PathBuf,
    pub registries: Registries,
    pub docker: Docker,
}

#[derive(Debug, Deserialize)]
pub struct Registries {
    /// Plain HTTP, no auth; holds the seeded `library/busybox`.
    pub plain: Registry,
    /// HTTPS with the dev CA, no auth.
    pub tls: Registry,
    /// HTTPS with htpasswd basic auth.
    pub basic: Registry,
    /// HTTPS with bearer tokens from the dev token issuer.
    pub token: Registry,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Registry {
    /// `127.0.0.1:PORT`
    pub addr: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Docker {
    /// The dev engine's API socket; its BuildKit answers on `/grpc`.
    pub socket: PathBuf,
    /// A unix socket joined to the engine's BuildKit, standing in for `buildkitd --addr unix://…`.
    pub buildkit_relay_socket: PathBuf,
    /// Where the engine's binaries (`docker`, `dockerd`, …) are.
    pub bin_dir: PathBuf,
}

impl Registry {
    /// `addr/repo`, as written in `source.repository`.
    pub fn repo(&self, path: &str) -> String {
        format!("{}/{path}", self.addr)
    }

    /// skopeo's `--creds` value, if this registry has credentials.
    fn creds(&self) -> Option<String> {
        Some(format!("{}:{}", self.username.as_ref()?, self.password.as_ref()?))
    }
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The dev environment, if it is up (its description exists and its registries answer).
pub fn dev_env() -> Option<&'static DevEnv> {
    static ENV: OnceLock<Result<DevEnv, String>> = OnceLock::new();
    ENV.get_or_init(load_dev_env).as_ref().ok()
}

fn load_dev_env() -> Result<DevEnv, String> {
    let path = std::env::var_os("KILN_DEV_ENV").map(PathBuf::from).unwrap_or_else(|| workspace().join(".dev/env.json"));
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let env: DevEnv = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let r = &env.registries;
    for reg in [&r.plain, &r.tls, &r.basic, &r.token] {
        let addr = reg.addr.parse().map_err(|e| format!("{}: {e}", reg.addr))?;
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| format!("registry {}: {e}", reg.addr))?;
    }
    Ok(env)
}

/// The dev environment for a test that needs it. Under CI (`CI=true`) a missing
/// environment fails the test; elsewhere the test is skipped with a loud message.
pub fn require_dev_env(test: &str) -> Option<&'static DevEnv> {
    if let Some(env) = dev_env() {
        return Some(env);
    }
    let why = match load_dev_env() {
        Err(e) => e,
        Ok(_) => "it came up while this test ran".into(),
    };
    if is_ci() {
        panic!("{test}: the dev environment is not running ({why}); CI must start it with ./dev env up");
    }
    eprintln!("\n*** SKIPPED {test}: the dev environment is not running ({why}). Start it with ./dev env up ***\n");
    None
}

/// Gets the dev environment or returns from the test (see [`require_dev_env`]).
#[macro_export]
macro_rules! dev_env_or_skip {
    () => {
        match $crate::harness::require_dev_env(module_path!()) {
            Some(env) => env,
            None => return,
        }
    };
}

/// A repository name no other test (in this run or an earlier one) uses.
pub fn unique_repo(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("test/{prefix}-{}-{nanos}-{n}", std::process::id())
}

/// The path of one of the workspace's compiled binaries (`check`, `build`, …).
/// `./dev test` builds them before the tests run.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let path = exe.parent().and_then(Path::parent).expect("target folder").join(name);
    assert!(
        path.exists(),
        "binary {} is missing: build it first (cargo build --workspace --bins), or run ./dev test",
        path.display()
    );
    path
}

/// What a binary did.
#[derive(Debug)]
pub struct Outcome {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    /// Panics with everything the binary printed unless it exited 0.
    pub fn success(&self) -> &Self {
        assert_eq!(self.code, Some(0), "expected success\n--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr);
        self
    }

    /// Panics unless the binary exited non-zero.
    pub fn failure(&self) -> &Self {
        assert!(
            self.code.is_some_and(|c| c != 0),
            "expected a failure, got {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code,
            self.stdout,
            self.stderr
        );
        self
    }

    /// stdout parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}\n--- stderr\n{}", self.stdout, self.stderr))
    }
}

/// A command for a workspace binary with a clean environment (only `PATH`), as
/// Concourse gives resources.
pub fn command(name: &str) -> Command {
    let mut cmd = Command::new(bin(name));
    cmd.env_clear().env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    cmd
}

/// Runs a command with `stdin` written to it and waits for it.
pub fn run(mut cmd: Command, stdin: &[u8]) -> Outcome {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    let mut pipe = child.stdin.take().expect("stdin");
    // A binary that fails before reading its input closes the pipe; that is its answer, not ours.
    let _ = pipe.write_all(stdin);
    drop(pipe);
    let out = child.wait_with_output().expect("waiting for the binary");
    Outcome {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs a resource step (`check`, `in`, `out`) with a JSON request, as Concourse does.
pub fn resource(step: &str, dir: Option<&Path>, request: &serde_json::Value) -> Outcome {
    let mut cmd = command(step);
    if let Some(dir) = dir {
        cmd.arg(dir);
    }
    run(cmd, request.to_string().as_bytes())
}

/// The `source` for a registry of the dev environment: repository, CA and credentials.
pub fn source(env: &DevEnv, registry: &Registry, repo: &str) -> serde_json::Value {
    let mut source = serde_json::json!({ "repository": registry.repo(repo) });
    if registry.addr != env.registries.plain.addr {
        let ca = std::fs::read_to_string(&env.ca_cert).expect("reading the dev CA");
        source["ca_certs"] = serde_json::json!([ca]);
    }
    if let (Some(user), Some(password)) = (&registry.username, &registry.password) {
        source["username"] = user.clone().into();
        source["password"] = password.clone().into();
    }
    source
}

/// skopeo's transport options for one side of a copy (`src` or `dest`).
fn skopeo_opts(env: &DevEnv, registry: &Registry, side: &str) -> Vec<String> {
    let mut opts = Vec::new();
    if registry.addr == env.registries.plain.addr {
        opts.push(format!("--{side}-tls-verify=false"));
    } else {
        opts.push(format!("--{side}-cert-dir={}", env.tool_cert_dir.display()));
    }
    if let Some(creds) = registry.creds() {
        opts.push(format!("--{side}-creds={creds}"));
    }
    opts
}

/// Copies the seeded busybox (`latest` is the multi-arch index, `amd64` one image)
/// to `repo:tag` on `registry`, with skopeo, and returns the digest it now has there.
pub fn push_busybox(env: &DevEnv, seed_tag: &str, registry: &Registry, repo: &str, tag: &str) -> String {
    let src = format!("docker://{}/library/busybox:{seed_tag}", env.registries.plain.addr);
    let dest = format!("docker://{}:{tag}", registry.repo(repo));
    let mut cmd = Command::new("skopeo");
    cmd.args(["copy", "--all", "--preserve-digests", "--quiet"])
        .args(skopeo_opts(env, &env.registries.plain, "src"))
        .args(skopeo_opts(env, registry, "dest"))
        .args([&src, &dest]);
    let out = cmd.output().expect("running skopeo");
    assert!(out.status.success(), "skopeo copy {src} {dest}: {}", String::from_utf8_lossy(&out.stderr));
    skopeo_digest(env, registry, repo, tag)
}

/// The top-level digest skopeo sees for `repo:tag` (the index's for multi-arch images).
pub fn skopeo_digest(env: &DevEnv, registry: &Registry, repo: &str, tag: &str) -> String {
    let mut cmd = Command::new("skopeo");
    let mut opts = skopeo_opts(env, registry, "src");
    for opt in &mut opts {
        // `skopeo inspect` spells its options without the side prefix.
        *opt = opt.replacen("--src-", "--", 1);
    }
    cmd.args(["inspect", "--raw"]).args(opts).arg(format!("docker://{}:{tag}", registry.repo(repo)));
    let out = cmd.output().expect("running skopeo");
    assert!(out.status.success(), "skopeo inspect {repo}:{tag}: {}", String::from_utf8_lossy(&out.stderr));
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(&out.stdout)))
}
