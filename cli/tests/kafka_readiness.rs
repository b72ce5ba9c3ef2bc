//! Kafka's rendered readiness probe (templates/k8s/kafka.yaml.hbs, `readiness.sh` in the
//! shop-kafka ConfigMap), run for real with `sh`.
//!
//! What runs here: the script's decision (`sh readiness.sh decide <id> <brokers> <urp>`) on
//! the outputs of the two tools it calls, written in the tools' own formats (Kafka 3.9's
//! `TopicCommand.PartitionDescription.printDescription` for `kafka-topics.sh --describe
//! --under-replicated-partitions`, `BrokerApiVersionsCommand` with `Node.toString` for
//! `kafka-broker-api-versions.sh`), and the probe itself where the tools are missing (it
//! must say not ready). What cannot run here: the tools themselves need the apache/kafka
//! image's jars and a KRaft cluster to answer them (tansu speaks the protocol but is not
//! Kafka's controller: no ISR to fall out of). The probe's timing against the StatefulSet's
//! rolling update is checked on the rendered manifests.

mod common;

use std::{path::Path, process::Command};

use common::{
    manifests::{Doc, Manifests},
    Project,
};

/// A line of `kafka-topics.sh --describe --under-replicated-partitions` (Kafka 3.9).
fn urp(topic: &str, partition: u32, leader: &str, replicas: &str, isr: &str) -> String {
    format!(
        "\tTopic: {topic}\tPartition: {partition}\tLeader: {leader}\tReplicas: {replicas}\tIsr: {isr}\tElr: N/A\tLastKnownElr: N/A\n"
    )
}

/// A broker of `kafka-broker-api-versions.sh` (the first line of its entry).
fn broker(id: u32, answered: bool) -> String {
    let host = format!("shop-kafka-{id}.shop-kafka-headless.shop.svc.cluster.local:9092");
    if answered {
        format!("{host} (id: {id} rack: null) -> (\n\tProduce(0): 0 to 11 [usable: 11],\n\tFetch(1): 0 to 17 [usable: 17]\n)\n")
    } else {
        format!("{host} (id: {id} rack: null) -> ERROR: org.apache.kafka.common.errors.DisconnectException\n")
    }
}

struct Script {
    dir: tempfile::TempDir,
}

impl Script {
    fn rendered(doc: &Doc) -> Script {
        let dir = tempfile::tempdir().unwrap();
        let text = doc.value["data"]["readiness.sh"]
            .as_str()
            .expect("shop-kafka has readiness.sh");
        std::fs::write(dir.path().join("readiness.sh"), text).unwrap();
        Script { dir }
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("readiness.sh")
    }

    /// `sh readiness.sh decide <id> <brokers> <urp>` with every shell there is of the two
    /// the image has (sh, bash): exit status and output, which must agree.
    fn decide(&self, id: u32, brokers: &str, under_replicated: &str) -> (bool, String) {
        let b = self.dir.path().join("brokers");
        let u = self.dir.path().join("urp");
        std::fs::write(&b, brokers).unwrap();
        std::fs::write(&u, under_replicated).unwrap();
        let mut results = Vec::new();
        for shell in ["sh", "bash"] {
            if shell == "bash" && !Path::new("/bin/bash").exists() {
                continue;
            }
            let out = Command::new(shell)
                .arg(self.path())
                .arg("decide")
                .arg(id.to_string())
                .arg(&b)
                .arg(&u)
                .output()
                .unwrap();
            results.push((
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned()
                    + &String::from_utf8_lossy(&out.stderr),
            ));
        }
        assert!(
            results.windows(2).all(|w| w[0] == w[1]),
            "sh and bash disagree: {results:?}"
        );
        results.remove(0)
    }
}

fn staging() -> Manifests {
    let project = Project::new();
    Manifests::render(&project, "staging")
}

#[test]
fn a_broker_is_ready_only_when_registered_and_in_the_isr_of_every_partition_it_replicates() {
    let manifests = staging();
    let script = Script::rendered(manifests.get("ConfigMap", "shop-kafka"));
    let all = broker(0, true) + &broker(1, true) + &broker(2, true);

    // In sync everywhere: nothing under-replicated.
    assert_eq!(script.decide(1, &all, ""), (true, String::new()));

    // Broker 1 restarted and still catching up on two partitions: not ready, and it says
    // which.
    let behind = urp("order-events", 2, "0", "0,1,2", "0,2")
        + &urp("__consumer_offsets", 17, "2", "2,1,0", "2,0");
    let (ready, why) = script.decide(1, &all, &behind);
    assert!(!ready, "a broker outside the ISR must not be ready");
    assert!(
        why.contains("order-events-2") && why.contains("__consumer_offsets-17"),
        "{why}"
    );

    // Another broker (2) is down and out of every ISR: broker 1 is in sync, so ready (or
    // one lost broker would take every other out of the Service).
    let two_down =
        urp("order-events", 0, "1", "1,2,0", "1,0") + &urp("order-events", 4, "0", "0,1,2", "0,1");
    let without_2 = broker(0, true) + &broker(1, true);
    assert_eq!(
        script.decide(1, &without_2, &two_down),
        (true, String::new())
    );
    assert!(!script.decide(2, &without_2, &two_down).0);

    // Not in the metadata (fenced, or not yet registered): not ready, even with nothing
    // under-replicated.
    let (ready, why) = script.decide(2, &without_2, "");
    assert!(!ready);
    assert!(why.contains("not registered"), "{why}");

    // Another broker not answering its ApiVersions does not make this one unready.
    let two_silent = broker(0, true) + &broker(1, true) + &broker(2, false);
    assert!(script.decide(1, &two_silent, "").0);

    // Ids are whole numbers: 1 is not 10, 11 or 21 (in the broker list or the replicas).
    let many = broker(10, true) + &broker(11, true) + &broker(21, true);
    assert!(!script.decide(1, &many, "").0);
    let tens = urp("order-events", 3, "10", "10,11,21", "10");
    assert!(
        script
            .decide(1, &(all.clone() + &broker(10, true)), &tens)
            .0
    );
    assert!(!script.decide(11, &many, &tens).0);

    // A partition without a leader whose ISR lacks this broker.
    let leaderless = urp("order-events", 5, "none", "1,2,0", "2");
    assert!(!script.decide(1, &all, &leaderless).0);
}

#[test]
fn without_the_tools_the_probe_says_not_ready() {
    let manifests = staging();
    let script = Script::rendered(manifests.get("ConfigMap", "shop-kafka"));
    // No /opt/kafka here: the probe's real path up to its first tool, which must fail
    // closed (and quickly) rather than report ready.
    assert!(!Path::new("/opt/kafka/bin/kafka-topics.sh").exists());
    let out = Command::new("sh")
        .arg(script.path())
        .env("HOSTNAME", "shop-kafka-1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("the broker does not answer on localhost:9092"),
        "{text}"
    );
}

#[test]
fn the_rollout_waits_for_each_broker_to_be_back_in_sync() {
    let manifests = staging();
    let sts = manifests.get("StatefulSet", "shop-kafka");
    let kafka = sts.container("kafka");
    let probe = &kafka["readinessProbe"];
    assert_eq!(
        probe["exec"]["command"],
        serde_json::json!(["sh", "/etc/kafka/readiness.sh"]),
        "readiness must run the script, not a TCP check"
    );
    // The script is where the probe runs it: the ConfigMap mounted at /etc/kafka.
    let mounted = kafka["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["mountPath"] == "/etc/kafka" && m["name"] == "config");
    let volume_is_configmap = sts.pod_spec().unwrap()["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v["name"] == "config" && v["configMap"]["name"] == "shop-kafka");
    assert!(mounted && volume_is_configmap);

    // The probe's timeout covers both tools' own timeouts (each `timeout N`), so a slow
    // tool is reported by the script, not cut off by the kubelet.
    let script = manifests.config_file("shop-kafka", "readiness.sh");
    let tool_timeouts: u64 = script
        .split("timeout ")
        .skip(1)
        .filter_map(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    assert!(tool_timeouts > 0, "the tools run under `timeout`");
    let probe_timeout = probe["timeoutSeconds"].as_u64().unwrap();
    assert!(
        probe_timeout > tool_timeouts,
        "readinessProbe.timeoutSeconds {probe_timeout} must exceed the tools' {tool_timeouts} s"
    );
    assert!(probe["successThreshold"].as_u64().unwrap_or(1) == 1);

    // One pod at a time: a rolling update without maxUnavailable (the default, 1) waits for
    // each updated pod to be Ready before the next; Parallel pod management changes only
    // scaling, not updates.
    let strategy = &sts.value["spec"]["updateStrategy"];
    assert_eq!(strategy["type"], "RollingUpdate");
    assert!(
        strategy["rollingUpdate"]["maxUnavailable"].is_null(),
        "{strategy}"
    );
    // Voluntary disruptions (drains) take one broker at a time, counting an unready one.
    let pdb = manifests.get("PodDisruptionBudget", "shop-kafka");
    assert_eq!(pdb.value["spec"]["maxUnavailable"], 1);
}
