//! The container's `/proc/driver/nvidia` under real runtimes, on a simulated
//! 8×A100 node (topology `a100x8`).
//!
//! This machine has no NVIDIA driver, so the container's procfs has no
//! `/proc/driver/nvidia`. A first prestart hook gives it one, as a loaded
//! driver would: in the container's mount namespace it mounts a tmpfs over
//! `<rootfs>/proc/driver` (procfs allows no new entries) and bind-mounts the
//! fake node's `proc/driver/nvidia` (all 8 GPUs, every MIG capability file,
//! `ModifyDeviceFiles: 1`) there. That it lands in the container at all proves
//! runc and crun run prestart hooks after mounting the container's /proc.
//! mighook's hook, which runs next, must then leave only what NVIDIA's legacy
//! path leaves: `params` (with `ModifyDeviceFiles: 0`), `version`, `registry`,
//! the selected GPUs' `gpus/` entries and the MIG device's access files.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use support::{Bundle, ProbeOutput, Runtime, SimNode};

/// GPU 0 of a100x8: PCI 0000:07:00.0, device minor 2; `0:1` is GI 8 / CI 0 on it.
const GPU0_BUS: &str = "0000:07:00.0";

/// A prestart hook (args: the rootfs) that gives the container's /proc a `driver/nvidia`: the directory `fake`.
fn fake_driver_hook(dir: &Path, fake: &Path) -> PathBuf {
    let script = dir.join("fake-proc-driver.sh");
    let body = format!(
        "#!/bin/sh\nset -e\nroot=$1\n\
         pid=$(sed -n 's/.*\"pid\": *\\([0-9]*\\).*/\\1/p')\n\
         exec nsenter -t \"$pid\" -m sh -c \"mount -t tmpfs fake-driver $root/proc/driver && \
         mkdir $root/proc/driver/nvidia && mount --bind {} $root/proc/driver/nvidia\"\n",
        fake.display()
    );
    std::fs::write(&script, body).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

fn can_run(rt: Runtime) -> bool {
    support::runtime::can_run(rt, &["nsenter"])
}

const PROBE: [&str; 6] = [
    "ls:/proc/driver/nvidia",
    "ls:/proc/driver/nvidia/gpus",
    "cat:/proc/driver/nvidia/params",
    "ls:/proc/driver/nvidia/capabilities/gpu2/mig",
    "ls:/proc/driver/nvidia/capabilities/gpu2/mig/gi8",
    "ls:/proc/driver/nvidia/gpus/0000:07:00.0",
];

/// How mighook is put in front of the container.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Via {
    None,
    Hook,
    Shim,
}

fn run(rt: Runtime, node: &SimNode, devices: &str, how: Via) -> ProbeOutput {
    let env = format!("NVIDIA_VISIBLE_DEVICES={devices}");
    let hook = fake_driver_hook(node.dir(), &node.proc_root().join("driver/nvidia"));
    let bundle = Bundle::probe(&[&env], &PROBE);
    let rootfs = bundle.rootfs();
    let args = ["fake-proc-driver", rootfs.to_str().unwrap()];
    let bundle = bundle.with_prestart_hook(&hook, &args, &[support::bundle::HOOK_PATH_ENV]);
    match how {
        Via::None => rt.run_probe(&bundle),
        Via::Hook => rt.run_probe(&bundle.with_mighook(node)),
        Via::Shim => {
            let out = rt.run_shim(&bundle, &node.mighook_args());
            assert!(out.status.success(), "{}", support::runtime::describe(&out));
            ProbeOutput::parse(&String::from_utf8_lossy(&out.stdout))
        }
    }
}

fn params_lines(p: &ProbeOutput) -> Vec<&str> {
    p.cat("/proc/driver/nvidia/params").iter().map(String::as_str).filter(|l| l.starts_with("ModifyDevice")).collect()
}

/// Without mighook the container sees the whole fake driver directory: the harness works.
fn harness_shows_the_whole_driver_dir(rt: Runtime) {
    if !can_run(rt) {
        return;
    }
    let node = SimNode::new("a100x8");
    let p = run(rt, &node, "0:1", Via::None);
    assert_eq!(p.ls("/proc/driver/nvidia/gpus").len(), 8, "{}", rt.name());
    assert_eq!(params_lines(&p), ["ModifyDeviceFiles: 1"], "{}", rt.name());
    assert!(p.ls("/proc/driver/nvidia").contains(&"capabilities".to_string()), "{}", rt.name());
    assert!(p.ls("/proc/driver/nvidia").contains(&"suspend".to_string()), "{}", rt.name());
}

fn mig_device_sees_only_its_gpu_and_caps(rt: Runtime, how: Via) {
    if !can_run(rt) {
        return;
    }
    let node = SimNode::new("a100x8");
    let p = run(rt, &node, "0:1", how);
    let rt = rt.name();
    assert_eq!(p.ls("/proc/driver/nvidia"), ["capabilities", "gpus", "params", "registry", "version"], "{rt}");
    assert_eq!(p.ls("/proc/driver/nvidia/gpus"), [GPU0_BUS], "{rt}");
    assert_eq!(p.ls("/proc/driver/nvidia/gpus/0000:07:00.0"), ["information"], "{rt}");
    assert_eq!(params_lines(&p), ["ModifyDeviceFiles: 0"], "{rt}");
    assert_eq!(p.ls("/proc/driver/nvidia/capabilities/gpu2/mig"), ["gi8"], "{rt}");
    assert_eq!(p.ls("/proc/driver/nvidia/capabilities/gpu2/mig/gi8"), ["access", "ci0"], "{rt}");
}

fn whole_gpu_sees_only_its_gpu(rt: Runtime) {
    if !can_run(rt) {
        return;
    }
    let node = SimNode::new("a100x8");
    let p = run(rt, &node, "0", Via::Hook);
    let rt = rt.name();
    assert_eq!(p.ls("/proc/driver/nvidia"), ["gpus", "params", "registry", "version"], "{rt}");
    assert_eq!(p.ls("/proc/driver/nvidia/gpus"), [GPU0_BUS], "{rt}");
    assert_eq!(params_lines(&p), ["ModifyDeviceFiles: 0"], "{rt}");
}

#[test]
fn harness_shows_the_whole_driver_dir_runc_v1() {
    harness_shows_the_whole_driver_dir(Runtime::RuncV1);
}

#[test]
fn mig_device_sees_only_its_gpu_and_caps_runc_v1() {
    mig_device_sees_only_its_gpu_and_caps(Runtime::RuncV1, Via::Hook);
}

#[test]
fn whole_gpu_sees_only_its_gpu_runc_v1() {
    whole_gpu_sees_only_its_gpu(Runtime::RuncV1);
}

#[test]
fn mig_device_sees_only_its_gpu_and_caps_runc_v2() {
    mig_device_sees_only_its_gpu_and_caps(Runtime::RuncV2, Via::Hook);
}

#[test]
fn mig_device_sees_only_its_gpu_and_caps_crun_v1() {
    mig_device_sees_only_its_gpu_and_caps(Runtime::CrunV1, Via::Hook);
}

#[test]
fn mig_device_sees_only_its_gpu_and_caps_through_the_shim_runc_v1() {
    mig_device_sees_only_its_gpu_and_caps(Runtime::RuncV1, Via::Shim);
}

/// Why the shim cannot do this through config.json alone: runc refuses a bind
/// mount inside /proc (`checkProcMount`: "cannot be mounted because it is inside
/// /proc"), so the selected GPUs' `gpus/` entries cannot come from the spec; a tmpfs
/// there it takes, but nothing can be put into one from config.json. The mask is a
/// hook's job, as in NVIDIA's legacy runtime (see docs/SECURITY.md).
fn run_with_mount(rt: Runtime, mount: serde_json::Value) -> std::process::Output {
    let bundle = Bundle::probe(&[], &["ls:/proc/driver"]).edit(|c| c["mounts"].as_array_mut().unwrap().push(mount));
    rt.run(&bundle)
}

#[test]
fn runc_refuses_config_json_bind_mounts_inside_proc() {
    if !can_run(Runtime::RuncV1) {
        return;
    }
    let node = SimNode::new("a100x8");
    let fake = node.proc_root().join("driver/nvidia");
    let bind = serde_json::json!({"destination": "/proc/driver/nvidia", "type": "bind", "source": fake, "options": ["rbind", "ro"]});
    let tmpfs =
        serde_json::json!({"destination": "/proc/driver", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]});
    let refused = run_with_mount(Runtime::RuncV1, bind);
    assert!(!refused.status.success(), "{}", support::runtime::describe(&refused));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("cannot be mounted because it is inside /proc"));
    let taken = run_with_mount(Runtime::RuncV1, tmpfs);
    assert!(taken.status.success(), "{}", support::runtime::describe(&taken));
}
