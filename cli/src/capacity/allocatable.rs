//! What the kubelet of an EKS node offers pods: the instance's CPU and memory less EKS's
//! kube-reserved and the eviction threshold, and pods up to the ENI limit. The formulas are
//! those of the EKS AMI (nodeadm's kubelet config, as bootstrap.sh before it): CPU 6% of
//! the first core, 1% of the second, 0.5% of the third and fourth, 0.25% of the rest;
//! memory 11 MiB per pod the node may run plus 255 MiB; `evictionHard` memory.available
//! 100Mi. No system-reserved is set by EKS.

use serde::Serialize;

use super::catalog::InstanceType;

pub const MIB: u64 = 1024 * 1024;

/// The kubelet's hard eviction threshold for memory (evictionHard memory.available).
pub const EVICTION_HARD_MIB: u64 = 100;

/// The part of the memory EC2 sells that the kernel and firmware keep, so the node's
/// capacity is smaller than the specification: Karpenter's default vmMemoryOverheadPercent
/// (7.5%), in thousandths. Measured overheads are 5-7%; this errs on the safe side.
pub const VM_MEMORY_OVERHEAD_PERMILLE: u64 = 75;

/// CPU, memory and pod slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Allocatable {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub pods: u32,
}

impl Allocatable {
    /// The smaller of each: what a node group of several types can promise for any node.
    pub fn min(self, other: Allocatable) -> Allocatable {
        Allocatable {
            cpu_millis: self.cpu_millis.min(other.cpu_millis),
            memory_bytes: self.memory_bytes.min(other.memory_bytes),
            pods: self.pods.min(other.pods),
        }
    }
}

/// kube-reserved CPU in millicores for a node of `vcpus` cores (integer steps as nodeadm).
pub fn kube_reserved_cpu_millis(vcpus: u32) -> u64 {
    let total = u64::from(vcpus) * 1000;
    // (start, end, hundredths of a percent)
    let ranges = [
        (0, 1000, 600),
        (1000, 2000, 100),
        (2000, 4000, 50),
        (4000, u64::MAX, 25),
    ];
    ranges
        .iter()
        .filter(|(start, _, _)| total > *start)
        .map(|(start, end, rate)| (total.min(*end) - start) * rate / 10_000)
        .sum()
}

/// kube-reserved memory in MiB for a node that runs at most `max_pods` pods.
pub fn kube_reserved_memory_mib(max_pods: u32) -> u64 {
    11 * u64::from(max_pods) + 255
}

/// The memory the kubelet reports as the node's capacity.
pub fn capacity_memory_bytes(t: &InstanceType) -> u64 {
    t.memory_mib * MIB * (1000 - VM_MEMORY_OVERHEAD_PERMILLE) / 1000
}

pub fn of(t: &InstanceType) -> Allocatable {
    let pods = t.max_pods();
    let reserved = (kube_reserved_memory_mib(pods) + EVICTION_HARD_MIB) * MIB;
    Allocatable {
        cpu_millis: u64::from(t.vcpus) * 1000 - kube_reserved_cpu_millis(t.vcpus),
        memory_bytes: capacity_memory_bytes(t).saturating_sub(reserved),
        pods,
    }
}

#[cfg(test)]
mod tests {
    use super::super::catalog::lookup;
    use super::*;

    #[test]
    fn cpu_reservation_follows_the_eks_ami_steps() {
        // EKS's published figures: 60m for 1 core, 70m for 2, 80m for 4, 90m for 8, 110m for 16.
        assert_eq!(kube_reserved_cpu_millis(1), 60);
        assert_eq!(kube_reserved_cpu_millis(2), 70);
        assert_eq!(kube_reserved_cpu_millis(4), 80);
        assert_eq!(kube_reserved_cpu_millis(8), 90);
        assert_eq!(kube_reserved_cpu_millis(16), 110);
    }

    #[test]
    fn memory_reservation_grows_with_max_pods() {
        // m5.large: 29 pods -> 574 MiB, the figure AWS documents for it.
        assert_eq!(kube_reserved_memory_mib(29), 574);
        assert_eq!(kube_reserved_memory_mib(58), 893);
        assert_eq!(kube_reserved_memory_mib(17), 442);
    }

    #[test]
    fn allocatable_per_type() {
        let large = of(lookup("m5.large").unwrap());
        assert_eq!(large.cpu_millis, 1930);
        assert_eq!(large.pods, 29);
        // 8 GiB less 7.5% less 574 + 100 MiB.
        assert_eq!(large.memory_bytes, (8192 * MIB * 925 / 1000) - 674 * MIB);
        let xlarge = of(lookup("m6i.xlarge").unwrap());
        assert_eq!((xlarge.cpu_millis, xlarge.pods), (3920, 58));
        let medium = of(lookup("t3.medium").unwrap());
        assert_eq!((medium.cpu_millis, medium.pods), (1930, 17));
        assert!(medium.memory_bytes < 3300 * MIB && medium.memory_bytes > 3200 * MIB);
        // A node group of two types promises the smaller of each.
        let mixed = of(lookup("c6i.xlarge").unwrap()).min(of(lookup("r6i.large").unwrap()));
        assert_eq!((mixed.cpu_millis, mixed.pods), (1930, 29));
    }
}
