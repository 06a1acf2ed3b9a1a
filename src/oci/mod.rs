//! OCI plumbing for the runtime shim: the runtime's command line and writing
//! container edits into `config.json`.
//!
//! [`argv`] finds the subcommand and bundle in a runc-style command line, and
//! [`spec`] edits the spec as a JSON value (every field mighook does not own
//! survives). Reading the bundle is [`crate::bundle`]'s, writing files
//! atomically [`crate::atomic_file`]'s.

pub mod argv;
pub mod spec;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum OciError {
    /// A part of config.json mighook must edit has the wrong JSON type.
    #[error("config.json: {pointer} is not {expected}")]
    Shape { pointer: String, expected: &'static str },
}
