//! The Kubernetes API, as much of it as a deploy needs: server-side apply, get, list by
//! label, create-if-absent, delete. Objects go in and out as JSON; the kinds are found
//! by discovery, once each.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiResource, Scope};
use kube::Client;
use serde_json::Value;
use tokio::sync::Mutex;

use super::manifest::Key;

/// The field manager of every apply: `kubectl get -o yaml --show-managed-fields` names it.
pub const FIELD_MANAGER: &str = "shopctl";

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("no kubeconfig at {}\n  hint: `shopctl kubeconfig {env}` writes it (or pass --kubeconfig PATH)", .path.display())]
    NoKubeconfig { path: PathBuf, env: String },
    #[error("the kubeconfig {} is not usable: {reason}", .path.display())]
    Kubeconfig { path: PathBuf, reason: String },
    #[error("cannot reach the Kubernetes API at {server}: {reason}\n  hint: is the cluster up? `shopctl status {env}` shows it; `shopctl kubeconfig {env}` refreshes the kubeconfig")]
    Unreachable {
        server: String,
        env: String,
        reason: String,
    },
    #[error("the cluster does not serve {api_version} {kind}: {reason}")]
    UnknownKind {
        api_version: String,
        kind: String,
        reason: String,
    },
    #[error("{what}: {reason}")]
    Api {
        what: String,
        code: u16,
        reason: String,
    },
}

impl ClusterError {
    fn api(what: impl Into<String>, error: kube::Error) -> ClusterError {
        match error {
            kube::Error::Api(status) => ClusterError::Api {
                what: what.into(),
                code: status.code,
                reason: if status.message.is_empty() {
                    status.reason.clone()
                } else {
                    status.message.clone()
                },
            },
            other => ClusterError::Api {
                what: what.into(),
                code: 0,
                reason: other.to_string(),
            },
        }
    }
}

pub struct Cluster {
    client: Client,
    pub server: String,
    kinds: Mutex<HashMap<(String, String), (ApiResource, bool)>>,
}

impl Cluster {
    /// Connects with a kubeconfig (its current context) and checks the API answers.
    pub async fn connect(path: &Path, env: &str) -> Result<Cluster, ClusterError> {
        if !path.exists() {
            return Err(ClusterError::NoKubeconfig {
                path: path.into(),
                env: env.into(),
            });
        }
        let unusable = |reason: String| ClusterError::Kubeconfig {
            path: path.into(),
            reason,
        };
        let kubeconfig = Kubeconfig::read_from(path).map_err(|e| unusable(e.to_string()))?;
        let mut config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|e| unusable(e.to_string()))?;
        config.connect_timeout = Some(Duration::from_secs(10));
        config.read_timeout = Some(Duration::from_secs(60));
        let server = config.cluster_url.to_string();
        let client = Client::try_from(config).map_err(|e| unusable(e.to_string()))?;
        client
            .apiserver_version()
            .await
            .map_err(|e| ClusterError::Unreachable {
                server: server.clone(),
                env: env.into(),
                reason: version_failure(&e),
            })?;
        Ok(Cluster {
            client,
            server,
            kinds: Mutex::new(HashMap::new()),
        })
    }

    /// The client, for the typed APIs other modules use (pods, nodes, evictions).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    async fn resource(
        &self,
        api_version: &str,
        kind: &str,
    ) -> Result<(ApiResource, bool), ClusterError> {
        let id = (api_version.to_owned(), kind.to_owned());
        if let Some(found) = self.kinds.lock().await.get(&id) {
            return Ok(found.clone());
        }
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (resource, capabilities) = kube::discovery::pinned_kind(&self.client, &gvk)
            .await
            .map_err(|e| ClusterError::UnknownKind {
                api_version: api_version.into(),
                kind: kind.into(),
                reason: crate::errors::chain(&e),
            })?;
        let found = (resource, capabilities.scope == Scope::Namespaced);
        self.kinds.lock().await.insert(id, found.clone());
        Ok(found)
    }

    async fn api(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
    ) -> Result<Api<DynamicObject>, ClusterError> {
        let (resource, namespaced) = self.resource(api_version, kind).await?;
        Ok(match (namespaced, namespace) {
            (true, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, &resource),
            _ => Api::all_with(self.client.clone(), &resource),
        })
    }

    /// Server-side apply, forcing our field manager's ownership; with `dry_run` the server
    /// validates and defaults the object and persists nothing. Returns what the server has.
    pub async fn apply(
        &self,
        key: &Key,
        object: &Value,
        dry_run: bool,
    ) -> Result<Value, ClusterError> {
        self.apply_as(FIELD_MANAGER, key, object, dry_run).await
    }

    /// Server-side apply under another field manager (fields shopctl sets once).
    pub async fn apply_as(
        &self,
        manager: &str,
        key: &Key,
        object: &Value,
        dry_run: bool,
    ) -> Result<Value, ClusterError> {
        let api = self
            .api(&key.api_version, &key.kind, key.namespace.as_deref())
            .await?;
        let mut params = PatchParams::apply(manager).force();
        if dry_run {
            params = params.dry_run();
        }
        let applied = api
            .patch(&key.name, &params, &Patch::Apply(object))
            .await
            .map_err(|e| ClusterError::api(format!("applying {key}"), e))?;
        Ok(serde_json::to_value(applied).expect("objects serialize"))
    }

    pub async fn get(&self, key: &Key) -> Result<Option<Value>, ClusterError> {
        let api = self
            .api(&key.api_version, &key.kind, key.namespace.as_deref())
            .await?;
        let found = api
            .get_opt(&key.name)
            .await
            .map_err(|e| ClusterError::api(format!("reading {key}"), e))?;
        Ok(found.map(|o| serde_json::to_value(o).expect("objects serialize")))
    }

    /// Objects of a kind with the labels (`a=b,c=d`), in the namespace or cluster-wide.
    pub async fn list(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        selector: &str,
    ) -> Result<Vec<Value>, ClusterError> {
        let api = self.api(api_version, kind, namespace).await?;
        let list = api
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(|e| ClusterError::api(format!("listing {kind} ({selector})"), e))?;
        Ok(list
            .items
            .into_iter()
            .map(|mut o| {
                // Items of a list come without their type; put it back so keys can be made.
                o.types = Some(kube::core::TypeMeta {
                    api_version: api_version.into(),
                    kind: kind.into(),
                });
                serde_json::to_value(o).expect("objects serialize")
            })
            .collect())
    }

    /// Creates the object unless one of its name exists; true when it created it.
    pub async fn create_if_absent(&self, key: &Key, object: &Value) -> Result<bool, ClusterError> {
        let api = self
            .api(&key.api_version, &key.kind, key.namespace.as_deref())
            .await?;
        let object: DynamicObject =
            serde_json::from_value(object.clone()).expect("a Kubernetes object");
        match api.create(&PostParams::default(), &object).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(e) => Err(ClusterError::api(format!("creating {key}"), e)),
        }
    }

    /// Replaces the object on the condition that it is still at the `resourceVersion`
    /// the given object carries; false when it changed since (409 Conflict).
    pub async fn replace(&self, key: &Key, object: &Value) -> Result<bool, ClusterError> {
        let api = self
            .api(&key.api_version, &key.kind, key.namespace.as_deref())
            .await?;
        let object: DynamicObject =
            serde_json::from_value(object.clone()).expect("a Kubernetes object");
        match api
            .replace(&key.name, &PostParams::default(), &object)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(e) => Err(ClusterError::api(format!("replacing {key}"), e)),
        }
    }

    /// Polls every `every` until the object is gone; false when it is still there after
    /// `within`.
    pub async fn wait_gone(
        &self,
        key: &Key,
        within: Duration,
        every: Duration,
    ) -> Result<bool, ClusterError> {
        let started = std::time::Instant::now();
        while self.get(key).await?.is_some() {
            if started.elapsed() > within {
                return Ok(false);
            }
            tokio::time::sleep(every).await;
        }
        Ok(true)
    }

    /// Deletes the object (its dependents in the background); false when it was gone.
    pub async fn delete(&self, key: &Key) -> Result<bool, ClusterError> {
        let api = self
            .api(&key.api_version, &key.kind, key.namespace.as_deref())
            .await?;
        match api.delete(&key.name, &DeleteParams::background()).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
            Err(e) => Err(ClusterError::api(format!("deleting {key}"), e)),
        }
    }
}

/// Why GET /version failed, in words: an HTTP answer means something listens that is
/// not a Kubernetes API that lets us in (its HTML error page is no help, so not shown).
fn version_failure(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => match status.code {
            401 | 403 => format!(
                "HTTP {} to GET /version: the credentials were refused (an EKS token is valid 15 minutes and only for an identity the cluster maps)",
                status.code
            ),
            code => format!("HTTP {code} to GET /version: this is not a Kubernetes API server (is the kubeconfig's server URL right?)"),
        },
        other => crate::errors::chain(other),
    }
}
