//! What one container start costs in each in-process stage of mighook.
//!
//! Stages: device-list parsing, `mig-minors` lookups, resolution through the
//! real [`HostDriver`] (nvml-wrapper's dlopen path into the fake
//! `libnvidia-ml.so.1` of tests/fake-nvml, /proc files of a simulated node), and
//! the cgroup v2 device program mighook builds from the resolved rules, and the
//! driver's user space: finding its files under a fake driver root
//! (`driver_files::discover`, tests/fake-nvml's `fake-node --driver-root`) and
//! the loader cache a container gets (`ldcache::parse` of a real-size image
//! cache, the host's `/etc/ld.so.cache`; `merge` with the driver's libraries;
//! `serialize`).
//! Every resolution iteration builds a fresh `HostDriver`, as each hook process
//! does, so it pays dlopen + `nvmlInit` + the queries + `nvmlShutdown`;
//! `nvml_session/*` measures that fixed part alone, so `resolve - nvml_session`
//! is mighook's own work. The fake library parses its topology JSON in
//! `nvmlInit`, so its session cost grows with the node; a real driver's is not
//! modelled here.
//!
//! `cargo build --release --workspace && cargo bench --bench stages` (under a
//! minute on 2 cores: small samples, 1 s windows); `cargo test --bench stages`
//! runs every benchmark once, with its checks, as a smoke test (needs
//! `cargo build --workspace` first: the fake library and `fake-node` are found
//! next to the bench binary's profile). docs/PERFORMANCE.md has results.

use criterion::{BatchSize, BenchmarkId, Criterion};
use mighook::driver::procfs::{ProcFs, parse_mig_minors};
use mighook::driver::{Driver, HostDriver, MigCap};
use mighook::request::{DriverCapabilities, RawRequest, Request, parse_device_list};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// `target/<profile>`, from the bench binary at `target/<profile>/deps/stages-<hash>`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent().and_then(Path::parent).expect("bench binary lives in target/<profile>/deps").to_path_buf()
}

fn built(name: &str) -> PathBuf {
    let p = profile_dir().join(name);
    assert!(p.is_file(), "{} is missing: run `cargo build --release --workspace` before `cargo bench`", p.display());
    p
}

/// A simulated node written by `fake-node` (no `--mknod`: resolution reads only /proc and NVML).
struct Node {
    dir: tempfile::TempDir,
}

impl Node {
    fn new(topology: &str) -> Node {
        Node::generate(topology, false)
    }

    /// With a fake driver installation (Debian layout) in `<dir>/driver-root`.
    fn with_driver_root(topology: &str) -> Node {
        Node::generate(topology, true)
    }

    fn generate(topology: &str, driver_root: bool) -> Node {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/topologies").join(format!("{topology}.json"));
        let dir = tempfile::Builder::new().prefix("mighook-bench-node").tempdir().expect("tempdir");
        let mut cmd = Command::new(built("fake-node"));
        cmd.arg(&file).arg(dir.path()).arg("--lib").arg(built("libfake_nvml.so"));
        if driver_root {
            cmd.arg("--driver-root").arg(dir.path().join("driver-root")).args(["--layout", "debian"]);
        }
        let out = cmd.output().expect("spawn fake-node");
        assert!(out.status.success(), "fake-node {topology}: {}", String::from_utf8_lossy(&out.stderr));
        Node { dir }
    }

    fn driver(&self) -> HostDriver {
        let lib = self.dir.path().join("libnvidia-ml.so.1");
        HostDriver::new(lib.to_str().expect("utf-8 path"), &self.dir.path().join("proc"))
    }

    fn mig_minors_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("proc/driver/nvidia-caps/mig-minors")).expect("mig-minors")
    }
}

/// The simulated nodes, built once; their temp dirs go when `main` returns.
struct Nodes(Vec<(&'static str, Node)>);

impl Nodes {
    fn new() -> Nodes {
        let mut nodes: Vec<_> = ["a30-1", "a100x8-all-1g", "a100x32"].into_iter().map(|t| (t, Node::new(t))).collect();
        nodes.push(("a100x8-driver", Node::with_driver_root("a100x8")));
        Nodes(nodes)
    }

    fn get(&self, topology: &str) -> &Node {
        &self.0.iter().find(|(t, _)| *t == topology).expect("known topology").1
    }
}

/// `0:0`; `0:0..0:6,1:0`; all 56 `i:j` of a100x8-all-1g: the requests of scripts/bench-hook.sh.
fn device_lists() -> [(usize, String); 3] {
    let all: Vec<String> = (0..8).flat_map(|i| (0..7).map(move |j| format!("{i}:{j}"))).collect();
    [(1, "0:0".into()), (8, all[..8].join(",")), (56, all.join(","))]
}

fn request(devices: &str) -> Request {
    let raw = RawRequest { visible_devices: Some(devices), ..Default::default() };
    Request::parse(&raw, &DriverCapabilities::default()).expect("request parses")
}

fn parsing(c: &mut Criterion, nodes: &Nodes) {
    let mut g = c.benchmark_group("parse");
    for (n, list) in device_lists() {
        g.bench_with_input(BenchmarkId::new("device_list", n), &list, |b, list| {
            b.iter(|| parse_device_list(Some(black_box(list))).expect("parses"))
        });
    }
    // The full 32-GPU file: the driver always publishes all of it, whatever the node has.
    let text = nodes.get("a100x32").mig_minors_text();
    assert_eq!(parse_mig_minors(&text, |l| panic!("malformed line {l:?}")).len(), 4322);
    g.bench_function("mig_minors_full_file", |b| b.iter(|| parse_mig_minors(black_box(&text), |_| {})));
    let proc = nodes.get("a100x8-all-1g").dir.path().join("proc");
    let file = proc.join("driver/nvidia-caps/mig-minors");
    g.bench_function("mig_minors_read_file_only", |b| b.iter(|| std::fs::read_to_string(&file).expect("read")));
    g.finish();

    // The caps a request asks for: GI 7 / CI 0 of GPU minor 2 (`0:0`), or of all 8
    // GPUs' minors (`all`), from a fresh ProcFs, file read included. `whole_file` is
    // how it was done before: read and parse all 4,322 lines, then look up.
    let mut g = c.benchmark_group("mig_minors_lookup");
    let caps = |gpus: &[u32]| -> Vec<MigCap> {
        gpus.iter()
            .flat_map(|&m| [MigCap::Gi { gpu_minor: m, gi: 7 }, MigCap::Ci { gpu_minor: m, gi: 7, ci: 0 }])
            .collect()
    };
    for (label, wanted) in [("1_gpu", caps(&[2])), ("8_gpus", caps(&[2, 3, 0, 1, 6, 7, 4, 5]))] {
        let whole_file = || {
            let map = parse_mig_minors(&std::fs::read_to_string(&file).expect("read"), |_| {});
            wanted.iter().map(|c| map.get(c).copied().expect("listed")).collect::<Vec<u32>>()
        };
        let indexed = || {
            let p = ProcFs::new(&proc);
            wanted.iter().map(|c| p.mig_cap_minor(*c).expect("read").expect("listed")).collect::<Vec<u32>>()
        };
        assert_eq!(whole_file(), indexed(), "{label}");
        g.bench_function(BenchmarkId::new("whole_file", label), |b| b.iter(whole_file));
        g.bench_function(BenchmarkId::new("indexed", label), |b| b.iter(indexed));
    }
    g.finish();
}

/// dlopen + `nvmlInit` + one query + `nvmlShutdown`: the fixed cost every resolving hook pays.
fn nvml_session(c: &mut Criterion, nodes: &Nodes) {
    let mut g = c.benchmark_group("nvml_session");
    for (gpus, topology) in [(1, "a30-1"), (8, "a100x8-all-1g"), (32, "a100x32")] {
        g.bench_function(BenchmarkId::new(topology, gpus), |b| {
            b.iter(|| nodes.get(topology).driver().driver_version().expect("driver version"))
        });
    }
    g.finish();
}

/// One device on nodes of 1, 8 and 32 GPUs: mighook's part must not grow with the node.
fn resolve_one_device(c: &mut Criterion, nodes: &Nodes) {
    let mut g = c.benchmark_group("resolve_1_device");
    let req = request("0:0");
    for (gpus, topology) in [(1, "a30-1"), (8, "a100x8-all-1g"), (32, "a100x32")] {
        let n = nodes.get(topology);
        g.bench_function(BenchmarkId::new(topology, gpus), |b| {
            b.iter_batched(
                || n.driver(),
                |d| mighook::resolve::plan(&req, &d).expect("resolves"),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

/// 1, 8 and 56 devices on the same 8-GPU node: cost grows with what is asked.
fn resolve_requested(c: &mut Criterion, nodes: &Nodes) {
    let mut g = c.benchmark_group("resolve_a100x8-all-1g");
    let n = nodes.get("a100x8-all-1g");
    for (count, list) in device_lists() {
        let list = if count == 56 { "all".to_string() } else { list };
        let req = request(&list);
        let plan = mighook::resolve::plan(&req, &n.driver()).expect("resolves");
        assert_eq!(plan.selection.migs.len(), count, "{list}");
        g.bench_function(BenchmarkId::new("devices", count), |b| {
            b.iter_batched(
                || n.driver(),
                |d| mighook::resolve::plan(&req, &d).expect("resolves"),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .without_plots()
}

/// cgroup v2: mighook's allow block in front of the program runc attached, for the rules of 1, 8 and 56 devices.
fn bpf_program(c: &mut Criterion, nodes: &Nodes) {
    use mighook::apply::cgroup::v2::{asm, runc};
    let mut g = c.benchmark_group("bpf_extend_runc_program");
    let n = nodes.get("a100x8-all-1g");
    let original = runc::filter(&runc::default_rules(), false);
    for (count, list) in device_lists() {
        let plan = mighook::resolve::plan(&request(&list), &n.driver()).expect("resolves");
        let mut grants = asm::Grants::new();
        for r in &plan.edits.device_rules {
            grants.add(asm::DevKind::Char, r.major, r.minor, asm::access::parse(r.access).expect("rw"));
        }
        g.bench_function(BenchmarkId::new("devices", count), |b| b.iter(|| asm::extend(black_box(&original), &grants)));
    }
    g.finish();
}

/// The driver's files under the fake driver root, as the hook finds them on every start:
/// `utility,compute` (the default) and `all`.
fn driver_files(c: &mut Criterion, nodes: &Nodes) {
    use mighook::driver_files::discover;
    let root = nodes.get("a100x8-driver").dir.path().join("driver-root");
    let version = nodes.get("a100x8-driver").driver().driver_version().expect("driver version");
    let mut g = c.benchmark_group("driver_files_discover");
    for caps in ["utility,compute", "all"] {
        let parsed = DriverCapabilities::parse(caps).expect("capabilities");
        let found = discover(&root, &version, &parsed).expect("discovers");
        assert!(found.libraries.iter().any(|l| l.soname == "libnvidia-ml.so.1"), "{caps}: {found:?}");
        assert!(found.files.iter().any(|f| f.container_path == Path::new("/usr/bin/nvidia-smi")), "{caps}");
        let label = format!("{caps}:{}_libs+{}_files", found.libraries.len(), found.files.len());
        g.bench_function(BenchmarkId::from_parameter(label), |b| {
            b.iter(|| discover(black_box(&root), &version, &parsed).expect("discovers"))
        });
    }
    g.finish();
}

/// The merged loader cache: the image's cache parsed, the driver's entries put in front,
/// the result serialized. The image cache is the host's `/etc/ld.so.cache` (a real-size
/// one: hundreds of entries), or, without one, a 500-entry cache made here.
fn ld_cache(c: &mut Criterion, nodes: &Nodes) {
    use mighook::driver_files::{LibraryDir, discover, place};
    use mighook::ldcache::{self, Entry, LdCache};
    let (source, image) = match std::fs::read("/etc/ld.so.cache") {
        Ok(bytes) if ldcache::parse(&bytes).is_ok() => ("host", bytes),
        _ => {
            let entries = (0..500)
                .map(|i| {
                    Entry::x86_64(format!("libimage{i}.so.1"), format!("/usr/lib/x86_64-linux-gnu/libimage{i}.so.1"))
                })
                .collect();
            ("synthetic", ldcache::serialize(&LdCache { entries, ..Default::default() }))
        }
    };
    let root = nodes.get("a100x8-driver").dir.path().join("driver-root");
    let version = nodes.get("a100x8-driver").driver().driver_version().expect("driver version");
    let found = discover(&root, &version, &DriverCapabilities::default()).expect("discovers");
    let injected = place(&found, LibraryDir::for_image(true)).ld_cache;
    let parsed = ldcache::parse(&image).expect("image cache parses");
    assert!(!injected.is_empty());
    let merged = ldcache::merge(injected.clone(), parsed.clone());
    let written = ldcache::serialize(&merged);
    assert_eq!(ldcache::parse(&written).expect("merged cache parses").entries.len(), merged.entries.len());
    let label = format!("{source}_{}_entries_{}_bytes+{}_injected", parsed.entries.len(), image.len(), injected.len());
    let mut g = c.benchmark_group("ldcache");
    g.bench_function(BenchmarkId::new("parse", &label), |b| {
        b.iter(|| ldcache::parse(black_box(&image)).expect("parses"))
    });
    g.bench_function(BenchmarkId::new("merge", &label), |b| {
        b.iter_batched(|| (injected.clone(), parsed.clone()), |(i, p)| ldcache::merge(i, p), BatchSize::SmallInput)
    });
    g.bench_function(BenchmarkId::new("serialize", &label), |b| b.iter(|| ldcache::serialize(black_box(&merged))));
    // What the hook does per start, from the image's bytes to the merged file's.
    g.bench_function(BenchmarkId::new("parse_merge_serialize", &label), |b| {
        b.iter(|| {
            let image = ldcache::parse(black_box(&image)).expect("parses");
            ldcache::serialize(&ldcache::merge(injected.clone(), image))
        })
    });
    g.finish();
}

// `criterion_main!` would keep the nodes in a static that is never dropped (left in /tmp).
fn main() {
    let nodes = Nodes::new();
    let mut c = config().configure_from_args();
    parsing(&mut c, &nodes);
    nvml_session(&mut c, &nodes);
    resolve_one_device(&mut c, &nodes);
    resolve_requested(&mut c, &nodes);
    bpf_program(&mut c, &nodes);
    driver_files(&mut c, &nodes);
    ld_cache(&mut c, &nodes);
    c.final_summary();
}
