//! `HYPERVISOR_grant_table_op` from the guest: setup_table, query_size,
//! set_version/get_version (v1 only) and copy. The table itself and the
//! backend-side access are in `grant.rs`.

use xen_abi::*;

use crate::grant::{Access, GrantError};
use crate::layout::PAGE_SIZE;
use crate::vcpu::Vcpu;

const EFAULT: i64 = -XEN_EFAULT;
const EINVAL: i64 = -XEN_EINVAL;

/// Upper bound on operations handled in one call.
const MAX_OPS: u64 = 1 << 12;

impl Vcpu {
    pub fn grant_table_op(&mut self, cmd: u32, arg: u64, count: u64) -> Result<i64, i64> {
        match cmd {
            GNTTABOP_QUERY_SIZE => {
                let mut q: GntTabQuerySize = self.read_guest_obj(arg).map_err(|_| EFAULT)?;
                if self.is_self(q.dom) {
                    q.nr_frames = self.dom.grants.nr_frames();
                    q.max_nr_frames = self.dom.grants.max_frames();
                    q.status = GNTST_OKAY;
                } else {
                    q.status = GNTST_BAD_DOMAIN;
                }
                self.write_guest_obj(arg, &q).map_err(|_| EFAULT)?;
                Ok(0)
            }
            GNTTABOP_SETUP_TABLE => {
                if count != 1 {
                    return Err(EINVAL);
                }
                let mut s: GntTabSetupTable = self.read_guest_obj(arg).map_err(|_| EFAULT)?;
                s.status = if !self.is_self(s.dom) {
                    GNTST_BAD_DOMAIN
                } else if !self.dom.grants.grow_to(s.nr_frames) {
                    GNTST_GENERAL_ERROR
                } else {
                    for i in 0..s.nr_frames {
                        let mfn = self.dom.grants.frame_gpa(i) / PAGE_SIZE;
                        self.write_guest_obj(s.frame_list.wrapping_add(u64::from(i) * 8), &mfn)
                            .map_err(|_| EFAULT)?;
                    }
                    GNTST_OKAY
                };
                self.write_guest_obj(arg, &s).map_err(|_| EFAULT)?;
                Ok(0)
            }
            GNTTABOP_SET_VERSION => {
                // Only v1: answer with the version in use, as Xen does when it
                // refuses v2; Linux then uses the v1 layout.
                let v: u32 = self.read_guest_obj(arg).map_err(|_| EFAULT)?;
                self.write_guest_obj(arg, &1u32).map_err(|_| EFAULT)?;
                if v <= 1 {
                    Ok(0)
                } else {
                    Err(EINVAL)
                }
            }
            GNTTABOP_GET_VERSION => {
                let mut g: GntTabGetVersion = self.read_guest_obj(arg).map_err(|_| EFAULT)?;
                if !self.is_self(g.dom) {
                    return Err(-XEN_ESRCH);
                }
                g.version = 1;
                self.write_guest_obj(arg, &g).map_err(|_| EFAULT)?;
                Ok(0)
            }
            GNTTABOP_COPY => {
                if count > MAX_OPS {
                    return Err(EINVAL);
                }
                let size = std::mem::size_of::<GntTabCopy>() as u64;
                for i in 0..count {
                    let va = arg.wrapping_add(i * size); // wraps, then faults
                    let mut op: GntTabCopy = self.read_guest_obj(va).map_err(|_| EFAULT)?;
                    op.status = match self.copy_one(&op) {
                        Ok(()) => GNTST_OKAY,
                        Err(st) => st,
                    };
                    self.write_guest_obj(va, &op).map_err(|_| EFAULT)?;
                }
                Ok(0)
            }
            _ => Err(-XEN_ENOSYS),
        }
    }

    fn is_self(&self, dom: DomId) -> bool {
        dom == DOMID_SELF || dom == self.dom.grants.own_domid()
    }

    /// One GNTTABOP_copy operation. Only this domain's memory exists here:
    /// a frame side names this domain, a grant side this domain's own table
    /// (granted to itself); anything else is an unknown domain.
    fn copy_one(&self, op: &GntTabCopy) -> Result<(), i16> {
        let len = usize::from(op.len);
        for side in [&op.source, &op.dest] {
            if usize::from(side.offset) + len > PAGE_SIZE as usize {
                return Err(GNTST_BAD_COPY_ARG);
            }
            if !self.is_self(side.domid) {
                return Err(GNTST_BAD_DOMAIN);
            }
        }
        let mut buf = vec![0u8; len];
        let ram = self.ram();
        let me = self.dom.grants.own_domid();
        let grant_err = |e: GrantError| e.status();
        if op.flags & GNTCOPY_SOURCE_GREF != 0 {
            self.dom
                .grants
                .copy_from(
                    ram,
                    me,
                    op.source.u as u32,
                    op.source.offset.into(),
                    &mut buf,
                )
                .map_err(grant_err)?;
        } else {
            let gpa = self.copy_frame_gpa(op.source.u)? + u64::from(op.source.offset);
            ram.read(gpa, &mut buf).map_err(|_| GNTST_BAD_PAGE)?;
        }
        if op.flags & GNTCOPY_DEST_GREF != 0 {
            let page = self
                .dom
                .grants
                .map(ram, me, op.dest.u as u32, Access::Write)
                .map_err(grant_err)?;
            page.write(op.dest.offset.into(), &buf).map_err(grant_err)?;
        } else {
            let gpa = self.copy_frame_gpa(op.dest.u)? + u64::from(op.dest.offset);
            ram.write(gpa, &buf).map_err(|_| GNTST_BAD_PAGE)?;
        }
        Ok(())
    }

    fn copy_frame_gpa(&self, gmfn: u64) -> Result<u64, i16> {
        if gmfn >= self.dom.machine.layout.ram_pages {
            return Err(GNTST_BAD_PAGE);
        }
        Ok(gmfn * PAGE_SIZE)
    }
}
