//! The task's params, read from the environment under the names concourse/oci-build-task
//! uses, checked, and turned into what a solve needs.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::secrets::SecretSource;

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
    /// Where outputs go: `image/` in the task's working directory.
    pub output: PathBuf,
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

impl BuildParams {
    /// Reads the params from `vars` (the process environment in `build`).
    pub fn from_env(vars: &[(String, String)]) -> Result<Self, ParamError> {
        let get = |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).filter(|v| !v.is_empty());
        let flag = |k: &str| get(k).is_some_and(|v| v == "true" || v == "1");
        let context = PathBuf::from(get("CONTEXT").unwrap_or_else(|| ".".into()));
        if !context.is_dir() {
            return Err(err("CONTEXT", format!("{} is not a directory", context.display())));
        }
        let dockerfile = get("DOCKERFILE").map(PathBuf::from).unwrap_or_else(|| context.join("Dockerfile"));
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
        for (name, value) in vars {
            if let Some(arg) = name.strip_prefix("BUILD_ARG_") {
                build_args.insert(arg.to_string(), value.clone());
            } else if let Some(label) = name.strip_prefix("LABEL_") {
                labels.insert(label.to_string(), value.clone());
            } else if let Some(id) = name.strip_prefix("BUILDKIT_SECRETTEXT_") {
                secrets.insert(id.to_string(), SecretSource::Text(value.clone()));
            } else if let Some(id) = name.strip_prefix("BUILDKIT_SECRET_") {
                let path = PathBuf::from(value);
                if !path.is_file() {
                    return Err(err(name, format!("secret file {} does not exist", path.display())));
                }
                secrets.insert(id.to_string(), SecretSource::File(path));
            }
        }
        let target = match (get("TARGET"), get("TARGET_FILE")) {
            (Some(t), _) => Some(t),
            (None, Some(file)) => Some(
                std::fs::read_to_string(&file)
                    .map_err(|e| err("TARGET_FILE", format!("reading {file}: {e}")))?
                    .trim()
                    .to_string(),
            ),
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
        Ok(BuildParams {
            context,
            dockerfile,
            build_args,
            labels,
            target,
            additional_targets,
            platforms,
            secrets,
            unpack_rootfs: flag("UNPACK_ROOTFS"),
            output_oci: flag("OUTPUT_OCI"),
            output: PathBuf::from("image"),
        })
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
        attrs
    }
}

/// `KEY=value` lines (blank lines and `#` comments skipped).
fn read_pairs(param: &str, path: &Path) -> Result<Vec<(String, String)>, ParamError> {
    let text = std::fs::read_to_string(path).map_err(|e| err(param, format!("reading {}: {e}", path.display())))?;
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
