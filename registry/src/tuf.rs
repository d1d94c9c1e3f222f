//! TUF metadata as a Notary v1 server keeps it for a GUN (`registry/repository`): the four
//! top-level roles (root, targets, snapshot, timestamp), their keys and signatures, and the
//! chain a client checks — root signs itself and names every role's keys; timestamp names
//! snapshot's hash; snapshot names targets' (and root's); each is unexpired, signed by its
//! role's threshold of keys, and not older than what was seen. Signatures are over the
//! canonical JSON of `signed` (keys sorted, no whitespace). Keys: ECDSA P-256 (`ecdsa`, and
//! `ecdsa-x509` for a certificate, which root keys are) and `ed25519`.
//!
//! Nothing here talks to a server ([`crate::notary`] does): it reads, checks and signs.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Why metadata cannot be trusted, or a key cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TufError {
    #[error("{role}.json is not TUF metadata: {detail}")]
    Malformed { role: String, detail: String },
    #[error("{role}.json is not signed by {threshold} of its role's keys (valid signatures: {valid})")]
    Signatures { role: String, threshold: u32, valid: u32 },
    #[error("{role}.json expired at {expires}")]
    Expired { role: String, expires: String },
    #[error("{role}.json does not match the hash or length {by}.json gives it")]
    Mismatch { role: String, by: String },
    #[error("root.json has no usable key for role {0}")]
    NoRole(String),
    #[error("the root certificate names {cn:?}, not the GUN {gun:?}")]
    WrongGun { cn: String, gun: String },
    #[error("{0}")]
    Key(String),
}

fn malformed(role: &str, detail: impl std::fmt::Display) -> TufError {
    TufError::Malformed { role: role.into(), detail: detail.to_string() }
}

/// The canonical JSON of `value`: object keys sorted, no whitespace.
pub fn canonical(value: &serde_json::Value) -> Vec<u8> {
    // serde_json's maps are sorted (the preserve_order feature is off) and compact.
    serde_json::to_vec(value).expect("a JSON value always serializes")
}

/// One signature on a role's `signed` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    pub keyid: String,
    pub method: String,
    /// Base64.
    pub sig: String,
}

/// A public key as root.json lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    pub keytype: String,
    pub keyval: KeyVal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyVal {
    pub private: Option<String>,
    /// Base64: a DER SubjectPublicKeyInfo (`ecdsa`), a PEM certificate (`ecdsa-x509`), or
    /// 32 raw bytes (`ed25519`).
    pub public: String,
}

impl Key {
    /// Its id: the SHA-256 of its canonical JSON, in hex.
    pub fn id(&self) -> String {
        hex::encode(Sha256::digest(canonical(&serde_json::to_value(self).expect("a key serializes"))))
    }

    /// Whether `sig` is this key's signature of `message`.
    fn verifies(&self, message: &[u8], sig: &Signature) -> bool {
        let Ok(sig_bytes) = B64.decode(&sig.sig) else { return false };
        match (self.keytype.as_str(), sig.method.as_str()) {
            ("ecdsa" | "ecdsa-x509", "ecdsa") => {
                use p256::ecdsa::signature::Verifier as _;
                let Some(key) = self.p256() else { return false };
                let Ok(sig) = p256::ecdsa::Signature::from_slice(&sig_bytes) else { return false };
                key.verify(message, &sig).is_ok()
            }
            ("ed25519", "eddsa") => {
                let Ok(public) = B64.decode(&self.keyval.public) else { return false };
                let Ok(public) = <[u8; 32]>::try_from(public.as_slice()) else { return false };
                let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&public) else { return false };
                let Ok(sig) = ed25519_dalek::Signature::from_slice(&sig_bytes) else { return false };
                key.verify_strict(message, &sig).is_ok()
            }
            _ => false,
        }
    }

    /// The P-256 public key of an `ecdsa` or `ecdsa-x509` key.
    fn p256(&self) -> Option<p256::ecdsa::VerifyingKey> {
        use p256::pkcs8::DecodePublicKey as _;
        match self.keytype.as_str() {
            "ecdsa" => p256::ecdsa::VerifyingKey::from_public_key_der(&B64.decode(&self.keyval.public).ok()?).ok(),
            "ecdsa-x509" => {
                self.with_certificate(|cert| p256::ecdsa::VerifyingKey::from_public_key_der(cert.public_key().raw).ok())
            }
            _ => None,
        }
    }

    /// The common name of an `ecdsa-x509` key's certificate.
    fn certificate_cn(&self) -> Option<String> {
        self.with_certificate(|cert| Some(cert.subject().iter_common_name().next()?.as_str().ok()?.to_string()))
    }

    /// `read` applied to the certificate of an `ecdsa-x509` key (base64 of a PEM).
    fn with_certificate<T>(
        &self,
        read: impl FnOnce(&x509_parser::certificate::X509Certificate<'_>) -> Option<T>,
    ) -> Option<T> {
        let public = B64.decode(&self.keyval.public).ok()?;
        let (_, pem) = x509_parser::pem::parse_x509_pem(&public).ok()?;
        read(&pem.parse_x509().ok()?)
    }
}

/// A role's keys and how many of them must sign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleKeys {
    pub keyids: Vec<String>,
    pub threshold: u32,
}

/// A file's hashes (base64) and length, as snapshot and timestamp give them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    pub hashes: BTreeMap<String, String>,
    pub length: u64,
}

impl FileMeta {
    /// The hashes and length of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        let sha256 = B64.encode(Sha256::digest(bytes));
        let sha512 = B64.encode(sha2::Sha512::digest(bytes));
        FileMeta {
            hashes: BTreeMap::from([("sha256".into(), sha256), ("sha512".into(), sha512)]),
            length: bytes.len() as u64,
        }
    }

    /// Whether `bytes` are what this names: the length, and every hash it gives that kiln
    /// knows (SHA-256 at least).
    pub fn matches(&self, bytes: &[u8]) -> bool {
        let ours = FileMeta::of(bytes);
        self.length == ours.length
            && self.hashes.contains_key("sha256")
            && self.hashes.iter().all(|(alg, h)| ours.hashes.get(alg).is_none_or(|o| o == h))
    }
}

/// One metadata file: what it says, and the signatures over it.
#[derive(Debug, Clone)]
pub struct Signed {
    pub role: String,
    /// The `signed` object as it came.
    pub signed: serde_json::Value,
    pub signatures: Vec<Signature>,
}

impl Signed {
    /// Reads `role`.json; its `_type` must be the role's.
    pub fn parse(role: &str, bytes: &[u8]) -> Result<Self, TufError> {
        #[derive(Deserialize)]
        struct File {
            signed: serde_json::Value,
            signatures: Vec<Signature>,
        }
        let file: File = serde_json::from_slice(bytes).map_err(|e| malformed(role, e))?;
        let kind = file.signed["_type"].as_str().unwrap_or_default();
        if !kind.eq_ignore_ascii_case(role) {
            return Err(malformed(role, format!("its _type is {kind:?}")));
        }
        Ok(Signed { role: role.into(), signed: file.signed, signatures: file.signatures })
    }

    pub fn version(&self) -> u64 {
        self.signed["version"].as_u64().unwrap_or(0)
    }

    /// Checks it is signed by `threshold` distinct keys of `keys` and unexpired at `now`.
    fn check(&self, keys: &BTreeMap<String, Key>, role: &RoleKeys, now: i64) -> Result<(), TufError> {
        let message = canonical(&self.signed);
        let mut valid = Vec::new();
        for sig in &self.signatures {
            if valid.contains(&sig.keyid) || !role.keyids.contains(&sig.keyid) {
                continue;
            }
            if keys.get(&sig.keyid).is_some_and(|k| k.verifies(&message, sig)) {
                valid.push(sig.keyid.clone());
            }
        }
        let valid = valid.len() as u32;
        if role.threshold == 0 || valid < role.threshold {
            return Err(TufError::Signatures { role: self.role.clone(), threshold: role.threshold.max(1), valid });
        }
        let expires = self.signed["expires"].as_str().unwrap_or_default();
        let Some((at, _)) = kiln_image::time::parse(expires) else {
            return Err(malformed(&self.role, format!("expires is {expires:?}")));
        };
        if at <= now {
            return Err(TufError::Expired { role: self.role.clone(), expires: expires.into() });
        }
        Ok(())
    }

    /// The file as Notary writes it: `signed` (canonical) first, then `signatures`. The
    /// server hashes metadata in this form when it makes the snapshot, and clients fetch
    /// targets by that hash, so another key order would leave the upload unfindable.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = b"{\"signed\":".to_vec();
        out.extend(canonical(&self.signed));
        out.extend(b",\"signatures\":");
        out.extend(serde_json::to_vec(&self.signatures).expect("signatures serialize"));
        out.push(b'}');
        out
    }
}

/// What a root says: every role's keys.
#[derive(Debug, Clone, Deserialize)]
pub struct Root {
    pub keys: BTreeMap<String, Key>,
    pub roles: BTreeMap<String, RoleKeys>,
}

impl Root {
    fn role(&self, name: &str) -> Result<&RoleKeys, TufError> {
        self.roles.get(name).filter(|r| !r.keyids.is_empty()).ok_or_else(|| TufError::NoRole(name.into()))
    }
}

/// A target: a tag's manifest, by its hashes and length.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub hashes: BTreeMap<String, String>,
    pub length: u64,
}

impl Target {
    /// The target for a manifest of `length` bytes with SHA-256 `hex`.
    pub fn manifest(sha256_hex: &str, length: u64) -> Option<Self> {
        let raw = hex::decode(sha256_hex).ok().filter(|r| r.len() == 32)?;
        Some(Target { hashes: BTreeMap::from([("sha256".into(), B64.encode(raw))]), length })
    }

    /// Its SHA-256, in hex.
    pub fn sha256_hex(&self) -> Option<String> {
        let raw = B64.decode(self.hashes.get("sha256")?).ok().filter(|r| r.len() == 32)?;
        Some(hex::encode(raw))
    }
}

/// A GUN's metadata, checked from root to targets.
#[derive(Debug, Clone)]
pub struct Trusted {
    pub root: Signed,
    pub root_keys: Root,
    pub targets: Signed,
    pub snapshot: Signed,
    pub timestamp: Signed,
}

/// The four roles' files of one GUN, as a server sent them.
#[derive(Debug, Clone, Copy)]
pub struct RoleFiles<'a> {
    pub root: &'a [u8],
    pub targets: &'a [u8],
    pub snapshot: &'a [u8],
    pub timestamp: &'a [u8],
}

impl Trusted {
    /// Checks the chain at `now` for `gun`: root signs itself with keys whose certificates
    /// name the GUN; timestamp, snapshot and targets are each signed by their role's keys,
    /// unexpired, and snapshot and targets match what timestamp and snapshot say of them.
    pub fn check(gun: &str, files: RoleFiles<'_>, now: i64) -> Result<Self, TufError> {
        let root = Signed::parse("root", files.root)?;
        let root_keys: Root = serde_json::from_value(root.signed.clone()).map_err(|e| malformed("root", e))?;
        let root_role = root_keys.role("root")?;
        root.check(&root_keys.keys, root_role, now)?;
        for id in &root_role.keyids {
            if let Some(key) = root_keys.keys.get(id).filter(|k| k.keytype.ends_with("-x509")) {
                let cn = key.certificate_cn().unwrap_or_default();
                if cn != gun {
                    return Err(TufError::WrongGun { cn, gun: gun.into() });
                }
            }
        }
        let timestamp_file = Signed::parse("timestamp", files.timestamp)?;
        timestamp_file.check(&root_keys.keys, root_keys.role("timestamp")?, now)?;
        let snapshot_meta = meta_of(&timestamp_file, "snapshot")?;
        if !snapshot_meta.matches(files.snapshot) {
            return Err(TufError::Mismatch { role: "snapshot".into(), by: "timestamp".into() });
        }
        let snapshot_file = Signed::parse("snapshot", files.snapshot)?;
        snapshot_file.check(&root_keys.keys, root_keys.role("snapshot")?, now)?;
        if !meta_of(&snapshot_file, "targets")?.matches(files.targets) {
            return Err(TufError::Mismatch { role: "targets".into(), by: "snapshot".into() });
        }
        if let Ok(root_meta) = meta_of(&snapshot_file, "root")
            && !root_meta.matches(files.root)
        {
            return Err(TufError::Mismatch { role: "root".into(), by: "snapshot".into() });
        }
        let targets_file = Signed::parse("targets", files.targets)?;
        targets_file.check(&root_keys.keys, root_keys.role("targets")?, now)?;
        Ok(Trusted { root, root_keys, targets: targets_file, snapshot: snapshot_file, timestamp: timestamp_file })
    }

    /// The target a tag names, if it is signed.
    pub fn target(&self, tag: &str) -> Option<Target> {
        serde_json::from_value(self.targets.signed["targets"][tag].clone()).ok()
    }

    /// The tags whose signed target is the manifest with SHA-256 `hex`, in name order.
    pub fn tags_of(&self, sha256_hex: &str) -> Vec<String> {
        let Some(targets) = self.targets.signed["targets"].as_object() else { return Vec::new() };
        let mut tags: Vec<String> = targets
            .iter()
            .filter(|(_, t)| {
                serde_json::from_value::<Target>((*t).clone()).ok().and_then(|t| t.sha256_hex()).as_deref()
                    == Some(sha256_hex)
            })
            .map(|(tag, _)| tag.clone())
            .collect();
        tags.sort();
        tags
    }

    /// The ids of the keys that may sign targets.
    pub fn targets_key_ids(&self) -> Vec<String> {
        self.root_keys.roles.get("targets").map(|r| r.keyids.clone()).unwrap_or_default()
    }
}

fn meta_of(file: &Signed, role: &str) -> Result<FileMeta, TufError> {
    serde_json::from_value(file.signed["meta"][role].clone())
        .map_err(|_| malformed(&file.role, format!("it gives no hashes for {role}.json")))
}

/// A private key that signs a role's metadata.
pub enum SigningKey {
    P256(p256::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(…)")
    }
}

impl SigningKey {
    /// Notary's key file: an encrypted PKCS#8 PEM (`ENCRYPTED PRIVATE KEY`, with `role:` and
    /// `gun:` headers before the base64), decrypted with `passphrase`.
    pub fn from_encrypted_pem(pem: &str, passphrase: &str) -> Result<Self, TufError> {
        let der = pem_body(pem, "ENCRYPTED PRIVATE KEY")
            .ok_or_else(|| TufError::Key("not an encrypted PEM private key (ENCRYPTED PRIVATE KEY)".into()))?;
        let info = pkcs8::EncryptedPrivateKeyInfo::try_from(der.as_slice())
            .map_err(|e| TufError::Key(format!("not an encrypted PKCS#8 key: {e}")))?;
        let doc =
            info.decrypt(passphrase).map_err(|_| TufError::Key("the passphrase does not decrypt the key".into()))?;
        use pkcs8::DecodePrivateKey as _;
        if let Ok(key) = ed25519_dalek::SigningKey::from_pkcs8_der(doc.as_bytes()) {
            return Ok(SigningKey::Ed25519(key));
        }
        // Notary writes its ECDSA keys as PKCS#8 version 1 without the public key a version
        // 1 structure must carry, which strict readers refuse: the SEC1 key inside is read.
        if let Some(key) =
            private_key_octets(doc.as_bytes()).and_then(|sec1| p256::SecretKey::from_sec1_der(&sec1).ok())
        {
            return Ok(SigningKey::P256(key.into()));
        }
        Err(TufError::Key("the key is neither ECDSA P-256 nor ed25519".into()))
    }

    /// Its public key, as root.json would list it.
    pub fn public(&self) -> Key {
        match self {
            SigningKey::P256(k) => {
                use p256::pkcs8::EncodePublicKey as _;
                let der = k.verifying_key().to_public_key_der().expect("a P-256 key encodes");
                Key { keytype: "ecdsa".into(), keyval: KeyVal { private: None, public: B64.encode(der.as_bytes()) } }
            }
            SigningKey::Ed25519(k) => Key {
                keytype: "ed25519".into(),
                keyval: KeyVal { private: None, public: B64.encode(k.verifying_key().to_bytes()) },
            },
        }
    }

    /// Its signature of `message` under `keyid`, for a key root.json lists in another form
    /// than [`SigningKey::public`] (a root key, as its certificate).
    fn sign_as(&self, keyid: String, message: &[u8]) -> Signature {
        Signature { keyid, ..self.sign(message) }
    }

    /// Its signature of `message`.
    pub fn sign(&self, message: &[u8]) -> Signature {
        let keyid = self.public().id();
        match self {
            SigningKey::P256(k) => {
                use p256::ecdsa::signature::Signer as _;
                let sig: p256::ecdsa::Signature = k.sign(message);
                Signature { keyid, method: "ecdsa".into(), sig: B64.encode(sig.to_bytes()) }
            }
            SigningKey::Ed25519(k) => {
                use ed25519_dalek::Signer as _;
                Signature { keyid, method: "eddsa".into(), sig: B64.encode(k.sign(message).to_bytes()) }
            }
        }
    }
}

/// How long a new GUN's root (and its certificate) is valid: ten years, as notary's own.
const ROOT_VALID_FOR: i64 = 10 * 365 * 86_400;

/// A GUN's first metadata, as `notary init` makes it: a root key kiln generates (P-256,
/// in a self-signed certificate whose CN is the GUN, valid ten years) signs a root that
/// names it, `targets_key`, and the server's `snapshot` and `timestamp` keys; `targets_key`
/// signs the first targets, holding `tags` and expiring at `targets_expire`. The root key
/// is returned to no one: it exists only while this runs, so the GUN's keys cannot be
/// rotated later without `notary init`.
pub fn new_repository(
    gun: &str,
    targets_key: &SigningKey,
    snapshot: Key,
    timestamp: Key,
    tags: &[(String, Target)],
    now: i64,
    targets_expire: i64,
) -> Result<(Signed, Signed), TufError> {
    let (root_key, root_signer) = root_certificate(gun, now)?;
    let root_id = root_key.id();
    let targets_public = targets_key.public();
    let role = |key: &Key| serde_json::json!({ "keyids": [key.id()], "threshold": 1 });
    let roles = serde_json::json!({
        "root": role(&root_key),
        "snapshot": role(&snapshot),
        "targets": role(&targets_public),
        "timestamp": role(&timestamp),
    });
    let keys: BTreeMap<String, Key> =
        [root_key, snapshot, targets_public, timestamp].into_iter().map(|k| (k.id(), k)).collect();
    let root = serde_json::json!({
        "_type": "Root",
        "consistent_snapshot": false,
        "expires": kiln_image::time::format(now + ROOT_VALID_FOR),
        "keys": keys,
        "roles": roles,
        "version": 1,
    });
    let root_signature = root_signer.sign_as(root_id, &canonical(&root));
    let mut targets = serde_json::json!({
        "_type": "Targets",
        "delegations": { "keys": {}, "roles": [] },
        "expires": kiln_image::time::format(targets_expire),
        "targets": {},
        "version": 1,
    });
    for (tag, target) in tags {
        targets["targets"][tag] = serde_json::to_value(target).expect("a target serializes");
    }
    let targets_signature = targets_key.sign(&canonical(&targets));
    Ok((
        Signed { role: "root".into(), signed: root, signatures: vec![root_signature] },
        Signed { role: "targets".into(), signed: targets, signatures: vec![targets_signature] },
    ))
}

/// A new root key: P-256, in a self-signed certificate for `gun` from `now` for ten years.
fn root_certificate(gun: &str, now: i64) -> Result<(Key, SigningKey), TufError> {
    use pkcs8::DecodePrivateKey as _;
    let failed = |e: rcgen::Error| TufError::Key(format!("making a root key for {gun}: {e}"));
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(failed)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, gun);
    let date = |at: i64| {
        let (year, month, day, ..) = kiln_image::time::civil(at);
        rcgen::date_time_ymd(year as i32, month as u8, day as u8)
    };
    params.not_before = date(now);
    params.not_after = date(now + ROOT_VALID_FOR);
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature, rcgen::KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::CodeSigning];
    let cert = params.self_signed(&pair).map_err(failed)?;
    let key = Key { keytype: "ecdsa-x509".into(), keyval: KeyVal { private: None, public: B64.encode(cert.pem()) } };
    let signer = p256::ecdsa::SigningKey::from_pkcs8_der(&pair.serialize_der())
        .map_err(|e| TufError::Key(format!("making a root key for {gun}: {e}")))?;
    Ok((key, SigningKey::P256(signer)))
}

/// The `privateKey` octets of a PKCS#8 `PrivateKeyInfo` (version, algorithm, key, …).
fn private_key_octets(der_bytes: &[u8]) -> Option<Vec<u8>> {
    use der::{Decode as _, Reader as _};
    let mut reader = der::SliceReader::new(der_bytes).ok()?;
    reader
        .sequence(|seq| {
            let _version = u8::decode(seq)?;
            let _algorithm = der::asn1::AnyRef::decode(seq)?;
            let key = der::asn1::OctetStringRef::decode(seq)?;
            while !seq.is_finished() {
                der::asn1::AnyRef::decode(seq)?;
            }
            Ok(key.as_bytes().to_vec())
        })
        .ok()
}

/// The DER inside a PEM block of `label`, skipping RFC 1421 headers (`role: targets`).
fn pem_body(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let body = pem.split_once(&begin)?.1.split_once(&end)?.0;
    let base64: String = body.lines().filter(|l| !l.contains(':')).flat_map(|l| l.trim().chars()).collect();
    B64.decode(base64).ok()
}

/// A new version of `targets` with `changes` applied (a tag to its target), expiring at
/// `expires`, signed by `key`. `key` must be one of the role's keys in `trusted`.
pub fn sign_targets(
    trusted: &Trusted,
    changes: &[(String, Target)],
    key: &SigningKey,
    expires: i64,
) -> Result<Signed, TufError> {
    let id = key.public().id();
    if !trusted.targets_key_ids().contains(&id) {
        return Err(TufError::Key(format!(
            "the key {id} is not one of this repository's targets keys ({})",
            trusted.targets_key_ids().join(", ")
        )));
    }
    let mut signed = trusted.targets.signed.clone();
    if !signed["targets"].is_object() {
        signed["targets"] = serde_json::json!({});
    }
    for (tag, target) in changes {
        signed["targets"][tag] = serde_json::to_value(target).expect("a target serializes");
    }
    signed["version"] = serde_json::json!(trusted.targets.version() + 1);
    signed["expires"] = serde_json::json!(kiln_image::time::format(expires));
    let signature = key.sign(&canonical(&signed));
    Ok(Signed { role: "targets".into(), signed, signatures: vec![signature] })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GUN's four roles, each with a P-256 key of its own, root's as in a certificate-less
    /// `ecdsa` key (the chain rules are the same).
    struct Repo {
        keys: BTreeMap<&'static str, SigningKey>,
    }

    impl Repo {
        fn new() -> Self {
            let mut keys = BTreeMap::new();
            for role in ["root", "targets", "snapshot", "timestamp"] {
                keys.insert(
                    role,
                    SigningKey::P256(p256::ecdsa::SigningKey::random(&mut p256::elliptic_curve::rand_core::OsRng)),
                );
            }
            Repo { keys }
        }

        fn sign(&self, role: &str, signed: serde_json::Value) -> Vec<u8> {
            let sig = self.keys[role].sign(&canonical(&signed));
            Signed { role: role.into(), signed, signatures: vec![sig] }.to_bytes()
        }

        /// root, targets, snapshot, timestamp, expiring at `expires`, with `targets`.
        fn files(&self, targets: serde_json::Value, expires: i64) -> [Vec<u8>; 4] {
            let e = kiln_image::time::format(expires);
            let mut keys = serde_json::Map::new();
            let mut roles = serde_json::Map::new();
            for (role, key) in &self.keys {
                let public = key.public();
                roles.insert(role.to_string(), serde_json::json!({"keyids": [public.id()], "threshold": 1}));
                keys.insert(public.id(), serde_json::to_value(public).unwrap());
            }
            let root = self.sign(
                "root",
                serde_json::json!({"_type": "Root", "consistent_snapshot": false,
                "expires": e, "keys": keys, "roles": roles, "version": 1}),
            );
            let targets = self.sign(
                "targets",
                serde_json::json!({"_type": "Targets", "delegations": {"keys": {}, "roles": []},
                "expires": e, "targets": targets, "version": 2}),
            );
            let snapshot = self.sign(
                "snapshot",
                serde_json::json!({"_type": "Snapshot", "expires": e,
                "meta": {"root": FileMeta::of(&root), "targets": FileMeta::of(&targets)}, "version": 2}),
            );
            let timestamp = self.sign(
                "timestamp",
                serde_json::json!({"_type": "Timestamp", "expires": e,
                "meta": {"snapshot": FileMeta::of(&snapshot)}, "version": 2}),
            );
            [root, targets, snapshot, timestamp]
        }
    }

    fn check(files: &[Vec<u8>; 4], now: i64) -> Result<Trusted, TufError> {
        let [root, targets, snapshot, timestamp] = files;
        Trusted::check("r.example/app", RoleFiles { root, targets, snapshot, timestamp }, now)
    }

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn a_signed_chain_is_trusted_and_names_its_targets() {
        let repo = Repo::new();
        let digest = "ab".repeat(32);
        let target = Target::manifest(&digest, 527).unwrap();
        let other = Target::manifest(&"cd".repeat(32), 99).unwrap();
        let files = repo.files(serde_json::json!({"1.0": target, "latest": target, "0.9": other}), NOW + 3600);
        let trusted = check(&files, NOW).unwrap();
        assert_eq!(trusted.target("1.0"), Some(target.clone()));
        assert_eq!(trusted.target("1.0").unwrap().sha256_hex().as_deref(), Some(digest.as_str()));
        assert_eq!(trusted.target("2.0"), None);
        assert_eq!(trusted.tags_of(&digest), ["1.0", "latest"]);
        assert_eq!(trusted.tags_of(&"cd".repeat(32)), ["0.9"]);
        assert!(trusted.tags_of(&"ef".repeat(32)).is_empty());
    }

    #[test]
    fn a_new_repository_is_a_chain_a_client_trusts_once_the_server_adds_its_roles() {
        let server = Repo::new();
        let target = Target::manifest(&"ab".repeat(32), 527).unwrap();
        let (root, targets) = new_repository(
            "r.example/app",
            &server.keys["targets"],
            server.keys["snapshot"].public(),
            server.keys["timestamp"].public(),
            &[("1.0".into(), target.clone())],
            NOW,
            NOW + 3600,
        )
        .unwrap();
        let [root, targets] = [root.to_bytes(), targets.to_bytes()];
        // What the server then makes with the snapshot and timestamp keys it holds.
        let e = kiln_image::time::format(NOW + 3600);
        let snapshot = server.sign(
            "snapshot",
            serde_json::json!({"_type": "Snapshot", "expires": e,
            "meta": {"root": FileMeta::of(&root), "targets": FileMeta::of(&targets)}, "version": 1}),
        );
        let timestamp = server.sign(
            "timestamp",
            serde_json::json!({"_type": "Timestamp", "expires": e,
            "meta": {"snapshot": FileMeta::of(&snapshot)}, "version": 1}),
        );
        let files = [root, targets, snapshot, timestamp];
        let trusted = check(&files, NOW + 60).unwrap();
        assert_eq!(trusted.target("1.0"), Some(target));
        assert_eq!(trusted.targets_key_ids(), [server.keys["targets"].public().id()]);
        let [root, targets, snapshot, timestamp] = &files;
        let elsewhere = Trusted::check("r.example/other", RoleFiles { root, targets, snapshot, timestamp }, NOW + 60);
        assert!(matches!(elsewhere, Err(TufError::WrongGun { .. })), "{elsewhere:?}");
        // The root lasts ten years; the targets as long as asked.
        assert!(check(&files, NOW + 7200).is_err());
        let root = Signed::parse("root", root).unwrap();
        assert_eq!(root.signed["expires"], kiln_image::time::format(NOW + ROOT_VALID_FOR));
    }

    #[test]
    fn every_broken_link_is_refused() {
        let repo = Repo::new();
        let target = Target::manifest(&"ab".repeat(32), 527).unwrap();
        let files = repo.files(serde_json::json!({"1.0": target}), NOW + 3600);
        assert!(matches!(check(&files, NOW + 7200), Err(TufError::Expired { .. })));
        // A target changed after signing: snapshot's hash no longer matches.
        let mut tampered = files.clone();
        tampered[1] =
            String::from_utf8(files[1].clone()).unwrap().replace("\"length\":527", "\"length\":528").into_bytes();
        assert_eq!(
            check(&tampered, NOW).unwrap_err(),
            TufError::Mismatch { role: "targets".into(), by: "snapshot".into() }
        );
        // Re-signed by a key that is not targets': its signature does not count.
        let other = Repo::new();
        let mut resigned = files.clone();
        let parsed = Signed::parse("targets", &files[1]).unwrap();
        resigned[1] = other.sign("targets", parsed.signed);
        let e = check(&resigned, NOW).unwrap_err();
        assert!(matches!(e, TufError::Mismatch { .. } | TufError::Signatures { .. }), "{e}");
        // A signature over other bytes.
        let mut forged = Signed::parse("timestamp", &files[3]).unwrap();
        forged.signed["version"] = serde_json::json!(99);
        let mut bad = files.clone();
        bad[3] = forged.to_bytes();
        assert!(matches!(check(&bad, NOW), Err(TufError::Signatures { role, .. }) if role == "timestamp"));
        // The wrong role in the wrong place.
        let mut swapped = files.clone();
        swapped.swap(2, 3);
        assert!(matches!(check(&swapped, NOW), Err(TufError::Malformed { .. })));
    }

    /// A root key as notary makes one: a self-signed P-256 certificate whose CN is the GUN.
    fn root_certificate(cn: &str) -> (Key, SigningKey) {
        use pkcs8::DecodePrivateKey as _;
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        let cert = params.self_signed(&pair).unwrap();
        let key =
            Key { keytype: "ecdsa-x509".into(), keyval: KeyVal { private: None, public: B64.encode(cert.pem()) } };
        let signing = SigningKey::P256(p256::ecdsa::SigningKey::from_pkcs8_der(&pair.serialize_der()).unwrap());
        (key, signing)
    }

    #[test]
    fn a_root_certificate_must_name_the_gun() {
        for (cn, ok) in [("r.example/app", true), ("r.example/other", false)] {
            let (cert_key, signing) = root_certificate(cn);
            let mut repo = Repo::new();
            repo.keys.insert("root", signing);
            let mut files = repo.files(serde_json::json!({}), NOW + 3600);
            // root.json lists and signs with the certificate's key, not the bare one.
            let mut root = Signed::parse("root", &files[0]).unwrap();
            let bare = repo.keys["root"].public().id();
            root.signed["keys"].as_object_mut().unwrap().remove(&bare);
            root.signed["keys"][cert_key.id()] = serde_json::to_value(&cert_key).unwrap();
            root.signed["roles"]["root"]["keyids"] = serde_json::json!([cert_key.id()]);
            let mut sig = repo.keys["root"].sign(&canonical(&root.signed));
            sig.keyid = cert_key.id();
            root.signatures = vec![sig];
            files[0] = root.to_bytes();
            // snapshot names root's hash: made again over the new root.
            let mut snapshot = Signed::parse("snapshot", &files[2]).unwrap();
            snapshot.signed["meta"]["root"] = serde_json::to_value(FileMeta::of(&files[0])).unwrap();
            files[2] = repo.sign("snapshot", snapshot.signed);
            let mut timestamp = Signed::parse("timestamp", &files[3]).unwrap();
            timestamp.signed["meta"]["snapshot"] = serde_json::to_value(FileMeta::of(&files[2])).unwrap();
            files[3] = repo.sign("timestamp", timestamp.signed);
            match check(&files, NOW) {
                Ok(_) => assert!(ok, "a root for {cn} was trusted for r.example/app"),
                Err(e) => {
                    assert!(!ok, "{e}");
                    assert_eq!(e, TufError::WrongGun { cn: cn.into(), gun: "r.example/app".into() });
                }
            }
        }
    }

    #[test]
    fn targets_are_signed_only_with_the_roles_key() {
        let repo = Repo::new();
        let files = repo.files(serde_json::json!({}), NOW + 3600);
        let trusted = check(&files, NOW).unwrap();
        let target = Target::manifest(&"cd".repeat(32), 100).unwrap();
        let signed = sign_targets(&trusted, &[("v1".into(), target.clone())], &repo.keys["targets"], NOW + 60).unwrap();
        assert_eq!(signed.version(), 3);
        let keys = &trusted.root_keys;
        signed.check(&keys.keys, &keys.roles["targets"], NOW).unwrap();
        assert_eq!(serde_json::from_value::<Target>(signed.signed["targets"]["v1"].clone()).unwrap(), target);
        let e = sign_targets(&trusted, &[], &repo.keys["snapshot"], NOW + 60).unwrap_err();
        assert!(e.to_string().contains("is not one of this repository's targets keys"), "{e}");
    }

    #[test]
    fn files_are_written_as_notary_writes_them() {
        let file = Signed {
            role: "targets".into(),
            signed: serde_json::json!({"version": 2, "_type": "Targets"}),
            signatures: vec![Signature { keyid: "k".into(), method: "ecdsa".into(), sig: "s".into() }],
        };
        assert_eq!(
            String::from_utf8(file.to_bytes()).unwrap(),
            r#"{"signed":{"_type":"Targets","version":2},"signatures":[{"keyid":"k","method":"ecdsa","sig":"s"}]}"#
        );
    }

    #[test]
    fn key_ids_are_notarys() {
        // A key from a real notary-server's root.json, and the id it lists it under.
        let key = Key {
            keytype: "ecdsa".into(),
            keyval: KeyVal {
                private: None,
                public: "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE3dSU+s2inwDJPNifUcYzxG0VWTsQOt3V0B1nvi6qwSqd/PSHWR32kBj1F79/8lL+jHy67QhAEK7J3C/Zn5CD3A==".into(),
            },
        };
        assert_eq!(key.id(), "0055e2fab54bda582cb4afa993487125a6547e3e4c55a0602c9aad325ba1241d");
        assert!(key.p256().is_some());
    }

    /// A throwaway targets key made by `notary key generate ecdsa --role targets` (trixie's
    /// notary), passphrase `fixture-passphrase`, listed by notary under this id.
    const NOTARY_KEY: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nrole: targets\n\nMIHuMEkGCSqGSIb3DQEFDTA8MBsGCSqGSIb3DQEFDDAOBAguVaTW8WJCLwICCAAw\nHQYJYIZIAWUDBAEqBBDwA2wZ9VEupqaK8sE5trIDBIGgvcioJxxtNzHeSQWJeNV2\nWjlkfsNrkb85BO+ZnjSR4V3WEQ94kaEyGDMJJyVm1V8EhmNCpiMwyNo47XFJdCFj\n71VL3il367dBv4PJQN+bAlfmbE4JK+Kd6UvGJbLIeiVLdz4BvMNLdEF+CGZjzF/j\nMoNqyOF+aIrG7rhAbQEk3npU4DQbx8ujGaZ2R9lAxcFgRTj8pvj2RCMPIrWrjkGN\nTg==\n-----END ENCRYPTED PRIVATE KEY-----\n";
    const NOTARY_KEY_ID: &str = "1b6c9dfb4ab1b42ee35aa5490b8d6f1af5758107304ab1e638a3b1f74561a53d";

    #[test]
    fn notarys_own_key_files_load() {
        let key = SigningKey::from_encrypted_pem(NOTARY_KEY, "fixture-passphrase").unwrap();
        assert_eq!(key.public().id(), NOTARY_KEY_ID);
        let e = SigningKey::from_encrypted_pem(NOTARY_KEY, "fixture").unwrap_err();
        assert_eq!(e.to_string(), "the passphrase does not decrypt the key");
    }

    #[test]
    fn notary_key_files_decrypt_with_their_passphrase() {
        use pkcs8::EncodePrivateKey as _;
        let key = p256::ecdsa::SigningKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
        let der = key.to_pkcs8_der().unwrap();
        let info = pkcs8::PrivateKeyInfo::try_from(der.as_bytes()).unwrap();
        let encrypted = info.encrypt(p256::elliptic_curve::rand_core::OsRng, "s3cret").unwrap();
        let body = B64.encode(encrypted.as_bytes());
        let pem = format!(
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nrole: targets\ngun: r/app\n\n{body}\n-----END ENCRYPTED PRIVATE KEY-----\n"
        );
        let loaded = SigningKey::from_encrypted_pem(&pem, "s3cret").unwrap();
        assert_eq!(loaded.public(), SigningKey::P256(key).public());
        let e = SigningKey::from_encrypted_pem(&pem, "wrong").unwrap_err();
        assert_eq!(e.to_string(), "the passphrase does not decrypt the key");
        assert!(SigningKey::from_encrypted_pem("junk", "s3cret").is_err());
    }
}
