//! `/proc/driver/nvidia` in a container: which files it shows, and what they say.
//!
//! NVIDIA's legacy path (libnvidia-container `mount_procfs`, `mount_procfs_gpu`,
//! `mount_procfs_mig`) mounts a tmpfs (mode 0555, nodev, nosuid, noexec) over
//! the container's `/proc/driver/nvidia`, which hides every other GPU's
//! `gpus/` entry, the other MIG instances' capability files, `suspend`,
//! `warnings` and the rest. Into it go:
//!
//! - `params`, `version` and `registry`: copies of the host's, with the host's
//!   mode; in `params` the first `ModifyDeviceFiles: 1` becomes
//!   `ModifyDeviceFiles: 0`, so the container's NVML never tries to make or fix
//!   `/dev/nvidia*` nodes. A missing file is skipped (a line says so).
//! - `gpus/<bus id>` of each selected GPU (MIG parents included), bind-mounted
//!   read-only from the host. The directory is named as the driver names it:
//!   NVML's bus id in lowercase, with a 16-bit domain (`0000:07:00.0`) where the
//!   32-bit one (`00000000:07:00.0`) is not there, as LNC retries.
//! - for each selected MIG device, its GPU instance's and compute instance's
//!   `capabilities/gpu<minor>/mig/gi<G>[/ci<C>]/access`, bind-mounted read-only
//!   (the `/proc` half of MIG access; the `/dev/nvidia-caps` nodes are the other).
//! - with `NVIDIA_MIG_CONFIG_DEVICES` / `NVIDIA_MIG_MONITOR_DEVICES`, the whole
//!   `capabilities` directory instead, as LNC does.
//!
//! [`plan`] decides all of that from the selection and what the host's
//! directory holds (passed in, so it is a pure function); the hook applies it
//! ([`crate::apply::proc_driver`]). Only the hook path can: runc refuses mounts
//! inside `/proc` from config.json, and CDI has no way to say "a tmpfs with
//! these files". NVIDIA's CDI specs do not mask it either (only `params` is
//! overlaid there); see docs/SECURITY.md.

use crate::resolve::Selection;

/// The directory masked, inside the container.
pub const PROC_DRIVER_NVIDIA: &str = "/proc/driver/nvidia";

/// The tmpfs's root mode, as LNC mounts it.
pub const TMPFS_MODE: u32 = 0o555;

/// The host's files copied into the tmpfs, in this order.
pub const COPIED: [&str; 3] = ["params", "version", "registry"];

/// A driver proc file is a few KiB; the copy takes no more than this.
pub const MAX_FILE_BYTES: usize = 64 << 10;

/// What of a selection the mask depends on: the selected GPUs' PCI bus ids, each
/// MIG device's `(GPU minor, GI, CI)`, and whether the container administers MIG.
/// The shim hands it to its prestart hook as arguments ([`ProcSelection::to_args`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcSelection {
    pub gpus: Vec<String>,
    pub migs: Vec<(u32, u32, u32)>,
    pub mig_admin: bool,
}

impl ProcSelection {
    pub fn of(sel: &Selection) -> Self {
        ProcSelection {
            gpus: sel.gpus.iter().map(|g| g.pci_bus_id.clone()).collect(),
            migs: sel.migs.iter().map(|(g, m)| (g.minor, m.gi, m.ci)).collect(),
            mig_admin: sel.mig_admin,
        }
    }

    /// `--gpu <bus id>`… `--mig <minor>:<gi>:<ci>`… `[--mig-admin]`, as `mighook proc-mask` takes them.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec![];
        for gpu in &self.gpus {
            args.extend(["--gpu".to_string(), gpu.clone()]);
        }
        for (minor, gi, ci) in &self.migs {
            args.extend(["--mig".to_string(), format!("{minor}:{gi}:{ci}")]);
        }
        if self.mig_admin {
            args.push("--mig-admin".into());
        }
        args
    }

    /// The values of `--gpu` and `--mig`, checked: a bus id is `[0-9a-fA-F:.]` only (it
    /// becomes a path component), a MIG device three numbers.
    pub fn from_args(gpus: &[String], migs: &[String], mig_admin: bool) -> Result<Self, String> {
        let mut sel = ProcSelection { mig_admin, ..Default::default() };
        for gpu in gpus {
            let ok = gpu.len() <= 16
                && gpu.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
                && crate::request::PciBusId::parse(gpu).is_some();
            if !ok {
                return Err(format!("--gpu {gpu:?} is not a PCI bus id"));
            }
            sel.gpus.push(gpu.clone());
        }
        for mig in migs {
            let parts: Vec<Option<u32>> = mig.split(':').map(|p| p.parse().ok()).collect();
            match parts[..] {
                [Some(minor), Some(gi), Some(ci)] => sel.migs.push((minor, gi, ci)),
                _ => return Err(format!("--mig {mig:?} is not <gpu minor>:<gi>:<ci>")),
            }
        }
        Ok(sel)
    }
}

/// What the host's `/proc/driver/nvidia` holds at a relative path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostEntry {
    Dir,
    /// A regular file's contents and permission bits.
    File(Vec<u8>, u32),
    Other,
}

/// A file written into the tmpfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcFile {
    pub name: &'static str,
    pub content: Vec<u8>,
    pub mode: u32,
}

/// A host entry bind-mounted read-only at the same relative path in the tmpfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcBind {
    /// Relative to `/proc/driver/nvidia`, e.g. `gpus/0000:07:00.0`.
    pub rel: String,
    pub dir: bool,
}

/// What the container's `/proc/driver/nvidia` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcMask {
    pub files: Vec<ProcFile>,
    pub binds: Vec<ProcBind>,
    /// One line per thing the host lacks, for the log.
    pub skipped: Vec<String>,
}

/// `params` with its first `ModifyDeviceFiles: 1` turned into `ModifyDeviceFiles: 0`.
pub fn params_without_device_file_changes(params: &[u8]) -> Vec<u8> {
    const ON: &[u8] = b"ModifyDeviceFiles: 1";
    match params.windows(ON.len()).position(|w| w == ON) {
        Some(at) => {
            let mut out = params.to_vec();
            out[at + ON.len() - 1] = b'0';
            out
        }
        None => params.to_vec(),
    }
}

/// The names the driver may give a GPU's `gpus/` directory, in the order LNC tries them.
pub fn gpu_dir_names(pci_bus_id: &str) -> Vec<String> {
    let id = pci_bus_id.to_ascii_lowercase();
    let mut names = vec![id.clone()];
    // `00000000:07:00.0` → `0000:07:00.0`: a 32-bit domain the driver prints as 16 bits.
    if id.len() == 16 && id.as_bytes()[8] == b':' {
        names.push(id[4..].to_string());
    }
    names
}

/// Which files and mounts the container's `/proc/driver/nvidia` gets for a
/// selection; `host` says what the host's directory holds at a relative path.
pub fn plan(sel: &ProcSelection, host: impl Fn(&str) -> Option<HostEntry>) -> ProcMask {
    let mut mask = ProcMask::default();
    for name in COPIED {
        match host(name) {
            Some(HostEntry::File(content, mode)) => {
                let content = if name == "params" { params_without_device_file_changes(&content) } else { content };
                mask.files.push(ProcFile { name, content, mode: mode & 0o777 });
            }
            _ => mask.skipped.push(format!("{PROC_DRIVER_NVIDIA}/{name}: not on the host")),
        }
    }
    for gpu in &sel.gpus {
        let names = gpu_dir_names(gpu);
        match names.iter().find(|n| host(&format!("gpus/{n}")) == Some(HostEntry::Dir)) {
            Some(name) => mask.binds.push(ProcBind { rel: format!("gpus/{name}"), dir: true }),
            None => mask.skipped.push(format!("{PROC_DRIVER_NVIDIA}/gpus/{}: not on the host", names[names.len() - 1])),
        }
    }
    if sel.mig_admin {
        match host("capabilities") {
            Some(HostEntry::Dir) => mask.binds.push(ProcBind { rel: "capabilities".into(), dir: true }),
            _ => mask.skipped.push(format!("{PROC_DRIVER_NVIDIA}/capabilities: not on the host")),
        }
        return mask;
    }
    for (minor, gi, ci) in &sel.migs {
        let gi = format!("capabilities/gpu{minor}/mig/gi{gi}");
        for rel in [format!("{gi}/access"), format!("{gi}/ci{ci}/access")] {
            match host(&rel) {
                Some(HostEntry::File(..)) => mask.binds.push(ProcBind { rel, dir: false }),
                _ => mask.skipped.push(format!("{PROC_DRIVER_NVIDIA}/{rel}: not on the host")),
            }
        }
    }
    mask
}

/// [`plan`]'s `host` for a real directory (normally `<proc root>/driver/nvidia`):
/// never follows a symlink, reads at most [`MAX_FILE_BYTES`] of a file.
pub fn read_host(dir: &std::path::Path, rel: &str) -> Option<HostEntry> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(rel);
    let meta = std::fs::symlink_metadata(&path).ok()?;
    if meta.is_dir() {
        return Some(HostEntry::Dir);
    }
    if !meta.is_file() {
        return Some(HostEntry::Other);
    }
    let mut content = Vec::new();
    std::fs::File::open(&path).ok()?.take(MAX_FILE_BYTES as u64).read_to_end(&mut content).ok()?;
    Some(HostEntry::File(content, meta.permissions().mode() & 0o777))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::fake::FakeDriver;
    use crate::request::{DriverCapabilities, RawRequest, Request};
    use std::collections::BTreeMap;

    const PARAMS: &str = "ResmanDebugLevel: 4294967295\nModifyDeviceFiles: 1\nDeviceFileUID: 0\nDeviceFileGID: 0\n";

    /// The fake A100 node's directory: GPUs at 07, 0F, 17, 1F (16-bit domain), GPU 0 (minor 2) GI 8 CI 0.
    fn host() -> BTreeMap<String, HostEntry> {
        let file = |s: &str, mode| HostEntry::File(s.as_bytes().to_vec(), mode);
        let mut m = BTreeMap::new();
        m.insert("params".into(), file(PARAMS, 0o444));
        m.insert("version".into(), file("NVRM version: 550.54.15\n", 0o444));
        m.insert("registry".into(), file("Binary: \"\"\n", 0o644));
        for bus in ["07", "0f", "17", "1f"] {
            m.insert(format!("gpus/0000:{bus}:00.0"), HostEntry::Dir);
        }
        m.insert("capabilities".into(), HostEntry::Dir);
        m.insert("capabilities/gpu2/mig/gi8/access".into(), file("DeviceFileMinor: 345\n", 0o444));
        m.insert("capabilities/gpu2/mig/gi8/ci0/access".into(), file("DeviceFileMinor: 346\n", 0o444));
        m
    }

    fn mask_for(devices: &str, mig_config: Option<&str>, host: &BTreeMap<String, HostEntry>) -> ProcMask {
        let raw = RawRequest { visible_devices: Some(devices), mig_config, privileged: true, ..Default::default() };
        let request = Request::parse(&raw, &DriverCapabilities::default()).unwrap();
        let sel = crate::resolve::select(&request, &FakeDriver::a100()).unwrap();
        plan(&ProcSelection::of(&sel), |rel| host.get(rel).cloned())
    }

    fn binds(mask: &ProcMask) -> Vec<&str> {
        mask.binds.iter().map(|b| b.rel.as_str()).collect()
    }

    #[test]
    fn a_selection_survives_the_hook_arguments() {
        let sel = ProcSelection { gpus: vec!["00000000:07:00.0".into()], migs: vec![(2, 8, 0)], mig_admin: true };
        let args = sel.to_args();
        assert_eq!(args, ["--gpu", "00000000:07:00.0", "--mig", "2:8:0", "--mig-admin"]);
        assert_eq!(ProcSelection::from_args(&[args[1].clone()], &[args[3].clone()], true), Ok(sel));
    }

    #[test]
    fn hook_arguments_that_could_be_paths_are_refused() {
        let e = ProcSelection::from_args(&["../../etc".into()], &[], false).unwrap_err();
        assert_eq!(e, "--gpu \"../../etc\" is not a PCI bus id");
        let e = ProcSelection::from_args(&["..".into()], &[], false).unwrap_err();
        assert_eq!(e, "--gpu \"..\" is not a PCI bus id");
        let e = ProcSelection::from_args(&[], &["2:8".into()], false).unwrap_err();
        assert_eq!(e, "--mig \"2:8\" is not <gpu minor>:<gi>:<ci>");
    }

    #[test]
    fn params_says_modify_device_files_0() {
        let out = params_without_device_file_changes(PARAMS.as_bytes());
        assert_eq!(String::from_utf8(out).unwrap(), PARAMS.replace("ModifyDeviceFiles: 1", "ModifyDeviceFiles: 0"));
    }

    #[test]
    fn only_the_first_modify_device_files_changes() {
        let out = params_without_device_file_changes(b"ModifyDeviceFiles: 1\nModifyDeviceFiles: 1\n");
        assert_eq!(out, b"ModifyDeviceFiles: 0\nModifyDeviceFiles: 1\n");
    }

    #[test]
    fn params_without_the_line_is_copied_as_is() {
        assert_eq!(params_without_device_file_changes(b"DeviceFileMode: 438\n"), b"DeviceFileMode: 438\n");
    }

    #[test]
    fn gpu_dirs_are_lowercase_with_the_16_bit_domain_second() {
        assert_eq!(gpu_dir_names("00000000:0F:00.0"), ["00000000:0f:00.0", "0000:0f:00.0"]);
        assert_eq!(gpu_dir_names("0000:0F:00.0"), ["0000:0f:00.0"]);
    }

    #[test]
    fn a_whole_gpu_gets_the_three_files_and_its_gpus_entry_only() {
        let mask = mask_for("2", None, &host());
        let names: Vec<&str> = mask.files.iter().map(|f| f.name).collect();
        assert_eq!(names, ["params", "version", "registry"]);
        assert!(String::from_utf8_lossy(&mask.files[0].content).contains("ModifyDeviceFiles: 0\n"));
        assert_eq!(mask.files[2].mode, 0o644);
        assert_eq!(binds(&mask), ["gpus/0000:17:00.0"]);
        assert!(mask.skipped.is_empty());
    }

    #[test]
    fn a_mig_device_gets_its_parent_and_its_two_access_files() {
        let mask = mask_for("0:1", None, &host());
        assert_eq!(
            binds(&mask),
            ["gpus/0000:07:00.0", "capabilities/gpu2/mig/gi8/access", "capabilities/gpu2/mig/gi8/ci0/access"]
        );
        assert!(mask.binds[0].dir);
        assert!(!mask.binds[1].dir);
    }

    #[test]
    fn mig_config_gets_the_whole_capabilities_directory() {
        let mask = mask_for("0:1", Some("all"), &host());
        assert_eq!(binds(&mask), ["gpus/0000:07:00.0", "capabilities"]);
    }

    #[test]
    fn a_32_bit_domain_directory_is_used_when_the_host_has_one() {
        let mut h = host();
        h.insert("gpus/00000000:17:00.0".into(), HostEntry::Dir);
        assert_eq!(binds(&mask_for("2", None, &h)), ["gpus/00000000:17:00.0"]);
    }

    #[test]
    fn what_the_host_lacks_is_skipped_with_a_line() {
        let mut h = host();
        h.remove("registry");
        h.remove("gpus/0000:17:00.0");
        h.remove("capabilities/gpu2/mig/gi8/ci0/access");
        let mask = mask_for("2,0:1", None, &h);
        assert_eq!(mask.files.len(), 2);
        assert_eq!(mask.skipped[0], "/proc/driver/nvidia/registry: not on the host");
        assert_eq!(mask.skipped[1], "/proc/driver/nvidia/gpus/0000:17:00.0: not on the host");
        assert_eq!(mask.skipped[2], "/proc/driver/nvidia/capabilities/gpu2/mig/gi8/ci0/access: not on the host");
        assert_eq!(mask.skipped.len(), 3);
    }

    #[test]
    fn a_symlink_or_other_entry_is_never_taken() {
        let mut h = host();
        h.insert("gpus/0000:17:00.0".into(), HostEntry::Other);
        h.insert("version".into(), HostEntry::Other);
        let mask = mask_for("2", None, &h);
        assert!(mask.binds.is_empty());
        assert_eq!(mask.files.len(), 2);
    }

    #[test]
    fn read_host_reads_files_dirs_and_refuses_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("gpus")).unwrap();
        std::fs::write(dir.path().join("version"), "v\n").unwrap();
        std::os::unix::fs::symlink("version", dir.path().join("registry")).unwrap();
        assert_eq!(read_host(dir.path(), "gpus"), Some(HostEntry::Dir));
        assert!(matches!(read_host(dir.path(), "version"), Some(HostEntry::File(c, _)) if c == b"v\n"));
        assert_eq!(read_host(dir.path(), "registry"), Some(HostEntry::Other));
        assert_eq!(read_host(dir.path(), "params"), None);
    }
}
