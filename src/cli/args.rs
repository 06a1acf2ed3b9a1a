//! Raw command-line arguments, exactly as clap parses them.
//!
//! They mean nothing until [`crate::settings::Settings::resolve`] combines
//! them with mighook's own environment and config file; [`super::run`] turns
//! each subcommand's arguments into that command's plain options.

use clap::{Args, Parser, Subcommand, ValueEnum};
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
    /// libnvidia-ml to load [env: MIGHOOK_NVML_LIB] [default: libnvidia-ml.so.1, through the driver root's ld.so.cache]
    #[arg(long, global = true, value_name = "PATH")]
    pub nvml_lib: Option<String>,
    /// Root of the driver's /proc files [env: MIGHOOK_PROC_ROOT] [default: /proc]
    #[arg(long, global = true, value_name = "DIR")]
    pub proc_root: Option<PathBuf>,
    /// Where the driver's user-space files live [env: MIGHOOK_DRIVER_ROOT] [default: /]
    #[arg(long, global = true, value_name = "DIR")]
    pub driver_root: Option<PathBuf>,
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
    Cdi(CdiArgs),
    /// createContainer hook of mighook's CDI spec: SONAME links and the loader cache (reads the state on stdin)
    CdiHook(CdiHookArgs),
    /// Register mighook with a container engine
    Setup(SetupArgs),
    /// Upkeep of the host's NVIDIA device nodes
    System(SystemArgs),
    /// Prestart hook the shim adds: masks the container's /proc/driver/nvidia (reads the state on stdin)
    #[command(hide = true)]
    ProcMask(ProcMaskArgs),
    /// Installer image entrypoint: install mighook onto the host root mounted at DIR (and configure its engine)
    Install(InstallArgs),
    /// NVIDIA's CDI hooks (argv0 `nvidia-cdi-hook`, or `nvidia-ctk hook`), for specs nvidia-ctk generated
    #[command(name = "nvidia-cdi-hook", hide = true)]
    NvidiaCdiHook(NvidiaCdiHookArgs),
}

// ---------------------------------------------------------------------------
// NVIDIA's CDI hooks: exactly the flags `nvidia-cdi-hook` takes. Its slice flags also
// split on commas (urfave/cli), so these do too.

#[derive(Debug, Args)]
pub struct NvidiaCdiHookArgs {
    /// Accepted for NVIDIA's hook; mighook's log level comes from its config file
    #[arg(short = 'd', long)]
    pub debug: bool,
    /// Accepted for NVIDIA's hook; mighook's log level comes from its config file
    #[arg(long)]
    pub quiet: bool,
    #[command(subcommand)]
    pub hook: NvidiaHookCommand,
}

#[derive(Debug, Subcommand)]
pub enum NvidiaHookCommand {
    /// Make symlinks in the container
    CreateSymlinks {
        /// TARGET::LINK (LINK absolute)
        #[arg(long = "link", value_name = "TARGET::LINK", value_delimiter = ',')]
        links: Vec<String>,
    },
    /// Merge the libraries of FOLDERs into the container's loader cache (no ldconfig runs)
    UpdateLdcache {
        #[arg(long = "folder", value_name = "DIR", value_delimiter = ',')]
        folders: Vec<String>,
        /// Accepted and unused: mighook runs no ldconfig
        #[arg(long, value_name = "PATH")]
        ldconfig_path: Option<String>,
    },
    /// Set the mode of directories and device nodes under /dev
    Chmod {
        #[arg(long, value_name = "MODE")]
        mode: String,
        #[arg(long = "path", value_name = "PATH", value_delimiter = ',')]
        paths: Vec<String>,
    },
    /// Put the image's CUDA compat libraries first when newer than the host driver
    EnableCudaCompat {
        #[arg(long, value_name = "VERSION")]
        host_driver_version: Option<String>,
        /// Accepted and unused (NVIDIA uses it only without a driver version)
        #[arg(long, value_name = "VERSION")]
        host_cuda_version: Option<String>,
        #[arg(long, value_name = "DIR")]
        cuda_compat_container_root: Option<String>,
    },
    /// Make the container's /proc/driver/nvidia/params say ModifyDeviceFiles: 0
    DisableDeviceNodeModification,
    /// Limit EGL and Vulkan to the container's GPUs (the driver's application profile)
    UpdateApplicationProfile,
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
    /// An image variable whose requirements are checked: NVIDIA_REQUIRE_*, NVIDIA_DISABLE_REQUIRE or CUDA_VERSION
    #[arg(long = "image-env", value_name = "NAME=VALUE")]
    pub image_env: Vec<String>,
    /// NVIDIA_IMEX_CHANNELS value (`0,3` or `all`): the host's channel nodes it gives
    #[arg(long, value_name = "LIST")]
    pub imex_channels: Option<String>,
    /// The device list, e.g. `0:1`, `MIG-<uuid>`, `0,GPU-<uuid>`, `all`
    #[arg(allow_hyphen_values = true)]
    pub devices: String,
}

#[derive(Debug, Args)]
pub struct CdiHookArgs {
    /// A symlink to make in the container: TARGET::LINK (LINK absolute)
    #[arg(long = "link", value_name = "TARGET::LINK")]
    pub links: Vec<String>,
    /// A loader-cache entry to merge into the container's /etc/ld.so.cache: SONAME::PATH
    #[arg(long = "lib", value_name = "SONAME::PATH")]
    pub libs: Vec<String>,
    /// The host driver's version: the image's CUDA compat libraries go first when newer
    #[arg(long = "cuda-compat", value_name = "DRIVER_VERSION")]
    pub cuda_compat: Option<String>,
}

#[derive(Debug, Args)]
pub struct CdiArgs {
    #[command(subcommand)]
    pub command: CdiSubcommand,
}

#[derive(Debug, Subcommand)]
pub enum CdiSubcommand {
    /// Print (or write) the CDI spec for every GPU and MIG device on this node
    Generate(GenerateArgs),
    /// Print every fully-qualified CDI device name, one per line
    List,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Write the spec here (atomically, mode 0644) instead of printing it
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// json or yaml [default: yaml for a .yaml/.yml FILE, else json]
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// Write nothing: exit 0 if FILE already holds exactly this spec, 1 if it is stale
    #[arg(long, requires = "output")]
    pub check: bool,
    /// The spec's CDI kind: GPUs and MIG devices (nvidia-ctk's, or the device plugin's
    /// names), or the host's IMEX channels (as `nvidia-ctk cdi generate --mode imex`)
    #[arg(long, default_value = crate::cdi::spec::KIND, value_parser = crate::cdi::spec::GENERATED_KINDS)]
    pub kind: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    Json,
    Yaml,
}

#[derive(Debug, Args)]
pub struct SetupArgs {
    /// The engine to register mighook with
    #[arg(value_enum)]
    pub engine: EngineArg,
    /// Print what would change (diffs, new files) and write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// The mighook binary the engine should run [default: this executable]
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
    /// Directory the engine's config files are under; paths written into them point at the files written
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub config_root: PathBuf,
    /// Make `nvidia` the engine's default runtime (docker, containerd, CRI-O), as `nvidia-ctk runtime configure --set-as-default`
    #[arg(long, conflicts_with = "undo")]
    pub set_as_default: bool,
    /// Put back what an earlier `mighook setup ENGINE` changed (from its backups), and remove what it created
    #[arg(long)]
    pub undo: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EngineArg {
    Docker,
    Containerd,
    Crio,
    Podman,
}

#[derive(Debug, Args)]
pub struct SystemArgs {
    #[command(subcommand)]
    pub command: SystemSubcommand,
}

#[derive(Debug, Subcommand)]
pub enum SystemSubcommand {
    /// Create the host's /dev/nvidia* nodes (GPUs, control, uvm, modeset, MIG caps) with the driver's owner and mode
    CreateDeviceNodes(DevRootArgs),
    /// Create /dev/char/<major>:<minor> links for the NVIDIA nodes (keeps GPUs across `systemctl daemon-reload`)
    CreateDevCharSymlinks(DevRootArgs),
}

#[derive(Debug, Args)]
pub struct DevRootArgs {
    /// The host's /dev [default: the config's dev-root, else /dev]
    #[arg(long, value_name = "DIR")]
    pub dev_root: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ProcMaskArgs {
    /// PCI bus id of a selected GPU
    #[arg(long = "gpu", value_name = "BUS-ID")]
    pub gpus: Vec<String>,
    /// A selected MIG device: its GPU's device minor, GPU instance and compute instance
    #[arg(long = "mig", value_name = "MINOR:GI:CI")]
    pub migs: Vec<String>,
    /// The container administers MIG (NVIDIA_MIG_CONFIG_DEVICES / NVIDIA_MIG_MONITOR_DEVICES)
    #[arg(long)]
    pub mig_admin: bool,
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// The node's root filesystem, as mounted into the installer's container
    #[arg(long, value_name = "DIR")]
    pub host_root: PathBuf,
    /// Register the installed mighook with this engine (`mighook setup ENGINE` on the host)
    #[arg(long, value_enum)]
    pub engine: Option<EngineArg>,
    /// Undo every engine setup and remove what install put on the host
    #[arg(long, conflicts_with = "engine")]
    pub uninstall: bool,
}
