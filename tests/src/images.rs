//! Test images made here, layer by layer: OCI layouts written from tar bytes the test
//! builds, then pushed with skopeo, so `in` can be tried on exactly the layers a case needs.

use std::io::Write as _;
use std::path::Path;
use std::process::Command;

use kiln_image::digest::Digest;
use kiln_image::layout::{Layout, index_of};
use serde_json::json;

use crate::harness::{DevEnv, Registry};

/// How a layer is stored in the registry.
#[derive(Debug, Clone, Copy)]
pub enum Compression {
    Gzip,
    Zstd,
    None,
}

/// A tar being built, with fixed times and root ownership unless said otherwise.
pub struct Layer {
    builder: tar::Builder<Vec<u8>>,
}

impl Default for Layer {
    fn default() -> Self {
        Self::new()
    }
}

impl Layer {
    pub fn new() -> Self {
        Self { builder: tar::Builder::new(Vec::new()) }
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(1_650_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h
    }

    pub fn dir(mut self, path: &str, mode: u32) -> Self {
        let mut h = Self::header(tar::EntryType::Directory, mode, 0);
        self.builder.append_data(&mut h, path, &b""[..]).expect("dir entry");
        self
    }

    pub fn file(mut self, path: &str, mode: u32, data: &[u8]) -> Self {
        let mut h = Self::header(tar::EntryType::Regular, mode, data.len() as u64);
        self.builder.append_data(&mut h, path, data).expect("file entry");
        self
    }

    pub fn owned_file(mut self, path: &str, mode: u32, uid: u64, gid: u64, data: &[u8]) -> Self {
        let mut h = Self::header(tar::EntryType::Regular, mode, data.len() as u64);
        h.set_uid(uid);
        h.set_gid(gid);
        self.builder.append_data(&mut h, path, data).expect("file entry");
        self
    }

    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        let mut h = Self::header(tar::EntryType::Symlink, 0o777, 0);
        self.builder.append_link(&mut h, path, target).expect("symlink entry");
        self
    }

    pub fn hardlink(mut self, path: &str, target: &str) -> Self {
        let mut h = Self::header(tar::EntryType::Link, 0o644, 0);
        self.builder.append_link(&mut h, path, target).expect("hardlink entry");
        self
    }

    /// An entry whose name is written into the header as given, dots and slashes included.
    pub fn raw_file(mut self, name: &[u8], data: &[u8]) -> Self {
        let mut h = Self::header(tar::EntryType::Regular, 0o644, data.len() as u64);
        let gnu = h.as_gnu_mut().expect("gnu header");
        gnu.name = [0; 100];
        gnu.name[..name.len()].copy_from_slice(name);
        h.set_cksum();
        self.builder.append(&h, data).expect("raw entry");
        self
    }

    pub fn whiteout(self, path: &str) -> Self {
        let (dir, name) = path.rsplit_once('/').map(|(d, n)| (format!("{d}/"), n)).unwrap_or((String::new(), path));
        self.file(&format!("{dir}.wh.{name}"), 0o644, b"")
    }

    pub fn opaque(self, dir: &str) -> Self {
        self.file(&format!("{dir}/.wh..wh..opq"), 0o644, b"")
    }

    pub fn bytes(self) -> Vec<u8> {
        self.builder.into_inner().expect("tar")
    }
}

/// The image's run config (`config` in the image config).
pub fn run_config(cmd: &[&str], entrypoint: Option<&[&str]>, env: &[&str], user: &str) -> serde_json::Value {
    json!({ "Cmd": cmd, "Entrypoint": entrypoint, "Env": env, "User": user })
}

/// Writes an OCI layout with one image of `layers` under `tag` into `dir`.
pub fn write_layout(
    dir: &Path,
    tag: &str,
    layers: &[(Vec<u8>, Compression)],
    config: serde_json::Value,
) -> std::io::Result<String> {
    let layout = Layout::create(dir)?;
    let blob = |bytes: &[u8]| -> std::io::Result<(String, u64)> {
        Ok((layout.write_blob(bytes)?.to_string(), bytes.len() as u64))
    };
    let mut diff_ids = Vec::new();
    let mut descriptors = Vec::new();
    for (tar, compression) in layers {
        diff_ids.push(Digest::of(tar).to_string());
        let (bytes, media_type) = match compression {
            Compression::Gzip => {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gz.write_all(tar)?;
                (gz.finish()?, "application/vnd.oci.image.layer.v1.tar+gzip")
            }
            Compression::Zstd => (zstd::encode_all(tar.as_slice(), 3)?, "application/vnd.oci.image.layer.v1.tar+zstd"),
            Compression::None => (tar.clone(), "application/vnd.oci.image.layer.v1.tar"),
        };
        let (digest, size) = blob(&bytes)?;
        descriptors.push(json!({ "mediaType": media_type, "digest": digest, "size": size }));
    }
    let config = json!({
        "architecture": "amd64", "os": "linux", "created": "2024-05-01T00:00:00Z",
        "config": config, "rootfs": { "type": "layers", "diff_ids": diff_ids },
    });
    let (config_digest, config_size) = blob(config.to_string().as_bytes())?;
    let manifest = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size },
        "layers": descriptors,
    });
    let (digest, size) = blob(manifest.to_string().as_bytes())?;
    layout.set_index(&index_of(&[json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": size,
        "annotations": { "org.opencontainers.image.ref.name": tag },
    })]))?;
    Ok(digest)
}

/// Pushes a layout's `tag` to `repo:tag` with skopeo; returns the manifest digest.
pub fn push_layout(env: &DevEnv, layout: &Path, tag: &str, registry: &Registry, repo: &str) -> String {
    assert_eq!(registry.addr, env.registries.plain.addr, "push_layout uses the plain registry");
    let out = Command::new("skopeo")
        .args(["copy", "--quiet", "--preserve-digests", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:{tag}", layout.display()))
        .arg(format!("docker://{}:{tag}", registry.repo(repo)))
        .output()
        .expect("running skopeo");
    assert!(out.status.success(), "skopeo copy: {}", String::from_utf8_lossy(&out.stderr));
    crate::harness::skopeo_digest(env, registry, repo, tag)
}

/// Writes `dir/image.tar`, an OCI archive of one image tagged `tag` whose one uncompressed
/// layer is a file `/noise` of `size` pseudo-random bytes (from `seed`), and returns the
/// manifest digest. Noise does not compress, so transfers are as large as `size`; distinct
/// seeds give distinct images.
pub fn noise_image_tar(dir: &Path, tag: &str, size: usize, seed: u64) -> String {
    let mut noise = vec![0u8; size];
    // xorshift needs a state that is not zero; 2·seed + 1 never is, and is one-to-one.
    let mut state = seed.wrapping_mul(2) | 1;
    for chunk in noise.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
    let layer = Layer::new().file("noise", 0o644, &noise).bytes();
    let layout = tempfile::tempdir_in(dir).expect("temporary layout folder");
    let digest =
        write_layout(layout.path(), tag, &[(layer, Compression::None)], run_config(&["/noise"], None, &[], ""))
            .expect("writing the layout");
    let status = Command::new("tar")
        .arg("-C")
        .arg(layout.path())
        .arg("-cf")
        .arg(dir.join("image.tar"))
        .arg(".")
        .status()
        .expect("running tar");
    assert!(status.success(), "tar of the noise layout failed");
    digest
}
