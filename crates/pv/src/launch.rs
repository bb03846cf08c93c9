//! Putting a PV domain together: machine, builder, vCPU, timer thread.

use std::sync::Arc;

use crate::builder::{self, BootInfo};
use crate::domain::{DeviceHub, DomainShared, ShutdownReason};
use crate::machine::{Machine, MachineError, MSR_TSC};
use crate::time::Clock;
use crate::vcpu::Vcpu;

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(transparent)]
    Machine(#[from] MachineError),
    #[error(transparent)]
    Build(#[from] builder::BuildError),
}

/// What to boot.
pub struct BootSpec<'a> {
    pub kernel: &'a pv_image::KernelImage,
    pub initrd: Option<&'a [u8]>,
    pub cmdline: &'a str,
    pub memory_mib: u64,
}

/// A built domain, ready to run on the calling thread.
pub struct Prepared {
    pub dom: Arc<DomainShared>,
    pub vcpu: Vcpu,
    pub boot: BootInfo,
}

pub fn prepare(spec: &BootSpec, hub: Box<dyn DeviceHub>) -> Result<Prepared, LaunchError> {
    let machine = Machine::new(spec.memory_mib << 20)?;
    // The PV machine runs one vCPU.
    let (cmdline, added) = crate::boot_params::tune_cmdline(spec.cmdline, 1);
    if !added.is_empty() {
        tracing::info!(
            ?added,
            "kernel parameters added to the command line (see pv::boot_params)"
        );
    }
    let boot = builder::build(&machine, spec.kernel, spec.initrd, &cmdline)?;
    let fd = machine.create_vcpu(0, boot.l4_gpa)?;
    let cpuid = crate::cpuid::guest_cpuid(&machine.kvm).map_err(|err| MachineError::Ioctl {
        what: "report CPUID",
        err,
    })?;
    let tsc_khz = fd.get_tsc_khz().unwrap_or(1_000_000) as u64;
    let mut msrs = kvm_bindings::Msrs::from_entries(&[crate::machine::msr(MSR_TSC, 0)]).unwrap();
    let tsc0 = match fd.get_msrs(&mut msrs) {
        Ok(1) => msrs.as_slice()[0].data,
        _ => 0,
    };
    let clock = Clock::new(tsc0, tsc_khz);
    let dom = DomainShared::new(machine, clock, hub);
    {
        let mut ev = dom.events.lock().unwrap();
        ev.reserve_backend(boot.xenstore_evtchn);
        ev.reserve_backend(boot.console_evtchn);
    }
    let mut vcpu = Vcpu::new(fd, dom.clone(), cpuid, boot.l4_gpa);
    for f in &boot.pt_frames {
        vcpu.pt.frames.insert(*f);
    }
    vcpu.pt.l4.insert(boot.l4_gpa >> 12);
    vcpu.update_time();
    vcpu.boot(boot.entry, boot.stack_top, boot.start_info_va)
        .map_err(|err| MachineError::Ioctl {
            what: "read the initial vCPU state",
            err,
        })?;
    Ok(Prepared { dom, vcpu, boot })
}

impl Prepared {
    /// Run the domain to its end on this thread.
    pub fn run(mut self) -> (ShutdownReason, crate::vcpu::Stats) {
        let reason = self.vcpu.run();
        self.dom.request_shutdown(reason.clone());
        (reason, self.vcpu.stats)
    }
}
