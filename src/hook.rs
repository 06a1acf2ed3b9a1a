//! `mighook prestart`: the OCI hook path.
//!
//! The runtime passes the container state on stdin; `pid` and `bundle` are the
//! only fields relied on (runc says `status: creating`, crun `created`). The
//! request comes from `<bundle>/config.json`, read leniently and keeping only
//! what a request needs ([`HookBundle`]). A container that asks for nothing
//! (`void`, unset) is left untouched. The resolved edits are applied to the live
//! container by [`crate::apply`].

use crate::apply::{self, ApplyError, Target};
use crate::bundle::{BundleError, HookBundle, read_limited};
use crate::driver_files::DriverEdits;
use crate::settings::{Settings, SettingsError};
use serde_json::Value;
use std::io::Read;
use std::path::PathBuf;
use thiserror::Error;

/// The state is small; anything larger is not a real runtime talking.
const MAX_STATE_BYTES: u64 = 1 << 20;

#[derive(Debug, Error)]
pub enum HookError {
    #[error("OCI state on stdin is not JSON: {0}")]
    StateNotJson(serde_json::Error),
    #[error("OCI state on stdin has no valid pid")]
    NoPid,
    #[error("OCI state on stdin has no absolute bundle path")]
    NoBundle,
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
}

/// What the hook needs from the OCI state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub pid: i32,
    pub bundle: PathBuf,
}

/// Parses the OCI state; unknown fields and odd values elsewhere are ignored.
pub fn parse_state(text: &str) -> Result<State, HookError> {
    let (pid, bundle) = parse_state_pid_optional(text)?;
    Ok(State { pid: pid.ok_or(HookError::NoPid)?, bundle })
}

/// [`parse_state`] for a createContainer hook, where the pid may be absent or 0 (crun
/// says `"pid":0` there: the hook runs inside the container and needs none).
fn parse_state_pid_optional(text: &str) -> Result<(Option<i32>, PathBuf), HookError> {
    let v: Value = serde_json::from_str(text).map_err(HookError::StateNotJson)?;
    let pid = v.get("pid").and_then(Value::as_i64).filter(|p| *p > 0 && *p <= i32::MAX as i64);
    // `bundlePath` is what pre-1.0 runtimes said.
    let bundle = v.get("bundle").or_else(|| v.get("bundlePath")).and_then(Value::as_str);
    let Some(bundle) = bundle.filter(|b| b.starts_with('/')) else {
        return Err(HookError::NoBundle);
    };
    Ok((pid.map(|p| p as i32), PathBuf::from(bundle)))
}

/// `mighook cdi-hook`: the createContainer hook of mighook's CDI spec. The engine
/// mounts the driver files the spec lists; this makes their SONAME links and
/// mounts the loader cache with `libs` merged in, inside the container's root.
pub fn cdi_hook(settings: &Settings, stdin: &mut dyn Read, edits: &DriverEdits) -> Result<(), HookError> {
    settings.init_log();
    let (enter, rootfs) = create_container_root(stdin)?;
    let report = apply::driver_files::inject_placed(&crate::sys::LinuxSys, enter, &rootfs, edits, apply::state_dir()?)
        .map_err(ApplyError::from)?;
    crate::log::info(&format!("pid {}: cdi-hook: {}", enter.unwrap_or(0), report.lines.join("; ")));
    Ok(())
}

/// For a createContainer hook: the container's root (from the state on `stdin` and
/// the bundle's config.json), and the pid whose mount namespace to join, `None` when
/// this process already is in it.
pub fn create_container_root(stdin: &mut dyn Read) -> Result<(Option<i32>, PathBuf), HookError> {
    let (pid, bundle) = parse_state_pid_optional(&read_limited(stdin, MAX_STATE_BYTES, "OCI state")?)?;
    let rootfs = HookBundle::read(&bundle)?.rootfs()?;
    // A createContainer hook runs in the container's namespaces (OCI runtime spec): runc forks
    // it from the container's init and says `pid` 1 (of the container's pid namespace, while
    // /proc is still the host's: /proc/1/ns/mnt would be the host's init); crun says 0.
    Ok((pid.filter(|p| !in_mount_ns_of(*p)), rootfs))
}

/// Whether this process already is where the container's files go: either it lives in a pid
/// namespace that /proc does not describe (so the state's pid is one of the container's own
/// and this is a hook forked inside it), or `pid` shares this process's mount namespace.
fn in_mount_ns_of(pid: i32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let seen_by_proc = std::fs::read_link("/proc/self").ok().and_then(|p| p.to_str()?.parse::<u32>().ok());
    if seen_by_proc != Some(std::process::id()) {
        return true;
    }
    let ns = |who: &str| std::fs::metadata(format!("/proc/{who}/ns/mnt")).map(|m| (m.dev(), m.ino()));
    matches!((ns("self"), ns(&pid.to_string())), (Ok(a), Ok(b)) if a == b)
}

/// Runs the prestart hook on a state read from `stdin`. The log starts here, once
/// the settings are final for this container.
pub fn prestart(settings: &Settings, stdin: &mut dyn Read) -> Result<(), HookError> {
    let state = parse_state(&read_limited(stdin, MAX_STATE_BYTES, "OCI state")?)?;
    // Only what a request needs is kept from config.json (bounded memory, whatever its shape).
    let bundle = HookBundle::read(&state.bundle)?;
    let settings = bundle.container_settings(settings)?;
    let rootfs = bundle.rootfs();
    let driver = settings.driver();
    // Annotations are the runtime shim's business; the hook reads mounts and env.
    let mut plan = bundle.plan(&settings.policy, &settings.default_capabilities, &driver)?;
    if plan.edits.is_empty() {
        crate::log::debug(&format!("pid {}: not a GPU container, nothing to do", state.pid));
        return Ok(());
    }
    for w in &plan.selection.warnings {
        crate::log::warn(w);
    }
    if let Some(files) = &mut plan.edits.driver_files {
        files.log_missing();
        files.cuda_compat = settings.cuda_compat;
    }
    let target = Target { pid: state.pid, rootfs: rootfs? };
    let host_proc = settings.proc_root.join("driver/nvidia");
    let mask = proc_mask(&crate::proc_driver::ProcSelection::of(&plan.selection), &host_proc, state.pid);
    let proc = mask.as_ref().map(|mask| apply::ProcTarget { mask, host_dir: &host_proc });
    let report = apply::apply_masked(&crate::sys::LinuxSys, &target, &plan.edits, &settings.dev_root, proc)?;
    if mask.is_some() && !report.proc_driver.masked {
        log_unmasked(state.pid, &report.proc_driver);
    }
    crate::log::info(&format!("pid {}: applied {report}", state.pid));
    Ok(())
}

/// `mighook proc-mask`: the prestart hook the shim adds for a GPU container, which masks
/// its `/proc/driver/nvidia` for `sel` (a bind mount inside /proc cannot come from
/// config.json: runc refuses it). The host's driver files are read now, at start.
pub fn proc_mask_hook(
    settings: &Settings,
    stdin: &mut dyn Read,
    sel: &crate::proc_driver::ProcSelection,
) -> Result<(), HookError> {
    settings.init_log();
    let state = parse_state(&read_limited(stdin, MAX_STATE_BYTES, "OCI state")?)?;
    let rootfs = HookBundle::read(&state.bundle)?.rootfs()?;
    let host_proc = settings.proc_root.join("driver/nvidia");
    let Some(mask) = proc_mask(sel, &host_proc, state.pid) else { return Ok(()) };
    let (report, _) = apply::proc_driver::mask(&crate::sys::LinuxSys, state.pid, &rootfs, &host_proc, &mask)?;
    match report.masked {
        true => crate::log::info(&format!("pid {}: {}", state.pid, report.lines.join("; "))),
        false => log_unmasked(state.pid, &report),
    }
    Ok(())
}

/// Why the container's `/proc/driver/nvidia` was not masked: a warning when its
/// `/proc` is not (yet) a procfs, a debug line when there is simply nothing to mask.
fn log_unmasked(pid: i32, report: &apply::proc_driver::ProcMaskReport) {
    match &report.warning {
        Some(warning) => crate::log::warn(&format!("pid {pid}: {warning}")),
        None => crate::log::debug(&format!(
            "pid {pid}: the container's /proc has no {}: nothing to mask",
            crate::proc_driver::PROC_DRIVER_NVIDIA
        )),
    }
}

/// What the container's `/proc/driver/nvidia` shows ([`crate::proc_driver`]); `None`
/// when the host has no `/proc/driver/nvidia` (no driver loaded), so there is nothing to show.
fn proc_mask(
    sel: &crate::proc_driver::ProcSelection,
    host_proc: &std::path::Path,
    pid: i32,
) -> Option<crate::proc_driver::ProcMask> {
    if !host_proc.is_dir() {
        crate::log::debug(&format!("pid {pid}: no {} on the host: nothing to mask", host_proc.display()));
        return None;
    }
    let mask = crate::proc_driver::plan(sel, |rel| crate::proc_driver::read_host(host_proc, rel));
    for line in &mask.skipped {
        crate::log::warn(&format!("pid {pid}: {line}"));
    }
    Some(mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runc_and_crun_states_both_parse() {
        let runc = r#"{"ociVersion":"1.0.2-dev","id":"x","status":"creating","pid":26481,"bundle":"/tmp/b"}"#;
        let crun = r#"{"ociVersion":"1.0","id":"x","pid":26914,"root":"rootfs","bundle":"/tmp/b","status":"created","extra":{"a":[1]}}"#;
        assert_eq!(parse_state(runc).unwrap(), State { pid: 26481, bundle: "/tmp/b".into() });
        assert_eq!(parse_state(crun).unwrap().pid, 26914);
    }

    #[test]
    fn a_create_container_state_may_have_no_pid() {
        let crun = r#"{"ociVersion":"1.0","id":"x","pid":0,"root":"/r","bundle":"/tmp/b","status":"created"}"#;
        assert_eq!(parse_state_pid_optional(crun).unwrap(), (None, PathBuf::from("/tmp/b")));
        assert_eq!(parse_state_pid_optional(r#"{"pid":1,"bundle":"/b"}"#).unwrap().0, Some(1));
        assert!(matches!(parse_state_pid_optional(r#"{"pid":1}"#), Err(HookError::NoBundle)));
    }

    #[test]
    fn this_process_is_in_its_own_mount_namespace() {
        assert!(in_mount_ns_of(std::process::id() as i32));
    }

    #[test]
    fn legacy_bundle_path_is_accepted() {
        assert_eq!(parse_state(r#"{"pid":5,"bundlePath":"/b"}"#).unwrap().bundle, PathBuf::from("/b"));
    }

    #[test]
    fn bad_states_are_clear_errors() {
        assert_eq!(
            parse_state("nope").unwrap_err().to_string().split(':').next(),
            Some("OCI state on stdin is not JSON")
        );
        assert_eq!(parse_state(r#"{"bundle":"/b"}"#).unwrap_err().to_string(), "OCI state on stdin has no valid pid");
        assert_eq!(
            parse_state(r#"{"pid":0,"bundle":"/b"}"#).unwrap_err().to_string(),
            "OCI state on stdin has no valid pid"
        );
        assert_eq!(
            parse_state(r#"{"pid":5,"bundle":"rel"}"#).unwrap_err().to_string(),
            "OCI state on stdin has no absolute bundle path"
        );
    }

    #[test]
    fn oversized_state_is_refused() {
        let big = vec![b' '; (MAX_STATE_BYTES + 10) as usize];
        assert!(
            read_limited(&mut &big[..], MAX_STATE_BYTES, "OCI state").unwrap_err().to_string().contains("larger than")
        );
    }
}
