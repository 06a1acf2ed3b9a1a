//! `/proc/driver/nvidia/capabilities/.../access`: `Key: value` lines. A value
//! is taken only from a line with exactly that key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mighook::driver::procfs::parse_cap_file;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let cap = parse_cap_file(&text);
    for (key, value) in [("DeviceFileMinor", cap.minor), ("DeviceFileMode", cap.mode)] {
        if let Some(v) = value {
            let found = text.lines().any(|l| {
                l.split_once(':').is_some_and(|(k, val)| k.trim() == key && val.trim().parse::<u32>() == Ok(v))
            });
            assert!(found, "{key}: {v} is not in the input");
        }
    }
});
