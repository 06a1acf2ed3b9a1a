//! Specs that NVIDIA's `nvidia-ctk cdi generate` wrote keep working with mighook
//! in place of NVIDIA's packages: their createContainer hooks run
//! `nvidia-cdi-hook <subcommand>` (older ones `nvidia-ctk hook <subcommand>`), and
//! those names are links to mighook.
//!
//! The spec here is shaped as nvidia-ctk writes it: mighook's own spec for the
//! simulated node (device nodes, the driver files as mounts at their driver-root
//! paths) with its hook replaced by NVIDIA's hooks, in NVIDIA's order and with
//! NVIDIA's `env`: `create-symlinks` (the `libcuda.so` dev link only; older specs
//! leave the SONAME links to ldconfig), `enable-cuda-compat`, `update-ldcache`
//! over the driver's library dir, `disable-device-node-modification`, `chmod`.
//! Through podman with runc and crun: `nvidia-smi -L` lists exactly the MIG
//! device, libcuda loads by SONAME and as `libcuda.so`, the loader cache is a
//! read-only mount, and an image with a newer CUDA compat libcuda gets that one.
//!
//! The attack cases run the hooks directly under runc on hostile images and check
//! that the host is untouched: links through an image symlink that names a host
//! dir, a `--folder` that is such a symlink, `chmod` on an image symlink to a host
//! file.

mod support;

#[allow(unused_imports)] // the MIG constants it re-exports
#[path = "support/engines.rs"]
mod engines;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};
use support::glibc_image::{COMPAT_CUDA_VERSION, Layout, copy_glibc_image, install_cuda_compat};
use support::{Bundle, Runtime, SimNode};

const GPU_0_UUID: &str = "GPU-066d0ced-a3fb-eefb-a347-82895e8fb78c";
const VERSION: &str = "550.54.15";
/// The driver root's layout: its libraries land in `/usr/lib64` of the container.
const DRIVER: Layout = Layout::Rhel;
const SCRIPT: &str = "/usr/bin/nvidia-smi -L; echo smi=$?; /usr/bin/libprobe cuinit; /usr/bin/libprobe cuversion; \
     /usr/bin/libprobe dlopen libnvidia-ml.so.1 libcuda.so.1 libcuda.so; /usr/bin/libprobe write /etc/ld.so.cache; \
     cat /etc/nvidia/nvidia-application-profiles-rc.d/10-container.conf; echo; \
     for l in libcuda.so libcuda.so.1 libnvidia-ml.so.1; do readlink /usr/lib64/$l; done";

/// The application profile of a container with GPU 0 (`/dev/nvidia2` on this topology): bit 2.
const PROFILE: &str = r#"{"profiles":[{"name":"_container_","settings":["EGLVisibleDGPUDevices",0x4]}],"rules":[{"pattern":[],"profile":"_container_"}]}"#;

/// `nvidia-cdi-hook` and `nvidia-ctk` as links to the built mighook, as the package ships them.
struct HookLinks(tempfile::TempDir);

impl HookLinks {
    fn new() -> HookLinks {
        let dir = tempfile::Builder::new().prefix("mighook-e2e-nvhook").tempdir().unwrap();
        for name in ["nvidia-cdi-hook", "nvidia-ctk"] {
            std::os::unix::fs::symlink(support::mighook_bin(), dir.path().join(name)).unwrap();
        }
        // The runtime runs the hook as root from its own dir: make it reachable.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        HookLinks(dir)
    }

    fn path(&self, name: &str) -> String {
        self.0.path().join(name).to_str().unwrap().to_string()
    }
}

/// One createContainer hook as nvidia-ctk writes it: `nvidia-cdi-hook ARGS`, or with
/// `ctk` `nvidia-ctk hook ARGS`, and NVIDIA's explicit env.
fn hook(links: &HookLinks, ctk: bool, args: &[&str]) -> Value {
    let (path, mut argv) = if ctk {
        (links.path("nvidia-ctk"), vec!["nvidia-ctk", "hook"])
    } else {
        (links.path("nvidia-cdi-hook"), vec!["nvidia-cdi-hook"])
    };
    argv.extend(args);
    json!({ "hookName": "createContainer", "path": path, "args": argv, "env": ["NVIDIA_CTK_DEBUG=false"] })
}

/// NVIDIA's hooks for the node's driver files, in nvidia-ctk's order.
fn nvidia_hooks(links: &HookLinks, ctk: bool) -> Vec<Value> {
    let lib = format!("/{}", DRIVER.lib_dir());
    vec![
        hook(links, ctk, &["create-symlinks", "--link", &format!("libcuda.so.1::{lib}/libcuda.so")]),
        hook(links, ctk, &["enable-cuda-compat", &format!("--host-driver-version={VERSION}")]),
        hook(links, ctk, &["update-ldcache", "--folder", &lib]),
        hook(links, ctk, &["disable-device-node-modification"]),
        hook(links, ctk, &["update-application-profile"]),
        hook(links, ctk, &["chmod", "--mode", "755", "--path", "/dev/dri"]),
    ]
}

/// mighook's spec for `node` with its own hook replaced by NVIDIA's, in `cdi` as nvidia.json.
fn write_nvidia_spec(node: &SimNode, cdi: &engines::CdiDir, links: &HookLinks, ctk: bool) {
    let own = cdi.path().join("own.json.tmp");
    engines::ok(
        Command::new(support::mighook_bin()).args(node.mighook_args()).args(["cdi", "generate", "--output"]).arg(&own),
        "mighook cdi generate",
    );
    let mut spec: Value = serde_json::from_str(&std::fs::read_to_string(&own).unwrap()).unwrap();
    std::fs::remove_file(&own).unwrap();
    let edits = &mut spec["containerEdits"];
    let own_hooks = edits["hooks"].as_array().map(Vec::len).unwrap_or(0);
    assert_eq!(own_hooks, 1, "mighook's spec has one hook of its own: {}", edits["hooks"]);
    edits["hooks"] = json!(nvidia_hooks(links, ctk));
    std::fs::write(cdi.path().join("nvidia.json"), serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
}

fn assert_served(what: &str, out: &Output, cuda: i32) {
    assert!(out.status.success(), "{what}: {}", support::runtime::describe(out));
    let text = String::from_utf8_lossy(&out.stdout);
    let want = format!(
        "GPU 0: NVIDIA A100-SXM4-40GB (UUID: {GPU_0_UUID})\n  MIG 1g.5gb      Device  0: (UUID: {})\n\
         smi=0\ncuInit 0\ncuDriverGetVersion {cuda}\nlibnvidia-ml.so.1 ok\nlibcuda.so.1 ok\nlibcuda.so ok\n\
         /etc/ld.so.cache EROFS\n{PROFILE}\n\
         libcuda.so.1\nlibcuda.so.{VERSION}\nlibnvidia-ml.so.{VERSION}\n",
        support::a100::MIG_0_1_UUID
    );
    assert_eq!(text, want, "{what}");
}

#[test]
fn podman_runs_an_nvidia_generated_spec_through_nvidia_cdi_hook() {
    if !support::require_root_and(&["podman", "runc", "tar", "gcc", "ldconfig", "mountpoint", "unshare"]) {
        return;
    }
    let node = SimNode::with_driver_root("a100x8", DRIVER);
    let before = support::tree(&node.driver_root());
    let links = HookLinks::new();
    let podman = engines::Podman::new();
    let plain = podman.import_glibc(Layout::Debian);
    let compat_image = copy_glibc_image(Layout::Debian);
    install_cuda_compat(compat_image.path(), "570.86.10");
    let compat = "localhost/mighook-nvhook-compat:e2e";
    podman.import_dir(compat_image.path(), compat);
    let no_hooks = podman.no_hooks_dir();
    for ctk in [false, true] {
        let cdi = engines::CdiDir::new();
        write_nvidia_spec(&node, &cdi, &links, ctk);
        let how = if ctk { "nvidia-ctk hook" } else { "nvidia-cdi-hook" };
        for runtime in engines::Podman::runtimes() {
            for (image, cuda) in [(plain.as_str(), 12040), (compat, COMPAT_CUDA_VERSION)] {
                let args = ["--hooks-dir", no_hooks.to_str().unwrap(), "--device", "nvidia.com/gpu=0:1", image];
                let out = podman.run_in_ns(Some(&cdi), runtime, &[&args[..], &["/bin/sh", "-c", SCRIPT]].concat());
                assert_served(&format!("{how}, podman {runtime}, {image}"), &out, cuda);
            }
        }
    }
    assert_eq!(support::tree(&node.driver_root()), before, "the driver root changed");
}

// ---------------------------------------------------------------------------
// Hostile images: the hooks run under runc directly, with hooks of the test's choice.

/// runc, in whichever cgroup mode this machine runs it.
fn runc() -> Option<Runtime> {
    support::runtime::any_runc(&["runc", "gcc", "ldconfig"])
}

/// A host dir the attacks aim at, and what it holds now.
fn host_target() -> (tempfile::TempDir, std::collections::BTreeMap<String, String>) {
    let dir = tempfile::Builder::new().prefix("mighook-e2e-target").tempdir().unwrap();
    std::fs::copy(support::glibc_image::compat_libcuda(), dir.path().join("libcuda.so.999.1.1")).unwrap();
    let host_file = dir.path().join("secret");
    std::fs::write(&host_file, "host secret\n").unwrap();
    std::fs::set_permissions(&host_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let tree = support::tree(dir.path());
    (dir, tree)
}

fn run_with_hooks(rt: Runtime, image: &Path, hooks: Vec<Value>, dev_from_image: bool) -> Output {
    let b = Bundle::new(image, &["PATH=/usr/bin:/bin"], &["/bin/sh", "-c", "echo ran"]).edit(|c| {
        c["hooks"] = json!({ "createContainer": hooks });
        if dev_from_image {
            // No /dev tmpfs: the image's own /dev is what the hooks see.
            c["mounts"].as_array_mut().unwrap().retain(|m| m["destination"] != "/dev");
        }
    });
    rt.run(&b)
}

#[test]
fn hooks_on_hostile_images_leave_the_host_untouched() {
    let Some(rt) = runc() else { return };
    let links = HookLinks::new();
    let (target, before) = host_target();
    let t = target.path().to_str().unwrap().to_string();
    let secret_mode = || std::fs::metadata(target.path().join("secret")).unwrap().permissions().mode() & 0o7777;

    // The image's /usr/lib64 is a link to the host dir's absolute path.
    let image = copy_glibc_image(Layout::Debian);
    std::fs::create_dir_all(image.path().join("usr")).unwrap();
    std::os::unix::fs::symlink(&t, image.path().join("usr/lib64")).unwrap();
    std::os::unix::fs::symlink(&t, image.path().join("evil")).unwrap();

    // create-symlinks through the image's link, and with `..` out of the root.
    let out = run_with_hooks(
        rt,
        image.path(),
        vec![hook(&links, false, &["create-symlinks", "--link", "/etc/shadow::/usr/lib64/libcuda.so.1"])],
        false,
    );
    assert!(!out.status.success(), "a link into a dir the image redirects must not be made: {}", stdout(&out));
    let out = run_with_hooks(
        rt,
        image.path(),
        vec![hook(&links, false, &["create-symlinks", "--link", &format!("x::/../../../..{t}/escaped")])],
        false,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("not an absolute path without . or .. components"), "{err}");

    // update-ldcache over a folder that is the image's link to the host dir: resolved in
    // the root, where it does not exist; the host dir gets no SONAME link.
    let out =
        run_with_hooks(rt, image.path(), vec![hook(&links, false, &["update-ldcache", "--folder", "/evil"])], false);
    assert!(out.status.success(), "{}", support::runtime::describe(&out));
    assert_eq!(stdout(&out), "ran\n");

    // chmod on the image's /dev/evil -> the host file (the image's own /dev, no tmpfs).
    std::fs::create_dir_all(image.path().join("dev")).unwrap();
    std::os::unix::fs::symlink(target.path().join("secret"), image.path().join("dev/evil")).unwrap();
    let out = run_with_hooks(
        rt,
        image.path(),
        vec![hook(&links, true, &["chmod", "--mode", "777", "--path", "/dev/evil"])],
        true,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("is a symlink, not a directory or device node"), "{err}");
    let out = run_with_hooks(
        rt,
        image.path(),
        vec![hook(&links, false, &["chmod", "--mode", "777", "--path", &format!("/dev/../..{t}/secret")])],
        false,
    );
    assert!(!out.status.success(), "{}", support::runtime::describe(&out));

    assert_eq!(secret_mode(), 0o600, "the host file's mode changed");
    assert_eq!(support::tree(target.path()), before, "the host dir changed");
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// ---------------------------------------------------------------------------
// The names mighook answers to (no root needed).

fn run_as(links: &HookLinks, name: &str, args: &[&str]) -> Output {
    Command::new(links.path(name)).args(args).stdin(std::process::Stdio::null()).output().unwrap()
}

#[test]
fn the_nvidia_names_dispatch_and_bad_arguments_are_refused_before_any_work() {
    let links = HookLinks::new();
    let out = run_as(&links, "nvidia-cdi-hook", &["chmod", "--mode", "4755", "--path", "/dev/dri"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "mighook: nvidia-cdi-hook chmod: --mode 4755: expected octal permission bits (at most 777)\n"
    );
    let out = run_as(&links, "nvidia-ctk", &["hook", "update-ldcache", "--folder", "lib"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("mighook: nvidia-cdi-hook update-ldcache: lib: not an absolute path"), "{err}");
    // A valid call with no state on stdin gets as far as reading it.
    let out = run_as(&links, "nvidia-cdi-hook", &["--debug", "disable-device-node-modification"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("OCI state on stdin is not JSON"), "{err}");
    let out = run_as(&links, "nvidia-ctk", &["cdi", "generate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("answers only `nvidia-ctk hook <subcommand>`"));
    let out = run_as(&links, "nvidia-cdi-hook", &["no-such-hook"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}
