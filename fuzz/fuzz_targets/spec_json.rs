//! The bundle's `config.json`, read leniently by `request::source::from_spec`.
//!
//! Two shapes of input, picked by the first byte: raw JSON (anything serde_json
//! accepts), or a well-formed spec built from the input's lines so the fuzzer
//! spends its time in env, mounts, annotations and capabilities rather than in
//! JSON syntax. The next bits pick the admin's policy. Checked: the request
//! read is one of the spec's own values, an unprivileged container is never
//! privileged, and annotations only count when the policy names a prefix. For
//! raw JSON the hook's one-pass reader (`SpecView::parse`, on the input's own
//! text: its escapes, duplicate keys and odd types) must find the same request
//! as the shim's path through a `Value`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mighook::request::source::{Origin, SourcePolicy, SpecView, env_value, from_spec, from_view, is_privileged};
use mighook::request::{DriverCapabilities, Request};
use serde_json::{Value, json};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let spec = if mode & 1 == 0 {
        match serde_json::from_slice::<Value>(rest) {
            Ok(v) => v,
            Err(_) => return,
        }
    } else {
        templated(&String::from_utf8_lossy(rest))
    };
    // Bits 1..3 of the first byte pick the admin's policy.
    let bits = mode >> 1;
    let policy = SourcePolicy {
        accept_envvar_when_unprivileged: bits & 1 != 0,
        accept_volume_mounts: bits & 2 != 0,
        annotation_prefixes: if bits & 4 != 0 { vec!["cdi.k8s.io/".into()] } else { vec![] },
        disable_require: false,
    };
    let found = from_spec(&spec, &policy);
    if mode & 1 == 0 {
        let text = std::str::from_utf8(rest).expect("serde_json accepted it");
        let view = SpecView::parse(text, &policy.annotation_prefixes, &|_| false).expect("serde_json accepted it");
        assert_eq!(view.root_path.as_deref(), spec.pointer("/root/path").and_then(Value::as_str));
        assert_eq!(from_view(view, &policy), found, "the hook's reader and the shim's differ");
    }
    assert_eq!(found.privileged, is_privileged(&spec));
    match found.origin {
        Origin::Nothing => assert_eq!(found.visible_devices, None),
        Origin::Env => {
            assert!(found.privileged || policy.accept_envvar_when_unprivileged);
            assert_eq!(found.visible_devices.as_deref(), env_value(&spec, "NVIDIA_VISIBLE_DEVICES"));
        }
        Origin::VolumeMounts => assert!(policy.accept_volume_mounts),
        Origin::Annotations => assert!(!policy.annotation_prefixes.is_empty()),
    }
    if !found.privileged {
        let r = Request::parse(&found.raw(), &DriverCapabilities::default());
        assert!(r.is_err() || r.as_ref().is_ok_and(|r| !r.mig_config && !r.mig_monitor));
    }
    // What the shim would write back must serialize.
    let _ = serde_json::to_vec(&spec).expect("a Value always serializes");
});

/// A spec from lines `e<env>`, `m<id>` (a /dev/null volume mount), `s<src>|<dest>`
/// (any mount), `a<key>=<value>` (annotation) and `c<cap>` (bounding capability).
fn templated(text: &str) -> Value {
    let (mut env, mut mounts, mut annotations, mut caps) = (vec![], vec![], serde_json::Map::new(), vec![]);
    for line in text.lines() {
        let mut chars = line.chars();
        let Some(tag) = chars.next() else { continue };
        let body = chars.as_str();
        match tag {
            'e' => env.push(json!(body)),
            'm' => mounts.push(
                json!({"source": "/dev/null", "destination": format!("/var/run/nvidia-container-devices/{body}")}),
            ),
            's' => {
                let (src, dst) = body.split_once('|').unwrap_or((body, body));
                mounts.push(json!({"source": src, "destination": dst}));
            }
            'a' => {
                let (k, v) = body.split_once('=').unwrap_or((body, ""));
                annotations.insert(format!("cdi.k8s.io/{k}"), json!(v));
            }
            'c' => caps.push(json!(body)),
            _ => {}
        }
    }
    json!({
        "ociVersion": "1.0.2",
        "process": {"env": env, "capabilities": {"bounding": caps}},
        "root": {"path": "rootfs"},
        "mounts": mounts,
        "annotations": annotations,
    })
}
