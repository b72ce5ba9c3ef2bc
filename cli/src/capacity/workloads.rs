//! The pods an environment runs, read from its rendered manifests: each workload's pod
//! requests (as the scheduler adds them up), replicas at the minimum and at the HPA
//! maximum, and the placement rules the scheduler enforces (required pod anti-affinity,
//! DoNotSchedule topology spread).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::quantity;
use crate::deploy::manifest::Object;

/// CPU and memory a pod asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Requests {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
}

impl Requests {
    fn max(self, other: Requests) -> Requests {
        Requests {
            cpu_millis: self.cpu_millis.max(other.cpu_millis),
            memory_bytes: self.memory_bytes.max(other.memory_bytes),
        }
    }

    fn plus(self, other: Requests) -> Requests {
        Requests {
            cpu_millis: self.cpu_millis + other.cpu_millis,
            memory_bytes: self.memory_bytes + other.memory_bytes,
        }
    }
}

/// Which pods a rule counts: a label selector (matchLabels and matchExpressions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Selector {
    pub match_labels: BTreeMap<String, String>,
    pub expressions: Vec<(String, String, Vec<String>)>,
}

impl Selector {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.expressions.iter().all(|(key, op, values)| {
                let value = labels.get(key);
                match op.as_str() {
                    "In" => value.is_some_and(|v| values.contains(v)),
                    "NotIn" => value.is_none_or(|v| !values.contains(v)),
                    "Exists" => value.is_some(),
                    _ => value.is_none(), // DoesNotExist
                }
            })
    }
}

/// The domain a rule is about: one node, or one availability zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Domain {
    Node,
    Zone,
}

/// `requiredDuringSchedulingIgnoredDuringExecution` pod anti-affinity: no pod matching
/// the selector in the same domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AntiAffinity {
    pub domain: Domain,
    pub selector: Selector,
}

/// A `whenUnsatisfiable: DoNotSchedule` topology spread constraint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Spread {
    pub domain: Domain,
    pub max_skew: u32,
    pub selector: Selector,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Deployment,
    StatefulSet,
    DaemonSet,
    Job,
    CronJob,
}

/// One workload and everything the placement needs about its pods.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Workload {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    /// `k8s/app.yaml#3`, or the add-on table's source of its figures.
    pub source: String,
    /// Pods at the minimum: spec.replicas, or the HPA's minReplicas when larger; one per
    /// node for a DaemonSet (not used).
    pub min_replicas: u32,
    /// Pods at the HPA's maxReplicas (min_replicas without an HPA).
    pub max_replicas: u32,
    pub requests: Requests,
    pub labels: BTreeMap<String, String>,
    pub anti_affinity: Vec<AntiAffinity>,
    pub spread: Vec<Spread>,
    /// The config keys of its requests (`services.app`), when the environment file sets them.
    pub config_key: Option<String>,
}

impl Workload {
    pub fn is_daemon(&self) -> bool {
        self.kind == Kind::DaemonSet
    }

    /// `Deployment shop/shop-app`.
    pub fn id(&self) -> String {
        let kind = match self.kind {
            Kind::Deployment => "Deployment",
            Kind::StatefulSet => "StatefulSet",
            Kind::DaemonSet => "DaemonSet",
            Kind::Job => "Job",
            Kind::CronJob => "CronJob",
        };
        format!("{kind} {}/{}", self.namespace, self.name)
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WorkloadError {
    #[error("{source_name}: {what}: {reason}")]
    Unreadable {
        source_name: String,
        what: String,
        reason: String,
    },
}

fn unreadable(object: &Object, reason: impl Into<String>) -> WorkloadError {
    WorkloadError::Unreadable {
        source_name: object.source.clone(),
        what: object.key.to_string(),
        reason: reason.into(),
    }
}

/// The workloads of the rendered objects, with their HPAs' bounds applied.
pub fn extract(objects: &[Object]) -> Result<Vec<Workload>, WorkloadError> {
    let mut workloads = Vec::new();
    for object in objects {
        let kind = match object.key.kind.as_str() {
            "Deployment" => Kind::Deployment,
            "StatefulSet" => Kind::StatefulSet,
            "DaemonSet" => Kind::DaemonSet,
            "Job" => Kind::Job,
            "CronJob" => Kind::CronJob,
            _ => continue,
        };
        workloads.push(workload(object, kind)?);
    }
    for hpa in objects
        .iter()
        .filter(|o| o.key.kind == "HorizontalPodAutoscaler")
    {
        let spec = &hpa.value["spec"];
        let target = &spec["scaleTargetRef"];
        let namespace = hpa.key.namespace.clone().unwrap_or_default();
        let Some(workload) = workloads.iter_mut().find(|w| {
            Some(w.name.as_str()) == target["name"].as_str()
                && target["kind"].as_str() == Some(w.id().split(' ').next().unwrap_or_default())
                && w.namespace == namespace
        }) else {
            return Err(unreadable(hpa, "scales a workload that is not rendered"));
        };
        let min = spec["minReplicas"].as_u64().unwrap_or(1) as u32;
        let max = spec["maxReplicas"]
            .as_u64()
            .ok_or_else(|| unreadable(hpa, "no spec.maxReplicas"))? as u32;
        workload.min_replicas = workload.min_replicas.max(min);
        workload.max_replicas = max.max(workload.min_replicas);
    }
    Ok(workloads)
}

fn workload(object: &Object, kind: Kind) -> Result<Workload, WorkloadError> {
    let spec = &object.value["spec"];
    let (template, replicas) = match kind {
        Kind::Deployment | Kind::StatefulSet => (
            &spec["template"],
            spec["replicas"].as_u64().unwrap_or(1) as u32,
        ),
        Kind::DaemonSet => (&spec["template"], 0),
        Kind::Job => (
            &spec["template"],
            spec["parallelism"].as_u64().unwrap_or(1) as u32,
        ),
        Kind::CronJob => (
            &spec["jobTemplate"]["spec"]["template"],
            spec["jobTemplate"]["spec"]["parallelism"]
                .as_u64()
                .unwrap_or(1) as u32,
        ),
    };
    let pod = &template["spec"];
    if !pod["containers"].is_array() {
        return Err(unreadable(object, "no pod template with containers"));
    }
    let labels = crate::deploy::manifest::labels(template);
    Ok(Workload {
        kind,
        namespace: object.key.namespace.clone().unwrap_or_default(),
        name: object.key.name.clone(),
        source: object.source.clone(),
        min_replicas: replicas,
        max_replicas: replicas,
        requests: pod_requests(pod).map_err(|e| unreadable(object, e))?,
        labels,
        anti_affinity: anti_affinity(pod).map_err(|e| unreadable(object, e))?,
        spread: spread(pod).map_err(|e| unreadable(object, e))?,
        config_key: None,
    })
}

/// One container's requests; a resource with a limit but no request requests its limit,
/// as the API server defaults it.
fn container_requests(container: &Value) -> Result<Requests, String> {
    let resources = &container["resources"];
    let pick = |name: &str| {
        let request = &resources["requests"][name];
        if request.is_null() {
            &resources["limits"][name]
        } else {
            request
        }
    };
    let name = container["name"].as_str().unwrap_or("?");
    let cpu = match pick("cpu") {
        Value::Null => 0,
        v => quantity::cpu_millis(v)
            .ok_or_else(|| format!("container {name}: CPU request {v} is not a quantity"))?,
    };
    let memory = match pick("memory") {
        Value::Null => 0,
        v => quantity::bytes(v)
            .ok_or_else(|| format!("container {name}: memory request {v} is not a quantity"))?,
    };
    Ok(Requests {
        cpu_millis: cpu,
        memory_bytes: memory,
    })
}

/// The pod's effective request as the scheduler computes it: the larger of the sum of its
/// containers (and sidecars, init containers with restartPolicy Always, which keep running)
/// and the peak of any init container (with the sidecars started before it).
pub fn pod_requests(pod: &Value) -> Result<Requests, String> {
    let list = |key: &str| pod[key].as_array().cloned().unwrap_or_default();
    let mut sidecars = Requests::default();
    let mut init_peak = Requests::default();
    for init in list("initContainers") {
        let requests = container_requests(&init)?;
        if init["restartPolicy"].as_str() == Some("Always") {
            sidecars = sidecars.plus(requests);
        } else {
            init_peak = init_peak.max(requests.plus(sidecars));
        }
    }
    let mut containers = Requests::default();
    for container in list("containers") {
        containers = containers.plus(container_requests(&container)?);
    }
    Ok(containers.plus(sidecars).max(init_peak))
}

fn domain(topology_key: &Value) -> Result<Domain, String> {
    match topology_key.as_str() {
        Some("kubernetes.io/hostname") => Ok(Domain::Node),
        Some("topology.kubernetes.io/zone") => Ok(Domain::Zone),
        other => Err(format!(
            "topology key {other:?} is not modelled (kubernetes.io/hostname and topology.kubernetes.io/zone are)"
        )),
    }
}

fn selector(value: &Value) -> Result<Selector, String> {
    let match_labels = value["matchLabels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default();
    let mut expressions = Vec::new();
    for e in value["matchExpressions"].as_array().into_iter().flatten() {
        let op = e["operator"].as_str().unwrap_or_default();
        if !["In", "NotIn", "Exists", "DoesNotExist"].contains(&op) {
            return Err(format!(
                "label selector operator {op:?} is not one Kubernetes knows"
            ));
        }
        let values = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        expressions.push((
            e["key"].as_str().unwrap_or_default().to_owned(),
            op.to_owned(),
            values,
        ));
    }
    Ok(Selector {
        match_labels,
        expressions,
    })
}

fn anti_affinity(pod: &Value) -> Result<Vec<AntiAffinity>, String> {
    pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|term| {
            Ok(AntiAffinity {
                domain: domain(&term["topologyKey"])?,
                selector: selector(&term["labelSelector"])?,
            })
        })
        .collect()
}

fn spread(pod: &Value) -> Result<Vec<Spread>, String> {
    pod["topologySpreadConstraints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["whenUnsatisfiable"].as_str() != Some("ScheduleAnyway"))
        .map(|c| {
            Ok(Spread {
                domain: domain(&c["topologyKey"])?,
                max_skew: c["maxSkew"].as_u64().unwrap_or(1) as u32,
                selector: selector(&c["labelSelector"])?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::manifest::parse;

    const APP: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 2
  template:
    metadata: {labels: {app: web}}
    spec:
      initContainers:
        - name: setup
          resources: {requests: {cpu: "1", memory: 64Mi}}
        - name: proxy
          restartPolicy: Always
          resources: {requests: {cpu: 100m, memory: 32Mi}}
      containers:
        - name: web
          resources: {requests: {cpu: 250m}, limits: {memory: 256Mi}}
        - name: log
          resources: {requests: {cpu: 50m, memory: 16Mi}}
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            - topologyKey: kubernetes.io/hostname
              labelSelector: {matchLabels: {app: web}}
      topologySpreadConstraints:
        - {maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: web}}}
        - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: ScheduleAnyway, labelSelector: {matchLabels: {app: web}}}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web, namespace: shop}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 3
  maxReplicas: 9
"#;

    #[test]
    fn requests_add_up_as_the_scheduler_counts_them() {
        let objects = parse("k8s/web.yaml", APP).unwrap();
        let web = &extract(&objects).unwrap()[0];
        // containers 250m + 50m, plus the sidecar's 100m = 400m; the init container's 1 CPU
        // (with the sidecar before it? no: it runs first) peaks at 1000m.
        assert_eq!(web.requests.cpu_millis, 1000);
        // memory: 256Mi (limit as request) + 16Mi + 32Mi sidecar = 304Mi > 64Mi init.
        assert_eq!(web.requests.memory_bytes, 304 << 20);
    }

    #[test]
    fn hpa_bounds_and_rules_are_read() {
        let objects = parse("k8s/web.yaml", APP).unwrap();
        let web = &extract(&objects).unwrap()[0];
        assert_eq!((web.min_replicas, web.max_replicas), (3, 9));
        assert_eq!(web.anti_affinity.len(), 1);
        assert_eq!(web.anti_affinity[0].domain, Domain::Node);
        assert_eq!(
            web.spread.len(),
            1,
            "ScheduleAnyway is a preference, not a rule"
        );
        assert_eq!(web.spread[0].domain, Domain::Zone);
        assert!(web.anti_affinity[0].selector.matches(&web.labels));
        assert_eq!(web.id(), "Deployment shop/web");
    }

    #[test]
    fn unmodelled_rules_are_errors_not_ignored() {
        let text = APP.replace(
            "topologyKey: kubernetes.io/hostname\n              labelSelector",
            "topologyKey: example.com/rack\n              labelSelector",
        );
        let objects = parse("k8s/web.yaml", &text).unwrap();
        let err = extract(&objects).unwrap_err();
        assert!(err.to_string().contains("example.com/rack"), "{err}");
        let text = APP.replace("cpu: 250m", "cpu: lots");
        let err = extract(&parse("k8s/web.yaml", &text).unwrap()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("k8s/web.yaml#1: Deployment shop/web: container web"),
            "{err}"
        );
    }
}
