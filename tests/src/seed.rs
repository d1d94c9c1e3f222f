//! Base images for the dev registry, made on this machine because nothing can be
//! pulled from the internet: `library/busybox` from Debian's static busybox.
//!
//! [`write_layout`] writes an OCI image layout holding
//! - `latest`: an index for linux/amd64 (the real busybox) and linux/arm64/v8 (Debian's
//!   busybox-static for arm64 when given, which runs where an emulator is registered; else
//!   a placeholder layer, there to test platform selection, not to run);
//! - `amd64` and `arm64`: each image alone.
//!
//! Everything is deterministic, so the digests are the same on every machine
//! with the same busybox.

use std::fs;
use std::io::Write as _;
use std::path::Path;

use anyhow::Context;
use flate2::Compression;
use flate2::write::GzEncoder;
use kiln_image::digest::Digest;
use kiln_image::layout::{Layout, index_of};
use serde_json::json;

/// All entries get this modification time (2024-01-01T00:00:00Z).
const MTIME: u64 = 1_704_067_200;
const CREATED: &str = "2024-01-01T00:00:00Z";

/// A blob written into the layout, with its descriptor fields.
struct Blob {
    digest: String,
    size: u64,
}

/// Writes the busybox image layout into `dir` (created if missing).
pub fn write_layout(dir: &Path, busybox: &Path, arm64_busybox: Option<&Path>) -> anyhow::Result<()> {
    let dir = &Layout::create(dir).with_context(|| format!("creating the layout {}", dir.display()))?;

    let binary = fs::read(busybox).with_context(|| format!("reading {}", busybox.display()))?;
    let applets = busybox_applets(busybox)?;
    let amd64_tar = rootfs_tar(&binary, &applets)?;
    let amd64 = image(dir, &amd64_tar, "amd64", None)?;

    let arm64_tar = match arm64_busybox {
        // The same Debian release's busybox has the same applets; this machine cannot run
        // the arm64 one to ask it.
        Some(path) => rootfs_tar(&fs::read(path).with_context(|| format!("reading {}", path.display()))?, &applets)?,
        None => placeholder_tar()?,
    };
    let arm64 = image(dir, &arm64_tar, "arm64", Some("v8"))?;

    let index = index_of(&[manifest_entry(&amd64, "amd64", None), manifest_entry(&arm64, "arm64", Some("v8"))]);
    let index = write_blob(dir, &index)?;

    let layout_index = index_of(&[
        json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": index.digest, "size": index.size,
            "annotations": { "org.opencontainers.image.ref.name": "latest" },
        }),
        json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": amd64.digest, "size": amd64.size,
            "annotations": { "org.opencontainers.image.ref.name": "amd64" },
        }),
        json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": arm64.digest, "size": arm64.size,
            "annotations": { "org.opencontainers.image.ref.name": "arm64" },
        }),
    ]);
    dir.set_index(&layout_index)?;
    Ok(())
}

/// Writes a single-image layout from a root filesystem tarball (a Debian made by
/// debootstrap, for the images that need a distribution), tagged `tag`.
pub fn write_rootfs_layout(dir: &Path, rootfs_tar: &Path, tag: &str) -> anyhow::Result<()> {
    let dir = &Layout::create(dir).with_context(|| format!("creating the layout {}", dir.display()))?;
    let tar = fs::read(rootfs_tar).with_context(|| format!("reading {}", rootfs_tar.display()))?;
    let manifest = image(dir, &tar, "amd64", None)?;
    dir.set_index(&index_of(&[json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": manifest.digest, "size": manifest.size,
        "annotations": { "org.opencontainers.image.ref.name": tag },
    })]))?;
    Ok(())
}

fn manifest_entry(m: &Blob, arch: &str, variant: Option<&str>) -> serde_json::Value {
    let mut platform = json!({ "architecture": arch, "os": "linux" });
    if let Some(v) = variant {
        platform["variant"] = json!(v);
    }
    json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": m.digest, "size": m.size, "platform": platform,
    })
}

/// Writes one single-layer image (layer, config, manifest) and returns its manifest blob.
fn image(dir: &Layout, layer_tar: &[u8], arch: &str, variant: Option<&str>) -> anyhow::Result<Blob> {
    let diff_id = Digest::of(layer_tar).to_string();
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(layer_tar)?;
    let layer = write_blob(dir, &gz.finish()?)?;

    let mut config = json!({
        "created": CREATED,
        "architecture": arch,
        "os": "linux",
        "config": { "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["sh"] },
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
        "history": [{ "created": CREATED, "created_by": "kiln-testenv seed: Debian busybox-static" }],
    });
    if let Some(v) = variant {
        config["variant"] = json!(v);
    }
    let config = write_blob(dir, config.to_string().as_bytes())?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.digest, "size": config.size },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer.digest, "size": layer.size }],
    });
    write_blob(dir, manifest.to_string().as_bytes())
}

fn write_blob(dir: &Layout, bytes: &[u8]) -> anyhow::Result<Blob> {
    Ok(Blob { digest: dir.write_blob(bytes)?.to_string(), size: bytes.len() as u64 })
}

fn busybox_applets(busybox: &Path) -> anyhow::Result<Vec<String>> {
    let out = std::process::Command::new(busybox)
        .arg("--list")
        .output()
        .with_context(|| format!("running {} --list", busybox.display()))?;
    anyhow::ensure!(out.status.success(), "{} --list failed", busybox.display());
    let mut applets: Vec<String> = String::from_utf8(out.stdout)?
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox" && !a.contains('/'))
        .map(String::from)
        .collect();
    applets.sort();
    applets.dedup();
    Ok(applets)
}

/// A minimal root filesystem: /bin/busybox, an applet symlink per command, /etc, /tmp, /root.
fn rootfs_tar(binary: &[u8], applets: &[String]) -> anyhow::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    for (dir, mode) in [("bin/", 0o755), ("etc/", 0o755), ("root/", 0o700), ("tmp/", 0o1777)] {
        append(&mut tar, tar::EntryType::Directory, dir, mode, b"", None)?;
    }
    append(&mut tar, tar::EntryType::Regular, "bin/busybox", 0o755, binary, None)?;
    for applet in applets {
        append(&mut tar, tar::EntryType::Symlink, &format!("bin/{applet}"), 0o777, b"", Some("busybox"))?;
    }
    append(&mut tar, tar::EntryType::Regular, "etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\n", None)?;
    append(&mut tar, tar::EntryType::Regular, "etc/group", 0o644, b"root:x:0:\n", None)?;
    Ok(tar.into_inner()?)
}

fn placeholder_tar() -> anyhow::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    let text = b"This arm64 image is a placeholder for testing platform selection; it has no binaries.\n";
    append(&mut tar, tar::EntryType::Regular, "README", 0o644, text, None)?;
    Ok(tar.into_inner()?)
}

fn append(
    tar: &mut tar::Builder<Vec<u8>>,
    kind: tar::EntryType,
    path: &str,
    mode: u32,
    data: &[u8],
    link: Option<&str>,
) -> anyhow::Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_mtime(MTIME);
    header.set_uid(0);
    header.set_gid(0);
    header.set_size(data.len() as u64);
    if let Some(target) = link {
        header.set_link_name(target)?;
    }
    tar.append_data(&mut header, path, data)?;
    Ok(())
}
