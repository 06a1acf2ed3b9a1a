//! Many containers starting at once, each with a different MIG device of the
//! same simulated node (topology `a100x8-all-1g`: 8 A100s × 7 × 1g.5gb = 56 MIG
//! devices), under real runc on cgroup v1 and on cgroup v2.
//!
//! 50 containers per cgroup mode, 10 starting at any moment; each has its own
//! container id, bundle and runc state dir, and the device each one asks for is
//! spread over all eight GPUs (GPU 0..7 in turn). Inside each container the
//! probe checks isolation where it is tightest, on its own GPU: its own GPU
//! node and its GI and CI caps open (ENXIO: allowed, no driver), while the caps
//! of the six other instances on that GPU, made by the probe with mknod, are
//! denied (EPERM). Expected minors come from the topology file and the node's
//! own `mig-minors`, never from mighook.
//!
//! Bounded: the pool stops taking containers after [`DEADLINE`]; anything not
//! started by then is a failure, and each run has the harness's own timeout.

mod support;

use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::{Bundle, ProbeOutput, Runtime, SimNode};

const TOPOLOGY: &str = "a100x8-all-1g";
const CONTAINERS: usize = 50;
const CONCURRENCY: usize = 10;
const DEADLINE: Duration = Duration::from_secs(150);
use support::{ENXIO, EPERM};

/// One MIG device of the node, with the caps minors the driver gives it.
#[derive(Debug, Clone)]
struct Mig {
    gpu: usize,
    slot: u64,
    gpu_minor: u64,
    gi_cap: u32,
    ci_cap: u32,
}

/// Every MIG device of the topology, by GPU, with cap minors from the node's `mig-minors`.
fn mig_devices(node: &SimNode) -> Vec<Vec<Mig>> {
    let text =
        std::fs::read_to_string(support::workspace_root().join(format!("tests/topologies/{TOPOLOGY}.json"))).unwrap();
    let topo: Value = serde_json::from_str(&text).unwrap();
    let minors_text = std::fs::read_to_string(node.proc_root().join("driver/nvidia-caps/mig-minors")).unwrap();
    let minors: BTreeMap<&str, u32> = minors_text
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(name, m)| (name, m.trim().parse().unwrap()))
        .collect();
    let mut gpus = vec![];
    for (gpu, g) in topo["gpus"].as_array().unwrap().iter().enumerate() {
        let gpu_minor = g["minor"].as_u64().unwrap();
        let migs = g["migDevices"].as_array().unwrap();
        gpus.push(
            migs.iter()
                .map(|m| {
                    let (gi, ci) = (m["gi"].as_u64().unwrap(), m["ci"].as_u64().unwrap());
                    let cap =
                        |name: String| *minors.get(name.as_str()).unwrap_or_else(|| panic!("mig-minors has no {name}"));
                    Mig {
                        gpu,
                        slot: m["slot"].as_u64().unwrap(),
                        gpu_minor,
                        gi_cap: cap(format!("gpu{gpu_minor}/gi{gi}/access")),
                        ci_cap: cap(format!("gpu{gpu_minor}/gi{gi}/ci{ci}/access")),
                    }
                })
                .collect(),
        );
    }
    assert_eq!(gpus.iter().map(Vec::len).sum::<usize>(), 56, "{TOPOLOGY} must have 56 MIG devices");
    gpus
}

/// Container `k` of a round asks for this device: GPU k mod 8, slot (k div 8 + round) mod 7.
fn pick(gpus: &[Vec<Mig>], k: usize, round: usize) -> Mig {
    let g = &gpus[k % gpus.len()];
    g[(k / gpus.len() + round) % g.len()].clone()
}

/// Start `mine` and check it from inside; `Err` holds everything needed to see why not.
fn run_one(rt: Runtime, node: &SimNode, gpu: &[Mig], mine: &Mig) -> Result<(), String> {
    let own = [
        (format!("/dev/nvidia{}", mine.gpu_minor), 195, mine.gpu_minor as u32),
        (format!("/dev/nvidia-caps/nvidia-cap{}", mine.gi_cap), 508, mine.gi_cap),
        (format!("/dev/nvidia-caps/nvidia-cap{}", mine.ci_cap), 508, mine.ci_cap),
    ];
    let others: Vec<(String, u32, u32)> = gpu
        .iter()
        .filter(|m| m.slot != mine.slot)
        .flat_map(|m| [m.gi_cap, m.ci_cap])
        .map(|c| (format!("/dev/nb-cap{c}"), 508, c))
        .collect();
    let mut args = vec!["ls:/dev/nvidia-caps".to_string()];
    args.extend(own.iter().map(|(p, _, _)| p.clone()));
    args.extend(others.iter().map(|(p, maj, min)| format!("mknod:{p}:{maj}:{min}:0444")));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let request = format!("NVIDIA_VISIBLE_DEVICES={}:{}", mine.gpu, mine.slot);
    let bundle = Bundle::probe(&[&request], &argv).with_mighook(node);

    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rt.run(&bundle)))
        .map_err(|e| format!("{request}: {}", panic_text(&e)))?;
    let ctx = || format!("{} {request} ({})\n{}", rt.name(), bundle.id, support::runtime::describe(&out));
    if !out.status.success() {
        return Err(format!("container failed: {}", ctx()));
    }
    let p = std::panic::catch_unwind(|| ProbeOutput::parse(&String::from_utf8_lossy(&out.stdout)))
        .map_err(|e| format!("{}: {}", panic_text(&e), ctx()))?;
    let mut wrong = vec![];
    for (path, major, minor) in
        own.iter().map(|(p, a, b)| (p, *a, *b)).chain(others.iter().map(|(p, a, b)| (p, *a, *b)))
    {
        let errno = if path.starts_with("/dev/nb-") { EPERM } else { ENXIO };
        let want = format!("c {major}:{minor} errno={errno}");
        let got =
            p.results.iter().find(|r| &r.path == path).map(|r| r.summary()).unwrap_or_else(|| "not probed".into());
        if got != want {
            wrong.push(format!("{path}: {got}, want {want}"));
        }
    }
    let caps = p.ls_or_empty("/dev/nvidia-caps");
    let want_caps = {
        let mut v = vec![format!("nvidia-cap{}", mine.gi_cap), format!("nvidia-cap{}", mine.ci_cap)];
        v.sort();
        v
    };
    if caps != want_caps {
        wrong.push(format!("/dev/nvidia-caps holds {caps:?}, want {want_caps:?}"));
    }
    if wrong.is_empty() { Ok(()) } else { Err(format!("{}\n{}", wrong.join("\n"), ctx())) }
}

fn panic_text(e: &Box<dyn std::any::Any + Send>) -> String {
    e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()
}

/// Both rounds on one node: in round 1 every container asks for a different device
/// than in round 0, and devices repeat across rounds (56 devices, 100 containers).
fn fifty_in_parallel(rt: Runtime, round: usize) {
    if !support::require_root_and(&[rt.binary(), "gcc", "busybox", "unshare", "mountpoint", "timeout"]) {
        return;
    }
    if let Err(reason) = rt.supported() {
        support::skip_unsupported(&format!("{} unsupported on this machine: {reason}", rt.name()));
        return;
    }
    let node = SimNode::new(TOPOLOGY);
    let gpus = mig_devices(&node);
    let jobs: Vec<Mig> = (0..CONTAINERS).map(|k| pick(&gpus, k, round)).collect();
    let distinct: std::collections::BTreeSet<(usize, u64)> = jobs.iter().map(|m| (m.gpu, m.slot)).collect();
    assert_eq!(distinct.len(), CONTAINERS, "every container asks for a different MIG device");

    let start = Instant::now();
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::<String>::new());
    let done = AtomicUsize::new(0);
    let test = support::test_name();
    std::thread::scope(|s| {
        for worker in 0..CONCURRENCY {
            // Named after the test, so the harness's messages say which test ran the container.
            let builder = std::thread::Builder::new().name(format!("{test}#{worker}"));
            builder
                .spawn_scoped(s, || {
                    loop {
                        if start.elapsed() > DEADLINE {
                            return;
                        }
                        let k = next.fetch_add(1, Ordering::SeqCst);
                        let Some(mine) = jobs.get(k) else { return };
                        if let Err(e) = run_one(rt, &node, &gpus[mine.gpu], mine) {
                            failures.lock().unwrap().push(format!("container {k}: {e}"));
                        }
                        done.fetch_add(1, Ordering::SeqCst);
                    }
                })
                .expect("spawn a worker thread");
        }
    });
    let took = start.elapsed();
    support::loud(&format!(
        "{}: {} containers, {CONCURRENCY} at a time, in {took:.1?}",
        rt.name(),
        done.load(Ordering::SeqCst)
    ));
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{}: {} of {CONTAINERS} failed:\n{}",
        rt.name(),
        failures.len(),
        failures.join("\n\n")
    );
    assert_eq!(
        done.load(Ordering::SeqCst),
        CONTAINERS,
        "{}: only {} containers ran before the {DEADLINE:?} deadline",
        rt.name(),
        done.load(Ordering::SeqCst)
    );
    support::rootfs::assert_pristine(&support::busybox_rootfs());
}

#[test]
fn fifty_containers_in_parallel_each_get_only_their_mig_device_runc_v1() {
    fifty_in_parallel(Runtime::RuncV1, 0);
}

#[test]
fn fifty_containers_in_parallel_each_get_only_their_mig_device_runc_v2() {
    fifty_in_parallel(Runtime::RuncV2, 1);
}
