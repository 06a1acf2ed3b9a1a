//! Test-only fake NVIDIA driver. Built as a cdylib it is a drop-in
//! `libnvidia-ml.so.1` that answers NVML calls from a topology JSON file;
//! as an rlib it offers the topology model, the fake node generator (the
//! driver's `/proc` files and `/dev` nodes) and helpers to find fixtures.
//!
//! Environment of the library: `FAKE_NVML_TOPOLOGY` (topology path; default
//! the topology embedded in a driver-root copy of the library, then
//! `topology.json` next to the loaded .so), `FAKE_NVML_TRACE` (file that
//! gets one line per NVML call) and `FAKE_NVML_DEV_ROOT` (replaces `/dev` for
//! the container view, see `view`; unit tests only).
//!
//! `driver` writes a whole fake driver installation (`fake-node --driver-root`).

pub mod driver;
pub mod ffi;
pub mod generated;
pub mod locate;
pub mod node;
pub mod topology;
pub mod view;

pub use node::{Node, NodeError};
pub use topology::{Failure, Gpu, MigDevice, MigMode, PciAddr, Topology, TopologyError};
