//! Blobs (layers and configs): checked for, streamed and verified by digest, mounted
//! from another repository of the same registry, and uploaded.

use bytes::Bytes;
use kiln_image::blob::Blob;
use kiln_image::digest::Digest;
use reqwest::header::{CONTENT_TYPE, LOCATION, RANGE};
use reqwest::{Method, StatusCode};
use sha2::{Digest as _, Sha256};

use crate::call::{Access, Call, header_str};
use crate::client::Client;
use crate::error::RegistryError;
use crate::retry::{RESUMES, UPLOAD_ATTEMPTS};

/// A blob being downloaded: chunks as they arrive, its digest checked at the end. When the
/// connection breaks or stalls mid-body, the rest is asked for again (`Range`), so a reader
/// that already consumed the first part never sees a byte twice.
pub struct BlobStream<'a> {
    client: &'a Client,
    resp: reqwest::Response,
    hasher: Sha256,
    expected: Digest,
    what: String,
    registry: String,
    received: u64,
    /// Bytes at the start of the current answer that were already delivered (a registry
    /// that ignored `Range` and sent the whole blob again).
    skip: u64,
    resumes: u32,
}

impl BlobStream<'_> {
    /// The size the registry announced, if it did.
    pub fn content_length(&self) -> Option<u64> {
        self.resp.content_length()
    }

    /// The next chunk; `Ok(None)` at the end, once the digest has been verified.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, RegistryError> {
        loop {
            match self.resp.chunk().await {
                Ok(Some(mut chunk)) => {
                    if self.skip > 0 {
                        let drop = self.skip.min(chunk.len() as u64);
                        self.skip -= drop;
                        chunk = chunk.slice(drop as usize..);
                        if chunk.is_empty() {
                            continue;
                        }
                    }
                    self.hasher.update(&chunk);
                    self.received += chunk.len() as u64;
                    return Ok(Some(chunk));
                }
                Ok(None) if self.skip > 0 => {
                    return Err(RegistryError::Unreachable {
                        registry: self.registry.clone(),
                        detail: format!("{} ended before the {} bytes already received", self.what, self.received),
                    });
                }
                Ok(None) => {
                    let actual = Digest::from_hasher(self.hasher.clone());
                    if actual != self.expected {
                        return Err(RegistryError::DigestMismatch {
                            registry: self.registry.clone(),
                            what: self.what.clone(),
                            expected: self.expected.to_string(),
                            actual: actual.to_string(),
                        });
                    }
                    return Ok(None);
                }
                Err(e) => {
                    let why =
                        format!("{} broke off after {} bytes: {}", self.what, self.received, crate::error_chain(&e));
                    if self.resumes >= RESUMES {
                        return Err(RegistryError::Unreachable { registry: self.registry.clone(), detail: why });
                    }
                    self.resumes += 1;
                    eprintln!("registry {}: {why}; resuming ({}/{RESUMES})", self.registry, self.resumes);
                    self.resume().await?;
                }
            }
        }
    }

    /// Asks for the rest of the blob from byte `received`.
    async fn resume(&mut self) -> Result<(), RegistryError> {
        let call = Call::new(Method::GET, self.client.blob_path(&self.expected), Access::Pull, self.what.clone())
            .header(RANGE, &format!("bytes={}-", self.received));
        let resp = self.client.execute(&call).await?;
        let resp = self.client.expect_success(resp, &call.what).await?;
        let start = format!("bytes {}-", self.received);
        self.skip = match resp.status() {
            StatusCode::PARTIAL_CONTENT
                if header_str(resp.headers(), "content-range").is_some_and(|r| r.starts_with(&start)) =>
            {
                0
            }
            StatusCode::PARTIAL_CONTENT => {
                return Err(RegistryError::Unreachable {
                    registry: self.registry.clone(),
                    detail: format!("{}: asked to resume at byte {}, got another range", self.what, self.received),
                });
            }
            _ => self.received,
        };
        self.resp = resp;
        Ok(())
    }
}

impl Client {
    fn blob_path(&self, digest: &Digest) -> String {
        format!("/v2/{}/blobs/{digest}", self.repo.path())
    }

    /// The blob's size if the repository has it.
    pub async fn blob_exists(&self, digest: &Digest) -> Result<Option<u64>, RegistryError> {
        let call = Call::new(Method::HEAD, self.blob_path(digest), Access::Pull, format!("blob {digest}"));
        let resp = self.execute(&call).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = self.expect_success(resp, &call.what).await?;
        Ok(Some(resp.content_length().unwrap_or(0)))
    }

    /// Starts downloading a blob; read it with [`BlobStream::next_chunk`].
    pub async fn get_blob(&self, digest: &Digest) -> Result<BlobStream<'_>, RegistryError> {
        let call = Call::new(Method::GET, self.blob_path(digest), Access::Pull, format!("blob {digest}"));
        let resp = self.execute(&call).await?;
        let resp = self.expect_success(resp, &call.what).await?;
        Ok(BlobStream {
            client: self,
            resp,
            hasher: Sha256::new(),
            expected: digest.clone(),
            what: call.what,
            registry: self.repo.registry().to_string(),
            received: 0,
            skip: 0,
            resumes: 0,
        })
    }

    /// Downloads a small blob (a config) whole, refusing more than `limit` bytes.
    pub async fn get_blob_bytes(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>, RegistryError> {
        let mut stream = self.get_blob(digest).await?;
        if stream.content_length().is_some_and(|n| n > limit) {
            return Err(RegistryError::TooLarge { registry: stream.registry, what: stream.what, limit });
        }
        let mut out = Vec::new();
        while let Some(chunk) = stream.next_chunk().await? {
            out.extend_from_slice(&chunk);
            if out.len() as u64 > limit {
                return Err(RegistryError::TooLarge { registry: stream.registry, what: stream.what, limit });
            }
        }
        Ok(out)
    }

    /// Asks the registry to link a blob it holds in `from` (same registry) into this
    /// repository. `Ok(true)` if it did; `Ok(false)` if the blob must be uploaded.
    pub async fn mount_blob(&self, digest: &Digest, from: &str) -> Result<bool, RegistryError> {
        let target = format!("/v2/{}/blobs/uploads/?mount={digest}&from={from}", self.repo.path());
        let call =
            Call::new(Method::POST, target, Access::PushMountFrom(from.to_string()), format!("mounting {digest}"));
        let resp = self.execute(&call).await?;
        if resp.status() == StatusCode::CREATED {
            return Ok(true);
        }
        // 202: the registry opened an ordinary upload instead; close it, the caller uploads.
        if resp.status() == StatusCode::ACCEPTED
            && let Some(location) = header_str(resp.headers(), LOCATION.as_str())
        {
            let cancel = Call::new(Method::DELETE, self.absolute(location), Access::Push, "cancelling an upload");
            let _ = self.execute(&cancel).await;
        }
        Ok(false)
    }

    /// Uploads a blob and checks the registry stored it under `digest`: bytes in memory in
    /// one request, a file range streamed in one `PATCH`. Nothing is committed but under
    /// `digest`, and the registry checks the bytes it received against it before it stores
    /// them (the spec's `DIGEST_INVALID`): kiln does not hash them again on the way, and a
    /// damaged file fails at that final `PUT`, its upload cancelled. A failed upload starts
    /// over.
    pub async fn push_blob(&self, digest: &Digest, data: &Blob) -> Result<(), RegistryError> {
        let mut attempt = 1;
        loop {
            match self.push_blob_once(digest, data).await {
                Err(e) if attempt < UPLOAD_ATTEMPTS && crate::retry::restarts_upload(&e) => {
                    eprintln!("registry {}: upload of {digest} failed ({e}); starting it over", self.repo.registry());
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn push_blob_once(&self, digest: &Digest, data: &Blob) -> Result<(), RegistryError> {
        let what = format!("uploading {digest}");
        let start = Call::new(Method::POST, format!("/v2/{}/blobs/uploads/", self.repo.path()), Access::Push, &what);
        let resp = self.expect_success(self.execute(&start).await?, &what).await?;
        let mut location = self.next_location(&resp, &what)?;
        let result = self.finish_upload(digest, data, &what, &mut location).await;
        if result.is_err() {
            // Whatever was sent is thrown away rather than left for the registry's clean-up.
            let cancel = Call::new(Method::DELETE, location, Access::Push, "cancelling an upload");
            let _ = self.execute(&cancel).await;
        }
        result
    }

    /// Sends a blob's bytes to the upload at `location` (kept up to date with where the
    /// registry says it continues) and commits it under `digest`.
    async fn finish_upload(
        &self,
        digest: &Digest,
        data: &Blob,
        what: &str,
        location: &mut String,
    ) -> Result<(), RegistryError> {
        let separator = |l: &str| if l.contains('?') { '&' } else { '?' };
        let put = match data {
            // Small and in memory (configs): one PUT with the bytes.
            Blob::Memory(bytes) => {
                Call::new(Method::PUT, format!("{location}{}digest={digest}", separator(location)), Access::Push, what)
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .body(bytes.clone())
            }
            // From a file: one PATCH streaming the range (memory stays at a few chunks
            // whatever the size), then a PUT naming the digest, which the registry checks.
            Blob::File(range) => {
                if range.len > 0 {
                    let patch = Call::new(Method::PATCH, location.clone(), Access::Push, what)
                        .header(CONTENT_TYPE, "application/octet-stream")
                        .header(reqwest::header::CONTENT_RANGE, &format!("0-{}", range.len - 1))
                        .file_body(range);
                    let resp = self.expect_success(self.execute(&patch).await?, what).await?;
                    *location = self.next_location(&resp, what)?;
                }
                Call::new(Method::PUT, format!("{location}{}digest={digest}", separator(location)), Access::Push, what)
                    .header(CONTENT_TYPE, "application/octet-stream")
            }
        };
        let resp = match self.expect_success(self.execute(&put).await?, what).await {
            Err(RegistryError::Status { status: StatusCode::BAD_REQUEST, body, .. })
                if body.contains("DIGEST_INVALID")
                    && let Blob::File(range) = data =>
            {
                return Err(RegistryError::Local {
                    what: format!("{} ({} bytes at {})", range.path.display(), range.len, range.offset),
                    detail: format!(
                        "the registry found its content is not {digest} (DIGEST_INVALID): the image is damaged"
                    ),
                });
            }
            other => other?,
        };
        if let Some(stored) = header_str(resp.headers(), "docker-content-digest")
            && stored != digest.to_string()
        {
            return Err(RegistryError::DigestMismatch {
                registry: self.repo.registry().into(),
                what: what.into(),
                expected: digest.to_string(),
                actual: stored.into(),
            });
        }
        Ok(())
    }

    fn next_location(&self, resp: &reqwest::Response, what: &str) -> Result<String, RegistryError> {
        let location = header_str(resp.headers(), LOCATION.as_str()).ok_or_else(|| RegistryError::Status {
            registry: self.repo.registry().into(),
            what: what.into(),
            status: resp.status(),
            body: ": the answer has no Location header".into(),
        })?;
        Ok(self.absolute(location))
    }

    /// Upload locations may be relative to the registry or absolute.
    fn absolute(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            return location.to_string();
        }
        let base = reqwest::Url::parse(&format!("{}://{}/", self.scheme_str(), self.repo.api_host()));
        match base.and_then(|b| b.join(location)) {
            Ok(url) => url.to_string(),
            Err(_) => location.to_string(),
        }
    }
}
