//! Real container engines for the e2e tests: podman, containerd (+ ctr) and dockerd.
//!
//! Each engine gets private state in a temp dir (podman `--root/--runroot/--tmpdir`
//! and the `vfs` driver, so no overlay mount can outlive a test; containerd and
//! dockerd with their own config, sockets and data dirs), is started by the test
//! and stopped by `Drop` (SIGTERM, then SIGKILL after a bound), and every command
//! runs under `timeout`. Recipes: shared/reference/container-runtimes-here.md §6-§8.
//! The busybox image from [`super::rootfs`] is packed as a plain rootfs tar
//! (`podman import`, `docker import`) and as a one-layer OCI archive (`ctr images import`).

#![allow(dead_code)]

use crate::support::{self, ProbeOutput};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Seconds any one engine command may take (normal: well under 2 s).
pub const CMD_TIMEOUT_S: u32 = 120;

/// PATH for the daemons and their shims: runc lives in /usr/sbin.
pub const DAEMON_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `timeout -k 5 <CMD_TIMEOUT_S> <tool>`.
pub fn timed(tool: &Path) -> Command {
    let mut c = Command::new(support::tool("timeout"));
    c.args(["-k", "5", &CMD_TIMEOUT_S.to_string()]).arg(tool);
    c
}

/// Runs `cmd`, panicking with everything it printed unless it succeeds.
pub fn ok(cmd: &mut Command, what: &str) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: spawn: {e}"));
    assert!(out.status.success(), "{what} failed\n{}", support::runtime::describe(&out));
    out
}

/// A probe run that must succeed: the container's stdout parsed.
pub fn probe_output(out: &Output, what: &str) -> ProbeOutput {
    assert!(out.status.success(), "{what}: container run failed\n{}", support::runtime::describe(out));
    ProbeOutput::parse(&String::from_utf8_lossy(&out.stdout))
}

// ---------------------------------------------------------------------------
// What a `0:1` container must see (same node and topology facts as tests/e2e_hook.rs).

pub use crate::support::a100::{MIG_0_1_NODES, MIG_0_1_UUID};

/// Nodes the probe mknods itself: other GPUs, modeset, MIG config/monitor, the caps of
/// GPU 0's GI 7 and 9, a cap of another GPU. The devices cgroup must deny them all.
pub const NEIGHBOURS: [(&str, u32, u32); 9] = [
    ("/dev/nb-gpu0", 195, 0),
    ("/dev/nb-gpu3", 195, 3),
    ("/dev/nb-modeset", 195, 254),
    ("/dev/nb-mig-config", 508, 1),
    ("/dev/nb-mig-monitor", 508, 2),
    ("/dev/nb-cap336", 508, 336),
    ("/dev/nb-cap355", 508, 355),
    ("/dev/nb-cap480", 508, 480),
    ("/dev/nb-uvm2", 511, 2),
];

/// `openprobe` argv (with the program): listings first, then the six, then the mknod'ed neighbours.
pub fn mig_probe_argv() -> Vec<String> {
    let mut args = vec!["/bin/openprobe".to_string(), "ls:/dev".into(), "ls:/dev/nvidia-caps".into()];
    args.extend(MIG_0_1_NODES.iter().map(|(p, _, _)| p.to_string()));
    // 0444: the probe opens them O_RDONLY, so even a stray read-only grant would show as ENXIO.
    args.extend(NEIGHBOURS.iter().map(|(p, maj, min)| format!("mknod:{p}:{maj}:{min}:0444")));
    args
}

/// ENXIO (6) on each of the six (exists, allowed, no driver), EPERM (1) on each neighbour, nothing else NVIDIA.
pub fn assert_exactly_mig_0_1(label: &str, p: &ProbeOutput) {
    for (path, major, minor) in MIG_0_1_NODES {
        assert_eq!(
            p.summary_of(path),
            format!("c {major}:{minor} errno=6"),
            "{label}: {path} must exist and be allowed"
        );
    }
    for (path, major, minor) in NEIGHBOURS {
        assert_eq!(
            p.summary_of(path),
            format!("c {major}:{minor} errno=1"),
            "{label}: neighbour {path} must be denied"
        );
    }
    let nvidia: Vec<String> = p.ls_or_empty("/dev").into_iter().filter(|n| n.starts_with("nvidia")).collect();
    assert_eq!(nvidia, ["nvidia-caps", "nvidia-uvm", "nvidia-uvm-tools", "nvidia2", "nvidiactl"], "{label}: /dev");
    assert_eq!(p.ls("/dev/nvidia-caps"), ["nvidia-cap345", "nvidia-cap346"], "{label}: /dev/nvidia-caps");
}

// ---------------------------------------------------------------------------
// mighook as the engines call it.

/// A dir holding `nvidia-container-runtime` and `nvidia-container-runtime-hook`, both
/// symlinks to the built mighook (it picks its personality from argv[0]), plus
/// `config.toml` pointing at the simulated node.
pub struct MighookInstall {
    dir: tempfile::TempDir,
}

impl MighookInstall {
    pub fn new(node: &support::SimNode) -> MighookInstall {
        let dir = tempfile::Builder::new().prefix("mighook-e2e-bin").tempdir().unwrap();
        for name in ["nvidia-container-runtime", "nvidia-container-runtime-hook"] {
            std::os::unix::fs::symlink(support::mighook_bin(), dir.path().join(name)).unwrap();
        }
        // With a driver root, NVML is loaded through that root's own ld.so.cache, as on a real node.
        let nvml = match node.driver_layout() {
            Some(_) => format!("driver-root = \"{}\"\n", node.driver_root().display()),
            None => format!("nvml-lib = \"{}\"\n", node.nvml_lib().display()),
        };
        let config = format!(
            "{nvml}proc-root = \"{}\"\ndev-root = \"{}\"\nlow-level-runtime = \"runc\"\n",
            node.proc_root().display(),
            node.dev_root().display()
        );
        std::fs::write(dir.path().join("config.toml"), config).unwrap();
        MighookInstall { dir }
    }

    /// The dir to put first on a daemon's PATH.
    pub fn bin_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn runtime(&self) -> PathBuf {
        self.dir.path().join("nvidia-container-runtime")
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    /// Env for a daemon whose shims and hooks run mighook: PATH with the links first, MIGHOOK_CONFIG.
    pub fn daemon_env(&self) -> Vec<(String, String)> {
        vec![
            ("PATH".into(), format!("{}:{DAEMON_PATH}", self.bin_dir().display())),
            ("MIGHOOK_CONFIG".into(), self.config().display().to_string()),
        ]
    }
}

// ---------------------------------------------------------------------------
// Images.

/// `target/e2e/<stem>.tar`: `rootfs` as a plain tar, made once (`stem` must name the content).
pub fn tar_of(rootfs: &Path, stem: &str) -> PathBuf {
    let tar = support::rootfs::e2e_dir().join(format!("{stem}.tar"));
    if !tar.exists() {
        let tmp = tar.with_extension(format!("tmp-{}", std::process::id()));
        ok(Command::new(support::tool("tar")).arg("-C").arg(rootfs).arg("-cf").arg(&tmp).arg("."), "tar rootfs");
        std::fs::rename(&tmp, &tar).unwrap();
    }
    tar
}

/// `target/e2e/busybox-rootfs-<key>.tar`: the cached rootfs as a plain tar.
pub fn rootfs_tar() -> PathBuf {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        let rootfs = support::busybox_rootfs();
        let key = rootfs.file_name().unwrap().to_string_lossy().into_owned();
        tar_of(&rootfs, &format!("busybox-{key}"))
    })
    .clone()
}

/// `target/e2e/tar-glibc-<layout>-<key>.tar`: the cached glibc image of `layout` as a plain tar.
pub fn glibc_tar(layout: support::Layout) -> PathBuf {
    let image = support::glibc_image(layout);
    // Not `glibc-...`: that prefix is the image cache's own, which prunes it.
    tar_of(&image, &format!("tar-{}", image.file_name().unwrap().to_string_lossy()))
}

/// Image name of [`glibc_oci_archive`] (and of the imported glibc images).
pub fn glibc_image_name(layout: support::Layout) -> String {
    format!("docker.io/library/mighook-glibc-{}:e2e", layout.name())
}

/// The glibc image of `layout` as a one-layer OCI archive named [`glibc_image_name`].
pub fn glibc_oci_archive(layout: support::Layout) -> PathBuf {
    oci_archive_of(&glibc_tar(layout), &glibc_image_name(layout))
}

fn sha256(path: &Path) -> String {
    let out = ok(Command::new(support::tool("sha256sum")).arg(path), "sha256sum");
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string()
}

/// Image name of [`oci_archive`].
pub const OCI_IMAGE: &str = "docker.io/library/mighook-busybox:e2e";

/// `target/e2e/busybox-oci-<key>.tar`: a one-layer OCI image layout archive named [`OCI_IMAGE`].
pub fn oci_archive() -> PathBuf {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| oci_archive_of(&rootfs_tar(), OCI_IMAGE)).clone()
}

/// `<layer stem>-oci.tar` beside `layer`: a one-layer OCI image layout archive named `name`.
fn oci_archive_of(layer: &Path, name: &str) -> PathBuf {
    oci_archive_with_cmd(layer, name, &["sh"])
}

/// Like [`oci_archive_of`], with `cmd` as the image config's `Cmd` (what CRI runs when a
/// container gives no command, as for a pod's sandbox image).
pub fn oci_archive_with_cmd(layer: &Path, name: &str, cmd: &[&str]) -> PathBuf {
    let key = layer.file_stem().unwrap().to_string_lossy().into_owned();
    let archive = support::rootfs::e2e_dir().join(format!("{key}-oci.tar"));
    if archive.exists() {
        return archive;
    }
    let t = tempfile::tempdir().unwrap();
    let blobs = t.path().join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    // Put a blob in place; returns its descriptor fields.
    let blob = |bytes: Option<&[u8]>, file: Option<&Path>| -> (String, u64) {
        let staged = t.path().join("staged");
        match (bytes, file) {
            (Some(b), _) => std::fs::write(&staged, b).unwrap(),
            (None, Some(f)) => {
                std::fs::copy(f, &staged).unwrap();
            }
            _ => unreachable!(),
        }
        let digest = sha256(&staged);
        let size = std::fs::metadata(&staged).unwrap().len();
        std::fs::rename(&staged, blobs.join(&digest)).unwrap();
        (format!("sha256:{digest}"), size)
    };
    // Uncompressed layer: its digest is also its diff id.
    let (layer_digest, layer_size) = blob(None, Some(layer));
    let config = json!({
        "architecture": "amd64", "os": "linux",
        "config": { "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": cmd },
        "rootfs": { "type": "layers", "diff_ids": [layer_digest] }
    });
    let (config_digest, config_size) = blob(Some(config.to_string().as_bytes()), None);
    let manifest = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size }]
    });
    let (manifest_digest, manifest_size) = blob(Some(manifest.to_string().as_bytes()), None);
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest, "size": manifest_size,
            "annotations": { "io.containerd.image.name": name, "org.opencontainers.image.ref.name": "e2e" }
        }]
    });
    std::fs::write(t.path().join("index.json"), index.to_string()).unwrap();
    std::fs::write(t.path().join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let tmp = archive.with_extension(format!("tmp-{}", std::process::id()));
    ok(
        Command::new(support::tool("tar")).arg("-C").arg(t.path()).arg("-cf").arg(&tmp).args([
            "oci-layout",
            "index.json",
            "blobs",
        ]),
        "tar OCI archive",
    );
    std::fs::rename(&tmp, &archive).unwrap();
    archive
}

// ---------------------------------------------------------------------------
// Cleanup helpers.

/// Removes `dir` and its subdirectories bottom-up where they are empty; leaves anything in use.
pub fn remove_empty_dirs(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_empty_dirs(&e.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// Removes the (empty) cgroup dirs named `name` directly under each v1 hierarchy and the v2 root.
pub fn remove_cgroup_parents(name: &str) {
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else { return };
    let mut roots: Vec<PathBuf> = hierarchies.flatten().map(|e| e.path()).collect();
    roots.push(PathBuf::from("/sys/fs/cgroup"));
    for root in roots {
        let dir = root.join(name);
        if dir.is_dir() && !dir.is_symlink() {
            // cgroupfs: only directories can be removed (their files go with them), deepest first.
            remove_cgroup_tree(&dir);
        }
    }
}

fn remove_cgroup_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// SIGTERM, wait up to `grace`, then SIGKILL: a daemon we started never outlives its test.
pub fn stop(child: &mut Child, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    // Test-only code: a direct kill(2) of the daemon we spawned, by its pid.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Polls `ready` every 50 ms for up to 30 s; panics with the daemon's log when it never is.
pub fn wait_ready(what: &str, log: &Path, child: &mut Child, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if ready() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited ({status}) before it was ready\n--- log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} not ready after 30 s\n--- log:\n{}", std::fs::read_to_string(log).unwrap_or_default());
}

// ---------------------------------------------------------------------------
// podman.

/// A private CDI spec dir for [`Podman::cmd_in_ns`]. /etc/cdi must exist as the mount point:
/// made if missing, and removed again on drop if this made it and it is still empty.
pub struct CdiDir {
    dir: tempfile::TempDir,
    made_etc_cdi: bool,
}

impl CdiDir {
    pub fn new() -> CdiDir {
        let etc_cdi = Path::new("/etc/cdi");
        let made_etc_cdi = !etc_cdi.exists();
        if made_etc_cdi {
            // Another test may make it at the same moment: only a real failure counts.
            if let Err(e) = std::fs::create_dir(etc_cdi) {
                assert!(etc_cdi.is_dir(), "mkdir /etc/cdi: {e}");
            }
        }
        let dir = tempfile::Builder::new().prefix("mighook-e2e-cdi").tempdir().unwrap();
        CdiDir { dir, made_etc_cdi }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for CdiDir {
    fn drop(&mut self) {
        if self.made_etc_cdi {
            let _ = std::fs::remove_dir("/etc/cdi");
        }
    }
}

/// podman with private storage (`vfs`), runc, cgroupfs, file events, and ulimits this host can set.
pub struct Podman {
    dir: tempfile::TempDir,
}

/// Live [`Podman`]s of this process: the shared `libpod_parent` cgroup is removed by the last one.
static PODMEN: std::sync::Mutex<u32> = std::sync::Mutex::new(0);

impl Podman {
    pub fn new() -> Podman {
        let dir = tempfile::Builder::new().prefix("mighook-e2e-podman").tempdir().unwrap();
        let conf = "[containers]\n\
            # This sandbox lacks CAP_SYS_RESOURCE: podman's default 1048576 limits cannot be set.\n\
            default_ulimits = [\"nofile=1024:1024\", \"nproc=4096:4096\"]\n\
            [engine]\n\
            # crun refuses hybrid cgroup hosts (\"cgroups in hybrid mode not supported\").\n\
            runtime = \"runc\"\n\
            events_logger = \"file\"\n\
            cgroup_manager = \"cgroupfs\"\n";
        std::fs::write(dir.path().join("containers.conf"), conf).unwrap();
        std::fs::create_dir(dir.path().join("no-hooks")).unwrap();
        *PODMEN.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        Podman { dir }
    }

    /// `timeout podman --root .. --runroot .. --tmpdir .. --storage-driver vfs`.
    pub fn cmd(&self) -> Command {
        let mut c = timed(&support::tool("podman"));
        self.configure(&mut c);
        c
    }

    fn configure(&self, c: &mut Command) {
        let d = self.dir.path();
        c.env("CONTAINERS_CONF", d.join("containers.conf"))
            .arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("run"))
            .arg("--tmpdir")
            .arg(d.join("tmp"))
            .args(["--storage-driver", "vfs"]);
    }

    /// [`Podman::cmd`] in a private mount namespace where `cdi_dir` (if any) is mounted over
    /// /etc/cdi and /var/run/cdi is empty: podman 4.3 reads only those two dirs (no
    /// `--cdi-spec-dir`), and this way it sees exactly the test's specs and no other test
    /// sees them. `runtime`: `runc`, or `crun` (the cgroup2 mount of a hybrid host is then
    /// dropped in that namespace, since crun refuses hybrid hosts).
    pub fn cmd_in_ns(&self, cdi_dir: Option<&CdiDir>, runtime: &str) -> Command {
        const PROLOGUE: &str = "d=$1; drop=$2; shift 2; \
            if [ -n \"$d\" ]; then mount --bind \"$d\" /etc/cdi || exit 125; \
              if [ -d /var/run/cdi ]; then mount -t tmpfs -o size=1m tmpfs /var/run/cdi || exit 125; fi; fi; \
            if [ \"$drop\" = 1 ] && mountpoint -q /sys/fs/cgroup/unified; then umount /sys/fs/cgroup/unified || exit 125; fi; \
            exec \"$@\"";
        let mut c = timed(&support::tool("unshare"));
        c.args(["-m", "--propagation", "private", "sh", "-c", PROLOGUE, "sh"]);
        c.arg(cdi_dir.map_or_else(Default::default, |d| d.path().as_os_str().to_owned()));
        c.arg(if runtime == "crun" { "1" } else { "0" });
        c.arg(support::tool("podman"));
        self.configure(&mut c);
        c.args(["--runtime", runtime]);
        c
    }

    /// `podman run --rm --network none ARGS` as [`Podman::cmd_in_ns`] runs it.
    pub fn run_in_ns(&self, cdi_dir: Option<&CdiDir>, runtime: &str, args: &[&str]) -> Output {
        self.cmd_in_ns(cdi_dir, runtime)
            .args(["run", "--rm", "--network", "none"])
            .args(args)
            .output()
            .expect("spawn podman run")
    }

    /// `podman import` of the glibc image of `layout`; returns the image name.
    pub fn import_glibc(&self, layout: support::Layout) -> String {
        let name = glibc_image_name(layout).replace("docker.io/library/", "localhost/");
        ok(self.cmd().args(["import", "-q"]).arg(glibc_tar(layout)).arg(&name), "podman import");
        name
    }

    /// `podman import` of a plain tar of the directory `root` as `name`.
    pub fn import_dir(&self, root: &Path, name: &str) {
        let tar = root.with_extension("tar");
        ok(Command::new(support::tool("tar")).arg("-C").arg(root).arg("-cf").arg(&tar).arg("."), "tar");
        ok(self.cmd().args(["import", "-q"]).arg(&tar).arg(name), "podman import");
        let _ = std::fs::remove_file(&tar);
    }

    /// The runtimes podman can use on this machine: runc, and crun where a v1 `devices`
    /// hierarchy lets it run with the cgroup2 mount dropped (as tests/support/runtime.rs does).
    pub fn runtimes() -> Vec<&'static str> {
        let mut out = vec!["runc"];
        match support::Runtime::CrunV1.supported() {
            Ok(()) if support::find_tool("crun").is_some() => out.push("crun"),
            Ok(()) => support::skip("podman with crun: crun is not installed"),
            Err(why) => support::skip_unsupported(&format!("podman with crun: {why}")),
        }
        out
    }

    /// An empty hooks dir: `--hooks-dir` replaces the default dirs, so no installed hook interferes.
    pub fn no_hooks_dir(&self) -> PathBuf {
        self.dir.path().join("no-hooks")
    }

    /// `podman import` of the busybox rootfs; returns the image name.
    pub fn import_busybox(&self) -> String {
        let name = "localhost/mighook-busybox:e2e".to_string();
        ok(self.cmd().args(["import", "-q"]).arg(rootfs_tar()).arg(&name), "podman import");
        name
    }

    /// `podman run --rm --network none ARGS`.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(["run", "--rm", "--network", "none"]).args(args).output().expect("spawn podman run")
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.cmd().args(["rm", "-af"]).output();
        let _ = self.cmd().args(["rmi", "-af"]).output();
        let mut live = PODMEN.lock().unwrap_or_else(|e| e.into_inner());
        *live -= 1;
        if *live == 0 {
            remove_cgroup_parents("libpod_parent");
        }
    }
}

// ---------------------------------------------------------------------------
// containerd.

/// Live containerds of this process (ours and dockerd's): the last one out tidies
/// /run/containerd, where every containerd's shims keep their sockets.
static CONTAINERDS: std::sync::Mutex<u32> = std::sync::Mutex::new(0);

pub fn containerd_started() {
    *CONTAINERDS.lock().unwrap_or_else(|e| e.into_inner()) += 1;
}

pub fn containerd_stopped() {
    let mut live = CONTAINERDS.lock().unwrap_or_else(|e| e.into_inner());
    *live -= 1;
    if *live == 0 {
        remove_empty_dirs(Path::new("/run/containerd"));
    }
}

/// A private containerd (CRI off) on its own socket, with the env its shims and runc get.
pub struct Containerd {
    dir: tempfile::TempDir,
    child: Child,
    /// Unique namespace: names the runc root under /run/containerd/runc and the parent cgroup.
    pub namespace: String,
}

impl Containerd {
    pub fn start(env: &[(String, String)]) -> Containerd {
        let dir = tempfile::Builder::new().prefix("mighook-e2e-ctrd").tempdir().unwrap();
        let d = dir.path();
        let config = format!(
            "version = 2\nroot = \"{0}/root\"\nstate = \"{0}/state\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{0}/containerd.sock\"\n[ttrpc]\n  address = \"{0}/containerd.sock.ttrpc\"\n\
             [debug]\n  address = \"{0}/debug.sock\"\n",
            d.display()
        );
        std::fs::write(d.join("config.toml"), config).unwrap();
        let log = d.join("containerd.log");
        let child = Command::new(support::tool("containerd"))
            .arg("--config")
            .arg(d.join("config.toml"))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn containerd");
        let namespace = support::unique_id("ns");
        let sock = d.join("containerd.sock");
        containerd_started();
        let mut me = Containerd { child, namespace, dir };
        // `me` owns the child from here: a panic below still stops the daemon.
        let ns = me.namespace.clone();
        wait_ready("containerd", &log, &mut me.child, || {
            ctr_cmd(&sock, &ns).arg("version").output().is_ok_and(|o| o.status.success())
        });
        me
    }

    /// `timeout ctr --address <sock> --namespace <ns>`.
    pub fn ctr(&self) -> Command {
        ctr_cmd(&self.dir.path().join("containerd.sock"), &self.namespace)
    }

    /// `ctr images import` of the OCI archive; returns the image name.
    pub fn import_busybox(&self) -> String {
        ok(self.ctr().args(["images", "import"]).arg(oci_archive()), "ctr images import");
        OCI_IMAGE.to_string()
    }

    /// `ctr images import` of the glibc image of `layout` as an OCI archive; returns the image name.
    pub fn import_glibc(&self, layout: support::Layout) -> String {
        ok(self.ctr().args(["images", "import"]).arg(glibc_oci_archive(layout)), "ctr images import");
        glibc_image_name(layout)
    }

    /// The daemon's stderr so far (shim and runtime errors land there).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }
}

fn ctr_cmd(sock: &Path, namespace: &str) -> Command {
    let mut c = timed(&support::tool("ctr"));
    c.arg("--address").arg(sock).args(["--namespace", namespace]);
    c
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // A test that failed mid-run may leave a task: kill and delete everything in our namespace.
        if let Ok(out) = self.ctr().args(["tasks", "ls", "-q"]).output() {
            for id in String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty()) {
                let _ = self.ctr().args(["tasks", "kill", "-s", "SIGKILL", id]).output();
                let _ = self.ctr().args(["tasks", "rm", "-f", id]).output();
            }
        }
        if let Ok(out) = self.ctr().args(["containers", "ls", "-q"]).output() {
            for id in String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty()) {
                let _ = self.ctr().args(["containers", "rm", id]).output();
            }
        }
        let _ = self.ctr().args(["images", "rm", OCI_IMAGE]).output();
        stop(&mut self.child, Duration::from_secs(10));
        let _ = std::fs::remove_dir_all(Path::new("/run/containerd/runc").join(&self.namespace));
        remove_cgroup_parents(&self.namespace);
        containerd_stopped();
    }
}

// ---------------------------------------------------------------------------
// dockerd.

const KEY_JSON: &str = "/etc/docker/key.json";

/// Only one dockerd of ours at a time: they share /run/docker and the `docker` parent cgroup.
pub static DOCKERD_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A private dockerd (no iptables, no bridge, vfs) on its own socket, with its own containerd.
pub struct Dockerd {
    dir: tempfile::TempDir,
    child: Child,
    had_run_docker: bool,
    /// dockerd 20.10 makes /etc/docker/key.json (its trust key) on start, whatever its config says.
    had_key_json: bool,
}

impl Dockerd {
    /// Starts dockerd with `runtimes` registered in daemon.json and `env` (PATH, MIGHOOK_CONFIG).
    pub fn start(runtimes: &[(&str, &Path)], env: &[(String, String)]) -> Dockerd {
        let dir = tempfile::Builder::new().prefix("mighook-e2e-dockerd").tempdir().unwrap();
        let d = dir.path();
        let runtimes: serde_json::Map<String, serde_json::Value> =
            runtimes.iter().map(|(name, path)| (name.to_string(), json!({ "path": path }))).collect();
        let config = json!({
            "data-root": d.join("root"), "exec-root": d.join("exec"), "pidfile": d.join("dockerd.pid"),
            "hosts": [format!("unix://{}", d.join("docker.sock").display())],
            "iptables": false, "ip6tables": false, "ip-forward": false, "ip-masq": false, "bridge": "none",
            "storage-driver": "vfs",
            "runtimes": runtimes,
        });
        std::fs::write(d.join("daemon.json"), serde_json::to_string_pretty(&config).unwrap()).unwrap();
        let args = vec!["--config-file".into(), d.join("daemon.json").into_os_string()];
        Dockerd::spawn(dir, args, env)
    }

    /// Starts dockerd reading `config_file` (the host's /etc/docker/daemon.json, as a
    /// package's `mighook setup docker` left it) for its runtimes, with the private dirs,
    /// socket and networking of [`Dockerd::start`] given as flags (so the file must not set them).
    pub fn start_with_config_file(config_file: &Path, env: &[(String, String)]) -> Dockerd {
        let dir = tempfile::Builder::new().prefix("mighook-e2e-dockerd").tempdir().unwrap();
        let d = dir.path();
        let mut args: Vec<std::ffi::OsString> = vec!["--config-file".into(), config_file.into()];
        for (flag, value) in [("--data-root", "root"), ("--exec-root", "exec"), ("--pidfile", "dockerd.pid")] {
            args.push(flag.into());
            args.push(d.join(value).into_os_string());
        }
        args.push(format!("--host=unix://{}", d.join("docker.sock").display()).into());
        for flag in ["--iptables=false", "--ip6tables=false", "--ip-forward=false", "--ip-masq=false"] {
            args.push(flag.into());
        }
        args.extend(["--bridge=none".into(), "--storage-driver=vfs".into()]);
        Dockerd::spawn(dir, args, env)
    }

    fn spawn(dir: tempfile::TempDir, args: Vec<std::ffi::OsString>, env: &[(String, String)]) -> Dockerd {
        let d = dir.path();
        let had_run_docker = Path::new("/run/docker").exists();
        let had_key_json = Path::new(KEY_JSON).exists();
        let log = d.join("dockerd.log");
        let child = Command::new(support::tool("dockerd"))
            .args(&args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn dockerd");
        let host = format!("unix://{}", d.join("docker.sock").display());
        containerd_started();
        let mut me = Dockerd { child, had_run_docker, had_key_json, dir };
        // `me` owns the child from here: a panic below still stops the daemon.
        wait_ready("dockerd", &log, &mut me.child, || {
            docker_cmd(&host).arg("version").output().is_ok_and(|o| o.status.success())
        });
        me
    }

    /// `timeout docker` talking to this daemon (Debian's 20.10 CLI when present).
    pub fn docker(&self) -> Command {
        docker_cmd(&format!("unix://{}", self.dir.path().join("docker.sock").display()))
    }

    /// `docker import` of the busybox rootfs; returns the image name.
    pub fn import_busybox(&self) -> String {
        let name = "mighook-busybox:e2e".to_string();
        ok(self.docker().arg("import").arg(rootfs_tar()).arg(&name), "docker import");
        name
    }

    /// `docker import` of the glibc image of `layout`; returns the image name.
    pub fn import_glibc(&self, layout: support::Layout) -> String {
        let name = format!("mighook-glibc-{}:e2e", layout.name());
        ok(self.docker().arg("import").arg(glibc_tar(layout)).arg(&name), "docker import");
        name
    }

    /// `docker run --rm --network none ARGS`.
    pub fn run(&self, args: &[&str]) -> Output {
        self.docker().args(["run", "--rm", "--network", "none"]).args(args).output().expect("spawn docker run")
    }

    /// dockerd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }
}

fn docker_cmd(host: &str) -> Command {
    let cli = Path::new("/usr/bin/docker");
    let mut c = timed(&if cli.exists() { cli.to_path_buf() } else { support::tool("docker") });
    c.env("DOCKER_HOST", host);
    c
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if let Ok(out) = self.docker().args(["ps", "-aq"]).output() {
            for id in String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty()) {
                let _ = self.docker().args(["rm", "-f", id]).output();
            }
        }
        stop(&mut self.child, Duration::from_secs(15));
        remove_cgroup_parents("docker");
        containerd_stopped();
        if !self.had_run_docker {
            // dockerd makes /run/docker (plugins) even with a private exec-root.
            remove_empty_dirs(Path::new("/run/docker"));
        }
        if !self.had_key_json {
            let _ = std::fs::remove_file(KEY_JSON);
        }
    }
}

/// A hooks.d dir holding one hook that runs mighook as a prestart hook for every container.
pub fn podman_hooks_dir(node: &support::SimNode) -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix("mighook-e2e-hooksd").tempdir().unwrap();
    let mut args = vec!["mighook".to_string()];
    args.extend(node.mighook_args());
    args.push("prestart".into());
    // hooks.d `when` has no env condition: `always`, and mighook itself ignores containers that ask for nothing.
    let hook = serde_json::json!({
        "version": "1.0.0",
        "hook": { "path": support::mighook_bin(), "args": args, "timeout": 30 },
        "when": { "always": true },
        "stages": ["prestart"]
    });
    std::fs::write(dir.path().join("50-mighook.json"), serde_json::to_string_pretty(&hook).unwrap()).unwrap();
    dir
}
