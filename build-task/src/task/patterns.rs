//! `.dockerignore`-style patterns, with the semantics of moby/patternmatcher: `*` and `?`
//! within one path component, `**` across any number of them, `[...]` classes, `\`
//! escapes, `!` for exceptions, the last matching pattern deciding, and a pattern that
//! matches a directory covering everything under it.

/// One compiled pattern.
#[derive(Debug, Clone)]
struct Pattern {
    text: String,
    regex: regex::Regex,
    exclusion: bool,
}

/// A list of patterns, in order.
#[derive(Debug, Clone, Default)]
pub struct PatternList {
    patterns: Vec<Pattern>,
}

impl PatternList {
    /// Compiles patterns as written in `.dockerignore` (comments and blanks already removed).
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self, String> {
        let mut out = Vec::new();
        for raw in patterns {
            let raw = raw.as_ref().trim();
            if raw.is_empty() {
                continue;
            }
            let (exclusion, body) = match raw.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, raw),
            };
            let text = clean(body);
            if text.is_empty() {
                continue;
            }
            let regex = regex::Regex::new(&to_regex(&text)).map_err(|e| format!("pattern {raw:?}: {e}"))?;
            out.push(Pattern { text, regex, exclusion });
        }
        Ok(Self { patterns: out })
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether any `!` exception exists (then excluded directories must still be walked).
    pub fn has_exclusions(&self) -> bool {
        self.patterns.iter().any(|p| p.exclusion)
    }

    /// Whether `path` (slash-separated, relative) is matched: the last pattern that matches
    /// it or one of its parent directories decides.
    pub fn matches(&self, path: &str) -> bool {
        let mut matched = false;
        for p in &self.patterns {
            if p.exclusion != matched {
                continue; // cannot change the outcome
            }
            if matches_or_parent(&p.regex, path) {
                matched = !p.exclusion;
            }
        }
        matched
    }

    /// For include patterns: whether something under directory `dir` may match.
    pub fn may_match_below(&self, dir: &str) -> bool {
        self.patterns.iter().any(|p| {
            let literal: String = p.text.chars().take_while(|c| !"*?[\\".contains(*c)).collect();
            let prefix = format!("{dir}/");
            literal.starts_with(&prefix) || prefix.starts_with(&literal) || p.text.starts_with("**")
        })
    }
}

fn matches_or_parent(regex: &regex::Regex, path: &str) -> bool {
    if regex.is_match(path) {
        return true;
    }
    let mut parent = path;
    while let Some((p, _)) = parent.rsplit_once('/') {
        if regex.is_match(p) {
            return true;
        }
        parent = p;
    }
    false
}

/// `./a//b/../c/` → `a/c`; leading slashes dropped (patterns are relative to the context).
fn clean(pattern: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in pattern.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

fn to_regex(pattern: &str) -> String {
    let mut out = String::from("^");
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '*' if chars.get(i + 1) == Some(&'*') => {
                i += 1;
                if chars.get(i + 1) == Some(&'/') {
                    // "**/" matches zero or more whole directories.
                    out.push_str("(.*/)?");
                    i += 1;
                } else {
                    out.push_str(".*");
                }
            }
            '*' => out.push_str("[^/]*"),
            '?' => out.push_str("[^/]"),
            '[' => {
                let end = chars[i..].iter().position(|&c| c == ']').map(|p| p + i);
                match end {
                    Some(end) => {
                        let class: String = chars[i + 1..end].iter().collect();
                        let class = class.strip_prefix('!').map(|c| format!("^{c}")).unwrap_or(class);
                        out.push('[');
                        out.push_str(&class.replace('\\', "\\\\"));
                        out.push(']');
                        i = end;
                    }
                    None => out.push_str("\\["),
                }
            }
            '\\' if i + 1 < chars.len() => {
                i += 1;
                out.push_str(&regex::escape(&chars[i].to_string()));
            }
            c => out.push_str(&regex::escape(&c.to_string())),
        }
        i += 1;
    }
    out.push('$');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(p: &[&str]) -> PatternList {
        PatternList::new(p).unwrap()
    }

    #[test]
    fn basics() {
        let l = list(&["*.log", "build", "docs/**/*.md", "!docs/keep.md"]);
        assert!(l.matches("a.log"));
        assert!(!l.matches("dir/a.log"), "* stays within a component");
        assert!(l.matches("build"));
        assert!(l.matches("build/x/y"), "a matched directory covers its contents");
        assert!(l.matches("docs/a.md") && l.matches("docs/x/y/a.md"));
        assert!(!l.matches("docs/keep.md"), "exceptions win when last");
        assert!(!l.matches("src/main.rs"));
        assert!(l.has_exclusions());
        // Without a `!` nothing excluded needs walking (context.rs skips such folders whole).
        assert!(!list(&["*.log", "build"]).has_exclusions());
        assert!(!PatternList::default().has_exclusions());
    }

    #[test]
    fn double_star_and_classes() {
        let l = list(&["**/*.tmp", "file[0-9]", "/abs", "./dot/"]);
        assert!(l.matches("a.tmp") && l.matches("x/y/a.tmp"));
        assert!(l.matches("file7") && !l.matches("filex"));
        assert!(l.matches("abs") && l.matches("dot/inner"));
    }

    #[test]
    fn everything_but() {
        let l = list(&["*", "!greet.sh"]);
        assert!(l.matches("Dockerfile"));
        assert!(!l.matches("greet.sh"));
    }

    #[test]
    fn include_lookahead() {
        let l = list(&["sub/dir/Dockerfile"]);
        assert!(l.may_match_below("sub") && l.may_match_below("sub/dir"));
        assert!(!l.may_match_below("other"));
        // A pattern naming a folder covers every folder below it.
        assert!(list(&["sub"]).may_match_below("sub/dir/deeper"));
        assert!(list(&["**/Dockerfile"]).may_match_below("anywhere"));
    }

    #[test]
    fn backslash_escapes_the_next_character() {
        let l = list(&["file\\*", "a\\?b", "br\\[x]"]);
        assert!(l.matches("file*") && !l.matches("fileabc"), "\\* is a literal star");
        assert!(l.matches("a?b") && !l.matches("axb"), "\\? is a literal question mark");
        assert!(l.matches("br[x]") && !l.matches("brx"), "\\[ opens no class");
        // A backslash with nothing after it stands for itself.
        let trailing = list(&["end\\"]);
        assert!(trailing.matches("end\\") && !trailing.matches("end"));
    }
}
