//! NVML through nvml-wrapper: dlopen of `libnvidia-ml.so.1` (path configurable).
//!
//! The library is loaded and initialised on first use and at most once per
//! process, so requests that need no GPU facts (`none`, `void`) never touch
//! it. GPU-instance and compute-instance ids are only reachable through
//! nvml-wrapper's raw `lib()` functions; they are called through the symbol
//! table so a library without them is an error, not a panic.

use super::{DriverError, Gpu, MigDevice, MigMode};
use crate::request::PciBusId;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{Device, Nvml};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// NVML, loaded on first use.
pub struct LazyNvml {
    lib: String,
    /// A bare `lib` name is looked up in this root's own loader cache.
    driver_root: Option<PathBuf>,
    /// The session, or the (library, reason) of a failed load.
    session: OnceLock<Result<NvmlSession, (String, String)>>,
}

impl LazyNvml {
    pub fn new(lib: &str) -> Self {
        LazyNvml { lib: lib.to_string(), driver_root: None, session: OnceLock::new() }
    }

    /// NVML of the driver under `root`: a path is used as given; a bare name (the
    /// default `libnvidia-ml.so.1`) is what `<root>/etc/ld.so.cache` maps it to,
    /// under the root. With root `/` that is the loader's own lookup.
    pub fn under_root(lib: &str, root: &Path) -> Self {
        let root = (root != Path::new("/")).then(|| root.to_path_buf());
        LazyNvml { lib: lib.to_string(), driver_root: root, session: OnceLock::new() }
    }

    pub fn get(&self) -> Result<&NvmlSession, DriverError> {
        let session = self.session.get_or_init(|| {
            let path = self.path()?;
            Nvml::builder()
                .lib_path(path.as_os_str())
                .init()
                .map(|nvml| NvmlSession { nvml, gpus: Mutex::new(HashMap::new()) })
                .map_err(|e| (path.display().to_string(), self.explain(&e)))
        });
        session.as_ref().map_err(|(lib, reason)| DriverError::NvmlLoad { lib: lib.clone(), reason: reason.clone() })
    }

    /// What to dlopen: `lib` itself, or its entry in the driver root's cache.
    fn path(&self) -> Result<PathBuf, (String, String)> {
        let Some(root) = self.driver_root.as_deref().filter(|_| !self.lib.contains('/')) else {
            return Ok(PathBuf::from(&self.lib));
        };
        let cache = root.join("etc/ld.so.cache");
        let not_found = |reason: String| {
            let hint = "set nvml-lib (--nvml-lib, MIGHOOK_NVML_LIB) to its path, or fix driver-root";
            (format!("{} in {}", self.lib, cache.display()), format!("{reason}; {hint}"))
        };
        let bytes = std::fs::read(&cache).map_err(|e| not_found(e.to_string()))?;
        let parsed = crate::ldcache::parse(&bytes).map_err(|e| not_found(e.to_string()))?;
        let entry = parsed
            .entries
            .iter()
            .find(|e| e.flags == crate::ldcache::FLAG_X8664_LIBC6 && e.key == self.lib.as_bytes())
            .ok_or_else(|| not_found("no x86-64 entry for it".into()))?;
        let value = Path::new(OsStr::from_bytes(&entry.value));
        let (real, _) = crate::driver_files::resolve::in_root(root, value)
            .map_err(|e| not_found(format!("its entry {} does not resolve under the root: {e}", value.display())))?;
        Ok(crate::driver_files::resolve::host_path(root, &real))
    }

    /// The loader's text, plus which setting changes where mighook looks.
    fn explain(&self, e: &NvmlError) -> String {
        let hint = match &self.driver_root {
            Some(root) => format!("found through {}/etc/ld.so.cache; set nvml-lib or driver-root", root.display()),
            None => "set nvml-lib (--nvml-lib, MIGHOOK_NVML_LIB) or driver-root".to_string(),
        };
        format!("{e} ({hint})")
    }
}

/// One initialised NVML, with per-GPU facts cached.
pub struct NvmlSession {
    nvml: Nvml,
    gpus: Mutex<HashMap<u32, Gpu>>,
}

fn fail(call: &str) -> impl Fn(NvmlError) -> DriverError + '_ {
    move |e| DriverError::Nvml { call: call.to_string(), reason: e.to_string() }
}

/// `NOT_FOUND` and `INVALID_ARGUMENT` mean "no such device" for lookups.
fn absent<T>(r: Result<T, NvmlError>, call: &str) -> Result<Option<T>, DriverError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(NvmlError::NotFound | NvmlError::InvalidArg) => Ok(None),
        Err(e) => Err(fail(call)(e)),
    }
}

/// `1g.5gb` out of NVML's MIG device name `NVIDIA A100-SXM4-40GB MIG 1g.5gb`.
pub fn profile_from_name(name: &str) -> Option<String> {
    let (_, profile) = name.rsplit_once(" MIG ")?;
    let profile = profile.trim();
    (!profile.is_empty()).then(|| profile.to_string())
}

/// The MIG device in `slot` of `parent`; `None` for an empty slot (a destroyed
/// instance leaves a hole, and a walk goes on past it).
fn mig_handle<'n>(parent: &Device<'n>, slot: u32) -> Result<Option<Device<'n>>, DriverError> {
    match parent.mig_device_by_index(slot) {
        Ok(m) => Ok(Some(m)),
        Err(NvmlError::NotFound) => Ok(None),
        Err(e) => Err(fail("nvmlDeviceGetMigDeviceHandleByIndex")(e)),
    }
}

impl NvmlSession {
    fn device(&self, index: u32) -> Result<Device<'_>, DriverError> {
        self.nvml.device_by_index(index).map_err(fail("nvmlDeviceGetHandleByIndex_v2"))
    }

    pub fn driver_version(&self) -> Result<String, DriverError> {
        self.nvml.sys_driver_version().map_err(fail("nvmlSystemGetDriverVersion"))
    }

    pub fn gpu_count(&self) -> Result<u32, DriverError> {
        self.nvml.device_count().map_err(fail("nvmlDeviceGetCount_v2"))
    }

    pub fn gpu(&self, index: u32) -> Result<Gpu, DriverError> {
        if let Some(g) = self.gpus.lock().unwrap_or_else(|p| p.into_inner()).get(&index) {
            return Ok(g.clone());
        }
        let d = self.device(index)?;
        let mig_mode = match d.mig_mode() {
            Ok(m) if m.current == 1 => MigMode::Enabled,
            Ok(_) => MigMode::Disabled,
            Err(NvmlError::NotSupported | NvmlError::FunctionNotFound) => MigMode::Unsupported,
            Err(e) => return Err(fail("nvmlDeviceGetMigMode")(e)),
        };
        let gpu = Gpu {
            index,
            minor: d.minor_number().map_err(fail("nvmlDeviceGetMinorNumber"))?,
            uuid: d.uuid().map_err(fail("nvmlDeviceGetUUID"))?,
            pci_bus_id: d.pci_info().map_err(fail("nvmlDeviceGetPciInfo_v3"))?.bus_id,
            name: d.name().map_err(fail("nvmlDeviceGetName"))?,
            mig_mode,
        };
        self.gpus.lock().unwrap_or_else(|p| p.into_inner()).insert(index, gpu.clone());
        Ok(gpu)
    }

    /// `nvmlSystemGetCudaDriverVersion_v2`, or the first version on an NVML without it.
    pub fn cuda_driver_version(&self) -> Result<u32, DriverError> {
        let lib = self.nvml.lib();
        let (call, f) = match lib.nvmlSystemGetCudaDriverVersion_v2.as_ref() {
            Ok(f) => ("nvmlSystemGetCudaDriverVersion_v2", f),
            Err(_) => {
                let f = lib.nvmlSystemGetCudaDriverVersion.as_ref().map_err(|e| DriverError::Nvml {
                    call: "nvmlSystemGetCudaDriverVersion".into(),
                    reason: e.to_string(),
                })?;
                ("nvmlSystemGetCudaDriverVersion", f)
            }
        };
        let mut version = 0;
        // SAFETY: the symbol has NVML's signature; `version` outlives the call.
        nvml_wrapper::error::nvml_try(unsafe { f(&mut version) }).map_err(fail(call))?;
        u32::try_from(version)
            .map_err(|_| DriverError::Nvml { call: call.into(), reason: format!("returned {version}") })
    }

    /// The brand's name; the raw value is read, so a brand newer than nvml-wrapper knows is `Unknown`, not an error.
    pub fn gpu_brand(&self, gpu_index: u32) -> Result<&'static str, DriverError> {
        let d = self.device(gpu_index)?;
        let f = self
            .nvml
            .lib()
            .nvmlDeviceGetBrand
            .as_ref()
            .map_err(|e| DriverError::Nvml { call: "nvmlDeviceGetBrand".into(), reason: e.to_string() })?;
        let mut brand = 0;
        // SAFETY: `d` is a live handle of this NVML session; `brand` outlives the call.
        nvml_wrapper::error::nvml_try(unsafe { f(d.handle(), &mut brand) }).map_err(fail("nvmlDeviceGetBrand"))?;
        Ok(super::brand_name(brand))
    }

    pub fn compute_capability(&self, gpu_index: u32) -> Result<(u32, u32), DriverError> {
        let cc =
            self.device(gpu_index)?.cuda_compute_capability().map_err(fail("nvmlDeviceGetCudaComputeCapability"))?;
        let bad = || DriverError::Nvml {
            call: "nvmlDeviceGetCudaComputeCapability".into(),
            reason: format!("returned {}.{}", cc.major, cc.minor),
        };
        Ok((u32::try_from(cc.major).map_err(|_| bad())?, u32::try_from(cc.minor).map_err(|_| bad())?))
    }

    pub fn gpu_index_by_uuid(&self, uuid: &str) -> Result<Option<u32>, DriverError> {
        let Some(d) = absent(self.nvml.device_by_uuid(uuid), "nvmlDeviceGetHandleByUUID")? else { return Ok(None) };
        if d.mig_is_mig_device_handle().unwrap_or(false) {
            return Ok(None);
        }
        d.index().map(Some).map_err(fail("nvmlDeviceGetIndex"))
    }

    pub fn gpu_index_by_pci(&self, pci: &PciBusId) -> Result<Option<u32>, DriverError> {
        let found = absent(self.nvml.device_by_pci_bus_id(pci.to_string()), "nvmlDeviceGetHandleByPciBusId_v2")?;
        found.map(|d| d.index().map_err(fail("nvmlDeviceGetIndex"))).transpose()
    }

    pub fn mig_slot_count(&self, gpu_index: u32) -> Result<u32, DriverError> {
        self.device(gpu_index)?.mig_device_count().map_err(fail("nvmlDeviceGetMaxMigDeviceCount"))
    }

    pub fn mig_device(&self, gpu_index: u32, slot: u32) -> Result<Option<MigDevice>, DriverError> {
        let parent = self.device(gpu_index)?;
        match mig_handle(&parent, slot)? {
            Some(mig) => self.describe_mig(&mig, slot).map(Some),
            None => Ok(None),
        }
    }

    /// GPU-instance and compute-instance ids of a MIG handle.
    fn instance_ids(&self, mig: &Device<'_>) -> Result<(u32, u32), DriverError> {
        let lib = self.nvml.lib();
        // Symbols are looked up, not `expect`ed: a library without them is an error, not a panic.
        macro_rules! raw_id {
            ($sym:ident) => {{
                let f = lib
                    .$sym
                    .as_ref()
                    .map_err(|e| DriverError::Nvml { call: stringify!($sym).into(), reason: e.to_string() })?;
                let mut id = 0u32;
                // SAFETY: `mig` is a live handle of this NVML session; `id` outlives the call.
                let rc = unsafe { f(mig.handle(), &mut id) };
                nvml_wrapper::error::nvml_try(rc).map_err(fail(stringify!($sym)))?;
                id
            }};
        }
        Ok((raw_id!(nvmlDeviceGetGpuInstanceId), raw_id!(nvmlDeviceGetComputeInstanceId)))
    }

    fn describe_mig(&self, mig: &Device<'_>, slot: u32) -> Result<MigDevice, DriverError> {
        let uuid = mig.uuid().map_err(fail("nvmlDeviceGetUUID"))?;
        let (gi, ci) = self.instance_ids(mig)?;
        Ok(MigDevice { slot, uuid, gi, ci, profile: mig.name().ok().and_then(|n| profile_from_name(&n)) })
    }

    /// Walks one GPU's MIG handle table comparing instance ids only; the match alone is described.
    pub fn mig_by_instance(&self, gpu_index: u32, gi: u32, ci: u32) -> Result<Option<MigDevice>, DriverError> {
        let parent = self.device(gpu_index)?;
        let slots = parent.mig_device_count().map_err(fail("nvmlDeviceGetMaxMigDeviceCount"))?;
        for slot in 0..slots {
            let Some(m) = mig_handle(&parent, slot)? else { continue };
            if self.instance_ids(&m)? == (gi, ci) {
                return self.describe_mig(&m, slot).map(Some);
            }
        }
        Ok(None)
    }

    pub fn mig_by_uuid(&self, uuid: &str) -> Result<Option<(u32, MigDevice)>, DriverError> {
        let Some(mig) = absent(self.nvml.device_by_uuid(uuid), "nvmlDeviceGetHandleByUUID")? else { return Ok(None) };
        if !mig.mig_is_mig_device_handle().map_err(fail("nvmlDeviceIsMigDeviceHandle"))? {
            return Ok(None);
        }
        let parent = mig.mig_parent_device().map_err(fail("nvmlDeviceGetDeviceHandleFromMigDeviceHandle"))?;
        let gpu_index = parent.index().map_err(fail("nvmlDeviceGetIndex"))?;
        // The slot number is only known by walking the parent's handle table. Only
        // UUIDs are compared on the way: the match alone is described.
        let slots = parent.mig_device_count().map_err(fail("nvmlDeviceGetMaxMigDeviceCount"))?;
        for slot in 0..slots {
            let Some(m) = mig_handle(&parent, slot)? else { continue };
            if m.uuid().map_err(fail("nvmlDeviceGetUUID"))?.eq_ignore_ascii_case(uuid) {
                return self.describe_mig(&m, slot).map(|m| Some((gpu_index, m)));
            }
        }
        Err(DriverError::Nvml {
            call: "nvmlDeviceGetMigDeviceHandleByIndex".into(),
            reason: format!("{uuid} is not in the MIG handle table of its parent GPU {gpu_index}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_comes_from_the_mig_device_name() {
        assert_eq!(profile_from_name("NVIDIA A100-SXM4-40GB MIG 1g.5gb").as_deref(), Some("1g.5gb"));
        assert_eq!(profile_from_name("NVIDIA A100-SXM4-40GB MIG 1c.3g.20gb").as_deref(), Some("1c.3g.20gb"));
        assert_eq!(profile_from_name("NVIDIA A100-SXM4-40GB"), None);
    }
}
