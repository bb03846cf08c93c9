//! The host's shared xenstore with real domains in it: Debian's
//! `xenstore-utils` read, list, write and watch a running domain's nodes
//! through the socket `rxen info` names; a guest reads what the host wrote
//! and is refused another domain's subtree (EACCES, from inside the guest
//! through its own `/dev/xen/xenbus`); two clients' transactions conflict
//! with EAGAIN; killing a monitor with SIGKILL releases its domain.
//!
//! Needs /dev/kvm and `xenstore-utils`; fails, not skips, without them.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{require_kvm, rxen, TempDir};
use guestprep::{Flavour, Initramfs};
use xenstore::{StoreOps, XsClient, XsError};

/// A tiny xenstore client for the guest, on the kernel's xenbus device
/// (`/dev/xen/xenbus`, which speaks the wire protocol of `xs_wire.h`).
/// `xsg read PATH`, `xsg write PATH VALUE`, `xsg wait PATH` (read until the
/// node exists); each prints one `XSG` line.
const XSG_C: &str = r#"
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
struct hdr { uint32_t type, req_id, tx_id, len; };
enum { XS_READ = 2, XS_WRITE = 11, XS_ERROR = 16 };
static int readn(int fd, void *p, size_t n) {
    size_t done = 0;
    while (done < n) {
        ssize_t r = read(fd, (char *)p + done, n - done);
        if (r <= 0) return -1;
        done += r;
    }
    return 0;
}
/* 0: ok, 1: error reply (name in out), exits on transport failure. */
static int xs(uint32_t type, const char *path, const char *val, char *out) {
    static char buf[4096 + 16];
    int fd = open("/dev/xen/xenbus", O_RDWR);
    if (fd < 0) { perror("XSG open /dev/xen/xenbus"); exit(2); }
    size_t pl = strlen(path) + 1;
    memcpy(buf + 16, path, pl);
    if (val) { memcpy(buf + 16 + pl, val, strlen(val)); pl += strlen(val); }
    struct hdr h = { type, 7, 0, (uint32_t)pl };
    memcpy(buf, &h, 16);
    if (write(fd, buf, 16 + pl) != (ssize_t)(16 + pl)) { perror("XSG write"); exit(2); }
    if (readn(fd, &h, 16) || h.len > 4096 || readn(fd, out, h.len)) { perror("XSG read"); exit(2); }
    out[h.len] = 0;
    close(fd);
    return h.type == XS_ERROR;
}
int main(int argc, char **argv) {
    static char out[4097];
    if (argc < 3) return 2;
    if (!strcmp(argv[1], "write") && argc == 4) {
        int e = xs(XS_WRITE, argv[2], argv[3], out);
        printf("XSG write %s %s\n", argv[2], e ? out : "OK");
        return e;
    }
    int wait = !strcmp(argv[1], "wait");
    for (int i = 0; i < 1200; i++) {
        int e = xs(XS_READ, argv[2], NULL, out);
        if (!e || !wait) {
            printf("XSG read %s %s %s\n", argv[2], e ? "ERROR" : "=", out);
            return e;
        }
        usleep(100000);
    }
    printf("XSG read %s TIMEOUT\n", argv[2]);
    return 1;
}
"#;

/// The guest's script: reads its own nodes, is refused domain 1's and
/// dom0's, writes a node of its own, then waits for one from the host.
const PROBE_INIT: &str = r#"#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t devtmpfs devtmpfs /dev
echo "XSG start"
xsg read name
xsg read domid
xsg read /local/domain/1/name
xsg read /local/domain/0/name
xsg write name evil
xsg write data/fromguest hello-host
xsg wait data/fromhost
echo "XSG done"
poweroff -f
"#;

struct Host {
    dir: TempDir,
    kernel: PathBuf,
}

impl Host {
    fn new(tag: &str) -> Host {
        require_kvm();
        Host {
            dir: TempDir::new(tag),
            kernel: guestprep::debian_kernel(Flavour::Amd64)
                .expect("fetch the kernel")
                .vmlinuz,
        }
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(rxen())
            .args(args)
            .env("RXEN_STATE_DIR", self.state())
            .stdin(Stdio::null())
            .output()
            .expect("run rxen")
    }

    fn ok(&self, args: &[&str]) -> String {
        common::expect_success(args, &self.run(args))
    }

    fn config(&self, name: &str, initramfs: &Path) -> PathBuf {
        common::write_config(
            &self.dir.path().join(format!("{name}.cfg")),
            name,
            &self.kernel,
            initramfs,
            128,
            "",
        )
    }

    /// The socket `rxen info` names.
    fn socket(&self) -> PathBuf {
        let info = self.ok(&["info"]);
        let line = info
            .lines()
            .find(|l| l.starts_with("xenstore_socket"))
            .unwrap_or_else(|| panic!("no xenstore_socket in rxen info:\n{info}"));
        let path = line.split_once(':').unwrap().1.trim();
        PathBuf::from(path.split(" (").next().unwrap())
    }

    /// Domain `id`'s console so far; once the domain ended and its entry
    /// went, the copy kept under the domain's name in STATE/logs (a guest
    /// that powers off right after its last line can be gone before the
    /// next look).
    fn console(&self, id: u16, name: &str) -> String {
        std::fs::read(self.state().join(id.to_string()).join("console.log"))
            .or_else(|_| {
                std::fs::read(
                    self.state()
                        .join("logs")
                        .join(format!("{name}.console.log")),
                )
            })
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    fn wait_console(&self, id: u16, name: &str, what: &str, limit: Duration) -> String {
        let t = Instant::now();
        loop {
            let c = self.console(id, name);
            if c.contains(what) {
                return c;
            }
            assert!(
                t.elapsed() < limit,
                "domain {id} never printed {what:?}:\n{c}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        for name in ["xs-plain", "xs-probe", "xs-kill"] {
            let _ = self.run(&["destroy", name]);
        }
    }
}

fn tool(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| panic!("{name} not found: apt-get install xenstore-utils"))
}

fn xs_cmd(sock: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(tool(args[0]));
    c.args(&args[1..])
        .env("XENSTORED_PATH", sock)
        .stdin(Stdio::null());
    c
}

fn xs_ok(sock: &Path, args: &[&str]) -> String {
    let o = xs_cmd(sock, args).output().expect("run a xenstore tool");
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn wait_child(mut c: Child, limit: Duration) -> Output {
    let t = Instant::now();
    while c.try_wait().unwrap().is_none() {
        if t.elapsed() > limit {
            let _ = c.kill();
            panic!("xenstore-watch did not see its events");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    c.wait_with_output().unwrap()
}

#[test]
fn xenstore_utils_and_guests_share_one_store() {
    let h = Host::new("xenstore");
    let plain = guestprep::busybox_initramfs(&guestprep::default_initramfs()).unwrap();
    let xsg = guestprep::static_binary("xsg", XSG_C).expect("build xsg");
    let probe = guestprep::busybox_initramfs(&Initramfs {
        init_script: PROBE_INIT.into(),
        files: vec![("/bin/xsg".into(), xsg, 0o755)],
    })
    .unwrap();

    // Domain 1 first (the probe reads its subtree), then the probe as 2.
    h.ok(&[
        "create",
        "-q",
        h.config("xs-plain", &plain).to_str().unwrap(),
    ]);
    let sock = h.socket();
    assert!(
        !h.ok(&["info"]).contains("not running"),
        "the first create starts xenstored"
    );
    h.ok(&[
        "create",
        "-q",
        h.config("xs-probe", &probe).to_str().unwrap(),
    ]);

    // The toolstack's layout, read by Debian's clients.
    assert_eq!(
        xs_ok(&sock, &["xenstore-read", "/local/domain/1/name"]),
        "xs-plain\n"
    );
    assert_eq!(
        xs_ok(&sock, &["xenstore-read", "/local/domain/2/domid"]),
        "2\n"
    );
    assert_eq!(
        xs_ok(&sock, &["xenstore-read", "/local/domain/2/memory/target"]),
        "131072\n"
    );
    let ls = xs_ok(&sock, &["xenstore-ls", "/local/domain"]);
    for want in ["name = \"xs-plain\"", "name = \"xs-probe\"", "Domain-0"] {
        assert!(ls.contains(want), "xenstore-ls lacks {want}:\n{ls}");
    }

    // The guest's own reads and writes, and the refusals.
    let c = h.wait_console(
        2,
        "xs-probe",
        "XSG write data/fromguest",
        Duration::from_secs(120),
    );
    for want in [
        "XSG read name = xs-probe",
        "XSG read domid = 2",
        "XSG read /local/domain/1/name ERROR EACCES",
        "XSG read /local/domain/0/name ERROR EACCES",
        "XSG write name EACCES",
        "XSG write data/fromguest OK",
    ] {
        assert!(c.contains(want), "guest printed no {want:?}:\n{c}");
    }
    assert_eq!(
        xs_ok(&sock, &["xenstore-read", "/local/domain/2/data/fromguest"]),
        "hello-host\n"
    );

    // A watch sees the host's write; the guest reads it and powers off.
    let watch = xs_cmd(
        &sock,
        &["xenstore-watch", "-n", "2", "/local/domain/2/data/fromhost"],
    )
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    xs_ok(
        &sock,
        &[
            "xenstore-write",
            "/local/domain/2/data/fromhost",
            "hi-guest",
        ],
    );
    let w = wait_child(watch, Duration::from_secs(20));
    let events = String::from_utf8_lossy(&w.stdout).into_owned();
    assert_eq!(
        events.matches("/local/domain/2/data/fromhost").count(),
        2,
        "watch output:\n{events}"
    );
    let c = h.wait_console(2, "xs-probe", "XSG done", Duration::from_secs(60));
    assert!(
        c.contains("XSG read data/fromhost = hi-guest"),
        "guest did not read the host's node:\n{c}"
    );

    // Two clients, one transaction conflict: EAGAIN.
    let mut a = XsClient::connect(&sock).unwrap();
    let t = a.transaction_start().unwrap();
    assert_eq!(a.read_tx(t, "/local/domain/1/name").unwrap(), b"xs-plain");
    a.write_tx(t, "/local/domain/1/data/tx", b"from-a").unwrap();
    xs_ok(
        &sock,
        &["xenstore-write", "/local/domain/1/name", "renamed-by-b"],
    );
    assert_eq!(a.transaction_end(t, true), Err(XsError::Again));
    let left = xs_cmd(&sock, &["xenstore-read", "/local/domain/1/data/tx"])
        .output()
        .unwrap();
    assert!(
        !left.status.success(),
        "a failed commit must not leave its writes"
    );
}

#[test]
fn a_killed_monitor_releases_its_domain() {
    let h = Host::new("xs-kill");
    let plain = guestprep::busybox_initramfs(&guestprep::default_initramfs()).unwrap();
    h.ok(&[
        "create",
        "-q",
        h.config("xs-kill", &plain).to_str().unwrap(),
    ]);
    let sock = h.socket();
    let mut watcher = XsClient::connect(&sock).unwrap();
    watcher.watch("@releaseDomain", "rel").unwrap();
    assert_eq!(
        xs_ok(&sock, &["xenstore-read", "/local/domain/1/name"]),
        "xs-kill\n"
    );
    h.wait_console(1, "xs-kill", "rxen default guest", Duration::from_secs(120));
    let entry: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(h.state().join("1").join("entry.json")).unwrap(),
    )
    .unwrap();
    let pid = entry["pid"].as_u64().unwrap() as i32;
    // SAFETY: kill(2) on the monitor this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let t = Instant::now();
    loop {
        let gone = xs_cmd(&sock, &["xenstore-read", "/local/domain/1/name"])
            .output()
            .unwrap();
        if !gone.status.success() {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "domain 1 stays in xenstore"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let fired: Vec<String> = std::iter::repeat_with(|| {
        std::thread::sleep(Duration::from_millis(20));
        watcher.take_watch_events("rel")
    })
    .take(100)
    .flatten()
    .map(|e| e.path)
    .collect();
    // Once at registration, once for the release.
    assert!(fired.len() >= 2, "@releaseDomain events: {fired:?}");
    // The store outlives the domain: a new one starts against it.
    assert!(xenstore::XsClient::connect(&sock).is_ok());
}
