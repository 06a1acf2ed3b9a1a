//! CDI spec generation (being written).
use crate::cli::{args::GlobalArgs, CmdError};
#[derive(Debug, clap::Args)]
pub struct CdiArgs {}
pub fn run(_global: &GlobalArgs, _args: &CdiArgs) -> Result<String, CmdError> {
    Err("cdi: not implemented yet".into())
}
