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
//! removed through CRI, and nothing stays mounted. Ids are the plugin's default `MIG-<uuid>`,
//! and `<gpu>:<mig>` (`DEVICE_ID_STRATEGY=index`) in the `_index_ids` cases. In the mixed
//! `_two_resource_types` cases one container asks for both resource types: the kubelet merges
//! the two answers, and the container gets both devices and not the GPU's third.
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

/// `DEVICE_ID_STRATEGY` of the device plugin: the ids its answer carries.
#[derive(Debug, Clone, Copy)]
enum Ids {
    /// `MIG-<uuid>` (the plugin's default).
    Uuid,
    /// `<gpu index>:<mig index>`.
    Index,
}

/// One MIG device of the simulated node, from its topology file and its mig-minors.
#[derive(Debug, Clone)]
struct Mig {
    /// The plugin's index id, `<gpu index>:<slot>`.
    index: String,
    slot: u32,
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
            index: format!("{gpu_index}:{slot}"),
            slot,
            uuid: mig["uuid"].as_str().unwrap().into(),
            profile: mig["profile"].as_str().unwrap().into(),
            gpu_uuid: gpu["uuid"].as_str().unwrap().into(),
            gpu_name: gpu["name"].as_str().unwrap().into(),
            gpu_minor: minor,
            gi_cap: cap(format!("gpu{minor}/gi{gi}/access")),
            ci_cap: cap(format!("gpu{minor}/gi{gi}/ci{ci}/access")),
        }
    }

    fn id(&self, ids: Ids) -> &str {
        match ids {
            Ids::Uuid => &self.uuid,
            Ids::Index => &self.index,
        }
    }
}

/// The nodes a container of `migs` gets: (path, major, minor), in the probe's order.
fn nodes(migs: &[&Mig]) -> Vec<(String, u32, u32)> {
    let mut out: Vec<(String, u32, u32)> = vec![
        ("/dev/nvidiactl".into(), 195, 255),
        ("/dev/nvidia-uvm".into(), 511, 0),
        ("/dev/nvidia-uvm-tools".into(), 511, 1),
    ];
    for m in migs {
        out.push((format!("/dev/nvidia{}", m.gpu_minor), 195, m.gpu_minor));
        out.push((format!("/dev/nvidia-caps/nvidia-cap{}", m.gi_cap), 508, m.gi_cap));
        out.push((format!("/dev/nvidia-caps/nvidia-cap{}", m.ci_cap), 508, m.ci_cap));
    }
    out.sort();
    out.dedup();
    out
}

/// Nodes the probe mknods and that must stay denied: the capabilities of `others` (devices of
/// the same GPU), two other GPUs, modeset, MIG config/monitor, another uvm minor.
fn neighbours(migs: &[&Mig], others: &[&Mig]) -> Vec<(String, u32, u32)> {
    let mine: Vec<u32> = migs.iter().flat_map(|m| [m.gi_cap, m.ci_cap]).collect();
    let mut out = vec![];
    for (i, o) in others.iter().enumerate() {
        assert!(!mine.contains(&o.gi_cap) && !mine.contains(&o.ci_cap), "{} shares an instance", o.uuid);
        out.push((format!("/dev/nb-other{i}-gi"), 508, o.gi_cap));
        out.push((format!("/dev/nb-other{i}-ci"), 508, o.ci_cap));
    }
    out.extend([
        ("/dev/nb-modeset".to_string(), 195, 254),
        ("/dev/nb-mig-config".into(), 508, 1),
        ("/dev/nb-mig-monitor".into(), 508, 2),
        ("/dev/nb-uvm2".into(), 511, 2),
    ]);
    for minor in (0..8).filter(|m| migs.iter().all(|mig| mig.gpu_minor != *m)).take(2) {
        out.push((format!("/dev/nb-gpu{minor}"), 195, minor));
    }
    out
}

/// `nvidia-smi -L` in a container that sees only `migs` (all of one GPU).
fn smi(migs: &[&Mig]) -> String {
    let gpu = migs[0];
    assert!(migs.iter().all(|m| m.gpu_uuid == gpu.gpu_uuid), "one GPU per container here");
    let mut by_slot = migs.to_vec();
    by_slot.sort_by_key(|m| m.slot);
    let mut out = format!("GPU 0: {} (UUID: {})\n", gpu.gpu_name, gpu.gpu_uuid);
    for (i, m) in by_slot.iter().enumerate() {
        out.push_str(&format!("  MIG {:<11} Device {i:>2}: (UUID: {})\n", m.profile, m.uuid));
    }
    out
}

/// The probe's argv: listings, the devices' nodes, then the mknod'ed neighbours (0444: a
/// stray read-only grant would show as ENXIO).
fn probe_argv(migs: &[&Mig], others: &[&Mig]) -> Vec<String> {
    let mut args = vec!["/bin/openprobe".to_string(), "ls:/dev".into(), "ls:/dev/nvidia-caps".into()];
    args.extend(nodes(migs).into_iter().map(|(p, _, _)| p));
    args.extend(neighbours(migs, others).into_iter().map(|(p, maj, min)| format!("mknod:{p}:{maj}:{min}:0444")));
    args
}

/// ENXIO on each of the devices' nodes, EPERM on each neighbour, and no other NVIDIA node.
fn assert_exactly(label: &str, p: &ProbeOutput, migs: &[&Mig], others: &[&Mig]) {
    for (path, major, minor) in nodes(migs) {
        assert_eq!(
            p.summary_of(&path),
            format!("c {major}:{minor} errno=6"),
            "{label}: {path} must exist and be allowed"
        );
    }
    for (path, major, minor) in neighbours(migs, others) {
        assert_eq!(
            p.summary_of(&path),
            format!("c {major}:{minor} errno=1"),
            "{label}: neighbour {path} must be denied"
        );
    }
    let mut want_dev: Vec<String> =
        ["nvidia-caps", "nvidia-uvm", "nvidia-uvm-tools", "nvidiactl"].map(String::from).into();
    want_dev.extend(migs.iter().map(|m| format!("nvidia{}", m.gpu_minor)));
    want_dev.sort();
    want_dev.dedup();
    let nvidia: Vec<String> = p.ls_or_empty("/dev").into_iter().filter(|n| n.starts_with("nvidia")).collect();
    assert_eq!(nvidia, want_dev, "{label}: /dev");
    let mut want_caps: Vec<String> =
        migs.iter().flat_map(|m| [m.gi_cap, m.ci_cap]).map(|c| format!("nvidia-cap{c}")).collect();
    want_caps.sort();
    want_caps.dedup();
    assert_eq!(p.ls("/dev/nvidia-caps"), want_caps, "{label}: /dev/nvidia-caps");
}

/// Probe and `nvidia-smi -L` in a running container through `ExecSync`: exactly `migs`.
fn assert_container_sees(ctrd: &CriContainerd, what: &str, container: &str, migs: &[&Mig], others: &[&Mig]) {
    assert_eq!(ctrd.container_state(container), k8s_cri::v1::ContainerState::ContainerRunning as i32, "{what}");
    let argv = probe_argv(migs, others);
    let (code, out, err) = ctrd.exec(container, &argv.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 0, "{what}: probe: {err}");
    assert_exactly(what, &ProbeOutput::parse(&out), migs, others);
    let (code, out, err) = ctrd.exec(container, &["/usr/bin/nvidia-smi", "-L"]);
    assert_eq!((code, out.as_str()), (0, smi(migs).as_str()), "{what}: nvidia-smi -L: {err}");
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

/// The node with a driver root, containerd with CRI and the handler, the glibc image imported.
fn start(topology: &str, strategy: Strategy) -> (SimNode, CriContainerd, String) {
    let node = SimNode::with_driver_root(topology, DRIVER);
    let ctrd = CriContainerd::start(&node, policy(strategy));
    assert!(ctrd.dropin().contains("[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.nvidia]"));
    ctrd.import(&engines::glibc_oci_archive(IMAGE));
    (node, ctrd, engines::glibc_image_name(IMAGE))
}

/// Removes `pods` through CRI, stops containerd, and checks that nothing stayed mounted.
fn finish(ctrd: CriContainerd, pods: &[cri::Pod]) {
    for pod in pods {
        ctrd.remove_pod(&pod.id);
        assert!(!ctrd.pod_ids().contains(&pod.id), "{}: pod still listed after RemovePodSandbox", pod.name);
    }
    let dir = ctrd.dir().to_path_buf();
    drop(ctrd);
    assert_eq!(cri::mounts_under(&dir), Vec::<std::path::PathBuf>::new(), "mounts left behind");
}

const SLEEP: [&str; 2] = ["/bin/sleep", "3600"];

/// Two pods on two MIG devices of one GPU under `strategy`, at the same time, each seeing only
/// its own; with an env-refusing policy a third pod asking by env gets nothing.
fn two_pods(strategy: Strategy, mig_strategy: MigStrategy, ids: Ids) {
    if !can_run() {
        return;
    }
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    let (node, ctrd, image) = start(mig_strategy.topology(), strategy);
    let driver_before = support::tree(&node.driver_root());

    let [(res_a, gpu_a, slot_a), (res_b, gpu_b, slot_b)] = mig_strategy.pods();
    let migs = [Mig::of(&node, gpu_a, slot_a), Mig::of(&node, gpu_b, slot_b)];
    let resources = [res_a, res_b];
    let mut pods = vec![];
    for (i, mig) in migs.iter().enumerate() {
        let what = format!("{} {mig_strategy:?} {ids:?} {}: {}", strategy.name(), resources[i], mig.uuid);
        let pod = ctrd.run_pod(&format!("gpu-{i}"));
        let container = ctrd.start_container(&pod, &image, &SLEEP, &[], &Allocation::of(strategy, &[mig.id(ids)]));
        pods.push((what, pod, container));
    }
    // Both run now; each sees its own device only.
    for (i, (what, _, container)) in pods.iter().enumerate() {
        assert_container_sees(&ctrd, what, container, &[&migs[i]], &[&migs[1 - i]]);
    }
    let mut pods: Vec<cri::Pod> = pods.into_iter().map(|(_, pod, _)| pod).collect();

    if strategy != Strategy::Envvar {
        // A pod's own env is no request under this policy: `all` gets no GPU node, no nvidia-smi.
        let pod = ctrd.run_pod("asks-by-env");
        let env = [("NVIDIA_VISIBLE_DEVICES", "all")];
        let container = ctrd.start_container(&pod, &image, &SLEEP, &env, &Allocation::default());
        let (code, out, err) = ctrd.exec(&container, &["/bin/ls", "/dev"]);
        assert_eq!(code, 0, "ls /dev: {err}");
        assert!(!out.contains("nvidia"), "a pod's own NVIDIA_VISIBLE_DEVICES=all was served:\n{out}");
        let (code, _, _) = ctrd.exec(&container, &["/bin/sh", "-c", "test -e /usr/bin/nvidia-smi"]);
        assert_eq!(code, 1, "a pod's own NVIDIA_VISIBLE_DEVICES=all got nvidia-smi");
        pods.push(pod);
    }
    finish(ctrd, &pods);
    assert_eq!(support::tree(&node.driver_root()), driver_before, "the driver root changed");
}

/// Mixed strategy, one container asking for both `nvidia.com/mig-1g.5gb: 1` and
/// `nvidia.com/mig-2g.10gb: 1`: two Allocate answers that the kubelet merges. The container gets
/// both devices and not the GPU's third (4g.20gb).
fn one_container_two_resource_types(strategy: Strategy) {
    if !can_run() {
        return;
    }
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    let (node, ctrd, image) = start(MigStrategy::Mixed.topology(), strategy);
    let [(_, gpu, slot_a), (_, _, slot_b)] = MigStrategy::Mixed.pods();
    let (a, b, third) = (Mig::of(&node, gpu, slot_a), Mig::of(&node, gpu, slot_b), Mig::of(&node, gpu, 0));
    let answer = Allocation::merged(&[Allocation::of(strategy, &[&a.uuid]), Allocation::of(strategy, &[&b.uuid])]);
    let pod = ctrd.run_pod("two-types");
    let container = ctrd.start_container(&pod, &image, &SLEEP, &[], &answer);
    let what = format!("{} mig-1g.5gb + mig-2g.10gb in one container", strategy.name());
    assert_container_sees(&ctrd, &what, &container, &[&a, &b], &[&third]);
    finish(ctrd, &[pod]);
}

#[test]
fn cri_envvar_single() {
    two_pods(Strategy::Envvar, MigStrategy::Single, Ids::Uuid);
}

#[test]
fn cri_envvar_mixed() {
    two_pods(Strategy::Envvar, MigStrategy::Mixed, Ids::Uuid);
}

#[test]
fn cri_envvar_single_index_ids() {
    two_pods(Strategy::Envvar, MigStrategy::Single, Ids::Index);
}

#[test]
fn cri_volume_mounts_single() {
    two_pods(Strategy::VolumeMounts, MigStrategy::Single, Ids::Uuid);
}

#[test]
fn cri_volume_mounts_mixed() {
    two_pods(Strategy::VolumeMounts, MigStrategy::Mixed, Ids::Uuid);
}

#[test]
fn cri_volume_mounts_mixed_index_ids() {
    two_pods(Strategy::VolumeMounts, MigStrategy::Mixed, Ids::Index);
}

#[test]
fn cri_volume_mounts_one_container_two_resource_types() {
    one_container_two_resource_types(Strategy::VolumeMounts);
}

#[test]
fn cri_cdi_annotations_single() {
    two_pods(Strategy::CdiAnnotations, MigStrategy::Single, Ids::Uuid);
}

#[test]
fn cri_cdi_annotations_mixed() {
    two_pods(Strategy::CdiAnnotations, MigStrategy::Mixed, Ids::Uuid);
}

#[test]
fn cri_cdi_annotations_mixed_index_ids() {
    two_pods(Strategy::CdiAnnotations, MigStrategy::Mixed, Ids::Index);
}

#[test]
fn cri_cdi_annotations_one_container_two_resource_types() {
    one_container_two_resource_types(Strategy::CdiAnnotations);
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
