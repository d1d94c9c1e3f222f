//! Progress of long work, on stderr: one line when a blob starts, one when it is done,
//! with sizes and rates, so CI logs show what is happening and where time goes.

use std::time::Duration;

use kiln_image::oci::Descriptor;

/// Reports the progress of one command's blobs.
pub struct Progress {
    total: usize,
    /// What the blobs are: "layer", "blob".
    noun: &'static str,
}

impl Progress {
    pub fn new(noun: &'static str, total: usize) -> Self {
        Self { total, noun }
    }

    pub fn downloaded(&self, i: usize, blob: &Descriptor, took: Duration) {
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

/// `sha256:0123456789ab`
pub fn short(digest: &str) -> &str {
    &digest[..digest.len().min("sha256:".len() + 12)]
}

/// Bytes in binary units: `12.3 MiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes() {
        assert_eq!(human(12), "12 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(5 << 20), "5.0 MiB");
    }
}
