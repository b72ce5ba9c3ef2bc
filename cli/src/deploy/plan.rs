//! The order objects are applied in, and what is waited for between the phases.
//!
//! The cluster phase comes first: the custom resource definitions the controllers need,
//! waited for until the API serves them; then the controllers themselves in kube-system
//! (the AWS Load Balancer Controller, the Cluster Autoscaler), waited for until ready, so
//! that the load balancer controller's webhooks answer before any pod or Ingress of the
//! app's namespace is made. Then the app's namespace: objects nothing depends on at start
//! (namespace, storage class); what pods need to start (accounts, RBAC, config, Services,
//! policies, budgets); the stores, waited for; the Jobs that need the stores (Kafka
//! topics, migrations), waited for; the app and workers, waited for; then what points at
//! running pods (autoscalers, the ingress, backup schedules). Deleting goes the other way.

use std::collections::BTreeSet;

use serde_json::Value;

use super::controllers;
use super::manifest::{Key, Object};

/// A group of objects applied together, then (for workloads) waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// CustomResourceDefinitions: established before anything names their kinds.
    Definitions,
    /// The cluster's controllers (kube-system, and their cluster-wide RBAC, webhook
    /// configurations, IngressClass): ready before the app's namespace is touched.
    Controllers,
    /// The app's namespace and the other cluster-scoped objects of the app (storage class).
    Namespace,
    /// Accounts, RBAC, ConfigMaps, Services, NetworkPolicies, PodDisruptionBudgets.
    Config,
    /// StatefulSets: PostgreSQL, Kafka, RabbitMQ, Redis.
    Stores,
    /// Jobs: Kafka topics, migrations.
    Jobs,
    /// Deployments: the app and the workers.
    Workloads,
    /// Autoscalers, Ingress, CronJobs, and any kind not named above.
    Edge,
}

impl Phase {
    pub const ALL: [Phase; 8] = [
        Phase::Definitions,
        Phase::Controllers,
        Phase::Namespace,
        Phase::Config,
        Phase::Stores,
        Phase::Jobs,
        Phase::Workloads,
        Phase::Edge,
    ];

    /// The phase of an object: the cluster phase for the controllers' scope, else by kind.
    pub fn of(key: &Key) -> Phase {
        if key.kind == "CustomResourceDefinition" {
            return Phase::Definitions;
        }
        if controllers::is_controller_scope(key) {
            return Phase::Controllers;
        }
        match key.kind.as_str() {
            "Namespace" | "StorageClass" => Phase::Namespace,
            "ServiceAccount"
            | "Role"
            | "RoleBinding"
            | "ConfigMap"
            | "Secret"
            | "Service"
            | "NetworkPolicy"
            | "PodDisruptionBudget"
            | "PersistentVolumeClaim"
            | "LimitRange"
            | "ResourceQuota" => Phase::Config,
            "StatefulSet" => Phase::Stores,
            "Job" => Phase::Jobs,
            "Deployment" | "DaemonSet" => Phase::Workloads,
            _ => Phase::Edge,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Phase::Definitions => "definitions",
            Phase::Controllers => "controllers",
            Phase::Namespace => "namespace",
            Phase::Config => "config",
            Phase::Stores => "stores",
            Phase::Jobs => "jobs",
            Phase::Workloads => "workloads",
            Phase::Edge => "edge",
        }
    }

    /// Whether the phase belongs to the cluster rather than to the app's namespace.
    pub fn is_cluster(self) -> bool {
        matches!(self, Phase::Definitions | Phase::Controllers)
    }
}

/// Kinds whose readiness a deploy waits for before the next phase.
pub fn is_waited_for(kind: &str) -> bool {
    matches!(
        kind,
        "StatefulSet" | "Deployment" | "DaemonSet" | "Job" | "CustomResourceDefinition"
    )
}

/// One phase of a deploy: apply these, then wait for those.
#[derive(Debug, Clone, PartialEq)]
pub struct Step<'a> {
    pub phase: Phase,
    pub apply: Vec<&'a Object>,
    pub wait_for: Vec<&'a Key>,
}

/// The objects grouped into phases in apply order; within a phase, the rendered order.
/// Empty phases are left out.
pub fn steps(objects: &[Object]) -> Vec<Step<'_>> {
    Phase::ALL
        .iter()
        .filter_map(|&phase| {
            let apply: Vec<&Object> = objects
                .iter()
                .filter(|o| Phase::of(&o.key) == phase)
                .collect();
            if apply.is_empty() {
                return None;
            }
            let wait_for = apply
                .iter()
                .filter(|o| is_waited_for(&o.key.kind))
                .map(|o| &o.key)
                .collect();
            Some(Step {
                phase,
                apply,
                wait_for,
            })
        })
        .collect()
}

/// The order to delete objects in: the apply order reversed, so the ingress stops
/// sending traffic before the app goes, the namespace goes last of the app's objects,
/// and the controllers (which finalize the Ingress's load balancer) after all of them.
pub fn deletion_order(mut keys: Vec<Key>) -> Vec<Key> {
    keys.sort_by_key(|k| {
        (
            std::cmp::Reverse(Phase::of(k)),
            k.kind == "Namespace",
            k.clone(),
        )
    });
    keys
}

/// The annotation holding a hash of a Job's rendered spec: a Job cannot be changed in
/// place, so a deploy replaces it exactly when the hash differs.
pub const SPEC_HASH_ANNOTATION: &str = "shop.example.com/spec-hash";

/// The rendered Job with the hash of its spec in its annotations.
pub fn with_spec_hash(job: &Value) -> Value {
    use sha2::{Digest, Sha256};
    let hash = Sha256::digest(serde_json::to_vec(&job["spec"]).expect("JSON serializes"));
    let hex: String = hash.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let mut job = job.clone();
    let metadata = job["metadata"]
        .as_object_mut()
        .expect("a named object has metadata");
    let annotations = metadata
        .entry("annotations")
        .or_insert_with(|| Value::Object(Default::default()));
    annotations[SPEC_HASH_ANNOTATION] = Value::String(hex);
    job
}

/// What to do with a Job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobAction {
    /// None runs: create it.
    Create,
    /// The same spec ran or runs: leave it (migrations do not run twice).
    Keep,
    /// Another spec, or the same one failed: delete it and create it again.
    Replace,
}

pub fn job_action(live: Option<&Value>, rendered_with_hash: &Value) -> JobAction {
    let Some(live) = live else {
        return JobAction::Create;
    };
    let hash = |v: &Value| {
        v["metadata"]["annotations"][SPEC_HASH_ANNOTATION]
            .as_str()
            .map(str::to_owned)
    };
    let failed = live["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Failed" && c["status"] == "True")
    });
    if hash(live).is_some() && hash(live) == hash(rendered_with_hash) && !failed {
        JobAction::Keep
    } else {
        JobAction::Replace
    }
}

/// The label selector of a workload's pods (`spec.selector.matchLabels`), as `a=b,c=d`.
pub fn selector(workload: &Value) -> String {
    let labels = workload["spec"]["selector"]["matchLabels"]
        .as_object()
        .or_else(|| workload["spec"]["template"]["metadata"]["labels"].as_object());
    labels
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some(format!("{k}={}", v.as_str()?)))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// The field manager of the replica count a deploy sets once, when it creates an
/// autoscaled workload. shopctl's own applies never carry the count, so they never own
/// it and never reset what the autoscaler chose.
pub const INITIAL_REPLICAS_MANAGER: &str = "shopctl-initial-replicas";

/// The workloads a HorizontalPodAutoscaler among the objects scales.
pub fn autoscaled(objects: &[Object]) -> BTreeSet<Key> {
    objects
        .iter()
        .filter(|o| o.key.kind == "HorizontalPodAutoscaler")
        .filter_map(|o| {
            let target = &o.value["spec"]["scaleTargetRef"];
            Some(Key {
                api_version: target["apiVersion"].as_str()?.to_owned(),
                kind: target["kind"].as_str()?.to_owned(),
                namespace: o.key.namespace.clone(),
                name: target["name"].as_str()?.to_owned(),
            })
        })
        .collect()
}

/// An autoscaled workload as shopctl applies it (without `spec.replicas`), and the
/// replica count alone, to apply once when the workload is created.
pub fn split_replicas(object: &Value) -> (Value, Option<Value>) {
    let mut owned = object.clone();
    let Some(replicas) = owned["spec"]
        .as_object_mut()
        .and_then(|spec| spec.remove("replicas"))
    else {
        return (owned, None);
    };
    let initial = serde_json::json!({
        "apiVersion": object["apiVersion"],
        "kind": object["kind"],
        "metadata": {"name": object["metadata"]["name"], "namespace": object["metadata"]["namespace"]},
        "spec": {"replicas": replicas},
    });
    (owned, Some(initial))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::testing::rendered;

    fn position(order: &[&Key], kind: &str, name: &str) -> usize {
        order
            .iter()
            .position(|k| k.kind == kind && k.name == name)
            .unwrap_or_else(|| panic!("{kind} {name} is not applied"))
    }

    #[test]
    fn every_rendered_object_is_applied_once_in_dependency_order() {
        for env in ["local", "staging", "production"] {
            let objects = rendered(env);
            let steps = steps(&objects);
            let order: Vec<&Key> = steps
                .iter()
                .flat_map(|s| s.apply.iter().map(|o| &o.key))
                .collect();
            assert_eq!(order.len(), objects.len(), "{env}: every object once");
            let mut unique = order.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), objects.len(), "{env}: no object twice");

            let at = |kind, name| position(&order, kind, name);
            // The cluster phase first: definitions, then the controllers, then the app's
            // namespace before anything in it.
            let namespace = at("Namespace", "shop");
            let cluster: Vec<&Key> = order[..namespace].to_vec();
            assert!(
                cluster.iter().all(|k| controllers::is_controller_scope(k)),
                "{env}: only the controllers before the namespace: {cluster:?}"
            );
            assert!(order[namespace..]
                .iter()
                .all(|k| !controllers::is_controller_scope(k)));
            assert_eq!(order[0].kind, "CustomResourceDefinition", "{env}");
            let crds = order
                .iter()
                .filter(|k| k.kind == "CustomResourceDefinition")
                .count();
            assert_eq!(crds, 2, "{env}: TargetGroupBinding and IngressClassParams");
            assert!(order[..crds]
                .iter()
                .all(|k| k.kind == "CustomResourceDefinition"));
            let lb = at("Deployment", "aws-load-balancer-controller");
            assert!(lb < namespace && at("Deployment", "cluster-autoscaler") < namespace);
            // The controller reads its certificate, account and RBAC from the start.
            assert!(at("ServiceAccount", "aws-load-balancer-controller") < lb);
            assert!(at("ClusterRoleBinding", "aws-load-balancer-controller") < lb);
            // The class and the webhook exist before the Ingress they serve and validate.
            assert!(at("IngressClass", "alb") < at("Ingress", "shop-app"));
            assert!(
                at(
                    "ValidatingWebhookConfiguration",
                    "aws-load-balancer-webhook"
                ) < namespace
            );
            assert!(at("StorageClass", "shop-gp3") < at("StatefulSet", "shop-postgres"));
            // Pods start with their account, RBAC and configuration in place.
            assert!(at("ServiceAccount", "shop-postgres") < at("StatefulSet", "shop-postgres"));
            assert!(at("RoleBinding", "shop-postgres") < at("StatefulSet", "shop-postgres"));
            assert!(at("ConfigMap", "shop-postgres") < at("StatefulSet", "shop-postgres"));
            // Default deny (and each controller's policy) in place before any pod it
            // selects runs.
            let value = |key: &Key| &objects.iter().find(|o| &o.key == key).unwrap().value;
            for (i, key) in order.iter().enumerate() {
                if key.kind != "NetworkPolicy" {
                    continue;
                }
                let wanted = value(key)["spec"]["podSelector"]["matchLabels"].clone();
                let selects = |k: &Key| {
                    let labels = &value(k)["spec"]["template"]["metadata"]["labels"];
                    wanted
                        .as_object()
                        .is_none_or(|m| m.iter().all(|(l, v)| labels[l] == *v))
                };
                for (j, workload) in order.iter().enumerate() {
                    let pods = is_waited_for(&workload.kind)
                        && workload.kind != "CustomResourceDefinition"
                        && workload.namespace == key.namespace;
                    if pods && selects(workload) {
                        assert!(i < j, "{env}: {key} after {workload}");
                    }
                }
            }
            // Migrations run on a ready database, before the app that needs the schema.
            assert!(at("StatefulSet", "shop-postgres") < at("Job", "shop-app-migrate"));
            assert!(at("StatefulSet", "shop-kafka") < at("Job", "shop-kafka-topics"));
            assert!(at("Job", "shop-app-migrate") < at("Deployment", "shop-app"));
            assert!(at("Job", "shop-app-migrate") < at("Deployment", "shop-worker"));
            // Traffic and scaling point at pods that exist.
            assert!(at("Deployment", "shop-app") < at("Ingress", "shop-app"));
            assert!(at("Deployment", "shop-app") < at("HorizontalPodAutoscaler", "shop-app"));
        }
    }

    #[test]
    fn waits_for_the_stores_jobs_and_workloads_of_their_phase() {
        let objects = rendered("staging");
        let steps = steps(&objects);
        let phases: Vec<Phase> = steps.iter().map(|s| s.phase).collect();
        assert_eq!(phases, Phase::ALL.to_vec());
        for step in &steps {
            for key in &step.wait_for {
                assert_eq!(Phase::of(key), step.phase);
            }
            let waited: Vec<&str> = step.wait_for.iter().map(|k| k.name.as_str()).collect();
            match step.phase {
                Phase::Definitions => assert_eq!(
                    waited,
                    vec![
                        "targetgroupbindings.elbv2.k8s.aws",
                        "ingressclassparams.elbv2.k8s.aws"
                    ]
                ),
                Phase::Controllers => assert_eq!(
                    waited,
                    vec!["aws-load-balancer-controller", "cluster-autoscaler"]
                ),
                Phase::Stores => {
                    for name in [
                        "shop-postgres",
                        "shop-kafka",
                        "shop-rabbitmq",
                        "shop-redis-primary",
                    ] {
                        assert!(waited.contains(&name), "{name} not waited for: {waited:?}");
                    }
                }
                Phase::Jobs => assert!(waited.contains(&"shop-app-migrate")),
                Phase::Workloads => {
                    assert!(waited.contains(&"shop-app") && waited.contains(&"shop-worker"))
                }
                _ => assert!(waited.is_empty(), "{:?} waits for {waited:?}", step.phase),
            }
        }
    }

    #[test]
    fn a_job_is_replaced_when_its_spec_changes_or_it_failed() {
        let objects = rendered("staging");
        let migrate = objects
            .iter()
            .find(|o| o.key.name == "shop-app-migrate")
            .unwrap();
        let hashed = with_spec_hash(&migrate.value);
        assert_eq!(job_action(None, &hashed), JobAction::Create);
        // The server adds defaults and status; the annotation is what is compared.
        let mut live = hashed.clone();
        live["spec"]["backoffLimit"] = serde_json::json!(6);
        live["status"] = serde_json::json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]});
        assert_eq!(job_action(Some(&live), &hashed), JobAction::Keep);
        let mut new_image = migrate.value.clone();
        new_image["spec"]["template"]["spec"]["containers"][0]["image"] =
            serde_json::json!("other@sha256:1");
        assert_eq!(
            job_action(Some(&live), &with_spec_hash(&new_image)),
            JobAction::Replace
        );
        live["status"] =
            serde_json::json!({"failed": 3, "conditions": [{"type": "Failed", "status": "True"}]});
        assert_eq!(job_action(Some(&live), &hashed), JobAction::Replace);
        // A Job someone else made (no hash) is replaced by ours.
        assert_eq!(
            job_action(Some(&migrate.value), &hashed),
            JobAction::Replace
        );
        assert_eq!(with_spec_hash(&migrate.value), hashed, "the hash is stable");
    }

    #[test]
    fn finds_a_workloads_pods_by_its_selector() {
        let objects = rendered("staging");
        let app = objects
            .iter()
            .find(|o| o.key.kind == "Deployment" && o.key.name == "shop-app")
            .unwrap();
        let selector = selector(&app.value);
        assert!(selector.contains("app.kubernetes.io/name="), "{selector}");
        assert_eq!(super::selector(&serde_json::json!({})), "");
    }

    #[test]
    fn the_autoscaler_owns_the_replica_count_after_creation() {
        let objects = rendered("staging");
        let scaled = autoscaled(&objects);
        let names: Vec<&str> = scaled.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(names, vec!["shop-app", "shop-worker"]);
        let app = objects
            .iter()
            .find(|o| o.key.kind == "Deployment" && o.key.name == "shop-app")
            .unwrap();
        assert!(
            scaled.contains(&app.key),
            "the HPA names the rendered Deployment's key"
        );
        assert!(
            app.value["spec"]["replicas"].is_number(),
            "the rendered starting count"
        );
        let (owned, initial) = split_replicas(&app.value);
        assert!(owned["spec"].get("replicas").is_none());
        assert_eq!(owned["spec"]["template"], app.value["spec"]["template"]);
        let initial = initial.unwrap();
        assert_eq!(
            initial["spec"],
            serde_json::json!({"replicas": app.value["spec"]["replicas"]})
        );
        assert_eq!(initial["metadata"]["namespace"], "shop");
        assert_eq!(initial["kind"], "Deployment");
        let (_, none) = split_replicas(&serde_json::json!({"spec": {}}));
        assert!(none.is_none());
    }

    #[test]
    fn deletes_in_reverse_with_the_namespace_last_of_the_apps_objects() {
        let objects = rendered("staging");
        let order = deletion_order(objects.iter().map(|o| o.key.clone()).collect());
        // The controllers go after every object of the app, the definitions last.
        assert_eq!(order.last().unwrap().kind, "CustomResourceDefinition");
        let namespace = order.iter().position(|k| k.kind == "Namespace").unwrap();
        assert!(order[..namespace]
            .iter()
            .all(|k| !controllers::is_controller_scope(k)));
        assert!(order[namespace + 1..]
            .iter()
            .all(controllers::is_controller_scope));
        let at = |kind: &str| order.iter().position(|k| k.kind == kind).unwrap();
        assert!(at("Ingress") < at("IngressClass"));
        assert!(at("Ingress") < at("Deployment"));
        assert!(at("Deployment") < at("StatefulSet"));
        assert!(at("StatefulSet") < at("Service"));
    }
}
