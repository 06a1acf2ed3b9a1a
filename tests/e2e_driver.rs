//! The driver's user space in a container, end to end through real runtimes:
//! mighook as the prestart hook and as the runtime shim, on a simulated node
//! whose fake driver installation (tests/fake-nvml) has real SONAMEs, a fake
//! `nvidia-smi` linked against `libnvidia-ml.so.1`, a fake libcuda whose
//! `cuInit` needs `/dev/nvidiactl` and `/dev/nvidia-uvm`, and an unrelated
//! library beside them. The images are plain glibc images (Debian and RHEL
//! layouts) with no driver file of their own.
//!
//! `nvidia-smi -L` inside the container proves the whole chain at once: the
//! fake NVML shows only what the container's nodes let it open, so it prints
//! exactly the requested GPU and MIG device, and it runs only if the loader
//! found `libnvidia-ml.so.1` by SONAME through the merged cache.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use support::a100::MIG_0_1_UUID;
use support::glibc_image::{Layout, copy_glibc_image};
use support::{Bundle, Runtime, SimNode};

const GPU_0_UUID: &str = "GPU-066d0ced-a3fb-eefb-a347-82895e8fb78c";
const VERSION: &str = "550.54.15";

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `nvidia-smi -L` for `0:1` as the real driver shows it inside such a container.
fn smi_0_1() -> String {
    format!("GPU 0: NVIDIA A100-SXM4-40GB (UUID: {GPU_0_UUID})\n  MIG 1g.5gb      Device  0: (UUID: {MIG_0_1_UUID})\n")
}

/// What the container runs: nvidia-smi, then the library probe.
fn script(image: Layout) -> String {
    let lib = image.lib_dir();
    format!(
        "/usr/bin/nvidia-smi -L; echo smi=$?; \
         /usr/bin/libprobe cuinit; /usr/bin/libprobe own; \
         /usr/bin/libprobe dlopen libnvidia-ml.so.1 libcuda.so.1 libcuda.so libnvidia-ptxjitcompiler.so.1 \
           libunrelated.so.1 libnvidia-encode.so.1 libEGL_nvidia.so.0; \
         /usr/bin/libprobe write /usr/bin/nvidia-smi /{lib}/libcuda.so.{VERSION} /etc/ld.so.cache \
           /lib/firmware/nvidia/{VERSION}/gsp_ga10x.bin"
    )
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

/// The probe lines of a `utility,compute` container on image `image`.
fn assert_served(what: &str, out: &Output, image: Layout) {
    assert!(out.status.success(), "{what}: {}", support::runtime::describe(out));
    let text = stdout(out);
    let got = lines(&text);
    let lib = image.lib_dir();
    let smi = smi_0_1();
    let mut want: Vec<&str> = lines(&smi);
    let tail = "smi=0\ncuInit 0\nown ok\nlibnvidia-ml.so.1 ok\nlibcuda.so.1 ok\nlibcuda.so ok\nlibnvidia-ptxjitcompiler.so.1 ok";
    want.extend(lines(tail));
    assert_eq!(&got[..want.len()], &want[..], "{what}:\n{text}");
    let rest = &got[want.len()..];
    assert!(
        rest[0].starts_with("libunrelated.so.1 error "),
        "{what}: the unrelated host library reached the container:\n{text}"
    );
    assert!(rest[1].starts_with("libnvidia-encode.so.1 error "), "{what}: video was not asked for:\n{text}");
    assert!(rest[2].starts_with("libEGL_nvidia.so.0 error "), "{what}: graphics was not asked for:\n{text}");
    let ro = format!(
        "/usr/bin/nvidia-smi EROFS\n/{lib}/libcuda.so.{VERSION} EROFS\n/etc/ld.so.cache EROFS\n\
         /lib/firmware/nvidia/{VERSION}/gsp_ga10x.bin EROFS"
    );
    assert_eq!(&rest[3..], &lines(&ro)[..], "{what}: injected files must be read-only:\n{text}");
}

/// A bundle running [`script`]; `read_only_root` as Kubernetes' readOnlyRootFilesystem
/// (the runtime remounts the root read-only after the hooks and mounts).
fn bundle_with(image: &Path, layout: Layout, env: &[&str], read_only_root: bool) -> Bundle {
    let s = script(layout);
    let mut env: Vec<&str> = env.to_vec();
    env.push("PATH=/usr/bin:/bin");
    Bundle::new(image, &env, &["/bin/sh", "-c", &s]).edit(|c| c["root"]["readonly"] = serde_json::json!(read_only_root))
}

fn bundle_for(image: &Path, layout: Layout, env: &[&str]) -> Bundle {
    bundle_with(image, layout, env, false)
}

fn with_hook(bundle: Bundle, node: &SimNode) -> Bundle {
    bundle.with_mighook(node)
}

fn supported_runtimes() -> Vec<Runtime> {
    let mut out = vec![];
    for rt in Runtime::ALL {
        match rt.supported() {
            Ok(()) => out.push(rt),
            Err(why) => support::skip_unsupported(&format!("{}: {why}", rt.name())),
        }
    }
    out
}

/// The hook path: `NVIDIA_VISIBLE_DEVICES=0:1` in a plain glibc image gets nvidia-smi and
/// libcuda by SONAME, read-only, and nothing else of the host's, on every runtime; the
/// image's and the driver root's layouts differ both ways.
#[test]
fn hook_serves_nvidia_smi_and_libcuda_in_a_plain_image() {
    if !support::require_root_and(&["runc", "crun"]) {
        return;
    }
    for (image_layout, driver_layout) in [(Layout::Debian, Layout::Rhel), (Layout::Rhel, Layout::Debian)] {
        let node = SimNode::with_driver_root("a100x8", driver_layout);
        let before = support::tree(&node.driver_root());
        for rt in supported_runtimes() {
            let image = copy_glibc_image(image_layout);
            let bundle = with_hook(bundle_for(image.path(), image_layout, &["NVIDIA_VISIBLE_DEVICES=0:1"]), &node);
            let out = rt.run(&bundle);
            assert_served(&format!("hook {} image {image_layout:?}", rt.name()), &out, image_layout);
        }
        assert_eq!(support::tree(&node.driver_root()), before, "the driver root changed");
    }
}

/// The shim path: the mounts go into config.json and runc makes them; the SONAME
/// links and the merged loader cache are prepared before runc starts.
#[test]
fn shim_serves_nvidia_smi_and_libcuda_in_a_plain_image() {
    if !support::require_root_and(&["runc", "crun"]) {
        return;
    }
    for (image_layout, driver_layout) in [(Layout::Rhel, Layout::Debian), (Layout::Debian, Layout::Rhel)] {
        let node = SimNode::with_driver_root("a100x8", driver_layout);
        let before = support::tree(&node.driver_root());
        for rt in supported_runtimes() {
            let image = copy_glibc_image(image_layout);
            // A read-only root here (the hook test has a writable one): links and mount points
            // are made before the runtime remounts it.
            let bundle = bundle_with(image.path(), image_layout, &["NVIDIA_VISIBLE_DEVICES=0:1"], true);
            let out = rt.run_shim(&bundle, &node.mighook_args());
            assert_served(&format!("shim {} image {image_layout:?}", rt.name()), &out, image_layout);
        }
        assert_eq!(support::tree(&node.driver_root()), before, "the driver root changed");
    }
}

/// Without compute there is no libcuda (cuInit cannot even load it) but nvidia-smi works;
/// without a request nothing at all is injected.
#[test]
fn capabilities_choose_the_files_and_no_request_gets_none() {
    if !support::require_root_and(&["runc"]) {
        return;
    }
    let node = SimNode::with_driver_root("a100x8", Layout::Debian);
    let rt = supported_runtimes()[0];
    let image = copy_glibc_image(Layout::Debian);
    let utility = ["NVIDIA_VISIBLE_DEVICES=0:1", "NVIDIA_DRIVER_CAPABILITIES=utility"];
    let out = rt.run(&with_hook(bundle_for(image.path(), Layout::Debian, &utility), &node));
    let text = stdout(&out);
    assert!(text.starts_with(&smi_0_1()), "{text}");
    assert!(text.contains("\ncuInit error libcuda.so.1: cannot open shared object file"), "{text}");
    assert!(text.contains("\nlibcuda.so.1 error "), "{text}");

    let image = copy_glibc_image(Layout::Debian);
    let before = support::tree(image.path());
    let out = rt.run(&with_hook(bundle_for(image.path(), Layout::Debian, &[]), &node));
    let text = stdout(&out);
    assert!(text.starts_with("smi=127\ncuInit error"), "{text}");
    assert!(text.contains("\n/usr/bin/nvidia-smi ENOENT\n"), "{text}");
    assert!(text.contains("\nown ok\n"), "{text}");
    assert_eq!(support::tree(image.path()), before, "a container that asks for nothing got something");
}

/// Every path under `root` (not following links) with its mode, and size for non-dirs:
/// what a failed start must leave as it was (a dir's mtime changes when an entry is
/// made and removed again, so times are not compared).
fn entries(root: &Path) -> BTreeMap<PathBuf, (u32, u64)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                todo.push(p.clone());
            }
            out.insert(p, (m.mode(), if m.is_dir() { 0 } else { m.size() }));
        }
    }
    out
}

/// A hook that fails late leaves nothing behind: with the container's `/dev` in the
/// image (no tmpfs) so its nodes land where they can be seen, a directory in the
/// image where a SONAME link goes makes the hook fail after it made the nodes and
/// the driver files' mounts; afterwards no node, mount point, parent dir, link or
/// loader-cache target of mighook's is left in the image.
#[test]
fn a_hook_that_fails_late_leaves_nothing_in_the_image() {
    if !support::require_root_and(&["runc"]) {
        return;
    }
    let node = SimNode::with_driver_root("a100x8", Layout::Debian);
    let rt = supported_runtimes()[0];
    let no_dev_tmpfs = |c: &mut serde_json::Value| {
        c["mounts"].as_array_mut().unwrap().retain(|m| m["destination"] != "/dev");
    };
    let run = |image: &Path| {
        let bundle = with_hook(bundle_for(image, Layout::Debian, &["NVIDIA_VISIBLE_DEVICES=0:1"]), &node);
        rt.run(&bundle.edit(no_dev_tmpfs))
    };
    let lib = Layout::Debian.lib_dir();
    let ours = |p: &Path| {
        let s = p.to_string_lossy();
        ["nvidia", "cuda", "/lib/firmware", "ld.so.cache"].iter().any(|w| s.contains(w))
    };

    // The same start without the blocker: the hook makes nodes and files in the image.
    let image = copy_glibc_image(Layout::Debian);
    let before = entries(image.path());
    let out = run(image.path());
    assert!(out.status.success(), "{}", support::runtime::describe(&out));
    let made: Vec<PathBuf> = entries(image.path()).into_keys().filter(|p| !before.contains_key(p) && ours(p)).collect();
    assert!(made.contains(&image.path().join("dev/nvidiactl")), "{made:?}");
    assert!(made.contains(&image.path().join("usr/bin/nvidia-smi")), "{made:?}");

    // Now with a directory where libcuda.so.1's link goes.
    let image = copy_glibc_image(Layout::Debian);
    let blocker = image.path().join(lib).join("libcuda.so.1");
    fs::create_dir(&blocker).unwrap();
    let before = entries(image.path());
    let out = run(image.path());
    assert!(!out.status.success(), "the hook did not fail: {}", support::runtime::describe(&out));
    let text = support::runtime::describe(&out);
    assert!(text.contains(&format!("/{lib}/libcuda.so.1")), "{text}");
    let after = entries(image.path());
    let left: Vec<&PathBuf> = after.keys().filter(|p| !before.contains_key(*p) && ours(p)).collect();
    assert!(left.is_empty(), "mighook's entries left behind: {left:?}\n{text}");
    let changed: Vec<&PathBuf> = before.iter().filter(|(p, v)| after.get(*p) != Some(v)).map(|(p, _)| p).collect();
    assert!(changed.is_empty(), "entries of the image changed or went: {changed:?}");
}
