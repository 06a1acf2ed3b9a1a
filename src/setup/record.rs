//! What `mighook setup ENGINE` changed, kept so that `mighook setup --undo ENGINE`
//! can put it back: `/var/lib/mighook/setup/<engine>.json` under the config root.
//!
//! Each written file is recorded with the backup made before it was written
//! (none: setup created it) and the exact text setup wrote. Undo restores a
//! backup by renaming it over the file, so the file is back byte for byte, and
//! removes what setup created. A file that no longer holds what setup wrote
//! was edited since: undo then changes nothing at all and names it, because
//! restoring the backup would drop that edit. The backup is put back as a
//! hard link renamed over the file and deleted only once everything else is
//! undone, so an undo that failed halfway can run again: a file that already
//! holds its backup counts as restored. A link is removed only while it still
//! points where setup made it point. A later setup run that changes
//! a recorded file again keeps the first backup: undo returns to the state
//! before mighook. The CDI spec setup wrote is mighook's own generated file
//! (the refresh units rewrite it), so it is removed whatever it holds now.

use super::{SetupError, Step, invalid, write_err};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The directory of the records, under the config root.
pub const RECORD_DIR: &str = "/var/lib/mighook/setup";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub files: Vec<FileRecord>,
    /// Links setup made.
    pub links: Vec<LinkRecord>,
}

/// A link setup made: its absolute path and the target it gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "LinkOnDisk")]
pub struct LinkRecord {
    pub path: PathBuf,
    /// `None`: a record from before targets were kept; such a link is left alone.
    pub target: Option<PathBuf>,
}

/// A link as records hold it: `{path, target}`, or a bare path (older records).
#[derive(Deserialize)]
#[serde(untagged)]
enum LinkOnDisk {
    Made { path: PathBuf, target: Option<PathBuf> },
    Path(PathBuf),
}

impl From<LinkOnDisk> for LinkRecord {
    fn from(l: LinkOnDisk) -> Self {
        match l {
            LinkOnDisk::Made { path, target } => LinkRecord { path, target },
            LinkOnDisk::Path(path) => LinkRecord { path, target: None },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    pub path: PathBuf,
    /// The copy of the file as it was before setup first changed it; `None`: setup created it.
    pub backup: Option<PathBuf>,
    /// What setup last wrote.
    pub written: String,
    /// mighook's generated CDI spec: removed (or restored) whatever it holds now.
    #[serde(default)]
    pub generated: bool,
}

impl Record {
    /// Adds what one run did; a file already recorded keeps its first backup.
    pub fn merge(&mut self, done: Record) {
        for f in done.files {
            match self.files.iter_mut().find(|old| old.path == f.path) {
                Some(old) => old.written = f.written,
                None => self.files.push(f),
            }
        }
        for l in done.links {
            match self.links.iter_mut().find(|old| old.path == l.path) {
                Some(old) => old.target = l.target,
                None => self.links.push(l),
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.links.is_empty()
    }
}

pub fn path(root: &Path, engine: &str) -> PathBuf {
    root.join(RECORD_DIR.trim_start_matches('/')).join(format!("{engine}.json"))
}

pub fn load(path: &Path) -> Result<Option<Record>, SetupError> {
    match fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).map(Some).map_err(|e| invalid(path, format!("not a setup record: {e}")))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(SetupError::Read { path: path.display().to_string(), reason: e.to_string() }),
    }
}

/// Merges `done` into the record at `path` (made when missing).
pub fn save(path: &Path, done: Record) -> Result<(), SetupError> {
    if done.is_empty() {
        return Ok(());
    }
    let mut record = load(path)?.unwrap_or_default();
    record.merge(done);
    if let Some(dir) = path.parent() {
        super::create_dirs(dir)?;
    }
    let text = serde_json::to_string_pretty(&record).expect("record serializes") + "\n";
    crate::atomic_file::replace_durable(path, text.as_bytes(), 0o600).map_err(|e| write_err(path, e))
}

/// What undo does to one recorded file.
#[derive(Debug, PartialEq, Eq)]
enum Action {
    Restore {
        path: PathBuf,
        backup: PathBuf,
    },
    Remove(PathBuf),
    /// Already as it was (the file is gone and setup had created it).
    Gone(PathBuf),
    /// Already holds its backup (an earlier undo got this far); the backup is deleted at the end.
    Restored {
        path: PathBuf,
        backup: PathBuf,
    },
}

/// Checks every recorded file first: one that was edited since, or whose backup is gone, refuses the whole undo.
fn plan(record: &Record, engine: &str) -> Result<Vec<Action>, SetupError> {
    let mut actions = vec![];
    for f in &record.files {
        let now = match fs::read(&f.path) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(SetupError::Read { path: f.path.display().to_string(), reason: e.to_string() }),
        };
        let edited = !f.generated && now.as_deref() != Some(f.written.as_bytes());
        let by_hand = |what: &str| {
            SetupError::Refused(format!(
                "{} {what} since `mighook setup {engine}` wrote it; nothing undone: {}, then delete {}",
                f.path.display(),
                match &f.backup {
                    Some(b) => format!("restore {} by hand, or remove the nvidia entries", b.display()),
                    None => "remove it (setup created it) or its nvidia entries by hand".into(),
                },
                path(Path::new("/"), engine).display()
            ))
        };
        let holds_backup = |b: &Path| now.as_deref().is_some_and(|now| fs::read(b).is_ok_and(|b| b == now));
        match (&f.backup, &now) {
            (None, None) => actions.push(Action::Gone(f.path.clone())),
            (Some(_), None) => return Err(by_hand("was removed")),
            (Some(b), Some(_)) if edited && holds_backup(b) => {
                actions.push(Action::Restored { path: f.path.clone(), backup: b.clone() })
            }
            _ if edited => return Err(by_hand("was changed")),
            (None, Some(_)) => actions.push(Action::Remove(f.path.clone())),
            (Some(b), Some(_)) if !b.is_file() => {
                return Err(SetupError::Refused(format!(
                    "{}: its backup {} is gone; nothing undone",
                    f.path.display(),
                    b.display()
                )));
            }
            (Some(b), Some(_)) => actions.push(Action::Restore { path: f.path.clone(), backup: b.clone() }),
        }
    }
    Ok(actions)
}

/// Whether `link` is still the link setup made: a symlink to the recorded target.
/// `Err`: what is there instead, for the report (`None`: nothing is).
fn still_ours(link: &LinkRecord) -> Result<(), Option<String>> {
    let Some(target) = &link.target else {
        return Err(Some("the record (from an older mighook) has no target to check".into()));
    };
    match fs::read_link(&link.path) {
        Ok(now) if now == *target => Ok(()),
        Ok(now) => Err(Some(format!("it now points at {}, not {}", now.display(), target.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(None),
        Err(_) => Err(Some("it is no longer a symlink".into())),
    }
}

/// `backup` put back at `path`: hard-linked next to it, renamed over it; the
/// backup itself stays until the whole undo is done.
fn put_back(path: &Path, backup: &Path) -> io::Result<()> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let staged = path.with_file_name(format!("{name}.mighook-undo"));
    match fs::remove_file(&staged) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    fs::hard_link(backup, &staged)?;
    fs::rename(&staged, path)
}

/// Puts back what the record at `record_path` says setup changed, then deletes the record.
pub fn undo(root: &Path, engine: &str, dry_run: bool) -> Result<String, SetupError> {
    let record_path = path(root, engine);
    let Some(record) = load(&record_path)? else {
        return Ok(format!("{engine}: nothing to undo (no {})\n", record_path.display()));
    };
    let actions = plan(&record, engine)?;
    let mut out = String::new();
    let verb = |now: &'static str, would: &'static str| if dry_run { would } else { now };
    for a in &actions {
        match a {
            Action::Restore { path, backup } => {
                if !dry_run {
                    put_back(path, backup).map_err(|e| write_err(path, e))?;
                }
                let _ =
                    writeln!(out, "{} {} from {}", verb("restored", "would restore"), path.display(), backup.display());
            }
            Action::Remove(path) => {
                if !dry_run {
                    fs::remove_file(path).map_err(|e| write_err(path, e))?;
                }
                let _ = writeln!(out, "{} {} (setup created it)", verb("removed", "would remove"), path.display());
            }
            Action::Gone(path) => {
                let _ = writeln!(out, "{}: already gone", path.display());
            }
            Action::Restored { path, backup } => {
                let _ = writeln!(out, "{}: already restored from {}", path.display(), backup.display());
            }
        }
    }
    for link in &record.links {
        match still_ours(link) {
            Ok(()) => {
                if !dry_run {
                    fs::remove_file(&link.path).map_err(|e| write_err(&link.path, e))?;
                }
                let _ = writeln!(out, "{} link {}", verb("removed", "would remove"), link.path.display());
            }
            Err(None) => {}
            Err(Some(why)) => {
                let _ = writeln!(out, "left link {}: {why}", link.path.display());
            }
        }
    }
    // The backups go last: until here a rerun finds each restored file equal to its backup.
    for a in &actions {
        if let (Action::Restore { backup, .. } | Action::Restored { backup, .. }, false) = (a, dry_run) {
            match fs::remove_file(backup) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(write_err(backup, e)),
                _ => {}
            }
        }
    }
    if dry_run {
        let _ = writeln!(out, "dry run: nothing changed");
    } else {
        fs::remove_file(&record_path).map_err(|e| write_err(&record_path, e))?;
        let _ = writeln!(out, "{engine}: setup undone; restart {engine} to drop the nvidia runtime");
    }
    Ok(out)
}

/// What the steps of one run changed, for the record (`cdi_spec`: the generated spec's path).
pub fn of_steps(steps: &[Step], backups: &[(PathBuf, PathBuf)], cdi_spec: &Path) -> Record {
    let mut record = Record::default();
    for step in steps {
        match step {
            Step::Write { path, new, .. } => record.files.push(FileRecord {
                path: path.clone(),
                backup: backups.iter().find(|(p, _)| p == path).map(|(_, b)| b.clone()),
                written: new.clone(),
                generated: path == cdi_spec,
            }),
            Step::Link { path, target } => {
                record.links.push(LinkRecord { path: path.clone(), target: Some(target.clone()) })
            }
            _ => {}
        }
    }
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn a_later_run_keeps_the_first_backup_and_the_last_text() {
        let mut r = Record::default();
        let f = |b: Option<&str>, w: &str| FileRecord {
            path: "/etc/x".into(),
            backup: b.map(PathBuf::from),
            written: w.into(),
            generated: false,
        };
        let l = |t: &str| LinkRecord { path: "/l".into(), target: Some(t.into()) };
        r.merge(Record { files: vec![f(Some("/etc/x.b1"), "one")], links: vec![l("mighook")] });
        r.merge(Record { files: vec![f(Some("/etc/x.b2"), "two")], links: vec![l("mighook")] });
        assert_eq!(r.files, vec![f(Some("/etc/x.b1"), "two")]);
        assert_eq!(r.links, vec![l("mighook")]);
    }

    #[test]
    fn an_edited_file_refuses_the_whole_undo() {
        let dir = tempfile::tempdir().unwrap();
        let a = file(dir.path(), "a", "mine");
        let b = file(dir.path(), "b", "edited");
        let b_backup = file(dir.path(), "b.bak", "orig");
        let record = Record {
            files: vec![
                FileRecord { path: a.clone(), backup: None, written: "mine".into(), generated: false },
                FileRecord { path: b.clone(), backup: Some(b_backup), written: "setup's".into(), generated: false },
            ],
            links: vec![],
        };
        let err = plan(&record, "docker").unwrap_err().to_string();
        assert!(err.contains("was changed since `mighook setup docker`"), "{err}");
        assert!(a.exists());
    }

    #[test]
    fn a_generated_spec_is_removed_whatever_it_holds() {
        let dir = tempfile::tempdir().unwrap();
        let spec = file(dir.path(), "nvidia.json", "refreshed");
        let record = Record {
            files: vec![FileRecord { path: spec.clone(), backup: None, written: "first".into(), generated: true }],
            links: vec![],
        };
        assert_eq!(plan(&record, "crio").unwrap(), vec![Action::Remove(spec)]);
    }

    #[test]
    fn an_older_record_of_bare_link_paths_still_loads() {
        let r: Record =
            serde_json::from_str(r#"{"files": [], "links": ["/usr/bin/nvidia-container-runtime"]}"#).unwrap();
        assert_eq!(r.links, vec![LinkRecord { path: "/usr/bin/nvidia-container-runtime".into(), target: None }]);
    }
}
