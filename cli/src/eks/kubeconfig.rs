//! A kubeconfig for one environment's cluster, and the ExecCredential its user runs for.
//!
//! The kubeconfig holds no secret: its user is an exec plugin (`shopctl eks-token <env>`,
//! the role `aws eks get-token` plays elsewhere), so tokens are made fresh for each
//! client and expire on their own. JSON is valid YAML, so kubectl and the kube crate read it.

use std::path::Path;
use std::time::SystemTime;

use serde_json::{json, Value};

use super::token::TOKEN_LIFETIME;
use super::Cluster;

/// The client authentication API our exec plugin speaks.
pub const EXEC_API_VERSION: &str = "client.authentication.k8s.io/v1beta1";

/// Context (and user) name for an environment.
pub fn context_name(env: &str) -> String {
    format!("shop-{env}")
}

/// How the kubeconfig's user gets a token: this very shopctl binary, in this project,
/// with the AWS endpoint override (an emulator) when one was in effect.
#[derive(Debug, Clone)]
pub struct ExecPlugin<'a> {
    pub shopctl: &'a Path,
    pub project_root: &'a Path,
    pub env: &'a str,
    pub aws_endpoint: Option<&'a str>,
}

pub fn kubeconfig(cluster: &Cluster, namespace: &str, plugin: &ExecPlugin) -> Value {
    let name = context_name(plugin.env);
    let mut exec = json!({
        "apiVersion": EXEC_API_VERSION,
        "command": plugin.shopctl,
        "args": ["-C", plugin.project_root, "eks-token", plugin.env],
        "interactiveMode": "Never",
    });
    if let Some(url) = plugin.aws_endpoint {
        exec["env"] = json!([{ "name": "SHOPCTL_AWS_ENDPOINT", "value": url }]);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": cluster.name,
            "cluster": {
                "server": cluster.endpoint,
                "certificate-authority-data": cluster.ca_data,
            },
        }],
        "users": [{ "name": name, "user": { "exec": exec } }],
        "contexts": [{
            "name": name,
            "context": { "cluster": cluster.name, "user": name, "namespace": namespace },
        }],
        "current-context": name,
        "preferences": {},
    })
}

/// What an exec plugin prints: the token and when it stops being accepted (a minute
/// early, so a client never sends one that expires on the way).
pub fn exec_credential(token: &str, signed_at: SystemTime) -> Value {
    let expires = signed_at + TOKEN_LIFETIME - std::time::Duration::from_secs(60);
    let stamp = time::OffsetDateTime::from(expires)
        .replace_nanosecond(0)
        .expect("0 is a valid nanosecond")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("a time formats as RFC 3339");
    json!({
        "kind": "ExecCredential",
        "apiVersion": EXEC_API_VERSION,
        "spec": {},
        "status": { "expirationTimestamp": stamp, "token": token },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cluster() -> Cluster {
        Cluster {
            name: "shop-staging".into(),
            endpoint: "https://ABC.gr7.eu-west-1.eks.amazonaws.com".into(),
            ca_data: "LS0tLS1CRUdJTg==".into(),
            version: "1.33".into(),
        }
    }

    #[test]
    fn the_kubeconfig_points_at_the_cluster_and_execs_shopctl_for_tokens() {
        let plugin = ExecPlugin {
            shopctl: Path::new("/opt/bin/shopctl"),
            project_root: Path::new("/src/shop"),
            env: "staging",
            aws_endpoint: Some("http://127.0.0.1:5000"),
        };
        let config = kubeconfig(&cluster(), "shop", &plugin);
        assert_eq!(config["current-context"], "shop-staging");
        assert_eq!(
            config["clusters"][0]["cluster"]["server"],
            "https://ABC.gr7.eu-west-1.eks.amazonaws.com"
        );
        assert_eq!(
            config["clusters"][0]["cluster"]["certificate-authority-data"],
            "LS0tLS1CRUdJTg=="
        );
        assert_eq!(config["contexts"][0]["context"]["namespace"], "shop");
        let exec = &config["users"][0]["user"]["exec"];
        assert_eq!(exec["command"], "/opt/bin/shopctl");
        assert_eq!(
            exec["args"],
            json!(["-C", "/src/shop", "eks-token", "staging"])
        );
        assert_eq!(exec["env"][0]["value"], "http://127.0.0.1:5000");
        assert!(
            !config.to_string().contains("k8s-aws-v1."),
            "no token stored"
        );
    }

    #[test]
    fn an_exec_credential_expires_a_minute_before_the_token() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let credential = exec_credential("k8s-aws-v1.abc", at);
        assert_eq!(credential["status"]["token"], "k8s-aws-v1.abc");
        assert_eq!(
            credential["status"]["expirationTimestamp"],
            "2027-01-15T08:14:00Z"
        );
        assert_eq!(credential["apiVersion"], EXEC_API_VERSION);
    }
}
