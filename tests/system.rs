//! `mighook system create-device-nodes` / `create-dev-char-symlinks` and
//! `load-kmods`, on simulated nodes (fake-node's /proc and /dev) through the
//! real binary. Making device nodes needs root: without it these say SKIPPED.

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::SimNode;

fn mighook(node: &SimNode, args: &[&str]) -> Output {
    Command::new(support::mighook_bin()).args(node.mighook_args()).args(args).output().expect("run mighook")
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// `rel path -> c major:minor mode uid:gid` (or `dir mode`, `-> target`) of everything under `dir`.
fn devs(dir: &Path) -> BTreeMap<String, String> {
    support::tree(dir)
        .keys()
        .map(|rel| {
            let path = dir.join(rel);
            let m = std::fs::symlink_metadata(&path).unwrap();
            let what = if m.file_type().is_char_device() {
                let (ma, mi) = (libc_major(m.rdev()), libc_minor(m.rdev()));
                format!("c {ma}:{mi} {:o} {}:{}", m.permissions().mode() & 0o7777, m.uid(), m.gid())
            } else if m.is_dir() {
                format!("dir {:o}", m.permissions().mode() & 0o7777)
            } else if m.file_type().is_symlink() {
                format!("-> {}", std::fs::read_link(&path).unwrap().display())
            } else {
                "other".into()
            };
            (rel.clone(), what)
        })
        .collect()
}

fn libc_major(dev: u64) -> u64 {
    ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff)
}

fn libc_minor(dev: u64) -> u64 {
    ((dev >> 12) & 0xffff_ff00) | (dev & 0xff)
}

fn fresh_dev(node: &SimNode) -> PathBuf {
    let dev = node.dir().join("fresh-dev");
    std::fs::create_dir(&dev).unwrap();
    dev
}

#[test]
fn create_device_nodes_makes_what_nvidia_modprobe_makes() {
    if !support::require_root_and(&[]) {
        return;
    }
    let node = SimNode::new("a100x8");
    let dev = fresh_dev(&node);
    let out = ok(mighook(&node, &["system", "create-device-nodes", "--dev-root", dev.to_str().unwrap()]));
    assert!(out.contains(&format!("created {}/nvidiactl (c 195:255 0666 0:0)\n", dev.display())), "{out}");
    let mut made = devs(&dev);
    // fake-node makes /dev/nvidia-caps with the umask's mode; nvidia-modprobe's is 0755.
    assert_eq!(made.remove("nvidia-caps"), Some("dir 755".to_string()));
    let mut expected = devs(&node.dev_root());
    expected.remove("nvidia-caps");
    // IMEX channel nodes are the admin's to make (nvidia-modprobe -i, NVreg_CreateImexChannel0), not ours.
    expected.retain(|path, _| !path.starts_with("nvidia-caps-imex-channels"));
    assert_eq!(made, expected);
}

#[test]
fn create_device_nodes_gives_the_params_owner_and_mode() {
    if !support::require_root_and(&[]) {
        return;
    }
    let node = SimNode::with_device_files("a100x8", 0, 44, 0o660);
    let dev = fresh_dev(&node);
    ok(mighook(&node, &["system", "create-device-nodes", "--dev-root", dev.to_str().unwrap()]));
    let made = devs(&dev);
    assert_eq!(made["nvidia2"], "c 195:2 660 0:44");
    assert_eq!(made["nvidiactl"], "c 195:255 660 0:44");
    assert_eq!(made["nvidia-uvm"], "c 511:0 666 0:0");
}

#[test]
fn create_device_nodes_twice_changes_nothing_and_fixes_a_wrong_mode() {
    if !support::require_root_and(&[]) {
        return;
    }
    let node = SimNode::new("a100x8");
    let dev = fresh_dev(&node);
    let args = ["system", "create-device-nodes", "--dev-root", dev.to_str().unwrap()];
    ok(mighook(&node, &args));
    let before = support::tree(&dev);
    assert_eq!(ok(mighook(&node, &args)), "");
    assert_eq!(support::tree(&dev), before);
    std::fs::set_permissions(dev.join("nvidia2"), std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(ok(mighook(&node, &args)), format!("fixed {}/nvidia2 (c 195:2 0666 0:0)\n", dev.display()));
    assert_eq!(devs(&dev)["nvidia2"], "c 195:2 666 0:0");
}

#[test]
fn create_device_nodes_replaces_a_symlink_without_following_it() {
    if !support::require_root_and(&[]) {
        return;
    }
    let node = SimNode::new("a100x8");
    let dev = fresh_dev(&node);
    let victim = node.dir().join("victim");
    std::fs::write(&victim, "keep").unwrap();
    std::os::unix::fs::symlink(&victim, dev.join("nvidiactl")).unwrap();
    ok(mighook(&node, &["system", "create-device-nodes", "--dev-root", dev.to_str().unwrap()]));
    assert_eq!(devs(&dev)["nvidiactl"], "c 195:255 666 0:0");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    assert_eq!(std::fs::metadata(&victim).unwrap().permissions().mode() & 0o777, 0o644);
}

#[test]
fn create_dev_char_symlinks_links_every_nvidia_node() {
    if !support::require_root_and(&[]) {
        return;
    }
    let node = SimNode::new("a100x8");
    let dev = node.dev_root();
    let args = ["system", "create-dev-char-symlinks", "--dev-root", dev.to_str().unwrap()];
    let out = ok(mighook(&node, &args));
    assert!(out.contains(&format!("created {}/char/195:255 -> ../nvidiactl\n", dev.display())), "{out}");
    let links = devs(&dev.join("char"));
    assert_eq!(links["195:2"], "-> ../nvidia2");
    assert_eq!(links["511:1"], "-> ../nvidia-uvm-tools");
    assert_eq!(links["508:1"], "-> ../nvidia-caps/nvidia-cap1");
    assert_eq!(links["509:1"], "-> ../nvidia-caps-imex-channels/channel1");
    let nodes = devs(&dev).values().filter(|d| d.starts_with("c ")).count();
    assert_eq!(links.len(), nodes);
    assert!(links.keys().all(|l| std::fs::metadata(dev.join("char").join(l)).unwrap().file_type().is_char_device()));
    assert_eq!(ok(mighook(&node, &args)), "");
}

/// A node where nvidia-uvm is not loaded yet, a modprobe that records its calls and
/// "loads" it (registers its major in the fake /proc/devices), and a config using it.
fn node_without_uvm(load_kmods: bool) -> (SimNode, PathBuf, PathBuf) {
    let node = SimNode::new("a100x8");
    let devices = node.proc_root().join("devices");
    let text = std::fs::read_to_string(&devices).unwrap();
    std::fs::write(&devices, text.replace("511 nvidia-uvm\n", "")).unwrap();
    let calls = node.dir().join("modprobe-calls");
    let modprobe = node.dir().join("modprobe");
    std::fs::write(
        &modprobe,
        format!(
            "#!/bin/sh\necho \"$*\" >> {}\nsed -i 's/^Character devices:$/Character devices:\\n511 nvidia-uvm/' {}\n",
            calls.display(),
            devices.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&modprobe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = node.dir().join("config.toml");
    std::fs::write(&config, format!("load-kmods = {load_kmods}\nmodprobe = {:?}\n", modprobe.to_str().unwrap()))
        .unwrap();
    (node, config, calls)
}

#[test]
fn a_missing_uvm_is_loaded_once_with_the_configured_modprobe() {
    if !support::require_root_and(&[]) {
        return;
    }
    let (node, config, calls) = node_without_uvm(true);
    let out = ok(mighook(&node, &["--config", config.to_str().unwrap(), "resolve", "--json", "2"]));
    assert!(out.contains("\"/dev/nvidia-uvm\""), "{out}");
    assert_eq!(std::fs::read_to_string(&calls).unwrap(), "nvidia-uvm\n");
}

#[test]
fn without_load_kmods_a_missing_uvm_refuses_compute() {
    if !support::require_root_and(&[]) {
        return;
    }
    let (node, config, calls) = node_without_uvm(false);
    let out = mighook(&node, &["--config", config.to_str().unwrap(), "resolve", "2"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "mighook: compute needs /dev/nvidia-uvm, but /proc/devices has no nvidia-uvm major, and load-kmods is off \
         (load nvidia-uvm on the host, or set load-kmods = true)\n"
    );
    assert!(!calls.exists());
}

#[test]
fn create_device_nodes_loads_a_missing_uvm() {
    if !support::require_root_and(&[]) {
        return;
    }
    let (node, config, calls) = node_without_uvm(true);
    let dev = fresh_dev(&node);
    let args =
        ["--config", config.to_str().unwrap(), "system", "create-device-nodes", "--dev-root", dev.to_str().unwrap()];
    ok(mighook(&node, &args));
    assert_eq!(devs(&dev)["nvidia-uvm"], "c 511:0 666 0:0");
    assert_eq!(std::fs::read_to_string(&calls).unwrap(), "nvidia-uvm\n");
}
