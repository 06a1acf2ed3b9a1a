//! The OCI bundle a runtime hands over: `config.json` and what mighook reads from it.
//!
//! The hook (from the state's `bundle`), the shim (from `--bundle`) and every
//! later step share this one reader. config.json is read leniently as a
//! `serde_json::Value`: runtimes and engines add fields of their own, and
//! typed parsers drop or reject them. Size is bounded: anything larger than a
//! real runtime writes is refused. [`Bundle::plan`] is the request-to-plan step
//! (request sources under the admin's policy → grammar → resolution) that every
//! delivery path performs the same way.

use crate::driver::Driver;
use crate::request::source::{self, SourcePolicy};
use crate::request::{DriverCapabilities, Request, RequestError};
use crate::resolve::{Plan, ResolveError};
use crate::settings::{Settings, SettingsError};
use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// config.json is small; anything larger is not a real runtime talking.
pub const MAX_CONFIG_BYTES: u64 = 64 << 20;

#[derive(Debug, Error)]
pub enum BundleError {
    #[error("cannot open {}: {source}", path.display())]
    Open { path: PathBuf, source: std::io::Error },
    #[error("cannot read {what}: {source}")]
    Read { what: String, source: std::io::Error },
    #[error("{what} is larger than {limit} bytes")]
    TooLarge { what: String, limit: u64 },
    #[error("{}: not JSON: {source}", path.display())]
    NotJson { path: PathBuf, source: serde_json::Error },
    #[error("config.json has no root.path")]
    NoRoot,
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Resolve(#[from] ResolveError),
}

/// Reads at most `limit` bytes of text; more is an error naming `what`.
pub fn read_limited(r: &mut dyn Read, limit: u64, what: &str) -> Result<String, BundleError> {
    let mut text = String::new();
    r.take(limit + 1).read_to_string(&mut text).map_err(|source| BundleError::Read { what: what.into(), source })?;
    if text.len() as u64 > limit {
        return Err(BundleError::TooLarge { what: what.into(), limit });
    }
    Ok(text)
}

/// A bundle directory and its parsed `config.json`.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub dir: PathBuf,
    pub spec: Value,
}

impl Bundle {
    /// Reads `<dir>/config.json`.
    pub fn read(dir: &Path) -> Result<Bundle, BundleError> {
        let path = dir.join("config.json");
        let mut f = std::fs::File::open(&path).map_err(|source| BundleError::Open { path: path.clone(), source })?;
        let text = read_limited(&mut f, MAX_CONFIG_BYTES, &path.display().to_string())?;
        let spec = serde_json::from_str(&text).map_err(|source| BundleError::NotJson { path, source })?;
        Ok(Bundle { dir: dir.to_path_buf(), spec })
    }

    /// Absolute host path of the container's root filesystem (`root.path`, bundle-relative if relative).
    pub fn rootfs(&self) -> Result<PathBuf, BundleError> {
        let root = self.spec.pointer("/root/path").and_then(Value::as_str).ok_or(BundleError::NoRoot)?;
        Ok(if root.starts_with('/') { PathBuf::from(root) } else { self.dir.join(root) })
    }

    /// The container's `process.env` as strings.
    pub fn env(&self) -> Vec<String> {
        container_env(&self.spec)
    }

    /// `settings`, checked with [`Settings::for_container`] against this container's env,
    /// with the log started.
    pub fn container_settings(&self, settings: &Settings) -> Result<Settings, SettingsError> {
        settings.init_log();
        settings.for_container(&self.env())?;
        Ok(settings.clone())
    }

    /// What the spec asks for under the admin's policy, resolved against the driver.
    pub fn plan<D: Driver + ?Sized>(
        &self,
        policy: &SourcePolicy,
        default_capabilities: &DriverCapabilities,
        driver: &D,
    ) -> Result<Plan, BundleError> {
        plan_from_spec(&self.spec, policy, default_capabilities, driver)
    }
}

/// The container's `process.env` as strings (for the settings guard against copied `MIGHOOK_*` values).
pub fn container_env(spec: &Value) -> Vec<String> {
    let env = spec.pointer("/process/env").and_then(Value::as_array);
    env.map(|e| e.iter().filter_map(Value::as_str).map(str::to_string).collect()).unwrap_or_default()
}

/// What a spec asks for under the admin's policy, resolved against the driver.
///
/// Notes from reading the spec (an env request refused by policy, say) go to the log.
pub fn plan_from_spec<D: Driver + ?Sized>(
    spec: &Value,
    policy: &SourcePolicy,
    default_capabilities: &DriverCapabilities,
    driver: &D,
) -> Result<Plan, BundleError> {
    let found = source::from_spec(spec, policy);
    for note in &found.notes {
        crate::log::info(note);
    }
    let request = Request::parse(&found.raw(), default_capabilities)?;
    Ok(crate::resolve::plan(&request, driver)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_root_is_joined_to_the_bundle() {
        let b = Bundle { dir: "/b".into(), spec: serde_json::json!({"root": {"path": "rootfs"}}) };
        assert_eq!(b.rootfs().unwrap(), PathBuf::from("/b/rootfs"));
    }

    #[test]
    fn absolute_root_is_kept_and_a_missing_one_is_an_error() {
        let b = Bundle { dir: "/b".into(), spec: serde_json::json!({"root": {"path": "/r"}}) };
        assert_eq!(b.rootfs().unwrap(), PathBuf::from("/r"));
        let none = Bundle { dir: "/b".into(), spec: serde_json::json!({}) };
        assert_eq!(none.rootfs().unwrap_err().to_string(), "config.json has no root.path");
    }

    #[test]
    fn env_keeps_only_strings() {
        let b = Bundle { dir: "/b".into(), spec: serde_json::json!({"process": {"env": ["A=1", 5, "B=2"]}}) };
        assert_eq!(b.env(), ["A=1", "B=2"]);
    }

    #[test]
    fn config_json_that_is_not_json_names_the_file() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("config.json"), "{").unwrap();
        let e = Bundle::read(d.path()).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}/config.json: not JSON", d.path().display())), "{e}");
    }
}
