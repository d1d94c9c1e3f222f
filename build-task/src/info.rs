//! What a BuildKit daemon says about itself: its version and its workers.

use kiln_proto::moby::buildkit::v1::control_client::ControlClient;
use kiln_proto::moby::buildkit::v1::{InfoRequest, ListWorkersRequest};
use tonic::transport::Channel;

/// A daemon's version and workers, ready to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonInfo {
    pub package: String,
    pub version: String,
    pub revision: String,
    pub workers: Vec<WorkerInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerInfo {
    pub id: String,
    pub platforms: Vec<String>,
    pub labels: Vec<(String, String)>,
}

/// Asks the daemon with `Control.Info` and `Control.ListWorkers`.
pub async fn query(channel: Channel) -> Result<DaemonInfo, tonic::Status> {
    let mut control = ControlClient::new(channel);
    let version = control.info(InfoRequest {}).await?.into_inner().buildkit_version.unwrap_or_default();
    let workers = control.list_workers(ListWorkersRequest { filter: vec![] }).await?.into_inner().record;
    let workers = workers
        .into_iter()
        .map(|w| {
            let platforms = w
                .platforms
                .iter()
                .map(|p| {
                    let mut s = format!("{}/{}", p.os, p.architecture);
                    if !p.variant.is_empty() {
                        s = format!("{s}/{}", p.variant);
                    }
                    s
                })
                .collect();
            let mut labels: Vec<_> = w.labels.into_iter().collect();
            labels.sort();
            WorkerInfo { id: w.id, platforms, labels }
        })
        .collect();
    Ok(DaemonInfo { package: version.package, version: version.version, revision: version.revision, workers })
}

impl std::fmt::Display for DaemonInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "buildkit: {} {} ({})", self.package, self.version, self.revision)?;
        for w in &self.workers {
            writeln!(f, "worker {}: platforms {}", w.id, w.platforms.join(","))?;
            for (k, v) in &w.labels {
                writeln!(f, "  {k}={v}")?;
            }
        }
        Ok(())
    }
}
