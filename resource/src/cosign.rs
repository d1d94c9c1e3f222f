//! Image signatures the way `cosign` stores them, with a key pair: a simple-signing payload
//! naming the repository and the manifest digest, signed with ECDSA P-256 over SHA-256, kept
//! as a layer of an OCI manifest tagged `sha256-<hex>.sig` beside the image, the signature in
//! the layer's `dev.cosignproject.cosign/signature` annotation — or, with
//! `registry_referrers_mode: oci-1-1`, as an OCI 1.1 referrer of the image ([`Storage`]).
//! `out` signs what it pushes; `check` and `in` refuse what does not verify with
//! `source.cosign.public_key`, wherever it is stored.
//!
//! Keys are cosign's own files: `cosign.key` (an `ENCRYPTED SIGSTORE PRIVATE KEY`: scrypt
//! and NaCl secretbox around a PKCS#8 key) with its password, and `cosign.pub`. Nothing
//! here talks to a transparency log: these are key-pair signatures, verified offline, as
//! `cosign verify --key … --insecure-ignore-tlog` does.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use crypto_secretbox::aead::{Aead as _, KeyInit as _};
use kiln_image::blob::Blob;
use kiln_image::digest::{Digest, DigestError};
use kiln_registry::Client;
use kiln_registry::referrers::Referrer;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{DerSignature, Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _};
use serde::Deserialize;

const PAYLOAD_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
const CLAIM_TYPE: &str = "cosign container image signature";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// The artifact type of a signature stored as a referrer (cosign's, as its config's type).
const SIGNATURE_ARTIFACT: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";

/// `source.cosign`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CosignSource {
    /// cosign.key's PEM: `out` signs every manifest it pushes.
    #[serde(default)]
    pub private_key: Option<String>,
    /// The private key's password (`COSIGN_PASSWORD` when it was made).
    #[serde(default)]
    pub password: Option<String>,
    /// cosign.pub's PEM: `check` and `in` take only images signed with its private half.
    #[serde(default)]
    pub public_key: Option<String>,
    /// Where `out` stores signatures, as cosign's flag of that name: `legacy` (the default,
    /// the `.sig` tag) or `oci-1-1` (a referrer). `check` and `in` look in both.
    #[serde(default)]
    pub registry_referrers_mode: Option<String>,
}

/// What is wrong with a key or a signature. Never holds key material or the password.
#[derive(Debug, thiserror::Error)]
pub enum CosignError {
    #[error("source.cosign.private_key: {0}")]
    PrivateKey(String),
    #[error("source.cosign.public_key: {0}")]
    PublicKey(String),
    #[error("source.cosign.registry_referrers_mode: {0:?} is neither legacy nor oci-1-1")]
    Mode(String),
    #[error("{image} has no cosign signature ({tag} does not exist, and no OCI 1.1 referrer signs it)")]
    NotSigned { image: String, tag: String },
    #[error("no signature of {image} verifies with source.cosign.public_key: {reasons}")]
    NoValidSignature { image: String, reasons: String },
    #[error("signing {image}: {source:#}")]
    Sign { image: String, source: anyhow::Error },
}

/// The tag cosign keeps the signatures of `digest` under.
pub fn signature_tag(digest: &str) -> String {
    digest.replacen(':', "-", 1) + ".sig"
}

/// Signs with cosign's private key.
pub struct CosignSigner {
    key: SigningKey,
    storage: Storage,
}

/// The JSON inside an encrypted cosign key.
#[derive(Deserialize)]
struct EncryptedKey {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

#[derive(Deserialize)]
struct Kdf {
    name: String,
    params: KdfParams,
    salt: String,
}

#[derive(Deserialize)]
#[allow(non_snake_case)]
struct KdfParams {
    N: u64,
    r: u32,
    p: u32,
}

#[derive(Deserialize)]
struct Cipher {
    name: String,
    nonce: String,
}

/// The label and the base64-decoded body of a PEM block.
fn pem(text: &str) -> Option<(String, Vec<u8>)> {
    let begin = text.find("-----BEGIN ")?;
    let rest = &text[begin + 11..];
    let label = rest[..rest.find("-----")?].to_string();
    let body_start = rest.find("-----")? + 5;
    let end = rest.find(&format!("-----END {label}-----"))?;
    let body: String = rest[body_start..end].chars().filter(|c| !c.is_whitespace()).collect();
    Some((label, STANDARD.decode(body).ok()?))
}

impl CosignSigner {
    /// Reads cosign.key (encrypted, with `password`), or an unencrypted PKCS#8 EC key.
    pub fn from_pem(text: &str, password: &str) -> Result<Self, CosignError> {
        let fail = |why: &str| CosignError::PrivateKey(why.to_string());
        let (label, der) = pem(text).ok_or_else(|| fail("not a PEM key (cosign.key's content is expected)"))?;
        let der = match label.as_str() {
            "ENCRYPTED SIGSTORE PRIVATE KEY" | "ENCRYPTED COSIGN PRIVATE KEY" => decrypt(&der, password)?,
            "PRIVATE KEY" => der,
            other => return Err(CosignError::PrivateKey(format!("a {other:?} PEM block is not a cosign private key"))),
        };
        let key = SigningKey::from_pkcs8_der(&der).map_err(|_| fail("not an ECDSA P-256 key (cosign's keys are)"))?;
        Ok(Self { key, storage: Storage::Tag })
    }

    /// The same key, storing signatures in `storage`.
    pub fn storing_in(self, storage: Storage) -> Self {
        Self { storage, ..self }
    }

    pub fn public_key(&self) -> CosignVerifier {
        CosignVerifier { key: *self.key.verifying_key() }
    }
}

fn decrypt(der: &[u8], password: &str) -> Result<Vec<u8>, CosignError> {
    let fail = |why: &str| CosignError::PrivateKey(why.to_string());
    let sealed: EncryptedKey = serde_json::from_slice(der).map_err(|_| fail("unreadable encrypted key"))?;
    if sealed.kdf.name != "scrypt" || sealed.cipher.name != "nacl/secretbox" {
        return Err(fail("encrypted with something other than scrypt and nacl/secretbox"));
    }
    let n = sealed.kdf.params.N;
    if !n.is_power_of_two() || n < 2 {
        return Err(fail("scrypt's N is not a power of two"));
    }
    let params = scrypt::Params::new(n.trailing_zeros() as u8, sealed.kdf.params.r, sealed.kdf.params.p, 32)
        .map_err(|_| fail("scrypt parameters out of range"))?;
    let salt = STANDARD.decode(&sealed.kdf.salt).map_err(|_| fail("salt is not base64"))?;
    let mut key = [0u8; 32];
    scrypt::scrypt(password.as_bytes(), &salt, &params, &mut key).map_err(|_| fail("scrypt failed"))?;
    let nonce = STANDARD.decode(&sealed.cipher.nonce).map_err(|_| fail("nonce is not base64"))?;
    let ciphertext = STANDARD.decode(&sealed.ciphertext).map_err(|_| fail("ciphertext is not base64"))?;
    let nonce: [u8; 24] = nonce.try_into().map_err(|_| fail("nonce is not 24 bytes"))?;
    let cipher = crypto_secretbox::XSalsa20Poly1305::new(&key.into());
    cipher
        .decrypt(&nonce.into(), ciphertext.as_slice())
        .map_err(|_| CosignError::PrivateKey("cannot decrypt it: is source.cosign.password right?".into()))
}

/// Verifies with cosign's public key.
#[derive(Clone)]
pub struct CosignVerifier {
    key: VerifyingKey,
}

impl CosignVerifier {
    /// Reads cosign.pub (a PKIX `PUBLIC KEY`).
    pub fn from_pem(text: &str) -> Result<Self, CosignError> {
        let key = VerifyingKey::from_public_key_pem(text.trim()).map_err(|_| {
            CosignError::PublicKey("not an ECDSA P-256 public key in PEM (cosign.pub's content)".into())
        })?;
        Ok(Self { key })
    }
}

/// The simple-signing payload for `digest` in `repository`.
fn payload(repository: &str, digest: &str) -> Vec<u8> {
    serde_json::json!({
        "critical": {
            "identity": { "docker-reference": repository },
            "image": { "docker-manifest-digest": digest },
            "type": CLAIM_TYPE,
        },
        "optional": null,
    })
    .to_string()
    .into_bytes()
}

/// Where `out` keeps a signature, as cosign's `--registry-referrers-mode` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Storage {
    /// `legacy`: layers of one manifest under the tag `sha256-<hex>.sig`.
    #[default]
    Tag,
    /// `oci-1-1`: a manifest of its own whose `subject` is the image, found through the
    /// referrers API or its fallback tag ([`kiln_registry::referrers`]).
    Referrer,
}

impl Storage {
    /// `source.cosign.registry_referrers_mode`.
    pub fn parse(mode: Option<&str>) -> Result<Self, CosignError> {
        match mode.unwrap_or_default() {
            "" | "legacy" => Ok(Storage::Tag),
            "oci-1-1" => Ok(Storage::Referrer),
            other => Err(CosignError::Mode(other.to_string())),
        }
    }
}

/// A signature of `payload` as a layer of a signature manifest.
fn signature_layer(payload: &[u8], signature: &str) -> serde_json::Value {
    serde_json::json!({
        "mediaType": PAYLOAD_TYPE,
        "size": payload.len(),
        "digest": Digest::of(payload),
        "annotations": { SIGNATURE_ANNOTATION: signature },
    })
}

/// Pushes the config of a signature manifest holding `layers`, as cosign writes it, and
/// returns its descriptor with `media_type`.
async fn push_config(
    client: &Client,
    layers: &[serde_json::Value],
    media_type: &str,
) -> anyhow::Result<serde_json::Value> {
    let diff_ids: Vec<_> = layers.iter().map(|l| l["digest"].clone()).collect();
    let config = serde_json::json!({
        "architecture": "", "created": "0001-01-01T00:00:00Z",
        "history": [{ "created": "0001-01-01T00:00:00Z" }], "os": "",
        "rootfs": { "type": "layers", "diff_ids": diff_ids }, "config": {},
    })
    .to_string()
    .into_bytes();
    let digest = Digest::of(&config);
    client.push_blob(&digest, &Blob::Memory(config.clone().into())).await?;
    Ok(serde_json::json!({ "mediaType": media_type, "size": config.len(), "digest": digest }))
}

/// Signs `digest` in the client's repository and stores the signature as cosign does in
/// `storage`, beside any signatures already there.
pub async fn sign(client: &Client, signer: &CosignSigner, digest: &str) -> Result<(), CosignError> {
    let image = format!("{}@{digest}", client.repository());
    let fail = |source: anyhow::Error| CosignError::Sign { image: image.clone(), source };
    let payload = payload(&client.repository().to_string(), digest);
    let signature: DerSignature = signer.key.sign(&payload);
    let signature = STANDARD.encode(signature.as_bytes());
    let verifier = signer.public_key();
    match signer.storage {
        Storage::Tag => sign_in_tag(client, &verifier, digest, &payload, &signature).await.map_err(fail),
        Storage::Referrer => sign_as_referrer(client, &verifier, digest, &payload, &signature).await.map_err(fail),
    }
}

async fn sign_in_tag(
    client: &Client,
    verifier: &CosignVerifier,
    digest: &str,
    payload: &[u8],
    signature: &str,
) -> anyhow::Result<()> {
    let tag = signature_tag(digest);
    let payload_digest = Digest::of(payload);
    let mut layers = Vec::new();
    if let Some((_, bytes)) = client.get_manifest(&tag).await? {
        let existing: serde_json::Value = serde_json::from_slice(&bytes)?;
        layers = existing["layers"].as_array().cloned().unwrap_or_default();
        for layer in &layers {
            if layer["digest"] == payload_digest.to_string().as_str()
                && verify_layer(client, verifier, digest, layer).await.is_ok()
            {
                return Ok(()); // already signed with this key
            }
        }
    }
    client.push_blob(&payload_digest, &Blob::Memory(payload.to_vec().into())).await?;
    layers.push(signature_layer(payload, signature));
    let config = push_config(client, &layers, OCI_CONFIG).await?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config,
        "layers": layers,
    });
    client.put_manifest(&tag, OCI_MANIFEST, manifest.to_string().as_bytes()).await?;
    Ok(())
}

async fn sign_as_referrer(
    client: &Client,
    verifier: &CosignVerifier,
    digest: &str,
    payload: &[u8],
    signature: &str,
) -> anyhow::Result<()> {
    if verify_referrers(client, verifier, digest, &mut Vec::new()).await {
        return Ok(()); // already signed with this key
    }
    let subject = client
        .head_manifest(digest)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the registry does not have the manifest to sign"))?;
    client.push_blob(&Digest::of(payload), &Blob::Memory(payload.to_vec().into())).await?;
    let layers = vec![signature_layer(payload, signature)];
    let config = push_config(client, &layers, SIGNATURE_ARTIFACT).await?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config,
        "layers": layers,
        "subject": { "mediaType": subject.media_type, "size": subject.size, "digest": subject.digest },
    })
    .to_string()
    .into_bytes();
    let pushed = client.put_manifest(&Digest::of(&manifest).to_string(), OCI_MANIFEST, &manifest).await?;
    let referrer = Referrer {
        media_type: OCI_MANIFEST.into(),
        size: pushed.size,
        digest: pushed.digest.to_string(),
        artifact_type: Some(SIGNATURE_ARTIFACT.into()),
    };
    client.add_referrer(digest, referrer).await?;
    Ok(())
}

/// Whether one signature layer is a valid signature of `digest` by `verifier`'s key.
async fn verify_layer(
    client: &Client,
    verifier: &CosignVerifier,
    digest: &str,
    layer: &serde_json::Value,
) -> Result<(), String> {
    if layer["mediaType"] != PAYLOAD_TYPE {
        return Err("not a simple-signing layer".into());
    }
    let signature = layer["annotations"][SIGNATURE_ANNOTATION].as_str().ok_or("no signature annotation")?;
    let signature = STANDARD.decode(signature).map_err(|_| "the signature is not base64")?;
    let signature = Signature::from_der(&signature).map_err(|_| "the signature is not an ECDSA signature")?;
    let payload_digest: Digest =
        layer["digest"].as_str().ok_or("no payload digest")?.parse().map_err(|e: DigestError| e.to_string())?;
    let payload = client.get_blob_bytes(&payload_digest, 1 << 20).await.map_err(|e| e.to_string())?;
    verifier.key.verify(&payload, &signature).map_err(|_| "signed with another key, or altered")?;
    let claims: serde_json::Value = serde_json::from_slice(&payload).map_err(|_| "the payload is not JSON")?;
    if claims["critical"]["type"] != CLAIM_TYPE {
        return Err("the payload is not a cosign image signature".into());
    }
    if claims["critical"]["image"]["docker-manifest-digest"] != digest {
        return Err("the payload signs another image".into());
    }
    Ok(())
}

/// Whether some layer of `manifest` verifies, noting why each does not in `reasons`.
async fn verify_manifest(
    client: &Client,
    verifier: &CosignVerifier,
    digest: &str,
    manifest: &serde_json::Value,
    reasons: &mut Vec<String>,
) -> bool {
    for layer in manifest["layers"].as_array().into_iter().flatten() {
        match verify_layer(client, verifier, digest, layer).await {
            Ok(()) => return true,
            Err(why) => reasons.push(why),
        }
    }
    false
}

/// The signature referrers of `digest` looked at, at most this many.
const MAX_SIGNATURE_REFERRERS: usize = 16;

/// Whether a signature referrer of `digest` verifies, noting why each does not.
async fn verify_referrers(client: &Client, verifier: &CosignVerifier, digest: &str, reasons: &mut Vec<String>) -> bool {
    let referrers = match client.referrers(digest).await {
        Ok(found) => found,
        Err(e) => {
            reasons.push(format!("its referrers: {e}"));
            return false;
        }
    };
    let signatures = referrers.iter().filter(|r| r.artifact_type.as_deref() == Some(SIGNATURE_ARTIFACT));
    for referrer in signatures.take(MAX_SIGNATURE_REFERRERS) {
        let manifest = match client.get_manifest(&referrer.digest).await {
            Ok(Some((_, bytes))) => serde_json::from_slice::<serde_json::Value>(&bytes).unwrap_or_default(),
            Ok(None) => continue, // listed, since deleted
            Err(e) => {
                reasons.push(e.to_string());
                continue;
            }
        };
        // A referrer is listed by whoever pushed it: it must name this image itself.
        if manifest["subject"]["digest"] != digest {
            reasons.push(format!("the referrer {} names another subject", referrer.digest));
            continue;
        }
        if verify_manifest(client, verifier, digest, &manifest, reasons).await {
            return true;
        }
    }
    false
}

/// Succeeds when at least one signature of `digest` verifies with `verifier`, in the
/// `.sig` tag or as an OCI 1.1 referrer.
pub async fn verify(client: &Client, verifier: &CosignVerifier, digest: &str) -> Result<(), CosignError> {
    let image = format!("{}@{digest}", client.repository());
    let tag = signature_tag(digest);
    let mut reasons = Vec::new();
    let in_tag = match client.get_manifest(&tag).await {
        Ok(found) => found,
        Err(e) => {
            reasons.push(e.to_string());
            None
        }
    };
    if let Some((_, bytes)) = &in_tag {
        match serde_json::from_slice::<serde_json::Value>(bytes) {
            Ok(manifest) => {
                if verify_manifest(client, verifier, digest, &manifest, &mut reasons).await {
                    return Ok(());
                }
            }
            Err(_) => reasons.push(format!("{tag} is not JSON")),
        }
    }
    if verify_referrers(client, verifier, digest, &mut reasons).await {
        return Ok(());
    }
    if reasons.is_empty() {
        return Err(CosignError::NotSigned { image, tag });
    }
    Err(CosignError::NoValidSignature { image, reasons: reasons.join("; ") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_tags_are_cosigns() {
        assert_eq!(signature_tag("sha256:abc"), "sha256-abc.sig");
    }

    #[test]
    fn keys_that_are_not_keys_are_named() {
        let err = CosignSigner::from_pem("hello", "pw").err().unwrap().to_string();
        assert!(err.starts_with("source.cosign.private_key: not a PEM key"), "{err}");
        let err = CosignVerifier::from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----").err().unwrap();
        assert!(err.to_string().starts_with("source.cosign.public_key:"), "{err}");
    }
}
