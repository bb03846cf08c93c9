//! Boots a kernel and initramfs under rxen or QEMU TCG and records when each
//! console line appeared, counted from spawning the process.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::domain_log::{self, DomainStats};

/// What runs the guest.
#[derive(Clone, Debug)]
pub enum Hypervisor {
    /// `rxen create -F -c` with this binary.
    Rxen(PathBuf),
    /// `qemu-system-x86_64 -accel tcg`.
    Tcg,
}

impl Hypervisor {
    pub fn name(&self) -> &'static str {
        match self {
            Hypervisor::Rxen(_) => "rxen",
            Hypervisor::Tcg => "QEMU TCG",
        }
    }
}

/// The guest: Debian's kernel, an initramfs and how much memory.
pub struct Guest<'a> {
    pub kernel: &'a Path,
    pub initramfs: &'a Path,
    pub memory_mib: u32,
}

/// One boot, from spawn to exit.
pub struct Run {
    /// Console lines, each with the time since spawn at which it was read.
    pub lines: Vec<(Duration, String)>,
    /// When `marker` first appeared on the console, if it did.
    pub marker_at: Option<Duration>,
    /// From spawn to exit.
    pub elapsed: Duration,
    pub status: ExitStatus,
    pub stderr: String,
    /// rxen's exit statistics from its domain log (rxen only, if logged).
    pub stats: Option<DomainStats>,
}

impl Run {
    /// Lines holding `key`, in order.
    pub fn lines_with<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.lines
            .iter()
            .map(|(_, l)| l.as_str())
            .filter(move |l| l.contains(key))
    }

    /// The console and rxen's stderr, for error messages.
    pub fn transcript(&self) -> String {
        let mut s = transcript(&self.lines);
        s.push_str("--- stderr ---\n");
        s.push_str(&self.stderr);
        s
    }
}

/// Boots `guest` under `hv` until it exits (the guest powers itself off),
/// killing it after `limit`. `work` is a scratch directory for rxen's config
/// and state.
pub fn boot(
    hv: &Hypervisor,
    guest: &Guest,
    marker: &str,
    limit: Duration,
    work: &Path,
    show_console: bool,
) -> Result<Run> {
    let state = work.join("state");
    let name = "rxen-bench";
    let mut cmd = match hv {
        Hypervisor::Rxen(bin) => {
            let cfg = work.join(format!("{name}.cfg"));
            std::fs::write(
                &cfg,
                format!(
                    "name = \"{name}\"\ntype = \"pv\"\nkernel = \"{}\"\nramdisk = \"{}\"\n\
                     memory = {}\nvcpus = 1\nextra = \"console=hvc0 quiet\"\n",
                    guest.kernel.display(),
                    guest.initramfs.display(),
                    guest.memory_mib
                ),
            )
            .with_context(|| format!("cannot write {}", cfg.display()))?;
            // A fresh state directory per run: the domain log then holds
            // this run's "domain ended" line only.
            let _ = std::fs::remove_dir_all(&state);
            let mut c = Command::new(bin);
            c.args(["create", "-F", "-c"])
                .arg(&cfg)
                .env("RXEN_STATE_DIR", &state);
            c
        }
        Hypervisor::Tcg => {
            let mut c = Command::new("qemu-system-x86_64");
            c.args(["-accel", "tcg", "-m"])
                .arg(guest.memory_mib.to_string())
                .args([
                    "-nographic",
                    "-no-reboot",
                    "-nodefaults",
                    "-serial",
                    "stdio",
                ])
                .arg("-kernel")
                .arg(guest.kernel)
                .arg("-initrd")
                .arg(guest.initramfs)
                .args(["-append", "console=ttyS0 quiet panic=-1"]);
            c
        }
    };
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());

    let start = Instant::now();
    let mut child = cmd.spawn().with_context(|| match hv {
        Hypervisor::Rxen(bin) => format!("cannot run {}", bin.display()),
        Hypervisor::Tcg => {
            "cannot run qemu-system-x86_64: install Debian's qemu-system-x86".to_string()
        }
    })?;
    let lines = read_lines(&mut child, start);
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stderr.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    });

    let status = wait_until(&mut child, start + limit)?;
    let elapsed = start.elapsed();
    let lines: Vec<_> = lines.iter().collect();
    let stderr = err_reader.join().unwrap_or_default();
    let Some(status) = status else {
        bail!(
            "{} did not finish within {limit:?} (killed); console so far:\n{}",
            hv.name(),
            transcript(&lines[lines.len().saturating_sub(30)..])
        );
    };
    let marker_at = lines
        .iter()
        .find(|(_, l)| l.contains(marker))
        .map(|(t, _)| *t);
    if show_console {
        println!("--- {} console ---\n{}", hv.name(), transcript(&lines));
    }
    let stats = match hv {
        // The registry keeps a gone domain's log in STATE/logs/.
        Hypervisor::Rxen(_) => {
            domain_log::read_stats(&state.join("logs").join(format!("{name}.domain.log")))
        }
        Hypervisor::Tcg => None,
    };
    Ok(Run {
        lines,
        marker_at,
        elapsed,
        status,
        stderr,
        stats,
    })
}

/// Reads the child's stdout in a thread; each complete line is sent with the
/// time it arrived.
fn read_lines(child: &mut Child, start: Instant) -> mpsc::Receiver<(Duration, String)> {
    let mut out = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut pending = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = match out.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let now = start.elapsed();
            pending.extend_from_slice(&buf[..n]);
            while let Some(i) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=i).collect();
                let text = String::from_utf8_lossy(&line);
                let _ = tx.send((now, text.trim_end_matches(['\r', '\n']).to_string()));
            }
        }
        if !pending.is_empty() {
            let text = String::from_utf8_lossy(&pending).into_owned();
            let _ = tx.send((start.elapsed(), text));
        }
    });
    rx
}

/// Waits for the child to exit; kills it at `deadline` and returns `None`.
fn wait_until(child: &mut Child, deadline: Instant) -> Result<Option<ExitStatus>> {
    loop {
        if let Some(status) = child.try_wait().context("cannot wait for the guest")? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Console lines with their arrival times.
fn transcript(lines: &[(Duration, String)]) -> String {
    lines
        .iter()
        .map(|(t, l)| format!("[{:8.3}] {l}\n", t.as_secs_f64()))
        .collect()
}
