//! OCI 1.1 referrers: manifests whose `subject` names another manifest (a signature names
//! the image it signs). A registry with the referrers API lists them at
//! `/v2/<name>/referrers/<digest>`; one without it (answering 404 there, as Debian's
//! distribution does) has them in an index under the fallback tag `sha256-<hex>`, which
//! whoever pushes a referrer keeps up to date — the distribution spec's tag schema.

use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use crate::call::{Access, Call};
use crate::client::Client;
use crate::error::RegistryError;
use crate::media_types::OCI_INDEX;

/// One referrer, as an index lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Referrer {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub size: u64,
    pub digest: String,
    #[serde(rename = "artifactType", default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

/// The tag the fallback index of `digest`'s referrers lives under: `sha256-<hex>`.
pub fn fallback_tag(digest: &str) -> String {
    digest.replacen(':', "-", 1)
}

#[derive(Deserialize)]
struct Index {
    #[serde(default)]
    manifests: Vec<Referrer>,
}

impl Client {
    /// The referrers API's answer for `digest`, or `None` where the registry has no API
    /// (a registry that answered 404 is not asked again by this client).
    async fn referrers_api(&self, digest: &str) -> Result<Option<Vec<Referrer>>, RegistryError> {
        digest.parse::<kiln_image::digest::Digest>().map_err(|e| RegistryError::Client(e.to_string()))?;
        if self.state.lock().expect("state lock").no_referrers_api {
            return Ok(None);
        }
        let what = format!("the referrers of {}@{digest}", self.repo);
        let path = format!("/v2/{}/referrers/{digest}", self.repo.path());
        let call = Call::new(Method::GET, path, Access::Pull, what.clone()).header(reqwest::header::ACCEPT, OCI_INDEX);
        let resp = self.execute(&call).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            self.state.lock().expect("state lock").no_referrers_api = true;
            return Ok(None);
        }
        let resp = self.expect_success(resp, &what).await?;
        let body = self.read_body(resp, crate::body::MANIFEST, &what).await?;
        let index: Index = serde_json::from_slice(&body)
            .map_err(|e| RegistryError::Client(format!("{what}: the answer is not an image index: {e}")))?;
        Ok(Some(index.manifests))
    }

    /// The manifests that name `digest` as their subject: from the referrers API, or from
    /// the fallback tag where the registry has no API. What they are is the caller's to
    /// check: anyone who may push may add to either.
    pub async fn referrers(&self, digest: &str) -> Result<Vec<Referrer>, RegistryError> {
        if let Some(found) = self.referrers_api(digest).await? {
            return Ok(found);
        }
        let Some((_, body)) = self.get_manifest(&fallback_tag(digest)).await? else { return Ok(Vec::new()) };
        let index: Index = serde_json::from_slice(&body).map_err(|e| {
            RegistryError::Client(format!("{}:{} is not an image index: {e}", self.repo, fallback_tag(digest)))
        })?;
        Ok(index.manifests)
    }

    /// Makes `referrer`, a manifest already pushed whose subject is `subject`, findable:
    /// nothing more where the registry has the referrers API (it lists what it stores),
    /// else added to the fallback tag's index unless it is there already.
    pub async fn add_referrer(&self, subject: &str, referrer: Referrer) -> Result<(), RegistryError> {
        if self.referrers_api(subject).await?.is_some() {
            return Ok(());
        }
        let tag = fallback_tag(subject);
        let mut index = match self.get_manifest(&tag).await? {
            Some((_, body)) => serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .filter(|v| v["manifests"].is_array())
                .ok_or_else(|| RegistryError::Client(format!("{}:{tag} is not an image index", self.repo)))?,
            None => serde_json::json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [] }),
        };
        let manifests = index["manifests"].as_array_mut().expect("checked above");
        if manifests.iter().any(|m| m["digest"] == referrer.digest.as_str()) {
            return Ok(());
        }
        manifests.push(serde_json::to_value(&referrer).expect("a referrer serializes"));
        self.put_manifest(&tag, OCI_INDEX, index.to_string().as_bytes()).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media_types::OCI_MANIFEST;

    #[test]
    fn fallback_tags_are_the_specs() {
        assert_eq!(fallback_tag("sha256:abc"), "sha256-abc");
    }

    #[test]
    fn referrers_keep_their_artifact_type_and_leave_it_out_when_absent() {
        let with = Referrer {
            media_type: OCI_MANIFEST.into(),
            size: 7,
            digest: "sha256:ab".into(),
            artifact_type: Some("x/y".into()),
        };
        let json = serde_json::to_value(&with).unwrap();
        assert_eq!(json["artifactType"], "x/y");
        let without = Referrer { artifact_type: None, ..with };
        assert!(serde_json::to_value(&without).unwrap().get("artifactType").is_none());
    }
}
