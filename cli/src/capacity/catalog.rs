//! The EC2 instance types shopctl can size: the ones the environments use and their usual
//! neighbours. vCPUs, memory, network interfaces and IPv4 addresses per interface are AWS's
//! published figures (EC2 User Guide, "Amazon EC2 instance type specifications" and
//! "Maximum IP addresses per network interface"); a type not listed here is a config error,
//! not a guess.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct InstanceType {
    pub name: &'static str,
    pub vcpus: u32,
    /// Memory as EC2 sells it, in MiB (a "GiB" of the specification is 1024 MiB).
    pub memory_mib: u64,
    /// Network interfaces the type can attach.
    pub enis: u32,
    /// Private IPv4 addresses per interface.
    pub ipv4_per_eni: u32,
}

impl InstanceType {
    /// Pods a node of this type runs with the VPC CNI's secondary IPs (no prefix
    /// delegation): every interface's first address is the node's, and the two
    /// host-network pods (aws-node, kube-proxy) need none, as eni-max-pods.txt of the EKS
    /// AMI computes it.
    pub fn max_pods(&self) -> u32 {
        self.enis * (self.ipv4_per_eni - 1) + 2
    }

    /// `m6i` of `m6i.large`.
    pub fn family(&self) -> &'static str {
        self.name.split('.').next().unwrap_or(self.name)
    }
}

const GIB: u64 = 1024;

const fn t(name: &'static str, vcpus: u32, gib: u64, enis: u32, ipv4_per_eni: u32) -> InstanceType {
    InstanceType {
        name,
        vcpus,
        memory_mib: gib * GIB,
        enis,
        ipv4_per_eni,
    }
}

/// Sizes shared by the general purpose (m), compute (c) and memory (r) families of the
/// 5th to 7th generations: large 2 vCPU / 3 ENIs x 10 IPs, xlarge 4 / 4 x 15, 2xlarge
/// 8 / 4 x 15, 4xlarge 16 / 8 x 30; memory per vCPU is 4 GiB (m), 2 (c) or 8 (r).
const CATALOG: &[InstanceType] = &[
    t("t3.medium", 2, 4, 3, 6),
    t("t3.large", 2, 8, 3, 12),
    t("t3.xlarge", 4, 16, 4, 15),
    t("t3.2xlarge", 8, 32, 4, 15),
    t("m5.large", 2, 8, 3, 10),
    t("m5.xlarge", 4, 16, 4, 15),
    t("m5.2xlarge", 8, 32, 4, 15),
    t("m5.4xlarge", 16, 64, 8, 30),
    t("m6i.large", 2, 8, 3, 10),
    t("m6i.xlarge", 4, 16, 4, 15),
    t("m6i.2xlarge", 8, 32, 4, 15),
    t("m6i.4xlarge", 16, 64, 8, 30),
    t("m7i.large", 2, 8, 3, 10),
    t("m7i.xlarge", 4, 16, 4, 15),
    t("m7i.2xlarge", 8, 32, 4, 15),
    t("m7i.4xlarge", 16, 64, 8, 30),
    t("c5.large", 2, 4, 3, 10),
    t("c5.xlarge", 4, 8, 4, 15),
    t("c5.2xlarge", 8, 16, 4, 15),
    t("c5.4xlarge", 16, 32, 8, 30),
    t("c6i.large", 2, 4, 3, 10),
    t("c6i.xlarge", 4, 8, 4, 15),
    t("c6i.2xlarge", 8, 16, 4, 15),
    t("c6i.4xlarge", 16, 32, 8, 30),
    t("r5.large", 2, 16, 3, 10),
    t("r5.xlarge", 4, 32, 4, 15),
    t("r5.2xlarge", 8, 64, 4, 15),
    t("r5.4xlarge", 16, 128, 8, 30),
    t("r6i.large", 2, 16, 3, 10),
    t("r6i.xlarge", 4, 32, 4, 15),
    t("r6i.2xlarge", 8, 64, 4, 15),
    t("r6i.4xlarge", 16, 128, 8, 30),
];

pub fn lookup(name: &str) -> Option<&'static InstanceType> {
    CATALOG.iter().find(|t| t.name == name)
}

/// Every type, in catalog order.
pub fn all() -> &'static [InstanceType] {
    CATALOG
}

pub fn names() -> Vec<&'static str> {
    CATALOG.iter().map(|t| t.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values of amazon-eks-ami's nodeadm/internal/kubelet/eni-max-pods.txt.
    const ENI_MAX_PODS: &[(&str, u32)] = &[
        ("t3.medium", 17),
        ("t3.large", 35),
        ("t3.xlarge", 58),
        ("t3.2xlarge", 58),
        ("m5.large", 29),
        ("m5.xlarge", 58),
        ("m5.2xlarge", 58),
        ("m5.4xlarge", 234),
        ("m6i.large", 29),
        ("m6i.xlarge", 58),
        ("m6i.2xlarge", 58),
        ("m6i.4xlarge", 234),
        ("m7i.large", 29),
        ("m7i.xlarge", 58),
        ("m7i.2xlarge", 58),
        ("m7i.4xlarge", 234),
        ("c5.large", 29),
        ("c5.xlarge", 58),
        ("c5.2xlarge", 58),
        ("c5.4xlarge", 234),
        ("c6i.large", 29),
        ("c6i.xlarge", 58),
        ("c6i.2xlarge", 58),
        ("c6i.4xlarge", 234),
        ("r5.large", 29),
        ("r5.xlarge", 58),
        ("r5.2xlarge", 58),
        ("r5.4xlarge", 234),
        ("r6i.large", 29),
        ("r6i.xlarge", 58),
        ("r6i.2xlarge", 58),
        ("r6i.4xlarge", 234),
    ];

    #[test]
    fn max_pods_from_eni_limits_match_the_eks_ami() {
        assert_eq!(
            ENI_MAX_PODS.len(),
            all().len(),
            "every catalog type is checked"
        );
        for (name, pods) in ENI_MAX_PODS {
            assert_eq!(lookup(name).unwrap().max_pods(), *pods, "{name}");
        }
    }

    #[test]
    fn unknown_types_are_not_guessed() {
        assert!(lookup("m6i.large").is_some());
        assert!(lookup("m6i.huge").is_none());
        assert!(lookup("").is_none());
        assert_eq!(lookup("c6i.xlarge").unwrap().family(), "c6i");
        assert!(names().contains(&"t3.medium"));
    }
}
