//! Hypercall dispatch: one function per hypercall, each returning the
//! hypercall's result as a value (negative Xen errno on failure). Arguments
//! are guest-controlled; every guest pointer goes through copy-in/copy-out.
//! Offsets are added to guest pointers with wrapping arithmetic: a pointer
//! near the top of the address space wraps and then faults like any other
//! bad one (`+` would panic in debug builds).

use xen_abi::*;

use crate::domain::ShutdownReason;
use crate::layout::{hv, M2P_VA};
use crate::vcpu::{GuestState, Handled, Stop, Vcpu};

/// Result of one hypercall: a value for RAX, or "the guest state was
/// replaced" (iret), or the domain stops.
pub enum Outcome {
    Ret(i64),
    NoReturnValue,
}

const EFAULT: i64 = -XEN_EFAULT;
const EINVAL: i64 = -XEN_EINVAL;
const ENOSYS: i64 = -XEN_ENOSYS;

/// Upper bound on batched requests handled in one hypercall.
const MAX_BATCH: u64 = 1 << 16;

impl Vcpu {
    pub fn hypercall(&mut self, g: &mut GuestState) -> Handled {
        let nr = g.regs.rax;
        let args = [g.regs.rdi, g.regs.rsi, g.regs.rdx, g.regs.r10, g.regs.r8];
        if nr == HYPERVISOR_IRET {
            return self.iret(g);
        }
        match self.dispatch(nr, args, g)? {
            Outcome::Ret(v) => g.regs.rax = v as u64,
            Outcome::NoReturnValue => {}
        }
        Ok(())
    }

    fn u32_at(&self, va: u64) -> Result<u32, i64> {
        self.read_guest_obj::<u32>(va).map_err(|_| EFAULT)
    }

    fn u64_at(&self, va: u64) -> Result<u64, i64> {
        self.read_guest_obj::<u64>(va).map_err(|_| EFAULT)
    }

    fn put_u32(&self, va: u64, v: u32) -> Result<(), i64> {
        self.write_guest_obj(va, &v).map_err(|_| EFAULT)
    }

    fn put_u64(&self, va: u64, v: u64) -> Result<(), i64> {
        self.write_guest_obj(va, &v).map_err(|_| EFAULT)
    }

    pub fn dispatch(&mut self, nr: u64, a: [u64; 5], g: &mut GuestState) -> Result<Outcome, Stop> {
        self.record(|| format!("hypercall {nr} {:x?}", a));
        let r = match nr {
            HYPERVISOR_CONSOLE_IO => self.console_io(a[0] as u32, a[1], a[2]),
            HYPERVISOR_XEN_VERSION => self.xen_version(a[0] as u32, a[1]),
            HYPERVISOR_VM_ASSIST => self.vm_assist(a[0] as u32, a[1] as u32),
            HYPERVISOR_SET_TRAP_TABLE => self.set_trap_table(a[0]),
            HYPERVISOR_SET_CALLBACKS => {
                self.event_callback = a[0];
                self.failsafe_callback = a[1];
                self.syscall_callback = a[2];
                Ok(0)
            }
            HYPERVISOR_CALLBACK_OP => self.callback_op(a[0] as u32, a[1]),
            HYPERVISOR_STACK_SWITCH => {
                self.kernel_sp = a[1];
                Ok(0)
            }
            HYPERVISOR_SET_SEGMENT_BASE => self.set_segment_base(a[0] as u32, a[1]),
            HYPERVISOR_FPU_TASKSWITCH => Ok(0),
            HYPERVISOR_SET_DEBUGREG => Ok(0),
            HYPERVISOR_GET_DEBUGREG => Ok(0),
            HYPERVISOR_MMU_UPDATE => self.mmu_update(a[0], a[1], a[2], a[3] as u16),
            HYPERVISOR_MMUEXT_OP => self.mmuext_op(a[0], a[1], a[2], a[3] as u16),
            HYPERVISOR_UPDATE_VA_MAPPING => Ok(self.update_va_mapping(a[0], a[1], a[2])),
            HYPERVISOR_SET_GDT => self.set_gdt(a[0], a[1]),
            HYPERVISOR_UPDATE_DESCRIPTOR => self.update_descriptor(a[0], a[1]),
            HYPERVISOR_MEMORY_OP => self.memory_op(a[0] as u32, a[1]),
            HYPERVISOR_MULTICALL => return self.multicall(a[0], a[1], g).map(Outcome::Ret),
            HYPERVISOR_VCPU_OP => self.vcpu_op(a[0] as u32, a[1] as u32, a[2]),
            HYPERVISOR_SET_TIMER_OP => {
                self.set_timer(a[0]);
                Ok(0)
            }
            HYPERVISOR_SCHED_OP => return self.sched_op(a[0] as u32, a[1]).map(Outcome::Ret),
            HYPERVISOR_EVENT_CHANNEL_OP => self.event_channel_op(a[0] as u32, a[1]),
            HYPERVISOR_GRANT_TABLE_OP => self.grant_table_op(a[0] as u32, a[1], a[2]),
            HYPERVISOR_PHYSDEV_OP => self.physdev_op(a[0] as u32, a[1]),
            _ => {
                tracing::debug!(nr, "unimplemented hypercall");
                Err(ENOSYS)
            }
        };
        Ok(Outcome::Ret(r.unwrap_or_else(|e| e)))
    }

    fn console_io(&mut self, cmd: u32, count: u64, buf: u64) -> Result<i64, i64> {
        match cmd {
            CONSOLEIO_WRITE => {
                let n = count.min(1 << 16) as usize;
                let mut bytes = vec![0u8; n];
                self.copy_from_guest(buf, &mut bytes).map_err(|_| EFAULT)?;
                self.dom.hub.console_io_write(&bytes);
                Ok(0)
            }
            CONSOLEIO_READ => Ok(0),
            _ => Err(EINVAL),
        }
    }

    fn xen_version(&mut self, cmd: u32, arg: u64) -> Result<i64, i64> {
        let put_str = |me: &Self, s: &[u8], len: usize| {
            let mut b = vec![0u8; len];
            b[..s.len()].copy_from_slice(s);
            me.copy_to_guest(arg, &b).map_err(|_| EFAULT)
        };
        match cmd {
            XENVER_VERSION => Ok((4 << 16) | 17),
            XENVER_EXTRAVERSION => put_str(self, b"-rxen", 16).map(|_| 0),
            XENVER_CAPABILITIES => put_str(self, b"xen-3.0-x86_64", 1024).map(|_| 0),
            XENVER_CHANGESET => put_str(self, b"rxen", 64).map(|_| 0),
            XENVER_COMPILE_INFO => put_str(self, b"rustc", 144).map(|_| 0),
            XENVER_PLATFORM_PARAMETERS => self.put_u64(arg, HYPERVISOR_VIRT_START).map(|_| 0),
            XENVER_GET_FEATURES => {
                let idx = self.u32_at(arg)?;
                let bits = if idx == 0 {
                    (1 << XENFEAT_WRITABLE_PAGE_TABLES)
                        | (1 << XENFEAT_PAE_PGDIR_ABOVE_4GB)
                        | (1 << XENFEAT_MMU_PT_UPDATE_PRESERVE_AD)
                        | (1 << XENFEAT_GNTTAB_MAP_AVAIL_BITS)
                } else {
                    0
                };
                self.put_u32(arg.wrapping_add(4), bits).map(|_| 0)
            }
            XENVER_PAGESIZE => Ok(4096),
            XENVER_GUEST_HANDLE => put_str(self, &[0u8; 16], 16).map(|_| 0),
            _ => Err(EINVAL),
        }
    }

    fn vm_assist(&mut self, cmd: u32, ty: u32) -> Result<i64, i64> {
        if ty >= 64 {
            return Err(EINVAL);
        }
        match cmd {
            VMASST_CMD_ENABLE => self.vm_assist |= 1 << ty,
            VMASST_CMD_DISABLE => self.vm_assist &= !(1 << ty),
            _ => return Err(EINVAL),
        }
        Ok(0)
    }

    fn set_trap_table(&mut self, va: u64) -> Result<i64, i64> {
        if va == 0 {
            self.traps.iter_mut().for_each(|t| *t = TrapInfo::default());
            return Ok(0);
        }
        for i in 0..256u64 {
            let t: TrapInfo = self
                .read_guest_obj(va.wrapping_add(i * 16))
                .map_err(|_| EFAULT)?;
            if t.address == 0 {
                break;
            }
            self.traps[t.vector as usize] = t;
        }
        Ok(0)
    }

    fn callback_op(&mut self, cmd: u32, arg: u64) -> Result<i64, i64> {
        // struct callback_register { u16 type; u16 flags; u32 pad; u64 address; }
        let ty = self.read_guest_obj::<u16>(arg).map_err(|_| EFAULT)?;
        match cmd {
            CALLBACKOP_REGISTER => {
                let flags = self
                    .read_guest_obj::<u16>(arg.wrapping_add(2))
                    .map_err(|_| EFAULT)? as u32;
                let addr = self.u64_at(arg.wrapping_add(8))?;
                match ty {
                    CALLBACKTYPE_EVENT => self.event_callback = addr,
                    CALLBACKTYPE_FAILSAFE => self.failsafe_callback = addr,
                    CALLBACKTYPE_SYSCALL => {
                        self.syscall_callback = addr;
                        self.syscall_masks_events = flags & CALLBACKF_MASK_EVENTS as u32 != 0;
                    }
                    CALLBACKTYPE_NMI => {}
                    _ => return Err(EINVAL),
                }
                Ok(0)
            }
            CALLBACKOP_UNREGISTER => Ok(0),
            _ => Err(EINVAL),
        }
    }

    fn set_segment_base(&mut self, which: u32, base: u64) -> Result<i64, i64> {
        // As in Xen: a non-canonical base would fail the next VM entry.
        if !crate::paging::is_canonical(base) {
            return Err(EINVAL);
        }
        match which {
            SEGBASE_FS => self.set_fs_base(base),
            SEGBASE_GS_USER => self.set_gs_user(base),
            SEGBASE_GS_KERNEL => self.set_gs_kernel(base),
            SEGBASE_GS_USER_SEL => {
                // Load a user GS selector: the base comes from the descriptor
                // (0 for the flat/null selectors Linux uses); the kernel sets
                // the real base afterwards.
                self.set_gs_user(0);
            }
            _ => return Err(EINVAL),
        }
        Ok(0)
    }

    fn mmu_update(&mut self, reqs: u64, count: u64, done: u64, dom: u16) -> Result<i64, i64> {
        let r = self.batch(reqs, count, done, dom, |me, req: MmuUpdate| {
            me.mmu_update_one(req)
        });
        if r.is_ok() && count == 1 && self.kernel_mode {
            // The request was readable there: the shim may read the next
            // ones from the same page (Linux's multicall buffer).
            self.mmu_request_page = reqs & !0xfff;
        }
        r
    }

    fn mmuext_op(&mut self, ops: u64, count: u64, done: u64, dom: u16) -> Result<i64, i64> {
        self.batch(ops, count, done, dom, |me, op: MmuextOp| {
            me.mmuext_one(op).inspect_err(|e| {
                tracing::debug!(cmd = op.cmd, arg1 = op.arg1, e, "mmuext_op failed")
            })
        })
    }

    /// The shape `mmu_update` and `mmuext_op` share: `count` requests of type
    /// `T` at `list`, stop at the first failure, report how many were done.
    fn batch<T: vm_memory::ByteValued>(
        &mut self,
        list: u64,
        count: u64,
        done: u64,
        dom: u16,
        mut one: impl FnMut(&mut Self, T) -> Result<(), i64>,
    ) -> Result<i64, i64> {
        if dom != DOMID_SELF {
            return Err(-XEN_EPERM);
        }
        let count = count & !(1 << 31); // the *_PREEMPTED flag
        if count > MAX_BATCH {
            return Err(EINVAL);
        }
        let size = std::mem::size_of::<T>() as u64;
        let mut n = 0;
        let mut rc = 0;
        while n < count {
            let req: T = self
                .read_guest_obj(list.wrapping_add(n * size))
                .map_err(|_| EFAULT)?;
            if let Err(e) = one(self, req) {
                rc = e;
                break;
            }
            n += 1;
        }
        if done != 0 {
            self.put_u32(done, n as u32)?;
        }
        Ok(rc)
    }

    fn set_gdt(&mut self, frames_va: u64, entries: u64) -> Result<i64, i64> {
        // Guest GDTs may use at most 14 pages (entries below FIRST_RESERVED_GDT_ENTRY).
        if entries > 14 * 512 {
            return Err(EINVAL);
        }
        let pages = entries.div_ceil(512);
        let gdt_gpa = self.dom.machine.layout.hv_gpa(hv::GDT);
        let mut table = vec![0u8; 14 * 4096];
        for p in 0..pages {
            let mfn = self.u64_at(frames_va.wrapping_add(p * 8))?;
            if mfn >= self.dom.machine.layout.ram_pages {
                return Err(EINVAL);
            }
            self.ram()
                .read(mfn << 12, &mut table[p as usize * 4096..][..4096])
                .map_err(|_| EFAULT)?;
        }
        for (i, d) in table.chunks_exact_mut(8).enumerate() {
            let v = u64::from_le_bytes(d.try_into().unwrap());
            let v = if (i as u64) < entries {
                sanitize_descriptor(v)
            } else {
                0
            };
            d.copy_from_slice(&v.to_le_bytes());
        }
        self.ram().write(gdt_gpa, &table).map_err(|_| EFAULT)?;
        self.gdt_frames.clear();
        for p in 0..pages {
            self.gdt_frames
                .push(self.u64_at(frames_va.wrapping_add(p * 8))?);
        }
        Ok(0)
    }

    fn update_descriptor(&mut self, ma: u64, desc: u64) -> Result<i64, i64> {
        // Not onto a page table: that would bypass the PTE checks.
        if ma & 7 != 0 || ma >> 12 >= self.dom.machine.layout.ram_pages || self.is_page_table(ma) {
            return Err(EINVAL);
        }
        self.ram().write_u64(ma, desc).map_err(|_| EFAULT)?;
        if let Some(page) = self.gdt_frames.iter().position(|&f| f == ma >> 12) {
            let gpa = self.dom.machine.layout.hv_gpa(hv::GDT) + page as u64 * 4096 + (ma & 0xfff);
            self.ram()
                .write_u64(gpa, sanitize_descriptor(desc))
                .map_err(|_| EFAULT)?;
        }
        Ok(0)
    }

    fn memory_op(&mut self, cmd: u32, arg: u64) -> Result<i64, i64> {
        let l = self.dom.machine.layout;
        match cmd & 0xf {
            XENMEM_MACHPHYS_MAPPING => {
                self.put_u64(arg, M2P_VA)?;
                self.put_u64(arg.wrapping_add(8), M2P_VA + l.m2p_entries() * 8)?;
                self.put_u64(arg.wrapping_add(16), l.m2p_entries() - 1)?;
                Ok(0)
            }
            XENMEM_MAXIMUM_RESERVATION | XENMEM_CURRENT_RESERVATION => Ok(l.ram_pages as i64),
            XENMEM_MAXIMUM_RAM_PAGE => Ok(l.ram_pages as i64 - 1),
            XENMEM_MEMORY_MAP => Err(ENOSYS),
            XENMEM_DECREASE_RESERVATION | XENMEM_INCREASE_RESERVATION | XENMEM_POPULATE_PHYSMAP => {
                // Ballooning is not supported yet: report no extents done.
                Ok(0)
            }
            _ => Err(ENOSYS),
        }
    }

    /// Returns the multicall's own result (-EFAULT for an unreadable list;
    /// each entry's result goes into the entry).
    fn multicall(&mut self, list: u64, count: u64, g: &mut GuestState) -> Result<i64, Stop> {
        let count = count.min(MAX_BATCH);
        for i in 0..count {
            let va = list.wrapping_add(i * 64);
            let Ok(e) = self.read_guest_obj::<MulticallEntry>(va) else {
                return Ok(EFAULT);
            };
            let a = [e.args[0], e.args[1], e.args[2], e.args[3], e.args[4]];
            let res = if e.op == HYPERVISOR_IRET || e.op == HYPERVISOR_MULTICALL {
                EINVAL
            } else {
                match self.dispatch(e.op, a, g)? {
                    Outcome::Ret(v) => v,
                    Outcome::NoReturnValue => 0,
                }
            };
            if self.put_u64(va.wrapping_add(8), res as u64).is_err() {
                return Ok(EFAULT);
            }
        }
        Ok(0)
    }

    fn vcpu_op(&mut self, cmd: u32, vcpu: u32, arg: u64) -> Result<i64, i64> {
        if vcpu != self.id {
            return Err(-XEN_ENOENT);
        }
        match cmd {
            VCPUOP_IS_UP => Ok(1),
            VCPUOP_REGISTER_VCPU_INFO => {
                let mfn = self.u64_at(arg)?;
                let off = self.u32_at(arg.wrapping_add(8))? as u64;
                let size = std::mem::size_of::<VcpuInfo>() as u64;
                // rxen writes vcpu_info: never onto a page table.
                if mfn >= self.dom.machine.layout.ram_pages
                    || off + size > 4096
                    || self.is_page_table(mfn << 12)
                {
                    return Err(EINVAL);
                }
                let old = self.dom.vcpu_info();
                let mut b = vec![0u8; size as usize];
                self.ram().read(old, &mut b).map_err(|_| EFAULT)?;
                let new = (mfn << 12) + off;
                self.ram().write(new, &b).map_err(|_| EFAULT)?;
                self.dom
                    .vcpu_info_gpa
                    .store(new, std::sync::atomic::Ordering::SeqCst);
                self.update_time();
                Ok(0)
            }
            VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA => {
                self.runstate_va = self.u64_at(arg)?;
                self.update_runstate();
                Ok(0)
            }
            VCPUOP_SET_SINGLESHOT_TIMER => {
                let t = self.u64_at(arg)?;
                let flags = self.u32_at(arg.wrapping_add(8))?;
                if flags & VCPU_SSHOTTMR_FUTURE != 0 && t < self.dom.clock.now_ns() {
                    return Err(-XEN_ETIME);
                }
                self.set_timer(t.max(1));
                Ok(0)
            }
            VCPUOP_STOP_SINGLESHOT_TIMER => {
                self.set_timer(0);
                Ok(0)
            }
            VCPUOP_STOP_PERIODIC_TIMER => Ok(0),
            _ => Err(ENOSYS),
        }
    }

    /// Publish fresh pvclock data in vcpu_info and the wallclock in shared_info.
    pub fn update_time(&self) {
        let ram = self.ram();
        let vi = self.dom.vcpu_info();
        let t_off = std::mem::offset_of!(VcpuInfo, time) as u64;
        let mut t = self.dom.clock.time_info();
        let version: u32 = ram.read_obj(vi + t_off).unwrap_or(0);
        let _ = ram.write_obj(vi + t_off, version.wrapping_add(1) | 1);
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        t.version = (version | 1).wrapping_add(1);
        let _ = ram.write_obj(vi + t_off, t);
        let sh = self.dom.machine.layout.hv_gpa(hv::SHARED_INFO);
        let (sec, nsec) = self.dom.clock.boot_wallclock();
        let wc = std::mem::offset_of!(SharedInfo, wc_version) as u64;
        let v: u32 = ram.read_obj(sh + wc).unwrap_or(0);
        let _ = ram.write_obj(sh + wc, v.wrapping_add(1) | 1);
        let _ = ram.write_obj(sh + wc + 4, sec as u32);
        let _ = ram.write_obj(sh + wc + 8, nsec);
        let _ = ram.write_obj(sh + wc + 12, (sec >> 32) as u32);
        let _ = ram.write_obj(sh + wc, (v | 1).wrapping_add(1));
    }

    pub fn update_runstate(&self) {
        if self.runstate_va == 0 {
            return;
        }
        let now = self.dom.clock.now_ns();
        let info = VcpuRunstateInfo {
            state: RUNSTATE_RUNNING,
            state_entry_time: now,
            time: [now, 0, 0, 0],
            ..Default::default()
        };
        let _ = self.write_guest_obj(self.runstate_va, &info);
    }

    fn sched_op(&mut self, cmd: u32, arg: u64) -> Result<i64, Stop> {
        match cmd {
            SCHEDOP_YIELD => Ok(0),
            SCHEDOP_BLOCK => {
                let vi = self.dom.vcpu_info();
                self.dom.bits().set_upcall_mask(vi, 0);
                loop {
                    self.poll_timer(false);
                    if self.dom.bits().upcall_pending(vi)
                        || self.dom.stopping.load(std::sync::atomic::Ordering::SeqCst)
                    {
                        break;
                    }
                    let limit = std::time::Duration::from_millis(500);
                    let wait = self.timer_due_in().map_or(limit, |d| d.min(limit));
                    self.dom.wakeup.wait(Some(wait));
                }
                self.update_time();
                Ok(0)
            }
            SCHEDOP_SHUTDOWN => {
                // A bad pointer is an error for the caller, as in Xen.
                match self.u32_at(arg) {
                    Ok(reason) => Err(Stop(ShutdownReason::from_xen(reason))),
                    Err(e) => Ok(e),
                }
            }
            _ => Ok(ENOSYS),
        }
    }

    fn physdev_op(&mut self, cmd: u32, arg: u64) -> Result<i64, i64> {
        match cmd {
            PHYSDEVOP_SET_IOPL => {
                self.iopl = self.u32_at(arg)? & 3;
                Ok(0)
            }
            _ => Err(ENOSYS),
        }
    }
}

/// Make a guest descriptor safe for the hardware GDT: code/data segments get
/// DPL 3; system descriptors and call gates are dropped.
pub fn sanitize_descriptor(d: u64) -> u64 {
    const S: u64 = 1 << 44;
    const P: u64 = 1 << 47;
    if d & P == 0 {
        return 0;
    }
    if d & S == 0 {
        return 0;
    }
    d | (3 << 45)
}

#[cfg(test)]
mod tests {
    use super::sanitize_descriptor;

    #[test]
    fn descriptors_get_dpl3_and_system_ones_vanish() {
        // Linux's __KERNEL_CS: 64-bit code, DPL0.
        assert_eq!(
            sanitize_descriptor(0x00af_9b00_0000_ffff),
            0x00af_fb00_0000_ffff
        );
        // A 64-bit TSS descriptor (system) is dropped.
        assert_eq!(sanitize_descriptor(0x0000_8900_0000_0067), 0);
        // Not present: dropped.
        assert_eq!(sanitize_descriptor(0x00af_1b00_0000_ffff), 0);
    }
}
