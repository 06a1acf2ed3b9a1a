//! The hook's `/proc/driver/nvidia` mask ([`crate::proc_driver`]) in a live container.
//!
//! runc runs prestart hooks after it mounted the container's `/proc` (in
//! `prepareRootfs`, before `pivot_root`), so from the container's mount namespace
//! the container's procfs is at `<rootfs>/proc`. Its `driver/nvidia` exists when
//! the host has an NVIDIA driver loaded; where it does not, nothing is done (a
//! debug line says so). A `<rootfs>/proc` that is not a procfs mount (a runtime
//! that mounts it after the prestart hooks) is left alone with a warning: the
//! mask would end up under that mount. Otherwise a tmpfs (0555, nodev, nosuid, noexec) goes over
//! it, the plan's files are written into it, and the plan's host entries are
//! bind-mounted read-only (nodev, nosuid, noexec) onto mount points made in it.
//! The host sources are opened and checked before anything is mounted. On any
//! error the tmpfs is detached again, which takes everything in it along; the
//! caller's rollback does the same for a later step's error ([`super::undo::Made::Mount`]).

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};

use super::undo::Made;
use crate::proc_driver::{PROC_DRIVER_NVIDIA, ProcMask, TMPFS_MODE};
use crate::sys::FsOps;
use crate::sys::fs::{FileKind, MountAttrs};

#[derive(Debug, thiserror::Error)]
pub enum ProcMaskError {
    #[error("cannot inspect {path} in the container: {source}")]
    Inspect { path: String, source: io::Error },
    #[error("{path} in the container is {found}, not a directory: refusing to mount over it")]
    NotADir { path: String, found: &'static str },
    #[error("host {}: {reason}", host.display())]
    Source { host: PathBuf, reason: String },
    #[error("cannot mount a tmpfs over {PROC_DRIVER_NVIDIA} in the container: {source}")]
    Tmpfs { source: io::Error },
    #[error("cannot make {path} in the container's {PROC_DRIVER_NVIDIA}: {source}")]
    Make { path: String, source: io::Error },
    #[error("cannot bind-mount {} onto {path} in the container: {source}", host.display())]
    Mount { host: PathBuf, path: String, source: io::Error },
}

/// What was done, for the hook's log; `masked` is false when the container has no
/// `/proc/driver/nvidia` to mask, and `warning` then says why when that is not
/// what a container with a procfs would show (the host has the driver).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcMaskReport {
    pub masked: bool,
    pub lines: Vec<String>,
    pub warning: Option<String>,
}

const RO: MountAttrs = MountAttrs { read_only: true, nosuid: true, nodev: true, noexec: true, recursive: false };
const TMPFS_ATTRS: MountAttrs =
    MountAttrs { read_only: false, nosuid: true, nodev: true, noexec: true, recursive: false };

/// Masks the container's `/proc/driver/nvidia` in `root` (as this thread's mount
/// namespace sees it) with `mask`, whose host entries are under `host_dir`.
pub fn mask_in_root<S: FsOps>(
    sys: &S,
    root: &S::Fd,
    host_dir: &Path,
    mask: &ProcMask,
    made: &mut Vec<Made>,
) -> Result<ProcMaskReport, ProcMaskError> {
    let inspect = |path: &str| {
        let path = path.to_string();
        move |source| ProcMaskError::Inspect { path, source }
    };
    // The callers come here only when the host has the driver, so a procfs at the
    // container's /proc shows driver/nvidia; anything else there is a runtime that
    // mounts /proc after the prestart hooks: the mask would be hidden, so it is not
    // applied, and the start goes on with a warning rather than silently.
    let unmasked = |why: String| {
        let warning = format!("the container's /proc/driver/nvidia was not masked: {why}");
        Ok(ProcMaskReport { warning: Some(warning), ..ProcMaskReport::default() })
    };
    let proc = match sys.open_dir_in_root(root, Path::new("proc")) {
        Ok(dir) => dir,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            return unmasked("it has no /proc at prestart (the runtime mounts it later)".into());
        }
        Err(e) => return Err(inspect("/proc")(e)),
    };
    match sys.fs_magic(&proc).map_err(inspect("/proc"))? {
        libc::PROC_SUPER_MAGIC => {}
        magic => {
            return unmasked(format!(
                "its /proc is not a procfs mount at prestart (file system type {magic:#x}; the runtime mounts it later)"
            ));
        }
    }
    let proc_driver = match sys.open_dir_in_root(root, Path::new("proc/driver")) {
        Ok(dir) => dir,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(ProcMaskReport::default()),
        Err(e) => return Err(inspect("/proc/driver")(e)),
    };
    match sys.stat_at(&proc_driver, OsStr::new("nvidia")).map_err(inspect(PROC_DRIVER_NVIDIA))? {
        None => return Ok(ProcMaskReport::default()),
        Some(st) if st.kind == FileKind::Dir => {}
        Some(st) => return Err(ProcMaskError::NotADir { path: PROC_DRIVER_NVIDIA.into(), found: st.kind.describe() }),
    }
    // Every source is opened and checked before the first mount.
    let mut sources = Vec::with_capacity(mask.binds.len());
    for bind in &mask.binds {
        let host = host_dir.join(&bind.rel);
        let err = |reason: String| ProcMaskError::Source { host: host.clone(), reason };
        let fd = sys.open_nofollow(&host).map_err(|e| err(e.to_string()))?;
        let kind = sys.fstat(&fd).map_err(|e| err(e.to_string()))?.kind;
        let wanted = if bind.dir { FileKind::Dir } else { FileKind::Regular };
        if kind != wanted {
            return Err(err(format!("is {}, expected {}", kind.describe(), wanted.describe())));
        }
        sources.push((bind, host, fd));
    }
    let dst = sys.open_at_nofollow(&proc_driver, OsStr::new("nvidia")).map_err(inspect(PROC_DRIVER_NVIDIA))?;
    sys.mount_tmpfs(&dst, TMPFS_MODE, TMPFS_ATTRS).map_err(|source| ProcMaskError::Tmpfs { source })?;
    let mut lines = vec![format!("mounted a tmpfs over {PROC_DRIVER_NVIDIA} ({TMPFS_ATTRS}, mode {TMPFS_MODE:04o})")];
    match fill(sys, root, mask, &sources, &mut lines) {
        Ok(()) => {
            made.push(Made::Mount(PROC_DRIVER_NVIDIA.into()));
            Ok(ProcMaskReport { masked: true, lines, warning: None })
        }
        Err(e) => {
            // Detaching the tmpfs takes the files and mounts made in it along.
            let _ = sys.unmount_at(&proc_driver, OsStr::new("nvidia"));
            Err(e)
        }
    }
}

/// [`mask_in_root`] from a thread in the mount namespace of `pid`.
pub fn mask<S: FsOps>(
    sys: &S,
    pid: i32,
    rootfs: &Path,
    host_dir: &Path,
    mask: &ProcMask,
) -> Result<(ProcMaskReport, Vec<Made>), super::ApplyError> {
    let run = super::in_mount_ns(sys, Some(pid), || {
        let root = sys
            .open_dir(rootfs)
            .map_err(|source| super::rootfs::RootfsError::OpenRoot { root: rootfs.into(), source })?;
        let mut made = vec![];
        let report = mask_in_root(sys, &root, host_dir, mask, &mut made)?;
        Ok::<_, super::ApplyError>((report, made))
    });
    match run {
        Some(Ok(result)) => result,
        Some(Err(source)) => Err(super::ApplyError::ProcNamespace { pid, source }),
        None => Err(super::ApplyError::ProcNamespace { pid, source: io::Error::other("the thread panicked") }),
    }
}

fn fill<S: FsOps>(
    sys: &S,
    root: &S::Fd,
    mask: &ProcMask,
    sources: &[(&crate::proc_driver::ProcBind, PathBuf, S::Fd)],
    lines: &mut Vec<String>,
) -> Result<(), ProcMaskError> {
    let make = |path: &str| {
        let path = format!("{PROC_DRIVER_NVIDIA}/{path}");
        move |source| ProcMaskError::Make { path, source }
    };
    // The tmpfs just mounted: nothing of the image's is in it.
    let nv = sys.open_dir_in_root(root, Path::new("proc/driver/nvidia")).map_err(make(""))?;
    for file in &mask.files {
        sys.write_new_at(&nv, OsStr::new(file.name), &file.content, file.mode).map_err(make(file.name))?;
        lines.push(format!(
            "wrote {PROC_DRIVER_NVIDIA}/{} ({} bytes, {:04o})",
            file.name,
            file.content.len(),
            file.mode
        ));
    }
    for (bind, host, src) in sources {
        let rel = Path::new(&bind.rel);
        let mut dir = sys.open_dir_in_root(root, Path::new("proc/driver/nvidia")).map_err(make(""))?;
        let parents: Vec<&OsStr> = rel.parent().map(|p| p.iter().collect()).unwrap_or_default();
        let mut walked = PathBuf::new();
        for part in parents {
            walked.push(part);
            let shown = walked.display().to_string();
            if sys.stat_at(&dir, part).map_err(make(&shown))?.is_none() {
                sys.mkdir_at(&dir, part, TMPFS_MODE).map_err(make(&shown))?;
            }
            dir = sys.open_at_nofollow(&dir, part).map_err(make(&shown))?;
        }
        let name = rel.file_name().unwrap_or_default();
        let point = if bind.dir { sys.mkdir_at(&dir, name, TMPFS_MODE) } else { sys.create_file_at(&dir, name, 0o444) };
        point.map_err(make(&bind.rel))?;
        let dst = sys.open_at_nofollow(&dir, name).map_err(make(&bind.rel))?;
        let path = format!("{PROC_DRIVER_NVIDIA}/{}", bind.rel);
        sys.bind_mount_with(src, &dst, RO).map_err(|source| ProcMaskError::Mount {
            host: host.clone(),
            path: path.clone(),
            source,
        })?;
        lines.push(format!("mounted {} onto {path} ({RO})", host.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proc_driver::{ProcBind, ProcFile};
    use crate::sys::fake::fs::RecordingFs;

    fn mask() -> ProcMask {
        ProcMask {
            files: vec![ProcFile { name: "params", content: b"ModifyDeviceFiles: 0\n".to_vec(), mode: 0o444 }],
            binds: vec![
                ProcBind { rel: "gpus/0000:07:00.0".into(), dir: true },
                ProcBind { rel: "capabilities/gpu2/mig/gi8/ci0/access".into(), dir: false },
            ],
            skipped: vec![],
        }
    }

    /// A container whose /proc shows two GPUs and the host's params; the host's proc under /host.
    fn fake() -> RecordingFs {
        RecordingFs::new()
            .file("/r/proc/driver/nvidia/params", "ModifyDeviceFiles: 1\n")
            .fs_magic("/r/proc", libc::PROC_SUPER_MAGIC)
            .dir("/r/proc/driver/nvidia/gpus/0000:07:00.0")
            .dir("/r/proc/driver/nvidia/gpus/0000:0f:00.0")
            .file("/host/gpus/0000:07:00.0/information", "Device Minor: 2\n")
            .file("/host/capabilities/gpu2/mig/gi8/ci0/access", "DeviceFileMinor: 346\n")
    }

    fn run(fs: &RecordingFs) -> (Result<ProcMaskReport, ProcMaskError>, Vec<Made>) {
        let root = fs.open_dir(Path::new("/r")).unwrap();
        let mut made = vec![];
        (mask_in_root(fs, &root, Path::new("/host"), &mask(), &mut made), made)
    }

    #[test]
    fn the_container_sees_only_the_plans_files_and_mounts() {
        let fs = fake();
        let (report, made) = run(&fs);
        assert!(report.unwrap().masked);
        assert_eq!(made, [Made::Mount("/proc/driver/nvidia".into())]);
        let under: Vec<String> =
            fs.snapshot().into_iter().filter(|l| l.starts_with("/r/proc/driver/nvidia/")).collect();
        assert_eq!(
            under,
            [
                "/r/proc/driver/nvidia/capabilities: dir 0555",
                "/r/proc/driver/nvidia/capabilities/gpu2: dir 0555",
                "/r/proc/driver/nvidia/capabilities/gpu2/mig: dir 0555",
                "/r/proc/driver/nvidia/capabilities/gpu2/mig/gi8: dir 0555",
                "/r/proc/driver/nvidia/capabilities/gpu2/mig/gi8/ci0: dir 0555",
                "/r/proc/driver/nvidia/capabilities/gpu2/mig/gi8/ci0/access: file \"DeviceFileMinor: 346\\n\" (mount)",
                "/r/proc/driver/nvidia/gpus: dir 0555",
                "/r/proc/driver/nvidia/gpus/0000:07:00.0: dir 0755",
                "/r/proc/driver/nvidia/params: file \"ModifyDeviceFiles: 0\\n\"",
            ]
        );
    }

    #[test]
    fn mounts_are_read_only_and_the_tmpfs_nodev_nosuid_noexec() {
        let fs = fake();
        run(&fs).0.unwrap();
        let changes = fs.changes();
        assert_eq!(changes[0], "tmpfs /r/proc/driver/nvidia 0555 nosuid,nodev,noexec");
        assert!(
            changes.contains(
                &"bind /host/gpus/0000:07:00.0 -> /r/proc/driver/nvidia/gpus/0000:07:00.0 ro,nosuid,nodev,noexec"
                    .to_string()
            ),
            "{changes:?}"
        );
    }

    #[test]
    fn no_proc_driver_nvidia_in_the_container_does_nothing() {
        let fs = RecordingFs::new().dir("/r/proc/driver").fs_magic("/r/proc", libc::PROC_SUPER_MAGIC).dir("/host");
        let (report, made) = run(&fs);
        assert_eq!(report.unwrap(), ProcMaskReport::default());
        assert!(made.is_empty());
        assert!(fs.changes().is_empty(), "{:?}", fs.changes());
    }

    #[test]
    fn a_proc_that_is_not_procfs_yet_is_left_alone_with_a_warning() {
        let fs = fake().fs_magic("/r/proc", 0xef53);
        let before = fs.snapshot();
        let (report, made) = run(&fs);
        let report = report.unwrap();
        assert!(!report.masked);
        let warning = report.warning.unwrap();
        assert!(warning.starts_with("the container's /proc/driver/nvidia was not masked: "), "{warning}");
        assert!(warning.contains("its /proc is not a procfs mount at prestart (file system type 0xef53;"), "{warning}");
        assert!(made.is_empty());
        assert!(fs.changes().is_empty(), "{:?}", fs.changes());
        assert_eq!(fs.snapshot(), before);
    }

    #[test]
    fn no_proc_at_all_is_a_warning_too() {
        let fs = RecordingFs::new().dir("/r/etc").dir("/host");
        let (report, made) = run(&fs);
        let warning = report.unwrap().warning.unwrap();
        assert!(warning.ends_with("it has no /proc at prestart (the runtime mounts it later)"), "{warning}");
        assert!(made.is_empty());
    }

    #[test]
    fn a_missing_host_source_fails_before_any_mount() {
        let fs = RecordingFs::new()
            .dir("/r/proc/driver/nvidia/gpus")
            .fs_magic("/r/proc", libc::PROC_SUPER_MAGIC)
            .dir("/host/gpus/0000:07:00.0");
        let e = run(&fs).0.unwrap_err().to_string();
        assert!(e.starts_with("host /host/capabilities/gpu2/mig/gi8/ci0/access: "), "{e}");
        assert!(fs.changes().is_empty(), "{:?}", fs.changes());
    }

    #[test]
    fn a_symlinked_host_source_is_refused() {
        let fs = fake().symlink("/host/gpus/0000:07:00.0", "/etc");
        let e = run(&fs).0.unwrap_err().to_string();
        assert_eq!(e, "host /host/gpus/0000:07:00.0: is a symlink, expected a directory");
    }

    #[test]
    fn a_failed_bind_detaches_the_tmpfs_again() {
        let fs = fake().fail("bind", "/host/capabilities/gpu2/mig/gi8/ci0/access", libc::EIO);
        let before = fs.snapshot();
        let (report, made) = run(&fs);
        assert!(matches!(report.unwrap_err(), ProcMaskError::Mount { .. }));
        assert!(made.is_empty());
        assert_eq!(fs.changes().last().unwrap(), "umount /r/proc/driver/nvidia");
        assert_eq!(fs.snapshot(), before);
    }
}
