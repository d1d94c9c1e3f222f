//! Layers applied to a root filesystem: entries made of a few names, `..`, absolute paths
//! and symlinks/hardlinks pointing anywhere (including at a folder beside the root and at
//! the host's `/`), whiteouts and opaque markers, devices, FIFOs; or raw bytes as a tar
//! stream. Whatever the layers hold, nothing is created or changed outside the root: the
//! folder beside it keeps exactly its one file, the sandbox holds only the two, and no
//! entry name used here appears at the host's `/`.
#![no_main]

use std::path::Path;

use arbitrary::Arbitrary;
use kiln_image::unpack::{UnpackOptions, Unpacker};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Part {
    A,
    B,
    C,
    Dot,
    DotDot,
    Outside,
    Whiteout,
    Opaque,
}

const NAMES: [&str; 5] = ["kiln-fuzz-a", "kiln-fuzz-b", "kiln-fuzz-c", "outside", "x"];

#[derive(Arbitrary, Debug)]
enum Kind {
    File,
    Dir,
    Symlink,
    Hardlink,
    Fifo,
    CharDevice,
}

#[derive(Arbitrary, Debug)]
struct Entry {
    kind: Kind,
    absolute: bool,
    path: Vec<Part>,
    target_absolute: bool,
    target: Vec<Part>,
    mode: u16,
    data: Vec<u8>,
}

#[derive(Arbitrary, Debug)]
enum Input {
    Layers(Vec<Vec<Entry>>),
    Raw(Vec<Vec<u8>>),
}

fn part(p: Part) -> &'static str {
    match p {
        Part::A => NAMES[0],
        Part::B => NAMES[1],
        Part::C => NAMES[2],
        Part::Dot => ".",
        Part::DotDot => "..",
        Part::Outside => NAMES[3],
        Part::Whiteout => ".wh.kiln-fuzz-a",
        Part::Opaque => ".wh..wh..opq",
    }
}

fn join(absolute: bool, parts: &[Part]) -> String {
    let body: Vec<&str> = parts.iter().take(6).map(|p| part(*p)).collect();
    format!("{}{}", if absolute { "/" } else { "" }, body.join("/"))
}

/// One tar header and body, its name and link target written as raw bytes (tar's own
/// setters refuse `..`, which is the point here).
fn append(out: &mut Vec<u8>, e: &Entry, sandbox: &Path) {
    let mut header = tar::Header::new_ustar();
    let name = join(e.absolute, &e.path);
    let mut target = join(e.target_absolute, &e.target);
    if e.target_absolute && matches!(e.target.first(), Some(Part::Outside)) {
        // An absolute target into the real folder beside the root.
        target = format!("{}{}", sandbox.display(), target);
    }
    let (kind, data): (tar::EntryType, &[u8]) = match e.kind {
        Kind::File => (tar::EntryType::Regular, &e.data[..e.data.len().min(4096)]),
        Kind::Dir => (tar::EntryType::Directory, &[]),
        Kind::Symlink => (tar::EntryType::Symlink, &[]),
        Kind::Hardlink => (tar::EntryType::Link, &[]),
        Kind::Fifo => (tar::EntryType::Fifo, &[]),
        Kind::CharDevice => (tar::EntryType::Char, &[]),
    };
    header.set_entry_type(kind);
    header.set_size(data.len() as u64);
    header.set_mode(u32::from(e.mode) & 0o7777);
    header.set_mtime(1_700_000_000);
    let old = header.as_old_mut();
    let n = name.len().min(old.name.len());
    old.name[..n].copy_from_slice(&name.as_bytes()[..n]);
    let n = target.len().min(old.linkname.len());
    old.linkname[..n].copy_from_slice(&target.as_bytes()[..n]);
    header.set_cksum();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

fn layer(entries: &[Entry], sandbox: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries.iter().take(24) {
        append(&mut out, e, sandbox);
    }
    out.extend_from_slice(&[0; 1024]);
    out
}

fn sandbox_root() -> &'static Path {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() { shm } else { Path::new("/tmp") }
}

fuzz_target!(|input: Input| {
    let sandbox = tempfile::Builder::new().prefix("kiln-fuzz-").tempdir_in(sandbox_root()).unwrap();
    let (rootfs, outside) = (sandbox.path().join("rootfs"), sandbox.path().join("outside"));
    std::fs::create_dir(&rootfs).unwrap();
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("keep"), b"keep").unwrap();

    let layers: Vec<Vec<u8>> = match &input {
        Input::Layers(layers) => layers.iter().take(4).map(|l| layer(l, sandbox.path())).collect(),
        Input::Raw(raw) => raw.iter().take(4).cloned().collect(),
    };
    let opts = UnpackOptions { chown: false, max_bytes: Some(1 << 20) };
    let mut unpacker = Unpacker::new(&rootfs, opts).unwrap();
    for (i, tar) in layers.iter().enumerate() {
        if unpacker.apply_layer(&format!("layer {i}"), tar.as_slice()).is_err() {
            break;
        }
    }
    drop(unpacker);

    let mut beside: Vec<String> =
        std::fs::read_dir(sandbox.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
    beside.sort();
    assert_eq!(beside, ["outside", "rootfs"], "something was made beside the root");
    let kept: Vec<_> = std::fs::read_dir(&outside).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(kept, ["keep"], "the folder beside the root changed");
    let meta = std::fs::symlink_metadata(outside.join("keep")).unwrap();
    assert!(meta.is_file() && std::fs::read(outside.join("keep")).unwrap() == b"keep", "keep was changed");
    for name in NAMES.iter().filter(|n| n.starts_with("kiln-fuzz")) {
        assert!(std::fs::symlink_metadata(Path::new("/").join(name)).is_err(), "/{name} was made on the host");
    }
    // Restore permissions the layers may have taken away, so the sandbox can be removed.
    let _ = std::process::Command::new("chmod").args(["-R", "u+rwx"]).arg(&rootfs).status();
});
