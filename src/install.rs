//! `mighook install --host-root /host [--engine containerd|crio] [--uninstall]`: the
//! entrypoint of the installer image (packaging/kubernetes), which runs with the
//! node's root filesystem mounted at `/host`.
//!
//! mighook reads its own binary, then `chroot`s into the host root, so every
//! path from there on (and every symlink in it) resolves as on the host, and
//! what is written into engine configs is the host's own path, never a
//! `/host/...` one. It then installs `/usr/local/bin/mighook` (copy and rename,
//! so a shim that is running keeps its old binary), the `nvidia-container-runtime`,
//! `nvidia-container-runtime-hook` and `nvidia-cdi-hook` links next to it,
//! `/etc/mighook/config.toml` unless the host has one, and the engine snippets
//! for that binary under `/usr/share/mighook/hooks/`; with `--engine` it runs
//! `mighook setup ENGINE` for the installed binary. What it created is recorded
//! in `/var/lib/mighook/install.json`.
//!
//! `--uninstall` undoes every engine setup that has a record (`setup --undo`),
//! then removes what the record lists: the binary, links that still point at
//! it, the snippets, and the config file when it still holds what was written.
//! Engines are not restarted: the installer cannot reach the node's systemd.

use crate::settings::{GlobalFlags, OwnEnv, Settings, SettingsError};
use crate::setup::{self, Engine, SetupError, SetupOptions};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Where the binary and its links go on the host (on PATH, outside the package manager's /usr/bin).
pub const BIN_DIR: &str = "/usr/local/bin";
pub const HOOKS_DIR: &str = "/usr/share/mighook/hooks";
pub const CONFIG: &str = "/etc/mighook/config.toml";
pub const RECORD: &str = "/var/lib/mighook/install.json";
/// The names mighook answers to besides its own (argv[0] personalities).
pub const LINKS: [&str; 3] = ["nvidia-container-runtime", "nvidia-container-runtime-hook", "nvidia-cdi-hook"];

/// The config a Kubernetes node gets: the device plugin's volume-mounts strategy, and no GPU by env.
pub const NODE_CONFIG: &str = "# Written by `mighook install` (the mighook DaemonSet); edit freely, it is never overwritten.\n\
# Device-plugin requests arrive as /dev/null volume mounts (deviceListStrategy=volume-mounts):\n\
accept-volume-mounts = true\n\
# ...so a pod cannot pick GPUs by setting NVIDIA_VISIBLE_DEVICES itself:\n\
accept-envvar-when-unprivileged = false\n";

#[derive(Debug, Error)]
pub enum InstallError {
    #[error("--host-root {path}: {reason}")]
    HostRoot { path: String, reason: String },
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("cannot write {path}: {reason}")]
    Write { path: String, reason: String },
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    Settings(#[from] SettingsError),
}

fn write_err(path: &Path, e: impl std::fmt::Display) -> InstallError {
    InstallError::Write { path: path.display().to_string(), reason: e.to_string() }
}

/// What `mighook install` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallOptions {
    pub host_root: PathBuf,
    /// The engine to register mighook with (containerd or CRI-O on a Kubernetes node).
    pub engine: Option<Engine>,
    pub uninstall: bool,
}

/// What install created, for uninstall.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    /// Files and links install made or replaces on every run (binary, links, snippets).
    owned: Vec<PathBuf>,
    /// The config file's text when install created it; `None`: the host had one.
    config_written: Option<String>,
}

fn load_record() -> Result<Option<Record>, InstallError> {
    let path = Path::new(RECORD);
    match fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| InstallError::Read { path: RECORD.into(), reason: format!("not an install record: {e}") }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(InstallError::Read { path: RECORD.into(), reason: e.to_string() }),
    }
}

fn mkdirs(dir: &Path) -> Result<(), InstallError> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new().recursive(true).mode(0o755).create(dir).map_err(|e| write_err(dir, e))
}

/// Makes `/` the host root: every later path is the host's own.
fn enter(host_root: &Path) -> Result<(), InstallError> {
    let err = |e: nix::Error| InstallError::HostRoot { path: host_root.display().to_string(), reason: e.to_string() };
    if !host_root.is_dir() {
        return Err(InstallError::HostRoot {
            path: host_root.display().to_string(),
            reason: "not a directory (mount the node's / there)".into(),
        });
    }
    nix::unistd::chroot(host_root).map_err(err)?;
    nix::unistd::chdir("/").map_err(err)
}

/// A link `dir/name` → `mighook`, made when missing (anything else there was refused before).
fn link(dir: &Path, name: &str) -> Result<Option<PathBuf>, InstallError> {
    let path = dir.join(name);
    if fs::symlink_metadata(&path).is_ok() {
        return Ok(None);
    }
    std::os::unix::fs::symlink("mighook", &path).map_err(|e| write_err(&path, e))?;
    Ok(Some(path))
}

/// The engine snippets for the installed binary (the files of `hooks/`, for /usr/local/bin).
fn snippets(binary: &Path) -> Vec<(&'static str, String)> {
    let shim = binary.with_file_name("nvidia-container-runtime");
    vec![
        ("oci-mighook-hook.json", setup::hook_json(binary)),
        ("docker-daemon.json", setup::docker_daemon_snippet(&shim)),
        ("crio-99-mighook.toml", setup::crio_dropin(&shim, Some(Path::new(CONFIG)), false)),
        (
            "containerd-99-mighook.toml",
            setup::containerd_dropin(2, None, &shim, setup::ContainerdExtras::default())
                .expect("the drop-in without a CRI section renders"),
        ),
    ]
}

fn install(self_bytes: &[u8], flags: &GlobalFlags, engine: Option<Engine>) -> Result<String, InstallError> {
    let mut out = String::new();
    let mut record = load_record()?.unwrap_or_default();
    let bin_dir = Path::new(BIN_DIR);
    let binary = bin_dir.join("mighook");
    mkdirs(bin_dir)?;
    // Checked before anything is written: a refusal leaves the host as it was.
    for name in LINKS {
        let path = bin_dir.join(name);
        if fs::symlink_metadata(&path).is_ok() && fs::read_link(&path).ok().as_deref() != Some(Path::new("mighook")) {
            return Err(InstallError::Refused(format!(
                "{} exists and is not a link to mighook (NVIDIA's own binary?): remove it or its package first; nothing installed",
                path.display()
            )));
        }
    }
    crate::atomic_file::publish(&binary, self_bytes, 0o755).map_err(|e| write_err(&binary, e))?;
    let _ = writeln!(out, "installed {}", binary.display());
    let mut owned = vec![binary.clone()];
    for name in LINKS {
        if let Some(made) = link(bin_dir, name)? {
            let _ = writeln!(out, "linked {} -> mighook", made.display());
        }
        owned.push(bin_dir.join(name));
    }
    let hooks = Path::new(HOOKS_DIR);
    mkdirs(hooks)?;
    for (name, text) in snippets(&binary) {
        let path = hooks.join(name);
        crate::atomic_file::publish(&path, text.as_bytes(), 0o644).map_err(|e| write_err(&path, e))?;
        owned.push(path);
    }
    let _ = writeln!(out, "wrote the engine snippets for {} into {HOOKS_DIR}", binary.display());
    let config = Path::new(CONFIG);
    if fs::symlink_metadata(config).is_err() {
        mkdirs(config.parent().unwrap_or(Path::new("/")))?;
        crate::atomic_file::publish(config, NODE_CONFIG.as_bytes(), 0o644).map_err(|e| write_err(config, e))?;
        record.config_written = Some(NODE_CONFIG.into());
        let _ = writeln!(out, "created {CONFIG}");
    } else {
        let _ = writeln!(out, "{CONFIG}: kept (the host's own)");
    }
    for p in owned {
        if !record.owned.contains(&p) {
            record.owned.push(p);
        }
    }
    let rec = Path::new(RECORD);
    mkdirs(rec.parent().unwrap_or(Path::new("/")))?;
    let text = serde_json::to_string_pretty(&record).expect("record serializes") + "\n";
    crate::atomic_file::replace_durable(rec, text.as_bytes(), 0o600).map_err(|e| write_err(rec, e))?;
    if let Some(engine) = engine {
        // The host's own settings now: its config file, its NVML for CRI-O's CDI spec.
        let settings = Settings::resolve(flags, &OwnEnv::default())?;
        let options = SetupOptions {
            engine,
            dry_run: false,
            binary: Some(binary),
            config_root: "/".into(),
            set_as_default: false,
            undo: false,
        };
        out.push_str(&setup::run(&settings, &options)?);
    }
    Ok(out)
}

fn uninstall() -> Result<String, InstallError> {
    let mut out = String::new();
    // Engines first: their configs stop naming the shim before it goes.
    for engine in ["docker", "containerd", "crio", "podman"] {
        if Path::new(setup::RECORD_DIR).join(format!("{engine}.json")).exists() {
            out.push_str(&setup::undo(Path::new("/"), engine, false)?);
        }
    }
    let Some(record) = load_record()? else {
        let _ = writeln!(out, "nothing installed (no {RECORD})");
        return Ok(out);
    };
    let config = Path::new(CONFIG);
    if let Some(written) = &record.config_written {
        match fs::read(config) {
            Ok(now) if now == written.as_bytes() => {
                fs::remove_file(config).map_err(|e| write_err(config, e))?;
                let _ = fs::remove_dir(config.parent().unwrap_or(Path::new("/")));
                let _ = writeln!(out, "removed {CONFIG}");
            }
            Ok(_) => {
                let _ = writeln!(out, "{CONFIG}: kept (edited since install)");
            }
            Err(_) => {}
        }
    }
    for path in &record.owned {
        let meta = match fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(_) => continue,
        };
        // A link under one of mighook's names that now points elsewhere is not mighook's any more.
        if meta.file_type().is_symlink() && fs::read_link(path).ok().as_deref() != Some(Path::new("mighook")) {
            continue;
        }
        fs::remove_file(path).map_err(|e| write_err(path, e))?;
        let _ = writeln!(out, "removed {}", path.display());
    }
    let _ = fs::remove_dir(HOOKS_DIR);
    let _ = fs::remove_dir(Path::new(HOOKS_DIR).parent().unwrap_or(Path::new("/")));
    fs::remove_file(RECORD).map_err(|e| write_err(Path::new(RECORD), e))?;
    let _ = fs::remove_dir(setup::RECORD_DIR);
    let _ = fs::remove_dir("/var/lib/mighook");
    let _ = writeln!(out, "mighook uninstalled; restart the engine so that it drops the nvidia runtime");
    Ok(out)
}

pub fn run(flags: &GlobalFlags, options: &InstallOptions) -> Result<String, InstallError> {
    if let Some(engine @ (Engine::Podman | Engine::Docker)) = options.engine {
        return Err(InstallError::Refused(format!(
            "--engine {}: the installer configures a Kubernetes node's containerd or crio",
            format!("{engine:?}").to_lowercase()
        )));
    }
    // Our own binary, read before the chroot hides it.
    let self_bytes = if options.uninstall {
        vec![]
    } else {
        fs::read("/proc/self/exe")
            .map_err(|e| InstallError::Read { path: "/proc/self/exe".into(), reason: e.to_string() })?
    };
    enter(&options.host_root)?;
    if options.uninstall { uninstall() } else { install(&self_bytes, flags, options.engine) }
}
