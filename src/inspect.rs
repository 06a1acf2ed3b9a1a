//! `mighook list` and `mighook resolve`: what this node has, and what a request would get.
//!
//! Both print for an admin: a readable table or plan by default, one JSON
//! object with `--json`. They take resolved settings and a driver, so they run
//! the same against the NVML of the host and the in-memory test driver.

use crate::driver::{Driver, DriverError, Gpu, MigDevice, MigMode};
use crate::driver_files::{DriverEdits, FileMount, LibraryDir, Symlink, place};
use crate::edits::ContainerEdits;
use crate::request::require::ImageEnv;
use crate::request::{RawRequest, Request, RequestError};
use crate::resolve::{Plan, ResolveError, Resolved};
use crate::settings::Settings;
use serde::Serialize;
use std::fmt::Write as _;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum InspectError {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error("--image-env {0}: not NVIDIA_REQUIRE_*=..., NVIDIA_DISABLE_REQUIRE=... or CUDA_VERSION=...")]
    ImageEnv(String),
}

/// A `mighook resolve` question: a device list and the variables that go with it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolveQuery {
    /// One JSON object instead of the readable plan.
    pub json: bool,
    /// As for a privileged container (CAP_SYS_ADMIN in the bounding set).
    pub privileged: bool,
    /// `NVIDIA_DRIVER_CAPABILITIES`.
    pub driver_capabilities: Option<String>,
    /// `NVIDIA_MIG_CONFIG_DEVICES`.
    pub mig_config: Option<String>,
    /// `NVIDIA_MIG_MONITOR_DEVICES`.
    pub mig_monitor: Option<String>,
    /// Image variables whose requirements are checked (`NAME=VALUE`).
    pub image_env: Vec<String>,
    /// `NVIDIA_IMEX_CHANNELS`.
    pub imex_channels: Option<String>,
    /// `NVIDIA_VISIBLE_DEVICES`.
    pub devices: String,
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

pub fn list(driver: &dyn Driver, json: bool) -> Result<String, DriverError> {
    let l = listing(driver)?;
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
    /// The driver files as CDI places them (at their path relative to the driver
    /// root); the hook and shim use the image's library dir instead.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    mounts: Vec<FileMount>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    symlinks: Vec<Symlink>,
    /// Driver files the capabilities ask for that the host lacks.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    missing_driver_files: &'a [String],
    warnings: &'a [String],
}

pub fn resolve(query: &ResolveQuery, settings: &Settings, driver: &dyn Driver) -> Result<String, InspectError> {
    let raw = RawRequest {
        visible_devices: Some(&query.devices),
        driver_capabilities: query.driver_capabilities.as_deref(),
        mig_config: query.mig_config.as_deref(),
        mig_monitor: query.mig_monitor.as_deref(),
        privileged: query.privileged,
        imex_channels: query.imex_channels.as_deref(),
    };
    let request = Request::parse(&raw, &settings.default_capabilities)?;
    let mut image = image_env(&query.image_env)?;
    if settings.policy.disable_require {
        image.disable_require();
    }
    let plan = crate::resolve::plan_checked(&request, &image, driver)?;
    if query.json {
        let placed = host_relative(&plan);
        let j = ResolveJson {
            devices: &plan.selection.resolved,
            edits: &plan.edits,
            mounts: placed.mounts,
            symlinks: placed.symlinks,
            missing_driver_files: plan.edits.driver_files.as_ref().map_or(&[], |f| &f.missing),
            warnings: &plan.selection.warnings,
        };
        return Ok(serde_json::to_string_pretty(&j).expect("plan serializes") + "\n");
    }
    Ok(describe_plan(&plan))
}

/// The image variables of `--image-env`; anything but a requirement variable is an error.
fn image_env(vars: &[String]) -> Result<ImageEnv, InspectError> {
    for kv in vars {
        let name = kv.split_once('=').map(|(n, _)| n);
        if !name
            .is_some_and(|n| n.starts_with("NVIDIA_REQUIRE_") || n == "NVIDIA_DISABLE_REQUIRE" || n == "CUDA_VERSION")
        {
            return Err(InspectError::ImageEnv(crate::request::shown(kv)));
        }
    }
    Ok(ImageEnv::from_env(vars.iter().map(String::as_str)))
}

/// The driver files of a plan as CDI places them.
fn host_relative(plan: &Plan) -> DriverEdits {
    plan.edits.driver_files.as_ref().map(|f| place(f, LibraryDir::HostRelative)).unwrap_or_default()
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
        // The owner only where the driver's params make it other than root's.
        let owner = if (n.uid, n.gid) == (0, 0) { String::new() } else { format!(" (owner {}:{})", n.uid, n.gid) };
        let _ = writeln!(out, "  {} {}:{} {:04o} {}{owner}", n.kind, n.major, n.minor, n.file_mode, n.path);
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
    let placed = host_relative(plan);
    if !placed.mounts.is_empty() {
        let _ = writeln!(out, "driver files (read-only bind mounts unless said):");
        for m in &placed.mounts {
            let _ = writeln!(
                out,
                "  {} -> {} ({})",
                m.host_path.display(),
                m.container_path.display(),
                m.options().join(",")
            );
        }
        for l in &placed.symlinks {
            let _ = writeln!(out, "  link {} -> {}", l.link.display(), l.target);
        }
    }
    for w in &plan.selection.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    out
}
