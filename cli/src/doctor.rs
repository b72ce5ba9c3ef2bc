//! `shopctl doctor`: every tool the project needs, whether it is here, its
//! version, and how to install what is missing.

use std::path::PathBuf;
use std::process::Command;

use serde::Serialize;

/// A tool the project uses.
struct Tool {
    name: &'static str,
    /// How to ask for its version.
    version_args: &'static [&'static str],
    /// Which commands need it.
    needed_for: &'static str,
    /// Whether shopctl's own commands fail without it (test-only tools do not).
    required: bool,
    install: &'static str,
}

const TOOLS: &[Tool] = &[
    Tool {
        name: "terraform",
        version_args: &["version"],
        needed_for: "plan, apply, destroy",
        required: true,
        install: "install Terraform 1.6 or newer (HashiCorp's release archive or package repository); not in Debian's archive",
    },
    Tool {
        name: "cargo",
        version_args: &["--version"],
        needed_for: "building shopctl and the app",
        required: true,
        install: "install the Rust toolchain with rustup",
    },
    Tool {
        name: "python3",
        version_args: &["--version"],
        needed_for: "tests (venv for moto and checkov)",
        required: false,
        install: "apt-get install python3 python3-venv",
    },
    Tool {
        name: "moto_server",
        version_args: &["--version"],
        needed_for: "tests (AWS API emulator)",
        required: false,
        install: "bash tests/tools.sh (pip install into shopctl's venv)",
    },
    Tool {
        name: "checkov",
        version_args: &["--version"],
        needed_for: "tests (Terraform and Kubernetes policy scan)",
        required: false,
        install: "bash tests/tools.sh (pip install into shopctl's venv)",
    },
    Tool {
        name: "kubernetes-validate",
        version_args: &["--version"],
        needed_for: "tests (Kubernetes manifests against the API's schemas)",
        required: false,
        install: "bash tests/tools.sh (pip install into shopctl's venv)",
    },
    Tool {
        name: "etcd",
        version_args: &["--version"],
        needed_for: "up local (Patroni's DCS)",
        required: false,
        install: "bash tests/tools.sh (apt-get install etcd-server)",
    },
    Tool {
        name: "patroni",
        version_args: &["--version"],
        needed_for: "up local (PostgreSQL high availability)",
        required: false,
        install: "bash tests/tools.sh (apt-get install patroni python3-etcd)",
    },
    Tool {
        name: "haproxy",
        version_args: &["-v"],
        needed_for: "up local (routing to the Patroni leader and replicas)",
        required: false,
        install: "bash tests/tools.sh (apt-get install haproxy)",
    },
    Tool {
        name: "nginx",
        version_args: &["-v"],
        needed_for: "up local (the public entry in front of the app replicas)",
        required: false,
        install: "bash tests/tools.sh (apt-get install nginx-light)",
    },
    Tool {
        name: "docker-registry",
        version_args: &["--version"],
        needed_for: "image tests (a local OCI registry)",
        required: false,
        install: "bash tests/tools.sh (apt-get install docker-registry)",
    },
    Tool {
        name: "skopeo",
        version_args: &["--version"],
        needed_for: "image tests (pulling images back)",
        required: false,
        install: "bash tests/tools.sh (apt-get install skopeo)",
    },
    Tool {
        name: "hyperfine",
        version_args: &["--version"],
        needed_for: "benchmarks (tests/bench.sh)",
        required: false,
        install: "apt-get install hyperfine",
    },
];

#[derive(Debug, Serialize)]
pub struct Check {
    pub name: String,
    pub found: bool,
    pub version: Option<String>,
    pub path: Option<PathBuf>,
    pub needed_for: String,
    pub required: bool,
    pub install: Option<String>,
}

/// Where shopctl's Python tools live (created by tests/tools.sh).
pub fn venv_bin() -> PathBuf {
    crate::terraform::dirs_cache().join("venv").join("bin")
}

/// A tool from shopctl's venv (its pinned versions win) or else from PATH.
pub fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::iter::once(venv_bin())
        .chain(std::env::split_paths(&path))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn first_line(bytes: &[u8]) -> Option<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_owned)
}

pub fn run_checks() -> Vec<Check> {
    let mut checks: Vec<Check> = TOOLS
        .iter()
        .map(|tool| {
            let path = find(tool.name);
            let version = path.as_ref().and_then(|p| {
                let out = Command::new(p)
                    .args(tool.version_args)
                    .env("CHECKPOINT_DISABLE", "1")
                    .output()
                    .ok()?;
                first_line(&out.stdout).or_else(|| first_line(&out.stderr))
            });
            Check {
                name: tool.name.to_owned(),
                found: path.is_some(),
                install: path.is_none().then(|| tool.install.to_owned()),
                version,
                path,
                needed_for: tool.needed_for.to_owned(),
                required: tool.required,
            }
        })
        .collect();
    let mirror = crate::terraform::discover_mirror();
    checks.push(Check {
        name: "terraform provider mirror".to_owned(),
        found: mirror.is_some(),
        version: mirror.as_ref().map(|m| m.providers.join(", ")),
        path: mirror.as_ref().map(|m| m.path.clone()),
        needed_for: "offline plan/apply (else providers are downloaded)".to_owned(),
        required: false,
        install: mirror.is_none().then(|| {
            "optional: `terraform providers mirror DIR` on a connected machine, then SHOPCTL_TF_PROVIDER_MIRROR=DIR".to_owned()
        }),
    });
    checks
}

pub fn table(checks: &[Check]) -> String {
    let mut table = comfy_table::Table::new();
    table
        .load_preset(comfy_table::presets::UTF8_BORDERS_ONLY)
        .set_header(["tool", "status", "version", "needed for"]);
    for c in checks {
        let status = match (c.found, c.required) {
            (true, _) => "ok",
            (false, true) => "MISSING",
            (false, false) => "missing (optional)",
        };
        table.add_row([
            c.name.as_str(),
            status,
            c.version.as_deref().unwrap_or("-"),
            c.needed_for.as_str(),
        ]);
    }
    let mut text = table.to_string();
    for c in checks.iter().filter(|c| !c.found) {
        text.push_str(&format!(
            "\n{}: {}",
            c.name,
            c.install.as_deref().unwrap_or("")
        ));
    }
    text
}
