//! Acceptance tests of the prestart hook under real runtimes: runc and crun,
//! cgroup v1 and v2, on a simulated 8×A100 node (topology `a100x8`).
//!
//! The container runs `openprobe` (tests/e2e/openprobe.c). Char majors 195,
//! 508 and 511 have no driver here, so open() of a node answers ENXIO (6) when
//! the devices cgroup lets it through and EPERM (1) when it does not: that is
//! how each test reads the cgroup's verdict from inside the container.
//!
//! `NVIDIA_VISIBLE_DEVICES=0:1` is GPU 0 (device minor 2, MIG on, 7×1g.5gb)
//! slot 1 = GI 8 / CI 0: nvidia-caps minors 3 + 2·135 + 8·9 = 345 (gi8/access)
//! and 346 (gi8/ci0/access).

mod support;

use std::fs;
use std::path::Path;
use support::{Bundle, ProbeOutput, Runtime, SimNode};

const TOPOLOGY: &str = "a100x8";
use support::{ENXIO, EPERM};

use support::a100::{MIG_0_1_NODES, MIG_0_1_UUID};

/// Nodes the probe makes itself (it has CAP_MKNOD): other GPUs, modeset, the
/// MIG config/monitor caps, GI 7/9 of GPU 0, another GPU's caps. All must be denied.
const NEIGHBOURS: [(&str, u32, u32); 11] = [
    ("/dev/nb-gpu0", 195, 0),
    ("/dev/nb-gpu3", 195, 3),
    ("/dev/nb-modeset", 195, 254),
    ("/dev/nb-mig-config", 508, 1),
    ("/dev/nb-mig-monitor", 508, 2),
    ("/dev/nb-cap344", 508, 344),
    ("/dev/nb-cap347", 508, 347),
    ("/dev/nb-cap354", 508, 354),
    ("/dev/nb-cap355", 508, 355),
    ("/dev/nb-cap480", 508, 480),
    ("/dev/nb-uvm2", 511, 2),
];

/// Probe arguments: listings first (before the probe adds its own nodes), then the six, then neighbours.
fn mig_probe_args() -> Vec<String> {
    let mut args = vec!["ls:/dev".to_string(), "ls:/dev/nvidia-caps".to_string()];
    args.extend(MIG_0_1_NODES.iter().map(|(p, _, _)| p.to_string()));
    // Mode 0444: the probe opens them O_RDONLY, so even a stray read-only grant shows up as ENXIO.
    args.extend(NEIGHBOURS.iter().map(|(p, maj, min)| format!("mknod:{p}:{maj}:{min}:0444")));
    args
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// `/dev` entries that look like NVIDIA nodes.
fn nvidia_entries(p: &ProbeOutput) -> Vec<String> {
    p.ls_or_empty("/dev").into_iter().filter(|n| n.starts_with("nvidia")).collect()
}

/// The full expectation for a `0:1` container, one line per fact.
fn assert_exactly_mig_0_1(rt: Runtime, node: &SimNode, p: &ProbeOutput) {
    let rt = rt.name();
    for (path, major, minor) in MIG_0_1_NODES {
        assert_eq!(
            p.summary_of(path),
            format!("c {major}:{minor} errno={ENXIO}"),
            "{rt}: {path} must exist and be allowed"
        );
    }
    for (path, _, _) in MIG_0_1_NODES {
        assert_eq!(p.get(path).mode, host_mode(node, path), "{rt}: {path} keeps the host node's mode");
    }
    for (path, major, minor) in NEIGHBOURS {
        assert_eq!(
            p.summary_of(path),
            format!("c {major}:{minor} errno={EPERM}"),
            "{rt}: neighbour {path} must be denied"
        );
    }
    assert_eq!(
        nvidia_entries(p),
        ["nvidia-caps", "nvidia-uvm", "nvidia-uvm-tools", "nvidia2", "nvidiactl"],
        "{rt}: /dev"
    );
    assert_eq!(p.ls("/dev/nvidia-caps"), ["nvidia-cap345", "nvidia-cap346"], "{rt}: /dev/nvidia-caps");
}

/// Permission bits of the simulated host's node for container path `/dev/...` (like NVIDIA's
/// stack, the container gets the host's modes: 0666 for GPUs, 0444 for MIG caps).
fn host_mode(node: &SimNode, path: &str) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    let host = node.dev_root().join(path.strip_prefix("/dev/").unwrap());
    fs::metadata(&host).unwrap_or_else(|e| panic!("{}: {e}", host.display())).permissions().mode() & 0o7777
}

/// Gate for tests that run `rt`; `false` means the test already reported SKIPPED.
fn can_run(rt: Runtime) -> bool {
    support::runtime::can_run(rt, &[])
}

// ---------------------------------------------------------------------------
// Harness self-tests: no mighook involved. They prove the probe can tell an
// allowed node (ENXIO) from a denied one (EPERM) under each runtime.

fn harness_distinguishes_allowed_from_denied(rt: Runtime) {
    if !can_run(rt) {
        return;
    }
    // The runtime itself creates and allows /dev/nvidia0 (as an engine would for `--device`).
    let args = ["ls:/dev", "ls:/sys/fs/cgroup", "/dev/nvidia0", "mknod:/dev/nb-gpu1:195:1", "/dev/null"];
    let bundle = Bundle::probe(&[], &args).edit(|c| {
        c["linux"]["devices"] =
            serde_json::json!([{ "path": "/dev/nvidia0", "type": "c", "major": 195, "minor": 0, "fileMode": 438 }]);
        c["linux"]["resources"]["devices"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({ "allow": true, "type": "c", "major": 195, "minor": 0, "access": "rw" }));
    });
    let p = rt.run_probe(&bundle);
    assert_eq!(p.summary_of("/dev/nvidia0"), "c 195:0 errno=6", "{}: allowed node", rt.name());
    assert_eq!(p.summary_of("/dev/nb-gpu1"), "c 195:1 errno=1", "{}: mknod'ed, not allowed", rt.name());
    assert_eq!(p.summary_of("/dev/null"), "c 1:3 errno=0", "{}: /dev/null opens", rt.name());
    assert_eq!(nvidia_entries(&p), ["nvidia0"], "{}: /dev", rt.name());
    // The container really got the cgroup mode the runtime name promises.
    let cgroup_fs = p.ls("/sys/fs/cgroup");
    let v1 = cgroup_fs.iter().any(|n| n == "devices");
    let v2 = cgroup_fs.iter().any(|n| n == "cgroup.procs");
    assert_eq!((v1, v2), (!rt.is_v2(), rt.is_v2()), "{}: /sys/fs/cgroup holds {cgroup_fs:?}", rt.name());
}

#[test]
fn harness_distinguishes_allowed_from_denied_runc_v1() {
    harness_distinguishes_allowed_from_denied(Runtime::RuncV1);
}

#[test]
fn harness_distinguishes_allowed_from_denied_crun_v1() {
    harness_distinguishes_allowed_from_denied(Runtime::CrunV1);
}

#[test]
fn harness_distinguishes_allowed_from_denied_runc_v2() {
    harness_distinguishes_allowed_from_denied(Runtime::RuncV2);
}

#[test]
fn harness_distinguishes_allowed_from_denied_crun_v2() {
    harness_distinguishes_allowed_from_denied(Runtime::CrunV2);
}

/// A failing prestart hook must abort the start and leave nothing behind (checked by `run`).
fn harness_failing_hook_aborts_cleanly(rt: Runtime) {
    if !can_run(rt) {
        return;
    }
    let script = "cat >/dev/null; echo 'mighook: 0:99: harness says no' >&2; exit 3";
    let bundle = Bundle::probe(&[], &["/dev/null"]).with_prestart_hook(
        &support::tool("sh"),
        &["sh", "-c", script],
        &[support::bundle::HOOK_PATH_ENV],
    );
    let out = rt.run(&bundle);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{}: must fail\n{}", rt.name(), support::runtime::describe(&out));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("probe: done"), "{}: the process must not run", rt.name());
    if rt.binary() == "runc" {
        // runc quotes the hook's stderr; crun only reports the exit code.
        assert!(stderr.contains("mighook: 0:99: harness says no"), "{}: stderr\n{stderr}", rt.name());
    }
    assert_eq!(rt.list(&bundle), Vec::<String>::new(), "{}: no container left", rt.name());
}

#[test]
fn harness_failing_hook_aborts_cleanly_runc_v1() {
    harness_failing_hook_aborts_cleanly(Runtime::RuncV1);
}

#[test]
fn harness_failing_hook_aborts_cleanly_crun_v1() {
    harness_failing_hook_aborts_cleanly(Runtime::CrunV1);
}

#[test]
fn harness_failing_hook_aborts_cleanly_runc_v2() {
    harness_failing_hook_aborts_cleanly(Runtime::RuncV2);
}

#[test]
fn harness_runs_leave_no_container_and_a_clean_image() {
    if !can_run(Runtime::RuncV1) {
        return;
    }
    let bundle = Bundle::probe(&[], &["mknod:/dev/nb-gpu0:195:0"]);
    let p = Runtime::RuncV1.run_probe(&bundle);
    assert_eq!(p.summary_of("/dev/nb-gpu0"), "c 195:0 errno=1");
    assert_eq!(Runtime::RuncV1.list(&bundle), Vec::<String>::new());
    support::rootfs::assert_pristine(&support::busybox_rootfs());
}

// ---------------------------------------------------------------------------
// mighook as the prestart hook.

fn mig_0_1_gets_exactly_its_six_nodes(rt: Runtime) {
    if !can_run(rt) {
        return;
    }
    let node = SimNode::new(TOPOLOGY);
    let args = mig_probe_args();
    let bundle = Bundle::probe(&["NVIDIA_VISIBLE_DEVICES=0:1"], &strs(&args)).with_mighook(&node);
    let p = rt.run_probe(&bundle);
    assert_exactly_mig_0_1(rt, &node, &p);
    support::rootfs::assert_pristine(&bundle.rootfs());
}

#[test]
fn mig_0_1_gets_exactly_its_six_nodes_runc_v1() {
    mig_0_1_gets_exactly_its_six_nodes(Runtime::RuncV1);
}

#[test]
fn mig_0_1_gets_exactly_its_six_nodes_crun_v1() {
    mig_0_1_gets_exactly_its_six_nodes(Runtime::CrunV1);
}

#[test]
fn mig_0_1_gets_exactly_its_six_nodes_runc_v2() {
    mig_0_1_gets_exactly_its_six_nodes(Runtime::RuncV2);
}

#[test]
fn mig_0_1_gets_exactly_its_six_nodes_crun_v2() {
    mig_0_1_gets_exactly_its_six_nodes(Runtime::CrunV2);
}

/// CDI names in `NVIDIA_VISIBLE_DEVICES`, as NVIDIA's jit-cdi runtime takes them: the device
/// plugin's kind by MIG UUID and `nvidia.com/gpu` by index both name exactly MIG 0:1.
#[test]
fn cdi_names_in_the_device_list_get_exactly_mig_0_1_runc_v1() {
    let rt = Runtime::RuncV1;
    if !can_run(rt) {
        return;
    }
    let node = SimNode::new(TOPOLOGY);
    let args = mig_probe_args();
    for list in [format!("k8s.device-plugin.nvidia.com/gpu={MIG_0_1_UUID}"), "nvidia.com/gpu=0:1".to_string()] {
        let env = format!("NVIDIA_VISIBLE_DEVICES={list}");
        let bundle = Bundle::probe(&[env.as_str()], &strs(&args)).with_mighook(&node);
        assert_exactly_mig_0_1(rt, &node, &rt.run_probe(&bundle));
        support::rootfs::assert_pristine(&bundle.rootfs());
    }
}

/// A host whose driver limits GPUs to a group (`NVreg_DeviceFileGID=44
/// NVreg_DeviceFileMode=0660`) keeps them limited in the container: the GPU and
/// control nodes the hook makes have the params' group and mode, as the host's do.
/// The uvm nodes (nvidia-modprobe ignores the params for them) and the MIG caps
/// (their capability files' modes) stay root's.
fn group_only_gpus_stay_group_only(rt: Runtime) {
    if !can_run(rt) {
        return;
    }
    let node = SimNode::with_device_files(TOPOLOGY, 0, 44, 0o660);
    let paths: Vec<&str> = MIG_0_1_NODES.iter().map(|(p, _, _)| *p).collect();
    let bundle = Bundle::probe(&["NVIDIA_VISIBLE_DEVICES=0:1"], &paths).with_mighook(&node);
    let p = rt.run_probe(&bundle);
    let seen = |path: &str| {
        let r = p.get(path);
        format!("{path} {}:{} {:04o} errno={}", r.uid, r.gid, r.mode, r.errno)
    };
    let rt = rt.name();
    assert_eq!(seen("/dev/nvidia2"), format!("/dev/nvidia2 0:44 0660 errno={ENXIO}"), "{rt}");
    assert_eq!(seen("/dev/nvidiactl"), format!("/dev/nvidiactl 0:44 0660 errno={ENXIO}"), "{rt}");
    assert_eq!(seen("/dev/nvidia-uvm"), format!("/dev/nvidia-uvm 0:0 0666 errno={ENXIO}"), "{rt}");
    assert_eq!(
        seen("/dev/nvidia-caps/nvidia-cap345"),
        format!("/dev/nvidia-caps/nvidia-cap345 0:0 0444 errno={ENXIO}"),
        "{rt}"
    );
    // The same as the simulated host's own nodes.
    for path in paths {
        assert_eq!(p.get(path).mode, host_mode(&node, path), "{rt}: {path} has the host node's mode");
    }
    support::rootfs::assert_pristine(&bundle.rootfs());
}

#[test]
fn group_only_gpus_stay_group_only_runc_v1() {
    group_only_gpus_stay_group_only(Runtime::RuncV1);
}

#[test]
fn group_only_gpus_stay_group_only_crun_v1() {
    group_only_gpus_stay_group_only(Runtime::CrunV1);
}

#[test]
fn group_only_gpus_stay_group_only_runc_v2() {
    group_only_gpus_stay_group_only(Runtime::RuncV2);
}

#[test]
fn group_only_gpus_stay_group_only_crun_v2() {
    group_only_gpus_stay_group_only(Runtime::CrunV2);
}

/// docker `--gpus` runs `nvidia-container-runtime-hook prestart` found on PATH, with the runtime's
/// env: mighook installed under that name takes its settings from `MIGHOOK_*` there.
#[test]
fn hook_link_name_behaves_like_mighook_prestart() {
    let rt = Runtime::RuncV1;
    if !can_run(rt) {
        return;
    }
    let node = SimNode::new(TOPOLOGY);
    let bin = tempfile::tempdir().unwrap();
    let link = bin.path().join("nvidia-container-runtime-hook");
    std::os::unix::fs::symlink(support::mighook_bin(), &link).unwrap();
    let env = [
        support::bundle::HOOK_PATH_ENV.to_string(),
        format!("MIGHOOK_NVML_LIB={}", node.nvml_lib().display()),
        format!("MIGHOOK_PROC_ROOT={}", node.proc_root().display()),
    ];
    let link_str = link.to_str().unwrap();
    let args = mig_probe_args();
    let bundle = Bundle::probe(&["NVIDIA_VISIBLE_DEVICES=0:1"], &strs(&args)).with_prestart_hook(
        &link,
        &[link_str, "prestart"],
        &strs(&env),
    );
    assert_exactly_mig_0_1(rt, &node, &rt.run_probe(&bundle));
}

/// v1 only: the devices cgroup, read from inside, gains exactly six `rw` rules and nothing else.
fn v1_rules_are_exactly_six_rw(rt: Runtime) {
    if !can_run(rt) {
        return;
    }
    let node = SimNode::new(TOPOLOGY);
    let list = "cat:/sys/fs/cgroup/devices/devices.list";
    let plain = rt.run_probe(&Bundle::probe(&[], &[list]));
    let hooked = rt.run_probe(&Bundle::probe(&["NVIDIA_VISIBLE_DEVICES=0:1"], &[list]).with_mighook(&node));
    let before = plain.cat(&list[4..]);
    let after = hooked.cat(&list[4..]);
    let mut added: Vec<&str> = after.iter().filter(|r| !before.contains(r)).map(String::as_str).collect();
    added.sort();
    let removed: Vec<&str> = before.iter().filter(|r| !after.contains(r)).map(String::as_str).collect();
    assert_eq!(removed, Vec::<&str>::new(), "{}: the hook must not drop runtime rules", rt.name());
    assert_eq!(
        added,
        ["c 195:2 rw", "c 195:255 rw", "c 508:345 rw", "c 508:346 rw", "c 511:0 rw", "c 511:1 rw"],
        "{}: added rules",
        rt.name()
    );
}

#[test]
fn v1_rules_are_exactly_six_rw_runc() {
    v1_rules_are_exactly_six_rw(Runtime::RuncV1);
}

#[test]
fn v1_rules_are_exactly_six_rw_crun() {
    v1_rules_are_exactly_six_rw(Runtime::CrunV1);
}

#[test]
fn bad_entry_fails_the_start_and_leaves_nothing() {
    let rt = Runtime::RuncV1;
    if !can_run(rt) {
        return;
    }
    let node = SimNode::new(TOPOLOGY);
    let bundle = Bundle::probe(&["NVIDIA_VISIBLE_DEVICES=0:99"], &["ls:/dev"]).with_mighook(&node);
    let out = rt.run(&bundle);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "runc run must fail\n{}", support::runtime::describe(&out));
    assert!(stderr.contains("mighook: 0:99:"), "stderr must name the bad entry\n{stderr}");
    assert!(!stdout.contains("probe: done"), "the container process must never run\n{stdout}");
    assert_eq!(rt.list(&bundle), Vec::<String>::new(), "no container left");
}

#[test]
fn no_visible_devices_changes_nothing() {
    let rt = Runtime::RuncV1;
    if !can_run(rt) {
        return;
    }
    let node = SimNode::new(TOPOLOGY);
    let args =
        ["ls:/dev", "cat:/sys/fs/cgroup/devices/devices.list", "mknod:/dev/nb-gpu2:195:2", "mknod:/dev/nb-ctl:195:255"];
    let plain = rt.run_probe(&Bundle::probe(&[], &args));
    let hooked = rt.run_probe(&Bundle::probe(&[], &args).with_mighook(&node));
    assert_eq!(nvidia_entries(&hooked), Vec::<String>::new(), "no /dev/nvidia*");
    assert_eq!(hooked.summary_of("/dev/nb-gpu2"), "c 195:2 errno=1");
    assert_eq!(hooked.summary_of("/dev/nb-ctl"), "c 195:255 errno=1");
    assert_eq!(hooked, plain, "the hook must change nothing without NVIDIA_VISIBLE_DEVICES");
}

// ---------------------------------------------------------------------------
// Hostile images.

/// Files in a host dir (a symlink's target must stay untouched).
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// Run a hostile image: it must either fail with one clear mighook error or get exactly its nodes.
/// A control run on the plain image comes first, so a refusal counts only when the hook works otherwise.
fn assert_fails_clearly_or_contained(rt: Runtime, node: &SimNode, bundle: &Bundle) {
    let args = mig_probe_args();
    let control = Bundle::probe(&["NVIDIA_VISIBLE_DEVICES=0:1"], &strs(&args)).with_mighook(node);
    assert_exactly_mig_0_1(rt, node, &rt.run_probe(&control));
    let out = rt.run(bundle);
    if out.status.success() {
        assert_exactly_mig_0_1(rt, node, &ProbeOutput::parse(&String::from_utf8_lossy(&out.stdout)));
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("mighook: "), "a refusal must carry mighook's own error line\n{stderr}");
    }
}

/// An image whose `/dev` is a symlink to `host` (an absolute host path).
fn image_with_dev_symlink(host: &Path) -> tempfile::TempDir {
    let image = support::copy_rootfs();
    fs::remove_dir(image.path().join("dev")).unwrap();
    std::os::unix::fs::symlink(host, image.path().join("dev")).unwrap();
    image
}

#[test]
fn image_dev_symlink_to_host_dir_stays_inside_root() {
    let rt = Runtime::RuncV1;
    if !can_run(rt) {
        return;
    }
    let node = SimNode::new(TOPOLOGY);
    let host = tempfile::tempdir().unwrap();
    let args = mig_probe_args();
    let argv = [&["/bin/openprobe"], &strs(&args)[..]].concat();
    let env = ["NVIDIA_VISIBLE_DEVICES=0:1"];

    // Baseline without the hook: runc 1.1 itself creates its /dev/{fd,stdin,stdout,stderr,ptmx}
    // symlinks through the image's link, on the host. That is runc's doing, not mighook's.
    let image = image_with_dev_symlink(host.path());
    let _ = rt.run(&Bundle::new(image.path(), &env, &argv));
    let runtime_wrote = entries(host.path());
    for name in &runtime_wrote {
        fs::remove_file(host.path().join(name)).unwrap();
    }

    let image = image_with_dev_symlink(host.path());
    let bundle = Bundle::new(image.path(), &env, &argv).with_mighook(&node);
    assert_fails_clearly_or_contained(rt, &node, &bundle);
    assert!(!runtime_wrote.iter().any(|n| n.starts_with("nvidia")), "baseline has no hook: {runtime_wrote:?}");
    assert_eq!(entries(host.path()), runtime_wrote, "mighook must add nothing to the host dir behind /dev");
}

#[test]
fn image_dev_entries_symlinked_to_host_stay_inside_root() {
    // No /dev tmpfs here: the image's own /dev is what the hook writes into, and
    // its nvidia-caps and nvidiactl entries point at host paths.
    let rt = Runtime::RuncV1;
    if !can_run(rt) {
        return;
    }
    let node = SimNode::new(TOPOLOGY);
    let host_dir = tempfile::tempdir().unwrap();
    let host_file_dir = tempfile::tempdir().unwrap();
    let host_file = host_file_dir.path().join("victim");
    fs::write(&host_file, "host data\n").unwrap();
    let image = support::copy_rootfs();
    std::os::unix::fs::symlink(host_dir.path(), image.path().join("dev/nvidia-caps")).unwrap();
    std::os::unix::fs::symlink(&host_file, image.path().join("dev/nvidiactl")).unwrap();
    let args = mig_probe_args();
    let bundle =
        Bundle::new(image.path(), &["NVIDIA_VISIBLE_DEVICES=0:1"], &[&["/bin/openprobe"], &strs(&args)[..]].concat())
            .edit(|c| c["mounts"].as_array_mut().unwrap().retain(|m| m["destination"] != "/dev"))
            .with_mighook(&node);
    assert_fails_clearly_or_contained(rt, &node, &bundle);
    assert_eq!(entries(host_dir.path()), Vec::<String>::new(), "host dir behind /dev/nvidia-caps");
    assert_eq!(entries(host_file_dir.path()), ["victim"], "host dir holding the nvidiactl target");
    assert_eq!(fs::read_to_string(&host_file).unwrap(), "host data\n", "host file behind /dev/nvidiactl");
    let meta = fs::symlink_metadata(&host_file).unwrap();
    assert!(meta.file_type().is_file(), "host file must stay a regular file");
}

/// A copy of the node's proc tree with every `DeviceFileMinor` moved by 1000: if mighook read it, minors would differ.
fn evil_proc_root(node: &SimNode, dest: &Path) {
    let out = std::process::Command::new("cp").arg("-a").arg(node.proc_root()).arg(dest).output().unwrap();
    assert!(out.status.success(), "cp proc: {}", String::from_utf8_lossy(&out.stderr));
    let mut stack = vec![dest.to_path_buf()];
    let mut rewritten = 0;
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() {
                let text = fs::read_to_string(&path).unwrap_or_default();
                if text.contains("DeviceFileMinor:") {
                    let shifted: Vec<String> = text
                        .lines()
                        .map(|l| match l.strip_prefix("DeviceFileMinor:").map(|n| n.trim().parse::<u32>()) {
                            Some(Ok(n)) => format!("DeviceFileMinor: {}", n + 1000),
                            _ => l.to_string(),
                        })
                        .collect();
                    fs::write(&path, shifted.join("\n") + "\n").unwrap();
                    rewritten += 1;
                }
            }
        }
    }
    assert!(rewritten > 0, "the node's proc tree has no DeviceFileMinor file to poison");
}

fn image_env_cannot_steer_the_hook(preload: impl FnOnce(&Path) -> (String, Option<std::path::PathBuf>)) {
    let rt = Runtime::RuncV1;
    if !can_run(rt) {
        return;
    }
    let node = SimNode::new(TOPOLOGY);
    let evil = tempfile::tempdir().unwrap();
    let (ld_preload, marker) = preload(evil.path());
    let proc_root = evil.path().join("proc");
    evil_proc_root(&node, &proc_root);
    let nvml = evil.path().join("evil.so");
    fs::write(&nvml, "not a shared object: loading this must fail\n").unwrap();
    let config = evil.path().join("evil.toml");
    fs::write(&config, "[this is not toml\nvisible_devices = \"all\"\n").unwrap();
    let env = [
        "NVIDIA_VISIBLE_DEVICES=0:1".to_string(),
        format!("LD_PRELOAD={ld_preload}"),
        format!("MIGHOOK_PROC_ROOT={}", proc_root.display()),
        format!("MIGHOOK_NVML_LIB={}", nvml.display()),
        format!("MIGHOOK_CONFIG={}", config.display()),
    ];
    let args = mig_probe_args();
    let bundle = Bundle::probe(&strs(&env), &strs(&args)).with_mighook(&node);
    let p = rt.run_probe(&bundle);
    assert_exactly_mig_0_1(rt, &node, &p);
    if let Some(marker) = marker {
        assert!(!marker.exists(), "the image's LD_PRELOAD was loaded by something on the host");
    }
}

#[test]
fn image_env_cannot_steer_the_hook_nonexistent_preload() {
    image_env_cannot_steer_the_hook(|_| ("/nonexistent.so".to_string(), None));
}

#[test]
fn image_env_cannot_steer_the_hook_marker_preload() {
    image_env_cannot_steer_the_hook(|dir| {
        let marker = dir.join("preload-was-loaded");
        let so = support::marker_so(dir, "preload", &marker);
        (so.display().to_string(), Some(marker))
    });
}
