//! The fake node generator: from a topology, writes the files a real NVIDIA
//! driver exposes (`/proc/devices`, `/proc/driver/nvidia/...`,
//! `/proc/driver/nvidia-caps/mig-minors`), the fake `libnvidia-ml.so.1`
//! plus its `topology.json`, and optionally the `/dev` nodes.
//!
//! Formats follow the open kernel modules (`nv-procfs.c`, `nv-caps.c`) and
//! nvidia-modprobe-utils, because mighook parses them as it would on a real
//! host.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::topology::{Gpu, MIG_MINORS_CIS, MIG_MINORS_GIS, MIG_MINORS_GPUS, Topology, TopologyError};

/// `/dev/nvidia<N>`, `nvidiactl` and `nvidia-modeset` share this major.
pub const NVIDIA_MAJOR: u32 = 195;
pub const NVIDIACTL_MINOR: u32 = 255;
pub const MODESET_MINOR: u32 = 254;
/// Cap minors and modes of `capabilities/mig/{config,monitor}`.
pub const CONFIG_MINOR: u32 = 1;
pub const MONITOR_MINOR: u32 = 2;
pub const CONFIG_MODE: u32 = 0o400;
pub const READ_MODE: u32 = 0o444;
/// File name the fake library has in a node directory.
pub const LIB_NAME: &str = "libnvidia-ml.so.1";

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Topology(#[from] TopologyError),
    #[error("fake-node: {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("fake-node: --mknod needs root (effective uid is {0})")]
    NotRoot(u32),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> NodeError + '_ {
    move |source| NodeError::Io { path: path.to_owned(), source }
}

/// A generated node directory.
#[derive(Debug, Clone)]
pub struct Node {
    pub root: PathBuf,
    pub topology: Topology,
}

impl Node {
    /// The fake library; absent if the node was built without one.
    pub fn lib(&self) -> PathBuf {
        self.root.join(LIB_NAME)
    }
    pub fn topology_path(&self) -> PathBuf {
        self.root.join("topology.json")
    }
    pub fn proc_dir(&self) -> PathBuf {
        self.root.join("proc")
    }
    pub fn dev_dir(&self) -> PathBuf {
        self.root.join("dev")
    }
}

/// A character device node the driver would have created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevNode {
    /// Relative to the node root, e.g. `dev/nvidia-caps/nvidia-cap21`.
    pub path: String,
    pub major: u32,
    pub minor: u32,
    pub mode: u32,
}

/// Loads `topology_path` and writes the node under `out_dir` (created if
/// needed). `lib_path` is copied to `<out>/libnvidia-ml.so.1` if given.
pub fn build(topology_path: &Path, out_dir: &Path, lib_path: Option<&Path>, mknod: bool) -> Result<Node, NodeError> {
    let text = fs::read_to_string(topology_path).map_err(io_err(topology_path))?;
    let topology = Topology::parse(&text, topology_path)?;
    write_node(&topology, &text, out_dir, lib_path, mknod)
}

/// Like `build`, for a topology built or modified in code.
pub fn build_from(
    topology: &Topology,
    out_dir: &Path,
    lib_path: Option<&Path>,
    mknod: bool,
) -> Result<Node, NodeError> {
    topology.validate().map_err(|reason| TopologyError::Invalid { path: out_dir.join("topology.json"), reason })?;
    write_node(topology, &topology.to_json(), out_dir, lib_path, mknod)
}

fn write_node(topo: &Topology, json: &str, out: &Path, lib: Option<&Path>, mknod: bool) -> Result<Node, NodeError> {
    if mknod {
        let euid = unsafe { libc::geteuid() };
        if euid != 0 {
            return Err(NodeError::NotRoot(euid));
        }
    }
    write(&out.join("topology.json"), json, 0o644)?;
    if let Some(lib) = lib {
        copy_replacing(lib, &out.join(LIB_NAME))?;
    }
    let proc = out.join("proc");
    write(&proc.join("devices"), &proc_devices(topo), 0o444)?;
    write(&proc.join("driver/nvidia-caps/mig-minors"), &mig_minors(), 0o444)?;
    let nv = proc.join("driver/nvidia");
    write(&nv.join("version"), &version(topo), 0o444)?;
    write(&nv.join("params"), &params(DeviceFiles::default()), 0o444)?;
    // What a driver loaded without NVreg_RegistryDwords shows (nv-procfs.c).
    write(&nv.join("registry"), "Binary: \"\"\n", 0o444)?;
    // The driver's other entries, which a container must not see.
    write(&nv.join("suspend"), "", 0o200)?;
    write(&nv.join("warnings/README"), "", 0o444)?;
    for (index, gpu) in topo.gpus.iter().enumerate() {
        let dir = nv.join("gpus").join(gpu.pci().proc_name());
        write(&dir.join("information"), &information(gpu, index), 0o444)?;
    }
    let caps = nv.join("capabilities");
    write(&caps.join("mig/config"), &cap_file(CONFIG_MINOR, CONFIG_MODE), 0o400)?;
    write(&caps.join("mig/monitor"), &cap_file(MONITOR_MINOR, READ_MODE), 0o444)?;
    for gpu in &topo.gpus {
        for (rel, minor) in mig_caps(gpu) {
            write(&caps.join(rel), &cap_file(minor, READ_MODE), 0o444)?;
        }
    }
    if mknod {
        for node in device_nodes(topo) {
            make_node(&out.join(&node.path), &node)?;
        }
    }
    Ok(Node { root: out.to_owned(), topology: topo.clone() })
}

fn write(path: &Path, contents: &str, mode: u32) -> Result<(), NodeError> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    // Replace rather than overwrite: a previous run may have left it read-only.
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(path)(e)),
        _ => {}
    }
    fs::write(path, contents).map_err(io_err(path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_err(path))
}

/// Copies via a temporary name and rename: overwriting a library in place
/// would corrupt a process that has it mapped.
fn copy_replacing(from: &Path, to: &Path) -> Result<(), NodeError> {
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let tmp = to.with_extension(format!("tmp{}", std::process::id()));
    fs::copy(from, &tmp).map_err(io_err(from))?;
    fs::rename(&tmp, to).map_err(io_err(to))
}

/// The cap minor the driver assigns to `gpu<gpu_minor>/gi<gi>/access` (ci
/// `None`) or `gpu<gpu_minor>/gi<gi>/ci<ci>/access`.
pub fn mig_minor(gpu_minor: u32, gi: u32, ci: Option<u32>) -> u32 {
    let gi_minor = 3 + gpu_minor * MIG_MINORS_GIS * (1 + MIG_MINORS_CIS) + gi * (1 + MIG_MINORS_CIS);
    match ci {
        None => gi_minor,
        Some(ci) => gi_minor + 1 + ci,
    }
}

/// `/proc/driver/nvidia-caps/mig-minors`: every possible cap of 32 GPUs,
/// whether or not the instance exists.
pub fn mig_minors() -> String {
    let mut s = String::with_capacity(128 * 1024);
    s.push_str(&format!("config {CONFIG_MINOR}\nmonitor {MONITOR_MINOR}\n"));
    for gpu in 0..MIG_MINORS_GPUS {
        for gi in 0..MIG_MINORS_GIS {
            s.push_str(&format!("gpu{gpu}/gi{gi}/access {}\n", mig_minor(gpu, gi, None)));
            for ci in 0..MIG_MINORS_CIS {
                s.push_str(&format!("gpu{gpu}/gi{gi}/ci{ci}/access {}\n", mig_minor(gpu, gi, Some(ci))));
            }
        }
    }
    s
}

/// `capabilities/...` paths (relative to `/proc/driver/nvidia/capabilities`)
/// and cap minors of the GIs and CIs that exist on `gpu`.
pub fn mig_caps(gpu: &Gpu) -> Vec<(String, u32)> {
    let m = gpu.minor;
    let mut out = Vec::new();
    for gi in gpu.gpu_instances() {
        out.push((format!("gpu{m}/mig/gi{gi}/access"), mig_minor(m, gi, None)));
        let mut cis: Vec<u32> = gpu.mig_devices.iter().filter(|d| d.gi == gi).map(|d| d.ci).collect();
        cis.sort_unstable();
        for ci in cis {
            out.push((format!("gpu{m}/mig/gi{gi}/ci{ci}/access"), mig_minor(m, gi, Some(ci))));
        }
    }
    out
}

/// A cap proc file as `nv_cap_procfs_read` prints it.
pub fn cap_file(minor: u32, mode: u32) -> String {
    format!("DeviceFileMinor: {minor}\nDeviceFileMode: {mode}\nDeviceFileModify: 1\n")
}

/// `/proc/devices`, with the topology's NVIDIA majors under their exact names.
pub fn proc_devices(topo: &Topology) -> String {
    let mut chars: Vec<(u32, &str)> = vec![
        (1, "mem"),
        (4, "/dev/vc/0"),
        (4, "tty"),
        (4, "ttyS"),
        (5, "/dev/tty"),
        (5, "/dev/console"),
        (5, "/dev/ptmx"),
        (7, "vcs"),
        (10, "misc"),
        (13, "input"),
        (21, "sg"),
        (29, "fb"),
        (128, "ptm"),
        (136, "pts"),
        (180, "usb"),
        (189, "usb_device"),
        (NVIDIA_MAJOR, "nvidia-frontend"),
        (226, "drm"),
    ];
    chars.extend(topo.chardev_majors.iter().map(|(name, major)| (*major, name.as_str())));
    chars.sort_by_key(|(major, _)| *major);
    let mut s = String::from("Character devices:\n");
    for (major, name) in chars {
        s.push_str(&format!("{major:3} {name}\n"));
    }
    s.push_str("\nBlock devices:\n");
    for (major, name) in [
        (7, "loop"),
        (8, "sd"),
        (9, "md"),
        (11, "sr"),
        (65, "sd"),
        (253, "device-mapper"),
        (254, "mdp"),
        (259, "blkext"),
    ] {
        s.push_str(&format!("{major:3} {name}\n"));
    }
    s
}

/// `/proc/driver/nvidia/gpus/<bus>/information` as `nv-procfs.c` prints it.
pub fn information(gpu: &Gpu, index: usize) -> String {
    let vbios = match gpu.name.as_str() {
        n if n.starts_with("NVIDIA A100") => "92.00.45.00.03",
        n if n.starts_with("NVIDIA H100") => "96.00.99.00.01",
        "NVIDIA A30" => "92.00.66.00.01",
        _ => "??.??.??.??.??",
    };
    format!(
        "Model: \t\t {}\nIRQ:   \t\t {}\nGPU UUID: \t {}\nVideo BIOS: \t {}\nBus Type: \t PCIe\n\
         DMA Size: \t 47 bits\nDMA Mask: \t 0x7fffffffffff\nBus Location: \t {}\n\
         Device Minor: \t {}\nGPU Excluded:\t No\n",
        gpu.name,
        200 + index,
        gpu.uuid,
        vbios,
        gpu.pci().proc_name(),
        gpu.minor,
    )
}

fn version(topo: &Topology) -> String {
    format!(
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  {}  Tue Mar  5 22:23:56 UTC 2024\n\
         GCC version:  gcc version 12.2.0 (Debian 12.2.0-14) \n",
        topo.driver_version
    )
}

/// Owner and mode the driver gives its device files: `NVreg_DeviceFileUID`,
/// `NVreg_DeviceFileGID`, `NVreg_DeviceFileMode`. The default is a stock driver's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceFiles {
    pub uid: u32,
    pub gid: u32,
    /// Permission bits; the params file shows them in decimal (0666 is 438).
    pub mode: u32,
}

impl Default for DeviceFiles {
    fn default() -> Self {
        DeviceFiles { uid: 0, gid: 0, mode: 0o666 }
    }
}

/// `/proc/driver/nvidia/params` as `nv-procfs.c` prints it (a subset of its lines).
pub fn params(files: DeviceFiles) -> String {
    let DeviceFiles { uid, gid, mode } = files;
    format!(
        "ResmanDebugLevel: 4294967295\nRmLogonRC: 1\nModifyDeviceFiles: 1\n\
         DeviceFileUID: {uid}\nDeviceFileGID: {gid}\nDeviceFileMode: {mode}\nInitializeSystemMemoryAllocations: 1\n\
         UsePageAttributeTable: 4294967295\nEnableMSI: 1\nEnablePCIeGen3: 0\nRegistryDwords: \"\"\nRmMsg: \"\"\n"
    )
}

/// Host nodes whose owner and mode come from the params (nvidia-modprobe's
/// `nvidia_mknod` and `nvidia_modeset_mknod`; uvm and caps do not read them).
fn governed_by_params(node: &DevNode) -> bool {
    node.major == NVIDIA_MAJOR
}

/// Gives an existing node other driver params: rewrites `params` and, for a node
/// made with `--mknod`, the owner and mode of the host nodes they govern.
pub fn set_device_files(node: &Node, files: DeviceFiles) -> Result<(), NodeError> {
    write(&node.proc_dir().join("driver/nvidia/params"), &params(files), 0o444)?;
    for dev in device_nodes(&node.topology).iter().filter(|d| governed_by_params(d)) {
        let path = node.root.join(&dev.path);
        if !path.exists() {
            continue;
        }
        std::os::unix::fs::chown(&path, Some(files.uid), Some(files.gid)).map_err(io_err(&path))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(files.mode)).map_err(io_err(&path))?;
    }
    Ok(())
}

/// The `/dev` nodes a host with this topology has: control nodes, one per
/// GPU, uvm (if its major is registered) and the caps of existing GIs/CIs
/// plus config/monitor (if `nvidia-caps` is registered).
pub fn device_nodes(topo: &Topology) -> Vec<DevNode> {
    let node = |path: String, major, minor, mode| DevNode { path, major, minor, mode };
    let mut out = vec![
        node("dev/nvidiactl".into(), NVIDIA_MAJOR, NVIDIACTL_MINOR, 0o666),
        node("dev/nvidia-modeset".into(), NVIDIA_MAJOR, MODESET_MINOR, 0o666),
    ];
    for gpu in &topo.gpus {
        out.push(node(format!("dev/nvidia{}", gpu.minor), NVIDIA_MAJOR, gpu.minor, 0o666));
    }
    if let Some(&uvm) = topo.chardev_majors.get("nvidia-uvm") {
        out.push(node("dev/nvidia-uvm".into(), uvm, 0, 0o666));
        out.push(node("dev/nvidia-uvm-tools".into(), uvm, 1, 0o666));
    }
    if let Some(&imex) = topo.chardev_majors.get("nvidia-caps-imex-channels") {
        for &channel in &topo.imex_channels {
            out.push(node(format!("dev/nvidia-caps-imex-channels/channel{channel}"), imex, channel, 0o666));
        }
    }
    if let Some(&caps) = topo.chardev_majors.get("nvidia-caps") {
        let cap = |minor: u32| format!("dev/nvidia-caps/nvidia-cap{minor}");
        out.push(node(cap(CONFIG_MINOR), caps, CONFIG_MINOR, CONFIG_MODE));
        out.push(node(cap(MONITOR_MINOR), caps, MONITOR_MINOR, READ_MODE));
        for gpu in &topo.gpus {
            for (_, minor) in mig_caps(gpu) {
                out.push(node(cap(minor), caps, minor, READ_MODE));
            }
        }
    }
    out
}

fn make_node(path: &Path, node: &DevNode) -> Result<(), NodeError> {
    use std::os::unix::ffi::OsStrExt;
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(path)(e)),
        _ => {}
    }
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io_err(path)(io::Error::from(io::ErrorKind::InvalidInput)))?;
    let dev = libc::makedev(node.major, node.minor);
    if unsafe { libc::mknod(c_path.as_ptr(), libc::S_IFCHR | node.mode, dev) } != 0 {
        return Err(io_err(path)(io::Error::last_os_error()));
    }
    // mknod's mode is filtered by the umask; set the driver's mode exactly.
    fs::set_permissions(path, fs::Permissions::from_mode(node.mode)).map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::locate::topology;

    fn a100x8() -> Topology {
        Topology::load(topology("a100x8.json")).unwrap()
    }

    fn read(root: &Path, rel: &str) -> String {
        fs::read_to_string(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    #[test]
    fn mig_minors_first_lines() {
        let text = mig_minors();
        let first: Vec<&str> = text.lines().take(13).collect();
        assert_eq!(first[0], "config 1");
        assert_eq!(first[1], "monitor 2");
        assert_eq!(first[2], "gpu0/gi0/access 3");
        assert_eq!(first[3], "gpu0/gi0/ci0/access 4");
        assert_eq!(first[10], "gpu0/gi0/ci7/access 11");
        assert_eq!(first[11], "gpu0/gi1/access 12");
        assert_eq!(first[12], "gpu0/gi1/ci0/access 13");
    }

    #[test]
    fn mig_minors_last_line_and_count() {
        let text = mig_minors();
        assert!(text.ends_with("gpu31/gi14/ci7/access 4322\n"));
        assert_eq!(text.lines().count(), 4322);
        assert!(text.lines().any(|l| l == "gpu1/gi0/access 138"));
        assert!(text.lines().any(|l| l == "gpu31/gi14/access 4314"));
    }

    #[test]
    fn mig_minor_is_keyed_by_gpu_minor() {
        assert_eq!(mig_minor(0, 0, None), 3);
        assert_eq!(mig_minor(2, 8, None), 3 + 2 * 135 + 8 * 9);
        assert_eq!(mig_minor(2, 8, Some(0)), 3 + 2 * 135 + 8 * 9 + 1);
        assert_eq!(mig_minor(31, 14, Some(7)), 4322);
    }

    #[test]
    fn every_mig_minors_number_is_distinct() {
        let text = mig_minors();
        let mut nums: Vec<u32> = text.lines().map(|l| l.rsplit(' ').next().unwrap().parse().unwrap()).collect();
        nums.sort_unstable();
        assert_eq!(nums, (1..=4322).collect::<Vec<_>>());
    }

    #[test]
    fn proc_devices_lists_exact_names() {
        let text = proc_devices(&a100x8());
        assert!(text.starts_with("Character devices:\n  1 mem\n"));
        assert!(text.contains("\n195 nvidia-frontend\n"));
        assert!(text.contains("\n508 nvidia-caps\n509 nvidia-caps-imex-channels\n511 nvidia-uvm\n"));
        assert!(text.contains("\n\nBlock devices:\n"));
        let chars = text.split("\n\n").next().unwrap();
        assert!(!chars.contains("loop"), "block devices leaked into the char section");
    }

    #[test]
    fn proc_devices_without_caps_major() {
        let mut t = a100x8();
        t.chardev_majors.remove("nvidia-caps");
        let text = proc_devices(&t);
        assert!(!text.contains("nvidia-caps\n"));
        assert!(text.contains("509 nvidia-caps-imex-channels\n"));
    }

    #[test]
    fn information_file_matches_the_driver_layout() {
        let t = a100x8();
        let expected = format!(
            "Model: \t\t NVIDIA A100-SXM4-40GB\nIRQ:   \t\t 200\nGPU UUID: \t {}\n\
             Video BIOS: \t 92.00.45.00.03\nBus Type: \t PCIe\nDMA Size: \t 47 bits\n\
             DMA Mask: \t 0x7fffffffffff\nBus Location: \t 0000:07:00.0\n\
             Device Minor: \t 2\nGPU Excluded:\t No\n",
            t.gpus[0].uuid
        );
        assert_eq!(information(&t.gpus[0], 0), expected);
    }

    #[test]
    fn cap_file_format() {
        assert_eq!(cap_file(1, 256), "DeviceFileMinor: 1\nDeviceFileMode: 256\nDeviceFileModify: 1\n");
    }

    #[test]
    fn mig_caps_of_a_gpu_with_several_cis_per_gi() {
        let t = a100x8();
        // GPU1 has minor 3: GI 1 with CI 0,1,2 and GI 2 with CI 0.
        let caps: Vec<(String, u32)> = mig_caps(&t.gpus[1]);
        let g1 = mig_minor(3, 1, None);
        let g2 = mig_minor(3, 2, None);
        assert_eq!(
            caps,
            vec![
                ("gpu3/mig/gi1/access".to_string(), g1),
                ("gpu3/mig/gi1/ci0/access".to_string(), g1 + 1),
                ("gpu3/mig/gi1/ci1/access".to_string(), g1 + 2),
                ("gpu3/mig/gi1/ci2/access".to_string(), g1 + 3),
                ("gpu3/mig/gi2/access".to_string(), g2),
                ("gpu3/mig/gi2/ci0/access".to_string(), g2 + 1),
            ]
        );
    }

    #[test]
    fn build_writes_the_proc_tree() {
        let tmp = tempfile::tempdir().unwrap();
        let node = build(&topology("a100x8.json"), tmp.path(), None, false).unwrap();
        let r = &node.root;
        assert_eq!(read(r, "topology.json"), fs::read_to_string(topology("a100x8.json")).unwrap());
        assert_eq!(read(r, "proc/driver/nvidia-caps/mig-minors"), mig_minors());
        assert_eq!(read(r, "proc/driver/nvidia/capabilities/mig/config"), cap_file(1, 256));
        assert_eq!(read(r, "proc/driver/nvidia/capabilities/mig/monitor"), cap_file(2, 292));
        // GPU0 (minor 2), slot 1: GI 8 CI 0.
        assert_eq!(
            read(r, "proc/driver/nvidia/capabilities/gpu2/mig/gi8/access"),
            cap_file(mig_minor(2, 8, None), 292)
        );
        assert_eq!(
            read(r, "proc/driver/nvidia/capabilities/gpu2/mig/gi8/ci0/access"),
            cap_file(mig_minor(2, 8, Some(0)), 292)
        );
        // GI 10 does not exist on GPU0; GPU6 (minor 4) has MIG disabled.
        assert!(!r.join("proc/driver/nvidia/capabilities/gpu2/mig/gi10").exists());
        assert!(!r.join("proc/driver/nvidia/capabilities/gpu4").exists());
        let info = read(r, "proc/driver/nvidia/gpus/0000:0f:00.0/information");
        assert!(info.contains("Device Minor: \t 3\n"), "{info}");
        assert_eq!(fs::read_dir(r.join("proc/driver/nvidia/gpus")).unwrap().count(), 8);
        assert_eq!(read(r, "proc/driver/nvidia/registry"), "Binary: \"\"\n");
        assert!(read(r, "proc/devices").contains("508 nvidia-caps\n"));
        assert!(!r.join("dev").exists());
        assert!(!node.lib().exists());
    }

    #[test]
    fn params_are_a_stock_drivers_unless_set() {
        let tmp = tempfile::tempdir().unwrap();
        let node = build(&topology("a100x8.json"), tmp.path(), None, false).unwrap();
        let text = read(&node.root, "proc/driver/nvidia/params");
        for line in ["ModifyDeviceFiles: 1", "DeviceFileUID: 0", "DeviceFileGID: 0", "DeviceFileMode: 438"] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        set_device_files(&node, DeviceFiles { uid: 0, gid: 44, mode: 0o660 }).unwrap();
        let text = read(&node.root, "proc/driver/nvidia/params");
        for line in ["DeviceFileUID: 0", "DeviceFileGID: 44", "DeviceFileMode: 432"] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }

    #[test]
    fn build_copies_the_library_and_can_rebuild() {
        let tmp = tempfile::tempdir().unwrap();
        let lib = tmp.path().join("some.so");
        fs::write(&lib, b"not really a library").unwrap();
        let out = tmp.path().join("node");
        build(&topology("a30-1.json"), &out, Some(&lib), false).unwrap();
        let node = build(&topology("a30-1.json"), &out, Some(&lib), false).unwrap();
        assert_eq!(fs::read(node.lib()).unwrap(), b"not really a library");
    }

    #[test]
    fn build_rejects_an_invalid_topology() {
        let tmp = tempfile::tempdir().unwrap();
        let mut t = a100x8();
        t.gpus[1].minor = t.gpus[0].minor;
        let err = build_from(&t, tmp.path(), None, false).unwrap_err();
        assert!(err.to_string().contains("duplicate minor 2"), "{err}");
    }

    #[test]
    fn device_nodes_of_a100x8() {
        let nodes = device_nodes(&a100x8());
        let find = |p: &str| nodes.iter().find(|n| n.path == p).unwrap_or_else(|| panic!("{p} missing"));
        assert_eq!(
            find("dev/nvidiactl"),
            &DevNode { path: "dev/nvidiactl".into(), major: 195, minor: 255, mode: 0o666 }
        );
        assert_eq!((find("dev/nvidia-uvm").major, find("dev/nvidia-uvm").minor), (511, 0));
        assert_eq!((find("dev/nvidia-uvm-tools").major, find("dev/nvidia-uvm-tools").minor), (511, 1));
        assert_eq!(find("dev/nvidia-modeset").minor, 254);
        assert_eq!(find("dev/nvidia2").minor, 2);
        assert_eq!(find("dev/nvidia-caps/nvidia-cap1").mode, 0o400);
        assert_eq!(find("dev/nvidia-caps/nvidia-cap2").mode, 0o444);
        let gi8 = mig_minor(2, 8, None);
        assert_eq!(find(&format!("dev/nvidia-caps/nvidia-cap{gi8}")).major, 508);
        assert_eq!(
            find("dev/nvidia-caps-imex-channels/channel1"),
            &DevNode { path: "dev/nvidia-caps-imex-channels/channel1".into(), major: 509, minor: 1, mode: 0o666 }
        );
        // 2 control + 8 GPUs + 2 uvm + IMEX channels 0 and 1 + config/monitor + the GI/CI caps.
        let caps: usize = a100x8().gpus.iter().map(|g| mig_caps(g).len()).sum();
        assert_eq!(nodes.len(), 2 + 8 + 2 + 2 + 2 + caps);
    }

    #[test]
    fn mknod_creates_char_devices_with_driver_modes() {
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIPPED: mknod_creates_char_devices_with_driver_modes needs root");
            return;
        }
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let tmp = tempfile::tempdir().unwrap();
        let node = build(&topology("a100x8.json"), tmp.path(), None, true).unwrap();
        for expected in device_nodes(&node.topology) {
            let meta = fs::symlink_metadata(node.root.join(&expected.path)).unwrap();
            assert!(meta.file_type().is_char_device(), "{}", expected.path);
            let rdev = meta.rdev();
            assert_eq!((libc::major(rdev), libc::minor(rdev)), (expected.major, expected.minor), "{}", expected.path);
            assert_eq!(meta.mode() & 0o7777, expected.mode, "{}", expected.path);
        }
        // Rebuilding over existing nodes works.
        build(&topology("a100x8.json"), tmp.path(), None, true).unwrap();
    }
}
