//! The Kubernetes manifests of templates/k8s, rendered by the real `shopctl render` for
//! every environment, checked offline three ways: parsed, with the facts that matter
//! asserted (labels, secrets, pod security, Patroni's sync mode, Kafka's replication,
//! disruption budgets, default-deny); validated against the Kubernetes OpenAPI schemas of
//! the environment's version with kubernetes-validate; scanned by checkov. No Kubernetes
//! API server runs here: nothing is applied to a cluster (docs/k8s.md).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::manifests::{containers, parse, yaml_files, yaml_value, Doc};
use common::Project;
use predicates::prelude::*;
use serde_json::{json, Value};

/// The environments and what their config says the manifests must show.
const ENVS: &[Expect] = &[
    Expect {
        env: "local",
        patroni: 3,
        sync_count: 2,
        kafka_rf: 1,
        kafka_min_isr: 1,
        api_server_service_ip: "172.20.0.1",
    },
    Expect {
        env: "staging",
        patroni: 3,
        sync_count: 2,
        kafka_rf: 3,
        kafka_min_isr: 2,
        api_server_service_ip: "172.20.0.1",
    },
    Expect {
        env: "production",
        patroni: 3,
        sync_count: 2,
        kafka_rf: 3,
        kafka_min_isr: 2,
        api_server_service_ip: "172.20.0.1",
    },
];

struct Expect {
    env: &'static str,
    patroni: u64,
    sync_count: u64,
    kafka_rf: u64,
    kafka_min_isr: u64,
    /// The `kubernetes` Service's IP: the first host of eks.service_cidr (default 172.20.0.0/16).
    api_server_service_ip: &'static str,
}

/// The Secrets the pods reference, which the deployer generates (docs/k8s.md lists them).
const DEPLOYER_SECRETS: &[&str] = &[
    "aws-load-balancer-tls",
    "shop-app",
    "shop-postgres-credentials",
    "shop-rabbitmq-erlang-cookie",
    "shop-rabbitmq-users",
    "shop-redis",
];

/// The Kubernetes version the manifests are validated against: the environments'
/// `eks.version`. The pinned kubernetes-validate (1.37.0, tests/requirements.txt) bundles
/// the schemas of Kubernetes 1.25 to 1.37, 1.33 among them, so the version itself is used,
/// not an older stand-in. kubernetes-validate would silently fall back to the newest older
/// schema it has; the test instead requires every document to report this version, and
/// fails when an environment's eks.version moves away from it.
const KUBERNETES_VERSION: &str = "1.33";

/// Renders every environment with the real binary; returns `out` (`out/<env>/k8s`).
fn render_all(project: &Project) -> PathBuf {
    project.render_all()
}

/// The rendered manifests of a `k8s/` tree: the app's namespace's, then the cluster
/// phase's under `cluster/` (the controllers in kube-system).
fn k8s_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = yaml_files(dir);
    if dir.join("cluster").is_dir() {
        files.extend(yaml_files(&dir.join("cluster")));
    }
    files
}

fn rendered(out: &Path, env: &str) -> (Vec<PathBuf>, Vec<Doc>) {
    let k8s = out.join(env).join("k8s");
    let files = k8s_files(&k8s);
    assert!(files.len() >= 10, "too few manifests for {env}");
    let mut docs = parse(&files);
    // Named by their path under k8s/: `cluster/…` for the cluster phase's.
    let cluster_dir = k8s.join("cluster");
    let cluster_files = if cluster_dir.is_dir() {
        yaml_files(&cluster_dir)
    } else {
        Vec::new()
    };
    let cluster: Vec<String> = cluster_files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for doc in &mut docs {
        if cluster.contains(&doc.file) {
            doc.file = format!("cluster/{}", doc.file);
        }
    }
    (files, docs)
}

fn pod_labels(doc: &Doc) -> Option<&Value> {
    match doc.kind() {
        "Deployment" | "StatefulSet" | "Job" => {
            Some(&doc.value["spec"]["template"]["metadata"]["labels"])
        }
        "CronJob" => {
            Some(&doc.value["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"])
        }
        _ => None,
    }
}

fn find<'a>(docs: &'a [Doc], kind: &str, name: &str) -> Option<&'a Doc> {
    docs.iter().find(|d| d.kind() == kind && d.name() == name)
}

/// Whether a label selector's matchLabels all hold in `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    let Some(wanted) = selector["matchLabels"].as_object() else {
        return false;
    };
    !wanted.is_empty() && wanted.iter().all(|(k, v)| labels[k] == *v)
}

/// `key=value` lines of a properties file.
fn properties(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// Every problem with the rendered manifests of one environment; empty when they state
/// what the design requires. Each check is a separate finding so a broken manifest names
/// exactly what broke (see `structural_checks_catch_broken_manifests`).
fn problems(docs: &[Doc], expect: &Expect) -> Vec<String> {
    let env = expect.env;
    let mut problems = Vec::new();
    let mut bad = |p: String| problems.push(p);

    // 1. Labels: the prune label and the recommended ones on every object; a namespace on
    //    every namespaced object.
    for doc in docs {
        let labels = &doc.value["metadata"]["labels"];
        for (key, want) in [
            ("app.kubernetes.io/managed-by", Some("shopctl")),
            ("app.kubernetes.io/part-of", Some("shop")),
            ("shop.example.com/environment", Some(env)),
            ("app.kubernetes.io/name", None),
        ] {
            match (labels[key].as_str(), want) {
                (Some(v), Some(w)) if v == w => {}
                (Some(v), None) if !v.is_empty() => {}
                (got, _) => bad(format!("{}: label {key} is {got:?}", doc.id())),
            }
        }
        if labels["app.kubernetes.io/component"].as_str().is_none() {
            bad(format!(
                "{}: no app.kubernetes.io/component label",
                doc.id()
            ));
        }
        let cluster_scoped = CLUSTER_SCOPED.contains(&doc.kind());
        let namespace = match doc.file.starts_with("cluster/") {
            true => "kube-system",
            false => "shop",
        };
        if !cluster_scoped && doc.value["metadata"]["namespace"] != namespace {
            bad(format!("{}: not in namespace {namespace}", doc.id()));
        }
    }

    // 2. Secrets are referenced, never rendered.
    for doc in docs.iter().filter(|d| d.kind() == "Secret") {
        for field in ["data", "stringData"] {
            if doc.value[field].as_object().is_some_and(|m| !m.is_empty()) {
                bad(format!("{}: a Secret with {field} is rendered", doc.id()));
            }
        }
    }
    for doc in docs {
        let mut names = Vec::new();
        collect_secret_refs(&doc.value, &mut names);
        for name in names {
            if !DEPLOYER_SECRETS.contains(&name.as_str()) {
                bad(format!(
                    "{}: references Secret {name}, which the deployer does not generate",
                    doc.id()
                ));
            }
        }
    }

    // 3. Pod security: every container non-root, read-only root, no escalation, no
    //    capabilities; the pod's seccomp profile RuntimeDefault.
    for doc in docs {
        let Some(spec) = doc.pod_spec() else { continue };
        let pod = &spec["securityContext"];
        if pod["seccompProfile"]["type"] != "RuntimeDefault" {
            bad(format!(
                "{}: pod seccompProfile is not RuntimeDefault",
                doc.id()
            ));
        }
        for c in containers(spec) {
            let name = c["name"].as_str().unwrap_or("?");
            let sc = &c["securityContext"];
            let non_root = sc["runAsNonRoot"] == true
                || (sc["runAsNonRoot"].is_null() && pod["runAsNonRoot"] == true);
            let uid = sc["runAsUser"].as_u64().or(pod["runAsUser"].as_u64());
            if !non_root || uid == Some(0) {
                bad(format!("{} container {name}: may run as root", doc.id()));
            }
            if sc["readOnlyRootFilesystem"] != true {
                bad(format!(
                    "{} container {name}: root filesystem is writable",
                    doc.id()
                ));
            }
            if sc["allowPrivilegeEscalation"] != false {
                bad(format!(
                    "{} container {name}: privilege escalation allowed",
                    doc.id()
                ));
            }
            if sc["capabilities"]["drop"] != json!(["ALL"]) || !sc["capabilities"]["add"].is_null()
            {
                bad(format!(
                    "{} container {name}: capabilities not dropped",
                    doc.id()
                ));
            }
            if c["resources"]["limits"]["memory"].is_null()
                || c["resources"]["requests"]["cpu"].is_null()
            {
                bad(format!("{} container {name}: no resources", doc.id()));
            }
            if c["image"]
                .as_str()
                .is_none_or(|i| i.ends_with(":latest") || !i.contains(':'))
            {
                bad(format!("{} container {name}: image not pinned", doc.id()));
            }
        }
    }

    // 4. Patroni: the configured member count, synchronous mode strict with the count
    //    local uses, the Kubernetes DCS on Endpoints.
    match find(docs, "StatefulSet", "shop-postgres") {
        None => bad("no StatefulSet shop-postgres".into()),
        Some(sts) => {
            if sts.value["spec"]["replicas"] != expect.patroni {
                bad(format!(
                    "shop-postgres has {} replicas",
                    sts.value["spec"]["replicas"]
                ));
            }
            let env_vars = &sts.value["spec"]["template"]["spec"]["containers"][0]["env"];
            let var = |name: &str| {
                env_vars
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|e| e["name"] == name)
                    .map(|e| e["value"].clone())
            };
            if var("PATRONI_KUBERNETES_USE_ENDPOINTS") != Some(json!("true")) {
                bad("Patroni does not use Endpoints as its DCS".into());
            }
            if var("PATRONI_KUBERNETES_LEADER_LABEL_VALUE") != Some(json!("primary")) {
                bad("Patroni's leader label value is not `primary`".into());
            }
        }
    }
    match find(docs, "ConfigMap", "shop-postgres") {
        None => bad("no ConfigMap shop-postgres".into()),
        Some(cm) => {
            let patroni = yaml_value(cm.value["data"]["patroni.yml"].as_str().unwrap_or(""));
            let dcs = &patroni["bootstrap"]["dcs"];
            if dcs["synchronous_mode"] != true || dcs["synchronous_mode_strict"] != true {
                bad(format!(
                    "Patroni synchronous mode is not strict: {} / {}",
                    dcs["synchronous_mode"], dcs["synchronous_mode_strict"]
                ));
            }
            if dcs["synchronous_node_count"] != expect.sync_count {
                bad(format!(
                    "synchronous_node_count is {}",
                    dcs["synchronous_node_count"]
                ));
            }
            if dcs["postgresql"]["use_pg_rewind"] != true {
                bad("use_pg_rewind is off".into());
            }
            let archive = &dcs["postgresql"]["parameters"]["archive_command"];
            if archive
                .as_str()
                .is_none_or(|c| !c.contains("wal-g wal-push"))
            {
                bad(format!("WAL is not archived with WAL-G: {archive}"));
            }
        }
    }
    // The primary and replica Services select Patroni's role label.
    for (service, role) in [
        ("shop-postgres-primary", "primary"),
        ("shop-postgres-replica", "replica"),
    ] {
        match find(docs, "Service", service) {
            Some(s) if s.value["spec"]["selector"]["role"] == role => {}
            _ => bad(format!("Service {service} does not select role={role}")),
        }
    }
    // Backups: a scheduled base backup, and S3 access through IRSA, never keys.
    if find(docs, "CronJob", "shop-postgres-base-backup").is_none() {
        bad("no base backup CronJob".into());
    }
    let sa = find(docs, "ServiceAccount", "shop-postgres");
    let arn = format!("arn:aws:iam::000000000000:role/shop-{env}-postgres-backup");
    if sa.is_none_or(|s| {
        s.value["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] != arn.as_str()
    }) {
        bad("the PostgreSQL service account does not carry the backup role (IRSA)".into());
    }
    let app_sa = find(docs, "ServiceAccount", "shop-app");
    let arn = format!("arn:aws:iam::000000000000:role/shop-{env}-app");
    if app_sa.is_none_or(|s| {
        s.value["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] != arn.as_str()
    }) {
        bad("the app's service account does not carry the app role (IRSA)".into());
    }
    let text = docs.iter().map(|d| d.value.to_string()).collect::<String>();
    if text.contains("AWS_ACCESS_KEY_ID") || text.contains("AWS_SECRET_ACCESS_KEY") {
        bad("AWS keys are passed to a pod".into());
    }

    // 5. Kafka: replication min(3, nodes), min.insync.replicas min(2, that), and the
    //    topic created with them.
    match find(docs, "ConfigMap", "shop-kafka") {
        None => bad("no ConfigMap shop-kafka".into()),
        Some(cm) => {
            let p = properties(cm.value["data"]["server.properties"].as_str().unwrap_or(""));
            let get = |k: &str| p.get(k).cloned().unwrap_or_default();
            if get("process.roles") != "broker,controller" {
                bad(format!(
                    "Kafka process.roles is {:?}, not KRaft combined",
                    get("process.roles")
                ));
            }
            if get("min.insync.replicas") != expect.kafka_min_isr.to_string() {
                bad(format!(
                    "Kafka min.insync.replicas is {:?}",
                    get("min.insync.replicas")
                ));
            }
            if get("default.replication.factor") != expect.kafka_rf.to_string() {
                bad(format!(
                    "Kafka default.replication.factor is {:?}",
                    get("default.replication.factor")
                ));
            }
        }
    }
    match find(docs, "Job", "shop-kafka-topics") {
        None => bad("no topics Job".into()),
        Some(job) => {
            let args =
                job.value["spec"]["template"]["spec"]["containers"][0]["command"].to_string();
            for want in [
                "\"--if-not-exists\"".to_owned(),
                "\"order-events\"".to_owned(),
                format!("\"--replication-factor\",\"{}\"", expect.kafka_rf),
                format!("\"min.insync.replicas={}\"", expect.kafka_min_isr),
            ] {
                if !args.contains(&want) {
                    bad(format!("the topics Job lacks {want}: {args}"));
                }
            }
        }
    }

    // 6. Every Deployment and StatefulSet has exactly one PodDisruptionBudget selecting its
    //    pods.
    let pdbs: Vec<&Doc> = docs
        .iter()
        .filter(|d| d.kind() == "PodDisruptionBudget")
        .collect();
    for doc in docs
        .iter()
        .filter(|d| matches!(d.kind(), "Deployment" | "StatefulSet"))
    {
        let labels = pod_labels(doc).unwrap();
        let n = pdbs
            .iter()
            .filter(|p| selects(&p.value["spec"]["selector"], labels))
            .count();
        if n != 1 {
            bad(format!(
                "{}: {n} PodDisruptionBudgets select its pods",
                doc.id()
            ));
        }
    }

    // 7. A default-deny NetworkPolicy: every pod, both directions, no rule.
    let deny = docs.iter().any(|d| {
        d.kind() == "NetworkPolicy"
            && d.value["spec"]["podSelector"] == json!({})
            && d.value["spec"]["policyTypes"] == json!(["Ingress", "Egress"])
            && d.value["spec"]["ingress"].is_null()
            && d.value["spec"]["egress"].is_null()
    });
    if !deny {
        bad("no default-deny NetworkPolicy".into());
    }

    // 8. Pods that talk to the Kubernetes API (a mounted token, or a service account bound
    //    to a Role) may reach the `kubernetes` Service's IP on 443: the VPC CNI's policy
    //    agent matches egress before the Service is translated to the control plane's ENIs.
    for doc in docs {
        if talks_to_the_api(docs, doc)
            && !egress_allows(docs, doc, expect.api_server_service_ip, 443)
        {
            bad(format!(
                "{}: talks to the Kubernetes API but no NetworkPolicy allows egress to {}/32 on 443",
                doc.id(),
                expect.api_server_service_ip
            ));
        }
    }

    // 9. The app: probes, the migrations before the rollout, the ALB by default.
    match find(docs, "Deployment", "shop-app") {
        None => bad("no Deployment shop-app".into()),
        Some(app) => {
            let c = &app.value["spec"]["template"]["spec"]["containers"][0];
            if c["readinessProbe"]["httpGet"]["path"] != "/readyz" {
                bad("the app's readiness probe is not /readyz".into());
            }
            if c["livenessProbe"]["httpGet"]["path"] != "/healthz" {
                bad("the app's liveness probe is not /healthz".into());
            }
            let image = c["image"].as_str().unwrap_or("");
            if !image.starts_with("shop/app:unreleased@sha256:") {
                bad(format!(
                    "the app's image is not the deploy placeholder: {image}"
                ));
            }
        }
    }
    match find(docs, "Job", "shop-app-migrate") {
        Some(job)
            if job.value["metadata"]["annotations"]["shop.example.com/phase"] == "pre-rollout"
                && job.value["spec"]["template"]["spec"]["containers"][0]["args"]
                    == json!(["migrate"]) => {}
        _ => bad("no pre-rollout Job running `app migrate`".into()),
    }
    match find(docs, "Ingress", "shop-app") {
        Some(i) if i.value["spec"]["ingressClassName"] == "alb" => {}
        _ => bad("the Ingress is not the ALB's".into()),
    }
    match find(docs, "HorizontalPodAutoscaler", "shop-worker") {
        Some(h)
            if h.value["spec"]["metrics"]
                .as_array()
                .is_some_and(|m| !m.is_empty() && m.iter().all(|m| m["type"] == "External")) => {}
        _ => bad("the worker's autoscaler does not follow external (queue) metrics".into()),
    }

    problems.extend(cluster_problems(docs, env));
    problems
}

/// The kinds rendered without a namespace.
const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "StorageClass",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "IngressClass",
];

/// The cluster phase (templates/k8s/cluster): the AWS Load Balancer Controller with its
/// IRSA role, webhooks and the ALB readiness gate on the app's namespace; the Cluster
/// Autoscaler with its IRSA role, discovering this cluster's node groups, of the
/// cluster's minor.
fn cluster_problems(docs: &[Doc], env: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut bad = |p: String| problems.push(p);
    let cluster = format!("shop-{env}");
    let role = |name: &str| format!("arn:aws:iam::000000000000:role/shop-{env}-{name}");
    for (account, role_name) in [
        ("aws-load-balancer-controller", "lb-controller"),
        ("cluster-autoscaler", "cluster-autoscaler"),
    ] {
        let sa = find(docs, "ServiceAccount", account);
        if sa.is_none_or(|s| {
            s.value["metadata"]["namespace"] != "kube-system"
                || s.value["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
                    != role(role_name).as_str()
        }) {
            bad(format!(
                "the {account} service account does not carry its IAM role (IRSA)"
            ));
        }
        match find(docs, "Deployment", account) {
            Some(d) if d.value["spec"]["template"]["spec"]["serviceAccountName"] == account => {}
            _ => bad(format!(
                "no Deployment {account} running as its service account"
            )),
        }
    }

    // The readiness gate: the app's namespace asks for it, and the pod webhook selects
    // namespaces by exactly that label.
    let gate = "elbv2.k8s.aws/pod-readiness-gate-inject";
    match find(docs, "Namespace", "shop") {
        Some(ns) if ns.value["metadata"]["labels"][gate] == "enabled" => {}
        _ => bad(format!(
            "the app's namespace lacks the label {gate}=enabled"
        )),
    }
    let mutating = find(
        docs,
        "MutatingWebhookConfiguration",
        "aws-load-balancer-webhook",
    );
    let pod_webhook = mutating.and_then(|m| {
        m.value["webhooks"]
            .as_array()?
            .iter()
            .find(|w| w["rules"][0]["resources"] == json!(["pods"]))
    });
    match pod_webhook {
        Some(w)
            if w["namespaceSelector"]["matchExpressions"]
                == json!([{"key": gate, "operator": "In", "values": ["enabled"]}]) => {}
        _ => bad("no pod webhook selecting the readiness-gate namespaces".into()),
    }
    // Every webhook calls the controller's Service, which selects its pods, which serve
    // the certificate the deployer generates.
    let service = find(docs, "Service", "aws-load-balancer-webhook-service");
    let controller = find(docs, "Deployment", "aws-load-balancer-controller");
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        for w in find(docs, kind, "aws-load-balancer-webhook")
            .and_then(|c| c.value["webhooks"].as_array().cloned())
            .unwrap_or_default()
        {
            let target = &w["clientConfig"]["service"];
            if target["name"] != "aws-load-balancer-webhook-service"
                || target["namespace"] != "kube-system"
                || w["clientConfig"]["caBundle"]
                    .as_str()
                    .is_none_or(str::is_empty)
            {
                bad(format!(
                    "{kind} webhook {} does not call the controller with a CA",
                    w["name"]
                ));
            }
        }
    }
    match (service, controller) {
        (Some(s), Some(c))
            if selects(
                &json!({"matchLabels": s.value["spec"]["selector"]}),
                &c.value["spec"]["template"]["metadata"]["labels"],
            ) => {}
        _ => bad("the webhook Service does not select the controller's pods".into()),
    }
    if let Some(c) = controller {
        let spec = &c.value["spec"]["template"]["spec"];
        let args = spec["containers"][0]["args"].to_string();
        for want in [
            format!("--cluster-name={cluster}"),
            "--aws-region=".into(),
            "--aws-vpc-id=vpc-".into(),
            "--ingress-class=alb".into(),
        ] {
            if !args.contains(&want) {
                bad(format!("the load balancer controller lacks {want}: {args}"));
            }
        }
        if spec["volumes"][0]["secret"]["secretName"] != "aws-load-balancer-tls" {
            bad("the load balancer controller does not mount its webhook certificate".into());
        }
        if c.value["spec"]["replicas"] != 2
            || spec["priorityClassName"] != "system-cluster-critical"
        {
            bad("the load balancer controller is not 2 system-cluster-critical replicas".into());
        }
    }
    if find(docs, "IngressClass", "alb")
        .is_none_or(|c| c.value["spec"]["controller"] != "ingress.k8s.aws/alb")
    {
        bad("no IngressClass alb for the load balancer controller".into());
    }

    match find(docs, "Deployment", "cluster-autoscaler") {
        None => {}
        Some(ca) => {
            let c = &ca.value["spec"]["template"]["spec"]["containers"][0];
            let command = c["command"].to_string();
            for want in [
                format!("--node-group-auto-discovery=asg:tag=k8s.io/cluster-autoscaler/enabled,k8s.io/cluster-autoscaler/{cluster}\""),
                "--balance-similar-node-groups=true".into(),
                "--skip-nodes-with-local-storage=false".into(),
                "--cloud-provider=aws".into(),
                "--expander=".into(),
            ] {
                if !command.contains(&want) {
                    bad(format!("the cluster autoscaler lacks {want}: {command}"));
                }
            }
            let image = c["image"].as_str().unwrap_or("");
            if !image.contains(&format!(":v{KUBERNETES_VERSION}.")) {
                bad(format!(
                    "the cluster autoscaler {image} is not of Kubernetes {KUBERNETES_VERSION}"
                ));
            }
        }
    }

    // CustomResourceDefinitions: each served version structural (an object schema).
    let crds: Vec<&Doc> = docs
        .iter()
        .filter(|d| d.kind() == "CustomResourceDefinition")
        .collect();
    if crds.len() != 2 {
        bad(format!(
            "{} CustomResourceDefinitions, not TargetGroupBinding and IngressClassParams",
            crds.len()
        ));
    }
    for crd in crds {
        for version in crd.value["spec"]["versions"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if version["schema"]["openAPIV3Schema"]["type"] != "object" {
                bad(format!(
                    "{} {}: no structural schema",
                    crd.id(),
                    version["name"]
                ));
            }
        }
    }
    problems
}

/// Whether a workload's pods talk to the Kubernetes API: their service account token is
/// mounted, or their service account is a subject of a RoleBinding or ClusterRoleBinding.
fn talks_to_the_api(docs: &[Doc], doc: &Doc) -> bool {
    let Some(spec) = doc.pod_spec() else {
        return false;
    };
    let account = spec["serviceAccountName"].as_str().unwrap_or("default");
    let account_doc = find(docs, "ServiceAccount", account);
    let mounted = match spec["automountServiceAccountToken"].as_bool() {
        Some(pod) => pod,
        None => account_doc
            .and_then(|a| a.value["automountServiceAccountToken"].as_bool())
            .unwrap_or(true),
    };
    let bound = docs.iter().any(|d| {
        matches!(d.kind(), "RoleBinding" | "ClusterRoleBinding")
            && d.value["subjects"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|s| s["kind"] == "ServiceAccount" && s["name"] == account)
    });
    mounted || bound
}

/// Whether a label selector (matchLabels and matchExpressions `In`/`Exists`) selects `labels`;
/// the empty selector selects every pod.
fn selector_matches(selector: &Value, labels: &Value) -> bool {
    let labels_ok = selector["matchLabels"]
        .as_object()
        .is_none_or(|m| m.iter().all(|(k, v)| labels[k] == *v));
    let expressions_ok = selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|e| {
            let value = &labels[e["key"].as_str().unwrap_or("")];
            match e["operator"].as_str() {
                Some("In") => e["values"].as_array().is_some_and(|v| v.contains(value)),
                Some("Exists") => !value.is_null(),
                _ => false,
            }
        });
    labels_ok && expressions_ok
}

/// Whether some NetworkPolicy selecting the workload's pods allows egress to exactly
/// `cidr` on TCP `port` (a rule without ports allows every port).
/// Whether a NetworkPolicy selecting the pods lets them reach `ip` on TCP `port`: an
/// `ipBlock` that contains the address and does not except it.
fn egress_allows(docs: &[Doc], doc: &Doc, ip: &str, port: u64) -> bool {
    let ip: std::net::Ipv4Addr = ip.parse().expect("an IPv4 address");
    let contains = |cidr: &Value| {
        cidr.as_str()
            .and_then(|c| c.parse::<ipnet::Ipv4Net>().ok())
            .is_some_and(|net| net.contains(&ip))
    };
    let Some(labels) = pod_labels(doc) else {
        return false;
    };
    docs.iter()
        .filter(|p| p.kind() == "NetworkPolicy")
        .filter(|p| selector_matches(&p.value["spec"]["podSelector"], labels))
        .flat_map(|p| p.value["spec"]["egress"].as_array().into_iter().flatten())
        .any(|rule| {
            let to = rule["to"].as_array().into_iter().flatten().any(|peer| {
                let block = &peer["ipBlock"];
                contains(&block["cidr"])
                    && !block["except"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(contains)
            });
            let ports = rule["ports"].as_array();
            let on_port = ports.is_none_or(|ports| {
                ports
                    .iter()
                    .any(|p| p["protocol"].as_str().unwrap_or("TCP") == "TCP" && p["port"] == port)
            });
            to && on_port
        })
}

fn collect_secret_refs(value: &Value, names: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match key.as_str() {
                    "secretKeyRef" | "secretRef" => {
                        if let Some(n) = v["name"].as_str() {
                            names.push(n.to_owned());
                        }
                    }
                    "secret" if v["secretName"].is_string() || v["name"].is_string() => {
                        let n = v["secretName"].as_str().or(v["name"].as_str()).unwrap();
                        names.push(n.to_owned());
                    }
                    _ => {}
                }
                collect_secret_refs(v, names);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_secret_refs(v, names)),
        _ => {}
    }
}

#[test]
fn manifests_state_the_facts_that_matter() {
    let project = Project::new();
    let out = render_all(&project);
    let docs_md = std::fs::read_to_string(common::repo_root().join("docs/k8s.md")).unwrap();
    for expect in ENVS {
        let (_, docs) = rendered(&out, expect.env);
        let found = problems(&docs, expect);
        assert!(found.is_empty(), "{}:\n{}", expect.env, found.join("\n"));
        // Every Secret the pods reference is one docs/k8s.md tells the deployer to create.
        for secret in DEPLOYER_SECRETS {
            assert!(
                docs_md.contains(&format!("`{secret}`")),
                "docs/k8s.md does not list {secret}"
            );
        }
    }
    // Rendering stays deterministic with the deploy placeholders.
    let again = project.path().join("again");
    project
        .shopctl()
        .args(["render", "--all", "--out"])
        .arg(&again)
        .assert()
        .success();
    for env in ["local", "staging", "production"] {
        let k8s = out.join(env).join("k8s");
        for file in k8s_files(&k8s) {
            let twin = again
                .join(env)
                .join("k8s")
                .join(file.strip_prefix(&k8s).unwrap());
            assert_eq!(
                std::fs::read(&file).unwrap(),
                std::fs::read(&twin).unwrap(),
                "{}",
                file.display()
            );
        }
    }
}

/// Each structural check fails when the manifest it guards is broken: the staging
/// manifests, mutated one way at a time, each yield the finding that names the break.
#[test]
fn structural_checks_catch_broken_manifests() {
    let project = Project::new();
    let out = render_all(&project);
    let (_, docs) = rendered(&out, "staging");
    let staging = &ENVS[1];
    assert!(problems(&docs, staging).is_empty());

    type Mutation = fn(&mut Vec<Doc>);
    let cases: Vec<(&str, Mutation, &str)> = vec![
        (
            "a missing prune label",
            |d| {
                d[3].value["metadata"]["labels"]
                    .as_object_mut()
                    .unwrap()
                    .remove("shop.example.com/environment");
            },
            "label shop.example.com/environment",
        ),
        (
            "a rendered Secret",
            |d| {
                d.push(Doc {
                file: "extra.yaml".into(),
                value: json!({"apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": "leak", "namespace": "shop", "labels": d[0].value["metadata"]["labels"].clone()},
                    "stringData": {"k": "v"}}),
            });
            },
            "a Secret with stringData",
        ),
        (
            "a writable root filesystem",
            |d| {
                let sts = d
                    .iter_mut()
                    .find(|x| x.kind() == "StatefulSet" && x.name() == "shop-kafka")
                    .unwrap();
                sts.value["spec"]["template"]["spec"]["containers"][0]["securityContext"]
                    ["readOnlyRootFilesystem"] = json!(false);
            },
            "root filesystem is writable",
        ),
        (
            "a root container",
            |d| {
                let dep = d
                    .iter_mut()
                    .find(|x| x.kind() == "Deployment" && x.name() == "shop-app")
                    .unwrap();
                dep.value["spec"]["template"]["spec"]["containers"][0]["securityContext"]
                    ["runAsUser"] = json!(0);
            },
            "may run as root",
        ),
        (
            "two Patroni members",
            |d| {
                let sts = d
                    .iter_mut()
                    .find(|x| x.kind() == "StatefulSet" && x.name() == "shop-postgres")
                    .unwrap();
                sts.value["spec"]["replicas"] = json!(2);
            },
            "shop-postgres has 2 replicas",
        ),
        (
            "sync mode not strict",
            |d| {
                let cm = d
                    .iter_mut()
                    .find(|x| x.kind() == "ConfigMap" && x.name() == "shop-postgres")
                    .unwrap();
                let text = cm.value["data"]["patroni.yml"].as_str().unwrap().replace(
                    "synchronous_mode_strict: true",
                    "synchronous_mode_strict: false",
                );
                cm.value["data"]["patroni.yml"] = json!(text);
            },
            "synchronous mode is not strict",
        ),
        (
            "min.insync.replicas 1",
            |d| {
                let cm = d
                    .iter_mut()
                    .find(|x| x.kind() == "ConfigMap" && x.name() == "shop-kafka")
                    .unwrap();
                let text = cm.value["data"]["server.properties"]
                    .as_str()
                    .unwrap()
                    .replace("min.insync.replicas=2", "min.insync.replicas=1");
                cm.value["data"]["server.properties"] = json!(text);
            },
            "min.insync.replicas is \"1\"",
        ),
        (
            "a missing PDB",
            |d| {
                d.retain(|x| !(x.kind() == "PodDisruptionBudget" && x.name() == "shop-rabbitmq"));
            },
            "StatefulSet/shop-rabbitmq: 0 PodDisruptionBudgets",
        ),
        (
            "no default deny",
            |d| {
                d.retain(|x| x.name() != "default-deny-all");
            },
            "no default-deny NetworkPolicy",
        ),
        (
            "no egress to the API server's Service IP",
            |d| {
                let policy = d
                    .iter_mut()
                    .find(|x| x.kind() == "NetworkPolicy" && x.name() == "rabbitmq")
                    .unwrap();
                for rule in policy.value["spec"]["egress"].as_array_mut().unwrap() {
                    if let Some(to) = rule["to"].as_array_mut() {
                        to.retain(|peer| peer["ipBlock"]["cidr"] != "172.20.0.1/32");
                    }
                }
            },
            "StatefulSet/shop-rabbitmq: talks to the Kubernetes API but no NetworkPolicy allows egress to 172.20.0.1/32 on 443",
        ),
        (
            "an undocumented Secret",
            |d| {
                let dep = d
                    .iter_mut()
                    .find(|x| x.kind() == "Deployment" && x.name() == "shop-worker")
                    .unwrap();
                dep.value["spec"]["template"]["spec"]["containers"][0]["env"][0]["valueFrom"]
                    ["secretKeyRef"]["name"] = json!("elsewhere");
            },
            "references Secret elsewhere",
        ),
        (
            "no readiness gate on the app's namespace",
            |d| {
                let ns = d.iter_mut().find(|x| x.kind() == "Namespace").unwrap();
                ns.value["metadata"]["labels"]
                    .as_object_mut()
                    .unwrap()
                    .remove("elbv2.k8s.aws/pod-readiness-gate-inject");
            },
            "lacks the label elbv2.k8s.aws/pod-readiness-gate-inject=enabled",
        ),
        (
            "a pod webhook that selects other namespaces",
            |d| {
                let m = d
                    .iter_mut()
                    .find(|x| x.kind() == "MutatingWebhookConfiguration")
                    .unwrap();
                m.value["webhooks"][0]["namespaceSelector"]["matchExpressions"][0]["key"] =
                    json!("elbv2.k8s.aws/other");
            },
            "no pod webhook selecting the readiness-gate namespaces",
        ),
        (
            "the load balancer controller without its IAM role",
            |d| {
                let sa = d
                    .iter_mut()
                    .find(|x| {
                        x.kind() == "ServiceAccount" && x.name() == "aws-load-balancer-controller"
                    })
                    .unwrap();
                sa.value["metadata"]["annotations"]
                    .as_object_mut()
                    .unwrap()
                    .remove("eks.amazonaws.com/role-arn");
            },
            "the aws-load-balancer-controller service account does not carry its IAM role",
        ),
        (
            "the cluster autoscaler without its IAM role",
            |d| {
                let sa = d
                    .iter_mut()
                    .find(|x| x.kind() == "ServiceAccount" && x.name() == "cluster-autoscaler")
                    .unwrap();
                sa.value["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] =
                    json!("arn:aws:iam::000000000000:role/shop-staging-app");
            },
            "the cluster-autoscaler service account does not carry its IAM role",
        ),
        (
            "the autoscaler discovering another cluster's groups",
            |d| {
                let ca = d
                    .iter_mut()
                    .find(|x| x.kind() == "Deployment" && x.name() == "cluster-autoscaler")
                    .unwrap();
                let command = ca.value["spec"]["template"]["spec"]["containers"][0]["command"]
                    .to_string()
                    .replace(
                        "cluster-autoscaler/shop-staging",
                        "cluster-autoscaler/shop-production",
                    );
                ca.value["spec"]["template"]["spec"]["containers"][0]["command"] =
                    serde_json::from_str(&command).unwrap();
            },
            "the cluster autoscaler lacks --node-group-auto-discovery",
        ),
        (
            "an autoscaler of another Kubernetes minor",
            |d| {
                let ca = d
                    .iter_mut()
                    .find(|x| x.kind() == "Deployment" && x.name() == "cluster-autoscaler")
                    .unwrap();
                ca.value["spec"]["template"]["spec"]["containers"][0]["image"] =
                    json!("registry.k8s.io/autoscaling/cluster-autoscaler:v1.32.7");
            },
            "is not of Kubernetes 1.33",
        ),
        (
            "a controller in the app's namespace",
            |d| {
                let dep = d
                    .iter_mut()
                    .find(|x| {
                        x.kind() == "Deployment" && x.name() == "aws-load-balancer-controller"
                    })
                    .unwrap();
                dep.value["metadata"]["namespace"] = json!("shop");
            },
            "Deployment/aws-load-balancer-controller: not in namespace kube-system",
        ),
        (
            "migrations without the phase",
            |d| {
                let job = d
                    .iter_mut()
                    .find(|x| x.kind() == "Job" && x.name() == "shop-app-migrate")
                    .unwrap();
                job.value["metadata"]["annotations"]
                    .as_object_mut()
                    .unwrap()
                    .remove("shop.example.com/phase");
            },
            "no pre-rollout Job",
        ),
    ];
    for (what, mutate, finding) in cases {
        let mut broken = docs.clone();
        mutate(&mut broken);
        let found = problems(&broken, staging);
        assert!(
            found.iter().any(|p| p.contains(finding)),
            "{what}: expected a finding containing {finding:?}, got {found:#?}"
        );
    }
}

/// `kubernetes.ingress_class = "nginx"` renders an ingress-nginx Ingress and the matching
/// NetworkPolicy; an unknown class is refused at its line.
#[test]
fn ingress_class_nginx_renders_and_an_unknown_class_is_refused() {
    let project = Project::new();
    project.edit(
        "staging",
        "app_service_account = \"shop-app\"\n",
        "app_service_account = \"shop-app\"\ningress_class = \"nginx\"\n",
    );
    let out = render_all(&project);
    let (_, docs) = rendered(&out, "staging");
    let ingress = find(&docs, "Ingress", "shop-app").unwrap();
    assert_eq!(ingress.value["spec"]["ingressClassName"], "nginx");
    assert_eq!(ingress.value["spec"]["tls"][0]["secretName"], "shop-tls");
    assert!(ingress.value["metadata"]["annotations"]
        .as_object()
        .unwrap()
        .keys()
        .all(|k| k.starts_with("nginx.")));
    let policy = find(&docs, "NetworkPolicy", "app-from-ingress-controller").unwrap();
    assert_eq!(
        policy.value["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"]
            ["kubernetes.io/metadata.name"],
        "ingress-nginx"
    );

    project.edit(
        "staging",
        "ingress_class = \"nginx\"",
        "ingress_class = \"traefik\"",
    );
    project
        .shopctl()
        .args(["render", "staging", "--out"])
        .arg(project.path().join("bad"))
        .assert()
        .failure()
        .stderr(predicate::str::contains("kubernetes.ingress_class"))
        .stderr(predicate::str::contains("unknown variant `traefik`"));
}

/// Runs kubernetes-validate on `files`; Ok(stdout) when every document is valid.
fn kubernetes_validate(files: &[PathBuf]) -> Result<String, String> {
    let output = Command::new(common::tool("kubernetes-validate"))
        .args(["--strict", "--kubernetes-version", KUBERNETES_VERSION])
        .args(files)
        .output()
        .expect("run kubernetes-validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // A kind without a bundled schema is only a WARN to kubernetes-validate, and a
    // version it does not bundle FATAL: both fail here, never pass unvalidated.
    if output.status.success() && !["ERROR", "WARN", "FATAL"].iter().any(|w| text.contains(w)) {
        Ok(text)
    } else {
        Err(text)
    }
}

#[test]
fn kubernetes_validate_accepts_every_manifest_for_the_environments_version() {
    let project = Project::new();
    let out = render_all(&project);
    for env in ["local", "staging", "production"] {
        let config =
            std::fs::read_to_string(project.path().join(format!("environments/{env}.toml")))
                .unwrap();
        assert!(
            config.contains(&format!("version = \"{KUBERNETES_VERSION}\"")),
            "{env}: eks.version is no longer {KUBERNETES_VERSION}; validate against the new version"
        );
        let (files, docs) = rendered(&out, env);
        let report = kubernetes_validate(&files)
            .unwrap_or_else(|e| panic!("{env}: kubernetes-validate failed:\n{e}"));
        // It looked at every document, against the version asked for.
        let passed = report
            .lines()
            .filter(|l| l.contains("passed") && l.contains(KUBERNETES_VERSION))
            .count();
        assert_eq!(
            passed,
            docs.len(),
            "{env}: not every document was validated:\n{report}"
        );
    }
    // And it does refuse what the API server would: a field that does not exist (strict)
    // and a value of the wrong type.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\nspec:\n  replicas: three\n  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n    spec:\n      containers: [{name: c, image: i, runAsRoot: true}]\n",
    )
    .unwrap();
    let error = kubernetes_validate(&[bad]).expect_err("an invalid Deployment passed");
    assert!(
        error.contains("replicas") || error.contains("three"),
        "{error}"
    );
}

/// checkov's Kubernetes checks: no failed check, and every skipped one justified in the
/// manifest by a `checkov.io/skipN: CHECK=reason` annotation.
fn checkov(dir: &Path) -> Value {
    let mut command = Command::new(common::tool("checkov"));
    // Not --quiet: the report then lists the skipped checks with their reasons too.
    command.args([
        "--framework",
        "kubernetes",
        "--compact",
        "--output",
        "json",
        "--skip-download",
    ]);
    // Each file by name: with `-d`, checkov's Kubernetes runner skips every file under a
    // hidden directory, which a temporary directory (/tmp/.tmpXXXX) is, and reports an
    // empty scan.
    for file in k8s_files(dir) {
        command.arg("-f").arg(file);
    }
    let output = command.output().expect("run checkov");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "checkov printed no JSON ({e}): {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert_eq!(
        report["check_type"], "kubernetes",
        "checkov scanned nothing: {report}"
    );
    report
}

/// `CHECK resource` of every entry of one result list, sorted.
fn check_set(report: &Value, list: &str) -> Vec<String> {
    let mut set: Vec<String> = report["results"][list]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            format!(
                "{} {}",
                c["check_id"].as_str().unwrap(),
                c["resource"].as_str().unwrap()
            )
        })
        .collect();
    set.sort();
    set
}

fn failed_checks(report: &Value) -> Vec<String> {
    report["results"]["failed_checks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            format!(
                "{} {} {} ({})",
                c["check_id"], c["resource"], c["check_name"], c["file_path"]
            )
        })
        .collect()
}

#[test]
fn checkov_finds_no_unjustified_failure() {
    let project = Project::new();
    let out = render_all(&project);
    for env in ["local", "staging", "production"] {
        let dir = out.join(env).join("k8s");
        let report = checkov(&dir);
        let summary = &report["summary"];
        assert_eq!(
            summary["failed"],
            0,
            "{env}: checkov failed checks:\n{}",
            failed_checks(&report).join("\n")
        );
        assert!(
            summary["passed"].as_u64().unwrap() > 300,
            "{env}: checkov checked too little: {summary}"
        );
        for skipped in report["results"]["skipped_checks"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let reason = skipped["check_result"]["suppress_comment"]
                .as_str()
                .unwrap_or("");
            assert!(
                reason.len() > 40,
                "{env}: {} skipped on {} without a reason: {reason:?}",
                skipped["check_id"],
                skipped["resource"]
            );
        }
        println!("{env}: checkov {summary}");
    }
    // Every skip is needed and nothing else hides behind one: with the annotations
    // removed, exactly the skipped checks fail, on the same objects.
    let dir = out.join("staging").join("k8s");
    let skipped = check_set(&checkov(&dir), "skipped_checks");
    assert!(!skipped.is_empty());
    let bare = tempfile::tempdir().unwrap();
    for file in k8s_files(&dir) {
        let stripped: String = std::fs::read_to_string(&file)
            .unwrap()
            .lines()
            .filter(|l| !l.trim_start().starts_with("checkov.io/skip"))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(bare.path().join(file.file_name().unwrap()), stripped).unwrap();
    }
    let failed = check_set(&checkov(bare.path()), "failed_checks");
    assert_eq!(
        failed, skipped,
        "without the skip annotations, other checks fail than were skipped"
    );
}
