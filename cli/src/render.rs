//! Renders templates/terraform and templates/k8s for one environment with
//! handlebars in strict mode: a template that names a missing value fails
//! with the template's name and line, and nothing is written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use handlebars::{Handlebars, HelperDef, RenderErrorReason};
use serde_json::{json, Value};

use crate::config::LoadedEnvironment;

/// The template trees, relative to the templates directory. Each is rendered
/// into a directory of the same name in the output.
pub const TREES: &[&str] = &["terraform", "k8s"];

/// Files in an output tree that are not ours and that `--check` and stale-file
/// removal leave alone (Terraform's own working files).
const FOREIGN: &[&str] = &[
    ".terraform",
    ".terraform.lock.hcl",
    "terraform.tfstate",
    "terraform.tfstate.backup",
    "tfplan",
];

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("cannot read templates under {}: {source}", .dir.display())]
    Read {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {reason}", .template.display())]
    Template { template: PathBuf, reason: String },
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Rendered files by output path (`terraform/vpc.tf`), sorted.
pub type Tree = BTreeMap<PathBuf, String>;

/// All templates of a project, parsed once.
pub struct Templates {
    registry: Handlebars<'static>,
    /// Template name (its path relative to the templates dir) to output path.
    outputs: Vec<(String, PathBuf)>,
    display_dir: PathBuf,
}

impl Templates {
    /// Loads every `*.hbs` file under `dir/<tree>/`. `display_dir` names the
    /// directory in messages.
    pub fn load(dir: &Path, display_dir: &Path) -> Result<Self, RenderError> {
        Self::load_trees(dir, display_dir, TREES)
    }

    /// Loads every `*.hbs` file under `dir/<tree>/` for the given trees (the
    /// local topology's `templates/local` is rendered on its own, not by `render`).
    pub fn load_trees(dir: &Path, display_dir: &Path, trees: &[&str]) -> Result<Self, RenderError> {
        let mut registry = Handlebars::new();
        registry.set_strict_mode(true);
        registry.register_escape_fn(handlebars::no_escape);
        registry.register_helper(JSON_HELPER.name, Box::new(JSON_HELPER));
        registry.register_helper(HCL_HELPER.name, Box::new(HCL_HELPER));
        let mut outputs = Vec::new();
        for tree in trees {
            for file in files_under(&dir.join(tree)).map_err(|source| RenderError::Read {
                dir: dir.join(tree),
                source,
            })? {
                let relative = file
                    .strip_prefix(dir)
                    .expect("walked under dir")
                    .to_path_buf();
                let Some(output) = relative.to_str().and_then(|s| s.strip_suffix(".hbs")) else {
                    continue;
                };
                let name = relative.to_string_lossy().into_owned();
                let text = std::fs::read_to_string(&file).map_err(|source| RenderError::Read {
                    dir: file.clone(),
                    source,
                })?;
                registry
                    .register_template_string(&name, text)
                    .map_err(|e| RenderError::Template {
                        template: display_dir.join(&relative),
                        reason: format!(
                            "{}{}",
                            e.reason(),
                            at_line(e.pos().map(|p| p.0), e.pos().map(|p| p.1))
                        ),
                    })?;
                outputs.push((name, PathBuf::from(output)));
            }
        }
        Ok(Templates {
            registry,
            outputs,
            display_dir: display_dir.to_owned(),
        })
    }

    /// Renders every template for `env`, entirely in memory.
    pub fn render(&self, env: &LoadedEnvironment) -> Result<Tree, RenderError> {
        self.render_value(&context(env))
    }

    /// Renders every template with the given data.
    pub fn render_value(&self, context: &Value) -> Result<Tree, RenderError> {
        self.outputs
            .iter()
            .map(|(name, output)| {
                let text =
                    self.registry
                        .render(name, context)
                        .map_err(|e| RenderError::Template {
                            template: self.display_dir.join(name),
                            reason: format!(
                                "{}{}",
                                describe(e.reason()),
                                at_line(e.line_no, e.column_no)
                            ),
                        })?;
                Ok((output.clone(), text))
            })
            .collect()
    }
}

fn at_line(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(" (line {l}, column {c})"),
        (Some(l), None) => format!(" (line {l})"),
        _ => String::new(),
    }
}

fn describe(reason: &RenderErrorReason) -> String {
    match reason {
        RenderErrorReason::MissingVariable(Some(path)) => {
            format!("the template uses `{path}`, which the environment does not define")
        }
        other => other.to_string(),
    }
}

/// A helper that writes its one argument through `format`. A missing
/// argument fails like any missing value in strict mode.
struct ValueHelper {
    name: &'static str,
    format: fn(&Value) -> String,
}

impl HelperDef for ValueHelper {
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &handlebars::Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc handlebars::Context,
        _: &mut handlebars::RenderContext<'reg, 'rc>,
        out: &mut dyn handlebars::Output,
    ) -> handlebars::HelperResult {
        let param = h
            .param(0)
            .ok_or(RenderErrorReason::ParamNotFoundForIndex(self.name, 0))?;
        if param.is_value_missing() {
            return Err(RenderErrorReason::MissingVariable(param.relative_path().cloned()).into());
        }
        out.write(&(self.format)(param.value()))?;
        Ok(())
    }
}

/// `{{json x}}`: JSON, as tfvars files take it.
const JSON_HELPER: ValueHelper = ValueHelper {
    name: "json",
    format: |v| v.to_string(),
};

/// `{{hcl x}}`: an HCL literal formatted as `terraform fmt` writes it (lists
/// as `["a", "b"]`), so rendered files pass `fmt -check`.
const HCL_HELPER: ValueHelper = ValueHelper {
    name: "hcl",
    format: hcl_literal,
};

fn hcl_literal(value: &Value) -> String {
    match value {
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(hcl_literal).collect::<Vec<_>>().join(", ")
        ),
        // Single-line objects: `terraform fmt` aligns only multi-line ones.
        Value::Object(map) => format!(
            "{{ {} }}",
            map.iter()
                .map(|(k, v)| format!("{} = {}", Value::from(k.as_str()), hcl_literal(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        scalar => scalar.to_string(),
    }
}

/// The data templates see: the environment's config as written, its name,
/// and a few values derived for Terraform's shapes.
pub fn context(env: &LoadedEnvironment) -> Value {
    let config = &env.config;
    let mut context = serde_json::to_value(config).expect("config serializes");
    let node_groups: BTreeMap<String, Value> = config
        .eks
        .node_groups
        .iter()
        .map(|g| {
            let group = json!({
                "instance_types": g.instance_types,
                "capacity_type": g.capacity_type,
                "min_size": g.min,
                "desired_size": g.desired,
                "max_size": g.max,
                "disk_size_gib": g.disk_size_gib,
            });
            (g.name.to_string(), group)
        })
        .collect();
    let state_region = config.state_region();
    let state_key = config
        .state
        .key
        .clone()
        .unwrap_or_else(|| format!("shopctl/{}/terraform.tfstate", env.name));
    let object = context.as_object_mut().expect("config is a table");
    object.insert("env".into(), json!(env.name));
    object.insert("terraform".into(), json!({ "node_groups": node_groups }));
    let state = object["state"].as_object_mut().expect("state is a table");
    state.insert("region".into(), json!(state_region));
    state.insert("key".into(), json!(state_key));
    context
}

/// Files under `dir`, recursively, sorted so output order never depends on
/// the filesystem.
fn files_under(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Whether a path in an output tree belongs to another tool.
fn is_foreign(relative: &Path) -> bool {
    relative
        .components()
        .any(|c| FOREIGN.iter().any(|f| c.as_os_str() == *f))
}

/// What differs between a rendered tree and the one on disk.
#[derive(Debug, PartialEq, Eq)]
pub enum Difference {
    Missing(PathBuf),
    Changed(PathBuf),
    Extra(PathBuf),
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Difference::Missing(p) => write!(f, "missing  {}", p.display()),
            Difference::Changed(p) => write!(f, "changed  {}", p.display()),
            Difference::Extra(p) => write!(f, "extra    {}", p.display()),
        }
    }
}

/// Files of ours currently under `out` (relative paths), skipping foreign ones.
fn ours_on_disk(out: &Path) -> Vec<PathBuf> {
    TREES
        .iter()
        .flat_map(|tree| files_under(&out.join(tree)).unwrap_or_default())
        .filter_map(|p| p.strip_prefix(out).ok().map(Path::to_path_buf))
        .filter(|p| !is_foreign(p))
        .collect()
}

/// Compares `tree` with what is under `out`.
pub fn diff(tree: &Tree, out: &Path) -> Vec<Difference> {
    let mut differences: Vec<Difference> = tree
        .iter()
        .filter_map(
            |(path, text)| match std::fs::read_to_string(out.join(path)) {
                Ok(on_disk) if on_disk == *text => None,
                Ok(_) => Some(Difference::Changed(path.clone())),
                Err(_) => Some(Difference::Missing(path.clone())),
            },
        )
        .collect();
    differences.extend(
        ours_on_disk(out)
            .into_iter()
            .filter(|p| !tree.contains_key(p))
            .map(Difference::Extra),
    );
    differences
}

/// Writes `tree` under `out`: unchanged files are not touched, changed ones are
/// replaced atomically, and files of ours that are no longer rendered are removed.
/// Returns how many files were written.
pub fn write(tree: &Tree, out: &Path) -> Result<usize, RenderError> {
    let mut written = 0;
    for (path, text) in tree {
        let target = out.join(path);
        if std::fs::read_to_string(&target).is_ok_and(|t| t == *text) {
            continue;
        }
        let fail = |source| RenderError::Write {
            path: target.clone(),
            source,
        };
        std::fs::create_dir_all(target.parent().expect("has a parent")).map_err(fail)?;
        let partial = target.with_extension("shopctl-partial");
        std::fs::write(&partial, text).map_err(fail)?;
        std::fs::rename(&partial, &target).map_err(fail)?;
        written += 1;
    }
    for stale in ours_on_disk(out)
        .into_iter()
        .filter(|p| !tree.contains_key(p))
    {
        let path = out.join(stale);
        std::fs::remove_file(&path).map_err(|source| RenderError::Write { path, source })?;
    }
    Ok(written)
}
