//! Times as OCI configs and TUF metadata write them: RFC 3339, read into seconds and
//! nanoseconds since the epoch, and written back in UTC.

/// Seconds and nanoseconds since 1970-01-01T00:00:00Z.
pub type Time = (i64, u32);

/// An RFC 3339 time (`2024-05-01T10:00:00.5+02:00`) as seconds and nanoseconds since the epoch.
pub fn parse(text: &str) -> Option<Time> {
    let (date, rest) = text.split_once(['T', 't'])?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (d.next()??, d.next()??, d.next()??);
    let zone_at = rest.find(['Z', 'z', '+', '-']).unwrap_or(rest.len());
    let (clock, zone) = rest.split_at(zone_at);
    let (hms, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hour, minute, second) = (t.next()??, t.next()??, t.next()??);
    let valid = (1..=12).contains(&month)
        && (1..=31).contains(&day)
        && (0..24).contains(&hour)
        && (0..60).contains(&minute)
        && (0..=60).contains(&second)
        && fraction.len() <= 9
        && fraction.bytes().all(|b| b.is_ascii_digit());
    if !valid {
        return None;
    }
    let offset = match zone {
        "" | "Z" | "z" => 0,
        zone => {
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            let (h, m) = zone[1..].split_once(':')?;
            sign * (h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60)
        }
    };
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset;
    let nanos = format!("{fraction:0<9}").parse().ok()?;
    Some((seconds, nanos))
}

/// Days since 1970-01-01 of a date in the proleptic Gregorian calendar, from March-based years.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let (y, m) = if month <= 2 { (year - 1, month + 9) } else { (year, month - 3) };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * m + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// `seconds` since the epoch as a UTC date and time: year, month, day, hour, minute, second.
pub fn civil(seconds: i64) -> (i64, i64, i64, i64, i64, i64) {
    let days = seconds.div_euclid(86_400);
    let rest = seconds.rem_euclid(86_400);
    // The inverse of days_from_civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let m = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * m + 2) / 5 + 1;
    let month = if m < 10 { m + 3 } else { m - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day, rest / 3600, rest % 3600 / 60, rest % 60)
}

/// `seconds` since the epoch as `2024-05-01T08:00:00Z`.
pub fn format(seconds: i64) -> String {
    let (year, month, day, hour, minute, second) = civil(seconds);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z")
}

/// Now, in seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
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
        for bad in ["yesterday", "2024-05-01", "2024-13-01T00:00:00Z", "2024-05-01T00:00Z", "2024-05-01T00:00:00.x1Z"] {
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
}
