//! Command-line front end: the only module that knows clap, and the only one
//! that turns errors into text.
//!
//! [`args`] holds the raw arguments as clap parses them. [`run`] resolves the
//! settings once (flags over mighook's own environment over the config file),
//! hands each command `&Settings` and its own plain options, and gets back a
//! typed error; `main` prints that as the one `mighook: ` line on stderr with
//! exit status 1, and nothing on stdout.

pub mod args;

use crate::settings::{GlobalFlags, OwnEnv, Settings, SettingsError};
use args::{
    CdiArgs, CdiSubcommand, Cli, Command, EngineArg, FormatArg, GlobalArgs, InstallArgs, ResolveArgs, SetupArgs,
};
use thiserror::Error;

/// Any command's error; its text is already the one line that names what is wrong.
#[derive(Debug, Error)]
pub enum CliError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Driver(#[from] crate::driver::DriverError),
    #[error(transparent)]
    Inspect(#[from] crate::inspect::InspectError),
    #[error(transparent)]
    Hook(#[from] crate::hook::HookError),
    #[error(transparent)]
    Shim(#[from] crate::shim::ShimError),
    #[error(transparent)]
    Cdi(#[from] crate::cdi::CdiError),
    #[error(transparent)]
    Setup(#[from] crate::setup::SetupError),
    #[error(transparent)]
    System(#[from] crate::system::SystemError),
    #[error("proc-mask: {0}")]
    ProcMaskArgs(String),
    #[error(transparent)]
    Install(#[from] crate::install::InstallError),
    #[error(transparent)]
    NvidiaHook(#[from] crate::cdi::nvidia_hook::NvidiaHookError),
}

pub fn flags(global: &GlobalArgs) -> GlobalFlags {
    GlobalFlags {
        config: global.config.clone(),
        nvml_lib: global.nvml_lib.clone(),
        proc_root: global.proc_root.clone(),
        driver_root: global.driver_root.clone(),
    }
}

/// Runs a parsed command line; returns what to print on stdout.
pub fn run(cli: Cli) -> Result<String, CliError> {
    let settings = Settings::resolve(&flags(&cli.global), &OwnEnv::from_process())?;
    // The hook and the shim start the log themselves, once the container's bundle has
    // been checked for copies of mighook's own variables.
    if !matches!(
        cli.command,
        Command::Prestart
            | Command::Runtime { .. }
            | Command::CdiHook(_)
            | Command::ProcMask(_)
            | Command::NvidiaCdiHook(_)
    ) {
        settings.init_log();
    }
    Ok(match cli.command {
        Command::List { json } => crate::inspect::list(&settings.driver(), json)?,
        Command::Resolve(args) => crate::inspect::resolve(&resolve_query(args), &settings, &settings.driver())?,
        Command::Prestart => crate::hook::prestart(&settings, &mut std::io::stdin().lock()).map(|()| String::new())?,
        Command::Poststart | Command::Poststop => String::new(),
        Command::Runtime { args } => crate::shim::run(&settings, args)?,
        Command::Cdi(args) => crate::cdi::run(&settings, &cdi_command(args))?,
        Command::CdiHook(args) => {
            let edits = crate::cdi::hook_edits(&args.links, &args.libs, args.cuda_compat.as_deref())?;
            crate::hook::cdi_hook(&settings, &mut std::io::stdin().lock(), &edits).map(|()| String::new())?
        }
        Command::Setup(args) => crate::setup::run(&settings, &setup_options(args))?,
        Command::System(args) => system(&settings, args)?,
        Command::ProcMask(a) => {
            let sel = crate::proc_driver::ProcSelection::from_args(&a.gpus, &a.migs, a.mig_admin)
                .map_err(CliError::ProcMaskArgs)?;
            crate::hook::proc_mask_hook(&settings, &mut std::io::stdin().lock(), &sel).map(|()| String::new())?
        }
        Command::Install(args) => crate::install::run(&flags(&cli.global), &install_options(args))?,
        Command::NvidiaCdiHook(args) => {
            let hook = nvidia_hook(args.hook);
            crate::cdi::nvidia_hook::run(&settings, &mut std::io::stdin().lock(), &hook).map(|()| String::new())?
        }
    })
}

fn system(settings: &Settings, a: args::SystemArgs) -> Result<String, crate::system::SystemError> {
    match a.command {
        args::SystemSubcommand::CreateDeviceNodes(d) => crate::system::create_device_nodes(settings, d.dev_root),
        args::SystemSubcommand::CreateDevCharSymlinks(d) => {
            crate::system::create_dev_char_symlinks(settings, d.dev_root)
        }
    }
}

fn nvidia_hook(c: args::NvidiaHookCommand) -> crate::cdi::nvidia_hook::NvidiaHook {
    use crate::cdi::nvidia_hook::NvidiaHook;
    use args::NvidiaHookCommand as C;
    match c {
        C::CreateSymlinks { links } => NvidiaHook::CreateSymlinks { links },
        C::UpdateLdcache { folders, ldconfig_path: _ } => NvidiaHook::UpdateLdcache { folders },
        C::Chmod { mode, paths } => NvidiaHook::Chmod { mode, paths },
        C::EnableCudaCompat { host_driver_version, host_cuda_version: _, cuda_compat_container_root } => {
            NvidiaHook::EnableCudaCompat { host_driver_version, compat_root: cuda_compat_container_root }
        }
        C::DisableDeviceNodeModification => NvidiaHook::DisableDeviceNodeModification,
        C::UpdateApplicationProfile => NvidiaHook::UpdateApplicationProfile,
    }
}

fn resolve_query(a: ResolveArgs) -> crate::inspect::ResolveQuery {
    crate::inspect::ResolveQuery {
        json: a.json,
        privileged: a.privileged,
        driver_capabilities: a.driver_capabilities,
        mig_config: a.mig_config,
        mig_monitor: a.mig_monitor,
        image_env: a.image_env,
        imex_channels: a.imex_channels,
        devices: a.devices,
    }
}

fn cdi_command(a: CdiArgs) -> crate::cdi::CdiCommand {
    match a.command {
        CdiSubcommand::List => crate::cdi::CdiCommand::List,
        CdiSubcommand::Generate(g) => crate::cdi::CdiCommand::Generate {
            output: g.output,
            format: g.format.map(|f| match f {
                FormatArg::Json => crate::cdi::Format::Json,
                FormatArg::Yaml => crate::cdi::Format::Yaml,
            }),
            check: g.check,
            kind: crate::cdi::spec::generated_kind(&g.kind),
        },
    }
}

fn engine(e: EngineArg) -> crate::setup::Engine {
    use crate::setup::Engine;
    match e {
        EngineArg::Docker => Engine::Docker,
        EngineArg::Containerd => Engine::Containerd,
        EngineArg::Crio => Engine::Crio,
        EngineArg::Podman => Engine::Podman,
    }
}

fn install_options(a: InstallArgs) -> crate::install::InstallOptions {
    crate::install::InstallOptions { host_root: a.host_root, engine: a.engine.map(engine), uninstall: a.uninstall }
}

fn setup_options(a: SetupArgs) -> crate::setup::SetupOptions {
    crate::setup::SetupOptions {
        engine: engine(a.engine),
        dry_run: a.dry_run,
        binary: a.binary,
        config_root: a.config_root,
        set_as_default: a.set_as_default,
        undo: a.undo,
    }
}
