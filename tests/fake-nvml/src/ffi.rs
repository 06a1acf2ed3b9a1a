//! The exported NVML C ABI. Signatures, struct layouts and return codes are
//! NVML's (as in nvml-wrapper-sys' bindings), so nvml-wrapper loads this
//! library exactly like the real `libnvidia-ml.so.1`.
//!
//! A handle is a pointer into a per-session device table that is leaked on
//! init, so it never dangles; a handle is accepted only if it points at an
//! entry of the current session. Nothing here may panic: every export runs
//! under `guard`, and the code avoids panicking paths in the first place
//! (release builds abort on panic).

// Safety contract of every export is NVML's: pointers are null or valid for
// the documented size. Null is rejected with INVALID_ARGUMENT.
#![allow(non_snake_case, clippy::missing_safety_doc)]

use std::ffi::{CStr, CString, OsStr, c_char, c_int, c_uint, c_void};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::topology::{Gpu, MigDevice, MigMode, Topology};

pub type NvmlReturn = c_uint;
pub type NvmlDevice = *mut c_void;

pub const NVML_SUCCESS: NvmlReturn = 0;
pub const NVML_ERROR_UNINITIALIZED: NvmlReturn = 1;
pub const NVML_ERROR_INVALID_ARGUMENT: NvmlReturn = 2;
pub const NVML_ERROR_NOT_SUPPORTED: NvmlReturn = 3;
pub const NVML_ERROR_NOT_FOUND: NvmlReturn = 6;
pub const NVML_ERROR_INSUFFICIENT_SIZE: NvmlReturn = 7;
pub const NVML_ERROR_UNKNOWN: NvmlReturn = 999;

pub const NVML_DEVICE_MIG_DISABLE: c_uint = 0;
pub const NVML_DEVICE_MIG_ENABLE: c_uint = 1;

/// nvmlPciInfo_t (the v3 layout, also what `_v2` fills in today's headers).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct NvmlPciInfo {
    pub bus_id_legacy: [c_char; 16],
    pub domain: c_uint,
    pub bus: c_uint,
    pub device: c_uint,
    pub pci_device_id: c_uint,
    pub pci_sub_system_id: c_uint,
    pub bus_id: [c_char; 32],
}

/// One device (full GPU or MIG device) as a handle points at it.
struct Dev {
    /// NVML index of the GPU, or of the parent for a MIG device.
    index: u32,
    gpu: &'static Gpu,
    mig: Option<&'static MigDevice>,
    uuid: CString,
    name: CString,
}

struct Session {
    topo: &'static Topology,
    /// GPUs first (position = NVML index), then every MIG device.
    devs: Vec<Dev>,
    /// Per GPU, per slot: position in `devs` of the MIG device there.
    slots: Vec<Vec<Option<usize>>>,
    driver_version: CString,
    nvml_version: CString,
}

struct State {
    refs: u32,
    session: Option<&'static Session>,
}

static STATE: Mutex<State> = Mutex::new(State { refs: 0, session: None });

fn state() -> MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(PoisonError::into_inner)
}

fn current() -> Option<&'static Session> {
    let st = state();
    if st.refs > 0 { st.session } else { None }
}

impl Session {
    /// Builds the device table and leaks it (and the topology): handles
    /// handed out must stay valid even after shutdown.
    fn leak(topo: Topology) -> Result<&'static Session, String> {
        let topo: &'static Topology = Box::leak(Box::new(topo));
        let cstr = |s: &str| CString::new(s).map_err(|_| format!("NUL byte in {s:?}"));
        let mut devs = Vec::new();
        for (i, gpu) in topo.gpus.iter().enumerate() {
            devs.push(Dev { index: i as u32, gpu, mig: None, uuid: cstr(&gpu.uuid)?, name: cstr(&gpu.name)? });
        }
        let mut slots = Vec::new();
        for (i, gpu) in topo.gpus.iter().enumerate() {
            let mut per_gpu = vec![None; gpu.max_mig_devices as usize];
            for mig in &gpu.mig_devices {
                let Some(slot) = per_gpu.get_mut(mig.slot as usize) else {
                    return Err(format!("gpu {i}: slot {} beyond maxMigDevices", mig.slot));
                };
                *slot = Some(devs.len());
                devs.push(Dev {
                    index: i as u32,
                    gpu,
                    mig: Some(mig),
                    uuid: cstr(&mig.uuid)?,
                    name: cstr(&format!("{} MIG {}", gpu.name, mig.profile))?,
                });
            }
            slots.push(per_gpu);
        }
        let session = Session {
            topo,
            devs,
            slots,
            driver_version: cstr(&topo.driver_version)?,
            nvml_version: cstr(&topo.nvml_version)?,
        };
        Ok(Box::leak(Box::new(session)))
    }

    fn dev(&'static self, handle: NvmlDevice) -> Option<&'static Dev> {
        // Compare addresses only: a foreign pointer is never dereferenced.
        let base = self.devs.as_ptr() as usize;
        let size = std::mem::size_of::<Dev>();
        let off = (handle as usize).checked_sub(base)?;
        if size == 0 || off % size != 0 {
            return None;
        }
        self.devs.get(off / size)
    }

    fn handle(&self, pos: usize) -> NvmlDevice {
        &self.devs[pos] as *const Dev as NvmlDevice
    }

    fn injected(&self, function: &str, gpu: Option<u32>, slot: Option<u32>) -> Option<NvmlReturn> {
        self.topo
            .failures
            .iter()
            .find(|f| {
                f.function == function && f.gpu.is_none_or(|g| Some(g) == gpu) && f.slot.is_none_or(|s| Some(s) == slot)
            })
            .map(|f| f.code as NvmlReturn)
    }
}

/// Appends one line to `$FAKE_NVML_TRACE`, if set, so tests can count calls.
fn trace(line: &str) {
    let Some(path) = std::env::var_os("FAKE_NVML_TRACE") else {
        return;
    };
    if path.is_empty() {
        return;
    }
    let mut buf = Vec::with_capacity(line.len() + 1);
    buf.extend_from_slice(line.as_bytes());
    buf.push(b'\n');
    // O_APPEND and one write: lines from several processes don't interleave.
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(&path) {
        let _ = f.write_all(&buf);
    }
}

fn warn(msg: &str) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}

fn guard(f: impl FnOnce() -> NvmlReturn) -> NvmlReturn {
    std::panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or(NVML_ERROR_UNKNOWN)
}

/// The file this shared object was loaded from (as the loader opened it).
fn own_path() -> Option<PathBuf> {
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    let addr = own_path as fn() -> Option<PathBuf> as *const c_void;
    if unsafe { libc::dladdr(addr, &mut info) } == 0 || info.dli_fname.is_null() {
        return None;
    }
    let fname = unsafe { CStr::from_ptr(info.dli_fname) };
    Some(PathBuf::from(OsStr::from_bytes(fname.to_bytes())))
}

/// Finds the topology: `$FAKE_NVML_TOPOLOGY`, else the one embedded in this
/// library file (a driver-root copy, see `driver::TRAILER_MAGIC`), else
/// `topology.json` beside the file. The embedded one wins over a file beside
/// it because the library was written for it; the env var wins over both so a
/// test can always override. Returns the topology and where it came from.
fn load_topology() -> Result<(Topology, PathBuf), String> {
    if let Some(p) = std::env::var_os("FAKE_NVML_TOPOLOGY").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(p);
        return Topology::load(&path).map(|t| (t, path)).map_err(|e| e.to_string());
    }
    let own = own_path().ok_or_else(|| "cannot find the fake library's own path (dladdr)".to_string())?;
    match crate::driver::read_trailer(&own) {
        Ok(Some(json)) => return Topology::parse(&json, &own).map(|t| (t, own)).map_err(|e| e.to_string()),
        Ok(None) => {}
        Err(e) => return Err(format!("fake-nvml: topology trailer of {}: {e}", own.display())),
    }
    let dir = match own.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let path = dir.join("topology.json");
    Topology::load(&path).map(|t| (t, path)).map_err(|e| e.to_string())
}

fn init(function: &str) -> NvmlReturn {
    trace(function);
    let mut st = state();
    if st.refs > 0 {
        if let Some(code) = st.session.and_then(|s| s.injected(function, None, None)) {
            return code;
        }
        // NVML counts inits; each needs its own nvmlShutdown.
        st.refs += 1;
        return NVML_SUCCESS;
    }
    let loaded = load_topology().and_then(|(topo, path)| {
        // Inside a container, only what the container's device nodes let it open.
        let topo = crate::view::container_view(&topo, &crate::view::dev_root());
        Session::leak(topo).map_err(|e| format!("fake-nvml: topology {}: {e}", path.display()))
    });
    let session = match loaded {
        Ok(s) => s,
        Err(msg) => {
            warn(&format!("{msg}; {function} returns NVML_ERROR_UNKNOWN"));
            return NVML_ERROR_UNKNOWN;
        }
    };
    if let Some(code) = session.injected(function, None, None) {
        return code;
    }
    st.session = Some(session);
    st.refs = 1;
    NVML_SUCCESS
}

/// Common prologue of calls that take no device: trace, init check, injection.
fn system_call(function: &str) -> Result<&'static Session, NvmlReturn> {
    trace(function);
    let s = current().ok_or(NVML_ERROR_UNINITIALIZED)?;
    match s.injected(function, None, None) {
        Some(code) => Err(code),
        None => Ok(s),
    }
}

/// Common prologue of calls on a device handle.
fn device_call(function: &str, device: NvmlDevice) -> Result<(&'static Session, &'static Dev), NvmlReturn> {
    let Some(s) = current() else {
        trace(function);
        return Err(NVML_ERROR_UNINITIALIZED);
    };
    let Some(d) = s.dev(device) else {
        trace(&format!("{function} handle=invalid"));
        return Err(NVML_ERROR_INVALID_ARGUMENT);
    };
    let slot = d.mig.map(|m| m.slot);
    trace(&describe(function, d.index, slot));
    match s.injected(function, Some(d.index), slot) {
        Some(code) => Err(code),
        None => Ok((s, d)),
    }
}

fn describe(function: &str, gpu: u32, slot: Option<u32>) -> String {
    match slot {
        Some(slot) => format!("{function} gpu={gpu} slot={slot}"),
        None => format!("{function} gpu={gpu}"),
    }
}

/// Writes `value` through `out`, or INVALID_ARGUMENT for a null pointer.
unsafe fn put<T>(out: *mut T, value: T) -> NvmlReturn {
    if out.is_null() {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    unsafe { out.write(value) };
    NVML_SUCCESS
}

/// Copies a C string into a caller buffer of `length` bytes, NUL included.
unsafe fn put_str(s: &CStr, buf: *mut c_char, length: c_uint) -> NvmlReturn {
    if buf.is_null() {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    let bytes = s.to_bytes_with_nul();
    if (length as usize) < bytes.len() {
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr().cast::<c_char>(), buf, bytes.len()) };
    NVML_SUCCESS
}

fn fixed<const N: usize>(s: &str) -> [c_char; N] {
    let mut out = [0 as c_char; N];
    for (dst, src) in out.iter_mut().zip(s.bytes().take(N.saturating_sub(1))) {
        *dst = src as c_char;
    }
    out
}

fn mode_value(mode: MigMode) -> c_uint {
    match mode {
        MigMode::Enabled => NVML_DEVICE_MIG_ENABLE,
        MigMode::Disabled | MigMode::Unsupported => NVML_DEVICE_MIG_DISABLE,
    }
}

macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(code) => return code,
        }
    };
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlInit_v2() -> NvmlReturn {
    guard(|| init("nvmlInit_v2"))
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlInitWithFlags(flags: c_uint) -> NvmlReturn {
    let _ = flags; // NO_GPUS / NO_ATTACH change nothing for a fake.
    guard(|| init("nvmlInitWithFlags"))
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlShutdown() -> NvmlReturn {
    guard(|| {
        trace("nvmlShutdown");
        let mut st = state();
        if st.refs == 0 {
            return NVML_ERROR_UNINITIALIZED;
        }
        if let Some(code) = st.session.and_then(|s| s.injected("nvmlShutdown", None, None)) {
            return code;
        }
        st.refs -= 1;
        if st.refs == 0 {
            st.session = None;
        }
        NVML_SUCCESS
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlErrorString(result: NvmlReturn) -> *const c_char {
    let s: &'static CStr = match result {
        0 => c"Success",
        1 => c"Uninitialized",
        2 => c"Invalid Argument",
        3 => c"Not Supported",
        4 => c"Insufficient Permissions",
        5 => c"Already Initialized",
        6 => c"Not Found",
        7 => c"Insufficient Size",
        8 => c"Insufficient External Power",
        9 => c"Driver Not Loaded",
        10 => c"Timeout",
        11 => c"Interrupt request issue",
        12 => c"NVML Shared Library Not Found",
        13 => c"Function Not Found",
        14 => c"Corrupted infoROM",
        15 => c"GPU is lost",
        16 => c"GPU requires restart",
        17 => c"The operating system has blocked the request.",
        18 => c"RM has detected an NVML/RM version mismatch.",
        19 => c"In use by another client",
        20 => c"Insufficient Memory",
        21 => c"No data",
        _ => c"Unknown Error",
    };
    s.as_ptr()
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlSystemGetDriverVersion(version: *mut c_char, length: c_uint) -> NvmlReturn {
    guard(|| {
        let s = tri!(system_call("nvmlSystemGetDriverVersion"));
        unsafe { put_str(&s.driver_version, version, length) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlSystemGetNVMLVersion(version: *mut c_char, length: c_uint) -> NvmlReturn {
    guard(|| {
        let s = tri!(system_call("nvmlSystemGetNVMLVersion"));
        unsafe { put_str(&s.nvml_version, version, length) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlSystemGetCudaDriverVersion(version: *mut c_int) -> NvmlReturn {
    guard(|| {
        let s = tri!(system_call("nvmlSystemGetCudaDriverVersion"));
        unsafe { put(version, s.topo.cuda_driver_version) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlSystemGetCudaDriverVersion_v2(version: *mut c_int) -> NvmlReturn {
    guard(|| {
        let s = tri!(system_call("nvmlSystemGetCudaDriverVersion_v2"));
        unsafe { put(version, s.topo.cuda_driver_version) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetCount_v2(count: *mut c_uint) -> NvmlReturn {
    guard(|| {
        let s = tri!(system_call("nvmlDeviceGetCount_v2"));
        unsafe { put(count, s.topo.gpus.len() as c_uint) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetHandleByIndex_v2(index: c_uint, device: *mut NvmlDevice) -> NvmlReturn {
    guard(|| {
        let function = "nvmlDeviceGetHandleByIndex_v2";
        trace(&describe(function, index, None));
        let s = tri!(current().ok_or(NVML_ERROR_UNINITIALIZED));
        if let Some(code) = s.injected(function, Some(index), None) {
            return code;
        }
        if index as usize >= s.topo.gpus.len() {
            return NVML_ERROR_INVALID_ARGUMENT;
        }
        unsafe { put(device, s.handle(index as usize)) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetHandleByUUID(uuid: *const c_char, device: *mut NvmlDevice) -> NvmlReturn {
    guard(|| {
        let function = "nvmlDeviceGetHandleByUUID";
        if uuid.is_null() {
            trace(function);
            return if current().is_some() { NVML_ERROR_INVALID_ARGUMENT } else { NVML_ERROR_UNINITIALIZED };
        }
        let wanted = unsafe { CStr::from_ptr(uuid) };
        trace(&format!("{function} uuid={}", wanted.to_string_lossy()));
        let s = tri!(current().ok_or(NVML_ERROR_UNINITIALIZED));
        // Real NVML takes both GPU and MIG UUIDs here.
        let Some(pos) = s.devs.iter().position(|d| d.uuid.as_c_str() == wanted) else {
            return s.injected(function, None, None).unwrap_or(NVML_ERROR_NOT_FOUND);
        };
        let d = &s.devs[pos];
        if let Some(code) = s.injected(function, Some(d.index), d.mig.map(|m| m.slot)) {
            return code;
        }
        unsafe { put(device, s.handle(pos)) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetHandleByPciBusId_v2(
    pci_bus_id: *const c_char,
    device: *mut NvmlDevice,
) -> NvmlReturn {
    guard(|| {
        let function = "nvmlDeviceGetHandleByPciBusId_v2";
        if pci_bus_id.is_null() {
            trace(function);
            return if current().is_some() { NVML_ERROR_INVALID_ARGUMENT } else { NVML_ERROR_UNINITIALIZED };
        }
        let text = unsafe { CStr::from_ptr(pci_bus_id) }.to_string_lossy().into_owned();
        trace(&format!("{function} busId={text}"));
        let s = tri!(current().ok_or(NVML_ERROR_UNINITIALIZED));
        let Some(addr) = crate::topology::PciAddr::parse(&text) else {
            return NVML_ERROR_INVALID_ARGUMENT;
        };
        let Some(index) = s.topo.gpus.iter().position(|g| g.pci() == addr) else {
            return s.injected(function, None, None).unwrap_or(NVML_ERROR_NOT_FOUND);
        };
        if let Some(code) = s.injected(function, Some(index as u32), None) {
            return code;
        }
        unsafe { put(device, s.handle(index)) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetUUID(device: NvmlDevice, uuid: *mut c_char, length: c_uint) -> NvmlReturn {
    guard(|| {
        let (_, d) = tri!(device_call("nvmlDeviceGetUUID", device));
        unsafe { put_str(&d.uuid, uuid, length) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetName(device: NvmlDevice, name: *mut c_char, length: c_uint) -> NvmlReturn {
    guard(|| {
        let (_, d) = tri!(device_call("nvmlDeviceGetName", device));
        unsafe { put_str(&d.name, name, length) }
    })
}

fn pci_info(gpu: &Gpu) -> NvmlPciInfo {
    let addr = gpu.pci();
    let (pci_device_id, pci_sub_system_id) = gpu.pci_ids();
    NvmlPciInfo {
        bus_id_legacy: fixed(&addr.nvml_bus_id_legacy()),
        domain: addr.domain,
        bus: addr.bus,
        device: addr.device,
        pci_device_id,
        pci_sub_system_id,
        bus_id: fixed(&addr.nvml_bus_id()),
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetPciInfo_v3(device: NvmlDevice, pci: *mut NvmlPciInfo) -> NvmlReturn {
    guard(|| {
        // A MIG device reports its parent's PCI location.
        let (_, d) = tri!(device_call("nvmlDeviceGetPciInfo_v3", device));
        unsafe { put(pci, pci_info(d.gpu)) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetPciInfo_v2(device: NvmlDevice, pci: *mut NvmlPciInfo) -> NvmlReturn {
    guard(|| {
        let (_, d) = tri!(device_call("nvmlDeviceGetPciInfo_v2", device));
        unsafe { put(pci, pci_info(d.gpu)) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMinorNumber(device: NvmlDevice, minor: *mut c_uint) -> NvmlReturn {
    guard(|| {
        let (_, d) = tri!(device_call("nvmlDeviceGetMinorNumber", device));
        // MIG devices have no /dev/nvidia<N> of their own; ask the parent.
        if d.mig.is_some() {
            return NVML_ERROR_NOT_SUPPORTED;
        }
        unsafe { put(minor, d.gpu.minor) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetIndex(device: NvmlDevice, index: *mut c_uint) -> NvmlReturn {
    guard(|| {
        let (_, d) = tri!(device_call("nvmlDeviceGetIndex", device));
        // For a MIG handle NVML returns its index under the parent.
        let value = d.mig.map_or(d.index, |m| m.slot);
        unsafe { put(index, value) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMigMode(
    device: NvmlDevice,
    current_mode: *mut c_uint,
    pending_mode: *mut c_uint,
) -> NvmlReturn {
    guard(|| {
        let (_, d) = tri!(device_call("nvmlDeviceGetMigMode", device));
        if d.mig.is_some() || d.gpu.mig_mode == MigMode::Unsupported {
            return NVML_ERROR_NOT_SUPPORTED;
        }
        if current_mode.is_null() || pending_mode.is_null() {
            return NVML_ERROR_INVALID_ARGUMENT;
        }
        unsafe {
            current_mode.write(mode_value(d.gpu.mig_mode));
            pending_mode.write(mode_value(d.gpu.pending_mode()));
        }
        NVML_SUCCESS
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMaxMigDeviceCount(device: NvmlDevice, count: *mut c_uint) -> NvmlReturn {
    guard(|| {
        let (_, d) = tri!(device_call("nvmlDeviceGetMaxMigDeviceCount", device));
        let value = match (d.mig, d.gpu.mig_mode) {
            (Some(_), _) => return NVML_ERROR_INVALID_ARGUMENT,
            (None, MigMode::Unsupported) => return NVML_ERROR_NOT_SUPPORTED,
            // "Returns zero if MIG is not supported or enabled."
            (None, MigMode::Disabled) => 0,
            (None, MigMode::Enabled) => d.gpu.max_mig_devices,
        };
        unsafe { put(count, value) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMigDeviceHandleByIndex(
    device: NvmlDevice,
    index: c_uint,
    mig_device: *mut NvmlDevice,
) -> NvmlReturn {
    guard(|| {
        let function = "nvmlDeviceGetMigDeviceHandleByIndex";
        let Some(s) = current() else {
            trace(function);
            return NVML_ERROR_UNINITIALIZED;
        };
        let Some(d) = s.dev(device) else {
            trace(&format!("{function} handle=invalid"));
            return NVML_ERROR_INVALID_ARGUMENT;
        };
        trace(&describe(function, d.index, Some(index)));
        if let Some(code) = s.injected(function, Some(d.index), Some(index)) {
            return code;
        }
        match (d.mig, d.gpu.mig_mode) {
            (Some(_), _) | (None, MigMode::Disabled) => return NVML_ERROR_INVALID_ARGUMENT,
            (None, MigMode::Unsupported) => return NVML_ERROR_NOT_SUPPORTED,
            (None, MigMode::Enabled) => {}
        }
        let Some(slot) = s.slots.get(d.index as usize).and_then(|slots| slots.get(index as usize)) else {
            return NVML_ERROR_INVALID_ARGUMENT;
        };
        match slot {
            Some(pos) => unsafe { put(mig_device, s.handle(*pos)) },
            None => NVML_ERROR_NOT_FOUND,
        }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceIsMigDeviceHandle(device: NvmlDevice, is_mig: *mut c_uint) -> NvmlReturn {
    guard(|| {
        let (_, d) = tri!(device_call("nvmlDeviceIsMigDeviceHandle", device));
        unsafe { put(is_mig, c_uint::from(d.mig.is_some())) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetDeviceHandleFromMigDeviceHandle(
    mig_device: NvmlDevice,
    device: *mut NvmlDevice,
) -> NvmlReturn {
    guard(|| {
        let (s, d) = tri!(device_call("nvmlDeviceGetDeviceHandleFromMigDeviceHandle", mig_device));
        if d.mig.is_none() {
            return NVML_ERROR_INVALID_ARGUMENT;
        }
        unsafe { put(device, s.handle(d.index as usize)) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetBrand(device: NvmlDevice, brand: *mut c_uint) -> NvmlReturn {
    guard(|| {
        // A MIG device reports its parent's brand.
        let (_, d) = tri!(device_call("nvmlDeviceGetBrand", device));
        unsafe { put(brand, d.gpu.brand().nvml_value()) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetCudaComputeCapability(
    device: NvmlDevice,
    major: *mut c_int,
    minor: *mut c_int,
) -> NvmlReturn {
    guard(|| {
        let (_, d) = tri!(device_call("nvmlDeviceGetCudaComputeCapability", device));
        let Some((ma, mi)) = d.gpu.compute_capability() else { return NVML_ERROR_NOT_SUPPORTED };
        if major.is_null() || minor.is_null() {
            return NVML_ERROR_INVALID_ARGUMENT;
        }
        unsafe {
            major.write(ma as c_int);
            minor.write(mi as c_int);
        }
        NVML_SUCCESS
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetGpuInstanceId(device: NvmlDevice, id: *mut c_uint) -> NvmlReturn {
    guard(|| {
        let (_, d) = tri!(device_call("nvmlDeviceGetGpuInstanceId", device));
        match d.mig {
            Some(m) => unsafe { put(id, m.gi) },
            None => NVML_ERROR_NOT_SUPPORTED,
        }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetComputeInstanceId(device: NvmlDevice, id: *mut c_uint) -> NvmlReturn {
    guard(|| {
        let (_, d) = tri!(device_call("nvmlDeviceGetComputeInstanceId", device));
        match d.mig {
            Some(m) => unsafe { put(id, m.ci) },
            None => NVML_ERROR_NOT_SUPPORTED,
        }
    })
}
