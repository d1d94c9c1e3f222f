//! Content stores the session serves with containerd's content API: BuildKit reads image
//! blobs from them (`oci-layout://` named contexts, from `IMAGE_ARG_*`) and reads and writes
//! local caches in them (the task's `cache` folder). Each request names its store in the
//! `buildkit-attachable-store-id` metadata: `oci:<name>` or `local:<dir>`.
//!
//! A store serves blobs it was given (byte ranges of an image tarball, or bytes in memory)
//! and, when it has a folder, the blobs of that folder's OCI layout (`blobs/sha256/…`), which
//! BuildKit may also write to. Writes land in a temporary file and become a blob only when
//! their size and SHA-256 match what the writer promised: nothing partial is ever visible.
//!
//! A folder's files are read without following a link out of it, and written fresh: writes
//! go to files made with `O_EXCL` in a folder of a random name kiln just made, then are
//! renamed into place, so a link an earlier build left (even a dangling one) is replaced,
//! never written through ([`kiln_image::confined`]).

use std::collections::HashMap;
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use kiln_image::blob::{Blob, FileRange};
use kiln_image::confined::{self, FreshDir};
use kiln_image::digest::Digest;
use kiln_image::layout::Layout;
use kiln_proto::containerd::services::content::v1::content_server::Content;
use kiln_proto::containerd::services::content::v1::{
    AbortRequest, DeleteContentRequest, Info, InfoRequest, InfoResponse, ListContentRequest, ListContentResponse,
    ListStatusesRequest, ListStatusesResponse, ReadContentRequest, ReadContentResponse, StatusRequest, StatusResponse,
    UpdateRequest, UpdateResponse, WriteAction, WriteContentRequest, WriteContentResponse,
};
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// The metadata key naming the store a request is for.
pub const STORE_ID_HEADER: &str = "buildkit-attachable-store-id";

/// One store: blobs given up front, and optionally an OCI layout folder.
#[derive(Debug, Default)]
pub struct Store {
    blobs: HashMap<Digest, Blob>,
    layout: Option<Layout>,
    ingests: Mutex<HashMap<String, Ingest>>,
    /// Where unfinished writes go: made fresh in the layout folder when the first one starts.
    ingest_dir: Mutex<Option<FreshDir>>,
}

#[derive(Debug)]
struct Ingest {
    path: PathBuf,
    file: std::fs::File,
    hasher: Sha256,
    offset: u64,
    total: u64,
    expected: String,
    started: SystemTime,
    updated: SystemTime,
}

impl Store {
    /// A read-only store of these blobs (digest → where).
    pub fn from_blobs(blobs: HashMap<Digest, Blob>) -> Self {
        Store { blobs, ..Default::default() }
    }

    /// A store over the OCI layout in `dir` ([`Layout::create`]), which BuildKit may add
    /// blobs to.
    pub fn layout(dir: &Path) -> std::io::Result<Self> {
        Ok(Store { layout: Some(Layout::create(dir)?), ..Default::default() })
    }

    fn layout_path(&self, digest: &str) -> Option<PathBuf> {
        Some(self.layout.as_ref()?.blob_path(&digest.parse().ok()?))
    }

    /// A blob given up front, or a file of the layout (never through a link out of it: such
    /// a blob counts as absent, and is replaced if BuildKit writes it again).
    fn find(&self, digest: &str) -> Option<Blob> {
        let digest = digest.parse::<Digest>().ok()?;
        if let Some(blob) = self.blobs.get(&digest) {
            return Some(blob.clone());
        }
        let layout = self.layout.as_ref()?;
        let size = layout.blob_size(&digest)?;
        Some(Blob::File(FileRange::beneath(layout.dir(), Path::new(&digest.blob_path()), size)))
    }

    /// A new file for an unfinished write, in the store's own fresh folder.
    fn ingest_file(&self, layout: &Path, ref_name: &str) -> std::io::Result<(PathBuf, std::fs::File)> {
        let mut dir = self.ingest_dir.lock().expect("ingest folder lock");
        if dir.is_none() {
            *dir = Some(FreshDir::create(layout, "kiln-ingest")?);
        }
        let path = dir.as_ref().expect("made above").path().join(hex::encode(Sha256::digest(ref_name.as_bytes())));
        // Left by a write of the same ref that was dropped; the folder is ours alone.
        let _ = std::fs::remove_file(&path);
        let file = confined::create_new(&path)?;
        Ok((path, file))
    }

    fn info(&self, digest: &str) -> Result<Info, Status> {
        let blob = self.find(digest).ok_or_else(|| Status::not_found(format!("content {digest}: not found")))?;
        Ok(Info { digest: digest.to_string(), size: blob.len() as i64, ..Default::default() })
    }

    /// Removes unfinished writes (their temporary files, and the folder they were in).
    pub fn abort_all(&self) {
        let mut ingests = self.ingests.lock().expect("ingest lock");
        for (_, ingest) in ingests.drain() {
            let _ = std::fs::remove_file(&ingest.path);
        }
        self.ingest_dir.lock().expect("ingest folder lock").take();
    }
}

/// All the stores of one session, by id.
#[derive(Debug, Default, Clone)]
pub struct ContentService {
    stores: Arc<HashMap<String, Arc<Store>>>,
}

impl ContentService {
    pub fn new(stores: HashMap<String, Arc<Store>>) -> Self {
        ContentService { stores: Arc::new(stores) }
    }

    fn store<T>(&self, request: &Request<T>) -> Result<Arc<Store>, Status> {
        let id = request
            .metadata()
            .get(STORE_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Status::invalid_argument(format!("request lacks metadata {STORE_ID_HEADER}")))?;
        self.stores.get(id).cloned().ok_or_else(|| Status::not_found(format!("unknown store {id}")))
    }
}

fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(t)
}

fn io_status(what: &str, e: std::io::Error) -> Status {
    Status::internal(format!("{what}: {e}"))
}

/// Read chunks are at most this large, as containerd's server sends them.
const READ_CHUNK: usize = 1 << 20;

#[tonic::async_trait]
impl Content for ContentService {
    async fn info(&self, request: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        let store = self.store(&request)?;
        Ok(Response::new(InfoResponse { info: Some(store.info(&request.get_ref().digest)?) }))
    }

    async fn update(&self, request: Request<UpdateRequest>) -> Result<Response<UpdateResponse>, Status> {
        // Labels are not kept, as in containerd's own local store without a label store.
        let _ = self.store(&request)?;
        Err(Status::failed_precondition("update not supported on immutable content store"))
    }

    type ListStream = tokio_stream::Iter<std::vec::IntoIter<Result<ListContentResponse, Status>>>;

    async fn list(&self, request: Request<ListContentRequest>) -> Result<Response<Self::ListStream>, Status> {
        let store = self.store(&request)?;
        let mut digests: Vec<String> = store.blobs.keys().map(Digest::to_string).collect();
        if let Some(layout) = &store.layout {
            digests.extend(layout.blobs().iter().map(Digest::to_string));
        }
        let info: Vec<Info> = digests.iter().filter_map(|d| store.info(d).ok()).collect();
        Ok(Response::new(tokio_stream::iter(vec![Ok(ListContentResponse { info })])))
    }

    async fn delete(&self, request: Request<DeleteContentRequest>) -> Result<Response<()>, Status> {
        let store = self.store(&request)?;
        let digest = &request.get_ref().digest;
        match store.layout_path(digest) {
            // A link is removed itself, never what it points at.
            Some(path) if std::fs::symlink_metadata(&path).is_ok() => {
                std::fs::remove_file(&path).map_err(|e| io_status("deleting a blob", e))?;
                Ok(Response::new(()))
            }
            _ => Err(Status::not_found(format!("content {digest}: not found"))),
        }
    }

    type ReadStream = ReceiverStream<Result<ReadContentResponse, Status>>;

    async fn read(&self, request: Request<ReadContentRequest>) -> Result<Response<Self::ReadStream>, Status> {
        let store = self.store(&request)?;
        let req = request.into_inner();
        let blob =
            store.find(&req.digest).ok_or_else(|| Status::not_found(format!("content {}: not found", req.digest)))?;
        let len = blob.len();
        let offset = u64::try_from(req.offset).map_err(|_| Status::out_of_range("negative offset"))?;
        if offset > len {
            return Err(Status::out_of_range(format!("offset {offset} is past the end ({len} bytes)")));
        }
        let wanted = if req.size <= 0 { len - offset } else { (req.size as u64).min(len - offset) };
        let (tx, rx) = mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            let send = |offset: u64, data: Vec<u8>| {
                tx.blocking_send(Ok(ReadContentResponse { offset: offset as i64, data })).is_ok()
            };
            match blob {
                Blob::Memory(bytes) => {
                    let end = (offset + wanted) as usize;
                    for (i, chunk) in bytes[offset as usize..end].chunks(READ_CHUNK).enumerate() {
                        if !send(offset + (i * READ_CHUNK) as u64, chunk.to_vec()) {
                            return;
                        }
                    }
                }
                Blob::File(range) => {
                    let mut file = match range.slice(offset, wanted).reader() {
                        Ok(r) => r,
                        Err(e) => {
                            let _ = tx.blocking_send(Err(io_status("reading a blob", e)));
                            return;
                        }
                    };
                    let mut at = offset;
                    loop {
                        let mut chunk = vec![0u8; READ_CHUNK];
                        let n = match file.read(&mut chunk) {
                            Ok(0) => return,
                            Ok(n) => n,
                            Err(e) => {
                                let _ = tx.blocking_send(Err(io_status("reading a blob", e)));
                                return;
                            }
                        };
                        chunk.truncate(n);
                        if !send(at, chunk) {
                            return;
                        }
                        at += n as u64;
                    }
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn status(&self, request: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let store = self.store(&request)?;
        let ingests = store.ingests.lock().expect("ingest lock");
        let ingest = ingests
            .get(&request.get_ref().r#ref)
            .ok_or_else(|| Status::not_found(format!("ref {} not found", request.get_ref().r#ref)))?;
        Ok(Response::new(StatusResponse { status: Some(status_of(&request.get_ref().r#ref, ingest)) }))
    }

    async fn list_statuses(
        &self,
        request: Request<ListStatusesRequest>,
    ) -> Result<Response<ListStatusesResponse>, Status> {
        let store = self.store(&request)?;
        let ingests = store.ingests.lock().expect("ingest lock");
        let statuses = ingests.iter().map(|(r, i)| status_of(r, i)).collect();
        Ok(Response::new(ListStatusesResponse { statuses }))
    }

    type WriteStream = ReceiverStream<Result<WriteContentResponse, Status>>;

    async fn write(
        &self,
        request: Request<Streaming<WriteContentRequest>>,
    ) -> Result<Response<Self::WriteStream>, Status> {
        let store = self.store(&request)?;
        if store.layout.is_none() {
            return Err(Status::permission_denied("this store is read-only"));
        }
        let mut incoming = request.into_inner();
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let mut ref_name: Option<String> = None;
            while let Some(message) = incoming.next().await {
                let Ok(req) = message else { return };
                let reply = {
                    let store = store.clone();
                    let ref_name = ref_name.get_or_insert_with(|| req.r#ref.clone()).clone();
                    tokio::task::spawn_blocking(move || write_step(&store, &ref_name, req)).await
                };
                let reply = reply.unwrap_or_else(|e| Err(Status::internal(format!("write task: {e}"))));
                let stop = reply.is_err();
                if tx.send(reply).await.is_err() || stop {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn abort(&self, request: Request<AbortRequest>) -> Result<Response<()>, Status> {
        let store = self.store(&request)?;
        let removed = store.ingests.lock().expect("ingest lock").remove(&request.get_ref().r#ref);
        match removed {
            Some(ingest) => {
                let _ = std::fs::remove_file(ingest.path);
                Ok(Response::new(()))
            }
            None => Err(Status::not_found(format!("ref {} not found", request.get_ref().r#ref))),
        }
    }
}

fn status_of(r: &str, i: &Ingest) -> kiln_proto::containerd::services::content::v1::Status {
    kiln_proto::containerd::services::content::v1::Status {
        started_at: Some(timestamp(i.started)),
        updated_at: Some(timestamp(i.updated)),
        r#ref: r.to_string(),
        offset: i.offset as i64,
        total: i.total as i64,
        expected: i.expected.clone(),
    }
}

/// One message of a Write stream, as containerd's content server answers it.
fn write_step(store: &Store, ref_name: &str, req: WriteContentRequest) -> Result<WriteContentResponse, Status> {
    if ref_name.is_empty() {
        return Err(Status::invalid_argument("first message must have a reference"));
    }
    if !req.expected.is_empty() && store.find(&req.expected).is_some() {
        if let Some(ingest) = store.ingests.lock().expect("ingest lock").remove(ref_name) {
            let _ = std::fs::remove_file(ingest.path);
        }
        return Err(Status::already_exists(format!("blob with expected digest {} exists", req.expected)));
    }
    let layout = store.layout.as_ref().expect("write is refused for stores without a folder");
    let mut ingests = store.ingests.lock().expect("ingest lock");
    if !ingests.contains_key(ref_name) {
        let (path, file) =
            store.ingest_file(layout.dir(), ref_name).map_err(|e| io_status("creating an ingest file", e))?;
        let now = SystemTime::now();
        let ingest = Ingest {
            path,
            file,
            hasher: Sha256::new(),
            offset: 0,
            total: 0,
            expected: String::new(),
            started: now,
            updated: now,
        };
        ingests.insert(ref_name.to_string(), ingest);
    }
    let ingest = ingests.get_mut(ref_name).expect("inserted above");
    if !req.expected.is_empty() {
        ingest.expected = req.expected.clone();
    }
    if req.total > 0 {
        ingest.total = req.total as u64;
    }
    let action = WriteAction::try_from(req.action).map_err(|_| Status::invalid_argument("unknown write action"))?;
    let mut reply = WriteContentResponse { action: req.action, ..Default::default() };
    if action == WriteAction::Stat {
        reply.offset = ingest.offset as i64;
        reply.total = ingest.total as i64;
        reply.started_at = Some(timestamp(ingest.started));
        reply.updated_at = Some(timestamp(ingest.updated));
        reply.digest = Digest::from_hasher(ingest.hasher.clone()).to_string();
        return Ok(reply);
    }
    if req.offset > 0 && req.offset as u64 != ingest.offset {
        return Err(Status::out_of_range(format!(
            "write @{} must occur at current offset {}",
            req.offset, ingest.offset
        )));
    }
    if req.offset == 0 && ingest.offset > 0 {
        // Starting over.
        ingest
            .file
            .set_len(0)
            .and_then(|_| ingest.file.seek(SeekFrom::Start(0)).map(|_| ()))
            .map_err(|e| io_status("truncating an ingest", e))?;
        ingest.hasher = Sha256::new();
        ingest.offset = 0;
    }
    if !req.data.is_empty() {
        ingest.file.write_all(&req.data).map_err(|e| io_status("writing an ingest", e))?;
        ingest.hasher.update(&req.data);
        ingest.offset += req.data.len() as u64;
        ingest.updated = SystemTime::now();
    }
    let digest = Digest::from_hasher(ingest.hasher.clone());
    reply.offset = ingest.offset as i64;
    reply.digest = digest.to_string();
    if action == WriteAction::Commit {
        if ingest.total > 0 && ingest.total != ingest.offset {
            return Err(Status::failed_precondition(format!(
                "unexpected commit size {}, expected {}",
                ingest.offset, ingest.total
            )));
        }
        if !ingest.expected.is_empty() && ingest.expected != reply.digest {
            let expected = ingest.expected.clone();
            if let Some(ingest) = ingests.remove(ref_name) {
                let _ = std::fs::remove_file(ingest.path);
            }
            return Err(Status::failed_precondition(format!("unexpected commit digest {digest}, expected {expected}")));
        }
        let ingest = ingests.remove(ref_name).expect("present");
        ingest.file.sync_all().map_err(|e| io_status("syncing a blob", e))?;
        layout.adopt_blob(&digest, &ingest.path).map_err(|e| io_status("committing a blob", e))?;
    }
    Ok(reply)
}
