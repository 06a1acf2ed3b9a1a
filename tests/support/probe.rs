//! Parsing what `tests/e2e/openprobe.c` prints inside a container.
//!
//! One line per probed path, one per directory entry for `ls:` and one per line
//! for `cat:`; the format is documented in the C source. A run that lost its
//! trailing `probe: done` line is rejected, so a crashed probe cannot pass.

use std::collections::BTreeMap;

/// open() of an existing node whose device the cgroup allows, with no driver behind it.
pub const ENXIO: i32 = 6;
/// open() of a node the device cgroup denies.
pub const EPERM: i32 = 1;

/// Which step of a probe gave the result's errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `mknod:` failed; nothing was probed.
    Mknod,
    /// `stat()` failed (errno 2: the node does not exist).
    Stat,
    /// `stat()` worked and `open(O_RDWR)` was tried: errno 0 means it opened.
    Open,
}

/// One probed path: `PATH: type=c MAJ:MIN mode=0666 owner=UID:GID acc=rw open=OK|FAIL errno=N`
/// (or a failed mknod/stat).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    pub path: String,
    pub step: Step,
    /// `c`, `b`, `d`, `f` or `?`; `-` when stat or mknod failed.
    pub kind: char,
    pub major: u32,
    pub minor: u32,
    /// Permission bits of the node.
    pub mode: u32,
    /// Owner and group of the node as the container sees them.
    pub uid: u32,
    pub gid: u32,
    /// Opened `O_RDONLY` (the mode has no write bit, like 0444 nvidia-caps nodes) instead of `O_RDWR`.
    pub read_only: bool,
    /// errno of `step`; 0 when the open succeeded.
    pub errno: i32,
}

impl ProbeResult {
    /// `c 195:2 errno=6`: what the assertions compare, in one short string.
    pub fn summary(&self) -> String {
        match self.step {
            Step::Open => format!("{} {}:{} errno={}", self.kind, self.major, self.minor, self.errno),
            Step::Stat => format!("stat errno={}", self.errno),
            Step::Mknod => format!("mknod errno={}", self.errno),
        }
    }
}

/// Everything one probe run printed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProbeOutput {
    pub results: Vec<ProbeResult>,
    /// `ls:DIR` → sorted entry names; an `Err(errno)` when opendir failed.
    pub listings: BTreeMap<String, Result<Vec<String>, i32>>,
    /// `cat:FILE` → its lines; an `Err(errno)` when open failed.
    pub files: BTreeMap<String, Result<Vec<String>, i32>>,
}

impl ProbeOutput {
    /// Parse the probe's stdout. Panics on a line it does not understand or a missing `probe: done`.
    pub fn parse(stdout: &str) -> ProbeOutput {
        let mut out = ProbeOutput::default();
        let mut done = false;
        for line in stdout.lines() {
            assert!(!done, "probe output continues after `probe: done`: {line:?}\n--- stdout:\n{stdout}");
            if line == "probe: done" {
                done = true;
            } else if let Some(rest) = line.strip_prefix("ls:") {
                let (dir, item) = split_field(rest, line);
                let entry = out.listings.entry(dir.to_string()).or_insert_with(|| Ok(Vec::new()));
                match (item.strip_prefix("entry="), entry) {
                    (Some(name), Ok(names)) => names.push(name.to_string()),
                    (None, entry) => *entry = Err(errno_field(item, line)),
                    (Some(_), Err(_)) => panic!("ls entry after an ls error: {line:?}"),
                }
            } else if let Some(rest) = line.strip_prefix("cat:") {
                let (file, item) = split_field(rest, line);
                let entry = out.files.entry(file.to_string()).or_insert_with(|| Ok(Vec::new()));
                match (item.strip_prefix("line="), entry) {
                    (Some(text), Ok(lines)) => lines.push(text.to_string()),
                    (None, entry) => *entry = Err(errno_field(item, line)),
                    (Some(_), Err(_)) => panic!("cat line after a cat error: {line:?}"),
                }
            } else {
                out.results.push(parse_result(line));
            }
        }
        assert!(done, "probe output lacks its final `probe: done` line (crashed or never ran)\n--- stdout:\n{stdout}");
        for names in out.listings.values_mut().filter_map(|l| l.as_mut().ok()) {
            names.sort();
        }
        out
    }

    /// The result for `path`; panics (showing everything) when it was not probed.
    pub fn get(&self, path: &str) -> &ProbeResult {
        self.results
            .iter()
            .find(|r| r.path == path)
            .unwrap_or_else(|| panic!("{path} was not probed; results: {:#?}", self.results))
    }

    /// `get(path).summary()`, for one-line assertions: `assert_eq!(p.summary_of("/dev/nvidia2"), "c 195:2 errno=6")`.
    pub fn summary_of(&self, path: &str) -> String {
        self.get(path).summary()
    }

    /// Sorted names in `dir`; panics when `ls:dir` was not asked for or failed.
    pub fn ls(&self, dir: &str) -> &[String] {
        match self.listings.get(dir) {
            Some(Ok(names)) => names,
            Some(Err(errno)) => panic!("ls:{dir} failed with errno {errno}"),
            None => panic!("ls:{dir} was not probed (or is empty: an empty dir prints no line)"),
        }
    }

    /// Sorted names in `dir`, empty when the directory printed no entry at all.
    pub fn ls_or_empty(&self, dir: &str) -> Vec<String> {
        match self.listings.get(dir) {
            Some(Ok(names)) => names.clone(),
            Some(Err(errno)) => panic!("ls:{dir} failed with errno {errno}"),
            None => Vec::new(),
        }
    }

    /// Lines of `file`; panics when `cat:file` was not asked for or failed.
    pub fn cat(&self, file: &str) -> &[String] {
        match self.files.get(file) {
            Some(Ok(lines)) => lines,
            Some(Err(errno)) => panic!("cat:{file} failed with errno {errno}"),
            None => panic!("cat:{file} was not probed (or is empty)"),
        }
    }
}

fn split_field<'a>(rest: &'a str, line: &str) -> (&'a str, &'a str) {
    rest.split_once(": ").unwrap_or_else(|| panic!("bad probe line {line:?}"))
}

fn errno_field(s: &str, line: &str) -> i32 {
    s.strip_prefix("errno=").and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("bad errno in probe line {line:?}"))
}

fn parse_result(line: &str) -> ProbeResult {
    let bad = || -> ! { panic!("bad probe line {line:?}") };
    let (path, rest) = line.split_once(": ").unwrap_or_else(|| bad());
    let failed = |step, errno| ProbeResult {
        path: path.to_string(),
        step,
        kind: '-',
        major: 0,
        minor: 0,
        mode: 0,
        uid: 0,
        gid: 0,
        read_only: false,
        errno,
    };
    if let Some(e) = rest.strip_prefix("stat ") {
        return failed(Step::Stat, errno_field(e, line));
    }
    if let Some(e) = rest.strip_prefix("mknod ") {
        return failed(Step::Mknod, errno_field(e, line));
    }
    // type=c MAJ:MIN mode=0666 owner=UID:GID acc=rw open=OK|FAIL errno=N
    let fields: Vec<&str> = rest.split(' ').collect();
    let [ty, dev, mode, owner, acc, open, errno] = fields[..] else { bad() };
    let mode = mode.strip_prefix("mode=").and_then(|m| u32::from_str_radix(m, 8).ok()).unwrap_or_else(|| bad());
    let (uid, gid) = owner
        .strip_prefix("owner=")
        .and_then(|o| o.split_once(':'))
        .and_then(|(u, g)| Some((u.parse().ok()?, g.parse().ok()?)))
        .unwrap_or_else(|| bad());
    let read_only = match acc {
        "acc=rw" => false,
        "acc=r" => true,
        _ => bad(),
    };
    let kind = ty.strip_prefix("type=").and_then(|t| t.chars().next()).unwrap_or_else(|| bad());
    let (major, minor) = dev.split_once(':').unwrap_or_else(|| bad());
    let errno = errno_field(errno, line);
    match open {
        "open=OK" if errno == 0 => {}
        "open=FAIL" if errno != 0 => {}
        _ => bad(),
    }
    ProbeResult {
        path: path.to_string(),
        step: Step::Open,
        kind,
        major: major.parse().unwrap_or_else(|_| bad()),
        minor: minor.parse().unwrap_or_else(|_| bad()),
        mode,
        uid,
        gid,
        read_only,
        errno,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
/dev/nvidia2: type=c 195:2 mode=0666 owner=0:44 acc=rw open=FAIL errno=6
/dev/null: type=c 1:3 mode=0666 owner=0:0 acc=rw open=OK errno=0
/dev/nvidia-caps/nvidia-cap345: type=c 508:345 mode=0444 owner=0:0 acc=r open=FAIL errno=6
/dev/nvidia0: stat errno=2
/dev/nb: mknod errno=1
ls:/dev: entry=null
ls:/dev: entry=nvidia2
ls:/nope: errno=2
cat:/f: line=a b
cat:/g: errno=13
probe: done
";

    #[test]
    fn parses_every_line_kind() {
        let p = ProbeOutput::parse(SAMPLE);
        assert_eq!(p.summary_of("/dev/nvidia2"), "c 195:2 errno=6");
        assert_eq!(p.summary_of("/dev/null"), "c 1:3 errno=0");
        assert_eq!(
            (p.get("/dev/nvidia-caps/nvidia-cap345").mode, p.get("/dev/nvidia-caps/nvidia-cap345").read_only),
            (0o444, true)
        );
        assert_eq!((p.get("/dev/nvidia2").mode, p.get("/dev/nvidia2").read_only), (0o666, false));
        assert_eq!((p.get("/dev/nvidia2").uid, p.get("/dev/nvidia2").gid), (0, 44));
        assert_eq!(p.summary_of("/dev/nvidia0"), "stat errno=2");
        assert_eq!(p.summary_of("/dev/nb"), "mknod errno=1");
        assert_eq!(p.ls("/dev"), ["null", "nvidia2"]);
        assert_eq!(p.listings["/nope"], Err(2));
        assert_eq!(p.cat("/f"), ["a b"]);
        assert_eq!(p.files["/g"], Err(13));
    }

    #[test]
    #[should_panic(expected = "probe: done")]
    fn rejects_truncated_output() {
        ProbeOutput::parse("/dev/null: type=c 1:3 mode=0666 owner=0:0 acc=rw open=OK errno=0\n");
    }

    #[test]
    #[should_panic(expected = "bad probe line")]
    fn rejects_garbage() {
        ProbeOutput::parse("/dev/null: type=c 1:3 mode=0666 owner=0:0 acc=rw open=FAIL errno=0\nprobe: done\n");
    }
}
