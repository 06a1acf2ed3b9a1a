//! Device cgroup rules for a live container: v1 `devices.allow`, v2 BPF device filter.
pub mod v2;
