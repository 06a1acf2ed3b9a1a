//! The driver's user space inside a container root: bind mounts, SONAME links
//! and the loader cache.
//!
//! Every path is resolved inside the container root (`openat2(RESOLVE_IN_ROOT)`
//! for the parents, `*at` calls on the resolved parent for the last component,
//! which is never followed), as for device nodes in [`super::rootfs`]; missing
//! parents are made with mode 0755. Mounts of files the container only reads
//! are made read-only, nosuid and nodev before they are attached, so they are
//! never visible writable.
//!
//! The loader cache is never written into the image and no ldconfig runs (the
//! CVE-2025-23267 class): the image's own `/etc/ld.so.cache` is read inside the
//! root, the driver's libraries are merged in front of its entries, and the
//! result is written to a file of mighook's own on the host and bind-mounted
//! read-only over `/etc/ld.so.cache`. The host file is unlinked right after the
//! mount, so nothing is left to clean up.
//!
//! [`link_in_root`] and [`merged_cache`] are shared with the shim, which does
//! the same from the host before runc starts.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use super::rootfs::{RootfsError, ensure_parent};
use super::undo::{self, Made};
use crate::driver_files::{DriverEdits, FileMount, LibraryDir, MountKind, Symlink};
use crate::ldcache::{self, Entry, LdCache};
use crate::sys::FsOps;
use crate::sys::fs::{FileKind, MountAttrs};

/// An image's loader cache is a few hundred KiB; the parser takes no more than this.
pub const MAX_IMAGE_CACHE_BYTES: u64 = ldcache::MAX_CACHE_BYTES as u64;

#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error("cannot enter the mount namespace of pid {pid}: {source}")]
    EnterNamespace { pid: i32, source: io::Error },
    #[error("{path} is not an absolute path without . or .. components")]
    BadPath { path: String },
    #[error("cannot inspect {path} in the container: {source}")]
    Stat { path: String, source: io::Error },
    #[error("{path} in the container is {found}; refusing to mount {kind} there")]
    InTheWay { path: String, found: &'static str, kind: &'static str },
    #[error("{path} in the container is {found}; refusing to replace it with a symlink")]
    LinkInTheWay { path: String, found: &'static str },
    #[error("cannot replace {path} in the container: {source}")]
    Replace { path: String, source: io::Error },
    #[error("cannot create the mount point {path} in the container: {source}")]
    MountPoint { path: String, source: io::Error },
    #[error("driver file {}: {reason}", host.display())]
    Source { host: PathBuf, reason: String },
    #[error("cannot bind-mount {} onto {path} in the container: {source}", host.display())]
    Mount { host: PathBuf, path: String, source: io::Error },
    #[error("cannot create the symlink {path} -> {target} in the container: {source}")]
    Link { path: String, target: String, source: io::Error },
    #[error("cannot read the container's /etc/ld.so.cache: {source}")]
    ReadCache { source: io::Error },
    #[error("cannot write the loader cache to {}: {source}", dir.display())]
    WriteCache { dir: PathBuf, source: io::Error },
    #[error("the mount-namespace thread for pid {pid} panicked")]
    ThreadPanicked { pid: i32 },
    #[error("driver file {path} would land in {mount}, which the container mounts from the host; refusing")]
    UnderSpecMount { path: String, mount: String },
    #[error("{error}; rolling back left behind: {}", left.join("; "))]
    Incomplete { error: Box<InjectError>, left: Vec<String> },
}

/// What was done: one line each for the hook's log, and what was made, in
/// order, for a rollback (see [`undo`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InjectReport {
    pub lines: Vec<String>,
    pub made: Vec<Made>,
}

/// A path inside the container split into parent components and final name.
fn split(path: &Path) -> Result<(Vec<&OsStr>, &OsStr), InjectError> {
    let bad = || InjectError::BadPath { path: path.display().to_string() };
    if !path.is_absolute() {
        return Err(bad());
    }
    let mut comps = Vec::new();
    for c in path.components() {
        match c {
            Component::RootDir => {}
            Component::Normal(name) => comps.push(name),
            _ => return Err(bad()),
        }
    }
    let name = comps.pop().ok_or_else(bad)?;
    Ok((comps, name))
}

fn shown(path: &Path) -> String {
    path.display().to_string()
}

/// The library dir of LNC's choice for this image: the Debian multiarch dir when
/// `/etc/debian_version` exists inside the root, else `/usr/lib64`.
pub fn library_dir<S: FsOps>(sys: &S, root: &S::Fd) -> LibraryDir {
    let debian = sys
        .open_dir_in_root(root, Path::new("etc"))
        .ok()
        .and_then(|etc| sys.stat_at(&etc, OsStr::new("debian_version")).ok().flatten())
        .is_some();
    LibraryDir::for_image(debian)
}

/// Mount attributes per kind (see [`FileMount::options`]).
fn attrs(kind: MountKind) -> MountAttrs {
    match kind {
        MountKind::Library | MountKind::Binary | MountKind::Firmware | MountKind::Config => {
            MountAttrs { read_only: true, nosuid: true, nodev: true, ..MountAttrs::default() }
        }
        MountKind::Socket => MountAttrs { nosuid: true, nodev: true, noexec: true, ..MountAttrs::default() },
        MountKind::Directory => {
            MountAttrs { nosuid: true, nodev: true, noexec: true, recursive: true, ..MountAttrs::default() }
        }
    }
}

fn kind_name(kind: MountKind) -> &'static str {
    match kind {
        MountKind::Library => "a library",
        MountKind::Binary => "a binary",
        MountKind::Firmware => "firmware",
        MountKind::Config => "a config file",
        MountKind::Socket => "a socket",
        MountKind::Directory => "a directory",
    }
}

/// Opens the host source of a mount and checks it is what `kind` says: a
/// regular file, a socket or a directory, never a symlink.
fn open_source<S: FsOps>(sys: &S, m: &FileMount) -> Result<S::Fd, InjectError> {
    let err = |reason: String| InjectError::Source { host: m.host_path.clone(), reason };
    let src = sys.open_nofollow(&m.host_path).map_err(|e| err(e.to_string()))?;
    let st = sys.fstat(&src).map_err(|e| err(e.to_string()))?;
    let wanted = match m.kind {
        MountKind::Socket => FileKind::Socket,
        MountKind::Directory => FileKind::Dir,
        _ => FileKind::Regular,
    };
    if st.kind != wanted {
        return Err(err(format!("is {}, expected {}", st.kind.describe(), wanted.describe())));
    }
    Ok(src)
}

/// Makes sure `name` in `dir` can take a mount of `kind`; returns `false` when
/// the same mount is already there (a second run).
fn mount_point<S: FsOps>(
    sys: &S,
    dir: &S::Fd,
    name: &OsStr,
    path: &Path,
    kind: MountKind,
    made: &mut Vec<Made>,
) -> Result<bool, InjectError> {
    let p = shown(path);
    let st = sys.stat_at(dir, name).map_err(|source| InjectError::Stat { path: p.clone(), source })?;
    let want_dir = kind == MountKind::Directory;
    let make = |sys: &S, made: &mut Vec<Made>| {
        let r = if want_dir { sys.mkdir_at(dir, name, 0o755) } else { sys.create_file_at(dir, name, 0o644) };
        r.map_err(|source| InjectError::MountPoint { path: p.clone(), source })?;
        made.push(if want_dir { Made::Dir(p.clone()) } else { Made::File(p.clone()) });
        Ok::<(), InjectError>(())
    };
    match st {
        None => make(sys, made)?,
        Some(st) if st.mount_root => return Ok(false),
        Some(st) if st.kind == FileKind::Dir && !want_dir => {
            return Err(InjectError::InTheWay { path: p, found: "a directory", kind: kind_name(kind) });
        }
        Some(st) if st.kind == FileKind::Dir || (st.kind == FileKind::Regular && !want_dir) => {}
        Some(_) => {
            // A symlink, device, fifo or socket: remove the entry itself (never what it points to).
            sys.unlink_at(dir, name).map_err(|source| InjectError::Replace { path: p.clone(), source })?;
            make(sys, made)?;
        }
    }
    Ok(true)
}

/// Bind-mounts every file of `mounts` into the root, read-only where the kind says so.
pub fn mount_in_root<S: FsOps>(
    sys: &S,
    root: &S::Fd,
    mounts: &[FileMount],
    report: &mut InjectReport,
) -> Result<(), InjectError> {
    let mut parents: Vec<(PathBuf, S::Fd)> = Vec::new();
    for m in mounts {
        let (dir, name) = parent_dir(sys, root, &mut parents, &m.container_path, &mut report.made)?;
        let dir = &parents[dir].1;
        let src = open_source(sys, m)?;
        if !mount_point(sys, dir, name, &m.container_path, m.kind, &mut report.made)? {
            report.lines.push(format!("kept mount at {}", m.container_path.display()));
            continue;
        }
        let p = shown(&m.container_path);
        let dst = sys.open_at_nofollow(dir, name).map_err(|source| InjectError::Stat { path: p.clone(), source })?;
        let attrs = attrs(m.kind);
        sys.bind_mount_with(&src, &dst, attrs).map_err(|source| InjectError::Mount {
            host: m.host_path.clone(),
            path: p.clone(),
            source,
        })?;
        report.made.push(Made::Mount(p.clone()));
        report.lines.push(format!("mounted {} onto {p} ({attrs})", m.host_path.display()));
    }
    Ok(())
}

/// The shim's half of [`mount_in_root`]: runc makes the mounts from config.json,
/// but every destination (each of `mounts`, and `/etc/ld.so.cache` when `cache`)
/// is made ready here first, exactly as the hook would: parents resolved (and
/// made) inside the root, a symlink, FIFO or device at the target replaced by an
/// empty file, a directory refused. runc then finds a plain file or dir at each
/// destination, never one of the image's links to follow (into `/proc`, or to a
/// path the host has), and the outcome of a hostile image is the hook's.
pub fn mount_points_in_root<S: FsOps>(
    sys: &S,
    root: &S::Fd,
    mounts: &[FileMount],
    cache: bool,
) -> Result<(), InjectError> {
    let mut parents: Vec<(PathBuf, S::Fd)> = Vec::new();
    let cache_target = cache.then(|| (Path::new("/etc/ld.so.cache"), MountKind::Config));
    let targets = mounts.iter().map(|m| (m.container_path.as_path(), m.kind)).chain(cache_target);
    // The shim's runc makes the mounts; what is made here stays for it.
    let mut made = Vec::new();
    for (path, kind) in targets {
        let (dir, name) = parent_dir(sys, root, &mut parents, path, &mut made)?;
        mount_point(sys, &parents[dir].1, name, path, kind, &mut made)?;
    }
    Ok(())
}

/// Resolves (making as needed) the parent of `path` in the root, reusing earlier ones.
fn parent_dir<'p, S: FsOps>(
    sys: &S,
    root: &S::Fd,
    parents: &mut Vec<(PathBuf, S::Fd)>,
    path: &'p Path,
    made: &mut Vec<Made>,
) -> Result<(usize, &'p OsStr), InjectError> {
    let (comps, name) = split(path)?;
    let rel: PathBuf = comps.iter().collect();
    if let Some(at) = parents.iter().position(|(p, _)| *p == rel) {
        return Ok((at, name));
    }
    parents.push((rel, ensure_parent(sys, root, &comps, made)?));
    Ok((parents.len() - 1, name))
}

/// Refuses driver files whose directory, resolved inside the root, is at or under the
/// destination of one of the spec's bind mounts (a volume from the host): runc mounts
/// those first and would then make the driver files' mount points on the host. For the
/// shim, which sees the root before runc mounts anything.
pub fn outside_spec_mounts<S: FsOps>(
    sys: &S,
    root: &S::Fd,
    targets: &[&Path],
    bind_destinations: &[PathBuf],
) -> Result<(), InjectError> {
    if bind_destinations.is_empty() {
        return Ok(());
    }
    let root_path = sys.fd_path(root).map_err(|source| InjectError::Stat { path: "/".into(), source })?;
    // Where `path` really is inside the root: its longest existing ancestor resolved there
    // (symlinks followed, the last one too, as runc follows a destination), the rest as written.
    let real = |path: &Path| -> PathBuf {
        let rel = path.strip_prefix("/").unwrap_or(path);
        for base in rel.ancestors() {
            let at = if base.as_os_str().is_empty() { Path::new(".") } else { base };
            let Ok(fd) = sys.open_dir_in_root(root, at) else { continue };
            let Some(at) = sys.fd_path(&fd).ok().and_then(|p| Some(p.strip_prefix(&root_path).ok()?.to_path_buf()))
            else {
                break;
            };
            return Path::new("/").join(at).join(rel.strip_prefix(base).unwrap_or(Path::new("")));
        }
        path.to_path_buf()
    };
    let mounts: Vec<(PathBuf, &PathBuf)> = bind_destinations.iter().map(|d| (real(d), d)).collect();
    for t in targets {
        let dir = real(t.parent().unwrap_or(Path::new("/")));
        if let Some((_, d)) = mounts.iter().find(|(m, _)| dir.starts_with(m)) {
            return Err(InjectError::UnderSpecMount { path: shown(t), mount: shown(d) });
        }
    }
    Ok(())
}

/// Creates each symlink in the root; an existing right link is kept, a wrong
/// link or a plain file is replaced, a directory or a mount point is refused.
pub fn link_in_root<S: FsOps>(
    sys: &S,
    root: &S::Fd,
    links: &[Symlink],
    report: &mut InjectReport,
) -> Result<(), InjectError> {
    let mut parents: Vec<(PathBuf, S::Fd)> = Vec::new();
    for l in links {
        let (dir, name) = parent_dir(sys, root, &mut parents, &l.link, &mut report.made)?;
        let dir = &parents[dir].1;
        let p = shown(&l.link);
        let st = sys.stat_at(dir, name).map_err(|source| InjectError::Stat { path: p.clone(), source })?;
        match st {
            None => {}
            Some(st) if st.mount_root => {
                return Err(InjectError::LinkInTheWay { path: p, found: "a mount point" });
            }
            Some(st) if st.kind == FileKind::Dir => {
                return Err(InjectError::LinkInTheWay { path: p, found: "a directory" });
            }
            Some(st) => {
                if st.kind == FileKind::Symlink
                    && sys.readlink_at(dir, name).is_ok_and(|t| t.as_bytes() == l.target.as_bytes())
                {
                    continue;
                }
                sys.unlink_at(dir, name).map_err(|source| InjectError::Replace { path: p.clone(), source })?;
            }
        }
        sys.symlink_at(dir, name, OsStr::new(&l.target)).map_err(|source| InjectError::Link {
            path: p.clone(),
            target: l.target.clone(),
            source,
        })?;
        report.made.push(Made::Link(p.clone()));
        report.lines.push(format!("linked {p} -> {}", l.target));
    }
    Ok(())
}

/// The image's loader cache with `injected` merged in front: read inside the
/// root (an absent, oversized, non-regular or corrupt one counts as empty, as
/// the image's own loader would ignore it), merged, serialized.
///
/// With `cuda_compat` (the host driver's version), the image's CUDA compat
/// libraries go in front of `injected` when its compat libcuda is newer (see
/// [`super::cuda_compat`]).
pub fn merged_cache<S: FsOps>(
    sys: &S,
    root: &S::Fd,
    injected: &[Entry],
    cuda_compat: Option<&str>,
    report: &mut InjectReport,
) -> Result<Vec<u8>, InjectError> {
    // Only a cache mighook mounted earlier in this start (a mount root over the image's
    // file) is taken as its own: the image could write mighook's generator tag into its own.
    let mut mounted_by_us = false;
    let image = match sys.open_dir_in_root(root, Path::new("etc")) {
        Ok(etc) => {
            mounted_by_us = matches!(sys.stat_at(&etc, OsStr::new("ld.so.cache")), Ok(Some(st)) if st.mount_root);
            match sys.read_at(&etc, OsStr::new("ld.so.cache"), MAX_IMAGE_CACHE_BYTES) {
                Ok(Some(bytes)) => match ldcache::parse(&bytes) {
                    Ok(cache) => cache,
                    Err(e) => {
                        report.lines.push(format!("the image's /etc/ld.so.cache is not usable ({e}); replaced"));
                        LdCache::default()
                    }
                },
                Ok(None) => LdCache::default(),
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => LdCache::default(),
                Err(e) => {
                    report.lines.push(format!("the image's /etc/ld.so.cache is not readable ({e}); replaced"));
                    LdCache::default()
                }
            }
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => LdCache::default(),
        Err(source) => return Err(InjectError::ReadCache { source }),
    };
    let mut front = match cuda_compat {
        Some(host) => super::cuda_compat::compat_entries(sys, root, host, &mut report.lines),
        // A cache mighook already wrote (an earlier `enable-cuda-compat` hook) keeps its
        // compat entries first when more libraries are merged in.
        None if mounted_by_us && image.generator.as_deref() == Some(ldcache::GENERATOR) => {
            super::cuda_compat::chosen_entries(sys, root, &image)
        }
        None => vec![],
    };
    front.extend_from_slice(injected);
    let merged = ldcache::merge(front, image);
    report.lines.push(format!("loader cache: {} entries, {} of the driver", merged.entries.len(), injected.len()));
    Ok(ldcache::serialize(&merged))
}

/// Writes `cache` to a new file in the host dir `cache_dir` (an fd opened on the
/// host), bind-mounts it read-only over the root's `/etc/ld.so.cache`, and
/// unlinks the host file again.
fn mount_cache<S: FsOps>(
    sys: &S,
    root: &S::Fd,
    cache_dir: &S::Fd,
    cache_dir_path: &Path,
    cache: &[u8],
    made: &mut Vec<Made>,
) -> Result<(), InjectError> {
    mount_copy(sys, root, (cache_dir, cache_dir_path), Path::new("/etc/ld.so.cache"), cache, made)
}

/// Writes `bytes` to a new file in the host dir `host_dir` (an fd opened on the host,
/// and its path), bind-mounts it read-only (nosuid, nodev, noexec) over `target` in
/// the root (its parent resolved inside the root; a symlink or the like at the target
/// replaced by a file, an earlier mount covered), and unlinks the host file again.
pub fn mount_copy<S: FsOps>(
    sys: &S,
    root: &S::Fd,
    (host_dir, host_dir_path): (&S::Fd, &Path),
    target: &Path,
    bytes: &[u8],
    made: &mut Vec<Made>,
) -> Result<(), InjectError> {
    let (comps, file) = split(target)?;
    let name = format!("{}.{}.{}", file.to_string_lossy(), std::process::id(), unique());
    let name = OsStr::new(&name);
    let werr = |source| InjectError::WriteCache { dir: host_dir_path.to_path_buf(), source };
    sys.write_new_at(host_dir, name, bytes, 0o644).map_err(werr)?;
    let result = (|| {
        // A bind mount takes its source from the caller's own namespace: open the file
        // by its host path from in here (before pivot_root the host's tree is visible),
        // and check it is the file just written through the host-side fd.
        let src = sys.open_nofollow(&host_dir_path.join(name)).map_err(werr)?;
        let written = sys.open_at_nofollow(host_dir, name).map_err(werr)?;
        let (a, b) = (sys.fstat(&src).map_err(werr)?, sys.fstat(&written).map_err(werr)?);
        if a.kind != FileKind::Regular || (a.dev, a.ino) != (b.dev, b.ino) {
            return Err(werr(io::Error::other("the file seen from the container's namespace is not the one written")));
        }
        let dir = ensure_parent(sys, root, &comps, made)?;
        // A copy already mounted by an earlier run is covered by the new one.
        let st = sys.stat_at(&dir, file).map_err(|source| InjectError::Stat { path: shown(target), source })?;
        let covering = st.is_some_and(|st| st.mount_root);
        if !covering {
            mount_point(sys, &dir, file, target, MountKind::Config, made)?;
        }
        let attrs = MountAttrs { read_only: true, nosuid: true, nodev: true, noexec: true, recursive: false };
        let mount = |made: &mut Vec<Made>| {
            let dst =
                sys.open_at_nofollow(&dir, file).map_err(|source| InjectError::Stat { path: shown(target), source })?;
            sys.bind_mount_with(&src, &dst, attrs).map_err(|source| InjectError::Mount {
                host: host_dir_path.join(name),
                path: shown(target),
                source,
            })?;
            made.push(Made::Mount(shown(target)));
            Ok::<(), InjectError>(())
        };
        match mount(made) {
            // The kernel mounts nothing on a file that is gone: an earlier copy's host file
            // is unlinked once mounted (a second hook of the same start: enable-cuda-compat,
            // then update-ldcache). That copy is replaced, not covered.
            Err(InjectError::Mount { source, .. }) if covering && source.raw_os_error() == Some(libc::ENOENT) => {
                sys.unmount_at(&dir, file).map_err(|source| InjectError::Replace { path: shown(target), source })?;
                mount_point(sys, &dir, file, target, MountKind::Config, made)?;
                mount(made)?;
            }
            other => other?,
        }
        Ok(())
    })();
    let _ = sys.unlink_at(host_dir, name);
    result
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    (t.as_nanos() as u64) ^ NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Everything the driver's user space needs in the root, as the calling thread's
/// mount namespace sees it: mounts, links, then the loader cache. On an error,
/// what this call made is undone (in this namespace) before it returns.
pub fn inject_in_root<S: FsOps>(
    sys: &S,
    rootfs: &Path,
    edits: &DriverEdits,
    cache_dir: &S::Fd,
    cache_dir_path: &Path,
) -> Result<InjectReport, InjectError> {
    let root = sys.open_dir(rootfs).map_err(|source| RootfsError::OpenRoot { root: rootfs.into(), source })?;
    // Every path is checked before the first change (see `rootfs::create_nodes_in_root`).
    for path in edits.mounts.iter().map(|m| &m.container_path).chain(edits.symlinks.iter().map(|l| &l.link)) {
        split(path)?;
    }
    let mut report = InjectReport::default();
    let result = (|| {
        mount_in_root(sys, &root, &edits.mounts, &mut report)?;
        link_in_root(sys, &root, &edits.symlinks, &mut report)?;
        if !edits.ld_cache.is_empty() {
            let cache = merged_cache(sys, &root, &edits.ld_cache, edits.cuda_compat.as_deref(), &mut report)?;
            mount_cache(sys, &root, cache_dir, cache_dir_path, &cache, &mut report.made)?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok(report),
        Err(error) => match undo::undo_in_root(sys, &root, &report.made) {
            left if left.is_empty() => Err(error),
            left => Err(InjectError::Incomplete { error: Box::new(error), left }),
        },
    }
}

/// Put the driver files into the container whose init is `pid`: join its mount
/// namespace on a dedicated thread, choose the library dir for its image,
/// place the files there and [`inject_in_root`]. `cache_dir` is a host dir of
/// mighook's own for the loader-cache file (opened before the namespace changes).
pub fn inject<S: FsOps>(
    sys: &S,
    pid: i32,
    rootfs: &Path,
    files: &crate::driver_files::DriverFiles,
    cache_dir: &Path,
) -> Result<InjectReport, InjectError> {
    in_namespace(sys, Some(pid), rootfs, cache_dir, |root| crate::driver_files::place(files, library_dir(sys, root)))
}

/// [`inject`] of edits already placed (the CDI hook: links and cache entries from its
/// arguments). `pid: None`: the caller already is in the container's mount namespace (a
/// createContainer hook), so none is joined.
pub fn inject_placed<S: FsOps>(
    sys: &S,
    pid: Option<i32>,
    rootfs: &Path,
    edits: &DriverEdits,
    cache_dir: &Path,
) -> Result<InjectReport, InjectError> {
    in_namespace(sys, pid, rootfs, cache_dir, |_| edits.clone())
}

/// [`inject_placed`] of edits that `place` works out from the root itself (the
/// NVIDIA CDI hooks: which libraries a folder holds, whether the image's CUDA compat
/// libraries apply), inside the container's mount namespace.
pub fn in_namespace<S: FsOps>(
    sys: &S,
    pid: Option<i32>,
    rootfs: &Path,
    cache_dir: &Path,
    place: impl FnOnce(&S::Fd) -> DriverEdits + Send,
) -> Result<InjectReport, InjectError> {
    let dir_err = |source| InjectError::WriteCache { dir: cache_dir.to_path_buf(), source };
    let cache_fd = sys.open_dir(cache_dir).map_err(dir_err)?;
    let run = super::in_mount_ns(sys, pid, move || {
        let root = sys.open_dir(rootfs).map_err(|source| RootfsError::OpenRoot { root: rootfs.into(), source })?;
        let edits = place(&root);
        inject_in_root(sys, rootfs, &edits, &cache_fd, cache_dir)
    });
    match run {
        Some(Ok(result)) => result,
        Some(Err(source)) => Err(InjectError::EnterNamespace { pid: pid.unwrap_or(0), source }),
        None => Err(InjectError::ThreadPanicked { pid: pid.unwrap_or(0) }),
    }
}

#[cfg(test)]
#[path = "driver_files_tests.rs"]
mod tests;
