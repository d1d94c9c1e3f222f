//! `build`'s command line, for engineers running it by hand. Every flag is another way to
//! set one of the task's params: flags become environment-style pairs that override the
//! environment, so the task and the command line share one parser ([`crate::task::params`]).
//! The flags are the param table's ([`table::PARAMS`]); only `--output`, `--help` and
//! `--version` are the command line's own.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::task::params::{self, table};

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Help,
    Version,
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

/// Parses `args` (without the program name). `--flag value` and `--flag=value` both work.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Command, CliError> {
    let mut out = Overrides::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        match flag.as_str() {
            "--help" | "-h" => return Ok(Command::Help),
            "--version" | "-V" => return Ok(Command::Version),
            "--output" => {
                let value = match inline {
                    Some(v) => v,
                    None => args.next().ok_or_else(|| CliError::MissingValue(flag.clone()))?,
                };
                out.output = Some(PathBuf::from(value));
            }
            _ => {
                let Some((param, Some(takes))) = table::by_flag(&flag).map(|p| (p, p.flag.as_ref())) else {
                    return Err(CliError::Unknown(arg));
                };
                // A switch sets its param to true and takes no value.
                if takes.value.is_empty() {
                    if inline.is_some() {
                        return Err(CliError::Unknown(arg));
                    }
                    out.vars.push((param.name.to_string(), "true".to_string()));
                    continue;
                }
                let value = match inline {
                    Some(v) => v,
                    None => args.next().ok_or_else(|| CliError::MissingValue(flag.clone()))?,
                };
                if param.kind == table::Kind::Prefix {
                    let (name, v) = value
                        .split_once('=')
                        .filter(|(n, _)| !n.is_empty())
                        .ok_or_else(|| CliError::NotPair { flag: flag.clone(), value: value.clone() })?;
                    out.vars.push((format!("{}{name}", param.prefix()), v.to_string()));
                } else {
                    out.vars.push((param.name.to_string(), value));
                }
            }
        }
    }
    Ok(Command::Build(out))
}

/// `build`: parses the command line, reads the environment once (the flags over it), and
/// builds, or prints BuildKit's version and workers. Errors are one line each (a daemon's
/// log tail keeps its own lines), control characters escaped.
pub fn main() -> ExitCode {
    let overrides = match parse(std::env::args().skip(1)) {
        Ok(Command::Help) => {
            print!("{}", table::help());
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("build (kiln) {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Ok(Command::Build(o)) => o,
        Err(e) => {
            eprintln!("build: {e}");
            return ExitCode::from(2);
        }
    };
    let mut vars: Vec<(String, String)> = std::env::vars().collect();
    for warning in params::typo_warnings(&vars).into_iter().chain(params::Buildkit::warnings(&vars)) {
        eprintln!("build: warning: {warning}");
    }
    vars.extend(overrides.vars);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("build: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&vars, overrides.output)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let text = format!("{e:#}");
            let lines: Vec<String> = text.lines().map(kiln_registry::one_line).collect();
            eprintln!("build: {}", lines.join("\n"));
            ExitCode::FAILURE
        }
    }
}

/// What `vars` ask for: BuildKit's version and workers (`BUILDKIT_INFO`), or the build.
async fn run(vars: &[(String, String)], output: Option<PathBuf>) -> anyhow::Result<()> {
    let settings = params::Buildkit::from_env(vars)?;
    if settings.info {
        print!("{}", crate::task::buildkit_info(&settings).await?);
        return Ok(());
    }
    let mut params = params::BuildParams::from_env(vars)?;
    if let Some(output) = output {
        params.output = output;
    }
    crate::task::run(params).await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Command, CliError> {
        parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn every_flag_sets_a_param_build_reads() {
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
        let Command::Build(o) = run(&["--buildkit-info"]).unwrap() else { panic!("expected a build") };
        assert_eq!(o.vars, [("BUILDKIT_INFO".to_string(), "true".to_string())]);
        assert_eq!(run(&["-h"]).unwrap(), Command::Help);
    }
}
