//! `/proc/devices`: only the `Character devices:` section counts, names are
//! whole words and majors are numbers that were really in the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mighook::driver::procfs::parse_char_devices;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let devices = parse_char_devices(&text);
    if !devices.is_empty() {
        assert!(text.lines().any(|l| l.trim() == "Character devices:"), "devices without a section header");
    }
    for (major, name) in &devices {
        assert!(!name.is_empty() && !name.contains(char::is_whitespace), "name {name:?}");
        let line_found = text.lines().any(|l| {
            let mut f = l.split_whitespace();
            f.next().and_then(|m| m.parse::<u32>().ok()) == Some(*major)
                && f.next() == Some(name.as_str())
                && f.next().is_none()
        });
        assert!(line_found, "{major} {name} is not a line of the input");
    }
});
