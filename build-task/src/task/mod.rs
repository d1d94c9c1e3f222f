//! One run of the build task, from checked params to the files in its output folder and,
//! with `PUSH`, the image in its registry: BuildKit found or started ([`crate::buildkit::daemon`]),
//! each target solved ([`crate::buildkit::solve`]), its export written in a fresh folder and renamed
//! into place, then pushed by the resource's own push code ([`kiln_registry::push`]).
//! The `build` binary and `out`'s `params.build` both run builds through here.
//!
//! What a run is made of: [`params`] (every param, from the environment) and [`cli`] (the
//! same as flags); [`context`] and [`patterns`] (what of the context is sent);
//! [`image_args`] (`IMAGE_ARG_*` images on disk); [`local_cache`] (the `cache` folder);
//! [`load`] (`LOAD` into a Docker engine).

pub mod cli;
pub mod context;
pub mod image_args;
pub mod load;
pub mod local_cache;
pub mod params;
pub mod patterns;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use kiln_image::confined::{self, FreshDir};
use kiln_image::digest::Digest;
use kiln_proto::moby::buildkit::v1::Exporter;

use crate::buildkit::daemon::{self, Buildkitd, DaemonConfig};
use crate::buildkit::kept_state::{self, KeptState};
use crate::buildkit::solve::{self, Solve};
use crate::buildkit::{info, transport};
use crate::session::SessionSpec;
use crate::task::local_cache::LocalCaches;
use crate::task::params::{BuildParams, Buildkit, ImageName, NamedContext};

/// Where this run's BuildKit is, decided once.
enum Where {
    /// `BUILDKIT_HOST`.
    Host(String),
    /// No `buildkitd` to start, but something listens on BuildKit's default socket.
    DefaultSocket,
    /// A `buildkitd` started here, as oci-build-task does.
    Spawn,
}

fn where_buildkit(settings: &Buildkit) -> Where {
    if let Some(host) = &settings.host {
        return Where::Host(host.clone());
    }
    let default_socket = transport::DEFAULT_HOST.trim_start_matches("unix://");
    if daemon::which("buildkitd").is_none() && Path::new(default_socket).exists() {
        return Where::DefaultSocket;
    }
    Where::Spawn
}

/// What a `buildkitd` started here is given.
struct SpawnWith<'a> {
    settings: &'a Buildkit,
    registries: &'a [daemon::RegistryAccess],
    /// Entitlements the build asks for, which a daemon started here allows.
    entitlements: Vec<String>,
    /// The task's `cache` folder, to keep the daemon's state in ([`kept_state`]).
    cache: Option<&'a Path>,
}

/// BuildKit `at` where [`where_buildkit`] said. A daemon started here is put in `daemon` for
/// the caller to stop, also when this is dropped half-way, and the state it keeps in `kept`.
async fn buildkit(
    at: &Where,
    daemon: &mut Option<Buildkitd>,
    kept: &mut Option<KeptState>,
    with: &SpawnWith<'_>,
) -> anyhow::Result<tonic::transport::Channel> {
    match at {
        Where::Host(host) => {
            let address = transport::parse(host, with.settings.docker_host.as_deref())?;
            return Ok(transport::connect(host, &address, with.settings.tls.as_ref()).await?);
        }
        Where::DefaultSocket => {
            let address = transport::parse(transport::DEFAULT_HOST, None)?;
            return Ok(transport::connect(transport::DEFAULT_HOST, &address, None).await?);
        }
        Where::Spawn => {}
    }
    let settings = with.settings;
    let budget = settings.cache_max_size;
    if let Some(cache) = with.cache {
        let owner = kept_state::Owner::this_run()?;
        match KeptState::take(cache, &owner, budget).await {
            Ok(Some(state)) => *kept = Some(state),
            Ok(None) => eprintln!(
                "build: warning: {} is in use by another build: this one starts cold, with a state of its own \
                 that is removed afterwards",
                cache.join("buildkit").display()
            ),
            Err(e) => eprintln!(
                "build: warning: cannot keep BuildKit's state in {e}: this build starts cold, with a state of its own \
                 that is removed afterwards"
            ),
        }
    }
    let mut config = DaemonConfig {
        dir: std::env::temp_dir().join(format!("kiln-buildkitd-{}", std::process::id())),
        state: None,
        gc_keep_bytes: None,
        mirrors: settings.mirrors.clone(),
        registries: with.registries.to_vec(),
        entitlements: with.entitlements.clone(),
        extra_config: settings.extra_config.clone(),
        debug: settings.debug,
    };
    loop {
        // The kept state, or none once it could not be used.
        config.state = kept.as_ref().map(KeptState::root);
        config.gc_keep_bytes = kept.as_ref().map(|k| k.budget);
        let started = daemon.insert(Buildkitd::spawn(&config)?);
        match started.wait_ready(settings.start_timeout).await {
            Ok(answer) => {
                let snapshotter = answer
                    .workers
                    .iter()
                    .flat_map(|w| &w.labels)
                    .find(|(k, _)| k == "org.mobyproject.buildkit.worker.snapshotter")
                    .map(|(_, v)| v.as_str())
                    .unwrap_or("unknown");
                eprintln!("build: buildkitd {} is ready (snapshotter {snapshotter})", answer.version);
                break;
            }
            // A kept state the daemon cannot start on (damaged, say): aside, and once more cold.
            Err(daemon::DaemonError::Exited { status, log }) if kept.as_ref().is_some_and(|k| !k.fresh) => {
                daemon.take().expect("just started").stop().await;
                let last = log.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("(no log)").trim().to_string();
                let why = format!("buildkitd exited ({status}) on it: {last}");
                if let Err(e) = kept.as_mut().expect("matched").move_aside(&why).await {
                    eprintln!("build: warning: cannot move the kept state aside ({e}): this build uses one of its own");
                    *kept = None;
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    let host = &daemon.as_ref().expect("started").host;
    let address = transport::parse(host, None)?;
    let channel = transport::connect(host, &address, None).await?;
    if let Some(state) = kept {
        state.keep_within_budget(channel.clone()).await;
    }
    Ok(channel)
}

/// Runs `work` with BuildKit, stopping a daemon started for it afterwards, also when the
/// build is interrupted (Ctrl-C, or SIGTERM when Concourse aborts the build) at any moment,
/// the daemon's start-up included. Dropping `work` closes its session and solve, so the
/// daemon has nothing left to wait for when it is asked to stop. A kept state is pruned
/// to its budget after the work, and released once the daemon stopped.
async fn with_buildkit<T, F, Fut>(at: &Where, with: &SpawnWith<'_>, work: F) -> anyhow::Result<T>
where
    F: FnOnce(tonic::transport::Channel) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    let mut daemon = None;
    let mut kept = None;
    let result = tokio::select! {
        r = async {
            let channel = buildkit(at, &mut daemon, &mut kept, with).await?;
            let result = work(channel.clone()).await;
            if let Some(state) = &kept {
                state.keep_within_budget(channel).await;
            }
            result
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
    drop(kept);
    result
}

/// BuildKit's version and workers, as `build --buildkit-info` prints them.
pub async fn buildkit_info(settings: &Buildkit) -> anyhow::Result<String> {
    let with = SpawnWith { settings, registries: &[], entitlements: Vec::new(), cache: None };
    with_buildkit(&where_buildkit(settings), &with, |channel| async move {
        let daemon = info::query(channel)
            .await
            .map_err(|s| anyhow::anyhow!("BuildKit answered {:?}: {}", s.code(), s.message()))?;
        Ok(daemon.to_string())
    })
    .await
}

/// Builds what `params` describe into `params.output` (and each additional target's
/// folder) and, with `PUSH`, pushes the image. `params` are checked already (they come
/// from [`BuildParams::from_env`]).
pub async fn run(params: BuildParams) -> anyhow::Result<Built> {
    // The task's cache folder holds the state of a daemon started here (layers, snapshots,
    // cache mounts: everything the exported layer cache would hold, and more), else
    // BuildKit's exported layer cache, as in oci-build-task.
    let at = where_buildkit(&params.buildkit);
    let spawn = matches!(at, Where::Spawn);
    let (state_folder, cache_folder) = match &params.cache_dir {
        Some(dir) if spawn => (Some(dir).filter(|_| !params.no_cache), None),
        dir => (None, dir.as_ref()),
    };
    let caches = LocalCaches::prepare(&params, cache_folder.map(PathBuf::as_path))?;
    let mut content = caches.stores.clone();
    let mut extra_attrs = HashMap::new();
    for (name, path) in &params.image_args {
        let arg = image_args::load(name, path)?;
        content.insert(arg.store_id, arg.store);
        extra_attrs.extend(arg.frontend_attrs);
    }
    let mut dirs = HashMap::new();
    for (name, context) in &params.named_contexts {
        match context {
            NamedContext::Dir(path) => {
                let slug = image_args::slug(name)
                    .with_context(|| format!("BUILD_CONTEXT_{name}: the name needs a letter or digit"))?;
                let local = format!("context-{slug}");
                let path = std::fs::canonicalize(path).with_context(|| format!("BUILD_CONTEXT_{name}"))?;
                if dirs.insert(local.clone(), path).is_some() {
                    anyhow::bail!(
                        "BUILD_CONTEXT_{name}: another BUILD_CONTEXT_ has the same name but for case or punctuation"
                    );
                }
                extra_attrs.insert(format!("context:{name}"), format!("local:{local}"));
            }
            NamedContext::Image(reference) => {
                extra_attrs.insert(format!("context:{name}"), reference.clone());
            }
            NamedContext::Layout(path) => {
                let arg = image_args::load_context(name, path)?;
                content.insert(arg.store_id, arg.store);
                extra_attrs.extend(arg.frontend_attrs);
            }
        }
    }
    let ssh = crate::session::ssh::load(&params.ssh)?;
    let prepared = Prepared { content, extra_attrs, dirs, caches, ssh, internal: spawn };
    let params = &params;
    let with = SpawnWith {
        settings: &params.buildkit,
        registries: &params.daemon_registries,
        entitlements: params.network.entitlements(),
        cache: state_folder.map(PathBuf::as_path),
    };
    let mut built = with_buildkit(&at, &with, |channel| async move {
        let foreign = foreign_platforms(&channel, &params.platforms).await;
        build_targets(&channel, params, &prepared).await.map_err(|e| {
            if foreign.is_empty() || !format!("{e:#}").contains(solve::EXEC_FORMAT_ERROR) {
                e
            } else {
                e.context(format!("{} cannot run here: {EMULATOR_HINT}", foreign.join(", ")))
            }
        })
    })
    .await?;
    if params.push {
        built.digest = push(params, &built).await?;
    }
    if params.load {
        let socket = transport::docker_socket(params.buildkit.docker_host.as_deref())
            .map_err(|e| anyhow::anyhow!("LOAD: {e}"))?;
        let loaded = crate::task::load::load(&socket, &built.output.join(built.image)).await?;
        eprintln!("build: loaded into the Docker engine at {}: {}", socket.display(), loaded.join("; "));
    }
    Ok(built)
}

/// What a worker needs to run `RUN` steps for a platform it does not list.
const EMULATOR_HINT: &str = "RUN steps for another architecture need a user-mode emulator registered with \
     binfmt_misc on the BuildKit host (e.g. Debian's qemu-user-static with binfmt-support), and BuildKit restarted";

/// The platforms of `wanted` no worker of the daemon lists, said in one line before the
/// build: without `RUN` steps such a build still works (so it is not refused), with them
/// it fails with the kernel's "exec format error", which this explains.
async fn foreign_platforms(channel: &tonic::transport::Channel, wanted: &[String]) -> Vec<String> {
    if wanted.is_empty() {
        return Vec::new();
    }
    let Ok(daemon) = info::query(channel.clone()).await else { return Vec::new() };
    let listed: Vec<&String> = daemon.workers.iter().flat_map(|w| &w.platforms).collect();
    let foreign: Vec<String> =
        wanted.iter().filter(|p| !listed.iter().any(|l| info::same_platform(p, l))).cloned().collect();
    if !foreign.is_empty() {
        let listed: Vec<&str> = listed.iter().map(|s| s.as_str()).collect();
        eprintln!(
            "build: warning: IMAGE_PLATFORM: BuildKit's workers run {}, not {}: {EMULATOR_HINT}",
            listed.join(", "),
            foreign.join(", ")
        );
    }
    foreign
}

/// Every target the params name, the main one last, whose result is returned.
async fn build_targets(
    channel: &tonic::transport::Channel,
    params: &BuildParams,
    prepared: &Prepared,
) -> anyhow::Result<Built> {
    // ADDITIONAL_TARGETS each go to the task output named after the target, when it has one.
    for target in &params.additional_targets {
        let dir = PathBuf::from(target);
        if !dir.is_dir() {
            eprintln!("build: ADDITIONAL_TARGETS: not building {target}: the task has no output folder named {target}");
            continue;
        }
        eprintln!("building additional target {target} into {target}/");
        // Every image it exports is unpacked, as oci-build-task does.
        let each = Output { target: Some(target), dir: &dir, name: None };
        build_into(channel, params, prepared, each).await?;
    }
    let main = Output { target: params.target.as_deref(), dir: &params.output, name: params.name.as_ref() };
    build_into(channel, params, prepared, main).await
}

/// What the main target built: its digest (the manifest's, or the index's for several
/// platforms) and the image file or layout folder, inside the output folder.
#[derive(Debug, Clone)]
pub struct Built {
    pub digest: Digest,
    pub output: PathBuf,
    /// `image.tar`, or `image` (the OCI layout folder).
    pub image: &'static str,
}

/// `PUSH`: the built image to `REGISTRY/IMAGE_NAME:IMAGE_TAG`, by the resource's own push
/// code; `image/digest` then holds the digest the registry stored. The registry's answer
/// is checked against the digest computed here, so a tag never moves to something else.
async fn push(params: &BuildParams, built: &Built) -> anyhow::Result<Digest> {
    use kiln_registry::{Client, ClientConfig, Repository};
    let name = params.name.as_ref().context("PUSH needs IMAGE_NAME")?;
    let repo = Repository::parse(&name.repository).with_context(|| format!("PUSH: {}", name.repository))?;
    let credentials = match &params.registry_credentials {
        Some(c) => Some(c.clone()),
        None => params
            .docker_config
            .as_deref()
            .map(|dir| kiln_registry::docker_config::credentials_for(dir, repo.registry()))
            .transpose()
            .map(Option::flatten)
            .with_context(|| format!("PUSH: reading Docker's credentials for {}", repo.registry()))?,
    };
    let config = ClientConfig { credentials, ..ClientConfig::default() };
    let client = std::sync::Arc::new(Client::new(repo, config)?);
    let loaded = kiln_registry::push::load(&built.output, Path::new(built.image)).await?;
    eprintln!("pushing {} to {name}", loaded.top.digest);
    kiln_registry::push::push(&client, &loaded, std::slice::from_ref(&name.tag))
        .await
        .with_context(|| format!("PUSH: pushing to {name} failed"))?;
    if loaded.top.digest != built.digest {
        confined::write_new(&built.output, "digest", loaded.top.digest.to_string().as_bytes())
            .with_context(|| format!("writing {}", built.output.join("digest").display()))?;
    }
    Ok(loaded.top.digest)
}

/// What every build of one run shares: content stores for the session, frontend options
/// for image args, and the local caches to record after an export.
struct Prepared {
    content: HashMap<String, std::sync::Arc<crate::session::content::Store>>,
    extra_attrs: HashMap<String, String>,
    /// Named contexts that are folders, by the local name the frontend asks for.
    dirs: HashMap<String, PathBuf>,
    caches: LocalCaches,
    ssh: HashMap<String, crate::session::ssh::Agent>,
    /// Builds on a daemon started here are left out of its build history, which would
    /// otherwise hold their exports beyond a kept state's budget.
    internal: bool,
}

/// Where one target's image goes (the format and `UNPACK_ROOTFS` are the run's, in params).
struct Output<'a> {
    target: Option<&'a str>,
    dir: &'a Path,
    /// `IMAGE_NAME`/`IMAGE_TAG`: the image's name in `image.tar` and the layout, and `tag`.
    name: Option<&'a ImageName>,
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
    out: Output<'_>,
) -> anyhow::Result<Built> {
    let Output { target, dir: output, name: image_name } = out;
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
        dirs: prepared
            .dirs
            .clone()
            .into_iter()
            .chain([("context".to_string(), context.clone()), ("dockerfile".to_string(), dockerfile_dir)])
            .collect(),
        outputs: HashMap::from([(0, partial.clone())]),
        secrets: params.secrets.clone(),
        credentials: session_credentials(params),
        docker_config: params.docker_config.clone(),
        shared_key: shared_key(&params.context),
        content: prepared.content.clone(),
        ssh: prepared.ssh.clone(),
    };
    let mut exporter_attrs = params.exporter_attrs();
    if let Some(n) = image_name {
        // The docker exporter makes it image.tar's RepoTags; the OCI one, the layout's
        // io.containerd.image.name and org.opencontainers.image.ref.name annotations.
        exporter_attrs.insert("name".to_string(), n.to_string());
    }
    let exporter = Exporter { r#type: if params.output_oci { "oci" } else { "docker" }.into(), attrs: exporter_attrs };
    let mut frontend_attrs = params.frontend_attrs();
    frontend_attrs.extend(prepared.extra_attrs.clone());
    frontend_attrs.extend(solve::cache_imports_attr(&prepared.caches.cache_from));
    match target {
        Some(t) => frontend_attrs.insert("target".to_string(), t.to_string()),
        None => frontend_attrs.remove("target"),
    };
    let cache = solve::cache_options(&prepared.caches.cache_from, &prepared.caches.cache_to);
    let request = Solve {
        frontend_attrs,
        exporter,
        session,
        cache,
        internal: prepared.internal,
        entitlements: params.network.entitlements(),
        progress: params.progress,
    };

    let response = solve::solve(channel.clone(), request).await?;
    prepared.caches.finish(&response)?;
    let digest = response.get("containerimage.digest").context("BuildKit's answer has no containerimage.digest")?;
    let digest: Digest = digest.parse().context("BuildKit's answer: containerimage.digest")?;
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
    confined::create_with(&staging.path().join("digest"), digest.to_string().as_bytes())
        .with_context(|| format!("writing {}", output.join("digest").display()))?;
    let mut names = vec![name, "digest"];
    if let Some(n) = image_name {
        confined::create_with(&staging.path().join("tag"), n.tag.as_bytes())
            .with_context(|| format!("writing {}", output.join("tag").display()))?;
        names.push("tag");
    }
    if params.unpack_rootfs {
        unpack_rootfs(&staging.path().join(name), staging.path())?;
        names.extend(["rootfs", "metadata.json"]);
    }
    for name in names {
        let (from, to) = (staging.path().join(name), output.join(name));
        confined::rename_into(&from, &to).with_context(|| format!("moving {} into place", to.display()))?;
    }
    eprintln!("built {digest} into {}", output.join(name).display());
    Ok(Built { digest, output: output.to_path_buf(), image: name })
}

/// `UNPACK_ROOTFS`: the built image as `rootfs` plus `metadata.json` in `output` (the
/// build's fresh work folder).
fn unpack_rootfs(image_tar: &Path, output: &Path) -> anyhow::Result<()> {
    use kiln_image::archive;
    use kiln_image::blob::Blob;
    let loaded = archive::load(image_tar)?;
    let kiln_image::oci::ManifestOrIndex::Manifest(manifest) =
        kiln_image::oci::ManifestOrIndex::parse("the built image", &loaded.top.media_type, &loaded.top.bytes)?
    else {
        anyhow::bail!("UNPACK_ROOTFS needs a single-platform image");
    };
    let location = |digest: &Digest| loaded.blobs.iter().find(|(d, _)| d.digest == *digest).map(|(_, b)| b.clone());
    let read = |digest: &Digest| -> anyhow::Result<Vec<u8>> {
        Ok(location(digest).with_context(|| format!("blob {digest} is not in the image"))?.read_all()?)
    };
    let config: kiln_image::oci::ImageConfig = serde_json::from_slice(&read(&manifest.config.digest)?)?;
    let mut ranges = Vec::new();
    for layer in &manifest.layers {
        let Some(Blob::File(range)) = location(&layer.digest) else {
            anyhow::bail!("layer {} is not in the image", layer.digest);
        };
        ranges.push(range);
    }
    let rootfs = output.join("rootfs");
    std::fs::create_dir_all(&rootfs)?;
    let mut unpacker = kiln_image::unpack::Unpacker::new(&rootfs, Default::default())?;
    let names: Vec<String> = manifest.layers.iter().map(|l| l.digest.to_string()).collect();
    kiln_image::rootfs::unpack_layers(&mut unpacker, &names, |i| ranges[i].reader(), |_| {})?;
    let metadata = kiln_image::rootfs::run_metadata(&config.config);
    std::fs::write(output.join("metadata.json"), serde_json::to_vec(&metadata)?)?;
    Ok(())
}

/// `REGISTRY_USERNAME`/`REGISTRY_PASSWORD` (or a put's source credentials) for the image's
/// own registry, so BuildKit can also pull from it (a `FROM` there, a registry cache).
fn session_credentials(params: &BuildParams) -> HashMap<String, (String, String)> {
    let (Some(name), Some(c)) = (&params.name, &params.registry_credentials) else { return HashMap::new() };
    let Ok(repo) = kiln_registry::Repository::parse(&name.repository) else { return HashMap::new() };
    let mut hosts = vec![repo.registry().to_string()];
    if repo.registry() == kiln_registry::reference::DOCKER_HUB {
        // BuildKit asks for Docker Hub under the names its resolver uses.
        hosts.extend(["docker.io".to_string(), "registry-1.docker.io".to_string()]);
    }
    hosts.into_iter().map(|h| (h, (c.username.clone(), c.password.clone()))).collect()
}

/// The same for every build of the same `CONTEXT`, as the param names it (relative to the
/// task's folder, which Concourse makes anew for every build), so BuildKit finds the copy
/// of the context it kept from the last build and is sent only what changed since.
///
/// SHA-256 of the path's bytes: the same in every kiln release (std's `DefaultHasher` may
/// change with the toolchain, and every context would be sent whole again).
fn shared_key(context: &Path) -> String {
    use sha2::Digest as _;
    use std::os::unix::ffi::OsStrExt as _;
    let digest = sha2::Sha256::digest(context.as_os_str().as_bytes());
    format!("kiln-{}", hex::encode(&digest[..8]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_key_is_the_same_in_every_release() {
        // SHA-256 of "ctx", its first 8 bytes: a toolchain cannot change it.
        assert_eq!(shared_key(Path::new("ctx")), "kiln-0230c6b1d833c51c");
        assert_ne!(shared_key(Path::new("ctx")), shared_key(Path::new("ctx2")));
    }
}
