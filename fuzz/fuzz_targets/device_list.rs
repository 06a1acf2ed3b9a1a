//! `NVIDIA_VISIBLE_DEVICES` grammar: the container image controls this string.
//!
//! Beyond "never panics": a parse is stable under empty-entry and whitespace
//! noise, every kept entry re-parses to its own id, ids are distinct and at most
//! `MAX_DEVICES`, every index has at most 3 digits (so fits well under 1000), and
//! an error names an entry that really is in the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mighook::request::{
    DeviceId, DeviceList, MAX_DEVICES, PciBusId, RequestError, parse_device_list, parse_entry, shown,
};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let parsed = parse_device_list(Some(&text));

    // Commas padded with spaces and empty entries mean the same list.
    let noisy = format!(" ,{}, ,", text.replace(',', " , ,"));
    assert_eq!(parse_device_list(Some(&noisy)), parsed, "noise changed the parse of {text:?}");

    match parsed {
        Ok(DeviceList::Devices(entries)) => {
            assert!(!entries.is_empty() && entries.len() <= MAX_DEVICES);
            for (i, e) in entries.iter().enumerate() {
                assert!(!e.text.is_empty() && e.text.trim() == e.text && !e.text.contains(','), "entry {:?}", e.text);
                assert_eq!(parse_entry(&e.text).as_ref(), Ok(&e.id), "entry {:?} re-parses differently", e.text);
                assert!(entries[..i].iter().all(|p| p.id != e.id), "duplicate id {:?}", e.id);
                check_id(&e.id);
            }
            // Only the kept texts, joined again, are the same list.
            let joined: Vec<&str> = entries.iter().map(|e| e.text.as_str()).collect();
            assert_eq!(parse_device_list(Some(&joined.join(","))), Ok(DeviceList::Devices(entries.clone())));
        }
        Ok(_) => {}
        Err(
            RequestError::UnknownForm { entry }
            | RequestError::Malformed { entry, .. }
            | RequestError::UnservedKind { entry, .. }
            | RequestError::TooManyDevices { entry, .. },
        ) => {
            // Errors show an entry as written, or escaped and cut (`shown`): either way one of the input's.
            let named = text.split(',').map(str::trim).any(|e| !e.is_empty() && shown(e) == entry);
            assert!(named, "error names {entry:?}, not an entry of the input");
        }
        Err(e) => panic!("device list gave a non-entry error: {e}"),
    }
});

fn check_id(id: &DeviceId) {
    let uuid_ok = |u: &str, prefix: &str| {
        u.len() == prefix.len() + 36
            && u.starts_with(prefix)
            && !u[prefix.len()..].bytes().any(|b| b.is_ascii_uppercase())
    };
    match id {
        DeviceId::GpuUuid(u) => assert!(uuid_ok(u, "GPU-"), "{u}"),
        DeviceId::MigUuid(u) => assert!(uuid_ok(u, "MIG-"), "{u}"),
        DeviceId::LegacyMig { gpu_uuid, gi, ci } => {
            assert!(uuid_ok(gpu_uuid, "GPU-") && *gi < 100 && *ci < 100, "{gpu_uuid}/{gi}/{ci}")
        }
        // The canonical form parses back to the same bus id.
        DeviceId::PciBusId(p) => assert_eq!(PciBusId::parse(&p.to_string()), Some(*p)),
        // At most 3 digits, at most 2 for instance ids.
        DeviceId::Index(i) => assert!(*i < 1000),
        DeviceId::MigIndex { gpu, slot } => assert!(*gpu < 1000 && *slot < 1000),
    }
}
