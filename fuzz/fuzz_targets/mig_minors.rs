//! `/proc/driver/nvidia-caps/mig-minors`: one `name minor` pair a line.
//!
//! Two checks. The whole-file parser: every non-blank line is either parsed or
//! reported as skipped, and a parsed line names a capability that is in the
//! input with its minor. And the streaming index the driver layer really uses
//! ([`MigMinors`]: one buffered scan, then per-GPU read-back), with read sizes
//! from 1 byte up: it must answer every question exactly as the whole-file
//! parser does, and refuse a file that is not UTF-8.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mighook::driver::MigCap;
use mighook::driver::procfs::{MigMinors, SCAN_BUFFER, parse_mig_minors};
use std::collections::{BTreeMap, BTreeSet};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, bytes)) = data.split_first() else { return };
    let buffer = if sel == 0xff { SCAN_BUFFER } else { 1 + usize::from(sel % 64) };
    let Ok(text) = std::str::from_utf8(bytes) else {
        let scanned = MigMinors::scan(bytes.to_vec(), buffer, |_| {});
        assert!(scanned.is_err(), "a file that is not UTF-8 must be refused");
        return;
    };
    let map = whole_file(text);
    streaming_agrees(bytes, buffer, &map);
});

fn whole_file(text: &str) -> BTreeMap<MigCap, u32> {
    let mut skipped = Vec::new();
    let map = parse_mig_minors(text, |line| skipped.push(line.to_string()));
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    for s in &skipped {
        assert!(lines.contains(&s.as_str()), "skipped {s:?} is not a line of the input");
    }
    assert!(map.len() + skipped.len() <= lines.len());
    // (name without leading zeros, minor) of every line that has both.
    let pairs: std::collections::HashSet<(String, u32)> = lines
        .iter()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((strip_zeros(f.next()?), f.next()?.parse().ok()?))
        })
        .collect();
    for (cap, minor) in &map {
        assert!(pairs.contains(&(name(cap), *minor)), "{} {minor} is not in the input", name(cap));
    }
    map
}

/// The streaming index answers like the whole-file parse, for present and absent capabilities.
fn streaming_agrees(bytes: &[u8], buffer: usize, map: &BTreeMap<MigCap, u32>) {
    let index = MigMinors::scan(bytes.to_vec(), buffer, |_| {}).expect("a UTF-8 file scans");
    let mut asked: BTreeSet<MigCap> = map.keys().copied().collect();
    asked.extend([
        MigCap::Config,
        MigCap::Monitor,
        MigCap::Gi { gpu_minor: 0, gi: 0 },
        MigCap::Ci { gpu_minor: 2, gi: 8, ci: 0 },
    ]);
    for cap in &asked {
        assert_eq!(index.get(*cap, |_| {}).unwrap(), map.get(cap).copied(), "{} (read size {buffer})", name(cap));
    }
    let gpus: BTreeSet<u32> = map.keys().filter_map(MigCap::gpu_minor).chain([0, 2]).collect();
    for gpu in gpus {
        let want: Vec<(MigCap, u32)> =
            map.iter().filter(|(c, _)| c.gpu_minor() == Some(gpu)).map(|(c, m)| (*c, *m)).collect();
        assert_eq!(index.of_gpu(gpu, |_| {}).unwrap(), want, "caps of GPU minor {gpu} (read size {buffer})");
    }
}

/// The capability's mig-minors name (its proc path without `/mig`).
fn name(cap: &MigCap) -> String {
    match *cap {
        MigCap::Config => "config".to_string(),
        MigCap::Monitor => "monitor".to_string(),
        MigCap::Gi { gpu_minor, gi } => format!("gpu{gpu_minor}/gi{gi}/access"),
        MigCap::Ci { gpu_minor, gi, ci } => format!("gpu{gpu_minor}/gi{gi}/ci{ci}/access"),
    }
}

/// `gpu007/gi08/access` names the same capability as `gpu7/gi8/access`.
fn strip_zeros(name: &str) -> String {
    name.split('/')
        .map(|part| {
            let digits = part.trim_start_matches(|c: char| c.is_ascii_alphabetic());
            let prefix = &part[..part.len() - digits.len()];
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return part.to_string();
            }
            let trimmed = digits.trim_start_matches('0');
            format!("{prefix}{}", if trimmed.is_empty() { "0" } else { trimmed })
        })
        .collect::<Vec<_>>()
        .join("/")
}
