//! Registry credentials from Docker's client configuration, looked up the way the docker
//! CLI does: `$DOCKER_CONFIG/config.json` (else `~/.docker/config.json`), a per-registry
//! `credHelpers` entry, else the `credsStore`, else the `auths` entry (`auth` is
//! base64 `user:password`). Helpers run as `docker-credential-<name> get`.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;

use crate::{Credentials, IDENTITY_TOKEN_USERNAME};

/// The key Docker Hub's credentials are stored under.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

#[derive(Debug, Default, serde::Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: HashMap<String, String>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

/// Why the configuration could not be used. Messages never contain secrets.
#[derive(Debug, thiserror::Error)]
pub enum DockerConfigError {
    #[error("{}: {detail}", path.display())]
    File { path: PathBuf, detail: String },
    #[error("credential helper docker-credential-{helper} failed for {host}: {detail}")]
    Helper { helper: String, host: String, detail: String },
}

/// Docker's configuration folder: `DOCKER_CONFIG`, else `~/.docker`.
pub fn config_dir(env: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    env("DOCKER_CONFIG")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| Path::new(&h).join(".docker")))
}

/// Credentials for `host` from this process's Docker configuration ([`config_dir`] of the
/// environment), if it has any: what the resource and the build task use when they are
/// given none.
pub fn lookup(host: &str) -> Result<Option<Credentials>, DockerConfigError> {
    match config_dir(|k| std::env::var(k).ok()) {
        Some(dir) => credentials_for(&dir, host),
        None => Ok(None),
    }
}

/// Credentials for `host` (`ghcr.io`, `127.0.0.1:5000`, `registry-1.docker.io`), if the
/// configuration in `dir` has any. A missing file means no credentials.
pub fn credentials_for(dir: &Path, host: &str) -> Result<Option<Credentials>, DockerConfigError> {
    let path = dir.join("config.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(DockerConfigError::File { path, detail: e.to_string() }),
    };
    let config: ConfigFile = serde_json::from_str(&text)
        .map_err(|e| DockerConfigError::File { path: path.clone(), detail: e.to_string() })?;
    let keys = candidate_keys(host);
    if let Some(helper) = keys.iter().find_map(|k| config.cred_helpers.get(k)) {
        return run_helper(helper, keys.last().expect("at least the host"));
    }
    if let Some(store) = &config.creds_store
        && let Some(found) = run_helper(store, keys.last().expect("at least the host"))?
    {
        return Ok(Some(found));
    }
    for key in &keys {
        let Some(entry) = config.auths.iter().find(|(k, _)| normalise(k) == normalise(key)).map(|(_, v)| v) else {
            continue;
        };
        if let Some(token) = entry.identitytoken.as_ref().filter(|t| !t.is_empty()) {
            return Ok(Some(Credentials { username: IDENTITY_TOKEN_USERNAME.into(), password: token.clone() }));
        }
        if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
            return Ok(Some(Credentials { username: u.clone(), password: p.clone() }));
        }
        if let Some(auth) = &entry.auth {
            let decoded = base64::engine::general_purpose::STANDARD.decode(auth.trim()).map_err(|_| {
                DockerConfigError::File { path: path.clone(), detail: format!("auths[{key:?}].auth is not base64") }
            })?;
            let decoded = String::from_utf8_lossy(&decoded).into_owned();
            let (u, p) = decoded.split_once(':').ok_or_else(|| DockerConfigError::File {
                path: path.clone(),
                detail: format!("auths[{key:?}].auth is not user:password"),
            })?;
            return Ok(Some(Credentials { username: u.to_string(), password: p.to_string() }));
        }
    }
    Ok(None)
}

/// The keys a registry's credentials may be stored under, the plain host last.
fn candidate_keys(host: &str) -> Vec<String> {
    match host {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => {
            vec![DOCKER_HUB_KEY.to_string(), "docker.io".into(), "index.docker.io".into()]
        }
        h => vec![h.to_string()],
    }
}

/// `https://ghcr.io/v1/` → `ghcr.io`, so keys written with a scheme or path still match.
fn normalise(key: &str) -> String {
    let k = key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")).unwrap_or(key);
    k.split('/').next().unwrap_or(k).to_string()
}

fn run_helper(helper: &str, host: &str) -> Result<Option<Credentials>, DockerConfigError> {
    let fail = |detail: String| DockerConfigError::Helper { helper: helper.into(), host: host.into(), detail };
    let mut child = Command::new(format!("docker-credential-{helper}"))
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(host.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        let said =
            String::from_utf8_lossy(&out.stdout).to_lowercase() + &String::from_utf8_lossy(&out.stderr).to_lowercase();
        if said.contains("credentials not found") {
            return Ok(None);
        }
        return Err(fail(format!("exit status {}", out.status)));
    }
    #[derive(serde::Deserialize)]
    struct HelperAnswer {
        #[serde(rename = "Username")]
        username: String,
        #[serde(rename = "Secret")]
        secret: String,
    }
    let answer: HelperAnswer =
        serde_json::from_slice(&out.stdout).map_err(|e| fail(format!("unreadable answer: {e}")))?;
    Ok(Some(Credentials { username: answer.username, password: answer.secret }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, json: &str) {
        std::fs::write(dir.join("config.json"), json).unwrap();
    }

    #[test]
    fn auths_in_every_form() {
        let dir = tempfile::tempdir().unwrap();
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:pa:ss");
        config(
            dir.path(),
            &format!(
                r#"{{"auths":{{"127.0.0.1:5000":{{"auth":"{auth}"}},"https://ghcr.io/v1/":{{"username":"bob","password":"pw"}},"https://index.docker.io/v1/":{{"auth":"{auth}"}}}}}}"#
            ),
        );
        let get = |h: &str| credentials_for(dir.path(), h).unwrap().map(|c| (c.username, c.password));
        assert_eq!(get("127.0.0.1:5000"), Some(("alice".into(), "pa:ss".into())));
        assert_eq!(get("ghcr.io"), Some(("bob".into(), "pw".into())));
        assert_eq!(get("registry-1.docker.io"), Some(("alice".into(), "pa:ss".into())));
        assert_eq!(get("quay.io"), None);
    }

    #[test]
    fn missing_file_is_no_credentials_and_bad_file_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(credentials_for(dir.path(), "x").unwrap().is_none());
        config(dir.path(), "{not json");
        let err = credentials_for(dir.path(), "x").unwrap_err().to_string();
        assert!(err.contains("config.json"), "{err}");
    }

    #[test]
    fn missing_helper_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        config(dir.path(), r#"{"credHelpers":{"example.com":"kiln-no-such-helper"}}"#);
        let err = credentials_for(dir.path(), "example.com").unwrap_err().to_string();
        assert!(err.contains("docker-credential-kiln-no-such-helper") && err.contains("example.com"), "{err}");
    }
}
