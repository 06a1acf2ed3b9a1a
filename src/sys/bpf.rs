//! bpf(2) half of the syscall seam: the calls the cgroup v2 device filter makes.
//!
//! The seam is deliberately thin: each method is one kernel command (two for
//! the program dump, which the kernel only gives out in two steps), with the
//! kernel's own error. Every decision (growing the query buffer, what a dump
//! must look like, which attach flags to use) lives in
//! [`crate::apply::cgroup::v2`], where `crate::sys::fake::bpf::RecordingBpf` (tests, feature `testing`) can
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
