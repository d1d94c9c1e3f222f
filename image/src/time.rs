//! Times as OCI configs and TUF metadata write them: RFC 3339, read into seconds and
//! nanoseconds since the epoch, and written back in UTC; and durations as pipelines write
//! them. jiff does the calendar; this module is kiln's one door to it.

/// Seconds and nanoseconds since 1970-01-01T00:00:00Z.
pub type Time = (i64, u32);

/// An RFC 3339 time (`2024-05-01T10:00:00.5+02:00`) as seconds and nanoseconds since the epoch.
pub fn parse(text: &str) -> Option<Time> {
    let at: jiff::Timestamp = text.parse().ok()?;
    Some((at.as_second(), at.subsec_nanosecond() as u32))
}

/// `seconds` since the epoch as a UTC date and time: year, month, day, hour, minute, second.
pub fn civil(seconds: i64) -> (i64, i64, i64, i64, i64, i64) {
    let at = jiff::Timestamp::from_second(seconds).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let t = jiff::tz::TimeZone::UTC.to_datetime(at);
    let small = |v: i8| i64::from(v);
    (i64::from(t.year()), small(t.month()), small(t.day()), small(t.hour()), small(t.minute()), small(t.second()))
}

/// `seconds` since the epoch as `2024-05-01T08:00:00Z`.
pub fn format(seconds: i64) -> String {
    let (year, month, day, hour, minute, second) = civil(seconds);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z")
}

/// Now, in seconds since the epoch.
pub fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// A duration as people write one in a pipeline: `90s`, `2m`, `1h30m`, `1.5h`, or a number
/// of seconds (`90`); `None` for anything else.
pub fn parse_duration(text: &str) -> Option<std::time::Duration> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(std::time::Duration::from_secs(seconds));
    }
    let span: jiff::SignedDuration = text.parse().ok()?;
    std::time::Duration::try_from(span).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse("1970-01-01T00:00:00Z"), Some((0, 0)));
        assert_eq!(parse("2024-02-29T12:30:15.25Z"), Some((1_709_209_815, 250_000_000)));
        assert_eq!(parse("2024-05-01T10:00:00+02:00"), parse("2024-05-01T08:00:00Z"));
        assert_eq!(parse("2024-05-01T01:00:00-03:30"), parse("2024-05-01T04:30:00Z"));
        assert_eq!(parse("0001-01-01T00:00:00Z"), Some((-62_135_596_800, 0)));
        let a = parse("2024-05-01T10:00:00+02:00").unwrap();
        let b = parse("2024-05-01T08:30:00Z").unwrap();
        let c = parse("2024-05-01T08:30:00.123456789Z").unwrap();
        assert!(a < b && b < c, "{a:?} {b:?} {c:?}");
        // Seconds left out (ISO 8601 allows it, RFC 3339 does not): the minute it names.
        assert_eq!(parse("2024-05-01T00:00Z"), parse("2024-05-01T00:00:00Z"));
        for bad in
            ["yesterday", "2024-05-01", "2024-13-01T00:00:00Z", "2024-05-01T25:00:00Z", "2024-05-01T00:00:00.x1Z"]
        {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn formatted_times_read_back() {
        for t in [0, 1_709_209_815, -62_135_596_800, 951_782_400, 4_102_444_799] {
            assert_eq!(parse(&format(t)), Some((t, 0)), "{}", format(t));
        }
        assert_eq!(format(1_709_209_815), "2024-02-29T12:30:15Z");
        assert!(now() > 1_700_000_000);
    }

    #[test]
    fn durations() {
        let secs = |s: u64| Some(std::time::Duration::from_secs(s));
        assert_eq!(parse_duration("90"), secs(90));
        assert_eq!(parse_duration("90s"), secs(90));
        assert_eq!(parse_duration(" 2m "), secs(120));
        assert_eq!(parse_duration("1h"), secs(3600));
        assert_eq!(parse_duration("1h30m"), secs(5400));
        assert_eq!(parse_duration("1.5s"), Some(std::time::Duration::from_millis(1500)));
        for bad in ["", "soon", "5 fortnights", "-3s", "2x"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }
}
