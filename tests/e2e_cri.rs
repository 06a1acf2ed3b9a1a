//! Kubernetes as deployed, without a cluster: the kubelet's CRI calls to containerd's own
//! CRI plugin (tests/support/cri.rs), on the `nvidia` runtime handler that
//! `mighook setup containerd` configured, with the containers' configs carrying exactly
//! what NVIDIA's k8s-device-plugin answers to `Allocate` for each `DEVICE_LIST_STRATEGY`
//! (envvar, volume-mounts, cdi-annotations) and each `MIG_STRATEGY`:
//!
//! - single: a node whose GPUs are all split into 1g.5gb, advertised as `nvidia.com/gpu`;
//!   two pods get MIG devices 1 and 2 of GPU 0;
//! - mixed: the a100x8 node with several profiles; one pod gets a `nvidia.com/mig-1g.5gb`
//!   and one a `nvidia.com/mig-2g.10gb`, both on GPU 5.
//!
//! Both pods run at the same time. Inside each (through `ExecSync`), the probe must find
//! exactly its own MIG device's nodes (parent GPU, its GI and CI capabilities, nvidiactl,
//! nvidia-uvm*), each opening with ENXIO (allowed, no driver), and the other pod's
//! capabilities, other GPUs and the MIG config/monitor nodes mknod'ed and denied (EPERM);
//! `nvidia-smi -L` (the fake driver's, injected from the node's driver root) must list
//! exactly its GPU and MIG device. With volume-mounts and cdi-annotations the node runs the
//! recommended policy (`accept-envvar-when-unprivileged = false`), and a third pod that sets
//! `NVIDIA_VISIBLE_DEVICES=all` in its own spec must get no GPU at all. Pods are stopped and
//! removed through CRI, and nothing stays mounted.
//!
//! The cdi-annotations case uses the plugin's own CDI kind `k8s.device-plugin.nvidia.com/gpu`.
//! Root, containerd and runc are required (scripts/install-deps.sh); without them each test
//! prints `SKIPPED:` and on CI it fails.

#[path = "support/cri.rs"]
mod cri;
#[path = "support/engines.rs"]
#[allow(unused_imports)]
mod engines;
mod support;

use cri::{Allocation, CriContainerd, Strategy};
use std::collections::BTreeMap;
use support::{Layout, ProbeOutput, SimNode};

/// The image's layout; the driver root has the other one.
const IMAGE: Layout = Layout::Debian;
const DRIVER: Layout = Layout::Rhel;

/// One CRI containerd at a time: they share /run/containerd/runc/k8s.io, and 2 cores.
static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn can_run() -> bool {
    support::require_root_and(&[
        "containerd",
        "ctr",
        "runc",
        "gcc",
        "busybox",
        "timeout",
        "tar",
        "sha256sum",
        "ldconfig",
    ])
}

/// `MIG_STRATEGY` of the device plugin, with the node it fits and the two allocations made.
#[derive(Debug, Clone, Copy)]
enum MigStrategy {
    Single,
    Mixed,
}

impl MigStrategy {
    fn topology(self) -> &'static str {
        match self {
            // single: every MIG device of the node alike (the plugin refuses a node otherwise).
            MigStrategy::Single => "a100x8-all-1g",
            MigStrategy::Mixed => "a100x8",
        }
    }

    /// (resource name, GPU index, MIG slot) of the two pods' devices: two devices of one GPU.
    fn pods(self) -> [(&'static str, usize, u32); 2] {
        match self {
            MigStrategy::Single => [("nvidia.com/gpu", 0, 1), ("nvidia.com/gpu", 0, 2)],
            MigStrategy::Mixed => [("nvidia.com/mig-1g.5gb", 5, 2), ("nvidia.com/mig-2g.10gb", 5, 1)],
        }
    }
}

/// One MIG device of the simulated node, from its topology file and its mig-minors.
#[derive(Debug, Clone)]
struct Mig {
    uuid: String,
    profile: String,
    gpu_uuid: String,
    gpu_name: String,
    gpu_minor: u32,
    gi_cap: u32,
    ci_cap: u32,
}

impl Mig {
    fn of(node: &SimNode, gpu_index: usize, slot: u32) -> Mig {
        let path = support::workspace_root().join(format!("tests/topologies/{}.json", node.topology()));
        let topo: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let gpu = &topo["gpus"][gpu_index];
        let mig = gpu["migDevices"].as_array().unwrap().iter().find(|m| m["slot"] == slot).expect("slot in topology");
        let minor = gpu["minor"].as_u64().unwrap() as u32;
        let (gi, ci) = (mig["gi"].as_u64().unwrap(), mig["ci"].as_u64().unwrap());
        let minors = std::fs::read_to_string(node.proc_root().join("driver/nvidia-caps/mig-minors")).unwrap();
        let cap = |name: String| -> u32 {
            let line = minors.lines().find_map(|l| l.strip_prefix(&format!("{name} "))).expect("cap in mig-minors");
            line.trim().parse().unwrap()
        };
        Mig {
            uuid: mig["uuid"].as_str().unwrap().into(),
            profile: mig["profile"].as_str().unwrap().into(),
            gpu_uuid: gpu["uuid"].as_str().unwrap().into(),
            gpu_name: gpu["name"].as_str().unwrap().into(),
            gpu_minor: minor,
            gi_cap: cap(format!("gpu{minor}/gi{gi}/access")),
            ci_cap: cap(format!("gpu{minor}/gi{gi}/ci{ci}/access")),
        }
    }

    /// The nodes a container of this device gets: (path, major, minor).
    fn nodes(&self) -> Vec<(String, u32, u32)> {
        vec![
            ("/dev/nvidiactl".into(), 195, 255),
            ("/dev/nvidia-uvm".into(), 511, 0),
            ("/dev/nvidia-uvm-tools".into(), 511, 1),
            (format!("/dev/nvidia{}", self.gpu_minor), 195, self.gpu_minor),
            (format!("/dev/nvidia-caps/nvidia-cap{}", self.gi_cap), 508, self.gi_cap),
            (format!("/dev/nvidia-caps/nvidia-cap{}", self.ci_cap), 508, self.ci_cap),
        ]
    }

    /// Nodes the probe mknods and that must stay denied: `other`'s capabilities (a device of
    /// the same GPU), two other GPUs, modeset, MIG config/monitor, another uvm minor.
    fn neighbours(&self, other: &Mig) -> Vec<(String, u32, u32)> {
        assert!(other.gi_cap != self.gi_cap && other.ci_cap != self.ci_cap, "the two devices share an instance");
        let mut out = vec![
            ("/dev/nb-other-gi".to_string(), 508, other.gi_cap),
            ("/dev/nb-other-ci".into(), 508, other.ci_cap),
            ("/dev/nb-modeset".into(), 195, 254),
            ("/dev/nb-mig-config".into(), 508, 1),
            ("/dev/nb-mig-monitor".into(), 508, 2),
            ("/dev/nb-uvm2".into(), 511, 2),
        ];
        for minor in (0..8).filter(|m| *m != self.gpu_minor).take(2) {
            out.push((format!("/dev/nb-gpu{minor}"), 195, minor));
        }
        out
    }

    /// `nvidia-smi -L` in a container that sees only this device.
    fn smi(&self) -> String {
        format!(
            "GPU 0: {} (UUID: {})\n  MIG {:<11} Device {:>2}: (UUID: {})\n",
            self.gpu_name, self.gpu_uuid, self.profile, 0, self.uuid
        )
    }
}

/// The probe's argv: listings, the device's nodes, then the mknod'ed neighbours (0444: a
/// stray read-only grant would show as ENXIO).
fn probe_argv(mig: &Mig, other: &Mig) -> Vec<String> {
    let mut args = vec!["/bin/openprobe".to_string(), "ls:/dev".into(), "ls:/dev/nvidia-caps".into()];
    args.extend(mig.nodes().into_iter().map(|(p, _, _)| p));
    args.extend(mig.neighbours(other).into_iter().map(|(p, maj, min)| format!("mknod:{p}:{maj}:{min}:0444")));
    args
}

/// ENXIO on each of the device's nodes, EPERM on each neighbour, and no other NVIDIA node.
fn assert_exactly(label: &str, p: &ProbeOutput, mig: &Mig, other: &Mig) {
    for (path, major, minor) in mig.nodes() {
        assert_eq!(
            p.summary_of(&path),
            format!("c {major}:{minor} errno=6"),
            "{label}: {path} must exist and be allowed"
        );
    }
    for (path, major, minor) in mig.neighbours(other) {
        assert_eq!(
            p.summary_of(&path),
            format!("c {major}:{minor} errno=1"),
            "{label}: neighbour {path} must be denied"
        );
    }
    let mut want_dev = vec![
        "nvidia-caps".to_string(),
        "nvidia-uvm".into(),
        "nvidia-uvm-tools".into(),
        format!("nvidia{}", mig.gpu_minor),
        "nvidiactl".into(),
    ];
    want_dev.sort();
    let nvidia: Vec<String> = p.ls_or_empty("/dev").into_iter().filter(|n| n.starts_with("nvidia")).collect();
    assert_eq!(nvidia, want_dev, "{label}: /dev");
    let mut want_caps = vec![format!("nvidia-cap{}", mig.gi_cap), format!("nvidia-cap{}", mig.ci_cap)];
    want_caps.sort();
    assert_eq!(p.ls("/dev/nvidia-caps"), want_caps, "{label}: /dev/nvidia-caps");
}

/// The policy of the node's /etc/mighook/config.toml for a strategy.
fn policy(strategy: Strategy) -> &'static str {
    match strategy {
        // The plugin's default: the env var is the request, so env requests are accepted.
        Strategy::Envvar => "",
        // docs/engines/kubernetes.md's recommendation: only the kubelet's mounts count.
        Strategy::VolumeMounts => "accept-volume-mounts = true\naccept-envvar-when-unprivileged = false\n",
        Strategy::CdiAnnotations => {
            "annotation-prefixes = [\"cdi.k8s.io/\"]\naccept-envvar-when-unprivileged = false\n"
        }
    }
}

/// Two pods on two MIG devices of one GPU under `strategy`, at the same time, each seeing only
/// its own; with an env-refusing policy a third pod asking by env gets nothing.
fn two_pods(strategy: Strategy, mig_strategy: MigStrategy) {
    if !can_run() {
        return;
    }
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    let node = SimNode::with_driver_root(mig_strategy.topology(), DRIVER);
    let driver_before = support::tree(&node.driver_root());
    let ctrd = CriContainerd::start(&node, policy(strategy));
    let dir = ctrd.dir().to_path_buf();
    assert!(ctrd.dropin().contains("[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.nvidia]"));
    ctrd.import(&engines::glibc_oci_archive(IMAGE));
    let image = engines::glibc_image_name(IMAGE);
    let sleep = ["/bin/sleep", "3600"];

    let [(res_a, gpu_a, slot_a), (res_b, gpu_b, slot_b)] = mig_strategy.pods();
    let migs = [Mig::of(&node, gpu_a, slot_a), Mig::of(&node, gpu_b, slot_b)];
    let resources = [res_a, res_b];
    let mut pods = vec![];
    for (i, mig) in migs.iter().enumerate() {
        let what = format!("{} {:?} {}: {}", strategy.name(), mig_strategy, resources[i], mig.uuid);
        let pod = ctrd.run_pod(&format!("gpu-{i}"));
        let container = ctrd.start_container(&pod, &image, &sleep, &[], &Allocation::of(strategy, &[&mig.uuid]));
        pods.push((what, pod, container));
    }
    // Both run now; each sees its own device only.
    for (i, (what, _, container)) in pods.iter().enumerate() {
        let (mig, other) = (&migs[i], &migs[1 - i]);
        assert_eq!(ctrd.container_state(container), k8s_cri::v1::ContainerState::ContainerRunning as i32, "{what}");
        let argv = probe_argv(mig, other);
        let (code, out, err) = ctrd.exec(container, &argv.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(code, 0, "{what}: probe: {err}");
        assert_exactly(what, &ProbeOutput::parse(&out), mig, other);
        let (code, out, err) = ctrd.exec(container, &["/usr/bin/nvidia-smi", "-L"]);
        assert_eq!((code, out.as_str()), (0, mig.smi().as_str()), "{what}: nvidia-smi -L: {err}");
    }

    if strategy != Strategy::Envvar {
        // A pod's own env is no request under this policy: `all` gets no GPU node, no nvidia-smi.
        let pod = ctrd.run_pod("asks-by-env");
        let container =
            ctrd.start_container(&pod, &image, &sleep, &[("NVIDIA_VISIBLE_DEVICES", "all")], &Allocation::default());
        let (code, out, err) = ctrd.exec(container.as_str(), &["/bin/ls", "/dev"]);
        assert_eq!(code, 0, "ls /dev: {err}");
        assert!(!out.contains("nvidia"), "a pod's own NVIDIA_VISIBLE_DEVICES=all was served:\n{out}");
        let (code, _, _) = ctrd.exec(&container, &["/bin/sh", "-c", "test -e /usr/bin/nvidia-smi"]);
        assert_eq!(code, 1, "a pod's own NVIDIA_VISIBLE_DEVICES=all got nvidia-smi");
        pods.push(("asks-by-env".into(), pod, container));
    }

    for (what, pod, _) in &pods {
        ctrd.remove_pod(&pod.id);
        assert!(!ctrd.pod_ids().contains(&pod.id), "{what}: pod still listed after RemovePodSandbox");
    }
    drop(ctrd);
    assert_eq!(cri::mounts_under(&dir), Vec::<std::path::PathBuf>::new(), "mounts left behind");
    assert_eq!(support::tree(&node.driver_root()), driver_before, "the driver root changed");
}

#[test]
fn cri_envvar_single() {
    two_pods(Strategy::Envvar, MigStrategy::Single);
}

#[test]
fn cri_envvar_mixed() {
    two_pods(Strategy::Envvar, MigStrategy::Mixed);
}

#[test]
fn cri_volume_mounts_single() {
    two_pods(Strategy::VolumeMounts, MigStrategy::Single);
}

#[test]
fn cri_volume_mounts_mixed() {
    two_pods(Strategy::VolumeMounts, MigStrategy::Mixed);
}

#[test]
fn cri_cdi_annotations_single() {
    two_pods(Strategy::CdiAnnotations, MigStrategy::Single);
}

#[test]
fn cri_cdi_annotations_mixed() {
    two_pods(Strategy::CdiAnnotations, MigStrategy::Mixed);
}

/// The drop-in setup wrote is what containerd runs: `containerd config dump` shows the
/// `nvidia` handler with the shim as BinaryName next to the default runc.
#[test]
fn cri_handler_is_the_one_setup_wrote() {
    if !can_run() {
        return;
    }
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    let node = SimNode::new("a100x8");
    let ctrd = CriContainerd::start(&node, "");
    let shim = ctrd.dir().join("bin/nvidia-container-runtime");
    assert_eq!(std::fs::read_link(&shim).unwrap(), std::path::Path::new("mighook"), "{}", ctrd.setup_output);
    let dump = engines::ok(
        std::process::Command::new(support::tool("containerd"))
            .arg("--config")
            .arg(ctrd.dir().join("host/etc/containerd/config.toml"))
            .args(["config", "dump"]),
        "containerd config dump",
    );
    let dump: toml::Table = String::from_utf8_lossy(&dump.stdout).parse().unwrap();
    let runtimes = &dump["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"];
    let got: BTreeMap<&str, &str> = ["runc", "nvidia"]
        .into_iter()
        .map(|name| (name, runtimes[name]["runtime_type"].as_str().unwrap_or("<none>")))
        .collect();
    assert_eq!(got, BTreeMap::from([("nvidia", "io.containerd.runc.v2"), ("runc", "io.containerd.runc.v2")]));
    assert_eq!(runtimes["nvidia"]["options"]["BinaryName"].as_str(), shim.to_str());
    assert_eq!(dump["plugins"]["io.containerd.grpc.v1.cri"]["sandbox_image"].as_str(), Some(cri::PAUSE_IMAGE));
}
