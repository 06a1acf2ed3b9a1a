//! Where the found files go in the container.
//!
//! Libraries go either into one dir chosen by the image's family, as
//! libnvidia-container does (`/usr/lib/x86_64-linux-gnu` when the image has
//! `/etc/debian_version`, else `/usr/lib64`; `vdpau/` libraries into its `vdpau/`
//! subdir, where libvdpau looks), or, for CDI, at their path relative to the
//! driver root, as nvidia-ctk does. Next to each library: its SONAME link (which
//! ldconfig would make; mighook runs no ldconfig), the `.so` dev link where the
//! host has one, and NVIDIA's three fixed links (`libcuda.so`,
//! `libnvidia-opticalflow.so`, `libGLX_indirect.so.0`). One ld.so.cache entry per
//! library names its SONAME link, and one per other link names that link, for the
//! applier to merge into the image's cache.
//!
//! Everything is sorted and de-duplicated (first wins), so equal input gives
//! byte-equal output.

use super::{DriverFiles, MountKind};
use crate::ldcache::Entry;
use serde::Serialize;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Where libraries go in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LibraryDir {
    /// All into this dir (hook and shim).
    Dir(PathBuf),
    /// Each at its path relative to the driver root (CDI).
    HostRelative,
}

impl LibraryDir {
    /// LNC's choice: Debian and Ubuntu images (they have `/etc/debian_version`) get
    /// the multiarch dir, every other image `/usr/lib64`.
    pub fn for_image(has_debian_version: bool) -> LibraryDir {
        LibraryDir::Dir(if has_debian_version { "/usr/lib/x86_64-linux-gnu" } else { "/usr/lib64" }.into())
    }
}

/// One bind mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMount {
    pub host_path: PathBuf,
    pub container_path: PathBuf,
    pub kind: MountKind,
}

impl FileMount {
    /// OCI/CDI mount options. Files the container only reads are read-only and keep
    /// exec (libraries, binaries); sockets and the MPS dir are writable, noexec.
    pub fn options(&self) -> &'static [&'static str] {
        match self.kind {
            MountKind::Library | MountKind::Binary | MountKind::Firmware | MountKind::Config => {
                &["ro", "nosuid", "nodev", "bind"]
            }
            MountKind::Socket => &["nosuid", "nodev", "noexec", "bind"],
            MountKind::Directory => &["nosuid", "nodev", "noexec", "rbind"],
        }
    }
}

impl Serialize for FileMount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("FileMount", 4)?;
        st.serialize_field("hostPath", &self.host_path)?;
        st.serialize_field("containerPath", &self.container_path)?;
        st.serialize_field("options", self.options())?;
        st.serialize_field("kind", &self.kind)?;
        st.end()
    }
}

/// A symlink to create in the container: `link` → `target` (relative, same dir).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Symlink {
    pub target: String,
    pub link: PathBuf,
}

/// What the applier does for the driver's user space.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DriverEdits {
    /// Sorted by container path.
    pub mounts: Vec<FileMount>,
    /// Sorted by link.
    pub symlinks: Vec<Symlink>,
    /// One x86-64 entry per library (key SONAME, value its link in the container).
    pub ld_cache: Vec<Entry>,
    /// The host driver's version when the image's CUDA compat libraries may go
    /// first in the loader cache (`cuda-compat = true`); `None`: never.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cuda_compat: Option<String>,
}

/// Dev links NVIDIA makes whatever the host has: (base, link name, target is the file
/// rather than the SONAME).
const FIXED_LINKS: &[(&str, &str, bool)] = &[
    ("libcuda.so", "libcuda.so", false),
    ("libnvidia-opticalflow.so", "libnvidia-opticalflow.so", false),
    ("libGLX_nvidia.so", "libGLX_indirect.so.0", true),
];

/// The container side of `files`. See the module header.
pub fn place(files: &DriverFiles, libs: LibraryDir) -> DriverEdits {
    let mut edits = DriverEdits::default();
    let has_libcuda = files.libraries.iter().any(|l| l.base == "libcuda.so");
    edits.cuda_compat = (files.cuda_compat && has_libcuda).then(|| files.version.clone());
    for lib in &files.libraries {
        let Some(file_name) = lib.path.file_name().and_then(|n| n.to_str()) else { continue };
        let dir = match &libs {
            LibraryDir::Dir(dir) => match lib.path.parent().and_then(Path::file_name) {
                Some(sub) if sub.as_bytes() == b"vdpau" => dir.join("vdpau"),
                _ => dir.clone(),
            },
            LibraryDir::HostRelative => lib.path.parent().unwrap_or(Path::new("/")).to_path_buf(),
        };
        edits.mounts.push(FileMount {
            host_path: super::resolve::host_path(&files.root, &lib.path),
            container_path: dir.join(file_name),
            kind: MountKind::Library,
        });
        let mut link = |target: &str, name: &str| {
            if target != name {
                edits.symlinks.push(Symlink { target: target.to_owned(), link: dir.join(name) });
            }
        };
        link(file_name, &lib.soname);
        if lib.dev_link {
            link(&lib.soname, &lib.base);
        }
        for &(base, name, to_file) in FIXED_LINKS {
            if lib.base == base {
                link(if to_file { file_name } else { &lib.soname }, name);
            }
        }
        let value = dir.join(&lib.soname);
        edits.ld_cache.push(Entry::x86_64(lib.soname.as_bytes(), value.as_os_str().as_bytes()));
    }
    for file in &files.files {
        edits.mounts.push(FileMount {
            host_path: file.host_path.clone(),
            container_path: file.container_path.clone(),
            kind: file.kind,
        });
    }

    // Stable sorts, then drop later duplicates: the first one found wins.
    edits.mounts.sort_by(|a, b| a.container_path.cmp(&b.container_path));
    edits.mounts.dedup_by(|b, a| a.container_path == b.container_path);
    edits.symlinks.sort_by(|a, b| a.link.cmp(&b.link));
    edits.symlinks.dedup_by(|b, a| a.link == b.link);
    // A link never replaces a mounted file.
    edits.symlinks.retain(|s| edits.mounts.binary_search_by(|m| m.container_path.cmp(&s.link)).is_err());
    // The dev links (`libcuda.so`) get cache entries too, which ldconfig would not make:
    // `dlopen("libcuda.so")` then works even where the image's loader does not search
    // the library dir by default (a multiarch dir in a RHEL image, a CDI host path).
    for s in &edits.symlinks {
        let Some(name) = s.link.file_name() else { continue };
        if !edits.ld_cache.iter().any(|e| e.key == name.as_bytes()) {
            edits.ld_cache.push(Entry::x86_64(name.as_bytes(), s.link.as_os_str().as_bytes()));
        }
    }
    edits.ld_cache.sort_by(|a, b| (&a.key, &a.value).cmp(&(&b.key, &b.value)));
    edits.ld_cache.dedup();
    edits
}
