//! Acceptance tests under real engines: podman (hooks.d hook and CDI),
//! containerd (`ctr run --runc-binary` with mighook as the runtime shim) and
//! dockerd (`--runtime=nvidia` and `--gpus`), all on the simulated 8×A100 node.
//!
//! Every container asks for MIG device `0:1` (GPU 0 = minor 2, GI 8 / CI 0) by
//! index or by UUID and runs `openprobe`: its six nodes must exist with the
//! right numbers and open with ENXIO (allowed; no driver behind majors
//! 195/508/511 here), and the nodes the probe mknods for its neighbours
//! (other GPUs, other GIs' caps, MIG config/monitor) must give EPERM.
//! Each engine runs privately (own dirs, sockets, storage) and is stopped by
//! its guard, even when an assertion fails. Root and the engines are required
//! (scripts/install-deps.sh installs them); without them each test prints
//! `SKIPPED:` and on CI it fails.

#[path = "support/engines.rs"]
mod engines;
mod support;

use engines::{
    Containerd, Dockerd, MIG_0_1_UUID, MighookInstall, Podman, assert_exactly_mig_0_1, mig_probe_argv, probe_output,
};
use std::path::{Path, PathBuf};
use support::SimNode;

const TOPOLOGY: &str = "a100x8";

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn can_run(tools: &[&str]) -> bool {
    let base = ["runc", "gcc", "busybox", "timeout", "tar", "sha256sum"];
    support::require_root_and(&[&base[..], tools].concat())
}

// ---------------------------------------------------------------------------
// podman

#[test]
fn podman_hooks_dir_hook_gives_exactly_mig_0_1() {
    if !can_run(&["podman"]) {
        return;
    }
    let node = SimNode::new(TOPOLOGY);
    let hooks = engines::podman_hooks_dir(&node);
    let podman = Podman::new();
    let image = podman.import_busybox();
    let hooks_dir = hooks.path().to_str().unwrap();
    let argv = mig_probe_argv();

    // podman's default capabilities lack CAP_MKNOD, which the probe needs for the neighbours.
    let base = ["--hooks-dir", hooks_dir, "--cap-add", "MKNOD"];
    let run = |env: &[&str]| podman.run(&[&base[..], env, &[image.as_str()], &strs(&argv)].concat());
    let p = probe_output(&run(&["-e", "NVIDIA_VISIBLE_DEVICES=0:1"]), "podman + hooks.d");
    assert_exactly_mig_0_1("podman hooks.d", &p);

    // Same hook, no request: the container must get nothing.
    let plain = probe_output(&run(&[]), "podman + hooks.d, no request");
    let nvidia: Vec<String> = plain.ls_or_empty("/dev").into_iter().filter(|n| n.starts_with("nvidia")).collect();
    assert_eq!(nvidia, Vec::<String>::new(), "no request: no /dev/nvidia*");
    assert_eq!(plain.summary_of("/dev/nb-gpu0"), "c 195:0 errno=1");
}

#[test]
fn podman_hooks_dir_bad_request_fails_with_mighooks_line() {
    if !can_run(&["podman"]) {
        return;
    }
    let node = SimNode::new(TOPOLOGY);
    let hooks = engines::podman_hooks_dir(&node);
    let podman = Podman::new();
    let image = podman.import_busybox();
    let out = podman.run(&[
        "--hooks-dir",
        hooks.path().to_str().unwrap(),
        "-e",
        "NVIDIA_VISIBLE_DEVICES=0:99",
        &image,
        "/bin/true",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "must fail\n{}", support::runtime::describe(&out));
    assert!(stderr.contains("mighook: 0:99: GPU 0 has no MIG device 99"), "podman must show mighook's line\n{stderr}");
}

/// A CDI spec file under /etc/cdi, removed on drop (also when the test fails).
struct SpecFile(PathBuf);

impl Drop for SpecFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        // Only if we left it empty: /etc/cdi may be someone's real spec dir.
        let _ = std::fs::remove_dir(self.0.parent().unwrap());
    }
}

/// Spec files of kind `nvidia.com/gpu` already in the dirs podman 4.3 reads (two specs with
/// the same devices make every one of them unresolvable).
fn other_nvidia_specs(except: &Path) -> Vec<PathBuf> {
    let mut found = vec![];
    for dir in ["/etc/cdi", "/var/run/cdi"] {
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        for e in entries.flatten() {
            let path = e.path();
            let ext = path.extension().and_then(|x| x.to_str());
            if path == except || !matches!(ext, Some("json" | "yaml" | "yml")) {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if text.lines().any(|l| l.contains("kind") && l.contains("nvidia.com/gpu")) {
                found.push(path);
            }
        }
    }
    found
}

/// `mighook --config C cdi generate --output FILE` (C: nvml-lib, proc-root and dev-root of the node).
fn generate_spec(install: &MighookInstall, file: &Path) -> SpecFile {
    let spec = SpecFile(file.to_path_buf());
    engines::ok(
        std::process::Command::new(support::mighook_bin())
            .arg("--config")
            .arg(install.config())
            .args(["cdi", "generate", "--output"])
            .arg(file),
        "mighook cdi generate",
    );
    spec
}

#[test]
fn podman_cdi_by_index_and_uuid_gives_exactly_mig_0_1() {
    if !can_run(&["podman"]) {
        return;
    }
    let json_file = PathBuf::from(format!("/etc/cdi/mighook-test-{}.json", std::process::id()));
    let yaml_file = json_file.with_extension("yaml");
    let others = other_nvidia_specs(&json_file);
    if !others.is_empty() {
        support::skip(&format!(
            "other CDI specs of kind nvidia.com/gpu are installed ({others:?}); podman would refuse both"
        ));
        return;
    }
    let node = SimNode::new(TOPOLOGY);
    let install = MighookInstall::new(&node);
    let podman = Podman::new();
    let image = podman.import_busybox();
    let argv = mig_probe_argv();
    let no_hooks = podman.no_hooks_dir();
    let base = ["--hooks-dir", no_hooks.to_str().unwrap(), "--cap-add", "MKNOD"];
    let run =
        |device: &str, cmd: &[&str]| podman.run(&[&base[..], &["--device", device, image.as_str()], cmd].concat());

    let spec = generate_spec(&install, &json_file);
    for name in ["nvidia.com/gpu=0:1".to_string(), format!("nvidia.com/gpu={MIG_0_1_UUID}")] {
        let p = probe_output(&run(&name, &strs(&argv)), &format!("podman --device {name}"));
        assert_exactly_mig_0_1(&format!("podman CDI {name}"), &p);
    }
    let unknown = run("nvidia.com/gpu=0:99", &["/bin/true"]);
    assert!(!unknown.status.success(), "an unknown CDI device must fail\n{}", support::runtime::describe(&unknown));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unresolvable CDI devices nvidia.com/gpu=0:99"));
    drop(spec);

    // The same spec as YAML must be read the same way.
    let _spec = generate_spec(&install, &yaml_file);
    let p = probe_output(&run("nvidia.com/gpu=0:1", &strs(&argv)), "podman --device (YAML spec)");
    assert_exactly_mig_0_1("podman CDI YAML", &p);
    // Spec-wide env: a legacy NVIDIA hook in the same container would see `void` and stand down.
    let env = run("nvidia.com/gpu=0:1", &["/bin/sh", "-c", "echo \"$NVIDIA_VISIBLE_DEVICES\""]);
    assert_eq!(String::from_utf8_lossy(&env.stdout), "void\n", "{}", support::runtime::describe(&env));
}

// ---------------------------------------------------------------------------
// containerd

#[test]
fn containerd_runtime_shim_by_mig_uuid_gives_exactly_mig_0_1() {
    if !can_run(&["containerd", "ctr"]) {
        return;
    }
    let node = SimNode::new(TOPOLOGY);
    let install = MighookInstall::new(&node);
    // containerd passes its environment to its shims, and they to the runtime binary.
    let containerd = Containerd::start(&install.daemon_env());
    let image = containerd.import_busybox();
    let id = support::unique_id("ctr");
    let env = format!("NVIDIA_VISIBLE_DEVICES={MIG_0_1_UUID}");
    let argv = mig_probe_argv();
    let out = containerd
        .ctr()
        .args(["run", "--rm", "--runc-binary"])
        .arg(install.runtime())
        .args(["--env", &env, &image, &id])
        .args(&argv)
        .output()
        .unwrap();
    let p = match out.status.success() {
        true => probe_output(&out, "ctr run"),
        false => {
            panic!("ctr run failed\n{}\n--- containerd log:\n{}", support::runtime::describe(&out), containerd.log())
        }
    };
    assert_exactly_mig_0_1("containerd shim", &p);
}

// ---------------------------------------------------------------------------
// docker

fn docker_gate() -> bool {
    can_run(&["dockerd", "docker", "containerd"])
}

fn docker_run_probe(dockerd: &Dockerd, what: &str, args: &[&str]) -> support::ProbeOutput {
    let argv = mig_probe_argv();
    let out = dockerd.run(&[args, &strs(&argv)].concat());
    if !out.status.success() {
        panic!(
            "{what}: docker run failed\n{}\n--- dockerd log (tail):\n{}",
            support::runtime::describe(&out),
            tail(&dockerd.log(), 40)
        );
    }
    probe_output(&out, what)
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[test]
fn docker_runtime_nvidia_gives_exactly_mig_0_1() {
    if !docker_gate() {
        return;
    }
    let _one = engines::DOCKERD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let node = SimNode::new(TOPOLOGY);
    let install = MighookInstall::new(&node);
    let runtime = install.runtime();
    let dockerd = Dockerd::start(&[("nvidia", &runtime)], &install.daemon_env());
    let image = dockerd.import_busybox();
    let p = docker_run_probe(
        &dockerd,
        "docker --runtime=nvidia",
        &["--runtime=nvidia", "-e", "NVIDIA_VISIBLE_DEVICES=0:1", &image],
    );
    assert_exactly_mig_0_1("docker --runtime=nvidia", &p);
}

#[test]
fn docker_gpus_flag_gives_exactly_mig_0_1() {
    if !docker_gate() {
        return;
    }
    let _one = engines::DOCKERD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let node = SimNode::new(TOPOLOGY);
    let install = MighookInstall::new(&node);
    // dockerd offers --gpus only when `nvidia-container-runtime-hook` is on its PATH at start,
    // and gives that hook its own environment (so MIGHOOK_CONFIG reaches mighook).
    let dockerd = Dockerd::start(&[], &install.daemon_env());
    let image = dockerd.import_busybox();
    let p = docker_run_probe(&dockerd, "docker --gpus", &["--gpus", "\"device=0:1\"", &image]);
    assert_exactly_mig_0_1("docker --gpus", &p);
}
