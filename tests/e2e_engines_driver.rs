//! The driver's user space through real engines: podman (CDI spec and hooks.d
//! hook), containerd (`ctr run --runc-binary`, mighook as the runtime shim)
//! and dockerd (`--runtime=nvidia` and `--gpus`), on a simulated 8×A100 node
//! with a fake driver installation (tests/fake-nvml: real SONAMEs, a fake
//! `nvidia-smi` linked against `libnvidia-ml.so.1`, a fake libcuda).
//!
//! Every container runs a plain glibc image (Debian layout, no driver file of
//! its own) imported into the engine, on a driver root of the other layout
//! (RHEL), and asks for MIG device `0:1`. `nvidia-smi -L` must print exactly
//! GPU 0 and that MIG device (the fake NVML shows only what the container's
//! nodes open), `libprobe cuinit` must give `cuInit 0` (libcuda by SONAME
//! through the merged loader cache), the injected files must be read-only
//! and the driver root's unrelated library must not be loadable. A container
//! of the same engine that asks for nothing gets no `/usr/bin/nvidia-smi`,
//! and the driver root is unchanged afterwards.
//!
//! The CDI case also runs the spec's createContainer hook (`mighook cdi-hook`)
//! as runc and crun run it: inside the container's namespaces, before
//! pivot_root. Root and the engines are required (scripts/install-deps.sh);
//! without them each test prints `SKIPPED:` and on CI it fails.

#[path = "support/engines.rs"]
mod engines;
mod support;

use std::collections::BTreeMap;
use std::process::{Command, Output};

use engines::{CdiDir, Containerd, Dockerd, MIG_0_1_UUID, MighookInstall, Podman};
use support::{Layout, SimNode};

const TOPOLOGY: &str = "a100x8";
const GPU_0_UUID: &str = "GPU-066d0ced-a3fb-eefb-a347-82895e8fb78c";
const VERSION: &str = "550.54.15";
/// The image's layout; the driver root has the other one.
const IMAGE: Layout = Layout::Debian;
const DRIVER: Layout = Layout::Rhel;

fn can_run(tools: &[&str]) -> bool {
    let base = ["runc", "gcc", "busybox", "timeout", "tar", "sha256sum", "ldconfig", "unshare"];
    support::require_root_and(&[&base[..], tools].concat())
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `nvidia-smi -L` for `0:1` as the real driver shows it inside such a container.
fn smi_0_1() -> String {
    format!("GPU 0: NVIDIA A100-SXM4-40GB (UUID: {GPU_0_UUID})\n  MIG 1g.5gb      Device  0: (UUID: {MIG_0_1_UUID})\n")
}

/// What every container runs: nvidia-smi, then the library probe. `lib`: the dir (no leading
/// `/`) where the driver's libcuda lands: the image's for the hook and the shim, the driver
/// root's own for CDI (its mounts keep the host-relative paths, as nvidia-ctk's do).
fn script(lib: &str) -> String {
    format!(
        "/usr/bin/nvidia-smi -L; echo smi=$?; \
         /usr/bin/libprobe cuinit; /usr/bin/libprobe own; \
         /usr/bin/libprobe dlopen libnvidia-ml.so.1 libcuda.so.1 libunrelated.so.1; \
         /usr/bin/libprobe write /usr/bin/nvidia-smi /{lib}/libcuda.so.{VERSION} /etc/ld.so.cache \
           /lib/firmware/nvidia/{VERSION}/gsp_ga10x.bin"
    )
}

/// The container's argv: `/bin/sh -c <script>`.
fn argv(lib: &str) -> [String; 3] {
    ["/bin/sh".into(), "-c".into(), script(lib)]
}

/// The whole output of a served `0:1` container, line by line.
fn assert_served(what: &str, out: &Output, lib: &str) {
    assert!(out.status.success(), "{what}: {}", support::runtime::describe(out));
    let text = stdout(out);
    let got: Vec<&str> = text.lines().collect();
    let smi = smi_0_1();
    let mut want: Vec<&str> = smi.lines().collect();
    want.extend(["smi=0", "cuInit 0", "own ok", "libnvidia-ml.so.1 ok", "libcuda.so.1 ok"]);
    assert_eq!(got.get(..want.len()), Some(&want[..]), "{what}:\n{text}");
    let rest = &got[want.len()..];
    assert!(
        rest.first().is_some_and(|l| l.starts_with("libunrelated.so.1 error ")),
        "{what}: the unrelated host library reached the container:\n{text}"
    );
    let ro = [
        "/usr/bin/nvidia-smi EROFS".to_string(),
        format!("/{lib}/libcuda.so.{VERSION} EROFS"),
        "/etc/ld.so.cache EROFS".into(),
        format!("/lib/firmware/nvidia/{VERSION}/gsp_ga10x.bin EROFS"),
    ];
    assert_eq!(&rest[1..], &ro[..], "{what}: injected files must be read-only:\n{text}");
}

/// A container that asked for nothing: no nvidia-smi, no libcuda, its own library still works.
fn assert_not_served(what: &str, out: &Output) {
    let text = stdout(out);
    assert!(text.starts_with("smi=127\ncuInit error"), "{what}: {}", support::runtime::describe(out));
    assert!(text.contains("\nown ok\n"), "{what}:\n{text}");
    assert!(text.contains("\n/usr/bin/nvidia-smi ENOENT\n"), "{what}: got /usr/bin/nvidia-smi:\n{text}");
    assert!(text.contains("\nlibcuda.so.1 error "), "{what}: got libcuda:\n{text}");
}

/// The simulated node with its driver root, and that root's snapshot before any container.
fn node() -> (SimNode, BTreeMap<String, String>) {
    let node = SimNode::with_driver_root(TOPOLOGY, DRIVER);
    let before = support::tree(&node.driver_root());
    (node, before)
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

// ---------------------------------------------------------------------------
// podman

/// `mighook <node's global args> cdi generate --output <dir>/<file>`.
fn generate_spec(node: &SimNode, dir: &CdiDir, file: &str) {
    let path = dir.path().join(file);
    engines::ok(
        Command::new(support::mighook_bin()).args(node.mighook_args()).args(["cdi", "generate", "--output"]).arg(&path),
        "mighook cdi generate",
    );
}

/// CDI: `--device nvidia.com/gpu=0:1` (and by UUID) with a JSON spec under runc and crun,
/// then the same spec as YAML; mounts from the spec, links and loader cache from its hook.
#[test]
fn podman_cdi_serves_nvidia_smi_and_libcuda_in_a_plain_image() {
    if !can_run(&["podman", "mountpoint"]) {
        return;
    }
    let (node, before) = node();
    let podman = Podman::new();
    let image = podman.import_glibc(IMAGE);
    let no_hooks = podman.no_hooks_dir();
    let lib = DRIVER.lib_dir();
    let argv = argv(lib);
    let run = |cdi: &CdiDir, runtime: &str, device: Option<&str>| {
        let mut args = vec!["--hooks-dir", no_hooks.to_str().unwrap()];
        if let Some(device) = device {
            args.extend(["--device", device]);
        }
        args.push(&image);
        podman.run_in_ns(Some(cdi), runtime, &[&args[..], &strs(&argv)].concat())
    };

    let json = CdiDir::new();
    generate_spec(&node, &json, "nvidia.json");
    for runtime in engines::Podman::runtimes() {
        for device in ["nvidia.com/gpu=0:1".to_string(), format!("nvidia.com/gpu={MIG_0_1_UUID}")] {
            let out = run(&json, runtime, Some(&device));
            assert_served(&format!("podman {runtime} --device {device}"), &out, lib);
        }
        assert_not_served(&format!("podman {runtime}, no --device"), &run(&json, runtime, None));
    }

    let yaml = CdiDir::new();
    generate_spec(&node, &yaml, "nvidia.yaml");
    assert_served("podman runc, YAML spec", &run(&yaml, "runc", Some("nvidia.com/gpu=0:1")), lib);
    assert_eq!(support::tree(&node.driver_root()), before, "the driver root changed");
}

/// hooks.d: mighook as the prestart hook of every container; `-e NVIDIA_VISIBLE_DEVICES=0:1`.
#[test]
fn podman_hooks_dir_serves_nvidia_smi_and_libcuda_in_a_plain_image() {
    if !can_run(&["podman", "mountpoint"]) {
        return;
    }
    let (node, before) = node();
    let hooks = engines::podman_hooks_dir(&node);
    let podman = Podman::new();
    let image = podman.import_glibc(IMAGE);
    let lib = IMAGE.lib_dir();
    let argv = argv(lib);
    let hooks_dir = hooks.path().to_str().unwrap();
    for runtime in engines::Podman::runtimes() {
        let run = |env: &[&str]| {
            let base = ["--hooks-dir", hooks_dir];
            podman.run_in_ns(None, runtime, &[&base[..], env, &[image.as_str()], &strs(&argv)].concat())
        };
        assert_served(&format!("podman {runtime} hooks.d"), &run(&["-e", "NVIDIA_VISIBLE_DEVICES=0:1"]), lib);
        assert_not_served(&format!("podman {runtime} hooks.d, no request"), &run(&[]));
    }
    assert_eq!(support::tree(&node.driver_root()), before, "the driver root changed");
}

// ---------------------------------------------------------------------------
// containerd

/// `ctr run --runc-binary nvidia-container-runtime`: mighook as the runtime shim.
#[test]
fn containerd_shim_serves_nvidia_smi_and_libcuda_in_a_plain_image() {
    if !can_run(&["containerd", "ctr"]) {
        return;
    }
    let (node, before) = node();
    let install = MighookInstall::new(&node);
    // containerd passes its environment (MIGHOOK_CONFIG) to its shims, and they to the runtime binary.
    let containerd = Containerd::start(&install.daemon_env());
    let image = containerd.import_glibc(IMAGE);
    let lib = IMAGE.lib_dir();
    let run = |env: &[&str]| {
        let mut cmd = containerd.ctr();
        cmd.args(["run", "--rm", "--runc-binary"]).arg(install.runtime());
        for e in env {
            cmd.args(["--env", e]);
        }
        cmd.args([&image, &support::unique_id("ctr")]).args(argv(lib));
        let out = cmd.output().unwrap();
        if !out.status.success() {
            panic!("ctr run failed\n{}\n--- containerd log:\n{}", support::runtime::describe(&out), containerd.log());
        }
        out
    };
    assert_served("containerd shim", &run(&["NVIDIA_VISIBLE_DEVICES=0:1"]), lib);
    assert_not_served("containerd shim, no request", &run(&[]));
    drop(containerd);
    assert_eq!(support::tree(&node.driver_root()), before, "the driver root changed");
}

// ---------------------------------------------------------------------------
// docker

/// One dockerd for both paths: `--runtime=nvidia` (the shim, registered in daemon.json)
/// and `--gpus` (dockerd runs `nvidia-container-runtime-hook` from its PATH, i.e. mighook's hook).
#[test]
fn docker_runtime_and_gpus_serve_nvidia_smi_and_libcuda_in_a_plain_image() {
    if !can_run(&["dockerd", "docker", "containerd"]) {
        return;
    }
    let _one = engines::DOCKERD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let (node, before) = node();
    let install = MighookInstall::new(&node);
    let runtime = install.runtime();
    let dockerd = Dockerd::start(&[("nvidia", &runtime)], &install.daemon_env());
    let image = dockerd.import_glibc(IMAGE);
    let lib = IMAGE.lib_dir();
    let argv = argv(lib);
    let run = |args: &[&str]| dockerd.run(&[args, &[image.as_str()], &strs(&argv)].concat());
    let cases: [(&str, &[&str]); 2] = [
        ("docker --runtime=nvidia", &["--runtime=nvidia", "-e", "NVIDIA_VISIBLE_DEVICES=0:1"]),
        ("docker --gpus", &["--gpus", "\"device=0:1\""]),
    ];
    for (what, args) in cases {
        let out = run(args);
        if !out.status.success() {
            let log = dockerd.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect();
            panic!(
                "{what}: docker run failed\n{}\n--- dockerd log (tail):\n{}",
                support::runtime::describe(&out),
                tail.join("\n")
            );
        }
        assert_served(what, &out, lib);
    }
    assert_not_served("docker --runtime=nvidia, no request", &run(&["--runtime=nvidia"]));
    assert_not_served("docker, no request", &run(&[]));
    drop(dockerd);
    assert_eq!(support::tree(&node.driver_root()), before, "the driver root changed");
}
