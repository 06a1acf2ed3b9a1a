//! The host's NVIDIA device nodes: which ([`plan`]) and making them so ([`ensure`]).
//!
//! Owner and mode as nvidia-modprobe (nvidia-modprobe-utils.c) makes them:
//! `/dev/nvidia<N>`, `/dev/nvidiactl` and `/dev/nvidia-modeset` get the driver's
//! `DeviceFileUID`/`DeviceFileGID`/`DeviceFileMode` from its params (0:0 0666
//! without them); `/dev/nvidia-uvm*` are 0:0 0666; a capability node is 0:0 with
//! its capability file's `DeviceFileMode`. Capability nodes are made for every
//! `mig-minors` entry whose capability file exists (`mig/config`, `mig/monitor`
//! and the GPU and compute instances that exist now), as nvidia-modprobe's
//! `mig_nvcaps_mknodes` does. A missing `nvidia-uvm` is loaded first when
//! `load-kmods` is on; without it there are no uvm nodes to make.

use super::SystemError;
use crate::driver::{DeviceFileParams, Driver, MigCap};
use crate::edits::{DeviceNode, MODESET_MINOR, NVIDIA_MAJOR, NVIDIACTL_MINOR, UVM_TOOLS_MINOR};
use crate::sys::FsOps;
use crate::sys::fs::FileKind;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// Capability nodes whose file gives no mode: read-only, as the driver makes GI/CI caps.
const CAP_DEFAULT_MODE: u32 = 0o444;
/// `/dev/nvidia-caps`, as nvidia-modprobe makes it.
const CAPS_DIR_MODE: u32 = 0o755;

/// The nodes a host should have, and what was noticed on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostNodes {
    /// Paths under `/dev`, e.g. `/dev/nvidia-caps/nvidia-cap21`.
    pub nodes: Vec<DeviceNode>,
    pub notes: Vec<String>,
}

/// The `Device Minor` of every GPU in `<proc>/driver/nvidia/gpus/*/information`, sorted.
pub fn gpu_minors(proc_root: &Path) -> Result<Vec<u32>, SystemError> {
    let dir = proc_root.join("driver/nvidia/gpus");
    let err = |path: &Path, e: std::io::Error| SystemError::Proc { path: path.into(), reason: e.to_string() };
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SystemError::Proc { path: dir, reason: "no NVIDIA driver is loaded".into() });
        }
        Err(e) => return Err(err(&dir, e)),
    };
    let mut minors = vec![];
    for entry in entries {
        let file = entry.map_err(|e| err(&dir, e))?.path().join("information");
        let text = std::fs::read_to_string(&file).map_err(|e| err(&file, e))?;
        let minor = text
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim() == "Device Minor")
            .and_then(|(_, v)| v.trim().parse::<u32>().ok())
            .ok_or_else(|| SystemError::Proc { path: file.clone(), reason: "no Device Minor line".into() })?;
        minors.push(minor);
    }
    minors.sort_unstable();
    Ok(minors)
}

fn driver_err(context: &str) -> impl FnOnce(crate::driver::DriverError) -> SystemError + '_ {
    move |source| SystemError::Driver { context: context.into(), source }
}

/// The nodes of the GPUs with `gpu_minors`, the control nodes, uvm (loading it when
/// missing and allowed) and the capabilities that exist.
pub fn plan<D: Driver + ?Sized>(driver: &D, gpu_minors: &[u32]) -> Result<HostNodes, SystemError> {
    let params = driver
        .device_file_params()
        .map_err(driver_err("device file owner and mode"))?
        .unwrap_or(DeviceFileParams::DEFAULT);
    let governed = |path: String, minor| DeviceNode {
        path,
        kind: 'c',
        major: NVIDIA_MAJOR,
        minor,
        file_mode: params.mode,
        uid: params.uid,
        gid: params.gid,
    };
    let mut notes = vec![];
    let mut nodes: Vec<DeviceNode> = gpu_minors.iter().map(|m| governed(format!("/dev/nvidia{m}"), *m)).collect();
    nodes.push(governed("/dev/nvidiactl".into(), NVIDIACTL_MINOR));
    nodes.push(governed("/dev/nvidia-modeset".into(), MODESET_MINOR));
    let mut uvm = driver.chardev_major("nvidia-uvm").map_err(driver_err("/proc/devices"))?;
    if uvm.is_none() && driver.load_kernel_module("nvidia-uvm").map_err(driver_err("loading nvidia-uvm"))? {
        uvm = driver.chardev_major("nvidia-uvm").map_err(driver_err("/proc/devices"))?;
    }
    match uvm {
        Some(major) => {
            nodes.push(DeviceNode::root_char("/dev/nvidia-uvm", major, 0, 0o666));
            nodes.push(DeviceNode::root_char("/dev/nvidia-uvm-tools", major, UVM_TOOLS_MINOR, 0o666));
        }
        None => notes.push("skipped /dev/nvidia-uvm*: /proc/devices has no nvidia-uvm major".into()),
    }
    let Some(caps_major) = driver.chardev_major("nvidia-caps").map_err(driver_err("/proc/devices"))? else {
        return Ok(HostNodes { nodes, notes });
    };
    let mut caps: Vec<(MigCap, Option<u32>)> = vec![(MigCap::Config, None), (MigCap::Monitor, None)];
    for &gpu in gpu_minors {
        let of_gpu = driver.mig_caps_of_gpu(gpu).map_err(driver_err("mig-minors"))?;
        caps.extend(of_gpu.into_iter().map(|(cap, minor)| (cap, Some(minor))));
    }
    for (cap, minor) in caps {
        // Only capabilities that exist have a file: an instance that was never created has none.
        let Some(file) = driver.cap_file(cap).map_err(driver_err("MIG capability file"))? else { continue };
        let minor = match minor {
            Some(m) => m,
            None => match driver.mig_cap_minor(cap).map_err(driver_err("mig-minors"))? {
                Some(m) => m,
                None => continue,
            },
        };
        if let Some(said) = file.minor.filter(|m| *m != minor) {
            notes.push(format!(
                "skipped capability {}: its file says minor {said}, mig-minors says {minor}",
                cap.proc_path()
            ));
            continue;
        }
        let mode = file.mode.map(|m| m & 0o777).unwrap_or(CAP_DEFAULT_MODE);
        nodes.push(DeviceNode::root_char(crate::resolve::nodes::cap_path(minor), caps_major, minor, mode));
    }
    Ok(HostNodes { nodes, notes })
}

/// `/dev/x/y` as `(["x"], "y")` under the dev root.
pub(crate) fn split(path: &str) -> (Vec<&str>, &str) {
    let rel = path.strip_prefix("/dev/").unwrap_or(path);
    let mut parts: Vec<&str> = rel.split('/').collect();
    let name = parts.pop().unwrap_or_default();
    (parts, name)
}

pub(crate) fn fs_err(path: PathBuf) -> impl FnOnce(std::io::Error) -> SystemError {
    move |e| SystemError::Fs { path, reason: e.to_string() }
}

/// Opens (making it, mode 0755, when missing) directory `dir` under the dev root;
/// anything but a directory there, a symlink included, is refused.
pub(crate) fn open_subdir<S: FsOps>(
    sys: &S,
    root: &S::Fd,
    dev_root: &Path,
    dir: &str,
    made: &mut Vec<String>,
) -> Result<S::Fd, SystemError> {
    let path = dev_root.join(dir);
    match sys.stat_at(root, OsStr::new(dir)).map_err(fs_err(path.clone()))? {
        None => {
            sys.mkdir_at(root, OsStr::new(dir), CAPS_DIR_MODE).map_err(fs_err(path.clone()))?;
            // mkdir is subject to the umask.
            sys.chmod_at(root, OsStr::new(dir), CAPS_DIR_MODE).map_err(fs_err(path.clone()))?;
            made.push(format!("created {}", path.display()));
        }
        Some(st) if st.kind == FileKind::Dir => {}
        Some(st) => return Err(SystemError::InTheWay { path, what: st.kind.describe(), want: "a directory" }),
    }
    sys.open_dir_in_root(root, Path::new(dir)).map_err(fs_err(path))
}

/// Makes each node so under `dev_root`: missing ones created, wrong owner or mode
/// fixed, a wrong device number or kind (a symlink included) replaced. A directory
/// or a mount in a node's place is refused. One line per node that changed.
pub fn ensure<S: FsOps>(sys: &S, dev_root: &Path, nodes: &[DeviceNode]) -> Result<Vec<String>, SystemError> {
    let root = sys.open_dir(dev_root).map_err(fs_err(dev_root.into()))?;
    let mut lines = vec![];
    for node in nodes {
        let (dirs, name) = split(&node.path);
        let dir = match dirs.as_slice() {
            [] => None,
            [d] => Some(open_subdir(sys, &root, dev_root, d, &mut lines)?),
            _ => {
                let path = dev_root.join(node.path.trim_start_matches('/'));
                return Err(SystemError::Fs { path, reason: "NVIDIA nodes are at most one directory deep".into() });
            }
        };
        let dir = dir.as_ref().unwrap_or(&root);
        let path = dev_root.join(node.path.strip_prefix("/dev/").unwrap_or(&node.path));
        if let Some(line) = ensure_node(sys, dir, name, &path, node)? {
            lines.push(line);
        }
    }
    Ok(lines)
}

fn ensure_node<S: FsOps>(
    sys: &S,
    dir: &S::Fd,
    name: &str,
    path: &Path,
    node: &DeviceNode,
) -> Result<Option<String>, SystemError> {
    let name = OsStr::new(name);
    let err = || fs_err(path.to_path_buf());
    let what = format!(
        "{} (c {}:{} {:04o} {}:{})",
        path.display(),
        node.major,
        node.minor,
        node.file_mode,
        node.uid,
        node.gid
    );
    let verb = match sys.stat_at(dir, name).map_err(err())? {
        None => "created",
        Some(st) if st.mount_root => {
            return Err(SystemError::InTheWay { path: path.into(), what: "a mount point", want: "a device node" });
        }
        Some(st) if st.kind == FileKind::Dir => {
            return Err(SystemError::InTheWay { path: path.into(), what: "a directory", want: "a device node" });
        }
        Some(st) if st.kind == FileKind::Char && (st.rdev_major, st.rdev_minor) == (node.major, node.minor) => {
            let owner_ok = (st.uid, st.gid) == (node.uid, node.gid);
            let mode_ok = st.perm == node.file_mode;
            if owner_ok && mode_ok {
                return Ok(None);
            }
            if !owner_ok {
                sys.chown_at(dir, name, node.uid, node.gid).map_err(err())?;
            }
            // chown clears nothing on a device node, but set the mode after it all the same.
            sys.chmod_at(dir, name, node.file_mode).map_err(err())?;
            return Ok(Some(format!("fixed {what}")));
        }
        Some(_) => {
            // Wrong device number or not a device (a symlink included): unlinking removes the entry itself.
            sys.unlink_at(dir, name).map_err(err())?;
            "replaced"
        }
    };
    sys.mknod_char_at(dir, name, node.file_mode, node.major, node.minor).map_err(err())?;
    sys.chown_at(dir, name, node.uid, node.gid).map_err(err())?;
    // mknod is subject to the umask.
    sys.chmod_at(dir, name, node.file_mode).map_err(err())?;
    Ok(Some(format!("{verb} {what}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::fake::FakeDriver;
    use crate::sys::fake::fs::RecordingFs;

    fn planned(driver: &FakeDriver) -> Vec<String> {
        let plan = plan(driver, &[0, 2]).unwrap();
        plan.nodes
            .iter()
            .map(|n| format!("{} {}:{} {:o} {}:{}", n.path, n.major, n.minor, n.file_mode, n.uid, n.gid))
            .collect()
    }

    /// The fake says every capability file exists; its mig-minors lists 15 GIs × 9 caps per GPU.
    #[test]
    fn plan_has_gpus_control_uvm_and_caps() {
        let p = planned(&FakeDriver::a100());
        assert_eq!(p[0], "/dev/nvidia0 195:0 666 0:0");
        assert_eq!(p[1], "/dev/nvidia2 195:2 666 0:0");
        assert_eq!(p[2], "/dev/nvidiactl 195:255 666 0:0");
        assert_eq!(p[3], "/dev/nvidia-modeset 195:254 666 0:0");
        assert_eq!(p[4], "/dev/nvidia-uvm 511:0 666 0:0");
        assert_eq!(p[5], "/dev/nvidia-uvm-tools 511:1 666 0:0");
        assert_eq!(p[6], "/dev/nvidia-caps/nvidia-cap1 508:1 400 0:0");
        assert_eq!(p[7], "/dev/nvidia-caps/nvidia-cap2 508:2 444 0:0");
        assert_eq!(p[8], "/dev/nvidia-caps/nvidia-cap3 508:3 444 0:0");
        assert_eq!(p.len(), 8 + 2 * 15 * 9);
    }

    #[test]
    fn plan_gives_gpu_and_control_nodes_the_params_owner_and_mode() {
        let driver =
            FakeDriver { params: Some(DeviceFileParams { uid: 0, gid: 44, mode: 0o660 }), ..FakeDriver::a100() };
        let p = planned(&driver);
        assert_eq!(p[0], "/dev/nvidia0 195:0 660 0:44");
        assert_eq!(p[2], "/dev/nvidiactl 195:255 660 0:44");
        assert_eq!(p[3], "/dev/nvidia-modeset 195:254 660 0:44");
        assert_eq!(p[4], "/dev/nvidia-uvm 511:0 666 0:0");
        assert_eq!(p[7], "/dev/nvidia-caps/nvidia-cap2 508:2 444 0:0");
    }

    #[test]
    fn plan_loads_a_missing_uvm() {
        let driver = FakeDriver::a100_without_uvm();
        let p = planned(&driver);
        assert_eq!(p[4], "/dev/nvidia-uvm 511:0 666 0:0");
        assert_eq!(*driver.loaded.borrow(), ["nvidia-uvm"]);
    }

    #[test]
    fn plan_without_uvm_and_load_kmods_skips_uvm_with_a_note() {
        let driver = FakeDriver { load_kmods: false, ..FakeDriver::a100_without_uvm() };
        let plan = plan(&driver, &[0]).unwrap();
        assert!(plan.nodes.iter().all(|n| !n.path.contains("uvm")));
        assert_eq!(plan.notes, ["skipped /dev/nvidia-uvm*: /proc/devices has no nvidia-uvm major"]);
    }

    #[test]
    fn plan_without_a_caps_major_has_no_caps() {
        let mut driver = FakeDriver::a100();
        driver.majors.retain(|(_, n)| *n != "nvidia-caps");
        assert!(planned(&driver).iter().all(|n| !n.contains("nvidia-caps")));
    }

    fn nodes() -> Vec<DeviceNode> {
        vec![
            DeviceNode {
                path: "/dev/nvidia0".into(),
                kind: 'c',
                major: 195,
                minor: 0,
                file_mode: 0o660,
                uid: 0,
                gid: 44,
            },
            DeviceNode::root_char("/dev/nvidia-caps/nvidia-cap21", 508, 21, 0o444),
        ]
    }

    #[test]
    fn missing_nodes_and_the_caps_dir_are_created() {
        let fs = RecordingFs::new().dir("/d");
        let lines = ensure(&fs, Path::new("/d"), &nodes()).unwrap();
        assert_eq!(lines[0], "created /d/nvidia0 (c 195:0 0660 0:44)");
        assert_eq!(lines[1], "created /d/nvidia-caps");
        assert_eq!(lines[2], "created /d/nvidia-caps/nvidia-cap21 (c 508:21 0444 0:0)");
        assert_eq!(fs.describe("/d/nvidia0").unwrap(), "c 195:0 0660 0:44");
        assert_eq!(fs.describe("/d/nvidia-caps").unwrap(), "dir 0755");
        assert_eq!(fs.describe("/d/nvidia-caps/nvidia-cap21").unwrap(), "c 508:21 0444 0:0");
    }

    #[test]
    fn correct_nodes_are_left_alone() {
        let fs = RecordingFs::new().char_dev("/d/nvidia0", 195, 0, 0o660).owned("/d/nvidia0", 0, 44).char_dev(
            "/d/nvidia-caps/nvidia-cap21",
            508,
            21,
            0o444,
        );
        assert!(ensure(&fs, Path::new("/d"), &nodes()).unwrap().is_empty());
        assert!(fs.changes().is_empty(), "{:?}", fs.changes());
    }

    #[test]
    fn a_wrong_mode_or_owner_is_fixed_in_place() {
        let fs = RecordingFs::new().char_dev("/d/nvidia0", 195, 0, 0o666).dir("/d/nvidia-caps");
        let lines = ensure(&fs, Path::new("/d"), &nodes()[..1]).unwrap();
        assert_eq!(lines, ["fixed /d/nvidia0 (c 195:0 0660 0:44)"]);
        assert_eq!(fs.changes(), ["chown /d/nvidia0 0:44", "chmod /d/nvidia0 0660"]);
    }

    #[test]
    fn a_wrong_device_number_is_replaced() {
        let fs = RecordingFs::new().char_dev("/d/nvidia0", 195, 7, 0o660).owned("/d/nvidia0", 0, 44);
        let lines = ensure(&fs, Path::new("/d"), &nodes()[..1]).unwrap();
        assert_eq!(lines, ["replaced /d/nvidia0 (c 195:0 0660 0:44)"]);
        assert_eq!(fs.describe("/d/nvidia0").unwrap(), "c 195:0 0660 0:44");
    }

    #[test]
    fn a_symlink_in_a_nodes_place_is_replaced_never_followed() {
        let fs = RecordingFs::new().char_dev("/etc/shadow-ish", 1, 3, 0o600).symlink("/d/nvidia0", "/etc/shadow-ish");
        ensure(&fs, Path::new("/d"), &nodes()[..1]).unwrap();
        assert_eq!(fs.describe("/d/nvidia0").unwrap(), "c 195:0 0660 0:44");
        assert_eq!(fs.describe("/etc/shadow-ish").unwrap(), "c 1:3 0600 0:0");
    }

    #[test]
    fn a_symlinked_caps_dir_is_refused() {
        let fs = RecordingFs::new().dir("/elsewhere").symlink("/d/nvidia-caps", "/elsewhere");
        let e = ensure(&fs, Path::new("/d"), &nodes()[1..]).unwrap_err().to_string();
        assert_eq!(e, "/d/nvidia-caps is a symlink, not a directory: refusing to touch it");
        assert!(fs.changes().is_empty(), "{:?}", fs.changes());
    }

    #[test]
    fn a_directory_or_mount_in_a_nodes_place_is_refused() {
        let fs = RecordingFs::new().dir("/d/nvidia0");
        let e = ensure(&fs, Path::new("/d"), &nodes()[..1]).unwrap_err().to_string();
        assert_eq!(e, "/d/nvidia0 is a directory, not a device node: refusing to touch it");
        let fs = RecordingFs::new().char_dev("/d/nvidia0", 195, 0, 0o666).mounted("/d/nvidia0");
        let e = ensure(&fs, Path::new("/d"), &nodes()[..1]).unwrap_err().to_string();
        assert_eq!(e, "/d/nvidia0 is a mount point, not a device node: refusing to touch it");
    }

    #[test]
    fn gpu_minors_come_from_the_information_files() {
        let dir = tempfile::tempdir().unwrap();
        for (bus, minor) in [("0000:07:00.0", 2), ("0000:0f:00.0", 3), ("0000:47:00.0", 0)] {
            let gpu = dir.path().join("driver/nvidia/gpus").join(bus);
            std::fs::create_dir_all(&gpu).unwrap();
            std::fs::write(gpu.join("information"), format!("Model: \t\t A100\nDevice Minor: \t {minor}\n")).unwrap();
        }
        assert_eq!(gpu_minors(dir.path()).unwrap(), [0, 2, 3]);
    }

    #[test]
    fn no_driver_is_an_error_saying_so() {
        let dir = tempfile::tempdir().unwrap();
        let e = gpu_minors(dir.path()).unwrap_err().to_string();
        assert!(e.ends_with("driver/nvidia/gpus: no NVIDIA driver is loaded"), "{e}");
    }
}
