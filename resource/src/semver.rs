//! Semantic versions read the lenient way registry-image-resource reads tags
//! (Masterminds semver v3): an optional `v`, optional minor and patch (`1.2` is
//! `1.2.0`), a prerelease after `-` and build metadata after `+`.

use std::cmp::Ordering;
use std::fmt;

/// A parsed version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    /// Dot-separated prerelease identifiers; empty for a final release.
    pub pre: Vec<String>,
    pub build: String,
}

impl Version {
    /// Parses leniently; `None` for anything that is not a version.
    pub fn parse(text: &str) -> Option<Self> {
        let s = text.strip_prefix('v').unwrap_or(text);
        let (s, build) = match s.split_once('+') {
            Some((v, b)) if valid_identifiers(b, false) => (v, b.to_string()),
            Some(_) => return None,
            None => (s, String::new()),
        };
        let (core, pre) = match s.split_once('-') {
            Some((c, p)) if valid_identifiers(p, true) => (c, p.split('.').map(String::from).collect()),
            Some(_) => return None,
            None => (s, Vec::new()),
        };
        let mut numbers = core.split('.');
        let number = |part: Option<&str>| -> Option<Option<u64>> {
            match part {
                None => Some(None),
                Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                    // Masterminds refuses leading zeros in the core numbers only when strict; lenient takes them.
                    p.parse().ok().map(Some)
                }
                Some(_) => None,
            }
        };
        let major = number(numbers.next())??;
        let minor = number(numbers.next())?.unwrap_or(0);
        let patch = number(numbers.next())?.unwrap_or(0);
        if numbers.next().is_some() {
            return None;
        }
        Some(Version { major, minor, patch, pre, build })
    }

    pub fn is_prerelease(&self) -> bool {
        !self.pre.is_empty()
    }
}

/// Identifiers: non-empty, alphanumerics and hyphens; prerelease numbers without leading zeros.
fn valid_identifiers(s: &str, prerelease: bool) -> bool {
    !s.is_empty()
        && s.split('.').all(|id| {
            !id.is_empty()
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !(prerelease && id.len() > 1 && id.starts_with('0') && id.bytes().all(|b| b.is_ascii_digit()))
        })
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        if !self.pre.is_empty() {
            write!(f, "-{}", self.pre.join("."))?;
        }
        if !self.build.is_empty() {
            write!(f, "+{}", self.build)?;
        }
        Ok(())
    }
}

impl Ord for Version {
    /// Semver precedence: core numbers, then a release above its prereleases, then the
    /// prerelease identifiers (numbers below words, numbers by value). Build metadata is
    /// ignored, except to break ties so that ordering stays total.
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => compare_pre(&self.pre, &other.pre),
            })
            .then_with(|| self.build.cmp(&other.build))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Version {
    /// Precedence alone (build metadata ignored), as semver defines it.
    pub fn precedence(&self, other: &Self) -> Ordering {
        let strip = |v: &Version| Version { build: String::new(), ..v.clone() };
        strip(self).cmp(&strip(other))
    }
}

fn compare_pre(a: &[String], b: &[String]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let order = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(m), Ok(n)) => m.cmp(&n),
            (Ok(_), Err(_)) => Ordering::Less,
            (Err(_), Ok(_)) => Ordering::Greater,
            (Err(_), Err(_)) => x.cmp(y),
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    a.len().cmp(&b.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap_or_else(|| panic!("{s} should parse"))
    }

    #[test]
    fn lenient_parsing() {
        assert_eq!(v("1.2.3").to_string(), "1.2.3");
        assert_eq!(v("v1.2.3").to_string(), "1.2.3");
        assert_eq!(v("1.2").to_string(), "1.2.0");
        assert_eq!(v("1").to_string(), "1.0.0");
        assert_eq!(v("1.2.3-rc.1+build.5").to_string(), "1.2.3-rc.1+build.5");
        for bad in ["", "latest", "1.2.3.4", "1..2", "1.2.3-", "1.2.3-rc..1", "a1.2", "1.2.3-01", "-1"] {
            assert!(Version::parse(bad).is_none(), "{bad} should not parse");
        }
    }

    #[test]
    fn precedence() {
        let ordered = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.1",
            "1.2",
            "2",
        ];
        for pair in ordered.windows(2) {
            assert!(v(pair[0]) < v(pair[1]), "{} < {}", pair[0], pair[1]);
        }
        assert_eq!(v("1.2").precedence(&v("1.2.0+meta")), Ordering::Equal);
    }
}
