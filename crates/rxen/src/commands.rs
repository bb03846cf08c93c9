//! The domain-management commands (`list`, `destroy`, `shutdown`, ...):
//! find domains in the registry, talk to their monitors, print like `xl`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use toolstack::client::{self, Request, RunState, ShutdownKind, Status};
use toolstack::registry::{Entry, Registry};

use crate::detached::wait_gone;

/// How long `destroy` waits for a monitor before killing it.
const DESTROY_GRACE: Duration = Duration::from_secs(10);

/// A domain and what its monitor says (if it answers).
pub struct Dom {
    pub entry: Entry,
    pub status: Option<Status>,
}

impl Dom {
    fn load(reg: &Registry, entry: Entry) -> Dom {
        let status = client::status(&reg.paths(entry.id).control_socket).ok();
        Dom { entry, status }
    }

    pub fn state(&self) -> RunState {
        self.status.as_ref().map_or(RunState::Starting, |s| s.state)
    }
}

pub fn find(reg: &Registry, dom: &str) -> Result<Entry> {
    reg.find(dom)
        .map_err(|e| anyhow::anyhow!(e).context(format!("no domain '{dom}' (see `rxen list`)")))
}

fn call(reg: &Registry, e: &Entry, req: Request) -> Result<serde_json::Value> {
    client::call(&reg.paths(e.id).control_socket, req)
        .with_context(|| format!("domain '{}' (id {})", e.name, e.id))
}

/// xl's `Name ID Mem VCPUs State Time(s)` table.
pub fn list_table(doms: &[Dom], with_dom0: bool) -> String {
    let mut out = format!(
        "{:<40} {:>5} {:>5} {:>5} {:>10} {:>9}\n",
        "Name", "ID", "Mem", "VCPUs", "State", "Time(s)"
    );
    if with_dom0 {
        let h = host();
        out += &format!(
            "{:<40} {:>5} {:>5} {:>5}     {} {:>9.1}\n",
            "Domain-0", 0, h.mem_total_mib, h.cpus, "r-----", h.cpu_time_s
        );
    }
    for d in doms {
        let (mem, vcpus, time) = match &d.status {
            Some(s) => (s.memory_mib, s.vcpus, s.cpu_time_ns as f64 / 1e9),
            None => (d.entry.config.memory, 1, 0.0),
        };
        out += &format!(
            "{:<40} {:>5} {:>5} {:>5}     {} {:>9.1}\n",
            d.entry.name,
            d.entry.id,
            mem,
            vcpus,
            d.state().xl_column(),
            time
        );
    }
    out
}

pub fn list(reg: &Registry, long: bool, doms: &[String]) -> Result<()> {
    let entries = if doms.is_empty() {
        reg.entries()?
    } else {
        doms.iter()
            .filter(|d| !is_dom0(d))
            .map(|d| find(reg, d))
            .collect::<Result<Vec<_>>>()?
    };
    let with_dom0 = doms.is_empty() || doms.iter().any(|d| is_dom0(d));
    let all: Vec<Dom> = entries.into_iter().map(|e| Dom::load(reg, e)).collect();
    if long {
        let v: Vec<serde_json::Value> = all.iter().map(long_entry).collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", list_table(&all, with_dom0));
    }
    Ok(())
}

/// One domain as `xl list -l` prints it: `domid` and libxl's domain config
/// (`c_info`, `b_info`, `disks`, `nics`, `on_*`); what only rxen knows (run
/// state, boots, CPU time, the monitor) is under `rxen`.
pub fn long_entry(d: &Dom) -> serde_json::Value {
    let uuid = d.status.as_ref().and_then(|s| s.uuid.as_deref());
    serde_json::json!({
        "domid": d.entry.id,
        "config": toolstack::config::libxl_json::domain_config(&d.entry.config, uuid),
        "rxen": {
            "state": d.state(),
            "monitor_pid": d.entry.pid,
            "status": d.status,
        },
    })
}

fn is_dom0(d: &str) -> bool {
    d == "0" || d == "Domain-0"
}

pub fn destroy(reg: &Registry, dom: &str) -> Result<()> {
    let e = find(reg, dom)?;
    if let Err(err) = call(reg, &e, Request::Destroy) {
        eprintln!(
            "rxen: warning: {err:#}; killing the monitor (pid {})",
            e.pid
        );
        kill9(e.pid);
    }
    if !wait_gone(reg, e.id, DESTROY_GRACE) {
        eprintln!(
            "rxen: warning: domain '{}' did not go within {} s; killing its monitor (pid {})",
            e.name,
            DESTROY_GRACE.as_secs(),
            e.pid
        );
        kill9(e.pid);
        if !wait_gone(reg, e.id, Duration::from_secs(5)) {
            bail!("domain '{}' (pid {}) would not die", e.name, e.pid);
        }
    }
    Ok(())
}

fn kill9(pid: u32) {
    if pid > 1 {
        // SAFETY: kill(2) on the monitor's pid; harmless if it is gone.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
}

/// Whether a `shutdown`/`reboot` is done: the domain is gone, was kept
/// after stopping, or booted again.
fn finished(reg: &Registry, e: &Entry, boots_before: u32, kind: ShutdownKind) -> bool {
    if !reg.is_alive(e.id) {
        return true;
    }
    match client::status(&reg.paths(e.id).control_socket) {
        Ok(s) => {
            s.boots > boots_before
                || (kind == ShutdownKind::Poweroff
                    && matches!(
                        s.state,
                        RunState::Shutdown | RunState::Crashed | RunState::Dying
                    ))
                || (s.last_end.is_some() && s.state == RunState::Starting)
        }
        Err(_) => !reg.is_alive(e.id),
    }
}

pub fn shutdown(reg: &Registry, doms: &[Entry], kind: ShutdownKind, wait: bool) -> Result<()> {
    let mut waiting = Vec::new();
    for e in doms {
        let before = client::status(&reg.paths(e.id).control_socket)
            .map(|s| s.boots)
            .unwrap_or(0);
        call(reg, e, Request::Shutdown { kind })?;
        waiting.push((e, before));
    }
    if !wait {
        return Ok(());
    }
    for (e, before) in waiting {
        eprintln!(
            "Waiting for domain {} ({}) to {}",
            e.name,
            e.id,
            kind.node_value()
        );
        while !finished(reg, e, before, kind) {
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!(
            "Domain {} ({}) has {}",
            e.name,
            e.id,
            match kind {
                ShutdownKind::Poweroff => "shut down",
                ShutdownKind::Reboot => "rebooted",
            }
        );
    }
    Ok(())
}

pub fn simple(reg: &Registry, dom: &str, req: Request) -> Result<()> {
    let e = find(reg, dom)?;
    call(reg, &e, req)?;
    Ok(())
}

pub fn rename(reg: &Registry, dom: &str, new: &str) -> Result<()> {
    let e = find(reg, dom)?;
    let socket = reg.paths(e.id).control_socket;
    reg.rename(e.id, new, || {
        client::call(&socket, Request::Rename { name: new.into() })
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .with_context(|| format!("cannot rename domain '{}'", e.name))?;
    Ok(())
}

pub fn domid(reg: &Registry, name: &str) -> Result<()> {
    if name == "Domain-0" {
        println!("0");
        return Ok(());
    }
    let e = reg
        .entries()?
        .into_iter()
        .find(|e| e.name == name)
        .with_context(|| format!("no domain named '{name}'"))?;
    println!("{}", e.id);
    Ok(())
}

pub fn domname(reg: &Registry, id: &str) -> Result<()> {
    let n: u16 = id
        .parse()
        .with_context(|| format!("'{id}' is not a domain id (a number)"))?;
    if n == 0 {
        println!("Domain-0");
        return Ok(());
    }
    let e = reg
        .entries()?
        .into_iter()
        .find(|e| e.id == n)
        .with_context(|| format!("no domain with id {n}"))?;
    println!("{}", e.name);
    Ok(())
}

/// `H:MM:SS`, with `N days, ` in front past a day (xl's format).
pub fn format_uptime(secs: u64) -> String {
    let (d, rem) = (secs / 86400, secs % 86400);
    let hms = format!("{}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60);
    match d {
        0 => hms,
        1 => format!("1 day, {hms}"),
        _ => format!("{d} days, {hms}"),
    }
}

pub fn uptime(reg: &Registry, doms: &[String]) -> Result<()> {
    let entries = if doms.is_empty() {
        reg.entries()?
    } else {
        doms.iter()
            .filter(|d| !is_dom0(d))
            .map(|d| find(reg, d))
            .collect::<Result<Vec<_>>>()?
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    println!("{:<32} {:>5} Uptime", "Name", "ID");
    if doms.is_empty() || doms.iter().any(|d| is_dom0(d)) {
        let up = std::fs::read_to_string("/proc/uptime")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
            .unwrap_or(0.0);
        println!("{:<32} {:>5} {}", "Domain-0", 0, format_uptime(up as u64));
    }
    for e in entries {
        let d = Dom::load(reg, e);
        let up = match &d.status {
            Some(s) if s.started_unix > 0.0 => (now - s.started_unix).max(0.0) as u64,
            _ => 0,
        };
        println!(
            "{:<32} {:>5} {}",
            d.entry.name,
            d.entry.id,
            format_uptime(up)
        );
    }
    Ok(())
}

/// What `info` and the `Domain-0` line say about the host.
pub struct Host {
    pub mem_total_mib: u64,
    pub mem_free_mib: u64,
    pub cpus: usize,
    /// CPU time the host spent busy (all CPUs), seconds.
    pub cpu_time_s: f64,
}

pub fn host() -> Host {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib = |key: &str| -> u64 {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    // /proc/stat's first line: user nice system idle iowait irq softirq ...
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let busy_ticks: u64 = stat
        .lines()
        .next()
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .enumerate()
                .filter(|(i, _)| *i != 3 && *i != 4)
                .filter_map(|(_, v)| v.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Host {
        mem_total_mib: kib("MemTotal:") / 1024,
        mem_free_mib: kib("MemAvailable:") / 1024,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_time_s: busy_ticks as f64 / hz,
    }
}

pub fn info(reg: &Registry) -> Result<()> {
    // SAFETY: utsname is plain data filled by uname.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: writes one utsname.
    unsafe { libc::uname(&mut u) };
    let field = |f: &[libc::c_char]| {
        // SAFETY: uname NUL-terminates each field within its array.
        unsafe { std::ffi::CStr::from_ptr(f.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    };
    let h = host();
    let kvm = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    let doms = reg.entries()?;
    let used: u64 = doms.iter().map(|e| e.config.memory).sum();
    let rows: Vec<(&str, String)> = vec![
        ("host", field(&u.nodename)),
        ("release", field(&u.release)),
        ("version", field(&u.version)),
        ("machine", field(&u.machine)),
        ("nr_cpus", h.cpus.to_string()),
        ("total_memory", h.mem_total_mib.to_string()),
        ("free_memory", h.mem_free_mib.to_string()),
        ("domains", doms.len().to_string()),
        ("domain_memory", used.to_string()),
        ("hypervisor", "Linux KVM".into()),
        (
            "kvm",
            if kvm {
                "available"
            } else {
                "not available (/dev/kvm)"
            }
            .into(),
        ),
        ("guest_types", "xen-3.0-x86_64 (PV)".into()),
        ("rxen_version", env!("CARGO_PKG_VERSION").into()),
        ("state_dir", reg.dir().display().to_string()),
        ("xenstore_socket", {
            let sock = domain::xenstored::socket_path(reg.dir());
            let up = domain::xenstored::is_running(&sock);
            format!(
                "{}{}",
                sock.display(),
                if up { "" } else { " (not running)" }
            )
        }),
    ];
    for (k, v) in rows {
        println!("{k:<22} : {v}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_reads_like_xl() {
        assert_eq!(format_uptime(0), "0:00:00");
        assert_eq!(format_uptime(3725), "1:02:05");
        assert_eq!(format_uptime(86400 + 61), "1 day, 0:01:01");
        assert_eq!(format_uptime(3 * 86400), "3 days, 0:00:00");
    }

    #[test]
    fn the_list_table_has_xl_columns() {
        let cfg = toolstack::config::parse_config::<&str>(
            "name=\"web\"\nkernel=\"/k\"\nmemory=128\n",
            "t",
            &[],
        )
        .unwrap()
        .0;
        let entry = Entry {
            version: 1,
            id: 3,
            name: "web".into(),
            pid: 9,
            created_unix: 0.0,
            config: cfg,
        };
        let status = Status {
            name: "web".into(),
            domid: 3,
            state: RunState::Paused,
            memory_mib: 128,
            vcpus: 1,
            cpu_time_ns: 12_345_000_000,
            started_unix: 0.0,
            boots: 1,
            last_end: None,
            crash_detail: None,
            monitor_pid: 9,
            uuid: None,
        };
        let dom = Dom {
            entry,
            status: Some(status),
        };
        let t = list_table(std::slice::from_ref(&dom), true);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            ["Name", "ID", "Mem", "VCPUs", "State", "Time(s)"]
        );
        assert!(lines[1].starts_with("Domain-0 "));
        assert_eq!(
            lines[2].split_whitespace().collect::<Vec<_>>(),
            ["web", "3", "128", "1", "--p---", "12.3"]
        );
        // Columns line up with the header, as in xl.
        assert_eq!(
            lines[0].find("State").unwrap() + 5,
            lines[2].find("--p---").unwrap() + 6
        );

        // `list -l`: xl's layout, rxen's own facts apart.
        let v = long_entry(&dom);
        assert_eq!(v["domid"], 3);
        assert_eq!(v["config"]["c_info"]["name"], "web");
        assert_eq!(v["config"]["b_info"]["target_memkb"], 128 * 1024);
        assert_eq!(v["config"]["on_reboot"], "restart");
        assert_eq!(v["rxen"]["state"], "paused");
        assert_eq!(v["rxen"]["monitor_pid"], 9);
        assert_eq!(v["rxen"]["status"]["cpu_time_ns"], 12_345_000_000u64);
    }
}
