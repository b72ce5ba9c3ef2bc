//! Which objects of an environment in the cluster are no longer rendered, and so go.

use std::collections::BTreeSet;

use serde_json::Value;

use super::manifest::{self, Key, ENVIRONMENT_LABEL, MANAGED_BY, MANAGED_BY_LABEL};

/// Where to list when looking for objects to prune: each kind in each namespace (None:
/// cluster-wide, for cluster-scoped kinds) that objects rendered now or applied by the
/// previous revision are in (a kind no longer rendered at all still has objects). Only
/// those namespaces are listed: the app's, and kube-system for the controllers; there the
/// labels below keep everything that is not shopctl's out of reach.
pub fn kinds<'a>(
    current: impl IntoIterator<Item = &'a Key>,
    previous: impl IntoIterator<Item = &'a Key>,
) -> BTreeSet<Scope> {
    current
        .into_iter()
        .chain(previous)
        .map(|k| Scope {
            api_version: k.api_version.clone(),
            kind: k.kind.clone(),
            namespace: k.namespace.clone(),
        })
        .collect()
}

/// One list call: a kind in a namespace, or cluster-wide.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Scope {
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
}

/// The live objects to delete: they carry the environment's label and shopctl's, no
/// controller owns them (pods of a StatefulSet carry the labels of its template), and
/// no rendered object has their group, kind, namespace and name.
pub fn to_prune(env: &str, rendered: &[Key], live: &[Value]) -> Vec<Key> {
    let wanted: BTreeSet<_> = rendered.iter().map(Key::identity).collect();
    let mut prune: Vec<Key> = live
        .iter()
        .filter(|object| {
            let labels = manifest::labels(object);
            labels.get(ENVIRONMENT_LABEL).map(String::as_str) == Some(env)
                && labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY)
                && object["metadata"]["ownerReferences"]
                    .as_array()
                    .is_none_or(|owners| owners.is_empty())
        })
        .filter_map(Key::of)
        .filter(|key| !wanted.contains(&key.identity()))
        .collect();
    prune.sort();
    prune.dedup_by(|a, b| a.identity() == b.identity());
    super::plan::deletion_order(prune)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::testing::rendered;
    use serde_json::json;

    fn live(api_version: &str, kind: &str, name: &str, labels: Value) -> Value {
        json!({"apiVersion": api_version, "kind": kind,
               "metadata": {"name": name, "namespace": "shop", "labels": labels}})
    }

    fn ours(env: &str) -> Value {
        json!({ENVIRONMENT_LABEL: env, MANAGED_BY_LABEL: MANAGED_BY})
    }

    #[test]
    fn prunes_only_our_objects_that_are_no_longer_rendered() {
        let objects = rendered("staging");
        let keys: Vec<Key> = objects.iter().map(|o| o.key.clone()).collect();
        let mut cluster: Vec<Value> = objects.iter().map(|o| o.value.clone()).collect();
        // Nothing to prune when the cluster holds exactly what is rendered.
        assert!(to_prune("staging", &keys, &cluster).is_empty());

        // A Deployment and a NetworkPolicy a previous revision rendered: pruned.
        cluster.push(live(
            "apps/v1",
            "Deployment",
            "shop-old-worker",
            ours("staging"),
        ));
        cluster.push(live(
            "networking.k8s.io/v1",
            "NetworkPolicy",
            "old-flow",
            ours("staging"),
        ));
        // A pod of the StatefulSet (labels from the template, owned by the set): kept.
        let mut pod = live("v1", "Pod", "shop-postgres-0", ours("staging"));
        pod["metadata"]["ownerReferences"] =
            json!([{"kind": "StatefulSet", "name": "shop-postgres"}]);
        cluster.push(pod);
        // Patroni's own Endpoints (no labels of ours), another environment's object, and
        // someone else's object with our environment label: kept.
        cluster.push(live(
            "v1",
            "Endpoints",
            "shop-postgres",
            json!({"application": "spilo"}),
        ));
        cluster.push(live(
            "apps/v1",
            "Deployment",
            "shop-app",
            ours("production"),
        ));
        cluster.push(live(
            "apps/v1",
            "Deployment",
            "debug",
            json!({ENVIRONMENT_LABEL: "staging"}),
        ));
        // The HPA read through another API version is still the rendered one: kept.
        cluster.push(live(
            "autoscaling/v1",
            "HorizontalPodAutoscaler",
            "shop-app",
            ours("staging"),
        ));

        let pruned: Vec<String> = to_prune("staging", &keys, &cluster)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            pruned,
            vec![
                "Deployment shop/shop-old-worker",
                "NetworkPolicy shop/old-flow"
            ]
        );
    }

    #[test]
    fn lists_the_kinds_rendered_now_and_before() {
        let now = [Key {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: None,
            name: "a".into(),
        }];
        let before = [Key {
            api_version: "batch/v1".into(),
            kind: "CronJob".into(),
            namespace: None,
            name: "b".into(),
        }];
        let kinds = kinds(&now, &before);
        assert_eq!(kinds.len(), 2);
        assert!(kinds.contains(&Scope {
            api_version: "batch/v1".into(),
            kind: "CronJob".into(),
            namespace: None
        }));
    }

    #[test]
    fn lists_kube_system_only_for_the_controllers_and_never_prunes_what_is_not_ours_there() {
        let objects = rendered("staging");
        let keys: Vec<Key> = objects.iter().map(|o| o.key.clone()).collect();
        let scopes = kinds(&keys, &[]);
        let namespaces: BTreeSet<Option<&str>> =
            scopes.iter().map(|s| s.namespace.as_deref()).collect();
        assert_eq!(
            namespaces,
            BTreeSet::from([None, Some("kube-system"), Some("shop")])
        );
        // Deployments are listed in both namespaces, Ingresses only in the app's.
        let deployments: Vec<Option<&str>> = scopes
            .iter()
            .filter(|s| s.kind == "Deployment")
            .map(|s| s.namespace.as_deref())
            .collect();
        assert_eq!(deployments, vec![Some("kube-system"), Some("shop")]);
        assert!(!scopes
            .iter()
            .any(|s| s.kind == "Ingress" && s.namespace.as_deref() == Some("kube-system")));

        let mut cluster: Vec<Value> = objects.iter().map(|o| o.value.clone()).collect();
        let in_kube_system = |kind: &str, name: &str, labels: Value| {
            let mut object = live("apps/v1", kind, name, labels);
            object["metadata"]["namespace"] = json!("kube-system");
            object
        };
        // The EKS add-ons and anything else in kube-system: no labels of ours, kept.
        cluster.push(in_kube_system(
            "Deployment",
            "coredns",
            json!({"eks.amazonaws.com/component": "coredns", "k8s-app": "kube-dns"}),
        ));
        cluster.push(in_kube_system(
            "DaemonSet",
            "aws-node",
            json!({"app.kubernetes.io/managed-by": "Helm"}),
        ));
        // Another environment's controller in the same namespace: kept.
        cluster.push(in_kube_system(
            "Deployment",
            "old-controller",
            ours("production"),
        ));
        // A controller a previous revision of this environment rendered: pruned.
        cluster.push(in_kube_system(
            "Deployment",
            "old-controller",
            ours("staging"),
        ));
        // The webhook's generated Secret is not labelled for prune: kept.
        cluster.push(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {
            "name": "aws-load-balancer-tls", "namespace": "kube-system",
            "labels": {"shop.example.com/generated-for": "staging", MANAGED_BY_LABEL: MANAGED_BY}}}));
        let pruned: Vec<String> = to_prune("staging", &keys, &cluster)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(pruned, vec!["Deployment kube-system/old-controller"]);
    }
}
