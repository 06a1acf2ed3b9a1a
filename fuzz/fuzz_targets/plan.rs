//! Request → resolution → container edits, against an in-memory driver (two
//! MIG GPUs, one whole GPU, one NVML call that fails mid-walk).
//!
//! The security property of the whole tool: every cgroup rule is exactly
//! `allow c M:m rw` for a node the container gets, nothing wider, and a MIG
//! device only ever brings capabilities of its own GPU.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mighook::driver::{CapFile, Driver, DriverError, Gpu, MigCap, MigDevice, MigMode};
use mighook::request::{DriverCapabilities, PciBusId, RawRequest, Request};
use std::collections::BTreeSet;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    let mut fields = text.split('\0');
    let devices = fields.next();
    let raw = RawRequest {
        visible_devices: devices,
        driver_capabilities: fields.next(),
        mig_config: (flags & 2 != 0).then_some("all"),
        mig_monitor: (flags & 4 != 0).then_some("all"),
        privileged: flags & 1 != 0,
    };
    let Ok(request) = Request::parse(&raw, &DriverCapabilities::default()) else { return };
    let driver = Node;
    let Ok(plan) = mighook::resolve::plan(&request, &driver) else { return };
    let again = mighook::resolve::plan(&request, &driver).expect("same request, same node, same answer");
    assert_eq!(plan, again);

    let edits = &plan.edits;
    let nodes: BTreeSet<(u32, u32)> = edits.device_nodes.iter().map(|n| (n.major, n.minor)).collect();
    assert_eq!(edits.device_rules.len(), nodes.len(), "one rule per distinct node");
    for r in &edits.device_rules {
        assert!(r.allow && r.kind == 'c' && r.access == "rw", "rule {r:?} is wider than c M:m rw");
        assert!(nodes.contains(&(r.major, r.minor)), "rule {r:?} has no node");
    }
    for n in &edits.device_nodes {
        assert!(n.kind == 'c' && n.path.starts_with("/dev/") && n.file_mode & !0o777 == 0, "node {n:?}");
    }
    // Capabilities of a GPU the selection does not hold never appear.
    let minors: BTreeSet<u32> = plan.selection.gpus.iter().map(|g| g.minor).collect();
    let caps: Vec<u32> = edits.device_nodes.iter().filter(|n| n.major == CAPS).map(|n| n.minor).collect();
    for c in caps {
        let owner = owner_of_cap(c);
        assert!(owner.is_none() || owner.is_some_and(|m| minors.contains(&m)), "cap {c} of GPU minor {owner:?} leaked");
        assert!(owner.is_some() || request.mig_config || request.mig_monitor, "config/monitor cap without asking");
    }
    for n in edits.device_nodes.iter().filter(|n| n.major == 195 && n.minor < 254) {
        assert!(minors.contains(&n.minor), "GPU node {} not selected", n.path);
    }
});

const CAPS: u32 = 508;
/// (index, minor, MIG mode, slots: (gi, ci) or empty)
const GPUS: [(u32, u32, MigMode, &[Option<(u32, u32)>]); 4] = [
    (0, 2, MigMode::Enabled, &[Some((7, 0)), Some((8, 0)), Some((9, 0)), None, Some((11, 0)), None, None]),
    (1, 3, MigMode::Enabled, &[Some((1, 0)), Some((1, 1)), Some((1, 2)), Some((2, 0)), None, None, None]),
    (2, 0, MigMode::Disabled, &[]),
    (3, 1, MigMode::Unsupported, &[]),
];

fn gi_minor(gpu_minor: u32, gi: u32) -> u32 {
    3 + gpu_minor * 135 + gi * 9
}

/// The GPU minor a capability minor belongs to (`None` for config/monitor).
fn owner_of_cap(minor: u32) -> Option<u32> {
    (minor >= 3).then(|| (minor - 3) / 135)
}

struct Node;

fn gpu(i: u32) -> Result<Gpu, DriverError> {
    let (index, minor, mig_mode, _) =
        *GPUS.get(i as usize).ok_or(DriverError::Nvml { call: "handle".into(), reason: "Invalid Argument".into() })?;
    Ok(Gpu {
        index,
        minor,
        uuid: format!("GPU-00000000-0000-0000-0000-00000000000{index}"),
        pci_bus_id: format!("00000000:{:02X}:00.0", 7 + index * 8),
        name: "A100".into(),
        mig_mode,
    })
}

fn mig(gpu: u32, slot: u32, (gi, ci): (u32, u32)) -> MigDevice {
    MigDevice {
        slot,
        uuid: format!("MIG-00000000-0000-0000-0000-0000000{gpu}{slot}{gi:02}{ci}"),
        gi,
        ci,
        profile: None,
    }
}

impl Driver for Node {
    fn driver_version(&self) -> Result<String, DriverError> {
        Ok("550.54.15".into())
    }
    fn gpu_count(&self) -> Result<u32, DriverError> {
        Ok(GPUS.len() as u32)
    }
    fn gpu(&self, index: u32) -> Result<Gpu, DriverError> {
        gpu(index)
    }
    fn gpu_index_by_uuid(&self, uuid: &str) -> Result<Option<u32>, DriverError> {
        Ok((0..4).find(|i| gpu(*i).is_ok_and(|g| g.uuid.eq_ignore_ascii_case(uuid))))
    }
    fn gpu_index_by_pci(&self, pci: &PciBusId) -> Result<Option<u32>, DriverError> {
        Ok((0..4).find(|i| gpu(*i).is_ok_and(|g| PciBusId::parse(&g.pci_bus_id) == Some(*pci))))
    }
    fn mig_slot_count(&self, i: u32) -> Result<u32, DriverError> {
        Ok(GPUS.get(i as usize).map_or(0, |g| g.3.len() as u32))
    }
    fn mig_device(&self, i: u32, slot: u32) -> Result<Option<MigDevice>, DriverError> {
        if (i, slot) == (1, 2) {
            return Err(DriverError::Nvml {
                call: "nvmlDeviceGetMigDeviceHandleByIndex".into(),
                reason: "Unknown Error".into(),
            });
        }
        Ok(GPUS.get(i as usize).and_then(|g| g.3.get(slot as usize)).copied().flatten().map(|s| mig(i, slot, s)))
    }
    fn mig_by_uuid(&self, uuid: &str) -> Result<Option<(u32, MigDevice)>, DriverError> {
        for i in 0..4 {
            for slot in 0..self.mig_slot_count(i)? {
                if let Some(m) = self.mig_device(i, slot)?.filter(|m| m.uuid.eq_ignore_ascii_case(uuid)) {
                    return Ok(Some((i, m)));
                }
            }
        }
        Ok(None)
    }
    fn chardev_major(&self, name: &str) -> Result<Option<u32>, DriverError> {
        Ok(match name {
            "nvidia-caps" => Some(CAPS),
            "nvidia-uvm" => Some(511),
            _ => None,
        })
    }
    fn mig_cap_minor(&self, cap: MigCap) -> Result<Option<u32>, DriverError> {
        Ok(match cap {
            MigCap::Config => Some(1),
            MigCap::Monitor => Some(2),
            MigCap::Gi { gpu_minor, gi } => Some(gi_minor(gpu_minor, gi)),
            MigCap::Ci { gpu_minor, gi, ci } => Some(gi_minor(gpu_minor, gi) + 1 + ci),
        })
    }
    fn mig_caps_of_gpu(&self, gpu_minor: u32) -> Result<Vec<(MigCap, u32)>, DriverError> {
        let mut v = vec![];
        for gi in 0..15 {
            v.push((MigCap::Gi { gpu_minor, gi }, gi_minor(gpu_minor, gi)));
            for ci in 0..8 {
                v.push((MigCap::Ci { gpu_minor, gi, ci }, gi_minor(gpu_minor, gi) + 1 + ci));
            }
        }
        Ok(v)
    }
    fn cap_file(&self, cap: MigCap) -> Result<Option<CapFile>, DriverError> {
        Ok(Some(CapFile {
            minor: self.mig_cap_minor(cap)?,
            mode: Some(if cap == MigCap::Config { 0o400 } else { 0o444 }),
        }))
    }
}
