//! `mighook runtime` (also argv0 `nvidia-container-runtime`): the runtime shim
//! that docker `--runtime=nvidia`, containerd's `BinaryName` and CRI-O's
//! `runtime_path` run in place of runc.
//!
//! On `create` and `run` it reads `<bundle>/config.json`, resolves the request
//! the way the prestart hook does (plus CDI annotations, which only the shim
//! reads), writes the device nodes and cgroup allow rules into the spec, and
//! removes NVIDIA/mighook prestart hooks so nothing is done twice. The driver's
//! user-space files become bind mounts in the spec (runc makes them); their
//! SONAME links are made in the rootfs, resolved inside it, and the image's
//! loader cache merged with the driver's libraries is written into the bundle
//! and mounted read-only over `/etc/ld.so.cache`. Then it
//! execs the configured low-level runtime with the original arguments. Every
//! other subcommand goes straight through without touching config.json. Any
//! error stops before the exec with config.json unchanged.

use crate::apply::driver_files::{self, InjectError, InjectReport};
use crate::bundle::{Bundle, BundleError};
use crate::oci::{OciError, argv, spec};
use crate::settings::{Settings, SettingsError};
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// PATH to search when the engine gave the shim none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, Error)]
pub enum ShimError {
    #[error("low-level-runtime must be a name on PATH or an absolute path, not {0:?}")]
    RuntimeName(String),
    #[error("low-level-runtime {name}: not found in PATH ({path})")]
    NotFound { name: String, path: String },
    #[error("low-level-runtime {0}: not an executable file")]
    NotExecutable(String),
    #[error("low-level-runtime {name} is {path}, which is mighook itself: set low-level-runtime to runc or crun")]
    IsMighook { name: String, path: String },
    #[error("cannot exec {path}: {reason}")]
    Exec { path: String, reason: String },
    #[error("no --bundle and no current directory: {0}")]
    NoBundle(std::io::Error),
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Spec(#[from] OciError),
    #[error("{}: cannot serialize: {source}", path.display())]
    Serialize { path: PathBuf, source: serde_json::Error },
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Inject(#[from] InjectError),
}

/// The merged loader cache the shim writes into the bundle.
pub const CACHE_FILE: &str = "mighook-ld.so.cache";

fn is_executable_file(p: &Path) -> Option<std::fs::Metadata> {
    let m = std::fs::metadata(p).ok()?;
    (m.is_file() && m.mode() & 0o111 != 0).then_some(m)
}

/// Finds the low-level runtime: an absolute path as is, a bare name in `path_var`.
/// Refuses a binary that is this very executable (a loop that would exec forever).
pub fn find_runtime(name: &str, path_var: Option<&std::ffi::OsStr>, self_exe: &Path) -> Result<PathBuf, ShimError> {
    let found = if name.starts_with('/') {
        let p = PathBuf::from(name);
        is_executable_file(&p).ok_or_else(|| ShimError::NotExecutable(name.to_string()))?;
        p
    } else if name.is_empty() || name.contains('/') {
        return Err(ShimError::RuntimeName(name.to_string()));
    } else {
        let path_var = path_var.filter(|p| !p.is_empty()).unwrap_or(DEFAULT_PATH.as_ref());
        // Relative PATH entries would resolve against the bundle (the engine's cwd).
        let hit = std::env::split_paths(path_var)
            .filter(|d| d.is_absolute())
            .map(|d| d.join(name))
            .find(|p| is_executable_file(p).is_some());
        hit.ok_or_else(|| ShimError::NotFound {
            name: name.to_string(),
            path: path_var.to_string_lossy().into_owned(),
        })?
    };
    let me = std::fs::metadata(self_exe).ok().map(|m| (m.dev(), m.ino()));
    let it = std::fs::metadata(&found).ok().map(|m| (m.dev(), m.ino()));
    if me.is_some() && me == it {
        return Err(ShimError::IsMighook { name: name.to_string(), path: found.display().to_string() });
    }
    Ok(found)
}

/// Writes the container's devices into `<bundle>/config.json` (`spec` is what was read
/// from it); leaves the file untouched and returns `None` when the container asks for
/// nothing. Returns a line for the log.
pub fn prepare_bundle<D: crate::driver::Driver + ?Sized>(
    bundle: Bundle,
    settings: &Settings,
    driver: &D,
) -> Result<Option<String>, ShimError> {
    // The error names the entry (`0:99: ...`); the engine already names the container.
    let mut plan = bundle.plan(&settings.policy, &settings.default_capabilities, driver)?;
    if let Some(files) = &mut plan.edits.driver_files {
        files.cuda_compat = settings.cuda_compat;
    }
    if plan.edits.is_empty() {
        return Ok(None);
    }
    for w in &plan.selection.warnings {
        crate::log::warn(w);
    }
    let rootfs = match &plan.edits.driver_files {
        Some(_) => Some(bundle.rootfs()?),
        None => None,
    };
    let Bundle { dir: bundle, mut spec } = bundle;
    let bundle = bundle.as_path();
    let changes = spec::apply_edits(&mut spec, &plan.edits)?;
    let masked = add_proc_mask_hook(settings, &mut spec, &plan.selection)?;
    let driver = match (&plan.edits.driver_files, &rootfs) {
        (Some(files), Some(rootfs)) => Some(prepare_driver_files(bundle, rootfs, &mut spec, files)?),
        _ => None,
    };
    let path = bundle.join("config.json");
    let written = serde_json::to_vec(&spec).map_err(|source| ShimError::Serialize { path: path.clone(), source });
    let result = written.and_then(|mut text| {
        text.push(b'\n');
        crate::atomic_file::replace(&path, &text, 0o644).map_err(|source| ShimError::Write { path, source })
    });
    if let Err(e) = result {
        if let Some(d) = &driver {
            let _ = std::fs::remove_file(&d.cache);
        }
        return Err(e);
    }
    let nodes: Vec<&str> = plan.edits.device_nodes.iter().map(|n| n.path.as_str()).collect();
    let mut line = format!(
        "{}: wrote {} devices ({:?}), {} cgroup rules, removed {} GPU hooks",
        bundle.display(),
        nodes.len(),
        nodes,
        changes.rules_added,
        changes.hooks_removed
    );
    if let Some(d) = driver {
        line += &format!(", {} driver-file mounts; {}", d.mounts, d.report.lines.join("; "));
    }
    if masked {
        line += &format!(", added the prestart hook that masks {}", crate::proc_driver::PROC_DRIVER_NVIDIA);
    }
    Ok(Some(line))
}

/// Adds `mighook proc-mask` as the last prestart hook when the host has a
/// `/proc/driver/nvidia` to mask ([`crate::proc_driver`]). config.json cannot do it
/// (runc refuses bind mounts inside /proc), so, as in NVIDIA's legacy runtime, a hook
/// does: this same binary, with the settings this shim runs with (`--config`,
/// `--proc-root`) and the selection as arguments, and only a PATH in its environment.
fn add_proc_mask_hook(
    settings: &Settings,
    spec: &mut serde_json::Value,
    sel: &crate::resolve::Selection,
) -> Result<bool, ShimError> {
    if !settings.proc_root.join("driver/nvidia").is_dir() {
        return Ok(false);
    }
    let exe = std::env::current_exe()
        .map_err(|e| ShimError::Exec { path: "/proc/self/exe".into(), reason: e.to_string() })?;
    let exe = installed_path(exe);
    let mut args = vec!["mighook".to_string()];
    if let Some(config) = &settings.config_path {
        args.extend(["--config".to_string(), config.display().to_string()]);
    }
    args.extend(["--proc-root".to_string(), settings.proc_root.display().to_string(), "proc-mask".to_string()]);
    args.extend(crate::proc_driver::ProcSelection::of(sel).to_args());
    let hook = serde_json::json!({ "path": exe, "args": args, "env": [format!("PATH={DEFAULT_PATH}")], "timeout": 30 });
    spec::add_prestart_hook(spec, hook)?;
    Ok(true)
}

/// This binary's path for a hook entry. An upgrade that renamed a new binary over
/// this one shows it as `<path> (deleted)`; the hook runs later, so `<path>`, the
/// installed one, is what it must name.
fn installed_path(exe: PathBuf) -> PathBuf {
    match exe.to_str().and_then(|s| s.strip_suffix(" (deleted)")) {
        Some(installed) => PathBuf::from(installed),
        None => exe,
    }
}

/// What [`prepare_driver_files`] did.
struct DriverFilesDone {
    mounts: usize,
    /// The merged loader cache, `<bundle>/mighook-ld.so.cache`.
    cache: PathBuf,
    report: InjectReport,
}

/// The driver files for runc to mount: the mounts go into `spec`, the image's
/// loader cache merged with the driver's libraries into a file in the bundle
/// (mounted over `/etc/ld.so.cache`; it goes when the engine removes the bundle),
/// and the SONAME links into the rootfs, each path resolved inside it.
fn prepare_driver_files(
    bundle: &Path,
    rootfs: &Path,
    spec: &mut serde_json::Value,
    files: &crate::driver_files::DriverFiles,
) -> Result<DriverFilesDone, ShimError> {
    files.log_missing();
    let sys = crate::sys::LinuxSys;
    let root = crate::sys::FsOps::open_dir(&sys, rootfs).map_err(|source| {
        ShimError::Inject(InjectError::Rootfs(crate::apply::rootfs::RootfsError::OpenRoot {
            root: rootfs.into(),
            source,
        }))
    })?;
    let mut edits = crate::driver_files::place(files, driver_files::library_dir(&sys, &root));
    let targets: Vec<&Path> = edits
        .mounts
        .iter()
        .map(|m| m.container_path.as_path())
        .chain(edits.symlinks.iter().map(|l| l.link.as_path()))
        .chain([Path::new("/etc/ld.so.cache")])
        .collect();
    let binds = spec::bind_destinations(spec);
    driver_files::outside_spec_mounts(&sys, &root, &targets, &binds)?;
    let mut report = InjectReport::default();
    // The compat dir is read now, from the image; a volume the runtime mounts over it
    // (or over where its links lead) later would hold other files than the cache names.
    let compat_file = Path::new("/").join(crate::apply::cuda_compat::COMPAT_DIR).join("libcuda.so");
    if edits.cuda_compat.is_some()
        && matches!(
            driver_files::outside_spec_mounts(&sys, &root, &[compat_file.as_path()], &binds),
            Err(InjectError::UnderSpecMount { .. })
        )
    {
        report.lines.push("CUDA forward compatibility: /usr/local/cuda/compat is under a volume; not used".into());
        edits.cuda_compat = None;
    }
    let cache = bundle.join(CACHE_FILE);
    let merged = driver_files::merged_cache(&sys, &root, &edits.ld_cache, edits.cuda_compat.as_deref(), &mut report)?;
    crate::atomic_file::replace(&cache, &merged, 0o644)
        .map_err(|source| ShimError::Write { path: cache.clone(), source })?;
    let mounts = spec::add_mounts(spec, &edits.mounts, Some(&cache))?;
    let ready = driver_files::mount_points_in_root(&sys, &root, &edits.mounts, true);
    if let Err(e) = ready.and_then(|()| driver_files::link_in_root(&sys, &root, &edits.symlinks, &mut report)) {
        let _ = std::fs::remove_file(&cache);
        return Err(e.into());
    }
    Ok(DriverFilesDone { mounts, cache, report })
}

/// One error line in the runtime log format: logrus JSON (`--log-format json`) or logfmt text.
pub fn runtime_log_line(format: Option<&str>, msg: &str) -> String {
    if format == Some("json") {
        serde_json::json!({"level": "error", "msg": msg}).to_string() + "\n"
    } else {
        format!("level=error msg={}\n", serde_json::Value::String(msg.to_string()))
    }
}

/// Appends the error to the runtime's `--log` file: containerd's runc shim (docker too)
/// reports the last error found there, not the runtime's stderr.
fn log_for_engine(inv: &argv::Invocation, msg: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let Some(path) = &inv.log else { return };
    let line = runtime_log_line(inv.log_format.as_deref(), &format!("mighook: {msg}"));
    let file =
        std::fs::OpenOptions::new().create(true).append(true).mode(0o644).custom_flags(libc::O_NOFOLLOW).open(path);
    if let Err(e) = file.and_then(|mut f| f.write_all(line.as_bytes())) {
        crate::log::warn(&format!("cannot write the error to the runtime log {}: {e}", path.display()));
    }
}

/// Runs the shim. Returns only on error: success is the exec of the low-level runtime.
pub fn run(settings: &Settings, args: Vec<OsString>) -> Result<String, ShimError> {
    let inv = argv::parse(&args);
    let Err(err) = shim(settings, &inv, &args);
    log_for_engine(&inv, &err.to_string());
    Err(err)
}

/// Everything up to the exec; returns only with an error.
fn shim(settings: &Settings, inv: &argv::Invocation, args: &[OsString]) -> Result<std::convert::Infallible, ShimError> {
    // Only create/run read config.json; every other call passes through without it.
    let bundle = match (inv.creates(), inv.bundle.clone()) {
        (false, _) => None,
        (true, Some(b)) => Some(b),
        (true, None) => Some(std::env::current_dir().map_err(ShimError::NoBundle)?),
    };
    let bundle = bundle.as_deref().map(Bundle::read).transpose()?;
    let settings = match &bundle {
        Some(bundle) => bundle.container_settings(settings)?,
        None => {
            settings.init_log();
            settings.clone()
        }
    };
    // Found before config.json is touched: a missing runtime leaves the bundle as it was.
    let runtime =
        find_runtime(&settings.low_level_runtime, std::env::var_os("PATH").as_deref(), Path::new("/proc/self/exe"))?;
    if let Some(bundle) = bundle {
        let dir = bundle.dir.clone();
        match prepare_bundle(bundle, &settings, &settings.driver())? {
            Some(line) => crate::log::info(&line),
            None => crate::log::debug(&format!("{}: not a GPU container, config.json left as is", dir.display())),
        }
    }
    crate::log::debug(&format!("exec {} {:?}", runtime.display(), args));
    let err = std::process::Command::new(&runtime).args(args).exec();
    Err(ShimError::Exec { path: runtime.display().to_string(), reason: err.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_hook_names_the_installed_binary_even_mid_upgrade() {
        let installed = |p: &str| installed_path(PathBuf::from(p));
        assert_eq!(installed("/usr/local/bin/mighook (deleted)"), PathBuf::from("/usr/local/bin/mighook"));
        assert_eq!(installed("/usr/local/bin/mighook"), PathBuf::from("/usr/local/bin/mighook"));
        assert_eq!(installed("/opt/a (deleted)/mighook"), PathBuf::from("/opt/a (deleted)/mighook"));
    }

    fn exe(dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[test]
    fn a_name_is_searched_in_path_in_order() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        exe(b.path(), "runc");
        let found = exe(a.path(), "runc");
        let path = std::env::join_paths([a.path(), b.path()]).unwrap();
        assert_eq!(find_runtime("runc", Some(&path), Path::new("/nonexistent")).unwrap(), found);
    }

    #[test]
    fn relative_path_entries_and_non_executables_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("crun"), "").unwrap();
        let path = std::env::join_paths([Path::new("."), dir.path()]).unwrap();
        assert!(matches!(find_runtime("crun", Some(&path), Path::new("/x")), Err(ShimError::NotFound { .. })));
    }

    #[test]
    fn relative_and_empty_names_are_refused() {
        assert!(matches!(find_runtime("./runc", None, Path::new("/x")), Err(ShimError::RuntimeName(_))));
        assert!(matches!(find_runtime("", None, Path::new("/x")), Err(ShimError::RuntimeName(_))));
    }

    #[test]
    fn an_absolute_path_must_be_executable() {
        let dir = tempfile::tempdir().unwrap();
        let p = exe(dir.path(), "fake-runc");
        assert_eq!(find_runtime(p.to_str().unwrap(), None, Path::new("/x")).unwrap(), p);
        let missing = dir.path().join("none");
        assert!(matches!(
            find_runtime(missing.to_str().unwrap(), None, Path::new("/x")),
            Err(ShimError::NotExecutable(_))
        ));
    }

    #[test]
    fn mighook_itself_is_refused_also_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let me = exe(dir.path(), "mighook");
        std::os::unix::fs::symlink(&me, dir.path().join("runc")).unwrap();
        let path = dir.path().as_os_str();
        let e = find_runtime("runc", Some(path), &me).unwrap_err();
        assert!(matches!(e, ShimError::IsMighook { .. }), "{e}");
        assert!(e.to_string().contains("which is mighook itself"));
    }

    fn settings(dir: &Path) -> Settings {
        let config = dir.join("config.toml");
        std::fs::write(&config, "annotation-prefixes = [\"cdi.k8s.io/\"]\n").unwrap();
        let flags = crate::settings::GlobalFlags { config: Some(config), ..Default::default() };
        Settings::resolve(&flags, &crate::settings::OwnEnv::default()).unwrap()
    }

    fn bundle_with(spec: serde_json::Value) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), serde_json::to_string_pretty(&spec).unwrap()).unwrap();
        dir
    }

    #[test]
    fn runtime_log_lines_are_what_runc_writes() {
        assert_eq!(
            runtime_log_line(Some("json"), "mighook: 0:99: no \"x\""),
            "{\"level\":\"error\",\"msg\":\"mighook: 0:99: no \\\"x\\\"\"}\n"
        );
        assert_eq!(runtime_log_line(Some("text"), "mighook: a b"), "level=error msg=\"mighook: a b\"\n");
        assert_eq!(runtime_log_line(None, "x"), "level=error msg=\"x\"\n");
    }

    fn spec_of(dir: &Path) -> Bundle {
        Bundle::read(dir).unwrap()
    }

    fn config_json(dir: &Path) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
    }

    #[test]
    fn an_annotation_request_is_written_into_the_bundle() {
        let b = bundle_with(
            serde_json::json!({"annotations": {"cdi.k8s.io/gpu": "nvidia.com/gpu=0:1"}, "process": {"env": []}}),
        );
        let driver = crate::driver::fake::FakeDriver::a100();
        prepare_bundle(spec_of(b.path()), &settings(b.path()), &driver).unwrap();
        let spec = config_json(b.path());
        let paths: Vec<&str> =
            spec["linux"]["devices"].as_array().unwrap().iter().map(|d| d["path"].as_str().unwrap()).collect();
        assert!(paths.contains(&"/dev/nvidia2") && paths.contains(&"/dev/nvidiactl"), "{paths:?}");
        assert_eq!(spec["linux"]["resources"]["devices"].as_array().unwrap().len(), paths.len());
    }

    #[test]
    fn a_container_asking_for_nothing_keeps_its_file_byte_for_byte() {
        let b = bundle_with(serde_json::json!({"process": {"env": ["NVIDIA_VISIBLE_DEVICES=void"]}}));
        let before = std::fs::read(b.path().join("config.json")).unwrap();
        let line =
            prepare_bundle(spec_of(b.path()), &settings(b.path()), &crate::driver::fake::FakeDriver::a100()).unwrap();
        assert_eq!(line, None);
        assert_eq!(std::fs::read(b.path().join("config.json")).unwrap(), before);
    }

    #[test]
    fn a_bad_entry_is_an_error_that_names_it_and_writes_nothing() {
        let b = bundle_with(serde_json::json!({"process": {"env": ["NVIDIA_VISIBLE_DEVICES=0:99"]}}));
        let before = std::fs::read(b.path().join("config.json")).unwrap();
        let e = prepare_bundle(spec_of(b.path()), &settings(b.path()), &crate::driver::fake::FakeDriver::a100())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("0:99: "), "{e}");
        assert_eq!(std::fs::read(b.path().join("config.json")).unwrap(), before);
    }
}
