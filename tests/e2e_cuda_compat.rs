//! CUDA forward compatibility end to end: a glibc image with the `cuda-compat`
//! package's layout (`/usr/local/cuda -> cuda-12.8`, `compat/libcuda.so.<X>`
//! with its links), on a simulated node whose fake driver is 550.54.15. The
//! compat libcuda is the same fake built to report CUDA 12080 (the driver's
//! says 12040), so `libprobe cuversion` shows which one the container's loader
//! picked. A compat driver of a greater major (570) must win; one of a smaller
//! (535) or the same major (550, newer minor) must not; `cuda-compat = false`
//! turns it off. Through real runc as the prestart hook and as the shim, and
//! through podman with mighook's CDI spec (its `cdi-hook --cuda-compat`).

mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::glibc_image::{COMPAT_CUDA_VERSION, Layout, copy_glibc_image, install_cuda_compat};
use support::{Bundle, Runtime, SimNode};

#[allow(unused_imports)] // the MIG constants it re-exports
#[path = "support/engines.rs"]
mod engines;

/// The fake driver's own CUDA version (tests/fake-nvml/c/cuda.c).
const DRIVER_CUDA_VERSION: i32 = 12040;
const SCRIPT: &str = "/usr/bin/libprobe cuversion; /usr/bin/libprobe cuinit; /usr/bin/libprobe dlopen libcuda.so";

/// (compat driver version in the image, CUDA version the container must see).
fn cases() -> [(&'static str, i32); 3] {
    [("570.86.10", COMPAT_CUDA_VERSION), ("535.104.05", DRIVER_CUDA_VERSION), ("550.90.07", DRIVER_CUDA_VERSION)]
}

fn assert_loaded(what: &str, out: &Output, cuda: i32) {
    assert!(out.status.success(), "{what}: {}", support::runtime::describe(out));
    let text = String::from_utf8_lossy(&out.stdout);
    let want = format!("cuDriverGetVersion {cuda}\ncuInit 0\nlibcuda.so ok\n");
    assert_eq!(text, want, "{what}");
}

fn bundle(image: &Path) -> Bundle {
    Bundle::new(image, &["NVIDIA_VISIBLE_DEVICES=0:1", "PATH=/usr/bin:/bin"], &["/bin/sh", "-c", SCRIPT])
}

/// runc, with whichever cgroup mode this machine runs it in.
fn runc() -> Option<Runtime> {
    support::runtime::any_runc(&["runc", "gcc", "ldconfig"])
}

#[test]
fn hook_puts_a_newer_compat_libcuda_first_and_never_an_older_one() {
    let Some(rt) = runc() else { return };
    let node = SimNode::with_driver_root("a100x8", Layout::Debian);
    for (compat, cuda) in cases() {
        let image = copy_glibc_image(Layout::Rhel);
        install_cuda_compat(image.path(), compat);
        let out = rt.run(&bundle(image.path()).with_mighook(&node));
        assert_loaded(&format!("hook, compat {compat}"), &out, cuda);
        assert!(image.path().join("usr/local/cuda-12.8/compat/libcuda.so.1").is_symlink(), "the image changed");
    }
}

#[test]
fn shim_puts_a_newer_compat_libcuda_first_and_never_an_older_one() {
    let Some(rt) = runc() else { return };
    let node = SimNode::with_driver_root("a100x8", Layout::Rhel);
    for (compat, cuda) in cases() {
        let image = copy_glibc_image(Layout::Debian);
        install_cuda_compat(image.path(), compat);
        let out = rt.run_shim(&bundle(image.path()), &node.mighook_args());
        assert_loaded(&format!("shim, compat {compat}"), &out, cuda);
    }
}

/// The shim reads the compat dir before runc mounts volumes: a volume where the image's
/// `/usr/local/cuda` leads would hold other files, so its compat library is not put first.
#[test]
fn shim_leaves_a_compat_dir_under_a_volume_alone() {
    let Some(rt) = runc() else { return };
    let node = SimNode::with_driver_root("a100x8", Layout::Rhel);
    let image = copy_glibc_image(Layout::Debian);
    install_cuda_compat(image.path(), "570.86.10");
    let volume = tempfile::tempdir().unwrap();
    install_cuda_compat(volume.path(), "570.86.10");
    let source = volume.path().join("usr/local/cuda-12.8");
    let b = bundle(image.path()).edit(|c| {
        let mount = serde_json::json!({"destination": "/usr/local/cuda-12.8", "type": "bind", "source": source, "options": ["rbind", "ro"]});
        c["mounts"].as_array_mut().unwrap().push(mount);
    });
    assert_loaded("shim, compat dir under a volume", &rt.run_shim(&b, &node.mighook_args()), DRIVER_CUDA_VERSION);
}

/// The image under runc with mighook as its prestart hook, configured `cuda-compat = false`.
fn run_hook_with_compat_off(rt: Runtime, node: &SimNode, image: &Path) -> Output {
    let config = image.with_extension("toml");
    std::fs::write(&config, "cuda-compat = false\n").unwrap();
    let mut args = vec!["mighook".to_string()];
    args.extend(node.mighook_args());
    args.extend(["--config".into(), config.to_str().unwrap().into(), "prestart".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let b = bundle(image).with_prestart_hook(&support::mighook_bin(), &args, &["PATH=/usr/bin:/bin"]);
    let out = rt.run(&b);
    let _ = std::fs::remove_file(&config);
    out
}

#[test]
fn cuda_compat_false_keeps_the_drivers_libcuda() {
    let Some(rt) = runc() else { return };
    let node = SimNode::with_driver_root("a100x8", Layout::Debian);
    let image = copy_glibc_image(Layout::Debian);
    install_cuda_compat(image.path(), "570.86.10");
    assert_loaded("hook, cuda-compat = false", &run_hook_with_compat_off(rt, &node, image.path()), DRIVER_CUDA_VERSION);
}

/// An image's own ld.so.cache carrying mighook's generator tag is not taken for one mighook
/// mounted earlier in the start: with `cuda-compat = false` its compat entry stays behind the driver's.
#[test]
fn a_forged_generator_tag_in_the_image_cache_does_not_put_compat_first() {
    let Some(rt) = runc() else { return };
    let node = SimNode::with_driver_root("a100x8", Layout::Debian);
    let image = copy_glibc_image(Layout::Debian);
    install_cuda_compat(image.path(), "570.86.10");
    let cache_path = image.path().join("etc/ld.so.cache");
    let mut cache = std::fs::read(&cache_path).map(|b| mighook::ldcache::parse(&b).unwrap()).unwrap_or_default();
    cache.entries.push(mighook::ldcache::Entry::x86_64("libcuda.so.1", "/usr/local/cuda-12.8/compat/libcuda.so.1"));
    cache.generator = Some(mighook::ldcache::GENERATOR.to_vec());
    std::fs::write(&cache_path, mighook::ldcache::serialize(&cache)).unwrap();
    let out = run_hook_with_compat_off(rt, &node, image.path());
    assert_loaded("hook, forged cache tag, cuda-compat = false", &out, DRIVER_CUDA_VERSION);
}

/// CDI: mighook's spec carries `--cuda-compat <driver version>` in its hook, which
/// decides at container create.
#[test]
fn podman_cdi_puts_a_newer_compat_libcuda_first_and_never_an_older_one() {
    if !support::require_root_and(&["podman", "runc", "tar", "gcc", "ldconfig", "mountpoint"]) {
        return;
    }
    let node = SimNode::with_driver_root("a100x8", Layout::Rhel);
    let cdi = engines::CdiDir::new();
    engines::ok(
        Command::new(support::mighook_bin())
            .args(node.mighook_args())
            .args(["cdi", "generate", "--output"])
            .arg(cdi.path().join("nvidia.json")),
        "mighook cdi generate",
    );
    let podman = engines::Podman::new();
    let no_hooks = podman.no_hooks_dir();
    for (i, (compat, cuda)) in cases().into_iter().enumerate() {
        let image = copy_glibc_image(Layout::Debian);
        install_cuda_compat(image.path(), compat);
        let name = format!("localhost/mighook-compat-{i}:e2e");
        podman.import_dir(image.path(), &name);
        let args = ["--hooks-dir", no_hooks.to_str().unwrap(), "--device", "nvidia.com/gpu=0:1", &name];
        let out = podman.run_in_ns(Some(&cdi), "runc", &[&args[..], &["/bin/sh", "-c", SCRIPT]].concat());
        assert_loaded(&format!("podman CDI, compat {compat}"), &out, cuda);
    }
}

/// The image's `/usr/local/cuda` is a link to the absolute path of a host dir that
/// holds a newer compat libcuda; the same path inside the image holds an older one.
/// Resolved inside the root, the older one is seen and not used (the driver's loads);
/// read on the host, the newer one would have put its links first and the image's
/// file at that path (the same fake, reporting 12080) would have loaded.
#[test]
fn a_compat_dir_linked_to_a_host_path_is_read_inside_the_root() {
    let Some(rt) = runc() else { return };
    let node = SimNode::with_driver_root("a100x8", Layout::Debian);
    let host = tempfile::Builder::new().prefix("mighook-e2e-hostcompat").tempdir().unwrap();
    install_cuda_compat(host.path(), "570.86.10");
    let before = support::tree(host.path());
    let image = copy_glibc_image(Layout::Debian);
    let host_compat = host.path().join("usr/local/cuda-12.8");
    install_cuda_compat(&image.path().join(host.path().strip_prefix("/").unwrap()), "535.104.05");
    std::fs::create_dir_all(image.path().join("usr/local")).unwrap();
    std::os::unix::fs::symlink(&host_compat, image.path().join("usr/local/cuda")).unwrap();
    let out = rt.run(&bundle(image.path()).with_mighook(&node));
    assert_loaded("hook, compat dir linked to a host path", &out, DRIVER_CUDA_VERSION);
    let out = rt.run_shim(&bundle(image.path()), &node.mighook_args());
    assert_loaded("shim, compat dir linked to a host path", &out, DRIVER_CUDA_VERSION);
    assert_eq!(support::tree(host.path()), before, "the host dir changed");
}
