//! `mighook prestart`: the OCI hook path.
//!
//! The runtime passes the container state on stdin; `pid` and `bundle` are the
//! only fields relied on (runc says `status: creating`, crun `created`). The
//! request comes from `<bundle>/config.json`, read leniently as JSON. A
//! container that asks for nothing (`void`, unset) is left untouched. The
//! resolved edits are applied to the live container by [`crate::apply`].

use crate::apply::{self, Target};
use crate::cli::CmdError;
use crate::cli::args::GlobalArgs;
use crate::oci;
use crate::request::source::SourcePolicy;
use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The state and config.json are small; anything larger is not a real runtime talking.
const MAX_STATE_BYTES: u64 = 1 << 20;
const MAX_CONFIG_BYTES: u64 = 64 << 20;

/// What the hook needs from the OCI state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub pid: i32,
    pub bundle: PathBuf,
}

/// Parses the OCI state; unknown fields and odd values elsewhere are ignored.
pub fn parse_state(text: &str) -> Result<State, CmdError> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("OCI state on stdin is not JSON: {e}"))?;
    let pid = v.get("pid").and_then(Value::as_i64).filter(|p| *p > 0 && *p <= i32::MAX as i64);
    let Some(pid) = pid else { return Err("OCI state on stdin has no valid pid".into()) };
    // `bundlePath` is what pre-1.0 runtimes said.
    let bundle = v.get("bundle").or_else(|| v.get("bundlePath")).and_then(Value::as_str);
    let Some(bundle) = bundle.filter(|b| b.starts_with('/')) else {
        return Err("OCI state on stdin has no absolute bundle path".into());
    };
    Ok(State { pid: pid as i32, bundle: PathBuf::from(bundle) })
}

fn read_limited(r: &mut dyn Read, limit: u64, what: &str) -> Result<String, CmdError> {
    let mut text = String::new();
    r.take(limit + 1).read_to_string(&mut text).map_err(|e| format!("cannot read {what}: {e}"))?;
    if text.len() as u64 > limit {
        return Err(format!("{what} is larger than {limit} bytes"));
    }
    Ok(text)
}

pub fn read_spec(bundle: &Path) -> Result<Value, CmdError> {
    let path = bundle.join("config.json");
    let mut f = std::fs::File::open(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let text = read_limited(&mut f, MAX_CONFIG_BYTES, &path.display().to_string())?;
    serde_json::from_str(&text).map_err(|e| format!("{}: not JSON: {e}", path.display()))
}

/// Absolute host path of the container's root filesystem.
fn rootfs(spec: &Value, bundle: &Path) -> Result<PathBuf, CmdError> {
    let root = spec.pointer("/root/path").and_then(Value::as_str).ok_or("config.json has no root.path")?;
    Ok(if root.starts_with('/') { PathBuf::from(root) } else { bundle.join(root) })
}

/// Runs the prestart hook on a state read from `stdin`.
pub fn prestart(global: &GlobalArgs, stdin: &mut dyn Read) -> Result<(), CmdError> {
    let state = parse_state(&read_limited(stdin, MAX_STATE_BYTES, "OCI state")?)?;
    let spec = read_spec(&state.bundle)?;
    let settings = crate::cli::container_settings(global, &spec)?;
    // Annotations are the runtime shim's business; the hook reads mounts and env.
    let policy = SourcePolicy { annotation_prefixes: vec![], ..settings.policy.clone() };
    let driver = settings.driver();
    let plan =
        oci::plan_from_spec(&spec, &policy, &settings.default_capabilities, &driver).map_err(|e| e.to_string())?;
    if plan.edits.is_empty() {
        crate::log::debug(&format!("pid {}: not a GPU container, nothing to do", state.pid));
        return Ok(());
    }
    for w in &plan.selection.warnings {
        crate::log::warn(w);
    }
    let target = Target { pid: state.pid, rootfs: rootfs(&spec, &state.bundle)? };
    let report =
        apply::apply(&crate::sys::LinuxSys, &target, &plan.edits, &settings.dev_root).map_err(|e| e.to_string())?;
    crate::log::info(&format!("pid {}: applied {report}", state.pid));
    Ok(())
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
    fn legacy_bundle_path_is_accepted() {
        assert_eq!(parse_state(r#"{"pid":5,"bundlePath":"/b"}"#).unwrap().bundle, PathBuf::from("/b"));
    }

    #[test]
    fn bad_states_are_clear_errors() {
        assert_eq!(parse_state("nope").unwrap_err().split(':').next(), Some("OCI state on stdin is not JSON"));
        assert_eq!(parse_state(r#"{"bundle":"/b"}"#).unwrap_err(), "OCI state on stdin has no valid pid");
        assert_eq!(parse_state(r#"{"pid":0,"bundle":"/b"}"#).unwrap_err(), "OCI state on stdin has no valid pid");
        assert_eq!(
            parse_state(r#"{"pid":5,"bundle":"rel"}"#).unwrap_err(),
            "OCI state on stdin has no absolute bundle path"
        );
    }

    #[test]
    fn relative_root_is_joined_to_the_bundle() {
        let spec = serde_json::json!({"root": {"path": "rootfs"}});
        assert_eq!(rootfs(&spec, Path::new("/b")).unwrap(), PathBuf::from("/b/rootfs"));
    }

    #[test]
    fn oversized_state_is_refused() {
        let big = vec![b' '; (MAX_STATE_BYTES + 10) as usize];
        assert!(read_limited(&mut &big[..], MAX_STATE_BYTES, "OCI state").unwrap_err().contains("larger than"));
    }
}
