//! The OCI bundle a runtime hands over: `config.json` and what mighook reads from it.
//!
//! Two readers share one size limit and one request reader
//! ([`source::SpecView::parse`]). The hooks ([`HookBundle`], from the state's
//! `bundle`) keep only the view: what a request needs, nothing else, so their
//! memory is bounded by the file whatever its shape. The shim ([`Bundle`], from
//! `--bundle`) must rewrite config.json, so it keeps the whole spec as a
//! `serde_json::Value` (lenient: runtimes and engines add fields of their own,
//! and typed parsers drop or reject them). [`plan_from_view`] is the
//! request-to-plan step (request sources under the admin's policy → grammar →
//! resolution) that every delivery path performs the same way.
//!
//! Size: config.json is at most [`MAX_CONFIG_BYTES`] (2 MiB). Real files are a
//! few KiB (tens with a seccomp profile). A container's arguments and environment
//! must fit the kernel's ARG_MAX (2 MiB at the usual 8 MiB stack limit) for its
//! process to exec at all, and exec counts each string at its length plus a NUL
//! and an 8-byte pointer where JSON adds 3 bytes; no single string may pass
//! MAX_ARG_STRLEN (128 KiB). The bound is set by memory: the hook's peak must stay
//! under 16 MiB on any input, and a request value with escapes is the file, the
//! parser's scratch and the decoded copy at once, on top of a ~7-9 MiB process
//! (`attack::worst_case_config_json_keeps_the_hook_under_16_mib` measures it).
//! The price: a container whose environment is within a few percent of ARG_MAX,
//! or over it under a raised stack limit, is refused with an error naming the limit.

use crate::driver::Driver;
use crate::request::source::{self, SourcePolicy, SpecView};
use crate::request::{DriverCapabilities, Request, RequestError};
use crate::resolve::{Plan, ResolveError};
use crate::settings::{Settings, SettingsError};
use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// config.json is small; anything larger cannot be a runnable container (see the module doc).
pub const MAX_CONFIG_BYTES: u64 = 2 << 20;

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
    #[error("config.json root.path {0} has control characters")]
    BadRoot(String),
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

/// Reads `<dir>/config.json` as text, at most [`MAX_CONFIG_BYTES`].
fn read_config(dir: &Path) -> Result<(PathBuf, String), BundleError> {
    let path = dir.join("config.json");
    let mut f = std::fs::File::open(&path).map_err(|source| BundleError::Open { path: path.clone(), source })?;
    let text = read_limited(&mut f, MAX_CONFIG_BYTES, &path.display().to_string())?;
    Ok((path, text))
}

/// Absolute host path of the container's root filesystem (`root.path`, bundle-relative if relative).
fn rootfs_of(dir: &Path, root: Option<&str>) -> Result<PathBuf, BundleError> {
    let root = root.ok_or(BundleError::NoRoot)?;
    // Every later error and log line names the root; no real runtime puts a newline in it.
    if root.chars().any(char::is_control) {
        return Err(BundleError::BadRoot(crate::request::shown(root)));
    }
    Ok(if root.starts_with('/') { PathBuf::from(root) } else { dir.join(root) })
}

/// [`Settings::for_container`] with the log started and every dropped variable in it.
fn settings_for(settings: &Settings, container_env: &[String]) -> Result<Settings, SettingsError> {
    settings.init_log();
    settings.for_container(container_env)?;
    Ok(settings.clone())
}

/// The `process.env` entries the settings guard needs: `MIGHOOK_X=v` where this
/// process's own `MIGHOOK_X` is `v` (the guard refuses the start on exactly those).
/// Any other container entry can never match, so the hook need not keep it.
fn matches_own_env(kv: &str) -> bool {
    let Some((key, value)) = kv.split_once('=') else { return false };
    key.starts_with("MIGHOOK_") && std::env::var_os(key).is_some_and(|own| own == value)
}

/// A bundle as the hooks read it: the directory and what a request needs from
/// its `config.json` ([`SpecView`]), never the whole spec.
#[derive(Debug, Clone)]
pub struct HookBundle {
    pub dir: PathBuf,
    pub view: SpecView,
}

impl HookBundle {
    /// Reads `<dir>/config.json`: the file's text, then one pass that keeps the view.
    /// Annotations are the runtime shim's business: the view has none.
    pub fn read(dir: &Path) -> Result<HookBundle, BundleError> {
        let (path, text) = read_config(dir)?;
        let view =
            SpecView::parse(&text, &[], &matches_own_env).map_err(|source| BundleError::NotJson { path, source })?;
        Ok(HookBundle { dir: dir.to_path_buf(), view })
    }

    /// Absolute host path of the container's root filesystem.
    pub fn rootfs(&self) -> Result<PathBuf, BundleError> {
        rootfs_of(&self.dir, self.view.root_path.as_deref())
    }

    /// [`Settings::for_container`] for this container, with the log started.
    pub fn container_settings(&self, settings: &Settings) -> Result<Settings, SettingsError> {
        settings_for(settings, &self.view.kept_env)
    }

    /// What the spec asks for under the admin's policy (annotations aside), resolved
    /// against the driver. Consumes the bundle: the request's strings move, not copy.
    pub fn plan<D: Driver + ?Sized>(
        self,
        policy: &SourcePolicy,
        default_capabilities: &DriverCapabilities,
        driver: &D,
    ) -> Result<Plan, BundleError> {
        let policy = SourcePolicy { annotation_prefixes: vec![], ..policy.clone() };
        plan_from_view(self.view, &policy, default_capabilities, driver)
    }
}

impl Bundle {
    /// Reads `<dir>/config.json` whole, for the shim that rewrites it.
    pub fn read(dir: &Path) -> Result<Bundle, BundleError> {
        let (path, text) = read_config(dir)?;
        let spec = serde_json::from_str(&text).map_err(|source| BundleError::NotJson { path, source })?;
        Ok(Bundle { dir: dir.to_path_buf(), spec })
    }

    /// Absolute host path of the container's root filesystem (`root.path`, bundle-relative if relative).
    pub fn rootfs(&self) -> Result<PathBuf, BundleError> {
        rootfs_of(&self.dir, self.spec.pointer("/root/path").and_then(Value::as_str))
    }

    /// The container's `process.env` as strings.
    pub fn env(&self) -> Vec<String> {
        container_env(&self.spec)
    }

    /// `settings`, checked with [`Settings::for_container`] against this container's env,
    /// with the log started.
    pub fn container_settings(&self, settings: &Settings) -> Result<Settings, SettingsError> {
        settings_for(settings, &self.env())
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
    let view = SpecView::from_value(spec, &policy.annotation_prefixes, &|_| false);
    plan_from_view(view, policy, default_capabilities, driver)
}

/// What a spec's view asks for under the admin's policy, resolved against the driver.
/// Notes go to the log (each already shows what the container wrote through `request::shown`).
pub fn plan_from_view<D: Driver + ?Sized>(
    view: SpecView,
    policy: &SourcePolicy,
    default_capabilities: &DriverCapabilities,
    driver: &D,
) -> Result<Plan, BundleError> {
    let found = source::from_view(view, policy);
    for note in &found.notes {
        crate::log::info(note);
    }
    let request = Request::parse(&found.raw(), default_capabilities)?;
    Ok(crate::resolve::plan_checked(&request, &found.image, driver)?)
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
    fn a_root_path_with_control_characters_is_refused_shown() {
        let b = Bundle { dir: "/b".into(), spec: serde_json::json!({"root": {"path": "/r\nmighook: forged"}}) };
        assert_eq!(
            b.rootfs().unwrap_err().to_string(),
            "config.json root.path \"/r\\nmighook: forged\" has control characters"
        );
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
