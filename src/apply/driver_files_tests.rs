//! Unit tests of the driver-file applier against the recording file-system fake.
//!
//! The fake models `openat2(RESOLVE_IN_ROOT)`, so an image's symlinks (absolute
//! or climbing with `..`) resolve inside the container root exactly as the
//! kernel would resolve them, and every call is recorded. Each test sets up a
//! small hostile tree (the root lives at [`ROOT`], the host's own files beside
//! it, at `/etc` and `/driver`) and compares the recorded changes line by line:
//! what was made, unlinked or mounted, and that nothing outside the root was
//! touched.

use super::*;
use crate::apply::undo::Made;
use crate::sys::fake::fs::RecordingFs;

/// The container root as the hook sees it.
const ROOT: &str = "/bundle/rootfs";

#[test]
fn container_paths_must_be_absolute_and_plain() {
    assert!(split(Path::new("/usr/lib64/libcuda.so.1")).is_ok());
    for bad in ["usr/lib64/x", "/usr/../etc/x", "/"] {
        assert!(split(Path::new(bad)).is_err(), "{bad}");
    }
}

/// A root with `/usr/lib` and nothing else, the host's `/etc/shadow`, and driver files.
fn node() -> RecordingFs {
    RecordingFs::new()
        .dir(&format!("{ROOT}/usr/lib"))
        .file("/etc/shadow", "host secret")
        .dir("/outside")
        .file("/driver/lib/libcuda.so.550", "libcuda")
        .file("/driver/bin/nvidia-smi", "smi")
        .file("/driver/firmware/gsp.bin", "gsp")
        .file("/driver/etc/nvidia_icd.json", "icd")
}

fn mount(host: &str, container: &str, kind: MountKind) -> FileMount {
    FileMount { host_path: host.into(), container_path: container.into(), kind }
}

fn libcuda(container: &str) -> FileMount {
    mount("/driver/lib/libcuda.so.550", container, MountKind::Library)
}

fn root(fs: &RecordingFs) -> crate::sys::fake::fs::FakeFd {
    fs.open_dir(Path::new(ROOT)).unwrap()
}

fn mount_all(fs: &RecordingFs, mounts: &[FileMount]) -> Result<Vec<String>, InjectError> {
    let mut report = InjectReport::default();
    mount_in_root(fs, &root(fs), mounts, &mut report)?;
    Ok(report.lines)
}

fn link_all(fs: &RecordingFs, links: &[Symlink]) -> Result<Vec<String>, InjectError> {
    let mut report = InjectReport::default();
    link_in_root(fs, &root(fs), links, &mut report)?;
    Ok(report.lines)
}

fn link(at: &str, target: &str) -> Symlink {
    Symlink { link: at.into(), target: target.into() }
}

/// `ROOT` spelled out in expected call lines.
fn r(rest: &str) -> String {
    format!("{ROOT}{rest}")
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

// ---------------------------------------------------------------------------
// Mounts.

#[test]
fn mount_points_are_made_inside_the_root_with_0755_parents() {
    let fs = node();
    mount_all(&fs, &[libcuda("/usr/lib64/nvidia/libcuda.so.550")]).unwrap();
    let want = [
        format!("mkdir {} 0755", r("/usr/lib64")),
        format!("chmod {} 0755", r("/usr/lib64")),
        format!("mkdir {} 0755", r("/usr/lib64/nvidia")),
        format!("chmod {} 0755", r("/usr/lib64/nvidia")),
        format!("create {} 0644", r("/usr/lib64/nvidia/libcuda.so.550")),
        format!("bind /driver/lib/libcuda.so.550 -> {} ro,nosuid,nodev", r("/usr/lib64/nvidia/libcuda.so.550")),
    ];
    assert_eq!(fs.changes(), want);
    assert_eq!(fs.describe(&r("/usr/lib64")).as_deref(), Some("dir 0755"));
    assert_eq!(fs.describe(&r("/usr/lib64/nvidia/libcuda.so.550")).as_deref(), Some("file \"libcuda\" (mount)"));
}

#[test]
fn an_existing_regular_file_is_mounted_over() {
    let fs = node().file(&r("/usr/lib/libcuda.so.550"), "image's own");
    mount_all(&fs, &[libcuda("/usr/lib/libcuda.so.550")]).unwrap();
    assert_eq!(
        fs.changes(),
        [format!("bind /driver/lib/libcuda.so.550 -> {} ro,nosuid,nodev", r("/usr/lib/libcuda.so.550"))]
    );
}

#[test]
fn a_symlink_at_a_mount_target_is_removed_not_followed() {
    let fs = node().symlink(&r("/usr/lib/libcuda.so.550"), "/etc/shadow");
    mount_all(&fs, &[libcuda("/usr/lib/libcuda.so.550")]).unwrap();
    let at = r("/usr/lib/libcuda.so.550");
    let want = [
        format!("unlink {at}"),
        format!("create {at} 0644"),
        format!("bind /driver/lib/libcuda.so.550 -> {at} ro,nosuid,nodev"),
    ];
    assert_eq!(fs.changes(), want);
    assert_eq!(fs.describe("/etc/shadow").as_deref(), Some("file \"host secret\""));
    assert_eq!(fs.describe(&r("/etc/shadow")), None, "the link's target was made inside the root");
}

#[test]
fn a_fifo_at_a_mount_target_is_replaced() {
    let fs = node().fifo(&r("/usr/lib/libcuda.so.550"));
    mount_all(&fs, &[libcuda("/usr/lib/libcuda.so.550")]).unwrap();
    assert_eq!(
        fs.changes()[..2],
        [format!("unlink {}", r("/usr/lib/libcuda.so.550")), format!("create {} 0644", r("/usr/lib/libcuda.so.550"))]
    );
}

#[test]
fn a_directory_at_a_file_target_is_refused() {
    let fs = node().dir(&r("/usr/lib/libcuda.so.550"));
    let err = mount_all(&fs, &[libcuda("/usr/lib/libcuda.so.550")]).unwrap_err();
    assert!(matches!(err, InjectError::InTheWay { found: "a directory", kind: "a library", .. }), "{err}");
    assert_eq!(fs.changes(), Vec::<String>::new());
}

#[test]
fn a_second_run_keeps_an_existing_mount() {
    let fs = node();
    let mounts = [libcuda("/usr/lib/libcuda.so.550")];
    mount_all(&fs, &mounts).unwrap();
    let first = fs.changes().len();
    let lines = mount_all(&fs, &mounts).unwrap();
    assert_eq!(fs.changes()[first..], [] as [String; 0]);
    assert_eq!(lines, ["kept mount at /usr/lib/libcuda.so.550"]);
}

#[test]
fn read_only_kinds_are_mounted_ro_nosuid_nodev() {
    let fs = node();
    let mounts = [
        mount("/driver/bin/nvidia-smi", "/usr/bin/nvidia-smi", MountKind::Binary),
        mount("/driver/etc/nvidia_icd.json", "/usr/share/vulkan/icd.d/nvidia_icd.json", MountKind::Config),
        mount("/driver/firmware/gsp.bin", "/lib/firmware/nvidia/gsp.bin", MountKind::Firmware),
        libcuda("/usr/lib/libcuda.so.550"),
    ];
    mount_all(&fs, &mounts).unwrap();
    let binds: Vec<String> = fs.changes().into_iter().filter(|c| c.starts_with("bind ")).collect();
    let want = [
        format!("bind /driver/bin/nvidia-smi -> {} ro,nosuid,nodev", r("/usr/bin/nvidia-smi")),
        format!("bind /driver/etc/nvidia_icd.json -> {} ro,nosuid,nodev", r("/usr/share/vulkan/icd.d/nvidia_icd.json")),
        format!("bind /driver/firmware/gsp.bin -> {} ro,nosuid,nodev", r("/lib/firmware/nvidia/gsp.bin")),
        format!("bind /driver/lib/libcuda.so.550 -> {} ro,nosuid,nodev", r("/usr/lib/libcuda.so.550")),
    ];
    assert_eq!(binds, want);
}

#[test]
fn mount_attributes_per_kind() {
    assert_eq!(attrs(MountKind::Library).to_string(), "ro,nosuid,nodev");
    assert_eq!(attrs(MountKind::Binary).to_string(), "ro,nosuid,nodev");
    assert_eq!(attrs(MountKind::Firmware).to_string(), "ro,nosuid,nodev");
    assert_eq!(attrs(MountKind::Config).to_string(), "ro,nosuid,nodev");
    assert_eq!(attrs(MountKind::Socket).to_string(), "nosuid,nodev,noexec");
    assert_eq!(attrs(MountKind::Directory).to_string(), "nosuid,nodev,noexec,rbind");
}

#[test]
fn a_source_of_the_wrong_kind_is_refused_before_anything_is_made() {
    let fs = node().symlink("/driver/lib/libevil.so.1", "/etc/shadow");
    let socket = mount("/driver/lib/libcuda.so.550", "/run/nvidia-persistenced/socket", MountKind::Socket);
    let err = mount_all(&fs, &[socket]).unwrap_err();
    assert!(err.to_string().contains("is a regular file, expected a socket"), "{err}");
    let evil = mount("/driver/lib/libevil.so.1", "/usr/lib/libevil.so.1", MountKind::Library);
    let err = mount_all(&fs, &[evil]).unwrap_err();
    assert!(err.to_string().contains("is a symlink, expected a regular file"), "{err}");
    assert_eq!(
        strs(&fs.changes()),
        [
            format!("mkdir {} 0755", r("/run")),
            format!("chmod {} 0755", r("/run")),
            format!("mkdir {} 0755", r("/run/nvidia-persistenced")),
            format!("chmod {} 0755", r("/run/nvidia-persistenced"))
        ]
    );
}

#[test]
fn the_shim_makes_every_mount_point_and_the_cache_target_without_mounting() {
    let fs = node()
        .dir(&r("/etc"))
        .symlink(&r("/etc/ld.so.cache"), "/proc/self/environ")
        .fifo(&r("/usr/lib/libcuda.so.550"));
    let mounts =
        [libcuda("/usr/lib/libcuda.so.550"), mount("/driver/bin/nvidia-smi", "/usr/bin/nvidia-smi", MountKind::Binary)];
    mount_points_in_root(&fs, &root(&fs), &mounts, true).unwrap();
    let want = [
        format!("unlink {}", r("/usr/lib/libcuda.so.550")),
        format!("create {} 0644", r("/usr/lib/libcuda.so.550")),
        format!("mkdir {} 0755", r("/usr/bin")),
        format!("chmod {} 0755", r("/usr/bin")),
        format!("create {} 0644", r("/usr/bin/nvidia-smi")),
        format!("unlink {}", r("/etc/ld.so.cache")),
        format!("create {} 0644", r("/etc/ld.so.cache")),
    ];
    assert_eq!(fs.changes(), want);
}

#[test]
fn the_shim_refuses_a_mount_point_through_a_dangling_dir_link() {
    let fs = node().symlink(&r("/etc"), "/outside/etc");
    let err = mount_points_in_root(&fs, &root(&fs), &[], true).unwrap_err();
    assert!(matches!(err, InjectError::Rootfs(RootfsError::DirBlocked { .. })), "{err}");
    assert_eq!(fs.describe("/outside/etc"), None);
}

// ---------------------------------------------------------------------------
// The image's directory symlinks resolve inside the root.

#[test]
fn an_image_lib_dir_linked_to_etc_lands_in_the_roots_etc() {
    let fs = node().dir(&r("/etc")).symlink(&r("/usr/lib/x86_64-linux-gnu"), "/etc");
    mount_all(&fs, &[libcuda("/usr/lib/x86_64-linux-gnu/libcuda.so.550")]).unwrap();
    let want = [
        format!("create {} 0644", r("/etc/libcuda.so.550")),
        format!("bind /driver/lib/libcuda.so.550 -> {} ro,nosuid,nodev", r("/etc/libcuda.so.550")),
    ];
    assert_eq!(fs.changes(), want);
    assert_eq!(fs.describe("/etc/libcuda.so.550"), None);
}

#[test]
fn an_image_lib_dir_climbing_out_stays_in_the_root() {
    let fs = node().dir(&r("/outside")).symlink(&r("/usr/lib/x86_64-linux-gnu"), "../../../../outside");
    mount_all(&fs, &[libcuda("/usr/lib/x86_64-linux-gnu/libcuda.so.550")]).unwrap();
    let want = [
        format!("create {} 0644", r("/outside/libcuda.so.550")),
        format!("bind /driver/lib/libcuda.so.550 -> {} ro,nosuid,nodev", r("/outside/libcuda.so.550")),
    ];
    assert_eq!(fs.changes(), want);
    assert_eq!(fs.describe("/outside/libcuda.so.550"), None);
}

#[test]
fn an_image_lib_dir_climbing_to_a_dir_only_the_host_has_is_refused() {
    let fs = node().symlink(&r("/usr/lib/x86_64-linux-gnu"), "../../../../outside");
    let err = mount_all(&fs, &[libcuda("/usr/lib/x86_64-linux-gnu/libcuda.so.550")]).unwrap_err();
    assert!(matches!(err, InjectError::Rootfs(RootfsError::DirBlocked { .. })), "{err}");
    assert_eq!(fs.changes(), [format!("mkdir {} 0755", r("/usr/lib/x86_64-linux-gnu"))], "only the refused mkdir");
    assert_eq!(fs.describe("/outside/libcuda.so.550"), None);
}

#[test]
fn a_dangling_absolute_dir_link_is_refused_not_made_on_the_host() {
    let fs = node().symlink(&r("/usr/bin"), "/outside/bin");
    let err = mount_all(&fs, &[mount("/driver/bin/nvidia-smi", "/usr/bin/nvidia-smi", MountKind::Binary)]).unwrap_err();
    assert!(matches!(err, InjectError::Rootfs(RootfsError::DirBlocked { .. })), "{err}");
    assert_eq!(fs.describe("/outside/bin"), None);
}

// ---------------------------------------------------------------------------
// SONAME links.

#[test]
fn a_right_link_is_kept() {
    let fs = node().symlink(&r("/usr/lib/libcuda.so.1"), "libcuda.so.550");
    let lines = link_all(&fs, &[link("/usr/lib/libcuda.so.1", "libcuda.so.550")]).unwrap();
    assert_eq!(fs.changes(), Vec::<String>::new());
    assert_eq!(lines, Vec::<String>::new());
}

#[test]
fn a_wrong_link_is_replaced() {
    let fs = node().symlink(&r("/usr/lib/libcuda.so.1"), "/etc/shadow");
    link_all(&fs, &[link("/usr/lib/libcuda.so.1", "libcuda.so.550")]).unwrap();
    let at = r("/usr/lib/libcuda.so.1");
    assert_eq!(fs.changes(), [format!("unlink {at}"), format!("symlink {at} -> libcuda.so.550")]);
    assert_eq!(fs.describe("/etc/shadow").as_deref(), Some("file \"host secret\""));
}

#[test]
fn a_file_at_a_link_is_replaced() {
    let fs = node().file(&r("/usr/lib/libcuda.so.1"), "image's own");
    link_all(&fs, &[link("/usr/lib/libcuda.so.1", "libcuda.so.550")]).unwrap();
    let at = r("/usr/lib/libcuda.so.1");
    assert_eq!(fs.changes(), [format!("unlink {at}"), format!("symlink {at} -> libcuda.so.550")]);
}

#[test]
fn a_directory_at_a_link_is_refused() {
    let fs = node().dir(&r("/usr/lib/libcuda.so.1"));
    let err = link_all(&fs, &[link("/usr/lib/libcuda.so.1", "libcuda.so.550")]).unwrap_err();
    assert!(matches!(err, InjectError::LinkInTheWay { found: "a directory", .. }), "{err}");
    assert_eq!(fs.changes(), Vec::<String>::new());
}

#[test]
fn a_mount_point_at_a_link_is_refused() {
    let fs = node().file(&r("/usr/lib/libcuda.so.1"), "mounted").mounted(&r("/usr/lib/libcuda.so.1"));
    let err = link_all(&fs, &[link("/usr/lib/libcuda.so.1", "libcuda.so.550")]).unwrap_err();
    assert!(matches!(err, InjectError::LinkInTheWay { found: "a mount point", .. }), "{err}");
    assert_eq!(fs.changes(), Vec::<String>::new());
}

#[test]
fn links_through_an_image_dir_link_stay_in_the_root() {
    let fs = node().dir(&r("/etc")).symlink(&r("/usr/lib/x86_64-linux-gnu"), "/etc");
    link_all(&fs, &[link("/usr/lib/x86_64-linux-gnu/libcuda.so.1", "libcuda.so.550")]).unwrap();
    assert_eq!(fs.changes(), [format!("symlink {} -> libcuda.so.550", r("/etc/libcuda.so.1"))]);
    assert_eq!(fs.describe("/etc/libcuda.so.1"), None);
}

// ---------------------------------------------------------------------------
// The loader cache.

fn injected() -> Vec<Entry> {
    vec![Entry::x86_64("libcuda.so.1", "/usr/lib64/libcuda.so.1")]
}

/// The merged cache's entries and the report.
fn merge_in(fs: &RecordingFs) -> (Vec<Entry>, Vec<String>) {
    let mut report = InjectReport::default();
    let bytes = merged_cache(fs, &root(fs), &injected(), None, &mut report).unwrap();
    (ldcache::parse(&bytes).unwrap().entries, report.lines)
}

#[test]
fn an_absent_image_cache_gives_only_the_drivers_entries() {
    for fs in [node(), node().dir(&r("/etc"))] {
        let (entries, lines) = merge_in(&fs);
        assert_eq!(entries, injected());
        assert_eq!(lines, ["loader cache: 1 entries, 1 of the driver"]);
        assert_eq!(fs.changes(), Vec::<String>::new());
    }
}

#[test]
fn a_corrupt_image_cache_is_replaced() {
    let fs = node().file(&r("/etc/ld.so.cache"), "garbage garbage garbage");
    let (entries, lines) = merge_in(&fs);
    assert_eq!(entries, injected());
    assert!(lines[0].starts_with("the image's /etc/ld.so.cache is not usable (not an ld.so.cache"), "{lines:?}");
}

#[test]
fn an_oversized_image_cache_is_not_read_whole() {
    let huge = "x".repeat(MAX_IMAGE_CACHE_BYTES as usize + 1);
    let fs = node().file(&r("/etc/ld.so.cache"), &huge);
    let (entries, lines) = merge_in(&fs);
    assert_eq!(entries, injected());
    assert!(lines[0].starts_with("the image's /etc/ld.so.cache is not readable (too large"), "{lines:?}");
}

#[test]
fn a_fifo_image_cache_is_replaced() {
    let fs = node().fifo(&r("/etc/ld.so.cache"));
    let (entries, lines) = merge_in(&fs);
    assert_eq!(entries, injected());
    assert!(lines[0].contains("not a regular file"), "{lines:?}");
}

#[test]
fn a_symlinked_image_cache_is_not_followed() {
    // Whether it points at the host's file, into the root or at /proc: the link is never read through.
    for target in ["/etc/shadow", "/etc/real.cache", "/proc/self/environ"] {
        let fs = node().file(&r("/etc/real.cache"), "garbage").symlink(&r("/etc/ld.so.cache"), target);
        let (entries, lines) = merge_in(&fs);
        assert_eq!(entries, injected(), "{target}");
        assert!(lines[0].contains("(Too many levels of symbolic links"), "{target}: {lines:?}");
        let reads: Vec<String> = fs.calls().into_iter().filter(|c| c.starts_with("read ")).collect();
        assert_eq!(reads, [format!("read {}", r("/etc/ld.so.cache"))], "{target}");
    }
}

#[test]
fn an_image_etc_linked_out_of_the_root_is_read_inside_it() {
    let fs = node().dir(&r("/outside")).symlink(&r("/etc"), "../../../outside");
    merge_in(&fs);
    let reads: Vec<String> = fs.calls().into_iter().filter(|c| c.starts_with("read ")).collect();
    assert_eq!(reads, [format!("read {}", r("/outside/ld.so.cache"))]);
}

#[test]
fn the_cache_mount_replaces_a_symlinked_image_cache_in_the_root() {
    let fs = node().dir("/run/mighook").dir(&r("/etc")).symlink(&r("/etc/ld.so.cache"), "/etc/shadow");
    let cache_dir = fs.open_dir(Path::new("/run/mighook")).unwrap();
    mount_cache(&fs, &root(&fs), &cache_dir, Path::new("/run/mighook"), b"cache", &mut Vec::new()).unwrap();
    let at = r("/etc/ld.so.cache");
    let want = [
        "write /run/mighook/".to_string(),
        format!("unlink {at}"),
        format!("create {at} 0644"),
        "bind /run/mighook/".to_string(),
        "unlink /run/mighook/".to_string(),
    ];
    // The host file's name is unique per run: compare up to it.
    let changes: Vec<String> =
        fs.changes().iter().map(|c| c.replace("/run/mighook/ld.so.cache.", "/run/mighook/")).collect();
    assert_eq!(changes.len(), want.len(), "{changes:?}");
    for (got, want) in changes.iter().zip(&want) {
        assert!(got.starts_with(want.as_str()), "{got} vs {want}");
    }
    assert!(fs.changes()[3].ends_with(&format!("-> {at} ro,nosuid,nodev,noexec")), "{:?}", fs.changes());
    assert_eq!(fs.describe("/etc/shadow").as_deref(), Some("file \"host secret\""));
    assert_eq!(fs.describe(&at).as_deref(), Some("file \"cache\" (mount)"));
}

/// A second copy of the same start (enable-cuda-compat, then update-ldcache): the kernel
/// refuses to mount on the first copy, whose host file is gone (ENOENT); that copy is
/// unmounted and the new one mounted in its place. Any other error is just an error.
#[test]
fn a_cache_copy_the_kernel_cannot_cover_is_replaced() {
    let at = r("/etc/ld.so.cache");
    for (errno, replaced) in [(libc::ENOENT, true), (libc::EIO, false)] {
        let fs = node().dir("/run/mighook").file(&at, "first copy").mounted(&at).fail("bind", "/run/mighook/*", errno);
        let cache_dir = fs.open_dir(Path::new("/run/mighook")).unwrap();
        let e = mount_cache(&fs, &root(&fs), &cache_dir, Path::new("/run/mighook"), b"cache", &mut Vec::new());
        // The fake unmounts only mounts it made: the replacement stops there, an error.
        assert!(e.is_err());
        let unmounted = fs.calls().iter().any(|c| *c == format!("umount {at}"));
        assert_eq!(unmounted, replaced, "errno {errno}: {:?}", fs.calls());
    }
}

// ---------------------------------------------------------------------------
// Mounts that are not the container's own.

/// `ROOT/data` is mount 7 (superblock 0:77); the host's init sees superblock `host_dev`.
fn with_volume(host_dev: &str) -> RecordingFs {
    let own = "1 0 8:1 / / rw - ext4 /dev/vda rw\n7 1 0:77 /victim /bundle/rootfs/data rw - ext4 /dev/vda rw\n";
    let host = format!("1 0 8:1 / / rw - ext4 /dev/vda rw\n30 1 {host_dev} / /victim rw - ext4 /dev/vdb rw\n");
    node()
        .dir(&r("/data"))
        .symlink(&r("/usr/lib/x86_64-linux-gnu"), "/data")
        .on_mount(&r("/data"), 7)
        .file("/proc/thread-self/mountinfo", own)
        .file("/proc/1/mountinfo", &host)
}

#[test]
fn a_target_on_a_mount_the_host_has_is_refused_before_anything_is_made() {
    let fs = with_volume("0:77");
    let err = mount_all(&fs, &[libcuda("/usr/lib/x86_64-linux-gnu/libcuda.so.550")]).unwrap_err();
    assert!(
        matches!(&err, InjectError::Rootfs(RootfsError::HostMount { mountpoint, .. }) if mountpoint == "/bundle/rootfs/data"),
        "{err}"
    );
    assert_eq!(fs.changes(), Vec::<String>::new());
    let err = link_all(&fs, &[link("/usr/lib/x86_64-linux-gnu/libcuda.so.1", "libcuda.so.550")]).unwrap_err();
    assert!(matches!(err, InjectError::Rootfs(RootfsError::HostMount { .. })), "{err}");
    assert_eq!(fs.changes(), Vec::<String>::new());
}

#[test]
fn a_mount_only_the_container_has_is_its_own() {
    let fs = with_volume("0:99");
    mount_all(&fs, &[libcuda("/usr/lib/x86_64-linux-gnu/libcuda.so.550")]).unwrap();
    assert_eq!(fs.describe(&r("/data/libcuda.so.550")), Some("file \"libcuda\" (mount)".into()));
}

#[test]
fn unreadable_mountinfo_fails_closed() {
    let fs = node().dir(&r("/data")).on_mount(&r("/data"), 7);
    let err = mount_all(&fs, &[libcuda("/data/libcuda.so.550")]).unwrap_err();
    assert!(matches!(err, InjectError::Rootfs(RootfsError::MountInfo { .. })), "{err}");
    assert_eq!(fs.changes(), Vec::<String>::new());
}

#[test]
fn the_shim_refuses_targets_under_a_spec_bind_destination_as_resolved_in_the_root() {
    let fs = node().dir(&r("/data")).symlink(&r("/usr/lib/x86_64-linux-gnu"), "/data");
    let t = [Path::new("/usr/lib/x86_64-linux-gnu/libcuda.so.1")];
    let err = outside_spec_mounts(&fs, &root(&fs), &t, &["/data".into()]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "driver file /usr/lib/x86_64-linux-gnu/libcuda.so.1 would land in /data, which the container mounts from the host; refusing"
    );
    // A destination that is a link in the image counts where it leads.
    let fs = node().dir(&r("/usr/lib/x86_64-linux-gnu")).symlink(&r("/vol"), "/usr/lib");
    assert!(outside_spec_mounts(&fs, &root(&fs), &t, &["/vol".into()]).is_err());
    // Files such as /etc/hosts beside a target are fine.
    let etc = [Path::new("/etc/ld.so.cache")];
    let fs = node().dir(&r("/etc"));
    outside_spec_mounts(&fs, &root(&fs), &etc, &["/etc/hosts".into(), "/etc/resolv.conf".into()]).unwrap();
    assert_eq!(fs.changes(), Vec::<String>::new());
}

// ---------------------------------------------------------------------------
// Rollback: a failure leaves the root as it was.

fn edits_with_cache() -> DriverEdits {
    DriverEdits {
        mounts: vec![
            libcuda("/usr/lib64/nvidia/libcuda.so.550"),
            mount("/driver/bin/nvidia-smi", "/usr/bin/nvidia-smi", MountKind::Binary),
        ],
        symlinks: vec![link("/usr/lib64/nvidia/libcuda.so.1", "libcuda.so.550")],
        ld_cache: injected(),
        cuda_compat: None,
    }
}

fn inject_all(fs: &RecordingFs, edits: &DriverEdits) -> Result<InjectReport, InjectError> {
    let cache_dir = fs.open_dir(Path::new("/run/mighook")).unwrap();
    inject_in_root(fs, Path::new(ROOT), edits, &cache_dir, Path::new("/run/mighook"))
}

#[test]
fn everything_made_is_recorded_in_order() {
    let fs = node().dir("/run/mighook");
    let report = inject_all(&fs, &edits_with_cache()).unwrap();
    let m = |p: &str| Made::Mount(p.into());
    assert_eq!(
        report.made,
        [
            Made::Dir("/usr/lib64".into()),
            Made::Dir("/usr/lib64/nvidia".into()),
            Made::File("/usr/lib64/nvidia/libcuda.so.550".into()),
            m("/usr/lib64/nvidia/libcuda.so.550"),
            Made::Dir("/usr/bin".into()),
            Made::File("/usr/bin/nvidia-smi".into()),
            m("/usr/bin/nvidia-smi"),
            Made::Link("/usr/lib64/nvidia/libcuda.so.1".into()),
            Made::Dir("/etc".into()),
            Made::File("/etc/ld.so.cache".into()),
            m("/etc/ld.so.cache"),
        ]
    );
}

#[test]
fn a_failed_cache_mount_undoes_every_mount_link_and_dir_of_the_call() {
    let fs = node().dir("/run/mighook").fail("bind", "/run/mighook/ld.so.cache.*", libc::EIO);
    let before = fs.snapshot();
    let e = inject_all(&fs, &edits_with_cache()).unwrap_err();
    assert!(matches!(e, InjectError::Mount { .. }), "{e}");
    let changes = fs.changes();
    let undo_at = changes.iter().position(|c| c.starts_with("unlink /run/mighook/")).unwrap() + 1;
    assert_eq!(
        strs(&changes[undo_at..]),
        [
            r("/etc/ld.so.cache").replace(ROOT, "unlink /bundle/rootfs"),
            format!("rmdir {}", r("/etc")),
            format!("unlink {}", r("/usr/lib64/nvidia/libcuda.so.1")),
            format!("umount {}", r("/usr/bin/nvidia-smi")),
            format!("unlink {}", r("/usr/bin/nvidia-smi")),
            format!("rmdir {}", r("/usr/bin")),
            format!("umount {}", r("/usr/lib64/nvidia/libcuda.so.550")),
            format!("unlink {}", r("/usr/lib64/nvidia/libcuda.so.550")),
            format!("rmdir {}", r("/usr/lib64/nvidia")),
            format!("rmdir {}", r("/usr/lib64")),
        ]
    );
    assert_eq!(fs.snapshot(), before);
}

#[test]
fn an_unmount_that_fails_is_named_and_what_it_covers_stays() {
    let fs = node().dir("/run/mighook").fail("symlink", &r("/usr/lib64/nvidia/libcuda.so.1"), libc::EIO).fail(
        "umount",
        &r("/usr/lib64/nvidia/libcuda.so.550"),
        libc::EBUSY,
    );
    let edits = DriverEdits { ld_cache: vec![], ..edits_with_cache() };
    let e = inject_all(&fs, &edits).unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, InjectError::Incomplete { .. }), "{text}");
    assert!(text.contains("rolling back left behind: /usr/lib64/nvidia/libcuda.so.550: cannot unmount: "), "{text}");
    // The mount stays, so its file and dirs do too: rmdir of a non-empty dir is no error.
    assert!(fs.describe(&r("/usr/lib64/nvidia/libcuda.so.550")).unwrap().ends_with("(mount)"));
    assert_eq!(fs.describe(&r("/usr/bin/nvidia-smi")), None);
}
