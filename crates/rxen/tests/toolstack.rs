//! The toolstack end to end, as a user drives it: three detached domains
//! (Debian's kernel, the default busybox guest) from config files, managed
//! with the `rxen` binary against a private state directory.
//!
//! Needs /dev/kvm; fails, not skips, without it.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A private state directory; kills every monitor in it when dropped, so a
/// failing test leaves nothing running.
struct Host {
    dir: PathBuf,
    kernel: PathBuf,
    initramfs: PathBuf,
}

impl Host {
    /// `rxen create -F -c CFG` with piped stdio; what it prints to stdout
    /// collects in the returned buffer (read by a thread).
    fn create_foreground(&self, cfg: &Path) -> (Child, Arc<Mutex<Vec<u8>>>) {
        let mut fg = self
            .cmd(&["create", "-F", "-c", cfg.to_str().unwrap()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rxen create -F");
        let out = Arc::new(Mutex::new(Vec::new()));
        common::collect_into(fg.stdout.take().unwrap(), out.clone());
        (fg, out)
    }

    fn new(tag: &str) -> Host {
        let kvm = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm");
        assert!(kvm.is_ok(), "these tests need /dev/kvm: {:?}", kvm.err());
        let (kernel, initramfs) = guestprep::default_guest().expect("prepare the default guest");
        let dir = std::env::temp_dir().join(format!(
            "rxen-ts-{tag}-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Host {
            dir,
            kernel: kernel.vmlinuz,
            initramfs,
        }
    }

    fn state(&self) -> PathBuf {
        self.dir.join("state")
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(common::rxen());
        c.args(args)
            .env("RXEN_STATE_DIR", self.state())
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run rxen")
    }

    /// Runs and expects success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        common::expect_success(args, &self.run(args))
    }

    fn config(&self, name: &str, extra: &str) -> PathBuf {
        common::write_config(
            &self.dir.join(format!("{name}.cfg")),
            name,
            &self.kernel,
            &self.initramfs,
            128,
            &format!("{extra}\n"),
        )
    }

    /// `list` rows: name → (id, state column, time).
    fn list(&self) -> Vec<(String, u16, String, f64)> {
        let out = self.ok(&["list"]);
        let mut lines = out.lines();
        let header: Vec<_> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(header, ["Name", "ID", "Mem", "VCPUs", "State", "Time(s)"]);
        lines
            .map(|l| {
                let f: Vec<_> = l.split_whitespace().collect();
                assert_eq!(f.len(), 6, "{l}");
                (
                    f[0].to_string(),
                    f[1].parse().unwrap(),
                    f[4].to_string(),
                    f[5].parse().unwrap(),
                )
            })
            .filter(|r| r.0 != "Domain-0")
            .collect()
    }

    fn row(&self, name: &str) -> Option<(u16, String, f64)> {
        self.list()
            .into_iter()
            .find(|r| r.0 == name)
            .map(|r| (r.1, r.2, r.3))
    }

    /// `list -l` of one domain.
    fn long(&self, dom: &str) -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_str(&self.ok(&["list", "-l", dom])).unwrap();
        v[0].clone()
    }

    fn console_log(&self, id: u16) -> String {
        String::from_utf8_lossy(
            &std::fs::read(self.state().join(id.to_string()).join("console.log"))
                .unwrap_or_default(),
        )
        .into_owned()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Ok(dirs) = std::fs::read_dir(self.state()) {
            for d in dirs.flatten() {
                let entry = d.path().join("entry.json");
                let Ok(text) = std::fs::read_to_string(entry) else {
                    continue;
                };
                let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                if let Some(pid) = v["pid"].as_u64().filter(|p| *p > 1) {
                    // SAFETY: kill(2) on a monitor this test started.
                    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Polls `cond` every 100 ms until it holds; panics with `what` after `limit`.
fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(
            t.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An attached `rxen console`, its output collected.
struct Viewer {
    child: Child,
    out: Arc<Mutex<Vec<u8>>>,
}

impl Viewer {
    fn attach(h: &Host, dom: &str) -> Viewer {
        let mut child = h
            .cmd(&["console", dom])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rxen console");
        let out = Arc::new(Mutex::new(Vec::new()));
        common::collect_into(child.stdout.take().unwrap(), out.clone());
        Viewer { child, out }
    }

    fn send(&mut self, text: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(text.as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    fn expect(&self, needle: &str, limit: Duration) -> String {
        let t = Instant::now();
        loop {
            let s = self.text();
            if s.contains(needle) {
                return s;
            }
            assert!(
                t.elapsed() < limit,
                "console never showed {needle:?} in {limit:?}; it showed:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The number after `key` on the last line that has one.
    fn value(&self, key: &str) -> Option<u64> {
        self.text().lines().rev().find_map(|l| {
            let rest = l.split(key).nth(1)?;
            let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            digits.parse().ok()
        })
    }

    /// Types the escape character; the viewer must end by itself.
    fn detach(mut self) {
        self.send("\x1d");
        let t = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                assert!(s.success(), "rxen console exited with {s:?}");
                return;
            }
            assert!(t.elapsed() < Duration::from_secs(10), "^] did not detach");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

const BOOT: Duration = Duration::from_secs(240);
const ANSWER: Duration = Duration::from_secs(30);

/// Waits (up to [`ANSWER`]) for a `create -F` process to end; returns its
/// status and what it printed on stderr.
fn wait_ended(fg: &mut Child, what: &str) -> (std::process::ExitStatus, String) {
    let t = Instant::now();
    let status = loop {
        if let Some(s) = fg.try_wait().unwrap() {
            break s;
        }
        assert!(t.elapsed() < ANSWER, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    fg.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    (status, err)
}

fn wait_booted(h: &Host, id: u16) {
    wait_until(BOOT, &format!("domain {id} to reach its shell"), || {
        h.console_log(id).contains("built-in shell")
    });
}

#[test]
fn three_domains_live_side_by_side() {
    let h = Host::new("three");
    let cfg_a = h.config("ts-a", "");
    let cfg_b = h.config("ts-b", "on_crash = \"preserve\"");
    // The third is the shipped example, as written, with the images where
    // examples/prepare-images.sh puts them (relative to where create runs).
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/busybox.cfg");
    std::fs::create_dir_all(h.dir.join("images")).unwrap();
    std::os::unix::fs::symlink(&h.kernel, h.dir.join("images/vmlinuz")).unwrap();
    std::os::unix::fs::symlink(&h.initramfs, h.dir.join("images/busybox-initramfs.cpio")).unwrap();

    // Create all three; each create returns once its domain runs.
    for cfg in [&cfg_a, &cfg_b] {
        h.ok(&["create", "-q", cfg.to_str().unwrap()]);
    }
    h.ok(&["create", "-q", example.to_str().unwrap(), "name=\"ts-c\""]);
    let rows = h.list();
    let names: Vec<_> = rows.iter().map(|r| (r.0.as_str(), r.1)).collect();
    assert_eq!(names, [("ts-a", 1), ("ts-b", 2), ("ts-c", 3)]);
    for r in &rows {
        assert!(
            ["r-----", "-b----"].contains(&r.2.as_str()),
            "a fresh domain runs or waits: {r:?}"
        );
    }
    // A second domain of the same name is refused; nothing else changes.
    let o = h.run(&["create", "-q", cfg_a.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("already exists"));
    assert_eq!(h.list().len(), 3);
    assert_eq!(h.ok(&["domid", "ts-b"]).trim(), "2");
    assert_eq!(h.ok(&["domname", "3"]).trim(), "ts-c");
    let up = h.ok(&["uptime"]);
    assert!(up.starts_with("Name") && up.contains("Domain-0"), "{up}");
    assert!(up.lines().any(|l| l.starts_with("ts-b ")), "{up}");
    let info = h.ok(&["info"]);
    assert!(
        info.contains("nr_cpus") && info.contains("domains                : 3"),
        "{info}"
    );
    // `list -l`: xl's layout (libxl's domain config), rxen's facts apart.
    let long = h.long("ts-a");
    assert_eq!(long["domid"], 1);
    let c = &long["config"];
    assert_eq!(c["c_info"]["name"], "ts-a");
    assert_eq!(c["c_info"]["type"], "pv");
    assert_eq!(
        c["c_info"]["uuid"].as_str().map(str::len),
        Some(36),
        "the uuid the monitor made: {long}"
    );
    assert_eq!(c["b_info"]["target_memkb"], 128 * 1024);
    assert_eq!(c["b_info"]["max_vcpus"], 1);
    assert_eq!(c["b_info"]["kernel"], h.kernel.display().to_string());
    assert_eq!(c["b_info"]["cmdline"], "console=hvc0 quiet");
    assert_eq!(c["disks"], serde_json::json!([]));
    assert_eq!(c["on_reboot"], "restart");
    assert_eq!(h.long("ts-b")["config"]["on_crash"], "preserve");
    assert_eq!(
        long["rxen"]["monitor_pid"],
        long["rxen"]["status"]["monitor_pid"]
    );

    for id in 1..=3 {
        wait_booted(&h, id);
    }

    // Console: two viewers at once; a command typed in one is answered in
    // both; ^] detaches without ending the domain; re-attaching works.
    let mut v1 = Viewer::attach(&h, "ts-a");
    let v2 = Viewer::attach(&h, "1");
    std::thread::sleep(Duration::from_millis(500));
    v1.send("echo hello-$((6*7))\n");
    v1.expect("hello-42", ANSWER);
    v2.expect("hello-42", ANSWER);
    v1.detach();
    v2.detach();
    assert_eq!(h.row("ts-a").unwrap().0, 1, "detaching keeps the domain");
    let mut v = Viewer::attach(&h, "ts-a");
    std::thread::sleep(Duration::from_millis(300));
    v.send("echo again-$((2*3))\n");
    v.expect("again-6", ANSWER);
    v.detach();
    assert!(
        h.console_log(1).contains("hello-42"),
        "the console log keeps everything"
    );

    // Pause: the vCPU stops (no answers, no CPU time), the clock goes on.
    let mut vb = Viewer::attach(&h, "ts-b");
    std::thread::sleep(Duration::from_millis(300));
    h.ok(&["pause", "ts-b"]);
    assert_eq!(h.row("ts-b").unwrap().1, "--p---");
    let cpu = || {
        h.long("ts-b")["rxen"]["status"]["cpu_time_ns"]
            .as_u64()
            .unwrap()
    };
    let cpu0 = cpu();
    vb.send("echo T=$(date +%s) P-$((2+3))\n");
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !vb.text().contains("P-5"),
        "a paused guest answered:\n{}",
        vb.text()
    );
    let used = cpu() - cpu0;
    assert!(used < 20_000_000, "a paused vCPU used {used} ns of CPU");
    h.ok(&["unpause", "ts-b"]);
    vb.expect("P-5", ANSWER);
    let guest = vb.value("T=").expect("guest date");
    let host = now();
    assert!(
        guest + 3 >= host && guest <= host + 1,
        "guest clock {guest} vs host {host} after a pause"
    );
    assert_ne!(h.row("ts-b").unwrap().1, "--p---");

    // Rename: same id, new name; the old name is free.
    h.ok(&["rename", "ts-c", "ts-c2"]);
    assert_eq!(h.row("ts-c2").map(|r| r.0), Some(3));
    assert!(h.row("ts-c").is_none());
    assert_eq!(h.ok(&["domid", "ts-c2"]).trim(), "3");
    let o = h.run(&["rename", "ts-c2", "ts-a"]);
    assert!(!o.status.success(), "a taken name is refused");

    // Reboot with on_reboot = "restart" (the default): same id, second boot.
    h.ok(&["reboot", "-w", "ts-a"]);
    // -w returns once the old boot ended; the new one follows.
    wait_until(BOOT, "ts-a to boot again", || {
        h.long("ts-a")["rxen"]["status"]["boots"] == 2
    });
    let long = h.long("ts-a");
    assert_eq!(long["domid"], 1);
    assert_eq!(long["rxen"]["status"]["boots"], 2, "{long}");
    assert_eq!(long["rxen"]["status"]["last_end"], "reboot");

    // Crash with on_crash = "preserve": kept as crashed until destroyed.
    vb.send("echo c > /proc/sysrq-trigger\n");
    wait_until(ANSWER, "ts-b to show as crashed", || {
        h.row("ts-b").map(|r| r.1) == Some("----c-".into())
    });
    assert!(
        h.console_log(2).contains("Kernel panic"),
        "{}",
        h.console_log(2)
    );
    assert_eq!(h.long("ts-b")["rxen"]["status"]["last_end"], "crash");
    drop(vb);
    h.ok(&["destroy", "ts-b"]);
    assert!(h.row("ts-b").is_none());
    let kept = h.state().join("logs/ts-b.console.log");
    assert!(
        std::fs::read_to_string(&kept)
            .unwrap()
            .contains("Kernel panic"),
        "the console log outlives the domain"
    );

    // Clean shutdown through xenstore; -w returns once it is gone.
    h.ok(&["shutdown", "-w", "ts-c2"]);
    assert!(h.row("ts-c2").is_none());
    let log = std::fs::read_to_string(h.state().join("logs/ts-c2.domain.log")).unwrap();
    assert!(
        log.contains("reason=\"poweroff\""),
        "the guest powered itself off:\n{log}"
    );

    // kill -9 of a monitor: `list` tells the truth and the name is free.
    let pid = h.long("ts-a")["rxen"]["monitor_pid"].as_u64().unwrap();
    // SAFETY: kill(2) on the monitor this test started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    wait_until(Duration::from_secs(10), "the killed monitor to go", || {
        h.row("ts-a").is_none()
    });
    assert!(h.list().is_empty(), "{:?}", h.list());
    assert!(!h.state().join("1").exists(), "the stale entry is cleaned");
    h.ok(&["create", "-q", "-p", cfg_a.to_str().unwrap()]);
    assert_eq!(
        h.row("ts-a").map(|r| (r.0, r.1)),
        Some((1, "--p---".into()))
    );
    h.ok(&["destroy", "1"]);
    assert!(h.list().is_empty());
}

#[test]
fn racing_creates_for_one_name_have_one_winner() {
    let h = Host::new("race");
    let cfg = h.config("ts-race", "");
    let cfg = cfg.to_str().unwrap();
    // -p: the winner stays paused, it need not boot.
    let racers: Vec<Child> = (0..4)
        .map(|_| {
            h.cmd(&["create", "-q", "-p", cfg])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<Output> = racers
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let winners = outs.iter().filter(|o| o.status.success()).count();
    assert_eq!(winners, 1, "exactly one create wins");
    for o in outs.iter().filter(|o| !o.status.success()) {
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(e.contains("already exists"), "{e}");
    }
    let rows = h.list();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0].0.as_str(), rows[0].1), ("ts-race", 1));
    h.ok(&["destroy", "ts-race"]);
    assert!(h.list().is_empty());
    assert!(Path::new(&h.state())
        .join("logs/ts-race.domain.log")
        .exists());
}

#[test]
fn rename_restart_keeps_the_old_domain_and_starts_a_new_one() {
    let h = Host::new("rr");
    let cfg = h.config("ts-rr", "on_poweroff = \"rename-restart\"");
    h.ok(&["create", "-q", cfg.to_str().unwrap()]);
    wait_booted(&h, 1);
    h.ok(&["shutdown", "-w", "ts-rr"]);
    // The old one stays, renamed and shut down; a new one has the name.
    wait_until(ANSWER, "the renamed domain to show as shut down", || {
        h.row("ts-rr-1").map(|r| r.1) == Some("---s--".into())
    });
    assert_eq!(h.row("ts-rr-1").unwrap().0, 1);
    assert_eq!(h.row("ts-rr").map(|r| r.0), Some(2));
    wait_booted(&h, 2);
    // SIGTERM to a monitor destroys its domain cleanly, logs kept.
    let pid = h.long("ts-rr")["rxen"]["monitor_pid"].as_u64().unwrap();
    // SAFETY: kill(2) on the monitor this test started.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    wait_until(Duration::from_secs(10), "SIGTERM to end ts-rr", || {
        h.row("ts-rr").is_none()
    });
    assert!(h.state().join("logs/ts-rr.domain.log").exists());
    h.ok(&["destroy", "ts-rr-1"]);
    assert!(h.list().is_empty());
}

#[test]
fn a_domain_that_cannot_start_says_why_and_leaves_nothing() {
    let h = Host::new("bad");
    let cfg = h.config("ts-bad", "");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let kernel = format!("kernel = \"{}\"", h.kernel.display());
    std::fs::write(
        &cfg,
        text.replace(&kernel, "kernel = \"/nonexistent/vmlinuz\""),
    )
    .unwrap();
    let o = h.run(&["create", "-q", cfg.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot start domain 'ts-bad'") && err.contains("/nonexistent/vmlinuz"),
        "{err}"
    );
    assert!(h.list().is_empty());
    let left: Vec<_> = std::fs::read_dir(h.state())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.parse::<u16>().is_ok())
        .collect();
    assert!(left.is_empty(), "entries left: {left:?}");
    // The name is free: a good config of that name starts (paused).
    std::fs::write(&cfg, text).unwrap();
    h.ok(&["create", "-q", "-p", cfg.to_str().unwrap()]);
    assert_eq!(h.row("ts-bad").map(|r| r.0), Some(1));
    h.ok(&["destroy", "ts-bad"]);
}

#[test]
fn a_foreground_domain_is_listed_and_reachable_from_other_terminals() {
    let h = Host::new("fg");
    let cfg = h.config("ts-fg", "");
    let (mut fg, out) = h.create_foreground(&cfg);
    // Listed like any domain while it runs, with this process as monitor.
    wait_until(BOOT, "ts-fg to be listed", || h.row("ts-fg").is_some());
    assert_eq!(h.row("ts-fg").unwrap().0, 1);
    let long = h.long("ts-fg");
    assert_eq!(long["rxen"]["monitor_pid"], fg.id());
    assert_eq!(long["config"]["c_info"]["name"], "ts-fg");
    // The name is taken meanwhile.
    let o = h.run(&["create", "-q", cfg.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("already exists"));
    wait_booted(&h, 1);
    // A console from another terminal: typed there, answered in both.
    let mut v = Viewer::attach(&h, "ts-fg");
    std::thread::sleep(Duration::from_millis(300));
    v.send("echo fg-$((5*5))\n");
    v.expect("fg-25", ANSWER);
    v.detach();
    wait_until(ANSWER, "the -F terminal to show the answer", || {
        String::from_utf8_lossy(&out.lock().unwrap()).contains("fg-25")
    });
    // Paused and destroyed from another terminal: the -F command ends and
    // says so (exit status 5), the entry goes, the logs stay.
    h.ok(&["pause", "ts-fg"]);
    assert_eq!(h.row("ts-fg").unwrap().1, "--p---");
    h.ok(&["destroy", "ts-fg"]);
    let (status, err) = wait_ended(&mut fg, "rxen create -F did not end");
    assert_eq!(status.code(), Some(5), "{err}");
    assert!(err.contains("domain 'ts-fg' destroyed"), "{err}");
    assert!(h.list().is_empty(), "{:?}", h.list());
    assert!(!h.state().join("1").exists());
    let kept = std::fs::read_to_string(h.state().join("logs/ts-fg.console.log")).unwrap();
    assert!(kept.contains("fg-25"), "{kept}");
    let log = std::fs::read_to_string(h.state().join("logs/ts-fg.domain.log")).unwrap();
    assert!(log.contains("domain ended"), "{log}");
}

#[test]
fn restarts_that_come_too_fast_are_refused() {
    let h = Host::new("loop");
    let kernel = guestprep::hostile_kernel().expect("build the hostile kernel (gcc, libxen-dev)");
    for (name, mode, key) in [
        ("ts-crashloop", "crash", "on_crash"),
        ("ts-rebootloop", "reboot", "on_reboot"),
    ] {
        let cfg = h.dir.join(format!("{name}.cfg"));
        std::fs::write(
            &cfg,
            format!(
                "name = \"{name}\"\nkernel = \"{}\"\nmemory = 32\nextra = \"mode={mode}\"\n\
                 {key} = \"restart\"\n",
                kernel.display()
            ),
        )
        .unwrap();
        let t = Instant::now();
        h.ok(&["create", "-q", cfg.to_str().unwrap()]);
        // The first restart is allowed (after xl's pause); the second comes
        // within MIN_RESTART_INTERVAL of it and the domain is destroyed.
        wait_until(
            Duration::from_secs(120),
            &format!("{name} to be given up"),
            || h.row(name).is_none(),
        );
        assert!(
            t.elapsed() >= Duration::from_secs(2),
            "no pause before the restart"
        );
        let log =
            std::fs::read_to_string(h.state().join(format!("logs/{name}.domain.log"))).unwrap();
        assert!(log.contains("restarting too fast"), "{log}");
        assert!(log.contains("boots=2"), "{log}");
        let console =
            std::fs::read_to_string(h.state().join(format!("logs/{name}.console.log"))).unwrap();
        let marker = format!("HOSTILE-{}-AT-BOOT", mode.to_uppercase());
        assert_eq!(console.matches(&marker).count(), 2, "{console}");
        assert!(console.contains("restarting too fast"), "{console}");
    }
    assert!(h.list().is_empty());
}

/// `rename-restart` is rate-limited as `restart` is: a guest that stops at
/// once leaves its first boot (renamed, kept) and one new domain, which is
/// given up; without the limit, domain after domain would start.
#[test]
fn rename_restarts_that_come_too_fast_are_refused() {
    let h = Host::new("rrloop");
    let kernel = guestprep::hostile_kernel().expect("build the hostile kernel (gcc, libxen-dev)");
    for (name, mode, key, kept_state) in [
        ("ts-rrcrash", "crash", "on_crash", "----c-"),
        ("ts-rrreboot", "reboot", "on_reboot", "---s--"),
        ("ts-rrpoweroff", "poweroff", "on_poweroff", "---s--"),
    ] {
        let cfg = h.dir.join(format!("{name}.cfg"));
        std::fs::write(
            &cfg,
            format!(
                "name = \"{name}\"\nkernel = \"{}\"\nmemory = 32\nextra = \"mode={mode}\"\n\
                 {key} = \"rename-restart\"\n",
                kernel.display()
            ),
        )
        .unwrap();
        h.ok(&["create", "-q", cfg.to_str().unwrap()]);
        // The second domain (the first restart) stops at once too and is
        // destroyed; its log is kept under the name it had.
        let kept = h.state().join(format!("logs/{name}.domain.log"));
        wait_until(
            Duration::from_secs(120),
            &format!("{name}'s restart to be given up"),
            || {
                std::fs::read_to_string(&kept)
                    .is_ok_and(|l| l.contains("restarting too fast") && l.contains("destroyed"))
            },
        );
        // And nothing starts after it.
        std::thread::sleep(Duration::from_secs(3));
        let rows: Vec<_> = h
            .list()
            .into_iter()
            .filter(|r| r.0.starts_with(name))
            .map(|r| (r.0, r.2))
            .collect();
        assert_eq!(
            rows,
            [(format!("{name}-1"), kept_state.to_string())],
            "the first boot is kept renamed, nothing else runs"
        );
        let log = std::fs::read_to_string(&kept).unwrap();
        assert!(log.contains("rename-restart"), "{log}");
        let console =
            std::fs::read_to_string(h.state().join(format!("logs/{name}.console.log"))).unwrap();
        assert!(console.contains("restarting too fast"), "{console}");
        h.ok(&["destroy", &format!("{name}-1")]);
    }
    assert!(h.list().is_empty());
}

/// `create -F` applies the config's `on_*` as a detached domain does (as
/// `xl create -F` follows its domain): a reboot with `on_reboot =
/// "restart"` boots it again in the same process, a crash with `on_crash =
/// "preserve"` keeps it listed as crashed, and `^]` on its terminal ends it.
#[test]
fn a_foreground_domain_follows_its_on_actions() {
    let h = Host::new("fgon");
    let cfg = h.config("ts-fgon", "on_crash = \"preserve\"");
    let (mut fg, out) = h.create_foreground(&cfg);
    let shown = || String::from_utf8_lossy(&out.lock().unwrap()).into_owned();
    let mut stdin = fg.stdin.take().unwrap();
    wait_until(BOOT, "ts-fgon to be listed", || h.row("ts-fgon").is_some());
    wait_booted(&h, 1);

    // on_reboot = "restart" (the default): a second boot, same id, same
    // process, the -F command still running.
    h.ok(&["reboot", "-w", "ts-fgon"]);
    wait_until(BOOT, "ts-fgon to boot again", || {
        h.long("ts-fgon")["rxen"]["status"]["boots"] == 2
    });
    assert!(fg.try_wait().unwrap().is_none(), "-F ended at a reboot");
    let long = h.long("ts-fgon");
    assert_eq!(long["domid"], 1);
    assert_eq!(long["rxen"]["monitor_pid"], fg.id());
    assert_eq!(long["rxen"]["status"]["last_end"], "reboot");
    wait_until(BOOT, "the second boot's shell", || {
        h.console_log(1).matches("built-in shell").count() >= 2
    });
    assert!(shown().contains("restarting"), "{}", shown());

    // The terminal feeds the new boot; on_crash = "preserve": listed as
    // crashed while -F waits.
    stdin.write_all(b"echo again-$((3*4))\n").unwrap();
    wait_until(ANSWER, "the second boot to answer", || {
        shown().contains("again-12")
    });
    stdin.write_all(b"echo c > /proc/sysrq-trigger\n").unwrap();
    wait_until(ANSWER, "ts-fgon to show as crashed", || {
        h.row("ts-fgon").map(|r| r.1) == Some("----c-".into())
    });
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        fg.try_wait().unwrap().is_none(),
        "-F ended at a preserved crash"
    );
    assert_eq!(h.long("ts-fgon")["rxen"]["status"]["last_end"], "crash");
    assert!(shown().contains("preserved until destroyed"), "{}", shown());

    // ^] on the -F terminal ends it: exit status 5, entry gone, logs kept.
    stdin.write_all(b"\x1d").unwrap();
    let (status, err) = wait_ended(&mut fg, "^] did not end rxen create -F");
    assert_eq!(status.code(), Some(5), "{err}");
    assert!(err.contains("destroyed by the console escape"), "{err}");
    assert!(h.list().is_empty(), "{:?}", h.list());
    let kept = std::fs::read_to_string(h.state().join("logs/ts-fgon.console.log")).unwrap();
    assert!(kept.contains("Kernel panic"), "{kept}");
    assert_eq!(kept.matches("built-in shell").count(), 2, "{kept}");
}

/// A detached domain keeps none of the descriptors `rxen create`'s caller
/// left open: a script reading `create`'s output through a pipe sees end of
/// file when `create` returns, not when the domain ends (a monitor that
/// kept an inherited pipe once held a test harness's reader forever).
#[test]
fn a_monitor_keeps_no_descriptor_of_the_caller() {
    let h = Host::new("fds");
    let cfg = h.config("ts-fds", "");
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe(2) into a two-element array; no CLOEXEC, so children
    // inherit the write end like a shell's pipe.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let (r, w) = (fds[0], fds[1]);
    let o = h.run(&["create", "-q", cfg.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // SAFETY: closing this test's own write end; then only the children
    // could hold one.
    unsafe { libc::close(w) };
    let mut pfd = libc::pollfd {
        fd: r,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll on one valid pollfd.
    let n = unsafe { libc::poll(&mut pfd, 1, 5000) };
    let mut byte = 0u8;
    // SAFETY: read of at most one byte into a local.
    let got = if n == 1 {
        unsafe { libc::read(r, (&mut byte as *mut u8).cast(), 1) }
    } else {
        -1
    };
    // SAFETY: closing the read end this test owns.
    unsafe { libc::close(r) };
    assert!(h.row("ts-fds").is_some(), "the domain runs");
    h.ok(&["destroy", "ts-fds"]);
    assert_eq!(
        got, 0,
        "the pipe never reached end of file: the monitor holds its write end"
    );
}
