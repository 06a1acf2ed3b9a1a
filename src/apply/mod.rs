//! Applier: puts [`crate::edits::ContainerEdits`] into a live container (prestart hook path).
pub mod cgroup;
