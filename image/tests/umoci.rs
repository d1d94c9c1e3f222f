//! The unpacker against the reference: an OCI image layout of three gzip layers
//! (whiteouts, opaque directories in both orders, hardlinks, symlinks as parents and
//! replaced, modes, owners, times, xattrs) unpacked by `umoci unpack` and by us, and
//! the two trees compared path by path.
//!
//! Needs `umoci` (Debian's package; `scripts/dev-env` installs it) and root. Without
//! umoci the test is skipped, loudly, except under `CI=true`, where it fails.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_image::digest::Digest;
use kiln_image::layout::{Layout, index_of};
use kiln_image::unpack::{UnpackOptions, Unpacker};
use kiln_testkit::layer::*;
use kiln_testkit::tree::*;

fn layers() -> Vec<Vec<E>> {
    let t = |n: u64| 1_500_000_000 + n * 1000;
    let first = vec![
        dir("./", 0o755).mtime(t(0)),
        dir("etc", 0o755).mtime(t(1)),
        file("etc/passwd", 0o644, "root:x:0:0::/root:/bin/sh\n").mtime(t(2)),
        file("etc/shadow", 0o640, "root:*:19000::::::\n").owner(0, 42),
        dir("bin", 0o755).mtime(t(3)),
        file("bin/sh", 0o755, "#!/bin/sh\n").mtime(t(4)),
        file("bin/su", 0o4755, "su"),
        file("bin/wall", 0o2755, "wall").owner(0, 5),
        dir("tmp", 0o1777).mtime(t(5)),
        dir("usr", 0o755),
        dir("usr/lib", 0o755).mtime(t(6)),
        file("usr/lib/libfoo.so.1", 0o644, "\x7fELF"),
        symlink("usr/lib/libfoo.so", "libfoo.so.1").mtime(t(7)),
        symlink("usr/bin-link", "/bin"),
        symlink("lib", "usr/lib"),
        dir("opt", 0o755),
        dir("opt/app", 0o750).mtime(t(8)),
        file("opt/app/old.txt", 0o644, "old"),
        dir("opt/app/sub", 0o755),
        file("opt/app/sub/deep.txt", 0o644, "deep"),
        dir("data", 0o755),
        file("data/a.txt", 0o644, "a"),
        hardlink("data/a-link", "data/a.txt"),
        file("data/b.txt", 0o600, "b").mtime(t(9)),
        hardlink("data/b-link", "data/b.txt"),
        dir("var", 0o755),
        dir("var/log", 0o755),
        file("var/log/x.log", 0o640, "log").owner(1000, 1000),
        dir("home", 0o755),
        dir("home/user", 0o700).owner(1000, 1000).mtime(t(10)),
        file("home/user/.profile", 0o644, "export PS1").owner(1000, 1000),
        dir("home/user/sub", 0o755).owner(1000, 1000),
        file("home/user/sub/old", 0o644, "old"),
        dir("run", 0o755),
        fifo("run/pipe", 0o600),
        file("xattr-file", 0o644, "x").xattr("user.kiln", "yes"),
        file("precise", 0o644, "").pax("mtime", "1600000000.25"),
        dir("usr/share", 0o755),
        file(format!("usr/share/{}", "a-long-name-".repeat(15)), 0o644, "named by a PAX path record"),
        symlink("usr/share/owned-link", "../lib").owner(1000, 1001).mtime(t(14)),
        dir("xattr-dir", 0o755).xattr("user.lower", "1").xattr("user.both", "1"),
    ];
    let second = vec![
        whiteout("etc/shadow"),
        opaque("opt/app"),
        file("opt/app/new.txt", 0o644, "new"),
        dir("opt/app/sub", 0o700).mtime(t(11)),
        file("opt/app/sub/fresh.txt", 0o644, "fresh"),
        file("usr/lib/libfoo.so", 0o755, "a file where a symlink was"),
        file("var/log", 0o644, "a file where a directory was"),
        dir("data/b.txt", 0o755).mtime(t(12)),
        file("data/b.txt/inner", 0o644, "a directory where a file was"),
        whiteout("data/a.txt"),
        hardlink("etc/passwd-link", "etc/passwd"),
        file("bin/su", 0o4711, "su, again").mtime(t(13)),
        file("usr/lib/new.so", 0o644, "added to a lower directory"),
        file("lib/through.txt", 0o644, "through a symlinked parent"),
        dir("xattr-dir", 0o711).xattr("user.both", "2"),
    ];
    let third = vec![
        file("home/user/newfile", 0o600, "new").owner(1000, 1000),
        file("home/user/sub/new", 0o644, "new"),
        opaque("home/user"),
        dir("srv", 0o755),
        file("srv/f", 0o644, "f"),
        hardlink("srv/f-link", "srv/f"),
        whiteout("srv/f"),
        whiteout("run"),
        whiteout("nothing-there"),
        dir("usr/bin-link", 0o755),
        file("usr/bin-link/tool", 0o755, "a directory where a symlink was"),
        symlink("ghost", "/nonexistent/dir"),
        file("ghost/file", 0o644, "under a dangling symlink"),
        symlink("rootlink", "/"),
        file("rootlink/etc/through-root", 0o644, "through a link to /"),
        file("usr/../etc/dotdot", 0o644, "a name with a harmless .."),
    ];
    vec![first, second, third]
}

/// Directories whose times legitimately differ:
/// - made implicitly: their times are "now" on both sides;
/// - `home/user/sub`: umoci's opaque walk prunes it after restoring it, leaving its
///   mtime at the time of pruning; we put back the time it had;
/// - the root: umoci restores a parent's times from before each entry, but the implicit
///   `mkdir` of `nonexistent` (under the dangling `ghost` link) changes the root in an
///   entry whose parent is elsewhere, and later restores keep that "now"; we put back
///   the time the root had before the layer, as for any directory the layer has no
///   entry for.
const DIR_MTIMES_IGNORED: &[&str] = &["nonexistent", "nonexistent/dir", "home/user/sub", ""];

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

/// Writes an OCI image layout with the layers under tag `test`.
fn write_layout(dir: &Path, tars: &[Vec<u8>]) {
    let layout = Layout::create(dir).unwrap();
    let put = |data: &[u8]| (layout.write_blob(data).unwrap().to_string(), data.len());
    let mut layer_descs = Vec::new();
    let mut diff_ids = Vec::new();
    for tar in tars {
        diff_ids.push(Digest::of(tar).to_string());
        let (digest, size) = put(&gzip(tar));
        layer_descs.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest, "size": size,
        }));
    }
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let (config_digest, config_size) = put(&serde_json::to_vec(&config).unwrap());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": layer_descs,
    });
    let (manifest_digest, manifest_size) = put(&serde_json::to_vec(&manifest).unwrap());
    layout
        .set_index(&index_of(&[serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest, "size": manifest_size,
            "annotations": {"org.opencontainers.image.ref.name": "test"},
        })]))
        .unwrap();
}

/// Says so past the test harness's capture of output (`eprintln!` is captured).
fn skipped(message: &str) {
    let _ = writeln!(std::io::stderr(), "\n!!!!!!!! SKIPPED: {message} !!!!!!!!\n");
}

fn find_umoci() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|d| d.join("umoci")).find(|p| p.is_file())
}

#[test]
fn same_tree_as_umoci() {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let Some(umoci) = find_umoci() else {
        let message = "umoci is not installed (apt-get install umoci): the cross-check against umoci did not run";
        if ci {
            panic!("{message}");
        }
        skipped(message);
        return;
    };
    if !rustix::process::geteuid().is_root() {
        let message = "not root: umoci and the unpacker cannot set owners, the cross-check against umoci did not run";
        if ci {
            panic!("{message}");
        }
        skipped(message);
        return;
    }

    let tmp = tempfile::tempdir().unwrap();
    let tars: Vec<Vec<u8>> = layers().iter().map(|l| layer(l)).collect();
    let image = tmp.path().join("image");
    write_layout(&image, &tars);

    // umoci's implicit directories follow the umask: pin it to the usual one.
    let bundle = tmp.path().join("bundle");
    let out = Command::new("sh")
        .arg("-c")
        .arg("umask 022 && exec \"$0\" unpack --image \"$1:test\" \"$2\"")
        .arg(&umoci)
        .arg(&image)
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(out.status.success(), "umoci unpack failed: {}", String::from_utf8_lossy(&out.stderr));
    let theirs_root = bundle.join("rootfs");

    let ours_root = tmp.path().join("ours");
    fs::create_dir(&ours_root).unwrap();
    let mut unpacker = Unpacker::new(&ours_root, UnpackOptions::default()).unwrap();
    for (i, tar) in tars.iter().enumerate() {
        let gz = gzip(tar);
        let reader = kiln_image::decompress::decompressed(gz.as_slice()).unwrap();
        unpacker.apply_layer(&format!("layer{i}"), reader).unwrap();
    }

    let ours = snapshot(&ours_root);
    let theirs = snapshot(&theirs_root);
    let our_paths: BTreeSet<_> = ours.keys().collect();
    let their_paths: BTreeSet<_> = theirs.keys().collect();
    assert_eq!(
        our_paths,
        their_paths,
        "paths differ: only ours {:?}, only umoci's {:?}",
        our_paths.difference(&their_paths).collect::<Vec<_>>(),
        their_paths.difference(&our_paths).collect::<Vec<_>>()
    );
    let mut differences = Vec::new();
    for (path, our) in &ours {
        let their = &theirs[path];
        let mut our = our.clone();
        let mut their = their.clone();
        if our.kind == "symlink" {
            // A symlink has no mode of its own.
            our.mode = 0;
            their.mode = 0;
        }
        if our.kind == "dir" && DIR_MTIMES_IGNORED.contains(&path.as_str()) {
            our.mtime = (0, 0);
            their.mtime = (0, 0);
        }
        if our != their {
            differences.push(format!("{path:?}:\n  ours:  {our:?}\n  umoci: {their:?}"));
        }
    }
    assert!(differences.is_empty(), "trees differ:\n{}", differences.join("\n"));
    assert_eq!(hardlink_groups(&ours_root), hardlink_groups(&theirs_root), "hardlinks differ");

    // The fixture did exercise what it is meant to.
    let expect = BTreeMap::from([
        ("etc/shadow", None),
        ("opt/app/old.txt", None),
        ("opt/app/sub/deep.txt", None),
        ("opt/app/sub/fresh.txt", Some("file")),
        ("home/user/.profile", None),
        ("home/user/sub/old", None),
        ("home/user/sub/new", Some("file")),
        ("srv/f", Some("file")),
        ("run", None),
        ("usr/lib/libfoo.so", Some("file")),
        ("usr/lib/through.txt", Some("file")),
        ("var/log", Some("file")),
        ("data/b.txt", Some("dir")),
        ("usr/bin-link", Some("dir")),
        ("nonexistent/dir/file", Some("file")),
        ("etc/through-root", Some("file")),
        ("etc/dotdot", Some("file")),
        ("xattr-dir", Some("dir")),
    ]);
    for (path, kind) in expect {
        assert_eq!(ours.get(path).map(|n| n.kind), kind, "{path}");
    }
    assert!(!hardlink_groups(&ours_root).is_empty());
    let xattrs = &ours["xattr-dir"].xattrs;
    if !xattrs.is_empty() {
        assert_eq!(xattrs, &BTreeMap::from([("user.both".to_string(), b"2".to_vec())]));
    }
    assert_eq!(ours[""].mtime, (1_500_000_000, 0), "the root keeps the time its ./ entry gave it");
    assert_eq!(ours["home/user/sub"].mtime, (MTIME as i64, 0), "as layer 1 left it");
}
