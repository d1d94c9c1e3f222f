//! Fetching an image from a registry: its manifest resolved to one platform, its
//! config, and its blobs downloaded in parallel into spool files that readers can
//! follow while they are still being written.
//!
//! A [`Spool`] is how layers download in parallel yet are consumed in order with
//! bounded memory: each blob streams to its own file (digest verified as it arrives);
//! a [`SpoolReader`] reads that file from a blocking thread, waiting for bytes that
//! have not arrived yet, and ends only once the digest has checked out.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use anyhow::{Context, bail};
use kiln_image::digest::Digest;
use kiln_image::layout::Layout;
use kiln_image::oci::{self, Descriptor, ImageConfig, Manifest, ManifestOrIndex, Platform};
use kiln_registry::Client;
use tokio::sync::Semaphore;

/// Configs larger than this are refused.
const MAX_CONFIG: u64 = 16 << 20;

/// A manifest fetched and verified, with its raw bytes.
#[derive(Debug, Clone)]
pub struct Fetched<T> {
    pub descriptor: Descriptor,
    pub bytes: Vec<u8>,
    pub value: T,
}

/// One image, resolved from a version digest (which may name an index).
#[derive(Debug)]
pub struct Image {
    /// The index the version digest named, if it named one.
    pub index: Option<Fetched<oci::Index>>,
    pub manifest: Fetched<Manifest>,
    pub config: Fetched<ImageConfig>,
}

/// Fetches the manifest or index `digest` names, verified.
pub async fn fetch_manifest(client: &Client, digest: &Digest) -> anyhow::Result<Fetched<ManifestOrIndex>> {
    let Some((desc, bytes)) = client.get_manifest(&digest.to_string()).await? else {
        bail!("{}@{digest} does not exist (deleted since check found it?)", client.repository());
    };
    let value = ManifestOrIndex::parse(&format!("{}@{digest}", client.repository()), &desc.media_type, &bytes)?;
    Ok(Fetched { descriptor: desc, bytes, value })
}

/// Resolves `digest` to the image for `platform`, and fetches its config.
pub async fn resolve(client: &Client, digest: &Digest, platform: &Platform) -> anyhow::Result<Image> {
    let top = fetch_manifest(client, digest).await?;
    let (index, manifest) = match top.value {
        ManifestOrIndex::Manifest(m) => (None, Fetched { descriptor: top.descriptor, bytes: top.bytes, value: *m }),
        ManifestOrIndex::Index(idx) => {
            let child =
                select_platform(&idx, platform).with_context(|| format!("{}@{digest}", client.repository()))?.clone();
            let fetched = fetch_manifest(client, &child.digest).await?;
            let ManifestOrIndex::Manifest(m) = fetched.value else {
                bail!("{}@{}: the index's entry for {platform} is another index", client.repository(), child.digest);
            };
            let index = Fetched { descriptor: top.descriptor, bytes: top.bytes, value: idx };
            (Some(index), Fetched { descriptor: fetched.descriptor, bytes: fetched.bytes, value: *m })
        }
    };
    let config_desc = &manifest.value.config;
    let bytes = client.get_blob_bytes(&config_desc.digest, MAX_CONFIG).await?;
    let value: ImageConfig = serde_json::from_slice(&bytes)
        .with_context(|| format!("image config {} is not valid JSON", config_desc.digest))?;
    let config = Fetched { descriptor: config_desc.clone(), bytes, value };
    Ok(Image { index, manifest, config })
}

/// The index entry for `platform`, or an error listing what the index has.
pub fn select_platform<'a>(index: &'a oci::Index, platform: &Platform) -> anyhow::Result<&'a Descriptor> {
    let found = index
        .manifests
        .iter()
        .filter(|d| oci::is_manifest(&d.media_type) || d.media_type.is_empty())
        .find(|d| d.platform.as_ref().is_some_and(|p| platform.matches(p)));
    if let Some(d) = found {
        return Ok(d);
    }
    // Each platform once, and not too many: an index may list thousands of entries.
    let mut available: Vec<String> = Vec::new();
    for p in index.manifests.iter().filter_map(|d| d.platform.as_ref()).map(|p| p.to_string()) {
        if !available.contains(&p) {
            available.push(p);
        }
    }
    if available.len() > 12 {
        let more = available.len() - 12;
        available.truncate(12);
        available.push(format!("and {more} more"));
    }
    bail!(
        "no image for platform {platform} in the index (it has: {}); set source.platform or params.platform",
        if available.is_empty() { "no platforms".to_string() } else { available.join(", ") }
    )
}

// ------------------------------------------------------------------------------------------
// Spools

#[derive(Default)]
struct SpoolState {
    written: u64,
    finished: Option<Result<(), String>>,
}

/// A blob downloading into a file.
pub struct Spool {
    pub descriptor: Descriptor,
    path: PathBuf,
    bar: crate::progress::BlobBar,
    state: Mutex<SpoolState>,
    changed: Condvar,
}

impl Spool {
    fn advance(&self, n: u64) {
        self.state.lock().expect("spool lock").written += n;
        self.changed.notify_all();
        self.bar.advance(n);
    }

    fn finish(&self, result: Result<(), String>) {
        self.bar.finish(&result);
        self.state.lock().expect("spool lock").finished = Some(result);
        self.changed.notify_all();
    }

    /// A blocking reader of the blob, usable while it downloads. It deletes the file when dropped.
    pub fn reader(self: &Arc<Self>) -> io::Result<SpoolReader> {
        Ok(SpoolReader { file: File::open(&self.path)?, spool: self.clone(), pos: 0 })
    }

    /// Waits (blocking) for the download and moves the verified blob into `layout`.
    pub fn persist(&self, layout: &Layout) -> anyhow::Result<()> {
        self.wait().map_err(|e| anyhow::anyhow!("blob {}: {e}", self.descriptor.digest))?;
        let digest = &self.descriptor.digest;
        layout
            .adopt_blob(digest, &self.path)
            .with_context(|| format!("moving blob {digest} into {}", layout.dir().display()))
    }

    /// Waits (blocking) until the download ended; its outcome.
    pub fn wait(&self) -> Result<(), String> {
        let mut state = self.state.lock().expect("spool lock");
        loop {
            if let Some(result) = &state.finished {
                return result.clone();
            }
            state = self.changed.wait(state).expect("spool lock");
        }
    }
}

/// Reads a [`Spool`] as it fills; EOF only after the whole blob arrived and verified.
pub struct SpoolReader {
    file: File,
    spool: Arc<Spool>,
    pos: u64,
}

impl Read for SpoolReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut state = self.spool.state.lock().expect("spool lock");
        loop {
            if self.pos < state.written {
                let available = (state.written - self.pos).min(buf.len() as u64) as usize;
                drop(state);
                let n = self.file.read(&mut buf[..available])?;
                self.pos += n as u64;
                return Ok(n);
            }
            match &state.finished {
                Some(Ok(())) => return Ok(0),
                Some(Err(e)) => return Err(io::Error::other(e.clone())),
                None => state = self.spool.changed.wait(state).expect("spool lock"),
            }
        }
    }
}

impl Drop for SpoolReader {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.spool.path);
    }
}

/// Starts downloading `blobs` into files under `dir`, at most `parallel` at once, earliest
/// first. Each finishes with its digest verified or an error its reader reports.
pub fn spool_all(
    client: Arc<Client>,
    blobs: &[Descriptor],
    dir: &Path,
    parallel: usize,
    progress: Arc<crate::progress::Progress>,
) -> anyhow::Result<Vec<Arc<Spool>>> {
    let permits = Arc::new(Semaphore::new(parallel.max(1)));
    let mut spools = Vec::with_capacity(blobs.len());
    for (i, blob) in blobs.iter().enumerate() {
        let path = dir.join(format!("blob-{i}-{}", blob.digest.hex()));
        let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let spool = Arc::new(Spool {
            descriptor: blob.clone(),
            path,
            bar: progress.bar(i, blob),
            state: Mutex::new(SpoolState::default()),
            changed: Condvar::new(),
        });
        spools.push(spool.clone());
        let (client, permits, progress) = (client.clone(), permits.clone(), progress.clone());
        tokio::spawn(async move {
            let _permit = permits.acquire_owned().await;
            let started = Instant::now();
            let result = download(&client, &spool, file).await.map_err(|e| format!("{e:#}"));
            if result.is_ok() {
                progress.downloaded(i, &spool.descriptor, started.elapsed());
            }
            spool.finish(result);
        });
    }
    Ok(spools)
}

/// Chunks of one download waiting for its spool file's writer.
const WRITES_QUEUED: usize = 4;

/// Downloads one blob into its spool file. The file is written on a blocking thread of its
/// own, the chunks handed to it as they arrive, so a slow disk never holds up one of the
/// runtime's two workers (and with it the other downloads).
async fn download(client: &Client, spool: &Arc<Spool>, file: File) -> anyhow::Result<()> {
    let digest = &spool.descriptor.digest;
    // Chunks, not bytes: hyper hands over up to ~400 KiB at once, so 64 of them held up to
    // 26 MiB per download while the disk caught up; a few keep the writer busy.
    let (tx, mut rx) = tokio::sync::mpsc::channel(WRITES_QUEUED);
    let writer = {
        let spool = spool.clone();
        tokio::task::spawn_blocking(move || -> io::Result<()> {
            let mut file = file;
            while let Some(chunk) = rx.blocking_recv() {
                let chunk: bytes::Bytes = chunk;
                file.write_all(&chunk)?;
                spool.advance(chunk.len() as u64);
            }
            Ok(())
        })
    };
    let received = async {
        let mut stream = client.get_blob(digest).await?;
        let mut received = 0u64;
        while let Some(chunk) = stream.next_chunk().await? {
            received += chunk.len() as u64;
            if received > spool.descriptor.size {
                bail!("blob {digest} is larger than the {} bytes its manifest says", spool.descriptor.size);
            }
            // The writer stopped: its error is the one to report.
            if tx.send(chunk).await.is_err() {
                break;
            }
        }
        Ok(received)
    }
    .await;
    drop(tx);
    writer.await.context("the spool's writer stopped")?.with_context(|| format!("writing {}", spool.path.display()))?;
    let received = received?;
    if received != spool.descriptor.size {
        bail!("blob {digest} has {received} bytes, its manifest says {}", spool.descriptor.size);
    }
    Ok(())
}
