//! `build`'s command line, for engineers running it by hand. Every flag is another way to
//! set one of the task's params: flags become environment-style pairs that override the
//! environment, so the task and the command line share one parser ([`crate::task::params`]).

use std::path::PathBuf;

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Help,
    Version,
    /// Print BuildKit's version and workers.
    Info,
    Build(Overrides),
}

/// Params given as flags, and where the image goes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `(NAME, value)` pairs, later ones winning, as if they were set in the environment.
    pub vars: Vec<(String, String)>,
    /// `--output DIR`: instead of `image/` in the working directory.
    pub output: Option<PathBuf>,
}

/// A command line `build` cannot run.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("unknown argument {0:?} (see build --help)")]
    Unknown(String),
    #[error("{0} needs a value (see build --help)")]
    MissingValue(String),
    #[error("{flag}: {value:?} is not NAME=value")]
    NotPair { flag: String, value: String },
}

/// One flag: its name, what value it takes (none for a switch), the param it sets
/// (`NAME=value` for a switch) and, where it differs, BuildKit's own name for the option.
pub struct Flag {
    pub flag: &'static str,
    pub value: &'static str,
    pub param: &'static str,
    pub buildkit: &'static str,
}

const fn flag(flag: &'static str, value: &'static str, param: &'static str, buildkit: &'static str) -> Flag {
    Flag { flag, value, param, buildkit }
}

/// The flags and the param each sets, for `--help` and the parser alike.
pub const FLAGS: &[Flag] = &[
    flag("--context", "DIR", "CONTEXT", "--local context"),
    flag("--file", "PATH", "DOCKERFILE", "filename"),
    flag("--build-arg", "NAME=VALUE", "BUILD_ARG_<NAME>", "build-arg:<NAME>"),
    flag("--label", "NAME=VALUE", "LABEL_<NAME>", "label:<NAME>"),
    flag("--secret", "ID=PATH", "BUILDKIT_SECRET_<ID>", "--secret id=<ID>,src=PATH"),
    flag("--secret-env", "ID=VARIABLE", "BUILDKIT_SECRETENV_<ID>", "--secret id=<ID>,env=VARIABLE"),
    flag("--build-context", "NAME=DIR|URL", "BUILD_CONTEXT_<NAME>", "context:<NAME>"),
    flag("--target", "STAGE", "TARGET", "target"),
    flag("--platform", "LIST", "IMAGE_PLATFORM", "platform"),
    flag("--cache-from", "ENTRY", "CACHE_FROM", "--import-cache"),
    flag("--cache-to", "ENTRY", "CACHE_TO", "--export-cache"),
    flag("--name", "NAME", "IMAGE_NAME", "name"),
    flag("--tag", "TAG", "IMAGE_TAG", ""),
    flag("--registry", "HOST[/NAMESPACE]", "REGISTRY", ""),
    flag("--output", "DIR", "(image/ in the working directory)", ""),
    flag("--oci", "", "OUTPUT_OCI=true", "--output type=oci"),
    flag("--unpack-rootfs", "", "UNPACK_ROOTFS=true", ""),
    flag("--no-cache", "", "NO_CACHE=true", "no-cache"),
    flag("--push", "", "PUSH=true", ""),
    flag("--load", "", "LOAD=true", "--output type=docker, then docker load"),
    flag("--progress", "MODE", "PROGRESS", "--progress"),
    flag("--source-date-epoch", "SECONDS|git", "SOURCE_DATE_EPOCH", "build-arg:SOURCE_DATE_EPOCH, rewrite-timestamp"),
    flag("--compression", "TYPE", "COMPRESSION", "compression"),
    flag("--compression-level", "N", "COMPRESSION_LEVEL", "compression-level"),
    flag("--force-compression", "", "FORCE_COMPRESSION=true", "force-compression"),
    flag("--oci-mediatypes", "", "OCI_MEDIATYPES=true", "oci-mediatypes"),
    flag("--network", "MODE", "NETWORK", "force-network-mode; network.host entitlement"),
];

/// Parses `args` (without the program name). `--flag value` and `--flag=value` both work.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Command, CliError> {
    let mut out = Overrides::default();
    let mut args = args.into_iter();
    let mut info = false;
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        match flag.as_str() {
            "--help" | "-h" => return Ok(Command::Help),
            "--version" | "-V" => return Ok(Command::Version),
            "--buildkit-info" if inline.is_none() => info = true,
            _ => {
                let Some(Flag { value: takes, param, .. }) = FLAGS.iter().find(|f| f.flag == flag) else {
                    return Err(CliError::Unknown(arg));
                };
                // A switch sets its param as FLAGS says (`OUTPUT_OCI=true`) and takes no value.
                if takes.is_empty() {
                    let (Some((name, value)), None) = (param.split_once('='), &inline) else {
                        return Err(CliError::Unknown(arg));
                    };
                    out.vars.push((name.to_string(), value.to_string()));
                    continue;
                }
                let value = match inline {
                    Some(v) => v,
                    None => args.next().ok_or_else(|| CliError::MissingValue(flag.clone()))?,
                };
                match flag.as_str() {
                    "--output" => out.output = Some(PathBuf::from(value)),
                    "--build-arg" | "--label" | "--secret" | "--secret-env" | "--build-context" => {
                        let (name, v) = value
                            .split_once('=')
                            .filter(|(n, _)| !n.is_empty())
                            .ok_or_else(|| CliError::NotPair { flag: flag.clone(), value: value.clone() })?;
                        let prefix = param.trim_end_matches(|c| c != '_');
                        out.vars.push((format!("{prefix}{name}"), v.to_string()));
                    }
                    _ => out.vars.push((param.to_string(), value)),
                }
            }
        }
    }
    Ok(if info { Command::Info } else { Command::Build(out) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Command, CliError> {
        parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn every_flag_sets_a_param_build_reads() {
        for f in FLAGS.iter().filter(|f| f.flag != "--output") {
            let name = f.param.split('=').next().unwrap();
            let known = crate::task::params::NAMES.contains(&name)
                || crate::task::params::PREFIXES.iter().any(|p| name.starts_with(p) && name.ends_with('>'));
            assert!(known, "{} sets {name}, which build does not read", f.flag);
        }
        let Command::Build(o) = run(&[
            "--source-date-epoch",
            "git",
            "--compression=zstd",
            "--compression-level",
            "3",
            "--force-compression",
        ])
        .unwrap() else {
            panic!("expected a build")
        };
        let names: Vec<(&str, &str)> = o.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            names,
            [
                ("SOURCE_DATE_EPOCH", "git"),
                ("COMPRESSION", "zstd"),
                ("COMPRESSION_LEVEL", "3"),
                ("FORCE_COMPRESSION", "true")
            ]
        );
    }

    #[test]
    fn flags_become_params() {
        let Command::Build(o) = run(&[
            "--context",
            "app",
            "--file=app/Dockerfile.prod",
            "--build-arg",
            "VERSION=1.2=3",
            "--label=team=core",
            "--secret",
            "npm=/run/npmrc",
            "--platform",
            "linux/amd64,linux/arm64",
            "--output",
            "out",
            "--oci",
            "--name=app",
            "--tag",
            "1.0",
            "--registry",
            "127.0.0.1:5000/team",
            "--push",
        ])
        .unwrap() else {
            panic!("expected a build")
        };
        let names: Vec<(&str, &str)> = o.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            names,
            [
                ("CONTEXT", "app"),
                ("DOCKERFILE", "app/Dockerfile.prod"),
                ("BUILD_ARG_VERSION", "1.2=3"),
                ("LABEL_team", "core"),
                ("BUILDKIT_SECRET_npm", "/run/npmrc"),
                ("IMAGE_PLATFORM", "linux/amd64,linux/arm64"),
                ("OUTPUT_OCI", "true"),
                ("IMAGE_NAME", "app"),
                ("IMAGE_TAG", "1.0"),
                ("REGISTRY", "127.0.0.1:5000/team"),
                ("PUSH", "true"),
            ]
        );
        assert_eq!(o.output, Some(PathBuf::from("out")));
    }

    #[test]
    fn bad_command_lines_say_what_is_wrong() {
        assert_eq!(
            run(&["--frobnicate"]).unwrap_err().to_string(),
            "unknown argument \"--frobnicate\" (see build --help)"
        );
        assert!(run(&["--context"]).unwrap_err().to_string().starts_with("--context needs a value"));
        assert!(run(&["--build-arg", "novalue"]).unwrap_err().to_string().contains("not NAME=value"));
        assert!(run(&["--oci=yes"]).is_err());
        assert!(run(&["--push=false"]).is_err());
        assert_eq!(run(&["--buildkit-info"]).unwrap(), Command::Info);
        assert_eq!(run(&["-h"]).unwrap(), Command::Help);
    }
}
