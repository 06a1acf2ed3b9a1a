//! `mighook list` and `mighook resolve` through the real NVML loading path
//! (the fake libnvidia-ml.so.1 of tests/fake-nvml) on simulated nodes.

mod support;

use serde_json::Value;
use std::process::{Command, Output};
use support::SimNode;

use support::a100::MIG_0_1_UUID as MIG_0_1;

fn mighook(node: &SimNode, args: &[&str]) -> Output {
    Command::new(support::mighook_bin()).args(node.mighook_args()).args(args).output().expect("run mighook")
}

fn resolve_json(node: &SimNode, devices: &str) -> Value {
    let out = mighook(node, &["resolve", "--json", devices]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn node_lines(v: &Value) -> Vec<String> {
    v["deviceNodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            format!(
                "{} {}:{} {:o}",
                n["path"].as_str().unwrap(),
                n["major"],
                n["minor"],
                n["fileMode"].as_u64().unwrap()
            )
        })
        .collect()
}

/// Exit status 1, nothing on stdout, one stderr line `mighook: <entry>: ...`.
fn assert_fails(node: &SimNode, devices: &str, message: &str) {
    let out = mighook(node, &["resolve", devices]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{devices}: {stderr}");
    assert!(out.stdout.is_empty(), "{devices}: stdout not empty");
    assert_eq!(stderr.lines().count(), 1, "{devices}: {stderr}");
    assert_eq!(stderr.trim_end(), format!("mighook: {message}"));
}

#[test]
fn resolve_0_1_gives_the_six_nodes_on_the_a100_node() {
    let node = SimNode::new("a100x8");
    assert_eq!(
        node_lines(&resolve_json(&node, "0:1")),
        [
            "/dev/nvidia-caps/nvidia-cap345 508:345 444",
            "/dev/nvidia-caps/nvidia-cap346 508:346 444",
            "/dev/nvidia-uvm 511:0 666",
            "/dev/nvidia-uvm-tools 511:1 666",
            "/dev/nvidia2 195:2 666",
            "/dev/nvidiactl 195:255 666",
        ]
    );
}

#[test]
fn resolve_json_has_devices_rules_and_warnings() {
    let node = SimNode::new("a100x8");
    let v = resolve_json(&node, MIG_0_1);
    assert_eq!(v["devices"][0]["name"], "0:1");
    assert_eq!(v["devices"][0]["gi"], 8);
    assert_eq!(v["deviceRules"].as_array().unwrap().len(), 6);
    assert!(v["deviceRules"].as_array().unwrap().iter().all(|r| r["access"] == "rw" && r["allow"] == true));
    assert_eq!(v["warnings"].as_array().unwrap().len(), 0);
}

#[test]
fn every_name_of_the_same_mig_device_resolves_alike() {
    let node = SimNode::new("a100x8");
    let by_index = node_lines(&resolve_json(&node, "0:1"));
    let listing: Value = serde_json::from_slice(&mighook(&node, &["list", "--json"]).stdout).unwrap();
    let legacy = listing["gpus"][0]["migDevices"][1]["legacyName"].as_str().unwrap().to_string();
    assert_eq!(node_lines(&resolve_json(&node, MIG_0_1)), by_index);
    assert_eq!(node_lines(&resolve_json(&node, &legacy)), by_index);
    assert_eq!(node_lines(&resolve_json(&node, &format!("0:1,{MIG_0_1},{legacy}"))), by_index);
}

#[test]
fn index_pci_and_uuid_name_the_same_gpu() {
    let node = SimNode::new("a100x8");
    let listing: Value = serde_json::from_slice(&mighook(&node, &["list", "--json"]).stdout).unwrap();
    let uuid = listing["gpus"][6]["uuid"].as_str().unwrap().to_string();
    let by_index = node_lines(&resolve_json(&node, "6"));
    assert!(by_index.contains(&"/dev/nvidia4 195:4 666".to_string()));
    assert_eq!(node_lines(&resolve_json(&node, &uuid)), by_index);
    assert_eq!(node_lines(&resolve_json(&node, "0000:b7:00.0")), by_index);
    assert_eq!(node_lines(&resolve_json(&node, "B7:00.0")), by_index);
}

#[test]
fn empty_handle_slots_are_skipped() {
    let node = SimNode::new("a100x8");
    let v = resolve_json(&node, "2:2");
    assert_eq!(v["devices"][0]["gi"], 5);
    assert_fails(&node, "2:1", "2:1: GPU 2 has no MIG device 1 (it has 0, 2, 3)");
}

#[test]
fn several_compute_instances_share_a_gpu_instance_cap() {
    let node = SimNode::new("a100x8");
    // GPU 1 has minor 3: gpu3/gi1/access = 3 + 3*135 + 9 = 417; ci1 = 419.
    let nodes = node_lines(&resolve_json(&node, "1:1"));
    assert!(nodes.contains(&"/dev/nvidia-caps/nvidia-cap417 508:417 444".to_string()));
    assert!(nodes.contains(&"/dev/nvidia-caps/nvidia-cap419 508:419 444".to_string()));
}

#[test]
fn errors_name_the_entry_and_the_reason() {
    let node = SimNode::new("a100x8");
    assert_fails(&node, "0:9", "0:9: GPU 0 has no MIG device 9 (it has 0..6)");
    assert_fails(&node, "6:0", "6:0: GPU 6 is not in MIG mode");
    assert_fails(&node, "3:0", "3:0: GPU 3 has no MIG devices");
    assert_fails(&node, "8", "8: no GPU with index 8 (this node has 0..7)");
    assert_fails(&node, "abc", "abc: not a GPU index, UUID, PCI bus id or MIG device");
    assert_fails(&node, "0:1:2", "0:1:2: not a GPU index, UUID, PCI bus id or MIG device");
    assert_fails(&node, "-1", "-1: not a GPU index, UUID, PCI bus id or MIG device");
    assert_fails(&node, "1abc", "1abc: not a GPU index, UUID, PCI bus id or MIG device");
    assert_fails(&node, "0,zzz", "zzz: not a GPU index, UUID, PCI bus id or MIG device");
}

#[test]
fn whole_mig_gpu_warns() {
    let node = SimNode::new("a100x8");
    let v = resolve_json(&node, "0");
    assert!(v["warnings"][0].as_str().unwrap().contains("no MIG compute without a MIG device"));
    let text = String::from_utf8(mighook(&node, &["resolve", "0"]).stdout).unwrap();
    assert!(text.contains("warning: 0: GPU 0 is in MIG mode"));
}

#[test]
fn void_and_none() {
    let node = SimNode::new("a100x8");
    assert_eq!(node_lines(&resolve_json(&node, "void")), Vec::<String>::new());
    assert_eq!(node_lines(&resolve_json(&node, "none")).len(), 3);
}

#[test]
fn unprivileged_mig_monitor_is_refused_and_privileged_gets_it() {
    let node = SimNode::new("a100x8");
    let out = mighook(&node, &["resolve", "--mig-monitor", "all", "0:1"]);
    assert_eq!(out.status.code(), Some(1));
    let out = mighook(&node, &["resolve", "--json", "--privileged", "--mig-monitor", "all", "0:1"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(node_lines(&v).contains(&"/dev/nvidia-caps/nvidia-cap2 508:2 444".to_string()));
}

#[test]
fn unknown_driver_capability_is_an_error() {
    let node = SimNode::new("a100x8");
    let out = mighook(&node, &["resolve", "--driver-capabilities", "compute,warp", "0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown driver capability 'warp'"));
}

#[test]
fn list_shows_every_gpu_and_mig_device_with_every_name() {
    let node = SimNode::new("a100x8");
    let out = mighook(&node, &["list"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("Driver version: 550.54.15\n"));
    assert!(text.contains(MIG_0_1));
    assert!(text.contains("MIG 0:1"));
    assert!(text.contains("/8/0"));
    let v: Value = serde_json::from_slice(&mighook(&node, &["list", "--json"]).stdout).unwrap();
    let gpus = v["gpus"].as_array().unwrap();
    assert_eq!(gpus.len(), 8);
    assert_eq!(gpus[0]["minor"], 2);
    assert_eq!(gpus[0]["pciBusId"], "00000000:07:00.0");
    assert_eq!(gpus[6]["migMode"], "disabled");
    assert_eq!(gpus.iter().map(|g| g["migDevices"].as_array().unwrap().len()).sum::<usize>(), 20);
    assert_eq!(gpus[1]["migDevices"][0]["profile"], "1c.3g.20gb");
}

#[test]
fn node_without_mig() {
    let node = SimNode::new("h100x4-nomig");
    assert_fails(&node, "0:0", "0:0: GPU 0 is not in MIG mode");
    assert_eq!(node_lines(&resolve_json(&node, "all")).len(), 3 + 4);
}

#[test]
fn nvml_error_mid_walk_is_a_clear_failure() {
    let node = SimNode::new("nvml-error-midwalk");
    let out = mighook(&node, &["resolve", "1:2"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("mighook: 1:2: NVML nvmlDeviceGetMigDeviceHandleByIndex failed"), "{stderr}");
    // Devices the failure does not touch still resolve.
    assert!(mighook(&node, &["resolve", "1:1"]).status.success());
}

#[test]
fn missing_nvml_library_is_a_clear_failure() {
    let node = SimNode::new("a100x8");
    let out = Command::new(support::mighook_bin())
        .args(["--nvml-lib", "/nonexistent/libnvidia-ml.so.1", "--proc-root"])
        .arg(node.proc_root())
        .args(["resolve", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .starts_with("mighook: 0: cannot load NVML from /nonexistent/libnvidia-ml.so.1")
    );
}

#[test]
fn settings_come_from_own_environment_when_no_flags() {
    let node = SimNode::new("a100x8");
    let out = Command::new(support::mighook_bin())
        .env("MIGHOOK_NVML_LIB", node.nvml_lib())
        .env("MIGHOOK_PROC_ROOT", node.proc_root())
        .args(["resolve", "0:1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `path uid:gid mode` of each node of `resolve --json`.
fn owner_lines(v: &Value) -> Vec<String> {
    let nodes = v["deviceNodes"].as_array().unwrap();
    nodes
        .iter()
        .map(|n| {
            format!("{} {}:{} {:o}", n["path"].as_str().unwrap(), n["uid"], n["gid"], n["fileMode"].as_u64().unwrap())
        })
        .collect()
}

#[test]
fn gpu_nodes_take_owner_and_mode_from_the_drivers_params() {
    // NVreg_DeviceFileGID=44 NVreg_DeviceFileMode=0660: GPUs for group 44 only.
    let node = SimNode::with_device_files("a100x8", 0, 44, 0o660);
    assert_eq!(
        owner_lines(&resolve_json(&node, "0:1")),
        [
            "/dev/nvidia-caps/nvidia-cap345 0:0 444",
            "/dev/nvidia-caps/nvidia-cap346 0:0 444",
            "/dev/nvidia-uvm 0:0 666",
            "/dev/nvidia-uvm-tools 0:0 666",
            "/dev/nvidia2 0:44 660",
            "/dev/nvidiactl 0:44 660",
        ]
    );
    let out = mighook(&node, &["resolve", "0:1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("  c 195:2 0660 /dev/nvidia2 (owner 0:44)\n"), "{text}");
    assert!(text.contains("  c 511:0 0666 /dev/nvidia-uvm\n"), "{text}");
    // A stock driver: root's, 0666, as before.
    let stock = owner_lines(&resolve_json(&SimNode::new("a100x8"), "0:1"));
    assert!(stock.contains(&"/dev/nvidia2 0:0 666".to_string()), "{stock:?}");
}

#[test]
fn a_malformed_params_file_fails_closed_naming_it() {
    let node = SimNode::new("a100x8");
    let params = node.proc_root().join("driver/nvidia/params");
    let _ = std::fs::remove_file(&params);
    std::fs::write(&params, "DeviceFileUID: 0\nDeviceFileGID: video\nDeviceFileMode: 432\n").unwrap();
    let out = mighook(&node, &["resolve", "0:1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty());
    let want = format!("{} is malformed: DeviceFileGID is \"video\", not a decimal number", params.display());
    assert!(stderr.trim_end().ends_with(&want), "{stderr}");
    // No params file at all (no driver loaded): the defaults.
    std::fs::remove_file(&params).unwrap();
    assert!(owner_lines(&resolve_json(&node, "0:1")).contains(&"/dev/nvidia2 0:0 666".to_string()));
}
