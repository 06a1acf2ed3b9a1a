//! cgroup v2: grant devices by extending the BPF_CGROUP_DEVICE programs.
//!
//! On cgroup v2 the runtime (runc, crun, systemd) attaches a device program to
//! the container's cgroup. All programs attached with BPF_F_ALLOW_MULTI must
//! return 1 for an access to pass (an AND), so attaching a second "allow"
//! program grants nothing. Instead mighook reads every attached program back
//! (its translated instructions), puts its own exact `allow` block in front
//! ([`asm::extend`]), loads that, and swaps it in for the old one with
//! BPF_F_REPLACE. Everything the old program decided is decided the same way,
//! except exactly the granted (type, major, minor, access ⊆ granted) tuples.
//!
//! Decisions:
//! * No program attached: the cgroup allows every device already, and
//!   attaching a program could only take access away, so nothing is attached
//!   and the caller gets [`V2Report::NoFilterAttached`].
//! * A program mighook cannot open (EPERM/EACCES: LSM-owned) or cannot read
//!   back (constant blinding under `net.core.bpf_jit_harden`, a withheld dump,
//!   helper calls or map references that a dump cannot reproduce) is never
//!   skipped and never replaced by a guess: it may deny the device, so the
//!   call fails, naming the program.
//! * Every program is read and every replacement loaded before the first
//!   attach, so a verifier rejection changes nothing.
//! * Running twice is harmless: a program mighook already extended is
//!   recognised by its marker ([`asm::split_extended`]); if it already grants
//!   everything asked it is left alone, otherwise its grants are merged and
//!   the block rebuilt (it never grows a second block).

pub mod asm;
/// A user-space interpreter of the filter programs: tests and benches only.
#[cfg(any(test, feature = "testing"))]
pub mod interp;
/// runc's own device programs, rebuilt: tests and benches only.
#[cfg(any(test, feature = "testing"))]
pub mod runc;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::edits::DeviceRule;
use crate::sys::BpfOps;
use crate::sys::bpf::opcode::*;
use crate::sys::bpf::{BPF_F_ALLOW_MULTI, BPF_F_REPLACE, Insn, ProgLoad};
use asm::{DevKind, Grants};

/// License the replacement programs are loaded under. The programs call no
/// helpers, so the verifier does not ask for a GPL-compatible one.
pub const LICENSE: &str = "Apache-2.0";
/// Name the replacement programs carry (shown by `bpftool prog`).
pub const PROG_NAME: &str = "mighook_dev";

/// What [`allow_devices`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum V2Report {
    /// No device program is attached to the cgroup, so every device is
    /// already reachable from it; nothing was changed.
    NoFilterAttached { ancestor_programs: Vec<u32> },
    /// Every program attached to the cgroup now allows the rules.
    Extended { programs: Vec<ProgramChange>, ancestor_programs: Vec<u32> },
}

/// One attached program: replaced by `new_id`, or `None` when it already allowed everything asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgramChange {
    pub old_id: u32,
    pub new_id: Option<u32>,
}

impl fmt::Display for V2Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ancestors = match self {
            V2Report::NoFilterAttached { ancestor_programs } => {
                write!(f, "no device program attached; the cgroup already allows every device")?;
                ancestor_programs
            }
            V2Report::Extended { programs, ancestor_programs } => {
                write!(f, "device programs:")?;
                for p in programs {
                    match p.new_id {
                        Some(new) => write!(f, " {}→{new}", p.old_id)?,
                        None => write!(f, " {} (already allowed)", p.old_id)?,
                    }
                }
                ancestor_programs
            }
        };
        if !ancestors.is_empty() {
            write!(f, "; ancestor cgroups' device programs {ancestors:?} also apply and were not changed")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum V2Error {
    #[error("cannot grant device rule {rule}: {why}")]
    InvalidRule { rule: String, why: &'static str },
    #[error(
        "refusing to change device program(s) {programs:?} of cgroup {}: it is the root of the cgroup2 hierarchy, and its program applies to every process below it",
        dir.display()
    )]
    RootCgroup { dir: PathBuf, programs: Vec<u32> },
    #[error(
        "refusing to change device program(s) {programs:?} of cgroup {}: it holds processes {others:?} besides the container's init {pid}, which would get the devices too",
        dir.display()
    )]
    SharedCgroup { dir: PathBuf, pid: i32, others: Vec<i32>, programs: Vec<u32> },
    #[error(
        "refusing to change device program(s) {programs:?} of cgroup {}: the container's init {pid} is not in it",
        dir.display()
    )]
    NotMember { dir: PathBuf, pid: i32, programs: Vec<u32> },
    #[error("cannot read {}: {source}", path.display())]
    ReadProcs { path: PathBuf, source: io::Error },
    #[error("cannot open cgroup {}: {source}", path.display())]
    OpenCgroup { path: PathBuf, source: io::Error },
    #[error(
        "BPF_PROG_QUERY(BPF_CGROUP_DEVICE) on {} was refused ({source}): reading device programs needs CAP_SYS_ADMIN in the initial user namespace (inside a user namespace, e.g. rootless or LXC, device cgroups cannot be changed)",
        path.display()
    )]
    QueryDenied { path: PathBuf, source: io::Error },
    #[error("BPF_PROG_QUERY(BPF_CGROUP_DEVICE) on {}: {source}", path.display())]
    Query { path: PathBuf, source: io::Error },
    #[error("BPF_PROG_QUERY(BPF_CGROUP_DEVICE) on {}: the list of programs kept changing", path.display())]
    QueryUnstable { path: PathBuf },
    #[error(
        "device program {id} on {} cannot be opened ({source}), probably owned by an LSM; every device program on a cgroup must allow a device, so the devices cannot be granted while it may deny them",
        path.display()
    )]
    ProgramLocked { id: u32, path: PathBuf, source: io::Error },
    #[error("device program {id} on {}: {what}: {source}", path.display())]
    ReadProgram { id: u32, path: PathBuf, what: &'static str, source: io::Error },
    #[error(
        "device program {id} on {}: its instructions cannot be read back ({why}); with net.core.bpf_jit_harden > 0 (constant blinding) or a restrictive kernel.kptr_restrict the kernel gives no usable dump; refusing to replace a program that cannot be read",
        path.display()
    )]
    Unreadable { id: u32, path: PathBuf, why: String },
    #[error("device program {id} on {}: instruction {at} ({what}) cannot be reloaded from a dump; refusing to replace it", path.display())]
    NotReloadable { id: u32, path: PathBuf, at: usize, what: &'static str },
    #[error(
        "loading the extended copy of device program {id} failed: {source}{}; verifier log: {}",
        hint(source),
        if log_tail.is_empty() { "(none)" } else { log_tail }
    )]
    Load { id: u32, source: io::Error, log_tail: String },
    #[error(
        "replacing device program {old_id} on {} failed ({source}{}); {done} of {total} programs were replaced, the rest still deny the devices",
        path.display(),
        attach_hint(source)
    )]
    Attach { old_id: u32, path: PathBuf, done: usize, total: usize, source: io::Error },
}

fn hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EPERM) => " (on kernels before 5.11 bpf memory counts against RLIMIT_MEMLOCK)",
        _ => "",
    }
}

fn attach_hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EINVAL) => "; BPF_F_REPLACE needs Linux 5.6 or later",
        Some(libc::ENOENT) => "; the program was replaced by someone else meanwhile",
        _ => "",
    }
}

impl V2Error {
    /// The verifier's last lines for a failed load (empty otherwise).
    pub fn verifier_log(&self) -> &str {
        match self {
            V2Error::Load { log_tail, .. } => log_tail,
            _ => "",
        }
    }
}

/// Programs attached to the cgroup and the flags they were attached with.
struct Attached {
    flags: u32,
    ids: Vec<u32>,
}

/// A program read back and, unless it already allows everything, its replacement.
struct Swap<F> {
    old_id: u32,
    old: F,
    new_insns: Option<Vec<Insn>>,
}

/// [`allow_guarded`] without the guard: tests and benches only, on cgroups they made.
#[cfg(any(test, feature = "testing"))]
pub fn allow(sys: &impl BpfOps, cgroup_dir: &Path, rules: &[DeviceRule]) -> Result<V2Report, V2Error> {
    allow_guarded(sys, cgroup_dir, rules, |_| Ok(()))
}

/// Grants `rules` (exact `allow` rules) on the cgroup v2 directory `cgroup_dir`
/// by extending every BPF_CGROUP_DEVICE program attached there. See the
/// module docs for what is refused and why. `guard` is called with the
/// attached programs' ids when there is at least one, before any is read: it
/// refuses a cgroup that is not the container's alone (Finding 6, see
/// [`super::allow_v2`]). With no program attached nothing changes, so it is not asked.
pub fn allow_guarded(
    sys: &impl BpfOps,
    cgroup_dir: &Path,
    rules: &[DeviceRule],
    guard: impl FnOnce(&[u32]) -> Result<(), V2Error>,
) -> Result<V2Report, V2Error> {
    let wanted = grants_from(rules)?;
    let path = || cgroup_dir.to_path_buf();
    let cgroup = sys.open_cgroup(cgroup_dir).map_err(|source| V2Error::OpenCgroup { path: path(), source })?;
    let attached = query(sys, &cgroup, cgroup_dir, false)?;
    let effective = query(sys, &cgroup, cgroup_dir, true)?;
    let ancestor_programs: Vec<u32> = effective.ids.into_iter().filter(|id| !attached.ids.contains(id)).collect();
    if attached.ids.is_empty() {
        return Ok(V2Report::NoFilterAttached { ancestor_programs });
    }
    guard(&attached.ids)?;

    let mut swaps = Vec::with_capacity(attached.ids.len());
    for &id in &attached.ids {
        swaps.push(prepare_swap(sys, cgroup_dir, id, &wanted)?);
    }

    let mut loaded = Vec::with_capacity(swaps.len());
    for p in &swaps {
        let Some(insns) = &p.new_insns else {
            loaded.push(None);
            continue;
        };
        let fd = sys.prog_load(&ProgLoad { insns, license: LICENSE, name: PROG_NAME }).map_err(|e| V2Error::Load {
            id: p.old_id,
            source: e.source,
            log_tail: tail(&e.log, 6),
        })?;
        let new_id = sys
            .prog_info(&fd)
            .map_err(|source| V2Error::ReadProgram {
                id: p.old_id,
                path: path(),
                what: "reading the replacement's id",
                source,
            })?
            .id;
        loaded.push(Some((fd, new_id)));
    }

    // MULTI: swap each program in place. Non-multi (0 or ALLOW_OVERRIDE):
    // there is one program and attaching with the same flags swaps it.
    let multi = attached.flags & BPF_F_ALLOW_MULTI != 0;
    let total = loaded.iter().flatten().count();
    let mut done = 0;
    let mut programs = Vec::with_capacity(swaps.len());
    for (p, new) in swaps.iter().zip(&loaded) {
        let Some((fd, new_id)) = new else {
            programs.push(ProgramChange { old_id: p.old_id, new_id: None });
            continue;
        };
        let result = if multi {
            sys.prog_attach(&cgroup, fd, BPF_F_ALLOW_MULTI | BPF_F_REPLACE, Some(&p.old))
        } else {
            sys.prog_attach(&cgroup, fd, attached.flags, None)
        };
        result.map_err(|source| V2Error::Attach { old_id: p.old_id, path: path(), done, total, source })?;
        done += 1;
        programs.push(ProgramChange { old_id: p.old_id, new_id: Some(*new_id) });
    }
    // The old and new program fds and the cgroup fd close here, after every attach.
    Ok(V2Report::Extended { programs, ancestor_programs })
}

/// Validates the rules: exact `allow` rules on char or block devices, `rwm` access.
fn grants_from(rules: &[DeviceRule]) -> Result<Grants, V2Error> {
    let mut g = Grants::new();
    for r in rules {
        let bad = |why| V2Error::InvalidRule {
            rule: format!("{} {} {}:{} {}", if r.allow { "allow" } else { "deny" }, r.kind, r.major, r.minor, r.access),
            why,
        };
        if !r.allow {
            return Err(bad("only allow rules can be added to a device program"));
        }
        let kind = match r.kind {
            'c' => DevKind::Char,
            'b' => DevKind::Block,
            _ => return Err(bad("the type must be c or b")),
        };
        if r.major > asm::MAX_MAJOR || r.minor > asm::MAX_MINOR {
            return Err(bad("major or minor is beyond Linux's 12/20-bit device numbers"));
        }
        let acc =
            asm::access::parse(r.access).filter(|a| *a != 0).ok_or_else(|| bad("access must be letters of rwm"))?;
        g.add(kind, r.major, r.minor, acc);
    }
    Ok(g)
}

/// BPF_PROG_QUERY, growing the id buffer while the kernel reports more programs.
fn query<S: BpfOps>(sys: &S, cgroup: &S::BpfFd, dir: &Path, effective: bool) -> Result<Attached, V2Error> {
    let mut ids = vec![0u32; 64];
    for _ in 0..10 {
        let out = sys.prog_query(cgroup, effective, &mut ids).map_err(|source| match source.raw_os_error() {
            Some(libc::EPERM | libc::EACCES) => V2Error::QueryDenied { path: dir.into(), source },
            _ => V2Error::Query { path: dir.into(), source },
        })?;
        let count = out.count as usize;
        if count <= ids.len() {
            ids.truncate(count);
            return Ok(Attached { flags: out.attach_flags, ids });
        }
        ids = vec![0; count];
    }
    Err(V2Error::QueryUnstable { path: dir.into() })
}

/// Opens and reads back program `id`, checks that its dump can be reloaded,
/// and builds its replacement unless it already grants `wanted`.
fn prepare_swap<S: BpfOps>(sys: &S, dir: &Path, id: u32, wanted: &Grants) -> Result<Swap<S::BpfFd>, V2Error> {
    let path = || dir.to_path_buf();
    let fd = sys.prog_fd_by_id(id).map_err(|source| match source.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => V2Error::ProgramLocked { id, path: path(), source },
        Some(libc::ENOENT) => {
            V2Error::ReadProgram { id, path: path(), what: "it was detached while being read", source }
        }
        _ => V2Error::ReadProgram { id, path: path(), what: "BPF_PROG_GET_FD_BY_ID", source },
    })?;
    let read = |what, source| V2Error::ReadProgram { id, path: path(), what, source };
    let info = sys.prog_info(&fd).map_err(|e| read("BPF_OBJ_GET_INFO_BY_FD", e))?;
    let insns = sys.prog_xlated(&fd, info.xlated_insns).map_err(|e| read("reading the translated instructions", e))?;
    check_dump(&insns).map_err(|fault| match fault {
        DumpFault::Unreadable(why) => V2Error::Unreadable { id, path: path(), why: why.into() },
        DumpFault::NotReloadable { at, what } => V2Error::NotReloadable { id, path: path(), at, what },
    })?;
    let (have, original) = asm::split_extended(&insns);
    let new_insns = (!have.covers(wanted)).then(|| asm::extend(original, &have.merged(wanted)));
    Ok(Swap { old_id: id, old: fd, new_insns })
}

#[derive(Debug, PartialEq, Eq)]
enum DumpFault {
    Unreadable(&'static str),
    NotReloadable { at: usize, what: &'static str },
}

/// Whether a translated dump can be put behind mighook's block and reloaded
/// with the same meaning.
fn check_dump(insns: &[Insn]) -> Result<(), DumpFault> {
    if insns.is_empty() {
        return Err(DumpFault::Unreadable("the kernel returned no instructions"));
    }
    if insns.iter().all(|i| *i == Insn::default()) {
        return Err(DumpFault::Unreadable("the dump is all zeros"));
    }
    if insns.iter().any(|i| i.dst > 10 || i.src > 10) {
        // Constant blinding uses the hidden auxiliary register (r11).
        return Err(DumpFault::Unreadable("the dump uses the hidden register of constant blinding"));
    }
    let last = insns[insns.len() - 1];
    if !(class(last.code) == JMP && matches!(op(last.code), EXIT | JA)) {
        return Err(DumpFault::Unreadable("it does not end with exit"));
    }
    let mut pc = 0;
    while pc < insns.len() {
        let i = insns[pc];
        let what = match (class(i.code), op(i.code)) {
            // Helper calls come back as kernel addresses, subprogram calls and
            // tail calls depend on state the dump lacks.
            (JMP, CALL) => Some("a call"),
            (JMP, 0xf0) => Some("a tail call"),
            (LD, _) if i.code == LD | IMM | DW => {
                // Map references come back as map ids, which a reload would take for fds.
                if i.src != 0 {
                    Some("a map or BTF reference")
                } else {
                    pc += 2;
                    continue;
                }
            }
            (LD, _) => Some("a legacy packet load"),
            (STX | ST, _) if i.code & 0xe0 != MEM => Some("an atomic or barrier instruction"),
            _ => None,
        };
        if let Some(what) = what {
            return Err(DumpFault::NotReloadable { at: pc, what });
        }
        if matches!(class(i.code), JMP | JMP32) && !matches!(op(i.code), EXIT | CALL) {
            // The block in front is only harmless if no jump can leave the original.
            let off = if class(i.code) == JMP32 && op(i.code) == JA { i.imm as i64 } else { i.off as i64 };
            let target = pc as i64 + 1 + off;
            if target < 0 || target >= insns.len() as i64 {
                return Err(DumpFault::NotReloadable { at: pc, what: "a jump outside the program" });
            }
        }
        pc += 1;
    }
    Ok(())
}

/// The last `n` non-empty lines of a verifier log, on one line.
fn tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

#[cfg(test)]
mod tests;
