//! Per-environment configuration: `environments/<name>.toml` read into typed
//! values, checked for meaning, and every problem placed at its file and line.

mod locate;
mod model;
mod validate;
mod values;

use std::fmt;
use std::path::{Path, PathBuf};

pub use locate::{KeyPath, Position, SourceMap};
pub use model::*;
pub use values::*;

/// A loaded, valid environment with the name it was loaded under.
#[derive(Debug, Clone)]
pub struct LoadedEnvironment {
    pub name: String,
    pub config: Environment,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown environment `{name}`: {} does not exist\n  allowed: {}", .file.display(), list_or_none(.available))]
    UnknownEnvironment {
        name: String,
        file: PathBuf,
        available: Vec<String>,
    },
    #[error("cannot read {}: {source}", .file.display())]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", Problems(.0))]
    Invalid(Vec<Problem>),
}

/// One problem in a config file, placed at its key and line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub position: Option<Position>,
    pub key: KeyPath,
    pub message: String,
    pub allowed: Option<String>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(p) = self.position {
            write!(f, ":{}:{}", p.line, p.column)?;
        }
        if !self.key.0.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(allowed) = &self.allowed {
            write!(f, "\n  allowed: {allowed}")?;
        }
        Ok(())
    }
}

struct Problems<'a>(&'a [Problem]);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "no environments found".to_owned()
    } else {
        names.join(", ")
    }
}

/// Names of the environments defined under `dir` (file stems of `*.toml`), sorted.
pub fn available(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let path = entry.path();
            (path.extension()? == "toml").then(|| path.file_stem()?.to_str().map(str::to_owned))?
        })
        .collect();
    names.sort();
    names
}

/// Loads `<dir>/<name>.toml`. `display_dir` is how the directory is named in
/// messages (relative to the project root, so errors read the same anywhere).
pub fn load(dir: &Path, display_dir: &Path, name: &str) -> Result<LoadedEnvironment, ConfigError> {
    let file = display_dir.join(format!("{name}.toml"));
    let valid_name = name.parse::<DnsLabel>().is_ok();
    let path = dir.join(format!("{name}.toml"));
    if !valid_name || !path.is_file() {
        return Err(ConfigError::UnknownEnvironment {
            name: name.to_owned(),
            file,
            available: available(dir),
        });
    }
    let source = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
        file: file.clone(),
        source,
    })?;
    let config = parse(&source, &file)?;
    Ok(LoadedEnvironment {
        name: name.to_owned(),
        config,
    })
}

/// Parses and checks one environment file's text.
pub fn parse(source: &str, file: &Path) -> Result<Environment, ConfigError> {
    let map = SourceMap::new(source);
    let config: Environment = toml::from_str(source).map_err(|e| {
        let offset = e.span().map(|s| s.start);
        let (message, allowed) = split_allowed(e.message().trim_end());
        ConfigError::Invalid(vec![Problem {
            file: file.to_owned(),
            position: offset.map(|o| Position::of_offset(source, o)),
            key: offset.map(|o| map.path_at(o)).unwrap_or_default(),
            message,
            allowed,
        }])
    })?;
    let problems: Vec<Problem> = validate::validate(&config)
        .into_iter()
        .map(|finding| Problem {
            file: file.to_owned(),
            position: map.position_of(&finding.key),
            key: finding.key,
            message: finding.message,
            allowed: Some(finding.allowed),
        })
        .collect();
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid(problems))
    }
}

/// Splits a deserializer message into what is wrong and what is allowed, so
/// type errors read like the semantic ones.
fn split_allowed(message: &str) -> (String, Option<String>) {
    for marker in ["; allowed: ", ", expected "] {
        if let Some((what, allowed)) = message.split_once(marker) {
            let allowed = match allowed {
                "u32" | "u64" | "i64" => "a whole number, 0 or more",
                "a boolean" | "bool" => "true or false",
                other => other,
            };
            return (what.to_owned(), Some(allowed.to_owned()));
        }
    }
    (message.to_owned(), None)
}
