//! The one atomic file writer (shim, CDI, setup): a temp file in the same
//! directory, written, given the old file's mode and owner, then renamed over
//! the old one.
//!
//! A reader (runc, dockerd) sees either the old file or the new one, never a
//! half-written one. A symlink in the file's place is refused: renaming over
//! it would silently turn the link into a plain file.
//!
//! [`replace`] does not fsync: it is on every container start (the shim's
//! config.json), where the reader comes right after and a host crash loses the
//! container being started anyway. Two flushes were most of the shim's own
//! time. [`replace_durable`] also fsyncs the file and its directory, for host
//! configuration that must survive a crash.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The temp file's name: hidden, next to the target, unique per process and call.
fn temp_path(path: &Path) -> io::Result<PathBuf> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = path.file_name().ok_or_else(|| io::Error::other("no file name"))?;
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut tmp = std::ffi::OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".mighook-{}-{n}", std::process::id()));
    Ok(path.with_file_name(tmp))
}

fn write_temp(tmp: &Path, contents: &[u8], mode: u32, owner: Option<(u32, u32)>, sync: bool) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(tmp)?;
    f.write_all(contents)?;
    if let Some((uid, gid)) = owner {
        let meta = f.metadata()?;
        if (meta.uid(), meta.gid()) != (uid, gid) {
            std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
        }
    }
    // After the chown: chown clears set-id bits. The umask does not apply to fchmod.
    f.set_permissions(fs::Permissions::from_mode(mode))?;
    if sync { f.sync_all() } else { Ok(()) }
}

/// Replaces `path` with `contents`, atomically for readers but without fsync
/// (see the module docs). An existing file's mode and owner carry over; a new
/// file gets `new_mode` and the caller's owner.
pub fn replace(path: &Path, contents: &[u8], new_mode: u32) -> io::Result<()> {
    replace_with(path, contents, new_mode, false, false)
}

/// [`replace`], then fsync of the file and of its directory, so the new
/// contents survive a host crash.
pub fn replace_durable(path: &Path, contents: &[u8], new_mode: u32) -> io::Result<()> {
    replace_with(path, contents, new_mode, false, true)
}

/// [`replace_durable`], but the file always ends up with `mode`, whatever the old
/// one had: for files other programs must be able to read (CDI specs).
pub fn publish(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    replace_with(path, contents, mode, true, true)
}

fn replace_with(path: &Path, contents: &[u8], new_mode: u32, force_mode: bool, sync: bool) -> io::Result<()> {
    let (mode, owner) = match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(io::Error::other("is a symlink; mighook replaces only plain files (edit the link's target)"));
        }
        Ok(m) if !m.is_file() => return Err(io::Error::other("is not a plain file")),
        Ok(m) => (m.mode() & 0o7777, Some((m.uid(), m.gid()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => (new_mode, None),
        Err(e) => return Err(e),
    };
    let mode = if force_mode { new_mode } else { mode };
    let tmp = temp_path(path)?;
    let result = write_temp(&tmp, contents, mode, owner, sync).and_then(|()| fs::rename(&tmp, path));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
        return result;
    }
    if !sync {
        return Ok(());
    }
    // The rename itself is durable once the directory is synced.
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_keeps_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        fs::write(&p, "old").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        replace(&p, b"new", 0o644).unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "new");
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o7777, 0o640);
    }

    #[test]
    fn new_file_gets_the_given_mode_and_no_temp_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.toml");
        replace(&p, b"x = 1\n", 0o644).unwrap();
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o7777, 0o644);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_symlink_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        fs::write(&target, "t").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(replace(&link, b"new", 0o644).unwrap_err().to_string().contains("symlink"));
        assert_eq!(fs::read_to_string(&target).unwrap(), "t");
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    }

    #[test]
    fn durable_replace_gives_the_same_result() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("daemon.json");
        fs::write(&p, "old").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        replace_durable(&p, b"new", 0o644).unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "new");
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o7777, 0o600);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn publish_sets_the_given_mode_over_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nvidia.json");
        fs::write(&p, "old").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        publish(&p, b"new", 0o644).unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "new");
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o7777, 0o644);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(replace(&dir.path().join("no/such/file"), b"x", 0o644).is_err());
    }
}
