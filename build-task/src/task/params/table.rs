//! The one table of `build`'s params. Each is defined here once — its name, what reads it,
//! its flag and its help line — and everything else comes from this table: the names the
//! parser and the typo warnings know ([`known`]), the command line's flags
//! ([`crate::task::cli`]), `build --help` ([`help`]), the warning for daemon settings given
//! beside `BUILDKIT_HOST`, the settings `out`'s build takes from its own environment
//! ([`from_environment`]), and the README's params table, which a test checks against it.
//! A new param is a new row here, then its parsing in [`super::BuildParams::from_env`] or
//! [`super::Buildkit::from_env`].

/// What a param is about, which decides who reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A whole name describing the build (`CONTEXT`).
    Build,
    /// A prefix: the rest of the name is a build arg, label, secret id, … The row's name
    /// ends with the placeholder in angle brackets (`BUILD_ARG_<NAME>`).
    Prefix,
    /// Where BuildKit is and how to reach it (`BUILDKIT_HOST`). `out`'s `build` takes these
    /// from its own environment, as the task does.
    Buildkit,
    /// A setting of the `buildkitd` that `build` starts when `BUILDKIT_HOST` is not set;
    /// warned about beside `BUILDKIT_HOST`. `out` takes these from its environment too.
    Daemon,
}

/// A flag that sets a param: `--flag VALUE`, or a switch (no value) that sets it to `true`.
#[derive(Debug)]
pub struct Flag {
    pub flag: &'static str,
    /// What the flag takes, for `--help`; empty for a switch. A prefix param's flag takes
    /// `KEY=VALUE` and sets `PREFIX_KEY=VALUE`.
    pub value: &'static str,
    /// BuildKit's (or buildx's) own name for the option, where it has one.
    pub buildkit: &'static str,
}

/// One param.
#[derive(Debug)]
pub struct Param {
    pub name: &'static str,
    pub kind: Kind,
    pub flag: Option<Flag>,
    /// One line for `build --help`.
    pub help: &'static str,
}

impl Param {
    /// What an environment name starts with to be this param: the whole name, or a
    /// prefix param's name up to its placeholder.
    pub fn prefix(&self) -> &'static str {
        match self.kind {
            Kind::Prefix => self.name.split('<').next().unwrap_or(self.name),
            _ => self.name,
        }
    }

    /// Whether the environment name `name` is this param.
    pub fn reads(&self, name: &str) -> bool {
        match self.kind {
            Kind::Prefix => name.len() > self.prefix().len() && name.starts_with(self.prefix()),
            _ => name == self.name,
        }
    }
}

const fn param(name: &'static str, kind: Kind, help: &'static str) -> Param {
    Param { name, kind, flag: None, help }
}

const fn flagged(
    name: &'static str,
    kind: Kind,
    (flag, value, buildkit): (&'static str, &'static str, &'static str),
    help: &'static str,
) -> Param {
    Param { name, kind, flag: Some(Flag { flag, value, buildkit }), help }
}

use Kind::{Build, Buildkit, Daemon, Prefix};

/// Every param `build` reads, in the order `--help` shows them.
pub const PARAMS: &[Param] = &[
    flagged("CONTEXT", Build, ("--context", "DIR", "--local context"), "the folder to build (default .)"),
    flagged(
        "DOCKERFILE",
        Build,
        ("--file", "PATH", "filename"),
        "the Dockerfile, relative to the working folder (default $CONTEXT/Dockerfile)",
    ),
    flagged("BUILD_ARG_<NAME>", Prefix, ("--build-arg", "NAME=VALUE", "build-arg:<NAME>"), "a build arg"),
    param("BUILD_ARGS_FILE", Build, "build args as KEY=value lines, or YAML when it ends in .yml/.yaml"),
    flagged("LABEL_<NAME>", Prefix, ("--label", "NAME=VALUE", "label:<NAME>"), "a label on the image"),
    param("LABELS_FILE", Build, "labels, as BUILD_ARGS_FILE holds build args"),
    flagged("TARGET", Build, ("--target", "STAGE", "target"), "the stage to build (default the last)"),
    param("TARGET_FILE", Build, "a file holding TARGET"),
    param("ADDITIONAL_TARGETS", Build, "more stages (comma-separated), each into the task output of its name"),
    flagged(
        "IMAGE_PLATFORM",
        Build,
        ("--platform", "LIST", "platform"),
        "os/arch[/variant], comma-separated; several make an OCI index",
    ),
    flagged(
        "OUTPUT_OCI",
        Build,
        ("--oci", "", "--output type=oci"),
        "write image/image/ (an OCI layout) instead of image/image.tar",
    ),
    flagged("UNPACK_ROOTFS", Build, ("--unpack-rootfs", "", ""), "also write image/rootfs/ and image/metadata.json"),
    flagged(
        "BUILDKIT_SECRET_<ID>",
        Prefix,
        ("--secret", "ID=PATH", "--secret id=<ID>,src=PATH"),
        "a file RUN --mount=type=secret,id=<ID> reads",
    ),
    param("BUILDKIT_SECRETTEXT_<ID>", Prefix, "a secret given as its value, served from memory"),
    flagged(
        "BUILDKIT_SECRETENV_<ID>",
        Prefix,
        ("--secret-env", "ID=VARIABLE", "--secret id=<ID>,env=VARIABLE"),
        "a secret whose value is that environment variable's",
    ),
    param("IMAGE_ARG_<NAME>", Prefix, "an image on disk (docker save, OCI tarball or layout) FROM ${NAME} uses"),
    flagged(
        "BUILD_CONTEXT_<NAME>",
        Prefix,
        ("--build-context", "NAME=DIR|URL", "context:<NAME>"),
        "what FROM/COPY --from=<NAME> use: a folder, docker-image://ref or oci-layout://path",
    ),
    param("BUILDKIT_SSH", Build, "ssh for RUN --mount=type=ssh: default, or id=socket|key[,key], space-separated"),
    param("SSH_AUTH_SOCK", Build, "the agent BUILDKIT_SSH=default forwards"),
    param("BUILDKIT_ADD_HOSTS", Build, "host=ip,… for /etc/hosts in RUN steps"),
    flagged("NO_CACHE", Build, ("--no-cache", "", "no-cache"), "build every step again"),
    flagged(
        "CACHE_FROM",
        Build,
        ("--cache-from", "ENTRY", "--import-cache"),
        "caches to import (type=registry,ref=…), space-separated",
    ),
    flagged(
        "CACHE_TO",
        Build,
        ("--cache-to", "ENTRY", "--export-cache"),
        "caches to export (type=registry|inline|local)",
    ),
    param("ATTEST_SBOM", Build, "true, or the frontend's attest:sbom options"),
    param("ATTEST_PROVENANCE", Build, "true (mode=min), or the frontend's attest:provenance options"),
    flagged(
        "SOURCE_DATE_EPOCH",
        Build,
        ("--source-date-epoch", "SECONDS|git", "build-arg:SOURCE_DATE_EPOCH, rewrite-timestamp"),
        "reproducible timestamps: seconds, or git for CONTEXT's last commit",
    ),
    flagged(
        "COMPRESSION",
        Build,
        ("--compression", "TYPE", "compression"),
        "layers as gzip, zstd, estargz or uncompressed",
    ),
    flagged(
        "COMPRESSION_LEVEL",
        Build,
        ("--compression-level", "N", "compression-level"),
        "gzip and estargz 0-9, zstd 0-22",
    ),
    flagged(
        "FORCE_COMPRESSION",
        Build,
        ("--force-compression", "", "force-compression"),
        "recompress the base image's layers too",
    ),
    flagged("OCI_MEDIATYPES", Build, ("--oci-mediatypes", "", "oci-mediatypes"), "OCI media types in image.tar"),
    flagged(
        "NETWORK",
        Build,
        ("--network", "MODE", "force-network-mode; network.host entitlement"),
        "RUN steps' network: default, none or host",
    ),
    flagged(
        "IMAGE_NAME",
        Build,
        ("--name", "NAME", "name"),
        "the image's name (after REGISTRY/ when set) in image.tar and the layout",
    ),
    flagged("IMAGE_TAG", Build, ("--tag", "TAG", ""), "its tag (default latest), also written to image/tag"),
    flagged("REGISTRY", Build, ("--registry", "HOST[/NAMESPACE]", ""), "where IMAGE_NAME is"),
    flagged("PUSH", Build, ("--push", "", ""), "push the image to REGISTRY/IMAGE_NAME:IMAGE_TAG"),
    param("REGISTRY_USERNAME", Build, "the user PUSH logs in as (else DOCKER_CONFIG's credentials)"),
    param("REGISTRY_PASSWORD", Build, "REGISTRY_USERNAME's password"),
    param("DOCKER_CONFIG", Build, "the folder of Docker's config.json: registry credentials (default ~/.docker)"),
    flagged(
        "LOAD",
        Build,
        ("--load", "", "--output type=docker, then docker load"),
        "load image.tar into the Docker engine at DOCKER_HOST afterwards",
    ),
    flagged("PROGRESS", Build, ("--progress", "MODE", "--progress"), "how steps are shown: auto, plain, tty or quiet"),
    param("DEBUG", Buildkit, "true: buildkitd's debug log, and every step in full"),
    param(
        "BUILDKIT_HOST",
        Buildkit,
        "BuildKit's address: unix:///path, tcp://host:port, docker+unix:///path or docker:// (default: start buildkitd)",
    ),
    param("BUILDKIT_TLS_CA", Buildkit, "the CA of a tcp:// BuildKit's certificate"),
    param("BUILDKIT_TLS_CERT", Buildkit, "the client certificate for a tcp:// BuildKit"),
    param("BUILDKIT_TLS_KEY", Buildkit, "its key"),
    param("BUILDKIT_TLS_SERVERNAME", Buildkit, "the name the BuildKit's certificate is checked for"),
    param("BUILDKIT_TLS_DIR", Buildkit, "a folder with ca.pem, cert.pem and key.pem"),
    param("DOCKER_HOST", Buildkit, "the Docker engine docker:// and LOAD use (default /var/run/docker.sock)"),
    flagged(
        "BUILDKIT_INFO",
        Buildkit,
        ("--buildkit-info", "", ""),
        "print BuildKit's version and workers, and build nothing",
    ),
    param("REGISTRY_MIRRORS", Daemon, "registry mirrors, comma-separated"),
    param("BUILDKIT_EXTRA_CONFIG", Daemon, "buildkitd.toml text merged over the mirrors"),
    param("BUILDKIT_START_TIMEOUT", Daemon, "seconds to wait for buildkitd to answer (default 60)"),
    param("BUILDKIT_CACHE_MAX_SIZE", Daemon, "the most BuildKit's state kept in ./cache may hold (default 10GB)"),
];

/// The param the environment name `name` is, if any.
pub fn param_of(name: &str) -> Option<&'static Param> {
    PARAMS.iter().find(|p| p.reads(name))
}

/// Whether `build` reads the environment name `name`.
pub fn known(name: &str) -> bool {
    param_of(name).is_some()
}

/// The param set by the flag `flag`.
pub fn by_flag(flag: &str) -> Option<&'static Param> {
    PARAMS.iter().find(|p| p.flag.as_ref().is_some_and(|f| f.flag == flag))
}

/// The params of one kind.
pub fn of_kind(kind: Kind) -> impl Iterator<Item = &'static Param> {
    PARAMS.iter().filter(move |p| p.kind == kind)
}

/// The pairs of `vars` that say where BuildKit is or configure the daemon `build` starts:
/// what `out`'s build takes from its own environment.
pub fn from_environment(vars: impl IntoIterator<Item = (String, String)>) -> Vec<(String, String)> {
    vars.into_iter()
        .filter(|(k, _)| param_of(k).is_some_and(|p| matches!(p.kind, Kind::Buildkit | Kind::Daemon)))
        .collect()
}

/// `build --help`.
pub fn help() -> String {
    let mut text = String::from(
        "build: builds a Dockerfile with BuildKit, as concourse/oci-build-task does, into\n\
         image/image.tar (or image/image/ with OUTPUT_OCI), image/digest and, with IMAGE_NAME,\n\
         image/tag. Params come from the environment, under oci-build-task's names; a flag sets\n\
         the same param and wins over the environment.\n",
    );
    let sections = [
        (Build, "The build:"),
        (Prefix, "Named ones (the rest of the name is the key):"),
        (Buildkit, "Where BuildKit is:"),
        (Daemon, "The buildkitd build starts when BUILDKIT_HOST is not set (rootless when not root):"),
    ];
    for (kind, title) in sections {
        text.push('\n');
        text.push_str(title);
        text.push('\n');
        for p in of_kind(kind) {
            let flag = match &p.flag {
                Some(f) if f.value.is_empty() => format!(", {}", f.flag),
                Some(f) => format!(", {} {}", f.flag, f.value),
                None => String::new(),
            };
            let buildkit = match &p.flag {
                Some(f) if !f.buildkit.is_empty() => format!("; BuildKit: {}", f.buildkit),
                _ => String::new(),
            };
            text.push_str(&format!("  {}{flag}\n      {}{buildkit}\n", p.name, p.help));
        }
    }
    text.push_str(
        "\nA ./cache folder, when there is one, holds BuildKit's cache between builds: the state of\n\
         the buildkitd build starts, or, with BUILDKIT_HOST, an exported layer cache.\n\
         \n\
         Other flags:\n  --output DIR\n      where the outputs go (default image/ in the working folder)\n  \
         --version, --help\n",
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_flags_are_each_defined_once() {
        let mut names = std::collections::HashSet::new();
        let mut flags = std::collections::HashSet::new();
        for p in PARAMS {
            assert!(names.insert(p.prefix()), "{} is in the table twice", p.name);
            assert!(p.name.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b"_<>".contains(&b)));
            assert_eq!(p.kind == Kind::Prefix, p.name.ends_with('>'), "{}: a prefix ends in <KEY>", p.name);
            if let Some(f) = &p.flag {
                assert!(flags.insert(f.flag), "{} is in the table twice", f.flag);
                if p.kind == Kind::Prefix {
                    assert!(f.value.contains('='), "{}: a prefix param's flag takes KEY=VALUE", f.flag);
                }
            }
        }
        // No prefix swallows another param's name.
        for p in PARAMS.iter().filter(|p| p.kind == Kind::Prefix) {
            for q in PARAMS.iter().filter(|q| q.kind != Kind::Prefix) {
                assert!(!p.reads(q.name), "{} would read {}", p.name, q.name);
            }
        }
    }

    #[test]
    fn names_are_read_whole_or_by_prefix() {
        assert!(known("CONTEXT"));
        assert!(known("BUILD_ARG_VERSION"));
        assert!(!known("BUILD_ARG_"), "a prefix needs a key after it");
        assert!(!known("CONTEXTS"));
        assert_eq!(param_of("BUILDKIT_SECRETTEXT_npm").map(|p| p.name), Some("BUILDKIT_SECRETTEXT_<ID>"));
        assert_eq!(param_of("BUILDKIT_SECRET_npm").map(|p| p.name), Some("BUILDKIT_SECRET_<ID>"));
        assert_eq!(by_flag("--oci").map(|p| p.name), Some("OUTPUT_OCI"));
        let env = from_environment([
            ("BUILDKIT_HOST".to_string(), "tcp://b:1234".to_string()),
            ("REGISTRY_MIRRORS".to_string(), "m".to_string()),
            ("CONTEXT".to_string(), "elsewhere".to_string()),
            ("HOME".to_string(), "/root".to_string()),
        ]);
        let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["BUILDKIT_HOST", "REGISTRY_MIRRORS"]);
    }

    #[test]
    fn help_shows_every_param_and_flag() {
        let help = help();
        for p in PARAMS {
            assert!(help.contains(&format!("  {}", p.name)), "--help misses {}", p.name);
            if let Some(f) = &p.flag {
                assert!(help.contains(f.flag), "--help misses {}", f.flag);
            }
        }
        assert!(help.contains("--output DIR"));
    }

    /// The README's table of the task's params (the section after `| param | kiln |`) names
    /// every param of the table, and every param it lists in its first column is one.
    #[test]
    fn the_readme_documents_every_param() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
        let start = readme.find("| param | kiln |").expect("README has the params table");
        let rows: Vec<&str> = readme[start..].lines().skip(2).take_while(|l| l.starts_with('|')).collect();
        let section = rows.join("\n");
        for p in PARAMS {
            // A prefix param as `BUILD_ARG_*` or `BUILD_ARG_<name>`.
            let shown = match p.kind {
                Kind::Prefix => [format!("`{}*`", p.prefix()), format!("`{}<", p.prefix())],
                _ => [format!("`{}`", p.name), format!("`{}`", p.name)],
            };
            assert!(shown.iter().any(|s| section.contains(s)), "README's params table does not mention {}", p.name);
        }
        for row in rows {
            let first = row.split('|').nth(1).unwrap_or_default();
            for name in first.split('`').skip(1).step_by(2) {
                let name = name.trim_end_matches('*');
                if name.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
                    let whole = known(name) || PARAMS.iter().any(|p| p.kind == Kind::Prefix && p.prefix() == name);
                    assert!(whole, "README lists {name}, which the param table does not have");
                }
            }
        }
    }
}
