//! Guest-physical memory as the VMM sees it, with bounds-checked access.
//!
//! Every address here is guest-controlled, so every access returns a
//! `Result` instead of panicking. The VMM must not write to frames the guest
//! uses as page tables through this path (the host's shadow MMU would not
//! notice); those writes go through the shim (see `ptw`).

use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

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
