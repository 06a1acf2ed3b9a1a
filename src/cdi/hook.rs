//! The createContainer hook mighook's CDI spec names: `mighook cdi-hook`.
//!
//! A CDI spec can mount files and create device nodes, but not make symlinks
//! or update the loader cache; nvidia-ctk's specs run `nvidia-cdi-hook` for
//! that. mighook's spec runs mighook itself, with everything spelled out in the
//! arguments (`--link TARGET::LINK`, `--lib SONAME::PATH`), so the hook does
//! exactly what the spec says and reads nothing else of the host. The hook
//! entry carries an explicit `env`: a hook must never inherit the container's
//! environment (CVE-2025-23266).

use super::CdiError;
use crate::driver_files::{DriverEdits, Symlink};
use crate::ldcache::Entry;
use serde::Serialize;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The subcommand the spec's hook runs.
pub const SUBCOMMAND: &str = "cdi-hook";
/// The whole environment the hook gets.
pub const HOOK_ENV: &str = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";

/// CDI `hooks` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Hook {
    pub hook_name: &'static str,
    pub path: String,
    pub args: Vec<String>,
    pub env: Vec<String>,
}

/// The hook that makes `edits`' links and merges its cache entries, run as `binary`.
pub fn hook(binary: &Path, edits: &DriverEdits) -> Result<Option<Hook>, CdiError> {
    if edits.symlinks.is_empty() && edits.ld_cache.is_empty() {
        return Ok(None);
    }
    let utf8 = |p: &Path| {
        p.to_str().map(str::to_string).ok_or_else(|| CdiError::Resolve(format!("{}: not UTF-8", p.display())))
    };
    let mut args = vec!["mighook".to_string(), SUBCOMMAND.to_string()];
    for l in &edits.symlinks {
        args.push("--link".into());
        args.push(format!("{}::{}", l.target, utf8(&l.link)?));
    }
    for e in &edits.ld_cache {
        let (key, value) = (String::from_utf8_lossy(&e.key), String::from_utf8_lossy(&e.value));
        args.push("--lib".into());
        args.push(format!("{key}::{value}"));
    }
    if let Some(version) = &edits.cuda_compat {
        args.push("--cuda-compat".into());
        args.push(version.clone());
    }
    Ok(Some(Hook { hook_name: "createContainer", path: utf8(binary)?, args, env: vec![HOOK_ENV.into()] }))
}

/// The edits a `cdi-hook` command line asks for: the inverse of [`hook`].
/// `cuda_compat`: the host driver version that the image's CUDA compat libcuda is
/// compared with (`--cuda-compat`; absent when `cuda-compat = false`).
pub fn hook_edits(links: &[String], libs: &[String], cuda_compat: Option<&str>) -> Result<DriverEdits, CdiError> {
    let split = |arg: &str, what: &str| -> Result<(String, String), CdiError> {
        let bad = || CdiError::Resolve(format!("cdi-hook {what} {}: expected A::B", crate::request::shown(arg)));
        let (a, b) = arg.split_once("::").ok_or_else(bad)?;
        if a.is_empty() || !b.starts_with('/') {
            return Err(bad());
        }
        Ok((a.to_string(), b.to_string()))
    };
    let mut edits = DriverEdits::default();
    for l in links {
        let (target, link) = split(l, "--link")?;
        edits.symlinks.push(Symlink { target, link: PathBuf::from(link) });
    }
    for l in libs {
        let (soname, path) = split(l, "--lib")?;
        if soname.contains('/') {
            return Err(CdiError::Resolve(format!("cdi-hook --lib {}: a SONAME has no /", crate::request::shown(l))));
        }
        edits.ld_cache.push(Entry::x86_64(soname.into_bytes(), Path::new(&path).as_os_str().as_bytes()));
    }
    if let Some(v) = cuda_compat {
        edits.cuda_compat = Some(driver_version(v, "cdi-hook --cuda-compat")?);
    }
    Ok(edits)
}

/// A driver version as NVIDIA's hooks take it (`550.54.15`): digits and dots, a digit first.
pub fn driver_version(v: &str, what: &str) -> Result<String, CdiError> {
    let ok = v.len() <= 32
        && v.starts_with(|c: char| c.is_ascii_digit())
        && v.chars().all(|c| c.is_ascii_digit() || c == '.');
    if !ok {
        return Err(CdiError::Resolve(format!("{what} {}: not a driver version", crate::request::shown(v))));
    }
    Ok(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edits() -> DriverEdits {
        DriverEdits {
            mounts: vec![],
            symlinks: vec![Symlink { target: "libcuda.so.550.54.15".into(), link: "/usr/lib64/libcuda.so.1".into() }],
            ld_cache: vec![Entry::x86_64(&b"libcuda.so.1"[..], &b"/usr/lib64/libcuda.so.1"[..])],
            cuda_compat: Some("550.54.15".into()),
        }
    }

    #[test]
    fn the_hook_spells_out_every_link_and_entry_with_its_own_env() {
        let h = hook(Path::new("/usr/bin/mighook"), &edits()).unwrap().unwrap();
        assert_eq!(h.hook_name, "createContainer");
        assert_eq!(h.path, "/usr/bin/mighook");
        assert_eq!(
            h.args,
            [
                "mighook",
                "cdi-hook",
                "--link",
                "libcuda.so.550.54.15::/usr/lib64/libcuda.so.1",
                "--lib",
                "libcuda.so.1::/usr/lib64/libcuda.so.1",
                "--cuda-compat",
                "550.54.15"
            ]
        );
        assert_eq!(h.env, [HOOK_ENV]);
    }

    #[test]
    fn the_command_line_gives_back_the_same_edits() {
        let e = edits();
        let h = hook(Path::new("/m"), &e).unwrap().unwrap();
        let arg = |flag: &str| -> Vec<String> {
            h.args[2..].chunks(2).filter(|c| c[0] == flag).map(|c| c[1].clone()).collect()
        };
        let compat = arg("--cuda-compat");
        assert_eq!(hook_edits(&arg("--link"), &arg("--lib"), compat.first().map(String::as_str)).unwrap(), e);
    }

    #[test]
    fn nothing_to_do_is_no_hook() {
        assert_eq!(hook(Path::new("/m"), &DriverEdits::default()).unwrap(), None);
    }

    #[test]
    fn malformed_arguments_are_errors_naming_them() {
        let e = hook_edits(&["libcuda.so.1".into()], &[], None).unwrap_err().to_string();
        assert_eq!(e, "cdi: cdi-hook --link libcuda.so.1: expected A::B");
        assert!(hook_edits(&["a::relative/link".into()], &[], None).is_err());
        assert!(hook_edits(&[], &["a/b::/x".into()], None).is_err());
        let e = hook_edits(&[], &[], Some("../550")).unwrap_err().to_string();
        assert_eq!(e, "cdi: cdi-hook --cuda-compat ../550: not a driver version");
    }
}
