//! Docker: `runtimes.nvidia` in `/etc/docker/daemon.json`, and the
//! `nvidia-container-runtime` / `nvidia-container-runtime-hook` links next to
//! the binary (the first is what `--runtime=nvidia` runs; dockerd offers
//! `--gpus` only when it finds the second on its PATH at start).
//!
//! daemon.json is merged as JSON: every other key keeps its value and place.
//! A link name held by anything but mighook (NVIDIA's own binaries, say) is a
//! refusal, never replaced.

use super::{Ctx, HOOK_LINK, RUNTIME_LINK, SetupError, Step, invalid};
use serde_json::{Value, json};
use std::path::Path;

pub const DAEMON_JSON: &str = "/etc/docker/daemon.json";

/// Directories dockerd's PATH has under systemd (and a login shell).
const USUAL_PATH: [&str; 6] = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

fn runtime_entry(shim: &Path) -> Value {
    json!({"path": shim.to_str().unwrap_or_default(), "args": []})
}

/// Pretty JSON with a final newline, as daemon.json files are written.
fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).expect("JSON value serializes") + "\n"
}

/// The daemon.json snippet for a shim path (hooks/docker-daemon.json is this for /usr/bin).
pub fn daemon_snippet(shim: &Path) -> String {
    pretty(&json!({"runtimes": {"nvidia": runtime_entry(shim)}}))
}

/// daemon.json with `runtimes.nvidia` set (and `default-runtime` too with `set_as_default`);
/// `None` when it already is.
fn merged_daemon_json(
    path: &Path,
    old: Option<&str>,
    shim: &Path,
    set_as_default: bool,
    steps: &mut Vec<Step>,
) -> Result<Option<String>, SetupError> {
    let mut doc: Value = match old {
        Some(text) if !text.trim().is_empty() => {
            serde_json::from_str(text).map_err(|e| invalid(path, format!("not JSON: {e}")))?
        }
        _ => json!({}),
    };
    let top = doc.as_object_mut().ok_or_else(|| invalid(path, "is not a JSON object"))?;
    let mut changed = false;
    if set_as_default {
        match top.get("default-runtime") {
            Some(have) if have == "nvidia" => {}
            Some(have) => {
                steps.push(Step::Note(format!("replacing default-runtime in {} (was {have})", path.display())));
                changed = true;
            }
            None => changed = true,
        }
        // NVIDIA's `nvidia-ctk runtime configure --set-as-default` writes the same key.
        top.insert("default-runtime".into(), json!("nvidia"));
    }
    let runtimes = top.entry("runtimes").or_insert_with(|| json!({}));
    let runtimes = runtimes.as_object_mut().ok_or_else(|| invalid(path, "\"runtimes\" is not an object"))?;
    let want = runtime_entry(shim);
    match runtimes.get("nvidia") {
        Some(have) if *have == want => {}
        Some(have) => {
            steps.push(Step::Note(format!("replacing runtimes.nvidia in {} (was {have})", path.display())));
            changed = true;
        }
        None => changed = true,
    }
    runtimes.insert("nvidia".into(), want);
    Ok(changed.then(|| pretty(&doc)))
}

pub fn steps(ctx: &Ctx) -> Result<Vec<Step>, SetupError> {
    let mut steps = vec![];
    super::link_steps(ctx, &[RUNTIME_LINK, HOOK_LINK], &mut steps)?;
    let path = ctx.host(DAEMON_JSON);
    let old = ctx.read(&path)?;
    match merged_daemon_json(&path, old.as_deref(), &ctx.shim_path(), ctx.set_as_default, &mut steps)? {
        Some(new) => steps.push(Step::Write { path, old, new }),
        None => steps.push(Step::Unchanged(path)),
    }
    if !USUAL_PATH.iter().any(|d| Path::new(d) == ctx.bin_dir()) {
        steps.push(Step::Note(format!(
            "docker --gpus needs {} on dockerd's PATH when dockerd starts",
            ctx.bin_dir().display()
        )));
    }
    steps.push(Step::Hint(
        "restart dockerd (systemctl restart docker), then: docker run --runtime=nvidia -e NVIDIA_VISIBLE_DEVICES=0 ..."
            .into(),
    ));
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merge(old: Option<&str>) -> Result<Option<String>, SetupError> {
        merged_daemon_json(
            Path::new("/etc/docker/daemon.json"),
            old,
            Path::new("/usr/bin/nvidia-container-runtime"),
            false,
            &mut vec![],
        )
    }

    #[test]
    fn other_keys_keep_their_values_and_order() {
        let old = r#"{"log-driver": "journald", "runtimes": {"crun": {"path": "/usr/bin/crun"}}, "zeta": [1, {"b": 2, "a": 1}]}"#;
        let new = merge(Some(old)).unwrap().unwrap();
        let v: Value = serde_json::from_str(&new).unwrap();
        assert_eq!(v.as_object().unwrap().keys().collect::<Vec<_>>(), ["log-driver", "runtimes", "zeta"]);
        assert_eq!(v["runtimes"]["crun"], json!({"path": "/usr/bin/crun"}));
        assert_eq!(v["runtimes"]["nvidia"], json!({"path": "/usr/bin/nvidia-container-runtime", "args": []}));
        assert_eq!(serde_json::to_string(&v["zeta"]).unwrap(), r#"[1,{"b":2,"a":1}]"#);
    }

    #[test]
    fn missing_or_empty_file_gets_just_the_runtime() {
        assert_eq!(merge(None).unwrap().unwrap(), daemon_snippet(Path::new("/usr/bin/nvidia-container-runtime")));
        assert_eq!(
            merge(Some("  \n")).unwrap().unwrap(),
            daemon_snippet(Path::new("/usr/bin/nvidia-container-runtime"))
        );
    }

    #[test]
    fn already_registered_is_no_change_whatever_the_formatting() {
        let old = r#"{ "runtimes": { "nvidia": { "args": [], "path": "/usr/bin/nvidia-container-runtime" } } }"#;
        assert_eq!(merge(Some(old)).unwrap(), None);
    }

    #[test]
    fn malformed_files_are_refused() {
        assert!(merge(Some("{")).unwrap_err().to_string().contains("not JSON"));
        assert!(merge(Some("[]")).unwrap_err().to_string().ends_with("is not a JSON object"));
        assert!(merge(Some(r#"{"runtimes": []}"#)).unwrap_err().to_string().ends_with("\"runtimes\" is not an object"));
    }
}
