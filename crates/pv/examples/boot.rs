//! Development helper: boot a kernel with console_io output on stdout.
//! `cargo run -p pv --example boot -- VMLINUZ [INITRD] [CMDLINE]`
use pv::domain::{DeviceHub, DomainShared};
use std::io::Write;

static CONS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
struct Stdout;
static XS: std::sync::LazyLock<
    std::sync::Mutex<(
        xenstore::Xenstore,
        Option<xenstore::ring::RingConnection<xenstore::ring::RawPage>>,
    )>,
> = std::sync::LazyLock::new(|| std::sync::Mutex::new((xenstore::Xenstore::default(), None)));
impl DeviceHub for Stdout {
    fn guest_notify(&self, dom: &DomainShared, port: u32) {
        let Some(&gpa) = CONS.get() else { return };
        if port == 1 {
            let mut g = XS.lock().unwrap();
            let (xs, rc) = &mut *g;
            if let Some(rc) = rc.as_mut() {
                if rc.poll(xs).unwrap_or(false) {
                    dom.raise(1);
                }
            }
            return;
        }
        if port != 2 {
            eprintln!("[notify port {port}]");
            return;
        }
        let ram = &dom.machine.ram;
        let cons: u32 = ram.read_obj(gpa + 3072 + 8).unwrap();
        let prod: u32 = ram.read_obj(gpa + 3072 + 12).unwrap();
        let mut c = cons;
        let mut out = Vec::new();
        while c != prod {
            out.push(ram.read_u8(gpa + 1024 + (c & 2047) as u64).unwrap());
            c = c.wrapping_add(1);
        }
        ram.write_obj(gpa + 3072 + 8, prod).unwrap();
        self.console_io_write(&out);
    }
    fn console_io_write(&self, bytes: &[u8]) {
        let mut o = std::io::stdout();
        let _ = o.write_all(bytes);
        let _ = o.flush();
    }
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let a: Vec<String> = std::env::args().collect();
    let k = pv_image::load_kernel(std::path::Path::new(&a[1])).unwrap();
    let initrd = a
        .get(2)
        .filter(|s| !s.is_empty())
        .map(|p| std::fs::read(p).unwrap());
    let cmdline = a
        .get(3)
        .cloned()
        .unwrap_or("console=hvc0 earlyprintk=xen".into());
    let p = pv::launch::prepare(
        &pv::launch::BootSpec {
            kernel: &k,
            initrd: initrd.as_deref(),
            cmdline: &cmdline,
            memory_mib: 256,
        },
        Box::new(Stdout),
    )
    .unwrap();
    {
        let mut g = XS.lock().unwrap();
        let (xs, rc) = &mut *g;
        let _ = xs.introduce_domain(1);
        for (k, v) in [
            ("/local/domain/1/name", "demo"),
            ("/local/domain/1/domid", "1"),
            ("/local/domain/1/memory/target", "262144"),
        ] {
            let _ = xs.write(0, k, v.as_bytes());
        }
        let conn = xs.connect(1);
        let base = p.dom.machine.ram.host_base() + p.boot.xenstore_pfn * 4096;
        let page = unsafe {
            xenstore::ring::RawPage::new(std::ptr::NonNull::new(base as *mut u8).unwrap())
        };
        *rc = Some(xenstore::ring::RingConnection::new(
            xenstore::ring::Ring::new(page),
            conn,
        ));
    }
    CONS.set(p.boot.console_pfn * 4096).unwrap();
    let t = std::time::Instant::now();
    let d = p.dom.clone();
    std::thread::spawn(move || loop {
        std::thread::sleep(std::time::Duration::from_secs(2));
        d.kick();
    });
    let (r, s) = p.run();
    eprintln!("\nstopped: {r:?} after {:?}; {s:?}", t.elapsed());
}
