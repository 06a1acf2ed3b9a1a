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

    /// Drops every variable whose exact `KEY=VALUE` the container's env also has.
    /// Returns the names dropped, for the log.
    pub fn without_container_values(mut self, container_env: &[String]) -> (Self, Vec<&'static str>) {
        let mut dropped = vec![];
        for (key, slot) in [
            ("MIGHOOK_CONFIG", &mut self.config),
            ("MIGHOOK_NVML_LIB", &mut self.nvml_lib),
            ("MIGHOOK_PROC_ROOT", &mut self.proc_root),
            ("MIGHOOK_DRIVER_ROOT", &mut self.driver_root),
        ] {
            if let Some(v) = slot.as_deref()
                && container_env.iter().any(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')) == Some(v))
            {
                *slot = None;
                dropped.push(key);
            }
        }
        (self, dropped)
    }
}

/// What settings were resolved from, so [`Settings::for_container`] can resolve again.
/// Left out of `Debug`: two settings that mean the same print the same.
#[derive(Clone)]
struct Origin(GlobalFlags, OwnEnv);

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
}

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
            origin: Origin(flags.clone(), env.clone()),
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
                annotation_prefixes: file.annotation_prefixes.unwrap_or_else(|| vec!["cdi.k8s.io/".into()]),
            },
            default_capabilities,
        })
    }

    /// The settings for the hook and the shim, which act on a container: a `MIGHOOK_*`
    /// value that the container's own env also carries is ignored (defence in depth
    /// against hooks that inherit a container's environment, CVE-2025-23266), and the
    /// settings are resolved again without it. Returns the names of the dropped variables.
    pub fn for_container(&self, container_env: &[String]) -> Result<(Settings, Vec<&'static str>), SettingsError> {
        let Origin(flags, env) = &self.origin;
        let (env, dropped) = env.clone().without_container_values(container_env);
        if dropped.is_empty() {
            return Ok((self.clone(), dropped));
        }
        Ok((Settings::resolve(flags, &env)?, dropped))
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
    fn container_copies_of_own_variables_are_dropped() {
        let env = OwnEnv {
            proc_root: Some("/tmp/evil".into()),
            nvml_lib: Some("/ok.so".into()),
            config: None,
            driver_root: None,
        };
        let (env, dropped) =
            env.without_container_values(&["MIGHOOK_PROC_ROOT=/tmp/evil".into(), "MIGHOOK_NVML_LIB=/other.so".into()]);
        assert_eq!(dropped, ["MIGHOOK_PROC_ROOT"]);
        assert_eq!(env.proc_root, None);
        assert_eq!(env.nvml_lib.as_deref(), Some("/ok.so"));
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
