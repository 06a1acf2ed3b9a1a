//! Resolution: from a parsed request to the devices and nodes a container gets.
//!
//! [`select`] turns each entry into a GPU or MIG device by asking the
//! [`Driver`] only about what the entry names (one GPU, one slot), and
//! [`nodes::build`] turns the selection into [`ContainerEdits`]. Selecting a MIG
//! device selects its parent GPU's node too; selecting a MIG-enabled GPU whole
//! gives its node only, with a warning.

pub mod nodes;
pub mod require;

use crate::driver::{Driver, DriverError, Gpu, MigDevice, MigMode};
use crate::edits::ContainerEdits;
use crate::request::require::ImageEnv;
use crate::request::{DeviceId, DeviceList, Entry, Request};
use serde::Serialize;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ResolveError {
    #[error("{entry}: {reason}")]
    Entry { entry: String, reason: String },
    #[error("{context}: {source}")]
    Driver { context: String, source: DriverError },
    #[error("{0}")]
    Node(String),
    #[error(transparent)]
    Requirement(#[from] require::RequirementError),
}

fn entry_err(entry: &Entry, reason: String) -> ResolveError {
    ResolveError::Entry { entry: entry.text.clone(), reason }
}

/// What one entry of the request resolved to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Resolved {
    #[serde(rename_all = "camelCase")]
    Gpu { entry: String, index: u32, uuid: String, minor: u32, pci_bus_id: String, mig_mode: MigMode },
    #[serde(rename_all = "camelCase")]
    Mig {
        entry: String,
        name: String,
        uuid: String,
        gpu_index: u32,
        gpu_uuid: String,
        gpu_minor: u32,
        gi: u32,
        ci: u32,
    },
}

/// The devices a request selects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Any GPU container (not `void`): gets the control nodes.
    pub gpu_container: bool,
    /// GPUs whose `/dev/nvidia<minor>` the container gets (whole or as a MIG parent), by index.
    pub gpus: Vec<Gpu>,
    /// MIG devices with their parent GPU.
    pub migs: Vec<(Gpu, MigDevice)>,
    pub resolved: Vec<Resolved>,
    pub warnings: Vec<String>,
    /// `NVIDIA_MIG_CONFIG_DEVICES` or `NVIDIA_MIG_MONITOR_DEVICES` was granted: the
    /// container administers MIG (all capabilities of its GPUs).
    pub mig_admin: bool,
}

impl Selection {
    fn add_gpu(&mut self, gpu: &Gpu) {
        if !self.gpus.iter().any(|g| g.index == gpu.index) {
            self.gpus.push(gpu.clone());
        }
    }

    fn add_mig(&mut self, entry: &str, gpu: &Gpu, mig: MigDevice) {
        self.add_gpu(gpu);
        if self.migs.iter().any(|(g, m)| g.index == gpu.index && m.slot == mig.slot) {
            return;
        }
        self.resolved.push(Resolved::Mig {
            entry: entry.to_string(),
            name: format!("{}:{}", gpu.index, mig.slot),
            uuid: mig.uuid.clone(),
            gpu_index: gpu.index,
            gpu_uuid: gpu.uuid.clone(),
            gpu_minor: gpu.minor,
            gi: mig.gi,
            ci: mig.ci,
        });
        self.migs.push((gpu.clone(), mig));
    }

    fn add_whole_gpu(&mut self, entry: &str, gpu: &Gpu) {
        if self.resolved.iter().any(|r| matches!(r, Resolved::Gpu { index, .. } if *index == gpu.index)) {
            return;
        }
        self.add_gpu(gpu);
        if gpu.mig_mode == MigMode::Enabled {
            self.warnings.push(format!(
                "{entry}: GPU {} is in MIG mode: the container gets /dev/nvidia{} but no MIG compute without a MIG device (ask for {}:<j> or MIG-<uuid>)",
                gpu.index, gpu.minor, gpu.index
            ));
        }
        self.resolved.push(Resolved::Gpu {
            entry: entry.to_string(),
            index: gpu.index,
            uuid: gpu.uuid.clone(),
            minor: gpu.minor,
            pci_bus_id: gpu.pci_bus_id.clone(),
            mig_mode: gpu.mig_mode,
        });
    }
}

/// Describes the occupied slots for an error: `0..6` or `0, 2, 3`.
fn describe_slots(migs: &[MigDevice]) -> String {
    let slots: Vec<u32> = migs.iter().map(|m| m.slot).collect();
    match (slots.first(), slots.last()) {
        (Some(&a), Some(&b)) if (b - a) as usize + 1 == slots.len() && slots.len() > 1 => format!("{a}..{b}"),
        _ => slots.iter().map(u32::to_string).collect::<Vec<_>>().join(", "),
    }
}

struct Resolver<'d, D: Driver + ?Sized> {
    driver: &'d D,
}

impl<D: Driver + ?Sized> Resolver<'_, D> {
    fn driver<T>(&self, context: &str, r: Result<T, DriverError>) -> Result<T, ResolveError> {
        r.map_err(|source| ResolveError::Driver { context: context.to_string(), source })
    }

    fn gpu_by_index(&self, entry: &Entry, index: u32) -> Result<Gpu, ResolveError> {
        let count = self.driver(&entry.text, self.driver.gpu_count())?;
        if index >= count {
            let has = if count == 0 { "no GPUs".to_string() } else { format!("0..{}", count - 1) };
            return Err(entry_err(entry, format!("no GPU with index {index} (this node has {has})")));
        }
        self.driver(&entry.text, self.driver.gpu(index))
    }

    fn mig_devices_of(&self, entry: &Entry, gpu: &Gpu) -> Result<Vec<MigDevice>, ResolveError> {
        if gpu.mig_mode != MigMode::Enabled {
            return Err(entry_err(entry, format!("GPU {} is not in MIG mode", gpu.index)));
        }
        self.driver(&entry.text, self.driver.mig_devices(gpu.index))
    }

    fn resolve_entry(&self, entry: &Entry, sel: &mut Selection) -> Result<(), ResolveError> {
        let text = entry.text.as_str();
        match &entry.id {
            DeviceId::Index(i) => {
                let gpu = self.gpu_by_index(entry, *i)?;
                sel.add_whole_gpu(text, &gpu);
            }
            DeviceId::GpuUuid(uuid) => {
                let Some(i) = self.driver(text, self.driver.gpu_index_by_uuid(uuid))? else {
                    return Err(entry_err(entry, "no GPU with this UUID".into()));
                };
                let gpu = self.driver(text, self.driver.gpu(i))?;
                sel.add_whole_gpu(text, &gpu);
            }
            DeviceId::PciBusId(pci) => {
                let Some(i) = self.driver(text, self.driver.gpu_index_by_pci(pci))? else {
                    return Err(entry_err(entry, format!("no GPU at PCI bus id {pci}")));
                };
                let gpu = self.driver(text, self.driver.gpu(i))?;
                sel.add_whole_gpu(text, &gpu);
            }
            DeviceId::MigIndex { gpu, slot } => {
                let gpu = self.gpu_by_index(entry, *gpu)?;
                if gpu.mig_mode != MigMode::Enabled {
                    return Err(entry_err(entry, format!("GPU {} is not in MIG mode", gpu.index)));
                }
                let count = self.driver(text, self.driver.mig_slot_count(gpu.index))?;
                let found =
                    if *slot < count { self.driver(text, self.driver.mig_device(gpu.index, *slot))? } else { None };
                let Some(mig) = found else {
                    let migs = self.mig_devices_of(entry, &gpu)?;
                    let reason = if migs.is_empty() {
                        format!("GPU {} has no MIG devices", gpu.index)
                    } else {
                        format!("GPU {} has no MIG device {slot} (it has {})", gpu.index, describe_slots(&migs))
                    };
                    return Err(entry_err(entry, reason));
                };
                sel.add_mig(text, &gpu, mig);
            }
            DeviceId::MigUuid(uuid) => {
                let Some((i, mig)) = self.driver(text, self.driver.mig_by_uuid(uuid))? else {
                    return Err(entry_err(entry, "no MIG device with this UUID".into()));
                };
                let gpu = self.driver(text, self.driver.gpu(i))?;
                sel.add_mig(text, &gpu, mig);
            }
            DeviceId::LegacyMig { gpu_uuid, gi, ci } => {
                let Some(i) = self.driver(text, self.driver.gpu_index_by_uuid(gpu_uuid))? else {
                    return Err(entry_err(entry, format!("no GPU with UUID {gpu_uuid}")));
                };
                let gpu = self.driver(text, self.driver.gpu(i))?;
                if gpu.mig_mode != MigMode::Enabled {
                    return Err(entry_err(entry, format!("GPU {} is not in MIG mode", gpu.index)));
                }
                let Some(mig) = self.driver(text, self.driver.mig_by_instance(gpu.index, *gi, *ci))? else {
                    return Err(entry_err(
                        entry,
                        format!("GPU {} has no MIG device with GPU instance {gi} and compute instance {ci}", gpu.index),
                    ));
                };
                sel.add_mig(text, &gpu, mig);
            }
        }
        Ok(())
    }

    fn select_all(&self, sel: &mut Selection) -> Result<(), ResolveError> {
        for index in 0..self.driver("all", self.driver.gpu_count())? {
            let gpu = self.driver("all", self.driver.gpu(index))?;
            if gpu.mig_mode == MigMode::Enabled {
                sel.add_gpu(&gpu);
                for mig in self.driver("all", self.driver.mig_devices(index))? {
                    sel.add_mig("all", &gpu, mig);
                }
            } else {
                sel.add_whole_gpu("all", &gpu);
            }
        }
        Ok(())
    }
}

/// Selects the devices a request names. Stops at the first bad entry.
pub fn select<D: Driver + ?Sized>(request: &Request, driver: &D) -> Result<Selection, ResolveError> {
    let resolver = Resolver { driver };
    let mut sel = Selection::default();
    match &request.devices {
        DeviceList::Void => return Ok(sel),
        DeviceList::None => {}
        DeviceList::All => resolver.select_all(&mut sel)?,
        DeviceList::Devices(entries) => {
            for entry in entries {
                resolver.resolve_entry(entry, &mut sel)?;
            }
        }
    }
    sel.gpu_container = true;
    sel.mig_admin = request.mig_config || request.mig_monitor;
    sel.gpus.sort_by_key(|g| g.index);
    Ok(sel)
}

/// The whole plan for a request: selection plus edits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub selection: Selection,
    pub edits: ContainerEdits,
}

/// Request → selection → container edits.
pub fn plan<D: Driver + ?Sized>(request: &Request, driver: &D) -> Result<Plan, ResolveError> {
    plan_checked(request, &ImageEnv::default(), driver)
}

/// [`plan`] for a container whose image may carry requirements: they are checked
/// against the selected GPUs once the selection is known (a GPU container only),
/// before any edit is built, as libnvidia-container does.
pub fn plan_checked<D: Driver + ?Sized>(request: &Request, image: &ImageEnv, driver: &D) -> Result<Plan, ResolveError> {
    let mut selection = select(request, driver)?;
    if selection.gpu_container {
        require::check(image, &selection.gpus, driver)?;
    }
    let mut edits = nodes::build(request, &mut selection, driver)?;
    if selection.gpu_container {
        edits.driver_files = driver
            .driver_files(&request.capabilities)
            .map_err(|source| ResolveError::Driver { context: "driver files".into(), source })?;
    }
    Ok(Plan { selection, edits })
}

#[cfg(test)]
mod tests;
