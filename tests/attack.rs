//! The attack suite: hostile images, hostile environments, oversized requests
//! and a broken driver, each against mighook as the prestart hook of real runc.
//!
//! Every test ends the same way: either one clear `mighook: ...` error and a
//! container that never ran, or exactly the right nodes; and in both cases no
//! write outside the container root (the watched host dirs and `/etc` are
//! snapshotted before and compared after), no container left in `runc list`,
//! and the shared busybox image untouched. tests/e2e_hook.rs has the basic
//! hostile-image cases; this file goes further: images without a /dev tmpfs
//! (so mighook sees the image's own /dev), magic links, every kind of file in
//! the way, a leaked hook environment, and inputs of 10 KB to 1 MB.
//!
//! Where an input cannot go through runc, the test says so and runs
//! `mighook prestart` directly with a hand-made state and bundle.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};
use support::{Bundle, ProbeOutput, Runtime, SimNode};

use support::{ENXIO, EPERM};

/// GPU 0 of `a100x8` is minor 2; its MIG device 1 is GI 8 / CI 0: caps 345 and 346.
use support::a100::MIG_0_1_NODES as MIG_0_1;

/// Made by the probe: the MIG config and monitor caps, GPU 0's other GIs, another GPU. All denied.
const MIG_0_1_NEIGHBOURS: [(&str, u32, u32); 6] = [
    ("/dev/nb-config", 508, 1),
    ("/dev/nb-monitor", 508, 2),
    ("/dev/nb-cap336", 508, 336),
    ("/dev/nb-cap354", 508, 354),
    ("/dev/nb-gpu0", 195, 0),
    ("/dev/nb-gpu3", 195, 3),
];

/// `h100x4-nomig` GPU 0 is minor 0: request `0` gets these four.
const H100_0: [(&str, u32, u32); 4] = [
    ("/dev/nvidiactl", 195, 255),
    ("/dev/nvidia-uvm", 511, 0),
    ("/dev/nvidia-uvm-tools", 511, 1),
    ("/dev/nvidia0", 195, 0),
];

// ---------------------------------------------------------------------------
// Gates and outcomes.

fn can_run(rt: Runtime) -> bool {
    support::runtime::can_run(rt, &[])
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Probe arguments: `/dev` listings, the expected nodes, then neighbours made with mknod (0444: opened read-only).
fn probe_args(nodes: &[(&str, u32, u32)], neighbours: &[(&str, u32, u32)]) -> Vec<String> {
    let mut args = vec!["ls:/dev".to_string(), "ls:/dev/nvidia-caps".to_string()];
    args.extend(nodes.iter().map(|(p, _, _)| p.to_string()));
    args.extend(neighbours.iter().map(|(p, maj, min)| format!("mknod:{p}:{maj}:{min}:0444")));
    args
}

fn mig_0_1_args() -> Vec<String> {
    probe_args(&MIG_0_1, &MIG_0_1_NEIGHBOURS)
}

/// The container got exactly `nodes` under /dev (allowed), and every neighbour is denied.
fn assert_exactly(
    rt: Runtime,
    out: &Output,
    nodes: &[(&str, u32, u32)],
    neighbours: &[(&str, u32, u32)],
) -> ProbeOutput {
    assert!(out.status.success(), "{}: the container must run\n{}", rt.name(), support::runtime::describe(out));
    let p = ProbeOutput::parse(&String::from_utf8_lossy(&out.stdout));
    for (path, major, minor) in nodes {
        assert_eq!(
            p.summary_of(path),
            format!("c {major}:{minor} errno={ENXIO}"),
            "{}: {path} must be there and allowed",
            rt.name()
        );
    }
    for (path, major, minor) in neighbours {
        assert_eq!(
            p.summary_of(path),
            format!("c {major}:{minor} errno={EPERM}"),
            "{}: {path} must be denied",
            rt.name()
        );
    }
    let mut want: Vec<String> = nodes
        .iter()
        .filter_map(|(path, _, _)| path.strip_prefix("/dev/"))
        .map(|rest| rest.split('/').next().unwrap().to_string())
        .collect();
    want.sort();
    want.dedup();
    let got: Vec<String> = p.ls_or_empty("/dev").into_iter().filter(|n| n.starts_with("nvidia")).collect();
    assert_eq!(got, want, "{}: NVIDIA entries in /dev", rt.name());
    p
}

/// The start failed on mighook's one error line containing `message`, and the process never ran.
fn assert_refused(rt: Runtime, out: &Output, message: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{}: must fail\n{}", rt.name(), support::runtime::describe(out));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("probe: done"), "{}: the process must never run", rt.name());
    let line = stderr
        .lines()
        .find(|l| l.contains("mighook: "))
        .unwrap_or_else(|| panic!("{}: no mighook error line\n{stderr}", rt.name()));
    assert!(line.contains(message), "{}: mighook's error must say {message:?}\n{line}", rt.name());
}

// ---------------------------------------------------------------------------
// Host snapshots: nothing outside the container root may change.

/// `/etc`'s own mtime and its entry names, plus full trees of the host dirs a test hands the image.
struct HostGuard {
    etc: (SystemTime, Vec<String>),
    dirs: Vec<(PathBuf, BTreeMap<String, String>)>,
}

impl HostGuard {
    fn watch(dirs: &[&Path]) -> HostGuard {
        HostGuard {
            etc: support::etc_state(),
            dirs: dirs.iter().map(|d| (d.to_path_buf(), support::tree(d))).collect(),
        }
    }

    /// What changed since [`HostGuard::watch`], one line per finding.
    fn changes(&self) -> Vec<String> {
        let mut found = vec![];
        let (mtime, names) = support::etc_state();
        let new: Vec<&String> = names.iter().filter(|n| !self.etc.1.contains(n)).collect();
        let gone: Vec<&String> = self.etc.1.iter().filter(|n| !names.contains(n)).collect();
        if !new.is_empty() || !gone.is_empty() {
            found.push(format!("/etc entries: new {new:?}, gone {gone:?}"));
        }
        if mtime != self.etc.0 {
            found.push("/etc was modified".to_string());
        }
        for (dir, before) in &self.dirs {
            let after = support::tree(dir);
            for (path, was) in before {
                match after.get(path) {
                    None => found.push(format!("{}/{path}: removed", dir.display())),
                    Some(now) if now != was => found.push(format!("{}/{path}: {was} -> {now}", dir.display())),
                    Some(_) => {}
                }
            }
            for path in after.keys().filter(|p| !before.contains_key(*p)) {
                found.push(format!("{}/{path}: created", dir.display()));
            }
        }
        found
    }

    /// Nothing changed on the host, no container is left, and the shared image is pristine.
    fn assert_unchanged(&self, rt: Runtime, bundle: &Bundle) {
        assert_eq!(self.changes(), Vec::<String>::new(), "{}: the host changed", rt.name());
        assert_eq!(rt.list(bundle), Vec::<String>::new(), "{}: no container may be left", rt.name());
        support::rootfs::assert_pristine(&support::busybox_rootfs());
    }
}

/// The guard itself: creating, changing and removing files under a watched dir are all seen.
#[test]
fn host_guard_sees_every_kind_of_change() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("sub")).unwrap();
    fs::write(dir.path().join("sub/keep"), "a").unwrap();
    fs::write(dir.path().join("gone"), "b").unwrap();
    let guard = HostGuard::watch(&[dir.path()]);
    assert_eq!(guard.changes(), Vec::<String>::new());
    fs::write(dir.path().join("sub/keep"), "longer").unwrap();
    fs::remove_file(dir.path().join("gone")).unwrap();
    symlink("/etc", dir.path().join("sub/new-link")).unwrap();
    let changes = guard.changes();
    let d = dir.path().display();
    assert!(changes.iter().any(|c| c.starts_with(&format!("{d}/sub/keep: "))), "{changes:?}");
    assert!(changes.contains(&format!("{d}/gone: removed")), "{changes:?}");
    assert!(changes.contains(&format!("{d}/sub/new-link: created")), "{changes:?}");
}

// ---------------------------------------------------------------------------
// Bundles.

/// mighook as the prestart hook with explicit settings: `--nvml-lib`, `--proc-root` and more `flags`.
fn with_hook(bundle: Bundle, node: &SimNode, proc_root: &Path, flags: &[&str], env: &[&str]) -> Bundle {
    let lib = node.nvml_lib().display().to_string();
    let proc = proc_root.display().to_string();
    let mut args = vec!["mighook", "--nvml-lib", &lib, "--proc-root", &proc];
    args.extend(flags);
    args.push("prestart");
    bundle.with_prestart_hook(&support::mighook_bin(), &args, env)
}

/// The image's own /dev is what the hook sees: the template's /dev tmpfs mount is dropped.
/// The root is then writable (a private copy), so the probe can mknod its neighbours there.
fn without_dev_tmpfs(bundle: Bundle) -> Bundle {
    bundle.edit(|c| {
        c["mounts"].as_array_mut().unwrap().retain(|m| m["destination"] != "/dev");
        c["root"]["readonly"] = false.into();
    })
}

/// A private image running the probe with `args`.
fn image_bundle(image: &Path, env: &[&str], args: &[String]) -> Bundle {
    let argv: Vec<&str> = std::iter::once("/bin/openprobe").chain(args.iter().map(String::as_str)).collect();
    Bundle::new(image, env, &argv)
}

/// A copy of the node's /proc tree to poison.
fn copy_proc(node: &SimNode) -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix("mighook-attack-proc").tempdir().unwrap();
    let out =
        Command::new("cp").arg("-a").arg(format!("{}/.", node.proc_root().display())).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "cp proc: {}", String::from_utf8_lossy(&out.stderr));
    dir
}

/// A host dir bind-mounted by config.json at `destination` (docker `-v`, a Kubernetes
/// hostPath), holding a regular file, a symlink and a char node named like the nodes
/// `0:1` gets: the hook refuses the start, and the host dir is exactly as it was.
fn host_dir_mounted_in_dev(destination: &str, names: [&str; 3]) {
    for rt in [Runtime::RuncV1, Runtime::RuncV2] {
        if !can_run(rt) {
            continue;
        }
        let node = SimNode::new("a100x8");
        let host = tempfile::tempdir().unwrap();
        fs::write(host.path().join(names[0]), "host data").unwrap();
        symlink("/etc/passwd", host.path().join(names[1])).unwrap();
        let null = std::ffi::CString::new(host.path().join(names[2]).to_str().unwrap()).unwrap();
        // SAFETY: a valid C string; a char node like /dev/null.
        assert_eq!(unsafe { libc::mknod(null.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) }, 0);
        let mount = serde_json::json!({
            "destination": destination, "type": "bind", "source": host.path(), "options": ["rbind", "rw"]
        });
        let bundle = with_hook(
            Bundle::probe(&["NVIDIA_VISIBLE_DEVICES=0:1"], &strs(&mig_0_1_args())),
            &node,
            &node.proc_root(),
            &[],
            &[support::bundle::HOOK_PATH_ENV],
        )
        .edit(|c| c["mounts"].as_array_mut().unwrap().push(mount));
        let guard = HostGuard::watch(&[host.path()]);
        let out = rt.run(&bundle);
        assert_refused(rt, &out, "on a mount the host also has");
        guard.assert_unchanged(rt, &bundle);
    }
}

#[test]
fn host_dir_mounted_at_dev_nvidia_caps_is_never_changed() {
    host_dir_mounted_in_dev("/dev/nvidia-caps", ["nvidia-cap345", "nvidia-cap346", "nvidia-cap347"]);
}

// ---------------------------------------------------------------------------
// The image's filesystem.

/// Without a /dev tmpfs, an image whose `/dev` is a symlink to a host dir: runc's own
/// writes through the link (a runc 1.1 quirk) are measured first, without the hook.
#[test]
fn dev_symlink_to_host_dir_without_dev_tmpfs() {
    let rt = Runtime::RuncV1;
    if !can_run(rt) {
        return;
    }
    let node = SimNode::new("a100x8");
    let host = tempfile::tempdir().unwrap();
    let env = ["NVIDIA_VISIBLE_DEVICES=0:1"];
    let image_with_link = || {
        let image = support::copy_rootfs();
        fs::remove_dir(image.path().join("dev")).unwrap();
        symlink(host.path(), image.path().join("dev")).unwrap();
        image
    };

    let image = image_with_link();
    let baseline = without_dev_tmpfs(image_bundle(image.path(), &env, &mig_0_1_args()));
    let plain = rt.run(&baseline);
    let runtime_wrote = support::tree(host.path());
    assert!(!runtime_wrote.keys().any(|n| n.contains("nvidia")), "no hook, no nvidia nodes: {runtime_wrote:?}");
    let _ = fs::remove_dir_all(host.path());
    fs::create_dir(host.path()).unwrap();

    let image = image_with_link();
    let bundle = with_hook(
        without_dev_tmpfs(image_bundle(image.path(), &env, &mig_0_1_args())),
        &node,
        &node.proc_root(),
        &[],
        &[support::bundle::HOOK_PATH_ENV],
    );
    let guard = HostGuard::watch(&[]);
    let out = rt.run(&bundle);
    if out.status.success() {
        assert_exactly(rt, &out, &MIG_0_1, &MIG_0_1_NEIGHBOURS);
    } else if plain.status.success() {
        assert_refused(rt, &out, "/dev");
    }
    let wrote: Vec<String> = support::tree(host.path()).into_keys().collect();
    assert_eq!(
        wrote,
        runtime_wrote.into_keys().collect::<Vec<_>>(),
        "mighook must add nothing to the host dir behind /dev"
    );
    guard.assert_unchanged(rt, &bundle);
}

/// `dev/nvidia-caps -> /etc` (absolute, and relative with too many `..`): resolved
/// as if the container root were `/`, the caps land in the image's own /etc.
fn nvidia_caps_symlink_to_etc(target: &str) {
    let rt = Runtime::RuncV1;
    if !can_run(rt) {
        return;
    }
    let node = SimNode::new("a100x8");
    let image = support::copy_rootfs();
    symlink(target, image.path().join("dev/nvidia-caps")).unwrap();
    let guard = HostGuard::watch(&[]);
    let bundle = with_hook(
        without_dev_tmpfs(image_bundle(image.path(), &["NVIDIA_VISIBLE_DEVICES=0:1"], &mig_0_1_args())),
        &node,
        &node.proc_root(),
        &[],
        &[support::bundle::HOOK_PATH_ENV],
    );
    let out = rt.run(&bundle);
    if out.status.success() {
        let p = ProbeOutput::parse(&String::from_utf8_lossy(&out.stdout));
        for (path, major, minor) in MIG_0_1 {
            assert_eq!(p.summary_of(path), format!("c {major}:{minor} errno={ENXIO}"), "{path}");
        }
        // The caps are in the image's /etc, on the host side of the private copy.
        for minor in [345, 346] {
            let m = fs::symlink_metadata(image.path().join(format!("etc/nvidia-cap{minor}"))).unwrap();
            assert!(m.file_type().is_char_device() && m.rdev() == makedev(508, minor), "image etc/nvidia-cap{minor}");
        }
    } else {
        assert_refused(rt, &out, "nvidia-caps");
    }
    assert!(
        !Path::new("/etc/nvidia-cap345").exists() && !Path::new("/etc/nvidia-cap346").exists(),
        "host /etc got a cap node"
    );
    guard.assert_unchanged(rt, &bundle);
}

/// glibc's `makedev`: the `st_rdev` of a char device `major:minor`.
fn makedev(major: u32, minor: u32) -> u64 {
    let (major, minor) = (u64::from(major), u64::from(minor));
    ((major & 0xfffff000) << 32) | ((major & 0xfff) << 8) | ((minor & 0xffffff00) << 12) | (minor & 0xff)
}

#[test]
fn nvidia_caps_absolute_symlink_to_etc_stays_inside_root() {
    nvidia_caps_symlink_to_etc("/etc");
}

#[test]
fn nvidia_caps_relative_symlink_above_root_stays_inside_root() {
    nvidia_caps_symlink_to_etc("../../../../../../../../etc");
}

/// `dev/nvidia-caps -> /proc/<pid>/root/<host dir>`: at prestart the container's init has not
/// pivoted yet, so that magic link leads to the HOST root. It must be refused, not followed.
fn nvidia_caps_magic_link(proc_pid: &str) {
    let rt = Runtime::RuncV1;
    if !can_run(rt) {
        return;
    }
    let node = SimNode::new("a100x8");
    let host = tempfile::tempdir().unwrap();
    let image = support::copy_rootfs();
    symlink(format!("/proc/{proc_pid}/root{}", host.path().display()), image.path().join("dev/nvidia-caps")).unwrap();
    let guard = HostGuard::watch(&[host.path()]);
    let bundle = with_hook(
        without_dev_tmpfs(image_bundle(image.path(), &["NVIDIA_VISIBLE_DEVICES=0:1"], &mig_0_1_args())),
        &node,
        &node.proc_root(),
        &[],
        &[support::bundle::HOOK_PATH_ENV],
    );
    let out = rt.run(&bundle);
    assert_refused(rt, &out, "/dev/nvidia-caps");
    guard.assert_unchanged(rt, &bundle);
}

#[test]
fn nvidia_caps_magic_link_via_proc_self_root_is_refused() {
    nvidia_caps_magic_link("self");
}

#[test]
fn nvidia_caps_magic_link_via_proc_1_root_is_refused() {
    nvidia_caps_magic_link("1");
}

#[test]
fn nvidia_caps_as_a_regular_file_is_refused() {
    let rt = Runtime::RuncV1;
    if !can_run(rt) {
        return;
    }
    let node = SimNode::new("a100x8");
    let image = support::copy_rootfs();
    fs::write(image.path().join("dev/nvidia-caps"), "not a dir\n").unwrap();
    let guard = HostGuard::watch(&[]);
    let bundle = with_hook(
        without_dev_tmpfs(image_bundle(image.path(), &["NVIDIA_VISIBLE_DEVICES=0:1"], &mig_0_1_args())),
        &node,
        &node.proc_root(),
        &[],
        &[support::bundle::HOOK_PATH_ENV],
    );
    assert_refused(rt, &rt.run(&bundle), "/dev/nvidia-caps");
    guard.assert_unchanged(rt, &bundle);
}

/// What an image can put at `/dev/nvidia0` before mighook creates it.
#[derive(Debug, Clone, Copy)]
enum InTheWay {
    SymlinkToHostFile,
    SymlinkToHostDir,
    DanglingSymlinkToHost,
    Fifo,
    RegularFile,
    HardLinkToHostFile,
    WrongDevice,
}

/// Host-side files an image entry points at: they must come through untouched.
struct HostVictims {
    dir: tempfile::TempDir,
}

impl HostVictims {
    fn new() -> HostVictims {
        let dir = tempfile::Builder::new().prefix("mighook-attack-host").tempdir().unwrap();
        fs::write(dir.path().join("victim"), "host data\n").unwrap();
        fs::set_permissions(dir.path().join("victim"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::create_dir(dir.path().join("victim-dir")).unwrap();
        HostVictims { dir }
    }
    fn file(&self) -> PathBuf {
        self.dir.path().join("victim")
    }
}

fn place(entry: InTheWay, at: &Path, victims: &HostVictims) {
    match entry {
        InTheWay::SymlinkToHostFile => symlink(victims.file(), at).unwrap(),
        InTheWay::SymlinkToHostDir => symlink(victims.dir.path().join("victim-dir"), at).unwrap(),
        InTheWay::DanglingSymlinkToHost => symlink(victims.dir.path().join("not-yet"), at).unwrap(),
        InTheWay::Fifo => {
            let st = Command::new("mkfifo").arg(at).status().unwrap();
            assert!(st.success(), "mkfifo");
        }
        InTheWay::RegularFile => fs::write(at, "image data\n").unwrap(),
        InTheWay::HardLinkToHostFile => fs::hard_link(victims.file(), at).unwrap(),
        InTheWay::WrongDevice => {
            let st = Command::new("mknod").arg(at).args(["c", "195", "1"]).status().unwrap();
            assert!(st.success(), "mknod");
        }
    }
}

/// An image with `entry` at /dev/nvidia0 (and the FIFO/file/symlink trio at the control
/// nodes) and NO /dev tmpfs, asking for GPU 0 of an H100 node: every entry is replaced
/// by the right node, nothing behind it is followed or changed.
fn gpu_node_in_the_way(entry: InTheWay, rt: Runtime) {
    if !can_run(rt) {
        return;
    }
    let node = SimNode::new("h100x4-nomig");
    let victims = HostVictims::new();
    let image = support::copy_rootfs();
    let dev = image.path().join("dev");
    place(entry, &dev.join("nvidia0"), &victims);
    place(InTheWay::Fifo, &dev.join("nvidiactl"), &victims);
    place(InTheWay::RegularFile, &dev.join("nvidia-uvm"), &victims);
    place(InTheWay::SymlinkToHostFile, &dev.join("nvidia-uvm-tools"), &victims);
    let guard = HostGuard::watch(&[victims.dir.path()]);
    let before_victim = fs::read_to_string(victims.file()).unwrap();
    let neighbours = [("/dev/nb-gpu1", 195, 1), ("/dev/nb-modeset", 195, 254)];
    let bundle = with_hook(
        without_dev_tmpfs(image_bundle(image.path(), &["NVIDIA_VISIBLE_DEVICES=0"], &probe_args(&H100_0, &neighbours))),
        &node,
        &node.proc_root(),
        &[],
        &[support::bundle::HOOK_PATH_ENV],
    );
    let out = rt.run(&bundle);
    assert_exactly(rt, &out, &H100_0, &neighbours);
    // On the host side of the private image: real nodes now, not what was there.
    for (path, major, minor) in H100_0 {
        let m = fs::symlink_metadata(image.path().join(&path[1..])).unwrap();
        assert!(
            m.file_type().is_char_device() && m.rdev() == makedev(major, minor),
            "{entry:?}: image {path} is not c {major}:{minor}"
        );
    }
    assert_eq!(fs::read_to_string(victims.file()).unwrap(), before_victim, "{entry:?}: host file content");
    guard.assert_unchanged(rt, &bundle);
}

#[test]
fn gpu_node_symlink_to_host_file_is_replaced() {
    gpu_node_in_the_way(InTheWay::SymlinkToHostFile, Runtime::RuncV1);
}

#[test]
fn gpu_node_symlink_to_host_file_is_replaced_runc_v2() {
    gpu_node_in_the_way(InTheWay::SymlinkToHostFile, Runtime::RuncV2);
}

#[test]
fn gpu_node_symlink_to_host_dir_is_replaced() {
    gpu_node_in_the_way(InTheWay::SymlinkToHostDir, Runtime::RuncV1);
}

#[test]
fn gpu_node_dangling_symlink_to_host_is_replaced() {
    gpu_node_in_the_way(InTheWay::DanglingSymlinkToHost, Runtime::RuncV1);
}

#[test]
fn gpu_node_fifo_is_replaced_without_blocking() {
    gpu_node_in_the_way(InTheWay::Fifo, Runtime::RuncV1);
}

#[test]
fn gpu_node_regular_file_is_replaced() {
    gpu_node_in_the_way(InTheWay::RegularFile, Runtime::RuncV1);
}

#[test]
fn gpu_node_hard_link_to_host_file_is_replaced() {
    gpu_node_in_the_way(InTheWay::HardLinkToHostFile, Runtime::RuncV1);
}

#[test]
fn gpu_node_of_another_gpu_is_replaced() {
    gpu_node_in_the_way(InTheWay::WrongDevice, Runtime::RuncV1);
}

#[test]
fn gpu_node_directory_is_refused() {
    let rt = Runtime::RuncV1;
    if !can_run(rt) {
        return;
    }
    let node = SimNode::new("h100x4-nomig");
    let image = support::copy_rootfs();
    fs::create_dir(image.path().join("dev/nvidia0")).unwrap();
    fs::write(image.path().join("dev/nvidia0/keep"), "image data\n").unwrap();
    let guard = HostGuard::watch(&[]);
    let bundle = with_hook(
        without_dev_tmpfs(image_bundle(image.path(), &["NVIDIA_VISIBLE_DEVICES=0"], &probe_args(&H100_0, &[]))),
        &node,
        &node.proc_root(),
        &[],
        &[support::bundle::HOOK_PATH_ENV],
    );
    assert_refused(rt, &rt.run(&bundle), "/dev/nvidia0 in the container is a directory");
    assert_eq!(fs::read_to_string(image.path().join("dev/nvidia0/keep")).unwrap(), "image data\n");
    guard.assert_unchanged(rt, &bundle);
}

/// With the usual /dev tmpfs the image's own /dev is hidden: the same hostile entries are never even seen.
#[test]
fn hostile_dev_entries_under_the_dev_tmpfs_are_never_seen() {
    let rt = Runtime::RuncV1;
    if !can_run(rt) {
        return;
    }
    let node = SimNode::new("h100x4-nomig");
    let victims = HostVictims::new();
    let image = support::copy_rootfs();
    let dev = image.path().join("dev");
    place(InTheWay::SymlinkToHostFile, &dev.join("nvidia0"), &victims);
    place(InTheWay::Fifo, &dev.join("nvidiactl"), &victims);
    symlink("/etc", dev.join("nvidia-caps")).unwrap();
    let guard = HostGuard::watch(&[victims.dir.path(), &dev]);
    let neighbours = [("/dev/nb-gpu1", 195, 1)];
    let bundle = with_hook(
        image_bundle(image.path(), &["NVIDIA_VISIBLE_DEVICES=0"], &probe_args(&H100_0, &neighbours)),
        &node,
        &node.proc_root(),
        &[],
        &[support::bundle::HOOK_PATH_ENV],
    );
    assert_exactly(rt, &rt.run(&bundle), &H100_0, &neighbours);
    guard.assert_unchanged(rt, &bundle);
}

// ---------------------------------------------------------------------------
// The image's environment.

/// A proc tree whose mig-minors (and capability files, consistently) give GPU 0's
/// GI 8 the config cap's minor 1 and its CI 0 the monitor's minor 2.
fn evil_proc_root(node: &SimNode) -> tempfile::TempDir {
    let dir = copy_proc(node);
    let mm = dir.path().join("driver/nvidia-caps/mig-minors");
    let text = fs::read_to_string(&mm).unwrap();
    let text = text
        .replace("gpu2/gi8/access 345\n", "gpu2/gi8/access 1\n")
        .replace("gpu2/gi8/ci0/access 346\n", "gpu2/gi8/ci0/access 2\n");
    assert!(text.contains("gpu2/gi8/access 1\n"), "mig-minors layout changed");
    fs::write(&mm, text).unwrap();
    for (rel, minor) in [("gi8/access", 1), ("gi8/ci0/access", 2)] {
        let cap = dir.path().join("driver/nvidia/capabilities/gpu2/mig").join(rel);
        fs::write(&cap, format!("DeviceFileMinor: {minor}\nDeviceFileMode: 292\nDeviceFileModify: 1\n")).unwrap();
    }
    dir
}

/// `MIGHOOK_*` in the image's env point at an evil proc root, a loadable NVML stand-in that
/// marks the host, and a valid config that would log to a host file. None may be used.
#[test]
fn image_env_cannot_point_mighook_at_evil_files() {
    let rt = Runtime::RuncV1;
    if !can_run(rt) {
        return;
    }
    let node = SimNode::new("a100x8");
    let evil = tempfile::tempdir().unwrap();
    let proc_root = evil_proc_root(&node);
    let loaded = evil.path().join("nvml-was-loaded");
    let nvml = support::marker_so(evil.path(), "evil-nvml", &loaded);
    let log = evil.path().join("owned.log");
    let config = evil.path().join("config.toml");
    fs::write(
        &config,
        format!("log-file = {log:?}\nlog-level = \"debug\"\nnvml-lib = {nvml:?}\nproc-root = {:?}\n", proc_root.path()),
    )
    .unwrap();
    let env = [
        "NVIDIA_VISIBLE_DEVICES=0:1".to_string(),
        format!("MIGHOOK_PROC_ROOT={}", proc_root.path().display()),
        format!("MIGHOOK_NVML_LIB={}", nvml.display()),
        format!("MIGHOOK_CONFIG={}", config.display()),
        format!("LD_PRELOAD={}", nvml.display()),
        format!("PATH={}:/bin", evil.path().display()),
    ];
    // Registered like docker's --gpus hook: no flags, settings from mighook's own env only.
    let bundle = Bundle::probe(&strs(&env), &strs(&mig_0_1_args())).with_prestart_hook(
        &support::mighook_bin(),
        &["mighook", "prestart"],
        &[
            support::bundle::HOOK_PATH_ENV,
            &format!("MIGHOOK_NVML_LIB={}", node.nvml_lib().display()),
            &format!("MIGHOOK_PROC_ROOT={}", node.proc_root().display()),
        ],
    );
    let guard = HostGuard::watch(&[evil.path(), proc_root.path()]);
    assert_exactly(rt, &rt.run(&bundle), &MIG_0_1, &MIG_0_1_NEIGHBOURS);
    assert!(!loaded.exists(), "the image's NVML library or LD_PRELOAD was loaded");
    assert!(!log.exists(), "the image's config file was read: its log file was written");
    guard.assert_unchanged(rt, &bundle);
}

/// Executables named like everything a GPU hook might run; each marks the host when run.
fn evil_bin_dir(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    fs::create_dir(&bin).unwrap();
    for name in [
        "ldconfig",
        "ldconfig.real",
        "nvidia-smi",
        "nvidia-modprobe",
        "modprobe",
        "runc",
        "crun",
        "mount",
        "mknod",
        "sh",
        "cat",
        "ls",
        "true",
        "nvidia-container-cli",
    ] {
        let path = bin.join(name);
        fs::write(&path, format!("#!/bin/sh\necho {name} >> {}\n", dir.join("ran").display())).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }
    bin
}

/// The CVE-2025-23266 shape: a runtime that hands the container's env to the hook. A
/// `MIGHOOK_*` value the container's env also carries is neither trusted nor quietly
/// dropped for a weaker default: the start is refused with one clear line, nothing of the
/// image's is loaded, and with that PATH mighook still runs nothing (no ldconfig, no helper).
#[test]
fn leaked_container_env_in_the_hook_env_refuses_the_start() {
    let rt = Runtime::RuncV1;
    if !can_run(rt) {
        return;
    }
    let node = SimNode::new("a100x8");
    let evil = tempfile::tempdir().unwrap();
    let proc_root = evil_proc_root(&node);
    let loaded = evil.path().join("nvml-was-loaded");
    let nvml = support::marker_so(evil.path(), "evil-nvml", &loaded);
    let bin = evil_bin_dir(evil.path());
    let admin = tempfile::tempdir().unwrap();
    let config = admin.path().join("config.toml");
    fs::write(&config, format!("nvml-lib = {:?}\nproc-root = {:?}\n", node.nvml_lib(), node.proc_root())).unwrap();
    let leaked = [
        format!("MIGHOOK_PROC_ROOT={}", proc_root.path().display()),
        format!("MIGHOOK_NVML_LIB={}", nvml.display()),
        format!("PATH={}:/usr/sbin:/usr/bin:/sbin:/bin", bin.display()),
    ];
    let config_flag = config.display().to_string();
    let hook_args = ["mighook", "--config", &config_flag, "prestart"];
    let container_env: Vec<String> =
        std::iter::once("NVIDIA_VISIBLE_DEVICES=0:1".to_string()).chain(leaked.iter().cloned()).collect();

    let bundle = Bundle::probe(&strs(&container_env), &strs(&mig_0_1_args())).with_prestart_hook(
        &support::mighook_bin(),
        &hook_args,
        &strs(&leaked),
    );
    let guard = HostGuard::watch(&[proc_root.path(), &bin]);
    assert_refused(rt, &rt.run(&bundle), "MIGHOOK_NVML_LIB of mighook's own environment is also in the container's");
    assert!(!loaded.exists(), "a leaked MIGHOOK_NVML_LIB was loaded");
    assert!(
        !evil.path().join("ran").exists(),
        "mighook ran a program: {:?}",
        fs::read_to_string(evil.path().join("ran"))
    );
    guard.assert_unchanged(rt, &bundle);

    // Control: the same hook env when the container does NOT carry those values is the
    // admin's own choice and is used; proof that the guard above is what protected us.
    let control = Bundle::probe(&["NVIDIA_VISIBLE_DEVICES=0:1"], &strs(&mig_0_1_args())).with_prestart_hook(
        &support::mighook_bin(),
        &hook_args,
        &strs(&leaked),
    );
    let _ = rt.run(&control);
    assert!(loaded.exists(), "control: the hook's own MIGHOOK_NVML_LIB must be used");
    assert_eq!(rt.list(&control), Vec::<String>::new());
}

/// A hook with no `env` key at all: the runtime must not give it the image's env.
fn hook_without_env_does_not_inherit_the_image_env(rt: Runtime) {
    if !can_run(rt) {
        return;
    }
    let node = SimNode::new("a100x8");
    let evil = tempfile::tempdir().unwrap();
    let loaded = evil.path().join("preload-was-loaded");
    let so = support::marker_so(evil.path(), "preload", &loaded);
    let proc_root = evil_proc_root(&node);
    let env = [
        "NVIDIA_VISIBLE_DEVICES=0:1".to_string(),
        format!("LD_PRELOAD={}", so.display()),
        format!("MIGHOOK_PROC_ROOT={}", proc_root.path().display()),
    ];
    let bundle = with_hook(Bundle::probe(&strs(&env), &strs(&mig_0_1_args())), &node, &node.proc_root(), &[], &[])
        .edit(|c| {
            let hook = &mut c["hooks"]["prestart"][0];
            hook.as_object_mut().unwrap().remove("env");
        });
    assert!(bundle.config()["hooks"]["prestart"][0].get("env").is_none());
    let guard = HostGuard::watch(&[evil.path(), proc_root.path()]);
    assert_exactly(rt, &rt.run(&bundle), &MIG_0_1, &MIG_0_1_NEIGHBOURS);
    assert!(!loaded.exists(), "{}: the image's LD_PRELOAD reached the hook", rt.name());
    guard.assert_unchanged(rt, &bundle);
}

#[test]
fn hook_without_env_does_not_inherit_the_image_env_runc() {
    hook_without_env_does_not_inherit_the_image_env(Runtime::RuncV1);
}

#[test]
fn hook_without_env_does_not_inherit_the_image_env_crun() {
    hook_without_env_does_not_inherit_the_image_env(Runtime::CrunV1);
}

// ---------------------------------------------------------------------------
// MIG management access.

fn mig_access_refused(var: &str, value: &str, message: &str) {
    let rt = Runtime::RuncV1;
    if !can_run(rt) {
        return;
    }
    let node = SimNode::new("a100x8");
    let env = ["NVIDIA_VISIBLE_DEVICES=0:1".to_string(), format!("{var}={value}")];
    let bundle = Bundle::probe(&strs(&env), &strs(&mig_0_1_args())).with_mighook(&node);
    let caps = bundle.config()["process"]["capabilities"]["bounding"].as_array().unwrap();
    assert!(!caps.iter().any(|c| c == "CAP_SYS_ADMIN"), "the template container must be unprivileged");
    let guard = HostGuard::watch(&[]);
    assert_refused(rt, &rt.run(&bundle), message);
    guard.assert_unchanged(rt, &bundle);
}

#[test]
fn unprivileged_mig_config_all_is_refused() {
    mig_access_refused("NVIDIA_MIG_CONFIG_DEVICES", "all", "NVIDIA_MIG_CONFIG_DEVICES: needs a privileged container");
}

#[test]
fn unprivileged_mig_monitor_all_is_refused() {
    mig_access_refused("NVIDIA_MIG_MONITOR_DEVICES", "all", "NVIDIA_MIG_MONITOR_DEVICES: needs a privileged container");
}

#[test]
fn mig_config_other_than_all_is_refused() {
    mig_access_refused("NVIDIA_MIG_CONFIG_DEVICES", "0", "NVIDIA_MIG_CONFIG_DEVICES=0: only 'all' is supported");
}

/// Control for the refusals above: CAP_SYS_ADMIN in the bounding set gets the config cap.
#[test]
fn privileged_mig_config_all_gets_the_config_cap() {
    let rt = Runtime::RuncV1;
    if !can_run(rt) {
        return;
    }
    let node = SimNode::new("a100x8");
    let mut args = probe_args(&MIG_0_1, &[("/dev/nb-monitor", 508, 2), ("/dev/nb-gpu3", 195, 3)]);
    args.push("/dev/nvidia-caps/nvidia-cap1".into());
    let env = ["NVIDIA_VISIBLE_DEVICES=0:1", "NVIDIA_MIG_CONFIG_DEVICES=all"];
    let bundle = Bundle::probe(&env, &strs(&args)).with_mighook(&node).edit(|c| {
        c["process"]["capabilities"]["bounding"].as_array_mut().unwrap().push("CAP_SYS_ADMIN".into());
    });
    let guard = HostGuard::watch(&[]);
    let out = rt.run(&bundle);
    assert!(out.status.success(), "{}", support::runtime::describe(&out));
    let p = ProbeOutput::parse(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(p.summary_of("/dev/nvidia-caps/nvidia-cap1"), format!("c 508:1 errno={ENXIO}"));
    assert_eq!(p.summary_of("/dev/nb-monitor"), format!("c 508:2 errno={EPERM}"));
    assert_eq!(p.summary_of("/dev/nb-gpu3"), format!("c 195:3 errno={EPERM}"));
    guard.assert_unchanged(rt, &bundle);
}

// ---------------------------------------------------------------------------
// Oversized and junk requests.

/// Deterministic pseudo-random bytes (xorshift), so a failure reproduces.
fn junk(len: usize, seed: u64, pick: impl Fn(u64) -> Option<char>) -> String {
    let mut x = seed | 1;
    let mut s = String::with_capacity(len);
    while s.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if let Some(c) = pick(x) {
            s.push(c);
        }
    }
    s
}

/// Printable ASCII without commas: one 10 KB entry.
fn printable_no_comma(x: u64) -> Option<char> {
    let c = (0x21 + (x % 94) as u8) as char;
    (c != ',').then_some(c)
}

/// Any char but NUL: control characters, invalid-looking UTF-8 sequences as code points, emoji.
fn any_char_but_nul(x: u64) -> Option<char> {
    char::from_u32((x % 0x11_0000) as u32).filter(|c| *c != '\0')
}

fn run_request(rt: Runtime, node: &SimNode, visible: &str) -> (Output, Bundle) {
    let env = [format!("NVIDIA_VISIBLE_DEVICES={visible}")];
    let bundle = Bundle::probe(&strs(&env), &strs(&mig_0_1_args())).with_mighook(node);
    (rt.run(&bundle), bundle)
}

#[test]
fn ten_kb_of_garbage_is_one_clear_error() {
    let rt = Runtime::RuncV1;
    if !can_run(rt) {
        return;
    }
    let node = SimNode::new("a100x8");
    let guard = HostGuard::watch(&[]);
    let garbage = junk(10 << 10, 0x5eed, printable_no_comma);
    let (out, bundle) = run_request(rt, &node, &garbage);
    // This junk has an '=' after two '/'s, so it reads as a malformed CDI device name.
    assert_refused(rt, &out, "(10240 bytes): a CDI device name is <vendor>/<class>=<name>");
    guard.assert_unchanged(rt, &bundle);
}

#[test]
fn ten_kb_of_binary_junk_is_one_clear_error() {
    let rt = Runtime::RuncV1;
    if !can_run(rt) {
        return;
    }
    let node = SimNode::new("a100x8");
    let guard = HostGuard::watch(&[]);
    let garbage = junk(10 << 10, 0xb1a5, any_char_but_nul);
    let (out, bundle) = run_request(rt, &node, &garbage);
    // runc quotes the hook's stderr, so the junk itself is not compared; the kind of error is.
    assert_refused(rt, &out, "not a GPU index, UUID, PCI bus id or MIG device");
    guard.assert_unchanged(rt, &bundle);
}

/// A config.json that is not UTF-8 at all: runc reads it (Go replaces bad bytes); mighook refuses it.
#[test]
fn config_json_that_is_not_utf8_is_refused() {
    let rt = Runtime::RuncV1;
    if !can_run(rt) {
        return;
    }
    let node = SimNode::new("a100x8");
    let bundle =
        Bundle::probe(&["NVIDIA_VISIBLE_DEVICES=0:1", "JUNK=@@@@"], &strs(&mig_0_1_args())).with_mighook(&node);
    let path = bundle.path().join("config.json");
    let text = fs::read(&path).unwrap();
    let at = text.windows(4).position(|w| w == b"@@@@").unwrap();
    let mut bytes = text.clone();
    bytes[at..at + 4].copy_from_slice(&[0xff, 0xfe, 0xc0, 0x80]);
    fs::write(&path, bytes).unwrap();
    let guard = HostGuard::watch(&[]);
    assert_refused(rt, &rt.run(&bundle), "config.json");
    guard.assert_unchanged(rt, &bundle);
}

/// 1 MB in one env string is past MAX_ARG_STRLEN (128 KiB), so runc could never exec the
/// container process; but config.json has no such limit and the prestart hook runs before
/// that exec. Through runc: mighook refuses it first, naming the first entry.
#[test]
fn one_mb_of_garbage_through_runc_is_refused_by_mighook() {
    let rt = Runtime::RuncV1;
    if !can_run(rt) {
        return;
    }
    let node = SimNode::new("a100x8");
    let guard = HostGuard::watch(&[]);
    let garbage = format!("bad-first-entry,{}", junk(1 << 20, 0x1b, printable_no_comma));
    let start = Instant::now();
    let (out, bundle) = run_request(rt, &node, &garbage);
    assert_refused(rt, &out, "bad-first-entry: not a GPU index, UUID, PCI bus id or MIG device");
    assert!(start.elapsed() < Duration::from_secs(30), "took {:?}", start.elapsed());
    guard.assert_unchanged(rt, &bundle);
}

/// `mighook prestart` run by hand: a state naming a sleeping child (a live pid) and a bundle.
struct DirectHook {
    bundle: tempfile::TempDir,
    child: std::process::Child,
}

impl DirectHook {
    fn new(env: &[String]) -> DirectHook {
        let bundle = tempfile::Builder::new().prefix("mighook-attack-direct").tempdir().unwrap();
        fs::create_dir(bundle.path().join("rootfs")).unwrap();
        let spec = serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {"env": env, "args": ["/bin/true"], "capabilities": {"bounding": ["CAP_KILL"]}},
            "root": {"path": "rootfs"},
        });
        fs::write(bundle.path().join("config.json"), spec.to_string()).unwrap();
        let child = Command::new("sleep").arg("60").spawn().unwrap();
        DirectHook { bundle, child }
    }

    fn run(&self, node: &SimNode) -> (Output, Duration) {
        let state = serde_json::json!({"ociVersion": "1.0.2", "id": "direct", "status": "creating", "pid": self.child.id(), "bundle": self.bundle.path()});
        let start = Instant::now();
        let mut cmd = Command::new(support::mighook_bin());
        cmd.args(node.mighook_args())
            .arg("prestart")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut proc = cmd.spawn().unwrap();
        proc.stdin.take().unwrap().write_all(state.to_string().as_bytes()).unwrap();
        let out = proc.wait_with_output().unwrap();
        (out, start.elapsed())
    }
}

impl Drop for DirectHook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The same 1 MB through `mighook prestart` directly (no runtime in between).
#[test]
fn one_mb_of_garbage_direct_prestart_is_refused() {
    if !support::require_root_and(&["sleep"]) {
        return;
    }
    let node = SimNode::new("a100x8");
    for (name, garbage) in [
        ("no commas", junk(1 << 20, 0x2b, printable_no_comma)),
        ("binary junk", junk(1 << 20, 0x3c, any_char_but_nul)),
        ("first valid, then junk", format!("0:1,{}", junk(1 << 20, 0x4d, printable_no_comma))),
    ] {
        let hook = DirectHook::new(&[format!("NVIDIA_VISIBLE_DEVICES={garbage}")]);
        let before = support::tree(hook.bundle.path());
        let (out, took) = hook.run(&node);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", &stderr[..stderr.len().min(300)]);
        assert!(stderr.starts_with("mighook: ") && stderr.lines().count() == 1, "{name}: one error line");
        assert!(took < Duration::from_secs(20), "{name}: took {took:?}");
        assert_eq!(support::tree(hook.bundle.path()), before, "{name}: nothing may be written into the bundle or root");
    }
}

/// 10,000 spellings of one MIG device: deduplicated to its six nodes (40-60 KB, fits through runc).
///
/// Round 2 of the red-team review bounded every number to its digits (an index has at
/// most 3): `000:0001` used to spell 0:1 and is now out of range, so the longest
/// spelling here is `000:001`. The intent is unchanged: many spellings of one device
/// collapse to it, and repeats never count towards the 4096-distinct-devices limit.
#[test]
fn ten_thousand_copies_of_one_device_get_its_six_nodes() {
    let rt = Runtime::RuncV1;
    if !can_run(rt) {
        return;
    }
    let node = SimNode::new("a100x8");
    let spellings = ["0:1", " 0:1", "00:1", "0:01 ", "000:001"];
    let list: Vec<&str> = (0..10_000).map(|i| spellings[i % spellings.len()]).collect();
    let guard = HostGuard::watch(&[]);
    let (out, bundle) = run_request(rt, &node, &list.join(","));
    assert_exactly(rt, &out, &MIG_0_1, &MIG_0_1_NEIGHBOURS);
    guard.assert_unchanged(rt, &bundle);
}

#[test]
fn ten_thousand_entries_name_the_first_invalid_one() {
    let rt = Runtime::RuncV1;
    if !can_run(rt) {
        return;
    }
    let node = SimNode::new("a100x8");
    let guard = HostGuard::watch(&[]);
    let mut list = vec!["0:1"; 10_000];
    list[5_000] = "0:1x";
    list[7_000] = "zzz";
    let (out, bundle) = run_request(rt, &node, &list.join(","));
    assert_refused(rt, &out, "mighook: 0:1x: not a GPU index, UUID, PCI bus id or MIG device");
    guard.assert_unchanged(rt, &bundle);

    // Well-formed but not on this node: resolution names the first one too.
    let mut list = vec!["0:1"; 10_000];
    list[9_000] = "0:99";
    list[9_999] = "9";
    let (out, bundle) = run_request(rt, &node, &list.join(","));
    assert_refused(rt, &out, "mighook: 0:99: GPU 0 has no MIG device 99");
    guard.assert_unchanged(rt, &bundle);
}

/// Many different entries, refused quickly. This used to be GPU indexes 0..9999 (refused
/// at `8`, the first the node lacks). Round 2 of the red-team review bounded indexes to 3
/// digits and a request to 4096 distinct devices, so it is now three lists: 4096 distinct
/// entries (the most allowed) are refused at the first one the node lacks, 10,000 distinct
/// MIG indexes at the 4097th by the limit, and the old list at `1000` by the digit bound
/// (the grammar is checked before any device is looked up).
#[test]
fn ten_thousand_distinct_entries_are_refused_quickly() {
    let rt = Runtime::RuncV1;
    if !can_run(rt) {
        return;
    }
    let node = SimNode::new("a100x8");
    let guard = HostGuard::watch(&[]);
    let mig = |n: usize| format!("{}:{}", n / 1000, n % 1000);
    let at_limit: Vec<String> = (0..1000).map(|i| i.to_string()).chain((1000..4096).map(mig)).collect();
    let start = Instant::now();
    let (out, bundle) = run_request(rt, &node, &at_limit.join(","));
    assert_refused(rt, &out, "mighook: 8: no GPU with index 8 (this node has 0..7)");
    assert!(start.elapsed() < Duration::from_secs(20), "took {:?}", start.elapsed());
    guard.assert_unchanged(rt, &bundle);

    let over: Vec<String> = (0..10_000).map(mig).collect();
    let (out, bundle) = run_request(rt, &node, &over.join(","));
    assert_refused(rt, &out, "mighook: 4:96: more than 4096 distinct devices in one request");
    guard.assert_unchanged(rt, &bundle);

    let old: Vec<String> = (0..10_000).map(|i| i.to_string()).collect();
    let (out, bundle) = run_request(rt, &node, &old.join(","));
    assert_refused(rt, &out, "mighook: 1000: GPU index out of range");
    guard.assert_unchanged(rt, &bundle);
}

// ---------------------------------------------------------------------------
// Bounded memory and one-line logs (red-team review round 2, findings 3 and 7).

/// `mighook prestart` on a bundle whose config.json is `config` as given, `flags` before
/// `prestart`, with a state naming a sleeping child. Returns the output and the hook's peak
/// RSS in KiB, as `/usr/bin/time` reports it. Not wait4 from here: a child forked (or
/// vforked) from this test binary carries the binary's own peak into its `ru_maxrss` across
/// exec; one forked by the small `time` does not.
fn prestart_raw(node: &SimNode, config: &[u8], flags: &[String]) -> (Output, u64) {
    let bundle = tempfile::Builder::new().prefix("mighook-attack-raw").tempdir().unwrap();
    fs::create_dir(bundle.path().join("rootfs")).unwrap();
    fs::write(bundle.path().join("config.json"), config).unwrap();
    let rss_file = bundle.path().join("maxrss");
    let mut sleeper = Command::new("sleep").arg("60").spawn().unwrap();
    let state = serde_json::json!({"ociVersion": "1.0.2", "id": "raw", "status": "creating", "pid": sleeper.id(), "bundle": bundle.path()});
    let mut proc = Command::new("/usr/bin/time")
        .args(["-f", "%M", "-o"])
        .arg(&rss_file)
        .arg(support::mighook_bin())
        .args(node.mighook_args())
        .args(flags)
        .arg("prestart")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    proc.stdin.take().unwrap().write_all(state.to_string().as_bytes()).unwrap();
    let out = proc.wait_with_output().unwrap();
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    // `time` puts "Command exited with non-zero status N" before the figure when it fails.
    let report = fs::read_to_string(&rss_file).unwrap();
    let rss_kib = report.lines().last().and_then(|l| l.trim().parse().ok());
    (out, rss_kib.unwrap_or_else(|| panic!("no peak RSS from /usr/bin/time: {report:?}")))
}

/// A config.json with `env` and `extra` (raw JSON members, may be empty) in the given bounding set.
fn config_json(env: &[String], bounding: &[&str], root: &str, extra: &str) -> String {
    let spec = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {"env": env, "args": ["/bin/true"], "capabilities": {"bounding": bounding}},
        "root": {"path": root},
    });
    let text = spec.to_string();
    if extra.is_empty() { text } else { format!("{},{extra}}}", &text[..text.len() - 1]) }
}

/// mighook's config.json limit (`bundle::MAX_CONFIG_BYTES`), and just under it.
const CONFIG_LIMIT: usize = 2 << 20;
const NEAR_LIMIT: usize = CONFIG_LIMIT - 4096;

/// `item` repeated, joined with `sep`, to about `len` bytes.
fn fill(item: &str, sep: &str, len: usize) -> String {
    vec![item; len / (item.len() + sep.len())].join(sep)
}

/// `NVIDIA_VISIBLE_DEVICES=0`, then `entry(0)`, `entry(1)`, ... to about `len` bytes of JSON.
fn env_filling(len: usize, entry: impl Fn(usize) -> String) -> Vec<String> {
    let mut env = vec!["NVIDIA_VISIBLE_DEVICES=0".to_string()];
    let mut size = 0;
    for i in 0.. {
        let e = entry(i);
        size += e.len() + 3;
        if size > len {
            break;
        }
        env.push(e);
    }
    env
}

/// Finding 7: every shape of config.json just under the 2 MiB limit keeps the hook's peak RSS
/// under 16 MiB (a `Value` of a 2 MiB array of zeros alone is 32 MiB; collecting a million
/// device entries 16 MiB), and one over the limit is refused. Measures memory, never time.
#[test]
fn worst_case_config_json_keeps_the_hook_under_16_mib() {
    if !support::require_root_and(&["sleep", "time"]) {
        return;
    }
    let node = SimNode::new("a100x8");
    let env = |v: String| vec![format!("NVIDIA_VISIBLE_DEVICES={v}")];
    let uuids: Vec<String> = (0..4096).map(|i| format!("GPU-{i:08x}-0000-0000-0000-000000000000")).collect();
    let distinct = uuids.join(",");
    let cases: Vec<(&str, String)> = vec![
        ("a million copies of one entry", config_json(&env(fill("9", ",", NEAR_LIMIT)), &["CAP_KILL"], "rootfs", "")),
        (
            "4096 distinct UUIDs, then copies",
            config_json(&env(fill(&distinct, ",", NEAR_LIMIT)), &["CAP_KILL"], "rootfs", ""),
        ),
        (
            "one escaped string of the whole size",
            config_json(&[], &["CAP_KILL"], "rootfs", "").replacen(
                "\"env\":[]",
                &format!("\"env\":[\"NVIDIA_VISIBLE_DEVICES=\\u0039,{}\"]", fill("9", ",", NEAR_LIMIT)),
                1,
            ),
        ),
        (
            "an array of a million zeros",
            config_json(
                &env("void".into()),
                &["CAP_KILL"],
                "rootfs",
                &format!("\"junk\":[{}]", fill("0", ",", NEAR_LIMIT)),
            ),
        ),
        (
            "half a million env entries",
            config_json(&[], &["CAP_KILL"], "rootfs", "").replacen(
                "\"env\":[]",
                &format!("\"env\":[{},\"NVIDIA_VISIBLE_DEVICES=9\"]", fill("\"A=\"", ",", NEAR_LIMIT)),
                1,
            ),
        ),
        (
            "nesting a million deep",
            config_json(
                &env("9".into()),
                &["CAP_KILL"],
                "rootfs",
                &format!("\"junk\":{}{}", "[".repeat(NEAR_LIMIT / 2), "]".repeat(NEAR_LIMIT / 2)),
            ),
        ),
        (
            "twenty-five thousand distinct volume mounts",
            config_json(
                &[],
                &["CAP_KILL"],
                "rootfs",
                &format!(
                    "\"mounts\":[{}]",
                    (0..NEAR_LIMIT / 80)
                        .map(|i| format!(
                            r#"{{"source":"/dev/null","destination":"/var/run/nvidia-container-devices/{i}"}}"#
                        ))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            ),
        ),
        (
            "sixteen NVIDIA_REQUIRE_* values of 16 KiB, each 1820 alternatives, assigned over and over",
            config_json(
                &env_filling(NEAR_LIMIT - 20_000, |i| {
                    format!("NVIDIA_REQUIRE_{}={}", i % 16, "cuda>=99 ".repeat(1820))
                }),
                &["CAP_KILL"],
                "rootfs",
                "",
            ),
        ),
        (
            "seventy thousand distinct NVIDIA_REQUIRE_* names",
            config_json(
                &env_filling(NEAR_LIMIT - 20_000, |i| format!("NVIDIA_REQUIRE_{i}=cuda>=99")),
                &["CAP_KILL"],
                "rootfs",
                "",
            ),
        ),
    ];
    // For scale: the same hook on a config.json of a hundred bytes.
    let (_, small_kib) =
        prestart_raw(&node, config_json(&env("9".into()), &["CAP_KILL"], "rootfs", "").as_bytes(), &[]);
    eprintln!("a small config.json: peak RSS {small_kib} KiB");
    for (name, config) in &cases {
        assert!(config.len() < CONFIG_LIMIT && config.len() > CONFIG_LIMIT - 100_000, "{name}: {} bytes", config.len());
        let (out, rss_kib) = prestart_raw(&node, config.as_bytes(), &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprintln!(
            "{name}: {} bytes, peak RSS {rss_kib} KiB, exit {:?}: {}",
            config.len(),
            out.status.code(),
            stderr.trim()
        );
        assert!(rss_kib < 16 << 10, "{name}: peak RSS {rss_kib} KiB, over 16 MiB");
        assert!(stderr.lines().count() <= 1 && stderr.len() < 400, "{name}: {stderr}");
    }
    let over = config_json(&env(fill("9", ",", CONFIG_LIMIT)), &["CAP_KILL"], "rootfs", "");
    let (out, rss_kib) = prestart_raw(&node, over.as_bytes(), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.trim_end().ends_with("config.json is larger than 2097152 bytes"), "{stderr}");
    assert!(rss_kib < 16 << 10, "over the limit: peak RSS {rss_kib} KiB");
}

/// Finding 3: a request with a forged log line in it, and a 1 MB one, refused by policy or
/// failing, is exactly one short line in the log file and at most one on stderr; so is a
/// root path with a newline (which every later error would name).
#[test]
fn forged_and_huge_requests_are_one_short_line_in_the_log_and_on_stderr() {
    if !support::require_root_and(&["sleep", "time"]) {
        return;
    }
    let node = SimNode::new("a100x8");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mighook.log");
    let config = dir.path().join("config.toml");
    fs::write(&config, format!("log-file = {log:?}\nlog-level = \"info\"\naccept-envvar-when-unprivileged = false\n"))
        .unwrap();
    let flags = ["--config".to_string(), config.display().to_string()];
    let forged = "0\n1 mighook[1] Info: pid 1: applied 99 devices".to_string();
    let huge = format!("{}\n{}", "x".repeat(500_000), "y".repeat(500_000));
    let env = |v: &str| vec![format!("NVIDIA_VISIBLE_DEVICES={v}")];
    let cases = [
        ("forged, unprivileged", config_json(&env(&forged), &["CAP_KILL"], "rootfs", ""), 0),
        ("1 MB, unprivileged", config_json(&env(&huge), &["CAP_KILL"], "rootfs", ""), 0),
        ("forged, privileged", config_json(&env(&forged), &["CAP_SYS_ADMIN"], "rootfs", ""), 1),
        ("1 MB, privileged", config_json(&env(&huge), &["CAP_SYS_ADMIN"], "rootfs", ""), 1),
        ("root path with a newline", config_json(&env("0:1"), &["CAP_SYS_ADMIN"], "rootfs\nmighook: forged", ""), 1),
    ];
    for (name, config, stderr_lines) in &cases {
        let _ = fs::remove_file(&log);
        let (out, _) = prestart_raw(&node, config.as_bytes(), &flags);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let logged = fs::read_to_string(&log).unwrap_or_default();
        assert_eq!(out.status.code(), Some(if *stderr_lines == 0 { 0 } else { 1 }), "{name}: {stderr}");
        assert_eq!(stderr.lines().count(), *stderr_lines, "{name}: stderr {stderr}");
        assert!(stderr.len() < 300, "{name}: stderr {} bytes", stderr.len());
        assert_eq!(logged.lines().count(), 1, "{name}: log {logged}");
        assert!(logged.len() < 300, "{name}: log line {} bytes: {logged}", logged.len());
        assert!(!logged.contains("\n1 mighook") && !stderr.contains("\nmighook: forged"), "{name}: a forged line");
    }
}

// ---------------------------------------------------------------------------
// A broken driver: malformed /proc files, NVML failing mid-walk.

fn with_proc(rt: Runtime, node: &SimNode, proc_root: &Path, visible: &str) -> (Output, Bundle) {
    let env = [format!("NVIDIA_VISIBLE_DEVICES={visible}")];
    let bundle = with_hook(
        Bundle::probe(&strs(&env), &strs(&mig_0_1_args())),
        node,
        proc_root,
        &[],
        &[support::bundle::HOOK_PATH_ENV],
    );
    (rt.run(&bundle), bundle)
}

fn edit_mig_minors(proc_root: &Path, f: impl FnOnce(String) -> String) {
    let path = proc_root.join("driver/nvidia-caps/mig-minors");
    let text = fs::read_to_string(&path).unwrap();
    fs::write(&path, f(text)).unwrap();
}

#[test]
fn truncated_mig_minors_is_a_clear_error() {
    let rt = Runtime::RuncV1;
    if !can_run(rt) {
        return;
    }
    let node = SimNode::new("a100x8");
    let proc_root = copy_proc(&node);
    // Cut before GPU minor 2's lines (minors 0 and 1 come first).
    edit_mig_minors(proc_root.path(), |t| t[..t.find("gpu2/").unwrap()].to_string());
    let guard = HostGuard::watch(&[proc_root.path()]);
    let (out, bundle) = with_proc(rt, &node, proc_root.path(), "0:1");
    assert_refused(rt, &out, "mighook: 0:1: mig-minors has no entry for gpu2/mig/gi8/access");
    guard.assert_unchanged(rt, &bundle);
}

#[test]
fn mig_minors_cut_mid_line_is_caught_by_the_capability_file() {
    let rt = Runtime::RuncV1;
    if !can_run(rt) {
        return;
    }
    let node = SimNode::new("a100x8");
    let proc_root = copy_proc(&node);
    // `gpu2/gi8/access 345` becomes `gpu2/gi8/access 34`, the file's last line.
    edit_mig_minors(proc_root.path(), |t| {
        let end = t.find("gpu2/gi8/access 345\n").unwrap() + "gpu2/gi8/access 34".len();
        t[..end].to_string()
    });
    let guard = HostGuard::watch(&[proc_root.path()]);
    let (out, bundle) = with_proc(rt, &node, proc_root.path(), "0:1");
    assert_refused(rt, &out, "mighook: 0:1: capabilities/gpu2/mig/gi8/access says minor 345 but mig-minors says 34");
    guard.assert_unchanged(rt, &bundle);
}

#[test]
fn conflicting_duplicate_mig_minors_line_is_refused() {
    let rt = Runtime::RuncV1;
    if !can_run(rt) {
        return;
    }
    let node = SimNode::new("a100x8");
    let proc_root = copy_proc(&node);
    // A second line for the same capability pointing at the config cap.
    edit_mig_minors(proc_root.path(), |t| t + "gpu2/gi8/access 1\n");
    let guard = HostGuard::watch(&[proc_root.path()]);
    let (out, bundle) = with_proc(rt, &node, proc_root.path(), "0:1");
    assert_refused(rt, &out, "mighook: 0:1: capabilities/gpu2/mig/gi8/access says minor 345 but mig-minors says 1");
    guard.assert_unchanged(rt, &bundle);
}

#[test]
fn identical_duplicate_mig_minors_lines_are_harmless() {
    let rt = Runtime::RuncV1;
    if !can_run(rt) {
        return;
    }
    let node = SimNode::new("a100x8");
    let proc_root = copy_proc(&node);
    edit_mig_minors(proc_root.path(), |t| format!("{t}{t}"));
    let guard = HostGuard::watch(&[proc_root.path()]);
    let (out, bundle) = with_proc(rt, &node, proc_root.path(), "0:1");
    assert_exactly(rt, &out, &MIG_0_1, &MIG_0_1_NEIGHBOURS);
    guard.assert_unchanged(rt, &bundle);
}

#[test]
fn proc_devices_without_nvidia_caps_is_a_clear_error() {
    let rt = Runtime::RuncV1;
    if !can_run(rt) {
        return;
    }
    let node = SimNode::new("a100x8");
    let message = "mighook: 0:1: needs /dev/nvidia-caps, but /proc/devices has no nvidia-caps major";
    for (what, edit) in [
        ("line removed", (|t: &str| t.replace("508 nvidia-caps\n", "")) as fn(&str) -> String),
        ("only as a block device", |t: &str| {
            t.replace("508 nvidia-caps\n", "").replace("Block devices:\n", "Block devices:\n508 nvidia-caps\n")
        }),
        ("a third field on its line", |t: &str| t.replace("508 nvidia-caps\n", "508 nvidia-caps x\n")),
    ] {
        let proc_root = copy_proc(&node);
        let devices = proc_root.path().join("devices");
        let text = fs::read_to_string(&devices).unwrap();
        assert!(
            text.contains("508 nvidia-caps\n") && text.contains("509 nvidia-caps-imex-channels\n"),
            "{what}: layout"
        );
        fs::write(&devices, edit(&text)).unwrap();
        let guard = HostGuard::watch(&[proc_root.path()]);
        let (out, bundle) = with_proc(rt, &node, proc_root.path(), "0:1");
        assert_refused(rt, &out, message);
        guard.assert_unchanged(rt, &bundle);
    }
}

/// Topology `nvml-error-midwalk`: `nvmlDeviceGetMigDeviceHandleByIndex` fails for GPU 1 slot 2.
#[test]
fn nvml_error_mid_walk_names_the_entry() {
    let rt = Runtime::RuncV1;
    if !can_run(rt) {
        return;
    }
    let node = SimNode::new("nvml-error-midwalk");
    let guard = HostGuard::watch(&[]);
    // GPU 1 slot 3 (GI 2 CI 0): its UUID is found only by walking slots 0..3.
    for (visible, named) in [
        ("1:2", "1:2: NVML"),
        ("0:1,1:2", "1:2: NVML"),
        ("all", "all: NVML"),
        ("MIG-2b49543c-789f-56ec-9269-71ec2c799ce8", "MIG-2b49543c-789f-56ec-9269-71ec2c799ce8: NVML"),
        ("MIG-GPU-00434906-99db-6010-9f69-b8c8080d63e4/2/0", "MIG-GPU-00434906-99db-6010-9f69-b8c8080d63e4/2/0: NVML"),
    ] {
        let (out, bundle) = run_request(rt, &node, visible);
        assert_refused(rt, &out, &format!("mighook: {named}"));
        guard.assert_unchanged(rt, &bundle);
    }
    // Narrow queries never touch the failing slot: 1:3 works (GPU minor 3, GI 2 CI 0: caps 3+3*135+2*9 = 426, 427).
    let nodes = [
        ("/dev/nvidiactl", 195, 255),
        ("/dev/nvidia-uvm", 511, 0),
        ("/dev/nvidia-uvm-tools", 511, 1),
        ("/dev/nvidia3", 195, 3),
        ("/dev/nvidia-caps/nvidia-cap426", 508, 426),
        ("/dev/nvidia-caps/nvidia-cap427", 508, 427),
    ];
    let neighbours = [("/dev/nb-cap417", 508, 417), ("/dev/nb-gpu2", 195, 2)];
    let bundle =
        Bundle::probe(&["NVIDIA_VISIBLE_DEVICES=1:3"], &strs(&probe_args(&nodes, &neighbours))).with_mighook(&node);
    assert_exactly(rt, &rt.run(&bundle), &nodes, &neighbours);
    guard.assert_unchanged(rt, &bundle);
}
