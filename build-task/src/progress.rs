//! BuildKit's progress (`Control.Status`) rendered the way `buildctl --progress=plain`
//! prints it: `#N name`, log lines with seconds since the step started, then `DONE`,
//! `CACHED` or `ERROR`.

use std::collections::HashMap;
use std::io::Write as _;

use kiln_proto::moby::buildkit::v1::StatusResponse;

#[derive(Default)]
struct Step {
    number: usize,
    name: String,
    started: Option<f64>,
    announced: bool,
    finished: bool,
}

/// Prints progress updates to stderr as they arrive.
#[derive(Default)]
pub struct PlainProgress {
    steps: HashMap<String, Step>,
    next: usize,
}

fn seconds(t: &Option<prost_types::Timestamp>) -> Option<f64> {
    t.as_ref().map(|t| t.seconds as f64 + t.nanos as f64 / 1e9)
}

impl PlainProgress {
    pub fn update(&mut self, status: &StatusResponse) {
        let mut err = std::io::stderr().lock();
        for v in &status.vertexes {
            let step = self
                .steps
                .entry(v.digest.clone())
                .or_insert_with(|| Step { name: v.name.clone(), ..Default::default() });
            if step.started.is_none() {
                step.started = seconds(&v.started);
            }
            if !step.announced && (v.started.is_some() || v.cached) {
                step.announced = true;
                self.next += 1;
                step.number = self.next;
                let _ = writeln!(err, "#{} {}", step.number, step.name);
            }
            if step.finished {
                continue;
            }
            if !v.error.is_empty() {
                step.finished = true;
                let _ = writeln!(err, "#{} ERROR: {}\n", step.number, v.error);
            } else if v.cached {
                step.finished = true;
                let _ = writeln!(err, "#{} CACHED\n", step.number);
            } else if let (Some(done), Some(start)) = (seconds(&v.completed), step.started) {
                step.finished = true;
                let _ = writeln!(err, "#{} DONE {:.1}s\n", step.number, (done - start).max(0.0));
            }
        }
        for log in &status.logs {
            let Some(step) = self.steps.get(&log.vertex) else { continue };
            let at = match (seconds(&log.timestamp), step.started) {
                (Some(t), Some(s)) => (t - s).max(0.0),
                _ => 0.0,
            };
            for line in String::from_utf8_lossy(&log.msg).lines() {
                let _ = writeln!(err, "#{} {at:.3} {line}", step.number);
            }
        }
        for warning in &status.warnings {
            let _ = writeln!(err, "WARNING: {}", String::from_utf8_lossy(&warning.short));
        }
    }
}
