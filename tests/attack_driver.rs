//! The attack suite for the driver's user space: hostile glibc images against
//! mighook as the prestart hook of real runc and as the runtime shim in front
//! of it, on a simulated node with a fake driver root.
//!
//! Each test takes a private copy of a glibc image and makes it hostile: the
//! directories mighook injects into (`/usr/lib/x86_64-linux-gnu`, `/usr/lib64`,
//! `/usr/bin`, `/lib/firmware`, `/etc`, `/run`) become symlinks to host
//! directories that exist, absolute or climbing out with `..`;
//! `/etc/ld.so.cache` becomes a symlink to a host file or into `/proc`, or a
//! garbage, huge (sparse) or FIFO cache. Every test then proves the same three
//! things:
//!
//! - the host is untouched: the watched host dirs and files (the attack suite's
//!   tree snapshots), the host's `/etc`, the driver root, mighook's own
//!   `/run/mighook`, and the host's mount table (no mount of the image or the
//!   victims appears in it);
//! - the outcome is the one expected: either the container runs and is served
//!   inside its own root (what landed where is listed from inside it), or the
//!   start fails on one `mighook:` line and the container never ran;
//! - no container is left behind.
//!
//! A container's own `LD_PRELOAD` and `MIGHOOK_DRIVER_ROOT` are shown to have no
//! effect on where mighook looks or what it loads.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use support::glibc_image::{Layout, copy_glibc_image};
use support::{Bundle, Runtime, SimNode};

/// One test at a time: `/run/mighook` and the host mount table are shared.
static SERIAL: Mutex<()> = Mutex::new(());

/// Host mounts whose mount point or root mentions any of `paths`.
fn host_mounts_of(paths: &[&Path]) -> Vec<String> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines().filter(|l| paths.iter().any(|p| l.contains(p.to_str().unwrap()))).map(String::from).collect()
}

/// The host as it was: watched trees (the driver root among them), `/etc`, `/run/mighook`.
struct HostGuard {
    etc: (SystemTime, Vec<String>),
    dirs: Vec<(PathBuf, BTreeMap<String, String>)>,
    files: Vec<(PathBuf, Vec<u8>, u64)>,
}

impl HostGuard {
    fn watch(dirs: &[&Path], files: &[&Path]) -> HostGuard {
        let mut all: Vec<&Path> = dirs.to_vec();
        all.push(Path::new(mighook::apply::STATE_DIR));
        HostGuard {
            etc: support::etc_state(),
            dirs: all.iter().map(|d| (d.to_path_buf(), support::tree(d))).collect(),
            files: files
                .iter()
                .map(|f| (f.to_path_buf(), fs::read(f).unwrap(), fs::metadata(f).unwrap().ino()))
                .collect(),
        }
    }

    fn changes(&self) -> Vec<String> {
        let mut found = vec![];
        let (mtime, names) = support::etc_state();
        let new: Vec<&String> = names.iter().filter(|n| !self.etc.1.contains(n)).collect();
        let gone: Vec<&String> = self.etc.1.iter().filter(|n| !names.contains(n)).collect();
        if !new.is_empty() || !gone.is_empty() || mtime != self.etc.0 {
            found.push(format!("/etc changed: new {new:?}, gone {gone:?}"));
        }
        for (dir, before) in &self.dirs {
            let after = support::tree(dir);
            if &after != before {
                found.push(format!("{} changed: {before:?} -> {after:?}", dir.display()));
            }
        }
        for (file, data, ino) in &self.files {
            if fs::read(file).ok().as_ref() != Some(data) || fs::metadata(file).map(|m| m.ino()).ok() != Some(*ino) {
                found.push(format!("{} changed", file.display()));
            }
        }
        found
    }
}

/// A host dir with a file and a subdir in it: where the hostile links point.
fn victim_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix("mighook-victim").tempdir().unwrap();
    fs::write(dir.path().join("victim"), "host data\n").unwrap();
    fs::create_dir(dir.path().join("sub")).unwrap();
    dir
}

fn runc() -> Option<Runtime> {
    support::runtime::any_runc(&["runc", "gcc", "busybox", "timeout", "mkfifo"])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Hook,
    Shim,
    /// The hook and the shim without `--driver-root`: only an environment could name one.
    HookNoDriverRoot,
    ShimNoDriverRoot,
}

/// `--nvml-lib` and `--proc-root` of the node, no `--driver-root`.
fn args_without_driver_root(node: &SimNode) -> Vec<String> {
    let s = |p: PathBuf| p.to_str().unwrap().to_string();
    vec!["--nvml-lib".into(), s(node.nvml_lib()), "--proc-root".into(), s(node.proc_root())]
}

/// What must come of a run.
#[derive(Debug, Clone, Copy)]
enum Want<'a> {
    /// The container ran and its stdout has every one of these lines.
    Served(&'a [&'a str]),
    /// The start failed on a `mighook:` line containing this.
    Refused(&'a str),
}

/// One hostile run: `image` of `layout` as changed, `script` in it, through `via`.
struct Attack<'a> {
    layout: Layout,
    env: &'a [&'a str],
    script: &'a str,
    /// Host dirs and files the image points at.
    watch_dirs: &'a [&'a Path],
    watch_files: &'a [&'a Path],
    /// Extra paths that must never appear in the host's mount table.
    never_mounted: &'a [&'a Path],
    /// config.json `mounts` to add (a `docker -v`).
    extra_mounts: &'a [serde_json::Value],
}

impl Attack<'_> {
    fn run(&self, rt: Runtime, via: Via, node: &SimNode, image: &Path, want: Want) -> Output {
        let driver_root = node.driver_root();
        let mut dirs = self.watch_dirs.to_vec();
        dirs.push(&driver_root);
        let guard = HostGuard::watch(&dirs, self.watch_files);
        let mut env: Vec<&str> = self.env.to_vec();
        env.push("PATH=/usr/bin:/bin");
        let bundle = Bundle::new(image, &env, &["/bin/sh", "-c", self.script]).edit(|c| {
            c["root"]["readonly"] = serde_json::json!(false);
            c["mounts"].as_array_mut().unwrap().extend(self.extra_mounts.iter().cloned());
        });
        let start = Instant::now();
        let out = match via {
            Via::Hook => rt.run(&bundle.with_mighook(node)),
            Via::HookNoDriverRoot => {
                let mut args = vec!["mighook".to_string()];
                args.extend(args_without_driver_root(node));
                args.push("prestart".into());
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                rt.run(&bundle.with_prestart_hook(&support::mighook_bin(), &args, &[support::bundle::HOOK_PATH_ENV]))
            }
            Via::Shim | Via::ShimNoDriverRoot => {
                let args = if via == Via::Shim { node.mighook_args() } else { args_without_driver_root(node) };
                let out = rt.run_shim(&bundle, &args);
                assert_eq!(rt.list(&bundle), Vec::<String>::new(), "{via:?}: a container was left");
                if !out.status.success() {
                    let cache = bundle.path().join(mighook::shim::CACHE_FILE);
                    assert!(!cache.exists(), "{via:?}: the merged cache was left in the bundle");
                }
                out
            }
        };
        let what = format!("{via:?} {:?}", self.layout);
        assert!(start.elapsed() < Duration::from_secs(30), "{what}: took {:?}", start.elapsed());
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        match want {
            Want::Served(lines) => {
                assert!(out.status.success(), "{what}: must run\n{}", support::runtime::describe(&out));
                for l in lines {
                    assert!(stdout.lines().any(|got| got == *l), "{what}: no line {l:?} in\n{stdout}");
                }
            }
            Want::Refused(message) => {
                assert!(!out.status.success(), "{what}: must fail\n{}", support::runtime::describe(&out));
                assert!(!stdout.contains("container ran"), "{what}: the process must never run\n{stdout}");
                let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("mighook: ")).collect();
                assert_eq!(stderr.matches("mighook: ").count(), 1, "{what}: one mighook error line\n{stderr}");
                assert!(ours[0].contains(message), "{what}: mighook's error must say {message:?}\n{}", ours[0]);
                eprintln!("{what}: refused: {}", ours[0]);
            }
        }
        assert_eq!(guard.changes(), Vec::<String>::new(), "{what}: the host changed");
        let mut never: Vec<&Path> = self.never_mounted.to_vec();
        never.extend(self.watch_dirs);
        never.push(image);
        never.push(&driver_root);
        assert_eq!(host_mounts_of(&never), Vec::<String>::new(), "{what}: a mount was left on the host");
        out
    }
}

/// `rm -rf` the image's `rel` (a dir or file) and put a symlink to `target` there.
fn relink(image: &Path, rel: &str, target: &str) {
    let at = image.join(rel);
    match fs::symlink_metadata(&at) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(&at).unwrap(),
        Ok(_) => fs::remove_file(&at).unwrap(),
        Err(_) => {}
    }
    symlink(target, &at).unwrap();
}

/// `../../../../../../..` enough to climb out of any temp path, then `host`.
fn climb(host: &Path) -> String {
    format!("../../../../../../../../..{}", host.display())
}

const ASK: &[&str] = &["NVIDIA_VISIBLE_DEVICES=0:1"];

/// Both ways, one runtime: the hook, then the shim, each on a fresh copy of the hostile image.
fn both(layout: Layout, make_hostile: impl Fn(&Path), attack: Attack, hook: Want, shim: Want) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(rt) = runc() else { return };
    let node = SimNode::with_driver_root("a100x8", Layout::Debian);
    for (via, want) in [(Via::Hook, hook), (Via::Shim, shim)] {
        let image = copy_glibc_image(layout);
        make_hostile(image.path());
        attack.run(rt, via, &node, image.path(), want);
    }
}

fn attack<'a>(layout: Layout, script: &'a str, dirs: &'a [&'a Path], files: &'a [&'a Path]) -> Attack<'a> {
    Attack { layout, env: ASK, script, watch_dirs: dirs, watch_files: files, never_mounted: &[], extra_mounts: &[] }
}

// ---------------------------------------------------------------------------
// The library dir.

/// Debian: `/usr/lib/x86_64-linux-gnu -> <host dir>` (absolute). Inside the root that
/// path does not exist, so the dir cannot be made through the dangling link: the hook
/// and the shim refuse, and the host dir gets nothing.
#[test]
fn debian_lib_dir_absolute_link_to_a_host_dir() {
    let victim = victim_dir();
    let v = victim.path().to_path_buf();
    let script = "echo container ran";
    both(
        Layout::Debian,
        |image| relink(image, "usr/lib/x86_64-linux-gnu", v.to_str().unwrap()),
        attack(Layout::Debian, script, &[victim.path()], &[]),
        Want::Refused("usr/lib/x86_64-linux-gnu"),
        Want::Refused("usr/lib/x86_64-linux-gnu"),
    );
}

/// RHEL: `/usr/lib64 -> ../../../..<host dir>`: `..` stops at the root, same outcome.
#[test]
fn rhel_lib_dir_relative_climb_to_a_host_dir() {
    let victim = victim_dir();
    let target = climb(victim.path());
    both(
        Layout::Rhel,
        |image| relink(image, "usr/lib64", &target),
        attack(Layout::Rhel, "echo container ran", &[victim.path()], &[]),
        Want::Refused("usr/lib64"),
        Want::Refused("usr/lib64"),
    );
}

/// Debian: `/usr/lib/x86_64-linux-gnu -> /etc`, a dir both the host and the image have:
/// the libraries land in the image's `/etc`, the host's `/etc` is untouched.
#[test]
fn debian_lib_dir_link_to_etc_is_served_in_the_images_etc() {
    let script = "ls /etc/libcuda.so.1 /etc/libnvidia-ml.so.1; echo container ran";
    both(
        Layout::Debian,
        |image| relink(image, "usr/lib/x86_64-linux-gnu", "/etc"),
        attack(Layout::Debian, script, &[], &[]),
        Want::Served(&["/etc/libcuda.so.1", "/etc/libnvidia-ml.so.1", "container ran"]),
        Want::Served(&["/etc/libcuda.so.1", "/etc/libnvidia-ml.so.1", "container ran"]),
    );
}

/// RHEL: `/usr/lib64 -> ../../../../<dir>` where the image has that dir too: served there.
#[test]
fn rhel_lib_dir_climb_to_a_dir_the_image_has_is_served_inside() {
    let victim = victim_dir();
    let target = climb(victim.path());
    let inside = victim.path().display().to_string();
    let script = format!("ls {inside}/libcuda.so.1; echo container ran");
    let want = [format!("{inside}/libcuda.so.1"), "container ran".to_string()];
    let want: Vec<&str> = want.iter().map(String::as_str).collect();
    both(
        Layout::Rhel,
        |image| {
            fs::create_dir_all(image.join(victim.path().strip_prefix("/").unwrap())).unwrap();
            relink(image, "usr/lib64", &target);
        },
        attack(Layout::Rhel, &script, &[victim.path()], &[]),
        Want::Served(&want),
        Want::Served(&want),
    );
}

/// `/usr/lib/x86_64-linux-gnu -> /proc/1/root<host dir>`: at prestart the container's
/// init has not pivoted, so that magic link leads to the host's `/`; the hook refuses it
/// (`RESOLVE_NO_MAGICLINKS`), and for the shim the image's `/proc` is still empty.
#[test]
fn lib_dir_magic_link_via_proc_1_root() {
    let victim = victim_dir();
    let target = format!("/proc/1/root{}", victim.path().display());
    both(
        Layout::Debian,
        |image| relink(image, "usr/lib/x86_64-linux-gnu", &target),
        attack(Layout::Debian, "echo container ran", &[victim.path()], &[]),
        Want::Refused("/usr/lib/x86_64-linux-gnu"),
        Want::Refused("/usr/lib/x86_64-linux-gnu"),
    );
}

// ---------------------------------------------------------------------------
// Binaries, firmware, /etc, sockets.

/// `/usr/bin -> <host dir>`: the path does not exist inside the root and cannot be made
/// through the dangling link, so both refuse. (Before the shim made its mount points
/// itself, runc followed the link and served the binaries in a dir it made inside the
/// root: harmless, but not the hook's outcome.)
#[test]
fn usr_bin_link_to_a_host_dir() {
    let victim = victim_dir();
    let v = victim.path().display().to_string();
    both(
        Layout::Debian,
        |image| relink(image, "usr/bin", &v),
        attack(Layout::Debian, "echo container ran", &[victim.path()], &[]),
        Want::Refused("/usr/bin"),
        Want::Refused("/usr/bin"),
    );
}

/// `/lib/firmware -> <host dir>` (through the image's `lib -> usr/lib`).
#[test]
fn lib_firmware_link_to_a_host_dir() {
    let victim = victim_dir();
    let v = victim.path().display().to_string();
    both(
        Layout::Debian,
        |image| relink(image, "usr/lib/firmware", &v),
        attack(Layout::Debian, "echo container ran", &[victim.path()], &[]),
        Want::Refused("/lib/firmware"),
        Want::Refused("/lib/firmware"),
    );
}

/// `/etc -> <host dir>`: the loader cache goes nowhere near the host dir.
#[test]
fn etc_link_to_a_host_dir() {
    let victim = victim_dir();
    let v = victim.path().display().to_string();
    both(
        Layout::Debian,
        |image| relink(image, "etc", &v),
        attack(Layout::Debian, "echo container ran", &[victim.path()], &[]),
        Want::Refused("/etc"),
        Want::Refused("/etc"),
    );
}

/// `/etc/ld.so.cache -> <host file>`: the link is replaced inside the root, the host
/// file is neither read into the cache nor written nor mounted over.
#[test]
fn ld_so_cache_link_to_a_host_file() {
    let victim = victim_dir();
    let file = victim.path().join("victim");
    let f = file.display().to_string();
    let script = "/usr/bin/libprobe dlopen libcuda.so.1 libimage.so.1; echo container ran";
    let want: &[&str] = &["libcuda.so.1 ok", "container ran"];
    both(
        Layout::Debian,
        |image| relink(image, "etc/ld.so.cache", &f),
        attack(Layout::Debian, script, &[victim.path()], &[&file]),
        Want::Served(want),
        Want::Served(want),
    );
}

/// `/etc/ld.so.cache -> /proc/self/environ` and `-> /proc/1/mountinfo`.
#[test]
fn ld_so_cache_link_into_proc() {
    for target in ["/proc/self/environ", "/proc/1/mountinfo"] {
        let script = "/usr/bin/libprobe dlopen libcuda.so.1; echo container ran";
        let want: &[&str] = &["libcuda.so.1 ok", "container ran"];
        both(
            Layout::Debian,
            |image| relink(image, "etc/ld.so.cache", target),
            attack(Layout::Debian, script, &[], &[]),
            Want::Served(want),
            Want::Served(want),
        );
    }
}

/// `/run -> <host dir>` with the persistenced socket in the driver root (mounted writable,
/// so the worst place for it to land).
#[test]
fn run_link_to_a_host_dir_with_a_socket() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(rt) = runc() else { return };
    let node = SimNode::with_driver_root("a100x8", Layout::Debian);
    let socket = node.driver_root().join("run/nvidia-persistenced/socket");
    assert!(fs::symlink_metadata(&socket).unwrap().file_type().is_socket(), "the fake driver root has a socket");
    let victim = victim_dir();
    let v = victim.path().display().to_string();
    let watched = [victim.path()];
    let a = attack(Layout::Debian, "echo container ran", &watched, &[]);
    for via in [Via::Hook, Via::Shim] {
        let image = copy_glibc_image(Layout::Debian);
        relink(image.path(), "run", &v);
        a.run(rt, via, &node, image.path(), Want::Refused("/run"));
    }
}

// ---------------------------------------------------------------------------
// The image's loader cache.

fn cache_attack(make: impl Fn(&Path)) {
    let script = "/usr/bin/libprobe dlopen libcuda.so.1 libimage.so.1; echo container ran";
    // The image's own entries are lost with its unusable cache; its libimage is not in the loader's dirs.
    let want: &[&str] = &["libcuda.so.1 ok", "container ran"];
    both(Layout::Debian, make, attack(Layout::Debian, script, &[], &[]), Want::Served(want), Want::Served(want));
}

#[test]
fn garbage_image_cache_is_replaced() {
    cache_attack(|image| fs::write(image.join("etc/ld.so.cache"), vec![0xa5; 4096]).unwrap());
}

#[test]
fn huge_sparse_image_cache_is_not_read_whole() {
    cache_attack(|image| {
        let f = fs::File::create(image.join("etc/ld.so.cache")).unwrap();
        f.set_len(100 << 20).unwrap();
    });
}

#[test]
fn fifo_image_cache_does_not_hang() {
    cache_attack(|image| {
        let at = image.join("etc/ld.so.cache");
        fs::remove_file(&at).unwrap();
        let st = Command::new("mkfifo").arg(&at).status().unwrap();
        assert!(st.success());
    });
}

/// `/etc/ld.so.cache` a directory: read as no cache, and no file can be mounted there.
#[test]
fn directory_image_cache_is_refused() {
    both(
        Layout::Debian,
        |image| {
            fs::remove_file(image.join("etc/ld.so.cache")).unwrap();
            fs::create_dir(image.join("etc/ld.so.cache")).unwrap();
        },
        attack(Layout::Debian, "echo container ran", &[], &[]),
        Want::Refused("/etc/ld.so.cache"),
        Want::Refused("/etc/ld.so.cache"),
    );
}

// ---------------------------------------------------------------------------
// The container's environment.

/// `LD_PRELOAD` and `MIGHOOK_DRIVER_ROOT` in the container's env: mighook (hook and
/// shim) loads nothing from there and takes its driver files from its own settings.
#[test]
fn container_env_does_not_steer_mighook() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(rt) = runc() else { return };
    let node = SimNode::with_driver_root("a100x8", Layout::Debian);
    let evil = tempfile::Builder::new().prefix("mighook-evil").tempdir().unwrap();
    let marker = evil.path().join("loaded");
    let so = support::marker_so(evil.path(), "evil", &marker);
    // An evil driver root: a copy of the real one with a different nvidia-smi.
    let evil_root = evil.path().join("root");
    let out = Command::new("cp").arg("-a").arg(node.driver_root()).arg(&evil_root).output().unwrap();
    assert!(out.status.success());
    fs::write(evil_root.join("usr/bin/nvidia-smi"), "#!/bin/sh\necho EVIL\n").unwrap();
    let preload = format!("LD_PRELOAD={}", so.display());
    let root_env = format!("MIGHOOK_DRIVER_ROOT={}", evil_root.display());
    let env = ["NVIDIA_VISIBLE_DEVICES=0:1", &preload, &root_env];
    let script = "LD_PRELOAD= /usr/bin/nvidia-smi -L; echo container ran";
    let a = Attack {
        layout: Layout::Debian,
        env: &env,
        script,
        watch_dirs: &[evil.path()],
        watch_files: &[],
        never_mounted: &[],
        extra_mounts: &[],
    };
    for via in [Via::Hook, Via::Shim] {
        let image = copy_glibc_image(Layout::Debian);
        let out = a.run(rt, via, &node, image.path(), Want::Served(&["container ran"]));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.starts_with("GPU 0: NVIDIA A100-SXM4-40GB"),
            "{via:?}: the node's own nvidia-smi must run\n{text}"
        );
        assert!(!text.contains("EVIL"), "{via:?}: {text}");
        assert!(!marker.exists(), "{via:?}: the container's LD_PRELOAD was loaded on the host");
    }
    // Without --driver-root the settings fall back to the host's own `/` (no driver on
    // a test machine, the real one on a GPU machine): a container's MIGHOOK_DRIVER_ROOT
    // must not take its place.
    let script = "grep -q EVIL /usr/bin/nvidia-smi 2>/dev/null && echo EVIL-INJECTED; echo container ran";
    let a = Attack { script, ..a };
    for via in [Via::HookNoDriverRoot, Via::ShimNoDriverRoot] {
        let image = copy_glibc_image(Layout::Debian);
        let out = a.run(rt, via, &node, image.path(), Want::Served(&["container ran"]));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!text.contains("EVIL"), "{via:?}: the container's MIGHOOK_DRIVER_ROOT was used\n{text}");
        assert!(!marker.exists(), "{via:?}: the container's LD_PRELOAD was loaded on the host");
    }
}

// ---------------------------------------------------------------------------
// A host dir the engine bind-mounts into the container.

/// `docker -v <host dir>:/data` and an image whose `/usr/lib/x86_64-linux-gnu -> /data`:
/// the link resolves inside the root, but to a mount of a host dir, where the mount points
/// and SONAME links would land. The hook refuses a target dir on a mount the host also has
/// (other than the root's own); the shim refuses a target under one of the spec's bind
/// destinations, as resolved inside the root.
#[test]
fn image_link_into_a_bind_mounted_host_dir() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(rt) = runc() else { return };
    let node = SimNode::with_driver_root("a100x8", Layout::Debian);
    let victim = victim_dir();
    let bind = [serde_json::json!({
        "destination": "/data", "type": "bind", "source": victim.path(), "options": ["rbind", "rw"]
    })];
    let watched = [victim.path()];
    let mut a = attack(Layout::Debian, "echo container ran", &watched, &[]);
    a.extra_mounts = &bind;
    for via in [Via::Hook, Via::Shim] {
        let image = copy_glibc_image(Layout::Debian);
        fs::create_dir(image.path().join("data")).unwrap();
        relink(image.path(), "usr/lib/x86_64-linux-gnu", "/data");
        let want = match via {
            Via::Shim | Via::ShimNoDriverRoot => "which the container mounts from the host; refusing",
            Via::Hook | Via::HookNoDriverRoot => "on a mount the host also has",
        };
        a.run(rt, via, &node, image.path(), Want::Refused(want));
    }
}
