//! Manifests and indexes: looked up, fetched and verified by digest, and pushed.

use reqwest::Method;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE};

use kiln_image::digest::Digest;

use crate::Descriptor;
use crate::call::{Access, Call, header_str};
use crate::client::Client;
use crate::error::RegistryError;
use crate::media_types::MANIFEST_ACCEPT;

impl Client {
    fn manifest_call(&self, method: Method, reference: &str, access: Access) -> Call {
        let path = format!("/v2/{}/manifests/{reference}", self.repo.path());
        Call::new(method, path, access, format!("manifest {}:{reference}", self.repo))
            .header(ACCEPT, &MANIFEST_ACCEPT.join(", "))
    }

    /// Looks up a manifest by tag or digest without downloading it where the registry allows.
    /// `Ok(None)` when the registry says it does not exist.
    pub async fn head_manifest(&self, reference: &str) -> Result<Option<Descriptor>, RegistryError> {
        let call = self.manifest_call(Method::HEAD, reference, Access::Pull);
        let resp = self.execute(&call).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = self.expect_success(resp, &call.what).await?;
        let headers = resp.headers();
        match (header_str(headers, "docker-content-digest"), header_str(headers, CONTENT_TYPE.as_str())) {
            (Some(digest), Some(media_type)) if let Ok(digest) = digest.parse::<Digest>() => {
                let size = resp.content_length().unwrap_or(0);
                Ok(Some(Descriptor::new(media_type, digest, size)))
            }
            // Some registries leave the digest out of HEAD answers: fetch and hash the body.
            _ => Ok(self.get_manifest(reference).await?.map(|(d, _)| d)),
        }
    }

    /// Fetches a manifest by tag or digest and verifies its digest: against the reference
    /// when it is one, else against what the registry claims.
    pub async fn get_manifest(&self, reference: &str) -> Result<Option<(Descriptor, Vec<u8>)>, RegistryError> {
        let call = self.manifest_call(Method::GET, reference, Access::Pull);
        let resp = self.execute(&call).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = self.expect_success(resp, &call.what).await?;
        let media_type = header_str(resp.headers(), CONTENT_TYPE.as_str()).unwrap_or_default().to_string();
        let claimed = header_str(resp.headers(), "docker-content-digest").map(str::to_string);
        let body = self.read_body(resp, crate::body::MANIFEST, &call.what).await?;
        let digest = Digest::of(&body);
        let expected = if reference.starts_with("sha256:") { Some(reference.to_string()) } else { claimed };
        if let Some(expected) = expected.filter(|e| e.starts_with("sha256:") && *e != digest.to_string()) {
            return Err(RegistryError::DigestMismatch {
                registry: self.repo.registry().into(),
                what: call.what,
                expected,
                actual: digest.to_string(),
            });
        }
        // Trust the body over the header for the type: some registries answer text/plain.
        let media_type = media_type_of(&body).unwrap_or(media_type);
        Ok(Some((Descriptor::new(&media_type, digest, body.len() as u64), body.to_vec())))
    }

    /// Pushes a manifest under a tag or its digest and checks the registry stored exactly it.
    pub async fn put_manifest(
        &self,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Result<Descriptor, RegistryError> {
        let digest = Digest::of(body);
        let path = format!("/v2/{}/manifests/{reference}", self.repo.path());
        let call = Call::new(Method::PUT, path, Access::Push, format!("pushing manifest {}:{reference}", self.repo))
            .header(CONTENT_TYPE, media_type)
            .body(bytes::Bytes::copy_from_slice(body));
        let resp = self.execute(&call).await?;
        let resp = self.expect_success(resp, &call.what).await?;
        if let Some(returned) = header_str(resp.headers(), "docker-content-digest")
            && returned != digest.to_string()
        {
            return Err(RegistryError::DigestMismatch {
                registry: self.repo.registry().into(),
                what: call.what,
                expected: digest.to_string(),
                actual: returned.to_string(),
            });
        }
        Ok(Descriptor::new(media_type, digest, body.len() as u64))
    }
}

/// The `mediaType` a manifest declares about itself, if any.
fn media_type_of(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
    }
    serde_json::from_slice::<Probe>(body).ok()?.media_type.filter(|m| !m.is_empty())
}
