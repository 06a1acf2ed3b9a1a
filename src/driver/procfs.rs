//! The driver's /proc files, read under a configurable root.
//!
//! - `devices`: char majors by EXACT name (`nvidia-caps` is not
//!   `nvidia-caps-imex-channels`).
//! - `driver/nvidia-caps/mig-minors`: node minor of every possible MIG
//!   capability, keyed by the GPU's device MINOR (not its NVML index).
//! - `driver/nvidia/capabilities/...`: `DeviceFileMinor` / `DeviceFileMode`.
//! - `driver/nvidia/params`: `DeviceFileUID` / `DeviceFileGID` / `DeviceFileMode`
//!   of the GPU and control nodes. Unlike the files above, a params file that
//!   exists but does not state all three clearly is an error, not a skipped
//!   line: guessing there would hand a container wider access than the host.
//!
//! Malformed lines are skipped with a log line, never a panic. Each file is
//! read at most once per process.
//!
//! `mig-minors` always lists all 32 possible GPUs (4,322 lines, 107 KiB)
//! whatever the node has. Parsing all of it was most of a one-device hook's
//! own CPU time, and holding it was 27 freshly faulted pages. So it is streamed
//! once through a 16 KiB buffer to index which byte ranges belong to which GPU
//! minor, and only the ranges of the GPUs a request touches are read back
//! (pread) and parsed ([`MigMinors`]). The answers are those of parsing the
//! whole file ([`parse_mig_minors`]), "the last of duplicate lines wins"
//! included; a file that changes between the two reads is an error.

use super::{CapFile, DeviceFileParams, DriverError, MigCap};
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

pub struct ProcFs {
    root: PathBuf,
    /// Read on first use, again after [`ProcFs::forget_devices`] (a module was loaded).
    devices: Mutex<Option<CharDevices>>,
    mig_minors: OnceLock<Result<MigMinors, String>>,
}

/// `/proc/devices`' char majors as read, or why they could not be.
type CharDevices = Result<Vec<(u32, String)>, String>;

/// Which GPU minor a `mig-minors` line belongs to; `None` for `config`/`monitor`.
type Owner = Option<u32>;

/// Positioned reads: the open `mig-minors` (pread), or bytes in memory.
pub trait ReadAt: Send + Sync {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
}

impl ReadAt for std::fs::File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(self, buf, offset)
    }
}

impl ReadAt for Vec<u8> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let rest = self.get(offset as usize..).unwrap_or_default();
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        Ok(n)
    }
}

/// Read size of the indexing pass; a longer line grows the buffer.
pub const SCAN_BUFFER: usize = 16 << 10;

fn not_utf8() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "stream did not contain valid UTF-8")
}

fn changed() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "changed while being read")
}

/// Calls `f(line, from, to)` for every line as `str::lines` splits the whole
/// file, with its byte range (line ending excluded), reading `buffer` bytes at a time.
fn for_each_line(source: &dyn ReadAt, buffer: usize, mut f: impl FnMut(&str, u64, u64)) -> io::Result<()> {
    let mut buf = vec![0u8; buffer.max(1)];
    // `buf[..len]` holds the file from offset `base`: the unfinished line, then new bytes.
    let (mut base, mut len) = (0u64, 0usize);
    loop {
        if len == buf.len() {
            let grown = buf.len() * 2;
            buf.resize(grown, 0);
        }
        let n = source.read_at(&mut buf[len..], base + len as u64)?;
        let eof = n == 0;
        len += n;
        let text = match std::str::from_utf8(&buf[..len]) {
            Ok(text) => text,
            // A character cut by the read: its rest comes with the next one.
            Err(e) if e.error_len().is_none() && !eof => {
                std::str::from_utf8(&buf[..e.valid_up_to()]).map_err(|_| not_utf8())?
            }
            Err(_) => return Err(not_utf8()),
        };
        let mut done = 0;
        for piece in text.split_inclusive('\n') {
            let Some(line) = piece.strip_suffix('\n') else { break };
            let line = line.strip_suffix('\r').unwrap_or(line);
            f(line, base + done as u64, base + (done + line.len()) as u64);
            done += piece.len();
        }
        if eof {
            if done < len {
                f(&text[done..], base + done as u64, base + len as u64);
            }
            return Ok(());
        }
        buf.copy_within(done..len, 0);
        base += done as u64;
        len -= done;
    }
}

/// `mig-minors`, indexed by owner and parsed per owner on first use.
pub struct MigMinors {
    source: Box<dyn ReadAt>,
    /// File ranges of runs of consecutive lines with one owner, in file order
    /// (the driver writes each GPU's lines together: about 33 runs).
    runs: Vec<(Owner, u64, u64)>,
    parsed: Mutex<HashMap<Owner, BTreeMap<MigCap, u32>>>,
}

impl MigMinors {
    /// Indexes the file by owner; `skipped` gets the lines no owner can be read from.
    pub fn scan(source: impl ReadAt + 'static, buffer: usize, mut skipped: impl FnMut(&str)) -> io::Result<Self> {
        let mut runs: Vec<(Owner, u64, u64)> = Vec::new();
        // Whether the next line may extend the last run: an ownerless line ends it.
        let mut open = false;
        for_each_line(&source, buffer, |line, from, to| {
            let owner = match owner_of(line) {
                // Blank lines are skipped by the parser too; they do not break a run.
                None if line.trim().is_empty() => return,
                owner => owner,
            };
            match (owner, runs.last_mut()) {
                (Some(owner), Some(run)) if open && run.0 == owner => run.2 = to,
                (Some(owner), _) => runs.push((owner, from, to)),
                (None, _) => skipped(line),
            }
            open = owner.is_some();
        })?;
        Ok(MigMinors { source: Box::new(source), runs, parsed: Mutex::new(HashMap::new()) })
    }

    /// The well-formed lines of one owner, read back and parsed once; `skipped` gets its malformed ones.
    fn with_owner<T>(
        &self,
        owner: Owner,
        skipped: impl FnMut(&str),
        f: impl FnOnce(&BTreeMap<MigCap, u32>) -> T,
    ) -> io::Result<T> {
        let mut parsed = self.parsed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(map) = parsed.get(&owner) {
            return Ok(f(map));
        }
        let mut texts = vec![];
        for &(_, from, to) in self.runs.iter().filter(|r| r.0 == owner) {
            let mut buf = vec![0u8; (to - from) as usize];
            let mut got = 0;
            while got < buf.len() {
                match self.source.read_at(&mut buf[got..], from + got as u64)? {
                    0 => return Err(changed()),
                    n => got += n,
                }
            }
            let text = String::from_utf8(buf).map_err(|_| not_utf8())?;
            // Every line must still be this owner's: otherwise the file changed since the scan.
            if text.lines().any(|l| owner_of(l) != Some(owner) && !l.trim().is_empty()) {
                return Err(changed());
            }
            texts.push(text);
        }
        let map = parse_mig_minor_lines(texts.iter().flat_map(|t| t.lines()), skipped);
        Ok(f(parsed.entry(owner).or_insert(map)))
    }

    pub fn get(&self, cap: MigCap, skipped: impl FnMut(&str)) -> io::Result<Option<u32>> {
        self.with_owner(cap.gpu_minor(), skipped, |m| m.get(&cap).copied())
    }

    /// Every GI/CI capability of one GPU minor, in [`MigCap`] order.
    pub fn of_gpu(&self, gpu_minor: u32, skipped: impl FnMut(&str)) -> io::Result<Vec<(MigCap, u32)>> {
        self.with_owner(Some(gpu_minor), skipped, |m| m.iter().map(|(c, n)| (*c, *n)).collect())
    }
}

/// The owner of a line, `None` when no parse of it could succeed.
fn owner_of(line: &str) -> Option<Owner> {
    fast_line_owner(line).or_else(|| line_owner(line))
}

/// The common case in bytes: a line that starts `gpu<digits>/` belongs to that GPU
/// (its first field can only start with exactly that). `None`: ask [`line_owner`].
fn fast_line_owner(line: &str) -> Option<Owner> {
    let rest = line.as_bytes().strip_prefix(b"gpu")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if rest.get(digits) != Some(&b'/') {
        return None;
    }
    number(&line[3..3 + digits]).map(Some)
}

/// The owner of a line from its name alone (`gpu<N>/...` or `config`/`monitor`),
/// reading `<N>` exactly as the full parser does; `None` when no parse could succeed.
fn line_owner(line: &str) -> Option<Owner> {
    let name = line.split_whitespace().next()?;
    if name == "config" || name == "monitor" {
        return Some(None);
    }
    let (gpu, _) = name.split_once('/')?;
    prefixed(gpu, "gpu").map(Some)
}

impl ProcFs {
    pub fn new(root: &Path) -> Self {
        ProcFs { root: root.to_path_buf(), devices: Mutex::new(None), mig_minors: OnceLock::new() }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn read(&self, rel: &str) -> Result<Option<String>, DriverError> {
        match std::fs::read_to_string(self.path(rel)) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(DriverError::Proc { path: self.path(rel).display().to_string(), reason: e.to_string() }),
        }
    }

    pub fn chardev_major(&self, name: &str) -> Result<Option<u32>, DriverError> {
        let mut cached = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        let devices = cached.get_or_insert_with(|| match self.read("devices") {
            Ok(Some(text)) => Ok(parse_char_devices(&text)),
            Ok(None) => Err("file not found".to_string()),
            Err(e) => Err(e.to_string()),
        });
        let devices = devices.as_ref().map_err(|reason| DriverError::Proc {
            path: self.path("devices").display().to_string(),
            reason: reason.clone(),
        })?;
        Ok(devices.iter().find(|(_, n)| n == name).map(|(m, _)| *m))
    }

    /// Drops what `devices` said, so the next question reads it again.
    pub fn forget_devices(&self) {
        *self.devices.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// `/proc/modules`, `None` when there is none.
    pub fn modules(&self) -> Result<Option<String>, DriverError> {
        self.read("modules")
    }

    const MIG_MINORS: &str = "driver/nvidia-caps/mig-minors";

    fn warn_malformed(&self, line: &str) {
        crate::log::warn(&format!("{}: skipping malformed line {line:?}", self.path(Self::MIG_MINORS).display()))
    }

    fn mig_minors_err(&self, reason: String) -> DriverError {
        DriverError::Proc { path: self.path(Self::MIG_MINORS).display().to_string(), reason }
    }

    fn mig_minors(&self) -> Result<&MigMinors, DriverError> {
        let map = self.mig_minors.get_or_init(|| {
            let scanned = match std::fs::File::open(self.path(Self::MIG_MINORS)) {
                // No file: a driver without MIG support; no capability has a minor.
                Err(e) if e.kind() == io::ErrorKind::NotFound => MigMinors::scan(Vec::new(), SCAN_BUFFER, |_| {}),
                Err(e) => Err(e),
                Ok(file) => MigMinors::scan(file, SCAN_BUFFER, |line| self.warn_malformed(line)),
            };
            scanned.map_err(|e| e.to_string())
        });
        map.as_ref().map_err(|reason| self.mig_minors_err(reason.clone()))
    }

    pub fn mig_cap_minor(&self, cap: MigCap) -> Result<Option<u32>, DriverError> {
        self.mig_minors()?.get(cap, |line| self.warn_malformed(line)).map_err(|e| self.mig_minors_err(e.to_string()))
    }

    pub fn mig_caps_of_gpu(&self, gpu_minor: u32) -> Result<Vec<(MigCap, u32)>, DriverError> {
        self.mig_minors()?
            .of_gpu(gpu_minor, |line| self.warn_malformed(line))
            .map_err(|e| self.mig_minors_err(e.to_string()))
    }

    pub fn cap_file(&self, cap: MigCap) -> Result<Option<CapFile>, DriverError> {
        let rel = format!("driver/nvidia/capabilities/{}", cap.proc_path());
        Ok(self.read(&rel)?.map(|text| parse_cap_file(&text)))
    }

    pub const PARAMS: &str = "driver/nvidia/params";

    /// The driver's device file owner and mode; `None` without a params file.
    pub fn device_file_params(&self) -> Result<Option<DeviceFileParams>, DriverError> {
        let Some(text) = self.read(Self::PARAMS)? else { return Ok(None) };
        parse_params(&text)
            .map(Some)
            .map_err(|reason| DriverError::Malformed { path: self.path(Self::PARAMS).display().to_string(), reason })
    }
}

/// `(major, name)` pairs of the `Character devices:` section.
pub fn parse_char_devices(text: &str) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let mut in_char = false;
    for line in text.lines() {
        if line.trim() == "Character devices:" {
            in_char = true;
            continue;
        }
        if !in_char {
            continue;
        }
        if line.trim().is_empty() || line.ends_with(':') {
            break;
        }
        let mut fields = line.split_whitespace();
        if let (Some(major), Some(name), None) = (fields.next(), fields.next(), fields.next())
            && let Ok(major) = major.parse()
        {
            out.push((major, name.to_string()));
        }
    }
    out
}

/// Parses all of `mig-minors`; calls `skipped` with each malformed line.
pub fn parse_mig_minors(text: &str, skipped: impl FnMut(&str)) -> BTreeMap<MigCap, u32> {
    parse_mig_minor_lines(text.lines(), skipped)
}

fn parse_mig_minor_lines<'a>(
    lines: impl Iterator<Item = &'a str>,
    mut skipped: impl FnMut(&str),
) -> BTreeMap<MigCap, u32> {
    let mut map = BTreeMap::new();
    for line in lines {
        if line.trim().is_empty() {
            continue;
        }
        match parse_mig_minor_line(line) {
            Some((cap, minor)) => {
                map.insert(cap, minor);
            }
            None => skipped(line),
        }
    }
    map
}

fn parse_mig_minor_line(line: &str) -> Option<(MigCap, u32)> {
    let mut fields = line.split_whitespace();
    let (name, minor, None) = (fields.next()?, fields.next()?, fields.next()) else { return None };
    let minor = number(minor)?;
    let cap = match name {
        "config" => MigCap::Config,
        "monitor" => MigCap::Monitor,
        _ => {
            let parts: Vec<&str> = name.split('/').collect();
            match parts[..] {
                [gpu, gi, "access"] => MigCap::Gi { gpu_minor: prefixed(gpu, "gpu")?, gi: prefixed(gi, "gi")? },
                [gpu, gi, ci, "access"] => {
                    MigCap::Ci { gpu_minor: prefixed(gpu, "gpu")?, gi: prefixed(gi, "gi")?, ci: prefixed(ci, "ci")? }
                }
                _ => return None,
            }
        }
    };
    Some((cap, minor))
}

fn number(s: &str) -> Option<u32> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten()
}

fn prefixed(s: &str, prefix: &str) -> Option<u32> {
    number(s.strip_prefix(prefix)?)
}

/// `Key: value` lines of a capability file.
pub fn parse_cap_file(text: &str) -> CapFile {
    let mut cap = CapFile { minor: None, mode: None };
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else { continue };
        match key.trim() {
            "DeviceFileMinor" => cap.minor = number(value.trim()),
            "DeviceFileMode" => cap.mode = number(value.trim()),
            _ => {}
        }
    }
    cap
}

/// `DeviceFileUID`, `DeviceFileGID` and `DeviceFileMode` of the driver's `params`
/// (`Name: value` lines, values in decimal, as `nv-procfs.c` prints them).
///
/// nvidia-modprobe reads the same three with `fscanf("%31[^:]: %u\n")` and falls
/// back to 0, 0, 0666 for any it does not find. Here each must be there exactly
/// once with a decimal value, and the mode must be permission bits only: a file
/// that says anything else is not one we understand, and its defaults could be
/// wider than what the host meant. Other lines (the driver has dozens, some with
/// string values) are not looked at.
pub fn parse_params(text: &str) -> Result<DeviceFileParams, String> {
    let mut found: [Option<u32>; 3] = [None; 3];
    const KEYS: [&str; 3] = ["DeviceFileUID", "DeviceFileGID", "DeviceFileMode"];
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else { continue };
        let Some(at) = KEYS.iter().position(|k| *k == key.trim()) else { continue };
        let key = KEYS[at];
        let value = value.trim();
        let n = number(value).ok_or_else(|| format!("{key} is {value:?}, not a decimal number"))?;
        if found[at].replace(n).is_some() {
            return Err(format!("{key} is given more than once"));
        }
    }
    let [uid, gid, mode] = found;
    let missing = |key| format!("no {key} line");
    let (uid, gid, mode) = (
        uid.ok_or_else(|| missing(KEYS[0]))?,
        gid.ok_or_else(|| missing(KEYS[1]))?,
        mode.ok_or_else(|| missing(KEYS[2]))?,
    );
    // (uid_t)-1 is chown's "leave as is": as an owner it means nothing.
    for (key, id) in [(KEYS[0], uid), (KEYS[1], gid)] {
        if id == u32::MAX {
            return Err(format!("{key} is {id}, which is no owner"));
        }
    }
    if mode & !0o777 != 0 {
        return Err(format!("DeviceFileMode is {mode} ({mode:#o}), which has bits beyond rwxrwxrwx"));
    }
    Ok(DeviceFileParams { uid, gid, mode })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEVICES: &str = "Character devices:\n  1 mem\n195 nvidia-frontend\n508 nvidia-caps\n509 nvidia-caps-imex-channels\n511 nvidia-uvm\n\nBlock devices:\n  8 sd\n511 nvidia-uvm-block\n";

    #[test]
    fn chardev_majors_match_exact_names() {
        let d = parse_char_devices(DEVICES);
        let major = |n: &str| d.iter().find(|(_, x)| x == n).map(|(m, _)| *m);
        assert_eq!(major("nvidia-caps"), Some(508));
        assert_eq!(major("nvidia-caps-imex-channels"), Some(509));
        assert_eq!(major("nvidia-uvm"), Some(511));
        assert_eq!(major("nvidia-uvm-block"), None);
        assert_eq!(major("nvidia"), None);
    }

    #[test]
    fn imex_channels_never_shadow_caps() {
        let d = parse_char_devices("Character devices:\n509 nvidia-caps-imex-channels\n\n");
        assert!(d.iter().all(|(_, n)| n != "nvidia-caps"));
    }

    #[test]
    fn mig_minor_lines() {
        assert_eq!(parse_mig_minor_line("config 1"), Some((MigCap::Config, 1)));
        assert_eq!(parse_mig_minor_line("monitor 2"), Some((MigCap::Monitor, 2)));
        assert_eq!(parse_mig_minor_line("gpu2/gi8/access 345"), Some((MigCap::Gi { gpu_minor: 2, gi: 8 }, 345)));
        assert_eq!(
            parse_mig_minor_line("gpu2/gi8/ci0/access 346"),
            Some((MigCap::Ci { gpu_minor: 2, gi: 8, ci: 0 }, 346))
        );
    }

    #[test]
    fn malformed_mig_minor_lines_are_skipped() {
        let mut skipped = vec![];
        let map = parse_mig_minors(
            "config 1\ngpu0/gi0/access\ngpuX/gi0/access 3\ngpu0/gi0/ci0/access 4 5\ngpu0/gi0/foo 9\ngpu0/gi0/access -3\ngpu0/gi1/access 12\n",
            |l| skipped.push(l.to_string()),
        );
        assert_eq!(map.len(), 2);
        assert_eq!(skipped.len(), 5);
    }

    #[test]
    fn cap_file_fields() {
        let c = parse_cap_file("DeviceFileMinor: 345\nDeviceFileMode: 292\nDeviceFileModify: 1\n");
        assert_eq!(c, CapFile { minor: Some(345), mode: Some(0o444) });
        assert_eq!(parse_cap_file("garbage\nDeviceFileMinor: x"), CapFile { minor: None, mode: None });
    }

    /// Every answer of the per-GPU index equals the full parse's, and every line the
    /// full parse skips is reported once the lines of every owner have been parsed.
    fn assert_lazy_matches_full(text: &str, buffer: usize) {
        let (mut full_skipped, mut lazy_skipped) = (vec![], vec![]);
        let full = parse_mig_minors(text, |l| full_skipped.push(l.to_string()));
        let lazy = MigMinors::scan(text.as_bytes().to_vec(), buffer, |l| lazy_skipped.push(l.to_string())).unwrap();
        let mut probes: Vec<MigCap> = full.keys().copied().collect();
        probes.extend([
            MigCap::Config,
            MigCap::Monitor,
            MigCap::Gi { gpu_minor: 9, gi: 0 },
            MigCap::Ci { gpu_minor: 1, gi: 1, ci: 7 },
        ]);
        for cap in probes {
            let got = lazy.get(cap, |l| lazy_skipped.push(l.to_string())).unwrap();
            assert_eq!(got, full.get(&cap).copied(), "{cap:?} in {text:?}, buffer {buffer}");
        }
        for gpu in 0..10 {
            let expected: Vec<_> =
                full.iter().filter(|(c, _)| c.gpu_minor() == Some(gpu)).map(|(c, m)| (*c, *m)).collect();
            let got = lazy.of_gpu(gpu, |l| lazy_skipped.push(l.to_string())).unwrap();
            assert_eq!(got, expected, "gpu{gpu} in {text:?}, buffer {buffer}");
        }
        full_skipped.sort();
        lazy_skipped.sort();
        assert_eq!(lazy_skipped, full_skipped, "skipped lines of {text:?}, buffer {buffer}");
    }

    #[test]
    fn per_gpu_lookups_answer_as_the_full_parse() {
        let tricky = concat!(
            // Duplicates (the last wins), leading zeros, CRLF, blank and malformed lines of known and unknown owners,
            "config 1\r\ngpu2/gi7/access 336\ngpu02/gi7/access 400\n\n  \ngpuX/gi0/access 9\ngpu2/gi7/ci0/access 401 5\n",
            // a non-ASCII line, and a last line without a newline.
            "gpu1 7\ngpu2/gi7/ci0/accéss 3\nconfig 11\ngpu2/gi07/ci0/access 337\nmonitor\r",
        );
        for buffer in [1, 2, 3, 7, 16, SCAN_BUFFER] {
            assert_lazy_matches_full(
                "config 1\nmonitor 2\ngpu0/gi0/access 3\ngpu1/gi0/access 138\ngpu1/gi0/ci0/access 139\n",
                buffer,
            );
            assert_lazy_matches_full(tricky, buffer);
            assert_lazy_matches_full("", buffer);
            assert_lazy_matches_full("\n", buffer);
        }
    }

    proptest::proptest! {
        #[test]
        fn per_gpu_lookups_answer_as_the_full_parse_on_any_lines(
            lines in proptest::collection::vec(
                "(config|monitor|gpu0?[0-3]/gi0?[0-9](/ci[0-3])?/(access|x)|gpu[X0-3]?/gi1/access|gpu1|[a-zé/]{0,6})( [0-9]{1,3}| x){0,3}[ \r]?",
                0..40,
            ),
            crlf: bool,
            buffer in 1usize..64,
        ) {
            assert_lazy_matches_full(&lines.join(if crlf { "\r\n" } else { "\n" }), buffer);
        }
    }

    #[test]
    fn only_the_requested_gpus_lines_are_parsed() {
        let text = "config 1\ngpu0/gi0/access 3\ngpu1/gi0/access 138\ngpu1/gi0/ci0/access 139\n";
        let m = MigMinors::scan(text.as_bytes().to_vec(), SCAN_BUFFER, |l| panic!("skipped {l:?}")).unwrap();
        assert_eq!(m.runs.len(), 3);
        assert_eq!(m.get(MigCap::Gi { gpu_minor: 1, gi: 0 }, |_| {}).unwrap(), Some(138));
        let parsed = m.parsed.lock().unwrap();
        assert_eq!(parsed.keys().collect::<Vec<_>>(), [&Some(1)]);
        assert_eq!(parsed[&Some(1)].len(), 2);
    }

    /// The index says where each GPU's lines are; if they are not there any more, say so.
    #[test]
    fn a_file_changed_between_scan_and_read_back_is_an_error() {
        struct Changing(std::sync::atomic::AtomicBool);
        impl ReadAt for Changing {
            fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
                let later = self.0.swap(true, std::sync::atomic::Ordering::SeqCst);
                let text = if later {
                    "gpu0/gi0/access 3\ngpu2/gi0/access 138\n"
                } else {
                    "gpu0/gi0/access 3\ngpu1/gi0/access 138\n"
                };
                text.as_bytes().to_vec().read_at(buf, offset)
            }
        }
        let m = MigMinors::scan(Changing(false.into()), SCAN_BUFFER, |_| {}).unwrap();
        let err = m.get(MigCap::Gi { gpu_minor: 1, gi: 0 }, |_| {}).unwrap_err();
        assert_eq!(err.to_string(), "changed while being read");
    }

    #[test]
    fn a_mig_minors_file_that_is_not_utf8_is_an_error() {
        for buffer in [1, 5, SCAN_BUFFER] {
            let err = MigMinors::scan(b"config 1\ngpu0/gi0/access \xff\n".to_vec(), buffer, |_| {}).err().unwrap();
            assert_eq!(err.to_string(), "stream did not contain valid UTF-8");
        }
    }

    #[test]
    fn lookups_through_procfs_read_the_file_under_the_root() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(ProcFs::new(dir.path()).mig_cap_minor(MigCap::Config).unwrap(), None, "no file: no minors");
        std::fs::create_dir_all(dir.path().join("driver/nvidia-caps")).unwrap();
        std::fs::write(dir.path().join("driver/nvidia-caps/mig-minors"), b"config 1\n\xff\n").unwrap();
        let err = ProcFs::new(dir.path()).mig_cap_minor(MigCap::Config).unwrap_err().to_string();
        assert!(err.ends_with("driver/nvidia-caps/mig-minors: stream did not contain valid UTF-8"), "{err}");
    }

    /// What a 550 driver prints, defaults and all (`nv-procfs.c`), with a string-valued line.
    const PARAMS: &str = "ResmanDebugLevel: 4294967295\nRmLogonRC: 1\nModifyDeviceFiles: 1\nDeviceFileUID: 0\n\
        DeviceFileGID: 0\nDeviceFileMode: 438\nInitializeSystemMemoryAllocations: 1\nRegistryDwords: \"\"\n\
        RmMsg: \"\"\nGpuBlacklist: \"\"\n";

    fn params_with(uid: &str, gid: &str, mode: &str) -> String {
        PARAMS
            .replace("UID: 0", &format!("UID: {uid}"))
            .replace("GID: 0", &format!("GID: {gid}"))
            .replace("Mode: 438", &format!("Mode: {mode}"))
    }

    #[test]
    fn params_of_a_default_driver_are_root_0666() {
        assert_eq!(parse_params(PARAMS), Ok(DeviceFileParams { uid: 0, gid: 0, mode: 0o666 }));
        assert_eq!(parse_params(PARAMS), Ok(DeviceFileParams::DEFAULT));
    }

    #[test]
    fn params_of_a_group_only_host() {
        // NVreg_DeviceFileGID=44 NVreg_DeviceFileMode=0660 (432 in decimal, as the driver prints it).
        let p = parse_params(&params_with("0", "44", "432")).unwrap();
        assert_eq!(p, DeviceFileParams { uid: 0, gid: 44, mode: 0o660 });
        let p = parse_params(&params_with("1000", "1000", "384").replace('\n', "\r\n")).unwrap();
        assert_eq!(p, DeviceFileParams { uid: 1000, gid: 1000, mode: 0o600 }, "CRLF lines too");
    }

    #[test]
    fn malformed_params_are_errors_naming_the_key() {
        for (text, want) in [
            (String::new(), "no DeviceFileUID line"),
            (PARAMS.replace("DeviceFileGID: 0\n", ""), "no DeviceFileGID line"),
            (PARAMS.replace("DeviceFileMode: 438\n", ""), "no DeviceFileMode line"),
            (params_with("0", "-1", "438"), "DeviceFileGID is \"-1\", not a decimal number"),
            (params_with("0", "0x2c", "438"), "DeviceFileGID is \"0x2c\", not a decimal number"),
            (params_with("0", "0", "0660"), "DeviceFileMode is 660 (0o1224), which has bits beyond rwxrwxrwx"),
            (params_with("", "0", "438"), "DeviceFileUID is \"\", not a decimal number"),
            (params_with("4294967296", "0", "438"), "DeviceFileUID is \"4294967296\", not a decimal number"),
            (params_with("4294967295", "0", "438"), "DeviceFileUID is 4294967295, which is no owner"),
            (params_with("0", "0", "4534"), "DeviceFileMode is 4534 (0o10666), which has bits beyond rwxrwxrwx"),
            (format!("{PARAMS}DeviceFileGID: 44\n"), "DeviceFileGID is given more than once"),
        ] {
            assert_eq!(parse_params(&text).unwrap_err(), want, "{text:?}");
        }
    }

    #[test]
    fn params_through_procfs() {
        let dir = tempfile::tempdir().unwrap();
        let p = || ProcFs::new(dir.path());
        assert_eq!(p().device_file_params().unwrap(), None, "no driver: no params file");
        std::fs::create_dir_all(dir.path().join("driver/nvidia")).unwrap();
        let file = dir.path().join("driver/nvidia/params");
        std::fs::write(&file, params_with("0", "44", "432")).unwrap();
        assert_eq!(p().device_file_params().unwrap(), Some(DeviceFileParams { uid: 0, gid: 44, mode: 0o660 }));
        std::fs::write(&file, "DeviceFileUID: 0\nDeviceFileGID: video\n").unwrap();
        let err = p().device_file_params().unwrap_err().to_string();
        assert_eq!(err, format!("{} is malformed: DeviceFileGID is \"video\", not a decimal number", file.display()));
        std::fs::write(&file, b"DeviceFileUID: 0\n\xff\n").unwrap();
        let err = p().device_file_params().unwrap_err().to_string();
        assert!(err.starts_with(&format!("cannot read {}", file.display())), "{err}");
    }

    #[test]
    fn caps_of_one_gpu() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("driver/nvidia-caps")).unwrap();
        std::fs::write(dir.path().join("driver/nvidia-caps/mig-minors"), "config 1\nmonitor 2\ngpu0/gi0/access 3\ngpu1/gi0/access 138\ngpu1/gi0/ci0/access 139\ngpu10/gi0/access 1353\n").unwrap();
        let p = ProcFs::new(dir.path());
        assert_eq!(p.mig_caps_of_gpu(1).unwrap().iter().map(|(_, m)| *m).collect::<Vec<_>>(), [138, 139]);
        assert_eq!(p.mig_cap_minor(MigCap::Monitor).unwrap(), Some(2));
    }
}
