//! The `event_channel_op` hypercall.

use xen_abi::*;

use crate::events::Port;
use crate::vcpu::Vcpu;

const EFAULT: i64 = -XEN_EFAULT;
const EINVAL: i64 = -XEN_EINVAL;

impl Vcpu {
    pub fn event_channel_op(&mut self, cmd: u32, arg: u64) -> Result<i64, i64> {
        let rd = |me: &Self, off: u64| {
            me.read_guest_obj::<u32>(arg.wrapping_add(off))
                .map_err(|_| EFAULT)
        };
        let wr = |me: &Self, off: u64, v: u32| {
            me.write_guest_obj(arg.wrapping_add(off), &v)
                .map_err(|_| EFAULT)
        };
        match cmd {
            EVTCHNOP_BIND_VIRQ => {
                // { u32 virq; u32 vcpu; u32 port (out) }
                let virq = rd(self, 0)?;
                let vcpu = rd(self, 4)?;
                if virq >= NR_VIRQS || vcpu != self.id {
                    return Err(EINVAL);
                }
                let mut ev = self.dom.events.lock().unwrap();
                if ev.virq_port(virq).is_some() {
                    return Err(-XEN_EEXIST);
                }
                let port = ev.alloc(Port::Virq { virq, vcpu }).ok_or(-XEN_ENOSPC)?;
                drop(ev);
                wr(self, 8, port)?;
                Ok(0)
            }
            EVTCHNOP_BIND_IPI => {
                // { u32 vcpu; u32 port (out) }
                let vcpu = rd(self, 0)?;
                if vcpu != self.id {
                    return Err(-XEN_ENOENT);
                }
                let port = self
                    .dom
                    .events
                    .lock()
                    .unwrap()
                    .alloc(Port::Ipi { vcpu })
                    .ok_or(-XEN_ENOSPC)?;
                wr(self, 4, port)?;
                Ok(0)
            }
            EVTCHNOP_ALLOC_UNBOUND => {
                // { u16 dom; u16 remote_dom; u32 port (out) }
                let remote = self
                    .read_guest_obj::<u16>(arg.wrapping_add(2))
                    .map_err(|_| EFAULT)?;
                let port = self
                    .dom
                    .events
                    .lock()
                    .unwrap()
                    .alloc(Port::Unbound { remote })
                    .ok_or(-XEN_ENOSPC)?;
                wr(self, 4, port)?;
                Ok(0)
            }
            EVTCHNOP_SEND => {
                let port = rd(self, 0)?;
                let what = self.dom.events.lock().unwrap().get(port);
                match what {
                    Some(Port::Backend) => {
                        self.dom.hub.guest_notify(&self.dom, port);
                        Ok(0)
                    }
                    Some(Port::Ipi { .. }) => {
                        self.dom.raise(port);
                        Ok(0)
                    }
                    Some(Port::Unbound { .. }) | Some(Port::Virq { .. }) => Ok(0),
                    _ => Err(EINVAL),
                }
            }
            EVTCHNOP_CLOSE => {
                let port = rd(self, 0)?;
                if self.dom.events.lock().unwrap().close(port) {
                    self.dom.bits().clear_pending(port);
                    Ok(0)
                } else {
                    Err(EINVAL)
                }
            }
            EVTCHNOP_UNMASK => {
                let port = rd(self, 0)?;
                if port >= crate::events::MAX_PORTS {
                    return Err(EINVAL);
                }
                self.dom.bits().unmask(port, self.dom.vcpu_info());
                Ok(0)
            }
            EVTCHNOP_BIND_VCPU => {
                let vcpu = rd(self, 4)?;
                if vcpu == self.id {
                    Ok(0)
                } else {
                    Err(-XEN_ENOENT)
                }
            }
            EVTCHNOP_STATUS => {
                // { u16 dom; u32 port; u32 status (out); u32 vcpu (out); union }
                let port = rd(self, 4)?;
                if port >= crate::events::MAX_PORTS {
                    return Err(EINVAL); // Xen: !port_is_valid
                }
                let st = match self.dom.events.lock().unwrap().get(port) {
                    None | Some(Port::Free) => EVTCHNSTAT_CLOSED,
                    Some(Port::Unbound { .. }) => EVTCHNSTAT_UNBOUND,
                    Some(Port::Backend) => EVTCHNSTAT_INTERDOMAIN,
                    Some(Port::Virq { .. }) => EVTCHNSTAT_VIRQ,
                    Some(Port::Ipi { .. }) => EVTCHNSTAT_IPI,
                };
                wr(self, 8, st)?;
                wr(self, 12, 0)?;
                Ok(0)
            }
            // FIFO event channels are not offered: Linux falls back to 2-level.
            EVTCHNOP_INIT_CONTROL | EVTCHNOP_EXPAND_ARRAY | EVTCHNOP_SET_PRIORITY => {
                Err(-XEN_ENOSYS)
            }
            _ => Err(-XEN_ENOSYS),
        }
    }
}
