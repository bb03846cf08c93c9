//! Guest-physical memory as the VMM sees it, with bounds-checked access.
//!
//! Every address here is guest-controlled, so every access returns a
//! `Result` instead of panicking. The VMM must not write to frames the guest
//! uses as page tables through this path (the host's shadow MMU would not
//! notice); those writes go through the shim (see `ptw`).

use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

const PAGE: u64 = crate::layout::PAGE_SIZE;
static ZERO_PAGE: [u8; PAGE as usize] = [0; PAGE as usize];

#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
#[error("guest-physical address {gpa:#x} (+{len}) is outside guest memory")]
pub struct BadGpa {
    pub gpa: u64,
    pub len: usize,
}

pub struct GuestRam {
    mem: GuestMemoryMmap,
    size: u64,
}

impl GuestRam {
    pub fn new(size: u64) -> std::io::Result<GuestRam> {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), size as usize)])
            .map_err(|e| std::io::Error::other(format!("cannot allocate guest memory: {e}")))?;
        Ok(GuestRam { mem, size })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Host address of guest-physical 0 (for KVM's memory slot).
    pub fn host_base(&self) -> u64 {
        self.mem
            .get_host_address(GuestAddress(0))
            .expect("guest memory starts at 0") as u64
    }

    fn check(&self, gpa: u64, len: usize) -> Result<(), BadGpa> {
        match gpa.checked_add(len as u64) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(BadGpa { gpa, len }),
        }
    }

    pub fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), BadGpa> {
        self.check(gpa, buf.len())?;
        self.mem
            .read_slice(buf, GuestAddress(gpa))
            .map_err(|_| BadGpa {
                gpa,
                len: buf.len(),
            })
    }

    pub fn write(&self, gpa: u64, buf: &[u8]) -> Result<(), BadGpa> {
        self.check(gpa, buf.len())?;
        self.mem
            .write_slice(buf, GuestAddress(gpa))
            .map_err(|_| BadGpa {
                gpa,
                len: buf.len(),
            })
    }

    /// [`GuestRam::write`] into memory that is still all zero (a new
    /// domain's RAM): page-sized pieces of `buf` that are all zero are left
    /// out, so their host pages are never touched. A Debian kernel image is
    /// ~27 of its 57 MiB zero pages (.bss, brk, padding): writing them cost
    /// a host page fault and a page of zeroing each, for every boot.
    pub fn write_to_zeroed(&self, gpa: u64, buf: &[u8]) -> Result<(), BadGpa> {
        self.check(gpa, buf.len())?;
        let mut off = 0usize;
        while off < buf.len() {
            // Up to the next page boundary of the destination.
            let room = (PAGE - ((gpa + off as u64) % PAGE)) as usize;
            let piece = &buf[off..buf.len().min(off + room)];
            // Compared as a slice (memcmp, vectorised), not byte by byte:
            // a boot checks 57 MiB.
            if piece != &ZERO_PAGE[..piece.len()] {
                self.write(gpa + off as u64, piece)?;
            }
            off += piece.len();
        }
        Ok(())
    }

    pub fn read_obj<T: ByteValued>(&self, gpa: u64) -> Result<T, BadGpa> {
        let len = std::mem::size_of::<T>();
        self.check(gpa, len)?;
        self.mem
            .read_obj(GuestAddress(gpa))
            .map_err(|_| BadGpa { gpa, len })
    }

    pub fn write_obj<T: ByteValued>(&self, gpa: u64, val: T) -> Result<(), BadGpa> {
        let len = std::mem::size_of::<T>();
        self.check(gpa, len)?;
        self.mem
            .write_obj(val, GuestAddress(gpa))
            .map_err(|_| BadGpa { gpa, len })
    }

    pub fn read_u64(&self, gpa: u64) -> Result<u64, BadGpa> {
        self.read_obj::<u64>(gpa)
    }

    pub fn write_u64(&self, gpa: u64, v: u64) -> Result<(), BadGpa> {
        self.write_obj(gpa, v)
    }

    pub fn read_u8(&self, gpa: u64) -> Result<u8, BadGpa> {
        self.read_obj::<u8>(gpa)
    }

    pub fn write_u8(&self, gpa: u64, v: u8) -> Result<(), BadGpa> {
        self.write_obj(gpa, v)
    }

    pub fn zero(&self, gpa: u64, len: usize) -> Result<(), BadGpa> {
        self.write(gpa, &vec![0u8; len])
    }

    pub fn inner(&self) -> &GuestMemoryMmap {
        &self.mem
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Zero pages are skipped, everything else lands where `write` would
    /// put it, also across unaligned starts and page boundaries; the zero
    /// pages stay untouched (not resident).
    #[test]
    fn writing_to_zeroed_memory_skips_zero_pages_only() {
        let ram = GuestRam::new(1 << 20).unwrap();
        let mut buf = vec![0u8; 5 * 4096];
        buf[10] = 1; // first piece (gpa 0x800..0x1000)
        buf[4096 + 3000] = 2; // third piece
        buf[5 * 4096 - 1] = 3; // last piece
        ram.write_to_zeroed(0x800, &buf).unwrap();
        // Destination pages 1, 3 and 4 got only zeros: never touched.
        let mut vec = vec![0u8; 8];
        // SAFETY: mincore on the RAM mapping this GuestRam owns.
        let r = unsafe {
            libc::mincore(
                ram.host_base() as *mut libc::c_void,
                8 * 4096,
                vec.as_mut_ptr(),
            )
        };
        assert_eq!(r, 0);
        assert_eq!(
            vec[..6].iter().map(|v| v & 1).collect::<Vec<_>>(),
            [1, 0, 1, 0, 0, 1]
        );
        let mut back = vec![0u8; buf.len()];
        ram.read(0x800, &mut back).unwrap();
        assert_eq!(back, buf);
        assert!(ram.write_to_zeroed((1 << 20) - 8, &[1u8; 16]).is_err());
    }
}
