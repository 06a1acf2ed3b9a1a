//! Raw command-line arguments, exactly as clap parses them.
//!
//! They mean nothing until [`crate::settings::Settings::resolve`] combines
//! them with mighook's own environment and config file.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "mighook", version, about = "Give a container exactly the NVIDIA GPUs and MIG devices it asks for")]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone, Default)]
pub struct GlobalArgs {
    /// Config file [env: MIGHOOK_CONFIG] [default: /etc/mighook/config.toml]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// libnvidia-ml to load [env: MIGHOOK_NVML_LIB] [default: libnvidia-ml.so.1]
    #[arg(long, global = true, value_name = "PATH")]
    pub nvml_lib: Option<String>,
    /// Root of the driver's /proc files [env: MIGHOOK_PROC_ROOT] [default: /proc]
    #[arg(long, global = true, value_name = "DIR")]
    pub proc_root: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Every GPU and MIG device on this node, with every name it answers to
    List {
        #[arg(long)]
        json: bool,
    },
    /// What a container asking for DEVICES (NVIDIA_VISIBLE_DEVICES syntax) gets
    Resolve(ResolveArgs),
    /// OCI prestart hook: reads the container state on stdin
    Prestart,
    /// OCI poststart hook (nothing to do)
    Poststart,
    /// OCI poststop hook (nothing to do)
    Poststop,
    /// Runtime shim: writes the edits into config.json on create/run, then execs the low-level runtime
    #[command(disable_help_flag = true)]
    Runtime {
        /// The low-level runtime's arguments, passed on unchanged
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<std::ffi::OsString>,
    },
    /// CDI specs for podman, containerd and CRI-O
    Cdi(crate::cdi::CdiArgs),
    /// Register mighook with a container engine
    Setup(crate::setup::SetupArgs),
}

#[derive(Debug, Args)]
pub struct ResolveArgs {
    /// One JSON object instead of the readable plan
    #[arg(long)]
    pub json: bool,
    /// Resolve as for a privileged container (CAP_SYS_ADMIN in the bounding set)
    #[arg(long)]
    pub privileged: bool,
    /// NVIDIA_DRIVER_CAPABILITIES value
    #[arg(long, value_name = "CAPS")]
    pub driver_capabilities: Option<String>,
    /// NVIDIA_MIG_CONFIG_DEVICES value (only `all`)
    #[arg(long, value_name = "all")]
    pub mig_config: Option<String>,
    /// NVIDIA_MIG_MONITOR_DEVICES value (only `all`)
    #[arg(long, value_name = "all")]
    pub mig_monitor: Option<String>,
    /// The device list, e.g. `0:1`, `MIG-<uuid>`, `0,GPU-<uuid>`, `all`
    #[arg(allow_hyphen_values = true)]
    pub devices: String,
}
