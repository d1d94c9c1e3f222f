//! File transfer over the session: **FileSync** sends the build context and the
//! Dockerfile's folder to BuildKit (fsutil's protocol, kiln as the sender), and
//! **FileSend** receives what an exporter writes (the image tarball) into a file.

use std::collections::HashMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use kiln_proto::fsutil::types::Packet;
use kiln_proto::fsutil::types::packet::PacketType;
use kiln_proto::moby::filesync::v1::BytesMessage;
use kiln_proto::moby::filesync::v1::file_send_server::FileSend;
use kiln_proto::moby::filesync::v1::file_sync_server::FileSync;
use tokio::io::AsyncWriteExt as _;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt as _};
use tonic::{Request, Response, Status, Streaming};

use crate::task::context::{self, ContextEntry};
use crate::task::patterns::PatternList;

type PacketStream = Pin<Box<dyn Stream<Item = Result<Packet, Status>> + Send>>;

/// Serves named local folders ("context", "dockerfile") to BuildKit.
#[derive(Clone, Default)]
pub struct FileSyncService {
    dirs: Arc<HashMap<String, PathBuf>>,
}

impl FileSyncService {
    pub fn new(dirs: HashMap<String, PathBuf>) -> Self {
        Self { dirs: Arc::new(dirs) }
    }
}

/// The metadata values BuildKit sends with a request, decoded (values may be URL-escaped
/// with a `<key>-encoded` marker).
fn header_values(md: &tonic::metadata::MetadataMap, key: &str) -> Vec<String> {
    let encoded = md.get(format!("{key}-encoded")).and_then(|v| v.to_str().ok()) == Some("1");
    md.get_all(key)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| if encoded { unescape(v) } else { v.to_string() })
        .collect()
}

fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tonic::async_trait]
impl FileSync for FileSyncService {
    type DiffCopyStream = PacketStream;
    type TarStreamStream = PacketStream;

    async fn diff_copy(&self, request: Request<Streaming<Packet>>) -> Result<Response<PacketStream>, Status> {
        let md = request.metadata();
        let name = header_values(md, "dir-name").into_iter().next().unwrap_or_default();
        let root = self
            .dirs
            .get(&name)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("no access allowed to dir {name:?}")))?;
        // Follow paths (the Dockerfile, .dockerignore) narrow what is sent as includes do,
        // and a followed symlink brings its target along.
        let mut include_patterns = header_values(md, "include-patterns");
        include_patterns.extend(follow(&root, &header_values(md, "followpaths")));
        let includes = PatternList::new(&include_patterns).map_err(Status::invalid_argument)?;
        let excludes = PatternList::new(&header_values(md, "exclude-patterns")).map_err(Status::invalid_argument)?;
        let entries = tokio::task::spawn_blocking(move || context::walk(&root, &includes, &excludes))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(format!("reading {name}: {e}")))?;
        let incoming = request.into_inner();
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(send_files(name, entries, incoming, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn tar_stream(&self, _request: Request<Streaming<Packet>>) -> Result<Response<PacketStream>, Status> {
        Err(Status::unimplemented("kiln sends files with DiffCopy"))
    }
}

/// `paths` and, for each that is a symlink inside `root`, what it points at (relative to
/// `root`, followed a few levels).
fn follow(root: &std::path::Path, paths: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for path in paths {
        let mut rel = path.trim_start_matches('/').to_string();
        out.push(rel.clone());
        for _ in 0..8 {
            let Ok(target) = std::fs::read_link(root.join(&rel)) else { break };
            let joined = if target.is_absolute() {
                target
            } else {
                std::path::Path::new(&rel).parent().unwrap_or(std::path::Path::new("")).join(target)
            };
            let mut parts: Vec<String> = Vec::new();
            for c in joined.components() {
                match c {
                    std::path::Component::Normal(n) => parts.push(n.to_string_lossy().into_owned()),
                    std::path::Component::ParentDir => {
                        parts.pop();
                    }
                    _ => {}
                }
            }
            rel = parts.join("/");
            out.push(rel.clone());
        }
    }
    out
}

/// fsutil's sender: every STAT in walk order, an empty STAT to end the listing, then the
/// content of each file the receiver asks for (DATA chunks and an empty DATA), until FIN.
/// `incoming` is what the receiver sends; whatever it holds, this ends (with FIN after a
/// FIN, an error for a bad request, or nothing when `incoming` ends or errs).
pub async fn send_files<S>(
    name: String,
    entries: Vec<ContextEntry>,
    mut incoming: S,
    tx: mpsc::Sender<Result<Packet, Status>>,
) where
    S: Stream<Item = Result<Packet, Status>> + Send + Unpin + 'static,
{
    let packet = |kind: PacketType| Packet { r#type: kind as i32, stat: None, id: 0, data: Vec::new() };
    // The listing goes out while requests come in: BuildKit asks for files before it has
    // the whole list, and stops reading if its requests are not read (HTTP/2 flow control),
    // so sending every STAT first deadlocks on large folders.
    let entries = Arc::new(entries);
    let listing = {
        let (entries, tx) = (entries.clone(), tx.clone());
        tokio::spawn(async move {
            for entry in entries.iter() {
                let p = Packet { stat: Some(entry.stat.clone()), ..packet(PacketType::PacketStat) };
                if tx.send(Ok(p)).await.is_err() {
                    return;
                }
            }
            let _ = tx.send(Ok(packet(PacketType::PacketStat))).await;
        })
    };
    let _stop_listing = AbortOnDrop(listing);
    // Requests are read as soon as they arrive and queued here (at most one per entry):
    // left unread in HTTP/2's buffers while files go out, thousands of tiny REQ frames
    // exhaust its small-frame budget and it drops the connection.
    let (requests, mut queued) = mpsc::unbounded_channel::<Packet>();
    let reader = tokio::spawn(async move {
        while let Some(Ok(p)) = incoming.next().await {
            let last = matches!(PacketType::try_from(p.r#type), Ok(PacketType::PacketFin | PacketType::PacketErr));
            if requests.send(p).is_err() || last {
                return;
            }
        }
    });
    let _stop_reader = AbortOnDrop(reader);
    // Files are read on one blocking thread, start to end: a hop to tokio's blocking pool
    // for every open and read of 20,000 small files cost more than reading them.
    let worker = tokio::task::spawn_blocking(move || {
        let (mut files, mut bytes) = (0u64, 0u64);
        while let Some(p) = queued.blocking_recv() {
            match PacketType::try_from(p.r#type) {
                Ok(PacketType::PacketReq) => {
                    let Some(entry) = entries.get(p.id as usize).filter(|e| e.has_data()) else {
                        let _ = tx.blocking_send(Err(Status::invalid_argument(format!("invalid file id {}", p.id))));
                        return;
                    };
                    match send_data(entry, p.id, &tx) {
                        Ok(n) => (files, bytes) = (files + 1, bytes + n),
                        Err(e) => {
                            let why = format!("reading {}: {e}", entry.path.display());
                            let _ = tx.blocking_send(Err(Status::internal(why)));
                            return;
                        }
                    }
                }
                Ok(PacketType::PacketFin) => {
                    // BuildKit asks only for files it has not seen unchanged before: this says
                    // how much of the folder actually crossed the wire.
                    if crate::buildkit::progress::transfer_notes() {
                        eprintln!("build: {name}: sent {files} of {} entries, {bytes} bytes", entries.len());
                    }
                    let _ = tx.blocking_send(Ok(packet(PacketType::PacketFin)));
                    return;
                }
                Ok(PacketType::PacketErr) => return,
                _ => {}
            }
        }
    });
    let _ = worker.await;
}

/// Aborts a task when dropped, so the listing stops when the transfer ends early.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// DATA packets carry at most this much.
const DATA_CHUNK: u64 = 64 << 10;

/// Sends one file's content (from a blocking thread); returns how many bytes went.
fn send_data(entry: &ContextEntry, id: u32, tx: &mpsc::Sender<Result<Packet, Status>>) -> std::io::Result<u64> {
    use std::io::Read as _;
    let mut file = std::fs::File::open(&entry.path)?;
    let mut left = entry.stat.size.max(0) as u64;
    let mut sent = 0;
    loop {
        // Sized to what is left, so small files do not hold whole chunks in the queue.
        let mut data = vec![0u8; left.clamp(1, DATA_CHUNK) as usize];
        let n = file.read(&mut data)?;
        data.truncate(n);
        sent += n as u64;
        left = left.saturating_sub(n as u64);
        let p = Packet { r#type: PacketType::PacketData as i32, stat: None, id, data };
        if tx.blocking_send(Ok(p)).is_err() || n == 0 {
            return Ok(sent);
        }
    }
}

/// Receives exporter output into files: exporter `id` (metadata
/// `buildkit-attachable-exporter-id`, 0 when absent) writes to `targets[id]`.
#[derive(Clone, Default)]
pub struct FileSendService {
    targets: Arc<Mutex<HashMap<u32, PathBuf>>>,
}

impl FileSendService {
    pub fn new(targets: HashMap<u32, PathBuf>) -> Self {
        Self { targets: Arc::new(Mutex::new(targets)) }
    }
}

#[tonic::async_trait]
impl FileSend for FileSendService {
    type DiffCopyStream = Pin<Box<dyn Stream<Item = Result<BytesMessage, Status>> + Send>>;

    async fn diff_copy(
        &self,
        request: Request<Streaming<BytesMessage>>,
    ) -> Result<Response<Self::DiffCopyStream>, Status> {
        let id = header_values(request.metadata(), "buildkit-attachable-exporter-id")
            .first()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let path = self
            .targets
            .lock()
            .expect("targets lock")
            .get(&id)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("exporter {id} not found")))?;
        let mut file = tokio::fs::File::create(&path)
            .await
            .map_err(|e| Status::internal(format!("creating {}: {e}", path.display())))?;
        let mut incoming = request.into_inner();
        while let Some(message) = incoming.next().await {
            let message = message?;
            file.write_all(&message.data)
                .await
                .map_err(|e| Status::internal(format!("writing {}: {e}", path.display())))?;
        }
        file.sync_all().await.map_err(|e| Status::internal(format!("writing {}: {e}", path.display())))?;
        Ok(Response::new(Box::pin(tokio_stream::empty())))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn followed_symlinks_bring_their_targets() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("docker")).unwrap();
        std::fs::write(dir.path().join("docker/real.Dockerfile"), "FROM scratch\n").unwrap();
        std::os::unix::fs::symlink("docker/real.Dockerfile", dir.path().join("Dockerfile")).unwrap();
        let paths = super::follow(dir.path(), &["Dockerfile".into(), "/.dockerignore".into()]);
        assert_eq!(paths, ["Dockerfile", "docker/real.Dockerfile", ".dockerignore"]);
    }

    #[test]
    fn unescaping() {
        assert_eq!(super::unescape("a%2Fb+c"), "a/b c");
        assert_eq!(super::unescape("plain"), "plain");
    }
}
