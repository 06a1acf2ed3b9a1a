//! The glibc test images: what a real distribution image looks like to the
//! dynamic loader, so tests can check that libraries mighook injects are found
//! by SONAME, that the image's own libraries still are, and that injected files
//! are read-only.
//!
//! Each image holds busybox-static with its applets (`sh`, `ls`, `cat`, ...),
//! the static `openprobe`, the dynamically linked `libprobe`
//! (`tests/e2e/libprobe.c`), the host's loader and libc, one library of the
//! image's own (`libimage.so.1`, SONAME set, `tests/e2e/libimage.c`), and the
//! image's own `etc/ld.so.cache` written by the host's `ldconfig -r`. Two
//! layouts:
//!
//! - debian: `etc/debian_version`, libraries in `usr/lib/x86_64-linux-gnu`,
//!   `lib -> usr/lib`, `lib64/ld-linux-x86-64.so.2` a link to the loader;
//! - rhel: `etc/redhat-release`, libraries and loader in `usr/lib64`,
//!   `lib64 -> usr/lib64`. The (Debian) loader's built-in search dirs are the
//!   multiarch ones, so there libc is found only through the image's own
//!   cache: intended, it proves the image's cache entries keep working.
//!
//! Built once per content (probes, libraries, busybox, layout) and cached under
//! `target/e2e/` like [`super::rootfs`]; the cached tree is shared and must
//! stay read-only. Tests that alter an image take a [`copy_glibc_image`].

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::rootfs::{e2e_dir, fnv1a};

/// Bump when the image recipe changes without its inputs changing.
const RECIPE: &str = "glibc-image-2";

/// Mount points and dirs every image has.
const IMAGE_DIRS: &[&str] =
    &["bin", "dev", "proc", "sys", "tmp", "etc", "root", "run", "var/run", "usr/bin", "usr/lib", "usr/sbin"];

/// Where the image keeps its libraries (and, for rhel, its loader).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layout {
    Debian,
    Rhel,
}

impl Layout {
    pub const ALL: [Layout; 2] = [Layout::Debian, Layout::Rhel];

    /// `debian` / `rhel`: also the value of `fake-node --layout`.
    pub fn name(self) -> &'static str {
        match self {
            Layout::Debian => "debian",
            Layout::Rhel => "rhel",
        }
    }

    /// The library dir, relative to the root (same for images and driver roots).
    pub fn lib_dir(self) -> &'static str {
        match self {
            Layout::Debian => "usr/lib/x86_64-linux-gnu",
            Layout::Rhel => "usr/lib64",
        }
    }
}

/// Source of libprobe.
pub fn libprobe_source() -> PathBuf {
    super::workspace_root().join("tests/e2e/libprobe.c")
}

/// Compile `src` with gcc (`flags`) to `target/e2e/<stem>-<hash of source and flags>`, once.
fn compiled(stem: &str, src: &Path, flags: &[&str]) -> PathBuf {
    let text = fs::read(src).unwrap_or_else(|e| panic!("read {}: {e}", src.display()));
    let key = fnv1a(&[text, flags.join(" ").into_bytes()].concat());
    let out = e2e_dir().join(format!("{stem}-{key:016x}"));
    if !out.exists() {
        // Private name, then rename: other test binaries may race us.
        let tmp = e2e_dir().join(format!("{stem}.tmp-{}", std::process::id()));
        let result = Command::new(super::tool("gcc"))
            .args(["-O2", "-Wall", "-Wextra"])
            .args(flags)
            .arg("-o")
            .arg(&tmp)
            .arg(src)
            .output()
            .expect("spawn gcc");
        assert!(result.status.success(), "gcc {} failed:\n{}", src.display(), String::from_utf8_lossy(&result.stderr));
        fs::rename(&tmp, &out).unwrap_or_else(|e| panic!("rename {}: {e}", out.display()));
    }
    out
}

/// `target/e2e/libprobe-<hash>`: dynamically linked against the host glibc.
pub fn libprobe_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| compiled("libprobe", &libprobe_source(), &[])).clone()
}

/// `target/e2e/libimage-<hash>`: the image's own library, SONAME `libimage.so.1`.
pub fn libimage_library() -> PathBuf {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let src = super::workspace_root().join("tests/e2e/libimage.c");
        compiled("libimage", &src, &["-shared", "-fPIC", "-Wl,-soname,libimage.so.1"])
    })
    .clone()
}

/// CUDA version the compat libcuda of [`install_cuda_compat`] reports (the driver's fake says 12040).
pub const COMPAT_CUDA_VERSION: i32 = 12080;

/// `target/e2e/libcuda-compat-<hash>`: the fake libcuda (`tests/fake-nvml/c/cuda.c`),
/// SONAME `libcuda.so.1`, reporting [`COMPAT_CUDA_VERSION`] so a test sees which one loaded.
pub fn compat_libcuda() -> PathBuf {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let src = super::workspace_root().join("tests/fake-nvml/c/cuda.c");
        let define = format!("-DFAKE_CUDA_VERSION={COMPAT_CUDA_VERSION}");
        compiled("libcuda-compat", &src, &["-shared", "-fPIC", "-Wl,-soname,libcuda.so.1", &define])
    })
    .clone()
}

/// What the `cuda-compat-12-8` package puts into an image: `usr/local/cuda -> cuda-12.8`,
/// and in `compat/` the user-mode driver `libcuda.so.<driver_version>` with its
/// `libcuda.so.1` and `libcuda.so` links. For a private image copy only.
pub fn install_cuda_compat(root: &Path, driver_version: &str) {
    let compat = root.join("usr/local/cuda-12.8/compat");
    fs::create_dir_all(&compat).expect("mkdir compat");
    symlink("cuda-12.8", root.join("usr/local/cuda")).expect("link usr/local/cuda");
    let file = format!("libcuda.so.{driver_version}");
    fs::copy(compat_libcuda(), compat.join(&file)).expect("copy compat libcuda");
    symlink(&file, compat.join("libcuda.so.1")).expect("link libcuda.so.1");
    symlink("libcuda.so.1", compat.join("libcuda.so")).expect("link libcuda.so");
}

/// The host file behind the first existing candidate path (links resolved).
fn host_file(candidates: &[&str]) -> PathBuf {
    candidates
        .iter()
        .map(Path::new)
        .find(|p| p.exists())
        .map(|p| fs::canonicalize(p).expect("canonicalize"))
        .unwrap_or_else(|| panic!("none of {candidates:?} exists on this host"))
}

fn host_loader() -> PathBuf {
    host_file(&["/lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"])
}

fn host_libgcc_s() -> PathBuf {
    host_file(&[
        "/lib/x86_64-linux-gnu/libgcc_s.so.1",
        "/usr/lib/x86_64-linux-gnu/libgcc_s.so.1",
        "/usr/lib64/libgcc_s.so.1",
    ])
}

fn host_libc() -> PathBuf {
    host_file(&["/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib64/libc.so.6"])
}

/// The cached, shared image of `layout` (read-only use only).
pub fn glibc_image(layout: Layout) -> PathBuf {
    static IMAGES: OnceLock<std::sync::Mutex<std::collections::HashMap<Layout, PathBuf>>> = OnceLock::new();
    let images = IMAGES.get_or_init(Default::default);
    let mut images = images.lock().unwrap_or_else(|e| e.into_inner());
    images.entry(layout).or_insert_with(|| build_cached(layout)).clone()
}

/// A private copy of the image in a new temp dir, for tests that alter it.
pub fn copy_glibc_image(layout: Layout) -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix("mighook-e2e-glibc").tempdir().expect("tempdir");
    let out = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", glibc_image(layout).display()))
        .arg(dir.path())
        .output()
        .expect("spawn cp");
    assert!(out.status.success(), "cp -a glibc image failed: {}", String::from_utf8_lossy(&out.stderr));
    dir
}

fn build_cached(layout: Layout) -> PathBuf {
    let busybox = super::tool("busybox");
    let inputs = [
        busybox.clone(),
        super::openprobe_binary(),
        libprobe_binary(),
        libimage_library(),
        host_libc(),
        host_libgcc_s(),
        host_loader(),
    ];
    let mut bytes = Vec::new();
    for input in &inputs {
        bytes.extend(fnv1a(&fs::read(input).unwrap_or_else(|e| panic!("read {}: {e}", input.display()))).to_le_bytes());
    }
    bytes.extend_from_slice(RECIPE.as_bytes());
    bytes.extend_from_slice(layout.name().as_bytes());
    let root = e2e_dir().join(format!("glibc-{}-{:016x}", layout.name(), fnv1a(&bytes)));
    let done = root.join("usr/bin/libprobe");
    if done.exists() {
        super::rootfs::assert_pristine(&root);
        return root;
    }
    let tmp = e2e_dir().join(format!("glibc-{}.tmp-{}", layout.name(), std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    populate(&tmp, layout, &busybox);
    match fs::rename(&tmp, &root) {
        Ok(()) => {}
        // Another test process finished first: use its copy.
        Err(_) if done.exists() => fs::remove_dir_all(&tmp).expect("rm tmp image"),
        Err(e) => panic!("rename glibc image into {}: {e}", root.display()),
    }
    prune_stale(layout, &root);
    root
}

fn populate(root: &Path, layout: Layout, busybox: &Path) {
    let mkdir = |d: &str| fs::create_dir_all(root.join(d)).unwrap_or_else(|e| panic!("mkdir {d}: {e}"));
    let copy = |from: &Path, to: &str| {
        fs::copy(from, root.join(to)).unwrap_or_else(|e| panic!("copy {} to {to}: {e}", from.display()));
    };
    let link = |target: &str, at: &str| symlink(target, root.join(at)).unwrap_or_else(|e| panic!("symlink {at}: {e}"));
    let write = |at: &str, text: &str| fs::write(root.join(at), text).unwrap_or_else(|e| panic!("write {at}: {e}"));
    for d in IMAGE_DIRS {
        mkdir(d);
    }
    let lib = layout.lib_dir();
    mkdir(lib);
    link("usr/lib", "lib");
    match layout {
        Layout::Debian => {
            mkdir("lib64");
            link("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", "lib64/ld-linux-x86-64.so.2");
            write("etc/debian_version", "12.8\n");
        }
        Layout::Rhel => {
            link("usr/lib64", "lib64");
            write("etc/redhat-release", "Red Hat Enterprise Linux release 9.4 (Plow)\n");
        }
    }
    copy(&host_loader(), &format!("{lib}/ld-linux-x86-64.so.2"));
    copy(&host_libc(), &format!("{lib}/libc.so.6"));
    copy(&host_libgcc_s(), &format!("{lib}/libgcc_s.so.1"));
    copy(&libimage_library(), &format!("{lib}/libimage.so.1.0.0"));
    link("libimage.so.1.0.0", &format!("{lib}/libimage.so.1"));

    copy(busybox, "bin/busybox");
    let list = Command::new(busybox).arg("--list").output().expect("busybox --list");
    assert!(list.status.success(), "busybox --list failed");
    for applet in String::from_utf8_lossy(&list.stdout).lines().filter(|a| !a.is_empty() && *a != "busybox") {
        link("busybox", &format!("bin/{applet}"));
    }
    copy(&super::openprobe_binary(), "bin/openprobe");
    copy(&libprobe_binary(), "usr/bin/libprobe");
    write("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n");
    write("etc/group", "root:x:0:\n");
    write("etc/ld.so.conf", &format!("/{lib}\n"));
    ldconfig(root);
}

/// The image's own cache, by the host's ldconfig with the image as root
/// (`-r` chroots, so a user needs a user namespace: `unshare -r`).
pub fn ldconfig(root: &Path) {
    let ldconfig = super::tool("ldconfig");
    let args =
        ["-X", "-r", root.to_str().expect("utf-8 image path"), "-C", "/etc/ld.so.cache", "-f", "/etc/ld.so.conf"];
    let mut cmd = if super::is_root() {
        Command::new(&ldconfig)
    } else {
        let mut c = Command::new(super::tool("unshare"));
        c.arg("-r").arg(&ldconfig);
        c
    };
    let out = cmd.args(args).output().expect("spawn ldconfig");
    assert!(
        out.status.success() && root.join("etc/ld.so.cache").exists(),
        "ldconfig {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Drop older images of this layout and older probe/library builds.
fn prune_stale(layout: Layout, root: &Path) {
    let keep = [root.to_path_buf(), libprobe_binary(), libimage_library()];
    let prefix = format!("glibc-{}-", layout.name());
    let Ok(entries) = fs::read_dir(e2e_dir()) else { return };
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if keep.contains(&path) || name.contains(".tmp-") {
            continue;
        }
        if name.starts_with(&prefix) {
            let _ = fs::remove_dir_all(&path);
        } else if name.starts_with("libprobe-") || name.starts_with("libimage-") {
            let _ = fs::remove_file(&path);
        }
    }
}
