//! Emulation of what a PV kernel does at CPL3 that faults: direct writes to
//! its read-only page tables (Xen's "ptwr"), privileged instructions (MSRs,
//! control registers, port I/O), and CPUID behind Xen's forced-emulation
//! prefix. Anything not recognised is bounced to the guest's own handler.

use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic, OpKind, Register};
use kvm_bindings::kvm_regs;

use crate::machine::{MSR_FS_BASE, MSR_GS_BASE, MSR_KERNEL_GS_BASE};
use crate::paging::{walk, PTE_P, PTE_RW, PTE_US};
use crate::traps::{VEC_GP, VEC_PF, VEC_UD};
use crate::vcpu::{crash, GuestState, Handled, Vcpu};

const PF_PRESENT: u64 = 1;
const PF_WRITE: u64 = 2;
const PF_USER: u64 = 4;

const FLAG_CF: u64 = 1;
const FLAG_PF: u64 = 1 << 2;
const FLAG_ZF: u64 = 1 << 6;
const FLAG_SF: u64 = 1 << 7;
const FLAG_OF: u64 = 1 << 11;

/// Xen's forced-emulation prefix: `ud2; .ascii "xen"`, then the instruction.
const XEN_EMULATE_PREFIX: [u8; 5] = [0x0f, 0x0b, b'x', b'e', b'n'];

fn reg_slot(regs: &mut kvm_regs, r: Register) -> Option<&mut u64> {
    Some(match r.full_register() {
        Register::RAX => &mut regs.rax,
        Register::RBX => &mut regs.rbx,
        Register::RCX => &mut regs.rcx,
        Register::RDX => &mut regs.rdx,
        Register::RSI => &mut regs.rsi,
        Register::RDI => &mut regs.rdi,
        Register::RBP => &mut regs.rbp,
        Register::RSP => &mut regs.rsp,
        Register::R8 => &mut regs.r8,
        Register::R9 => &mut regs.r9,
        Register::R10 => &mut regs.r10,
        Register::R11 => &mut regs.r11,
        Register::R12 => &mut regs.r12,
        Register::R13 => &mut regs.r13,
        Register::R14 => &mut regs.r14,
        Register::R15 => &mut regs.r15,
        _ => return None,
    })
}

fn get_reg(regs: &mut kvm_regs, r: Register) -> Option<u64> {
    let high8 = matches!(r, Register::AH | Register::BH | Register::CH | Register::DH);
    let size = r.size();
    let v = *reg_slot(regs, r)?;
    Some(if high8 {
        (v >> 8) & 0xff
    } else {
        v & mask(size)
    })
}

fn set_reg(regs: &mut kvm_regs, r: Register, val: u64) -> Option<()> {
    let high8 = matches!(r, Register::AH | Register::BH | Register::CH | Register::DH);
    let size = r.size();
    let slot = reg_slot(regs, r)?;
    *slot = match (size, high8) {
        (_, true) => (*slot & !0xff00) | ((val & 0xff) << 8),
        (4, _) => val & 0xffff_ffff,
        (8, _) => val,
        (n, _) => (*slot & !mask(n)) | (val & mask(n)),
    };
    Some(())
}

fn mask(size: usize) -> u64 {
    if size >= 8 {
        u64::MAX
    } else {
        (1u64 << (size * 8)) - 1
    }
}

fn logic_flags(rflags: u64, result: u64, size: usize) -> u64 {
    let r = result & mask(size);
    let mut f = rflags & !(FLAG_CF | FLAG_OF | FLAG_ZF | FLAG_SF | FLAG_PF);
    if r == 0 {
        f |= FLAG_ZF;
    }
    if r >> (size * 8 - 1) & 1 != 0 {
        f |= FLAG_SF;
    }
    if (r as u8).count_ones().is_multiple_of(2) {
        f |= FLAG_PF;
    }
    f
}

fn src_value(regs: &mut kvm_regs, ins: &Instruction, op: u32) -> Option<u64> {
    match ins.op_kind(op) {
        OpKind::Register => get_reg(regs, ins.op_register(op)),
        OpKind::Immediate8 | OpKind::Immediate16 | OpKind::Immediate32 => Some(ins.immediate(op)),
        OpKind::Immediate8to16
        | OpKind::Immediate8to32
        | OpKind::Immediate8to64
        | OpKind::Immediate32to64 => Some(ins.immediate(op)),
        _ => None,
    }
}

/// Result of emulating a write to a page-table entry.
struct PteWrite {
    new: Option<u64>,
}

/// Emulate `ins` whose memory operand is the byte at `offset` inside the
/// 8-byte entry holding `old`. Updates registers and flags in `regs`.
fn emulate_pte_insn(
    regs: &mut kvm_regs,
    ins: &Instruction,
    old: u64,
    offset: u32,
) -> Option<PteWrite> {
    let size = ins.memory_size().size();
    if !(1..=8).contains(&size) || offset as usize + size > 8 {
        return None;
    }
    let shift = offset * 8;
    let m = mask(size);
    let cur = (old >> shift) & m;
    let merge = |v: u64| (old & !(m << shift)) | ((v & m) << shift);
    let mem_first = ins.op0_kind() == OpKind::Memory;
    let other = if mem_first { 1 } else { 0 };
    let out = match ins.mnemonic() {
        Mnemonic::Mov if mem_first => PteWrite {
            new: Some(merge(src_value(regs, ins, 1)?)),
        },
        Mnemonic::Xchg => {
            let r = ins.op_register(other);
            let v = get_reg(regs, r)?;
            set_reg(regs, r, cur)?;
            PteWrite {
                new: Some(merge(v)),
            }
        }
        Mnemonic::Cmpxchg if mem_first => {
            let acc = match size {
                1 => Register::AL,
                2 => Register::AX,
                4 => Register::EAX,
                _ => Register::RAX,
            };
            let expected = get_reg(regs, acc)?;
            if expected == cur {
                regs.rflags |= FLAG_ZF;
                PteWrite {
                    new: Some(merge(get_reg(regs, ins.op_register(1))?)),
                }
            } else {
                regs.rflags &= !FLAG_ZF;
                set_reg(regs, acc, cur)?;
                PteWrite { new: None }
            }
        }
        Mnemonic::And | Mnemonic::Or | Mnemonic::Xor if mem_first => {
            let s = src_value(regs, ins, 1)?;
            let r = match ins.mnemonic() {
                Mnemonic::And => cur & s,
                Mnemonic::Or => cur | s,
                _ => cur ^ s,
            };
            regs.rflags = logic_flags(regs.rflags, r, size);
            PteWrite {
                new: Some(merge(r)),
            }
        }
        Mnemonic::Bts | Mnemonic::Btr | Mnemonic::Btc if mem_first => {
            let bit = src_value(regs, ins, 1)? % (size as u64 * 8);
            let was = (cur >> bit) & 1;
            regs.rflags = (regs.rflags & !FLAG_CF) | was;
            let r = match ins.mnemonic() {
                Mnemonic::Bts => cur | (1 << bit),
                Mnemonic::Btr => cur & !(1 << bit),
                _ => cur ^ (1 << bit),
            };
            PteWrite {
                new: Some(merge(r)),
            }
        }
        _ => return None,
    };
    Some(out)
}

impl Vcpu {
    /// Fetch and decode the instruction at the guest's RIP.
    fn decode_at(&self, rip: u64) -> Option<Instruction> {
        let mut bytes = [0u8; 15];
        let mut n = 15;
        // Read up to the end of the page if the next page is not mapped.
        while n > 0 && self.copy_from_guest(rip, &mut bytes[..n]).is_err() {
            let to_page_end = (4096 - (rip & 4095)) as usize;
            n = if n > to_page_end { to_page_end } else { 0 };
        }
        if n == 0 {
            return None;
        }
        let mut d = Decoder::with_ip(64, &bytes[..n], rip, DecoderOptions::NONE);
        let ins = d.decode();
        (!ins.is_invalid()).then_some(ins)
    }

    pub fn page_fault(&mut self, g: &mut GuestState, err: u64) -> Handled {
        let cr2 = self.sregs.cr2;
        let write = err & PF_WRITE != 0;
        // 1. A missing _PAGE_USER on the path: rxen's invariant, fix and retry.
        if err & PF_PRESENT != 0 && err & PF_USER != 0 && self.fix_user_bits(cr2, write) {
            return Ok(());
        }
        // 2. The kernel writing one of its read-only page tables.
        if self.kernel_mode && write && err & PF_PRESENT != 0 && self.ptwr(g, cr2)? {
            return Ok(());
        }
        // 3. The guest's own page fault.
        let vi = self.dom.vcpu_info();
        let cr2_off = std::mem::offset_of!(xen_abi::VcpuInfo, arch) as u64;
        if self.ram().write_u64(vi + cr2_off, cr2).is_err() {
            return crash("vcpu_info is outside guest memory");
        }
        self.record(|| format!("#PF {cr2:#x} err {err:#x} rip {:#x}", g.regs.rip));
        self.guest_exception(g, VEC_PF, Some(err))
    }

    /// Emulate a kernel write to a read-only page table. Ok(false): not one.
    fn ptwr(&mut self, g: &mut GuestState, cr2: u64) -> Result<bool, crate::vcpu::Stop> {
        let Ok(w) = walk(self.ram(), self.kernel_cr3, cr2, false) else {
            return Ok(false);
        };
        if w.leaf & PTE_RW != 0 || !self.is_page_table(w.gpa) {
            return Ok(false);
        }
        let Some(ins) = self.decode_at(g.regs.rip) else {
            return Ok(false);
        };
        let pte_gpa = w.gpa & !7;
        if self.is_rxen_l4_slot(pte_gpa) {
            return Ok(false); // rxen's slots: the guest sees its own #PF
        }
        let Ok(old) = self.ram().read_u64(pte_gpa) else {
            return Ok(false);
        };
        let mut regs = g.regs;
        let Some(res) = emulate_pte_insn(&mut regs, &ins, old, (w.gpa & 7) as u32) else {
            self.record(|| format!("ptwr: cannot emulate {ins:?} at {:#x}", g.regs.rip));
            return Ok(false);
        };
        if let Some(mut new) = res.new {
            if new & PTE_P != 0 {
                let pfn = (new & crate::paging::PTE_ADDR) >> 12;
                if !self.dom.machine.guest_may_map(pfn, new & PTE_RW != 0) {
                    return crash(format!("page-table write maps forbidden frame {pfn:#x}"));
                }
                new |= PTE_US;
            }
            if self.write_pte(pte_gpa, new).is_err() {
                return Ok(false);
            }
        }
        g.regs = regs;
        g.regs.rip = ins.next_ip();
        Ok(true)
    }

    /// XSETBV from the guest kernel: XCR0 within what CPUID shows. Anything
    /// else is a #GP, as on hardware.
    fn xsetbv(&mut self, xcr: u32, value: u64) -> bool {
        let supported = crate::cpuid::xcr0_supported();
        // x87 always; AVX needs SSE; the AVX-512 components go together and
        // need AVX (the SDM's XSETBV rules).
        let avx512 = value & 0xe0;
        let valid = xcr == 0
            && value & 1 != 0
            && value & !supported == 0
            && (value & 4 == 0 || value & 2 != 0)
            && (avx512 == 0 || (avx512 == 0xe0 && value & 4 != 0));
        if !valid {
            return false;
        }
        let mut x = kvm_bindings::kvm_xcrs {
            nr_xcrs: 1,
            ..Default::default()
        };
        x.xcrs[0].xcr = 0;
        x.xcrs[0].value = value;
        match self.fd.set_xcrs(&x) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!("KVM refused XCR0 {value:#x}: {e}");
                false
            }
        }
    }

    pub fn invalid_opcode(&mut self, g: &mut GuestState) -> Handled {
        let mut b = [0u8; 7];
        if self.copy_from_guest(g.regs.rip, &mut b).is_ok()
            && b[..5] == XEN_EMULATE_PREFIX
            && b[5..7] == [0x0f, 0xa2]
        {
            let mut r = crate::cpuid::lookup(&self.cpuid, g.regs.rax as u32, g.regs.rcx as u32);
            if g.regs.rax as u32 == 0xd && g.regs.rcx as u32 == 0 && r[0] != 0 {
                // The XSAVE size for what XCR0 enables now.
                let xcr0 = self.fd.get_xcrs().map(|x| x.xcrs[0].value).unwrap_or(1);
                r[1] = crate::cpuid::xsave_size(xcr0);
            }
            g.regs.rax = r[0] as u64;
            g.regs.rbx = r[1] as u64;
            g.regs.rcx = r[2] as u64;
            g.regs.rdx = r[3] as u64;
            g.regs.rip = g.regs.rip.wrapping_add(7);
            return Ok(());
        }
        self.guest_exception(g, VEC_UD, None)
    }

    pub fn general_protection(&mut self, g: &mut GuestState, err: u64) -> Handled {
        if err == 0 && self.kernel_mode {
            if let Some(ins) = self.decode_at(g.regs.rip) {
                if tracing::enabled!(tracing::Level::TRACE) {
                    let mut st = [0u64; 8];
                    for (i, w) in st.iter_mut().enumerate() {
                        *w = self
                            .read_guest_obj(g.regs.rsp.wrapping_add(i as u64 * 8))
                            .unwrap_or(0);
                    }
                    self.record(|| format!("#GP {:?} stack {st:x?}", ins.mnemonic()));
                }
                if self.emulate_privileged(g, &ins) {
                    g.regs.rip = ins.next_ip();
                    return Ok(());
                }
                self.record(|| format!("#GP on {ins:?} at {:#x}", g.regs.rip));
            }
        }
        self.guest_exception(g, VEC_GP, Some(err))
    }

    fn emulate_privileged(&mut self, g: &mut GuestState, ins: &Instruction) -> bool {
        let r = &mut g.regs;
        match ins.mnemonic() {
            Mnemonic::Rdmsr => match self.read_msr(r.rcx as u32) {
                Some(v) => {
                    r.rax = v & 0xffff_ffff;
                    r.rdx = v >> 32;
                    true
                }
                None => false,
            },
            Mnemonic::Wrmsr => {
                let v = (r.rdx << 32) | (r.rax & 0xffff_ffff);
                self.write_msr(r.rcx as u32, v)
            }
            Mnemonic::Mov
                if ins.op0_kind() == OpKind::Register && ins.op1_kind() == OpKind::Register =>
            {
                let (dst, src) = (ins.op0_register(), ins.op1_register());
                let cr_val = |c: Register, me: &Vcpu| match c {
                    Register::CR0 => Some(me.sregs.cr0),
                    Register::CR2 => Some(me.sregs.cr2),
                    Register::CR3 => Some(me.kernel_cr3),
                    Register::CR4 => Some(me.sregs.cr4),
                    _ => None,
                };
                if src.is_cr() {
                    match cr_val(src, self) {
                        Some(v) => set_reg(&mut g.regs, dst, v).is_some(),
                        None => false,
                    }
                } else {
                    // Writes to control registers are ignored (CR0.TS, CR4 bits).
                    dst.is_cr()
                }
            }
            Mnemonic::Wbinvd | Mnemonic::Invd | Mnemonic::Clts => true,
            // Native cli/sti before the kernel's paravirt ops are in place:
            // the event mask is the PV interrupt flag, as Xen does it.
            Mnemonic::Xsetbv => self.xsetbv(r.rcx as u32, (r.rdx << 32) | (r.rax & 0xffff_ffff)),
            Mnemonic::Cli | Mnemonic::Sti => {
                let mask = (ins.mnemonic() == Mnemonic::Cli) as u8;
                self.dom.bits().set_upcall_mask(self.dom.vcpu_info(), mask);
                true
            }
            Mnemonic::In if self.iopl > 0 => {
                // No devices behind ports: reads float high, except the PIT
                // and its gate (0x40-0x43, 0x61), which read 0 so that the
                // kernel's PIT-based TSC calibration gives up at once
                // instead of polling for ticks that never come.
                let size = ins.op0_register().size();
                let port = if ins.op1_kind() == OpKind::Register {
                    r.rdx & 0xffff
                } else {
                    ins.immediate8() as u64
                };
                let v = if matches!(port, 0x40..=0x43 | 0x61) {
                    0
                } else {
                    u64::MAX
                };
                set_reg(r, ins.op0_register(), v & mask(size)).is_some()
            }
            Mnemonic::Out if self.iopl > 0 => true,
            _ => false,
        }
    }

    fn read_msr(&self, index: u32) -> Option<u64> {
        Some(match index {
            MSR_FS_BASE => self.fs_base,
            MSR_GS_BASE => self.gs_kernel,
            MSR_KERNEL_GS_BASE => self.gs_user,
            0xc000_0080 => self.sregs.efer,
            0x277 => 0x0007_0406_0007_0406, // PAT
            0x1a0 => 1,                     // MISC_ENABLE: fast strings
            0x8b | 0x17 | 0xce | 0x140 | 0x3a => 0,
            _ => return None,
        })
    }

    fn write_msr(&mut self, index: u32, v: u64) -> bool {
        let base_msr = matches!(index, MSR_FS_BASE | MSR_GS_BASE | MSR_KERNEL_GS_BASE);
        if base_msr && !crate::paging::is_canonical(v) {
            return false; // #GP, as on hardware
        }
        match index {
            MSR_FS_BASE => self.set_fs_base(v),
            MSR_GS_BASE => self.set_gs_kernel(v),
            MSR_KERNEL_GS_BASE => self.set_gs_user(v),
            // SYSCALL/SYSENTER setup belongs to rxen: ignored, as Xen does.
            0xc000_0081..=0xc000_0084 | 0x174..=0x176 => {}
            0x8b | 0x277 | 0x1a0 | 0x48 | 0x49 => {}
            _ => return false,
        }
        true
    }

    pub fn set_fs_base(&mut self, v: u64) {
        self.fs_base = v;
        self.sregs.fs.base = v;
        self.sregs_dirty = true;
    }

    /// GS base of guest kernel mode. Only called from kernel mode, where the
    /// hardware GS_BASE holds it.
    pub fn set_gs_kernel(&mut self, v: u64) {
        self.gs_kernel = v;
        self.sregs.gs.base = v;
        self.sregs_dirty = true;
    }

    /// GS base of guest user mode: in KERNEL_GS_BASE while in kernel mode.
    pub fn set_gs_user(&mut self, v: u64) {
        self.gs_user = v;
        self.gs_user_dirty = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> Instruction {
        Decoder::with_ip(64, bytes, 0x1000, DecoderOptions::NONE).decode()
    }

    #[test]
    fn mov_xchg_cmpxchg_bit_ops() {
        let mut r = kvm_regs {
            rsi: 0x1234_5007,
            ..Default::default()
        };
        // mov %rsi,(%rdi)
        let w = emulate_pte_insn(&mut r, &decode(&[0x48, 0x89, 0x37]), 0, 0).unwrap();
        assert_eq!(w.new, Some(0x1234_5007));
        // xchg %rax,(%rdi): old value returned in rax.
        r.rax = 0;
        let w = emulate_pte_insn(&mut r, &decode(&[0x48, 0x87, 0x07]), 0xabc7, 0).unwrap();
        assert_eq!((w.new, r.rax), (Some(0), 0xabc7));
        // lock cmpxchg %rsi,(%rdi) with a mismatching rax.
        r.rax = 5;
        let w = emulate_pte_insn(&mut r, &decode(&[0xf0, 0x48, 0x0f, 0xb1, 0x37]), 7, 0).unwrap();
        assert_eq!((w.new, r.rax, r.rflags & FLAG_ZF), (None, 7, 0));
        // lock andb $0xfd,(%rdi): clear _PAGE_RW.
        let w = emulate_pte_insn(
            &mut r,
            &decode(&[0xf0, 0x80, 0x27, 0xfd]),
            0x8000_0000_0000_1067,
            0,
        )
        .unwrap();
        assert_eq!(w.new, Some(0x8000_0000_0000_1065));
        // lock btr $5,(%rdi): test-and-clear accessed.
        let w = emulate_pte_insn(
            &mut r,
            &decode(&[0xf0, 0x48, 0x0f, 0xba, 0x37, 0x05]),
            0x27,
            0,
        )
        .unwrap();
        assert_eq!((w.new, r.rflags & FLAG_CF), (Some(0x07), 1));
        // A byte write at offset 7 (NX byte).
        let w = emulate_pte_insn(&mut r, &decode(&[0xc6, 0x07, 0x80]), 0x1007, 7).unwrap();
        assert_eq!(w.new, Some(0x8000_0000_0000_1007));
        // A write that would cross the entry is refused.
        assert!(emulate_pte_insn(&mut r, &decode(&[0x48, 0x89, 0x37]), 0, 4).is_none());
    }
}
