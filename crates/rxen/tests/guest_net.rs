//! Networking in real guests: Debian's kernel loads its own xen-netfront
//! module and talks to rxen's netback; each vif's TAP sits on a Linux
//! bridge. Everything happens in a network namespace the test creates
//! (`ip netns add`, a bridge `br0` with 10.77.0.1/24 in it), with rxen run
//! there through `ip netns exec`; the host's own interfaces are never
//! touched, and the namespace is deleted when the test ends.
//!
//! - One domU: pings the host's bridge address; fetches 16 MiB from the
//!   host with wget and uploads 1 MiB with nc, both checked; serves a page
//!   and 100 MiB of random data with busybox httpd that the host fetches
//!   (checked against the guest's SHA-256); answers the host's ping.
//! - Two domUs on one bridge (one with two queues): ping each other and
//!   the host.
//! - The TAP's carrier follows the frontend: down when the guest unbinds
//!   netfront, up again when it binds and reconnects.
//! - A domain rebooted with `rxen reboot` (detached, on_reboot=restart)
//!   gets a new TAP on the bridge and reaches the host again.
//!
//! Needs /dev/kvm and root; without them it fails and says so.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use guestprep::{Flavour, Initramfs};
use sha2::Digest;

const HOST_IP: &str = "10.77.0.1";
const MIB: usize = 1 << 20;

/// A network namespace with a bridge `br0` holding [`HOST_IP`]/24.
struct NetNs {
    name: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("run `ip` (install iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl NetNs {
    fn new(tag: &str) -> NetNs {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "rxt-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        ip(&["netns", "add", &name]);
        let ns = NetNs { name };
        let n = ns.name.as_str();
        ip(&["-n", n, "link", "set", "lo", "up"]);
        ip(&["-n", n, "link", "add", "br0", "type", "bridge"]);
        ip(&[
            "-n",
            n,
            "addr",
            "add",
            &format!("{HOST_IP}/24"),
            "dev",
            "br0",
        ]);
        ip(&["-n", n, "link", "set", "br0", "up"]);
        ns
    }

    /// `ip netns exec NS program args...`
    fn command(&self, program: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Runs `f` on a thread inside the namespace (sockets it opens live
    /// there).
    fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).expect("open the namespace");
            // SAFETY: setns on a namespace descriptor we own; it changes
            // only this thread's network namespace.
            let r = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
    }

    /// Runs a command in the namespace; its output.
    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .expect("ip netns exec")
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // The guests' TAPs went with their monitors; the bridge goes with
        // the namespace.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A guest booted with `rxen create -F -c` in a namespace; its console
/// output is collected, its console input is ours.
struct Guest {
    child: Child,
    out: Arc<Mutex<Vec<u8>>>,
    stdin: Option<std::process::ChildStdin>,
    name: String,
}

fn netfront() -> Vec<u8> {
    let ko = guestprep::kernel_module(Flavour::Amd64, "drivers/net/xen-netfront.ko")
        .expect("fetch xen-netfront.ko from Debian's kernel package");
    std::fs::read(ko).unwrap()
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("guest-net-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `/init`: bring eth0 up with `addr`, then `body`.
fn init_script(addr: &str, body: &str) -> String {
    init_script_with(addr, "", body)
}

/// [`init_script`] with module parameters for xen-netfront.
fn init_script_with(addr: &str, params: &str, body: &str) -> String {
    format!(
        r#"#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
insmod /lib/xen-netfront.ko {params} || echo INSMOD-FAILED
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done
ip link set lo up
ip addr add {addr}/24 dev eth0
ip link set eth0 up
echo "RXEN-NET-UP mac=$(cat /sys/class/net/eth0/address)"
{body}
echo RXEN-NET-DONE
poweroff -f
"#
    )
}

impl Guest {
    fn boot(ns: &NetNs, dir: &Path, name: &str, vif: &str, init: String, mem: u32) -> Guest {
        require_kvm();
        let kernel = guestprep::debian_kernel(Flavour::Amd64).expect("fetch Debian's kernel");
        let initrd = guestprep::busybox_initramfs(&Initramfs {
            init_script: init,
            files: vec![("lib/xen-netfront.ko".into(), netfront(), 0o644)],
        })
        .expect("build the initramfs");
        let cfg = common::write_config(
            &dir.join(format!("{name}.cfg")),
            name,
            &kernel.vmlinuz,
            &initrd,
            mem,
            &format!("vif = [ '{vif}' ]\n"),
        );
        let mut child = ns
            .command(&common::rxen())
            .args(["create", "-F", "-c"])
            .arg(&cfg)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rxen");
        let out = Arc::new(Mutex::new(Vec::new()));
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            common::collect_into(pipe, out.clone());
        }
        Guest {
            stdin: child.stdin.take(),
            child,
            out,
            name: name.into(),
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    /// Waits until the console shows `marker`; the output so far.
    fn wait_for(&mut self, marker: &str, limit: Duration) -> String {
        let end = Instant::now() + limit;
        loop {
            let t = self.text();
            if t.contains(marker) {
                return t;
            }
            let exited = self.child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > end {
                let _ = self.child.kill();
                panic!("{}: no {marker:?} (exit {exited:?}) in:\n{t}", self.name);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn send(&mut self, line: &str) {
        let s = self.stdin.as_mut().unwrap();
        s.write_all(line.as_bytes()).unwrap();
        s.flush().unwrap();
    }

    /// Waits for the guest to power off; its output.
    fn finish(mut self) -> String {
        let t = self.wait_for("RXEN-NET-DONE", Duration::from_secs(60));
        let end = Instant::now() + Duration::from_secs(30);
        while Instant::now() < end {
            if let Ok(Some(st)) = self.child.try_wait() {
                assert_eq!(
                    st.code(),
                    Some(0),
                    "{}: poweroff must exit 0:\n{t}",
                    self.name
                );
                assert!(!t.contains("INSMOD-FAILED"), "{t}");
                return self.text();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("{}: did not exit after poweroff:\n{t}", self.name);
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn require_kvm() {
    common::require_kvm();
}

fn line_value(t: &str, key: &str) -> String {
    common::line_after(t, key).unwrap_or_default().to_string()
}

/// 16 MiB the host serves to the guest: a byte pattern.
fn host_blob() -> Vec<u8> {
    (0..16 * MIB).map(|i| (i * 31 / 7) as u8).collect()
}

#[test]
fn a_domu_pings_the_host_and_moves_data_both_ways_over_tcp() {
    let ns = NetNs::new("one");
    let dir = scratch("one");
    // The host serves 16 MiB over HTTP (for the guest's wget) and takes a
    // small upload from the guest's nc.
    let listener = ns.spawn(|| {
        let l = TcpListener::bind((HOST_IP, 8080)).expect("listen on the bridge address");
        let (mut s, _) = l.accept().unwrap();
        let mut req = [0u8; 1024];
        let _ = s.read(&mut req).unwrap();
        let blob = host_blob();
        s.write_all(
            format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", blob.len()).as_bytes(),
        )
        .unwrap();
        s.write_all(&blob).unwrap();
        drop(s);
        let l = TcpListener::bind((HOST_IP, 5001)).unwrap();
        let (mut s, peer) = l.accept().unwrap();
        // busybox nc does not close at the end of its input: read the
        // 1 MiB, then close, which ends it.
        s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        let mut got = vec![0u8; MIB];
        s.read_exact(&mut got).unwrap();
        (got, peer)
    });
    let body = format!(
        r#"ping -c 3 -W 5 {HOST_IP} >/dev/null && echo PING-HOST-OK
echo "GOT-MD5=$(wget -q -O - http://{HOST_IP}:8080/blob | md5sum | cut -d' ' -f1)"
dd if=/dev/urandom of=/tmp/small bs=64k count=16 2>/dev/null
echo "SMALL-SHA=$(sha256sum /tmp/small | cut -d' ' -f1)"
nc {HOST_IP} 5001 < /tmp/small; echo "NC-EXIT=$?"
mkdir -p /www
echo "hello from an rxen domU" > /www/index.html
dd if=/dev/urandom of=/www/blob bs=1M count=100 2>/dev/null
echo "BLOB-SHA=$(sha256sum /www/blob | cut -d' ' -f1)"
httpd -p 80 -h /www && echo HTTPD-UP
read answer
echo "HOST-SAID=$answer"
cat /sys/class/net/eth0/statistics/rx_errors /sys/class/net/eth0/statistics/tx_errors | tr '\n' ' ' | sed 's/^/ETH-ERRORS=/'; echo
"#
    );
    let mut g = Guest::boot(
        &ns,
        &dir,
        &format!("rxen-net-one-{}", std::process::id()),
        "mac=00:16:3e:10:00:02, bridge=br0, vifname=rxtvif1",
        init_script("10.77.0.2", &body),
        512,
    );
    let t = g.wait_for("RXEN-NET-UP", Duration::from_secs(120));
    assert!(t.contains("mac=00:16:3e:10:00:02"), "{t}");
    g.wait_for("PING-HOST-OK", Duration::from_secs(60));
    // Host to guest: 16 MiB arrive intact.
    let t = g.wait_for("GOT-MD5=", Duration::from_secs(120));
    let want = md5_of(&host_blob());
    assert_eq!(
        line_value(&t, "GOT-MD5="),
        want,
        "host -> guest data changed"
    );
    // Guest to host with busybox nc (1 KiB writes: slow, so 1 MiB).
    let t = g.wait_for("NC-EXIT=", Duration::from_secs(120));
    let (got, peer) = listener.join().expect("the host's sockets");
    assert_eq!(got.len(), MIB);
    assert_eq!(
        format!("{:x}", sha2::Sha256::digest(&got)),
        line_value(&t, "SMALL-SHA="),
        "guest -> host (nc) data changed"
    );
    assert_eq!(peer.ip().to_string(), "10.77.0.2");
    let t = g.wait_for("HTTPD-UP", Duration::from_secs(120));

    // The host reaches the guest: ping, a page, and 100 MiB (sent by
    // httpd with sendfile) that arrive with the guest's SHA-256.
    let ping = ns.run(&["ping", "-c", "3", "-W", "5", "10.77.0.2"]);
    assert!(
        ping.status.success(),
        "host -> guest ping: {}",
        String::from_utf8_lossy(&ping.stdout)
    );
    let page = http_get(&ns, "/index.html");
    assert!(
        page.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&page)
    );
    assert!(page.ends_with(b"hello from an rxen domU\n"));
    let t0 = Instant::now();
    let blob = http_get(&ns, "/blob");
    let secs = t0.elapsed().as_secs_f64();
    let body = blob
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(blob.len(), |p| p + 4);
    assert_eq!(blob.len() - body, 100 * MIB, "bytes that arrived");
    assert_eq!(
        format!("{:x}", sha2::Sha256::digest(&blob[body..])),
        line_value(&t, "BLOB-SHA="),
        "guest -> host (HTTP) data changed"
    );
    eprintln!(
        "guest -> host TCP (busybox httpd, sendfile): 100 MiB in {secs:.2} s = {:.2} Gb/s",
        100.0 * 8.0 * 1.048576 / 1000.0 / secs
    );
    g.send("bye\n");
    let t = g.finish();
    assert!(t.contains("HOST-SAID=bye"), "{t}");
    assert!(
        t.contains("ETH-ERRORS=0 0"),
        "netfront counted errors:\n{t}"
    );
    assert!(
        ns.run(&["ip", "link", "show", "rxtvif1"]).stdout.is_empty(),
        "the TAP is gone with the domain"
    );
}

fn http_get(ns: &NetNs, path: &str) -> Vec<u8> {
    http_get_from(ns, "10.77.0.2", path)
}

fn http_get_from(ns: &NetNs, addr: &'static str, path: &str) -> Vec<u8> {
    let req = format!("GET {path} HTTP/1.0\r\nHost: guest\r\n\r\n");
    ns.spawn(move || {
        let mut s = TcpStream::connect((addr, 80)).expect("connect to httpd");
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut v = Vec::new();
        s.read_to_end(&mut v).unwrap();
        v
    })
    .join()
    .unwrap()
}

fn md5_of(data: &[u8]) -> String {
    let mut c = Command::new("md5sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("md5sum");
    let mut stdin = c.stdin.take().unwrap();
    let d = data.to_vec();
    let w = std::thread::spawn(move || stdin.write_all(&d));
    let out = c.wait_with_output().unwrap();
    w.join().unwrap().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn two_domus_on_one_bridge_ping_each_other_and_the_host() {
    let ns = NetNs::new("two");
    let dir = scratch("two");
    let body = |peer: &str| {
        format!(
            r#"echo "QUEUES=$(ls /sys/class/net/eth0/queues | tr '\n' ' ')"
i=0
until ping -c 1 -W 1 {peer} >/dev/null 2>&1 || [ $i -ge 60 ]; do i=$((i+1)); done
ping -c 3 -W 5 {peer} >/dev/null && echo PING-PEER-OK
ping -c 3 -W 5 {HOST_IP} >/dev/null && echo PING-HOST-OK
mkdir -p /www && echo "page of $(hostname)" > /www/index.html && httpd -p 80 -h /www
echo HTTPD-UP
read answer
echo "IRQ-COUNTS=$(grep eth0 /proc/interrupts | while read n c rest; do echo -n "$c "; done)"
"#
        )
    };
    let pid = std::process::id();
    let mut a = Guest::boot(
        &ns,
        &dir,
        &format!("rxen-net-a-{pid}"),
        "mac=00:16:3e:20:00:0a, bridge=br0, vifname=rxtvifa",
        // Two queues although one vCPU: netfront's parameter asks for them.
        init_script_with("10.77.0.10", "max_queues=2", &body("10.77.0.11")),
        256,
    );
    let mut b = Guest::boot(
        &ns,
        &dir,
        &format!("rxen-net-b-{pid}"),
        "mac=00:16:3e:20:00:0b, bridge=br0, vifname=rxtvifb",
        init_script("10.77.0.11", &body("10.77.0.10")),
        256,
    );
    for g in [&mut a, &mut b] {
        g.wait_for("PING-PEER-OK", Duration::from_secs(180));
        g.wait_for("PING-HOST-OK", Duration::from_secs(60));
    }
    assert_eq!(
        line_value(&a.text(), "QUEUES="),
        "rx-0 rx-1 tx-0 tx-1",
        "a uses two queues"
    );
    assert_eq!(line_value(&b.text(), "QUEUES="), "rx-0 tx-0");
    // Traffic on both of a's queues: flows (connections from different
    // ports) are spread over them.
    a.wait_for("HTTPD-UP", Duration::from_secs(30));
    for _ in 0..16 {
        let page = http_get_from(&ns, "10.77.0.10", "/index.html");
        assert!(page.ends_with(b"\n"), "{}", String::from_utf8_lossy(&page));
    }
    for addr in ["10.77.0.10", "10.77.0.11"] {
        let ping = ns.run(&["ping", "-c", "2", "-W", "5", addr]);
        assert!(ping.status.success(), "host -> {addr}");
    }
    // Both vifs are ports of the bridge.
    let links = String::from_utf8_lossy(&ns.run(&["ip", "link", "show", "master", "br0"]).stdout)
        .into_owned();
    assert!(
        links.contains("rxtvifa") && links.contains("rxtvifb"),
        "{links}"
    );
    a.send("bye\n");
    b.send("bye\n");
    let t = a.finish();
    // One event channel (named eth0) per queue, each having fired.
    let counts: Vec<u64> = line_value(&t, "IRQ-COUNTS=")
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .collect();
    assert!(
        counts.len() == 2 && counts.iter().all(|&c| c > 0),
        "events per queue {counts:?}:\n{t}"
    );
    b.finish();
}

/// Whether the host side of vif `name` has its carrier (the frontend is
/// connected).
fn carrier(ns: &NetNs, name: &str) -> bool {
    let out = ns.run(&["ip", "link", "show", name]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "no {name}");
    !text.contains("NO-CARRIER")
}

#[test]
fn the_link_follows_the_frontend_and_it_reconnects_after_an_unbind() {
    let ns = NetNs::new("link");
    let dir = scratch("link");
    let body = format!(
        r#"ping -c 3 -W 5 {HOST_IP} >/dev/null && echo PING-HOST-OK
read answer
echo vif-0 > /sys/bus/xen/drivers/vif/unbind && echo UNBOUND
read answer
echo vif-0 > /sys/bus/xen/drivers/vif/bind
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done
ip addr add 10.77.0.3/24 dev eth0
ip link set eth0 up
ping -c 3 -W 5 {HOST_IP} >/dev/null && echo PING-AGAIN-OK
"#
    );
    let mut g = Guest::boot(
        &ns,
        &dir,
        &format!("rxen-net-link-{}", std::process::id()),
        "mac=00:16:3e:30:00:03, bridge=br0, vifname=rxtvifl",
        init_script("10.77.0.3", &body),
        256,
    );
    g.wait_for("PING-HOST-OK", Duration::from_secs(180));
    assert!(carrier(&ns, "rxtvifl"), "carrier up while connected");
    g.send("go\n");
    g.wait_for("UNBOUND", Duration::from_secs(60));
    let end = Instant::now() + Duration::from_secs(20);
    while carrier(&ns, "rxtvifl") {
        assert!(
            Instant::now() < end,
            "carrier still up after the frontend closed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    g.send("again\n");
    g.wait_for("PING-AGAIN-OK", Duration::from_secs(120));
    assert!(carrier(&ns, "rxtvifl"), "carrier up again");
    g.finish();
}

#[test]
fn a_rebooted_domain_gets_its_vif_back() {
    require_kvm();
    let ns = NetNs::new("reboot");
    let dir = scratch("reboot");
    let state = dir.join("state");
    // busybox's reboot (run by the kernel for control/shutdown) signals
    // PID 1: this /init reboots then.
    let body = format!(
        "trap 'reboot -f' TERM\n\
         ping -c 2 -W 5 {HOST_IP} >/dev/null && echo \"PING-OK boot=$(cut -c1-8 /proc/sys/kernel/random/boot_id)\"\n\
         while true; do sleep 1; done\n"
    );
    let kernel = guestprep::debian_kernel(Flavour::Amd64).expect("fetch Debian's kernel");
    let initrd = guestprep::busybox_initramfs(&Initramfs {
        init_script: init_script("10.77.0.4", &body),
        files: vec![("lib/xen-netfront.ko".into(), netfront(), 0o644)],
    })
    .expect("build the initramfs");
    let name = format!("rxen-net-reboot-{}", std::process::id());
    let cfg = common::write_config(
        &dir.join("reboot.cfg"),
        &name,
        &kernel.vmlinuz,
        &initrd,
        256,
        "vif = [ 'bridge=br0, vifname=rxtvifr' ]\n",
    );
    let rxen = |args: &[&str]| {
        let out = ns
            .command(&common::rxen())
            .args(args)
            .env("RXEN_STATE_DIR", &state)
            .stdin(Stdio::null())
            .output()
            .expect("run rxen");
        assert!(
            out.status.success(),
            "rxen {args:?}: {}",
            common::text(&out)
        );
    };
    rxen(&["create", cfg.to_str().unwrap()]);
    let console =
        || std::fs::read_to_string(state.join("1").join("console.log")).unwrap_or_default();
    let boots = |t: &str| -> Vec<String> {
        t.lines()
            .filter_map(|l| l.trim_end_matches('\r').split_once("PING-OK boot="))
            .map(|(_, b)| b.to_string())
            .collect()
    };
    let wait = |n: usize| {
        let end = Instant::now() + Duration::from_secs(180);
        while boots(&console()).len() < n {
            assert!(
                Instant::now() < end,
                "boot {n} did not reach the host:\n{}",
                console()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    wait(1);
    rxen(&["reboot", "-w", &name]);
    wait(2);
    let b = boots(&console());
    assert_ne!(b[0], b[1], "a second boot");
    let ping = ns.run(&["ping", "-c", "2", "-W", "5", "10.77.0.4"]);
    assert!(ping.status.success(), "host -> rebooted guest");
    rxen(&["destroy", &name]);
    assert!(
        ns.run(&["ip", "link", "show", "rxtvifr"]).stdout.is_empty(),
        "the TAP went with the domain"
    );
}
