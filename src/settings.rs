//! Resolved settings: flags over mighook's own environment over the config file over defaults.
//!
//! Raw command-line arguments live in the CLI module; this is what they mean
//! once combined. The environment read here is mighook's OWN process
//! environment (`MIGHOOK_CONFIG`, `MIGHOOK_NVML_LIB`, `MIGHOOK_PROC_ROOT`),
//! never a container's `process.env`. As defence in depth against hooks that
//! inherit a container's environment (the CVE-2025-23266 class), a `MIGHOOK_*`
//! value that the container's own `process.env` also carries is ignored.

use crate::config::{ConfigError, ConfigFile, DEFAULT_PATH, MissingDriverFiles};
use crate::log::Level;
use crate::request::source::SourcePolicy;
use crate::request::{DriverCapabilities, RequestError};
use std::path::PathBuf;
use thiserror::Error;

pub const DEFAULT_NVML_LIB: &str = "libnvidia-ml.so.1";

#[derive(Debug, Error)]
pub enum SettingsError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("config default-driver-capabilities: {0}")]
    Capabilities(RequestError),
    #[error(
        "{var} of mighook's own environment is also in the container's environment with the same value: \
         the runtime handed the hook the container's environment; refusing to start the container \
         (set mighook's settings in the config file or the hook entry's own env)"
    )]
    CopiedFromContainer { var: &'static str },
}

/// The global options as given on the command line.
#[derive(Debug, Clone, Default)]
pub struct GlobalFlags {
    pub config: Option<PathBuf>,
    pub nvml_lib: Option<String>,
    pub proc_root: Option<PathBuf>,
    pub driver_root: Option<PathBuf>,
}

/// The `MIGHOOK_*` variables of mighook's own environment.
#[derive(Debug, Clone, Default)]
pub struct OwnEnv {
    pub config: Option<String>,
    pub nvml_lib: Option<String>,
    pub proc_root: Option<String>,
    pub driver_root: Option<String>,
}

impl OwnEnv {
    pub fn from_process() -> Self {
        let var = |k| std::env::var(k).ok().filter(|v: &String| !v.is_empty());
        OwnEnv {
            config: var("MIGHOOK_CONFIG"),
            nvml_lib: var("MIGHOOK_NVML_LIB"),
            proc_root: var("MIGHOOK_PROC_ROOT"),
            driver_root: var("MIGHOOK_DRIVER_ROOT"),
        }
    }

    /// The first variable whose exact `KEY=VALUE` the container's env also has.
    pub fn copied_from(&self, container_env: &[String]) -> Option<&'static str> {
        [
            ("MIGHOOK_CONFIG", &self.config),
            ("MIGHOOK_NVML_LIB", &self.nvml_lib),
            ("MIGHOOK_PROC_ROOT", &self.proc_root),
            ("MIGHOOK_DRIVER_ROOT", &self.driver_root),
        ]
        .into_iter()
        .find(|(key, slot)| {
            slot.as_deref().is_some_and(|v| {
                container_env.iter().any(|kv| kv.strip_prefix(*key).and_then(|r| r.strip_prefix('=')) == Some(v))
            })
        })
        .map(|(key, _)| key)
    }
}

/// The own environment settings were resolved from, for [`Settings::for_container`].
/// Left out of `Debug`: two settings that mean the same print the same.
#[derive(Clone)]
struct Origin(OwnEnv);

impl std::fmt::Debug for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Origin")
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    origin: Origin,
    pub config_path: Option<PathBuf>,
    /// A path, or a bare name looked up in the driver root's own loader cache.
    pub nvml_lib: String,
    /// Where the driver's user-space files are on the host (`/`, or `/run/nvidia/driver` under the GPU Operator).
    pub driver_root: PathBuf,
    pub missing_driver_files: MissingDriverFiles,
    pub proc_root: PathBuf,
    pub dev_root: PathBuf,
    pub log_file: Option<PathBuf>,
    pub log_level: Level,
    pub low_level_runtime: String,
    pub policy: SourcePolicy,
    pub default_capabilities: DriverCapabilities,
    /// CUDA forward compatibility (`cuda-compat`, default true).
    pub cuda_compat: bool,
    /// `load-kmods`: load a missing `nvidia-uvm` / `nvidia-modeset` with [`Settings::modprobe`].
    pub load_kmods: bool,
    /// The host's modprobe (absolute).
    pub modprobe: PathBuf,
}

/// The host's modprobe unless the config file names another.
pub const DEFAULT_MODPROBE: &str = "/sbin/modprobe";

impl Settings {
    pub fn resolve(flags: &GlobalFlags, env: &OwnEnv) -> Result<Settings, SettingsError> {
        let (config_path, required) = match (&flags.config, &env.config) {
            (Some(p), _) => (p.clone(), true),
            (None, Some(p)) => (PathBuf::from(p), true),
            (None, None) => (PathBuf::from(DEFAULT_PATH), false),
        };
        let file = ConfigFile::load(&config_path, required)?;
        let config_exists = required || config_path.exists();
        let default_capabilities = match &file.default_driver_capabilities {
            Some(c) => DriverCapabilities::parse(c).map_err(SettingsError::Capabilities)?,
            None => DriverCapabilities::default(),
        };
        Ok(Settings {
            origin: Origin(env.clone()),
            config_path: config_exists.then_some(config_path),
            driver_root: flags
                .driver_root
                .clone()
                .or_else(|| env.driver_root.as_ref().map(PathBuf::from))
                .or_else(|| file.driver_root.clone())
                .unwrap_or_else(|| "/".into()),
            missing_driver_files: file.missing_driver_files.unwrap_or_default(),
            nvml_lib: flags
                .nvml_lib
                .clone()
                .or_else(|| env.nvml_lib.clone())
                .or(file.nvml_lib)
                .unwrap_or_else(|| DEFAULT_NVML_LIB.into()),
            proc_root: flags
                .proc_root
                .clone()
                .or_else(|| env.proc_root.as_ref().map(PathBuf::from))
                .or(file.proc_root)
                .unwrap_or_else(|| "/proc".into()),
            dev_root: file.dev_root.unwrap_or_else(|| "/dev".into()),
            log_file: file.log_file,
            log_level: file.log_level.unwrap_or(Level::Info),
            low_level_runtime: file.low_level_runtime.unwrap_or_else(|| "runc".into()),
            policy: SourcePolicy {
                accept_envvar_when_unprivileged: file.accept_envvar_when_unprivileged.unwrap_or(true),
                accept_volume_mounts: file.accept_volume_mounts.unwrap_or(false),
                // Opt-in, like the device plugin's cdi-annotations strategy: an annotation is
                // a request channel a careful admin enables knowingly.
                annotation_prefixes: file.annotation_prefixes.unwrap_or_default(),
                disable_require: file.disable_require.unwrap_or(false),
            },
            default_capabilities,
            cuda_compat: file.cuda_compat.unwrap_or(true),
            load_kmods: file.load_kmods.unwrap_or(true),
            modprobe: file.modprobe.unwrap_or_else(|| DEFAULT_MODPROBE.into()),
        })
    }

    /// Checks the settings for the hook and the shim, which act on a container: a
    /// `MIGHOOK_*` value of mighook's own environment that the container's env also
    /// carries means a runtime handed the hook the container's environment (the
    /// CVE-2025-23266 class). Such a value is not trusted, and none is quietly dropped
    /// for a weaker default either: the start is refused.
    pub fn for_container(&self, container_env: &[String]) -> Result<(), SettingsError> {
        match self.origin.0.copied_from(container_env) {
            Some(var) => Err(SettingsError::CopiedFromContainer { var }),
            None => Ok(()),
        }
    }

    /// Starts the log with these settings' file and level (once per process).
    pub fn init_log(&self) {
        crate::log::init(self.log_file.clone(), self.log_level);
    }

    pub fn driver(&self) -> crate::driver::HostDriver {
        crate::driver::HostDriver::with_driver_root(
            &self.nvml_lib,
            &self.proc_root,
            &self.driver_root,
            self.missing_driver_files,
        )
        .with_dev_root(&self.dev_root)
        .with_modprobe(self.load_kmods.then_some(self.modprobe.as_path()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_env_and_env_over_defaults() {
        let env = OwnEnv {
            nvml_lib: Some("/env/lib.so".into()),
            proc_root: Some("/env/proc".into()),
            config: None,
            driver_root: None,
        };
        let flags = GlobalFlags { nvml_lib: Some("/flag/lib.so".into()), ..Default::default() };
        let s = Settings::resolve(&flags, &env).unwrap();
        assert_eq!(s.nvml_lib, "/flag/lib.so");
        assert_eq!(s.proc_root, PathBuf::from("/env/proc"));
    }

    #[test]
    fn a_container_copy_of_an_own_variable_refuses_the_start() {
        let env = OwnEnv {
            proc_root: Some("/tmp/evil".into()),
            nvml_lib: Some("/ok.so".into()),
            config: None,
            driver_root: None,
        };
        let s =
            Settings::resolve(&GlobalFlags { config: Some("/dev/null".into()), ..Default::default() }, &env).unwrap();
        let copied = ["MIGHOOK_PROC_ROOT=/tmp/evil".to_string(), "MIGHOOK_NVML_LIB=/other.so".to_string()];
        assert_eq!(env.copied_from(&copied), Some("MIGHOOK_PROC_ROOT"));
        let e = s.for_container(&copied).unwrap_err().to_string();
        assert!(e.starts_with("MIGHOOK_PROC_ROOT of mighook's own environment is also in the container's"), "{e}");
        assert!(s.for_container(&["MIGHOOK_NVML_LIB=/other.so".to_string()]).is_ok());
        assert!(s.for_container(&[]).is_ok());
    }

    #[test]
    fn named_config_file_must_exist() {
        let flags = GlobalFlags { config: Some("/nonexistent/c.toml".into()), ..Default::default() };
        assert!(Settings::resolve(&flags, &OwnEnv::default()).is_err());
    }

    #[test]
    fn config_file_values_are_used() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "proc-root = \"/fake/proc\"\naccept-volume-mounts = true\n").unwrap();
        let flags = GlobalFlags { config: Some(path), ..Default::default() };
        let s = Settings::resolve(&flags, &OwnEnv::default()).unwrap();
        assert_eq!(s.proc_root, PathBuf::from("/fake/proc"));
        assert!(s.policy.accept_volume_mounts);
    }
}
