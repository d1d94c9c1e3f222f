//! What end-to-end tests stand on: the dev environment that `./dev env up` started,
//! unique repository names so tests run in parallel, and the real binaries run as
//! Concourse runs them (JSON on stdin, a directory as `argv[1]`, a clean environment).

use std::io::Write as _;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kiln_image::digest::Digest;
use serde::Deserialize;

/// The running dev environment, as `scripts/dev-env` describes it in `.dev/env.json`.
#[derive(Debug, Deserialize)]
pub struct DevEnv {
    /// The CA that signed the TLS registries' and token issuer's certificates (PEM file).
    pub ca_cert: PathBuf,
    /// A folder holding `ca.crt`, in the form skopeo's `--cert-dir` wants.
    pub tool_cert_dir: PathBuf,
    /// A stand-in service account JSON key: the token registry's password for `_json_key`.
    pub json_key_file: PathBuf,
    /// moto's server (AWS's APIs on loopback), installed from PyPI by `scripts/dev-env`.
    pub moto_server: PathBuf,
    /// crane (go-containerregistry's CLI, Debian sid's package), installed by `scripts/dev-env`;
    /// absent from an env.json written before it did. Reach it through [`DevEnv::crane`].
    #[serde(default)]
    crane: Option<PathBuf>,
    /// Whether dev-env registered an arm64 emulator with binfmt_misc: `registered`, or why
    /// not (not root, binfmt_misc not mountable, …).
    #[serde(default)]
    pub arm64_emulation: String,
    pub registries: Registries,
    pub docker: Docker,
    pub buildkitd: Buildkitd,
    /// notary-server and its CLI (trixie's notary), started by `scripts/dev-env`.
    pub notary: Notary,
}

/// notary-server on HTTPS (the dev CA), its auth the dev token issuer's (the token
/// registry's username and password), and notary-signer behind it.
#[derive(Debug, Deserialize)]
pub struct Notary {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// A second notary-server that takes only clients presenting a certificate the dev CA
    /// signed (the buildkitd client certificate is one).
    pub mtls_addr: String,
    /// Where `notary`, `notary-server` and `notary-signer` are.
    pub bin_dir: PathBuf,
}

/// The real `buildkitd` (built from Debian's packages by `scripts/build-buildkitd`), run as
/// root by `scripts/dev-env`.
#[derive(Debug, Deserialize)]
pub struct Buildkitd {
    /// Its unix socket (no TLS).
    pub socket: PathBuf,
    /// `tcp://127.0.0.1:PORT`: mutual TLS with the dev CA's server certificate; clients
    /// must present a certificate the dev CA signed.
    pub tcp: String,
    /// Where `buildkitd` and `buildctl` are.
    pub bin_dir: PathBuf,
    /// A client certificate and key the dev CA signed.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// An unprivileged account with a subordinate id range (empty when dev-env ran as non-root).
    pub rootless_user: String,
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
    /// A unix socket joined to the engine's BuildKit: the engine's BuildKit reached as `unix://`
    /// (the real buildkitd is [`Buildkitd`]).
    pub buildkit_relay_socket: PathBuf,
    /// Where the engine's binaries (`docker`, `dockerd`, …) are.
    pub bin_dir: PathBuf,
}

impl DevEnv {
    /// A `crane` command, to cross-check with another client what kiln wrote or read. Fails
    /// the test when env.json names no crane or the binary is not there.
    pub fn crane(&self) -> Command {
        let path = self.crane.as_deref().unwrap_or_else(|| {
            panic!("the dev environment's env.json names no crane: run scripts/dev-env up again to install it")
        });
        assert!(path.is_file(), "crane is missing at {}: run scripts/dev-env up to install it", path.display());
        Command::new(path)
    }
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

/// A TCP port free on 127.0.0.1 right now (bound, noted, let go).
pub fn free_port() -> u16 {
    // Never the same port twice in one test binary: two servers started at once would
    // otherwise race for it, and the loser's test talk to the winner.
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().expect("port table");
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Waits until something listens on 127.0.0.1:`port`; after `limit`, fails the test with
/// `what()` (which may read a log).
pub fn wait_for_port(port: u16, limit: Duration, what: impl Fn() -> String) {
    let deadline = std::time::Instant::now() + limit;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "{} did not start on port {port}", what());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every regular file under `dir`, with its bytes (symlinks not followed).
pub fn files_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for entry in entries {
        let path = entry.expect("a folder entry").path();
        let meta = std::fs::symlink_metadata(&path).expect("a file's metadata");
        if meta.is_dir() {
            out.extend(files_under(&path));
        } else if meta.is_file() {
            out.push((path.display().to_string(), std::fs::read(&path).expect("reading a file")));
        }
    }
    out
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
    // Straight to the file descriptor: libtest captures eprintln! of passing tests, and a
    // skipped test must not look like a plain "ok".
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED {test}: the dev environment is not running ({why}). Start it with ./dev env up ***\n"
    );
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

/// Asserts that `out`, a `step` (`check`, `in`, `out`) given credentials `registry` does not
/// take, failed saying so in its last line (after what it was doing, for `out`): the
/// registry by address, the repository, that access was refused, and the 401 it answered;
/// and that none of `secrets` (the password
/// given, the right one) is in anything it printed.
pub fn assert_access_refused(out: &Outcome, step: &str, registry: &str, repo: &str, secrets: &[&str]) {
    out.failure();
    let last = out.stderr.trim_end().lines().last().unwrap_or_default();
    let says = format!("registry {registry} refused access to {repo} (401 Unauthorized): ");
    assert!(
        last.starts_with(&format!("{step}: ")) && last.contains(&says),
        "wanted {step}'s last line to say {says:?}:\n{}",
        out.stderr
    );
    for secret in secrets {
        assert!(!out.stderr.contains(secret) && !out.stdout.contains(secret), "{secret:?} printed:\n{}", out.stderr);
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

/// crane's word on `reference` in the plain registry: it reads the image back whole (for an
/// index, every image the index lists), checks each blob and layer against its descriptor and
/// the config's diff_ids, and resolves the tag to `digest`. Only for gzip layers: crane's
/// validate reads every layer through gunzip, so the plain tar layers of a docker save fail it.
pub fn crane_agrees(env: &DevEnv, reference: &str, digest: &str) {
    let crane = |args: &[&str]| {
        let out = env.crane().arg("--insecure").args(args).output().expect("running crane");
        let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(out.status.success(), "crane {args:?}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        stdout
    };
    let verdict = crane(&["validate", "--remote", reference]);
    assert!(verdict.starts_with("PASS:"), "crane validate {reference}: {verdict}");
    assert_eq!(crane(&["digest", reference]), digest, "crane's digest of {reference}");
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
    Digest::of(&out.stdout).to_string()
}

// ------------------------------------------------------------------------------------------
// Tiny images, pushed straight to the plain registry
//
// Tests that need many tags and many distinct digests (check's semver and regex modes)
// push these: one shared empty layer and a config of their own, sent with a few HTTP
// requests each instead of a skopeo run per tag.

/// A made-up image: its `name` makes its config (and so its digest) its own; `created`
/// is its config's creation time (RFC 3339), if any. The same name, time and
/// architecture always give the same digest.
#[derive(Debug, Clone, Copy)]
pub struct TinyImage<'a> {
    pub name: &'a str,
    pub created: Option<&'a str>,
    pub architecture: &'a str,
}

impl<'a> TinyImage<'a> {
    /// A linux/amd64 image.
    pub fn new(name: &'a str, created: Option<&'a str>) -> Self {
        Self { name, created, architecture: "amd64" }
    }
}

/// Pushes `image` to `repo:tag` on the plain registry; returns its manifest digest.
pub fn push_tiny(env: &DevEnv, repo: &str, tag: &str, image: TinyImage<'_>) -> String {
    let (digest, manifest) = upload_tiny(env, repo, image);
    put_manifest(env, repo, tag, "application/vnd.oci.image.manifest.v1+json", &manifest);
    digest
}

/// Pushes an OCI index of `images` (each linux on its architecture) to `repo:tag` on the
/// plain registry; returns the index digest.
pub fn push_tiny_index(env: &DevEnv, repo: &str, tag: &str, images: &[TinyImage<'_>]) -> String {
    let manifests: Vec<serde_json::Value> = images
        .iter()
        .map(|image| {
            let (digest, manifest) = upload_tiny(env, repo, *image);
            put_manifest(env, repo, &digest, "application/vnd.oci.image.manifest.v1+json", &manifest);
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest,
                "size": manifest.len(),
                "platform": { "architecture": image.architecture, "os": "linux" },
            })
        })
        .collect();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    });
    let bytes = index.to_string().into_bytes();
    put_manifest(env, repo, tag, "application/vnd.oci.image.index.v1+json", &bytes);
    Digest::of(&bytes).to_string()
}

/// Uploads the layer and config of `image`; returns the digest and bytes of its manifest.
fn upload_tiny(env: &DevEnv, repo: &str, image: TinyImage<'_>) -> (String, Vec<u8>) {
    // An empty tar: two zero blocks.
    let layer = vec![0u8; 1024];
    let mut config = serde_json::json!({
        "architecture": image.architecture,
        "os": "linux",
        "config": { "Labels": { "kiln.test.image": image.name } },
        "rootfs": { "type": "layers", "diff_ids": [Digest::of(&layer).to_string()] },
    });
    if let Some(created) = image.created {
        config["created"] = created.into();
    }
    let config = config.to_string().into_bytes();
    let layer_digest = put_blob(env, repo, &layer);
    let config_digest = put_blob(env, repo, &config);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len() },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len() }],
    });
    let bytes = manifest.to_string().into_bytes();
    (Digest::of(&bytes).to_string(), bytes)
}

/// Uploads a blob in one PUT after the upload's POST, unless this process already
/// uploaded it to `repo`; returns its digest. One upload of a blob to a repository at a
/// time: the registry can fail concurrent uploads of the same blob.
fn put_blob(env: &DevEnv, repo: &str, bytes: &[u8]) -> String {
    type Uploads =
        std::sync::Mutex<std::collections::HashMap<(String, String), std::sync::Arc<std::sync::Mutex<bool>>>>;
    static UPLOADS: OnceLock<Uploads> = OnceLock::new();
    let digest = Digest::of(bytes).to_string();
    let entry = UPLOADS
        .get_or_init(Default::default)
        .lock()
        .expect("upload table")
        .entry((repo.to_string(), digest.clone()))
        .or_default()
        .clone();
    let mut uploaded = entry.lock().expect("upload entry");
    if *uploaded {
        return digest;
    }
    let (status, headers) = plain_http(env, "POST", &format!("/v2/{repo}/blobs/uploads/"), "", &[]);
    assert_eq!(status, 202, "starting an upload to {repo}: {headers}");
    let location = headers
        .lines()
        .find_map(|l| {
            l.split_once(':').filter(|(name, _)| name.eq_ignore_ascii_case("location")).map(|(_, v)| v.trim())
        })
        .unwrap_or_else(|| panic!("no Location for the upload to {repo}: {headers}"));
    // The registry may answer with an absolute URL; the request wants the path.
    let path = match location.split_once("://") {
        Some((_, rest)) => &rest[rest.find('/').unwrap_or(rest.len())..],
        None => location,
    };
    let separator = if path.contains('?') { '&' } else { '?' };
    let target = format!("{path}{separator}digest={digest}");
    let (status, headers) = plain_http(env, "PUT", &target, "application/octet-stream", bytes);
    assert_eq!(status, 201, "finishing the upload of {digest} to {repo}: {headers}");
    *uploaded = true;
    digest
}

/// Puts a manifest or index into `repo` on the plain registry under `reference`.
pub fn put_manifest(env: &DevEnv, repo: &str, reference: &str, media_type: &str, bytes: &[u8]) {
    let (status, headers) = plain_http(env, "PUT", &format!("/v2/{repo}/manifests/{reference}"), media_type, bytes);
    assert_eq!(status, 201, "putting manifest {repo}:{reference}: {headers}");
}

/// One HTTP/1.1 request to the plain registry; its status and everything it answered.
fn plain_http(env: &DevEnv, method: &str, target: &str, content_type: &str, body: &[u8]) -> (u16, String) {
    let headers: &[(&str, &str)] = if content_type.is_empty() { &[] } else { &[("Content-Type", content_type)] };
    plain_request(env, method, target, headers, body)
}

/// [`plain_http`] with any request headers.
fn plain_request(env: &DevEnv, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    use std::io::Read as _;
    let addr = &env.registries.plain.addr;
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("read timeout");
    let mut request = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(request.as_bytes()).and_then(|()| stream.write_all(body)).expect("sending a request");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("reading an answer");
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, answer)
}

/// Every manifest type a registry may hold, for `Accept`.
const MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// The status the plain registry answers `HEAD /v2/<repo>/manifests/<reference>` with:
/// 200 when `repo` has that tag or digest, 404 when not. Every manifest type is accepted:
/// asked without `Accept`, the registry answers 404 for an OCI manifest or index it holds.
pub fn plain_manifest_status(env: &DevEnv, repo: &str, reference: &str) -> u16 {
    let target = format!("/v2/{repo}/manifests/{reference}");
    plain_request(env, "HEAD", &target, &[("Accept", MANIFEST_TYPES)], &[]).0
}

/// The status the plain registry answers `HEAD /v2/<repo>/blobs/<digest>` with: 200 when
/// `repo` holds that blob, 404 when not.
pub fn plain_blob_status(env: &DevEnv, repo: &str, digest: &str) -> u16 {
    plain_request(env, "HEAD", &format!("/v2/{repo}/blobs/{digest}"), &[], &[]).0
}

/// Whether `repo` exists on the plain registry at all: a blob pushed to it is enough, with
/// or without a manifest or tag (its tag list answers 404 until a manifest arrives, so the
/// registry's catalog is asked). Any other answer than a listing fails the test.
pub fn plain_repo_exists(env: &DevEnv, repo: &str) -> bool {
    // The catalog lists names after `last` in the registry's order (bytes, with `/` before
    // every other character): start just before `repo` (its name less the last character)
    // and read on until a name at or past it.
    let order = |name: &str| name.replace('/', "\0");
    let mut last = repo[..repo.len() - 1].to_string();
    loop {
        let (status, answer) = plain_http(env, "GET", &format!("/v2/_catalog?n=20&last={last}"), "", &[]);
        assert_eq!(status, 200, "listing the plain registry's catalog after {last}: {answer}");
        let body = http_body(&answer);
        let list: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("the catalog after {last} ({e}): {body}"));
        let names: Vec<&str> = list["repositories"]
            .as_array()
            .unwrap_or_else(|| panic!("the catalog after {last} lists no repositories field: {body}"))
            .iter()
            .map(|n| n.as_str().unwrap_or_else(|| panic!("a catalog name that is no string: {body}")))
            .collect();
        if let Some(found) = names.iter().find(|n| order(n) >= order(repo)) {
            return *found == repo;
        }
        match names.last() {
            Some(name) => last = name.to_string(),
            None => return false,
        }
    }
}

/// The body of an HTTP/1.1 answer read whole, its chunks joined if it came chunked.
fn http_body(answer: &str) -> String {
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    let chunked = head.lines().any(|l| {
        l.split_once(':').is_some_and(|(n, v)| {
            n.eq_ignore_ascii_case("transfer-encoding") && v.trim().eq_ignore_ascii_case("chunked")
        })
    });
    if !chunked {
        return body.to_string();
    }
    let (mut rest, mut out) = (body, String::new());
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16).expect("a chunk size");
        if size == 0 {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

/// The tags of `repo` on the plain registry, in the order the registry lists them.
pub fn plain_tags(env: &DevEnv, repo: &str) -> Vec<String> {
    let (status, answer) = plain_http(env, "GET", &format!("/v2/{repo}/tags/list"), "", &[]);
    assert_eq!(status, 200, "listing the tags of {repo}: {answer}");
    let body = http_body(&answer);
    let list: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("tags of {repo} ({e}): {body}"));
    list["tags"].as_array().map(|t| t.iter().filter_map(|t| t.as_str().map(String::from)).collect()).unwrap_or_default()
}

/// Runs `build` (the task binary) in `workdir`, where it writes `image/`, with command-line
/// `args` and environment `vars`, against the dev engine's BuildKit.
pub fn build_task(env: &DevEnv, workdir: &Path, args: &[&str], vars: &[(&str, &str)]) -> Outcome {
    let mut cmd = command("kiln-build");
    cmd.current_dir(workdir).args(args).env("BUILDKIT_HOST", format!("docker+unix://{}", env.docker.socket.display()));
    for (k, v) in vars {
        cmd.env(k, v);
    }
    run(cmd, b"")
}

/// Writes each `(path under dir, text)`, creating folders.
pub fn write_files(dir: &Path, files: &[(&str, &str)]) {
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().expect("a file has a folder")).expect("creating a folder");
        std::fs::write(path, text).expect("writing a file");
    }
}

/// The first line of a Dockerfile built on the dev registry's busybox.
pub fn from_busybox(env: &DevEnv) -> String {
    format!("FROM {}/library/busybox:latest\n", env.registries.plain.addr)
}

/// The step of `build`'s plain progress output whose text contains `needle`.
pub fn progress_step<'a>(stderr: &'a str, needle: &str) -> &'a str {
    stderr.split("\n\n").find(|s| s.contains(needle)).unwrap_or_else(|| panic!("no step {needle:?} in:\n{stderr}"))
}

/// Empties the dev engine's whole build cache. It pulls files from under any build running
/// at the same moment, so only tests alone in their test binary may call it.
pub fn prune_build_cache(env: &DevEnv) {
    let prune = Command::new(env.docker.bin_dir.join("docker"))
        .env("DOCKER_HOST", format!("unix://{}", env.docker.socket.display()))
        .args(["builder", "prune", "-af"])
        .output()
        .expect("running docker builder prune");
    assert!(prune.status.success(), "docker builder prune: {}", String::from_utf8_lossy(&prune.stderr));
}
