//! Helpers `scripts/dev-env` calls to set up the real servers tests run against.
//!
//! ```text
//! kiln-testenv certs DIR                      CA, server and token-signer certificates
//! kiln-testenv token-issuer ADDR CERT_DIR     serve tokens (user/password from KILN_TOKEN_USER/KILN_TOKEN_PASSWORD,
//!                                               and _json_key with the file KILN_TOKEN_JSON_KEY)
//! kiln-testenv seed-layout DIR BUSYBOX [ARM64] OCI layout of library/busybox (index, amd64, arm64)
//! kiln-testenv rootfs-layout DIR TAR TAG      OCI layout of one image made from a rootfs tarball
//! kiln-testenv buildkit-relay SOCK DOCKER_SOCK  a unix socket joined to the engine's BuildKit
//! kiln-testenv free-port                      a TCP port free on 127.0.0.1 right now
//! ```

use std::path::PathBuf;

use anyhow::{Context, bail};

fn main() {
    if let Err(e) = run() {
        eprintln!("kiln-testenv: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["certs", dir] => kiln_tests::certs::ensure(&PathBuf::from(dir)),
        ["token-issuer", addr, cert_dir] => {
            let user = std::env::var("KILN_TOKEN_USER").context("KILN_TOKEN_USER is not set")?;
            let password = std::env::var("KILN_TOKEN_PASSWORD").context("KILN_TOKEN_PASSWORD is not set")?;
            let mut users = vec![(user, password)];
            // Google's registries take a service account's whole JSON key as the password
            // of the user `_json_key`.
            if let Some(path) = std::env::var_os("KILN_TOKEN_JSON_KEY") {
                let key = std::fs::read_to_string(&path).with_context(|| format!("KILN_TOKEN_JSON_KEY {path:?}"))?;
                users.push(("_json_key".to_string(), key));
            }
            let addr = addr.parse().with_context(|| format!("address {addr:?}"))?;
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(kiln_tests::token_issuer::serve(addr, &PathBuf::from(cert_dir), users))
        }
        ["rootfs-layout", dir, tar, tag] => {
            kiln_tests::seed::write_rootfs_layout(&PathBuf::from(dir), &PathBuf::from(tar), tag)
        }
        ["seed-layout", dir, busybox] => {
            kiln_tests::seed::write_layout(&PathBuf::from(dir), &PathBuf::from(busybox), None)
        }
        ["seed-layout", dir, busybox, arm64] => {
            kiln_tests::seed::write_layout(&PathBuf::from(dir), &PathBuf::from(busybox), Some(&PathBuf::from(arm64)))
        }
        ["buildkit-relay", socket, docker_socket] => {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(kiln_tests::relay::serve(&PathBuf::from(socket), &PathBuf::from(docker_socket)))
        }
        ["free-port"] => {
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            println!("{}", listener.local_addr()?.port());
            Ok(())
        }
        _ => bail!(
            "usage: kiln-testenv certs DIR | token-issuer ADDR CERT_DIR | seed-layout DIR BUSYBOX [ARM64_BUSYBOX] | rootfs-layout DIR TAR TAG | buildkit-relay SOCK DOCKER_SOCK | free-port"
        ),
    }
}
