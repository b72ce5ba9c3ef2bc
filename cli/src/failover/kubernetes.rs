//! `failover-test <env>` on a Kubernetes cluster: the same engine as local, reaching the
//! Patroni pods through port-forwards on loopback, with faults through the Kubernetes API.
//!
//! - Members and leader are found by the labels the primary Service selects on (Patroni
//!   labels the leader `role=primary`), so the test follows exactly what the app's writes
//!   follow.
//! - Each member's Patroni REST API (8008) and PostgreSQL (5432) get a loopback port; the
//!   write port forwards every new connection to the pod labelled primary at that moment,
//!   as the Service does.
//! - `delete-pod` deletes the leader's pod with no grace period (a crash: the leader key
//!   is not released, Patroni fails over when it expires); the StatefulSet recreates it.
//! - `drain-node` cordons the leader's node and evicts its pods through the Eviction API
//!   (PodDisruptionBudgets hold, as in a real drain), then uncordons it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use k8s_openapi::api::core::v1::{Node as KubeNode, Pod};
use kube::api::{Api, DeleteParams, EvictParams, ListParams, Patch, PatchParams};
use kube::Client;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The label Patroni sets on every member (`kubernetes.role_label`).
pub const ROLE_LABEL: &str = "role";
/// Its value on the leader (`kubernetes.leader_label_value`).
pub const LEADER_VALUE: &str = "primary";
/// The Service the app writes through; its selector names the members.
pub const PRIMARY_SERVICE: &str = "shop-postgres-primary";
/// The Secret holding the superuser's password and the REST API's credentials (generated
/// by `shopctl deploy`).
pub const CREDENTIALS_SECRET: &str = crate::deploy::secrets::POSTGRES;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LeaderError {
    #[error(
        "no Patroni member is labelled {ROLE_LABEL}={LEADER_VALUE}: the cluster has no leader"
    )]
    None,
    #[error("{} members are labelled {ROLE_LABEL}={LEADER_VALUE} ({}): two primaries", .0.len(), .0.join(", "))]
    Several(Vec<String>),
}

/// The one member labelled leader, from the members' pods.
pub fn leader(pods: &[Value]) -> Result<String, LeaderError> {
    let leaders: Vec<String> = pods
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter(|p| p["metadata"]["labels"][ROLE_LABEL] == LEADER_VALUE)
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_owned))
        .collect();
    match leaders.len() {
        0 => Err(LeaderError::None),
        1 => Ok(leaders.into_iter().next().expect("one")),
        _ => Err(LeaderError::Several(leaders)),
    }
}

/// The members' selector: the primary Service's, without the role.
pub fn members_selector(primary_service: &Value) -> Result<String> {
    let selector = primary_service["spec"]["selector"]
        .as_object()
        .context("the primary Service has no selector")?;
    let parts: Vec<String> = selector
        .iter()
        .filter(|(k, _)| k.as_str() != ROLE_LABEL)
        .filter_map(|(k, v)| Some(format!("{k}={}", v.as_str()?)))
        .collect();
    if parts.is_empty() {
        bail!("the primary Service selects on nothing but the role");
    }
    Ok(parts.join(","))
}

/// The pods a drain evicts from a node: not those a DaemonSet owns (a drain leaves
/// them), not static (mirror) pods, not those already going or finished.
pub fn drain_plan(pods_on_node: &[Value]) -> Vec<(String, String)> {
    pods_on_node
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter(|p| !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")))
        .filter(|p| p["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_null())
        .filter(|p| {
            !p["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|owners| owners.iter().any(|o| o["kind"] == "DaemonSet"))
        })
        .filter_map(|p| {
            Some((
                p["metadata"]["namespace"].as_str()?.to_owned(),
                p["metadata"]["name"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

/// The cluster side of a failover test.
pub struct Kubernetes {
    client: Client,
    namespace: String,
    /// The kubeconfig, for undoing a cordon from outside the test's runtime.
    kubeconfig: PathBuf,
    selector: String,
}

impl std::fmt::Debug for Kubernetes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Kubernetes {{ namespace: {}, selector: {} }}",
            self.namespace, self.selector
        )
    }
}

impl Kubernetes {
    pub async fn connect(kubeconfig: PathBuf, env: &str, namespace: &str) -> Result<Kubernetes> {
        let cluster = crate::deploy::cluster::Cluster::connect(&kubeconfig, env).await?;
        let client = cluster.client();
        let services: Api<k8s_openapi::api::core::v1::Service> =
            Api::namespaced(client.clone(), namespace);
        let service = services
            .get_opt(PRIMARY_SERVICE)
            .await
            .with_context(|| format!("reading Service {namespace}/{PRIMARY_SERVICE}"))?
            .with_context(|| format!("no Service {namespace}/{PRIMARY_SERVICE}: is {env} deployed? `shopctl deploy {env}`"))?;
        let selector = members_selector(&serde_json::to_value(service)?)?;
        Ok(Kubernetes {
            client,
            namespace: namespace.into(),
            kubeconfig,
            selector,
        })
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The members' pods, by name.
    pub async fn members(&self) -> Result<Vec<Value>> {
        let list = self
            .pods()
            .list(&ListParams::default().labels(&self.selector))
            .await?;
        let mut pods = as_json(list.items);
        pods.sort_by(|a, b| {
            a["metadata"]["name"]
                .as_str()
                .cmp(&b["metadata"]["name"].as_str())
        });
        Ok(pods)
    }

    pub async fn leader(&self) -> Result<String> {
        Ok(leader(&self.members().await?)?)
    }

    /// The superuser's password, from the Secret the pods read it from; kept in memory.
    pub async fn superuser_password(&self) -> Result<String> {
        self.credential("PATRONI_SUPERUSER_PASSWORD").await
    }

    /// The credentials of Patroni's REST API write endpoints (the switchover), from the
    /// same Secret the pods read them from; kept in memory.
    pub async fn patroni_api_auth(&self) -> Result<super::ApiAuth> {
        Ok(super::ApiAuth {
            username: self.credential("PATRONI_RESTAPI_USERNAME").await?,
            password: super::Password(self.credential("PATRONI_RESTAPI_PASSWORD").await?),
        })
    }

    /// One key of the credentials Secret.
    async fn credential(&self, key: &str) -> Result<String> {
        let secrets: Api<k8s_openapi::api::core::v1::Secret> =
            Api::namespaced(self.client.clone(), &self.namespace);
        let secret = secrets
            .get(CREDENTIALS_SECRET)
            .await
            .with_context(|| format!("reading Secret {}/{CREDENTIALS_SECRET}", self.namespace))?;
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .with_context(|| {
                format!(
                    "the Secret {}/{CREDENTIALS_SECRET} has no {key} (created by an older shopctl?)",
                    self.namespace
                )
            })?;
        String::from_utf8(bytes.0.clone()).with_context(|| format!("{key} is not UTF-8"))
    }

    /// Deletes the pod at once (grace period 0): the process is killed, nothing released.
    pub async fn delete_pod(&self, pod: &str) -> Result<()> {
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            ..DeleteParams::default()
        };
        self.pods()
            .delete(pod, &params)
            .await
            .with_context(|| format!("deleting pod {pod}"))?;
        Ok(())
    }

    /// The node a pod runs on.
    pub async fn node_of(&self, pod: &str) -> Result<String> {
        let pod = self.pods().get(pod).await?;
        pod.spec.and_then(|s| s.node_name).ok_or_else(|| {
            anyhow!(
                "pod {} is not scheduled",
                pod.metadata.name.unwrap_or_default()
            )
        })
    }

    pub async fn cordon(&self, node: &str, unschedulable: bool) -> Result<()> {
        cordon(&self.client, node, unschedulable).await
    }

    /// Evicts every pod a drain would from the node, retrying those a disruption budget
    /// holds until `within`; returns how many were evicted.
    pub async fn evict_all(&self, node: &str, within: Duration) -> Result<usize> {
        let all: Api<Pod> = Api::all(self.client.clone());
        let on_node = all
            .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
            .await
            .with_context(|| format!("listing the pods on node {node}"))?;
        let mut pending = drain_plan(&as_json(on_node.items));
        let total = pending.len();
        let deadline = tokio::time::Instant::now() + within;
        while !pending.is_empty() {
            let mut held = Vec::new();
            for (namespace, name) in pending {
                let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
                match api.evict(&name, &EvictParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(status)) if status.code == 404 => {}
                    // 429: a PodDisruptionBudget does not allow it yet.
                    Err(kube::Error::Api(status)) if status.code == 429 => {
                        held.push((namespace, name))
                    }
                    Err(e) => {
                        return Err(e).with_context(|| format!("evicting pod {namespace}/{name}"))
                    }
                }
            }
            pending = held;
            if !pending.is_empty() {
                if tokio::time::Instant::now() >= deadline {
                    let names: Vec<String> =
                        pending.iter().map(|(ns, n)| format!("{ns}/{n}")).collect();
                    bail!(
                        "disruption budgets still hold {} after {within:?}",
                        names.join(", ")
                    );
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
        Ok(total)
    }

    /// Starts the loopback ports (see the module docs).
    pub async fn bridge(self: &Arc<Self>, members: &[String]) -> Result<Bridge> {
        let mut tasks = Vec::new();
        let mut rest = BTreeMap::new();
        let mut postgres = BTreeMap::new();
        for member in members {
            for (port, ports) in [(8008u16, &mut rest), (5432u16, &mut postgres)] {
                let (local, task) = self.forward(To::Pod(member.clone()), port).await?;
                ports.insert(member.clone(), local);
                tasks.push(task);
            }
        }
        let (write, task) = self.forward(To::Leader, 5432).await?;
        tasks.push(task);
        Ok(Bridge {
            rest,
            postgres,
            write,
            tasks,
        })
    }

    async fn forward(self: &Arc<Self>, to: To, port: u16) -> Result<(u16, JoinHandle<()>)> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let local = listener.local_addr()?.port();
        let kube = self.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let kube = kube.clone();
                let to = to.clone();
                tokio::spawn(async move {
                    // A connection that cannot be forwarded is closed: the client sees
                    // the failure, as it would through the Service.
                    let _ = kube.splice(socket, &to, port).await;
                });
            }
        });
        Ok((local, task))
    }

    async fn splice(&self, mut socket: TcpStream, to: &To, port: u16) -> Result<()> {
        let pod = match to {
            To::Pod(pod) => pod.clone(),
            To::Leader => self.leader().await?,
        };
        let mut forwarder = tokio::time::timeout(
            Duration::from_secs(5),
            self.pods().portforward(&pod, &[port]),
        )
        .await
        .context("port-forward timed out")??;
        let mut upstream = forwarder
            .take_stream(port)
            .context("no stream for the port")?;
        tokio::io::copy_bidirectional(&mut socket, &mut upstream).await?;
        drop(upstream);
        let _ = forwarder.join().await;
        Ok(())
    }

    pub fn kubeconfig(&self) -> &PathBuf {
        &self.kubeconfig
    }
}

/// Sets or clears `spec.unschedulable` on a node.
/// Pods as JSON, the form [`leader`] and [`drain_plan`] take (and their tests build).
fn as_json(pods: Vec<Pod>) -> Vec<Value> {
    pods.into_iter()
        .map(|p| serde_json::to_value(p).expect("pods serialize"))
        .collect()
}

async fn cordon(client: &Client, node: &str, unschedulable: bool) -> Result<()> {
    let nodes: Api<KubeNode> = Api::all(client.clone());
    nodes
        .patch(
            node,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"unschedulable": unschedulable}})),
        )
        .await
        .with_context(|| {
            format!(
                "{} node {node}",
                if unschedulable {
                    "cordoning"
                } else {
                    "uncordoning"
                }
            )
        })?;
    Ok(())
}

/// Uncordons a node from outside any runtime (the test's undo, run on Ctrl-C): its own
/// thread, runtime and client.
pub fn uncordon_blocking(kubeconfig: &std::path::Path, env: &str, node: &str) -> Result<()> {
    let (kubeconfig, env, node) = (kubeconfig.to_path_buf(), env.to_owned(), node.to_owned());
    std::thread::spawn(move || -> Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let cluster = crate::deploy::cluster::Cluster::connect(&kubeconfig, &env).await?;
            cordon(&cluster.client(), &node, false).await
        })
    })
    .join()
    .map_err(|_| anyhow!("the uncordon thread panicked"))?
}

#[derive(Debug, Clone)]
enum To {
    Pod(String),
    Leader,
}

/// The loopback ports of a cluster under test; closed on drop.
pub struct Bridge {
    /// Patroni's REST API of each member.
    pub rest: BTreeMap<String, u16>,
    /// PostgreSQL of each member.
    pub postgres: BTreeMap<String, u16>,
    /// PostgreSQL of whichever member is labelled leader when a connection opens.
    pub write: u16,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Bridge {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, role: Option<&str>) -> Value {
        let mut p = json!({"metadata": {"name": name, "namespace": "shop", "labels": {"app.kubernetes.io/name": "postgres"}}});
        if let Some(role) = role {
            p["metadata"]["labels"][ROLE_LABEL] = json!(role);
        }
        p
    }

    #[test]
    fn exactly_one_member_labelled_primary_is_the_leader() {
        let pods = vec![
            pod("shop-postgres-0", Some("replica")),
            pod("shop-postgres-1", Some("primary")),
            pod("shop-postgres-2", None),
        ];
        assert_eq!(leader(&pods).unwrap(), "shop-postgres-1");
        assert_eq!(leader(&pods[..1]).unwrap_err(), LeaderError::None);
        // Patroni 3's `master` is not what the Service selects.
        assert_eq!(
            leader(&[pod("a", Some("master"))]).unwrap_err(),
            LeaderError::None
        );
        let two = vec![pod("a", Some("primary")), pod("b", Some("primary"))];
        assert_eq!(
            leader(&two).unwrap_err().to_string(),
            "2 members are labelled role=primary (a, b): two primaries"
        );
        // A pod being deleted is not the leader any more.
        let mut going = pod("a", Some("primary"));
        going["metadata"]["deletionTimestamp"] = json!("2026-11-29T19:00:00Z");
        assert_eq!(leader(&[going, pod("b", Some("primary"))]).unwrap(), "b");
    }

    #[test]
    fn members_are_what_the_primary_service_selects_without_the_role() {
        let objects = crate::deploy::testing::rendered("staging");
        let service = objects
            .iter()
            .find(|o| o.key.kind == "Service" && o.key.name == PRIMARY_SERVICE)
            .unwrap();
        let selector = members_selector(&service.value).unwrap();
        assert_eq!(
            selector,
            "app.kubernetes.io/instance=shop-postgres,app.kubernetes.io/name=postgres"
        );
        // The StatefulSet's pods carry those labels, and Patroni is told the role label and value.
        let sts = objects
            .iter()
            .find(|o| o.key.kind == "StatefulSet" && o.key.name == "shop-postgres")
            .unwrap();
        let labels = &sts.value["spec"]["template"]["metadata"]["labels"];
        for part in selector.split(',') {
            let (k, v) = part.split_once('=').unwrap();
            assert_eq!(labels[k], v, "{k}");
        }
        let env = sts.value["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap();
        let var = |name: &str| {
            env.iter()
                .find(|e| e["name"] == name)
                .map(|e| e["value"].clone())
        };
        assert_eq!(
            var("PATRONI_KUBERNETES_ROLE_LABEL"),
            Some(json!(ROLE_LABEL))
        );
        assert_eq!(
            var("PATRONI_KUBERNETES_LEADER_LABEL_VALUE"),
            Some(json!(LEADER_VALUE))
        );
        assert!(members_selector(&json!({"spec": {"selector": {ROLE_LABEL: "primary"}}})).is_err());
    }

    #[test]
    fn a_drain_evicts_what_kubectl_drain_would() {
        let pods = vec![
            json!({"metadata": {"name": "shop-postgres-1", "namespace": "shop", "ownerReferences": [{"kind": "StatefulSet"}]}, "status": {"phase": "Running"}}),
            json!({"metadata": {"name": "aws-node-x", "namespace": "kube-system", "ownerReferences": [{"kind": "DaemonSet"}]}, "status": {"phase": "Running"}}),
            json!({"metadata": {"name": "kube-proxy-static", "namespace": "kube-system", "annotations": {"kubernetes.io/config.mirror": "abc"}}, "status": {"phase": "Running"}}),
            json!({"metadata": {"name": "done", "namespace": "shop"}, "status": {"phase": "Succeeded"}}),
            json!({"metadata": {"name": "going", "namespace": "shop", "deletionTimestamp": "x"}, "status": {"phase": "Running"}}),
            json!({"metadata": {"name": "shop-app-7c", "namespace": "shop", "ownerReferences": [{"kind": "ReplicaSet"}]}, "status": {"phase": "Pending"}}),
        ];
        assert_eq!(
            drain_plan(&pods),
            vec![
                ("shop".to_owned(), "shop-postgres-1".to_owned()),
                ("shop".to_owned(), "shop-app-7c".to_owned())
            ]
        );
    }
}
