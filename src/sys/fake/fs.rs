//! An in-memory file tree that implements [`FsOps`] and records every call,
//! so the applier's decisions (which calls, in which order) are testable
//! without root. `openat2`'s `RESOLVE_IN_ROOT` is modelled: `..` stops at
//! the root and absolute symlink targets restart at the root.

use crate::sys::fs::{FileKind, FileStat, FsOps, MountAttrs};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io;
use std::path::Path;
use std::sync::Mutex;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Dir,
    Char(u32, u32),
    File(String),
    Fifo,
    Symlink(String),
}

#[derive(Debug, Clone)]
struct Node {
    entry: Entry,
    perm: u32,
    owner: (u32, u32),
    mount_root: bool,
    /// Which file this is; a bind mount shares its source's.
    ino: u64,
    /// The mount it is on: 0 is the root's; see [`RecordingFs::on_mount`].
    mnt_id: u64,
}

fn next_ino() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The fake's file descriptor: the absolute path it was resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeFd(pub String);

#[derive(Default)]
struct State {
    tree: BTreeMap<String, Node>,
    calls: Vec<String>,
    failures: Vec<(String, String, i32)>,
    /// What each bind mount covered, by mount point (innermost last): an unmount brings it back.
    covered: BTreeMap<String, Vec<Option<Node>>>,
    /// The entries under a mount point that a tmpfs mounted there hides, brought back by its unmount.
    hidden: BTreeMap<String, Vec<Vec<(String, Node)>>>,
    /// File system types set with [`RecordingFs::fs_magic`], by path.
    fs_magic: BTreeMap<String, i64>,
}

/// Recording in-memory [`FsOps`].
#[derive(Default)]
pub struct RecordingFs {
    state: Mutex<State>,
}

/// Kernel tests need root; without it they say so loudly and pass.
pub fn root_or_skip(test: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        // Straight to fd 2: the test harness captures eprintln! of passing tests.
        use std::io::Write;
        let _ = writeln!(io::stderr(), "SKIPPED: {test}: needs root (real mknod, setns, mounts and cgroups)");
    }
    root
}

fn err(errno: i32) -> io::Error {
    io::Error::from_raw_os_error(errno)
}

fn parent_of(path: &str) -> &str {
    &path[..path.rfind('/').unwrap_or(0)]
}

fn join(dir: &str, name: &OsStr) -> String {
    format!("{dir}/{}", name.to_string_lossy())
}

impl RecordingFs {
    pub fn new() -> Self {
        Self::default()
    }

    fn put(&self, path: &str, entry: Entry, perm: u32) {
        let mut st = self.state.lock().unwrap();
        let mut prefix = String::new();
        for comp in path.trim_start_matches('/').split('/').collect::<Vec<_>>().split_last().unwrap().1 {
            prefix = format!("{prefix}/{comp}");
            st.tree.entry(prefix.clone()).or_insert(Node {
                entry: Entry::Dir,
                perm: 0o755,
                owner: (0, 0),
                mount_root: false,
                ino: next_ino(),
                mnt_id: 0,
            });
        }
        st.tree.insert(
            path.to_string(),
            Node { entry, perm, owner: (0, 0), mount_root: false, ino: next_ino(), mnt_id: 0 },
        );
    }

    /// Add a directory (and its parents).
    pub fn dir(self, path: &str) -> Self {
        self.put(path, Entry::Dir, 0o755);
        self
    }
    /// Add a char device node.
    pub fn char_dev(self, path: &str, major: u32, minor: u32, perm: u32) -> Self {
        self.put(path, Entry::Char(major, minor), perm);
        self
    }
    /// Add a regular file with contents.
    pub fn file(self, path: &str, contents: &str) -> Self {
        self.put(path, Entry::File(contents.into()), 0o644);
        self
    }
    pub fn fifo(self, path: &str) -> Self {
        self.put(path, Entry::Fifo, 0o644);
        self
    }
    pub fn symlink(self, path: &str, target: &str) -> Self {
        self.put(path, Entry::Symlink(target.into()), 0o777);
        self
    }
    /// Give `path` another owner.
    pub fn owned(self, path: &str, uid: u32, gid: u32) -> Self {
        self.update(path, |n| n.owner = (uid, gid)).expect("owned: no such entry");
        self
    }
    /// Mark `path` as the root of a mount (as a bind-mounted node would be).
    pub fn mounted(self, path: &str) -> Self {
        self.update(path, |n| n.mount_root = true).expect("mounted: no such entry");
        self
    }
    /// Put `path` and everything under it on a file system of type `magic`
    /// (`fstatfs` `f_type`); elsewhere it is ext4's.
    pub fn fs_magic(self, path: &str, magic: i64) -> Self {
        self.state.lock().unwrap().fs_magic.insert(path.into(), magic);
        self
    }
    /// Put `path` and everything under it on mount `id` (a mount other than the root's).
    pub fn on_mount(self, path: &str, id: u64) -> Self {
        let mut st = self.state.lock().unwrap();
        let prefix = format!("{path}/");
        for (p, n) in st.tree.iter_mut() {
            if p == path || p.starts_with(&prefix) {
                n.mnt_id = id;
            }
        }
        drop(st);
        self
    }
    /// Make `op` (the first word of its call record) on `path` fail with `errno`;
    /// `*` matches any path, a trailing `*` any path it is a prefix of; op
    /// `call` with a whole call line (`append /x c 195:1 rw`) fails just that call.
    pub fn fail(self, op: &str, path: &str, errno: i32) -> Self {
        self.state.lock().unwrap().failures.push((op.into(), path.into(), errno));
        self
    }

    /// Every call, in order.
    pub fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }

    /// Only the calls that change something.
    pub fn changes(&self) -> Vec<String> {
        const READS: [&str; 10] =
            ["open", "open-in-root", "open-nofollow", "fstat", "statfs", "stat", "read", "readlink", "list", "soname"];
        self.calls().into_iter().filter(|c| !READS.contains(&c.split(' ').next().unwrap())).collect()
    }

    /// `c 195:0 0666 0:0`, `file "text"`, `dir 0755`, `fifo`, `-> target`; `None` if absent.
    pub fn describe(&self, path: &str) -> Option<String> {
        let st = self.state.lock().unwrap();
        let n = st.tree.get(path)?;
        let mount = if n.mount_root { " (mount)" } else { "" };
        Some(match &n.entry {
            Entry::Dir => format!("dir {:04o}", n.perm),
            Entry::Char(ma, mi) => format!("c {ma}:{mi} {:04o} {}:{}{mount}", n.perm, n.owner.0, n.owner.1),
            Entry::File(s) => format!("file {s:?}{mount}"),
            Entry::Fifo => "fifo".into(),
            Entry::Symlink(t) => format!("-> {t}"),
        })
    }

    /// Every entry as `path: description`, sorted: to compare a tree before and after.
    pub fn snapshot(&self) -> Vec<String> {
        let paths: Vec<String> = self.state.lock().unwrap().tree.keys().cloned().collect();
        paths.into_iter().map(|p| format!("{p}: {}", self.describe(&p).unwrap_or_default())).collect()
    }

    /// Record a call; fail it if a failure was injected for it.
    fn record(&self, op: &str, path: &str, detail: &str) -> io::Result<()> {
        let mut st = self.state.lock().unwrap();
        let line = if detail.is_empty() { format!("{op} {path}") } else { format!("{op} {path} {detail}") };
        st.calls.push(line.clone());
        let hit = |p: &String| p == path || p.strip_suffix('*').is_some_and(|pre| path.starts_with(pre));
        // Op `call`: the whole call line, to fail one of several calls on a path.
        match st.failures.iter().find(|(o, p, _)| (o == op && hit(p)) || (o == "call" && *p == line)) {
            Some(&(_, _, errno)) => Err(err(errno)),
            None => Ok(()),
        }
    }

    /// Resolve `path` with `root` as `/` (`""` is the real root), following
    /// symlinks in every component, the last one too.
    fn resolve(&self, root: &str, path: &str) -> io::Result<String> {
        let st = self.state.lock().unwrap();
        let mut todo: Vec<String> = path.split('/').rev().map(String::from).collect();
        let mut cur: Vec<String> = Vec::new();
        let mut hops = 0;
        while let Some(comp) = todo.pop() {
            match comp.as_str() {
                "" | "." => continue,
                ".." => {
                    cur.pop();
                    continue;
                }
                _ => {}
            }
            cur.push(comp);
            let full = format!("{root}/{}", cur.join("/"));
            match st.tree.get(&full).map(|n| &n.entry) {
                None => return Err(err(libc::ENOENT)),
                Some(Entry::Dir) => {}
                Some(Entry::Symlink(target)) => {
                    hops += 1;
                    if hops > 40 {
                        return Err(err(libc::ELOOP));
                    }
                    cur.pop();
                    if target.starts_with('/') {
                        cur.clear();
                    }
                    todo.extend(target.split('/').rev().map(String::from));
                }
                Some(_) if !todo.is_empty() => return Err(err(libc::ENOTDIR)),
                Some(_) => {}
            }
        }
        Ok(format!("{root}/{}", cur.join("/")).trim_end_matches('/').to_string())
    }

    fn node(&self, path: &str) -> Option<Node> {
        self.state.lock().unwrap().tree.get(path).cloned()
    }

    fn stat_of(n: &Node) -> FileStat {
        let (kind, rdev) = match n.entry {
            Entry::Dir => (FileKind::Dir, (0, 0)),
            Entry::Char(ma, mi) => (FileKind::Char, (ma, mi)),
            Entry::File(_) => (FileKind::Regular, (0, 0)),
            Entry::Fifo => (FileKind::Fifo, (0, 0)),
            Entry::Symlink(_) => (FileKind::Symlink, (0, 0)),
        };
        FileStat {
            kind,
            perm: n.perm,
            uid: n.owner.0,
            gid: n.owner.1,
            rdev_major: rdev.0,
            rdev_minor: rdev.1,
            mount_root: n.mount_root,
            dev: 0,
            ino: n.ino,
            mnt_id: n.mnt_id,
        }
    }

    fn create(&self, path: &str, entry: Entry, perm: u32) -> io::Result<()> {
        let mut st = self.state.lock().unwrap();
        if st.tree.contains_key(path) {
            return Err(err(libc::EEXIST));
        }
        if !matches!(st.tree.get(parent_of(path)).map(|n| &n.entry), Some(Entry::Dir)) && !parent_of(path).is_empty() {
            return Err(err(libc::ENOENT));
        }
        st.tree.insert(path.into(), Node { entry, perm, owner: (0, 0), mount_root: false, ino: next_ino(), mnt_id: 0 });
        Ok(())
    }

    fn update(&self, path: &str, f: impl FnOnce(&mut Node)) -> io::Result<()> {
        let mut st = self.state.lock().unwrap();
        f(st.tree.get_mut(path).ok_or_else(|| err(libc::ENOENT))?);
        Ok(())
    }
}

impl FsOps for RecordingFs {
    type Fd = FakeFd;

    fn enter_mount_ns(&self, pid: i32) -> io::Result<()> {
        self.record("setns", &format!("/proc/{pid}/ns/mnt"), "")
    }

    fn open_dir(&self, path: &Path) -> io::Result<FakeFd> {
        let p = path.to_string_lossy();
        self.record("open", &p, "")?;
        let r = self.resolve("", &p)?;
        match self.node(&r).map(|n| n.entry) {
            Some(Entry::Dir) => Ok(FakeFd(r)),
            _ => Err(err(libc::ENOTDIR)),
        }
    }

    fn open_dir_in_root(&self, root: &FakeFd, path: &Path) -> io::Result<FakeFd> {
        let p = path.to_string_lossy();
        self.record("open-in-root", &root.0, &p)?;
        let r = self.resolve(&root.0, &p)?;
        match self.node(&r).map(|n| n.entry) {
            Some(Entry::Dir) => Ok(FakeFd(r)),
            _ if r == root.0 => Ok(FakeFd(r)),
            _ => Err(err(libc::ENOTDIR)),
        }
    }

    fn open_nofollow(&self, path: &Path) -> io::Result<FakeFd> {
        let p = path.to_string_lossy();
        self.record("open-nofollow", &p, "")?;
        let parent = self.resolve("", parent_of(&p))?;
        let full = format!("{parent}/{}", &p[p.rfind('/').unwrap() + 1..]);
        match self.node(&full) {
            Some(_) => Ok(FakeFd(full)),
            None => Err(err(libc::ENOENT)),
        }
    }

    fn open_at_nofollow(&self, dir: &FakeFd, name: &OsStr) -> io::Result<FakeFd> {
        let p = join(&dir.0, name);
        self.record("open-nofollow", &p, "")?;
        self.node(&p).map(|_| FakeFd(p)).ok_or_else(|| err(libc::ENOENT))
    }

    fn fstat(&self, fd: &FakeFd) -> io::Result<FileStat> {
        self.record("fstat", &fd.0, "")?;
        self.node(&fd.0).map(|n| Self::stat_of(&n)).ok_or_else(|| err(libc::EBADF))
    }

    fn fs_magic(&self, fd: &FakeFd) -> io::Result<i64> {
        const EXT4_SUPER_MAGIC: i64 = 0xef53;
        self.record("statfs", &fd.0, "")?;
        self.node(&fd.0).ok_or_else(|| err(libc::EBADF))?;
        let st = self.state.lock().unwrap();
        let on = |p: &String| *p == fd.0 || fd.0.starts_with(&format!("{p}/"));
        Ok(st.fs_magic.iter().filter(|(p, _)| on(p)).max_by_key(|(p, _)| p.len()).map_or(EXT4_SUPER_MAGIC, |(_, &m)| m))
    }

    fn stat_at(&self, dir: &FakeFd, name: &OsStr) -> io::Result<Option<FileStat>> {
        let p = join(&dir.0, name);
        self.record("stat", &p, "")?;
        Ok(self.node(&p).map(|n| Self::stat_of(&n)))
    }

    fn mkdir_at(&self, dir: &FakeFd, name: &OsStr, mode: u32) -> io::Result<()> {
        let p = join(&dir.0, name);
        self.record("mkdir", &p, &format!("{mode:04o}"))?;
        self.create(&p, Entry::Dir, mode)
    }

    fn mknod_char_at(&self, dir: &FakeFd, name: &OsStr, perm: u32, major: u32, minor: u32) -> io::Result<()> {
        let p = join(&dir.0, name);
        self.record("mknod", &p, &format!("c {major}:{minor} {perm:04o}"))?;
        self.create(&p, Entry::Char(major, minor), perm)
    }

    fn create_file_at(&self, dir: &FakeFd, name: &OsStr, perm: u32) -> io::Result<()> {
        let p = join(&dir.0, name);
        self.record("create", &p, &format!("{perm:04o}"))?;
        self.create(&p, Entry::File(String::new()), perm)
    }

    fn unlink_at(&self, dir: &FakeFd, name: &OsStr) -> io::Result<()> {
        let p = join(&dir.0, name);
        self.record("unlink", &p, "")?;
        let mut st = self.state.lock().unwrap();
        match st.tree.get(&p) {
            None => Err(err(libc::ENOENT)),
            Some(n) if n.entry == Entry::Dir => Err(err(libc::EISDIR)),
            Some(n) if n.mount_root => Err(err(libc::EBUSY)),
            Some(_) => {
                st.tree.remove(&p);
                Ok(())
            }
        }
    }

    fn remove_dir_at(&self, dir: &FakeFd, name: &OsStr) -> io::Result<()> {
        let p = join(&dir.0, name);
        self.record("rmdir", &p, "")?;
        let mut st = self.state.lock().unwrap();
        match st.tree.get(&p) {
            None => Err(err(libc::ENOENT)),
            Some(n) if n.entry != Entry::Dir => Err(err(libc::ENOTDIR)),
            Some(n) if n.mount_root => Err(err(libc::EBUSY)),
            Some(_)
                if st.tree.keys().any(|k| k.len() > p.len() && k.starts_with(&p) && k.as_bytes()[p.len()] == b'/') =>
            {
                Err(err(libc::ENOTEMPTY))
            }
            Some(_) => {
                st.tree.remove(&p);
                Ok(())
            }
        }
    }

    fn unmount_at(&self, dir: &FakeFd, name: &OsStr) -> io::Result<()> {
        let p = join(&dir.0, name);
        self.record("umount", &p, "")?;
        let mut st = self.state.lock().unwrap();
        let Some(was) = st.covered.get_mut(&p).and_then(Vec::pop) else {
            return Err(err(libc::EINVAL));
        };
        // A tmpfs unmounted takes what was made in it (and mounted below it) along.
        if let Some(hidden) = st.hidden.get_mut(&p).and_then(Vec::pop) {
            let prefix = format!("{p}/");
            st.tree.retain(|k, _| !k.starts_with(&prefix));
            st.tree.extend(hidden);
        }
        match was {
            Some(n) => st.tree.insert(p, n),
            None => st.tree.remove(&p),
        };
        Ok(())
    }

    fn chown_at(&self, dir: &FakeFd, name: &OsStr, uid: u32, gid: u32) -> io::Result<()> {
        let p = join(&dir.0, name);
        self.record("chown", &p, &format!("{uid}:{gid}"))?;
        self.update(&p, |n| n.owner = (uid, gid))
    }

    fn chmod_at(&self, dir: &FakeFd, name: &OsStr, perm: u32) -> io::Result<()> {
        let p = join(&dir.0, name);
        self.record("chmod", &p, &format!("{perm:04o}"))?;
        self.update(&p, |n| n.perm = perm)
    }

    fn bind_mount(&self, src: &FakeFd, dst: &FakeFd) -> io::Result<()> {
        self.record("bind", &src.0, &format!("-> {}", dst.0))?;
        let mut n = self.node(&src.0).ok_or_else(|| err(libc::EBADF))?;
        n.mount_root = true;
        let mut st = self.state.lock().unwrap();
        let was = st.tree.insert(dst.0.clone(), n);
        st.covered.entry(dst.0.clone()).or_default().push(was);
        Ok(())
    }

    fn bind_mount_with(&self, src: &FakeFd, dst: &FakeFd, attrs: MountAttrs) -> io::Result<()> {
        self.record("bind", &src.0, &format!("-> {} {attrs}", dst.0))?;
        let mut n = self.node(&src.0).ok_or_else(|| err(libc::EBADF))?;
        n.mount_root = true;
        let mut st = self.state.lock().unwrap();
        let was = st.tree.insert(dst.0.clone(), n);
        st.covered.entry(dst.0.clone()).or_default().push(was);
        Ok(())
    }

    fn mount_tmpfs(&self, dst: &FakeFd, mode: u32, attrs: MountAttrs) -> io::Result<()> {
        self.record("tmpfs", &dst.0, &format!("{mode:04o} {attrs}"))?;
        let mut st = self.state.lock().unwrap();
        let was = st.tree.get(&dst.0).cloned().ok_or_else(|| err(libc::ENOENT))?;
        let prefix = format!("{}/", dst.0);
        let under: Vec<String> = st.tree.keys().filter(|k| k.starts_with(&prefix)).cloned().collect();
        let hidden: Vec<(String, Node)> = under.into_iter().map(|k| (k.clone(), st.tree.remove(&k).unwrap())).collect();
        st.hidden.entry(dst.0.clone()).or_default().push(hidden);
        let node = Node { entry: Entry::Dir, perm: mode, owner: (0, 0), mount_root: true, ino: next_ino(), mnt_id: 0 };
        st.tree.insert(dst.0.clone(), node);
        st.covered.entry(dst.0.clone()).or_default().push(Some(was));
        Ok(())
    }

    fn symlink_at(&self, dir: &FakeFd, name: &OsStr, target: &OsStr) -> io::Result<()> {
        let p = join(&dir.0, name);
        self.record("symlink", &p, &format!("-> {}", target.to_string_lossy()))?;
        self.create(&p, Entry::Symlink(target.to_string_lossy().into_owned()), 0o777)
    }

    fn write_new_at(&self, dir: &FakeFd, name: &OsStr, data: &[u8], perm: u32) -> io::Result<()> {
        let p = join(&dir.0, name);
        self.record("write", &p, &format!("{} bytes {perm:04o}", data.len()))?;
        self.create(&p, Entry::File(String::from_utf8_lossy(data).into_owned()), perm)
    }

    fn fd_path(&self, fd: &FakeFd) -> io::Result<std::path::PathBuf> {
        Ok(fd.0.clone().into())
    }

    fn readlink_at(&self, dir: &FakeFd, name: &OsStr) -> io::Result<std::ffi::OsString> {
        let p = join(&dir.0, name);
        self.record("readlink", &p, "")?;
        match self.node(&p).map(|n| n.entry) {
            Some(Entry::Symlink(t)) => Ok(t.into()),
            Some(_) => Err(err(libc::EINVAL)),
            None => Err(err(libc::ENOENT)),
        }
    }

    fn read_at(&self, dir: &FakeFd, name: &OsStr, limit: u64) -> io::Result<Option<Vec<u8>>> {
        let p = join(&dir.0, name);
        self.record("read", &p, "")?;
        match self.node(&p).map(|n| n.entry) {
            Some(Entry::File(s)) if s.len() as u64 > limit => Err(io::Error::other("too large")),
            Some(Entry::File(s)) => Ok(Some(s.into_bytes())),
            Some(Entry::Symlink(_)) => Err(err(libc::ELOOP)),
            Some(_) => Err(io::Error::other("not a regular file")),
            None => Ok(None),
        }
    }

    fn list_dir(&self, dir: &FakeFd, limit: usize) -> io::Result<Vec<std::ffi::OsString>> {
        self.record("list", &dir.0, "")?;
        let st = self.state.lock().unwrap();
        let prefix = format!("{}/", dir.0);
        let names: Vec<std::ffi::OsString> = st
            .tree
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix).filter(|rest| !rest.contains('/')).map(Into::into))
            .collect();
        if names.len() > limit {
            return Err(io::Error::other(format!("more than {limit} entries")));
        }
        Ok(names)
    }

    /// A fake library's "ELF" is its contents: `soname:<SONAME>`.
    fn soname_at(&self, dir: &FakeFd, name: &OsStr) -> io::Result<Option<Vec<u8>>> {
        let p = join(&dir.0, name);
        self.record("soname", &p, "")?;
        match self.node(&p).map(|n| n.entry) {
            Some(Entry::File(s)) => Ok(s.strip_prefix("soname:").map(|n| n.as_bytes().to_vec())),
            Some(Entry::Symlink(_)) => Err(err(libc::ELOOP)),
            Some(_) => Ok(None),
            None => Err(err(libc::ENOENT)),
        }
    }

    fn read_file(&self, path: &Path) -> io::Result<String> {
        let p = path.to_string_lossy();
        self.record("read", &p, "")?;
        match self.node(&p).map(|n| n.entry) {
            Some(Entry::File(s)) => Ok(s),
            Some(_) => Err(err(libc::EINVAL)),
            None => Err(err(libc::ENOENT)),
        }
    }

    fn append_file(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let p = path.to_string_lossy();
        let text = String::from_utf8_lossy(data);
        self.record("append", &p, text.trim_end())?;
        match self.node(&p).map(|n| n.entry) {
            Some(Entry::File(_)) => self.update(&p, |n| {
                if let Entry::File(s) = &mut n.entry {
                    s.push_str(&text)
                }
            }),
            Some(Entry::Symlink(_)) => Err(err(libc::ELOOP)),
            Some(_) => Err(err(libc::EINVAL)),
            None => Err(err(libc::ENOENT)),
        }
    }
}
