//! `BUILDKIT_SSH` against the dev engine's BuildKit, checked with OpenSSH's own tools: the
//! build runs the host's `ssh-add` and `ssh-keygen` (copied into a Debian image made by the
//! dev environment) against the agent kiln serves, and the host verifies the signature made
//! inside the build with `ssh-keygen -Y verify`.

use std::path::Path;
use std::process::Command;

use kiln_tests::dev_env_or_skip;
use kiln_tests::harness::{DevEnv, build_task};

fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// A key made by ssh-keygen, the context with the OpenSSH tools, and a Dockerfile that lists
/// the agent's keys, signs `data` through it, and tries to delete its keys; the image keeps
/// only what the checks read.
fn setup(env: &DevEnv, work: &Path, kind: &str) -> String {
    let ctx = work.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    let key = work.join("key");
    sh(Command::new("ssh-keygen").args(["-q", "-t", kind, "-N", "", "-C", "kiln@test", "-f"]).arg(&key));
    for tool in ["ssh-add", "ssh-keygen"] {
        std::fs::copy(Path::new("/usr/bin").join(tool), ctx.join(tool)).unwrap();
    }
    std::fs::copy(work.join("key.pub"), ctx.join("key.pub")).unwrap();
    std::fs::write(ctx.join("data"), "signed inside a build\n").unwrap();
    let dockerfile = format!(
        "FROM {}/library/debian:bookworm\n\
         COPY . /ctx\n\
         RUN --mount=type=ssh,id=deploy /ctx/ssh-add -l > /keys \
           && /ctx/ssh-keygen -Y sign -f /ctx/key.pub -n kiln /ctx/data \
           && cp /ctx/data.sig /data.sig \
           && (/ctx/ssh-add -D 2> /delete || echo refused >> /delete) \
           && /ctx/ssh-add -l >> /keys\n\
         FROM scratch\n\
         COPY --from=0 /keys /data.sig /delete /\n",
        env.registries.plain.addr
    );
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    sh(Command::new("ssh-keygen").args(["-l", "-f"]).arg(work.join("key.pub")))
}

/// The signature made in the build verifies on the host against the key.
fn assert_signed(work: &Path) {
    let rootfs = work.join("image/rootfs");
    let public = std::fs::read_to_string(work.join("key.pub")).unwrap();
    std::fs::write(work.join("allowed"), format!("kiln@test {public}")).unwrap();
    let verify = Command::new("ssh-keygen")
        .args(["-Y", "verify", "-n", "kiln", "-I", "kiln@test", "-f"])
        .arg(work.join("allowed"))
        .arg("-s")
        .arg(rootfs.join("data.sig"))
        .stdin(std::fs::File::open(work.join("ctx/data")).unwrap())
        .output()
        .unwrap();
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stderr));
}

#[test]
fn key_files_are_served_by_kilns_own_agent() {
    let env = dev_env_or_skip!();
    for kind in ["ed25519", "ecdsa", "rsa"] {
        let work = tempfile::tempdir().unwrap();
        let fingerprint = setup(env, work.path(), kind);
        let key = work.path().join("key");
        let ssh = format!("deploy={}", key.display());
        let out =
            build_task(env, work.path(), &[], &[("CONTEXT", "ctx"), ("BUILDKIT_SSH", &ssh), ("UNPACK_ROOTFS", "true")]);
        out.success();
        let keys = std::fs::read_to_string(work.path().join("image/rootfs/keys")).unwrap();
        let listed = fingerprint.split_whitespace().nth(1).unwrap();
        assert_eq!(keys.matches(listed).count(), 2, "{kind}: {keys} (want {fingerprint}) twice: deleting failed");
        assert_signed(work.path());
        // The key never reaches the image or the log.
        let private = std::fs::read_to_string(&key).unwrap();
        let secret_line = private.lines().nth(1).unwrap();
        assert!(!out.stderr.contains(secret_line) && !out.stdout.contains(secret_line));
        let tar = std::fs::read(work.path().join("image/image.tar")).unwrap();
        assert!(!tar.windows(secret_line.len()).any(|w| w == secret_line.as_bytes()), "{kind}: key in the image");
    }
}

#[test]
fn an_agent_socket_is_forwarded_read_only() {
    let env = dev_env_or_skip!();
    let work = tempfile::tempdir().unwrap();
    let fingerprint = setup(env, work.path(), "ed25519");
    let socket = work.path().join("agent.sock");
    let agent = sh(Command::new("ssh-agent").arg("-a").arg(&socket));
    let pid = agent.split("SSH_AGENT_PID=").nth(1).and_then(|s| s.split(';').next()).unwrap().to_string();
    sh(Command::new("ssh-add").arg("-q").arg(work.path().join("key")).env("SSH_AUTH_SOCK", &socket));

    let out = build_task(
        env,
        work.path(),
        &[],
        &[
            ("CONTEXT", "ctx"),
            ("BUILDKIT_SSH", "deploy"),
            ("SSH_AUTH_SOCK", socket.to_str().unwrap()),
            ("UNPACK_ROOTFS", "true"),
        ],
    );
    let listed_after = Command::new("ssh-add").arg("-l").env("SSH_AUTH_SOCK", &socket).output().unwrap();
    let listed_after = String::from_utf8_lossy(&listed_after.stdout).into_owned();
    let _ = Command::new("kill").arg(&pid).status();
    out.success();
    let listed = fingerprint.split_whitespace().nth(1).unwrap();
    let keys = std::fs::read_to_string(work.path().join("image/rootfs/keys")).unwrap();
    assert_eq!(keys.matches(listed).count(), 2, "{keys}");
    assert!(std::fs::read_to_string(work.path().join("image/rootfs/delete")).unwrap().contains("refused"));
    assert!(listed_after.contains(listed), "the build removed the agent's key: {listed_after}");
    assert_signed(work.path());
}

#[test]
fn bad_ssh_params_are_named() {
    let env = dev_env_or_skip!();
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("Dockerfile"), "FROM scratch\n").unwrap();
    std::fs::write(work.path().join("not-a-key"), "hello\n").unwrap();
    for (value, says) in [
        ("default", "BUILDKIT_SSH: default: no paths given and SSH_AUTH_SOCK is not set"),
        ("deploy=missing", "BUILDKIT_SSH: deploy: missing does not exist"),
        ("deploy=not-a-key", "BUILDKIT_SSH: deploy: not-a-key is not an OpenSSH private key"),
    ] {
        let out = build_task(env, work.path(), &[], &[("BUILDKIT_SSH", value)]);
        out.failure();
        assert!(out.stderr.contains(says), "{value}: {}", out.stderr);
    }
}
