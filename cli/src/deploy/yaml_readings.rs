//! The deploy reads the rendered manifests as YAML 1.2 (serde-saphyr, [`manifest::parse`]);
//! kubectl and the API server read YAML 1.1 (go-yaml). The two disagree on plain scalars
//! such as `0400` (1.2: decimal 400; 1.1: octal, 256), `yes`/`on`/`off`, `1e3`, `1:30` or
//! dates, so the deploy would diff, plan and record values that are not the ones the
//! cluster gets. This check reads every rendered manifest of every environment both ways
//! (PyYAML, YAML 1.1, from the venv tests/tools.sh makes) and requires the same JSON.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use super::manifest;

/// Every rendered `k8s/` file of `env`, by path, as `shopctl render` writes it.
fn rendered_files(env: &str) -> BTreeMap<PathBuf, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let project = crate::project::Project::find(Some(&root)).expect("the repository is a project");
    let loaded = project.load(env).expect("environment loads");
    crate::commands::render_env(&project, &loaded)
        .expect("renders")
        .into_iter()
        .filter(|(path, _)| path.starts_with("k8s"))
        .collect()
}

/// The documents of each file as PyYAML's `safe_load_all` reads them (YAML 1.1), empty
/// ones skipped like the deploy skips them. Values JSON has no type for (dates) become
/// their text, so they differ visibly from the YAML 1.2 string.
fn yaml11(files: &BTreeMap<PathBuf, String>) -> BTreeMap<String, Vec<Value>> {
    let script = "import json, sys, yaml\n\
        files = json.load(sys.stdin)\n\
        out = {p: [d for d in yaml.safe_load_all(t) if d is not None] for p, t in files.items()}\n\
        print(json.dumps(out, default=str))\n";
    let input: BTreeMap<String, &String> = files
        .iter()
        .map(|(p, t)| (p.display().to_string(), t))
        .collect();
    let python = crate::doctor::venv_bin().join("python");
    let mut child = Command::new(&python)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run `bash tests/tools.sh` (PyYAML comes with checkov)",
                python.display()
            )
        });
    serde_json::to_writer(child.stdin.take().unwrap(), &input).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "PyYAML cannot read a manifest: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Where `a` (YAML 1.1) and `b` (the deploy's YAML 1.2) differ, as `path: a vs b` lines.
fn differences(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for key in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                let null = Value::Null;
                let (u, v) = (x.get(key).unwrap_or(&null), y.get(key).unwrap_or(&null));
                differences(&format!("{path}.{key}"), u, v, out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (u, v)) in x.iter().zip(y).enumerate() {
                differences(&format!("{path}[{i}]"), u, v, out);
            }
        }
        // 1 and 1.0 are one number to both readers' users.
        (Value::Number(x), Value::Number(y)) if x.as_f64() == y.as_f64() => {}
        _ if a == b => {}
        _ => out.push(format!(
            "{path}: the API server (YAML 1.1) reads {a}, the deploy (YAML 1.2) reads {b}"
        )),
    }
}

/// Every disagreement between the two readings of `files`, one line each, naming the file,
/// the document and the field.
fn disagreements(files: &BTreeMap<PathBuf, String>) -> Vec<String> {
    let yaml11 = yaml11(files);
    let mut found = Vec::new();
    for (path, text) in files {
        let name = path.display().to_string();
        let deploy = manifest::parse(&name, text).unwrap_or_else(|e| panic!("{e}"));
        let api = &yaml11[&name];
        if api.len() != deploy.len() {
            found.push(format!(
                "{name}: the API server reads {} documents, the deploy {}",
                api.len(),
                deploy.len()
            ));
            continue;
        }
        for (a, object) in api.iter().zip(&deploy) {
            let mut here = Vec::new();
            differences("", a, &object.value, &mut here);
            found.extend(
                here.into_iter()
                    .map(|d| format!("{} {}: {d}", object.source, object.key)),
            );
        }
    }
    found
}

#[test]
fn every_environment_reads_the_same_in_yaml_1_1_and_1_2() {
    let environments = ["local", "staging", "production"];
    let on_disk: Vec<String> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../environments"))
            .unwrap()
            .filter_map(|e| {
                let path = e.unwrap().path();
                (path.extension()? == "toml")
                    .then(|| path.file_stem()?.to_str().map(str::to_owned))?
            })
            .collect();
    for env in &on_disk {
        assert!(
            environments.contains(&env.as_str()),
            "environments/{env}.toml is not checked here; add it to the list"
        );
    }
    let mut found = Vec::new();
    for env in environments {
        let files = rendered_files(env);
        assert!(!files.is_empty(), "{env} renders no manifests");
        found.extend(
            disagreements(&files)
                .into_iter()
                .map(|d| format!("{env}: {d}")),
        );
    }
    assert!(
        found.is_empty(),
        "rendered manifests that kubectl and the deploy read differently (write the value \
         so both agree: a decimal file mode with the octal in a comment, quoted strings):\n{}",
        found.join("\n")
    );
}

#[test]
fn an_octal_looking_mode_is_caught() {
    let doc = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  volumes:\n    - name: v\n      secret:\n        defaultMode: 0400\n        optional: false\n";
    let files = BTreeMap::from([(PathBuf::from("k8s/p.yaml"), doc.to_owned())]);
    let found = disagreements(&files);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].starts_with("k8s/p.yaml#1 Pod p: .spec.volumes[0].secret.defaultMode: ")
            && found[0].contains("(YAML 1.1) reads 256")
            && found[0].contains("(YAML 1.2) reads 400"),
        "{found:#?}"
    );
    let fixed = doc.replace("0400", "256 # 0400");
    let files = BTreeMap::from([(PathBuf::from("k8s/p.yaml"), fixed)]);
    assert_eq!(disagreements(&files), Vec::<String>::new());
}
