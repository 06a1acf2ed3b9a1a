//! IMEX channels end to end on the simulated 8×A100 node (`a100x8`, whose host
//! has `/dev/nvidia-caps-imex-channels/channel0` and `channel1`, major 509):
//! through the prestart hook under real runc (cgroup v1 and v2), through the
//! runtime shim under real runc, and through CDI (`cdi generate --kind
//! nvidia.com/imex-channel`) under podman.
//!
//! Major 509 has no driver here, so open() of a channel node gives ENXIO when
//! the devices cgroup allows it and EPERM when it does not. Each container asks
//! for channel 1 and mknods channel 0 itself (it has CAP_MKNOD): channel 1 must
//! be there and open with ENXIO, channel 0 must be denied with EPERM.

#[path = "support/engines.rs"]
mod engines;
mod support;

use engines::{CdiDir, MIG_0_1_UUID, MighookInstall, Podman, probe_output};
use std::path::{Path, PathBuf};
use std::process::Command;
use support::{Bundle, ENXIO, EPERM, ProbeOutput, Runtime, SimNode};

const TOPOLOGY: &str = "a100x8";
const CHANNEL_1: &str = "/dev/nvidia-caps-imex-channels/channel1";
/// Channel 0, made by the probe itself: the host has it, the container did not ask for it.
const OWN_CHANNEL_0: &str = "/dev/nb-imex0";

fn probe_args() -> Vec<String> {
    vec![
        "ls:/dev/nvidia-caps-imex-channels".into(),
        CHANNEL_1.into(),
        format!("mknod:{OWN_CHANNEL_0}:509:0"),
        "/dev/nvidia2".into(),
    ]
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Channel 1 granted (with the host node's mode), channel 0 denied, the MIG parent still granted.
fn assert_exactly_channel_1(label: &str, p: &ProbeOutput) {
    assert_eq!(p.ls("/dev/nvidia-caps-imex-channels"), ["channel1"], "{label}: /dev/nvidia-caps-imex-channels");
    assert_eq!(p.summary_of(CHANNEL_1), format!("c 509:1 errno={ENXIO}"), "{label}: the asked channel");
    assert_eq!(p.get(CHANNEL_1).mode, 0o666, "{label}: the host node's mode");
    assert_eq!(p.summary_of(OWN_CHANNEL_0), format!("c 509:0 errno={EPERM}"), "{label}: a channel not asked for");
    assert_eq!(p.summary_of("/dev/nvidia2"), format!("c 195:2 errno={ENXIO}"), "{label}: the MIG parent");
}

fn can_run(rt: Runtime) -> bool {
    support::runtime::can_run(rt, &[])
}

/// A config file for the node: its dev root (where the host's channel nodes are) and runc.
fn config_for(node: &SimNode) -> PathBuf {
    let path = node.dir().join("mighook-imex.toml");
    let text = format!("dev-root = {:?}\nlow-level-runtime = \"runc\"\n", node.dev_root().to_str().unwrap());
    std::fs::write(&path, text).unwrap();
    path
}

/// `mighook --config C --nvml-lib L --proc-root P prestart` as the bundle's prestart hook.
fn with_hook(bundle: Bundle, node: &SimNode) -> Bundle {
    let config = config_for(node);
    let mut args = vec!["mighook".to_string(), "--config".into(), config.to_str().unwrap().into()];
    args.extend(node.mighook_args());
    args.push("prestart".into());
    bundle.with_prestart_hook(&support::mighook_bin(), &strs(&args), &[support::bundle::HOOK_PATH_ENV])
}

fn hook_gives_exactly_the_asked_channel(rt: Runtime) {
    if !can_run(rt) {
        return;
    }
    let node = SimNode::new(TOPOLOGY);
    let env = ["NVIDIA_VISIBLE_DEVICES=0:1", "NVIDIA_IMEX_CHANNELS=1"];
    let bundle = with_hook(Bundle::probe(&env, &strs(&probe_args())), &node);
    assert_exactly_channel_1(rt.name(), &rt.run_probe(&bundle));
    support::rootfs::assert_pristine(&bundle.rootfs());
}

#[test]
fn hook_gives_exactly_the_asked_channel_runc_v1() {
    hook_gives_exactly_the_asked_channel(Runtime::RuncV1);
}

#[test]
fn hook_gives_exactly_the_asked_channel_runc_v2() {
    hook_gives_exactly_the_asked_channel(Runtime::RuncV2);
}

/// A channel the host has no node for refuses the start, naming it and what the host has.
#[test]
fn hook_refuses_a_channel_the_host_lacks() {
    let rt = Runtime::RuncV1;
    if !can_run(rt) {
        return;
    }
    let node = SimNode::new(TOPOLOGY);
    let env = ["NVIDIA_VISIBLE_DEVICES=0:1", "NVIDIA_IMEX_CHANNELS=1,5"];
    let bundle = with_hook(Bundle::probe(&env, &["/dev/null"]), &node);
    let out = rt.run(&bundle);
    assert!(!out.status.success(), "must fail\n{}", support::runtime::describe(&out));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("probe: done"), "the process must not run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("IMEX channel 5: not on this host (no /dev/nvidia-caps-imex-channels/channel<N>; it has 0, 1)"),
        "{stderr}"
    );
    support::rootfs::assert_pristine(&bundle.rootfs());
}

/// `NVIDIA_IMEX_CHANNELS=all`: every channel the host has, and nothing else of major 509.
#[test]
fn hook_gives_every_host_channel_for_all() {
    let rt = Runtime::RuncV1;
    if !can_run(rt) {
        return;
    }
    let node = SimNode::new(TOPOLOGY);
    let env = ["NVIDIA_VISIBLE_DEVICES=0:1", "NVIDIA_IMEX_CHANNELS=all"];
    let args = [
        "ls:/dev/nvidia-caps-imex-channels",
        "/dev/nvidia-caps-imex-channels/channel0",
        "/dev/nvidia-caps-imex-channels/channel1",
        "mknod:/dev/nb-imex2:509:2",
    ];
    let p = rt.run_probe(&with_hook(Bundle::probe(&env, &args), &node));
    assert_eq!(p.ls("/dev/nvidia-caps-imex-channels"), ["channel0", "channel1"]);
    assert_eq!(p.summary_of("/dev/nvidia-caps-imex-channels/channel0"), format!("c 509:0 errno={ENXIO}"));
    assert_eq!(p.summary_of("/dev/nvidia-caps-imex-channels/channel1"), format!("c 509:1 errno={ENXIO}"));
    assert_eq!(p.summary_of("/dev/nb-imex2"), format!("c 509:2 errno={EPERM}"));
}

/// The runtime shim writes the channel into config.json; real runc makes and allows it.
#[test]
fn shim_gives_exactly_the_asked_channel_under_runc() {
    let rt = Runtime::RuncV1;
    if !can_run(rt) {
        return;
    }
    let node = SimNode::new(TOPOLOGY);
    let config = config_for(&node);
    let env = ["NVIDIA_VISIBLE_DEVICES=0:1", "NVIDIA_IMEX_CHANNELS=1"];
    let bundle = Bundle::probe(&env, &strs(&probe_args()));
    let state = bundle.state_dir("runc");
    let b = bundle.path().to_str().unwrap();
    let out = Command::new("timeout")
        .args(["-k", "5", "60"])
        .arg(support::mighook_bin())
        .arg("--config")
        .arg(&config)
        .args(node.mighook_args())
        .arg("runtime")
        .arg("--root")
        .arg(&state)
        .args(["run", "--bundle", b, &bundle.id])
        .current_dir(bundle.path())
        .env_remove("MIGHOOK_CONFIG")
        .output()
        .unwrap();
    // `run` deletes the container; this only cleans up after a failure.
    let _ = Command::new(support::tool("runc")).arg("--root").arg(&state).args(["delete", "-f", &bundle.id]).output();
    assert!(out.status.success(), "run through the shim failed\n{}", support::runtime::describe(&out));
    let p = ProbeOutput::parse(&String::from_utf8_lossy(&out.stdout));
    assert_exactly_channel_1("shim", &p);
}

/// `mighook --config C cdi generate --kind KIND --output FILE`.
fn generate(install: &MighookInstall, kind: &str, file: &Path) {
    engines::ok(
        Command::new(support::mighook_bin())
            .arg("--config")
            .arg(install.config())
            .args(["cdi", "generate", "--kind", kind, "--output"])
            .arg(file),
        "mighook cdi generate",
    );
}

#[test]
fn cdi_generate_imex_kind_lists_the_host_channels() {
    if !support::require_root_and(&[]) {
        return;
    }
    let node = SimNode::new(TOPOLOGY);
    let install = MighookInstall::new(&node);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("imex.json");
    generate(&install, "nvidia.com/imex-channel", &file);
    let spec: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(spec["kind"], "nvidia.com/imex-channel");
    let names: Vec<&str> = spec["devices"].as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["0", "1"]);
    let n = &spec["devices"][1]["containerEdits"]["deviceNodes"][0];
    assert_eq!(n["path"], CHANNEL_1);
    assert_eq!(n["hostPath"], format!("{}/nvidia-caps-imex-channels/channel1", node.dev_root().display()));
    assert_eq!((n["major"].as_u64(), n["minor"].as_u64()), (Some(509), Some(1)));
    assert_eq!(n["permissions"], "rw");
    assert_eq!(spec["containerEdits"]["env"], serde_json::json!(["NVIDIA_VISIBLE_DEVICES=void"]));
}

/// podman's own CDI: `--device nvidia.com/gpu=MIG-<uuid> --device nvidia.com/imex-channel=1`.
#[test]
fn podman_cdi_imex_channel_gives_exactly_it() {
    if !support::require_root_and(&["podman", "runc", "gcc", "busybox", "timeout", "tar", "unshare", "mountpoint"]) {
        return;
    }
    let node = SimNode::new(TOPOLOGY);
    let install = MighookInstall::new(&node);
    let cdi = CdiDir::new();
    generate(&install, "nvidia.com/gpu", &cdi.path().join("mighook-gpu.json"));
    generate(&install, "nvidia.com/imex-channel", &cdi.path().join("mighook-imex.json"));
    let podman = Podman::new();
    let image = podman.import_busybox();
    let no_hooks = podman.no_hooks_dir();
    let mut args = vec!["--hooks-dir", no_hooks.to_str().unwrap(), "--cap-add", "MKNOD"];
    let gpu = format!("nvidia.com/gpu={MIG_0_1_UUID}");
    args.extend(["--device", gpu.as_str(), "--device", "nvidia.com/imex-channel=1", image.as_str()]);
    let probe = probe_args();
    args.push("/bin/openprobe");
    args.extend(strs(&probe));
    let out = podman.run_in_ns(Some(&cdi), "runc", &args);
    assert_exactly_channel_1("podman CDI", &probe_output(&out, "podman --device nvidia.com/imex-channel=1"));
}

/// `mighook resolve --imex-channels`: what a container asking for channels would get.
#[test]
fn resolve_shows_the_channel_nodes_and_rules() {
    if !support::require_root_and(&[]) {
        return;
    }
    let node = SimNode::new(TOPOLOGY);
    let config = config_for(&node);
    let out = Command::new(support::mighook_bin())
        .arg("--config")
        .arg(&config)
        .args(node.mighook_args())
        .args(["resolve", "--imex-channels", "1", "0:1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", support::runtime::describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("  c 509:1 0666 /dev/nvidia-caps-imex-channels/channel1\n"), "{text}");
    assert!(text.contains("  allow c 509:1 rw\n"), "{text}");
    assert!(!text.contains("509:0"), "{text}");
    let missing = Command::new(support::mighook_bin())
        .arg("--config")
        .arg(&config)
        .args(node.mighook_args())
        .args(["resolve", "--imex-channels", "2", "0:1"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert_eq!(
        String::from_utf8_lossy(&missing.stderr),
        "mighook: IMEX channel 2: not on this host (no /dev/nvidia-caps-imex-channels/channel<N>; it has 0, 1)\n"
    );
}
