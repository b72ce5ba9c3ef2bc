//! The EKS managed add-ons of every cluster (templates/terraform/addons.tf.hbs), each
//! pinned to an exact add-on version per Kubernetes version. An `eks.version` missing here
//! is a config error (config/validate.rs): a cluster never gets "whatever is latest".
//!
//! Where the versions come from (docs/k8s.md, "Cluster add-ons"):
//! - vpc-cni, coredns, kube-proxy: the "versions" tables of the Amazon EKS user guide
//!   (managing-vpc-cni, managing-coredns, managing-kube-proxy), the latest add-on version
//!   AWS lists for each Kubernetes version;
//! - aws-ebs-csi-driver, metrics-server: AWS publishes no per-Kubernetes-version table for
//!   them (the guide points to `aws eks describe-addon-versions`); the versions are ones
//!   that API listed for 1.33 in the same period, which EKS offers for 1.31 to 1.33.
//!
//! Before moving a pin, check it with
//! `aws eks describe-addon-versions --kubernetes-version <v> --addon-name <name>`.

use serde::Serialize;

use crate::config::{Environment, LoadedEnvironment};

/// One add-on version per add-on, for one Kubernetes version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Pinned {
    pub vpc_cni: &'static str,
    pub coredns: &'static str,
    pub kube_proxy: &'static str,
    pub aws_ebs_csi_driver: &'static str,
    pub metrics_server: &'static str,
}

const EBS_CSI_DRIVER: &str = "v1.53.0-eksbuild.1";
const METRICS_SERVER: &str = "v0.8.0-eksbuild.3";
const VPC_CNI: &str = "v1.20.1-eksbuild.3";

/// By `eks.version`, oldest first.
const PINNED: &[(&str, Pinned)] = &[
    (
        "1.31",
        Pinned {
            vpc_cni: VPC_CNI,
            coredns: "v1.11.4-eksbuild.24",
            kube_proxy: "v1.31.13-eksbuild.2",
            aws_ebs_csi_driver: EBS_CSI_DRIVER,
            metrics_server: METRICS_SERVER,
        },
    ),
    (
        "1.32",
        Pinned {
            vpc_cni: VPC_CNI,
            coredns: "v1.11.4-eksbuild.24",
            kube_proxy: "v1.32.9-eksbuild.2",
            aws_ebs_csi_driver: EBS_CSI_DRIVER,
            metrics_server: METRICS_SERVER,
        },
    ),
    (
        "1.33",
        Pinned {
            vpc_cni: VPC_CNI,
            coredns: "v1.12.4-eksbuild.1",
            kube_proxy: "v1.33.5-eksbuild.2",
            aws_ebs_csi_driver: EBS_CSI_DRIVER,
            metrics_server: METRICS_SERVER,
        },
    ),
];

/// The add-on versions of a Kubernetes version, when shopctl pins them.
pub fn pinned(eks_version: &str) -> Option<&'static Pinned> {
    PINNED
        .iter()
        .find(|(v, _)| *v == eks_version)
        .map(|(_, p)| p)
}

/// The Kubernetes versions with pinned add-ons.
pub fn supported_versions() -> Vec<&'static str> {
    PINNED.iter().map(|(v, _)| *v).collect()
}

/// Whether the add-ons are left out of the rendered Terraform: exactly when the environment
/// targets an AWS emulator (`aws.endpoint_url`, or `--aws-endpoint`), which has no EKS
/// add-on API. There is no setting of its own, so a real account always gets them.
pub fn skipped_for_emulator(config: &Environment) -> bool {
    config.aws.endpoint_url.is_some()
}

/// Why the add-ons are skipped, as `status --json` reports it.
pub const SKIPPED_REASON: &str =
    "the target is an AWS emulator (aws.endpoint_url), which has no EKS add-on API";

/// The line `plan`, `apply` and `status` print when the add-ons are left out.
pub fn skipped_line(env: &str) -> String {
    format!(
        "{env}: EKS add-ons (vpc-cni, coredns, kube-proxy, aws-ebs-csi-driver, metrics-server) are skipped \
         because {SKIPPED_REASON}"
    )
}

/// Prints [`skipped_line`] to stderr when the environment's add-ons are skipped.
pub fn report_skipped(env: &LoadedEnvironment) {
    if skipped_for_emulator(&env.config) {
        eprintln!("{}", skipped_line(&env.name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pin_is_an_exact_eks_build() {
        for (version, p) in PINNED {
            for v in [
                p.vpc_cni,
                p.coredns,
                p.kube_proxy,
                p.aws_ebs_csi_driver,
                p.metrics_server,
            ] {
                let (semver, build) = v.split_once("-eksbuild.").unwrap();
                assert!(
                    semver.starts_with('v') && semver[1..].split('.').count() == 3,
                    "{v}"
                );
                assert!(build.parse::<u32>().is_ok(), "{v}");
            }
            // kube-proxy follows the control plane's minor version.
            assert!(
                p.kube_proxy.starts_with(&format!("v{version}.")),
                "{version}"
            );
        }
        assert_eq!(pinned("1.33").unwrap().coredns, "v1.12.4-eksbuild.1");
        assert!(pinned("1.29").is_none());
    }
}
