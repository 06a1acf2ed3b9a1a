//! In-memory driver for unit tests, benches and the fuzz crate (feature `testing`):
//! a small A100-style node, with an optional scripted NVML failure.

use super::*;
use std::cell::RefCell;

/// `mig-minors` numbering of the real driver: 3 + minor*135 + gi*9 (+1+ci).
pub fn gi_minor(gpu_minor: u32, gi: u32) -> u32 {
    3 + gpu_minor * 135 + gi * 9
}

pub struct FakeDriver {
    pub gpus: Vec<(Gpu, Vec<Option<MigDevice>>)>,
    pub majors: Vec<(u32, &'static str)>,
    /// Every call, for "work proportional to the request" checks.
    pub calls: RefCell<Vec<String>>,
    /// `(gpu index, slot)` whose MIG handle lookup fails, as NVML can mid-walk.
    pub failing_mig_slot: Option<(u32, u32)>,
    /// What `/proc/driver/nvidia/params` says; `None`: no params file.
    pub params: Option<DeviceFileParams>,
    /// `nvmlSystemGetDriverVersion`.
    pub driver_version: String,
    /// `nvmlSystemGetCudaDriverVersion_v2` (12040 is 12.4).
    pub cuda_version: u32,
    /// Per GPU index: brand name and compute capability (`nvmlDeviceGetBrand`,
    /// `nvmlDeviceGetCudaComputeCapability`); a GPU past the end has neither (NOT_SUPPORTED).
    pub gpu_facts: Vec<(&'static str, (u32, u32))>,
    /// The host's IMEX channel nodes: channels 0 and 3, major 509, 0:0 0666.
    pub imex: Vec<imex::ImexNode>,
    /// `load-kmods`: whether [`Driver::load_kernel_module`] loads.
    pub load_kmods: bool,
    /// Majors a module registers once loaded (named as in `/proc/devices`, which is the module's name).
    pub loadable: Vec<(u32, &'static str)>,
    /// What `/proc/modules` lists; `None`: no such file.
    pub modules: Option<Vec<&'static str>>,
    /// Modules loaded so far, in order.
    pub loaded: RefCell<Vec<String>>,
}

fn imex_node(channel: u32) -> imex::ImexNode {
    imex::ImexNode { channel, major: 509, minor: channel, mode: 0o666, uid: 0, gid: 0 }
}

fn mig(slot: u32, gi: u32, ci: u32) -> Option<MigDevice> {
    Some(MigDevice {
        slot,
        uuid: format!("MIG-00000000-0000-0000-0000-0000000{slot}{gi:02}{ci:02}"),
        gi,
        ci,
        profile: Some("1g.5gb".into()),
    })
}

fn not_supported(call: &str) -> DriverError {
    DriverError::Nvml { call: call.into(), reason: "Not Supported".into() }
}

fn gpu(index: u32, minor: u32, mig_mode: MigMode) -> Gpu {
    Gpu {
        index,
        minor,
        uuid: format!("GPU-00000000-0000-0000-0000-00000000000{index}"),
        pci_bus_id: format!("00000000:{:02X}:00.0", 0x07 + index * 8),
        name: "NVIDIA A100-SXM4-40GB".into(),
        mig_mode,
    }
}

impl FakeDriver {
    /// [`FakeDriver::a100`] before anything used CUDA: `nvidia-uvm` is not loaded
    /// (no major until it is), nor is `nvidia-modeset`.
    pub fn a100_without_uvm() -> Self {
        let mut d = Self::a100();
        d.majors.retain(|(_, n)| *n != "nvidia-uvm");
        d.loadable = vec![(511, "nvidia-uvm")];
        d.modules = Some(vec!["nvidia"]);
        d
    }

    /// GPU 0 (minor 2): MIG, slots 0..6 = GI 7,8,9,11,12,13,14.
    /// GPU 1 (minor 3): MIG, GI 1 with CI 0,1,2 in slots 0..2, slot 3 empty, slot 4 = GI 2 CI 0.
    /// GPU 2 (minor 0): MIG disabled.  GPU 3 (minor 1): MIG enabled, no devices.
    pub fn a100() -> Self {
        let gis = [7, 8, 9, 11, 12, 13, 14];
        FakeDriver {
            gpus: vec![
                (gpu(0, 2, MigMode::Enabled), gis.iter().enumerate().map(|(s, gi)| mig(s as u32, *gi, 0)).collect()),
                (
                    gpu(1, 3, MigMode::Enabled),
                    vec![mig(0, 1, 0), mig(1, 1, 1), mig(2, 1, 2), None, mig(4, 2, 0), None, None],
                ),
                (gpu(2, 0, MigMode::Disabled), vec![]),
                (gpu(3, 1, MigMode::Enabled), vec![None; 7]),
            ],
            majors: vec![
                (195, "nvidia-frontend"),
                (508, "nvidia-caps"),
                (509, "nvidia-caps-imex-channels"),
                (511, "nvidia-uvm"),
            ],
            calls: RefCell::new(vec![]),
            failing_mig_slot: None,
            params: Some(DeviceFileParams::DEFAULT),
            driver_version: "550.54.15".into(),
            cuda_version: 12040,
            // Data-center A100s report NVML_BRAND_NVIDIA on current drivers.
            gpu_facts: vec![("Nvidia", (8, 0)); 4],
            imex: vec![imex_node(0), imex_node(3)],
            load_kmods: true,
            loadable: vec![],
            modules: None,
            loaded: RefCell::new(vec![]),
        }
    }

    fn call(&self, what: String) {
        self.calls.borrow_mut().push(what);
    }

    fn get(&self, index: u32) -> Result<&(Gpu, Vec<Option<MigDevice>>), DriverError> {
        self.gpus.get(index as usize).ok_or(DriverError::Nvml {
            call: "nvmlDeviceGetHandleByIndex_v2".into(),
            reason: "Invalid Argument".into(),
        })
    }
}

impl Driver for FakeDriver {
    fn driver_version(&self) -> Result<String, DriverError> {
        self.call("driver-version".into());
        Ok(self.driver_version.clone())
    }
    fn gpu_count(&self) -> Result<u32, DriverError> {
        self.call("count".into());
        Ok(self.gpus.len() as u32)
    }
    fn gpu(&self, index: u32) -> Result<Gpu, DriverError> {
        self.call(format!("gpu {index}"));
        Ok(self.get(index)?.0.clone())
    }
    fn gpu_index_by_uuid(&self, uuid: &str) -> Result<Option<u32>, DriverError> {
        self.call(format!("gpu-by-uuid {uuid}"));
        Ok(self.gpus.iter().find(|(g, _)| g.uuid.eq_ignore_ascii_case(uuid)).map(|(g, _)| g.index))
    }
    fn gpu_index_by_pci(&self, pci: &PciBusId) -> Result<Option<u32>, DriverError> {
        Ok(self.gpus.iter().find(|(g, _)| PciBusId::parse(&g.pci_bus_id) == Some(*pci)).map(|(g, _)| g.index))
    }
    fn mig_slot_count(&self, gpu_index: u32) -> Result<u32, DriverError> {
        Ok(self.get(gpu_index)?.1.len() as u32)
    }
    fn mig_device(&self, gpu_index: u32, slot: u32) -> Result<Option<MigDevice>, DriverError> {
        self.call(format!("mig {gpu_index}:{slot}"));
        if self.failing_mig_slot == Some((gpu_index, slot)) {
            return Err(DriverError::Nvml {
                call: "nvmlDeviceGetMigDeviceHandleByIndex".into(),
                reason: "Unknown Error".into(),
            });
        }
        Ok(self.get(gpu_index)?.1.get(slot as usize).cloned().flatten())
    }
    fn mig_by_uuid(&self, uuid: &str) -> Result<Option<(u32, MigDevice)>, DriverError> {
        Ok(self.gpus.iter().find_map(|(g, slots)| {
            slots.iter().flatten().find(|m| m.uuid.eq_ignore_ascii_case(uuid)).map(|m| (g.index, m.clone()))
        }))
    }
    fn chardev_major(&self, name: &str) -> Result<Option<u32>, DriverError> {
        let loaded = self.loaded.borrow();
        let registered = self.loadable.iter().filter(|(_, n)| loaded.iter().any(|l| l == n));
        Ok(self.majors.iter().chain(registered).find(|(_, n)| *n == name).map(|(m, _)| *m))
    }
    fn load_kernel_module(&self, module: &str) -> Result<bool, DriverError> {
        self.call(format!("load_kernel_module {module}"));
        if !self.load_kmods {
            return Ok(false);
        }
        self.loaded.borrow_mut().push(module.to_string());
        Ok(true)
    }
    fn kernel_module_loaded(&self, module: &str) -> Result<Option<bool>, DriverError> {
        let loaded = self.loaded.borrow().iter().any(|l| l == module);
        Ok(self.modules.as_ref().map(|m| loaded || m.contains(&module)))
    }
    fn mig_cap_minor(&self, cap: MigCap) -> Result<Option<u32>, DriverError> {
        Ok(Some(match cap {
            MigCap::Config => 1,
            MigCap::Monitor => 2,
            MigCap::Gi { gpu_minor, gi } => gi_minor(gpu_minor, gi),
            MigCap::Ci { gpu_minor, gi, ci } => gi_minor(gpu_minor, gi) + 1 + ci,
        }))
    }
    fn mig_caps_of_gpu(&self, gpu_minor: u32) -> Result<Vec<(MigCap, u32)>, DriverError> {
        let mut v = vec![];
        for gi in 0..15 {
            v.push((MigCap::Gi { gpu_minor, gi }, gi_minor(gpu_minor, gi)));
            for ci in 0..8 {
                v.push((MigCap::Ci { gpu_minor, gi, ci }, gi_minor(gpu_minor, gi) + 1 + ci));
            }
        }
        Ok(v)
    }
    fn device_file_params(&self) -> Result<Option<DeviceFileParams>, DriverError> {
        Ok(self.params)
    }
    fn cuda_driver_version(&self) -> Result<u32, DriverError> {
        self.call("cuda-version".into());
        Ok(self.cuda_version)
    }
    fn gpu_brand(&self, gpu_index: u32) -> Result<&'static str, DriverError> {
        self.call(format!("brand {gpu_index}"));
        self.gpu_facts.get(gpu_index as usize).map(|f| f.0).ok_or_else(|| not_supported("nvmlDeviceGetBrand"))
    }
    fn compute_capability(&self, gpu_index: u32) -> Result<(u32, u32), DriverError> {
        self.call(format!("arch {gpu_index}"));
        self.gpu_facts
            .get(gpu_index as usize)
            .map(|f| f.1)
            .ok_or_else(|| not_supported("nvmlDeviceGetCudaComputeCapability"))
    }
    fn imex_channel(&self, channel: u32) -> Result<Option<imex::ImexNode>, DriverError> {
        self.call(format!("imex {channel}"));
        Ok(self.imex.iter().find(|c| c.channel == channel).copied())
    }
    fn imex_channels(&self) -> Result<Vec<imex::ImexNode>, DriverError> {
        self.call("imex all".into());
        Ok(self.imex.clone())
    }
    fn cap_file(&self, cap: MigCap) -> Result<Option<CapFile>, DriverError> {
        let mode = if cap == MigCap::Config { 0o400 } else { 0o444 };
        Ok(Some(CapFile { minor: self.mig_cap_minor(cap)?, mode: Some(mode) }))
    }
}
