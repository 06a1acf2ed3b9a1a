//! Container edits: the one result every delivery path shares.
//!
//! Resolution produces a [`ContainerEdits`]; the prestart hook applies it to a
//! live container, the runtime shim writes it into `config.json`, and the CDI
//! generator writes it into a spec. The shapes follow the OCI runtime spec's
//! `linux.devices` and `linux.resources.devices` entries; the driver's
//! user-space files are carried as found on the host, because where they go
//! depends on the image (each applier places them).

use serde::Serialize;
use std::collections::BTreeSet;

/// Char major of the NVIDIA GPU driver (`/dev/nvidia<minor>`, `/dev/nvidiactl`).
pub const NVIDIA_MAJOR: u32 = 195;
/// `/dev/nvidiactl` is 195:255.
pub const NVIDIACTL_MINOR: u32 = 255;
/// `/dev/nvidia-modeset` is 195:254.
pub const MODESET_MINOR: u32 = 254;
/// `/dev/nvidia-uvm-tools` is minor 1 of the `nvidia-uvm` major.
pub const UVM_TOOLS_MINOR: u32 = 1;

/// One device node to create in the container.
///
/// OCI: "linux.devices: an array of devices that MUST be available in the container".
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceNode {
    /// OCI: "path (string, REQUIRED) - full path to device inside container".
    pub path: String,
    /// OCI: "type (string, REQUIRED) - type of device: c, b, u or p". Always `c` here.
    #[serde(rename = "type")]
    pub kind: char,
    /// OCI: "major, minor (int64, REQUIRED unless type is p)".
    pub major: u32,
    pub minor: u32,
    /// OCI: "fileMode (uint32, OPTIONAL) - file mode for the device". Permission bits only.
    pub file_mode: u32,
    /// OCI: "uid (uint32, OPTIONAL) - id of device owner". The driver's `DeviceFileUID`
    /// for GPU and control nodes, 0 for capability nodes (as nvidia-modprobe makes them).
    pub uid: u32,
    /// OCI: "gid (uint32, OPTIONAL) - id of device group". The driver's `DeviceFileGID`:
    /// a host that limits GPUs to a group keeps them limited to that group in the container.
    pub gid: u32,
}

impl DeviceNode {
    /// A char node owned by root, like capability nodes and the driver's defaults.
    pub fn root_char(path: impl Into<String>, major: u32, minor: u32, file_mode: u32) -> Self {
        DeviceNode { path: path.into(), kind: 'c', major, minor, file_mode, uid: 0, gid: 0 }
    }
}

/// One device cgroup rule.
///
/// OCI: "linux.resources.devices: an array of entries, each with allow, type,
/// major, minor, access". mighook only ever emits exact `allow c M:m rw` rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct DeviceRule {
    /// OCI: "allow (boolean, REQUIRED) - whether the entry is allowed or denied".
    pub allow: bool,
    /// OCI: "type (string, OPTIONAL) - type of device: a (all), c (char), or b (block)".
    #[serde(rename = "type")]
    pub kind: char,
    /// OCI: "major, minor (int64, OPTIONAL)". Never a wildcard here.
    pub major: u32,
    pub minor: u32,
    /// OCI: "access (string, OPTIONAL) - cgroup permissions for device: r, w, m".
    pub access: &'static str,
}

impl DeviceRule {
    /// The only rule mighook grants: read/write on exactly one char device, never mknod.
    pub fn allow_rw(major: u32, minor: u32) -> Self {
        DeviceRule { allow: true, kind: 'c', major, minor, access: "rw" }
    }
}

/// Everything a container gets for its request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerEdits {
    pub device_nodes: Vec<DeviceNode>,
    pub device_rules: Vec<DeviceRule>,
    /// `KEY=VALUE` entries for the container's environment.
    pub env: Vec<String>,
    /// The driver's user-space files found on the host for the requested
    /// capabilities; each applier places them for its container
    /// ([`crate::driver_files::place`]). `None`: nothing of the driver to give.
    #[serde(skip)]
    pub driver_files: Option<crate::driver_files::DriverFiles>,
}

impl ContainerEdits {
    /// Sorted and de-duplicated edits from nodes; one `rw` rule per distinct node.
    pub fn from_nodes(nodes: impl IntoIterator<Item = DeviceNode>, env: Vec<String>) -> Self {
        let nodes: BTreeSet<DeviceNode> = nodes.into_iter().collect();
        let rules: BTreeSet<DeviceRule> = nodes.iter().map(|n| DeviceRule::allow_rw(n.major, n.minor)).collect();
        ContainerEdits {
            device_nodes: nodes.into_iter().collect(),
            device_rules: rules.into_iter().collect(),
            env,
            driver_files: None,
        }
    }

    /// True when there is nothing to apply (a `void` or absent request).
    pub fn is_empty(&self) -> bool {
        self.device_nodes.is_empty()
            && self.device_rules.is_empty()
            && self.env.is_empty()
            && self.driver_files.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(path: &str, major: u32, minor: u32) -> DeviceNode {
        DeviceNode { path: path.into(), kind: 'c', major, minor, file_mode: 0o666, uid: 0, gid: 0 }
    }

    #[test]
    fn nodes_are_sorted_and_deduplicated() {
        let e = ContainerEdits::from_nodes(
            [node("/dev/nvidia1", 195, 1), node("/dev/nvidia0", 195, 0), node("/dev/nvidia1", 195, 1)],
            vec![],
        );
        assert_eq!(
            e.device_nodes.iter().map(|n| n.path.as_str()).collect::<Vec<_>>(),
            ["/dev/nvidia0", "/dev/nvidia1"]
        );
        assert_eq!(e.device_rules, [DeviceRule::allow_rw(195, 0), DeviceRule::allow_rw(195, 1)]);
    }

    #[test]
    fn rules_grant_rw_never_mknod() {
        let e = ContainerEdits::from_nodes([node("/dev/nvidiactl", 195, 255)], vec![]);
        assert_eq!(e.device_rules[0].access, "rw");
    }
}
