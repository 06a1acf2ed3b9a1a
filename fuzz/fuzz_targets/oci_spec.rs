//! The runtime shim's edit of `config.json` (`oci::spec::apply_edits`) on any
//! JSON the engine might hand it, with the edits of a real request.
//!
//! On success: every field the shim does not own keeps its value, the existing
//! cgroup rules stay a prefix of the list, each node is in `linux.devices`
//! with its numbers, each rule is in force (present with no deny after it),
//! nothing but the edits' own rules is added, no GPU hook is left, and applying
//! again changes nothing. On failure: a one-line shape error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mighook::edits::{ContainerEdits, DeviceNode};
use mighook::oci::OciError;
use mighook::oci::spec::{HOOK_NAMES, apply_edits};
use serde_json::{Value, json};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let Ok(original) = serde_json::from_slice::<Value>(rest) else { return };
    let edits = edits(sel);
    let mut spec = original.clone();
    match apply_edits(&mut spec, &edits) {
        Err(OciError::Shape { pointer, .. }) => assert!(pointer.starts_with('/'), "{pointer}"),
        Ok(_) => {
            check(&original, &spec, &edits);
            let once = spec.clone();
            apply_edits(&mut spec, &edits).expect("a spec that took the edits takes them again");
            assert_eq!(spec, once, "applying the same edits twice changed the spec");
        }
    }
});

/// The edits of a few real requests on an A100 node, picked by `sel`.
fn edits(sel: u8) -> ContainerEdits {
    let n = |path: &str, major, minor, mode| DeviceNode {
        path: path.into(),
        kind: 'c',
        major,
        minor,
        file_mode: mode,
        uid: 0,
        gid: 0,
    };
    let mut nodes = vec![n("/dev/nvidiactl", 195, 255, 0o666)];
    if sel & 1 != 0 {
        nodes.extend([n("/dev/nvidia-uvm", 511, 0, 0o666), n("/dev/nvidia-uvm-tools", 511, 1, 0o666)]);
    }
    if sel & 2 != 0 {
        nodes.extend([n("/dev/nvidia2", 195, 2, 0o666), n("/dev/nvidia-caps/nvidia-cap345", 508, 345, 0o444)]);
    }
    if sel & 4 != 0 {
        nodes.push(n("/dev/nvidia-caps/nvidia-cap1", 508, 1, 0o400));
    }
    let env = if sel & 8 != 0 { vec!["NVIDIA_VISIBLE_DEVICES=void".to_string()] } else { vec![] };
    ContainerEdits::from_nodes(nodes, env)
}

fn check(original: &Value, spec: &Value, edits: &ContainerEdits) {
    let (before, after) = (original.as_object().unwrap(), spec.as_object().unwrap());
    for (key, value) in before {
        if !["linux", "hooks", "process"].contains(&key.as_str()) {
            assert_eq!(after.get(key), Some(value), "top-level {key} changed");
        }
    }
    let rules_before =
        original.pointer("/linux/resources/devices").and_then(Value::as_array).cloned().unwrap_or_default();
    let rules = spec.pointer("/linux/resources/devices").and_then(Value::as_array).unwrap();
    assert_eq!(&rules[..rules_before.len()], &rules_before[..], "existing rules must stay, in order");
    let wanted: Vec<Value> = edits
        .device_rules
        .iter()
        .map(|r| json!({"allow": r.allow, "type": r.kind.to_string(), "major": r.major, "minor": r.minor, "access": r.access}))
        .collect();
    for added in &rules[rules_before.len()..] {
        assert!(wanted.contains(added), "added rule {added} is not one of the edits");
    }
    for w in &wanted {
        let last = rules.iter().rposition(|r| r == w).unwrap_or_else(|| panic!("rule {w} missing"));
        assert!(
            rules[last + 1..].iter().all(|r| r.get("allow") == Some(&Value::Bool(true))),
            "rule {w} is followed by a deny"
        );
    }
    let devices = spec.pointer("/linux/devices").and_then(Value::as_array).unwrap();
    for node in &edits.device_nodes {
        let found = devices.iter().any(|d| {
            d.get("path").and_then(Value::as_str) == Some(node.path.as_str())
                && d.get("major").and_then(Value::as_u64) == Some(node.major.into())
                && d.get("minor").and_then(Value::as_u64) == Some(node.minor.into())
        });
        assert!(found, "node {} missing from linux.devices", node.path);
    }
    for stage in ["prestart", "createRuntime"] {
        for hook in spec.pointer(&format!("/hooks/{stage}")).and_then(Value::as_array).into_iter().flatten() {
            for s in [hook.get("path"), hook.pointer("/args/0")].into_iter().flatten().filter_map(Value::as_str) {
                let base = s.rsplit('/').next().unwrap_or(s);
                assert!(!HOOK_NAMES.contains(&base), "GPU hook {s} left in {stage}");
            }
        }
    }
    for kv in &edits.env {
        let env = spec.pointer("/process/env").and_then(Value::as_array).unwrap();
        assert!(env.iter().any(|e| e.as_str() == Some(kv)), "{kv} not set");
    }
}
