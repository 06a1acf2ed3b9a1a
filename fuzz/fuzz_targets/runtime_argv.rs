//! The low-level runtime's command line as the runtime shim reads it
//! (`oci::argv::parse`): any arguments, NUL-separated in the input. It never
//! fails, and the bundle it finds is one of the arguments (or a flag's inline
//! value), only ever for `create`/`run`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mighook::oci::argv::parse;
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

fuzz_target!(|data: &[u8]| {
    let args: Vec<OsString> = data.split(|b| *b == 0).map(|a| OsString::from_vec(a.to_vec())).collect();
    let inv = parse(&args);
    if let Some(bundle) = &inv.bundle {
        assert!(inv.creates(), "a bundle for a call that creates nothing");
        let b = bundle.as_os_str().as_bytes();
        let from_args = args.iter().any(|a| {
            let a = a.as_bytes();
            a == b || a.ends_with(b) && a.len() > b.len() && a[a.len() - b.len() - 1] == b'='
        });
        assert!(from_args, "bundle {bundle:?} is not one of the arguments");
    }
    if let Some(sub) = &inv.subcommand {
        assert!(args.contains(sub), "subcommand {sub:?} is not one of the arguments");
    }
    // Parsing is a pure function of the arguments.
    assert_eq!(parse(&args), inv);
});
