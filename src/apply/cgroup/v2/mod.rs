//! cgroup v2 BPF_CGROUP_DEVICE filter extension.
