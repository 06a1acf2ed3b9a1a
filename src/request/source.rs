//! Where a container's request comes from inside its OCI `config.json`.
//!
//! In NVIDIA's precedence order: CDI annotations (runtime shim only), then
//! `/dev/null` volume mounts onto `/var/run/nvidia-container-devices/<id>` (when
//! enabled), then `NVIDIA_VISIBLE_DEVICES` in `process.env`. The first source
//! that names devices is used alone. IMEX channels come the same way, on their
//! own: `<kind>=<n>` annotations of [`super::IMEX_KINDS`], `imex/<n>` mounts,
//! then `NVIDIA_IMEX_CHANNELS` (with the same privilege gate as the devices).
//!
//! Annotation values and mount ids are the device plugin's shapes: an
//! annotation holds CDI names (`k8s.device-plugin.nvidia.com/gpu=<id>,...`);
//! a mount id is a plain id (`MIG-<uuid>`, `0:1`), `cdi/<vendor>/<class>/<name>`
//! or `cdi/<kind>=<name>` (a CDI name), or `imex/<n>`. CDI names of NVIDIA's
//! kinds are kept whole for the grammar (which serves the GPU kinds and names
//! any other NVIDIA kind in an error); other vendors' names are the engine's.
//!
//! The spec is read leniently: unknown fields and odd values never break
//! reading. Nothing here is ever used for mighook's own settings.
//!
//! The reading itself is [`SpecView::parse`]: one pass over config.json's text
//! that keeps only what a request needs (the root path, the last assignment of
//! each request variable, the image's requirement variables within their bounds
//! ([`super::require::ImageEnv`]), `CAP_SYS_ADMIN` or not, the volume-mount ids, the
//! matching annotations) and skips the rest without building it. The prestart
//! hook reads config.json this way only, so its memory is the file plus what it
//! keeps, whatever the file's shape: a `serde_json::Value` of a 2 MiB array of
//! `0`s is 32 MiB. The shim, which must rewrite the spec, keeps the `Value` and
//! reads its request through the same function ([`from_spec`]).

use serde::de::{self, Deserializer as _, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};

use super::require::ImageEnv;

/// Mount destination prefix of the volume-mount strategy.
pub const VOLUME_MOUNT_DIR: &str = "/var/run/nvidia-container-devices";
/// Mount ids under this are CDI names (NVIDIA's `volumeMountDevicePrefixCDI`).
const MOUNT_CDI_PREFIX: &str = "cdi/";
/// Mount ids under this are IMEX channels (NVIDIA's `volumeMountDevicePrefixImex`).
const MOUNT_IMEX_PREFIX: &str = "imex/";
/// The IMEX channel request variable.
pub const IMEX_VAR: &str = "NVIDIA_IMEX_CHANNELS";

/// What the admin allows containers to ask through (from mighook's config).
#[derive(Debug, Clone)]
pub struct SourcePolicy {
    pub accept_envvar_when_unprivileged: bool,
    pub accept_volume_mounts: bool,
    /// Empty for the hook (annotations are the shim's business).
    pub annotation_prefixes: Vec<String>,
    /// `disable-require`: no image requirement is checked, as if every image said `NVIDIA_DISABLE_REQUIRE=true`.
    pub disable_require: bool,
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
    /// The image's requirement variables (`NVIDIA_REQUIRE_*`, `NVIDIA_DISABLE_REQUIRE`, `CUDA_VERSION`).
    pub image: ImageEnv,
    /// The IMEX channel list, from the first source that names channels.
    pub imex_channels: Option<String>,
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
            imex_channels: self.imex_channels.as_deref(),
        }
    }
}

/// Looks up `KEY` in `process.env`; the last assignment wins, as in execve.
///
/// On a `Value`, for callers that have one (and as the fuzz oracle of [`SpecView::parse`]).
pub fn env_value<'a>(spec: &'a Value, key: &str) -> Option<&'a str> {
    let env = spec.pointer("/process/env")?.as_array()?;
    env.iter().rev().filter_map(Value::as_str).find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

/// CAP_SYS_ADMIN in `process.capabilities.bounding` (or the pre-1.0 flat list).
///
/// On a `Value`, as [`env_value`].
pub fn is_privileged(spec: &Value) -> bool {
    let caps = match spec.pointer("/process/capabilities") {
        Some(Value::Object(o)) => o.get("bounding"),
        flat @ Some(Value::Array(_)) => flat,
        _ => None,
    };
    caps.and_then(Value::as_array).is_some_and(|c| c.iter().any(|v| v.as_str() == Some("CAP_SYS_ADMIN")))
}

/// The request variables of `process.env`, in [`SpecView::request_env`]'s order.
const REQUEST_VARS: [&str; 4] =
    ["NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES", "NVIDIA_MIG_CONFIG_DEVICES", "NVIDIA_MIG_MONITOR_DEVICES"];

/// What a request needs from a spec, and nothing else.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecView {
    /// `root.path` when it is a string.
    pub root_path: Option<String>,
    /// The last assignment of each of [`REQUEST_VARS`], in that order.
    pub request_env: [Option<String>; 4],
    /// `process.env` entries the caller asked to keep (`keep_env`), each once, in order.
    pub kept_env: Vec<String>,
    pub privileged: bool,
    /// Ids of `/dev/null` mounts onto `/var/run/nvidia-container-devices/<id>`,
    /// each once, in order, joined with `,` (one string, not one allocation per id).
    pub mount_ids: String,
    /// CDI names of NVIDIA's kinds (other than IMEX channels) in the annotations under
    /// the given prefixes, by key order, whole (`k8s.device-plugin.nvidia.com/gpu=0`).
    pub annotation_ids: Vec<String>,
    /// The image's requirement variables, bounded ([`ImageEnv::record`]).
    pub image_env: ImageEnv,
    /// The last `NVIDIA_IMEX_CHANNELS` assignment.
    pub imex_env: Option<String>,
    /// Channels of `imex/<n>` mounts (and `cdi/` mounts of an IMEX kind), joined with `,`.
    pub mount_imex: String,
    /// Channels of IMEX-kind CDI names in the annotations, in order.
    pub annotation_imex: Vec<String>,
    /// The first NVIDIA kind neither GPU nor IMEX in annotations or `cdi/` mounts
    /// (GDS, MOFED, gdrcopy of the device plugin), shown: left to the engine, said in the log.
    pub engine_kind: Option<String>,
}

/// What one CDI name in an annotation or a `cdi/` mount asks for.
enum CdiName<'a> {
    /// A name of a GPU kind (or a malformed NVIDIA name): for the device grammar, whole,
    /// so a name mighook cannot resolve is an error naming it.
    Device(&'a str),
    /// The channel of an IMEX kind's name.
    Imex(&'a str),
    /// Another NVIDIA kind (`k8s.device-plugin.nvidia.com/gds`, `.../mofed`): the device
    /// plugin's own spec serves it through the engine's CDI handling, as under NVIDIA's toolkit.
    EngineNvidia(&'a str),
    /// Another vendor's: the engine's own CDI handling serves it.
    Foreign,
}

fn classify(name: &str) -> CdiName<'_> {
    match super::split_cdi_name(name) {
        Some((kind, channel)) if super::IMEX_KINDS.contains(&kind) => CdiName::Imex(channel),
        Some((kind, _)) if super::GPU_KINDS.contains(&kind) => CdiName::Device(name),
        Some((kind, _)) if super::is_nvidia_kind(kind) && is_well_formed_kind(kind) => CdiName::EngineNvidia(kind),
        Some((kind, _)) if super::is_nvidia_kind(kind) => CdiName::Device(name),
        // Another vendor's, or no CDI name at all (no `=`): the engine's CDI handling refuses those.
        _ => CdiName::Foreign,
    }
}

/// `<vendor>/<class>`, both non-empty, one `/`.
fn is_well_formed_kind(kind: &str) -> bool {
    kind.split_once('/').is_some_and(|(vendor, class)| !vendor.is_empty() && !class.is_empty() && !class.contains('/'))
}

/// Appends `item` to a `,`-joined list.
fn push_joined(list: &mut String, item: &str) {
    if !list.is_empty() {
        list.push(',');
    }
    list.push_str(item);
}

impl SpecView {
    /// Reads `text` in one pass, keeping only what a request needs. `text` must be
    /// one JSON value (else the error); anything of an unexpected type inside it is
    /// skipped, as absent. Of duplicate object keys the last counts (as in a `Value`).
    pub fn parse(
        text: &str,
        annotation_prefixes: &[String],
        keep_env: &dyn Fn(&str) -> bool,
    ) -> Result<SpecView, serde_json::Error> {
        // Checks the whole text is JSON without building anything (RawValue only borrows).
        let top: &RawValue = serde_json::from_str(text)?;
        let (mut root, mut process, mut mounts, mut annotations) = (None, None, None, None);
        each_entry(top, |key, value| match &*key {
            "root" => root = Some(value),
            "process" => process = Some(value),
            "mounts" => mounts = Some(value),
            "annotations" => annotations = Some(value),
            _ => {}
        });
        let mut view = SpecView::default();
        if let Some(root) = root {
            each_entry(root, |key, value| {
                if key == "path" {
                    view.root_path = text_of(value).map(Cow::into_owned);
                }
            });
        }
        let (mut env, mut caps) = (None, None);
        if let Some(process) = process {
            each_entry(process, |key, value| match &*key {
                "env" => env = Some(value),
                "capabilities" => caps = Some(value),
                _ => {}
            });
        }
        if let Some(env) = env {
            view.read_env(env, keep_env);
        }
        if let Some(caps) = caps {
            let mut bounding = None;
            each_entry(caps, |key, value| {
                if key == "bounding" {
                    bounding = Some(value)
                }
            });
            // An object's `bounding`, or the pre-1.0 flat list.
            let list = bounding.or_else(|| caps.get().trim_start().starts_with('[').then_some(caps));
            if let Some(list) = list {
                each_element(list, |v| view.privileged |= text_of(v).as_deref() == Some("CAP_SYS_ADMIN"));
            }
        }
        if let Some(mounts) = mounts {
            view.read_mounts(mounts);
        }
        if let Some(annotations) = annotations
            && !annotation_prefixes.is_empty()
        {
            view.read_annotations(annotations, annotation_prefixes);
        }
        Ok(view)
    }

    /// The view of a spec already parsed into a `Value` (the shim's): the same reader, on its text.
    pub fn from_value(spec: &Value, annotation_prefixes: &[String], keep_env: &dyn Fn(&str) -> bool) -> SpecView {
        SpecView::parse(&spec.to_string(), annotation_prefixes, keep_env).expect("a Value serializes to one JSON value")
    }

    fn read_env(&mut self, env: &RawValue, keep_env: &dyn Fn(&str) -> bool) {
        let mut kept = HashSet::new();
        each_element(env, |v| {
            let Some(kv) = text_of(v) else { return };
            for (slot, key) in self.request_env.iter_mut().zip(REQUEST_VARS) {
                if let Some(value) = kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')) {
                    *slot = Some(value.to_string());
                }
            }
            self.image_env.record(&kv);
            if let Some(value) = kv.strip_prefix(IMEX_VAR).and_then(|r| r.strip_prefix('=')) {
                self.imex_env = Some(value.to_string());
            }
            if keep_env(&kv) && kept.insert(kv.to_string()) {
                self.kept_env.push(kv.into_owned());
            }
        });
    }

    fn read_mounts(&mut self, mounts: &RawValue) {
        // Borrowed from the text where it has no escapes: the set costs a pointer per id.
        let mut seen: HashSet<Cow<'_, str>> = HashSet::new();
        each_element(mounts, |m| {
            let (mut source, mut destination) = (None, None);
            each_entry(m, |key, value| match &*key {
                "source" => source = Some(value),
                "destination" => destination = Some(value),
                _ => {}
            });
            if source.and_then(text_of).as_deref() != Some("/dev/null") {
                return;
            }
            let Some(dest) = destination.and_then(text_of) else { return };
            let Some(rest) = dest.strip_prefix(VOLUME_MOUNT_DIR).and_then(|r| r.strip_prefix('/')) else { return };
            let id = rest.trim_matches('/');
            if id.is_empty() || seen.contains(id) {
                return;
            }
            if let Some(channel) = id.strip_prefix(MOUNT_IMEX_PREFIX) {
                push_joined(&mut self.mount_imex, channel);
            } else if let Some(cdi) = id.strip_prefix(MOUNT_CDI_PREFIX) {
                // `cdi/<vendor>/<class>/<name>` or `cdi/<vendor>/<class>=<name>`.
                let name = match cdi.contains('=') {
                    true => cdi.to_string(),
                    false => match cdi.splitn(3, '/').collect::<Vec<_>>()[..] {
                        [vendor, class, name] => format!("{vendor}/{class}={name}"),
                        _ => cdi.to_string(),
                    },
                };
                match classify(&name) {
                    CdiName::Device(name) => push_joined(&mut self.mount_ids, name),
                    CdiName::Imex(channel) => push_joined(&mut self.mount_imex, channel),
                    CdiName::EngineNvidia(kind) => {
                        self.engine_kind.get_or_insert_with(|| super::shown(kind));
                    }
                    CdiName::Foreign => {}
                }
            } else {
                push_joined(&mut self.mount_ids, id);
            }
            seen.insert(match dest {
                Cow::Borrowed(d) => Cow::Borrowed(d[d.len() - rest.len()..].trim_matches('/')),
                Cow::Owned(_) => Cow::Owned(id.to_string()),
            });
        });
    }

    fn read_annotations(&mut self, annotations: &RawValue, prefixes: &[String]) {
        let mut matching = BTreeMap::new();
        each_entry(annotations, |key, value| {
            if prefixes.iter().any(|p| key.starts_with(p.as_str())) {
                // The last of a duplicate key counts, a non-string one too (it names nothing).
                matching.insert(key.into_owned(), text_of(value).map(Cow::into_owned));
            }
        });
        for value in matching.into_values().flatten() {
            for name in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                match classify(name) {
                    CdiName::Device(name) => self.annotation_ids.push(name.to_string()),
                    CdiName::Imex(channel) => self.annotation_imex.push(channel.to_string()),
                    CdiName::EngineNvidia(kind) => {
                        self.engine_kind.get_or_insert_with(|| super::shown(kind));
                    }
                    // Other vendors' CDI devices are the runtime's own business.
                    CdiName::Foreign => {}
                }
            }
        }
    }
}

/// Text that borrows from the input when it has no escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Text<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

/// A JSON string's text; `None` for any other value.
fn text_of(raw: &RawValue) -> Option<Cow<'_, str>> {
    serde_json::from_str::<Text<'_>>(raw.get()).ok().map(|t| t.0)
}

/// Calls `f` with each key and value of a JSON object, in order; nothing for any other value.
fn each_entry<'a>(raw: &'a RawValue, f: impl FnMut(Cow<'a, str>, &'a RawValue)) {
    struct Entries<F>(F);
    impl<'de, F: FnMut(Cow<'de, str>, &'de RawValue)> Visitor<'de> for Entries<F> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
            while let Some(Text(key)) = map.next_key()? {
                let value: &'de RawValue = map.next_value()?;
                (self.0)(key, value);
            }
            Ok(())
        }
    }
    // The text is already known to be JSON: an error here is only "not an object".
    let _ = serde_json::Deserializer::from_str(raw.get()).deserialize_map(Entries(f));
}

/// Calls `f` with each element of a JSON array, in order; nothing for any other value.
fn each_element<'a>(raw: &'a RawValue, f: impl FnMut(&'a RawValue)) {
    struct Elements<F>(F);
    impl<'de, F: FnMut(&'de RawValue)> Visitor<'de> for Elements<F> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an array")
        }
        fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
            while let Some(v) = seq.next_element::<&'de RawValue>()? {
                (self.0)(v);
            }
            Ok(())
        }
    }
    let _ = serde_json::Deserializer::from_str(raw.get()).deserialize_seq(Elements(f));
}

/// Reads the request out of a spec `Value` under the admin's policy (the shim's path).
pub fn from_spec(spec: &Value, policy: &SourcePolicy) -> SpecRequest {
    from_view(SpecView::from_value(spec, &policy.annotation_prefixes, &|_| false), policy)
}

/// Reads the request out of a spec's view under the admin's policy. The view must
/// have been read with the policy's `annotation_prefixes`.
pub fn from_view(mut view: SpecView, policy: &SourcePolicy) -> SpecRequest {
    let mut image = std::mem::take(&mut view.image_env);
    if policy.disable_require {
        image.disable_require();
    }
    let SpecView { request_env: [visible, driver_capabilities, mig_config, mig_monitor], privileged, .. } = view;
    // A legacy CUDA image (CUDA_VERSION, no NVIDIA_REQUIRE_CUDA): unset means `all`, as in NVIDIA's stack.
    let legacy_default = visible.is_none() && image.is_legacy();
    let (visible, driver_capabilities) = (
        visible.or_else(|| image.legacy_visible_devices()),
        driver_capabilities.or_else(|| image.legacy_capabilities()),
    );
    let mut notes = Vec::new();
    if let Some(kind) = &view.engine_kind {
        notes.push(format!("CDI devices of kind {kind}: not mighook's, left to the engine's own CDI handling"));
    }
    let imex_channels = imex_from(view.annotation_imex, view.mount_imex, view.imex_env, privileged, policy, &mut notes);
    let mut visible_devices = None;
    let mut origin = Origin::Nothing;
    if !view.annotation_ids.is_empty() {
        visible_devices = Some(view.annotation_ids.join(","));
        origin = Origin::Annotations;
    } else if policy.accept_volume_mounts && !view.mount_ids.is_empty() {
        visible_devices = Some(view.mount_ids);
        origin = Origin::VolumeMounts;
    } else if let Some(v) = visible {
        if privileged || policy.accept_envvar_when_unprivileged {
            visible_devices = Some(v);
            origin = Origin::Env;
        } else {
            let what = if legacy_default {
                "the legacy CUDA image default NVIDIA_VISIBLE_DEVICES=all (CUDA_VERSION without NVIDIA_REQUIRE_CUDA)"
                    .to_string()
            } else {
                format!("NVIDIA_VISIBLE_DEVICES={}", super::shown(&v))
            };
            notes.push(format!(
                "ignoring {what} in an unprivileged container (accept-envvar-when-unprivileged = false)"
            ));
        }
    }
    SpecRequest {
        visible_devices,
        driver_capabilities,
        mig_config,
        mig_monitor,
        privileged,
        origin,
        imex_channels,
        image,
        notes,
    }
}

/// The IMEX channel list: annotations, then volume mounts (when accepted), then
/// `NVIDIA_IMEX_CHANNELS` under the same privilege gate as `NVIDIA_VISIBLE_DEVICES`.
fn imex_from(
    annotations: Vec<String>,
    mounts: String,
    env: Option<String>,
    privileged: bool,
    policy: &SourcePolicy,
    notes: &mut Vec<String>,
) -> Option<String> {
    if !annotations.is_empty() {
        return Some(annotations.join(","));
    }
    if policy.accept_volume_mounts && !mounts.is_empty() {
        return Some(mounts);
    }
    let env = env?;
    if privileged || policy.accept_envvar_when_unprivileged {
        return Some(env);
    }
    notes.push(format!(
        "ignoring {IMEX_VAR}={} in an unprivileged container (accept-envvar-when-unprivileged = false)",
        super::shown(&env)
    ));
    None
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
            disable_require: false,
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
        assert_eq!(r.visible_devices.as_deref(), Some("nvidia.com/gpu=0:1,nvidia.com/gpu=1"));
        assert_eq!(r.origin, Origin::Annotations);
    }

    /// The device plugin's cdi-annotations strategy: its own kind, a fresh key per response.
    #[test]
    fn device_plugin_annotations_are_kept_whole_for_the_grammar() {
        let mut s = spec(&[]);
        s["annotations"] = json!({
            "cdi.k8s.io/nvidia-device-plugin_9f0c": "k8s.device-plugin.nvidia.com/gpu=MIG-x,k8s.device-plugin.nvidia.com/imex-channel=3",
            "cdi.k8s.io/operator": "management.nvidia.com/gpu=all,vendor.com/fpga=0",
            "cdi.k8s.io/other": "k8s.device-plugin.nvidia.com/gds=all,noequals",
        });
        let r = from_spec(&s, &policy());
        let devices = "k8s.device-plugin.nvidia.com/gpu=MIG-x,management.nvidia.com/gpu=all";
        assert_eq!(r.visible_devices.as_deref(), Some(devices));
        assert_eq!(r.imex_channels.as_deref(), Some("3"));
    }

    #[test]
    fn other_nvidia_kinds_in_an_annotation_are_left_to_the_engine_with_a_note() {
        let mut s = spec(&[]);
        s["annotations"] =
            json!({"cdi.k8s.io/x": "k8s.device-plugin.nvidia.com/gpu=0,k8s.device-plugin.nvidia.com/gds=all"});
        let r = from_spec(&s, &policy());
        assert_eq!(r.visible_devices.as_deref(), Some("k8s.device-plugin.nvidia.com/gpu=0"));
        assert_eq!(
            r.notes,
            [
                "CDI devices of kind k8s.device-plugin.nvidia.com/gds: not mighook's, left to the engine's own CDI handling"
            ]
        );
    }

    #[test]
    fn a_gpu_kind_name_mighook_cannot_resolve_in_an_annotation_is_a_request_error() {
        let mut s = spec(&[]);
        s["annotations"] = json!({"cdi.k8s.io/x": "k8s.device-plugin.nvidia.com/gpu=bogus"});
        let r = from_spec(&s, &policy());
        let e = crate::request::Request::parse(&r.raw(), &Default::default()).unwrap_err().to_string();
        assert_eq!(e, "k8s.device-plugin.nvidia.com/gpu=bogus: not a GPU index, UUID, PCI bus id or MIG device");
    }

    #[test]
    fn other_vendors_annotations_are_left_to_the_engine() {
        let mut s = spec(&["NVIDIA_VISIBLE_DEVICES=0"]);
        s["annotations"] = json!({"cdi.k8s.io/x": "vendor.com/fpga=0"});
        let r = from_spec(&s, &policy());
        assert_eq!((r.visible_devices.as_deref(), r.origin), (Some("0"), Origin::Env));
    }

    /// The device plugin's volume-mounts strategy, every id shape it sends.
    #[test]
    fn device_plugin_volume_mounts() {
        let mut s = spec(&["NVIDIA_VISIBLE_DEVICES=/var/run/nvidia-container-devices"]);
        let mount = |id: &str| json!({"source": "/dev/null", "destination": format!("/var/run/nvidia-container-devices/{id}"), "type": "bind", "options": ["rbind", "ro"]});
        s["mounts"] = json!([
            mount("MIG-c7384736-a75d-5afc-978f-d2f1294409fd"),
            mount("0:1"),
            mount("GPU-066d0ced-a3fb-eefb-a347-82895e8fb78c"),
            mount("3"),
            mount("imex/0"),
            mount("imex/5"),
            mount("cdi/nvidia.com/gpu/1:2"),
            mount("cdi/k8s.device-plugin.nvidia.com/gpu=2"),
            mount("cdi/nvidia.com/imex-channel/7"),
            mount("cdi/vendor.com/fpga/0"),
        ]);
        let r = from_spec(&s, &policy());
        let ids = "MIG-c7384736-a75d-5afc-978f-d2f1294409fd,0:1,GPU-066d0ced-a3fb-eefb-a347-82895e8fb78c,3,nvidia.com/gpu=1:2,k8s.device-plugin.nvidia.com/gpu=2";
        assert_eq!(r.visible_devices.as_deref(), Some(ids));
        assert_eq!(r.origin, Origin::VolumeMounts);
        assert_eq!(r.imex_channels.as_deref(), Some("0,5,7"));
    }

    #[test]
    fn imex_mounts_only_when_volume_mounts_are_accepted() {
        let mut s = spec(&["NVIDIA_IMEX_CHANNELS=1"]);
        s["mounts"] = json!([{"source": "/dev/null", "destination": "/var/run/nvidia-container-devices/imex/0"}]);
        assert_eq!(from_spec(&s, &policy()).imex_channels.as_deref(), Some("0"));
        let off = SourcePolicy { accept_volume_mounts: false, ..policy() };
        assert_eq!(from_spec(&s, &off).imex_channels.as_deref(), Some("1"));
    }

    #[test]
    fn imex_env_has_the_devices_privilege_gate() {
        let s = spec(&["NVIDIA_IMEX_CHANNELS=0,3", "NVIDIA_IMEX_CHANNELS=2"]);
        assert_eq!(from_spec(&s, &policy()).imex_channels.as_deref(), Some("2"));
        let strict = SourcePolicy { accept_envvar_when_unprivileged: false, ..policy() };
        let r = from_spec(&s, &strict);
        assert_eq!(r.imex_channels, None);
        assert_eq!(
            r.notes,
            ["ignoring NVIDIA_IMEX_CHANNELS=2 in an unprivileged container (accept-envvar-when-unprivileged = false)"]
        );
        let mut privileged = s.clone();
        privileged["process"]["capabilities"]["bounding"] = json!(["CAP_SYS_ADMIN"]);
        assert_eq!(from_spec(&privileged, &strict).imex_channels.as_deref(), Some("2"));
    }

    #[test]
    fn odd_spec_values_do_not_break_reading() {
        let s = json!({"process": {"env": [1, null, "NVIDIA_VISIBLE_DEVICES=0"]}, "mounts": "x", "annotations": []});
        assert_eq!(from_spec(&s, &policy()).visible_devices.as_deref(), Some("0"));
        assert_eq!(from_spec(&json!(null), &policy()).origin, Origin::Nothing);
    }

    fn view(text: &str) -> SpecView {
        SpecView::parse(text, &["cdi.k8s.io/".to_string()], &|kv| kv.starts_with("MIGHOOK_")).unwrap()
    }

    #[test]
    fn the_view_reads_what_a_value_reads() {
        // Escapes, a duplicate key (the last counts), odd types, a flat capability list.
        let text = r#"{"root":{"path":"x"},"root":{"path":"ro\u006ftfs"},"junk":[[[{}]]],
            "process":{"env":["NVIDIA_VISIBLE_DEVICES=0","B",7,"NVIDIA_VISIBLE_DEVICES=0:\u0031","MIGHOOK_CONFIG=/x","MIGHOOK_CONFIG=/x"],
            "capabilities":["CAP_KILL","CAP_SYS_\u0041DMIN"]},
            "mounts":[{"source":"/dev/null","destination":"/var/run/nvidia-container-devices/1/"},
                      {"source":"/dev/null","destination":"/var/run/nvidia-container-devices/1"},5,
                      {"source":"/dev/null","destination":"/var/run/nvidia-container-devices/GPU-\u0078"}],
            "annotations":{"cdi.k8s.io/b":"nvidia.com/gpu=1","cdi.k8s.io/a":"nvidia.com/gpu=0,x=y","cdi.k8s.io/c":5}}"#;
        let v = view(text);
        assert_eq!(v.root_path.as_deref(), Some("rootfs"));
        assert_eq!(v.request_env[0].as_deref(), Some("0:1"));
        assert_eq!(v.kept_env, ["MIGHOOK_CONFIG=/x"]);
        assert!(v.privileged);
        assert_eq!(v.mount_ids, "1,GPU-x");
        assert_eq!(v.annotation_ids, ["nvidia.com/gpu=0", "nvidia.com/gpu=1"]);
        let value: Value = serde_json::from_str(text).unwrap();
        assert_eq!(env_value(&value, "NVIDIA_VISIBLE_DEVICES"), Some("0:1"));
        assert_eq!(is_privileged(&value), v.privileged);
    }

    #[test]
    fn the_view_of_anything_but_an_object_is_empty_and_bad_json_is_an_error() {
        for text in ["null", "[1,2]", "\"x\"", r#"{"process":"x","root":[]}"#] {
            assert_eq!(view(text), SpecView::default(), "{text}");
        }
        assert!(SpecView::parse("{", &[], &|_| false).is_err());
        assert!(SpecView::parse("{} x", &[], &|_| false).is_err());
    }

    #[test]
    fn the_view_keeps_the_image_requirement_variables() {
        let v = view(
            r#"{"process":{"env":["NVIDIA_REQUIRE_CUDA=cuda>=12.4","CUDA_VERSION=12.4.1","NVIDIA_REQUIRE_JETPACK=x",
                "NVIDIA_DISABLE_REQUIRE=true","PATH=/bin"]}}"#,
        );
        let env = ["NVIDIA_REQUIRE_CUDA=cuda>=12.4", "CUDA_VERSION=12.4.1", "NVIDIA_DISABLE_REQUIRE=true"];
        assert_eq!(v.image_env, ImageEnv::from_env(env));
        let r = from_view(v, &policy());
        assert!(r.image.requirements().unwrap().disabled);
        // The admin's disable-require does what the variable does.
        let v = view(r#"{"process":{"env":["NVIDIA_REQUIRE_CUDA=cuda>=99"]}}"#);
        assert!(!from_view(v.clone(), &policy()).image.requirements().unwrap().disabled);
        let off = SourcePolicy { disable_require: true, ..policy() };
        assert!(from_view(v, &off).image.requirements().unwrap().disabled);
    }

    #[test]
    fn a_legacy_image_without_visible_devices_asks_for_all_with_all_capabilities() {
        let legacy = from_spec(&spec(&["CUDA_VERSION=11.0.3"]), &policy());
        assert_eq!(legacy.visible_devices.as_deref(), Some("all"));
        assert_eq!(legacy.driver_capabilities.as_deref(), Some("all"));
        assert_eq!(legacy.origin, Origin::Env);
        // Set values win; an empty one is set (void, and the default capabilities).
        let set = from_spec(
            &spec(&["CUDA_VERSION=11.0.3", "NVIDIA_VISIBLE_DEVICES=0", "NVIDIA_DRIVER_CAPABILITIES=utility"]),
            &policy(),
        );
        assert_eq!((set.visible_devices.as_deref(), set.driver_capabilities.as_deref()), (Some("0"), Some("utility")));
        let empty = from_spec(
            &spec(&["CUDA_VERSION=11.0.3", "NVIDIA_VISIBLE_DEVICES=", "NVIDIA_DRIVER_CAPABILITIES="]),
            &policy(),
        );
        assert_eq!((empty.visible_devices.as_deref(), empty.driver_capabilities.as_deref()), (Some(""), Some("")));
        // Not legacy: NVIDIA_REQUIRE_CUDA set, or no CUDA_VERSION.
        let modern = from_spec(&spec(&["CUDA_VERSION=12.4.1", "NVIDIA_REQUIRE_CUDA=cuda>=12.4"]), &policy());
        assert_eq!((modern.visible_devices, modern.driver_capabilities), (None, None));
        // The unprivileged-env policy applies to the legacy default too.
        let p = SourcePolicy { accept_envvar_when_unprivileged: false, ..policy() };
        let refused = from_spec(&spec(&["CUDA_VERSION=11.0.3"]), &p);
        assert_eq!(refused.visible_devices, None);
        assert_eq!(
            refused.notes,
            [
                "ignoring the legacy CUDA image default NVIDIA_VISIBLE_DEVICES=all (CUDA_VERSION without NVIDIA_REQUIRE_CUDA) in an unprivileged container (accept-envvar-when-unprivileged = false)"
            ]
        );
        // Mounts and annotations still win over it.
        let mut s = spec(&["CUDA_VERSION=11.0.3"]);
        s["mounts"] = json!([{"source": "/dev/null", "destination": "/var/run/nvidia-container-devices/1"}]);
        assert_eq!(from_spec(&s, &policy()).visible_devices.as_deref(), Some("1"));
    }

    #[test]
    fn the_view_keeps_nothing_per_env_entry_or_value_it_skips() {
        // 100,000 env entries and a 100,000-element array elsewhere: the view holds one value.
        let env: Vec<String> = (0..100_000).map(|i| format!("NVIDIA_VISIBLE_DEVICES={i}")).collect();
        let spec = json!({"process": {"env": env}, "junk": vec![0; 100_000]});
        let v = SpecView::parse(&spec.to_string(), &[], &|_| false).unwrap();
        assert_eq!(v.request_env[0].as_deref(), Some("99999"));
        assert!(v.kept_env.is_empty() && v.mount_ids.is_empty());
    }
}
