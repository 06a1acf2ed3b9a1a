//! cgroup v1 `devices` controller: one `devices.allow` write per rule.
//!
//! The kernel parses each `write` to `devices.allow` as one rule
//! (`c 195:0 rw`), so rules are written one at a time, through one open of
//! the file (an open per rule was most of the cost for 56 devices). The file
//! is opened `O_WRONLY | O_APPEND | O_NOFOLLOW` without `O_CREAT`: a cgroup
//! directory that lacks it is not a devices cgroup, and that is an error.

use std::io;
use std::path::{Path, PathBuf};

use crate::edits::DeviceRule;
use crate::sys::FsOps;

#[derive(Debug, thiserror::Error)]
pub enum V1Error {
    #[error("device rule {rule:?} cannot be written to a v1 devices cgroup: {reason}")]
    Unsupported { rule: DeviceRule, reason: &'static str },
    #[error("cannot write {line:?} to {}: {source}", file.display())]
    Write { file: PathBuf, line: String, source: io::Error },
    #[error("{error}; taking back the lines written before it failed: {undo}")]
    Incomplete { error: Box<V1Error>, undo: Box<V1Error> },
}

/// What was written where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Report {
    pub allow_file: PathBuf,
    pub lines: Vec<String>,
}

/// The `devices.allow` line for `rule`: `c 195:0 rw`.
pub fn rule_line(rule: &DeviceRule) -> Result<String, V1Error> {
    let unsupported = |reason| V1Error::Unsupported { rule: *rule, reason };
    if !rule.allow {
        return Err(unsupported("only allow rules are supported"));
    }
    if !matches!(rule.kind, 'c' | 'b') {
        return Err(unsupported("type must be c or b"));
    }
    if rule.access.is_empty() || !rule.access.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
        return Err(unsupported("access must be a non-empty subset of rwm"));
    }
    Ok(format!("{} {}:{} {}", rule.kind, rule.major, rule.minor, rule.access))
}

/// Append every rule to `<cgroup_dir>/devices.allow`.
pub fn allow(sys: &impl FsOps, cgroup_dir: &Path, rules: &[DeviceRule]) -> Result<V1Report, V1Error> {
    // Check every rule before writing any, so a bad one leaves the cgroup untouched.
    let lines = rules.iter().map(rule_line).collect::<Result<Vec<_>, _>>()?;
    let allow_file = cgroup_dir.join("devices.allow");
    if lines.is_empty() {
        return Ok(V1Report { allow_file, lines });
    }
    let writes: Vec<String> = lines.iter().map(|l| format!("{l}\n")).collect();
    let chunks: Vec<&[u8]> = writes.iter().map(|w| w.as_bytes()).collect();
    if let Err((at, source)) = sys.append_each(&allow_file, &chunks) {
        let error = V1Error::Write { file: allow_file.clone(), line: lines[at].clone(), source };
        // The lines before `at` took effect: take them back, so a failed start leaves nothing.
        return Err(match deny(sys, &V1Report { allow_file, lines: lines[..at].to_vec() }) {
            Ok(()) => error,
            Err(undo) => V1Error::Incomplete { error: Box::new(error), undo: Box::new(undo) },
        });
    }
    Ok(V1Report { allow_file, lines })
}

/// Takes back what [`allow`] wrote: the same lines to `devices.deny` (next to
/// `devices.allow`), which removes exactly those rules. A rule the cgroup
/// already had before this start (the runtime's own) goes too; that is only
/// done on a failed start, whose container the runtime then never runs.
pub fn deny(sys: &impl FsOps, written: &V1Report) -> Result<(), V1Error> {
    if written.lines.is_empty() {
        return Ok(());
    }
    let deny_file = written.allow_file.with_file_name("devices.deny");
    let writes: Vec<String> = written.lines.iter().map(|l| format!("{l}\n")).collect();
    let chunks: Vec<&[u8]> = writes.iter().map(|w| w.as_bytes()).collect();
    sys.append_each(&deny_file, &chunks).map_err(|(at, source)| V1Error::Write {
        file: deny_file.clone(),
        line: written.lines[at].clone(),
        source,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::sys::fake::fs::RecordingFs;

    const DIR: &str = "/sys/fs/cgroup/devices/ctr";

    #[test]
    fn rule_lines() {
        assert_eq!(rule_line(&DeviceRule::allow_rw(195, 0)).unwrap(), "c 195:0 rw");
        assert_eq!(rule_line(&DeviceRule::allow_rw(511, 345)).unwrap(), "c 511:345 rw");
        assert!(rule_line(&DeviceRule { allow: false, ..DeviceRule::allow_rw(195, 0) }).is_err());
        assert!(rule_line(&DeviceRule { kind: 'a', ..DeviceRule::allow_rw(195, 0) }).is_err());
        assert!(rule_line(&DeviceRule { access: "rwx", ..DeviceRule::allow_rw(195, 0) }).is_err());
        assert!(rule_line(&DeviceRule { access: "", ..DeviceRule::allow_rw(195, 0) }).is_err());
    }

    #[test]
    fn one_append_per_rule_in_order() {
        let fs = RecordingFs::new().file(&format!("{DIR}/devices.allow"), "");
        let report =
            allow(&fs, Path::new(DIR), &[DeviceRule::allow_rw(195, 0), DeviceRule::allow_rw(195, 255)]).unwrap();
        assert_eq!(
            fs.changes(),
            [format!("append {DIR}/devices.allow c 195:0 rw"), format!("append {DIR}/devices.allow c 195:255 rw"),]
        );
        assert_eq!(fs.describe(&format!("{DIR}/devices.allow")).unwrap(), "file \"c 195:0 rw\\nc 195:255 rw\\n\"");
        assert_eq!(report.lines, ["c 195:0 rw", "c 195:255 rw"]);
    }

    #[test]
    fn bad_rule_writes_nothing() {
        let fs = RecordingFs::new().file(&format!("{DIR}/devices.allow"), "");
        let bad = DeviceRule { allow: false, ..DeviceRule::allow_rw(195, 1) };
        assert!(allow(&fs, Path::new(DIR), &[DeviceRule::allow_rw(195, 0), bad]).is_err());
        assert!(fs.changes().is_empty());
    }

    #[test]
    fn missing_allow_file_is_an_error_naming_it() {
        let fs = RecordingFs::new().dir(DIR);
        let e = allow(&fs, Path::new(DIR), &[DeviceRule::allow_rw(195, 0)]).unwrap_err();
        assert!(e.to_string().starts_with(&format!("cannot write \"c 195:0 rw\" to {DIR}/devices.allow: ")), "{e}");
    }

    #[test]
    fn a_write_failing_part_way_takes_back_the_lines_before_it() {
        let fs = RecordingFs::new()
            .file(&format!("{DIR}/devices.allow"), "")
            .file(&format!("{DIR}/devices.deny"), "")
            .fail("call", &format!("append {DIR}/devices.allow c 195:255 rw"), libc::EINVAL);
        let rules = [DeviceRule::allow_rw(195, 0), DeviceRule::allow_rw(195, 255), DeviceRule::allow_rw(195, 1)];
        let e = allow(&fs, Path::new(DIR), &rules).unwrap_err();
        assert!(matches!(e, V1Error::Write { .. }), "{e}");
        assert_eq!(
            fs.changes(),
            [
                format!("append {DIR}/devices.allow c 195:0 rw"),
                format!("append {DIR}/devices.allow c 195:255 rw"),
                format!("append {DIR}/devices.deny c 195:0 rw"),
            ]
        );
    }

    /// A temporary v1 devices cgroup that starts with every device denied.
    pub(crate) struct TestCgroup(pub PathBuf);

    impl TestCgroup {
        pub(crate) fn new(tag: &str) -> Option<TestCgroup> {
            let dir = PathBuf::from(format!("/sys/fs/cgroup/devices/mighook-test-{tag}-{}", std::process::id()));
            if !Path::new("/sys/fs/cgroup/devices/devices.allow").exists() {
                use std::io::Write;
                let _ =
                    writeln!(io::stderr(), "SKIPPED: {tag}: no cgroup v1 devices hierarchy at /sys/fs/cgroup/devices");
                return None;
            }
            std::fs::create_dir(&dir).unwrap();
            let cg = TestCgroup(dir);
            std::fs::write(cg.0.join("devices.deny"), "a").unwrap();
            Some(cg)
        }

        pub(crate) fn list(&self) -> String {
            std::fs::read_to_string(self.0.join("devices.list")).unwrap()
        }
    }

    impl Drop for TestCgroup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir(&self.0);
        }
    }

    #[test]
    fn real_devices_cgroup_gets_exactly_the_rules() {
        if !crate::sys::fake::fs::root_or_skip("real_devices_cgroup_gets_exactly_the_rules") {
            return;
        }
        let Some(cg) = TestCgroup::new("v1") else { return };
        assert_eq!(cg.list(), "");
        let rules = [DeviceRule::allow_rw(195, 0), DeviceRule::allow_rw(195, 255)];
        allow(&crate::sys::LinuxSys, &cg.0, &rules).unwrap();
        assert_eq!(cg.list(), "c 195:0 rw\nc 195:255 rw\n");
        // Appending the same rules again changes nothing.
        allow(&crate::sys::LinuxSys, &cg.0, &rules).unwrap();
        assert_eq!(cg.list(), "c 195:0 rw\nc 195:255 rw\n");
    }

    #[test]
    fn real_cgroup_dir_without_allow_file_is_not_created() {
        if !crate::sys::fake::fs::root_or_skip("real_cgroup_dir_without_allow_file_is_not_created") {
            return;
        }
        let t = tempfile::tempdir().unwrap();
        assert!(allow(&crate::sys::LinuxSys, t.path(), &[DeviceRule::allow_rw(195, 0)]).is_err());
        assert!(!t.path().join("devices.allow").exists());
    }
}
