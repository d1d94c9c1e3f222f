//! The resource's `source` configuration, field for field the schema of
//! concourse/registry-image-resource, so pipelines switch by changing only the image.

use serde::{Deserialize, Deserializer};

use kiln_registry::aws::{self, AwsCredentials, EcrSettings};
use kiln_registry::azure::{self, AcrSettings};
use kiln_registry::{ClientConfig, Credentials, Repository};

/// A regular expression a `source` field holds (`tag_regex`, `label_regex`,
/// `annotation_regex`), compiled; an empty one is none. regex's own message spans several
/// lines with a caret under the fault: the error keeps its last line, naming the field.
pub fn compile_regex(field: &str, pattern: Option<&str>) -> anyhow::Result<Option<regex::Regex>> {
    let Some(pattern) = pattern.filter(|p| !p.is_empty()) else { return Ok(None) };
    regex::Regex::new(pattern).map(Some).map_err(|e| {
        let text = e.to_string();
        let why = text.lines().last().unwrap_or_default().trim().trim_start_matches("error: ");
        anyhow::anyhow!("source.{field}: {pattern:?} is not a valid regular expression: {why}")
    })
}

/// `source:` of a registry-image resource.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub repository: String,
    #[serde(default, deserialize_with = "tag_string")]
    pub tag: Option<String>,
    #[serde(default)]
    pub variant: Option<String>,
    #[serde(default)]
    pub semver_constraint: Option<String>,
    #[serde(default)]
    pub pre_releases: bool,
    #[serde(default)]
    pub pre_release_prefixes: Vec<String>,
    #[serde(default)]
    pub tag_regex: Option<String>,
    #[serde(default)]
    pub created_at_sort: bool,
    #[serde(default)]
    pub label_regex: Option<String>,
    #[serde(default)]
    pub annotation_regex: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub registry_mirror: Option<RegistryMirror>,
    #[serde(default)]
    pub ca_certs: Vec<String>,
    #[serde(default)]
    pub insecure: bool,
    /// The name some reference documents give `insecure`: the same meaning.
    #[serde(default)]
    pub insecure_registries: Option<bool>,
    #[serde(default)]
    pub platform: Option<Platform>,
    #[serde(default)]
    pub debug: bool,
    /// kiln's own: how long the registry may send nothing before a request is retried
    /// (`30s`, `2m` or a number of seconds; 120 s when unset).
    #[serde(default, deserialize_with = "duration")]
    pub read_timeout: Option<std::time::Duration>,
    // Amazon ECR (kiln_registry::aws) and Azure ACR (kiln_registry::azure); Notary v1
    // content trust is accepted so pipelines parse, and refused when set.
    #[serde(default)]
    pub aws_access_key_id: Option<String>,
    #[serde(default)]
    pub aws_secret_access_key: Option<String>,
    #[serde(default)]
    pub aws_session_token: Option<String>,
    #[serde(default)]
    pub aws_region: Option<String>,
    #[serde(default)]
    pub aws_ecr_registry_id: Option<String>,
    #[serde(default)]
    pub aws_role_arn: Option<String>,
    #[serde(default)]
    pub aws_role_arns: Vec<String>,
    #[serde(default)]
    pub aws_account_id: Option<String>,
    #[serde(default)]
    pub azure_acr: bool,
    #[serde(default)]
    pub azure_client_id: Option<String>,
    #[serde(default)]
    pub azure_tenant_id: Option<String>,
    #[serde(default)]
    pub azure_environment: Option<String>,
    /// The anchor's Notary v1 signing on `out` (crate::content_trust).
    #[serde(default)]
    pub content_trust: Option<crate::content_trust::ContentTrust>,
    /// kiln's own: sign on `out`, verify on `check` and `in` (crate::cosign).
    #[serde(default)]
    pub cosign: Option<crate::cosign::CosignSource>,
}

/// `source.registry_mirror`: used only for Docker Hub repositories.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryMirror {
    pub host: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
}

/// `source.platform`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Platform {
    #[serde(default)]
    pub os: Option<String>,
    #[serde(default)]
    pub architecture: Option<String>,
    #[serde(default)]
    pub variant: Option<String>,
}

impl Platform {
    /// The platform to fetch: the fields given here, the running platform's for the rest
    /// (its variant only when the architecture is the running one's too).
    pub fn resolve(wanted: Option<&Platform>) -> kiln_image::oci::Platform {
        let current = kiln_image::oci::Platform::current();
        let Some(wanted) = wanted else { return current };
        let architecture = wanted.architecture.clone().filter(|a| !a.is_empty());
        let variant = match (&architecture, &wanted.variant) {
            (_, Some(v)) if !v.is_empty() => Some(v.clone()),
            (Some(a), _) if *a != current.architecture => None,
            _ => current.variant.clone(),
        };
        kiln_image::oci::Platform {
            architecture: architecture.unwrap_or(current.architecture),
            os: wanted.os.clone().filter(|o| !o.is_empty()).unwrap_or(current.os),
            variant,
            ..Default::default()
        }
    }
}

/// A source that cannot be used, with the field to fix.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source.repository: {0}")]
    Repository(#[from] kiln_registry::ReferenceError),
    #[error("source.registry_mirror.host: {0}")]
    Mirror(kiln_registry::ReferenceError),
    #[error("source.tag: {0}")]
    Tag(kiln_registry::ReferenceError),
    #[error("source.{0} and source.{1} cannot both be set: one registry, one cloud")]
    Conflict(&'static str, &'static str),
    #[error("source.{0} and source.{1} mean the same and disagree; set one of them")]
    Disagree(&'static str, &'static str),
    #[error("source.{0} is set but source.{1} is not; set both or neither")]
    Incomplete(&'static str, &'static str),
    #[error(
        "source.repository is an ECR registry in {repository} but source.aws_region is {region}; set aws_region to {repository}"
    )]
    WrongRegion { repository: String, region: String },
    #[error("ACR login (source.azure_acr): {0}")]
    Acr(#[from] kiln_registry::azure::AzureError),
    #[error("ECR login (source.aws_region): {0}")]
    Ecr(#[from] kiln_registry::aws::AwsError),
    #[error("no username and password in source, and Docker's configuration failed: {0}")]
    DockerConfig(#[from] kiln_registry::docker_config::DockerConfigError),
}

impl Source {
    /// Checks the fields that need no network and refuses those not supported yet.
    /// `insecure`, or its other name `insecure_registries`.
    pub fn allows_plain_http(&self) -> bool {
        self.insecure || self.insecure_registries == Some(true)
    }

    pub fn validate(&self) -> Result<Repository, SourceError> {
        if self.insecure_registries.is_some_and(|other| other != self.insecure) && self.insecure {
            return Err(SourceError::Disagree("insecure", "insecure_registries"));
        }
        if !self.azure_acr {
            let azure = [
                ("azure_client_id", self.azure_client_id.is_some()),
                ("azure_tenant_id", self.azure_tenant_id.is_some()),
                ("azure_environment", self.azure_environment.is_some()),
            ];
            if let Some((field, _)) = azure.iter().find(|(_, set)| *set) {
                return Err(SourceError::Incomplete(field, "azure_acr"));
            }
        }
        if self.azure_acr && self.aws_region.as_deref().is_some_and(|r| !r.is_empty()) {
            return Err(SourceError::Conflict("azure_acr", "aws_region"));
        }
        if self.aws_region.as_deref().is_none_or(str::is_empty) {
            let aws = [
                ("aws_access_key_id", self.aws_access_key_id.is_some()),
                ("aws_secret_access_key", self.aws_secret_access_key.is_some()),
                ("aws_session_token", self.aws_session_token.is_some()),
                ("aws_ecr_registry_id", self.aws_ecr_registry_id.is_some()),
                ("aws_role_arn", self.aws_role_arn.is_some()),
                ("aws_role_arns", !self.aws_role_arns.is_empty()),
                ("aws_account_id", self.aws_account_id.is_some()),
            ];
            if let Some((field, _)) = aws.iter().find(|(_, set)| *set) {
                return Err(SourceError::Incomplete(field, "aws_region"));
            }
        }
        match (&self.aws_access_key_id, &self.aws_secret_access_key) {
            (Some(_), None) => return Err(SourceError::Incomplete("aws_access_key_id", "aws_secret_access_key")),
            (None, Some(_)) => return Err(SourceError::Incomplete("aws_secret_access_key", "aws_access_key_id")),
            _ => {}
        }
        if let Some(region) = self.aws_region.as_deref().filter(|r| !r.is_empty())
            && let Some(in_repo) = aws::ecr_region(&self.repository)
            && in_repo != region
        {
            // ECR's logins are per region: this one would be refused by the registry.
            return Err(SourceError::WrongRegion { repository: in_repo.to_string(), region: region.to_string() });
        }
        match (&self.username, &self.password) {
            (Some(_), None) => return Err(SourceError::Incomplete("username", "password")),
            (None, Some(_)) => return Err(SourceError::Incomplete("password", "username")),
            _ => {}
        }
        if let Some(tag) = &self.tag {
            kiln_registry::reference::validate_tag(tag).map_err(SourceError::Tag)?;
        }
        Ok(Repository::parse(&self.repository)?)
    }

    /// This source's client settings (CAs, `insecure`, `read_timeout`) with `credentials`.
    fn config_with(&self, credentials: Option<Credentials>) -> ClientConfig {
        ClientConfig {
            client_identity: None,
            credentials,
            ca_certs: self.ca_certs.clone(),
            insecure: self.allows_plain_http(),
            read_timeout: self.read_timeout,
        }
    }

    /// The key `out` signs with, if `source.cosign.private_key` is set.
    pub fn cosign_signer(&self) -> Result<Option<crate::cosign::CosignSigner>, crate::cosign::CosignError> {
        let Some(cosign) = &self.cosign else { return Ok(None) };
        let Some(pem) = cosign.private_key.as_deref().filter(|k| !k.trim().is_empty()) else { return Ok(None) };
        let storage = crate::cosign::Storage::parse(cosign.registry_referrers_mode.as_deref())?;
        let signer = crate::cosign::CosignSigner::from_pem(pem, cosign.password.as_deref().unwrap_or_default())?;
        Ok(Some(signer.storing_in(storage)))
    }

    /// The key `check` and `in` verify with, if `source.cosign.public_key` is set.
    pub fn cosign_verifier(&self) -> Result<Option<crate::cosign::CosignVerifier>, crate::cosign::CosignError> {
        let Some(pem) = self.cosign.as_ref().and_then(|c| c.public_key.as_deref()).filter(|k| !k.trim().is_empty())
        else {
            return Ok(None);
        };
        // A mode misspelt is said here too, not only when out signs.
        crate::cosign::Storage::parse(self.cosign.as_ref().and_then(|c| c.registry_referrers_mode.as_deref()))?;
        crate::cosign::CosignVerifier::from_pem(pem).map(Some)
    }

    /// The repository and the client settings to reach it: [`Source::validate`] and
    /// [`Source::client_config`], or, with `aws_region`, an ECR login (which may rewrite the
    /// repository to the account's registry).
    pub async fn connect(&self) -> Result<(Repository, ClientConfig), SourceError> {
        let repo = self.validate()?;
        if self.azure_acr {
            let settings = AcrSettings {
                registry: repo.registry().to_string(),
                client_id: self.azure_client_id.clone().filter(|c| !c.is_empty()),
                tenant_id: self.azure_tenant_id.clone(),
                environment: self.azure_environment.clone(),
                insecure: self.allows_plain_http(),
                ca_certs: self.ca_certs.clone(),
            };
            let credentials = azure::acr_login(&settings, &|k| std::env::var(k).ok()).await?;
            return Ok((repo, self.config_with(Some(credentials))));
        }
        let Some(region) = self.aws_region.clone().filter(|r| !r.is_empty()) else {
            return Ok((repo, self.client_config()?));
        };
        let credentials = match (&self.aws_access_key_id, &self.aws_secret_access_key) {
            (Some(id), Some(secret)) => Some(AwsCredentials {
                access_key_id: id.clone(),
                secret_access_key: secret.clone(),
                session_token: self.aws_session_token.clone().filter(|t| !t.is_empty()),
                expires: None,
            }),
            _ => None,
        };
        let role_arns = match (&self.aws_role_arns, &self.aws_role_arn) {
            (roles, _) if !roles.is_empty() => roles.clone(),
            (_, Some(role)) if !role.is_empty() => vec![role.clone()],
            _ => Vec::new(),
        };
        let settings = EcrSettings {
            region: region.clone(),
            credentials,
            role_arns,
            registry_id: self.aws_ecr_registry_id.clone(),
        };
        let login = aws::ecr_login(&settings, &|k| std::env::var(k).ok()).await?;
        let registry = match self.aws_ecr_registry_id.as_ref().or(self.aws_account_id.as_ref()) {
            Some(account) => format!("{account}.dkr.ecr.{region}.amazonaws.com"),
            None => login.registry,
        };
        let repo = Repository::parse(&aws::ecr_repository(&self.repository, &registry))?;
        Ok((repo, self.config_with(Some(login.credentials))))
    }

    /// The mirror to try first: only for Docker Hub repositories, as the docker CLI does
    /// (never for ECR, whose short repository names only look like Docker Hub's).
    pub fn mirror(&self) -> Result<Option<(Repository, ClientConfig)>, SourceError> {
        let Some(mirror) = self.registry_mirror.as_ref().filter(|m| !m.host.is_empty()) else {
            return Ok(None);
        };
        if self.aws_region.as_deref().is_some_and(|r| !r.is_empty()) {
            return Ok(None);
        }
        let origin = Repository::parse(&self.repository)?;
        if !origin.is_docker_hub() {
            return Ok(None);
        }
        let repo = Repository::parse(&format!("{}/{}", mirror.host, origin.path())).map_err(SourceError::Mirror)?;
        let credentials = credentials(&mirror.username, &mirror.password);
        Ok(Some((repo, self.config_with(credentials))))
    }

    /// The registry client settings this source asks for. Without `username` and
    /// `password`, credentials for the registry come from Docker's `config.json`
    /// (`DOCKER_CONFIG` or `~/.docker`: `auths`, `credHelpers`, `credsStore`), the same
    /// lookup the build task uses, when it has any.
    pub fn client_config(&self) -> Result<ClientConfig, SourceError> {
        let credentials = match credentials(&self.username, &self.password) {
            Some(given) => Some(given),
            None => kiln_registry::docker_config::lookup(Repository::parse(&self.repository)?.registry())?,
        };
        Ok(self.config_with(credentials))
    }
}

/// A username and password given together; anything less is anonymous.
fn credentials(username: &Option<String>, password: &Option<String>) -> Option<Credentials> {
    match (username, password) {
        (Some(username), Some(password)) if !username.is_empty() => {
            Some(Credentials { username: username.clone(), password: password.clone() })
        }
        _ => None,
    }
}

/// A duration as `90`, `"90"`, `"90s"`, `"2m"`, `"1h"` or `"1h30m"`; zero is refused.
fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<std::time::Duration>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Seconds(u64),
        Text(String),
    }
    let parsed = match Option::<Raw>::deserialize(d)? {
        None => return Ok(None),
        Some(Raw::Seconds(n)) => Some(std::time::Duration::from_secs(n)),
        Some(Raw::Text(text)) => kiln_image::time::parse_duration(&text),
    };
    match parsed {
        Some(duration) if !duration.is_zero() => Ok(Some(duration)),
        _ => Err(serde::de::Error::custom("expected a positive duration such as 30s, 2m or 1h")),
    }
}

/// `tag` may be written as a JSON number (`tag: 1.10` in YAML); keep its text verbatim.
fn tag_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Number(serde_json::Number),
    }
    Ok(match Option::<Raw>::deserialize(d)? {
        None => None,
        Some(Raw::Text(s)) if s.is_empty() => None,
        Some(Raw::Text(s)) => Some(s),
        Some(Raw::Number(n)) => Some(n.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Source, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn insecure_registries_is_another_name_for_insecure() {
        let source = |json: &str| parse(json).unwrap();
        assert!(source(r#"{"repository":"r.example/a","insecure_registries":true}"#).allows_plain_http());
        assert!(source(r#"{"repository":"r.example/a","insecure":true}"#).allows_plain_http());
        assert!(!source(r#"{"repository":"r.example/a","insecure_registries":false}"#).allows_plain_http());
        assert!(!source(r#"{"repository":"r.example/a"}"#).allows_plain_http());
        let config = source(r#"{"repository":"r.example/a","insecure_registries":true}"#).config_with(None);
        assert!(config.insecure, "the client gets it");
        let both = source(r#"{"repository":"r.example/a","insecure":true,"insecure_registries":false}"#);
        let err = both.validate().unwrap_err().to_string();
        assert_eq!(err, "source.insecure and source.insecure_registries mean the same and disagree; set one of them");
        assert!(
            source(r#"{"repository":"r.example/a","insecure":true,"insecure_registries":true}"#).validate().is_ok()
        );
    }

    #[test]
    fn numeric_tags_keep_their_text() {
        assert_eq!(parse(r#"{"repository":"a","tag":42.1}"#).unwrap().tag.as_deref(), Some("42.1"));
        assert_eq!(parse(r#"{"repository":"a","tag":7}"#).unwrap().tag.as_deref(), Some("7"));
        assert_eq!(parse(r#"{"repository":"a","tag":"latest"}"#).unwrap().tag.as_deref(), Some("latest"));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = parse(r#"{"repository":"a","tagg":"x"}"#).unwrap_err().to_string();
        assert!(err.contains("unknown field `tagg`"), "{err}");
    }

    #[test]
    fn cloud_fields_are_checked_before_any_request() {
        let err = |json: &str| parse(json).unwrap().validate().unwrap_err().to_string();
        assert!(
            err(r#"{"repository":"a","azure_tenant_id":"t"}"#)
                .contains("source.azure_tenant_id is set but source.azure_acr")
        );
        assert!(
            err(r#"{"repository":"a","aws_role_arn":"r"}"#)
                .contains("source.aws_role_arn is set but source.aws_region")
        );
        let half = r#"{"repository":"a","aws_region":"eu-west-1","aws_access_key_id":"A"}"#;
        assert!(err(half).contains("source.aws_access_key_id is set but source.aws_secret_access_key is not"));
        let no_server = parse(r#"{"repository":"a","content_trust":{}}"#).unwrap_err().to_string();
        assert!(no_server.contains("missing field `server`"), "{no_server}");
        parse(r#"{"repository":"a","aws_region":"eu-west-1"}"#).unwrap().validate().unwrap();
    }

    #[test]
    fn half_credentials_are_refused() {
        let s = parse(r#"{"repository":"a","username":"u"}"#).unwrap();
        assert!(s.validate().unwrap_err().to_string().contains("source.username is set but source.password"));
    }
}
