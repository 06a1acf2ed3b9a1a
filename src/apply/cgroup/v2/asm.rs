//! Emitter and assembler for device-filter programs, and mighook's own block.
//!
//! mighook extends a runtime's program by putting a fixed-shape block in front
//! of it: a marker, a prologue that loads the context into r2..r5 (as runc,
//! crun and systemd do), a dispatch key `r0 = major << 20 | minor`, one
//! `if w0 == key goto check` per granted device, then per device a check of
//! the exact major, minor, type and access that returns 1 on a match and
//! otherwise jumps to the original program. The runtime's instructions follow
//! unchanged: their jumps are relative, so they still land where they did. r1
//! (the context pointer the original program starts from) and r10 are never
//! written; only r0 and r2..r5 are, and the original program cannot read
//! those before writing them (the verifier rejected it otherwise).
//!
//! Why a dispatch chain rather than one `if type/access/major/minor` block per
//! device: the verifier walks every fall-through state of such blocks with
//! the values it learned, about 40 instructions and 4 states per device
//! (6.7 ms of `BPF_PROG_LOAD` for the 123 grants of 56 MIG devices). The
//! chain's fall-through learns nothing, and every failed check lands on the
//! original's first instruction, where only r1 is live, so it is pruned
//! (1.6 ms for the same grants).
//!
//! The fixed shape also lets [`split_extended`] recognise a program mighook
//! already extended, so a second run merges its grants into the existing block
//! instead of stacking another one. Programs extended with the first layout
//! (six-instruction blocks, marker `mgh1`) are recognised too.

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

/// First instruction of every program mighook builds: `r0 = "mgh2"`. Harmless
/// (r0 is set again before any exit) and it survives the verifier unchanged,
/// so a later run can tell its own block from the runtime's code.
pub const MARKER: Insn = mov64_k(R0, 0x6d67_6832);
/// The marker of the first layout (six-instruction blocks; see `split_first_layout`).
pub const MARKER_FIRST_LAYOUT: Insn = mov64_k(R0, 0x6d67_6831);

/// Loads the context like runc/crun/systemd: r2 = type, r3 = access, r4 = major, r5 = minor.
pub const PROLOGUE: [Insn; 6] = [
    ldx(W, R2, R1, 0),
    alu32_k(AND, R2, 0xffff),
    ldx(W, R3, R1, 0),
    alu32_k(RSH, R3, 16),
    ldx(W, R4, R1, 4),
    ldx(W, R5, R1, 8),
];

/// The dispatch key `r0 = r4 << 20 | r5`. Its low 32 bits are exact for
/// Linux's 12/20-bit numbers; each check compares major and minor again, so
/// out-of-range context values that alias a key are still refused.
pub const KEY: [Insn; 3] = [alu64_x(MOV, R0, R4), alu64_k(LSH, R0, 20), alu64_x(OR, R0, R5)];

/// Linux device numbers: 12-bit majors, 20-bit minors, so every value fits a
/// positive `imm` and 64-bit compares against the zero-extended ctx fields are exact.
pub const MAX_MAJOR: u32 = (1 << 12) - 1;
pub const MAX_MINOR: u32 = (1 << 20) - 1;

fn key(major: u32, minor: u32) -> i32 {
    ((major << 20) | minor) as i32
}

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
        assert!(valid(major, minor, access));
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

    /// The grants per (major, minor), in key order: one dispatch entry each.
    fn by_device(&self) -> BTreeMap<(u32, u32), Vec<(DevKind, u32)>> {
        let mut out: BTreeMap<(u32, u32), Vec<(DevKind, u32)>> = BTreeMap::new();
        for (kind, major, minor, acc) in self.iter() {
            out.entry((major, minor)).or_default().push((kind, acc));
        }
        out
    }
}

fn valid(major: u32, minor: u32, access: u32) -> bool {
    major <= MAX_MAJOR && minor <= MAX_MINOR && access & !access::ALL == 0 && access != 0
}

/// `original` with mighook's block for `grants` in front.
///
/// No jump in it has offset 0: the kernel drops such no-ops from the
/// translated dump, and a later [`split_extended`] must find exactly what
/// was loaded.
pub fn extend(original: &[Insn], grants: &Grants) -> Vec<Insn> {
    let devices = grants.by_device();
    let mut a = Asm::new();
    a.emit(MARKER);
    PROLOGUE.iter().chain(&KEY).for_each(|i| a.emit(*i));
    let orig = a.label();
    if !devices.is_empty() {
        let checks: Vec<Label> = devices.keys().map(|_| a.label()).collect();
        for (&(major, minor), &check) in devices.keys().zip(&checks) {
            a.jump(jmp32_k(JEQ, R0, key(major, minor), 0), check);
        }
        a.jump(ja(0), orig);
        for ((&(major, minor), kinds), &check) in devices.iter().zip(&checks) {
            a.bind(check);
            a.jump(jmp_k(JNE, R4, major as i32, 0), orig);
            a.jump(jmp_k(JNE, R5, minor as i32, 0), orig);
            for (i, &(kind, acc)) in kinds.iter().enumerate() {
                // Keys are unique, so a device that fails here is granted nowhere else.
                let other_kind = if i + 1 < kinds.len() { a.label() } else { orig };
                a.jump(jmp_k(JNE, R2, kind as i32, 0), other_kind);
                // No access bit outside the grant: a subset test without a scratch register.
                a.jump(jmp_k(JSET, R3, !(acc as i32), 0), orig);
                a.emit(mov64_k(R0, 1));
                a.emit(exit());
                if other_kind != orig {
                    a.bind(other_kind);
                }
            }
        }
    }
    a.bind(orig);
    original.iter().for_each(|i| a.emit(*i));
    a.finish().expect("every label is bound and the block is far below 32k instructions")
}

/// Splits a program mighook built with [`extend`] (or with the first layout)
/// back into its grants and the original program. A program without
/// mighook's exact shape is all original (no grants): extending it again is
/// still correct, only longer.
pub fn split_extended(prog: &[Insn]) -> (Grants, &[Insn]) {
    split_current(prog).or_else(|| split_first_layout(prog)).unwrap_or((Grants::new(), prog))
}

/// The current layout: read the grants loosely from the checks, then accept
/// them only if [`extend`] rebuilds exactly `prog` from them.
fn split_current(prog: &[Insn]) -> Option<(Grants, &[Insn])> {
    let head = 1 + PROLOGUE.len() + KEY.len();
    if prog.len() < head || prog[0] != MARKER || prog[1..7] != PROLOGUE || prog[7..head] != KEY {
        return None;
    }
    let mut at = head;
    while prog.get(at).is_some_and(|i| i.code == JMP32 | JEQ | K && i.dst == R0) {
        at += 1;
    }
    let orig = if at == head {
        head
    } else {
        let j = prog.get(at)?;
        if j.code != JMP | JA || j.off <= 0 {
            return None;
        }
        at + 1 + j.off as usize
    };
    let checks = prog.get(at..orig)?;
    let mut grants = Grants::new();
    let (mut major, mut minor) = (None, None);
    for (i, insn) in checks.iter().enumerate() {
        let imm = u32::try_from(insn.imm).ok();
        match (insn.code, insn.dst) {
            (c, R4) if c == JMP | JNE | K => major = imm,
            (c, R5) if c == JMP | JNE | K => minor = imm,
            (c, R2) if c == JMP | JNE | K => {
                let kind = match insn.imm {
                    1 => DevKind::Block,
                    2 => DevKind::Char,
                    _ => return None,
                };
                let acc = !(checks.get(i + 1)?.imm as u32);
                let (major, minor) = (major?, minor?);
                if !valid(major, minor, acc) {
                    return None;
                }
                grants.add(kind, major, minor, acc);
            }
            _ => {}
        }
    }
    let original = &prog[orig..];
    (extend(original, &grants) == prog).then_some((grants, original))
}

/// The first layout: one six-instruction block per grant.
fn split_first_layout(prog: &[Insn]) -> Option<(Grants, &[Insn])> {
    let head = 1 + PROLOGUE.len();
    if prog.len() < head || prog[0] != MARKER_FIRST_LAYOUT || prog[1..head] != PROLOGUE {
        return None;
    }
    let mut grants = Grants::new();
    let mut at = head;
    while let Some(b) = prog.get(at..at + 6) {
        let Some((kind, major, minor, acc)) = parse_first_layout_block(b) else { break };
        grants.add(kind, major, minor, acc);
        at += 6;
    }
    Some((grants, &prog[at..]))
}

/// One grant of the first layout: type, then "no access bit outside the
/// grant", major, minor, allow; every "no" jumps to the next block.
fn first_layout_block(kind: DevKind, major: u32, minor: u32, acc: u32) -> [Insn; 6] {
    [
        jmp_k(JNE, R2, kind as i32, 5),
        jmp_k(JSET, R3, !(acc as i32), 4),
        jmp_k(JNE, R4, major as i32, 3),
        jmp_k(JNE, R5, minor as i32, 2),
        mov64_k(R0, 1),
        exit(),
    ]
}

/// What mighook built before the dispatch chain, to test that such programs
/// are still recognised.
#[cfg(test)]
pub(crate) fn extend_first_layout(original: &[Insn], grants: &Grants) -> Vec<Insn> {
    let mut out = vec![MARKER_FIRST_LAYOUT];
    out.extend_from_slice(&PROLOGUE);
    for (kind, major, minor, acc) in grants.iter() {
        out.extend_from_slice(&first_layout_block(kind, major, minor, acc));
    }
    out.extend_from_slice(original);
    out
}

fn parse_first_layout_block(b: &[Insn]) -> Option<(DevKind, u32, u32, u32)> {
    let kind = match b[0].imm {
        1 => DevKind::Block,
        2 => DevKind::Char,
        _ => return None,
    };
    let acc = !(b[1].imm as u32);
    let (major, minor) = (u32::try_from(b[2].imm).ok()?, u32::try_from(b[3].imm).ok()?);
    (valid(major, minor, acc) && b == first_layout_block(kind, major, minor, acc)).then_some((kind, major, minor, acc))
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
    fn every_jump_of_the_block_stays_in_it_or_lands_on_the_original() {
        let g = grants(&[(DevKind::Char, 195, 2, "rw"), (DevKind::Block, 195, 2, "r"), (DevKind::Block, 8, 0, "r")]);
        let original = [mov64_k(R0, 0), exit()];
        let prog = extend(&original, &g);
        let orig = prog.len() - original.len();
        assert_eq!(prog[orig..], original);
        for (pc, i) in prog[..orig].iter().enumerate() {
            if matches!(class(i.code), JMP | JMP32) && op(i.code) != EXIT {
                let target = pc as i64 + 1 + i.off as i64;
                // Forward only, never a no-op (the kernel drops `ja +0` from the dump).
                assert!(i.off > 0 && target as usize <= orig, "insn {pc} jumps to {target}");
            }
        }
    }

    #[test]
    fn one_dispatch_entry_per_device_number() {
        let g = grants(&[(DevKind::Char, 195, 2, "rw"), (DevKind::Block, 195, 2, "r"), (DevKind::Char, 511, 7, "r")]);
        let prog = extend(&[exit()], &g);
        let keys: Vec<i32> = prog.iter().filter(|i| i.code == JMP32 | JEQ | K).map(|i| i.imm).collect();
        assert_eq!(keys, [(195 << 20) | 2, (511 << 20) | 7]);
    }

    #[test]
    fn access_test_is_a_subset_test() {
        let prog = extend(&[exit()], &grants(&[(DevKind::Char, 195, 2, "rw")]));
        assert_eq!(
            prog.iter().filter(|i| i.code == JMP | JSET | K).map(|i| (i.dst, i.imm)).collect::<Vec<_>>(),
            [(R3, !6)]
        );
    }

    #[test]
    fn split_finds_grants_and_original() {
        let original = [mov64_k(R0, 0), exit()];
        let g =
            grants(&[(DevKind::Char, 195, 2, "rw"), (DevKind::Char, 195, 255, "rw"), (DevKind::Block, 195, 2, "m")]);
        let prog = extend(&original, &g);
        let (found, rest) = split_extended(&prog);
        assert_eq!(found, g);
        assert_eq!(rest, original);
    }

    #[test]
    fn split_recognises_the_first_layout() {
        let original = [mov64_k(R0, 0), exit()];
        let g = grants(&[(DevKind::Char, 195, 2, "rw"), (DevKind::Char, 195, 255, "rw")]);
        let prog = extend_first_layout(&original, &g);
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
    fn split_of_a_changed_block_is_all_original() {
        let g = grants(&[(DevKind::Char, 195, 2, "rw")]);
        let prog = extend(&[exit()], &g);
        let allow = prog.iter().position(|i| *i == mov64_k(R0, 1)).unwrap();
        for (what, at, insn) in [
            ("allow made deny", allow, mov64_k(R0, 0)),
            ("minor changed", allow - 3, jmp_k(JNE, R5, 3, prog[allow - 3].off)),
            ("key changed", 10, jmp32_k(JEQ, R0, (195 << 20) | 3, prog[10].off)),
        ] {
            let mut changed = prog.clone();
            changed[at] = insn;
            let (found, rest) = split_extended(&changed);
            assert!(found.is_empty(), "{what}");
            assert_eq!(rest, &changed[..], "{what}");
        }
    }

    #[test]
    fn first_layout_split_stops_at_a_changed_block() {
        let g = grants(&[(DevKind::Char, 195, 2, "rw")]);
        let mut prog = extend_first_layout(&[exit()], &g);
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
