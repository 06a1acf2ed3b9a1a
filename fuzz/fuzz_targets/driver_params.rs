//! `/proc/driver/nvidia/params`: owner and mode of the GPU nodes. Whatever the
//! input, an accepted file states each of the three keys exactly once with the
//! value returned, and the mode is permission bits only; a file that does not
//! state a key exactly once is refused (never a default filled in).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mighook::driver::procfs::parse_params;

/// The values of the lines whose key is `key`, as the lines give them.
fn values<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    text.lines().filter_map(|l| l.split_once(':')).filter(|(k, _)| k.trim() == key).map(|(_, v)| v.trim()).collect()
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let parsed = parse_params(&text);
    let keys = ["DeviceFileUID", "DeviceFileGID", "DeviceFileMode"];
    if keys.iter().any(|k| values(&text, k).len() != 1) {
        assert!(parsed.is_err(), "a key missing or repeated was accepted: {parsed:?}");
    }
    let Ok(p) = parsed else { return };
    assert_eq!(p.mode & !0o777, 0, "mode {:#o}", p.mode);
    assert!(p.uid != u32::MAX && p.gid != u32::MAX, "{p:?}");
    for (key, want) in keys.iter().zip([p.uid, p.gid, p.mode]) {
        let [value] = values(&text, key)[..] else { unreachable!() };
        assert!(value.bytes().all(|b| b.is_ascii_digit()), "{key}: {value:?}");
        assert_eq!(value.parse::<u32>().ok(), Some(want), "{key}: {value:?}");
    }
});
