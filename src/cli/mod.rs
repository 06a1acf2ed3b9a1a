//! Command-line front end: `list` and `resolve`, and dispatch to the hook.
//!
//! Errors surface as one line on stderr starting `mighook: `, exit status 1,
//! and nothing on stdout.

pub mod args;

use crate::driver::{Driver, DriverError, Gpu, MigDevice, MigMode};
use crate::edits::ContainerEdits;
use crate::request::{RawRequest, Request};
use crate::resolve::{Plan, Resolved};
use crate::settings::{GlobalFlags, OwnEnv, Settings};
use args::{Cli, Command, GlobalArgs, ResolveArgs};
use serde::Serialize;
use std::fmt::Write as _;

/// Any error a command reports: already one line that names what is wrong.
pub type CmdError = String;

pub fn flags(global: &GlobalArgs) -> GlobalFlags {
    GlobalFlags {
        config: global.config.clone(),
        nvml_lib: global.nvml_lib.clone(),
        proc_root: global.proc_root.clone(),
    }
}

/// Settings for commands that run on the host (not inside a hook).
pub fn settings(global: &GlobalArgs) -> Result<Settings, CmdError> {
    let s = Settings::resolve(&flags(global), &OwnEnv::from_process()).map_err(|e| e.to_string())?;
    crate::log::init(s.log_file.clone(), s.log_level);
    Ok(s)
}

/// Settings for the hook and the shim, which act on a container: a `MIGHOOK_*`
/// value that the container's own env also carries is ignored (defence in depth
/// against hooks that inherit a container's environment, CVE-2025-23266).
pub fn container_settings(global: &GlobalArgs, spec: &serde_json::Value) -> Result<Settings, CmdError> {
    let (env, dropped) = OwnEnv::from_process().without_container_values(&crate::oci::container_env(spec));
    let s = Settings::resolve(&flags(global), &env).map_err(|e| e.to_string())?;
    crate::log::init(s.log_file.clone(), s.log_level);
    for var in dropped {
        crate::log::warn(&format!("ignoring {var}: the container's own environment sets the same value"));
    }
    Ok(s)
}

/// Runs a parsed command line; returns what to print on stdout.
pub fn run(cli: Cli) -> Result<String, CmdError> {
    match cli.command {
        Command::List { json } => list(&settings(&cli.global)?.driver(), json),
        Command::Resolve(args) => {
            let s = settings(&cli.global)?;
            resolve(&args, &s, &s.driver())
        }
        Command::Prestart => crate::hook::prestart(&cli.global, &mut std::io::stdin().lock()).map(|_| String::new()),
        Command::Poststart | Command::Poststop => Ok(String::new()),
        Command::Runtime { args } => crate::shim::run(&cli.global, args),
        Command::Cdi(args) => crate::cdi::run(&cli.global, &args),
        Command::Setup(args) => crate::setup::run(&cli.global, &args),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ListedMig {
    name: String,
    uuid: String,
    legacy_name: String,
    slot: u32,
    gi: u32,
    ci: u32,
    profile: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ListedGpu {
    #[serde(flatten)]
    gpu: Gpu,
    mig_devices: Vec<ListedMig>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Listing {
    driver_version: String,
    gpus: Vec<ListedGpu>,
}

fn listed_mig(gpu: &Gpu, m: MigDevice) -> ListedMig {
    ListedMig {
        name: format!("{}:{}", gpu.index, m.slot),
        legacy_name: format!("MIG-{}/{}/{}", gpu.uuid, m.gi, m.ci),
        uuid: m.uuid,
        slot: m.slot,
        gi: m.gi,
        ci: m.ci,
        profile: m.profile,
    }
}

fn listing(driver: &dyn Driver) -> Result<Listing, DriverError> {
    let mut gpus = vec![];
    for index in 0..driver.gpu_count()? {
        let gpu = driver.gpu(index)?;
        let migs = if gpu.mig_mode == MigMode::Enabled { driver.mig_devices(index)? } else { vec![] };
        let mig_devices = migs.into_iter().map(|m| listed_mig(&gpu, m)).collect();
        gpus.push(ListedGpu { gpu, mig_devices });
    }
    Ok(Listing { driver_version: driver.driver_version()?, gpus })
}

pub fn list(driver: &dyn Driver, json: bool) -> Result<String, CmdError> {
    let l = listing(driver).map_err(|e| e.to_string())?;
    if json {
        return Ok(serde_json::to_string_pretty(&l).expect("listing serializes") + "\n");
    }
    let mut out = format!("Driver version: {}\n", l.driver_version);
    let _ = writeln!(out, "{:<4} {:<40} {:<5} {:<16} {:<11} NAME", "GPU", "UUID", "MINOR", "PCI BUS ID", "MIG");
    for g in &l.gpus {
        let mig = match g.gpu.mig_mode {
            MigMode::Enabled => "enabled",
            MigMode::Disabled => "disabled",
            MigMode::Unsupported => "unsupported",
        };
        let _ = writeln!(
            out,
            "{:<4} {:<40} {:<5} {:<16} {:<11} {}",
            g.gpu.index, g.gpu.uuid, g.gpu.minor, g.gpu.pci_bus_id, mig, g.gpu.name
        );
        for m in &g.mig_devices {
            let _ = writeln!(
                out,
                "  MIG {:<5} {:<40} gi {:<2} ci {:<2} {:<11} {}",
                m.name,
                m.uuid,
                m.gi,
                m.ci,
                m.profile.as_deref().unwrap_or("-"),
                m.legacy_name
            );
        }
    }
    Ok(out)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResolveJson<'a> {
    devices: &'a [Resolved],
    #[serde(flatten)]
    edits: &'a ContainerEdits,
    warnings: &'a [String],
}

pub fn resolve(args: &ResolveArgs, settings: &Settings, driver: &dyn Driver) -> Result<String, CmdError> {
    let raw = RawRequest {
        visible_devices: Some(&args.devices),
        driver_capabilities: args.driver_capabilities.as_deref(),
        mig_config: args.mig_config.as_deref(),
        mig_monitor: args.mig_monitor.as_deref(),
        privileged: args.privileged,
    };
    let request = Request::parse(&raw, &settings.default_capabilities).map_err(|e| e.to_string())?;
    let plan = crate::resolve::plan(&request, driver).map_err(|e| e.to_string())?;
    if args.json {
        let j =
            ResolveJson { devices: &plan.selection.resolved, edits: &plan.edits, warnings: &plan.selection.warnings };
        return Ok(serde_json::to_string_pretty(&j).expect("plan serializes") + "\n");
    }
    Ok(describe_plan(&plan))
}

/// The readable form of a plan.
pub fn describe_plan(plan: &Plan) -> String {
    let mut out = String::new();
    if !plan.selection.gpu_container {
        return "not a GPU container (void): no device nodes, no cgroup rules\n".into();
    }
    for r in &plan.selection.resolved {
        let _ = match r {
            Resolved::Gpu { entry, index, uuid, minor, pci_bus_id, .. } => {
                writeln!(out, "{entry}: GPU {index} {uuid} (minor {minor}, PCI {pci_bus_id})")
            }
            Resolved::Mig { entry, name, uuid, gpu_index, gpu_minor, gi, ci, .. } => writeln!(
                out,
                "{entry}: MIG device {name} {uuid} (GPU {gpu_index}, minor {gpu_minor}, GPU instance {gi}, compute instance {ci})"
            ),
        };
    }
    let _ = writeln!(out, "device nodes:");
    for n in &plan.edits.device_nodes {
        let _ = writeln!(out, "  {} {}:{} {:04o} {}", n.kind, n.major, n.minor, n.file_mode, n.path);
    }
    let _ = writeln!(out, "device cgroup rules:");
    for r in &plan.edits.device_rules {
        let _ = writeln!(
            out,
            "  {} {} {}:{} {}",
            if r.allow { "allow" } else { "deny" },
            r.kind,
            r.major,
            r.minor,
            r.access
        );
    }
    for w in &plan.selection.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    out
}
