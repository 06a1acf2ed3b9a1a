//! Facts from the NVIDIA driver, behind one trait.
//!
//! [`Driver`] is everything resolution may ask: GPUs and MIG devices from NVML
//! ([`nvml`], through nvml-wrapper's real dlopen path), and char majors and
//! capability minors from the driver's /proc files ([`procfs`]), and the
//! driver's user-space files under the driver root ([`crate::driver_files`]). Queries are
//! narrow on purpose (one GPU, one slot), so a request for one device costs one
//! device's worth of driver calls. [`HostDriver`] is the real thing; tests use
//! an in-memory fake.

pub mod imex;
pub mod kmod;
pub mod nvml;
pub mod procfs;

use crate::config::MissingDriverFiles;
use crate::driver_files::DriverFiles;
use crate::request::{DriverCapabilities, PciBusId};
use serde::Serialize;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum DriverError {
    #[error("cannot load NVML from {lib}: {reason}")]
    NvmlLoad { lib: String, reason: String },
    #[error("NVML {call} failed: {reason}")]
    Nvml { call: String, reason: String },
    #[error("cannot read {path}: {reason}")]
    Proc { path: String, reason: String },
    #[error("{path}: {reason}")]
    Inconsistent { path: String, reason: String },
    /// A driver file that exists but does not say what it must (fail closed: no guessing).
    #[error("{path} is malformed: {reason}")]
    Malformed { path: String, reason: String },
    #[error(transparent)]
    Files(#[from] crate::driver_files::DriverFilesError),
    #[error(
        "{capability} needs {library}, which is not under the driver root {} (missing-driver-files = \"error\")",
        root.display()
    )]
    MissingLibrary { capability: &'static str, library: &'static str, root: std::path::PathBuf },
    #[error("{command} failed: {reason}")]
    Modprobe { command: String, reason: String },
}

/// Whether a GPU is partitioned into MIG devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MigMode {
    Enabled,
    Disabled,
    /// The GPU (or driver) has no MIG.
    Unsupported,
}

/// One physical GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Gpu {
    /// NVML index (`nvidia-smi` order).
    pub index: u32,
    /// Device minor: `/dev/nvidia<minor>`; also the `gpu<N>` of capability paths.
    pub minor: u32,
    pub uuid: String,
    pub pci_bus_id: String,
    pub name: String,
    pub mig_mode: MigMode,
}

/// One MIG device (a compute instance inside a GPU instance).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MigDevice {
    /// Index given to `nvmlDeviceGetMigDeviceHandleByIndex`: the `j` of `i:j`.
    pub slot: u32,
    pub uuid: String,
    pub gi: u32,
    pub ci: u32,
    /// e.g. `1g.5gb` or `1c.3g.20gb`, when NVML's device name tells it.
    pub profile: Option<String>,
}

/// A MIG capability, named as in `/proc/driver/nvidia-caps/mig-minors`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MigCap {
    Config,
    Monitor,
    /// `gpu<minor>/gi<gi>/access`
    Gi {
        gpu_minor: u32,
        gi: u32,
    },
    /// `gpu<minor>/gi<gi>/ci<ci>/access`
    Ci {
        gpu_minor: u32,
        gi: u32,
        ci: u32,
    },
}

impl MigCap {
    /// The matching file under `/proc/driver/nvidia/capabilities/`.
    pub fn proc_path(&self) -> String {
        match *self {
            MigCap::Config => "mig/config".into(),
            MigCap::Monitor => "mig/monitor".into(),
            MigCap::Gi { gpu_minor, gi } => format!("gpu{gpu_minor}/mig/gi{gi}/access"),
            MigCap::Ci { gpu_minor, gi, ci } => format!("gpu{gpu_minor}/mig/gi{gi}/ci{ci}/access"),
        }
    }

    pub fn gpu_minor(&self) -> Option<u32> {
        match *self {
            MigCap::Gi { gpu_minor, .. } | MigCap::Ci { gpu_minor, .. } => Some(gpu_minor),
            _ => None,
        }
    }
}

/// A capability's device node facts from `/proc/driver/nvidia/capabilities/...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapFile {
    pub minor: Option<u32>,
    pub mode: Option<u32>,
}

/// Owner and mode the driver gives its device files: `NVreg_DeviceFileUID`,
/// `NVreg_DeviceFileGID` and `NVreg_DeviceFileMode`, as `/proc/driver/nvidia/params`
/// shows them (`DeviceFileUID: 0`, `DeviceFileGID: 0`, `DeviceFileMode: 438`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceFileParams {
    pub uid: u32,
    pub gid: u32,
    /// Permission bits only (a params file with more is malformed).
    pub mode: u32,
}

impl DeviceFileParams {
    /// The driver's own defaults (`NV_DEVICE_FILE_UID/GID/MODE` of nvidia-modprobe):
    /// what a host without a params file (no driver loaded) gets.
    pub const DEFAULT: DeviceFileParams = DeviceFileParams { uid: 0, gid: 0, mode: 0o666 };
}

/// Every fact resolution needs from the driver.
pub trait Driver {
    fn driver_version(&self) -> Result<String, DriverError>;
    fn gpu_count(&self) -> Result<u32, DriverError>;
    fn gpu(&self, index: u32) -> Result<Gpu, DriverError>;
    fn gpu_index_by_uuid(&self, uuid: &str) -> Result<Option<u32>, DriverError>;
    fn gpu_index_by_pci(&self, pci: &PciBusId) -> Result<Option<u32>, DriverError>;
    /// Size of the MIG handle table (`nvmlDeviceGetMaxMigDeviceCount`).
    fn mig_slot_count(&self, gpu_index: u32) -> Result<u32, DriverError>;
    /// `None` for an empty slot.
    fn mig_device(&self, gpu_index: u32, slot: u32) -> Result<Option<MigDevice>, DriverError>;
    /// GPU index and slot of a MIG device by its `MIG-<uuid>`.
    fn mig_by_uuid(&self, uuid: &str) -> Result<Option<(u32, MigDevice)>, DriverError>;
    /// Char major registered under exactly `name` in `/proc/devices`.
    fn chardev_major(&self, name: &str) -> Result<Option<u32>, DriverError>;
    /// Node minor of a MIG capability from `mig-minors`.
    fn mig_cap_minor(&self, cap: MigCap) -> Result<Option<u32>, DriverError>;
    /// Every GI/CI capability that `mig-minors` lists for a GPU minor.
    fn mig_caps_of_gpu(&self, gpu_minor: u32) -> Result<Vec<(MigCap, u32)>, DriverError>;
    /// `DeviceFileMinor`/`DeviceFileMode` of a capability, if its proc file exists.
    fn cap_file(&self, cap: MigCap) -> Result<Option<CapFile>, DriverError>;
    /// Owner and mode of the GPU and control nodes from the driver's params;
    /// `None` when there is no params file (no driver loaded). No default body:
    /// a driver that forgot it would silently widen a host's group-only GPUs.
    fn device_file_params(&self) -> Result<Option<DeviceFileParams>, DriverError>;
    /// The host's node of IMEX channel `channel`; `None` when the host has none.
    /// No default body, like the params: a driver that forgot it must not compile.
    fn imex_channel(&self, channel: u32) -> Result<Option<imex::ImexNode>, DriverError>;
    /// Every IMEX channel node the host has, by channel number.
    fn imex_channels(&self) -> Result<Vec<imex::ImexNode>, DriverError>;
    /// Loads a missing kernel module (`nvidia-uvm`, `nvidia-modeset`) with the host's
    /// modprobe when `load-kmods` is on, at most once per module: `Ok(true)` when it was
    /// loaded (later answers come from freshly read /proc files), `Ok(false)` when
    /// loading is off. No default body: a driver must say which it does.
    fn load_kernel_module(&self, module: &str) -> Result<bool, DriverError>;
    /// Whether a kernel module is loaded, from `/proc/modules`; `None` when there is no
    /// such file to tell (a simulated /proc).
    fn kernel_module_loaded(&self, module: &str) -> Result<Option<bool>, DriverError>;

    // What image requirements (`NVIDIA_REQUIRE_*`, [`crate::resolve::require`]) compare against.
    /// `nvmlSystemGetCudaDriverVersion_v2`: the CUDA version the driver supports as
    /// `1000 * major + 10 * minor` (12040 is 12.4; [`cuda_version_text`]).
    fn cuda_driver_version(&self) -> Result<u32, DriverError>;
    /// `nvmlDeviceGetBrand` of a GPU, named as NVIDIA's toolkit names it ([`brand_name`]).
    fn gpu_brand(&self, gpu_index: u32) -> Result<&'static str, DriverError>;
    /// `nvmlDeviceGetCudaComputeCapability` of a GPU: `(major, minor)`, `(9, 0)` for an H100.
    fn compute_capability(&self, gpu_index: u32) -> Result<(u32, u32), DriverError>;

    /// The driver's user-space files that `caps` asks for; `None` where there are
    /// none to give (no driver root, or nothing of the driver's under it).
    fn driver_files(&self, caps: &DriverCapabilities) -> Result<Option<DriverFiles>, DriverError> {
        let _ = caps;
        Ok(None)
    }

    /// Every occupied MIG slot of a GPU, in slot order; empty slots are skipped.
    fn mig_devices(&self, gpu_index: u32) -> Result<Vec<MigDevice>, DriverError> {
        let mut out = Vec::new();
        for slot in 0..self.mig_slot_count(gpu_index)? {
            out.extend(self.mig_device(gpu_index, slot)?);
        }
        Ok(out)
    }

    /// The MIG device of a GPU with GPU instance `gi` and compute instance `ci`
    /// (the first in slot order), for legacy `MIG-GPU-<uuid>/<gi>/<ci>` names.
    fn mig_by_instance(&self, gpu_index: u32, gi: u32, ci: u32) -> Result<Option<MigDevice>, DriverError> {
        Ok(self.mig_devices(gpu_index)?.into_iter().find(|m| m.gi == gi && m.ci == ci))
    }
}

/// `12.4` for 12040, as libnvidia-container formats `cuDriverGetVersion`: `v / 1000` `.` `v % 100 / 10`.
pub fn cuda_version_text(version: u32) -> String {
    format!("{}.{}", version / 1000, version % 100 / 10)
}

/// A GPU brand (an `nvmlBrandType_t` value) as NVIDIA's toolkit names it for
/// `brand=` requirements: the names of libnvidia-container (`Quadro`, `Tesla`, `NVS`,
/// `GRID`, `GeForce`, `TITAN`), and for the newer brands the spellings CUDA images
/// ask for (`vapps`, `vpc`, `vcs`, `vws`, `cloudgaming`, `quadrortx`, `nvidiartx`,
/// `nvidia`, `geforcertx`, `titanrtx`); brands compare case-insensitively. A value
/// this table does not know is `Unknown`, as in libnvidia-container.
pub fn brand_name(nvml_brand: u32) -> &'static str {
    match nvml_brand {
        1 => "Quadro",
        2 => "Tesla",
        3 => "NVS",
        4 => "GRID",
        5 => "GeForce",
        6 => "TITAN",
        7 => "VApps",
        8 => "VPC",
        9 => "VCS",
        10 => "VWS",
        11 => "CloudGaming",
        12 => "QuadroRTX",
        13 => "NvidiaRTX",
        14 => "Nvidia",
        15 => "GeForceRTX",
        16 => "TitanRTX",
        _ => "Unknown",
    }
}

/// The real driver: NVML loaded on first use, /proc files under a root, user-space
/// files under a driver root.
pub struct HostDriver {
    nvml: nvml::LazyNvml,
    proc: procfs::ProcFs,
    driver_root: Option<PathBuf>,
    missing_files: MissingDriverFiles,
    /// Where the host's device nodes are (IMEX channels are known by their nodes).
    dev_root: PathBuf,
    /// The host's modprobe when `load-kmods` is on.
    modprobe: Option<kmod::Modprobe>,
}

/// The library each capability cannot do without, for `missing-driver-files = "error"`.
const ESSENTIAL: &[(&str, &str, &str)] =
    &[("compute", "libcuda.so", "libcuda.so.1"), ("utility", "libnvidia-ml.so", "libnvidia-ml.so.1")];

impl HostDriver {
    /// NVML from `nvml_lib` as given, /proc files under `proc_root`, no driver files.
    pub fn new(nvml_lib: &str, proc_root: &Path) -> Self {
        HostDriver {
            nvml: nvml::LazyNvml::new(nvml_lib),
            proc: procfs::ProcFs::new(proc_root),
            driver_root: None,
            missing_files: MissingDriverFiles::Warn,
            dev_root: PathBuf::from("/dev"),
            modprobe: None,
        }
    }

    /// The driver under `driver_root`: its user-space files are found there, and a bare
    /// `nvml_lib` name is looked up in the root's own loader cache.
    pub fn with_driver_root(nvml_lib: &str, proc_root: &Path, driver_root: &Path, missing: MissingDriverFiles) -> Self {
        HostDriver {
            nvml: nvml::LazyNvml::under_root(nvml_lib, driver_root),
            proc: procfs::ProcFs::new(proc_root),
            driver_root: Some(driver_root.to_path_buf()),
            missing_files: missing,
            dev_root: PathBuf::from("/dev"),
            modprobe: None,
        }
    }

    /// The host's device nodes under `dev_root` instead of `/dev`.
    pub fn with_dev_root(mut self, dev_root: &Path) -> Self {
        self.dev_root = dev_root.to_path_buf();
        self
    }

    /// Loads missing kernel modules with the host's `modprobe` (an absolute path); `None`: never.
    pub fn with_modprobe(mut self, modprobe: Option<&Path>) -> Self {
        self.modprobe = modprobe.map(kmod::Modprobe::new);
        self
    }
}

impl Driver for HostDriver {
    fn driver_version(&self) -> Result<String, DriverError> {
        self.nvml.get()?.driver_version()
    }
    fn gpu_count(&self) -> Result<u32, DriverError> {
        self.nvml.get()?.gpu_count()
    }
    fn gpu(&self, index: u32) -> Result<Gpu, DriverError> {
        self.nvml.get()?.gpu(index)
    }
    fn gpu_index_by_uuid(&self, uuid: &str) -> Result<Option<u32>, DriverError> {
        self.nvml.get()?.gpu_index_by_uuid(uuid)
    }
    fn gpu_index_by_pci(&self, pci: &PciBusId) -> Result<Option<u32>, DriverError> {
        self.nvml.get()?.gpu_index_by_pci(pci)
    }
    fn mig_slot_count(&self, gpu_index: u32) -> Result<u32, DriverError> {
        self.nvml.get()?.mig_slot_count(gpu_index)
    }
    fn mig_device(&self, gpu_index: u32, slot: u32) -> Result<Option<MigDevice>, DriverError> {
        self.nvml.get()?.mig_device(gpu_index, slot)
    }
    fn mig_by_uuid(&self, uuid: &str) -> Result<Option<(u32, MigDevice)>, DriverError> {
        self.nvml.get()?.mig_by_uuid(uuid)
    }
    fn mig_by_instance(&self, gpu_index: u32, gi: u32, ci: u32) -> Result<Option<MigDevice>, DriverError> {
        self.nvml.get()?.mig_by_instance(gpu_index, gi, ci)
    }
    fn chardev_major(&self, name: &str) -> Result<Option<u32>, DriverError> {
        self.proc.chardev_major(name)
    }
    fn mig_cap_minor(&self, cap: MigCap) -> Result<Option<u32>, DriverError> {
        self.proc.mig_cap_minor(cap)
    }
    fn mig_caps_of_gpu(&self, gpu_minor: u32) -> Result<Vec<(MigCap, u32)>, DriverError> {
        self.proc.mig_caps_of_gpu(gpu_minor)
    }
    fn cap_file(&self, cap: MigCap) -> Result<Option<CapFile>, DriverError> {
        self.proc.cap_file(cap)
    }
    fn device_file_params(&self) -> Result<Option<DeviceFileParams>, DriverError> {
        self.proc.device_file_params()
    }
    fn cuda_driver_version(&self) -> Result<u32, DriverError> {
        self.nvml.get()?.cuda_driver_version()
    }
    fn gpu_brand(&self, gpu_index: u32) -> Result<&'static str, DriverError> {
        self.nvml.get()?.gpu_brand(gpu_index)
    }
    fn compute_capability(&self, gpu_index: u32) -> Result<(u32, u32), DriverError> {
        self.nvml.get()?.compute_capability(gpu_index)
    }
    fn imex_channel(&self, channel: u32) -> Result<Option<imex::ImexNode>, DriverError> {
        imex::channel(&self.dev_root, channel)
    }
    fn imex_channels(&self) -> Result<Vec<imex::ImexNode>, DriverError> {
        imex::channels(&self.dev_root)
    }
    fn load_kernel_module(&self, module: &str) -> Result<bool, DriverError> {
        let Some(modprobe) = &self.modprobe else { return Ok(false) };
        modprobe.load(module)?;
        // The module registered its major (or not) just now: what was read before is stale.
        self.proc.forget_devices();
        Ok(true)
    }
    fn kernel_module_loaded(&self, module: &str) -> Result<Option<bool>, DriverError> {
        Ok(self.proc.modules()?.map(|text| kmod::listed_in_proc_modules(&text, module)))
    }
    fn driver_files(&self, caps: &DriverCapabilities) -> Result<Option<DriverFiles>, DriverError> {
        let Some(root) = &self.driver_root else { return Ok(None) };
        let files = crate::driver_files::discover(root, &self.driver_version()?, caps)?;
        if self.missing_files == MissingDriverFiles::Error {
            for &(capability, base, library) in ESSENTIAL {
                if caps.has(capability) && files.missing.iter().any(|m| m == base) {
                    return Err(DriverError::MissingLibrary { capability, library, root: root.clone() });
                }
            }
        }
        // A device-only host (no driver files at all under the root) gets nodes only, as before.
        Ok((!files.libraries.is_empty() || !files.files.is_empty()).then_some(files))
    }
}

#[cfg(any(test, feature = "testing"))]
pub mod fake;
