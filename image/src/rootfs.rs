//! A root filesystem made from an image's layers, as `in`'s `format: rootfs` and the build
//! task's `UNPACK_ROOTFS` both write it: the layers unpacked in order by [`Unpacker`], and
//! `metadata.json`, how to run it ([`run_metadata`]).

use std::io::{self, Read};

use crate::decompress::decompressed_ahead;
use crate::oci::RunConfig;
use crate::unpack::{UnpackError, Unpacker};

/// Why a layer was not unpacked; the root filesystem is then partly written and should be
/// thrown away.
#[derive(Debug, thiserror::Error)]
#[error("layer {}/{} {name}: {error}", .index + 1, .count)]
pub struct LayerFailed {
    /// Which layer, from 0.
    pub index: usize,
    /// Of how many.
    pub count: usize,
    pub name: String,
    pub error: LayerError,
}

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// The layer could not be applied (or it would write too much, or outside the root).
    #[error(transparent)]
    Unpack(UnpackError),
    /// Its bytes could not be read or decompressed.
    #[error(transparent)]
    Read(io::Error),
}

/// Unpacks the layers `names` in order, reading layer `i`'s stored (compressed) bytes from
/// `open(i)`. Each layer is decompressed on a thread of its own, a little ahead of the
/// unpacker, and the next layer's thread starts while this one is unpacked, so inflating
/// and writing files share the cores. Each layer is read to its very end (the padding after
/// the tar too), so a reader that checks a digest at the end has checked it before `done(i)`
/// says the layer is unpacked.
pub fn unpack_layers<R: Read + Send + 'static>(
    unpacker: &mut Unpacker,
    names: &[String],
    mut open: impl FnMut(usize) -> io::Result<R>,
    mut done: impl FnMut(usize),
) -> Result<(), LayerFailed> {
    let mut ahead = |i: usize| open(i).and_then(decompressed_ahead);
    let mut next = (!names.is_empty()).then(|| ahead(0));
    for (i, name) in names.iter().enumerate() {
        let current = next.take().expect("a reader for every layer");
        next = (i + 1 < names.len()).then(|| ahead(i + 1));
        let result = current.map_err(LayerError::Read).and_then(|mut tar| {
            unpacker.apply_layer(name, &mut tar).map_err(LayerError::Unpack)?;
            io::copy(&mut tar, &mut io::sink()).map_err(LayerError::Read)?;
            Ok(())
        });
        result.map_err(|error| LayerFailed { index: i, count: names.len(), name: name.clone(), error })?;
        done(i);
    }
    Ok(())
}

/// `metadata.json` beside a root filesystem: what Concourse reads to run it (`env`,
/// `user`), plus the image's `entrypoint` and `cmd`; absent values are `null`, the user `""`.
pub fn run_metadata(config: &RunConfig) -> serde_json::Value {
    serde_json::json!({
        "env": config.env,
        "user": config.user.clone().unwrap_or_default(),
        "entrypoint": config.entrypoint,
        "cmd": config.cmd,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, content) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(content.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, *content).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn layers_are_unpacked_in_order_and_each_said_done() {
        let dir = tempfile::tempdir().unwrap();
        let layers = [layer(&[("a", b"1"), ("b", b"first")]), layer(&[("b", b"second")])];
        let names = vec!["one".to_string(), "two".to_string()];
        let mut unpacker = Unpacker::new(dir.path(), Default::default()).unwrap();
        let mut done = Vec::new();
        unpack_layers(&mut unpacker, &names, |i| Ok(io::Cursor::new(layers[i].clone())), |i| done.push(i)).unwrap();
        assert_eq!(done, [0, 1]);
        assert_eq!(std::fs::read(dir.path().join("b")).unwrap(), b"second");
        assert_eq!(std::fs::read(dir.path().join("a")).unwrap(), b"1");
    }

    #[test]
    fn a_layer_that_cannot_be_read_is_named_and_stops_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["one".to_string(), "two".to_string(), "three".to_string()];
        let mut unpacker = Unpacker::new(dir.path(), Default::default()).unwrap();
        let mut done = Vec::new();
        let open = |i: usize| match i {
            1 => Err(io::Error::other("gone")),
            _ => Ok(io::Cursor::new(layer(&[("f", b"x")]))),
        };
        let e = unpack_layers(&mut unpacker, &names, open, |i| done.push(i)).unwrap_err();
        assert_eq!((e.index, done.as_slice()), (1, &[0][..]));
        assert!(matches!(e.error, LayerError::Read(_)));
        assert_eq!(e.to_string(), "layer 2/3 two: gone");
    }

    #[test]
    fn metadata_says_how_to_run_the_image() {
        let config =
            RunConfig { env: Some(vec!["PATH=/bin".into()]), cmd: Some(vec!["sh".into()]), ..Default::default() };
        assert_eq!(
            run_metadata(&config),
            serde_json::json!({ "env": ["PATH=/bin"], "user": "", "entrypoint": null, "cmd": ["sh"] })
        );
    }
}
