//! The driver's /proc files, read under a configurable root.
//!
//! - `devices`: char majors by EXACT name (`nvidia-caps` is not
//!   `nvidia-caps-imex-channels`).
//! - `driver/nvidia-caps/mig-minors`: node minor of every possible MIG
//!   capability, keyed by the GPU's device MINOR (not its NVML index).
//! - `driver/nvidia/capabilities/...`: `DeviceFileMinor` / `DeviceFileMode`.
//!
//! Malformed lines are skipped with a log line, never a panic. Each file is
//! read at most once per process.

use super::{CapFile, DriverError, MigCap};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub struct ProcFs {
    root: PathBuf,
    devices: OnceLock<Result<Vec<(u32, String)>, String>>,
    mig_minors: OnceLock<Result<BTreeMap<MigCap, u32>, String>>,
}

impl ProcFs {
    pub fn new(root: &Path) -> Self {
        ProcFs { root: root.to_path_buf(), devices: OnceLock::new(), mig_minors: OnceLock::new() }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn read(&self, rel: &str) -> Result<Option<String>, DriverError> {
        match std::fs::read_to_string(self.path(rel)) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(DriverError::Proc { path: self.path(rel).display().to_string(), reason: e.to_string() }),
        }
    }

    pub fn chardev_major(&self, name: &str) -> Result<Option<u32>, DriverError> {
        let devices = self.devices.get_or_init(|| match self.read("devices") {
            Ok(Some(text)) => Ok(parse_char_devices(&text)),
            Ok(None) => Err("file not found".to_string()),
            Err(e) => Err(e.to_string()),
        });
        let devices = devices
            .as_ref()
            .map_err(|reason| DriverError::Proc { path: self.path("devices").display().to_string(), reason: reason.clone() })?;
        Ok(devices.iter().find(|(_, n)| n == name).map(|(m, _)| *m))
    }

    fn mig_minors(&self) -> Result<&BTreeMap<MigCap, u32>, DriverError> {
        const REL: &str = "driver/nvidia-caps/mig-minors";
        let map = self.mig_minors.get_or_init(|| match self.read(REL) {
            // No file: a driver without MIG support; no capability has a minor.
            Ok(None) => Ok(BTreeMap::new()),
            Ok(Some(text)) => Ok(parse_mig_minors(&text, |line| {
                crate::log::warn(&format!("{}: skipping malformed line {line:?}", self.path(REL).display()))
            })),
            Err(e) => Err(e.to_string()),
        });
        map.as_ref().map_err(|reason| DriverError::Proc { path: self.path(REL).display().to_string(), reason: reason.clone() })
    }

    pub fn mig_cap_minor(&self, cap: MigCap) -> Result<Option<u32>, DriverError> {
        Ok(self.mig_minors()?.get(&cap).copied())
    }

    pub fn mig_caps_of_gpu(&self, gpu_minor: u32) -> Result<Vec<(MigCap, u32)>, DriverError> {
        let map = self.mig_minors()?;
        Ok(map.iter().filter(|(c, _)| c.gpu_minor() == Some(gpu_minor)).map(|(c, m)| (*c, *m)).collect())
    }

    pub fn cap_file(&self, cap: MigCap) -> Result<Option<CapFile>, DriverError> {
        let rel = format!("driver/nvidia/capabilities/{}", cap.proc_path());
        Ok(self.read(&rel)?.map(|text| parse_cap_file(&text)))
    }
}

/// `(major, name)` pairs of the `Character devices:` section.
pub fn parse_char_devices(text: &str) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let mut in_char = false;
    for line in text.lines() {
        if line.trim() == "Character devices:" {
            in_char = true;
            continue;
        }
        if !in_char {
            continue;
        }
        if line.trim().is_empty() || line.ends_with(':') {
            break;
        }
        let mut fields = line.split_whitespace();
        if let (Some(major), Some(name), None) = (fields.next(), fields.next(), fields.next()) {
            if let Ok(major) = major.parse() {
                out.push((major, name.to_string()));
            }
        }
    }
    out
}

/// Parses `mig-minors`; calls `skipped` with each malformed line.
pub fn parse_mig_minors(text: &str, mut skipped: impl FnMut(&str)) -> BTreeMap<MigCap, u32> {
    let mut map = BTreeMap::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        match parse_mig_minor_line(line) {
            Some((cap, minor)) => {
                map.insert(cap, minor);
            }
            None => skipped(line),
        }
    }
    map
}

fn parse_mig_minor_line(line: &str) -> Option<(MigCap, u32)> {
    let mut fields = line.split_whitespace();
    let (name, minor, None) = (fields.next()?, fields.next()?, fields.next()) else { return None };
    let minor = number(minor)?;
    let cap = match name {
        "config" => MigCap::Config,
        "monitor" => MigCap::Monitor,
        _ => {
            let parts: Vec<&str> = name.split('/').collect();
            match parts[..] {
                [gpu, gi, "access"] => MigCap::Gi { gpu_minor: prefixed(gpu, "gpu")?, gi: prefixed(gi, "gi")? },
                [gpu, gi, ci, "access"] => {
                    MigCap::Ci { gpu_minor: prefixed(gpu, "gpu")?, gi: prefixed(gi, "gi")?, ci: prefixed(ci, "ci")? }
                }
                _ => return None,
            }
        }
    };
    Some((cap, minor))
}

fn number(s: &str) -> Option<u32> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten()
}

fn prefixed(s: &str, prefix: &str) -> Option<u32> {
    number(s.strip_prefix(prefix)?)
}

/// `Key: value` lines of a capability file.
pub fn parse_cap_file(text: &str) -> CapFile {
    let mut cap = CapFile { minor: None, mode: None };
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else { continue };
        match key.trim() {
            "DeviceFileMinor" => cap.minor = number(value.trim()),
            "DeviceFileMode" => cap.mode = number(value.trim()),
            _ => {}
        }
    }
    cap
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEVICES: &str = "Character devices:\n  1 mem\n195 nvidia-frontend\n508 nvidia-caps\n509 nvidia-caps-imex-channels\n511 nvidia-uvm\n\nBlock devices:\n  8 sd\n511 nvidia-uvm-block\n";

    #[test]
    fn chardev_majors_match_exact_names() {
        let d = parse_char_devices(DEVICES);
        let major = |n: &str| d.iter().find(|(_, x)| x == n).map(|(m, _)| *m);
        assert_eq!(major("nvidia-caps"), Some(508));
        assert_eq!(major("nvidia-caps-imex-channels"), Some(509));
        assert_eq!(major("nvidia-uvm"), Some(511));
        assert_eq!(major("nvidia-uvm-block"), None);
        assert_eq!(major("nvidia"), None);
    }

    #[test]
    fn imex_channels_never_shadow_caps() {
        let d = parse_char_devices("Character devices:\n509 nvidia-caps-imex-channels\n\n");
        assert!(d.iter().all(|(_, n)| n != "nvidia-caps"));
    }

    #[test]
    fn mig_minor_lines() {
        assert_eq!(parse_mig_minor_line("config 1"), Some((MigCap::Config, 1)));
        assert_eq!(parse_mig_minor_line("monitor 2"), Some((MigCap::Monitor, 2)));
        assert_eq!(parse_mig_minor_line("gpu2/gi8/access 345"), Some((MigCap::Gi { gpu_minor: 2, gi: 8 }, 345)));
        assert_eq!(parse_mig_minor_line("gpu2/gi8/ci0/access 346"), Some((MigCap::Ci { gpu_minor: 2, gi: 8, ci: 0 }, 346)));
    }

    #[test]
    fn malformed_mig_minor_lines_are_skipped() {
        let mut skipped = vec![];
        let map = parse_mig_minors("config 1\ngpu0/gi0/access\ngpuX/gi0/access 3\ngpu0/gi0/ci0/access 4 5\ngpu0/gi0/foo 9\ngpu0/gi0/access -3\ngpu0/gi1/access 12\n", |l| skipped.push(l.to_string()));
        assert_eq!(map.len(), 2);
        assert_eq!(skipped.len(), 5);
    }

    #[test]
    fn cap_file_fields() {
        let c = parse_cap_file("DeviceFileMinor: 345\nDeviceFileMode: 292\nDeviceFileModify: 1\n");
        assert_eq!(c, CapFile { minor: Some(345), mode: Some(0o444) });
        assert_eq!(parse_cap_file("garbage\nDeviceFileMinor: x"), CapFile { minor: None, mode: None });
    }

    #[test]
    fn caps_of_one_gpu() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("driver/nvidia-caps")).unwrap();
        std::fs::write(dir.path().join("driver/nvidia-caps/mig-minors"), "config 1\nmonitor 2\ngpu0/gi0/access 3\ngpu1/gi0/access 138\ngpu1/gi0/ci0/access 139\ngpu10/gi0/access 1353\n").unwrap();
        let p = ProcFs::new(dir.path());
        assert_eq!(p.mig_caps_of_gpu(1).unwrap().iter().map(|(_, m)| *m).collect::<Vec<_>>(), [138, 139]);
        assert_eq!(p.mig_cap_minor(MigCap::Monitor).unwrap(), Some(2));
    }
}
