//! glibc's ld.so.cache as an image supplies it: any bytes. A parse never panics
//! or allocates without bound; what parses, written again, parses to the same
//! entries; a merge with the driver's entries puts them first for their keys.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mighook::ldcache::{self, Entry};

fuzz_target!(|data: &[u8]| {
    let Ok(cache) = ldcache::parse(data) else { return };
    let written = ldcache::serialize(&cache);
    let again = ldcache::parse(&written).expect("a written cache parses");
    let mut a = cache.entries.clone();
    let mut b = again.entries.clone();
    let key = |e: &Entry| (e.key.clone(), e.value.clone(), e.flags, e.hwcap, e.osversion);
    a.sort_by_key(key);
    b.sort_by_key(key);
    assert_eq!(a, b, "entries survive a write");

    let injected = vec![Entry::x86_64(&b"libcuda.so.1"[..], &b"/usr/lib64/libcuda.so.1"[..])];
    let merged = ldcache::parse(&ldcache::serialize(&ldcache::merge(injected.clone(), cache))).unwrap();
    let first = merged.entries.iter().find(|e| e.key == b"libcuda.so.1" && e.flags == ldcache::FLAG_X8664_LIBC6);
    assert_eq!(first, injected.first(), "the driver's entry is found first");
});
