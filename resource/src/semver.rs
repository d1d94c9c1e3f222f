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

/// A version constraint in Masterminds' syntax: comparisons (`=`, `!=`, `>`, `<`, `>=`,
/// `<=`), `~` and `^` ranges, `x`/`*` wildcards and missing parts, hyphen ranges
/// (`1.2 - 1.4.5`), `,` or spaces for AND, `||` for OR. A prerelease version matches
/// only comparators that name a prerelease themselves.
#[derive(Debug, Clone)]
pub struct Constraint {
    any_of: Vec<Vec<Comparator>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Tilde,
    Caret,
}

/// One comparison against a possibly partial version (`1.2` has no patch: a wildcard).
#[derive(Debug, Clone)]
struct Comparator {
    op: Op,
    major: Option<u64>,
    minor: Option<u64>,
    patch: Option<u64>,
    pre: Vec<String>,
}

impl Constraint {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut any_of = Vec::new();
        for group in text.split("||") {
            let mut tokens: Vec<String> = Vec::new();
            for raw in group.split([',', ' ', '\t']).filter(|t| !t.is_empty()) {
                match tokens.last_mut() {
                    // An operator written apart from its version: ">= 1.2".
                    Some(last) if last.chars().all(|c| "=!<>~^".contains(c)) && !last.is_empty() => last.push_str(raw),
                    _ => tokens.push(raw.to_string()),
                }
            }
            let mut all_of = Vec::new();
            let mut i = 0;
            while i < tokens.len() {
                if tokens.get(i + 1).is_some_and(|t| t == "-") {
                    let upper = tokens.get(i + 2).ok_or_else(|| format!("{text:?}: a range needs an upper bound"))?;
                    all_of.push(Comparator::parse(&format!(">={}", tokens[i]), text)?);
                    all_of.push(Comparator::parse(&format!("<={upper}"), text)?);
                    i += 3;
                } else {
                    all_of.push(Comparator::parse(&tokens[i], text)?);
                    i += 1;
                }
            }
            if all_of.is_empty() {
                return Err(format!("{text:?}: an empty alternative"));
            }
            any_of.push(all_of);
        }
        Ok(Constraint { any_of })
    }

    pub fn matches(&self, v: &Version) -> bool {
        self.any_of.iter().any(|all| all.iter().all(|c| c.matches(v)))
    }
}

impl Comparator {
    fn parse(token: &str, whole: &str) -> Result<Self, String> {
        let bad = || format!("{whole:?}: {token:?} is not a version comparison");
        let split = token.find(|c: char| !"=!<>~^v".contains(c) || c == 'v').unwrap_or(token.len());
        let (op, rest) = token.split_at(split);
        let op = match op {
            "" | "=" | "==" => Op::Eq,
            "!=" => Op::Ne,
            ">" => Op::Gt,
            ">=" | "=>" => Op::Ge,
            "<" => Op::Lt,
            "<=" | "=<" => Op::Le,
            "~" | "~>" => Op::Tilde,
            "^" => Op::Caret,
            _ => return Err(bad()),
        };
        let rest = rest.strip_prefix('v').unwrap_or(rest);
        let (rest, _build) = rest.split_once('+').unwrap_or((rest, ""));
        let (core, pre) = match rest.split_once('-') {
            Some((c, p)) if !p.is_empty() => (c, p.split('.').map(String::from).collect()),
            Some(_) => return Err(bad()),
            None => (rest, Vec::new()),
        };
        let mut parts = core.split('.');
        let mut part = || -> Result<Option<u64>, String> {
            match parts.next() {
                None | Some("x") | Some("X") | Some("*") => Ok(None),
                Some(p) => p.parse().map(Some).map_err(|_| bad()),
            }
        };
        let (major, minor, patch) = (part()?, part()?, part()?);
        if core.is_empty() || parts.next().is_some() || (major.is_none() && !matches!(core, "x" | "X" | "*")) {
            return Err(bad());
        }
        // A wildcard makes everything after it a wildcard too.
        let minor = major.and(minor);
        let patch = minor.and(patch);
        Ok(Comparator { op, major, minor, patch, pre })
    }

    fn base(&self) -> Version {
        Version {
            major: self.major.unwrap_or(0),
            minor: self.minor.unwrap_or(0),
            patch: self.patch.unwrap_or(0),
            pre: self.pre.clone(),
            build: String::new(),
        }
    }

    /// The first version past a partial one: `1.2` → `1.3.0`, `1` → `2.0.0`; `None` for `*`.
    fn next(&self) -> Option<Version> {
        let v = |major, minor, patch| Version { major, minor, patch, pre: Vec::new(), build: String::new() };
        match (self.major, self.minor, self.patch) {
            (Some(m), Some(n), Some(p)) => Some(v(m, n, p)),
            (Some(m), Some(n), None) => Some(v(m, n + 1, 0)),
            (Some(m), None, _) => Some(v(m + 1, 0, 0)),
            (None, _, _) => None,
        }
    }

    fn matches(&self, v: &Version) -> bool {
        if v.is_prerelease() && self.pre.is_empty() && self.op != Op::Ne {
            return false;
        }
        let exact = self.patch.is_some();
        let base = self.base();
        let below_next = |v: &Version| self.next().is_none_or(|n| v.precedence(&n).is_lt());
        let at_least = |v: &Version, floor: &Version| v.precedence(floor).is_ge();
        match self.op {
            Op::Eq if exact => v.precedence(&base).is_eq(),
            Op::Eq => at_least(v, &base) && below_next(v),
            Op::Ne if exact => !v.precedence(&base).is_eq(),
            Op::Ne => !(at_least(v, &base) && below_next(v)),
            Op::Gt if exact => v.precedence(&base).is_gt(),
            Op::Gt => self.next().is_some_and(|n| at_least(v, &n)),
            Op::Ge => at_least(v, &base),
            Op::Lt => v.precedence(&base).is_lt(),
            Op::Le if exact => v.precedence(&base).is_le(),
            Op::Le => below_next(v),
            Op::Tilde => {
                let upper = match (self.major, self.minor) {
                    (Some(m), Some(n)) => (m, n + 1),
                    (Some(m), None) => (m + 1, 0),
                    (None, _) => return true,
                };
                at_least(v, &base) && (v.major, v.minor) < upper
            }
            Op::Caret => {
                let (m, n, p) = (base.major, base.minor, base.patch);
                let within = match (self.major, self.minor, self.patch) {
                    (None, _, _) => true,
                    _ if m > 0 => v.major == m,
                    (_, None, _) => v.major == 0,
                    _ if n > 0 => v.major == 0 && v.minor == n,
                    (_, Some(_), None) => v.major == 0 && v.minor == 0,
                    _ => v.major == 0 && v.minor == 0 && v.patch == p,
                };
                at_least(v, &base) && within
            }
        }
    }
}

#[cfg(test)]
mod constraint_tests {
    use super::*;

    fn check(constraint: &str, version: &str) -> bool {
        Constraint::parse(constraint).unwrap().matches(&Version::parse(version).unwrap())
    }

    #[test]
    fn comparisons_and_wildcards() {
        let cases = [
            ("1.2.3", "1.2.3", true),
            ("=1.2.3", "1.2.4", false),
            ("!=1.2.3", "1.2.4", true),
            (">1.2.3", "1.2.4", true),
            (">1.2", "1.2.9", false),
            (">1.2", "1.3.0", true),
            (">=1.2", "1.2.0", true),
            ("<1.2", "1.1.9", true),
            ("<1.2", "1.2.0", false),
            ("<=1.2", "1.2.9", true),
            ("<=1.2.3", "1.2.4", false),
            ("1.2.x", "1.2.7", true),
            ("1.2.x", "1.3.0", false),
            ("1.x", "1.9.9", true),
            ("*", "9.9.9", true),
            ("1.2", "1.2.5", true),
        ];
        for (c, v, want) in cases {
            assert_eq!(check(c, v), want, "{c} vs {v}");
        }
    }

    #[test]
    fn ranges() {
        let cases = [
            ("~1.2.3", "1.2.9", true),
            ("~1.2.3", "1.3.0", false),
            ("~1.2", "1.2.0", true),
            ("~1", "1.9.0", true),
            ("~1", "2.0.0", false),
            ("^1.2.3", "1.9.0", true),
            ("^1.2.3", "2.0.0", false),
            ("^1.2.3", "1.2.2", false),
            ("^0.2.3", "0.2.9", true),
            ("^0.2.3", "0.3.0", false),
            ("^0.0.3", "0.0.3", true),
            ("^0.0.3", "0.0.4", false),
            ("^0.0", "0.0.9", true),
            ("^0", "0.9.9", true),
            ("1.2 - 1.4.5", "1.4.5", true),
            ("1.2 - 1.4.5", "1.4.6", false),
            ("1.2 - 1.4.5", "1.1.9", false),
            (">= 1.2, < 3.0", "2.9.9", true),
            (">= 1.2 < 3.0", "3.0.0", false),
            ("<1.0 || >=2.0", "0.5.0", true),
            ("<1.0 || >=2.0", "1.5.0", false),
            ("<1.0 || >=2.0", "2.5.0", true),
        ];
        for (c, v, want) in cases {
            assert_eq!(check(c, v), want, "{c} vs {v}");
        }
    }

    #[test]
    fn prereleases_need_a_prerelease_constraint() {
        assert!(!check(">=1.0.0", "2.0.0-rc.1"));
        assert!(check(">=1.0.0-alpha", "2.0.0-rc.1"));
        assert!(!check("~1.2", "1.2.5-beta"));
    }

    #[test]
    fn bad_constraints_are_refused() {
        for bad in ["", ">", "abc", "1.2.3.4", ">=1.2 ||", "1.2 -", "=>>1"] {
            assert!(Constraint::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
