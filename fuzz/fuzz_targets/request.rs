//! The whole request: device list, driver capabilities and the two MIG access
//! variables, all image-controlled. MIG access must never be granted to an
//! unprivileged container, whatever the values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mighook::request::{DriverCapabilities, RawRequest, Request};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    // Five NUL-separated values; a flag bit leaves one unset (None) instead.
    let mut fields = text.split('\0');
    let mut next = |bit: u8| {
        let f = fields.next();
        if flags & bit != 0 { None } else { f }
    };
    let raw = RawRequest {
        visible_devices: next(2),
        driver_capabilities: next(4),
        mig_config: next(8),
        mig_monitor: next(16),
        privileged: flags & 1 != 0,
        imex_channels: next(32),
    };
    let defaults = DriverCapabilities::default();
    if let Ok(r) = Request::parse(&raw, &defaults) {
        assert!(
            raw.privileged || !(r.mig_config || r.mig_monitor),
            "MIG access for an unprivileged container: {raw:?}"
        );
        assert!(!r.capabilities.names().is_empty());
        // Parsing is a pure function of the raw values.
        assert_eq!(Request::parse(&raw, &defaults), Ok(r));
    }
    if let Some(caps) = raw.driver_capabilities {
        if let Ok(c) = DriverCapabilities::parse(caps) {
            assert!(c.names().windows(2).all(|w| w[0] <= w[1]) || c.names().len() == 7, "unsorted {:?}", c.names());
        }
    }
});
