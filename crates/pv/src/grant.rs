//! Grant tables v1: the guest's table of pages it lets other domains use,
//! and the checked backend-side access to those pages.
//!
//! The table's frames live in the hypervisor area (`PhysLayout::grant_frames_start`);
//! the guest learns them from `GNTTABOP_setup_table` and maps them. Every
//! entry is guest-controlled and the guest changes it concurrently, so each
//! access re-reads and checks the entry (type `GTF_permit_access`, the
//! grantee domain, read-only, reference and frame in range) and pins it the
//! way Xen does: it sets `GTF_reading` (and `GTF_writing` for write access)
//! with a compare-and-swap, so the guest's `gnttab_end_foreign_access`
//! sees the page busy and does not take it back, and clears the bits when
//! the last user of the entry is done.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};

use xen_abi::{GrantRef, GTF_PERMIT_ACCESS, GTF_READING, GTF_READONLY, GTF_TYPE_MASK, GTF_WRITING};

use crate::layout::{PhysLayout, PAGE_SIZE};
use crate::mem::GuestRam;

/// Entries per 4 KiB frame of a v1 table.
pub const ENTRIES_PER_FRAME: u32 = (PAGE_SIZE / 8) as u32;

/// What the backend wants to do with a granted page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read the page (the guest gave data: a disk write, a packet to send).
    Read,
    /// Write the page (the guest wants data: a disk read).
    Write,
}

/// Why a grant cannot be used. Each is the guest's fault (or a dead guest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error("grant reference {gref} is outside the grant table ({entries} entries set up)")]
    BadRef { gref: GrantRef, entries: u32 },
    #[error("grant {gref} is not a permit-access grant (flags {flags:#x})")]
    NotPermitted { gref: GrantRef, flags: u16 },
    #[error("grant {gref} is for domain {granted_to}, not domain {wanted}")]
    WrongDomain {
        gref: GrantRef,
        granted_to: u16,
        wanted: u16,
    },
    #[error("grant {gref} is read-only, write access refused")]
    ReadOnly { gref: GrantRef },
    #[error("grant {gref} names frame {frame:#x}, which is not guest RAM")]
    BadFrame { gref: GrantRef, frame: u64 },
    #[error("grant {gref}: bytes {offset}..{end} are outside the page")]
    BadRange {
        gref: GrantRef,
        offset: usize,
        end: usize,
    },
    #[error("grant {gref}: the entry keeps changing under us")]
    Busy { gref: GrantRef },
}

impl GrantError {
    /// The `GNTST_*` status Xen reports for this error.
    pub fn status(&self) -> i16 {
        match self {
            GrantError::BadRef { .. } => xen_abi::GNTST_BAD_GNTREF,
            GrantError::NotPermitted { .. }
            | GrantError::WrongDomain { .. }
            | GrantError::ReadOnly { .. } => xen_abi::GNTST_PERMISSION_DENIED,
            GrantError::BadFrame { .. } => xen_abi::GNTST_BAD_PAGE,
            GrantError::BadRange { .. } => xen_abi::GNTST_BAD_COPY_ARG,
            GrantError::Busy { .. } => xen_abi::GNTST_EAGAIN,
        }
    }
}

/// Active uses of one entry (Xen's `active_grant_entry` pin counts).
#[derive(Debug, Clone, Copy, Default)]
struct Pins {
    readers: u32,
    writers: u32,
}

/// One domain's v1 grant table, as seen by the hypervisor side.
pub struct GrantTable {
    /// Guest-physical address of entry 0.
    base_gpa: u64,
    /// Frames the table can grow to.
    max_frames: u32,
    /// Frames in use (entries beyond are invalid); grows with setup_table.
    nr_frames: AtomicU32,
    /// RAM frames: the only frames a grant may name.
    ram_pages: u64,
    /// The domain that owns this table (for its own GNTTABOP_copy).
    own_domid: AtomicU16,
    pins: Mutex<HashMap<GrantRef, Pins>>,
}

impl GrantTable {
    pub fn new(layout: &PhysLayout) -> GrantTable {
        GrantTable {
            base_gpa: layout.hv_gpa(layout.grant_frames_start),
            max_frames: layout.grant_frames as u32,
            // Xen starts every table with one frame (the toolstack's
            // reserved entries live there).
            nr_frames: AtomicU32::new(1),
            ram_pages: layout.ram_pages,
            own_domid: AtomicU16::new(xen_abi::DOMID_INVALID),
            pins: Mutex::new(HashMap::new()),
        }
    }

    pub fn max_frames(&self) -> u32 {
        self.max_frames
    }

    pub fn nr_frames(&self) -> u32 {
        self.nr_frames.load(Ordering::SeqCst)
    }

    /// `GNTTABOP_setup_table`: the table grows to `nr` frames (never shrinks).
    pub fn grow_to(&self, nr: u32) -> bool {
        if nr > self.max_frames {
            return false;
        }
        self.nr_frames.fetch_max(nr, Ordering::SeqCst);
        true
    }

    /// Guest-physical frame of table frame `i`.
    pub fn frame_gpa(&self, i: u32) -> u64 {
        self.base_gpa + u64::from(i) * PAGE_SIZE
    }

    /// Tell the table which domain id its owner has (for GNTTABOP_copy).
    pub fn set_own_domid(&self, domid: u16) {
        self.own_domid.store(domid, Ordering::SeqCst);
    }

    pub fn own_domid(&self) -> u16 {
        self.own_domid.load(Ordering::SeqCst)
    }

    /// The entry's first word (flags | domid << 16), as an atomic in guest memory.
    fn entry_word<'r>(
        &self,
        ram: &'r GuestRam,
        gref: GrantRef,
    ) -> Result<&'r AtomicU32, GrantError> {
        let entries = self.nr_frames() * ENTRIES_PER_FRAME;
        if gref >= entries {
            return Err(GrantError::BadRef { gref, entries });
        }
        let gpa = self.base_gpa + u64::from(gref) * 8;
        if gpa + 8 > ram.size() {
            return Err(GrantError::BadRef { gref, entries });
        }
        // SAFETY: inside guest memory (checked), 8-byte aligned (the area is
        // page aligned, entries are 8 bytes), and the mapping lives as long as
        // `ram`. The guest updates the same word with locked instructions,
        // so atomic access is the right one.
        Ok(unsafe { &*((ram.host_base() + gpa) as *const AtomicU32) })
    }

    fn entry_frame(&self, ram: &GuestRam, gref: GrantRef) -> u64 {
        let gpa = self.base_gpa + u64::from(gref) * 8 + 4;
        // In range: entry_word checked the whole entry.
        ram.read_obj::<u32>(gpa).map(u64::from).unwrap_or(u64::MAX)
    }

    /// Checks entry `gref` for use by domain `grantee` with `access`, pins
    /// it, and returns the page. The pin ends when the page is dropped.
    pub fn map<'a>(
        &'a self,
        ram: &'a GuestRam,
        grantee: u16,
        gref: GrantRef,
        access: Access,
    ) -> Result<GrantedPage<'a>, GrantError> {
        let word = self.entry_word(ram, gref)?;
        let pin_bits = match access {
            Access::Read => GTF_READING,
            Access::Write => GTF_READING | GTF_WRITING,
        };
        let mut pins = self.pins.lock().unwrap_or_else(PoisonError::into_inner);
        // Check and pin in one compare-and-swap, as Xen does: the guest may
        // revoke or rewrite the entry at any moment until the bits are set.
        let mut tries = 0;
        loop {
            let cur = word.load(Ordering::SeqCst);
            let flags = cur as u16;
            let domid = (cur >> 16) as u16;
            if flags & GTF_TYPE_MASK != GTF_PERMIT_ACCESS {
                return Err(GrantError::NotPermitted { gref, flags });
            }
            if domid != grantee {
                return Err(GrantError::WrongDomain {
                    gref,
                    granted_to: domid,
                    wanted: grantee,
                });
            }
            if access == Access::Write && flags & GTF_READONLY != 0 {
                return Err(GrantError::ReadOnly { gref });
            }
            let new = cur | u32::from(pin_bits);
            if word
                .compare_exchange(cur, new, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                break;
            }
            tries += 1;
            if tries > 64 {
                return Err(GrantError::Busy { gref });
            }
        }
        let p = pins.entry(gref).or_default();
        p.readers += 1;
        if access == Access::Write {
            p.writers += 1;
        }
        drop(pins);
        // The frame is read after pinning: the guest must not change a
        // pinned entry, and if it does we still only touch RAM.
        let frame = self.entry_frame(ram, gref);
        if frame >= self.ram_pages {
            self.unpin(ram, gref, access);
            return Err(GrantError::BadFrame { gref, frame });
        }
        Ok(GrantedPage {
            table: self,
            ram,
            gref,
            access,
            gpa: frame * PAGE_SIZE,
        })
    }

    fn unpin(&self, ram: &GuestRam, gref: GrantRef, access: Access) {
        let mut pins = self.pins.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(p) = pins.get_mut(&gref) else {
            return;
        };
        p.readers = p.readers.saturating_sub(1);
        if access == Access::Write {
            p.writers = p.writers.saturating_sub(1);
        }
        let mut clear = 0u16;
        if p.writers == 0 {
            clear |= GTF_WRITING;
        }
        if p.readers == 0 {
            clear |= GTF_READING;
            pins.remove(&gref);
        }
        if let Ok(word) = self.entry_word(ram, gref) {
            word.fetch_and(!u32::from(clear), Ordering::SeqCst);
        }
    }

    /// Ends a pin kept with [`GrantedPage::keep`].
    pub fn release(&self, ram: &GuestRam, gref: GrantRef, access: Access) {
        self.unpin(ram, gref, access);
    }

    /// Number of entries currently pinned (for tests and diagnostics).
    pub fn pinned(&self) -> usize {
        self.pins
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Copies `buf.len()` bytes from granted page `gref` at `offset`.
    pub fn copy_from(
        &self,
        ram: &GuestRam,
        grantee: u16,
        gref: GrantRef,
        offset: usize,
        buf: &mut [u8],
    ) -> Result<(), GrantError> {
        self.map(ram, grantee, gref, Access::Read)?
            .read(offset, buf)
    }

    /// Copies `buf` into granted page `gref` at `offset`.
    pub fn copy_to(
        &self,
        ram: &GuestRam,
        grantee: u16,
        gref: GrantRef,
        offset: usize,
        buf: &[u8],
    ) -> Result<(), GrantError> {
        self.map(ram, grantee, gref, Access::Write)?
            .write(offset, buf)
    }
}

/// A pinned granted page. Reads and writes are bounds-checked against the
/// page; dropping it ends the pin.
pub struct GrantedPage<'a> {
    table: &'a GrantTable,
    ram: &'a GuestRam,
    gref: GrantRef,
    access: Access,
    gpa: u64,
}

impl GrantedPage<'_> {
    /// Keeps the pin beyond this value (a ring page used for as long as a
    /// device is connected) and returns the page's guest-physical address.
    /// End it with [`GrantTable::release`].
    pub fn keep(self) -> u64 {
        let gpa = self.gpa;
        std::mem::forget(self);
        gpa
    }

    pub fn gref(&self) -> GrantRef {
        self.gref
    }

    /// Guest-physical address of the page.
    pub fn gpa(&self) -> u64 {
        self.gpa
    }

    fn range(&self, offset: usize, len: usize) -> Result<u64, GrantError> {
        match offset.checked_add(len) {
            Some(end) if end <= PAGE_SIZE as usize => Ok(self.gpa + offset as u64),
            _ => Err(GrantError::BadRange {
                gref: self.gref,
                offset,
                end: offset.saturating_add(len),
            }),
        }
    }

    /// Reads from the page.
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), GrantError> {
        let gpa = self.range(offset, buf.len())?;
        self.ram.read(gpa, buf).map_err(|_| GrantError::BadFrame {
            gref: self.gref,
            frame: gpa >> 12,
        })
    }

    /// Writes into the page; only with [`Access::Write`].
    pub fn write(&self, offset: usize, buf: &[u8]) -> Result<(), GrantError> {
        if self.access != Access::Write {
            return Err(GrantError::ReadOnly { gref: self.gref });
        }
        let gpa = self.range(offset, buf.len())?;
        self.ram.write(gpa, buf).map_err(|_| GrantError::BadFrame {
            gref: self.gref,
            frame: gpa >> 12,
        })
    }
}

impl Drop for GrantedPage<'_> {
    fn drop(&mut self) {
        self.table.unpin(self.ram, self.gref, self.access);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xen_abi::GTF_READONLY;

    const BACKEND: u16 = 0;

    fn setup() -> (GuestRam, PhysLayout, GrantTable) {
        let layout = PhysLayout::new(4 << 20);
        let ram = GuestRam::new(layout.total_bytes()).unwrap();
        let t = GrantTable::new(&layout);
        assert!(t.grow_to(1));
        (ram, layout, t)
    }

    fn grant(ram: &GuestRam, t: &GrantTable, gref: u32, flags: u16, domid: u16, frame: u32) {
        let gpa = t.frame_gpa(0) + u64::from(gref) * 8;
        ram.write_obj(gpa, flags).unwrap();
        ram.write_obj(gpa + 2, domid).unwrap();
        ram.write_obj(gpa + 4, frame).unwrap();
    }

    fn flags(ram: &GuestRam, t: &GrantTable, gref: u32) -> u16 {
        ram.read_obj(t.frame_gpa(0) + u64::from(gref) * 8).unwrap()
    }

    #[test]
    fn a_valid_grant_is_pinned_while_used() {
        let (ram, _, t) = setup();
        grant(&ram, &t, 8, GTF_PERMIT_ACCESS, BACKEND, 5);
        ram.write(5 * 4096 + 10, b"hello").unwrap();
        {
            let p = t.map(&ram, BACKEND, 8, Access::Write).unwrap();
            assert_eq!(p.gpa(), 5 * 4096);
            assert_eq!(
                flags(&ram, &t, 8),
                GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING
            );
            let mut b = [0; 5];
            p.read(10, &mut b).unwrap();
            assert_eq!(&b, b"hello");
            p.write(100, b"world").unwrap();
            // A second, read-only user keeps GTF_reading after the writer goes.
            let r = t.map(&ram, BACKEND, 8, Access::Read).unwrap();
            drop(p);
            assert_eq!(flags(&ram, &t, 8), GTF_PERMIT_ACCESS | GTF_READING);
            drop(r);
        }
        assert_eq!(flags(&ram, &t, 8), GTF_PERMIT_ACCESS, "pins cleared");
        assert_eq!(t.pinned(), 0);
        // A kept pin lasts until released.
        let gpa = t.map(&ram, BACKEND, 8, Access::Write).unwrap().keep();
        assert_eq!(gpa, 5 * 4096);
        assert_eq!(
            flags(&ram, &t, 8),
            GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING
        );
        t.release(&ram, 8, Access::Write);
        assert_eq!(flags(&ram, &t, 8), GTF_PERMIT_ACCESS);
        let mut b = [0; 5];
        ram.read(5 * 4096 + 100, &mut b).unwrap();
        assert_eq!(&b, b"world");
    }

    #[test]
    fn bad_grants_are_refused_without_pinning() {
        let (ram, layout, t) = setup();
        // Not a permit-access entry.
        grant(&ram, &t, 9, GTF_INVALID_FOR_TEST, BACKEND, 5);
        assert!(matches!(
            t.map(&ram, BACKEND, 9, Access::Read),
            Err(GrantError::NotPermitted { .. })
        ));
        // Granted to someone else.
        grant(&ram, &t, 10, GTF_PERMIT_ACCESS, 7, 5);
        let e = t.map(&ram, BACKEND, 10, Access::Read).err().unwrap();
        assert_eq!(e.status(), xen_abi::GNTST_PERMISSION_DENIED);
        // Read-only grant: reads fine, writes refused.
        grant(&ram, &t, 11, GTF_PERMIT_ACCESS | GTF_READONLY, BACKEND, 5);
        assert!(matches!(
            t.map(&ram, BACKEND, 11, Access::Write),
            Err(GrantError::ReadOnly { .. })
        ));
        let r = t.map(&ram, BACKEND, 11, Access::Read).unwrap();
        assert!(r.write(0, b"x").is_err(), "a read pin cannot write");
        drop(r);
        // A frame outside RAM (e.g. the hypervisor area): refused, unpinned.
        grant(
            &ram,
            &t,
            12,
            GTF_PERMIT_ACCESS,
            BACKEND,
            layout.hv_base_pfn as u32,
        );
        assert!(matches!(
            t.map(&ram, BACKEND, 12, Access::Read),
            Err(GrantError::BadFrame { .. })
        ));
        assert_eq!(flags(&ram, &t, 12), GTF_PERMIT_ACCESS);
        grant(&ram, &t, 13, GTF_PERMIT_ACCESS, BACKEND, u32::MAX);
        assert!(t.map(&ram, BACKEND, 13, Access::Read).is_err());
        // References outside the table set up so far, and huge ones.
        for gref in [ENTRIES_PER_FRAME, u32::MAX] {
            assert!(matches!(
                t.map(&ram, BACKEND, gref, Access::Read),
                Err(GrantError::BadRef { .. })
            ));
        }
        assert_eq!(t.pinned(), 0);
        // Page bounds on access.
        grant(&ram, &t, 14, GTF_PERMIT_ACCESS, BACKEND, 5);
        let p = t.map(&ram, BACKEND, 14, Access::Write).unwrap();
        let mut b = [0; 8];
        assert!(p.read(4090, &mut b).is_err());
        assert!(p.write(usize::MAX, &b).is_err());
        assert!(p.read(4088, &mut b).is_ok());
    }

    #[test]
    fn the_table_grows_only_to_its_maximum() {
        let (ram, _, t) = setup();
        assert!(!t.grow_to(t.max_frames() + 1));
        assert!(t.grow_to(2));
        assert!(t.grow_to(1), "never shrinks");
        assert_eq!(t.nr_frames(), 2);
        let gref = ENTRIES_PER_FRAME + 3;
        let gpa = t.frame_gpa(1) + 3 * 8;
        ram.write_obj(gpa, GTF_PERMIT_ACCESS).unwrap();
        ram.write_obj(gpa + 4, 6u32).unwrap();
        assert_eq!(
            t.map(&ram, BACKEND, gref, Access::Read).unwrap().gpa(),
            6 * 4096
        );
    }

    const GTF_INVALID_FOR_TEST: u16 = xen_abi::GTF_ACCEPT_TRANSFER;
}
