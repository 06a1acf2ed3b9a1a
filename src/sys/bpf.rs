//! bpf(2) half of the syscall seam: the calls the cgroup v2 device filter makes.
//!
//! The seam is deliberately thin: each method is one kernel command (two for
//! the program dump, which the kernel only gives out in two steps), with the
//! kernel's own error. Every decision (growing the query buffer, what a dump
//! must look like, which attach flags to use) lives in
//! [`crate::apply::cgroup::v2`], where `fake::RecordingBpf` (tests only) can
//! exercise it. The instruction type [`Insn`] is the kernel ABI's `struct
//! bpf_insn`, so it lives here too.
//!
//! bpf memory is charged to the memory cgroup since Linux 5.11; nothing here
//! touches `RLIMIT_MEMLOCK` (root may lack `CAP_SYS_RESOURCE`).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// One eBPF instruction, field for field `struct bpf_insn` (8 bytes encoded).
///
/// `dst` and `src` are register numbers (4 bits each in the encoding).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Insn {
    pub code: u8,
    pub dst: u8,
    pub src: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    pub const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        Insn { code, dst, src, off, imm }
    }

    /// The kernel's encoding. The two registers share one byte as C bitfields
    /// (`dst_reg:4, src_reg:4`), whose order follows the byte order.
    pub fn to_bytes(self) -> [u8; 8] {
        let regs = if cfg!(target_endian = "little") {
            (self.dst & 0x0f) | (self.src << 4)
        } else {
            (self.dst << 4) | (self.src & 0x0f)
        };
        let [o0, o1] = self.off.to_ne_bytes();
        let [i0, i1, i2, i3] = self.imm.to_ne_bytes();
        [self.code, regs, o0, o1, i0, i1, i2, i3]
    }

    pub fn from_bytes(b: [u8; 8]) -> Self {
        let (dst, src) =
            if cfg!(target_endian = "little") { (b[1] & 0x0f, b[1] >> 4) } else { (b[1] >> 4, b[1] & 0x0f) };
        Insn {
            code: b[0],
            dst,
            src,
            off: i16::from_ne_bytes([b[2], b[3]]),
            imm: i32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
        }
    }
}

/// Opcode bits from `linux/bpf_common.h` and `linux/bpf.h`.
pub mod opcode {
    // Instruction classes (code & 0x07).
    pub const LD: u8 = 0x00;
    pub const LDX: u8 = 0x01;
    pub const ST: u8 = 0x02;
    pub const STX: u8 = 0x03;
    pub const ALU: u8 = 0x04;
    pub const JMP: u8 = 0x05;
    pub const JMP32: u8 = 0x06;
    pub const ALU64: u8 = 0x07;
    // Load/store size (code & 0x18) and mode (code & 0xe0).
    pub const W: u8 = 0x00;
    pub const H: u8 = 0x08;
    pub const B: u8 = 0x10;
    pub const DW: u8 = 0x18;
    pub const IMM: u8 = 0x00;
    pub const MEM: u8 = 0x60;
    // Operand source (code & 0x08).
    pub const K: u8 = 0x00;
    pub const X: u8 = 0x08;
    // ALU operations (code & 0xf0).
    pub const ADD: u8 = 0x00;
    pub const SUB: u8 = 0x10;
    pub const MUL: u8 = 0x20;
    pub const DIV: u8 = 0x30;
    pub const OR: u8 = 0x40;
    pub const AND: u8 = 0x50;
    pub const LSH: u8 = 0x60;
    pub const RSH: u8 = 0x70;
    pub const NEG: u8 = 0x80;
    pub const MOD: u8 = 0x90;
    pub const XOR: u8 = 0xa0;
    pub const MOV: u8 = 0xb0;
    pub const ARSH: u8 = 0xc0;
    pub const END: u8 = 0xd0;
    // Jump operations (code & 0xf0).
    pub const JA: u8 = 0x00;
    pub const JEQ: u8 = 0x10;
    pub const JGT: u8 = 0x20;
    pub const JGE: u8 = 0x30;
    pub const JSET: u8 = 0x40;
    pub const JNE: u8 = 0x50;
    pub const JSGT: u8 = 0x60;
    pub const JSGE: u8 = 0x70;
    pub const CALL: u8 = 0x80;
    pub const EXIT: u8 = 0x90;
    pub const JLT: u8 = 0xa0;
    pub const JLE: u8 = 0xb0;
    pub const JSLT: u8 = 0xc0;
    pub const JSLE: u8 = 0xd0;

    pub const fn class(code: u8) -> u8 {
        code & 0x07
    }
    pub const fn op(code: u8) -> u8 {
        code & 0xf0
    }
}

/// `attach_flags` bits of BPF_PROG_ATTACH and BPF_PROG_QUERY.
pub const BPF_F_ALLOW_OVERRIDE: u32 = 1 << 0;
pub const BPF_F_ALLOW_MULTI: u32 = 1 << 1;
pub const BPF_F_REPLACE: u32 = 1 << 2;

/// What BPF_PROG_QUERY answered. `count` is the number of attached programs,
/// which may exceed the buffer passed in (the kernel's ENOSPC case): then only
/// the first `ids.len()` ids were written and the caller must ask again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryOut {
    pub attach_flags: u32,
    pub count: u32,
}

/// The parts of `struct bpf_prog_info` the device filter reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgInfo {
    pub id: u32,
    /// Length of the translated (post-verifier) program, in instructions.
    pub xlated_insns: usize,
    pub name: String,
}

/// A program to load as BPF_PROG_TYPE_CGROUP_DEVICE.
#[derive(Debug, Clone, Copy)]
pub struct ProgLoad<'a> {
    pub insns: &'a [Insn],
    pub license: &'a str,
    /// At most 15 bytes of `[A-Za-z0-9_.]` (BPF_OBJ_NAME_LEN).
    pub name: &'a str,
}

/// BPF_PROG_LOAD failed; `log` is the verifier's log (possibly only its tail).
#[derive(Debug, thiserror::Error)]
#[error("{source}")]
pub struct LoadError {
    pub source: io::Error,
    pub log: String,
}

/// bpf(2) calls for BPF_CGROUP_DEVICE programs.
pub trait BpfOps {
    /// An open cgroup directory or program (the fake's stand-in in tests); closed on drop.
    type BpfFd: std::fmt::Debug;

    /// Open a cgroup v2 directory (`O_RDONLY | O_DIRECTORY | O_NOFOLLOW`);
    /// fails with `InvalidInput` unless it is on a cgroup2 file system.
    fn open_cgroup(&self, dir: &Path) -> io::Result<Self::BpfFd>;
    /// BPF_PROG_QUERY for BPF_CGROUP_DEVICE: the programs attached to the cgroup
    /// itself, or with `effective` every program that runs for it (ancestors too).
    fn prog_query(&self, cgroup: &Self::BpfFd, effective: bool, ids: &mut [u32]) -> io::Result<QueryOut>;
    /// BPF_PROG_GET_FD_BY_ID.
    fn prog_fd_by_id(&self, id: u32) -> io::Result<Self::BpfFd>;
    /// BPF_OBJ_GET_INFO_BY_FD without buffers: id, name, dump length.
    fn prog_info(&self, prog: &Self::BpfFd) -> io::Result<ProgInfo>;
    /// BPF_OBJ_GET_INFO_BY_FD into a buffer of `len` instructions: the
    /// translated program. Empty when the kernel withholds the dump; zeroed
    /// instructions when it left the buffer untouched.
    fn prog_xlated(&self, prog: &Self::BpfFd, len: usize) -> io::Result<Vec<Insn>>;
    /// BPF_PROG_LOAD as BPF_PROG_TYPE_CGROUP_DEVICE.
    fn prog_load(&self, prog: &ProgLoad<'_>) -> Result<Self::BpfFd, LoadError>;
    /// BPF_PROG_ATTACH to BPF_CGROUP_DEVICE with `flags`; `replace` is the
    /// program swapped out under BPF_F_REPLACE.
    fn prog_attach(
        &self,
        cgroup: &Self::BpfFd,
        prog: &Self::BpfFd,
        flags: u32,
        replace: Option<&Self::BpfFd>,
    ) -> io::Result<()>;
}

// Commands, program and attach type from linux/bpf.h (stable UAPI numbers).
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_int = 15;
const BPF_PROG_QUERY: libc::c_int = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_QUERY_EFFECTIVE: u32 = 1;
const BPF_OBJ_NAME_LEN: usize = 16;

#[repr(C)]
#[derive(Clone, Copy)]
struct LoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; BPF_OBJ_NAME_LEN],
}

#[repr(C)]
#[derive(Clone, Copy)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct GetIdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// `union bpf_attr`, padded well past its current size: the kernel writes some
/// answers (query counts, revisions) at fixed offsets whatever size we pass,
/// so the memory behind the pointer must cover the whole union.
#[repr(C, align(8))]
union Attr {
    raw: [u8; 256],
    load: LoadAttr,
    attach: AttachAttr,
    query: QueryAttr,
    get_id: GetIdAttr,
    info: InfoAttr,
}

/// The prefix of `struct bpf_prog_info` up to `name` (the kernel accepts a
/// shorter struct and fills only what fits).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct ProgInfoRaw {
    prog_type: u32,
    id: u32,
    tag: [u8; 8],
    jited_prog_len: u32,
    xlated_prog_len: u32,
    jited_prog_insns: u64,
    xlated_prog_insns: u64,
    load_time: u64,
    created_by_uid: u32,
    nr_map_ids: u32,
    map_ids: u64,
    name: [u8; BPF_OBJ_NAME_LEN],
}

fn sys_bpf(cmd: libc::c_int, attr: &mut Attr, size: usize) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a zero-initialised union larger than any command's
    // struct; every pointer inside it refers to memory that outlives the call.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut Attr, size as libc::c_uint) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(rc) }
}

fn fd_from(rc: libc::c_long) -> OwnedFd {
    // SAFETY: a successful bpf(2) command that creates an fd returns a new fd we own.
    unsafe { OwnedFd::from_raw_fd(rc as libc::c_int) }
}

fn zeroed() -> Attr {
    Attr { raw: [0; 256] }
}

fn get_info(prog: &OwnedFd, info: &mut ProgInfoRaw) -> io::Result<()> {
    let mut attr = zeroed();
    attr.info = InfoAttr {
        bpf_fd: prog.as_raw_fd() as u32,
        info_len: std::mem::size_of::<ProgInfoRaw>() as u32,
        info: info as *mut ProgInfoRaw as u64,
    };
    sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr, std::mem::size_of::<InfoAttr>())?;
    Ok(())
}

fn name_bytes(name: &str) -> io::Result<[u8; BPF_OBJ_NAME_LEN]> {
    let ok = name.len() < BPF_OBJ_NAME_LEN && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
    if !ok {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("bad bpf program name {name:?}")));
    }
    let mut out = [0u8; BPF_OBJ_NAME_LEN];
    out[..name.len()].copy_from_slice(name.as_bytes());
    Ok(out)
}

fn c_name(raw: &[u8]) -> String {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

impl BpfOps for super::LinuxSys {
    type BpfFd = OwnedFd;

    fn open_cgroup(&self, dir: &Path) -> io::Result<OwnedFd> {
        use nix::fcntl::OFlag;
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = nix::fcntl::open(dir, flags, nix::sys::stat::Mode::empty())?;
        let fs = nix::sys::statfs::fstatfs(&fd)?.filesystem_type();
        if fs != nix::sys::statfs::CGROUP2_SUPER_MAGIC {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("not a cgroup2 file system (f_type {:#x})", fs.0),
            ));
        }
        Ok(fd)
    }

    fn prog_query(&self, cgroup: &OwnedFd, effective: bool, ids: &mut [u32]) -> io::Result<QueryOut> {
        let mut attr = zeroed();
        attr.query = QueryAttr {
            target_fd: cgroup.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_DEVICE,
            query_flags: if effective { BPF_F_QUERY_EFFECTIVE } else { 0 },
            attach_flags: 0,
            prog_ids: if ids.is_empty() { 0 } else { ids.as_mut_ptr() as u64 },
            prog_cnt: ids.len().try_into().unwrap_or(u32::MAX),
            _pad: 0,
        };
        let rc = sys_bpf(BPF_PROG_QUERY, &mut attr, std::mem::size_of::<QueryAttr>());
        // SAFETY: the kernel wrote the answer into the query member.
        let q = unsafe { attr.query };
        match rc {
            Ok(_) => Ok(QueryOut { attach_flags: q.attach_flags, count: q.prog_cnt }),
            // ENOSPC: the buffer was too small and prog_cnt holds the full count.
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && q.prog_cnt as usize > ids.len() => {
                Ok(QueryOut { attach_flags: q.attach_flags, count: q.prog_cnt })
            }
            Err(e) => Err(e),
        }
    }

    fn prog_fd_by_id(&self, id: u32) -> io::Result<OwnedFd> {
        let mut attr = zeroed();
        attr.get_id = GetIdAttr { prog_id: id, next_id: 0, open_flags: 0 };
        sys_bpf(BPF_PROG_GET_FD_BY_ID, &mut attr, std::mem::size_of::<GetIdAttr>()).map(fd_from)
    }

    fn prog_info(&self, prog: &OwnedFd) -> io::Result<ProgInfo> {
        let mut info = ProgInfoRaw::default();
        get_info(prog, &mut info)?;
        Ok(ProgInfo { id: info.id, xlated_insns: info.xlated_prog_len as usize / 8, name: c_name(&info.name) })
    }

    fn prog_xlated(&self, prog: &OwnedFd, len: usize) -> io::Result<Vec<Insn>> {
        let mut buf = vec![[0u8; 8]; len];
        // A fresh info struct: counts the first call returned (map ids, jited
        // length) would make the kernel write through null pointers.
        let mut info = ProgInfoRaw {
            xlated_prog_len: (len * 8).try_into().map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?,
            xlated_prog_insns: buf.as_mut_ptr() as u64,
            ..ProgInfoRaw::default()
        };
        get_info(prog, &mut info)?;
        if info.xlated_prog_insns == 0 {
            // The kernel withheld the dump (bpf_dump_raw_ok() false).
            return Ok(Vec::new());
        }
        let got = (info.xlated_prog_len as usize / 8).min(len);
        Ok(buf[..got].iter().map(|b| Insn::from_bytes(*b)).collect())
    }

    fn prog_load(&self, prog: &ProgLoad<'_>) -> Result<OwnedFd, LoadError> {
        let fail = |source: io::Error| LoadError { source, log: String::new() };
        if prog.insns.iter().any(|i| i.dst > 15 || i.src > 15) {
            return Err(fail(io::Error::new(io::ErrorKind::InvalidInput, "register number does not fit in 4 bits")));
        }
        let code: Vec<[u8; 8]> = prog.insns.iter().map(|i| i.to_bytes()).collect();
        let license = CString::new(prog.license).map_err(|_| fail(io::Error::from_raw_os_error(libc::EINVAL)))?;
        let name = name_bytes(prog.name).map_err(fail)?;
        let load = |log: &mut [u8]| {
            let mut attr = zeroed();
            attr.load = LoadAttr {
                prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
                insn_cnt: code.len() as u32,
                insns: code.as_ptr() as u64,
                license: license.as_ptr() as u64,
                log_level: u32::from(!log.is_empty()),
                log_size: log.len() as u32,
                log_buf: if log.is_empty() { 0 } else { log.as_mut_ptr() as u64 },
                kern_version: 0,
                prog_flags: 0,
                prog_name: name,
            };
            // The verifier gives up with EAGAIN when a signal arrives; libbpf retries too.
            let mut tries = 0;
            loop {
                match sys_bpf(BPF_PROG_LOAD, &mut attr, std::mem::size_of::<LoadAttr>()) {
                    Err(e) if e.raw_os_error() == Some(libc::EAGAIN) && tries < 5 => tries += 1,
                    other => return other.map(fd_from),
                }
            }
        };
        // Load without a log first (a successful load may overflow a small
        // log); only a failure is repeated to collect the verifier's reasons.
        let first = match load(&mut []) {
            Ok(fd) => return Ok(fd),
            Err(e) => e,
        };
        let mut log = vec![0u8; 1 << 20];
        match load(&mut log) {
            Ok(fd) => Ok(fd),
            Err(_) => Err(LoadError { source: first, log: c_name(&log) }),
        }
    }

    fn prog_attach(&self, cgroup: &OwnedFd, prog: &OwnedFd, flags: u32, replace: Option<&OwnedFd>) -> io::Result<()> {
        let mut attr = zeroed();
        attr.attach = AttachAttr {
            target_fd: cgroup.as_raw_fd() as u32,
            attach_bpf_fd: prog.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_DEVICE,
            attach_flags: flags,
            replace_bpf_fd: replace.map_or(0, |r| r.as_raw_fd() as u32),
        };
        sys_bpf(BPF_PROG_ATTACH, &mut attr, std::mem::size_of::<AttachAttr>()).map(drop)
    }
}

#[cfg(test)]
pub mod fake {
    //! An in-memory kernel for [`BpfOps`]: cgroups with attached programs,
    //! programs with their dumps, scripted failures, a log of every call and a
    //! count of open fds (so tests can check that everything was closed).
    //! Attach follows the kernel's flag rules (MULTI, REPLACE, non-multi swap).

    use super::*;
    use std::collections::BTreeMap;
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
            let s =
                self.begin(Op::Query, format!("query {} effective={effective} room={}", path.display(), ids.len()))?;
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insn_encoding_matches_struct_bpf_insn() {
        // `r2 = *(u32 *)(r1 +4)` as bpftool prints it: code 0x61, dst 2, src 1.
        let i = Insn::new(0x61, 2, 1, 4, 0);
        let b = i.to_bytes();
        assert_eq!(b.len(), 8);
        assert_eq!(b[0], 0x61);
        if cfg!(target_endian = "little") {
            assert_eq!(b, [0x61, 0x12, 4, 0, 0, 0, 0, 0]);
        }
        assert_eq!(Insn::from_bytes(b), i);
    }

    #[test]
    fn insn_encoding_round_trips_negative_fields() {
        let i = Insn::new(0x55, 10, 9, -3, -65536);
        assert_eq!(Insn::from_bytes(i.to_bytes()), i);
    }

    #[test]
    fn program_names_are_checked() {
        assert!(name_bytes("mighook_dev").is_ok());
        assert!(name_bytes("sixteen_chars_xx").is_err());
        assert!(name_bytes("bad name").is_err());
    }

    #[test]
    fn attr_structs_have_the_uapi_layout() {
        assert_eq!(std::mem::size_of::<LoadAttr>(), 64);
        assert_eq!(std::mem::size_of::<AttachAttr>(), 20);
        assert_eq!(std::mem::size_of::<QueryAttr>(), 32);
        assert_eq!(std::mem::size_of::<InfoAttr>(), 16);
        assert_eq!(std::mem::offset_of!(ProgInfoRaw, xlated_prog_len), 20);
        assert_eq!(std::mem::offset_of!(ProgInfoRaw, xlated_prog_insns), 32);
        assert_eq!(std::mem::offset_of!(ProgInfoRaw, name), 64);
        assert_eq!(std::mem::offset_of!(LoadAttr, prog_name), 48);
        assert_eq!(std::mem::offset_of!(QueryAttr, prog_cnt), 24);
    }
}
