//! The fake driver installation and the glibc test images, checked on their
//! own before any mighook test relies on them: each image runs by itself
//! (chroot and runc), and the driver root's libcuda reports what a container's
//! /dev lets CUDA reach.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::{Bundle, Layout, Runtime, SimNode, glibc_image, libprobe_binary};

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn chroot(image: &Path, args: &[&str]) -> Output {
    Command::new(support::tool("chroot")).arg(image).args(args).env_clear().output().expect("spawn chroot")
}

#[test]
fn glibc_images_have_their_layout() {
    for layout in Layout::ALL {
        let image = glibc_image(layout);
        let lib = image.join(layout.lib_dir());
        for f in ["libc.so.6", "libgcc_s.so.1", "libimage.so.1", "libimage.so.1.0.0"] {
            assert!(lib.join(f).exists(), "{layout:?}: {f}");
        }
        assert!(image.join("lib64/ld-linux-x86-64.so.2").exists(), "{layout:?}: loader");
        assert_eq!(std::fs::read_link(image.join("lib")).unwrap(), Path::new("usr/lib"));
        assert_eq!(image.join("etc/debian_version").exists(), layout == Layout::Debian);
        assert_eq!(image.join("etc/redhat-release").exists(), layout == Layout::Rhel);
        if layout == Layout::Rhel {
            assert_eq!(std::fs::read_link(image.join("lib64")).unwrap(), Path::new("usr/lib64"));
        }
        for d in ["dev", "proc", "sys", "tmp", "etc", "run", "var/run", "usr/bin"] {
            assert!(image.join(d).is_dir(), "{layout:?}: {d}");
        }
        let out = Command::new(support::tool("ldconfig"))
            .arg("-p")
            .arg("-C")
            .arg(image.join("etc/ld.so.cache"))
            .output()
            .unwrap();
        let text = stdout(&out);
        for name in ["libc.so.6", "libgcc_s.so.1", "libimage.so.1"] {
            let want = format!("{name} (libc6,x86-64) => /{}/{name}", layout.lib_dir());
            assert!(text.lines().any(|l| l.trim() == want), "{layout:?}: no `{want}` in\n{text}");
        }
        support::rootfs::assert_pristine(&image);
    }
}

#[test]
fn glibc_images_run_libprobe_in_a_chroot() {
    if !support::is_root() {
        support::skip("needs root (chroot)");
        return;
    }
    for layout in Layout::ALL {
        let image = glibc_image(layout);
        let out = chroot(&image, &["/usr/bin/libprobe", "own"]);
        assert_eq!(stdout(&out), "own ok\n", "{layout:?}: {out:?}");
        let out = chroot(&image, &["/usr/bin/libprobe", "dlopen", "libc.so.6", "libcuda.so.1"]);
        let text = stdout(&out);
        assert!(text.starts_with("libc.so.6 ok\nlibcuda.so.1 error "), "{layout:?}: {text}");
        let out = chroot(&image, &["/usr/bin/libprobe", "write", "/etc/passwd", "/nonexistent"]);
        assert_eq!(stdout(&out), "/etc/passwd ok\n/nonexistent ENOENT\n", "{layout:?}");
        let out = chroot(&image, &["/bin/sh", "-c", "ls /usr/bin && cat /etc/group"]);
        assert_eq!(stdout(&out), "libprobe\nroot:x:0:\n", "{layout:?}: {out:?}");
    }
}

#[test]
fn glibc_images_run_under_runc() {
    if !support::require_root_and(&["runc"]) {
        return;
    }
    let Some(runtime) = Runtime::ALL.into_iter().find(|r| r.binary() == "runc" && r.supported().is_ok()) else {
        support::skip_unsupported("no runc cgroup mode works on this host");
        return;
    };
    for layout in Layout::ALL {
        let image = glibc_image(layout);
        let bundle = Bundle::new(&image, &[], &["/usr/bin/libprobe", "own"]);
        let out = runtime.run(&bundle);
        assert!(out.status.success(), "{layout:?}: {}", support::runtime::describe(&out));
        assert_eq!(stdout(&out), "own ok\n", "{layout:?}");
        let bundle = Bundle::new(&image, &[], &["/usr/bin/libprobe", "write", "/etc/passwd"]);
        assert_eq!(stdout(&runtime.run(&bundle)), "/etc/passwd EROFS\n", "{layout:?}: root.readonly");
        support::rootfs::assert_pristine(&image);
    }
}

#[test]
fn simnode_with_driver_root() {
    if !support::require_root_and(&[]) {
        return;
    }
    for layout in Layout::ALL {
        let node = SimNode::with_driver_root("a100x8", layout);
        assert_eq!(node.driver_version(), "550.54.15");
        assert_eq!(node.driver_layout(), Some(layout));
        assert_eq!(node.driver_lib_dir(), node.driver_root().join(layout.lib_dir()));
        assert!(node.driver_lib_dir().join("libcuda.so.550.54.15").is_file());
        assert!(node.driver_root().join("usr/bin/nvidia-smi").is_file());
        assert!(node.nvml_lib().is_file() && node.dev_root().join("nvidiactl").exists());
        let out = Command::new(libprobe_binary())
            .args(["dlopen", "libnvidia-ml.so.1", "libcuda.so.1", "libunrelated.so.1", "libnvidia-nvvm.so.4"])
            .env("LD_LIBRARY_PATH", node.driver_lib_dir())
            .output()
            .unwrap();
        assert_eq!(
            stdout(&out),
            "libnvidia-ml.so.1 ok\nlibcuda.so.1 ok\nlibunrelated.so.1 ok\nlibnvidia-nvvm.so.4 ok\n",
            "{layout:?}"
        );
    }
    assert_eq!(SimNode::new("a30-1").driver_layout(), None);
}

/// libcuda's cuInit in a private mount namespace whose /dev holds only the
/// nodes given: real char nodes that give ENXIO, as in a container whose
/// cgroup allows them.
fn cuinit_with(node: &SimNode, nodes: &[(&str, u32, u32)]) -> String {
    libprobe_with(node, nodes, "cuinit")
}

fn libprobe_with(node: &SimNode, nodes: &[(&str, u32, u32)], command: &str) -> String {
    let mut script = String::from("set -e; mount -t tmpfs none /dev; ");
    for (name, major, minor) in nodes {
        script.push_str(&format!("mknod /dev/{name} c {major} {minor}; "));
    }
    script.push_str(&format!("exec {} {command}", libprobe_binary().display()));
    let out = Command::new(support::tool("unshare"))
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .env("LD_LIBRARY_PATH", node.driver_lib_dir())
        .env_remove("FAKE_NVML_DEV_ROOT")
        .output()
        .expect("spawn unshare");
    assert!(out.status.success(), "{}", support::runtime::describe(&out));
    stdout(&out)
}

#[test]
fn libcuda_cuinit_needs_nvidiactl_and_uvm() {
    if !support::require_root_and(&["unshare"]) {
        return;
    }
    let node = SimNode::with_driver_root("a100x8", Layout::Debian);
    let ctl = ("nvidiactl", 195, 255);
    let uvm = ("nvidia-uvm", 511, 0);
    let gpu = ("nvidia3", 195, 3);
    assert_eq!(cuinit_with(&node, &[ctl, uvm, gpu]), "cuInit 0\n");
    assert_eq!(cuinit_with(&node, &[ctl, gpu]), "cuInit 100\n", "without /dev/nvidia-uvm");
    assert_eq!(cuinit_with(&node, &[uvm, gpu]), "cuInit 100\n", "without /dev/nvidiactl");
    let gpu5 = ("nvidia5", 195, 5);
    assert_eq!(libprobe_with(&node, &[ctl, uvm, gpu, gpu5], "cudevices"), "cuDeviceGetCount 2\n");
    assert_eq!(libprobe_with(&node, &[ctl, uvm], "cudevices"), "cuDeviceGetCount 0\n");
    // Without libcuda on the search path: the dlopen error.
    let out = Command::new(libprobe_binary()).arg("cuinit").env_remove("LD_LIBRARY_PATH").output().unwrap();
    assert!(stdout(&out).starts_with("cuInit error libcuda.so.1: cannot open"), "{out:?}");
}

/// The container view under a real devices cgroup: allowed nodes give ENXIO
/// and are listed, a node the cgroup denies (EPERM) is not. The driver root is
/// bind-mounted into a private copy of the glibc image; no mighook involved.
#[test]
fn nvidia_smi_in_a_container_sees_only_allowed_devices() {
    if !support::require_root_and(&["runc"]) {
        return;
    }
    let node = SimNode::with_driver_root("a100x8", Layout::Debian);
    let image = support::copy_glibc_image(Layout::Debian);
    // GPU1 (minor 3), slot 3 = GI 2 CI 0: caps 3 + 3*135 + 2*9 (+1).
    let (gi, ci) = (3 + 3 * 135 + 2 * 9, 3 + 3 * 135 + 2 * 9 + 1);
    let allowed = [
        ("/dev/nvidiactl", 195, 255, 0o666),
        ("/dev/nvidia3", 195, 3, 0o666),
        (&*format!("/dev/nvidia-caps/nvidia-cap{gi}"), 508, gi, 0o444),
        (&*format!("/dev/nvidia-caps/nvidia-cap{ci}"), 508, ci, 0o444),
    ]
    .map(|(p, maj, min, mode)| (p.to_string(), maj, min, mode));
    let lib_dir = format!("/driver/{}", Layout::Debian.lib_dir());
    // GPU5 (minor 7) and its slot 0 caps exist in /dev but the cgroup denies them.
    let (gi7, ci7) = (3 + 7 * 135 + 9, 3 + 7 * 135 + 9 + 1);
    let script = format!(
        "mknod /dev/nvidia7 c 195 7 && mknod /dev/nvidia-caps/nvidia-cap{gi7} c 508 {gi7} && \
         mknod /dev/nvidia-caps/nvidia-cap{ci7} c 508 {ci7} && LD_LIBRARY_PATH={lib_dir} exec /driver/usr/bin/nvidia-smi -L"
    );
    for rt in Runtime::ALL {
        if let Err(why) = rt.supported() {
            support::skip_unsupported(&format!("{}: {why}", rt.name()));
            continue;
        }
        let bundle = Bundle::new(image.path(), &[], &["/bin/sh", "-c", &script]).edit(|c| {
            let devices: Vec<_> = allowed
                .iter()
                .map(|(p, maj, min, mode)| {
                    serde_json::json!({ "path": p, "type": "c", "major": maj, "minor": min, "fileMode": mode })
                })
                .collect();
            c["linux"]["devices"] = serde_json::json!(devices);
            let rules = c["linux"]["resources"]["devices"].as_array_mut().unwrap();
            for (_, maj, min, _) in &allowed {
                rules.push(
                    serde_json::json!({ "allow": true, "type": "c", "major": maj, "minor": min, "access": "rw" }),
                );
            }
            c["mounts"].as_array_mut().unwrap().push(serde_json::json!({
                "destination": "/driver",
                "source": node.driver_root().to_str().unwrap(),
                "type": "bind",
                "options": ["rbind", "ro"],
            }));
        });
        let out = rt.run(&bundle);
        assert!(out.status.success(), "{}: {}", rt.name(), support::runtime::describe(&out));
        assert_eq!(
            stdout(&out),
            "GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-00434906-99db-6010-9f69-b8c8080d63e4)\n  \
             MIG 3g.20gb     Device  0: (UUID: MIG-2b49543c-789f-56ec-9269-71ec2c799ce8)\n",
            "{}",
            rt.name()
        );
    }
}
