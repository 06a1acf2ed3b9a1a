//! The fake driver installation: what `fake-node --driver-root` writes, a
//! tree laid out like the root filesystem of a host with the NVIDIA driver
//! installed (libraries with their real SONAMEs and links, `nvidia-smi` and
//! other binaries, GSP firmware, the persistenced socket, and the root's own
//! `etc/ld.so.cache`). mighook discovers and injects from such a tree, and the
//! injected files must then work inside a container.
//!
//! The C parts (fake libcuda, stub libraries, nvidia-smi) are compiled by
//! build.rs and embedded here. The fake NVML is the cdylib itself, copied with
//! the topology appended after its ELF image (see [`TRAILER_MAGIC`]), so the
//! library needs no file beside it once it is mounted into a container.

use std::fs;
use std::io;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::topology::Topology;

/// One compiled file from build.rs.
pub struct Blob {
    /// File stem of a library (`libcuda`) or the name of a binary.
    pub name: &'static str,
    /// SONAME of a library; empty for binaries.
    pub soname: &'static str,
    pub bytes: &'static [u8],
}

mod blobs {
    use super::Blob;
    include!(concat!(env!("OUT_DIR"), "/driver_blobs.rs"));
}
pub use blobs::{BINS, GLCORE_SONAME_PLACEHOLDER, LIBS};

/// Ends the topology trailer of the driver root's `libnvidia-ml.so.<v>`:
/// `<ELF image><topology JSON><JSON length, u64 LE><this magic>`. The loader
/// maps only the ELF's segments, so the appended bytes are inert.
pub const TRAILER_MAGIC: &[u8; 16] = b"FAKE-NVML-TOPO-1";

/// The stem of the library that is not the driver's: it shares the driver's
/// directory on a real host too, and must never reach a container.
const UNRELATED: &str = "libunrelated";
/// libunrelated's file version: not the driver's, as for any other library.
const UNRELATED_VERSION: &str = "1.2.3";

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("fake-node: {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("fake-node: unknown layout {0:?} (debian or rhel)")]
    Layout(String),
    #[error("fake-node: driver version {0:?} must be 1 to 32 characters of [0-9A-Za-z.]")]
    Version(String),
    #[error("fake-node: {0}")]
    Ldconfig(String),
    #[error("fake-node: embedded library {0} lacks its SONAME placeholder")]
    Placeholder(&'static str),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> DriverError + '_ {
    move |source| DriverError::Io { path: path.to_owned(), source }
}

/// Where a distribution keeps 64-bit libraries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `usr/lib/x86_64-linux-gnu` (Debian, Ubuntu).
    Debian,
    /// `usr/lib64`, with `lib64 -> usr/lib64` (RHEL, Fedora).
    Rhel,
}

impl Layout {
    pub fn parse(s: &str) -> Result<Layout, DriverError> {
        match s {
            "debian" => Ok(Layout::Debian),
            "rhel" => Ok(Layout::Rhel),
            _ => Err(DriverError::Layout(s.to_string())),
        }
    }

    /// The library directory, relative to the root.
    pub fn lib_dir(self) -> &'static str {
        match self {
            Layout::Debian => "usr/lib/x86_64-linux-gnu",
            Layout::Rhel => "usr/lib64",
        }
    }
}

/// A written driver root.
#[derive(Debug, Clone)]
pub struct DriverRoot {
    pub root: PathBuf,
    pub layout: Layout,
    pub version: String,
}

impl DriverRoot {
    /// `<root>/<layout lib dir>`.
    pub fn lib_dir(&self) -> PathBuf {
        self.root.join(self.layout.lib_dir())
    }
    /// The versioned file of library `stem` (e.g. `libcuda`).
    pub fn lib(&self, stem: &str) -> PathBuf {
        self.lib_dir().join(format!("{stem}.so.{}", self.version))
    }
    pub fn bin(&self, name: &str) -> PathBuf {
        self.root.join("usr/bin").join(name)
    }
    pub fn firmware_dir(&self) -> PathBuf {
        self.root.join("lib/firmware/nvidia").join(&self.version)
    }
    pub fn persistenced_socket(&self) -> PathBuf {
        self.root.join("run/nvidia-persistenced/socket")
    }
    pub fn ld_cache(&self) -> PathBuf {
        self.root.join("etc/ld.so.cache")
    }
}

/// Every library the root holds: (file name, SONAME link or `None` when the
/// SONAME is the file name). libnvidia-ml is first, libunrelated last.
pub fn library_files(version: &str) -> Vec<(String, Option<String>)> {
    let mut out = vec![(format!("libnvidia-ml.so.{version}"), Some("libnvidia-ml.so.1".to_string()))];
    for lib in LIBS {
        let file = match lib.name {
            UNRELATED => format!("{}.so.{UNRELATED_VERSION}", lib.name),
            stem => format!("{stem}.so.{version}"),
        };
        let link = (lib.soname != GLCORE_SONAME_PLACEHOLDER).then(|| lib.soname.to_string());
        out.push((file, link));
    }
    out
}

/// Writes the driver installation of `topo` under `root`. `nvml_lib` is the
/// built fake NVML cdylib; `topology_json` is embedded in its copy.
pub fn write(
    topo: &Topology,
    topology_json: &str,
    nvml_lib: &Path,
    root: &Path,
    layout: Layout,
    version: Option<&str>,
) -> Result<DriverRoot, DriverError> {
    let version = version.unwrap_or(&topo.driver_version).to_string();
    // The version becomes part of file names and of glcore's SONAME, which
    // must fit the placeholder.
    let placeholder_len = GLCORE_SONAME_PLACEHOLDER.len() - "libnvidia-glcore.so.".len();
    if version.is_empty()
        || version.len() > placeholder_len
        || !version.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.')
    {
        return Err(DriverError::Version(version));
    }
    let dr = DriverRoot { root: root.to_owned(), layout, version: version.clone() };
    let lib_dir = dr.lib_dir();
    mkdir(&lib_dir)?;
    if layout == Layout::Rhel {
        replace_symlink("usr/lib64", &root.join("lib64"))?;
    }

    let mut nvml = fs::read(nvml_lib).map_err(io_err(nvml_lib))?;
    nvml.extend_from_slice(topology_json.as_bytes());
    nvml.extend_from_slice(&(topology_json.len() as u64).to_le_bytes());
    nvml.extend_from_slice(TRAILER_MAGIC);
    let nvml_file = format!("libnvidia-ml.so.{version}");
    write_file(&lib_dir.join(&nvml_file), &nvml, 0o755)?;
    replace_symlink(&nvml_file, &lib_dir.join("libnvidia-ml.so.1"))?;
    replace_symlink("libnvidia-ml.so.1", &lib_dir.join("libnvidia-ml.so"))?;

    for lib in LIBS {
        let (file, bytes) = match lib.name {
            UNRELATED => (format!("{}.so.{UNRELATED_VERSION}", lib.name), lib.bytes.to_vec()),
            stem if lib.soname == GLCORE_SONAME_PLACEHOLDER => {
                let file = format!("{stem}.so.{version}");
                (file.clone(), patch_soname(lib, &file)?)
            }
            stem => (format!("{stem}.so.{version}"), lib.bytes.to_vec()),
        };
        write_file(&lib_dir.join(&file), &bytes, 0o755)?;
        if lib.soname != GLCORE_SONAME_PLACEHOLDER {
            replace_symlink(&file, &lib_dir.join(lib.soname))?;
        }
        if lib.name == "libcuda" {
            replace_symlink("libcuda.so.1", &lib_dir.join("libcuda.so"))?;
        }
    }

    for bin in BINS {
        write_file(&dr.bin(bin.name), bin.bytes, 0o755)?;
    }
    // GSP firmware: only its path matters; real files are tens of MB.
    for fw in ["gsp_ga10x.bin", "gsp_tu10x.bin"] {
        write_file(&dr.firmware_dir().join(fw), format!("fake {fw} {version}\n").as_bytes(), 0o644)?;
    }
    make_socket(&dr.persistenced_socket())?;
    write_ld_cache(&dr)?;
    Ok(dr)
}

/// glcore's SONAME is its file name, so it carries the version: overwrite the
/// placeholder in `.dynstr` with the name and pad with NULs.
fn patch_soname(lib: &'static Blob, file: &str) -> Result<Vec<u8>, DriverError> {
    let mut bytes = lib.bytes.to_vec();
    let needle = GLCORE_SONAME_PLACEHOLDER.as_bytes();
    let at = bytes.windows(needle.len()).position(|w| w == needle).ok_or(DriverError::Placeholder(lib.name))?;
    let slot = &mut bytes[at..at + needle.len()];
    slot.fill(0);
    slot[..file.len()].copy_from_slice(file.as_bytes());
    Ok(bytes)
}

/// `etc/ld.so.conf` naming the library dir, and `etc/ld.so.cache` written by
/// the host's ldconfig with the root as its root, so the cache holds the
/// paths the files have on the "host" (`/usr/lib64/libcuda.so.1`, ...).
/// ldconfig -r chroots: as a user that needs a user namespace (`unshare -r`).
fn write_ld_cache(dr: &DriverRoot) -> Result<(), DriverError> {
    let conf = dr.root.join("etc/ld.so.conf");
    write_file(&conf, format!("/{}\n", dr.layout.lib_dir()).as_bytes(), 0o644)?;
    let ldconfig = ["/sbin/ldconfig", "/usr/sbin/ldconfig"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .ok_or_else(|| DriverError::Ldconfig("ldconfig not found in /sbin or /usr/sbin".into()))?;
    let root = dr.root.to_str().ok_or_else(|| DriverError::Ldconfig("driver root is not UTF-8".into()))?;
    // -X: the links are ours already; ldconfig only records them.
    let args = ["-X", "-r", root, "-C", "/etc/ld.so.cache", "-f", "/etc/ld.so.conf"];
    let mut cmd = if unsafe { libc::geteuid() } == 0 {
        Command::new(ldconfig)
    } else {
        let mut c = Command::new("unshare");
        c.args(["-r", ldconfig]);
        c
    };
    let out = cmd.args(args).output().map_err(|e| DriverError::Ldconfig(format!("cannot run {ldconfig}: {e}")))?;
    if !out.status.success() || !dr.ld_cache().exists() {
        return Err(DriverError::Ldconfig(format!(
            "{ldconfig} {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// A unix socket file like the one nvidia-persistenced listens on: bind, then
/// drop the listener; the file stays.
fn make_socket(path: &Path) -> Result<(), DriverError> {
    if let Some(dir) = path.parent() {
        mkdir(dir)?;
    }
    remove(path)?;
    std::os::unix::net::UnixListener::bind(path).map_err(io_err(path))?;
    Ok(())
}

fn mkdir(dir: &Path) -> Result<(), DriverError> {
    fs::create_dir_all(dir).map_err(io_err(dir))
}

fn remove(path: &Path) -> Result<(), DriverError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(path)(e)),
        _ => Ok(()),
    }
}

/// Writes via a temporary name and rename: a process may have the old file
/// mapped, and rewriting it in place would corrupt that process.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), DriverError> {
    if let Some(dir) = path.parent() {
        mkdir(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    fs::write(&tmp, bytes).map_err(io_err(&tmp))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)).map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))
}

fn replace_symlink(target: &str, link: &Path) -> Result<(), DriverError> {
    remove(link)?;
    symlink(target, link).map_err(io_err(link))
}

/// Reads the topology JSON a driver-root library carries, if it has a trailer.
pub fn read_trailer(file: &Path) -> io::Result<Option<String>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = fs::File::open(file)?;
    let len = f.metadata()?.len();
    let tail = (TRAILER_MAGIC.len() + 8) as u64;
    if len < tail {
        return Ok(None);
    }
    f.seek(SeekFrom::Start(len - tail))?;
    let mut buf = [0u8; 24];
    f.read_exact(&mut buf)?;
    if &buf[8..] != TRAILER_MAGIC {
        return Ok(None);
    }
    let json_len = u64::from_le_bytes(buf[..8].try_into().unwrap_or_default());
    let Some(start) = (len - tail).checked_sub(json_len) else {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "topology trailer longer than the file"));
    };
    f.seek(SeekFrom::Start(start))?;
    let mut json = Vec::new();
    f.take(json_len).read_to_end(&mut json)?;
    String::from_utf8(json).map(Some).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "trailer is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailer_round_trip_and_absence() {
        let tmp = tempfile::tempdir().unwrap();
        let plain = tmp.path().join("plain.so");
        fs::write(&plain, b"\x7fELF not much of a library").unwrap();
        assert_eq!(read_trailer(&plain).unwrap(), None);
        let short = tmp.path().join("short.so");
        fs::write(&short, b"x").unwrap();
        assert_eq!(read_trailer(&short).unwrap(), None);
        let json = "{\"gpus\": []}";
        let mut bytes = b"\x7fELF image".to_vec();
        bytes.extend_from_slice(json.as_bytes());
        bytes.extend_from_slice(&(json.len() as u64).to_le_bytes());
        bytes.extend_from_slice(TRAILER_MAGIC);
        let with = tmp.path().join("with.so");
        fs::write(&with, &bytes).unwrap();
        assert_eq!(read_trailer(&with).unwrap().as_deref(), Some(json));
        // A length that points before the file's start is an error, not a panic.
        let mut bad = b"abc".to_vec();
        bad.extend_from_slice(&1000u64.to_le_bytes());
        bad.extend_from_slice(TRAILER_MAGIC);
        let broken = tmp.path().join("broken.so");
        fs::write(&broken, &bad).unwrap();
        assert!(read_trailer(&broken).is_err());
    }

    #[test]
    fn library_table_is_complete() {
        let files = library_files("550.54.15");
        let names: Vec<&str> = files.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(names[0], "libnvidia-ml.so.550.54.15");
        assert!(names.contains(&"libnvidia-glcore.so.550.54.15"));
        assert!(names.contains(&"libunrelated.so.1.2.3"));
        assert_eq!(files.len(), 16);
        let links: Vec<&str> = files.iter().filter_map(|(_, l)| l.as_deref()).collect();
        for soname in ["libnvidia-nvvm.so.4", "libEGL_nvidia.so.0", "libGLESv2_nvidia.so.2", "libcuda.so.1"] {
            assert!(links.contains(&soname), "{soname}");
        }
        // glcore only: its SONAME is the file name.
        assert_eq!(files.iter().filter(|(_, l)| l.is_none()).count(), 1);
    }

    #[test]
    fn glcore_soname_is_patched_to_the_file_name() {
        let glcore = LIBS.iter().find(|l| l.soname == GLCORE_SONAME_PLACEHOLDER).unwrap();
        let bytes = patch_soname(glcore, "libnvidia-glcore.so.1.2").unwrap();
        let needle = b"libnvidia-glcore.so.1.2\0";
        assert!(bytes.windows(needle.len()).any(|w| w == needle));
        assert!(!bytes.windows(GLCORE_SONAME_PLACEHOLDER.len()).any(|w| w == GLCORE_SONAME_PLACEHOLDER.as_bytes()));
        assert_eq!(bytes.len(), glcore.bytes.len());
    }

    #[test]
    fn layouts_and_versions() {
        assert_eq!(Layout::parse("debian").unwrap().lib_dir(), "usr/lib/x86_64-linux-gnu");
        assert_eq!(Layout::parse("rhel").unwrap().lib_dir(), "usr/lib64");
        assert!(Layout::parse("Debian").is_err());
        let topo = Topology::load(crate::locate::topology("a30-1.json")).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let lib = tmp.path().join("lib.so");
        fs::write(&lib, b"").unwrap();
        for bad in ["", "5/5", &"9".repeat(33)] {
            let err = write(&topo, "{}", &lib, &tmp.path().join("r"), Layout::Debian, Some(bad)).unwrap_err();
            assert!(matches!(err, DriverError::Version(_)), "{bad:?}: {err}");
        }
    }
}
