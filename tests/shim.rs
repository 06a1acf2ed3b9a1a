//! The runtime shim (`mighook runtime`, argv0 `nvidia-container-runtime`) against a
//! fake low-level runtime that records its argv and the config.json it was given,
//! on a simulated 8×A100 node (`tests/topologies/a100x8.json`), plus one run under
//! real runc.
//!
//! `0:1` is GPU 0 (device minor 2, MIG on) slot 1 = GI 8 / CI 0: nvidia-caps minors
//! 345 (gi8/access) and 346 (gi8/ci0/access). The command lines are the ones docker
//! and containerd's runc shim use.

mod support;

use serde_json::{Value, json};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The six nodes `0:1` gives a container, in the order the shim writes them.
const MIG_0_1_NODES: [(&str, u32, u32); 6] = [
    ("/dev/nvidia-caps/nvidia-cap345", 508, 345),
    ("/dev/nvidia-caps/nvidia-cap346", 508, 346),
    ("/dev/nvidia-uvm", 511, 0),
    ("/dev/nvidia-uvm-tools", 511, 1),
    ("/dev/nvidia2", 195, 2),
    ("/dev/nvidiactl", 195, 255),
];

/// UUID of GPU 0's slot-1 MIG device in a100x8.
const MIG_0_1_UUID: &str = "MIG-c7384736-a75d-5afc-978f-d2f1294409fd";

/// Records argv one per line, the cwd, and a copy of the bundle's config.json.
const FAKE_RUNC: &str = r#"#!/bin/sh
out=$(dirname "$0")
printf '%s\n' "$@" > "$out/argv"
pwd > "$out/cwd"
b=.; prev=
for a in "$@"; do
  case "$prev" in --bundle|-b) b=$a;; esac
  case "$a" in --bundle=*) b=${a#--bundle=};; esac
  prev=$a
done
if [ -f "$b/config.json" ]; then cp "$b/config.json" "$out/seen-config.json"; fi
exit 0
"#;

/// A simulated node, a fake runtime, a config file pointing at it, and a bundle.
struct World {
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let dir = tempfile::Builder::new().prefix("mighook-shim").tempdir().unwrap();
        let topology = support::workspace_root().join("tests/topologies/a100x8.json");
        let out = Command::new(support::fake_node_bin()).arg(&topology).arg(dir.path().join("node")).output().unwrap();
        assert!(out.status.success(), "fake-node failed: {}", String::from_utf8_lossy(&out.stderr));
        let w = World { dir };
        fs::create_dir_all(w.fake_dir()).unwrap();
        fs::write(w.fake_runc(), FAKE_RUNC).unwrap();
        fs::set_permissions(w.fake_runc(), fs::Permissions::from_mode(0o755)).unwrap();
        w.set_runtime(&w.fake_runc());
        fs::create_dir_all(w.bundle()).unwrap();
        w
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    fn fake_dir(&self) -> PathBuf {
        self.path("fake")
    }
    fn fake_runc(&self) -> PathBuf {
        self.path("fake/fake-runc")
    }
    fn config(&self) -> PathBuf {
        self.path("mighook.toml")
    }
    fn bundle(&self) -> PathBuf {
        self.path("bundle")
    }
    fn config_json(&self) -> PathBuf {
        self.bundle().join("config.json")
    }

    /// `annotation-prefixes = ["cdi.k8s.io/"]` in the config (annotations are opt-in).
    fn enable_annotations(&self) {
        let mut text = fs::read_to_string(self.config()).unwrap();
        text.push_str("annotation-prefixes = [\"cdi.k8s.io/\"]\n");
        fs::write(self.config(), text).unwrap();
    }

    fn set_runtime(&self, runtime: &Path) {
        fs::write(self.config(), format!("low-level-runtime = {:?}\n", runtime.to_str().unwrap())).unwrap();
    }

    fn write_spec(&self, spec: &Value) -> Vec<u8> {
        let text = serde_json::to_vec(spec).unwrap();
        fs::write(self.config_json(), &text).unwrap();
        text
    }

    fn global_args(&self) -> Vec<String> {
        let s = |p: PathBuf| p.to_str().unwrap().to_string();
        vec![
            "--config".into(),
            s(self.config()),
            "--nvml-lib".into(),
            s(self.path("node/libnvidia-ml.so.1")),
            "--proc-root".into(),
            s(self.path("node/proc")),
        ]
    }

    /// `mighook <global flags> runtime ARGS` in `cwd`.
    fn shim_in(&self, cwd: &Path, args: &[&str]) -> Output {
        let mut cmd = Command::new(support::mighook_bin());
        cmd.args(self.global_args()).arg("runtime").args(args).current_dir(cwd);
        cmd.env_remove("MIGHOOK_CONFIG").env_remove("MIGHOOK_NVML_LIB").env_remove("MIGHOOK_PROC_ROOT");
        cmd.output().unwrap()
    }

    fn shim(&self, args: &[&str]) -> Output {
        self.shim_in(self.dir.path(), args)
    }

    /// What the fake runtime got as argv; `None` when it never ran.
    fn runtime_argv(&self) -> Option<Vec<String>> {
        let text = fs::read_to_string(self.fake_dir().join("argv")).ok()?;
        Some(text.lines().map(str::to_string).collect())
    }

    /// The config.json the fake runtime saw.
    fn seen_spec(&self) -> Value {
        serde_json::from_slice(
            &fs::read(self.fake_dir().join("seen-config.json")).expect("fake runtime saw no config.json"),
        )
        .unwrap()
    }

    fn spec(&self) -> Value {
        serde_json::from_slice(&fs::read(self.config_json()).unwrap()).unwrap()
    }

    fn bundle_str(&self) -> String {
        self.bundle().to_str().unwrap().to_string()
    }
}

fn ok(out: &Output) {
    assert!(out.status.success(), "shim failed: {}\nstderr: {}", out.status, String::from_utf8_lossy(&out.stderr));
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// A docker-shaped config.json: unknown fields, odd values, docker's `--gpus` hook and its own.
fn docker_spec(env: &[&str]) -> Value {
    let mut process_env =
        vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOSTNAME=3ea2086cc590"];
    process_env.extend(env);
    json!({
        "ociVersion": "1.0.2-dev",
        "process": {"user": {"uid": 0, "gid": 0}, "args": ["sh"], "env": process_env, "cwd": "/", "noNewPrivileges": true,
                    "capabilities": {"bounding": ["CAP_CHOWN", "CAP_KILL"], "effective": ["CAP_CHOWN"]}},
        "root": {"path": "/var/lib/docker/overlay2/abc/merged"},
        "hostname": "3ea2086cc590",
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}],
        "hooks": {"prestart": [
            {"path": "/usr/bin/nvidia-container-runtime-hook", "args": ["nvidia-container-runtime-hook", "prestart"], "env": ["A=b"]},
            {"path": "/proc/29629/exe", "args": ["libnetwork-setkey", "-exec-root=/var/run/docker", "3ea2086cc590", "c9e1"]}
        ]},
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}],
                          "memory": {"limit": 9223372036854771712_i64, "swappiness": 18446744073709551615_u64}, "blkioWeight": 0},
            "cgroupsPath": "/docker/3ea2086cc590",
            "namespaces": [{"type": "mount"}, {"type": "network", "path": "/var/run/docker/netns/x"}],
            "maskedPaths": ["/proc/kcore", "/proc/keys"],
            "devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 438, "uid": 0, "gid": 0}],
            "x-vendor": {"nested": [1, 2.5, -3, null, true, "é ✓ \u{1F600}"]}
        },
        "annotations": {"org.opencontainers.image.ref.name": "ubuntu", "com.example/weird": "a&b<c>"},
        "x-top-unknown": {"keep": "me"}
    })
}

fn docker_create(w: &World, id: &str) -> Vec<String> {
    let b = w.bundle_str();
    let mut args = strings(&[
        "--root",
        "/run/docker/runtime-runc/moby",
        "--log",
        &format!("{b}/log.json"),
        "--log-format",
        "json",
        "create",
        "--bundle",
    ]);
    args.extend(strings(&[&b, "--pid-file", &format!("{b}/init.pid"), id]));
    args
}

fn devices(spec: &Value) -> Vec<(String, u64, u64)> {
    let list = spec["linux"]["devices"].as_array().unwrap();
    list.iter()
        .map(|d| (d["path"].as_str().unwrap().to_string(), d["major"].as_u64().unwrap(), d["minor"].as_u64().unwrap()))
        .collect()
}

fn expected_devices_after(before: &Value) -> Vec<(String, u64, u64)> {
    let mut want = devices(before);
    want.extend(MIG_0_1_NODES.iter().map(|(p, maj, min)| (p.to_string(), *maj as u64, *min as u64)));
    want
}

fn expected_rules_after(before: &Value) -> Vec<Value> {
    let mut want = before["linux"]["resources"]["devices"].as_array().unwrap().clone();
    let mut numbers: Vec<(u32, u32)> = MIG_0_1_NODES.iter().map(|(_, maj, min)| (*maj, *min)).collect();
    numbers.sort();
    want.extend(
        numbers
            .iter()
            .map(|(maj, min)| json!({"allow": true, "type": "c", "major": maj, "minor": min, "access": "rw"})),
    );
    want
}

// ---------------------------------------------------------------------------
// create / run: the edits

#[test]
fn create_with_mig_0_1_adds_exactly_the_six_nodes_and_rules() {
    let w = World::new();
    let before = docker_spec(&["NVIDIA_VISIBLE_DEVICES=0:1"]);
    w.write_spec(&before);
    let args = docker_create(&w, "c1");
    ok(&w.shim(&args.iter().map(String::as_str).collect::<Vec<_>>()));
    let after = w.spec();
    assert_eq!(devices(&after), expected_devices_after(&before));
    assert_eq!(after["linux"]["resources"]["devices"].as_array().unwrap(), &expected_rules_after(&before));
    for d in &after["linux"]["devices"].as_array().unwrap()[1..] {
        assert_eq!((d["type"].as_str(), d["uid"].as_u64(), d["gid"].as_u64()), (Some("c"), Some(0), Some(0)), "{d}");
    }
    assert_eq!(after["linux"]["devices"][1]["fileMode"], 0o444, "MIG caps keep the driver's read-only mode");
    assert_eq!(after["linux"]["devices"][5]["fileMode"], 0o666);
}

#[test]
fn gpu_nodes_in_the_spec_have_the_drivers_owner_and_mode() {
    let w = World::new();
    // The driver loaded with NVreg_DeviceFileGID=44 NVreg_DeviceFileMode=0660.
    let params = w.path("node/proc/driver/nvidia/params");
    let text = fs::read_to_string(&params).unwrap().replace("DeviceFileGID: 0", "DeviceFileGID: 44");
    let _ = fs::remove_file(&params);
    fs::write(&params, text.replace("DeviceFileMode: 438", "DeviceFileMode: 432")).unwrap();
    w.write_spec(&docker_spec(&["NVIDIA_VISIBLE_DEVICES=0:1"]));
    ok(&w.shim(&docker_create(&w, "c1").iter().map(String::as_str).collect::<Vec<_>>()));
    let after = w.spec();
    let owners: Vec<String> = after["linux"]["devices"].as_array().unwrap()[1..]
        .iter()
        .map(|d| {
            format!("{} {}:{} {:o}", d["path"].as_str().unwrap(), d["uid"], d["gid"], d["fileMode"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(
        owners,
        [
            "/dev/nvidia-caps/nvidia-cap345 0:0 444",
            "/dev/nvidia-caps/nvidia-cap346 0:0 444",
            "/dev/nvidia-uvm 0:0 666",
            "/dev/nvidia-uvm-tools 0:0 666",
            "/dev/nvidia2 0:44 660",
            "/dev/nvidiactl 0:44 660",
        ]
    );
}

#[test]
fn the_runtime_gets_the_original_argv_and_the_edited_spec() {
    let w = World::new();
    w.write_spec(&docker_spec(&["NVIDIA_VISIBLE_DEVICES=0:1"]));
    let args = docker_create(&w, "c2");
    ok(&w.shim(&args.iter().map(String::as_str).collect::<Vec<_>>()));
    assert_eq!(w.runtime_argv().unwrap(), args);
    assert_eq!(w.seen_spec(), w.spec(), "edited before the exec, not after");
    assert_eq!(devices(&w.seen_spec()).len(), 7);
}

#[test]
fn every_field_mighook_does_not_own_survives() {
    let w = World::new();
    let before = docker_spec(&["NVIDIA_VISIBLE_DEVICES=0:1"]);
    let text = w.write_spec(&before);
    let args = docker_create(&w, "c3");
    ok(&w.shim(&args.iter().map(String::as_str).collect::<Vec<_>>()));
    let after = w.spec();
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&after), keys(&before), "top-level key order");
    assert_eq!(keys(&after["linux"]), keys(&before["linux"]), "linux key order");
    assert_eq!(keys(&after["linux"]["resources"]), keys(&before["linux"]["resources"]));
    for (k, v) in before.as_object().unwrap() {
        if k != "linux" && k != "hooks" {
            assert_eq!(&after[k], v, "top-level {k}");
        }
    }
    for (k, v) in before["linux"].as_object().unwrap() {
        if k != "devices" && k != "resources" {
            assert_eq!(&after["linux"][k], v, "linux.{k}");
        }
    }
    assert_eq!(after["linux"]["resources"]["memory"], before["linux"]["resources"]["memory"]);
    assert_eq!(after["linux"]["resources"]["blkioWeight"], 0);
    assert_eq!(after["process"], before["process"], "process.env is left as the engine wrote it");
    // Byte level: the input was compact JSON, so each untouched value is the same bytes in the output.
    let out = fs::read_to_string(w.config_json()).unwrap();
    for k in ["process", "root", "mounts", "annotations", "x-top-unknown"] {
        let piece = format!("\"{k}\":{}", serde_json::to_string(&before[k]).unwrap());
        assert!(String::from_utf8_lossy(&text).contains(&piece));
        assert!(out.contains(&piece), "{k} is not byte-identical");
    }
}

#[test]
fn dockers_gpus_hook_is_removed_and_its_network_hook_kept() {
    let w = World::new();
    w.write_spec(&docker_spec(&["NVIDIA_VISIBLE_DEVICES=0:1"]));
    let args = docker_create(&w, "c4");
    ok(&w.shim(&args.iter().map(String::as_str).collect::<Vec<_>>()));
    let hooks = w.spec()["hooks"]["prestart"].clone();
    assert_eq!(hooks[0], docker_spec(&[])["hooks"]["prestart"][1]);
    // The one mighook adds: the node has a /proc/driver/nvidia to mask.
    assert!(hooks[1]["args"].as_array().unwrap().contains(&json!("proc-mask")), "{hooks}");
    assert_eq!(hooks.as_array().unwrap().len(), 2);
}

#[test]
fn a_cdi_annotation_names_the_device() {
    let w = World::new();
    w.enable_annotations();
    let mut before = docker_spec(&[]);
    before["annotations"]["cdi.k8s.io/x"] = json!(format!("nvidia.com/gpu={MIG_0_1_UUID}"));
    w.write_spec(&before);
    let args = docker_create(&w, "c5");
    ok(&w.shim(&args.iter().map(String::as_str).collect::<Vec<_>>()));
    assert_eq!(devices(&w.spec()), expected_devices_after(&before));
    assert_eq!(w.spec()["annotations"], before["annotations"]);
}

/// Annotations are a request channel only when the admin enables one: by default a
/// `cdi.k8s.io/` annotation names nothing and config.json is left as it was.
#[test]
fn annotations_are_ignored_unless_enabled() {
    let w = World::new();
    let mut before = docker_spec(&[]);
    before["annotations"]["cdi.k8s.io/x"] = json!("nvidia.com/gpu=0:1");
    let written = w.write_spec(&before);
    ok(&w.shim(&["create", "--bundle", &w.bundle_str(), "c19"]));
    assert_eq!(fs::read(w.config_json()).unwrap(), written);
}

/// The device plugin's cdi-annotations strategy: its own kind, a random key per response.
#[test]
fn the_device_plugins_annotation_kind_names_the_device() {
    let w = World::new();
    w.enable_annotations();
    let mut before = docker_spec(&[]);
    before["annotations"]["cdi.k8s.io/nvidia-device-plugin_5b2e7a1c-1f0e-4b8e-9a55-0c1d2e3f4a5b"] =
        json!(format!("k8s.device-plugin.nvidia.com/gpu={MIG_0_1_UUID}"));
    w.write_spec(&before);
    ok(&w.shim(&["create", "--bundle", &w.bundle_str(), "c20"]));
    assert_eq!(devices(&w.spec()), expected_devices_after(&before));
}

/// The device plugin's other NVIDIA kinds (GDS, MOFED) are the engine's: its own spec serves
/// them. The GPU name next to one still selects exactly its device.
#[test]
fn an_nvidia_annotation_kind_other_than_gpu_is_left_to_the_engine() {
    let w = World::new();
    w.enable_annotations();
    let mut before = docker_spec(&[]);
    before["annotations"]["cdi.k8s.io/x"] =
        json!(format!("k8s.device-plugin.nvidia.com/gds=all,k8s.device-plugin.nvidia.com/gpu={MIG_0_1_UUID}"));
    w.write_spec(&before);
    ok(&w.shim(&["create", "--bundle", &w.bundle_str(), "c21"]));
    assert_eq!(devices(&w.spec()), expected_devices_after(&before));
}

/// A GPU kind's name mighook cannot resolve is refused by name, never silently granted nothing.
#[test]
fn a_gpu_annotation_name_mighook_cannot_resolve_refuses_the_start() {
    let w = World::new();
    w.enable_annotations();
    let mut before = docker_spec(&[]);
    before["annotations"]["cdi.k8s.io/x"] = json!("k8s.device-plugin.nvidia.com/gpu=MIG-not-a-uuid");
    w.write_spec(&before);
    let before = mtime_and_bytes(&w.config_json());
    let out = w.shim(&["create", "--bundle", &w.bundle_str(), "c22"]);
    assert_refused(&w, &out, &before, "mighook: k8s.device-plugin.nvidia.com/gpu=MIG-not-a-uuid: malformed MIG UUID");
}

#[test]
fn annotations_win_over_the_image_env() {
    let w = World::new();
    w.enable_annotations();
    let mut before = docker_spec(&["NVIDIA_VISIBLE_DEVICES=all"]);
    before["annotations"]["cdi.k8s.io/x"] = json!("nvidia.com/gpu=0:1");
    w.write_spec(&before);
    ok(&w.shim(&["create", "--bundle", &w.bundle_str(), "c6"]));
    assert_eq!(devices(&w.spec()), expected_devices_after(&before));
}

#[test]
fn run_is_edited_like_create() {
    let w = World::new();
    let before = docker_spec(&["NVIDIA_VISIBLE_DEVICES=0:1"]);
    w.write_spec(&before);
    ok(&w.shim(&["--root", "/r", "run", "-d", "--bundle", &w.bundle_str(), "c7"]));
    assert_eq!(devices(&w.spec()), expected_devices_after(&before));
}

// ---------------------------------------------------------------------------
// Bundle forms

#[test]
fn bundle_equals_form() {
    let w = World::new();
    let before = docker_spec(&["NVIDIA_VISIBLE_DEVICES=0:1"]);
    w.write_spec(&before);
    let flag = format!("--bundle={}", w.bundle_str());
    ok(&w.shim(&["--root", "/r", "create", &flag, "c8"]));
    assert_eq!(devices(&w.spec()), expected_devices_after(&before));
    assert_eq!(w.runtime_argv().unwrap(), strings(&["--root", "/r", "create", &flag, "c8"]));
}

#[test]
fn short_b_form() {
    let w = World::new();
    let before = docker_spec(&["NVIDIA_VISIBLE_DEVICES=0:1"]);
    w.write_spec(&before);
    ok(&w.shim(&["create", "-b", &w.bundle_str(), "c9"]));
    assert_eq!(devices(&w.spec()), expected_devices_after(&before));
}

#[test]
fn no_bundle_flag_means_the_current_directory() {
    let w = World::new();
    let before = docker_spec(&["NVIDIA_VISIBLE_DEVICES=0:1"]);
    w.write_spec(&before);
    ok(&w.shim_in(&w.bundle(), &["create", "c10"]));
    assert_eq!(devices(&w.spec()), expected_devices_after(&before));
    assert_eq!(fs::read_to_string(w.fake_dir().join("cwd")).unwrap().trim(), w.bundle_str());
}

// ---------------------------------------------------------------------------
// Pass-through

fn mtime_and_bytes(p: &Path) -> (i64, i64, Vec<u8>) {
    let m = fs::metadata(p).unwrap();
    (m.mtime(), m.mtime_nsec(), fs::read(p).unwrap())
}

#[test]
fn other_subcommands_pass_through_without_touching_config_json() {
    let w = World::new();
    w.write_spec(&docker_spec(&["NVIDIA_VISIBLE_DEVICES=0:1"]));
    let before = mtime_and_bytes(&w.config_json());
    for sub in [
        &["start", "c11"][..],
        &["delete", "c11"],
        &["delete", "--force", "c11"],
        &["state", "c11"],
        &["kill", "c11", "9"],
    ] {
        let mut args =
            strings(&["--root", "/run/containerd/runc/k8s.io", "--log", "/b/log.json", "--log-format", "json"]);
        args.extend(strings(sub));
        ok(&w.shim_in(&w.bundle(), &args.iter().map(String::as_str).collect::<Vec<_>>()));
        assert_eq!(w.runtime_argv().unwrap(), args, "{sub:?}");
        assert_eq!(mtime_and_bytes(&w.config_json()), before, "{sub:?} touched config.json");
    }
}

#[test]
fn a_container_asking_for_nothing_keeps_its_config_json() {
    let w = World::new();
    w.write_spec(&docker_spec(&["NVIDIA_VISIBLE_DEVICES=void"]));
    let before = mtime_and_bytes(&w.config_json());
    ok(&w.shim(&["create", "--bundle", &w.bundle_str(), "c12"]));
    assert_eq!(mtime_and_bytes(&w.config_json()), before);
    assert!(w.runtime_argv().is_some());
}

#[test]
fn version_passes_through() {
    let w = World::new();
    ok(&w.shim(&["--version"]));
    assert_eq!(w.runtime_argv().unwrap(), ["--version"]);
}

// ---------------------------------------------------------------------------
// Errors: one line, nothing exec'd, config.json unchanged

fn assert_refused(w: &World, out: &Output, before: &(i64, i64, Vec<u8>), prefix: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "must fail: {stderr}");
    assert!(stderr.starts_with(prefix), "stderr {stderr:?} must start with {prefix:?}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert_eq!(mtime_and_bytes(&w.config_json()), *before, "config.json changed");
    assert_eq!(w.runtime_argv(), None, "the low-level runtime must not run");
}

#[test]
fn a_bad_entry_fails_and_changes_nothing() {
    let w = World::new();
    w.write_spec(&docker_spec(&["NVIDIA_VISIBLE_DEVICES=0:99"]));
    let before = mtime_and_bytes(&w.config_json());
    let args = docker_create(&w, "c13");
    let out = w.shim(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_refused(&w, &out, &before, "mighook: 0:99: ");
    // containerd's runc shim shows the last error of the --log file, not stderr.
    let log = fs::read_to_string(w.bundle().join("log.json")).unwrap();
    let entry: Value = serde_json::from_str(log.trim_end()).unwrap();
    assert_eq!(entry["level"], "error");
    assert_eq!(entry["msg"].as_str().unwrap(), String::from_utf8_lossy(&out.stderr).trim_end());
}

#[test]
fn a_config_json_of_the_wrong_shape_fails_and_changes_nothing() {
    let w = World::new();
    let mut spec = docker_spec(&["NVIDIA_VISIBLE_DEVICES=0:1"]);
    spec["linux"]["devices"] = json!({"not": "a list"});
    w.write_spec(&spec);
    let before = mtime_and_bytes(&w.config_json());
    let out = w.shim(&["create", "--bundle", &w.bundle_str(), "c14"]);
    assert_refused(&w, &out, &before, "mighook: config.json: /linux/devices is not an array");
}

#[test]
fn a_missing_config_json_fails_before_the_runtime() {
    let w = World::new();
    let out = w.shim(&["create", "--bundle", &w.bundle_str(), "c15"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("mighook: cannot open "));
    assert_eq!(w.runtime_argv(), None);
}

#[test]
fn a_low_level_runtime_that_is_mighook_is_refused() {
    let w = World::new();
    let link = w.path("fake/nvidia-container-runtime");
    std::os::unix::fs::symlink(support::mighook_bin(), &link).unwrap();
    w.set_runtime(&link);
    w.write_spec(&docker_spec(&["NVIDIA_VISIBLE_DEVICES=0:1"]));
    let before = mtime_and_bytes(&w.config_json());
    let out = w.shim(&["create", "--bundle", &w.bundle_str(), "c16"]);
    assert_refused(&w, &out, &before, "mighook: low-level-runtime ");
    assert!(String::from_utf8_lossy(&out.stderr).contains("which is mighook itself"));
}

// ---------------------------------------------------------------------------
// argv0 `nvidia-container-runtime`, settings from mighook's own environment

#[test]
fn called_as_nvidia_container_runtime_with_settings_from_env() {
    let w = World::new();
    let before = docker_spec(&["NVIDIA_VISIBLE_DEVICES=0:1"]);
    w.write_spec(&before);
    let link = w.path("nvidia-container-runtime");
    std::os::unix::fs::symlink(support::mighook_bin(), &link).unwrap();
    let args = docker_create(&w, "c17");
    let out = Command::new(&link)
        .args(&args)
        .env("MIGHOOK_CONFIG", w.config())
        .env("MIGHOOK_NVML_LIB", w.path("node/libnvidia-ml.so.1"))
        .env("MIGHOOK_PROC_ROOT", w.path("node/proc"))
        .output()
        .unwrap();
    ok(&out);
    assert_eq!(w.runtime_argv().unwrap(), args);
    assert_eq!(devices(&w.spec()), expected_devices_after(&before));
}

// ---------------------------------------------------------------------------
// Real runc: the edited bundle runs, the GPU hook docker inserted is gone, and
// the devices cgroup allows exactly the six nodes (ENXIO, not EPERM).

#[test]
fn real_runc_runs_the_edited_bundle() {
    if !support::require_root_and(&["runc", "gcc", "busybox", "timeout"]) {
        return;
    }
    let w = World::new();
    w.set_runtime(&support::tool("runc"));
    let mut probe: Vec<String> = vec!["ls:/dev/nvidia-caps".into()];
    probe.extend(MIG_0_1_NODES.iter().map(|(p, _, _)| p.to_string()));
    probe.extend(["mknod:/dev/nb-gpu0:195:0:0666".to_string(), "mknod:/dev/nb-cap347:508:347:0444".to_string()]);
    let probe: Vec<&str> = probe.iter().map(String::as_str).collect();
    // A GPU hook that fails: if the shim left it in, the container could not start.
    let bundle = support::Bundle::probe(&["NVIDIA_VISIBLE_DEVICES=0:1"], &probe).with_prestart_hook(
        Path::new("/bin/false"),
        &["nvidia-container-runtime-hook", "prestart"],
        &[],
    );
    let state = bundle.state_dir("runc");
    let b = bundle.path().to_str().unwrap();
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "5", "60"]).arg(support::mighook_bin()).args(w.global_args());
    cmd.arg("runtime").arg("--root").arg(&state).args(["run", "--bundle", b, &bundle.id]).current_dir(bundle.path());
    let out = cmd.output().unwrap();
    // `run` deletes the container; this only cleans up after a failure.
    let _ = Command::new(support::tool("runc")).arg("--root").arg(&state).args(["delete", "-f", &bundle.id]).output();
    assert!(out.status.success(), "run through the shim failed\n{}", support::runtime::describe(&out));
    let p = support::ProbeOutput::parse(&String::from_utf8_lossy(&out.stdout));
    for (path, major, minor) in MIG_0_1_NODES {
        assert_eq!(p.summary_of(path), format!("c {major}:{minor} errno=6"), "{path} must exist and be allowed");
    }
    assert_eq!(p.summary_of("/dev/nb-gpu0"), "c 195:0 errno=1", "another GPU stays denied");
    assert_eq!(p.summary_of("/dev/nb-cap347"), "c 508:347 errno=1", "another MIG cap stays denied");
    assert_eq!(p.ls("/dev/nvidia-caps"), ["nvidia-cap345", "nvidia-cap346"]);
    let spec: Value = serde_json::from_slice(&fs::read(bundle.path().join("config.json")).unwrap()).unwrap();
    let hooks = spec["hooks"]["prestart"].as_array().unwrap();
    assert!(hooks.iter().all(|h| h["path"] != "/bin/false"), "the failing GPU hook was removed");
}

/// An own `MIGHOOK_*` value the container's env also carries: a runtime handed the shim the
/// container's environment. Neither trusted nor dropped for the config file's: refused.
#[test]
fn an_own_env_value_the_container_also_carries_refuses_the_start() {
    let w = World::new();
    // The config file has a proc root; the env points elsewhere, as does the container's.
    fs::write(
        w.config(),
        format!(
            "low-level-runtime = {:?}\nproc-root = {:?}\n",
            w.fake_runc().to_str().unwrap(),
            w.path("node/proc").to_str().unwrap()
        ),
    )
    .unwrap();
    w.write_spec(&docker_spec(&["NVIDIA_VISIBLE_DEVICES=0:1", "MIGHOOK_PROC_ROOT=/nonexistent-evil"]));
    let before = mtime_and_bytes(&w.config_json());
    let out = Command::new(support::mighook_bin())
        .args([
            "--config",
            w.config().to_str().unwrap(),
            "--nvml-lib",
            w.path("node/libnvidia-ml.so.1").to_str().unwrap(),
        ])
        .args(["runtime", "create", "--bundle", &w.bundle_str(), "c18"])
        .env("MIGHOOK_PROC_ROOT", "/nonexistent-evil")
        .env_remove("MIGHOOK_CONFIG")
        .output()
        .unwrap();
    assert_refused(
        &w,
        &out,
        &before,
        "mighook: MIGHOOK_PROC_ROOT of mighook's own environment is also in the container's",
    );
}
