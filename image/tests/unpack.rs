//! The unpacker against crafted layers: OCI semantics, and hostile entries that must
//! be refused without anything outside the root being created or changed.

use std::fs;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use kiln_image::unpack::{UnpackError, UnpackOptions, Unpacker};

/// One entry of a crafted layer.
enum E<'a> {
    Dir(&'a str, u32),
    File(&'a str, u32, &'a [u8]),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    Fifo(&'a str),
    CharDev(&'a str),
    /// A header whose name is written raw (to get past the tar crate's own checks).
    RawName(&'a [u8], &'a [u8]),
}

fn layer(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_600_000_000);
        h.set_uid(0);
        h.set_gid(0);
        let (name, data): (&str, &[u8]) = match e {
            E::Dir(n, m) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*m);
                (n, b"")
            }
            E::File(n, m, d) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*m);
                (n, d)
            }
            E::Symlink(n, t) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_link_name_literal(t).unwrap();
                (n, b"")
            }
            E::Hardlink(n, t) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_mode(0o644);
                h.set_link_name_literal(t).unwrap();
                (n, b"")
            }
            E::Fifo(n) => {
                h.set_entry_type(tar::EntryType::Fifo);
                h.set_mode(0o644);
                (n, b"")
            }
            E::CharDev(n) => {
                h.set_entry_type(tar::EntryType::Char);
                h.set_mode(0o666);
                (n, b"")
            }
            E::RawName(n, d) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(d.len() as u64);
                let gnu = h.as_gnu_mut().unwrap();
                gnu.name = [0; 100];
                gnu.name[..n.len()].copy_from_slice(n);
                h.set_cksum();
                b.append(&h, *d).unwrap();
                continue;
            }
        };
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, data).unwrap();
    }
    b.into_inner().unwrap()
}

/// A root inside a sandbox, with a sentinel folder beside it that no layer may touch.
struct Sandbox {
    _dir: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        let outside = dir.path().join("outside");
        fs::create_dir_all(&root).unwrap();
        fs::create_dir_all(outside.join("etc")).unwrap();
        fs::write(outside.join("etc/passwd"), "sentinel").unwrap();
        Self { _dir: dir, root, outside }
    }

    fn apply(&self, layers: &[Vec<u8>]) -> Result<(), UnpackError> {
        let mut u = Unpacker::new(&self.root, UnpackOptions::default())?;
        for (i, l) in layers.iter().enumerate() {
            u.apply_layer(&format!("layer{i}"), l.as_slice())?;
        }
        Ok(())
    }

    fn outside_untouched(&self) {
        let mut names: Vec<_> = walk(&self.outside);
        names.sort();
        assert_eq!(names, ["etc", "etc/passwd"], "something was written outside the root");
        assert_eq!(fs::read_to_string(self.outside.join("etc/passwd")).unwrap(), "sentinel");
        let parent: Vec<_> =
            fs::read_dir(self.root.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(parent.len(), 2, "new entries beside the root: {parent:?}");
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let rel = e.file_name().into_string().unwrap();
        out.push(rel.clone());
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&e.path()).into_iter().map(|c| format!("{rel}/{c}")));
        }
    }
    out
}

#[test]
fn whiteouts_remove_lower_entries() {
    let s = Sandbox::new();
    let lower = layer(&[
        E::Dir("a", 0o755),
        E::File("a/keep", 0o644, b"k"),
        E::File("a/gone", 0o644, b"g"),
        E::Dir("a/sub", 0o755),
        E::File("a/sub/x", 0o644, b"x"),
    ]);
    let upper = layer(&[E::File("a/.wh.gone", 0o644, b""), E::File("a/.wh.sub", 0o644, b"")]);
    s.apply(&[lower, upper]).unwrap();
    assert!(s.p("a/keep").exists());
    assert!(!s.p("a/gone").exists() && !s.p("a/sub").exists());
    assert!(!s.p("a/.wh.gone").exists(), "whiteout markers are not files");
}

#[test]
fn opaque_directories_in_either_order() {
    for marker_first in [true, false] {
        let s = Sandbox::new();
        let lower = layer(&[E::Dir("d", 0o755), E::File("d/old", 0o644, b"o"), E::Dir("d/olddir", 0o755)]);
        let mut upper = vec![E::Dir("d", 0o755), E::File("d/new", 0o644, b"n")];
        let marker = E::File("d/.wh..wh..opq", 0o644, b"");
        if marker_first {
            upper.insert(1, marker)
        } else {
            upper.push(marker)
        }
        s.apply(&[lower, layer(&upper)]).unwrap();
        let mut names = walk(&s.p("d"));
        names.sort();
        assert_eq!(names, ["new"], "marker first: {marker_first}");
    }
}

#[test]
fn modes_owners_and_times() {
    let s = Sandbox::new();
    let l = layer(&[
        E::Dir("bin", 0o755),
        E::File("bin/su", 0o4755, b"su"),
        E::Dir("tmp", 0o1777),
        E::File("bin/sg", 0o2711, b"sg"),
    ]);
    s.apply(&[l]).unwrap();
    let mode = |p: &str| fs::symlink_metadata(s.p(p)).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode("bin/su"), 0o4755);
    assert_eq!(mode("bin/sg"), 0o2711);
    assert_eq!(mode("tmp"), 0o1777);
    assert_eq!(fs::metadata(s.p("bin/su")).unwrap().mtime(), 1_600_000_000);
    assert_eq!(fs::metadata(s.p("bin")).unwrap().mtime(), 1_600_000_000, "directory times survive their contents");
}

#[test]
fn links_fifos_and_devices() {
    let s = Sandbox::new();
    let l = layer(&[
        E::File("target", 0o644, b"t"),
        E::Hardlink("hard", "target"),
        E::Symlink("soft", "target"),
        E::Fifo("pipe"),
        E::CharDev("dev/null"),
    ]);
    s.apply(&[l]).unwrap();
    assert_eq!(fs::metadata(s.p("hard")).unwrap().ino(), fs::metadata(s.p("target")).unwrap().ino());
    assert_eq!(fs::read_link(s.p("soft")).unwrap(), Path::new("target"));
    use std::os::unix::fs::FileTypeExt as _;
    assert!(fs::symlink_metadata(s.p("pipe")).unwrap().file_type().is_fifo());
    assert!(!s.p("dev/null").exists(), "device nodes are skipped");
}

#[test]
fn a_hardlink_outlives_its_removed_source() {
    let s = Sandbox::new();
    let lower = layer(&[E::File("src", 0o644, b"data"), E::Hardlink("link", "src")]);
    let upper = layer(&[E::File(".wh.src", 0o644, b"")]);
    s.apply(&[lower, upper]).unwrap();
    assert!(!s.p("src").exists());
    assert_eq!(fs::read(s.p("link")).unwrap(), b"data");
}

#[test]
fn replacing_entries_never_writes_through_symlinks() {
    let s = Sandbox::new();
    let outside_file = s.outside.join("etc/passwd");
    let lower =
        layer(&[E::Symlink("f", outside_file.to_str().unwrap()), E::Dir("d", 0o755), E::File("d/x", 0o644, b"x")]);
    let upper = layer(&[E::File("f", 0o644, b"replaced"), E::File("d", 0o644, b"file now")]);
    s.apply(&[lower, upper]).unwrap();
    assert_eq!(fs::read(s.p("f")).unwrap(), b"replaced");
    assert!(fs::symlink_metadata(s.p("f")).unwrap().is_file());
    assert_eq!(fs::read(s.p("d")).unwrap(), b"file now");
    s.outside_untouched();
}

#[test]
fn symlinked_parents_resolve_inside_the_root() {
    // Chroot semantics: a link to "/" or ".." leads to the root, never out of it.
    for target in ["/", "..", "../../..", "/../.."] {
        let s = Sandbox::new();
        let l = layer(&[E::Symlink("escape", target), E::File("escape/etc/passwd", 0o644, b"evil")]);
        s.apply(&[l]).unwrap();
        assert_eq!(fs::read(s.p("etc/passwd")).unwrap(), b"evil", "{target}");
        s.outside_untouched();
    }
    // The same across layers, and through a link to the sandbox by absolute path.
    let s = Sandbox::new();
    let first = layer(&[E::Symlink("out", s.outside.to_str().unwrap())]);
    let second = layer(&[E::File("out/etc/passwd", 0o644, b"evil")]);
    // The link dangles inside the root: refusing the entry is as safe as following it inside.
    if let Err(e) = s.apply(&[first, second]) {
        assert!(e.to_string().contains("out/etc/passwd"), "{e}");
    }
    s.outside_untouched();
}

#[test]
fn hostile_names_are_refused_by_name() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (layer(&[E::RawName(b"../escape", b"x")]), "../escape"),
        (layer(&[E::RawName(b"/abs/file", b"x")]), "/abs/file"),
        (layer(&[E::RawName(b"a/../../b", b"x")]), "a/../../b"),
        (layer(&[E::Hardlink("h", "../outside/etc/passwd")]), "\"h\""),
        (layer(&[E::RawName(b".wh...", b"")]), ".wh..."),
        (layer(&[E::RawName(b"x/.wh...", b"")]), ".wh..."),
    ];
    for (l, name) in cases {
        let s = Sandbox::new();
        let err = s.apply(&[l]).unwrap_err().to_string();
        assert!(err.contains(name) && err.contains("layer0"), "{name}: {err}");
        s.outside_untouched();
    }
}

#[test]
fn hardlinks_cannot_reach_out_through_symlinks() {
    let s = Sandbox::new();
    // A symlink pointing out, then a hardlink "to" a file under it: resolved inside root,
    // where there is no such file.
    let l = layer(&[E::Symlink("up", s.outside.to_str().unwrap()), E::Hardlink("stolen", "up/etc/passwd")]);
    let err = s.apply(&[l]).unwrap_err().to_string();
    assert!(err.contains("stolen"), "{err}");
    s.outside_untouched();
    // A hardlink to a symlink links the symlink itself, not what it points to.
    let s = Sandbox::new();
    let l = layer(&[E::Symlink("link", "/etc/shadow"), E::Hardlink("copy", "link")]);
    s.apply(&[l]).unwrap();
    assert_eq!(fs::read_link(s.p("copy")).unwrap(), Path::new("/etc/shadow"));
}

#[test]
fn opaque_marker_under_a_symlink_pointing_out() {
    let s = Sandbox::new();
    let l = layer(&[E::Symlink("d", s.outside.to_str().unwrap()), E::File("d/.wh..wh..opq", 0o644, b"")]);
    let _ = s.apply(&[l]);
    s.outside_untouched();
}

#[test]
fn long_paths_and_short_bodies_fail_cleanly() {
    let s = Sandbox::new();
    let long = "d/".repeat(32 * 1024) + "f";
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(1);
    h.set_mode(0o644);
    b.append_data(&mut h, &long, &b"x"[..]).unwrap();
    let err = s.apply(&[b.into_inner().unwrap()]).unwrap_err().to_string();
    assert!(err.contains("layer0"), "{err}");
    s.outside_untouched();

    // A header claiming 1 GiB with a few bytes behind it.
    let s = Sandbox::new();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_path("big").unwrap();
    h.set_size(1 << 30);
    h.set_mode(0o644);
    h.set_cksum();
    let mut bytes = h.as_bytes().to_vec();
    bytes.extend_from_slice(b"short body");
    let err = s.apply(&[bytes]).unwrap_err().to_string();
    assert!(err.contains("layer0"), "{err}");
    s.outside_untouched();
}

#[test]
fn byte_limit_stops_bombs() {
    let s = Sandbox::new();
    let data = vec![0u8; 1 << 20];
    let l = layer(&[E::File("a", 0o644, &data), E::File("b", 0o644, &data)]);
    let mut u = Unpacker::new(&s.root, UnpackOptions { max_bytes: Some(1_500_000), ..Default::default() }).unwrap();
    let err = u.apply_layer("bomb", l.as_slice()).unwrap_err();
    assert!(matches!(err, UnpackError::TooLarge { .. }), "{err}");
}

#[test]
fn duplicate_entries_last_one_wins() {
    let s = Sandbox::new();
    let l =
        layer(&[E::File("x", 0o644, b"first"), E::File("x", 0o600, b"second"), E::Dir("y", 0o755), E::Dir("y", 0o700)]);
    s.apply(&[l]).unwrap();
    assert_eq!(fs::read(s.p("x")).unwrap(), b"second");
    assert_eq!(fs::metadata(s.p("y")).unwrap().permissions().mode() & 0o777, 0o700);
}
