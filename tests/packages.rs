//! The packages and the installer image, used as an admin uses them.
//!
//! `scripts/package.sh` builds the .deb and the .rpm once per test run. The
//! .deb is installed on this machine with `dpkg -i`; the installed
//! `/usr/bin/mighook setup docker` registers the runtime in the host's
//! `/etc/docker/daemon.json`; dockerd started on that file runs
//! `docker run --runtime=nvidia` on the simulated node (exactly MIG 0:1: ENXIO
//! on its nodes, EPERM on the neighbours); `dpkg -r` must then leave
//! daemon.json byte for byte as it was (the package's prerm runs
//! `mighook setup --undo docker`) and `dpkg -P` every file gone. The .rpm is
//! checked with `rpm -qlp` against the same layout. The installer image is
//! built `FROM scratch` by the docker engine here, with no registry, and run
//! against fake host roots for containerd and CRI-O, install and uninstall.
//!
//! The .deb test changes the host (dpkg database, /usr/bin, /etc/docker): run
//! it under the e2e lock; it refuses to run where mighook or NVIDIA's toolkit
//! is installed, and puts daemon.json back whatever happens. Root, dpkg, rpm
//! and the engines are required (scripts/install-deps.sh); without them each
//! test prints `SKIPPED:` and on CI it fails.

// Not every engine helper re-export is used here.
#[allow(unused_imports)]
#[path = "support/engines.rs"]
mod engines;
mod support;

use engines::{DAEMON_PATH, Dockerd, MighookInstall, assert_exactly_mig_0_1, mig_probe_argv, probe_output};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use support::SimNode;

const TOPOLOGY: &str = "a100x8";

/// What both packages install, as packaging/README.md lists it (systemd units apart: the
/// .deb puts them in Debian's /lib/systemd/system, the .rpm in /usr/lib/systemd/system).
const FILES: [&str; 15] = [
    "/usr/bin/mighook",
    "/etc/mighook/config.toml",
    "/usr/share/mighook/hooks/containerd-99-mighook.toml",
    "/usr/share/mighook/hooks/crio-99-mighook.toml",
    "/usr/share/mighook/hooks/docker-daemon.json",
    "/usr/share/mighook/hooks/oci-mighook-hook.json",
    "/usr/share/doc/mighook/README.md",
    "/usr/share/doc/mighook/CONFIG.md",
    "/usr/share/doc/mighook/HOOK.md",
    "/usr/share/doc/mighook/SECURITY.md",
    "/usr/share/doc/mighook/engines/containerd.md",
    "/usr/share/doc/mighook/engines/crio.md",
    "/usr/share/doc/mighook/engines/docker.md",
    "/usr/share/doc/mighook/engines/kubernetes.md",
    "/usr/share/doc/mighook/engines/podman.md",
];
const UNITS: [&str; 3] = ["mighook-cdi-refresh.path", "mighook-cdi-refresh.service", "mighook-cdi-refresh.timer"];
/// The argv[0] personalities, links to `mighook` next to it.
const LINKS: [&str; 3] = ["nvidia-container-runtime", "nvidia-container-runtime-hook", "nvidia-cdi-hook"];

fn run_ok(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(out.status.success(), "{what} failed: {}", support::runtime::describe(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// target/packages/{deb,rpm}, built by scripts/package.sh once per test binary.
fn packages() -> &'static (PathBuf, PathBuf) {
    static BUILT: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = support::workspace_root();
        run_ok(&mut Command::new(root.join("scripts/package.sh")), "scripts/package.sh");
        let find = |ext: &str| {
            fs::read_dir(root.join("target/packages"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| p.extension().is_some_and(|e| e == ext))
                .unwrap_or_else(|| panic!("scripts/package.sh made no .{ext}"))
        };
        (find("deb"), find("rpm"))
    })
}

// ---------------------------------------------------------------------------
// .rpm

#[test]
fn rpm_holds_the_documented_layout() {
    if !support::require_root_and(&["rpm", "cargo"]) {
        return;
    }
    let (_, rpm) = packages();
    let listed = run_ok(Command::new("rpm").arg("-qlp").arg(rpm), "rpm -qlp");
    let mut want: Vec<String> = FILES.iter().map(|f| f.to_string()).collect();
    want.extend(UNITS.iter().map(|u| format!("/usr/lib/systemd/system/{u}")));
    want.push("/usr/share/doc/mighook/PERFORMANCE.md".into());
    want.sort();
    let mut got: Vec<String> = listed.lines().map(str::to_string).collect();
    got.sort();
    assert_eq!(got, want, "rpm -qlp");
    let config = run_ok(Command::new("rpm").arg("-qcp").arg(rpm), "rpm -qcp");
    assert_eq!(config, "/etc/mighook/config.toml\n", "the config file is the one %config file");
    // cargo-generate-rpm cannot package links: %post makes them, %preun undoes setup, %postun removes them.
    let scripts = run_ok(Command::new("rpm").args(["-qp", "--scripts"]).arg(rpm), "rpm --scripts");
    assert!(scripts.contains("for name in nvidia-container-runtime nvidia-container-runtime-hook nvidia-cdi-hook; do"));
    assert!(scripts.contains("ln -s mighook \"/usr/bin/$name\""), "{scripts}");
    assert!(scripts.contains("/usr/bin/mighook setup --undo \"$engine\""), "{scripts}");
    let conflicts = run_ok(Command::new("rpm").args(["-qp", "--conflicts"]).arg(rpm), "rpm --conflicts");
    assert_eq!(conflicts, "nvidia-container-toolkit\nnvidia-container-toolkit-base\n");
}

// ---------------------------------------------------------------------------
// .deb

const DAEMON_JSON: &str = "/etc/docker/daemon.json";
/// What the host's daemon.json holds before the package: formatted as no JSON writer would,
/// so only a byte-for-byte restore gets it back.
const DAEMON_BEFORE: &str = "{ \"log-level\":\"info\",\n\n  \"debug\" : false }\n";

/// The host's daemon.json as it was, put back (and mighook purged) whatever the test did.
struct HostGuard {
    daemon_json: Option<Vec<u8>>,
}

impl Drop for HostGuard {
    fn drop(&mut self) {
        if dpkg_status("mighook").is_some() {
            let _ = Command::new("dpkg").args(["-P", "mighook"]).output();
        }
        match &self.daemon_json {
            Some(bytes) => fs::write(DAEMON_JSON, bytes).unwrap(),
            None => {
                let _ = fs::remove_file(DAEMON_JSON);
            }
        }
        for e in fs::read_dir("/etc/docker").into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().starts_with("daemon.json.mighook-backup-") {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

/// dpkg's status of a package (`install ok installed`, `deinstall ok config-files`), if it knows it.
fn dpkg_status(package: &str) -> Option<String> {
    let out = Command::new("dpkg-query").args(["-W", "-f=${Status}", package]).output().ok()?;
    let s = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.success() && !s.is_empty() && !s.starts_with("unknown")).then_some(s)
}

fn docker_run_probe(dockerd: &Dockerd, args: &[&str]) -> support::ProbeOutput {
    let argv = mig_probe_argv();
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let out = dockerd.run(&[args, &argv].concat());
    assert!(
        out.status.success(),
        "docker run failed\n{}\n--- dockerd log:\n{}",
        support::runtime::describe(&out),
        dockerd.log()
    );
    probe_output(&out, "docker --runtime=nvidia (from the .deb)")
}

#[test]
fn deb_install_setup_docker_run_and_remove_restores_daemon_json() {
    let tools = ["dpkg", "dpkg-query", "cargo", "dockerd", "docker", "containerd", "runc", "gcc", "busybox", "tar"];
    if !support::require_root_and(&tools) {
        return;
    }
    for (what, taken) in [
        ("mighook", dpkg_status("mighook").is_some()),
        ("nvidia-container-toolkit", dpkg_status("nvidia-container-toolkit").is_some()),
        ("/usr/bin/nvidia-container-runtime", fs::symlink_metadata("/usr/bin/nvidia-container-runtime").is_ok()),
    ] {
        if taken {
            support::skip(&format!("{what} is already on this machine: the test installs and purges mighook"));
            return;
        }
    }
    let (deb, _) = packages();
    let _one = engines::DOCKERD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let guard = HostGuard { daemon_json: fs::read(DAEMON_JSON).ok() };
    fs::create_dir_all("/etc/docker").unwrap();
    fs::write(DAEMON_JSON, DAEMON_BEFORE).unwrap();

    run_ok(Command::new("dpkg").arg("-i").arg(deb), "dpkg -i");
    let listed = run_ok(Command::new("dpkg").args(["-L", "mighook"]), "dpkg -L");
    for f in FILES {
        assert!(listed.lines().any(|l| l == f), "dpkg -L lacks {f}:\n{listed}");
    }
    for u in UNITS {
        assert!(listed.lines().any(|l| l == format!("/lib/systemd/system/{u}")), "dpkg -L lacks {u}");
    }
    for name in LINKS {
        let link = Path::new("/usr/bin").join(name);
        assert_eq!(fs::read_link(&link).unwrap(), Path::new("mighook"), "{}", link.display());
        assert!(listed.lines().any(|l| Path::new(l) == link), "dpkg -L lacks {}", link.display());
    }
    let conffiles = run_ok(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", "mighook"]), "dpkg-query");
    assert!(conffiles.trim_start().starts_with("/etc/mighook/config.toml "), "conffiles: {conffiles}");

    let setup = run_ok(Command::new("/usr/bin/mighook").args(["setup", "docker"]), "mighook setup docker");
    assert!(setup.contains("wrote /etc/docker/daemon.json (backup: "), "{setup}");
    let registered: serde_json::Value = serde_json::from_str(&fs::read_to_string(DAEMON_JSON).unwrap()).unwrap();
    assert_eq!(registered["runtimes"]["nvidia"]["path"], "/usr/bin/nvidia-container-runtime");
    assert_eq!(registered["log-level"], "info");

    {
        // dockerd "restarted" on the host's daemon.json; the simulated node through mighook's config.
        let node = SimNode::new(TOPOLOGY);
        let sim = MighookInstall::new(&node);
        let env = [
            ("PATH".to_string(), DAEMON_PATH.to_string()),
            ("MIGHOOK_CONFIG".to_string(), sim.config().display().to_string()),
        ];
        let dockerd = Dockerd::start_with_config_file(Path::new(DAEMON_JSON), &env);
        let image = dockerd.import_busybox();
        let p = docker_run_probe(&dockerd, &["--runtime=nvidia", "-e", "NVIDIA_VISIBLE_DEVICES=0:1", &image]);
        assert_exactly_mig_0_1("docker --runtime=nvidia (from the .deb)", &p);
    }

    let removed = Command::new("dpkg").args(["-r", "mighook"]).output().unwrap();
    assert!(removed.status.success(), "dpkg -r: {}", support::runtime::describe(&removed));
    assert_eq!(fs::read_to_string(DAEMON_JSON).unwrap(), DAEMON_BEFORE, "dpkg -r must restore daemon.json");
    let backups: Vec<_> = fs::read_dir("/etc/docker")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("mighook-backup"))
        .collect();
    assert!(backups.is_empty(), "the backup was put back, not left: {backups:?}");
    assert!(!Path::new("/usr/bin/mighook").exists());
    for name in LINKS {
        assert!(fs::symlink_metadata(Path::new("/usr/bin").join(name)).is_err(), "{name} left after dpkg -r");
    }
    assert!(!Path::new("/var/lib/mighook/setup/docker.json").exists(), "the setup record is gone with the undo");
    assert!(Path::new("/etc/mighook/config.toml").exists(), "dpkg -r keeps the conffile");
    run_ok(Command::new("dpkg").args(["-P", "mighook"]), "dpkg -P");
    assert!(!Path::new("/etc/mighook").exists() && !Path::new("/var/lib/mighook").exists());
    assert_eq!(dpkg_status("mighook"), None);
    drop(guard);
}

// ---------------------------------------------------------------------------
// The installer image

/// Every file and link under `dir` (not directories), with content or link target.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            let m = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            if m.is_dir() {
                walk(root, &p, out);
            } else if m.file_type().is_symlink() {
                out.insert(rel, fs::read_link(&p).unwrap().into_os_string().into_encoded_bytes());
            } else {
                out.insert(rel, fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn text(host: &Path, abs: &str) -> String {
    fs::read_to_string(host.join(abs.trim_start_matches('/'))).unwrap_or_else(|e| panic!("{abs}: {e}"))
}

/// `docker run` of the installer with the fake host root at /host; returns stdout.
fn installer(dockerd: &Dockerd, image: &str, host: &Path, args: &[&str]) -> String {
    let volume = format!("{}:/host", host.display());
    let out: Output = dockerd.run(&[&["-v", &volume, image][..], args].concat());
    assert!(out.status.success(), "installer {args:?}: {}\n{}", support::runtime::describe(&out), dockerd.log());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const DEBIAN_CONTAINERD: &str = "version = 2\n\n[plugins]\n  [plugins.\"io.containerd.grpc.v1.cri\"]\n    [plugins.\"io.containerd.grpc.v1.cri\".cni]\n      bin_dir = \"/usr/lib/cni\"\n";

#[test]
fn installer_image_builds_from_scratch_and_installs_and_uninstalls_on_a_host_root() {
    if !support::require_root_and(&["dockerd", "docker", "containerd", "runc", "ldd", "busybox"]) {
        return;
    }
    let _one = engines::DOCKERD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let work = tempfile::Builder::new().prefix("mighook-installer").tempdir().unwrap();
    let context = work.path().join("context");
    let script = support::workspace_root().join("packaging/kubernetes/image-context.sh");
    run_ok(Command::new(&script).arg(support::mighook_bin()).arg(&context), "image-context.sh");
    let dockerd = Dockerd::start(&[], &[("PATH".into(), DAEMON_PATH.into())]);
    let image = "mighook-installer:e2e";
    // The classic builder: FROM scratch needs no registry and no BuildKit.
    run_ok(dockerd.docker().env("DOCKER_BUILDKIT", "0").args(["build", "-t", image]).arg(&context), "docker build");

    // containerd (the image's default CMD).
    let host = work.path().join("host-containerd");
    fs::create_dir_all(host.join("etc/containerd")).unwrap();
    fs::write(host.join("etc/containerd/config.toml"), DEBIAN_CONTAINERD).unwrap();
    fs::create_dir_all(host.join("usr/local/bin")).unwrap();
    fs::write(host.join("usr/local/bin/site-tool"), "#!/bin/sh\n").unwrap();
    let before = files(&host);
    let out = installer(&dockerd, image, &host, &[]);
    assert!(out.contains("installed /usr/local/bin/mighook\n"), "{out}");
    assert_eq!(fs::read(host.join("usr/local/bin/mighook")).unwrap(), fs::read(support::mighook_bin()).unwrap());
    for name in LINKS {
        assert_eq!(fs::read_link(host.join("usr/local/bin").join(name)).unwrap(), Path::new("mighook"), "{name}");
    }
    assert_eq!(text(&host, "/etc/mighook/config.toml"), mighook::install::NODE_CONFIG);
    let hook: serde_json::Value =
        serde_json::from_str(&text(&host, "/usr/share/mighook/hooks/oci-mighook-hook.json")).unwrap();
    assert_eq!(hook["hook"]["path"], "/usr/local/bin/mighook", "snippets name the host's paths");
    // The node's containerd config names host paths, never /host/...
    let main = text(&host, "/etc/containerd/config.toml");
    assert_eq!(
        main,
        DEBIAN_CONTAINERD.replacen("version = 2\n", "version = 2\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n", 1)
    );
    let dropin: toml::Table = text(&host, "/etc/containerd/conf.d/99-mighook.toml").parse().unwrap();
    let cri = &dropin["plugins"]["io.containerd.grpc.v1.cri"];
    assert_eq!(
        cri["containerd"]["runtimes"]["nvidia"]["options"]["BinaryName"].as_str(),
        Some("/usr/local/bin/nvidia-container-runtime")
    );
    assert_eq!(cri["cni"]["bin_dir"].as_str(), Some("/usr/lib/cni"));
    // A DaemonSet pod restart installs again: the same files, no second backup.
    let again = installer(&dockerd, image, &host, &["--engine", "containerd"]);
    assert!(again.contains("containerd: already configured, nothing changed"), "{again}");
    let out = installer(&dockerd, image, &host, &["--uninstall"]);
    assert!(out.contains("restored /etc/containerd/config.toml from "), "{out}");
    assert_eq!(files(&host), before, "--uninstall must leave the host root's files as they were");

    // CRI-O: the handler's monitor_env names the installed config file.
    let host = work.path().join("host-crio");
    fs::create_dir_all(host.join("etc/crio")).unwrap();
    fs::write(host.join("etc/crio/crio.conf"), "[crio.runtime]\ndefault_runtime = \"crun\"\n").unwrap();
    let before = files(&host);
    installer(&dockerd, image, &host, &["--engine", "crio"]);
    let dropin: toml::Table = text(&host, "/etc/crio/crio.conf.d/99-mighook.toml").parse().unwrap();
    let nvidia = &dropin["crio"]["runtime"]["runtimes"]["nvidia"];
    assert_eq!(nvidia["runtime_path"].as_str(), Some("/usr/local/bin/nvidia-container-runtime"));
    assert_eq!(nvidia["monitor_env"][1].as_str(), Some("MIGHOOK_CONFIG=/etc/mighook/config.toml"));
    let hook: serde_json::Value =
        serde_json::from_str(&text(&host, "/usr/share/containers/oci/hooks.d/oci-mighook-hook.json")).unwrap();
    assert_eq!(hook["hook"]["path"], "/usr/local/bin/mighook");
    installer(&dockerd, image, &host, &["--uninstall"]);
    assert_eq!(files(&host), before, "--uninstall must leave the host root's files as they were");

    // A host where NVIDIA's runtime holds the name: refused, nothing written.
    let host = work.path().join("host-nvidia");
    fs::create_dir_all(host.join("usr/local/bin")).unwrap();
    fs::write(host.join("usr/local/bin/nvidia-container-runtime"), "#!/bin/sh\n# NVIDIA's\n").unwrap();
    let before = files(&host);
    let volume = format!("{}:/host", host.display());
    let refused = dockerd.run(&["-v", &volume, image]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("is not a link to mighook (NVIDIA's own binary?)"), "{stderr}");
    assert_eq!(files(&host), before);
    let _ = dockerd.docker().args(["rmi", "-f", image]).output();
}

#[test]
fn daemonset_runs_the_image_entrypoint() {
    let root = support::workspace_root();
    let dockerfile = fs::read_to_string(root.join("packaging/kubernetes/Dockerfile")).unwrap();
    let manifest = fs::read_to_string(root.join("packaging/kubernetes/mighook-daemonset.yaml")).unwrap();
    let entrypoint = r#"["/usr/bin/mighook", "install", "--host-root", "/host"]"#;
    assert!(dockerfile.lines().any(|l| l == format!("ENTRYPOINT {entrypoint}")), "Dockerfile ENTRYPOINT");
    assert!(manifest.lines().any(|l| l.trim() == format!("command: {entrypoint}")), "the DaemonSet's install command");
    assert!(manifest.lines().any(|l| l.trim() == r#"args: ["--engine", "containerd"]"#), "the DaemonSet's engine");
}
