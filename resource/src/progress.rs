//! Progress of long work, on stderr. In a CI log (or with `debug`): one line per blob
//! when it is downloaded and when it is unpacked, with sizes and rates. On a terminal:
//! a bar per blob (indicatif's, fitted to the terminal's width), redrawn in place while
//! downloads run.
//!
//! Whatever moves bytes reports them to the [`BlobBar`] it was given; this module knows
//! nothing of where they come from.

use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use kiln_image::oci::Descriptor;

/// The fewest columns the whole bar line is drawn in: the prefix, a short bar, and a
/// size such as `1023.61 KiB/1023.61 KiB done`.
const WIDE: u16 = 72;

/// Reports the progress of one command's blobs.
pub struct Progress {
    total: usize,
    /// What the blobs are: "layer", "blob".
    noun: &'static str,
    /// The bars, when they are drawn instead of lines.
    bars: Option<Bars>,
}

/// Bars on a terminal, and whether it is wide enough for the whole line (decided once).
struct Bars {
    multi: MultiProgress,
    wide: bool,
}

impl Progress {
    pub fn new(noun: &'static str, total: usize) -> Self {
        Self { total, noun, bars: None }
    }

    /// Bars when stderr is a terminal and `debug` is off, lines otherwise.
    pub fn for_terminal(noun: &'static str, total: usize, debug: bool) -> Self {
        use std::io::IsTerminal as _;
        // A terminal too narrow for the whole line gets the count and the percentage: a
        // line that wraps is redrawn correctly, but half a bar per line says little.
        let bars = (std::io::stderr().is_terminal() && !debug).then(|| Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(5)),
            wide: console::Term::stderr().size_checked().is_none_or(|(_, columns)| columns >= WIDE),
        });
        Self { total, noun, bars }
    }

    /// The bar of blob `i` (none when lines are printed instead). Bars appear in the order
    /// they are asked for.
    pub fn bar(&self, i: usize, blob: &Descriptor) -> BlobBar {
        BlobBar(self.bars.as_ref().map(|bars| {
            let (template, prefix) = if bars.wide {
                (
                    "  {prefix} [{wide_bar}] {percent:>3}% {binary_bytes}/{binary_total_bytes}{msg}",
                    format!("{} {}/{} {}", self.noun, i + 1, self.total, blob.digest.short()),
                )
            } else {
                ("  {prefix} {percent:>3}% {binary_bytes}{msg}", format!("{} {}/{}", self.noun, i + 1, self.total))
            };
            let style = ProgressStyle::with_template(template).expect("a valid template").progress_chars("=> ");
            let bar = bars.multi.add(ProgressBar::new(blob.size).with_style(style));
            bar.set_prefix(prefix);
            bar
        }))
    }

    /// Leaves the bars as they last were, the cursor on the line below them, and draws no
    /// more (a download still running after a failure stays quiet).
    pub fn end(&self) {
        if let Some(bars) = &self.bars {
            bars.multi.set_draw_target(ProgressDrawTarget::hidden());
            eprintln!();
        }
    }

    pub fn downloaded(&self, i: usize, blob: &Descriptor, took: Duration) {
        if self.bars.is_some() {
            return;
        }
        eprintln!(
            "  {} {}/{} {} downloaded: {} in {:.1}s ({}/s)",
            self.noun,
            i + 1,
            self.total,
            blob.digest.short(),
            human(blob.size),
            took.as_secs_f64(),
            human((blob.size as f64 / took.as_secs_f64().max(0.001)) as u64)
        );
    }

    pub fn unpacked(&self, i: usize, blob: &Descriptor, took: Duration) {
        if self.bars.is_some() {
            return;
        }
        eprintln!(
            "  {} {}/{} {} unpacked in {:.1}s",
            self.noun,
            i + 1,
            self.total,
            blob.digest.short(),
            took.as_secs_f64()
        );
    }
}

/// One blob's bar, or nothing when progress goes to a log as lines.
pub struct BlobBar(Option<ProgressBar>);

impl BlobBar {
    /// `n` more bytes arrived.
    pub fn advance(&self, n: u64) {
        if let Some(bar) = &self.0 {
            bar.inc(n);
        }
    }

    /// The blob has all arrived (`Ok`) or its download failed: the bar's last state.
    pub fn finish(&self, result: &Result<(), String>) {
        match (&self.0, result) {
            (Some(bar), Ok(())) => bar.finish_with_message(" done"),
            (Some(bar), Err(_)) => bar.abandon_with_message(" failed"),
            (None, _) => {}
        }
    }
}

pub use kiln_image::display::human;
