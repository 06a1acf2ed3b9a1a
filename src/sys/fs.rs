//! File-system half of the syscall seam: the calls the applier makes to put
//! device nodes into a container root and to write v1 device cgroup rules.
//!
//! Every call that touches a container root works on a directory fd that was
//! resolved inside that root (`openat2` with `RESOLVE_IN_ROOT |
//! RESOLVE_NO_MAGICLINKS`), and every final component is handled with the
//! `*at` call on that fd without following it (`AT_SYMLINK_NOFOLLOW`,
//! `O_NOFOLLOW`). Errors are plain [`std::io::Error`]s carrying the errno; the
//! callers add which path and why.
//!
//! [`crate::sys::fake::fs::RecordingFs`] (tests, feature `testing`) is an in-memory tree that records every call.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sched::CloneFlags;
use nix::sys::stat::{Mode, SFlag};

/// What kind of file an entry is (from `st_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Dir,
    Char,
    Block,
    Regular,
    Fifo,
    Symlink,
    Socket,
}

impl FileKind {
    /// A short word for log lines and error messages.
    pub fn describe(self) -> &'static str {
        match self {
            FileKind::Dir => "a directory",
            FileKind::Char => "a char device",
            FileKind::Block => "a block device",
            FileKind::Regular => "a regular file",
            FileKind::Fifo => "a FIFO",
            FileKind::Symlink => "a symlink",
            FileKind::Socket => "a socket",
        }
    }
}

/// The parts of `statx` the applier decides on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStat {
    pub kind: FileKind,
    /// Permission bits only (`st_mode & 0o7777`).
    pub perm: u32,
    /// Owner and group (`stx_uid`, `stx_gid`).
    pub uid: u32,
    pub gid: u32,
    /// `st_rdev` split; zero unless `kind` is a device.
    pub rdev_major: u32,
    pub rdev_minor: u32,
    /// The entry is the root of a mount (e.g. a bind-mounted host node):
    /// changing its mode or owner would change the mount's source.
    pub mount_root: bool,
    /// Device and inode: which file it is (`stx_dev_*`, `stx_ino`).
    pub dev: u64,
    pub ino: u64,
    /// The id of the mount it is on (`stx_mnt_id`, the first field of mountinfo).
    pub mnt_id: u64,
}

/// Attributes of a new bind mount (`MOUNT_ATTR_*`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MountAttrs {
    pub read_only: bool,
    pub nosuid: bool,
    pub nodev: bool,
    pub noexec: bool,
    /// Take the mounts below the source along (`AT_RECURSIVE`, an `rbind`).
    pub recursive: bool,
}

impl std::fmt::Display for MountAttrs {
    /// The mount options as `mount(8)` writes them: `ro,nosuid,nodev`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let all = [
            (self.read_only, "ro"),
            (self.nosuid, "nosuid"),
            (self.nodev, "nodev"),
            (self.noexec, "noexec"),
            (self.recursive, "rbind"),
        ];
        let names: Vec<&str> = all.iter().filter(|(on, _)| *on).map(|(_, n)| *n).collect();
        f.write_str(&names.join(","))
    }
}

/// File-system calls, each resolved inside a container root or on a
/// kernel-owned host path (`/proc`, cgroupfs).
///
/// `Sync` because the applier makes the container-root calls from a dedicated
/// thread that joins the container's mount namespace.
pub trait FsOps: Sync {
    /// An open `O_PATH` file descriptor (or the fake's stand-in).
    type Fd: std::fmt::Debug + Send;

    /// Move the calling thread, and only it, into the mount namespace of `pid`:
    /// `unshare(CLONE_FS)` then `setns(/proc/<pid>/ns/mnt, CLONE_NEWNS)`.
    /// The thread must end afterwards; never call this on a thread that lives on.
    fn enter_mount_ns(&self, pid: i32) -> io::Result<()>;
    /// Open a trusted absolute directory path (the bundle's rootfs) as `O_PATH`.
    fn open_dir(&self, path: &Path) -> io::Result<Self::Fd>;
    /// Open `path` as a directory, resolved with `root` as `/`
    /// (`RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`): symlinks, `..` and absolute
    /// targets can never leave `root`.
    fn open_dir_in_root(&self, root: &Self::Fd, path: &Path) -> io::Result<Self::Fd>;
    /// Open a host path as `O_PATH | O_NOFOLLOW` (the host node of a bind mount).
    fn open_nofollow(&self, path: &Path) -> io::Result<Self::Fd>;
    /// Open `name` in `dir` as `O_PATH | O_NOFOLLOW`.
    fn open_at_nofollow(&self, dir: &Self::Fd, name: &OsStr) -> io::Result<Self::Fd>;
    /// `statx` of an open fd.
    fn fstat(&self, fd: &Self::Fd) -> io::Result<FileStat>;
    /// The type of the file system `fd` is on (`fstatfs` `f_type`, e.g. `PROC_SUPER_MAGIC`).
    fn fs_magic(&self, fd: &Self::Fd) -> io::Result<i64>;
    /// `statx(dir, name, AT_SYMLINK_NOFOLLOW)`; `None` when there is no entry.
    fn stat_at(&self, dir: &Self::Fd, name: &OsStr) -> io::Result<Option<FileStat>>;
    /// `mkdirat(dir, name, mode)`.
    fn mkdir_at(&self, dir: &Self::Fd, name: &OsStr, mode: u32) -> io::Result<()>;
    /// `mknodat(dir, name, S_IFCHR | perm, makedev(major, minor))`.
    fn mknod_char_at(&self, dir: &Self::Fd, name: &OsStr, perm: u32, major: u32, minor: u32) -> io::Result<()>;
    /// Create an empty regular file (`O_CREAT | O_EXCL | O_NOFOLLOW`): a bind-mount target.
    fn create_file_at(&self, dir: &Self::Fd, name: &OsStr, perm: u32) -> io::Result<()>;
    /// `unlinkat(dir, name, 0)`: removes the entry itself, never what it points to.
    fn unlink_at(&self, dir: &Self::Fd, name: &OsStr) -> io::Result<()>;
    /// `unlinkat(dir, name, AT_REMOVEDIR)`: removes an empty directory (rollback).
    fn remove_dir_at(&self, dir: &Self::Fd, name: &OsStr) -> io::Result<()>;
    /// `umount2(MNT_DETACH | UMOUNT_NOFOLLOW)` of the mount on `name` in `dir`
    /// (rollback of a bind mount this start made). The last component is never
    /// followed, so a symlink put there meanwhile cannot redirect it.
    fn unmount_at(&self, dir: &Self::Fd, name: &OsStr) -> io::Result<()>;
    /// `fchownat(dir, name, uid, gid, AT_SYMLINK_NOFOLLOW)`.
    fn chown_at(&self, dir: &Self::Fd, name: &OsStr, uid: u32, gid: u32) -> io::Result<()>;
    /// Set the permission bits of `name` in `dir` without following a symlink.
    fn chmod_at(&self, dir: &Self::Fd, name: &OsStr, perm: u32) -> io::Result<()>;
    /// Bind-mount `src` onto `dst` (both open fds, so no path is looked up again).
    fn bind_mount(&self, src: &Self::Fd, dst: &Self::Fd) -> io::Result<()>;
    /// [`bind_mount`](FsOps::bind_mount) with mount attributes set on the new
    /// mount before it is attached (`mount_setattr`), so it is never visible
    /// writable; `recursive` takes the mounts below `src` along.
    fn bind_mount_with(&self, src: &Self::Fd, dst: &Self::Fd, attrs: MountAttrs) -> io::Result<()>;
    /// Mount a new tmpfs (`mode` for its root, 1 MiB at most) onto `dst`, with
    /// `attrs` set before it is attached (`fsopen`, `fsmount`, `move_mount`).
    fn mount_tmpfs(&self, dst: &Self::Fd, mode: u32, attrs: MountAttrs) -> io::Result<()>;
    /// `symlinkat(target, dir, name)`.
    fn symlink_at(&self, dir: &Self::Fd, name: &OsStr, target: &OsStr) -> io::Result<()>;
    /// Create `name` in `dir` (`O_CREAT | O_EXCL | O_NOFOLLOW`) holding `data`, mode `perm`.
    fn write_new_at(&self, dir: &Self::Fd, name: &OsStr, data: &[u8], perm: u32) -> io::Result<()>;
    /// The path an open fd names, as the calling thread's namespace sees it.
    fn fd_path(&self, fd: &Self::Fd) -> io::Result<std::path::PathBuf>;
    /// `readlinkat(dir, name)`.
    fn readlink_at(&self, dir: &Self::Fd, name: &OsStr) -> io::Result<std::ffi::OsString>;
    /// The contents of the regular file `name` in `dir`, opened `O_NOFOLLOW`;
    /// `None` when there is no entry. Anything but a regular file, or more than
    /// `limit` bytes, is an error.
    fn read_at(&self, dir: &Self::Fd, name: &OsStr, limit: u64) -> io::Result<Option<Vec<u8>>>;
    /// The names in `dir` (without `.` and `..`), in no particular order; more
    /// than `limit` is an error (an image dir is hostile input).
    fn list_dir(&self, dir: &Self::Fd, limit: usize) -> io::Result<Vec<std::ffi::OsString>>;
    /// The ELF `DT_SONAME` of the regular file `name` in `dir`, opened `O_NOFOLLOW`
    /// and read with a few positioned reads; `None` for anything but an ELF64
    /// shared library with a SONAME.
    fn soname_at(&self, dir: &Self::Fd, name: &OsStr) -> io::Result<Option<Vec<u8>>>;
    /// Read a kernel-owned text file (`/proc/<pid>/cgroup`, `/proc/self/mountinfo`).
    fn read_file(&self, path: &Path) -> io::Result<String>;
    /// One `write` of `data` to an existing file opened `O_WRONLY | O_APPEND |
    /// O_NOFOLLOW` (no `O_CREAT`): a cgroup v1 `devices.allow` line.
    fn append_file(&self, path: &Path, data: &[u8]) -> io::Result<()>;
    /// [`append_file`](FsOps::append_file) of each chunk in order, through one
    /// open of `path`: one `write` per chunk. On failure, the index of the
    /// chunk that was not written (0 when the open failed) and the error.
    fn append_each(&self, path: &Path, chunks: &[&[u8]]) -> Result<(), (usize, io::Error)> {
        for (i, c) in chunks.iter().enumerate() {
            self.append_file(path, c).map_err(|e| (i, e))?;
        }
        Ok(())
    }
}

// Syscalls newer than some libc targets know about; the numbers are the same
// on every architecture since the 5.x unification of syscall tables.
const SYS_OPEN_TREE: libc::c_long = 428;
const SYS_MOVE_MOUNT: libc::c_long = 429;
const SYS_FCHMODAT2: libc::c_long = 452;
const SYS_FSOPEN: libc::c_long = 430;
const SYS_FSCONFIG: libc::c_long = 431;
const SYS_FSMOUNT: libc::c_long = 432;
const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const SYS_MOUNT_SETATTR: libc::c_long = 442;
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;

/// Attaches the detached mount `mount` (open_tree, fsmount) onto `dst`.
fn move_mount_onto(mount: &OwnedFd, dst: &OwnedFd) -> io::Result<()> {
    let empty = CString::default();
    // SAFETY: valid fds and C strings.
    check(unsafe {
        libc::syscall(
            SYS_MOVE_MOUNT,
            mount.as_raw_fd(),
            empty.as_ptr(),
            dst.as_raw_fd(),
            empty.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    })?;
    Ok(())
}

impl MountAttrs {
    /// The `MOUNT_ATTR_*` bits of mount_setattr(2) and fsmount(2).
    fn bits(self) -> u64 {
        [
            (self.read_only, MOUNT_ATTR_RDONLY),
            (self.nosuid, MOUNT_ATTR_NOSUID),
            (self.nodev, MOUNT_ATTR_NODEV),
            (self.noexec, MOUNT_ATTR_NOEXEC),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .fold(0, |acc, (_, bit)| acc | bit)
    }
}

/// `struct mount_attr` of `mount_setattr(2)`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}
const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;

fn cstr(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn check(rc: libc::c_long) -> io::Result<libc::c_long> {
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(rc) }
}

fn statx_at(dir: libc::c_int, name: &CString, flags: libc::c_int) -> io::Result<FileStat> {
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and an out-buffer of the right type.
    let rc = unsafe {
        libc::statx(
            dir,
            name.as_ptr(),
            flags | libc::AT_SYMLINK_NOFOLLOW,
            libc::STATX_TYPE
                | libc::STATX_MODE
                | libc::STATX_INO
                | libc::STATX_MNT_ID
                | libc::STATX_UID
                | libc::STATX_GID,
            &mut st,
        )
    };
    check(rc as libc::c_long)?;
    let mode = u32::from(st.stx_mode);
    let kind = match mode & libc::S_IFMT {
        libc::S_IFDIR => FileKind::Dir,
        libc::S_IFCHR => FileKind::Char,
        libc::S_IFBLK => FileKind::Block,
        libc::S_IFREG => FileKind::Regular,
        libc::S_IFIFO => FileKind::Fifo,
        libc::S_IFLNK => FileKind::Symlink,
        _ => FileKind::Socket,
    };
    let device = matches!(kind, FileKind::Char | FileKind::Block);
    Ok(FileStat {
        kind,
        perm: mode & 0o7777,
        uid: st.stx_uid,
        gid: st.stx_gid,
        rdev_major: if device { st.stx_rdev_major } else { 0 },
        rdev_minor: if device { st.stx_rdev_minor } else { 0 },
        mount_root: st.stx_attributes_mask & libc::STATX_ATTR_MOUNT_ROOT as u64 != 0
            && st.stx_attributes & libc::STATX_ATTR_MOUNT_ROOT as u64 != 0,
        dev: libc::makedev(st.stx_dev_major, st.stx_dev_minor),
        ino: st.stx_ino,
        mnt_id: st.stx_mnt_id,
    })
}

/// This process's procfs, opened once (before any thread joins a container's
/// mount namespace: [`FsOps::enter_mount_ns`] opens it first), where `/proc`
/// may be the container's procfs in another pid namespace or not procfs at all.
fn host_proc() -> io::Result<&'static OwnedFd> {
    static HOST_PROC: std::sync::OnceLock<Result<OwnedFd, i32>> = std::sync::OnceLock::new();
    let opened = HOST_PROC.get_or_init(|| {
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let fd = nix::fcntl::open("/proc", flags, Mode::empty()).map_err(|e| e as i32)?;
        match fs_magic_of(&fd) {
            Ok(libc::PROC_SUPER_MAGIC) => Ok(fd),
            Ok(_) => Err(libc::ENOTSUP),
            Err(e) => Err(e.raw_os_error().unwrap_or(libc::EIO)),
        }
    });
    opened.as_ref().map_err(|&errno| {
        let e = io::Error::from_raw_os_error(errno);
        io::Error::new(e.kind(), format!("no procfs at /proc to reopen a checked file through: {e}"))
    })
}

/// The file system type (`f_type`, e.g. `PROC_SUPER_MAGIC`) `fd` is on.
fn fs_magic_of(fd: &OwnedFd) -> io::Result<i64> {
    // SAFETY: a zeroed plain-data struct for the kernel to fill.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid fd and a valid out-pointer.
    if unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.f_type as i64)
}

/// `name` in `dir` opened for reading when it is a regular file; `None` when it
/// is anything else. It is first opened `O_PATH`, which runs no driver's or
/// FIFO's open (a device node or FIFO the container swapped in is never opened
/// for real), then checked, and that exact inode is reopened through
/// `<host procfs>/thread-self/fd/N`: the host's procfs resolves `thread-self`
/// for the calling thread even from inside a container's mount namespace,
/// where `/proc` may be another pid namespace's. Without a host procfs it
/// fails rather than open by name.
fn open_regular_at(dir: &OwnedFd, name: &OsStr) -> io::Result<Option<std::fs::File>> {
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let path = nix::fcntl::openat2(dir, name, how)?;
    let st = statx_at(path.as_raw_fd(), &CString::default(), libc::AT_EMPTY_PATH)?;
    if st.kind != FileKind::Regular {
        return Ok(None);
    }
    let link = format!("thread-self/fd/{}", path.as_raw_fd());
    let flags = OFlag::O_RDONLY | OFlag::O_NOCTTY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let file = std::fs::File::from(nix::fcntl::openat(host_proc()?, link.as_str(), flags, Mode::empty())?);
    // The magic link names the inode itself; checked again all the same.
    let again = statx_at(file.as_raw_fd(), &CString::default(), libc::AT_EMPTY_PATH)?;
    if again.kind != FileKind::Regular || (again.dev, again.ino) != (st.dev, st.ino) {
        return Err(io::Error::other("changed while being opened"));
    }
    Ok(Some(file))
}

impl FsOps for super::LinuxSys {
    type Fd = OwnedFd;

    fn enter_mount_ns(&self, pid: i32) -> io::Result<()> {
        // The host's procfs, for `open_regular_at` after the switch.
        let _ = host_proc();
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/mnt"))?;
        // setns(CLONE_NEWNS) is refused while fs info (root, cwd) is shared with other threads.
        nix::sched::unshare(CloneFlags::CLONE_FS)?;
        nix::sched::setns(ns.as_fd(), CloneFlags::CLONE_NEWNS)?;
        Ok(())
    }

    fn open_dir(&self, path: &Path) -> io::Result<OwnedFd> {
        Ok(nix::fcntl::open(path, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?)
    }

    fn open_dir_in_root(&self, root: &OwnedFd, path: &Path) -> io::Result<OwnedFd> {
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        Ok(nix::fcntl::openat2(root, path, how)?)
    }

    fn open_nofollow(&self, path: &Path) -> io::Result<OwnedFd> {
        Ok(nix::fcntl::open(path, OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())?)
    }

    fn open_at_nofollow(&self, dir: &OwnedFd, name: &OsStr) -> io::Result<OwnedFd> {
        Ok(nix::fcntl::openat(dir, name, OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())?)
    }

    fn fstat(&self, fd: &OwnedFd) -> io::Result<FileStat> {
        statx_at(fd.as_raw_fd(), &CString::default(), libc::AT_EMPTY_PATH)
    }

    fn fs_magic(&self, fd: &OwnedFd) -> io::Result<i64> {
        fs_magic_of(fd)
    }

    fn stat_at(&self, dir: &OwnedFd, name: &OsStr) -> io::Result<Option<FileStat>> {
        match statx_at(dir.as_raw_fd(), &cstr(name)?, 0) {
            Ok(st) => Ok(Some(st)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn mkdir_at(&self, dir: &OwnedFd, name: &OsStr, mode: u32) -> io::Result<()> {
        Ok(nix::sys::stat::mkdirat(dir, name, Mode::from_bits_truncate(mode))?)
    }

    fn mknod_char_at(&self, dir: &OwnedFd, name: &OsStr, perm: u32, major: u32, minor: u32) -> io::Result<()> {
        let dev = libc::makedev(major, minor);
        Ok(nix::sys::stat::mknodat(dir, name, SFlag::S_IFCHR, Mode::from_bits_truncate(perm), dev)?)
    }

    fn create_file_at(&self, dir: &OwnedFd, name: &OsStr, perm: u32) -> io::Result<()> {
        let flags = OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        nix::fcntl::openat(dir, name, flags, Mode::from_bits_truncate(perm))?;
        Ok(())
    }

    fn unlink_at(&self, dir: &OwnedFd, name: &OsStr) -> io::Result<()> {
        Ok(nix::unistd::unlinkat(dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir)?)
    }

    fn remove_dir_at(&self, dir: &OwnedFd, name: &OsStr) -> io::Result<()> {
        Ok(nix::unistd::unlinkat(dir, name, nix::unistd::UnlinkatFlags::RemoveDir)?)
    }

    fn unmount_at(&self, dir: &OwnedFd, name: &OsStr) -> io::Result<()> {
        if name.as_bytes().contains(&b'/') || name.is_empty() || name == "." || name == ".." {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // umount2 takes a path: the dir's fd through /proc (a magic link, followed to
        // exactly that dir in this thread's namespace), then the name, not followed.
        let mut path = format!("/proc/thread-self/fd/{}/", dir.as_raw_fd()).into_bytes();
        path.extend_from_slice(name.as_bytes());
        let path = CString::new(path).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: a valid C string.
        let rc = unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH | libc::UMOUNT_NOFOLLOW) };
        check(rc as libc::c_long).map(|_| ())
    }

    fn chown_at(&self, dir: &OwnedFd, name: &OsStr, uid: u32, gid: u32) -> io::Result<()> {
        let (uid, gid) = (Some(nix::unistd::Uid::from_raw(uid)), Some(nix::unistd::Gid::from_raw(gid)));
        Ok(nix::unistd::fchownat(dir, name, uid, gid, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)?)
    }

    fn chmod_at(&self, dir: &OwnedFd, name: &OsStr, perm: u32) -> io::Result<()> {
        let c = cstr(name)?;
        // SAFETY: valid fd and C string.
        let rc = unsafe {
            libc::syscall(SYS_FCHMODAT2, dir.as_raw_fd(), c.as_ptr(), perm as libc::mode_t, libc::AT_SYMLINK_NOFOLLOW)
        };
        match check(rc) {
            Ok(_) => Ok(()),
            // Kernels before 6.6 have no fchmodat2: chmod the inode through an
            // O_PATH|O_NOFOLLOW fd's /proc/self/fd entry, which cannot be redirected.
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                let fd = self.open_at_nofollow(dir, name)?;
                if self.fstat(&fd)?.kind == FileKind::Symlink {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(
                    format!("/proc/self/fd/{}", fd.as_raw_fd()),
                    std::fs::Permissions::from_mode(perm),
                )
            }
            Err(e) => Err(e),
        }
    }

    fn bind_mount(&self, src: &OwnedFd, dst: &OwnedFd) -> io::Result<()> {
        self.bind_mount_with(src, dst, MountAttrs::default())
    }

    fn bind_mount_with(&self, src: &OwnedFd, dst: &OwnedFd, attrs: MountAttrs) -> io::Result<()> {
        let empty = CString::default();
        let recursive = if attrs.recursive { libc::AT_RECURSIVE as libc::c_uint } else { 0 };
        // SAFETY: valid fd and C string; the result is a new fd we take ownership of.
        let tree = check(unsafe {
            libc::syscall(
                SYS_OPEN_TREE,
                src.as_raw_fd(),
                empty.as_ptr(),
                OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | libc::AT_EMPTY_PATH as libc::c_uint | recursive,
            )
        })?;
        // SAFETY: open_tree returned a fresh fd.
        let tree = unsafe { OwnedFd::from_raw_fd(tree as libc::c_int) };
        let set = attrs.bits();
        if set != 0 {
            let attr = MountAttr { attr_set: set, attr_clr: 0, propagation: 0, userns_fd: 0 };
            // SAFETY: valid fd, C string and a mount_attr of the size passed.
            check(unsafe {
                libc::syscall(
                    SYS_MOUNT_SETATTR,
                    tree.as_raw_fd(),
                    empty.as_ptr(),
                    libc::AT_EMPTY_PATH as libc::c_uint | recursive,
                    &attr as *const MountAttr,
                    std::mem::size_of::<MountAttr>(),
                )
            })?;
        }
        move_mount_onto(&tree, dst)
    }

    fn mount_tmpfs(&self, dst: &OwnedFd, mode: u32, attrs: MountAttrs) -> io::Result<()> {
        let fstype = CString::new("tmpfs").expect("no NUL");
        // SAFETY: a valid C string; the result is a new fd we take ownership of.
        let fs = check(unsafe { libc::syscall(SYS_FSOPEN, fstype.as_ptr(), FSOPEN_CLOEXEC) })?;
        // SAFETY: fsopen returned a fresh fd.
        let fs = unsafe { OwnedFd::from_raw_fd(fs as libc::c_int) };
        let mode = format!("{mode:o}");
        for (key, value) in [("mode", mode.as_str()), ("size", "1m")] {
            let (key, value) = (cstr(OsStr::new(key))?, cstr(OsStr::new(value))?);
            // SAFETY: valid fd and C strings.
            check(unsafe {
                libc::syscall(SYS_FSCONFIG, fs.as_raw_fd(), FSCONFIG_SET_STRING, key.as_ptr(), value.as_ptr(), 0)
            })?;
        }
        // SAFETY: valid fd; no key or value for CMD_CREATE.
        check(unsafe {
            libc::syscall(
                SYS_FSCONFIG,
                fs.as_raw_fd(),
                FSCONFIG_CMD_CREATE,
                std::ptr::null::<libc::c_char>(),
                std::ptr::null::<libc::c_void>(),
                0,
            )
        })?;
        let set = attrs.bits();
        // SAFETY: valid fd; the result is a new fd we take ownership of.
        let mnt = check(unsafe { libc::syscall(SYS_FSMOUNT, fs.as_raw_fd(), FSMOUNT_CLOEXEC, set as libc::c_uint) })?;
        // SAFETY: fsmount returned a fresh fd.
        let mnt = unsafe { OwnedFd::from_raw_fd(mnt as libc::c_int) };
        move_mount_onto(&mnt, dst)
    }

    fn symlink_at(&self, dir: &OwnedFd, name: &OsStr, target: &OsStr) -> io::Result<()> {
        Ok(nix::unistd::symlinkat(target, dir, name)?)
    }

    fn write_new_at(&self, dir: &OwnedFd, name: &OsStr, data: &[u8], perm: u32) -> io::Result<()> {
        use std::io::Write;
        let flags = OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = nix::fcntl::openat(dir, name, flags, Mode::from_bits_truncate(perm))?;
        let mut file = std::fs::File::from(fd);
        file.write_all(data)?;
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(perm))
    }

    fn fd_path(&self, fd: &OwnedFd) -> io::Result<std::path::PathBuf> {
        std::fs::read_link(format!("/proc/thread-self/fd/{}", fd.as_raw_fd()))
    }

    fn readlink_at(&self, dir: &OwnedFd, name: &OsStr) -> io::Result<std::ffi::OsString> {
        Ok(nix::fcntl::readlinkat(dir, name)?)
    }

    fn read_at(&self, dir: &OwnedFd, name: &OsStr, limit: u64) -> io::Result<Option<Vec<u8>>> {
        use std::io::Read;
        let mut file = match open_regular_at(dir, name) {
            Ok(Some(file)) => file,
            Ok(None) => return Err(io::Error::other("not a regular file")),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut bytes = Vec::new();
        file.by_ref().take(limit + 1).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > limit {
            return Err(io::Error::other(format!("larger than {limit} bytes")));
        }
        Ok(Some(bytes))
    }

    fn list_dir(&self, dir: &OwnedFd, limit: usize) -> io::Result<Vec<std::ffi::OsString>> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let mut listing = nix::dir::Dir::openat(dir, ".", flags, Mode::empty())?;
        let mut names = Vec::new();
        for entry in listing.iter() {
            let name = entry?.file_name().to_bytes().to_vec();
            if name == b"." || name == b".." {
                continue;
            }
            if names.len() == limit {
                return Err(io::Error::other(format!("more than {limit} entries")));
            }
            names.push(std::ffi::OsString::from(std::ffi::OsStr::from_bytes(&name)));
        }
        Ok(names)
    }

    fn soname_at(&self, dir: &OwnedFd, name: &OsStr) -> io::Result<Option<Vec<u8>>> {
        let Some(file) = open_regular_at(dir, name)? else { return Ok(None) };
        Ok(crate::driver_files::elf::soname(&file).ok().flatten())
    }

    fn read_file(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn append_file(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.append_each(path, &[data]).map_err(|(_, e)| e)
    }

    fn append_each(&self, path: &Path, chunks: &[&[u8]]) -> Result<(), (usize, io::Error)> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| (0, e))?;
        for (i, data) in chunks.iter().enumerate() {
            // One write per chunk: the cgroup file parses each write as one rule.
            let n = f.write(data).map_err(|e| (i, e))?;
            if n != data.len() {
                return Err((
                    i,
                    io::Error::new(io::ErrorKind::WriteZero, format!("short write ({n} of {} bytes)", data.len())),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod linux_tests {
    use super::*;
    use crate::sys::LinuxSys;

    #[test]
    fn append_each_writes_every_chunk_through_one_open() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("devices.allow");
        std::fs::write(&p, "").unwrap();
        LinuxSys.append_each(&p, &[b"c 195:0 rw\n", b"c 195:255 rw\n"]).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "c 195:0 rw\nc 195:255 rw\n");
    }

    #[test]
    fn append_each_creates_nothing_and_follows_no_symlink() {
        let t = tempfile::tempdir().unwrap();
        let missing = t.path().join("devices.allow");
        let (at, e) = LinuxSys.append_each(&missing, &[b"c 195:0 rw\n"]).unwrap_err();
        assert_eq!((at, e.raw_os_error()), (0, Some(libc::ENOENT)));
        assert!(!missing.exists());
        let target = t.path().join("target");
        std::fs::write(&target, "").unwrap();
        std::os::unix::fs::symlink(&target, &missing).unwrap();
        let (at, e) = LinuxSys.append_each(&missing, &[b"c 195:0 rw\n"]).unwrap_err();
        assert_eq!((at, e.raw_os_error()), (0, Some(libc::ELOOP)));
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "");
    }
}

#[cfg(test)]
mod regular_file_tests {
    use super::*;
    use crate::sys::LinuxSys;
    use std::time::Duration;

    /// A thread blocked opening `fifo` for writing; it reports when the open returns.
    fn blocked_writer(
        fifo: &Path,
    ) -> (std::thread::JoinHandle<io::Result<std::fs::File>>, std::sync::mpsc::Receiver<()>) {
        let (tx, rx) = std::sync::mpsc::channel();
        let path = fifo.to_path_buf();
        let writer = std::thread::spawn(move || {
            let opened = std::fs::OpenOptions::new().write(true).open(&path);
            let _ = tx.send(());
            opened
        });
        // Time for the writer to reach its blocking open.
        std::thread::sleep(Duration::from_millis(200));
        (writer, rx)
    }

    #[test]
    fn a_fifo_named_like_a_library_is_never_opened() {
        let t = tempfile::tempdir().unwrap();
        let fifo = t.path().join("libx.so.1");
        nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o644)).unwrap();
        let (writer, released) = blocked_writer(&fifo);
        let dir = LinuxSys.open_dir(t.path()).unwrap();
        assert_eq!(LinuxSys.soname_at(&dir, OsStr::new("libx.so.1")).unwrap(), None);
        let e = LinuxSys.read_at(&dir, OsStr::new("libx.so.1"), 4096).unwrap_err();
        assert_eq!(e.to_string(), "not a regular file");
        let still_blocked = released.recv_timeout(Duration::from_millis(300)).is_err();
        // Release the writer either way: a reader of our own.
        use std::os::unix::fs::OpenOptionsExt;
        let _reader = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(&fifo).unwrap();
        writer.join().unwrap().unwrap();
        assert!(still_blocked, "the FIFO was opened for reading: its blocked writer went on");
    }

    #[test]
    fn a_symlink_named_like_a_library_is_not_followed() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("real"), "bytes").unwrap();
        std::os::unix::fs::symlink("real", t.path().join("libx.so.1")).unwrap();
        let dir = LinuxSys.open_dir(t.path()).unwrap();
        assert_eq!(LinuxSys.soname_at(&dir, OsStr::new("libx.so.1")).unwrap(), None);
        assert!(LinuxSys.read_at(&dir, OsStr::new("libx.so.1"), 4096).is_err());
        assert_eq!(LinuxSys.read_at(&dir, OsStr::new("real"), 4096).unwrap().unwrap(), b"bytes");
        assert_eq!(LinuxSys.read_at(&dir, OsStr::new("missing"), 4096).unwrap(), None);
    }

    #[test]
    fn a_regular_file_reads_from_a_mount_namespace_whose_proc_is_another_pid_namespaces() {
        if !crate::sys::fake::fs::root_or_skip(
            "a_regular_file_reads_from_a_mount_namespace_whose_proc_is_another_pid_namespaces",
        ) {
            return;
        }
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("ld.so.cache"), "cache bytes").unwrap();
        // A mount namespace whose /proc is a new pid namespace's procfs, as after pivot_root.
        struct Killed(std::process::Child);
        impl Drop for Killed {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let child = Killed(
            std::process::Command::new("unshare")
                .args(["--mount", "--pid", "--fork", "--kill-child", "--mount-proc", "sleep", "30"])
                .spawn()
                .expect("unshare (util-linux)"),
        );
        let pid = child.0.id() as i32;
        // Wait for --mount-proc: pid 1 of the procfs in its namespace is the sleep.
        let their_init = format!("/proc/{pid}/root/proc/1/comm");
        for _ in 0..100 {
            if std::fs::read_to_string(&their_init).is_ok_and(|c| c == "sleep\n") {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let read = std::thread::scope(|s| {
            s.spawn(|| {
                LinuxSys.enter_mount_ns(pid)?;
                assert!(std::fs::read_link("/proc/thread-self").is_err(), "this thread is not in that pid namespace");
                let dir = LinuxSys.open_dir(t.path())?;
                LinuxSys.read_at(&dir, OsStr::new("ld.so.cache"), 4096)
            })
            .join()
            .unwrap()
        });
        drop(child);
        assert_eq!(read.unwrap().unwrap(), b"cache bytes");
    }
}
