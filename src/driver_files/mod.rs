//! Which driver files a container gets, found as the host's loader sees them.
//!
//! [`discover`] takes the driver root (`/`, or `/run/nvidia/driver` under the GPU
//! Operator), the driver version and the requested capabilities, and finds what
//! NVIDIA's libnvidia-container would inject (§1 of the driver user-space
//! reference, `driver-user-space.md`; "reference §" below): libraries from a
//! fixed per-capability list of base names, binaries, GSP firmware, the
//! persistenced/fabricmanager sockets and the MPS pipe dir, and (for graphics)
//! the Vulkan/EGL/OptiX config files. [`place`] then says where each goes in the
//! container: bind mounts, symlinks, and ld.so.cache entries for the applier.
//!
//! Libraries are found through the root's own `etc/ld.so.cache` (read once with
//! [`crate::ldcache`]), as LNC does: a cache key (SONAME) matching a base name
//! names a path, which is resolved **inside the root** ([`resolve`]: symlinks
//! followed by hand, absolute targets re-rooted) and accepted only if the real
//! file is a regular file named `*.so.<driver version>`. So a stale entry for an
//! older driver, or a link that points out of the root, is never taken. Without a
//! usable entry, `<base>.<version>` is looked for in the usual library dirs and
//! its SONAME read from the ELF file ([`elf`]). No directory is ever listed for
//! libraries: a library beside the driver's that is not on the list never comes in.
//!
//! Not handled: `compat32` (i386 libraries; only x86-64 cache entries are taken),
//! the non-GLVND `libGL*` set, the `libnvidia-tls` ABI-note check, the GKE
//! `<root>/vulkan` layout, and `$CUDA_MPS_PIPE_DIRECTORY` (always `/tmp/nvidia-mps`).
//!
//! Cost, on every container start: one read of the cache, a few `lstat`s and
//! `readlink`s per candidate, one listing (the firmware dir).

pub(crate) mod elf;
mod place;
pub mod resolve;

#[cfg(test)]
mod tests;

pub use place::{DriverEdits, FileMount, LibraryDir, Symlink, place};

use crate::ldcache::{self, FLAG_X8664_LIBC6, LdCache};
use crate::request::capabilities::DriverCapabilities;
use resolve::Resolver;
use serde::Serialize;
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum DriverFilesError {
    #[error("driver root {path}: {reason}")]
    Root { path: PathBuf, reason: String },
    #[error("driver version '{version}' is not of the form 550.54.15")]
    Version { version: String },
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    CorruptCache { path: PathBuf, source: ldcache::LdCacheError },
    #[error("cannot read the SONAME of {path}: {reason}")]
    Elf { path: PathBuf, reason: String },
}

/// How a file is mounted (see [`FileMount::options`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    Library,
    Binary,
    Firmware,
    Config,
    /// A unix socket (persistenced, fabricmanager): writable.
    Socket,
    /// The MPS pipe dir: writable, recursive.
    Directory,
}

/// One driver library found on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Library {
    /// The whitelisted base name it matched (`libcuda.so`).
    pub base: String,
    /// The SONAME (`libcuda.so.1`); the file name when the library has none.
    pub soname: String,
    /// The real file, absolute from the root's view (`/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15`).
    pub path: PathBuf,
    /// The host dir also has the `<base>` dev link (`libnvidia-ml.so`).
    pub dev_link: bool,
}

/// A non-library file: where it is on the host, where it goes in the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HostFile {
    /// On the host: the driver root joined with the resolved path.
    pub host_path: PathBuf,
    pub container_path: PathBuf,
    pub kind: MountKind,
}

/// Everything [`discover`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DriverFiles {
    pub root: PathBuf,
    pub version: String,
    /// In whitelist order.
    pub libraries: Vec<Library>,
    /// Binaries, firmware, sockets, the MPS dir and config files.
    pub files: Vec<HostFile>,
    /// Library base names and binaries that the capabilities ask for but the
    /// host lacks; the caller warns.
    pub missing: Vec<String>,
    /// The image's CUDA compat libraries may go first when newer than this
    /// driver (set by the caller from `cuda-compat`; `false` from [`discover`]).
    #[serde(skip)]
    pub cuda_compat: bool,
}

/// Libraries per capability (LNC `src/nvc_info.c`, reference §1.2).
const UTILITY_LIBS: &[&str] = &["libnvidia-ml.so", "libnvidia-cfg.so", "libnvidia-nscq.so"];
const COMPUTE_LIBS: &[&str] = &[
    "libcuda.so",
    "libcudadebugger.so",
    "libnvidia-opencl.so",
    "libnvidia-gpucomp.so",
    "libnvidia-ptxjitcompiler.so",
    "libnvidia-fatbinaryloader.so",
    "libnvidia-allocator.so",
    "libnvidia-compiler.so",
    "libnvidia-pkcs11.so",
    "libnvidia-pkcs11-openssl3.so",
    "libnvidia-nvvm.so",
    "libnvidia-tileiras.so",
];
const VIDEO_LIBS: &[&str] = &["libvdpau_nvidia.so", "libnvidia-encode.so", "libnvidia-opticalflow.so", "libnvcuvid.so"];
const GRAPHICS_LIBS: &[&str] = &[
    "libnvidia-eglcore.so",
    "libnvidia-glcore.so",
    "libnvidia-tls.so",
    "libnvidia-glsi.so",
    "libnvidia-rtcore.so",
    "libnvidia-fbc.so",
    "libnvidia-ifr.so",
    "libnvoptix.so",
    "libGLX_nvidia.so",
    "libEGL_nvidia.so",
    "libGLESv2_nvidia.so",
    "libGLESv1_CM_nvidia.so",
    "libnvidia-glvkspirv.so",
    "libnvidia-cbl.so",
];
const NGX_LIBS: &[&str] = &["libnvidia-ngx.so"];

/// Binaries per capability (reference §1.3); all go to `/usr/bin`.
const UTILITY_BINS: &[&str] = &["nvidia-smi", "nvidia-debugdump", "nvidia-persistenced", "nv-fabricmanager"];
const COMPUTE_BINS: &[&str] = &["nvidia-cuda-mps-control", "nvidia-cuda-mps-server"];
const BIN_DIRS: &[&str] = &["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/// Where `<base>.<version>` is looked for when the cache has nothing usable.
const LIB_DIRS: &[&str] =
    &["/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib64", "/lib64", "/usr/lib", "/lib"];

/// Sockets (reference §1.4): first of `/run`, `/var/run`.
const SOCKETS: &[&str] = &["nvidia-persistenced/socket", "nvidia-fabricmanager/socket"];
const MPS_DIR: &str = "/tmp/nvidia-mps";

/// Config files (reference §1.7): searched in these dirs, first hit wins.
const CONFIG_DIRS: &[&str] = &["/etc", "/usr/local/share", "/usr/share"];
/// (name searched, fixed container path) for graphics and display.
const GRAPHICS_CONFIGS: &[(&str, &str)] = &[
    ("vulkan/icd.d/nvidia_icd.json", "/etc/vulkan/icd.d/nvidia_icd.json"),
    ("vulkan/icd.d/nvidia_icd.x86_64.json", "/etc/vulkan/icd.d/nvidia_icd.x86_64.json"),
    ("vulkan/icd.d/nvidia_layers.json", "/etc/vulkan/icd.d/nvidia_layers.json"),
    ("vulkan/implicit_layer.d/nvidia_layers.json", "/etc/vulkan/implicit_layer.d/nvidia_layers.json"),
    ("glvnd/egl_vendor.d/10_nvidia.json", "/usr/share/glvnd/egl_vendor.d/10_nvidia.json"),
    ("egl/egl_external_platform.d/15_nvidia_gbm.json", "/usr/share/egl/egl_external_platform.d/15_nvidia_gbm.json"),
    (
        "egl/egl_external_platform.d/10_nvidia_wayland.json",
        "/usr/share/egl/egl_external_platform.d/10_nvidia_wayland.json",
    ),
    (
        "egl/egl_external_platform.d/09_nvidia_wayland2.json",
        "/usr/share/egl/egl_external_platform.d/09_nvidia_wayland2.json",
    ),
    ("egl/egl_external_platform.d/20_nvidia_xcb.json", "/usr/share/egl/egl_external_platform.d/20_nvidia_xcb.json"),
    ("egl/egl_external_platform.d/20_nvidia_xlib.json", "/usr/share/egl/egl_external_platform.d/20_nvidia_xlib.json"),
    ("nvidia/nvoptix.bin", "/usr/share/nvidia/nvoptix.bin"),
    ("X11/xorg.conf.d/10-nvidia.conf", "/usr/share/X11/xorg.conf.d/10-nvidia.conf"),
    ("X11/xorg.conf.d/nvidia-drm-outputclass.conf", "/usr/share/X11/xorg.conf.d/nvidia-drm-outputclass.conf"),
];
/// The OpenCL ICD: with compute (NVIDIA puts it in every CDI spec) and graphics.
const OPENCL_ICD: (&str, &str) = ("OpenCL/vendors/nvidia.icd", "/etc/OpenCL/vendors/nvidia.icd");

/// What the capabilities switch on (reference §1.1: video brings the compute libraries).
struct Wanted {
    utility: bool,
    compute_libs: bool,
    compute_bins: bool,
    video: bool,
    graphics: bool,
    ngx: bool,
}

impl Wanted {
    fn from(caps: &DriverCapabilities) -> Wanted {
        Wanted {
            utility: caps.has("utility"),
            compute_libs: caps.compute() || caps.has("video"),
            compute_bins: caps.compute(),
            video: caps.has("video"),
            graphics: caps.has("graphics") || caps.display(),
            ngx: caps.has("ngx"),
        }
    }

    fn libraries(&self) -> Vec<&'static str> {
        let groups = [
            (self.utility, UTILITY_LIBS),
            (self.compute_libs, COMPUTE_LIBS),
            (self.video, VIDEO_LIBS),
            (self.graphics, GRAPHICS_LIBS),
            (self.ngx, NGX_LIBS),
        ];
        groups.into_iter().filter(|(on, _)| *on).flat_map(|(_, names)| names.iter().copied()).collect()
    }
}

impl DriverFiles {
    /// One log-file warning per file the capabilities ask for but the host lacks.
    pub fn log_missing(&self) {
        for name in &self.missing {
            crate::log::file_warn(&format!("driver file {name} skipped: not found under {}", self.root.display()));
        }
    }
}

/// Finds the driver files `caps` asks for under `root`. See the module header.
pub fn discover(root: &Path, version: &str, caps: &DriverCapabilities) -> Result<DriverFiles, DriverFilesError> {
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
    if version.is_empty() || !version.chars().all(valid) || version.starts_with('.') || version.len() > 64 {
        return Err(DriverFilesError::Version { version: version.to_owned() });
    }
    match std::fs::metadata(root) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(DriverFilesError::Root { path: root.into(), reason: "not a directory".into() }),
        Err(e) => return Err(DriverFilesError::Root { path: root.into(), reason: e.to_string() }),
    }
    let want = Wanted::from(caps);
    let r = &mut Resolver::new(root);
    let mut found = DriverFiles {
        root: root.into(),
        version: version.into(),
        libraries: Vec::new(),
        files: Vec::new(),
        missing: Vec::new(),
        cuda_compat: false,
    };

    let bases = want.libraries();
    if !bases.is_empty() {
        let cache = read_cache(r)?.unwrap_or_default();
        find_libraries(r, version, &bases, &cache, &mut found)?;
    }

    let bins = [(want.utility, UTILITY_BINS), (want.compute_bins, COMPUTE_BINS)];
    for name in bins.into_iter().filter(|(on, _)| *on).flat_map(|(_, names)| names.iter()) {
        match find_binary(r, name)? {
            Some(host_path) => found.files.push(HostFile {
                host_path,
                container_path: Path::new("/usr/bin").join(name),
                kind: MountKind::Binary,
            }),
            None => found.missing.push((*name).to_owned()),
        }
    }

    if want.utility || want.compute_bins {
        find_firmware(r, version, &mut found.files)?;
    }
    if want.utility {
        for socket in SOCKETS {
            let tries = [Path::new("/run").join(socket), Path::new("/var/run").join(socket)];
            if let Some((host_path, container_path)) = first(r, tries, |m| m.file_type().is_socket())? {
                found.files.push(HostFile { host_path, container_path, kind: MountKind::Socket });
            }
        }
    }
    if want.compute_libs
        && let Some((host_path, container_path)) = first(r, [PathBuf::from(MPS_DIR)], |m| m.is_dir())?
    {
        found.files.push(HostFile { host_path, container_path, kind: MountKind::Directory });
    }
    let mut configs: Vec<(&str, &str)> = Vec::new();
    if want.graphics {
        configs.extend_from_slice(GRAPHICS_CONFIGS);
    }
    if want.graphics || want.compute_libs {
        configs.push(OPENCL_ICD);
    }
    for (name, container_path) in configs {
        let tries = CONFIG_DIRS.iter().map(|dir| Path::new(dir).join(name));
        if let Some((host_path, _)) = first(r, tries, |m| m.is_file())? {
            found.files.push(HostFile { host_path, container_path: container_path.into(), kind: MountKind::Config });
        }
    }
    Ok(found)
}

/// The first of `paths` that is there and passes `wanted`: (host path, the path tried).
fn first(
    r: &mut Resolver,
    paths: impl IntoIterator<Item = PathBuf>,
    wanted: impl Fn(&std::fs::Metadata) -> bool,
) -> Result<Option<(PathBuf, PathBuf)>, DriverFilesError> {
    for path in paths {
        if let Some((real, meta)) = lookup(r, &path)?
            && wanted(&meta)
        {
            return Ok(Some((resolve::host_path(r.root, &real), path)));
        }
    }
    Ok(None)
}

/// `path` resolved in the root; `None` when it is not there.
fn lookup(r: &mut Resolver, path: &Path) -> Result<Option<(PathBuf, std::fs::Metadata)>, DriverFilesError> {
    let root = r.root;
    match r.resolve(path) {
        Ok(found) => Ok(Some(found)),
        Err(e) if resolve::is_absent(&e) => Ok(None),
        Err(e) => Err(DriverFilesError::Read { path: resolve::host_path(root, path), reason: e.to_string() }),
    }
}

/// The root's `etc/ld.so.cache`, `None` when it has none.
fn read_cache(r: &mut Resolver) -> Result<Option<LdCache>, DriverFilesError> {
    let Some((real, meta)) = lookup(r, Path::new("/etc/ld.so.cache"))? else { return Ok(None) };
    let path = resolve::host_path(r.root, &real);
    let failed = |reason: String| DriverFilesError::Read { path: path.clone(), reason };
    if !meta.is_file() {
        return Err(failed("not a regular file".into()));
    }
    let file = std::fs::File::open(&path).map_err(|e| failed(e.to_string()))?;
    let mut bytes = Vec::with_capacity((meta.len() as usize).min(ldcache::MAX_CACHE_BYTES));
    // One byte over the limit is enough for the parser to refuse it.
    file.take(ldcache::MAX_CACHE_BYTES as u64 + 1).read_to_end(&mut bytes).map_err(|e| failed(e.to_string()))?;
    ldcache::parse(&bytes).map(Some).map_err(|source| DriverFilesError::CorruptCache { path, source })
}

/// The part of a cache key that names the library: up to the `.so` that ends it or
/// is followed by `.` (`libnvidia-pkcs11-openssl3.so.550` → `libnvidia-pkcs11-openssl3.so`).
fn base_of(key: &[u8]) -> Option<&[u8]> {
    let mut from = 0;
    while let Some(at) = key[from..].windows(3).position(|w| w == b".so") {
        let end = from + at + 3;
        if end == key.len() || key[end] == b'.' {
            return Some(&key[..end]);
        }
        from = end - 2;
    }
    None
}

fn find_libraries(
    r: &mut Resolver,
    version: &str,
    bases: &[&'static str],
    cache: &LdCache,
    found: &mut DriverFiles,
) -> Result<(), DriverFilesError> {
    // Cache entries per wanted base, in cache order (the loader's order).
    let mut by_base: HashMap<&[u8], Vec<&ldcache::Entry>> = bases.iter().map(|b| (b.as_bytes(), Vec::new())).collect();
    for entry in cache.entries.iter().filter(|e| e.flags == FLAG_X8664_LIBC6) {
        if let Some(list) = base_of(&entry.key).and_then(|b| by_base.get_mut(b)) {
            list.push(entry);
        }
    }
    let suffix = format!(".so.{version}");
    let mut taken: Vec<PathBuf> = Vec::new();
    for base in bases {
        let before = found.libraries.len();
        for entry in &by_base[base.as_bytes()] {
            let Ok(soname) = std::str::from_utf8(&entry.key) else { continue };
            let value = Path::new(OsStr::from_bytes(&entry.value));
            if !value.is_absolute() || found.libraries.iter().any(|l| l.soname == soname) {
                continue;
            }
            let Some((real, meta)) = lookup(r, value)? else { continue };
            if !meta.is_file() || !ends_with(&real, &suffix) || taken.contains(&real) {
                continue;
            }
            taken.push(real.clone());
            found.libraries.push(library(r.root, base, soname.to_owned(), real));
        }
        if found.libraries.len() == before {
            match find_by_name(r, base, version)? {
                Some(lib) if !taken.contains(&lib.path) => {
                    taken.push(lib.path.clone());
                    found.libraries.push(lib);
                }
                Some(_) => {}
                None => found.missing.push((*base).to_owned()),
            }
        }
    }
    Ok(())
}

fn ends_with(path: &Path, suffix: &str) -> bool {
    path.file_name().is_some_and(|n| n.as_bytes().ends_with(suffix.as_bytes()))
}

fn library(root: &Path, base: &str, soname: String, path: PathBuf) -> Library {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let dev = resolve::host_path(root, &dir.join(base));
    let dev_link = std::fs::symlink_metadata(dev).is_ok();
    Library { base: base.to_owned(), soname, path, dev_link }
}

/// `<base>.<version>` in the usual library dirs (and their `vdpau/` for libvdpau),
/// SONAME from the ELF file.
fn find_by_name(r: &mut Resolver, base: &str, version: &str) -> Result<Option<Library>, DriverFilesError> {
    let file = format!("{base}.{version}");
    let sub = if base == "libvdpau_nvidia.so" { "vdpau/" } else { "" };
    for dir in LIB_DIRS {
        let Some((real, meta)) = lookup(r, &Path::new(dir).join(format!("{sub}{file}")))? else { continue };
        if !meta.is_file() {
            continue;
        }
        let host = resolve::host_path(r.root, &real);
        let elf_error = |reason: String| DriverFilesError::Elf { path: host.clone(), reason };
        let opened = std::fs::File::open(&host).map_err(|e| elf_error(e.to_string()))?;
        let name = elf::soname(&opened).map_err(elf_error)?;
        // A SONAME that is not this library's (not `<base>` or `<base>.*`) would make
        // a link for some other library: use the file name instead.
        let soname = name
            .and_then(|n| String::from_utf8(n).ok())
            .filter(|n| n == base || (n.starts_with(base) && n[base.len()..].starts_with('.') && !n.contains('/')))
            .unwrap_or(file);
        return Ok(Some(library(r.root, base, soname, real)));
    }
    Ok(None)
}

/// The first regular executable `name` in [`BIN_DIRS`], as a host path.
fn find_binary(r: &mut Resolver, name: &str) -> Result<Option<PathBuf>, DriverFilesError> {
    let tries = BIN_DIRS.iter().map(|dir| Path::new(dir).join(name));
    Ok(first(r, tries, |m| m.is_file() && m.permissions().mode() & 0o111 != 0)?.map(|(host, _)| host))
}

/// `/lib/firmware/nvidia/<version>/gsp*.bin`, mounted at that (unresolved) path.
fn find_firmware(r: &mut Resolver, version: &str, files: &mut Vec<HostFile>) -> Result<(), DriverFilesError> {
    let dir = Path::new("/lib/firmware/nvidia").join(version);
    let Some((real_dir, meta)) = lookup(r, &dir)? else { return Ok(()) };
    if !meta.is_dir() {
        return Ok(());
    }
    let host_dir = resolve::host_path(r.root, &real_dir);
    let listing = std::fs::read_dir(&host_dir)
        .map_err(|e| DriverFilesError::Read { path: host_dir.clone(), reason: e.to_string() })?;
    let mut names: Vec<OsString> = Vec::new();
    for item in listing {
        let item = item.map_err(|e| DriverFilesError::Read { path: host_dir.clone(), reason: e.to_string() })?;
        let name = item.file_name();
        if name.as_bytes().starts_with(b"gsp") && name.as_bytes().ends_with(b".bin") {
            names.push(name);
        }
    }
    names.sort();
    for name in names {
        let Some((real, meta)) = lookup(r, &real_dir.join(&name))? else { continue };
        if meta.is_file() {
            files.push(HostFile {
                host_path: resolve::host_path(r.root, &real),
                container_path: dir.join(&name),
                kind: MountKind::Firmware,
            });
        }
    }
    Ok(())
}
