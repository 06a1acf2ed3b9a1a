//! An in-memory kernel for [`BpfOps`]: cgroups with attached programs,
//! programs with their dumps, scripted failures, a log of every call and a
//! count of open fds (so tests can check that everything was closed).
//! Attach follows the kernel's flag rules (MULTI, REPLACE, non-multi swap).

use crate::sys::bpf::*;
use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Which call a scripted failure hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    OpenCgroup,
    Query,
    FdById,
    Info,
    Xlated,
    Load,
    Attach,
}

/// What the program's dump returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dump {
    /// The instructions as loaded.
    Exact,
    /// The buffer comes back untouched (all zeros), as with constant blinding.
    Zeroed,
    /// The kernel withholds the dump (an empty answer).
    Withheld,
}

#[derive(Debug)]
pub struct FakeFd {
    target: Target,
    open: Arc<AtomicUsize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Cgroup(PathBuf),
    Prog(u32),
}

impl Drop for FakeFd {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Debug, Default)]
struct Cgroup {
    flags: u32,
    progs: Vec<u32>,
    inherited: Vec<u32>,
}

#[derive(Debug)]
struct Prog {
    insns: Vec<Insn>,
    license: String,
    name: String,
    dump: Dump,
    errno_on_open: Option<i32>,
}

#[derive(Debug, Default)]
struct State {
    cgroups: BTreeMap<PathBuf, Cgroup>,
    progs: BTreeMap<u32, Prog>,
    next_id: u32,
    failures: Vec<(Op, usize, i32)>,
    load_log: String,
    calls: Vec<String>,
}

#[derive(Debug, Default)]
pub struct RecordingBpf {
    state: Mutex<State>,
    open: Arc<AtomicUsize>,
}

impl RecordingBpf {
    pub fn new() -> Self {
        let s = RecordingBpf::default();
        s.state.lock().unwrap().next_id = 100;
        s
    }

    /// A cgroup whose programs were attached with `flags` (BPF_F_ALLOW_MULTI for runc).
    pub fn add_cgroup(&self, path: &str, flags: u32) {
        self.state.lock().unwrap().cgroups.insert(path.into(), Cgroup { flags, ..Cgroup::default() });
    }

    /// A program that exists in the kernel (attached or not); returns its id.
    pub fn add_prog(&self, insns: &[Insn]) -> u32 {
        let mut s = self.state.lock().unwrap();
        s.next_id += 1;
        let id = s.next_id;
        let prog = Prog {
            insns: insns.to_vec(),
            license: "GPL".into(),
            name: String::new(),
            dump: Dump::Exact,
            errno_on_open: None,
        };
        s.progs.insert(id, prog);
        id
    }

    /// Attach an existing program directly (test setup, not recorded).
    pub fn attach_existing(&self, path: &str, id: u32) {
        self.state.lock().unwrap().cgroups.get_mut(Path::new(path)).expect("cgroup").progs.push(id);
    }

    /// An ancestor's program that runs for `path` too (shows up only in effective queries).
    pub fn inherit(&self, path: &str, id: u32) {
        self.state.lock().unwrap().cgroups.get_mut(Path::new(path)).expect("cgroup").inherited.push(id);
    }

    pub fn set_dump(&self, id: u32, dump: Dump) {
        self.state.lock().unwrap().progs.get_mut(&id).expect("prog").dump = dump;
    }

    /// BPF_PROG_GET_FD_BY_ID of `id` fails with `errno` (EPERM for LSM-owned programs).
    pub fn refuse_open(&self, id: u32, errno: i32) {
        self.state.lock().unwrap().progs.get_mut(&id).expect("prog").errno_on_open = Some(errno);
    }

    /// The next call of `op` fails with `errno` (queued; each hits once).
    pub fn fail_next(&self, op: Op, errno: i32) {
        self.fail_later(op, 0, errno);
    }

    /// The call of `op` after `skip` more successful ones fails with `errno`.
    pub fn fail_later(&self, op: Op, skip: usize, errno: i32) {
        self.state.lock().unwrap().failures.push((op, skip, errno));
    }

    /// The verifier log a failing load reports.
    pub fn set_load_log(&self, log: &str) {
        self.state.lock().unwrap().load_log = log.into();
    }

    pub fn attached(&self, path: &str) -> Vec<u32> {
        self.state.lock().unwrap().cgroups[Path::new(path)].progs.clone()
    }

    pub fn attach_flags(&self, path: &str) -> u32 {
        self.state.lock().unwrap().cgroups[Path::new(path)].flags
    }

    pub fn insns(&self, id: u32) -> Vec<Insn> {
        self.state.lock().unwrap().progs[&id].insns.clone()
    }

    pub fn license(&self, id: u32) -> String {
        self.state.lock().unwrap().progs[&id].license.clone()
    }

    pub fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }

    /// Calls whose text starts with `prefix` ("load", "attach", ...).
    pub fn calls_of(&self, prefix: &str) -> Vec<String> {
        self.calls().into_iter().filter(|c| c.starts_with(prefix)).collect()
    }

    pub fn open_fds(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    fn fd(&self, target: Target) -> FakeFd {
        self.open.fetch_add(1, Ordering::SeqCst);
        FakeFd { target, open: self.open.clone() }
    }

    fn begin(&self, op: Op, call: String) -> io::Result<std::sync::MutexGuard<'_, State>> {
        let mut s = self.state.lock().unwrap();
        s.calls.push(call);
        if let Some(i) = s.failures.iter().position(|(o, _, _)| *o == op) {
            if s.failures[i].1 > 0 {
                s.failures[i].1 -= 1;
            } else {
                let (_, _, errno) = s.failures.remove(i);
                return Err(io::Error::from_raw_os_error(errno));
            }
        }
        Ok(s)
    }
}

fn prog_id(fd: &FakeFd) -> io::Result<u32> {
    match fd.target {
        Target::Prog(id) => Ok(id),
        Target::Cgroup(_) => Err(io::Error::from_raw_os_error(libc::EINVAL)),
    }
}

fn cgroup_path(fd: &FakeFd) -> io::Result<&Path> {
    match &fd.target {
        Target::Cgroup(p) => Ok(p),
        Target::Prog(_) => Err(io::Error::from_raw_os_error(libc::EBADF)),
    }
}

/// The few verifier checks the tests rely on, with the kernel's messages.
fn verify(insns: &[Insn]) -> Result<(), &'static str> {
    let last = insns.last().ok_or("program has no insns")?;
    let jmp = opcode::class(last.code) == opcode::JMP;
    if !(jmp && matches!(opcode::op(last.code), opcode::EXIT | opcode::JA)) {
        return Err("last insn is not an exit or jmp");
    }
    if insns.iter().any(|i| i.dst > 10 || i.src > 10) {
        return Err("R11 is invalid");
    }
    Ok(())
}

impl BpfOps for RecordingBpf {
    type BpfFd = FakeFd;

    fn open_cgroup(&self, dir: &Path) -> io::Result<FakeFd> {
        let s = self.begin(Op::OpenCgroup, format!("open_cgroup {}", dir.display()))?;
        if !s.cgroups.contains_key(dir) {
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        }
        drop(s);
        Ok(self.fd(Target::Cgroup(dir.into())))
    }

    fn prog_query(&self, cgroup: &FakeFd, effective: bool, ids: &mut [u32]) -> io::Result<QueryOut> {
        let path = cgroup_path(cgroup)?;
        let s = self.begin(Op::Query, format!("query {} effective={effective} room={}", path.display(), ids.len()))?;
        let cg = &s.cgroups[path];
        let all: Vec<u32> =
            if effective { cg.progs.iter().chain(&cg.inherited).copied().collect() } else { cg.progs.clone() };
        for (slot, id) in ids.iter_mut().zip(&all) {
            *slot = *id;
        }
        Ok(QueryOut { attach_flags: if effective { 0 } else { cg.flags }, count: all.len() as u32 })
    }

    fn prog_fd_by_id(&self, id: u32) -> io::Result<FakeFd> {
        let s = self.begin(Op::FdById, format!("fd_by_id {id}"))?;
        match s.progs.get(&id) {
            None => Err(io::Error::from_raw_os_error(libc::ENOENT)),
            Some(Prog { errno_on_open: Some(e), .. }) => Err(io::Error::from_raw_os_error(*e)),
            Some(_) => {
                drop(s);
                Ok(self.fd(Target::Prog(id)))
            }
        }
    }

    fn prog_info(&self, prog: &FakeFd) -> io::Result<ProgInfo> {
        let id = prog_id(prog)?;
        let s = self.begin(Op::Info, format!("info {id}"))?;
        let p = &s.progs[&id];
        Ok(ProgInfo { id, xlated_insns: p.insns.len(), name: p.name.clone() })
    }

    fn prog_xlated(&self, prog: &FakeFd, len: usize) -> io::Result<Vec<Insn>> {
        let id = prog_id(prog)?;
        let s = self.begin(Op::Xlated, format!("xlated {id} len={len}"))?;
        let p = &s.progs[&id];
        Ok(match p.dump {
            Dump::Exact => p.insns.iter().take(len).copied().collect(),
            Dump::Zeroed => vec![Insn::default(); len],
            Dump::Withheld => Vec::new(),
        })
    }

    fn prog_load(&self, prog: &ProgLoad<'_>) -> Result<FakeFd, LoadError> {
        let call = format!("load {} insns license={} name={}", prog.insns.len(), prog.license, prog.name);
        let mut s = self.begin(Op::Load, call).map_err(|source| LoadError { source, log: String::new() })?;
        if let Err(why) = verify(prog.insns) {
            let log = format!("{}{why}\nprocessed 0 insns\n", s.load_log);
            return Err(LoadError { source: io::Error::from_raw_os_error(libc::EINVAL), log });
        }
        s.next_id += 1;
        let id = s.next_id;
        let p = Prog {
            insns: prog.insns.to_vec(),
            license: prog.license.into(),
            name: prog.name.into(),
            dump: Dump::Exact,
            errno_on_open: None,
        };
        s.progs.insert(id, p);
        s.calls.last_mut().unwrap().push_str(&format!(" -> {id}"));
        drop(s);
        Ok(self.fd(Target::Prog(id)))
    }

    fn prog_attach(&self, cgroup: &FakeFd, prog: &FakeFd, flags: u32, replace: Option<&FakeFd>) -> io::Result<()> {
        let path = cgroup_path(cgroup)?;
        let id = prog_id(prog)?;
        let old = replace.map(prog_id).transpose()?;
        let call = format!("attach {} prog={id} flags={flags:#x} replace={old:?}", path.display());
        let mut s = self.begin(Op::Attach, call)?;
        let einval = || io::Error::from_raw_os_error(libc::EINVAL);
        let multi = flags & BPF_F_ALLOW_MULTI != 0;
        if (flags & BPF_F_ALLOW_OVERRIDE != 0 && multi) || (flags & BPF_F_REPLACE != 0 && !multi) {
            return Err(einval());
        }
        if (flags & BPF_F_REPLACE != 0) != old.is_some() {
            return Err(einval());
        }
        let cg = s.cgroups.get_mut(path).ok_or_else(einval)?;
        if !cg.progs.is_empty() && cg.flags != flags & !BPF_F_REPLACE {
            return Err(io::Error::from_raw_os_error(libc::EPERM));
        }
        if cg.progs.contains(&id) {
            return Err(io::Error::from_raw_os_error(libc::EEXIST));
        }
        match (multi, old) {
            (true, Some(old)) => {
                let slot = cg
                    .progs
                    .iter_mut()
                    .find(|p| **p == old)
                    .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
                *slot = id;
            }
            (true, None) => cg.progs.push(id),
            (false, _) => cg.progs = vec![id],
        }
        cg.flags = flags & !BPF_F_REPLACE;
        Ok(())
    }
}
