//! The pods every EKS cluster of ours runs that shopctl does not render: EKS managed
//! add-ons and the controllers installed next to them. Their requests come from each
//! project's published manifests or chart defaults (the source column); one whose manifest
//! is rendered (under templates/k8s) is read from there instead, never counted twice.

use std::collections::BTreeMap;

use serde::Serialize;

use super::workloads::{Kind, Requests, Workload};

/// One add-on: per pod requests, summed over its containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AddOn {
    /// Its workload's name in kube-system; a rendered workload of this name (or with this
    /// app.kubernetes.io/name) replaces the row.
    pub name: &'static str,
    pub kind: &'static str,
    /// Pods (Deployments); DaemonSets run one per node.
    pub replicas: u32,
    pub cpu_millis: u64,
    pub memory_mib: u64,
    pub source: &'static str,
}

pub const ADD_ONS: &[AddOn] = &[
    AddOn {
        name: "aws-node",
        kind: "DaemonSet",
        replicas: 0,
        cpu_millis: 50,
        memory_mib: 0,
        source: "VPC CNI add-on (aws-vpc-cni chart): aws-node requests cpu 25m; the network policy agent (aws-eks-nodeagent) counted at the same 25m",
    },
    AddOn {
        name: "kube-proxy",
        kind: "DaemonSet",
        replicas: 0,
        cpu_millis: 100,
        memory_mib: 0,
        source: "kube-proxy add-on manifest: requests cpu 100m",
    },
    AddOn {
        name: "ebs-csi-node",
        kind: "DaemonSet",
        replicas: 0,
        cpu_millis: 30,
        memory_mib: 120,
        source: "aws-ebs-csi-driver chart defaults: ebs-plugin, node-driver-registrar, liveness-probe at 10m/40Mi each",
    },
    AddOn {
        name: "coredns",
        kind: "Deployment",
        replicas: 2,
        cpu_millis: 100,
        memory_mib: 70,
        source: "CoreDNS add-on: 2 replicas, requests cpu 100m memory 70Mi",
    },
    AddOn {
        name: "ebs-csi-controller",
        kind: "Deployment",
        replicas: 2,
        cpu_millis: 60,
        memory_mib: 240,
        source: "aws-ebs-csi-driver chart defaults: 2 replicas; ebs-plugin, csi-provisioner, csi-attacher, csi-snapshotter, csi-resizer, liveness-probe at 10m/40Mi each",
    },
    AddOn {
        name: "metrics-server",
        kind: "Deployment",
        replicas: 1,
        cpu_millis: 100,
        memory_mib: 200,
        source: "metrics-server components.yaml: requests cpu 100m memory 200Mi",
    },
    AddOn {
        name: "aws-load-balancer-controller",
        kind: "Deployment",
        replicas: 2,
        cpu_millis: 100,
        memory_mib: 128,
        source: "aws-load-balancer-controller: 2 replicas; the chart requests nothing by default, counted at 100m/128Mi (a pod that requests nothing still takes a pod slot)",
    },
    AddOn {
        name: "cluster-autoscaler",
        kind: "Deployment",
        replicas: 1,
        cpu_millis: 100,
        memory_mib: 600,
        source: "cluster-autoscaler-autodiscover.yaml (AWS example): requests cpu 100m memory 600Mi",
    },
];

impl AddOn {
    fn is(&self, workload: &Workload) -> bool {
        workload.name == self.name
            || workload
                .labels
                .get("app.kubernetes.io/name")
                .map(String::as_str)
                == Some(self.name)
    }

    fn workload(&self) -> Workload {
        let daemon = self.kind == "DaemonSet";
        Workload {
            kind: if daemon {
                Kind::DaemonSet
            } else {
                Kind::Deployment
            },
            namespace: "kube-system".into(),
            name: self.name.into(),
            source: format!("add-on table: {}", self.source),
            min_replicas: self.replicas,
            max_replicas: self.replicas,
            requests: Requests {
                cpu_millis: self.cpu_millis,
                memory_bytes: self.memory_mib * 1024 * 1024,
            },
            labels: BTreeMap::from([("app.kubernetes.io/name".into(), self.name.into())]),
            anti_affinity: Vec::new(),
            spread: Vec::new(),
            config_key: None,
        }
    }
}

/// The rendered workloads followed by the add-ons that are not rendered.
pub fn with_add_ons(rendered: Vec<Workload>) -> Vec<Workload> {
    let missing: Vec<Workload> = ADD_ONS
        .iter()
        .filter(|a| !rendered.iter().any(|w| a.is(w)))
        .map(AddOn::workload)
        .collect();
    rendered.into_iter().chain(missing).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rendered_add_on_replaces_its_row() {
        let all = with_add_ons(Vec::new());
        assert_eq!(all.len(), ADD_ONS.len());
        assert_eq!(all.iter().filter(|w| w.is_daemon()).count(), 3);
        let mut rendered = ADD_ONS[7].workload();
        rendered.name = "shop-cluster-autoscaler".into();
        rendered.source = "k8s/cluster-autoscaler.yaml#4".into();
        rendered.requests.cpu_millis = 250;
        let all = with_add_ons(vec![rendered]);
        let autoscalers: Vec<_> = all
            .iter()
            .filter(|w| {
                w.labels.get("app.kubernetes.io/name").map(String::as_str)
                    == Some("cluster-autoscaler")
            })
            .collect();
        assert_eq!(autoscalers.len(), 1, "counted once");
        assert_eq!(
            autoscalers[0].requests.cpu_millis, 250,
            "the rendered figures win"
        );
    }
}
