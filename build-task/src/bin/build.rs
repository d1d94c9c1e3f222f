//! `build`: the task image's entrypoint (installed as `build`; cargo names it `kiln-build`).
//!
//! Reads oci-build-task's params from the environment, builds with BuildKit at
//! `BUILDKIT_HOST`, and writes `image/image.tar` and `image/digest` (plus `image/rootfs`
//! and `image/metadata.json` with `UNPACK_ROOTFS=true`).
//! `build --buildkit-info` (or `BUILDKIT_INFO=true`) only prints BuildKit's version and workers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use kiln_build_task::cli;
use kiln_build_task::daemon::{self, Buildkitd, DaemonConfig};
use kiln_build_task::image_args;
use kiln_build_task::local_cache::LocalCaches;
use kiln_build_task::params::{self, BuildParams};
use kiln_build_task::session::SessionSpec;
use kiln_build_task::solve::{self, Solve};
use kiln_build_task::{info, transport};
use kiln_image::confined::{self, FreshDir};
use kiln_proto::moby::buildkit::v1::Exporter;

const HELP: &str = "\
build: builds a Dockerfile with BuildKit, as concourse/oci-build-task does.

Settings come from the environment, under oci-build-task's names:
  CONTEXT (default .), DOCKERFILE (default $CONTEXT/Dockerfile), BUILD_ARG_<name>,
  BUILD_ARGS_FILE (KEY=value lines, or YAML if it ends in .yml/.yaml), LABEL_<name>,
  LABELS_FILE, TARGET, TARGET_FILE, ADDITIONAL_TARGETS, IMAGE_PLATFORM, OUTPUT_OCI,
  UNPACK_ROOTFS, BUILDKIT_SECRET_<id>=<path>, BUILDKIT_SECRETTEXT_<id>=<value>,
  IMAGE_ARG_<name>=<image tarball or OCI layout>, BUILDKIT_SSH (default or id=socket|keys),
  BUILDKIT_ADD_HOSTS, NO_CACHE, CACHE_FROM,
  CACHE_TO, ATTEST_SBOM, ATTEST_PROVENANCE; DOCKER_CONFIG for registry credentials.
  A ./cache folder, when there is one, holds BuildKit's cache between builds.
BuildKit is at BUILDKIT_HOST: unix:///path, tcp://host:port (BUILDKIT_TLS_CA, _CERT, _KEY,
_SERVERNAME), docker+unix:///path/docker.sock or docker:// (a Docker engine's BuildKit).
Without BUILDKIT_HOST, build starts buildkitd from PATH (under rootlesskit when not root),
configured by REGISTRY_MIRRORS and BUILDKIT_EXTRA_CONFIG (TOML), waits up to
BUILDKIT_START_TIMEOUT seconds (60) for it, and stops it when done.

Writes image/image.tar (or image/image/ with OUTPUT_OCI) and image/digest.

Flags set the same params and win over the environment:
";

const HELP_END: &str = "
  build --buildkit-info   print BuildKit's version and workers, and exit
  build --version | --help
";

fn help() -> String {
    let mut text = HELP.to_string();
    for (flag, value, param) in cli::FLAGS {
        text.push_str(&format!("  {:<28} {param}\n", format!("{flag} {value}")));
    }
    text + HELP_END
}

fn main() -> ExitCode {
    let overrides = match cli::parse(std::env::args().skip(1)) {
        Ok(cli::Command::Help) => {
            print!("{}", help());
            return ExitCode::SUCCESS;
        }
        Ok(cli::Command::Version) => {
            println!("build (kiln) {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Ok(cli::Command::Info) => None,
        Ok(cli::Command::Build(o)) => Some(o),
        Err(e) => {
            eprintln!("build: {e}");
            return ExitCode::from(2);
        }
    };
    let info_wanted = overrides.is_none() || std::env::var("BUILDKIT_INFO").is_ok_and(|v| v == "true" || v == "1");
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("build: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match overrides {
        Some(o) if !info_wanted => runtime.block_on(build(o)),
        _ => runtime.block_on(buildkit_info()).map(|text| print!("{text}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("build: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// BuildKit: at `BUILDKIT_HOST`; else a `buildkitd` started here (as oci-build-task does),
/// put in `daemon` for the caller to stop, also when this is dropped half-way; else the
/// default socket, if something listens there.
async fn buildkit(daemon: &mut Option<Buildkitd>) -> anyhow::Result<tonic::transport::Channel> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let tls = transport::TlsFiles::from_env(env);
    if let Some(host) = env("BUILDKIT_HOST") {
        let address = transport::parse(&host, env("DOCKER_HOST").as_deref())?;
        return Ok(transport::connect(&host, &address, tls.as_ref()).await?);
    }
    let default_socket = transport::DEFAULT_HOST.trim_start_matches("unix://");
    if daemon::which("buildkitd").is_none() && Path::new(default_socket).exists() {
        let address = transport::parse(transport::DEFAULT_HOST, None)?;
        return Ok(transport::connect(transport::DEFAULT_HOST, &address, None).await?);
    }
    let start_timeout = match env("BUILDKIT_START_TIMEOUT") {
        Some(s) => {
            s.parse::<u64>().map_err(|_| anyhow::anyhow!("BUILDKIT_START_TIMEOUT: {s:?} is not a number of seconds"))?
        }
        None => 60,
    };
    let config = DaemonConfig {
        dir: std::env::temp_dir().join(format!("kiln-buildkitd-{}", std::process::id())),
        mirrors: env("REGISTRY_MIRRORS")
            .map(|m| m.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
            .unwrap_or_default(),
        extra_config: env("BUILDKIT_EXTRA_CONFIG"),
        debug: env("DEBUG").is_some_and(|v| v == "true" || v == "1"),
    };
    let started = daemon.insert(Buildkitd::spawn(&config)?);
    started.wait_ready(std::time::Duration::from_secs(start_timeout)).await?;
    let address = transport::parse(&started.host, None)?;
    Ok(transport::connect(&started.host, &address, None).await?)
}

/// Runs `work` with BuildKit, stopping a daemon started for it afterwards, also when the
/// build is interrupted (Ctrl-C, or SIGTERM when Concourse aborts the build) at any moment,
/// the daemon's start-up included. Dropping `work` closes its session and solve, so the
/// daemon has nothing left to wait for when it is asked to stop.
async fn with_buildkit<T, F, Fut>(work: F) -> anyhow::Result<T>
where
    F: FnOnce(tonic::transport::Channel) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    let mut daemon = None;
    let result = tokio::select! {
        r = async {
            let channel = buildkit(&mut daemon).await?;
            work(channel).await
        } => r,
        _ = int.recv() => Err(anyhow::anyhow!("interrupted")),
        _ = term.recv() => Err(anyhow::anyhow!("terminated")),
    };
    if let Some(daemon) = daemon {
        if result.is_err() {
            // Let the cancelled calls reach the daemon before it is told to stop.
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        daemon.stop().await;
    }
    result
}

async fn buildkit_info() -> anyhow::Result<String> {
    with_buildkit(|channel| async move {
        let daemon = info::query(channel)
            .await
            .map_err(|s| anyhow::anyhow!("BuildKit answered {:?}: {}", s.code(), s.message()))?;
        Ok(daemon.to_string())
    })
    .await
}

async fn build(overrides: cli::Overrides) -> anyhow::Result<()> {
    let mut vars: Vec<(String, String)> = std::env::vars().collect();
    for warning in params::typo_warnings(&vars) {
        eprintln!("build: warning: {warning}");
    }
    let host_set = vars.iter().any(|(k, v)| k == "BUILDKIT_HOST" && !v.is_empty());
    for name in params::DAEMON_ONLY.iter().filter(|n| vars.iter().any(|(k, v)| k == *n && !v.is_empty())) {
        if host_set {
            eprintln!(
                "build: warning: {name} configures the buildkitd build starts when BUILDKIT_HOST is not set; \
                 set it in the configuration of the BuildKit at BUILDKIT_HOST instead"
            );
        }
    }
    vars.extend(overrides.vars);
    let mut params = BuildParams::from_env(&vars)?;
    if let Some(output) = overrides.output {
        params.output = output;
    }
    // Several platforms make an index, which only the OCI exporter writes; as oci-build-task
    // does, they turn OUTPUT_OCI on, so pipelines find the layout at image/image/.
    if params.platforms.len() > 1 {
        params.output_oci = true;
    }
    let oci = params.output_oci;
    if params.unpack_rootfs && params.platforms.len() > 1 {
        anyhow::bail!("UNPACK_ROOTFS: a rootfs needs one platform, and IMAGE_PLATFORM names several");
    }
    let caches = LocalCaches::prepare(&mut params)?;
    let mut content = caches.stores.clone();
    let mut extra_attrs = HashMap::new();
    for (name, path) in &params.image_args {
        let arg = image_args::load(name, path)?;
        content.insert(arg.store_id, arg.store);
        extra_attrs.extend(arg.frontend_attrs);
    }
    let ssh = kiln_build_task::ssh::load(&params.ssh)?;
    let prepared = Prepared { content, extra_attrs, caches, ssh };
    with_buildkit(|channel| async move {
        // ADDITIONAL_TARGETS each go to the task output named after the target, when it has one.
        for target in &params.additional_targets {
            let dir = PathBuf::from(target);
            if !dir.is_dir() {
                eprintln!(
                    "build: ADDITIONAL_TARGETS: not building {target}: the task has no output folder named {target}"
                );
                continue;
            }
            eprintln!("building additional target {target} into {target}/");
            // Every image it exports is unpacked, as oci-build-task does.
            build_into(&channel, &params, &prepared, Some(target), &dir, oci, params.unpack_rootfs).await?;
        }
        build_into(&channel, &params, &prepared, params.target.as_deref(), &params.output, oci, params.unpack_rootfs)
            .await
    })
    .await
}

/// What every build of one run shares: content stores for the session, frontend options
/// for image args, and the local caches to record after an export.
struct Prepared {
    content: HashMap<String, std::sync::Arc<kiln_build_task::content::Store>>,
    extra_attrs: HashMap<String, String>,
    caches: LocalCaches,
    ssh: HashMap<String, kiln_build_task::ssh::Agent>,
}

/// Builds `target` into `output` (`image.tar` or the `image/` layout, and `digest`).
///
/// Everything is written in a folder of a random name kiln makes in `output` (removed
/// whatever happens, an interrupted build included) and renamed into place once complete,
/// so a link `output` already holds is replaced, never written through.
async fn build_into(
    channel: &tonic::transport::Channel,
    params: &BuildParams,
    prepared: &Prepared,
    target: Option<&str>,
    output: &Path,
    oci: bool,
    unpack: bool,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(output).with_context(|| format!("creating {}", output.display()))?;
    let staging = FreshDir::create(output, "kiln-build")
        .with_context(|| format!("creating a work folder in {}", output.display()))?;
    let partial = staging.path().join("export.tar");

    let context = std::fs::canonicalize(&params.context).context("CONTEXT")?;
    let dockerfile_dir = std::fs::canonicalize(&params.dockerfile)
        .context("DOCKERFILE")?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| context.clone());
    let session = SessionSpec {
        dirs: HashMap::from([("context".to_string(), context.clone()), ("dockerfile".to_string(), dockerfile_dir)]),
        outputs: HashMap::from([(0, partial.clone())]),
        secrets: params.secrets.clone(),
        credentials: HashMap::new(),
        docker_config: kiln_registry::docker_config::config_dir(|k| std::env::var(k).ok()),
        shared_key: shared_key(&context),
        content: prepared.content.clone(),
        ssh: prepared.ssh.clone(),
    };
    let exporter = Exporter { r#type: if oci { "oci" } else { "docker" }.into(), attrs: HashMap::new() };
    let mut frontend_attrs = params.frontend_attrs();
    frontend_attrs.extend(prepared.extra_attrs.clone());
    match target {
        Some(t) => frontend_attrs.insert("target".to_string(), t.to_string()),
        None => frontend_attrs.remove("target"),
    };
    let cache = solve::cache_options(&params.cache_from, &params.cache_to);
    let request = Solve { frontend_attrs, exporter, session, cache };

    let response = solve::solve(channel.clone(), request).await?;
    prepared.caches.finish(&response)?;
    let digest =
        response.get("containerimage.digest").cloned().context("BuildKit's answer has no containerimage.digest")?;
    let name = if params.output_oci {
        // OUTPUT_OCI: the OCI layout the tarball holds, as the folder image/image/.
        let layout = staging.path().join("image");
        std::fs::File::open(&partial)
            .and_then(|f| tar::Archive::new(f).unpack(&layout))
            .with_context(|| format!("unpacking the OCI layout into {}", output.join("image").display()))?;
        "image"
    } else {
        std::fs::rename(&partial, staging.path().join("image.tar")).context("keeping the exported image")?;
        "image.tar"
    };
    let _ = std::fs::remove_file(&partial);
    confined::create_new(&staging.path().join("digest"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, digest.as_bytes()))
        .with_context(|| format!("writing {}", output.join("digest").display()))?;
    let mut names = vec![name, "digest"];
    if unpack {
        unpack_rootfs(&staging.path().join(name), staging.path())?;
        names.extend(["rootfs", "metadata.json"]);
    }
    for name in names {
        let (from, to) = (staging.path().join(name), output.join(name));
        confined::rename_into(&from, &to).with_context(|| format!("moving {} into place", to.display()))?;
    }
    eprintln!("built {digest} into {}", output.join(name).display());
    Ok(())
}

/// `UNPACK_ROOTFS`: the built image as `rootfs` plus `metadata.json` in `output` (the
/// build's fresh work folder).
fn unpack_rootfs(image_tar: &Path, output: &Path) -> anyhow::Result<()> {
    use kiln_image::archive::{self, BlobLocation};
    let loaded = archive::load(image_tar)?;
    let kiln_image::oci::ManifestOrIndex::Manifest(manifest) =
        kiln_image::oci::ManifestOrIndex::parse("the built image", &loaded.top.media_type, &loaded.top.bytes)?
    else {
        anyhow::bail!("UNPACK_ROOTFS needs a single-platform image");
    };
    let location = |digest: &str| loaded.blobs.iter().find(|(d, _)| d.digest == digest).map(|(_, l)| l.clone());
    let read = |digest: &str| -> anyhow::Result<Vec<u8>> {
        match location(digest).with_context(|| format!("blob {digest} is not in the image"))? {
            BlobLocation::File(range) => Ok(range.read_all()?),
            BlobLocation::Memory(bytes) => Ok(bytes),
        }
    };
    let config: kiln_image::oci::ImageConfig = serde_json::from_slice(&read(&manifest.config.digest)?)?;
    let rootfs = output.join("rootfs");
    std::fs::create_dir_all(&rootfs)?;
    let mut unpacker = kiln_image::unpack::Unpacker::new(&rootfs, Default::default())?;
    for layer in &manifest.layers {
        let Some(BlobLocation::File(range)) = location(&layer.digest) else {
            anyhow::bail!("layer {} is not in the image", layer.digest);
        };
        let tar = kiln_image::decompress::decompressed(range.reader()?)?;
        unpacker.apply_layer(&layer.digest, tar)?;
    }
    let metadata = serde_json::json!({
        "env": config.config.env.unwrap_or_default(),
        "user": config.config.user.unwrap_or_default(),
    });
    std::fs::write(output.join("metadata.json"), serde_json::to_vec(&metadata)?)?;
    Ok(())
}

/// The same for every build of the same context folder, so BuildKit can reuse what it has.
fn shared_key(context: &Path) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    context.hash(&mut h);
    format!("kiln-{:016x}", h.finish())
}
