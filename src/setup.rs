//! Engine setup (being written).
use crate::cli::{args::GlobalArgs, CmdError};
#[derive(Debug, clap::Args)]
pub struct SetupArgs {}
pub fn run(_global: &GlobalArgs, _args: &SetupArgs) -> Result<String, CmdError> {
    Err("setup: not implemented yet".into())
}
