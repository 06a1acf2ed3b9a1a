//! Runtime shim (being written).
use crate::cli::{args::GlobalArgs, CmdError};
pub fn run(_global: &GlobalArgs, _args: Vec<std::ffi::OsString>) -> Result<String, CmdError> {
    Err("runtime: not implemented yet".into())
}
