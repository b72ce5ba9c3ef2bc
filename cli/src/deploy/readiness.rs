//! When a workload is ready, from the object the API returns (the rules `kubectl rollout
//! status` uses), and what its pods say is wrong while it is not.

use serde_json::Value;

/// A workload's rollout, as its status tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rollout {
    /// Every replica runs the current template and is ready (a Job: completed).
    Ready,
    /// Still going; the text says what it waits for.
    Progressing(String),
    /// It will not get there by itself (a Job failed, a Deployment's progress deadline passed).
    Failed(String),
}

/// The rollout state of a StatefulSet, Deployment, DaemonSet, Job or
/// CustomResourceDefinition; other kinds are ready once applied.
pub fn rollout(kind: &str, object: &Value) -> Rollout {
    let generation = object["metadata"]["generation"].as_i64().unwrap_or(0);
    let status = &object["status"];
    let observed = status["observedGeneration"].as_i64().unwrap_or(-1);
    // A Job's status has no observedGeneration, and kinds without a controller no status.
    let has_controller = matches!(kind, "Deployment" | "StatefulSet" | "DaemonSet");
    let waits_for_generation = has_controller && observed < generation;
    if waits_for_generation {
        return Rollout::Progressing("the controller has not seen the new spec yet".into());
    }
    let count = |v: &Value| v.as_i64().unwrap_or(0);
    let desired = object["spec"]["replicas"].as_i64().unwrap_or(1);
    match kind {
        "Deployment" => deployment(status, desired, count),
        "StatefulSet" => stateful_set(object, status, desired, count),
        "DaemonSet" => {
            let wanted = count(&status["desiredNumberScheduled"]);
            let updated = count(&status["updatedNumberScheduled"]);
            let available = count(&status["numberAvailable"]);
            if updated < wanted || available < wanted {
                Rollout::Progressing(format!(
                    "{updated} of {wanted} updated, {available} available"
                ))
            } else {
                Rollout::Ready
            }
        }
        "Job" => job(object, status, count),
        "CustomResourceDefinition" => definition(status),
        _ => Rollout::Ready,
    }
}

/// A CustomResourceDefinition is ready once the API serves its kind (Established); its
/// names refused (NamesAccepted False: another definition holds them) never will be.
fn definition(status: &Value) -> Rollout {
    let conditions = status["conditions"].as_array();
    let find = |kind: &str| conditions.and_then(|cs| cs.iter().find(|c| c["type"] == kind));
    if let Some(names) = find("NamesAccepted").filter(|c| c["status"] == "False") {
        return Rollout::Failed(format!(
            "its names are not accepted: {}",
            names["message"].as_str().unwrap_or("no reason given")
        ));
    }
    match find("Established") {
        Some(c) if c["status"] == "True" => Rollout::Ready,
        _ => Rollout::Progressing("not established yet".into()),
    }
}

fn condition<'a>(status: &'a Value, kind: &str) -> Option<&'a Value> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind && c["status"] == "True")
}

fn deployment(status: &Value, desired: i64, count: impl Fn(&Value) -> i64) -> Rollout {
    let progressing = status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Progressing"));
    if let Some(c) = progressing {
        if c["reason"] == "ProgressDeadlineExceeded" {
            return Rollout::Failed(format!(
                "progress deadline exceeded: {}",
                c["message"].as_str().unwrap_or("no progress")
            ));
        }
    }
    let updated = count(&status["updatedReplicas"]);
    let total = count(&status["replicas"]);
    let available = count(&status["availableReplicas"]);
    if updated < desired {
        Rollout::Progressing(format!("{updated} of {desired} replicas updated"))
    } else if total > updated {
        Rollout::Progressing(format!(
            "{} old replicas pending termination",
            total - updated
        ))
    } else if available < updated {
        Rollout::Progressing(format!(
            "{available} of {updated} updated replicas available"
        ))
    } else {
        Rollout::Ready
    }
}

fn stateful_set(
    object: &Value,
    status: &Value,
    desired: i64,
    count: impl Fn(&Value) -> i64,
) -> Rollout {
    let ready = count(&status["readyReplicas"]);
    if ready < desired {
        return Rollout::Progressing(format!("{ready} of {desired} pods ready"));
    }
    let strategy = &object["spec"]["updateStrategy"];
    if strategy["type"] == "OnDelete" {
        return Rollout::Ready;
    }
    if let Some(partition) = strategy["rollingUpdate"]["partition"]
        .as_i64()
        .filter(|p| *p > 0)
    {
        let updated = count(&status["updatedReplicas"]);
        let wanted = desired - partition;
        return if updated < wanted {
            Rollout::Progressing(format!(
                "{updated} of {wanted} pods above the partition updated"
            ))
        } else {
            Rollout::Ready
        };
    }
    let current = status["currentRevision"].as_str().unwrap_or_default();
    let update = status["updateRevision"].as_str().unwrap_or_default();
    if current != update {
        let updated = count(&status["updatedReplicas"]);
        Rollout::Progressing(format!("{updated} of {desired} pods on revision {update}"))
    } else {
        Rollout::Ready
    }
}

fn job(object: &Value, status: &Value, count: impl Fn(&Value) -> i64) -> Rollout {
    if condition(status, "Complete").is_some() {
        return Rollout::Ready;
    }
    if let Some(c) = condition(status, "Failed") {
        return Rollout::Failed(format!(
            "{}: {}",
            c["reason"].as_str().unwrap_or("Failed"),
            c["message"].as_str().unwrap_or("the job failed")
        ));
    }
    let completions = object["spec"]["completions"].as_i64().unwrap_or(1);
    let failed = count(&status["failed"]);
    Rollout::Progressing(format!(
        "{} of {completions} completed{}",
        count(&status["succeeded"]),
        if failed > 0 {
            format!(", {failed} attempts failed")
        } else {
            String::new()
        }
    ))
}

/// What the pods say is wrong: containers waiting on an image pull, a crash loop or
/// missing configuration, and containers that last died with an error. One line each.
pub fn pod_problems(pods: &[Value]) -> Vec<String> {
    const WAITING: [&str; 6] = [
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
    ];
    let mut problems = Vec::new();
    for pod in pods {
        let name = pod["metadata"]["name"].as_str().unwrap_or("?");
        let status = &pod["status"];
        if status["phase"] == "Pending" {
            if let Some(c) = status["conditions"].as_array().and_then(|cs| {
                cs.iter()
                    .find(|c| c["type"] == "PodScheduled" && c["status"] == "False")
            }) {
                problems.push(format!(
                    "pod {name}: not scheduled: {}",
                    c["message"].as_str().unwrap_or("no node fits")
                ));
            }
        }
        let containers = ["initContainerStatuses", "containerStatuses"]
            .iter()
            .filter_map(|k| status[k].as_array())
            .flatten();
        for container in containers {
            let cname = container["name"].as_str().unwrap_or("?");
            let waiting = &container["state"]["waiting"];
            if let Some(reason) = waiting["reason"].as_str().filter(|r| WAITING.contains(r)) {
                let message = waiting["message"].as_str().unwrap_or_default();
                let last = &container["lastState"]["terminated"];
                let exit = last["exitCode"]
                    .as_i64()
                    .map(|c| {
                        format!(
                            " (last exit {c}{})",
                            last["reason"]
                                .as_str()
                                .map(|r| format!(", {r}"))
                                .unwrap_or_default()
                        )
                    })
                    .unwrap_or_default();
                problems.push(format!(
                    "pod {name}: container {cname}: {reason}{exit}{}",
                    if message.is_empty() {
                        String::new()
                    } else {
                        format!(": {message}")
                    }
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(generation: i64, spec: i64, status: Value) -> Value {
        json!({"metadata": {"generation": generation}, "spec": {"replicas": spec}, "status": status})
    }

    #[test]
    fn a_definition_is_ready_once_established_and_fails_when_its_names_are_taken() {
        let crd = |conditions: Value| json!({"metadata": {"generation": 1}, "status": {"conditions": conditions}});
        let kind = "CustomResourceDefinition";
        // Just created: no status yet.
        assert!(matches!(
            rollout(kind, &json!({"metadata": {"generation": 1}})),
            Rollout::Progressing(_)
        ));
        assert!(matches!(
            rollout(
                kind,
                &crd(json!([{"type": "NamesAccepted", "status": "True"}, {"type": "Established", "status": "False"}]))
            ),
            Rollout::Progressing(why) if why.contains("not established")
        ));
        assert_eq!(
            rollout(
                kind,
                &crd(
                    json!([{"type": "NamesAccepted", "status": "True"}, {"type": "Established", "status": "True"}])
                )
            ),
            Rollout::Ready
        );
        assert!(matches!(
            rollout(
                kind,
                &crd(json!([{"type": "NamesAccepted", "status": "False", "message": "\"ingressclassparams\" is already in use"}]))
            ),
            Rollout::Failed(why) if why.contains("already in use")
        ));
    }

    #[test]
    fn a_deployment_is_ready_when_every_replica_is_new_and_available() {
        let ready = deployment(
            3,
            2,
            json!({"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}),
        );
        assert_eq!(rollout("Deployment", &ready), Rollout::Ready);

        let unseen = deployment(
            4,
            2,
            json!({"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}),
        );
        assert!(
            matches!(rollout("Deployment", &unseen), Rollout::Progressing(m) if m.contains("not seen"))
        );

        let half = deployment(
            3,
            2,
            json!({"observedGeneration": 3, "replicas": 3, "updatedReplicas": 1, "availableReplicas": 2}),
        );
        assert_eq!(
            rollout("Deployment", &half),
            Rollout::Progressing("1 of 2 replicas updated".into())
        );

        let old_left = deployment(
            3,
            2,
            json!({"observedGeneration": 3, "replicas": 3, "updatedReplicas": 2, "availableReplicas": 2}),
        );
        assert_eq!(
            rollout("Deployment", &old_left),
            Rollout::Progressing("1 old replicas pending termination".into())
        );

        let unavailable = deployment(
            3,
            2,
            json!({"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 1}),
        );
        assert_eq!(
            rollout("Deployment", &unavailable),
            Rollout::Progressing("1 of 2 updated replicas available".into())
        );

        let stuck = deployment(
            3,
            2,
            json!({"observedGeneration": 3, "replicas": 2, "updatedReplicas": 1,
            "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                            "message": "ReplicaSet \"shop-app-5d\" has timed out progressing."}]}),
        );
        assert!(
            matches!(rollout("Deployment", &stuck), Rollout::Failed(m) if m.contains("timed out"))
        );
    }

    #[test]
    fn a_stateful_set_is_ready_when_all_pods_are_ready_on_the_update_revision() {
        let sts = |status: Value, strategy: Value| json!({"metadata": {"generation": 2}, "spec": {"replicas": 3, "updateStrategy": strategy}, "status": status});
        let rolling = json!({"type": "RollingUpdate"});
        let ready = sts(
            json!({"observedGeneration": 2, "readyReplicas": 3, "currentRevision": "r2", "updateRevision": "r2"}),
            rolling.clone(),
        );
        assert_eq!(rollout("StatefulSet", &ready), Rollout::Ready);
        let rolling_out = sts(
            json!({"observedGeneration": 2, "readyReplicas": 3, "updatedReplicas": 1, "currentRevision": "r1", "updateRevision": "r2"}),
            rolling.clone(),
        );
        assert_eq!(
            rollout("StatefulSet", &rolling_out),
            Rollout::Progressing("1 of 3 pods on revision r2".into())
        );
        let starting = sts(
            json!({"observedGeneration": 2, "readyReplicas": 1}),
            rolling,
        );
        assert_eq!(
            rollout("StatefulSet", &starting),
            Rollout::Progressing("1 of 3 pods ready".into())
        );
        let partitioned = sts(
            json!({"observedGeneration": 2, "readyReplicas": 3, "updatedReplicas": 1, "currentRevision": "r1", "updateRevision": "r2"}),
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}),
        );
        assert_eq!(rollout("StatefulSet", &partitioned), Rollout::Ready);
        let on_delete = sts(
            json!({"observedGeneration": 2, "readyReplicas": 3, "currentRevision": "r1", "updateRevision": "r2"}),
            json!({"type": "OnDelete"}),
        );
        assert_eq!(rollout("StatefulSet", &on_delete), Rollout::Ready);
    }

    #[test]
    fn a_job_is_ready_when_complete_and_failed_when_failed() {
        let job = |status: Value| json!({"metadata": {"generation": 1}, "spec": {"completions": 1}, "status": status});
        assert_eq!(
            rollout(
                "Job",
                &job(
                    json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]})
                )
            ),
            Rollout::Ready
        );
        assert_eq!(
            rollout(
                "Job",
                &job(
                    json!({"failed": 2, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]})
                )
            ),
            Rollout::Failed(
                "BackoffLimitExceeded: Job has reached the specified backoff limit".into()
            )
        );
        assert_eq!(
            rollout("Job", &job(json!({"active": 1, "failed": 1}))),
            Rollout::Progressing("0 of 1 completed, 1 attempts failed".into())
        );
        // A Job's status has no observedGeneration; that must not hold it back.
        assert_eq!(
            rollout(
                "Job",
                &json!({"metadata": {"generation": 1}, "status": {"conditions": [{"type": "Complete", "status": "True"}]}})
            ),
            Rollout::Ready
        );
    }

    #[test]
    fn other_kinds_are_ready_once_applied() {
        assert_eq!(
            rollout("ConfigMap", &json!({"metadata": {"name": "x"}})),
            Rollout::Ready
        );
    }

    #[test]
    fn names_what_the_pods_are_stuck_on() {
        let pods = vec![
            json!({"metadata": {"name": "shop-app-1"}, "status": {"phase": "Pending", "containerStatuses": [
                {"name": "app", "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"x@sha256:00\""}}}]}}),
            json!({"metadata": {"name": "shop-app-2"}, "status": {"phase": "Running", "containerStatuses": [
                {"name": "app", "state": {"waiting": {"reason": "CrashLoopBackOff"}}, "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}}),
            json!({"metadata": {"name": "shop-postgres-2"}, "status": {"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "False", "message": "0/3 nodes are available: 3 Insufficient memory."}]}}),
            json!({"metadata": {"name": "fine"}, "status": {"phase": "Running", "containerStatuses": [
                {"name": "app", "state": {"running": {}}}, {"name": "side", "state": {"waiting": {"reason": "ContainerCreating"}}}]}}),
        ];
        assert_eq!(
            pod_problems(&pods),
            vec![
                "pod shop-app-1: container app: ImagePullBackOff: Back-off pulling image \"x@sha256:00\"".to_owned(),
                "pod shop-app-2: container app: CrashLoopBackOff (last exit 1, Error)".to_owned(),
                "pod shop-postgres-2: not scheduled: 0/3 nodes are available: 3 Insufficient memory.".to_owned(),
            ]
        );
    }
}
