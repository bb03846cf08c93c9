//! The vCPU thread: runs KVM, turns every exit from the shim into a Xen
//! event (hypercall, user syscall, exception, interrupt), and resumes the
//! guest through one of the shim's resume paths.
//!
//! ```text
//!   guest CPL3 ──trap/syscall──▶ shim stub `out $v` ──exit──▶ on_trap()
//!        ▲                                                      │
//!        └──── iretq ◀── shim resume path (ptw, swapgs, cr3) ◀──┘ resume()
//! ```

use std::sync::atomic::Ordering;
use std::sync::Arc;

use kvm_bindings::{kvm_regs, kvm_sregs};
use kvm_ioctls::{SyncReg, VcpuExit, VcpuFd};
use xen_abi::{TrapInfo, FLAT_KERNEL_CS, FLAT_KERNEL_SS};

use crate::domain::{DomainShared, ShutdownReason};
use crate::machine::{msr, MSR_KERNEL_GS_BASE};
use crate::shim;
use crate::vcpu_timer::{timer_due, TimerDue};

/// Vector used to pull a vCPU running at CPL3 into the shim for event delivery.
pub const KICK_VECTOR: u8 = 0x20;

pub const RFLAGS_IF: u64 = 1 << 9;
pub const RFLAGS_TF: u64 = 1 << 8;
pub const RFLAGS_IOPL: u64 = 3 << 12;
pub const RFLAGS_NT: u64 = 1 << 14;
pub const RFLAGS_RF: u64 = 1 << 16;
pub const RFLAGS_VM: u64 = 1 << 17;
pub const RFLAGS_AC: u64 = 1 << 18;

/// The guest's register state at a trap, and what it resumes into.
#[derive(Debug, Clone, Copy)]
pub struct GuestState {
    pub regs: kvm_regs,
    pub cs: u64,
    pub ss: u64,
}

/// Outcome of handling one exit.
pub type Handled = Result<(), Stop>;

/// Why the vCPU loop stops: the domain shuts down or crashed.
#[derive(Debug)]
pub struct Stop(pub ShutdownReason);

pub fn crash<T>(why: impl Into<String>) -> Result<T, Stop> {
    Err(Stop(ShutdownReason::Crash(why.into())))
}

/// Xen-side state of one vCPU.
pub struct Vcpu {
    pub fd: VcpuFd,
    pub dom: Arc<DomainShared>,
    pub id: u32,
    pub kernel_mode: bool,
    pub kernel_cr3: u64,
    pub user_cr3: u64,
    pub kernel_sp: u64,
    pub traps: Vec<TrapInfo>,
    pub event_callback: u64,
    pub failsafe_callback: u64,
    pub syscall_callback: u64,
    pub syscall_masks_events: bool,
    pub fs_base: u64,
    pub gs_kernel: u64,
    pub gs_user: u64,
    /// Page-table writes for the shim to apply on the next resume.
    pub ptw: Vec<(u64, u64)>,
    /// Reload CR3 on the next resume (TLB flush).
    pub flush: bool,
    pub sregs_dirty: bool,
    pub sregs: kvm_sregs,
    pub gs_user_dirty: bool,
    pub runstate_va: u64,
    pub iopl: u32,
    pub vm_assist: u64,
    pub cpuid: kvm_bindings::CpuId,
    /// Hypervisor-visible counters for diagnostics and benchmarks.
    pub stats: Stats,
    last_ptw: usize,
    /// Guest frames holding the GDT loaded with set_gdt.
    pub gdt_frames: Vec<u64>,
    /// Frames known to be page tables.
    pub pt: crate::mmu::PageTables,
    /// Recent exits, for diagnosing a crash.
    pub trace: std::collections::VecDeque<String>,
    /// Hypercalls by number (63 = any larger), logged when the domain ends.
    pub hypercall_counts: [u64; 64],
    /// Page of the last single `mmu_update` request rxen read without a
    /// fault: the shim's fast path reads requests from there too.
    pub mmu_request_page: u64,
    /// Shim exits by vector (14 includes SYSCALLs and hypercalls).
    pub vector_counts: [u64; 256],
    /// KVM_RUN durations in µs (last bucket: 2 ms or more).
    pub run_us_histogram: Vec<u64>,
    /// Single-shot timer deadline in system-time ns (0 = none).
    timer_deadline: u64,
    /// The deadline was moved once already (see [`Vcpu::poll_timer`]).
    timer_put_off: bool,
    /// Armed at `timer_deadline`; created by [`Vcpu::run`] on the vCPU thread.
    timer: Option<crate::vcpu_timer::VcpuTimer>,
    /// The shim's stack_switch counter when last read.
    fast_stack_switches: u64,
}

/// What the shim's fast paths did (counters in its data page).
#[derive(Debug, Default, Clone, Copy)]
pub struct FastPathCounts {
    pub syscalls: u64,
    pub irets: u64,
    pub mmu_updates: u64,
    /// Single `mmu_update`s the kernel stub finished at CPL3.
    pub kstub_mmu_updates: u64,
    pub clis: u64,
    pub stack_switches: u64,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub exits: u64,
    pub hypercalls: u64,
    pub syscalls: u64,
    pub page_faults: u64,
    pub ptw_writes: u64,
    /// Time spent inside KVM_RUN (guest code, the shim, host emulation).
    pub run_ns: u64,
    /// KVM_RUNs that started by applying page-table writes, and their time.
    pub ptw_runs: u64,
    pub ptw_run_ns: u64,
    /// Extra trips to the VMM for page-table write lists over capacity.
    pub ptw_rounds: u64,
    /// Event upcalls entered straight from guest code after a kick.
    pub direct_upcalls: u64,
    /// Kick interrupts that reached the shim and were put off.
    pub kicks_in_shim: u64,
    /// VIRQ_TIMERs raised (the guest's ticks and timers).
    pub timer_virqs: u64,
    /// Timers found overdue after the host had preempted the running vCPU,
    /// and put off (see [`crate::vcpu_timer::timer_due`]).
    pub timers_put_off: u64,
}

thread_local! {
    static KVM_RUN: std::cell::Cell<*mut kvm_bindings::kvm_run> = const { std::cell::Cell::new(std::ptr::null_mut()) };
}

/// Signal used to kick a vCPU thread out of KVM_RUN.
pub fn kick_signal() -> i32 {
    libc::SIGRTMIN() + 1
}

extern "C" fn on_kick(_: libc::c_int) {
    KVM_RUN.with(|r| {
        let p = r.get();
        if !p.is_null() {
            // SAFETY: `p` points at this thread's mmap'ed kvm_run, set by
            // `Vcpu::run` before the first KVM_RUN and valid for the thread's
            // life; writing immediate_exit from a signal handler is the
            // documented way to make the next KVM_RUN return at once.
            unsafe { (*p).immediate_exit = 1 };
        }
    });
}

pub fn install_kick_handler() {
    // SAFETY: installs a handler that only stores one byte; sigaction with a
    // zeroed struct and a valid function pointer is sound.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_kick as *const () as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(kick_signal(), &sa, std::ptr::null_mut());
    }
}

pub fn kick_thread(t: libc::pthread_t) {
    // SAFETY: `t` is the id of the live vCPU thread (cleared before it exits).
    unsafe {
        libc::pthread_kill(t, kick_signal());
    }
}

impl Vcpu {
    pub fn new(
        fd: VcpuFd,
        dom: Arc<DomainShared>,
        cpuid: kvm_bindings::CpuId,
        kernel_cr3: u64,
    ) -> Vcpu {
        Vcpu {
            fd,
            dom,
            id: 0,
            kernel_mode: true,
            kernel_cr3,
            user_cr3: 0,
            kernel_sp: 0,
            traps: vec![TrapInfo::default(); 256],
            event_callback: 0,
            failsafe_callback: 0,
            syscall_callback: 0,
            syscall_masks_events: false,
            fs_base: 0,
            gs_kernel: 0,
            gs_user: 0,
            ptw: Vec::new(),
            flush: false,
            sregs_dirty: false,
            sregs: kvm_sregs::default(),
            gs_user_dirty: false,
            runstate_va: 0,
            iopl: 0,
            vm_assist: 0,
            cpuid,
            stats: Stats::default(),
            last_ptw: 0,
            gdt_frames: Vec::new(),
            pt: Default::default(),
            trace: Default::default(),
            hypercall_counts: [0; 64],
            vector_counts: [0; 256],
            mmu_request_page: 0,
            run_us_histogram: vec![0; 2001],
            timer_deadline: 0,
            timer_put_off: false,
            timer: None,
            fast_stack_switches: 0,
        }
    }

    pub fn ram(&self) -> &crate::mem::GuestRam {
        &self.dom.machine.ram
    }

    /// Current page-table root for guest-virtual accesses.
    pub fn cr3(&self) -> u64 {
        if self.kernel_mode {
            self.kernel_cr3
        } else {
            self.user_cr3
        }
    }

    fn note(&mut self, s: String) {
        if self.trace.len() >= 32 {
            self.trace.pop_front();
        }
        self.trace.push_back(s);
    }

    /// Start the guest at `entry` with `rsp`, `rsi` (start_info) in kernel mode.
    pub fn boot(&mut self, entry: u64, rsp: u64, rsi: u64) -> Result<(), kvm_ioctls::Error> {
        self.fd.set_sync_valid_reg(SyncReg::Register);
        self.fd.set_sync_valid_reg(SyncReg::SystemRegister);
        let regs = kvm_regs {
            rsi,
            rflags: 2,
            ..Default::default()
        };
        let g = GuestState {
            regs: kvm_regs {
                rip: entry,
                rsp,
                rflags: 2 | RFLAGS_IF,
                ..regs
            },
            cs: FLAT_KERNEL_CS as u64,
            ss: FLAT_KERNEL_SS as u64,
        };
        self.sregs = self.fd.get_sregs()?;
        self.flush = true;
        self.resume(g, true);
        Ok(())
    }

    /// Run until the domain stops; returns why.
    pub fn run(&mut self) -> ShutdownReason {
        install_kick_handler();
        let run_ptr = self.fd.get_kvm_run() as *mut kvm_bindings::kvm_run;
        KVM_RUN.with(|r| r.set(run_ptr));
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() };
        self.dom.vcpu_thread.store(me as u64, Ordering::SeqCst);
        if let Err(e) = crate::host_sched::set_thread_slice(crate::host_sched::VCPU_SLICE) {
            tracing::debug!("vCPU thread keeps the host's default time slice: {e}");
        }
        match crate::vcpu_timer::VcpuTimer::for_this_thread() {
            Ok(t) => self.timer = Some(t),
            Err(e) => return ShutdownReason::Crash(format!("cannot create the vCPU timer: {e}")),
        }
        let reason = loop {
            if let Some(r) = self.dom.shutdown_reason() {
                break r;
            }
            if self.dom.is_paused() {
                self.dom.wait_while_paused();
                continue;
            }
            match self.step() {
                Ok(()) => {}
                Err(Stop(r)) => {
                    self.dom.request_shutdown(r.clone());
                    break self.dom.shutdown_reason().unwrap_or(r);
                }
            }
        };
        self.dom.vcpu_thread.store(0, Ordering::SeqCst);
        self.timer = None;
        KVM_RUN.with(|r| r.set(std::ptr::null_mut()));
        match crate::kvm_stats::read_vcpu(&self.fd) {
            Ok(s) => tracing::info!("KVM's counters: {}", crate::kvm_stats::summary(&s)),
            Err(e) => tracing::debug!("no KVM stats: {e}"),
        }
        let by_nr: Vec<String> = (0..64)
            .filter(|&n| self.hypercall_counts[n] != 0)
            .map(|n| format!("{n}:{}", self.hypercall_counts[n]))
            .collect();
        tracing::info!("hypercalls by number: {}", by_nr.join(" "));
        let by_vector: Vec<String> = (0..256)
            .filter(|&v| self.vector_counts[v] != 0)
            .map(|v| format!("{v}:{}", self.vector_counts[v]))
            .collect();
        tracing::info!("shim exits by vector: {}", by_vector.join(" "));
        let fast = self.fast_path_counts();
        self.stats.syscalls += fast.syscalls;
        self.stats.hypercalls += fast.irets + fast.mmu_updates + fast.stack_switches;
        tracing::info!(
            fast_syscalls = fast.syscalls,
            fast_irets = fast.irets,
            fast_mmu_updates = fast.mmu_updates,
            kstub_mmu_updates = fast.kstub_mmu_updates,
            fast_clis = fast.clis,
            fast_stack_switches = fast.stack_switches,
            "done in the shim without an exit (not in the counts above)"
        );
        tracing::info!(
            "KVM_RUN durations: {}",
            percentiles(&self.run_us_histogram, &[1, 10, 50, 90, 99])
        );
        if let ShutdownReason::Crash(why) = &reason {
            tracing::warn!(why, "domain crashed; recent exits: {:?}", self.trace);
        }
        reason
    }

    fn step(&mut self) -> Handled {
        if self.gs_user_dirty {
            let msrs =
                kvm_bindings::Msrs::from_entries(&[msr(MSR_KERNEL_GS_BASE, self.hw_inactive_gs())])
                    .expect("one entry");
            if self.fd.set_msrs(&msrs).is_err() {
                return crash("KVM refused to set KERNEL_GS_BASE");
            }
            self.gs_user_dirty = false;
        }
        if self.sregs_dirty {
            self.fd.sync_regs_mut().sregs = self.sregs;
            self.fd.set_sync_dirty_reg(SyncReg::SystemRegister);
            self.sregs_dirty = false;
        }
        let t0 = std::time::Instant::now();
        let had_ptw = self.last_ptw;
        let exit = self.fd.run();
        let ns = t0.elapsed().as_nanos() as u64;
        self.stats.run_ns += ns;
        self.run_us_histogram[((ns / 1000) as usize).min(2000)] += 1;
        if had_ptw > 0 {
            self.stats.ptw_runs += 1;
            self.stats.ptw_run_ns += ns;
        }
        self.last_ptw = 0;
        self.stats.exits += 1;
        // The shim's fast paths may have switched modes since the resume.
        let m = &self.dom.machine;
        if let Ok(mode) = m.ram.read_u64(m.shim_data_gpa(shim::data::MODE)) {
            self.kernel_mode = mode & 1 != 0;
        }
        // A stack_switch done in the shim since the last look.
        if let Ok(n) = m
            .ram
            .read_u64(m.shim_data_gpa(shim::data::FAST_STACK_SWITCHES))
        {
            if n != self.fast_stack_switches {
                self.fast_stack_switches = n;
                if let Ok(sp) = m.ram.read_u64(m.shim_data_gpa(shim::data::RAW_KERNEL_SP)) {
                    self.kernel_sp = sp;
                }
            }
        }
        match exit {
            Ok(VcpuExit::IoOut(port, _)) => self.on_trap(port),
            Ok(VcpuExit::IrqWindowOpen) => {
                self.fd.get_kvm_run().request_interrupt_window = 0;
                self.inject_kick();
                Ok(())
            }
            Ok(VcpuExit::Shutdown) => {
                crash("triple fault (the shim could not deliver an exception)")
            }
            Ok(VcpuExit::InternalError) => {
                let regs = self.fd.get_regs().ok();
                crash(format!(
                    "KVM internal error (emulation failure?) at rip {:#x}",
                    regs.map_or(0, |r| r.rip)
                ))
            }
            Ok(VcpuExit::MmioRead(addr, _)) | Ok(VcpuExit::MmioWrite(addr, _)) => crash(format!(
                "guest accessed unbacked guest-physical address {addr:#x}"
            )),
            Ok(VcpuExit::Hlt) => crash("vCPU halted in the shim"),
            Ok(VcpuExit::IoIn(port, _)) => crash(format!("unexpected port read {port:#x}")),
            Ok(other) => {
                let s = format!("{other:?}");
                crash(format!("unexpected KVM exit {s}"))
            }
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                self.fd.set_kvm_immediate_exit(0);
                self.on_kicked();
                Ok(())
            }
            Err(e) => crash(format!("KVM_RUN failed: {e}")),
        }
    }

    /// Xen's single-shot timer: VIRQ_TIMER at system time `deadline_ns`
    /// (0 stops it).
    pub fn set_timer(&mut self, deadline_ns: u64) {
        self.timer_deadline = deadline_ns;
        self.timer_put_off = false;
        self.arm_timer();
    }

    fn arm_timer(&self) {
        if let Some(t) = &self.timer {
            let d = self.timer_deadline;
            t.arm((d != 0).then(|| self.dom.clock.until(d)));
        }
    }

    /// How long until the single-shot timer expires (`None`: not set).
    pub fn timer_due_in(&self) -> Option<std::time::Duration> {
        (self.timer_deadline != 0).then(|| self.dom.clock.until(self.timer_deadline))
    }

    /// Marks VIRQ_TIMER pending if the deadline has passed. Runs on the vCPU
    /// thread, so it raises the port without kicking itself. `running`:
    /// the guest was running (the timer's signal interrupted KVM_RUN); a
    /// timer found long overdue then is put off a little
    /// ([`crate::vcpu_timer::timer_due`] says why).
    pub fn poll_timer(&mut self, running: bool) {
        let now = self.dom.clock.now_ns();
        match timer_due(self.timer_deadline, now, running, self.timer_put_off) {
            TimerDue::NotYet => {}
            TimerDue::PutOffUntil(deadline) => {
                self.timer_deadline = deadline;
                self.timer_put_off = true;
                self.stats.timers_put_off += 1;
                self.arm_timer();
            }
            TimerDue::Fire => {
                self.timer_deadline = 0;
                self.stats.timer_virqs += 1;
                let port = self
                    .dom
                    .events
                    .lock()
                    .unwrap()
                    .virq_port(xen_abi::VIRQ_TIMER);
                if let Some(p) = port {
                    self.dom.bits().set_pending(p, self.dom.vcpu_info());
                }
            }
        }
    }

    /// The vCPU was kicked: if an event is deliverable, get into the shim.
    fn on_kicked(&mut self) {
        self.poll_timer(true);
        if tracing::enabled!(tracing::Level::TRACE) {
            if let (Ok(r), Ok(s)) = (self.fd.get_regs(), self.fd.get_sregs()) {
                let mut st = [0u64; 12];
                for (i, w) in st.iter_mut().enumerate() {
                    *w = self
                        .read_guest_obj(r.rsp.wrapping_add(i as u64 * 8)) // guest rsp
                        .unwrap_or(0);
                }
                self.record(|| {
                    format!(
                        "kicked at rip {:#x} rsp {:#x} cs {:#x} rax {:#x} rdi {:#x} stack {st:x?}",
                        r.rip, r.rsp, s.cs.selector, r.rax, r.rdi
                    )
                });
            }
        }
        let bits = self.dom.bits();
        let vi = self.dom.vcpu_info();
        if bits.upcall_pending(vi) && bits.upcall_mask(vi) == 0 && !self.upcall_from_guest_code() {
            self.inject_kick();
        }
    }

    /// Enter the guest's event callback straight from where the kick stopped
    /// it, when that is guest code (CPL3): the bounce frame goes on the
    /// guest kernel stack and the registers (and, coming from user mode, CR3
    /// and the GS bases) are set for the callback, without the trip through
    /// the shim that injecting [`KICK_VECTOR`] takes (~85 µs, one per timer
    /// tick). False when the vCPU is in the shim or anything is unusual:
    /// the caller injects the vector then.
    fn upcall_from_guest_code(&mut self) -> bool {
        if self.event_callback == 0 || !self.ptw.is_empty() {
            return false;
        }
        let sr = self.fd.sync_regs();
        // In the shim, or at the SYSCALL trampoline (the #PF that enters
        // the shim may not be queued yet): leave it to the vector.
        if sr.sregs.cs.dpl != 3 || crate::mmu::rip_in_rxen(sr.regs.rip, self.kernel_mode) {
            return false;
        }
        // An exception KVM has queued (e.g. the #PF of a SYSCALL that just
        // reached the trampoline) would be delivered after the register
        // change, with the callback's RIP in its frame.
        match self.fd.get_vcpu_events() {
            Ok(ev)
                if ev.exception.injected == 0
                    && ev.exception.pending == 0
                    && ev.interrupt.injected == 0
                    && ev.nmi.injected == 0 => {}
            _ => return false,
        }
        // KVM_GET_VCPU_EVENTS leaves out software exceptions (int3, into,
        // int n): KVM re-executes the instruction rather than report them.
        // Stopped at or just after one, the exception may still be on its
        // way; moving RIP to the callback then lost the guest's #BP or
        // entered its handler a byte early (probes/int3-loss). Leave those
        // rare cases to the vector, which KVM orders after the exception.
        if self.near_software_interrupt(sr.regs.rip) {
            return false;
        }
        self.sregs = sr.sregs;
        let mut g = GuestState {
            regs: sr.regs,
            cs: sr.sregs.cs.selector as u64,
            ss: sr.sregs.ss.selector as u64,
        };
        let was_kernel = self.kernel_mode;
        let cb = self.event_callback;
        if let Err(Stop(reason)) = self.bounce(&mut g, cb, None, true) {
            self.dom.request_shutdown(reason);
            return true;
        }
        if was_kernel != self.kernel_mode {
            // User -> kernel, as the shim's swapgs + CR3 resume path does.
            self.sregs.cr3 = self.cr3();
            self.sregs.gs.base = self.gs_kernel;
            self.sregs_dirty = true;
            self.gs_user_dirty = true;
        }
        g.regs.rflags |= 2;
        self.fd.sync_regs_mut().regs = g.regs;
        self.fd.set_sync_dirty_reg(SyncReg::Register);
        self.publish_fast_paths();
        self.stats.direct_upcalls += 1;
        true
    }

    /// Resumes the shim where a [`KICK_VECTOR`] interrupted it (`at`: the
    /// registers from its frame) and asks for the interrupt again once the
    /// vCPU can take it in guest code.
    pub fn note_kick_in_shim(&mut self, at: kvm_regs) {
        self.stats.kicks_in_shim += 1;
        self.fd.sync_regs_mut().regs = at;
        self.fd.set_sync_dirty_reg(SyncReg::Register);
        self.fd.get_kvm_run().request_interrupt_window = 1;
    }

    /// Whether guest code at `rip`, or just before it, is a software
    /// interrupt instruction (`int3`, `into`, `int n`). Unreadable code
    /// counts as one: the caller then takes the slower, always-safe path.
    fn near_software_interrupt(&self, rip: u64) -> bool {
        let mut code = [0u8; 3];
        if self
            .copy_from_guest(rip.wrapping_sub(2), &mut code)
            .is_err()
        {
            return true;
        }
        let [before2, before1, at] = code;
        matches!(at, 0xcc..=0xce) || matches!(before1, 0xcc | 0xce) || before2 == 0xcd
    }

    /// Queues [`KICK_VECTOR`] if KVM can deliver it into guest code now,
    /// else asks for an exit when it can. Never while the vCPU is in the
    /// shim or KVM holds an event of its own: KVM would deliver the vector
    /// after that event, inside the shim.
    fn inject_kick(&mut self) {
        let sr = self.fd.sync_regs();
        let in_guest_code =
            sr.sregs.cs.dpl == 3 && !crate::mmu::rip_in_rxen(sr.regs.rip, self.kernel_mode);
        let quiet = in_guest_code
            && matches!(self.fd.get_vcpu_events(), Ok(ev)
                if ev.exception.injected == 0
                    && ev.exception.pending == 0
                    && ev.interrupt.injected == 0
                    && ev.nmi.injected == 0);
        let run = self.fd.get_kvm_run();
        if quiet && run.ready_for_interrupt_injection != 0 && run.if_flag != 0 {
            let irq = kvm_bindings::kvm_interrupt {
                irq: KICK_VECTOR as u32,
            };
            // SAFETY: KVM_INTERRUPT takes a pointer to a kvm_interrupt that
            // lives across the call; the fd is this vCPU's.
            let rc = unsafe {
                vmm_sys_util::ioctl::ioctl_with_ref(&self.fd, kvm_interrupt_ioctl(), &irq)
            };
            if rc < 0 {
                tracing::debug!("KVM_INTERRUPT failed: {}", std::io::Error::last_os_error());
            }
        } else {
            run.request_interrupt_window = 1;
        }
    }

    /// GS base held in KERNEL_GS_BASE while the guest runs in the current mode.
    fn hw_inactive_gs(&self) -> u64 {
        if self.kernel_mode {
            self.gs_user
        } else {
            self.gs_kernel
        }
    }

    /// Write `g`'s iret frame on the CPL0 stack and enter the right resume path.
    /// `was_kernel` is the mode the hardware GS registers are in now.
    pub fn resume(&mut self, mut g: GuestState, was_kernel: bool) {
        let dom = self.dom.clone();
        let m = &dom.machine;
        let top = m.stack_top();
        let frame = top - 40;
        let data = |off: u64| m.shim_data_gpa(off);
        let stack_gpa = m
            .layout
            .hv_gpa(crate::layout::hv::STACK + crate::layout::hv::STACK_PAGES)
            - 40;
        let words = [g.regs.rip, g.cs, g.regs.rflags, g.regs.rsp, g.ss];
        for (i, w) in words.iter().enumerate() {
            let _ = m.ram.write_u64(stack_gpa + i as u64 * 8, *w);
        }
        let swap = was_kernel != self.kernel_mode;
        let target_cr3 = self.cr3();
        let cr3_needed = swap || self.flush || target_cr3 != self.sregs.cr3;
        let off = &m.shim;
        let entry = if !self.ptw.is_empty() {
            self.load_ptw_chunk();
            let _ = m.ram.write_u64(data(shim::data::SAVED_RCX), g.regs.rcx);
            let _ = m.ram.write_u64(data(shim::data::SAVED_RDX), g.regs.rdx);
            let _ = m.ram.write_u64(data(shim::data::SWAPGS), swap as u64);
            let _ = m
                .ram
                .write_u64(data(shim::data::LOAD_CR3), cr3_needed as u64);
            let _ = m.ram.write_u64(data(shim::data::SAVED_RAX), g.regs.rax);
            off.resume_ptw
        } else if cr3_needed {
            if swap {
                off.resume_swapgs_cr3
            } else {
                off.resume_cr3
            }
        } else {
            off.resume_iret
        };
        if cr3_needed {
            let _ = m.ram.write_u64(data(shim::data::NEXT_CR3), target_cr3);
            let _ = m.ram.write_u64(data(shim::data::SAVED_RAX), g.regs.rax);
            self.sregs.cr3 = target_cr3;
            self.flush = false;
        }
        self.publish_fast_paths();
        g.regs.rip = m.shim_va(entry);
        g.regs.rsp = frame;
        g.regs.rflags = 2;
        self.fd.sync_regs_mut().regs = g.regs;
        self.fd.set_sync_dirty_reg(SyncReg::Register);
    }

    /// Put the next page-table writes (at most the list's capacity) in the
    /// shim's list. With more left, the shim comes back through
    /// [`shim::PTW_MORE_PORT`] after applying them, still at CPL0, and
    /// [`Vcpu::continue_ptw`] loads the next chunk: the guest never runs with
    /// a write applied to memory but not yet seen by the host's shadow MMU.
    fn load_ptw_chunk(&mut self) {
        let m = &self.dom.machine;
        let n = self.ptw.len().min(shim::data::PTW_CAPACITY);
        let mut buf = Vec::with_capacity((n + 1) * 16);
        for (va, val) in self.ptw.drain(..n) {
            buf.extend_from_slice(&va.to_le_bytes());
            buf.extend_from_slice(&val.to_le_bytes());
        }
        buf.extend_from_slice(&[0u8; 16]);
        let _ = m.ram.write(m.shim_data_gpa(shim::data::PTW_LIST), &buf);
        let more = !self.ptw.is_empty();
        let _ = m
            .ram
            .write_u64(m.shim_data_gpa(shim::data::PTW_MORE), more as u64);
        self.stats.ptw_writes += n as u64;
        self.last_ptw = n;
        if more {
            self.stats.ptw_rounds += 1;
        }
    }

    /// The shim applied a full list and asks for the rest: load it and
    /// re-enter the list loop (the resume frame and saved registers are
    /// still in place).
    pub fn continue_ptw(&mut self) -> Handled {
        self.load_ptw_chunk();
        let m = &self.dom.machine;
        let regs = &mut self.fd.sync_regs_mut().regs;
        regs.rip = m.shim_va(m.shim.resume_ptw);
        self.fd.set_sync_dirty_reg(SyncReg::Register);
        Ok(())
    }

    /// Tell the shim the guest's mode and what its fast paths need, and
    /// which of them are safe now (see the #PF entry in shim.rs).
    fn publish_fast_paths(&self) {
        use shim::data;
        let m = &self.dom.machine;
        let sp = self.kernel_sp & !15;
        // The shim writes the bounce frame below `sp` at CPL0: never let it
        // point into rxen's own slots (256..=271) or wrap.
        let hv_slots = crate::mmu::RXEN_VA.start..crate::mmu::RXEN_VA.end + 64;
        let mut fast = 0;
        if self.syscall_callback != 0
            && self.syscall_masks_events
            && sp >= 4096
            && !hv_slots.contains(&sp)
            && self.ptw.is_empty()
        {
            fast |= data::FAST_SYSCALL;
        }
        if self.user_cr3 != 0 && self.ptw.is_empty() {
            fast |= data::FAST_IRET;
        }
        if self.ptw.is_empty() {
            fast |= data::FAST_MMU_UPDATE;
        }
        fast |= data::FAST_CLI | data::FAST_STACK_SWITCH;
        let vi = crate::machine::Machine::direct_va(self.dom.vcpu_info());
        let _ = m.ram.write_u64(
            m.kstub_data_gpa(shim::kdata::FAST),
            u64::from(fast & data::FAST_MMU_UPDATE != 0),
        );
        let _ = m.ram.write_u64(
            m.kstub_data_gpa(shim::kdata::REQUEST_PAGE),
            self.mmu_request_page,
        );
        for (off, v) in [
            (data::MODE, self.kernel_mode as u64),
            (data::FAST, fast),
            (data::KERNEL_SP, sp),
            (data::RAW_KERNEL_SP, self.kernel_sp),
            (data::SYSCALL_CALLBACK, self.syscall_callback),
            (data::KERNEL_CR3, self.kernel_cr3),
            (data::USER_CR3, self.user_cr3),
            (data::VCPU_INFO_VA, vi),
            (data::RAM_PAGES, m.layout.ram_pages),
            (data::DIRECTMAP_VA, crate::layout::DIRECTMAP_VA),
            (data::MMU_REQUEST_PAGE, self.mmu_request_page),
        ] {
            let _ = m.ram.write_u64(m.shim_data_gpa(off), v);
        }
    }

    /// How often the shim's fast paths ran: (user syscalls, irets,
    /// mmu_updates, clis).
    pub fn fast_path_counts(&self) -> FastPathCounts {
        let m = &self.dom.machine;
        let get = |off| m.ram.read_u64(m.shim_data_gpa(off)).unwrap_or(0);
        FastPathCounts {
            syscalls: get(shim::data::FAST_SYSCALLS),
            irets: get(shim::data::FAST_IRETS),
            mmu_updates: get(shim::data::FAST_MMU_UPDATES),
            kstub_mmu_updates: m
                .ram
                .read_u64(m.kstub_data_gpa(shim::kdata::MMU_UPDATES))
                .unwrap_or(0),
            clis: get(shim::data::FAST_CLIS),
            stack_switches: get(shim::data::FAST_STACK_SWITCHES),
        }
    }

    pub fn record(&mut self, what: impl FnOnce() -> String) {
        if tracing::enabled!(tracing::Level::TRACE) {
            let s = what();
            tracing::trace!("{s}");
            self.note(s);
        }
    }
}

/// "p1=10us p50=104us ..." from a histogram of 1 µs buckets.
fn percentiles(hist: &[u64], points: &[u64]) -> String {
    let total: u64 = hist.iter().sum();
    let mut out = Vec::new();
    let mut acc = 0;
    let mut next = points.iter().peekable();
    for (us, c) in hist.iter().enumerate() {
        acc += c;
        while let Some(&&p) = next.peek() {
            if acc * 100 < p * total {
                break;
            }
            out.push(format!("p{p}={us}us"));
            next.next();
        }
    }
    out.join(" ")
}

fn kvm_interrupt_ioctl() -> libc::c_ulong {
    // _IOW(KVMIO=0xAE, 0x86, struct kvm_interrupt (4 bytes))
    (1 << 30) | (4 << 16) | (0xae << 8) | 0x86
}
