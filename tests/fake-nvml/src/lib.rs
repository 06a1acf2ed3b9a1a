//! Test-only fake NVIDIA driver. Built as a cdylib it is a drop-in
//! `libnvidia-ml.so.1` that answers NVML calls from a topology JSON file;
//! as an rlib it offers the topology model, the fake node generator (the
//! driver's `/proc` files and `/dev` nodes) and helpers to find fixtures.
//!
//! Environment of the library: `FAKE_NVML_TOPOLOGY` (topology path; default
//! `topology.json` next to the loaded .so) and `FAKE_NVML_TRACE` (file that
//! gets one line per NVML call).

pub mod ffi;
pub mod generated;
pub mod locate;
pub mod node;
pub mod topology;

pub use node::{Node, NodeError};
pub use topology::{Failure, Gpu, MigDevice, MigMode, PciAddr, Topology, TopologyError};
