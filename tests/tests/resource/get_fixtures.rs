//! `in` on images built here layer by layer (the anchor's fixtures: permissions and
//! times, whiteouts, removed hardlinks, symlinks, metadata, entrypoint, zstd), each
//! compared with what `umoci unpack` makes of the same image; and hostile layers,
//! which must fail with nothing written outside the output folder.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_tests::dev_env_or_skip;
use kiln_tests::harness::{DevEnv, resource, source, unique_repo};
use kiln_tests::images::{Compression, Layer, push_layout, run_config, write_layout};
use serde_json::{Value, json};

/// Pushes an image made of `layers`, fetches it with `in` (rootfs) and returns the output folder.
fn fetch(env: &DevEnv, name: &str, layers: &[(Vec<u8>, Compression)], config: Value) -> (tempfile::TempDir, Value) {
    fetch_into(env, name, layers, config, tempfile::tempdir().unwrap())
}

/// [`fetch`] into `dest`, made by the caller (to know beforehand where its links lead).
fn fetch_into(
    env: &DevEnv,
    name: &str,
    layers: &[(Vec<u8>, Compression)],
    config: Value,
    dest: tempfile::TempDir,
) -> (tempfile::TempDir, Value) {
    let reg = &env.registries.plain;
    let repo = unique_repo(name);
    let work = tempfile::tempdir().unwrap();
    write_layout(&work.path().join("layout"), "t", layers, config).unwrap();
    let digest = push_layout(env, &work.path().join("layout"), "t", reg, &repo);
    let req = json!({ "source": source(env, reg, &repo), "version": { "tag": "t", "digest": digest } });
    let out = resource("in", Some(dest.path()), &req);
    (dest, json!({ "code": out.code, "stderr": out.stderr, "repo": repo }))
}

/// The same layers unpacked by umoci (always gzip: umoci reads what skopeo writes).
fn umoci(layers: &[(Vec<u8>, Compression)], config: Value) -> (tempfile::TempDir, PathBuf) {
    let work = tempfile::tempdir().unwrap();
    let gzip: Vec<_> = layers.iter().map(|(t, _)| (t.clone(), Compression::Gzip)).collect();
    let layout = work.path().join("layout");
    write_layout(&layout, "t", &gzip, config).unwrap();
    let bundle = work.path().join("bundle");
    let out = Command::new("umoci")
        .args(["unpack", "--image", &format!("{}:t", layout.display())])
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(out.status.success(), "umoci: {}", String::from_utf8_lossy(&out.stderr));
    (work, bundle.join("rootfs"))
}

fn ok(result: &Value) {
    assert_eq!(result["code"], 0, "in failed: {}", result["stderr"]);
}

fn same_as_umoci(name: &str, layers: Vec<(Vec<u8>, Compression)>) -> tempfile::TempDir {
    let env = kiln_tests::harness::require_dev_env(name).expect("dev environment");
    let config = run_config(&["sh"], None, &[], "");
    let (dest, result) = fetch(env, name, &layers, config.clone());
    ok(&result);
    let (_work, theirs) = umoci(&layers, config);
    kiln_testkit::tree::assert_same(&dest.path().join("rootfs"), &theirs);
    dest
}

#[test]
fn file_perms_and_mtimes() {
    dev_env_or_skip!();
    let layer = Layer::new()
        .dir("bin", 0o755)
        .file("bin/setuid", 0o4755, b"s")
        .file("bin/setgid", 0o2755, b"g")
        .file("bin/private", 0o600, b"p")
        .dir("tmp", 0o1777)
        .owned_file("home/user/file", 0o640, 1000, 1001, b"owned")
        .bytes();
    let dest = same_as_umoci("fixture-perms", vec![(layer, Compression::Gzip)]);
    let meta = std::fs::metadata(dest.path().join("rootfs/bin/setuid")).unwrap();
    assert_eq!(meta.mtime(), 1_650_000_000);
    assert_eq!(meta.mode() & 0o7777, 0o4755);
    let owned = std::fs::metadata(dest.path().join("rootfs/home/user/file")).unwrap();
    assert_eq!((owned.uid(), owned.gid()), (1000, 1001));
}

#[test]
fn whiteouts_and_opaque_directories() {
    dev_env_or_skip!();
    let lower = Layer::new()
        .dir("etc", 0o755)
        .file("etc/keep", 0o644, b"k")
        .file("etc/remove", 0o644, b"r")
        .dir("var/cache", 0o755)
        .file("var/cache/old", 0o644, b"o")
        .dir("var/cache/sub", 0o755)
        .file("var/cache/sub/deep", 0o644, b"d")
        .bytes();
    let upper = Layer::new().whiteout("etc/remove").opaque("var/cache").file("var/cache/new", 0o644, b"n").bytes();
    let dest = same_as_umoci("fixture-whiteout", vec![(lower, Compression::Gzip), (upper, Compression::Gzip)]);
    assert!(!dest.path().join("rootfs/etc/remove").exists());
    assert!(!dest.path().join("rootfs/var/cache/old").exists());
    assert!(dest.path().join("rootfs/var/cache/new").exists());
}

#[test]
fn removed_hardlinks() {
    dev_env_or_skip!();
    let lower =
        Layer::new().file("source", 0o644, b"shared").hardlink("link", "source").hardlink("link2", "source").bytes();
    let upper = Layer::new().whiteout("source").bytes();
    let dest = same_as_umoci("fixture-hardlinks", vec![(lower, Compression::Gzip), (upper, Compression::Gzip)]);
    assert_eq!(std::fs::read(dest.path().join("rootfs/link")).unwrap(), b"shared");
}

#[test]
fn symlinks_replaced_and_followed() {
    dev_env_or_skip!();
    let lower = Layer::new()
        .dir("usr/lib", 0o755)
        .symlink("lib", "usr/lib")
        .symlink("abs", "/usr/lib")
        .symlink("becomes-file", "usr/lib")
        .bytes();
    let upper = Layer::new().file("lib/libx.so", 0o755, b"elf").file("becomes-file", 0o644, b"now a file").bytes();
    let dest = same_as_umoci("fixture-symlinks", vec![(lower, Compression::Gzip), (upper, Compression::Gzip)]);
    assert!(dest.path().join("rootfs/usr/lib/libx.so").is_file(), "written through the symlinked parent");
}

#[test]
fn zstd_and_plain_layers_unpack_like_gzip() {
    dev_env_or_skip!();
    let first = Layer::new().dir("a", 0o755).file("a/one", 0o644, b"1").bytes();
    let second = Layer::new().file("a/two", 0o644, b"2").whiteout("a/one").bytes();
    let third = Layer::new().file("b", 0o600, b"3").bytes();
    same_as_umoci(
        "fixture-zstd",
        vec![(first, Compression::Zstd), (second, Compression::None), (third, Compression::Zstd)],
    );
}

#[test]
fn metadata_and_entrypoint() {
    let env = dev_env_or_skip!();
    let layer = Layer::new().file("bin/app", 0o755, b"#!/bin/sh\n").bytes();
    let config = run_config(&["--serve"], Some(&["/bin/app"]), &["PATH=/bin", "MODE=prod"], "1000:1000");
    let (dest, result) = fetch(env, "fixture-metadata", &[(layer.clone(), Compression::Gzip)], config);
    ok(&result);
    let metadata: Value = serde_json::from_slice(&std::fs::read(dest.path().join("metadata.json")).unwrap()).unwrap();
    assert_eq!(
        metadata,
        json!({ "cmd": ["--serve"], "entrypoint": ["/bin/app"], "env": ["PATH=/bin", "MODE=prod"], "user": "1000:1000" })
    );

    let config = json!({ "Entrypoint": ["/bin/app"] });
    let (dest, result) = fetch(env, "fixture-entrypoint", &[(layer, Compression::Gzip)], config);
    ok(&result);
    let metadata: Value = serde_json::from_slice(&std::fs::read(dest.path().join("metadata.json")).unwrap()).unwrap();
    assert_eq!(metadata, json!({ "cmd": null, "entrypoint": ["/bin/app"], "env": null, "user": "" }));
}

/// A sentinel folder a hostile layer aims at; it must stay as it is.
fn sentinel() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("canary"), "untouched").unwrap();
    let path = dir.path().to_path_buf();
    (dir, path)
}

/// What stands at a host path: nothing, or its identity, link count, size, times and (for a
/// file) bytes. Creating, replacing, hard-linking or writing it changes this.
#[derive(Debug, PartialEq, Eq)]
enum HostPath {
    Absent,
    Present { dev: u64, ino: u64, nlink: u64, mode: u32, size: u64, mtime: i64, ctime: i64, bytes: Option<Vec<u8>> },
}

fn host_path(path: &Path) -> HostPath {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => HostPath::Absent,
        Err(e) => panic!("{}: {e}", path.display()),
        Ok(md) => HostPath::Present {
            dev: md.dev(),
            ino: md.ino(),
            nlink: md.nlink(),
            mode: md.mode(),
            size: md.size(),
            mtime: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
            ctime: md.ctime() * 1_000_000_000 + md.ctime_nsec(),
            bytes: md.is_file().then(|| std::fs::read(path).unwrap()),
        },
    }
}

/// Where a symlink standing in the host folder `from` (a path without symlinks) leads, as
/// the kernel follows it outside any chroot (`..` stops at `/`), with `rest` below.
fn followed_on_host(from: &Path, target: &str, rest: &str) -> PathBuf {
    let mut at = if target.starts_with('/') { PathBuf::from("/") } else { from.to_path_buf() };
    for part in Path::new(target).join(rest).components() {
        match part {
            std::path::Component::RootDir => at = PathBuf::from("/"),
            std::path::Component::ParentDir => {
                at.pop();
            }
            std::path::Component::Normal(name) => at.push(name),
            std::path::Component::CurDir | std::path::Component::Prefix(_) => {}
        }
    }
    at
}

/// The host paths a hostile layer aims at, each as it was before `in` ran.
struct Aimed(Vec<(PathBuf, HostPath)>);

impl Aimed {
    fn at(paths: impl IntoIterator<Item = PathBuf>) -> Self {
        Aimed(paths.into_iter().map(|p| (p.clone(), host_path(&p))).collect())
    }

    fn assert_untouched(&self, what: &str) {
        for (path, before) in &self.0 {
            assert_eq!(&host_path(path), before, "{what}: {} was created or changed", path.display());
        }
    }
}

fn assert_sentinel(path: &Path) {
    let names: Vec<_> = std::fs::read_dir(path).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["canary"], "something was written into {}", path.display());
    assert_eq!(std::fs::read_to_string(path.join("canary")).unwrap(), "untouched");
}

#[test]
fn hostile_layers_fail_without_writing_outside() {
    let env = dev_env_or_skip!();
    let (_keep, target) = sentinel();
    let t = target.to_str().unwrap();
    let traversal = format!("../../../../../../../..{t}/evil");
    // Each case, and the host path it aims at (the file it would write or link), if any.
    let (evil, canary) = (target.join("evil"), target.join("canary"));
    type Case<'a> = (&'a str, Vec<Vec<u8>>, String, Vec<PathBuf>);
    let cases: Vec<Case> = vec![
        (
            "dotdot",
            vec![Layer::new().raw_file(traversal.as_bytes(), b"x").bytes()],
            "climb out".into(),
            vec![evil.clone()],
        ),
        (
            "absolute",
            vec![Layer::new().raw_file(format!("{t}/evil").as_bytes(), b"x").bytes()],
            "absolute path".into(),
            vec![evil.clone()],
        ),
        (
            "hardlink-out",
            vec![Layer::new().hardlink("stolen", &format!("{t}/canary")).bytes()],
            "stolen".into(),
            vec![canary],
        ),
        (
            "whiteout-dotdot",
            vec![Layer::new().dir("a", 0o755).raw_file(b"a/.wh...", b"").bytes()],
            "whiteout names no entry".into(),
            vec![],
        ),
    ];
    for (name, layers, expected, aims) in cases {
        let aimed = Aimed::at(aims);
        let layers: Vec<_> = layers.into_iter().map(|l| (l, Compression::Gzip)).collect();
        let (dest, result) = fetch(env, name, &layers, run_config(&["sh"], None, &[], ""));
        assert_ne!(result["code"], 0, "{name}: in should fail");
        let stderr = result["stderr"].as_str().unwrap();
        assert!(stderr.contains(&expected), "{name}: {stderr}");
        assert_eq!(std::fs::read_dir(dest.path()).unwrap().count(), 0, "{name}: output left behind");
        aimed.assert_untouched(name);
        assert_sentinel(&target);
    }

    // Symlinks out, followed by writes through them (same layer and the next): these land
    // inside the rootfs (as they would in a container) or are refused, never outside.
    let up = "../../../../../..";
    let layers = vec![
        (Layer::new().symlink("escape", t).file("escape/evil", 0o644, b"x").bytes(), Compression::Gzip),
        (Layer::new().symlink("up", up).file("up/evil2", 0o644, b"x").bytes(), Compression::Gzip),
    ];
    // Followed on the host, `escape` leads into the sentinel and `up` (from rootfs/, where
    // it stands) to an ancestor of the output folder, `/` itself unless that is deep. `in`
    // unpacks into rootfs/ of a fresh folder inside the output folder and moves it up when
    // done, so `up` could be followed from either depth: both places are watched.
    let dest = tempfile::tempdir().unwrap();
    let out = dest.path().canonicalize().unwrap();
    let (unpacking, done) = (out.join("kiln-in-fresh/rootfs"), out.join("rootfs"));
    let aimed = Aimed::at([evil, followed_on_host(&unpacking, up, "evil2"), followed_on_host(&done, up, "evil2")]);
    let (dest, result) = fetch_into(env, "symlink-escape", &layers, run_config(&["sh"], None, &[], ""), dest);
    aimed.assert_untouched("symlink-escape");
    if result["code"] == 0 {
        assert!(dest.path().join("rootfs/evil2").exists(), "the write through `up` landed at the rootfs's root");
    }
    assert_sentinel(&target);
}
