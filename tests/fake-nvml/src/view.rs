//! The container view: what the fake NVML shows a process that runs inside a
//! container. The real driver lists only the GPUs (and MIG devices) whose
//! device nodes the process can open, renumbered from 0; a mighook container
//! must therefore see exactly what it was given.
//!
//! The fake decides by trying the nodes the way CUDA does. On a GPU-less host
//! no driver sits behind the NVIDIA majors, so an open the devices cgroup
//! allows fails with ENXIO; EPERM means the cgroup denied it, ENOENT that the
//! node is not there. "Inside a container" is recognised by `/dev/nvidiactl`
//! existing: the test host has no driver and therefore no such node, and there
//! the full topology is shown, as before.

use std::io;
use std::path::{Path, PathBuf};

use crate::node::mig_minor;
use crate::topology::Topology;

/// Env var replacing `/dev` for the check (unit tests only).
pub const DEV_ROOT_ENV: &str = "FAKE_NVML_DEV_ROOT";

/// `$FAKE_NVML_DEV_ROOT` or `/dev`.
pub fn dev_root() -> PathBuf {
    match std::env::var_os(DEV_ROOT_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from("/dev"),
    }
}

/// Whether `path` opens, or is a node with no driver behind it.
pub fn reachable(path: &Path) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    let opened = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY).open(path);
    match opened {
        Ok(_) => true,
        Err(e) => e.raw_os_error() == Some(libc::ENXIO),
    }
}

/// The topology as a process with device directory `dev` sees it: unchanged
/// without `dev/nvidiactl`, else only reachable GPUs and MIG devices,
/// renumbered. Injected failures follow their GPU and slot, and are dropped
/// with them.
pub fn container_view(topo: &Topology, dev: &Path) -> Topology {
    match std::fs::symlink_metadata(dev.join("nvidiactl")) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return topo.clone(),
        // Something is there but cannot even be stat'ed: treat as inside.
        Err(_) => {}
    }
    let cap = |minor: u32| reachable(&dev.join(format!("nvidia-caps/nvidia-cap{minor}")));
    let mut out = topo.clone();
    out.gpus.clear();
    out.failures.clear();
    // (old index, new index, old slot -> new slot)
    let mut kept = Vec::new();
    for (index, gpu) in topo.gpus.iter().enumerate() {
        if !reachable(&dev.join(format!("nvidia{}", gpu.minor))) {
            continue;
        }
        let mut gpu = gpu.clone();
        let mut slots = Vec::new();
        let mut migs: Vec<_> = std::mem::take(&mut gpu.mig_devices);
        migs.sort_by_key(|m| m.slot);
        for mut mig in migs {
            if cap(mig_minor(gpu.minor, mig.gi, None)) && cap(mig_minor(gpu.minor, mig.gi, Some(mig.ci))) {
                slots.push((mig.slot, gpu.mig_devices.len() as u32));
                mig.slot = gpu.mig_devices.len() as u32;
                gpu.mig_devices.push(mig);
            }
        }
        kept.push((index as u32, out.gpus.len() as u32, slots));
        out.gpus.push(gpu);
    }
    for f in &topo.failures {
        let Some(gpu) = f.gpu else {
            out.failures.push(f.clone());
            continue;
        };
        let Some((_, new_gpu, slots)) = kept.iter().find(|(old, _, _)| *old == gpu) else {
            continue;
        };
        let slot = match f.slot {
            None => None,
            Some(s) => match slots.iter().find(|(old, _)| *old == s) {
                Some((_, new)) => Some(*new),
                None => continue,
            },
        };
        out.failures.push(crate::topology::Failure { gpu: Some(*new_gpu), slot, ..f.clone() });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::locate::topology;
    use std::fs;

    fn a100x8() -> Topology {
        Topology::load(topology("a100x8.json")).unwrap()
    }

    fn touch(dev: &Path, rel: &str) {
        let p = dev.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, b"").unwrap();
    }

    #[test]
    fn without_nvidiactl_everything_is_visible() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(container_view(&a100x8(), tmp.path()), a100x8());
    }

    #[test]
    fn only_reachable_gpus_and_migs_renumbered() {
        let tmp = tempfile::tempdir().unwrap();
        let dev = tmp.path();
        let t = a100x8();
        touch(dev, "nvidiactl");
        // GPU1 (minor 3) with only slot 3 (GI 2 CI 0); GPU6 (minor 4, MIG off).
        touch(dev, "nvidia3");
        touch(dev, "nvidia4");
        touch(dev, &format!("nvidia-caps/nvidia-cap{}", mig_minor(3, 2, None)));
        touch(dev, &format!("nvidia-caps/nvidia-cap{}", mig_minor(3, 2, Some(0))));
        // GI 1's access alone: no CI cap, so no MIG device of GI 1.
        touch(dev, &format!("nvidia-caps/nvidia-cap{}", mig_minor(3, 1, None)));
        let v = container_view(&t, dev);
        assert_eq!(v.gpus.len(), 2);
        assert_eq!(v.gpus[0].uuid, t.gpus[1].uuid);
        assert_eq!(v.gpus[1].uuid, t.gpus[6].uuid);
        assert_eq!(v.gpus[0].mig_devices.len(), 1);
        assert_eq!(v.gpus[0].mig_devices[0].uuid, t.gpus[1].mig_devices[3].uuid);
        assert_eq!(v.gpus[0].mig_devices[0].slot, 0);
        assert!(v.validate().is_ok());
    }

    #[test]
    fn failures_follow_their_gpu_and_slot() {
        let tmp = tempfile::tempdir().unwrap();
        let dev = tmp.path();
        let t = Topology::load(topology("nvml-error-midwalk.json")).unwrap();
        touch(dev, "nvidiactl");
        assert!(container_view(&t, dev).failures.is_empty());
        touch(dev, "nvidia3");
        for ci in [None, Some(2)] {
            touch(dev, &format!("nvidia-caps/nvidia-cap{}", mig_minor(3, 1, ci)));
        }
        let v = container_view(&t, dev);
        assert_eq!(v.failures.len(), 1);
        assert_eq!((v.failures[0].gpu, v.failures[0].slot), (Some(0), Some(0)));
    }
}
