use super::*;
use crate::driver::fake::{FakeDriver, gi_minor};
use crate::edits::DeviceRule;
use crate::request::{DriverCapabilities, RawRequest};

fn request(devices: &str) -> Request {
    request_with(RawRequest { visible_devices: Some(devices), ..Default::default() })
}

fn request_with(raw: RawRequest<'_>) -> Request {
    Request::parse(&raw, &DriverCapabilities::default()).unwrap()
}

fn paths(devices: &str) -> Vec<String> {
    let p = plan(&request(devices), &FakeDriver::a100()).unwrap();
    p.edits.device_nodes.iter().map(|n| format!("{} {}:{}", n.path, n.major, n.minor)).collect()
}

fn error(devices: &str) -> String {
    plan(&request(devices), &FakeDriver::a100()).unwrap_err().to_string()
}

#[test]
fn mig_index_gives_the_six_nodes() {
    assert_eq!(
        paths("0:1"),
        [
            "/dev/nvidia-caps/nvidia-cap345 508:345",
            "/dev/nvidia-caps/nvidia-cap346 508:346",
            "/dev/nvidia-uvm 511:0",
            "/dev/nvidia-uvm-tools 511:1",
            "/dev/nvidia2 195:2",
            "/dev/nvidiactl 195:255",
        ]
    );
}

#[test]
fn rules_are_rw_on_exactly_the_nodes() {
    let p = plan(&request("0:1"), &FakeDriver::a100()).unwrap();
    assert_eq!(p.edits.device_rules.len(), 6);
    assert!(p.edits.device_rules.contains(&DeviceRule::allow_rw(508, 345)));
    assert!(p.edits.device_rules.iter().all(|r| r.allow && r.access == "rw" && r.kind == 'c'));
}

#[test]
fn cap_minors_are_keyed_by_device_minor_not_index() {
    // GPU 1 has device minor 3: gpu3/gi1/ci2.
    assert!(paths("1:2").contains(&format!(
        "/dev/nvidia-caps/nvidia-cap{} 508:{}",
        gi_minor(3, 1) + 3,
        gi_minor(3, 1) + 3
    )));
    assert!(paths("1:2").contains(&"/dev/nvidia3 195:3".to_string()));
}

#[test]
fn gpu_index_is_the_nvml_index() {
    assert!(paths("2").contains(&"/dev/nvidia0 195:0".to_string()));
}

#[test]
fn one_gpu_node_per_gpu() {
    assert_eq!(paths("2").iter().filter(|p| p.starts_with("/dev/nvidia0 ")).count(), 1);
}

#[test]
fn same_device_named_two_ways_collapses() {
    let d = FakeDriver::a100();
    let uuid = d.gpus[0].1[1].as_ref().unwrap().uuid.clone();
    let p = plan(&request(&format!("0:1,{uuid}")), &d).unwrap();
    assert_eq!(p.selection.migs.len(), 1);
    assert_eq!(p.edits.device_nodes.len(), 6);
}

#[test]
fn legacy_mig_name_resolves_by_parent_uuid_and_instance_ids() {
    let d = FakeDriver::a100();
    let gpu_uuid = d.gpus[0].0.uuid.clone();
    let p = plan(&request(&format!("MIG-{gpu_uuid}/8/0")), &d).unwrap();
    assert_eq!(p.selection.migs[0].1.slot, 1);
}

#[test]
fn legacy_mig_name_errors() {
    let d = FakeDriver::a100();
    let gpu_uuid = d.gpus[0].0.uuid.clone();
    let e = plan(&request(&format!("MIG-{gpu_uuid}/10/0")), &d).unwrap_err().to_string();
    assert!(e.ends_with("GPU 0 has no MIG device with GPU instance 10 and compute instance 0"), "{e}");
}

#[test]
fn empty_slots_are_skipped_not_the_end() {
    assert!(paths("1:4").contains(&format!("/dev/nvidia-caps/nvidia-cap{} 508:{}", gi_minor(3, 2), gi_minor(3, 2))));
    assert_eq!(error("1:3"), "1:3: GPU 1 has no MIG device 3 (it has 0, 1, 2, 4)");
}

#[test]
fn resolution_errors_name_the_entry() {
    assert_eq!(error("0:9"), "0:9: GPU 0 has no MIG device 9 (it has 0..6)");
    assert_eq!(error("2:0"), "2:0: GPU 2 is not in MIG mode");
    assert_eq!(error("3:0"), "3:0: GPU 3 has no MIG devices");
    assert_eq!(error("9"), "9: no GPU with index 9 (this node has 0..3)");
    assert_eq!(error("9:0"), "9:0: no GPU with index 9 (this node has 0..3)");
    assert_eq!(
        error("GPU-11111111-2222-3333-4444-555555555555"),
        "GPU-11111111-2222-3333-4444-555555555555: no GPU with this UUID"
    );
    assert_eq!(
        error("MIG-11111111-2222-3333-4444-555555555555"),
        "MIG-11111111-2222-3333-4444-555555555555: no MIG device with this UUID"
    );
    assert_eq!(error("0000:99:00.0"), "0000:99:00.0: no GPU at PCI bus id 00000000:99:00.0");
}

#[test]
fn pci_bus_id_selects_the_gpu() {
    assert!(paths("0000:0f:00.0").contains(&"/dev/nvidia3 195:3".to_string()));
    assert!(paths("0F:00.0").contains(&"/dev/nvidia3 195:3".to_string()));
}

#[test]
fn whole_mig_gpu_gives_its_node_and_a_warning() {
    let p = plan(&request("0"), &FakeDriver::a100()).unwrap();
    assert!(p.edits.device_nodes.iter().all(|n| !n.path.contains("nvidia-caps")));
    assert_eq!(p.selection.warnings.len(), 1);
    assert!(p.selection.warnings[0].contains("no MIG compute without a MIG device"));
}

#[test]
fn none_gives_control_nodes_only() {
    assert_eq!(paths("none"), ["/dev/nvidia-uvm 511:0", "/dev/nvidia-uvm-tools 511:1", "/dev/nvidiactl 195:255"]);
}

#[test]
fn void_gives_nothing() {
    assert!(paths("void").is_empty());
    assert!(plan(&request_with(RawRequest::default()), &FakeDriver::a100()).unwrap().edits.is_empty());
}

#[test]
fn all_gives_every_full_gpu_and_every_mig_device() {
    let p = plan(&request("all"), &FakeDriver::a100()).unwrap();
    assert_eq!(p.selection.gpus.len(), 4);
    assert_eq!(p.selection.migs.len(), 7 + 4);
    assert!(p.selection.warnings.is_empty());
}

#[test]
fn uvm_only_with_compute_and_modeset_only_with_display() {
    let utility = request_with(RawRequest {
        visible_devices: Some("2"),
        driver_capabilities: Some("utility"),
        ..Default::default()
    });
    let nodes = plan(&utility, &FakeDriver::a100()).unwrap().edits.device_nodes;
    assert!(nodes.iter().all(|n| !n.path.contains("uvm")));
    let display = request_with(RawRequest {
        visible_devices: Some("2"),
        driver_capabilities: Some("display"),
        ..Default::default()
    });
    let nodes = plan(&display, &FakeDriver::a100()).unwrap().edits.device_nodes;
    assert!(nodes.iter().any(|n| n.path == "/dev/nvidia-modeset" && n.minor == 254));
}

#[test]
fn mig_monitor_adds_monitor_and_every_cap_of_the_selected_gpus() {
    let raw =
        RawRequest { visible_devices: Some("0:1"), mig_monitor: Some("all"), privileged: true, ..Default::default() };
    let nodes = plan(&request_with(raw), &FakeDriver::a100()).unwrap().edits.device_nodes;
    assert!(nodes.iter().any(|n| n.path == "/dev/nvidia-caps/nvidia-cap2"));
    assert_eq!(nodes.iter().filter(|n| n.path.starts_with("/dev/nvidia-caps/")).count(), 1 + 135);
}

#[test]
fn mig_config_cap_is_owner_only() {
    let raw =
        RawRequest { visible_devices: Some("2"), mig_config: Some("all"), privileged: true, ..Default::default() };
    let nodes = plan(&request_with(raw), &FakeDriver::a100()).unwrap().edits.device_nodes;
    let config = nodes.iter().find(|n| n.path == "/dev/nvidia-caps/nvidia-cap1").unwrap();
    assert_eq!(config.file_mode, 0o400);
}

#[test]
fn missing_caps_major_fails_closed_for_mig() {
    let mut d = FakeDriver::a100();
    d.majors.retain(|(_, n)| *n != "nvidia-caps");
    let e = plan(&request("0:1"), &d).unwrap_err().to_string();
    assert!(e.starts_with("0:1: needs /dev/nvidia-caps"), "{e}");
}

#[test]
fn one_mig_device_asks_about_one_gpu_and_one_slot() {
    let d = FakeDriver::a100();
    plan(&request("0:1"), &d).unwrap();
    assert_eq!(*d.calls.borrow(), ["count", "gpu 0", "mig 0:1"]);
}

/// `path uid:gid mode` of every node of a plan, to compare owners and modes at a glance.
fn owners(devices: &str, caps: &str, driver: &FakeDriver) -> Vec<String> {
    let raw = RawRequest { visible_devices: Some(devices), driver_capabilities: Some(caps), ..Default::default() };
    let nodes = plan(&request_with(raw), driver).unwrap().edits.device_nodes;
    nodes.iter().map(|n| format!("{} {}:{} {:04o}", n.path, n.uid, n.gid, n.file_mode)).collect()
}

#[test]
fn group_only_params_give_group_only_gpu_nodes() {
    // NVreg_DeviceFileGID=44 NVreg_DeviceFileMode=0660: the host's GPUs are for group 44 only.
    let mut d = FakeDriver::a100();
    d.params = Some(crate::driver::DeviceFileParams { uid: 0, gid: 44, mode: 0o660 });
    assert_eq!(
        owners("0:1", "compute,display", &d),
        [
            // Capability nodes: root's, with the capability file's mode (not the params).
            "/dev/nvidia-caps/nvidia-cap345 0:0 0444",
            "/dev/nvidia-caps/nvidia-cap346 0:0 0444",
            "/dev/nvidia-modeset 0:44 0660",
            // nvidia-modprobe makes the uvm nodes with its defaults, whatever the params.
            "/dev/nvidia-uvm 0:0 0666",
            "/dev/nvidia-uvm-tools 0:0 0666",
            "/dev/nvidia2 0:44 0660",
            "/dev/nvidiactl 0:44 0660",
        ]
    );
}

#[test]
fn without_a_params_file_gpu_nodes_are_root_0666() {
    let mut d = FakeDriver::a100();
    d.params = None;
    let none = owners("0:1,2", "compute,display", &d);
    assert!(none.contains(&"/dev/nvidia0 0:0 0666".to_string()), "{none:?}");
    assert!(none.contains(&"/dev/nvidiactl 0:0 0666".to_string()), "{none:?}");
    assert!(none.contains(&"/dev/nvidia-modeset 0:0 0666".to_string()), "{none:?}");
    assert_eq!(none, owners("0:1,2", "compute,display", &FakeDriver::a100()), "same as a default params file");
}

fn imex_plan(devices: &str, channels: &str, driver: &FakeDriver) -> Result<Plan, ResolveError> {
    let raw = RawRequest { visible_devices: Some(devices), imex_channels: Some(channels), ..Default::default() };
    plan(&request_with(raw), driver)
}

fn imex_lines(p: &Plan) -> Vec<String> {
    p.edits
        .device_nodes
        .iter()
        .filter(|n| n.path.starts_with("/dev/nvidia-caps-imex-channels/"))
        .map(|n| format!("{} {}:{} {:o} {}:{}", n.path, n.major, n.minor, n.file_mode, n.uid, n.gid))
        .collect()
}

#[test]
fn imex_channels_get_their_nodes_and_exact_rules() {
    let p = imex_plan("0:1", "3,0", &FakeDriver::a100()).unwrap();
    assert_eq!(
        imex_lines(&p),
        [
            "/dev/nvidia-caps-imex-channels/channel0 509:0 666 0:0",
            "/dev/nvidia-caps-imex-channels/channel3 509:3 666 0:0"
        ]
    );
    assert!(p.edits.device_rules.contains(&DeviceRule::allow_rw(509, 0)));
    assert!(p.edits.device_rules.contains(&DeviceRule::allow_rw(509, 3)));
    assert!(!p.edits.device_rules.iter().any(|r| r.major == 509 && r.minor == 1));
}

#[test]
fn imex_all_is_every_host_channel() {
    let p = imex_plan("none", "all", &FakeDriver::a100()).unwrap();
    assert_eq!(
        imex_lines(&p),
        [
            "/dev/nvidia-caps-imex-channels/channel0 509:0 666 0:0",
            "/dev/nvidia-caps-imex-channels/channel3 509:3 666 0:0"
        ]
    );
}

#[test]
fn imex_all_on_a_host_without_channels_is_a_warning() {
    let driver = FakeDriver { imex: vec![], ..FakeDriver::a100() };
    let p = imex_plan("0:1", "all", &driver).unwrap();
    assert_eq!(imex_lines(&p), Vec::<String>::new());
    assert_eq!(
        p.selection.warnings,
        ["IMEX channels all: this host has no /dev/nvidia-caps-imex-channels/channel* nodes"]
    );
}

#[test]
fn missing_imex_channels_are_named_with_what_the_host_has() {
    let e = imex_plan("0:1", "1,3,7", &FakeDriver::a100()).unwrap_err().to_string();
    assert_eq!(e, "IMEX channels 1, 7: not on this host (no /dev/nvidia-caps-imex-channels/channel<N>; it has 0, 3)");
}

#[test]
fn imex_channels_without_the_major_are_an_error() {
    let mut driver = FakeDriver::a100();
    driver.majors.retain(|(_, name)| *name != "nvidia-caps-imex-channels");
    let e = imex_plan("0:1", "0", &driver).unwrap_err().to_string();
    assert_eq!(e, "IMEX channel 0: /proc/devices has no nvidia-caps-imex-channels major (driver without IMEX?)");
}

#[test]
fn an_imex_node_with_other_numbers_is_an_error() {
    let mut driver = FakeDriver::a100();
    driver.imex[1].minor = 4;
    let e = imex_plan("0:1", "3", &driver).unwrap_err().to_string();
    assert_eq!(
        e,
        "IMEX channel 3: the host node /dev/nvidia-caps-imex-channels/channel3 is 509:4, but the channel is 509:3"
    );
}

#[test]
fn imex_nodes_keep_the_host_nodes_owner_and_mode() {
    let mut driver = FakeDriver::a100();
    driver.imex[0].mode = 0o660;
    driver.imex[0].gid = 44;
    let p = imex_plan("0:1", "0", &driver).unwrap();
    assert_eq!(imex_lines(&p), ["/dev/nvidia-caps-imex-channels/channel0 509:0 660 0:44"]);
}

#[test]
fn imex_channels_are_not_given_to_a_void_container() {
    let p = imex_plan("void", "0", &FakeDriver::a100()).unwrap();
    assert!(p.edits.is_empty());
}

#[test]
fn an_imex_request_asks_only_for_its_channels() {
    let driver = FakeDriver::a100();
    imex_plan("0:1", "3", &driver).unwrap();
    let calls = driver.calls.borrow();
    assert!(calls.contains(&"imex 3".to_string()));
    assert!(!calls.contains(&"imex all".to_string()), "{calls:?}");
}

fn with_caps(devices: &str, caps: &str) -> Request {
    request_with(RawRequest { visible_devices: Some(devices), driver_capabilities: Some(caps), ..Default::default() })
}

#[test]
fn a_missing_uvm_module_is_loaded_once_and_its_nodes_granted() {
    let driver = FakeDriver::a100_without_uvm();
    let p = plan(&request("2"), &driver).unwrap();
    let uvm: Vec<String> = p
        .edits
        .device_nodes
        .iter()
        .filter(|n| n.path.contains("uvm"))
        .map(|n| format!("{} {}:{}", n.path, n.major, n.minor))
        .collect();
    assert_eq!(uvm, ["/dev/nvidia-uvm 511:0", "/dev/nvidia-uvm-tools 511:1"]);
    assert_eq!(*driver.loaded.borrow(), ["nvidia-uvm"]);
    assert!(p.selection.warnings.is_empty());
}

#[test]
fn a_loaded_uvm_module_is_not_loaded_again() {
    let driver = FakeDriver::a100();
    plan(&request("2"), &driver).unwrap();
    assert!(driver.loaded.borrow().is_empty());
}

#[test]
fn without_load_kmods_a_missing_uvm_refuses_compute() {
    let driver = FakeDriver { load_kmods: false, ..FakeDriver::a100_without_uvm() };
    let e = plan(&request("2"), &driver).unwrap_err().to_string();
    assert_eq!(
        e,
        "compute needs /dev/nvidia-uvm, but /proc/devices has no nvidia-uvm major, and load-kmods is off (load nvidia-uvm on the host, or set load-kmods = true)"
    );
}

#[test]
fn a_uvm_module_that_registers_no_major_refuses_compute() {
    let driver = FakeDriver { loadable: vec![], ..FakeDriver::a100_without_uvm() };
    let e = plan(&request("2"), &driver).unwrap_err().to_string();
    assert_eq!(
        e,
        "compute needs /dev/nvidia-uvm, but /proc/devices has no nvidia-uvm major, even after loading the nvidia-uvm kernel module"
    );
}

#[test]
fn without_compute_a_missing_uvm_is_no_concern() {
    let driver = FakeDriver { load_kmods: false, ..FakeDriver::a100_without_uvm() };
    let p = plan(&with_caps("2", "utility"), &driver).unwrap();
    assert!(p.edits.device_nodes.iter().all(|n| !n.path.contains("uvm")));
    assert!(driver.loaded.borrow().is_empty());
}

#[test]
fn a_missing_modeset_module_is_loaded_for_display() {
    let driver = FakeDriver::a100_without_uvm();
    let p = plan(&with_caps("2", "display"), &driver).unwrap();
    assert!(p.edits.device_nodes.iter().any(|n| n.path == "/dev/nvidia-modeset"));
    assert_eq!(*driver.loaded.borrow(), ["nvidia-modeset"]);
}

#[test]
fn without_load_kmods_a_missing_modeset_is_left_out_with_a_warning() {
    let driver = FakeDriver { load_kmods: false, ..FakeDriver::a100_without_uvm() };
    let p = plan(&with_caps("2", "utility,display"), &driver).unwrap();
    assert!(p.edits.device_nodes.iter().all(|n| n.path != "/dev/nvidia-modeset"));
    assert!(p.edits.device_nodes.iter().any(|n| n.path == "/dev/nvidiactl"));
    assert_eq!(
        p.selection.warnings,
        ["display: no /dev/nvidia-modeset (the nvidia-modeset kernel module is not loaded, and load-kmods is off)"]
    );
}

#[test]
fn without_proc_modules_modeset_is_not_checked() {
    let driver = FakeDriver { load_kmods: false, modules: None, ..FakeDriver::a100() };
    plan(&with_caps("2", "display"), &driver).unwrap();
    assert!(driver.calls.borrow().iter().all(|c| !c.starts_with("load_kernel_module")));
}
