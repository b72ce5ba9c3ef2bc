//! Where a shopctl project lives: the directory holding environments/ and
//! templates/, and the state directory (.shopctl/) shopctl keeps under it.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::config::{self, LoadedEnvironment};

pub struct Project {
    pub root: PathBuf,
}

impl Project {
    /// Uses `dir` when given, else the nearest ancestor of the working
    /// directory that has both environments/ and templates/.
    pub fn find(dir: Option<&Path>) -> Result<Self> {
        if let Some(dir) = dir {
            let root = dir
                .canonicalize()
                .with_context(|| format!("project directory {}", dir.display()))?;
            if !is_project(&root) {
                bail!(
                    "{} is not a shopctl project: it needs environments/ and templates/",
                    dir.display()
                );
            }
            return Ok(Project { root });
        }
        let cwd = std::env::current_dir().context("cannot read the working directory")?;
        match cwd.ancestors().find(|d| is_project(d)) {
            Some(root) => Ok(Project { root: root.to_path_buf() }),
            None => bail!(
                "no shopctl project here: neither {} nor a parent has environments/ and templates/\n  \
                 hint: run shopctl inside the project, or pass -C <dir>",
                cwd.display()
            ),
        }
    }

    pub fn environments_dir(&self) -> PathBuf {
        self.root.join("environments")
    }

    pub fn templates_dir(&self) -> PathBuf {
        self.root.join("templates")
    }

    /// Per-environment working state: rendered trees, Terraform's work dir.
    pub fn state_dir(&self, env: &str) -> PathBuf {
        self.root.join(".shopctl").join(env)
    }

    pub fn load(&self, env: &str) -> Result<LoadedEnvironment, config::ConfigError> {
        config::load(&self.environments_dir(), Path::new("environments"), env)
    }
}

fn is_project(dir: &Path) -> bool {
    dir.join("environments").is_dir() && dir.join("templates").is_dir()
}
