//! The low-level runtime's command line, as docker, containerd and CRI-O pass it.
//!
//! runc-style: global flags, a subcommand, its flags and the container id, e.g.
//! `--root /run/docker/runtime-runc/moby --log L --log-format json create
//! --bundle B --pid-file P ID`. Only two facts matter to the shim: whether the
//! subcommand creates a container (`create`, `run`) and which bundle it names.
//! runc parses flags with Go's `flag` package (via urfave/cli), so a flag may
//! have one or two dashes and its value may follow `=` or be the next argument.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

/// Global flags that take a value: runc's, and crun's and youki's extras.
const GLOBAL_VALUE_FLAGS: &[&str] = &["root", "log", "log-format", "criu", "rootless", "cgroup-manager", "log-level"];
/// Global flags without a value.
const GLOBAL_BOOL_FLAGS: &[&str] = &["debug", "systemd-cgroup", "systemd-log", "help", "h", "version", "v"];
/// runc's subcommands: an unknown global flag followed by one of these takes no value.
const SUBCOMMANDS: &[&str] = &[
    "checkpoint",
    "create",
    "delete",
    "events",
    "exec",
    "features",
    "help",
    "init",
    "kill",
    "list",
    "pause",
    "ps",
    "restore",
    "resume",
    "run",
    "spec",
    "start",
    "state",
    "update",
];
/// `create`/`run` flags that take a value; their values must not be read as flags.
const CREATE_VALUE_FLAGS: &[&str] = &["console-socket", "pid-file", "preserve-fds"];

/// What the shim needs to know about one runtime invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// The subcommand; `None` for `--version` and the like.
    pub subcommand: Option<OsString>,
    /// `--bundle`/`-b` of `create`/`run` (last one wins, as in Go's flag package).
    pub bundle: Option<PathBuf>,
    /// The global `--log FILE`: where the engine reads the runtime's error from.
    pub log: Option<PathBuf>,
    /// The global `--log-format` (`text` or `json`).
    pub log_format: Option<String>,
}

impl Invocation {
    /// `create` and `run` make a container from `<bundle>/config.json`: the only calls the shim edits.
    pub fn creates(&self) -> bool {
        matches!(self.subcommand.as_deref().and_then(OsStr::to_str), Some("create" | "run"))
    }
}

/// `--name`, `-name`, `--name=v` → (`name`, inline value). `None` for non-flags, `-` and `--`.
fn flag(arg: &OsStr) -> Option<(&str, Option<&OsStr>)> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = arg.as_bytes();
    let body = bytes.strip_prefix(b"--").or_else(|| bytes.strip_prefix(b"-"))?;
    if body.is_empty() || body.starts_with(b"-") {
        return None;
    }
    let (name, value) = match body.iter().position(|b| *b == b'=') {
        Some(i) => (&body[..i], Some(OsStr::from_bytes(&body[i + 1..]))),
        None => (body, None),
    };
    Some((std::str::from_utf8(name).ok()?, value))
}

/// Reads a runtime command line. Never fails: anything it cannot place is passed on untouched.
pub fn parse(args: &[OsString]) -> Invocation {
    let mut i = 0;
    let (mut subcommand, mut log, mut log_format) = (None, None, None);
    while i < args.len() {
        let arg = args[i].as_os_str();
        if arg == "--" {
            subcommand = args.get(i + 1).cloned();
            i += 2;
            break;
        }
        let Some((name, inline)) = flag(arg) else {
            subcommand = Some(arg.to_os_string());
            i += 1;
            break;
        };
        let value = inline.map(OsStr::to_os_string).or_else(|| args.get(i + 1).cloned());
        match name {
            "log" => log = value.map(PathBuf::from),
            "log-format" => log_format = value.and_then(|v| v.into_string().ok()),
            _ => {}
        }
        let takes_value = if inline.is_some() || GLOBAL_BOOL_FLAGS.contains(&name) {
            false
        } else if GLOBAL_VALUE_FLAGS.contains(&name) {
            true
        } else {
            // A flag this table does not know: a value unless a subcommand follows at once.
            !args.get(i + 1).and_then(|n| n.to_str()).is_some_and(|n| SUBCOMMANDS.contains(&n))
        };
        i += if takes_value { 2 } else { 1 };
    }
    let mut inv = Invocation { subcommand, bundle: None, log, log_format };
    if inv.creates() {
        inv.bundle = bundle(args.get(i..).unwrap_or_default());
    }
    inv
}

/// The last `--bundle X`, `-b X`, `--bundle=X` or `-b=X` among a subcommand's arguments.
fn bundle(args: &[OsString]) -> Option<PathBuf> {
    let mut found = None;
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_os_str();
        if arg == "--" {
            break;
        }
        match flag(arg) {
            Some(("bundle" | "b", Some(v))) => found = Some(PathBuf::from(v)),
            Some(("bundle" | "b", None)) => {
                found = args.get(i + 1).map(PathBuf::from);
                i += 1;
            }
            Some((name, None)) if CREATE_VALUE_FLAGS.contains(&name) => i += 1,
            _ => {}
        }
        i += 1;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv(line: &str) -> Invocation {
        parse(&line.split_whitespace().map(OsString::from).collect::<Vec<_>>())
    }
    fn sub(line: &str) -> Option<String> {
        inv(line).subcommand.map(|s| s.into_string().unwrap())
    }
    fn bundle_of(line: &str) -> Option<String> {
        inv(line).bundle.map(|b| b.display().to_string())
    }

    #[test]
    fn docker_create_line() {
        let line = "--root /run/docker/runtime-runc/moby --log /b/log.json --log-format json create --bundle /b --pid-file /b/init.pid abc";
        let want = Invocation {
            subcommand: Some("create".into()),
            bundle: Some("/b".into()),
            log: Some("/b/log.json".into()),
            log_format: Some("json".into()),
        };
        assert_eq!(inv(line), want);
    }

    #[test]
    fn containerd_shim_lines() {
        assert_eq!(
            sub("--root /run/containerd/runc/k8s.io --log /b/log.json --log-format json start abc").as_deref(),
            Some("start")
        );
        assert_eq!(sub("--root /r --log /b/log.json --log-format json delete --force abc").as_deref(), Some("delete"));
        assert!(!inv("--root /r delete --force abc").creates());
    }

    #[test]
    fn global_flag_forms() {
        assert_eq!(sub("--root=/r --debug --systemd-cgroup create x").as_deref(), Some("create"));
        assert_eq!(sub("-root /r -log /l create x").as_deref(), Some("create"));
        assert_eq!(sub("--rootless false --criu /c run x").as_deref(), Some("run"));
        assert_eq!(sub("--debug=true state x").as_deref(), Some("state"));
        assert_eq!(sub("--cgroup-manager systemd create x").as_deref(), Some("create"));
    }

    #[test]
    fn log_flags_in_both_forms() {
        let i = inv("--log=/l --log-format=text delete x");
        assert_eq!((i.log.as_deref(), i.log_format.as_deref()), (Some(std::path::Path::new("/l")), Some("text")));
        assert_eq!(inv("--root /r start x").log, None);
    }

    #[test]
    fn unknown_global_flags_are_placed_by_what_follows() {
        assert_eq!(sub("--new-bool create x").as_deref(), Some("create"));
        assert_eq!(sub("--new-opt value create x").as_deref(), Some("create"));
    }

    #[test]
    fn version_and_help_have_no_subcommand() {
        assert_eq!(inv("--version"), Invocation { subcommand: None, bundle: None, log: None, log_format: None });
        assert_eq!(inv("-v").subcommand, None);
        assert_eq!(inv("").subcommand, None);
    }

    #[test]
    fn bundle_flag_forms() {
        assert_eq!(bundle_of("create --bundle /a x").as_deref(), Some("/a"));
        assert_eq!(bundle_of("create --bundle=/a x").as_deref(), Some("/a"));
        assert_eq!(bundle_of("create -b /a x").as_deref(), Some("/a"));
        assert_eq!(bundle_of("create -b=/a x").as_deref(), Some("/a"));
        assert_eq!(bundle_of("run -d -bundle /a x").as_deref(), Some("/a"));
        assert_eq!(bundle_of("create x --bundle /a").as_deref(), Some("/a"));
        assert_eq!(bundle_of("create -b /a -b /c x").as_deref(), Some("/c"));
    }

    #[test]
    fn no_bundle_flag_means_none() {
        assert_eq!(bundle_of("create x"), None);
        assert_eq!(bundle_of("create --pid-file -b x"), None);
        assert_eq!(bundle_of("create --console-socket /s x"), None);
        assert_eq!(bundle_of("create -- -b /a"), None);
    }

    #[test]
    fn only_create_and_run_carry_a_bundle() {
        assert_eq!(bundle_of("exec -b /a x"), None);
        assert!(inv("run x").creates());
        assert!(!inv("exec x").creates());
    }

    #[test]
    fn a_global_value_that_looks_like_a_subcommand_is_a_value() {
        assert_eq!(sub("--root create start x").as_deref(), Some("start"));
        assert_eq!(sub("--log run delete x").as_deref(), Some("delete"));
    }
}
