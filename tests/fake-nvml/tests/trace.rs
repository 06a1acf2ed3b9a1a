//! The environment knobs of the fake library. They are process-wide, so
//! this binary holds exactly one test and sets them before any load.

use fake_nvml::locate::{cdylib, topology};
use fake_nvml::node;
use nvml_wrapper::Nvml;

#[test]
fn trace_and_topology_override() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = cdylib().unwrap_or_else(|e| panic!("{e}"));
    let node = node::build(&topology("a100x8.json"), &tmp.path().join("node"), Some(&lib), false).unwrap();
    let trace = tmp.path().join("trace.log");
    // SAFETY: the only test in this binary; no other thread reads the env.
    unsafe { std::env::set_var("FAKE_NVML_TRACE", &trace) };

    let nvml = Nvml::builder().lib_path(node.lib().as_os_str()).init().unwrap();
    assert_eq!(nvml.device_count().unwrap(), 8);
    let gpu0 = nvml.device_by_index(0).unwrap();
    gpu0.mig_device_by_index(1).unwrap().uuid().unwrap();
    nvml.device_by_index(3).unwrap().uuid().unwrap();
    drop(nvml);
    let lines = std::fs::read_to_string(&trace).unwrap();
    let expected = [
        "nvmlInit_v2",
        "nvmlSystemGetDriverVersion",
        "nvmlDeviceGetCount_v2",
        "nvmlDeviceGetHandleByIndex_v2 gpu=0",
        "nvmlDeviceGetMigDeviceHandleByIndex gpu=0 slot=1",
        "nvmlDeviceGetUUID gpu=0 slot=1",
        "nvmlDeviceGetHandleByIndex_v2 gpu=3",
        "nvmlDeviceGetUUID gpu=3",
        "nvmlShutdown",
    ];
    assert_eq!(lines.lines().collect::<Vec<_>>(), expected, "nvml-wrapper's drop must call nvmlShutdown");

    // FAKE_NVML_TOPOLOGY wins over topology.json next to the library.
    unsafe { std::env::set_var("FAKE_NVML_TOPOLOGY", topology("a30-1.json")) };
    let nvml = Nvml::builder().lib_path(node.lib().as_os_str()).init().unwrap();
    assert_eq!(nvml.device_count().unwrap(), 1);
    assert_eq!(nvml.device_by_index(0).unwrap().name().unwrap(), "NVIDIA A30");
    drop(nvml);
    let lines = std::fs::read_to_string(&trace).unwrap();
    assert_eq!(lines.lines().filter(|l| *l == "nvmlInit_v2").count(), 2);
    assert_eq!(lines.lines().filter(|l| *l == "nvmlShutdown").count(), 2);
}
