//! One build: a session for files and secrets, `Control.Solve` with the Dockerfile
//! frontend, and `Control.Status` streamed alongside and printed.

use std::collections::HashMap;

use kiln_proto::moby::buildkit::v1::control_client::ControlClient;
use kiln_proto::moby::buildkit::v1::{CacheOptions, CacheOptionsEntry, Exporter, SolveRequest, StatusRequest};
use tokio_stream::StreamExt as _;
use tonic::transport::Channel;

use crate::buildkit::progress::{Mode, Progress};
use crate::session::{Session, SessionSpec, random_id};
use crate::task::params::CacheEntry;

/// What the kernel says, through runc, when a step's program is for another architecture.
pub const EXEC_FORMAT_ERROR: &str = "exec format error";

/// What to ask BuildKit for.
pub struct Solve {
    pub frontend_attrs: HashMap<String, String>,
    pub exporter: Exporter,
    pub session: SessionSpec,
    /// Caches to import before and export after the build.
    pub cache: CacheOptions,
    /// Left out of the daemon's build history.
    pub internal: bool,
    /// What the build may do beyond the defaults (`network.host`).
    pub entitlements: Vec<String>,
    /// `PROGRESS`: how steps are shown.
    pub progress: Mode,
}

/// `CACHE_FROM`/`CACHE_TO` as the Solve request carries them.
pub fn cache_options(from: &[CacheEntry], to: &[CacheEntry]) -> CacheOptions {
    let entry = |c: &CacheEntry| CacheOptionsEntry {
        r#type: c.kind.clone(),
        attrs: c.attrs.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
    };
    CacheOptions {
        imports: from.iter().map(entry).collect(),
        exports: to.iter().map(entry).collect(),
        ..Default::default()
    }
}

/// The frontend's `cache-imports` option for `from`, when there are any: the frontend
/// solves with the imports it is told of here, as buildctl tells it; the Solve request's own
/// list ([`cache_options`]) only makes the daemon fetch them.
pub fn cache_imports_attr(from: &[CacheEntry]) -> Option<(String, String)> {
    if from.is_empty() {
        return None;
    }
    let imports: Vec<serde_json::Value> =
        from.iter().map(|c| serde_json::json!({ "Type": c.kind, "Attrs": c.attrs })).collect();
    Some(("cache-imports".to_string(), serde_json::Value::from(imports).to_string()))
}

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum SolveError {
    #[error("opening the session with BuildKit failed: {0}")]
    Session(String),
    #[error("{0}")]
    Build(String),
}

/// Runs the build; returns the exporter's response (digests and the like).
pub async fn solve(channel: Channel, request: Solve) -> Result<HashMap<String, String>, SolveError> {
    // Made first: it decides what the session prints while it sends folders.
    let mut progress = Progress::new(request.progress);
    let mut control = ControlClient::new(channel.clone());
    let session = Session::start(&mut control, request.session)
        .await
        .map_err(|s| SolveError::Session(format!("{}: {}", code_name(s.code()), s.message())))?;
    let build_ref = random_id();

    let mut status_client = ControlClient::new(channel);
    let status_ref = build_ref.clone();
    // Whether a step's program could not be run at all: a binary for another architecture.
    let exec_format_error = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = exec_format_error.clone();
    let mut status = AbortOnDrop(tokio::spawn(async move {
        let Ok(stream) = status_client.status(StatusRequest { r#ref: status_ref }).await else { return };
        let mut stream = stream.into_inner();
        while let Some(Ok(update)) = stream.next().await {
            let needle = EXEC_FORMAT_ERROR.as_bytes();
            if update.logs.iter().any(|l| l.msg.windows(needle.len()).any(|w| w == needle)) {
                seen.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            progress.update(&update);
        }
        progress.finish();
    }));

    let solve = SolveRequest {
        r#ref: build_ref,
        session: session.id.clone(),
        frontend: "dockerfile.v0".into(),
        frontend_attrs: request.frontend_attrs,
        exporter_deprecated: request.exporter.r#type.clone(),
        exporter_attrs_deprecated: request.exporter.attrs.clone(),
        exporters: vec![request.exporter],
        cache: Some(request.cache),
        internal: request.internal,
        entitlements: request.entitlements,
        ..Default::default()
    };
    let result = control.solve(solve).await;
    // Let the last progress arrive before the session goes.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), &mut status.0).await;
    session.close().await;
    match result {
        Ok(response) => Ok(response.into_inner().exporter_response),
        Err(status) => {
            let mut text = describe_failure(&status);
            if exec_format_error.load(std::sync::atomic::Ordering::Relaxed) {
                text.push_str(&format!(" (its log says {EXEC_FORMAT_ERROR}: the program is for another architecture)"));
            }
            Err(SolveError::Build(text))
        }
    }
}

/// A task that ends when its handle goes: an interrupted build leaves no call open.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn code_name(code: tonic::Code) -> String {
    format!("{code:?}")
}

/// The error BuildKit reports, with the Dockerfile line when its details name one.
/// BuildKit attaches typed details as JSON (`…/errdefs.Source+json`): the file, its
/// bytes, and the line range.
fn describe_failure(status: &tonic::Status) -> String {
    use base64::Engine as _;
    use prost::Message as _;
    let text = status.message().to_string();
    let details = kiln_proto::google::rpc::Status::decode(status.details()).ok();
    for any in details.map(|d| d.details).unwrap_or_default() {
        if !any.type_url.ends_with("errdefs.Source+json") {
            continue;
        }
        let Ok(source) = serde_json::from_slice::<serde_json::Value>(&any.value) else { continue };
        let file = source["info"]["filename"].as_str().unwrap_or("Dockerfile");
        let Some(line) = source["ranges"][0]["start"]["line"].as_i64() else { continue };
        let data = source["info"]["data"]
            .as_str()
            .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
            .unwrap_or_default();
        let code = String::from_utf8_lossy(&data)
            .lines()
            .nth((line.max(1) - 1) as usize)
            .unwrap_or_default()
            .trim()
            .to_string();
        return format!("{file}:{line}: {code}: {text}");
    }
    if text.contains("network.host is not allowed") {
        return format!(
            "NETWORK=host: this BuildKit does not allow the network.host entitlement ({text}); start it with \
             --allow-insecure-entitlement network.host, or leave BUILDKIT_HOST unset so build starts one that does"
        );
    }
    text
}
