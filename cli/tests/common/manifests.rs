//! Rendered Kubernetes manifests, read back as data: the documents of one environment's
//! `k8s/` tree parsed by PyYAML (YAML 1.1, as the Kubernetes API server reads YAML), and the
//! few accessors tests need to run a component from exactly what was rendered.
#![allow(dead_code)] // each test binary uses part of the harness

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// One parsed YAML document and the rendered file it came from.
#[derive(Clone, Debug)]
pub struct Doc {
    pub file: String,
    pub value: Value,
}

impl Doc {
    pub fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or("")
    }
    pub fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or("")
    }
    pub fn id(&self) -> String {
        format!("{} {}/{}", self.file, self.kind(), self.name())
    }
    /// The pod template's spec of a workload, if it has one.
    pub fn pod_spec(&self) -> Option<&Value> {
        match self.kind() {
            "Deployment" | "StatefulSet" | "DaemonSet" | "Job" => {
                Some(&self.value["spec"]["template"]["spec"])
            }
            "CronJob" => Some(&self.value["spec"]["jobTemplate"]["spec"]["template"]["spec"]),
            _ => None,
        }
    }
    /// The container (or init container) of this workload's pod named `name`.
    pub fn container(&self, name: &str) -> &Value {
        let spec = self
            .pod_spec()
            .unwrap_or_else(|| panic!("{} has no pod template", self.id()));
        containers(spec)
            .into_iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("{} has no container {name}", self.id()))
    }
}

/// The containers and init containers of a pod spec.
pub fn containers(spec: &Value) -> Vec<&Value> {
    ["containers", "initContainers"]
        .iter()
        .flat_map(|k| spec[*k].as_array().into_iter().flatten())
        .collect()
}

/// The `*.yaml` files of a directory, sorted.
pub fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// Every YAML document of the files, parsed by PyYAML from shopctl's venv (checkov's own
/// dependency) and handed over as JSON.
pub fn parse(files: &[PathBuf]) -> Vec<Doc> {
    let script = "import json, sys, yaml\n\
        docs = []\n\
        for path in sys.argv[1:]:\n\
        \x20   with open(path) as f:\n\
        \x20       for doc in yaml.safe_load_all(f):\n\
        \x20           if doc is not None:\n\
        \x20               docs.append([path, doc])\n\
        print(json.dumps(docs))\n";
    let output = Command::new(super::venv_bin().join("python"))
        .arg("-c")
        .arg(script)
        .args(files)
        .output()
        .expect("run the venv's python (bash tests/tools.sh installs it)");
    assert!(
        output.status.success(),
        "a manifest is not valid YAML: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let docs: Vec<(String, Value)> = serde_json::from_slice(&output.stdout).unwrap();
    docs.into_iter()
        .map(|(file, value)| Doc {
            file: Path::new(&file)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned(),
            value,
        })
        .collect()
}

/// Parses a YAML text (a ConfigMap's embedded file) through the venv's PyYAML.
pub fn yaml_value(text: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("embedded.yaml");
    std::fs::write(&path, text).unwrap();
    parse(&[path]).remove(0).value
}

/// The documents of one rendered environment (`<out>/<env>/k8s`).
pub struct Manifests {
    pub docs: Vec<Doc>,
}

impl Manifests {
    /// Renders `env` with the real binary into the project and reads it back.
    pub fn render(project: &super::Project, env: &str) -> Manifests {
        // `render <env> --out <dir>` writes <dir>/<env>/k8s.
        let out = project.path().join("out");
        project
            .shopctl()
            .args(["render", env, "--out"])
            .arg(&out)
            .assert()
            .success();
        Manifests::read(&out.join(env).join("k8s"))
    }

    pub fn read(dir: &Path) -> Manifests {
        Manifests {
            docs: parse(&yaml_files(dir)),
        }
    }

    pub fn find(&self, kind: &str, name: &str) -> Option<&Doc> {
        self.docs
            .iter()
            .find(|d| d.kind() == kind && d.name() == name)
    }

    pub fn get(&self, kind: &str, name: &str) -> &Doc {
        self.find(kind, name)
            .unwrap_or_else(|| panic!("no {kind}/{name} among the rendered manifests"))
    }

    /// One file of a ConfigMap's `data`, as rendered.
    pub fn config_file(&self, configmap: &str, key: &str) -> String {
        self.get("ConfigMap", configmap).value["data"][key]
            .as_str()
            .unwrap_or_else(|| panic!("ConfigMap/{configmap} has no data key {key}"))
            .to_owned()
    }
}

/// A container's `env` entries with a literal `value`, by name (entries taken from
/// Secrets or the downward API are left to the test, which substitutes them).
pub fn literal_env(container: &Value) -> BTreeMap<String, String> {
    container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            Some((
                e["name"].as_str()?.to_owned(),
                e["value"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

/// A container's `command` followed by its `args`, as the kubelet runs them.
pub fn argv(container: &Value) -> Vec<String> {
    ["command", "args"]
        .iter()
        .flat_map(|k| container[*k].as_array().into_iter().flatten())
        .map(|a| a.as_str().expect("string argument").to_owned())
        .collect()
}
