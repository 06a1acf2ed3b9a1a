//! `mighook setup docker|containerd|crio|podman` against a temporary config root
//! holding files with other settings: those survive, a changed file gets a
//! backup, a second run changes nothing, `--dry-run` writes nothing, and a
//! file mighook will not rewrite is a refusal that leaves everything as it was.
//! containerd's merged view is checked with the real `containerd config dump`.

mod support;

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A config root and a bin dir whose `mighook` links to the built binary.
struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    fn new() -> Host {
        let dir = tempfile::Builder::new().prefix("mighook-setup").tempdir().unwrap();
        fs::create_dir_all(dir.path().join("root")).unwrap();
        fs::create_dir_all(dir.path().join("bin")).unwrap();
        std::os::unix::fs::symlink(support::mighook_bin(), dir.path().join("bin/mighook")).unwrap();
        Host { dir }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }
    fn bin(&self, name: &str) -> PathBuf {
        self.dir.path().join("bin").join(name)
    }
    /// A path under the config root, given as the absolute path on a real host.
    fn at(&self, abs: &str) -> PathBuf {
        self.root().join(abs.trim_start_matches('/'))
    }

    fn put(&self, abs: &str, text: &str) {
        let p = self.at(abs);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    fn text(&self, abs: &str) -> String {
        fs::read_to_string(self.at(abs)).unwrap_or_else(|e| panic!("{abs}: {e}"))
    }

    fn setup(&self, engine: &str, extra: &[&str]) -> Output {
        let mut cmd = Command::new(support::mighook_bin());
        cmd.args(["setup", engine, "--config-root"])
            .arg(self.root())
            .arg("--binary")
            .arg(self.bin("mighook"))
            .args(extra);
        cmd.output().unwrap()
    }

    fn setup_ok(&self, engine: &str, extra: &[&str]) -> String {
        let out = self.setup(engine, extra);
        assert!(out.status.success(), "setup {engine} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Every file and link under the temp dir: content (or link target) and mtime.
    fn snapshot(&self) -> BTreeMap<PathBuf, (Vec<u8>, i64, i64)> {
        fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, (Vec<u8>, i64, i64)>) {
            for e in fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                let m = fs::symlink_metadata(&p).unwrap();
                if m.is_dir() {
                    out.insert(p.clone(), (b"<dir>".to_vec(), 0, 0));
                    walk(&p, out);
                } else if m.file_type().is_symlink() {
                    out.insert(
                        p.clone(),
                        (fs::read_link(&p).unwrap().into_os_string().into_encoded_bytes(), m.mtime(), m.mtime_nsec()),
                    );
                } else {
                    out.insert(p.clone(), (fs::read(&p).unwrap(), m.mtime(), m.mtime_nsec()));
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(self.dir.path(), &mut out);
        out
    }

    /// Backups of `abs`, as (path, content).
    fn backups(&self, abs: &str) -> Vec<(PathBuf, String)> {
        let p = self.at(abs);
        let prefix = format!("{}.mighook-backup-", p.file_name().unwrap().to_str().unwrap());
        let mut found: Vec<(PathBuf, String)> = fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|b| b.file_name().unwrap().to_str().unwrap().starts_with(&prefix))
            .map(|b| (b.clone(), fs::read_to_string(&b).unwrap()))
            .collect();
        found.sort();
        found
    }
}

/// Runs `setup` twice and checks the second run says so and changes nothing.
fn assert_idempotent(h: &Host, engine: &str) {
    assert_idempotent_with(h, engine, &[]);
}

fn assert_idempotent_with(h: &Host, engine: &str, extra: &[&str]) {
    let before = h.snapshot();
    let out = h.setup_ok(engine, extra);
    assert!(out.starts_with(&format!("{engine}: already configured, nothing changed\n")), "{out}");
    assert_eq!(h.snapshot(), before, "a second run changed something");
}

/// A dry run on a fresh copy of the same state must print something and write nothing.
fn assert_dry_run_writes_nothing(h: &Host, engine: &str, expect: &str) {
    let before = h.snapshot();
    let out = h.setup_ok(engine, &["--dry-run"]);
    assert!(out.contains(expect), "dry run output lacks {expect:?}:\n{out}");
    assert!(out.ends_with("dry run: nothing written\n"), "{out}");
    assert_eq!(h.snapshot(), before, "--dry-run wrote something");
}

fn assert_refused(h: &Host, engine: &str, expect: &str) {
    let before = h.snapshot();
    let out = h.setup(engine, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "setup {engine} must fail");
    assert!(stderr.starts_with("mighook: ") && stderr.contains(expect), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert_eq!(h.snapshot(), before, "a refused setup wrote something");
}

// ---------------------------------------------------------------------------
// docker

const DAEMON_JSON: &str = "/etc/docker/daemon.json";
const DAEMON_BEFORE: &str = "{\n\t\"log-driver\": \"journald\",\n\t\"runtimes\": {\"crun\": {\"path\": \"/usr/bin/crun\", \"runtimeArgs\": [\"--debug\"]}},\n\t\"default-ulimits\": {\"nofile\": {\"Name\": \"nofile\", \"Hard\": 65536, \"Soft\": 1024}},\n\t\"x-unknown\": [1, 2.5, null, \"é\"]\n}\n";

#[test]
fn docker_registers_the_runtime_and_keeps_every_other_setting() {
    let h = Host::new();
    h.put(DAEMON_JSON, DAEMON_BEFORE);
    let out = h.setup_ok("docker", &[]);
    let before: Value = serde_json::from_str(DAEMON_BEFORE).unwrap();
    let after: Value = serde_json::from_str(&h.text(DAEMON_JSON)).unwrap();
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&after), keys(&before));
    for k in ["log-driver", "default-ulimits", "x-unknown"] {
        assert_eq!(after[k], before[k], "{k}");
    }
    assert_eq!(after["runtimes"]["crun"], before["runtimes"]["crun"]);
    assert_eq!(
        after["runtimes"]["nvidia"],
        json!({"path": h.bin("nvidia-container-runtime").to_str().unwrap(), "args": []})
    );
    assert_eq!(h.backups(DAEMON_JSON).len(), 1);
    assert_eq!(h.backups(DAEMON_JSON)[0].1, DAEMON_BEFORE, "the backup is the old file");
    assert!(out.contains("wrote ") && out.contains("(backup: "), "{out}");
}

#[test]
fn docker_links_the_two_names_next_to_the_binary() {
    let h = Host::new();
    let out = h.setup_ok("docker", &[]);
    for name in ["nvidia-container-runtime", "nvidia-container-runtime-hook"] {
        assert_eq!(fs::read_link(h.bin(name)).unwrap(), Path::new("mighook"), "{name}");
        assert!(out.contains(&format!("linked {} -> mighook", h.bin(name).display())), "{out}");
    }
    // No daemon.json before: it is created, and there is nothing to back up.
    assert_eq!(serde_json::from_str::<Value>(&h.text(DAEMON_JSON)).unwrap()["runtimes"]["nvidia"]["args"], json!([]));
    assert!(h.backups(DAEMON_JSON).is_empty());
}

#[test]
fn docker_second_run_changes_nothing() {
    let h = Host::new();
    h.put(DAEMON_JSON, DAEMON_BEFORE);
    h.setup_ok("docker", &[]);
    assert_idempotent(&h, "docker");
    assert_eq!(h.backups(DAEMON_JSON).len(), 1);
}

#[test]
fn docker_dry_run_writes_nothing() {
    let h = Host::new();
    h.put(DAEMON_JSON, DAEMON_BEFORE);
    assert_dry_run_writes_nothing(&h, "docker", "+    \"nvidia\": {");
    let out = h.setup_ok("docker", &["--dry-run"]);
    assert!(out.contains("would link "), "{out}");
}

#[test]
fn docker_refuses_to_replace_another_nvidia_container_runtime() {
    let h = Host::new();
    h.put(DAEMON_JSON, DAEMON_BEFORE);
    fs::write(h.bin("nvidia-container-runtime"), "#!/bin/sh\n# NVIDIA's\n").unwrap();
    assert_refused(&h, "docker", "nvidia-container-runtime exists and is not");
}

#[test]
fn docker_refuses_a_daemon_json_that_is_not_an_object() {
    let h = Host::new();
    h.put(DAEMON_JSON, "[1, 2]\n");
    assert_refused(&h, "docker", "is not a JSON object");
}

// ---------------------------------------------------------------------------
// containerd

const CONFIG_TOML: &str = "/etc/containerd/config.toml";
const DROPIN: &str = "/etc/containerd/conf.d/99-mighook.toml";
/// Debian 12's /etc/containerd/config.toml, with a comment.
const DEBIAN_CONFIG: &str = "# site settings: keep this comment\nversion = 2\n\n[plugins]\n  [plugins.\"io.containerd.grpc.v1.cri\"]\n    [plugins.\"io.containerd.grpc.v1.cri\".cni]\n      bin_dir = \"/usr/lib/cni\"\n      conf_dir = \"/etc/cni/net.d\"\n  [plugins.\"io.containerd.internal.v1.opt\"]\n    path = \"/var/lib/containerd/opt\"\n";

fn toml_at(text: &str) -> toml::Table {
    text.parse().unwrap()
}

#[test]
fn containerd_adds_one_imports_line_and_keeps_the_rest_byte_for_byte() {
    let h = Host::new();
    h.put(CONFIG_TOML, DEBIAN_CONFIG);
    h.setup_ok("containerd", &[]);
    let glob = h.at("/etc/containerd/conf.d/*.toml");
    let want =
        DEBIAN_CONFIG.replacen("version = 2\n", &format!("version = 2\nimports = [\"{}\"]\n", glob.display()), 1);
    assert_eq!(h.text(CONFIG_TOML), want);
    assert_eq!(h.backups(CONFIG_TOML).len(), 1);
    assert_eq!(h.backups(CONFIG_TOML)[0].1, DEBIAN_CONFIG);
    assert_eq!(fs::read_link(h.bin("nvidia-container-runtime")).unwrap(), Path::new("mighook"));
}

#[test]
fn containerd_dropin_carries_the_cri_section_and_the_runtime() {
    let h = Host::new();
    h.put(CONFIG_TOML, DEBIAN_CONFIG);
    h.setup_ok("containerd", &[]);
    let d = toml_at(&h.text(DROPIN));
    let cri = &d["plugins"]["io.containerd.grpc.v1.cri"];
    assert_eq!(d["version"].as_integer(), Some(2));
    assert_eq!(cri["cni"]["bin_dir"].as_str(), Some("/usr/lib/cni"));
    assert_eq!(cri["containerd"]["runtimes"]["runc"]["runtime_type"].as_str(), Some("io.containerd.runc.v2"));
    assert_eq!(cri["containerd"]["runtimes"]["nvidia"]["runtime_type"].as_str(), Some("io.containerd.runc.v2"));
    assert_eq!(
        cri["containerd"]["runtimes"]["nvidia"]["options"]["BinaryName"].as_str(),
        h.bin("nvidia-container-runtime").to_str()
    );
    assert!(d["plugins"].get("io.containerd.internal.v1.opt").is_none(), "other plugins stay in config.toml only");
}

/// The merged config containerd itself computes: what it would run with.
fn containerd_dump(config: &Path) -> Option<toml::Table> {
    let Some(bin) = support::find_tool("containerd") else {
        support::skip("containerd not installed (run scripts/install-deps.sh)");
        return None;
    };
    let out = Command::new(bin).arg("--config").arg(config).args(["config", "dump"]).output().unwrap();
    assert!(out.status.success(), "containerd config dump: {}", String::from_utf8_lossy(&out.stderr));
    Some(toml_at(&String::from_utf8(out.stdout).unwrap()))
}

#[test]
fn containerd_itself_sees_the_runtime_and_keeps_the_old_settings() {
    let h = Host::new();
    h.put(CONFIG_TOML, DEBIAN_CONFIG);
    let Some(before) = containerd_dump(&h.at(CONFIG_TOML)) else { return };
    h.setup_ok("containerd", &[]);
    let after = containerd_dump(&h.at(CONFIG_TOML)).unwrap();
    let cri = |t: &toml::Table| t["plugins"]["io.containerd.grpc.v1.cri"].clone();
    let (b, a) = (cri(&before), cri(&after));
    assert_eq!(a["cni"], b["cni"], "CNI settings survive the drop-in");
    assert_eq!(a["cni"]["bin_dir"].as_str(), Some("/usr/lib/cni"));
    assert_eq!(a["containerd"]["default_runtime_name"], b["containerd"]["default_runtime_name"]);
    assert_eq!(a["containerd"]["runtimes"]["runc"]["runtime_type"].as_str(), Some("io.containerd.runc.v2"));
    assert_eq!(
        a["containerd"]["runtimes"]["nvidia"]["options"]["BinaryName"].as_str(),
        h.bin("nvidia-container-runtime").to_str()
    );
    assert_eq!(after["plugins"]["io.containerd.internal.v1.opt"], before["plugins"]["io.containerd.internal.v1.opt"]);
    for (k, v) in b.as_table().unwrap() {
        if k != "containerd" {
            assert_eq!(&a[k], v, "plugins.cri.{k}");
        }
    }
}

#[test]
fn containerd_copies_the_cri_section_of_the_last_drop_in_and_inherits_runc_options() {
    let h = Host::new();
    let glob = h.at("/etc/containerd/conf.d/*.toml");
    h.put(
        CONFIG_TOML,
        &format!(
            "version = 2\nimports = [\"{}\"]\n[plugins.\"io.containerd.grpc.v1.cri\"]\nsandbox_image = \"old\"\n",
            glob.display()
        ),
    );
    h.put("/etc/containerd/conf.d/10-site.toml", "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\nsandbox_image = \"site/pause:3.9\"\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\nruntime_type = \"io.containerd.runc.v2\"\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\nSystemdCgroup = true\n");
    let site_before = h.text("/etc/containerd/conf.d/10-site.toml");
    let config_before = h.text(CONFIG_TOML);
    h.setup_ok("containerd", &[]);
    assert_eq!(h.text(CONFIG_TOML), config_before, "imports already read the drop-in: config.toml untouched");
    assert!(h.backups(CONFIG_TOML).is_empty());
    assert_eq!(h.text("/etc/containerd/conf.d/10-site.toml"), site_before);
    let cri = toml_at(&h.text(DROPIN))["plugins"]["io.containerd.grpc.v1.cri"].clone();
    assert_eq!(cri["sandbox_image"].as_str(), Some("site/pause:3.9"));
    assert_eq!(cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"].as_bool(), Some(true));
    assert_eq!(cri["containerd"]["runtimes"]["nvidia"]["options"]["SystemdCgroup"].as_bool(), Some(true));
    if let Some(dump) = containerd_dump(&h.at(CONFIG_TOML)) {
        let cri = &dump["plugins"]["io.containerd.grpc.v1.cri"];
        assert_eq!(cri["sandbox_image"].as_str(), Some("site/pause:3.9"));
        assert_eq!(cri["containerd"]["runtimes"]["nvidia"]["options"]["SystemdCgroup"].as_bool(), Some(true));
    }
}

#[test]
fn containerd_without_a_config_gets_a_minimal_one() {
    let h = Host::new();
    h.setup_ok("containerd", &[]);
    let main = toml_at(&h.text(CONFIG_TOML));
    assert_eq!(main["version"].as_integer(), Some(2));
    assert_eq!(main["imports"].as_array().unwrap()[0].as_str(), h.at("/etc/containerd/conf.d/*.toml").to_str());
    assert!(h.backups(CONFIG_TOML).is_empty());
    if let Some(dump) = containerd_dump(&h.at(CONFIG_TOML)) {
        let runtimes = &dump["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"];
        assert!(runtimes.get("runc").is_some() && runtimes.get("nvidia").is_some(), "{runtimes}");
    }
}

#[test]
fn containerd_version_3_gets_a_version_3_dropin() {
    let h = Host::new();
    h.put(CONFIG_TOML, "version = 3\n");
    h.setup_ok("containerd", &[]);
    let d = toml_at(&h.text(DROPIN));
    assert_eq!(d["version"].as_integer(), Some(3));
    let runtimes = d["plugins"]["io.containerd.cri.v1.runtime"]["containerd"]["runtimes"].as_table().unwrap();
    assert_eq!(runtimes.keys().collect::<Vec<_>>(), ["nvidia"]);
}

#[test]
fn containerd_second_run_changes_nothing() {
    let h = Host::new();
    h.put(CONFIG_TOML, DEBIAN_CONFIG);
    h.setup_ok("containerd", &[]);
    assert_idempotent(&h, "containerd");
}

#[test]
fn containerd_dry_run_writes_nothing() {
    let h = Host::new();
    h.put(CONFIG_TOML, DEBIAN_CONFIG);
    assert_dry_run_writes_nothing(&h, "containerd", "+imports = [");
    let out = h.setup_ok("containerd", &["--dry-run"]);
    assert!(out.contains(&format!("would create {}", h.at(DROPIN).display())), "{out}");
}

#[test]
fn containerd_refuses_to_rewrite_an_imports_list() {
    let h = Host::new();
    h.put(CONFIG_TOML, "version = 2\nimports = [\"/etc/containerd/other/*.toml\"]\n");
    let glob = format!("{:?}", h.at("/etc/containerd/conf.d/*.toml").to_str().unwrap());
    assert_refused(&h, "containerd", &format!("add {glob} to that list"));
}

#[test]
fn containerd_refuses_a_version_1_config_with_plugins() {
    let h = Host::new();
    h.put(CONFIG_TOML, "[plugins.cri.cni]\nbin_dir = \"/x\"\n");
    assert_refused(&h, "containerd", "version 1 config");
}

#[test]
fn containerd_refuses_invalid_toml() {
    let h = Host::new();
    h.put(CONFIG_TOML, "version = = 2\n");
    assert_refused(&h, "containerd", "not valid TOML");
}

// ---------------------------------------------------------------------------
// CRI-O

const CRIO_DROPIN: &str = "/etc/crio/crio.conf.d/99-mighook.toml";
const HOOK_JSON: &str = "/usr/share/containers/oci/hooks.d/oci-mighook-hook.json";

#[test]
fn crio_writes_its_dropin_and_the_hook_and_leaves_other_files() {
    let h = Host::new();
    h.put("/etc/crio/crio.conf", "[crio.runtime]\ndefault_runtime = \"runc\"\n");
    h.put("/etc/crio/crio.conf.d/10-site.toml", "[crio.runtime]\nlog_level = \"debug\"\n");
    h.setup_ok("crio", &[]);
    assert_eq!(h.text("/etc/crio/crio.conf"), "[crio.runtime]\ndefault_runtime = \"runc\"\n");
    assert_eq!(h.text("/etc/crio/crio.conf.d/10-site.toml"), "[crio.runtime]\nlog_level = \"debug\"\n");
    let d = toml_at(&h.text(CRIO_DROPIN));
    let nvidia = &d["crio"]["runtime"]["runtimes"]["nvidia"];
    assert_eq!(nvidia["runtime_path"].as_str(), h.bin("nvidia-container-runtime").to_str());
    assert_eq!(nvidia["runtime_type"].as_str(), Some("oci"));
    let hook: Value = serde_json::from_str(&h.text(HOOK_JSON)).unwrap();
    assert_eq!(hook["hook"]["path"].as_str(), h.bin("mighook").to_str());
    assert_eq!(fs::read_link(h.bin("nvidia-container-runtime")).unwrap(), Path::new("mighook"));
}

#[test]
fn crio_replaces_an_old_dropin_with_a_backup_then_is_idempotent() {
    let h = Host::new();
    h.put(CRIO_DROPIN, "[crio.runtime.runtimes.nvidia]\nruntime_path = \"/old/nvidia-container-runtime\"\n");
    h.setup_ok("crio", &[]);
    assert_eq!(h.backups(CRIO_DROPIN).len(), 1);
    assert!(h.backups(CRIO_DROPIN)[0].1.contains("/old/"));
    assert_idempotent(&h, "crio");
    assert_eq!(h.backups(CRIO_DROPIN).len(), 1);
}

#[test]
fn crio_dry_run_writes_nothing() {
    let h = Host::new();
    assert_dry_run_writes_nothing(&h, "crio", "runtime_type = \"oci\"");
}

// ---------------------------------------------------------------------------
// podman

#[test]
fn podman_writes_the_hooks_d_file_next_to_others() {
    let h = Host::new();
    let other = "{\"version\": \"1.0.0\", \"hook\": {\"path\": \"/usr/bin/other\"}, \"when\": {\"always\": true}, \"stages\": [\"poststop\"]}\n";
    h.put("/usr/share/containers/oci/hooks.d/other.json", other);
    let out = h.setup_ok("podman", &[]);
    assert_eq!(h.text("/usr/share/containers/oci/hooks.d/other.json"), other);
    let hook: Value = serde_json::from_str(&h.text(HOOK_JSON)).unwrap();
    assert_eq!(
        hook,
        json!({
            "version": "1.0.0",
            "hook": {"path": h.bin("mighook").to_str().unwrap(), "args": ["mighook", "prestart"], "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
            "when": {"always": true},
            "stages": ["prestart"]
        })
    );
    assert!(out.contains("cdi generate --output /etc/cdi/nvidia.json"), "{out}");
}

#[test]
fn podman_writes_this_nodes_cdi_spec_when_the_driver_answers() {
    let h = Host::new();
    let node = support::SimNode::new("a100x8");
    let args = node.mighook_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    h.setup_ok("podman", &args);
    let generated = Command::new(support::mighook_bin()).args(&args).args(["cdi", "generate"]).output().unwrap();
    assert_eq!(h.text("/etc/cdi/nvidia.json").as_bytes(), &generated.stdout[..]);
    assert_idempotent_with(&h, "podman", &args);
}

#[test]
fn podman_replaces_a_stale_hook_with_a_backup_then_is_idempotent() {
    let h = Host::new();
    h.put(HOOK_JSON, "{\"version\": \"1.0.0\", \"hook\": {\"path\": \"/old/mighook\"}}\n");
    h.setup_ok("podman", &[]);
    assert_eq!(h.backups(HOOK_JSON).len(), 1);
    assert_idempotent(&h, "podman");
}

#[test]
fn podman_dry_run_writes_nothing() {
    let h = Host::new();
    assert_dry_run_writes_nothing(&h, "podman", "\"prestart\"");
}

// ---------------------------------------------------------------------------
// --undo: what setup changed goes back byte for byte; what it created goes away.

impl Host {
    /// Every file and link under the config root and the bin dir, with content, without mtimes.
    fn contents(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        self.snapshot().into_iter().map(|(p, (c, _, _))| (p, c)).collect()
    }

    /// `setup` with `dir` first on PATH (a fake `containerd` there says which version it is).
    fn setup_with_path(&self, engine: &str, dir: &Path, extra: &[&str]) -> String {
        let mut cmd = Command::new(support::mighook_bin());
        let path = format!("{}:{}", dir.display(), std::env::var("PATH").unwrap_or_default());
        cmd.env("PATH", path).args(["setup", engine, "--config-root"]).arg(self.root());
        let out = cmd.arg("--binary").arg(self.bin("mighook")).args(extra).output().unwrap();
        assert!(out.status.success(), "setup {engine} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }
}

/// A dir holding a `containerd` that prints `version` as `containerd --version` does.
fn fake_containerd(version: &str) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("containerd");
    fs::write(&bin, format!("#!/bin/sh\necho 'containerd github.com/containerd/containerd {version} 0123abc'\n"))
        .unwrap();
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// setup, then undo: every file and link is as it was before setup, byte for byte.
fn assert_undo_round_trips(h: &Host, engine: &str, setup_args: &[&str]) {
    let before = h.contents();
    h.setup_ok(engine, setup_args);
    assert_ne!(h.contents(), before, "setup {engine} changed nothing");
    let out = h.setup_ok(engine, &["--undo"]);
    assert!(out.ends_with(&format!("{engine}: setup undone; restart {engine} to drop the nvidia runtime\n")), "{out}");
    let after = h.contents();
    let dirs_only = |m: &BTreeMap<PathBuf, Vec<u8>>| m.iter().filter(|(_, c)| *c != b"<dir>").count();
    assert_eq!(
        after.iter().filter(|(_, c)| *c != b"<dir>").collect::<BTreeMap<_, _>>(),
        before.iter().filter(|(_, c)| *c != b"<dir>").collect::<BTreeMap<_, _>>(),
        "undo left {} files where there were {}",
        dirs_only(&after),
        dirs_only(&before)
    );
}

#[test]
fn docker_undo_restores_daemon_json_byte_for_byte() {
    let h = Host::new();
    h.put(DAEMON_JSON, DAEMON_BEFORE);
    assert_undo_round_trips(&h, "docker", &["--set-as-default"]);
    assert_eq!(h.text(DAEMON_JSON), DAEMON_BEFORE);
    assert!(h.backups(DAEMON_JSON).is_empty(), "the backup is what was put back");
}

#[test]
fn docker_undo_removes_a_daemon_json_and_the_links_it_created() {
    let h = Host::new();
    assert_undo_round_trips(&h, "docker", &[]);
    assert!(!h.at(DAEMON_JSON).exists());
    assert!(fs::symlink_metadata(h.bin("nvidia-container-runtime")).is_err());
}

#[test]
fn containerd_undo_restores_config_toml_and_removes_the_dropin() {
    let h = Host::new();
    h.put(CONFIG_TOML, DEBIAN_CONFIG);
    assert_undo_round_trips(&h, "containerd", &["--set-as-default"]);
    assert_eq!(h.text(CONFIG_TOML), DEBIAN_CONFIG);
    assert!(!h.at(DROPIN).exists());
}

#[test]
fn crio_undo_removes_its_dropin_hook_and_spec() {
    let h = Host::new();
    h.put("/etc/crio/crio.conf", "[crio.runtime]\ndefault_runtime = \"runc\"\n");
    assert_undo_round_trips(&h, "crio", &[]);
    assert!(!h.at(CRIO_DROPIN).exists() && !h.at(HOOK_JSON).exists());
}

#[test]
fn undo_after_two_setups_returns_to_the_state_before_mighook() {
    let h = Host::new();
    h.put(DAEMON_JSON, DAEMON_BEFORE);
    h.setup_ok("docker", &[]);
    h.setup_ok("docker", &["--set-as-default"]);
    assert_eq!(h.backups(DAEMON_JSON).len(), 2);
    h.setup_ok("docker", &["--undo"]);
    assert_eq!(h.text(DAEMON_JSON), DAEMON_BEFORE);
    assert_eq!(h.backups(DAEMON_JSON).len(), 1, "the second backup (mighook's own first version) stays");
}

#[test]
fn undo_refuses_when_the_file_was_edited_since_and_changes_nothing() {
    let h = Host::new();
    h.put(DAEMON_JSON, DAEMON_BEFORE);
    h.setup_ok("docker", &[]);
    let edited = h.text(DAEMON_JSON).replace("journald", "json-file");
    h.put(DAEMON_JSON, &edited);
    let before = h.snapshot();
    let out = h.setup("docker", &["--undo"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "undo over an edit must fail");
    assert!(stderr.contains("was changed since `mighook setup docker` wrote it; nothing undone"), "{stderr}");
    assert!(stderr.contains("restore ") && stderr.contains(".mighook-backup-"), "{stderr}");
    assert_eq!(h.snapshot(), before, "a refused undo changed something");
}

#[test]
fn undo_leaves_a_link_the_admin_pointed_elsewhere() {
    let h = Host::new();
    h.setup_ok("docker", &[]);
    let theirs = h.bin("nvidia-container-runtime");
    fs::remove_file(&theirs).unwrap();
    std::os::unix::fs::symlink("/usr/bin/nvidia-container-runtime.real", &theirs).unwrap();
    let out = h.setup_ok("docker", &["--undo"]);
    assert_eq!(fs::read_link(&theirs).unwrap(), Path::new("/usr/bin/nvidia-container-runtime.real"));
    assert!(
        out.contains(&format!(
            "left link {}: it now points at /usr/bin/nvidia-container-runtime.real, not mighook",
            theirs.display()
        )),
        "{out}"
    );
    assert!(fs::symlink_metadata(h.bin("nvidia-container-runtime-hook")).is_err(), "setup's own link goes");
}

#[test]
fn undo_run_again_after_a_partial_restore_completes() {
    let h = Host::new();
    h.put(CONFIG_TOML, DEBIAN_CONFIG);
    h.setup_ok("containerd", &["--set-as-default"]);
    // An undo that put config.toml back and then failed: the file holds its backup, the rest is undone.
    let (backup, _) = h.backups(CONFIG_TOML).pop().unwrap();
    fs::copy(&backup, h.at(CONFIG_TOML)).unwrap();
    let out = h.setup_ok("containerd", &["--undo"]);
    assert!(
        out.contains(&format!("{}: already restored from {}", h.at(CONFIG_TOML).display(), backup.display())),
        "{out}"
    );
    assert!(out.ends_with("containerd: setup undone; restart containerd to drop the nvidia runtime\n"), "{out}");
    assert_eq!(h.text(CONFIG_TOML), DEBIAN_CONFIG);
    assert!(!h.at(DROPIN).exists());
    assert!(h.backups(CONFIG_TOML).is_empty(), "the backup is deleted once everything is undone");
}

#[test]
fn undo_without_a_setup_says_so() {
    let h = Host::new();
    let out = h.setup_ok("crio", &["--undo"]);
    assert!(out.starts_with("crio: nothing to undo (no "), "{out}");
}

#[test]
fn undo_dry_run_changes_nothing() {
    let h = Host::new();
    h.put(DAEMON_JSON, DAEMON_BEFORE);
    h.setup_ok("docker", &[]);
    let before = h.snapshot();
    let out = h.setup_ok("docker", &["--undo", "--dry-run"]);
    assert!(out.contains(&format!("would restore {} from ", h.at(DAEMON_JSON).display())), "{out}");
    assert!(out.ends_with("dry run: nothing changed\n"), "{out}");
    assert_eq!(h.snapshot(), before);
}

// ---------------------------------------------------------------------------
// --set-as-default, and containerd's CDI

#[test]
fn docker_set_as_default_sets_default_runtime_then_is_idempotent() {
    let h = Host::new();
    h.put(DAEMON_JSON, DAEMON_BEFORE);
    h.setup_ok("docker", &["--set-as-default"]);
    let after: Value = serde_json::from_str(&h.text(DAEMON_JSON)).unwrap();
    assert_eq!(after["default-runtime"], "nvidia");
    assert_eq!(after["runtimes"]["crun"]["path"], "/usr/bin/crun");
    assert_idempotent_with(&h, "docker", &["--set-as-default"]);
}

#[test]
fn docker_set_as_default_on_a_registered_runtime_adds_only_the_default() {
    let h = Host::new();
    h.put(DAEMON_JSON, DAEMON_BEFORE);
    h.setup_ok("docker", &[]);
    let registered = h.text(DAEMON_JSON);
    h.setup_ok("docker", &["--set-as-default"]);
    let mut want: Value = serde_json::from_str(&registered).unwrap();
    want.as_object_mut().unwrap().insert("default-runtime".into(), json!("nvidia"));
    assert_eq!(serde_json::from_str::<Value>(&h.text(DAEMON_JSON)).unwrap(), want);
}

#[test]
fn containerd_set_as_default_names_nvidia_in_the_cri_plugin() {
    let h = Host::new();
    h.put(CONFIG_TOML, DEBIAN_CONFIG);
    h.setup_ok("containerd", &["--set-as-default"]);
    let d = toml_at(&h.text(DROPIN));
    let cri = &d["plugins"]["io.containerd.grpc.v1.cri"];
    assert_eq!(cri["containerd"]["default_runtime_name"].as_str(), Some("nvidia"));
    assert_eq!(cri["containerd"]["runtimes"]["runc"]["runtime_type"].as_str(), Some("io.containerd.runc.v2"));
    assert_idempotent_with(&h, "containerd", &["--set-as-default"]);
    if let Some(dump) = containerd_dump(&h.at(CONFIG_TOML)) {
        let c = &dump["plugins"]["io.containerd.grpc.v1.cri"]["containerd"];
        assert_eq!(c["default_runtime_name"].as_str(), Some("nvidia"), "containerd's own merged view");
    }
}

#[test]
fn containerd_version_3_set_as_default() {
    let h = Host::new();
    h.put(CONFIG_TOML, "version = 3\n");
    h.setup_ok("containerd", &["--set-as-default"]);
    let d = toml_at(&h.text(DROPIN));
    let c = &d["plugins"]["io.containerd.cri.v1.runtime"]["containerd"];
    assert_eq!(c["default_runtime_name"].as_str(), Some("nvidia"));
}

#[test]
fn containerd_1_7_gets_enable_cdi() {
    let h = Host::new();
    h.put(CONFIG_TOML, DEBIAN_CONFIG);
    let bin = fake_containerd("v1.7.24");
    h.setup_with_path("containerd", bin.path(), &[]);
    let d = toml_at(&h.text(DROPIN));
    assert_eq!(d["plugins"]["io.containerd.grpc.v1.cri"]["enable_cdi"].as_bool(), Some(true));
}

#[test]
fn containerd_1_6_gets_no_enable_cdi_and_a_note() {
    let h = Host::new();
    h.put(CONFIG_TOML, DEBIAN_CONFIG);
    let bin = fake_containerd("1.6.20~ds1");
    let out = h.setup_with_path("containerd", bin.path(), &[]);
    let d = toml_at(&h.text(DROPIN));
    assert_eq!(d["plugins"]["io.containerd.grpc.v1.cri"].get("enable_cdi"), None);
    assert!(out.contains("note: containerd 1.6 has no CDI support (1.7 and later)"), "{out}");
}

#[test]
fn containerd_keeps_an_admins_enable_cdi_false() {
    let h = Host::new();
    h.put(CONFIG_TOML, "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\nenable_cdi = false\n");
    let bin = fake_containerd("v1.7.24");
    h.setup_with_path("containerd", bin.path(), &[]);
    let d = toml_at(&h.text(DROPIN));
    assert_eq!(d["plugins"]["io.containerd.grpc.v1.cri"]["enable_cdi"].as_bool(), Some(false));
}

#[test]
fn containerd_version_3_states_enable_cdi() {
    let h = Host::new();
    h.put(CONFIG_TOML, "version = 3\n");
    h.setup_ok("containerd", &[]);
    let d = toml_at(&h.text(DROPIN));
    assert_eq!(d["plugins"]["io.containerd.cri.v1.runtime"]["enable_cdi"].as_bool(), Some(true));
}

#[test]
fn crio_set_as_default_sets_default_runtime() {
    let h = Host::new();
    h.setup_ok("crio", &["--set-as-default"]);
    let d = toml_at(&h.text(CRIO_DROPIN));
    assert_eq!(d["crio"]["runtime"]["default_runtime"].as_str(), Some("nvidia"));
    assert_idempotent_with(&h, "crio", &["--set-as-default"]);
}

#[test]
fn crio_dropin_hands_the_shim_the_config_file_through_monitor_env() {
    let h = Host::new();
    h.put("/etc/mighook/config.toml", "driver-root = \"/run/nvidia/driver\"\n");
    let config = h.at("/etc/mighook/config.toml");
    h.setup_ok("crio", &["--config", config.to_str().unwrap()]);
    let d = toml_at(&h.text(CRIO_DROPIN));
    let env: Vec<&str> = d["crio"]["runtime"]["runtimes"]["nvidia"]["monitor_env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(env[0], "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    assert_eq!(env[1], format!("MIGHOOK_CONFIG={}", config.display()));
    assert_eq!(env.len(), 2);
}

#[test]
fn podman_refuses_set_as_default() {
    let h = Host::new();
    let out = h.setup("podman", &["--set-as-default"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.starts_with("mighook: --set-as-default: podman has no default runtime"), "{stderr}");
}

// ---------------------------------------------------------------------------
// Shipped files: packaging/config.toml is the default config, documented key by key.

#[test]
fn packaged_config_lists_every_key_with_its_default() {
    let text = fs::read_to_string(support::workspace_root().join("packaging/config.toml")).unwrap();
    // Every key is commented out (`#key = value`; prose is `# ...`); uncommented, the file must
    // parse and change nothing but the example log file.
    let key_line =
        |l: &str| l.strip_prefix('#').filter(|r| r.starts_with(|c: char| c.is_ascii_lowercase())).map(str::to_string);
    let uncommented: String = text.lines().filter_map(key_line).map(|l| format!("{l}\n")).collect();
    let keys: Vec<&str> = uncommented.lines().map(|l| l.split(" = ").next().unwrap()).collect();
    // Every field of `ConfigFile` (src/config.rs), in kebab-case, is one of them.
    let source = fs::read_to_string(support::workspace_root().join("src/config.rs")).unwrap();
    let fields = source.split("pub struct ConfigFile {").nth(1).unwrap().split("\n}").next().unwrap();
    let mut declared: Vec<String> = fields
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub ")?.split_once(':').map(|(name, _)| name.replace('_', "-")))
        .collect();
    let mut listed: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    declared.sort();
    listed.sort();
    assert_eq!(listed, declared, "packaging/config.toml must list every key of ConfigFile");
    let file = mighook::config::ConfigFile::parse(&uncommented).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (with, without) = (dir.path().join("with.toml"), dir.path().join("without.toml"));
    fs::write(&with, &uncommented).unwrap();
    fs::write(&without, "").unwrap();
    let resolve = |p: &Path| {
        let flags = mighook::settings::GlobalFlags { config: Some(p.to_path_buf()), ..Default::default() };
        let mut s = mighook::settings::Settings::resolve(&flags, &mighook::settings::OwnEnv::default()).unwrap();
        s.config_path = None;
        s.log_file = None;
        format!("{s:?}")
    };
    assert_eq!(resolve(&with), resolve(&without), "packaging/config.toml must show the defaults");
    assert!(file.low_level_runtime.is_some() && file.log_file.is_some());
    let doc = fs::read_to_string(support::workspace_root().join("docs/CONFIG.md")).unwrap();
    for k in keys {
        assert!(doc.contains(&format!("### `{k}`")), "docs/CONFIG.md has no section for {k}");
    }
}
