//! Loads the fake library through nvml-wrapper's real loading path and
//! checks it answers like NVML for the a100x8 fixtures. Each test builds
//! its own node, so each loads its own copy (its own library state).

use std::ffi::{CStr, CString, c_char, c_int, c_uint, c_void};
use std::path::Path;

use fake_nvml::Topology;
use fake_nvml::locate::{cdylib, topology};
use fake_nvml::node::{self, Node};
use nvml_wrapper::Nvml;
use nvml_wrapper::error::NvmlError;

fn make_node(name: &str) -> (tempfile::TempDir, Node) {
    let lib = cdylib().unwrap_or_else(|e| panic!("{e}"));
    let tmp = tempfile::tempdir().unwrap();
    let node = node::build(&topology(name), tmp.path(), Some(&lib), false).unwrap();
    (tmp, node)
}

fn open(node: &Node) -> Nvml {
    Nvml::builder().lib_path(node.lib().as_os_str()).init().unwrap()
}

#[test]
fn system_and_gpu_identity() {
    let (_tmp, node) = make_node("a100x8.json");
    let topo = &node.topology;
    let nvml = open(&node);
    assert_eq!(nvml.device_count().unwrap(), 8);
    assert_eq!(nvml.sys_driver_version().unwrap(), "550.54.15");
    assert_eq!(nvml.sys_nvml_version().unwrap(), "12.550.54.15");
    assert_eq!(nvml.sys_cuda_driver_version().unwrap(), 12040);
    let gpu0 = nvml.device_by_index(0).unwrap();
    assert_eq!(gpu0.minor_number().unwrap(), 2);
    assert_eq!(gpu0.uuid().unwrap(), topo.gpus[0].uuid);
    assert_eq!(gpu0.name().unwrap(), "NVIDIA A100-SXM4-40GB");
    assert_eq!(gpu0.index().unwrap(), 0);
    let pci = gpu0.pci_info().unwrap();
    assert_eq!(pci.bus_id, "00000000:07:00.0");
    assert_eq!((pci.domain, pci.bus, pci.device), (0, 0x07, 0));
    assert_eq!(pci.pci_device_id, 0x20B0_10DE);
    assert_eq!(pci.pci_sub_system_id, Some(0x134F_10DE));
    let minors: Vec<u32> = (0..8).map(|i| nvml.device_by_index(i).unwrap().minor_number().unwrap()).collect();
    assert_eq!(minors, [2, 3, 0, 1, 6, 7, 4, 5]);
    assert_eq!(nvml.device_by_index(3).unwrap().pci_info().unwrap().bus_id, "00000000:4E:00.0");
    assert!(matches!(nvml.device_by_index(8), Err(NvmlError::InvalidArg)));
}

#[test]
fn brand_and_compute_capability_by_model_and_mig_devices_report_their_parents() {
    use nvml_wrapper::enum_wrappers::device::Brand;
    let (_tmp, node) = make_node("a100x8.json");
    let nvml = open(&node);
    let gpu0 = nvml.device_by_index(0).unwrap();
    assert_eq!(gpu0.brand().unwrap(), Brand::Nvidia);
    let cc = gpu0.cuda_compute_capability().unwrap();
    assert_eq!((cc.major, cc.minor), (8, 0));
    let mig = gpu0.mig_device_by_index(1).unwrap();
    assert_eq!(mig.brand().unwrap(), Brand::Nvidia);
    let (_tmp, node) = make_node("h100x4-nomig.json");
    let nvml = open(&node);
    let cc = nvml.device_by_index(3).unwrap().cuda_compute_capability().unwrap();
    assert_eq!((cc.major, cc.minor), (9, 0));
}

#[test]
fn mig_modes() {
    let (_tmp, node) = make_node("a100x8.json");
    let nvml = open(&node);
    let mode = nvml.device_by_index(0).unwrap().mig_mode().unwrap();
    assert_eq!((mode.current, mode.pending), (1, 1));
    let mode = nvml.device_by_index(6).unwrap().mig_mode().unwrap();
    assert_eq!((mode.current, mode.pending), (0, 0));
    assert_eq!(nvml.device_by_index(0).unwrap().mig_device_count().unwrap(), 7);
    assert_eq!(nvml.device_by_index(6).unwrap().mig_device_count().unwrap(), 0);
    // MIG disabled: no MIG handles at all, like real NVML.
    assert!(matches!(nvml.device_by_index(6).unwrap().mig_device_by_index(0), Err(NvmlError::InvalidArg)));
    // MIG enabled without instances: every slot is empty.
    assert!(matches!(nvml.device_by_index(3).unwrap().mig_device_by_index(0), Err(NvmlError::NotFound)));
}

fn gi_ci(nvml: &Nvml, mig: &nvml_wrapper::Device) -> (u32, u32) {
    let (mut gi, mut ci) = (u32::MAX, u32::MAX);
    unsafe {
        assert_eq!(nvml.lib().nvmlDeviceGetGpuInstanceId(mig.handle(), &mut gi), 0);
        assert_eq!(nvml.lib().nvmlDeviceGetComputeInstanceId(mig.handle(), &mut ci), 0);
    }
    (gi, ci)
}

#[test]
fn mig_walk_with_an_empty_slot() {
    let (_tmp, node) = make_node("a100x8.json");
    let nvml = open(&node);
    let gpu2 = nvml.device_by_index(2).unwrap();
    assert!(matches!(gpu2.mig_device_by_index(1), Err(NvmlError::NotFound)));
    let mig = gpu2.mig_device_by_index(2).unwrap();
    assert_eq!(mig.uuid().unwrap(), node.topology.gpus[2].mig_devices[1].uuid);
    assert_eq!(mig.name().unwrap(), "NVIDIA A100-SXM4-40GB MIG 2g.10gb");
    assert!(mig.mig_is_mig_device_handle().unwrap());
    assert!(!gpu2.mig_is_mig_device_handle().unwrap());
    assert_eq!(gi_ci(&nvml, &mig), (5, 0));
    assert_eq!(gi_ci(&nvml, &gpu2.mig_device_by_index(3).unwrap()), (13, 0));
    assert_eq!(mig.index().unwrap(), 2);
    assert_eq!(mig.pci_info().unwrap().bus_id, "00000000:47:00.0");
    assert_eq!(mig.mig_parent_device().unwrap().uuid().unwrap(), node.topology.gpus[2].uuid);
    assert!(matches!(gpu2.mig_device_by_index(7), Err(NvmlError::InvalidArg)));
    // MIG-only queries on a full GPU, full-GPU queries on a MIG device.
    let mut id = 0;
    assert_eq!(unsafe { nvml.lib().nvmlDeviceGetGpuInstanceId(gpu2.handle(), &mut id) }, 3);
    assert!(matches!(gpu2.mig_parent_device(), Err(NvmlError::InvalidArg)));
    assert!(matches!(mig.mig_device_by_index(0), Err(NvmlError::InvalidArg)));
    assert!(matches!(mig.minor_number(), Err(NvmlError::NotSupported)));
}

#[test]
fn several_cis_per_gi() {
    let (_tmp, node) = make_node("a100x8.json");
    let nvml = open(&node);
    let gpu1 = nvml.device_by_index(1).unwrap();
    let ids: Vec<(u32, u32)> = (0..4).map(|s| gi_ci(&nvml, &gpu1.mig_device_by_index(s).unwrap())).collect();
    assert_eq!(ids, [(1, 0), (1, 1), (1, 2), (2, 0)]);
    assert_eq!(gpu1.mig_device_by_index(0).unwrap().name().unwrap(), "NVIDIA A100-SXM4-40GB MIG 1c.3g.20gb");
}

#[test]
fn lookup_by_uuid_and_bus_id() {
    let (_tmp, node) = make_node("a100x8.json");
    let nvml = open(&node);
    let mig = nvml.device_by_uuid("MIG-c7384736-a75d-5afc-978f-d2f1294409fd").unwrap();
    assert!(mig.mig_is_mig_device_handle().unwrap());
    assert_eq!(gi_ci(&nvml, &mig), (8, 0));
    assert_eq!(mig.mig_parent_device().unwrap().index().unwrap(), 0);
    let gpu = nvml.device_by_uuid(node.topology.gpus[5].uuid.as_str()).unwrap();
    assert_eq!(gpu.index().unwrap(), 5);
    assert!(matches!(nvml.device_by_uuid("GPU-00000000-0000-0000-0000-000000000000"), Err(NvmlError::NotFound)));
    assert_eq!(nvml.device_by_pci_bus_id("00000000:0F:00.0").unwrap().index().unwrap(), 1);
    assert_eq!(nvml.device_by_pci_bus_id("0000:bd:00.0").unwrap().index().unwrap(), 7);
    assert!(matches!(nvml.device_by_pci_bus_id("0000:08:00.0"), Err(NvmlError::NotFound)));
}

#[test]
fn injected_failure_mid_walk() {
    let (_tmp, node) = make_node("nvml-error-midwalk.json");
    let nvml = open(&node);
    let gpu1 = nvml.device_by_index(1).unwrap();
    assert!(gpu1.mig_device_by_index(1).is_ok());
    assert!(matches!(gpu1.mig_device_by_index(2), Err(NvmlError::Unknown)));
    assert!(gpu1.mig_device_by_index(3).is_ok());
    assert!(nvml.device_by_index(0).unwrap().mig_device_by_index(2).is_ok());
}

#[test]
fn other_topologies_load() {
    let (_tmp, node) = make_node("h100x4-nomig.json");
    let nvml = open(&node);
    assert_eq!(nvml.device_count().unwrap(), 4);
    assert_eq!(nvml.device_by_index(3).unwrap().pci_info().unwrap().bus_id, "00000000:5D:00.0");
    let (_tmp, node) = make_node("a100x32.json");
    let nvml = open(&node);
    assert_eq!(nvml.device_count().unwrap(), 32);
    assert_eq!(nvml.device_by_index(0).unwrap().minor_number().unwrap(), 31);
    let (_tmp, node) = make_node("a30-1.json");
    let nvml = open(&node);
    assert_eq!(nvml.device_by_index(0).unwrap().mig_device_count().unwrap(), 4);
}

/// The raw C ABI, through dlopen, for what nvml-wrapper cannot reach:
/// calls before init, init counting, buffer sizes, bogus handles.
struct Raw(*mut c_void);

impl Raw {
    fn open(path: &Path) -> Raw {
        let c = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        assert!(!h.is_null(), "dlopen {}", path.display());
        Raw(h)
    }
    fn sym<T: Copy>(&self, name: &str) -> T {
        let c = CString::new(name).unwrap();
        let p = unsafe { libc::dlsym(self.0, c.as_ptr()) };
        assert!(!p.is_null(), "{name} is not exported");
        unsafe { std::mem::transmute_copy(&p) }
    }
    fn call0(&self, name: &str) -> c_uint {
        unsafe { self.sym::<unsafe extern "C" fn() -> c_uint>(name)() }
    }
    fn count(&self) -> (c_uint, c_uint) {
        let mut n = 0;
        let rc = unsafe { self.sym::<unsafe extern "C" fn(*mut c_uint) -> c_uint>("nvmlDeviceGetCount_v2")(&mut n) };
        (rc, n)
    }
    fn handle(&self, index: c_uint) -> *mut c_void {
        let mut h = std::ptr::null_mut();
        let f = self.sym::<unsafe extern "C" fn(c_uint, *mut *mut c_void) -> c_uint>("nvmlDeviceGetHandleByIndex_v2");
        assert_eq!(unsafe { f(index, &mut h) }, 0);
        h
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        unsafe { libc::dlclose(self.0) };
    }
}

#[test]
fn raw_abi_init_counting_and_errors() {
    let (_tmp, node) = make_node("a100x8.json");
    let raw = Raw::open(&node.lib());
    assert_eq!(raw.count().0, 1, "calls before nvmlInit are UNINITIALIZED");
    assert_eq!(raw.call0("nvmlShutdown"), 1);
    assert_eq!(raw.call0("nvmlInit_v2"), 0);
    assert_eq!(raw.call0("nvmlInit_v2"), 0);
    assert_eq!(raw.count(), (0, 8));
    assert_eq!(raw.call0("nvmlShutdown"), 0);
    assert_eq!(raw.count(), (0, 8), "one init is still open");

    let get_uuid = raw.sym::<unsafe extern "C" fn(*mut c_void, *mut c_char, c_uint) -> c_uint>("nvmlDeviceGetUUID");
    let h = raw.handle(0);
    let mut buf = [0 as c_char; 96];
    let len = node.topology.gpus[0].uuid.len() as c_uint;
    assert_eq!(unsafe { get_uuid(h, buf.as_mut_ptr(), len) }, 7, "no room for the NUL");
    assert_eq!(unsafe { get_uuid(h, buf.as_mut_ptr(), len + 1) }, 0);
    assert_eq!(unsafe { CStr::from_ptr(buf.as_ptr()) }.to_str().unwrap(), node.topology.gpus[0].uuid);
    assert_eq!(unsafe { get_uuid(std::ptr::null_mut(), buf.as_mut_ptr(), 96) }, 2);
    assert_eq!(unsafe { get_uuid(h.cast::<u8>().add(1).cast(), buf.as_mut_ptr(), 96) }, 2);
    assert_eq!(unsafe { get_uuid(h, std::ptr::null_mut(), 96) }, 2);

    let cuda = raw.sym::<unsafe extern "C" fn(*mut c_int) -> c_uint>("nvmlSystemGetCudaDriverVersion");
    let mut v = 0;
    assert_eq!(unsafe { cuda(&mut v) }, 0);
    assert_eq!(v, 12040);

    let err = raw.sym::<unsafe extern "C" fn(c_uint) -> *const c_char>("nvmlErrorString");
    assert_eq!(unsafe { CStr::from_ptr(err(999)) }.to_str().unwrap(), "Unknown Error");
    assert_eq!(unsafe { CStr::from_ptr(err(6)) }.to_str().unwrap(), "Not Found");

    assert_eq!(raw.call0("nvmlShutdown"), 0);
    assert_eq!(raw.count().0, 1, "after the last shutdown");
    assert_eq!(raw.call0("nvmlShutdown"), 1);
}

#[test]
fn init_fails_without_a_topology() {
    let (tmp, node) = make_node("a100x8.json");
    let lonely = tmp.path().join("lonely");
    std::fs::create_dir(&lonely).unwrap();
    std::fs::copy(node.lib(), lonely.join("libnvidia-ml.so.1")).unwrap();
    let raw = Raw::open(&lonely.join("libnvidia-ml.so.1"));
    assert_eq!(raw.call0("nvmlInit_v2"), 999);
    assert_eq!(raw.count().0, 1);
    assert!(matches!(
        Nvml::builder().lib_path(lonely.join("libnvidia-ml.so.1").as_os_str()).init(),
        Err(NvmlError::Unknown)
    ));
}

#[test]
fn a_topology_edited_in_code() {
    let mut topo = Topology::load(topology("a100x8.json")).unwrap();
    topo.failures.push(fake_nvml::Failure { function: "nvmlInit_v2".into(), gpu: None, slot: None, code: 9 });
    let tmp = tempfile::tempdir().unwrap();
    let lib = cdylib().unwrap();
    let node = node::build_from(&topo, tmp.path(), Some(&lib), false).unwrap();
    assert!(matches!(Nvml::builder().lib_path(node.lib().as_os_str()).init(), Err(NvmlError::DriverNotLoaded)));
}
