//! `shopctl deploy`, `history`, `rollback`: the rendered Kubernetes manifests applied to
//! an environment's cluster with server-side apply, in dependency order, with readiness,
//! prune by label, a revision history kept in the cluster and automatic rollback.
//!
//! Everything that decides (order, prune set, readiness, which revision is good) is a
//! plain function over objects (`manifest`, `plan`, `prune`, `readiness`, `history`), so
//! it is tested without a cluster; `cluster` is the thin part that talks to the API.

pub mod cluster;
pub mod command;
pub mod controllers;
pub mod diff;
pub mod history;
pub mod lock;
pub mod manifest;
pub mod plan;
pub mod prune;
pub mod readiness;
pub mod secrets;
#[cfg(test)]
pub mod testing;
pub mod webhook_tls;
#[cfg(test)]
mod yaml_readings;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What `deploy` is asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// Show what would change (server-side dry run); change nothing.
    pub dry_run: bool,
    /// Roll back to the last good revision when the rollout is not ready in time.
    pub rollback_on_failure: bool,
    /// How long every workload together may take to become ready.
    pub timeout: Duration,
    /// The kubeconfig (default: `.shopctl/<env>/kubeconfig`, written by `shopctl kubeconfig`).
    pub kubeconfig: Option<PathBuf>,
    /// The app image (`repository@sha256:…`); default: the one `image push` recorded.
    pub image: Option<String>,
}

/// The image `shopctl image push <env>` pushed last, recorded in
/// `.shopctl/<env>/pushed-image.json` for `deploy` to use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushedImage {
    /// The repository without tag or digest, e.g. `123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop-app`.
    pub repository: String,
    /// `sha256:…` of the manifest.
    pub digest: String,
    /// The git commit the image was built from (`-dirty` when the tree was).
    pub revision: String,
    /// The tags it was pushed under.
    pub tags: Vec<String>,
}

impl PushedImage {
    pub const FILE: &'static str = "pushed-image.json";

    /// `repository@digest`: what the manifests run.
    pub fn reference(&self) -> String {
        format!("{}@{}", self.repository, self.digest)
    }
}
