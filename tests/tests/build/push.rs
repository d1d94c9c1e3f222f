//! `build` with the params users' documents promise beyond oci-build-task: `IMAGE_NAME`,
//! `IMAGE_TAG` and `REGISTRY` name the image (`image.tar`'s `RepoTags`, the layout's
//! annotations, `image/tag`), and `PUSH=true` pushes it with `out`'s own push code,
//! against the dev engine's BuildKit and the dev registries, cross-checked with skopeo and crane.

use std::path::Path;
use std::process::Command;

use kiln_tests::dev_env_or_skip;
use kiln_tests::harness::{DevEnv, build_task, crane_agrees, from_busybox, skopeo_digest, unique_repo, write_files};
use serde_json::Value;

/// A context whose Dockerfile only copies a file, so its arm64 image needs no emulation.
fn context(env: &DevEnv) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), &[("Dockerfile", &format!("{}COPY named /named\n", from_busybox(env))), ("named", "yes")]);
    dir
}

/// `manifest.json` of a docker-save tarball, as skopeo reads it.
fn repo_tags(image_tar: &Path) -> Value {
    let out = Command::new("tar").arg("-xOf").arg(image_tar).arg("manifest.json").output().unwrap();
    assert!(out.status.success(), "tar: {}", String::from_utf8_lossy(&out.stderr));
    let manifest: Value = serde_json::from_slice(&out.stdout).unwrap();
    manifest[0]["RepoTags"].clone()
}

#[test]
fn image_name_and_tag_name_what_is_built() {
    let env = dev_env_or_skip!();
    let dir = context(env);
    build_task(env, dir.path(), &[], &[("IMAGE_NAME", "my-app"), ("IMAGE_TAG", "v1.0.0")]).success();
    let image = dir.path().join("image");
    assert_eq!(std::fs::read_to_string(image.join("tag")).unwrap(), "v1.0.0");
    let tags = repo_tags(&image.join("image.tar"));
    assert!(
        tags.as_array()
            .is_some_and(|t| t.iter().any(|t| t == "my-app:v1.0.0" || t == "docker.io/library/my-app:v1.0.0")),
        "RepoTags: {tags}"
    );
    // skopeo loads it as that name (the docker-archive transport picks the image by its tag).
    let inspect = Command::new("skopeo")
        .args(["inspect", &format!("docker-archive:{}:my-app:v1.0.0", image.join("image.tar").display())])
        .output()
        .unwrap();
    assert!(inspect.status.success(), "skopeo: {}", String::from_utf8_lossy(&inspect.stderr));

    // REGISTRY goes in front; IMAGE_TAG defaults to latest; the OCI layout carries the name.
    let dir = context(env);
    let vars = [("IMAGE_NAME", "my-app"), ("REGISTRY", "registry.example.com/team"), ("OUTPUT_OCI", "true")];
    build_task(env, dir.path(), &[], &vars).success();
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("image/image/index.json")).unwrap()).unwrap();
    let annotations = &index["manifests"][0]["annotations"];
    assert_eq!(annotations["io.containerd.image.name"], "registry.example.com/team/my-app:latest", "{index}");
    assert_eq!(annotations["org.opencontainers.image.ref.name"], "latest", "{index}");
    assert_eq!(std::fs::read_to_string(dir.path().join("image/tag")).unwrap(), "latest");

    // Without IMAGE_NAME nothing changes: no name, no tag file.
    let dir = context(env);
    build_task(env, dir.path(), &[], &[]).success();
    assert!(repo_tags(&dir.path().join("image/image.tar")).as_array().is_none_or(|t| t.is_empty()));
    assert!(!dir.path().join("image/tag").exists());
}

#[test]
fn push_sends_the_build_to_the_registry() {
    let env = dev_env_or_skip!();
    let reg = &env.registries.plain;
    let repo = unique_repo("build-push");
    let (namespace, name) = repo.rsplit_once('/').unwrap();
    let dir = context(env);
    let registry = format!("{}/{namespace}", reg.addr);
    let out = build_task(env, dir.path(), &["--push", "--registry", &registry, "--name", name, "--tag", "1.0"], &[]);
    out.success();
    let digest = std::fs::read_to_string(dir.path().join("image/digest")).unwrap();
    assert_eq!(digest, skopeo_digest(env, reg, &repo, "1.0"), "image/digest is what the registry holds");
    crane_agrees(env, &format!("{}:1.0", reg.repo(&repo)), &digest);
    assert!(out.stderr.contains(&format!("pushed {digest} as 1.0")), "{}", out.stderr);

    // Several platforms: the whole index goes, under the one tag.
    let dir = context(env);
    let vars = [
        ("PUSH", "true"),
        ("REGISTRY", registry.as_str()),
        ("IMAGE_NAME", name),
        ("IMAGE_TAG", "multi"),
        ("IMAGE_PLATFORM", "linux/amd64,linux/arm64"),
    ];
    build_task(env, dir.path(), &[], &vars).success();
    let digest = std::fs::read_to_string(dir.path().join("image/digest")).unwrap();
    assert_eq!(digest, skopeo_digest(env, reg, &repo, "multi"));
    crane_agrees(env, &format!("{}:multi", reg.repo(&repo)), &digest);
    let raw = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", &format!("docker://{}:multi", reg.repo(&repo))])
        .output()
        .unwrap();
    let index: Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(index["manifests"].as_array().map(Vec::len), Some(2), "{index}");
}

#[test]
fn push_logs_in_with_the_params_or_docker_config() {
    let env = dev_env_or_skip!();
    let reg = &env.registries.basic;
    let (user, password) = (reg.username.clone().unwrap(), reg.password.clone().unwrap());
    let repo = unique_repo("build-push-auth");
    let (namespace, name) = repo.rsplit_once('/').unwrap();
    let registry = format!("{}/{namespace}", reg.addr);
    let ca = env.ca_cert.to_string_lossy().into_owned();
    let base =
        [("PUSH", "true"), ("REGISTRY", registry.as_str()), ("IMAGE_NAME", name), ("SSL_CERT_FILE", ca.as_str())];

    // REGISTRY_USERNAME / REGISTRY_PASSWORD.
    let dir = context(env);
    let mut vars = base.to_vec();
    vars.extend([("IMAGE_TAG", "params"), ("REGISTRY_USERNAME", &user), ("REGISTRY_PASSWORD", &password)]);
    let out = build_task(env, dir.path(), &[], &vars);
    out.success();
    assert!(!out.stderr.contains(&password), "the password is never printed");
    let digest = std::fs::read_to_string(dir.path().join("image/digest")).unwrap();
    assert_eq!(digest, skopeo_digest(env, reg, &repo, "params"));

    // Docker's config.json.
    let dir = context(env);
    let config = tempfile::tempdir().unwrap();
    let auth = base64_encode(&format!("{user}:{password}"));
    let json = format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, reg.addr);
    std::fs::write(config.path().join("config.json"), json).unwrap();
    let config_dir = config.path().to_string_lossy().into_owned();
    let mut vars = base.to_vec();
    vars.extend([("IMAGE_TAG", "docker-config"), ("DOCKER_CONFIG", config_dir.as_str())]);
    build_task(env, dir.path(), &[], &vars).success();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("image/digest")).unwrap(),
        skopeo_digest(env, reg, &repo, "docker-config")
    );

    // A wrong password: the task fails, naming the registry, and nothing is tagged.
    let dir = context(env);
    let mut vars = base.to_vec();
    vars.extend([("IMAGE_TAG", "refused"), ("REGISTRY_USERNAME", &user), ("REGISTRY_PASSWORD", "wrong-password")]);
    let out = build_task(env, dir.path(), &[], &vars);
    out.failure();
    assert!(out.stderr.contains("PUSH: pushing to") && out.stderr.contains(&reg.addr), "{}", out.stderr);
    assert!(out.stderr.contains("refused access"), "{}", out.stderr);
    assert!(!out.stderr.contains("wrong-password"));
    let tags = Command::new("skopeo")
        .args(["list-tags", &format!("--cert-dir={}", env.tool_cert_dir.display())])
        .arg(format!("--creds={user}:{password}"))
        .arg(format!("docker://{}", reg.repo(&repo)))
        .output()
        .unwrap();
    assert!(tags.status.success(), "{}", String::from_utf8_lossy(&tags.stderr));
    let tags: Value = serde_json::from_slice(&tags.stdout).unwrap();
    let mut tags: Vec<&str> = tags["Tags"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    tags.sort();
    assert_eq!(tags, ["docker-config", "params"], "no `refused` tag");
}

#[test]
fn bad_naming_params_fail_before_the_build() {
    let env = dev_env_or_skip!();
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("PUSH", "true"), ("IMAGE_NAME", "app")], "PUSH: needs REGISTRY"),
        (&[("PUSH", "true"), ("REGISTRY", "127.0.0.1:5000")], "PUSH: needs IMAGE_NAME"),
        (&[("PUSH", "yes"), ("IMAGE_NAME", "app")], "PUSH: \"yes\" is not true or false"),
        (&[("IMAGE_NAME", "app"), ("IMAGE_TAG", "v1 beta")], "IMAGE_TAG:"),
        (&[("IMAGE_NAME", "app:1.0")], "IMAGE_NAME: \"app:1.0\": give the name alone"),
        (&[("IMAGE_NAME", "App")], "IMAGE_NAME: \"App\" is not an image name"),
        (&[("IMAGE_TAG", "1.0")], "IMAGE_TAG: needs IMAGE_NAME"),
        (&[("IMAGE_NAME", "app"), ("REGISTRY_PASSWORD", "s3cret-value")], "REGISTRY_PASSWORD: is set without"),
    ];
    for (vars, expected) in cases {
        let dir = context(env);
        let out = build_task(env, dir.path(), &[], vars);
        out.failure();
        assert!(out.stderr.contains(expected), "{vars:?}: expected {expected:?} in:\n{}", out.stderr);
        assert!(!out.stderr.contains("s3cret-value"), "{vars:?} printed a secret");
        assert_eq!(out.stderr.trim().lines().count(), 1, "{vars:?}: one line:\n{}", out.stderr);
        assert!(!dir.path().join("image").exists(), "{vars:?}: refused before any build");
    }
}

fn base64_encode(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}
