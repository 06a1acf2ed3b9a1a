//! Request → resolution → container edits, against mighook's in-memory driver
//! (`FakeDriver::a100`: MIG GPUs with empty slots, a MIG-disabled GPU, and one
//! NVML call that fails mid-walk).
//!
//! The security property of the whole tool: every cgroup rule is exactly
//! `allow c M:m rw` for a node the container gets, nothing wider, and a MIG
//! device only ever brings capabilities of its own GPU.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mighook::driver::fake::FakeDriver;
use mighook::request::{DriverCapabilities, RawRequest, Request};
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
        imex_channels: None,
    };
    let Ok(request) = Request::parse(&raw, &DriverCapabilities::default()) else { return };
    let driver = FakeDriver { failing_mig_slot: Some((1, 2)), ..FakeDriver::a100() };
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
/// The GPU minor a capability minor belongs to (`None` for config/monitor).
fn owner_of_cap(minor: u32) -> Option<u32> {
    (minor >= 3).then(|| (minor - 3) / 135)
}
