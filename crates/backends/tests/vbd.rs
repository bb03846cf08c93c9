//! blkback against an in-process fake blkfront: the xenbus handshake through
//! a real store, requests on a ring in plain memory, grants as a page table.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use backends::blkback::GrantedPages;
use backends::vbd::{FrontendLink, Vbd, VbdConfig};
use backends::OwnedPage;
use disk::{Format, OpenOptions};
use vm_memory::ByteValued;
use xen_abi::io::blkif::*;
use xen_abi::io::ring::ring_entry_offset;
use xen_abi::io::xenbus::XenbusState;
use xenstore::ring::SharedPage;
use xenstore::{Xenstore, DOM0};

const DOM: u16 = 3;
const DEVID: u32 = 51712;
const RING_GREF: u32 = 8;
const PORT: u32 = 5;
const FE: &str = "/local/domain/3/device/vbd/51712";
const BE: &str = "/local/domain/0/backend/vbd/3/51712";

/// The guest's granted pages: gref -> (page, read-only).
#[derive(Default)]
struct Grants(Mutex<HashMap<u32, (Vec<u8>, bool)>>);

impl Grants {
    fn grant(&self, gref: u32, data: Vec<u8>, ro: bool) {
        assert_eq!(data.len(), 4096);
        self.0.lock().unwrap().insert(gref, (data, ro));
    }
    fn page(&self, gref: u32) -> Vec<u8> {
        self.0.lock().unwrap()[&gref].0.clone()
    }
}

impl GrantedPages for Grants {
    fn read_granted(&self, gref: u32, offset: usize, buf: &mut [u8]) -> Result<(), String> {
        let g = self.0.lock().unwrap();
        let (p, _) = g.get(&gref).ok_or(format!("no grant {gref}"))?;
        let src = p.get(offset..offset + buf.len()).ok_or("out of page")?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn write_granted(&self, gref: u32, offset: usize, data: &[u8]) -> Result<(), String> {
        let mut g = self.0.lock().unwrap();
        let (p, ro) = g.get_mut(&gref).ok_or(format!("no grant {gref}"))?;
        if *ro {
            return Err(format!("grant {gref} is read-only"));
        }
        p.get_mut(offset..offset + data.len())
            .ok_or("out of page")?
            .copy_from_slice(data);
        Ok(())
    }
}

struct Link<'a> {
    ring: &'a OwnedPage,
    bound: Mutex<Option<u32>>,
    mapped: Mutex<bool>,
}

impl<'a> FrontendLink for Link<'a> {
    type Page = &'a OwnedPage;
    fn map_ring(&self, gref: u32) -> Result<&'a OwnedPage, String> {
        if gref != RING_GREF {
            return Err(format!("no grant {gref}"));
        }
        *self.mapped.lock().unwrap() = true;
        Ok(self.ring)
    }
    fn unmap_ring(&self, _: u32) {
        *self.mapped.lock().unwrap() = false;
    }
    fn bind_event(&self, port: u32) -> Result<(), String> {
        *self.bound.lock().unwrap() = Some(port);
        Ok(())
    }
    fn unbind_event(&self, _: u32) {
        *self.bound.lock().unwrap() = None;
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("vbd-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn byte(sector: u64, i: usize) -> u8 {
    (sector as u8).wrapping_mul(7) ^ (i as u8)
}

/// A 1 MiB raw image whose sector s, byte i holds `byte(s, i)`.
fn image(dir: &std::path::Path) -> PathBuf {
    let p = dir.join("disk.raw");
    let data: Vec<u8> = (0..2048u64)
        .flat_map(|s| (0..512).map(move |i| byte(s, i)))
        .collect();
    std::fs::write(&p, data).unwrap();
    p
}

fn cfg(read_only: bool, path: &std::path::Path) -> VbdConfig {
    VbdConfig {
        domid: DOM,
        devid: DEVID,
        vdev: "xvda".into(),
        read_only,
        cdrom: false,
        params: path.display().to_string(),
        format: "raw".into(),
        discard: true,
    }
}

fn read(xs: &mut Xenstore, path: &str) -> String {
    String::from_utf8(xs.read(DOM0, path).unwrap()).unwrap()
}

/// The frontend's side of the ring.
struct Front<'a> {
    page: &'a OwnedPage,
    prod: u32,
    cons: u32,
}

impl Front<'_> {
    fn new(page: &OwnedPage) -> Front<'_> {
        page.store_u32(4, 1); // req_event
        page.store_u32(12, 1); // rsp_event
        Front {
            page,
            prod: 0,
            cons: 0,
        }
    }
    fn push(&mut self, entry: &[u8]) {
        let off = ring_entry_offset(self.prod, BLKIF_RING_SIZE, BLKIF_RING_ENTRY_SIZE);
        let mut e = [0u8; BLKIF_RING_ENTRY_SIZE];
        e[..entry.len()].copy_from_slice(entry);
        self.page.write_bytes(off, &e);
        self.prod += 1;
        self.page.store_u32(0, self.prod);
    }
    fn responses(&mut self) -> Vec<BlkifResponse> {
        let prod = self.page.load_u32(8);
        let mut out = Vec::new();
        while self.cons != prod {
            let off = ring_entry_offset(self.cons, BLKIF_RING_SIZE, BLKIF_RING_ENTRY_SIZE);
            let mut b = [0u8; 16];
            self.page.read_bytes(off, &mut b);
            out.push(*BlkifResponse::from_slice(&b).unwrap());
            self.cons += 1;
        }
        self.page.store_u32(12, self.cons + 1);
        out
    }
}

fn seg(gref: u32, first: u8, last: u8) -> BlkifRequestSegment {
    BlkifRequestSegment {
        gref,
        first_sect: first,
        last_sect: last,
        ..Default::default()
    }
}

fn rw(op: u8, id: u64, sector: u64, segs: &[BlkifRequestSegment]) -> BlkifRequest {
    let mut r = BlkifRequest {
        operation: op,
        nr_segments: segs.len() as u8,
        id,
        sector_number: sector,
        ..Default::default()
    };
    r.seg[..segs.len().min(11)].copy_from_slice(&segs[..segs.len().min(11)]);
    r
}

/// Creates the vbd, plays the frontend's handshake, returns it connected.
fn connect<'a>(
    xs: &mut Xenstore,
    link: &Link<'a>,
    read_only: bool,
    img: &std::path::Path,
) -> Vbd<&'a OwnedPage> {
    let disk = disk::open(
        img,
        Format::Raw,
        OpenOptions {
            read_only,
            direct: false,
        },
    )
    .unwrap();
    let mut vbd = Vbd::create(xs, cfg(read_only, img), disk).unwrap();
    assert_eq!(read(xs, &format!("{BE}/state")), "2");
    assert_eq!(read(xs, &format!("{FE}/backend")), BE);
    // The guest reads its device and the backend, writes only its own side.
    assert_eq!(
        xs.read(DOM, &format!("{FE}/virtual-device")).unwrap(),
        b"51712"
    );
    assert!(xs.read(DOM, &format!("{BE}/feature-flush-cache")).is_ok());
    assert!(xs.write(DOM, &format!("{BE}/sectors"), b"1").is_err());
    assert!(
        vbd.poll_store(xs, link),
        "the watch fires once on registration"
    );
    assert_eq!(vbd.state(), XenbusState::InitWait);
    for (k, v) in [
        ("ring-ref", RING_GREF.to_string()),
        ("event-channel", PORT.to_string()),
        ("protocol", "x86_64-abi".into()),
        ("state", "3".into()),
    ] {
        xs.write(DOM, &format!("{FE}/{k}"), v.as_bytes()).unwrap();
    }
    assert!(vbd.poll_store(xs, link));
    assert_eq!(vbd.state(), XenbusState::Connected);
    assert_eq!(read(xs, &format!("{BE}/state")), "4");
    assert_eq!(read(xs, &format!("{BE}/sectors")), "2048");
    assert_eq!(read(xs, &format!("{BE}/sector-size")), "512");
    assert_eq!(*link.bound.lock().unwrap(), Some(PORT));
    vbd
}

#[test]
fn handshake_reads_writes_flush_discard_and_indirect() {
    let dir = scratch("rw");
    let img = image(&dir);
    let mut xs = Xenstore::default();
    let page = OwnedPage::new();
    let link = Link {
        ring: &page,
        bound: Mutex::new(None),
        mapped: Mutex::new(false),
    };
    let mut vbd = connect(&mut xs, &link, false, &img);
    assert_eq!(read(&mut xs, &format!("{BE}/info")), "0");
    assert_eq!(read(&mut xs, &format!("{BE}/feature-discard")), "1");
    let grants = Grants::default();
    let mut front = Front::new(&page);

    // Read sectors 10..=17 into two pages: 3 sectors at 5..=7, 5 at 0..=4.
    grants.grant(100, vec![0; 4096], false);
    grants.grant(101, vec![0; 4096], false);
    let r = rw(BLKIF_OP_READ, 1, 10, &[seg(100, 5, 7), seg(101, 0, 4)]);
    front.push(r.as_slice());
    assert!(vbd.notified(&grants, &link));
    let rsp = front.responses();
    assert_eq!(rsp.len(), 1);
    assert_eq!(
        (rsp[0].id, rsp[0].operation, rsp[0].status),
        (1, BLKIF_OP_READ, 0)
    );
    let p = grants.page(100);
    assert_eq!(p[5 * 512], byte(10, 0));
    assert_eq!(p[7 * 512 + 511], byte(12, 511));
    assert_eq!(p[0], 0, "outside the segment untouched");
    assert_eq!(grants.page(101)[4 * 512 + 3], byte(17, 3));

    // Write two sectors at 100 from a read-only grant (the backend only reads it).
    grants.grant(102, vec![0xab; 4096], true);
    front.push(rw(BLKIF_OP_WRITE, 2, 100, &[seg(102, 0, 1)]).as_slice());
    // Flush with no data, then discard sectors 200..208.
    front.push(rw(BLKIF_OP_FLUSH_DISKCACHE, 3, 0, &[]).as_slice());
    let d = BlkifRequestDiscard {
        operation: BLKIF_OP_DISCARD,
        id: 4,
        sector_number: 200,
        nr_sectors: 8,
        ..Default::default()
    };
    front.push(d.as_slice());
    vbd.notified(&grants, &link);
    let rsp = front.responses();
    assert_eq!(
        rsp.iter().map(|r| (r.id, r.status)).collect::<Vec<_>>(),
        vec![(2, 0), (3, 0), (4, 0)]
    );
    let file = std::fs::read(&img).unwrap();
    assert!(file[100 * 512..102 * 512].iter().all(|&b| b == 0xab));
    assert_eq!(file[102 * 512], byte(102, 0));
    assert!(
        file[200 * 512..208 * 512].iter().all(|&b| b == 0),
        "discard punched a hole"
    );

    // Indirect write of 20 one-sector segments to sectors 500..520, one page
    // of descriptors, then an indirect read back into fresh pages.
    let mut descs = vec![0u8; 4096];
    for i in 0..20u32 {
        grants.grant(200 + i, vec![i as u8 + 1; 4096], false);
        descs[i as usize * 8..i as usize * 8 + 8].copy_from_slice(seg(200 + i, 2, 2).as_slice());
    }
    grants.grant(300, descs, true);
    let mut ind = BlkifRequestIndirect {
        operation: BLKIF_OP_INDIRECT,
        indirect_op: BLKIF_OP_WRITE,
        nr_segments: 20,
        id: 5,
        sector_number: 500,
        ..Default::default()
    };
    ind.indirect_grefs[0] = 300;
    front.push(ind.as_slice());
    vbd.notified(&grants, &link);
    let rsp = front.responses();
    assert_eq!(
        (rsp[0].id, rsp[0].operation, rsp[0].status),
        (5, BLKIF_OP_WRITE, 0)
    );
    let file = std::fs::read(&img).unwrap();
    for i in 0..20usize {
        assert!(file[(500 + i) * 512..(501 + i) * 512]
            .iter()
            .all(|&b| b == i as u8 + 1));
    }
    let mut descs = vec![0u8; 4096];
    for i in 0..20u32 {
        grants.grant(400 + i, vec![0; 4096], false);
        descs[i as usize * 8..i as usize * 8 + 8].copy_from_slice(seg(400 + i, 7, 7).as_slice());
    }
    grants.grant(301, descs, true);
    ind.indirect_op = BLKIF_OP_READ;
    ind.id = 6;
    ind.indirect_grefs[0] = 301;
    front.push(ind.as_slice());
    vbd.notified(&grants, &link);
    assert_eq!(front.responses()[0].status, 0);
    for i in 0..20u32 {
        assert!(grants.page(400 + i)[7 * 512..]
            .iter()
            .all(|&b| b == i as u8 + 1));
    }
    let stats = vbd.stats().unwrap();
    assert_eq!(
        (stats.reads, stats.writes, stats.discards, stats.errors),
        (2, 2, 1, 0)
    );

    // Closing: the backend follows the frontend and lets go of the ring.
    xs.write(DOM, &format!("{FE}/state"), b"5").unwrap();
    vbd.poll_store(&mut xs, &link);
    assert_eq!(read(&mut xs, &format!("{BE}/state")), "5");
    assert!(!*link.mapped.lock().unwrap());
    assert_eq!(*link.bound.lock().unwrap(), None);
    xs.write(DOM, &format!("{FE}/state"), b"6").unwrap();
    vbd.poll_store(&mut xs, &link);
    assert_eq!(read(&mut xs, &format!("{BE}/state")), "6");
    // A frontend starting over gets InitWait again, and can reconnect.
    xs.write(DOM, &format!("{FE}/state"), b"1").unwrap();
    vbd.poll_store(&mut xs, &link);
    assert_eq!(read(&mut xs, &format!("{BE}/state")), "2");
    xs.write(DOM, &format!("{FE}/state"), b"3").unwrap();
    vbd.poll_store(&mut xs, &link);
    assert_eq!(vbd.state(), XenbusState::Connected);
}

#[test]
fn bad_requests_get_error_responses() {
    let dir = scratch("bad");
    let img = image(&dir);
    let before = std::fs::read(&img).unwrap();
    let mut xs = Xenstore::default();
    let page = OwnedPage::new();
    let link = Link {
        ring: &page,
        bound: Mutex::new(None),
        mapped: Mutex::new(false),
    };
    let mut vbd = connect(&mut xs, &link, false, &img);
    let grants = Grants::default();
    grants.grant(100, vec![1; 4096], false);
    grants.grant(101, vec![1; 4096], true);
    let mut front = Front::new(&page);
    let mut twelve = rw(BLKIF_OP_READ, 2, 0, &[seg(100, 0, 0); 11]);
    twelve.nr_segments = 12;
    let mut huge_ind = BlkifRequestIndirect {
        operation: BLKIF_OP_INDIRECT,
        indirect_op: BLKIF_OP_READ,
        nr_segments: 5000,
        id: 11,
        ..Default::default()
    };
    huge_ind.indirect_grefs = [100; 8];
    let mut flush_ind = huge_ind;
    flush_ind.indirect_op = BLKIF_OP_FLUSH_DISKCACHE;
    flush_ind.nr_segments = 1;
    flush_ind.id = 12;
    let cases: Vec<(Vec<u8>, i16)> = vec![
        (
            rw(BLKIF_OP_READ, 1, 0, &[]).as_slice().to_vec(),
            BLKIF_RSP_ERROR,
        ),
        (twelve.as_slice().to_vec(), BLKIF_RSP_ERROR),
        (
            rw(BLKIF_OP_READ, 3, 0, &[seg(100, 3, 2)])
                .as_slice()
                .to_vec(),
            BLKIF_RSP_ERROR,
        ),
        (
            rw(BLKIF_OP_READ, 4, 0, &[seg(100, 0, 8)])
                .as_slice()
                .to_vec(),
            BLKIF_RSP_ERROR,
        ),
        (
            rw(BLKIF_OP_READ, 5, 2047, &[seg(100, 0, 1)])
                .as_slice()
                .to_vec(),
            BLKIF_RSP_ERROR,
        ),
        (
            rw(BLKIF_OP_WRITE, 6, u64::MAX, &[seg(100, 0, 0)])
                .as_slice()
                .to_vec(),
            BLKIF_RSP_ERROR,
        ),
        (
            rw(BLKIF_OP_READ, 7, 0, &[seg(999, 0, 0)])
                .as_slice()
                .to_vec(),
            BLKIF_RSP_ERROR,
        ),
        // A read into a read-only grant.
        (
            rw(BLKIF_OP_READ, 8, 0, &[seg(101, 0, 0)])
                .as_slice()
                .to_vec(),
            BLKIF_RSP_ERROR,
        ),
        (rw(77, 9, 0, &[]).as_slice().to_vec(), BLKIF_RSP_EOPNOTSUPP),
        (
            BlkifRequestDiscard {
                operation: BLKIF_OP_DISCARD,
                id: 10,
                sector_number: 2000,
                nr_sectors: u64::MAX,
                ..Default::default()
            }
            .as_slice()
            .to_vec(),
            BLKIF_RSP_ERROR,
        ),
        (huge_ind.as_slice().to_vec(), BLKIF_RSP_ERROR),
        (flush_ind.as_slice().to_vec(), BLKIF_RSP_ERROR),
    ];
    for (req, _) in &cases {
        front.push(req);
    }
    vbd.notified(&grants, &link);
    let rsp = front.responses();
    assert_eq!(rsp.len(), cases.len());
    for (i, (r, (_, want))) in rsp.iter().zip(&cases).enumerate() {
        assert_eq!(r.status, *want, "case {i} (id {})", r.id);
    }
    assert_eq!(std::fs::read(&img).unwrap(), before, "nothing written");
    // Still serving after all that.
    front.push(rw(BLKIF_OP_READ, 20, 0, &[seg(100, 0, 0)]).as_slice());
    vbd.notified(&grants, &link);
    assert_eq!(front.responses()[0].status, 0);

    // A producer index a ring ahead: the device disconnects, no panic.
    page.store_u32(0, front.prod + 1000);
    assert!(!vbd.notified(&grants, &link));
    assert!(vbd.port().is_none());
    assert!(!*link.mapped.lock().unwrap());
    // ... and tells the frontend, which closes; the backend follows.
    assert!(vbd.wants_store());
    assert!(vbd.poll_store(&mut xs, &link));
    assert_eq!(read(&mut xs, &format!("{BE}/state")), "5");
    assert!(read(&mut xs, &format!("{BE}/error")).contains("ring indices corrupt"));
    xs.write(DOM, &format!("{FE}/state"), b"6").unwrap();
    vbd.poll_store(&mut xs, &link);
    assert_eq!(read(&mut xs, &format!("{BE}/state")), "6");
}

#[test]
fn a_read_only_disk_refuses_writes() {
    let dir = scratch("ro");
    let img = image(&dir);
    let before = std::fs::read(&img).unwrap();
    let mut xs = Xenstore::default();
    let page = OwnedPage::new();
    let link = Link {
        ring: &page,
        bound: Mutex::new(None),
        mapped: Mutex::new(false),
    };
    let mut vbd = connect(&mut xs, &link, true, &img);
    assert_eq!(
        read(&mut xs, &format!("{BE}/info")),
        VDISK_READONLY.to_string()
    );
    assert_eq!(read(&mut xs, &format!("{BE}/mode")), "r");
    assert!(xs.read(DOM0, &format!("{BE}/feature-discard")).is_err());
    let grants = Grants::default();
    grants.grant(100, vec![9; 4096], false);
    let mut front = Front::new(&page);
    front.push(rw(BLKIF_OP_WRITE, 1, 0, &[seg(100, 0, 7)]).as_slice());
    front.push(rw(BLKIF_OP_FLUSH_DISKCACHE, 2, 0, &[]).as_slice());
    front.push(rw(BLKIF_OP_READ, 3, 1, &[seg(100, 0, 0)]).as_slice());
    vbd.notified(&grants, &link);
    let st: Vec<i16> = front.responses().iter().map(|r| r.status).collect();
    assert_eq!(st, vec![BLKIF_RSP_ERROR, 0, 0]);
    assert_eq!(grants.page(100)[0], byte(1, 0));
    assert_eq!(std::fs::read(&img).unwrap(), before);
}

#[test]
fn a_frontend_with_bad_nodes_is_refused() {
    let dir = scratch("badnodes");
    let img = image(&dir);
    let mut xs = Xenstore::default();
    let page = OwnedPage::new();
    let link = Link {
        ring: &page,
        bound: Mutex::new(None),
        mapped: Mutex::new(false),
    };
    let disk = disk::open(&img, Format::Raw, OpenOptions::default()).unwrap();
    let mut vbd: Vbd<&OwnedPage> = Vbd::create(&mut xs, cfg(false, &img), disk).unwrap();
    vbd.poll_store(&mut xs, &link);
    xs.write(DOM, &format!("{FE}/ring-ref"), b"bogus").unwrap();
    xs.write(DOM, &format!("{FE}/event-channel"), b"5").unwrap();
    xs.write(DOM, &format!("{FE}/state"), b"3").unwrap();
    vbd.poll_store(&mut xs, &link);
    assert_ne!(vbd.state(), XenbusState::Connected);
    assert!(read(&mut xs, &format!("{BE}/error")).contains("ring-ref"));
    assert!(!*link.mapped.lock().unwrap());
}

#[test]
fn a_cdrom_is_read_only_and_says_so() {
    let dir = scratch("cdrom");
    let img = image(&dir);
    let mut xs = Xenstore::default();
    let page = OwnedPage::new();
    let link = Link {
        ring: &page,
        bound: Mutex::new(None),
        mapped: Mutex::new(false),
    };
    let disk = disk::open(
        &img,
        Format::Raw,
        OpenOptions {
            read_only: true,
            direct: false,
        },
    )
    .unwrap();
    let mut c = cfg(true, &img);
    c.cdrom = true;
    let mut vbd: Vbd<&OwnedPage> = Vbd::create(&mut xs, c, disk).unwrap();
    assert_eq!(read(&mut xs, &format!("{FE}/device-type")), "cdrom");
    assert_eq!(read(&mut xs, &format!("{BE}/device-type")), "cdrom");
    vbd.poll_store(&mut xs, &link);
    for (k, v) in [("ring-ref", "8"), ("event-channel", "5"), ("state", "3")] {
        xs.write(DOM, &format!("{FE}/{k}"), v.as_bytes()).unwrap();
    }
    vbd.poll_store(&mut xs, &link);
    assert_eq!(vbd.state(), XenbusState::Connected);
    let info: u32 = read(&mut xs, &format!("{BE}/info")).parse().unwrap();
    assert_eq!(info, VDISK_CDROM | VDISK_REMOVABLE | VDISK_READONLY);
}

#[test]
fn hot_unplug_waits_for_the_frontend_then_cleans_up() {
    let dir = scratch("unplug");
    let img = image(&dir);
    let mut xs = Xenstore::default();
    let page = OwnedPage::new();
    let link = Link {
        ring: &page,
        bound: Mutex::new(None),
        mapped: Mutex::new(false),
    };
    let mut vbd = connect(&mut xs, &link, false, &img);
    vbd.request_remove(&mut xs);
    assert_eq!(read(&mut xs, &format!("{BE}/online")), "0");
    assert_eq!(read(&mut xs, &format!("{BE}/state")), "5");
    assert!(!vbd.removed(), "waits for the frontend");
    // Still served meanwhile (a guest may refuse to close a mounted disk).
    assert!(*link.mapped.lock().unwrap());
    let grants = Grants::default();
    grants.grant(100, vec![0; 4096], false);
    let mut front = Front::new(&page);
    front.push(rw(BLKIF_OP_READ, 1, 3, &[seg(100, 0, 0)]).as_slice());
    vbd.notified(&grants, &link);
    assert_eq!(front.responses()[0].status, 0);
    // The frontend follows: Closing (ring let go), then Closed.
    xs.write(DOM, &format!("{FE}/state"), b"5").unwrap();
    vbd.poll_store(&mut xs, &link);
    assert!(!*link.mapped.lock().unwrap());
    assert!(!vbd.removed());
    xs.write(DOM, &format!("{FE}/state"), b"6").unwrap();
    vbd.poll_store(&mut xs, &link);
    assert!(vbd.removed());
    assert_eq!(read(&mut xs, &format!("{BE}/state")), "6");
    vbd.remove(&mut xs, &link);
    assert!(xs.read(DOM0, BE).is_err() && xs.read(DOM0, FE).is_err());
    // The image is free again.
    disk::open(&img, Format::Raw, OpenOptions::default()).unwrap();
}

#[test]
fn hot_unplug_of_an_unused_device_is_immediate() {
    let dir = scratch("unplug-unused");
    let img = image(&dir);
    let mut xs = Xenstore::default();
    let page = OwnedPage::new();
    let link = Link {
        ring: &page,
        bound: Mutex::new(None),
        mapped: Mutex::new(false),
    };
    let disk = disk::open(&img, Format::Raw, OpenOptions::default()).unwrap();
    let mut vbd: Vbd<&OwnedPage> = Vbd::create(&mut xs, cfg(false, &img), disk).unwrap();
    vbd.poll_store(&mut xs, &link);
    vbd.request_remove(&mut xs);
    assert!(vbd.removed());
    // A frontend that wakes up now is not connected.
    xs.write(DOM, &format!("{FE}/ring-ref"), b"8").unwrap();
    xs.write(DOM, &format!("{FE}/event-channel"), b"5").unwrap();
    xs.write(DOM, &format!("{FE}/state"), b"3").unwrap();
    vbd.poll_store(&mut xs, &link);
    assert!(!*link.mapped.lock().unwrap());
    vbd.remove(&mut xs, &link);
    assert!(xs.read(DOM0, BE).is_err());
}
