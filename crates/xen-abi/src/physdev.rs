//! Physical device operations (`xen/physdev.h`): `HYPERVISOR_physdev_op(cmd, arg)`.
//!
//! A PV domU without passthrough devices uses only `PHYSDEVOP_SET_IOPL`
//! (at boot) and, through the event-channel code, the PIRQ queries; the
//! rest are listed for completeness of what Linux 6.1 may issue.

use crate::xen::{DomId, GuestHandle, XenPfn};

/// `PHYSDEVOP_IRQ_UNMASK_NOTIFY`: old (compat) unmask notification.
pub const PHYSDEVOP_IRQ_UNMASK_NOTIFY: u32 = 4;
pub const PHYSDEVOP_IRQ_STATUS_QUERY: u32 = 5;
pub const PHYSDEVOP_SET_IOPL: u32 = 6;
pub const PHYSDEVOP_SET_IOBITMAP: u32 = 7;
pub const PHYSDEVOP_APIC_READ: u32 = 8;
pub const PHYSDEVOP_APIC_WRITE: u32 = 9;
pub const PHYSDEVOP_ALLOC_IRQ_VECTOR: u32 = 10;
pub const PHYSDEVOP_FREE_IRQ_VECTOR: u32 = 11;
pub const PHYSDEVOP_EOI: u32 = 12;
pub const PHYSDEVOP_MAP_PIRQ: u32 = 13;
pub const PHYSDEVOP_UNMAP_PIRQ: u32 = 14;
pub const PHYSDEVOP_MANAGE_PCI_ADD: u32 = 15;
pub const PHYSDEVOP_MANAGE_PCI_REMOVE: u32 = 16;
pub const PHYSDEVOP_PIRQ_EOI_GMFN_V1: u32 = 17;
pub const PHYSDEVOP_RESTORE_MSI: u32 = 19;
pub const PHYSDEVOP_MANAGE_PCI_ADD_EXT: u32 = 20;
pub const PHYSDEVOP_SETUP_GSI: u32 = 21;
pub const PHYSDEVOP_GET_FREE_PIRQ: u32 = 23;
pub const PHYSDEVOP_PCI_MMCFG_RESERVED: u32 = 24;
pub const PHYSDEVOP_PCI_DEVICE_ADD: u32 = 25;
pub const PHYSDEVOP_PCI_DEVICE_REMOVE: u32 = 26;
pub const PHYSDEVOP_RESTORE_MSI_EXT: u32 = 27;
pub const PHYSDEVOP_PIRQ_EOI_GMFN_V2: u32 = 28;
pub const PHYSDEVOP_DBGP_OP: u32 = 29;
pub const PHYSDEVOP_PREPARE_MSIX: u32 = 30;
pub const PHYSDEVOP_RELEASE_MSIX: u32 = 31;
/// The current meaning of `PHYSDEVOP_pirq_eoi_gmfn` (interface >= 0x00040200).
pub const PHYSDEVOP_PIRQ_EOI_GMFN: u32 = PHYSDEVOP_PIRQ_EOI_GMFN_V2;

/// `physdev_irq_status_query.flags`: the IRQ needs `PHYSDEVOP_eoi`.
pub const XENIRQSTAT_NEEDS_EOI: u32 = 1 << 0;
/// The IRQ is shared with another domain.
pub const XENIRQSTAT_SHARED: u32 = 1 << 1;

pub const MAP_PIRQ_TYPE_MSI: i32 = 0;
pub const MAP_PIRQ_TYPE_GSI: i32 = 1;
pub const MAP_PIRQ_TYPE_UNKNOWN: i32 = 2;
pub const MAP_PIRQ_TYPE_MSI_SEG: i32 = 3;
pub const MAP_PIRQ_TYPE_MULTI_MSI: i32 = 4;

pub const XEN_PCI_MMCFG_RESERVED: u32 = 1;
pub const XEN_PCI_DEV_EXTFN: u32 = 1;
pub const XEN_PCI_DEV_VIRTFN: u32 = 2;
pub const XEN_PCI_DEV_PXM: u32 = 4;

pub const PHYSDEVOP_DBGP_RESET_PREPARE: u8 = 1;
pub const PHYSDEVOP_DBGP_RESET_DONE: u8 = 2;
pub const PHYSDEVOP_DBGP_BUS_UNKNOWN: u8 = 0;
pub const PHYSDEVOP_DBGP_BUS_PCI: u8 = 1;

pod!(
    /// `struct physdev_eoi`.
    PhysdevEoi, 4, { irq: u32 }
);

pod!(
    /// `struct physdev_pirq_eoi_gmfn`.
    PhysdevPirqEoiGmfn, 8, { gmfn: XenPfn }
);

pod!(
    /// `struct physdev_irq_status_query`.
    PhysdevIrqStatusQuery, 8, {
        irq: u32,
        /// Output: `XENIRQSTAT_*`.
        flags: u32,
    }
);

pod!(
    /// `struct physdev_set_iopl`.
    PhysdevSetIopl, 4, {
        /// 0..=3: the I/O privilege level the guest kernel gets.
        iopl: u32,
    }
);

pod!(
    /// `struct physdev_set_iobitmap`.
    PhysdevSetIobitmap, 16, {
        bitmap: GuestHandle,
        nr_ports: u32,
        _pad0: u32,
    }
);

pod!(
    /// `struct physdev_apic`.
    PhysdevApic, 16, {
        apic_physbase: u64,
        reg: u32,
        value: u32,
    }
);

pod!(
    /// `struct physdev_irq`.
    PhysdevIrq, 8, {
        irq: u32,
        vector: u32,
    }
);

pod!(
    /// `struct physdev_map_pirq`.
    PhysdevMapPirq, 40, {
        domid: DomId,
        _pad0: u16,
        /// `MAP_PIRQ_TYPE_*` (`type` in C).
        type_: i32,
        index: i32,
        pirq: i32,
        bus: i32,
        devfn: i32,
        entry_nr: i32,
        _pad1: u32,
        table_base: u64,
    }
);

pod!(
    /// `struct physdev_unmap_pirq`.
    PhysdevUnmapPirq, 8, {
        domid: DomId,
        _pad0: u16,
        pirq: i32,
    }
);

pod!(
    /// `struct physdev_manage_pci` (also `struct physdev_restore_msi`).
    PhysdevManagePci, 2, {
        bus: u8,
        devfn: u8,
    }
);

pod!(
    /// The `physfn` part of [`PhysdevManagePciExt`] and [`PhysdevPciDeviceAdd`].
    PhysdevPhysfn, 2, {
        bus: u8,
        devfn: u8,
    }
);

pod!(
    /// `struct physdev_manage_pci_ext`.
    PhysdevManagePciExt, 16, {
        bus: u8,
        devfn: u8,
        _pad0: u16,
        is_extfn: u32,
        is_virtfn: u32,
        physfn: PhysdevPhysfn,
        _pad1: u16,
    }
);

pod!(
    /// `struct physdev_setup_gsi`.
    PhysdevSetupGsi, 8, {
        gsi: i32,
        triggering: u8,
        polarity: u8,
        _pad0: u16,
    }
);

pod!(
    /// `struct physdev_get_free_pirq`.
    PhysdevGetFreePirq, 8, {
        /// `MAP_PIRQ_TYPE_*` (`type` in C).
        type_: i32,
        /// Output.
        pirq: u32,
    }
);

pod!(
    /// `struct physdev_pci_mmcfg_reserved`.
    PhysdevPciMmcfgReserved, 16, {
        address: u64,
        segment: u16,
        start_bus: u8,
        end_bus: u8,
        flags: u32,
    }
);

pod!(
    /// `struct physdev_pci_device_add` without its trailing flexible
    /// `optarr[]` (one `u32` proximity domain follows with `XEN_PCI_DEV_PXM`).
    PhysdevPciDeviceAdd, 12, {
        seg: u16,
        bus: u8,
        devfn: u8,
        /// `XEN_PCI_DEV_*`.
        flags: u32,
        physfn: PhysdevPhysfn,
        _pad0: u16,
    }
);

pod!(
    /// `struct physdev_pci_device`.
    PhysdevPciDevice, 4, {
        seg: u16,
        bus: u8,
        devfn: u8,
    }
);

pod!(
    /// `struct physdev_dbgp_op`.
    PhysdevDbgpOp, 6, {
        /// `PHYSDEVOP_DBGP_RESET_*`.
        op: u8,
        /// `PHYSDEVOP_DBGP_BUS_*`.
        bus: u8,
        /// The `u.pci` union member.
        pci: PhysdevPciDevice,
    }
);
