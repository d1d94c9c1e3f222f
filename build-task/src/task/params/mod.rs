//! The task's params, read from the environment under the names concourse/oci-build-task
//! uses, checked, and turned into what a solve needs.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::session::secrets::SecretSource;

pub mod table;

/// A build as the params describe it.
#[derive(Debug, Clone)]
pub struct BuildParams {
    pub context: PathBuf,
    pub dockerfile: PathBuf,
    pub build_args: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub target: Option<String>,
    /// More stages to build, each into the task output named after it.
    pub additional_targets: Vec<String>,
    pub platforms: Vec<String>,
    pub secrets: HashMap<String, SecretSource>,
    pub unpack_rootfs: bool,
    pub output_oci: bool,
    /// `BUILDKIT_ADD_HOSTS`: `host=ip` entries for `/etc/hosts` in RUN steps.
    pub add_hosts: Option<String>,
    /// `NO_CACHE`: build every step again.
    pub no_cache: bool,
    /// `CACHE_FROM` / `CACHE_TO`: caches to import and export (registry, inline, …).
    pub cache_from: Vec<CacheEntry>,
    pub cache_to: Vec<CacheEntry>,
    /// `ATTEST_SBOM` / `ATTEST_PROVENANCE`, as the frontend's `attest:*` options.
    pub attest: BTreeMap<String, String>,
    /// `IMAGE_ARG_<NAME>=path`: images on disk (docker-save or OCI tarball, OCI layout) that
    /// `FROM ${NAME}` uses without asking a registry.
    pub image_args: BTreeMap<String, PathBuf>,
    /// `BUILD_CONTEXT_<name>`: what `FROM <name>` and `COPY --from=<name>` resolve to.
    pub named_contexts: BTreeMap<String, NamedContext>,
    /// `BUILDKIT_SSH`: agent sockets or private key files, by the id `RUN --mount=type=ssh`
    /// names (`default` when it names none).
    pub ssh: BTreeMap<String, Vec<PathBuf>>,
    /// The task's `cache` folder, when it has one: BuildKit's cache is imported from and
    /// exported to it, as oci-build-task does.
    pub cache_dir: Option<PathBuf>,
    /// Where outputs go: `image/` in the task's working directory.
    pub output: PathBuf,
    /// `IMAGE_NAME` (after `REGISTRY/` when that is set) and `IMAGE_TAG`: what the image is
    /// called in `image.tar`, the layout's annotations and `image/tag`.
    pub name: Option<ImageName>,
    /// `PUSH`: push what was built to `name` (a registry's repository then).
    pub push: bool,
    /// `REGISTRY_USERNAME` / `REGISTRY_PASSWORD`, for the push; without them, Docker's
    /// `config.json`.
    pub registry_credentials: Option<kiln_registry::Credentials>,
    /// How a `buildkitd` started for this build reaches registries the caller knows about
    /// (a put's own registry); none from the task's params.
    pub daemon_registries: Vec<crate::buildkit::daemon::RegistryAccess>,
    /// `SOURCE_DATE_EPOCH` (seconds, or the commit time of CONTEXT's git checkout): the
    /// frontend's build arg of that name, and timestamps rewritten on export.
    pub source_date_epoch: Option<u64>,
    /// `COMPRESSION`, `COMPRESSION_LEVEL`, `FORCE_COMPRESSION`, `OCI_MEDIATYPES`, as the
    /// exporter's options of the same meaning.
    pub layers: LayerOptions,
    /// `NETWORK`: RUN steps' network (the frontend's `force-network-mode`).
    pub network: Network,
    /// `LOAD`: load `image.tar` into the Docker engine at `DOCKER_HOST` ([`crate::task::load`]).
    pub load: bool,
    /// `PROGRESS`: `auto`, `plain`, `tty` or `quiet` ([`crate::buildkit::progress`]).
    pub progress: crate::buildkit::progress::Mode,
    /// `DOCKER_CONFIG` (else `~/.docker`): registry credentials for `FROM` and `PUSH`.
    pub docker_config: Option<PathBuf>,
    /// Where BuildKit is.
    pub buildkit: Buildkit,
}

/// The network `RUN` steps get.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Network {
    /// The daemon's default (its CNI or bridge network, or the host's where it has none).
    #[default]
    Default,
    /// Only a loopback interface of its own.
    None,
    /// The host's network: BuildKit's `network.host` entitlement, which the daemon must allow.
    Host,
}

impl Network {
    fn parse(value: Option<&str>) -> Result<Self, ParamError> {
        match value {
            None | Some("default") => Ok(Network::Default),
            Some("none") => Ok(Network::None),
            Some("host") => Ok(Network::Host),
            Some(other) => Err(err("NETWORK", format!("{other:?} is not default, none or host"))),
        }
    }

    /// The entitlements a Solve needs for it, which a daemon kiln starts is told to allow.
    pub fn entitlements(self) -> Vec<String> {
        match self {
            Network::Host => vec!["network.host".to_string()],
            Network::Default | Network::None => Vec::new(),
        }
    }
}

/// How the exporter writes layers and manifests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerOptions {
    /// `gzip`, `zstd`, `estargz` or `uncompressed`; BuildKit's default (gzip) when unset.
    pub compression: Option<String>,
    pub level: Option<u32>,
    /// Recompress layers that exist already in another compression (a base image's).
    pub force: bool,
    /// OCI media types rather than Docker's; `None` leaves it to BuildKit (zstd and
    /// estargz need them, and BuildKit turns them on for those).
    pub oci_mediatypes: Option<bool>,
}

impl LayerOptions {
    fn from_params(get: &dyn Fn(&str) -> Option<String>) -> Result<Self, ParamError> {
        let compression = get("COMPRESSION");
        let levels = match compression.as_deref() {
            None | Some("gzip") => 0..=9,
            Some("zstd") => 0..=22,
            Some("estargz") => 0..=9,
            Some("uncompressed") => 0..=0,
            Some(other) => {
                return Err(err("COMPRESSION", format!("{other:?} is not gzip, zstd, estargz or uncompressed")));
            }
        };
        let level = match get("COMPRESSION_LEVEL") {
            None => None,
            Some(_) if compression.as_deref() == Some("uncompressed") => {
                return Err(err("COMPRESSION_LEVEL", "has no meaning with COMPRESSION=uncompressed"));
            }
            Some(text) => match text.parse::<u32>() {
                Ok(n) if levels.contains(&n) => Some(n),
                _ => {
                    let kind = compression.as_deref().unwrap_or("gzip");
                    return Err(err(
                        "COMPRESSION_LEVEL",
                        format!("{text:?} is not a {kind} level ({} to {})", levels.start(), levels.end()),
                    ));
                }
            },
        };
        let force = bool_param(get, "FORCE_COMPRESSION")?.unwrap_or(false);
        let oci_mediatypes = bool_param(get, "OCI_MEDIATYPES")?;
        if oci_mediatypes == Some(false) && matches!(compression.as_deref(), Some("zstd" | "estargz")) {
            return Err(err(
                "OCI_MEDIATYPES",
                "cannot be false with COMPRESSION=zstd or estargz: Docker's types have no such layers",
            ));
        }
        Ok(LayerOptions { compression, level, force, oci_mediatypes })
    }

    /// The exporter's attributes for these options.
    pub fn exporter_attrs(&self) -> HashMap<String, String> {
        let mut attrs = HashMap::new();
        if let Some(c) = &self.compression {
            attrs.insert("compression".to_string(), c.clone());
        }
        if let Some(level) = self.level {
            attrs.insert("compression-level".to_string(), level.to_string());
        }
        if self.force {
            attrs.insert("force-compression".to_string(), "true".to_string());
        }
        let oci =
            self.oci_mediatypes.or(matches!(self.compression.as_deref(), Some("zstd" | "estargz")).then_some(true));
        if let Some(oci) = oci {
            attrs.insert("oci-mediatypes".to_string(), oci.to_string());
        }
        attrs
    }
}

/// A `true`/`false` param (`1`/`0` too); `None` when unset.
fn bool_param(get: &dyn Fn(&str) -> Option<String>, name: &str) -> Result<Option<bool>, ParamError> {
    match get(name).as_deref() {
        None => Ok(None),
        Some("true" | "1") => Ok(Some(true)),
        Some("false" | "0") => Ok(Some(false)),
        Some(other) => Err(err(name, format!("{other:?} is not true or false"))),
    }
}

/// `SOURCE_DATE_EPOCH`: seconds since 1970, or `git` for the commit time of the checkout
/// that holds `context` (as a Concourse `git` input is), read with `git log`.
fn source_date_epoch(value: Option<String>, context: &Path) -> Result<Option<u64>, ParamError> {
    let Some(value) = value else { return Ok(None) };
    if value != "git" {
        return value
            .parse::<u64>()
            .map(Some)
            .map_err(|_| err("SOURCE_DATE_EPOCH", format!("{value:?} is not a number of seconds, nor git")));
    }
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(context)
        .args(["log", "-1", "--format=%ct"])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| err("SOURCE_DATE_EPOCH", format!("git: running git: {e} (git must be on PATH for git)")))?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    match text.parse::<u64>() {
        Ok(seconds) if out.status.success() => Ok(Some(seconds)),
        _ => {
            let why = String::from_utf8_lossy(&out.stderr);
            let why = why.lines().next().unwrap_or("no commit time").trim();
            Err(err(
                "SOURCE_DATE_EPOCH",
                format!("git: {} is not in a git checkout with a commit ({why})", context.display()),
            ))
        }
    }
}

/// One `BUILD_CONTEXT_<name>` (BuildKit's `context:<name>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamedContext {
    /// A folder (another task input), sent through the session as the main context is,
    /// with its own `.dockerignore`.
    Dir(PathBuf),
    /// `docker-image://<reference>`: an image BuildKit pulls.
    Image(String),
    /// `oci-layout://<path>`: an image on disk, served from the session's content store.
    Layout(PathBuf),
}

impl NamedContext {
    fn parse(param: &str, value: &str) -> Result<Self, ParamError> {
        if let Some(reference) = value.strip_prefix("docker-image://") {
            let (name, digest) = reference.split_once('@').map_or((reference, None), |(n, d)| (n, Some(d)));
            // A tag is after the last colon that is past the last slash (a port is not one).
            let (name, tag) = match name.rfind(':') {
                Some(i) if !name[i..].contains('/') => (&name[..i], Some(&name[i + 1..])),
                _ => (name, None),
            };
            let bad = |e: kiln_registry::ReferenceError| err(param, format!("{value:?}: {e}"));
            kiln_registry::Repository::parse(name).map_err(bad)?;
            if let Some(tag) = tag {
                kiln_registry::reference::validate_tag(tag).map_err(bad)?;
            }
            if let Some(digest) = digest {
                digest.parse::<kiln_image::digest::Digest>().map_err(|e| err(param, format!("{value:?}: {e}")))?;
            }
            return Ok(NamedContext::Image(value.to_string()));
        }
        let (path, layout) = match value.strip_prefix("oci-layout://") {
            Some(path) => (PathBuf::from(path), true),
            None if value.contains("://") => {
                return Err(err(param, format!("{value:?}: give a folder, docker-image://… or oci-layout://…")));
            }
            None => (PathBuf::from(value), false),
        };
        confine(param, &path)?;
        if !path.exists() {
            return Err(err(param, format!("{} does not exist", path.display())));
        }
        if !layout && !path.is_dir() {
            return Err(err(param, format!("{} is not a folder (an image on disk is oci-layout://…)", path.display())));
        }
        Ok(if layout { NamedContext::Layout(path) } else { NamedContext::Dir(path) })
    }
}

/// An image's name and tag, as `IMAGE_NAME`, `IMAGE_TAG` and `REGISTRY` give them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageName {
    /// `REGISTRY/IMAGE_NAME`, or `IMAGE_NAME` alone.
    pub repository: String,
    pub tag: String,
}

impl std::fmt::Display for ImageName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.repository, self.tag)
    }
}

impl ImageName {
    /// Reads and checks the naming params (and `PUSH`'s needs) from `get`.
    fn from_params(get: &dyn Fn(&str) -> Option<String>, push: bool) -> Result<Option<Self>, ParamError> {
        let registry = get("REGISTRY").map(|r| r.trim_end_matches('/').to_string());
        let tag = get("IMAGE_TAG");
        let Some(name) = get("IMAGE_NAME") else {
            if push {
                return Err(err("PUSH", "needs IMAGE_NAME (and REGISTRY): the image's name in the registry"));
            }
            if let Some(set) = [("IMAGE_TAG", &tag), ("REGISTRY", &registry)].iter().find(|(_, v)| v.is_some()) {
                return Err(err(set.0, "needs IMAGE_NAME, the name of the image it applies to"));
            }
            return Ok(None);
        };
        if push && registry.is_none() {
            return Err(err(
                "PUSH",
                "needs REGISTRY, the registry (and namespace) to push to, e.g. registry.example.com/team",
            ));
        }
        let tag = tag.unwrap_or_else(|| "latest".into());
        kiln_registry::reference::validate_tag(&tag).map_err(|e| err("IMAGE_TAG", e.to_string()))?;
        if name.contains('@') || name.rsplit('/').next().is_some_and(|last| last.contains(':')) {
            return Err(err("IMAGE_NAME", format!("{name:?}: give the name alone; the tag goes in IMAGE_TAG")));
        }
        let repository = match &registry {
            Some(r) => format!("{r}/{name}"),
            None => name,
        };
        let which = if registry.is_some() { "REGISTRY/IMAGE_NAME" } else { "IMAGE_NAME" };
        kiln_registry::Repository::parse(&repository)
            .map_err(|e| err(which, format!("{repository:?} is not an image name: {e}")))?;
        Ok(Some(ImageName { repository, tag }))
    }
}

/// One cache to import or export, as buildx's `--cache-from`/`--cache-to` take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    pub kind: String,
    pub attrs: BTreeMap<String, String>,
}

/// Where BuildKit is, and what a `buildkitd` started here is given: the table's
/// [`table::Kind::Buildkit`] and [`table::Kind::Daemon`] params. `build --buildkit-info`
/// needs only these, so they are read apart from the build's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buildkit {
    /// `BUILDKIT_HOST`; none means a `buildkitd` started here (or BuildKit's default socket).
    pub host: Option<String>,
    /// `BUILDKIT_TLS_*`, for a `tcp://` host.
    pub tls: Option<crate::buildkit::transport::TlsFiles>,
    /// `DOCKER_HOST`: the engine `docker://` and `LOAD` use.
    pub docker_host: Option<String>,
    /// `DEBUG`: the daemon's debug log.
    pub debug: bool,
    /// `BUILDKIT_INFO` (`--buildkit-info`): print BuildKit's version and workers, and build nothing.
    pub info: bool,
    /// `BUILDKIT_START_TIMEOUT`: how long a daemon started here is waited for.
    pub start_timeout: std::time::Duration,
    /// `BUILDKIT_CACHE_MAX_SIZE`: the budget of the state kept in the task's cache folder.
    pub cache_max_size: u64,
    /// `REGISTRY_MIRRORS`.
    pub mirrors: Vec<String>,
    /// `BUILDKIT_EXTRA_CONFIG`: TOML merged over the mirrors.
    pub extra_config: Option<String>,
}

impl Buildkit {
    /// Reads these params from `vars`, later pairs winning.
    pub fn from_env(vars: &[(String, String)]) -> Result<Self, ParamError> {
        let get = |k: &str| vars.iter().rfind(|(n, _)| n == k).map(|(_, v)| v.clone()).filter(|v| !v.is_empty());
        let flag = |k: &str| get(k).is_some_and(|v| v == "true" || v == "1");
        let start_timeout = match get("BUILDKIT_START_TIMEOUT") {
            Some(s) => s
                .trim()
                .parse::<u64>()
                .map_err(|_| err("BUILDKIT_START_TIMEOUT", format!("{s:?} is not a number of seconds")))?,
            None => 60,
        };
        let cache_max_size = match get("BUILDKIT_CACHE_MAX_SIZE") {
            Some(s) => crate::buildkit::kept_state::parse_size(&s).map_err(|e| err("BUILDKIT_CACHE_MAX_SIZE", e))?,
            None => crate::buildkit::kept_state::DEFAULT_BUDGET,
        };
        Ok(Buildkit {
            host: get("BUILDKIT_HOST"),
            tls: crate::buildkit::transport::TlsFiles::from_env(get),
            docker_host: get("DOCKER_HOST"),
            debug: flag("DEBUG"),
            info: flag("BUILDKIT_INFO"),
            start_timeout: std::time::Duration::from_secs(start_timeout),
            cache_max_size,
            mirrors: get("REGISTRY_MIRRORS")
                .map(|m| m.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
                .unwrap_or_default(),
            extra_config: get("BUILDKIT_EXTRA_CONFIG"),
        })
    }

    /// Daemon settings given beside `BUILDKIT_HOST`, which configures another BuildKit.
    pub fn warnings(vars: &[(String, String)]) -> Vec<String> {
        let set = |name: &str| vars.iter().any(|(k, v)| k == name && !v.is_empty());
        if !set("BUILDKIT_HOST") {
            return Vec::new();
        }
        table::of_kind(table::Kind::Daemon)
            .filter(|p| set(p.name))
            .map(|p| {
                format!(
                    "{} configures the buildkitd build starts when BUILDKIT_HOST is not set; \
                     set it in the configuration of the BuildKit at BUILDKIT_HOST instead",
                    p.name
                )
            })
            .collect()
    }
}

/// A param that cannot be used, naming it.
#[derive(Debug, thiserror::Error)]
#[error("{name}: {why}")]
pub struct ParamError {
    pub name: String,
    pub why: String,
}

fn err(name: &str, why: impl Into<String>) -> ParamError {
    ParamError { name: name.into(), why: why.into() }
}

/// Two params of one prefix that BuildKit would be shown under one name (`IMAGE_ARG_base`
/// and `IMAGE_ARG_BASE` are both `base`, see [`crate::task::image_args::slug`]) are refused: one
/// would silently replace the other.
fn distinct_names<'a>(prefix: &str, names: impl Iterator<Item = &'a String>) -> Result<(), ParamError> {
    let mut seen: BTreeMap<String, &String> = BTreeMap::new();
    for name in names {
        // A name without a letter or digit is refused where it is loaded, with its own words.
        let Some(slug) = crate::task::image_args::slug(name) else { continue };
        if let Some(other) = seen.insert(slug.clone(), name) {
            return Err(err(
                &format!("{prefix}{name}"),
                format!("is {slug:?} to BuildKit, as {prefix}{other} is: rename one of them"),
            ));
        }
    }
    Ok(())
}

impl BuildParams {
    /// Reads the params from `vars` (the process environment in `build`).
    pub fn from_env(vars: &[(String, String)]) -> Result<Self, ParamError> {
        let get = |k: &str| vars.iter().rfind(|(n, _)| n == k).map(|(_, v)| v.clone()).filter(|v| !v.is_empty());
        let flag = |k: &str| get(k).is_some_and(|v| v == "true" || v == "1");
        let context = PathBuf::from(get("CONTEXT").unwrap_or_else(|| ".".into()));
        confine("CONTEXT", &context)?;
        if !context.is_dir() {
            return Err(err("CONTEXT", format!("{} is not a directory", context.display())));
        }
        let dockerfile = get("DOCKERFILE").map(PathBuf::from).unwrap_or_else(|| context.join("Dockerfile"));
        confine("DOCKERFILE", &dockerfile)?;
        if !dockerfile.is_file() {
            return Err(err("DOCKERFILE", format!("{} does not exist", dockerfile.display())));
        }

        let mut build_args = BTreeMap::new();
        if let Some(file) = get("BUILD_ARGS_FILE") {
            build_args.extend(read_pairs("BUILD_ARGS_FILE", Path::new(&file))?);
        }
        let mut labels = BTreeMap::new();
        if let Some(file) = get("LABELS_FILE") {
            labels.extend(read_pairs("LABELS_FILE", Path::new(&file))?);
        }
        let mut secrets = HashMap::new();
        let mut image_args = BTreeMap::new();
        let mut named_contexts = BTreeMap::new();
        for (name, value) in vars {
            if let Some(arg) = name.strip_prefix("BUILD_ARG_") {
                build_args.insert(arg.to_string(), value.clone());
            } else if let Some(label) = name.strip_prefix("LABEL_") {
                labels.insert(label.to_string(), value.clone());
            } else if let Some(id) = name.strip_prefix("BUILDKIT_SECRETTEXT_") {
                secrets.insert(id.to_string(), SecretSource::Text(value.clone()));
            } else if let Some(id) = name.strip_prefix("BUILDKIT_SECRETENV_") {
                // The value is another variable's name: credential managers put secrets in
                // params, and this keeps them out of the param that names them.
                let Some(secret) = vars.iter().rfind(|(n, _)| n == value).map(|(_, v)| v.clone()) else {
                    return Err(err(name, format!("the environment variable {value} is not set")));
                };
                secrets.insert(id.to_string(), SecretSource::Text(secret));
            } else if let Some(context) = name.strip_prefix("BUILD_CONTEXT_") {
                if context.is_empty() {
                    return Err(err(name, "needs a name after BUILD_CONTEXT_"));
                }
                named_contexts.insert(context.to_string(), NamedContext::parse(name, value)?);
            } else if let Some(arg) = name.strip_prefix("IMAGE_ARG_") {
                let path = PathBuf::from(value);
                confine(name, &path)?;
                if !path.exists() {
                    return Err(err(name, format!("{} does not exist", path.display())));
                }
                image_args.insert(arg.to_string(), path);
            } else if let Some(id) = name.strip_prefix("BUILDKIT_SECRET_") {
                let path = PathBuf::from(value);
                confine(name, &path)?;
                if !path.is_file() {
                    return Err(err(name, format!("secret file {} does not exist", path.display())));
                }
                secrets.insert(id.to_string(), SecretSource::File(path));
            }
        }
        distinct_names("IMAGE_ARG_", image_args.keys())?;
        distinct_names("BUILD_CONTEXT_", named_contexts.keys())?;
        let target = match (get("TARGET"), get("TARGET_FILE")) {
            (Some(t), _) => Some(t),
            (None, Some(file)) => Some(read_text("TARGET_FILE", Path::new(&file))?.trim().to_string()),
            (None, None) => None,
        };
        let platforms: Vec<String> = get("IMAGE_PLATFORM")
            .map(|p| p.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        for p in &platforms {
            if p.split('/').count() < 2 || p.split('/').any(str::is_empty) {
                return Err(err("IMAGE_PLATFORM", format!("{p:?} is not os/arch[/variant]")));
            }
        }
        let additional_targets: Vec<String> = get("ADDITIONAL_TARGETS")
            .map(|t| t.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        for t in &additional_targets {
            if t.contains('/') || t == "." || t == ".." {
                return Err(err("ADDITIONAL_TARGETS", format!("{t:?} is not a stage name")));
            }
        }
        let add_hosts = get("BUILDKIT_ADD_HOSTS");
        if let Some(hosts) = &add_hosts {
            for entry in hosts.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                let ok = entry.split_once(['=', ':']).is_some_and(|(h, ip)| !h.is_empty() && !ip.is_empty());
                if !ok {
                    return Err(err("BUILDKIT_ADD_HOSTS", format!("{entry:?} is not host=ip")));
                }
            }
        }
        let mut attest = BTreeMap::new();
        for (param, kind, default) in [("ATTEST_SBOM", "sbom", ""), ("ATTEST_PROVENANCE", "provenance", "mode=min")] {
            match get(param).as_deref() {
                None | Some("false" | "0") => {}
                Some("true" | "1") => {
                    attest.insert(format!("attest:{kind}"), default.to_string());
                }
                Some(opts) => {
                    attest.insert(format!("attest:{kind}"), opts.to_string());
                }
            }
        }
        let push = bool_param(&get, "PUSH")?.unwrap_or(false);
        let name = ImageName::from_params(&get, push)?;
        let registry_credentials = match (get("REGISTRY_USERNAME"), get("REGISTRY_PASSWORD")) {
            (Some(username), Some(password)) => Some(kiln_registry::Credentials { username, password }),
            (None, None) => None,
            (Some(_), None) => return Err(err("REGISTRY_USERNAME", "is set without REGISTRY_PASSWORD")),
            (None, Some(_)) => return Err(err("REGISTRY_PASSWORD", "is set without REGISTRY_USERNAME")),
        };
        if registry_credentials.is_some() && !push {
            return Err(err("REGISTRY_USERNAME", "is only used to push: set PUSH=true, or leave it out"));
        }
        let source_date_epoch = source_date_epoch(get("SOURCE_DATE_EPOCH"), &context)?;
        if source_date_epoch.is_some() && build_args.contains_key("SOURCE_DATE_EPOCH") {
            return Err(err("SOURCE_DATE_EPOCH", "is set, and a build arg of that name too: set one"));
        }
        let layers = LayerOptions::from_params(&get)?;
        let network = Network::parse(get("NETWORK").as_deref())?;
        // Several platforms make an index, which only the OCI exporter writes; as
        // oci-build-task does, they turn OUTPUT_OCI on, so pipelines find the layout at
        // image/image/.
        let output_oci = flag("OUTPUT_OCI") || platforms.len() > 1;
        let unpack_rootfs = flag("UNPACK_ROOTFS");
        if unpack_rootfs && platforms.len() > 1 {
            return Err(err("UNPACK_ROOTFS", "a rootfs needs one platform, and IMAGE_PLATFORM names several"));
        }
        let load = bool_param(&get, "LOAD")?.unwrap_or(false);
        if load && output_oci {
            return Err(err(
                "LOAD",
                "Docker loads one image from image.tar: leave OUTPUT_OCI unset and give one platform",
            ));
        }
        let progress =
            crate::buildkit::progress::Mode::parse(get("PROGRESS").as_deref()).map_err(|e| err("PROGRESS", e))?;
        Ok(BuildParams {
            docker_config: kiln_registry::docker_config::config_dir(get),
            buildkit: Buildkit::from_env(vars)?,
            progress,
            load,
            network,
            source_date_epoch,
            layers,
            daemon_registries: Vec::new(),
            name,
            push,
            registry_credentials,
            context,
            dockerfile,
            build_args,
            labels,
            target,
            additional_targets,
            platforms,
            secrets,
            unpack_rootfs,
            output_oci,
            add_hosts,
            no_cache: flag("NO_CACHE"),
            cache_from: parse_caches("CACHE_FROM", get("CACHE_FROM").as_deref())?,
            cache_to: parse_caches("CACHE_TO", get("CACHE_TO").as_deref())?,
            attest,
            image_args,
            named_contexts,
            ssh: parse_ssh(get("BUILDKIT_SSH").as_deref(), get("SSH_AUTH_SOCK"))?,
            cache_dir: Some(PathBuf::from("cache")).filter(|c| c.is_dir()),
            output: PathBuf::from("image"),
        })
    }

    /// The exporter's options: layers as [`LayerOptions`] says, and timestamps clamped to
    /// `SOURCE_DATE_EPOCH` (BuildKit takes the epoch from the frontend's build arg).
    pub fn exporter_attrs(&self) -> HashMap<String, String> {
        let mut attrs = self.layers.exporter_attrs();
        if self.source_date_epoch.is_some() {
            attrs.insert("rewrite-timestamp".to_string(), "true".to_string());
        }
        attrs
    }

    /// The Dockerfile frontend's options.
    pub fn frontend_attrs(&self) -> HashMap<String, String> {
        let mut attrs = HashMap::new();
        let name = self.dockerfile.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        attrs.insert("filename".to_string(), name);
        for (k, v) in &self.build_args {
            attrs.insert(format!("build-arg:{k}"), v.clone());
        }
        for (k, v) in &self.labels {
            attrs.insert(format!("label:{k}"), v.clone());
        }
        if let Some(t) = &self.target {
            attrs.insert("target".to_string(), t.clone());
        }
        if !self.platforms.is_empty() {
            attrs.insert("platform".to_string(), self.platforms.join(","));
        }
        if let Some(hosts) = &self.add_hosts {
            attrs.insert("add-hosts".to_string(), hosts.clone());
        }
        match self.network {
            Network::Default => {}
            Network::None => {
                attrs.insert("force-network-mode".to_string(), "none".to_string());
            }
            Network::Host => {
                attrs.insert("force-network-mode".to_string(), "host".to_string());
            }
        }
        if let Some(epoch) = self.source_date_epoch {
            attrs.insert("build-arg:SOURCE_DATE_EPOCH".to_string(), epoch.to_string());
        }
        if self.no_cache {
            attrs.insert("no-cache".to_string(), String::new());
        }
        attrs.extend(self.attest.iter().map(|(k, v)| (k.clone(), v.clone())));
        attrs
    }
}

/// `BUILDKIT_SSH`: entries separated by whitespace, each `id[=path[,path…]]` as buildctl's
/// `--ssh` takes them; an id without paths means the agent at `SSH_AUTH_SOCK`.
fn parse_ssh(value: Option<&str>, auth_sock: Option<String>) -> Result<BTreeMap<String, Vec<PathBuf>>, ParamError> {
    let mut out = BTreeMap::new();
    for entry in value.unwrap_or_default().split_whitespace() {
        let (id, paths) = entry.split_once('=').unwrap_or((entry, ""));
        if id.is_empty() {
            return Err(err("BUILDKIT_SSH", format!("{entry:?} has no id")));
        }
        let paths: Vec<PathBuf> = if paths.is_empty() {
            let sock = auth_sock.clone().ok_or_else(|| {
                err("BUILDKIT_SSH", format!("{id}: no paths given and SSH_AUTH_SOCK is not set (no agent to forward)"))
            })?;
            vec![PathBuf::from(sock)]
        } else {
            paths.split(',').map(PathBuf::from).collect()
        };
        if let Some(missing) = paths.iter().find(|p| !p.exists()) {
            return Err(err("BUILDKIT_SSH", format!("{id}: {} does not exist", missing.display())));
        }
        out.insert(id.to_string(), paths);
    }
    Ok(out)
}

/// `CACHE_FROM`/`CACHE_TO`: entries separated by whitespace, each `type=registry,ref=…[,k=v]`
/// as buildx takes them, or a bare image reference meaning a registry cache there.
fn parse_caches(param: &str, value: Option<&str>) -> Result<Vec<CacheEntry>, ParamError> {
    let mut out = Vec::new();
    for entry in value.unwrap_or_default().split_whitespace() {
        let mut attrs = BTreeMap::new();
        if !entry.contains('=') {
            attrs.insert("ref".to_string(), entry.to_string());
            out.push(CacheEntry { kind: "registry".into(), attrs });
            continue;
        }
        for field in entry.split(',') {
            let (k, v) =
                field.split_once('=').ok_or_else(|| err(param, format!("{field:?} in {entry:?} is not key=value")))?;
            attrs.insert(k.trim().to_string(), v.trim().to_string());
        }
        let kind = attrs.remove("type").unwrap_or_else(|| "registry".into());
        match kind.as_str() {
            "local" if !attrs.contains_key(if param == "CACHE_TO" { "dest" } else { "src" }) => {
                let key = if param == "CACHE_TO" { "dest" } else { "src" };
                return Err(err(param, format!("{entry:?}: a local cache needs {key}=<folder>")));
            }
            "registry" if !attrs.contains_key("ref") => {
                return Err(err(param, format!("{entry:?}: a registry cache needs ref=<image reference>")));
            }
            _ => {}
        }
        out.push(CacheEntry { kind, attrs });
    }
    Ok(out)
}

/// Warnings for environment names that look like a misspelt param (`BUILD_ARGS_FOO`,
/// `IMAGE_PLATFORMS`, `BUILDKIT_SECRETS_X`): the build goes on, but a param the user meant
/// to set would otherwise be dropped without a word.
pub fn typo_warnings(vars: &[(String, String)]) -> Vec<String> {
    let mut warnings = Vec::new();
    for (name, _) in vars {
        if table::known(name) {
            continue;
        }
        let close_name = table::PARAMS
            .iter()
            .filter(|p| p.kind != table::Kind::Prefix && p.name.len() >= 6)
            .find(|p| strsim::osa_distance(name, p.name) <= 2);
        let close_prefix = table::of_kind(table::Kind::Prefix).map(table::Param::prefix).find(|p| {
            // The name cut after as many underscores as the prefix has.
            let parts = p.matches('_').count();
            let cut: usize = name.split_inclusive('_').take(parts).map(str::len).sum();
            name.matches('_').count() >= parts && cut < name.len() && strsim::osa_distance(&name[..cut], p) <= 1
        });
        if let Some(meant) = close_name {
            warnings.push(format!("{name} is not a param build reads; did you mean {}?", meant.name));
        } else if let Some(prefix) = close_prefix {
            warnings.push(format!("{name} is not a param build reads; did you mean {prefix}…?"));
        }
    }
    warnings
}

/// The most a params file may weigh.
const MAX_PARAMS_FILE: u64 = 16 << 20;

/// The text of a file a param names: a relative path is read beneath the working folder,
/// never through a link that leaves it.
fn read_text(param: &str, path: &Path) -> Result<String, ParamError> {
    let bytes = kiln_image::confined::read_input(path, MAX_PARAMS_FILE)
        .map_err(|e| err(param, format!("reading {}: {e}", path.display())))?;
    String::from_utf8(bytes).map_err(|_| err(param, format!("{} is not UTF-8 text", path.display())))
}

/// Refuses a relative path that leads out of the working folder through a link (what is
/// missing is left for the caller to report).
fn confine(param: &str, path: &Path) -> Result<(), ParamError> {
    if path.is_absolute() {
        return Ok(());
    }
    match kiln_image::confined::open_input(path) {
        Err(e) if kiln_image::confined::is_outside(&e) => Err(err(param, e.to_string())),
        _ => Ok(()),
    }
}

/// `KEY=value` lines (blank lines and `#` comments skipped), or a YAML map of scalars when
/// the file name ends in `.yml`/`.yaml`.
fn read_pairs(param: &str, path: &Path) -> Result<Vec<(String, String)>, ParamError> {
    let text = read_text(param, path)?;
    if path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
        return yaml_pairs(param, path, &text);
    }
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| err(param, format!("{}:{}: expected KEY=value", path.display(), i + 1)))?;
        out.push((k.trim().to_string(), v.to_string()));
    }
    Ok(out)
}

fn yaml_pairs(param: &str, path: &Path, text: &str) -> Result<Vec<(String, String)>, ParamError> {
    use serde_yaml_ng::Value;
    let value: Value = serde_yaml_ng::from_str(text).map_err(|e| err(param, format!("{}: {e}", path.display())))?;
    let map = match value {
        Value::Mapping(map) => map,
        Value::Null => return Ok(Vec::new()),
        _ => return Err(err(param, format!("{}: expected a map of NAME: value", path.display()))),
    };
    let mut out = Vec::new();
    for (k, v) in map {
        let Value::String(key) = k else {
            return Err(err(param, format!("{}: keys must be strings", path.display())));
        };
        let value = match v {
            Value::String(s) => s,
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            Value::Null => String::new(),
            _ => return Err(err(param, format!("{}: {key}: expected a string, number or bool", path.display()))),
        };
        out.push((key, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn typos_are_warned_about_and_known_names_are_not() {
        let warnings = typo_warnings(&vars(&[
            ("BUILD_ARGS_FOO", "x"),
            ("IMAGE_PLATFORMS", "linux/amd64"),
            ("BUILDKIT_SECRETS_npm", "/x"),
            ("DOCKER_FILE", "Dockerfile"),
            ("LABLE_x", "y"),
            ("BUILD_ARG_FOO", "x"),
            ("BUILD_ARGS_FILE", "args"),
            ("PATH", "/bin"),
            ("HOME", "/root"),
            ("BUILD_ID", "12"),
            ("BUILD_TEAM_NAME", "main"),
            ("REGISTRY_MIRRORS", "m"),
        ]));
        let named: Vec<&str> = warnings.iter().map(|w| w.split(' ').next().unwrap()).collect();
        assert_eq!(named, ["BUILD_ARGS_FOO", "IMAGE_PLATFORMS", "BUILDKIT_SECRETS_npm", "DOCKER_FILE", "LABLE_x"]);
        assert!(warnings[0].contains("did you mean BUILD_ARG_"), "{warnings:?}");
        assert!(warnings[1].contains("did you mean IMAGE_PLATFORM?"), "{warnings:?}");
    }

    #[test]
    fn buildkit_tls_dir_is_a_known_name() {
        assert_eq!(typo_warnings(&vars(&[("BUILDKIT_TLS_DIR", "/certs")])), Vec::<String>::new());
        assert!(table::known("BUILDKIT_TLS_DIR"));
    }

    #[test]
    fn image_args_and_contexts_that_buildkit_would_see_as_one_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::write(dir.path().join("a.tar"), "").unwrap();
        let (ctx, tar) = (dir.path().to_str().unwrap().to_string(), dir.path().join("a.tar"));
        let tar = tar.to_str().unwrap();
        let parse = |extra: &[(&str, &str)]| {
            let mut pairs = vec![("CONTEXT", ctx.as_str())];
            pairs.extend_from_slice(extra);
            BuildParams::from_env(&vars(&pairs))
        };
        let e = parse(&[("IMAGE_ARG_base", tar), ("IMAGE_ARG_BASE", tar)]).unwrap_err();
        assert_eq!(e.name, "IMAGE_ARG_base");
        assert!(e.why.contains("\"base\"") && e.why.contains("IMAGE_ARG_BASE"), "{}", e.why);
        let e = parse(&[("BUILD_CONTEXT_my_lib", &ctx), ("BUILD_CONTEXT_my-lib", &ctx)]).unwrap_err();
        assert!(e.why.contains("\"my-lib\""), "{}", e.why);
        // Different names stay different.
        let ok = parse(&[("IMAGE_ARG_base", tar), ("IMAGE_ARG_base2", tar)]).unwrap();
        assert_eq!(ok.image_args.len(), 2);
    }

    fn layers(pairs: &[(&str, &str)]) -> Result<HashMap<String, String>, String> {
        let vars = vars(pairs);
        let get = |k: &str| vars.iter().rfind(|(n, _)| n == k).map(|(_, v)| v.clone());
        LayerOptions::from_params(&get).map(|l| l.exporter_attrs()).map_err(|e| e.to_string())
    }

    #[test]
    fn layer_options_become_the_exporters_and_bad_ones_are_named() {
        assert!(layers(&[]).unwrap().is_empty());
        let zstd = layers(&[("COMPRESSION", "zstd"), ("COMPRESSION_LEVEL", "19"), ("FORCE_COMPRESSION", "true")]);
        let want: HashMap<String, String> = [
            ("compression", "zstd"),
            ("compression-level", "19"),
            ("force-compression", "true"),
            ("oci-mediatypes", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(zstd.unwrap(), want);
        assert_eq!(layers(&[("OCI_MEDIATYPES", "false")]).unwrap()["oci-mediatypes"], "false");
        assert_eq!(layers(&[("COMPRESSION", "gzip"), ("COMPRESSION_LEVEL", "9")]).unwrap()["compression-level"], "9");
        for (pairs, says) in [
            (vec![("COMPRESSION", "lz4")], "COMPRESSION: \"lz4\" is not gzip, zstd, estargz or uncompressed"),
            (vec![("COMPRESSION_LEVEL", "10")], "COMPRESSION_LEVEL: \"10\" is not a gzip level (0 to 9)"),
            (vec![("COMPRESSION", "zstd"), ("COMPRESSION_LEVEL", "23")], "is not a zstd level (0 to 22)"),
            (vec![("COMPRESSION", "uncompressed"), ("COMPRESSION_LEVEL", "0")], "COMPRESSION_LEVEL: has no meaning"),
            (vec![("COMPRESSION", "zstd"), ("OCI_MEDIATYPES", "false")], "OCI_MEDIATYPES: cannot be false"),
            (vec![("FORCE_COMPRESSION", "yes")], "FORCE_COMPRESSION: \"yes\" is not true or false"),
        ] {
            let e = layers(&pairs).unwrap_err();
            assert!(e.contains(says), "{pairs:?}: {e}");
        }
    }

    #[test]
    fn source_date_epoch_is_seconds_or_the_checkouts_commit_time() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(source_date_epoch(None, dir.path()).unwrap(), None);
        assert_eq!(source_date_epoch(Some("1700000000".into()), dir.path()).unwrap(), Some(1_700_000_000));
        let e = source_date_epoch(Some("yesterday".into()), dir.path()).unwrap_err().to_string();
        assert!(e.starts_with("SOURCE_DATE_EPOCH: \"yesterday\" is not a number"), "{e}");
        let e = source_date_epoch(Some("git".into()), dir.path()).unwrap_err().to_string();
        assert!(e.starts_with("SOURCE_DATE_EPOCH: git: ") && e.contains("is not in a git checkout"), "{e}");
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .arg("-C")
                .arg(dir.path())
                .args(args)
                .env("GIT_COMMITTER_DATE", "@1600000000 +0000")
                .env("GIT_AUTHOR_DATE", "@1500000000 +0000")
                .output()
                .unwrap();
            assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        git(&["init", "-q"]);
        std::fs::create_dir(dir.path().join("ctx")).unwrap();
        std::fs::write(dir.path().join("ctx/f"), "x").unwrap();
        git(&["add", "."]);
        git(&["-c", "user.name=k", "-c", "user.email=k@example.com", "commit", "-qm", "x"]);
        // The committer's time, from a folder inside the checkout.
        assert_eq!(source_date_epoch(Some("git".into()), &dir.path().join("ctx")).unwrap(), Some(1_600_000_000));
    }

    #[test]
    fn caches_parse_as_buildx_writes_them() {
        let c = parse_caches("CACHE_TO", Some("type=registry,ref=r/c:1,mode=max reg/other:cache")).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].kind, "registry");
        assert_eq!(c[0].attrs["mode"], "max");
        assert_eq!(c[1].attrs["ref"], "reg/other:cache");
        let e = parse_caches("CACHE_FROM", Some("type=registry,mode=max")).unwrap_err();
        assert!(e.to_string().starts_with("CACHE_FROM: "), "{e}");
        assert!(parse_caches("CACHE_TO", Some("type=local,dest=x")).is_ok());
        assert!(parse_caches("CACHE_TO", Some("type=local,src=x")).is_err());
        assert!(parse_caches("CACHE_TO", Some("type=registry,junk")).is_err());
    }

    #[test]
    fn yaml_args_take_scalars_and_refuse_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("args.yml");
        std::fs::write(&good, "A: one\nB: 2\nC: true\n").unwrap();
        let pairs = read_pairs("BUILD_ARGS_FILE", &good).unwrap();
        assert_eq!(pairs, vec![("A".into(), "one".into()), ("B".into(), "2".into()), ("C".into(), "true".into())]);
        let bad = dir.path().join("args.yaml");
        std::fs::write(&bad, "A: [1, 2]\n").unwrap();
        let e = read_pairs("BUILD_ARGS_FILE", &bad).unwrap_err().to_string();
        assert!(e.starts_with("BUILD_ARGS_FILE: ") && e.contains("args.yaml") && e.contains("A:"), "{e}");
        std::fs::write(&bad, "- a\n- b\n").unwrap();
        assert!(read_pairs("BUILD_ARGS_FILE", &bad).is_err());
    }
}
