//! `fake-node --driver-root`: the fake driver installation is what a real
//! host has (SONAMEs, links, its own ld.so.cache), its nvidia-smi lists the
//! topology through the fake NVML found by SONAME, and the fake NVML shows a
//! process only the devices its /dev lets it open.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fake_nvml::Topology;
use fake_nvml::driver::{self, Layout};
use fake_nvml::locate::{cdylib, topology};
use fake_nvml::node::mig_minor;

const FAKE_NODE: &str = env!("CARGO_BIN_EXE_fake-node");

struct Root {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    layout: Layout,
}

impl Root {
    fn lib_dir(&self) -> PathBuf {
        self.root.join(self.layout.lib_dir())
    }

    /// Runs the root's nvidia-smi on the host, the loader pointed at its lib dir.
    /// `dev` replaces /dev for the container view (an empty dir: full view).
    fn nvidia_smi(&self, args: &[&str], dev: &Path) -> Output {
        Command::new(self.root.join("usr/bin/nvidia-smi"))
            .args(args)
            .env("LD_LIBRARY_PATH", self.lib_dir())
            .env("FAKE_NVML_DEV_ROOT", dev)
            .env_remove("FAKE_NVML_TOPOLOGY")
            .output()
            .expect("run nvidia-smi")
    }
}

fn fake_node(topo: &str, layout: &str, extra: &[&str]) -> Root {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("driver-root");
    let lib = cdylib().unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(FAKE_NODE)
        .arg(topology(topo))
        .arg(tmp.path().join("node"))
        .arg("--lib")
        .arg(lib)
        .arg("--driver-root")
        .arg(&root)
        .args(["--layout", layout])
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "fake-node failed: {}", String::from_utf8_lossy(&out.stderr));
    Root { _tmp: tmp, root, layout: Layout::parse(layout).unwrap() }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn soname(file: &Path) -> String {
    let out = Command::new("readelf").arg("-d").arg(file).output().expect("run readelf");
    assert!(out.status.success(), "readelf -d {}", file.display());
    let text = stdout(&out);
    let line = text.lines().find(|l| l.contains("(SONAME)")).unwrap_or_else(|| panic!("{}: no SONAME", file.display()));
    line.split('[').nth(1).and_then(|s| s.strip_suffix(']')).unwrap().to_string()
}

/// The `nvidia-smi -L` lines the full topology gives.
fn expected_list(t: &Topology) -> Vec<String> {
    let mut lines = Vec::new();
    for (i, gpu) in t.gpus.iter().enumerate() {
        lines.push(format!("GPU {i}: {} (UUID: {})", gpu.name, gpu.uuid));
        for mig in &gpu.mig_devices {
            lines.push(format!("  MIG {:<11} Device {:>2}: (UUID: {})", mig.profile, mig.slot, mig.uuid));
        }
    }
    lines
}

/// A loud skip line: written to the real stderr, which libtest does not capture
/// (it captures only `eprintln!`), so it shows for passing tests too.
fn skip(test: &str, reason: &str) {
    use std::io::Write;
    let _ = std::io::stderr().write_all(format!("\nSKIPPED: {test}: {reason}\n").as_bytes());
}

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn every_library_has_its_soname_and_links() {
    for layout in ["debian", "rhel"] {
        let r = fake_node("a100x8.json", layout, &[]);
        let dir = r.lib_dir();
        for (file, link) in driver::library_files("550.54.15") {
            let path = dir.join(&file);
            let want = link.clone().unwrap_or_else(|| file.clone());
            assert_eq!(soname(&path), want, "{layout}: {file}");
            if let Some(link) = link {
                assert_eq!(std::fs::read_link(dir.join(&link)).unwrap(), Path::new(&file), "{layout}: {link}");
            }
        }
        assert_eq!(std::fs::read_link(dir.join("libnvidia-ml.so")).unwrap(), Path::new("libnvidia-ml.so.1"));
        assert_eq!(std::fs::read_link(dir.join("libcuda.so")).unwrap(), Path::new("libcuda.so.1"));
        assert!(dir.join("libunrelated.so.1.2.3").is_file());
        assert!(dir.join("libnvidia-glcore.so.550.54.15").is_file());
        if layout == "rhel" {
            assert_eq!(std::fs::read_link(r.root.join("lib64")).unwrap(), Path::new("usr/lib64"));
        } else {
            assert!(!r.root.join("lib64").exists());
        }
    }
}

#[test]
fn driver_version_flag_names_files_and_glcore_soname() {
    let r = fake_node("a30-1.json", "debian", &["--driver-version", "535.161.08"]);
    let dir = r.lib_dir();
    assert_eq!(soname(&dir.join("libcuda.so.535.161.08")), "libcuda.so.1");
    assert_eq!(soname(&dir.join("libnvidia-glcore.so.535.161.08")), "libnvidia-glcore.so.535.161.08");
    assert!(r.root.join("lib/firmware/nvidia/535.161.08/gsp_ga10x.bin").is_file());
    assert!(!dir.join("libcuda.so.550.54.15").exists());
}

#[test]
fn binaries_firmware_and_socket() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let r = fake_node("a100x8.json", "debian", &[]);
    for bin in ["nvidia-smi", "nvidia-debugdump", "nvidia-cuda-mps-control"] {
        let meta = std::fs::metadata(r.root.join("usr/bin").join(bin)).unwrap();
        assert!(meta.is_file() && meta.permissions().mode() & 0o111 != 0, "{bin}");
    }
    let out = Command::new(r.root.join("usr/bin/nvidia-debugdump")).output().unwrap();
    assert!(stdout(&out).starts_with("nvidia-debugdump"), "{out:?}");
    for fw in ["gsp_ga10x.bin", "gsp_tu10x.bin"] {
        let p = r.root.join("lib/firmware/nvidia/550.54.15").join(fw);
        assert!(std::fs::metadata(&p).unwrap().len() > 0, "{}", p.display());
    }
    let sock = std::fs::symlink_metadata(r.root.join("run/nvidia-persistenced/socket")).unwrap();
    assert!(sock.file_type().is_socket());
}

#[test]
fn ld_cache_lists_the_driver_libraries_at_host_paths() {
    for layout in ["debian", "rhel"] {
        let r = fake_node("a100x8.json", layout, &[]);
        let conf = std::fs::read_to_string(r.root.join("etc/ld.so.conf")).unwrap();
        assert_eq!(conf, format!("/{}\n", r.layout.lib_dir()));
        let out = Command::new("ldconfig").arg("-p").arg("-C").arg(r.root.join("etc/ld.so.cache")).output().unwrap();
        assert!(out.status.success(), "ldconfig -p: {out:?}");
        let text = stdout(&out);
        for name in ["libnvidia-ml.so.1", "libcuda.so.1", "libunrelated.so.1", "libnvidia-glcore.so.550.54.15"] {
            let want = format!("{name} (libc6,x86-64) => /{}/{name}", r.layout.lib_dir());
            assert!(text.lines().any(|l| l.trim() == want), "{layout}: no `{want}` in\n{text}");
        }
    }
}

#[test]
fn library_carries_the_topology() {
    let r = fake_node("a100x8.json", "debian", &[]);
    let lib = r.lib_dir().join("libnvidia-ml.so.550.54.15");
    let json = driver::read_trailer(&lib).unwrap().expect("trailer");
    assert_eq!(json, std::fs::read_to_string(topology("a100x8.json")).unwrap());
    // The build output and node copies carry none: they keep using topology.json.
    assert_eq!(driver::read_trailer(&cdylib().unwrap()).unwrap(), None);
}

#[test]
fn nvidia_smi_lists_every_gpu_and_mig_device() {
    for name in ["a100x8.json", "a30-1.json", "h100x4-nomig.json"] {
        let r = fake_node(name, "debian", &[]);
        let t = Topology::load(topology(name)).unwrap();
        let empty = tempfile::tempdir().unwrap();
        let out = r.nvidia_smi(&["-L"], empty.path());
        assert!(out.status.success(), "{name}: {out:?}");
        let got: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
        assert_eq!(got, expected_list(&t), "{name}");
    }
}

#[test]
fn nvidia_smi_a100x8_line_by_line() {
    let r = fake_node("a100x8.json", "rhel", &[]);
    let empty = tempfile::tempdir().unwrap();
    let text = stdout(&r.nvidia_smi(&["-L"], empty.path()));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-066d0ced-a3fb-eefb-a347-82895e8fb78c)");
    assert_eq!(lines[1], "  MIG 1g.5gb      Device  0: (UUID: MIG-ae46092d-511e-516d-a1c6-f3612c3e2323)");
    assert!(lines.contains(&"  MIG 1c.3g.20gb  Device  2: (UUID: MIG-84967e39-20c0-51a5-80a5-a1622538522d)"));
    assert!(lines.contains(&"  MIG 3g.20gb     Device  3: (UUID: MIG-2b49543c-789f-56ec-9269-71ec2c799ce8)"));
    // GPU2's empty slot 1 prints nothing; GPU3 (MIG on, no devices) and GPU6 (MIG off) print no MIG line.
    let after = |gpu: &str| lines.iter().skip_while(|l| !l.starts_with(gpu)).nth(1).copied().unwrap_or("");
    assert!(after("GPU 3:").starts_with("GPU 4:"), "{text}");
    assert!(after("GPU 6:").starts_with("GPU 7:"), "{text}");
    assert_eq!(lines.iter().filter(|l| l.starts_with("GPU ")).count(), 8);
    assert_eq!(lines.iter().filter(|l| l.starts_with("  MIG ")).count(), 20);
}

#[test]
fn nvidia_smi_summary_and_init_failure() {
    let r = fake_node("a100x8.json", "debian", &[]);
    let empty = tempfile::tempdir().unwrap();
    let out = r.nvidia_smi(&[], empty.path());
    let text = stdout(&out);
    assert!(out.status.success() && text.contains("Driver Version: 550.54.15") && text.contains("CUDA Version: 12.4"));
    assert_eq!(text.lines().filter(|l| l.starts_with("GPU ")).count(), 8);
    // A bad topology given through the env var fails init like a missing driver.
    let bad = empty.path().join("bad.json");
    std::fs::write(&bad, "{}").unwrap();
    let out = Command::new(r.root.join("usr/bin/nvidia-smi"))
        .arg("-L")
        .env("LD_LIBRARY_PATH", r.lib_dir())
        .env("FAKE_NVML_TOPOLOGY", &bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(255));
    assert_eq!(stdout(&out), "Failed to initialize NVML: Unknown Error\n");
}

/// Container view with plain files as nodes (they open): no root needed.
#[test]
fn nvidia_smi_container_view_with_a_dev_dir() {
    let r = fake_node("a100x8.json", "debian", &[]);
    let t = Topology::load(topology("a100x8.json")).unwrap();
    let dev = tempfile::tempdir().unwrap();
    let touch = |rel: String| {
        let p = dev.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"").unwrap();
    };
    touch("nvidiactl".into());
    // GPU5 (minor 7) with only slot 1 (GI 5 CI 0), and GPU6 (minor 4, MIG off).
    touch("nvidia7".into());
    touch("nvidia4".into());
    touch(format!("nvidia-caps/nvidia-cap{}", mig_minor(7, 5, None)));
    touch(format!("nvidia-caps/nvidia-cap{}", mig_minor(7, 5, Some(0))));
    let text = stdout(&r.nvidia_smi(&["-L"], dev.path()));
    assert_eq!(
        text,
        format!(
            "GPU 0: NVIDIA A100-SXM4-40GB (UUID: {})\n  MIG 2g.10gb     Device  0: (UUID: {})\nGPU 1: NVIDIA A100-SXM4-40GB (UUID: {})\n",
            t.gpus[5].uuid, t.gpus[5].mig_devices[1].uuid, t.gpus[6].uuid
        )
    );
    // nvidiactl alone: no GPU at all.
    let ctl_only = tempfile::tempdir().unwrap();
    std::fs::write(ctl_only.path().join("nvidiactl"), b"").unwrap();
    let out = r.nvidia_smi(&["-L"], ctl_only.path());
    assert_eq!((out.status.code(), stdout(&out).as_str()), (Some(6), "No devices found.\n"));
}

/// The real thing: a private mount namespace whose /dev holds only nvidiactl,
/// one GPU node and one MIG device's two cap nodes, all real char devices that
/// give ENXIO (no driver behind them).
#[test]
fn nvidia_smi_container_view_in_a_mount_namespace() {
    if !is_root() {
        skip("nvidia_smi_container_view_in_a_mount_namespace", "needs root");
        return;
    }
    let r = fake_node("a100x8.json", "debian", &[]);
    let t = Topology::load(topology("a100x8.json")).unwrap();
    // GPU1 (minor 3), slot 3 = GI 2 CI 0.
    let (gi, ci) = (mig_minor(3, 2, None), mig_minor(3, 2, Some(0)));
    let script = format!(
        "set -e; mount -t tmpfs none /dev; mknod /dev/nvidiactl c 195 255; mknod /dev/nvidia3 c 195 3; \
         mkdir /dev/nvidia-caps; mknod /dev/nvidia-caps/nvidia-cap{gi} c 508 {gi}; \
         mknod /dev/nvidia-caps/nvidia-cap{ci} c 508 {ci}; exec {} -L",
        r.root.join("usr/bin/nvidia-smi").display()
    );
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .env("LD_LIBRARY_PATH", r.lib_dir())
        .env_remove("FAKE_NVML_DEV_ROOT")
        .env_remove("FAKE_NVML_TOPOLOGY")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        stdout(&out),
        format!(
            "GPU 0: NVIDIA A100-SXM4-40GB (UUID: {})\n  MIG 3g.20gb     Device  0: (UUID: {})\n",
            t.gpus[1].uuid, t.gpus[1].mig_devices[3].uuid
        )
    );
}

#[test]
fn cli_rejects_bad_driver_root_options() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        let out = Command::new(FAKE_NODE).arg(topology("a30-1.json")).arg(tmp.path().join("n")).args(extra).output();
        let out = out.unwrap();
        assert!(!out.status.success(), "{extra:?} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let root = tmp.path().join("r");
    let root = root.to_str().unwrap();
    assert!(run(&["--layout", "debian"]).contains("go with --driver-root"));
    assert!(run(&["--driver-root", root]).contains("needs --layout"));
    assert!(run(&["--driver-root", root, "--layout", "arch"]).contains("unknown layout"));
    assert!(run(&["--driver-root", root, "--layout", "rhel", "--driver-version", "1/2"]).contains("driver version"));
}
