//! Rollback: what one start made inside the container's root, and undoing it.
//!
//! A hook that fails must leave nothing behind. Each step that changes the
//! root records every entry it made and every mount it put there, in order, as
//! a [`Made`]; when a later step fails, the applier undoes the records in
//! reverse order from inside the container's mount namespace: a mount is
//! detached (`umount2(MNT_DETACH | UMOUNT_NOFOLLOW)`), a node, placeholder file
//! or link is unlinked, a directory is removed only when it is empty.
//!
//! Paths are the container's (absolute, as the request wrote them) and are
//! resolved again inside the root (`RESOLVE_IN_ROOT`) for the undo, so an image
//! that swapped a directory for a symlink meanwhile still cannot point the undo
//! at the host. What was *replaced* (an image's symlink or file unlinked to make
//! room) is gone and cannot be restored; the steps remove such an entry only
//! after every check that can fail early, and its made replacement is undone
//! like any other entry.

use std::path::{Component, Path};

use crate::sys::FsOps;

/// One change this start made in the container's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Made {
    /// A directory made (a missing parent, or a mount point for a directory mount).
    Dir(String),
    /// A regular file made as a mount point, or a device node.
    File(String),
    /// A symlink made.
    Link(String),
    /// A bind mount put onto this path.
    Mount(String),
}

impl Made {
    fn path(&self) -> &str {
        match self {
            Made::Dir(p) | Made::File(p) | Made::Link(p) | Made::Mount(p) => p,
        }
    }
}

/// Undoes `made` in reverse order in the root `root` (as the calling thread's
/// namespace sees it). Every record is tried; the ones that could not be
/// undone come back as one line each. A directory that is not empty (the image
/// or someone else put something there) is left and not reported: it is not
/// only ours any more.
pub fn undo_in_root<S: FsOps>(sys: &S, root: &S::Fd, made: &[Made]) -> Vec<String> {
    let mut left = Vec::new();
    for m in made.iter().rev() {
        let path = Path::new(m.path());
        let (Some(name), Some(parent)) = (path.file_name(), path.parent()) else {
            left.push(format!("{}: not a path to undo", m.path()));
            continue;
        };
        let rel: std::path::PathBuf = parent.components().filter(|c| matches!(c, Component::Normal(_))).collect();
        let rel = if rel.as_os_str().is_empty() { Path::new("/").to_path_buf() } else { rel };
        let dir = match sys.open_dir_in_root(root, &rel) {
            Ok(dir) => dir,
            Err(e) => {
                left.push(format!("{}: cannot open its directory: {e}", m.path()));
                continue;
            }
        };
        let r = match m {
            Made::Mount(_) => sys.unmount_at(&dir, name),
            Made::File(_) | Made::Link(_) => sys.unlink_at(&dir, name),
            Made::Dir(_) => match sys.remove_dir_at(&dir, name) {
                Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => Ok(()),
                r => r,
            },
        };
        if let Err(e) = r {
            let what = match m {
                Made::Mount(_) => "unmount",
                Made::Dir(_) => "remove directory",
                _ => "unlink",
            };
            left.push(format!("{}: cannot {what}: {e}", m.path()));
        }
    }
    left
}

/// [`undo_in_root`] from inside the mount namespace of `pid` (on a dedicated
/// thread, as the steps themselves ran), or from the caller's when `None`.
pub fn undo<S: FsOps>(sys: &S, pid: Option<i32>, rootfs: &Path, made: &[Made]) -> Vec<String> {
    if made.is_empty() {
        return Vec::new();
    }
    match super::in_mount_ns(sys, pid, || undo_here(sys, rootfs, made)) {
        Some(Ok(left)) => left,
        Some(Err(e)) => vec![format!("cannot join the mount namespace of pid {} to roll back: {e}", pid.unwrap_or(0))],
        None => vec!["the rollback thread panicked".into()],
    }
}

/// [`undo_in_root`] of `rootfs` as the calling thread's namespace sees it.
pub fn undo_here<S: FsOps>(sys: &S, rootfs: &Path, made: &[Made]) -> Vec<String> {
    if made.is_empty() {
        return Vec::new();
    }
    match sys.open_dir(rootfs) {
        Ok(root) => undo_in_root(sys, &root, made),
        Err(e) => vec![format!("cannot open {} to roll back: {e}", rootfs.display())],
    }
}
