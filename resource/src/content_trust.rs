//! `source.content_trust`: Notary v1 signatures of what `out` pushed, as the anchor
//! resource makes them. After the push, each tag becomes a TUF target — the manifest's
//! SHA-256 and length — in the GUN `registry/repository` on `server`, signed with the
//! repository's targets key; the server, which holds the snapshot and timestamp keys,
//! makes those roles. Unlike the anchor, a failure fails the put (the image stays pushed).
//! Also unlike it, `check` and `in` verify ([`Signatures`]): a version counts only when
//! the GUN's checked targets sign its digest.

use anyhow::{Context as _, anyhow, bail};
use kiln_registry::notary::TrustServer;
use kiln_registry::tuf::{SigningKey, Target, Trusted, new_repository, sign_targets};
use kiln_registry::{ClientConfig, ClientIdentity, Credentials, Repository};
use serde::Deserialize;

/// How long a targets role kiln signs stays valid: three years, as notary's own client.
const TARGETS_VALID_FOR: i64 = 3 * 365 * 86_400;

/// `source.content_trust`, under the anchor's names.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContentTrust {
    /// `https://notary.example.com:4443`.
    pub server: String,
    /// The targets key's id (`notary key list`), checked against the key.
    #[serde(default)]
    pub repository_key_id: Option<String>,
    /// The targets key file's text: an encrypted PKCS#8 PEM, as notary writes it.
    #[serde(default)]
    pub repository_key: Option<String>,
    #[serde(default)]
    pub repository_passphrase: Option<String>,
    /// A client certificate and its key (PEM) for a notary server that asks for one.
    #[serde(default)]
    pub tls_key: Option<String>,
    #[serde(default)]
    pub tls_cert: Option<String>,
    /// For the notary server's token service; else the source's credentials.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// The anchor's override of the token scopes: accepted, not used. kiln asks for
    /// `repository:<GUN>:pull` to read and `…:push,pull` to publish.
    #[serde(default)]
    pub scopes: Option<String>,
}

impl std::fmt::Debug for ContentTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContentTrust")
            .field("server", &self.server)
            .field("repository_key_id", &self.repository_key_id)
            .finish_non_exhaustive()
    }
}

/// The GUN Docker's client and the anchor use for `repo`: `registry/repository`, with
/// Docker Hub as `docker.io`.
pub fn gun(repo: &Repository) -> String {
    let registry = if repo.is_docker_hub() { "docker.io" } else { repo.registry() };
    format!("{registry}/{}", repo.path())
}

impl ContentTrust {
    /// Checks what can be checked before anything is pushed: the key decrypts and is the one
    /// `repository_key_id` names.
    pub fn signing_key(&self) -> anyhow::Result<SigningKey> {
        self.client_identity()?;
        let pem = self.repository_key.as_deref().filter(|k| !k.trim().is_empty()).ok_or_else(|| {
            anyhow!(
                "source.content_trust.repository_key is not set: give the repository's targets key (notary's key file)"
            )
        })?;
        let passphrase = self.repository_passphrase.as_deref().unwrap_or_default();
        let key = SigningKey::from_encrypted_pem(pem, passphrase)
            .map_err(|e| anyhow!("source.content_trust.repository_key: {e}"))?;
        if let Some(id) = self.repository_key_id.as_deref().filter(|id| !id.is_empty()) {
            let actual = key.public().id();
            if id != actual {
                bail!("source.content_trust.repository_key_id is {id}, but repository_key is the key {actual}");
            }
        }
        Ok(key)
    }

    /// `tls_cert` and `tls_key`, the client certificate for the server, if given.
    fn client_identity(&self) -> anyhow::Result<Option<ClientIdentity>> {
        let given = |v: &Option<String>| v.as_deref().filter(|v| !v.trim().is_empty()).map(str::to_string);
        match (given(&self.tls_cert), given(&self.tls_key)) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => ClientIdentity::new(&cert, &key)
                .map(Some)
                .map_err(|e| anyhow!("source.content_trust.tls_cert/tls_key: {e}")),
            (Some(_), None) => bail!("source.content_trust.tls_cert is set without tls_key: give both"),
            (None, Some(_)) => bail!("source.content_trust.tls_key is set without tls_cert: give both"),
        }
    }

    /// The notary server for `repo`'s GUN, reached with `content_trust.username/password`,
    /// else the source's credentials, and the source's TLS settings.
    fn server(&self, repo: &Repository, source: ClientConfig) -> anyhow::Result<TrustServer> {
        let credentials = match (&self.username, &self.password) {
            (Some(username), Some(password)) => {
                Some(Credentials { username: username.clone(), password: password.clone() })
            }
            _ => source.credentials.clone(),
        };
        let client_identity = self.client_identity()?;
        Ok(TrustServer::new(&self.server, &gun(repo), ClientConfig { credentials, client_identity, ..source })?)
    }

    /// The GUN's trust data, checked; a GUN the server does not know is an error.
    async fn trusted(&self, server: &TrustServer) -> anyhow::Result<Trusted> {
        let gun = server.gun();
        server.fetch(kiln_image::time::now(), false).await?.ok_or_else(|| {
            anyhow!(
                "the notary server {} has no trust data for {gun}: nothing there is signed yet \
                 (out signs the first push)",
                self.server
            )
        })
    }

    /// Signs `tags` → the manifest (`sha256_hex`, `length` bytes) in the GUN of `repo`. A
    /// GUN the server does not know yet is initialised ([`kiln_registry::tuf::new_repository`]).
    pub async fn sign(
        &self,
        key: &SigningKey,
        repo: &Repository,
        source: ClientConfig,
        tags: &[String],
        sha256_hex: &str,
        length: u64,
    ) -> anyhow::Result<()> {
        let server = self.server(repo, source)?;
        let target = Target::manifest(sha256_hex, length).context("the pushed manifest's digest is not SHA-256")?;
        let changes: Vec<(String, Target)> = tags.iter().map(|t| (t.clone(), target.clone())).collect();
        let now = kiln_image::time::now();
        let key_error = |e| anyhow!("source.content_trust.repository_key: {e}");
        let version = match server.fetch(now, true).await? {
            Some(trusted) => {
                let signed = sign_targets(&trusted, &changes, key, now + TARGETS_VALID_FOR).map_err(key_error)?;
                server.publish(&[&signed]).await?;
                signed.version()
            }
            None => {
                let snapshot = server.server_key("snapshot").await?;
                let timestamp = server.server_key("timestamp").await?;
                let (root, targets) =
                    new_repository(server.gun(), key, snapshot, timestamp, &changes, now, now + TARGETS_VALID_FOR)
                        .map_err(key_error)?;
                server.publish(&[&root, &targets]).await?;
                eprintln!(
                    "{} was not on {}: initialised it with a new root key (forgotten once signed: \
                     rotate keys with notary, not kiln) and repository_key as its targets key",
                    server.gun(),
                    self.server
                );
                targets.version()
            }
        };
        eprintln!("signed {} in {} on {} (targets version {version})", tags.join(", "), server.gun(), self.server);
        Ok(())
    }

    /// What `check` and `in` verify against: the GUN's signed targets, read once.
    pub async fn signatures(&self, repo: &Repository, source: ClientConfig) -> anyhow::Result<Signatures> {
        let server = self.server(repo, source)?;
        let trusted = self.trusted(&server).await.context("content_trust")?;
        Ok(Signatures { trusted, gun: server.gun().to_string(), server: self.server.clone() })
    }
}

/// A GUN's checked targets, as `check` and `in` use them.
pub struct Signatures {
    trusted: Trusted,
    gun: String,
    server: String,
}

impl Signatures {
    /// Whether `tag`'s signed target is the manifest `digest`.
    pub fn signs_tag(&self, tag: &str, digest: &str) -> bool {
        let signed = self.trusted.target(tag).and_then(|t| t.sha256_hex());
        digest.strip_prefix("sha256:").is_some_and(|hex| signed.as_deref() == Some(hex))
    }

    /// The tags signed at `digest`; an error naming what is signed when none is.
    pub fn tags_at(&self, tag: &str, digest: &str) -> anyhow::Result<Vec<String>> {
        let Some(hex) = digest.strip_prefix("sha256:") else {
            bail!("content_trust: {digest} is not a SHA-256 digest, which is all Notary v1 signs");
        };
        let tags = self.trusted.tags_of(hex);
        if !tags.is_empty() {
            return Ok(tags);
        }
        let at_tag = match self.trusted.target(tag).and_then(|t| t.sha256_hex()) {
            Some(hex) => format!("; {tag} is signed at sha256:{hex}"),
            None if tag.is_empty() => String::new(),
            None => format!("; {tag} is not signed at all"),
        };
        bail!("content_trust: no tag in {} on {} is signed at {digest}{at_tag}", self.gun, self.server)
    }
}
