//! What a BuildKit daemon says about itself: its version and its workers.

use std::future::Future;
use std::time::Duration;

use kiln_proto::moby::buildkit::v1::control_client::ControlClient;
use kiln_proto::moby::buildkit::v1::{InfoRequest, ListWorkersRequest};
use tonic::transport::Channel;

/// How long each of the two calls may take. A socket that accepts connections but never
/// answers HTTP/2 (a wedged daemon, or some other server) would otherwise hang forever.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Whether the platform `wanted` (`os/arch[/variant]`, as `IMAGE_PLATFORM` gives it) is
/// `listed` (as a worker reports it): the same OS and architecture, and the same variant
/// when `wanted` names one (`arm64`'s is `v8` when unsaid).
pub fn same_platform(wanted: &str, listed: &str) -> bool {
    let parts = |p: &str| {
        let mut it = p.split('/');
        let (os, arch, variant) = (it.next().unwrap_or(""), it.next().unwrap_or(""), it.next());
        let variant = variant.or((arch == "arm64").then_some("v8"));
        (os.to_string(), arch.to_string(), variant.map(str::to_string))
    };
    let (w, l) = (parts(wanted), parts(listed));
    w.0 == l.0 && w.1 == l.1 && (w.2.is_none() || w.2 == l.2 || (w.1 == "amd64" && w.2.as_deref() == Some("v1")))
}

/// Asks the daemon with `Control.Info` and `Control.ListWorkers`, each within 10 seconds.
pub async fn query(channel: Channel) -> Result<DaemonInfo, tonic::Status> {
    let mut control = ControlClient::new(channel);
    let version = within("Info", control.info(InfoRequest {})).await?.into_inner().buildkit_version.unwrap_or_default();
    let workers =
        within("ListWorkers", control.list_workers(ListWorkersRequest { filter: vec![] })).await?.into_inner().record;
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
                .fold(Vec::<String>::new(), |mut seen, p| {
                    // Docker's embedded BuildKit lists its native platform twice; print it once.
                    if !seen.contains(&p) {
                        seen.push(p);
                    }
                    seen
                });
            let mut labels: Vec<_> = w.labels.into_iter().collect();
            labels.sort();
            WorkerInfo { id: w.id, platforms, labels }
        })
        .collect();
    Ok(DaemonInfo { package: version.package, version: version.version, revision: version.revision, workers })
}

/// `call`, or DEADLINE_EXCEEDED with a hint once [`CALL_TIMEOUT`] has passed.
async fn within<T>(name: &str, call: impl Future<Output = Result<T, tonic::Status>>) -> Result<T, tonic::Status> {
    tokio::time::timeout(CALL_TIMEOUT, call).await.unwrap_or_else(|_| {
        Err(tonic::Status::deadline_exceeded(format!(
            "no answer to Control.{name} within {}s; is it BuildKit (not some other server) listening there?",
            CALL_TIMEOUT.as_secs()
        )))
    })
}

impl std::fmt::Display for DaemonInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "buildkit: {} {}", self.package, self.version)?;
        if self.revision.is_empty() {
            writeln!(f)?;
        } else {
            writeln!(f, " ({})", self.revision)?;
        }
        for w in &self.workers {
            writeln!(f, "worker {}: platforms {}", w.id, w.platforms.join(","))?;
            for (k, v) in &w.labels {
                writeln!(f, "  {k}={v}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_match_as_buildkit_names_them() {
        assert!(same_platform("linux/amd64", "linux/amd64"));
        assert!(same_platform("linux/amd64", "linux/amd64/v3"));
        assert!(!same_platform("linux/amd64/v2", "linux/amd64"));
        assert!(same_platform("linux/arm64", "linux/arm64"));
        assert!(same_platform("linux/arm64/v8", "linux/arm64"));
        assert!(same_platform("linux/arm/v7", "linux/arm/v7"));
        assert!(!same_platform("linux/arm/v7", "linux/arm/v6"));
        assert!(!same_platform("linux/arm64", "linux/amd64"));
        assert!(!same_platform("linux/s390x", "linux/386"));
        assert!(!same_platform("windows/amd64", "linux/amd64"));
    }

    #[test]
    fn summary_lines() {
        let info = DaemonInfo {
            package: "github.com/moby/buildkit".into(),
            version: "v0.13.2".into(),
            revision: String::new(),
            workers: vec![WorkerInfo {
                id: "w1".into(),
                platforms: vec!["linux/amd64".into(), "linux/arm64".into()],
                labels: vec![("executor".into(), "oci".into())],
            }],
        };
        assert_eq!(
            info.to_string(),
            "buildkit: github.com/moby/buildkit v0.13.2\nworker w1: platforms linux/amd64,linux/arm64\n  executor=oci\n"
        );
        let info = DaemonInfo { revision: "abc123".into(), workers: vec![], ..info };
        assert_eq!(info.to_string(), "buildkit: github.com/moby/buildkit v0.13.2 (abc123)\n");
    }
}
