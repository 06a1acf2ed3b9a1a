//! OCI bundle plumbing for the runtime shim: the runtime's command line, the
//! request a `config.json` carries, and writing container edits into it.
//!
//! [`argv`] finds the subcommand and bundle in a runc-style command line,
//! [`spec`] edits the spec as a JSON value (every field mighook does not own
//! survives), and [`file`] replaces a file atomically with the same owner and
//! mode. [`plan_from_spec`] is the request-to-plan step the prestart hook also
//! performs, kept here so the shim does not copy it.

pub mod argv;
pub mod file;
pub mod spec;

use crate::driver::Driver;
use crate::request::source::{self, SourcePolicy};
use crate::request::{DriverCapabilities, Request, RequestError};
use crate::resolve::{Plan, ResolveError};
use serde_json::Value;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum OciError {
    /// A part of config.json mighook must edit has the wrong JSON type.
    #[error("config.json: {pointer} is not {expected}")]
    Shape { pointer: String, expected: &'static str },
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error("{path}: {reason}")]
    Io { path: String, reason: String },
}

/// What a spec asks for under the admin's policy, resolved against the driver.
///
/// Notes from reading the spec (an env request refused by policy, say) go to the log.
pub fn plan_from_spec<D: Driver + ?Sized>(
    spec: &Value,
    policy: &SourcePolicy,
    default_capabilities: &DriverCapabilities,
    driver: &D,
) -> Result<Plan, OciError> {
    let found = source::from_spec(spec, policy);
    for note in &found.notes {
        crate::log::info(note);
    }
    let request = Request::parse(&found.raw(), default_capabilities)?;
    Ok(crate::resolve::plan(&request, driver)?)
}

/// The container's `process.env` as strings (for the settings guard against copied `MIGHOOK_*` values).
pub fn container_env(spec: &Value) -> Vec<String> {
    let env = spec.pointer("/process/env").and_then(Value::as_array);
    env.map(|e| e.iter().filter_map(Value::as_str).map(str::to_string).collect()).unwrap_or_default()
}
