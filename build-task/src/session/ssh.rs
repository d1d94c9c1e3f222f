//! `BUILDKIT_SSH`: SSH agents for `RUN --mount=type=ssh`, served over the session
//! (`moby.sshforward.v1.SSH`). Each id is either an agent socket on this machine, forwarded
//! read-only (a build can list keys and ask for signatures, never add, remove or lock), or
//! private key files, held by a small agent of kiln's own in memory. Key material is never
//! logged or written anywhere.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kiln_proto::moby::sshforward::v1::ssh_server::Ssh;
use kiln_proto::moby::sshforward::v1::{BytesMessage, CheckAgentRequest, CheckAgentResponse};
use ssh_key::PrivateKey;
use ssh_key::private::KeypairData;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// The metadata key naming the id a forward is for.
const SSH_ID_HEADER: &str = "buildkit.ssh.id";

/// Agent protocol message numbers (draft-miller-ssh-agent).
const FAILURE: u8 = 5;
const REQUEST_IDENTITIES: u8 = 11;
const IDENTITIES_ANSWER: u8 = 12;
const SIGN_REQUEST: u8 = 13;
const SIGN_RESPONSE: u8 = 14;
/// `SSH_AGENTC_EXTENSION` (OpenSSH's session-bind).
const EXTENSION: u8 = 27;
/// What a forwarded agent is asked for; everything else (adding, removing, locking, in
/// protocol 1 or 2 numbering) is refused without reaching it.
const READ_ONLY: &[u8] = &[REQUEST_IDENTITIES, SIGN_REQUEST, EXTENSION];
const RSA_SHA2_512: u32 = 4;
/// Largest agent message accepted (OpenSSH's own limit).
const MAX_MESSAGE: usize = 256 * 1024;

/// What an id forwards to.
#[derive(Clone)]
pub enum Agent {
    Socket(PathBuf),
    Keys(Arc<Vec<PrivateKey>>),
}

/// Names the socket, or how many keys: never key material.
impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Agent::Socket(path) => write!(f, "Agent::Socket({})", path.display()),
            Agent::Keys(keys) => write!(f, "Agent::Keys({} keys)", keys.len()),
        }
    }
}

/// Why an SSH param cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("BUILDKIT_SSH: {0}")]
pub struct SshError(String);

/// Loads `id → paths` (from the param) into agents: one socket, or key files.
pub fn load(ids: &std::collections::BTreeMap<String, Vec<PathBuf>>) -> Result<HashMap<String, Agent>, SshError> {
    use std::os::unix::fs::FileTypeExt as _;
    let mut agents = HashMap::new();
    for (id, paths) in ids {
        let is_socket = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.file_type().is_socket());
        if paths.len() == 1 && is_socket(&paths[0]) {
            agents.insert(id.clone(), Agent::Socket(paths[0].clone()));
            continue;
        }
        let mut keys = Vec::new();
        for path in paths {
            if is_socket(path) {
                return Err(SshError(format!("{id}: give one agent socket, or key files, not both")));
            }
            let text = std::fs::read(path).map_err(|e| SshError(format!("{id}: reading {}: {e}", path.display())))?;
            let key = PrivateKey::from_openssh(&text)
                .map_err(|e| SshError(format!("{id}: {} is not an OpenSSH private key: {e}", path.display())))?;
            if key.is_encrypted() {
                return Err(SshError(format!(
                    "{id}: {} is protected by a passphrase; load it into an ssh-agent and give its socket",
                    path.display()
                )));
            }
            keys.push(key);
        }
        agents.insert(id.clone(), Agent::Keys(Arc::new(keys)));
    }
    Ok(agents)
}

/// The session's SSH service.
#[derive(Clone, Default)]
pub struct SshService {
    agents: Arc<HashMap<String, Agent>>,
}

impl SshService {
    pub fn new(agents: HashMap<String, Agent>) -> Self {
        SshService { agents: Arc::new(agents) }
    }
}

#[tonic::async_trait]
impl Ssh for SshService {
    async fn check_agent(&self, request: Request<CheckAgentRequest>) -> Result<Response<CheckAgentResponse>, Status> {
        let id = &request.get_ref().id;
        let id = if id.is_empty() { "default" } else { id.as_str() };
        if self.agents.contains_key(id) {
            Ok(Response::new(CheckAgentResponse {}))
        } else {
            Err(Status::not_found(format!("unset ssh forward key {id}")))
        }
    }

    type ForwardAgentStream = ReceiverStream<Result<BytesMessage, Status>>;

    async fn forward_agent(
        &self,
        request: Request<Streaming<BytesMessage>>,
    ) -> Result<Response<Self::ForwardAgentStream>, Status> {
        let id = request
            .metadata()
            .get(SSH_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .unwrap_or("default")
            .to_string();
        let agent =
            self.agents.get(&id).cloned().ok_or_else(|| Status::not_found(format!("unset ssh forward key {id}")))?;
        let mut socket = match &agent {
            Agent::Socket(path) => Some(
                UnixStream::connect(path)
                    .await
                    .map_err(|e| Status::unavailable(format!("connecting to the agent for {id}: {e}")))?,
            ),
            Agent::Keys(_) => None,
        };
        let mut incoming = request.into_inner();
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let mut pending = Vec::new();
            while let Some(Ok(message)) = incoming.next().await {
                pending.extend_from_slice(&message.data);
                while let Some(request) = take_frame(&mut pending) {
                    let Ok(request) = request else { return };
                    let reply = match (&agent, socket.as_mut()) {
                        (Agent::Keys(keys), _) => answer(keys, &request),
                        (Agent::Socket(_), Some(socket)) => match forward(socket, &request).await {
                            Ok(reply) => reply,
                            Err(_) => return,
                        },
                        (Agent::Socket(_), None) => return,
                    };
                    if tx.send(Ok(BytesMessage { data: frame(&reply) })).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// The next whole message in `buf` (without its length), removed from it; `Err` if it is
/// larger than any agent message may be.
fn take_frame(buf: &mut Vec<u8>) -> Option<Result<Vec<u8>, ()>> {
    if buf.len() < 4 {
        return None;
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > MAX_MESSAGE {
        return Some(Err(()));
    }
    if buf.len() < 4 + len {
        return None;
    }
    let message = buf[4..4 + len].to_vec();
    buf.drain(..4 + len);
    Some(Ok(message))
}

fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = (message.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(message);
    out
}

fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn get_string<'a>(buf: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = u32::from_be_bytes(buf.get(..4)?.try_into().ok()?) as usize;
    let value = buf.get(4..4 + len)?;
    *buf = &buf[4 + len..];
    Some(value)
}

/// Sends one request to a real agent and reads its one reply, refusing requests that would
/// change it.
async fn forward(socket: &mut UnixStream, request: &[u8]) -> std::io::Result<Vec<u8>> {
    if !request.first().is_some_and(|t| READ_ONLY.contains(t)) {
        return Ok(vec![FAILURE]);
    }
    socket.write_all(&frame(request)).await?;
    let mut len = [0u8; 4];
    socket.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_MESSAGE {
        return Err(std::io::Error::other("agent reply too large"));
    }
    let mut reply = vec![0u8; len];
    socket.read_exact(&mut reply).await?;
    Ok(reply)
}

/// kiln's own agent over `keys`: lists them and signs with them; anything else fails.
fn answer(keys: &[PrivateKey], request: &[u8]) -> Vec<u8> {
    match request.split_first() {
        Some((&REQUEST_IDENTITIES, _)) => {
            let mut out = vec![IDENTITIES_ANSWER];
            out.extend_from_slice(&(keys.len() as u32).to_be_bytes());
            for key in keys {
                put_string(&mut out, &key.public_key().to_bytes().unwrap_or_default());
                put_string(&mut out, key.comment().as_bytes());
            }
            out
        }
        Some((&SIGN_REQUEST, mut rest)) => sign(keys, &mut rest).unwrap_or_else(|| vec![FAILURE]),
        _ => vec![FAILURE],
    }
}

fn sign(keys: &[PrivateKey], rest: &mut &[u8]) -> Option<Vec<u8>> {
    use signature::Signer as _;
    use ssh_encoding::Encode as _;
    let blob = get_string(rest)?;
    let data = get_string(rest)?;
    let flags = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
    let key = keys.iter().find(|k| k.public_key().to_bytes().is_ok_and(|b| b == blob))?;
    let encoded = match key.key_data() {
        // RSA signs with SHA-512 only (rsa-sha2-512); SHA-1 and SHA-256 requests are refused.
        KeypairData::Rsa(rsa) if flags & RSA_SHA2_512 != 0 => rsa_sha2_512(rsa, data)?,
        KeypairData::Rsa(_) => return None,
        _ => {
            let mut encoded = Vec::new();
            key.try_sign(data).ok()?.encode(&mut encoded).ok()?;
            encoded
        }
    };
    let mut out = vec![SIGN_RESPONSE];
    put_string(&mut out, &encoded);
    Some(out)
}

/// An `rsa-sha2-512` signature blob. Made with the `rsa` crate from the key's own numbers,
/// since ssh-key 0.6's conversion passes the first prime twice and cannot sign.
fn rsa_sha2_512(key: &ssh_key::private::RsaKeypair, data: &[u8]) -> Option<Vec<u8>> {
    use signature::{SignatureEncoding as _, Signer as _};
    let int = |m: &ssh_key::Mpint| rsa::BigUint::try_from(m).ok();
    let private = rsa::RsaPrivateKey::from_components(
        int(&key.public.n)?,
        int(&key.public.e)?,
        int(&key.private.d)?,
        vec![int(&key.private.p)?, int(&key.private.q)?],
    )
    .ok()?;
    let signature = rsa::pkcs1v15::SigningKey::<sha2::Sha512>::new(private).try_sign(data).ok()?;
    let mut out = Vec::new();
    put_string(&mut out, b"rsa-sha2-512");
    put_string(&mut out, &signature.to_vec());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_reassembled_across_messages_and_bounded() {
        let mut buf = frame(&[REQUEST_IDENTITIES]);
        buf.extend_from_slice(&[0, 0]);
        assert_eq!(take_frame(&mut buf), Some(Ok(vec![REQUEST_IDENTITIES])));
        assert_eq!(take_frame(&mut buf), None);
        buf.extend_from_slice(&[0, 1, SIGN_REQUEST]);
        assert_eq!(take_frame(&mut buf), Some(Ok(vec![SIGN_REQUEST])));
        let mut huge = (u32::MAX).to_be_bytes().to_vec();
        assert_eq!(take_frame(&mut huge), Some(Err(())));
    }

    #[test]
    fn unknown_and_malformed_requests_fail() {
        assert_eq!(answer(&[], &[17]), vec![FAILURE]);
        assert_eq!(answer(&[], &[SIGN_REQUEST, 0, 0]), vec![FAILURE]);
        assert_eq!(answer(&[], &[]), vec![FAILURE]);
        assert_eq!(answer(&[], &[REQUEST_IDENTITIES]), vec![IDENTITIES_ANSWER, 0, 0, 0, 0]);
    }
}
