//! Whether the pods fit the nodes: a deterministic first-fit-decreasing placement that
//! honours what the scheduler enforces (requests against allocatable CPU and memory, pod
//! slots, required pod anti-affinity, DoNotSchedule topology spread) on the nodes of a
//! scenario. It answers "does a placement exist that this simple packer finds", which is
//! what a deploy needs; kube-scheduler spreads rather than packs, so a plan with a few
//! millicores to spare could still strand a pod there (the headroom says how close it is).

use serde::Serialize;

use super::allocatable::Allocatable;
use super::quantity::{show_cpu, show_memory};
use super::workloads::{Domain, Requests, Workload};

/// One node group as the check sees it: every node has the smallest allocatable of its
/// instance types, since the Auto Scaling group may launch any of them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Group {
    /// Its index under [[eks.node_groups]].
    pub index: usize,
    pub name: String,
    pub instance_types: Vec<&'static str>,
    pub allocatable: Allocatable,
    pub min: u32,
    pub max: u32,
}

/// What is placed on what.
#[derive(Debug, Clone, PartialEq)]
pub struct Inputs {
    pub groups: Vec<Group>,
    pub workloads: Vec<Workload>,
    /// The availability zones the node groups spread their nodes over, in order.
    pub zones: Vec<String>,
}

/// Which day is checked. Both must pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Every node group at its `min` nodes, every workload at its minimum replicas: the
    /// baseline must never depend on the autoscaler adding a node.
    Minimum,
    /// Every node group at its `max` nodes, every workload at its HPA maximum: the
    /// autoscalers must be able to make room for the busiest hour.
    Peak,
}

impl Scenario {
    pub fn describe(self) -> &'static str {
        match self {
            Scenario::Minimum => "node groups at min, workloads at their minimum replicas",
            Scenario::Peak => "node groups at max, workloads at their HPA maximum replicas",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Node {
    /// `general-1`.
    pub name: String,
    pub group: usize,
    pub zone: String,
    #[serde(skip)]
    zone_index: usize,
    pub allocatable: Allocatable,
    pub requested: Requests,
    /// `shop-postgres-0`, ...
    pub pods: Vec<String>,
    #[serde(skip)]
    placed: Vec<usize>,
}

impl Node {
    pub fn free(&self) -> Requests {
        Requests {
            cpu_millis: self
                .allocatable
                .cpu_millis
                .saturating_sub(self.requested.cpu_millis),
            memory_bytes: self
                .allocatable
                .memory_bytes
                .saturating_sub(self.requested.memory_bytes),
        }
    }
}

/// A pod that found no node, and why each node refused it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unplaced {
    pub pod: String,
    pub workload: String,
    pub source: String,
    pub requests: Requests,
    pub reasons: Vec<String>,
    #[serde(skip)]
    pub workload_index: usize,
    #[serde(skip)]
    pub short: Shortfall,
}

/// Which resources a pod lacked on every node it could otherwise use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shortfall {
    pub cpu: bool,
    pub memory: bool,
    pub pods: bool,
    pub rules: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Placement {
    pub scenario: Scenario,
    pub nodes: Vec<Node>,
    pub unplaced: Vec<Unplaced>,
}

impl Placement {
    pub fn fits(&self) -> bool {
        self.unplaced.is_empty()
    }
}

/// A pod to place: its workload and its name.
struct Pod {
    workload: usize,
    name: String,
}

fn nodes(inputs: &Inputs, scenario: Scenario) -> Vec<Node> {
    let mut nodes = Vec::new();
    for group in &inputs.groups {
        let count = match scenario {
            Scenario::Minimum => group.min,
            Scenario::Peak => group.max,
        };
        // A managed node group balances its nodes over its subnets' zones.
        for i in 0..count as usize {
            let zone_index = i % inputs.zones.len().max(1);
            nodes.push(Node {
                name: format!("{}-{}", group.name, i + 1),
                group: group.index,
                zone: inputs.zones.get(zone_index).cloned().unwrap_or_default(),
                zone_index,
                allocatable: group.allocatable,
                requested: Requests::default(),
                pods: Vec::new(),
                placed: Vec::new(),
            });
        }
    }
    nodes
}

/// Why `pod` cannot go on `node`, if it cannot.
fn refusals(
    inputs: &Inputs,
    nodes: &[Node],
    node: usize,
    pod: &Workload,
    shortfall: &mut Shortfall,
) -> Vec<String> {
    let mut why = Vec::new();
    let n = &nodes[node];
    let free = n.free();
    if n.pods.len() as u32 >= n.allocatable.pods {
        why.push(format!("pod slots: all {} taken", n.allocatable.pods));
        shortfall.pods = true;
    }
    if free.cpu_millis < pod.requests.cpu_millis {
        why.push(format!(
            "CPU: {} free, short {}",
            show_cpu(free.cpu_millis),
            show_cpu(pod.requests.cpu_millis - free.cpu_millis)
        ));
        shortfall.cpu = true;
    }
    if free.memory_bytes < pod.requests.memory_bytes {
        why.push(format!(
            "memory: {} free, short {}",
            show_memory(free.memory_bytes),
            show_memory(pod.requests.memory_bytes - free.memory_bytes + (1 << 20) - 1)
        ));
        shortfall.memory = true;
    }
    let same = |domain: Domain, other: &Node| match domain {
        Domain::Node => std::ptr::eq(other, n),
        Domain::Zone => other.zone_index == n.zone_index,
    };
    // Required anti-affinity, both ways: this pod's terms against the pods already in the
    // domain, and their terms against this pod.
    'outer: for other in nodes {
        for &placed in &other.placed {
            let q = &inputs.workloads[placed];
            let ours = pod.anti_affinity.iter().any(|t| {
                same(t.domain, other)
                    && q.namespace == pod.namespace
                    && t.selector.matches(&q.labels)
            });
            let theirs = q.anti_affinity.iter().any(|t| {
                same(t.domain, other)
                    && q.namespace == pod.namespace
                    && t.selector.matches(&pod.labels)
            });
            if ours || theirs {
                why.push(format!("anti-affinity: already holds {}", q.name));
                shortfall.rules = true;
                break 'outer;
            }
        }
    }
    for spread in &pod.spread {
        let count = |domain_of: &dyn Fn(&Node) -> bool| -> usize {
            nodes
                .iter()
                .filter(|o| domain_of(o))
                .flat_map(|o| &o.placed)
                .filter(|&&w| {
                    let q = &inputs.workloads[w];
                    q.namespace == pod.namespace && spread.selector.matches(&q.labels)
                })
                .count()
        };
        let domains: Vec<usize> = match spread.domain {
            Domain::Node => (0..nodes.len()).collect(),
            Domain::Zone => {
                let mut zones: Vec<usize> = nodes.iter().map(|o| o.zone_index).collect();
                zones.sort_unstable();
                zones.dedup();
                zones
            }
        };
        let in_domain = |d: usize, o: &Node| match spread.domain {
            Domain::Node => std::ptr::eq(o, &nodes[d]),
            Domain::Zone => o.zone_index == d,
        };
        let min = domains
            .iter()
            .map(|&d| count(&|o: &Node| in_domain(d, o)))
            .min()
            .unwrap_or(0);
        let here = count(&|o: &Node| same(spread.domain, o));
        let own = usize::from(spread.selector.matches(&pod.labels));
        if here + own > min + spread.max_skew as usize {
            why.push(format!(
                "topology spread: {} would hold {} matching pods against {min} in the emptiest {} (maxSkew {})",
                match spread.domain {
                    Domain::Node => "the node",
                    Domain::Zone => "its zone",
                },
                here + own,
                match spread.domain {
                    Domain::Node => "node",
                    Domain::Zone => "zone",
                },
                spread.max_skew
            ));
            shortfall.rules = true;
        }
    }
    why
}

fn put(nodes: &mut [Node], node: usize, workload: usize, w: &Workload, name: String) {
    let n = &mut nodes[node];
    n.requested.cpu_millis += w.requests.cpu_millis;
    n.requested.memory_bytes += w.requests.memory_bytes;
    n.pods.push(name);
    n.placed.push(workload);
}

/// Places every pod of the scenario: DaemonSets first (one on each node), then the others
/// largest first, those with placement rules before those without; each on the first node
/// that takes it.
pub fn place(inputs: &Inputs, scenario: Scenario) -> Placement {
    let mut nodes = nodes(inputs, scenario);
    let mut unplaced = Vec::new();
    let mut refuse = |nodes: &[Node], index: usize, name: String, reasons: Vec<String>, short| {
        let w: &Workload = &inputs.workloads[index];
        unplaced.push(Unplaced {
            pod: name,
            workload: w.id(),
            source: w.source.clone(),
            requests: w.requests,
            reasons: if nodes.is_empty() {
                vec!["no nodes".into()]
            } else {
                reasons
            },
            workload_index: index,
            short,
        });
    };
    for (index, w) in inputs
        .workloads
        .iter()
        .enumerate()
        .filter(|(_, w)| w.is_daemon())
    {
        for node in 0..nodes.len() {
            let name = format!("{}-{}", w.name, nodes[node].name);
            let mut short = Shortfall::default();
            let why = refusals(inputs, &nodes, node, w, &mut short);
            if why.is_empty() {
                put(&mut nodes, node, index, w, name);
            } else {
                let reasons = vec![format!("{}: {}", nodes[node].name, why.join("; "))];
                refuse(&nodes, index, name, reasons, short);
            }
        }
    }
    let mut pods: Vec<Pod> = Vec::new();
    for (index, w) in inputs
        .workloads
        .iter()
        .enumerate()
        .filter(|(_, w)| !w.is_daemon())
    {
        let replicas = match scenario {
            Scenario::Minimum => w.min_replicas,
            Scenario::Peak => w.max_replicas,
        };
        for ordinal in 0..replicas {
            pods.push(Pod {
                workload: index,
                name: format!("{}-{ordinal}", w.name),
            });
        }
    }
    let constrained = |w: &Workload| !w.anti_affinity.is_empty() || !w.spread.is_empty();
    pods.sort_by(|a, b| {
        let (x, y) = (&inputs.workloads[a.workload], &inputs.workloads[b.workload]);
        constrained(y)
            .cmp(&constrained(x))
            .then(y.requests.cpu_millis.cmp(&x.requests.cpu_millis))
            .then(y.requests.memory_bytes.cmp(&x.requests.memory_bytes))
            .then(a.workload.cmp(&b.workload))
            .then(a.name.cmp(&b.name))
    });
    for pod in pods {
        let w = &inputs.workloads[pod.workload];
        let mut reasons = Vec::new();
        let mut short = Shortfall::default();
        let mut home = None;
        for node in 0..nodes.len() {
            let why = refusals(inputs, &nodes, node, w, &mut short);
            if why.is_empty() {
                home = Some(node);
                break;
            }
            reasons.push(format!("{}: {}", nodes[node].name, why.join("; ")));
        }
        match home {
            Some(node) => put(&mut nodes, node, pod.workload, w, pod.name),
            None => refuse(&nodes, pod.workload, pod.name, reasons, short),
        }
    }
    Placement {
        scenario,
        nodes,
        unplaced,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use super::super::workloads::{AntiAffinity, Kind, Selector, Spread};
    use super::*;

    const GIB: u64 = 1 << 30;

    pub fn workload(name: &str, replicas: u32, cpu: u64, memory_gib: u64) -> Workload {
        Workload {
            kind: Kind::Deployment,
            namespace: "shop".into(),
            name: name.into(),
            source: format!("k8s/{name}.yaml#1"),
            min_replicas: replicas,
            max_replicas: replicas,
            requests: Requests {
                cpu_millis: cpu,
                memory_bytes: memory_gib * GIB,
            },
            labels: BTreeMap::from([("app".into(), name.into())]),
            anti_affinity: Vec::new(),
            spread: Vec::new(),
            config_key: None,
        }
    }

    fn selector(name: &str) -> Selector {
        Selector {
            match_labels: BTreeMap::from([("app".into(), name.into())]),
            expressions: Vec::new(),
        }
    }

    pub fn one_per_node(mut w: Workload) -> Workload {
        w.anti_affinity.push(AntiAffinity {
            domain: Domain::Node,
            selector: selector(&w.name),
        });
        w
    }

    pub fn spread_over_zones(mut w: Workload) -> Workload {
        w.spread.push(Spread {
            domain: Domain::Zone,
            max_skew: 1,
            selector: selector(&w.name),
        });
        w
    }

    pub fn inputs(nodes: u32, cpu: u64, memory_gib: u64, workloads: Vec<Workload>) -> Inputs {
        Inputs {
            groups: vec![Group {
                index: 0,
                name: "general".into(),
                instance_types: vec!["m6i.large"],
                allocatable: Allocatable {
                    cpu_millis: cpu,
                    memory_bytes: memory_gib * GIB,
                    pods: 10,
                },
                min: nodes,
                max: nodes * 2,
            }],
            workloads,
            zones: vec!["a".into(), "b".into(), "c".into()],
        }
    }

    #[test]
    fn requests_must_fit_allocatable() {
        let fits = inputs(2, 1000, 4, vec![workload("web", 2, 1000, 4)]);
        assert!(place(&fits, Scenario::Minimum).fits());
        let cpu = inputs(2, 1000, 4, vec![workload("web", 3, 1000, 1)]);
        let placement = place(&cpu, Scenario::Minimum);
        assert_eq!(placement.unplaced.len(), 1);
        assert_eq!(placement.unplaced[0].pod, "web-2");
        assert!(placement.unplaced[0].short.cpu && !placement.unplaced[0].short.memory);
        assert!(
            placement.unplaced[0].reasons[0].contains("CPU: 0m free, short 1000m"),
            "{:?}",
            placement.unplaced[0].reasons
        );
        let memory = inputs(1, 4000, 2, vec![workload("web", 1, 100, 3)]);
        let placement = place(&memory, Scenario::Minimum);
        assert!(placement.unplaced[0].short.memory);
        assert!(placement.unplaced[0].reasons[0].contains("short 1024Mi"));
    }

    #[test]
    fn pod_slots_are_a_limit() {
        let mut many = inputs(1, 100_000, 100, vec![workload("tiny", 11, 1, 0)]);
        assert_eq!(place(&many, Scenario::Minimum).unplaced.len(), 1);
        assert!(place(&many, Scenario::Minimum).unplaced[0].short.pods);
        many.groups[0].allocatable.pods = 11;
        assert!(place(&many, Scenario::Minimum).fits());
    }

    #[test]
    fn required_anti_affinity_puts_one_per_node() {
        // Plenty of CPU, but 3 pods that must not share a node need 3 nodes.
        let two = inputs(2, 10_000, 10, vec![one_per_node(workload("db", 3, 100, 1))]);
        let placement = place(&two, Scenario::Minimum);
        assert_eq!(placement.unplaced.len(), 1);
        assert!(placement.unplaced[0].short.rules);
        assert!(placement.unplaced[0].reasons[0].contains("anti-affinity: already holds db"));
        let three = inputs(3, 10_000, 10, vec![one_per_node(workload("db", 3, 100, 1))]);
        let placement = place(&three, Scenario::Minimum);
        assert!(placement.fits());
        assert!(placement.nodes.iter().all(|n| n.pods.len() == 1));
        // Without the rule the packer would stack them on one node.
        let free = inputs(2, 10_000, 10, vec![workload("db", 3, 100, 1)]);
        assert_eq!(place(&free, Scenario::Minimum).nodes[0].pods.len(), 3);
    }

    #[test]
    fn zone_spread_counts_zones_whose_nodes_are_full() {
        // Three small nodes (zones a, b, c) and one big node in zone a. Two spread pods
        // both fit only on the big node, but the second would make zone a hold 2 against
        // 0 in zones b and c: Kubernetes leaves it Pending, and so does the check.
        let mut two_groups = inputs(
            3,
            100,
            1,
            vec![spread_over_zones(workload("kafka", 2, 500, 1))],
        );
        let mut big = two_groups.groups[0].clone();
        big.index = 1;
        big.name = "big".into();
        big.min = 1;
        big.allocatable.cpu_millis = 10_000;
        big.allocatable.memory_bytes = 10 * GIB;
        two_groups.groups.push(big);
        let placement = place(&two_groups, Scenario::Minimum);
        assert_eq!(placement.unplaced.len(), 1, "{:?}", placement.nodes);
        let reasons = placement.unplaced[0].reasons.join("\n");
        assert!(
            reasons
                .contains("big-1: topology spread: its zone would hold 2 matching pods against 0"),
            "{reasons}"
        );
        assert!(placement.unplaced[0].short.rules);
        // Without the constraint both share the big node.
        two_groups.workloads[0].spread.clear();
        assert!(place(&two_groups, Scenario::Minimum).fits());
    }

    #[test]
    fn daemonsets_take_room_on_every_node() {
        let mut ds = workload("agent", 0, 600, 1);
        ds.kind = Kind::DaemonSet;
        let with = inputs(3, 1000, 4, vec![ds.clone(), workload("web", 3, 500, 1)]);
        let placement = place(&with, Scenario::Minimum);
        assert_eq!(placement.unplaced.len(), 3, "400m left on each node");
        assert!(placement.nodes.iter().all(|n| n.pods.len() == 1));
        let without = inputs(3, 1000, 4, vec![workload("web", 3, 500, 1)]);
        assert!(place(&without, Scenario::Minimum).fits());
    }

    #[test]
    fn the_peak_uses_max_nodes_and_hpa_maxima() {
        let mut web = workload("web", 2, 1000, 1);
        web.max_replicas = 6;
        let peak = inputs(2, 1000, 4, vec![web.clone()]);
        assert!(place(&peak, Scenario::Minimum).fits());
        let placement = place(&peak, Scenario::Peak);
        assert_eq!(placement.nodes.len(), 4);
        assert_eq!(
            placement.unplaced.len(),
            2,
            "6 pods of 1 CPU on 4 nodes of 1 CPU"
        );
    }
}
