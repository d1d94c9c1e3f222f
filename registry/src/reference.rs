//! Image repository names as users write them (`busybox`, `ghcr.io/org/app`,
//! `127.0.0.1:5000/team/app`) turned into a registry host and a repository path,
//! with Docker Hub's defaults applied the way the docker CLI applies them.

use std::fmt;

/// The host name users see for Docker Hub.
pub const DOCKER_HUB: &str = "index.docker.io";
/// The host that actually serves Docker Hub's registry API.
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// A repository on a registry, e.g. `index.docker.io` + `library/busybox`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Repository {
    registry: String,
    path: String,
}

/// Why a repository name was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    #[error("repository is empty")]
    Empty,
    #[error(
        "repository {name:?} is not a valid name: path component {component:?} must be lowercase letters, digits and separators (. _ __ -) between them"
    )]
    BadComponent { name: String, component: String },
    #[error("repository {name:?} is not a valid name: {why}")]
    Invalid { name: String, why: &'static str },
    #[error(
        "tag {0:?} is not valid: up to 128 characters of letters, digits, '_', '.', '-', not starting with '.' or '-'"
    )]
    BadTag(String),
}

impl Repository {
    /// Parses a repository name without tag or digest.
    pub fn parse(name: &str) -> Result<Self, ReferenceError> {
        if name.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if name.contains('@') {
            return Err(ReferenceError::Invalid {
                name: name.into(),
                why: "a digest (@sha256:...) belongs in the version, not the repository",
            });
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, rest)) if looks_like_host(first) => (first.to_string(), rest.to_string()),
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        if path.rsplit('/').next().is_some_and(|last| last.contains(':')) {
            return Err(ReferenceError::Invalid {
                name: name.into(),
                why: "a tag (:tag) belongs in the `tag` field, not the repository",
            });
        }
        let registry = match registry.as_str() {
            "docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
            _ => registry,
        };
        let path = if registry == DOCKER_HUB && !path.contains('/') { format!("library/{path}") } else { path };
        for component in path.split('/') {
            if !valid_component(component) {
                return Err(ReferenceError::BadComponent { name: name.into(), component: component.into() });
            }
        }
        if registry.len() + 1 + path.len() > 255 {
            return Err(ReferenceError::Invalid { name: name.into(), why: "longer than 255 characters" });
        }
        Ok(Self { registry, path })
    }

    /// The registry as users name it (`index.docker.io`, `127.0.0.1:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// A Notary server's trust collection: its host, and a GUN (which names a registry, so
    /// it is no repository path) as the name tokens are asked for.
    pub(crate) fn trust_collection(server: &str, gun: &str) -> Self {
        Repository { registry: server.into(), path: gun.into() }
    }

    /// The host and port the registry API is served on.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB { DOCKER_HUB_API } else { &self.registry }
    }

    /// The repository path (`library/busybox`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether this repository lives on Docker Hub.
    pub fn is_docker_hub(&self) -> bool {
        self.registry == DOCKER_HUB
    }

    /// Whether plain HTTP may be tried for this registry without the user opting in:
    /// only for loopback addresses, as docker and go-containerregistry do.
    pub fn is_loopback(&self) -> bool {
        let host = host_without_port(&self.registry);
        host == "localhost" || host.starts_with("127.") || host == "[::1]"
    }
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.path)
    }
}

/// Checks a tag against the distribution spec's grammar.
pub fn validate_tag(tag: &str) -> Result<(), ReferenceError> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
        && !tag.starts_with(['.', '-']);
    if ok { Ok(()) } else { Err(ReferenceError::BadTag(tag.into())) }
}

fn looks_like_host(first: &str) -> bool {
    first.contains('.') || first.contains(':') || first == "localhost" || first.starts_with('[')
}

fn host_without_port(registry: &str) -> &str {
    if registry.starts_with('[') {
        return registry.split_inclusive(']').next().unwrap_or(registry);
    }
    registry.split(':').next().unwrap_or(registry)
}

/// A path component: lowercase alphanumerics separated by `.`, `_`, `__` or runs of `-`.
fn valid_component(c: &str) -> bool {
    let bytes = c.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !alnum(first) || !alnum(last) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(&bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(&bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(name: &str) -> (String, String) {
        let r = Repository::parse(name).unwrap();
        (r.registry().to_string(), r.path().to_string())
    }

    #[test]
    fn docker_hub_defaults() {
        assert_eq!(parse("busybox"), ("index.docker.io".into(), "library/busybox".into()));
        assert_eq!(parse("concourse/oci-build-task"), ("index.docker.io".into(), "concourse/oci-build-task".into()));
        assert_eq!(parse("docker.io/busybox"), ("index.docker.io".into(), "library/busybox".into()));
        assert_eq!(Repository::parse("busybox").unwrap().api_host(), "registry-1.docker.io");
    }

    #[test]
    fn explicit_registries() {
        assert_eq!(parse("127.0.0.1:5000/team/app"), ("127.0.0.1:5000".into(), "team/app".into()));
        assert_eq!(parse("localhost/app"), ("localhost".into(), "app".into()));
        assert_eq!(parse("ghcr.io/org/a.b_c__d-e"), ("ghcr.io".into(), "org/a.b_c__d-e".into()));
        assert!(Repository::parse("127.0.0.1:5000/x").unwrap().is_loopback());
        assert!(!Repository::parse("ghcr.io/x").unwrap().is_loopback());
    }

    #[test]
    fn refuses_bad_names() {
        for bad in ["", "Upper/case", "a//b", "a/-b", "app:tag", "a@sha256:00", "a/b_", "a/b...c"] {
            assert!(Repository::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn tags() {
        assert!(validate_tag("1.2.3-rc.1_x").is_ok());
        assert!(validate_tag("").is_err());
        assert!(validate_tag(".hidden").is_err());
        assert!(validate_tag(&"a".repeat(129)).is_err());
    }

    #[test]
    fn names_are_at_most_255_characters_with_the_registry() {
        // "127.0.0.1:5000" + "/" + path: exactly 255 is fine, 256 is not.
        let registry = "127.0.0.1:5000";
        let path = |n: usize| format!("{registry}/{}", "a".repeat(n));
        assert!(Repository::parse(&path(255 - registry.len() - 1)).is_ok());
        let e = Repository::parse(&path(255 - registry.len())).unwrap_err().to_string();
        assert!(e.contains("longer than 255 characters"), "{e}");
    }

    #[test]
    fn shown_as_registry_slash_path() {
        assert_eq!(Repository::parse("127.0.0.1:5000/team/app").unwrap().to_string(), "127.0.0.1:5000/team/app");
        assert_eq!(Repository::parse("busybox").unwrap().to_string(), "index.docker.io/library/busybox");
    }

    #[test]
    fn only_docker_hub_is_docker_hub() {
        for hub in ["busybox", "library/busybox", "docker.io/library/busybox", "index.docker.io/x/y"] {
            assert!(Repository::parse(hub).unwrap().is_docker_hub(), "{hub}");
        }
        for other in ["127.0.0.1:5000/x", "ghcr.io/a/b", "docker.io.evil.example/x", "localhost/x", "quay.io/docker.io"]
        {
            assert!(!Repository::parse(other).unwrap().is_docker_hub(), "{other}");
        }
    }
}
