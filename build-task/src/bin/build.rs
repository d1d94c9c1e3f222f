//! `build`: the task image's entrypoint (installed as `build`; cargo names it `kiln-build`).
//!
//! Reads oci-build-task's params from the environment, builds with BuildKit at
//! `BUILDKIT_HOST`, and writes `image/image.tar` and `image/digest` (plus `image/rootfs`
//! and `image/metadata.json` with `UNPACK_ROOTFS=true`).
//! `build --buildkit-info` (or `BUILDKIT_INFO=true`) only prints BuildKit's version and workers.

use std::process::ExitCode;

use kiln_build_task::task;
use kiln_build_task::task::cli;
use kiln_build_task::task::params::{self, BuildParams};

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
  SOURCE_DATE_EPOCH (seconds, or git: CONTEXT's last commit) makes timestamps reproducible;
  COMPRESSION (gzip, zstd, estargz, uncompressed), COMPRESSION_LEVEL, FORCE_COMPRESSION
  and OCI_MEDIATYPES set how layers are written. NETWORK (default, none, host) is RUN's
  network. BUILDKIT_SECRETENV_<id>=<VARIABLE> serves that variable's value as a secret.
  BUILD_CONTEXT_<name>=<folder|docker-image://ref|oci-layout://path> is what FROM <name>
  and COPY --from=<name> use. LOAD=true (--load) loads image.tar into the Docker engine at
  DOCKER_HOST afterwards. PROGRESS (auto, plain, tty, quiet) is how steps are shown.
  IMAGE_NAME (REGISTRY/ in front when set) and IMAGE_TAG (default latest) name the image;
  PUSH=true pushes it there (REGISTRY_USERNAME and REGISTRY_PASSWORD, else DOCKER_CONFIG).
  A ./cache folder, when there is one, holds BuildKit's cache between builds: the state
  of the buildkitd build starts (within BUILDKIT_CACHE_MAX_SIZE, default 10GB), or, with
  BUILDKIT_HOST, an exported layer cache.
BuildKit is at BUILDKIT_HOST: unix:///path, tcp://host:port (BUILDKIT_TLS_CA, _CERT, _KEY,
_SERVERNAME), docker+unix:///path/docker.sock or docker:// (a Docker engine's BuildKit).
Without BUILDKIT_HOST, build starts buildkitd from PATH (under rootlesskit when not root),
configured by REGISTRY_MIRRORS and BUILDKIT_EXTRA_CONFIG (TOML), waits up to
BUILDKIT_START_TIMEOUT seconds (60) for it, and stops it when done.

Writes image/image.tar (or image/image/ with OUTPUT_OCI), image/digest and, with
IMAGE_NAME, image/tag.

Flags set the same params and win over the environment:
";

const HELP_END: &str = "
  build --buildkit-info   print BuildKit's version and workers, and exit
  build --version | --help
";

fn help() -> String {
    let mut text = HELP.to_string();
    for cli::Flag { flag, value, param, buildkit } in cli::FLAGS {
        let buildkit = if buildkit.is_empty() { String::new() } else { format!("  (BuildKit: {buildkit})") };
        text.push_str(&format!("  {:<32} {param}{buildkit}\n", format!("{flag} {value}")));
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
        _ => runtime.block_on(task::buildkit_info()).map(|text| print!("{text}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Its own lines kept (a daemon's log tail), control characters in each escaped.
            let text = format!("{e:#}");
            let lines: Vec<String> = text.lines().map(kiln_registry::one_line).collect();
            eprintln!("build: {}", lines.join("\n"));
            ExitCode::FAILURE
        }
    }
}

/// Reads the params (the environment, then the flags over it) and runs the build.
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
    task::run(params).await.map(drop)
}
