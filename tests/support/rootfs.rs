//! The container image: busybox-static, its applet links and the static probe.
//!
//! Built once and cached under `target/e2e/` (keyed by the content of both
//! binaries), so a test process pays ~0.2 s once and re-runs pay nothing. The
//! cached tree is shared by concurrent containers: configs keep `root.readonly`
//! and every mount point exists up front, so no runtime writes into it. Tests
//! that need a modified image take a private [`copy_rootfs`].

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Mount points runc/crun need in the image; created up front so the shared tree never changes.
const IMAGE_DIRS: &[&str] = &["bin", "dev", "proc", "sys", "tmp", "etc", "root", "run", "var"];

/// `target/e2e/`, the cache dir of the e2e harness.
pub fn e2e_dir() -> PathBuf {
    let d = super::target_dir().join("e2e");
    fs::create_dir_all(&d).unwrap_or_else(|e| panic!("create {}: {e}", d.display()));
    d
}

/// Source of the probe.
pub fn openprobe_source() -> PathBuf {
    super::workspace_root().join("tests/e2e/openprobe.c")
}

/// `target/e2e/openprobe-<hash of source>`, compiled with `gcc -static -O2` when missing.
pub fn openprobe_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let src = fs::read(openprobe_source()).expect("read tests/e2e/openprobe.c");
        let bin = e2e_dir().join(format!("openprobe-{:016x}", fnv1a(&src)));
        if !bin.exists() {
            // Compile to a private name and rename: other test binaries may race us.
            let tmp = e2e_dir().join(format!("openprobe.tmp-{}", std::process::id()));
            let out = Command::new(super::tool("gcc"))
                .args(["-static", "-O2", "-Wall", "-o"])
                .arg(&tmp)
                .arg(openprobe_source())
                .output()
                .expect("spawn gcc");
            assert!(out.status.success(), "gcc -static openprobe.c failed:\n{}", String::from_utf8_lossy(&out.stderr));
            fs::rename(&tmp, &bin).expect("rename openprobe");
        }
        bin
    })
    .clone()
}

/// The cached, shared busybox rootfs (read-only use only).
pub fn busybox_rootfs() -> PathBuf {
    static ROOTFS: OnceLock<PathBuf> = OnceLock::new();
    ROOTFS.get_or_init(build_cached_rootfs).clone()
}

/// A private copy of the rootfs in a new temp dir, for tests that alter the image.
pub fn copy_rootfs() -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix("mighook-e2e-rootfs").tempdir().expect("tempdir");
    let out = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", busybox_rootfs().display()))
        .arg(dir.path())
        .output()
        .expect("spawn cp");
    assert!(out.status.success(), "cp -a rootfs failed: {}", String::from_utf8_lossy(&out.stderr));
    dir
}

fn build_cached_rootfs() -> PathBuf {
    let busybox = static_busybox();
    let probe = openprobe_binary();
    let key = fnv1a(&[fs::read(&busybox).expect("read busybox"), fs::read(&probe).expect("read probe")].concat());
    let root = e2e_dir().join(format!("rootfs-{key:016x}"));
    if root.join("bin/openprobe").exists() {
        assert_pristine(&root);
        return root;
    }
    let tmp = e2e_dir().join(format!("rootfs.tmp-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    for d in IMAGE_DIRS {
        fs::create_dir_all(tmp.join(d)).expect("mkdir in rootfs");
    }
    fs::copy(&busybox, tmp.join("bin/busybox")).expect("copy busybox");
    fs::copy(&probe, tmp.join("bin/openprobe")).expect("copy openprobe");
    let list = Command::new(&busybox).arg("--list").output().expect("busybox --list");
    assert!(list.status.success(), "busybox --list failed");
    for applet in String::from_utf8_lossy(&list.stdout).lines().filter(|a| !a.is_empty() && *a != "busybox") {
        symlink("busybox", tmp.join("bin").join(applet)).expect("applet symlink");
    }
    fs::write(tmp.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("write passwd");
    fs::write(tmp.join("etc/group"), "root:x:0:\n").expect("write group");
    match fs::rename(&tmp, &root) {
        Ok(()) => {}
        // Another test process finished first: use its copy.
        Err(_) if root.join("bin/openprobe").exists() => fs::remove_dir_all(&tmp).expect("rm tmp rootfs"),
        Err(e) => panic!("rename rootfs into {}: {e}", root.display()),
    }
    prune_stale(&root, &probe);
    root
}

/// Drop images and probes of older sources, so target/e2e does not grow with every probe edit.
fn prune_stale(root: &Path, probe: &Path) {
    let Ok(entries) = fs::read_dir(e2e_dir()) else { return };
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if path == root || path == probe || name.contains(".tmp-") {
            continue;
        }
        if name.starts_with("rootfs-") {
            let _ = fs::remove_dir_all(&path);
        } else if name.starts_with("openprobe-") {
            let _ = fs::remove_file(&path);
        }
    }
}

/// The cached image's `/dev` must stay empty: anything there was written from the host
/// side by a hook that missed the container's /dev tmpfs, and would then persist.
pub fn assert_pristine(root: &Path) {
    let dev: Vec<_> =
        fs::read_dir(root.join("dev")).expect("read rootfs/dev").map(|e| e.unwrap().file_name()).collect();
    assert!(
        dev.is_empty(),
        "cached rootfs {}/dev is not empty: {dev:?}; something wrote into the image from the host \
         (remove {} to rebuild it)",
        root.display(),
        root.display()
    );
}

/// busybox from busybox-static; a dynamic busybox would not run in the bare rootfs.
fn static_busybox() -> PathBuf {
    let bb = super::tool("busybox");
    let bytes = fs::read(&bb).expect("read busybox");
    assert!(!elf_has_interp(&bytes), "{} is dynamically linked: install busybox-static", bb.display());
    bb
}

/// Whether a 64-bit little-endian ELF has a PT_INTERP program header (i.e. is dynamic).
fn elf_has_interp(elf: &[u8]) -> bool {
    assert!(elf.len() > 64 && &elf[..4] == b"\x7fELF" && elf[4] == 2 && elf[5] == 1, "not a 64-bit LE ELF");
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).any(|i| {
        let o = phoff + i * phentsize;
        u32::from_le_bytes(elf[o..o + 4].try_into().unwrap()) == 3 // PT_INTERP
    })
}

/// FNV-1a: a stable content hash for cache keys (std's hasher is not stable across releases).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}
