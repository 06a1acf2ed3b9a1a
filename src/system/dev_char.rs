//! `/dev/char/<major>:<minor>` links for the NVIDIA nodes.
//!
//! udev makes these for the devices it knows; the NVIDIA nodes are made by
//! nvidia-modprobe (or [`super::nodes`]), not udev, so they have none. systemd
//! turns a unit's `DeviceAllow=` into cgroup rules by resolving
//! `/dev/char/<major>:<minor>`, and on `systemctl daemon-reload` it re-applies
//! each container scope's device rules that way: without the links the GPU
//! rules are dropped and the container loses its GPUs (NVIDIA toolkit issue 48;
//! `nvidia-ctk system create-dev-char-symlinks` is NVIDIA's fix). Links are
//! relative (`../nvidia0`), as udev writes them, and made only for nodes that
//! exist with the right device number.

use super::SystemError;
use super::nodes::{fs_err, open_subdir, split};
use crate::edits::DeviceNode;
use crate::sys::FsOps;
use crate::sys::fs::FileKind;
use std::ffi::OsStr;
use std::path::Path;

/// The link's target, relative to `/dev/char`: `../nvidia0`, `../nvidia-caps/nvidia-cap21`.
pub fn link_target(node: &DeviceNode) -> String {
    format!("../{}", node.path.strip_prefix("/dev/").unwrap_or(&node.path))
}

/// Links each node of `nodes` that exists under `dev_root` (a char device with its
/// device number) from `dev_root/char/<major>:<minor>`. A correct link is left
/// alone, a wrong link replaced; anything else in a link's place is refused.
pub fn ensure<S: FsOps>(sys: &S, dev_root: &Path, nodes: &[DeviceNode]) -> Result<Vec<String>, SystemError> {
    let root = sys.open_dir(dev_root).map_err(fs_err(dev_root.into()))?;
    let mut lines = vec![];
    let mut char_dir = None;
    for node in nodes {
        if !exists(sys, &root, dev_root, node)? {
            continue;
        }
        let dir = match &char_dir {
            Some(dir) => dir,
            None => char_dir.insert(open_subdir(sys, &root, dev_root, "char", &mut lines)?),
        };
        let name = format!("{}:{}", node.major, node.minor);
        let path = dev_root.join("char").join(&name);
        let target = link_target(node);
        let os = OsStr::new(&name);
        let verb = match sys.stat_at(dir, os).map_err(fs_err(path.clone()))? {
            None => "created",
            Some(st) if st.kind == FileKind::Symlink => {
                if sys.readlink_at(dir, os).map_err(fs_err(path.clone()))? == OsStr::new(&target) {
                    continue;
                }
                sys.unlink_at(dir, os).map_err(fs_err(path.clone()))?;
                "replaced"
            }
            Some(st) => return Err(SystemError::InTheWay { path, what: st.kind.describe(), want: "a symlink" }),
        };
        sys.symlink_at(dir, os, OsStr::new(&target)).map_err(fs_err(path.clone()))?;
        lines.push(format!("{verb} {} -> {target}", path.display()));
    }
    Ok(lines)
}

/// Whether the node is there as a char device with its device number.
fn exists<S: FsOps>(sys: &S, root: &S::Fd, dev_root: &Path, node: &DeviceNode) -> Result<bool, SystemError> {
    let (dirs, name) = split(&node.path);
    let path = dev_root.join(node.path.strip_prefix("/dev/").unwrap_or(&node.path));
    let dir = match dirs.as_slice() {
        [] => None,
        [d] => match sys.stat_at(root, OsStr::new(d)).map_err(fs_err(dev_root.join(d)))? {
            Some(st) if st.kind == FileKind::Dir => {
                Some(sys.open_dir_in_root(root, Path::new(d)).map_err(fs_err(dev_root.join(d)))?)
            }
            _ => return Ok(false),
        },
        _ => return Ok(false),
    };
    let st = sys.stat_at(dir.as_ref().unwrap_or(root), OsStr::new(name)).map_err(fs_err(path))?;
    Ok(st.is_some_and(|st| st.kind == FileKind::Char && (st.rdev_major, st.rdev_minor) == (node.major, node.minor)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fake::fs::RecordingFs;

    fn nodes() -> Vec<DeviceNode> {
        vec![
            DeviceNode::root_char("/dev/nvidia0", 195, 0, 0o666),
            DeviceNode::root_char("/dev/nvidiactl", 195, 255, 0o666),
            DeviceNode::root_char("/dev/nvidia-caps/nvidia-cap21", 508, 21, 0o444),
        ]
    }

    fn host() -> RecordingFs {
        RecordingFs::new().char_dev("/d/nvidia0", 195, 0, 0o666).char_dev("/d/nvidiactl", 195, 255, 0o666).char_dev(
            "/d/nvidia-caps/nvidia-cap21",
            508,
            21,
            0o444,
        )
    }

    #[test]
    fn every_existing_node_gets_a_relative_link() {
        let fs = host();
        let lines = ensure(&fs, Path::new("/d"), &nodes()).unwrap();
        assert_eq!(lines[0], "created /d/char");
        assert_eq!(lines[1], "created /d/char/195:0 -> ../nvidia0");
        assert_eq!(lines[2], "created /d/char/195:255 -> ../nvidiactl");
        assert_eq!(lines[3], "created /d/char/508:21 -> ../nvidia-caps/nvidia-cap21");
        assert_eq!(fs.describe("/d/char/508:21").unwrap(), "-> ../nvidia-caps/nvidia-cap21");
    }

    #[test]
    fn a_second_run_changes_nothing() {
        let fs = host();
        ensure(&fs, Path::new("/d"), &nodes()).unwrap();
        let before = fs.changes().len();
        assert!(ensure(&fs, Path::new("/d"), &nodes()).unwrap().is_empty());
        assert_eq!(fs.changes().len(), before);
    }

    #[test]
    fn a_wrong_link_is_replaced() {
        let fs = host().symlink("/d/char/195:0", "../sda");
        let lines = ensure(&fs, Path::new("/d"), &nodes()[..1]).unwrap();
        assert_eq!(lines, ["replaced /d/char/195:0 -> ../nvidia0"]);
    }

    #[test]
    fn missing_or_different_nodes_get_no_link() {
        let fs = RecordingFs::new().char_dev("/d/nvidia0", 195, 9, 0o666).dir("/d/char");
        assert!(ensure(&fs, Path::new("/d"), &nodes()).unwrap().is_empty());
        assert!(fs.changes().is_empty(), "{:?}", fs.changes());
    }

    #[test]
    fn a_file_in_a_links_place_is_refused() {
        let fs = host().file("/d/char/195:0", "x");
        let e = ensure(&fs, Path::new("/d"), &nodes()[..1]).unwrap_err().to_string();
        assert_eq!(e, "/d/char/195:0 is a regular file, not a symlink: refusing to touch it");
    }

    #[test]
    fn a_symlinked_char_dir_is_refused() {
        let fs = host().dir("/x").symlink("/d/char", "/x");
        let e = ensure(&fs, Path::new("/d"), &nodes()[..1]).unwrap_err().to_string();
        assert_eq!(e, "/d/char is a symlink, not a directory: refusing to touch it");
    }
}
