//! NVIDIA's CDI hooks, answered by mighook: specs that `nvidia-ctk cdi generate`
//! wrote (and the device plugin's) name `nvidia-cdi-hook <subcommand>` (older
//! ones `nvidia-ctk hook <subcommand>`) as createContainer hooks. With NVIDIA's
//! packages replaced, `nvidia-cdi-hook` is a link to mighook, which does what
//! each subcommand does, the way mighook's own [`super::hook`] does it:
//!
//! - `create-symlinks --link TARGET::LINK`: the links, each resolved inside the
//!   container root (parents made there, an existing right link kept).
//! - `update-ldcache --folder DIR`: NVIDIA runs ldconfig over the folders; mighook
//!   runs nothing. Each folder is listed inside the root, each regular library's
//!   SONAME read from its ELF headers, the SONAME link made where missing (as
//!   ldconfig would), and the entries merged in front of the image's cache, which
//!   is bind-mounted read-only over `/etc/ld.so.cache` (never written in the image).
//!   `--ldconfig-path` is accepted and unused.
//! - `enable-cuda-compat --host-driver-version V`: the image's CUDA compat libraries
//!   go first in the loader cache when newer ([`crate::apply::cuda_compat`]); off
//!   with `cuda-compat = false`. A later `update-ldcache` keeps them first.
//! - `chmod --mode M --path P`: only on a directory or char device under `/dev`,
//!   never through a symlink (refused) nor on a mount of the host's (skipped).
//! - `update-application-profile`: the driver's application profile limiting EGL and
//!   Vulkan to the container's GPUs (`EGLVisibleDGPUDevices`, a bit per `/dev/nvidiaN`
//!   char device in the container), bind-mounted read-only at
//!   `/etc/nvidia/nvidia-application-profiles-rc.d/10-container.conf`.
//! - `disable-device-node-modification`: the host's `/proc/driver/nvidia/params`
//!   with `ModifyDeviceFiles: 0`, bind-mounted read-only over the container's, so
//!   the container's NVML never makes device nodes. No-op where the container has
//!   no `/proc/driver/nvidia`.
//!
//! The state comes on stdin as for every OCI hook; the root from the bundle's
//! config.json. Nothing of the image is executed.

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

use crate::apply::driver_files::{self, InjectError};
use crate::apply::{ApplyError, rootfs::RootfsError};
use crate::driver_files::{DriverEdits, Symlink};
use crate::hook::HookError;
use crate::ldcache::Entry;
use crate::settings::Settings;
use crate::sys::FsOps;
use crate::sys::fs::FileKind;

/// A folder with more entries than this is refused (a hostile image's dir).
const MAX_FOLDER_ENTRIES: usize = 65536;
/// `/proc/driver/nvidia/params` is a few hundred bytes.
const MAX_PARAMS_BYTES: u64 = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub enum NvidiaHookError {
    #[error("nvidia-cdi-hook {hook}: {reason}")]
    Arg { hook: &'static str, reason: String },
    #[error(transparent)]
    Hook(#[from] HookError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error(transparent)]
    Inject(#[from] InjectError),
    #[error(transparent)]
    Cdi(#[from] super::CdiError),
    #[error("nvidia-cdi-hook chmod {path}: {reason}")]
    Chmod { path: String, reason: String },
    #[error("nvidia-cdi-hook {hook}: cannot enter the container's mount namespace: {reason}")]
    Namespace { hook: &'static str, reason: String },
}

/// One NVIDIA hook subcommand, with its arguments as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NvidiaHook {
    CreateSymlinks { links: Vec<String> },
    UpdateLdcache { folders: Vec<String> },
    Chmod { mode: String, paths: Vec<String> },
    EnableCudaCompat { host_driver_version: Option<String>, compat_root: Option<String> },
    DisableDeviceNodeModification,
    UpdateApplicationProfile,
}

impl NvidiaHook {
    fn name(&self) -> &'static str {
        match self {
            NvidiaHook::CreateSymlinks { .. } => "create-symlinks",
            NvidiaHook::UpdateLdcache { .. } => "update-ldcache",
            NvidiaHook::Chmod { .. } => "chmod",
            NvidiaHook::EnableCudaCompat { .. } => "enable-cuda-compat",
            NvidiaHook::DisableDeviceNodeModification => "disable-device-node-modification",
            NvidiaHook::UpdateApplicationProfile => "update-application-profile",
        }
    }
}

/// An absolute container path without `.` or `..` (the hooks' `--folder` and `--path`).
fn container_path(hook: &'static str, p: &str) -> Result<PathBuf, NvidiaHookError> {
    let path = Path::new(p);
    let clean = path.is_absolute() && path.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if !clean || path.parent().is_none() {
        let reason = format!("{}: not an absolute path without . or .. components", crate::request::shown(p));
        return Err(NvidiaHookError::Arg { hook, reason });
    }
    Ok(path.to_path_buf())
}

/// `--mode`: octal permission bits, as `chmod` takes them.
fn parse_mode(mode: &str) -> Result<u32, NvidiaHookError> {
    let bad = || NvidiaHookError::Arg {
        hook: "chmod",
        reason: format!("--mode {}: expected octal permission bits (at most 777)", crate::request::shown(mode)),
    };
    let m = u32::from_str_radix(mode.trim(), 8).map_err(|_| bad())?;
    if m > 0o777 {
        return Err(bad());
    }
    Ok(m)
}

/// Runs `hook` for the container whose state is on `stdin`.
pub fn run(settings: &Settings, stdin: &mut dyn Read, hook: &NvidiaHook) -> Result<(), NvidiaHookError> {
    settings.init_log();
    let name = hook.name();
    // Arguments are checked before anything is read or changed.
    match hook {
        NvidiaHook::UpdateLdcache { folders } => {
            for f in folders {
                container_path(name, f)?;
            }
        }
        NvidiaHook::Chmod { mode, paths } => {
            parse_mode(mode)?;
            for p in paths {
                container_path(name, p)?;
            }
        }
        NvidiaHook::EnableCudaCompat { host_driver_version, compat_root } => {
            if let Some(root) = compat_root.as_deref().filter(|r| *r != "/usr/local/cuda/compat") {
                let reason = format!(
                    "--cuda-compat-container-root {}: only /usr/local/cuda/compat is supported",
                    crate::request::shown(root)
                );
                return Err(NvidiaHookError::Arg { hook: name, reason });
            }
            if let Some(v) = host_driver_version.as_deref().filter(|v| !v.is_empty()) {
                super::hook::driver_version(v, "nvidia-cdi-hook enable-cuda-compat --host-driver-version")?;
            }
        }
        NvidiaHook::CreateSymlinks { links } => {
            super::hook_edits(links, &[], None)?;
        }
        NvidiaHook::DisableDeviceNodeModification | NvidiaHook::UpdateApplicationProfile => {}
    }
    let (enter, rootfs) = crate::hook::create_container_root(stdin)?;
    let sys = crate::sys::LinuxSys;
    let state_dir = crate::apply::state_dir()?;
    let lines = match hook {
        NvidiaHook::CreateSymlinks { links } => {
            let edits = super::hook_edits(links, &[], None)?;
            driver_files::inject_placed(&sys, enter, &rootfs, &edits, state_dir)?.lines
        }
        NvidiaHook::UpdateLdcache { folders } => {
            let folders: Vec<PathBuf> = folders.iter().map(PathBuf::from).collect();
            let mut lines = Vec::new();
            let report = driver_files::in_namespace(&sys, enter, &rootfs, state_dir, |root| {
                folder_edits(&sys, root, &folders, &mut lines)
            })?;
            lines.extend(report.lines);
            lines
        }
        NvidiaHook::EnableCudaCompat { host_driver_version, .. } => {
            let Some(version) = host_driver_version.as_deref().filter(|v| !v.is_empty()) else {
                crate::log::debug("nvidia-cdi-hook enable-cuda-compat: no --host-driver-version, nothing to do");
                return Ok(());
            };
            if !settings.cuda_compat {
                crate::log::info("nvidia-cdi-hook enable-cuda-compat: off (cuda-compat = false)");
                return Ok(());
            }
            let mut lines = Vec::new();
            let report = driver_files::in_namespace(&sys, enter, &rootfs, state_dir, |root| DriverEdits {
                ld_cache: crate::apply::cuda_compat::compat_entries(&sys, root, version, &mut lines),
                ..DriverEdits::default()
            })?;
            lines.extend(report.lines);
            lines
        }
        NvidiaHook::Chmod { mode, paths } => {
            let mode = parse_mode(mode)?;
            let paths: Vec<PathBuf> = paths.iter().map(PathBuf::from).collect();
            in_root(&sys, enter, &rootfs, name, |root| chmod_in_root(&sys, root, mode, &paths))?
        }
        NvidiaHook::UpdateApplicationProfile => {
            let cache_fd = sys
                .open_dir(state_dir)
                .map_err(|source| InjectError::WriteCache { dir: state_dir.to_path_buf(), source })?;
            in_root(&sys, enter, &rootfs, name, |root| application_profile(&sys, root, (&cache_fd, state_dir)))?
        }
        NvidiaHook::DisableDeviceNodeModification => {
            let host = settings.proc_root.join("driver/nvidia/params");
            let Some(params) = params_without_modification(&host) else {
                crate::log::debug(&format!(
                    "nvidia-cdi-hook {name}: {} is absent or already says ModifyDeviceFiles: 0",
                    host.display()
                ));
                return Ok(());
            };
            let cache_fd = sys
                .open_dir(state_dir)
                .map_err(|source| InjectError::WriteCache { dir: state_dir.to_path_buf(), source })?;
            in_root(&sys, enter, &rootfs, name, |root| mount_params(&sys, root, (&cache_fd, state_dir), &params))?
        }
    };
    crate::log::info(&format!("nvidia-cdi-hook {name}: {}", lines.join("; ")));
    Ok(())
}

/// Runs `f` on the container's root, in its mount namespace.
fn in_root<S: FsOps, T: Send>(
    sys: &S,
    enter: Option<i32>,
    rootfs: &Path,
    hook: &'static str,
    f: impl FnOnce(&S::Fd) -> Result<T, NvidiaHookError> + Send,
) -> Result<T, NvidiaHookError> {
    let run = crate::apply::in_mount_ns(sys, enter, move || {
        let root = sys
            .open_dir(rootfs)
            .map_err(|source| InjectError::from(RootfsError::OpenRoot { root: rootfs.into(), source }))?;
        f(&root)
    });
    match run {
        Some(Ok(result)) => result,
        Some(Err(e)) => Err(NvidiaHookError::Namespace { hook, reason: e.to_string() }),
        None => Err(NvidiaHookError::Namespace { hook, reason: "the namespace thread panicked".into() }),
    }
}

/// What ldconfig would add for `folders`: each regular library by its SONAME, at its
/// SONAME link in the folder (made where missing, pointing at the file). The highest
/// version of a SONAME wins, the first folder over later ones. A missing folder is
/// skipped, as ldconfig skips it.
pub fn folder_edits<S: FsOps>(sys: &S, root: &S::Fd, folders: &[PathBuf], lines: &mut Vec<String>) -> DriverEdits {
    let mut edits = DriverEdits::default();
    for folder in folders {
        let rel = folder.strip_prefix("/").unwrap_or(folder);
        let dir = match sys.open_dir_in_root(root, rel) {
            Ok(dir) => dir,
            Err(e) => {
                lines.push(format!("{}: skipped ({e})", folder.display()));
                continue;
            }
        };
        let mut names = match sys.list_dir(&dir, MAX_FOLDER_ENTRIES) {
            Ok(names) => names,
            Err(e) => {
                lines.push(format!("{}: skipped, cannot list it ({e})", folder.display()));
                continue;
            }
        };
        // Highest version first: `libcuda.so.550.54.15` before `libcuda.so.535.1.1`.
        names.sort_by(|a, b| crate::ldcache::libcmp(b.as_bytes(), a.as_bytes()));
        for name in &names {
            let bytes = name.as_bytes();
            if !bytes.starts_with(b"lib") || !bytes.windows(3).any(|w| w == b".so") {
                continue;
            }
            if sys.stat_at(&dir, name).ok().flatten().map(|st| st.kind) != Some(FileKind::Regular) {
                continue;
            }
            let Some(soname) = sys.soname_at(&dir, name).ok().flatten() else { continue };
            // The SONAME names a file in the folder: never a path, `.` or `..` (a hostile library's).
            let plain = !soname.is_empty() && !soname.contains(&b'/') && soname != b"." && soname != b"..";
            if !plain || edits.ld_cache.iter().any(|e| e.key == soname) {
                continue;
            }
            let link = folder.join(OsStr::from_bytes(&soname));
            if soname != bytes && !names.iter().any(|n| n.as_bytes() == soname.as_slice()) {
                let target = String::from_utf8_lossy(bytes).into_owned();
                edits.symlinks.push(Symlink { target, link: link.clone() });
            }
            edits.ld_cache.push(Entry::x86_64(soname, link.into_os_string().into_vec()));
        }
        // Development links (`libcuda.so`, made by create-symlinks), cached by their own
        // name as ldconfig caches them; never followed here.
        for name in &names {
            let bytes = name.as_bytes();
            if !bytes.starts_with(b"lib") || !bytes.ends_with(b".so") || edits.ld_cache.iter().any(|e| e.key == bytes) {
                continue;
            }
            if sys.stat_at(&dir, name).ok().flatten().map(|st| st.kind) == Some(FileKind::Symlink) {
                edits.ld_cache.push(Entry::x86_64(bytes, folder.join(name).into_os_string().into_vec()));
            }
        }
    }
    lines.push(format!("{} libraries in {} folders", edits.ld_cache.len(), folders.len()));
    edits
}

/// Sets `mode` on each path: a directory or char device under `/dev`, resolved inside
/// the root, never followed; a missing one is skipped, one that is a mount of the
/// host's (its own mount, or in a dir the host also has) left alone.
pub fn chmod_in_root<S: FsOps>(
    sys: &S,
    root: &S::Fd,
    mode: u32,
    paths: &[PathBuf],
) -> Result<Vec<String>, NvidiaHookError> {
    let mut lines = Vec::new();
    for path in paths {
        let shown = path.display().to_string();
        let err = |reason: String| NvidiaHookError::Chmod { path: shown.clone(), reason };
        if !path.starts_with("/dev") || path == Path::new("/dev") {
            return Err(err("only paths under /dev are changed".into()));
        }
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(err("names no file".into()));
        };
        let parent_rel = parent.strip_prefix("/").unwrap_or(parent);
        let dir = match sys.open_dir_in_root(root, parent_rel) {
            Ok(dir) => dir,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                lines.push(format!("{shown}: absent, skipped"));
                continue;
            }
            Err(e) => return Err(err(e.to_string())),
        };
        let st = match sys.stat_at(&dir, name).map_err(|e| err(e.to_string()))? {
            None => {
                lines.push(format!("{shown}: absent, skipped"));
                continue;
            }
            Some(st) => st,
        };
        match st.kind {
            FileKind::Dir | FileKind::Char => {}
            other => return Err(err(format!("is {}, not a directory or device node; refusing", other.describe()))),
        }
        if st.perm == mode {
            lines.push(format!("{shown}: already {mode:o}"));
            continue;
        }
        if st.mount_root || crate::apply::rootfs::on_container_mount(sys, root, &dir, parent).is_err() {
            lines.push(format!("{shown}: on a mount the host has, left as it is"));
            continue;
        }
        sys.chmod_at(&dir, name, mode).map_err(|e| err(e.to_string()))?;
        lines.push(format!("{shown}: mode {mode:o}"));
    }
    Ok(lines)
}

/// The host's params with `ModifyDeviceFiles: 1` made `ModifyDeviceFiles: 0` (as the
/// hook's `/proc/driver/nvidia` mask does, [`crate::proc_driver`]); `None` when there is
/// nothing to change or no such file.
fn params_without_modification(host: &Path) -> Option<Vec<u8>> {
    let mut text = Vec::new();
    std::fs::File::open(host).ok()?.take(MAX_PARAMS_BYTES).read_to_end(&mut text).ok()?;
    let changed = crate::proc_driver::params_without_device_file_changes(&text);
    (changed != text).then_some(changed)
}

/// Bind-mounts `params` read-only over the container's `/proc/driver/nvidia/params`;
/// nothing where the container has no `/proc/driver/nvidia` (no driver on this host).
pub fn mount_params<S: FsOps>(
    sys: &S,
    root: &S::Fd,
    host_dir: (&S::Fd, &Path),
    params: &[u8],
) -> Result<Vec<String>, NvidiaHookError> {
    match sys.open_dir_in_root(root, Path::new("proc/driver/nvidia")) {
        Ok(_) => {}
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {
            crate::log::debug(
                "nvidia-cdi-hook disable-device-node-modification: no /proc/driver/nvidia in the container",
            );
            return Ok(vec!["no /proc/driver/nvidia in the container, nothing to do".into()]);
        }
        Err(e) => return Err(InjectError::Stat { path: "/proc/driver/nvidia".into(), source: e }.into()),
    }
    mount_copy_or_undo(sys, root, host_dir, Path::new("/proc/driver/nvidia/params"), params)?;
    Ok(vec!["mounted ModifyDeviceFiles: 0 over /proc/driver/nvidia/params".into()])
}

/// [`driver_files::mount_copy`]; on an error, what it made (dirs, the mount point) is undone.
fn mount_copy_or_undo<S: FsOps>(
    sys: &S,
    root: &S::Fd,
    host_dir: (&S::Fd, &Path),
    target: &Path,
    bytes: &[u8],
) -> Result<(), InjectError> {
    let mut made = Vec::new();
    driver_files::mount_copy(sys, root, host_dir, target, bytes, &mut made).map_err(|error| {
        match crate::apply::undo::undo_in_root(sys, root, &made) {
            left if left.is_empty() => error,
            left => InjectError::Incomplete { error: Box::new(error), left },
        }
    })
}

/// Where the driver reads application profiles, and the container's own.
const APPLICATION_PROFILE: &str = "/etc/nvidia/nvidia-application-profiles-rc.d/10-container.conf";

/// The profile that shows EGL and Vulkan only the GPUs whose minors are set in `mask`.
pub fn application_profile_text(mask: u64) -> String {
    format!(
        "{{\"profiles\":[{{\"name\":\"_container_\",\"settings\":[\"EGLVisibleDGPUDevices\",0x{mask:x}]}}],\
         \"rules\":[{{\"pattern\":[],\"profile\":\"_container_\"}}]}}"
    )
}

/// The minors of the container's `/dev/nvidiaN` char devices (0 to 63) as a bit mask.
fn gpu_minor_mask<S: FsOps>(sys: &S, root: &S::Fd) -> u64 {
    let Ok(dev) = sys.open_dir_in_root(root, Path::new("dev")) else { return 0 };
    let Ok(names) = sys.list_dir(&dev, MAX_FOLDER_ENTRIES) else { return 0 };
    let mut mask = 0u64;
    for name in names {
        let Some(n) = name.to_str().and_then(|n| n.strip_prefix("nvidia")) else { continue };
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        match sys.stat_at(&dev, &name) {
            Ok(Some(st)) if st.kind == FileKind::Char && st.rdev_minor < 64 => mask |= 1 << st.rdev_minor,
            _ => {}
        }
    }
    mask
}

/// `update-application-profile`: the profile for the container's GPUs, bind-mounted
/// read-only (the image's own file, if any, is covered, never written); nothing when
/// the container has no GPU node.
pub fn application_profile<S: FsOps>(
    sys: &S,
    root: &S::Fd,
    host_dir: (&S::Fd, &Path),
) -> Result<Vec<String>, NvidiaHookError> {
    let mask = gpu_minor_mask(sys, root);
    if mask == 0 {
        return Ok(vec!["no /dev/nvidiaN in the container, nothing to do".into()]);
    }
    let text = application_profile_text(mask);
    mount_copy_or_undo(sys, root, host_dir, Path::new(APPLICATION_PROFILE), text.as_bytes())?;
    Ok(vec![format!("mounted {APPLICATION_PROFILE} (EGLVisibleDGPUDevices 0x{mask:x})")])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fake::fs::RecordingFs;

    #[test]
    fn paths_and_modes_are_checked_before_anything_runs() {
        assert!(container_path("update-ldcache", "/usr/lib/x86_64-linux-gnu").is_ok());
        for bad in ["relative/dir", "/usr/../etc", "/", ""] {
            let e = container_path("update-ldcache", bad).unwrap_err().to_string();
            assert!(e.starts_with("nvidia-cdi-hook update-ldcache: "), "{e}");
        }
        assert_eq!(parse_mode("755").unwrap(), 0o755);
        assert!(parse_mode("4755").is_err() && parse_mode("rwx").is_err() && parse_mode("").is_err());
    }

    #[test]
    fn only_host_params_that_allow_modification_are_copied() {
        let dir = tempfile::tempdir().unwrap();
        let params = dir.path().join("params");
        std::fs::write(&params, "ModifyDeviceFiles: 1\nDeviceFileUID: 0\n").unwrap();
        assert_eq!(params_without_modification(&params).unwrap(), b"ModifyDeviceFiles: 0\nDeviceFileUID: 0\n");
        std::fs::write(&params, "ModifyDeviceFiles: 0\n").unwrap();
        assert_eq!(params_without_modification(&params), None);
        assert_eq!(params_without_modification(&dir.path().join("none")), None);
    }

    const R: &str = "/r";

    fn root(fs: &RecordingFs) -> crate::sys::fake::fs::FakeFd {
        fs.open_dir(Path::new(R)).unwrap()
    }

    #[test]
    fn folders_give_soname_entries_and_missing_soname_links() {
        let fs = RecordingFs::new()
            .file("/r/usr/lib64/libcuda.so.550.54.15", "soname:libcuda.so.1")
            .file("/r/usr/lib64/libcuda.so.535.1.1", "soname:libcuda.so.1")
            .file("/r/usr/lib64/libnvidia-ml.so.550.54.15", "soname:libnvidia-ml.so.1")
            .symlink("/r/usr/lib64/libnvidia-ml.so.1", "libnvidia-ml.so.550.54.15")
            .file("/r/usr/lib64/libnotelf.so", "text")
            .file("/r/usr/lib64/libdotdot.so.1.0", "soname:..")
            .symlink("/r/usr/lib64/libevil.so.1", "/etc/shadow")
            .symlink("/r/usr/lib64/libcuda.so", "libcuda.so.1");
        let mut lines = vec![];
        let folders = [PathBuf::from("/usr/lib64"), PathBuf::from("/missing")];
        let e = folder_edits(&fs, &root(&fs), &folders, &mut lines);
        let cache: Vec<String> = e
            .ld_cache
            .iter()
            .map(|e| format!("{} => {}", String::from_utf8_lossy(&e.key), String::from_utf8_lossy(&e.value)))
            .collect();
        assert_eq!(
            cache,
            [
                "libnvidia-ml.so.1 => /usr/lib64/libnvidia-ml.so.1",
                "libcuda.so.1 => /usr/lib64/libcuda.so.1",
                "libcuda.so => /usr/lib64/libcuda.so"
            ]
        );
        assert_eq!(
            e.symlinks,
            [Symlink { target: "libcuda.so.550.54.15".into(), link: "/usr/lib64/libcuda.so.1".into() }],
            "the newest version, and no link where the image has one"
        );
        assert!(lines[0].starts_with("/missing: skipped"), "{lines:?}");
        // The symlink was never read through.
        assert!(!fs.calls().iter().any(|c| c.contains("/etc/shadow") || c.starts_with("soname /r/usr/lib64/libevil")));
    }

    #[test]
    fn chmod_changes_only_dev_dirs_and_nodes_never_through_a_symlink() {
        let fs = RecordingFs::new()
            .dir("/r/dev/dri")
            .char_dev("/r/dev/nvidia-caps/nvidia-cap1", 245, 1, 0o400)
            .symlink("/r/dev/evil", "/etc/shadow")
            .file("/etc/shadow", "host secret");
        let r = root(&fs);
        let lines = chmod_in_root(&fs, &r, 0o755, &[PathBuf::from("/dev/dri"), PathBuf::from("/dev/none")]).unwrap();
        assert_eq!(lines, ["/dev/dri: already 755", "/dev/none: absent, skipped"]);
        let lines = chmod_in_root(&fs, &r, 0o444, &[PathBuf::from("/dev/nvidia-caps/nvidia-cap1")]).unwrap();
        assert_eq!(lines, ["/dev/nvidia-caps/nvidia-cap1: mode 444"]);
        let e = chmod_in_root(&fs, &r, 0o777, &[PathBuf::from("/dev/evil")]).unwrap_err().to_string();
        assert_eq!(e, "nvidia-cdi-hook chmod /dev/evil: is a symlink, not a directory or device node; refusing");
        let e = chmod_in_root(&fs, &r, 0o777, &[PathBuf::from("/etc/passwd")]).unwrap_err().to_string();
        assert!(e.contains("only paths under /dev"), "{e}");
        assert_eq!(fs.describe("/etc/shadow").as_deref(), Some("file \"host secret\""));
    }

    #[test]
    fn the_application_profile_names_the_containers_gpu_minors() {
        let fs = RecordingFs::new()
            .dir("/run/mighook")
            .char_dev("/r/dev/nvidia2", 195, 2, 0o666)
            .char_dev("/r/dev/nvidia5", 195, 5, 0o666)
            .char_dev("/r/dev/nvidiactl", 195, 255, 0o666)
            .symlink("/r/dev/nvidia7", "/dev/null")
            .dir("/r/etc");
        let host = fs.open_dir(Path::new("/run/mighook")).unwrap();
        let lines = application_profile(&fs, &root(&fs), (&host, Path::new("/run/mighook"))).unwrap();
        assert_eq!(
            lines,
            ["mounted /etc/nvidia/nvidia-application-profiles-rc.d/10-container.conf (EGLVisibleDGPUDevices 0x24)"]
        );
        assert_eq!(
            application_profile_text(0x24),
            r#"{"profiles":[{"name":"_container_","settings":["EGLVisibleDGPUDevices",0x24]}],"rules":[{"pattern":[],"profile":"_container_"}]}"#
        );
        let at = "/r/etc/nvidia/nvidia-application-profiles-rc.d/10-container.conf";
        assert!(fs.describe(at).unwrap().ends_with("(mount)"), "{:?}", fs.describe(at));
        // A failed mount leaves no dir or mount point behind.
        let fs = RecordingFs::new().dir("/run/mighook").char_dev("/r/dev/nvidia2", 195, 2, 0o666).dir("/r/etc").fail(
            "bind",
            "/run/mighook/*",
            libc::EIO,
        );
        let host = fs.open_dir(Path::new("/run/mighook")).unwrap();
        assert!(application_profile(&fs, &root(&fs), (&host, Path::new("/run/mighook"))).is_err());
        assert_eq!(fs.describe("/r/etc/nvidia"), None);
        let fs = RecordingFs::new().dir("/run/mighook").dir("/r/dev");
        let host = fs.open_dir(Path::new("/run/mighook")).unwrap();
        let lines = application_profile(&fs, &root(&fs), (&host, Path::new("/run/mighook"))).unwrap();
        assert_eq!(lines, ["no /dev/nvidiaN in the container, nothing to do"]);
        assert!(fs.changes().is_empty(), "{:?}", fs.changes());
    }

    #[test]
    fn params_are_mounted_only_where_the_container_has_the_drivers_proc() {
        let fs = RecordingFs::new().dir("/run/mighook").dir("/r/proc");
        let host = fs.open_dir(Path::new("/run/mighook")).unwrap();
        let lines =
            mount_params(&fs, &root(&fs), (&host, Path::new("/run/mighook")), b"ModifyDeviceFiles: 0\n").unwrap();
        assert_eq!(lines, ["no /proc/driver/nvidia in the container, nothing to do"]);
        assert!(fs.changes().is_empty(), "{:?}", fs.changes());
        let fs = RecordingFs::new().dir("/run/mighook").file("/r/proc/driver/nvidia/params", "ModifyDeviceFiles: 1\n");
        let host = fs.open_dir(Path::new("/run/mighook")).unwrap();
        mount_params(&fs, &root(&fs), (&host, Path::new("/run/mighook")), b"ModifyDeviceFiles: 0\n").unwrap();
        assert_eq!(
            fs.describe("/r/proc/driver/nvidia/params").as_deref(),
            Some("file \"ModifyDeviceFiles: 0\\n\" (mount)")
        );
    }
}
