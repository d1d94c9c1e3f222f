//! The YAML under `examples/` says only what kiln understands: every file parses, every task
//! param is one `build` reads (from the same list its parser and typo warnings use), and every
//! registry-image `source`, `get` and `put` block is accepted by the resource's own request
//! types, the ones `check`, `in` and `out` deserialize with unknown fields refused.

use std::path::{Path, PathBuf};

use kiln_build_task::task::params::table;
use kiln_resource::get::GetParams;
use kiln_resource::put::PutParams;
use kiln_resource::put_build::BuildSpec;
use kiln_resource::source::Source;
use serde_json::Value;

/// Every `.yml`/`.yaml` file under `examples/`.
fn example_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&kiln_tests::harness::workspace().join("examples"), &mut files);
    files.sort();
    files
}

/// The file as JSON, with each `((var))` replaced by its name, as `fly -v name=name` would.
fn load(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    let text = replace_vars(&text);
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn replace_vars(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("((") {
        let end = rest[start..].find("))").map(|e| start + e).expect("unclosed ((var");
        out.push_str(&rest[..start]);
        out.push_str(&rest[start + 2..end]);
        rest = &rest[end + 2..];
    }
    out + rest
}

/// What is wrong with a task config's params and image source, one line each.
fn check_task_config(config: &Value, at: &str, problems: &mut Vec<String>) {
    if let Some(params) = config["params"].as_object() {
        for name in params.keys() {
            let known = table::known(name);
            if !known {
                problems.push(format!("{at}: param {name} is not one build reads"));
            }
        }
    }
    if config["image_resource"]["type"] == "registry-image" {
        check_source(&config["image_resource"]["source"], &format!("{at}.image_resource"), problems);
    }
}

fn check_source(source: &Value, at: &str, problems: &mut Vec<String>) {
    match serde_json::from_value::<Source>(source.clone()) {
        Ok(s) => {
            if let Err(e) = s.validate() {
                problems.push(format!("{at}.source: {e}"));
            }
        }
        Err(e) => problems.push(format!("{at}.source: {e}")),
    }
}

fn check_params<T: serde::de::DeserializeOwned>(params: &Value, at: &str, problems: &mut Vec<String>) {
    let params = if params.is_null() { Value::Object(Default::default()) } else { params.clone() };
    if let Err(e) = serde_json::from_value::<T>(params) {
        problems.push(format!("{at}.params: {e}"));
    }
}

/// Every problem in one example file.
fn problems(path: &Path, doc: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let file = path.file_name().unwrap().to_string_lossy().to_string();
    if doc.get("jobs").is_none() {
        // A task config for `fly execute`.
        check_task_config(doc, &file, &mut problems);
        return problems;
    }
    let registry_types: Vec<&str> = std::iter::once("registry-image")
        .chain(doc["resource_types"].as_array().into_iter().flatten().filter_map(|t| t["name"].as_str()))
        .collect();
    for t in doc["resource_types"].as_array().into_iter().flatten() {
        if t["type"] == "registry-image" {
            check_source(&t["source"], &format!("{file}: resource_types.{}", t["name"]), &mut problems);
        }
    }
    let mut registry_resources = Vec::new();
    for r in doc["resources"].as_array().into_iter().flatten() {
        if registry_types.contains(&r["type"].as_str().unwrap_or_default()) {
            registry_resources.push(r["name"].as_str().unwrap_or_default().to_string());
            check_source(&r["source"], &format!("{file}: resources.{}", r["name"]), &mut problems);
        }
    }
    for job in doc["jobs"].as_array().into_iter().flatten() {
        for step in job["plan"].as_array().into_iter().flatten() {
            let at = format!("{file}: jobs.{}", job["name"]);
            if let Some(name) = step["task"].as_str() {
                check_task_config(&step["config"], &format!("{at}.task.{name}"), &mut problems);
            }
            if let Some(name) = step["put"].as_str().filter(|n| registry_resources.iter().any(|r| r == n)) {
                check_params::<PutParams>(&step["params"], &format!("{at}.put.{name}"), &mut problems);
                // `build` is a map out reads itself, with its own field checks.
                if let Some(build) = step["params"].get("build")
                    && let Err(e) = BuildSpec::parse(build, step["params"]["cache"].as_bool())
                {
                    problems.push(format!("{at}.put.{name}.{e}"));
                }
            }
            // A get may name its artifact apart from the resource (`resource:`).
            let fetched = step["resource"].as_str().or(step["get"].as_str());
            if let Some(name) = fetched.filter(|n| step["get"].is_string() && registry_resources.iter().any(|r| r == n))
            {
                check_params::<GetParams>(&step["params"], &format!("{at}.get.{name}"), &mut problems);
            }
        }
    }
    problems
}

#[test]
fn every_example_uses_only_what_kiln_reads() {
    let files = example_files();
    assert!(files.len() >= 3, "examples: {files:?}");
    let mut all = Vec::new();
    for path in &files {
        all.extend(problems(path, &load(path)));
    }
    assert!(all.is_empty(), "{}", all.join("\n"));
}

#[test]
fn the_checks_catch_what_kiln_would_not_read() {
    let path = kiln_tests::harness::workspace().join("examples/pipeline.yml");
    let mut doc = load(&path);
    let job = &mut doc["jobs"][0];
    job["plan"][1]["config"]["params"]["BUILD_ARGZ_X"] = "1".into();
    job["plan"][3]["params"]["bump_alias"] = true.into();
    doc["resources"][1]["source"]["repo"] = "x".into();
    let found = problems(&path, &doc);
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(found[0].contains("resources.\"hello-image\".source: unknown field `repo`"), "{found:#?}");
    assert!(found[1].contains("param BUILD_ARGZ_X is not one build reads"), "{found:#?}");
    assert!(found[2].contains("put.hello-image.params: unknown field `bump_alias`"), "{found:#?}");

    let path = kiln_tests::harness::workspace().join("examples/build-and-push.yml");
    let mut doc = load(&path);
    doc["jobs"][0]["plan"][1]["params"]["build"]["contxt"] = "app-source".into();
    doc["jobs"][1]["plan"][1]["config"]["params"]["IMAGE_TAGS"] = "v1".into();
    let found = problems(&path, &doc);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found[0].contains("put.my-app-image.params.build: unknown field \"contxt\""), "{found:#?}");
    assert!(found[1].contains("param IMAGE_TAGS is not one build reads"), "{found:#?}");
}
