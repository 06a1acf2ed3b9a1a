//! A user-space interpreter for BPF_CGROUP_DEVICE programs.
//!
//! It runs a program on one `struct bpf_cgroup_dev_ctx` and returns the
//! verdict, so tests can state "this program allows c 195:2 rw" as a table.
//! It covers every instruction runc, crun, systemd and mighook emit (ctx loads,
//! 32/64-bit ALU, 32/64-bit conditional jumps, `ja`, `exit`) and refuses
//! anything else, or anything the verifier would refuse (reading an unwritten
//! register, arithmetic on the ctx pointer, a jump out of the program), instead
//! of guessing. Loops end at a step bound.

use super::asm::DevKind;
use crate::sys::bpf::Insn;
use crate::sys::bpf::opcode::*;

/// Upper bound on executed instructions (the verifier's own limit is 1M).
pub const MAX_STEPS: usize = 1_000_000;

/// `struct bpf_cgroup_dev_ctx`: `access_type` is `type | access << 16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevCtx {
    pub access_type: u32,
    pub major: u32,
    pub minor: u32,
}

impl DevCtx {
    /// `access` is a set of [`super::asm::access`] bits.
    pub fn new(kind: DevKind, access: u32, major: u32, minor: u32) -> Self {
        DevCtx { access_type: kind as u32 | access << 16, major, minor }
    }

    fn bytes(&self) -> [u8; 12] {
        let mut b = [0; 12];
        b[0..4].copy_from_slice(&self.access_type.to_ne_bytes());
        b[4..8].copy_from_slice(&self.major.to_ne_bytes());
        b[8..12].copy_from_slice(&self.minor.to_ne_bytes());
        b
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterpError {
    #[error("insn {pc}: unsupported instruction (code {code:#04x})")]
    Unsupported { pc: usize, code: u8 },
    #[error("insn {pc}: {what}")]
    Malformed { pc: usize, what: &'static str },
    #[error("insn {pc}: r{reg} is read before it is written")]
    Uninit { pc: usize, reg: u8 },
    #[error("insn {pc}: {what} with the ctx or frame pointer")]
    Pointer { pc: usize, what: &'static str },
    #[error("insn {pc}: {size}-byte load at ctx+{off} is not a valid bpf_cgroup_dev_ctx access")]
    CtxAccess { pc: usize, off: i16, size: usize },
    #[error("insn {pc}: shift by {by} bits")]
    Shift { pc: usize, by: u64 },
    #[error("insn {pc}: jump to {target} is outside the program")]
    JumpOutOfRange { pc: usize, target: i64 },
    #[error("ran off the end of the program")]
    FellOffEnd,
    #[error("no exit within {MAX_STEPS} steps")]
    StepLimit,
    #[error("insn {pc}: exit with r0 = {value}; a device program returns 0 or 1")]
    BadReturn { pc: usize, value: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reg {
    Uninit,
    Scalar(u64),
    Ctx,
    Frame,
}

struct Machine {
    regs: [Reg; 11],
    ctx: [u8; 12],
}

enum Next {
    Step,
    Jump(i64),
    Exit(u64),
}

/// Runs `prog` on `ctx`.
pub fn run(prog: &[Insn], ctx: &DevCtx) -> Result<Verdict, InterpError> {
    let mut regs = [Reg::Uninit; 11];
    regs[1] = Reg::Ctx;
    regs[10] = Reg::Frame;
    let mut m = Machine { regs, ctx: ctx.bytes() };
    let mut pc = 0usize;
    for _ in 0..MAX_STEPS {
        let insn = *prog.get(pc).ok_or(InterpError::FellOffEnd)?;
        let next = match class(insn.code) {
            LDX => m.ldx(pc, insn)?,
            ALU | ALU64 => m.alu(pc, insn)?,
            JMP | JMP32 => m.jmp(pc, insn)?,
            _ => return Err(InterpError::Unsupported { pc, code: insn.code }),
        };
        pc = match next {
            Next::Step => pc + 1,
            Next::Jump(off) => {
                let target = pc as i64 + 1 + off;
                if target < 0 || target >= prog.len() as i64 {
                    return Err(InterpError::JumpOutOfRange { pc, target });
                }
                target as usize
            }
            Next::Exit(0) => return Ok(Verdict::Deny),
            Next::Exit(1) => return Ok(Verdict::Allow),
            Next::Exit(value) => return Err(InterpError::BadReturn { pc, value }),
        };
    }
    Err(InterpError::StepLimit)
}

impl Machine {
    fn reg(&self, pc: usize, r: u8) -> Result<Reg, InterpError> {
        match self.regs.get(r as usize) {
            None => Err(InterpError::Malformed { pc, what: "register number above r10" }),
            Some(Reg::Uninit) => Err(InterpError::Uninit { pc, reg: r }),
            Some(v) => Ok(*v),
        }
    }

    fn scalar(&self, pc: usize, r: u8, what: &'static str) -> Result<u64, InterpError> {
        match self.reg(pc, r)? {
            Reg::Scalar(v) => Ok(v),
            _ => Err(InterpError::Pointer { pc, what }),
        }
    }

    fn set(&mut self, pc: usize, r: u8, v: Reg) -> Result<(), InterpError> {
        match r {
            0..=9 => {
                self.regs[r as usize] = v;
                Ok(())
            }
            10 => Err(InterpError::Malformed { pc, what: "write to the read-only frame pointer r10" }),
            _ => Err(InterpError::Malformed { pc, what: "register number above r10" }),
        }
    }

    /// Loads from the ctx, with the kernel's rule (`cgroup_dev_is_valid_access`):
    /// aligned, inside the struct, narrow loads only of `access_type`.
    fn ldx(&mut self, pc: usize, i: Insn) -> Result<Next, InterpError> {
        if i.code & 0xe0 != MEM || i.imm != 0 {
            return Err(InterpError::Unsupported { pc, code: i.code });
        }
        let size = match i.code & 0x18 {
            W => 4,
            H => 2,
            B => 1,
            _ => 8,
        };
        match self.reg(pc, i.src)? {
            Reg::Ctx => {}
            Reg::Frame => return Err(InterpError::Unsupported { pc, code: i.code }),
            _ => return Err(InterpError::Pointer { pc, what: "load through a non-pointer" }),
        }
        let off = i.off;
        let bad = || InterpError::CtxAccess { pc, off, size };
        let start = usize::try_from(off).map_err(|_| bad())?;
        if start + size > 12 || start % size != 0 || (size != 4 && start >= 4) || size == 8 {
            return Err(bad());
        }
        let mut v = [0u8; 8];
        let bytes = &self.ctx[start..start + size];
        // Narrow loads read the bytes at that address, whatever the byte order.
        let v = if cfg!(target_endian = "little") {
            v[..size].copy_from_slice(bytes);
            u64::from_le_bytes(v)
        } else {
            v[8 - size..].copy_from_slice(bytes);
            u64::from_be_bytes(v)
        };
        self.set(pc, i.dst, Reg::Scalar(v))?;
        Ok(Next::Step)
    }

    fn alu(&mut self, pc: usize, i: Insn) -> Result<Next, InterpError> {
        let wide = class(i.code) == ALU64;
        let by_reg = i.code & X != 0;
        let op = op(i.code);
        if !matches!(op, ADD | SUB | OR | AND | LSH | RSH | XOR | MOV | ARSH) || i.off != 0 {
            // MUL/DIV/MOD/NEG/END and the signed (off != 0) variants.
            return Err(InterpError::Unsupported { pc, code: i.code });
        }
        if (by_reg && i.imm != 0) || (!by_reg && i.src != 0) {
            return Err(InterpError::Malformed { pc, what: "reserved field set in an ALU instruction" });
        }
        let src = if by_reg {
            if op == MOV && wide {
                // A 64-bit register copy keeps pointers (as the verifier does).
                let v = self.reg(pc, i.src)?;
                self.set(pc, i.dst, v)?;
                return Ok(Next::Step);
            }
            self.scalar(pc, i.src, "ALU operand")?
        } else if wide {
            i.imm as i64 as u64
        } else {
            i.imm as u32 as u64
        };
        let dst = if op == MOV { 0 } else { self.scalar(pc, i.dst, "ALU")? };
        let result = if wide { alu64(op, dst, src) } else { alu32(op, dst as u32, src as u32).map(u64::from) };
        let v = result.ok_or(InterpError::Shift { pc, by: src })?;
        self.set(pc, i.dst, Reg::Scalar(v))?;
        Ok(Next::Step)
    }

    fn jmp(&mut self, pc: usize, i: Insn) -> Result<Next, InterpError> {
        let wide = class(i.code) == JMP;
        let by_reg = i.code & X != 0;
        match op(i.code) {
            JA => {
                if by_reg || i.dst != 0 || i.src != 0 {
                    return Err(InterpError::Malformed { pc, what: "reserved field set in ja" });
                }
                // `ja` takes its offset from `off`; JMP32 `gotol` from `imm`.
                return match (wide, i.imm, i.off) {
                    (true, 0, off) => Ok(Next::Jump(off.into())),
                    (false, imm, 0) => Ok(Next::Jump(imm.into())),
                    _ => Err(InterpError::Malformed { pc, what: "reserved field set in ja" }),
                };
            }
            EXIT if wide => {
                if i.code & X != 0 || i.dst != 0 || i.src != 0 || i.off != 0 || i.imm != 0 {
                    return Err(InterpError::Malformed { pc, what: "reserved field set in exit" });
                }
                return Ok(Next::Exit(self.scalar(pc, 0, "exit")?));
            }
            JEQ | JNE | JGT | JGE | JLT | JLE | JSET | JSGT | JSGE | JSLT | JSLE => {}
            _ => return Err(InterpError::Unsupported { pc, code: i.code }),
        }
        if (by_reg && i.imm != 0) || (!by_reg && i.src != 0) {
            return Err(InterpError::Malformed { pc, what: "reserved field set in a jump" });
        }
        let a = self.scalar(pc, i.dst, "compare")?;
        let b = if by_reg {
            self.scalar(pc, i.src, "compare")?
        } else if wide {
            i.imm as i64 as u64
        } else {
            i.imm as u32 as u64
        };
        let taken = if wide { cond64(op(i.code), a, b) } else { cond32(op(i.code), a as u32, b as u32) };
        Ok(if taken { Next::Jump(i.off.into()) } else { Next::Step })
    }
}

fn alu64(op: u8, a: u64, b: u64) -> Option<u64> {
    Some(match op {
        ADD => a.wrapping_add(b),
        SUB => a.wrapping_sub(b),
        OR => a | b,
        AND => a & b,
        XOR => a ^ b,
        MOV => b,
        LSH => a.checked_shl(u32::try_from(b).ok().filter(|s| *s < 64)?)?,
        RSH => a.checked_shr(u32::try_from(b).ok().filter(|s| *s < 64)?)?,
        ARSH => (a as i64).checked_shr(u32::try_from(b).ok().filter(|s| *s < 64)?)? as u64,
        _ => unreachable!("filtered by the caller"),
    })
}

fn alu32(op: u8, a: u32, b: u32) -> Option<u32> {
    Some(match op {
        ADD => a.wrapping_add(b),
        SUB => a.wrapping_sub(b),
        OR => a | b,
        AND => a & b,
        XOR => a ^ b,
        MOV => b,
        LSH => a.checked_shl(Some(b).filter(|s| *s < 32)?)?,
        RSH => a.checked_shr(Some(b).filter(|s| *s < 32)?)?,
        ARSH => (a as i32).checked_shr(Some(b).filter(|s| *s < 32)?)? as u32,
        _ => unreachable!("filtered by the caller"),
    })
}

fn cond64(op: u8, a: u64, b: u64) -> bool {
    let (sa, sb) = (a as i64, b as i64);
    match op {
        JEQ => a == b,
        JNE => a != b,
        JGT => a > b,
        JGE => a >= b,
        JLT => a < b,
        JLE => a <= b,
        JSET => a & b != 0,
        JSGT => sa > sb,
        JSGE => sa >= sb,
        JSLT => sa < sb,
        _ => sa <= sb, // JSLE; the caller admits only conditional ops
    }
}

fn cond32(op: u8, a: u32, b: u32) -> bool {
    let (sa, sb) = (a as i32, b as i32);
    match op {
        JEQ => a == b,
        JNE => a != b,
        JGT => a > b,
        JGE => a >= b,
        JLT => a < b,
        JLE => a <= b,
        JSET => a & b != 0,
        JSGT => sa > sb,
        JSGE => sa >= sb,
        JSLT => sa < sb,
        _ => sa <= sb,
    }
}

#[cfg(test)]
mod tests {
    use super::super::asm::*;
    use super::*;

    const CTX: DevCtx = DevCtx { access_type: 2 | (6 << 16), major: 195, minor: 0x1_0002 };

    /// Runs `body` then `if r2 == want goto allow`, deny otherwise.
    fn computes(body: &[Insn], want: i32) -> Verdict {
        let mut p = body.to_vec();
        p.extend([jmp_k(JEQ, R2, want, 2), mov64_k(R0, 0), exit(), mov64_k(R0, 1), exit()]);
        run(&p, &CTX).unwrap()
    }

    fn err(prog: &[Insn]) -> InterpError {
        run(prog, &CTX).unwrap_err()
    }

    fn allow_if(cond: Insn) -> Verdict {
        // cond jumps over "deny" to "allow" when taken.
        run(&[mov64_k(R2, 5), mov64_k(R3, 7), cond, mov64_k(R0, 0), exit(), mov64_k(R0, 1), exit()], &CTX).unwrap()
    }

    use Verdict::{Allow, Deny};

    #[test]
    fn ctx_loads() {
        assert_eq!(computes(&[ldx(W, R2, R1, 0)], 2 | 6 << 16), Allow);
        assert_eq!(computes(&[ldx(W, R2, R1, 4)], 195), Allow);
        assert_eq!(computes(&[ldx(W, R2, R1, 8)], 0x1_0002), Allow);
        if cfg!(target_endian = "little") {
            assert_eq!(computes(&[ldx(H, R2, R1, 2)], 6), Allow);
            assert_eq!(computes(&[ldx(B, R2, R1, 0)], 2), Allow);
        }
    }

    #[test]
    fn bad_ctx_loads_are_refused() {
        assert_eq!(err(&[ldx(W, R2, R1, 12)]), InterpError::CtxAccess { pc: 0, off: 12, size: 4 });
        assert_eq!(err(&[ldx(W, R2, R1, 2)]), InterpError::CtxAccess { pc: 0, off: 2, size: 4 });
        assert_eq!(err(&[ldx(H, R2, R1, 4)]), InterpError::CtxAccess { pc: 0, off: 4, size: 2 });
        assert_eq!(err(&[ldx(DW, R2, R1, 0)]), InterpError::CtxAccess { pc: 0, off: 0, size: 8 });
        assert_eq!(err(&[ldx(W, R2, R1, -4)]), InterpError::CtxAccess { pc: 0, off: -4, size: 4 });
        assert_eq!(
            err(&[mov64_k(R3, 0), ldx(W, R2, R3, 0)]),
            InterpError::Pointer { pc: 1, what: "load through a non-pointer" }
        );
    }

    #[test]
    fn alu64_ops() {
        assert_eq!(computes(&[mov64_k(R2, 0xf0), alu64_k(AND, R2, 0x3c)], 0x30), Allow);
        assert_eq!(computes(&[mov64_k(R2, 0xf0), alu64_k(OR, R2, 0x0f)], 0xff), Allow);
        assert_eq!(computes(&[mov64_k(R2, 0xf0), alu64_k(XOR, R2, 0xff)], 0x0f), Allow);
        assert_eq!(computes(&[mov64_k(R2, 0xf0), alu64_k(RSH, R2, 4)], 0x0f), Allow);
        assert_eq!(computes(&[mov64_k(R2, 0x0f), alu64_k(LSH, R2, 4)], 0xf0), Allow);
        assert_eq!(computes(&[mov64_k(R2, 5), alu64_k(ADD, R2, 3)], 8), Allow);
        assert_eq!(computes(&[mov64_k(R2, 5), alu64_k(SUB, R2, 7)], -2), Allow);
        assert_eq!(computes(&[mov64_k(R2, -16), alu64_k(ARSH, R2, 2)], -4), Allow);
        assert_eq!(computes(&[mov64_k(R3, 9), alu64_x(MOV, R2, R3)], 9), Allow);
        assert_eq!(computes(&[mov64_k(R2, 0xff), mov64_k(R3, 0x0f), alu64_x(AND, R2, R3)], 0x0f), Allow);
        assert_eq!(computes(&[mov64_k(R2, 1), mov64_k(R3, 4), alu64_x(LSH, R2, R3)], 16), Allow);
    }

    #[test]
    fn alu64_immediates_are_sign_extended() {
        // r2 = -1 in all 64 bits, so r2 >> 60 is 0xf, not 0.
        assert_eq!(computes(&[mov64_k(R2, -1), alu64_k(RSH, R2, 60)], 0xf), Allow);
        assert_eq!(
            run(&[mov64_k(R2, -1), alu64_k(RSH, R2, 63), mov64_k(R0, 0), alu64_x(ADD, R0, R2), exit()], &CTX),
            Ok(Allow)
        );
    }

    #[test]
    fn alu32_ops_zero_extend() {
        // w2 = -1 leaves the upper half zero, so r2 >> 31 is 1.
        assert_eq!(
            run(&[alu32_k(MOV, R2, -1), alu64_k(RSH, R2, 31), mov64_k(R0, 0), alu64_x(ADD, R0, R2), exit()], &CTX),
            Ok(Allow)
        );
        assert_eq!(computes(&[ldx(W, R2, R1, 0), alu32_k(AND, R2, 0xffff)], 2), Allow);
        assert_eq!(computes(&[ldx(W, R2, R1, 0), alu32_k(RSH, R2, 16)], 6), Allow);
        assert_eq!(computes(&[mov64_k(R2, -1), alu32_k(OR, R2, 0)], -1), Deny); // upper half cleared
        assert_eq!(computes(&[mov64_k(R3, 6), alu32_x(MOV, R2, R3), alu32_k(AND, R2, 2)], 2), Allow);
        // Arithmetic shift of 0x80000000 gives 0xffffffff (then >> 28 is 0xf).
        assert_eq!(
            computes(&[alu32_k(MOV, R2, 1), alu32_k(LSH, R2, 31), alu32_k(ARSH, R2, 31), alu64_k(RSH, R2, 28)], 0xf),
            Allow
        );
    }

    #[test]
    fn jumps_64() {
        assert_eq!(allow_if(jmp_k(JEQ, R2, 5, 2)), Allow);
        assert_eq!(allow_if(jmp_k(JEQ, R2, 6, 2)), Deny);
        assert_eq!(allow_if(jmp_k(JNE, R2, 6, 2)), Allow);
        assert_eq!(allow_if(jmp_k(JGT, R2, 4, 2)), Allow);
        assert_eq!(allow_if(jmp_k(JGT, R2, 5, 2)), Deny);
        assert_eq!(allow_if(jmp_k(JGE, R2, 5, 2)), Allow);
        assert_eq!(allow_if(jmp_k(JLT, R2, 6, 2)), Allow);
        assert_eq!(allow_if(jmp_k(JLT, R2, 5, 2)), Deny);
        assert_eq!(allow_if(jmp_k(JLE, R2, 5, 2)), Allow);
        assert_eq!(allow_if(jmp_k(JSET, R2, 4, 2)), Allow);
        assert_eq!(allow_if(jmp_k(JSET, R2, 2, 2)), Deny);
        assert_eq!(allow_if(jmp_k(JGT, R2, -1, 2)), Deny); // unsigned: 5 > 0xffff..ff is false
        assert_eq!(allow_if(jmp_k(JSGT, R2, -1, 2)), Allow); // signed: 5 > -1
        assert_eq!(allow_if(jmp_k(JSGE, R2, 5, 2)), Allow);
        assert_eq!(allow_if(jmp_k(JSLT, R2, -1, 2)), Deny);
        assert_eq!(allow_if(jmp_k(JSLE, R2, 5, 2)), Allow);
        assert_eq!(allow_if(jmp_x(JNE, R2, R3, 2)), Allow);
        assert_eq!(allow_if(jmp_x(JEQ, R2, R3, 2)), Deny);
        assert_eq!(allow_if(jmp_x(JLT, R2, R3, 2)), Allow);
        assert_eq!(allow_if(jmp_x(JSET, R2, R3, 2)), Allow);
        assert_eq!(allow_if(ja(2)), Allow);
    }

    #[test]
    fn jumps_32_compare_the_low_half() {
        let hi = |cond| {
            run(&[mov64_k(R2, -1), mov64_k(R3, 0), cond, mov64_k(R0, 0), exit(), mov64_k(R0, 1), exit()], &CTX).unwrap()
        };
        assert_eq!(hi(jmp32_k(JEQ, R2, -1, 2)), Allow);
        assert_eq!(hi(jmp_k(JEQ, R2, 0x7fff_ffff, 2)), Deny);
        assert_eq!(hi(jmp32_k(JSLT, R2, 0, 2)), Allow);
        assert_eq!(hi(jmp32_k(JGT, R2, 0x7fff_ffff, 2)), Allow);
        assert_eq!(hi(jmp32_x(JNE, R2, R3, 2)), Allow);
        assert_eq!(hi(jmp32_k(JSET, R2, 1 << 31, 2)), Allow);
        assert_eq!(hi(Insn::new(JMP32 | JA, 0, 0, 0, 2)), Allow);
    }

    #[test]
    fn refuses_what_it_does_not_model() {
        assert_eq!(err(&[Insn::new(JMP | CALL, 0, 0, 0, 1)]), InterpError::Unsupported { pc: 0, code: 0x85 });
        assert_eq!(
            err(&[Insn::new(LD | IMM | DW, 2, 0, 0, 1), Insn::default()]),
            InterpError::Unsupported { pc: 0, code: 0x18 }
        );
        assert_eq!(err(&[Insn::new(STX | MEM | W, 10, 1, -4, 0)]), InterpError::Unsupported { pc: 0, code: 0x63 });
        assert_eq!(err(&[mov64_k(R2, 1), alu64_k(MUL, R2, 3)]), InterpError::Unsupported { pc: 1, code: 0x27 });
        assert_eq!(
            err(&[mov64_k(R2, 1), Insn::new(ALU64 | MOV | X, 2, 3, 8, 0)]),
            InterpError::Unsupported { pc: 1, code: 0xbf }
        );
        assert_eq!(err(&[ldx(W, R2, R10, -4)]), InterpError::Unsupported { pc: 0, code: 0x61 });
        assert_eq!(err(&[Insn::new(JMP32 | EXIT, 0, 0, 0, 0)]), InterpError::Unsupported { pc: 0, code: 0x96 });
        assert_eq!(err(&[Insn::default()]), InterpError::Unsupported { pc: 0, code: 0 });
    }

    #[test]
    fn refuses_what_the_verifier_refuses() {
        assert_eq!(err(&[exit()]), InterpError::Uninit { pc: 0, reg: 0 });
        assert_eq!(err(&[jmp_k(JNE, R2, 1, 0), exit()]), InterpError::Uninit { pc: 0, reg: 2 });
        assert_eq!(err(&[alu64_k(ADD, R1, 4)]), InterpError::Pointer { pc: 0, what: "ALU" });
        assert_eq!(err(&[alu32_x(MOV, R2, R1)]), InterpError::Pointer { pc: 0, what: "ALU operand" });
        assert_eq!(err(&[jmp_k(JEQ, R1, 0, 0)]), InterpError::Pointer { pc: 0, what: "compare" });
        assert_eq!(
            err(&[mov64_k(R10, 0)]),
            InterpError::Malformed { pc: 0, what: "write to the read-only frame pointer r10" }
        );
        assert_eq!(err(&[mov64_k(11, 0)]), InterpError::Malformed { pc: 0, what: "register number above r10" });
        assert_eq!(err(&[mov64_k(R2, 1), alu64_k(LSH, R2, 64)]), InterpError::Shift { pc: 1, by: 64 });
        assert_eq!(err(&[mov64_k(R2, 1), alu32_k(RSH, R2, 32)]), InterpError::Shift { pc: 1, by: 32 });
        assert_eq!(err(&[ja(5)]), InterpError::JumpOutOfRange { pc: 0, target: 6 });
        assert_eq!(err(&[ja(-2)]), InterpError::JumpOutOfRange { pc: 0, target: -1 });
        assert_eq!(err(&[mov64_k(R0, 0)]), InterpError::FellOffEnd);
        assert_eq!(err(&[ja(-1)]), InterpError::StepLimit);
        assert_eq!(err(&[mov64_k(R0, 2), exit()]), InterpError::BadReturn { pc: 1, value: 2 });
        assert_eq!(
            err(&[Insn::new(JMP | EXIT, 0, 0, 1, 0)]),
            InterpError::Malformed { pc: 0, what: "reserved field set in exit" }
        );
        assert_eq!(
            err(&[mov64_k(R2, 0), Insn::new(JMP | JNE | K, 2, 3, 0, 0)]),
            InterpError::Malformed { pc: 1, what: "reserved field set in a jump" }
        );
    }

    #[test]
    fn exit_values_are_verdicts() {
        assert_eq!(run(&[mov64_k(R0, 1), exit()], &CTX), Ok(Allow));
        assert_eq!(run(&[alu32_k(MOV, R0, 0), exit()], &CTX), Ok(Deny));
    }
}
