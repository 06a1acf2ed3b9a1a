//! The driver root through the CLI: where NVML is loaded from, which driver files
//! a request gets (`resolve --json` shows them), and the errors an admin sees
//! when the driver root is wrong. On simulated nodes with a fake driver
//! installation (tests/fake-nvml `fake-node --driver-root`).

mod support;

use serde_json::Value;
use std::fs;
use std::process::{Command, Output};
use support::SimNode;
use support::glibc_image::Layout;

const V: &str = "550.54.15";

fn mighook(global: &[String], args: &[&str]) -> Output {
    Command::new(support::mighook_bin()).args(global).args(args).output().expect("run mighook")
}

fn ok_json(out: &Output) -> Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Exit status 1, nothing on stdout, exactly one stderr line.
fn one_line_error(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty(), "stdout not empty");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    stderr.trim_end().to_string()
}

fn mounts(v: &Value) -> Vec<String> {
    let list = v["mounts"].as_array().map(Vec::as_slice).unwrap_or_default();
    list.iter()
        .map(|m| format!("{} {}", m["containerPath"].as_str().unwrap(), m["options"].as_array().unwrap().len()))
        .collect()
}

fn container_paths(v: &Value) -> Vec<String> {
    let list = v["mounts"].as_array().map(Vec::as_slice).unwrap_or_default();
    list.iter().map(|m| m["containerPath"].as_str().unwrap().to_string()).collect()
}

#[test]
fn nvml_is_loaded_through_the_driver_roots_own_cache() {
    let node = SimNode::with_driver_root("a100x8", Layout::Rhel);
    let out = mighook(&node.mighook_args(), &["list", "--json"]);
    let v = ok_json(&out);
    assert_eq!(v["driverVersion"], V);
    assert_eq!(v["gpus"].as_array().unwrap().len(), 8);
}

#[test]
fn resolve_shows_the_driver_files_a_request_gets() {
    let node = SimNode::with_driver_root("a100x8", Layout::Debian);
    let root = node.driver_root();
    let lib = "/usr/lib/x86_64-linux-gnu";
    let v = ok_json(&mighook(&node.mighook_args(), &["resolve", "--json", "0:1"]));
    let paths = container_paths(&v);
    for want in [
        format!("{lib}/libcuda.so.{V}"),
        format!("{lib}/libnvidia-ml.so.{V}"),
        format!("{lib}/libnvidia-ptxjitcompiler.so.{V}"),
        "/usr/bin/nvidia-smi".to_string(),
        "/usr/bin/nvidia-cuda-mps-control".to_string(),
        format!("/lib/firmware/nvidia/{V}/gsp_ga10x.bin"),
        "/run/nvidia-persistenced/socket".to_string(),
    ] {
        assert!(paths.contains(&want), "{want} missing from {paths:?}");
    }
    assert!(!paths.iter().any(|p| p.contains("unrelated")), "{paths:?}");
    assert!(!paths.iter().any(|p| p.contains("libnvidia-encode") || p.contains("EGL")), "{paths:?}");
    let cuda = v["mounts"].as_array().unwrap().iter().find(|m| m["containerPath"] == format!("{lib}/libcuda.so.{V}"));
    let cuda = cuda.unwrap();
    assert_eq!(cuda["hostPath"], format!("{}{lib}/libcuda.so.{V}", root.display()));
    assert_eq!(cuda["options"], serde_json::json!(["ro", "nosuid", "nodev", "bind"]));
    let links: Vec<String> = v["symlinks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| format!("{} -> {}", l["link"].as_str().unwrap(), l["target"].as_str().unwrap()))
        .collect();
    assert!(links.contains(&format!("{lib}/libcuda.so.1 -> libcuda.so.{V}")), "{links:?}");
    assert!(links.contains(&format!("{lib}/libcuda.so -> libcuda.so.1")), "{links:?}");
    assert!(links.contains(&format!("{lib}/libnvidia-ml.so.1 -> libnvidia-ml.so.{V}")), "{links:?}");
}

#[test]
fn capabilities_choose_the_files() {
    let node = SimNode::with_driver_root("a100x8", Layout::Debian);
    let utility =
        ok_json(&mighook(&node.mighook_args(), &["resolve", "--json", "--driver-capabilities", "utility", "0"]));
    let paths = container_paths(&utility);
    assert!(paths.contains(&"/usr/bin/nvidia-smi".to_string()), "{paths:?}");
    assert!(!paths.iter().any(|p| p.contains("libcuda")), "utility brings no libcuda: {paths:?}");
    assert!(!paths.iter().any(|p| p.contains("mps")), "utility brings no MPS: {paths:?}");
    let all = ok_json(&mighook(&node.mighook_args(), &["resolve", "--json", "--driver-capabilities", "all", "0"]));
    let paths = container_paths(&all);
    for want in ["libnvidia-encode.so", "libEGL_nvidia.so", "libnvidia-ngx.so", "libnvcuvid.so", "libcuda.so"] {
        assert!(paths.iter().any(|p| p.contains(want)), "all brings {want}: {paths:?}");
    }
    assert!(!paths.iter().any(|p| p.contains("unrelated")), "{paths:?}");
    assert!(mounts(&all).len() > mounts(&utility).len());
}

#[test]
fn a_void_request_gets_no_driver_files() {
    let node = SimNode::with_driver_root("a100x8", Layout::Debian);
    let v = ok_json(&mighook(&node.mighook_args(), &["resolve", "--json", "void"]));
    assert_eq!(v.get("mounts"), None);
}

#[test]
fn a_host_without_driver_files_gets_device_nodes_only() {
    // The test host itself: its / has no NVIDIA driver files, as on a device-only setup.
    let node = SimNode::new("a100x8");
    let mut global = node.mighook_args();
    global.extend(["--driver-root".to_string(), "/".to_string()]);
    let v = ok_json(&mighook(&global, &["resolve", "--json", "0:1"]));
    assert_eq!(v.get("mounts"), None);
    assert_eq!(v["deviceNodes"].as_array().unwrap().len(), 6);
}

#[test]
fn missing_essential_library_warns_or_refuses_as_configured() {
    let node = SimNode::with_driver_root("a100x8", Layout::Debian);
    fs::remove_file(node.driver_lib_dir().join(format!("libcuda.so.{V}"))).unwrap();
    let v = ok_json(&mighook(&node.mighook_args(), &["resolve", "--json", "0:1"]));
    assert!(v["missingDriverFiles"].as_array().unwrap().contains(&Value::from("libcuda.so")), "{v}");
    assert!(!container_paths(&v).iter().any(|p| p.ends_with(&format!("/libcuda.so.{V}"))));

    let config = node.dir().join("strict.toml");
    fs::write(&config, "missing-driver-files = \"error\"\n").unwrap();
    let mut global = node.mighook_args();
    global.extend(["--config".to_string(), config.to_str().unwrap().to_string()]);
    let line = one_line_error(&mighook(&global, &["resolve", "0:1"]));
    assert_eq!(
        line,
        format!(
            "mighook: driver files: compute needs libcuda.so.1, which is not under the driver root {} \
             (missing-driver-files = \"error\")",
            node.driver_root().display()
        )
    );
    // Utility alone does not need libcuda.
    assert!(mighook(&global, &["resolve", "--driver-capabilities", "utility", "0:1"]).status.success());
}

#[test]
fn a_driver_root_that_does_not_exist_is_a_clear_error() {
    let node = SimNode::new("a100x8");
    let mut global = node.mighook_args();
    global.extend(["--driver-root".to_string(), "/nonexistent/driver".to_string()]);
    let line = one_line_error(&mighook(&global, &["resolve", "0:1"]));
    assert_eq!(line, "mighook: driver files: driver root /nonexistent/driver: No such file or directory (os error 2)");
}

#[test]
fn a_corrupt_driver_root_cache_is_a_clear_error() {
    let node = SimNode::with_driver_root("a100x8", Layout::Debian);
    let cache = node.driver_root().join("etc/ld.so.cache");
    fs::write(&cache, b"glibc-ld.so.cache1.1 but not really").unwrap();
    // NVML from the node's own library: the driver-file discovery reports the cache.
    let mut global = node.mighook_args();
    global.extend(["--nvml-lib".to_string(), node.nvml_lib().to_str().unwrap().to_string()]);
    let line = one_line_error(&mighook(&global, &["resolve", "0:1"]));
    assert!(line.starts_with(&format!("mighook: driver files: {}: ", cache.display())), "{line}");
    // NVML through the same cache: the load error says where mighook looked and what to set.
    let line = one_line_error(&mighook(&node.mighook_args(), &["resolve", "0:1"]));
    assert!(
        line.starts_with(&format!("mighook: 0:1: cannot load NVML from libnvidia-ml.so.1 in {}: ", cache.display())),
        "{line}"
    );
    assert!(line.ends_with("set nvml-lib (--nvml-lib, MIGHOOK_NVML_LIB) to its path, or fix driver-root"), "{line}");
}

#[test]
fn driver_root_comes_from_mighooks_own_environment_too() {
    let node = SimNode::with_driver_root("a100x8", Layout::Debian);
    let out = Command::new(support::mighook_bin())
        .env("MIGHOOK_PROC_ROOT", node.proc_root())
        .env("MIGHOOK_DRIVER_ROOT", node.driver_root())
        .args(["resolve", "--json", "0:1"])
        .output()
        .unwrap();
    let v = ok_json(&out);
    assert!(container_paths(&v).contains(&"/usr/bin/nvidia-smi".to_string()));
}

/// The CDI spec carries the driver files as spec-wide mounts (at their host-relative
/// paths, as nvidia-ctk places them) and one createContainer hook, mighook itself with
/// every link and cache entry spelled out and an explicit environment.
#[test]
fn the_cdi_spec_mounts_the_driver_files_and_runs_mighook_for_links_and_cache() {
    let node = SimNode::with_driver_root("a100x8", Layout::Rhel);
    let spec = ok_json(&mighook(&node.mighook_args(), &["cdi", "generate"]));
    let edits = &spec["containerEdits"];
    let lib = "/usr/lib64";
    let paths = container_paths(edits);
    assert!(paths.contains(&format!("{lib}/libcuda.so.{V}")), "{paths:?}");
    assert!(paths.contains(&"/usr/bin/nvidia-smi".to_string()), "{paths:?}");
    assert!(!paths.iter().any(|p| p.contains("unrelated")), "{paths:?}");
    let cuda =
        edits["mounts"].as_array().unwrap().iter().find(|m| m["containerPath"] == format!("{lib}/libcuda.so.{V}"));
    assert_eq!(cuda.unwrap()["hostPath"], format!("{}{lib}/libcuda.so.{V}", node.driver_root().display()));
    let hooks = edits["hooks"].as_array().unwrap();
    assert_eq!(hooks.len(), 1);
    let hook = &hooks[0];
    assert_eq!(hook["hookName"], "createContainer");
    assert_eq!(hook["path"], support::mighook_bin().canonicalize().unwrap().to_str().unwrap());
    assert_eq!(hook["env"], serde_json::json!(["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]));
    let args: Vec<&str> = hook["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(&args[..2], ["mighook", "cdi-hook"]);
    let link = format!("libcuda.so.{V}::{lib}/libcuda.so.1");
    assert!(args.windows(2).any(|w| w == ["--link", link.as_str()]), "{args:?}");
    let entry = format!("libcuda.so.1::{lib}/libcuda.so.1");
    assert!(args.windows(2).any(|w| w == ["--lib", entry.as_str()]), "{args:?}");
    // Devices keep only their own nodes; the driver files are spec-wide.
    let dev = spec["devices"].as_array().unwrap().iter().find(|d| d["name"] == "0:1").unwrap();
    assert_eq!(dev["containerEdits"].get("mounts"), None);
}
