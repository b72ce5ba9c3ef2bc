//! Test fixtures: the project's own manifests, rendered for an environment.

use std::path::Path;

use super::manifest::{self, Object};

/// The objects `shopctl render <env>` gives for this repository's environments.
pub fn rendered(env: &str) -> Vec<Object> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let project = crate::project::Project::find(Some(&root)).expect("the repository is a project");
    let loaded = project.load(env).expect("environment loads");
    let tree = crate::commands::render_env(&project, &loaded).expect("renders");
    manifest::from_tree(&tree, env).expect("manifests parse")
}
