//! The OCI state the runtime writes on the hook's stdin. Only `pid` and
//! `bundle` are used: a parse gives a positive pid and an absolute bundle.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mighook::hook::parse_state;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match parse_state(&text) {
        Ok(state) => {
            assert!(state.pid > 0);
            assert!(state.bundle.is_absolute(), "{:?}", state.bundle);
        }
        // One line, naming what is wrong.
        Err(e) => {
            let e = e.to_string();
            assert!(e.starts_with("OCI state on stdin ") && !e.contains('\n'), "{e:?}")
        }
    }
});
