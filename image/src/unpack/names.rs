//! Entry names: split into components, checked, and sorted into whiteouts and the rest.

/// The longest entry name we take: Linux's `PATH_MAX`. Nothing longer can be opened by
/// path on the target system anyway, and a limit keeps a hostile name from making
/// thousands of nested directories.
pub const MAX_NAME: usize = 4096;

/// The prefix of a whiteout entry's base name.
pub const WHITEOUT: &[u8] = b".wh.";
/// The base name that makes its directory opaque.
pub const OPAQUE: &[u8] = b".wh..wh..opq";

/// Splits a name into its components, relative to the root: `./a//b/` → `[a, b]`,
/// `a/../b` → `[b]`. Refuses absolute names and names whose `..` climb above the root:
/// a layer names paths relative to the root and never leaves it.
pub fn components(name: &[u8]) -> Result<Vec<&[u8]>, &'static str> {
    if name.starts_with(b"/") {
        return Err("absolute path: layer entries must be relative to the root");
    }
    if name.len() > MAX_NAME {
        return Err("name longer than 4096 bytes (PATH_MAX)");
    }
    if name.contains(&0) {
        return Err("NUL byte in the name");
    }
    let mut out: Vec<&[u8]> = Vec::new();
    for c in name.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                if out.pop().is_none() {
                    return Err("'..' would climb out of the root");
                }
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// What a base name asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Kind<'a> {
    /// An ordinary entry to create.
    Plain,
    /// `.wh..wh..opq`: remove what lower layers put in the directory.
    Opaque,
    /// `.wh.<name>`: remove `<name>` as lower layers left it.
    Whiteout(&'a [u8]),
}

/// Classifies a base name, refusing whiteouts that name no sibling (`.wh.`, `.wh..`, `.wh...`).
pub fn kind(base: &[u8]) -> Result<Kind<'_>, &'static str> {
    if base == OPAQUE {
        return Ok(Kind::Opaque);
    }
    match base.strip_prefix(WHITEOUT) {
        None => Ok(Kind::Plain),
        Some(b"" | b"." | b"..") => Err("whiteout names no entry of its directory"),
        Some(victim) => Ok(Kind::Whiteout(victim)),
    }
}

/// Joins components with `/` (the root is the empty path).
pub fn join(components: &[&[u8]]) -> Vec<u8> {
    components.join(&b'/')
}

/// `dir/name`, or `name` when `dir` is the root.
pub fn child(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut path = Vec::with_capacity(dir.len() + 1 + name.len());
    if !dir.is_empty() {
        path.extend_from_slice(dir);
        path.push(b'/');
    }
    path.extend_from_slice(name);
    path
}

/// An entry name fit for an error message: lossy UTF-8, and cut short when very long.
pub fn display(name: &[u8]) -> String {
    const SHOWN: usize = 256;
    if name.len() <= SHOWN {
        return String::from_utf8_lossy(name).into_owned();
    }
    format!("{}… ({} bytes)", String::from_utf8_lossy(&name[..SHOWN]), name.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_split_and_checked() {
        assert_eq!(components(b"./a//b/").unwrap(), vec![b"a".as_slice(), b"b"]);
        assert_eq!(components(b"a/../b").unwrap(), vec![b"b".as_slice()]);
        assert_eq!(components(b"a/b/../../c/.").unwrap(), vec![b"c".as_slice()]);
        assert!(components(b"").unwrap().is_empty());
        assert!(components(b"./").unwrap().is_empty());
        assert!(components(b"a/..").unwrap().is_empty());
        assert!(components(b"/etc/passwd").is_err());
        assert!(components(b"a/../../b").is_err());
        assert!(components(b"..").is_err());
        assert!(components(b"../x").is_err());
        assert!(components(b"a/\0b").is_err());
        assert!(components("d/".repeat(2049).as_bytes()).is_err());
    }

    #[test]
    fn whiteouts_are_recognised() {
        assert_eq!(kind(b"file").unwrap(), Kind::Plain);
        assert_eq!(kind(b".wh.file").unwrap(), Kind::Whiteout(b"file"));
        assert_eq!(kind(b".wh..wh..opq").unwrap(), Kind::Opaque);
        assert_eq!(kind(b".wh..wh.plnk").unwrap(), Kind::Whiteout(b".wh.plnk"));
        for bad in [&b".wh."[..], b".wh..", b".wh..."] {
            assert!(kind(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn long_names_are_shortened_for_messages() {
        assert_eq!(display(b"etc/passwd"), "etc/passwd");
        let long = display(&[b'd'; 70_000]);
        assert!(long.len() < 300 && long.ends_with("(70000 bytes)"), "{long}");
    }
}
