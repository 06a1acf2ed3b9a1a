//! The syscall seam.
//!
//! Everything mighook does to the host or a container goes through [`Sys`]:
//! file-system calls inside a container root ([`FsOps`]) and the bpf(2) calls of
//! the cgroup v2 device filter ([`BpfOps`]). [`LinuxSys`] makes the real calls;
//! tests use recording fakes, so every stage runs without root or a kernel.

pub mod bpf;
#[cfg(any(test, feature = "testing"))]
pub mod fake;
pub mod fs;

pub use bpf::BpfOps;
pub use fs::FsOps;

/// One seam for every syscall mighook makes.
pub trait Sys: FsOps + BpfOps {}
impl<T: FsOps + BpfOps> Sys for T {}

/// The real kernel.
#[derive(Debug, Default, Clone, Copy)]
pub struct LinuxSys;
