//! Paths under the driver root, resolved as if the root were `/`.
//!
//! Every symlink is followed by hand, one component at a time: an absolute target
//! restarts at the root, `..` stops at the root. So `libcuda.so.1 -> /etc/passwd`
//! in a driver root under `/run/nvidia/driver` names that root's `etc/passwd`,
//! never the host's. The resolved prefix holds only real (non-symlink) entries,
//! so popping it for `..` is exact. One `lstat` per component, one `readlink`
//! per link, at most [`MAX_HOPS`] links. [`Resolver`] remembers resolved
//! directories, so the many names looked up in one library dir cost one walk of
//! the dir and then an `lstat` (and a `readlink` per link) each.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, Metadata};
use std::io;
use std::path::{Component, Path, PathBuf};

/// Links followed per lookup, as Linux allows (`MAXSYMLINKS`).
pub const MAX_HOPS: u32 = 40;

/// `path` (absolute as seen from the root) resolved under `root`: the real path,
/// still absolute from the root's view (`/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15`),
/// and the `lstat` of what it names (never a symlink).
pub fn in_root(root: &Path, path: &Path) -> io::Result<(PathBuf, Metadata)> {
    walk(root, PathBuf::from("/"), path)
}

/// [`in_root`] for `path` relative to `done`, a real directory (no symlink in it).
fn walk(root: &Path, mut done: PathBuf, path: &Path) -> io::Result<(PathBuf, Metadata)> {
    let mut meta: Option<Metadata> = None;
    // Components still to walk, the next one last.
    let mut pending: Vec<OsString> = Vec::new();
    push_components(&mut pending, path);
    let mut hops = 0;
    while let Some(name) = pending.pop() {
        if name == ".." {
            done.pop();
            meta = None;
            continue;
        }
        let candidate = done.join(&name);
        let host = root.join(candidate.strip_prefix("/").unwrap_or(&candidate));
        let m = fs::symlink_metadata(&host)?;
        if m.file_type().is_symlink() {
            hops += 1;
            if hops > MAX_HOPS {
                return Err(io::Error::from_raw_os_error(libc::ELOOP));
            }
            let target = fs::read_link(&host)?;
            if target.is_absolute() {
                done = PathBuf::from("/");
                meta = None;
            }
            push_components(&mut pending, &target);
            continue;
        }
        if !pending.is_empty() && !m.is_dir() {
            return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
        }
        done = candidate;
        meta = Some(m);
    }
    let meta = match meta {
        Some(m) => m,
        None => fs::symlink_metadata(root.join(done.strip_prefix("/").unwrap_or(&done)))?,
    };
    Ok((done, meta))
}

/// Pushes `path`'s components so that its first one is popped next; `.` and `/` vanish.
fn push_components(pending: &mut Vec<OsString>, path: &Path) {
    let at = pending.len();
    for c in path.components() {
        match c {
            Component::Normal(n) => pending.push(n.to_owned()),
            Component::ParentDir => pending.push("..".into()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    pending[at..].reverse();
}

/// Whether a lookup failed because the thing is not there (as opposed to an I/O problem).
pub fn is_absent(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || matches!(e.raw_os_error(), Some(libc::ENOTDIR | libc::ELOOP))
}

/// `root` joined with a path that is absolute from the root's view.
pub fn host_path(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

/// [`in_root`] with the directories it resolved remembered.
pub struct Resolver<'a> {
    pub root: &'a Path,
    /// Directory as asked → its real path, or `None` when it is not a directory there.
    dirs: HashMap<PathBuf, Option<PathBuf>>,
}

impl<'a> Resolver<'a> {
    pub fn new(root: &'a Path) -> Resolver<'a> {
        Resolver { root, dirs: HashMap::new() }
    }

    /// Same answer as [`in_root`].
    pub fn resolve(&mut self, path: &Path) -> io::Result<(PathBuf, Metadata)> {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else { return in_root(self.root, path) };
        let dir = match self.dirs.get(parent) {
            Some(dir) => dir.clone(),
            None => {
                let dir = match in_root(self.root, parent) {
                    Ok((real, meta)) => meta.is_dir().then_some(real),
                    Err(e) if is_absent(&e) => None,
                    Err(e) => return Err(e),
                };
                self.dirs.insert(parent.to_owned(), dir.clone());
                dir
            }
        };
        let dir = dir.ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        walk(self.root, dir, Path::new(name))
    }
}
