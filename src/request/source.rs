//! Where a container's request comes from inside its OCI `config.json`.
//!
//! In NVIDIA's precedence order: CDI annotations (runtime shim only), then
//! `/dev/null` volume mounts onto `/var/run/nvidia-container-devices/<id>` (when
//! enabled), then `NVIDIA_VISIBLE_DEVICES` in `process.env`. The first source
//! that names devices is used alone. The spec is read as a JSON value, leniently:
//! unknown fields and odd values never break reading. Nothing here is ever used
//! for mighook's own settings.

use serde_json::Value;

/// Mount destination prefix of the volume-mount strategy.
pub const VOLUME_MOUNT_DIR: &str = "/var/run/nvidia-container-devices";
/// CDI kind whose names the runtime shim accepts in annotations.
pub const CDI_KIND: &str = "nvidia.com/gpu";

/// What the admin allows containers to ask through (from mighook's config).
#[derive(Debug, Clone)]
pub struct SourcePolicy {
    pub accept_envvar_when_unprivileged: bool,
    pub accept_volume_mounts: bool,
    /// Empty for the hook (annotations are the shim's business).
    pub annotation_prefixes: Vec<String>,
}

/// Which part of the spec the device list came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Annotations,
    VolumeMounts,
    Env,
    Nothing,
}

/// The raw request values found in a spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecRequest {
    pub visible_devices: Option<String>,
    pub driver_capabilities: Option<String>,
    pub mig_config: Option<String>,
    pub mig_monitor: Option<String>,
    pub privileged: bool,
    pub origin: Origin,
    /// Said in the log: why an env request was ignored, and the like.
    pub notes: Vec<String>,
}

impl SpecRequest {
    pub fn raw(&self) -> super::RawRequest<'_> {
        super::RawRequest {
            visible_devices: self.visible_devices.as_deref(),
            driver_capabilities: self.driver_capabilities.as_deref(),
            mig_config: self.mig_config.as_deref(),
            mig_monitor: self.mig_monitor.as_deref(),
            privileged: self.privileged,
        }
    }
}

/// Looks up `KEY` in `process.env`; the last assignment wins, as in execve.
pub fn env_value<'a>(spec: &'a Value, key: &str) -> Option<&'a str> {
    let env = spec.pointer("/process/env")?.as_array()?;
    env.iter().rev().filter_map(Value::as_str).find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

/// CAP_SYS_ADMIN in `process.capabilities.bounding` (or the pre-1.0 flat list).
pub fn is_privileged(spec: &Value) -> bool {
    let caps = match spec.pointer("/process/capabilities") {
        Some(Value::Object(o)) => o.get("bounding"),
        flat @ Some(Value::Array(_)) => flat,
        _ => None,
    };
    caps.and_then(Value::as_array).is_some_and(|c| c.iter().any(|v| v.as_str() == Some("CAP_SYS_ADMIN")))
}

/// Device ids from `/dev/null` mounts onto `/var/run/nvidia-container-devices/<id>`.
fn volume_mount_ids(spec: &Value) -> Vec<String> {
    let Some(mounts) = spec.get("mounts").and_then(Value::as_array) else { return vec![] };
    let mut ids: Vec<String> = Vec::new();
    for m in mounts {
        if m.get("source").and_then(Value::as_str) != Some("/dev/null") {
            continue;
        }
        let Some(dest) = m.get("destination").and_then(Value::as_str) else { continue };
        let Some(rest) = dest.strip_prefix(VOLUME_MOUNT_DIR).and_then(|r| r.strip_prefix('/')) else { continue };
        let id = rest.trim_matches('/');
        if !id.is_empty() && !ids.iter().any(|i| i == id) {
            ids.push(id.to_string());
        }
    }
    ids
}

/// `nvidia.com/gpu=<id>` names from annotations whose key starts with a prefix, sorted by key.
fn annotation_ids(spec: &Value, prefixes: &[String]) -> Vec<String> {
    let Some(annotations) = spec.get("annotations").and_then(Value::as_object) else { return vec![] };
    let mut keys: Vec<&String> =
        annotations.keys().filter(|k| prefixes.iter().any(|p| k.starts_with(p.as_str()))).collect();
    keys.sort();
    let mut ids = Vec::new();
    for key in keys {
        let Some(value) = annotations[key].as_str() else { continue };
        for name in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            // Other vendors' CDI devices are the runtime's own business.
            if let Some(id) = name.strip_prefix(CDI_KIND).and_then(|r| r.strip_prefix('=')) {
                ids.push(id.to_string());
            }
        }
    }
    ids
}

/// Reads the request out of a spec under the admin's policy.
pub fn from_spec(spec: &Value, policy: &SourcePolicy) -> SpecRequest {
    let privileged = is_privileged(spec);
    let env = |k| env_value(spec, k).map(str::to_string);
    let mut notes = Vec::new();
    let mut visible_devices = None;
    let mut origin = Origin::Nothing;
    let annotations = annotation_ids(spec, &policy.annotation_prefixes);
    let mounts = if policy.accept_volume_mounts { volume_mount_ids(spec) } else { vec![] };
    if !annotations.is_empty() {
        visible_devices = Some(annotations.join(","));
        origin = Origin::Annotations;
    } else if !mounts.is_empty() {
        visible_devices = Some(mounts.join(","));
        origin = Origin::VolumeMounts;
    } else if let Some(v) = env("NVIDIA_VISIBLE_DEVICES") {
        if privileged || policy.accept_envvar_when_unprivileged {
            visible_devices = Some(v);
            origin = Origin::Env;
        } else {
            notes.push(format!(
                "ignoring NVIDIA_VISIBLE_DEVICES={} in an unprivileged container (accept-envvar-when-unprivileged = false)",
                super::shown(&v)
            ));
        }
    }
    SpecRequest {
        visible_devices,
        driver_capabilities: env("NVIDIA_DRIVER_CAPABILITIES"),
        mig_config: env("NVIDIA_MIG_CONFIG_DEVICES"),
        mig_monitor: env("NVIDIA_MIG_MONITOR_DEVICES"),
        privileged,
        origin,
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy() -> SourcePolicy {
        SourcePolicy {
            accept_envvar_when_unprivileged: true,
            accept_volume_mounts: true,
            annotation_prefixes: vec!["cdi.k8s.io/".into()],
        }
    }
    fn spec(env: &[&str]) -> Value {
        json!({"ociVersion": "1.0.2", "process": {"env": env, "capabilities": {"bounding": ["CAP_KILL"]}}, "mounts": []})
    }

    #[test]
    fn env_var_is_read() {
        let r = from_spec(&spec(&["PATH=/bin", "NVIDIA_VISIBLE_DEVICES=0:1"]), &policy());
        assert_eq!((r.visible_devices.as_deref(), r.origin), (Some("0:1"), Origin::Env));
    }

    #[test]
    fn last_env_assignment_wins() {
        assert_eq!(env_value(&spec(&["A=1", "A=2"]), "A"), Some("2"));
        assert_eq!(env_value(&spec(&["AB=1"]), "A"), None);
    }

    #[test]
    fn unset_env_is_nothing() {
        assert_eq!(from_spec(&spec(&["PATH=/bin"]), &policy()).origin, Origin::Nothing);
    }

    #[test]
    fn unprivileged_env_request_can_be_refused_by_policy() {
        let p = SourcePolicy { accept_envvar_when_unprivileged: false, ..policy() };
        let r = from_spec(&spec(&["NVIDIA_VISIBLE_DEVICES=0"]), &p);
        assert_eq!(r.visible_devices, None);
        assert_eq!(r.notes.len(), 1);
    }

    #[test]
    fn privileged_is_sys_admin_in_bounding() {
        assert!(is_privileged(&json!({"process": {"capabilities": {"bounding": ["CAP_SYS_ADMIN"]}}})));
        assert!(is_privileged(&json!({"process": {"capabilities": ["CAP_SYS_ADMIN"]}})));
        assert!(!is_privileged(&json!({"process": {"capabilities": {"effective": ["CAP_SYS_ADMIN"]}}})));
        assert!(!is_privileged(&json!({"process": {"capabilities": "junk"}})));
    }

    #[test]
    fn volume_mounts_win_over_env() {
        let mut s = spec(&["NVIDIA_VISIBLE_DEVICES=all"]);
        s["mounts"] = json!([
            {"source": "/dev/null", "destination": "/var/run/nvidia-container-devices/0:1"},
            {"source": "/dev/null", "destination": "/var/run/nvidia-container-devices/GPU-x/"},
            {"source": "/etc/hosts", "destination": "/var/run/nvidia-container-devices/7"},
        ]);
        let r = from_spec(&s, &policy());
        assert_eq!((r.visible_devices.as_deref(), r.origin), (Some("0:1,GPU-x"), Origin::VolumeMounts));
        let off = SourcePolicy { accept_volume_mounts: false, ..policy() };
        assert_eq!(from_spec(&s, &off).visible_devices.as_deref(), Some("all"));
    }

    #[test]
    fn cdi_annotations_win_over_everything() {
        let mut s = spec(&["NVIDIA_VISIBLE_DEVICES=all"]);
        s["annotations"] = json!({"cdi.k8s.io/b": "nvidia.com/gpu=1", "cdi.k8s.io/a": "nvidia.com/gpu=0:1,vendor.com/x=y", "other": "nvidia.com/gpu=7"});
        let r = from_spec(&s, &policy());
        assert_eq!((r.visible_devices.as_deref(), r.origin), (Some("0:1,1"), Origin::Annotations));
    }

    #[test]
    fn odd_spec_values_do_not_break_reading() {
        let s = json!({"process": {"env": [1, null, "NVIDIA_VISIBLE_DEVICES=0"]}, "mounts": "x", "annotations": []});
        assert_eq!(from_spec(&s, &policy()).visible_devices.as_deref(), Some("0"));
        assert_eq!(from_spec(&json!(null), &policy()).origin, Origin::Nothing);
    }
}
