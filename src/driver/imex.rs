//! The host's IMEX channels: `/dev/nvidia-caps-imex-channels/channel<N>` under the dev root.
//!
//! The driver has channels (`NVreg_ImexChannelCount`, 2048 by default) but makes
//! no nodes for them itself: the admin (or `NVreg_CreateImexChannel0=1`, or
//! nvidia-modprobe) creates the ones the node hands out. A channel without a
//! host node is not one this host serves, so only the nodes are asked, never
//! the driver's count: NVIDIA's `nvidia-ctk cdi generate --mode imex` lists
//! the same nodes. Each node is taken with its own owner and mode (as nvidia-ctk
//! reads them from the host node), and its numbers are checked by the caller
//! against `/proc/devices`.

use super::DriverError;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// The directory of the channel nodes, under the dev root.
pub const IMEX_DIR: &str = "nvidia-caps-imex-channels";
/// The `/proc/devices` name of the channels' char major.
pub const IMEX_MAJOR_NAME: &str = "nvidia-caps-imex-channels";

/// One host channel node, as `lstat` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImexNode {
    pub channel: u32,
    pub major: u32,
    pub minor: u32,
    /// Permission bits only.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// `/dev/nvidia-caps-imex-channels/channel<n>`: its path in a container and, under `dev_root`, on the host.
pub fn channel_path(channel: u32) -> String {
    format!("/dev/{IMEX_DIR}/channel{channel}")
}

/// The host node of `channel`; `None` when there is none. Anything but a char
/// device at that path is an error: a node there that is not one is not a channel.
pub fn channel(dev_root: &Path, channel: u32) -> Result<Option<ImexNode>, DriverError> {
    let path = dev_root.join(IMEX_DIR).join(format!("channel{channel}"));
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(DriverError::Proc { path: path.display().to_string(), reason: e.to_string() }),
    };
    if !meta.file_type().is_char_device() {
        return Err(DriverError::Inconsistent {
            path: path.display().to_string(),
            reason: "not a character device".into(),
        });
    }
    let rdev = meta.rdev();
    Ok(Some(ImexNode {
        channel,
        major: libc::major(rdev),
        minor: libc::minor(rdev),
        mode: meta.mode() & 0o777,
        uid: meta.uid(),
        gid: meta.gid(),
    }))
}

/// Every `channel<n>` node the host has, by channel number; none without the directory.
/// Other names in the directory are not channels and are skipped.
pub fn channels(dev_root: &Path) -> Result<Vec<ImexNode>, DriverError> {
    let dir = dev_root.join(IMEX_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(DriverError::Proc { path: dir.display().to_string(), reason: e.to_string() }),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| DriverError::Proc { path: dir.display().to_string(), reason: e.to_string() })?;
        let name = entry.file_name();
        let Some(n) = name.to_str().and_then(|n| n.strip_prefix("channel")).and_then(channel_number) else {
            continue;
        };
        out.extend(channel(dev_root, n)?);
    }
    out.sort_by_key(|c| c.channel);
    Ok(out)
}

/// A channel number as the node names it: plain decimal, no leading zeros, below 2^20.
fn channel_number(s: &str) -> Option<u32> {
    let plain =
        !s.is_empty() && s.len() <= 7 && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    plain.then(|| s.parse().ok()).flatten().filter(|n| *n < crate::request::IMEX_CHANNEL_LIMIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_numbers_are_plain_decimals() {
        assert_eq!(channel_number("0"), Some(0));
        assert_eq!(channel_number("2047"), Some(2047));
        assert_eq!(channel_number("007"), None);
        assert_eq!(channel_number(""), None);
        assert_eq!(channel_number("1048576"), None);
        assert_eq!(channel_number("x1"), None);
    }

    #[test]
    fn a_missing_directory_is_no_channel() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(channels(dir.path()).unwrap(), vec![]);
        assert_eq!(channel(dir.path(), 0).unwrap(), None);
    }

    #[test]
    fn a_file_that_is_not_a_node_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(IMEX_DIR)).unwrap();
        std::fs::write(dir.path().join(IMEX_DIR).join("channel1"), "").unwrap();
        std::fs::write(dir.path().join(IMEX_DIR).join("README"), "").unwrap();
        let e = channel(dir.path(), 1).unwrap_err().to_string();
        assert!(e.ends_with("nvidia-caps-imex-channels/channel1: not a character device"), "{e}");
        assert!(channels(dir.path()).is_err());
        assert_eq!(channel(dir.path(), 2).unwrap(), None);
    }
}
