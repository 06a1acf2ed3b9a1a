//! mighook: give a container exactly the NVIDIA GPUs and MIG devices it asks for.
//!
//! The flow, one module per stage:
//! request grammar ([`request`]) → resolution ([`resolve`], facts from [`driver`])
//! → container edits ([`edits`]) → applier ([`apply`] for the hook, [`oci`] for
//! the shim, [`cdi`] for CDI specs).

pub mod apply;
pub mod edits;
pub mod sys;
