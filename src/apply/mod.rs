//! Applier: puts [`crate::edits::ContainerEdits`] into a live container (prestart hook path).
//!
//! Three steps, in this order: the device nodes go into the container's root
//! ([`rootfs`], from inside its mount namespace), then the driver's user-space
//! files, links and loader cache ([`driver_files`], likewise), then the device
//! cgroup rules are granted ([`cgroup`], v1 and/or v2). All fail closed: the
//! first error stops the hook, and the runtime then refuses to start the container.
//! A failed start leaves nothing behind: each step undoes its own partial
//! work, and a later step's failure undoes the earlier steps' changes in
//! reverse order from inside the container's mount namespace ([`undo`]); the
//! cgroup step takes back its own v1 lines (`devices.deny`) and its v2 swap is
//! atomic. What a step *replaced* cannot be brought back (see docs/SECURITY.md).
//! Environment edits are not applied here; at prestart the process's
//! environment is already fixed, so only the shim and CDI paths can set it.

pub mod cgroup;
pub mod cuda_compat;
pub mod driver_files;
pub mod proc_driver;
pub mod rootfs;
pub mod undo;

use std::fmt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::edits::ContainerEdits;
use crate::sys::{FsOps, Sys};

/// mighook's own host directory: the loader-cache file lives here between its
/// write and its bind mount (then it is unlinked).
pub const STATE_DIR: &str = "/run/mighook";

/// Runs `f` on a thread of its own that first joins the mount namespace of `pid`
/// (`None`: stays in the caller's), so the namespace change dies with the thread and
/// the hook's other threads stay on the host. `Err` when joining failed, `None`
/// when the thread panicked.
pub(crate) fn in_mount_ns<S: crate::sys::FsOps, T: Send>(
    sys: &S,
    pid: Option<i32>,
    f: impl FnOnce() -> T + Send,
) -> Option<std::io::Result<T>> {
    std::thread::scope(|s| {
        let worker = s.spawn(move || {
            if let Some(pid) = pid {
                sys.enter_mount_ns(pid)?;
            }
            Ok(f())
        });
        worker.join().ok()
    })
}

/// [`STATE_DIR`], made (mode 0700) when missing.
pub fn state_dir() -> Result<&'static Path, ApplyError> {
    let dir = Path::new(STATE_DIR);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| ApplyError::StateDir { path: dir.into(), source })?;
    Ok(dir)
}

/// The live container to apply to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The container's init process (from the OCI state).
    pub pid: i32,
    /// Absolute host path of `root.path` as the runtime sees it (bundle-joined).
    pub rootfs: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Rootfs(#[from] rootfs::RootfsError),
    #[error(transparent)]
    DriverFiles(#[from] driver_files::InjectError),
    #[error("cannot create mighook's own directory {}: {source}", path.display())]
    StateDir { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    ProcMask(#[from] proc_driver::ProcMaskError),
    #[error("cannot enter the mount namespace of pid {pid} for {}: {source}", crate::proc_driver::PROC_DRIVER_NVIDIA)]
    ProcNamespace { pid: i32, source: std::io::Error },
    #[error(transparent)]
    Cgroup(#[from] cgroup::CgroupError),
    #[error("{error}; rolling back left behind: {}", left.join("; "))]
    Incomplete { error: Box<ApplyError>, left: Vec<String> },
}

/// Everything that was created, kept, replaced, bind-mounted or written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    pub nodes: Vec<rootfs::NodeReport>,
    pub driver_files: driver_files::InjectReport,
    pub proc_driver: proc_driver::ProcMaskReport,
    pub cgroup: cgroup::CgroupReport,
}

impl fmt::Display for ApplyReport {
    /// One line per change, for the hook's log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for node in &self.nodes {
            writeln!(f, "{node}")?;
        }
        for line in &self.driver_files.lines {
            writeln!(f, "{line}")?;
        }
        for line in &self.proc_driver.lines {
            writeln!(f, "{line}")?;
        }
        if let Some(v1) = &self.cgroup.v1 {
            for line in &v1.lines {
                writeln!(f, "cgroup v1: wrote {line:?} to {}", v1.allow_file.display())?;
            }
        }
        if let Some(v2) = &self.cgroup.v2 {
            writeln!(f, "cgroup v2 {}: {}", v2.dir.display(), v2.report)?;
        }
        Ok(())
    }
}

/// The container's `/proc/driver/nvidia` mask and the host directory its mounts come from.
#[derive(Debug, Clone, Copy)]
pub struct ProcTarget<'a> {
    pub mask: &'a crate::proc_driver::ProcMask,
    /// The host's `/proc/driver/nvidia` (under the settings' proc root).
    pub host_dir: &'a Path,
}

/// Give the live container `target` its device nodes and device cgroup rules.
/// `host_dev_root` (normally `/dev`) is where the host nodes are for the
/// bind-mount fallback.
pub fn apply(
    sys: &impl Sys,
    target: &Target,
    edits: &ContainerEdits,
    host_dev_root: &Path,
) -> Result<ApplyReport, ApplyError> {
    apply_masked(sys, target, edits, host_dev_root, None)
}

/// [`apply`], with the container's `/proc/driver/nvidia` masked after the driver files.
pub fn apply_masked(
    sys: &impl Sys,
    target: &Target,
    edits: &ContainerEdits,
    host_dev_root: &Path,
    proc: Option<ProcTarget<'_>>,
) -> Result<ApplyReport, ApplyError> {
    apply_with(sys, target, edits, host_dev_root, proc, state_dir, || {
        cgroup::allow_devices(sys, target.pid, &edits.device_rules)
    })
}

/// [`apply`] with the loader-cache dir and the cgroup step passed in, so the
/// order and the rollback are testable with the file-system fake alone.
fn apply_with<'d, S: FsOps>(
    sys: &S,
    target: &Target,
    edits: &ContainerEdits,
    host_dev_root: &Path,
    proc: Option<ProcTarget<'_>>,
    cache_dir: impl FnOnce() -> Result<&'d Path, ApplyError>,
    cgroup_step: impl FnOnce() -> Result<cgroup::CgroupReport, cgroup::CgroupError>,
) -> Result<ApplyReport, ApplyError> {
    // Each step undoes its own partial work on an error; what the earlier steps
    // made (in order) is undone here when a later one fails.
    let (nodes, mut made) =
        rootfs::create_nodes_recorded(sys, target.pid, &target.rootfs, &edits.device_nodes, host_dev_root)?;
    let roll_back =
        |error: ApplyError, made: &[undo::Made]| match undo::undo(sys, Some(target.pid), &target.rootfs, made) {
            left if left.is_empty() => error,
            left => ApplyError::Incomplete { error: Box::new(error), left },
        };
    let driver_files = match &edits.driver_files {
        Some(files) => {
            match cache_dir().and_then(|dir| Ok(driver_files::inject(sys, target.pid, &target.rootfs, files, dir)?)) {
                Ok(report) => report,
                Err(e) => return Err(roll_back(e, &made)),
            }
        }
        None => driver_files::InjectReport::default(),
    };
    made.extend(driver_files.made.iter().cloned());
    let proc_driver = match proc {
        Some(p) => match proc_driver::mask(sys, target.pid, &target.rootfs, p.host_dir, p.mask) {
            Ok((report, proc_made)) => {
                made.extend(proc_made);
                report
            }
            Err(e) => return Err(roll_back(e, &made)),
        },
        None => proc_driver::ProcMaskReport::default(),
    };
    let cgroup = match cgroup_step() {
        Ok(cgroup) => cgroup,
        Err(e) => return Err(roll_back(e.into(), &made)),
    };
    Ok(ApplyReport { nodes, driver_files, proc_driver, cgroup })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edits::DeviceNode;
    use crate::sys::LinuxSys;
    use crate::sys::fake::fs::root_or_skip;
    use cgroup::v1::tests::TestCgroup;
    use rootfs::kernel_tests::{Container, describe, entries};

    fn edits() -> ContainerEdits {
        let node = |path: &str, minor| DeviceNode::root_char(path, 195, minor, 0o666);
        ContainerEdits::from_nodes([node("/dev/nvidiactl", 255), node("/dev/nvidia1", 1)], vec![])
    }

    /// A root with `/dev` and `/usr`, the host's nvidia-smi, mighook's state dir.
    fn fake() -> crate::sys::fake::fs::RecordingFs {
        crate::sys::fake::fs::RecordingFs::new()
            .dir("/b/rootfs/dev")
            .dir("/b/rootfs/usr")
            .dir("/run/mighook")
            .file("/driver/bin/nvidia-smi", "smi")
    }

    fn with_files(mut e: ContainerEdits) -> ContainerEdits {
        use crate::driver_files::{DriverFiles, HostFile, MountKind};
        let smi = HostFile {
            host_path: "/driver/bin/nvidia-smi".into(),
            container_path: "/usr/bin/nvidia-smi".into(),
            kind: MountKind::Binary,
        };
        e.driver_files = Some(DriverFiles {
            root: "/driver".into(),
            version: "550.54.15".into(),
            libraries: vec![],
            files: vec![smi],
            missing: vec![],
            cuda_compat: false,
        });
        e
    }

    fn run_fake(
        fs: &crate::sys::fake::fs::RecordingFs,
        edits: &ContainerEdits,
        cgroup_step: impl FnOnce() -> Result<cgroup::CgroupReport, cgroup::CgroupError>,
    ) -> Result<ApplyReport, ApplyError> {
        let target = Target { pid: 42, rootfs: "/b/rootfs".into() };
        apply_with(fs, &target, edits, Path::new("/dev"), None, || Ok(Path::new("/run/mighook")), cgroup_step)
    }

    fn v1_refused() -> Result<cgroup::CgroupReport, cgroup::CgroupError> {
        let source = std::io::Error::from_raw_os_error(libc::EPERM);
        Err(cgroup::v1::V1Error::Write { file: "/x/devices.allow".into(), line: "c 195:1 rw".into(), source }.into())
    }

    #[test]
    fn a_failed_cgroup_step_undoes_the_files_then_the_nodes_from_the_namespace() {
        let fs = fake();
        let before = fs.snapshot();
        let e = run_fake(&fs, &with_files(edits()), v1_refused).unwrap_err();
        assert!(matches!(e, ApplyError::Cgroup(_)), "{e}");
        let changes = fs.changes();
        let undo_at = changes.iter().rposition(|c| c == "setns /proc/42/ns/mnt").unwrap();
        assert_eq!(
            changes[undo_at..],
            [
                "setns /proc/42/ns/mnt",
                "umount /b/rootfs/usr/bin/nvidia-smi",
                "unlink /b/rootfs/usr/bin/nvidia-smi",
                "rmdir /b/rootfs/usr/bin",
                "unlink /b/rootfs/dev/nvidiactl",
                "unlink /b/rootfs/dev/nvidia1",
            ]
        );
        assert_eq!(fs.snapshot(), before);
    }

    fn proc_mask() -> crate::proc_driver::ProcMask {
        crate::proc_driver::ProcMask {
            files: vec![crate::proc_driver::ProcFile { name: "params", content: b"x\n".to_vec(), mode: 0o444 }],
            binds: vec![crate::proc_driver::ProcBind { rel: "gpus/0000:07:00.0".into(), dir: true }],
            skipped: vec![],
        }
    }

    #[test]
    fn a_failed_cgroup_step_detaches_the_proc_mask_too() {
        let fs = fake()
            .dir("/b/rootfs/proc/driver/nvidia/gpus/0000:0f:00.0")
            .fs_magic("/b/rootfs/proc", libc::PROC_SUPER_MAGIC)
            .dir("/host/nvidia/gpus/0000:07:00.0");
        let before = fs.snapshot();
        let mask = proc_mask();
        let proc = ProcTarget { mask: &mask, host_dir: Path::new("/host/nvidia") };
        let target = Target { pid: 42, rootfs: "/b/rootfs".into() };
        let e = apply_with(
            &fs,
            &target,
            &edits(),
            Path::new("/dev"),
            Some(proc),
            || Ok(Path::new("/run/mighook")),
            v1_refused,
        )
        .unwrap_err();
        assert!(matches!(e, ApplyError::Cgroup(_)), "{e}");
        let changes = fs.changes();
        let undo_at = changes.iter().rposition(|c| c == "setns /proc/42/ns/mnt").unwrap();
        assert_eq!(changes[undo_at + 1], "umount /b/rootfs/proc/driver/nvidia");
        assert_eq!(fs.snapshot(), before);
    }

    #[test]
    fn a_successful_start_reports_the_proc_mask() {
        let fs = fake()
            .dir("/b/rootfs/proc/driver/nvidia")
            .fs_magic("/b/rootfs/proc", libc::PROC_SUPER_MAGIC)
            .dir("/host/nvidia/gpus/0000:07:00.0");
        let mask = proc_mask();
        let proc = ProcTarget { mask: &mask, host_dir: Path::new("/host/nvidia") };
        let target = Target { pid: 42, rootfs: "/b/rootfs".into() };
        let ok = || Ok(cgroup::CgroupReport::default());
        let report =
            apply_with(&fs, &target, &edits(), Path::new("/dev"), Some(proc), || Ok(Path::new("/run/mighook")), ok)
                .unwrap();
        assert!(report.proc_driver.masked);
        assert!(report.to_string().contains("mounted a tmpfs over /proc/driver/nvidia"), "{report}");
        assert_eq!(fs.describe("/b/rootfs/proc/driver/nvidia/params").unwrap(), "file \"x\\n\"");
    }

    #[test]
    fn a_failed_driver_file_undoes_the_nodes() {
        let fs = fake().fail("bind", "/driver/bin/nvidia-smi", libc::EIO);
        let before = fs.snapshot();
        let e = run_fake(&fs, &with_files(edits()), || panic!("cgroup step after a failure")).unwrap_err();
        assert!(matches!(e, ApplyError::DriverFiles(driver_files::InjectError::Mount { .. })), "{e}");
        assert_eq!(fs.changes().last().unwrap(), "unlink /b/rootfs/dev/nvidia1");
        assert_eq!(fs.snapshot(), before);
    }

    #[test]
    fn a_successful_start_undoes_nothing() {
        let fs = fake();
        run_fake(&fs, &with_files(edits()), || Ok(cgroup::CgroupReport::default())).unwrap();
        assert!(!fs.changes().iter().any(|c| c.starts_with("umount") || c.starts_with("unlink")), "{:?}", fs.changes());
        assert!(fs.describe("/b/rootfs/usr/bin/nvidia-smi").unwrap().ends_with("(mount)"));
    }

    #[test]
    fn empty_edits_touch_nothing() {
        let r = apply(
            &LinuxSys,
            &Target { pid: -1, rootfs: "/nonexistent".into() },
            &ContainerEdits::default(),
            Path::new("/dev"),
        );
        assert_eq!(r.unwrap(), ApplyReport::default());
    }

    #[test]
    fn live_container_gets_nodes_in_its_namespace_and_rules_in_its_cgroup() {
        if !root_or_skip("live_container_gets_nodes_in_its_namespace_and_rules_in_its_cgroup") {
            return;
        }
        let Some(cg) = TestCgroup::new("apply") else { return };
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("dev")).unwrap();
        let ctr = Container::start(t.path());
        std::fs::write(cg.0.join("cgroup.procs"), ctr.pid().to_string()).unwrap();

        let target = Target { pid: ctr.pid(), rootfs: t.path().into() };
        let report = apply(&LinuxSys, &target, &edits(), Path::new("/dev")).unwrap();

        assert_eq!(describe(&ctr.view(t.path(), "dev/nvidia1")), "c 195:1 0666 0:0");
        assert_eq!(describe(&ctr.view(t.path(), "dev/nvidiactl")), "c 195:255 0666 0:0");
        assert_eq!(entries(&t.path().join("dev")), Vec::<String>::new());
        assert_eq!(cg.list(), "c 195:1 rw\nc 195:255 rw\n");
        let log = report.to_string();
        assert!(log.starts_with("created /dev/nvidia1 (c 195:1)\ncreated /dev/nvidiactl (c 195:255)\n"), "{log}");
        assert!(log.contains(&format!("cgroup v1: wrote \"c 195:1 rw\" to {}/devices.allow", cg.0.display())), "{log}");
        // On a hybrid host the container is also in a v2 cgroup, which goes to the v2 filter.
        let v2_mounted = std::fs::read_to_string("/proc/self/mountinfo").unwrap().contains(" - cgroup2 ");
        assert_eq!(report.cgroup.v2.is_some(), v2_mounted, "{log}");
    }
}
