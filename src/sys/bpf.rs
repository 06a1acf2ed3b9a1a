//! bpf(2) half of the syscall seam. Owned by the cgroup v2 device filter.

/// bpf(2) calls for BPF_CGROUP_DEVICE programs.
pub trait BpfOps {}
impl BpfOps for super::LinuxSys {}
