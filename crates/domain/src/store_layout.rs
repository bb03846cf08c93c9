//! The xenstore tree a toolstack writes for a new domain before it boots,
//! following libxl (`libxl__domain_make`, `libxl__build_post`): the guest's
//! xenbus finds its name, id, memory target, console and store details, an
//! empty `device/` directory (no frontends to probe) and the `control/`
//! nodes its shutdown and sysrq watches use.

use xenstore::{Batch, DomId, Perm, Perms, StoreOps, XsResult, DOM0};

/// What the tree says about the domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainEntry {
    pub domid: DomId,
    pub name: String,
    /// `8-4-4-4-12` lower-case hex.
    pub uuid: String,
    pub memory_mib: u64,
    pub maxmem_mib: u64,
    pub vcpus: u32,
    pub console_pfn: u64,
    pub console_evtchn: u32,
    pub xenstore_pfn: u64,
    pub xenstore_evtchn: u32,
}

/// A uuid for a domain that was given none: random bits from the kernel,
/// marked as version 4.
pub fn generate_uuid() -> [u8; 16] {
    let mut b = [0u8; 16];
    // SAFETY: getrandom writes at most `b.len()` bytes into `b`.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != b.len() as isize {
        // No entropy source: time and pid are unique enough for a name.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b[..12].copy_from_slice(&t.to_le_bytes()[..12]);
        b[12..].copy_from_slice(&std::process::id().to_le_bytes());
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    b
}

/// `8-4-4-4-12` lower-case hex.
pub fn format_uuid(b: &[u8; 16]) -> String {
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Writes dom0's own entry and the domain's tree; `xs` acts as dom0.
pub fn write_domain(xs: &mut dyn StoreOps, d: &DomainEntry) -> XsResult<()> {
    let id = d.domid;
    let dom = format!("/local/domain/{id}");
    let vm = format!("/vm/{}", d.uuid);
    // Read-only for the guest (owned by dom0), and read-write (owned by it).
    let ro = || Perms::new(DOM0, Perm::None).with(id, Perm::Read);
    let rw = || Perms::new(id, Perm::None);
    // Sent together: one round trip to the daemon, not ~80.
    let mut batch = Batch::new();
    let b = &mut batch;
    let node = |b: &mut Batch, path: &str, value: Option<&str>, perms: Perms| {
        match value {
            Some(v) => b.write(path, v.as_bytes()),
            None => b.mkdir(path),
        }
        .set_perms(path, &perms);
    };

    b.write("/local/domain/0/name", b"Domain-0");
    b.write("/local/domain/0/domid", b"0");

    node(b, &vm, None, ro());
    node(b, &format!("{vm}/uuid"), Some(&d.uuid), ro());
    node(b, &format!("{vm}/name"), Some(&d.name), ro());

    node(b, &dom, None, ro());
    node(b, &format!("{dom}/vm"), Some(&vm), ro());
    node(b, &format!("{dom}/name"), Some(&d.name), ro());
    node(b, &format!("{dom}/domid"), Some(&id.to_string()), ro());
    for dir in ["device", "control", "cpu", "memory", "console", "store"] {
        node(b, &format!("{dom}/{dir}"), None, ro());
    }
    for dir in ["data", "drivers", "feature", "attr", "error"] {
        node(b, &format!("{dom}/{dir}"), None, rw());
    }
    for key in [
        "shutdown",
        "feature-poweroff",
        "feature-reboot",
        "feature-suspend",
        "sysrq",
    ] {
        node(b, &format!("{dom}/control/{key}"), Some(""), rw());
    }
    node(
        b,
        &format!("{dom}/control/platform-feature-multiprocessor-suspend"),
        Some("1"),
        ro(),
    );
    node(
        b,
        &format!("{dom}/control/platform-feature-xs_reset_watches"),
        Some("1"),
        ro(),
    );
    for cpu in 0..d.vcpus.max(1) {
        node(b, &format!("{dom}/cpu/{cpu}"), None, ro());
        node(
            b,
            &format!("{dom}/cpu/{cpu}/availability"),
            Some("online"),
            ro(),
        );
    }
    let kib = |mib: u64| (mib * 1024).to_string();
    node(
        b,
        &format!("{dom}/memory/static-max"),
        Some(&kib(d.maxmem_mib)),
        ro(),
    );
    // The balloon driver writes its own target back: read-write.
    node(
        b,
        &format!("{dom}/memory/target"),
        Some(&kib(d.memory_mib)),
        rw(),
    );
    node(b, &format!("{dom}/memory/videoram"), Some("-1"), ro());
    node(
        b,
        &format!("{dom}/console/ring-ref"),
        Some(&d.console_pfn.to_string()),
        ro(),
    );
    node(
        b,
        &format!("{dom}/console/port"),
        Some(&d.console_evtchn.to_string()),
        ro(),
    );
    node(b, &format!("{dom}/console/type"), Some("xenconsoled"), ro());
    node(b, &format!("{dom}/console/output"), Some("pty"), ro());
    node(b, &format!("{dom}/console/limit"), Some("1048576"), ro());
    node(
        b,
        &format!("{dom}/store/ring-ref"),
        Some(&d.xenstore_pfn.to_string()),
        ro(),
    );
    node(
        b,
        &format!("{dom}/store/port"),
        Some(&d.xenstore_evtchn.to_string()),
        ro(),
    );
    batch.send(xs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use xenstore::Xenstore;

    fn entry() -> DomainEntry {
        DomainEntry {
            domid: 1,
            name: "guest".into(),
            uuid: format_uuid(&generate_uuid()),
            memory_mib: 256,
            maxmem_mib: 512,
            vcpus: 1,
            console_pfn: 0x1234,
            console_evtchn: 2,
            xenstore_pfn: 0x1235,
            xenstore_evtchn: 1,
        }
    }

    fn read(xs: &mut Xenstore, who: DomId, path: &str) -> XsResult<String> {
        xs.read(who, path).map(|v| String::from_utf8(v).unwrap())
    }

    #[test]
    fn the_guest_sees_its_tree() {
        let mut xs = Xenstore::default();
        let e = entry();
        write_domain(&mut xs, &e).unwrap();
        // Relative paths resolve under the guest's own directory.
        assert_eq!(read(&mut xs, 1, "name").unwrap(), "guest");
        assert_eq!(read(&mut xs, 1, "domid").unwrap(), "1");
        assert_eq!(read(&mut xs, 1, "memory/target").unwrap(), "262144");
        assert_eq!(read(&mut xs, 1, "memory/static-max").unwrap(), "524288");
        assert_eq!(read(&mut xs, 1, "cpu/0/availability").unwrap(), "online");
        assert_eq!(read(&mut xs, 1, "store/port").unwrap(), "1");
        assert_eq!(read(&mut xs, 1, "console/ring-ref").unwrap(), "4660");
        let vm = read(&mut xs, 1, "vm").unwrap();
        assert_eq!(read(&mut xs, 1, &format!("{vm}/uuid")).unwrap(), e.uuid);
        assert!(xs.directory(1, "device").unwrap().is_empty());
    }

    #[test]
    fn the_guest_may_write_only_where_xl_lets_it() {
        let mut xs = Xenstore::default();
        write_domain(&mut xs, &entry()).unwrap();
        // What the kernel's drivers write during boot.
        xs.write(1, "control/feature-poweroff", b"1").unwrap();
        xs.write(1, "control/shutdown", b"").unwrap();
        xs.write(1, "memory/target", b"262144").unwrap();
        xs.write(1, "data/updated", b"x").unwrap();
        // What it must not change.
        assert!(xs.write(1, "name", b"evil").is_err());
        assert!(xs.write(1, "device/vbd", b"").is_err());
        assert!(xs.write(1, "/local/domain/0/name", b"evil").is_err());
        // Another domain sees nothing of it.
        assert!(xs.read(2, "/local/domain/1/name").is_err());
    }

    #[test]
    fn uuids_are_well_formed_version_4() {
        let u = format_uuid(&generate_uuid());
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!(u.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
        assert_ne!(u, format_uuid(&generate_uuid()));
    }
}
