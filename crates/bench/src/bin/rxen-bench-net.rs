//! `rxen-bench-net`: the network benchmark of issue 5, in network
//! namespaces of its own (never the host's interfaces):
//!
//! - TCP throughput guest→host (a domU on a bridge to the host's end of
//!   it) and guest→guest (two domUs on that bridge), against host→host
//!   over a veth pair between two namespaces, measured in the same run;
//! - UDP round-trip latency for the same three paths.
//!
//! Every figure comes from `rxnet` (guestprep), the same static program
//! inside the guests and natively. Throughput is the receiver's (first
//! byte to end of stream). Fails only if something breaks (no guest
//! network, no result); the figures are reported.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use guestprep::{Flavour, Initramfs};

const MEMORY_MIB: u64 = 256;
/// A hang guard, not a performance limit.
const TIMEOUT: Duration = Duration::from_secs(600);
const PING_COUNT: u32 = 200;

/// A network namespace made for the run, deleted on drop.
struct Netns(String);

impl Netns {
    fn new(name: String) -> Result<Netns> {
        run("ip", &["netns", "add", &name])?;
        let ns = Netns(name);
        ns.ip("link set lo up")?;
        Ok(ns)
    }

    fn ip(&self, args: &str) -> Result<()> {
        let mut a = vec!["-n", &self.0];
        a.extend(args.split_whitespace());
        run("ip", &a)
    }

    /// `prog args` inside the namespace.
    fn cmd(&self, prog: &Path, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0]).arg(prog).args(args);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.0])
            .stderr(Stdio::null())
            .status();
    }
}

fn run(prog: &str, args: &[&str]) -> Result<()> {
    let o = Command::new(prog)
        .args(args)
        .output()
        .with_context(|| format!("run {prog}"))?;
    if !o.status.success() {
        bail!(
            "{prog} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(())
}

/// A child printing `RXNET` lines, killed on drop.
struct Proc(Child, BufReader<std::process::ChildStdout>);

impl Proc {
    fn spawn(mut c: Command) -> Result<Proc> {
        let mut child = c
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("start rxnet")?;
        let out = BufReader::new(child.stdout.take().unwrap());
        Ok(Proc(child, out))
    }

    /// The next line starting with `RXNET prefix`.
    fn line(&mut self, prefix: &str) -> Result<String> {
        let want = format!("RXNET {prefix}");
        let mut l = String::new();
        loop {
            l.clear();
            if self.1.read_line(&mut l)? == 0 {
                bail!("rxnet ended without a `{want}` line");
            }
            if l.starts_with("RXNET error") {
                bail!("rxnet: {}", l.trim());
            }
            if l.starts_with(&want) {
                return Ok(l.trim().to_string());
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `key=value` field of an `RXNET` line.
fn field(line: &str, key: &str) -> Option<f64> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

/// Samples of (when, thread name → (seconds on a CPU, seconds runnable
/// but waiting for one)).
type Samples = Vec<(Instant, Vec<(String, (f64, f64))>)>;

/// CPU time of each thread of some processes, sampled every 250 ms in the
/// background: which thread was busy during a transfer says what bounds it.
struct Sampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    samples: std::sync::Arc<std::sync::Mutex<Samples>>,
}

/// Thread name → (seconds on a CPU, seconds waiting for one), for every
/// thread of `pid` (`name` prefixed with `tag`), from schedstat.
fn thread_cpu(pid: u32, tag: &str, out: &mut Vec<(String, (f64, f64))>) {
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return;
    };
    for t in rd.flatten() {
        let (Ok(comm), Ok(sched)) = (
            std::fs::read_to_string(t.path().join("comm")),
            std::fs::read_to_string(t.path().join("schedstat")),
        ) else {
            continue;
        };
        let f: Vec<f64> = sched
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if f.len() >= 2 {
            out.push((format!("{tag}{}", comm.trim()), (f[0] / 1e9, f[1] / 1e9)));
        }
    }
}

impl Sampler {
    fn start(pids: Vec<(u32, String)>) -> Sampler {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let samples = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (st, sa) = (stop.clone(), samples.clone());
        std::thread::spawn(move || {
            while !st.load(std::sync::atomic::Ordering::Relaxed) {
                let mut v = Vec::new();
                for (pid, tag) in &pids {
                    thread_cpu(*pid, tag, &mut v);
                }
                sa.lock().unwrap().push((Instant::now(), v));
                std::thread::sleep(Duration::from_millis(250));
            }
        });
        Sampler { stop, samples }
    }

    /// Per thread over the `secs` before `end`: the fraction of the time
    /// on a CPU and the fraction runnable but waiting for one; busiest
    /// first (threads of one name summed).
    fn busy(&self, end: Instant, secs: f64) -> Vec<(String, f64, f64)> {
        let s = self.samples.lock().unwrap();
        let start = end - Duration::from_secs_f64(secs);
        let a = s.iter().rev().find(|(t, _)| *t <= start).or(s.first());
        let b = s.iter().rev().find(|(t, _)| *t <= end).or(s.last());
        let (Some(a), Some(b)) = (a, b) else {
            return Vec::new();
        };
        let span = b.0.duration_since(a.0).as_secs_f64().max(1e-3);
        let sum = |v: &[(String, (f64, f64))], n: &str| -> (f64, f64) {
            v.iter()
                .filter(|(m, _)| m == n)
                .fold((0.0, 0.0), |acc, (_, c)| (acc.0 + c.0, acc.1 + c.1))
        };
        let mut names: Vec<String> = b.1.iter().map(|(n, _)| n.clone()).collect();
        names.sort();
        names.dedup();
        let mut out: Vec<(String, f64, f64)> = names
            .into_iter()
            .map(|n| {
                let (r1, w1) = sum(&b.1, &n);
                let (r0, w0) = sum(&a.1, &n);
                (n, (r1 - r0) / span, (w1 - w0) / span)
            })
            .filter(|(_, r, w)| r + w >= 0.02)
            .collect();
        out.sort_by(|x, y| (y.1 + y.2).total_cmp(&(x.1 + x.2)));
        out
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

fn busy_text(b: &[(String, f64, f64)]) -> String {
    if b.is_empty() {
        return "no thread sampled".into();
    }
    b.iter()
        .map(|(n, r, w)| {
            format!(
                "{n} {:.0} % on a CPU + {:.0} % waiting for one",
                r * 100.0,
                w * 100.0
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the busiest thread says about the bound.
fn verdict(busy: &[(String, f64, f64)]) -> String {
    let Some((n, run, wait)) = busy.first() else {
        return "not sampled".into();
    };
    if run + wait > 0.9 && *wait > 0.1 {
        format!(
            "CPU: {n} is runnable all the time but gets a CPU only {:.0} % of it \
             (the host's other load takes the rest)",
            run * 100.0
        )
    } else if run + wait > 0.9 {
        format!("CPU: {n} runs all the time ({:.0} %)", run * 100.0)
    } else {
        format!(
            "latency: no thread is busy all the time (busiest {n}, {:.0} % on a CPU, \
             {:.0} % waiting for one); the path waits on notifications between guest and host",
            run * 100.0,
            wait * 100.0
        )
    }
}

/// One path's figures.
#[derive(Debug, Default, Clone, serde::Serialize)]
struct PathResult {
    gbps: f64,
    bytes: f64,
    rtt_median_us: f64,
    rtt_min_us: f64,
    /// Busy threads during the transfer (name, fraction of the time on a
    /// CPU, fraction runnable but waiting for one).
    busy: Vec<(String, f64, f64)>,
}

struct Bench {
    rxen: PathBuf,
    rxnet: PathBuf,
    dir: PathBuf,
    tag: String,
    secs: u32,
}

impl Bench {
    fn state(&self) -> PathBuf {
        self.dir.join("state")
    }

    fn rxen(&self, ns: Option<&Netns>, args: &[&str]) -> Result<String> {
        let mut c = match ns {
            Some(ns) => ns.cmd(&self.rxen, args),
            None => {
                let mut c = Command::new(&self.rxen);
                c.args(args);
                c
            }
        };
        let o = c
            .env("RXEN_STATE_DIR", self.state())
            .stdin(Stdio::null())
            .output()?;
        if !o.status.success() {
            bail!(
                "rxen {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&o.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    }

    fn monitor_pid(&self, name: &str) -> Result<u32> {
        let id = self.rxen(None, &["domid", name])?;
        let t = std::fs::read_to_string(self.state().join(id.trim()).join("entry.json"))?;
        let v: serde_json::Value = serde_json::from_str(&t)?;
        v["pid"]
            .as_u64()
            .map(|p| p as u32)
            .context("entry.json has no monitor pid")
    }

    fn console(&self, name: &str) -> String {
        let Ok(id) = self.rxen(None, &["domid", name]) else {
            return String::new();
        };
        std::fs::read(self.state().join(id.trim()).join("console.log"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Waits for a line starting `RXNET prefix` (after `marker`) in the
    /// console of `name`.
    fn guest_line(&self, name: &str, marker: &str, prefix: &str) -> Result<String> {
        let t = Instant::now();
        let want = format!("RXNET {prefix}");
        loop {
            let log = self.console(name);
            if let Some(at) = log.find(marker) {
                let rest = &log[at..];
                if let Some(l) = rest.lines().find(|l| l.starts_with("RXNET error")) {
                    bail!("guest {name}: {l}");
                }
                if let Some(l) = rest.lines().find(|l| l.starts_with(&want)) {
                    return Ok(l.trim().to_string());
                }
            }
            if t.elapsed() > TIMEOUT {
                bail!("guest {name}: no `{want}` line after {marker}; console:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn host_to_host(&self) -> Result<PathResult> {
        let a = Netns::new(format!("rxbn-a-{}", self.tag))?;
        let b = Netns::new(format!("rxbn-b-{}", self.tag))?;
        run(
            "ip",
            &[
                "link", "add", "rxbva", "netns", &a.0, "type", "veth", "peer", "name", "rxbvb",
                "netns", &b.0,
            ],
        )?;
        a.ip("addr add 10.89.0.1/24 dev rxbva")?;
        b.ip("addr add 10.89.0.2/24 dev rxbvb")?;
        a.ip("link set rxbva up")?;
        b.ip("link set rxbvb up")?;
        let mut sink = Proc::spawn(b.cmd(&self.rxnet, &["sink", "5001"]))?;
        sink.line("listening")?;
        let secs = self.secs.to_string();
        let mut send = Proc::spawn(a.cmd(&self.rxnet, &["send", "10.89.0.2", "5001", &secs]))?;
        send.line("send")?;
        let s = sink.line("sink")?;
        let mut echo = Proc::spawn(b.cmd(&self.rxnet, &["echo", "7"]))?;
        echo.line("echoing")?;
        let mut ping = Proc::spawn(a.cmd(
            &self.rxnet,
            &["ping", "10.89.0.2", "7", &PING_COUNT.to_string()],
        ))?;
        let p = ping.line("ping")?;
        Ok(PathResult {
            gbps: field(&s, "gbps").unwrap_or(0.0),
            bytes: field(&s, "bytes").unwrap_or(0.0),
            rtt_median_us: field(&p, "median_us").unwrap_or(0.0),
            rtt_min_us: field(&p, "min_us").unwrap_or(0.0),
            busy: Vec::new(),
        })
    }

    fn guest_config(
        &self,
        name: &str,
        mac: &str,
        init: String,
        files: Vec<(String, Vec<u8>, u32)>,
    ) -> Result<PathBuf> {
        let kernel = guestprep::debian_kernel(Flavour::Amd64)?;
        let initrd = guestprep::busybox_initramfs(&Initramfs {
            init_script: init,
            files,
        })?;
        let p = self.dir.join(format!("{name}.cfg"));
        std::fs::write(
            &p,
            format!(
                "name = \"{name}\"\nkernel = \"{}\"\nramdisk = \"{}\"\nmemory = {MEMORY_MIB}\n\
                 extra = \"console=hvc0 quiet\"\nvif = [ 'mac={mac}, bridge=xenbr0' ]\n",
                kernel.vmlinuz.display(),
                initrd.display()
            ),
        )?;
        Ok(p)
    }

    /// guest→host and guest→guest, and the round trips from the host and
    /// between the guests.
    fn guests(&self) -> Result<(PathResult, PathResult)> {
        let ns = Netns::new(format!("rxbn-g-{}", self.tag))?;
        ns.ip("link add xenbr0 type bridge")?;
        ns.ip("addr add 10.88.0.1/24 dev xenbr0")?;
        ns.ip("link set xenbr0 up")?;
        let netfront = guestprep::kernel_module(Flavour::Amd64, "drivers/net/xen-netfront.ko")?;
        let files = vec![
            (
                "lib/xen-netfront.ko".to_string(),
                std::fs::read(&netfront)?,
                0o644,
            ),
            ("bin/rxnet".to_string(), std::fs::read(&self.rxnet)?, 0o755),
        ];
        let secs = self.secs;
        let up = |ip: &str| {
            format!(
                "#!/bin/busybox sh\n/bin/busybox mount -t proc proc /proc\n\
                 /bin/busybox mount -t sysfs sys /sys\n/bin/busybox mount -t devtmpfs dev /dev\n\
                 insmod /lib/xen-netfront.ko || echo RXNET error what=insmod\n\
                 i=0; while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done\n\
                 ip link set lo up\nip addr add {ip}/24 dev eth0\nip link set eth0 up\n\
                 echo RXNET-UP\n/bin/rxnet echo 7 &\n"
            )
        };
        // The receiving guest: a sink for the other guest, then idles.
        let g2 = self.guest_config(
            "rxbn-g2",
            "00:16:3e:00:88:03",
            up("10.88.0.3") + "/bin/rxnet sink 5002\nwhile true; do sleep 1; done\n",
            files.clone(),
        )?;
        // The sending guest: to the host, a round trip to the other guest,
        // then to the other guest.
        let g1 = self.guest_config(
            "rxbn-g1",
            "00:16:3e:00:88:02",
            up("10.88.0.2")
                + &format!(
                    "/bin/rxnet send 10.88.0.1 5001 {secs}\n\
                     /bin/rxnet ping 10.88.0.3 7 {PING_COUNT}\n\
                     /bin/rxnet send 10.88.0.3 5002 {secs}\n\
                     echo RXNET-G1-DONE\nwhile true; do sleep 1; done\n"
                ),
            files,
        )?;
        let mut sink = Proc::spawn(ns.cmd(&self.rxnet, &["sink", "5001"]))?;
        sink.line("listening")?;
        self.rxen(Some(&ns), &["create", g2.to_str().unwrap()])?;
        self.guest_line("rxbn-g2", "RXNET-UP", "listening")?;
        self.rxen(Some(&ns), &["create", g1.to_str().unwrap()])?;
        let sampler = Sampler::start(vec![
            (self.monitor_pid("rxbn-g1")?, "g1:".into()),
            (self.monitor_pid("rxbn-g2")?, "g2:".into()),
        ]);
        let to_host = sink.line("sink")?;
        let host_busy = sampler.busy(Instant::now(), field(&to_host, "secs").unwrap_or(1.0));
        let g_ping = self.guest_line("rxbn-g1", "RXNET-UP", "ping")?;
        let to_guest = self.guest_line("rxbn-g2", "RXNET-UP", "sink")?;
        // The console line lands a moment after the transfer's end.
        let guest_busy = sampler.busy(Instant::now(), field(&to_guest, "secs").unwrap_or(1.0));
        self.guest_line("rxbn-g1", "RXNET-UP", "send")?;
        let mut ping = Proc::spawn(ns.cmd(
            &self.rxnet,
            &["ping", "10.88.0.2", "7", &PING_COUNT.to_string()],
        ))?;
        let h_ping = ping.line("ping")?;
        let r = |s: &str, p: &str, busy: Vec<(String, f64, f64)>| PathResult {
            gbps: field(s, "gbps").unwrap_or(0.0),
            bytes: field(s, "bytes").unwrap_or(0.0),
            rtt_median_us: field(p, "median_us").unwrap_or(0.0),
            rtt_min_us: field(p, "min_us").unwrap_or(0.0),
            busy,
        };
        Ok((
            r(&to_host, &h_ping, host_busy),
            r(&to_guest, &g_ping, guest_busy),
        ))
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!(
            "rxen-bench-net [SECS]: TCP throughput (SECS per transfer, default 5) and UDP\n\
             round trips guest→host and guest→guest, against host→host over a veth pair,\n\
             all in network namespaces of its own. Needs root and /dev/kvm.\n\n\
             Example:\n  $ cargo build --release -p rxen -p bench\n  \
             $ target/release/rxen-bench-net 5"
        );
        return Ok(());
    }
    let host_only = args.iter().any(|a| a == "--host-only");
    let secs: u32 = args
        .iter()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(5);
    let exe = std::env::current_exe()?;
    let rxen = exe.with_file_name("rxen");
    if !rxen.exists() {
        bail!(
            "{} not found: cargo build --release -p rxen",
            rxen.display()
        );
    }
    let tag = format!("{}", std::process::id());
    let dir = std::env::temp_dir().join(format!(
        "rxen-bench-net-{tag}-{}",
        SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos()
    ));
    std::fs::create_dir_all(&dir)?;
    let rxnet = dir.join("rxnet");
    std::fs::write(&rxnet, guestprep::rxnet().context("build rxnet")?)?;
    std::fs::set_permissions(&rxnet, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let b = Bench {
        rxen,
        rxnet,
        dir: dir.clone(),
        tag,
        secs,
    };
    let result = report(&b, host_only);
    for name in ["rxbn-g1", "rxbn-g2"] {
        let _ = b.rxen(None, &["destroy", name]);
    }
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn report(b: &Bench, host_only: bool) -> Result<()> {
    let host = b.host_to_host().context("host→host baseline")?;
    println!(
        "host→host (veth, same run): {:.2} Gb/s, round trip median {:.0} µs (min {:.0})",
        host.gbps, host.rtt_median_us, host.rtt_min_us
    );
    if host_only {
        return Ok(());
    }
    let (to_host, to_guest) = b.guests().context("guest network")?;
    let ratio = |g: &PathResult| g.gbps / host.gbps.max(1e-9);
    println!(
        "guest→host: {:.3} Gb/s ({:.4}× host→host), round trip host↔guest median {:.0} µs (min {:.0})",
        to_host.gbps,
        ratio(&to_host),
        to_host.rtt_median_us,
        to_host.rtt_min_us
    );
    println!("  busy during guest→host: {}", busy_text(&to_host.busy));
    println!(
        "guest→guest: {:.3} Gb/s ({:.4}× host→host), round trip guest↔guest median {:.0} µs (min {:.0})",
        to_guest.gbps,
        ratio(&to_guest),
        to_guest.rtt_median_us,
        to_guest.rtt_min_us
    );
    println!("  busy during guest→guest: {}", busy_text(&to_guest.busy));
    for (what, r) in [("guest→host", &to_host), ("guest→guest", &to_guest)] {
        println!("what bounds {what}: {}", verdict(&r.busy));
    }
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench");
    let _ = std::fs::create_dir_all(&out);
    let json = serde_json::json!({
        "host_to_host": host,
        "guest_to_host": to_host,
        "guest_to_guest": to_guest,
        "secs_per_transfer": b.secs,
    });
    std::fs::write(out.join("net.json"), serde_json::to_string_pretty(&json)?)?;
    Ok(())
}
