//! Trap paths: what happens after the shim reports a vector or a SYSCALL.
//! Bounce frames follow Xen's `create_bounce_frame`; `HYPERVISOR_iret`
//! follows Xen's `do_iret`.

use xen_abi::{
    IretContext, FLAT_KERNEL_CS, FLAT_KERNEL_SS, FLAT_USER_CS64, FLAT_USER_SS, VGCF_IN_SYSCALL,
};

use crate::shim::{SYSCALL_TRAMP, SYSCALL_VECTOR};
use crate::vcpu::{
    crash, GuestState, Handled, Vcpu, KICK_VECTOR, RFLAGS_AC, RFLAGS_IF, RFLAGS_IOPL, RFLAGS_NT,
    RFLAGS_RF, RFLAGS_TF, RFLAGS_VM,
};

/// Vectors whose hardware frame carries an error code.
pub fn has_error_code(v: u8) -> bool {
    matches!(v, 8 | 10..=14 | 17 | 21 | 29 | 30)
}

pub const VEC_UD: u8 = 6;
pub const VEC_GP: u8 = 13;
pub const VEC_PF: u8 = 14;

impl Vcpu {
    /// The shim exited with `port`: a vector number, or the SYSCALL entry.
    pub fn on_trap(&mut self, port: u16) -> Handled {
        if port == crate::shim::PTW_MORE_PORT {
            return self.continue_ptw();
        }
        let sr = self.fd.sync_regs();
        let mut regs = sr.regs;
        self.sregs = sr.sregs;
        let was_kernel = self.kernel_mode;
        self.record(|| {
            format!(
                "exit port {port} rip {:#x} rsp {:#x} rcx {:#x} cr2 {:#x}",
                regs.rip, regs.rsp, regs.rcx, sr.sregs.cr2
            )
        });
        let (cs, ss);
        let vector = port as u8;
        self.vector_counts[vector as usize] += 1;
        let frame = regs.rsp;
        let ram = &self.dom.machine.ram;
        let mut words = [0u64; 6];
        let n = if has_error_code(vector) { 6 } else { 5 };
        let stack_gpa = self.frame_gpa(frame);
        for (i, w) in words.iter_mut().take(n).enumerate() {
            *w = match ram.read_u64(stack_gpa + i as u64 * 8) {
                Ok(v) => v,
                Err(_) => return crash("CPL0 stack frame unreadable"),
            };
        }
        // SYSCALL lands on the supervisor-only trampoline page at CPL3: the
        // fetch faults there, with the trampoline as the frame's RIP; from
        // guest user mode it faults on the kernel stub's first byte (its
        // slot is absent from user tables).
        let tramp = self.dom.machine.shim_va(SYSCALL_TRAMP);
        let at_entry = words[1] == tramp || words[1] == crate::layout::KSTUB_VA;
        if vector == SYSCALL_VECTOR && at_entry && words[2] & 3 == 3 {
            // SYSCALL: RCX = return RIP, R11 = RFLAGS, the guest's RSP in the
            // frame ([error code, rip, cs, rflags, rsp, ss]).
            regs.rsp = words[4];
            regs.rip = regs.rcx;
            regs.rflags = regs.r11;
            cs = if was_kernel {
                FLAT_KERNEL_CS
            } else {
                FLAT_USER_CS64
            } as u64;
            ss = if was_kernel {
                FLAT_KERNEL_SS
            } else {
                FLAT_USER_SS
            } as u64;
            let mut g = GuestState { regs, cs, ss };
            if was_kernel {
                self.stats.hypercalls += 1;
                self.hypercall_counts[(g.regs.rax as usize).min(63)] += 1;
                self.hypercall(&mut g)?;
            } else {
                self.stats.syscalls += 1;
                let target = self.syscall_callback;
                if target == 0 {
                    return crash("user syscall without a registered syscall callback");
                }
                self.bounce(&mut g, target, None, self.syscall_masks_events)?;
            }
            return self.finish(g, was_kernel);
        }
        let (err, f) = if n == 6 {
            (Some(words[0]), &words[1..6])
        } else {
            (None, &words[0..5])
        };
        regs.rip = f[0];
        cs = f[1];
        regs.rflags = f[2];
        regs.rsp = f[3];
        ss = f[4];
        self.record(|| {
            format!(
                "frame err {err:?} rip {:#x} cs {cs:#x} rflags {:#x} rsp {:#x} ss {ss:#x}",
                regs.rip, regs.rflags, regs.rsp
            )
        });
        if cs & 3 == 0 && vector == KICK_VECTOR {
            // rxen's own kick, delivered while the shim ran (KVM may inject
            // an interrupt queued while the vCPU was in guest code once a
            // pending exception has taken it into the shim). Undo it: the
            // stub left every register as the interrupt found it, so the
            // shim resumes exactly there, and the event goes in once the
            // vCPU is back in guest code.
            self.note_kick_in_shim(regs);
            return Ok(());
        }
        if cs & 3 == 0 {
            return crash(format!(
                "exception {vector} inside the shim at {:#x} (error code {:?}, cr2 {:#x})",
                regs.rip, err, self.sregs.cr2
            ));
        }
        let mut g = GuestState { regs, cs, ss };
        match vector {
            KICK_VECTOR => {}
            VEC_PF => {
                self.stats.page_faults += 1;
                self.page_fault(&mut g, err.unwrap_or(0))?;
            }
            VEC_GP => self.general_protection(&mut g, err.unwrap_or(0))?,
            VEC_UD => self.invalid_opcode(&mut g)?,
            2 | 8 | 18 => {
                return crash(format!("fatal exception {vector} at {:#x}", g.regs.rip));
            }
            v if v < 32 => self.guest_exception(&mut g, v, err)?,
            v => {
                tracing::debug!(vector = v, "spurious interrupt");
            }
        }
        self.finish(g, was_kernel)
    }

    /// Guest-physical address of a CPL0 stack address.
    fn frame_gpa(&self, va: u64) -> u64 {
        let m = &self.dom.machine;
        let top = m.stack_top();
        let top_gpa = m
            .layout
            .hv_gpa(crate::layout::hv::STACK + crate::layout::hv::STACK_PAGES);
        top_gpa.wrapping_sub(top.wrapping_sub(va))
    }

    /// Deliver pending events if allowed, then resume.
    pub fn finish(&mut self, mut g: GuestState, was_kernel: bool) -> Handled {
        let bits = self.dom.bits();
        let vi = self.dom.vcpu_info();
        if self.event_callback != 0 && bits.upcall_pending(vi) && bits.upcall_mask(vi) == 0 {
            let cb = self.event_callback;
            self.bounce(&mut g, cb, None, true)?;
        }
        self.resume(g, was_kernel);
        Ok(())
    }

    /// Deliver exception `v` to the guest's trap table entry.
    pub fn guest_exception(&mut self, g: &mut GuestState, v: u8, err: Option<u64>) -> Handled {
        let t = self.traps[v as usize];
        if t.address == 0 {
            return crash(format!(
                "exception {v} at {:#x} (error {:?}) with no guest handler",
                g.regs.rip, err
            ));
        }
        // TI flag bit 2: the handler runs with events masked.
        self.bounce(g, t.address, err, t.flags & 4 != 0)
    }

    /// Build a Xen bounce frame on the guest kernel stack and point `g` at `target`.
    pub fn bounce(
        &mut self,
        g: &mut GuestState,
        target: u64,
        err: Option<u64>,
        mask_events: bool,
    ) -> Handled {
        let bits = self.dom.bits();
        let vi = self.dom.vcpu_info();
        let saved_mask = bits.upcall_mask(vi) as u64;
        let (mut sp, cs_shown) = if !self.kernel_mode {
            if self.kernel_sp == 0 {
                return crash("trap from user mode before stack_switch");
            }
            self.kernel_mode = true;
            (self.kernel_sp, g.cs & 0xffff)
        } else {
            (g.regs.rsp, (g.cs & 0xffff) & !3)
        };
        sp &= !15;
        let rflags_shown = (g.regs.rflags & !(RFLAGS_IF | RFLAGS_IOPL))
            | if saved_mask == 0 { RFLAGS_IF } else { 0 };
        let mut frame = vec![g.regs.rcx, g.regs.r11];
        if let Some(e) = err {
            frame.push(e);
        }
        frame.extend_from_slice(&[
            g.regs.rip,
            cs_shown | (saved_mask << 32),
            rflags_shown,
            g.regs.rsp,
            g.ss & 0xffff,
        ]);
        sp = sp.wrapping_sub(frame.len() as u64 * 8); // a bad guest rsp wraps, then fails below
        let bytes: Vec<u8> = frame.iter().flat_map(|w| w.to_le_bytes()).collect();
        if self.copy_to_guest(sp, &bytes).is_err() {
            return crash(format!(
                "cannot write a bounce frame on the guest kernel stack at {sp:#x}"
            ));
        }
        if mask_events {
            bits.set_upcall_mask(vi, 1);
        }
        g.regs.rip = target;
        g.regs.rsp = sp;
        g.cs = FLAT_KERNEL_CS as u64;
        g.ss = FLAT_KERNEL_SS as u64;
        g.regs.rflags = (g.regs.rflags
            & !(RFLAGS_TF | RFLAGS_NT | RFLAGS_RF | RFLAGS_AC | RFLAGS_VM | RFLAGS_IOPL))
            | RFLAGS_IF
            | 2;
        Ok(())
    }

    /// HYPERVISOR_iret: restore the frame the guest kernel pushed.
    pub fn iret(&mut self, g: &mut GuestState) -> Handled {
        let ctx: IretContext = match self.read_guest_obj(g.regs.rsp) {
            Ok(c) => c,
            Err(_) => {
                return crash(format!(
                    "HYPERVISOR_iret with unreadable frame at {:#x}",
                    g.regs.rsp
                ))
            }
        };
        let bits = self.dom.bits();
        let vi = self.dom.vcpu_info();
        g.regs.rax = ctx.rax;
        if ctx.flags & VGCF_IN_SYSCALL == 0 {
            g.regs.r11 = ctx.r11;
            g.regs.rcx = ctx.rcx;
        }
        if ctx.cs & 3 == 3 {
            if self.user_cr3 == 0 {
                return crash("HYPERVISOR_iret to user mode without a user page table");
            }
            self.kernel_mode = false;
            g.cs = ctx.cs & 0xffff;
            g.ss = ctx.ss & 0xffff | 3;
        } else {
            g.cs = FLAT_KERNEL_CS as u64;
            g.ss = FLAT_KERNEL_SS as u64;
        }
        g.regs.rip = ctx.rip;
        g.regs.rsp = ctx.rsp;
        g.regs.rflags = (ctx.rflags & !(RFLAGS_IOPL | RFLAGS_VM | RFLAGS_NT)) | RFLAGS_IF | 2;
        bits.set_upcall_mask(vi, if ctx.rflags & RFLAGS_IF != 0 { 0 } else { 1 });
        Ok(())
    }
}
