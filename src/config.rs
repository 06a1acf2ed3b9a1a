//! The config file, `/etc/mighook/config.toml` by default.
//!
//! Every key is optional; unknown keys are an error that names the key, so a
//! typo never silently keeps a default. The keys, one by one, are documented
//! in docs/CONFIG.md. The file is mighook's own: nothing a container sets can
//! point mighook at another one.

use crate::log::Level;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Where the config file is read from when neither `--config` nor `MIGHOOK_CONFIG` says.
pub const DEFAULT_PATH: &str = "/etc/mighook/config.toml";

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("config {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("config {path}: {reason}")]
    Parse { path: String, reason: String },
}

/// What a requested capability whose essential library is absent does.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum MissingDriverFiles {
    /// Skip it with a warning in the log, as NVIDIA's toolkit does.
    #[default]
    Warn,
    /// Refuse the start, naming the library.
    Error,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConfigFile {
    /// Path or soname of libnvidia-ml (default: `libnvidia-ml.so.1` as the driver root's loader cache maps it).
    pub nvml_lib: Option<String>,
    /// Where the driver's user-space files live on the host (default `/`; `/run/nvidia/driver` under the GPU Operator).
    pub driver_root: Option<PathBuf>,
    /// What a missing essential driver library does: `warn` (skip it, as NVIDIA does) or `error`.
    pub missing_driver_files: Option<MissingDriverFiles>,
    /// Where the driver's /proc files are read (default `/proc`).
    pub proc_root: Option<PathBuf>,
    /// Host directory of the NVIDIA device nodes (default `/dev`): CDI host paths and bind-mount sources.
    pub dev_root: Option<PathBuf>,
    /// Log file for details (default: none; warnings go to stderr).
    pub log_file: Option<PathBuf>,
    /// error, warn, info or debug (default `info`).
    pub log_level: Option<Level>,
    /// Low-level runtime the shim execs: a name on PATH or an absolute path (default `runc`).
    pub low_level_runtime: Option<String>,
    /// Whether unprivileged containers may ask by `NVIDIA_VISIBLE_DEVICES` (default true, like NVIDIA's stack).
    pub accept_envvar_when_unprivileged: Option<bool>,
    /// Whether `/dev/null` mounts onto `/var/run/nvidia-container-devices/<id>` name devices (default false).
    pub accept_volume_mounts: Option<bool>,
    /// Annotation key prefixes whose `nvidia.com/gpu=<id>` values the shim reads (default none: off).
    pub annotation_prefixes: Option<Vec<String>>,
    /// Driver capabilities when a container sets none (default `utility,compute`).
    pub default_driver_capabilities: Option<String>,
    /// Check no image requirement (`NVIDIA_REQUIRE_*`, legacy `CUDA_VERSION`), as NVIDIA's `disable-require` (default false).
    pub disable_require: Option<bool>,
    /// CUDA forward compatibility: an image's `/usr/local/cuda/compat` libcuda newer than
    /// the host driver goes first in its loader cache (default true, as NVIDIA's hook).
    pub cuda_compat: Option<bool>,
    /// Load a missing `nvidia-uvm` / `nvidia-modeset` with the host's modprobe (default true, as NVIDIA's `load-kmods`).
    pub load_kmods: Option<bool>,
    /// The host's modprobe, an absolute path (default `/sbin/modprobe`).
    pub modprobe: Option<PathBuf>,
}

impl ConfigFile {
    /// Reads a config file. A missing file is an error only when `required`.
    pub fn load(path: &Path, required: bool) -> Result<ConfigFile, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(ConfigFile::default()),
            Err(e) => return Err(ConfigError::Read { path: path.display().to_string(), reason: e.to_string() }),
        };
        Self::parse(&text).map_err(|reason| ConfigError::Parse { path: path.display().to_string(), reason })
    }

    pub fn parse(text: &str) -> Result<ConfigFile, String> {
        let file: ConfigFile = toml::from_str(text).map_err(|e| e.message().to_string())?;
        // A relative modprobe would be looked up wherever mighook happens to run.
        if let Some(m) = file.modprobe.as_ref().filter(|m| !m.is_absolute()) {
            return Err(format!("modprobe must be an absolute path, not {:?}", m.display().to_string()));
        }
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_parses() {
        let c = ConfigFile::parse(
            r#"
nvml-lib = "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1"
driver-root = "/run/nvidia/driver"
missing-driver-files = "error"
proc-root = "/proc"
dev-root = "/dev"
log-file = "/var/log/mighook.log"
log-level = "debug"
low-level-runtime = "crun"
accept-envvar-when-unprivileged = false
accept-volume-mounts = true
annotation-prefixes = ["cdi.k8s.io/", "example.com/"]
default-driver-capabilities = "utility"
disable-require = true
cuda-compat = false
load-kmods = false
modprobe = "/usr/sbin/modprobe"
"#,
        )
        .unwrap();
        assert_eq!(c.low_level_runtime.as_deref(), Some("crun"));
        assert_eq!(c.log_level, Some(Level::Debug));
        assert_eq!(c.accept_envvar_when_unprivileged, Some(false));
        assert_eq!(c.driver_root, Some(PathBuf::from("/run/nvidia/driver")));
        assert_eq!(c.missing_driver_files, Some(MissingDriverFiles::Error));
        assert_eq!(c.disable_require, Some(true));
        assert_eq!(c.cuda_compat, Some(false));
        assert_eq!(c.load_kmods, Some(false));
        assert_eq!(c.modprobe, Some(PathBuf::from("/usr/sbin/modprobe")));
    }

    #[test]
    fn a_relative_modprobe_is_an_error() {
        let e = ConfigFile::parse("modprobe = \"modprobe\"\n").unwrap_err();
        assert_eq!(e, "modprobe must be an absolute path, not \"modprobe\"");
    }

    #[test]
    fn missing_driver_files_takes_only_warn_or_error() {
        assert!(ConfigFile::parse("missing-driver-files = \"ignore\"\n").is_err());
        assert_eq!(
            ConfigFile::parse("missing-driver-files = \"warn\"\n").unwrap().missing_driver_files,
            Some(MissingDriverFiles::Warn)
        );
    }

    #[test]
    fn unknown_key_is_an_error_that_names_it() {
        let e = ConfigFile::parse("nvml-library = \"x\"\n").unwrap_err();
        assert!(e.contains("nvml-library"), "{e}");
    }

    #[test]
    fn wrong_type_is_an_error() {
        assert!(ConfigFile::parse("accept-volume-mounts = \"yes\"\n").is_err());
    }

    #[test]
    fn missing_default_file_is_fine_but_a_named_one_is_not() {
        assert_eq!(ConfigFile::load(Path::new("/nonexistent/mighook.toml"), false).unwrap(), ConfigFile::default());
        assert!(ConfigFile::load(Path::new("/nonexistent/mighook.toml"), true).is_err());
    }
}
