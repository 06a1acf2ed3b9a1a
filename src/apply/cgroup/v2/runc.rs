//! A reproduction of the device filter runc 1.1 generates
//! (`libcontainer/cgroups/ebpf/devicefilter`), instruction for instruction.
//!
//! mighook never attaches this to a container; tests use it as "the runtime's
//! program" that mighook must extend without widening, and the kernel test
//! attaches it as a baseline. Its blocks clobber r1 (`w1 = w3` for the access
//! test), which is why mighook's own block must leave r1 alone.

use super::asm::{self, Asm, DevKind, R0, R1, R2, R3, R4, R5, access};
use crate::sys::bpf::Insn;
use crate::sys::bpf::opcode::*;

/// One OCI device rule; `None` is the wildcard (`a` for the type, `*` for numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilterRule {
    pub allow: bool,
    pub kind: Option<DevKind>,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    /// [`access`] bits.
    pub access: u32,
}

impl FilterRule {
    pub fn allow(kind: DevKind, major: Option<u32>, minor: Option<u32>, acc: &str) -> Self {
        FilterRule { allow: true, kind: Some(kind), major, minor, access: access::parse(acc).expect("rwm letters") }
    }

    /// Whether the rule matches a request, as runc's block decides it.
    pub fn matches(&self, kind: DevKind, acc: u32, major: u32, minor: u32) -> bool {
        self.kind.is_none_or(|k| k == kind)
            && (self.access == access::ALL || acc & !self.access == 0)
            && self.major.is_none_or(|m| m == major)
            && self.minor.is_none_or(|m| m == minor)
    }
}

/// runc 1.1's default rules (`specconv.AllowedDevices`) behind `runc spec`'s
/// "deny all": mknod of any char/block device, the standard nodes, ptmx, tun,
/// pts; in the order runc 1.1.5 emits them (its device emulator sorts them).
pub fn default_rules() -> Vec<FilterRule> {
    use DevKind::{Block, Char};
    vec![
        FilterRule::allow(Block, None, None, "m"),
        FilterRule::allow(Char, None, None, "m"),
        FilterRule::allow(Char, Some(1), Some(3), "rwm"),    // /dev/null
        FilterRule::allow(Char, Some(1), Some(5), "rwm"),    // /dev/zero
        FilterRule::allow(Char, Some(1), Some(7), "rwm"),    // /dev/full
        FilterRule::allow(Char, Some(1), Some(8), "rwm"),    // /dev/random
        FilterRule::allow(Char, Some(1), Some(9), "rwm"),    // /dev/urandom
        FilterRule::allow(Char, Some(5), Some(0), "rwm"),    // /dev/tty
        FilterRule::allow(Char, Some(5), Some(2), "rwm"),    // /dev/ptmx
        FilterRule::allow(Char, Some(10), Some(200), "rwm"), // /dev/net/tun
        FilterRule::allow(Char, Some(136), None, "rwm"),     // /dev/pts/*
    ]
}

/// The program runc emits for `rules` (first match wins; runc walks its
/// cleaned rule list backwards, so its last rule comes first) and the default.
pub fn filter(rules: &[FilterRule], default_allow: bool) -> Vec<Insn> {
    let mut a = Asm::new();
    for i in asm::PROLOGUE {
        a.emit(i);
    }
    for r in rules {
        let next = a.label();
        if let Some(k) = r.kind {
            a.jump(asm::jmp_k(JNE, R2, k as i32, 0), next);
        }
        if r.access != access::ALL {
            a.emit(asm::alu32_x(MOV, R1, R3));
            a.emit(asm::alu32_k(AND, R1, r.access as i32));
            a.jump(asm::jmp_x(JNE, R1, R3, 0), next);
        }
        if let Some(m) = r.major {
            a.jump(asm::jmp_k(JNE, R4, m as i32, 0), next);
        }
        if let Some(m) = r.minor {
            a.jump(asm::jmp_k(JNE, R5, m as i32, 0), next);
        }
        a.emit(asm::alu32_k(MOV, R0, r.allow as i32));
        a.emit(asm::exit());
        a.bind(next);
    }
    a.emit(asm::alu32_k(MOV, R0, default_allow as i32));
    a.emit(asm::exit());
    a.finish().expect("every label is bound")
}

/// What `filter(rules, default_allow)` decides, computed from the rules.
pub fn decide(rules: &[FilterRule], default_allow: bool, kind: DevKind, acc: u32, major: u32, minor: u32) -> bool {
    rules.iter().find(|r| r.matches(kind, acc, major, minor)).map_or(default_allow, |r| r.allow)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `runc` 1.1.5's program for `runc spec`'s config, read back from the
    /// kernel (BPF_OBJ_GET_INFO_BY_FD, xlated) on Linux 6.18.
    const RUNC_1_1_5_DUMP: [Insn; 64] = [
        Insn::new(0x61, 2, 1, 0, 0),
        Insn::new(0x54, 2, 0, 0, 65535),
        Insn::new(0x61, 3, 1, 0, 0),
        Insn::new(0x74, 3, 0, 0, 16),
        Insn::new(0x61, 4, 1, 4, 0),
        Insn::new(0x61, 5, 1, 8, 0),
        Insn::new(0x55, 2, 0, 5, 1),
        Insn::new(0xbc, 1, 3, 0, 0),
        Insn::new(0x54, 1, 0, 0, 1),
        Insn::new(0x5d, 1, 3, 2, 0),
        Insn::new(0xb4, 0, 0, 0, 1),
        Insn::new(0x95, 0, 0, 0, 0),
        Insn::new(0x55, 2, 0, 5, 2),
        Insn::new(0xbc, 1, 3, 0, 0),
        Insn::new(0x54, 1, 0, 0, 1),
        Insn::new(0x5d, 1, 3, 2, 0),
        Insn::new(0xb4, 0, 0, 0, 1),
        Insn::new(0x95, 0, 0, 0, 0),
        Insn::new(0x55, 2, 0, 4, 2),
        Insn::new(0x55, 4, 0, 3, 1),
        Insn::new(0x55, 5, 0, 2, 3),
        Insn::new(0xb4, 0, 0, 0, 1),
        Insn::new(0x95, 0, 0, 0, 0),
        Insn::new(0x55, 2, 0, 4, 2),
        Insn::new(0x55, 4, 0, 3, 1),
        Insn::new(0x55, 5, 0, 2, 5),
        Insn::new(0xb4, 0, 0, 0, 1),
        Insn::new(0x95, 0, 0, 0, 0),
        Insn::new(0x55, 2, 0, 4, 2),
        Insn::new(0x55, 4, 0, 3, 1),
        Insn::new(0x55, 5, 0, 2, 7),
        Insn::new(0xb4, 0, 0, 0, 1),
        Insn::new(0x95, 0, 0, 0, 0),
        Insn::new(0x55, 2, 0, 4, 2),
        Insn::new(0x55, 4, 0, 3, 1),
        Insn::new(0x55, 5, 0, 2, 8),
        Insn::new(0xb4, 0, 0, 0, 1),
        Insn::new(0x95, 0, 0, 0, 0),
        Insn::new(0x55, 2, 0, 4, 2),
        Insn::new(0x55, 4, 0, 3, 1),
        Insn::new(0x55, 5, 0, 2, 9),
        Insn::new(0xb4, 0, 0, 0, 1),
        Insn::new(0x95, 0, 0, 0, 0),
        Insn::new(0x55, 2, 0, 4, 2),
        Insn::new(0x55, 4, 0, 3, 5),
        Insn::new(0x55, 5, 0, 2, 0),
        Insn::new(0xb4, 0, 0, 0, 1),
        Insn::new(0x95, 0, 0, 0, 0),
        Insn::new(0x55, 2, 0, 4, 2),
        Insn::new(0x55, 4, 0, 3, 5),
        Insn::new(0x55, 5, 0, 2, 2),
        Insn::new(0xb4, 0, 0, 0, 1),
        Insn::new(0x95, 0, 0, 0, 0),
        Insn::new(0x55, 2, 0, 4, 2),
        Insn::new(0x55, 4, 0, 3, 10),
        Insn::new(0x55, 5, 0, 2, 200),
        Insn::new(0xb4, 0, 0, 0, 1),
        Insn::new(0x95, 0, 0, 0, 0),
        Insn::new(0x55, 2, 0, 3, 2),
        Insn::new(0x55, 4, 0, 2, 136),
        Insn::new(0xb4, 0, 0, 0, 1),
        Insn::new(0x95, 0, 0, 0, 0),
        Insn::new(0xb4, 0, 0, 0, 0),
        Insn::new(0x95, 0, 0, 0, 0),
    ];

    #[test]
    fn default_program_is_runcs_program_instruction_for_instruction() {
        assert_eq!(filter(&default_rules(), false), RUNC_1_1_5_DUMP);
    }

    #[test]
    fn first_block_matches_runcs_dump() {
        // The head of `bpftool prog dump xlated` of runc 1.1's program, whose
        // first block is `b *:* m` (container-runtimes-here.md §5).
        let rules = [FilterRule::allow(DevKind::Block, None, None, "m")];
        let p = filter(&rules, false);
        let codes: Vec<u8> = p.iter().map(|i| i.code).collect();
        assert_eq!(codes, [0x61, 0x54, 0x61, 0x74, 0x61, 0x61, 0x55, 0xbc, 0x54, 0x5d, 0xb4, 0x95, 0xb4, 0x95]);
        assert_eq!(p[6], asm::jmp_k(JNE, R2, 1, 5));
        assert_eq!(p[9], asm::jmp_x(JNE, R1, R3, 2));
    }
}
