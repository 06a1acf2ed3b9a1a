//! Shared harness for mighook's integration tests.
//!
//! Include it from a `tests/*.rs` file with `mod support;`. It finds the built
//! binaries, decides whether a root-and-runtime test may run, builds a busybox
//! rootfs holding the static `openprobe`, glibc images (Debian and RHEL layouts)
//! holding the dynamic `libprobe`, writes OCI bundles and runs them under real
//! runc/crun on cgroup v1 and v2, and parses what the probe printed.
//!
//! std only, plus the `serde_json` and `tempfile` dependencies the crate already has.

// Each test file uses a different subset of the harness.
#![allow(dead_code, unused_imports)]

pub mod a100;
pub mod bundle;
pub mod glibc_image;
pub mod probe;
pub mod rootfs;
pub mod runtime;
pub mod simnode;

pub use bundle::Bundle;
pub use glibc_image::{Layout, copy_glibc_image, glibc_image, libprobe_binary};
pub use probe::{ENXIO, EPERM, ProbeOutput, ProbeResult, Step};
pub use rootfs::{busybox_rootfs, copy_rootfs, openprobe_binary};
pub use runtime::{Runtime, crun_v2_supported, run_crun_v1, run_crun_v2, run_runc_v1, run_runc_v2};
pub use simnode::SimNode;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Root of the cargo workspace (where the top `Cargo.toml` is).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `target/<profile>`, found from the running test binary (`target/<profile>/deps/<test>-<hash>`),
/// so it follows `--release` and `CARGO_TARGET_DIR` without guessing.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("test binary has a parent dir");
    assert!(deps.ends_with("deps"), "test binary {} is not under target/<profile>/deps", exe.display());
    deps.parent().expect("deps has a parent").to_path_buf()
}

/// The cargo target dir (`target/`), parent of the profile dir.
pub fn target_dir() -> PathBuf {
    profile_dir().parent().expect("profile dir has a parent").to_path_buf()
}

fn built(name: &str) -> PathBuf {
    let p = profile_dir().join(name);
    if !p.exists() {
        panic!("{} is missing: run cargo build --workspace first", p.display());
    }
    p
}

/// `target/<profile>/mighook`.
pub fn mighook_bin() -> PathBuf {
    built("mighook")
}

/// `target/<profile>/libfake_nvml.so` (the fake NVML, built from tests/fake-nvml).
pub fn fake_nvml_lib() -> PathBuf {
    built("libfake_nvml.so")
}

/// `target/<profile>/fake-node` (writes a simulated GPU node from a topology file).
pub fn fake_node_bin() -> PathBuf {
    built("fake-node")
}

/// True when env `CI` is set to anything but empty/`0`/`false`: there, every test must run.
pub fn on_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
}

/// Name of the running test, for SKIPPED lines (libtest names each test's thread after it).
pub fn test_name() -> String {
    std::thread::current().name().unwrap_or("<unknown test>").to_string()
}

/// Skip a test loudly. On CI a skip is a failure, so this panics there.
pub fn skip(reason: &str) {
    let line = format!("SKIPPED: {}: {reason}", test_name());
    if on_ci() {
        panic!("{line} (CI is set: this test must run on CI)");
    }
    loud(&line);
}

/// Skip because this machine cannot do what the test needs (a detected platform
/// limit such as crun on cgroup v2 without CAP_SYS_RESOURCE): reported, also on CI.
pub fn skip_unsupported(reason: &str) {
    loud(&format!("SKIPPED: {}: {reason}", test_name()));
}

/// Write a line to the real stderr: `eprintln!` would be swallowed by libtest's capture of passing tests.
pub fn loud(line: &str) {
    use std::io::Write;
    let _ = std::io::stderr().write_all(format!("\n{line}\n").as_bytes());
}

/// Full path of a tool, looked up in PATH and then in the sbin dirs (runc lives in
/// /usr/sbin, which a non-login environment may not have on PATH).
pub fn find_tool(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| is_executable(p))
}

/// Like [`find_tool`], panicking with a pointer to the installer when missing.
pub fn tool(tool: &str) -> PathBuf {
    find_tool(tool).unwrap_or_else(|| panic!("{tool} not found: run scripts/install-deps.sh"))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Effective uid, from /proc (the harness stays std-only: no libc call).
pub fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().nth(1).map(|euid| euid == "0"))
        .unwrap_or(false)
}

/// Whether this process holds a capability in its effective set (`CapEff` in /proc).
pub fn has_effective_cap(bit: u32) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << bit) != 0)
}

/// `CAP_SYS_RESOURCE`: crun needs it on cgroup v2 to raise RLIMIT_MEMLOCK for its BPF program.
pub const CAP_SYS_RESOURCE: u32 = 24;

/// Gate for tests that need root and external tools: `true` means run.
///
/// When not root or a tool is missing it prints `SKIPPED: <test>: <reason>` to
/// stderr and returns `false`; with `CI` set it panics instead, since CI installs
/// everything (scripts/install-deps.sh) and a skip there would hide a failure.
pub fn require_root_and(tools: &[&str]) -> bool {
    if !is_root() {
        skip("needs root (containers, mknod, cgroups)");
        return false;
    }
    let missing: Vec<&str> = tools.iter().copied().filter(|t| find_tool(t).is_none()).collect();
    if !missing.is_empty() {
        skip(&format!("missing tools: {} (run scripts/install-deps.sh)", missing.join(", ")));
        return false;
    }
    true
}

/// A name no other container of this machine uses: test processes and threads run in parallel.
pub fn unique_id(label: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("mh-{label}-{}-{n}-{nanos:x}", std::process::id())
}

/// `rel path -> mode size mtime-ns symlink-target` of everything under `dir`, without following
/// links: two snapshots compare equal only if nothing under `dir` was made, removed or changed.
pub fn tree(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let path = e.path();
            let Ok(m) = fs::symlink_metadata(&path) else { continue };
            let rel = path.strip_prefix(dir).unwrap().display().to_string();
            let link = fs::read_link(&path).map(|t| t.display().to_string()).unwrap_or_default();
            out.insert(
                rel,
                format!("{:o} {} {} {}", m.mode(), m.size(), m.mtime_nsec() + m.mtime() * 1_000_000_000, link),
            );
            if m.is_dir() {
                stack.push(path);
            }
        }
    }
    out
}

/// A shared object whose constructor creates `marker`: proof that someone loaded it.
pub fn marker_so(dir: &Path, name: &str, marker: &Path) -> PathBuf {
    let src = dir.join(format!("{name}.c"));
    let so = dir.join(format!("{name}.so"));
    fs::write(
        &src,
        format!(
            "#include <fcntl.h>\n#include <unistd.h>\n__attribute__((constructor)) static void mark(void) {{ \
             int fd = open(\"{}\", O_CREAT | O_WRONLY, 0644); if (fd >= 0) close(fd); }}\n",
            marker.display()
        ),
    )
    .unwrap();
    let out =
        std::process::Command::new(tool("gcc")).args(["-shared", "-fPIC", "-o"]).arg(&so).arg(&src).output().unwrap();
    assert!(out.status.success(), "gcc {name}.so: {}", String::from_utf8_lossy(&out.stderr));
    so
}

/// The host's `/etc`: its mtime and its entry names (a change there is a change of the host).
pub fn etc_state() -> (std::time::SystemTime, Vec<String>) {
    let mtime = fs::metadata("/etc").unwrap().modified().unwrap();
    let mut names: Vec<String> =
        fs::read_dir("/etc").unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    (mtime, names)
}
