//! The topology model: one JSON file describes a simulated node (driver
//! versions, GPUs, MIG devices, injected NVML failures). Both the fake
//! `libnvidia-ml.so` and the `/proc` generator read it, so the two always
//! agree. The format is documented in `tests/topologies/README.md`.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// NVML functions the fake library exports; `failures` may name only these.
pub const FUNCTIONS: &[&str] = &[
    "nvmlInit_v2",
    "nvmlInitWithFlags",
    "nvmlShutdown",
    "nvmlSystemGetDriverVersion",
    "nvmlSystemGetNVMLVersion",
    "nvmlSystemGetCudaDriverVersion",
    "nvmlSystemGetCudaDriverVersion_v2",
    "nvmlDeviceGetCount_v2",
    "nvmlDeviceGetHandleByIndex_v2",
    "nvmlDeviceGetHandleByUUID",
    "nvmlDeviceGetHandleByPciBusId_v2",
    "nvmlDeviceGetUUID",
    "nvmlDeviceGetName",
    "nvmlDeviceGetPciInfo_v3",
    "nvmlDeviceGetPciInfo_v2",
    "nvmlDeviceGetMinorNumber",
    "nvmlDeviceGetIndex",
    "nvmlDeviceGetMigMode",
    "nvmlDeviceGetMaxMigDeviceCount",
    "nvmlDeviceGetMigDeviceHandleByIndex",
    "nvmlDeviceIsMigDeviceHandle",
    "nvmlDeviceGetDeviceHandleFromMigDeviceHandle",
    "nvmlDeviceGetGpuInstanceId",
    "nvmlDeviceGetComputeInstanceId",
    "nvmlDeviceGetBrand",
    "nvmlDeviceGetCudaComputeCapability",
];

/// The driver numbers caps for this many GPUs in `mig-minors`, so a GPU
/// with MIG devices must have a minor below it.
pub const MIG_MINORS_GPUS: u32 = 32;
/// GI ids per GPU and CI ids per GI in `mig-minors`.
pub const MIG_MINORS_GIS: u32 = 15;
pub const MIG_MINORS_CIS: u32 = 8;

#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("fake-nvml: cannot read topology {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("fake-nvml: topology {path} is not valid JSON for the format: {source}")]
    Parse { path: PathBuf, source: serde_json::Error },
    #[error("fake-nvml: topology {path} is inconsistent: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Topology {
    pub driver_version: String,
    pub cuda_driver_version: i32,
    pub nvml_version: String,
    /// `/proc/devices` name -> character major (e.g. "nvidia-caps": 508).
    /// A name that is absent is simply not registered on the node.
    #[serde(default)]
    pub chardev_majors: BTreeMap<String, u32>,
    pub gpus: Vec<Gpu>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<Failure>,
    /// IMEX channels whose `/dev/nvidia-caps-imex-channels/channel<N>` nodes the host has
    /// (what an admin or `NVreg_CreateImexChannel0=1` made); needs the
    /// `nvidia-caps-imex-channels` major.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub imex_channels: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Gpu {
    pub minor: u32,
    pub uuid: String,
    pub pci_bus_id: String,
    pub name: String,
    pub mig_mode: MigMode,
    /// Pending mode (after the next GPU reset); defaults to `mig_mode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_mig_mode: Option<MigMode>,
    #[serde(default)]
    pub max_mig_devices: u32,
    #[serde(default)]
    pub mig_devices: Vec<MigDevice>,
    /// `nvmlDeviceGetBrand`; defaults by model ([`Gpu::brand`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand: Option<Brand>,
    /// `nvmlDeviceGetCudaComputeCapability` as `"major.minor"`; defaults by model ([`Gpu::compute_capability`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_capability: Option<String>,
}

/// `nvmlBrandType_t`, named after its `NVML_BRAND_*` constant in snake case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Brand {
    Unknown,
    Quadro,
    Tesla,
    Nvs,
    Grid,
    Geforce,
    Titan,
    NvidiaVapps,
    NvidiaVpc,
    NvidiaVcs,
    NvidiaVws,
    NvidiaCloudGaming,
    QuadroRtx,
    NvidiaRtx,
    Nvidia,
    GeforceRtx,
    TitanRtx,
}

impl Brand {
    /// The `nvmlBrandType_t` value (the enum's order is NVML's).
    pub fn nvml_value(self) -> u32 {
        self as u32
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MigMode {
    Enabled,
    Disabled,
    Unsupported,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MigDevice {
    /// The `index` argument of nvmlDeviceGetMigDeviceHandleByIndex.
    pub slot: u32,
    pub gi: u32,
    pub ci: u32,
    pub uuid: String,
    pub profile: String,
    pub gi_profile_id: u32,
    pub ci_profile_id: u32,
}

/// Makes `function` return `code` when called for NVML index `gpu` (any
/// GPU if absent) and MIG slot `slot` (any call if absent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Failure {
    pub function: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<u32>,
    pub code: u32,
}

/// A parsed PCI address `domain:bus:device.function`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PciAddr {
    pub domain: u32,
    pub bus: u32,
    pub device: u32,
    pub function: u32,
}

impl PciAddr {
    /// Accepts what NVML accepts: `dddddddd:bb:dd.f`, `dddd:bb:dd.f` or
    /// `bb:dd.f` (domain 0), hex in either case; the function may be left out.
    pub fn parse(s: &str) -> Option<PciAddr> {
        let parts: Vec<&str> = s.split(':').collect();
        let (domain, bus, devfn) = match parts.as_slice() {
            [d, b, df] => (hex(d, 8)?, hex(b, 2)?, *df),
            [b, df] => (0, hex(b, 2)?, *df),
            _ => return None,
        };
        let (device, function) = match devfn.split_once('.') {
            Some((d, f)) => (hex(d, 2)?, hex(f, 1)?),
            None => (hex(devfn, 2)?, 0),
        };
        (device < 32 && function < 8).then_some(PciAddr { domain, bus, device, function })
    }

    /// NVML's `busId`: `%08X:%02X:%02X.0`-style, upper case.
    pub fn nvml_bus_id(&self) -> String {
        format!("{:08X}:{:02X}:{:02X}.{:X}", self.domain, self.bus, self.device, self.function)
    }

    /// NVML's `busIdLegacy`: 16-bit domain.
    pub fn nvml_bus_id_legacy(&self) -> String {
        format!("{:04X}:{:02X}:{:02X}.{:X}", self.domain, self.bus, self.device, self.function)
    }

    /// The kernel's spelling, used for `/proc/driver/nvidia/gpus/<this>`.
    pub fn proc_name(&self) -> String {
        format!("{:04x}:{:02x}:{:02x}.{:x}", self.domain, self.bus, self.device, self.function)
    }
}

/// `"9.0"` as `(9, 0)`.
fn parse_compute_capability(s: &str) -> Option<(u32, u32)> {
    let (major, minor) = s.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

fn hex(s: &str, max_len: usize) -> Option<u32> {
    if s.is_empty() || s.len() > max_len || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}

impl Gpu {
    pub fn pci(&self) -> PciAddr {
        // load() validated every bus id, so this only fails on a Topology
        // built by hand in code; fall back to 0 rather than panic in FFI.
        PciAddr::parse(&self.pci_bus_id).unwrap_or(PciAddr { domain: 0, bus: 0, device: 0, function: 0 })
    }

    /// The brand: `brand`, else what the model reports on current drivers (data-center
    /// GPUs say `NVML_BRAND_NVIDIA`, "Product Brand: NVIDIA" in `nvidia-smi -q`), else unknown.
    pub fn brand(&self) -> Brand {
        self.brand.unwrap_or(if self.known_model() { Brand::Nvidia } else { Brand::Unknown })
    }

    /// The compute capability: `computeCapability`, else the model's (A100 and A30 8.0,
    /// H100 and H200 9.0); `None` for another model (the call answers NOT_SUPPORTED).
    pub fn compute_capability(&self) -> Option<(u32, u32)> {
        if let Some(cc) = &self.compute_capability {
            return parse_compute_capability(cc);
        }
        if self.name.contains("A100") || self.name.contains("A30") {
            Some((8, 0))
        } else if self.name.contains("H100") || self.name.contains("H200") {
            Some((9, 0))
        } else {
            None
        }
    }

    fn known_model(&self) -> bool {
        ["A100", "A30", "H100", "H200"].iter().any(|m| self.name.contains(m))
    }

    pub fn pending_mode(&self) -> MigMode {
        self.pending_mig_mode.unwrap_or(self.mig_mode)
    }

    /// The GPU instances that exist, ascending.
    pub fn gpu_instances(&self) -> BTreeSet<u32> {
        self.mig_devices.iter().map(|m| m.gi).collect()
    }

    /// PCI device id (device << 16 | vendor) and subsystem id for the model,
    /// as real boards report them.
    pub fn pci_ids(&self) -> (u32, u32) {
        match self.name.as_str() {
            "NVIDIA A100-SXM4-40GB" => (0x20B0_10DE, 0x134F_10DE),
            "NVIDIA A100-SXM4-80GB" => (0x20B2_10DE, 0x1463_10DE),
            "NVIDIA H100 80GB HBM3" => (0x2330_10DE, 0x16C1_10DE),
            "NVIDIA A30" => (0x20B7_10DE, 0x1532_10DE),
            _ => (0x0000_10DE, 0),
        }
    }
}

impl Topology {
    /// Reads and validates a topology file.
    pub fn load(path: impl AsRef<Path>) -> Result<Topology, TopologyError> {
        let path = path.as_ref();
        let text =
            std::fs::read_to_string(path).map_err(|source| TopologyError::Read { path: path.to_owned(), source })?;
        Topology::parse(&text, path)
    }

    /// Parses and validates topology JSON; `path` is only used in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Topology, TopologyError> {
        let topo: Topology =
            serde_json::from_str(text).map_err(|source| TopologyError::Parse { path: path.to_owned(), source })?;
        topo.validate().map_err(|reason| TopologyError::Invalid { path: path.to_owned(), reason })?;
        Ok(topo)
    }

    /// Pretty JSON in the file format.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// Checks what the fake library and the generator rely on, so a typo in a
    /// fixture fails loudly instead of producing a subtly wrong node.
    pub fn validate(&self) -> Result<(), String> {
        let no_nul = |what: &str, s: &str| {
            if s.contains('\0') { Err(format!("{what} contains a NUL byte")) } else { Ok(()) }
        };
        no_nul("driverVersion", &self.driver_version)?;
        no_nul("nvmlVersion", &self.nvml_version)?;
        let mut uuids = HashSet::new();
        let mut minors = HashSet::new();
        let mut buses = HashSet::new();
        for (i, gpu) in self.gpus.iter().enumerate() {
            let at = format!("gpus[{i}]");
            no_nul(&at, &gpu.name)?;
            if !gpu.uuid.starts_with("GPU-") || gpu.uuid.contains('\0') {
                return Err(format!("{at}: uuid {:?} must start with GPU-", gpu.uuid));
            }
            if !uuids.insert(gpu.uuid.as_str()) {
                return Err(format!("{at}: duplicate uuid {}", gpu.uuid));
            }
            // 254 and 255 are nvidia-modeset and nvidiactl.
            if gpu.minor > 253 {
                return Err(format!("{at}: minor {} is above 253", gpu.minor));
            }
            if !minors.insert(gpu.minor) {
                return Err(format!("{at}: duplicate minor {}", gpu.minor));
            }
            let pci =
                PciAddr::parse(&gpu.pci_bus_id).ok_or_else(|| format!("{at}: bad pciBusId {:?}", gpu.pci_bus_id))?;
            if !buses.insert(pci) {
                return Err(format!("{at}: duplicate pciBusId {}", gpu.pci_bus_id));
            }
            if let Some(cc) = &gpu.compute_capability
                && parse_compute_capability(cc).is_none()
            {
                return Err(format!("{at}: computeCapability {cc:?} is not major.minor"));
            }
            if gpu.mig_mode != MigMode::Enabled && !gpu.mig_devices.is_empty() {
                return Err(format!("{at}: MIG devices listed but migMode is not enabled"));
            }
            if !gpu.mig_devices.is_empty() && gpu.minor >= MIG_MINORS_GPUS {
                return Err(format!("{at}: MIG devices need a minor below {MIG_MINORS_GPUS}"));
            }
            let mut slots = HashSet::new();
            let mut gi_ci = HashSet::new();
            for mig in &gpu.mig_devices {
                let at = format!("{at}.migDevices[slot {}]", mig.slot);
                no_nul(&at, &mig.profile)?;
                if mig.slot >= gpu.max_mig_devices {
                    return Err(format!("{at}: slot is not below maxMigDevices {}", gpu.max_mig_devices));
                }
                if !slots.insert(mig.slot) {
                    return Err(format!("{at}: duplicate slot"));
                }
                if mig.gi >= MIG_MINORS_GIS || mig.ci >= MIG_MINORS_CIS {
                    return Err(format!("{at}: gi {} / ci {} out of range", mig.gi, mig.ci));
                }
                if !gi_ci.insert((mig.gi, mig.ci)) {
                    return Err(format!("{at}: duplicate gi {} ci {}", mig.gi, mig.ci));
                }
                if !mig.uuid.starts_with("MIG-") || mig.uuid.contains('\0') {
                    return Err(format!("{at}: uuid {:?} must start with MIG-", mig.uuid));
                }
                if !uuids.insert(mig.uuid.as_str()) {
                    return Err(format!("{at}: duplicate uuid {}", mig.uuid));
                }
            }
        }
        if !self.imex_channels.is_empty() && !self.chardev_majors.contains_key("nvidia-caps-imex-channels") {
            return Err("imexChannels: needs the nvidia-caps-imex-channels major in chardevMajors".into());
        }
        let mut channels = HashSet::new();
        for &c in &self.imex_channels {
            if c >= 1 << 20 || !channels.insert(c) {
                return Err(format!("imexChannels: {c} is out of range (below 2^20) or listed twice"));
            }
        }
        for (i, f) in self.failures.iter().enumerate() {
            if !FUNCTIONS.contains(&f.function.as_str()) {
                return Err(format!("failures[{i}]: unknown function {:?}", f.function));
            }
            if f.gpu.is_some_and(|g| g as usize >= self.gpus.len()) {
                return Err(format!("failures[{i}]: gpu {:?} does not exist", f.gpu));
            }
            if f.code == 0 {
                return Err(format!("failures[{i}]: code 0 is NVML_SUCCESS, not a failure"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::locate::topology;

    fn load(name: &str) -> Topology {
        Topology::load(topology(name)).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn every_fixture_loads() {
        for entry in std::fs::read_dir(crate::locate::topologies_dir()).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                Topology::load(&path).unwrap_or_else(|e| panic!("{e}"));
            }
        }
    }

    #[test]
    fn a100x8_shape() {
        let t = load("a100x8.json");
        let minors: Vec<u32> = t.gpus.iter().map(|g| g.minor).collect();
        assert_eq!(minors, [2, 3, 0, 1, 6, 7, 4, 5]);
        let buses: Vec<u32> = t.gpus.iter().map(|g| g.pci().bus).collect();
        assert_eq!(buses, [0x07, 0x0f, 0x47, 0x4e, 0x87, 0x90, 0xb7, 0xbd]);
        let gis0: Vec<u32> = t.gpus[0].mig_devices.iter().map(|m| m.gi).collect();
        assert_eq!(gis0, [7, 8, 9, 11, 12, 13, 14]);
        assert_eq!(t.gpus[0].mig_devices[1].uuid, "MIG-c7384736-a75d-5afc-978f-d2f1294409fd");
        let slots2: Vec<u32> = t.gpus[2].mig_devices.iter().map(|m| m.slot).collect();
        assert_eq!(slots2, [0, 2, 3]);
        assert!(t.gpus[3].mig_devices.is_empty() && t.gpus[3].mig_mode == MigMode::Enabled);
        assert_eq!(t.gpus[6].mig_mode, MigMode::Disabled);
        let cis1: Vec<(u32, u32)> = t.gpus[1].mig_devices.iter().map(|m| (m.gi, m.ci)).collect();
        assert_eq!(cis1, [(1, 0), (1, 1), (1, 2), (2, 0)]);
    }

    #[test]
    fn midwalk_is_a100x8_plus_one_failure() {
        let mut t = load("nvml-error-midwalk.json");
        let failures = std::mem::take(&mut t.failures);
        assert_eq!(t, load("a100x8.json"));
        assert_eq!(
            failures,
            [Failure {
                function: "nvmlDeviceGetMigDeviceHandleByIndex".into(),
                gpu: Some(1),
                slot: Some(2),
                code: 999
            }]
        );
    }

    #[test]
    fn all_1g_has_the_same_gpus_as_a100x8() {
        let all = load("a100x8-all-1g.json");
        let base = load("a100x8.json");
        for (a, b) in all.gpus.iter().zip(&base.gpus) {
            assert_eq!((&a.uuid, a.minor, &a.pci_bus_id), (&b.uuid, b.minor, &b.pci_bus_id));
            let gis: Vec<u32> = a.mig_devices.iter().map(|m| m.gi).collect();
            assert_eq!(gis, [7, 8, 9, 10, 11, 12, 13]);
        }
        assert_eq!(all.gpus.iter().map(|g| g.mig_devices.len()).sum::<usize>(), 56);
    }

    #[test]
    fn h100_and_a30_shapes() {
        let h = load("h100x4-nomig.json");
        assert!(h.gpus.iter().all(|g| g.mig_mode == MigMode::Disabled && g.name == "NVIDIA H100 80GB HBM3"));
        assert_eq!(h.gpus.iter().map(|g| g.pci().bus).collect::<Vec<_>>(), [0x18, 0x2a, 0x3a, 0x5d]);
        let a = load("a30-1.json");
        assert_eq!(a.gpus[0].max_mig_devices, 4);
        assert_eq!(a.gpus[0].mig_devices.iter().map(|m| m.gi).collect::<Vec<_>>(), [3, 4, 5, 6]);
    }

    #[test]
    fn brand_and_compute_capability_default_by_model() {
        let h = load("h100x4-nomig.json");
        assert_eq!((h.gpus[0].brand(), h.gpus[0].compute_capability()), (Brand::Nvidia, Some((9, 0))));
        let a = load("a100x8.json");
        assert_eq!((a.gpus[0].brand(), a.gpus[0].compute_capability()), (Brand::Nvidia, Some((8, 0))));
        let mut other = a.gpus[0].clone();
        other.name = "NVIDIA GeForce RTX 4090".into();
        assert_eq!((other.brand(), other.compute_capability()), (Brand::Unknown, None));
        other.brand = Some(Brand::GeforceRtx);
        other.compute_capability = Some("8.9".into());
        assert_eq!((other.brand().nvml_value(), other.compute_capability()), (15, Some((8, 9))));
        let parsed: Gpu = serde_json::from_str(
            r#"{"minor":0,"uuid":"GPU-x","pciBusId":"0:1:0.0","name":"n","migMode":"disabled","brand":"quadro_rtx","computeCapability":"7.5"}"#,
        )
        .unwrap();
        assert_eq!((parsed.brand().nvml_value(), parsed.compute_capability()), (12, Some((7, 5))));
    }

    #[test]
    fn pci_addr_parses_nvml_spellings() {
        let want = PciAddr { domain: 0, bus: 0x0f, device: 0, function: 0 };
        assert_eq!(PciAddr::parse("00000000:0F:00.0"), Some(want));
        assert_eq!(PciAddr::parse("0000:0f:00.0"), Some(want));
        assert_eq!(PciAddr::parse("0f:00.0"), Some(want));
        assert_eq!(PciAddr::parse("0000:0f:00"), Some(want));
        assert_eq!(PciAddr::parse("0000:0g:00.0"), None);
        assert_eq!(PciAddr::parse("0000:0f:20.0"), None);
        assert_eq!(PciAddr::parse(""), None);
        assert_eq!(want.nvml_bus_id(), "00000000:0F:00.0");
        assert_eq!(want.nvml_bus_id_legacy(), "0000:0F:00.0");
        assert_eq!(want.proc_name(), "0000:0f:00.0");
    }

    fn invalid(edit: impl FnOnce(&mut Topology)) -> String {
        let mut t = load("a100x8.json");
        edit(&mut t);
        t.validate().unwrap_err()
    }

    #[test]
    fn validation_catches_fixture_mistakes() {
        assert!(invalid(|t| t.gpus[1].uuid = t.gpus[0].uuid.clone()).contains("duplicate uuid"));
        assert!(
            invalid(|t| t.gpus[1].mig_devices[0].uuid = t.gpus[0].mig_devices[0].uuid.clone())
                .contains("duplicate uuid")
        );
        assert!(invalid(|t| t.gpus[1].pci_bus_id = "0000:07:00.0".into()).contains("duplicate pciBusId"));
        assert!(invalid(|t| t.gpus[1].pci_bus_id = "nope".into()).contains("bad pciBusId"));
        assert!(invalid(|t| t.gpus[0].mig_devices[0].slot = 7).contains("maxMigDevices"));
        assert!(invalid(|t| t.gpus[0].mig_devices[0].slot = 1).contains("duplicate slot"));
        assert!(invalid(|t| t.gpus[1].mig_devices[1].ci = 0).contains("duplicate gi 1 ci 0"));
        assert!(invalid(|t| t.gpus[0].mig_devices[0].gi = 15).contains("out of range"));
        assert!(invalid(|t| t.gpus[0].mig_mode = MigMode::Disabled).contains("migMode is not enabled"));
        assert!(
            invalid(|t| t.imex_channels.push(1))
                .contains("imexChannels: 1 is out of range (below 2^20) or listed twice")
        );
        assert!(invalid(|t| t.imex_channels.push(1 << 20)).contains("out of range"));
        assert!(
            invalid(|t| t.chardev_majors.clear()).contains("imexChannels: needs the nvidia-caps-imex-channels major")
        );
        assert!(invalid(|t| t.gpus[0].minor = 32).contains("below 32"));
        assert!(invalid(|t| t.gpus[6].minor = 254).contains("above 253"));
        assert!(invalid(|t| t.gpus[0].compute_capability = Some("9".into())).contains("not major.minor"));
        assert!(
            invalid(|t| t.failures.push(Failure { function: "nvmlNope".into(), gpu: None, slot: None, code: 1 }))
                .contains("unknown function")
        );
        assert!(
            invalid(|t| t.failures.push(Failure {
                function: "nvmlShutdown".into(),
                gpu: Some(8),
                slot: None,
                code: 1
            }))
            .contains("does not exist")
        );
    }

    #[test]
    fn load_errors_name_the_file() {
        let err = Topology::load("/nonexistent/topo.json").unwrap_err().to_string();
        assert!(err.contains("/nonexistent/topo.json"), "{err}");
        let err = Topology::parse("{\"gpus\": []}", Path::new("x.json")).unwrap_err().to_string();
        assert!(err.contains("x.json") && err.contains("driverVersion"), "{err}");
        let err = Topology::parse(
            "{\"driverVersion\":\"1\",\"cudaDriverVersion\":1,\"nvmlVersion\":\"1\",\"gpus\":[],\"extra\":1}",
            Path::new("y.json"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("extra"), "{err}");
    }
}
