//! Loading a missing NVIDIA kernel module (`load-kmods`), as NVIDIA's toolkit does.
//!
//! `nvidia-uvm` registers its char major only when loaded, and distributions
//! often load it on first use (nvidia-modprobe, udev rules). NVIDIA's hook
//! passes `--load-kmods` by default, so a container asking for `compute` on a
//! host where nothing has used CUDA yet still works. mighook does the same: the
//! one child process it ever starts is the HOST's modprobe, by the absolute path
//! of its own settings (never anything of the container's), and only when a
//! requested module is missing; each module is tried at most once per process.
//!
//! Whether a module is loaded is read from `/proc/modules` (as nvidia-modprobe's
//! `is_kernel_module_loaded` does); `/proc/modules` names use `_` where modprobe
//! names use `-`.

use super::DriverError;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// The host's modprobe, run at most once per module.
#[derive(Debug)]
pub struct Modprobe {
    path: PathBuf,
    /// Each module tried so far, with its outcome (an error's text).
    tried: Mutex<BTreeMap<String, Result<(), String>>>,
}

impl Modprobe {
    /// `path` must be absolute (the config refuses anything else).
    pub fn new(path: &Path) -> Self {
        Modprobe { path: path.to_path_buf(), tried: Mutex::new(BTreeMap::new()) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `<path> <module>` unless it already ran for `module`; the first run's outcome stands.
    pub fn load(&self, module: &str) -> Result<(), DriverError> {
        let mut tried = self.tried.lock().unwrap_or_else(|p| p.into_inner());
        let outcome = tried.entry(module.to_string()).or_insert_with(|| self.run(module));
        outcome
            .clone()
            .map_err(|reason| DriverError::Modprobe { command: format!("{} {module}", self.path.display()), reason })
    }

    fn run(&self, module: &str) -> Result<(), String> {
        crate::log::info(&format!("loading kernel module {module}: {} {module}", self.path.display()));
        // Nothing of mighook's environment (let alone a container's) reaches it.
        let out = Command::new(&self.path)
            .arg(module)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run it: {e}"))?;
        if out.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let said = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
        let said: String = said.chars().take(200).collect();
        Err(match (out.status.code(), said.is_empty()) {
            (Some(code), true) => format!("exit status {code}"),
            (Some(code), false) => format!("exit status {code}: {said}"),
            (None, _) => format!("killed ({})", out.status),
        })
    }
}

/// Whether `/proc/modules` text lists `module` (modprobe spelling: `nvidia-modeset`).
pub fn listed_in_proc_modules(text: &str, module: &str) -> bool {
    let name = module.replace('-', "_");
    text.lines().any(|l| l.split_whitespace().next() == Some(name.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODULES: &str = "nvidia_uvm 1540096 0 - Live 0x0000000000000000 (POE)\n\
        nvidia_modeset 1314816 0 - Live 0x0000000000000000 (POE)\n\
        nvidia 56823808 2 nvidia_uvm,nvidia_modeset, Live 0x0000000000000000 (POE)\n";

    #[test]
    fn proc_modules_names_use_underscores() {
        assert!(listed_in_proc_modules(MODULES, "nvidia-modeset"));
        assert!(listed_in_proc_modules(MODULES, "nvidia-uvm"));
        assert!(listed_in_proc_modules(MODULES, "nvidia"));
        assert!(!listed_in_proc_modules(MODULES, "nvidia-drm"));
        assert!(!listed_in_proc_modules("nvidia 1 0 - Live 0x0\n", "nvidia-uvm"));
    }

    /// Written by a child shell: a write fd of this process, inherited by another test
    /// thread's fork for a moment, would make exec fail with ETXTBSY.
    fn script(dir: &Path, body: &str) -> PathBuf {
        let path = dir.join("modprobe");
        let status = std::process::Command::new("/bin/sh")
            .args(["-c", "printf '#!/bin/sh\\n%s\\n' \"$1\" > \"$2\" && chmod 755 \"$2\"", "sh", body])
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success());
        path
    }

    #[test]
    fn each_module_is_tried_once() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("calls");
        let m = Modprobe::new(&script(dir.path(), &format!("echo \"$*\" >> {}", log.display())));
        m.load("nvidia-uvm").unwrap();
        m.load("nvidia-uvm").unwrap();
        m.load("nvidia-modeset").unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "nvidia-uvm\nnvidia-modeset\n");
    }

    #[test]
    fn it_runs_with_an_empty_environment() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("env");
        let m = Modprobe::new(&script(dir.path(), &format!("env > {}", log.display())));
        m.load("nvidia-uvm").unwrap();
        let env = std::fs::read_to_string(&log).unwrap();
        assert!(!env.contains("CARGO"), "{env}");
        assert!(env.contains("PATH=/usr/sbin:/usr/bin:/sbin:/bin"), "{env}");
    }

    #[test]
    fn a_failing_modprobe_is_an_error_with_its_message_and_is_not_retried() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("calls");
        let body =
            format!("echo x >> {}\necho 'modprobe: FATAL: Module nvidia-uvm not found.' >&2\nexit 1", log.display());
        let m = Modprobe::new(&script(dir.path(), &body));
        let want = format!(
            "{} nvidia-uvm failed: exit status 1: modprobe: FATAL: Module nvidia-uvm not found.",
            dir.path().join("modprobe").display()
        );
        assert_eq!(m.load("nvidia-uvm").unwrap_err().to_string(), want);
        assert_eq!(m.load("nvidia-uvm").unwrap_err().to_string(), want);
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "x\n");
    }

    #[test]
    fn a_missing_modprobe_is_an_error_naming_it() {
        let m = Modprobe::new(Path::new("/nonexistent/modprobe"));
        let e = m.load("nvidia-uvm").unwrap_err().to_string();
        assert!(e.starts_with("/nonexistent/modprobe nvidia-uvm failed: cannot run it: "), "{e}");
    }
}
