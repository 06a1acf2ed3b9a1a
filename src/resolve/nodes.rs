//! From a selection to device nodes: the NVIDIA node set per request.
//!
//! Any GPU container gets `/dev/nvidiactl`; `compute` adds `/dev/nvidia-uvm` and
//! `/dev/nvidia-uvm-tools`, `display` adds `/dev/nvidia-modeset`. Each selected
//! GPU (whole or as a MIG parent) adds `/dev/nvidia<minor>`, and each MIG device
//! adds `/dev/nvidia-caps/nvidia-cap<N>` for its GPU instance and its compute
//! instance, with minors from `mig-minors` (keyed by the GPU's device minor).
//! `NVIDIA_MIG_CONFIG_DEVICES` / `NVIDIA_MIG_MONITOR_DEVICES` add the config /
//! monitor cap and every GI/CI cap of the selected MIG-capable GPUs. IMEX
//! channels add `/dev/nvidia-caps-imex-channels/channel<N>`, each only if the
//! host has that node, with the `nvidia-caps-imex-channels` major.
//!
//! A missing `nvidia-uvm` major (compute) or `nvidia-modeset` module (display)
//! is loaded with the host's modprobe when `load-kmods` is on (NVIDIA's
//! default), and is otherwise, or if still missing, an error: CUDA cannot run
//! without `/dev/nvidia-uvm`, and a clear refusal beats a CUDA error at run time.
//!
//! Owner and mode follow nvidia-modprobe (nvidia-modprobe-utils.c), which makes
//! the host's nodes: `/dev/nvidia<N>`, `/dev/nvidiactl` and `/dev/nvidia-modeset`
//! get the driver's `DeviceFileUID`/`DeviceFileGID`/`DeviceFileMode`
//! (`/proc/driver/nvidia/params`; `nvidia_mknod`, `nvidia_modeset_mknod`), so a
//! host that limits GPUs to a group limits them in the container too, and 0:0
//! 0666 without a params file. `/dev/nvidia-uvm*` are 0:0 0666 whatever the
//! params say (`nvidia_uvm_mknod` reads no proc file). Capability nodes are 0:0
//! with the capability file's mode (`nvidia_cap_mknod` reads only the
//! capability's own proc file, which has no owner lines). IMEX channel nodes
//! keep the host node's owner and mode (nvidia-ctk reads them off the host node).

use super::{ResolveError, Selection};
use crate::driver::imex::{IMEX_MAJOR_NAME, ImexNode, channel_path};
use crate::driver::{DeviceFileParams, Driver, MigCap, MigMode};
use crate::edits::{ContainerEdits, DeviceNode, MODESET_MINOR, NVIDIA_MAJOR, NVIDIACTL_MINOR, UVM_TOOLS_MINOR};
use crate::request::{ImexChannels, Request};

/// Capability nodes the driver creates read-only: GI/CI access and monitor caps.
const CAP_NODE_MODE: u32 = 0o444;
/// The mig-config cap is owner-only.
const CONFIG_CAP_MODE: u32 = 0o400;

/// A capability node: root's, with its capability file's mode.
fn node(path: String, major: u32, minor: u32, file_mode: u32) -> DeviceNode {
    DeviceNode { path, kind: 'c', major, minor, file_mode, uid: 0, gid: 0 }
}

/// A node the driver's params govern: their owner and mode.
fn driver_node(path: String, major: u32, minor: u32, params: &DeviceFileParams) -> DeviceNode {
    DeviceNode { path, kind: 'c', major, minor, file_mode: params.mode, uid: params.uid, gid: params.gid }
}

pub fn cap_path(minor: u32) -> String {
    format!("/dev/nvidia-caps/nvidia-cap{minor}")
}

struct Caps<'d, D: Driver + ?Sized> {
    driver: &'d D,
    major: Option<u32>,
}

impl<D: Driver + ?Sized> Caps<'_, D> {
    fn major(&self, what: &str) -> Result<u32, ResolveError> {
        self.major.ok_or_else(|| {
            ResolveError::Node(format!("{what}: needs /dev/nvidia-caps, but /proc/devices has no nvidia-caps major (driver without MIG capability devices?)"))
        })
    }

    fn driver<T>(&self, what: &str, r: Result<T, crate::driver::DriverError>) -> Result<T, ResolveError> {
        r.map_err(|source| ResolveError::Driver { context: what.to_string(), source })
    }

    /// The node of one capability; its mode from the capability file where present.
    fn node(&self, what: &str, cap: MigCap, minor: Option<u32>, default_mode: u32) -> Result<DeviceNode, ResolveError> {
        let major = self.major(what)?;
        let minor = match minor {
            Some(m) => m,
            None => self.driver(what, self.driver.mig_cap_minor(cap))?.ok_or_else(|| {
                ResolveError::Node(format!("{what}: mig-minors has no entry for {}", cap.proc_path()))
            })?,
        };
        let mode = match self.driver(what, self.driver.cap_file(cap))? {
            Some(file) => {
                // Two driver files disagreeing about a node means we cannot tell which one is right.
                if let Some(m) = file.minor.filter(|m| *m != minor) {
                    return Err(ResolveError::Node(format!(
                        "{what}: capabilities/{} says minor {m} but mig-minors says {minor}",
                        cap.proc_path()
                    )));
                }
                file.mode.map(|m| m & 0o777).unwrap_or(default_mode)
            }
            None => default_mode,
        };
        Ok(node(cap_path(minor), major, minor, mode))
    }
}

fn kmod_err(module: &str) -> impl FnOnce(crate::driver::DriverError) -> ResolveError + '_ {
    move |source| ResolveError::Driver { context: format!("loading {module}"), source }
}

/// The `nvidia-uvm` major, loading the module first when it is missing and
/// `load-kmods` is on. CUDA cannot start without `/dev/nvidia-uvm`, so a compute
/// container on a host without it is refused rather than started broken.
fn uvm_major<D: Driver + ?Sized>(driver: &D) -> Result<u32, ResolveError> {
    let proc_err = |source| ResolveError::Driver { context: "/proc/devices".into(), source };
    if let Some(major) = driver.chardev_major("nvidia-uvm").map_err(proc_err)? {
        return Ok(major);
    }
    let why = if driver.load_kernel_module("nvidia-uvm").map_err(kmod_err("nvidia-uvm"))? {
        match driver.chardev_major("nvidia-uvm").map_err(proc_err)? {
            Some(major) => return Ok(major),
            None => "even after loading the nvidia-uvm kernel module",
        }
    } else {
        "and load-kmods is off (load nvidia-uvm on the host, or set load-kmods = true)"
    };
    Err(ResolveError::Node(format!("compute needs /dev/nvidia-uvm, but /proc/devices has no nvidia-uvm major, {why}")))
}

/// `nvidia-modeset` for `display`: loaded when `/proc/modules` says it is missing
/// and `load-kmods` is on. Where there is no `/proc/modules` to tell, nothing is checked.
/// Still missing: `Some(warning)`, and the node is left out, as NVIDIA's toolkit skips a
/// missing node (only uvm is refused: CUDA cannot run without it, most programs run
/// without modeset, and every `all` or legacy CUDA image asks for `display`).
fn modeset_missing<D: Driver + ?Sized>(driver: &D) -> Result<Option<String>, ResolveError> {
    let loaded = |d: &D| d.kernel_module_loaded("nvidia-modeset").map_err(kmod_err("nvidia-modeset"));
    if loaded(driver)? != Some(false) {
        return Ok(None);
    }
    let why = if driver.load_kernel_module("nvidia-modeset").map_err(kmod_err("nvidia-modeset"))? {
        if loaded(driver)? != Some(false) {
            return Ok(None);
        }
        "even after loading it"
    } else {
        "and load-kmods is off"
    };
    Ok(Some(format!("display: no /dev/nvidia-modeset (the nvidia-modeset kernel module is not loaded, {why})")))
}

/// Builds the edits for a selection.
pub fn build<D: Driver + ?Sized>(
    request: &Request,
    sel: &mut Selection,
    driver: &D,
) -> Result<ContainerEdits, ResolveError> {
    if !sel.gpu_container {
        return Ok(ContainerEdits::default());
    }
    let params = driver
        .device_file_params()
        .map_err(|source| ResolveError::Driver { context: "device file owner and mode".into(), source })?
        .unwrap_or(DeviceFileParams::DEFAULT);
    let mut nodes = vec![driver_node("/dev/nvidiactl".into(), NVIDIA_MAJOR, NVIDIACTL_MINOR, &params)];
    let proc_err = |source| ResolveError::Driver { context: "/proc/devices".into(), source };
    if request.capabilities.compute() {
        // Not the params: nvidia-modprobe's nvidia_uvm_mknod passes no proc path to
        // mknod_helper (`mknod_helper(major, base_minor, NV_UVM_DEVICE_NAME, NULL)`,
        // nvidia-modprobe-utils.c), so init_device_file_parameters keeps its
        // defaults and the host's uvm nodes are always 0:0 0666.
        let uvm = uvm_major(driver)?;
        nodes.push(driver_node("/dev/nvidia-uvm".into(), uvm, 0, &DeviceFileParams::DEFAULT));
        nodes.push(driver_node("/dev/nvidia-uvm-tools".into(), uvm, UVM_TOOLS_MINOR, &DeviceFileParams::DEFAULT));
    }
    if request.capabilities.display() {
        match modeset_missing(driver)? {
            None => nodes.push(driver_node("/dev/nvidia-modeset".into(), NVIDIA_MAJOR, MODESET_MINOR, &params)),
            Some(warning) => sel.warnings.push(warning),
        }
    }
    for gpu in &sel.gpus {
        nodes.push(driver_node(format!("/dev/nvidia{}", gpu.minor), NVIDIA_MAJOR, gpu.minor, &params));
    }
    let needs_caps = !sel.migs.is_empty() || request.mig_config || request.mig_monitor;
    let caps =
        Caps { driver, major: if needs_caps { driver.chardev_major("nvidia-caps").map_err(proc_err)? } else { None } };
    for (gpu, mig) in &sel.migs {
        let what = format!("{}:{}", gpu.index, mig.slot);
        nodes.push(caps.node(&what, MigCap::Gi { gpu_minor: gpu.minor, gi: mig.gi }, None, CAP_NODE_MODE)?);
        nodes.push(caps.node(
            &what,
            MigCap::Ci { gpu_minor: gpu.minor, gi: mig.gi, ci: mig.ci },
            None,
            CAP_NODE_MODE,
        )?);
    }
    for (wanted, cap, var, mode) in [
        (request.mig_config, MigCap::Config, "NVIDIA_MIG_CONFIG_DEVICES", CONFIG_CAP_MODE),
        (request.mig_monitor, MigCap::Monitor, "NVIDIA_MIG_MONITOR_DEVICES", CAP_NODE_MODE),
    ] {
        if !wanted {
            continue;
        }
        nodes.push(caps.node(var, cap, None, mode)?);
        // Future instances too: a container that may create GIs/CIs needs their caps up front.
        for gpu in sel.gpus.iter().filter(|g| g.mig_mode != MigMode::Unsupported) {
            for (cap, minor) in caps.driver(var, driver.mig_caps_of_gpu(gpu.minor))? {
                nodes.push(caps.node(var, cap, Some(minor), CAP_NODE_MODE)?);
            }
        }
    }
    nodes.extend(imex_nodes(&request.imex_channels, sel, driver)?);
    Ok(ContainerEdits::from_nodes(nodes, vec![]))
}

/// The nodes of the IMEX channels asked for: each must be on the host, with the
/// numbers `/proc/devices` gives the channels (major) and its channel (minor).
fn imex_nodes<D: Driver + ?Sized>(
    asked: &ImexChannels,
    sel: &mut Selection,
    driver: &D,
) -> Result<Vec<DeviceNode>, ResolveError> {
    let driver_err = |source| ResolveError::Driver { context: "IMEX channels".into(), source };
    let found: Vec<ImexNode> = match asked {
        ImexChannels::None => return Ok(vec![]),
        ImexChannels::All => driver.imex_channels().map_err(driver_err)?,
        ImexChannels::Channels(channels) => {
            let mut found = Vec::with_capacity(channels.len());
            let mut missing = Vec::new();
            for &c in channels {
                match driver.imex_channel(c).map_err(driver_err)? {
                    Some(node) => found.push(node),
                    None => missing.push(c.to_string()),
                }
            }
            if !missing.is_empty() {
                let has: Vec<String> =
                    driver.imex_channels().map_err(driver_err)?.iter().map(|c| c.channel.to_string()).collect();
                let has = if has.is_empty() { "none".to_string() } else { has.join(", ") };
                let which = if missing.len() == 1 { "channel" } else { "channels" };
                return Err(ResolveError::Node(format!(
                    "IMEX {which} {}: not on this host (no /dev/nvidia-caps-imex-channels/channel<N>; it has {has})",
                    missing.join(", ")
                )));
            }
            found
        }
    };
    if found.is_empty() {
        sel.warnings.push("IMEX channels all: this host has no /dev/nvidia-caps-imex-channels/channel* nodes".into());
        return Ok(vec![]);
    }
    let major = driver
        .chardev_major(IMEX_MAJOR_NAME)
        .map_err(|source| ResolveError::Driver { context: "/proc/devices".into(), source })?
        .ok_or_else(|| {
            ResolveError::Node(format!(
                "IMEX channel {}: /proc/devices has no {IMEX_MAJOR_NAME} major (driver without IMEX?)",
                found[0].channel
            ))
        })?;
    found
        .iter()
        .map(|c| {
            if (c.major, c.minor) != (major, c.channel) {
                return Err(ResolveError::Node(format!(
                    "IMEX channel {}: the host node {} is {}:{}, but the channel is {major}:{}",
                    c.channel,
                    channel_path(c.channel),
                    c.major,
                    c.minor,
                    c.channel
                )));
            }
            Ok(DeviceNode {
                path: channel_path(c.channel),
                kind: 'c',
                major,
                minor: c.minor,
                file_mode: c.mode,
                uid: c.uid,
                gid: c.gid,
            })
        })
        .collect()
}
