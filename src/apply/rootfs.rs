//! Device nodes inside a live container's root.
//!
//! At prestart the container's `/dev` tmpfs exists only in the container's mount
//! namespace, so [`create_nodes`] works from a dedicated thread that joins that
//! namespace (`unshare(CLONE_FS)` + `setns`) and ends afterwards; the rest of
//! the hook never leaves the host namespace. No helper process is started.
//!
//! The image is hostile input. Every directory under the root is resolved with
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` against a root fd, and
//! the final component is only ever touched with `*at` calls on that resolved
//! parent, never following it. A symlinked `dev` or `dev/nvidia-caps` is
//! therefore followed *as if the root were `/`*: `dev/nvidia-caps -> /etc` lands
//! in `<rootfs>/etc`, which is inside the container and acceptable; nothing is
//! ever created or changed outside the root. Missing directories are created
//! with mode 0755.
//!
//! What is at a node's path decides what happens:
//! - nothing: the node is created (`mknodat`), owned by its `uid`:`gid`, mode `file_mode`;
//! - a char device with the right major:minor: **kept**, owner and mode fixed;
//! - anything else but a directory (a wrong device, a regular file, a FIFO, a
//!   socket, a symlink): **replaced**, the entry itself is unlinked (a symlink is
//!   removed, not its target) and the node is created;
//! - a directory, or a mount point that is not the right node: refused.
//!
//! Where `mknodat` gives `EPERM` (a user-namespaced mount), the host node
//! `<host_dev_root>/<path under /dev>` is bind-mounted onto an empty regular
//! file instead, after checking that it is a char device with exactly the
//! expected major:minor. The host path is looked up from inside the
//! container's namespace: before `pivot_root` that namespace is a copy of the
//! runtime's, so the host's `/dev` is still there, and a bind mount can only
//! take its source from the caller's own namespace. A bind-mounted node keeps
//! the host node's owner and mode: changing them would change the host's node.

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::path::{Component, Path, PathBuf};

use super::undo::{self, Made};
use crate::edits::DeviceNode;
use crate::sys::FsOps;
use crate::sys::fs::{FileKind, FileStat};

/// Why a node could not be put into the container. Each names the node and the reason.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("cannot enter the mount namespace of pid {pid}: {source}")]
    EnterNamespace { pid: i32, source: io::Error },
    #[error("cannot open the container root {}: {source}", root.display())]
    OpenRoot { root: PathBuf, source: io::Error },
    #[error("device node {path:?}: {reason}")]
    BadNode { path: String, reason: &'static str },
    #[error("cannot resolve {path} inside the container root: {source}")]
    Resolve { path: String, source: io::Error },
    #[error("cannot create directory {path} in the container: {source}")]
    MakeDir { path: String, source: io::Error },
    #[error("cannot create directory {path} in the container: a dangling symlink or a non-directory is in the way")]
    DirBlocked { path: String },
    #[error("{path} in the container is a directory; refusing to replace it with a device node")]
    DirectoryInTheWay { path: String },
    #[error("{path} in the container is a mount point of {}; refusing to replace it", what.describe())]
    MountInTheWay { path: String, what: FileKind },
    #[error("cannot inspect {path} in the container: {source}")]
    Stat { path: String, source: io::Error },
    #[error("cannot remove {} at {path} in the container: {source}", was.describe())]
    Remove { path: String, was: FileKind, source: io::Error },
    #[error("cannot create device node {path} (c {major}:{minor}) in the container: {source}")]
    Mknod { path: String, major: u32, minor: u32, source: io::Error },
    #[error("cannot set owner/mode of {path} in the container: {source}")]
    Attributes { path: String, source: io::Error },
    #[error("cannot bind-mount {path} from the host: mknod is not permitted and the host node {} is missing", host.display())]
    HostNodeMissing { path: String, host: PathBuf },
    #[error("cannot bind-mount {path} from the host: host node {} is {found}, expected c {major}:{minor}", host.display())]
    HostNodeMismatch { path: String, host: PathBuf, found: String, major: u32, minor: u32 },
    #[error("cannot bind-mount {path} from the host: cannot open host node {}: {source}", host.display())]
    HostNode { path: String, host: PathBuf, source: io::Error },
    #[error("cannot create the bind-mount target for {path} in the container: {source}")]
    Placeholder { path: String, source: io::Error },
    #[error("cannot bind-mount host node {} onto {path} in the container: {source}", host.display())]
    BindMount { path: String, host: PathBuf, source: io::Error },
    #[error("the mount-namespace thread for pid {pid} panicked")]
    ThreadPanicked { pid: i32 },
    #[error(
        "{path} in the container is on a mount the host also has ({fstype} at {mountpoint}); \
         refusing to create or change anything there"
    )]
    HostMount { path: String, mountpoint: String, fstype: String },
    #[error("cannot tell which mount {path} in the container is on: {reason}")]
    MountInfo { path: String, reason: String },
    #[error("{error}; rolling back left behind: {}", left.join("; "))]
    Incomplete { error: Box<RootfsError>, left: Vec<String> },
}

/// What happened to one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeAction {
    Created,
    /// The right node was already there; owner and mode were fixed.
    Kept,
    /// The right node was already bind-mounted there; left as is.
    KeptMount,
    /// Something else was there (`was`) and was removed first.
    Replaced {
        was: FileKind,
    },
    /// `mknodat` gave `EPERM`; the host node was bind-mounted (over `was` if something was removed).
    BindMounted {
        host: PathBuf,
        was: Option<FileKind>,
    },
}

/// One line of the apply log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeReport {
    pub path: String,
    pub major: u32,
    pub minor: u32,
    pub action: NodeAction,
}

impl fmt::Display for NodeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (p, m, n) = (&self.path, self.major, self.minor);
        match &self.action {
            NodeAction::Created => write!(f, "created {p} (c {m}:{n})"),
            NodeAction::Kept => write!(f, "kept {p} (c {m}:{n})"),
            NodeAction::KeptMount => write!(f, "kept bind mount {p} (c {m}:{n})"),
            NodeAction::Replaced { was } => write!(f, "replaced {} at {p} with c {m}:{n}", was.describe()),
            NodeAction::BindMounted { host, was: None } => {
                write!(f, "bind-mounted {} onto {p} (c {m}:{n})", host.display())
            }
            NodeAction::BindMounted { host, was: Some(was) } => {
                write!(f, "bind-mounted {} onto {p} (c {m}:{n}), replacing {}", host.display(), was.describe())
            }
        }
    }
}

/// Put `nodes` into the root of the container whose init is `pid`: join its
/// mount namespace on a dedicated thread, then [`create_nodes_in_root`]. On an
/// error, what this call made is undone before it returns.
pub fn create_nodes(
    sys: &impl FsOps,
    pid: i32,
    rootfs: &Path,
    nodes: &[DeviceNode],
    host_dev_root: &Path,
) -> Result<Vec<NodeReport>, RootfsError> {
    create_nodes_recorded(sys, pid, rootfs, nodes, host_dev_root).map(|(reports, _)| reports)
}

/// [`create_nodes`], also returning what it made, in order, for a later rollback.
pub fn create_nodes_recorded(
    sys: &impl FsOps,
    pid: i32,
    rootfs: &Path,
    nodes: &[DeviceNode],
    host_dev_root: &Path,
) -> Result<(Vec<NodeReport>, Vec<Made>), RootfsError> {
    if nodes.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let run = super::in_mount_ns(sys, Some(pid), || {
        let mut made = Vec::new();
        match create_nodes_in_root(sys, rootfs, nodes, host_dev_root, &mut made) {
            Ok(reports) => Ok((reports, made)),
            Err(error) => Err(rolled_back(error, undo::undo_here(sys, rootfs, &made))),
        }
    });
    match run {
        Some(Ok(result)) => result,
        Some(Err(source)) => Err(RootfsError::EnterNamespace { pid, source }),
        None => Err(RootfsError::ThreadPanicked { pid }),
    }
}

/// `error`, or when the rollback after it left something, both.
fn rolled_back(error: RootfsError, left: Vec<String>) -> RootfsError {
    if left.is_empty() { error } else { RootfsError::Incomplete { error: Box::new(error), left } }
}

/// Put `nodes` into `rootfs` as the calling thread's mount namespace sees it,
/// recording in `made` what was made (also on an error, for the rollback).
pub fn create_nodes_in_root<S: FsOps>(
    sys: &S,
    rootfs: &Path,
    nodes: &[DeviceNode],
    host_dev_root: &Path,
    made: &mut Vec<Made>,
) -> Result<Vec<NodeReport>, RootfsError> {
    // Every request is checked before the first change: a bad one late in the
    // list must not cost an entry an earlier node replaced (that cannot be undone).
    for node in nodes {
        split_node_path(node)?;
    }
    let root = sys.open_dir(rootfs).map_err(|source| RootfsError::OpenRoot { root: rootfs.into(), source })?;
    // Parent directories resolved so far, by path under the root: 123 nodes of
    // `all` share two parents, and re-resolving them per node was most of the
    // syscalls. Reusing the fd is no weaker than resolving again: the fd is the
    // directory that was resolved inside the root, and nothing here removes a
    // directory.
    let mut parents: Vec<(PathBuf, S::Fd)> = Vec::new();
    nodes.iter().map(|node| place_node(sys, &root, &mut parents, node, host_dev_root, made)).collect()
}

/// One line of a mountinfo file: (mount id, superblock `major:minor`, mount point, fs type).
fn mountinfo_line(line: &str) -> Option<(u64, &str, &str, &str)> {
    let (head, tail) = line.split_once(" - ")?;
    let mut f = head.split(' ');
    let id = f.next()?.parse().ok()?;
    let (_parent, dev, _root, point) = (f.next()?, f.next()?, f.next()?, f.next()?);
    Some((id, dev, point, tail.split(' ').next()?))
}

/// Refuses a directory on a mount other than the root's own that the host also
/// has: making nodes, mount points or links there, or changing what is there,
/// would change the host (a `docker -v` volume at `/dev`, a hostPath at
/// `/dev/nvidia-caps`, a volume an image's symlink leads to). A mount only the container's
/// namespace has (the runtime's own tmpfs on `/dev` or `/run`) is the
/// container's. Decided from mountinfo: this thread's namespace against host
/// init's (`/proc/1`, before `pivot_root` still the host's proc); when in doubt, refused.
pub(crate) fn on_container_mount<S: FsOps>(sys: &S, root: &S::Fd, dir: &S::Fd, path: &Path) -> Result<(), RootfsError> {
    let stat = |fd| sys.fstat(fd).map_err(|source| RootfsError::Stat { path: path.display().to_string(), source });
    let dir_mnt = stat(dir)?.mnt_id;
    if dir_mnt == stat(root)?.mnt_id {
        return Ok(());
    }
    let info = |reason: String| RootfsError::MountInfo { path: path.display().to_string(), reason };
    let read = |p: &str| sys.read_file(Path::new(p)).map_err(|e| info(format!("{p}: {e}")));
    let own = read("/proc/thread-self/mountinfo")?;
    let host = read("/proc/1/mountinfo")?;
    let Some((_, dev, point, fstype)) = own.lines().filter_map(mountinfo_line).find(|l| l.0 == dir_mnt) else {
        return Err(info(format!("mount {dir_mnt} is not in this namespace's mountinfo")));
    };
    if host.lines().filter_map(mountinfo_line).any(|l| l.1 == dev) {
        return Err(RootfsError::HostMount {
            path: path.display().to_string(),
            mountpoint: point.into(),
            fstype: fstype.into(),
        });
    }
    Ok(())
}

/// The in-container path split into its parent directories and final name.
fn split_node_path(node: &DeviceNode) -> Result<(Vec<&OsStr>, &OsStr), RootfsError> {
    let bad = |reason| RootfsError::BadNode { path: node.path.clone(), reason };
    if node.kind != 'c' {
        return Err(bad("only char devices are supported"));
    }
    if node.file_mode & !0o777 != 0 {
        return Err(bad("file mode has bits beyond rwxrwxrwx"));
    }
    let path = Path::new(&node.path);
    if !path.is_absolute() {
        return Err(bad("is not an absolute path"));
    }
    let mut comps = Vec::new();
    for c in path.components() {
        match c {
            Component::RootDir => {}
            Component::Normal(name) => comps.push(name),
            _ => return Err(bad("has a . or .. component")),
        }
    }
    let name = comps.pop().ok_or_else(|| bad("names no file"))?;
    Ok((comps, name))
}

/// Resolve (creating as needed) each parent directory inside the root; return the last one.
/// Every directory made is recorded in `made`, for a rollback. No directory is made in,
/// and none returned that is, a mount the host also has ([`on_container_mount`]): every
/// change mighook makes in a container happens in a directory this returned.
pub(crate) fn ensure_parent<S: FsOps>(
    sys: &S,
    root: &S::Fd,
    parents: &[&OsStr],
    made: &mut Vec<Made>,
) -> Result<S::Fd, RootfsError> {
    if !parents.is_empty() {
        // Usually the whole parent exists: one openat2 of the full path resolves
        // exactly what the walk below ends with. On any error the walk runs, so
        // the error names the component that failed and missing ones are made.
        let full: PathBuf = parents.iter().collect();
        if let Ok(fd) = sys.open_dir_in_root(root, &full) {
            on_container_mount(sys, root, &fd, &Path::new("/").join(&full))?;
            return Ok(fd);
        }
    }
    let mut rel = PathBuf::new();
    let mut dir = sys
        .open_dir_in_root(root, Path::new("/"))
        .map_err(|source| RootfsError::Resolve { path: "/".into(), source })?;
    for comp in parents {
        let parent_shown = format!("/{}", rel.display());
        rel.push(comp);
        let shown = format!("/{}", rel.display());
        dir = match sys.open_dir_in_root(root, &rel) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                // Making a dir is a change too: never on a mount the host has.
                on_container_mount(sys, root, &dir, Path::new(&parent_shown))?;
                // mkdirat on the resolved parent never follows a symlink named `comp`.
                match sys.mkdir_at(&dir, comp, 0o755) {
                    Ok(()) => {
                        made.push(Made::Dir(shown.clone()));
                        // mkdir's mode is cut by the umask; set it exactly.
                        sys.chmod_at(&dir, comp, 0o755)
                            .map_err(|source| RootfsError::MakeDir { path: shown.clone(), source })?;
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                    Err(source) => return Err(RootfsError::MakeDir { path: shown, source }),
                }
                match sys.open_dir_in_root(root, &rel) {
                    Ok(fd) => fd,
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                        return Err(RootfsError::DirBlocked { path: shown });
                    }
                    Err(source) => return Err(RootfsError::Resolve { path: shown, source }),
                }
            }
            Err(source) => return Err(RootfsError::Resolve { path: shown, source }),
        };
    }
    on_container_mount(sys, root, &dir, Path::new(&format!("/{}", rel.display())))?;
    Ok(dir)
}

fn place_node<S: FsOps>(
    sys: &S,
    root: &S::Fd,
    resolved: &mut Vec<(PathBuf, S::Fd)>,
    node: &DeviceNode,
    host_dev_root: &Path,
    made: &mut Vec<Made>,
) -> Result<NodeReport, RootfsError> {
    let (parents, name) = split_node_path(node)?;
    let path = node.path.clone();
    let (major, minor) = (node.major, node.minor);
    let report = |action| NodeReport { path: path.clone(), major, minor, action };
    let rel: PathBuf = parents.iter().collect();
    let at = match resolved.iter().position(|(p, _)| *p == rel) {
        Some(at) => at,
        None => {
            resolved.push((rel, ensure_parent(sys, root, &parents, made)?));
            resolved.len() - 1
        }
    };
    let dir = &resolved[at].1;

    let existing = sys.stat_at(dir, name).map_err(|source| RootfsError::Stat { path: path.clone(), source })?;
    let was = match existing {
        None => None,
        Some(FileStat { kind: FileKind::Dir, .. }) => return Err(RootfsError::DirectoryInTheWay { path }),
        Some(st) if st.kind == FileKind::Char && (st.rdev_major, st.rdev_minor) == (major, minor) => {
            if st.mount_root {
                return Ok(report(NodeAction::KeptMount));
            }
            set_attributes(sys, dir, name, node)?;
            return Ok(report(NodeAction::Kept));
        }
        Some(st) if st.mount_root => return Err(RootfsError::MountInTheWay { path, what: st.kind }),
        Some(st) => {
            // unlinkat removes the entry itself: a symlink goes, its target stays.
            sys.unlink_at(dir, name).map_err(|source| RootfsError::Remove {
                path: path.clone(),
                was: st.kind,
                source,
            })?;
            Some(st.kind)
        }
    };

    match sys.mknod_char_at(dir, name, node.file_mode, major, minor) {
        Ok(()) => {
            made.push(Made::File(path.clone()));
            set_attributes(sys, dir, name, node)?;
            Ok(report(match was {
                None => NodeAction::Created,
                Some(was) => NodeAction::Replaced { was },
            }))
        }
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            let host = bind_host_node(sys, dir, name, node, host_dev_root, made)?;
            Ok(report(NodeAction::BindMounted { host, was }))
        }
        Err(source) => Err(RootfsError::Mknod { path, major, minor, source }),
    }
}

/// Exactly the node's owner (the driver's `DeviceFileUID`/`GID`, so a group-only
/// host stays group-only) and `file_mode` (mknod's mode is cut by the umask).
fn set_attributes<S: FsOps>(sys: &S, dir: &S::Fd, name: &OsStr, node: &DeviceNode) -> Result<(), RootfsError> {
    let err = |source| RootfsError::Attributes { path: node.path.clone(), source };
    sys.chown_at(dir, name, node.uid, node.gid).map_err(err)?;
    sys.chmod_at(dir, name, node.file_mode).map_err(err)
}

/// The `EPERM` fallback: bind-mount the checked host node onto an empty file.
fn bind_host_node<S: FsOps>(
    sys: &S,
    dir: &S::Fd,
    name: &OsStr,
    node: &DeviceNode,
    host_dev_root: &Path,
    made: &mut Vec<Made>,
) -> Result<PathBuf, RootfsError> {
    let path = node.path.clone();
    let (major, minor) = (node.major, node.minor);
    let under_dev = Path::new(&node.path).strip_prefix("/dev").ok().filter(|p| !p.as_os_str().is_empty());
    let Some(under_dev) = under_dev else {
        return Err(RootfsError::BadNode {
            path,
            reason: "mknod is not permitted and only nodes under /dev can be bind-mounted from the host",
        });
    };
    let host = host_dev_root.join(under_dev);

    let src = match sys.open_nofollow(&host) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Err(RootfsError::HostNodeMissing { path, host }),
        Err(source) => return Err(RootfsError::HostNode { path, host, source }),
    };
    let st =
        sys.fstat(&src).map_err(|source| RootfsError::HostNode { path: path.clone(), host: host.clone(), source })?;
    if st.kind != FileKind::Char || (st.rdev_major, st.rdev_minor) != (major, minor) {
        let found = match st.kind {
            FileKind::Char | FileKind::Block => {
                format!("{} {}:{}", if st.kind == FileKind::Char { 'c' } else { 'b' }, st.rdev_major, st.rdev_minor)
            }
            other => other.describe().into(),
        };
        return Err(RootfsError::HostNodeMismatch { path, host, found, major, minor });
    }

    let placeholder = |source| RootfsError::Placeholder { path: path.clone(), source };
    sys.create_file_at(dir, name, 0o600).map_err(placeholder)?;
    made.push(Made::File(path.clone()));
    let dst = sys.open_at_nofollow(dir, name).map_err(placeholder)?;
    // The placeholder must still be our empty regular file when the mount lands on it.
    let dst_st = sys.fstat(&dst).map_err(placeholder)?;
    if dst_st.kind != FileKind::Regular {
        return Err(placeholder(io::Error::other(format!("it became {}", dst_st.kind.describe()))));
    }
    sys.bind_mount(&src, &dst).map_err(|source| RootfsError::BindMount {
        path: path.clone(),
        host: host.clone(),
        source,
    })?;
    made.push(Made::Mount(path.clone()));
    Ok(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fake::fs::RecordingFs;

    const ROOT: &str = "/b/rootfs";

    fn node(path: &str, major: u32, minor: u32, mode: u32) -> DeviceNode {
        DeviceNode { path: path.into(), kind: 'c', major, minor, file_mode: mode, uid: 0, gid: 0 }
    }

    fn gpu0() -> DeviceNode {
        node("/dev/nvidia0", 195, 0, 0o666)
    }

    /// `ROOT/dev` is mount 9 on superblock 0:50; the host's init has `host_dev` mounted.
    fn dev_on_mount(host_dev: &str) -> RecordingFs {
        let own = format!("1 0 8:1 / / rw - ext4 /dev/vda rw\n9 1 0:50 / {ROOT}/dev rw - tmpfs tmpfs rw\n");
        rootfs()
            .file(&format!("{ROOT}/dev/nvidia0"), "host data")
            .on_mount(&format!("{ROOT}/dev"), 9)
            .file("/proc/thread-self/mountinfo", &own)
            .file(
                "/proc/1/mountinfo",
                &format!("1 0 8:1 / / rw - ext4 /dev/vda rw\n20 1 {host_dev} / /srv rw - tmpfs t rw\n"),
            )
    }

    #[test]
    fn dev_on_a_mount_the_host_has_is_refused_before_anything_changes() {
        let fs = dev_on_mount("0:50");
        let err = run(&fs, &[gpu0()]).unwrap_err();
        assert!(matches!(&err, RootfsError::HostMount { fstype, .. } if fstype == "tmpfs"), "{err}");
        assert_eq!(fs.changes(), ["setns /proc/42/ns/mnt"]);
        assert_eq!(fs.describe(&format!("{ROOT}/dev/nvidia0")), Some("file \"host data\"".into()));
    }

    #[test]
    fn no_dir_is_made_on_a_mount_the_host_has() {
        let fs = dev_on_mount("0:50");
        let caps = node("/dev/nvidia-caps/nvidia-cap345", 508, 345, 0o444);
        let err = run(&fs, &[caps]).unwrap_err();
        assert!(matches!(&err, RootfsError::HostMount { path, .. } if path == "/dev"), "{err}");
        assert_eq!(fs.changes(), ["setns /proc/42/ns/mnt"]);
        assert_eq!(fs.describe(&format!("{ROOT}/dev/nvidia-caps")), None);
    }

    #[test]
    fn the_runtimes_own_dev_tmpfs_is_the_containers() {
        let fs = dev_on_mount("0:51");
        run(&fs, &[gpu0()]).unwrap();
        assert_eq!(fs.describe(&format!("{ROOT}/dev/nvidia0")), Some("c 195:0 0666 0:0".into()));
    }

    fn rootfs() -> RecordingFs {
        RecordingFs::new().dir(&format!("{ROOT}/dev")).dir("/dev")
    }

    fn run(fs: &RecordingFs, nodes: &[DeviceNode]) -> Result<Vec<NodeReport>, RootfsError> {
        create_nodes(fs, 42, Path::new(ROOT), nodes, Path::new("/dev"))
    }

    fn lines(reports: &[NodeReport]) -> Vec<String> {
        reports.iter().map(ToString::to_string).collect()
    }

    // ---- rollback: a failure leaves the tree as it was ----

    #[test]
    fn a_failure_undoes_every_node_and_dir_made_before_it() {
        let cap = node("/dev/nvidia-caps/nvidia-cap1", 511, 1, 0o444);
        let fs = rootfs().fail("mknod", &format!("{ROOT}/dev/nvidia-caps/nvidia-cap1"), libc::EIO);
        let before = fs.snapshot();
        let e = run(&fs, &[gpu0(), cap]).unwrap_err();
        assert!(matches!(e, RootfsError::Mknod { .. }), "{e}");
        let changes = fs.changes();
        assert_eq!(
            changes[changes.len() - 2..],
            ["rmdir /b/rootfs/dev/nvidia-caps".to_string(), "unlink /b/rootfs/dev/nvidia0".to_string()]
        );
        assert_eq!(fs.snapshot(), before);
    }

    #[test]
    fn a_bad_request_late_in_the_list_replaces_nothing_first() {
        let fs = rootfs().symlink(&format!("{ROOT}/dev/nvidia0"), "/elsewhere");
        let e = run(&fs, &[gpu0(), node("/dev/../etc/x", 195, 1, 0o666)]).unwrap_err();
        assert!(e.to_string().ends_with("has a . or .. component"), "{e}");
        assert_eq!(fs.changes(), ["setns /proc/42/ns/mnt"]);
    }

    #[test]
    fn a_failed_attribute_change_still_undoes_the_node() {
        let fs = rootfs().fail("chown", &format!("{ROOT}/dev/nvidia0"), libc::EIO);
        let before = fs.snapshot();
        run(&fs, &[gpu0()]).unwrap_err();
        assert_eq!(fs.changes().last().unwrap(), "unlink /b/rootfs/dev/nvidia0");
        assert_eq!(fs.snapshot(), before);
    }

    #[test]
    fn a_failed_bind_fallback_unmounts_and_unlinks_what_it_made() {
        let fs = rootfs()
            .char_dev("/dev/nvidia0", 195, 0, 0o666)
            .char_dev("/dev/nvidia1", 195, 1, 0o666)
            .fail("mknod", "*", libc::EPERM)
            .fail("bind", "/dev/nvidia1", libc::EIO);
        let before = fs.snapshot();
        let e = run(&fs, &[gpu0(), node("/dev/nvidia1", 195, 1, 0o666)]).unwrap_err();
        assert!(matches!(e, RootfsError::BindMount { .. }), "{e}");
        let changes = fs.changes();
        assert_eq!(
            changes[changes.len() - 3..],
            [
                "unlink /b/rootfs/dev/nvidia1".to_string(),
                "umount /b/rootfs/dev/nvidia0".to_string(),
                "unlink /b/rootfs/dev/nvidia0".to_string()
            ]
        );
        assert_eq!(fs.snapshot(), before);
    }

    #[test]
    fn an_undo_that_fails_is_named_with_the_error() {
        let fs = rootfs().fail("mknod", &format!("{ROOT}/dev/nvidia1"), libc::EIO).fail(
            "unlink",
            &format!("{ROOT}/dev/nvidia0"),
            libc::EBUSY,
        );
        let e = run(&fs, &[gpu0(), node("/dev/nvidia1", 195, 1, 0o666)]).unwrap_err();
        assert!(matches!(e, RootfsError::Incomplete { .. }), "{e}");
        assert!(e.to_string().contains("; rolling back left behind: /dev/nvidia0: cannot unlink: "), "{e}");
    }

    #[test]
    fn creates_nodes_and_missing_parents_from_inside_the_namespace() {
        let fs = rootfs();
        let r = run(&fs, &[gpu0(), node("/dev/nvidia-caps/nvidia-cap1", 511, 1, 0o444)]).unwrap();
        assert_eq!(
            fs.changes(),
            [
                "setns /proc/42/ns/mnt",
                "mknod /b/rootfs/dev/nvidia0 c 195:0 0666",
                "chown /b/rootfs/dev/nvidia0 0:0",
                "chmod /b/rootfs/dev/nvidia0 0666",
                "mkdir /b/rootfs/dev/nvidia-caps 0755",
                "chmod /b/rootfs/dev/nvidia-caps 0755",
                "mknod /b/rootfs/dev/nvidia-caps/nvidia-cap1 c 511:1 0444",
                "chown /b/rootfs/dev/nvidia-caps/nvidia-cap1 0:0",
                "chmod /b/rootfs/dev/nvidia-caps/nvidia-cap1 0444",
            ]
        );
        assert_eq!(lines(&r), ["created /dev/nvidia0 (c 195:0)", "created /dev/nvidia-caps/nvidia-cap1 (c 511:1)"]);
        assert_eq!(fs.describe("/b/rootfs/dev/nvidia-caps").unwrap(), "dir 0755");
    }

    #[test]
    fn each_parent_is_resolved_once_per_run() {
        let fs = rootfs().dir("/b/rootfs/dev/nvidia-caps");
        let caps =
            [node("/dev/nvidia-caps/nvidia-cap1", 511, 1, 0o444), node("/dev/nvidia-caps/nvidia-cap2", 511, 2, 0o444)];
        run(&fs, &[gpu0(), caps[0].clone(), node("/dev/nvidia1", 195, 1, 0o666), caps[1].clone()]).unwrap();
        let resolves: Vec<String> = fs.calls().into_iter().filter(|c| c.starts_with("open")).collect();
        assert_eq!(
            resolves,
            ["open /b/rootfs", "open-in-root /b/rootfs dev", "open-in-root /b/rootfs dev/nvidia-caps"]
        );
        assert_eq!(fs.describe("/b/rootfs/dev/nvidia-caps/nvidia-cap2").unwrap(), "c 511:2 0444 0:0");
    }

    #[test]
    fn missing_parent_is_walked_from_the_root_and_made() {
        let fs = rootfs();
        run(&fs, &[node("/dev/nvidia-caps/nvidia-cap1", 511, 1, 0o444)]).unwrap();
        let resolves: Vec<String> =
            fs.calls().into_iter().filter(|c| c.starts_with("open") || c.starts_with("mkdir")).collect();
        assert_eq!(
            resolves,
            [
                "open /b/rootfs",
                "open-in-root /b/rootfs dev/nvidia-caps",
                "open-in-root /b/rootfs /",
                "open-in-root /b/rootfs dev",
                "open-in-root /b/rootfs dev/nvidia-caps",
                "mkdir /b/rootfs/dev/nvidia-caps 0755",
                "open-in-root /b/rootfs dev/nvidia-caps",
            ]
        );
    }

    #[test]
    fn namespace_is_joined_before_the_root_is_opened() {
        let fs = rootfs();
        run(&fs, &[gpu0()]).unwrap();
        assert_eq!(fs.calls()[..2], ["setns /proc/42/ns/mnt", "open /b/rootfs"]);
    }

    #[test]
    fn nodes_get_their_owner_created_or_kept() {
        // The driver's NVreg_DeviceFileGID=44 NVreg_DeviceFileMode=0660.
        let group_only = DeviceNode { gid: 44, file_mode: 0o660, ..gpu0() };
        let fs = rootfs();
        run(&fs, std::slice::from_ref(&group_only)).unwrap();
        assert_eq!(
            fs.changes(),
            [
                "setns /proc/42/ns/mnt",
                "mknod /b/rootfs/dev/nvidia0 c 195:0 0660",
                "chown /b/rootfs/dev/nvidia0 0:44",
                "chmod /b/rootfs/dev/nvidia0 0660",
            ]
        );
        assert_eq!(fs.describe("/b/rootfs/dev/nvidia0").unwrap(), "c 195:0 0660 0:44");
        // An image's own node with the right numbers is narrowed to the same.
        let fs = rootfs().char_dev("/b/rootfs/dev/nvidia0", 195, 0, 0o666);
        run(&fs, &[group_only]).unwrap();
        assert_eq!(fs.describe("/b/rootfs/dev/nvidia0").unwrap(), "c 195:0 0660 0:44");
    }

    #[test]
    fn nothing_to_do_joins_no_namespace() {
        let fs = rootfs();
        assert_eq!(run(&fs, &[]).unwrap(), []);
        assert!(fs.calls().is_empty());
    }

    #[test]
    fn right_node_is_kept_with_owner_and_mode_fixed() {
        let fs = rootfs().char_dev("/b/rootfs/dev/nvidia0", 195, 0, 0o600);
        let r = run(&fs, &[gpu0()]).unwrap();
        assert_eq!(
            fs.changes(),
            ["setns /proc/42/ns/mnt", "chown /b/rootfs/dev/nvidia0 0:0", "chmod /b/rootfs/dev/nvidia0 0666"]
        );
        assert_eq!(r[0].action, NodeAction::Kept);
        assert_eq!(fs.describe("/b/rootfs/dev/nvidia0").unwrap(), "c 195:0 0666 0:0");
    }

    #[test]
    fn wrong_entries_are_replaced_by_unlinking_the_entry_itself() {
        for (what, fs, was) in [
            ("wrong node", rootfs().char_dev("/b/rootfs/dev/nvidia0", 195, 7, 0o666), FileKind::Char),
            ("regular file", rootfs().file("/b/rootfs/dev/nvidia0", "x"), FileKind::Regular),
            ("fifo", rootfs().fifo("/b/rootfs/dev/nvidia0"), FileKind::Fifo),
            (
                "symlink",
                rootfs().file("/etc/passwd", "host").symlink("/b/rootfs/dev/nvidia0", "/etc/passwd"),
                FileKind::Symlink,
            ),
        ] {
            let r = run(&fs, &[gpu0()]).unwrap();
            assert_eq!(
                fs.changes()[1..3],
                ["unlink /b/rootfs/dev/nvidia0", "mknod /b/rootfs/dev/nvidia0 c 195:0 0666"],
                "{what}"
            );
            assert_eq!(r[0].action, NodeAction::Replaced { was }, "{what}");
            assert_eq!(fs.describe("/b/rootfs/dev/nvidia0").unwrap(), "c 195:0 0666 0:0", "{what}");
        }
    }

    #[test]
    fn symlink_target_survives_replacement() {
        let fs = rootfs()
            .file("/etc/passwd", "host")
            .file("/b/rootfs/etc/passwd", "ctr")
            .symlink("/b/rootfs/dev/nvidia0", "/etc/passwd");
        run(&fs, &[gpu0()]).unwrap();
        assert_eq!(fs.describe("/etc/passwd").unwrap(), "file \"host\"");
        assert_eq!(fs.describe("/b/rootfs/etc/passwd").unwrap(), "file \"ctr\"");
    }

    #[test]
    fn directory_at_the_node_path_is_refused() {
        let fs = rootfs().dir("/b/rootfs/dev/nvidia0");
        let e = run(&fs, &[gpu0()]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/dev/nvidia0 in the container is a directory; refusing to replace it with a device node"
        );
        assert_eq!(fs.changes(), ["setns /proc/42/ns/mnt"]);
    }

    #[test]
    fn foreign_mount_at_the_node_path_is_refused() {
        let fs = rootfs().file("/b/rootfs/dev/nvidia0", "").mounted("/b/rootfs/dev/nvidia0");
        let e = run(&fs, &[gpu0()]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/dev/nvidia0 in the container is a mount point of a regular file; refusing to replace it"
        );
        assert_eq!(fs.changes(), ["setns /proc/42/ns/mnt"]);
    }

    #[test]
    fn symlinked_dev_resolves_inside_the_root() {
        let fs = rootfs().dir("/tmp/hostdir").dir("/b/rootfs/tmp/hostdir").symlink("/b/rootfs/dev", "/tmp/hostdir");
        run(&fs, &[gpu0()]).unwrap();
        assert_eq!(fs.changes()[1], "mknod /b/rootfs/tmp/hostdir/nvidia0 c 195:0 0666");
        assert_eq!(fs.describe("/tmp/hostdir/nvidia0"), None);
    }

    #[test]
    fn relative_symlink_cannot_climb_out_of_the_root() {
        let fs = rootfs()
            .dir("/tmp/hostdir")
            .dir("/b/rootfs/tmp/hostdir")
            .symlink("/b/rootfs/dev", "../../../../tmp/hostdir");
        run(&fs, &[gpu0()]).unwrap();
        assert_eq!(fs.changes()[1], "mknod /b/rootfs/tmp/hostdir/nvidia0 c 195:0 0666");
        assert_eq!(fs.describe("/tmp/hostdir/nvidia0"), None);
    }

    #[test]
    fn dangling_symlinked_dev_fails_closed() {
        let fs = RecordingFs::new().dir("/tmp/hostdir").symlink("/b/rootfs/dev", "/tmp/hostdir");
        let e = run(&fs, &[gpu0()]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot create directory /dev in the container: a dangling symlink or a non-directory is in the way"
        );
        assert_eq!(fs.changes(), ["setns /proc/42/ns/mnt", "mkdir /b/rootfs/dev 0755"]);
        assert_eq!(fs.describe("/tmp/hostdir/nvidia0"), None);
    }

    #[test]
    fn caps_dir_symlinked_to_etc_lands_in_the_containers_etc() {
        let fs = rootfs().dir("/etc").dir("/b/rootfs/etc").symlink("/b/rootfs/dev/nvidia-caps", "/etc");
        run(&fs, &[node("/dev/nvidia-caps/nvidia-cap1", 511, 1, 0o444)]).unwrap();
        assert_eq!(fs.describe("/b/rootfs/etc/nvidia-cap1").unwrap(), "c 511:1 0444 0:0");
        assert_eq!(fs.describe("/etc/nvidia-cap1"), None);
    }

    #[test]
    fn parent_that_is_a_file_fails_closed() {
        let fs = rootfs().file("/b/rootfs/dev/nvidia-caps", "");
        let e = run(&fs, &[node("/dev/nvidia-caps/nvidia-cap1", 511, 1, 0o444)]).unwrap_err();
        assert!(e.to_string().starts_with("cannot resolve /dev/nvidia-caps inside the container root: "), "{e}");
        assert_eq!(fs.changes(), ["setns /proc/42/ns/mnt"]);
    }

    #[test]
    fn bad_node_requests_are_refused_before_touching_anything() {
        for (n, reason) in [
            (node("dev/nvidia0", 195, 0, 0o666), "is not an absolute path"),
            (node("/dev/../etc/shadow", 195, 0, 0o666), "has a . or .. component"),
            (node("/", 195, 0, 0o666), "names no file"),
            (node("/dev/nvidia0", 195, 0, 0o4666), "file mode has bits beyond rwxrwxrwx"),
            (DeviceNode { kind: 'b', ..gpu0() }, "only char devices are supported"),
        ] {
            let fs = rootfs();
            let e = run(&fs, std::slice::from_ref(&n)).unwrap_err();
            assert_eq!(e.to_string(), format!("device node {:?}: {reason}", n.path));
            assert_eq!(fs.changes(), ["setns /proc/42/ns/mnt"]);
        }
    }

    #[test]
    fn namespace_failure_is_one_clear_line() {
        let fs = rootfs().fail("setns", "*", libc::EPERM);
        let e = run(&fs, &[gpu0()]).unwrap_err();
        assert!(e.to_string().starts_with("cannot enter the mount namespace of pid 42: "), "{e}");
        assert_eq!(fs.calls(), ["setns /proc/42/ns/mnt"]);
    }

    #[test]
    fn mknod_eperm_falls_back_to_bind_mounting_the_checked_host_node() {
        let fs = rootfs().char_dev("/dev/nvidia2", 195, 2, 0o666).fail("mknod", "*", libc::EPERM);
        let r = run(&fs, &[node("/dev/nvidia2", 195, 2, 0o666)]).unwrap();
        assert_eq!(
            fs.changes(),
            [
                "setns /proc/42/ns/mnt",
                "mknod /b/rootfs/dev/nvidia2 c 195:2 0666",
                "create /b/rootfs/dev/nvidia2 0600",
                "bind /dev/nvidia2 -> /b/rootfs/dev/nvidia2",
            ]
        );
        assert!(fs.calls().contains(&"fstat /dev/nvidia2".to_string()));
        assert_eq!(lines(&r), ["bind-mounted /dev/nvidia2 onto /dev/nvidia2 (c 195:2)"]);
        assert_eq!(fs.describe("/b/rootfs/dev/nvidia2").unwrap(), "c 195:2 0666 0:0 (mount)");
    }

    #[test]
    fn bind_fallback_maps_caps_paths_under_the_host_dev_root() {
        let fs = rootfs().char_dev("/dev/nvidia-caps/nvidia-cap345", 511, 345, 0o444).fail("mknod", "*", libc::EPERM);
        run(&fs, &[node("/dev/nvidia-caps/nvidia-cap345", 511, 345, 0o444)]).unwrap();
        assert_eq!(
            fs.changes().last().unwrap(),
            "bind /dev/nvidia-caps/nvidia-cap345 -> /b/rootfs/dev/nvidia-caps/nvidia-cap345"
        );
    }

    #[test]
    fn bind_fallback_replaces_what_was_there() {
        let fs = rootfs().char_dev("/dev/nvidia2", 195, 2, 0o666).fifo("/b/rootfs/dev/nvidia2").fail(
            "mknod",
            "*",
            libc::EPERM,
        );
        let r = run(&fs, &[node("/dev/nvidia2", 195, 2, 0o666)]).unwrap();
        assert_eq!(fs.changes()[1], "unlink /b/rootfs/dev/nvidia2");
        assert_eq!(lines(&r), ["bind-mounted /dev/nvidia2 onto /dev/nvidia2 (c 195:2), replacing a FIFO"]);
    }

    #[test]
    fn bind_fallback_is_idempotent() {
        let fs = rootfs().char_dev("/dev/nvidia2", 195, 2, 0o666).fail("mknod", "*", libc::EPERM);
        run(&fs, &[node("/dev/nvidia2", 195, 2, 0o666)]).unwrap();
        let before = fs.changes().len();
        let r = run(&fs, &[node("/dev/nvidia2", 195, 2, 0o666)]).unwrap();
        // Only the second setns: no chmod/chown through the mount onto the host's node.
        assert_eq!(fs.changes()[before..], ["setns /proc/42/ns/mnt"]);
        assert_eq!(r[0].action, NodeAction::KeptMount);
    }

    #[test]
    fn bind_fallback_checks_the_host_node() {
        for (what, fs, msg) in [
            (
                "wrong minor",
                rootfs().char_dev("/dev/nvidia2", 195, 3, 0o666),
                "host node /dev/nvidia2 is c 195:3, expected c 195:2",
            ),
            (
                "regular file",
                rootfs().file("/dev/nvidia2", ""),
                "host node /dev/nvidia2 is a regular file, expected c 195:2",
            ),
            (
                "symlink",
                rootfs().char_dev("/dev/x", 195, 2, 0o666).symlink("/dev/nvidia2", "/dev/x"),
                "host node /dev/nvidia2 is a symlink, expected c 195:2",
            ),
            ("missing", rootfs(), "mknod is not permitted and the host node /dev/nvidia2 is missing"),
        ] {
            let fs = fs.fail("mknod", "*", libc::EPERM);
            let e = run(&fs, &[node("/dev/nvidia2", 195, 2, 0o666)]).unwrap_err();
            assert_eq!(e.to_string(), format!("cannot bind-mount /dev/nvidia2 from the host: {msg}"), "{what}");
            assert!(!fs.changes().iter().any(|c| c.starts_with("bind") || c.starts_with("create")), "{what}");
        }
    }

    #[test]
    fn other_mknod_errors_do_not_fall_back() {
        let fs = rootfs().char_dev("/dev/nvidia0", 195, 0, 0o666).fail("mknod", "*", libc::EROFS);
        let e = run(&fs, &[gpu0()]).unwrap_err();
        assert!(
            e.to_string().starts_with("cannot create device node /dev/nvidia0 (c 195:0) in the container: "),
            "{e}"
        );
        assert!(!fs.changes().iter().any(|c| c.starts_with("bind")));
    }

    #[test]
    fn second_run_keeps_everything() {
        let fs = rootfs();
        let nodes = [gpu0(), node("/dev/nvidia-caps/nvidia-cap1", 511, 1, 0o444)];
        run(&fs, &nodes).unwrap();
        let r = run(&fs, &nodes).unwrap();
        assert_eq!(r.iter().map(|n| &n.action).collect::<Vec<_>>(), [&NodeAction::Kept, &NodeAction::Kept]);
    }
}

/// The same decisions against the real kernel (`LinuxSys`), as root, on temporary roots.
#[cfg(test)]
pub(crate) mod kernel_tests {
    use super::*;
    use crate::sys::LinuxSys;
    use crate::sys::fake::fs::root_or_skip;
    use crate::sys::fs::MountAttrs;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    use std::process::{Child, Command};

    fn node(path: &str, major: u32, minor: u32, mode: u32) -> DeviceNode {
        DeviceNode { path: path.into(), kind: 'c', major, minor, file_mode: mode, uid: 0, gid: 0 }
    }

    fn gpu0() -> DeviceNode {
        node("/dev/nvidia0", 195, 0, 0o666)
    }

    fn cap(name: &str) -> DeviceNode {
        node(&format!("/dev/nvidia-caps/{name}"), 511, 7, 0o444)
    }

    /// A fresh root with an empty `dev` directory.
    fn new_root() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("dev")).unwrap();
        t
    }

    fn apply_own_ns(root: &Path, nodes: &[DeviceNode]) -> Result<Vec<NodeReport>, RootfsError> {
        // Our own mount namespace stands in for the container's: same code path, setns included.
        create_nodes(&LinuxSys, std::process::id() as i32, root, nodes, Path::new("/dev"))
    }

    /// `c M:m 0666 uid:gid`, `regular file`, ... of the entry at `p`, not following it.
    pub(crate) fn describe(p: &Path) -> String {
        match std::fs::symlink_metadata(p) {
            Err(_) => "absent".into(),
            Ok(m) if m.file_type().is_char_device() => {
                let rdev = m.rdev();
                format!(
                    "c {}:{} {:04o} {}:{}",
                    libc::major(rdev),
                    libc::minor(rdev),
                    m.permissions().mode() & 0o7777,
                    m.uid(),
                    m.gid()
                )
            }
            Ok(m) if m.is_dir() => format!("dir {:04o}", m.permissions().mode() & 0o7777),
            Ok(m) if m.is_file() => "regular file".into(),
            Ok(m) if m.file_type().is_symlink() => "symlink".into(),
            Ok(_) => "other".into(),
        }
    }

    pub(crate) fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
        v.sort();
        v
    }

    fn mknod(p: &Path, major: u32, minor: u32) {
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: test-only direct syscall on a valid C string.
        assert_eq!(
            unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(major, minor)) },
            0,
            "mknod {}",
            p.display()
        );
    }

    #[test]
    fn plain_root_gets_exact_nodes_and_dirs() {
        if !root_or_skip("plain_root_gets_exact_nodes_and_dirs") {
            return;
        }
        let t = new_root();
        let r = apply_own_ns(t.path(), &[gpu0(), cap("nvidia-cap1")]).unwrap();
        assert_eq!(r.iter().map(|n| &n.action).collect::<Vec<_>>(), [&NodeAction::Created, &NodeAction::Created]);
        assert_eq!(describe(&t.path().join("dev/nvidia0")), "c 195:0 0666 0:0");
        assert_eq!(describe(&t.path().join("dev/nvidia-caps")), "dir 0755");
        assert_eq!(describe(&t.path().join("dev/nvidia-caps/nvidia-cap1")), "c 511:7 0444 0:0");
    }

    #[test]
    fn second_run_is_idempotent() {
        if !root_or_skip("second_run_is_idempotent") {
            return;
        }
        let t = new_root();
        apply_own_ns(t.path(), &[gpu0(), cap("nvidia-cap1")]).unwrap();
        let r = apply_own_ns(t.path(), &[gpu0(), cap("nvidia-cap1")]).unwrap();
        assert_eq!(r.iter().map(|n| &n.action).collect::<Vec<_>>(), [&NodeAction::Kept, &NodeAction::Kept]);
        assert_eq!(describe(&t.path().join("dev/nvidia0")), "c 195:0 0666 0:0");
    }

    #[test]
    fn kept_node_gets_its_mode_fixed() {
        if !root_or_skip("kept_node_gets_its_mode_fixed") {
            return;
        }
        let t = new_root();
        mknod(&t.path().join("dev/nvidia0"), 195, 0);
        assert_eq!(apply_own_ns(t.path(), &[gpu0()]).unwrap()[0].action, NodeAction::Kept);
        assert_eq!(describe(&t.path().join("dev/nvidia0")), "c 195:0 0666 0:0");
    }

    #[test]
    fn dev_symlinked_outside_the_root_creates_nothing_there() {
        if !root_or_skip("dev_symlinked_outside_the_root_creates_nothing_there") {
            return;
        }
        let host = tempfile::tempdir().unwrap();
        let t = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(host.path(), t.path().join("dev")).unwrap();

        // The in-root target does not exist: refused.
        let e = apply_own_ns(t.path(), &[gpu0(), cap("nvidia-cap1")]).unwrap_err();
        assert!(matches!(e, RootfsError::DirBlocked { .. }), "{e}");
        assert_eq!(entries(host.path()), Vec::<String>::new());

        // The in-root target exists: the nodes land there, inside the root.
        let inside = t.path().join(host.path().strip_prefix("/").unwrap());
        std::fs::create_dir_all(&inside).unwrap();
        apply_own_ns(t.path(), &[gpu0(), cap("nvidia-cap1")]).unwrap();
        assert_eq!(entries(host.path()), Vec::<String>::new());
        assert_eq!(describe(&inside.join("nvidia0")), "c 195:0 0666 0:0");
        assert_eq!(describe(&inside.join("nvidia-caps/nvidia-cap1")), "c 511:7 0444 0:0");
    }

    #[test]
    fn caps_dir_symlinked_to_etc_never_touches_host_etc() {
        if !root_or_skip("caps_dir_symlinked_to_etc_never_touches_host_etc") {
            return;
        }
        let t = new_root();
        std::fs::create_dir(t.path().join("etc")).unwrap();
        std::os::unix::fs::symlink("/etc", t.path().join("dev/nvidia-caps")).unwrap();
        let name = format!("mighook-test-cap-{}", std::process::id());
        apply_own_ns(t.path(), &[cap(&name)]).unwrap();
        assert_eq!(describe(&Path::new("/etc").join(&name)), "absent");
        assert_eq!(describe(&t.path().join("etc").join(&name)), "c 511:7 0444 0:0");
    }

    #[test]
    fn relative_symlink_climbing_out_stays_inside() {
        if !root_or_skip("relative_symlink_climbing_out_stays_inside") {
            return;
        }
        let host = tempfile::tempdir().unwrap();
        let t = new_root();
        let up = "../".repeat(t.path().components().count() + 2);
        let target = format!("{up}{}", host.path().strip_prefix("/").unwrap().display());
        std::os::unix::fs::symlink(&target, t.path().join("dev/nvidia-caps")).unwrap();
        std::fs::create_dir_all(t.path().join(host.path().strip_prefix("/").unwrap())).unwrap();
        apply_own_ns(t.path(), &[cap("nvidia-cap1")]).unwrap();
        assert_eq!(entries(host.path()), Vec::<String>::new());
    }

    #[test]
    fn wrong_entries_are_replaced_and_symlink_targets_untouched() {
        if !root_or_skip("wrong_entries_are_replaced_and_symlink_targets_untouched") {
            return;
        }
        let host = tempfile::tempdir().unwrap();
        let host_file = host.path().join("precious");
        std::fs::write(&host_file, "host data").unwrap();
        for (what, was) in [
            ("fifo", FileKind::Fifo),
            ("file", FileKind::Regular),
            ("symlink", FileKind::Symlink),
            ("wrong node", FileKind::Char),
        ] {
            let t = new_root();
            let p = t.path().join("dev/nvidia0");
            match what {
                "fifo" => nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap(),
                "file" => std::fs::write(&p, "x").unwrap(),
                "symlink" => std::os::unix::fs::symlink(&host_file, &p).unwrap(),
                _ => mknod(&p, 195, 9),
            }
            let r = apply_own_ns(t.path(), &[gpu0()]).unwrap();
            assert_eq!(r[0].action, NodeAction::Replaced { was }, "{what}");
            assert_eq!(describe(&p), "c 195:0 0666 0:0", "{what}");
        }
        assert_eq!(std::fs::read_to_string(&host_file).unwrap(), "host data");
        assert_eq!(describe(&host_file), "regular file");
    }

    #[test]
    fn directory_at_the_node_path_is_refused() {
        if !root_or_skip("directory_at_the_node_path_is_refused") {
            return;
        }
        let t = new_root();
        std::fs::create_dir(t.path().join("dev/nvidia0")).unwrap();
        let e = apply_own_ns(t.path(), &[gpu0()]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/dev/nvidia0 in the container is a directory; refusing to replace it with a device node"
        );
        assert_eq!(describe(&t.path().join("dev/nvidia0")), "dir 0755");
    }

    /// A process in its own mount namespace with a tmpfs on `<root>/dev`, as at prestart.
    pub(crate) struct Container {
        child: Child,
    }

    impl Container {
        pub(crate) fn start(root: &Path) -> Container {
            let dev = root.join("dev");
            let script = format!("mount -t tmpfs tmpfs '{0}' && touch '{0}/.ready' && exec sleep 60", dev.display());
            let child =
                Command::new("unshare").args(["-m", "--propagation", "private", "sh", "-c", &script]).spawn().unwrap();
            let ready = PathBuf::from(format!("/proc/{}/root{}/.ready", child.id(), dev.display()));
            // Dropping the Container kills and reaps the child on every path, the panic below included.
            let ctr = Container { child };
            for _ in 0..500 {
                if ready.exists() {
                    return ctr;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            panic!("the test container never mounted its /dev tmpfs");
        }

        pub(crate) fn pid(&self) -> i32 {
            self.child.id() as i32
        }

        /// `<root>/<rel>` as the container sees it.
        pub(crate) fn view(&self, root: &Path, rel: &str) -> PathBuf {
            PathBuf::from(format!("/proc/{}/root{}/{rel}", self.pid(), root.display()))
        }
    }

    impl Drop for Container {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    #[test]
    fn nodes_land_in_the_containers_dev_tmpfs_not_the_hosts_dir() {
        if !root_or_skip("nodes_land_in_the_containers_dev_tmpfs_not_the_hosts_dir") {
            return;
        }
        let t = new_root();
        let ctr = Container::start(t.path());
        create_nodes(&LinuxSys, ctr.pid(), t.path(), &[gpu0(), cap("nvidia-cap1")], Path::new("/dev")).unwrap();
        assert_eq!(describe(&ctr.view(t.path(), "dev/nvidia0")), "c 195:0 0666 0:0");
        assert_eq!(describe(&ctr.view(t.path(), "dev/nvidia-caps/nvidia-cap1")), "c 511:7 0444 0:0");
        // The host's <root>/dev, under the container's tmpfs, never saw them.
        assert_eq!(entries(&t.path().join("dev")), Vec::<String>::new());
    }

    /// `LinuxSys` except that `mknodat` gives `EPERM`, as in a user-namespaced mount.
    struct NoMknod;

    impl FsOps for NoMknod {
        type Fd = std::os::fd::OwnedFd;
        fn enter_mount_ns(&self, pid: i32) -> io::Result<()> {
            LinuxSys.enter_mount_ns(pid)
        }
        fn open_dir(&self, path: &Path) -> io::Result<Self::Fd> {
            LinuxSys.open_dir(path)
        }
        fn open_dir_in_root(&self, root: &Self::Fd, path: &Path) -> io::Result<Self::Fd> {
            LinuxSys.open_dir_in_root(root, path)
        }
        fn open_nofollow(&self, path: &Path) -> io::Result<Self::Fd> {
            LinuxSys.open_nofollow(path)
        }
        fn open_at_nofollow(&self, dir: &Self::Fd, name: &OsStr) -> io::Result<Self::Fd> {
            LinuxSys.open_at_nofollow(dir, name)
        }
        fn fstat(&self, fd: &Self::Fd) -> io::Result<FileStat> {
            LinuxSys.fstat(fd)
        }
        fn fs_magic(&self, fd: &Self::Fd) -> io::Result<i64> {
            LinuxSys.fs_magic(fd)
        }
        fn stat_at(&self, dir: &Self::Fd, name: &OsStr) -> io::Result<Option<FileStat>> {
            LinuxSys.stat_at(dir, name)
        }
        fn mkdir_at(&self, dir: &Self::Fd, name: &OsStr, mode: u32) -> io::Result<()> {
            LinuxSys.mkdir_at(dir, name, mode)
        }
        fn mknod_char_at(&self, _: &Self::Fd, _: &OsStr, _: u32, _: u32, _: u32) -> io::Result<()> {
            Err(io::Error::from_raw_os_error(libc::EPERM))
        }
        fn create_file_at(&self, dir: &Self::Fd, name: &OsStr, perm: u32) -> io::Result<()> {
            LinuxSys.create_file_at(dir, name, perm)
        }
        fn unlink_at(&self, dir: &Self::Fd, name: &OsStr) -> io::Result<()> {
            LinuxSys.unlink_at(dir, name)
        }
        fn remove_dir_at(&self, dir: &Self::Fd, name: &OsStr) -> io::Result<()> {
            LinuxSys.remove_dir_at(dir, name)
        }
        fn unmount_at(&self, dir: &Self::Fd, name: &OsStr) -> io::Result<()> {
            LinuxSys.unmount_at(dir, name)
        }
        fn chown_at(&self, dir: &Self::Fd, name: &OsStr, uid: u32, gid: u32) -> io::Result<()> {
            LinuxSys.chown_at(dir, name, uid, gid)
        }
        fn chmod_at(&self, dir: &Self::Fd, name: &OsStr, perm: u32) -> io::Result<()> {
            LinuxSys.chmod_at(dir, name, perm)
        }
        fn bind_mount(&self, src: &Self::Fd, dst: &Self::Fd) -> io::Result<()> {
            LinuxSys.bind_mount(src, dst)
        }
        fn bind_mount_with(&self, src: &Self::Fd, dst: &Self::Fd, attrs: MountAttrs) -> io::Result<()> {
            LinuxSys.bind_mount_with(src, dst, attrs)
        }
        fn mount_tmpfs(&self, dst: &Self::Fd, mode: u32, attrs: MountAttrs) -> io::Result<()> {
            LinuxSys.mount_tmpfs(dst, mode, attrs)
        }
        fn symlink_at(&self, dir: &Self::Fd, name: &OsStr, target: &OsStr) -> io::Result<()> {
            LinuxSys.symlink_at(dir, name, target)
        }
        fn write_new_at(&self, dir: &Self::Fd, name: &OsStr, data: &[u8], perm: u32) -> io::Result<()> {
            LinuxSys.write_new_at(dir, name, data, perm)
        }
        fn fd_path(&self, fd: &Self::Fd) -> io::Result<PathBuf> {
            LinuxSys.fd_path(fd)
        }
        fn readlink_at(&self, dir: &Self::Fd, name: &OsStr) -> io::Result<std::ffi::OsString> {
            LinuxSys.readlink_at(dir, name)
        }
        fn read_at(&self, dir: &Self::Fd, name: &OsStr, limit: u64) -> io::Result<Option<Vec<u8>>> {
            LinuxSys.read_at(dir, name, limit)
        }
        fn list_dir(&self, dir: &Self::Fd, limit: usize) -> io::Result<Vec<std::ffi::OsString>> {
            LinuxSys.list_dir(dir, limit)
        }
        fn soname_at(&self, dir: &Self::Fd, name: &OsStr) -> io::Result<Option<Vec<u8>>> {
            LinuxSys.soname_at(dir, name)
        }
        fn read_file(&self, path: &Path) -> io::Result<String> {
            LinuxSys.read_file(path)
        }
        fn append_file(&self, path: &Path, data: &[u8]) -> io::Result<()> {
            LinuxSys.append_file(path, data)
        }
    }

    #[test]
    fn eperm_bind_mounts_the_checked_host_node() {
        if !root_or_skip("eperm_bind_mounts_the_checked_host_node") {
            return;
        }
        let hostdev = tempfile::tempdir().unwrap();
        mknod(&hostdev.path().join("nvidia7"), 195, 7);
        mknod(&hostdev.path().join("nvidia8"), 195, 99);
        let t = new_root();
        let ctr = Container::start(t.path());
        let hd = hostdev.path();

        let r = create_nodes(&NoMknod, ctr.pid(), t.path(), &[node("/dev/nvidia7", 195, 7, 0o666)], hd).unwrap();
        assert_eq!(r[0].action, NodeAction::BindMounted { host: hd.join("nvidia7"), was: None });
        assert_eq!(describe(&ctr.view(t.path(), "dev/nvidia7")), "c 195:7 0600 0:0");
        let mountinfo = std::fs::read_to_string(format!("/proc/{}/mountinfo", ctr.pid())).unwrap();
        assert!(mountinfo.contains(&format!(" {}/dev/nvidia7 ", t.path().display())), "{mountinfo}");
        // Not in the host namespace.
        assert!(!std::fs::read_to_string("/proc/self/mountinfo").unwrap().contains("/dev/nvidia7 "));

        // Second run: the mount is kept, and the host node's mode is left alone.
        let r = create_nodes(&NoMknod, ctr.pid(), t.path(), &[node("/dev/nvidia7", 195, 7, 0o666)], hd).unwrap();
        assert_eq!(r[0].action, NodeAction::KeptMount);
        assert_eq!(describe(&hd.join("nvidia7")), "c 195:7 0600 0:0");

        // A host node with the wrong minor, or none at all: refused, nothing mounted.
        let e = create_nodes(&NoMknod, ctr.pid(), t.path(), &[node("/dev/nvidia8", 195, 8, 0o666)], hd).unwrap_err();
        assert!(e.to_string().ends_with("is c 195:99, expected c 195:8"), "{e}");
        let e = create_nodes(&NoMknod, ctr.pid(), t.path(), &[node("/dev/nvidia9", 195, 9, 0o666)], hd).unwrap_err();
        assert!(matches!(e, RootfsError::HostNodeMissing { .. }), "{e}");
        assert_eq!(describe(&ctr.view(t.path(), "dev/nvidia8")), "absent");
    }

    /// Rollback in a real namespace: a bind-mounted node and a made dir are
    /// detached and removed when a later node fails (umount2 through the dir's fd).
    #[test]
    fn a_later_failure_unmounts_and_removes_the_bind_mounted_node() {
        if !root_or_skip("a_later_failure_unmounts_and_removes_the_bind_mounted_node") {
            return;
        }
        let hostdev = tempfile::tempdir().unwrap();
        std::fs::create_dir(hostdev.path().join("nvidia-caps")).unwrap();
        mknod(&hostdev.path().join("nvidia-caps/nvidia-cap1"), 511, 7);
        let t = new_root();
        let ctr = Container::start(t.path());
        let hd = hostdev.path();
        let nodes = [cap("nvidia-cap1"), node("/dev/nvidia9", 195, 9, 0o666)];
        let e = create_nodes(&NoMknod, ctr.pid(), t.path(), &nodes, hd).unwrap_err();
        assert!(matches!(e, RootfsError::HostNodeMissing { .. }), "{e}");
        let mountinfo = std::fs::read_to_string(format!("/proc/{}/mountinfo", ctr.pid())).unwrap();
        assert!(!mountinfo.contains("nvidia-cap1"), "{mountinfo}");
        assert_eq!(describe(&ctr.view(t.path(), "dev/nvidia-caps")), "absent");
        assert_eq!(entries(&t.path().join("dev")), Vec::<String>::new());
    }
}
