//! `mighook system`: upkeep of the host's NVIDIA device nodes.
//!
//! - `create-device-nodes` ([`nodes`]): makes `/dev/nvidia<minor>` for every GPU
//!   the driver has, `/dev/nvidiactl`, `/dev/nvidia-modeset`, `/dev/nvidia-uvm`,
//!   `/dev/nvidia-uvm-tools` and `/dev/nvidia-caps/nvidia-cap<N>` for the MIG
//!   capabilities that exist now, with the owner and mode nvidia-modprobe gives
//!   them, as `nvidia-ctk system create-device-nodes` and nvidia-modprobe do.
//!   Hosts without the setuid nvidia-modprobe (or with `ModifyDeviceFiles=0`)
//!   have none of these until something makes them.
//! - `create-dev-char-symlinks` ([`dev_char`]): `/dev/char/<major>:<minor>`
//!   links for each of them. systemd resolves a unit's device rules through
//!   `/dev/char`; without the links, a `systemctl daemon-reload` re-applies a
//!   container's cgroup without its GPU rules and the container loses its GPUs
//!   (NVIDIA container toolkit issue 48).
//!
//! Both are idempotent: a correct entry is left alone, a wrong one fixed. All
//! work goes through [`crate::sys::FsOps`] on a directory fd of the dev root,
//! final components never followed, so nothing is ever made or changed through
//! a symlink. GPU minors come from `/proc/driver/nvidia/gpus/*/information`, not
//! NVML: NVML itself needs `/dev/nvidiactl`.

pub mod dev_char;
pub mod nodes;

use crate::driver::Driver;
use crate::settings::Settings;
use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SystemError {
    #[error("{context}: {source}")]
    Driver { context: String, source: crate::driver::DriverError },
    #[error("cannot read {}: {reason}", path.display())]
    Proc { path: PathBuf, reason: String },
    #[error("{}: {reason}", path.display())]
    Fs { path: PathBuf, reason: String },
    #[error("{} is {what}, not {want}: refusing to touch it", path.display())]
    InTheWay { path: PathBuf, what: &'static str, want: &'static str },
}

/// The dev root to work on: `--dev-root` over the settings' `dev-root`.
pub fn dev_root(settings: &Settings, flag: Option<PathBuf>) -> PathBuf {
    flag.unwrap_or_else(|| settings.dev_root.clone())
}

/// `mighook system create-device-nodes`: what was done, one line per node.
pub fn create_device_nodes(settings: &Settings, dev_root_flag: Option<PathBuf>) -> Result<String, SystemError> {
    let driver = settings.driver();
    let minors = nodes::gpu_minors(&settings.proc_root)?;
    let plan = nodes::plan(&driver, &minors)?;
    let root = dev_root(settings, dev_root_flag);
    let lines = nodes::ensure(&crate::sys::LinuxSys, &root, &plan.nodes)?;
    Ok(plan.notes.iter().chain(&lines).map(|l| format!("{l}\n")).collect())
}

/// `mighook system create-dev-char-symlinks`: what was done, one line per link.
pub fn create_dev_char_symlinks(settings: &Settings, dev_root_flag: Option<PathBuf>) -> Result<String, SystemError> {
    // Only what exists is linked: no module is loaded for a link.
    let root = dev_root(settings, dev_root_flag);
    let driver = settings.driver().with_modprobe(None).with_dev_root(&root);
    let minors = nodes::gpu_minors(&settings.proc_root)?;
    let mut linked = nodes::plan(&driver, &minors)?.nodes;
    // IMEX channel nodes are the admin's (create-device-nodes makes none), but a
    // daemon-reload drops their rules all the same: the ones there get links too.
    let channels =
        driver.imex_channels().map_err(|source| SystemError::Driver { context: "IMEX channels".into(), source })?;
    linked.extend(channels.iter().map(|c| crate::edits::DeviceNode {
        path: crate::driver::imex::channel_path(c.channel),
        kind: 'c',
        major: c.major,
        minor: c.minor,
        file_mode: c.mode,
        uid: c.uid,
        gid: c.gid,
    }));
    let lines = dev_char::ensure(&crate::sys::LinuxSys, &root, &linked)?;
    Ok(lines.iter().map(|l| format!("{l}\n")).collect())
}
