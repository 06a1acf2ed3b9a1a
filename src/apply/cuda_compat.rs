//! CUDA forward compatibility: an image built with the `cuda-compat-X-Y`
//! package carries a newer user-mode driver in `/usr/local/cuda/compat`
//! (`libcuda.so.<newer driver version>` and friends). When that libcuda is newer
//! than the host's driver, the container's loader must find the compat libraries
//! before the injected driver ones; when it is older or the same, never (the
//! older one would not work with the host's kernel module).
//!
//! NVIDIA's `enable-cuda-compat` hook adds the compat dir to the container's
//! `ld.so.conf.d` and lets ldconfig run. mighook runs no ldconfig: the compat
//! dir's libraries become loader-cache entries merged in front of the driver's
//! (see [`super::driver_files::merged_cache`]). The dir is opened inside the
//! root (`RESOLVE_IN_ROOT`: `/usr/local/cuda -> cuda-12.8` is followed, but
//! never out of the root), its entries are listed and stat'ed without following
//! them, and each library's SONAME is read from the file itself with
//! positioned reads. Nothing of the image is executed or written.
//!
//! The rule is `enable-cuda-compat`'s without an ELF compat note: exactly one
//! regular file `libcuda.so.<major>.<...>` in the dir, and its major greater
//! than the host driver's major, compared as numbers (reference
//! `driver-user-space.md` §2.2, §4.4).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::ldcache::{Entry, LdCache};
use crate::sys::FsOps;
use crate::sys::fs::FileKind;

/// Where the `cuda-compat` package's libraries are reached, relative to the root.
pub const COMPAT_DIR: &str = "usr/local/cuda/compat";
/// The package holds a dozen files; a dir with more than this is not one.
const MAX_ENTRIES: usize = 1024;

/// The major of a driver version (`570` of `570.86.10`), when it is one.
fn major(version: &str) -> Option<u64> {
    let major = version.split('.').next()?;
    (!major.is_empty() && major.len() <= 9 && major.bytes().all(|b| b.is_ascii_digit()))
        .then(|| major.parse().ok())
        .flatten()
}

/// Whether a compat libcuda of `compat` (the suffix of `libcuda.so.<compat>`) goes
/// before a host driver of `host`: its major is greater. `None` when either is
/// not a version.
pub fn newer_than_host(compat: &str, host: &str) -> Option<bool> {
    Some(major(compat)? > major(host)?)
}

/// The compat libcuda's version from a file name `libcuda.so.<X>.<Y>...`, as
/// NVIDIA's glob `libcuda.so.*.*` matches it.
fn libcuda_version(name: &OsStr) -> Option<&str> {
    let rest = name.to_str()?.strip_prefix("libcuda.so.")?;
    rest.contains('.').then_some(rest)
}

/// The loader-cache entries of the image's compat dir, to go in front of the
/// driver's, when its libcuda is newer than the host driver `host_version`; else
/// none. Each decision (and why none) is a line in `lines`.
pub fn compat_entries<S: FsOps>(sys: &S, root: &S::Fd, host_version: &str, lines: &mut Vec<String>) -> Vec<Entry> {
    let (dir, path) = match compat_dir(sys, root) {
        Ok(Some(found)) => found,
        Ok(None) => return vec![],
        Err(e) => {
            lines.push(format!("cuda compat: cannot open /{COMPAT_DIR} in the container ({e}); not used"));
            return vec![];
        }
    };
    let mut names = match sys.list_dir(&dir, MAX_ENTRIES) {
        Ok(names) => names,
        Err(e) => {
            lines.push(format!("cuda compat: cannot list {} in the container ({e}); not used", path.display()));
            return vec![];
        }
    };
    names.sort();
    let kind = |name: &OsStr| sys.stat_at(&dir, name).ok().flatten().map(|st| st.kind);
    let libcudas: Vec<&OsString> =
        names.iter().filter(|n| libcuda_version(n).is_some() && kind(n) == Some(FileKind::Regular)).collect();
    let libcuda = match libcudas[..] {
        [] => return vec![],
        [one] => one,
        _ => {
            lines.push(format!("cuda compat: {} libcuda.so.*.* files in {}; not used", libcudas.len(), path.display()));
            return vec![];
        }
    };
    let version = libcuda_version(libcuda).unwrap_or_default();
    let shown = crate::request::shown(version);
    match newer_than_host(version, host_version) {
        Some(true) => {}
        Some(false) => {
            lines.push(format!(
                "cuda compat: the image's libcuda.so.{shown} is not newer than the driver ({host_version}); not used"
            ));
            return vec![];
        }
        None => {
            lines.push(format!("cuda compat: cannot compare libcuda.so.{shown} with driver {host_version}; not used"));
            return vec![];
        }
    }
    let entries = entries_of(sys, &dir, &path, &names);
    lines.push(format!(
        "cuda compat: the image's libcuda.so.{shown} is newer than the driver ({host_version}): {} entries of {} go first",
        entries.len(),
        path.display()
    ));
    entries
}

/// The compat dir opened inside the root, and its path as the container's loader sees
/// it (`/usr/local/cuda-12.8/compat`); `None` when the image has none.
fn compat_dir<S: FsOps>(sys: &S, root: &S::Fd) -> std::io::Result<Option<(S::Fd, PathBuf)>> {
    let dir = match sys.open_dir_in_root(root, Path::new(COMPAT_DIR)) {
        Ok(dir) => dir,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let (r, d) = (sys.fd_path(root)?, sys.fd_path(&dir)?);
    let path = d.strip_prefix(&r).map_err(|_| std::io::Error::other("outside the root"))?;
    Ok(Some((dir, Path::new("/").join(path))))
}

/// The entries of `cache` (one mighook wrote) that name a library in the image's
/// compat dir: the ones an earlier `enable-cuda-compat` put first, in their order.
pub fn chosen_entries<S: FsOps>(sys: &S, root: &S::Fd, cache: &LdCache) -> Vec<Entry> {
    let Ok(Some((_, path))) = compat_dir(sys, root) else { return vec![] };
    let mut prefix = path.into_os_string().into_vec();
    prefix.push(b'/');
    cache.entries.iter().filter(|e| e.value.starts_with(&prefix)).cloned().collect()
}

/// What ldconfig would cache for the dir: each regular library by its SONAME
/// (at its SONAME link when the dir has one, else at the file itself), and each
/// `.so` dev link by its own name, so `dlopen("libcuda.so")` gets the compat one too.
fn entries_of<S: FsOps>(sys: &S, dir: &S::Fd, path: &Path, names: &[OsString]) -> Vec<Entry> {
    let at = |name: &[u8]| -> Vec<u8> { path.join(OsStr::from_bytes(name)).into_os_string().into_vec() };
    let mut entries: Vec<Entry> = Vec::new();
    let mut add = |key: Vec<u8>, value: Vec<u8>| {
        if !entries.iter().any(|e| e.key == key) {
            entries.push(Entry::x86_64(key, value));
        }
    };
    for name in names {
        let bytes = name.as_bytes();
        if !bytes.starts_with(b"lib") || !bytes.windows(3).any(|w| w == b".so") {
            continue;
        }
        match sys.stat_at(dir, name).ok().flatten().map(|st| st.kind) {
            Some(FileKind::Regular) => {
                let Some(soname) = sys.soname_at(dir, name).ok().flatten() else { continue };
                if soname.contains(&b'/') || soname.is_empty() || soname == b"." || soname == b".." {
                    continue;
                }
                let value =
                    if names.iter().any(|n| n.as_bytes() == soname.as_slice()) { at(&soname) } else { at(bytes) };
                add(soname, value);
            }
            Some(FileKind::Symlink) if bytes.ends_with(b".so") => add(bytes.to_vec(), at(bytes)),
            _ => {}
        }
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fake::fs::RecordingFs;

    #[test]
    fn only_a_greater_major_uses_compat() {
        assert_eq!(newer_than_host("570.86.10", "550.54.15"), Some(true));
        assert_eq!(newer_than_host("550.90.07", "550.54.15"), Some(false), "same major, newer minor");
        assert_eq!(newer_than_host("535.104.05", "550.54.15"), Some(false));
        assert_eq!(newer_than_host("1000.1.1", "999.9"), Some(true), "numeric, not lexical");
        assert_eq!(newer_than_host("x.1", "550.54.15"), None);
        assert_eq!(newer_than_host("570.1", ""), None);
    }

    #[test]
    fn the_glob_is_nvidias() {
        assert_eq!(libcuda_version(OsStr::new("libcuda.so.570.86.10")), Some("570.86.10"));
        assert_eq!(libcuda_version(OsStr::new("libcuda.so.1")), None);
        assert_eq!(libcuda_version(OsStr::new("libcuda.so")), None);
    }

    const R: &str = "/r";

    fn image(compat_version: &str) -> RecordingFs {
        let d = "/r/usr/local/cuda-12.8/compat";
        RecordingFs::new()
            .dir(R)
            .symlink("/r/usr/local/cuda", "cuda-12.8")
            .file(&format!("{d}/libcuda.so.{compat_version}"), "soname:libcuda.so.1")
            .symlink(&format!("{d}/libcuda.so.1"), &format!("libcuda.so.{compat_version}"))
            .symlink(&format!("{d}/libcuda.so"), "libcuda.so.1")
            .file(&format!("{d}/libnvidia-nvvm.so.{compat_version}"), "soname:libnvidia-nvvm.so.4")
            .file(&format!("{d}/README"), "not a library")
    }

    fn entries(fs: &RecordingFs, host: &str) -> (Vec<String>, Vec<String>) {
        let root = fs.open_dir(Path::new(R)).unwrap();
        let mut lines = vec![];
        let e = compat_entries(fs, &root, host, &mut lines);
        let e = e
            .iter()
            .map(|e| format!("{} => {}", String::from_utf8_lossy(&e.key), String::from_utf8_lossy(&e.value)))
            .collect();
        (e, lines)
    }

    #[test]
    fn a_newer_compat_libcuda_puts_the_dirs_libraries_first_by_soname() {
        let (e, lines) = entries(&image("570.86.10"), "550.54.15");
        assert_eq!(
            e,
            [
                "libcuda.so => /usr/local/cuda-12.8/compat/libcuda.so",
                "libcuda.so.1 => /usr/local/cuda-12.8/compat/libcuda.so.1",
                // No SONAME link in the dir: the file itself.
                "libnvidia-nvvm.so.4 => /usr/local/cuda-12.8/compat/libnvidia-nvvm.so.570.86.10",
            ]
        );
        assert!(lines[0].contains("libcuda.so.570.86.10 is newer than the driver (550.54.15)"), "{lines:?}");
    }

    /// What the container's loader finds first for `libcuda.so.1` in the merged cache.
    fn first_libcuda(fs: &RecordingFs, compat: Option<&str>) -> String {
        let root = fs.open_dir(Path::new(R)).unwrap();
        let driver = [Entry::x86_64(&b"libcuda.so.1"[..], &b"/usr/lib64/libcuda.so.1"[..])];
        let mut report = super::super::driver_files::InjectReport::default();
        let bytes = super::super::driver_files::merged_cache(fs, &root, &driver, compat, &mut report).unwrap();
        let cache = crate::ldcache::parse(&bytes).unwrap();
        let e = cache.entries.iter().find(|e| e.key == b"libcuda.so.1").unwrap();
        String::from_utf8_lossy(&e.value).into_owned()
    }

    #[test]
    fn in_the_merged_cache_the_compat_libcuda_wins_only_when_asked_and_newer() {
        let compat = "/usr/local/cuda-12.8/compat/libcuda.so.1";
        assert_eq!(first_libcuda(&image("570.86.10"), Some("550.54.15")), compat);
        assert_eq!(first_libcuda(&image("570.86.10"), None), "/usr/lib64/libcuda.so.1", "cuda-compat = false");
        assert_eq!(first_libcuda(&image("535.104.05"), Some("550.54.15")), "/usr/lib64/libcuda.so.1");
    }

    #[test]
    fn an_older_or_equal_one_is_never_used() {
        for compat in ["535.104.05", "550.90.07"] {
            let (e, lines) = entries(&image(compat), "550.54.15");
            assert!(e.is_empty(), "{compat}: {e:?}");
            assert!(lines[0].contains("is not newer than the driver"), "{lines:?}");
        }
    }

    #[test]
    fn no_compat_dir_is_nothing_and_says_nothing() {
        let fs = RecordingFs::new().dir("/r/usr/local");
        assert_eq!(entries(&fs, "550.54.15"), (vec![], vec![]));
    }

    #[test]
    fn a_compat_dir_linked_out_of_the_root_stays_inside_it() {
        // `/usr/local/cuda -> /` resolves to the root itself: no compat dir there.
        let fs = RecordingFs::new().dir(R).symlink("/r/usr/local/cuda", "/../../..").dir("/compat");
        assert_eq!(entries(&fs, "550.54.15").0, Vec::<String>::new());
    }

    #[test]
    fn two_candidates_or_a_linked_libcuda_are_not_used() {
        let fs = image("570.86.10").file("/r/usr/local/cuda-12.8/compat/libcuda.so.575.1.1", "soname:libcuda.so.1");
        let (e, lines) = entries(&fs, "550.54.15");
        assert!(e.is_empty() && lines[0].contains("2 libcuda.so.*.* files"), "{lines:?}");
        let fs = RecordingFs::new().dir(R).symlink("/r/usr/local/cuda/compat/libcuda.so.570.86.10", "/etc/passwd");
        assert_eq!(entries(&fs, "550.54.15"), (vec![], vec![]));
    }
}
