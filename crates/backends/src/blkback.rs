//! The block backend's request engine: takes `blkif` requests off the ring,
//! moves data between granted pages and a [`disk::Disk`], and answers.
//!
//! Requests: read, write, write-barrier, flush-cache, discard, and indirect
//! reads/writes (segment lists in granted pages). Every field is
//! guest-controlled: a bad segment, grant, sector range or operation gets an
//! error response (and a log line), never a panic; only corrupt ring indices
//! break the device, since no response can be placed safely then.
//!
//! Requests are done synchronously and in order, so a barrier or flush
//! covers every write answered before it, as `blkif.h` requires.

use disk::Disk;
use vm_memory::ByteValued;
use xen_abi::io::blkif::*;
use xen_abi::GrantRef;
use xenstore::ring::SharedPage;

use crate::io_ring::{BackRing, RingIndexError};

/// Segments per indirect request we accept (Linux's blkback offers 256).
pub const MAX_INDIRECT_SEGMENTS: usize = 256;
const SECTOR: u64 = BLKIF_SECTOR_SIZE;
const PAGE: usize = 4096;

/// Checked access to pages the frontend granted (the hypervisor side
/// implements it with its grant table; tests with a page array).
pub trait GrantedPages {
    /// Copies bytes out of the page granted under `gref`.
    fn read_granted(&self, gref: GrantRef, offset: usize, buf: &mut [u8]) -> Result<(), String>;
    /// Copies bytes into the page granted (writable) under `gref`.
    fn write_granted(&self, gref: GrantRef, offset: usize, data: &[u8]) -> Result<(), String>;
}

/// Counters, for logs and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BlkStats {
    pub reads: u64,
    pub writes: u64,
    pub flushes: u64,
    pub discards: u64,
    pub errors: u64,
    pub sectors_read: u64,
    pub sectors_written: u64,
    /// Requests answered.
    pub requests: u64,
    /// Times the ring was served (notifications).
    pub services: u64,
    /// Time spent serving, in microseconds.
    pub busy_us: u64,
}

/// One segment: part of a granted page, `first..=last` sectors of it.
#[derive(Debug, Clone, Copy)]
struct Seg {
    gref: GrantRef,
    offset: usize,
    len: usize,
}

/// A request that failed; the guest gets `status`, the log `why`.
struct Fail {
    status: i16,
    why: String,
}

fn fail(why: impl Into<String>) -> Fail {
    Fail {
        status: BLKIF_RSP_ERROR,
        why: why.into(),
    }
}

/// The engine of one connected vbd.
pub struct Blkback<P> {
    ring: BackRing<P>,
    disk: Box<dyn Disk>,
    /// Disk size in sectors (fixed while connected).
    sectors: u64,
    read_only: bool,
    buf: Vec<u8>,
    stats: BlkStats,
    name: String,
}

impl<P: SharedPage> Blkback<P> {
    /// Serves the ring on `page` for `disk`; `name` prefixes log lines.
    /// `read_only` also refuses writes to a writable image (`access=ro`).
    pub fn new(page: P, disk: Box<dyn Disk>, read_only: bool, name: String) -> Blkback<P> {
        let sectors = disk.size() / SECTOR;
        let read_only = read_only || disk.read_only();
        Blkback {
            ring: BackRing::attach(page, BLKIF_RING_ENTRY_SIZE),
            disk,
            sectors,
            read_only,
            buf: Vec::new(),
            stats: BlkStats::default(),
            name,
        }
    }

    pub fn stats(&self) -> BlkStats {
        self.stats
    }

    /// Makes the disk's writes durable.
    pub fn flush_disk(&mut self) -> Result<(), String> {
        self.disk.flush().map_err(|e| e.to_string())
    }

    /// Gives the disk back (on disconnect), flushed.
    pub fn into_disk(mut self) -> Box<dyn Disk> {
        if let Err(e) = self.disk.flush() {
            tracing::warn!("{}: flush on disconnect failed: {e}", self.name);
        }
        self.disk
    }

    /// Handles every pending request; returns whether the frontend should be
    /// notified. An error means the ring is corrupt: stop serving it.
    pub fn service(&mut self, grants: &dyn GrantedPages) -> Result<bool, RingIndexError> {
        let started = std::time::Instant::now();
        self.stats.services += 1;
        let mut notify = false;
        let mut entry = [0u8; BLKIF_RING_ENTRY_SIZE];
        let result = loop {
            while self.ring.next_request(&mut entry)? {
                let rsp = self.handle(&entry, grants);
                self.ring.push_response(rsp.as_slice());
                self.stats.requests += 1;
            }
            notify |= self.ring.publish_responses();
            if !self.ring.final_check_for_requests()? {
                break Ok(notify);
            }
        };
        self.stats.busy_us += started.elapsed().as_micros() as u64;
        result
    }

    fn handle(
        &mut self,
        entry: &[u8; BLKIF_RING_ENTRY_SIZE],
        grants: &dyn GrantedPages,
    ) -> BlkifResponse {
        let req = BlkifRequest::from_slice(entry).copied().unwrap_or_default();
        let (op, result) = match req.operation {
            BLKIF_OP_READ | BLKIF_OP_WRITE => (req.operation, self.rw(&req, grants)),
            BLKIF_OP_FLUSH_DISKCACHE | BLKIF_OP_WRITE_BARRIER => {
                (req.operation, self.flush_then_write(&req, grants))
            }
            BLKIF_OP_DISCARD => {
                let d = BlkifRequestDiscard::from_slice(&entry[..32])
                    .copied()
                    .unwrap_or_default();
                (req.operation, self.discard(&d))
            }
            BLKIF_OP_INDIRECT => {
                let ind = BlkifRequestIndirect::from_slice(&entry[..64])
                    .copied()
                    .unwrap_or_default();
                (ind.indirect_op, self.indirect(&ind, grants))
            }
            other => (
                other,
                Err(Fail {
                    status: BLKIF_RSP_EOPNOTSUPP,
                    why: format!("unsupported operation {other}"),
                }),
            ),
        };
        let status = match result {
            Ok(()) => BLKIF_RSP_OKAY,
            Err(f) => {
                self.stats.errors += 1;
                tracing::warn!("{}: request {:#x} (op {op}): {}", self.name, req.id, f.why);
                f.status
            }
        };
        BlkifResponse {
            id: req.id,
            operation: op,
            status,
            ..Default::default()
        }
    }

    /// Checks a direct request's segments.
    fn direct_segments(req: &BlkifRequest) -> Result<Vec<Seg>, Fail> {
        let n = usize::from(req.nr_segments);
        if n == 0 || n > BLKIF_MAX_SEGMENTS_PER_REQUEST {
            return Err(fail(format!("{n} segments (1..=11 allowed)")));
        }
        req.seg[..n].iter().map(seg).collect()
    }

    fn rw(&mut self, req: &BlkifRequest, grants: &dyn GrantedPages) -> Result<(), Fail> {
        let segs = Self::direct_segments(req)?;
        self.transfer(
            req.operation == BLKIF_OP_WRITE,
            req.sector_number,
            &segs,
            grants,
        )
    }

    /// Flush-cache and barrier: everything answered before is made durable;
    /// data in the request (rare) is written, then made durable too.
    fn flush_then_write(
        &mut self,
        req: &BlkifRequest,
        grants: &dyn GrantedPages,
    ) -> Result<(), Fail> {
        if self.read_only {
            // Nothing can be dirty; a flush of a read-only disk succeeds.
            return if req.nr_segments == 0 {
                Ok(())
            } else {
                Err(fail("write to a read-only disk"))
            };
        }
        self.flush()?;
        if req.nr_segments > 0 {
            let segs = Self::direct_segments(req)?;
            self.transfer(true, req.sector_number, &segs, grants)?;
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Fail> {
        self.stats.flushes += 1;
        self.disk.flush().map_err(|e| fail(e.to_string()))
    }

    fn discard(&mut self, d: &BlkifRequestDiscard) -> Result<(), Fail> {
        if self.read_only {
            return Err(fail("discard on a read-only disk"));
        }
        self.check_range(d.sector_number, d.nr_sectors)?;
        self.stats.discards += 1;
        self.disk
            .discard(d.sector_number * SECTOR, d.nr_sectors * SECTOR)
            .map_err(|e| fail(e.to_string()))
    }

    fn indirect(
        &mut self,
        ind: &BlkifRequestIndirect,
        grants: &dyn GrantedPages,
    ) -> Result<(), Fail> {
        let write = match ind.indirect_op {
            BLKIF_OP_READ => false,
            BLKIF_OP_WRITE => true,
            op => return Err(fail(format!("indirect operation {op} (only read/write)"))),
        };
        let n = usize::from(ind.nr_segments);
        if n == 0 || n > MAX_INDIRECT_SEGMENTS {
            return Err(fail(format!(
                "{n} indirect segments (1..={MAX_INDIRECT_SEGMENTS} allowed)"
            )));
        }
        let pages = n.div_ceil(BLKIF_SEGS_PER_INDIRECT_FRAME);
        let mut descs = vec![BlkifRequestSegment::default(); n];
        for (p, chunk) in descs
            .chunks_mut(BLKIF_SEGS_PER_INDIRECT_FRAME)
            .enumerate()
            .take(pages)
        {
            let gref = ind.indirect_grefs[p];
            let mut raw = vec![0u8; chunk.len() * 8];
            grants
                .read_granted(gref, 0, &mut raw)
                .map_err(|e| fail(format!("indirect page {p}: {e}")))?;
            for (d, bytes) in chunk.iter_mut().zip(raw.chunks_exact(8)) {
                *d = BlkifRequestSegment::from_slice(bytes)
                    .copied()
                    .unwrap_or_default();
            }
        }
        let segs = descs.iter().map(seg).collect::<Result<Vec<_>, _>>()?;
        self.transfer(write, ind.sector_number, &segs, grants)
    }

    fn check_range(&self, start: u64, count: u64) -> Result<(), Fail> {
        match start.checked_add(count) {
            Some(end) if end <= self.sectors => Ok(()),
            _ => Err(fail(format!(
                "sectors {start}+{count} outside the disk ({} sectors)",
                self.sectors
            ))),
        }
    }

    /// Moves the segments' data to or from the disk starting at `sector`.
    /// Segments are consecutive on disk; one disk access covers them all.
    fn transfer(
        &mut self,
        write: bool,
        sector: u64,
        segs: &[Seg],
        grants: &dyn GrantedPages,
    ) -> Result<(), Fail> {
        if write && self.read_only {
            return Err(fail("write to a read-only disk"));
        }
        let bytes: usize = segs.iter().map(|s| s.len).sum();
        let count = bytes as u64 / SECTOR;
        self.check_range(sector, count)?;
        let offset = sector * SECTOR;
        self.buf.resize(bytes, 0);
        let buf = &mut self.buf[..bytes];
        if write {
            let mut at = 0;
            for s in segs {
                grants
                    .read_granted(s.gref, s.offset, &mut buf[at..at + s.len])
                    .map_err(|e| fail(e.to_string()))?;
                at += s.len;
            }
            self.disk
                .write_at(buf, offset)
                .map_err(|e| fail(e.to_string()))?;
            self.stats.writes += 1;
            self.stats.sectors_written += count;
        } else {
            self.disk
                .read_at(buf, offset)
                .map_err(|e| fail(e.to_string()))?;
            let mut at = 0;
            for s in segs {
                grants
                    .write_granted(s.gref, s.offset, &buf[at..at + s.len])
                    .map_err(|e| fail(e.to_string()))?;
                at += s.len;
            }
            self.stats.reads += 1;
            self.stats.sectors_read += count;
        }
        Ok(())
    }
}

/// Checks one segment descriptor: sectors `first..=last` of a page.
fn seg(s: &BlkifRequestSegment) -> Result<Seg, Fail> {
    let per_page = (PAGE as u64 / SECTOR) as u8;
    if s.first_sect > s.last_sect || s.last_sect >= per_page {
        return Err(fail(format!(
            "segment sectors {}..={} (grant {}) not within a page",
            s.first_sect, s.last_sect, s.gref
        )));
    }
    Ok(Seg {
        gref: s.gref,
        offset: usize::from(s.first_sect) * SECTOR as usize,
        len: usize::from(s.last_sect - s.first_sect + 1) * SECTOR as usize,
    })
}
