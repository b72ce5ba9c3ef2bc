//! `shopctl kubeconfig` and `shopctl eks-token`: the cluster is described by
//! moto_server's EKS, the kubeconfig's exec plugin is run as kubectl runs it, and the
//! token's presigned STS URL is checked against botocore's signer (AWS's own, which
//! `aws eks get-token` uses).
//!
//! No Kubernetes API server runs here, so the kubeconfig is not used against one
//! (docs/k8s.md says what runs where).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use base64::Engine;
use common::{Moto, Project};
use predicates::prelude::*;
use serde_json::Value;

fn create_cluster(moto: &Moto, name: &str) -> (String, String) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let sdk = moto.sdk().await;
        let eks = aws_sdk_eks::Client::new(&sdk);
        eks.create_cluster()
            .name(name)
            .version("1.33")
            .role_arn("arn:aws:iam::123456789012:role/shop-staging-cluster")
            .resources_vpc_config(
                aws_sdk_eks::types::VpcConfigRequest::builder()
                    .subnet_ids("subnet-1")
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let cluster = eks.describe_cluster().name(name).send().await.unwrap();
        let cluster = cluster.cluster().unwrap();
        (
            cluster.endpoint().unwrap().to_owned(),
            cluster
                .certificate_authority()
                .unwrap()
                .data()
                .unwrap()
                .to_owned(),
        )
    })
}

#[test]
fn a_kubeconfig_execs_shopctl_for_a_token_signed_as_aws_signs_it() {
    let project = Project::new();
    let moto = Moto::start();
    let aws = ["--aws-endpoint".to_string(), moto.url()];

    // No cluster yet: the error names it and the command that creates it.
    project
        .shopctl()
        .args(["kubeconfig", "staging"])
        .args(&aws)
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "the EKS cluster shop-staging does not exist",
        ))
        .stderr(predicate::str::contains("shopctl apply staging"));

    let (endpoint, ca) = create_cluster(&moto, "shop-staging");
    let out_path = project.path().join("kube/config");
    let out = project
        .shopctl()
        .args(["kubeconfig", "staging", "--out"])
        .arg(&out_path)
        .args(&aws)
        .assert()
        .success();
    let printed = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert_eq!(printed.trim(), out_path.display().to_string());
    let mode = std::fs::metadata(&out_path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "owner-only");
    let text = std::fs::read_to_string(&out_path).unwrap();
    assert!(!text.contains("k8s-aws-v1."), "no token in the file");
    let config: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(config["current-context"], "shop-staging");
    assert_eq!(config["clusters"][0]["name"], "shop-staging");
    assert_eq!(
        config["clusters"][0]["cluster"]["server"],
        endpoint.as_str()
    );
    assert_eq!(
        config["clusters"][0]["cluster"]["certificate-authority-data"],
        ca.as_str()
    );
    assert_eq!(config["contexts"][0]["context"]["namespace"], "shop");

    // Run the exec plugin exactly as kubectl would: command, args and env from the file.
    let exec = &config["users"][0]["user"]["exec"];
    assert_eq!(exec["apiVersion"], "client.authentication.k8s.io/v1beta1");
    let mut plugin = Command::new(exec["command"].as_str().unwrap());
    for arg in exec["args"].as_array().unwrap() {
        plugin.arg(arg.as_str().unwrap());
    }
    for var in exec["env"].as_array().unwrap() {
        plugin.env(
            var["name"].as_str().unwrap(),
            var["value"].as_str().unwrap(),
        );
    }
    plugin
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_PROFILE");
    let output = plugin.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let credential: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(credential["kind"], "ExecCredential");
    assert!(credential["status"]["expirationTimestamp"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    let token = credential["status"]["token"].as_str().unwrap();
    let url = String::from_utf8(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.strip_prefix("k8s-aws-v1.").expect("EKS token prefix"))
            .unwrap(),
    )
    .unwrap();
    assert!(url.starts_with(&moto.url()), "{url}");
    assert!(
        url.contains("X-Amz-SignedHeaders=host%3Bx-k8s-aws-id"),
        "{url}"
    );

    // The signature is what AWS's own signer makes: botocore (the library `aws eks
    // get-token` presigns with) signs the same request at the token's X-Amz-Date with the
    // same key (the emulator's placeholder pair), and both signatures must be equal.
    // (moto_server routes an unsigned GET to S3, so it cannot answer the URL itself.)
    let reference = Command::new(common::venv_bin().join("python"))
        .args(["-c", BOTOCORE_PRESIGN])
        .arg(&url)
        .args([
            "shop-staging",
            "shopctl-emulator",
            "shopctl-emulator",
            "eu-west-1",
        ])
        .output()
        .unwrap();
    assert!(
        reference.status.success(),
        "{}",
        String::from_utf8_lossy(&reference.stderr)
    );
    let reference = String::from_utf8(reference.stdout).unwrap();
    let signature = |url: &str| {
        url.split('&')
            .find_map(|p| p.strip_prefix("X-Amz-Signature="))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no signature in {url}"))
    };
    assert_eq!(
        signature(&url),
        signature(reference.trim()),
        "ours: {url}\nbotocore: {reference}"
    );
    let mut ours: Vec<&str> = url.split(['?', '&']).collect();
    let mut theirs: Vec<&str> = reference.trim().split(['?', '&']).collect();
    ours.sort();
    theirs.sort();
    assert_eq!(ours, theirs, "the same URL up to parameter order");
}

/// Presigns GetCallerIdentity with botocore at the X-Amz-Date of the URL in argv[1], the
/// `x-k8s-aws-id` header signed, as awscli's `eks get-token` does; prints the URL.
const BOTOCORE_PRESIGN: &str = r#"
import datetime, sys
from urllib.parse import urlsplit, parse_qs
import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
url, cluster, key, secret, region = sys.argv[1:]
parts = urlsplit(url)
at = datetime.datetime.strptime(parse_qs(parts.query)["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ")
class Frozen(datetime.datetime):
    @classmethod
    def utcnow(cls):
        return at
botocore.auth.datetime.datetime = Frozen
base = f"{parts.scheme}://{parts.netloc}{parts.path}?Action=GetCallerIdentity&Version=2011-06-15"
request = AWSRequest(method="GET", url=base, headers={"x-k8s-aws-id": cluster})
botocore.auth.SigV4QueryAuth(Credentials(key, secret), "sts", region, expires=60).add_auth(request)
print(request.url)
"#;

#[test]
fn bad_input_names_what_is_wrong() {
    let project = Project::new();
    project
        .shopctl()
        .args(["kubeconfig", "nowhere"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("nowhere"));
    // An endpoint nothing listens on: refused at once, with the address.
    let port = common::free_port();
    project
        .shopctl()
        .args(["kubeconfig", "staging", "--aws-endpoint"])
        .arg(format!("http://127.0.0.1:{port}"))
        .assert()
        .failure()
        .stderr(predicate::str::contains(format!("127.0.0.1:{port}")));
}
