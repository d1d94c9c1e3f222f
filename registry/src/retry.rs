//! When the registry client tries again, and how long it waits first: the one retry policy.
//!
//! - A request ([`crate::Client`]'s every call) is sent again after a 429, 502, 503 or 504
//!   or a broken connection, up to [`RETRIES`] times.
//! - An upload that failed midway is started over from its `POST`, up to
//!   [`UPLOAD_ATTEMPTS`] attempts in all ([`restarts_upload`] says which failures).
//! - A download that broke off is picked up again from where it stopped, up to
//!   [`RESUMES`] times.
//!
//! Waits double from 0.5 s to 8 s, and each is drawn at random from its upper half, so
//! parallel uploads that one 429 stopped together do not all come back at once. A
//! `Retry-After` in seconds is honoured up to 30 s. A command gives up within about a
//! minute per request.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::error::RegistryError;

/// Retries of one request.
pub(crate) const RETRIES: u32 = 5;
/// Attempts of one upload, the first included.
pub(crate) const UPLOAD_ATTEMPTS: u32 = 3;
/// Resumptions of one download.
pub(crate) const RESUMES: u32 = 5;

const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(8);
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// Answers worth sending the request again for: the registry is limiting or overloaded.
pub(crate) fn retryable_status(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS
            | StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT
    )
}

/// Connection resets, refused connections during a restart, timeouts, early EOF; not a
/// certificate kiln refused, which stays refused.
pub(crate) fn transient(e: &reqwest::Error) -> bool {
    (e.is_connect() || e.is_timeout() || e.is_request() || e.is_body())
        && crate::tls::untrusted_certificate(e).is_none()
}

/// Upload failures worth starting the upload over for: the network, a digest the registry
/// reported wrongly, a server error, or an upload session the registry lost (404).
pub(crate) fn restarts_upload(e: &RegistryError) -> bool {
    match e {
        RegistryError::Unreachable { .. } | RegistryError::DigestMismatch { .. } => true,
        RegistryError::Status { status, .. } => status.is_server_error() || *status == StatusCode::NOT_FOUND,
        _ => false,
    }
}

/// How long to wait before retry `attempt + 1`: the answer's `Retry-After` if it has one,
/// otherwise the backoff with jitter.
pub(crate) fn delay(attempt: u32, headers: Option<&HeaderMap>) -> Duration {
    headers.and_then(retry_after).unwrap_or_else(|| jittered(backoff(attempt), random()))
}

fn backoff(attempt: u32) -> Duration {
    FIRST_BACKOFF.saturating_mul(1 << attempt.min(8)).min(MAX_BACKOFF)
}

/// A wait between half of `base` and `base`, chosen by `random`.
fn jittered(base: Duration, random: u64) -> Duration {
    let half = base / 2;
    half + Duration::from_nanos(random % (half.as_nanos() as u64 + 1))
}

/// 64 random bits, enough to spread waits: std's hasher keys are drawn from the system's
/// random source.
fn random() -> u64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos() as u64
    );
    h.finish()
}

/// `Retry-After` in seconds (the HTTP-date form is rare for registries and ignored).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = crate::call::header_str(headers, RETRY_AFTER.as_str())?.trim().parse().ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(0), Duration::from_millis(500));
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(4), Duration::from_secs(8));
        assert_eq!(backoff(30), MAX_BACKOFF);
    }

    #[test]
    fn waits_are_spread_over_the_upper_half_of_the_backoff() {
        let base = Duration::from_secs(2);
        assert_eq!(jittered(base, 0), Duration::from_secs(1));
        assert_eq!(jittered(base, 1_000_000_000), base);
        assert_eq!(jittered(base, 1_000_000_001), Duration::from_secs(1));
        let waits: std::collections::HashSet<Duration> = (0..50).map(|_| delay(2, None)).collect();
        assert!(waits.iter().all(|w| (Duration::from_secs(1)..=base).contains(w)), "{waits:?}");
        // Fifty uploads stopped by one 429 do not come back at one instant.
        assert!(waits.len() > 40, "only {} distinct waits of 50", waits.len());
    }

    #[test]
    fn retry_after_is_bounded_and_wins_over_the_backoff() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        assert_eq!(delay(0, Some(&h)), Duration::from_secs(3));
        h.insert(RETRY_AFTER, HeaderValue::from_static("3600"));
        assert_eq!(retry_after(&h), Some(MAX_RETRY_AFTER));
        h.insert(RETRY_AFTER, HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(retry_after(&h), None);
        assert!(delay(0, Some(&h)) <= FIRST_BACKOFF);
    }

    #[test]
    fn uploads_restart_on_the_network_and_server_errors_only() {
        let status = |s: u16| RegistryError::Status {
            registry: "r".into(),
            what: "w".into(),
            status: StatusCode::from_u16(s).unwrap(),
            body: String::new(),
        };
        assert!(restarts_upload(&RegistryError::Unreachable { registry: "r".into(), detail: "reset".into() }));
        assert!(restarts_upload(&status(500)) && restarts_upload(&status(404)));
        assert!(!restarts_upload(&status(400)) && !restarts_upload(&status(401)));
    }
}
