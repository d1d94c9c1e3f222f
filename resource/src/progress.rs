//! Progress of long work, on stderr. In a CI log (or with `debug`): one line per blob
//! when it is downloaded and when it is unpacked, with sizes and rates. On a terminal:
//! a bar per blob, redrawn in place while downloads run.

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use kiln_image::oci::Descriptor;

use crate::pull::Spool;

/// Reports the progress of one command's blobs.
pub struct Progress {
    total: usize,
    /// What the blobs are: "layer", "blob".
    noun: &'static str,
    /// Draw bars instead of lines.
    bars: bool,
}

impl Progress {
    pub fn new(noun: &'static str, total: usize) -> Self {
        Self { total, noun, bars: false }
    }

    /// Bars when stderr is a terminal and `debug` is off, lines otherwise.
    pub fn for_terminal(noun: &'static str, total: usize, debug: bool) -> Self {
        use std::io::IsTerminal as _;
        Self { total, noun, bars: std::io::stderr().is_terminal() && !debug }
    }

    /// On a terminal, redraws a bar per spool every 200 ms until all have finished.
    pub fn draw_bars(self: &Arc<Self>, spools: &[Arc<Spool>]) -> Option<tokio::task::JoinHandle<()>> {
        if !self.bars || spools.is_empty() {
            return None;
        }
        let (spools, this) = (spools.to_vec(), self.clone());
        Some(tokio::spawn(async move {
            let mut drawn = false;
            loop {
                let states: Vec<(u64, bool)> = spools.iter().map(|s| s.progress()).collect();
                {
                    let mut out = std::io::stderr().lock();
                    if drawn {
                        let _ = write!(out, "\x1b[{}A", spools.len());
                    }
                    for (i, (spool, (written, done))) in spools.iter().zip(&states).enumerate() {
                        let _ = writeln!(out, "\r\x1b[2K{}", this.bar(i, &spool.descriptor, *written, *done));
                    }
                }
                drawn = true;
                if states.iter().all(|(_, done)| *done) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }))
    }

    fn bar(&self, i: usize, blob: &Descriptor, written: u64, done: bool) -> String {
        const WIDTH: u64 = 30;
        let part = written.min(blob.size);
        let filled = (part * WIDTH).checked_div(blob.size).unwrap_or(WIDTH);
        let percent = (part * 100).checked_div(blob.size).unwrap_or(100);
        format!(
            "  {} {}/{} {} [{}{}] {:>3}% {}/{}{}",
            self.noun,
            i + 1,
            self.total,
            short(&blob.digest),
            "=".repeat(filled as usize),
            " ".repeat((WIDTH - filled) as usize),
            percent,
            human(written),
            human(blob.size),
            if done { " done" } else { "" }
        )
    }

    pub fn downloaded(&self, i: usize, blob: &Descriptor, took: Duration) {
        if self.bars {
            return;
        }
        eprintln!(
            "  {} {}/{} {} downloaded: {} in {:.1}s ({}/s)",
            self.noun,
            i + 1,
            self.total,
            short(&blob.digest),
            human(blob.size),
            took.as_secs_f64(),
            human((blob.size as f64 / took.as_secs_f64().max(0.001)) as u64)
        );
    }

    pub fn unpacked(&self, i: usize, blob: &Descriptor, took: Duration) {
        if self.bars {
            return;
        }
        eprintln!(
            "  {} {}/{} {} unpacked in {:.1}s",
            self.noun,
            i + 1,
            self.total,
            short(&blob.digest),
            took.as_secs_f64()
        );
    }
}

pub use kiln_image::display::{human, short};
