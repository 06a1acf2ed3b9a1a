//! `mighook setup docker|containerd|crio|podman`: registers mighook with a
//! container engine the way that engine expects.
//!
//! Each engine module reads the current files and returns [`Step`]s: the files
//! to write (merged with what is there, never replacing settings it does not
//! own), links to make, and notes for the admin. Nothing is written until every
//! step is known, so a refusal leaves the host as it was. A changed file is
//! first copied to `<file>.mighook-backup-<unix time>`; a file that already
//! holds what mighook would write is left alone, so a second run changes
//! nothing. `--dry-run` prints the diffs and writes nothing.

mod containerd;
mod diff;
mod docker;
mod hooksd;
mod record;

use crate::settings::Settings;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use thiserror::Error;

pub use containerd::{CRI_PLUGIN_V2, CRI_PLUGIN_V3, Extras as ContainerdExtras, dropin as containerd_dropin};
pub use docker::daemon_snippet as docker_daemon_snippet;
pub use hooksd::{crio_dropin, hook_json};
pub use record::{RECORD_DIR, undo};

/// The name engines run the shim by, next to the mighook binary.
pub const RUNTIME_LINK: &str = "nvidia-container-runtime";
/// The name docker `--gpus` looks up on dockerd's PATH.
pub const HOOK_LINK: &str = "nvidia-container-runtime-hook";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Docker,
    Containerd,
    Crio,
    Podman,
}

/// What `mighook setup` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupOptions {
    /// The engine to register mighook with.
    pub engine: Engine,
    /// Print what would change and write nothing.
    pub dry_run: bool,
    /// The mighook binary the engine should run (default: this executable).
    pub binary: Option<PathBuf>,
    /// Directory the engine's config files are under.
    pub config_root: PathBuf,
    /// Make `nvidia` the engine's default runtime (docker, containerd, CRI-O).
    pub set_as_default: bool,
    /// Put back what an earlier setup of this engine changed, from its record and backups.
    pub undo: bool,
}

#[derive(Debug, Error)]
pub enum SetupError {
    #[error("--binary {path}: {reason}")]
    Binary { path: String, reason: String },
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
    #[error("cannot write {path}: {reason}")]
    Write { path: String, reason: String },
    /// A file or link mighook will not change; the text says what to do instead.
    #[error("{0}")]
    Refused(String),
}

pub(crate) fn invalid(path: &Path, reason: impl std::fmt::Display) -> SetupError {
    SetupError::Invalid { path: path.display().to_string(), reason: reason.to_string() }
}

pub(crate) fn write_err(path: &Path, reason: impl std::fmt::Display) -> SetupError {
    SetupError::Write { path: path.display().to_string(), reason: reason.to_string() }
}

/// One thing setup does (or, with `--dry-run`, would do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Write `new` to `path`; `old` is what is there now (`None`: no file yet).
    Write { path: PathBuf, old: Option<String>, new: String },
    /// `path` already holds what mighook would write.
    Unchanged(PathBuf),
    /// Make the symlink `path` → `target`.
    Link { path: PathBuf, target: PathBuf },
    /// `path` already is (a link to) the mighook binary.
    LinkOk(PathBuf),
    /// Said whether or not anything changes.
    Note(String),
    /// Said only when something changes (what to restart, how to use it).
    Hint(String),
}

impl Step {
    fn changes(&self) -> bool {
        matches!(self, Step::Write { .. } | Step::Link { .. })
    }
}

/// What every engine module needs: where config files are and which binary to register.
pub(crate) struct Ctx {
    pub root: PathBuf,
    /// Absolute path of the mighook binary.
    pub binary: PathBuf,
    /// podman and CRI-O: the CDI spec of this node, or why it could not be made.
    pub cdi_spec: Option<Result<String, String>>,
    /// Make `nvidia` the default runtime.
    pub set_as_default: bool,
    /// CRI-O: mighook's config file, which the shim must be told about (CRI-O hands it no environment of its own).
    pub config_file: Option<PathBuf>,
    /// containerd: the installed version (major, minor), when `containerd --version` says.
    pub containerd_version: Option<(u64, u64)>,
}

impl Ctx {
    /// `/etc/...` under the config root.
    pub fn host(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    /// The directory of the binary, where the `nvidia-container-runtime` links live.
    pub fn bin_dir(&self) -> &Path {
        self.binary.parent().unwrap_or(Path::new("/"))
    }

    /// `<dir of binary>/nvidia-container-runtime`: what docker, containerd and CRI-O run.
    pub fn shim_path(&self) -> PathBuf {
        self.bin_dir().join(RUNTIME_LINK)
    }

    /// A config file's text; `None` when there is none.
    pub fn read(&self, path: &Path) -> Result<Option<String>, SetupError> {
        match fs::read(path) {
            Ok(bytes) => String::from_utf8(bytes).map(Some).map_err(|_| invalid(path, "is not UTF-8 text")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(SetupError::Read { path: path.display().to_string(), reason: e.to_string() }),
        }
    }

    /// A step that writes `new` unless the file already holds exactly that.
    pub fn write_step(&self, path: PathBuf, new: String) -> Result<Step, SetupError> {
        let old = self.read(&path)?;
        Ok(if old.as_deref() == Some(new.as_str()) { Step::Unchanged(path) } else { Step::Write { path, old, new } })
    }
}

/// Same file (device and inode), following links.
pub(crate) fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(x), Ok(y)) => (x.dev(), x.ino()) == (y.dev(), y.ino()),
        _ => false,
    }
}

/// Links `<dir of binary>/<name>` → the binary for each name: a missing link is made,
/// one that already is mighook is fine, anything else (NVIDIA's own binary, say) is a refusal.
pub(crate) fn link_steps(ctx: &Ctx, names: &[&str], steps: &mut Vec<Step>) -> Result<(), SetupError> {
    // Relative: the link keeps working if the directory moves.
    let target = PathBuf::from(ctx.binary.file_name().unwrap_or_default());
    for name in names {
        let link = ctx.bin_dir().join(name);
        match fs::symlink_metadata(&link) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                steps.push(Step::Link { path: link, target: target.clone() })
            }
            Err(e) => return Err(SetupError::Read { path: link.display().to_string(), reason: e.to_string() }),
            Ok(_) if same_file(&link, &ctx.binary) => steps.push(Step::LinkOk(link)),
            Ok(_) => {
                return Err(SetupError::Refused(format!(
                    "{} exists and is not {} (NVIDIA's own binary?): move it away, or pass --binary for a mighook in another directory",
                    link.display(),
                    ctx.binary.display()
                )));
            }
        }
    }
    Ok(())
}

/// The binary to register: absolute, an executable file.
fn binary(arg: Option<&Path>) -> Result<PathBuf, SetupError> {
    let err = |p: &Path, reason: String| SetupError::Binary { path: p.display().to_string(), reason };
    let path = match arg {
        Some(p) => std::path::absolute(p).map_err(|e| err(p, e.to_string()))?,
        None => std::env::current_exe().map_err(|e| err(Path::new("(this executable)"), e.to_string()))?,
    };
    let meta = fs::metadata(&path).map_err(|e| err(&path, e.to_string()))?;
    if !meta.is_file() || meta.mode() & 0o111 == 0 {
        return Err(err(&path, "not an executable file".into()));
    }
    if path.to_str().is_none() {
        return Err(err(&path, "not a UTF-8 path (engine configs are text)".into()));
    }
    Ok(path)
}

fn unix_time() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Copies `bytes` (the file's current content) to `<file>.mighook-backup-<unix time>`, never over an existing file.
fn backup(path: &Path, bytes: &[u8]) -> Result<PathBuf, SetupError> {
    let mode = fs::metadata(path).map(|m| m.mode() & 0o7777).unwrap_or(0o600);
    let base = format!("{}.mighook-backup-{}", path.file_name().unwrap_or_default().to_string_lossy(), unix_time());
    for n in 0..100 {
        let name = if n == 0 { base.clone() } else { format!("{base}-{n}") };
        let b = path.with_file_name(name);
        match fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&b) {
            Ok(mut f) => {
                use std::io::Write;
                f.write_all(bytes)
                    .and_then(|()| f.set_permissions(fs::Permissions::from_mode(mode)))
                    .and_then(|()| f.sync_all())
                    .map_err(|e| write_err(&b, e))?;
                return Ok(b);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(write_err(&b, e)),
        }
    }
    Err(write_err(path, "no free backup name"))
}

pub(crate) fn create_dirs(dir: &Path) -> Result<(), SetupError> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new().recursive(true).mode(0o755).create(dir).map_err(|e| write_err(dir, e))
}

/// Carries out the steps (or describes them, for a dry run). Returns the report.
#[cfg(test)]
fn apply(steps: &[Step], dry_run: bool, engine: &str) -> Result<String, SetupError> {
    apply_recording(steps, dry_run, engine, &mut vec![])
}

/// [`apply`], adding (file, backup) for each backup made to `backups`.
fn apply_recording(
    steps: &[Step],
    dry_run: bool,
    engine: &str,
    backups: &mut Vec<(PathBuf, PathBuf)>,
) -> Result<String, SetupError> {
    let mut out = String::new();
    let changing = steps.iter().any(Step::changes);
    if !changing {
        let _ = writeln!(out, "{engine}: already configured, nothing changed");
    }
    for step in steps {
        match step {
            Step::Write { path, old, new } if dry_run => {
                let _ = match old {
                    None => writeln!(out, "would create {}:\n{new}", path.display()),
                    Some(old) => {
                        writeln!(out, "would change {} (backup first):\n{}", path.display(), diff::unified(old, new))
                    }
                };
            }
            Step::Write { path, old, new } => {
                if let Some(dir) = path.parent() {
                    create_dirs(dir)?;
                }
                let now = fs::read(path).ok();
                // The file changed since it was read: something else is editing it.
                if now.as_deref() != old.as_deref().map(str::as_bytes) {
                    return Err(write_err(path, "changed while mighook was preparing it; run setup again"));
                }
                let saved = now.map(|bytes| backup(path, &bytes)).transpose()?;
                if let Some(b) = &saved {
                    backups.push((path.clone(), b.clone()));
                }
                crate::atomic_file::replace_durable(path, new.as_bytes(), 0o644).map_err(|e| write_err(path, e))?;
                let _ = match saved {
                    Some(b) => writeln!(out, "wrote {} (backup: {})", path.display(), b.display()),
                    None => writeln!(out, "created {}", path.display()),
                };
            }
            Step::Unchanged(path) => {
                let _ = writeln!(out, "{}: already configured", path.display());
            }
            Step::Link { path, target } if dry_run => {
                let _ = writeln!(out, "would link {} -> {}", path.display(), target.display());
            }
            Step::Link { path, target } => {
                std::os::unix::fs::symlink(target, path).map_err(|e| write_err(path, e))?;
                let _ = writeln!(out, "linked {} -> {}", path.display(), target.display());
            }
            Step::LinkOk(path) => {
                let _ = writeln!(out, "{}: already links to mighook", path.display());
            }
            Step::Note(n) => {
                let _ = writeln!(out, "note: {n}");
            }
            Step::Hint(h) if changing => {
                let _ = writeln!(out, "{h}");
            }
            Step::Hint(_) => {}
        }
    }
    if dry_run && changing {
        let _ = writeln!(out, "dry run: nothing written");
    }
    Ok(out)
}

/// The steps for one engine.
fn steps(engine: Engine, ctx: &Ctx) -> Result<Vec<Step>, SetupError> {
    match engine {
        Engine::Docker => docker::steps(ctx),
        Engine::Containerd => containerd::steps(ctx),
        Engine::Crio => hooksd::crio_steps(ctx),
        Engine::Podman => hooksd::podman_steps(ctx),
    }
}

/// This node's CDI spec, rendered as `mighook cdi generate` writes it.
fn cdi_spec(settings: &Settings) -> Result<String, String> {
    let spec = crate::cdi::generate_spec(settings, &settings.driver()).map_err(|e| e.to_string())?;
    Ok(crate::cdi::render(&spec, crate::cdi::Format::Json))
}

/// `containerd --version` as (major, minor): `containerd github.com/containerd/containerd v1.7.24 <commit>`
/// (Debian: `... 1.6.20~ds1 1.6.20~ds1-1+b1`). Setup runs once per node, not per container start,
/// so asking the installed binary is fine.
fn containerd_version() -> Option<(u64, u64)> {
    let out = std::process::Command::new("containerd").arg("--version").output().ok()?;
    parse_containerd_version(&String::from_utf8_lossy(&out.stdout))
}

fn parse_containerd_version(text: &str) -> Option<(u64, u64)> {
    text.split_whitespace().skip(1).find_map(|word| {
        let mut parts = word.trim_start_matches('v').split(['.', '~', '-', '+']);
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some((major, minor))
    })
}

pub fn run(settings: &Settings, options: &SetupOptions) -> Result<String, SetupError> {
    let name = format!("{:?}", options.engine).to_lowercase();
    if options.undo {
        return record::undo(&options.config_root, &name, options.dry_run);
    }
    if options.set_as_default && options.engine == Engine::Podman {
        return Err(SetupError::Refused(
            "--set-as-default: podman has no default runtime to set; its hooks.d hook already serves every container"
                .into(),
        ));
    }
    let cdi_spec = matches!(options.engine, Engine::Podman | Engine::Crio).then(|| cdi_spec(settings));
    let ctx = Ctx {
        root: options.config_root.clone(),
        binary: binary(options.binary.as_deref())?,
        cdi_spec,
        set_as_default: options.set_as_default,
        config_file: settings.config_path.as_ref().map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone())),
        containerd_version: if options.engine == Engine::Containerd { containerd_version() } else { None },
    };
    let steps = steps(options.engine, &ctx)?;
    let mut backups = vec![];
    let result = apply_recording(&steps, options.dry_run, &name, &mut backups);
    if !options.dry_run {
        // Whatever was written before an error is recorded too, so that undo can still put it back.
        let written: Vec<Step> = match &result {
            Ok(_) => steps,
            Err(_) => steps.into_iter().filter(written_now).collect(),
        };
        let done = record::of_steps(&written, &backups, &ctx.host(hooksd::CDI_SPEC));
        record::save(&record::path(&ctx.root, &name), done)?;
    }
    result
}

/// A write or link step that is in place now (after a run that stopped on an error).
fn written_now(step: &Step) -> bool {
    match step {
        Step::Write { path, new, .. } => fs::read(path).is_ok_and(|b| b == new.as_bytes()),
        Step::Link { path, .. } => fs::symlink_metadata(path).is_ok(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_static_files_under_hooks_are_what_setup_writes_for_usr_bin() {
        let bin = Path::new("/usr/bin/mighook");
        let shim = Path::new("/usr/bin/nvidia-container-runtime");
        assert_eq!(include_str!("../hooks/oci-mighook-hook.json"), hook_json(bin));
        assert_eq!(include_str!("../hooks/docker-daemon.json"), docker_daemon_snippet(shim));
        assert_eq!(
            include_str!("../hooks/crio-99-mighook.toml"),
            crio_dropin(shim, Some(Path::new(hooksd::PACKAGED_CONFIG)), false)
        );
        assert_eq!(
            include_str!("../hooks/containerd-99-mighook.toml"),
            containerd_dropin(2, None, shim, ContainerdExtras::default()).unwrap()
        );
    }

    #[test]
    fn a_binary_must_be_an_executable_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("mighook");
        fs::write(&f, "").unwrap();
        assert!(binary(Some(&f)).unwrap_err().to_string().ends_with("not an executable file"));
        assert!(binary(Some(&dir.path().join("none"))).is_err());
        fs::set_permissions(&f, fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(binary(Some(&f)).unwrap(), f);
    }

    #[test]
    fn containerd_versions_as_the_binaries_print_them() {
        let v = |t| parse_containerd_version(t);
        assert_eq!(v("containerd github.com/containerd/containerd v1.7.24 88bf19b\n"), Some((1, 7)));
        assert_eq!(v("containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+b1\n"), Some((1, 6)));
        assert_eq!(v("containerd containerd.io v2.1.4 75cb2b7\n"), Some((2, 1)));
        assert_eq!(v("bash: containerd: command not found"), None);
    }

    #[test]
    fn backups_never_overwrite_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("daemon.json");
        fs::write(&f, "{}").unwrap();
        let a = backup(&f, b"one").unwrap();
        let b = backup(&f, b"two").unwrap();
        assert_ne!(a, b);
        assert_eq!((fs::read_to_string(&a).unwrap(), fs::read_to_string(&b).unwrap()), ("one".into(), "two".into()));
        assert!(a.file_name().unwrap().to_str().unwrap().starts_with("daemon.json.mighook-backup-"));
    }

    #[test]
    fn hints_only_when_something_changes() {
        let s = [Step::Unchanged("/x".into()), Step::Hint("restart it".into()), Step::Note("n".into())];
        let out = apply(&s, false, "docker").unwrap();
        assert_eq!(out, "docker: already configured, nothing changed\n/x: already configured\nnote: n\n");
    }

    #[test]
    fn a_dry_run_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etc/x.toml");
        let s = [
            Step::Write { path: path.clone(), old: None, new: "a = 1\n".into() },
            Step::Link { path: dir.path().join("l"), target: "t".into() },
        ];
        let out = apply(&s, true, "crio").unwrap();
        assert!(
            out.contains("would create") && out.contains("would link") && out.ends_with("dry run: nothing written\n"),
            "{out}"
        );
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_file_changed_behind_our_back_is_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.json");
        fs::write(&path, "{\"a\": 2}").unwrap();
        let s = [Step::Write { path: path.clone(), old: Some("{\"a\": 1}".into()), new: "{}".into() }];
        assert!(apply(&s, false, "docker").unwrap_err().to_string().contains("changed while"));
        assert_eq!(fs::read_to_string(&path).unwrap(), "{\"a\": 2}");
    }
}
