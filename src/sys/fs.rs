//! File-system half of the syscall seam (openat2, mknodat, mounts). Owned by the applier.

/// File-system calls, each resolved inside a container root.
pub trait FsOps {}
impl FsOps for super::LinuxSys {}
