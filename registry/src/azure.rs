//! Azure Container Registry logins with an Azure identity, as registry-image-resource does
//! them: an Entra ID (AAD) access token for the cloud's management scope, from workload
//! identity (`AZURE_FEDERATED_TOKEN_FILE`, `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, as on AKS)
//! or else the VM's managed identity (IMDS); the tenant given, or read from the registry's
//! `/v2/` challenge, or `common`; then ACR's `/oauth2/exchange` turns the AAD token into a
//! refresh token, the password of the user `00000000-0000-0000-0000-000000000000`.
//!
//! The cloud (its management scope and login host) is `azure_environment` when it names
//! one (`AzurePublic`, `AzureGovernment`, `AzureChina`), else the registry's domain
//! (`.azurecr.us`, `.azurecr.cn`), else the public cloud. `AZURE_AUTHORITY_HOST` and
//! `AZURE_POD_IDENTITY_AUTHORITY_HOST` move the login and IMDS hosts, as in Azure's SDKs.

use std::time::Duration;

use crate::auth::{Challenge, Credentials};

/// The username ACR wants with a refresh token.
pub const ACR_USERNAME: &str = "00000000-0000-0000-0000-000000000000";

/// What an ACR login needs.
#[derive(Debug, Clone, Default)]
pub struct AcrSettings {
    /// The registry's host (`myregistry.azurecr.io`).
    pub registry: String,
    /// A user-assigned identity's client id (`azure_client_id`).
    pub client_id: Option<String>,
    /// `azure_tenant_id`: skips asking the registry.
    pub tenant_id: Option<String>,
    /// `azure_environment`.
    pub environment: Option<String>,
    /// Talk to the registry over plain HTTP (`insecure`).
    pub insecure: bool,
    /// `ca_certs`: the registry's `/v2/` and `/oauth2/exchange` are reached with the TLS
    /// configuration the registry client uses; Entra ID and IMDS with the system's roots.
    pub ca_certs: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AzureError {
    #[error("Azure identity token ({source_name}): {detail}")]
    Identity { source_name: &'static str, detail: String },
    #[error("ACR token exchange at {registry}: {detail}")]
    Exchange { registry: String, detail: String },
    #[error(transparent)]
    Client(#[from] crate::RegistryError),
}

/// One Azure cloud: the scope tokens are asked for, and where to log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cloud {
    pub resource: &'static str,
    pub authority: &'static str,
}

const PUBLIC: Cloud =
    Cloud { resource: "https://management.azure.com/", authority: "https://login.microsoftonline.com/" };
const GOVERNMENT: Cloud =
    Cloud { resource: "https://management.usgovcloudapi.net/", authority: "https://login.microsoftonline.us/" };
const CHINA: Cloud =
    Cloud { resource: "https://management.chinacloudapi.cn/", authority: "https://login.chinacloudapi.cn/" };

/// The cloud for `registry`, `environment` winning when it names one.
pub fn cloud(registry: &str, environment: Option<&str>) -> Cloud {
    match environment.map(|e| e.trim().to_ascii_lowercase()).as_deref() {
        Some("azurepublic" | "azurepubliccloud" | "azurecloud") => return PUBLIC,
        Some("azuregovernment" | "azureusgovernment" | "azureusgovernmentcloud") => return GOVERNMENT,
        Some("azurechina" | "azurechinacloud") => return CHINA,
        _ => {}
    }
    let host = registry.to_ascii_lowercase();
    let host = host.split(':').next().unwrap_or_default();
    if host.ends_with(".azurecr.us") {
        GOVERNMENT
    } else if host.ends_with(".azurecr.cn") {
        CHINA
    } else {
        PUBLIC
    }
}

/// The tenant named in a `/v2/` challenge's realm (`…/oauth2/exchange?tenant=…`), or `common`.
pub fn challenge_tenant(header: &str) -> String {
    let Some(Challenge::Bearer { realm, .. }) = Challenge::parse(header) else { return "common".into() };
    let query = realm.split_once('?').map(|(_, q)| q).unwrap_or_default();
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("tenant="))
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| "common".into())
}

use crate::Env;

/// Logs in to ACR (see the module's documentation).
pub async fn acr_login(settings: &AcrSettings, env: Env<'_>) -> Result<Credentials, AzureError> {
    let http = crate::client::api_client(Duration::from_secs(30))
        .map_err(|detail| AzureError::Identity { source_name: "client", detail })?;
    let registry_http = crate::tls::http_builder(&settings.ca_certs, None)?
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| crate::RegistryError::Client(crate::error_chain(&e)))?;
    let cloud = cloud(&settings.registry, settings.environment.as_deref());
    let aad = aad_token(&http, settings, cloud, env).await?;
    let scheme = if settings.insecure { "http" } else { "https" };
    let registry = &settings.registry;
    let tenant = match settings.tenant_id.clone().filter(|t| !t.is_empty()) {
        Some(tenant) => tenant,
        None => {
            let resp = registry_http.get(format!("{scheme}://{registry}/v2/")).send().await;
            match resp {
                Ok(resp) => challenge_tenant(crate::call::header_str(resp.headers(), "www-authenticate").unwrap_or("")),
                Err(_) => "common".into(),
            }
        }
    };
    let fail = |detail: String| AzureError::Exchange { registry: registry.clone(), detail };
    let resp = registry_http
        .post(format!("{scheme}://{registry}/oauth2/exchange"))
        .form(&[("grant_type", "access_token"), ("service", registry), ("tenant", &tenant), ("access_token", &aad)])
        .send()
        .await
        .map_err(|e| fail(crate::error_chain(&e)))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(fail(format!("answered {status}")));
    }
    let text = crate::body::text_capped(resp, crate::body::SMALL).await.map_err(fail)?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| fail(format!("unreadable answer: {e}")))?;
    let refresh = json["refresh_token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| fail("no refresh_token in the answer".into()))?;
    Ok(Credentials { username: ACR_USERNAME.into(), password: refresh.into() })
}

/// An AAD access token for the cloud's management scope.
async fn aad_token(
    http: &reqwest::Client,
    settings: &AcrSettings,
    cloud: Cloud,
    env: Env<'_>,
) -> Result<String, AzureError> {
    let set = |k: &str| env(k).filter(|v| !v.is_empty());
    if let Some(file) = set("AZURE_FEDERATED_TOKEN_FILE") {
        const SOURCE: &str = "workload identity";
        let fail = |detail: String| AzureError::Identity { source_name: SOURCE, detail };
        let tenant = set("AZURE_TENANT_ID").ok_or_else(|| fail("AZURE_TENANT_ID is not set".into()))?;
        let client = settings
            .client_id
            .clone()
            .or_else(|| set("AZURE_CLIENT_ID"))
            .ok_or_else(|| fail("neither azure_client_id nor AZURE_CLIENT_ID is set".into()))?;
        let assertion = std::fs::read_to_string(&file).map_err(|e| fail(format!("{file}: {e}")))?;
        let authority = set("AZURE_AUTHORITY_HOST").unwrap_or_else(|| cloud.authority.into());
        let url = format!("{}/{tenant}/oauth2/v2.0/token", authority.trim_end_matches('/'));
        let scope = format!("{}.default", cloud.resource);
        let resp = http
            .post(&url)
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", &client),
                ("scope", &scope),
                ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                ("client_assertion", assertion.trim()),
            ])
            .send()
            .await
            .map_err(|e| fail(format!("{url}: {}", crate::error_chain(&e))))?;
        return token_from(SOURCE, resp).await;
    }
    const SOURCE: &str = "managed identity";
    let fail = |detail: String| AzureError::Identity { source_name: SOURCE, detail };
    let host = set("AZURE_POD_IDENTITY_AUTHORITY_HOST").unwrap_or_else(|| "http://169.254.169.254".into());
    let url = format!("{}/metadata/identity/oauth2/token", host.trim_end_matches('/'));
    let mut query = vec![("api-version", "2018-02-01"), ("resource", cloud.resource)];
    if let Some(client) = &settings.client_id {
        query.push(("client_id", client));
    }
    let resp = http
        .get(&url)
        .query(&query)
        .header("Metadata", "true")
        .send()
        .await
        .map_err(|e| fail(format!("no instance metadata service at {host} ({})", crate::error_chain(&e))))?;
    token_from(SOURCE, resp).await
}

async fn token_from(source_name: &'static str, resp: reqwest::Response) -> Result<String, AzureError> {
    let fail = |detail: String| AzureError::Identity { source_name, detail };
    let status = resp.status();
    let text = crate::body::text_capped(resp, crate::body::SMALL).await.map_err(fail)?;
    let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    if !status.is_success() {
        let why = json["error_description"].as_str().or(json["error"].as_str()).unwrap_or_default();
        return Err(fail(format!("answered {status} {}", why.lines().next().unwrap_or_default()).trim().to_string()));
    }
    json["access_token"].as_str().map(str::to_string).ok_or_else(|| fail("no access_token in the answer".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clouds() {
        assert_eq!(cloud("r.azurecr.io", None), PUBLIC);
        assert_eq!(cloud("R.AzureCR.US", None), GOVERNMENT);
        assert_eq!(cloud("r.azurecr.cn", None), CHINA);
        assert_eq!(cloud("r.azurecr.io", Some("AzureGovernment")), GOVERNMENT);
        assert_eq!(cloud("r.azurecr.cn", Some("AzurePublic")), PUBLIC);
        assert_eq!(cloud("r.azurecr.us", Some("Nowhere")), GOVERNMENT);
        assert_eq!(cloud("registry.example.com", None), PUBLIC);
    }

    #[test]
    fn tenants() {
        let with =
            r#"Bearer realm="https://r.azurecr.io/oauth2/exchange?foo=bar&tenant=abc-123",service="r.azurecr.io""#;
        assert_eq!(challenge_tenant(with), "abc-123");
        assert_eq!(challenge_tenant(r#"Bearer realm="https://r.azurecr.io/oauth2/exchange""#), "common");
        assert_eq!(challenge_tenant(r#"Basic realm="x""#), "common");
        assert_eq!(challenge_tenant(""), "common");
    }
}
