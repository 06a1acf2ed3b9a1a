//! Emitter and assembler for device-filter programs, and mighook's own block.
//!
//! mighook extends a runtime's program by putting a fixed-shape block in front
//! of it: a marker, a prologue that loads the context into r2..r5 (as runc,
//! crun and systemd do), then one six-instruction block per granted device that
//! returns 1 on a match and otherwise falls through. The runtime's instructions
//! follow unchanged: their jumps are relative, so they still land where they
//! did. r1 (the context pointer the original program starts from) and r10 are
//! never written; only r0 and r2..r5 are, and the original program cannot read
//! those before writing them (the verifier rejected it otherwise).
//!
//! The fixed shape also lets [`split_extended`] recognise a program mighook
//! already extended, so a second run merges its grants into the existing block
//! instead of stacking another one.

use std::collections::BTreeMap;

use crate::sys::bpf::Insn;
use crate::sys::bpf::opcode::*;

pub const R0: u8 = 0;
pub const R1: u8 = 1;
pub const R2: u8 = 2;
pub const R3: u8 = 3;
pub const R4: u8 = 4;
pub const R5: u8 = 5;
pub const R10: u8 = 10;

/// `BPF_DEVCG_DEV_*`: the device type in the low 16 bits of `access_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DevKind {
    Block = 1,
    Char = 2,
}

impl DevKind {
    pub fn letter(self) -> char {
        match self {
            DevKind::Block => 'b',
            DevKind::Char => 'c',
        }
    }
}

/// `BPF_DEVCG_ACC_*`: access bits in the high 16 bits of `access_type`.
pub mod access {
    pub const MKNOD: u32 = 1;
    pub const READ: u32 = 2;
    pub const WRITE: u32 = 4;
    pub const ALL: u32 = MKNOD | READ | WRITE;

    /// Bits of an OCI access string ("rwm" letters); `None` for any other letter.
    pub fn parse(s: &str) -> Option<u32> {
        s.chars().try_fold(0, |acc, c| match c {
            'r' => Some(acc | READ),
            'w' => Some(acc | WRITE),
            'm' => Some(acc | MKNOD),
            _ => None,
        })
    }

    pub fn letters(bits: u32) -> String {
        [(READ, 'r'), (WRITE, 'w'), (MKNOD, 'm')].iter().filter(|(b, _)| bits & b != 0).map(|(_, c)| *c).collect()
    }
}

// ---- single instructions -------------------------------------------------

/// `dst = *(size *)(src + off)`.
pub const fn ldx(size: u8, dst: u8, src: u8, off: i16) -> Insn {
    Insn::new(LDX | MEM | size, dst, src, off, 0)
}
/// 64-bit `dst op= imm` (imm sign-extended).
pub const fn alu64_k(op: u8, dst: u8, imm: i32) -> Insn {
    Insn::new(ALU64 | op | K, dst, 0, 0, imm)
}
/// 32-bit `wdst op= imm` (result zero-extended).
pub const fn alu32_k(op: u8, dst: u8, imm: i32) -> Insn {
    Insn::new(ALU | op | K, dst, 0, 0, imm)
}
pub const fn alu64_x(op: u8, dst: u8, src: u8) -> Insn {
    Insn::new(ALU64 | op | X, dst, src, 0, 0)
}
pub const fn alu32_x(op: u8, dst: u8, src: u8) -> Insn {
    Insn::new(ALU | op | X, dst, src, 0, 0)
}
pub const fn mov64_k(dst: u8, imm: i32) -> Insn {
    alu64_k(MOV, dst, imm)
}
/// `if dst op imm goto pc+off` on 64-bit values.
pub const fn jmp_k(op: u8, dst: u8, imm: i32, off: i16) -> Insn {
    Insn::new(JMP | op | K, dst, 0, off, imm)
}
pub const fn jmp_x(op: u8, dst: u8, src: u8, off: i16) -> Insn {
    Insn::new(JMP | op | X, dst, src, off, 0)
}
/// `if wdst op imm goto pc+off` on the low 32 bits.
pub const fn jmp32_k(op: u8, dst: u8, imm: i32, off: i16) -> Insn {
    Insn::new(JMP32 | op | K, dst, 0, off, imm)
}
pub const fn jmp32_x(op: u8, dst: u8, src: u8, off: i16) -> Insn {
    Insn::new(JMP32 | op | X, dst, src, off, 0)
}
pub const fn ja(off: i16) -> Insn {
    Insn::new(JMP | JA, 0, 0, off, 0)
}
pub const fn exit() -> Insn {
    Insn::new(JMP | EXIT, 0, 0, 0, 0)
}

// ---- assembler with labels -----------------------------------------------

/// A jump target inside an [`Asm`] program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label(usize);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AsmError {
    #[error("label {0} was jumped to but never bound")]
    Unbound(usize),
    #[error("jump at instruction {at} is too far for a 16-bit offset")]
    TooFar { at: usize },
}

/// Builds a program whose forward and backward jumps name labels; offsets are
/// resolved by [`Asm::finish`].
#[derive(Debug, Default)]
pub struct Asm {
    insns: Vec<Insn>,
    labels: Vec<Option<usize>>,
    fixups: Vec<(usize, Label)>,
}

impl Asm {
    pub fn new() -> Self {
        Asm::default()
    }

    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// The next emitted instruction is the label's target.
    pub fn bind(&mut self, l: Label) {
        self.labels[l.0] = Some(self.insns.len());
    }

    pub fn emit(&mut self, i: Insn) {
        self.insns.push(i);
    }

    /// Emit a jump instruction whose offset is filled in to reach `l`.
    pub fn jump(&mut self, i: Insn, l: Label) {
        self.fixups.push((self.insns.len(), l));
        self.insns.push(i);
    }

    pub fn finish(mut self) -> Result<Vec<Insn>, AsmError> {
        for (at, l) in self.fixups {
            let target = self.labels[l.0].ok_or(AsmError::Unbound(l.0))?;
            let off = target as i64 - at as i64 - 1;
            self.insns[at].off = i16::try_from(off).map_err(|_| AsmError::TooFar { at })?;
        }
        Ok(self.insns)
    }
}

// ---- mighook's block -----------------------------------------------------

/// First instruction of every program mighook builds: `r0 = "mgh1"`. Harmless
/// (r0 is set again before any exit) and it survives the verifier unchanged,
/// so a later run can tell its own block from the runtime's code.
pub const MARKER: Insn = mov64_k(R0, 0x6d67_6831);

/// Loads the context like runc/crun/systemd: r2 = type, r3 = access, r4 = major, r5 = minor.
pub const PROLOGUE: [Insn; 6] = [
    ldx(W, R2, R1, 0),
    alu32_k(AND, R2, 0xffff),
    ldx(W, R3, R1, 0),
    alu32_k(RSH, R3, 16),
    ldx(W, R4, R1, 4),
    ldx(W, R5, R1, 8),
];

/// Linux device numbers: 12-bit majors, 20-bit minors, so every value fits a
/// positive `imm` and 64-bit compares against the zero-extended ctx fields are exact.
pub const MAX_MAJOR: u32 = (1 << 12) - 1;
pub const MAX_MINOR: u32 = (1 << 20) - 1;

/// Exact devices and the access granted on each, keyed by (type, major, minor).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants(BTreeMap<(DevKind, u32, u32), u32>);

impl Grants {
    pub fn new() -> Self {
        Grants::default()
    }

    /// Adds `access` on one device (merged with what it already had).
    /// Panics on numbers out of Linux's range or unknown access bits: callers validate first.
    pub fn add(&mut self, kind: DevKind, major: u32, minor: u32, access: u32) {
        assert!(major <= MAX_MAJOR && minor <= MAX_MINOR && access & !access::ALL == 0 && access != 0);
        *self.0.entry((kind, major, minor)).or_insert(0) |= access;
    }

    /// Whether every access in `other` is already granted here.
    pub fn covers(&self, other: &Grants) -> bool {
        other.0.iter().all(|(k, a)| self.0.get(k).is_some_and(|have| have & a == *a))
    }

    pub fn merged(&self, other: &Grants) -> Grants {
        let mut out = self.clone();
        for (&(kind, major, minor), &a) in &other.0 {
            out.add(kind, major, minor, a);
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (DevKind, u32, u32, u32)> + '_ {
        self.0.iter().map(|(&(k, ma, mi), &a)| (k, ma, mi, a))
    }

    /// Whether a request (type, access bits, major, minor) matches one grant.
    pub fn allows(&self, kind: DevKind, acc: u32, major: u32, minor: u32) -> bool {
        self.0.get(&(kind, major, minor)).is_some_and(|have| acc & !have == 0)
    }
}

/// One grant: type, then "no access bit outside the grant" (a subset test that
/// needs no scratch register: `JSET r3, ~access`), major, minor, allow.
/// Every "no" jumps to the instruction after the block.
fn block(kind: DevKind, major: u32, minor: u32, acc: u32) -> [Insn; 6] {
    [
        jmp_k(JNE, R2, kind as i32, 5),
        jmp_k(JSET, R3, !(acc as i32), 4),
        jmp_k(JNE, R4, major as i32, 3),
        jmp_k(JNE, R5, minor as i32, 2),
        mov64_k(R0, 1),
        exit(),
    ]
}

/// `original` with mighook's block for `grants` in front.
pub fn extend(original: &[Insn], grants: &Grants) -> Vec<Insn> {
    let mut out = Vec::with_capacity(1 + PROLOGUE.len() + 6 * grants.len() + original.len());
    out.push(MARKER);
    out.extend_from_slice(&PROLOGUE);
    for (kind, major, minor, acc) in grants.iter() {
        out.extend_from_slice(&block(kind, major, minor, acc));
    }
    out.extend_from_slice(original);
    out
}

/// Splits a program mighook built with [`extend`] back into its grants and the
/// original program. A program without mighook's exact shape is all original
/// (no grants): extending it again is still correct, only longer.
pub fn split_extended(prog: &[Insn]) -> (Grants, &[Insn]) {
    let mut grants = Grants::new();
    let head = 1 + PROLOGUE.len();
    if prog.len() < head || prog[0] != MARKER || prog[1..head] != PROLOGUE {
        return (grants, prog);
    }
    let mut at = head;
    while let Some(b) = prog.get(at..at + 6) {
        let Some((kind, major, minor, acc)) = parse_block(b) else { break };
        grants.add(kind, major, minor, acc);
        at += 6;
    }
    (grants, &prog[at..])
}

fn parse_block(b: &[Insn]) -> Option<(DevKind, u32, u32, u32)> {
    let kind = match b[0].imm {
        1 => DevKind::Block,
        2 => DevKind::Char,
        _ => return None,
    };
    let acc = !(b[1].imm as u32);
    let (major, minor) = (u32::try_from(b[2].imm).ok()?, u32::try_from(b[3].imm).ok()?);
    let valid = acc != 0 && acc & !access::ALL == 0 && major <= MAX_MAJOR && minor <= MAX_MINOR;
    (valid && b == block(kind, major, minor, acc)).then_some((kind, major, minor, acc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(list: &[(DevKind, u32, u32, &str)]) -> Grants {
        let mut g = Grants::new();
        for &(k, ma, mi, a) in list {
            g.add(k, ma, mi, access::parse(a).unwrap());
        }
        g
    }

    #[test]
    fn block_keeps_r1_and_r10_and_writes_only_r0_to_r5() {
        let prog = extend(&[mov64_k(R0, 0), exit()], &grants(&[(DevKind::Char, 195, 2, "rw")]));
        let ours = &prog[..prog.len() - 2];
        for i in ours {
            let writes = matches!(class(i.code), ALU | ALU64 | LDX);
            if writes {
                assert!(i.dst == R0 || (R2..=R5).contains(&i.dst), "{i:?} writes r{}", i.dst);
            }
        }
    }

    #[test]
    fn every_block_jump_lands_on_the_next_block() {
        let g = grants(&[(DevKind::Char, 195, 2, "rw"), (DevKind::Block, 8, 0, "r")]);
        let prog = extend(&[exit()], &g);
        for (pc, i) in prog.iter().enumerate().skip(7) {
            if class(i.code) == JMP && op(i.code) != EXIT {
                let target = pc as i64 + 1 + i.off as i64;
                assert_eq!((target - 7) % 6, 0, "insn {pc} jumps to {target}");
            }
        }
    }

    #[test]
    fn access_test_is_a_subset_test() {
        let b = block(DevKind::Char, 195, 2, access::READ | access::WRITE);
        assert_eq!(b[1], jmp_k(JSET, R3, !6, 4));
    }

    #[test]
    fn split_finds_grants_and_original() {
        let original = [mov64_k(R0, 0), exit()];
        let g = grants(&[(DevKind::Char, 195, 2, "rw"), (DevKind::Char, 195, 255, "rw")]);
        let prog = extend(&original, &g);
        let (found, rest) = split_extended(&prog);
        assert_eq!(found, g);
        assert_eq!(rest, original);
    }

    #[test]
    fn split_of_a_foreign_program_is_all_original() {
        let foreign: Vec<Insn> = PROLOGUE.iter().copied().chain([mov64_k(R0, 0), exit()]).collect();
        let (found, rest) = split_extended(&foreign);
        assert!(found.is_empty());
        assert_eq!(rest, foreign);
    }

    #[test]
    fn split_stops_at_a_changed_block() {
        let g = grants(&[(DevKind::Char, 195, 2, "rw")]);
        let mut prog = extend(&[exit()], &g);
        prog[7 + 4] = mov64_k(R0, 0); // no longer mighook's allow block
        let (found, rest) = split_extended(&prog);
        assert!(found.is_empty());
        assert_eq!(rest.len(), prog.len() - 7);
    }

    #[test]
    fn grants_merge_access_per_device() {
        let mut g = grants(&[(DevKind::Char, 195, 2, "r")]);
        g.add(DevKind::Char, 195, 2, access::WRITE);
        assert_eq!(g, grants(&[(DevKind::Char, 195, 2, "rw")]));
        assert!(g.covers(&grants(&[(DevKind::Char, 195, 2, "w")])));
        assert!(!g.covers(&grants(&[(DevKind::Char, 195, 2, "m")])));
        assert!(!g.covers(&grants(&[(DevKind::Char, 195, 3, "r")])));
    }

    #[test]
    fn assembler_resolves_forward_and_backward_labels() {
        let mut a = Asm::new();
        let (top, end) = (a.label(), a.label());
        a.bind(top);
        a.jump(jmp_k(JEQ, R2, 1, 0), end);
        a.jump(ja(0), top);
        a.bind(end);
        a.emit(exit());
        assert_eq!(a.finish().unwrap(), [jmp_k(JEQ, R2, 1, 1), ja(-2), exit()]);
    }

    #[test]
    fn assembler_rejects_unbound_labels() {
        let mut a = Asm::new();
        let l = a.label();
        a.jump(ja(0), l);
        assert_eq!(a.finish(), Err(AsmError::Unbound(0)));
    }

    #[test]
    fn access_letters_round_trip() {
        assert_eq!(access::parse("rwm"), Some(access::ALL));
        assert_eq!(access::parse("rx"), None);
        assert_eq!(access::letters(access::READ | access::WRITE), "rw");
    }
}
