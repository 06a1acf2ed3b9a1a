//! Recording fakes of the syscall seam, for tests and benches (feature `testing`).
//!
//! [`fs`] is an in-memory file tree behind [`crate::sys::FsOps`], [`bpf`] an
//! in-memory kernel behind [`crate::sys::BpfOps`]; both log every call, so a
//! stage's decisions are testable without root or a kernel.

pub mod bpf;
pub mod fs;
