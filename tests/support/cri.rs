//! containerd's own CRI plugin, driven over its unix socket the way the kubelet drives it.
//!
//! [`CriContainerd`] is a private containerd (root, state, sockets and CNI dirs in a temp dir)
//! with the CRI plugin on. Its config is written the way an admin's node has it and then
//! `mighook setup containerd --config-root` adds the `nvidia` runtime handler, so the handler
//! the pods run under is exactly what setup writes. The sandbox ("pause") image is a static
//! `tests/e2e/pause.c` in an image of its own; it and the test image are imported with
//! `ctr -n k8s.io images import`, so no registry is involved. The CRI calls are the
//! kubelet's: `RunPodSandbox` (host network, a cgroup parent of its own), `CreateContainer`
//! with the device plugin's answer applied ([`Allocation`]), `StartContainer`, `ExecSync`,
//! `StopPodSandbox`, `RemovePodSandbox`, through the `k8s-cri` crate's CRI v1 client
//! (containerd 1.6 serves v1 and v1alpha2).
//!
//! `Drop` stops and removes every pod, stops containerd, unmounts whatever is still mounted
//! under the temp dir (a sandbox's `/dev/shm`, a rootfs) and removes the pods' cgroups, also
//! when the test panicked half-way.

#![allow(dead_code)]

use crate::engines;
use crate::support::{self, SimNode};
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;
use tonic::transport::Channel;

/// The runtime handler `mighook setup containerd` registers (a RuntimeClass's `handler`).
pub const HANDLER: &str = "nvidia";

/// The sandbox image, made by [`pause_oci_archive`] and set as containerd's `sandbox_image`.
pub const PAUSE_IMAGE: &str = "docker.io/library/mighook-pause:e2e";

/// Seconds an `ExecSync` may take.
const EXEC_TIMEOUT_S: i64 = 60;

// ---------------------------------------------------------------------------
// What the device plugin answers (shared/reference/driver-user-space.md §5).

/// `DEVICE_LIST_STRATEGY` of NVIDIA's k8s-device-plugin: how an allocation reaches the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// `Envs["NVIDIA_VISIBLE_DEVICES"] = "<id>,<id>,..."`.
    Envvar,
    /// `Envs["NVIDIA_VISIBLE_DEVICES"] = "/var/run/nvidia-container-devices"` and per id a
    /// `Mount{HostPath: "/dev/null", ContainerPath: "/var/run/nvidia-container-devices/<id>"}`.
    VolumeMounts,
    /// `Annotations["cdi.k8s.io/nvidia-device-plugin_<random uuid>"] = "k8s.device-plugin.nvidia.com/gpu=<id>,..."`
    /// and nothing else (all configured strategies are CDI ones).
    CdiAnnotations,
}

impl Strategy {
    /// The plugin's flag value.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Envvar => "envvar",
            Strategy::VolumeMounts => "volume-mounts",
            Strategy::CdiAnnotations => "cdi-annotations",
        }
    }
}

/// The plugin's CDI vendor/class: its device names are `k8s.device-plugin.nvidia.com/gpu=<id>`.
pub const PLUGIN_CDI_KIND: &str = "k8s.device-plugin.nvidia.com/gpu";

/// One `ContainerAllocateResponse`, as the kubelet applies it to the container's CRI config.
#[derive(Debug, Clone, Default)]
pub struct Allocation {
    pub envs: Vec<(String, String)>,
    /// (container path, host path): the plugin's mounts are read-write.
    pub mounts: Vec<(String, String)>,
    pub annotations: Vec<(String, String)>,
}

impl Allocation {
    /// What the plugin answers for `ids` (its `DEVICE_ID_STRATEGY` ids) under `strategy`,
    /// with none of the optional flags (GDS, MOFED, GDRCopy, MPS, IMEX, PASS_DEVICE_SPECS).
    pub fn of(strategy: Strategy, ids: &[&str]) -> Allocation {
        match strategy {
            Strategy::Envvar => Allocation { envs: vec![visible(&ids.join(","))], ..Default::default() },
            Strategy::VolumeMounts => Allocation {
                envs: vec![visible("/var/run/nvidia-container-devices")],
                mounts: ids
                    .iter()
                    .map(|id| (format!("/var/run/nvidia-container-devices/{id}"), "/dev/null".to_string()))
                    .collect(),
                ..Default::default()
            },
            Strategy::CdiAnnotations => {
                let devices: Vec<String> = ids.iter().map(|id| format!("{PLUGIN_CDI_KIND}={id}")).collect();
                // The key's suffix is a fresh UUID per response, not a device id.
                let key = format!("cdi.k8s.io/nvidia-device-plugin_{}", random_uuid());
                Allocation { annotations: vec![(key, devices.join(","))], ..Default::default() }
            }
        }
    }
}

impl Allocation {
    /// The kubelet's merge of the answers for several resources of one container (its device
    /// manager's `deviceRunContainerOptions`): envs and annotations by name and mounts by
    /// container path, the first answer winning (a conflicting later one is skipped with an error log).
    pub fn merged(answers: &[Allocation]) -> Allocation {
        fn put<K: PartialEq + Clone, V: Clone>(into: &mut Vec<(K, V)>, (k, v): &(K, V)) {
            if !into.iter().any(|(have, _)| have == k) {
                into.push((k.clone(), v.clone()));
            }
        }
        let mut out = Allocation::default();
        for a in answers {
            a.envs.iter().for_each(|e| put(&mut out.envs, e));
            a.mounts.iter().for_each(|m| put(&mut out.mounts, m));
            a.annotations.iter().for_each(|an| put(&mut out.annotations, an));
        }
        out
    }
}

fn visible(value: &str) -> (String, String) {
    ("NVIDIA_VISIBLE_DEVICES".to_string(), value.to_string())
}

fn random_uuid() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/uuid").expect("read a random uuid").trim().to_string()
}

// ---------------------------------------------------------------------------
// The pause image.

/// `target/e2e/pause-<hash of source>`, compiled with `gcc -static -O2` when missing.
fn pause_binary() -> PathBuf {
    let src_path = support::workspace_root().join("tests/e2e/pause.c");
    let src = std::fs::read(&src_path).expect("read tests/e2e/pause.c");
    let bin = support::rootfs::e2e_dir().join(format!("pause-{:016x}", support::rootfs::fnv1a(&src)));
    if !bin.exists() {
        let tmp = bin.with_extension(format!("tmp-{}", std::process::id()));
        engines::ok(
            Command::new(support::tool("gcc")).args(["-static", "-O2", "-Wall", "-o"]).arg(&tmp).arg(&src_path),
            "gcc -static pause.c",
        );
        std::fs::rename(&tmp, &bin).unwrap();
    }
    bin
}

/// A one-layer OCI archive named [`PAUSE_IMAGE`]: `/pause` and the mount points runc needs.
pub fn pause_oci_archive() -> PathBuf {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        let bin = pause_binary();
        let stem = bin.file_name().unwrap().to_string_lossy().into_owned();
        let rootfs = tempfile::Builder::new().prefix("mighook-e2e-pause").tempdir().unwrap();
        for d in ["dev", "proc", "sys", "etc"] {
            std::fs::create_dir(rootfs.path().join(d)).unwrap();
        }
        std::fs::copy(&bin, rootfs.path().join("pause")).unwrap();
        let layer = engines::tar_of(rootfs.path(), &format!("layer-{stem}"));
        engines::oci_archive_with_cmd(&layer, PAUSE_IMAGE, &["/pause"])
    })
    .clone()
}

// ---------------------------------------------------------------------------
// containerd with CRI.

/// A pod as the kubelet made it: its sandbox id and the config every CreateContainer repeats.
pub struct Pod {
    pub id: String,
    pub name: String,
    config: cri::PodSandboxConfig,
}

/// A private containerd with the CRI plugin and the `nvidia` handler `mighook setup` wrote.
pub struct CriContainerd {
    dir: tempfile::TempDir,
    child: Child,
    rt: tokio::runtime::Runtime,
    client: Option<RuntimeServiceClient<Channel>>,
    /// Cgroup parent of every pod of this daemon (`/<name>`): removed on drop.
    cgroup_parent: String,
    /// What `mighook setup containerd` printed.
    pub setup_output: String,
}

impl CriContainerd {
    /// Writes mighook's config (`node`'s roots, runc, then `policy`: more `key = value` lines),
    /// containerd's config, runs `mighook setup containerd` on it, starts containerd with
    /// `MIGHOOK_CONFIG` in its environment (its shims and so the runtime handler inherit it)
    /// and imports the pause image.
    pub fn start(node: &SimNode, policy: &str) -> CriContainerd {
        let dir = tempfile::Builder::new().prefix("mighook-e2e-cri").tempdir().unwrap();
        let d = dir.path();
        // The install: /usr/bin/mighook of a host, here <dir>/bin/mighook.
        std::fs::create_dir(d.join("bin")).unwrap();
        std::os::unix::fs::symlink(support::mighook_bin(), d.join("bin/mighook")).unwrap();
        let nvml = match node.driver_layout() {
            Some(_) => format!("driver-root = \"{}\"\n", node.driver_root().display()),
            None => format!("nvml-lib = \"{}\"\n", node.nvml_lib().display()),
        };
        let mighook_config = d.join("mighook.toml");
        std::fs::write(
            &mighook_config,
            format!(
                "{nvml}proc-root = \"{}\"\ndev-root = \"{}\"\nlow-level-runtime = \"runc\"\n{policy}",
                node.proc_root().display(),
                node.dev_root().display()
            ),
        )
        .unwrap();

        // The node's containerd config before mighook: private dirs, CRI settings this host needs.
        let etc = d.join("host/etc/containerd");
        std::fs::create_dir_all(&etc).unwrap();
        for sub in ["cni/bin", "cni/net.d", "logs"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let config = format!(
            "version = 2\nroot = \"{0}/root\"\nstate = \"{0}/state\"\n\
             [grpc]\n  address = \"{0}/containerd.sock\"\n[ttrpc]\n  address = \"{0}/containerd.sock.ttrpc\"\n\
             [debug]\n  address = \"{0}/debug.sock\"\n\
             [plugins.\"io.containerd.grpc.v1.cri\"]\n\
             \x20 sandbox_image = \"{PAUSE_IMAGE}\"\n\
             \x20 # No AppArmor profile loader here; and without CAP_SYS_RESOURCE the sandbox's\n\
             \x20 # oom_score_adj (-998) cannot be set, so it is clamped to containerd's own.\n\
             \x20 disable_apparmor = true\n\
             \x20 restrict_oom_score_adj = true\n\
             \x20 [plugins.\"io.containerd.grpc.v1.cri\".containerd]\n\
             \x20   # Plain directory snapshots: no overlay mount can outlive a test.\n\
             \x20   snapshotter = \"native\"\n\
             \x20 [plugins.\"io.containerd.grpc.v1.cri\".cni]\n\
             \x20   bin_dir = \"{0}/cni/bin\"\n\
             \x20   conf_dir = \"{0}/cni/net.d\"\n",
            d.display()
        );
        std::fs::write(etc.join("config.toml"), config).unwrap();
        let setup = engines::ok(
            Command::new(support::mighook_bin())
                .args(["setup", "containerd", "--config-root"])
                .arg(d.join("host"))
                .arg("--binary")
                .arg(d.join("bin/mighook")),
            "mighook setup containerd",
        );
        let setup_output = String::from_utf8_lossy(&setup.stdout).into_owned();

        let log = d.join("containerd.log");
        let child = Command::new(support::tool("containerd"))
            .arg("--config")
            .arg(etc.join("config.toml"))
            .env("PATH", engines::DAEMON_PATH)
            .env("MIGHOOK_CONFIG", &mighook_config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn containerd");
        engines::containerd_started();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let cgroup_parent = support::unique_id("cri");
        let mut me = CriContainerd { dir, child, rt, client: None, cgroup_parent, setup_output };
        // `me` owns the child from here: a panic below still stops the daemon.
        let sock = me.dir.path().join("containerd.sock");
        engines::wait_ready("containerd", &log, &mut me.child, || {
            me_ctr(&sock).arg("version").output().is_ok_and(|o| o.status.success())
        });
        me.client = Some(me.connect(&sock));
        let version = me.rt.block_on(me.client().version(cri::VersionRequest { version: "v1".into() }));
        let version = version.unwrap_or_else(|e| panic!("CRI Version: {e}\n--- containerd log:\n{}", me.log()));
        assert_eq!(version.get_ref().runtime_api_version, "v1", "containerd's CRI API");
        me.import(&pause_oci_archive());
        me
    }

    fn connect(&self, sock: &Path) -> RuntimeServiceClient<Channel> {
        let sock = sock.to_path_buf();
        let connector = tower::service_fn(move |_: tonic::transport::Uri| {
            let sock = sock.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(sock).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        });
        // The URI is a placeholder: every connection goes to the socket.
        let endpoint = tonic::transport::Endpoint::from_static("http://[::]:50051").timeout(Duration::from_secs(120));
        let channel =
            self.rt.block_on(endpoint.connect_with_connector(connector)).expect("connect to containerd's CRI");
        RuntimeServiceClient::new(channel)
    }

    fn client(&self) -> RuntimeServiceClient<Channel> {
        self.client.clone().expect("connected")
    }

    /// `timeout ctr --address <sock> --namespace k8s.io`: CRI's namespace.
    pub fn ctr(&self) -> Command {
        me_ctr(&self.dir.path().join("containerd.sock"))
    }

    /// `ctr -n k8s.io images import --snapshotter native`: where CRI finds images (no registry).
    pub fn import(&self, archive: &Path) {
        engines::ok(self.ctr().args(["images", "import", "--snapshotter", "native"]).arg(archive), "ctr images import");
    }

    /// The daemon's log so far (shim and runtime errors land there).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    /// The temp dir everything of this daemon lives in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The drop-in `mighook setup containerd` wrote.
    pub fn dropin(&self) -> String {
        let path = self.dir.path().join("host/etc/containerd/conf.d/99-mighook.toml");
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn call<T>(
        &self,
        what: &str,
        fut: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> T {
        match self.rt.block_on(fut) {
            Ok(r) => r.into_inner(),
            Err(status) => panic!("CRI {what}: {status}\n--- containerd log (tail):\n{}", tail(&self.log(), 40)),
        }
    }

    /// `RunPodSandbox` on handler [`HANDLER`], host network, as the kubelet sends it for a pod
    /// with `runtimeClassName: nvidia` and `hostNetwork: true`.
    pub fn run_pod(&self, name: &str) -> Pod {
        let uid = random_uuid();
        let log_dir = self.dir.path().join("logs").join(&uid);
        std::fs::create_dir_all(&log_dir).unwrap();
        let labels = HashMap::from([
            ("io.kubernetes.pod.name".to_string(), name.to_string()),
            ("io.kubernetes.pod.namespace".to_string(), "default".to_string()),
            ("io.kubernetes.pod.uid".to_string(), uid.clone()),
        ]);
        let config = cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: name.into(),
                uid: uid.clone(),
                namespace: "default".into(),
                attempt: 0,
            }),
            // The kubelet sets no hostname for a host-network pod (runc refuses one without a UTS namespace).
            log_directory: log_dir.to_string_lossy().into_owned(),
            labels,
            annotations: HashMap::from([("kubernetes.io/config.source".to_string(), "api".to_string())]),
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: format!("/{}/pod{uid}", self.cgroup_parent),
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        network: cri::NamespaceMode::Node as i32,
                        pid: cri::NamespaceMode::Container as i32,
                        ipc: cri::NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let req = cri::RunPodSandboxRequest { config: Some(config.clone()), runtime_handler: HANDLER.into() };
        let id = self.call("RunPodSandbox", self.client().run_pod_sandbox(req)).pod_sandbox_id;
        Pod { id, name: name.to_string(), config }
    }

    /// `CreateContainer` + `StartContainer`: `image` running `command`, with `env` of the pod
    /// spec first and then the device plugin's `allocation` applied, as the kubelet does.
    pub fn start_container(
        &self,
        pod: &Pod,
        image: &str,
        command: &[&str],
        env: &[(&str, &str)],
        allocation: &Allocation,
    ) -> String {
        let name = "main";
        let mut envs: Vec<cri::KeyValue> =
            env.iter().map(|(k, v)| cri::KeyValue { key: k.to_string(), value: v.to_string() }).collect();
        envs.extend(allocation.envs.iter().map(|(k, v)| cri::KeyValue { key: k.clone(), value: v.clone() }));
        let mounts = allocation
            .mounts
            .iter()
            .map(|(container, host)| cri::Mount {
                container_path: container.clone(),
                host_path: host.clone(),
                readonly: false,
                ..Default::default()
            })
            .collect();
        let mut annotations = HashMap::from([
            ("io.kubernetes.container.restartCount".to_string(), "0".to_string()),
            ("io.kubernetes.container.terminationMessagePath".to_string(), "/dev/termination-log".to_string()),
        ]);
        annotations.extend(allocation.annotations.iter().cloned());
        let meta = pod.config.metadata.as_ref().unwrap();
        let config = cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata { name: name.into(), attempt: 0 }),
            image: Some(cri::ImageSpec { image: image.into(), ..Default::default() }),
            command: command.iter().map(|s| s.to_string()).collect(),
            envs,
            mounts,
            labels: HashMap::from([
                ("io.kubernetes.container.name".to_string(), name.to_string()),
                ("io.kubernetes.pod.name".to_string(), meta.name.clone()),
                ("io.kubernetes.pod.namespace".to_string(), meta.namespace.clone()),
                ("io.kubernetes.pod.uid".to_string(), meta.uid.clone()),
            ]),
            annotations,
            log_path: format!("{name}/0.log"),
            linux: Some(cri::LinuxContainerConfig {
                security_context: Some(cri::LinuxContainerSecurityContext {
                    namespace_options: pod
                        .config
                        .linux
                        .as_ref()
                        .and_then(|l| l.security_context.as_ref())
                        .and_then(|s| s.namespace_options.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let req = cri::CreateContainerRequest {
            pod_sandbox_id: pod.id.clone(),
            config: Some(config),
            sandbox_config: Some(pod.config.clone()),
        };
        let id = self.call("CreateContainer", self.client().create_container(req)).container_id;
        self.call(
            "StartContainer",
            self.client().start_container(cri::StartContainerRequest { container_id: id.clone() }),
        );
        id
    }

    /// `ExecSync`: (exit code, stdout, stderr).
    pub fn exec(&self, container: &str, cmd: &[&str]) -> (i32, String, String) {
        let req = cri::ExecSyncRequest {
            container_id: container.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: EXEC_TIMEOUT_S,
        };
        let r = self.call("ExecSync", self.client().exec_sync(req));
        (r.exit_code, String::from_utf8_lossy(&r.stdout).into_owned(), String::from_utf8_lossy(&r.stderr).into_owned())
    }

    /// `ContainerStatus`: the state (`ContainerState` as i32).
    pub fn container_state(&self, container: &str) -> i32 {
        let req = cri::ContainerStatusRequest { container_id: container.into(), verbose: false };
        self.call("ContainerStatus", self.client().container_status(req)).status.map_or(-1, |s| s.state)
    }

    /// Ids of the pod sandboxes containerd knows.
    pub fn pod_ids(&self) -> Vec<String> {
        let r =
            self.call("ListPodSandbox", self.client().list_pod_sandbox(cri::ListPodSandboxRequest { filter: None }));
        r.items.into_iter().map(|p| p.id).collect()
    }

    /// `StopPodSandbox` + `RemovePodSandbox`, as the kubelet does for a deleted pod.
    pub fn remove_pod(&self, id: &str) {
        let id = id.to_string();
        self.call(
            "StopPodSandbox",
            self.client().stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: id.clone() }),
        );
        self.call(
            "RemovePodSandbox",
            self.client().remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id }),
        );
    }
}

fn me_ctr(sock: &Path) -> Command {
    let mut c = engines::timed(&support::tool("ctr"));
    c.arg("--address").arg(sock).args(["--namespace", "k8s.io"]);
    c
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Mount points under `dir` in this mount namespace, deepest (last mounted) first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut found: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        // mountinfo escapes space, tab, newline and backslash as octal; our temp paths have none.
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect();
    found.reverse();
    found
}

impl Drop for CriContainerd {
    fn drop(&mut self) {
        // Pods a failed test left: stop and remove them through CRI, as the kubelet would.
        if let Some(client) = self.client.clone() {
            let list = self.rt.block_on(client.clone().list_pod_sandbox(cri::ListPodSandboxRequest { filter: None }));
            for pod in list.map(|r| r.into_inner().items).unwrap_or_default() {
                let id = pod.id;
                let _ = self.rt.block_on(
                    client.clone().stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: id.clone() }),
                );
                let _ = self
                    .rt
                    .block_on(client.clone().remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id }));
            }
        }
        self.client = None;
        engines::stop(&mut self.child, Duration::from_secs(10));
        // What containerd did not unmount (a sandbox's /dev/shm, a snapshot) must not outlive the test.
        for m in mounts_under(self.dir.path()) {
            let Ok(c) = std::ffi::CString::new(m.as_os_str().as_encoded_bytes()) else { continue };
            // Test-only code: a lazy unmount of a mount under our own temp dir.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
        engines::remove_cgroup_parents(&self.cgroup_parent);
        engines::remove_empty_dirs(Path::new("/run/containerd/runc/k8s.io"));
        engines::containerd_stopped();
    }
}
