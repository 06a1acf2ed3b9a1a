//! The CDI spec mighook generates, and how it is built from resolution.
//!
//! Every device's edits come from [`crate::resolve::plan`] for exactly that
//! one device id, so a CDI container gets the same nodes as a container that
//! asks through `NVIDIA_VISIBLE_DEVICES`. The nodes every GPU container gets
//! (`/dev/nvidiactl`, `/dev/nvidia-uvm*`: the plan of `none`) go into the
//! spec-wide edits once; each device keeps only the rest (its GPU node and,
//! for a MIG device, its GI and CI capability nodes).

use super::CdiError;
use crate::driver::{Driver, MigMode};
use crate::edits::DeviceNode;
use crate::request::{DriverCapabilities, RawRequest, Request};
use crate::settings::Settings;
use serde::Serialize;
use std::path::Path;

/// The CDI kind mighook generates by default: `nvidia.com/gpu=<name>`, as nvidia-ctk names it.
pub const KIND: &str = "nvidia.com/gpu";
/// The device plugin's GPU kind: a spec of it serves the plugin's cdi-annotations and
/// cdi-cri names through the engine's own CDI (where the plugin writes no spec itself).
pub const PLUGIN_KIND: &str = "k8s.device-plugin.nvidia.com/gpu";
/// IMEX channels as `nvidia-ctk cdi generate --mode imex` names them.
pub const IMEX_KIND: &str = "nvidia.com/imex-channel";
/// The device plugin's IMEX channel kind.
pub const PLUGIN_IMEX_KIND: &str = "k8s.device-plugin.nvidia.com/imex-channel";
/// Every kind `cdi generate --kind` writes.
pub const GENERATED_KINDS: [&str; 4] = [KIND, PLUGIN_KIND, IMEX_KIND, PLUGIN_IMEX_KIND];

/// The generated kind spelt `kind` ([`KIND`] for anything else; the CLI allows only these).
pub fn generated_kind(kind: &str) -> &'static str {
    GENERATED_KINDS.into_iter().find(|k| *k == kind).unwrap_or(KIND)
}

/// Spec-wide env: a legacy NVIDIA hook that also runs sees `void` and does nothing.
pub const VOID_ENV: &str = "NVIDIA_VISIBLE_DEVICES=void";

/// The oldest CDI version; it already has deviceNodes with type, major, minor, fileMode, permissions.
const V030: &str = "0.3.0";
/// Device names starting with a digit (`0`, `0:1`) and `hostPath` need 0.5.0
/// (CDI `requiresV050`). podman 4.3 reads up to 0.5.0 and skips newer specs.
const V050: &str = "0.5.0";

/// A CDI spec (`cdiVersion`, `kind`, `devices`, spec-wide `containerEdits`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    pub cdi_version: &'static str,
    pub kind: &'static str,
    pub devices: Vec<Device>,
    pub container_edits: Edits,
}

/// One named device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    pub name: String,
    pub container_edits: Edits,
}

/// CDI `containerEdits`: the kinds mighook needs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Edits {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub device_nodes: Vec<Node>,
    /// CDI: "mounts: list of mounts to be added to the container" (driver files).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
    /// CDI: "hooks: list of hooks to be added to the container" (links, loader cache).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<super::hook::Hook>,
}

/// CDI `mounts` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Mount {
    /// CDI: "hostPath (string, REQUIRED) path of the device within the host".
    pub host_path: String,
    /// CDI: "containerPath (string, REQUIRED) path of the mount within the container".
    pub container_path: String,
    /// CDI: "options (array of strings, OPTIONAL) Mount options".
    pub options: Vec<String>,
}

/// CDI `deviceNodes` entry. Everything is given, so no runtime has to stat the host node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    pub path: String,
    /// Only when the host node is not at `path` (a `dev-root` other than `/dev`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_path: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    pub major: u32,
    pub minor: u32,
    pub file_mode: u32,
    /// The cgroup access the runtime grants: `rw`, never `m`.
    pub permissions: String,
    /// CDI: "uid (int, OPTIONAL) User ID of the device", "gid (int, OPTIONAL) Group ID"
    /// (no CDI version gates them). Always given: the driver's `DeviceFileUID`/`GID`,
    /// which a runtime would otherwise leave at 0:0, wider than a group-only host.
    pub uid: u32,
    pub gid: u32,
}

impl Spec {
    /// `nvidia.com/gpu=<name>` of every device, in spec order.
    pub fn qualified_names(&self) -> Vec<String> {
        self.devices.iter().map(|d| format!("{}={}", self.kind, d.name)).collect()
    }

    /// The device called `name`, if any.
    pub fn device(&self, name: &str) -> Option<&Device> {
        self.devices.iter().find(|d| d.name == name)
    }
}

/// Builds the spec of `kind` ([`GENERATED_KINDS`]): GPUs and MIG devices, or IMEX channels.
pub fn generate_spec_of_kind(settings: &Settings, driver: &dyn Driver, kind: &'static str) -> Result<Spec, CdiError> {
    if crate::request::IMEX_KINDS.contains(&kind) {
        return generate_imex_spec(settings, driver, kind);
    }
    let mut spec = generate_spec(settings, driver)?;
    spec.kind = kind;
    Ok(spec)
}

/// One device per IMEX channel node the host has, named by its number, with
/// that node only; spec-wide, the `void` env. As nvidia-ctk's imex mode: no `all`.
fn generate_imex_spec(settings: &Settings, driver: &dyn Driver, kind: &'static str) -> Result<Spec, CdiError> {
    let host = HostPaths { dev_root: &settings.dev_root };
    let request = Request {
        devices: crate::request::DeviceList::None,
        capabilities: DriverCapabilities::default(),
        mig_config: false,
        mig_monitor: false,
        imex_channels: crate::request::ImexChannels::All,
    };
    let mut selection = crate::resolve::Selection { gpu_container: true, ..Default::default() };
    let edits =
        crate::resolve::nodes::build(&request, &mut selection, driver).map_err(|e| CdiError::Resolve(e.to_string()))?;
    let mut devices = Vec::new();
    for n in edits.device_nodes {
        let Some(channel) = n.path.strip_prefix("/dev/nvidia-caps-imex-channels/channel") else { continue };
        devices.push(device(channel.to_string(), &[host.node(n.clone())?]));
    }
    if devices.is_empty() {
        // CDI refuses a spec without devices; say why there is none instead.
        return Err(CdiError::Resolve(format!(
            "{kind}: this host has no IMEX channel nodes ({}/nvidia-caps-imex-channels/channel*)",
            settings.dev_root.display()
        )));
    }
    let container_edits = Edits { env: vec![VOID_ENV.into()], ..Edits::default() };
    let mut spec = Spec { cdi_version: V030, kind, devices, container_edits };
    validate(&spec)?;
    spec.cdi_version = minimum_version(&spec);
    Ok(spec)
}

/// Builds the spec for every GPU and MIG device the driver reports now.
///
/// Devices: each GPU not in MIG mode (by index and by `GPU-` UUID), each MIG
/// device (by `i:j` and by `MIG-` UUID), and `all`. A GPU in MIG mode gets no
/// whole-GPU entry, like nvidia-ctk: it is used through its MIG devices.
pub fn generate_spec(settings: &Settings, driver: &dyn Driver) -> Result<Spec, CdiError> {
    let host = HostPaths { dev_root: &settings.dev_root };
    // CDI devices are for CUDA work: always the `compute,utility` node set, whatever the hook's default.
    let caps = DriverCapabilities::default();
    let plan_of = |ids: &str| -> Result<crate::resolve::Plan, CdiError> {
        let raw = RawRequest { visible_devices: Some(ids), ..Default::default() };
        let request = Request::parse(&raw, &caps).map_err(|e| CdiError::Resolve(e.to_string()))?;
        let plan = crate::resolve::plan(&request, driver).map_err(|e| CdiError::Resolve(e.to_string()))?;
        for w in &plan.selection.warnings {
            crate::log::log(crate::log::Level::Warn, &format!("cdi: {w}"));
        }
        Ok(plan)
    };
    let plan = |ids: &str| plan_of(ids).map(|p| p.edits.device_nodes);
    let none = plan_of("none")?;
    let common = none.edits.device_nodes;
    let own = |ids: &str| -> Result<Vec<Node>, CdiError> {
        plan(ids)?.into_iter().filter(|n| !common.contains(n)).map(|n| host.node(n)).collect()
    };

    let mut devices = Vec::new();
    let driver_err = |e: crate::driver::DriverError| CdiError::Driver(e.to_string());
    for index in 0..driver.gpu_count().map_err(driver_err)? {
        let gpu = driver.gpu(index).map_err(driver_err)?;
        if gpu.mig_mode == MigMode::Enabled {
            for mig in driver.mig_devices(index).map_err(driver_err)? {
                let nodes = own(&format!("{index}:{}", mig.slot))?;
                devices.push(device(format!("{index}:{}", mig.slot), &nodes));
                devices.push(device(mig.uuid, &nodes));
            }
        } else {
            let nodes = own(&index.to_string())?;
            devices.push(device(index.to_string(), &nodes));
            devices.push(device(gpu.uuid, &nodes));
        }
    }
    devices.push(device("all".into(), &own("all")?));

    let (mounts, hooks) = match &none.edits.driver_files {
        Some(files) => {
            driver_file_edits(&crate::driver_files::DriverFiles { cuda_compat: settings.cuda_compat, ..files.clone() })?
        }
        None => (vec![], vec![]),
    };
    let container_edits = Edits {
        env: vec![VOID_ENV.into()],
        device_nodes: common.into_iter().map(|n| host.node(n)).collect::<Result<_, _>>()?,
        mounts,
        hooks,
    };
    let mut spec = Spec { cdi_version: V030, kind: KIND, devices, container_edits };
    validate(&spec)?;
    spec.cdi_version = minimum_version(&spec);
    Ok(spec)
}

fn device(name: String, nodes: &[Node]) -> Device {
    Device { name, container_edits: Edits { device_nodes: nodes.to_vec(), ..Edits::default() } }
}

/// The driver files as nvidia-ctk places them (at their path relative to the
/// driver root), and the `cdi-hook` that makes their links and loader cache,
/// run as this very executable.
fn driver_file_edits(
    files: &crate::driver_files::DriverFiles,
) -> Result<(Vec<Mount>, Vec<super::hook::Hook>), CdiError> {
    let placed = crate::driver_files::place(files, crate::driver_files::LibraryDir::HostRelative);
    let utf8 = |p: &Path| {
        p.to_str().map(str::to_string).ok_or_else(|| CdiError::Resolve(format!("{}: not UTF-8", p.display())))
    };
    let mounts = placed
        .mounts
        .iter()
        .map(|m| {
            Ok(Mount {
                host_path: utf8(&m.host_path)?,
                container_path: utf8(&m.container_path)?,
                options: m.options().iter().map(|o| o.to_string()).collect(),
            })
        })
        .collect::<Result<Vec<_>, CdiError>>()?;
    let binary = std::env::current_exe()
        .map_err(|e| CdiError::Resolve(format!("cannot find mighook's own path for the CDI hook: {e}")))?;
    let hooks = super::hook::hook(&binary, &placed)?.into_iter().collect();
    Ok((mounts, hooks))
}

/// Where the host's NVIDIA nodes live.
struct HostPaths<'a> {
    dev_root: &'a Path,
}

impl HostPaths<'_> {
    fn node(&self, n: DeviceNode) -> Result<Node, CdiError> {
        let host_path = if self.dev_root == Path::new("/dev") {
            None
        } else {
            let rel =
                n.path.strip_prefix("/dev/").ok_or_else(|| CdiError::Resolve(format!("{}: not under /dev", n.path)))?;
            Some(
                self.dev_root
                    .join(rel)
                    .to_str()
                    .ok_or_else(|| CdiError::Resolve("dev-root is not UTF-8".into()))?
                    .to_string(),
            )
        };
        Ok(Node {
            path: n.path,
            host_path,
            kind: n.kind.to_string(),
            major: n.major,
            minor: n.minor,
            file_mode: n.file_mode,
            permissions: "rw".into(),
            uid: n.uid,
            gid: n.gid,
        })
    }
}

/// CDI's device-name rule: letters, digits, `_ - . :`, starting and ending with a letter or digit.
pub fn valid_device_name(name: &str) -> bool {
    let b = name.as_bytes();
    let inner_ok = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b':');
    match (b.first(), b.last()) {
        (Some(f), Some(l)) => f.is_ascii_alphanumeric() && l.is_ascii_alphanumeric() && b.iter().all(inner_ok),
        _ => false,
    }
}

/// Runtimes refuse a whole spec with one bad or repeated name: refuse to write it instead.
fn validate(spec: &Spec) -> Result<(), CdiError> {
    let mut seen = std::collections::BTreeSet::new();
    for d in &spec.devices {
        if !valid_device_name(&d.name) {
            return Err(CdiError::Resolve(format!("{}={}: not a valid CDI device name", spec.kind, d.name)));
        }
        if !seen.insert(d.name.as_str()) {
            return Err(CdiError::Resolve(format!("{}={}: two devices have this name", spec.kind, d.name)));
        }
    }
    Ok(())
}

/// The lowest `cdiVersion` that has every feature the spec uses.
pub fn minimum_version(spec: &Spec) -> &'static str {
    let digit_name = spec.devices.iter().any(|d| !d.name.as_bytes()[0].is_ascii_alphabetic());
    let host_path = std::iter::once(&spec.container_edits)
        .chain(spec.devices.iter().map(|d| &d.container_edits))
        .any(|e| e.device_nodes.iter().any(|n| n.host_path.is_some()));
    if digit_name || host_path { V050 } else { V030 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::fake::FakeDriver;
    use crate::settings::{GlobalFlags, OwnEnv};

    fn settings(dev_root: &str) -> Settings {
        let mut s = Settings::resolve(
            &GlobalFlags { config: Some("/dev/null".into()), ..Default::default() },
            &OwnEnv::default(),
        )
        .unwrap();
        s.dev_root = dev_root.into();
        s
    }

    fn spec() -> Spec {
        generate_spec(&settings("/dev"), &FakeDriver::a100()).unwrap()
    }

    fn paths(spec: &Spec, name: &str) -> Vec<String> {
        let d = spec.device(name).unwrap_or_else(|| panic!("no device {name}"));
        d.container_edits.device_nodes.iter().map(|n| format!("{} {}:{}", n.path, n.major, n.minor)).collect()
    }

    #[test]
    fn names_cover_mig_devices_non_mig_gpus_and_all() {
        let names = spec().qualified_names();
        assert!(names.contains(&"nvidia.com/gpu=0:0".to_string()));
        assert!(names.contains(&"nvidia.com/gpu=MIG-00000000-0000-0000-0000-000000000700".to_string()));
        assert!(names.contains(&"nvidia.com/gpu=1:4".to_string()));
        assert!(names.contains(&"nvidia.com/gpu=2".to_string()));
        assert!(names.contains(&"nvidia.com/gpu=GPU-00000000-0000-0000-0000-000000000002".to_string()));
        assert_eq!(names.last().unwrap(), "nvidia.com/gpu=all");
    }

    #[test]
    fn mig_enabled_gpus_have_no_whole_gpu_entry() {
        let s = spec();
        for name in ["0", "1", "3", "GPU-00000000-0000-0000-0000-000000000000", "1:3"] {
            assert!(s.device(name).is_none(), "{name} must not be a device");
        }
    }

    #[test]
    fn mig_device_gets_parent_node_and_its_two_caps() {
        // GPU 0 is minor 2; slot 1 is GI 8: caps 3 + 2*135 + 8*9 = 345 and 346.
        assert_eq!(
            paths(&spec(), "0:1"),
            ["/dev/nvidia-caps/nvidia-cap345 508:345", "/dev/nvidia-caps/nvidia-cap346 508:346", "/dev/nvidia2 195:2"]
        );
    }

    #[test]
    fn uuid_name_has_the_same_edits_as_the_index_name() {
        let s = spec();
        assert_eq!(
            s.device("MIG-00000000-0000-0000-0000-000000010800").unwrap().container_edits,
            s.device("0:1").unwrap().container_edits
        );
        assert_eq!(
            s.device("GPU-00000000-0000-0000-0000-000000000002").unwrap().container_edits,
            s.device("2").unwrap().container_edits
        );
    }

    #[test]
    fn whole_gpu_gets_only_its_node() {
        assert_eq!(paths(&spec(), "2"), ["/dev/nvidia0 195:0"]);
    }

    #[test]
    fn common_nodes_and_void_env_are_spec_wide() {
        let e = spec().container_edits;
        assert_eq!(e.env, ["NVIDIA_VISIBLE_DEVICES=void"]);
        let p: Vec<&str> = e.device_nodes.iter().map(|n| n.path.as_str()).collect();
        assert_eq!(p, ["/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidiactl"]);
    }

    #[test]
    fn all_has_every_gpu_node_and_no_common_node() {
        let p = paths(&spec(), "all");
        assert!(p.contains(&"/dev/nvidia0 195:0".to_string()));
        assert!(
            p.contains(&"/dev/nvidia1 195:1".to_string()),
            "GPU 3 is MIG-enabled without devices but still selected by all"
        );
        assert!(!p.iter().any(|n| n.starts_with("/dev/nvidiactl")));
    }

    #[test]
    fn nodes_carry_the_drivers_owner_and_mode() {
        let mut d = FakeDriver::a100();
        d.params = Some(crate::driver::DeviceFileParams { uid: 0, gid: 44, mode: 0o660 });
        let s = generate_spec(&settings("/dev"), &d).unwrap();
        let line = |n: &Node| format!("{} {}:{} {:o}", n.path, n.uid, n.gid, n.file_mode);
        let common: Vec<String> = s.container_edits.device_nodes.iter().map(line).collect();
        assert_eq!(common, ["/dev/nvidia-uvm 0:0 666", "/dev/nvidia-uvm-tools 0:0 666", "/dev/nvidiactl 0:44 660"]);
        let mig: Vec<String> = s.device("0:1").unwrap().container_edits.device_nodes.iter().map(line).collect();
        assert!(mig.contains(&"/dev/nvidia2 0:44 660".to_string()), "{mig:?}");
        assert!(mig.contains(&"/dev/nvidia-caps/nvidia-cap345 0:0 444".to_string()), "{mig:?}");
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["containerEdits"]["deviceNodes"][2]["gid"], 44);
    }

    #[test]
    fn nodes_grant_rw_and_carry_numbers_and_modes() {
        let s = spec();
        let n = &s.device("0:1").unwrap().container_edits.device_nodes[0];
        assert_eq!((n.kind.as_str(), n.file_mode, n.permissions.as_str(), &n.host_path), ("c", 0o444, "rw", &None));
    }

    #[test]
    fn host_path_follows_dev_root() {
        let s = generate_spec(&settings("/tmp/node/dev"), &FakeDriver::a100()).unwrap();
        let hp: Vec<_> = s
            .device("0:1")
            .unwrap()
            .container_edits
            .device_nodes
            .iter()
            .map(|n| n.host_path.clone().unwrap())
            .collect();
        assert_eq!(
            hp,
            [
                "/tmp/node/dev/nvidia-caps/nvidia-cap345",
                "/tmp/node/dev/nvidia-caps/nvidia-cap346",
                "/tmp/node/dev/nvidia2"
            ]
        );
        assert_eq!(s.container_edits.device_nodes[2].host_path.as_deref(), Some("/tmp/node/dev/nvidiactl"));
    }

    #[test]
    fn version_is_the_lowest_that_fits() {
        let mut s = spec();
        assert_eq!(s.cdi_version, "0.5.0", "names starting with a digit need 0.5.0");
        s.devices.retain(|d| d.name.as_bytes()[0].is_ascii_alphabetic());
        assert_eq!(minimum_version(&s), "0.3.0");
        s.container_edits.device_nodes[0].host_path = Some("/x/dev/nvidiactl".into());
        assert_eq!(minimum_version(&s), "0.5.0", "hostPath needs 0.5.0");
    }

    #[test]
    fn the_device_plugins_kind_names_the_same_devices() {
        let s = generate_spec_of_kind(&settings("/dev"), &FakeDriver::a100(), PLUGIN_KIND).unwrap();
        assert_eq!(s.kind, "k8s.device-plugin.nvidia.com/gpu");
        assert_eq!(s.devices, spec().devices);
        assert!(s.qualified_names().contains(&"k8s.device-plugin.nvidia.com/gpu=0:1".to_string()));
    }

    #[test]
    fn imex_spec_has_one_device_per_host_channel_and_no_all() {
        let s = generate_spec_of_kind(&settings("/dev"), &FakeDriver::a100(), IMEX_KIND).unwrap();
        assert_eq!(s.qualified_names(), ["nvidia.com/imex-channel=0", "nvidia.com/imex-channel=3"]);
        assert_eq!(paths(&s, "3"), ["/dev/nvidia-caps-imex-channels/channel3 509:3"]);
        assert_eq!(s.container_edits.env, ["NVIDIA_VISIBLE_DEVICES=void"]);
        assert!(s.container_edits.device_nodes.is_empty());
        assert_eq!(s.cdi_version, "0.5.0", "names starting with a digit");
    }

    #[test]
    fn imex_spec_nodes_grant_rw_with_the_host_nodes_mode_and_host_path() {
        let mut d = FakeDriver::a100();
        d.imex[0].mode = 0o660;
        let s = generate_spec_of_kind(&settings("/tmp/node/dev"), &d, PLUGIN_IMEX_KIND).unwrap();
        let n = &s.device("0").unwrap().container_edits.device_nodes[0];
        assert_eq!(n.host_path.as_deref(), Some("/tmp/node/dev/nvidia-caps-imex-channels/channel0"));
        assert_eq!((n.file_mode, n.permissions.as_str()), (0o660, "rw"));
        assert_eq!(s.kind, "k8s.device-plugin.nvidia.com/imex-channel");
    }

    #[test]
    fn imex_spec_of_a_host_without_channels_is_an_error() {
        let d = FakeDriver { imex: vec![], ..FakeDriver::a100() };
        let e = generate_spec_of_kind(&settings("/dev"), &d, IMEX_KIND).unwrap_err().to_string();
        assert_eq!(
            e,
            "cdi: nvidia.com/imex-channel: this host has no IMEX channel nodes (/dev/nvidia-caps-imex-channels/channel*)"
        );
    }

    #[test]
    fn generated_kinds_are_looked_up() {
        assert_eq!(generated_kind("nvidia.com/imex-channel"), IMEX_KIND);
        assert_eq!(generated_kind("k8s.device-plugin.nvidia.com/gpu"), PLUGIN_KIND);
    }

    #[test]
    fn device_name_rule() {
        for ok in ["0", "0:1", "all", "GPU-0a-b", "MIG-c7384736-a75d-5afc-978f-d2f1294409fd", "a.b_c"] {
            assert!(valid_device_name(ok), "{ok}");
        }
        for bad in ["", ":0", "0:", "a/b", "a b", "-a", "MIG-GPU-x/1/0"] {
            assert!(!valid_device_name(bad), "{bad}");
        }
    }

    #[test]
    fn json_field_names_follow_cdi() {
        let v = serde_json::to_value(spec()).unwrap();
        let n = &v["devices"][0]["containerEdits"]["deviceNodes"][0];
        let keys: Vec<&str> = n.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["path", "type", "major", "minor", "fileMode", "permissions", "uid", "gid"]);
        assert_eq!(v["kind"], "nvidia.com/gpu");
        assert!(v["containerEdits"]["env"].is_array());
    }
}
