//! Writing container edits into an OCI spec held as a JSON value.
//!
//! Only `linux.devices`, `linux.resources.devices`, the NVIDIA prestart hooks,
//! `mounts` (driver files, appended) and (for edits that carry env)
//! `process.env` are touched; every other field
//! keeps its value and its place (serde_json's `preserve_order` is on). A part
//! mighook must edit that has the wrong JSON type is an error, never replaced.

use super::OciError;
use crate::driver_files::FileMount;
use crate::edits::{ContainerEdits, DeviceNode, DeviceRule};
use serde_json::{Map, Value, json};
use std::path::Path;

/// Hooks that would do the shim's work a second time: NVIDIA's legacy hook (docker
/// `--gpus` inserts it), the toolkit's, and mighook's own hooks.d registration.
pub const HOOK_NAMES: [&str; 3] = ["nvidia-container-runtime-hook", "nvidia-container-toolkit", "mighook"];
/// The hook lists runc runs before the container starts.
const HOOK_STAGES: [&str; 2] = ["prestart", "createRuntime"];

/// What [`apply_edits`] changed, for the log and the tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecChanges {
    pub devices_added: usize,
    /// Same path with other numbers: replaced in place.
    pub devices_replaced: usize,
    pub rules_added: usize,
    pub hooks_removed: usize,
    pub env_set: usize,
}

fn shape(pointer: &str, expected: &'static str) -> OciError {
    OciError::Shape { pointer: pointer.to_string(), expected }
}

/// `parent[key]` as an object, created when absent.
fn object<'a>(
    parent: &'a mut Map<String, Value>,
    key: &str,
    pointer: &str,
) -> Result<&'a mut Map<String, Value>, OciError> {
    parent.entry(key).or_insert_with(|| json!({})).as_object_mut().ok_or_else(|| shape(pointer, "an object"))
}

/// `parent[key]` as an array, created when absent.
fn array<'a>(parent: &'a mut Map<String, Value>, key: &str, pointer: &str) -> Result<&'a mut Vec<Value>, OciError> {
    parent.entry(key).or_insert_with(|| json!([])).as_array_mut().ok_or_else(|| shape(pointer, "an array"))
}

/// OCI `linux.devices` entry; owner and mode as the driver gives its own nodes.
fn device_json(n: &DeviceNode) -> Value {
    json!({"path": n.path, "type": n.kind.to_string(), "major": n.major, "minor": n.minor, "fileMode": n.file_mode, "uid": n.uid, "gid": n.gid})
}

fn rule_json(r: &DeviceRule) -> Value {
    json!({"allow": r.allow, "type": r.kind.to_string(), "major": r.major, "minor": r.minor, "access": r.access})
}

/// Whether an existing entry already is this node (same path, type and numbers).
fn same_device(entry: &Value, n: &DeviceNode) -> bool {
    entry.get("type").and_then(Value::as_str) == Some(&n.kind.to_string())
        && entry.get("major").and_then(Value::as_u64) == Some(n.major.into())
        && entry.get("minor").and_then(Value::as_u64) == Some(n.minor.into())
}

/// Adds `linux.devices` entries: an entry with the same path and numbers stays,
/// one with the same path and other numbers is replaced in place.
fn add_devices(
    linux: &mut Map<String, Value>,
    nodes: &[DeviceNode],
    changes: &mut SpecChanges,
) -> Result<(), OciError> {
    let devices = array(linux, "devices", "/linux/devices")?;
    for n in nodes {
        let existing = devices.iter().position(|d| d.get("path").and_then(Value::as_str) == Some(n.path.as_str()));
        match existing {
            Some(i) if same_device(&devices[i], n) => {}
            Some(i) => {
                devices[i] = device_json(n);
                changes.devices_replaced += 1;
            }
            None => {
                devices.push(device_json(n));
                changes.devices_added += 1;
            }
        }
    }
    Ok(())
}

/// Appends allow rules: runc applies `linux.resources.devices` in order and later
/// rules win, so allows after the default deny-all grant exactly these nodes.
/// A rule already present with no deny after it is not repeated.
fn add_rules(linux: &mut Map<String, Value>, rules: &[DeviceRule], changes: &mut SpecChanges) -> Result<(), OciError> {
    let resources = object(linux, "resources", "/linux/resources")?;
    let list = array(resources, "devices", "/linux/resources/devices")?;
    for r in rules {
        let wanted = rule_json(r);
        let last_same = list.iter().rposition(|e| *e == wanted);
        let deny_after =
            last_same.is_some_and(|i| list[i + 1..].iter().any(|e| e.get("allow") != Some(&Value::Bool(true))));
        if last_same.is_none() || deny_after {
            list.push(wanted);
            changes.rules_added += 1;
        }
    }
    Ok(())
}

fn basename(s: &str) -> &str {
    s.rsplit('/').next().unwrap_or(s)
}

/// True for a hook whose path or `args[0]` names one of [`HOOK_NAMES`].
fn is_gpu_hook(hook: &Value) -> bool {
    let path = hook.get("path").and_then(Value::as_str);
    let arg0 = hook.pointer("/args/0").and_then(Value::as_str);
    [path, arg0].into_iter().flatten().any(|s| HOOK_NAMES.contains(&basename(s)))
}

/// OCI hooks: "prestart (array of objects, OPTIONAL, DEPRECATED) is an array of
/// prestart hooks"; appends `hook` to it, making `hooks` and the array where missing.
pub fn add_prestart_hook(spec: &mut Value, hook: Value) -> Result<(), OciError> {
    let spec = spec.as_object_mut().ok_or_else(|| shape("", "an object"))?;
    let hooks = spec.entry("hooks").or_insert_with(|| Value::Object(Map::new()));
    let hooks = hooks.as_object_mut().ok_or_else(|| shape("/hooks", "an object"))?;
    let list = hooks.entry("prestart").or_insert_with(|| Value::Array(vec![]));
    list.as_array_mut().ok_or_else(|| shape("/hooks/prestart", "an array"))?.push(hook);
    Ok(())
}

/// Removes GPU hooks from `hooks.prestart` and `hooks.createRuntime`, so the
/// devices the shim writes are not set up a second time. Returns how many.
pub fn remove_gpu_hooks(spec: &mut Map<String, Value>) -> Result<usize, OciError> {
    let Some(hooks) = spec.get_mut("hooks") else { return Ok(0) };
    let hooks = hooks.as_object_mut().ok_or_else(|| shape("/hooks", "an object"))?;
    let mut removed = 0;
    for stage in HOOK_STAGES {
        let Some(list) = hooks.get_mut(stage) else { continue };
        let list = list.as_array_mut().ok_or_else(|| shape(&format!("/hooks/{stage}"), "an array"))?;
        let before = list.len();
        list.retain(|h| !is_gpu_hook(h));
        removed += before - list.len();
    }
    Ok(removed)
}

/// Sets `KEY=VALUE` entries in `process.env`, replacing earlier assignments of the same key.
fn set_env(spec: &mut Map<String, Value>, env: &[String], changes: &mut SpecChanges) -> Result<(), OciError> {
    if env.is_empty() {
        return Ok(());
    }
    let process = object(spec, "process", "/process")?;
    let list = array(process, "env", "/process/env")?;
    for kv in env {
        let key = kv.split('=').next().unwrap_or(kv);
        list.retain(|e| e.as_str().and_then(|s| s.split_once('=')).is_none_or(|(k, _)| k != key));
        list.push(json!(kv));
        changes.env_set += 1;
    }
    Ok(())
}

/// The destinations of the spec's bind mounts (volumes from the host).
pub fn bind_destinations(spec: &Value) -> Vec<std::path::PathBuf> {
    let Some(mounts) = spec.get("mounts").and_then(Value::as_array) else { return vec![] };
    let is_bind = |m: &Value| {
        m.get("type").and_then(Value::as_str) == Some("bind")
            || m.get("options")
                .and_then(Value::as_array)
                .is_some_and(|o| o.iter().any(|o| matches!(o.as_str(), Some("bind" | "rbind"))))
    };
    mounts
        .iter()
        .filter(|m| is_bind(m))
        .filter_map(|m| m.get("destination").and_then(Value::as_str))
        .map(std::path::PathBuf::from)
        .collect()
}

/// OCI `mounts` entry of a bind mount.
fn mount_json(destination: &Path, source: &Path, options: &[&str]) -> Value {
    json!({"destination": destination, "type": "bind", "source": source, "options": options})
}

/// Appends a bind mount per driver file, and `/etc/ld.so.cache` from `cache`, to `mounts`.
/// They go last, so they are mounted over whatever the image has at those paths.
pub fn add_mounts(spec: &mut Value, mounts: &[FileMount], cache: Option<&Path>) -> Result<usize, OciError> {
    let spec = spec.as_object_mut().ok_or_else(|| shape("/", "an object"))?;
    let list = array(spec, "mounts", "/mounts")?;
    for m in mounts {
        list.push(mount_json(&m.container_path, &m.host_path, m.options()));
    }
    if let Some(cache) = cache {
        list.push(mount_json(Path::new("/etc/ld.so.cache"), cache, &["ro", "nosuid", "nodev", "noexec", "bind"]));
    }
    Ok(mounts.len() + usize::from(cache.is_some()))
}

/// Writes the edits into the spec and removes the GPU hooks they replace.
pub fn apply_edits(spec: &mut Value, edits: &ContainerEdits) -> Result<SpecChanges, OciError> {
    let spec = spec.as_object_mut().ok_or_else(|| shape("/", "an object"))?;
    let mut changes = SpecChanges::default();
    let linux = object(spec, "linux", "/linux")?;
    add_devices(linux, &edits.device_nodes, &mut changes)?;
    add_rules(linux, &edits.device_rules, &mut changes)?;
    set_env(spec, &edits.env, &mut changes)?;
    changes.hooks_removed = remove_gpu_hooks(spec)?;
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(path: &str, major: u32, minor: u32) -> DeviceNode {
        DeviceNode { path: path.into(), kind: 'c', major, minor, file_mode: 0o666, uid: 0, gid: 0 }
    }
    fn edits(nodes: &[DeviceNode]) -> ContainerEdits {
        ContainerEdits::from_nodes(nodes.iter().cloned(), vec![])
    }
    fn ctl() -> DeviceNode {
        node("/dev/nvidiactl", 195, 255)
    }
    fn runc_like() -> Value {
        json!({
            "ociVersion": "1.0.2-dev",
            "process": {"env": ["PATH=/bin"], "x-unknown": [1, 2.5, null]},
            "linux": {
                "resources": {"devices": [{"allow": false, "access": "rwm"}], "memory": {"limit": 1}},
                "namespaces": [{"type": "mount"}],
                "devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]
            },
            "hooks": {"prestart": [
                {"path": "/usr/bin/nvidia-container-runtime-hook", "args": ["nvidia-container-runtime-hook", "prestart"]},
                {"path": "/proc/42/exe", "args": ["libnetwork-setkey", "-exec-root=/run/docker"]}
            ]}
        })
    }

    #[test]
    fn devices_carry_the_drivers_owner_and_mode() {
        let mut spec = runc_like();
        let gpu = DeviceNode { gid: 44, file_mode: 0o660, ..node("/dev/nvidia0", 195, 0) };
        apply_edits(&mut spec, &edits(&[gpu])).unwrap();
        assert_eq!(
            spec["linux"]["devices"][1],
            json!({"path": "/dev/nvidia0", "type": "c", "major": 195, "minor": 0, "fileMode": 0o660, "uid": 0, "gid": 44})
        );
    }

    #[test]
    fn devices_and_rules_are_appended() {
        let mut spec = runc_like();
        let c = apply_edits(&mut spec, &edits(&[ctl()])).unwrap();
        assert_eq!((c.devices_added, c.rules_added), (1, 1));
        assert_eq!(
            spec["linux"]["devices"][1],
            json!({"path": "/dev/nvidiactl", "type": "c", "major": 195, "minor": 255, "fileMode": 438, "uid": 0, "gid": 0})
        );
        assert_eq!(
            spec["linux"]["resources"]["devices"][1],
            json!({"allow": true, "type": "c", "major": 195, "minor": 255, "access": "rw"})
        );
        assert_eq!(spec["linux"]["resources"]["devices"][0], json!({"allow": false, "access": "rwm"}));
    }

    #[test]
    fn other_fields_keep_their_values_and_order() {
        let mut spec = runc_like();
        apply_edits(&mut spec, &edits(&[ctl()])).unwrap();
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&spec), ["ociVersion", "process", "linux", "hooks"]);
        assert_eq!(keys(&spec["linux"]), ["resources", "namespaces", "devices"]);
        assert_eq!(keys(&spec["linux"]["resources"]), ["devices", "memory"]);
        assert_eq!(spec["process"], runc_like()["process"]);
        assert_eq!(spec["linux"]["devices"][0], runc_like()["linux"]["devices"][0]);
    }

    #[test]
    fn the_legacy_hook_is_removed_and_others_stay() {
        let mut spec = runc_like();
        assert_eq!(apply_edits(&mut spec, &edits(&[ctl()])).unwrap().hooks_removed, 1);
        assert_eq!(spec["hooks"]["prestart"].as_array().unwrap().len(), 1);
        assert_eq!(spec["hooks"]["prestart"][0]["path"], "/proc/42/exe");
    }

    #[test]
    fn hooks_are_matched_by_path_or_args0_in_both_stages() {
        let mut spec = json!({"hooks": {
            "prestart": [{"path": "/usr/bin/nvidia-container-toolkit"}, {"path": "/opt/x/wrapper", "args": ["/usr/bin/nvidia-container-runtime-hook", "prestart"]}],
            "createRuntime": [{"path": "/usr/bin/mighook", "args": ["mighook", "prestart"]}, {"path": "/bin/other"}],
            "poststop": [{"path": "/usr/bin/mighook", "args": ["mighook", "poststop"]}]
        }});
        assert_eq!(remove_gpu_hooks(spec.as_object_mut().unwrap()).unwrap(), 3);
        assert_eq!(spec["hooks"]["prestart"], json!([]));
        assert_eq!(spec["hooks"]["createRuntime"], json!([{"path": "/bin/other"}]));
        assert_eq!(spec["hooks"]["poststop"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn same_path_same_numbers_is_kept_other_numbers_replaced() {
        let mut spec = json!({"linux": {"devices": [
            {"path": "/dev/nvidiactl", "type": "c", "major": 195, "minor": 255, "fileMode": 384},
            {"path": "/dev/nvidia0", "type": "c", "major": 1, "minor": 3}
        ]}});
        let c = apply_edits(&mut spec, &edits(&[ctl(), node("/dev/nvidia0", 195, 0)])).unwrap();
        assert_eq!((c.devices_added, c.devices_replaced), (0, 1));
        assert_eq!(spec["linux"]["devices"][0]["fileMode"], 384);
        assert_eq!(spec["linux"]["devices"][1]["major"], 195);
    }

    #[test]
    fn applying_twice_adds_nothing_the_second_time() {
        let mut spec = runc_like();
        apply_edits(&mut spec, &edits(&[ctl()])).unwrap();
        let once = spec.clone();
        assert_eq!(apply_edits(&mut spec, &edits(&[ctl()])).unwrap(), SpecChanges::default());
        assert_eq!(spec, once);
    }

    #[test]
    fn an_allow_followed_by_a_deny_is_appended_again() {
        let mut spec = json!({"linux": {"resources": {"devices": [
            {"allow": true, "type": "c", "major": 195, "minor": 255, "access": "rw"},
            {"allow": false, "access": "rwm"}
        ]}}});
        assert_eq!(apply_edits(&mut spec, &edits(&[ctl()])).unwrap().rules_added, 1);
        assert_eq!(spec["linux"]["resources"]["devices"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn missing_sections_are_created() {
        let mut spec = json!({"ociVersion": "1.0.0"});
        apply_edits(&mut spec, &edits(&[ctl()])).unwrap();
        assert_eq!(spec["linux"]["devices"].as_array().unwrap().len(), 1);
        assert_eq!(spec["linux"]["resources"]["devices"].as_array().unwrap().len(), 1);
        assert!(spec.get("hooks").is_none());
    }

    #[test]
    fn wrong_shapes_are_errors_not_replaced() {
        let err = |mut v: Value| apply_edits(&mut v, &edits(&[ctl()])).unwrap_err().to_string();
        assert_eq!(err(json!([])), "config.json: / is not an object");
        assert_eq!(err(json!({"linux": 1})), "config.json: /linux is not an object");
        assert_eq!(err(json!({"linux": {"devices": {}}})), "config.json: /linux/devices is not an array");
        assert_eq!(err(json!({"linux": {"resources": []}})), "config.json: /linux/resources is not an object");
        assert_eq!(
            err(json!({"linux": {"resources": {"devices": null}}})),
            "config.json: /linux/resources/devices is not an array"
        );
        assert_eq!(err(json!({"hooks": []})), "config.json: /hooks is not an object");
        assert_eq!(err(json!({"hooks": {"prestart": {}}})), "config.json: /hooks/prestart is not an array");
    }

    #[test]
    fn env_edits_replace_the_same_key() {
        let mut spec = json!({"process": {"env": ["A=1", "B=2", "A=3"]}});
        let e = ContainerEdits { env: vec!["A=9".into()], ..Default::default() };
        assert_eq!(apply_edits(&mut spec, &e).unwrap().env_set, 1);
        assert_eq!(spec["process"]["env"], json!(["B=2", "A=9"]));
    }

    #[test]
    fn no_env_edits_leave_process_alone() {
        let mut spec = json!({"process": {"env": ["NVIDIA_VISIBLE_DEVICES=0"]}});
        apply_edits(&mut spec, &edits(&[ctl()])).unwrap();
        assert_eq!(spec["process"], json!({"env": ["NVIDIA_VISIBLE_DEVICES=0"]}));
    }
}
