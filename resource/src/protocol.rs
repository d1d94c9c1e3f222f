//! The Concourse resource protocol: one JSON request on stdin, one JSON answer
//! on stdout, everything for humans on stderr.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::source::Source;

/// A version of the resource: one image, found by tag and pinned by digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Version {
    #[serde(default)]
    pub tag: String,
    pub digest: String,
}

/// A name and value shown with a version in Concourse's UI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MetadataField {
    pub name: String,
    pub value: String,
}

impl MetadataField {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self { name: name.into(), value: value.into() }
    }
}

/// What `in` and `out` print: the version they fetched or pushed, and its metadata.
#[derive(Debug, Serialize)]
pub struct StepResponse {
    pub version: Version,
    pub metadata: Vec<MetadataField>,
}

/// `check`'s request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    pub source: Source,
    #[serde(default)]
    pub version: Option<Version>,
}

/// Parses a request, refusing unknown fields so typos in pipelines surface.
pub fn parse_request<T: DeserializeOwned>(input: &[u8]) -> anyhow::Result<T> {
    if input.iter().all(u8::is_ascii_whitespace) {
        anyhow::bail!("invalid payload: stdin is empty; Concourse sends the request as JSON on stdin");
    }
    let mut json = serde_json::Deserializer::from_slice(input);
    serde_path_to_error::deserialize(&mut json).map_err(|e| {
        let mut segments: Vec<String> = e.path().iter().map(|s| s.to_string()).collect();
        let secret = segments.last().is_some_and(|field| is_secret_field(field));
        let detail = if secret {
            // serde quotes the value it could not take; a password typed as a number in a
            // vars file is still a password.
            without_values(&describe_json_error(e.inner()))
        } else {
            describe_json_error(e.inner())
        };
        let detail = one_line(&detail);
        if detail.starts_with("unknown field") {
            segments.pop(); // the unknown key itself, which the detail names
        }
        let path = one_line(&segments.join(".").replace(".[", "["));
        match path.as_str() {
            "." | "" => anyhow::anyhow!("invalid payload: {detail}"),
            _ => anyhow::anyhow!("invalid payload: {path}: {detail}"),
        }
    })
}

/// Fields whose values are secrets, wherever they appear in a request (`source`, a
/// mirror, `cosign`, `content_trust`): a type error about them never shows the value.
const SECRET_FIELDS: &[&str] = &[
    "password",
    "aws_secret_access_key",
    "aws_session_token",
    "private_key",
    "repository_key",
    "repository_passphrase",
    "tls_key",
];

fn is_secret_field(field: &str) -> bool {
    SECRET_FIELDS.contains(&field)
}

/// serde's message with every quoted value (`` `…` `` or `"…"`) replaced.
fn without_values(text: &str) -> String {
    let mut out = String::new();
    let mut quote: Option<char> = None;
    for c in text.chars() {
        match quote {
            Some(q) if c == q => {
                out.push_str("(value not shown)");
                quote = None;
            }
            Some(_) => {}
            None if c == '`' || c == '"' => quote = Some(c),
            None => out.push(c),
        }
    }
    if quote.is_some() {
        out.push_str("(value not shown)");
    }
    out
}

/// Control characters (a newline inside a JSON key, or an escape sequence in a registry's
/// answer) escaped, so an error about any input stays one printable line in the build log.
pub use kiln_registry::one_line;

/// serde's wording, with field names quoted the way our users' tools expect.
fn describe_json_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.strip_prefix("unknown field `").and_then(|rest| rest.split_once('`')) {
        Some((field, rest)) => format!("unknown field \"{field}\"{rest}"),
        None => text,
    }
}

/// Runs one resource step: reads stdin, runs `step` on a runtime, prints its answer
/// as JSON on stdout, or the error on stderr with exit code 1.
pub fn main<Req, Resp, F, Fut>(name: &str, step: F) -> ExitCode
where
    Req: DeserializeOwned,
    Resp: Serialize,
    F: FnOnce(Req) -> Fut,
    Fut: Future<Output = anyhow::Result<Resp>>,
{
    if let Some(code) = help_or_version(name) {
        return code;
    }
    run(name, step)
}

/// What each step does, for `--help`.
fn usage(name: &str) -> &'static str {
    match name {
        "check" => "check: prints, as JSON on stdout, the versions of the image in `source` (oldest first)",
        "in" => "in DIR: fetches the version in the request into DIR (rootfs, oci or oci-layout)",
        _ => "out DIR: pushes the image at params.image (relative to DIR) under the requested tags",
    }
}

/// `--help` and `--version`, for people running a step by hand.
fn help_or_version(name: &str) -> Option<ExitCode> {
    match std::env::args().nth(1).as_deref() {
        Some("--help" | "-h") => {
            println!(
                "{}\n\nkiln's Concourse registry resource. The request is JSON on stdin, as Concourse sends it:\n  \
                 {{\"source\": {{\"repository\": \"…\", …}}, \"version\": …, \"params\": …}}\n\
                 The answer is JSON on stdout; logs go to stderr. `source` and `params` are those of\n\
                 registry-image-resource; see kiln's README.",
                usage(name)
            );
            Some(ExitCode::SUCCESS)
        }
        Some("--version" | "-V") => {
            println!("{name} (kiln) {}", env!("CARGO_PKG_VERSION"));
            Some(ExitCode::SUCCESS)
        }
        _ => None,
    }
}

/// Like [`main`] for `in` and `out`, which get their directory as the first argument.
pub fn main_with_dir<Req, Resp, F, Fut>(name: &str, step: F) -> ExitCode
where
    Req: DeserializeOwned,
    Resp: Serialize,
    F: FnOnce(Req, PathBuf) -> Fut,
    Fut: Future<Output = anyhow::Result<Resp>>,
{
    if let Some(code) = help_or_version(name) {
        return code;
    }
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("{name}: usage: {name} DIRECTORY (the directory Concourse gives the step) with the request on stdin");
        return ExitCode::FAILURE;
    };
    if !dir.is_dir() {
        eprintln!("{name}: directory {} does not exist", dir.display());
        return ExitCode::FAILURE;
    }
    run(name, |req| step(req, dir))
}

fn run<Req, Resp, F, Fut>(name: &str, step: F) -> ExitCode
where
    Req: DeserializeOwned,
    Resp: Serialize,
    F: FnOnce(Req) -> Fut,
    Fut: Future<Output = anyhow::Result<Resp>>,
{
    let result = (|| {
        let mut input = Vec::new();
        std::io::stdin().read_to_end(&mut input).map_err(|e| anyhow::anyhow!("reading stdin: {e}"))?;
        let request = parse_request::<Req>(&input)?;
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        let response = runtime.block_on(step(request))?;
        Ok::<_, anyhow::Error>(serde_json::to_string(&response)?)
    })();
    match result {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            // Every step error is printed here, once: text a server sent is escaped with it.
            eprintln!("{name}: {}", one_line(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_of_the_wrong_type_is_not_printed() {
        for (json, secret) in [
            (r#"{"source": {"repository": "a", "password": 12345678}}"#, "12345678"),
            (r#"{"source": {"repository": "a", "password": 1.5e300}}"#, "1.5e300"),
            (r#"{"source": {"repository": "a", "password": true}}"#, "true"),
            (r#"{"source": {"repository": "a", "password": ["hunter2"]}}"#, "hunter2"),
            (r#"{"source": {"repository": "a", "aws_secret_access_key": 987654321}}"#, "987654321"),
            (r#"{"source": {"repository": "a", "registry_mirror": {"host": "m", "password": 4242}}}"#, "4242"),
        ] {
            let err = parse_request::<CheckRequest>(json.as_bytes()).unwrap_err().to_string();
            assert!(!err.contains(secret), "{err}");
            assert!(err.contains("password") || err.contains("aws_secret_access_key"), "names the field: {err}");
        }
        // Other fields keep their values in the message: they help and are not secret.
        let err = parse_request::<CheckRequest>(br#"{"source": {"repository": 42}}"#).unwrap_err().to_string();
        assert!(err.contains("42"), "{err}");
    }

    #[test]
    fn server_text_becomes_one_printable_line() {
        assert_eq!(one_line("a\x1b[31mred\r\nforged line\x07"), "a\\u{1b}[31mred\\r\\nforged line\\u{7}");
    }

    /// Found by fuzz/fuzz_targets/request_json.rs: a key holding a newline (`\n` in JSON)
    /// made the error two lines.
    #[test]
    fn errors_about_keys_with_newlines_stay_one_line() {
        let input = b"[{\"##\\\\\\n[[\"[{";
        let err = parse_request::<CheckRequest>(input).unwrap_err().to_string();
        assert!(!err.contains('\n'), "{err}");
        let input = br#"{"source": {"repository": "a", "x\ny": 1}}"#;
        let err = parse_request::<CheckRequest>(input).unwrap_err().to_string();
        assert!(!err.contains('\n') && err.contains(r#"x\ny"#), "{err}");
    }
}
