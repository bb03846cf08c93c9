//! The host side of guest networking, with Debian's kernel and its
//! xen-netfront: `rate=` holds a guest's transmit rate, a `kill -9`ed
//! monitor leaves no TAP, and `network-attach`/`network-detach` make a
//! NIC come and go in a running guest.
//!
//! Each test runs in a network namespace of its own (its thread's, which
//! the `rxen` processes it starts inherit): the bridge `xenbr0`, the TAPs
//! and the host's address all live there, never on the host's interfaces.
//! Needs /dev/kvm and root; fails, not skips, without them.

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use guestprep::{Flavour, Initramfs};
use hostnet::{netns, Netlink};

/// One test's world: its namespace (entered by the calling thread), its
/// state directory, a bridge with the host at `.1` of `subnet`.
struct Lab {
    dir: PathBuf,
    subnet: String,
    names: Vec<String>,
}

impl Lab {
    fn new(tag: &str, subnet: &str) -> Lab {
        let kvm = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm");
        assert!(kvm.is_ok(), "guest tests need /dev/kvm: {:?}", kvm.err());
        netns::enter_new().expect("a private network namespace (needs root)");
        let mut nl = Netlink::open().unwrap();
        nl.create_bridge("xenbr0").unwrap();
        let st = Command::new("ip")
            .args(["addr", "add", &format!("{subnet}.1/24"), "dev", "xenbr0"])
            .status()
            .unwrap();
        assert!(st.success());
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("net-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Lab {
            dir,
            subnet: subnet.into(),
            names: Vec::new(),
        }
    }

    /// Runs rxen; a command that hangs for 5 minutes fails the test.
    fn cmd(&self, args: &[&str]) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rxen"))
            .args(args)
            .env("RXEN_STATE_DIR", self.dir.join("state"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run rxen");
        let t = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if t.elapsed() > Duration::from_secs(300) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("rxen {args:?} hung");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.wait_with_output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        common::expect_success(args, &self.cmd(args))
    }

    /// Starts domain `name` whose `/init` brings netfront up and then runs
    /// `script`; `vif` is the config's `vif=` value (or none).
    fn create(&mut self, name: &str, vif: Option<&str>, script: &str) -> u16 {
        let kernel = guestprep::debian_kernel(Flavour::Amd64).expect("fetch Debian's kernel");
        let netfront = guestprep::kernel_module(Flavour::Amd64, "drivers/net/xen-netfront.ko")
            .expect("fetch xen-netfront.ko");
        // busybox's reboot and poweroff (which the kernel runs when the
        // host asks through xenstore) signal PID 1, this script.
        let init = format!(
            "#!/bin/busybox sh\n/bin/busybox mount -t proc proc /proc\n\
             /bin/busybox mount -t sysfs sys /sys\n/bin/busybox mount -t devtmpfs dev /dev\n\
             trap 'reboot -f' TERM\ntrap 'poweroff -f' USR2\n\
             insmod /lib/xen-netfront.ko || echo INSMOD-FAILED\nip link set lo up\n\
             echo GUEST-READY\n{script}\nwhile true; do sleep 1; done\n"
        );
        let initrd = guestprep::busybox_initramfs(&Initramfs {
            init_script: init,
            files: vec![
                (
                    "lib/xen-netfront.ko".into(),
                    std::fs::read(&netfront).unwrap(),
                    0o644,
                ),
                ("bin/rxnet".into(), guestprep::rxnet().unwrap(), 0o755),
            ],
        })
        .unwrap();
        let vif = vif
            .map(|v| format!("vif = [ '{v}' ]\n"))
            .unwrap_or_default();
        let cfg = common::write_config(
            &self.dir.join(format!("{name}.cfg")),
            name,
            &kernel.vmlinuz,
            &initrd,
            128,
            &vif,
        );
        self.ok(&["create", cfg.to_str().unwrap()]);
        self.names.push(name.into());
        self.ok(&["domid", name]).trim().parse().unwrap()
    }

    fn console(&self, id: u16) -> String {
        std::fs::read(
            self.dir
                .join("state")
                .join(id.to_string())
                .join("console.log"),
        )
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
    }

    fn wait_console(&self, id: u16, what: &str, limit: Duration) {
        wait_until(limit, what, || self.console(id).contains(what));
        assert!(!self.console(id).contains("INSMOD-FAILED"));
    }

    /// A guest script that configures `eth0` as `.N` once it exists.
    fn eth0_up(&self, n: u8) -> String {
        format!(
            "while [ ! -e /sys/class/net/eth0 ]; do sleep 0.2; done\n\
             ip addr add {}.{n}/24 dev eth0\nip link set eth0 up\necho ETH0-UP\n",
            self.subnet
        )
    }

    /// `network-list` rows (after the header): devid and state columns.
    fn vifs(&self, dom: &str) -> Vec<(String, String)> {
        self.ok(&["network-list", dom])
            .lines()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() >= 5).then(|| (f[0].to_string(), f[4].to_string()))
            })
            .collect()
    }

    fn monitor_pid(&self, id: u16) -> i32 {
        let t = std::fs::read_to_string(
            self.dir
                .join("state")
                .join(id.to_string())
                .join("entry.json"),
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&t).unwrap();
        v["pid"].as_i64().expect("entry.json has the monitor's pid") as i32
    }

    /// `kill -9` of domain `id`'s monitor; returns once it is dead and its
    /// TAP `tap` has gone with it.
    fn kill_monitor(&self, id: u16, tap: &str) {
        let pid = self.monitor_pid(id);
        // SAFETY: kill(2) on the monitor this test started.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
        wait_until(Duration::from_secs(10), "the monitor to die", || {
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .map(|s| s.contains(") Z"))
                    .unwrap_or(true)
        });
        wait_until(Duration::from_secs(5), "the TAP to go", || {
            !link_exists(tap)
        });
        // What the registry calls dead: nothing holds the domain's lock.
        // Under load the main thread was seen a zombie before every thread
        // had let the lock go; a holder that never does is named.
        let lock = self.dir.join("state").join(id.to_string()).join("lock");
        let t = Instant::now();
        while !lock_is_free(&lock) {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "{} is still locked after the monitor died; open by: {:?}",
                lock.display(),
                holders(&lock)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Whether nobody holds an flock(2) on `path` (or it is gone).
fn lock_is_free(path: &std::path::Path) -> bool {
    use std::os::fd::AsRawFd;
    let Ok(f) = std::fs::File::open(path) else {
        return true;
    };
    // SAFETY: flock on a descriptor this function owns; closing it (drop)
    // releases the probe's own lock.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// The processes with `path` open (pid and command line).
fn holders(path: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    for p in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let fds = std::fs::read_dir(p.path().join("fd"));
        for fd in fds.into_iter().flatten().flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|t| t == path) {
                let cmd = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
                found.push(format!(
                    "{} {}",
                    p.file_name().to_string_lossy(),
                    String::from_utf8_lossy(&cmd).replace('\0', " ")
                ));
            }
        }
    }
    found
}

impl Drop for Lab {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = self.cmd(&["destroy", n]);
        }
    }
}

fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn link_exists(name: &str) -> bool {
    Netlink::open().unwrap().link(name).unwrap().is_some()
}

/// Ports of `bridge` in this namespace.
fn bridge_ports(bridge: &str) -> Vec<String> {
    let o = Command::new("ip")
        .args(["-br", "link", "show", "master", bridge])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

/// The guest sends to the host as fast as TCP lets it for 8 s; the host
/// receives at the configured rate, within 10 %.
#[test]
fn rate_limits_a_guests_throughput() {
    let mut lab = Lab::new("rate", "10.91.0");
    let listener = TcpListener::bind("10.91.0.1:5001").unwrap();
    // 4 Mb/s in 20 ms credits: 10 000 bytes each.
    let rate_bytes = 500_000.0;
    let script = lab.eth0_up(2) + "/bin/rxnet send 10.91.0.1 5001 8\n";
    let id = lab.create("rxen-test-rate", Some("rate=4Mb/s@20ms"), &script);
    listener.set_nonblocking(false).unwrap();
    let (mut conn, _) = {
        // accept() has no timeout: poll for the connection instead.
        listener.set_nonblocking(true).unwrap();
        let t = Instant::now();
        loop {
            match listener.accept() {
                Ok(c) => break c,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(
                        t.elapsed() < Duration::from_secs(180),
                        "the guest never connected; console:\n{}",
                        lab.console(id)
                    );
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
    };
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    let mut first = None;
    let mut last = Instant::now();
    loop {
        let n = conn.read(&mut buf).expect("read from the guest");
        if n == 0 {
            break;
        }
        last = Instant::now();
        first.get_or_insert(last);
        total += n as u64;
    }
    let secs = last
        .duration_since(first.expect("no data from the guest"))
        .as_secs_f64();
    let rate = total as f64 / secs;
    let console = lab.console(id);
    eprintln!(
        "rate=4Mb/s@20ms: {total} bytes in {secs:.2} s = {rate:.0} B/s (set {rate_bytes:.0}); guest: {}",
        console.lines().filter(|l| l.starts_with("RXNET")).collect::<Vec<_>>().join(" | ")
    );
    assert!(
        secs > 5.0,
        "the transfer took {secs:.2} s; console:\n{console}"
    );
    let err = (rate - rate_bytes).abs() / rate_bytes;
    assert!(
        err < 0.10,
        "{rate:.0} B/s is {:.1} % off the set {rate_bytes:.0} B/s",
        err * 100.0
    );
    // Destroyed, the domain takes its TAP and bridge port along.
    let tap = format!("vif{id}.0");
    assert!(link_exists(&tap));
    lab.ok(&["destroy", "rxen-test-rate"]);
    wait_until(Duration::from_secs(5), "the TAP to go", || {
        !link_exists(&tap)
    });
    assert!(bridge_ports("xenbr0").is_empty());
}

/// A reboot gives the new boot the same vif: the old TAP goes before the
/// new one is made under the same name, and the guest's network works.
#[test]
fn a_rebooted_domain_gets_its_vif_again() {
    let mut lab = Lab::new("reboot", "10.94.0");
    let script = lab.eth0_up(2)
        + "i=0; until ping -c 1 -W 1 10.94.0.1 >/dev/null 2>&1; do i=$((i+1)); \
           [ $i -gt 60 ] && break; done\necho PING-DONE-$i\n";
    let dom = "rxen-test-netreboot";
    let id = lab.create(dom, Some(""), &script);
    let tap = format!("vif{id}.0");
    lab.wait_console(id, "PING-DONE", Duration::from_secs(180));
    lab.ok(&["reboot", "-w", dom]);
    // The console log spans both boots.
    wait_until(Duration::from_secs(180), "the second boot", || {
        let c = lab.console(id);
        assert!(!c.contains("Kernel panic"), "the second boot crashed:\n{c}");
        c.matches("PING-DONE").count() >= 2
    });
    assert!(
        !lab.console(id).contains("PING-DONE-61"),
        "{}",
        lab.console(id)
    );
    assert_eq!(bridge_ports("xenbr0"), std::slice::from_ref(&tap));
}

/// `kill -9` of the monitor: its TAP (and so its bridge port) is gone at
/// once, and the next command frees the entry.
#[test]
fn a_killed_monitor_leaves_no_tap() {
    let mut lab = Lab::new("kill", "10.92.0");
    let script = lab.eth0_up(2);
    let dom = "rxen-test-netkill";
    let id = lab.create(dom, Some("bridge=xenbr0"), &script);
    let tap = format!("vif{id}.0");
    assert!(link_exists(&tap), "{tap} exists while the domain runs");
    assert_eq!(bridge_ports("xenbr0"), std::slice::from_ref(&tap));
    lab.wait_console(id, "ETH0-UP", Duration::from_secs(180));
    lab.kill_monitor(id, &tap);
    assert!(bridge_ports("xenbr0").is_empty());
    assert!(link_exists("xenbr0"), "the bridge is the host's and stays");
    let list = lab.ok(&["list"]);
    assert!(!list.contains("rxen-test-netkill"), "{list}");
}

/// `kill -9` of the monitor of a vif with its own `script=`: the TAP goes
/// with the monitor, and the script's `offline` call (which libxl makes
/// when a vif goes) is made by the next command that finds the entry
/// stale, once, with the environment `online` had.
#[test]
fn a_killed_monitors_script_vif_gets_its_offline_call() {
    let mut lab = Lab::new("killscript", "10.95.0");
    let calls = lab.dir.join("script-calls");
    let script = lab.dir.join("vif-record");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$1 $2 vif=$vif path=$XENBUS_PATH mac=$mac mtu=$mtu\" >> '{}'\n",
            calls.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let read_calls = || {
        std::fs::read_to_string(&calls)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let dom = "rxen-test-netkillscript";
    let id = lab.create(dom, Some(&format!("script={}", script.display())), "");
    let tap = format!("vif{id}.0");
    let online = read_calls();
    assert_eq!(online.len(), 1, "{online:?}");
    assert!(
        online[0].starts_with(&format!(
            "online type_if=vif vif={tap} path=backend/vif/{id}/0 mac=00:16:3e:"
        )) && online[0].ends_with(" mtu=1500"),
        "{online:?}"
    );
    lab.wait_console(id, "GUEST-READY", Duration::from_secs(180));
    lab.kill_monitor(id, &tap);
    assert_eq!(
        read_calls().len(),
        1,
        "nobody has made the offline call yet"
    );
    let list = lab.ok(&["list"]);
    assert!(!list.contains(dom), "{list}");
    let offline = online[0].replacen("online", "offline", 1);
    assert_eq!(read_calls(), [online[0].clone(), offline.clone()]);
    // Made once: the entry is gone, the next command finds nothing to do.
    lab.ok(&["list"]);
    assert_eq!(read_calls(), [online[0].clone(), offline]);
}

/// A NIC hot-plugged into a running guest: netfront connects, the guest
/// reaches the host through it; unplugged, it goes from guest and host.
#[test]
fn network_attach_and_detach_with_a_running_guest() {
    let mut lab = Lab::new("hotplug", "10.93.0");
    let script = lab.eth0_up(2)
        + "i=0; until ping -c 1 -W 1 10.93.0.1 >/dev/null 2>&1; do i=$((i+1)); \
           [ $i -gt 60 ] && echo PING-FAILED && break; done\necho PING-DONE-$i\n\
           while [ -e /sys/class/net/eth0 ]; do sleep 0.2; done\necho ETH0-GONE\n";
    let dom = "rxen-test-nethotplug";
    let id = lab.create(dom, None, &script);
    lab.wait_console(id, "GUEST-READY", Duration::from_secs(180));
    assert!(lab.vifs(dom).is_empty());
    let tap = format!("vif{id}.0");
    assert!(!link_exists(&tap));

    lab.ok(&[
        "network-attach",
        dom,
        "mac=00:16:3e:00:93:02",
        "bridge=xenbr0",
    ]);
    assert!(link_exists(&tap));
    assert_eq!(bridge_ports("xenbr0"), std::slice::from_ref(&tap));
    wait_until(Duration::from_secs(60), "netfront to connect", || {
        lab.vifs(dom) == [("0".to_string(), "4".to_string())]
    });
    let list = lab.ok(&["network-list", dom]);
    assert!(list.contains("00:16:3e:00:93:02"), "{list}");
    assert!(
        list.contains(&format!("/local/domain/0/backend/vif/{id}/0")),
        "{list}"
    );
    lab.wait_console(id, "PING-DONE", Duration::from_secs(90));
    assert!(
        !lab.console(id).contains("PING-FAILED"),
        "{}",
        lab.console(id)
    );
    // A bad spec is refused.
    assert!(!lab
        .cmd(&["network-attach", dom, "mac=nonsense"])
        .status
        .success());

    lab.ok(&["network-detach", dom, "0"]);
    wait_until(Duration::from_secs(60), "the vif to go", || {
        lab.vifs(dom).is_empty()
    });
    lab.wait_console(id, "ETH0-GONE", Duration::from_secs(60));
    wait_until(Duration::from_secs(5), "the TAP to go", || {
        !link_exists(&tap)
    });
    assert!(bridge_ports("xenbr0").is_empty());
    assert!(!lab.cmd(&["network-detach", dom, "0"]).status.success());
}
