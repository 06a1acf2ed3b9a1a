//! Running bundles under real runc and crun, on cgroup v1 and on cgroup v2.
//!
//! The host is hybrid (v1 controllers, a near-empty v2 at /sys/fs/cgroup/unified),
//! so each mode gets a private mount namespace instead of a host-wide change:
//! - runc v1: as is; runc uses the v1 `devices` controller.
//! - crun v1: the unified mount removed, since crun refuses hybrid hosts
//!   ("cgroups in hybrid mode not supported").
//! - v2: cgroup2 mounted over /sys/fs/cgroup, so the runtime (and the hook it
//!   spawns) sees a pure v2 host and guards devices with a BPF program.
//!
//! Every run uses `run` (create+start+wait+delete) with the bundle's private
//! `--root`, a unique id and a timeout, and afterwards asserts that no container
//! is left (force-deleting it first if one is). `MIGHOOK_E2E_VERBOSE=1` prints every run.

use super::{Bundle, ProbeOutput};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// Seconds a whole `run` may take before `timeout` kills it (normal: well under 1 s).
pub const RUN_TIMEOUT_S: u32 = 60;

/// The four runtime × cgroup-mode combinations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    RuncV1,
    CrunV1,
    RuncV2,
    CrunV2,
}

// Shell prologues run inside `unshare -m` (private propagation) before exec'ing the runtime.
const DROP_UNIFIED: &str =
    "if mountpoint -q /sys/fs/cgroup/unified; then umount /sys/fs/cgroup/unified || exit 125; fi; exec \"$@\"";
const PURE_V2: &str = "umount -l /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup || exit 125; exec \"$@\"";

impl Runtime {
    pub const ALL: [Runtime; 4] = [Runtime::RuncV1, Runtime::CrunV1, Runtime::RuncV2, Runtime::CrunV2];

    /// `runc-v1`, `crun-v2`, ...
    pub fn name(self) -> &'static str {
        match self {
            Runtime::RuncV1 => "runc-v1",
            Runtime::CrunV1 => "crun-v1",
            Runtime::RuncV2 => "runc-v2",
            Runtime::CrunV2 => "crun-v2",
        }
    }

    /// The runtime binary name.
    pub fn binary(self) -> &'static str {
        match self {
            Runtime::RuncV1 | Runtime::RuncV2 => "runc",
            Runtime::CrunV1 | Runtime::CrunV2 => "crun",
        }
    }

    pub fn is_v2(self) -> bool {
        matches!(self, Runtime::RuncV2 | Runtime::CrunV2)
    }

    /// `Err(reason)` when this machine cannot run this combination (detected, never assumed).
    pub fn supported(self) -> Result<(), String> {
        if !self.is_v2() && !cgroup_v1_devices() {
            return Err("no cgroup v1 `devices` hierarchy at /sys/fs/cgroup/devices (pure cgroup v2 host)".into());
        }
        if self == Runtime::CrunV2 {
            return crun_v2_supported();
        }
        Ok(())
    }

    /// `run` through mighook's runtime shim: `mighook GLOBAL... runtime --root <state> run ...`,
    /// with a config file that names this runtime as the low-level one.
    pub fn run_shim(self, bundle: &Bundle, global: &[String]) -> Output {
        let config = bundle.path().join("mighook-shim.toml");
        std::fs::write(&config, format!("low-level-runtime = {:?}\n", super::tool(self.binary())))
            .expect("write config");
        let mut prefix = vec![super::mighook_bin().to_str().expect("utf-8").to_string()];
        prefix.extend(global.iter().cloned());
        prefix.extend(["--config".into(), config.to_str().expect("utf-8").into(), "runtime".into()]);
        let bundle_path = bundle.path().to_str().expect("utf-8 bundle path");
        let out = self
            .command_via(bundle, Some(&prefix), &["run", "--bundle", bundle_path, &bundle.id])
            .output()
            .expect("spawn shim");
        for id in self.list(bundle) {
            let _ = self.command(bundle, &["delete", "-f", &id]).output();
        }
        out
    }

    /// `<runtime> --root <state> ARGS`, wrapped for the cgroup mode and in `timeout`.
    fn command(self, bundle: &Bundle, args: &[&str]) -> Command {
        self.command_via(bundle, None, args)
    }

    /// [`Self::command`], with `prefix` (the shim and its arguments) in front of `--root`
    /// instead of the runtime binary.
    fn command_via(self, bundle: &Bundle, prefix: Option<&[String]>, args: &[&str]) -> Command {
        let mut cmd = Command::new(super::tool("timeout"));
        cmd.args(["-k", "5", &RUN_TIMEOUT_S.to_string()]);
        match self {
            Runtime::RuncV1 => {}
            Runtime::CrunV1 => {
                cmd.args(["unshare", "-m", "sh", "-c", DROP_UNIFIED, "sh"]);
            }
            Runtime::RuncV2 | Runtime::CrunV2 => {
                cmd.args(["unshare", "-m", "sh", "-c", PURE_V2, "sh"]);
            }
        }
        match prefix {
            Some(prefix) => cmd.args(prefix),
            None => cmd.arg(super::tool(self.binary())),
        };
        cmd.arg("--root").arg(bundle.state_dir(self.binary()));
        cmd.args(args).current_dir(bundle.path());
        cmd
    }

    /// `run --bundle B <id>`: stdout is the container's, stderr the runtime's (hook errors land there).
    /// Panics if the container is still listed afterwards (after force-deleting it).
    pub fn run(self, bundle: &Bundle) -> Output {
        self.run_checked(bundle, true)
    }

    /// `run`, optionally tolerating (and removing) cgroup dirs the runtime leaked.
    fn run_checked(self, bundle: &Bundle, strict_cgroups: bool) -> Output {
        let bundle_path = bundle.path().to_str().expect("utf-8 bundle path");
        let out = self.command(bundle, &["run", "--bundle", bundle_path, &bundle.id]).output().expect("spawn runtime");
        if std::env::var_os("MIGHOOK_E2E_VERBOSE").is_some() {
            super::loud(&format!("[{} {} in {}]\n{}", self.name(), bundle.id, super::test_name(), describe(&out)));
        }
        let left = self.list(bundle);
        if !left.is_empty() {
            for id in &left {
                let _ = self.command(bundle, &["delete", "-f", id]).output();
            }
            panic!(
                "{}: container(s) {left:?} left behind after `run` (force-deleted; still listed: {:?})\n{}",
                self.name(),
                self.list(bundle),
                describe(&out)
            );
        }
        let cgroups = leftover_cgroups(&bundle.id);
        if !cgroups.is_empty() {
            for dir in cgroups.iter().rev() {
                let _ = std::fs::remove_dir(dir);
            }
            assert!(
                !strict_cgroups,
                "{}: cgroup dirs {cgroups:?} left behind after `run` (removed)\n{}",
                self.name(),
                describe(&out)
            );
        }
        out
    }

    /// Run a probe bundle that must succeed, and parse what the probe printed.
    pub fn run_probe(self, bundle: &Bundle) -> ProbeOutput {
        let out = self.run(bundle);
        assert!(out.status.success(), "{}: container run failed\n{}", self.name(), describe(&out));
        ProbeOutput::parse(&String::from_utf8_lossy(&out.stdout))
    }

    /// Ids in this bundle's state dir (`list -q`).
    pub fn list(self, bundle: &Bundle) -> Vec<String> {
        let out = self.command(bundle, &["list", "-q"]).output().expect("spawn runtime list");
        assert!(out.status.success(), "{} list failed\n{}", self.name(), describe(&out));
        String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty()).map(str::to_string).collect()
    }
}

/// Status, stdout and stderr of a run, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "status: {}\n--- stdout:\n{}--- stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn run_runc_v1(bundle: &Bundle) -> Output {
    Runtime::RuncV1.run(bundle)
}

pub fn run_crun_v1(bundle: &Bundle) -> Output {
    Runtime::CrunV1.run(bundle)
}

pub fn run_runc_v2(bundle: &Bundle) -> Output {
    Runtime::RuncV2.run(bundle)
}

pub fn run_crun_v2(bundle: &Bundle) -> Output {
    Runtime::CrunV2.run(bundle)
}

/// Cgroup dirs named `id` anywhere in the host's cgroup mounts (runtimes nest them
/// under the caller's own cgroup, so search a few levels deep), deepest last.
pub fn leftover_cgroups(id: &str) -> Vec<std::path::PathBuf> {
    fn walk(dir: &std::path::Path, id: &str, depth: u32, found: &mut Vec<std::path::PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            // Skip the cpu,cpuacct style symlinks: their targets are walked under their own name.
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let path = e.path();
            if e.file_name() == id {
                found.push(path.clone());
            }
            if depth > 0 {
                walk(&path, id, depth - 1, found);
            }
        }
    }
    let mut found = Vec::new();
    walk(std::path::Path::new("/sys/fs/cgroup"), id, 5, &mut found);
    found.sort_by_key(|p| p.components().count());
    found
}

/// Whether /sys/fs/cgroup/devices is a cgroup v1 hierarchy (hybrid or legacy host).
pub fn cgroup_v1_devices() -> bool {
    std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default().lines().any(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        // mountinfo: ... mount-point(4) ... " - " fstype source super-options
        let sep = f.iter().position(|x| *x == "-");
        f.get(4) == Some(&"/sys/fs/cgroup/devices") && sep.is_some_and(|s| f.get(s + 1) == Some(&"cgroup"))
    })
}

/// Whether crun can run a container on pure cgroup v2 here, found by trying once.
///
/// crun 1.8 raises RLIMIT_MEMLOCK to load its device BPF program, which needs
/// CAP_SYS_RESOURCE; a sandbox without it gets `setrlimit (RLIM_MEMLOCK):
/// Operation not permitted`. That failure is reported as `Err(reason)`; any
/// other failure panics, since it would be a harness or runtime bug to fix.
pub fn crun_v2_supported() -> Result<(), String> {
    static RESULT: OnceLock<Result<(), String>> = OnceLock::new();
    RESULT
        .get_or_init(|| {
            let bundle = Bundle::new(&super::busybox_rootfs(), &[], &["/bin/true"]);
            // crun leaks its cgroup when it fails this way: tolerate and remove it here only.
            let out = Runtime::CrunV2.run_checked(&bundle, false);
            if out.status.success() {
                return Ok(());
            }
            let stderr = String::from_utf8_lossy(&out.stderr);
            let no_cap = !super::has_effective_cap(super::CAP_SYS_RESOURCE);
            if no_cap && stderr.contains("setrlimit") {
                Err(format!(
                    "crun cannot run on pure cgroup v2 here: it failed with `{}` because this root lacks \
                     CAP_SYS_RESOURCE (crun raises RLIMIT_MEMLOCK for its device BPF program)",
                    stderr.trim()
                ))
            } else {
                panic!(
                    "crun on cgroup v2 failed for an unexpected reason (CAP_SYS_RESOURCE missing: {no_cap})\n{}",
                    describe(&out)
                )
            }
        })
        .clone()
}

/// Gate for a test through `rt`: root, the runtime, what the probe needs and `extra`
/// (a missing one is a loud skip, a failure on CI); a runtime mode this machine cannot
/// run (a detected platform limit) is reported SKIPPED, never a pass in disguise.
pub fn can_run(rt: Runtime, extra: &[&str]) -> bool {
    let mut tools = vec![rt.binary(), "gcc", "busybox", "unshare", "mountpoint", "timeout"];
    tools.extend_from_slice(extra);
    if !super::require_root_and(&tools) {
        return false;
    }
    match rt.supported() {
        Ok(()) => true,
        Err(reason) => {
            super::skip_unsupported(&format!("{} unsupported on this machine: {reason}", rt.name()));
            false
        }
    }
}

/// runc in whichever cgroup mode this machine runs it (v1 first), with root and `tools`;
/// `None` after a loud skip.
pub fn any_runc(tools: &[&str]) -> Option<Runtime> {
    if !super::require_root_and(tools) {
        return None;
    }
    let mut why = vec![];
    for rt in [Runtime::RuncV1, Runtime::RuncV2] {
        match rt.supported() {
            Ok(()) => return Some(rt),
            Err(e) => why.push(e),
        }
    }
    super::skip_unsupported(&format!("runc: {}", why.join("; ")));
    None
}
