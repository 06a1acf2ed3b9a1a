//! mighook: give a container exactly the NVIDIA GPUs and MIG devices it asks for.
//!
//! The flow, one module per stage:
//! request grammar ([`request`]) → resolution ([`resolve`], facts from [`driver`])
//! → container edits ([`edits`]) → applier ([`apply`] for the hook).

pub mod apply;
pub mod atomic_file;
pub mod bundle;
pub mod cdi;
pub mod cli;
pub mod config;
pub mod driver;
pub mod driver_files;
pub mod edits;
pub mod hook;
pub mod inspect;
pub mod install;
pub mod ldcache;
pub mod log;
pub mod oci;
pub mod proc_driver;
pub mod request;
pub mod resolve;
pub mod settings;
pub mod setup;
pub mod shim;
pub mod sys;
pub mod system;
