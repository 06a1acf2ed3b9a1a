//! Device cgroup rules for a live container: v1 `devices.allow`, v2 BPF device filter.
//!
//! The container's cgroups come from `/proc/<pid>/cgroup` (the real `/proc`)
//! and are found on disk through `/proc/thread-self/mountinfo`, i.e. the mounts
//! of the namespace the hook runs in. Both versions can apply at once: on a hybrid
//! host a v1-mode runtime puts the container in a v1 `devices` cgroup *and* a
//! v2 cgroup (with no filter attached, which [`v2::allow`] reports).
//! - v1: used when a `devices` hierarchy is mounted and the container's
//!   `devices` cgroup is not the root (the root allows every device).
//! - v2: used when a `cgroup2` hierarchy is mounted; its `0::` line names the cgroup.
//!
//! If neither applies there is nothing to grant through, and that fails closed.
//! Parsing is lenient: unknown fields are ignored, `\040`-style escapes decoded,
//! malformed lines skipped.

pub mod v1;
pub mod v2;

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path, PathBuf};

use crate::edits::DeviceRule;
use crate::sys::{FsOps, Sys};

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("the container is in v1 devices cgroup {path} but no cgroup v1 devices hierarchy is mounted here")]
    V1NotMounted { path: String },
    #[error("the container's {version} cgroup {path} is not below any mounted {version} hierarchy here")]
    Unreachable { version: &'static str, path: String },
    #[error(
        "no device cgroup found for the container: its v1 devices cgroup is the root or absent and no cgroup2 hierarchy is mounted"
    )]
    NoDeviceCgroup,
    #[error("{error}; taking back the v1 lines: {undo}")]
    Incomplete { error: Box<CgroupError>, undo: v1::V1Error },
    #[error(transparent)]
    V1(#[from] v1::V1Error),
    #[error(transparent)]
    V2(#[from] v2::V2Error),
}

/// One line of `/proc/<pid>/cgroup`: `hierarchy-ID:controller-list:cgroup-path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupEntry {
    pub hierarchy: u32,
    /// Empty for the v2 (`0::`) line; `name=systemd` style entries kept as written.
    pub controllers: Vec<String>,
    pub path: String,
}

/// The fields of one `/proc/self/mountinfo` line the cgroup search needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The mount's root within its file system (field 4), unescaped.
    pub root: PathBuf,
    /// Where it is mounted (field 5), unescaped.
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub super_options: Vec<String>,
}

/// Where the container's device cgroups are, as directories in this namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceCgroups {
    pub v1_devices: Option<PathBuf>,
    pub v2: Option<PathBuf>,
}

/// What the v2 step did, and on which cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V2Step {
    pub dir: PathBuf,
    pub report: v2::V2Report,
}

/// What was changed, for the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupReport {
    pub v1: Option<v1::V1Report>,
    pub v2: Option<V2Step>,
}

/// Parse `/proc/<pid>/cgroup`, skipping lines that do not fit the format.
pub fn parse_proc_cgroup(text: &str) -> Vec<CgroupEntry> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.splitn(3, ':');
            let hierarchy = f.next()?.trim().parse().ok()?;
            let controllers = f.next()?.split(',').filter(|c| !c.is_empty()).map(String::from).collect();
            let path = f.next()?.to_string();
            path.starts_with('/').then_some(CgroupEntry { hierarchy, controllers, path })
        })
        .collect()
}

/// Decode mountinfo's octal escapes (`\040` space, `\011` tab, `\012` newline, `\134` backslash).
fn unescape(field: &str) -> PathBuf {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal.and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok()) {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    PathBuf::from(OsString::from_vec(out))
}

/// Parse `/proc/self/mountinfo`:
/// `id parent maj:min root mount-point options [optional...] - fstype source super-options`.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            // The optional fields end at the first lone "-" after the six fixed fields.
            let sep = f.iter().skip(6).position(|x| *x == "-")? + 6;
            let (fs_type, super_options) = (f.get(sep + 1)?, f.get(sep + 3)?);
            if f[3].is_empty() || f[4].is_empty() || fs_type.is_empty() {
                return None;
            }
            Some(Mount {
                root: unescape(f[3]),
                mount_point: unescape(f[4]),
                fs_type: fs_type.to_string(),
                super_options: super_options.split(',').map(String::from).collect(),
            })
        })
        .collect()
}

/// `cgroup` relative to a mount whose root is `root`; `None` if it is not below
/// it. A path with `..` (a cgroup outside our cgroup namespace) is never below anything.
fn below(cgroup: &str, root: &Path) -> Option<PathBuf> {
    let cgroup = Path::new(cgroup);
    if cgroup.components().any(|c| !matches!(c, Component::RootDir | Component::Normal(_))) {
        return None;
    }
    cgroup.strip_prefix(root).ok().map(Path::to_path_buf)
}

/// The directory of `cgroup` through the first of `mounts` it is below.
fn find_dir<'a>(cgroup: &str, mut mounts: impl Iterator<Item = &'a Mount>) -> Option<PathBuf> {
    // Joining an empty path would leave a trailing slash in every log line.
    let join = |m: &Mount, rel: PathBuf| {
        if rel.as_os_str().is_empty() { m.mount_point.clone() } else { m.mount_point.join(rel) }
    };
    mounts.find_map(|m| below(cgroup, &m.root).map(|rel| join(m, rel)))
}

/// Find the container's v1 devices and v2 cgroup directories.
pub fn locate(cgroups: &[CgroupEntry], mounts: &[Mount]) -> Result<DeviceCgroups, CgroupError> {
    let mut found = DeviceCgroups::default();

    let v1_entry = cgroups.iter().find(|c| c.hierarchy != 0 && c.controllers.iter().any(|x| x == "devices"));
    if let Some(entry) = v1_entry.filter(|e| e.path != "/") {
        let mut v1_mounts = mounts
            .iter()
            .filter(|m| m.fs_type == "cgroup" && m.super_options.iter().any(|o| o == "devices"))
            .peekable();
        if v1_mounts.peek().is_none() {
            return Err(CgroupError::V1NotMounted { path: entry.path.clone() });
        }
        let dir = find_dir(&entry.path, v1_mounts);
        found.v1_devices =
            Some(dir.ok_or_else(|| CgroupError::Unreachable { version: "v1 devices", path: entry.path.clone() })?);
    }

    let mut v2_mounts = mounts.iter().filter(|m| m.fs_type == "cgroup2").peekable();
    let v2_entry = cgroups.iter().find(|c| c.hierarchy == 0 && c.controllers.is_empty());
    if let (Some(entry), Some(_)) = (v2_entry, v2_mounts.peek()) {
        let dir = find_dir(&entry.path, v2_mounts);
        found.v2 = Some(dir.ok_or_else(|| CgroupError::Unreachable { version: "v2", path: entry.path.clone() })?);
    }

    if found == DeviceCgroups::default() {
        return Err(CgroupError::NoDeviceCgroup);
    }
    Ok(found)
}

/// Grant `rules` to the container whose init is `pid`, in every device cgroup it is in.
pub fn allow_devices(sys: &impl Sys, pid: i32, rules: &[DeviceRule]) -> Result<CgroupReport, CgroupError> {
    allow_devices_with(sys, pid, rules, |dir, root| allow_v2(sys, pid, dir, root, rules))
}

/// [`allow_devices`] with the v2 step passed in, so the rest is testable with a file-system fake alone.
fn allow_devices_with<S: FsOps>(
    sys: &S,
    pid: i32,
    rules: &[DeviceRule],
    v2_step: impl FnOnce(PathBuf, bool) -> Result<V2Step, CgroupError>,
) -> Result<CgroupReport, CgroupError> {
    if rules.is_empty() {
        return Ok(CgroupReport::default());
    }
    let read = |path: PathBuf| sys.read_file(&path).map_err(|source| CgroupError::Read { path, source });
    // The real /proc on purpose: cgroups are the kernel's view, never a test's fake driver root.
    let cgroups = parse_proc_cgroup(&read(PathBuf::from(format!("/proc/{pid}/cgroup")))?);
    // thread-self, not self: the namespace of the calling thread, which also resolves the paths below.
    let mounts = parse_mountinfo(&read(PathBuf::from("/proc/thread-self/mountinfo"))?);
    let found = locate(&cgroups, &mounts)?;

    let v1 = found.v1_devices.map(|dir| v1::allow(sys, &dir, rules)).transpose()?;
    // The root of a cgroup2 mount: the host's root cgroup, or a cgroup namespace's.
    let v2_root = |dir: &PathBuf| mounts.iter().any(|m| m.fs_type == "cgroup2" && m.mount_point == *dir);
    let v2 = match found.v2.map(|dir| {
        let root = v2_root(&dir);
        v2_step(dir, root)
    }) {
        // The v2 swap is atomic (old or new program); the v1 lines are taken back.
        Some(Err(error)) => match v1.as_ref().map(|v1| v1::deny(sys, v1)) {
            Some(Err(undo)) => return Err(CgroupError::Incomplete { error: Box::new(error), undo }),
            _ => return Err(error),
        },
        Some(Ok(step)) => Some(step),
        None => None,
    };
    Ok(CgroupReport { v1, v2 })
}

/// The one call into the v2 filter module, for the container whose init is
/// `pid` in the v2 cgroup `dir` (`root`: the root of its cgroup2 mount).
///
/// Finding 6: a device program applies to every process of its cgroup and of
/// the cgroups below it, so extending one is only exact when the cgroup is the
/// container's own. When a program is attached, the root cgroup is refused
/// outright and any other cgroup must hold nothing but the container's init.
/// At prestart runc and crun have moved exactly the init process there (the
/// runtime and the hook stay in their own cgroup), so a second process means a
/// shared cgroup (a misconfigured `cgroupsPath`, a runtime reusing its own
/// cgroup). `cgroup.procs` lists thread-group ids, so the init's threads do not
/// count. With no program attached nothing is changed, so nothing is refused:
/// on a hybrid host a v1 runtime may leave the container in the v2 root.
pub fn allow_v2(
    sys: &impl Sys,
    pid: i32,
    dir: PathBuf,
    root: bool,
    rules: &[DeviceRule],
) -> Result<V2Step, CgroupError> {
    let report = v2::allow_guarded(sys, &dir, rules, |programs| sole_member(sys, pid, &dir, root, programs))?;
    Ok(V2Step { dir, report })
}

/// Whether the v2 cgroup `dir` is the container's alone: not a root, and
/// `cgroup.procs` lists `pid` and nothing else. Unparsable lines count as others.
fn sole_member(sys: &impl FsOps, pid: i32, dir: &Path, root: bool, programs: &[u32]) -> Result<(), v2::V2Error> {
    let programs = programs.to_vec();
    if root {
        return Err(v2::V2Error::RootCgroup { dir: dir.into(), programs });
    }
    let path = dir.join("cgroup.procs");
    let procs = sys.read_file(&path).map_err(|source| v2::V2Error::ReadProcs { path, source })?;
    let pids: Vec<i32> = procs.split_whitespace().map(|p| p.parse().unwrap_or(-1)).collect();
    let others: Vec<i32> = pids.iter().copied().filter(|p| *p != pid).collect();
    if !others.is_empty() {
        return Err(v2::V2Error::SharedCgroup { dir: dir.into(), pid, others, programs });
    }
    if pids.is_empty() {
        return Err(v2::V2Error::NotMember { dir: dir.into(), pid, programs });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fake::fs::RecordingFs;

    /// This host: every v1 controller on its own hierarchy, cgroup2 at /sys/fs/cgroup/unified.
    const HYBRID_MOUNTS: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime shared:10 master:3 - cgroup cgroup rw,devices
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    /// The tests' "pure v2" namespace: cgroup2 over /sys/fs/cgroup, no v1 mounted.
    const PURE_V2_MOUNTS: &str = "\
23 1 0:21 / /sys rw,nosuid - sysfs sysfs rw
99 23 0:38 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw,nsdelegate
";
    /// crun's "legacy" namespace: the unified mount is gone.
    const V1_ONLY_MOUNTS: &str = "\
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
";

    fn no_v2(dir: PathBuf, _root: bool) -> Result<V2Step, CgroupError> {
        panic!("v2 step called for {}", dir.display())
    }

    fn locate_text(cgroup: &str, mountinfo: &str) -> Result<DeviceCgroups, CgroupError> {
        locate(&parse_proc_cgroup(cgroup), &parse_mountinfo(mountinfo))
    }

    fn dirs(v1: Option<&str>, v2: Option<&str>) -> DeviceCgroups {
        DeviceCgroups { v1_devices: v1.map(PathBuf::from), v2: v2.map(PathBuf::from) }
    }

    #[test]
    fn proc_cgroup_lines() {
        let parsed = parse_proc_cgroup("9:name=systemd:/a\n5:devices:/ctr\n3:cpu,cpuacct:/x:y\n0::/ctr\n");
        assert_eq!(
            parsed,
            [
                CgroupEntry { hierarchy: 9, controllers: vec!["name=systemd".into()], path: "/a".into() },
                CgroupEntry { hierarchy: 5, controllers: vec!["devices".into()], path: "/ctr".into() },
                CgroupEntry { hierarchy: 3, controllers: vec!["cpu".into(), "cpuacct".into()], path: "/x:y".into() },
                CgroupEntry { hierarchy: 0, controllers: vec![], path: "/ctr".into() },
            ]
        );
    }

    #[test]
    fn proc_cgroup_skips_malformed_lines() {
        let parsed = parse_proc_cgroup("garbage\nx:devices:/a\n5:devices\n5:devices:relative\n\n0::/ok\n");
        assert_eq!(parsed, [CgroupEntry { hierarchy: 0, controllers: vec![], path: "/ok".into() }]);
    }

    #[test]
    fn mountinfo_fields_with_and_without_optional_fields() {
        let m = parse_mountinfo(HYBRID_MOUNTS);
        assert_eq!(m.len(), 6);
        assert_eq!(
            m[3],
            Mount {
                root: "/".into(),
                mount_point: "/sys/fs/cgroup/devices".into(),
                fs_type: "cgroup".into(),
                super_options: vec!["rw".into(), "devices".into()],
            }
        );
        assert_eq!(m[5].fs_type, "cgroup2");
    }

    #[test]
    fn mountinfo_unescapes_octal() {
        let m = parse_mountinfo("1 2 0:1 /a\\040b /mnt/x\\040y\\011z\\134 rw - cgroup2 none rw\n");
        assert_eq!(m[0].root, Path::new("/a b"));
        assert_eq!(m[0].mount_point, Path::new("/mnt/x y\tz\\"));
        assert_eq!(unescape("\\04"), Path::new("\\04"));
        assert_eq!(unescape("a\\9999"), Path::new("a\\9999"));
    }

    #[test]
    fn mountinfo_skips_malformed_lines() {
        let text =
            "short line\n1 2 0:1 / /x rw no separator here\n1 2 0:1 / /x rw -\n1 2 0:1 / /ok rw - cgroup2 none rw\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.iter().map(|m| m.mount_point.clone()).collect::<Vec<_>>(), [PathBuf::from("/ok")]);
    }

    #[test]
    fn hybrid_host_with_v1_runtime_uses_both() {
        let cg = "9:name=systemd:/rtci-runc-1\n5:devices:/rtci-runc-1\n1:cpu:/rtci-runc-1\n0::/rtci-runc-1\n";
        assert_eq!(
            locate_text(cg, HYBRID_MOUNTS).unwrap(),
            dirs(Some("/sys/fs/cgroup/devices/rtci-runc-1"), Some("/sys/fs/cgroup/unified/rtci-runc-1"))
        );
    }

    #[test]
    fn pure_v2_namespace_ignores_the_v1_root() {
        let cg = "5:devices:/\n1:cpu:/\n0::/rtci-v2-1\n";
        assert_eq!(locate_text(cg, PURE_V2_MOUNTS).unwrap(), dirs(None, Some("/sys/fs/cgroup/rtci-v2-1")));
    }

    #[test]
    fn pure_v2_host() {
        let cg = "0::/system.slice/docker-abc.scope\n";
        assert_eq!(
            locate_text(cg, PURE_V2_MOUNTS).unwrap(),
            dirs(None, Some("/sys/fs/cgroup/system.slice/docker-abc.scope"))
        );
    }

    #[test]
    fn v1_only_namespace() {
        let cg = "5:devices:/rtci-crun-1\n4:freezer:/rtci-crun-1\n0::/rtci-crun-1\n";
        assert_eq!(locate_text(cg, V1_ONLY_MOUNTS).unwrap(), dirs(Some("/sys/fs/cgroup/devices/rtci-crun-1"), None));
    }

    #[test]
    fn root_cgroup_is_the_mount_point_itself() {
        let found = locate_text("0::/\n", PURE_V2_MOUNTS).unwrap();
        assert_eq!(found.v2.unwrap().as_os_str(), "/sys/fs/cgroup");
    }

    #[test]
    fn co_mounted_devices_controller() {
        let mounts = "36 31 0:33 / /sys/fs/cgroup/devices,freezer rw - cgroup cgroup rw,freezer,devices\n";
        let cg = "5:freezer,devices:/ctr\n";
        assert_eq!(locate_text(cg, mounts).unwrap(), dirs(Some("/sys/fs/cgroup/devices,freezer/ctr"), None));
    }

    #[test]
    fn cgroup_namespace_mount_root_is_stripped() {
        let mounts = "\
36 31 0:33 /docker/abc /sys/fs/cgroup/devices rw - cgroup cgroup rw,devices
41 31 0:38 /docker/abc /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
";
        let cg = "5:devices:/docker/abc/inner\n0::/docker/abc/inner\n";
        assert_eq!(
            locate_text(cg, mounts).unwrap(),
            dirs(Some("/sys/fs/cgroup/devices/inner"), Some("/sys/fs/cgroup/unified/inner"))
        );
    }

    #[test]
    fn first_mount_that_contains_the_cgroup_wins() {
        let mounts = "\
36 31 0:33 /other /mnt/a rw - cgroup cgroup rw,devices
37 31 0:33 / /sys/fs/cgroup/devices rw - cgroup cgroup rw,devices
";
        assert_eq!(locate_text("5:devices:/ctr\n", mounts).unwrap(), dirs(Some("/sys/fs/cgroup/devices/ctr"), None));
    }

    #[test]
    fn cgroup_outside_our_namespace_is_unreachable() {
        let e = locate_text("5:devices:/../../ctr\n", HYBRID_MOUNTS).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the container's v1 devices cgroup /../../ctr is not below any mounted v1 devices hierarchy here"
        );
        let e = locate_text("0::/../ctr\n", PURE_V2_MOUNTS).unwrap_err();
        assert_eq!(e.to_string(), "the container's v2 cgroup /../ctr is not below any mounted v2 hierarchy here");
    }

    #[test]
    fn v1_devices_cgroup_without_its_hierarchy_fails_closed() {
        let e = locate_text("5:devices:/ctr\n0::/ctr\n", PURE_V2_MOUNTS).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the container is in v1 devices cgroup /ctr but no cgroup v1 devices hierarchy is mounted here"
        );
    }

    #[test]
    fn no_device_cgroup_fails_closed() {
        assert!(matches!(locate_text("5:devices:/\n0::/ctr\n", V1_ONLY_MOUNTS), Err(CgroupError::NoDeviceCgroup)));
        assert!(matches!(locate_text("", HYBRID_MOUNTS), Err(CgroupError::NoDeviceCgroup)));
        assert!(matches!(locate_text("5:devices:/ctr\n", ""), Err(CgroupError::V1NotMounted { .. })));
    }

    #[test]
    fn allow_devices_reads_the_real_proc_and_writes_v1() {
        let fs = RecordingFs::new()
            .file("/proc/42/cgroup", "5:devices:/ctr\n0::/ctr\n")
            .file("/proc/thread-self/mountinfo", V1_ONLY_MOUNTS)
            .file("/sys/fs/cgroup/devices/ctr/devices.allow", "");
        let r = allow_devices_with(&fs, 42, &[DeviceRule::allow_rw(195, 0), DeviceRule::allow_rw(195, 255)], no_v2)
            .unwrap();
        assert_eq!(
            fs.calls(),
            [
                "read /proc/42/cgroup",
                "read /proc/thread-self/mountinfo",
                "append /sys/fs/cgroup/devices/ctr/devices.allow c 195:0 rw",
                "append /sys/fs/cgroup/devices/ctr/devices.allow c 195:255 rw",
            ]
        );
        assert_eq!(r.v1.unwrap().lines, ["c 195:0 rw", "c 195:255 rw"]);
        assert_eq!(r.v2, None);
    }

    #[test]
    fn hybrid_host_writes_v1_then_hands_the_v2_dir_to_the_filter() {
        let fs = RecordingFs::new()
            .file("/proc/42/cgroup", "5:devices:/ctr\n0::/ctr\n")
            .file("/proc/thread-self/mountinfo", HYBRID_MOUNTS)
            .file("/sys/fs/cgroup/devices/ctr/devices.allow", "");
        let r = allow_devices_with(&fs, 42, &[DeviceRule::allow_rw(195, 0)], |dir, _| {
            assert_eq!(fs.changes(), ["append /sys/fs/cgroup/devices/ctr/devices.allow c 195:0 rw"]);
            Ok(V2Step { dir, report: v2::V2Report::NoFilterAttached { ancestor_programs: vec![] } })
        })
        .unwrap();
        assert_eq!(r.v2.unwrap().dir, Path::new("/sys/fs/cgroup/unified/ctr"));
    }

    #[test]
    fn allow_devices_with_no_rules_reads_nothing() {
        let fs = RecordingFs::new();
        assert_eq!(allow_devices_with(&fs, 42, &[], no_v2).unwrap(), CgroupReport::default());
        assert!(fs.calls().is_empty());
    }

    #[test]
    fn unreadable_proc_is_one_clear_line() {
        let e = allow_devices_with(&RecordingFs::new(), 42, &[DeviceRule::allow_rw(195, 0)], no_v2).unwrap_err();
        assert!(e.to_string().starts_with("cannot read /proc/42/cgroup: "), "{e}");
    }

    #[test]
    fn real_process_in_a_v1_devices_cgroup() {
        if !crate::sys::fake::fs::root_or_skip("real_process_in_a_v1_devices_cgroup") {
            return;
        }
        let Some(cg) = v1::tests::TestCgroup::new("locate") else { return };
        let mut child = std::process::Command::new("sleep").arg("60").spawn().unwrap();
        std::fs::write(cg.0.join("cgroup.procs"), child.id().to_string()).unwrap();
        let mut v2_dir = None;
        let r =
            allow_devices_with(&crate::sys::LinuxSys, child.id() as i32, &[DeviceRule::allow_rw(195, 3)], |dir, _| {
                v2_dir = Some(dir.clone());
                Ok(V2Step { dir, report: v2::V2Report::NoFilterAttached { ancestor_programs: vec![] } })
            });
        let _ = child.kill();
        let _ = child.wait();
        let r = r.unwrap();
        assert_eq!(r.v1.unwrap().allow_file, cg.0.join("devices.allow"));
        assert_eq!(cg.list(), "c 195:3 rw\n");
        // The v2 step gets the child's v2 cgroup if a cgroup2 hierarchy is mounted here.
        let mounted_v2 = parse_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo").unwrap())
            .iter()
            .any(|m| m.fs_type == "cgroup2");
        assert_eq!(v2_dir.is_some(), mounted_v2);
    }

    #[test]
    fn real_pure_v2_namespace_skips_the_v1_root() {
        if !crate::sys::fake::fs::root_or_skip("real_pure_v2_namespace_skips_the_v1_root") {
            return;
        }
        use nix::mount::{MntFlags, MsFlags, mount, umount2};
        let mut child = std::process::Command::new("sleep").arg("60").spawn().unwrap();
        let pid = child.id() as i32;
        let own = parse_proc_cgroup(&std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap());
        // The test's "pure v2" layout, on a thread of its own: cgroup2 over /sys/fs/cgroup, no v1 mounted.
        let result = std::thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).unwrap();
            mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>).unwrap();
            umount2("/sys/fs/cgroup", MntFlags::MNT_DETACH).unwrap();
            mount(Some("cgroup2"), "/sys/fs/cgroup", Some("cgroup2"), MsFlags::empty(), None::<&str>).unwrap();
            let mut seen = None;
            let r = allow_devices_with(&crate::sys::LinuxSys, pid, &[DeviceRule::allow_rw(195, 0)], |dir, _| {
                seen = Some(dir.clone());
                Ok(V2Step { dir, report: v2::V2Report::NoFilterAttached { ancestor_programs: vec![] } })
            });
            (r.map(|r| r.v1), seen)
        })
        .join();
        let _ = child.kill();
        let _ = child.wait();
        let (v1, seen) = result.unwrap();
        let v2_path = &own.iter().find(|c| c.hierarchy == 0).unwrap().path;
        let v1_root = own.iter().any(|c| c.controllers.iter().any(|x| x == "devices") && c.path == "/");
        if !v1_root {
            // Outside the v1 root there is no devices hierarchy to reach in this layout: fail closed.
            assert!(matches!(v1, Err(CgroupError::V1NotMounted { .. })), "{v1:?}");
            return;
        }
        assert_eq!(v1.unwrap(), None);
        assert_eq!(seen.unwrap(), Path::new("/sys/fs/cgroup").join(v2_path.trim_start_matches('/')));
    }

    // ---- Finding 6: only the container's own v2 cgroup is extended ----

    const V2_DIR: &str = "/sys/fs/cgroup/ctr";

    fn sole(fs: &RecordingFs, root: bool) -> Result<(), v2::V2Error> {
        sole_member(fs, 42, Path::new(V2_DIR), root, &[7])
    }

    #[test]
    fn the_root_cgroup_is_refused_without_reading_anything() {
        let fs = RecordingFs::new().file(&format!("{V2_DIR}/cgroup.procs"), "42\n");
        let e = sole(&fs, true).unwrap_err();
        assert_eq!(
            e.to_string(),
            "refusing to change device program(s) [7] of cgroup /sys/fs/cgroup/ctr: it is the root of the cgroup2 hierarchy, and its program applies to every process below it"
        );
        assert!(fs.calls().is_empty());
    }

    #[test]
    fn a_cgroup_with_another_process_is_refused_naming_it() {
        let fs = RecordingFs::new().file(&format!("{V2_DIR}/cgroup.procs"), "42\n4242\n");
        let e = sole(&fs, false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "refusing to change device program(s) [7] of cgroup /sys/fs/cgroup/ctr: it holds processes [4242] besides the container's init 42, which would get the devices too"
        );
        // Garbage counts as someone else: fail closed.
        let fs = RecordingFs::new().file(&format!("{V2_DIR}/cgroup.procs"), "42\nx\n");
        assert!(matches!(sole(&fs, false), Err(v2::V2Error::SharedCgroup { .. })));
    }

    #[test]
    fn a_cgroup_without_the_init_or_unreadable_is_refused() {
        let fs = RecordingFs::new().file(&format!("{V2_DIR}/cgroup.procs"), "");
        assert!(matches!(sole(&fs, false), Err(v2::V2Error::NotMember { pid: 42, .. })));
        let e = sole(&RecordingFs::new(), false).unwrap_err();
        assert!(e.to_string().starts_with("cannot read /sys/fs/cgroup/ctr/cgroup.procs: "), "{e}");
    }

    #[test]
    fn the_init_alone_passes() {
        let fs = RecordingFs::new().file(&format!("{V2_DIR}/cgroup.procs"), "42\n");
        sole(&fs, false).unwrap();
        assert_eq!(fs.calls(), ["read /sys/fs/cgroup/ctr/cgroup.procs"]);
    }

    #[test]
    fn the_v2_step_is_told_when_the_cgroup_is_a_mount_root() {
        let fs = RecordingFs::new()
            .file("/proc/42/cgroup", "5:devices:/\n0::/\n")
            .file("/proc/thread-self/mountinfo", PURE_V2_MOUNTS);
        let mut seen = None;
        allow_devices_with(&fs, 42, &[DeviceRule::allow_rw(195, 0)], |dir, root| {
            seen = Some((dir.clone(), root));
            Ok(V2Step { dir, report: v2::V2Report::NoFilterAttached { ancestor_programs: vec![] } })
        })
        .unwrap();
        assert_eq!(seen, Some((PathBuf::from("/sys/fs/cgroup"), true)));
        let fs =
            RecordingFs::new().file("/proc/42/cgroup", "0::/ctr\n").file("/proc/thread-self/mountinfo", PURE_V2_MOUNTS);
        allow_devices_with(&fs, 42, &[DeviceRule::allow_rw(195, 0)], |dir, root| {
            assert!(!root);
            Ok(V2Step { dir, report: v2::V2Report::NoFilterAttached { ancestor_programs: vec![] } })
        })
        .unwrap();
    }

    // ---- rollback: a failed v2 step takes the v1 lines back ----

    #[test]
    fn a_failed_v2_step_denies_exactly_the_v1_lines_written() {
        let fs = RecordingFs::new()
            .file("/proc/42/cgroup", "5:devices:/ctr\n0::/ctr\n")
            .file("/proc/thread-self/mountinfo", HYBRID_MOUNTS)
            .file("/sys/fs/cgroup/devices/ctr/devices.allow", "")
            .file("/sys/fs/cgroup/devices/ctr/devices.deny", "");
        let rules = [DeviceRule::allow_rw(195, 0), DeviceRule::allow_rw(195, 255)];
        let e = allow_devices_with(&fs, 42, &rules, |dir, _| {
            Err(v2::V2Error::SharedCgroup { dir, pid: 42, others: vec![7], programs: vec![3] }.into())
        })
        .unwrap_err();
        assert!(matches!(e, CgroupError::V2(v2::V2Error::SharedCgroup { .. })), "{e}");
        assert_eq!(
            fs.changes(),
            [
                "append /sys/fs/cgroup/devices/ctr/devices.allow c 195:0 rw",
                "append /sys/fs/cgroup/devices/ctr/devices.allow c 195:255 rw",
                "append /sys/fs/cgroup/devices/ctr/devices.deny c 195:0 rw",
                "append /sys/fs/cgroup/devices/ctr/devices.deny c 195:255 rw",
            ]
        );
    }

    #[test]
    fn a_deny_that_fails_is_named_with_the_error() {
        let fs = RecordingFs::new()
            .file("/proc/42/cgroup", "5:devices:/ctr\n0::/ctr\n")
            .file("/proc/thread-self/mountinfo", HYBRID_MOUNTS)
            .file("/sys/fs/cgroup/devices/ctr/devices.allow", "");
        let e = allow_devices_with(&fs, 42, &[DeviceRule::allow_rw(195, 0)], |dir, _| {
            Err(v2::V2Error::RootCgroup { dir, programs: vec![3] }.into())
        })
        .unwrap_err();
        assert!(matches!(e, CgroupError::Incomplete { .. }), "{e}");
        assert!(
            e.to_string().contains(
                "; taking back the v1 lines: cannot write \"c 195:0 rw\" to /sys/fs/cgroup/devices/ctr/devices.deny"
            ),
            "{e}"
        );
    }
}
