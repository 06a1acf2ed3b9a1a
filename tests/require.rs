//! Image requirements (`NVIDIA_REQUIRE_*`, `NVIDIA_DISABLE_REQUIRE`, legacy
//! `CUDA_VERSION` images) through the real NVML loading path: the fake
//! libnvidia-ml.so.1 answers the CUDA version, driver version, brand and compute
//! capability of a simulated node, and `mighook resolve`, the runtime shim (with a
//! recording fake low-level runtime) and the prestart hook act on them. Real runc
//! runs last, as root, under the shared e2e lock.
//!
//! `a100x8`: driver 550.54.15, CUDA 12.4, A100s of brand NVIDIA, compute capability
//! 8.0. `h100x4-nomig`: driver 550.90.07, CUDA 12.4, four H100s (9.0), MIG off.

mod support;

use serde_json::{Value, json};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use support::{Bundle, Runtime, SimNode};

fn mighook(node: &SimNode, args: &[&str]) -> Output {
    let mut cmd = Command::new(support::mighook_bin());
    cmd.args(node.mighook_args()).args(args);
    cmd.env_remove("MIGHOOK_CONFIG").env_remove("MIGHOOK_NVML_LIB").env_remove("MIGHOOK_PROC_ROOT");
    cmd.output().expect("run mighook")
}

/// `mighook resolve --image-env V... DEVICES`: `Ok(stdout)` or `Err(the one stderr line)`.
fn resolve(node: &SimNode, image_env: &[&str], devices: &str) -> Result<String, String> {
    let mut args = vec!["resolve"];
    for kv in image_env {
        args.extend(["--image-env", kv]);
    }
    args.push(devices);
    let out = mighook(node, &args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty(), "a refusal prints nothing on stdout");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    Err(stderr.trim_end().to_string())
}

/// A CUDA 12.4 image's NVIDIA_REQUIRE_CUDA as NVIDIA's images carry it (two driver branches).
const CUDA_12_4: &str = "NVIDIA_REQUIRE_CUDA=cuda>=12.4 brand=tesla,driver>=470,driver<471 \
    brand=unknown,driver>=470,driver<471 brand=nvidia,driver>=470,driver<471 brand=nvidia,driver>=535,driver<536 \
    brand=geforce,driver>=535,driver<536";

#[test]
fn the_cuda_version_of_the_fake_driver_decides() {
    let node = SimNode::new("a100x8");
    assert!(resolve(&node, &["NVIDIA_REQUIRE_CUDA=cuda>=12.4"], "0").is_ok());
    assert_eq!(
        resolve(&node, &["NVIDIA_REQUIRE_CUDA=cuda>=12.6"], "0"),
        Err("mighook: requirement cuda>=12.6 not met: the driver supports CUDA 12.4 (NVIDIA_REQUIRE_CUDA)".into())
    );
    node.edit_topology(|t| t["cudaDriverVersion"] = json!(12060));
    assert!(resolve(&node, &["NVIDIA_REQUIRE_CUDA=cuda>=12.6"], "0").is_ok());
}

#[test]
fn an_older_driver_passes_by_its_brand_and_branch_alternative() {
    let node = SimNode::new("a100x8");
    node.edit_topology(|t| {
        t["cudaDriverVersion"] = json!(12020);
        t["driverVersion"] = json!("535.104.05");
    });
    assert!(resolve(&node, &[CUDA_12_4], "0:1").is_ok(), "brand=nvidia,driver>=535,driver<536 holds");
    node.edit_topology(|t| t["gpus"][0]["brand"] = json!("quadro"));
    assert_eq!(
        resolve(&node, &[CUDA_12_4], "0:1"),
        Err("mighook: requirement cuda>=12.4 not met: the driver supports CUDA 12.2 (NVIDIA_REQUIRE_CUDA, none of its 6 alternatives holds)".into()),
        "a MIG device is checked as its parent GPU 0"
    );
    assert!(resolve(&node, &[CUDA_12_4], "2").is_ok(), "GPU 2 is still brand NVIDIA");
    assert!(resolve(&node, &[CUDA_12_4], "2,0").is_err(), "every selected GPU must pass");
}

#[test]
fn brand_arch_and_driver_terms_read_the_fake_nvml() {
    let node = SimNode::new("h100x4-nomig");
    assert!(resolve(&node, &["NVIDIA_REQUIRE_ARCH=arch>=9.0"], "all").is_ok());
    assert_eq!(
        resolve(&node, &["NVIDIA_REQUIRE_ARCH=arch<9"], "3"),
        Err("mighook: requirement arch<9 not met: GPU 3 has compute capability 9.0 (NVIDIA_REQUIRE_ARCH)".into())
    );
    assert_eq!(
        resolve(&node, &["NVIDIA_REQUIRE_BRAND=brand=tesla"], "1"),
        Err("mighook: requirement brand=tesla not met: GPU 1 is of brand Nvidia (NVIDIA_REQUIRE_BRAND)".into())
    );
    node.edit_topology(|t| t["gpus"][1]["brand"] = json!("tesla"));
    assert!(resolve(&node, &["NVIDIA_REQUIRE_BRAND=brand=TESLA"], "1").is_ok());
    assert_eq!(
        resolve(&node, &["NVIDIA_REQUIRE_DRIVER=driver>=555"], "0"),
        Err("mighook: requirement driver>=555 not met: the driver is version 550.90.07 (NVIDIA_REQUIRE_DRIVER)".into())
    );
    // `none`: no GPU, so brand and arch hold and only cuda and driver are checked.
    assert!(resolve(&node, &["NVIDIA_REQUIRE_X=brand=geforce,arch=5.0"], "none").is_ok());
}

#[test]
fn disable_require_legacy_images_and_parse_errors_on_the_cli() {
    let node = SimNode::new("a100x8");
    assert!(resolve(&node, &["NVIDIA_REQUIRE_CUDA=cuda>=13.0", "NVIDIA_DISABLE_REQUIRE=true"], "0").is_ok());
    assert_eq!(
        resolve(&node, &["CUDA_VERSION=12.6.2"], "0"),
        Err("mighook: requirement cuda>=12.6 not met: the driver supports CUDA 12.4 (CUDA_VERSION=12.6.2 of an image without NVIDIA_REQUIRE_CUDA)".into())
    );
    assert!(resolve(&node, &["CUDA_VERSION=12.2.2"], "0").is_ok());
    assert_eq!(
        resolve(&node, &["NVIDIA_REQUIRE_CUDA=cuda>=12.4,brnd=tesla"], "0"),
        Err("mighook: NVIDIA_REQUIRE_CUDA: brnd=tesla: unknown rule 'brnd' (known: cuda, driver, arch, brand)".into())
    );
    assert_eq!(
        resolve(&node, &["PATH=/bin"], "0"),
        Err("mighook: --image-env PATH=/bin: not NVIDIA_REQUIRE_*=..., NVIDIA_DISABLE_REQUIRE=... or CUDA_VERSION=..."
            .into())
    );
}

// ---------------------------------------------------------------------------
// The runtime shim and the prestart hook read the requirements from config.json.

/// Records its argv; the shim execs it when the start goes ahead.
const FAKE_RUNC: &str = "#!/bin/sh\nprintf '%s\\n' \"$@\" > \"$(dirname \"$0\")/argv\"\nexit 0\n";

struct Shim {
    dir: tempfile::TempDir,
}

impl Shim {
    fn new() -> Shim {
        let dir = tempfile::Builder::new().prefix("mighook-require").tempdir().unwrap();
        let runc = dir.path().join("fake-runc");
        fs::write(&runc, FAKE_RUNC).unwrap();
        fs::set_permissions(&runc, fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(dir.path().join("mighook.toml"), format!("low-level-runtime = {:?}\n", runc.to_str().unwrap()))
            .unwrap();
        fs::create_dir(dir.path().join("bundle")).unwrap();
        Shim { dir }
    }

    fn bundle(&self) -> PathBuf {
        self.dir.path().join("bundle")
    }

    fn write_spec(&self, env: &[&str]) -> Vec<u8> {
        let spec = json!({
            "ociVersion": "1.0.2", "root": {"path": "rootfs"},
            "process": {"args": ["sh"], "env": env, "capabilities": {"bounding": ["CAP_KILL"]}},
            "linux": {"resources": {"devices": [{"allow": false, "access": "rwm"}]}}
        });
        let text = serde_json::to_vec(&spec).unwrap();
        fs::write(self.bundle().join("config.json"), &text).unwrap();
        text
    }

    fn global(&self, node: &SimNode) -> Vec<String> {
        let mut args = node.mighook_args();
        args.extend(["--config".into(), self.dir.path().join("mighook.toml").to_str().unwrap().into()]);
        args
    }

    /// `mighook runtime create --bundle B c1`.
    fn create(&self, node: &SimNode) -> Output {
        let mut cmd = Command::new(support::mighook_bin());
        cmd.args(self.global(node)).args(["runtime", "create", "--bundle", self.bundle().to_str().unwrap(), "c1"]);
        cmd.env_remove("MIGHOOK_CONFIG").env_remove("MIGHOOK_NVML_LIB").env_remove("MIGHOOK_PROC_ROOT");
        cmd.output().unwrap()
    }

    /// `mighook prestart` with a state naming the bundle (pid 1 is never touched: the
    /// requirement check comes before anything is applied).
    fn prestart(&self, node: &SimNode) -> Output {
        use std::io::Write;
        let mut cmd = Command::new(support::mighook_bin());
        cmd.args(self.global(node)).arg("prestart");
        cmd.env_remove("MIGHOOK_CONFIG").env_remove("MIGHOOK_NVML_LIB").env_remove("MIGHOOK_PROC_ROOT");
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let state = json!({"ociVersion": "1.0.2", "id": "c1", "status": "creating", "pid": 1, "bundle": self.bundle()});
        child.stdin.take().unwrap().write_all(state.to_string().as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }

    fn ran_runtime(&self) -> bool {
        self.dir.path().join("argv").exists()
    }

    fn spec_devices(&self) -> Vec<String> {
        let spec: Value = serde_json::from_slice(&fs::read(self.bundle().join("config.json")).unwrap()).unwrap();
        let devices = spec["linux"]["devices"].as_array().cloned().unwrap_or_default();
        devices.iter().map(|d| d["path"].as_str().unwrap().to_string()).collect()
    }
}

fn stderr_line(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    stderr.trim_end().to_string()
}

#[test]
fn the_shim_refuses_an_unmet_requirement_and_changes_nothing() {
    let node = SimNode::new("a100x8");
    let shim = Shim::new();
    let before = shim.write_spec(&["NVIDIA_VISIBLE_DEVICES=0:1", "NVIDIA_REQUIRE_CUDA=cuda>=12.6"]);
    let out = shim.create(&node);
    assert!(!out.status.success());
    assert_eq!(
        stderr_line(&out),
        "mighook: requirement cuda>=12.6 not met: the driver supports CUDA 12.4 (NVIDIA_REQUIRE_CUDA)"
    );
    assert!(!shim.ran_runtime(), "the low-level runtime must not run");
    assert_eq!(fs::read(shim.bundle().join("config.json")).unwrap(), before, "config.json unchanged");
}

#[test]
fn the_shim_skips_requirements_when_disabled() {
    let node = SimNode::new("a100x8");
    let shim = Shim::new();
    shim.write_spec(&["NVIDIA_VISIBLE_DEVICES=0:1", "NVIDIA_REQUIRE_CUDA=cuda>=12.6", "NVIDIA_DISABLE_REQUIRE=1"]);
    let out = shim.create(&node);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(shim.ran_runtime());
    assert!(shim.spec_devices().contains(&"/dev/nvidia2".to_string()), "{:?}", shim.spec_devices());
}

#[test]
fn the_admins_disable_require_skips_requirements() {
    let node = SimNode::new("a100x8");
    let shim = Shim::new();
    let config = shim.dir.path().join("mighook.toml");
    let mut text = fs::read_to_string(&config).unwrap();
    text.push_str("disable-require = true\n");
    fs::write(&config, text).unwrap();
    shim.write_spec(&["NVIDIA_VISIBLE_DEVICES=0:1", "NVIDIA_REQUIRE_CUDA=cuda>=12.6", "CUDA_VERSION=99.0"]);
    let out = shim.create(&node);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(shim.spec_devices().contains(&"/dev/nvidia2".to_string()), "{:?}", shim.spec_devices());
}

#[test]
fn the_shim_gives_a_legacy_image_every_gpu_and_checks_its_cuda_version() {
    let node = SimNode::new("h100x4-nomig");
    let shim = Shim::new();
    shim.write_spec(&["PATH=/bin", "CUDA_VERSION=12.2.2"]);
    let out = shim.create(&node);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut devices = shim.spec_devices();
    devices.sort();
    // All capabilities: display brings nvidia-modeset, compute the uvm nodes.
    assert_eq!(
        devices,
        [
            "/dev/nvidia-modeset",
            "/dev/nvidia-uvm",
            "/dev/nvidia-uvm-tools",
            "/dev/nvidia0",
            "/dev/nvidia1",
            "/dev/nvidia2",
            "/dev/nvidia3",
            "/dev/nvidiactl"
        ]
    );
    let shim = Shim::new();
    let before = shim.write_spec(&["PATH=/bin", "CUDA_VERSION=12.8.0"]);
    let out = shim.create(&node);
    assert_eq!(
        stderr_line(&out),
        "mighook: requirement cuda>=12.8 not met: the driver supports CUDA 12.4 (CUDA_VERSION=12.8.0 of an image without NVIDIA_REQUIRE_CUDA)"
    );
    assert_eq!(fs::read(shim.bundle().join("config.json")).unwrap(), before);
}

#[test]
fn no_requirement_is_checked_for_a_container_that_asks_for_no_gpu() {
    let node = SimNode::new("a100x8");
    let shim = Shim::new();
    let before = shim.write_spec(&["NVIDIA_VISIBLE_DEVICES=void", "NVIDIA_REQUIRE_CUDA=cuda=>junk"]);
    let out = shim.create(&node);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(fs::read(shim.bundle().join("config.json")).unwrap(), before);
    // A modern image (NVIDIA_REQUIRE_CUDA set) without NVIDIA_VISIBLE_DEVICES stays void too.
    let before = shim.write_spec(&["CUDA_VERSION=99.0", "NVIDIA_REQUIRE_CUDA=cuda>=99.0"]);
    assert!(shim.create(&node).status.success());
    assert_eq!(fs::read(shim.bundle().join("config.json")).unwrap(), before);
}

#[test]
fn the_prestart_hook_refuses_before_touching_the_container() {
    let node = SimNode::new("a100x8");
    let shim = Shim::new();
    shim.write_spec(&[
        "NVIDIA_VISIBLE_DEVICES=0",
        "NVIDIA_REQUIRE_CUDA=cuda>=12.4 brand=tesla",
        "NVIDIA_REQUIRE_2=arch>=9.0",
    ]);
    let out = shim.prestart(&node);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr_line(&out),
        "mighook: requirement arch>=9.0 not met: GPU 0 has compute capability 8.0 (NVIDIA_REQUIRE_2)"
    );
    shim.write_spec(&["NVIDIA_VISIBLE_DEVICES=0", "NVIDIA_REQUIRE_CUDA=cuda>=12.4.1"]);
    assert!(stderr_line(&shim.prestart(&node)).starts_with("mighook: requirement cuda>=12.4.1 not met"));
    shim.write_spec(&["NVIDIA_VISIBLE_DEVICES=0", "NVIDIA_REQUIRE_CUDA=cuda>12.4,"]);
    assert!(stderr_line(&shim.prestart(&node)).starts_with("mighook: requirement cuda>12.4 not met"));
}

// ---------------------------------------------------------------------------
// Real runc, as root (run under the shared e2e lock).

fn can_run_runc() -> bool {
    support::require_root_and(&["runc", "gcc", "busybox", "unshare", "mountpoint", "timeout"])
}

fn assert_refused(rt: Runtime, bundle: &Bundle, out: &Output, message: &str) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the start must fail\n{}", support::runtime::describe(out));
    assert!(stderr.contains(message), "stderr must say {message:?}\n{stderr}");
    assert!(!stdout.contains("probe: done"), "the container process must never run\n{stdout}");
    assert_eq!(rt.list(bundle), Vec::<String>::new(), "no container left");
    support::rootfs::assert_pristine(&bundle.rootfs());
}

#[test]
fn runc_refuses_to_start_an_image_whose_cuda_the_driver_lacks() {
    let rt = Runtime::RuncV1;
    if !can_run_runc() {
        return;
    }
    let node = SimNode::new("a100x8");
    let env = ["NVIDIA_VISIBLE_DEVICES=0:1", "NVIDIA_REQUIRE_CUDA=cuda>=12.6 brand=tesla,driver>=470,driver<471"];
    let message = "mighook: requirement cuda>=12.6 not met: the driver supports CUDA 12.4 (NVIDIA_REQUIRE_CUDA, none of its 2 alternatives holds)";
    let bundle = Bundle::probe(&env, &["ls:/dev"]).with_mighook(&node);
    assert_refused(rt, &bundle, &rt.run(&bundle), message);
    let bundle = Bundle::probe(&env, &["ls:/dev"]);
    assert_refused(rt, &bundle, &rt.run_shim(&bundle, &node.mighook_args()), message);
    // Told to skip the check, the same image starts with its device.
    let env = [env[0], env[1], "NVIDIA_DISABLE_REQUIRE=true"];
    let p = rt.run_probe(&Bundle::probe(&env, &["/dev/nvidia2"]).with_mighook(&node));
    assert_eq!(p.summary_of("/dev/nvidia2"), format!("c 195:2 errno={}", support::ENXIO));
}

#[test]
fn runc_gives_a_legacy_cuda_image_every_gpu() {
    let rt = Runtime::RuncV1;
    if !can_run_runc() {
        return;
    }
    let node = SimNode::new("h100x4-nomig");
    let args = ["/dev/nvidia0", "/dev/nvidia3", "/dev/nvidia-modeset"];
    let p = rt.run_probe(&Bundle::probe(&["CUDA_VERSION=12.2.2"], &args).with_mighook(&node));
    for path in args {
        assert_eq!(p.summary_of(path).split(' ').next_back(), Some("errno=6"), "{path}: {}", p.summary_of(path));
    }
    let bundle = Bundle::probe(&["CUDA_VERSION=12.8.0"], &args).with_mighook(&node);
    let message = "mighook: requirement cuda>=12.8 not met: the driver supports CUDA 12.4 (CUDA_VERSION=12.8.0 of an image without NVIDIA_REQUIRE_CUDA)";
    assert_refused(rt, &bundle, &rt.run(&bundle), message);
}
