//! `out`'s `params.build`: builds a Dockerfile with the build task's own engine
//! ([`kiln_build_task::task`]: the same BuildKit client, and the same `buildkitd` it starts
//! when `BUILDKIT_HOST` is not set) into a fresh folder, for `out` to push.
//!
//! The map takes the reference documents' names (`context`, `dockerfile`, `target`,
//! `build_args`, `platform`, `cache`) and the build task's (`CONTEXT`, `DOCKERFILE`,
//! `TARGET`, `IMAGE_PLATFORM`, `BUILD_ARG_<name>`). Paths are relative to the put's folder
//! and must stay inside it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use kiln_build_task::task::params::{BuildParams, ImageName};
use kiln_image::confined::{self, FreshDir};
use kiln_registry::Credentials;
use serde_json::Value;

/// A checked `params.build`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildSpec {
    pub context: String,
    pub dockerfile: Option<String>,
    pub target: Option<String>,
    pub build_args: BTreeMap<String, String>,
    pub platforms: Vec<String>,
    /// `cache` (default true): BuildKit's layer cache travels in the pushed image (inline)
    /// and the next build imports it from the first tag; `false` builds every step again.
    pub cache: bool,
}

/// How the build's own `buildkitd` reaches the put's registry (for the cache it imports,
/// or a `FROM` there): over plain HTTP, or trusting `source.ca_certs`.
pub struct RegistryTrust {
    pub host: String,
    pub http: bool,
    pub ca_certs: Vec<String>,
}

/// The image built for a put: in a folder of its own, removed when this is dropped.
pub struct Built {
    pub dir: FreshDir,
    /// `image.tar`, or `image` (an OCI layout, for several platforms).
    pub image: &'static str,
}

fn text(field: &str, v: &Value) -> anyhow::Result<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => bail!("params.build.{field}: expected a string"),
    }
}

impl BuildSpec {
    /// Reads `params.build` (a map) and `params.cache` (the documents put it beside `build`;
    /// `build.cache` is read too, and the two must agree).
    pub fn parse(build: &Value, cache: Option<bool>) -> anyhow::Result<Self> {
        let Value::Object(map) = build else {
            bail!("params.build: expected a map like {{context: src, dockerfile: src/Dockerfile}}")
        };
        let mut spec = BuildSpec {
            context: ".".into(),
            dockerfile: None,
            target: None,
            build_args: BTreeMap::new(),
            platforms: Vec::new(),
            cache: true,
        };
        let mut inner_cache = None;
        for (key, value) in map {
            match key.as_str() {
                "context" | "CONTEXT" => spec.context = text(key, value)?,
                "dockerfile" | "DOCKERFILE" => spec.dockerfile = Some(text(key, value)?),
                "target" | "TARGET" => spec.target = Some(text(key, value)?).filter(|t| !t.is_empty()),
                "platform" | "IMAGE_PLATFORM" => {
                    spec.platforms = match value {
                        Value::Array(items) => items.iter().map(|i| text(key, i)).collect::<Result<_, _>>()?,
                        other => text(key, other)?.split(',').map(|s| s.trim().to_string()).collect(),
                    };
                    spec.platforms.retain(|p| !p.is_empty());
                }
                "build_args" => {
                    let Value::Object(args) = value else {
                        bail!("params.build.build_args: expected a map of NAME: value")
                    };
                    for (name, v) in args {
                        spec.build_args.insert(name.clone(), text(&format!("build_args.{name}"), v)?);
                    }
                }
                "cache" => match value {
                    Value::Bool(b) => inner_cache = Some(*b),
                    _ => bail!("params.build.cache: expected true or false"),
                },
                other => match other.strip_prefix("BUILD_ARG_") {
                    Some(name) if !name.is_empty() => {
                        spec.build_args.insert(name.to_string(), text(other, value)?);
                    }
                    _ => bail!(
                        "params.build: unknown field {other:?}; expected context, dockerfile, target, build_args, platform or cache"
                    ),
                },
            }
        }
        spec.cache = match (cache, inner_cache) {
            (Some(a), Some(b)) if a != b => bail!("params.cache and params.build.cache disagree; set one of them"),
            (a, b) => a.or(b).unwrap_or(true),
        };
        Ok(spec)
    }

    /// The build task's params for this build, its paths checked to stay inside `dir`.
    fn params(
        &self,
        dir: &Path,
        output: &Path,
        name: ImageName,
        credentials: Option<Credentials>,
        trust: &RegistryTrust,
    ) -> anyhow::Result<BuildParams> {
        let inside = |field: &str, rel: &str| -> anyhow::Result<PathBuf> {
            confined::metadata_beneath(dir, Path::new(rel)).with_context(|| format!("params.build.{field}: {rel}"))?;
            Ok(dir.join(rel))
        };
        let context = inside("context", &self.context)?;
        let dockerfile = match &self.dockerfile {
            Some(f) => inside("dockerfile", f)?,
            None => {
                let f = Path::new(&self.context).join("Dockerfile");
                inside("dockerfile", &f.to_string_lossy())?
            }
        };
        let mut vars = vec![
            ("CONTEXT".to_string(), context.to_string_lossy().into_owned()),
            ("DOCKERFILE".to_string(), dockerfile.to_string_lossy().into_owned()),
        ];
        if let Some(t) = &self.target {
            vars.push(("TARGET".into(), t.clone()));
        }
        if !self.platforms.is_empty() {
            vars.push(("IMAGE_PLATFORM".into(), self.platforms.join(",")));
        }
        for (k, v) in &self.build_args {
            vars.push((format!("BUILD_ARG_{k}"), v.clone()));
        }
        // Where BuildKit is, and the daemon's settings, come from out's environment, as
        // they do for the task.
        vars.extend(kiln_build_task::task::params::table::from_environment(std::env::vars()));
        if self.cache {
            vars.push(("CACHE_FROM".into(), format!("type=registry,ref={name}")));
            vars.push(("CACHE_TO".into(), "type=inline".into()));
        } else {
            vars.push(("NO_CACHE".into(), "true".into()));
        }
        let mut params = BuildParams::from_env(&vars).map_err(|e| anyhow::anyhow!("params.build: {e}"))?;
        params.cache_dir = None;
        params.docker_config = kiln_registry::docker_config::config_dir(|k| std::env::var(k).ok());
        params.output = output.to_path_buf();
        params.name = Some(name);
        params.registry_credentials = credentials;
        params.push = false;
        let mut ca_files = Vec::new();
        for (i, pem) in trust.ca_certs.iter().enumerate() {
            let file = output.join(format!("registry-ca-{i}.pem"));
            confined::create_with(&file, pem.as_bytes()).with_context(|| format!("writing {}", file.display()))?;
            ca_files.push(file);
        }
        params.daemon_registries = vec![kiln_build_task::buildkit::daemon::RegistryAccess {
            host: trust.host.clone(),
            http: trust.http,
            ca_files,
        }];
        Ok(params)
    }

    /// Builds the image, named `name` (the repository and the first tag to push).
    pub async fn build(
        &self,
        dir: &Path,
        name: ImageName,
        credentials: Option<Credentials>,
        trust: &RegistryTrust,
    ) -> anyhow::Result<Built> {
        let out = FreshDir::create(&std::env::temp_dir(), "kiln-put-build").context("making a folder for the build")?;
        let params = self.params(dir, out.path(), name, credentials, trust)?;
        eprintln!(
            "building {} (context {}){}",
            params.dockerfile.strip_prefix(dir).unwrap_or(&params.dockerfile).display(),
            self.context,
            if self.cache { "" } else { " without cache" }
        );
        let built = kiln_build_task::task::run(params).await.context("params.build")?;
        Ok(Built { dir: out, image: built.image })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str, cache: Option<bool>) -> anyhow::Result<BuildSpec> {
        BuildSpec::parse(&serde_json::from_str(json).unwrap(), cache)
    }

    #[test]
    fn both_names_are_read() {
        let docs = parse(
            r#"{"context":"src","dockerfile":"src/Dockerfile","target":"app","build_args":{"V":1},"platform":["linux/amd64","linux/arm64"]}"#,
            None,
        )
        .unwrap();
        let task = parse(
            r#"{"CONTEXT":"src","DOCKERFILE":"src/Dockerfile","TARGET":"app","BUILD_ARG_V":"1","IMAGE_PLATFORM":"linux/amd64, linux/arm64"}"#,
            None,
        )
        .unwrap();
        assert_eq!(docs, task);
        assert_eq!(docs.build_args["V"], "1");
        assert_eq!(docs.platforms, ["linux/amd64", "linux/arm64"]);
        assert!(docs.cache, "cache is on by default");
    }

    #[test]
    fn cache_is_read_beside_build_or_in_it() {
        assert!(!parse(r#"{}"#, Some(false)).unwrap().cache);
        assert!(!parse(r#"{"cache":false}"#, None).unwrap().cache);
        let e = parse(r#"{"cache":false}"#, Some(true)).unwrap_err().to_string();
        assert!(e.contains("disagree"), "{e}");
    }

    #[test]
    fn bad_maps_name_the_field() {
        let e = parse(r#"{"contxt":"src"}"#, None).unwrap_err().to_string();
        assert!(e.starts_with("params.build: unknown field \"contxt\""), "{e}");
        let e = parse(r#"{"build_args":["A=1"]}"#, None).unwrap_err().to_string();
        assert!(e.starts_with("params.build.build_args:"), "{e}");
        let e = BuildSpec::parse(&Value::String("src".into()), None).unwrap_err().to_string();
        assert!(e.starts_with("params.build: expected a map"), "{e}");
    }
}
