//! Development helper: boot a kernel with console_io output on stdout.
//! `cargo run -p pv --example boot -- VMLINUZ [INITRD] [CMDLINE]`
use pv::domain::{DeviceHub, DomainShared};
use std::io::Write;

struct Stdout;
impl DeviceHub for Stdout {
    fn guest_notify(&self, _dom: &DomainShared, port: u32) {
        eprintln!("[notify port {port}]");
    }
    fn console_io_write(&self, bytes: &[u8]) {
        let mut o = std::io::stdout();
        let _ = o.write_all(bytes);
        let _ = o.flush();
    }
}

fn main() {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).with_writer(std::io::stderr).init();
    let a: Vec<String> = std::env::args().collect();
    let k = pv_image::load_kernel(std::path::Path::new(&a[1])).unwrap();
    let initrd = a.get(2).filter(|s| !s.is_empty()).map(|p| std::fs::read(p).unwrap());
    let cmdline = a.get(3).cloned().unwrap_or("console=hvc0 earlyprintk=xen".into());
    let p = pv::launch::prepare(&pv::launch::BootSpec { kernel: &k, initrd: initrd.as_deref(), cmdline: &cmdline, memory_mib: 256 }, Box::new(Stdout)).unwrap();
    let t = std::time::Instant::now();
    let d = p.dom.clone();
    std::thread::spawn(move || loop { std::thread::sleep(std::time::Duration::from_secs(2)); d.kick(); });
    let (r, s) = p.run();
    eprintln!("\nstopped: {r:?} after {:?}; {s:?}", t.elapsed());
}
